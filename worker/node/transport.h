/* transport.h: how the worker reaches a node's shell and files.
 * One interface, two kinds: "local" (this host, argv via fork/exec, never a
 * shell) and "ssh" (libssh2, transport_ssh.c: key auth, host key checked
 * against a known_hosts file, every argument single-quoted for the remote
 * POSIX shell, files through SFTP; sessions pooled per node and reused by
 * all threads and jobs, see the comment at the top of transport_ssh.c).
 * Commands are always argv arrays. All functions fill a vcl_error on
 * failure: unreachable/timeouts are retryable, bad arguments, unknown or
 * changed host keys and refused keys permanent. */
#ifndef VCL_TRANSPORT_H
#define VCL_TRANSPORT_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "base/error.h"

typedef struct vcl_transport vcl_transport;

typedef struct transport_opts {
    const char *host;          /* ssh only: node row ssh_host ("[::1]" allowed) */
    int port;                  /* ssh only: node row ssh_port; 0 = 22 */
    const char *user;          /* ssh only: node row ssh_user; NULL/"" = this process's user */
    const char *private_key;   /* ssh only: config ssh_private_key (required) */
    const char *known_hosts;   /* ssh only: config ssh_known_hosts (required) */
    int connect_timeout_s;     /* ssh only: TCP connect + handshake + auth; 0 = 15 */
    int keepalive_s;           /* ssh only: keepalive period while a command runs; 0 = 15. No
                                * byte from the node for 4 periods: it stopped answering (the
                                * command fails as retryable) */
} transport_opts;

typedef struct transport_result {
    int status;        /* exit status; 128+N when killed by signal N */
    char *out;         /* captured stdout, NUL-terminated (may be truncated at 1 MiB) */
    char *err;         /* captured stderr, NUL-terminated (may be truncated at 64 KiB) */
} transport_result;

/* What stat/lstat found at a path. transport_stat follows symbolic links
 * (is_link is then always false); transport_lstat does not: a link is
 * is_link with its own mode and owner, never is_dir or is_reg. */
typedef struct transport_stat_info {
    bool exists;
    bool is_dir;
    bool is_reg;       /* a regular file */
    bool is_link;      /* a symbolic link (transport_lstat only) */
    long long size;
    long long mtime;
    unsigned mode;     /* st_mode: file type bits and permissions (mode & 07777) */
    unsigned uid;
    unsigned gid;
    /* The file's identity, known only where the transport sees st_dev and
     * st_ino (local; SFTP has no inode): has_id false, the rest 0, over ssh. */
    bool has_id;
    unsigned long long dev, ino;
    long long mtime_ns, ctime_ns; /* nanoseconds since the epoch */
} transport_stat_info;

/* Verdict on a directory on the node: exists, is a directory (not a symlink), owner, mode,
 * writable by the transport's user, free bytes (statvfs / `df`), and whether it is safe
 * (not world-writable without sticky bit, not owned by another non-root user). */
typedef struct transport_dir_verdict {
    bool exists, is_dir, writable, safe;
    unsigned uid; unsigned mode; long long free_bytes;  /* -1 unknown */
    char problem[256];   /* "" when safe, else what is wrong */
    char fix[256];       /* "" or the shell command that fixes it */
} transport_dir_verdict;

/* Progress callback for long copies: bytes done of total (total may be 0 = unknown). */
typedef void (*transport_progress_fn)(void *opaque, long long done, long long total);

/* kind: "local" (opts may be NULL) or "ssh". */
vcl_transport *transport_new(const char *kind, const transport_opts *opts, vcl_error *e);
void transport_free(vcl_transport *t);
const char *transport_kind(const vcl_transport *t);

/* A check made before every call that may change something (exec, write,
 * rename, remove, mkdir, copies): false + e refuses the call. A job sets it
 * to job_check_ours, so a thread that lost its job (lease gone, or stage
 * deadline passed while it was stuck on a hung node) never acts on the node
 * again. NULL = none (the default). */
typedef bool (*transport_guard_fn)(void *ctx, vcl_error *e);
void transport_set_guard(vcl_transport *t, transport_guard_fn fn, void *ctx);

/* Run argv[0] with args (argv NULL-terminated). true when the command ran (its
 * exit status is in res->status, possibly non-zero); false when it could not
 * be run or timed out (killed; retryable). timeout_s 0 = none. */
bool transport_exec(vcl_transport *t, const char *const argv[], int timeout_s,
                    transport_result *res, vcl_error *e);
void transport_result_clear(transport_result *res);
/* exec that also requires status 0; on non-zero fills e with the command's
 * name, status and the last line of stderr (class cls). */
bool transport_run(vcl_transport *t, const char *const argv[], int timeout_s,
                   vcl_err_class cls, transport_result *res_or_null, vcl_error *e);
/* The error transport_run gives for a finished command: "<argv0> <argv1>
 * failed (exit N): <last non-empty stderr line, else stdout's>". Returns false. */
