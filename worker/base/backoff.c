/* backoff.c: see backoff.h. */
#include "base/backoff.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

double backoff_seconds(int attempt, double base, double max, double unit01)
{
    if (attempt < 1)
        attempt = 1;
    if (base <= 0)
        base = 1;
    if (max < base)
        max = base;
    if (unit01 < 0)
        unit01 = 0;
    if (unit01 >= 1)
        unit01 = 0.999999;
    /* 2^(attempt-1) overflows nothing we care about once past the cap */
    double d = attempt > 60 ? max : base * ldexp(1.0, attempt - 1);
    if (d > max)
        d = max;
    return d * (0.5 + 0.5 * unit01);
}

double backoff_random(void)
{
    static _Thread_local unsigned short seed[3];
    static _Thread_local int seeded;
    if (!seeded) {
        unsigned long long s = (unsigned long long)time(NULL) ^ ((unsigned long long)getpid() << 16) ^
                               (unsigned long long)(size_t)&seeded;
        seed[0] = (unsigned short)s;
        seed[1] = (unsigned short)(s >> 16);
        seed[2] = (unsigned short)(s >> 32);
        seeded = 1;
    }
    return erand48(seed);
}
