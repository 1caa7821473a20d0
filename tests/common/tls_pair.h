/* Two SSL objects joined by an in-memory BIO pair, driven until both finish handshaking. */
#ifndef M2MHSM_TEST_TLS_PAIR_H
#define M2MHSM_TEST_TLS_PAIR_H

#include <openssl/ssl.h>

/* Takes ownership of neither; returns 1 if both sides completed the handshake. */
int tls_pair_handshake(SSL *server, SSL *client);

#endif
