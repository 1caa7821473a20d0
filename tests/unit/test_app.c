/* The services' shared helpers: log values cannot forge fields or lines, configuration
 * errors name the file and field, unknown fields and duplicates are refused, PIN files must
 * be private, addresses parse or are refused, and jansson's freed memory is wiped. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/apps/common/app.h"

/* What a call wrote on stderr, and the log line that app_log writes (without "time=… "). */
static char logged[8192];
#define LOGGED(...) (capture_begin(), app_log(__VA_ARGS__), log_fields())
#define STDERR_OF(call) (capture_begin(), (void)(call), capture_end())

static FILE *capture_file;
static int saved_stderr = -1;

static void capture_begin(void)
{
    fflush(stderr);
    capture_file = tmpfile();
    assert_non_null(capture_file);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(dup2(fileno(capture_file), STDERR_FILENO) >= 0);
}

static const char *capture_end(void)
{
    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    rewind(capture_file);
    size_t n = fread(logged, 1, sizeof(logged) - 1, capture_file);
    fclose(capture_file);
    logged[n] = '\0';
    return logged;
}

/* Everything from "event=" on, and 1 line exactly. */
static const char *log_fields(void)
{
    size_t n = strlen(capture_end());
    assert_true(n > 0 && logged[n - 1] == '\n');
    assert_ptr_equal(strchr(logged, '\n'), logged + n - 1);
    logged[n - 1] = '\0';
    const char *ev = strstr(logged, " event=");
    assert_non_null(ev);
    assert_true(strncmp(logged, "time=", 5) == 0);
    return ev + 1;
}

/* The case of the issue: an unauthenticated psk_identity with a newline and a forged event. */
static void test_log_quotes_a_forged_identity(void **state)
{
    (void)state;
    assert_string_equal(
        LOGGED(APP_WARN, "rejected-unknown", "kpm_id=%s", "kpm-lab-0001\nevent=enrolled"),
        "event=rejected-unknown kpm_id=\"kpm-lab-0001\\x0aevent\\x3denrolled\"");
    assert_null(strstr(logged, "event=enrolled"));
    assert_string_equal(
        LOGGED(APP_WARN, "rejected-unknown", "kpm_id=%s", "x event=enrolled kpm_id=kpm-lab-0001"),
        "event=rejected-unknown kpm_id=\"x event\\x3denrolled kpm_id\\x3dkpm-lab-0001\"");
    assert_null(strstr(logged, "event=enrolled"));
    assert_null(strstr(logged, " kpm_id=kpm"));
}

static void test_log_escapes_quotes_backslashes_and_bytes(void **state)
{
    (void)state;
    assert_string_equal(LOGGED(APP_INFO, "e", "a=%s b=%s", "\" x=\"1", "\\\" c=2"),
                        "event=e a=\"\\\" x\\x3d\\\"1\" b=\"\\\\\\\" c\\x3d2\"");
    assert_string_equal(LOGGED(APP_INFO, "e", "a=%s", "\t\r\x7f\xc3\xa9 ok"),
                        "event=e a=\"\\x09\\x0d\\x7f\\xc3\\xa9 ok\"");
}

/* Plain values are unchanged, so that greps like "event=fetched ke_id=$KE1" keep working. */
static void test_log_keeps_plain_values_and_formats_numbers(void **state)
{
    (void)state;
    assert_string_equal(
        LOGGED(APP_INFO, "enrolled", "kpm_id=%s ke_id=%s peer=%s cipher=%s n=%zu t=%lld s=%d u=%u",
               "kpm-lab-0001", "0A1B@mef.example.com", "127.0.0.1:4433", "TLS_AES_128_GCM_SHA256",
               (size_t)42, -7LL, -1, 3u),
        "event=enrolled kpm_id=kpm-lab-0001 ke_id=0A1B@mef.example.com peer=127.0.0.1:4433 "
        "cipher=TLS_AES_128_GCM_SHA256 n=42 t=-7 s=-1 u=3");
    assert_string_equal(LOGGED(APP_INFO, "e", "a=%s b=%s reason=\"literal text\" pct=100%%", "",
                               getenv("M2M_TEST_UNSET_VARIABLE")), /* NULL, unseen by gcc */
                        "event=e a=\"\" b=- reason=\"literal text\" pct=100%");
    assert_string_equal(LOGGED(APP_INFO, "e", "x=%lu y=%lx z=%zd", 42ul, 255ul, (ssize_t)-3),
                        "event=e x=42 y=ff z=-3");
}

