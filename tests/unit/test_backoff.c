/* test_backoff: capped exponential backoff with jitter. */
#include "base/backoff.h"
#include "tap.h"

int main(void)
{
    /* without jitter spread (unit01 -> 1) the delay doubles then caps */
    is_int((long)(backoff_seconds(1, 5, 600, 0.999999) + 0.5), 5, "attempt 1 = base");
    is_int((long)(backoff_seconds(2, 5, 600, 0.999999) + 0.5), 10, "attempt 2 doubles");
    is_int((long)(backoff_seconds(4, 5, 600, 0.999999) + 0.5), 40, "attempt 4 = base*8");
    is_int((long)(backoff_seconds(20, 5, 600, 0.999999) + 0.5), 600, "capped at max");
    is_int((long)(backoff_seconds(10000, 5, 600, 0.999999) + 0.5), 600, "huge attempt capped, no overflow");
    /* jitter: within [d/2, d] */
    for (int a = 1; a <= 12; a++) {
        double lo = backoff_seconds(a, 2, 300, 0.0), hi = backoff_seconds(a, 2, 300, 0.999999);
        ok(lo > 0 && lo <= hi && hi <= 300 && lo >= hi / 2 - 1e-9, "attempt %d: jitter range [%.2f, %.2f] sane", a, lo, hi);
    }
    ok(backoff_seconds(0, 0, 0, 0.5) > 0, "degenerate inputs still give a positive delay");
    int distinct = 0;
    double prev = -1;
    for (int i = 0; i < 20; i++) {
        double r = backoff_random();
        ok(r >= 0 && r < 1, "random draw %d in [0,1)", i);
        if (r != prev)
            distinct++;
        prev = r;
    }
    ok(distinct > 15, "random draws vary (%d distinct)", distinct);
    return done_testing();
}
