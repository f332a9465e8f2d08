/* claimpoint.h: a worker's resume point for vcl.claim's walk of the queue.
 *
 * Claim order is priority DESC, run_at, id (reservation_claim_idx). After a
 * claim that filled up, the worker remembers the last row it took in that
 * order and its next claim walks on from there (vcl.claim p_after_*): the
 * entries of rows claimed before stay in the index until VACUUM, and under a
 * long transaction holding back xmin a walk from the head steps over every
 * one of them (sql/functions/queue.sql, step 4). The point is dropped,
 * so the next walk starts at the head, after a claim that came back short,
 * after a claim that looked for expired leases (once a second: pool.c), and
 * on a new database connection. */
#ifndef VCL_CLAIMPOINT_H
#define VCL_CLAIMPOINT_H

#include <stdbool.h>

typedef struct claim_point {
    bool set;
    int priority;
    long long run_at_us; /* microseconds since the Unix epoch, exact */
    long long id;
} claim_point;

/* Is row (priority, run_at_us, id) later in claim order than point p? Any
 * row is later than an unset point. */
bool claim_point_after(const claim_point *p, int priority, long long run_at_us, long long id);

/* Move p to the row if the row is later in claim order (or p is unset). */
void claim_point_advance(claim_point *p, int priority, long long run_at_us, long long id);

void claim_point_clear(claim_point *p);
#endif
