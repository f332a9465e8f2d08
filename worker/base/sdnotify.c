/* sdnotify.c: Type=notify messages to systemd; see sdnotify.h. */
#include "base/sdnotify.h"
#include "base/log.h"
#include "base/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

static bool active;           /* NOTIFY_SOCKET is set */
static bool ready;            /* READY=1 sent */
static bool stopping;         /* STOPPING=1 sent: no more STATUS= */
static double watchdog_every; /* seconds between WATCHDOG=1, 0 = none */
static double watchdog_next;
static long long last_claim;  /* realtime second of the last claim that got rows */
static long long last_id;
static char last_status[160];
static int cur_busy, cur_slots;

static void send_state(const char *state)
{
    if (!active)
        return;
    int r = sd_notify(0, state);
    if (r < 0)
        log_debug("sd_notify(%s): error %d", state, -r);
}

void sdnotify_init(void)
{
    const char *sock = getenv("NOTIFY_SOCKET");
    active = sock && sock[0];
    ready = stopping = false;
    watchdog_every = 0;
    uint64_t usec = 0;
    if (active && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        /* a third: the main loop may be late by a poll or a slow query */
        watchdog_every = (double)usec / 3e6;
        watchdog_next = util_mono_s();
        log_info("systemd watchdog: WATCHDOG=1 every %.1f s (WatchdogSec=%.1f s)", watchdog_every,
                 (double)usec / 1e6);
    }
}

void sdnotify_status_text(char *out, int size, int busy, int slots, long long claim_at,
                          long long claim_id)
{
    char when[40] = "none yet";
    if (claim_at > 0) {
        time_t t = (time_t)claim_at;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%H:%M:%S UTC", &tm);
    }
    if (claim_at > 0 && claim_id > 0)
        snprintf(out, (size_t)size, "%d of %d slots busy; last claim %s (reservation %lld)", busy,
                 slots, when, claim_id);
    else
        snprintf(out, (size_t)size, "%d of %d slots busy; last claim %s", busy, slots, when);
}

static void send_status(void)
{
    char st[sizeof last_status], msg[sizeof last_status + 8];
    sdnotify_status_text(st, sizeof st, cur_busy, cur_slots, last_claim, last_id);
    if (strcmp(st, last_status) == 0)
        return;
    snprintf(last_status, sizeof last_status, "%s", st);
    snprintf(msg, sizeof msg, "STATUS=%s", st);
    send_state(msg);
}

void sdnotify_claimed(int got, long long first_id)
{
    if (!active || got < 0)
        return;
    if (got > 0) {
        last_claim = (long long)time(NULL);
        last_id = first_id;
    }
    if (!stopping)
        send_status();
    if (!ready) {
        ready = true;
        send_state("READY=1");
    }
}

static void watchdog_ping(void)
{
    if (watchdog_every > 0 && util_mono_s() >= watchdog_next) {
        send_state("WATCHDOG=1");
        watchdog_next = util_mono_s() + watchdog_every;
    }
}

void sdnotify_tick(int busy, int slots)
{
    if (!active)
        return;
    cur_busy = busy;
    cur_slots = slots;
    if (ready && !stopping)
        send_status();
    watchdog_ping();
}

void sdnotify_waiting(const char *why)
{
    char st[sizeof last_status], msg[sizeof last_status + 8];
    if (!active)
        return;
    if (!stopping) {
        /* only the first line, without control characters: it is libpq's text */
        snprintf(st, sizeof st, "waiting for PostgreSQL: %s", why ? why : "reconnecting");
        for (char *c = st; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) {
                *c = '\0';
                break;
            }
        if (strcmp(st, last_status) != 0) {
            snprintf(last_status, sizeof last_status, "%s", st);
            snprintf(msg, sizeof msg, "STATUS=%s", st);
            send_state(msg);
        }
    }
    watchdog_ping();
}

double sdnotify_next_due(void)
{
    return active && watchdog_every > 0 ? watchdog_next : 0;
}

void sdnotify_reloading(void)
{
    struct timespec ts;
    char msg[80];
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%lld",
             (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000);
    send_state(msg);
}

void sdnotify_reloaded(void)
{
    if (ready && !stopping)
        send_state("READY=1");
}

void sdnotify_stopping(void)
{
    if (stopping)
        return;
    stopping = true;
    send_state("STOPPING=1\nSTATUS=stopping: running stages finish, then jobs are handed back");
}
