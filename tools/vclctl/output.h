/* output.h: what vclctl prints. Failures and notes go to stderr as
 * "vclctl: ..." (a database error with a hint an operator can act on);
 * results go to stdout as aligned tables or "key: value" lines for people,
 * or, with --json, as JSON that PostgreSQL made (never escaped here). Rows
 * that come from elsewhere (libvirt) are printed through PostgreSQL too
 * (vrows), so every table looks alike. */
#ifndef VCLCTL_OUTPUT_H
#define VCLCTL_OUTPUT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <libpq-fe.h>

#include "base/error.h"

typedef struct ctl ctl;

/* "vclctl: <what failed>"; returns EXIT_FAIL. */
int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "vclctl: note: ..." on stderr, unless --quiet. */
void note(const ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The message of a database error without the "database: " and "ERROR:  "
 * noise. One static buffer: vclctl is single-threaded and prints it at once. */
const char *db_msg(const vcl_error *e);
/* A failed statement: "vclctl: <what>: <why>" and a hint for the SQLSTATEs
 * an operator can act on. Returns EXIT_FAIL. */
int db_fail(const ctl *c, const vcl_error *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A cell formatter turns the raw text of a column into what people read. */
typedef void (*cell_fmt)(const char *in, char *out, size_t size);
typedef struct colfmt {
    const char *column;
    cell_fmt fmt;
} colfmt;

/* 1234 (ms) -> "1.2s"; 42 -> "42ms"; 125000 -> "2m05s". */
void fmt_duration_ms(const char *in, char *out, size_t size);
/* 75 (s) -> "1m15s ago" */
void fmt_age_s(const char *in, char *out, size_t size);

/* Write s on one line: control characters (newlines in an error message)
 * become spaces, so a table stays a table. */
void put_clean(FILE *f, const char *s);
/* The one cleaner of node-originated text (last_error, stage details,
 * node_status detail) before it reaches a terminal, in place: C0 controls
 * (ESC, BEL, CR, backspace...) and DEL become ' ' ('\n' is kept when
 * keep_newlines), the C1 controls U+0080..U+009F (CSI U+009B) and bytes that
 * are not UTF-8 become '?'. Printable UTF-8 stays. */
void printable(char *s, bool keep_newlines);

/* An aligned table with a header from the column names (upper case); two
 * spaces between columns, numbers right-aligned, the last column unpadded.
 * fmts (or NULL) formats the cells of the columns it names. */
void print_table(FILE *f, const PGresult *r, const colfmt *fmts);
/* One row as aligned "key: value" lines. Columns named in skip, and any
 * column name already printed, are left out. Values spanning lines are
 * indented under the first one. */
void print_kv(FILE *f, const PGresult *r, int row, const colfmt *fmts, const char *const *skip);

/* Run a query whose single cell is JSON built by PostgreSQL and print it. */
int print_json(ctl *c, const char *sql, int n, const char *const *params, const char *what);
/* print_json with the one parameter id. */
int print_row_json(ctl *c, const char *sql, long long id, const char *what);
/* Run a text query and print it as a table; empty_msg when there is no row. */
int print_query_table(ctl *c, const char *sql, int n, const char *const *params,
                      const colfmt *fmts, const char *what, const char *empty_msg);

/* Rows gathered from libvirt, shown through PostgreSQL, so the table looks
 * like every other and the JSON is made by PostgreSQL:
 *   <select> FROM (VALUES ($k,...),...) AS t(<cols>) <tail>
 * with every value a parameter after the nfixed fixed ones ($1..). */
typedef struct vrows {
    int ncols, n, cap;
    const char **v;   /* n * ncols values (owned strings), NULL = SQL NULL */
} vrows;

/* Add a row of ncols values (copied; NULL = SQL NULL); false when out of memory. */
bool vrows_add(vrows *r, const char *const *vals);
void vrows_free(vrows *r);
/* json: wrap in JSON_ARRAY. Returns EXIT_*; empty_msg when there are no rows. */
int vrows_print(ctl *c, const vrows *r, const char *select, const char *cols, const char *tail,
                const char *const *fixed, int nfixed, const char *what, const char *empty_msg);

#endif
