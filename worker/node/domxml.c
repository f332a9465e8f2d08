/* domxml.c: the domain XML, built and read with libxml2's tree API; see domxml.h.
 *
 * Building: every element and attribute goes through xmlNewTextChild /
 * xmlNewProp, so libxml2 escapes the values ('<', '&', quotes) when it
 * serialises; nothing is ever pasted into markup. Strings in the spec must
 * still be valid UTF-8 without control characters: those cannot be expressed
 * in XML 1.0 at all, so they are refused up front rather than producing a
 * document libvirt would reject.
 *
 * Reading: documents come from libvirt (or a file on the node), are parsed
 * with XML_PARSE_NONET and without entity substitution, and the ownership
 * element is matched by namespace URI, not by prefix (libvirt re-serialises
 * metadata with whatever prefix it was defined with). */
#include "node/domxml.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>

#include "base/names.h"
#include "base/util.h"

#define PARSE_OPTS (XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_parser(void)
{
    xmlInitParser();
}

/* xmlInitParser is idempotent but its first call is not thread-safe in every
 * libxml2 version: run it exactly once. Never xmlCleanupParser here: the
 * process (and libvirt, which also uses libxml2) owns that. */
static void domxml_init(void)
{
    pthread_once(&init_once, init_parser);
}

bool domxml_topology(unsigned vcpus, unsigned *sockets, unsigned *cores, unsigned *threads)
{
    unsigned c;

    if (vcpus == 0 || !sockets || !cores || !threads)
        return false;
    /* The largest divisor of vcpus that is <= 16 gives the fewest sockets with
     * threads = 1. A prime above 16 has only 1 as such a divisor, so it becomes
     * vcpus sockets of one core each: odd-looking but valid, and guests cope. */
    for (c = vcpus < 16 ? vcpus : 16; c > 1; c--)
        if (vcpus % c == 0)
            break;
    *cores = c;
    *sockets = vcpus / c;
    *threads = 1;
    return true;
}

/* ---- spec validation ---- */

/* Every character an XML 1.0 Char (#x9 | #xA | #xD | [#x20-#xD7FF] |
 * [#xE000-#xFFFD] | [#x10000-#x10FFFF]) in well-formed UTF-8: no overlong
 * forms, surrogates, code points above U+10FFFF, U+FFFE or U+FFFF, which
 * neither libxml2 nor libvirt reads back (xmlCheckUTF8 let all of these
 * through). Stricter than XML on one point: no C0 control at all (tab,
 * newline and CR included) and no DEL, since none of these fields has a use
 * for them and attribute values would not survive normalisation. */
static bool xml_safe(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = util_utf8_len(p);
        if (n == 0 || *p < 0x20 || *p == 0x7f)
            return false;
        /* U+FFFE, U+FFFF: EF BF BE, EF BF BF */
        if (n == 3 && p[0] == 0xef && p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf))
            return false;
        p += n;
    }
    return true;
}

static bool check_str(const char *field, const char *v, bool required, vcl_error *e)
{
    if (!v || !*v) {
        if (!required && !v)
            return true;
        return vcl_error_set(e, VCL_ERR_PERMANENT, "domain XML: spec field '%s' is %s", field,
                             v ? "empty" : "missing");
    }
    if (strlen(v) >= PATH_MAX)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "domain XML: spec field '%s' is too long (%zu bytes)",
                             field, strlen(v));
    if (!xml_safe(v))
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "domain XML: spec field '%s' is not valid UTF-8 or contains a control character",
                             field);
    return true;
}

