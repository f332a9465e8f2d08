/* test_claimpoint: the resume point follows vcl.claim's order
 * (priority DESC, run_at, id) and only ever moves forward. */
#include "queue/claimpoint.h"
#include "tap.h"

int main(void)
{
    claim_point p = { 0 };
    ok(claim_point_after(&p, 0, 0, 1), "any row is after an unset point");
    claim_point_advance(&p, 5, 1000, 10);
    ok(p.set && p.priority == 5 && p.run_at_us == 1000 && p.id == 10, "an unset point takes the first row");

    ok(!claim_point_after(&p, 6, 0, 1), "a higher priority comes before");
    ok(claim_point_after(&p, 4, 0, 1), "a lower priority comes after");
    ok(!claim_point_after(&p, 5, 999, 99), "same priority, earlier run_at: before");
    ok(claim_point_after(&p, 5, 1001, 1), "same priority, later run_at: after");
    ok(!claim_point_after(&p, 5, 1000, 10), "the point itself is not after itself");
    ok(!claim_point_after(&p, 5, 1000, 9), "same priority and run_at, lower id: before");
    ok(claim_point_after(&p, 5, 1000, 11), "same priority and run_at, higher id: after");

    claim_point_advance(&p, 6, 5000, 1);
    is_int(p.priority, 5, "a row of a higher priority does not move the point back");
    claim_point_advance(&p, 5, 1000, 12);
    ok(p.priority == 5 && p.run_at_us == 1000 && p.id == 12, "a later id at the same time moves it");
    claim_point_advance(&p, 5, 1000, 11);
    is_int((long)p.id, 12, "an earlier row does not move it back");
    claim_point_advance(&p, -3, -7, 2);
    ok(p.priority == -3 && p.run_at_us == -7 && p.id == 2, "a lower priority moves it (negative values too)");

    claim_point_clear(&p);
    ok(!p.set && claim_point_after(&p, 100, 0, 0), "cleared: every row is after it");
    return done_testing();
}
