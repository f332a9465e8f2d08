/* transport_ssh.c: the "ssh" node transport (libssh2), see transport.h.
 *
 * Sessions. libssh2 sessions are not thread-safe, and one session shared by
 * all threads would serialise every job of a node behind the slowest command
 * (a qemu-img convert can run for many minutes). So each node (user, host,
 * port, key, known_hosts) has a process-wide POOL of sessions behind one
 * mutex: an operation (one exec, one stat, one copy...) checks a session out,
 * uses it alone, and gives it back. A worker running jobs one after another
 * on a node uses one session for all of them; N threads at once use at most
 * N sessions; at most SSH_IDLE_KEEP idle sessions are kept per node, and an
 * idle session older than SSH_IDLE_MAX_S is closed. The mutex is never held
 * across network I/O. A session that failed at the transport level (socket
 * error, timeout, protocol error) is closed, never given back; when a reused
 * idle session turns out dead before the operation changed anything on the
 * node, the operation is retried once on a new session (reconnect).
 *
 * Every session runs libssh2 in non-blocking mode: each call that would block
 * returns EAGAIN and we poll the socket with a deadline, so connect, handshake,
 * authentication, SFTP requests and commands all have timeouts; keepalives
 * (libssh2_keepalive_config) go out while a command runs, and when nothing at
 * all comes back for SSH_SILENT_PERIODS of them (sshd answers every one) the
 * node has stopped answering: the command fails as retryable long before its
 * own timeout. TCP_USER_TIMEOUT turns a vanished peer into a socket error.
 *
 * Host keys are checked with libssh2_knownhost_* against the configured
 * known_hosts file (OpenSSH format, "[host]:port" lines for ports other than
 * 22, hashed lines too). A host missing from it or a key that differs is a
 * permanent error; nothing is ever added to the file.
 *
 * Commands: argv, each argument single-quoted for the remote POSIX shell
 * (the login shell of the remote user must be a POSIX sh: sh, dash, bash),
 * run as `exec timeout -k 5 N -- 'argv0' 'argv1' ...` (coreutils timeout on
 * the node kills the whole command when timeout_s passes, even if this
 * worker died meanwhile) or `exec 'argv0' ...` without a timeout.
 *
 * Files go through SFTP (one SFTP channel per session, opened on first use).
 * OpenSSH's sftp-server renames a regular file with link()+unlink(), which
 * never replaces the target: that is rename_noreplace as is; a rename that
 * must replace (atomic write) falls back to `mv -f -T -- from to` on the node
 * when the target exists (rename(2) there; SFTP v3 has no replacing rename and
 * libssh2 does not speak posix-rename@openssh.com). */
#include "node/transport_impl.h"
#include "base/config.h"
#include "base/log.h"
#include "base/util.h"

#include <libssh2.h>
#include <libssh2_sftp.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define SSH_CONNECT_TIMEOUT_S 15      /* default when opts->connect_timeout_s is 0 */
#define SSH_IO_TIMEOUT_S 120          /* one SFTP request / channel setup without an answer */
#define SSH_KEEPALIVE_S 15            /* keepalive@openssh.com while waiting (opts->keepalive_s 0) */
#define SSH_SILENT_PERIODS 4          /* nothing received for this many keepalive periods
                                       * while keepalives go out: the node stopped answering */
#define SSH_TCP_USER_TIMEOUT_MS 60000 /* unacknowledged data for this long = dead peer */
#define SSH_KILL_GRACE_S 5            /* timeout -k: SIGKILL this long after SIGTERM */
#define SSH_WAIT_GRACE_S 30           /* beyond the remote timeout before we give up locally */
#define SSH_IDLE_MAX_S 300            /* idle sessions older than this are closed */
#define SSH_IDLE_KEEP 8               /* idle sessions kept per node */
#define OUT_CAP (1024 * 1024)         /* same caps as the local kind */
#define ERR_CAP (64 * 1024)
#define READ_FILE_CAP (64LL * 1024 * 1024)
#define COPY_CHUNK (1024 * 1024)      /* copy_in reads this much at a time */
#define STREAM_QUEUE (4 * 1024 * 1024) /* copy_in: bytes queued in libssh2, not yet acknowledged */
#define SPARSE_BLOCK (64 * 1024)      /* all-zero blocks of this size become holes */
#define PROGRESS_EVERY (64LL * 1024 * 1024)
#define RESUME_SAMPLES 16             /* blocks compared before resuming a partial copy */
#define RESUME_SAMPLE_LEN (64 * 1024)

/* ------------------------------------------------------------------ pools */

typedef struct ssh_pool ssh_pool;

typedef struct ssh_conn {
    struct ssh_conn *next;      /* idle list */
    ssh_pool *pool;
    int sock;
    LIBSSH2_SESSION *s;
    LIBSSH2_SFTP *sftp;         /* opened on first use */
    unsigned long serial;       /* "session #N" in logs */
    int64_t idle_since_ms;
    bool authed;
    /* per operation (reset at checkout) */
    bool broken;                /* transport-level failure: close it, never reuse */
    bool started;               /* the node may have changed: never retry elsewhere */
    bool timed_out;             /* the last wait hit its deadline */
    bool keepalive;             /* waits may send keepalives (a command is running) */
    bool silent;                /* the last wait gave up: nothing came back for
                                 * SSH_SILENT_PERIODS keepalive periods */
    int keepalive_s;            /* its keepalive period */
    _Atomic int64_t last_rx_ms; /* when the last byte came from the node (conn_recv) */
} ssh_conn;

struct ssh_pool {
    ssh_pool *next;
    char *host;                 /* without [] */
    char *user;
    char *key;
    char *known_hosts;
    int port;
    int connect_timeout_s;
    int keepalive_s;            /* for sessions opened from now on */
    char label[320];            /* user@host:port, for messages */
    ssh_conn *idle;
    int n_idle, n_open;
    unsigned long connects, uses, reconnects, serials;
    /* The node user's ids (`id -u`, `id -G` once per pool, under pools_mu). */
    bool have_ids;
    unsigned uid;
    unsigned gids[64];
    size_t n_gids;
};

static pthread_mutex_t pools_mu = PTHREAD_MUTEX_INITIALIZER;
static ssh_pool *pools;
static pthread_once_t ssh_once = PTHREAD_ONCE_INIT;
static int ssh_init_rc;

static void conn_close(ssh_conn *c);

static void ssh_global_init(void)
{
    ssh_init_rc = libssh2_init(0);
    atexit(transport_ssh_close_idle);
}

static bool str_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* The pool for these parameters, created on first use. Pools live until exit
 * (one per node and key: a handful). */
static ssh_pool *pool_find(const char *host, int port, const char *user, const char *key,
                           const char *known_hosts, int connect_timeout_s, int keepalive_s)
{
    ssh_pool *p;
    pthread_mutex_lock(&pools_mu);
    for (p = pools; p; p = p->next)
        if (p->port == port && str_eq(p->host, host) && str_eq(p->user, user) &&
            str_eq(p->key, key) && str_eq(p->known_hosts, known_hosts))
            break;
    if (!p && (p = calloc(1, sizeof *p))) {
        p->host = strdup(host);
        p->user = strdup(user);
        p->key = strdup(key);
        p->known_hosts = strdup(known_hosts);
        if (!p->host || !p->user || !p->key || !p->known_hosts) {
            free(p->host);
            free(p->user);
            free(p->key);
            free(p->known_hosts);
            free(p);
            p = NULL;
        } else {
            p->port = port;
            snprintf(p->label, sizeof p->label, strchr(host, ':') ? "%s@[%s]:%d" : "%s@%s:%d",
                     user, host, port);
            p->next = pools;
            pools = p;
        }
    }
    if (p) {
        p->connect_timeout_s = connect_timeout_s;
        p->keepalive_s = keepalive_s > 0 ? keepalive_s : SSH_KEEPALIVE_S;
    }
    pthread_mutex_unlock(&pools_mu);
    return p;
}

/* Under pools_mu: move idle sessions older than SSH_IDLE_MAX_S (of every
 * pool) to *out, to be closed outside the lock. */
static void pools_expire_locked(int64_t now, ssh_conn **out)
{
    for (ssh_pool *p = pools; p; p = p->next) {
        ssh_conn **pp = &p->idle;
        while (*pp) {
            ssh_conn *c = *pp;
            if (now - c->idle_since_ms > (int64_t)SSH_IDLE_MAX_S * 1000) {
                *pp = c->next;
                p->n_idle--;
                p->n_open--;
                c->next = *out;
                *out = c;
            } else {
                pp = &c->next;
            }
        }
    }
}

static void close_list(ssh_conn *c)
{
    while (c) {
        ssh_conn *next = c->next;
        conn_close(c);
        c = next;
    }
}

void transport_ssh_close_idle(void)
{
    ssh_conn *all = NULL;
    pthread_mutex_lock(&pools_mu);
    for (ssh_pool *p = pools; p; p = p->next) {
        while (p->idle) {
            ssh_conn *c = p->idle;
            p->idle = c->next;
            p->n_idle--;
            p->n_open--;
            c->next = all;
            all = c;
        }
    }
    pthread_mutex_unlock(&pools_mu);
    close_list(all);
}

bool transport_ssh_stats_get(const vcl_transport *t, transport_ssh_stats *st)
{
    memset(st, 0, sizeof *st);
    if (!t || t->ops != &transport_ssh_ops || !t->priv)
        return false;
    ssh_pool *p = t->priv;
    pthread_mutex_lock(&pools_mu);
    st->connects = p->connects;
    st->uses = p->uses;
    st->reconnects = p->reconnects;
    st->open = p->n_open;
    st->idle = p->n_idle;
    pthread_mutex_unlock(&pools_mu);
    return true;
}

/* ------------------------------------------------------------- waiting */

/* Wait until the socket is ready in the direction libssh2 is blocked on (at
 * most a second, so keepalives go out), or the deadline (0 = none) passes.
 * false on timeout (c->timed_out set): the caller's call then fails. */
