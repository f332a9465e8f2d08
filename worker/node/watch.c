/* watch.c: see watch.h.
 *
 * Threads. libvirt calls to a node can block for as long as the node does
 * not answer (virConnectOpen has no deadline at all; calls on an open
 * connection end when its keepalive gives up), so no thread that serves
 * more than one node ever makes one:
 *   - one NODE thread per node owns that node's connection: it opens it
 *     (backoff after failures), subscribes to lifecycle events, and asks
 *     libvirt about the domains of that node only (events, resync lists);
 *   - the WATCHER thread owns the database connection: it reads the node
 *     table (starting and retiring node threads), hands each node thread
 *     the loaded computers of its node at every resync, and writes RELOAD
 *     for what the node threads found; it never calls libvirt;
 *   - libvirt's event loop thread (virt.c) runs the callbacks, which only
 *     queue the event for the node's thread.
 * A hung or stopped node thus delays nothing but its own checks. A node
 * thread that is stuck when its node is removed (or the watcher stops) is
 * left behind: it is never joined while stuck, and what it uses stays
 * allocated (a retired node is freed only after its thread returned). */
#include "node/watch.h"
#include "base/metrics.h"
#include "base/backoff.h"
#include "base/log.h"
#include "queue/job_db.h"
#include "node/virt.h"
#include "base/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#define WATCH_NODE_QUEUE_MAX 256   /* events queued per node */
#define WATCH_MARK_QUEUE_MAX 1024  /* findings queued for the watcher thread */
#define WATCH_MAX_NODES 256
#define WATCH_REOPEN_MAX_S 60
#define WATCH_RETIRED_MAX 64       /* node threads left behind (stuck), at most */
#define WATCH_JOIN_WAIT_S 3        /* at stop: wait this long for node threads */

typedef enum {
    WEV_STOPPED,      /* domain went to shutoff */
    WEV_CRASHED,      /* the guest crashed */
    WEV_GONE,         /* undefined (or renamed) */
    WEV__COUNT
} wev_kind;

/* A lifecycle event (node thread's queue) or a finding (watcher's queue). */
typedef struct watch_event {
    wev_kind kind;
    long long node_id;
    char uuid[VIR_UUID_STRING_BUFLEN];
    char name[256];
    char detail[160];
} watch_event;

/* One loaded computer's domain to check (a resync list). */
typedef struct watch_check {
    char uuid[VIR_UUID_STRING_BUFLEN];
    char name[256];
} watch_check;

typedef struct watch_node {
    long long id;
    char name[128];
    char uri[512];
    pthread_t th;
    atomic_int stop;
    /* node thread only */
    virConnectPtr conn;
    int cb_id;             /* lifecycle callback id, -1 when none */
    bool close_cb;         /* close callback registered */
    int fails;
    double next_try;       /* when to try to (re)open */
    /* guarded by W.mu */
    pthread_cond_t cv;
    watch_event q[WATCH_NODE_QUEUE_MAX];
    int qhead, qlen;
    bool overflow;         /* events were dropped: resync this node */
    bool closed;           /* the connection closed (close callback): reopen it */
    bool want_resync;      /* (re)connected: the watcher should send a resync list */
    watch_check *checks;   /* a resync list handed over by the watcher; NULL = none */
    int n_checks;
    /* watcher thread only */
    bool seen;             /* in the node table at the last refresh */
} watch_node;

static struct {
    const vcl_config *cfg;
    char app[160];
    bool started;
    atomic_int stop;
    pthread_t work_th;
    pthread_mutex_t mu;
    pthread_cond_t cv;     /* the watcher thread waits on it */
    /* guarded by mu */
    watch_node *nodes[WATCH_MAX_NODES]; /* the active nodes (callbacks look up by id) */
    int n_nodes;
    watch_event marks[WATCH_MARK_QUEUE_MAX];
    int mhead, mlen;
    bool mark_overflow;    /* findings were dropped: resync everything */
    bool resync_wanted;    /* a node (re)connected */
    /* watcher thread only */
    db_conn *db;
    bool nodes_dirty;      /* re-read vcl.node: (re)connected, or NOTIFY vcl_node */
    watch_node *retired[WATCH_RETIRED_MAX]; /* node threads told to stop, not joined yet */
    int n_retired;
} W = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

