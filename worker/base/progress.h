/* progress.h: how far a job is, as text for people: byte sizes, durations,
 * a progress bar, an ETA, the "copied 1.2 GiB of 4.0 GiB (31%), 210 MiB/s,
 * ETA 14 s" line a copy writes into its running stage's detail (at most once
 * a second: progress_meter), and the whole reservation's progress from its
 * stages' durations and estimates (vclctl show --follow, vclctl top).
 *
 * Everything here is pure (the caller passes the clock), so it is unit
 * tested without services; the database write is job_progress (job.h). */
#ifndef VCL_PROGRESS_H
#define VCL_PROGRESS_H
#include <stdbool.h>
#include <stddef.h>

/* 512 -> "512 B", 1536 -> "1.5 KiB", 220200960 -> "210 MiB", 4 GiB -> "4.0 GiB":
 * one decimal below 100 units, none above; negative -> "?". */
void progress_fmt_bytes(long long bytes, char *out, size_t size);
/* Seconds for people: 0.8 -> "0.8 s", 14.2 -> "14 s", 125 -> "2m05s",
 * 3720 -> "1h02m"; negative or NaN -> "?". */
void progress_fmt_duration(double seconds, char *out, size_t size);
/* "[#######-------------]" with width cells inside the brackets; fraction
 * is clamped to [0, 1]. */
void progress_fmt_bar(double fraction, int width, char *out, size_t size);
/* Seconds left when done of total took elapsed_s at a steady rate; false
 * when it cannot be told yet (nothing done, no time passed, bad input). */
bool progress_eta(double done, double total, double elapsed_s, double *eta_s);
/* "copied 1.2 GiB of 4.0 GiB (31%), 210 MiB/s, ETA 14 s"; rate and ETA are
 * left out while they cannot be told (nothing copied yet, under 1 ms); at
 * the end "..., 210 MiB/s" without an ETA. total <= 0: "copied 1.2 GiB".
 * from: bytes already there when this copy started (a resumed copy), so the
 * rate and ETA are of this copy's own bytes; elapsed_s counts from then. */
void progress_copy_line(long long done, long long total, long long from, double elapsed_s,
                        char *out, size_t size);

/* Rate limit for progress writes: the first report, then at most one per
 * interval, and always the final one (done == total) once. */
typedef struct progress_meter {
    double start;       /* clock at init */
    double last;        /* clock of the last report; < 0 = none yet */
    double interval;    /* seconds between reports */
    bool final_sent;
} progress_meter;

void progress_meter_init(progress_meter *m, double now, double interval);
/* Should (done, total) be reported now? Records it when true. */
bool progress_meter_due(progress_meter *m, double now, long long done, long long total);

/* A stage's state as the live view shows it. */
typedef enum {
    PROGRESS_WAITING,
    PROGRESS_RUNNING,
    PROGRESS_DONE,
    PROGRESS_FAILED,
    PROGRESS_SKIPPED,   /* before the checkpoint the job resumed from (earlier attempt) */
    PROGRESS__COUNT
} progress_state;

const char *progress_state_name(progress_state s);   /* "waiting", "running", ... */

typedef struct progress_stage {
    progress_state state;
    double elapsed_ms;   /* done/failed: its duration; running: so far; waiting: 0 */
    double estimate_ms;  /* expected duration (history median or default) */
} progress_stage;

/* The whole reservation: *done_ms = finished durations + the running
 * stage's elapsed time (at most its estimate); *total_ms = finished
 * durations + for the running stage max(estimate, elapsed) + estimates of
 * the waiting ones. Returns the fraction done (0..1). *eta_s gets the
 * seconds left (total - finished - elapsed of the running one, never below 0). */
double progress_overall(const progress_stage *st, size_t n, double *done_ms, double *total_ms,
                        double *eta_s);
#endif
