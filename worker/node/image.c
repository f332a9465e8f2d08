/* image.c: see image.h.
 *
 * Everything happens on the node through the transport: qemu-img runs there,
 * the repository is read there (glob and stat through the transport, so an
 * ssh node expands its own wildcards), files are renamed there. Facts on the
 * node decide, never a cache: the master is taken when it exists and passes
 * `qemu-img check`; the COW is kept when qemu-img says it is a qcow2 backed
 * by the master. The one exception: a repository on the management host
 * (r->repo_t) is globbed, stat'ed and probed with qemu-img here, then
 * streamed to the node.
 *
 * qemu-img flags used (checked on QEMU 7.2):
 *   info --output=json -U -- PATH      -U (--force-share): works on a disk a
 *                                       running VM holds locked (our own COW)
 *   info -f FMT --backing-chain --output=json -U -- PATH
 *                                       anything from a repository and every
 *                                       master: node/imgtrust.c (format from
 *                                       the file name, never probed)
 *   check [-U] -f FMT -- PATH          exit 0 ok, 3 leaks only (harmless),
 *                                       2 corrupt, 1 cannot check/open,
 *                                       63 format has no checks (raw, vmdk)
 *   convert -t writeback -f SRCFMT -O FMT -- SRC DST
 *                                       convert's default cache is "unsafe"
 *                                       (no flush at close); writeback makes
 *                                       it fsync before it exits
 *   create -q -f FMT -F FMT -b MASTER -- COW
 *                                       -F is required with -b since QEMU 6.1 */
#include "node/image.h"
#include "node/imgtrust.h"
#include "base/names.h"
#include "base/config.h"
#include "base/log.h"
#include "base/util.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yaml.h>

#define INFO_TIMEOUT_S 120
/* How long to wait for another worker copying the same master, unless the
 * request says (image_lock_timeout_seconds). Past it the
 * stage fails retryable and the job comes back later instead of holding a
 * slot; the lock owner usually finishes first and the re-check then wins. */
#define IMAGE_LOCK_TIMEOUT_S 600

static const char *const repo_exts[] = { "qcow2", "img", "raw", "vmdk" };

/* ------------------------------------------------------------ JSON parsing */

enum qkey {
    QK_NONE,
    QK_FORMAT,
    QK_VSIZE,
    QK_ASIZE,
    QK_BACKING,
    QK_FULL_BACKING,
    QK_BACKING_FMT,
};

static enum qkey qkey_of(const char *k)
{
    static const struct { const char *name; enum qkey key; } keys[] = {
        { "format", QK_FORMAT },
        { "virtual-size", QK_VSIZE },
        { "actual-size", QK_ASIZE },
        { "backing-filename", QK_BACKING },
        { "full-backing-filename", QK_FULL_BACKING },
        { "backing-filename-format", QK_BACKING_FMT },
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(k, keys[i].name) == 0)
            return keys[i].key;
    return QK_NONE;
}

static bool parse_ll(const char *s, long long *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < 0)
        return false;
    *out = v;
    return true;
}

