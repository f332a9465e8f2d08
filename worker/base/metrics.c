/* metrics.c: Prometheus metrics over HTTP (libmicrohttpd); see metrics.h.
 *
 * Every value is a "series": a metric (a row of metric_defs[]) plus up to two
 * label values. Series live in one array guarded by one mutex, found by a
 * linear search: a worker has a few hundred at most (operations x stages),
 * and events come at job and stage boundaries, not in tight loops (a batched
 * noop claim is the busiest caller: one lookup per claimed row). The number
 * of series is capped so label values that come from the database (an
 * operation name nobody supports) cannot grow it without bound. */
#include "base/metrics.h"
#include "base/log.h"
#include "base/util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define LABEL_MAX 64
#define SERIES_MAX 2048

/* Stage durations: from a quick check (10 ms) to a long image copy (30 min). */
static const double buckets[] = { 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
                                  600, 1800 };
#define N_BUCKETS (sizeof buckets / sizeof buckets[0])

typedef enum { MT_COUNTER, MT_GAUGE, MT_HISTOGRAM } metric_type;

typedef enum {
    M_JOBS_CLAIMED,
    M_JOBS_DONE,
    M_JOBS_FAILED,
    M_JOBS_RETRIED,
    M_STAGE_SECONDS,
    M_LEASE_LOST,
    M_DB_RECONNECTS,
    M_LIBVIRT_ERRORS,
    M_SLOTS_BUSY,
    M_SLOTS,
    M_STAGE_DEADLINE,
    M_SLOTS_STUCK,
    M_JOB_SECONDS,
    M_COMPUTER_RELOADS,
    M_WORKER_INFO,
    M__COUNT
} metric_id;

typedef struct metric_def {
    const char *name;
    metric_type type;
    const char *label1, *label2; /* NULL = no such label */
    const char *help;
} metric_def;

static const metric_def metric_defs[M__COUNT] = {
    [M_JOBS_CLAIMED] = { "vclw_jobs_claimed_total", MT_COUNTER, "operation", NULL,
                         "Reservations this worker claimed (a rescued or retried row counts "
                         "again)." },
    [M_JOBS_DONE] = { "vclw_jobs_done_total", MT_COUNTER, "operation", NULL,
                      "Reservations this worker completed (state done)." },
    [M_JOBS_FAILED] = { "vclw_jobs_failed_total", MT_COUNTER, "operation", NULL,
                        "Reservations that failed for good in this worker (state failed: "
                        "permanent error or max_attempts reached)." },
    [M_JOBS_RETRIED] = { "vclw_jobs_retried_total", MT_COUNTER, "operation", NULL,
                         "Failed attempts put back to pending with a backoff." },
    [M_STAGE_SECONDS] = { "vclw_stage_duration_seconds", MT_HISTOGRAM, "operation", "stage",
                          "Time a stage's function ran, for every stage whose finish was "
                          "recorded in vcl.reservation_stage (ok or failed)." },
    [M_LEASE_LOST] = { "vclw_lease_lost_total", MT_COUNTER, NULL, NULL,
                       "Jobs abandoned because their lease was lost (expired, taken over or "
                       "finished elsewhere; cancellations are not counted)." },
    [M_DB_RECONNECTS] = { "vclw_db_reconnects_total", MT_COUNTER, NULL, NULL,
                          "Successful reconnections to PostgreSQL after a lost connection." },
    [M_LIBVIRT_ERRORS] = { "vclw_libvirt_errors_total", MT_COUNTER, NULL, NULL,
                           "libvirt calls that failed, as reported by the worker (including "
                           "ones it tolerates, e.g. destroying a domain that stopped by "
                           "itself)." },
    [M_SLOTS_BUSY] = { "vclw_slots_busy", MT_GAUGE, NULL, NULL,
                       "Slots of this worker running a job now." },
    [M_SLOTS] = { "vclw_slots", MT_GAUGE, NULL, NULL,
                  "Slots of this worker (config option slots)." },
    [M_STAGE_DEADLINE] = { "vclw_stage_deadline_exceeded_total", MT_COUNTER, "operation",
                           "stage",
                           "Stages failed because they ran past their deadline "
                           "(stage_timeout_seconds, stage_timeouts): a node did not answer." },
    [M_SLOTS_STUCK] = { "vclw_slots_stuck", MT_GAUGE, NULL, NULL,
                        "Threads of jobs failed at their stage deadline that are still stuck "
                        "in a call to an unresponsive node (their slots run new jobs)." },
    [M_JOB_SECONDS] = { "vclw_job_duration_seconds", MT_HISTOGRAM, "operation", "node",
                        "Time from this worker's claim of a reservation to its completion "
                        "(state done), per operation and node: a load's latency. A retried "
                        "or rescued reservation counts its last attempt only." },
    [M_COMPUTER_RELOADS] = { "vclw_computer_reloads_total", MT_COUNTER, "node", "source",
                             "Loaded computers this worker found broken and marked RELOAD "
                             "outside a load: source watch (its domain stopped, crashed or "
                             "vanished outside vcl-worker) or node_status (a check found it "
                             "not READY)." },
    [M_WORKER_INFO] = { "vclw_worker_info", MT_GAUGE, "version", "worker",
                        "Always 1; the labels say which worker and version this is." },
};

