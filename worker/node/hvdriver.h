/* hvdriver.h: the hypervisor driver registry and the services the worker
 * offers to drivers.
 *
 * hvdriver_load_all() dlopens every *.so in the drivers directory, takes its
 * VCL_DRIVER_ENTRY_SYMBOL, refuses (and logs) modules without it or with
 * another ABI version, and orders the usable ones by the configured order
 * (names not listed come after, alphabetically). hvdriver_select() gives, for
 * one node, the first driver whose initialize() accepts it.
 *
 * hvdriver_host() is the vcl_driver_host table passed to every driver op:
 *   - vcl_driver_node.handle must point to an hv_node_handle (the node's
 *     transport and libvirt connection);
 *   - vcl_driver_load.handle must point to an image_req (image.h), which
 *     ensure_master/ensure_cow hand to image_ensure_master/image_ensure_cow. */
#ifndef VCL_HVDRIVER_H
#define VCL_HVDRIVER_H
#include <stdbool.h>
#include <stddef.h>
#include <libvirt/libvirt.h>
#include "driver.h"
#include "base/error.h"
#include "node/transport.h"

typedef struct hvdriver_set hvdriver_set;

/* What vcl_driver_node.handle points to. */
typedef struct hv_node_handle {
    vcl_transport *t;
    virConnectPtr conn;
} hv_node_handle;

/* Load every driver in dir. order: preferred names (n_order of them, may be
 * 0). false (permanent) when dir cannot be read or holds no usable driver. */
bool hvdriver_load_all(const char *dir, char *const *order, int n_order, hvdriver_set **out,
                       vcl_error *e);
void hvdriver_set_free(hvdriver_set *s);
size_t hvdriver_count(const hvdriver_set *s);
/* The i-th driver in order; NULL when i is out of range. */
const vcl_driver_ops *hvdriver_get(const hvdriver_set *s, size_t i);
/* First driver (in order) whose initialize() accepts node. When none does:
 * NULL and e lists every driver's reason ("kvm: ...; qemu: ..."); the error is
 * permanent, or retryable when a driver could not decide (node unreachable). */
const vcl_driver_ops *hvdriver_select(const hvdriver_set *s, const vcl_driver_node *node,
                                      vcl_error *e);
/* The worker's services table for drivers (static; never freed). */
const vcl_driver_host *hvdriver_host(void);
#endif