static bool copy_str(char *dst, size_t len, const char *src)
{
    size_t n = strlen(src);
    if (n >= len)
        return false;
    memcpy(dst, src, n + 1);
    return true;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* JSON writes a character above U+FFFF as a surrogate pair of \u escapes
 * (qemu-img: "\uD83D\uDE00" for U+1F600, in any file name), which YAML
 * refuses ("invalid Unicode character escape code"): rewrite each pair
 * inside a string as YAML's \UXXXXXXXX. Everything else is copied as is;
 * a lone surrogate stays and libyaml refuses it. malloc'd; NULL when out of
 * memory. Found by tests/fuzz/fuzz_qimg.c. */
static char *json_pairs_to_yaml(const char *json)
{
    size_t len = strlen(json);
    char *out = malloc(len + 1), *o = out;   /* 12 bytes become 10: never longer */
    bool in_str = false;

    if (!out)
        return NULL;
    for (const char *p = json; *p;) {
        if (!in_str) {
            in_str = *p == '"';
            *o++ = *p++;
            continue;
        }
        if (*p == '"') {
            in_str = false;
            *o++ = *p++;
            continue;
        }
        if (*p != '\\' || !p[1]) {
            *o++ = *p++;
            continue;
        }
        int hi = p[1] == 'u' ? hex4(p + 2) : -1;
        int lo = hi >= 0xd800 && hi <= 0xdbff && p[6] == '\\' && p[7] == 'u' ? hex4(p + 8) : -1;
        if (lo >= 0xdc00 && lo <= 0xdfff) {
            unsigned cp = 0x10000u + (((unsigned)hi - 0xd800u) << 10) + ((unsigned)lo - 0xdc00u);
            o += snprintf(o, 11, "\\U%08X", cp);
            p += 12;
            continue;
        }
        *o++ = *p++;   /* the backslash and the character it escapes */
        *o++ = *p++;
    }
    *o = '\0';
    return out;
}

/* qemu-img's JSON is one object; JSON is YAML flow syntax, so libyaml reads
 * it (after json_pairs_to_yaml). We walk the events of the top mapping: a
 * scalar key, then its value; a value that is itself a mapping or sequence
 * ("format-specific", "children", "snapshots") is skipped whole by counting
 * depth. */
bool qimg_info_parse(const char *json, qimg_info *out)
{
    bool ok = false;
    yaml_parser_t parser;
    yaml_event_t ev;
    bool have_ev = false, parser_ready = false;
    char full_backing[sizeof out->backing_file] = "";
    char backing[sizeof out->backing_file] = "";
    enum { S_START, S_KEY, S_VALUE, S_END } state = S_START;
    enum qkey key = QK_NONE;
    int skip_depth = 0;
    char *text = NULL;

    if (!out)
        return false;
    memset(out, 0, sizeof *out);
    if (!json)
        return false;
    text = json_pairs_to_yaml(json);
    if (!text)
        return false;
    if (!yaml_parser_initialize(&parser))
        goto cleanup;
    parser_ready = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));

    for (;;) {
        if (!yaml_parser_parse(&parser, &ev))
            goto cleanup;
        have_ev = true;
        yaml_event_type_t type = ev.type;

        if (skip_depth > 0) {
            if (type == YAML_MAPPING_START_EVENT || type == YAML_SEQUENCE_START_EVENT)
                skip_depth++;
            else if (type == YAML_MAPPING_END_EVENT || type == YAML_SEQUENCE_END_EVENT)
                skip_depth--;
        } else if (type == YAML_STREAM_START_EVENT || type == YAML_DOCUMENT_START_EVENT ||
                   type == YAML_DOCUMENT_END_EVENT) {
            /* framing */
        } else if (type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            have_ev = false;
            break;
        } else if (state == S_START) {
            if (type != YAML_MAPPING_START_EVENT)
                goto cleanup;       /* not an object */
            state = S_KEY;
        } else if (state == S_KEY) {
            if (type == YAML_MAPPING_END_EVENT)
                state = S_END;
            else if (type == YAML_SCALAR_EVENT) {
                key = qkey_of((const char *)ev.data.scalar.value);
                state = S_VALUE;
            } else
                goto cleanup;       /* complex key */
        } else if (state == S_VALUE) {
            if (type == YAML_MAPPING_START_EVENT || type == YAML_SEQUENCE_START_EVENT) {
                if (key != QK_NONE)
                    goto cleanup;   /* a known key must be a scalar */
                skip_depth = 1;
            } else if (type == YAML_SCALAR_EVENT) {
                const char *v = (const char *)ev.data.scalar.value;
                switch (key) {
                case QK_FORMAT:
                    if (!copy_str(out->format, sizeof out->format, v))
                        goto cleanup;
                    break;
                case QK_VSIZE:
                    if (!parse_ll(v, &out->virtual_size))
                        goto cleanup;
                    break;
                case QK_ASIZE:
                    if (!parse_ll(v, &out->actual_size))
                        goto cleanup;
                    break;
                case QK_BACKING:
                    if (!copy_str(backing, sizeof backing, v))
                        goto cleanup;
                    break;
                case QK_FULL_BACKING:
                    if (!copy_str(full_backing, sizeof full_backing, v))
                        goto cleanup;
                    break;
                case QK_BACKING_FMT:
                    if (!copy_str(out->backing_format, sizeof out->backing_format, v))
                        goto cleanup;
                    break;
                case QK_NONE:
                    break;
                }
            } else
                goto cleanup;       /* alias or anything else */
            if (skip_depth == 0)
                state = S_KEY;
        } else {
            goto cleanup;           /* content after the object */
        }
        if (skip_depth == 0 && state == S_VALUE && (type == YAML_MAPPING_END_EVENT ||
                                                    type == YAML_SEQUENCE_END_EVENT))
            state = S_KEY;          /* a skipped value just ended */
        yaml_event_delete(&ev);
        have_ev = false;
    }
    if (state != S_END || out->format[0] == '\0')
        goto cleanup;
    copy_str(out->backing_file, sizeof out->backing_file, full_backing[0] ? full_backing : backing);
    ok = true;
cleanup:
    if (have_ev)
        yaml_event_delete(&ev);
    if (parser_ready)
        yaml_parser_delete(&parser);
    free(text);
    if (!ok)
        memset(out, 0, sizeof *out);
    return ok;
}

bool qimg_info_get(vcl_transport *t, const char *path, qimg_info *out, vcl_error *e)
{
    bool ok = false;
    transport_result res = { .status = -1 };
    const char *argv[] = { "qemu-img", "info", "--output=json", "-U", "--", path, NULL };

    if (out)
        memset(out, 0, sizeof *out);
    if (!out || !path || !path[0])
        return vcl_error_set(e, VCL_ERR_PERMANENT, "qimg_info_get: bad arguments");
    if (!transport_run(t, argv, INFO_TIMEOUT_S, VCL_ERR_RETRYABLE, &res, e))
        goto cleanup;
    if (!qimg_info_parse(res.out, out)) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "cannot parse the output of qemu-img info for '%s'", path);
        goto cleanup;
    }
    ok = true;
