/* claimpoint.c: a worker's resume point for vcl.claim's walk (claimpoint.h). */
#include "queue/claimpoint.h"

bool claim_point_after(const claim_point *p, int priority, long long run_at_us, long long id)
{
    if (!p->set)
        return true;
    if (priority != p->priority)
        return priority < p->priority; /* higher priorities come first */
    if (run_at_us != p->run_at_us)
        return run_at_us > p->run_at_us;
    return id > p->id;
}

void claim_point_advance(claim_point *p, int priority, long long run_at_us, long long id)
{
    if (!claim_point_after(p, priority, run_at_us, id))
        return;
    p->set = true;
    p->priority = priority;
    p->run_at_us = run_at_us;
    p->id = id;
}

void claim_point_clear(claim_point *p)
{
    p->set = false;
}
