/* nodestatus.h: VCL's node_status check, asked of libvirt rather than the guest.
 *   READY      the domain exists, runs, its disk is the recorded COW whose
 *              backing file is the expected master, and post_load has run;
 *   POST_LOAD  all of that except post_load;
 *   RELOAD     anything else (reason says which condition failed). */
#ifndef VCL_NODESTATUS_H
#define VCL_NODESTATUS_H
#include <stdbool.h>
#include "queue/db.h"
#include "base/error.h"

typedef struct node_status_report {
    char status[16];        /* "READY", "POST_LOAD", "RELOAD" */
    char reason[512];       /* why (always set) */
    char computer[128];
    char node[128];
    char domain[256];       /* recorded domain name, "" if none */
    char domain_state[32];  /* "running", "shutoff", ..., "missing" */
    char revision[160];     /* "<image>:<revision>" loaded, "" if none */
} node_status_report;

/* Load the computer's rows, ask libvirt on its node, fill out. false only when
 * the check itself could not run (unknown computer: permanent; node
 * unreachable: retryable). Without ssh settings: ssh nodes fail (no key). */
bool node_status_check_computer(db_conn *db, const char *computer_name, node_status_report *out,
                                vcl_error *e);
#include "node/transport.h"
/* The same with the ssh key, known_hosts and connect timeout to reach an ssh
 * node (host, port and user come from the node row; NULL = none). */
bool node_status_check_computer_opts(db_conn *db, const char *computer_name,
                                     const transport_opts *ssh, node_status_report *out,
                                     vcl_error *e);

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
/* Gather the facts for a domain recorded by uuid (or name when uuid is ""). */
bool node_status_gather(virConnectPtr conn, vcl_transport *t, const char *uuid, const char *name,
                        const char *cow, const char *master, bool post_load_done,
                        node_status_facts *f, vcl_error *e);
#endif
