#include "fixture.h"
#include "softhsm_conf.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef FIXTURE_ROOT
#error "FIXTURE_ROOT must name a directory under the build tree"
#endif

static char root[400];

/* Another kind's tokens: the directory `lab.sh tokens` made, and the process that owns it
 * (forked children exit through atexit too, and must not release their parent's tokens). */
static struct {
    char kind[32];
    char lab[480];
    int made;
    pid_t owner;
    char init_args[4096]; /* every token of the lab, where the kind has such args (softokn) */
} other;

const uint8_t fixture_key32[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                   16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, 0600);
}

const char *fixture_kind(void)
{
    const char *k = getenv("M2MHSM_TOKEN_KIND");
    return k != NULL && k[0] != '\0' ? k : "softhsm";
}

/* bash lab.sh ARGS...: 0 if it succeeded. Its messages go to the test's output. */
static int lab_sh(char *const args[])
{
    pid_t pid = fork();
    if (pid == 0) {
        execv("/bin/bash", args);
        _exit(127);
    }
    int status = 0;
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
                   WEXITSTATUS(status) == 0
               ? 0
               : -1;
}

/* Stop the kind's servers and release its slots, even after a failed test (atexit). */
static void release_tokens(void)
{
    if (!other.made || getpid() != other.owner)
        return;
    other.made = 0;
    char *args[] = {"bash", M2M_LAB_SH, "clean", other.lab, NULL};
    if (lab_sh(args) != 0)
        fprintf(stderr, "fixture: lab.sh clean %s failed\n", other.lab);
}

static void other_kind_setup(const char *suite)
{
    char cmd[1200];
    snprintf(other.kind, sizeof(other.kind), "%s", fixture_kind());
    snprintf(root, sizeof(root), "%s/%s-%s-%ld", FIXTURE_ROOT, suite, other.kind, (long)getpid());
    snprintf(other.lab, sizeof(other.lab), "%s/lab", root);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", root, root);
    assert_int_equal(system(cmd), 0);
    other.owner = getpid();
    atexit(release_tokens);
}

void fixture_softhsm_setup(const char *suite)
{
    char cmd[1200], text[1200];
    if (strcmp(fixture_kind(), "softhsm") != 0) {
        other_kind_setup(suite);
        return;
    }
    snprintf(root, sizeof(root), "%s/%s-%ld", FIXTURE_ROOT, suite, (long)getpid());
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(softhsm_conf_write(root), 0);
    snprintf(text, sizeof(text), "%s/so.pin", root);
    write_file(text, "so-secret-1234\n");
    snprintf(text, sizeof(text), "%s/user.pin", root);
    write_file(text, "user-secret-1234\n");
}

/* The value of `export NAME='...'` in tokens.env (lab.sh's env_line quoting), the last
 * one if there are several; "" if absent. */
static void env_value(const char *file, const char *name, char *out, size_t n)
{
    char line[8192];
    size_t len = strlen(name);
    FILE *f = fopen(file, "r");
    assert_non_null(f);
    out[0] = '\0';
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "export ", 7) != 0 || strncmp(line + 7, name, len) != 0 ||
            line[7 + len] != '=')
            continue;
        size_t o = 0;
        int quoted = 0;
        for (const char *c = line + 8 + len; *c != '\0' && *c != '\n' && o + 1 < n; c++) {
            if (*c == '\'')
                quoted = !quoted;
            else if (*c == '\\' && !quoted && c[1] != '\0')
                out[o++] = *++c;
            else
                out[o++] = *c;
        }
        out[o] = '\0';
    }
    fclose(f);
}

static void setenv_or_unset(const char *name, const char *value)
{
    if (value[0] != '\0')
        setenv(name, value, 1);
    else
        unsetenv(name);
}

