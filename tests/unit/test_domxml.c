/* test_domxml.c: the domain XML: build, serialise, parse back and check every
 * element by XPath; owner metadata; disk files; bad specs; escaping. */
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include "node/domxml.h"
#include "base/util.h"
#include "tap.h"

#define COW    "/var/lib/libvirt/images/vclv99-197_234-v3.qcow2"
#define MASTER "/var/lib/vcl/masters/win7-base-v3.qcow2"

static const cpu_mode CPU_PASSTHROUGH = { .kind = CPU_MODE_HOST_PASSTHROUGH };
static const cpu_mode CPU_HOST_MODEL = { .kind = CPU_MODE_HOST_MODEL };
static const cpu_mode CPU_QEMU64 = { .kind = CPU_MODE_CUSTOM, .model = "qemu64" };

static domxml_spec base_spec(void)
{
    domxml_spec s = {
        .name = "vclv99-197:win7-base-v3",
        .uuid = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        .domain_type = "kvm",
        .memory_mb = 2048,
        .vcpus = 4,
        .disk_path = COW,
        .disk_driver = "qemu",
        .disk_format = "qcow2",
        .backing_path = MASTER,
        .backing_format = "qcow2",
        .mac0 = "52:54:00:ab:cd:ef",
        .network = NULL,
        .serial_log = NULL,
        .computer = "vclv99-197",
        .reservation_id = 42,
        .image_revision_id = 234,
        .file_stem = "win7-base-v3",
        .cpu = &CPU_PASSTHROUGH,
    };
    return s;
}

/* Build, serialise, parse back with libxml2: the document as a reader sees it. */
static xmlDocPtr roundtrip(const domxml_spec *s, char **xml_out)
{
    vcl_error e;
    xmlDocPtr built, parsed = NULL;
    char *xml;

    vcl_error_clear(&e);
    built = domxml_build(s, &e);
    if (!built) {
        diag("domxml_build failed: %s", e.msg);
        return NULL;
    }
    xml = domxml_to_string(built);
    xmlFreeDoc(built);
    if (!xml)
        return NULL;
    parsed = xmlReadMemory(xml, (int)strlen(xml), "t.xml", NULL, XML_PARSE_NONET);
    if (xml_out)
        *xml_out = xml;
    else
        free(xml);
    return parsed;
}

/* XPath string value (static buffer; "" when absent). Prefix v: is VCL_XML_NS. */
static const char *xs(xmlDocPtr doc, const char *expr)
{
    static char buf[4096];
    xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    xmlXPathObjectPtr obj = NULL;
    xmlChar *v = NULL;

    buf[0] = '\0';
    if (!ctx)
        return buf;
    xmlXPathRegisterNs(ctx, BAD_CAST "v", BAD_CAST VCL_XML_NS);
    obj = xmlXPathEvalExpression(BAD_CAST expr, ctx);
    if (obj)
        v = xmlXPathCastToString(obj);
    if (v)
        snprintf(buf, sizeof buf, "%s", (const char *)v);
    xmlFree(v);
    xmlXPathFreeObject(obj);
    xmlXPathFreeContext(ctx);
    return buf;
}

static long long xn(xmlDocPtr doc, const char *expr)
{
    return strtoll(xs(doc, expr), NULL, 10);
}

