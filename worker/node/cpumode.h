/* cpumode.h: the guest CPU a node's domains get (node.cpu_mode).
 *
 * Hosts differ: host-passthrough and host-model crash QEMU at start on some
 * (nested or PVM kernels: "failed to set MSR 0x10a ... kvm_buf_set_msrs"), a
 * named model may lack a flag libvirt insists on. So the mode is a node
 * setting: "auto" (probed once per node, cpuprobe.h), "host-passthrough",
 * "host-model" or "custom:<model>" (written with check='none' and
 * fallback='allow', which is what lets qemu64 start on an AMD host whose
 * libvirt would refuse it for a missing svm flag).
 *
 * Pure functions only (no libvirt connection): parsing, the <cpu> element,
 * reading the mode back from a domain XML, and telling a start failure caused
 * by the CPU from any other. */
#ifndef VCL_CPUMODE_H
#define VCL_CPUMODE_H
#include <stdbool.h>
#include <stddef.h>
#include <libxml/tree.h>
#include "base/error.h"

typedef enum {
    CPU_MODE_AUTO,
    CPU_MODE_HOST_PASSTHROUGH,
    CPU_MODE_HOST_MODEL,
    CPU_MODE_CUSTOM,
    CPU_MODE__COUNT
} cpu_mode_kind;

#define CPU_MODEL_MAX 64
/* "custom:" + model + NUL */
#define CPU_MODE_STR_MAX (7 + CPU_MODEL_MAX + 1)

typedef struct cpu_mode {
    cpu_mode_kind kind;
    char model[CPU_MODEL_MAX + 1];   /* CPU_MODE_CUSTOM only */
} cpu_mode;

const char *cpu_mode_kind_name(cpu_mode_kind k);
/* Parse "auto", "host-passthrough", "host-model" or "custom:<model>" (model:
 * letters, digits, '.', '_', '-', not starting with '.' or '-', at most 64).
 * false + permanent error naming the value otherwise. */
bool cpu_mode_parse(const char *s, cpu_mode *out, vcl_error *e);
/* The same spelling back ("custom:EPYC"). */
void cpu_mode_format(const cpu_mode *m, char *buf, size_t cap);
/* Fill an empty <cpu> element for a concrete mode (not auto): attributes and
 * <model>. Sets *ok false when libxml2 runs out of memory. */
void cpu_mode_fill_xml(xmlNodePtr cpu, const cpu_mode *m, bool *ok);
/* The mode a domain XML's <cpu> asks for, in node.cpu_mode spelling; "" when
 * the XML has no <cpu mode> (or cannot be read). */
void cpu_mode_from_domain_xml(const char *xml, char *buf, size_t cap);

/* Did this start (or define) fail because of the guest CPU? Looks at the
 * libvirt error code (VIR_ERR_CPU_INCOMPATIBLE) and at the message libvirt
 * relays from QEMU ("failed to set MSR", "CPU model ... not supported",
 * "host CPU does not provide required features", ...). When it did, *why
 * gets the shortest useful line of the message. */
bool cpu_start_failure(int code, const char *msg, char *why, size_t cap);

/* A start that failed because QEMU died before libvirt could read why
 * ("failed to connect to monitor socket: Connection refused", "process
 * exited while connecting to monitor" with no QEMU line after it): a race
 * between QEMU's exit and libvirt's monitor connection that hides the reason
 * (e.g. the MSR crash). Starting again once usually shows the real message. */
bool cpu_start_unexplained(const char *msg);

/* Turn e (a failed start or define on node with cpu mode `mode`) into the
 * permanent error operators need when cpu_start_failure says so:
 * "node N cannot start a guest with CPU mode M: <why>; run `vclctl node check
 * N`, then `vclctl node set N --cpu-mode auto` (or a mode it reports
 * working)". Leaves e alone otherwise. true when it rewrote e. */
bool cpu_start_error(vcl_error *e, int code, const char *node, const char *mode);
#endif
