/* nodecheck.c: see nodecheck.h. */
#include "node/nodecheck.h"
#include "base/names.h"
#include "node/virt.h"
#include "base/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

static node_check_item *item(node_check_report *r, const char *name)
{
    if (r->n >= NODE_CHECK_MAX_ITEMS)
        return NULL;
    node_check_item *it = &r->items[r->n++];
    memset(it, 0, sizeof *it);
    snprintf(it->item, sizeof it->item, "%s", name);
    return it;
}

static void say(node_check_item *it, bool ok, const char *fix, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void say(node_check_item *it, bool ok, const char *fix, const char *fmt, ...)
{
    if (!it)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->detail, sizeof it->detail, fmt, ap);
    va_end(ap);
    it->ok = ok;
    snprintf(it->fix, sizeof it->fix, "%s", fix ? fix : "");
}

static void version_str(unsigned long v, char *buf, size_t cap)
{
    snprintf(buf, cap, "%lu.%lu.%lu", v / 1000000, (v / 1000) % 1000, v % 1000);
}

/* The emulator libvirt would use for domain_type (domain capabilities' <path>). */
static bool emulator_path(virConnectPtr conn, const char *type, const char *emulator, char *buf,
                          size_t cap, vcl_error *e)
{
    char *caps = virConnectGetDomainCapabilities(conn, emulator, "x86_64", NULL, type, 0);
    if (!caps)
        return virt_error(e, NULL, "domain capabilities for %s", type);
    buf[0] = '\0';
    xmlDocPtr d = xmlReadMemory(caps, (int)strlen(caps), "domcaps.xml", NULL,
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    xmlNodePtr root = d ? xmlDocGetRootElement(d) : NULL;
    for (xmlNodePtr c = root ? root->children : NULL; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST "path")) {
            xmlChar *p = xmlNodeGetContent(c);
            snprintf(buf, cap, "%s", p ? (const char *)p : "");
            xmlFree(p);
        }
    xmlFreeDoc(d);
    free(caps);
    if (!buf[0])
        snprintf(buf, cap, "(no emulator path in the domain capabilities)");
    return true;
}

static void check_libvirt(const node_check_target *t, node_check_report *r, virConnectPtr *conn)
{
    node_check_item *it = item(r, "libvirt");
    vcl_error e;
    vcl_error_clear(&e);
    double t0 = util_mono_s();
    if (!(*conn = virt_open(t->libvirt_uri, &e))) {
        char fix[512];
        snprintf(fix, sizeof fix,
                 strcmp(t->transport, "ssh") == 0
                     ? "check the URI (user, host, keyfile=, known_hosts=) and that libvirtd runs "
                       "on the node: ssh NODE systemctl status libvirtd"
                     : "start libvirtd: systemctl start libvirtd (or tools/libvirt-up)");
        say(it, false, fix, "%s", e.msg);
        return;
    }
    double connect_ms = (util_mono_s() - t0) * 1000;
    unsigned long lib = 0, hv = 0;
    char libs[32] = "?", hvs[32] = "?";
    const char *type = virConnectGetType(*conn);
    double rt0 = util_mono_s();
    int rt_ok = 0;
    for (int i = 0; i < 3; i++)
        rt_ok += virConnectGetLibVersion(*conn, &lib) == 0;
    double rt = (util_mono_s() - rt0) * 1000 / 3;
    if (rt_ok)
        version_str(lib, libs, sizeof libs);
    if (virConnectGetVersion(*conn, &hv) == 0)
        version_str(hv, hvs, sizeof hvs);
    say(it, true, NULL, "%s reachable in %.0f ms; libvirt %s, %s %s; round trip %.2f ms",
        t->libvirt_uri, connect_ms, libs, type ? type : "hypervisor", hvs, rt);
}

static void check_transport(const node_check_target *t, node_check_report *r, vcl_transport **tr)
{
    node_check_item *it = item(r, "transport");
    vcl_error e;
    vcl_error_clear(&e);
    double t0 = util_mono_s();
    static const char *const argv[] = { "true", NULL };
    transport_result res = { 0 };
    if (!(*tr = transport_new(t->transport, t->topts, &e)) ||
        !transport_run(*tr, argv, 30, VCL_ERR_RETRYABLE, &res, &e)) {
        say(it, false,
            strcmp(t->transport, "ssh") == 0
                ? "check ssh_host/ssh_port/ssh_user of the node, the key (--ssh-key) and that the "
                  "node's host key is in the known_hosts file (--known-hosts)"
                : NULL,
            "%s transport: %s", t->transport, e.msg);
        transport_result_clear(&res);
        return;
    }
    transport_result_clear(&res);
    if (strcmp(t->transport, "ssh") == 0)
        say(it, true, NULL, "ssh %s%s%s:%d answers in %.0f ms", t->topts && t->topts->user ? t->topts->user : "",
            t->topts && t->topts->user ? "@" : "", t->topts ? t->topts->host : "?",
            t->topts && t->topts->port ? t->topts->port : 22, (util_mono_s() - t0) * 1000);
    else
        say(it, true, NULL, "local (commands run on this host) in %.0f ms",
            (util_mono_s() - t0) * 1000);
}