void watch_reason(const char *domain, const char *kind, const char *detail, char *out,
                  size_t outlen)
{
    snprintf(out, outlen, "domain %s %s outside vcl-worker (%s)", domain, kind, detail);
}

static const char *kind_word(wev_kind k)
{
    switch (k) {
    case WEV_STOPPED: return "stopped";
    case WEV_CRASHED: return "crashed";
    case WEV_GONE: return "disappeared";
    default: return "changed";
    }
}

/* W.mu held: the active node with this id, or NULL. */
static watch_node *node_by_id_locked(long long id)
{
    for (int i = 0; i < W.n_nodes; i++)
        if (W.nodes[i]->id == id)
            return W.nodes[i];
    return NULL;
}

/* ---------------- callbacks (in virt.c's event loop thread) ---------------- */

/* Queue an event for its node's thread; no blocking, no libvirt call. */
static void node_push(long long node_id, const watch_event *ev, bool closed)
{
    pthread_mutex_lock(&W.mu);
    watch_node *n = node_by_id_locked(node_id);
    if (n) {
        if (closed)
            n->closed = true;
        else if (n->qlen < WATCH_NODE_QUEUE_MAX) {
            n->q[(n->qhead + n->qlen) % WATCH_NODE_QUEUE_MAX] = *ev;
            n->qlen++;
        } else {
            n->overflow = true; /* a resync of the node finds whatever was dropped */
        }
        pthread_cond_signal(&n->cv);
    }
    pthread_mutex_unlock(&W.mu);
}

static const char *stopped_detail(int d, wev_kind *kind)
{
    switch (d) {
    case VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: return "the guest shut down";
    case VIR_DOMAIN_EVENT_STOPPED_DESTROYED: return "destroyed";
    case VIR_DOMAIN_EVENT_STOPPED_CRASHED: *kind = WEV_CRASHED; return "the guest crashed";
    case VIR_DOMAIN_EVENT_STOPPED_MIGRATED: return "migrated away";
    case VIR_DOMAIN_EVENT_STOPPED_SAVED: return "saved";
    case VIR_DOMAIN_EVENT_STOPPED_FAILED: return "the hypervisor failed";
    case VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT: return "reverted to an offline snapshot";
    default: return "stopped";
    }
}

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
    (void)conn;
    watch_event ev;
    memset(&ev, 0, sizeof ev);
    ev.node_id = (long long)(intptr_t)opaque;
    const char *what;
    switch (event) {
    case VIR_DOMAIN_EVENT_STOPPED:
        ev.kind = WEV_STOPPED;
        what = stopped_detail(detail, &ev.kind);
        break;
    case VIR_DOMAIN_EVENT_CRASHED:
        ev.kind = WEV_CRASHED;
        what = detail == VIR_DOMAIN_EVENT_CRASHED_PANICKED ? "the guest panicked" : "crashed";
        break;
    case VIR_DOMAIN_EVENT_UNDEFINED:
        ev.kind = WEV_GONE;
        what = detail == VIR_DOMAIN_EVENT_UNDEFINED_RENAMED ? "renamed" : "undefined";
        break;
    default:
        return 0; /* started, suspended, resumed, defined, ...: nothing to do */
    }
    snprintf(ev.detail, sizeof ev.detail, "%s", what);
    const char *name = virDomainGetName(dom);
    snprintf(ev.name, sizeof ev.name, "%s", name ? name : "?");
    if (virDomainGetUUIDString(dom, ev.uuid) < 0)
        return 0;
    node_push(ev.node_id, &ev, false);
    return 0;
}

static void on_close(virConnectPtr conn, int reason, void *opaque)
{
    (void)conn;
    (void)reason;
    node_push((long long)(intptr_t)opaque, NULL, true);
}

/* ---------------- findings: node threads -> the watcher thread ---------------- */

static void mark_push(const watch_event *ev)
{
    pthread_mutex_lock(&W.mu);
    if (W.mlen < WATCH_MARK_QUEUE_MAX) {
        W.marks[(W.mhead + W.mlen) % WATCH_MARK_QUEUE_MAX] = *ev;
        W.mlen++;
    } else {
        W.mark_overflow = true; /* the next resync finds it again */
    }
    pthread_cond_signal(&W.cv);
    pthread_mutex_unlock(&W.mu);
}

/* ---------------- a node's connection (its own thread) ---------------- */

