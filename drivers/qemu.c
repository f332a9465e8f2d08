/* qemu.c: QEMU without acceleration (TCG, <domain type='qemu'>). Slow, but
 * runs anywhere libvirt offers domain type "qemu": CI, nested VMs. */
#include "driver.h"
#include "common/qemu_family.h"

#include <stddef.h>

const vcl_driver_ops *vcl_driver_entry(void);

static const char *qemu_domain_type(unsigned flags)
{
    (void)flags;
    return "qemu";
}

static bool qemu_initialize(const vcl_driver_host *host, const vcl_driver_node *node, unsigned flags,
                            vcl_error *e)
{
    (void)flags;
    if (!qf_require_domain_type(host, node, "qemu", "qemu", e))
        return false;
    qf_log(host, 0, "qemu driver accepts node %s", node && node->name ? node->name : "?");
    return true;
}

static const vcl_driver_ops qemu_ops = {
    .abi_version = VCL_DRIVER_ABI_VERSION,
    .name = "qemu",
    .description = "QEMU through libvirt without acceleration (TCG); qcow2 COW over a qcow2 master",
    .initialize = qemu_initialize,
    .domain_type = qemu_domain_type,
    .disk_driver_name = qf_disk_driver_name,
    .disk_format = qf_disk_format,
    .disk_extension = qf_disk_extension,
    .extend_domain_xml = qf_extend_domain_xml,
    .pre_define = qf_pre_define,
};

const vcl_driver_ops *vcl_driver_entry(void)
{
    return &qemu_ops;
}
