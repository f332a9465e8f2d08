/* watch.c: see watch.h. */
#include "node/watch.h"
#include "queue/db.h"
#include "base/log.h"
#include "queue/statements.h"
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

#define WATCH_QUEUE_MAX 1024
#define WATCH_MAX_NODES 256
#define WATCH_REOPEN_MAX_S 60
#define WATCH_NODES_EVERY_S 5   /* retry nodes whose connection failed (no database query) */

typedef enum {
    WEV_STOPPED,      /* domain went to shutoff */
    WEV_CRASHED,      /* the guest crashed */
    WEV_GONE,         /* undefined (or renamed) */
    WEV_CONN_CLOSED,  /* the node's connection closed: reopen it */
    WEV__COUNT
} wev_kind;

typedef struct watch_event {
    wev_kind kind;
    long long node_id;
    char uuid[VIR_UUID_STRING_BUFLEN];
    char name[256];
    char detail[64];
} watch_event;

typedef struct watch_node {
    long long id;
    char name[128];
    char uri[512];
    virConnectPtr conn;
    int cb_id;             /* lifecycle callback id, -1 when none */
    bool close_cb;         /* close callback registered */
    bool seen;             /* in the node table at the last refresh */
    double next_try;       /* when to try to (re)open */
    int fails;
} watch_node;

static struct {
    const vcl_config *cfg;
    char app[160];
    bool started;
    atomic_int stop;
    pthread_t work_th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    watch_event q[WATCH_QUEUE_MAX];
    int qhead, qlen;
    bool overflow;
    /* worker thread only */
    db_conn *db;
    bool nodes_dirty;          /* re-read vcl.node: (re)connected, or NOTIFY vcl_node */
    watch_node *nodes[WATCH_MAX_NODES];
    int n_nodes;
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

/* ---------------- callbacks (in virt.c's event loop thread) ---------------- */

static void push(const watch_event *ev)
{
    pthread_mutex_lock(&W.mu);
    if (W.qlen < WATCH_QUEUE_MAX) {
        W.q[(W.qhead + W.qlen) % WATCH_QUEUE_MAX] = *ev;
        W.qlen++;
    } else {
        W.overflow = true; /* the resync will find whatever was dropped */
    }
    pthread_cond_signal(&W.cv);
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

/* Runs in the event loop thread: no database, no blocking; only queue. */
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
    push(&ev);
    return 0;
}

static void on_close(virConnectPtr conn, int reason, void *opaque)
{
    (void)conn;
    (void)reason;
    watch_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = WEV_CONN_CLOSED;
    ev.node_id = (long long)(intptr_t)opaque;
    push(&ev);
}

/* ---------------- node connections (worker thread) ---------------- */

static watch_node *node_by_id(long long id)
{
    for (int i = 0; i < W.n_nodes; i++)
        if (W.nodes[i]->id == id)
            return W.nodes[i];
    return NULL;
}

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

/* Open and subscribe unless connected; backoff after failures. *opened
 * (may be NULL) is set when a connection was (re)opened just now. */
static bool node_ensure_ex(watch_node *n, bool *opened)
{
    if (n->conn)
        return true;
    double now = util_mono_s();
    if (now < n->next_try)
        return false;
    vcl_error e;
    vcl_error_clear(&e);
    void *opaque = (void *)(intptr_t)n->id;
    n->conn = virt_open(n->uri, &e);
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
        int wait = n->fails < 6 ? 1 << n->fails : WATCH_REOPEN_MAX_S;
        n->next_try = now + (wait < WATCH_REOPEN_MAX_S ? wait : WATCH_REOPEN_MAX_S);
        if (n->fails == 1 || n->fails % 10 == 0)
            log_warn("watch: node %s: %s (retrying in %d s)", n->name, e.msg, wait);
        return false;
    }
    n->close_cb = virConnectRegisterCloseCallback(n->conn, on_close, opaque, NULL) == 0;
    /* Remote connections: notice a dead node within ~20 s (needs the event
     * loop); local drivers refuse keepalive, which is fine. */
    if (virConnectSetKeepAlive(n->conn, 5, 3) < 0)
        virResetLastError();
    if (n->fails)
        log_info("watch: node %s reachable again at %s", n->name, n->uri);
    else
        log_debug("watch: subscribed to domain events of node %s (%s)", n->name, n->uri);
    n->fails = 0;
    if (opened)
        *opened = true;
    return true;
}

static bool node_ensure(watch_node *n)
{
    return node_ensure_ex(n, NULL);
}

/* Retry the nodes whose connection is down (each on its own backoff). */
static void nodes_reopen(bool *opened)
{
    for (int i = 0; i < W.n_nodes; i++)
        node_ensure_ex(W.nodes[i], opened);
}