static const vcl_driver_ops *check_driver(const node_check_target *t, node_check_report *r,
                                          hv_node_handle *nh, vcl_driver_node *dn)
{
    node_check_item *it = item(r, "driver");
    const vcl_driver_ops *chosen = NULL;
    char others[512] = "";
    size_t off = 0;
    if (!t->drivers || hvdriver_count(t->drivers) == 0) {
        say(it, false, "check drivers_dir (vcl-worker --print-config) and `make install`",
            "no hypervisor driver modules loaded");
        return NULL;
    }
    if (!nh->conn || !nh->t) {
        say(it, false, NULL, "not checked: needs libvirt and the transport (above)");
        return NULL;
    }
    for (size_t i = 0; i < hvdriver_count(t->drivers); i++) {
        const vcl_driver_ops *d = hvdriver_get(t->drivers, i);
        vcl_error e;
        vcl_error_clear(&e);
        bool yes = d->initialize && d->initialize(hvdriver_host(), dn, 0, &e);
        if (yes && !chosen) {
            chosen = d;
            continue;
        }
        int w = snprintf(others + off, sizeof others - off, "%s%s: %s", off ? "; " : "", d->name,
                         yes ? "would accept too" : e.msg[0] ? e.msg : "declines");
        if (w > 0 && (size_t)w < sizeof others - off)
            off += (size_t)w;
    }
    if (!chosen)
        say(it, false,
            "for kvm: load the module (modprobe kvm_intel or kvm_amd) and check /dev/kvm; "
            "the qemu driver (TCG) needs qemu-system-x86 on the node",
            "no driver accepts the node: %s", others);
    else
        say(it, true, NULL, "%s accepts the node (domain type %s)%s%s%s", chosen->name,
            chosen->domain_type ? chosen->domain_type(0) : "qemu", off ? " (" : "", others,
            off ? ")" : "");
    return chosen;
}

static void check_hypervisor(const node_check_target *t, node_check_report *r, virConnectPtr conn,
                             const vcl_driver_ops *drv)
{
    node_check_item *it = item(r, "hypervisor");
    if (!conn || !drv) {
        say(it, false, NULL, "not checked: needs libvirt and a driver (above)");
        return;
    }
    const char *type = drv->domain_type ? drv->domain_type(0) : "qemu";
    char path[512];
    vcl_error e;
    vcl_error_clear(&e);
    if (!emulator_path(conn, type, t->emulator, path, sizeof path, &e))
        say(it, false, "install QEMU on the node: apt-get install qemu-system-x86",
            "no QEMU for %s domains: %s", type, e.msg);
    else
        say(it, true, NULL, "%s domains run with %s", type, path);
}

static void check_qemu_img(node_check_report *r, vcl_transport *tr)
{
    node_check_item *it = item(r, "qemu-img");
    if (!tr) {
        say(it, false, NULL, "not checked: needs the transport (above)");
        return;
    }
    static const char *const argv[] = { "qemu-img", "--version", NULL };
    transport_result res = { 0 };
    vcl_error e;
    vcl_error_clear(&e);
    if (!transport_run(tr, argv, 30, VCL_ERR_PERMANENT, &res, &e)) {
        say(it, false, "install it on the node: apt-get install qemu-utils",
            "qemu-img cannot run on the node (it creates every COW disk): %s", e.msg);
    } else {
        const char *out = res.out ? res.out : "";
        const char *nl = strchr(out, '\n');
        say(it, true, NULL, "%.*s", nl ? (int)(nl - out) : (int)strlen(out), out);
    }
    transport_result_clear(&res);
}

static void fmt_free(long long bytes, char *buf, size_t cap)
{
    if (bytes < 0)
        snprintf(buf, cap, "free space unknown");
    else
        snprintf(buf, cap, "%.1f GiB free", bytes / (1024.0 * 1024 * 1024));
}

