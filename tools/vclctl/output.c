/* output.c: what vclctl prints (output.h): failures and notes, tables,
 * "key: value" rows, JSON made by PostgreSQL. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/db.h"
#include "base/error.h"
#include "vclctl.h"
#include "query.h"

static void vsay(const char *prefix, const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: %s", PROG, prefix);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

/* "vclctl: <what failed>"; returns EXIT_FAIL. */
int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay("", fmt, ap);
    va_end(ap);
    return EXIT_FAIL;
}

/* "vclctl: note: ..." on stderr, unless --quiet. */
void note(const ctl *c, const char *fmt, ...)
{
    if (c->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsay("note: ", fmt, ap);
    va_end(ap);
}

/* The message of a database error without the "database: " and "ERROR:  "
 * noise (wherever a caller's prefix put it). One static buffer: vclctl is
 * single-threaded and prints it at once. */
const char *db_msg(const vcl_error *e)
{
    static char buf[sizeof e->msg];
    const char *m = e->msg;
    size_t o = 0;
    if (strncmp(m, "database: ", 10) == 0)
        m += 10;
    while (*m && o + 1 < sizeof buf) {
        if (strncmp(m, "ERROR:", 6) == 0) {
            m += 6;
            m += strspn(m, " ");
            continue;
        }
        buf[o++] = *m++;
    }
    buf[o] = '\0';
    return buf;
}

/* A failed statement: "vclctl: <what>: <why>" and a hint for the SQLSTATEs
 * an operator can act on. Returns EXIT_FAIL. */
int db_fail(const ctl *c, const vcl_error *e, const char *fmt, ...)
{
    const char *state = c->db ? db_sqlstate(c->db) : "";
    va_list ap;
    fprintf(stderr, "%s: ", PROG);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, ": %s\n", db_msg(e));
    if (strcmp(state, "42P01") == 0 || strcmp(state, "3F000") == 0 ||
        strcmp(state, "42883") == 0)
        fprintf(stderr, "%s: hint: is the schema there? run: %s migrate\n", PROG, PROG);
    else if (strncmp(state, "08", 2) == 0 || (c->db && db_is_broken(c->db)))
        fprintf(stderr, "%s: hint: the connection to PostgreSQL was lost; try again\n", PROG);
    else if (strcmp(state, "42501") == 0)
        fprintf(stderr, "%s: hint: this database role lacks the privilege; connect as the "
                        "schema owner (--db, VCL_DATABASE or PGUSER)\n", PROG);
    return EXIT_FAIL;
}

/* Column types that are right-aligned (pg_type OIDs; the catalog header is
 * a server header, not part of libpq). */
enum { OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23, OID_FLOAT8 = 701, OID_NUMERIC = 1700 };

void fmt_duration_ms(const char *in, char *out, size_t size)
{
    long long ms;
    if (!parse_ll(in, 0, 9223372036854775807LL, &ms))
        snprintf(out, size, "%s", in);
    else if (ms < 1000)
        snprintf(out, size, "%lldms", ms);
    else if (ms < 60000)
        snprintf(out, size, "%.1fs", (double)ms / 1000.0);
    else if (ms < 3600000)
        snprintf(out, size, "%lldm%02llds", ms / 60000, ms / 1000 % 60);
    else
        snprintf(out, size, "%lldh%02lldm", ms / 3600000, ms / 60000 % 60);
}

/* 75 (s) -> "1m15s ago" */
void fmt_age_s(const char *in, char *out, size_t size)
{
    long long s;
    if (!parse_ll(in, -9223372036854775807LL, 9223372036854775807LL, &s))
        snprintf(out, size, "%s", in);
    else if (s < 0)
        snprintf(out, size, "in the future");
    else if (s < 60)
        snprintf(out, size, "%llds ago", s);
    else if (s < 3600)
        snprintf(out, size, "%lldm%02llds ago", s / 60, s % 60);
    else if (s < 86400)
        snprintf(out, size, "%lldh%02lldm ago", s / 3600, s / 60 % 60);
    else
        snprintf(out, size, "%lldd%02lldh ago", s / 86400, s / 3600 % 24);
}

static cell_fmt find_fmt(const colfmt *fmts, const char *column)
{
    for (; fmts && fmts->column; fmts++)
        if (strcmp(fmts->column, column) == 0)
            return fmts->fmt;
    return NULL;
}

/* The text people see for one cell: "-" for NULL, else the formatter's. */
static const char *cell_text(const PGresult *r, int row, int col, cell_fmt fmt, char *buf,
                             size_t size)
{
    if (PQgetisnull(r, row, col))
        return "-";
    if (!fmt)
        return PQgetvalue(r, row, col);
    fmt(PQgetvalue(r, row, col), buf, size);
    return buf;
}