static bool conn_wait(ssh_conn *c, int64_t deadline)
{
    int dir = libssh2_session_block_directions(c->s);
    struct pollfd pfd = { .fd = c->sock, .events = 0 };
    if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
        pfd.events |= POLLIN;
    if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
        pfd.events |= POLLOUT;
    if (!pfd.events)
        pfd.events = POLLIN;
    /* Keepalives only while a command runs (a long qemu-img convert: nothing
     * else crosses the connection then), and only when no packet of ours is
     * half sent: a keepalive cut short by EAGAIN would stay pending in
     * libssh2 and make the next, different packet fail (BAD_USE). */
    if (c->authed && c->keepalive && !(dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)) {
        int next = 0;
        (void)libssh2_keepalive_send(c->s, &next);
    }
    /* A command may be silent for hours, but sshd answers every keepalive:
     * no byte at all for several keepalive periods means the node (or its
     * sshd) stopped answering. A vanished host also fails through
     * TCP_USER_TIMEOUT; a stopped one still ACKs at the TCP level. */
    if (c->authed && c->keepalive &&
        util_mono_ms() - c->last_rx_ms > (int64_t)SSH_SILENT_PERIODS * c->keepalive_s * 1000) {
        c->timed_out = c->silent = true;
        return false;
    }
    int wait = 1000;
    if (deadline) {
        int64_t left = deadline - util_mono_ms();
        if (left <= 0) {
            c->timed_out = true;
            return false;
        }
        if (left < wait)
            wait = (int)left;
    }
    if (poll(&pfd, 1, wait) < 0 && errno != EINTR) {
        /* Let the libssh2 call find the socket error itself. */
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    return true;
}

/* Call until it stops saying EAGAIN or the deadline passes (then rc stays
 * LIBSSH2_ERROR_EAGAIN and c->timed_out is set). */
#define SSH_RETRY(c, deadline, rc, call)                                   \
    do {                                                                   \
        (rc) = (call);                                                     \
    } while ((rc) == LIBSSH2_ERROR_EAGAIN && conn_wait((c), (deadline)))

#define SSH_RETRY_PTR(c, deadline, ptr, call)                              \
    do {                                                                   \
        (ptr) = (call);                                                    \
    } while (!(ptr) && libssh2_session_last_errno((c)->s) == LIBSSH2_ERROR_EAGAIN && \
             conn_wait((c), (deadline)))

static int64_t io_deadline(void)
{
    return util_mono_ms() + (int64_t)SSH_IO_TIMEOUT_S * 1000;
}

/* ---------------------------------------------------------------- errors */

/* SFTP status codes (v3 and the later ones some servers send) as errno. */
static int fx_errno(unsigned long fx)
{
    switch (fx) {
    case LIBSSH2_FX_NO_SUCH_FILE: case LIBSSH2_FX_NO_SUCH_PATH: return ENOENT;
    case LIBSSH2_FX_PERMISSION_DENIED: return EACCES;
    case LIBSSH2_FX_FILE_ALREADY_EXISTS: return EEXIST;
    case LIBSSH2_FX_WRITE_PROTECT: return EROFS;
    case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM: case LIBSSH2_FX_QUOTA_EXCEEDED: return ENOSPC;
    case LIBSSH2_FX_NOT_A_DIRECTORY: return ENOTDIR;
    case LIBSSH2_FX_DIR_NOT_EMPTY: return ENOTEMPTY;
    case LIBSSH2_FX_INVALID_FILENAME: return EINVAL;
    case LIBSSH2_FX_LINK_LOOP: return ELOOP;
    case LIBSSH2_FX_OP_UNSUPPORTED: return ENOTSUP;
    case LIBSSH2_FX_EOF: return 0;
    default: return EIO;
    }
}

static const char *fx_text(unsigned long fx)
{
    switch (fx) {
    case LIBSSH2_FX_FAILURE: return "failure (the SFTP server gives no detail)";
    case LIBSSH2_FX_BAD_MESSAGE: return "bad SFTP message";
    case LIBSSH2_FX_OP_UNSUPPORTED: return "operation not supported by the SFTP server";
    default: {
        int err = fx_errno(fx);
        return err ? strerror(err) : "end of file";
    }
    }
}

/* The SFTP status of the last failed call, or -1 when the failure was not an
 * SFTP status (transport error, timeout). */
static long conn_fx(ssh_conn *c)
{
    if (c->timed_out || !c->sftp)
        return -1;
    if (libssh2_session_last_errno(c->s) != LIBSSH2_ERROR_SFTP_PROTOCOL)
        return -1;
    return (long)libssh2_sftp_last_error(c->sftp);
}

/* Fill e for a failed libssh2 call: "<what> '<path>' on <node>: <why>".
 * An SFTP status keeps the session; anything else marks it broken
 * (retryable). Returns false. */
static bool conn_fail(ssh_conn *c, vcl_error *e, const char *what, const char *path)
{
    const char *label = c->pool->label;
    const char *sep = path ? " '" : "", *q = path ? "'" : "";
    if (!path)
        path = "";
    if (c->timed_out) {
        c->broken = true;
        return vcl_error_set(e, VCL_ERR_RETRYABLE, "%s%s%s%s on %s: no answer (timed out)", what,
                             sep, path, q, label);
    }
    long fx = conn_fx(c);
    if (fx >= 0) {
        int err = fx_errno((unsigned long)fx);
        vcl_err_class cls = fx == LIBSSH2_FX_FAILURE ? VCL_ERR_RETRYABLE
                            : err               ? transport_errno_class(err)
                                                : VCL_ERR_RETRYABLE;
        return vcl_error_set(e, cls, "%s%s%s%s on %s: %s", what, sep, path, q, label,
                             fx_text((unsigned long)fx));
    }
    char *msg = NULL;
    int rc = libssh2_session_last_error(c->s, &msg, NULL, 0);
    c->broken = true;
    return vcl_error_set(e, VCL_ERR_RETRYABLE, "%s%s%s%s on %s: ssh error %d: %s", what, sep,
                         path, q, label, rc, msg && *msg ? msg : "connection lost");
}

/* --------------------------------------------------------------- connect */

static void conn_close(ssh_conn *c)
{
    if (!c)
        return;
    if (c->s) {
        /* Blocking for at most 2 s per call, so the SFTP channel is closed
         * and freed (a non-blocking shutdown that says EAGAIN frees nothing).
         * A broken session's socket is shut down first: every call then
         * fails at once and still frees what it owns. */
        if (c->broken && c->sock >= 0)
            (void)shutdown(c->sock, SHUT_RDWR);
        libssh2_session_set_timeout(c->s, 2000);
        libssh2_session_set_blocking(c->s, 1);
        if (c->sftp)
            (void)libssh2_sftp_shutdown(c->sftp);
        if (!c->broken)
            (void)libssh2_session_disconnect(c->s, "vcl-worker: session closed");
        libssh2_session_free(c->s);
    }
    if (c->sock >= 0)
        close(c->sock);
    log_debug("ssh %s: session #%lu closed", c->pool->label, c->serial);
    free(c);
}

static int tcp_connect(const char *host, int port, int64_t deadline, const char *label,
                       vcl_error *e)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res = NULL;
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    int r = getaddrinfo(host, ports, &hints, &res);
    if (r != 0) {
        vcl_error_set(e, (r == EAI_AGAIN || r == EAI_MEMORY || r == EAI_SYSTEM) ? VCL_ERR_RETRYABLE
                                                                              : VCL_ERR_PERMANENT,
                      "cannot resolve ssh host of %s: %s", label, gai_strerror(r));
        return -1;
    }
    int fd = -1, err = ETIMEDOUT;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        err = errno;
        if (err == EINPROGRESS) {
            struct pollfd pfd = { .fd = fd, .events = POLLOUT };
            for (;;) {
                int64_t left = deadline - util_mono_ms();
                if (left <= 0) {
                    err = ETIMEDOUT;
                    break;
                }
                int pr = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
                if (pr < 0 && errno == EINTR)
                    continue;
                if (pr <= 0) {
                    err = pr == 0 ? ETIMEDOUT : errno;
                    break;
                }
                socklen_t len = sizeof err;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                    err = errno;
                break;
            }
            if (err == 0)
                break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "cannot connect to %s: %s", label, strerror(err));
        return -1;
    }
    int one = 1;
    unsigned int uto = SSH_TCP_USER_TIMEOUT_MS;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, sizeof uto);
    return fd;
}

static const char *hostkey_type_name(int type)
{
    switch (type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return "ssh-rsa";
    case LIBSSH2_HOSTKEY_TYPE_DSS: return "ssh-dss";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return "ecdsa-sha2-nistp256";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return "ecdsa-sha2-nistp384";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return "ecdsa-sha2-nistp521";
#ifdef LIBSSH2_HOSTKEY_TYPE_ED25519
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return "ssh-ed25519";
#endif
    default: return "unknown";
    }
}

static int hostkey_knownhost_type(int type)
{
    switch (type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
    case LIBSSH2_HOSTKEY_TYPE_DSS: return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
#ifdef LIBSSH2_HOSTKEY_TYPE_ED25519
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return LIBSSH2_KNOWNHOST_KEY_ED25519;
#endif
    default: return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
    }
}

/* The host key algorithms for a known_hosts key type. */
static const char *knownhost_methods(int typemask)
{
    switch (typemask & LIBSSH2_KNOWNHOST_KEY_MASK) {
    case LIBSSH2_KNOWNHOST_KEY_SSHRSA: return "rsa-sha2-512,rsa-sha2-256,ssh-rsa";
    case LIBSSH2_KNOWNHOST_KEY_SSHDSS: return "ssh-dss";
    case LIBSSH2_KNOWNHOST_KEY_ECDSA_256: return "ecdsa-sha2-nistp256";
    case LIBSSH2_KNOWNHOST_KEY_ECDSA_384: return "ecdsa-sha2-nistp384";
    case LIBSSH2_KNOWNHOST_KEY_ECDSA_521: return "ecdsa-sha2-nistp521";
    case LIBSSH2_KNOWNHOST_KEY_ED25519: return "ssh-ed25519";
    default: return NULL;
    }
}

/* Like OpenSSH: ask the server first for the key types known_hosts records
 * for this host (plain-text lines only; hashed lines keep libssh2's order). */
static void prefer_known_types(LIBSSH2_SESSION *s, LIBSSH2_KNOWNHOSTS *kh, const char *host,
                               int port)
{
    char bracket[300], methods[512] = "";
    struct libssh2_knownhost *store = NULL;
    snprintf(bracket, sizeof bracket, "[%s]:%d", host, port);
    while (libssh2_knownhost_get(kh, &store, store) == 0) {
        if (!store->name)
            continue;
        if (!(port == 22 && strcmp(store->name, host) == 0) && strcmp(store->name, bracket) != 0)
            continue;
        const char *m = knownhost_methods(store->typemask);
        if (!m || strstr(methods, m))
            continue;
        size_t used = strlen(methods);
        snprintf(methods + used, sizeof methods - used, "%s%s", used ? "," : "", m);
    }
    if (methods[0] && libssh2_session_method_pref(s, LIBSSH2_METHOD_HOSTKEY, methods) != 0)
        log_debug("ssh: host key preference '%s' not supported by libssh2", methods);
}

static void base64(const unsigned char *in, size_t n, char *out, size_t outlen)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < outlen; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = tbl[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = tbl[v & 63];
    }
    out[o] = '\0';   /* OpenSSH prints SHA256 fingerprints without '=' padding */
}

static bool check_host_key(ssh_conn *c, LIBSSH2_KNOWNHOSTS *kh, vcl_error *e)
{
    ssh_pool *p = c->pool;
    size_t klen = 0;
    int ktype = 0;
    const char *key = libssh2_session_hostkey(c->s, &klen, &ktype);
    if (!key)
        return vcl_error_set(e, VCL_ERR_RETRYABLE, "%s sent no host key", p->label);
    char fp[64] = "?";
    const char *hash = libssh2_hostkey_hash(c->s, LIBSSH2_HOSTKEY_HASH_SHA256);
    if (hash)
        base64((const unsigned char *)hash, 32, fp, sizeof fp);
    struct libssh2_knownhost *found = NULL;
    int r = libssh2_knownhost_checkp(kh, p->host, p->port, key, klen,
                                     LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
                                         hostkey_knownhost_type(ktype),
                                     &found);
    switch (r) {
    case LIBSSH2_KNOWNHOST_CHECK_MATCH:
        return true;
    case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "host key of %s (%s SHA256:%s) does NOT match the key recorded for "
                             "it in %s: the node was reinstalled or someone is intercepting the "
                             "connection; check the fingerprint on the node, then replace the "
                             "line in that file",
                             p->label, hostkey_type_name(ktype), fp, p->known_hosts);
    case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "host key of %s (%s SHA256:%s) is not in the known_hosts file %s: "
                             "unknown keys are never accepted; check the fingerprint on the node "
                             "and add its line (ssh-keyscan -p %d %s)",
                             p->label, hostkey_type_name(ktype), fp, p->known_hosts, p->port,
                             p->host);
    default:
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "cannot check the host key of %s against %s (key type %s)", p->label,
                             p->known_hosts, hostkey_type_name(ktype));
    }
}

