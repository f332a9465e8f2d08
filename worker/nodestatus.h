/* nodestatus.h: VCL's node_status check, asked of libvirt rather than the guest.
 *   READY      the domain exists, runs, its disk is the recorded COW whose
 *              backing file is the expected master, and post_load has run;
 *   POST_LOAD  all of that except post_load;
 *   RELOAD     anything else (reason says which condition failed). */
#ifndef VCL_NODESTATUS_H
#define VCL_NODESTATUS_H
#include <stdbool.h>
#include "db.h"
#include "error.h"

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
 * unreachable: retryable). */
bool node_status_check_computer(db_conn *db, const char *computer_name, node_status_report *out,
                                vcl_error *e);
#endif