typedef struct series {
    metric_id m;
    char l1[LABEL_MAX], l2[LABEL_MAX];
    double value;                 /* counter, gauge */
    uint64_t bucket[N_BUCKETS];   /* histogram: observations per bucket (not cumulative) */
    uint64_t count;
    double sum;
} series;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool enabled;
static series *all;       /* guarded by mu */
static size_t n_all, cap_all;
static bool overflow_logged;
static struct MHD_Daemon *daemon_h;

bool metrics_enabled(void)
{
    return atomic_load_explicit(&enabled, memory_order_relaxed);
}

/* ---- listen address ------------------------------------------------------ */

static bool parse_port(const char *s, unsigned *port, char *why, size_t why_len)
{
    if (!*s || strlen(s) > 5) {
        snprintf(why, why_len, "the port must be a number from 1 to 65535");
        return false;
    }
    unsigned v = 0;
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p)) {
            snprintf(why, why_len, "the port must be a number from 1 to 65535");
            return false;
        }
        v = v * 10 + (unsigned)(*p - '0');
    }
    if (v < 1 || v > 65535) {
        snprintf(why, why_len, "the port must be a number from 1 to 65535");
        return false;
    }
    *port = v;
    return true;
}

bool metrics_parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *len,
                          bool *off, char *why, size_t why_len)
{
    char host[64];
    const char *port_s;
    unsigned port = 0;
    memset(ss, 0, sizeof *ss);
    *len = 0;
    *off = false;
    if (!spec || !spec[0]) {
        *off = true;
        return true;
    }
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || close[1] != ':') {
            snprintf(why, why_len, "an IPv6 address is written [ADDRESS]:PORT, e.g. [::1]:9187");
            return false;
        }
        size_t hl = (size_t)(close - spec - 1);
        if (hl == 0 || hl >= sizeof host) {
            snprintf(why, why_len, "empty or overlong IPv6 address");
            return false;
        }
        memcpy(host, spec + 1, hl);
        host[hl] = '\0';
        if (!parse_port(close + 2, &port, why, why_len))
            return false;
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1) {
            snprintf(why, why_len, "'%s' is not an IPv6 address", host);
            return false;
        }
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *len = sizeof *a6;
        return true;
    }
    const char *colon = strrchr(spec, ':');
    if (colon && strchr(spec, ':') != colon) {
        snprintf(why, why_len, "an IPv6 address needs brackets: [ADDRESS]:PORT, e.g. [::1]:9187");
        return false;
    }
    if (colon) {
        size_t hl = (size_t)(colon - spec);
        if (hl >= sizeof host) {
            snprintf(why, why_len, "overlong address");
            return false;
        }
        memcpy(host, spec, hl);
        host[hl] = '\0';
        port_s = colon + 1;
    } else {
        host[0] = '\0'; /* a bare port */
        port_s = spec;
    }
    if (!parse_port(port_s, &port, why, why_len))
        return false;
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    if (!host[0] || strcmp(host, "localhost") == 0)
        a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &a4->sin_addr) != 1) {
        snprintf(why, why_len, "'%s' is not an IPv4 address (use an address, not a host name, "
                 "or [ADDRESS] for IPv6)", host);
        return false;
    }
    *len = sizeof *a4;
    return true;
}