/* Every read of libssh2 goes through here (LIBSSH2_CALLBACK_RECV): the
 * time of the last byte from the node (conn_wait). As libssh2's own: the
 * byte count, or -errno. */
static LIBSSH2_RECV_FUNC(conn_recv)
{
    ssize_t n = recv(socket, buffer, length, flags);
    if (n < 0)
        return errno == ENOENT ? -EAGAIN : -errno;
    if (n > 0)
        ((ssh_conn *)*abstract)->last_rx_ms = util_mono_ms();
    return n;
}

/* A new session: TCP connect, handshake, host key check, public key auth. */
static ssh_conn *conn_open(ssh_pool *p, unsigned long serial, vcl_error *e)
{
    ssh_conn *c = calloc(1, sizeof *c);
    LIBSSH2_KNOWNHOSTS *kh = NULL;
    int rc;
    if (!c) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory connecting to %s", p->label);
        return NULL;
    }
    c->pool = p;
    c->sock = -1;
    c->serial = serial;
    int64_t t0 = util_mono_ms();
    int64_t deadline = t0 + (int64_t)(p->connect_timeout_s > 0 ? p->connect_timeout_s
                                                              : SSH_CONNECT_TIMEOUT_S) * 1000;

    if (access(p->key, R_OK) != 0) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "cannot read the ssh private key %s for %s: %s",
                      p->key, p->label, strerror(errno));
        goto fail;
    }
    if (access(p->known_hosts, R_OK) != 0) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "cannot read the ssh known_hosts file %s for %s: %s",
                      p->known_hosts, p->label, strerror(errno));
        goto fail;
    }
    if ((c->sock = tcp_connect(p->host, p->port, deadline, p->label, e)) < 0)
        goto fail;
    if (!(c->s = libssh2_session_init_ex(NULL, NULL, NULL, c))) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "cannot start an ssh session with %s", p->label);
        goto fail;
    }
    c->last_rx_ms = util_mono_ms();
    libssh2_session_callback_set(c->s, LIBSSH2_CALLBACK_RECV, (void *)conn_recv);
    libssh2_session_set_blocking(c->s, 0);
    if (!(kh = libssh2_knownhost_init(c->s)) ||
        libssh2_knownhost_readfile(kh, p->known_hosts, LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0) {
        char *msg = NULL;
        libssh2_session_last_error(c->s, &msg, NULL, 0);
        vcl_error_set(e, VCL_ERR_PERMANENT, "cannot parse the ssh known_hosts file %s: %s",
                      p->known_hosts, msg && *msg ? msg : "bad format");
        goto fail;
    }
    prefer_known_types(c->s, kh, p->host, p->port);

    SSH_RETRY(c, deadline, rc, libssh2_session_handshake(c->s, c->sock));
    if (rc) {
        if (rc == LIBSSH2_ERROR_KEX_FAILURE || rc == LIBSSH2_ERROR_METHOD_NOT_SUPPORTED) {
            char *msg = NULL;
            libssh2_session_last_error(c->s, &msg, NULL, 0);
            vcl_error_set(e, VCL_ERR_PERMANENT,
                          "ssh handshake with %s failed: %s (no common algorithms, or the node "
                          "has no host key of a type that %s records)",
                          p->label, msg ? msg : "?", p->known_hosts);
        } else {
            conn_fail(c, e, "ssh handshake", NULL);
        }
        goto fail;
    }
    if (!check_host_key(c, kh, e))
        goto fail;
    libssh2_knownhost_free(kh);
    kh = NULL;

    SSH_RETRY(c, deadline, rc,
              libssh2_userauth_publickey_fromfile_ex(c->s, p->user, (unsigned)strlen(p->user),
                                                     NULL, p->key, NULL));
    if (rc) {
        if (rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED || rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED ||
            rc == LIBSSH2_ERROR_FILE || rc == LIBSSH2_ERROR_METHOD_NOT_SUPPORTED) {
            char *msg = NULL;
            libssh2_session_last_error(c->s, &msg, NULL, 0);
            vcl_error_set(e, VCL_ERR_PERMANENT,
                          "ssh public key authentication as %s failed with key %s: %s (is its "
                          ".pub in the node's authorized_keys?)",
                          p->label, p->key, msg && *msg ? msg : "refused");
        } else {
            conn_fail(c, e, "ssh authentication", NULL);
        }
        goto fail;
    }
    c->authed = true;
    c->keepalive_s = p->keepalive_s > 0 ? p->keepalive_s : SSH_KEEPALIVE_S;
    libssh2_keepalive_config(c->s, 1, (unsigned)c->keepalive_s);
    const char *cipher = libssh2_session_methods(c->s, LIBSSH2_METHOD_CRYPT_CS),
               *mac = libssh2_session_methods(c->s, LIBSSH2_METHOD_MAC_CS);
    log_debug("ssh %s: session #%lu open in %lld ms (%s, %s)", p->label, serial,
              (long long)(util_mono_ms() - t0), cipher ? cipher : "?", mac ? mac : "?");
    return c;
fail:
    if (kh)
        libssh2_knownhost_free(kh);
    c->broken = true;
    conn_close(c);
    return NULL;
}

/* Check a session out of the pool (or open one). *fresh: it is new. */
static ssh_conn *pool_get(ssh_pool *p, bool *fresh, vcl_error *e)
{
    ssh_conn *c = NULL, *expired = NULL;
    unsigned long serial = 0;
    pthread_mutex_lock(&pools_mu);
    pools_expire_locked(util_mono_ms(), &expired);
    if (p->idle) {
        c = p->idle;
        p->idle = c->next;
        p->n_idle--;
    } else {
        p->n_open++;          /* reserved for the session we are about to open */
        serial = ++p->serials;
    }
    p->uses++;
    pthread_mutex_unlock(&pools_mu);
    close_list(expired);

    if (c) {
        *fresh = false;
    } else {
        *fresh = true;
        c = conn_open(p, serial, e);
        pthread_mutex_lock(&pools_mu);
        if (c)
            p->connects++;
        else
            p->n_open--;
        pthread_mutex_unlock(&pools_mu);
        if (!c)
            return NULL;
    }
    c->next = NULL;
    c->broken = c->started = c->timed_out = c->keepalive = c->silent = false;
    return c;
}

/* Give a session back (or close it when broken or when enough are idle). */
static void pool_put(ssh_conn *c)
{
    ssh_pool *p = c->pool;
    bool keep = false;
    pthread_mutex_lock(&pools_mu);
    if (!c->broken && p->n_idle < SSH_IDLE_KEEP) {
        c->idle_since_ms = util_mono_ms();
        c->next = p->idle;
        p->idle = c;
        p->n_idle++;
        keep = true;
    } else {
        p->n_open--;
    }
    pthread_mutex_unlock(&pools_mu);
    if (!keep)
        conn_close(c);
}

/* Run fn on a pooled session; when a reused session turns out dead before
 * fn changed anything (c->started), run it once more on a new session. */
typedef bool (*conn_fn)(ssh_conn *c, void *ctx, vcl_error *e);

static bool with_conn(vcl_transport *t, conn_fn fn, void *ctx, vcl_error *e)
{
    ssh_pool *p = t->priv;
    vcl_error ignored;
    if (!e) {                   /* callers may pass NULL; the code below reads e */
        vcl_error_clear(&ignored);
        e = &ignored;
    }
    for (int attempt = 0;; attempt++) {
        bool fresh = false;
        ssh_conn *c = pool_get(p, &fresh, e);
        if (!c)
            return false;
        bool ok = fn(c, ctx, e);
        bool broken = c->broken, started = c->started;
        unsigned long serial = c->serial;
        pool_put(c);
        if (ok || !broken || started || fresh || attempt > 0)
            return ok;
        log_info("ssh %s: session #%lu was dead (%s); reconnecting", p->label, serial, e->msg);
        pthread_mutex_lock(&pools_mu);
        p->reconnects++;
        pthread_mutex_unlock(&pools_mu);
        vcl_error_clear(e);
    }
}

static bool ensure_sftp(ssh_conn *c, vcl_error *e)
{
    if (c->sftp)
        return true;
    SSH_RETRY_PTR(c, io_deadline(), c->sftp, libssh2_sftp_init(c->s));
    if (!c->sftp)
        return conn_fail(c, e, "cannot start SFTP", NULL);
    return true;
}

/* ------------------------------------------------------------------- open */

static bool ssh_open_check(ssh_conn *c, void *ctx, vcl_error *e)
{
    (void)c;
    (void)ctx;
    (void)e;
    return true;
}

static bool ssh_open(vcl_transport *t, const transport_opts *o, vcl_error *e)
{
    char userbuf[256], host[256];
    const char *user;
    pthread_once(&ssh_once, ssh_global_init);
    if (ssh_init_rc != 0)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "libssh2_init failed (%d)", ssh_init_rc);
    if (!o || !o->host || !o->host[0])
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "ssh transport needs a host (the node's ssh_host column)");
    /* "[::1]" as in a URI: the brackets are not part of the address. */
    size_t hl = strlen(o->host);
    if (o->host[0] == '[' && hl > 2 && o->host[hl - 1] == ']')
        snprintf(host, sizeof host, "%.*s", (int)(hl - 2), o->host + 1);
    else
        snprintf(host, sizeof host, "%s", o->host);
    if (!o->private_key || !o->private_key[0])
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "ssh transport to %s needs a private key: set ssh_private_key in the "
                             "worker config (vclctl: --ssh-key or $VCL_SSH_KEY)", host);
    if (!config_key_file_check(o->private_key, e))
        return vcl_error_prefix(e, "ssh transport to %s", host);
    if (!o->known_hosts || !o->known_hosts[0])
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "ssh transport to %s needs a known_hosts file to verify the host key: "
                             "set ssh_known_hosts in the worker config (vclctl: --known-hosts or "
                             "$VCL_SSH_KNOWN_HOSTS)", host);
    int port = o->port > 0 ? o->port : 22;
    if (port > 65535)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "ssh port %d of %s is out of range", port, host);
    user = o->user;
    if (!user || !user[0]) {
        /* NULL ssh_user on the node row: the user this worker runs as. */
        struct passwd pw, *pwp = NULL;
        char buf[4096];
        if (getpwuid_r(geteuid(), &pw, buf, sizeof buf, &pwp) != 0 || !pwp)
            return vcl_error_set(e, VCL_ERR_PERMANENT,
                                 "ssh transport to %s: no ssh user on the node row and no name "
                                 "for uid %d", host, (int)geteuid());
        snprintf(userbuf, sizeof userbuf, "%s", pwp->pw_name);
        user = userbuf;
    }
    ssh_pool *p = pool_find(host, port, user, o->private_key, o->known_hosts, o->connect_timeout_s,
                            o->keepalive_s);
    if (!p)
        return vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory");
    t->priv = p;
    /* Connect now (or reuse a pooled session): a bad host key or key is
     * reported when the job prepares, not in the middle of a stage. */
    return with_conn(t, ssh_open_check, NULL, e);
}

static void ssh_close(vcl_transport *t)
{
    t->priv = NULL;   /* the pool (and its sessions) outlive the transport */
}

/* ------------------------------------------------------------------- exec */

