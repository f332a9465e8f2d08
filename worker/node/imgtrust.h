/* imgtrust.h: what the worker trusts in an image file (README "Security
 * model"). A repository image, a streamed copy and a master are inspected
 * with an explicit format taken from the file name, never probed:
 *   qemu-img info -f FMT --backing-chain --output=json -U -- PATH
 * and refused (permanent error) when the chain has a backing file, when a
 * qcow2 names an external data file, or when a vmdk names an extent that is
 * not the file itself or a regular file next to it ("<dir>/<name>", no
 * '/' or '..' in name). A ".raw" file with a qcow2 header is read as raw:
 * its bytes, never what its header points at. */
#ifndef VCL_IMGTRUST_H
#define VCL_IMGTRUST_H
#include <stdbool.h>
#include <stddef.h>
#include "base/error.h"
#include "node/image.h"
#include "node/transport.h"

#define IMGTRUST_MAX_EXTENTS 64

/* The format a repository file is read as, from its name: ".qcow2" qcow2,
 * ".raw" and ".img" raw, ".vmdk" vmdk; NULL for anything else. */
const char *imgtrust_format_of(const char *path);

typedef struct imgtrust_facts {
    qimg_info info;                           /* the image itself (format, sizes) */
    size_t n_extents;                         /* vmdk extents other than the file itself */
    char extents[IMGTRUST_MAX_EXTENTS][4096]; /* their paths, each "<dir of path>/<name>" */
} imgtrust_facts;

/* Pure: judge the JSON of `qemu-img info -f fmt --backing-chain
 * --output=json` for the image at path (absolute). true + facts when the
 * image stands alone; false + permanent error naming the file and what it
 * points at otherwise, or when the JSON is not what qemu-img writes (parsed
 * with libyaml's document loader: JSON is YAML flow syntax). */
bool imgtrust_judge(const char *json, const char *path, const char *fmt, imgtrust_facts *out,
                    vcl_error *e);

/* Run the command through t, judge its output, and lstat every extent (a
 * regular file, not a link). info may be NULL. what names the file in
 * errors ("repository image"). */
bool imgtrust_inspect(vcl_transport *t, const char *path, const char *fmt, const char *what,
                      qimg_info *info, vcl_error *e);

/* Trust memory (per worker process): a master that passed inspection, and
 * `qemu-img check` too when the caller says so, is not inspected again while
 * its identity on the node is unchanged: path, format, device, inode, size,
 * mtime and ctime to the nanosecond (ctime cannot be set back: any write,
 * chmod or rename onto the path changes it). Only a transport that reports
 * an identity (transport_stat_info.has_id: local) is remembered; over ssh
 * every call inspects. An entry is kept only when the identity read before
 * the inspection is the one read after it. */
typedef struct imgtrust_seen {
    transport_stat_info st; /* lstat before the inspection (or the hit) */
    bool known;             /* inspected earlier, identity unchanged */
    bool checked;           /* ... and its qemu-img check passed then */
} imgtrust_seen;

/* imgtrust_inspect unless remembered; seen (may be NULL) says which. */
bool imgtrust_inspect_known(vcl_transport *t, const char *path, const char *fmt, const char *what,
                            imgtrust_seen *seen, vcl_error *e);
/* The caller's qemu-img check of the file of seen passed: remember it, if
 * the file is still the one seen. */
void imgtrust_note_checked(vcl_transport *t, const char *path, const char *fmt,
                           const imgtrust_seen *seen);
/* Forget everything (tests; a worker never needs to). */
void imgtrust_forget(void);
/* Calls of imgtrust_inspect_known answered from memory / by inspecting. */
void imgtrust_counts(unsigned long *hits, unsigned long *misses);
#endif
