/* kvm.c: QEMU with KVM acceleration (<domain type='kvm'>). Accepts a node
 * only when /dev/kvm exists there and its libvirt offers domain type "kvm". */
#include "driver.h"
#include "common/qemu_family.h"

#include <stddef.h>

const vcl_driver_ops *vcl_driver_entry(void);

static const char *kvm_domain_type(unsigned flags)
{
    (void)flags;
    return "kvm";
}

static bool kvm_initialize(const vcl_driver_host *host, const vcl_driver_node *node, unsigned flags,
                           vcl_error *e)
{
    (void)flags;
    const char *nname = node && node->name ? node->name : "?";
    if (!host || !host->node_path_exists)
        return qf_error(e, VCL_ERR_PERMANENT, "the worker cannot look at node files");
    int have = host->node_path_exists(node, "/dev/kvm", e);
    if (have < 0)
        return false;   /* e says why we could not look */
    if (have == 0)
        return qf_error(e, VCL_ERR_PERMANENT,
                        "node %s has no /dev/kvm (no hardware virtualisation, or the kvm module "
                        "is not loaded)", nname);
    if (!qf_require_domain_type(host, node, "kvm", "kvm", e))
        return false;
    qf_log(host, 0, "kvm driver accepts node %s", nname);
    return true;
}

static const vcl_driver_ops kvm_ops = {
    .abi_version = VCL_DRIVER_ABI_VERSION,
    .name = "kvm",
    .description = "QEMU/KVM through libvirt, hardware accelerated; qcow2 COW over a qcow2 master",
    .initialize = kvm_initialize,
    .domain_type = kvm_domain_type,
    .disk_driver_name = qf_disk_driver_name,
    .disk_format = qf_disk_format,
    .disk_extension = qf_disk_extension,
    .extend_domain_xml = qf_extend_domain_xml,
    .pre_define = qf_pre_define,
};

const vcl_driver_ops *vcl_driver_entry(void)
{
    return &kvm_ops;
}
