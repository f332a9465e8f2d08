/* op_common.h: pieces several operations share: removing a computer's
 * domains (by recorded ownership and libvirt metadata, never by loose
 * pattern), waiting for a guest to boot, and the operation tables. */
#ifndef VCL_OP_COMMON_H
#define VCL_OP_COMMON_H
#include <stdbool.h>
#include <stddef.h>
#include "node/image.h"
#include "node/temps.h"
#include "queue/job.h"
#include "queue/stage.h"

typedef struct op_cleanup_stats {
    int domains;
    int files;
    char names[512];   /* comma-separated domain names removed */
} op_cleanup_stats;

/* Does this domain belong to the job's computer? By recorded UUID/name, by
 * the <metadata> owner, or by carrying exactly the name this load will use. */
bool op_domain_owned(const job *j, virDomainPtr dom);
/* Destroy, undefine (with snapshot metadata) every domain of the computer and
 * remove the disks and XML files they own (only files in the node's COW/XML
 * dirs whose names start with "<computer>_"; never a master). Also removes
 * the recorded COW/XML of a load that crashed before define. */
bool op_remove_computer_domains(job *j, op_cleanup_stats *s, vcl_error *e);
/* post_load per OS type: 'none' returns at once; 'linux'/'windows' wait for a
 * ready line on the serial console log (<xml dir>/<file base>.console.log),
 * up to the configured timeout; the timeout error quotes the last line the
 * guest printed. A guest that stops running while booting fails at once. */
bool op_wait_booted(job *j, char *detail, size_t dlen, vcl_error *e);
/* Pure scans of a serial console log (data need not be NUL-terminated).
 * The ready line is a line that starts (after '\r', blanks and terminal
 * escape sequences) with "VCL-READY", or a getty prompt: a line ending in
 * "login:" (then optional blanks). A kernel message or a shell echo that only
 * contains the marker does not count. On true, line gets that line. */
bool op_console_ready(const char *data, size_t len, char *line, size_t linelen);
/* The last line with something printable in it; "" when none. */
void op_console_last_line(const char *data, size_t len, char *line, size_t linelen);
/* The computer's recorded domain (computer.domain_uuid, else domain_name):
 * *dom NULL (and true) when none is recorded or it is gone from the node. */
bool op_recorded_domain(job *j, virDomainPtr *dom, vcl_error *e);
/* The same, but a missing domain is a permanent error: "computer X has no
 * loaded domain; load it first". */
bool op_require_domain(job *j, virDomainPtr *dom, vcl_error *e);
/* Shut dom down gracefully: an ACPI shutdown request every
 * OP_SHUTDOWN_RESEND_S (a guest still booting may miss the first), the
 * state polled twice a second, destroy after timeout_s (0: at once). Off
 * already is success; a crashed domain is destroyed (it still holds its
 * resources); a domain that pauses or crashes while shutting down is
 * destroyed at once. detail says which of these happened. false only when
 * libvirt cannot read the state or destroy the domain. */
#define OP_SHUTDOWN_RESEND_S 5
bool op_shutdown_domain(job *j, virDomainPtr dom, int timeout_s, char *detail, size_t dlen,
                        vcl_error *e);

/* The job's timeout for one command on the node (qemu-img, copies):
 * command_timeout_seconds, or its default for a job without a config. */
int op_command_timeout(const job *j);

/* The job's recorded temp files on its node (node/temps.h), kept in
 * vcl.temp_file through job_db.h's job_temp_* (fenced on its lease). */
node_temps op_temps(job *j);

/* Stage functions shared by several operations' tables:
 * remove every domain of the computer with its disks, then RELOAD with no
 * image (load's cleanup, delete, maintenance); */
bool op_stage_remove_domains(void *job, char *detail, size_t dlen, vcl_error *e);
/* ask libvirt (node_status check) and write what it says back. */
bool op_stage_check_status(void *job, char *detail, size_t dlen, vcl_error *e);

/* op_load.c: the master image request of the job's node and revision (the
 * image lock is the job's vcl.image_lock row, taken under its lease), with
 * its progress reporter (a copy's progress as the running stage's detail)
 * and where image_ensure_master says how it got the master: shared by
 * pre_define and stage_image. op_master_detail: "master=PATH (master HOW);
 * <the copy's last progress line>" for the stage log. */
typedef struct op_master {
    image_req req;            /* req.temps points at temps: init in place, never copy */
    node_temps temps;
    job_copy_progress prog;
    char how[PATH_MAX + 128];
} op_master;
bool op_master_init(job *j, op_master *m, vcl_error *e);
void op_master_detail(const job *j, const op_master *m, char *detail, size_t dlen);

extern const op_def op_load;
/* op_power.c */
extern const op_def op_power_on;
extern const op_def op_power_off;
extern const op_def op_power_reset;
extern const op_def op_shutdown;
/* op_snapshot.c */
extern const op_def op_snapshot_create;
extern const op_def op_snapshot_delete;
extern const op_def op_snapshot_revert;
/* op_delete.c */
extern const op_def op_delete;
extern const op_def op_maintenance;
/* op_capture.c */
extern const op_def op_capture;
/* op_node_check.c (a node's reservation: no computer) */
extern const op_def op_node_check;
/* op_stage_image.c (a node's reservation with an image revision) */
extern const op_def op_stage_image;
#endif
