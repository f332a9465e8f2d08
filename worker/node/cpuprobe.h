/* cpuprobe.h: which CPU modes really start a guest on a node.
 *
 * A probe is a throwaway transient domain (no disk, no NIC, 32 MiB, one
 * vCPU, started with VIR_DOMAIN_START_AUTODESTROY so it cannot outlive the
 * connection) started with one candidate mode, watched for a moment and
 * destroyed. "auto" tries, in order: host-passthrough, host-model, the
 * hypervisor's baseline model for this host (virConnectBaselineHypervisorCPU
 * over the domain capabilities' host-model CPU, as custom:<model>) and
 * custom:qemu64, and takes the first that starts.
 *
 * Rejections are facts about the node (QEMU died, libvirt refused the mode);
 * a probe that cannot talk to libvirt at all is a retryable error instead. */
#ifndef VCL_CPUPROBE_H
#define VCL_CPUPROBE_H
#include <stdbool.h>
#include <stddef.h>
#include <libvirt/libvirt.h>
#include "node/cpumode.h"
#include "base/error.h"

#define CPU_PROBE_MAX 4

typedef struct cpu_probe_try {
    char mode[CPU_MODE_STR_MAX];   /* node.cpu_mode spelling */
    bool ok;
    char why[256];                 /* "" when ok, else why it was rejected */
    int ms;                        /* how long the start (and check) took */
} cpu_probe_try;

typedef struct cpu_probe_result {
    int n;
    cpu_probe_try tries[CPU_PROBE_MAX];
    char chosen[CPU_MODE_STR_MAX]; /* first mode that started; "" when none */
} cpu_probe_result;

/* Where a probe runs. */
typedef struct cpu_probe_target {
    virConnectPtr conn;
    const char *node;          /* node.name (checked): probe domains are named
                                * vcl-cpu-probe-<node>-<8 hex> */
    const char *domain_type;   /* the driver's: "kvm" or "qemu" */
    const char *emulator;      /* config qemu_emulator, or NULL */
} cpu_probe_target;

/* Probe one mode (never auto). true when the probe ran (t->ok says how it
 * went); false + e (retryable) when libvirt could not be asked. */
bool cpu_probe_one(const cpu_probe_target *pt, const cpu_mode *m, cpu_probe_try *t, vcl_error *e);
/* Try the auto candidates in order; stop at the first that starts unless
 * all (vclctl node check reports each). true when the probe ran, even when
 * nothing started (r->chosen ""). */
bool cpu_probe_auto(const cpu_probe_target *pt, bool all, cpu_probe_result *r, vcl_error *e);
/* "host-passthrough: rejected (failed to set MSR 0x10a to 0x69); host-model:
 * rejected (...); custom:kvm64: ok" */
void cpu_probe_report(const cpu_probe_result *r, char *buf, size_t cap);
#endif
