/* nodestatus.h: VCL's node_status check, asked of libvirt rather than the guest.
 *   READY      the domain exists, runs, its disk is the recorded COW whose
 *              backing file is the expected master, and post_load has run;
 *   POST_LOAD  all of that except post_load;
 *   RELOAD     anything else (reason says which condition failed). */
#ifndef VCL_NODESTATUS_H
#define VCL_NODESTATUS_H
#include <limits.h>
#include <stdbool.h>
#include "base/error.h"
#include "node/transport.h"

typedef struct node_status_report {
    char status[16];        /* "READY", "POST_LOAD", "RELOAD" */
    char reason[512];       /* why (always set) */
    char computer[128];
    char node[128];
    char domain[256];       /* recorded domain name, "" if none */
    char domain_state[32];  /* "running", "shutoff", ..., "missing" */
    char revision[160];     /* "<image>:<revision>" loaded, "" if none */
} node_status_report;

/* The facts row the check rests on: what the computer row records and how
 * to reach its node (job_db.h fetches it: node_status_row_fetch,
 * job_status_row). */
typedef struct node_status_row {
    char computer[128];
    char domain[256];          /* recorded domain name, "" if none */
    char domain_uuid[40];      /* "" if none */
    char cow[PATH_MAX];        /* recorded COW, "" if none */
    char master[PATH_MAX];     /* recorded master, "" if none */
    bool post_load_done;
    char node[128];
    char libvirt_uri[512];
    char transport[16];
    char revision[160];        /* "<image>:<revision>" loaded, "" if none */
    char ssh_host[256];
    int ssh_port;
    char ssh_user[64];
} node_status_row;

/* Ask libvirt on the row's node, fill out. false only when the check itself
 * could not run (node unreachable: retryable). ssh: the key, known_hosts
 * and connect timeout to reach an ssh node (host, port and user come from
 * the row); NULL = none, and then ssh nodes fail (no key). */
bool node_status_check(const node_status_row *row, const transport_opts *ssh,
                       node_status_report *out, vcl_error *e);

#include <libvirt/libvirt.h>
#include "node/transport.h"

/* The facts the decision rests on (gathered from libvirt and the node). */
typedef struct node_status_facts {
    bool recorded;          /* the computer row records a domain */
    bool domain_exists;
    int domain_state;       /* virDomainState */
    bool disk_matches;      /* the domain's disk is the recorded COW */
    bool backing_matches;   /* the COW's backing file is the recorded master */
    bool post_load_done;
    char disk[1024];        /* what the domain really uses */
    char backing[1024];     /* what the COW is really backed by */
} node_status_facts;

/* Pure decision: status ("READY"/"POST_LOAD"/"RELOAD") and the reason. */
void node_status_decide(const node_status_facts *f, const char *cow, const char *master,
                        char *status, size_t status_len, char *reason, size_t reason_len);
/* Gather the facts for a domain recorded by uuid (or name when uuid is "").
 * known_backing: NULL, or the COW's backing file as the caller knows it
 * (it made the COW and it is still the same file): then no qemu-img info. */
bool node_status_gather(virConnectPtr conn, vcl_transport *t, const char *uuid, const char *name,
                        const char *cow, const char *master, bool post_load_done,
                        const char *known_backing, node_status_facts *f, vcl_error *e);
#endif
