/* virt.c: see virt.h. */
#include "node/virt.h"
#include "node/cpumode.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/config.h"
#include "base/names.h"
#include "base/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libvirt/virterror.h>
#include <libxml/globals.h>
#include <libxml/xmlerror.h>

static void quiet_handler(void *opaque, virErrorPtr err)
{
    (void)opaque;
    (void)err;
}

/* libxml2's generic error handler prints straight to stderr (the test://
 * driver parses its fixture in-process, e.g. "I/O warning : failed to load
 * external entity"). Route those messages through our log, so every stderr
 * line keeps the log format (log_format: json). libxml2 calls it with
 * fragments of a line: collect them per thread until the newline. */
static _Thread_local char xml_msg[512];

static void xml_generic_error(void *ctx, const char *fmt, ...)
{
    (void)ctx;
    size_t n = strlen(xml_msg);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(xml_msg + n, sizeof xml_msg - n, fmt, ap);
    va_end(ap);
    n = strlen(xml_msg);
    if (n && (xml_msg[n - 1] == '\n' || n + 1 >= sizeof xml_msg)) {
        while (n && (xml_msg[n - 1] == '\n' || xml_msg[n - 1] == ' '))
            xml_msg[--n] = '\0';
        if (n)
            log_debug("libxml2: %s", xml_msg);
        xml_msg[0] = '\0';
    }
}

static pthread_once_t virt_once = PTHREAD_ONCE_INIT;
static bool virt_events;
static _Atomic int ka_interval = 5, ka_count = 3, open_limit_s = 30;
/* Connection attempts given up on (virt_open) whose thread still waits. */
#define VIRT_OPENS_HUNG_MAX 64
static atomic_int opens_hung;

/* The process's libvirt event loop: runs until the process exits. */
static void *virt_event_loop(void *arg)
{
    (void)arg;
    for (;;) {
        if (virEventRunDefaultImpl() < 0) {
            virErrorPtr err = virGetLastError();
            log_warn("libvirt event loop: %s", err && err->message ? err->message : "error");
            sleep(1);
        }
    }
    return NULL;
}

static void virt_init_once(void)
{
    virInitialize();
    virSetErrorFunc(NULL, quiet_handler);
    /* this thread, and (ThrDef) every thread started from now on */
    xmlSetGenericErrorFunc(NULL, xml_generic_error);
    xmlThrDefSetGenericErrorFunc(NULL, xml_generic_error);
    /* Domain events (worker/node/watch.c) and keepalive need an event loop
     * registered before the first virConnectOpen of the process, AND a
     * thread running it: once a loop is registered, every remote connection
     * tells libvirtd it can answer keepalive pings, and libvirtd drops a
     * connection idle for ~30 s whose pings go unanswered ("Cannot write
     * data: Broken pipe" on the next call; SIGPIPE where it is not ignored).
     * So the loop runs in its own detached thread, in every process, from
     * here on. */
    if (virEventRegisterDefaultImpl() < 0) {
        log_warn("virEventRegisterDefaultImpl failed: no libvirt domain events");
        return;
    }
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, virt_event_loop, NULL) != 0)
        log_error("cannot start the libvirt event loop thread: idle remote connections will be "
                  "dropped by libvirtd after about 30 s");
    else
        virt_events = true;
    pthread_attr_destroy(&attr);
}

bool virt_events_running(void)
{
    virt_init();
    return virt_events;
}

void virt_init(void)
{
    pthread_once(&virt_once, virt_init_once);
}

