/* qemu_family.h: what the kvm and qemu drivers share. Both run QEMU through
 * libvirt with a qcow2 COW disk over a qcow2 master; they differ only in the
 * domain type and in what they need from the node (/dev/kvm or not).
 *
 * Linked into every driver module: each symbol is hidden, so two modules
 * loaded side by side (RTLD_LOCAL) never clash. */
#ifndef VCL_QEMU_FAMILY_H
#define VCL_QEMU_FAMILY_H
#include <stdbool.h>
#include "driver.h"
#include "base/error.h"

#define QF_HIDDEN __attribute__((visibility("hidden")))

/* Fill e like vcl_error_set (drivers do not link the worker's error.c).
 * Returns false. */
QF_HIDDEN bool qf_error(vcl_error *e, vcl_err_class cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

QF_HIDDEN const char *qf_disk_driver_name(unsigned flags);   /* "qemu" */
QF_HIDDEN const char *qf_disk_format(unsigned flags);        /* "qcow2" */
QF_HIDDEN const char *qf_disk_extension(unsigned flags);     /* "qcow2" */
/* Nothing to add yet: true. */
QF_HIDDEN bool qf_extend_domain_xml(const vcl_driver_host *host, const vcl_driver_node *node,
                                    void *doc, unsigned flags, vcl_error *e);
/* host->ensure_master, then host->ensure_cow. */
QF_HIDDEN bool qf_pre_define(const vcl_driver_host *host, const vcl_driver_load *load,
                             unsigned flags, vcl_error *e);
/* true when libvirt on the node offers domain type `type`; otherwise false
 * with the reason in e (permanent), or the host's error when it could not
 * ask. `driver` names the caller in messages. */
QF_HIDDEN bool qf_require_domain_type(const vcl_driver_host *host, const vcl_driver_node *node,
                                      const char *driver, const char *type, vcl_error *e);
/* Log through the host (level 0 debug .. 3 error), printf style. */
QF_HIDDEN void qf_log(const vcl_driver_host *host, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#endif