static bool uuid_valid(const char *u)
{
    if (strlen(u) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        unsigned char c = (unsigned char)u[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return true;
}

/* An absolute path of printable characters, no "..". */
static bool emulator_ok(const char *p)
{
    if (p[0] != '/' || strlen(p) >= PATH_MAX || strstr(p, "/../") ||
        (strlen(p) >= 3 && strcmp(p + strlen(p) - 3, "/..") == 0))
        return false;
    for (const unsigned char *c = (const unsigned char *)p; *c; c++)
        if (*c < 0x20 || *c == 0x7f)
            return false;
    return true;
}

static bool spec_check(const domxml_spec *s, vcl_error *e)
{
    if (!s)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "domain XML: no spec given");
    if (!check_str("name", s->name, true, e) || !check_str("uuid", s->uuid, true, e) ||
        !check_str("domain_type", s->domain_type, true, e) ||
        !check_str("disk_path", s->disk_path, true, e) ||
        !check_str("disk_driver", s->disk_driver, true, e) ||
        !check_str("disk_format", s->disk_format, true, e) ||
        !check_str("backing_path", s->backing_path, false, e) ||
        !check_str("backing_format", s->backing_format, s->backing_path != NULL, e) ||
        !check_str("mac0", s->mac0, true, e) || !check_str("network", s->network, false, e) ||
        !check_str("serial_log", s->serial_log, false, e) ||
        !check_str("computer", s->computer, true, e) || !check_str("file_stem", s->file_stem, true, e))
        return false;
    if (!s->cpu || s->cpu->kind == CPU_MODE_AUTO || s->cpu->kind >= CPU_MODE__COUNT)
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "domain XML for '%.128s': no concrete CPU mode (auto is resolved first)",
                             s->name);
    if (s->emulator && !check_str("emulator", s->emulator, true, e))
        return false;
    if (s->emulator && !emulator_ok(s->emulator))
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "domain XML for '%.128s': emulator '%.128s' is not an absolute path",
                             s->name, s->emulator);
    if (!uuid_valid(s->uuid))
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "domain XML for '%.128s': uuid '%.64s' is not in the form "
                             "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (hex digits)",
                             s->name, s->uuid);
    if (strcmp(s->domain_type, "kvm") != 0 && strcmp(s->domain_type, "qemu") != 0)
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "domain XML for '%.128s': domain type '%.32s' is not supported (use 'kvm' or 'qemu')",
                             s->name, s->domain_type);
    if (s->memory_mb < 16)
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "domain XML for '%.128s': memory %u MiB is too small (at least 16)", s->name,
                             s->memory_mb);
    if (s->vcpus < 1 || s->vcpus > 1024)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "domain XML for '%.128s': vcpus %u out of range 1..1024",
                             s->name, s->vcpus);
    if (!mac_check(s->mac0, e))
        return vcl_error_prefix(e, "domain XML for '%.128s'", s->name);
    if (s->reservation_id < 0 || s->image_revision_id < 0)
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "domain XML for '%.128s': reservation id %lld / image revision id %lld must not be negative",
                             s->name, s->reservation_id, s->image_revision_id);
    return true;
}

/* ---- tree building; each helper is a no-op once *ok is false (out of memory) ---- */

static xmlNodePtr el(xmlNodePtr parent, const char *name, const char *text, bool *ok)
{
    xmlNodePtr n;

    if (!*ok)
        return NULL;
    /* xmlNewTextChild escapes text; xmlNewChild would parse it for entities. */
    n = text ? xmlNewTextChild(parent, NULL, BAD_CAST name, BAD_CAST text)
             : xmlNewChild(parent, NULL, BAD_CAST name, NULL);
    if (!n)
        *ok = false;
    return n;
}

static void attr(xmlNodePtr n, const char *name, const char *value, bool *ok)
{
    if (!*ok)
        return;
    /* xmlNewProp stores the value as text (escaped on output), unlike xmlNewDocProp. */
    if (!xmlNewProp(n, BAD_CAST name, BAD_CAST value))
        *ok = false;
}

static void attr_num(xmlNodePtr n, const char *name, long long v, bool *ok)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    attr(n, name, buf, ok);
}