cleanup:
    transport_result_clear(&res);
    return ok;
}

/* ------------------------------------------------------------------ helpers */

static const char *req_format(const image_req *r)
{
    return r->disk_format && r->disk_format[0] ? r->disk_format : "qcow2";
}

/* The transport that reaches the repository paths. */
static vcl_transport *repo_tp(const image_req *r)
{
    return r->repo_t ? r->repo_t : r->t;
}

static void report(const image_req *r, const char *what, long long done, long long total)
{
    if (r->progress)
        r->progress(r->progress_opaque, what, done, total);
}

/* The stem reaches a glob pattern and a command line: it must be a plain
 * name (names.c checks the same rule upstream; this is the last line). */
static bool stem_ok(const char *s, vcl_error *e)
{
    return name_check("image file stem", s, e);
}

static bool req_ok(const image_req *r, bool need_cow, vcl_error *e)
{
    if (!r || !r->t || !r->master_path || r->master_path[0] != '/' || (need_cow && (!r->cow_path ||
        r->cow_path[0] != '/')))
        return vcl_error_set(e, VCL_ERR_PERMANENT, "image request without transport or absolute paths");
    return stem_ok(r->file_stem, e);
}

static void split_path(const char *path, char *dir, size_t dlen, const char **base)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, dlen, ".");
        *base = path;
    } else {
        snprintf(dir, dlen, "%.*s", slash == path ? 1 : (int)(slash - path), path);
        *base = slash + 1;
    }
}

/* qemu-img check. *passed true for 0 (clean), 3 (leaked clusters only: no
 * harm) and 63 (format without consistency checks). false only when the
 * command could not run; a failed check is *passed=false with why in e. */
static bool qimg_check(const image_req *r, const char *path, const char *fmt, bool shared,
                       bool *passed, vcl_error *e)
{
    transport_result res = { .status = -1 };
    const char *argv[10];
    int i = 0;
    bool ok = false;

    *passed = false;
    argv[i++] = "qemu-img";
    argv[i++] = "check";
    if (shared)
        argv[i++] = "-U";
    if (fmt) {
        argv[i++] = "-f";
        argv[i++] = fmt;
    }
    argv[i++] = "--";
    argv[i++] = path;
    argv[i] = NULL;

    if (!transport_exec(r->t, argv, config_command_timeout(r->command_timeout_s), &res, e))
        goto cleanup;
    ok = true;
    if (res.status == 0 || res.status == 3 || res.status == 63) {
        *passed = true;
        goto cleanup;
    }
    transport_status_error(argv, &res, VCL_ERR_PERMANENT, e);
cleanup:
    transport_result_clear(&res);
    return ok;
}

bool qimg_check_path(vcl_transport *t, const char *path, const char *fmt, bool shared,
                     int timeout_s, bool *passed, vcl_error *e)
{
    image_req r;
    memset(&r, 0, sizeof r);
    r.t = t;
    r.command_timeout_s = timeout_s;
    *passed = false;
    if (!t || !path || !path[0])
        return vcl_error_set(e, VCL_ERR_PERMANENT, "qimg_check_path: bad arguments");
    return qimg_check(&r, path, fmt, shared, passed, e);
}

/* ------------------------------------------------------------- repository */

static bool is_glob_char(char c)
{
    return c == '*' || c == '?' || c == '[' || c == ']' || c == '\\';
}

/* The repository search proper: *hit true and found filled with the first
 * match; *hit false (and success) when nothing matches. list gets the
 * repository paths searched, for messages. */