bool metrics_check_listen(const char *spec, char *why, size_t why_len)
{
    struct sockaddr_storage ss;
    socklen_t len;
    bool off;
    return metrics_parse_listen(spec, &ss, &len, &off, why, why_len);
}

/* ---- series ------------------------------------------------------------ */

/* A label value as stored: at most LABEL_MAX - 1 bytes, never cut inside a
 * UTF-8 character, and a byte that does not start a well-formed UTF-8
 * sequence becomes '?'. The text format is UTF-8: one bad byte (a 64-byte
 * operation name cut in the middle of a character) and Prometheus rejects
 * the whole scrape. */
static void copy_label(char *dst, const char *src)
{
    const unsigned char *p = (const unsigned char *)(src && src[0] ? src : "unknown");
    size_t o = 0;
    while (*p) {
        size_t n = util_utf8_len(p);
        const unsigned char *from = n ? p : (const unsigned char *)"?";
        size_t w = n ? n : 1;
        if (o + w >= LABEL_MAX)
            break;
        memcpy(dst + o, from, w);
        o += w;
        p += n ? n : 1;
    }
    dst[o] = '\0';
}

/* The series of (m, l1, l2), created at 0 when new. Caller holds mu. NULL
 * when the cap is reached or out of memory. */
static series *find(metric_id m, const char *l1, const char *l2)
{
    char a[LABEL_MAX] = "", b[LABEL_MAX] = "";
    if (metric_defs[m].label1)
        copy_label(a, l1);
    if (metric_defs[m].label2)
        copy_label(b, l2);
    for (size_t i = 0; i < n_all; i++)
        if (all[i].m == m && strcmp(all[i].l1, a) == 0 && strcmp(all[i].l2, b) == 0)
            return &all[i];
    if (n_all == cap_all) {
        size_t ncap = cap_all ? cap_all * 2 : 64;
        series *n = ncap <= SERIES_MAX ? realloc(all, ncap * sizeof *n) : NULL;
        if (!n) {
            if (!overflow_logged)
                log_warn("metrics: more than %d series (or out of memory); new label values "
                         "are not counted", SERIES_MAX);
            overflow_logged = true;
            return NULL;
        }
        all = n;
        cap_all = ncap;
    }
    series *s = &all[n_all++];
    memset(s, 0, sizeof *s);
    s->m = m;
    memcpy(s->l1, a, sizeof a);
    memcpy(s->l2, b, sizeof b);
    return s;
}

static void add(metric_id m, const char *l1, const char *l2, double v)
{
    if (!metrics_enabled())
        return;
    pthread_mutex_lock(&mu);
    series *s = find(m, l1, l2);
    if (s)
        s->value += v;
    pthread_mutex_unlock(&mu);
}

static void set(metric_id m, const char *l1, const char *l2, double v)
{
    if (!metrics_enabled())
        return;
    pthread_mutex_lock(&mu);
    series *s = find(m, l1, l2);
    if (s)
        s->value = v;
    pthread_mutex_unlock(&mu);
}

void metrics_init(const char *worker_name, const char *version)
{
    if (metrics_enabled())
        return;
    atomic_store(&enabled, true);
    set(M_WORKER_INFO, version, worker_name, 1);
    add(M_LEASE_LOST, NULL, NULL, 0);
    add(M_DB_RECONNECTS, NULL, NULL, 0);
    add(M_LIBVIRT_ERRORS, NULL, NULL, 0);
    add(M_SLOTS_BUSY, NULL, NULL, 0);
    add(M_SLOTS_STUCK, NULL, NULL, 0);
    add(M_SLOTS, NULL, NULL, 0);
}

void metrics_seed_operation(const char *op)
{
    add(M_JOBS_CLAIMED, op, NULL, 0);
    add(M_JOBS_DONE, op, NULL, 0);
    add(M_JOBS_FAILED, op, NULL, 0);
    add(M_JOBS_RETRIED, op, NULL, 0);
}

