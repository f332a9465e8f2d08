/* transport_impl.h: private to the transport module (transport.c and the
 * per-kind files such as transport_ssh.c; unit tests may include it). The ops
 * table a kind fills, the transport object, and the few ssh internals that
 * tests check directly. Callers of the transport use transport.h only. */
#ifndef VCL_TRANSPORT_IMPL_H
#define VCL_TRANSPORT_IMPL_H
#include "transport.h"

typedef struct transport_ops {
    const char *kind;
    bool (*open)(vcl_transport *t, const transport_opts *opts, vcl_error *e);
    void (*close)(vcl_transport *t);
    bool (*exec)(vcl_transport *t, const char *const argv[], int timeout_s,
                 transport_result *res, vcl_error *e);
    /* follow=false: lstat (a final symbolic link is described, not followed) */
    bool (*stat)(vcl_transport *t, const char *path, transport_stat_info *st, bool follow,
                 vcl_error *e);
    bool (*write_file)(vcl_transport *t, const char *path, const void *data, size_t len,
                       mode_t mode, vcl_error *e);
    bool (*read_file)(vcl_transport *t, const char *path, char **data, size_t *len, vcl_error *e);
    bool (*rename)(vcl_transport *t, const char *from, const char *to, vcl_error *e);
    bool (*rename_noreplace)(vcl_transport *t, const char *from, const char *to,
                             bool *existed, vcl_error *e);
    bool (*remove)(vcl_transport *t, const char *path, vcl_error *e);
    /* One directory (its parent exists), given exactly mode (no umask);
     * *existed (and false) when something is at path already. */
    bool (*mkdir)(vcl_transport *t, const char *path, mode_t mode, bool *existed, vcl_error *e);
    /* The node user: the transport's own uid and a name for messages. */
    bool (*whoami)(vcl_transport *t, unsigned *uid, char *name, size_t name_len, vcl_error *e);
    /* A name for uid on the node for messages ("nobody"); NULL op or false:
     * messages show the number only. */
    bool (*user_name)(vcl_transport *t, unsigned uid, char *name, size_t name_len);
    /* Can the node user create files in the existing directory path? */
    bool (*writable)(vcl_transport *t, const char *path, bool *writable, vcl_error *e);
    /* statvfs: bytes free for the node user (-1 unknown) and a read-only mount. */
    bool (*fsinfo)(vcl_transport *t, const char *path, long long *free_bytes, bool *readonly,
                   vcl_error *e);
    /* The canonical absolute path of an existing path (no links, no . or ..). */
    bool (*realpath)(vcl_transport *t, const char *path, char *out, size_t out_len, vcl_error *e);
    bool (*list_dir)(vcl_transport *t, const char *dir, char ***names, size_t *n, vcl_error *e);
    bool (*copy_in)(vcl_transport *t, const char *local_src, const char *dst,
                    transport_progress_fn progress, void *opaque, vcl_error *e);
    bool (*copy_out)(vcl_transport *t, const char *src, const char *local_dst,
                     transport_progress_fn progress, void *opaque, vcl_error *e);
    bool (*glob)(vcl_transport *t, const char *pattern, char ***paths, size_t *n, vcl_error *e);
} transport_ops;

struct vcl_transport {
    const transport_ops *ops;
    void *priv;                 /* per-kind state: NULL for local, the node's session pool for ssh */
    transport_guard_fn guard;   /* transport_set_guard; NULL = none */
    void *guard_ctx;
};

/* ---- helpers both kinds use (transport.c) ---- */

/* Node file errors: what an operator must fix (ENOENT, EACCES, EROFS, ...)
 * is permanent, the rest (ENOSPC, EIO, EAGAIN, ...) may pass and is
 * retryable. */
vcl_err_class transport_errno_class(int err);
/* "<what> '<path>': <strerror(err)>" of that class into e; returns false. */
bool transport_errno_error(vcl_error *e, int err, const char *what, const char *path);
/* A node file that is not a regular file where one is needed (permanent):
 * "refusing to <verb> '<path>'<where>: it is <kind>, not a regular file ..."
 * (where: "" or " on user@host:port"). Returns false. */
bool transport_not_regular(vcl_error *e, const char *verb, const char *path, const char *where,
                           unsigned mode);
/* Open a file on THIS host that must be a regular file, for reading or for
 * writing (created 0644 when missing; truncated only after the checks):
 * never blocks on a FIFO; follow=false refuses a final symbolic link; a file
 * to write must have no other hard link. The fd (blocking) or -1 with e set
 * (verb: "read", "write", "copy" for the message). */
int transport_open_regular(const char *path, bool write, bool follow, const char *verb,
                           vcl_error *e);
/* st from a struct stat-like mode, uid, gid, size and mtime. */
void transport_stat_fill(transport_stat_info *st, unsigned mode, unsigned uid, unsigned gid,
                         long long size, long long mtime);
/* Can (uid, gids) write and search a directory with this mode and owner?
 * uid 0 always can (a read-only mount aside). */
bool transport_mode_writable(unsigned mode, unsigned owner, unsigned group, unsigned uid,
                             const unsigned *gids, size_t n_gids);

/* A command's captured stdout or stderr, bounded by cap bytes (always
 * NUL-terminated). */
typedef struct transport_capbuf {
    char *buf;
    size_t len, cap;
    bool keep_tail;      /* on overflow keep the last cap bytes instead of the first */
    bool truncated;
} transport_capbuf;
/* false when out of memory; the buffer is freed by the caller (free(b->buf)). */
bool transport_capbuf_init(transport_capbuf *b, size_t cap, bool keep_tail);
void transport_capbuf_add(transport_capbuf *b, const char *data, size_t n);

/* Growable array of strings for list_dir and glob; starts as { 0 }, freed
 * with transport_names_free(v, n). */
typedef struct transport_strvec {
    char **v;
    size_t n, cap;
} transport_strvec;
/* Appends a copy of s; false when out of memory. */
bool transport_strvec_push(transport_strvec *sv, const char *s);
/* names in byte order (strcmp), as list_dir and glob return them. */
void transport_names_sort(char **names, size_t n);

/* The "ssh" kind (transport_ssh.c). */
extern const transport_ops transport_ssh_ops;

/* argv as one command line for a remote POSIX shell: every argument in single
 * quotes (a quote inside becomes '\''), separated by single spaces; nothing
 * in any argument can reach the shell as syntax. malloc'd; NULL when out of
 * memory or argv is empty. */
char *transport_sh_quote_argv(const char *const argv[]);

/* Counters of the session pool behind an ssh transport (tests, logs). */
typedef struct transport_ssh_stats {
    unsigned long connects;     /* sessions opened (handshake + auth) so far */
    unsigned long uses;         /* operations that checked a session out */
    unsigned long reconnects;   /* operations retried on a new session after a dead one */
    int open;                   /* sessions alive now (idle + in use) */
    int idle;                   /* sessions waiting in the pool */
} transport_ssh_stats;
bool transport_ssh_stats_get(const vcl_transport *t, transport_ssh_stats *st);
/* Close every idle pooled session of every node (tests; the worker leaves the
 * pool to its idle timeout and to exit). */
void transport_ssh_close_idle(void);
#endif