static bool repo_search(const image_req *r, char *found, size_t found_len, bool *hit, char *list,
                        size_t list_size, vcl_error *e)
{
    bool ok = false;
    char pattern[PATH_MAX];
    size_t list_len = 0;
    char **paths = NULL;
    size_t n = 0;

    *hit = false;
    found[0] = '\0';
    if (list_size)
        list[0] = '\0';
    for (size_t i = 0; i < r->n_repo && r->repo_paths; i++) {
        const char *repo = r->repo_paths[i];
        if (!repo || !repo[0])
            continue;
        if (list_size) {
            int w = snprintf(list + list_len, list_size - list_len, "%s%s", list_len ? ", " : "",
                             repo);
            if (w > 0)
                list_len = list_len + (size_t)w < list_size ? list_len + (size_t)w : list_size - 1;
        }

        size_t rl = strlen(repo);
        while (rl > 1 && repo[rl - 1] == '/')
            rl--;
        for (size_t x = 0; x < sizeof repo_exts / sizeof repo_exts[0]; x++) {
            /* The directory part may hold wildcards; the file name is the
             * stem (plain characters, escaped anyway) and the extension. */
            char name[300];
            size_t nl = 0;
            for (const char *s = r->file_stem; *s && nl + 3 < sizeof name; s++) {
                if (is_glob_char(*s))
                    name[nl++] = '\\';
                name[nl++] = *s;
            }
            name[nl] = '\0';
            if (snprintf(pattern, sizeof pattern, "%.*s/%s.%s", (int)rl, repo, name, repo_exts[x]) >=
                (int)sizeof pattern)
                continue;
            if (!transport_glob(repo_tp(r), pattern, &paths, &n, e))
                goto cleanup;
            for (size_t k = 0; k < n; k++) {
                transport_stat_info st;
                if (!transport_lstat(repo_tp(r), paths[k], &st, e))
                    goto cleanup;
                if (!st.exists || st.is_dir)
                    continue;
                /* qemu-img would follow a link anywhere (a raw "image" of any
                 * file on the host) or hang on a FIFO: refused, never used */
                if (!st.is_reg) {
                    transport_check_file(repo_tp(r), paths[k], NULL, e);
                    vcl_error_prefix(e, "repository image");
                    goto cleanup;
                }
                if (strlen(paths[k]) >= found_len) {
                    vcl_error_set(e, VCL_ERR_PERMANENT, "repository path too long: '%s'", paths[k]);
                    goto cleanup;
                }
                memcpy(found, paths[k], strlen(paths[k]) + 1);
                log_debug("image %s found in repository: %s", r->file_stem, found);
                *hit = true;
                ok = true;
                goto cleanup;
            }
            util_strv_free(paths, n);
            paths = NULL;
            n = 0;
        }
    }
    ok = true;
cleanup:
    util_strv_free(paths, n);
    return ok;
}

bool image_find_in_repository(const image_req *r, char *found, size_t found_len, vcl_error *e)
{
    char list[768];
    bool hit = false;

    if (found && found_len)
        found[0] = '\0';
    if (!r || !r->t || !found || found_len == 0)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "image_find_in_repository: bad arguments");
    if (!stem_ok(r->file_stem, e))
        return false;
    if (!repo_search(r, found, found_len, &hit, list, sizeof list, e))
        return false;
    if (hit)
        return true;
    return vcl_error_set(e, VCL_ERR_PERMANENT,
                         "image '%s' not found on the node (%s) or in repository paths: %s",
                         r->file_stem, r->master_path ? r->master_path : "?",
                         list[0] ? list : "(none configured)");
}

/* ------------------------------------------------- exists and size (VCL) */

const char *image_at_name(image_at a)
{
    static const char *const names[IMAGE_AT__COUNT] = { "missing", "node", "repository" };
    return (a >= 0 && a < IMAGE_AT__COUNT) ? names[a] : "?";
}

/* "<stem>-sNNN.vmdk", "<stem>-fNNN.vmdk" (NNN digits) or "<stem>-flat.vmdk":
 * the extent files qemu-img and VMware write next to a "<stem>.vmdk"
 * descriptor. Anything else with the stem as prefix (another image called
 * "<stem>-v2", say) is not part of the set: VCL's "<stem>*.*" would take it. */
static bool is_vmdk_extent(const char *name, const char *stem)
{
    size_t sl = strlen(stem);
    if (strncmp(name, stem, sl) != 0 || name[sl] != '-')
        return false;
    const char *rest = name + sl + 1;
    if (strcmp(rest, "flat.vmdk") == 0)
        return true;
    if ((rest[0] != 's' && rest[0] != 'f') || strlen(rest) < 6)
        return false;
    size_t d = strspn(rest + 1, "0123456789");
    return d >= 3 && strcmp(rest + 1 + d, ".vmdk") == 0;
}

