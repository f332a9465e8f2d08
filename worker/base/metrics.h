/* metrics.h: Prometheus metrics of the worker, served over HTTP.
 *
 * The rest of the worker calls small metrics_* functions where events happen
 * (a job claimed, done, failed or retried; a stage finished; a lease lost; a
 * DB reconnect; a libvirt error). Every one is a no-op (one atomic load)
 * until metrics_init() has run, so code shared with vclctl and the unit
 * tests pays nothing. Values live in this module, guarded by one mutex.
 *
 * metrics_serve() starts libmicrohttpd in its own thread
 * (MHD_USE_INTERNAL_POLLING_THREAD); GET /metrics answers with the text
 * exposition format 0.0.4, anything else is 404. The HTTP thread only reads
 * what is here (and /proc/self for the process_* metrics): it never touches
 * the database.
 *
 * Only this worker's own metrics are here. Queue-wide gauges (queue depth,
 * age of the oldest due pending reservation, computers per node_status,
 * worker heartbeats) come from one place, the view vcl.metrics
 * (sql/functions/views.sql), scraped by a PostgreSQL exporter
 * (config/prometheus/postgres_exporter.yml): exported by every worker,
 * sum() over workers counted them once per worker. */
#ifndef VCL_METRICS_H
#define VCL_METRICS_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include "base/error.h"

/* Parse a metrics_listen value: "" (off: *off set), "HOST:PORT" with HOST an
 * IPv4 literal or "localhost", "[IPV6]:PORT", ":PORT" or "PORT" (both mean
 * loopback, 127.0.0.1). PORT is 1..65535. false with a reason in why. */
bool metrics_parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *len,
                          bool *off, char *why, size_t why_len);
/* Config check (config.c's option table): metrics_parse_listen, result dropped. */
bool metrics_check_listen(const char *spec, char *why, size_t why_len);

/* Turn collection on: the info gauge gets these labels. Idempotent. */
void metrics_init(const char *worker_name, const char *version);
bool metrics_enabled(void);
/* Start the HTTP server on spec (metrics_parse_listen); "" = no server.
 * Logs the address it listens on. */
bool metrics_serve(const char *spec, vcl_error *e);
/* Stop the HTTP server (waits for its thread) and turn collection off. */
void metrics_stop(void);
/* Forget every series (tests and the fuzz harness: a fresh start without a
 * new process). Collection stays as it was; metrics_init after
 * metrics_stop seeds the worker's series again. */
void metrics_reset(void);

/* Label values of an operation: every counter of it shows 0 before its first
 * event. */
void metrics_seed_operation(const char *operation);

void metrics_job_claimed(const char *operation);
void metrics_job_done(const char *operation);
void metrics_job_failed(const char *operation);   /* failed for good */
void metrics_job_retried(const char *operation);  /* put back with a backoff */
/* A stage ran and its finish was recorded: how long its function took. */
void metrics_stage_observe(const char *operation, const char *stage, double seconds);
void metrics_lease_lost(void);
void metrics_db_reconnect(void);
void metrics_libvirt_error(void);
void metrics_slots(int n);
void metrics_slot_busy(int delta);
/* A stage failed at its deadline; threads still stuck after that. */
void metrics_stage_deadline(const char *operation, const char *stage);
void metrics_slots_stuck(int n);
/* A reservation this worker claimed ended done, seconds after the claim. */
void metrics_job_observe(const char *operation, const char *node, double seconds);
/* A loaded computer of node was marked RELOAD outside a load; source is
 * "watch" or "node_status". */
void metrics_computer_reload(const char *node, const char *source);

/* What /proc/self/stat says (proc(5)): utime + stime, start time (boot_time +
 * starttime ticks), vsize, rss pages * page_size. false when the text does not
 * parse. For the process_* metrics, and pure so tests can feed it text. */
typedef struct metrics_proc {
    double cpu_seconds, start_time_seconds, virtual_bytes, resident_bytes;
} metrics_proc;
bool metrics_parse_proc_stat(const char *stat, long ticks_per_second, long page_size,
                             double boot_time, metrics_proc *out);

/* The exposition text (what GET /metrics returns), malloc'd; NULL when out
 * of memory. For the HTTP thread and for tests. */
char *metrics_render(void);
/* Escape a label value per the exposition format (\\, \", \n) into out. */
void metrics_escape_label(const char *v, char *out, size_t out_len);
#endif