static bool sh_quote_append(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t need = 2;
    for (const char *p = s; *p; p++)
        need += *p == '\'' ? 4 : 1;
    if (*len + need + 2 > *cap) {
        size_t ncap = (*cap ? *cap * 2 : 256);
        while (ncap < *len + need + 2)
            ncap *= 2;
        char *nb = realloc(*buf, ncap);
        if (!nb)
            return false;
        *buf = nb;
        *cap = ncap;
    }
    char *o = *buf + *len;
    if (*len)
        *o++ = ' ';
    *o++ = '\'';
    for (const char *p = s; *p; p++) {
        if (*p == '\'') {
            memcpy(o, "'\\''", 4);
            o += 4;
        } else {
            *o++ = *p;
        }
    }
    *o++ = '\'';
    *o = '\0';
    *len = (size_t)(o - *buf);
    return true;
}

char *transport_sh_quote_argv(const char *const argv[])
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (!argv || !argv[0])
        return NULL;
    for (size_t i = 0; argv[i]; i++) {
        if (!sh_quote_append(&buf, &len, &cap, argv[i])) {
            free(buf);
            return NULL;
        }
    }
    return buf;
}

static int signal_number(const char *name)
{
    static const struct { const char *name; int num; } sigs[] = {
        { "HUP", 1 }, { "INT", 2 }, { "QUIT", 3 }, { "ILL", 4 }, { "TRAP", 5 }, { "ABRT", 6 },
        { "BUS", 7 }, { "FPE", 8 }, { "KILL", 9 }, { "USR1", 10 }, { "SEGV", 11 },
        { "USR2", 12 }, { "PIPE", 13 }, { "ALRM", 14 }, { "TERM", 15 }, { "XCPU", 24 },
        { "XFSZ", 25 },
    };
    if (!name)
        return 0;
    if (strncmp(name, "SIG", 3) == 0)
        name += 3;
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (strcmp(name, sigs[i].name) == 0)
            return sigs[i].num;
    return 127;   /* 128 + 127 = 255: killed by a signal we cannot name */
}

typedef struct exec_ctx {
    const char *const *argv;
    const char *cmdline;
    int timeout_s;
    transport_result *res;
    bool timed_out;
    int64_t elapsed_ms;
} exec_ctx;

/* Read what is there on one stream: 1 data read, 0 EOF, EAGAIN, <0 error. */
static int drain_stream(LIBSSH2_CHANNEL *ch, int stream, transport_capbuf *b)
{
    char buf[32768];
    int last = LIBSSH2_ERROR_EAGAIN;
    for (;;) {
        ssize_t n = libssh2_channel_read_ex(ch, stream, buf, sizeof buf);
        if (n > 0) {
            transport_capbuf_add(b, buf, (size_t)n);
            last = 1;
            continue;
        }
        if (n == LIBSSH2_ERROR_EAGAIN)
            return last == 1 ? 1 : LIBSSH2_ERROR_EAGAIN;
        return n == 0 ? (last == 1 ? 1 : 0) : (int)n;
    }
}

static bool ssh_exec_conn(ssh_conn *c, void *ctx, vcl_error *e)
{
    exec_ctx *x = ctx;
    LIBSSH2_CHANNEL *ch = NULL;
    transport_capbuf out = { 0 }, err = { 0 };
    bool ok = false;
    int rc;
    int64_t start = util_mono_ms();
    int64_t deadline = x->timeout_s > 0
                           ? start + (int64_t)(x->timeout_s + SSH_KILL_GRACE_S + SSH_WAIT_GRACE_S) * 1000
                           : 0;

    if (!transport_capbuf_init(&out, OUT_CAP, false) ||
        !transport_capbuf_init(&err, ERR_CAP, true)) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory running '%s'", x->argv[0]);
        goto cleanup;
    }
    SSH_RETRY_PTR(c, io_deadline(), ch,
                  libssh2_channel_open_ex(c->s, "session", sizeof "session" - 1,
                                          LIBSSH2_CHANNEL_WINDOW_DEFAULT,
                                          LIBSSH2_CHANNEL_PACKET_DEFAULT, NULL, 0));
    if (!ch) {
        conn_fail(c, e, "cannot open a channel to run", x->argv[0]);
        goto cleanup;
    }
    c->started = true;
    SSH_RETRY(c, io_deadline(), rc,
              libssh2_channel_process_startup(ch, "exec", sizeof "exec" - 1, x->cmdline,
                                              (unsigned)strlen(x->cmdline)));
    if (rc) {
        conn_fail(c, e, "cannot run", x->argv[0]);
        goto cleanup;
    }
    SSH_RETRY(c, io_deadline(), rc, libssh2_channel_send_eof(ch));
    if (rc) {
        conn_fail(c, e, "cannot run", x->argv[0]);
        goto cleanup;
    }
    c->keepalive = true;
    c->last_rx_ms = util_mono_ms();
    for (;;) {
        int ro = drain_stream(ch, 0, &out);
        int re = drain_stream(ch, SSH_EXTENDED_DATA_STDERR, &err);
        if ((ro < 0 && ro != LIBSSH2_ERROR_EAGAIN) || (re < 0 && re != LIBSSH2_ERROR_EAGAIN)) {
            conn_fail(c, e, "running", x->argv[0]);
            goto cleanup;
        }
        if (ro == 0 && re != LIBSSH2_ERROR_EAGAIN && re != 1 && libssh2_channel_eof(ch))
            break;
        if (ro == 1 || re == 1)
            continue;
        if (!conn_wait(c, deadline)) {
            if (c->silent)
                vcl_error_set(e, VCL_ERR_RETRYABLE,
                              "%s stopped answering while '%s' ran: nothing received for %d s "
                              "(ssh keepalives unanswered)", c->pool->label, x->argv[0],
                              SSH_SILENT_PERIODS * c->keepalive_s);
            else
                vcl_error_set(e, VCL_ERR_RETRYABLE,
                              "command '%s' on %s timed out after %ds (and the node did not "
                              "stop it)", x->argv[0], c->pool->label, x->timeout_s);
            c->broken = true;
            goto cleanup;
        }
    }
    c->keepalive = false;
    SSH_RETRY(c, io_deadline(), rc, libssh2_channel_close(ch));
    if (rc == 0)
        SSH_RETRY(c, io_deadline(), rc, libssh2_channel_wait_closed(ch));
    if (rc) {
        conn_fail(c, e, "closing the channel of", x->argv[0]);
        goto cleanup;
    }
    x->elapsed_ms = util_mono_ms() - start;
    char *signame = NULL;
    libssh2_channel_get_exit_signal(ch, &signame, NULL, NULL, NULL, NULL, NULL);
    if (signame) {
        x->res->status = 128 + signal_number(signame);
        free(signame);   /* allocated with libssh2's default allocator (malloc) */
    } else {
        x->res->status = libssh2_channel_get_exit_status(ch);
    }
    if (out.truncated)
        log_debug("stdout of '%s' truncated at %d bytes", x->argv[0], OUT_CAP);
    x->res->out = out.buf;
    x->res->err = err.buf;
    out.buf = err.buf = NULL;
    ok = true;
cleanup:
    c->keepalive = false;
    if (ch) {
        if (!ok && !c->broken) {
            /* Leave the session usable: close our side, do not wait long. */
            int64_t d = util_mono_ms() + 2000;
            SSH_RETRY(c, d, rc, libssh2_channel_close(ch));
            if (rc)
                c->broken = true;
        }
        libssh2_channel_free(ch);
    }
    free(out.buf);
    free(err.buf);
    return ok;
}

static bool ssh_exec(vcl_transport *t, const char *const argv[], int timeout_s,
                     transport_result *res, vcl_error *e)
{
    bool ok = false;
    char *quoted = NULL, *cmdline = NULL;
    ssh_pool *p = t->priv;

    if (argv[0][0] == '-')
        return vcl_error_set(e, VCL_ERR_PERMANENT, "refusing to run '%s': not a command name",
                             argv[0]);
    if (!(quoted = transport_sh_quote_argv(argv))) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory running '%s'", argv[0]);
        goto cleanup;
    }
    size_t n = strlen(quoted) + 64;
    if (!(cmdline = malloc(n))) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory running '%s'", argv[0]);
        goto cleanup;
    }
    /* The node enforces the timeout (coreutils timeout kills the command's
     * process group: TERM, then KILL after SSH_KILL_GRACE_S). */
    if (timeout_s > 0)
        snprintf(cmdline, n, "exec timeout -k %d %d %s", SSH_KILL_GRACE_S, timeout_s, quoted);
    else
        snprintf(cmdline, n, "exec %s", quoted);

    exec_ctx x = { .argv = argv, .cmdline = cmdline, .timeout_s = timeout_s, .res = res };
    if (!with_conn(t, ssh_exec_conn, &x, e))
        goto cleanup;
    if (timeout_s > 0 && (res->status == 124 || res->status == 137) &&
        x.elapsed_ms >= (int64_t)timeout_s * 1000 - 50) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "command '%s' timed out after %ds on %s", argv[0],
                      timeout_s, p->label);
        transport_result_clear(res);
        goto cleanup;
    }
    if (res->status == 127 && res->err &&
        (strstr(res->err, "not found") || strstr(res->err, "No such file")) &&
        strstr(res->err, argv[0])) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "cannot run '%s' on %s: not found (is it installed "
                      "on the node?)", argv[0], p->label);
        transport_result_clear(res);
        goto cleanup;
    }
    ok = true;
cleanup:
    free(quoted);
    free(cmdline);
    return ok;
}

/* Run argv on this session (used inside other operations, e.g. mv). */
static bool conn_run(ssh_conn *c, const char *const argv[], int timeout_s, vcl_error *e)
{
    transport_result res = { .status = -1 };
    char *quoted = transport_sh_quote_argv(argv), *cmdline = NULL;
    bool ok = false;
    if (quoted && (cmdline = malloc(strlen(quoted) + 64)))
        snprintf(cmdline, strlen(quoted) + 64, "exec timeout -k %d %d %s", SSH_KILL_GRACE_S,
                 timeout_s, quoted);
    if (!cmdline) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory running '%s'", argv[0]);
        goto cleanup;
    }
    exec_ctx x = { .argv = argv, .cmdline = cmdline, .timeout_s = timeout_s, .res = &res };
    if (!ssh_exec_conn(c, &x, e))
        goto cleanup;
    if (res.status != 0) {
        transport_status_error(argv, &res, VCL_ERR_PERMANENT, e);
        goto cleanup;
    }
    ok = true;
cleanup:
    transport_result_clear(&res);
    free(quoted);
    free(cmdline);
    return ok;
}

/* ------------------------------------------------------------------ files */

typedef struct path_ctx {
    const char *path;
    const char *path2;
    transport_stat_info *st;
    const void *data;
    size_t len;
    mode_t mode;
    char **out;
    size_t *out_len;
    bool *existed;
    char ***names;
    size_t *n;
    bool follow;
    bool *flag;
    long long *num;
    char *buf;
    size_t buf_len;
} path_ctx;