/* Add the extents next to a vmdk descriptor to loc (count and size). */
static bool vmdk_extents(const image_req *r, image_location *loc, vcl_error *e)
{
    bool ok = false;
    char dir[PATH_MAX], p[PATH_MAX];
    const char *base;
    char **names = NULL;
    size_t n = 0;

    split_path(loc->path, dir, sizeof dir, &base);
    if (!transport_list_dir(repo_tp(r), dir, &names, &n, e))
        goto cleanup;
    for (size_t i = 0; i < n; i++) {
        transport_stat_info st;
        if (!is_vmdk_extent(names[i], r->file_stem))
            continue;
        if (snprintf(p, sizeof p, "%s/%s", strcmp(dir, "/") ? dir : "", names[i]) >= (int)sizeof p)
            continue;
        if (!transport_lstat(repo_tp(r), p, &st, e))
            goto cleanup;
        if (!st.exists || !st.is_reg)
            continue;
        loc->n_files++;
        loc->size_bytes += st.size;
    }
    ok = true;
cleanup:
    util_strv_free(names, n);
    return ok;
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

bool image_locate(const image_req *r, image_location *loc, vcl_error *e)
{
    transport_stat_info st;
    bool hit = false;
    char list[768];

    if (loc)
        memset(loc, 0, sizeof *loc);
    if (!loc || !req_ok(r, false, e))
        return loc ? false : vcl_error_set(e, VCL_ERR_PERMANENT, "image_locate: bad arguments");

    /* 1. the node: the master a load would use (a regular file: a load
     * refuses anything else there) */
    if (!transport_lstat(r->t, r->master_path, &st, e))
        return false;
    if (st.exists && st.is_reg) {
        loc->at = IMAGE_AT_NODE;
        snprintf(loc->path, sizeof loc->path, "%s", r->master_path);
        loc->n_files = 1;
        loc->size_bytes = st.size;
        loc->size_mb = st.size / (1024 * 1024);
        return true;
    }
    /* 2. the repository */
    if (!repo_search(r, loc->path, sizeof loc->path, &hit, list, sizeof list, e))
        return false;
    if (!hit) {
        loc->path[0] = '\0';
        return true;
    }
    if (!transport_lstat(repo_tp(r), loc->path, &st, e))
        return false;
    loc->at = IMAGE_AT_REPOSITORY;
    loc->n_files = 1;
    loc->size_bytes = st.size;
    if (has_suffix(loc->path, ".vmdk") && !vmdk_extents(r, loc, e))
        return false;
    loc->size_mb = loc->size_bytes / (1024 * 1024);
    return true;
}

bool image_exists(const image_req *r, bool *exists, image_location *loc, vcl_error *e)
{
    image_location here;
    image_location *l = loc ? loc : &here;
    if (exists)
        *exists = false;
    if (!image_locate(r, l, e))
        return false;
    if (exists)
        *exists = l->at != IMAGE_AT_NONE;
    return true;
}

bool image_size(const image_req *r, long long *bytes, long long *mb, image_location *loc,
                vcl_error *e)
{
    image_location here;
    image_location *l = loc ? loc : &here;
    char list[768] = "";
    if (bytes)
        *bytes = 0;
    if (mb)
        *mb = 0;
    if (!image_locate(r, l, e))
        return false;
    if (l->at == IMAGE_AT_NONE) {
        for (size_t i = 0, len = 0; i < r->n_repo && r->repo_paths && len + 1 < sizeof list; i++) {
            int w = snprintf(list + len, sizeof list - len, "%s%s", len ? ", " : "", r->repo_paths[i]);
            len = w > 0 ? len + (size_t)w : len;
        }
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "image '%s' not found on the node (%s) or in repository paths: %s",
                             r->file_stem, r->master_path, list[0] ? list : "(none configured)");
    }
    if (bytes)
        *bytes = l->size_bytes;
    if (mb)
        *mb = l->size_mb;
    return true;
}

/* ------------------------------------------------------------------ master */

/* Does a good master exist? *good true: use it. false: error (command could
 * not run, or the master exists but is damaged: never overwritten, so the
 * operator must look). */
static bool master_present(const image_req *r, bool *good, vcl_error *e)
{
    bool passed = false, exists = false;

    *good = false;
    /* a link, FIFO or directory at the master path is refused, never used */
    if (!transport_check_file(r->t, r->master_path, &exists, e))
        return vcl_error_prefix(e, "master image");
    if (!exists)
        return true;
    /* A master with a backing file is not one this worker wrote (an older
     * worker's COW disk at a master path, a planted file): refused. An
     * unchanged master that passed both earlier is not looked at again. */
    imgtrust_seen seen;
    if (!imgtrust_inspect_known(r->t, r->master_path, req_format(r), "master image", &seen, e))
        return false;
    /* -U: running VMs hold the master open as their backing file. */
    if (!seen.checked && !qimg_check(r, r->master_path, req_format(r), true, &passed, e))
        return false;
    if (!seen.checked && !passed) {
        return vcl_error_prefix(e, "master image %s exists but fails its check; it is never "
                                "overwritten (COW disks may use it): inspect it and remove it by hand "
                                "to have it copied again", r->master_path);
    }
    if (!seen.checked)
        imgtrust_note_checked(r->t, r->master_path, req_format(r), &seen);
    *good = true;
    return true;
}

/* transport_copy_in progress, passed on as "stream". */
static void stream_progress(void *opaque, long long done, long long total)
{
    report((const image_req *)opaque, "stream", done, total);
}

static void note(const image_req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const image_req *r, const char *fmt, ...)
{
    va_list ap;
    if (!r->how || !r->how_len)
        return;
    va_start(ap, fmt);
    vsnprintf(r->how, r->how_len, fmt, ap);
    va_end(ap);
}

/* While qemu-img convert runs on the node (one command: no progress of its
 * own through the transport), a thread looks at the size of the file it
 * writes once a second: that size over the source file's size, applied to
 * the virtual size, is how far it is. The stage detail moves. */
typedef struct convert_watch {
    const image_req *r;
    const char *dst;
    long long src_size, vsize;
    atomic_int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} convert_watch;