/* transport_dir_check's verdict as an item: missing is fine when the worker
 * can create the directory itself (transport_mkdir_p, 0755, the node user's),
 * a failure when it cannot. */
static void check_dir(node_check_report *r, vcl_transport *tr, const char *what, const char *dir)
{
    char name[24], fix[512], free_s[48];
    snprintf(name, sizeof name, "%s dir", what);
    node_check_item *it = item(r, name);
    if (!tr) {
        say(it, false, NULL, "%s: not checked: needs the transport (above)", dir);
        return;
    }
    transport_dir_verdict v;
    vcl_error e;
    vcl_error_clear(&e);
    if (!transport_dir_check(tr, dir, &v, &e)) {
        say(it, false, NULL, "%s: %s", dir, e.msg);
        return;
    }
    fmt_free(v.free_bytes, free_s, sizeof free_s);
    if (!v.safe || v.problem[0]) {
        say(it, false, v.fix[0] ? v.fix : NULL, "%s: %s", dir,
            v.problem[0] ? v.problem : "unsafe");
    } else if (v.exists && !v.is_dir) {
        snprintf(fix, sizeof fix, "move it away, then: mkdir -p -m 0755 %s", dir);
        say(it, false, fix, "%s is not a directory", dir);
    } else if (!v.writable) {
        snprintf(fix, sizeof fix, "chown NODE_USER %s (the user the worker runs as on the node)",
                 v.exists ? dir : "its nearest existing parent");
        say(it, false, fix, "%s %s not writable by the node user", dir,
            v.exists ? "is" : "does not exist and its parent is");
    } else if (!v.exists) {
        say(it, true, NULL, "%s does not exist yet: the worker creates it (0755) at the first "
            "load; %s", dir, free_s);
    } else {
        say(it, true, NULL, "%s (mode %04o, owner uid %u, %s)", dir, v.mode & 07777, v.uid, free_s);
    }
}

void node_check_disk_dirs(const char *master_dir, const char *cow_dir, node_check_item *it)
{
    char fix[512];
    if (!master_dir || !cow_dir) {
        say(it, false, NULL, "master or COW directory not set");
    } else if (names_same_dir(master_dir, cow_dir)) {
        int ml = (int)strlen(master_dir);
        while (ml > 0 && master_dir[ml - 1] == '/')
            ml--;
        snprintf(fix, sizeof fix, "give COW disks a directory of their own: vclctl node set NODE "
                 "--cow-dir %.*s/vcl-cow (then reload the node's computers)",
                 ml > 200 ? 200 : ml, master_dir);
        say(it, false, fix, "the COW directory %.300s is the master image directory: a file stem "
            "could name another computer's COW disk, and the stale-temp cleanup of one could "
            "meet the other's files", cow_dir);
    } else if (names_dir_inside(cow_dir, master_dir) || names_dir_inside(master_dir, cow_dir)) {
        say(it, true, NULL, "COW disks in %.300s, masters in %.300s: one inside the other, "
            "apart by name (no file name holds a '/')", cow_dir, master_dir);
    } else {
        say(it, true, NULL, "COW disks in %.300s, masters in %.300s: apart", cow_dir, master_dir);
    }
}

static void check_cpu(const node_check_target *t, node_check_report *r, virConnectPtr conn,
                      const vcl_driver_ops *drv)
{
    node_check_item *it = item(r, "cpu");
    cpu_mode forced;
    vcl_error e;
    vcl_error_clear(&e);
    if (!cpu_mode_parse(t->cpu_mode, &forced, &e)) {
        say(it, false, "vclctl node set NODE --cpu-mode auto", "%s", e.msg);
        return;
    }
    if (!conn || !drv) {
        say(it, false, NULL, "not checked: needs libvirt and a driver (above)");
        return;
    }
    const char *type = drv->domain_type ? drv->domain_type(0) : "qemu";
    cpu_probe_try ft = { .ok = false };
    cpu_probe_target pt = { .conn = conn, .node = t->name, .domain_type = type, .emulator = t->emulator };
    if (forced.kind != CPU_MODE_AUTO && !cpu_probe_one(&pt, &forced, &ft, &e)) {
        say(it, false, NULL, "the probe could not run: %s", e.msg);
        return;
    }
    if (!cpu_probe_auto(&pt, true, &r->cpu, &e)) {
        say(it, false, NULL, "the probe could not run: %s", e.msg);
        return;
    }
    r->cpu_probed = true;
    char report[1024], fix[512];
    cpu_probe_report(&r->cpu, report, sizeof report);
    if (forced.kind != CPU_MODE_AUTO) {
        if (ft.ok) {
            snprintf(r->cpu_use, sizeof r->cpu_use, "%s", ft.mode);
            say(it, true, NULL, "%s (forced) starts a guest in %d ms; auto would try: %s", ft.mode,
                ft.ms, report);
        } else {
            snprintf(fix, sizeof fix, "vclctl node set %s --cpu-mode %s", t->name,
                     r->cpu.chosen[0] ? "auto" : "custom:qemu64");
            say(it, false, fix, "%s (forced) does not start a guest: %s; auto would try: %s",
                ft.mode, ft.why, report);
        }
    } else if (r->cpu.chosen[0]) {
        snprintf(r->cpu_use, sizeof r->cpu_use, "%s", r->cpu.chosen);
        say(it, true, NULL, "auto resolves to %s: %s", r->cpu.chosen, report);
    } else {
        say(it, false,
            "look at the libvirt and QEMU logs on the node (/var/log/libvirt/qemu/); "
            "try a named model: vclctl node set NODE --cpu-mode custom:MODEL",
            "no CPU mode starts a guest: %s", report);
    }
}