static xmlNodePtr el_num(xmlNodePtr parent, const char *name, long long v, bool *ok)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    return el(parent, name, buf, ok);
}

static void build_cpu(xmlNodePtr root, const domxml_spec *s, bool *ok)
{
    unsigned sockets = 0, cores = 0, threads = 0;
    xmlNodePtr cpu = el(root, "cpu", NULL, ok), n;

    cpu_mode_fill_xml(cpu, s->cpu, ok);
    if (s->vcpus == 0)
        return;   /* the CPU probe's domain: no topology */
    domxml_topology(s->vcpus, &sockets, &cores, &threads);
    n = el(cpu, "topology", NULL, ok);
    attr_num(n, "sockets", sockets, ok);
    attr_num(n, "cores", cores, ok);
    attr_num(n, "threads", threads, ok);
}

static void build_devices(xmlNodePtr root, const domxml_spec *s, bool *ok)
{
    xmlNodePtr dev = el(root, "devices", NULL, ok), disk, n, bs, iface, serial, g;

    /* No <emulator> unless configured: libvirt picks the right binary for
     * the domain type. */
    if (s->emulator)
        el(dev, "emulator", s->emulator, ok);
    disk = el(dev, "disk", NULL, ok);
    attr(disk, "type", "file", ok);
    attr(disk, "device", "disk", ok);
    n = el(disk, "driver", NULL, ok);
    attr(n, "name", s->disk_driver, ok);
    attr(n, "type", s->disk_format, ok);
    attr(n, "discard", "unmap", ok);
    n = el(disk, "source", NULL, ok);
    attr(n, "file", s->disk_path, ok);
    if (s->backing_path) {
        /* The format must be explicit: without it libvirt records the base as raw. */
        bs = el(disk, "backingStore", NULL, ok);
        attr(bs, "type", "file", ok);
        n = el(bs, "format", NULL, ok);
        attr(n, "type", s->backing_format, ok);
        n = el(bs, "source", NULL, ok);
        attr(n, "file", s->backing_path, ok);
        el(bs, "backingStore", NULL, ok); /* end of chain */
    }
    n = el(disk, "target", NULL, ok);
    attr(n, "dev", "vda", ok);
    attr(n, "bus", "virtio", ok);

    iface = el(dev, "interface", NULL, ok);
    if (s->network) {
        attr(iface, "type", "network", ok);
        n = el(iface, "source", NULL, ok);
        attr(n, "network", s->network, ok);
    } else {
        attr(iface, "type", "user", ok);
    }
    n = el(iface, "mac", NULL, ok);
    attr(n, "address", s->mac0, ok);
    n = el(iface, "model", NULL, ok);
    attr(n, "type", "virtio", ok);

    serial = el(dev, "serial", NULL, ok);
    attr(serial, "type", "pty", ok);
    if (s->serial_log) {
        n = el(serial, "log", NULL, ok);
        attr(n, "file", s->serial_log, ok);
        attr(n, "append", "off", ok);
    }
    n = el(serial, "target", NULL, ok);
    attr(n, "port", "0", ok);

    n = el(dev, "console", NULL, ok);
    attr(n, "type", "pty", ok);
    n = el(n, "target", NULL, ok);
    attr(n, "type", "serial", ok);
    attr(n, "port", "0", ok);

    g = el(dev, "graphics", NULL, ok);
    attr(g, "type", "vnc", ok);
    attr(g, "autoport", "yes", ok);
    attr(g, "listen", "127.0.0.1", ok);
    n = el(g, "listen", NULL, ok);
    attr(n, "type", "address", ok);
    attr(n, "address", "127.0.0.1", ok);

    n = el(dev, "memballoon", NULL, ok);
    attr(n, "model", "virtio", ok);
}

