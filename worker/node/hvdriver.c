/* hvdriver.c: see hvdriver.h. */
#include "node/hvdriver.h"
#include "node/image.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/util.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

typedef struct hvdriver_entry {
    void *dl;
    const vcl_driver_ops *ops;
    int rank;                  /* position in the configured order; n_order when absent */
} hvdriver_entry;

struct hvdriver_set {
    hvdriver_entry *v;
    size_t n;
};

/* ------------------------------------------------------------------ loading */

static int cmp_entry(const void *a, const void *b)
{
    const hvdriver_entry *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    return strcmp(x->ops->name, y->ops->name);
}

static bool has_so_suffix(const char *name)
{
    size_t n = strlen(name);
    return n > 3 && strcmp(name + n - 3, ".so") == 0 && name[0] != '.';
}

/* Open one module; NULL (logged) when refused. */
static void *open_module(const char *path, const vcl_driver_ops **ops_out)
{
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    vcl_driver_entry_fn entry = NULL;
    const vcl_driver_ops *ops = NULL;

    *ops_out = NULL;
    if (!dl) {
        const char *err = dlerror();
        log_warn("driver module %s refused: cannot load it: %s", path, err ? err : "?");
        return NULL;
    }
    dlerror();
    void *sym = dlsym(dl, VCL_DRIVER_ENTRY_SYMBOL);
    if (!sym) {
        log_warn("driver module %s refused: no symbol %s", path, VCL_DRIVER_ENTRY_SYMBOL);
        goto refuse;
    }
    /* POSIX guarantees a data pointer from dlsym converts to a function pointer. */
    memcpy(&entry, &sym, sizeof entry);
    ops = entry();
    if (!ops) {
        log_warn("driver module %s refused: %s() returned NULL", path, VCL_DRIVER_ENTRY_SYMBOL);
        goto refuse;
    }
    if (ops->abi_version != VCL_DRIVER_ABI_VERSION) {
        log_error("driver module %s refused: ABI version %u, this worker speaks %u; rebuild the driver",
                  path, ops->abi_version, VCL_DRIVER_ABI_VERSION);
        goto refuse;
    }
    if (!ops->name || !ops->name[0]) {
        log_warn("driver module %s refused: it has no name", path);
        goto refuse;
    }
    *ops_out = ops;
    return dl;
refuse:
    dlclose(dl);
    return NULL;
}

bool hvdriver_load_all(const char *dir, char *const *order, int n_order, hvdriver_set **out,
                       vcl_error *e)
{
    bool ok = false;
    DIR *d = NULL;
    char **names = NULL;
    size_t n_names = 0, cap_names = 0, refused = 0;
    hvdriver_set *s = NULL;

    if (out)
        *out = NULL;
    if (!dir || !out)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "hvdriver_load_all: no directory");
    if (n_order < 0 || (n_order > 0 && !order))
        n_order = 0;
    xmlInitParser();

    d = opendir(dir);
    if (!d) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "cannot read the drivers directory '%s': %s", dir,
                      strerror(errno));
        goto cleanup;
    }
    for (struct dirent *de; (de = readdir(d));) {
        if (!has_so_suffix(de->d_name))
            continue;
        if (n_names == cap_names) {
            size_t nc = cap_names ? cap_names * 2 : 8;
            char **nv = realloc(names, nc * sizeof *nv);
            if (!nv)
                goto oom;
            names = nv;
            cap_names = nc;
        }
        if (!(names[n_names] = strdup(de->d_name)))
            goto oom;
        n_names++;
    }
    if (n_names > 1)
        qsort(names, n_names, sizeof *names, util_cmp_str);

    if (!(s = calloc(1, sizeof *s)) || (n_names && !(s->v = calloc(n_names, sizeof *s->v))))
        goto oom;
    for (size_t i = 0; i < n_names; i++) {
        char path[PATH_MAX];
        const vcl_driver_ops *ops = NULL;
        if (snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= (int)sizeof path) {
            refused++;
            continue;
        }
        void *dl = open_module(path, &ops);
        if (!dl) {
            refused++;
            continue;
        }
        bool dup = false;
        for (size_t k = 0; k < s->n; k++)
            if (strcmp(s->v[k].ops->name, ops->name) == 0)
                dup = true;
        if (dup) {
            log_warn("driver module %s refused: a driver named '%s' is already loaded", path, ops->name);
            dlclose(dl);
            refused++;
            continue;
        }
        int rank = n_order;
        for (int k = 0; k < n_order; k++)
            if (order[k] && strcmp(order[k], ops->name) == 0) {
                rank = k;
                break;
            }
        s->v[s->n++] = (hvdriver_entry){ .dl = dl, .ops = ops, .rank = rank };
        log_debug("driver %s loaded from %s", ops->name, path);
    }
    if (s->n == 0) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "no usable hypervisor driver in '%s' (%zu module(s) found, "
                      "%zu refused: see the log)", dir, n_names, refused);
        goto cleanup;
    }
    qsort(s->v, s->n, sizeof *s->v, cmp_entry);
    for (int k = 0; k < n_order; k++) {
        bool found = false;
        for (size_t i = 0; order[k] && i < s->n; i++)
            found = found || strcmp(s->v[i].ops->name, order[k]) == 0;
        if (!found)
            log_warn("configured driver '%s' is not in %s", order[k] ? order[k] : "(null)", dir);
    }
    *out = s;
    s = NULL;
    ok = true;
    goto cleanup;