void metrics_job_claimed(const char *op) { add(M_JOBS_CLAIMED, op, NULL, 1); }
void metrics_job_done(const char *op) { add(M_JOBS_DONE, op, NULL, 1); }
void metrics_job_failed(const char *op) { add(M_JOBS_FAILED, op, NULL, 1); }
void metrics_job_retried(const char *op) { add(M_JOBS_RETRIED, op, NULL, 1); }
void metrics_lease_lost(void) { add(M_LEASE_LOST, NULL, NULL, 1); }
void metrics_db_reconnect(void) { add(M_DB_RECONNECTS, NULL, NULL, 1); }
void metrics_libvirt_error(void) { add(M_LIBVIRT_ERRORS, NULL, NULL, 1); }
void metrics_slots(int n) { set(M_SLOTS, NULL, NULL, n); }
void metrics_computer_reload(const char *node, const char *source)
{
    add(M_COMPUTER_RELOADS, node, source, 1);
}
void metrics_slot_busy(int delta) { add(M_SLOTS_BUSY, NULL, NULL, delta); }
void metrics_stage_deadline(const char *op, const char *stage)
{
    add(M_STAGE_DEADLINE, op, stage, 1);
}
void metrics_slots_stuck(int n) { set(M_SLOTS_STUCK, NULL, NULL, n); }

static void observe(metric_id m, const char *l1, const char *l2, double seconds)
{
    if (!metrics_enabled())
        return;
    if (!(seconds >= 0)) /* also NaN */
        seconds = 0;
    pthread_mutex_lock(&mu);
    series *s = find(m, l1, l2);
    if (s) {
        size_t b = 0;
        while (b < N_BUCKETS && seconds > buckets[b])
            b++;
        if (b < N_BUCKETS)
            s->bucket[b]++;
        s->count++;
        s->sum += seconds;
    }
    pthread_mutex_unlock(&mu);
}

void metrics_stage_observe(const char *op, const char *stage, double seconds)
{
    observe(M_STAGE_SECONDS, op, stage, seconds);
}

void metrics_job_observe(const char *op, const char *node, double seconds)
{
    observe(M_JOB_SECONDS, op, node, seconds);
}

/* ---- exposition text --------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    /* A buffer from the start: vsnprintf into b->p + b->n with b->p NULL
     * computes NULL + 0, undefined behaviour (UBSan: "applying zero offset
     * to null pointer"), on the first call of every scrape. */
    if (!b->p) {
        b->p = malloc(4096);
        if (!b->p) {
            b->oom = true;
            return;
        }
        b->cap = 4096;
        b->n = 0;
    }
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (w < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)w < b->cap - b->n) {
            b->n += (size_t)w;
            return;
        }
        size_t ncap = (b->cap + (size_t)w + 1) * 2;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
}

void metrics_escape_label(const char *v, char *out, size_t out_len)
{
    size_t n = 0;
    if (!out_len)
        return;
    for (const char *p = v ? v : ""; *p; p++) {
        const char *rep = NULL;
        char one[2] = { *p, '\0' };
        if (*p == '\\')
            rep = "\\\\";
        else if (*p == '"')
            rep = "\\\"";
        else if (*p == '\n')
            rep = "\\n";
        else
            rep = one;
        size_t rl = strlen(rep);
        if (n + rl >= out_len)
            break;
        memcpy(out + n, rep, rl);
        n += rl;
    }
    out[n] = '\0';
}

/* {a="x",b="y"} plus an extra label (le) when given; "" when no labels. */
static void labels(sbuf *b, const metric_def *d, const series *s, const char *extra_k,
                   const char *extra_v)
{
    char e[LABEL_MAX * 2 + 1];
    int n = 0;
    const char *keys[3] = { d->label1, d->label2, extra_k };
    const char *vals[3] = { s->l1, s->l2, extra_v };
    for (int i = 0; i < 3; i++) {
        if (!keys[i])
            continue;
        metrics_escape_label(vals[i], e, sizeof e);
        sb_printf(b, "%s%s=\"%s\"", n++ ? "," : "{", keys[i], e);
    }
    if (n)
        sb_printf(b, "}");
}

