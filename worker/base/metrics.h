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
 * what is here: it never touches the database. The queue depth gauges are
 * sampled by the worker's main thread (metrics_queue_update()). */
#ifndef VCL_METRICS_H
#define VCL_METRICS_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include "base/error.h"

/* How often the main thread samples the queue depth, at most. */
#define METRICS_QUEUE_SAMPLE_SECONDS 5.0

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
 * event, and its queue depth gauges exist (pending and running). */
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
void metrics_slots_total(int n);
void metrics_slot_busy(int delta);
/* A stage failed at its deadline; threads still stuck after that. */
void metrics_stage_deadline(const char *operation, const char *stage);
void metrics_slots_stuck(int n);
/* Replace every queue depth gauge: n rows of (operation, state, count);
 * operations seen before and absent now drop to 0. */
void metrics_queue_update(int n, const char *const *operations, const char *const *states,
                          const long long *counts);

/* The exposition text (what GET /metrics returns), malloc'd; NULL when out
 * of memory. For the HTTP thread and for tests. */
char *metrics_render(void);
/* Escape a label value per the exposition format (\\, \", \n) into out. */
void metrics_escape_label(const char *v, char *out, size_t out_len);
#endif
