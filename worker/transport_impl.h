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
    bool (*stat)(vcl_transport *t, const char *path, transport_stat_info *st, vcl_error *e);
    bool (*write_file)(vcl_transport *t, const char *path, const void *data, size_t len,
                       mode_t mode, vcl_error *e);
    bool (*read_file)(vcl_transport *t, const char *path, char **data, size_t *len, vcl_error *e);
    bool (*rename)(vcl_transport *t, const char *from, const char *to, vcl_error *e);
    bool (*rename_noreplace)(vcl_transport *t, const char *from, const char *to,
                             bool *existed, vcl_error *e);
    bool (*remove)(vcl_transport *t, const char *path, vcl_error *e);
    bool (*mkdir_p)(vcl_transport *t, const char *path, mode_t mode, vcl_error *e);
    bool (*list_dir)(vcl_transport *t, const char *dir, char ***names, size_t *n, vcl_error *e);
    bool (*copy_in)(vcl_transport *t, const char *local_src, const char *dst,
                    transport_progress_fn progress, void *opaque, vcl_error *e);
    bool (*glob)(vcl_transport *t, const char *pattern, char ***paths, size_t *n, vcl_error *e);
} transport_ops;

struct vcl_transport {
    const transport_ops *ops;
    void *priv;                 /* per-kind state: NULL for local, the node's session pool for ssh */
};

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
