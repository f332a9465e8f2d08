/* pool.h: the worker process: claim, lease, heartbeat, run jobs in slots.
 *
 * The main thread owns one PostgreSQL connection: it LISTENs for wake-ups,
 * claims batches with SKIP LOCKED, renews the leases of every job it holds
 * in one statement, reconnects with backoff, and handles signals. Each slot
 * runs one job at a time in its own thread with its own connection, walking
 * the operation's stage table; every write is fenced on the lease token. */
#ifndef VCL_POOL_H
#define VCL_POOL_H
#include <stdbool.h>
#include "base/config.h"

typedef struct pool_opts {
    const char *config_path;   /* re-read on SIGHUP */
    bool drain;                /* exit once nothing is claimable and no job runs */
} pool_opts;

/* Runs until SIGTERM/SIGINT (or drained). Returns the process exit code. */
int pool_run(vcl_config *cfg, const pool_opts *opts);
#endif
