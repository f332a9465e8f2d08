/* load_floor: the floor of one load, for tests/bench/load. It does only what
 * a load must do, straight through the libvirt C API, with the very domain
 * XML vcl-worker generated (same devices, serial log, NIC, VNC, CPU):
 *
 *   qemu-img create -f qcow2 -b MASTER -F qcow2 OVERLAY   (fork/exec)
 *   virDomainDefineXML(xml)                               (persistent)
 *   virDomainCreate(domain)
 *
 * The XML is the worker's with what must differ for a second domain made
 * different: the name, no UUID and no MAC (libvirt makes them), the disk's
 * source = OVERLAY, file paths (serial/console logs) moved into the overlay's
 * directory as floor-NAME-<base name>, and the worker's <metadata> removed.
 *
 *   load_floor URI XMLFILE MASTER OVERLAY NAME     prints "create_ms define_ms start_ms total_ms"
 *   load_floor --remove URI NAME                  destroy + undefine (not timed)
 *
 * A benchmark tool: exit 1 with a message on any failure. */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void die(const char *what)
{
    const char *m = virGetLastErrorMessage();
    fprintf(stderr, "load_floor: %s%s%s\n", what, m ? ": " : "", m ? m : "");
    exit(1);
}

/* Every node matching expr, for fn(node, arg). */
static void each(xmlXPathContextPtr ctx, const char *expr, void (*fn)(xmlNodePtr, const char *),
                 const char *arg)
{
    xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST expr, ctx);
    if (o && o->nodesetval)
        for (int i = 0; i < o->nodesetval->nodeNr; i++)
            fn(o->nodesetval->nodeTab[i], arg);
    xmlXPathFreeObject(o);
}

static void drop(xmlNodePtr n, const char *arg)
{
    (void)arg;
    xmlUnlinkNode(n);
    xmlFreeNode(n);
}

static void set_text(xmlNodePtr n, const char *v)
{
    xmlNodeSetContent(n, BAD_CAST v);
}

static void set_attr_path(xmlNodePtr n, const char *v)
{
    xmlSetProp(n->parent, n->name, BAD_CAST v);
}

/* A file path attribute (serial log, console source): the same base name in
 * the overlay's directory, prefixed "floor-". */
static const char *g_dir, *g_name;
static void move_path(xmlNodePtr n, const char *arg)
{
    (void)arg;
    xmlChar *v = xmlNodeGetContent(n);
    if (!v)
        return;
    char *copy = strdup((const char *)v), path[4096];
    snprintf(path, sizeof path, "%s/floor-%s-%s", g_dir, g_name, basename(copy));
    xmlSetProp(n->parent, n->name, BAD_CAST path);
    free(copy);
    xmlFree(v);
}

static char *floor_xml(const char *file, const char *overlay, const char *name)
{
    xmlDocPtr doc = xmlReadFile(file, NULL, XML_PARSE_NONET);
    if (!doc)
        die("cannot read the domain XML");
    xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    char *dircopy = strdup(overlay);
    g_dir = dirname(dircopy);
    g_name = name;
    each(ctx, "/domain/name", set_text, name);
    each(ctx, "/domain/uuid", drop, NULL);
    each(ctx, "/domain/metadata", drop, NULL);
    each(ctx, "/domain/devices/interface/mac", drop, NULL);
    each(ctx, "/domain/devices/disk[@device='disk']/source/@file", set_attr_path, overlay);
    each(ctx, "/domain/devices/serial/log/@file | /domain/devices/console/log/@file"
              " | /domain/devices/serial/source/@path | /domain/devices/console/source/@path",
         move_path, NULL);
    xmlChar *out = NULL;
    int len = 0;
    xmlDocDumpMemory(doc, &out, &len);
    char *s = out ? strdup((const char *)out) : NULL;
    xmlFree(out);
    xmlXPathFreeContext(ctx);
    xmlFreeDoc(doc);
    free(dircopy);
    return s;
}

static void qemu_img_create(const char *master, const char *overlay)
{
    pid_t pid = fork();
    if (pid == 0) {
        execlp("qemu-img", "qemu-img", "create", "-q", "-f", "qcow2", "-b", master, "-F", "qcow2",
               overlay, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "load_floor: qemu-img create %s failed\n", overlay);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--remove") == 0) {
        virConnectPtr c = virConnectOpen(argv[2]);
        if (!c)
            die("connect");
        virDomainPtr d = virDomainLookupByName(c, argv[3]);
        if (d) {
            virDomainDestroy(d);
            virDomainUndefineFlags(d, VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                                          VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                                          VIR_DOMAIN_UNDEFINE_NVRAM);
            virDomainFree(d);
        }
        virConnectClose(c);
        return 0;
    }
    if (argc != 6) {
        fprintf(stderr, "usage: load_floor URI XMLFILE MASTER OVERLAY NAME\n"
                        "       load_floor --remove URI NAME\n");
        return 2;
    }
    const char *uri = argv[1], *xmlfile = argv[2], *master = argv[3], *overlay = argv[4],
               *name = argv[5];
    char *xml = floor_xml(xmlfile, overlay, name);
    if (!xml)
        die("cannot rewrite the domain XML");
    virConnectPtr c = virConnectOpen(uri);
    if (!c)
        die("connect");
    double t0 = now_ms();
    qemu_img_create(master, overlay);
    double t1 = now_ms();
    virDomainPtr d = virDomainDefineXML(c, xml);
    if (!d)
        die("define");
    double t2 = now_ms();
    if (virDomainCreate(d) < 0)
        die("start");
    double t3 = now_ms();
    printf("%.1f %.1f %.1f %.1f\n", t1 - t0, t2 - t1, t3 - t2, t3 - t0);
    virDomainFree(d);
    virConnectClose(c);
    free(xml);
    return 0;
}
