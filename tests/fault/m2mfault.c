/*
 * m2mfault: a PKCS#11 module for tests that forwards every call to a real module and, driven
 * by its environment, fails or crashes at a chosen call, or only counts calls.
 *
 *   M2M_FAULT_MODULE  the real module to forward to (required).
 *   M2M_FAULT_FUNC    the function whose calls are counted for K ("C_FindObjects"), a comma
 *                     list of functions whose calls count together ("C_CreateObject,
 *                     C_GenerateKey"), or "*" for all calls together. Unset: count only,
 *                     inject nothing.
 *   M2M_FAULT_K       act at the K-th such call (1-based), once; "K+": at the K-th and at
 *                     every later one (a module that refuses, say, every object creation).
 *   M2M_FAULT_ACTION  what to do at that call:
 *                       CKR_<NAME> or 0x<hex>  return that code without forwarding the call.
 *                         CKR_BUFFER_TOO_SMALL from C_GetAttributeValue is the one exception:
 *                         the call is forwarded and its last attribute is then reported as
 *                         unavailable, as PKCS#11 says a too-small buffer is.
 *                       abort-before  abort() instead of forwarding the call;
 *                       abort-after   forward it, then abort() (the write happened, the
 *                                     process died before it learnt so).
 *   M2M_FAULT_REPORT  a file to which each process appends, when it exits, one line per
 *                     function called: "<pid> <function> <calls>", then "<pid> * <total>",
 *                     and, if it acted, "<pid> acted <function> <k> <action>" (written
 *                     before an abort).
 *   M2M_FAULT_TRACE   a file to which every call appends its function's name, one a line:
 *                     for a counting run, so a sweep knows which function the K-th call is.
 *   M2M_FAULT_MAX_SESSIONS  N: act as a module that allows N sessions at once: C_GetTokenInfo
 *                     states ulMaxSessionCount = ulMaxRwSessionCount = N, and C_OpenSession
 *                     returns CKR_SESSION_COUNT while N are open.
 *   M2M_FAULT_MAX_SESSIONS_UNSTATED  set: enforce that limit but leave C_GetTokenInfo's
 *                     counts as the real module states them (as when other applications
 *                     use up a module's sessions).
 *   M2M_FAULT_INIT_ARGS  init args for a real module that needs them (NSS softokn's
 *                     "configdir='sql:DIR' ..."): when the caller's C_Initialize passes no
 *                     pReserved, they go to the real module as CK_C_INITIALIZE_ARGS.pReserved,
 *                     with CKF_OS_LOCKING_OK, so a tool that cannot pass them (pkcs11-tool)
 *                     reaches such a module through this one.
 *
 * The report also carries "<pid> sessions-peak <n>": the most sessions this process had
 * open at once (C_OpenSession less C_CloseSession; C_CloseAllSessions, C_Initialize and
 * C_Finalize start again from none), and "<pid> sessions-refused <n>": the C_OpenSession
 * calls refused with CKR_SESSION_COUNT.
 *
 * Nothing is ever written to stdout or stderr, so a test that finds the call and the CKR
 * named there knows that the program under test named them.
 *
 * Counters are atomic (servers call from several threads); a forked child inherits its
 * parent's counts and reports its own at its exit. The library is marked nodelete so that
 * its counts survive a dlclose and reload within one process.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <p11-kit/pkcs11.h>

typedef unsigned long ul;
typedef unsigned char uc;
typedef CK_SESSION_HANDLE sh;
typedef CK_OBJECT_HANDLE oh;
typedef CK_MECHANISM mech;
typedef CK_ATTRIBUTE attr;

enum {
#define F(name, params, args) FN_##name,
#define G F
#define S F
#include "functions.h"
#undef S
#undef G
#undef F
    FN_COUNT
};

static const char *const names[FN_COUNT] = {
#define F(name, params, args) #name,
#define G F
#define S F
#include "functions.h"
#undef S
#undef G
#undef F
};

typedef enum { ACT_NONE, ACT_RETURN, ACT_ABORT_BEFORE, ACT_ABORT_AFTER } action_kind;

static struct {
    CK_FUNCTION_LIST *real;
    int target; /* FN_*, or FN_COUNT for "*", or -1: count only */
    unsigned long k;
    action_kind act;
    CK_RV rv;
    const char *action_text;
    const char *report;
    int repeat;                      /* "K+": every call from the K-th on */
    unsigned char in_list[FN_COUNT]; /* the listed functions, when target is FN_LIST */
} cfg = {.target = -1};

enum { FN_LIST = FN_COUNT + 1 }; /* target: a comma list of functions, counted together */