oom:
    vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory loading drivers");
cleanup:
    if (d)
        closedir(d);
    util_strv_free(names, n_names);
    hvdriver_set_free(s);
    return ok;
}

void hvdriver_set_free(hvdriver_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].dl)
            dlclose(s->v[i].dl);
    free(s->v);
    free(s);
}

size_t hvdriver_count(const hvdriver_set *s)
{
    return s ? s->n : 0;
}

const vcl_driver_ops *hvdriver_get(const hvdriver_set *s, size_t i)
{
    return s && i < s->n ? s->v[i].ops : NULL;
}

const vcl_driver_ops *hvdriver_select(const hvdriver_set *s, const vcl_driver_node *node,
                                      vcl_error *e)
{
    char reasons[900] = "";
    size_t len = 0;
    bool retryable = false;

    if (!s || s->n == 0) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "no hypervisor driver is loaded");
        return NULL;
    }
    for (size_t i = 0; i < s->n; i++) {
        const vcl_driver_ops *ops = s->v[i].ops;
        vcl_error de;
        vcl_error_clear(&de);
        if (!ops->initialize)
            vcl_error_set(&de, VCL_ERR_PERMANENT, "driver has no initialize()");
        else if (ops->initialize(hvdriver_host(), node, 0, &de)) {
            log_debug("node %s: driver %s selected", node && node->name ? node->name : "?", ops->name);
            return ops;
        }
        if (de.cls == VCL_ERR_NONE)
            vcl_error_set(&de, VCL_ERR_PERMANENT, "declined without a reason");
        if (de.cls == VCL_ERR_RETRYABLE)
            retryable = true;
        int w = snprintf(reasons + len, sizeof reasons - len, "%s%s: %s", len ? "; " : "", ops->name,
                         de.msg);
        if (w > 0)
            len = len + (size_t)w < sizeof reasons ? len + (size_t)w : sizeof reasons - 1;
    }
    /* Permanent when every driver said no for good; retryable when one
     * could not decide (the node or its libvirt did not answer). */
    vcl_error_set(e, retryable ? VCL_ERR_RETRYABLE : VCL_ERR_PERMANENT, "%s", reasons);
    return NULL;
}

/* ------------------------------------------------------------ host services */

static hv_node_handle *node_handle(const vcl_driver_node *node, vcl_error *e)
{
    if (!node || !node->handle) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "driver call without a node handle");
        return NULL;
    }
    return node->handle;
}