/* stat on an open session: exists=false for a missing path (true return). */
static bool conn_stat(ssh_conn *c, const char *path, transport_stat_info *st, bool follow,
                      vcl_error *e)
{
    LIBSSH2_SFTP_ATTRIBUTES a;
    int rc;
    memset(st, 0, sizeof *st);
    if (!ensure_sftp(c, e))
        return false;
    SSH_RETRY(c, io_deadline(), rc,
              libssh2_sftp_stat_ex(c->sftp, path, (unsigned)strlen(path),
                                   follow ? LIBSSH2_SFTP_STAT : LIBSSH2_SFTP_LSTAT, &a));
    if (rc) {
        long fx = conn_fx(c);
        if (fx == LIBSSH2_FX_NO_SUCH_FILE || fx == LIBSSH2_FX_NO_SUCH_PATH ||
            fx == LIBSSH2_FX_NOT_A_DIRECTORY)
            return true;
        return conn_fail(c, e, "cannot stat", path);
    }
    /* SFTP permissions carry the POSIX file type bits (S_IFMT) as well */
    bool ids = a.flags & LIBSSH2_SFTP_ATTR_UIDGID;
    transport_stat_fill(st, (a.flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) ? (unsigned)a.permissions : 0,
                        ids ? (unsigned)a.uid : 0, ids ? (unsigned)a.gid : 0,
                        (a.flags & LIBSSH2_SFTP_ATTR_SIZE) ? (long long)a.filesize : 0,
                        (a.flags & LIBSSH2_SFTP_ATTR_ACMODTIME) ? (long long)a.mtime : 0);
    return true;
}

/* " on user@host:port" for messages. */
static const char *conn_where(ssh_conn *c, char *buf, size_t len)
{
    snprintf(buf, len, " on %s", c->pool->label);
    return buf;
}

/* A node file the operation needs to be a regular file (verb: "read",
 * "write"...): lstat, never following a link. *exists false (and true
 * returned) when missing and missing_ok; a link, FIFO, device or directory
 * is refused (permanent). */
static bool conn_need_regular(ssh_conn *c, const char *path, const char *verb, bool missing_ok,
                              transport_stat_info *st, vcl_error *e)
{
    char where[340];
    if (!conn_stat(c, path, st, false, e))
        return false;
    if (!st->exists) {
        if (missing_ok)
            return true;
        return vcl_error_set(e, VCL_ERR_PERMANENT, "cannot %s '%s'%s: %s", verb, path,
                             conn_where(c, where, sizeof where), strerror(ENOENT));
    }
    if (!st->is_reg)
        return transport_not_regular(e, verb, path, conn_where(c, where, sizeof where), st->mode);
    return true;
}

static bool ssh_stat_conn(ssh_conn *c, void *ctx, vcl_error *e)
{
    path_ctx *x = ctx;
    return conn_stat(c, x->path, x->st, x->follow, e);
}

static bool ssh_stat(vcl_transport *t, const char *path, transport_stat_info *st, bool follow,
                     vcl_error *e)
{
    path_ctx x = { .path = path, .st = st, .follow = follow };
    return with_conn(t, ssh_stat_conn, &x, e);
}

static bool conn_open_file(ssh_conn *c, const char *path, unsigned long flags, long mode,
                           LIBSSH2_SFTP_HANDLE **h, vcl_error *e)
{
    if (!ensure_sftp(c, e))
        return false;
    SSH_RETRY_PTR(c, io_deadline(), *h,
                  libssh2_sftp_open_ex(c->sftp, path, (unsigned)strlen(path), flags, mode,
                                       LIBSSH2_SFTP_OPENFILE));
    if (!*h)
        return conn_fail(c, e, (flags & LIBSSH2_FXF_WRITE) ? "cannot create" : "cannot open", path);
    return true;
}

static bool conn_close_file(ssh_conn *c, LIBSSH2_SFTP_HANDLE **h, const char *path, vcl_error *e)
{
    int rc;
    if (!*h)
        return true;
    SSH_RETRY(c, io_deadline(), rc, libssh2_sftp_close_handle(*h));
    *h = NULL;
    if (rc)
        return conn_fail(c, e, "cannot close", path);
    return true;
}

/* Write all of buf at the handle's offset (libssh2 pipelines it). */
static bool conn_write_all(ssh_conn *c, LIBSSH2_SFTP_HANDLE *h, const char *buf, size_t len,
                           const char *path, vcl_error *e)
{
    int64_t deadline = io_deadline();
    while (len > 0) {
        ssize_t n;
        SSH_RETRY(c, deadline, n, libssh2_sftp_write(h, buf, len));
        if (n < 0)
            return conn_fail(c, e, "cannot write", path);
        if (n == 0) {
            /* libssh2 1.10 returns 0, not EAGAIN, when the data is queued but
             * no acknowledgement has come back yet: wait for the socket
             * instead of spinning. */
            if (!conn_wait(c, deadline))
                return conn_fail(c, e, "cannot write", path);
            continue;
        }
        deadline = io_deadline();
        buf += n;
        len -= (size_t)n;
    }
    return true;
}

/* fsync@openssh.com; a server without it is not an error. */
static bool conn_fsync(ssh_conn *c, LIBSSH2_SFTP_HANDLE *h, const char *path, vcl_error *e)
{
    int rc;
    SSH_RETRY(c, io_deadline(), rc, libssh2_sftp_fsync(h));
    if (rc && conn_fx(c) != LIBSSH2_FX_OP_UNSUPPORTED)
        return conn_fail(c, e, "cannot fsync", path);
    return true;
}

static bool conn_fsetstat(ssh_conn *c, LIBSSH2_SFTP_HANDLE *h, LIBSSH2_SFTP_ATTRIBUTES *a,
                          const char *what, const char *path, vcl_error *e)
{
    int rc;
    SSH_RETRY(c, io_deadline(), rc, libssh2_sftp_fstat_ex(h, a, 1));
    if (rc)
        return conn_fail(c, e, what, path);
    return true;
}

static bool conn_unlink(ssh_conn *c, const char *path, vcl_error *e)
{
    int rc;
    if (!ensure_sftp(c, e))
        return false;
    SSH_RETRY(c, io_deadline(), rc, libssh2_sftp_unlink_ex(c->sftp, path, (unsigned)strlen(path)));
    if (rc) {
        long fx = conn_fx(c);
        if (fx == LIBSSH2_FX_NO_SUCH_FILE || fx == LIBSSH2_FX_NO_SUCH_PATH)
            return true;
        return conn_fail(c, e, "cannot remove", path);
    }
    return true;
}

/* Rename without replacing (SFTP v3 rename: sftp-server links then unlinks).
 * On failure *existed tells whether `to` was there. */
static bool conn_rename_noreplace(ssh_conn *c, const char *from, const char *to, bool *existed,
                                  vcl_error *e)
{
    int rc;
    *existed = false;
    if (!ensure_sftp(c, e))
        return false;
    c->started = true;
    SSH_RETRY(c, io_deadline(), rc,
              libssh2_sftp_rename_ex(c->sftp, from, (unsigned)strlen(from), to, (unsigned)strlen(to),
                                     LIBSSH2_SFTP_RENAME_ATOMIC | LIBSSH2_SFTP_RENAME_NATIVE));
    if (rc == 0)
        return true;
    long fx = conn_fx(c);
    if (fx < 0)
        return conn_fail(c, e, "cannot rename", from);
    vcl_error e2;
    transport_stat_info st;
    vcl_error_clear(&e2);
    if ((fx == LIBSSH2_FX_FAILURE || fx == LIBSSH2_FX_FILE_ALREADY_EXISTS) &&
        conn_stat(c, to, &st, false, &e2) && st.exists) {
        *existed = true;
        return vcl_error_set(e, VCL_ERR_PERMANENT, "cannot rename '%s' to '%s' on %s: %s", from,
                             to, c->pool->label, strerror(EEXIST));
    }
    int err = fx_errno((unsigned long)fx);
    vcl_err_class cls = fx == LIBSSH2_FX_FAILURE ? VCL_ERR_RETRYABLE : transport_errno_class(err);
    return vcl_error_set(e, cls,
                         "cannot rename '%s' to '%s' on %s: %s", from, to, c->pool->label,
                         fx_text((unsigned long)fx));
}

/* Rename replacing `to` (rename(2) semantics). */
static bool conn_rename(ssh_conn *c, const char *from, const char *to, vcl_error *e)
{
    bool existed = false;
    if (conn_rename_noreplace(c, from, to, &existed, e))
        return true;
    if (!existed)
        return false;
    vcl_error_clear(e);
    const char *argv[] = { "mv", "-f", "-T", "--", from, to, NULL };
    return conn_run(c, argv, SSH_IO_TIMEOUT_S, e);
}

static bool random_suffix(char *buf, size_t len)
{
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char r[16];
    if (len > sizeof r + 1 || getrandom(r, len - 1, 0) != (ssize_t)(len - 1))
        return false;
    for (size_t i = 0; i + 1 < len; i++)
        buf[i] = chars[r[i] % (sizeof chars - 1)];
    buf[len - 1] = '\0';
    return true;
}

static bool ssh_write_file_conn(ssh_conn *c, void *ctx, vcl_error *e)
{
    path_ctx *x = ctx;
    LIBSSH2_SFTP_HANDLE *h = NULL;
    char tmp[PATH_MAX], suffix[7];
    bool ok = false, made = false;

    if (!random_suffix(suffix, sizeof suffix))
        return vcl_error_set(e, VCL_ERR_RETRYABLE, "no random bytes for a temporary name");
    if (snprintf(tmp, sizeof tmp, "%s.tmp-%s", x->path, suffix) >= (int)sizeof tmp)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "path too long: '%s'", x->path);
    if (!conn_open_file(c, tmp, LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_EXCL,
                        (long)(x->mode & 07777), &h, e)) {
        vcl_error_prefix(e, "cannot write '%s'", x->path);
        goto cleanup;
    }
    made = true;
    log_debug("sftp write %s: %s (%zu bytes, through %s)", c->pool->label, x->path, x->len, tmp);
    LIBSSH2_SFTP_ATTRIBUTES a = { .flags = LIBSSH2_SFTP_ATTR_PERMISSIONS,
                                  .permissions = (unsigned long)(x->mode & 07777) };
    if (!conn_write_all(c, h, x->data, x->len, tmp, e) ||
        !conn_fsetstat(c, h, &a, "cannot chmod", tmp, e) || !conn_fsync(c, h, tmp, e) ||
        !conn_close_file(c, &h, tmp, e))
        goto cleanup;
    /* A rename replaces a link or FIFO without following it, but anything
     * but a regular file there was not made by the worker: refuse. */
    transport_stat_info st;
    if (!conn_need_regular(c, x->path, "replace", true, &st, e))
        goto cleanup;
    if (!conn_rename(c, tmp, x->path, e))
        goto cleanup;
    made = false;
    ok = true;
cleanup:
    if (h) {
        vcl_error e2;
        conn_close_file(c, &h, tmp, &e2);
    }
    if (made && !c->broken) {
        vcl_error e2;
        conn_unlink(c, tmp, &e2);
    }
    return ok;
}

static bool ssh_write_file(vcl_transport *t, const char *path, const void *data, size_t len,
                           mode_t mode, vcl_error *e)
{
    path_ctx x = { .path = path, .data = data, .len = len, .mode = mode };
    return with_conn(t, ssh_write_file_conn, &x, e);
}

