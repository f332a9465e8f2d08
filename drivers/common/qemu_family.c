/* qemu_family.c: see qemu_family.h. */
#include "qemu_family.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bool qf_error(vcl_error *e, vcl_err_class cls, const char *fmt, ...)
{
    if (!e)
        return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->cls = cls;
    return false;
}

void qf_log(const vcl_driver_host *host, int level, const char *fmt, ...)
{
    char msg[1024];
    if (!host || !host->log)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    host->log(level, msg);
}

const char *qf_disk_driver_name(unsigned flags)
{
    (void)flags;
    return "qemu";
}

const char *qf_disk_format(unsigned flags)
{
    (void)flags;
    return "qcow2";
}

const char *qf_disk_extension(unsigned flags)
{
    (void)flags;
    return "qcow2";
}

bool qf_extend_domain_xml(const vcl_driver_host *host, const vcl_driver_node *node, void *doc,
                          unsigned flags, vcl_error *e)
{
    (void)host;
    (void)node;
    (void)doc;
    (void)flags;
    (void)e;
    return true;
}

bool qf_pre_define(const vcl_driver_host *host, const vcl_driver_load *load, unsigned flags,
                   vcl_error *e)
{
    (void)flags;
    if (!host || !load)
        return qf_error(e, VCL_ERR_PERMANENT, "pre_define: no host services or load");
    if (!host->ensure_master || !host->ensure_cow)
        return qf_error(e, VCL_ERR_PERMANENT, "pre_define: the worker offers no image services");
    if (load->disk_format && strcmp(load->disk_format, qf_disk_format(0)) != 0)
        return qf_error(e, VCL_ERR_PERMANENT, "pre_define: disk format '%s' asked, this driver uses %s",
                        load->disk_format, qf_disk_format(0));
    qf_log(host, 0, "pre_define: master %s, COW %s", load->master_path ? load->master_path : "?",
           load->cow_path ? load->cow_path : "?");
    if (!host->ensure_master(load, e))
        return false;
    return host->ensure_cow(load, e);
}

bool qf_require_domain_type(const vcl_driver_host *host, const vcl_driver_node *node,
                            const char *driver, const char *type, vcl_error *e)
{
    vcl_error ce;
    const char *nname = node && node->name ? node->name : "?";

    if (!host || !host->node_supports_domain_type)
        return qf_error(e, VCL_ERR_PERMANENT, "%s: the worker cannot query domain types", driver);
    ce.cls = VCL_ERR_NONE;
    ce.msg[0] = '\0';
    if (host->node_supports_domain_type(node, type, &ce))
        return true;
    if (ce.cls != VCL_ERR_NONE) {
        if (e)
            *e = ce;
        return false;
    }
    return qf_error(e, VCL_ERR_PERMANENT, "libvirt on node %s does not offer domain type '%s'", nname,
                    type);
}
