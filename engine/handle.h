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

/* 1 if psk[0..len) has the shape of a handle (it may still be unknown or forged). */
int m2mhsm_handle_shaped(const uint8_t *psk, size_t len);

/* If secret is an RFC 4279 plain-PSK premaster [u16 N][N zeros][u16 N][psk], point *psk at
 * the psk part and return 1. */
int m2mhsm_premaster_psk(const uint8_t *secret, size_t len, const uint8_t **psk, size_t *psk_len);

#endif
