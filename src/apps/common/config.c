/* Configuration files are JSON, parsed by jansson (docs/configuration.md). */
#include "app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *app_config_load(const char *path)
{
    json_error_t err;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (root == NULL) {
        fprintf(stderr, "config %s: line %d: %s\n", path, err.line, err.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        fprintf(stderr, "config %s: the top level must be an object\n", path);
        json_decref(root);
        return NULL;
    }
    return root;
}

int app_cfg_known(const json_t *obj, const char *file, const char *where, const char *const *known)
{
    json_t *o = (json_t *)obj; /* jansson's iterators take no const */
    for (void *it = json_object_iter(o); it != NULL; it = json_object_iter_next(o, it)) {
        const char *key = json_object_iter_key(it);
        size_t i = 0;
        while (known[i] != NULL && strcmp(known[i], key) != 0)
            i++;
        if (known[i] == NULL) {
            fprintf(stderr, "config %s: %s%s%s: unknown field\n", file, where,
                    where[0] != '\0' ? "." : "", key);
            return -1;
        }
    }
    return 0;
}

int app_cfg_unique(const json_t *list, const char *file, const char *where, const char *key)
{
    json_t *seen = json_object(); /* value → index of its first entry */
    int rc = seen != NULL ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < json_array_size(list); i++) {
        const json_t *v = json_object_get(json_array_get(list, i), key);
        if (!json_is_string(v))
            continue;
        const json_t *first = json_object_get(seen, json_string_value(v));
        if (first != NULL) {
            fprintf(stderr, "config %s: %s[%zu].%s: \"%s\" is listed twice (also %s[%lld])\n", file,
                    where, i, key, json_string_value(v), where,
                    (long long)json_integer_value(first));
            rc = -1;
        } else {
            rc = json_object_set_new(seen, json_string_value(v), json_integer((json_int_t)i));
        }
    }
    json_decref(seen);
    return rc;
}

static int missing(const char *section, const char *key, const char *why)
{
    fprintf(stderr, "config: %s.%s: %s\n", section, key, why);
    return -1;
}

int app_cfg_str(const json_t *obj, const char *section, const char *key, int required,
                const char **out)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return required ? missing(section, key, "required") : 0;
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        strlen(json_string_value(v)) != json_string_length(v))
        return missing(section, key, "must be a non-empty string");
    *out = json_string_value(v);
    return 0;
}

int app_cfg_int(const json_t *obj, const char *section, const char *key, long long min,
                long long max, long long *out)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        fprintf(stderr, "config: %s.%s: must be an integer from %lld to %lld\n", section, key, min,
                max);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

int app_cfg_bool(const json_t *obj, const char *section, const char *key, int *out)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return 0;
    if (!json_is_boolean(v))
        return missing(section, key, "must be true or false");
    *out = json_is_true(v);
    return 0;
}

int app_cfg_addr(const json_t *obj, const char *section, const char *key, int required,
                 const char **out)
{
    const char *v = NULL;
    struct sockaddr_storage ss;
    socklen_t len;
    char where[128];
    if (app_cfg_str(obj, section, key, required, &v) != 0)
        return -1;
    snprintf(where, sizeof(where), "config: %s.%s", section, key);
    if (v != NULL && app_addr_parse_in(where, v, &ss, &len) != 0)
        return -1;
    if (v != NULL)
        *out = v;
    return 0;
}

static int same_value(const json_t *a, const json_t *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && json_equal(a, b));
}

static void append_field(char *out, size_t cap, const char *section, const char *key)
{
    size_t n = strlen(out);
    snprintf(out + n, cap - n, "%s%s%s%s", n > 0 ? "," : "", section, key != NULL ? "." : "",
             key != NULL ? key : "");
}

void app_cfg_restart_fields(const json_t *running, const json_t *next, const char *section,
                            const char *const *keys, char *out, size_t cap)
{
    const json_t *a = json_object_get(running, section), *b = json_object_get(next, section);
    if (keys == NULL) {
        if (!same_value(a, b))
            append_field(out, cap, section, NULL);
        return;
    }
    for (; *keys != NULL; keys++)
        if (!same_value(json_object_get(a, *keys), json_object_get(b, *keys)))
            append_field(out, cap, section, *keys);
}