static void node_close(watch_node *n)
{
    if (!n->conn)
        return;
    if (n->cb_id >= 0)
        virConnectDomainEventDeregisterAny(n->conn, n->cb_id);
    if (n->close_cb)
        virConnectUnregisterCloseCallback(n->conn, on_close);
    virConnectClose(n->conn);
    n->conn = NULL;
    n->cb_id = -1;
    n->close_cb = false;
}

/* Open and subscribe unless connected; backoff after failures. A new
 * connection asks the watcher for a resync list (events may have been
 * missed while there was none). */
static bool node_ensure(watch_node *n)
{
    if (n->conn)
        return true;
    double now = util_mono_s();
    if (now < n->next_try)
        return false;
    vcl_error e;
    vcl_error_clear(&e);
    void *opaque = (void *)(intptr_t)n->id;
    n->conn = virt_open(n->uri, &e); /* with keepalive: a hung node closes it */
    if (n->conn) {
        n->cb_id = virConnectDomainEventRegisterAny(n->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                    VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle),
                                                    opaque, NULL);
        if (n->cb_id < 0) {
            virt_error(&e, NULL, "subscribing to domain events of node %s", n->name);
            node_close(n);
        }
    }
    if (!n->conn) {
        n->fails++;
        double wait = backoff_seconds(n->fails, 1, WATCH_REOPEN_MAX_S, backoff_random());
        n->next_try = util_mono_s() + wait;
        if (n->fails == 1 || n->fails % 10 == 0)
            log_warn("watch: node %s: %s (retrying in %.0f s)", n->name, e.msg, wait);
        return false;
    }
    n->close_cb = virConnectRegisterCloseCallback(n->conn, on_close, opaque, NULL) == 0;
    if (n->fails)
        log_info("watch: node %s reachable again at %s", n->name, n->uri);
    else
        log_debug("watch: subscribed to domain events of node %s (%s)", n->name, n->uri);
    n->fails = 0;
    pthread_mutex_lock(&W.mu);
    n->want_resync = true;
    W.resync_wanted = true;
    pthread_cond_signal(&W.cv);
    pthread_mutex_unlock(&W.mu);
    return true;
}

static bool up_state(int st)
{
    return st == VIR_DOMAIN_RUNNING || st == VIR_DOMAIN_BLOCKED || st == VIR_DOMAIN_PAUSED ||
           st == VIR_DOMAIN_SHUTDOWN || st == VIR_DOMAIN_PMSUSPENDED;
}

static const char *shutoff_reason(int r)
{
    switch (r) {
    case VIR_DOMAIN_SHUTOFF_SHUTDOWN: return "the guest shut down";
    case VIR_DOMAIN_SHUTOFF_DESTROYED: return "destroyed";
    case VIR_DOMAIN_SHUTOFF_CRASHED: return "the guest crashed";
    case VIR_DOMAIN_SHUTOFF_MIGRATED: return "migrated away";
    case VIR_DOMAIN_SHUTOFF_SAVED: return "saved";
    case VIR_DOMAIN_SHUTOFF_FAILED: return "failed to start";
    case VIR_DOMAIN_SHUTOFF_FROM_SNAPSHOT: return "reverted to an offline snapshot";
    case VIR_DOMAIN_SHUTOFF_DAEMON: return "stopped while libvirtd was down";
    default: return "shut off";
    }
}

/* What libvirt says now about the domain: 1 = fine (exists, persistent, up),
 * 0 = not (kind and detail filled), -1 = cannot tell (node unreachable). */
