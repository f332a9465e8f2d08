/* live.c: the live views for people: `show ID --follow` (one reservation,
 * stage by stage, with estimates and an ETA) and `top` (the whole pool).
 * On a terminal they redraw in place; otherwise they print lines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "queue/db.h"
#include "base/error.h"
#include "base/progress.h"
#include "queue/stage.h"
#include "vclctl.h"
#include "sql.h"

/* One row of a reservation's stage log as the live view reads it. */
typedef struct follow_row {
    long long id;
    char stage[64];
    char outcome[16];
    long long lease;
    double started;        /* epoch seconds */
    double elapsed_ms;     /* duration, or so far while running */
    char detail[1024];
    char printed[16];      /* line mode: the outcome last printed ("" = none) */
    double detail_at;      /* line mode: when its detail was last printed */
    char detail_printed[1024];
} follow_row;

typedef struct follow {
    long long id;
    char ids[32];
    const op_def *op;
    char state[16], operation[32], checkpoint[64], last_error[1024], failed_stage[64];
    char computer[128], node[128], worker[128];
    long long lease;
    int attempts, max_attempts;
    double now, run_at, elapsed_s;   /* elapsed_s: since the first claim (or to finish) */
    follow_row *rows;
    size_t nrows, cap;
    /* estimates, in the operation's stage order (0 = unknown) */
    double est_ms[64];
    char est_src[64][12];
    bool est_read;                   /* estimates read ... */
    long long est_lease;             /* ... under this lease */
    bool est_failed;                 /* vcl.reservation_estimates missing (schema not migrated) */
    char printed_state[1400];        /* line mode: last reservation state line */
    int tty_lines;                   /* tty mode: lines drawn by the last frame */
} follow;

static double epoch_cell(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : atof(PQgetvalue(r, row, col));
}