/* Read n bytes at off (fewer at EOF); *got says how many. */
static bool conn_pread(ssh_conn *c, LIBSSH2_SFTP_HANDLE *h, char *buf, size_t n,
                       unsigned long long off, size_t *got, const char *path, vcl_error *e)
{
    *got = 0;
    libssh2_sftp_seek64(h, off);
    while (*got < n) {
        ssize_t r;
        SSH_RETRY(c, io_deadline(), r, libssh2_sftp_read(h, buf + *got, n - *got));
        if (r < 0)
            return conn_fail(c, e, "cannot read", path);
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return true;
}

static bool ssh_read_file_conn(ssh_conn *c, void *ctx, vcl_error *e)
{
    path_ctx *x = ctx;
    LIBSSH2_SFTP_HANDLE *h = NULL;
    char *buf = NULL;
    size_t used = 0, cap = 0;
    bool ok = false;
    transport_stat_info st;

    /* sftp-server opens without O_NOFOLLOW or O_NONBLOCK: look first. */
    if (!conn_need_regular(c, x->path, "read", false, &st, e))
        goto cleanup;
    if (!conn_open_file(c, x->path, LIBSSH2_FXF_READ, 0, &h, e))
        goto cleanup;
    for (;;) {
        if (used + 65536 + 1 > cap) {
            size_t ncap = cap ? cap * 2 : 131072;
            if ((long long)ncap > READ_FILE_CAP * 2) {
                vcl_error_set(e, VCL_ERR_PERMANENT,
                              "file '%s' on %s is too large to read (over %lld bytes)", x->path,
                              c->pool->label, READ_FILE_CAP);
                goto cleanup;
            }
            char *nb = realloc(buf, ncap);
            if (!nb) {
                vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory reading '%s'", x->path);
                goto cleanup;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r;
        SSH_RETRY(c, io_deadline(), r, libssh2_sftp_read(h, buf + used, cap - used - 1));
        if (r < 0) {
            conn_fail(c, e, "cannot read", x->path);
            goto cleanup;
        }
        if (r == 0)
            break;
        used += (size_t)r;
        if ((long long)used > READ_FILE_CAP) {
            vcl_error_set(e, VCL_ERR_PERMANENT,
                          "file '%s' on %s is too large to read (over %lld bytes)", x->path,
                          c->pool->label, READ_FILE_CAP);
            goto cleanup;
        }
    }
    if (!conn_close_file(c, &h, x->path, e))
        goto cleanup;
    buf[used] = '\0';
    *x->out = buf;
    buf = NULL;
    if (x->out_len)
        *x->out_len = used;
    ok = true;
cleanup:
    if (h) {
        vcl_error e2;
        conn_close_file(c, &h, x->path, &e2);
    }
    free(buf);
    return ok;
}

static bool ssh_read_file(vcl_transport *t, const char *path, char **data, size_t *len,
                          vcl_error *e)
{
    *data = NULL;
    if (len)
        *len = 0;
    path_ctx x = { .path = path, .out = data, .out_len = len };
    return with_conn(t, ssh_read_file_conn, &x, e);
}

static bool ssh_rename_conn(ssh_conn *c, void *ctx, vcl_error *e)
{
    path_ctx *x = ctx;
    return conn_rename(c, x->path, x->path2, e);
}

static bool ssh_rename(vcl_transport *t, const char *from, const char *to, vcl_error *e)
{
    path_ctx x = { .path = from, .path2 = to };
    return with_conn(t, ssh_rename_conn, &x, e);
}

static bool ssh_rename_noreplace_conn(ssh_conn *c, void *ctx, vcl_error *e)
{
    path_ctx *x = ctx;
    return conn_rename_noreplace(c, x->path, x->path2, x->existed, e);
}

static bool ssh_rename_noreplace(vcl_transport *t, const char *from, const char *to,
                                 bool *existed, vcl_error *e)
{
    path_ctx x = { .path = from, .path2 = to, .existed = existed };
    return with_conn(t, ssh_rename_noreplace_conn, &x, e);
}

static bool ssh_remove_conn(ssh_conn *c, void *ctx, vcl_error *e)
{
    path_ctx *x = ctx;
    return conn_unlink(c, x->path, e);
}

static bool ssh_remove(vcl_transport *t, const char *path, vcl_error *e)
{
    path_ctx x = { .path = path };
    return with_conn(t, ssh_remove_conn, &x, e);
}

static bool ssh_mkdir_conn(ssh_conn *c, void *ctx, vcl_error *e)
{
    path_ctx *x = ctx;
    transport_stat_info st;
    int rc;
    *x->existed = false;
    if (!ensure_sftp(c, e))
        return false;
    c->started = true;
    SSH_RETRY(c, io_deadline(), rc,
              libssh2_sftp_mkdir_ex(c->sftp, x->path, (unsigned)strlen(x->path), (long)x->mode));
    if (rc) {
        vcl_error e2;
        long fx = conn_fx(c);
        if (fx < 0)
            return conn_fail(c, e, "cannot create directory", x->path);
        /* sftp-server says "failure" for EEXIST: is something there? */
        vcl_error_clear(&e2);
        if (conn_stat(c, x->path, &st, false, &e2) && st.exists)
            *x->existed = true;
        return conn_fail(c, e, "cannot create directory", x->path);
    }
    /* exactly mode: sftp-server's umask does not decide who may read it */
    LIBSSH2_SFTP_ATTRIBUTES a = { .flags = LIBSSH2_SFTP_ATTR_PERMISSIONS,
                                  .permissions = (unsigned long)(x->mode & 07777) };
    SSH_RETRY(c, io_deadline(), rc,
              libssh2_sftp_stat_ex(c->sftp, x->path, (unsigned)strlen(x->path),
                                   LIBSSH2_SFTP_SETSTAT, &a));
    if (rc)
        return conn_fail(c, e, "cannot chmod", x->path);
    return true;
}

static bool ssh_mkdir(vcl_transport *t, const char *path, mode_t mode, bool *existed, vcl_error *e)
{
    path_ctx x = { .path = path, .mode = mode, .existed = existed };
    return with_conn(t, ssh_mkdir_conn, &x, e);
}

/* The node user's uid and groups, asked once per pool (`id -u`, `id -G`). */
static bool parse_ids(const char *s, unsigned *ids, size_t max, size_t *n)
{
    *n = 0;
    while (s && *s) {
        while (*s == ' ' || *s == '\n')
            s++;
        if (!*s)
            break;
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || errno || v > 0xffffffffUL || (*end && *end != ' ' && *end != '\n'))
            return false;
        if (*n < max)
            ids[(*n)++] = (unsigned)v;
        s = end;
    }
    return *n > 0;
}

static bool pool_ids(vcl_transport *t, unsigned *uid, unsigned *gids, size_t max, size_t *n_gids,
                     vcl_error *e)
{
    ssh_pool *p = t->priv;
    transport_result ru = { .status = -1 }, rg = { .status = -1 };
    unsigned u[1], g[64];
    size_t nu = 0, ng = 0;
    bool ok = false;

    pthread_mutex_lock(&pools_mu);
    if (p->have_ids) {
        *uid = p->uid;
        *n_gids = p->n_gids < max ? p->n_gids : max;
        memcpy(gids, p->gids, *n_gids * sizeof *gids);
        pthread_mutex_unlock(&pools_mu);
        return true;
    }
    pthread_mutex_unlock(&pools_mu);
    const char *a_u[] = { "id", "-u", NULL }, *a_g[] = { "id", "-G", NULL };
    if (!transport_run(t, a_u, 30, VCL_ERR_PERMANENT, &ru, e) ||
        !transport_run(t, a_g, 30, VCL_ERR_PERMANENT, &rg, e))
        goto cleanup;
    if (!parse_ids(ru.out, u, 1, &nu) || !parse_ids(rg.out, g, 64, &ng)) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "cannot tell the ids of %s: `id` printed '%s' / '%s'",
                      p->label, ru.out ? ru.out : "", rg.out ? rg.out : "");
        goto cleanup;
    }
    pthread_mutex_lock(&pools_mu);
    p->uid = u[0];
    memcpy(p->gids, g, ng * sizeof *g);
    p->n_gids = ng;
    p->have_ids = true;
    pthread_mutex_unlock(&pools_mu);
    *uid = u[0];
    *n_gids = ng < max ? ng : max;
    memcpy(gids, g, *n_gids * sizeof *gids);
    ok = true;
cleanup:
    transport_result_clear(&ru);
    transport_result_clear(&rg);
    return ok;
}

static bool ssh_whoami(vcl_transport *t, unsigned *uid, char *name, size_t name_len, vcl_error *e)
{
    unsigned g[64];
    size_t ng = 0;
    if (!pool_ids(t, uid, g, 64, &ng, e))
        return false;
    snprintf(name, name_len, "%s", ((ssh_pool *)t->priv)->user);
    return true;
}

static bool ssh_writable(vcl_transport *t, const char *path, bool *writable, vcl_error *e)
{
    transport_stat_info st;
    unsigned uid, g[64];
    size_t ng = 0;
    *writable = false;
    if (!pool_ids(t, &uid, g, 64, &ng, e) || !ssh_stat(t, path, &st, true, e))
        return false;
    *writable = st.exists && st.is_dir && transport_mode_writable(st.mode, st.uid, st.gid, uid, g, ng);
    return true;
}

static bool ssh_fsinfo_conn(ssh_conn *c, void *ctx, vcl_error *e)
{
    path_ctx *x = ctx;
    LIBSSH2_SFTP_STATVFS sv;
    int rc;
    *x->num = -1;
    *x->flag = false;
    if (!ensure_sftp(c, e))
        return false;
    SSH_RETRY(c, io_deadline(), rc,
              libssh2_sftp_statvfs(c->sftp, x->path, strlen(x->path), &sv));
    if (rc) {
        long fx = conn_fx(c);
        if (fx == LIBSSH2_FX_OP_UNSUPPORTED || fx == LIBSSH2_FX_FAILURE)
            return true;        /* no statvfs@openssh.com: free space unknown */
        return conn_fail(c, e, "cannot statvfs", x->path);
    }
    *x->num = (long long)(sv.f_bavail * sv.f_frsize);
    *x->flag = (sv.f_flag & LIBSSH2_SFTP_ST_RDONLY) != 0;
    return true;
}

static bool ssh_fsinfo(vcl_transport *t, const char *path, long long *free_bytes, bool *readonly,
                       vcl_error *e)
{
    path_ctx x = { .path = path, .num = free_bytes, .flag = readonly };
    return with_conn(t, ssh_fsinfo_conn, &x, e);
}

static bool ssh_realpath_conn(ssh_conn *c, void *ctx, vcl_error *e)
{
    path_ctx *x = ctx;
    int rc;
    if (!ensure_sftp(c, e))
        return false;
    SSH_RETRY(c, io_deadline(), rc,
              libssh2_sftp_symlink_ex(c->sftp, x->path, (unsigned)strlen(x->path), x->buf,
                                      (unsigned)x->buf_len - 1, LIBSSH2_SFTP_REALPATH));
    if (rc < 0)
        return conn_fail(c, e, "cannot resolve", x->path);
    if ((size_t)rc >= x->buf_len)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "path too long: '%s'", x->path);
    x->buf[rc] = '\0';
    return true;
}

static bool ssh_realpath(vcl_transport *t, const char *path, char *out, size_t out_len,
                         vcl_error *e)
{
    path_ctx x = { .path = path, .buf = out, .buf_len = out_len };
    return with_conn(t, ssh_realpath_conn, &x, e);
}

