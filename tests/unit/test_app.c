/* The services' shared helpers: log values cannot forge fields or lines, configuration
 * errors name the field, addresses parse or are refused, and jansson's freed memory is wiped. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/apps/common/app.h"

static void test_safe_replaces_separators_and_control_bytes(void **state)
{
    (void)state;
    char out[64];
    assert_string_equal(app_safe("kpm-1 event=enrolled\nforged=1", out, sizeof(out)),
                        "kpm-1?event=enrolled?forged=1");
    assert_string_equal(app_safe("\"quoted\"\t\r", out, sizeof(out)), "?quoted???");
    assert_string_equal(app_safe("ABC@mef.example.com//x:1,2+3", out, sizeof(out)),
                        "ABC@mef.example.com//x:1,2+3");
    assert_string_equal(app_safe("\xc3\xa9", out, sizeof(out)), "??");
}

static void test_safe_bounds_long_values_and_names_empty_ones(void **state)
{
    (void)state;
    char big[1000], out[81];
    memset(big, 'A', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(strlen(app_safe(big, out, sizeof(out))), 80);
    assert_string_equal(app_safe("", out, sizeof(out)), "-");
    assert_string_equal(app_safe(NULL, out, sizeof(out)), "-");
}

static void test_addresses_parse_or_are_refused(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64];
    assert_int_equal(app_addr_parse("127.0.0.1:5684", &ss, &len), 0);
    app_addr_format((struct sockaddr *)&ss, text, sizeof(text));
    assert_string_equal(text, "127.0.0.1:5684");
    assert_int_equal(app_addr_parse("[::1]:443", &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(app_addr_parse("127.0.0.1", &ss, &len), -1);
    assert_int_equal(app_addr_parse(":80", &ss, &len), -1);
    assert_int_equal(app_addr_parse("127.0.0.1:", &ss, &len), -1);
    assert_int_equal(app_addr_parse("127.0.0.1:http", &ss, &len), -1);
}

/* Ports are 1 to 65535 in plain decimal: 99999 used to wrap to 34463 and bind it. */
static void test_ports_outside_1_to_65535_are_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "127.0.0.1:99999",  "127.0.0.1:65536", "127.0.0.1:0",          "127.0.0.1:-1",
        "127.0.0.1:+80",    "127.0.0.1: 80",   "127.0.0.1:080",        "127.0.0.1:000443",
        "127.0.0.1:123456", "127.0.0.1:80x",   "127.0.0.1:4294967377", "[::1]:",
    };
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&ss, 0xa5, sizeof(ss));
        len = 7;
        assert_int_equal(app_addr_parse(bad[i], &ss, &len), -1);
        assert_int_equal(len, 7); /* nothing written */
    }
    assert_int_equal(app_addr_parse("127.0.0.1:65535", &ss, &len), 0);
    app_addr_format((struct sockaddr *)&ss, text, sizeof(text));
    assert_string_equal(text, "127.0.0.1:65535");
    assert_int_equal(app_addr_parse("127.0.0.1:1", &ss, &len), 0);
    app_addr_format((struct sockaddr *)&ss, text, sizeof(text));
    assert_string_equal(text, "127.0.0.1:1");
}

static void test_url_ports_follow_the_same_rule(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "https://mef.example.com:99999", "https://mef.example.com:0/",
        "https://mef.example.com:/",     "tls://127.0.0.1:-5684",
        "dtls://127.0.0.1:05684",        "https://[::1]:65536",
        "tls://user@127.0.0.1:1000000",  "https://mef.example.com:+443?x",
    };
    unsigned port = 7;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(app_url_port("test", bad[i], &port), -1);
        assert_int_equal(port, 7);
    }
    assert_int_equal(app_url_port("test", "https://mef.example.com", &port), 1);
    assert_int_equal(app_url_port("test", "https://mef.example.com/", &port), 1);
    assert_int_equal(app_url_port("test", "https://[::1]/", &port), 1);
    assert_int_equal(port, 7);
    assert_int_equal(app_url_port("test", "https://[::1]:8443/", &port), 0);
    assert_int_equal(port, 8443);
    assert_int_equal(app_url_port("test", "tls://u@127.0.0.1:5684", &port), 0);
    assert_int_equal(port, 5684);
    assert_int_equal(app_url_port("test", "dtls://127.0.0.1:65535", &port), 0);
    assert_int_equal(port, 65535);
}