xmlDocPtr domxml_build(const domxml_spec *spec, vcl_error *e)
{
    xmlDocPtr doc = NULL;
    xmlNodePtr root = NULL, n, owner;
    xmlNsPtr ns;
    bool ok = true;

    domxml_init();
    if (!spec_check(spec, e))
        goto cleanup;

    doc = xmlNewDoc(BAD_CAST "1.0");
    root = doc ? xmlNewNode(NULL, BAD_CAST "domain") : NULL;
    if (!root) {
        ok = false;
        goto cleanup;
    }
    xmlDocSetRootElement(doc, root);
    attr(root, "type", spec->domain_type, &ok);
    el(root, "name", spec->name, &ok);
    el(root, "uuid", spec->uuid, &ok);

    n = el(root, "metadata", NULL, &ok);
    owner = el(n, "owner", NULL, &ok);
    if (ok) {
        ns = xmlNewNs(owner, BAD_CAST VCL_XML_NS, BAD_CAST VCL_XML_PREFIX);
        if (ns)
            xmlSetNs(owner, ns);
        else
            ok = false;
    }
    attr(owner, "computer", spec->computer, &ok);
    attr_num(owner, "reservation", spec->reservation_id, &ok);
    attr_num(owner, "image-revision", spec->image_revision_id, &ok);
    attr(owner, "file-stem", spec->file_stem, &ok);

    n = el_num(root, "memory", spec->memory_mb, &ok);
    attr(n, "unit", "MiB", &ok);
    n = el_num(root, "currentMemory", spec->memory_mb, &ok);
    attr(n, "unit", "MiB", &ok);
    n = el_num(root, "vcpu", spec->vcpus, &ok);
    attr(n, "placement", "static", &ok);

    n = el(root, "os", NULL, &ok);
    {
        xmlNodePtr t = el(n, "type", "hvm", &ok);
        attr(t, "arch", "x86_64", &ok);
        attr(t, "machine", "pc", &ok);
        t = el(n, "boot", NULL, &ok);
        attr(t, "dev", "hd", &ok);
    }
    n = el(root, "features", NULL, &ok);
    el(n, "acpi", NULL, &ok);
    el(n, "apic", NULL, &ok);

    build_cpu(root, spec, &ok);

    n = el(root, "clock", NULL, &ok);
    attr(n, "offset", "utc", &ok);
    el(root, "on_poweroff", "destroy", &ok);
    el(root, "on_reboot", "restart", &ok);
    el(root, "on_crash", "destroy", &ok);

    build_devices(root, spec, &ok);

cleanup:
    if (!ok)
        vcl_error_set(e, VCL_ERR_RETRYABLE, "domain XML for '%.128s': out of memory building the document",
                      spec->name);
    if (!ok || !root) {
        xmlFreeDoc(doc);
        doc = NULL;
    }
    return doc;
}

xmlDocPtr domxml_build_probe(const char *name, const char *uuid, const char *domain_type,
                             const cpu_mode *cpu, const char *emulator, vcl_error *e)
{
    xmlDocPtr doc = NULL;
    xmlNodePtr root = NULL, n;
    bool ok = true;
    /* the same checks as a real domain's, on the fields a probe has */
    domxml_spec s = { .name = name, .uuid = uuid, .domain_type = domain_type, .memory_mb = 32,
                      .vcpus = 1, .disk_path = "/", .disk_driver = "qemu", .disk_format = "raw",
                      .mac0 = "52:54:00:00:00:01", .cpu = cpu, .emulator = emulator,
                      .computer = "probe", .file_stem = "probe" };

    domxml_init();
    if (!spec_check(&s, e))
        return NULL;
    doc = xmlNewDoc(BAD_CAST "1.0");
    root = doc ? xmlNewNode(NULL, BAD_CAST "domain") : NULL;
    if (!root) {
        ok = false;
        goto cleanup;
    }
    xmlDocSetRootElement(doc, root);
    attr(root, "type", domain_type, &ok);
    el(root, "name", name, &ok);
    el(root, "uuid", uuid, &ok);
    n = el_num(root, "memory", s.memory_mb, &ok);
    attr(n, "unit", "MiB", &ok);
    el_num(root, "vcpu", 1, &ok);
    n = el(root, "os", NULL, &ok);
    n = el(n, "type", "hvm", &ok);
    attr(n, "arch", "x86_64", &ok);
    attr(n, "machine", "pc", &ok);
    s.vcpus = 0;   /* no <topology> */
    build_cpu(root, &s, &ok);
    el(root, "on_poweroff", "destroy", &ok);
    el(root, "on_reboot", "destroy", &ok);
    el(root, "on_crash", "destroy", &ok);
    n = el(root, "devices", NULL, &ok);
    if (emulator)
        el(n, "emulator", emulator, &ok);
    /* no default USB controller, no memballoon: nothing QEMU must set up */
    n = el(n, "memballoon", NULL, &ok);
    attr(n, "model", "none", &ok);

cleanup:
    if (!ok) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "probe domain XML '%.128s': out of memory", name);
        xmlFreeDoc(doc);
        doc = NULL;
    }
    return doc;
}

