/* log.c: logfmt lines on stderr; see log.h. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *const level_names[LOG_LVL__COUNT] = { "debug", "info", "warn", "error" };
static log_level current_level = LOG_LVL_INFO;
static char worker_name[128];
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static _Thread_local long long ctx_res;
static _Thread_local char ctx_computer[96];
static _Thread_local char ctx_node[96];
static _Thread_local char ctx_stage[48];

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
}

void log_ctx_stage(const char *stage)
{
    snprintf(ctx_stage, sizeof ctx_stage, "%s", stage ? stage : "");
}

void log_ctx_clear(void)
{
    log_ctx_set(0, NULL, NULL);
}

/* logfmt value: quote when it has spaces, quotes or '=' */
static void put_value(FILE *f, const char *v)
{
    if (v[0] && !strpbrk(v, " \"=\t\n")) {
        fputs(v, f);
        return;
    }
    fputc('"', f);
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\')
            fputc('\\', f);
        if (*p == '\n')
            fputs("\\n", f);
        else
            fputc(*p, f);
    }
    fputc('"', f);
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
    char tbuf[40];
    strftime(tbuf, sizeof tbuf, "%Y-%m-%dT%H:%M:%S", &tm);

    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "ts=%s.%03ldZ level=%s", tbuf, ts.tv_nsec / 1000000, level_names[l]);
    if (worker_name[0]) {
        fputs(" worker=", stderr);
        put_value(stderr, worker_name);
    }
    if (ctx_res)
        fprintf(stderr, " reservation=%lld", ctx_res);
    if (ctx_computer[0]) {
        fputs(" computer=", stderr);
        put_value(stderr, ctx_computer);
    }
    if (ctx_node[0]) {
        fputs(" node=", stderr);
        put_value(stderr, ctx_node);
    }
    if (ctx_stage[0])
        fprintf(stderr, " stage=%s", ctx_stage);
    fputs(" msg=", stderr);
    put_value(stderr, msg);
    fputc('\n', stderr);
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
}