vcl_err_class virt_classify(int domain, int code)
{
    switch (code) {
    case VIR_ERR_XML_ERROR:
    case VIR_ERR_XML_DETAIL:
    case VIR_ERR_XML_INVALID_SCHEMA:
    case VIR_ERR_CONFIG_UNSUPPORTED:
    case VIR_ERR_NO_SUPPORT:
    case VIR_ERR_INVALID_ARG:
    case VIR_ERR_NO_DOMAIN_METADATA:
    case VIR_ERR_AUTH_FAILED:
    case VIR_ERR_ACCESS_DENIED:
        return VCL_ERR_PERMANENT;
    default:
        (void)domain;
        /* SYSTEM_ERROR, RPC, NO_CONNECT, OPERATION_TIMEOUT, INTERNAL_ERROR,
         * OPERATION_FAILED, resource busy ...: a later attempt may succeed. */
        return VCL_ERR_RETRYABLE;
    }
}

/* Call right after the failing API, with arguments computed before it: every
 * public libvirt call (virDomainGetName too) resets the thread's last error. */
bool virt_error(vcl_error *e, int *code, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    virErrorPtr err = virGetLastError();
    metrics_libvirt_error();
    if (code)
        *code = err ? err->code : -1;
    if (!err)
        return vcl_error_set(e, VCL_ERR_RETRYABLE, "%s: unknown libvirt error", what);
    vcl_error_set(e, virt_classify(err->domain, err->code), "%s: %s", what,
                  err->message ? err->message : "libvirt error");
    return false;
}

void virt_set_keepalive(int interval_s, int count)
{
    atomic_store(&ka_interval, interval_s > 0 ? interval_s : 0);
    atomic_store(&ka_count, count > 0 ? count : 1);
}

void virt_set_connect_timeout(int seconds)
{
    atomic_store(&open_limit_s, seconds > 0 ? seconds : 0);
}

/* One virConnectOpen in a thread of its own, so the caller can stop
 * waiting: libvirt has no deadline for an open (a daemon that accepted the
 * socket but does not answer, an ssh that never completes). The caller and
 * the thread each hold a reference; whoever drops the last frees it. A
 * connection that opens after the caller gave up is closed at once. */
typedef struct open_call {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    bool done, gave_up;
    char *uri;
    virConnectPtr conn;
    int code, domain;
    char msg[512];
} open_call;

static void open_call_unref(open_call *oc)
{
    pthread_mutex_lock(&oc->mu);
    bool last = --oc->refs == 0;
    pthread_mutex_unlock(&oc->mu);
    if (!last)
        return;
    pthread_cond_destroy(&oc->cv);
    pthread_mutex_destroy(&oc->mu);
    free(oc->uri);
    free(oc);
}

static void *open_main(void *arg)
{
    open_call *oc = arg;
    virConnectPtr c = virConnectOpen(oc->uri);
    virErrorPtr err = c ? NULL : virGetLastError();
    pthread_mutex_lock(&oc->mu);
    bool gave_up = oc->gave_up;
    oc->conn = c;
    oc->code = err ? err->code : -1;
    oc->domain = err ? err->domain : 0;
    snprintf(oc->msg, sizeof oc->msg, "%s", err && err->message ? err->message : "unknown libvirt error");
    oc->done = true;
    pthread_cond_signal(&oc->cv);
    pthread_mutex_unlock(&oc->mu);
    if (gave_up) {
        if (c)
            virConnectClose(c);
        atomic_fetch_sub(&opens_hung, 1);
        log_info("libvirt at %s answered the connection attempt given up on (%s)", oc->uri,
                 c ? "closed it" : oc->msg);
    }
    open_call_unref(oc);
    return NULL;
}

/* virConnectOpen, waiting at most limit_s. NULL + e when it fails or when
 * it did not answer in time. */