static atomic_ulong calls[FN_COUNT];
static atomic_ulong total;
static atomic_ulong listed_calls; /* calls of the listed functions together (FN_LIST) */
static atomic_int acted;
static char *init_args; /* M2M_FAULT_INIT_ARGS */
static int trace_fd = -1;
static unsigned long max_sessions; /* 0: forward C_OpenSession whatever the count */
static int limit_unstated;         /* enforce max_sessions, but state no limit in C_GetTokenInfo */
static atomic_ulong sessions_open, sessions_peak, sessions_refused;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static CK_RV load_status = CKR_GENERAL_ERROR;

/* The codes a sweep or a refusing token injects by name; any other as 0x<hex>. */
static const struct {
    const char *name;
    CK_RV rv;
} codes[] = {
    {"CKR_GENERAL_ERROR", CKR_GENERAL_ERROR},
    {"CKR_HOST_MEMORY", CKR_HOST_MEMORY},
    {"CKR_FUNCTION_FAILED", CKR_FUNCTION_FAILED},
    {"CKR_DEVICE_ERROR", CKR_DEVICE_ERROR},
    {"CKR_DEVICE_MEMORY", CKR_DEVICE_MEMORY},
    {"CKR_DEVICE_REMOVED", CKR_DEVICE_REMOVED},
    {"CKR_SESSION_HANDLE_INVALID", CKR_SESSION_HANDLE_INVALID},
    {"CKR_SESSION_CLOSED", CKR_SESSION_CLOSED},
    {"CKR_OBJECT_HANDLE_INVALID", CKR_OBJECT_HANDLE_INVALID},
    {"CKR_TOKEN_NOT_PRESENT", CKR_TOKEN_NOT_PRESENT},
    {"CKR_USER_NOT_LOGGED_IN", CKR_USER_NOT_LOGGED_IN},
    {"CKR_BUFFER_TOO_SMALL", CKR_BUFFER_TOO_SMALL},
    {"CKR_CRYPTOKI_NOT_INITIALIZED", CKR_CRYPTOKI_NOT_INITIALIZED},
    {"CKR_TEMPLATE_INCONSISTENT", CKR_TEMPLATE_INCONSISTENT},
    {"CKR_TEMPLATE_INCOMPLETE", CKR_TEMPLATE_INCOMPLETE},
    {"CKR_ATTRIBUTE_TYPE_INVALID", CKR_ATTRIBUTE_TYPE_INVALID},
    {"CKR_ATTRIBUTE_VALUE_INVALID", CKR_ATTRIBUTE_VALUE_INVALID},
};

static int parse_action(const char *text)
{
    if (strcmp(text, "abort-before") == 0) {
        cfg.act = ACT_ABORT_BEFORE;
        return 0;
    }
    if (strcmp(text, "abort-after") == 0) {
        cfg.act = ACT_ABORT_AFTER;
        return 0;
    }
    cfg.act = ACT_RETURN;
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (strcmp(text, codes[i].name) == 0) {
            cfg.rv = codes[i].rv;
            return 0;
        }
    char *end = NULL;
    cfg.rv = strtoul(text, &end, 16);
    return strncmp(text, "0x", 2) == 0 && end != NULL && *end == '\0' ? 0 : -1;
}

static int function_index(const char *name, size_t len)
{
    for (int i = 0; i < FN_COUNT; i++)
        if (strlen(names[i]) == len && strncmp(name, names[i], len) == 0)
            return i;
    return -2;
}

/* "*", one function, or a comma list of them (FN_LIST, in cfg.in_list). */
static int parse_target(const char *func)
{
    if (strcmp(func, "*") == 0)
        return FN_COUNT;
    if (strchr(func, ',') == NULL)
        return function_index(func, strlen(func));
    for (const char *p = func; *p != '\0';) {
        size_t len = strcspn(p, ",");
        int i = function_index(p, len);
        if (i < 0)
            return -2;
        cfg.in_list[i] = 1;
        p += len + (p[len] == ',');
    }
    return FN_LIST;
}

/* "K" or "K+"; 0 when malformed. */
static unsigned long parse_k(const char *k)
{
    char *end = NULL;
    unsigned long v = k != NULL ? strtoul(k, &end, 10) : 0;
    if (end == NULL || end == k)
        return 0;
    cfg.repeat = *end == '+';
    return *end == '\0' || (cfg.repeat && end[1] == '\0') ? v : 0;
}