static const char *type_name(metric_type t)
{
    return t == MT_COUNTER ? "counter" : t == MT_GAUGE ? "gauge" : "histogram";
}

/* ---- process metrics (/proc/self) --------------------------------------- */

bool metrics_parse_proc_stat(const char *stat, long ticks_per_second, long page_size,
                             double boot_time, metrics_proc *out)
{
    memset(out, 0, sizeof *out);
    /* field 2, comm, is in parentheses and may hold spaces and ')': the
     * fields that follow start after the last ')' */
    const char *p = stat ? strrchr(stat, ')') : NULL;
    if (!p || ticks_per_second <= 0 || page_size <= 0)
        return false;
    p++;
    unsigned long long f[25] = { 0 }; /* f[k] = field k (1-based, as in proc(5)) */
    for (int k = 3; k <= 24; k++) {
        while (*p == ' ')
            p++;
        if (!*p)
            return false;
        if (k == 3) { /* state: one letter */
            p++;
            continue;
        }
        char *end;
        errno = 0;
        if (*p == '-') { /* signed fields (priority, nice): not used here */
            (void)strtoll(p, &end, 10);
        } else {
            f[k] = strtoull(p, &end, 10);
        }
        if (end == p || errno)
            return false;
        p = end;
    }
    out->cpu_seconds = (double)(f[14] + f[15]) / (double)ticks_per_second;
    out->start_time_seconds = boot_time + (double)f[22] / (double)ticks_per_second;
    out->virtual_bytes = (double)f[23];
    out->resident_bytes = (double)f[24] * (double)page_size;
    return true;
}

/* The whole of a small /proc file, NUL-terminated; false when unreadable. */
static bool read_small(const char *path, char *buf, size_t len)
{
    FILE *fp = fopen(path, "re");
    if (!fp)
        return false;
    size_t n = fread(buf, 1, len - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return n > 0;
}

/* Boot time (seconds since the epoch): "btime N" in /proc/stat, read once. */
static double boot_time(void)
{
    static double bt; /* written once per process; a race writes the same value */
    if (bt > 0)
        return bt;
    FILE *fp = fopen("/proc/stat", "re");
    if (!fp)
        return 0;
    char line[256];
    while (fgets(line, sizeof line, fp))
        if (strncmp(line, "btime ", 6) == 0) {
            bt = strtod(line + 6, NULL);
            break;
        }
    fclose(fp);
    return bt;
}

/* Descriptors open now: the entries of /proc/self/fd but the one opendir
 * holds; -1 when unreadable. */
static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

static void process_metric(sbuf *b, const char *name, const char *type, const char *help,
                           double v)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

/* The process_* metrics every Prometheus client library exports (same names,
 * types and units), read from /proc/self at each scrape. One that cannot be
 * read is left out rather than reported as 0. */
static void render_process(sbuf *b)
{
    char stat[1024];
    metrics_proc pr;
    if (read_small("/proc/self/stat", stat, sizeof stat) &&
        metrics_parse_proc_stat(stat, sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE), boot_time(),
                                &pr)) {
        process_metric(b, "process_cpu_seconds_total", "counter",
                       "Total user and system CPU time spent in seconds.", pr.cpu_seconds);
        process_metric(b, "process_resident_memory_bytes", "gauge",
                       "Resident memory size in bytes.", pr.resident_bytes);
        process_metric(b, "process_virtual_memory_bytes", "gauge",
                       "Virtual memory size in bytes.", pr.virtual_bytes);
        if (boot_time() > 0)
            process_metric(b, "process_start_time_seconds", "gauge",
                           "Start time of the process since unix epoch in seconds.",
                           pr.start_time_seconds);
    }
    long fds = open_fds();
    if (fds >= 0)
        process_metric(b, "process_open_fds", "gauge", "Number of open file descriptors.",
                       (double)fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        process_metric(b, "process_max_fds", "gauge",
                       "Maximum number of open file descriptors.", (double)rl.rlim_cur);
}

char *metrics_render(void)
{
    sbuf b = { 0 };
    sb_printf(&b, "%s", ""); /* an empty scrape is still a string */
    pthread_mutex_lock(&mu);
    for (int m = 0; m < M__COUNT; m++) {
        const metric_def *d = &metric_defs[m];
        sb_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", d->name, d->help, d->name,
                  type_name(d->type));
        for (size_t i = 0; i < n_all; i++) {
            const series *s = &all[i];
            if (s->m != (metric_id)m)
                continue;
            if (d->type != MT_HISTOGRAM) {
                sb_printf(&b, "%s", d->name);
                labels(&b, d, s, NULL, NULL);
                sb_printf(&b, " %.17g\n", s->value);
                continue;
            }
            uint64_t cum = 0;
            for (size_t k = 0; k <= N_BUCKETS; k++) {
                char le[32];
                if (k < N_BUCKETS) {
                    cum += s->bucket[k];
                    snprintf(le, sizeof le, "%g", buckets[k]);
                } else {
                    cum = s->count;
                    snprintf(le, sizeof le, "+Inf");
                }
                sb_printf(&b, "%s_bucket", d->name);
                labels(&b, d, s, "le", le);
                sb_printf(&b, " %llu\n", (unsigned long long)cum);
            }
            sb_printf(&b, "%s_sum", d->name);
            labels(&b, d, s, NULL, NULL);
            sb_printf(&b, " %.6f\n%s_count", s->sum, d->name);
            labels(&b, d, s, NULL, NULL);
            sb_printf(&b, " %llu\n", (unsigned long long)s->count);
        }
    }
    pthread_mutex_unlock(&mu);
    if (metrics_enabled())
        render_process(&b);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- HTTP -------------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             char *body, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, mode);
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **state)
{
    (void)cls;
    (void)version;
    (void)upload_data;
    static const char *text = "text/plain; charset=utf-8";
    /* Answer at the first call: no request here has a body we want. */
    *upload_size = 0;
    (void)state;
    if (strcmp(url, "/metrics") != 0)
        return reply(c, MHD_HTTP_NOT_FOUND, text,
                     (char *)"not found: this server only answers GET /metrics\n",
                     MHD_RESPMEM_PERSISTENT);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, text,
                     (char *)"method not allowed: use GET /metrics\n", MHD_RESPMEM_PERSISTENT);
    char *body = metrics_render();
    if (!body)
        return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, text, (char *)"out of memory\n",
                     MHD_RESPMEM_PERSISTENT);
    return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body,
                 MHD_RESPMEM_MUST_FREE);
}