void node_check_run(const node_check_target *t, node_check_report *r)
{
    virConnectPtr conn = NULL;
    vcl_transport *tr = NULL;
    memset(r, 0, sizeof *r);

    check_libvirt(t, r, &conn);
    check_transport(t, r, &tr);
    hv_node_handle nh = { .t = tr, .conn = conn };
    vcl_driver_node dn = { .name = t->name, .libvirt_uri = t->libvirt_uri,
                           .transport = t->transport, .handle = &nh };
    const vcl_driver_ops *drv = check_driver(t, r, &nh, &dn);
    check_hypervisor(t, r, conn, drv);
    check_qemu_img(r, tr);
    check_dir(r, tr, "master", t->master_dir);
    check_dir(r, tr, "cow", t->cow_dir);
    check_dir(r, tr, "xml", t->xml_dir);
    node_check_disk_dirs(t->master_dir, t->cow_dir, item(r, "disk dirs"));
    check_cpu(t, r, conn, drv);

    for (int i = 0; i < r->n; i++)
        r->failed += !r->items[i].ok;
    transport_free(tr);
    virt_close(conn);
}

/* Append "sep + s" to *buf at *off (capacity cap), control characters as
 * spaces: a \x1f in the node's text would shift every later column. */
static void col_append(char *buf, size_t cap, size_t *off, bool sep, const char *s)
{
    if (sep && *off + 1 < cap)
        buf[(*off)++] = '\x1f';
    for (; *s && *off + 1 < cap; s++)
        buf[(*off)++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? ' ' : *s;
    buf[*off] = '\0';
}

bool node_check_columns(const node_check_report *r, char *cols[4])
{
    size_t cap = 1;
    for (int i = 0; i < r->n; i++)
        cap += strlen(r->items[i].item) + strlen(r->items[i].detail) + strlen(r->items[i].fix) + 8;
    size_t off[4] = { 0 };
    bool ok = true;
    for (int k = 0; k < 4; k++)
        ok &= (cols[k] = calloc(1, cap)) != NULL;
    if (!ok) {
        node_check_columns_free(cols);
        return false;
    }
    for (int i = 0; i < r->n; i++) {
        const node_check_item *it = &r->items[i];
        const char *v[4] = { it->item, it->ok ? "t" : "f", it->detail, it->fix };
        for (int k = 0; k < 4; k++)
            col_append(cols[k], cap, &off[k], i > 0, v[k]);
    }
    return true;
}

void node_check_columns_free(char *cols[4])
{
    for (int k = 0; k < 4; k++) {
        free(cols[k]);
        cols[k] = NULL;
    }
}

void node_check_summary(const node_check_report *r, char *buf, size_t cap)
{
    size_t off = 0;
    if (!r->failed) {
        snprintf(buf, cap, "all %d checks passed; loads use CPU mode %s", r->n,
                 r->cpu_use[0] ? r->cpu_use : "(none)");
        return;
    }
    off = (size_t)snprintf(buf, cap, "%d of %d checks failed:", r->failed, r->n);
    for (int i = 0; i < r->n && off < cap; i++) {
        const node_check_item *it = &r->items[i];
        if (it->ok)
            continue;
        off += (size_t)snprintf(buf + off, cap - off, " %s: %s%s%s%s;", it->item, it->detail,
                                it->fix[0] ? " (fix: " : "", it->fix, it->fix[0] ? ")" : "");
    }
    if (off < cap && off > 0 && buf[off - 1] == ';')
        buf[off - 1] = '\0';
}