static int domain_check(watch_node *n, const char *uuid, const char *via, wev_kind *kind,
                        char *name, size_t nlen, char *detail, size_t dlen)
{
    virDomainPtr dom = NULL;
    vcl_error e;
    vcl_error_clear(&e);
    if (!node_ensure(n))
        return -1;
    if (!virt_lookup_uuid(n->conn, uuid, &dom, &e)) {
        log_debug("watch: node %s: %s", n->name, e.msg);
        return -1;
    }
    if (!dom) {
        *kind = WEV_GONE;
        snprintf(detail, dlen, "%s: no such domain on node %s", via, n->name);
        return 0;
    }
    int st = 0, reason = 0, rc = 1;
    const char *nm = virDomainGetName(dom);
    if (nm)
        snprintf(name, nlen, "%s", nm);
    if (virDomainGetState(dom, &st, &reason, 0) < 0) {
        virDomainFree(dom);
        return -1;
    }
    int persistent = virDomainIsPersistent(dom);
    if (st == VIR_DOMAIN_CRASHED) {
        *kind = WEV_CRASHED;
        snprintf(detail, dlen, "%s: crashed", via);
        rc = 0;
    } else if (!up_state(st)) {
        *kind = st == VIR_DOMAIN_SHUTOFF && reason == VIR_DOMAIN_SHUTOFF_CRASHED ? WEV_CRASHED
                                                                                 : WEV_STOPPED;
        snprintf(detail, dlen, "%s: %s", via,
                 st == VIR_DOMAIN_SHUTOFF ? shutoff_reason(reason) : virt_state_name(st));
        rc = 0;
    } else if (persistent == 0) {
        *kind = WEV_GONE;
        snprintf(detail, dlen, "%s: undefined, still running as a transient domain", via);
        rc = 0;
    }
    virDomainFree(dom);
    return rc;
}

/* An event: re-check the domain (it may be back up already: a reset, a
 * reload); unless it is fine, hand the event to the watcher. */
static void node_event(watch_node *n, const watch_event *ev)
{
    log_debug("watch: event on node %s: domain %s %s (%s)", n->name, ev->name, kind_word(ev->kind),
              ev->detail);
    wev_kind k = ev->kind;
    char name[256], detail[160];
    snprintf(name, sizeof name, "%s", ev->name);
    if (domain_check(n, ev->uuid, "event", &k, name, sizeof name, detail, sizeof detail) == 1)
        return;
    mark_push(ev);
}

/* A resync list: every loaded computer of this node, checked directly. */
static void node_resync(watch_node *n, const watch_check *checks, int count)
{
    int checked = 0, marked = 0;
    for (int i = 0; i < count && !atomic_load(&n->stop) && !atomic_load(&W.stop); i++) {
        watch_event ev;
        memset(&ev, 0, sizeof ev);
        ev.node_id = n->id;
        ev.kind = WEV_STOPPED;
        snprintf(ev.uuid, sizeof ev.uuid, "%s", checks[i].uuid);
        snprintf(ev.name, sizeof ev.name, "%s", checks[i].name[0] ? checks[i].name : checks[i].uuid);
        int c = domain_check(n, ev.uuid, "resync", &ev.kind, ev.name, sizeof ev.name, ev.detail,
                             sizeof ev.detail);
        checked += c >= 0;
        if (c != 0)
            continue;
        mark_push(&ev);
        marked++;
    }
    log_debug("watch: resync checked %d of %d loaded computer(s) of node %s, %d not running",
              checked, count, n->name, marked);
}

static void *node_main(void *arg)
{
    watch_node *n = arg;
    log_ctx_set(0, NULL, n->name);
    log_ctx_stage("watch");
    while (!atomic_load(&n->stop) && !atomic_load(&W.stop)) {
        node_ensure(n);
        watch_event batch[32];
        int nb = 0;
        watch_check *checks = NULL;
        int n_checks = 0;
        bool closed, overflow;
        pthread_mutex_lock(&W.mu);
        if (n->qlen == 0 && !n->checks && !n->closed && !n->overflow && !atomic_load(&n->stop) &&
            !atomic_load(&W.stop)) {
            /* at most a second: also retry the connection, see stop */
            struct timespec ts = util_realtime_in(1.0);
            pthread_cond_timedwait(&n->cv, &W.mu, &ts);
        }
        while (n->qlen > 0 && nb < 32) {
            batch[nb++] = n->q[n->qhead];
            n->qhead = (n->qhead + 1) % WATCH_NODE_QUEUE_MAX;
            n->qlen--;
        }
        checks = n->checks;
        n_checks = n->n_checks;
        n->checks = NULL;
        n->n_checks = 0;
        closed = n->closed;
        overflow = n->overflow;
        n->closed = n->overflow = false;
        if (overflow) {
            n->want_resync = true;
            W.resync_wanted = true;
            pthread_cond_signal(&W.cv);
        }
        pthread_mutex_unlock(&W.mu);
        if (closed && n->conn) {
            log_warn("watch: connection to node %s closed; reopening", n->name);
            node_close(n);
            n->next_try = 0;
        }
        if (overflow)
            log_warn("watch: node %s: event queue overflowed: resyncing it", n->name);
        for (int i = 0; i < nb && !atomic_load(&n->stop); i++)
            node_event(n, &batch[i]);
        if (checks)
            node_resync(n, checks, n_checks);
        free(checks);
    }
    node_close(n);
    log_ctx_clear();
    return NULL;
}

