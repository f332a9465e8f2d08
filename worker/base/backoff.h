/* backoff.h: retry delay for a failed attempt: exponential, capped, jittered.
 *   delay = min(max, base * 2^(attempt-1)) scaled by a factor in [0.5, 1.0]
 * (equal jitter: never zero, never above the cap), so a burst of failures on
 * one node does not come back in lock step. */
#ifndef VCL_BACKOFF_H
#define VCL_BACKOFF_H

/* attempt >= 1 (the attempt that just failed); unit01 in [0,1) is the random
 * draw (pass backoff_random() in production, fixed values in tests). */
double backoff_seconds(int attempt, double base, double max, double unit01);
double backoff_random(void);
#endif
