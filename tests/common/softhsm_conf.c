#include "softhsm_conf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int softhsm_conf_write(const char *dir)
{
    char conf[4096];
    if (snprintf(conf, sizeof(conf), "%s/softhsm2.conf", dir) >= (int)sizeof(conf))
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/bash", "bash", M2M_SOFTHSM_CONF_SH, dir, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s %s failed\n", M2M_SOFTHSM_CONF_SH, dir);
        return -1;
    }
    return setenv("SOFTHSM2_CONF", conf, 1);
}