static virConnectPtr open_bounded(const char *uri, int limit_s, vcl_error *e)
{
    if (atomic_load(&opens_hung) >= VIRT_OPENS_HUNG_MAX) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "cannot connect to libvirt at %s: %d earlier "
                      "connection attempts are still hanging", uri, VIRT_OPENS_HUNG_MAX);
        return NULL;
    }
    open_call *oc = calloc(1, sizeof *oc);
    if (!oc || !(oc->uri = strdup(uri))) {
        free(oc);
        vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory connecting to libvirt at %s", uri);
        return NULL;
    }
    pthread_mutex_init(&oc->mu, NULL);
    pthread_cond_init(&oc->cv, NULL);
    oc->refs = 2;
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &attr, open_main, oc);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        oc->refs = 1;
        open_call_unref(oc);
        /* no thread to spare: open here, unbounded */
        virConnectPtr c = virConnectOpen(uri);
        if (!c)
            virt_error(e, NULL, "cannot connect to libvirt at %s", uri);
        return c;
    }
    struct timespec until = util_realtime_in(limit_s);
    virConnectPtr c = NULL;
    pthread_mutex_lock(&oc->mu);
    while (!oc->done && pthread_cond_timedwait(&oc->cv, &oc->mu, &until) == 0)
        ;
    if (!oc->done) {
        oc->gave_up = true;
        atomic_fetch_add(&opens_hung, 1);
        vcl_error_set(e, VCL_ERR_RETRYABLE, "libvirt at %s did not answer within %d s "
                      "(connecting)", uri, limit_s);
    } else if (!(c = oc->conn)) {
        metrics_libvirt_error();
        vcl_error_set(e, virt_classify(oc->domain, oc->code), "cannot connect to libvirt at %s: %s",
                      uri, oc->msg);
    }
    pthread_mutex_unlock(&oc->mu);
    open_call_unref(oc);
    return c;
}


/* ------------------------------------------------------------ URI check */

static pthread_mutex_t keyfile_mu = PTHREAD_MUTEX_INITIALIZER;
static char allowed_keyfile[PATH_MAX];

void virt_set_ssh_keyfile(const char *path)
{
    pthread_mutex_lock(&keyfile_mu);
    snprintf(allowed_keyfile, sizeof allowed_keyfile, "%s", path ? path : "");
    pthread_mutex_unlock(&keyfile_mu);
}

/* One query parameter "name=value" of an ssh URI ([b, end)); why gets the
 * reason when it is refused. */
static bool uri_param_ok(const char *b, const char *end, char *why, size_t wlen)
{
    static const char *const allowed[] = { "keyfile", "known_hosts", "known_hosts_verify",
                                            "sshauth", "no_tty" };
    const char *eq = memchr(b, '=', (size_t)(end - b));
    size_t nl = eq ? (size_t)(eq - b) : (size_t)(end - b);
    char name[32], value[PATH_MAX];
    size_t vl = eq ? (size_t)(end - eq - 1) : 0;

    if (nl == 0 || nl >= sizeof name || vl >= sizeof value) {
        snprintf(why, wlen, "a query parameter is empty or too long");
        return false;
    }
    memcpy(name, b, nl);
    name[nl] = '\0';
    if (eq)
        memcpy(value, eq + 1, vl);
    value[vl] = '\0';
    bool known = false;
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        known = known || strcmp(name, allowed[i]) == 0;
    if (!known) {
        snprintf(why, wlen,
                 "query parameter '%.31s' is not allowed (command=, socket=, netcat=, proxy= and "
                 "no_verify could run programs or switch host-key checks off; allowed: keyfile, "
                 "known_hosts, known_hosts_verify=normal, sshauth, no_tty)", name);
        return false;
    }
    if (strcmp(name, "known_hosts_verify") == 0 && strcmp(value, "normal") != 0) {
        snprintf(why, wlen, "known_hosts_verify=%.40s would not verify the node's host key "
                 "(only known_hosts_verify=normal is allowed)", value);
        return false;
    }
    if (strcmp(name, "keyfile") == 0 || strcmp(name, "known_hosts") == 0) {
        /* absolute, no "." or ".." component (hidden directories like
         * ~/.ssh are fine); the characters were checked for the whole URI */
        bool dots = false;
        for (const char *c = strstr(value, "/."); c && !dots; c = strstr(c + 1, "/."))
            dots = c[2] == '/' || c[2] == '\0' || (c[2] == '.' && (c[3] == '/' || c[3] == '\0'));
        if (value[0] != '/' || dots) {
            snprintf(why, wlen, "%s=%.200s must be an absolute path without '.' or '..' "
                     "components", name, value);
            return false;
        }
    }
    if (strcmp(name, "keyfile") == 0) {
        pthread_mutex_lock(&keyfile_mu);
        bool match = !allowed_keyfile[0] || strcmp(allowed_keyfile, value) == 0;
        pthread_mutex_unlock(&keyfile_mu);
        if (!match) {
            snprintf(why, wlen, "keyfile=%.200s is not the configured ssh_private_key", value);
            return false;
        }
    }
    return true;
}

