#!/usr/bin/env bash
# The row seam (README "Layout"): operations (worker/ops/) and node code
# (worker/node/) reach the database only through queue/job.h and
# queue/job_db.h. None of their files includes queue/statements.h or
# queue/db.h, calls db_*, or handles a PGresult (the master copy lock is
# queue/locks.h). pool.c names no operation: a cancel runs the operation
# table's on_cancel step. Reads the sources only.
. "$(dirname "$0")/../lib/tap.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || bail "no repository at $ROOT"

# every line that reaches for SQL
sql_lines() {
    grep -nE '#include "queue/(statements|db)\.h"|(^|[^A-Za-z0-9_])db_[a-z_]+\(|PGresult|PQ[a-z]+\(|SQL_[A-Z_]+' \
        worker/ops/*.[ch] worker/node/*.[ch]
}
is "$(sql_lines)" "" "no SQL under worker/ops/ and worker/node/"

is "$(grep -nE 'strcmp\([a-z_>.-]*operation' worker/queue/pool.c)" "" \
    "pool.c compares no operation name"
is "$(grep -n '"ops/' worker/queue/pool.c)" "" "pool.c includes nothing from ops/"
like "$(grep -n 'on_cancel' worker/ops/op_load.c)" 'load_on_cancel' "load declares its cancel step in its table"

# the fenced-out state has a name: nothing clears e to signal it
is "$(grep -nE 'vcl_error_clear\(e\); */\* *(class NONE|fenced)' worker/*/*.c)" "" \
    "no fenced-out write signals with class NONE"
like "$(grep -c 'VCL_ERR_LOST' worker/queue/job.c)" '^[1-9]' "job.c's fenced writes set VCL_ERR_LOST"

done_testing