/* Width on a terminal: UTF-8 continuation bytes take no column. */
static int text_width(const char *s)
{
    int w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

/* Write s on one line: control characters (newlines in an error message,
 * terminal escapes from a node) become spaces (printable), so a table stays
 * a table and nothing reaches the terminal as a command. */
void put_clean(FILE *f, const char *s)
{
    char *copy = strdup(s);
    if (!copy) {
        fputs("?", f);
        return;
    }
    printable(copy, false);
    fputs(copy, f);
    free(copy);
}

static void put_spaces(FILE *f, int n)
{
    for (; n > 0; n--)
        fputc(' ', f);
}

/* An aligned table with a header from the column names (upper case); two
 * spaces between columns, numbers right-aligned, the last column unpadded. */
void print_table(FILE *f, const PGresult *r, const colfmt *fmts)
{
    int ncols = PQnfields(r), nrows = PQntuples(r);
    int width[64] = { 0 };
    bool right[64] = { false };
    char buf[256];
    if (ncols > 64)
        ncols = 64;
    for (int j = 0; j < ncols; j++) {
        Oid t = PQftype(r, j);
        right[j] = t == OID_INT8 || t == OID_INT2 || t == OID_INT4 || t == OID_FLOAT8 ||
                   t == OID_NUMERIC;
        width[j] = text_width(PQfname(r, j));
        cell_fmt fmt = find_fmt(fmts, PQfname(r, j));
        for (int i = 0; i < nrows; i++) {
            int w = text_width(cell_text(r, i, j, fmt, buf, sizeof buf));
            if (w > width[j])
                width[j] = w;
        }
    }
    for (int j = 0; j < ncols; j++) {
        const char *h = PQfname(r, j);
        int w = text_width(h);
        if (right[j] && j > 0)
            put_spaces(f, width[j] - w);
        for (; *h; h++)
            fputc(toupper((unsigned char)*h), f);
        if (j < ncols - 1)
            put_spaces(f, (right[j] && j > 0 ? 0 : width[j] - w) + 2);
    }
    fputc('\n', f);
    for (int i = 0; i < nrows; i++) {
        for (int j = 0; j < ncols; j++) {
            const char *s = cell_text(r, i, j, find_fmt(fmts, PQfname(r, j)), buf, sizeof buf);
            int w = text_width(s);
            if (right[j] && j > 0)
                put_spaces(f, width[j] - w);
            put_clean(f, s);
            if (j < ncols - 1)
                put_spaces(f, (right[j] && j > 0 ? 0 : width[j] - w) + 2);
        }
        fputc('\n', f);
    }
}

/* One row as aligned "key: value" lines. Columns named in skip, and any
 * column name already printed, are left out. Values spanning lines are
 * indented under the first one. */
void print_kv(FILE *f, const PGresult *r, int row, const colfmt *fmts, const char *const *skip)
{
    int ncols = PQnfields(r), keyw = 0;
    char buf[256];
    for (int j = 0; j < ncols; j++)
        if (text_width(PQfname(r, j)) > keyw)
            keyw = text_width(PQfname(r, j));
    for (int j = 0; j < ncols; j++) {
        const char *k = PQfname(r, j);
        bool seen = skip && one_of(k, skip);
        for (int p = 0; p < j && !seen; p++)
            seen = strcmp(PQfname(r, p), k) == 0;
        if (seen)
            continue;
        fprintf(f, "%s:", k);
        put_spaces(f, keyw - text_width(k) + 1);
        char *text = strdup(cell_text(r, row, j, find_fmt(fmts, k), buf, sizeof buf));
        if (text)
            printable(text, true);
        for (const char *s = text ? text : "?"; *s; s++) {
            if (*s == '\n') {
                fputc('\n', f);
                put_spaces(f, keyw + 2);
            } else {
                fputc(*s, f);
            }
        }
        free(text);
        fputc('\n', f);
    }
}

/* Run a query whose single cell is JSON built by PostgreSQL and print it. */
int print_json(ctl *c, const char *sql, int n, const char *const *params, const char *what)
{
    vcl_error e;
    vcl_error_clear(&e);
    PGresult *r = db_exec(c->db, sql, n, params, &e);
    if (!r)
        return db_fail(c, &e, "cannot read %s", what);
    if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        printf("%s\n", PQgetvalue(r, 0, 0));
    else
        printf("null\n");
    PQclear(r);
    return EXIT_OK;
}

/* Run a text query and print it as a table; empty_msg when there is no row. */
int print_query_table(ctl *c, const char *sql, int n, const char *const *params,
                      const colfmt *fmts, const char *what, const char *empty_msg)
{
    vcl_error e;
    vcl_error_clear(&e);
    PGresult *r = db_exec(c->db, sql, n, params, &e);
    if (!r)
        return db_fail(c, &e, "cannot list %s", what);
    if (PQntuples(r) == 0) {
        if (!c->quiet)
            printf("%s\n", empty_msg);
    } else {
        print_table(stdout, r, fmts);
    }
    PQclear(r);
    return EXIT_OK;
}

int print_row_json(ctl *c, const char *sql, long long id, const char *what)
{
    char ids[32];
    snprintf(ids, sizeof ids, "%lld", id);
    const char *p[1] = { ids };
    return print_json(c, sql, 1, p, what);
}

/* Node-originated text reaches a terminal: no control characters. */
/* Length of the valid UTF-8 sequence at p (2..4), 0 when it is not one
 * (a stray continuation byte, an overlong form, a surrogate, > U+10FFFF). */
static int utf8_len(const unsigned char *p)
{
    unsigned char c = p[0];
    int n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F) || (c == 0xF0 && p[1] < 0x90) ||
        (c == 0xF4 && p[1] > 0x8F))
        return 0;
    return n;
}

