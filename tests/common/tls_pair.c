#include "tls_pair.h"

int tls_pair_handshake(SSL *server, SSL *client)
{
    BIO *bs, *bc;
    if (BIO_new_bio_pair(&bs, 0, &bc, 0) != 1)
        return 0;
    SSL_set_bio(server, bs, bs);
    SSL_set_bio(client, bc, bc);
    SSL_set_accept_state(server);
    SSL_set_connect_state(client);
    int ds = 0, dc = 0;
    for (int i = 0; i < 20 && !(ds && dc); i++) {
        if (!dc && SSL_do_handshake(client) == 1)
            dc = 1;
        if (!ds && SSL_do_handshake(server) == 1)
            ds = 1;
    }
    return ds && dc;
}
