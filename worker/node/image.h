/* image.h: master images and COW disks on a node (VCL's pre_define).
 *
 * image_ensure_master: if <master_path> is missing, find the image in the
 * node's repository paths, and under a lock per node and image re-check,
 * remove the stale recorded temp files (node/temps.h: only those a job
 * whose lease is gone recorded), inspect the source (node/imgtrust.h: format from
 * the file name, no backing file, data file or outside vmdk extent),
 * convert it with that format named (-f) to "<master>.tmp-vcl+<random>"
 * (names_temp, recorded in vcl.temp_file before it is created), check that it stands alone, verify with `qemu-img check`,
 * and rename into place. A partial file is
 * never taken for a master. Missing everywhere is a permanent error.
 * With repo_t set (node.repository_location = 'management') the repository
 * is searched on the management host and the image is streamed to the node
 * with transport_copy_in (SFTP for an ssh node) as the temp file, its
 * size compared, inspected again there, converted on the node into
 * "<temp>-conv" when
 * its format is not the master's, checked and renamed the same way.
 *
 * image_ensure_cow: create <cow_path> with
 * `qemu-img create -f FMT -F FMT -b <master> <cow>.tmp-vcl+<random>`
 * (recorded the same way) then rename; an
 * existing COW whose backing file is the master is kept, a wrong one is
 * replaced. */
#ifndef VCL_IMAGE_H
#define VCL_IMAGE_H
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include "base/error.h"
#include "node/temps.h"
#include "node/transport.h"

/* Lock per (node, image revision); acquire=true blocks up to timeout_s and
 * returns false (retryable error) when it cannot get it. */
typedef bool (*image_lock_fn)(void *opaque, bool acquire, int timeout_s, vcl_error *e);
/* Still held? Asked right before a copied master is renamed into place:
 * false (e says why) stops the copy there. */
typedef bool (*image_lock_held_fn)(void *opaque, vcl_error *e);
typedef void (*image_progress_fn)(void *opaque, const char *what, long long done, long long total);

typedef struct image_req {
    vcl_transport *t;
    /* Where repo_paths are: NULL = on the node (t); else a transport to the
     * management host (local): repository images are looked up there and
     * streamed to the node with transport_copy_in. */
    vcl_transport *repo_t;
    const char *master_path;
    const char *cow_path;
    const char *file_stem;
    const char *disk_format;          /* "qcow2" */
    const char *const *repo_paths;    /* node.repository_paths; entries may hold wildcards */
    size_t n_repo;
    long long reservation_id;         /* for logs */
    const node_temps *temps;          /* recorded temp files; NULL (unit tests): none recorded,
                                         none removed */
    image_lock_fn lock;               /* may be NULL (no locking, tests) */
    image_lock_held_fn lock_held;     /* may be NULL (not checked) */
    void *lock_opaque;
    int lock_timeout_s;               /* how long to wait for the lock; 0 = 600 */
    image_progress_fn progress;       /* may be NULL */
    void *progress_opaque;
    int command_timeout_s;            /* for qemu-img convert/check; 0 = 7200 */
    char *how;                        /* may be NULL: image_ensure_master writes how it got */
    size_t how_len;                   /* the master ("streamed from the management host: ...") */
    transport_stat_info *cow_made;    /* may be NULL: image_ensure_cow's lstat of the COW it
                                         created or found backed by the master (zeroed else) */
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
/* `qemu-img check [-U] -f FMT -- PATH` on the node. *passed for exit 0
 * (clean), 3 (leaked clusters only) and 63 (format without checks); a failed
 * check is *passed false with the reason in e (permanent). false only when
 * the command could not run. timeout_s 0 = 7200. */
bool qimg_check_path(vcl_transport *t, const char *path, const char *fmt, bool shared,
                     int timeout_s, bool *passed, vcl_error *e);

/* Where is the image in the repository? Fills found (a path on the node);
 * false with permanent error when nowhere. Ignores .xml/.txt/.vmx. */
bool image_find_in_repository(const image_req *r, char *found, size_t found_len, vcl_error *e);

/* Where a node can get an image (VCL's does_image_exist / get_image_size):
 * first the node itself (master_path, the only file a load uses there; temp
 * files "<master>.tmp-*" never count), then the repository paths in order
 * (wildcards allowed) with the names image_find_in_repository accepts. A
 * split vmdk ("<stem>.vmdk" descriptor plus "<stem>-s001.vmdk"... sparse or
 * "<stem>-f001.vmdk"/"<stem>-flat.vmdk" flat extents in the same directory)
 * is one image made of all those files; its size is their sum. Sizes are
 * the files' sizes on the node (what a copy moves), not virtual sizes. */
typedef enum {
    IMAGE_AT_NONE,          /* nowhere */
    IMAGE_AT_NODE,          /* the master is on the node */
    IMAGE_AT_REPOSITORY,    /* in a repository path */
    IMAGE_AT__COUNT
} image_at;

const char *image_at_name(image_at a);  /* "missing", "node", "repository" */

typedef struct image_location {
    image_at at;
    char path[PATH_MAX];    /* the master, or the repository file (a split vmdk's descriptor) */
    int n_files;            /* files that make up the image (split vmdk: descriptor + extents) */
    long long size_bytes;   /* their sizes summed */
    long long size_mb;      /* size_bytes / 1 MiB, rounded down (VCL: integer MB) */
} image_location;

/* Look on the node, then in the repository. true when the look-up ran
 * (loc->at says where, IMAGE_AT_NONE when nowhere); false + e only when it
 * could not run (node unreachable, bad request). r->cow_path is not used. */
bool image_locate(const image_req *r, image_location *loc, vcl_error *e);
/* VCL's does_image_exist: *exists from image_locate; loc may be NULL. */
bool image_exists(const image_req *r, bool *exists, image_location *loc, vcl_error *e);
/* VCL's get_image_size: bytes and MB of the master on the node, else of the
 * repository copy; missing everywhere is a permanent error. loc may be NULL. */
bool image_size(const image_req *r, long long *bytes, long long *mb, image_location *loc,
                vcl_error *e);
bool image_ensure_master(const image_req *r, vcl_error *e);
bool image_ensure_cow(const image_req *r, vcl_error *e);
#endif
