/* progress.c: see progress.h. */
#include "base/progress.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void progress_fmt_bytes(long long bytes, char *out, size_t size)
{
    static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
    if (bytes < 0) {
        snprintf(out, size, "?");
        return;
    }
    if (bytes < 1024) {
        snprintf(out, size, "%lld B", bytes);
        return;
    }
    double v = (double)bytes / 1024.0;
    size_t u = 0;
    while (v >= 1024.0 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024.0;
        u++;
    }
    /* one decimal below 100 ("4.0 GiB"), none above ("210 MiB"); a value
     * that rounds up to 1024 is shown in the next unit */
    if (v >= 1023.5 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024.0;
        u++;
    }
    if (v < 99.95)
        snprintf(out, size, "%.1f %s", v, units[u]);
    else
        snprintf(out, size, "%.0f %s", v, units[u]);
}

void progress_fmt_duration(double seconds, char *out, size_t size)
{
    if (!(seconds >= 0) || isinf(seconds)) {
        snprintf(out, size, "?");
        return;
    }
    if (seconds < 9.95) {
        snprintf(out, size, "%.1f s", seconds);
        return;
    }
    long long s = llround(seconds);
    if (s < 60)
        snprintf(out, size, "%lld s", s);
    else if (s < 3600)
        snprintf(out, size, "%lldm%02llds", s / 60, s % 60);
    else
        snprintf(out, size, "%lldh%02lldm", s / 3600, s / 60 % 60);
}

void progress_fmt_bar(double fraction, int width, char *out, size_t size)
{
    if (size == 0)
        return;
    if (!(fraction >= 0))
        fraction = 0;
    if (fraction > 1)
        fraction = 1;
    if (width < 1)
        width = 1;
    if ((size_t)width + 3 > size)
        width = (int)size - 3;
    int fill = (int)floor(fraction * width + 1e-9);
    size_t o = 0;
    out[o++] = '[';
    for (int i = 0; i < width; i++)
        out[o++] = i < fill ? '#' : '-';
    out[o++] = ']';
    out[o] = '\0';
}

bool progress_eta(double done, double total, double elapsed_s, double *eta_s)
{
    if (!(done > 0) || !(total > 0) || !(elapsed_s > 0) || done > total)
        return false;
    *eta_s = (total - done) * elapsed_s / done;
    return true;
}

void progress_copy_line(long long done, long long total, long long from, double elapsed_s,
                        char *out, size_t size)
{
    char d[32], t[32], rate[32], eta[32];
    size_t o = 0;
    progress_fmt_bytes(done, d, sizeof d);
    if (total <= 0) {
        snprintf(out, size, "copied %s", d);
        return;
    }
    progress_fmt_bytes(total, t, sizeof t);
    int pct = (int)floor(100.0 * (double)done / (double)total);
    pct = pct < 0 ? 0 : pct > 100 ? 100 : pct;
    int w = snprintf(out, size, "copied %s of %s (%d%%)", d, t, pct);
    o = w > 0 ? (size_t)w : 0;
    /* rate and ETA only once there is something to measure */
    if (from < 0 || from > done)
        from = 0;
    long long moved = done - from;
    if (moved <= 0 || elapsed_s < 0.001 || o >= size)
        return;
    progress_fmt_bytes((long long)((double)moved / elapsed_s), rate, sizeof rate);
    w = snprintf(out + o, size - o, ", %s/s", rate);
    o = w > 0 ? o + (size_t)w : o;
    double left;
    if (done < total && o < size &&
        progress_eta((double)moved, (double)(total - from), elapsed_s, &left)) {
        progress_fmt_duration(left, eta, sizeof eta);
        snprintf(out + o, size - o, ", ETA %s", eta);
    }
}

void progress_meter_init(progress_meter *m, double now, double interval)
{
    m->start = now;
    m->last = -1;
    m->interval = interval;
    m->final_sent = false;
}

bool progress_meter_due(progress_meter *m, double now, long long done, long long total)
{
    bool final = total >= 0 && done >= total;
    if (final) {
        if (m->final_sent)
            return false;
        m->final_sent = true;
        m->last = now;
        return true;
    }
    if (m->last >= 0 && now - m->last < m->interval)
        return false;
    m->last = now;
    return true;
}

const char *progress_state_name(progress_state s)
{
    static const char *const names[PROGRESS__COUNT] = { "waiting", "running", "done", "failed",
                                                        "skipped" };
    return (s >= 0 && s < PROGRESS__COUNT) ? names[s] : "?";
}

double progress_overall(const progress_stage *st, size_t n, double *done_ms, double *total_ms,
                        double *eta_s)
{
    double done = 0, total = 0, left = 0;
    for (size_t i = 0; i < n; i++) {
        double el = st[i].elapsed_ms > 0 ? st[i].elapsed_ms : 0;
        double est = st[i].estimate_ms > 0 ? st[i].estimate_ms : 0;
        switch (st[i].state) {
        case PROGRESS_DONE:
        case PROGRESS_FAILED:
            done += el;
            total += el;
            break;
        case PROGRESS_SKIPPED:
            break;   /* ran under an earlier attempt: not part of this run's time */
        case PROGRESS_RUNNING:
            done += el < est ? el : est;
            total += el > est ? el : est;
            left += est > el ? est - el : 0;
            break;
        case PROGRESS_WAITING:
        default:
            total += est;
            left += est;
            break;
        }
    }
    if (done_ms)
        *done_ms = done;
    if (total_ms)
        *total_ms = total;
    if (eta_s)
        *eta_s = left / 1000.0;
    if (total <= 0)
        return 0;
    double f = done / total;
    return f < 0 ? 0 : f > 1 ? 1 : f;
}
