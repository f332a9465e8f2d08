/* fuzz_domxml.c: the domain XML (worker/node/domxml.c): build from a spec,
 * serialise, read back; and the readers on any document (libvirt hands back
 * what a node has, and a domain's XML may have been edited there).
 *
 * Input: data[0] flags (bit 0: reader mode, the rest of the input is a
 * document; bit 1 backing store, 2 network, 3 serial log, 4 emulator, 5 a
 * custom CPU model, 6 host-model, 7 uuid and MAC from the input),
 * data[1..4] numbers (vcpus, memory, reservation and image revision ids),
 * then NUL-separated strings: name, computer, file stem, disk path, backing
 * path, network, serial log, emulator, CPU model, uuid, MAC.
 * Properties: a spec that builds serialises to a document libxml2 parses
 * without recovery; the owner metadata, the disk file and the CPU mode read
 * back equal the spec; the probe domain does the same; a refused spec says
 * why; the readers never return unterminated or negative fields. */
#include <libxml/parser.h>

#include "node/domxml.h"
#include "base/util.h"
#include "fuzz.h"

static void readers(const char *xml)
{
    domxml_owner o;
    char **paths = NULL, mode[CPU_MODE_STR_MAX];
    size_t n = 0;

    if (domxml_read_owner(xml, &o)) {
        FUZZ_CHECK(memchr(o.computer, '\0', sizeof o.computer) && o.computer[0] &&
                       memchr(o.file_stem, '\0', sizeof o.file_stem) && o.file_stem[0],
                   "owner fields empty or unterminated");
        FUZZ_CHECK(o.reservation_id >= 0 && o.image_revision_id >= 0, "negative owner id");
    }
    if (domxml_disk_files(xml, &paths, &n))
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(paths[i] != NULL, "disk path %zu is NULL", i);
    util_strv_free(paths, n);
    cpu_mode_from_domain_xml(xml, mode, sizeof mode);
}

/* The document parses strictly (no recovery): libvirt would read it too. */
static void strict_parse(const char *xml)
{
    xmlDocPtr d = xmlReadMemory(xml, (int)strlen(xml), "built.xml", NULL,
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    FUZZ_CHECK(d != NULL, "the built document does not parse:\n%s", xml);
    xmlFreeDoc(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *f[11];
    char *buf;
    vcl_error e;

    if (size < 5 || size > FUZZ_MAX_INPUT)
        return 0;
    unsigned flags = data[0];
    if (flags & 1) {
        char *xml = fuzz_cstr(data + 1, size - 1);
        readers(xml);
        free(xml);
        return 0;
    }
    fuzz_fields(data + 5, size - 5, &buf, f, 11);
    cpu_mode cpu = { .kind = (flags & 64) ? CPU_MODE_HOST_MODEL : CPU_MODE_HOST_PASSTHROUGH };
    if (flags & 32) {
        /* as the worker gets it: node.cpu_mode through cpu_mode_parse */
        char spelled[CPU_MODE_STR_MAX + 8];
        snprintf(spelled, sizeof spelled, "custom:%s", f[8]);
        if (!cpu_mode_parse(spelled, &cpu, &e))
            cpu.kind = CPU_MODE_HOST_PASSTHROUGH;
    }
    domxml_spec s = {
        .name = f[0],
        .uuid = (flags & 128) ? f[9] : "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        .domain_type = (data[1] & 1) ? "qemu" : "kvm",
        .vcpus = data[1] ? data[1] * 5u : 0,
        .memory_mb = data[2] * 64u,
        .disk_path = f[3],
        .disk_driver = "qemu",
        .disk_format = "qcow2",
        .backing_path = (flags & 2) ? f[4] : NULL,
        .backing_format = (flags & 2) ? "qcow2" : NULL,
        .mac0 = (flags & 128) ? f[10] : "52:54:00:ab:cd:ef",
        .network = (flags & 4) ? f[5] : NULL,
        .serial_log = (flags & 8) ? f[6] : NULL,
        .cpu = &cpu,
        .emulator = (flags & 16) ? f[7] : NULL,
        .computer = f[1],
        .reservation_id = (signed char)data[3] * 1000003LL,
        .image_revision_id = data[4],
        .file_stem = f[2],
    };

    vcl_error_clear(&e);
    xmlDocPtr doc = domxml_build(&s, &e);
    if (!doc) {
        FUZZ_CHECK(e.msg[0] && (e.cls == VCL_ERR_PERMANENT || e.cls == VCL_ERR_RETRYABLE),
                   "a refused spec says why");
    } else {
        char *xml = domxml_to_string(doc);
        xmlFreeDoc(doc);
        FUZZ_CHECK(xml != NULL, "a built document does not serialise");
        strict_parse(xml);

        domxml_owner o;
        FUZZ_CHECK(domxml_read_owner(xml, &o) ||
                       strlen(s.computer) >= sizeof o.computer ||
                       strlen(s.file_stem) >= sizeof o.file_stem,
                   "owner does not read back from:\n%s", xml);
        if (o.computer[0]) {
            FUZZ_CHECK(strcmp(o.computer, s.computer) == 0, "computer '%s'", o.computer);
            FUZZ_CHECK(strcmp(o.file_stem, s.file_stem) == 0, "file stem '%s'", o.file_stem);
            FUZZ_CHECK(o.reservation_id == s.reservation_id &&
                           o.image_revision_id == s.image_revision_id,
                       "ids %lld/%lld", o.reservation_id, o.image_revision_id);
        }
        char **paths = NULL;
        size_t n = 0;
        FUZZ_CHECK(domxml_disk_files(xml, &paths, &n), "disk files do not read back");
        FUZZ_CHECK(n == 1 && strcmp(paths[0], s.disk_path) == 0, "disk files: %zu", n);
        util_strv_free(paths, n);

        char mode[CPU_MODE_STR_MAX], want[CPU_MODE_STR_MAX];
        cpu_mode_from_domain_xml(xml, mode, sizeof mode);
        cpu_mode_format(&cpu, want, sizeof want);
        FUZZ_CHECK(strcmp(mode, want) == 0, "CPU mode '%s', want '%s'", mode, want);
        readers(xml);
        free(xml);
    }

    /* the CPU probe's domain: name, uuid, type, CPU, emulator */
    vcl_error_clear(&e);
    doc = domxml_build_probe(s.name, s.uuid, s.domain_type, &cpu, s.emulator, &e);
    if (doc) {
        char *xml = domxml_to_string(doc);
        xmlFreeDoc(doc);
        FUZZ_CHECK(xml != NULL, "a probe document does not serialise");
        strict_parse(xml);
        free(xml);
    } else {
        FUZZ_CHECK(e.msg[0], "a refused probe says why");
    }
    free(buf);
    return 0;
}
