/* sdnotify.h: the worker's state for systemd (Type=notify), through
 * sd_notify(3) on $NOTIFY_SOCKET:
 *   READY=1      after the first claim that reached the database (so
 *                `systemctl start` returns once the worker really works),
 *                and again after a SIGHUP reload
 *   STATUS=      "2 of 4 slots busy; last claim 08:12:03 UTC (reservation
 *                42)", shown by `systemctl status`; sent when it changes
 *   WATCHDOG=1   from the main loop, every third of WATCHDOG_USEC
 *                (WatchdogSec=): a main loop that hangs gets the worker
 *                restarted; also while it waits for PostgreSQL to come back
 *                (STATUS=waiting for PostgreSQL: ...), which is not a hang
 *   RELOADING=1  on SIGHUP (with MONOTONIC_USEC=, for Type=notify-reload)
 *   STOPPING=1   on SIGTERM/SIGINT
 * Without NOTIFY_SOCKET (not under systemd, Type=simple) every call does
 * nothing. Main thread only. */
#ifndef VCL_SDNOTIFY_H
#define VCL_SDNOTIFY_H
#include <stdbool.h>

/* Read WATCHDOG_USEC (for this process: WATCHDOG_PID). */
void sdnotify_init(void);
/* After each claim: got rows (-1: the claim failed), the first of them. */
void sdnotify_claimed(int got, long long first_id);
/* Each main-loop turn: STATUS= when the slot counts changed, WATCHDOG=1 when due. */
void sdnotify_tick(int busy, int slots);
/* util_mono_s() time the next WATCHDOG=1 is due (the main loop wakes up by
 * then); 0 when there is no watchdog. */
double sdnotify_next_due(void);
/* While the main loop waits for PostgreSQL (an outage, a failover): STATUS=
 * "waiting for PostgreSQL: why" when it changed, and WATCHDOG=1 when due. A
 * worker that keeps trying is alive: systemd must not kill it (and the stages
 * its slots still run) because the database is away longer than WatchdogSec. */
void sdnotify_waiting(const char *why);
void sdnotify_reloading(void);
void sdnotify_reloaded(void);
void sdnotify_stopping(void);

/* The STATUS= text (pure, for the tests): last_claim is a realtime
 * second, 0 for none yet. */
void sdnotify_status_text(char *out, int size, int busy, int slots, long long last_claim,
                          long long last_id);
#endif