/* ---------------- the watcher thread: nodes, resync lists, the writes ---------------- */

static void node_free(watch_node *n)
{
    free(n->checks);
    pthread_cond_destroy(&n->cv);
    free(n);
}

static watch_node *node_start(long long id, const char *name, const char *uri)
{
    watch_node *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->id = id;
    n->cb_id = -1;
    snprintf(n->name, sizeof n->name, "%s", name ? name : "");
    snprintf(n->uri, sizeof n->uri, "%s", uri ? uri : "");
    pthread_cond_init(&n->cv, NULL);
    if (pthread_create(&n->th, NULL, node_main, n) != 0) {
        log_warn("watch: cannot start a thread for node %s: it is not watched", n->name);
        node_free(n);
        return NULL;
    }
    return n;
}

/* Join the retired node threads that have returned; free them. */
static void retired_reap(void)
{
    for (int i = 0; i < W.n_retired;) {
        if (pthread_tryjoin_np(W.retired[i]->th, NULL) == 0) {
            node_free(W.retired[i]);
            W.retired[i] = W.retired[--W.n_retired];
        } else {
            i++;
        }
    }
}

/* Tell a node thread to stop (it may be stuck in a call to its node: it is
 * joined later, never waited for). W.mu not held; n is already out of
 * W.nodes. */
static void node_retire(watch_node *n)
{
    atomic_store(&n->stop, 1);
    pthread_mutex_lock(&W.mu);
    pthread_cond_signal(&n->cv);
    pthread_mutex_unlock(&W.mu);
    retired_reap();
    if (W.n_retired == WATCH_RETIRED_MAX) {
        log_warn("watch: %d node threads stuck on unresponsive nodes; leaving node %s's behind",
                 WATCH_RETIRED_MAX, n->name);
        pthread_detach(n->th); /* its struct is never freed: it may still use it */
        return;
    }
    W.retired[W.n_retired++] = n;
}

/* Re-read vcl.node: new nodes get a thread, changed URIs a new thread (the
 * old one retired), removed nodes are retired. */
static bool nodes_refresh(void)
{
    vcl_error e;
    vcl_error_clear(&e);
    watch_node_row *rows = NULL;
    int nrows = 0;
    if (!watch_nodes_list(W.db, &rows, &nrows, &e)) {
        log_warn("watch: reading the nodes: %s", e.msg);
        return false;
    }
    watch_node *gone[WATCH_MAX_NODES];
    int n_gone = 0;
    pthread_mutex_lock(&W.mu);
    for (int i = 0; i < W.n_nodes; i++)
        W.nodes[i]->seen = false;
    for (int k = 0; k < nrows; k++) {
        long long id = rows[k].id;
        const char *name = rows[k].name, *uri = rows[k].uri;
        watch_node *n = node_by_id_locked(id);
        if (n && strcmp(n->uri, uri) == 0 && strcmp(n->name, name) == 0) {
            n->seen = true;
            continue;
        }
        if (n) { /* URI or name changed: a new thread for it */
            for (int i = 0; i < W.n_nodes; i++)
                if (W.nodes[i] == n) {
                    W.nodes[i] = W.nodes[--W.n_nodes];
                    break;
                }
            gone[n_gone++] = n;
        }
        if (W.n_nodes == WATCH_MAX_NODES) {
            log_warn("watch: more than %d nodes: node %s is not watched", WATCH_MAX_NODES, name);
            continue;
        }
        watch_node *fresh = node_start(id, name, uri);
        if (fresh) {
            fresh->seen = true;
            W.nodes[W.n_nodes++] = fresh;
        }
    }
    for (int i = 0; i < W.n_nodes;) {
        if (W.nodes[i]->seen) {
            i++;
            continue;
        }
        gone[n_gone++] = W.nodes[i];
        W.nodes[i] = W.nodes[--W.n_nodes];
    }
    pthread_mutex_unlock(&W.mu);
    free(rows);
    for (int i = 0; i < n_gone; i++)
        node_retire(gone[i]);
    W.nodes_dirty = false;
    return true;
}