void printable(char *s, bool keep_newlines)
{
    unsigned char *in = (unsigned char *)s, *out = (unsigned char *)s;
    while (*in) {
        unsigned char c = *in;
        if (c == '\n' && keep_newlines) {
            *out++ = *in++;
        } else if (c < 0x20 || c == 0x7f) {
            *out++ = ' ';
            in++;
        } else if (c < 0x80) {
            *out++ = *in++;
        } else {
            int n = utf8_len(in);
            if (n == 0 || (n == 2 && c == 0xC2 && in[1] <= 0x9F)) {
                /* not UTF-8, or a C1 control (U+0080..U+009F: CSI is U+009B) */
                *out++ = '?';
                in += n ? n : 1;
            } else {
                for (int i = 0; i < n; i++)
                    *out++ = *in++;
            }
        }
    }
    *out = '\0';
}

bool vrows_add(vrows *r, const char *const *vals)
{
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 16;
        const char **v = realloc(r->v, sizeof *v * (size_t)cap * (size_t)r->ncols);
        if (!v)
            return false;
        r->v = v;
        r->cap = cap;
    }
    for (int j = 0; j < r->ncols; j++)
        r->v[r->n * r->ncols + j] = vals[j] ? strdup(vals[j]) : NULL;
    r->n++;
    return true;
}

void vrows_free(vrows *r)
{
    for (int i = 0; i < r->n * r->ncols; i++)
        free((void *)r->v[i]);
    free(r->v);
    memset(r, 0, sizeof *r);
}

/* json: wrap in JSON_ARRAY. Returns EXIT_*; empty_msg when there are no rows. */
int vrows_print(ctl *c, const vrows *r, const char *select, const char *cols, const char *tail,
                const char *const *fixed, int nfixed, const char *what, const char *empty_msg)
{
    if (r->n == 0) {
        if (c->json)
            printf("[]\n");
        else if (!c->quiet)
            printf("%s\n", empty_msg);
        return EXIT_OK;
    }
    dstr d = { 0 };
    int np = nfixed + r->n * r->ncols, k = nfixed;
    const char **params = calloc((size_t)np, sizeof *params);
    if (!params)
        return fail("out of memory");
    for (int i = 0; i < nfixed; i++)
        params[i] = fixed[i];
    for (int i = 0; i < r->n * r->ncols; i++)
        params[nfixed + i] = r->v[i];
    if (c->json)
        ds_add(&d, "SELECT coalesce(json_agg(j), '[]'::json) FROM (");
    ds_add(&d, select);
    ds_add(&d, " FROM (VALUES ");
    for (int i = 0; i < r->n; i++) {
        ds_add(&d, i ? ", (" : "(");
        for (int j = 0; j < r->ncols; j++) {
            if (j)
                ds_add(&d, ", ");
            ds_param(&d, "?", ++k);
        }
        ds_add(&d, ")");
    }
    ds_add(&d, ") AS t(");
    ds_add(&d, cols);
    ds_add(&d, ") ");
    ds_add(&d, tail);
    if (c->json)
        ds_add(&d, ") j");
    int rc;
    if (d.oom)
        rc = fail("out of memory");
    else if (c->json)
        rc = print_json(c, d.s, np, params, what);
    else
        rc = print_query_table(c, d.s, np, params, NULL, what, empty_msg);
    free(d.s);
    free(params);
    return rc;
}
