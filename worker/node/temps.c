/* temps.c: see temps.h. */
#include "node/temps.h"
#include "base/log.h"
#include "base/names.h"
#include "base/util.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

bool temps_name(const char *final, const char *suffix, char *out, size_t size, vcl_error *e)
{
    char base[PATH_MAX];
    if (!names_temp(final, base, sizeof base) ||
        snprintf(out, size, "%s%s", base, suffix ? suffix : "") >= (int)size)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "no temp name for %s (path too long, or no "
                             "random bytes)", final);
    return true;
}

bool temps_record(const node_temps *tt, const char *path, vcl_error *e)
{
    if (!tt || !tt->record)
        return true;
    if (!tt->record(tt->opaque, path, e))
        return false;
    log_debug("recorded temp file %s", path);
    return true;
}

void temps_done(vcl_transport *t, const node_temps *tt, const char *path, bool remove)
{
    vcl_error e;
    vcl_error_clear(&e);
    if (remove && !transport_remove(t, path, &e)) {
        log_warn("cannot remove %s: %s", path, e.msg);
        return;   /* keep the record: a later cleanup removes the file */
    }
    vcl_error_clear(&e);
    if (tt && tt->forget && !tt->forget(tt->opaque, path, &e))
        log_warn("temp file %s: %s (a later cleanup forgets it)", path, e.msg);
}

/* Is path "<dir of final>/<name>" with name a temp name of final's? */
static bool temp_of(const char *path, const char *final)
{
    const char *fs = strrchr(final, '/'), *ps = strrchr(path, '/');
    if (!fs || !ps || fs - final != ps - path || strncmp(final, path, (size_t)(fs - final)) != 0)
        return false;
    return names_is_temp(ps + 1, fs + 1);
}

static bool listed(char **v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

bool temps_remove_stale(vcl_transport *t, const node_temps *tt, const char *final, vcl_error *e)
{
    bool ok = false;
    char **stale = NULL, **names = NULL;
    size_t n_stale = 0, n = 0;
    char dir[PATH_MAX], path[PATH_MAX];
    const char *slash = strrchr(final, '/');
    transport_stat_info st;

    if (!slash || (size_t)(slash - final) >= sizeof dir)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "not an absolute path: %s", final);
    snprintf(dir, sizeof dir, "%.*s", slash == final ? 1 : (int)(slash - final), final);

    if (tt && tt->stale && !tt->stale(tt->opaque, final, &stale, &n_stale, e))
        goto cleanup;
    for (size_t i = 0; i < n_stale; i++) {
        if (!temp_of(stale[i], final)) {   /* the schema's rows are the worker's: never */
            log_warn("recorded temp file %s is not a temp name of %s: left alone", stale[i], final);
            continue;
        }
        log_info("removing stale temporary file %s (recorded by a job whose lease is gone)",
                 stale[i]);
        if (!transport_remove(t, stale[i], e))
            goto cleanup;
        if (!tt->forget || !tt->forget(tt->opaque, stale[i], e))
            goto cleanup;
    }

    if (!transport_stat(t, dir, &st, e))
        goto cleanup;
    if (st.exists && !transport_list_dir(t, dir, &names, &n, e))
        goto cleanup;
    for (size_t i = 0; i < n; i++) {
        if (!names_is_temp(names[i], slash + 1) ||
            snprintf(path, sizeof path, "%s/%s", slash == final ? "" : dir, names[i]) >=
                (int)sizeof path || listed(stale, n_stale, path))
            continue;
        log_info("leaving %s alone: it has the form of a temp file of %s, but no job whose lease "
                 "is gone recorded it", path, final);
    }
    ok = true;
cleanup:
    util_strv_free(stale, n_stale);
    util_strv_free(names, n);
    return ok;
}