/* The guarded UPDATE; logs when it changed a computer. */
static void mark_reload(const watch_event *ev)
{
    char reason[512], **computers = NULL;
    size_t n = 0;
    watch_reason(ev->name, kind_word(ev->kind), ev->detail, reason, sizeof reason);
    vcl_error e;
    vcl_error_clear(&e);
    if (!watch_mark_reload(W.db, ev->node_id, ev->uuid, reason, &computers, &n, &e)) {
        log_warn("watch: writing RELOAD for domain %s: %s", ev->name, e.msg);
        return;
    }
    char node[128] = "";
    pthread_mutex_lock(&W.mu);
    watch_node *wn = node_by_id_locked(ev->node_id);
    if (wn)
        UTIL_COPY(node, wn->name);
    pthread_mutex_unlock(&W.mu);
    for (size_t k = 0; k < n; k++) {
        log_warn("watch: computer %s: %s: node_status RELOAD", computers[k], reason);
        metrics_computer_reload(node, "watch");
    }
    if (n == 0)
        log_debug("watch: domain %s (%s): no loaded computer to update", ev->name, ev->uuid);
    util_strv_free(computers, n);
}

/* Hand every node thread (all, or those that asked) the loaded computers
 * of its node; a node that gets no list has none loaded. */
static void resync(bool all)
{
    vcl_error e;
    vcl_error_clear(&e);
    if (!nodes_refresh())
        return;
    watch_loaded_row *loaded = NULL;
    int rows = 0;
    if (!watch_loaded(W.db, &loaded, &rows, &e)) {
        log_warn("watch: reading the loaded computers: %s", e.msg);
        return;
    }
    pthread_mutex_lock(&W.mu);
    W.resync_wanted = false;
    for (int i = 0; i < W.n_nodes; i++) {
        watch_node *n = W.nodes[i];
        if (!all && !n->want_resync)
            continue;
        n->want_resync = false;
        int count = 0;
        for (int k = 0; k < rows; k++)
            count += loaded[k].node_id == n->id;
        watch_check *checks = count ? calloc((size_t)count, sizeof *checks) : NULL;
        if (count && !checks)
            continue;
        int m = 0;
        for (int k = 0; k < rows && m < count; k++) {
            if (loaded[k].node_id != n->id)
                continue;
            snprintf(checks[m].uuid, sizeof checks[m].uuid, "%s", loaded[k].uuid);
            snprintf(checks[m].name, sizeof checks[m].name, "%s", loaded[k].domain);
            m++;
        }
        if (!checks)
            continue;
        free(n->checks); /* an older list it has not taken yet: this one is newer */
        n->checks = checks;
        n->n_checks = m;
        pthread_cond_signal(&n->cv);
    }
    pthread_mutex_unlock(&W.mu);
    log_debug("watch: resync: %d loaded computer(s) handed to the node threads", rows);
    free(loaded);
}

/* A working connection that LISTENs on vcl_node (a new one re-reads the
 * nodes: changes may have been missed meanwhile). */
static bool conn_ready(void)
{
    vcl_error e;
    vcl_error_clear(&e);
    bool fresh = false;
    if (watch_db_ready(&W.db, W.cfg->database, W.app, &fresh, &e)) {
        W.nodes_dirty |= fresh;
        return true;
    }
    log_warn("watch: no database connection: %s (retrying)", e.msg);
    return false;
}

/* Stop every node thread; wait for them together at most WATCH_JOIN_WAIT_S
 * (one stuck in a call to a hung node is left behind, its struct not freed). */
static void nodes_stop_all(void)
{
    pthread_mutex_lock(&W.mu);
    for (int i = 0; i < W.n_nodes; i++) {
        atomic_store(&W.nodes[i]->stop, 1);
        pthread_cond_signal(&W.nodes[i]->cv);
    }
    int n = W.n_nodes;
    watch_node *all[WATCH_MAX_NODES];
    memcpy(all, W.nodes, sizeof(watch_node *) * (size_t)n);
    W.n_nodes = 0;
    pthread_mutex_unlock(&W.mu);
    struct timespec until = util_realtime_in(WATCH_JOIN_WAIT_S);
    int left = 0;
    for (int i = 0; i < n; i++) {
        if (pthread_timedjoin_np(all[i]->th, NULL, &until) == 0) {
            node_free(all[i]);
        } else {
            pthread_detach(all[i]->th);
            left++;
        }
    }
    for (int i = 0; i < W.n_retired; i++) {
        if (pthread_timedjoin_np(W.retired[i]->th, NULL, &until) == 0) {
            node_free(W.retired[i]);
        } else {
            pthread_detach(W.retired[i]->th);
            left++;
        }
    }
    W.n_retired = 0;
    if (left)
        log_warn("watch: %d node thread(s) still stuck on unresponsive nodes: left behind", left);
}