static int host_node_path_exists(const vcl_driver_node *node, const char *path, vcl_error *e)
{
    hv_node_handle *h = node_handle(node, e);
    transport_stat_info st;
    if (!h)
        return -1;
    if (!h->t) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "node %s: no transport", node->name ? node->name : "?");
        return -1;
    }
    if (!transport_stat(h->t, path, &st, e))
        return -1;
    return st.exists ? 1 : 0;
}

/* Asks libvirt every time (capabilities change when a node gains or loses
 * KVM); nothing is cached. */
static bool host_node_supports_domain_type(const vcl_driver_node *node, const char *type, vcl_error *e)
{
    hv_node_handle *h = node_handle(node, e);
    char *caps = NULL;
    xmlDocPtr doc = NULL;
    xmlXPathContextPtr ctx = NULL;
    xmlXPathObjectPtr res = NULL;
    bool found = false;
    const char *nname = node && node->name ? node->name : "?";

    if (!h)
        return false;
    if (!h->conn) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "node %s: no libvirt connection", nname);
        goto cleanup;
    }
    if (!type || !type[0]) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "empty domain type");
        goto cleanup;
    }
    if (!(caps = virConnectGetCapabilities(h->conn))) {
        const char *m = virGetLastErrorMessage();
        metrics_libvirt_error();
        vcl_error_set(e, VCL_ERR_RETRYABLE, "cannot read the capabilities of node %s: %s", nname,
                      m ? m : "unknown libvirt error");
        goto cleanup;
    }
    doc = xmlReadMemory(caps, (int)strlen(caps), "capabilities.xml", NULL,
                        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc || !(ctx = xmlXPathNewContext(doc))) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "node %s: cannot parse libvirt capabilities", nname);
        goto cleanup;
    }
    /* The type goes in as an XPath variable, never into the expression text. */
    xmlXPathObjectPtr val = xmlXPathNewCString(type);
    if (!val || xmlXPathRegisterVariable(ctx, BAD_CAST "type", val) != 0) {
        xmlXPathFreeObject(val);
        vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory");
        goto cleanup;
    }
    res = xmlXPathEvalExpression(BAD_CAST "/capabilities/guest/arch/domain[@type=$type]", ctx);
    if (!res) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "node %s: XPath on capabilities failed", nname);
        goto cleanup;
    }
    found = res->type == XPATH_NODESET && res->nodesetval && res->nodesetval->nodeNr > 0;
cleanup:
    xmlXPathFreeObject(res);
    xmlXPathFreeContext(ctx);
    xmlFreeDoc(doc);
    free(caps);
    return found;
}

static const image_req *load_req(const vcl_driver_load *load, vcl_error *e)
{
    if (!load || !load->handle) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "driver call without an image request");
        return NULL;
    }
    return load->handle;
}

static bool host_ensure_master(const vcl_driver_load *load, vcl_error *e)
{
    const image_req *r = load_req(load, e);
    return r && image_ensure_master(r, e);
}

static bool host_ensure_cow(const vcl_driver_load *load, vcl_error *e)
{
    const image_req *r = load_req(load, e);
    return r && image_ensure_cow(r, e);
}

static void host_log(int level, const char *msg)
{
    log_level l = level <= 0 ? LOG_LVL_DEBUG : level == 1 ? LOG_LVL_INFO
                : level == 2 ? LOG_LVL_WARN : LOG_LVL_ERROR;
    log_msg(l, "%s", msg ? msg : "");
}

static const vcl_driver_host host_table = {
    .abi_version = VCL_DRIVER_ABI_VERSION,
    .node_path_exists = host_node_path_exists,
    .node_supports_domain_type = host_node_supports_domain_type,
    .ensure_master = host_ensure_master,
    .ensure_cow = host_ensure_cow,
    .log = host_log,
};

const vcl_driver_host *hvdriver_host(void)
{
    return &host_table;
}
