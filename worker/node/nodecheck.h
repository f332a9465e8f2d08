/* nodecheck.h: the preflight an operator runs after `vclctl node add` (and
 * whenever a node misbehaves): everything a load needs from the node, checked
 * through the node's real transport and libvirt connection, each item with
 * what is wrong and the command that fixes it.
 *
 * Items, in order: libvirt (reachable, versions, connect and round-trip
 * time), driver (which driver accepts the node, why others decline),
 * hypervisor (QEMU for the driver's domain type), qemu-img, the master, COW
 * and XML directories (exist, directories, writable, safe, free space), disk
 * dirs (the COW directory is not the master directory), cpu
 * (a throwaway probe domain started with each candidate mode; see
 * cpuprobe.h). An item that cannot run because an earlier one failed says so
 * and fails too. Nothing here writes to the database: the caller records the
 * CPU result (vclctl node check does). */
#ifndef VCL_NODECHECK_H
#define VCL_NODECHECK_H
#include <stdbool.h>
#include "node/cpuprobe.h"
#include "node/hvdriver.h"
#include "node/transport.h"

#define NODE_CHECK_MAX_ITEMS 16

typedef struct node_check_item {
    char item[24];        /* "libvirt", "driver", "master dir", ... */
    bool ok;
    char detail[768];     /* what was found (ok) or what is wrong */
    char fix[512];        /* "" or the command(s) that fix it */
} node_check_item;

typedef struct node_check_target {
    const char *name;
    const char *libvirt_uri;
    const char *transport;          /* "local" or "ssh" */
    const transport_opts *topts;    /* ssh: host, port, user, key, known_hosts */
    const char *master_dir;
    const char *cow_dir;
    const char *xml_dir;
    const char *cpu_mode;           /* node.cpu_mode */
    const hvdriver_set *drivers;
    const char *emulator;           /* config qemu_emulator, or NULL */
} node_check_target;

typedef struct node_check_report {
    int n;
    node_check_item items[NODE_CHECK_MAX_ITEMS];
    int failed;
    bool cpu_probed;                /* the probe ran (cpu fields below are facts) */
    cpu_probe_result cpu;           /* every auto candidate */
    char cpu_use[CPU_MODE_STR_MAX]; /* what a load would use now: the forced mode when it
                                     * starts, else the first auto candidate that did; "" none */
} node_check_report;

/* The "disk dirs" item (pure: names only): fails when the COW directory is
 * the master image directory (trailing '/' ignored), where a file stem
 * could name another computer's COW disk; one inside the other passes, with
 * a note (no name holds a '/', and the defaults nest vcl-cow in the images
 * directory). */
void node_check_disk_dirs(const char *master_dir, const char *cow_dir, node_check_item *it);

/* Run every item; never stops early. r->failed counts failed items. */
void node_check_run(const node_check_target *t, node_check_report *r);

/* The items as four columns of \x1f-separated values (item, "t"/"f",
 * detail, fix), for vcl.node_check_report (sql/functions/nodes.sql) and
 * vclctl's JSON; control characters in the node's text become spaces.
 * cols[k] are malloc'd (node_check_columns_free); false when out of memory. */
bool node_check_columns(const node_check_report *r, char *cols[4]);
void node_check_columns_free(char *cols[4]);
/* One line for a reservation's error or stage detail: "all 9 checks passed;
 * loads use CPU mode custom:kvm64", or "2 of 9 checks failed: qemu-img: ...
 * (fix: ...); cpu: ...". */
void node_check_summary(const node_check_report *r, char *buf, size_t cap);
#endif