/* "[user@]host[:port]" of an ssh URI: user a strict name, host a name or an
 * IPv4/[IPv6] literal, port digits. */
static bool uri_authority_ok(const char *b, const char *end)
{
    const char *at = memchr(b, '@', (size_t)(end - b));
    if (at) {
        char user[NAME_MAX_LEN + 1];
        size_t ul = (size_t)(at - b);
        if (ul == 0 || ul > NAME_MAX_LEN)
            return false;
        memcpy(user, b, ul);
        user[ul] = '\0';
        if (!name_valid(user))
            return false;
        b = at + 1;
    }
    if (b == end || *b == '-')
        return false;
    const char *p = b;
    if (*p == '[') {
        while (p < end && *p != ']') {
            if (!strchr("0123456789abcdefABCDEF:.[", *p))
                return false;
            p++;
        }
        if (p == end)
            return false;
        p++;
    } else {
        while (p < end && *p != ':') {
            unsigned char c = (unsigned char)*p;
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == '_'))
                return false;
            p++;
        }
        if (p == b)
            return false;
    }
    if (p < end) {
        if (*p != ':' || p + 1 == end || end - p > 6)
            return false;
        for (p++; p < end; p++)
            if (*p < '0' || *p > '9')
                return false;
    }
    return true;
}

bool virt_uri_check(const char *uri, vcl_error *e)
{
    const char *why = NULL;
    char buf[PATH_MAX + 256];
    char shown[260];

    if (!uri || !uri[0])
        return vcl_error_set(e, VCL_ERR_PERMANENT, "no libvirt URI given");
    for (const unsigned char *c = (const unsigned char *)uri; *c; c++) {
        if (*c <= 0x20 || *c >= 0x7f || *c == '#' || *c == ';' || *c == '%' || *c == '\\' ||
            *c == '"' || *c == '\'') {
            why = "it holds a blank, a control or non-ASCII character, or one of # ; % \\ \" '";
            goto refused;
        }
    }
    if (strcmp(uri, "qemu:///system") == 0 || strcmp(uri, "qemu:///session") == 0)
        return true;
    if (strncmp(uri, "test:///", 8) == 0) {
        if (strchr(uri, '?')) {
            why = "the test driver takes no query parameters";
            goto refused;
        }
        return true;
    }
    const char *rest = NULL;
    if (strncmp(uri, "qemu+libssh2://", 15) == 0)
        rest = uri + 15;
    else if (strncmp(uri, "qemu+ssh://", 11) == 0)
        rest = uri + 11;
    if (!rest) {
        why = "only qemu:///system, qemu:///session, qemu+libssh2://, qemu+ssh:// and test:/// "
              "are supported (no ext, unix, tcp or tls transport; qemu:/// takes no query)";
        goto refused;
    }
    const char *slash = strchr(rest, '/');
    if (!slash || !uri_authority_ok(rest, slash)) {
        why = "the host part must be [user@]host[:port]";
        goto refused;
    }
    const char *q = strchr(slash, '?');
    size_t pl = q ? (size_t)(q - slash) : strlen(slash);
    if (!((pl == 7 && strncmp(slash, "/system", 7) == 0) ||
          (pl == 8 && strncmp(slash, "/session", 8) == 0))) {
        why = "the path must be /system or /session";
        goto refused;
    }
    if (q) {
        const char *p = q + 1;
        if (!*p) {
            why = "an empty query";
            goto refused;
        }
        while (*p) {
            const char *amp = strchr(p, '&');
            const char *pe = amp ? amp : p + strlen(p);
            if (!uri_param_ok(p, pe, buf, sizeof buf)) {
                why = buf;
                goto refused;
            }
            p = amp ? amp + 1 : pe;
            if (amp && !*p) {
                why = "an empty query parameter";
                goto refused;
            }
        }
    }
    return true;
refused:
    names_show(uri, shown, sizeof shown);
    return vcl_error_set(e, VCL_ERR_PERMANENT, "libvirt URI '%s' refused: %s", shown, why);
}