static void nodes_free(void)
{
    for (int i = 0; i < W.n_nodes; i++) {
        node_close(W.nodes[i]);
        free(W.nodes[i]);
    }
    W.n_nodes = 0;
}

/* Re-read vcl.node: new nodes get a connection, changed URIs a new one,
 * removed nodes are dropped. *opened: some connection was (re)opened, so
 * events may have been missed: the caller resyncs. */
static bool nodes_refresh(bool *opened)
{
    vcl_error e;
    vcl_error_clear(&e);
    PGresult *r = db_exec(W.db, SQL_WATCH_NODES, 0, NULL, &e);
    if (!r) {
        log_warn("watch: reading the nodes: %s", e.msg);
        return false;
    }
    for (int i = 0; i < W.n_nodes; i++)
        W.nodes[i]->seen = false;
    for (int k = 0; k < PQntuples(r); k++) {
        long long id = db_get_ll(r, k, 0);
        const char *name = db_get_str(r, k, 1), *uri = db_get_str(r, k, 2);
        watch_node *n = node_by_id(id);
        if (!n) {
            if (W.n_nodes == WATCH_MAX_NODES) {
                log_warn("watch: more than %d nodes: node %s is not watched", WATCH_MAX_NODES,
                         name);
                continue;
            }
            if (!(n = calloc(1, sizeof *n)))
                continue;
            n->id = id;
            n->cb_id = -1;
            W.nodes[W.n_nodes++] = n;
        }
        if (strcmp(n->uri, uri ? uri : "") != 0) {
            node_close(n);
            n->fails = 0;
            n->next_try = 0;
        }
        snprintf(n->name, sizeof n->name, "%s", name ? name : "");
        snprintf(n->uri, sizeof n->uri, "%s", uri ? uri : "");
        n->seen = true;
    }
    PQclear(r);
    W.nodes_dirty = false;
    for (int i = 0; i < W.n_nodes;) {
        if (W.nodes[i]->seen) {
            node_ensure_ex(W.nodes[i], opened);
            i++;
            continue;
        }
        node_close(W.nodes[i]);
        free(W.nodes[i]);
        W.nodes[i] = W.nodes[--W.n_nodes];
    }
    return true;
}

/* ---------------- the decision and the write ---------------- */

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
    if (!n || !node_ensure(n))
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

/* The guarded UPDATE; logs when it changed a computer. */
static void mark_reload(long long node_id, const char *uuid, const char *name, wev_kind kind,
                        const char *detail)
{
    char reason[512], nid[32];
    watch_reason(name, kind_word(kind), detail, reason, sizeof reason);
    snprintf(nid, sizeof nid, "%lld", node_id);
    const char *p[3] = { nid, uuid, reason };
    vcl_error e;
    vcl_error_clear(&e);
    PGresult *r = db_exec(W.db, SQL_WATCH_MARK_RELOAD, 3, p, &e);
    if (!r) {
        log_warn("watch: writing RELOAD for domain %s: %s", name, e.msg);
        return;
    }
    for (int k = 0; k < PQntuples(r); k++)
        log_warn("watch: computer %s: %s: node_status RELOAD", PQgetvalue(r, k, 0), reason);
    if (PQntuples(r) == 0)
        log_debug("watch: domain %s (%s): no loaded computer to update", name, uuid);
    PQclear(r);
}

static void handle_event(const watch_event *ev)
{
    watch_node *n = node_by_id(ev->node_id);
    if (ev->kind == WEV_CONN_CLOSED) {
        if (n && n->conn) {
            log_warn("watch: connection to node %s closed; reopening", n->name);
            node_close(n);
            n->next_try = 0;
        }
        return;
    }
    log_debug("watch: event on node %lld: domain %s %s (%s)", ev->node_id, ev->name,
              kind_word(ev->kind), ev->detail);
    /* Re-check: the domain may be back up already (a reset, a reload). */
    wev_kind k = ev->kind;
    char name[256], detail[160];
    snprintf(name, sizeof name, "%s", ev->name);
    int c = domain_check(n, ev->uuid, "event", &k, name, sizeof name, detail, sizeof detail);
    if (c == 1)
        return;
    mark_reload(ev->node_id, ev->uuid, ev->name, ev->kind, ev->detail);
}

