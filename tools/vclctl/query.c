/* query.c: statement text that vclctl builds, and lookups by name (query.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/db.h"
#include "base/error.h"
#include "vclctl.h"
#include "query.h"

void ds_add(dstr *d, const char *str)
{
    size_t n = strlen(str);
    if (d->oom)
        return;
    if (d->len + n + 1 > d->cap) {
        size_t cap = d->cap ? d->cap : 256;
        while (cap < d->len + n + 1)
            cap *= 2;
        char *s = realloc(d->s, cap);
        if (!s) {
            d->oom = true;
            return;
        }
        d->s = s;
        d->cap = cap;
    }
    memcpy(d->s + d->len, str, n + 1);
    d->len += n;
}

void ds_param(dstr *d, const char *tmpl, int n)
{
    char ph[16];
    snprintf(ph, sizeof ph, "$%d", n);
    for (const char *p = tmpl; *p; p++) {
        if (*p == '?') {
            ds_add(d, ph);
        } else {
            char one[2] = { *p, '\0' };
            ds_add(d, one);
        }
    }
}

void colset_add_expr(colset *s, const char *col, const char *tmpl, const char *val)
{
    if (!val)
        return;
    if (s->n == MAX_COLS) {
        fprintf(stderr, "%s: internal error: too many columns\n", PROG);
        abort();
    }
    s->col[s->n] = col;
    s->tmpl[s->n] = tmpl;
    s->val[s->n] = val;
    s->n++;
}

void colset_add(colset *s, const char *col, const char *val)
{
    colset_add_expr(s, col, "?", val);
}

/* INSERT INTO table (cols) VALUES ($1, ...) <tail>; *isnull when no row came
 * back. */
static bool insert_tail(ctl *c, const char *table, const colset *s, const char *tail,
                        long long *id, bool *isnull, vcl_error *e)
{
    dstr d = { 0 };
    bool ok;
    ds_add(&d, "INSERT INTO ");
    ds_add(&d, table);
    ds_add(&d, " (");
    for (int i = 0; i < s->n; i++) {
        ds_add(&d, i ? ", " : "");
        ds_add(&d, s->col[i]);
    }
    ds_add(&d, ") VALUES (");
    for (int i = 0; i < s->n; i++) {
        ds_add(&d, i ? ", " : "");
        ds_param(&d, s->tmpl[i], i + 1);
    }
    ds_add(&d, tail);
    if (d.oom)
        ok = vcl_error_set(e, VCL_ERR_PERMANENT, "out of memory");
    else
        ok = db_scalar_ll(c->db, d.s, s->n, s->val, id, isnull, e);
    free(d.s);
    return ok;
}

bool colset_insert(ctl *c, const char *table, const colset *s, long long *id, vcl_error *e)
{
    bool isnull;
    return insert_tail(c, table, s, ") RETURNING id", id, &isnull, e);
}

bool colset_insert_new(ctl *c, const char *table, const colset *s, long long *id,
                       bool *inserted, vcl_error *e)
{
    bool isnull = true;
    bool ok = insert_tail(c, table, s, ") ON CONFLICT DO NOTHING RETURNING id", id, &isnull, e);
    *inserted = ok && !isnull;
    return ok;
}

bool colset_update(ctl *c, const char *table, const colset *s, const char *key_col,
                   const char *key, long long *id, bool *found, vcl_error *e)
{
    dstr d = { 0 };
    const char *params[MAX_COLS + 1];
    bool isnull = true, ok;
    ds_add(&d, "UPDATE ");
    ds_add(&d, table);
    ds_add(&d, " SET ");
    for (int i = 0; i < s->n; i++) {
        ds_add(&d, i ? ", " : "");
        ds_add(&d, s->col[i]);
        ds_add(&d, " = ");
        ds_param(&d, s->tmpl[i], i + 1);
        params[i] = s->val[i];
    }
    ds_add(&d, " WHERE ");
    ds_add(&d, key_col);
    ds_param(&d, " = ?", s->n + 1);
    ds_add(&d, " RETURNING id");
    params[s->n] = key;
    if (d.oom)
        ok = vcl_error_set(e, VCL_ERR_PERMANENT, "out of memory");
    else
        ok = db_scalar_ll(c->db, d.s, s->n + 1, params, id, &isnull, e);
    free(d.s);
    if (ok)
        *found = !isnull;
    return ok;
}

int lookup_id(ctl *c, const char *sql, const char *what, const char *name, long long *id)
{
    vcl_error e;
    bool isnull = true;
    const char *p[1] = { name };
    vcl_error_clear(&e);
    if (!db_scalar_ll(c->db, sql, 1, p, id, &isnull, &e))
        return db_fail(c, &e, "cannot look up %s '%s'", what, name);
    if (isnull)
        return fail("no %s named '%s' (see: %s %s list)", what, name, PROG, what);
    return EXIT_OK;
}