bool transport_status_error(const char *const argv[], const transport_result *res,
                            vcl_err_class cls, vcl_error *e);

/* A missing path is success with st->exists false. */
bool transport_stat(vcl_transport *t, const char *path, transport_stat_info *st, vcl_error *e);
/* stat without following a final symbolic link. */
bool transport_lstat(vcl_transport *t, const char *path, transport_stat_info *st, vcl_error *e);
/* "a regular file", "a directory", "a symbolic link", "a FIFO", "a socket",
 * "a character device", "a block device" or "a special file" for st->mode. */
const char *transport_file_kind(unsigned mode);
/* A path the worker is about to create, read or hand to a command on the
 * node: true when it is missing (*exists false; exists may be NULL) or a
 * regular file (lstat: a symbolic link is not one). Anything else (a link,
 * a FIFO, a device, a directory) is a permanent error naming the path and
 * what is there: nothing planted there is followed, read or written. */
bool transport_check_file(vcl_transport *t, const char *path, bool *exists, vcl_error *e);
/* Verdict on a directory on the node: exists, is a directory (not a symlink),
 * owner, mode, writable by the transport's user, free bytes (statvfs), and
 * whether it is safe: neither it nor a directory above it is world-writable
 * without the sticky bit or owned by a user other than root and the
 * transport's user (who could otherwise swap the files in it), and it is not
 * a symbolic link. For a missing path, safe, writable and free_bytes are
 * those of the nearest existing directory above it (where mkdir_p would
 * create it). problem and fix say what is wrong and the command that fixes
 * it. false only when the check itself could not run (node unreachable). */
bool transport_dir_check(vcl_transport *t, const char *path, transport_dir_verdict *v,
                         vcl_error *e);
/* Files on the node are never followed through a symbolic link, and must be
 * regular files: read_file and copy_out refuse a source, write_file and
 * copy_in a destination, that is a link, a FIFO, a device or a directory
 * (permanent error naming the path and what is there); a FIFO never blocks.
 * Write data to path atomically (temp name in the same dir made with an
 * exclusive create, fsync, rename). */
bool transport_write_file(vcl_transport *t, const char *path, const void *data, size_t len,
                          mode_t mode, vcl_error *e);
/* Read a whole (small) file; *data malloc'd and NUL-terminated. */
bool transport_read_file(vcl_transport *t, const char *path, char **data, size_t *len, vcl_error *e);
bool transport_rename(vcl_transport *t, const char *from, const char *to, vcl_error *e);
/* Remove a file; a missing file is success. */
bool transport_remove(vcl_transport *t, const char *path, vcl_error *e);
/* mkdir -p: every directory it creates gets exactly mode (no umask) and
 * belongs to the transport's user; every existing one on the way must be
 * safe as transport_dir_check says, and the last one must be a directory,
 * not a symbolic link to one: otherwise a permanent error with the problem
 * and the command that fixes it. */
bool transport_mkdir_p(vcl_transport *t, const char *path, mode_t mode, vcl_error *e);
/* Names (not paths) in dir, excluding . and ..; *names is a malloc'd array of
 * malloc'd strings; free with util_strv_free (base/util.h). */
bool transport_list_dir(vcl_transport *t, const char *dir, char ***names, size_t *n, vcl_error *e);
/* Copy a file from this host onto the node (local: a plain copy keeping
 * sparseness). Writes dst directly; callers use a temp name and rename.
 * ssh: streamed over SFTP with holes kept (SEEK_HOLE and all-zero 64 KiB
 * blocks become SFTP seeks); when dst already exists and is a prefix of the
 * source (a copy cut short: 17 blocks compared), the copy resumes at its
 * size, else dst is truncated. progress is called with (done, total) at the start,
 * every 64 MiB and at the end. */
bool transport_copy_in(vcl_transport *t, const char *local_src, const char *dst,
                       transport_progress_fn progress, void *opaque, vcl_error *e);
/* Copy a file from the node onto this host (the reverse of copy_in; local:
 * the same sparse local copy). Writes local_dst directly (created or
 * truncated, all-zero blocks left as holes, fsync'd); callers use a temp
 * name, check its size and rename. ssh: read through SFTP; no resume. */
bool transport_copy_out(vcl_transport *t, const char *src, const char *local_dst,
                        transport_progress_fn progress, void *opaque, vcl_error *e);

/* Rename that never replaces: when `to` already exists nothing changes,
 * *existed is set true and false is returned (permanent error). Used where a
 * file must never be overwritten (master images). */
bool transport_rename_noreplace(vcl_transport *t, const char *from, const char *to,
                                bool *existed, vcl_error *e);
/* Expand a glob(7) pattern on the node (repository paths may hold wildcards).
 * *paths is a sorted, malloc'd array of malloc'd paths (free with
 * util_strv_free); no match is success with *n == 0. */
bool transport_glob(vcl_transport *t, const char *pattern, char ***paths, size_t *n, vcl_error *e);
#endif