/* Names in dir appended to sv (. and .. only when keep_dots: glob). */
static bool conn_list(ssh_conn *c, const char *dir, transport_strvec *sv, bool keep_dots,
                      vcl_error *e)
{
    LIBSSH2_SFTP_HANDLE *h = NULL;
    bool ok = false;
    char name[4096];
    if (!ensure_sftp(c, e))
        return false;
    SSH_RETRY_PTR(c, io_deadline(), h,
                  libssh2_sftp_open_ex(c->sftp, dir, (unsigned)strlen(dir), 0, 0,
                                       LIBSSH2_SFTP_OPENDIR));
    if (!h)
        return conn_fail(c, e, "cannot list directory", dir);
    for (;;) {
        LIBSSH2_SFTP_ATTRIBUTES a;
        int r;
        SSH_RETRY(c, io_deadline(), r,
                  libssh2_sftp_readdir_ex(h, name, sizeof name, NULL, 0, &a));
        if (r < 0) {
            conn_fail(c, e, "cannot list directory", dir);
            goto cleanup;
        }
        if (r == 0)
            break;
        if (!keep_dots && (strcmp(name, ".") == 0 || strcmp(name, "..") == 0))
            continue;
        if (!transport_strvec_push(sv, name)) {
            vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory listing '%s'", dir);
            goto cleanup;
        }
    }
    ok = true;
cleanup:
    if (h) {
        vcl_error e2;
        conn_close_file(c, &h, dir, ok ? e : &e2);
    }
    return ok;
}

static bool ssh_list_dir_conn(ssh_conn *c, void *ctx, vcl_error *e)
{
    path_ctx *x = ctx;
    transport_strvec sv = { 0 };
    if (!conn_list(c, x->path, &sv, false, e)) {
        util_strv_free(sv.v, sv.n);
        return false;
    }
    transport_names_sort(sv.v, sv.n);
    *x->names = sv.v;
    *x->n = sv.n;
    return true;
}

static bool ssh_list_dir(vcl_transport *t, const char *dir, char ***names, size_t *n, vcl_error *e)
{
    path_ctx x = { .path = dir, .names = names, .n = n };
    return with_conn(t, ssh_list_dir_conn, &x, e);
}

/* ------------------------------------------------------------------- glob */

static bool has_magic(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '*' || s[i] == '?' || s[i] == '[' || s[i] == '\\')
            return true;
    return false;
}

static char *path_join(const char *dir, const char *name, size_t name_len)
{
    size_t dl = strlen(dir);
    bool slash = dl > 0 && dir[dl - 1] != '/';
    char *p = malloc(dl + (slash ? 1 : 0) + name_len + 1);
    if (!p)
        return NULL;
    memcpy(p, dir, dl);
    if (slash)
        p[dl++] = '/';
    memcpy(p + dl, name, name_len);
    p[dl + name_len] = '\0';
    return p;
}

/* glob(3) on the node, component by component: a literal component is
 * appended as is, a component with wildcards lists the directories reached
 * so far (SFTP readdir) and keeps the names that fnmatch it (a leading '.',
 * "." and ".." included, only when the pattern has one, like glob). Unreadable or missing
 * directories are skipped (glob without GLOB_ERR); the paths left are stat'ed
 * when the last component was literal. */
static bool ssh_glob_conn(ssh_conn *c, void *ctx, vcl_error *e)
{
    path_ctx *x = ctx;
    const char *pat = x->path;
    transport_strvec cur = { 0 }, next = { 0 };
    bool ok = false, last_literal = true;

    if (!transport_strvec_push(&cur, pat[0] == '/' ? "/" : "")) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory expanding '%s'", pat);
        goto cleanup;
    }
    const char *p = pat;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        size_t clen = strcspn(p, "/");
        last_literal = !has_magic(p, clen);
        for (size_t i = 0; i < cur.n; i++) {
            if (last_literal) {
                char *j = path_join(cur.v[i], p, clen);
                if (!j || !transport_strvec_push(&next, j)) {
                    free(j);
                    vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory expanding '%s'", pat);
                    goto cleanup;
                }
                free(j);
                continue;
            }
            char comp[NAME_MAX + 1];
            if (clen > NAME_MAX)
                continue;
            memcpy(comp, p, clen);
            comp[clen] = '\0';
            transport_strvec names = { 0 };
            vcl_error le;
            vcl_error_clear(&le);
            if (!conn_list(c, cur.v[i][0] ? cur.v[i] : ".", &names, true, &le)) {
                util_strv_free(names.v, names.n);
                if (c->broken) {
                    *e = le;
                    goto cleanup;
                }
                continue;   /* not a directory, missing, unreadable: no match here */
            }
            transport_names_sort(names.v, names.n);
            for (size_t k = 0; k < names.n; k++) {
                if (fnmatch(comp, names.v[k], FNM_PERIOD) != 0)
                    continue;
                char *j = path_join(cur.v[i], names.v[k], strlen(names.v[k]));
                if (!j || !transport_strvec_push(&next, j)) {
                    free(j);
                    util_strv_free(names.v, names.n);
                    vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory expanding '%s'", pat);
                    goto cleanup;
                }
                free(j);
            }
            util_strv_free(names.v, names.n);
        }
        util_strv_free(cur.v, cur.n);
        cur = next;
        next = (transport_strvec){ 0 };
        p += clen;
        if (cur.n == 0)
            break;
    }
    /* Literal tail (or a pattern with no wildcard at all): keep what exists. */
    if (last_literal) {
        for (size_t i = 0; i < cur.n; i++) {
            transport_stat_info st;
            vcl_error se;
            vcl_error_clear(&se);
            if (!conn_stat(c, cur.v[i], &st, false, &se)) {
                if (c->broken) {
                    *e = se;
                    goto cleanup;
                }
                continue;
            }
            if (st.exists && !transport_strvec_push(&next, cur.v[i])) {
                vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory expanding '%s'", pat);
                goto cleanup;
            }
        }
        util_strv_free(cur.v, cur.n);
        cur = next;
        next = (transport_strvec){ 0 };
    }
    if (cur.n == 1 && !strcmp(cur.v[0], "/") && strcmp(pat, "/") != 0) {
        util_strv_free(cur.v, cur.n);
        cur = (transport_strvec){ 0 };
    }
    transport_names_sort(cur.v, cur.n);
    *x->names = cur.v;
    *x->n = cur.n;
    cur = (transport_strvec){ 0 };
    ok = true;
cleanup:
    util_strv_free(cur.v, cur.n);
    util_strv_free(next.v, next.n);
    return ok;
}

static bool ssh_glob(vcl_transport *t, const char *pattern, char ***paths, size_t *n, vcl_error *e)
{
    path_ctx x = { .path = pattern, .names = paths, .n = n };
    return with_conn(t, ssh_glob_conn, &x, e);
}

/* ---------------------------------------------------------------- copy_in */

typedef struct copy_ctx {
    const char *src;
    const char *dst;
    transport_progress_fn progress;
    void *opaque;
    int in;
    off_t size;
    char *buf;            /* COPY_CHUNK */
    char *cmp;            /* RESUME_SAMPLE_LEN */
    char *sbuf;           /* STREAM_QUEUE + COPY_CHUNK: the stream's buffer */
    long long resumed_from;
    long long sent;       /* bytes sent over the wire (data, not holes) */
} copy_ctx;

/* A write stream over an SFTP handle that keeps libssh2's pipeline full
 * across calls (conn_write_all waits for every byte to be acknowledged, so
 * the pipeline drains at the end of each buffer; for a long copy that idles
 * both ends for a round trip and a window each time).
 *
 * What libssh2 1.10's sftp_write does, and this relies on: a call that starts
 * in its idle state first turns all the new bytes it is given into queued
 * WRITE packets (copies), skipping the first "already" bytes of the buffer:
 * those queued before and not yet reported written; then it sends what the
 * window allows and returns the bytes acknowledged (at most one packet's per
 * call), 0, or EAGAIN. After an EAGAIN the next call may resume in its
 * "sent" state and ignore new bytes, so new bytes are only added on a call
 * that follows one that returned >= 0. The first `pend` bytes of `buf` are
 * never read again: new bytes go at buf + pend and the call covers
 * [buf, buf + pend + n). */
typedef struct sftp_stream {
    LIBSSH2_SFTP_HANDLE *h;
    char *buf;          /* STREAM_QUEUE + COPY_CHUNK */
    size_t pend;        /* queued in libssh2, not yet reported written */
    bool idle;          /* the last call returned >= 0: the next may add bytes */
} sftp_stream;

static bool stream_call(ssh_conn *c, sftp_stream *s, size_t add, bool *moved, const char *path,
                        vcl_error *e)
{
    ssize_t r = libssh2_sftp_write(s->h, s->buf, s->pend + add);
    *moved = false;
    if (r == LIBSSH2_ERROR_EAGAIN) {
        s->pend += add;      /* queued before the call blocked */
        s->idle = false;
        return true;
    }
    if (r < 0)
        return conn_fail(c, e, "cannot write", path);
    s->pend = s->pend + add - (size_t)r;
    s->idle = true;
    *moved = r > 0;
    return true;
}

/* Make progress until cond holds: while (!idle || pend > limit). */
static bool stream_drain(ssh_conn *c, sftp_stream *s, size_t limit, const char *path, vcl_error *e)
{
    int64_t deadline = io_deadline();
    while (!s->idle || s->pend > limit) {
        bool moved;
        if (!stream_call(c, s, 0, &moved, path, e))
            return false;
        if (moved)
            deadline = io_deadline();
        else if ((!s->idle || s->pend > limit) && !conn_wait(c, deadline))
            return conn_fail(c, e, "cannot write", path);
    }
    return true;
}

/* Queue n (<= COPY_CHUNK) bytes after what is queued already. */
static bool stream_push(ssh_conn *c, sftp_stream *s, const char *data, size_t n, const char *path,
                        vcl_error *e)
{
    bool moved;
    if (!stream_drain(c, s, STREAM_QUEUE - 1, path, e))
        return false;
    memcpy(s->buf + s->pend, data, n);
    return stream_call(c, s, n, &moved, path, e);
}

/* Wait until every queued byte is acknowledged (before a seek, at the end). */
static bool stream_flush(ssh_conn *c, sftp_stream *s, const char *path, vcl_error *e)
{
    return stream_drain(c, s, 0, path, e);
}