/* A token of the other kind from lab.sh: the first makes the lab, the next ones are added. */
static void other_token_make(fixture_token *t, const char *label)
{
    char build[512], env[600], name[80], up[40], value[4096], pin[580];
    const char *b = getenv("M2M_BUILD");
    snprintf(build, sizeof(build), "%s", b != NULL ? b : M2M_BUILD_DIR);
    char *make[] = {"bash",     M2M_LAB_SH, "tokens", other.lab,     "--token-kind",
                    other.kind, "--build",  build,    (char *)label, NULL};
    char *add[] = {"bash",    M2M_LAB_SH, "tokens",      other.lab, "--add",
                   "--build", build,      (char *)label, NULL};
    if (lab_sh(other.made ? add : make) != 0)
        fail_msg("lab.sh tokens %s (%s) failed", label, other.kind);
    other.made = 1;
    snprintf(env, sizeof(env), "%s/tokens.env", other.lab);
    size_t i = 0;
    for (; label[i] != '\0' && i + 1 < sizeof(up); i++)
        up[i] = label[i] == '-'
                    ? '_'
                    : (char)(label[i] >= 'a' && label[i] <= 'z' ? label[i] - 32 : label[i]);
    up[i] = '\0';

    snprintf(t->dir, sizeof(t->dir), "%s", other.lab);
    snprintf(name, sizeof(name), "M2M_%s_TOKEN", up);
    env_value(env, name, t->uri, sizeof(t->uri));
    snprintf(name, sizeof(name), "M2M_%s_PIN_FILE", up);
    env_value(env, name, pin, sizeof(pin));
    snprintf(t->pin_source, sizeof(t->pin_source), "file:%s", pin);
    snprintf(name, sizeof(name), "M2M_%s_LOCK_FILE", up);
    env_value(env, name, t->lock_file, sizeof(t->lock_file));
    env_value(env, "M2M_MODULE", t->module, sizeof(t->module));
    /* softokn: one string naming every token, as a process initialises the module once */
    env_value(env, "M2M_INIT_ARGS", other.init_args, sizeof(other.init_args));
    if (other.init_args[0] == '\0') {
        snprintf(name, sizeof(name), "M2M_%s_INIT_ARGS", up);
        env_value(env, name, other.init_args, sizeof(other.init_args));
    }
    snprintf(t->init_args, sizeof(t->init_args), "%s", other.init_args);
    if (t->uri[0] == '\0' || t->module[0] == '\0')
        fail_msg("%s has no token %s", env, label);

    /* A suite that runs the module under m2mfault (M2M_FAULT_MODULE set) keeps the fault
     * module in M2MHSM_MODULE: the kind's module goes beneath it. */
    setenv(getenv("M2M_FAULT_MODULE") != NULL ? "M2M_FAULT_MODULE" : "M2MHSM_MODULE", t->module, 1);
    setenv_or_unset("M2MHSM_MODULE_INIT_ARGS", other.init_args);
    env_value(env, "M2M_P11_ADDRESS", value, sizeof(value)); /* p11-kit's client: one a process */
    setenv_or_unset("P11_KIT_SERVER_ADDRESS", value);
}

void fixture_token_make(fixture_token *t, const char *label)
{
    char so[600];
    memset(t, 0, sizeof(*t));
    if (other.kind[0] != '\0') {
        snprintf(t->label, sizeof(t->label), "%s", label);
        other_token_make(t, label);
        return;
    }
    snprintf(t->label, sizeof(t->label), "%s", label);
    snprintf(t->dir, sizeof(t->dir), "%s/tokens", root);
    snprintf(t->uri, sizeof(t->uri), "pkcs11:token=%s", label);
    snprintf(t->pin_source, sizeof(t->pin_source), "file:%s/user.pin", root);
    snprintf(so, sizeof(so), "file:%s/so.pin", root);
    snprintf(t->lock_file, sizeof(t->lock_file), "%s/m2mhsm.lock", root);
    m2mhsm_status st = m2mhsm_token_init(NULL, label, so, t->pin_source);
    if (st != M2MHSM_OK)
        fail_msg("token init: %s", m2mhsm_last_error());
}

m2mhsm_time fixture_clock(void *arg)
{
    return *(const m2mhsm_time *)arg;
}

void fixture_store_open(fixture_store *fs, const fixture_token *t)
{
    /* The module comes from $M2MHSM_MODULE, which fixture_token_make set (a suite may put
     * m2mfault there); the init args are the latest (softokn: they name every token made). */
    const char *init_args = other.init_args[0] != '\0' ? other.init_args : NULL;
    (void)t->init_args;
    m2mhsm_token_config cfg = {.token_uri = t->uri,
                               .pin_source = t->pin_source,
                               .lock_file = t->lock_file,
                               .init_args = init_args};
    if (fs->now == 0)
        fs->now = 1795000000; /* 2026-11-18, fixed: tests never read the wall clock */
    m2mhsm_status st = m2mhsm_token_open(&cfg, &fs->tok);
    if (st != M2MHSM_OK)
        fail_msg("token_open: %s", m2mhsm_last_error());
    m2mhsm_keystore_options o = {
        .clock = fixture_clock, .clock_arg = &fs->now, .psk_forms = fs->psk_forms};
    st = m2mhsm_keystore_open(fs->tok, &o, &fs->ks, NULL);
    if (st != M2MHSM_OK)
        fail_msg("keystore_open: %s", m2mhsm_last_error());
}

m2mhsm_record fixture_enrol(fixture_store *fs, const char *kpm_id, const char *enrolee, uint8_t tag,
                            int64_t seconds)
{
    uint8_t exported[48];
    memset(exported, tag, 16);
    memcpy(exported + 16, fixture_key32, 32);
    m2mhsm_enrolment e = {
        kpm_id, "mef.example.com", enrolee, "maf.example.com", {M2MHSM_EXPIRY_DURATION, seconds}};
    m2mhsm_record ke;
    m2mhsm_status st = m2mhsm_keystore_store_ke(fs->ks, &e, exported, &ke);
    if (st != M2MHSM_OK)
        fail_msg("store_ke: %s", m2mhsm_last_error());
    return ke;
}

void fixture_store_close(fixture_store *fs)
{
    m2mhsm_keystore_close(fs->ks);
    m2mhsm_token_close(fs->tok);
    fs->ks = NULL;
    fs->tok = NULL;
}