static void test_full_kvm(void)
{
    domxml_spec s = base_spec();
    char *xml = NULL;
    xmlDocPtr d = roundtrip(&s, &xml);

    ok(d != NULL, "kvm spec builds, serialises and parses back");
    if (!d) {
        free(xml);
        return;
    }
    is_str(xs(d, "name(/*)"), "domain", "root is <domain>");
    is_str(xs(d, "/domain/@type"), "kvm", "domain type");
    is_str(xs(d, "/domain/name"), "vclv99-197:win7-base-v3", "name");
    is_str(xs(d, "/domain/uuid"), "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "uuid");
    is_str(xs(d, "/domain/memory"), "2048", "memory");
    is_str(xs(d, "/domain/memory/@unit"), "MiB", "memory unit");
    is_str(xs(d, "/domain/currentMemory"), "2048", "currentMemory");
    is_str(xs(d, "/domain/currentMemory/@unit"), "MiB", "currentMemory unit");
    is_str(xs(d, "/domain/vcpu"), "4", "vcpu");
    is_str(xs(d, "/domain/vcpu/@placement"), "static", "vcpu placement");
    is_str(xs(d, "/domain/os/type"), "hvm", "os type");
    is_str(xs(d, "/domain/os/type/@arch"), "x86_64", "os arch");
    is_str(xs(d, "/domain/os/type/@machine"), "pc", "os machine");
    is_str(xs(d, "/domain/os/boot/@dev"), "hd", "boot dev");
    is_int(xn(d, "count(/domain/features/acpi)"), 1, "acpi");
    is_int(xn(d, "count(/domain/features/apic)"), 1, "apic");
    is_str(xs(d, "/domain/cpu/@mode"), "host-passthrough", "kvm cpu mode");
    is_str(xs(d, "/domain/cpu/@check"), "none", "kvm cpu check");
    is_int(xn(d, "count(/domain/cpu/model)"), 0, "kvm: no cpu model");
    is_int(xn(d, "/domain/cpu/topology/@sockets * /domain/cpu/topology/@cores * /domain/cpu/topology/@threads"),
           4, "topology product == vcpus");
    is_str(xs(d, "/domain/clock/@offset"), "utc", "clock");
    is_str(xs(d, "/domain/on_poweroff"), "destroy", "on_poweroff");
    is_str(xs(d, "/domain/on_reboot"), "restart", "on_reboot");
    is_str(xs(d, "/domain/on_crash"), "destroy", "on_crash");

    /* metadata, by namespace URI */
    is_int(xn(d, "count(/domain/metadata/v:owner)"), 1, "one owner element in the VCL namespace");
    is_str(xs(d, "namespace-uri(/domain/metadata/*)"), VCL_XML_NS, "owner namespace URI");
    is_str(xs(d, "name(/domain/metadata/*)"), VCL_XML_PREFIX ":owner", "owner prefix");
    is_str(xs(d, "/domain/metadata/v:owner/@computer"), "vclv99-197", "owner computer");
    is_str(xs(d, "/domain/metadata/v:owner/@reservation"), "42", "owner reservation");
    is_str(xs(d, "/domain/metadata/v:owner/@image-revision"), "234", "owner image revision");
    is_str(xs(d, "/domain/metadata/v:owner/@file-stem"), "win7-base-v3", "owner file stem");

    /* devices */
    is_int(xn(d, "count(/domain/devices/emulator)"), 0, "no <emulator>");
    is_int(xn(d, "count(/domain/devices/disk)"), 1, "one disk");
    is_str(xs(d, "/domain/devices/disk/@type"), "file", "disk type");
    is_str(xs(d, "/domain/devices/disk/@device"), "disk", "disk device");
    is_str(xs(d, "/domain/devices/disk/driver/@name"), "qemu", "disk driver name");
    is_str(xs(d, "/domain/devices/disk/driver/@type"), "qcow2", "disk driver type");
    is_str(xs(d, "/domain/devices/disk/driver/@discard"), "unmap", "disk discard");
    is_int(xn(d, "count(/domain/devices/disk/driver/@cache)"), 0, "disk cache left default");
    is_str(xs(d, "/domain/devices/disk/source/@file"), COW, "disk source is the COW");
    is_str(xs(d, "/domain/devices/disk/backingStore/@type"), "file", "backingStore type");
    is_str(xs(d, "/domain/devices/disk/backingStore/format/@type"), "qcow2", "backingStore format");
    is_str(xs(d, "/domain/devices/disk/backingStore/source/@file"), MASTER, "backingStore source is the master");
    is_int(xn(d, "count(/domain/devices/disk/backingStore/backingStore)"), 1, "chain ends with <backingStore/>");
    is_int(xn(d, "count(/domain/devices/disk/backingStore/backingStore/node())"), 0, "end of chain is empty");
    is_str(xs(d, "/domain/devices/disk/target/@dev"), "vda", "disk target dev");
    is_str(xs(d, "/domain/devices/disk/target/@bus"), "virtio", "disk target bus");

    is_int(xn(d, "count(/domain/devices/interface)"), 1, "one interface");
    is_str(xs(d, "/domain/devices/interface/@type"), "user", "network NULL: user-mode interface");
    is_int(xn(d, "count(/domain/devices/interface/source)"), 0, "user interface has no source");
    is_str(xs(d, "/domain/devices/interface/mac/@address"), "52:54:00:ab:cd:ef", "mac");
    is_str(xs(d, "/domain/devices/interface/model/@type"), "virtio", "nic model");

    is_str(xs(d, "/domain/devices/serial/@type"), "pty", "serial type");
    is_str(xs(d, "/domain/devices/serial/target/@port"), "0", "serial port");
    is_int(xn(d, "count(/domain/devices/serial/log)"), 0, "no serial log unless asked");
    is_str(xs(d, "/domain/devices/console/@type"), "pty", "console type");
    is_str(xs(d, "/domain/devices/console/target/@type"), "serial", "console target type");
    is_str(xs(d, "/domain/devices/console/target/@port"), "0", "console target port");

    is_str(xs(d, "/domain/devices/graphics/@type"), "vnc", "graphics vnc");
    is_str(xs(d, "/domain/devices/graphics/@autoport"), "yes", "graphics autoport");
    is_str(xs(d, "/domain/devices/graphics/@listen"), "127.0.0.1", "graphics listen attribute");
    is_str(xs(d, "/domain/devices/graphics/listen/@type"), "address", "graphics listen type");
    is_str(xs(d, "/domain/devices/graphics/listen/@address"), "127.0.0.1", "graphics listen address");
    is_int(xn(d, "count(//graphics//@*[contains(., '0.0.0.0')])"), 0, "graphics never on all addresses");
    is_str(xs(d, "/domain/devices/memballoon/@model"), "virtio", "memballoon");

    ok(xml && strncmp(xml, "<?xml", 5) == 0, "serialised with an XML declaration");
    xmlFreeDoc(d);
    free(xml);
}

static void test_variants(void)
{
    domxml_spec s = base_spec();
    xmlDocPtr d;

    /* qemu (TCG) with custom:qemu64: check none, fallback allow. */
    s.domain_type = "qemu";
    s.cpu = &CPU_QEMU64;
    d = roundtrip(&s, NULL);
    ok(d != NULL, "qemu spec builds");
    is_str(xs(d, "/domain/@type"), "qemu", "qemu domain type");
    is_str(xs(d, "/domain/cpu/@mode"), "custom", "custom cpu mode");
    is_str(xs(d, "/domain/cpu/@match"), "exact", "custom cpu match");
    is_str(xs(d, "/domain/cpu/model"), "qemu64", "custom cpu model");
    is_str(xs(d, "/domain/cpu/model/@fallback"), "allow", "custom cpu model fallback");
    is_int(xn(d, "count(/domain/cpu/topology)"), 1, "custom cpu has topology");
    is_str(xs(d, "/domain/cpu/@check"), "none", "custom cpu: check none (qemu64 on AMD without svm)");
    xmlFreeDoc(d);

    /* host-model: no model, no check attribute, topology kept */
    s.domain_type = "kvm";
    s.cpu = &CPU_HOST_MODEL;
    d = roundtrip(&s, NULL);
    is_str(xs(d, "/domain/cpu/@mode"), "host-model", "host-model cpu mode");
    is_int(xn(d, "count(/domain/cpu/model)"), 0, "host-model: no model element");
    is_int(xn(d, "count(/domain/cpu/topology)"), 1, "host-model cpu has topology");
    xmlFreeDoc(d);

    /* no <emulator> unless configured; then exactly the path */
    s.emulator = "/usr/local/bin/qemu-system-x86_64";
    d = roundtrip(&s, NULL);
    is_str(xs(d, "/domain/devices/emulator"), "/usr/local/bin/qemu-system-x86_64", "emulator element");
    xmlFreeDoc(d);
    s.emulator = NULL;
    d = roundtrip(&s, NULL);
    is_int(xn(d, "count(/domain/devices/emulator)"), 0, "no emulator element by default");
    xmlFreeDoc(d);
    {
        vcl_error e;
        vcl_error_clear(&e);
        s.emulator = "qemu-system-x86_64";
        ok(domxml_build(&s, &e) == NULL && e.cls == VCL_ERR_PERMANENT && strstr(e.msg, "emulator"),
           "a relative emulator path is refused: %s", e.msg);
        s.emulator = NULL;
        static const cpu_mode autom = { .kind = CPU_MODE_AUTO };
        s.cpu = &autom;
        vcl_error_clear(&e);
        ok(domxml_build(&s, &e) == NULL && strstr(e.msg, "CPU mode"), "auto is never written: %s", e.msg);
        s.cpu = NULL;
        vcl_error_clear(&e);
        ok(domxml_build(&s, &e) == NULL && strstr(e.msg, "CPU mode"), "no CPU mode is refused: %s", e.msg);
        s.cpu = &CPU_PASSTHROUGH;
    }

    /* the probe domain: no disk, no NIC, one vCPU, no topology, the mode given */
    {
        vcl_error e;
        vcl_error_clear(&e);
        d = domxml_build_probe("vcl-cpu-probe-0a1b2c3d", "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "kvm",
                               &CPU_QEMU64, "/usr/bin/qemu-system-x86_64", &e);
        ok(d != NULL, "probe domain builds: %s", e.msg);
        is_int(xn(d, "count(/domain/devices/disk)"), 0, "probe: no disk");
        is_int(xn(d, "count(/domain/devices/interface)"), 0, "probe: no NIC");
        is_int(xn(d, "count(/domain/cpu/topology)"), 0, "probe: no topology");
        is_str(xs(d, "/domain/cpu/model"), "qemu64", "probe: the mode's model");
        is_str(xs(d, "/domain/devices/emulator"), "/usr/bin/qemu-system-x86_64", "probe: emulator");
        xmlFreeDoc(d);
    }

    /* A libvirt network, a serial log, no backing store. */
    s = base_spec();
    s.network = "default";
    s.serial_log = "/var/log/vcl/vclv99-197.serial.log";
    s.backing_path = NULL;
    s.backing_format = NULL;
    d = roundtrip(&s, NULL);
    ok(d != NULL, "network/serial-log/no-backing spec builds");
    is_str(xs(d, "/domain/devices/interface/@type"), "network", "network given: network interface");
    is_str(xs(d, "/domain/devices/interface/source/@network"), "default", "interface source network");
    is_str(xs(d, "/domain/devices/interface/mac/@address"), "52:54:00:ab:cd:ef", "network interface mac");
    is_str(xs(d, "/domain/devices/interface/model/@type"), "virtio", "network interface model");
    is_str(xs(d, "/domain/devices/serial/log/@file"), "/var/log/vcl/vclv99-197.serial.log", "serial log file");
    is_str(xs(d, "/domain/devices/serial/log/@append"), "off", "serial log append off");
    is_str(xs(d, "/domain/devices/serial/target/@port"), "0", "serial still has its target");
    is_int(xn(d, "count(//backingStore)"), 0, "no backing path: no <backingStore>");
    is_str(xs(d, "/domain/devices/disk/source/@file"), COW, "disk source without backing");
    xmlFreeDoc(d);

    /* Non-ASCII (valid UTF-8) survives. */
    s = base_spec();
    s.name = "caf\xc3\xa9-\xe6\x97\xa5";
    d = roundtrip(&s, NULL);
    is_str(xs(d, "/domain/name"), "caf\xc3\xa9-\xe6\x97\xa5", "UTF-8 name round-trips");
    xmlFreeDoc(d);
}

static void test_topology(void)
{
    static const unsigned extra[] = { 17, 24, 64, 97, 1024 };
    unsigned list[16 + sizeof extra / sizeof extra[0]];
    size_t nlist = 0;
    unsigned so = 0, co = 0, th = 0;

    for (unsigned v = 1; v <= 16; v++)
        list[nlist++] = v;
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
        list[nlist++] = extra[i];

    for (size_t i = 0; i < nlist; i++) {
        unsigned v = list[i];
        domxml_spec s = base_spec();
        xmlDocPtr d;

        s.vcpus = v;
        bool r = domxml_topology(v, &so, &co, &th);
        ok(r && so * co * th == v && th == 1 && co <= 16,
           "domxml_topology(%u) = %u sockets x %u cores x %u threads", v, so, co, th);
        d = roundtrip(&s, NULL);
        is_int(xn(d, "/domain/vcpu"), v, "vcpus %u: <vcpu>", v);
        is_int(xn(d, "/domain/cpu/topology/@sockets * /domain/cpu/topology/@cores * /domain/cpu/topology/@threads"),
               v, "vcpus %u: sockets*cores*threads in the XML", v);
        is_int(xn(d, "/domain/cpu/topology/@threads"), 1, "vcpus %u: threads 1", v);
        xmlFreeDoc(d);
    }
    domxml_topology(24, &so, &co, &th);
    ok(so == 2 && co == 12, "24 -> 2 x 12 (got %u x %u)", so, co);
    domxml_topology(16, &so, &co, &th);
    ok(so == 1 && co == 16, "16 -> 1 x 16 (got %u x %u)", so, co);
    domxml_topology(64, &so, &co, &th);
    ok(so == 4 && co == 16, "64 -> 4 x 16 (got %u x %u)", so, co);
    domxml_topology(17, &so, &co, &th);
    ok(so == 17 && co == 1, "prime 17 -> 17 x 1 (got %u x %u)", so, co);
    ok(!domxml_topology(0, &so, &co, &th), "vcpus 0 has no topology");
}

static void test_read_owner(void)
{
    domxml_spec s = base_spec();
    domxml_owner o;
    vcl_error e;
    xmlDocPtr doc = domxml_build(&s, &e);
    char *xml = domxml_to_string(doc);

    xmlFreeDoc(doc);
    ok(domxml_read_owner(xml, &o), "(a) owner read from our own XML");
    is_str(o.computer, "vclv99-197", "(a) computer");
    is_int(o.reservation_id, 42, "(a) reservation");
    is_int(o.image_revision_id, 234, "(a) image revision");
    is_str(o.file_stem, "win7-base-v3", "(a) file stem");
    free(xml);

    /* (b) another prefix, as libvirt may return it, among other metadata. */
    const char *other_prefix =
        "<domain type='kvm'><name>x</name><metadata>"
        "<libosinfo:libosinfo xmlns:libosinfo='http://libosinfo.org/xmlns/libvirt/domain/1.0'/>"
        "<x:owner xmlns:x='" VCL_XML_NS "' computer='vclv99-5' reservation='7' image-revision='9' "
        "file-stem='centos9-v1'/></metadata><devices/></domain>";
    ok(domxml_read_owner(other_prefix, &o), "(b) owner with prefix x: is found by namespace");
    is_str(o.computer, "vclv99-5", "(b) computer");
    is_int(o.reservation_id, 7, "(b) reservation");
    is_int(o.image_revision_id, 9, "(b) image revision");
    is_str(o.file_stem, "centos9-v1", "(b) file stem");

    const char *default_ns =
        "<domain><metadata><owner xmlns='" VCL_XML_NS "' computer='c1' reservation='1' "
        "image-revision='2' file-stem='s'/></metadata></domain>";
    ok(domxml_read_owner(default_ns, &o) && strcmp(o.computer, "c1") == 0,
       "(b) owner in a default namespace is found too");

    /* (c) no metadata, or metadata that is not ours. */
    ok(!domxml_read_owner("<domain type='kvm'><name>x</name></domain>", &o), "(c) no metadata -> false");
    ok(o.computer[0] == '\0' && o.reservation_id == 0, "(c) output cleared");
    ok(!domxml_read_owner("<domain><metadata/></domain>", &o), "(c) empty metadata -> false");
    ok(!domxml_read_owner("<domain><metadata><vcl:owner xmlns:vcl='http://example.invalid/other' "
                          "computer='c' reservation='1' image-revision='2' file-stem='s'/></metadata></domain>",
                          &o),
       "(c) same prefix, other namespace -> false");
    ok(!domxml_read_owner("<domain><metadata><owner computer='c' reservation='1' image-revision='2' "
                          "file-stem='s'/></metadata></domain>",
                          &o),
       "(c) owner in no namespace -> false");
    ok(!domxml_read_owner("<domain><devices><x:owner xmlns:x='" VCL_XML_NS "' computer='c' reservation='1' "
                          "image-revision='2' file-stem='s'/></devices></domain>",
                          &o),
       "(c) owner outside <metadata> -> false");
    ok(!domxml_read_owner("<domain><metadata><x:owner xmlns:x='" VCL_XML_NS "' computer='c' "
                          "reservation='12abc' image-revision='2' file-stem='s'/></metadata></domain>",
                          &o),
       "(c) non-numeric reservation -> false");
    ok(!domxml_read_owner("<domain><metadata><x:owner xmlns:x='" VCL_XML_NS "' computer='c' "
                          "image-revision='2' file-stem='s'/></metadata></domain>",
                          &o),
       "(c) missing reservation -> false");

    /* (d) garbage */
    ok(!domxml_read_owner("this is not XML <<<", &o), "(d) garbage -> false");
    ok(!domxml_read_owner("<domain><metadata>", &o), "(d) truncated XML -> false");
    ok(!domxml_read_owner("", &o), "(d) empty -> false");
    ok(!domxml_read_owner(NULL, &o), "(d) NULL -> false");
    ok(!domxml_read_owner("<!DOCTYPE domain [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>"
                          "<domain><metadata><v:owner xmlns:v='" VCL_XML_NS "' computer='&x;' "
                          "reservation='1' image-revision='2' file-stem='s'/></metadata></domain>",
                          &o),
       "(d) external entity is not expanded into the owner");

    /* (e) the owner element alone, as virDomainGetMetadata returns it */
    ok(domxml_read_owner_element("<vcl:owner xmlns:vcl=\"" VCL_XML_NS "\" computer=\"c9\" "
                                 "reservation=\"7\" image-revision=\"3\" file-stem=\"s-v3\"/>",
                                 &o) &&
           strcmp(o.computer, "c9") == 0 && o.reservation_id == 7 && o.image_revision_id == 3 &&
           strcmp(o.file_stem, "s-v3") == 0,
       "(e) owner element alone read");
    /* what libvirt really returns: the element found by our namespace, with
     * the namespace taken off */
    ok(domxml_read_owner_element("<owner computer=\"c9\" reservation=\"7\" image-revision=\"3\" "
                                 "file-stem=\"s-v3\"/>", &o) &&
           strcmp(o.computer, "c9") == 0 && o.reservation_id == 7,
       "(e) owner element without a namespace (as libvirt returns it) read");
    ok(!domxml_read_owner_element("<vcl:owner xmlns:vcl='http://example.invalid/other' computer='c' "
                                  "reservation='1' image-revision='2' file-stem='s'/>", &o),
       "(e) an element of another namespace -> false");
    ok(!domxml_read_owner_element("<x:owner xmlns:x='" VCL_XML_NS "' computer='c' image-revision='2' "
                                  "file-stem='s'/>", &o),
       "(e) missing reservation -> false");
    ok(!domxml_read_owner_element("<domain><metadata><x:owner xmlns:x='" VCL_XML_NS "' computer='c' "
                                  "reservation='1' image-revision='2' file-stem='s'/></metadata></domain>",
                                  &o),
       "(e) a whole domain is not an owner element");
    ok(!domxml_read_owner_element(NULL, &o) && !domxml_read_owner_element("<<<", &o),
       "(e) NULL, garbage -> false");
}

static void test_disk_files(void)
{
    domxml_spec s = base_spec();
    vcl_error e;
    xmlDocPtr doc = domxml_build(&s, &e);
    char *xml = domxml_to_string(doc), **paths = NULL;
    size_t n = 99;

    xmlFreeDoc(doc);
    ok(domxml_disk_files(xml, &paths, &n), "disk files of our own XML");
    is_int(n, 1, "one top-level file");
    is_str(n >= 1 ? paths[0] : NULL, COW, "it is the COW, not the backing master");
    util_strv_free(paths, n);
    free(xml);

    const char *several =
        "<domain><devices>"
        "<disk type='file' device='disk'><source file='/a/top1.qcow2'/>"
        "<backingStore type='file'><format type='qcow2'/><source file='/m/base1.qcow2'/>"
        "<backingStore type='file'><format type='qcow2'/><source file='/m/base0.qcow2'/><backingStore/>"
        "</backingStore></backingStore><target dev='vda'/></disk>"
        "<disk type='block' device='disk'><source dev='/dev/sdb'/><target dev='vdb'/></disk>"
        "<disk type='file' device='cdrom'><target dev='hdc'/></disk>"
        "<disk type='file' device='disk'><source file='/a/top2.img'/><target dev='vdc'/></disk>"
        "<interface type='user'><source file='/not/a/disk'/></interface>"
        "</devices></domain>";
    ok(domxml_disk_files(several, &paths, &n), "disk files of a hand-written XML");
    is_int(n, 2, "two top-level files (block disk, empty cdrom and backing stores skipped)");
    is_str(n >= 1 ? paths[0] : NULL, "/a/top1.qcow2", "first top file");
    is_str(n >= 2 ? paths[1] : NULL, "/a/top2.img", "second top file");
    util_strv_free(paths, n);

    ok(domxml_disk_files("<domain><devices/></domain>", &paths, &n) && n == 0 && paths == NULL,
       "no disks: true, none");
    util_strv_free(paths, n);
    ok(domxml_disk_files("<domain/>", &paths, &n) && n == 0, "no devices: true, none");
    util_strv_free(paths, n);
    ok(!domxml_disk_files("garbage", &paths, &n) && n == 0 && paths == NULL, "garbage: false");
    ok(!domxml_disk_files("<notdomain/>", &paths, &n), "wrong root: false");
    ok(!domxml_disk_files(NULL, &paths, &n), "NULL: false");
    util_strv_free(NULL, 0);
    ok(1, "util_strv_free(NULL) is fine");
}

static void expect_bad(const domxml_spec *s, const char *what)
{
    vcl_error e;
    xmlDocPtr d;

    vcl_error_clear(&e);
    d = domxml_build(s, &e);
    ok(d == NULL && e.cls == VCL_ERR_PERMANENT && e.msg[0], "bad spec (%s) refused: %.300s", what, e.msg);
    xmlFreeDoc(d);
}

static void test_bad_specs(void)
{
    domxml_spec s;

#define BAD_FIELD(field, value)     \
    do {                            \
        s = base_spec();            \
        s.field = value;            \
        expect_bad(&s, #field " = " #value); \
    } while (0)

    BAD_FIELD(name, NULL);
    BAD_FIELD(name, "");
    BAD_FIELD(uuid, NULL);
    BAD_FIELD(domain_type, NULL);
    BAD_FIELD(disk_path, NULL);
    BAD_FIELD(disk_driver, NULL);
    BAD_FIELD(disk_format, NULL);
    BAD_FIELD(backing_format, NULL);
    BAD_FIELD(mac0, NULL);
    BAD_FIELD(computer, NULL);
    BAD_FIELD(file_stem, NULL);
    BAD_FIELD(vcpus, 0);
    BAD_FIELD(vcpus, 1025);
    BAD_FIELD(memory_mb, 0);
    BAD_FIELD(memory_mb, 15);
    BAD_FIELD(uuid, "");
    BAD_FIELD(uuid, "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4");
    BAD_FIELD(uuid, "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d0");
    BAD_FIELD(uuid, "0a1b2c3d4e5f4a6b8c7d9e0f1a2b3c4d");
    BAD_FIELD(uuid, "0a1b2c3d-4e5f-4a6b-8c7d_9e0f1a2b3c4d");
    BAD_FIELD(uuid, "0a1b2c3g-4e5f-4a6b-8c7d-9e0f1a2b3c4d");
    BAD_FIELD(uuid, "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d\n");
    BAD_FIELD(domain_type, "xen");
    BAD_FIELD(mac0, "52:54:00:ab:cd");
    BAD_FIELD(mac0, "01:00:5e:00:00:01");
    BAD_FIELD(name, "bad\x01" "control");
    BAD_FIELD(name, "line\nbreak");
    BAD_FIELD(name, "bad\xff" "utf8");
    BAD_FIELD(disk_path, "/a/\xc3");
    BAD_FIELD(network, "");
    BAD_FIELD(reservation_id, -1);
#undef BAD_FIELD

    vcl_error e;
    vcl_error_clear(&e);
    ok(domxml_build(NULL, &e) == NULL && e.cls == VCL_ERR_PERMANENT, "NULL spec refused");

    s = base_spec();
    s.vcpus = 0;
    domxml_build(&s, &e);
    ok(strstr(e.msg, "vcpus") != NULL, "vcpus error names the field: %.300s", e.msg);
    s = base_spec();
    s.uuid = "nope";
    domxml_build(&s, &e);
    ok(strstr(e.msg, "uuid") != NULL, "uuid error names the field: %.300s", e.msg);
    s = base_spec();
    s.disk_path = NULL;
    domxml_build(&s, &e);
    ok(strstr(e.msg, "disk_path") != NULL, "missing field is named: %.300s", e.msg);

    /* Bounds that are fine. */
    s = base_spec();
    s.vcpus = 1024;
    s.memory_mb = 16;
    s.uuid = "0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D";
    xmlDocPtr d = domxml_build(&s, &e);
    ok(d != NULL, "vcpus 1024, memory 16, upper-case uuid accepted");
    xmlFreeDoc(d);
    ok(domxml_to_string(NULL) == NULL, "domxml_to_string(NULL) is NULL");
}

static void test_escaping(void)
{
    domxml_spec s = base_spec();
    char *xml = NULL;
    const char *evil_name = "evil</name><on_poweroff>preserve</on_poweroff><name>&amp;&x;";
    const char *evil_comp = "c'\"/><x:owner computer='other";
    const char *evil_disk = "/a/it's <&> \"here\".qcow2";
    domxml_owner o;
    char **paths = NULL;
    size_t n = 0;

    s.name = evil_name;
    s.computer = evil_comp;
    s.disk_path = evil_disk;
    s.network = "net'><source network='evil";
    xmlDocPtr d = roundtrip(&s, &xml);
    ok(d != NULL, "spec with markup characters builds and parses back");
    is_str(xs(d, "/domain/name"), evil_name, "name round-trips byte for byte");
    is_int(xn(d, "count(/domain/name)"), 1, "still exactly one <name>");
    is_int(xn(d, "count(/domain/on_poweroff)"), 1, "no injected <on_poweroff>");
    is_str(xs(d, "/domain/on_poweroff"), "destroy", "on_poweroff unchanged");
    is_int(xn(d, "count(/domain/metadata/*)"), 1, "no injected owner element");
    is_str(xs(d, "/domain/metadata/v:owner/@computer"), evil_comp, "computer attribute round-trips");
    is_str(xs(d, "/domain/devices/disk/source/@file"), evil_disk, "disk path round-trips");
    is_int(xn(d, "count(/domain/devices/interface/source)"), 1, "one interface source");
    is_str(xs(d, "/domain/devices/interface/source/@network"), "net'><source network='evil",
           "network attribute round-trips");
    ok(xml && strstr(xml, "</name><on_poweroff>preserve") == NULL, "raw markup not in the output");
    ok(xml && strstr(xml, "evil&lt;/name&gt;") != NULL, "'<' escaped as &lt;");
    ok(xml && strstr(xml, "&amp;amp;&amp;x;") != NULL, "'&' escaped as &amp;");
    ok(domxml_read_owner(xml, &o) && strcmp(o.computer, evil_comp) == 0, "read_owner gets the same computer");
    ok(domxml_disk_files(xml, &paths, &n) && n == 1 && strcmp(paths[0], evil_disk) == 0,
       "disk_files gets the same path");
    util_strv_free(paths, n);
    xmlFreeDoc(d);
    free(xml);
}

/* xml_safe: only well-formed UTF-8 of XML 1.0 characters reaches the
 * document (issue #12: the builder wrote documents it could not read back).
 * Each bad sequence is refused in a text field, an attribute field and the
 * emulator path; each good one builds and reads back byte for byte. */
typedef struct utf8_case {
    const char *bytes, *what;
} utf8_case;

static void test_xml_chars(void)
{
    static const utf8_case bad[] = {
        { "\xf4\x90\x80\x80", "U+110000 (above U+10FFFF)" },
        { "\xf7\xbf\xbf\xbf", "U+1FFFFF (4-byte form above the range)" },
        { "\xf8\x88\x80\x80\x80", "5-byte form" },
        { "\xfc\x84\x80\x80\x80\x80", "6-byte form" },
        { "\xed\xa0\x80", "surrogate U+D800" },
        { "\xed\xbf\xbf", "surrogate U+DFFF" },
        { "\xed\xa0\xbd\xed\xb8\x80", "CESU-8 surrogate pair" },
        { "\xc0\xaf", "overlong '/' (2 bytes)" },
        { "\xc1\xbf", "overlong U+007F" },
        { "\xe0\x80\xaf", "overlong '/' (3 bytes)" },
        { "\xe0\x9f\xbf", "overlong U+07FF" },
        { "\xf0\x80\x80\xaf", "overlong '/' (4 bytes)" },
        { "\xf0\x8f\xbf\xbf", "overlong U+FFFF" },
        { "\xc0\x80", "overlong NUL" },
        { "\xef\xbf\xbe", "U+FFFE" },
        { "\xef\xbf\xbf", "U+FFFF" },
        { "\x01", "C0 control U+0001" },
        { "\x08", "C0 control U+0008 (backspace)" },
        { "\x0b", "C0 control U+000B" },
        { "\x0c", "C0 control U+000C" },
        { "\x1b", "C0 control U+001B (ESC)" },
        { "\x1f", "C0 control U+001F" },
        { "\t", "tab (no field has a use for it)" },
        { "\n", "newline (no field has a use for it)" },
        { "\r", "CR (no field has a use for it)" },
        { "\x7f", "DEL" },
        { "\x80", "lone continuation byte" },
        { "\xbf", "lone continuation byte 0xbf" },
        { "\xc3", "truncated 2-byte sequence" },
        { "\xe6\x97", "truncated 3-byte sequence" },
        { "\xf0\x9f\x98", "truncated 4-byte sequence" },
        { "\xc3(", "2-byte lead, ASCII after" },
        { "\xfe", "byte 0xfe" },
        { "\xff", "byte 0xff" },
    };
    static const utf8_case good[] = {
        { "\x20", "space" },
        { "~", "U+007E" },
        { "\xc2\x80", "U+0080 (smallest 2-byte)" },
        { "\xc3\xa9", "U+00E9" },
        { "\xdf\xbf", "U+07FF" },
        { "\xe0\xa0\x80", "U+0800 (smallest 3-byte)" },
        { "\xe6\x97\xa5", "U+65E5" },
        { "\xed\x9f\xbf", "U+D7FF (just below the surrogates)" },
        { "\xee\x80\x80", "U+E000 (just above the surrogates)" },
        { "\xef\xbf\xbd", "U+FFFD" },
        { "\xef\xb7\x90", "U+FDD0 (a noncharacter, but an XML Char)" },
        { "\xf0\x90\x80\x80", "U+10000 (smallest 4-byte)" },
        { "\xf0\x9f\x98\x80", "U+1F600" },
        { "\xf4\x8f\xbf\xbf", "U+10FFFF (largest)" },
    };
    char v[64], path[80], **paths = NULL;
    size_t n = 0;
    vcl_error e;
    domxml_owner o;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        domxml_spec s = base_spec();
        snprintf(v, sizeof v, "pc%sx", bad[i].bytes);
        snprintf(path, sizeof path, "/var/lib/%s.qcow2", bad[i].bytes);
        for (int field = 0; field < 3; field++) {
            s = base_spec();
            if (field == 0)
                s.name = v;
            else if (field == 1)
                s.computer = v;
            else
                s.emulator = path;
            vcl_error_clear(&e);
            xmlDocPtr d = domxml_build(&s, &e);
            ok(d == NULL && e.cls == VCL_ERR_PERMANENT, "%s refused in %s: %.200s", bad[i].what,
               field == 0 ? "name" : field == 1 ? "computer" : "emulator", e.msg);
            xmlFreeDoc(d);
        }
    }
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        domxml_spec s = base_spec();
        char *xml = NULL;
        snprintf(v, sizeof v, "pc%sx", good[i].bytes);
        snprintf(path, sizeof path, "/var/lib/%s.qcow2", good[i].bytes);
        s.name = v;
        s.computer = v;
        s.disk_path = path;
        s.emulator = path;
        xmlDocPtr d = roundtrip(&s, &xml);
        ok(d != NULL, "%s accepted", good[i].what);
        is_str(xs(d, "/domain/name"), v, "%s: name reads back", good[i].what);
        ok(xml && domxml_read_owner(xml, &o) && strcmp(o.computer, v) == 0,
           "%s: owner computer reads back", good[i].what);
        ok(xml && domxml_disk_files(xml, &paths, &n) && n == 1 && strcmp(paths[0], path) == 0,
           "%s: disk path reads back", good[i].what);
        util_strv_free(paths, n);
        paths = NULL;
        n = 0;
        xmlFreeDoc(d);
        free(xml);
    }
}

int main(void)
{
    test_full_kvm();
    test_variants();
    test_topology();
    test_read_owner();
    test_disk_files();
    test_bad_specs();
    test_escaping();
    test_xml_chars();
    xmlCleanupParser(); /* the test owns the process; library code never calls this */
    return done_testing();
}