static void copy_cell(char *dst, size_t n, const PGresult *r, int row, int col)
{
    snprintf(dst, n, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
    printable(dst, false); /* node-originated text reaches the terminal */
}

static follow_row *follow_find_row(follow *f, long long id)
{
    for (size_t i = 0; i < f->nrows; i++)
        if (f->rows[i].id == id)
            return &f->rows[i];
    return NULL;
}

/* Read the reservation and its stage log. false + message on error. */
static bool follow_poll(ctl *c, follow *f, int *rc)
{
    vcl_error e;
    const char *p[1] = { f->ids };
    vcl_error_clear(&e);
    PGresult *r = db_exec(c->db, SQL_FOLLOW_RESERVATION, 1, p, &e);
    if (!r) {
        *rc = db_fail(c, &e, "cannot read reservation %s", f->ids);
        return false;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        *rc = fail("reservation %s is gone (deleted while following it)", f->ids);
        return false;
    }
    copy_cell(f->state, sizeof f->state, r, 0, 0);
    copy_cell(f->operation, sizeof f->operation, r, 0, 1);
    copy_cell(f->checkpoint, sizeof f->checkpoint, r, 0, 2);
    f->lease = atoll(PQgetvalue(r, 0, 3));
    copy_cell(f->last_error, sizeof f->last_error, r, 0, 4);
    copy_cell(f->failed_stage, sizeof f->failed_stage, r, 0, 5);
    copy_cell(f->computer, sizeof f->computer, r, 0, 6);
    copy_cell(f->node, sizeof f->node, r, 0, 7);
    copy_cell(f->worker, sizeof f->worker, r, 0, 8);
    f->attempts = atoi(PQgetvalue(r, 0, 9));
    f->max_attempts = atoi(PQgetvalue(r, 0, 10));
    f->now = epoch_cell(r, 0, 11);
    f->run_at = epoch_cell(r, 0, 12);
    f->elapsed_s = PQgetisnull(r, 0, 13) ? -1 : atof(PQgetvalue(r, 0, 13));
    PQclear(r);
    f->op = ops_find(f->operation);

    vcl_error_clear(&e);
    r = db_exec(c->db, SQL_FOLLOW_STAGES, 1, p, &e);
    if (!r) {
        *rc = db_fail(c, &e, "cannot read the stage log of reservation %s", f->ids);
        return false;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        long long id = atoll(PQgetvalue(r, i, 0));
        follow_row *w = follow_find_row(f, id);
        if (!w) {
            if (f->nrows == f->cap) {
                size_t cap = f->cap ? f->cap * 2 : 32;
                follow_row *n = realloc(f->rows, cap * sizeof *n);
                if (!n) {
                    PQclear(r);
                    *rc = fail("out of memory");
                    return false;
                }
                f->rows = n;
                f->cap = cap;
            }
            w = &f->rows[f->nrows++];
            memset(w, 0, sizeof *w);
            w->id = id;
        }
        copy_cell(w->stage, sizeof w->stage, r, i, 1);
        copy_cell(w->outcome, sizeof w->outcome, r, i, 2);
        w->lease = atoll(PQgetvalue(r, i, 3));
        w->started = epoch_cell(r, i, 4);
        w->elapsed_ms = epoch_cell(r, i, 5);
        copy_cell(w->detail, sizeof w->detail, r, i, 6);
    }
    PQclear(r);
    return true;
}

static int follow_stage_index(const follow *f, const char *stage)
{
    for (int i = 0; f->op && f->op->stages[i].name && i < 64; i++)
        if (strcmp(f->op->stages[i].name, stage) == 0)
            return i;
    return -1;
}

/* Estimates for every stage of the operation: read once, and again when a
 * new attempt starts (a new lease). Not after each stage: then the job's
 * own finished stages would become its own "history" on a node with none. */
static void follow_estimates(ctl *c, follow *f)
{
    if (!f->op || f->est_failed || (f->est_read && f->est_lease == f->lease))
        return;
    f->est_read = true;
    f->est_lease = f->lease;
    char stages[2048] = "{";
    size_t len = 1;
    for (int i = 0; f->op->stages[i].name && i < 64; i++) {
        int w = snprintf(stages + len, sizeof stages - len, "%s%s", i ? "," : "",
                         f->op->stages[i].name);
        len = w > 0 && (size_t)w < sizeof stages - len ? len + (size_t)w : len;
    }
    snprintf(stages + len, sizeof stages - len, "}");
    const char *p[2] = { f->ids, stages };
    vcl_error e;
    vcl_error_clear(&e);
    PGresult *r = db_exec(c->db, SQL_FOLLOW_ESTIMATES, 2, p, &e);
    if (!r) {
        f->est_failed = true;
        note(c, "no stage estimates (%s); is the schema current? run: %s migrate", db_msg(&e),
             PROG);
        return;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        int k = atoi(PQgetvalue(r, i, 0)) - 1;
        if (k < 0 || k >= 64)
            continue;
        f->est_ms[k] = atof(PQgetvalue(r, i, 1));
        copy_cell(f->est_src[k], sizeof f->est_src[k], r, i, 2);
    }
    PQclear(r);
}

static bool follow_ended(const follow *f)
{
    return strcmp(f->state, "done") == 0 || strcmp(f->state, "failed") == 0 ||
           strcmp(f->state, "cancelled") == 0;
}

/* The live state of each stage of the operation (see show --follow). */
static size_t follow_stages(const follow *f, progress_stage *st, const follow_row **rows,
                            size_t max)
{
    size_t n = 0;
    if (!f->op)
        return 0;
    int ci = stage_resume_index(f->op, f->checkpoint);
    if (ci < 0)
        ci = 0;
    for (; f->op->stages[n].name && n < max; n++) {
        const char *name = f->op->stages[n].name;
        const follow_row *last = NULL, *last_ok = NULL;
        for (size_t i = 0; i < f->nrows; i++) {
            if (strcmp(f->rows[i].stage, name) != 0)
                continue;
            last = &f->rows[i];
            if (strcmp(last->outcome, "ok") == 0)
                last_ok = last;
        }
        st[n].estimate_ms = f->est_ms[n];
        st[n].elapsed_ms = 0;
        st[n].state = PROGRESS_WAITING;
        rows[n] = last;
        if ((int)n < ci || strcmp(f->state, "done") == 0 ||
            (last && strcmp(last->outcome, "ok") == 0 && last->lease == f->lease)) {
            st[n].state = PROGRESS_DONE;
            st[n].elapsed_ms = last_ok ? last_ok->elapsed_ms : 0;
            rows[n] = last_ok;
        } else if (last && strcmp(last->outcome, "running") == 0 && last->lease == f->lease &&
                   strcmp(f->state, "running") == 0) {
            st[n].state = PROGRESS_RUNNING;
            st[n].elapsed_ms = last->elapsed_ms;
        } else if (last && last->lease == f->lease &&
                   (strcmp(last->outcome, "failed") == 0 ||
                    strcmp(last->outcome, "abandoned") == 0)) {
            st[n].state = PROGRESS_FAILED;
            st[n].elapsed_ms = last->elapsed_ms;
        }
    }
    return n;
}

static void fmt_clock(double epoch, char *out, size_t size)
{
    time_t t = (time_t)epoch;
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(out, size, "%H:%M:%S", &tm);
}

static void fmt_ms(double ms, char *out, size_t size)
{
    progress_fmt_duration(ms / 1000.0, out, size);
}

/* What the reservation as a whole is doing, in one line. */
static void follow_state_line(const follow *f, char *out, size_t size)
{
    char t[32];
    if (strcmp(f->state, "running") == 0)
        snprintf(out, size, "running on worker %s (attempt %d of %d)", f->worker[0] ? f->worker : "?",
                 f->attempts, f->max_attempts);
    else if (strcmp(f->state, "pending") == 0 && f->attempts > 0) {
        fmt_clock(f->run_at, t, sizeof t);
        snprintf(out, size, "pending: attempt %d of %d failed%s%s, retry at %s", f->attempts,
                 f->max_attempts, f->failed_stage[0] ? " in stage " : "", f->failed_stage, t);
    } else if (strcmp(f->state, "pending") == 0) {
        if (f->run_at > f->now + 1) {
            fmt_clock(f->run_at, t, sizeof t);
            snprintf(out, size, "pending (runs at %s)", t);
        } else
            snprintf(out, size, "pending (waiting for a worker)");
    } else if (strcmp(f->state, "done") == 0) {
        progress_fmt_duration(f->elapsed_s, t, sizeof t);
        snprintf(out, size, "done in %s", t);
    } else if (strcmp(f->state, "failed") == 0)
        snprintf(out, size, "failed in stage %s (attempt %d of %d): %s",
                 f->failed_stage[0] ? f->failed_stage : "?", f->attempts, f->max_attempts,
                 f->last_error);
    else
        snprintf(out, size, "%s", f->state);
}

/* Line mode (stdout not a terminal): one line per change, in order. */
static void follow_print_state(follow *f, const char *tag)
{
    char t[32], line[1400];
    follow_state_line(f, line, sizeof line);
    if (strcmp(line, f->printed_state) == 0)
        return;
    fmt_clock(f->now, t, sizeof t);
    printf("%s %s ", t, tag);
    put_clean(stdout, line);
    fputc('\n', stdout);
    snprintf(f->printed_state, sizeof f->printed_state, "%s", line);
}

static void follow_print_lines(follow *f)
{
    char tag[64], t[32], a[32], b[32], line[1400];
    snprintf(tag, sizeof tag, "%s#%lld", f->operation, f->id);
    /* a new state first (running on ...), the end after the last stage */
    if (!follow_ended(f))
        follow_print_state(f, tag);
    for (size_t i = 0; i < f->nrows; i++) {
        follow_row *w = &f->rows[i];
        int k = follow_stage_index(f, w->stage);
        double est = k >= 0 ? f->est_ms[k] : 0;
        fmt_ms(est, b, sizeof b);
        if (!w->printed[0]) {
            fmt_clock(w->started, t, sizeof t);
            printf("%s %s stage %s started (est %s)\n", t, tag, w->stage, b);
            snprintf(w->printed, sizeof w->printed, "running");
            w->detail_at = f->now;
        }
        if (strcmp(w->outcome, "running") == 0 && w->detail[0] &&
            strcmp(w->detail, w->detail_printed) != 0 && f->now - w->detail_at >= 2.0) {
            fmt_clock(f->now, t, sizeof t);
            printf("%s %s stage %s: ", t, tag, w->stage);
            put_clean(stdout, w->detail);
            fputc('\n', stdout);
            snprintf(w->detail_printed, sizeof w->detail_printed, "%s", w->detail);
            w->detail_at = f->now;
        }
        if (strcmp(w->outcome, "running") != 0 && strcmp(w->printed, w->outcome) != 0) {
            fmt_clock(w->started + w->elapsed_ms / 1000.0, t, sizeof t);
            fmt_ms(w->elapsed_ms, a, sizeof a);
            if (strcmp(w->outcome, "ok") == 0)
                snprintf(line, sizeof line, "%s %s stage %s done in %s (est %s)", t, tag, w->stage,
                         a, b);
            else
                snprintf(line, sizeof line, "%s %s stage %s %s after %s: %s", t, tag, w->stage,
                         w->outcome, a, w->detail[0] ? w->detail : "(no detail)");
            put_clean(stdout, line);
            fputc('\n', stdout);
            snprintf(w->printed, sizeof w->printed, "%s", w->outcome);
        }
    }
    if (follow_ended(f))
        follow_print_state(f, tag);
    fflush(stdout);
}

static int term_width(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    return 80;
}

/* Write a frame's text: each line cut to the terminal's width (so the
 * cursor moves stay right) and cleared to its end. Returns lines written. */
static int put_frame(const char *text, int width)
{
    int lines = 0, col = 0;
    for (const char *s = text; *s; s++) {
        if (*s == '\n') {
            fputs("\033[K\n", stdout);
            lines++;
            col = 0;
            continue;
        }
        if (((unsigned char)*s & 0xC0) != 0x80)
            col++;
        if (col < width)
            fputc(((unsigned char)*s < 0x20 && *s != '\033') ? ' ' : *s, stdout);
    }
    return lines;
}

/* Terminal mode: the whole view redrawn in place. */
static void follow_draw(follow *f)
{
    progress_stage st[64];
    const follow_row *rows[64];
    size_t n = follow_stages(f, st, rows, 64);
    double done_ms, total_ms, eta_s;
    double frac = progress_overall(st, n, &done_ms, &total_ms, &eta_s);
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (!m)
        return;
    char bar[64], a[32], b[32], c[32], line[1400];
    follow_state_line(f, line, sizeof line);
    fprintf(m, "reservation %lld: %s of %s on node %s: %s\n", f->id, f->operation, f->computer,
            f->node, line);
    if (strcmp(f->state, "done") == 0)
        frac = 1, eta_s = 0;
    progress_fmt_bar(frac, 30, bar, sizeof bar);
    fmt_ms(done_ms, a, sizeof a);
    fmt_ms(total_ms, b, sizeof b);
    progress_fmt_duration(eta_s, c, sizeof c);
    fprintf(m, "%s %3d%%  %s of about %s", bar, (int)(frac * 100), a, b);
    if (!follow_ended(f))
        fprintf(m, ", ETA %s", c);
    fputc('\n', m);
    if (!f->op)
        fprintf(m, "  (operation %s is unknown to this vclctl: no stage list)\n", f->operation);
    for (size_t i = 0; i < n; i++) {
        const char *name = f->op->stages[i].name;
        if (st[i].state == PROGRESS_WAITING)
            snprintf(a, sizeof a, "-");
        else
            fmt_ms(st[i].elapsed_ms, a, sizeof a);
        fmt_ms(st[i].estimate_ms, b, sizeof b);
        fprintf(m, "  %-8s %-16s %8s  est %s", progress_state_name(st[i].state), name, a, b);
        if ((st[i].state == PROGRESS_RUNNING || st[i].state == PROGRESS_FAILED) && rows[i] &&
            rows[i]->detail[0])
            fprintf(m, "%*s%s", 9 - (int)strlen(b), "", rows[i]->detail);
        fputc('\n', m);
    }
    if (strcmp(f->state, "failed") == 0)
        fprintf(m, "error: %s\n", f->last_error[0] ? f->last_error : "(no message recorded)");
    fclose(m);
    if (f->tty_lines > 0)
        printf("\033[%dA\r", f->tty_lines);
    int drawn = put_frame(text, term_width());
    /* a shorter frame than the last one: clear what is left below */
    for (int i = drawn; i < f->tty_lines; i++)
        fputs("\033[K\n", stdout);
    if (f->tty_lines > drawn)
        printf("\033[%dA", f->tty_lines - drawn);
    f->tty_lines = drawn;
    fflush(stdout);
    free(text);
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

int show_follow(ctl *c, long long id)
{
    follow f;
    int rc = EXIT_OK;
    bool tty = isatty(STDOUT_FILENO);
    memset(&f, 0, sizeof f);
    f.id = id;
    snprintf(f.ids, sizeof f.ids, "%lld", id);
    for (;;) {
        if (!follow_poll(c, &f, &rc))
            break;
        follow_estimates(c, &f);
        if (tty)
            follow_draw(&f);
        else
            follow_print_lines(&f);
        if (follow_ended(&f)) {
            rc = strcmp(f.state, "done") == 0 ? EXIT_OK : EXIT_FAIL;
            break;
        }
        sleep_ms(500);
    }
    free(f.rows);
    return rc;
}

/* ---- top ---- */

const optspec OPTS_TOP[] = {
    { "once", NULL, 0, "print one screen and exit (also when stdout is not a terminal)" },
    { "interval", "SECONDS", 0, "seconds between refreshes (default 2)" },
    { NULL, NULL, 0, NULL },
};

static void fmt_secs(const char *in, char *out, size_t size)
{
    progress_fmt_duration(atof(in), out, size);
}

static const colfmt TOP_FMTS[] = {
    { "heartbeat", fmt_age_s }, { "oldest_pending", fmt_secs }, { "stage_age", fmt_secs },
    { "age", fmt_secs }, { NULL, NULL },
};

/* One screen of `top` into m; false + message on a database error. */
static bool top_screen(ctl *c, FILE *m, int *rc)
{
    static const struct {
        const char *title, *sql, *empty;
    } parts[] = {
        { "workers", SQL_TOP_WORKERS, "(no worker running)" },
        { "queue (pending and running, per operation and node)", SQL_TOP_QUEUE, "(queue empty)" },
        { "running", SQL_TOP_RUNNING, "(nothing running)" },
        { "failed in the last hour (newest first, at most 5)", SQL_TOP_FAILED, "(none)" },
    };
    vcl_error e;
    vcl_error_clear(&e);
    PGresult *r = db_exec(c->db, SQL_TOP_SUMMARY, 0, NULL, &e);
    if (!r) {
        *rc = db_fail(c, &e, "cannot read the queue");
        return false;
    }
    char age[32];
    progress_fmt_duration(atof(PQgetvalue(r, 0, 6)), age, sizeof age);
    fprintf(m, "vcl-worker pool at %s: %s workers, %s pending (%s due, oldest %s), %s running, "
               "%s failed in the last hour\n",
            PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3),
            atoll(PQgetvalue(r, 0, 2)) > 0 ? age : "-", PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 5));
    PQclear(r);
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        vcl_error_clear(&e);
        r = db_exec(c->db, parts[i].sql, 0, NULL, &e);
        if (!r) {
            *rc = db_fail(c, &e, "cannot read %s", parts[i].title);
            return false;
        }
        fprintf(m, "\n%s:\n", parts[i].title);
        if (PQntuples(r) == 0)
            fprintf(m, "%s\n", parts[i].empty);
        else
            print_table(m, r, TOP_FMTS);
        PQclear(r);
    }
    return true;
}

int cmd_top(ctl *c, const args *a)
{
    num interval;
    int rc;
    if ((rc = opt_num(c, a, "interval", 1, 3600, &interval)) != EXIT_OK)
        return rc;
    if (!interval.set)
        interval.v = 2;
    if (c->json)
        return usage_error(c, "top is for people; scripts read the views vcl.workers, "
                              "vcl.queue_summary, vcl.running_jobs and vcl.failures");
    if (!ctl_db(c))
        return EXIT_FAIL;
    bool tty = isatty(STDOUT_FILENO);
    bool once = opt_flag(a, "once") || !tty;
    for (;;) {
        char *text = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&text, &len);
        if (!m)
            return fail("out of memory");
        rc = EXIT_OK;
        bool okay = top_screen(c, m, &rc);
        fclose(m);
        if (!okay) {
            free(text);
            return rc;
        }
        if (once) {
            fputs(text, stdout);
            free(text);
            return EXIT_OK;
        }
        fputs("\033[H", stdout);
        put_frame(text, term_width());
        fputs("\033[J", stdout);
        fflush(stdout);
        free(text);
        sleep_ms(interval.v * 1000);
    }
}
