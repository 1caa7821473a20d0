/*
 * PSK handles: what the library hands libssl instead of a PSK, so that the key never
 * leaves the token. A handle is a magic, an index and a random tag; the provider
 * recognises one wherever libssl puts the PSK (the TLS 1.2 premaster, the TLS 1.3 early
 * extract) and must never treat it as key bytes.
 */
#ifndef M2MHSM_HANDLE_H
#define M2MHSM_HANDLE_H

#include <stddef.h>
#include <stdint.h>

#define M2MHSM_HANDLE_MAGIC "\x00m2mhsm\x01" /* 8 bytes: a random PSK starts so w.p. 2^-64 */
#define M2MHSM_HANDLE_MAGIC_LEN 8
#define M2MHSM_HANDLE_TAG_LEN 16
#define M2MHSM_HANDLE_LEN (M2MHSM_HANDLE_MAGIC_LEN + 4 + M2MHSM_HANDLE_TAG_LEN)

#include <m2mhsm/keystore.h>

/*
 * The registry behind the handles of one m2mhsm_tls context. A handle names a record (a
 * Kpm, Km or Kpsa) of one key store; the tag is random per issue, compared in constant
 * time, so a handle cannot be guessed from another. Thread-safe.
 */
typedef struct m2mhsm_handles m2mhsm_handles;

m2mhsm_status m2mhsm_handles_new(m2mhsm_keystore *ks, m2mhsm_handles **out);
void m2mhsm_handles_free(m2mhsm_handles *h);
/* A handle for rec (the same one while rec's record id is registered). */
m2mhsm_status m2mhsm_handles_issue(m2mhsm_handles *h, const m2mhsm_record *rec,
                                   uint8_t out[M2MHSM_HANDLE_LEN]);
/* The record behind a handle, if the handle is known, its tag matches and the key has not
 * expired; M2MHSM_E_NOT_FOUND or M2MHSM_E_EXPIRED otherwise. */
m2mhsm_status m2mhsm_handles_resolve(m2mhsm_handles *h, const uint8_t *handle, size_t len,
                                     m2mhsm_record *rec);
m2mhsm_keystore *m2mhsm_handles_keystore(m2mhsm_handles *h);

/* 1 if psk[0..len) has the shape of a handle (it may still be unknown or forged). */
int m2mhsm_handle_shaped(const uint8_t *psk, size_t len);

/* If secret is an RFC 4279 plain-PSK premaster [u16 N][N zeros][u16 N][psk], point *psk at
 * the psk part and return 1. */
int m2mhsm_premaster_psk(const uint8_t *secret, size_t len, const uint8_t **psk, size_t *psk_len);

#endif
