/*
 * The token at the level of PKCS#11 handles: its function list, pooled sessions, HMAC with a
 * key object, in-memory copies of keys. For the library, its provider and its tests; not
 * installed, so that an application sees a token only through <m2mhsm/token.h> and a record
 * only through <m2mhsm/keystore.h>, and no handle of this process's module reaches it.
 */
#ifndef M2MHSM_P11_HANDLES_H
#define M2MHSM_P11_HANDLES_H

#include <stddef.h>
#include <stdint.h>
#include <m2mhsm/token.h>

/* The module's function list (for callers that issue their own PKCS#11 calls). */
CK_FUNCTION_LIST *m2mhsm_token_functions(const m2mhsm_token *tok);

/*
 * Borrow a logged-in session for one operation and give it back. Sessions are never
 * shared between threads while borrowed. In a child process after fork(), the first
 * borrow re-initialises the module and logs in again. When every session the token allows
 * (m2mhsm_token_config.max_sessions, the module's limit) is borrowed, waits up to
 * session_wait_ms for one to come back, then fails with M2MHSM_E_BUSY. Thread-safe.
 */
m2mhsm_status m2mhsm_token_session_get(m2mhsm_token *tok, CK_SESSION_HANDLE *out);
void m2mhsm_token_session_put(m2mhsm_token *tok, CK_SESSION_HANDLE s);

/*
 * HMAC-SHA-256 of msg keyed by a token key (C_SignInit/C_Sign with CKM_SHA256_HMAC), out
 * 32 bytes. The key never leaves the token; the caller cleanses out when it is secret.
 * Thread-safe (borrows a session).
 */
m2mhsm_status m2mhsm_token_hmac_sha256(m2mhsm_token *tok, CK_OBJECT_HANDLE key, const uint8_t *msg,
                                       size_t msg_len, uint8_t out[32]);

/*
 * P_SHA256(key, seed) (RFC 5246 section 5) into out[0..olen), every HMAC on the token with
 * one borrowed session. Thread-safe.
 */
m2mhsm_status m2mhsm_token_p_sha256(m2mhsm_token *tok, CK_OBJECT_HANDLE key, const uint8_t *seed,
                                    size_t seed_len, uint8_t *out, size_t olen);

/*
 * A session-object copy of a token key (CKA_TOKEN=FALSE, everything else as the key: still
 * sensitive and non-extractable), owned by the token's login session: an in-memory object
 * the module signs with several times faster than with a stored one. Gone with the process
 * (or after fork: it belongs to the parent). Destroy it with m2mhsm_token_session_destroy.
 */
m2mhsm_status m2mhsm_token_session_copy(m2mhsm_token *tok, CK_OBJECT_HANDLE key,
                                        CK_OBJECT_HANDLE *copy);
void m2mhsm_token_session_destroy(m2mhsm_token *tok, CK_OBJECT_HANDLE copy);

/* Incremented each time the module is re-initialised (after fork or a lost token, see
 * Failover in <m2mhsm/token.h>): object handles from an earlier generation are meaningless.
 * Thread-safe. */

/*
 * HMAC-SHA-256(key, msg) computed by the token into a new secret-key object made from tmpl
 * (C_DeriveKey with CKM_HKDF_DERIVE, extract only: salt = key, input keying material = a
 * session key holding msg, destroyed on every path). CKA_VALUE_LEN 32 is added to tmpl.
 * The result never exists in host memory: make tmpl sensitive and non-extractable.
 * M2MHSM_E_UNSUPPORTED if the token lacks CKM_HKDF_DERIVE (caps.hkdf_derive). Thread-safe.
 */
m2mhsm_status m2mhsm_token_hmac_derive(m2mhsm_token *tok, CK_OBJECT_HANDLE key, const uint8_t *msg,
                                       size_t msg_len, const CK_ATTRIBUTE *tmpl, CK_ULONG n,
                                       CK_OBJECT_HANDLE *out);
/* HKDF-Extract(0^32, ikm) = HMAC(0^32, ikm) into a new key object made from tmpl: the TLS
 * 1.3 early secret of the PSK ikm (CKF_HKDF_SALT_NULL). ikm needs CKA_DERIVE. Thread-safe. */
m2mhsm_status m2mhsm_token_hkdf_extract_key(m2mhsm_token *tok, CK_OBJECT_HANDLE ikm,
                                            const CK_ATTRIBUTE *tmpl, CK_ULONG n,
                                            CK_OBJECT_HANDLE *out);

/* Incremented each time the module is re-initialised (after fork): object handles from an
 * earlier generation are meaningless. Thread-safe. */
unsigned m2mhsm_token_generation(m2mhsm_token *tok);

/*
 * For a caller whose operation just failed, begun when the token's generation was
 * `generation`: M2MHSM_OK if the token is now usable in a newer generation (the failure was
 * a lost token and the re-attach succeeded, here or in another thread): find the objects
 * again and retry the operation once. Otherwise the error that stands (the last error
 * describes it), at once: the failure was not a lost token, or the token is still down.
 */
m2mhsm_status m2mhsm_token_recover(m2mhsm_token *tok, unsigned generation);

#endif