static void resync(void)
{
    vcl_error e;
    vcl_error_clear(&e);
    bool opened = false;
    if (!nodes_refresh(&opened))
        return;
    PGresult *r = db_exec(W.db, SQL_WATCH_LOADED, 0, NULL, &e);
    if (!r) {
        log_warn("watch: reading the loaded computers: %s", e.msg);
        return;
    }
    int checked = 0, marked = 0;
    for (int k = 0; k < PQntuples(r) && !atomic_load(&W.stop); k++) {
        long long node_id = db_get_ll(r, k, 1);
        const char *uuid = db_get_str(r, k, 2), *dname = db_get_str(r, k, 3);
        char name[256], detail[160];
        wev_kind kind = WEV_STOPPED;
        snprintf(name, sizeof name, "%s", dname && dname[0] ? dname : uuid);
        int c = domain_check(node_by_id(node_id), uuid, "resync", &kind, name, sizeof name, detail,
                             sizeof detail);
        checked += c >= 0;
        if (c != 0)
            continue;
        mark_reload(node_id, uuid, name, kind, detail);
        marked++;
    }
    log_debug("watch: resync checked %d of %d loaded computer(s), %d not running", checked,
              PQntuples(r), marked);
    PQclear(r);
}

/* ---------------- worker thread ---------------- */

/* A working connection that LISTENs on vcl_node (a new one re-reads the
 * nodes: changes may have been missed meanwhile). */
static bool db_ready(void)
{
    vcl_error e;
    vcl_error_clear(&e);
    if (W.db && !db_is_broken(W.db))
        return true;
    if (!W.db)
        W.db = db_connect(W.cfg->database, W.app, &e);
    else
        db_reconnect(W.db, &e);
    if (W.db && !db_is_broken(W.db) && db_run(W.db, SQL_LISTEN_NODES, 0, NULL, &e)) {
        W.nodes_dirty = true;
        return true;
    }
    log_warn("watch: no database connection: %s (retrying)", e.msg);
    return false;
}

static void *work_main(void *arg)
{
    (void)arg;
    log_ctx_set(0, NULL, NULL);
    log_ctx_stage("watch");
    int period = W.cfg->watch_resync_seconds;
    int nodes_every = period < WATCH_NODES_EVERY_S ? period : WATCH_NODES_EVERY_S;
    double next_resync = 0; /* at once: subscribe, and catch what happened unwatched */
    double next_nodes = 0;
    while (!atomic_load(&W.stop)) {
        if (!db_ready()) {
            for (int i = 0; i < 20 && !atomic_load(&W.stop); i++)
                usleep(100000);
            continue;
        }
        double now = util_mono_s();
        bool overflow = false;
        /* NOTIFY vcl_node arrived (a broken connection: db_ready() reconnects) */
        if (db_notified(W.db))
            W.nodes_dirty = true;
        /* The database is read for the node list only when it changed (or
         * at the resync, which re-reads it anyway); failed connections are
         * retried without a query. */
        if (now < next_resync && (W.nodes_dirty || now >= next_nodes)) {
            bool opened = false;
            if (W.nodes_dirty)
                nodes_refresh(&opened);
            else
                nodes_reopen(&opened);
            if (opened)
                next_resync = now; /* a node (re)connected: look at its computers now */
            next_nodes = util_mono_s() + nodes_every;
        }
        if (now >= next_resync) {
            resync();
            next_resync = util_mono_s() + period;
            next_nodes = util_mono_s() + nodes_every;
        }
        /* wait for events, the next resync or stop */
        watch_event batch[64];
        int nb = 0;
        pthread_mutex_lock(&W.mu);
        if (W.qlen == 0 && !W.overflow && !atomic_load(&W.stop)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            double wait = (next_resync < next_nodes ? next_resync : next_nodes) - util_mono_s();
            if (wait > 1)
                wait = 1; /* also re-check stop and the DB connection */
            if (wait < 0)
                wait = 0;
            ts.tv_sec += (time_t)wait;
            ts.tv_nsec += (long)((wait - (double)(time_t)wait) * 1e9);
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&W.cv, &W.mu, &ts);
        }
        while (W.qlen > 0 && nb < 64) {
            batch[nb++] = W.q[W.qhead];
            W.qhead = (W.qhead + 1) % WATCH_QUEUE_MAX;
            W.qlen--;
        }
        overflow = W.overflow;
        W.overflow = false;
        pthread_mutex_unlock(&W.mu);
        for (int i = 0; i < nb && !atomic_load(&W.stop); i++) {
            if (db_ready())
                handle_event(&batch[i]);
        }
        if (overflow) {
            log_warn("watch: event queue overflowed: resyncing now");
            next_resync = 0;
        }
    }
    nodes_free();
    db_close(W.db);
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
    W.qhead = W.qlen = 0;
    W.overflow = false;
    if (pthread_create(&W.work_th, NULL, work_main, NULL) != 0)
        return vcl_error_set(e, VCL_ERR_RETRYABLE, "watch: cannot start the watcher thread");
    W.started = true;
    log_info("watch: watching domains (lifecycle events, resync every %d s)",
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
    pthread_join(W.work_th, NULL); /* deregisters the callbacks, closes the connections */
    W.started = false;
    log_info("watch: stopped");
}
