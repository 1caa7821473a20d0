/* The m2mhsm admin CLI: shared declarations. */
#ifndef M2MHSM_CLI_H
#define M2MHSM_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <m2mhsm/keystore.h>

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

typedef struct {
    m2mhsm_token_config token;
    m2mhsm_token *tok;
    m2mhsm_keystore *ks;
    m2mhsm_open_report report; /* what opening found (and, unless read-only, removed) */
    unsigned psk_forms;        /* --forms: those of the Kpm, Km and Kpsa records written */
} cli_ctx;

/* Open token and store from ctx->token, repairing what a crash left (writers); prints the
 * error and returns EXIT_FAIL on failure. */
int cli_open(cli_ctx *ctx);
/* The same for commands that only read: the store is opened read_only and nothing on the
 * token changes; damage is reported, not repaired. */
int cli_open_read_only(cli_ctx *ctx);
void cli_close(cli_ctx *ctx);
/* "m2mhsm: <what>: <last error>" on stderr; returns EXIT_FAIL. */
int cli_fail(const char *what, m2mhsm_status st);
/* "m2mhsm: <message>" on stderr; returns EXIT_USAGE. */
int cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The value of one hex digit, or -1. */
int cli_hexval(int c);
/* Read a hex key file (whitespace ignored) into buf; cleanses its own copies. */
m2mhsm_status cli_read_hex_key(const char *path, uint8_t *buf, size_t cap, size_t *len);
/* Read a binary file of at most cap bytes. */
m2mhsm_status cli_read_binary(const char *path, uint8_t *buf, size_t cap, size_t *len);

/* kpm import --manifest FILE (manifest.c). */
int cli_kpm_import_manifest(cli_ctx *ctx, const char *path);

/* Subcommands: argc/argv start at the subcommand's own words. */
int cmd_token_init(int argc, char **argv, cli_ctx *ctx);
int cmd_kpm(int argc, char **argv, cli_ctx *ctx);
int cmd_enrolee(int argc, char **argv, cli_ctx *ctx);
int cmd_ke(int argc, char **argv, cli_ctx *ctx);
int cmd_derive(int argc, char **argv, cli_ctx *ctx);
int cmd_list(int argc, char **argv, cli_ctx *ctx);
int cmd_erase(int argc, char **argv, cli_ctx *ctx);
int cmd_sweep(int argc, char **argv, cli_ctx *ctx);
int cmd_repair(int argc, char **argv, cli_ctx *ctx);
int cmd_caps(int argc, char **argv, cli_ctx *ctx);

#endif
