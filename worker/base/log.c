/* log.c: logfmt or JSON lines on stderr; see log.h. */
#include "base/log.h"
#include "base/journal.h"
#include "base/util.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

static const char *const level_names[LOG_LVL__COUNT] = { "debug", "info", "warn", "error" };
static const char *const format_names[LOG_FMT__COUNT] = { "logfmt", "json" };
static log_level current_level = LOG_LVL_INFO;
static log_format current_format = LOG_FMT_LOGFMT;
static FILE *out_stream; /* NULL = stderr */
static bool to_journal;
/* syslog priorities for the journal's PRIORITY= (journalctl -p) */
static const int level_priority[LOG_LVL__COUNT] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };
static char worker_name[128];
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static _Thread_local long long ctx_res;
static _Thread_local char ctx_computer[96];
static _Thread_local char ctx_node[96];
static _Thread_local char ctx_stage[48];
static _Thread_local char ctx_operation[48];

const char *log_level_name(log_level l)
{
    return (l >= 0 && l < LOG_LVL__COUNT) ? level_names[l] : "?";
}

bool log_level_parse(const char *s, log_level *out)
{
    for (int i = 0; i < LOG_LVL__COUNT; i++)
        if (s && strcasecmp(s, level_names[i]) == 0) {
            *out = (log_level)i;
            return true;
        }
    return false;
}

const char *log_format_name(log_format f)
{
    return (f >= 0 && f < LOG_FMT__COUNT) ? format_names[f] : "?";
}

bool log_format_parse(const char *s, log_format *out)
{
    for (int i = 0; i < LOG_FMT__COUNT; i++)
        if (s && strcasecmp(s, format_names[i]) == 0) {
            *out = (log_format)i;
            return true;
        }
    return false;
}

void log_set_format(log_format f)
{
    pthread_mutex_lock(&log_lock);
    current_format = f;
    pthread_mutex_unlock(&log_lock);
}

void log_set_output(FILE *f)
{
    pthread_mutex_lock(&log_lock);
    out_stream = f;
    pthread_mutex_unlock(&log_lock);
}

void log_use_journal(bool on)
{
    pthread_mutex_lock(&log_lock);
    to_journal = on;
    pthread_mutex_unlock(&log_lock);
}

void log_set_level(log_level l) { current_level = l; }
log_level log_get_level(void) { return current_level; }

void log_set_worker(const char *name)
{
    snprintf(worker_name, sizeof worker_name, "%s", name ? name : "");
}

void log_ctx_set(long long reservation_id, const char *computer, const char *node)
{
    ctx_res = reservation_id;
    snprintf(ctx_computer, sizeof ctx_computer, "%s", computer ? computer : "");
    snprintf(ctx_node, sizeof ctx_node, "%s", node ? node : "");
    ctx_stage[0] = '\0';
    ctx_operation[0] = '\0';
}

void log_ctx_stage(const char *stage)
{
    snprintf(ctx_stage, sizeof ctx_stage, "%s", stage ? stage : "");
}

void log_ctx_operation(const char *operation)
{
    snprintf(ctx_operation, sizeof ctx_operation, "%s", operation ? operation : "");
}

void log_ctx_clear(void)
{
    log_ctx_set(0, NULL, NULL);
}

/* logfmt value: bare when it is a plain token; else quoted, with quotes,
 * backslashes and control characters escaped (so one event stays one line). */
static void put_value(FILE *f, const char *v)
{
    bool plain = v[0] != '\0';
    for (const unsigned char *p = (const unsigned char *)v; *p && plain; p++)
        plain = *p > 0x20 && *p != 0x7f && *p != '"' && *p != '=' && *p != '\\';
    if (plain) {
        fputs(v, f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

/* JSON string (RFC 8259), quotes included. A byte that does not start a
 * well-formed UTF-8 sequence becomes U+FFFD, so the line is always valid. */
static void put_json(FILE *f, const char *v)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)v; *p;) {
        switch (*p) {
        case '"': fputs("\\\"", f); p++; continue;
        case '\\': fputs("\\\\", f); p++; continue;
        case '\n': fputs("\\n", f); p++; continue;
        case '\r': fputs("\\r", f); p++; continue;
        case '\t': fputs("\\t", f); p++; continue;
        default: break;
        }
        if (*p < 0x20 || *p == 0x7f) {
            fprintf(f, "\\u%04x", *p);
            p++;
            continue;
        }
        size_t n = util_utf8_len(p);
        if (!n) {
            fputs("\\ufffd", f);
            p++;
            continue;
        }
        fwrite(p, 1, n, f);
        p += n;
    }
    fputc('"', f);
}

/* One "key=value" (logfmt) or "key":value (JSON) field after the first. */
static void put_field(FILE *f, log_format fmt, const char *key, const char *value)
{
    if (fmt == LOG_FMT_JSON) {
        fprintf(f, ",\"%s\":", key);
        put_json(f, value);
    } else {
        fprintf(f, " %s=", key);
        put_value(f, value);
    }
}

void log_msg(log_level l, const char *fmt, ...)
{
    if (l < current_level)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char tbuf[40], stamp[48];
    strftime(tbuf, sizeof tbuf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp, sizeof stamp, "%s.%03ldZ", tbuf, ts.tv_nsec / 1000000);

    /* the journal stamps the event itself; sd_journal_sendv is thread-safe */
    pthread_mutex_lock(&log_lock);
    bool journal = to_journal && !out_stream;
    pthread_mutex_unlock(&log_lock);
    if (journal) {
        journal_event ev = {
            .priority = level_priority[l], .message = msg, .identifier = "vcl-worker",
            .worker = worker_name, .reservation = ctx_res, .computer = ctx_computer,
            .node = ctx_node, .stage = ctx_stage, .operation = ctx_operation,
        };
        if (journal_send(&ev))
            return;
    }

    pthread_mutex_lock(&log_lock);
    FILE *f = out_stream ? out_stream : stderr;
    log_format lf = current_format;
    if (lf == LOG_FMT_JSON)
        fprintf(f, "{\"ts\":\"%s\",\"level\":\"%s\"", stamp, level_names[l]);
    else
        fprintf(f, "ts=%s level=%s", stamp, level_names[l]);
    if (worker_name[0])
        put_field(f, lf, "worker", worker_name);
    if (ctx_res)
        fprintf(f, lf == LOG_FMT_JSON ? ",\"reservation\":%lld" : " reservation=%lld", ctx_res);
    if (ctx_computer[0])
        put_field(f, lf, "computer", ctx_computer);
    if (ctx_node[0])
        put_field(f, lf, "node", ctx_node);
    if (ctx_stage[0])
        put_field(f, lf, "stage", ctx_stage);
    put_field(f, lf, "msg", msg);
    fputs(lf == LOG_FMT_JSON ? "}\n" : "\n", f);
    fflush(f);
    pthread_mutex_unlock(&log_lock);
}
