/* virt.h: the worker's thin layer over the libvirt C API.
 * libvirt errors are per thread; a no-op error handler is installed once and
 * virGetLastError() read right after each failing call, then classed by
 * error domain and code into retryable vs permanent. The test:/// driver and
 * QEMU report some mistakes with different codes (start of a running domain:
 * 1 vs 55); callers check state instead of trusting codes where they differ. */
#ifndef VCL_VIRT_H
#define VCL_VIRT_H
#include <stdbool.h>
#include <libvirt/libvirt.h>
#include "base/error.h"

/* Once per process, before any connection: libvirt, a quiet error
 * handler, and the default event loop with a detached thread running it
 * (domain events; answers to libvirtd's keepalive pings). */
void virt_init(void);
/* The event loop runs (events can be delivered). */
bool virt_events_running(void);
/* Keepalive for every connection virt_open makes from now on (config
 * libvirt_keepalive_interval/count; default 5 s x 3, 0 s = none). */
void virt_set_keepalive(int interval_s, int count);
/* How long virt_open waits for a connection (config
 * libvirt_connect_timeout_seconds; default 30 s, 0 = no limit). */
void virt_set_connect_timeout(int seconds);
/* Connect, with keepalive: a libvirtd that stops answering (hung, SIGSTOPped,
 * its host gone) closes the connection after about interval x (count + 1) s,
 * so calls in flight fail instead of hanging (the test:/// driver has no
 * keepalive: that is fine). The open itself, which libvirt does not bound,
 * runs in a thread of its own and is given up after the connect timeout
 * ("libvirt at URI did not answer within N s (connecting)"); that thread
 * closes what it opens late. NULL + retryable error naming the URI when it
 * fails. */
virConnectPtr virt_open(const char *uri, vcl_error *e);
/* The connection URIs the worker accepts (README "Security model"); virt_open
 * calls it first, so the worker, the watcher, the node check and vclctl all
 * refuse the same URIs before any virConnectOpen. Accepted:
 *   qemu:///system, qemu:///session      (no query)
 *   qemu+libssh2://[user@]host[:port]/system|session[?params]
 *   qemu+ssh://[user@]host[:port]/system|session[?params]
 *   test:///<fixture or default>         (libvirt's test driver, no query)
 * params: keyfile=<absolute path> (the configured ssh_private_key when one is
 * set), known_hosts=<absolute path>, known_hosts_verify=normal, sshauth=,
 * no_tty=; nothing else: no command=, socket=, netcat=, proxy=, no_verify,
 * known_hosts_verify=ignore|auto, no '%' escapes, ';', '#' or blanks; no
 * ext, unix, tcp or tls transports. false + permanent error saying why. */
bool virt_uri_check(const char *uri, vcl_error *e);
/* The ssh private key a URI's keyfile= may name (config ssh_private_key);
 * NULL or "" = any absolute path. */
void virt_set_ssh_keyfile(const char *path);
void virt_close(virConnectPtr conn);
/* Fill e from the thread's last libvirt error: "<what>: <libvirt message>".
 * Returns false. *code (may be NULL) gets the libvirt error code. */
bool virt_error(vcl_error *e, int *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
vcl_err_class virt_classify(int domain, int code);
const char *virt_state_name(int state);

/* Lookups that tell "not there" (true, *dom NULL) from a failure (false). */
bool virt_lookup_uuid(virConnectPtr conn, const char *uuid, virDomainPtr *dom, vcl_error *e);
bool virt_lookup_name(virConnectPtr conn, const char *name, virDomainPtr *dom, vcl_error *e);
bool virt_domain_state(virDomainPtr dom, int *state, vcl_error *e);
/* Destroy; a domain that is not running is success. */
bool virt_domain_stop(virDomainPtr dom, vcl_error *e);
/* Undefine with snapshots/managed save/nvram metadata; falls back to fewer
 * flags where the driver refuses some. A vanished domain is success. */
bool virt_domain_undefine(virDomainPtr dom, vcl_error *e);
/* Start unless running; "already running" is success. */
bool virt_domain_start(virDomainPtr dom, vcl_error *e);
/* malloc'd XML (free()), or NULL + e. */
char *virt_domain_xml(virDomainPtr dom, vcl_error *e);
#endif
