/* domxml.h: the domain XML, built and read with libxml2 (never by string
 * concatenation). The <metadata> element records which computer, reservation
 * and image revision own the domain; cleanup trusts it. */
#ifndef VCL_DOMXML_H
#define VCL_DOMXML_H
#include <stdbool.h>
#include <libxml/tree.h>
#include "node/cpumode.h"
#include "base/error.h"

#define VCL_XML_NS     "http://vcl-worker.apache.invalid/xmlns/domain/1"
#define VCL_XML_PREFIX "vcl"

typedef struct domxml_spec {
    const char *name;          /* domain name */
    const char *uuid;          /* 36-char UUID string */
    const char *domain_type;   /* "kvm" / "qemu" */
    unsigned memory_mb;        /* >= 16 */
    unsigned vcpus;            /* 1..1024 */
    const char *disk_path;     /* COW disk */
    const char *disk_driver;   /* "qemu" */
    const char *disk_format;   /* "qcow2" */
    const char *backing_path;  /* master image, or NULL (no <backingStore>) */
    const char *backing_format;/* "qcow2" */
    const char *mac0;          /* "52:54:00:..." */
    const char *network;       /* libvirt network name, or NULL for user-mode networking */
    const char *serial_log;    /* file to log the serial console to, or NULL */
    const cpu_mode *cpu;       /* the node's concrete CPU mode (never auto) */
    const char *emulator;      /* absolute path of the QEMU binary on the node, or NULL
                                * (libvirt's default for the domain type) */
    /* ownership metadata */
    const char *computer;
    long long reservation_id;
    long long image_revision_id;
    const char *file_stem;
} domxml_spec;

typedef struct domxml_owner {
    char computer[128];
    long long reservation_id;
    long long image_revision_id;
    char file_stem[128];
} domxml_owner;

/* sockets*cores*threads == vcpus, threads 1, cores the largest divisor <= 16
 * that keeps sockets <= 16 where possible. false for vcpus == 0. */
bool domxml_topology(unsigned vcpus, unsigned *sockets, unsigned *cores, unsigned *threads);
/* Build the document; NULL + permanent error on bad spec. Free with xmlFreeDoc. */
xmlDocPtr domxml_build(const domxml_spec *spec, vcl_error *e);
/* The CPU probe's throwaway domain: no disk, no NIC, no console, 32 MiB,
 * one vCPU, the given CPU mode (cpuprobe.h). */
xmlDocPtr domxml_build_probe(const char *name, const char *uuid, const char *domain_type,
                             const cpu_mode *cpu, const char *emulator, vcl_error *e);
/* Serialise (malloc'd, free with free()). */
char *domxml_to_string(xmlDocPtr doc);
/* Read the owner metadata back from a domain XML (as from virDomainGetXMLDesc).
 * false when absent or unparsable. */
bool domxml_read_owner(const char *xml, domxml_owner *out);
/* The same from the owner element alone, as virDomainGetMetadata(dom,
 * VIR_DOMAIN_METADATA_ELEMENT, VCL_XML_NS, 0) returns it: one small
 * document instead of the domain's whole definition. */
bool domxml_read_owner_element(const char *xml, domxml_owner *out);
/* File paths of every <disk type='file'> <source file=...> (top images only,
 * not backing stores). *paths malloc'd array of malloc'd strings (free with
 * util_strv_free, base/util.h). */
bool domxml_disk_files(const char *xml, char ***paths, size_t *n);
#endif