static void *convert_watch_main(void *arg)
{
    convert_watch *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!atomic_load(&w->stop)) {
        struct timespec ts = util_realtime_in(1);
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        if (atomic_load(&w->stop))
            break;
        pthread_mutex_unlock(&w->mu);
        transport_stat_info st;
        vcl_error e;
        vcl_error_clear(&e);
        if (transport_stat(w->r->t, w->dst, &st, &e) && st.exists && st.size > 0) {
            /* the output can outgrow the source (compressed source, metadata):
             * short of done until the command ends */
            double f = (double)st.size / (double)w->src_size;
            long long done = f < 0.99 ? (long long)(f * (double)w->vsize) : w->vsize / 100 * 99;
            report(w->r, "convert", done, w->vsize);
        }
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Convert src (format sfmt) on the node into dst (the master's format). */
static bool node_convert(const image_req *r, const char *sfmt, const char *src, const char *dst,
                         long long vsize, vcl_error *e)
{
    const char *conv[] = { "qemu-img", "convert", "-t", "writeback", "-f", sfmt, "-O",
                           req_format(r), "--", src, dst, NULL };
    report(r, "convert", 0, vsize);
    convert_watch w = { .r = r, .dst = dst, .src_size = 0, .vsize = vsize };
    transport_stat_info sst;
    vcl_error se;
    vcl_error_clear(&se);
    if (r->progress && vsize > 0 && transport_stat(r->t, src, &sst, &se) && sst.exists &&
        sst.size > 0)
        w.src_size = sst.size;
    pthread_t th;
    bool watching = false;
    if (w.src_size > 0) {
        atomic_init(&w.stop, 0);
        pthread_mutex_init(&w.mu, NULL);
        pthread_cond_init(&w.cv, NULL);
        watching = pthread_create(&th, NULL, convert_watch_main, &w) == 0;
    }
    bool ok = transport_run(r->t, conv, config_command_timeout(r->command_timeout_s),
                            VCL_ERR_RETRYABLE, NULL, e);
    if (watching) {
        pthread_mutex_lock(&w.mu);
        atomic_store(&w.stop, 1);
        pthread_cond_signal(&w.cv);
        pthread_mutex_unlock(&w.mu);
        pthread_join(th, NULL);
    }
    if (w.src_size > 0) {
        pthread_mutex_destroy(&w.mu);
        pthread_cond_destroy(&w.cv);
    }
    if (!ok)
        return false;
    report(r, "convert", vsize, vsize);
    return true;
}

/* Under the lock: copy the repository image to "<master>.tmp-vcl+<random>"
 * (node/temps.h: both temp names recorded before either file exists), check
 * it, rename it into place (never over an existing master). A repository on
 * the management host (r->repo_t) is first streamed to the node
 * (transport_copy_in: SFTP for an ssh node) as that temp, its size
 * compared with the source's, then converted on the node into
 * "<temp>-conv" when its format is not the master's. */
static bool master_build(const image_req *r, vcl_error *e)
{
    bool ok = false;
    char src[PATH_MAX], tmp[PATH_MAX], conv_tmp[PATH_MAX], dir[PATH_MAX];
    const char *base, *final_tmp;
    qimg_info si;
    bool passed = false, existed = false, tmp_made = false, conv_made = false;
    bool tmp_rec = false, conv_rec = false;
    const char *fmt = req_format(r);
    bool mgmt = r->repo_t != NULL;
    vcl_transport *rt = repo_tp(r);

    if (!image_find_in_repository(r, src, sizeof src, e))
        goto cleanup;       /* a regular file: repo_search refuses anything else */
    /* The format comes from the file name, never from probing the content
     * (a ".raw" with a qcow2 header is raw), and the file must stand alone:
     * no backing file, no data file, no vmdk extent outside its directory. */
    const char *sfmt = imgtrust_format_of(src);
    if (!sfmt) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "repository image %s: unknown format (the name must "
                      "end in .qcow2, .raw, .img or .vmdk)", src);
        goto cleanup;
    }
    if (!imgtrust_inspect(rt, src, sfmt, "repository image", &si, e))
        goto cleanup;
    if (!qimg_check_path(rt, src, si.format, false, config_command_timeout(r->command_timeout_s),
                         &passed, e))
        goto cleanup;
    if (!passed) {
        vcl_error_prefix(e, "repository image %s is damaged (qemu-img check failed); "
                         "repair or replace it in the repository", src);
        if (e)
            e->cls = VCL_ERR_PERMANENT;
        goto cleanup;
    }

    split_path(r->master_path, dir, sizeof dir, &base);
    if (!transport_mkdir_p(r->t, dir, 0755, e))
        goto cleanup;
    if (!temps_name(r->master_path, "", tmp, sizeof tmp, e) ||
        snprintf(conv_tmp, sizeof conv_tmp, "%s-conv", tmp) >= (int)sizeof conv_tmp) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "master path too long (or no random bytes): %s",
                      r->master_path);
        goto cleanup;
    }
    /* recorded before either file can exist: a cleanup removes only these */
    if (!(tmp_rec = temps_record(r->temps, tmp, e)) ||
        !(conv_rec = temps_record(r->temps, conv_tmp, e)))
        goto cleanup;
    final_tmp = tmp;

    if (!mgmt) {
        log_info("copying image %s from %s (%s, %lld bytes) to %s", r->file_stem, src, si.format,
                 si.virtual_size, r->master_path);
        tmp_made = true;
        if (!node_convert(r, si.format, src, tmp, si.virtual_size, e))
            goto cleanup;
        note(r, "converted from %s", src);
    } else {
        transport_stat_info ls, ns;
        if (has_suffix(src, ".vmdk")) {
            image_location loc;
            memset(&loc, 0, sizeof loc);
            snprintf(loc.path, sizeof loc.path, "%s", src);
            if (!vmdk_extents(r, &loc, e))
                goto cleanup;
            if (loc.n_files > 0) {
                vcl_error_set(e, VCL_ERR_PERMANENT,
                              "repository image %s is a split vmdk on the management host: "
                              "streaming one file of it to the node cannot work; convert it to "
                              "a single file there", src);
                goto cleanup;
            }
        }
        if (!transport_stat(rt, src, &ls, e))
            goto cleanup;
        log_info("streaming image %s from the management host (%s, %s, %lld bytes) to %s on "
                 "node (%s transport)", r->file_stem, src, si.format, ls.size, tmp,
                 transport_kind(r->t));
        tmp_made = true;
        if (!transport_copy_in(r->t, src, tmp, stream_progress, (void *)r, e)) {
            vcl_error_prefix(e, "streaming %s to the node", src);
            goto cleanup;
        }
        if (!transport_stat(r->t, tmp, &ns, e))
            goto cleanup;
        if (!ns.exists || ns.size != ls.size) {
            vcl_error_set(e, VCL_ERR_RETRYABLE,
                          "the streamed copy %s is %lld bytes on the node, the source %s is %lld",
                          tmp, ns.exists ? ns.size : -1LL, src, ls.size);
            goto cleanup;
        }
        /* what arrived is judged again, on the node, as the same format */
        if (!imgtrust_inspect(r->t, tmp, sfmt, "streamed copy of a repository image", NULL, e))
            goto cleanup;
        if (strcmp(si.format, fmt) != 0) {
            if (!qimg_check(r, tmp, si.format, false, &passed, e))
                goto cleanup;
            if (!passed) {
                vcl_error_prefix(e, "the streamed copy of %s (%s) fails its check", src, tmp);
                if (e)
                    e->cls = VCL_ERR_RETRYABLE;
                goto cleanup;
            }
            conv_made = true;
            if (!node_convert(r, si.format, tmp, conv_tmp, si.virtual_size, e))
                goto cleanup;
            final_tmp = conv_tmp;
            note(r, "streamed from the management host: %s (converted from %s on the node)", src,
                 si.format);
        } else
            note(r, "streamed from the management host: %s", src);
        log_info("streamed image %s from the management host to node: %s (%lld bytes)%s",
                 r->file_stem, src, ls.size, final_tmp == conv_tmp ? ", converted" : "");
    }

    /* the master written stands alone (no backing file): checked, not assumed */
    if (!imgtrust_inspect(r->t, final_tmp, fmt, "the new master", NULL, e))
        goto cleanup;
    if (!qimg_check(r, final_tmp, fmt, false, &passed, e))
        goto cleanup;
    if (!passed) {
        vcl_error_prefix(e, "the copy of %s to %s fails its check", src, final_tmp);
        if (e)
            e->cls = VCL_ERR_RETRYABLE;
        goto cleanup;
    }
    /* a lock lost mid-copy (our lease ran out, another worker took it):
     * that worker makes the master now (and may remove our recorded temps) */
    if (r->lock && r->lock_held && !r->lock_held(r->lock_opaque, e))
        goto cleanup;
    if (!transport_rename_noreplace(r->t, final_tmp, r->master_path, &existed, e)) {
        if (!existed)
            goto cleanup;
        /* Someone made it without our lock (no lock configured): theirs wins. */
        log_warn("master %s appeared while we copied it; keeping the existing one", r->master_path);
        vcl_error_clear(e);
    } else if (final_tmp == tmp)
        tmp_made = false;
    else
        conv_made = false;
    ok = true;
