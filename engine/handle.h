/*
 * PSK handles: what the library hands libssl instead of a PSK, so that the key never
 * leaves the token. A handle is a magic, a slot index and a random tag; the provider
 * recognises one wherever libssl puts the PSK and must never treat it as key bytes:
 *  - a PSK handle (28 bytes) inside the TLS 1.2 premaster, or as the key of the TLS 1.3
 *    early-secret extract;
 *  - an early-secret handle (32 bytes, the size of the secret it stands for), which the
 *    provider returns from that extract and later meets as the key of the expands and as
 *    the salt of the handshake-secret extract.
 */
#ifndef M2MHSM_HANDLE_H
#define M2MHSM_HANDLE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <m2mhsm/keystore.h>
#include "keystore/record.h"
#include "p11/handles.h"

#define M2MHSM_HANDLE_MAGIC "\x00m2mhsm\x01" /* 8 bytes: a random PSK starts so w.p. 2^-64 */
#define M2MHSM_ES_HANDLE_MAGIC "\x00m2mhsm\x02"
#define M2MHSM_HANDLE_MAGIC_LEN 8
#define M2MHSM_HANDLE_TAG_LEN 16
#define M2MHSM_HANDLE_LEN (M2MHSM_HANDLE_MAGIC_LEN + 4 + M2MHSM_HANDLE_TAG_LEN)
#define M2MHSM_ES_HANDLE_LEN 32

/*
 * The registry behind the handles of one m2mhsm_tls context. A handle names a record (a
 * Kpm, Km or Kpsa) of one key store; the tag is random per record, compared in constant
 * time, so a handle cannot be guessed. Thread-safe.
 */
typedef struct m2mhsm_handles m2mhsm_handles;

m2mhsm_status m2mhsm_handles_new(m2mhsm_keystore *ks, m2mhsm_handles **out);
void m2mhsm_handles_free(m2mhsm_handles *h);
/* A PSK handle for rec (the same one while rec's record id is registered). */
m2mhsm_status m2mhsm_handles_issue(m2mhsm_handles *h, const m2mhsm_record *rec,
                                   uint8_t out[M2MHSM_HANDLE_LEN]);
/*
 * The record behind a PSK or early-secret handle, if the handle is known, its tag matches
 * and the key has not expired (M2MHSM_E_NOT_FOUND or M2MHSM_E_EXPIRED otherwise). The
 * record's TLS forms are the in-memory session copies where the token made them.
 */
m2mhsm_status m2mhsm_handles_resolve(m2mhsm_handles *h, const uint8_t *handle, size_t len,
                                     m2mhsm_record *rec);
/*
 * After a token call on rec (resolved from handle when the token's generation was
 * `generation`) failed: if the token was lost and is back (m2mhsm_token_recover), find the
 * record again and re-resolve handle into rec, for one retry. Otherwise the error, at once.
 */
m2mhsm_status m2mhsm_handles_recover(m2mhsm_handles *h, unsigned generation, const uint8_t *handle,
                                     size_t len, m2mhsm_record *rec);
/* Forget a record (it was erased): its handles resolve to nothing from now on, and its
 * session copies are destroyed. A later issue for the same record id gets a new tag. */
void m2mhsm_handles_revoke(m2mhsm_handles *h, const uint8_t record_id[M2MHSM_RECORD_ID_LEN]);
m2mhsm_keystore *m2mhsm_handles_keystore(m2mhsm_handles *h);
/* The registry's mutex, for the test that holds it across fork() (tests/token/test_fork.c). */
pthread_mutex_t *m2mhsm_handles_lock(m2mhsm_handles *h);

/* 1 if bytes have the shape of a PSK / an early-secret handle (maybe unknown or forged). */
int m2mhsm_handle_shaped(const uint8_t *psk, size_t len);
int m2mhsm_es_handle_shaped(const uint8_t *b, size_t len);
/* The early-secret handle of the same record as a PSK handle. */
void m2mhsm_es_handle_from(const uint8_t psk_handle[M2MHSM_HANDLE_LEN],
                           uint8_t out[M2MHSM_ES_HANDLE_LEN]);

/* If secret has the RFC 4279 premaster shape [u16 M][other_secret][u16 N][psk], point *psk at
 * the psk part, set *plain when it is plain PSK (other_secret = N zeros), and return 1. With
 * (EC)DHE-PSK or RSA-PSK other_secret is not zeros: a handle there must be refused. */
int m2mhsm_premaster_psk(const uint8_t *secret, size_t len, const uint8_t **psk, size_t *psk_len,
                         int *plain);

#endif