static void test_config_addresses_are_checked_when_loaded(void **state)
{
    (void)state;
    json_t *o = json_pack("{s:s,s:s,s:s,s:i}", "https", "127.0.0.1:99999", "listen",
                          "127.0.0.1:8443", "bootstrap_dtls", "127.0.0.1:", "n", 1);
    const char *v = NULL;
    assert_int_equal(app_cfg_addr(o, "mef", "https", 0, &v), -1);
    assert_null(v);
    assert_int_equal(app_cfg_addr(o, "mef", "bootstrap_dtls", 0, &v), -1);
    assert_int_equal(app_cfg_addr(o, "mef", "n", 0, &v), -1);
    assert_null(v);
    assert_int_equal(app_cfg_addr(o, "mef", "bootstrap_tls", 0, &v), 0);
    assert_null(v);
    assert_int_equal(app_cfg_addr(o, "maf", "absent", 1, &v), -1);
    assert_int_equal(app_cfg_addr(o, "maf", "listen", 1, &v), 0);
    assert_string_equal(v, "127.0.0.1:8443");
    json_decref(o);
}

static void test_config_fields_are_typed(void **state)
{
    (void)state;
    json_t *o = json_pack("{s:s,s:i,s:b,s:s,s:i}", "fqdn", "mef.example.com", "port", 70000,
                          "tls13", 1, "empty", "", "n", 5);
    const char *s = NULL;
    long long n = 0;
    int b = 0;
    assert_int_equal(app_cfg_str(o, "mef", "fqdn", 1, &s), 0);
    assert_string_equal(s, "mef.example.com");
    assert_int_equal(app_cfg_str(o, "mef", "missing", 1, &s), -1);
    s = NULL;
    assert_int_equal(app_cfg_str(o, "mef", "missing", 0, &s), 0);
    assert_null(s);
    assert_int_equal(app_cfg_str(o, "mef", "empty", 1, &s), -1);
    assert_int_equal(app_cfg_str(o, "mef", "port", 1, &s), -1);
    assert_int_equal(app_cfg_int(o, "mef", "port", 1, 65535, &n), -1);
    assert_int_equal(app_cfg_int(o, "mef", "n", 1, 10, &n), 0);
    assert_int_equal(n, 5);
    assert_int_equal(app_cfg_bool(o, "mef", "tls13", &b), 0);
    assert_int_equal(b, 1);
    assert_int_equal(app_cfg_bool(o, "mef", "fqdn", &b), -1);
    json_decref(o);
}

static void test_config_file_errors_are_refused(void **state)
{
    (void)state;
    char path[] = "/tmp/m2m-test-app-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("{\"a\": 1, \"a\": 2}", f); /* duplicate keys hide mistakes: refused */
    fclose(f);
    assert_null(app_config_load(path));
    f = fopen(path, "w");
    fputs("[1, 2]", f);
    fclose(f);
    assert_null(app_config_load(path));
    f = fopen(path, "w");
    fputs("{\"mef\": {}}", f);
    fclose(f);
    json_t *ok = app_config_load(path);
    assert_non_null(ok);
    json_decref(ok);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_safe_replaces_separators_and_control_bytes),
        cmocka_unit_test(test_safe_bounds_long_values_and_names_empty_ones),
        cmocka_unit_test(test_addresses_parse_or_are_refused),
        cmocka_unit_test(test_ports_outside_1_to_65535_are_refused),
        cmocka_unit_test(test_url_ports_follow_the_same_rule),
        cmocka_unit_test(test_config_addresses_are_checked_when_loaded),
        cmocka_unit_test(test_config_fields_are_typed),
        cmocka_unit_test(test_config_file_errors_are_refused),
    };
    app_json_cleansing_alloc();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
