/* A scratch SoftHSM configuration for the cmocka suites and the benchmarks, written by the
 * one writer, hsm-config/softhsm-conf.sh. */
#ifndef M2M_TEST_SOFTHSM_CONF_H
#define M2M_TEST_SOFTHSM_CONF_H

#include <stddef.h>

/* DIR/softhsm2.conf with tokens in DIR/tokens, exported as SOFTHSM2_CONF. 0, or -1 (with a
 * message on stderr). */
int softhsm_conf_write(const char *dir);

#endif
