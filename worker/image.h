/* image.h: master images and COW disks on a node (VCL's pre_define).
 *
 * image_ensure_master: if <master_path> is missing, find the image in the
 * node's repository paths, and under a lock per node and image re-check,
 * remove stale temp files, convert/copy to "<master>.tmp-<reservation>",
 * verify with `qemu-img check`, and rename into place. A partial file is
 * never taken for a master. Missing everywhere is a permanent error.
 *
 * image_ensure_cow: create <cow_path> with
 * `qemu-img create -f FMT -F FMT -b <master> <cow>.tmp` then rename; an
 * existing COW whose backing file is the master is kept, a wrong one is
 * replaced. */
#ifndef VCL_IMAGE_H
#define VCL_IMAGE_H
#include <stdbool.h>
#include <stddef.h>
#include "error.h"
#include "transport.h"

/* Lock per (node, image revision); acquire=true blocks up to timeout_s and
 * returns false (retryable error) when it cannot get it. */
typedef bool (*image_lock_fn)(void *opaque, bool acquire, int timeout_s, vcl_error *e);
typedef void (*image_progress_fn)(void *opaque, const char *what, long long done, long long total);

typedef struct image_req {
    vcl_transport *t;
    const char *master_path;
    const char *cow_path;
    const char *file_stem;
    const char *disk_format;          /* "qcow2" */
    const char *const *repo_paths;    /* node.repository_paths; entries may hold wildcards */
    size_t n_repo;
    long long reservation_id;         /* makes temp names unique */
    image_lock_fn lock;               /* may be NULL (no locking, tests) */
    void *lock_opaque;
    image_progress_fn progress;       /* may be NULL */
    void *progress_opaque;
    int command_timeout_s;            /* for qemu-img convert/check; 0 = 7200 */
} image_req;

/* Facts from `qemu-img info --output=json`. */
typedef struct qimg_info {
    char format[32];
    long long virtual_size;
    long long actual_size;
    char backing_file[4096];          /* "" when none (full-backing-filename if present) */
    char backing_format[32];
} qimg_info;

/* Parse qemu-img's JSON (libyaml reads it); false on malformed input. */
bool qimg_info_parse(const char *json, qimg_info *out);
/* Run `qemu-img info --output=json -U PATH` on the node and parse. */
bool qimg_info_get(vcl_transport *t, const char *path, qimg_info *out, vcl_error *e);

/* Where is the image in the repository? Fills found (a path on the node);
 * false with permanent error when nowhere. Ignores .xml/.txt/.vmx. */
bool image_find_in_repository(const image_req *r, char *found, size_t found_len, vcl_error *e);
bool image_ensure_master(const image_req *r, vcl_error *e);
bool image_ensure_cow(const image_req *r, vcl_error *e);
#endif
