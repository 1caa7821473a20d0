/* jansson's allocator for every program, the CLI included: JSON that m2mhsm parses or
 * builds may hold a credential (a /fetchCredentials body, a manifest's keys). */
#include "app.h"

#include <stddef.h>
#include <stdlib.h>
#include <openssl/crypto.h>

/* Every block jansson frees is wiped first: a reply or request body it parsed or built may
 * have held a base64 credential. The size sits in a header before the block. */
typedef union {
    size_t size;
    max_align_t align;
} block_header;

static void *cleansing_malloc(size_t n)
{
    block_header *h = malloc(sizeof(*h) + n);
    if (h == NULL)
        return NULL;
    h->size = n;
    return h + 1;
}

static void cleansing_free(void *p)
{
    if (p == NULL)
        return;
    block_header *h = (block_header *)p - 1;
    OPENSSL_cleanse(p, h->size);
    free(h);
}

void app_json_cleansing_alloc(void)
{
    json_set_alloc_funcs(cleansing_malloc, cleansing_free);
}