static bool pread_full(int fd, char *buf, size_t n, off_t off, size_t *got)
{
    *got = 0;
    while (*got < n) {
        ssize_t r = pread(fd, buf + *got, n - *got, off + (off_t)*got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return true;
}

/* Is the remote partial file (size have) a prefix of the source? Compares
 * RESUME_SAMPLES blocks spread over it and its last block. */
static bool partial_is_prefix(ssh_conn *c, copy_ctx *x, long long have, bool *same, vcl_error *e)
{
    LIBSSH2_SFTP_HANDLE *h = NULL;
    bool ok = false;
    *same = false;
    if (!conn_open_file(c, x->dst, LIBSSH2_FXF_READ, 0, &h, e))
        return false;
    *same = true;
    for (int i = 0; i <= RESUME_SAMPLES && *same; i++) {
        long long off = i == RESUME_SAMPLES ? have - RESUME_SAMPLE_LEN : have / RESUME_SAMPLES * i;
        if (off < 0)
            off = 0;
        size_t want = (size_t)(have - off < RESUME_SAMPLE_LEN ? have - off : RESUME_SAMPLE_LEN);
        size_t got_r = 0, got_l = 0;
        if (!conn_pread(c, h, x->cmp, want, (unsigned long long)off, &got_r, x->dst, e))
            goto cleanup;
        if (!pread_full(x->in, x->buf, want, off, &got_l)) {
            transport_errno_error(e, errno, "cannot read", x->src);
            goto cleanup;
        }
        if (got_r != want || got_l != want || memcmp(x->cmp, x->buf, want) != 0)
            *same = false;
    }
    ok = true;
cleanup:
    if (h) {
        vcl_error e2;
        conn_close_file(c, &h, x->dst, &e2);
    }
    return ok;
}

static bool ssh_copy_in_conn(ssh_conn *c, void *ctx, vcl_error *e)
{
    copy_ctx *x = ctx;
    LIBSSH2_SFTP_HANDLE *h = NULL;
    transport_stat_info st;
    bool ok = false;
    off_t off = 0;

    if (!conn_need_regular(c, x->dst, "write", true, &st, e))
        return false;
    if (st.exists && st.size > 0 && st.size <= (long long)x->size) {
        bool same = false;
        if (!partial_is_prefix(c, x, st.size, &same, e))
            return false;
        if (same)
            off = (off_t)st.size;
        else
            log_info("sftp copy %s: '%s' exists (%lld bytes) but is not a prefix of '%s': "
                     "starting over", c->pool->label, x->dst, st.size, x->src);
    }
    c->started = true;
    unsigned long flags = LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | (off ? 0 : LIBSSH2_FXF_TRUNC);
    if (!conn_open_file(c, x->dst, flags, 0644, &h, e))
        goto cleanup;
    x->resumed_from = (long long)off;
    if (off)
        log_info("sftp copy %s: resuming '%s' at %lld of %lld bytes", c->pool->label, x->dst,
                 (long long)off, (long long)x->size);
    log_debug("sftp copy %s: %s -> %s (%lld bytes)", c->pool->label, x->src, x->dst,
              (long long)x->size);

    long long next_report = (long long)off + PROGRESS_EVERY;
    unsigned long long hpos = (unsigned long long)off;   /* where the handle writes next */
    sftp_stream st_ = { .h = h, .buf = x->sbuf, .idle = true }, *ws = &st_;
    libssh2_sftp_seek64(h, hpos);
    if (x->progress)
        x->progress(x->opaque, (long long)off, (long long)x->size);
    while (off < x->size) {
        off_t data = lseek(x->in, off, SEEK_DATA), hole;
        if (data < 0) {
            if (errno == ENXIO)
                break;                  /* only a hole is left */
            data = off;                 /* no SEEK_DATA here: all of it is data */
            hole = x->size;
        } else {
            hole = lseek(x->in, data, SEEK_HOLE);
            if (hole < 0)
                hole = x->size;
        }
        if (hole > x->size)
            hole = x->size;
        for (off = data; off < hole;) {
            size_t want = (size_t)(hole - off < COPY_CHUNK ? hole - off : COPY_CHUNK), got = 0;
            if (!pread_full(x->in, x->buf, want, off, &got)) {
                transport_errno_error(e, errno, "cannot read", x->src);
                goto cleanup;
            }
            if (got == 0) {             /* the file shrank under us */
                hole = x->size = off;
                break;
            }
            /* Runs of non-zero blocks are written; zero blocks become holes. */
            for (size_t i = 0; i < got;) {
                size_t blk = got - i < SPARSE_BLOCK ? got - i : SPARSE_BLOCK;
                if (util_all_zero(x->buf + i, blk)) {
                    i += blk;
                    continue;
                }
                size_t j = i + blk;
                while (j < got) {
                    size_t b2 = got - j < SPARSE_BLOCK ? got - j : SPARSE_BLOCK;
                    if (util_all_zero(x->buf + j, b2))
                        break;
                    j += b2;
                }
                unsigned long long at = (unsigned long long)off + i;
                if (at != hpos) {
                    /* A seek drops libssh2's queue: everything acknowledged first. */
                    if (!stream_flush(c, ws, x->dst, e))
                        goto cleanup;
                    libssh2_sftp_seek64(h, at);
                }
                if (!stream_push(c, ws, x->buf + i, j - i, x->dst, e))
                    goto cleanup;
                hpos = at + (j - i);
                x->sent += (long long)(j - i);
                i = j;
            }
            off += (off_t)got;
            if (x->progress && (long long)off >= next_report) {
                x->progress(x->opaque, (long long)off, (long long)x->size);
                next_report = (long long)off + PROGRESS_EVERY;
            }
        }
        off = hole;
    }
    if (!stream_flush(c, ws, x->dst, e))
        goto cleanup;
    /* The size (a trailing hole is never written). */
    LIBSSH2_SFTP_ATTRIBUTES a = { .flags = LIBSSH2_SFTP_ATTR_SIZE,
                                  .filesize = (libssh2_uint64_t)x->size };
    if (!conn_fsetstat(c, h, &a, "cannot set the size of", x->dst, e) ||
        !conn_fsync(c, h, x->dst, e) || !conn_close_file(c, &h, x->dst, e))
        goto cleanup;
    if (x->progress)
        x->progress(x->opaque, (long long)x->size, (long long)x->size);
    ok = true;
cleanup:
    if (h) {
        vcl_error e2;
        conn_close_file(c, &h, x->dst, &e2);
    }
    return ok;
}

/* Streams local_src to dst over SFTP. When dst exists and is a prefix of
 * local_src (a copy cut short), the copy continues from its size; otherwise
 * dst is truncated. Holes in the source (SEEK_HOLE) and all-zero 64 KiB
 * blocks are skipped with an SFTP seek, so the copy stays sparse. */
static bool ssh_copy_in(vcl_transport *t, const char *local_src, const char *dst,
                        transport_progress_fn progress, void *opaque, vcl_error *e)
{
    copy_ctx x = { .src = local_src, .dst = dst, .progress = progress, .opaque = opaque,
                   .in = -1 };
    struct stat sb;
    bool ok = false;
    int64_t t0 = util_mono_ms();

    x.in = transport_open_regular(local_src, false, true, "copy", e);
    if (x.in < 0)
        goto cleanup;
    if (fstat(x.in, &sb) < 0) {
        transport_errno_error(e, errno, "cannot stat", local_src);
        goto cleanup;
    }
    x.size = sb.st_size;
    (void)posix_fadvise(x.in, 0, 0, POSIX_FADV_SEQUENTIAL);
    x.buf = malloc(COPY_CHUNK);
    x.cmp = malloc(RESUME_SAMPLE_LEN);
    x.sbuf = malloc(STREAM_QUEUE + COPY_CHUNK);
    if (!x.buf || !x.cmp || !x.sbuf) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory copying '%s'", local_src);
        goto cleanup;
    }
    if (!with_conn(t, ssh_copy_in_conn, &x, e))
        goto cleanup;
    int64_t ms = util_mono_ms() - t0;
    log_info("sftp copy %s: %s -> %s: %lld bytes (%lld sent%s) in %lld ms",
             ((ssh_pool *)t->priv)->label, local_src, dst, (long long)x.size, x.sent,
             x.resumed_from ? ", resumed" : "", (long long)ms);
    ok = true;
cleanup:
    if (x.in >= 0)
        close(x.in);
    free(x.buf);
    free(x.cmp);
    free(x.sbuf);
    return ok;
}

/* --------------------------------------------------------------- copy_out */

/* Copy a file from the node onto this host: read it through SFTP in
 * COPY_CHUNK pieces (libssh2 pipelines the reads), write them at their
 * offsets, skip all-zero chunks (holes), set the final size, fsync. The
 * caller writes to a temp name and renames. A retry on a new session starts
 * over (the local file is truncated first). */
typedef struct copy_out_ctx {
    const char *src;
    const char *dst;
    transport_progress_fn progress;
    void *opaque;
    int out;
    char *buf;            /* COPY_CHUNK */
    long long size;       /* bytes copied */
} copy_out_ctx;

static bool ssh_copy_out_conn(ssh_conn *c, void *ctx, vcl_error *e)
{
    copy_out_ctx *x = ctx;
    LIBSSH2_SFTP_HANDLE *h = NULL;
    transport_stat_info st;
    bool ok = false;
    long long off = 0, next_report = PROGRESS_EVERY;

    if (!conn_need_regular(c, x->src, "copy", false, &st, e))
        return false;
    if (!conn_open_file(c, x->src, LIBSSH2_FXF_READ, 0, &h, e))
        return false;
    if (ftruncate(x->out, 0) < 0) {
        transport_errno_error(e, errno, "cannot truncate", x->dst);
        goto cleanup;
    }
    if (x->progress)
        x->progress(x->opaque, 0, st.size);
    for (;;) {
        ssize_t r;
        SSH_RETRY(c, io_deadline(), r, libssh2_sftp_read(h, x->buf, COPY_CHUNK));
        if (r < 0) {
            conn_fail(c, e, "cannot read", x->src);
            goto cleanup;
        }
        if (r == 0)
            break;
        if (!util_all_zero(x->buf, (size_t)r) && !util_pwrite_all(x->out, x->buf, (size_t)r, (off_t)off)) {
            transport_errno_error(e, errno, "cannot write", x->dst);
            goto cleanup;
        }
        off += r;
        if (x->progress && off >= next_report) {
            x->progress(x->opaque, off, st.size);
            next_report = off + PROGRESS_EVERY;
        }
    }
    if (ftruncate(x->out, (off_t)off) < 0) {
        transport_errno_error(e, errno, "cannot set size of", x->dst);
        goto cleanup;
    }
    if (!conn_close_file(c, &h, x->src, e))
        goto cleanup;
    x->size = off;
    if (x->progress)
        x->progress(x->opaque, off, off);
    ok = true;
cleanup:
    if (h) {
        vcl_error e2;
        conn_close_file(c, &h, x->src, &e2);
    }
    return ok;
}

static bool ssh_copy_out(vcl_transport *t, const char *src, const char *local_dst,
                         transport_progress_fn progress, void *opaque, vcl_error *e)
{
    copy_out_ctx x = { .src = src, .dst = local_dst, .progress = progress, .opaque = opaque,
                       .out = -1 };
    bool ok = false;
    int64_t t0 = util_mono_ms();

    x.out = transport_open_regular(local_dst, true, false, "write", e);
    if (x.out < 0)
        goto cleanup;
    x.buf = malloc(COPY_CHUNK);
    if (!x.buf) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory copying '%s'", src);
        goto cleanup;
    }
    if (!with_conn(t, ssh_copy_out_conn, &x, e))
        goto cleanup;
    if (fsync(x.out) < 0) {
        transport_errno_error(e, errno, "cannot sync", local_dst);
        goto cleanup;
    }
    if (close(x.out) < 0) {
        x.out = -1;
        transport_errno_error(e, errno, "cannot close", local_dst);
        goto cleanup;
    }
    x.out = -1;
    log_info("sftp copy %s: %s -> (this host) %s: %lld bytes in %lld ms",
             ((ssh_pool *)t->priv)->label, src, local_dst, x.size, (long long)(util_mono_ms() - t0));
    ok = true;
cleanup:
    if (x.out >= 0)
        close(x.out);
    free(x.buf);
    return ok;
}

const transport_ops transport_ssh_ops = {
    .kind = "ssh",
    .open = ssh_open,
    .close = ssh_close,
    .exec = ssh_exec,
    .stat = ssh_stat,
    .write_file = ssh_write_file,
    .read_file = ssh_read_file,
    .rename = ssh_rename,
    .rename_noreplace = ssh_rename_noreplace,
    .remove = ssh_remove,
    .mkdir = ssh_mkdir,
    .whoami = ssh_whoami,
    .user_name = NULL,          /* SFTP gives numbers; messages show "uid N" */
    .writable = ssh_writable,
    .fsinfo = ssh_fsinfo,
    .realpath = ssh_realpath,
    .list_dir = ssh_list_dir,
    .copy_in = ssh_copy_in,
    .copy_out = ssh_copy_out,
    .glob = ssh_glob,
};