cleanup:
    /* removed when still there, then forgotten */
    if (tmp_rec)
        temps_done(r->t, r->temps, tmp, tmp_made);
    if (conv_rec)
        temps_done(r->t, r->temps, conv_tmp, conv_made);
    return ok;
}

bool image_ensure_master(const image_req *r, vcl_error *e)
{
    bool ok = false, locked = false, good = false;

    if (!req_ok(r, false, e))
        return false;
    report(r, "check", 0, 0);
    if (!master_present(r, &good, e))
        goto cleanup;
    if (good) {
        log_debug("master %s present and checked", r->master_path);
        note(r, "present on the node");
        ok = true;
        goto cleanup;
    }

    if (r->lock) {
        if (!r->lock(r->lock_opaque, true,
                     r->lock_timeout_s > 0 ? r->lock_timeout_s : IMAGE_LOCK_TIMEOUT_S, e)) {
            if (e && e->cls == VCL_ERR_NONE)
                vcl_error_set(e, VCL_ERR_RETRYABLE, "cannot lock image %s", r->file_stem);
            goto cleanup;
        }
        locked = true;
    }
    /* Re-check: another worker may have made it while we waited. */
    if (!master_present(r, &good, e))
        goto cleanup;
    if (good) {
        log_info("master %s was made by another worker meanwhile", r->master_path);
        note(r, "made by another worker");
        ok = true;
        goto cleanup;
    }
    /* We hold the lock: no live job is writing a temp file of this master;
     * a dead one's recorded temps go (node/temps.h), nothing else does. */
    if (!temps_remove_stale(r->t, r->temps, r->master_path, e))
        goto cleanup;
    if (!master_build(r, e))
        goto cleanup;
    ok = true;
cleanup:
    if (locked) {
        vcl_error e2;
        vcl_error_clear(&e2);
        if (!r->lock(r->lock_opaque, false, 0, &e2))
            log_warn("releasing the lock of image %s failed: %s", r->file_stem, e2.msg);
    }
    if (ok)
        report(r, "master", 1, 1);
    return ok;
}