static void *work_main(void *arg)
{
    (void)arg;
    log_ctx_set(0, NULL, NULL);
    log_ctx_stage("watch");
    int period = W.cfg->watch_resync_seconds;
    double next_resync = 0; /* at once: subscribe, and catch what happened unwatched */
    while (!atomic_load(&W.stop)) {
        if (!conn_ready()) {
            for (int i = 0; i < 20 && !atomic_load(&W.stop); i++)
                usleep(100000);
            continue;
        }
        /* NOTIFY vcl_node arrived (a broken connection: conn_ready() reconnects) */
        if (watch_db_notified(W.db))
            W.nodes_dirty = true;
        double now = util_mono_s();
        bool wanted;
        pthread_mutex_lock(&W.mu);
        wanted = W.resync_wanted || W.mark_overflow;
        bool overflow = W.mark_overflow;
        W.mark_overflow = false;
        pthread_mutex_unlock(&W.mu);
        if (overflow)
            log_warn("watch: the queue of findings overflowed: resyncing now");
        if (now >= next_resync || overflow) {
            resync(true);
            next_resync = util_mono_s() + period;
        } else if (wanted) {
            resync(false); /* only the nodes that (re)connected */
        } else if (W.nodes_dirty) {
            nodes_refresh();
        }
        retired_reap();
        /* wait for findings, the next resync or stop */
        watch_event batch[64];
        int nb = 0;
        pthread_mutex_lock(&W.mu);
        if (W.mlen == 0 && !W.resync_wanted && !W.mark_overflow && !atomic_load(&W.stop)) {
            double wait = next_resync - util_mono_s();
            if (wait > 1)
                wait = 1; /* also re-check stop, NOTIFY and the DB connection */
            struct timespec ts = util_realtime_in(wait);
            pthread_cond_timedwait(&W.cv, &W.mu, &ts);
        }
        while (W.mlen > 0 && nb < 64) {
            batch[nb++] = W.marks[W.mhead];
            W.mhead = (W.mhead + 1) % WATCH_MARK_QUEUE_MAX;
            W.mlen--;
        }
        pthread_mutex_unlock(&W.mu);
        for (int i = 0; i < nb && !atomic_load(&W.stop); i++) {
            if (conn_ready())
                mark_reload(&batch[i]);
        }
    }
    nodes_stop_all();
    watch_db_close(W.db);
    W.db = NULL;
    log_ctx_clear();
    return NULL;
}

bool watch_start(const vcl_config *cfg, const char *worker_name, vcl_error *e)
{
    if (W.started)
        return true;
    if (!cfg || cfg->watch_resync_seconds <= 0) {
        log_info("watch: domain watcher off (watch_resync_seconds: 0)");
        return true;
    }
    if (!virt_events_running())
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "watch: no libvirt event loop (see virt_init): domain events "
                             "cannot be delivered");
    W.cfg = cfg;
    snprintf(W.app, sizeof W.app, "%s-watch", worker_name && worker_name[0] ? worker_name : "vcl-worker");
    atomic_store(&W.stop, 0);
    W.mhead = W.mlen = 0;
    W.mark_overflow = W.resync_wanted = false;
    if (pthread_create(&W.work_th, NULL, work_main, NULL) != 0)
        return vcl_error_set(e, VCL_ERR_RETRYABLE, "watch: cannot start the watcher thread");
    W.started = true;
    log_info("watch: watching domains (lifecycle events, resync every %d s; one thread per node)",
             cfg->watch_resync_seconds);
    return true;
}

void watch_stop(void)
{
    if (!W.started)
        return;
    atomic_store(&W.stop, 1);
    pthread_mutex_lock(&W.mu);
    pthread_cond_broadcast(&W.cv);
    pthread_mutex_unlock(&W.mu);
    pthread_join(W.work_th, NULL); /* it stops the node threads (bounded wait) */
    W.started = false;
    log_info("watch: stopped");
}
