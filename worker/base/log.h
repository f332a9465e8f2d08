/* log.h: one line per event on stderr, logfmt ("ts=... level=... msg=... k=v")
 * or JSON (one object per line, the same keys: log_format: json).
 * Thread-safe. Callers add job context with log_ctx_set() (thread-local), so
 * every line about a job carries reservation, computer, node and stage.
 * Values are escaped so that one event is always one line: logfmt quotes a
 * value with spaces, quotes, '=', '\\' or control characters and escapes
 * them; JSON escapes quotes, backslashes and control characters (\u00XX) and
 * replaces bytes that are not valid UTF-8 with U+FFFD.
 * Under systemd with stderr connected to the journal (log_use_journal(),
 * base/journal.h) each event goes to the journal instead, as fields: the
 * level as PRIORITY, the context as RESERVATION=, COMPUTER=, NODE=, STAGE=,
 * OPERATION=, WORKER=. */
#ifndef VCL_LOG_H
#define VCL_LOG_H
#include <stdbool.h>
#include <stdio.h>

typedef enum {
    LOG_FMT_LOGFMT,
    LOG_FMT_JSON,
    LOG_FMT__COUNT
} log_format;

typedef enum {
    LOG_LVL_DEBUG,
    LOG_LVL_INFO,
    LOG_LVL_WARN,
    LOG_LVL_ERROR,
    LOG_LVL__COUNT
} log_level;

const char *log_level_name(log_level l);
bool log_level_parse(const char *s, log_level *out);
void log_set_level(log_level l);
log_level log_get_level(void);
void log_set_worker(const char *worker_name);
const char *log_format_name(log_format f);
bool log_format_parse(const char *s, log_format *out);
void log_set_format(log_format f);
/* Where lines go (default stderr; NULL = stderr). For tests. */
void log_set_output(FILE *f);
/* Send events to the journal (when stderr is the journal: main.c asks
 * journal_stderr_is_journal()); an event the journal refuses is written to
 * stderr as a line. Not while log_set_output() names a file. */
void log_use_journal(bool on);

/* Thread-local job context; NULL/0 clears a field. */
void log_ctx_set(long long reservation_id, const char *computer, const char *node);
void log_ctx_stage(const char *stage);
/* The job's operation (load, capture, ...): a journal field only, the
 * stderr lines stay as they were. log_ctx_set() clears it. */
void log_ctx_operation(const char *operation);
void log_ctx_clear(void);

void log_msg(log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#endif