/* Append text to the report file in one write, so processes do not interleave lines. */
static void report_write(const char *text, size_t len)
{
    if (cfg.report == NULL)
        return;
    int fd = open(cfg.report, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    ssize_t n = write(fd, text, len);
    (void)n;
    close(fd);
}

static void report_counts(void)
{
    char buf[8192];
    size_t len = 0;
    long pid = (long)getpid();
    for (int i = 0; i < FN_COUNT && len < sizeof(buf) - 128; i++) {
        unsigned long n = atomic_load(&calls[i]);
        if (n > 0)
            len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%ld %s %lu\n", pid, names[i], n);
    }
    len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%ld * %lu\n", pid, atomic_load(&total));
    len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%ld sessions-peak %lu\n", pid,
                            atomic_load(&sessions_peak));
    len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%ld sessions-refused %lu\n", pid,
                            atomic_load(&sessions_refused));
    report_write(buf, len);
}

static void load(void)
{
    const char *path = getenv("M2M_FAULT_MODULE");
    const char *func = getenv("M2M_FAULT_FUNC");
    const char *k = getenv("M2M_FAULT_K");
    const char *action = getenv("M2M_FAULT_ACTION");
    cfg.report = getenv("M2M_FAULT_REPORT");
    const char *max = getenv("M2M_FAULT_MAX_SESSIONS");
    max_sessions = max != NULL ? strtoul(max, NULL, 10) : 0;
    limit_unstated = getenv("M2M_FAULT_MAX_SESSIONS_UNSTATED") != NULL;
    init_args = getenv("M2M_FAULT_INIT_ARGS");
    if (func != NULL && func[0] != '\0') {
        cfg.target = parse_target(func);
        cfg.k = parse_k(k);
        cfg.action_text = action;
        if (cfg.target == -2 || cfg.k == 0 || action == NULL || parse_action(action) != 0)
            return; /* a mistyped experiment must not silently run as a clean one */
    }
    void *lib = path != NULL ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
    CK_C_GetFunctionList get =
        lib != NULL ? (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList") : NULL;
    if (get == NULL || get(&cfg.real) != CKR_OK || cfg.real == NULL)
        return;
    if (cfg.report != NULL)
        atexit(report_counts);
    const char *trace = getenv("M2M_FAULT_TRACE");
    if (trace != NULL)
        trace_fd = open(trace, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    load_status = CKR_OK;
}

/* Count the call; return the action to take at it. */
static action_kind fault_at(int fn)
{
    unsigned long mine = atomic_fetch_add(&calls[fn], 1) + 1;
    unsigned long all = atomic_fetch_add(&total, 1) + 1;
    if (trace_fd >= 0) {
        char line[64];
        int len = snprintf(line, sizeof(line), "%s\n", names[fn]);
        ssize_t n = write(trace_fd, line, (size_t)len);
        (void)n;
    }
    if (cfg.target < 0 ||
        (cfg.target != fn && cfg.target != FN_COUNT && !(cfg.target == FN_LIST && cfg.in_list[fn])))
        return ACT_NONE;
    unsigned long n = cfg.target == FN_COUNT  ? all
                      : cfg.target == FN_LIST ? atomic_fetch_add(&listed_calls, 1) + 1
                                              : mine;
    if (cfg.repeat ? n < cfg.k : (n != cfg.k || atomic_exchange(&acted, 1)))
        return ACT_NONE;
    char line[160];
    int len = snprintf(line, sizeof(line), "%ld acted %s %lu %s\n", (long)getpid(), names[fn], n,
                       cfg.action_text);
    report_write(line, (size_t)len);
    if (cfg.act == ACT_ABORT_BEFORE) {
        report_counts();
        abort();
    }
    return cfg.act;
}

static void abort_after(void)
{
    report_counts();
    abort();
}

/* PKCS#11: on CKR_BUFFER_TOO_SMALL every attribute was processed and each one that did not
 * fit reports CK_UNAVAILABLE_INFORMATION. */
static CK_RV too_small(sh s, oh h, attr *t, ul n)
{
    CK_RV rv = cfg.real->C_GetAttributeValue(s, h, t, n);
    if (rv != CKR_OK || n == 0)
        return rv;
    t[n - 1].ulValueLen = CK_UNAVAILABLE_INFORMATION;
    return CKR_BUFFER_TOO_SMALL;
}

/* The session count behind sessions-peak and M2M_FAULT_MAX_SESSIONS. */
static CK_RV s_C_OpenSession(CK_SLOT_ID s, CK_FLAGS f, void *a, CK_NOTIFY n, sh *o)
{
    unsigned long now = atomic_fetch_add(&sessions_open, 1) + 1;
    if (max_sessions != 0 && now > max_sessions) {
        atomic_fetch_sub(&sessions_open, 1);
        atomic_fetch_add(&sessions_refused, 1);
        return CKR_SESSION_COUNT;
    }
    CK_RV rv = cfg.real->C_OpenSession(s, f, a, n, o);
    if (rv != CKR_OK) {
        atomic_fetch_sub(&sessions_open, 1);
        return rv;
    }
    unsigned long peak = atomic_load(&sessions_peak);
    while (now > peak && !atomic_compare_exchange_weak(&sessions_peak, &peak, now))
        ;
    return rv;
}

static CK_RV s_C_CloseSession(sh s)
{
    CK_RV rv = cfg.real->C_CloseSession(s);
    if (rv == CKR_OK)
        atomic_fetch_sub(&sessions_open, 1);
    return rv;
}

static CK_RV s_C_CloseAllSessions(CK_SLOT_ID s)
{
    CK_RV rv = cfg.real->C_CloseAllSessions(s);
    if (rv == CKR_OK)
        atomic_store(&sessions_open, 0);
    return rv;
}

/* A forked child's C_Initialize starts with none of its parent's sessions. With
 * M2M_FAULT_INIT_ARGS, a caller's C_Initialize without pReserved gets them added. */
static CK_RV s_C_Initialize(void *a)
{
    CK_C_INITIALIZE_ARGS with = {.flags = CKF_OS_LOCKING_OK};
    CK_C_INITIALIZE_ARGS *given = a;
    if (init_args != NULL && (given == NULL || given->pReserved == NULL)) {
        if (given != NULL)
            with = *given;
        with.flags |= CKF_OS_LOCKING_OK;
        with.pReserved = init_args;
        a = &with;
    }
    CK_RV rv = cfg.real->C_Initialize(a);
    if (rv == CKR_OK)
        atomic_store(&sessions_open, 0);
    return rv;
}

static CK_RV s_C_Finalize(void *r)
{
    CK_RV rv = cfg.real->C_Finalize(r);
    if (rv == CKR_OK)
        atomic_store(&sessions_open, 0);
    return rv;
}

static CK_RV s_C_GetTokenInfo(CK_SLOT_ID s, CK_TOKEN_INFO *i)
{
    CK_RV rv = cfg.real->C_GetTokenInfo(s, i);
    if (rv == CKR_OK && max_sessions != 0 && !limit_unstated) {
        i->ulMaxSessionCount = max_sessions;
        i->ulMaxRwSessionCount = max_sessions;
    }
    return rv;
}

#define F(name, params, args)                                                                      \
    static CK_RV w_##name params                                                                   \
    {                                                                                              \
        action_kind act = fault_at(FN_##name);                                                     \
        if (act == ACT_RETURN)                                                                     \
            return cfg.rv;                                                                         \
        CK_RV rv = cfg.real->name args;                                                            \
        if (act == ACT_ABORT_AFTER)                                                                \
            abort_after();                                                                         \
        return rv;                                                                                 \
    }
#define G(name, params, args)                                                                      \
    static CK_RV w_##name params                                                                   \
    {                                                                                              \
        action_kind act = fault_at(FN_##name);                                                     \
        if (act == ACT_RETURN && cfg.rv == CKR_BUFFER_TOO_SMALL)                                   \
            return too_small args;                                                                 \
        if (act == ACT_RETURN)                                                                     \
            return cfg.rv;                                                                         \
        CK_RV rv = cfg.real->name args;                                                            \
        if (act == ACT_ABORT_AFTER)                                                                \
            abort_after();                                                                         \
        return rv;                                                                                 \
    }
#define S(name, params, args)                                                                      \
    static CK_RV w_##name params                                                                   \
    {                                                                                              \
        action_kind act = fault_at(FN_##name);                                                     \
        if (act == ACT_RETURN)                                                                     \
            return cfg.rv;                                                                         \
        CK_RV rv = s_##name args;                                                                  \
        if (act == ACT_ABORT_AFTER)                                                                \
            abort_after();                                                                         \
        return rv;                                                                                 \
    }
#include "functions.h"
#undef S
#undef G
#undef F

static CK_RV w_C_GetFunctionList(CK_FUNCTION_LIST **out);

static CK_FUNCTION_LIST functions = {
    .version = {2, 40},
#define F(name, params, args) .name = w_##name,
#define G F
#define S F
#include "functions.h"
#undef S
#undef G
#undef F
    .C_GetFunctionList = w_C_GetFunctionList,
};

static CK_RV w_C_GetFunctionList(CK_FUNCTION_LIST **out)
{
    if (out == NULL)
        return CKR_ARGUMENTS_BAD;
    pthread_once(&once, load);
    if (load_status != CKR_OK)
        return load_status;
    *out = &functions;
    return CKR_OK;
}

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST **out)
{
    return w_C_GetFunctionList(out);
}