/* The keyfile= of a checked URI must be private, as ssh demands. */
static bool uri_keyfile_private(const char *uri, vcl_error *e)
{
    const char *q = strchr(uri, '?');
    char key[PATH_MAX];
    for (const char *p = q; p; p = strchr(p + 1, '&')) {
        if (strncmp(p + 1, "keyfile=", 8) != 0)
            continue;
        size_t n = strcspn(p + 9, "&");
        snprintf(key, sizeof key, "%.*s", (int)n, p + 9);
        if (!config_key_file_check(key, e))
            return false;
    }
    return true;
}

virConnectPtr virt_open(const char *uri, vcl_error *e)
{
    if (!virt_uri_check(uri, e) || !uri_keyfile_private(uri, e))
        return NULL;
    virt_init();
    int limit = atomic_load(&open_limit_s);
    virConnectPtr c = NULL;
    if (limit > 0) {
        c = open_bounded(uri, limit, e);
    } else if (!(c = virConnectOpen(uri))) {
        virt_error(e, NULL, "cannot connect to libvirt at %s", uri);
    }
    if (!c) {
        e->cls = VCL_ERR_RETRYABLE; /* the node may come back */
        return NULL;
    }
    int interval = atomic_load(&ka_interval), count = atomic_load(&ka_count);
    if (interval > 0 && virConnectSetKeepAlive(c, interval, (unsigned)count) < 0) {
        /* In-process drivers (test:///) have no keepalive; anything else is
         * worth a line, but the connection still works. */
        virErrorPtr err = virGetLastError();
        if (!err || err->code != VIR_ERR_NO_SUPPORT)
            log_warn("libvirt keepalive on %s not enabled: %s", uri,
                     err && err->message ? err->message : "unknown error");
        virResetLastError();
    }
    return c;
}

void virt_close(virConnectPtr conn)
{
    if (conn)
        virConnectClose(conn);
}

const char *virt_state_name(int state)
{
    switch (state) {
    case VIR_DOMAIN_NOSTATE: return "nostate";
    case VIR_DOMAIN_RUNNING: return "running";
    case VIR_DOMAIN_BLOCKED: return "blocked";
    case VIR_DOMAIN_PAUSED: return "paused";
    case VIR_DOMAIN_SHUTDOWN: return "shutting-down";
    case VIR_DOMAIN_SHUTOFF: return "shutoff";
    case VIR_DOMAIN_CRASHED: return "crashed";
    case VIR_DOMAIN_PMSUSPENDED: return "suspended";
    default: return "unknown";
    }
}

static bool lookup_result(virDomainPtr d, virDomainPtr *dom, vcl_error *e, const char *how,
                          const char *key)
{
    *dom = d;
    if (d)
        return true;
    virErrorPtr err = virGetLastError();
    if (err && err->code == VIR_ERR_NO_DOMAIN)
        return true;
    return virt_error(e, NULL, "looking up domain by %s %s", how, key);
}

bool virt_lookup_uuid(virConnectPtr conn, const char *uuid, virDomainPtr *dom, vcl_error *e)
{
    virResetLastError();
    return lookup_result(virDomainLookupByUUIDString(conn, uuid), dom, e, "uuid", uuid);
}

