/* driver.h: the one ABI a hypervisor driver module implements.
 *
 * A driver is a shared object in the drivers directory exporting one symbol,
 * VCL_DRIVER_ENTRY_SYMBOL, a function returning a pointer to a static
 * vcl_driver_ops. The worker loads every module, refuses one whose
 * abi_version differs from VCL_DRIVER_ABI_VERSION, and uses, per node, the
 * first (in configured order) whose initialize() accepts the node. Entries
 * left NULL are reported as unsupported. Every op takes a flags argument
 * (pass 0) for the future.
 *
 * Drivers never link against worker internals: what they may do on a node
 * goes through the vcl_driver_host services table the worker passes in. */
#ifndef VCL_DRIVER_H
#define VCL_DRIVER_H
#include <stdbool.h>
#include <stddef.h>
#include "base/error.h"

#define VCL_DRIVER_ABI_VERSION 1u
#define VCL_DRIVER_ENTRY_SYMBOL "vcl_driver_entry"

/* What a driver may know about a node. */
typedef struct vcl_driver_node {
    const char *name;          /* node.name */
    const char *libvirt_uri;   /* node.libvirt_uri */
    const char *transport;     /* "local" or "ssh" */
    void *handle;              /* opaque to the driver; pass back to host services */
} vcl_driver_node;

/* What pre_define needs to make the disk of one load real. */
typedef struct vcl_driver_load {
    const vcl_driver_node *node;
    const char *computer;      /* computer.name */
    long long reservation_id;
    long long image_revision_id;
    const char *file_stem;     /* image_revision.file_stem */
    const char *master_path;   /* <master image dir>/<file stem>.<ext> */
    const char *cow_path;      /* <cow dir>/<file base>.<ext> */
    const char *disk_format;   /* from disk_format() */
    void *handle;              /* opaque to the driver; pass back to host services */
} vcl_driver_load;

/* Services the worker offers to drivers. */
typedef struct vcl_driver_host {
    unsigned abi_version;
    /* 1 when path exists on the node, 0 when it does not, -1 on error (e filled). */
    int (*node_path_exists)(const vcl_driver_node *node, const char *path, vcl_error *e);
    /* true when the node's libvirt offers this domain type (e.g. "kvm"). */
    bool (*node_supports_domain_type)(const vcl_driver_node *node, const char *type, vcl_error *e);
    /* Master image on the node (from the repository if missing: locked per
     * node and image, re-checked, temp name, verified, renamed). */
    bool (*ensure_master)(const vcl_driver_load *load, vcl_error *e);
    /* COW disk backed by the master (qemu-img create -f FMT -F FMT -b master),
     * idempotent: an existing COW with the right backing file is kept. */
    bool (*ensure_cow)(const vcl_driver_load *load, vcl_error *e);
    /* level: 0 debug, 1 info, 2 warn, 3 error */
    void (*log)(int level, const char *msg);
} vcl_driver_host;

typedef struct vcl_driver_ops {
    unsigned abi_version;      /* VCL_DRIVER_ABI_VERSION */
    const char *name;          /* "kvm", "qemu", ... */
    const char *description;

    /* Accept (true) or decline (false, with the reason in e) this node. */
    bool (*initialize)(const vcl_driver_host *host, const vcl_driver_node *node,
                       unsigned flags, vcl_error *e);
    const char *(*domain_type)(unsigned flags);      /* <domain type='...'> */
    const char *(*disk_driver_name)(unsigned flags); /* <driver name='...'> */
    const char *(*disk_format)(unsigned flags);      /* <driver type='...'>, qemu-img -f */
    const char *(*disk_extension)(unsigned flags);   /* file name extension, no dot */
    /* Adjust the generated domain XML; doc is an xmlDocPtr (libxml2). */
    bool (*extend_domain_xml)(const vcl_driver_host *host, const vcl_driver_node *node,
                              void *doc, unsigned flags, vcl_error *e);
    /* Make the load's disks real on the node before define. */
    bool (*pre_define)(const vcl_driver_host *host, const vcl_driver_load *load,
                       unsigned flags, vcl_error *e);
} vcl_driver_ops;

typedef const vcl_driver_ops *(*vcl_driver_entry_fn)(void);
#endif
