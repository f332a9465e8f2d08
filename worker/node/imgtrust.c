/* imgtrust.c: see imgtrust.h.
 *
 * The JSON is loaded whole with libyaml's document loader (yaml_parser_load)
 * and walked as a tree: the top is a sequence, one mapping per image of the
 * chain (qemu-img prints the chain even when it is one image long). A key
 * given twice in one mapping is refused: two readers could take different
 * ones. Output from qemu-img 7.2 (Debian 12), checked by hand:
 *   qcow2 with -b:  "backing-filename", "full-backing-filename", and a second
 *                   element for the backing file
 *   qcow2 with -o data_file=X: format-specific.data."data-file": X
 *   vmdk:  format-specific.data.extents[].filename: the descriptor itself
 *          (monolithicSparse), or "<dir of the descriptor>/<name as written>"
 *          for a relative extent, or the absolute path as written. */
#include "node/imgtrust.h"
#include "base/config.h"
#include "base/names.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define INSPECT_TIMEOUT_S 120

const char *imgtrust_format_of(const char *path)
{
    static const struct { const char *ext, *fmt; } map[] = {
        { ".qcow2", "qcow2" }, { ".raw", "raw" }, { ".img", "raw" }, { ".vmdk", "vmdk" },
    };
    size_t n = path ? strlen(path) : 0;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        size_t l = strlen(map[i].ext);
        if (n > l && strcmp(path + n - l, map[i].ext) == 0)
            return map[i].fmt;
    }
    return NULL;
}

/* ------------------------------------------------------------ tree walk */

typedef struct judge_ctx {
    yaml_document_t *doc;
    const char *path;
    const char *fmt;
    char dir[PATH_MAX];
    imgtrust_facts *out;
    vcl_error *e;
} judge_ctx;

static const char *scalar(yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* The value of key in mapping m: *v NULL when absent; false when a key is
 * given twice or m is not a mapping. */
static bool map_get(yaml_document_t *d, yaml_node_t *m, const char *key, yaml_node_t **v)
{
    *v = NULL;
    if (!m || m->type != YAML_MAPPING_NODE)
        return false;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        const char *k = scalar(yaml_document_get_node(d, p->key));
        if (!k)
            return false;
        if (strcmp(k, key) == 0) {
            if (*v)
                return false;
            *v = yaml_document_get_node(d, p->value);
        }
    }
    return true;
}

static bool malformed(judge_ctx *c, const char *what)
{
    return vcl_error_set(c->e, VCL_ERR_PERMANENT,
                         "image %s: cannot read the output of qemu-img info (%s); refused", c->path,
                         what);
}

static bool refuse(judge_ctx *c, const char *what, const char *target)
{
    char shown[260];
    names_show(target, shown, sizeof shown);
    return vcl_error_set(c->e, VCL_ERR_PERMANENT,
                         "image %s (read as %s) %s '%s': refused, an image must stand alone (it "
                         "could pull files of the node into the master); convert it to a "
                         "self-contained %s in the repository (qemu-img convert -O %s)",
                         c->path, c->fmt, what, shown, c->fmt, c->fmt);
}

static bool get_size(judge_ctx *c, yaml_node_t *m, const char *key, long long *out)
{
    yaml_node_t *v;
    if (!map_get(c->doc, m, key, &v))
        return malformed(c, "a key given twice");
    if (!v)
        return true;
    const char *s = scalar(v);
    char *end = NULL;
    errno = 0;
    long long x = s ? strtoll(s, &end, 10) : -1;
    if (!s || errno || end == s || *end || x < 0)
        return malformed(c, key);
    *out = x;
    return true;
}

/* One vmdk extent's file name: the image itself, or a file next to it. */
static bool extent_ok(judge_ctx *c, const char *f)
{
    size_t dl = strlen(c->dir);
    if (strcmp(f, c->path) == 0)
        return true;
    if (strncmp(f, c->dir, dl) != 0 || f[dl] != '/' || !name_valid(f + dl + 1))
        return refuse(c, "has a vmdk extent outside its own directory", f);
    if (c->out->n_extents >= IMGTRUST_MAX_EXTENTS)
        return refuse(c, "has too many vmdk extents; the last", f);
    snprintf(c->out->extents[c->out->n_extents++], sizeof c->out->extents[0], "%s", f);
    return true;
}