bool virt_lookup_name(virConnectPtr conn, const char *name, virDomainPtr *dom, vcl_error *e)
{
    virResetLastError();
    return lookup_result(virDomainLookupByName(conn, name), dom, e, "name", name);
}

bool virt_domain_state(virDomainPtr dom, int *state, vcl_error *e)
{
    int reason = 0;
    const char *name = virDomainGetName(dom);
    if (virDomainGetState(dom, state, &reason, 0) < 0)
        return virt_error(e, NULL, "reading state of domain %s", name);
    return true;
}

bool virt_domain_stop(virDomainPtr dom, vcl_error *e)
{
    int st = 0;
    const char *name = virDomainGetName(dom);
    if (!virt_domain_state(dom, &st, e))
        return false;
    if (st == VIR_DOMAIN_SHUTOFF)
        return true;
    if (virDomainDestroy(dom) == 0)
        return true;
    int code = 0;
    virt_error(e, &code, "destroying domain %s", name);
    /* raced with a guest that stopped by itself */
    if (code == VIR_ERR_NO_DOMAIN ||
        (virt_domain_state(dom, &st, &(vcl_error){ 0 }) && st == VIR_DOMAIN_SHUTOFF)) {
        vcl_error_clear(e);
        return true;
    }
    return false;
}

bool virt_domain_undefine(virDomainPtr dom, vcl_error *e)
{
    static const unsigned flagsets[] = {
        VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
            VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | VIR_DOMAIN_UNDEFINE_NVRAM,
        VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
        0,
    };
    int code = 0;
    const char *name = virDomainGetName(dom);
    for (size_t i = 0; i < sizeof flagsets / sizeof *flagsets; i++) {
        if ((i == 2 ? virDomainUndefine(dom) : virDomainUndefineFlags(dom, flagsets[i])) == 0)
            return true;
        virt_error(e, &code, "undefining domain %s", name);
        if (code == VIR_ERR_NO_DOMAIN) {
            vcl_error_clear(e);
            return true;
        }
        if (code != VIR_ERR_INVALID_ARG && code != VIR_ERR_NO_SUPPORT &&
            code != VIR_ERR_CONFIG_UNSUPPORTED)
            return false;
    }
    return false;
}

bool virt_domain_start(virDomainPtr dom, vcl_error *e)
{
    int st = 0;
    const char *name = virDomainGetName(dom);
    if (!virt_domain_state(dom, &st, e))
        return false;
    if (st == VIR_DOMAIN_RUNNING || st == VIR_DOMAIN_BLOCKED)
        return true;
    if (st == VIR_DOMAIN_PAUSED)
        return virDomainResume(dom) == 0 ? true
                                         : virt_error(e, NULL, "resuming domain %s", name);
    if (virDomainCreate(dom) == 0)
        return true;
    virt_error(e, NULL, "starting domain %s", name);
    if (cpu_start_unexplained(e->msg)) {
        /* QEMU died before libvirt could read why: once more, so the error
         * that reaches the reservation (and its class) says why */
        log_info("start of %s: QEMU died without a reason (%s): starting once more", name, e->msg);
        if (virDomainCreate(dom) == 0) {
            vcl_error_clear(e);
            return true;
        }
        virt_error(e, NULL, "starting domain %s", name);
    }
    if (virt_domain_state(dom, &st, &(vcl_error){ 0 }) && st == VIR_DOMAIN_RUNNING) {
        vcl_error_clear(e);
        return true;
    }
    return false;
}

char *virt_domain_xml(virDomainPtr dom, vcl_error *e)
{
    const char *name = virDomainGetName(dom);
    char *x = virDomainGetXMLDesc(dom, 0);
    if (!x)
        virt_error(e, NULL, "reading XML of domain %s", name);
    return x;
}