char *domxml_to_string(xmlDocPtr doc)
{
    xmlChar *buf = NULL;
    int size = 0;
    char *out = NULL;

    if (!doc)
        return NULL;
    domxml_init();
    xmlDocDumpFormatMemoryEnc(doc, &buf, &size, "UTF-8", 1);
    if (!buf || size < 0)
        goto cleanup;
    /* Copy so the caller frees with free() whatever allocator libxml2 uses. */
    out = malloc((size_t)size + 1);
    if (!out)
        goto cleanup;
    memcpy(out, buf, (size_t)size);
    out[size] = '\0';

cleanup:
    xmlFree(buf);
    return out;
}

/* ---- reading ---- */

static xmlDocPtr parse(const char *xml)
{
    size_t len;

    if (!xml)
        return NULL;
    domxml_init();
    len = strlen(xml);
    if (len == 0 || len > INT_MAX)
        return NULL;
    /* No XML_PARSE_NOENT (no entity substitution) and NONET: an untrusted
     * document cannot pull in files or URLs. */
    return xmlReadMemory(xml, (int)len, "domain.xml", NULL, PARSE_OPTS);
}

static bool is_el(xmlNodePtr n, const char *name)
{
    return n && n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST name);
}

/* First element child of parent named name and in no namespace. */
static xmlNodePtr child(xmlNodePtr parent, const char *name)
{
    for (xmlNodePtr c = parent ? parent->children : NULL; c; c = c->next)
        if (is_el(c, name) && !c->ns)
            return c;
    return NULL;
}

/* The <domain> root, or NULL. */
static xmlNodePtr domain_root(xmlDocPtr doc)
{
    xmlNodePtr r = doc ? xmlDocGetRootElement(doc) : NULL;
    return (is_el(r, "domain") && !r->ns) ? r : NULL;
}

static bool copy_attr(xmlNodePtr n, const char *name, char *dst, size_t size)
{
    xmlChar *v = xmlGetNoNsProp(n, BAD_CAST name);
    bool ok = false;
    size_t len;

    if (!v)
        goto cleanup;
    len = strlen((const char *)v);
    if (len == 0 || len >= size)
        goto cleanup;
    memcpy(dst, v, len + 1);
    ok = true;

cleanup:
    xmlFree(v);
    return ok;
}

static bool num_attr(xmlNodePtr n, const char *name, long long *dst)
{
    xmlChar *v = xmlGetNoNsProp(n, BAD_CAST name);
    bool ok = false;
    char *end = NULL;
    long long x;

    if (!v || !*v)
        goto cleanup;
    errno = 0;
    x = strtoll((const char *)v, &end, 10);
    if (errno != 0 || *end != '\0' || x < 0 || !((v[0] >= '0' && v[0] <= '9')))
        goto cleanup;
    *dst = x;
    ok = true;

cleanup:
    xmlFree(v);
    return ok;
}