static bool judge_format_specific(judge_ctx *c, yaml_node_t *fs)
{
    yaml_node_t *data, *v;
    if (!fs)
        return true;
    if (!map_get(c->doc, fs, "data", &data))
        return malformed(c, "format-specific");
    if (!data)
        return true;
    if (!map_get(c->doc, data, "data-file", &v))
        return malformed(c, "format-specific data");
    if (v)
        return refuse(c, "has an external data file", scalar(v) ? scalar(v) : "?");
    if (!map_get(c->doc, data, "extents", &v))
        return malformed(c, "format-specific data");
    if (!v)
        return true;
    if (v->type != YAML_SEQUENCE_NODE)
        return malformed(c, "extents");
    for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
        yaml_node_t *x = yaml_document_get_node(c->doc, *i), *fn;
        if (!map_get(c->doc, x, "filename", &fn) || !scalar(fn))
            return malformed(c, "an extent without a file name");
        if (!extent_ok(c, scalar(fn)))
            return false;
    }
    return true;
}

bool imgtrust_judge(const char *json, const char *path, const char *fmt, imgtrust_facts *out,
                    vcl_error *e)
{
    bool ok = false, loaded = false;
    yaml_parser_t parser;
    yaml_document_t doc;
    judge_ctx c = { .doc = &doc, .path = path, .fmt = fmt, .out = out, .e = e };
    yaml_node_t *root, *img, *v;

    if (!json || !path || path[0] != '/' || !fmt || !out)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "imgtrust_judge: bad arguments");
    memset(out, 0, sizeof *out);
    const char *slash = strrchr(path, '/');
    snprintf(c.dir, sizeof c.dir, "%.*s", (int)(slash - path), path);
    if (!yaml_parser_initialize(&parser))
        return vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)json, strlen(json));
    if (!yaml_parser_load(&parser, &doc)) {
        malformed(&c, parser.problem ? parser.problem : "not JSON");
        goto cleanup;
    }
    loaded = true;
    root = yaml_document_get_root_node(&doc);
    if (!root || root->type != YAML_SEQUENCE_NODE) {
        malformed(&c, "not a list of images");
        goto cleanup;
    }
    long n = (long)(root->data.sequence.items.top - root->data.sequence.items.start);
    if (n < 1) {
        malformed(&c, "no image");
        goto cleanup;
    }
    img = yaml_document_get_node(&doc, root->data.sequence.items.start[0]);
    if (!img || img->type != YAML_MAPPING_NODE) {
        malformed(&c, "an image is not an object");
        goto cleanup;
    }
    if (!map_get(&doc, img, "format", &v) || !scalar(v)) {
        malformed(&c, "no format");
        goto cleanup;
    }
    if (strcmp(scalar(v), fmt) != 0 ||
        snprintf(out->info.format, sizeof out->info.format, "%s", fmt) >= (int)sizeof out->info.format) {
        malformed(&c, "another format than the one asked for");
        goto cleanup;
    }
    if (!get_size(&c, img, "virtual-size", &out->info.virtual_size) ||
        !get_size(&c, img, "actual-size", &out->info.actual_size))
        goto cleanup;
    static const char *const backing_keys[] = { "full-backing-filename", "backing-filename" };
    for (size_t k = 0; k < 2; k++) {
        if (!map_get(&doc, img, backing_keys[k], &v)) {
            malformed(&c, "a key given twice");
            goto cleanup;
        }
        if (v) {
            refuse(&c, "has a backing file", scalar(v) ? scalar(v) : "?");
            goto cleanup;
        }
    }
    if (n > 1) {
        yaml_node_t *b = yaml_document_get_node(&doc, root->data.sequence.items.start[1]), *bf;
        map_get(&doc, b, "filename", &bf);
        refuse(&c, "has a backing file", scalar(bf) ? scalar(bf) : "?");
        goto cleanup;
    }
    if (!map_get(&doc, img, "format-specific", &v)) {
        malformed(&c, "a key given twice");
        goto cleanup;
    }
    if (!judge_format_specific(&c, v))
        goto cleanup;
    ok = true;
