/* query.h: statement text that vclctl builds, and lookups by name. A built
 * statement holds only constants of vclctl (column names, value expression
 * templates, $n placeholders); every value travels as a parameter. INSERT
 * and UPDATE set only the columns a user gave, so the table's defaults stay
 * the single source of defaults. */
#ifndef VCLCTL_QUERY_H
#define VCLCTL_QUERY_H
#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"

typedef struct ctl ctl;

/* A growing statement text (VALUES lists of any length, column lists).
 * oom is set (and the text left as it was) when memory runs out; free s. */
typedef struct dstr {
    char *s;
    size_t len, cap;
    bool oom;
} dstr;

void ds_add(dstr *d, const char *str);
/* Append a value expression: tmpl with its '?' replaced by $n. */
void ds_param(dstr *d, const char *tmpl, int n);

/* The columns an INSERT or UPDATE sets. */
#define MAX_COLS 20
typedef struct colset {
    const char *col[MAX_COLS];
    const char *tmpl[MAX_COLS]; /* value expression, '?' is the parameter */
    const char *val[MAX_COLS];
    int n;
} colset;

/* Set col to the value expression tmpl of val; a NULL val (an option not
 * given) is skipped. */
void colset_add_expr(colset *s, const char *col, const char *tmpl, const char *val);
void colset_add(colset *s, const char *col, const char *val);
/* INSERT INTO table (cols) VALUES ($1, ...) RETURNING id */
bool colset_insert(ctl *c, const char *table, const colset *s, long long *id, vcl_error *e);
/* The same with ON CONFLICT DO NOTHING: *inserted false (and no error) when
 * a unique index already holds the row's key (dedup_key). */
bool colset_insert_new(ctl *c, const char *table, const colset *s, long long *id,
                       bool *inserted, vcl_error *e);
/* UPDATE table SET col = $1, ... WHERE key_col = $n RETURNING id; *found
 * false when no row has that key. */
bool colset_update(ctl *c, const char *table, const colset *s, const char *key_col,
                   const char *key, long long *id, bool *found, vcl_error *e);

/* Id of the row named name; a clear "no <what> named" error otherwise.
 * sql takes the name as $1 and returns the id. */
int lookup_id(ctl *c, const char *sql, const char *what, const char *name, long long *id);

#endif