static bool is_owner(xmlNodePtr n)
{
    return is_el(n, "owner") && n->ns && xmlStrEqual(n->ns->href, BAD_CAST VCL_XML_NS);
}

/* The owner element of a domain document (full: true) or the element
 * itself (as from virDomainGetMetadata) into out. */
static bool read_owner(const char *xml, bool full, domxml_owner *out)
{
    xmlDocPtr doc = NULL;
    xmlNodePtr meta, owner = NULL;
    bool ok = false;

    if (!out)
        return false;
    memset(out, 0, sizeof *out);
    doc = parse(xml);
    if (full) {
        meta = child(domain_root(doc), "metadata");
        for (xmlNodePtr c = meta ? meta->children : NULL; c && !owner; c = c->next)
            if (is_owner(c))
                owner = c;
    } else if (doc) {
        /* virDomainGetMetadata(VIR_DOMAIN_METADATA_ELEMENT, VCL_XML_NS) finds
         * the element by our namespace and returns it with the namespace
         * taken off (libvirt 9.0: "<owner computer=...>"): an owner element
         * of no namespace is that one; of another namespace, never ours */
        xmlNodePtr root = xmlDocGetRootElement(doc);
        if (is_owner(root) || (is_el(root, "owner") && !root->ns))
            owner = root;
    }
    if (!owner)
        goto cleanup;
    if (!copy_attr(owner, "computer", out->computer, sizeof out->computer) ||
        !num_attr(owner, "reservation", &out->reservation_id) ||
        !num_attr(owner, "image-revision", &out->image_revision_id) ||
        !copy_attr(owner, "file-stem", out->file_stem, sizeof out->file_stem))
        goto cleanup;
    ok = true;

cleanup:
    if (!ok)
        memset(out, 0, sizeof *out);
    xmlFreeDoc(doc);
    return ok;
}

bool domxml_read_owner(const char *xml, domxml_owner *out)
{
    return read_owner(xml, true, out);
}

bool domxml_read_owner_element(const char *xml, domxml_owner *out)
{
    return read_owner(xml, false, out);
}

bool domxml_disk_files(const char *xml, char ***paths, size_t *n)
{
    xmlDocPtr doc = NULL;
    xmlNodePtr devices;
    char **v = NULL;
    size_t count = 0, cap = 0;
    bool ok = false;

    if (!paths || !n)
        return false;
    *paths = NULL;
    *n = 0;
    doc = parse(xml);
    if (!domain_root(doc))
        goto cleanup;
    devices = child(domain_root(doc), "devices");
    /* /domain/devices/disk[@type='file']/source/@file: only direct <source>
     * children of <disk>, never those inside <backingStore>. */
    for (xmlNodePtr d = devices ? devices->children : NULL; d; d = d->next) {
        xmlChar *type, *file;
        xmlNodePtr src;

        if (!is_el(d, "disk") || d->ns)
            continue;
        type = xmlGetNoNsProp(d, BAD_CAST "type");
        bool is_file = type && xmlStrEqual(type, BAD_CAST "file");
        xmlFree(type);
        if (!is_file || !(src = child(d, "source")))
            continue;
        file = xmlGetNoNsProp(src, BAD_CAST "file");
        if (!file)
            continue; /* e.g. an empty CD-ROM drive */
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            char **nv = realloc(v, ncap * sizeof *nv);
            if (!nv) {
                xmlFree(file);
                goto cleanup;
            }
            v = nv;
            cap = ncap;
        }
        v[count] = strdup((const char *)file);
        xmlFree(file);
        if (!v[count])
            goto cleanup;
        count++;
    }
    ok = true;

cleanup:
    xmlFreeDoc(doc);
    if (!ok) {
        util_strv_free(v, count);
        return false;
    }
    *paths = v;
    *n = count;
    return true;
}