cleanup:
    if (loaded)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (!ok)
        memset(out, 0, sizeof *out);
    return ok;
}

bool imgtrust_inspect(vcl_transport *t, const char *path, const char *fmt, const char *what,
                      qimg_info *info, vcl_error *e)
{
    bool ok = false;
    transport_result res = { .status = -1 };
    imgtrust_facts *f = NULL;
    const char *argv[] = { "qemu-img", "info", "-f", fmt, "--backing-chain", "--output=json",
                           "-U", "--", path, NULL };

    if (info)
        memset(info, 0, sizeof *info);
    if (!t || !path || !fmt)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "imgtrust_inspect: bad arguments");
    if (!(f = calloc(1, sizeof *f)))
        return vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory");
    if (!transport_run(t, argv, INSPECT_TIMEOUT_S, VCL_ERR_RETRYABLE, &res, e)) {
        /* qemu-img cannot open it as fmt (a qcow2 named .vmdk, a missing
         * extent): the file is wrong, not the node */
        if (e && res.status > 0)
            e->cls = VCL_ERR_PERMANENT;
        vcl_error_prefix(e, "%s %s (read as %s)", what, path, fmt);
        goto cleanup;
    }
    if (!imgtrust_judge(res.out, path, fmt, f, e)) {
        vcl_error_prefix(e, "%s", what);
        goto cleanup;
    }
    for (size_t i = 0; i < f->n_extents; i++) {
        transport_stat_info st;
        if (!transport_lstat(t, f->extents[i], &st, e))
            goto cleanup;
        if (!st.exists || !st.is_reg) {
            vcl_error_set(e, VCL_ERR_PERMANENT,
                          "%s %s: its vmdk extent %s is %s, not a regular file: refused", what,
                          path, f->extents[i],
                          st.exists ? transport_file_kind(st.mode) : "missing");
            goto cleanup;
        }
    }
    if (info)
        *info = f->info;
    ok = true;
cleanup:
    transport_result_clear(&res);
    free(f);
    return ok;
}

/* ------------------------------------------------------------ trust memory
 *
 * A small table per process (the masters one worker loads are few), LRU by
 * a use counter, one mutex: a lookup is a few string compares beside the
 * lstat it needs anyway. Only qcow2 and raw are remembered: a vmdk's extents
 * are other files, whose identity the entry would not cover. */

#define TRUST_SLOTS 64

typedef struct trust_entry {
    char *path;                     /* NULL: a free slot */
    char fmt[16];
    unsigned long long dev, ino;
    long long size, mtime_ns, ctime_ns;
    bool checked;
    unsigned long used;             /* trust_clock at the last use */
} trust_entry;

static pthread_mutex_t trust_mu = PTHREAD_MUTEX_INITIALIZER;
static trust_entry trust[TRUST_SLOTS];
static unsigned long trust_clock, trust_hits, trust_misses;

static bool trust_fmt_ok(const char *fmt)
{
    return fmt && (strcmp(fmt, "qcow2") == 0 || strcmp(fmt, "raw") == 0);
}

static bool same_file(const transport_stat_info *a, const transport_stat_info *b)
{
    return a->has_id && b->has_id && a->exists && b->exists && a->is_reg && b->is_reg &&
           a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
}

static bool entry_is(const trust_entry *x, const transport_stat_info *st)
{
    transport_stat_info was = { .exists = true, .is_reg = true, .has_id = true, .dev = x->dev,
                                .ino = x->ino, .size = x->size, .mtime_ns = x->mtime_ns,
                                .ctime_ns = x->ctime_ns };
    return same_file(&was, st);
}

/* The slot of (path, fmt), or NULL. Under trust_mu. */
static trust_entry *trust_find(const char *path, const char *fmt)
{
    for (size_t i = 0; i < TRUST_SLOTS; i++)
        if (trust[i].path && strcmp(trust[i].path, path) == 0 && strcmp(trust[i].fmt, fmt) == 0)
            return &trust[i];
    return NULL;
}

