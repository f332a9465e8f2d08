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