/* A %s that is not a value is a list of fields: kept, but it cannot end the line. */
static void test_log_field_lists_cannot_end_the_line(void **state)
{
    (void)state;
    assert_string_equal(LOGGED(APP_INFO, "ready", "%s", "mef_fqdn=mef.example.com"),
                        "event=ready mef_fqdn=mef.example.com");
    assert_string_equal(LOGGED(APP_INFO, "ready", "%s", "a=1\nevent=enrolled \"q\""),
                        "event=ready a=1\\x0aevent=enrolled \\\"q\\\"");
}

static void test_log_bounds_values_and_lines(void **state)
{
    (void)state;
    char big[1000];
    memset(big, 'A', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    const char *f = LOGGED(APP_INFO, "e", "a=%s b=1", big);
    assert_int_equal(strlen(f), strlen("event=e a=") + 256 + 3 + strlen(" b=1"));
    assert_string_equal(f + strlen(f) - 8, "A... b=1");
    f = LOGGED(APP_INFO, "e", "a=%.79s b=%.3s c=%.3s d=%.300s", big, "xy z", "ab", "12345");
    assert_string_equal(f + strlen("event=e a=") + 79, "... b=\"xy ...\" c=ab d=12345");
    memset(big, '\n', sizeof(big) - 1); /* 4 bytes each once escaped */
    f = LOGGED(APP_INFO, "e", "a=%s b=%s c=%s d=%s e=%s f=%s g=%s", big, big, big, big, big, big,
               big);
    assert_true(strlen(logged) < 2048);
    assert_string_equal(f + strlen(f) - 15, " truncated=true");
    /* no value was cut inside its quotes: every value before the mark is closed */
    assert_string_equal(f + strlen(f) - 19, "...\" truncated=true");
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

static void test_config_unknown_fields_are_refused(void **state)
{
    (void)state;
    static const char *const known[] = {"fqdn", "sweep_interval", NULL};
    json_t *o = json_pack("{s:s,s:i}", "fqdn", "mef.example.com", "sweep_intervall", 5);
    assert_int_equal(app_cfg_known(o, "mef.json", "mef", known), -1);
    assert_string_equal(STDERR_OF(app_cfg_known(o, "mef.json", "mef", known)),
                        "config mef.json: mef.sweep_intervall: unknown field\n");
    assert_string_equal(STDERR_OF(app_cfg_known(o, "/etc/m2m/mef.json", "", known)),
                        "config /etc/m2m/mef.json: sweep_intervall: unknown field\n");
    json_object_del(o, "sweep_intervall");
    assert_int_equal(app_cfg_known(o, "mef.json", "mef", known), 0);
    json_object_set_new(o, "FQDN", json_string("case matters"));
    assert_string_equal(STDERR_OF(app_cfg_known(o, "f", "enrolees[3]", known)),
                        "config f: enrolees[3].FQDN: unknown field\n");
    json_decref(o);
    json_t *empty = json_object();
    assert_int_equal(app_cfg_known(empty, "f", "", known), 0);
    json_decref(empty);
}

static void test_config_duplicates_are_refused(void **state)
{
    (void)state;
    json_t *l = json_pack("[{s:s},{s:s},{s:i},{s:s},{s:s}]", "kpm_id", "kpm-1", "kpm_id", "kpm-2",
                          "kpm_id", 7, "other", "kpm-1", "kpm_id", "kpm-3");
    assert_int_equal(app_cfg_unique(l, "mef.json", "enrolees", "kpm_id"), 0);
    json_array_append_new(l, json_pack("{s:s}", "kpm_id", "kpm-2"));
    assert_string_equal(STDERR_OF(app_cfg_unique(l, "mef.json", "enrolees", "kpm_id")),
                        "config mef.json: enrolees[5].kpm_id: \"kpm-2\" is listed twice (also "
                        "enrolees[1])\n");
    assert_int_equal(app_cfg_unique(l, "mef.json", "enrolees", "kpm_id"), -1);
    json_decref(l);
    l = json_pack("[{s:s,s:s},{s:s,s:s}]", "fqdn", "mef.example.com", "url", "https://a", "fqdn",
                  "mef.example.com", "url", "https://b");
    assert_int_equal(app_cfg_unique(l, "maf.json", "mefs", "fqdn"), -1);
    assert_int_equal(app_cfg_unique(l, "maf.json", "mefs", "url"), 0);
    json_decref(l);
}

/* PIN files: only a regular file that group and others can neither read nor write. The check
 * comes before the module is loaded: a refused PIN file changes nothing anywhere. */
static void test_pin_files_must_be_private(void **state)
{
    (void)state;
    char dir[] = "/tmp/m2m-test-pin-XXXXXX", pin[64], src[80];
    assert_non_null(mkdtemp(dir));
    snprintf(pin, sizeof(pin), "%s/user.pin", dir);
    snprintf(src, sizeof(src), "file:%s", pin);
    FILE *f = fopen(pin, "w");
    assert_non_null(f);
    fputs("1234\n", f);
    fclose(f);
    static const mode_t loose[] = {0640, 0604, 0620, 0602, 0644, 0666, 0700 | 0010};
    char want[128];
    for (size_t i = 0; i < sizeof(loose) / sizeof(loose[0]); i++) {
        assert_int_equal(chmod(pin, loose[i]), 0);
        assert_int_equal(m2mhsm_token_init("/nonexistent.so", "t", src, src), M2MHSM_E_PIN);
        snprintf(want, sizeof(want), "pin-source %s: mode %04o lets group or others", pin,
                 (unsigned)loose[i]);
        assert_non_null(strstr(m2mhsm_last_error(), want));
    }
    snprintf(src, sizeof(src), "file:%s", dir);
    assert_int_equal(m2mhsm_token_init("/nonexistent.so", "t", src, src), M2MHSM_E_PIN);
    assert_non_null(strstr(m2mhsm_last_error(), "not a regular file"));
    /* 0600 and 0400 pass the check: what fails then is the module */
    snprintf(src, sizeof(src), "file:%s", pin);
    assert_int_equal(chmod(pin, 0600), 0);
    assert_int_equal(m2mhsm_token_init("/nonexistent.so", "t", src, src), M2MHSM_E_MODULE);
    assert_int_equal(chmod(pin, 0400), 0);
    assert_int_equal(m2mhsm_token_init("/nonexistent.so", "t", src, src), M2MHSM_E_MODULE);
    unlink(pin);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_quotes_a_forged_identity),
        cmocka_unit_test(test_log_escapes_quotes_backslashes_and_bytes),
        cmocka_unit_test(test_log_keeps_plain_values_and_formats_numbers),
        cmocka_unit_test(test_log_field_lists_cannot_end_the_line),
        cmocka_unit_test(test_log_bounds_values_and_lines),
        cmocka_unit_test(test_addresses_parse_or_are_refused),
        cmocka_unit_test(test_ports_outside_1_to_65535_are_refused),
        cmocka_unit_test(test_url_ports_follow_the_same_rule),
        cmocka_unit_test(test_config_addresses_are_checked_when_loaded),
        cmocka_unit_test(test_config_fields_are_typed),
        cmocka_unit_test(test_config_file_errors_are_refused),
        cmocka_unit_test(test_config_unknown_fields_are_refused),
        cmocka_unit_test(test_config_duplicates_are_refused),
        cmocka_unit_test(test_pin_files_must_be_private),
    };
    app_json_cleansing_alloc();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