static void trust_drop(trust_entry *x)
{
    free(x->path);
    memset(x, 0, sizeof *x);
}

/* Remember st for (path, fmt); checked only adds (an entry of the same file
 * that was checked stays checked). Under trust_mu. */
static void trust_put(const char *path, const char *fmt, const transport_stat_info *st,
                      bool checked)
{
    trust_entry *x = trust_find(path, fmt), *oldest = &trust[0];
    if (x && entry_is(x, st)) {
        x->checked = x->checked || checked;
        x->used = ++trust_clock;
        return;
    }
    if (!x) {
        for (size_t i = 0; i < TRUST_SLOTS && !x; i++) {
            if (!trust[i].path)
                x = &trust[i];
            else if (trust[i].used < oldest->used)
                oldest = &trust[i];
        }
        if (!x)
            x = oldest;
    }
    trust_drop(x);
    if (!(x->path = strdup(path)))
        return;   /* out of memory: simply not remembered */
    snprintf(x->fmt, sizeof x->fmt, "%s", fmt);
    x->dev = st->dev;
    x->ino = st->ino;
    x->size = st->size;
    x->mtime_ns = st->mtime_ns;
    x->ctime_ns = st->ctime_ns;
    x->checked = checked;
    x->used = ++trust_clock;
}

/* lstat path; true when it has an identity worth remembering. */
static bool trust_stat(vcl_transport *t, const char *path, transport_stat_info *st)
{
    vcl_error ignore;
    vcl_error_clear(&ignore);
    if (!transport_lstat(t, path, st, &ignore)) {
        memset(st, 0, sizeof *st);
        return false;
    }
    return st->exists && st->is_reg && st->has_id;
}

bool imgtrust_inspect_known(vcl_transport *t, const char *path, const char *fmt, const char *what,
                            imgtrust_seen *seen, vcl_error *e)
{
    imgtrust_seen s;
    memset(&s, 0, sizeof s);
    if (seen)
        memset(seen, 0, sizeof *seen);
    bool id = t && path && trust_fmt_ok(fmt) && trust_stat(t, path, &s.st);

    pthread_mutex_lock(&trust_mu);
    trust_entry *x = id ? trust_find(path, fmt) : NULL;
    if (x && entry_is(x, &s.st)) {
        s.known = true;
        s.checked = x->checked;
        x->used = ++trust_clock;
        trust_hits++;
    } else {
        if (x)
            trust_drop(x);   /* the file changed: inspect it again */
        trust_misses++;
    }
    pthread_mutex_unlock(&trust_mu);

    if (!s.known) {
        if (!imgtrust_inspect(t, path, fmt, what, NULL, e))
            return false;
        transport_stat_info after;
        if (id && trust_stat(t, path, &after) && same_file(&s.st, &after)) {
            pthread_mutex_lock(&trust_mu);
            trust_put(path, fmt, &s.st, false);
            pthread_mutex_unlock(&trust_mu);
        }
    }
    if (seen)
        *seen = s;
    return true;
}

void imgtrust_note_checked(vcl_transport *t, const char *path, const char *fmt,
                           const imgtrust_seen *seen)
{
    transport_stat_info now;
    if (!t || !path || !seen || !trust_fmt_ok(fmt) || !trust_stat(t, path, &now) ||
        !same_file(&seen->st, &now))
        return;
    pthread_mutex_lock(&trust_mu);
    trust_put(path, fmt, &now, true);
    pthread_mutex_unlock(&trust_mu);
}

void imgtrust_forget(void)
{
    pthread_mutex_lock(&trust_mu);
    for (size_t i = 0; i < TRUST_SLOTS; i++)
        trust_drop(&trust[i]);
    trust_hits = trust_misses = 0;
    pthread_mutex_unlock(&trust_mu);
}

void imgtrust_counts(unsigned long *hits, unsigned long *misses)
{
    pthread_mutex_lock(&trust_mu);
    if (hits)
        *hits = trust_hits;
    if (misses)
        *misses = trust_misses;
    pthread_mutex_unlock(&trust_mu);
}