/* libmicrohttpd's own messages go through our log (one format on stderr). */
static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_warn("metrics http: %s", msg);
}

bool metrics_serve(const char *spec, vcl_error *e)
{
    struct sockaddr_storage ss;
    socklen_t len;
    bool off;
    char why[160];
    if (!metrics_parse_listen(spec, &ss, &len, &off, why, sizeof why))
        return vcl_error_set(e, VCL_ERR_PERMANENT, "metrics_listen '%s': %s", spec, why);
    if (off || daemon_h)
        return true;
    bool v6 = ss.ss_family == AF_INET6;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    uint16_t port = v6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                       : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    daemon_h = MHD_start_daemon(flags, port, NULL, NULL, on_request, NULL,
                                MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                                MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
                                MHD_OPTION_CONNECTION_LIMIT, (unsigned)32,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                                MHD_OPTION_END);
    if (!daemon_h)
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "metrics_listen '%s': cannot listen there (address in use, or not "
                             "an address of this host?); pick another port or set "
                             "metrics_listen: \"\" to turn metrics off", spec);
    char addr[INET6_ADDRSTRLEN] = "?";
    if (v6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, addr, sizeof addr);
    else
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, addr, sizeof addr);
    log_info("metrics: serving http://%s%s%s:%u/metrics", v6 ? "[" : "", addr, v6 ? "]" : "",
             (unsigned)port);
    return true;
}

void metrics_reset(void)
{
    pthread_mutex_lock(&mu);
    free(all);
    all = NULL;
    n_all = cap_all = 0;
    overflow_logged = false;
    pthread_mutex_unlock(&mu);
}

void metrics_stop(void)
{
    if (daemon_h) {
        MHD_stop_daemon(daemon_h);
        daemon_h = NULL;
    }
    atomic_store(&enabled, false);
}