/* --------------------------------------------------------------------- COW */

bool image_ensure_cow(const image_req *r, vcl_error *e)
{
    bool ok = false, tmp_made = false, tmp_rec = false;
    char tmp[PATH_MAX], dir[PATH_MAX];
    const char *base;
    bool exists = false;
    const char *fmt = req_format(r);

    if (!req_ok(r, true, e))
        return false;
    if (strcmp(r->cow_path, r->master_path) == 0)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "COW path equals the master path %s", r->master_path);

    /* qemu-img reads the master and writes next to the COW: both must be
     * regular files (or missing), never a link or FIFO planted there */
    if (!transport_check_file(r->t, r->master_path, &exists, e)) {
        vcl_error_prefix(e, "master image");
        goto cleanup;
    }
    if (!exists) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "master image %s is missing: cannot create the COW disk %s",
                      r->master_path, r->cow_path);
        goto cleanup;
    }
    if (!imgtrust_inspect_known(r->t, r->master_path, fmt, "master image", NULL, e))
        goto cleanup;

    if (!transport_check_file(r->t, r->cow_path, &exists, e)) {
        vcl_error_prefix(e, "COW disk");
        goto cleanup;
    }
    if (exists) {
        qimg_info qi;
        vcl_error ie;
        vcl_error_clear(&ie);
        if (qimg_info_get(r->t, r->cow_path, &qi, &ie) && strcmp(qi.format, fmt) == 0 &&
            strcmp(qi.backing_file, r->master_path) == 0 && strcmp(qi.backing_format, fmt) == 0) {
            log_debug("COW %s already backed by %s: kept", r->cow_path, r->master_path);
            ok = true;
            goto cleanup;
        }
        if (ie.cls != VCL_ERR_NONE)
            log_warn("COW %s unreadable (%s): replacing it", r->cow_path, ie.msg);
        else
            log_warn("COW %s is %s backed by '%s' (%s), not %s backed by %s: replacing it",
                     r->cow_path, qi.format, qi.backing_file,
                     qi.backing_format[0] ? qi.backing_format : "no format", fmt, r->master_path);
        if (!transport_remove(r->t, r->cow_path, e))
            goto cleanup;
    }

    split_path(r->cow_path, dir, sizeof dir, &base);
    if (!transport_mkdir_p(r->t, dir, 0755, e))
        goto cleanup;
    /* One job per computer at a time, and the COW path is per computer: a
     * recorded temp of it whose job's lease is gone is a leftover of a crash. */
    if (!temps_remove_stale(r->t, r->temps, r->cow_path, e))
        goto cleanup;
    if (!temps_name(r->cow_path, "", tmp, sizeof tmp, e))
        goto cleanup;
    if (!(tmp_rec = temps_record(r->temps, tmp, e)))
        goto cleanup;
    const char *argv[] = { "qemu-img", "create", "-q", "-f", fmt, "-F", fmt, "-b", r->master_path,
                           "--", tmp, NULL };
    tmp_made = true;
    if (!transport_run(r->t, argv, config_command_timeout(r->command_timeout_s), VCL_ERR_RETRYABLE,
                       NULL, e))
        goto cleanup;
    if (!transport_rename(r->t, tmp, r->cow_path, e))
        goto cleanup;
    tmp_made = false;
    log_info("created COW %s backed by %s", r->cow_path, r->master_path);
    report(r, "cow", 1, 1);
    ok = true;
cleanup:
    if (tmp_rec)
        temps_done(r->t, r->temps, tmp, tmp_made);
    if (r->cow_made) {
        /* its identity now (a later look at the same inode needs no qemu-img
         * info to know its backing): nothing when it could not be read */
        vcl_error ignore;
        vcl_error_clear(&ignore);
        if (!ok || !transport_lstat(r->t, r->cow_path, r->cow_made, &ignore) || !r->cow_made->is_reg)
            memset(r->cow_made, 0, sizeof *r->cow_made);
    }
    return ok;
}
