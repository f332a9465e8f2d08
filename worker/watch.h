/* watch.h: the domain watcher. Between reservations, nothing in the queue
 * looks at a loaded computer; this module notices when its domain stops,
 * crashes or disappears outside vcl-worker (a `virsh destroy`, a guest
 * powering itself off, a node reboot) and writes the computer back RELOAD,
 * with the reason in status_reason, so the next reservation reloads it.
 *
 * How (the Nova way): one libvirt connection per node (with keepalive,
 * reopened with backoff after a failure or a close), a
 * VIR_DOMAIN_EVENT_ID_LIFECYCLE callback on each, delivered by the process's
 * libvirt event loop (virt.c runs it in its own thread). Each node has its
 * own thread that owns its connection and makes every libvirt call to it,
 * so a node that hangs (libvirtd stopped, host gone: an open has no
 * deadline) delays nothing but itself. Callbacks only queue; the node's
 * thread re-checks the domain with libvirt and hands what it found to the
 * watcher thread, which owns the database connection and runs one guarded
 * UPDATE:
 *
 *   node_status IN ('READY','POST_LOAD') AND domain_uuid = <the domain's>
 *   AND no reservation of the computer is running
 *     -> node_status 'RELOAD', status_reason 'domain <name> <stopped|crashed|
 *        disappeared> outside vcl-worker (<detail>)', status_at now()
 *
 * Every watch_resync_seconds the watcher thread also resyncs: it re-reads
 * the node table (a thread for each new node; removed nodes' threads are
 * told to stop, and left behind while stuck), and hands each node thread
 * the loaded computers of its node to check directly (the safety net for
 * lost events, for domains that stopped while no worker watched, and for
 * nodes that came back; a node that reconnects asks for its list at once).
 * Several workers may watch at once: the UPDATE is idempotent.
 *
 * The event loop must be registered before the first virConnectOpen of the
 * process: virt_init() does that. watch_resync_seconds 0 disables the
 * watcher; a SIGHUP does not change it (restart the worker). */
#ifndef VCL_WATCH_H
#define VCL_WATCH_H
#include <stdbool.h>
#include <stddef.h>
#include "config.h"
#include "error.h"

/* Start the threads (a no-op returning true when cfg->watch_resync_seconds
 * is 0, or when already started). cfg must stay valid until watch_stop().
 * The database and the nodes are connected by the watcher thread itself,
 * retrying in the background: false only when threads cannot be created. */
bool watch_start(const vcl_config *cfg, const char *worker_name, vcl_error *e);
/* Stop and join the threads, close every connection (a node thread stuck
 * in a call to a hung node is waited for a few seconds, then left behind).
 * Safe to call when not started, and more than once. */
void watch_stop(void);

/* For tests: the reason text written for a domain that went away.
 * kind: "stopped", "crashed" or "disappeared". */
void watch_reason(const char *domain, const char *kind, const char *detail, char *out,
                  size_t outlen);
#endif
