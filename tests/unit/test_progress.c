/* test_progress: the text of progress (byte sizes, durations, bar, ETA, the
 * copy line), the once-a-second rate limit, and a reservation's overall
 * progress from its stages' times and estimates. */
#include "base/progress.h"
#include "tap.h"

#include <math.h>
#include <string.h>

#define GIB (1024LL * 1024 * 1024)
#define MIB (1024LL * 1024)

static const char *bytes(long long b)
{
    static char buf[32];
    progress_fmt_bytes(b, buf, sizeof buf);
    return buf;
}

static const char *dur(double s)
{
    static char buf[32];
    progress_fmt_duration(s, buf, sizeof buf);
    return buf;
}

static const char *bar(double f, int w)
{
    static char buf[128];
    progress_fmt_bar(f, w, buf, sizeof buf);
    return buf;
}

int main(void)
{
    /* byte sizes */
    is_str(bytes(0), "0 B", "0 bytes");
    is_str(bytes(512), "512 B", "below 1 KiB in bytes");
    is_str(bytes(1023), "1023 B", "1023 bytes");
    is_str(bytes(1024), "1.0 KiB", "1 KiB");
    is_str(bytes(1536), "1.5 KiB", "1.5 KiB");
    is_str(bytes(210 * MIB), "210 MiB", "no decimal from 100 units up");
    is_str(bytes(64 * MIB), "64.0 MiB", "one decimal below 100 units");
    is_str(bytes(4 * GIB), "4.0 GiB", "4 GiB");
    is_str(bytes((long long)(1.2 * GIB)), "1.2 GiB", "1.2 GiB");
    is_str(bytes(1024 * MIB - 1), "1.0 GiB", "just under 1 GiB rounds into GiB, not '1024 MiB'");
    is_str(bytes(3 * 1024 * GIB), "3.0 TiB", "TiB");
    is_str(bytes(-1), "?", "negative is unknown");

    /* durations */
    is_str(dur(0), "0.0 s", "zero");
    is_str(dur(0.8), "0.8 s", "below 10 s with one decimal");
    is_str(dur(9.94), "9.9 s", "9.94 s");
    is_str(dur(14.2), "14 s", "whole seconds from 10 s");
    is_str(dur(59.4), "59 s", "59 s");
    is_str(dur(125), "2m05s", "minutes and seconds");
    is_str(dur(3599), "59m59s", "just under an hour");
    is_str(dur(3720), "1h02m", "hours and minutes");
    is_str(dur(-1), "?", "negative is unknown");
    is_str(dur(NAN), "?", "NaN is unknown");
    is_str(dur(INFINITY), "?", "infinity is unknown");

    /* bar */
    is_str(bar(0, 10), "[----------]", "empty bar");
    is_str(bar(0.5, 10), "[#####-----]", "half bar");
    is_str(bar(0.31, 10), "[###-------]", "31%% rounds down");
    is_str(bar(1, 10), "[##########]", "full bar");
    is_str(bar(1.7, 4), "[####]", "clamped above 1");
    is_str(bar(-3, 4), "[----]", "clamped below 0");
    is_str(bar(NAN, 4), "[----]", "NaN is empty");
    {
        char small[6];
        progress_fmt_bar(0.5, 40, small, sizeof small);
        is_str(small, "[#--]", "width cut to the buffer");
    }

    /* ETA */
    double eta = -1;
    ok(progress_eta(1, 4, 10, &eta) && fabs(eta - 30) < 1e-9, "1 of 4 in 10 s: 30 s left (%g)", eta);
    ok(progress_eta(4, 4, 10, &eta) && eta == 0, "all done: 0 s left");
    ok(!progress_eta(0, 4, 10, &eta), "nothing done: no ETA");
    ok(!progress_eta(1, 4, 0, &eta), "no time passed: no ETA");
    ok(!progress_eta(1, 0, 5, &eta), "no total: no ETA");
    ok(!progress_eta(5, 4, 5, &eta), "more than total: no ETA");

    /* the copy line */
    char line[256];
    progress_copy_line(5 * GIB / 4, 4 * GIB, 0, 6.0, line, sizeof line);
    is_str(line, "copied 1.2 GiB of 4.0 GiB (31%), 213 MiB/s, ETA 13 s", "copy line mid-way");
    progress_copy_line(0, 4 * GIB, 0, 0, line, sizeof line);
    is_str(line, "copied 0 B of 4.0 GiB (0%)", "at the start: no rate, no ETA");
    progress_copy_line(64 * MIB, 64 * MIB, 0, 0.5, line, sizeof line);
    is_str(line, "copied 64.0 MiB of 64.0 MiB (100%), 128 MiB/s", "at the end: rate, no ETA");
    progress_copy_line(5 * MIB, 0, 0, 1, line, sizeof line);
    is_str(line, "copied 5.0 MiB", "unknown total");
    progress_copy_line(10, 10 * GIB, 0, 0.0005, line, sizeof line);
    is_str(line, "copied 10 B of 10.0 GiB (0%)", "too early for a rate");
    /* a copy resumed at 3 GiB of 4: 0.5 GiB more in 2 s is 256 MiB/s, and
     * the last 0.5 GiB takes 2 s more (not the rate of 3.5 GiB in 2 s) */
    progress_copy_line(7 * GIB / 2, 4 * GIB, 3 * GIB, 2.0, line, sizeof line);
    is_str(line, "copied 3.5 GiB of 4.0 GiB (87%), 256 MiB/s, ETA 2.0 s",
           "resumed copy: rate and ETA of its own bytes");
    progress_copy_line(3 * GIB, 4 * GIB, 3 * GIB, 0.5, line, sizeof line);
    is_str(line, "copied 3.0 GiB of 4.0 GiB (75%)", "resumed, nothing new yet: no rate");
    progress_copy_line(GIB, 4 * GIB, 2 * GIB, 1.0, line, sizeof line);
    is_str(line, "copied 1.0 GiB of 4.0 GiB (25%), 1.0 GiB/s, ETA 3.0 s",
           "a start past done is ignored (treated as 0)");

    /* rate limit: first report, then one a second, the final one once */
    progress_meter m;
    progress_meter_init(&m, 100.0, 1.0);
    ok(progress_meter_due(&m, 100.0, 0, 100), "first report is due");
    ok(!progress_meter_due(&m, 100.4, 10, 100), "0.4 s later: not due");
    ok(!progress_meter_due(&m, 100.99, 20, 100), "0.99 s later: not due");
    ok(progress_meter_due(&m, 101.0, 30, 100), "1 s later: due");
    ok(!progress_meter_due(&m, 101.2, 40, 100), "0.2 s after that: not due");
    ok(progress_meter_due(&m, 101.3, 100, 100), "the final report is due at once");
    ok(!progress_meter_due(&m, 105, 100, 100), "the final report only once");
    int reports = 0;
    progress_meter_init(&m, 0, 1.0);
    for (int i = 0; i <= 1000; i++)   /* 10 s of 10 ms chunks */
        reports += progress_meter_due(&m, i * 0.01, i, 1000);
    ok(reports >= 10 && reports <= 12, "10 s of chunks: %d reports (about one a second)", reports);

    /* overall progress of a reservation */
    is_str(progress_state_name(PROGRESS_RUNNING), "running", "state names");
    is_str(progress_state_name(PROGRESS__COUNT), "?", "out of range state");
    progress_stage st[4] = {
        { PROGRESS_DONE, 1000, 2000 },      /* took 1 s (est 2 s) */
        { PROGRESS_RUNNING, 1000, 4000 },   /* 1 s of an expected 4 s */
        { PROGRESS_WAITING, 0, 3000 },
        { PROGRESS_WAITING, 0, 2000 },
    };
    double done, total, left;
    double f = progress_overall(st, 4, &done, &total, &left);
    ok(fabs(done - 2000) < 1e-9 && fabs(total - 10000) < 1e-9, "done 2 s of 10 s (%g of %g)", done,
       total);
    ok(fabs(f - 0.2) < 1e-9, "fraction 0.2 (%g)", f);
    ok(fabs(left - 8.0) < 1e-9, "8 s left: 3 of the running stage + 5 waiting (%g)", left);
    st[1].elapsed_ms = 6000;   /* overran its estimate */
    f = progress_overall(st, 4, &done, &total, &left);
    ok(fabs(total - 12000) < 1e-9 && fabs(done - 5000) < 1e-9,
       "an overrunning stage counts its elapsed time in the total (%g of %g)", done, total);
    ok(fabs(left - 5.0) < 1e-9, "and nothing left of itself (%g)", left);
    st[1].state = PROGRESS_DONE;
    st[2].state = PROGRESS_DONE;
    st[2].elapsed_ms = 500;
    st[3].state = PROGRESS_DONE;
    st[3].elapsed_ms = 500;
    f = progress_overall(st, 4, &done, &total, &left);
    ok(f == 1 && left == 0, "all done: 1.0 and nothing left");
    st[0].state = PROGRESS_SKIPPED;
    st[1].state = PROGRESS_FAILED;
    f = progress_overall(st, 2, &done, &total, &left);
    ok(fabs(total - 6000) < 1e-9, "skipped stages are not counted, failed ones are (%g)", total);
    f = progress_overall(st, 0, &done, &total, &left);
    ok(f == 0 && total == 0 && left == 0, "no stages: 0");
    return done_testing();
}
