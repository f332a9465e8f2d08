/* op_power.c: power_on, power_off, power_reset and shutdown of a computer's
 * recorded domain (computer.domain_uuid), as in VCL's libvirt module:
 * already-on and already-off are successes. power_off and shutdown of a
 * computer with no domain succeed (nothing to do); power_on and power_reset
 * of one fail permanently ("load it first").
 *
 * Every stage looks at the domain's real state first, so it is safe to run
 * again after a crash at any instant: power_reset is VCL's power_off then
 * power_on as two checkpointed stages (a rerun of either finds the work
 * done), not virDomainReset (a rerun would reset the guest twice).
 *
 * After power_off and shutdown the computer is written back RELOAD ("powered
 * off by reservation N"); after power_on and power_reset the node_status
 * check runs (as the load's last stage does) and its result is written. */
#include "queue/job.h"
#include "base/log.h"
#include "node/nodestatus.h"
#include "ops/op_common.h"
#include "queue/stage.h"
#include "node/virt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SHUTDOWN_MAX_S 3600

/* args {"timeout": N}: whole seconds 1..3600; "" = the configured default. */
static bool shutdown_timeout(const job *j, int *out, vcl_error *e)
{
    *out = j->cfg && j->cfg->shutdown_timeout_seconds > 0 ? j->cfg->shutdown_timeout_seconds : 120;
    if (!j->arg_timeout[0])
        return true;
    const char *s = j->arg_timeout;
    size_t n = strspn(s, "0123456789");
    long v = n > 0 && n <= 4 && s[n] == '\0' ? strtol(s, NULL, 10) : -1;
    if (v < 1 || v > SHUTDOWN_MAX_S)
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "invalid timeout '%s' in the reservation's args: give whole seconds "
                             "from 1 to %d, e.g. {\"timeout\": 60}", s, SHUTDOWN_MAX_S);
    *out = (int)v;
    return true;
}

/* ---- stages ---- */

static bool st_power_on(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    virDomainPtr dom = NULL;
    int before = 0;
    if (!job_prepare(j, e) || !op_require_domain(j, &dom, e))
        return false;
    const char *name = virDomainGetName(dom);
    bool ok = virt_domain_state(dom, &before, e) && job_check_ours(j, e) &&
              virt_domain_start(dom, e);
    if (!ok) {
        char *xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE);
        job_cpu_start_failed(j, xml, e);
        free(xml);
    }
    if (ok)
        snprintf(detail, dlen, "%s %s", name,
                 before == VIR_DOMAIN_RUNNING || before == VIR_DOMAIN_BLOCKED
                     ? "was already running"
                     : before == VIR_DOMAIN_PAUSED ? "resumed" : "started");
    virDomainFree(dom);
    return ok;
}

/* Destroy dom unless it is off; the detail says which. Frees dom. */
static bool hard_stop(job *j, virDomainPtr dom, const char *destroyed, char *detail, size_t dlen,
                      vcl_error *e)
{
    int before = 0;
    const char *name = virDomainGetName(dom);
    bool ok = virt_domain_state(dom, &before, e) && job_check_ours(j, e) &&
              virt_domain_stop(dom, e);
    if (ok)
        snprintf(detail, dlen, "%s %s", name,
                 before == VIR_DOMAIN_SHUTOFF ? "was already off" : destroyed);
    virDomainFree(dom);
    return ok;
}

/* power_off: destroy (VCL's power_off is a hard stop). */
static bool st_power_off(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    virDomainPtr dom = NULL;
    if (!job_prepare(j, e) || !op_recorded_domain(j, &dom, e))
        return false;
    if (!dom) {
        snprintf(detail, dlen, "computer %s has no domain on node %s: nothing to power off",
                 j->computer, j->node);
        return true;
    }
    return hard_stop(j, dom, "destroyed (powered off)", detail, dlen, e);
}

/* power_reset, first half: like power_off, but the domain must exist. */
static bool st_reset_off(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    virDomainPtr dom = NULL;
    if (!job_prepare(j, e) || !op_require_domain(j, &dom, e))
        return false;
    return hard_stop(j, dom, "destroyed", detail, dlen, e);
}

/* shutdown: ACPI shutdown, re-sent every few seconds (a guest still booting
 * may miss the first), state polled every second; destroy after the timeout.
 * A rerun after a crash starts the timeout again: the guest gets at most
 * twice the time, never less. */
static bool st_shutdown(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    virDomainPtr dom = NULL;
    int timeout = 0;
    if (!shutdown_timeout(j, &timeout, e))
        return false;
    if (!job_prepare(j, e) || !op_recorded_domain(j, &dom, e))
        return false;
    if (!dom) {
        snprintf(detail, dlen, "computer %s has no domain on node %s: nothing to shut down",
                 j->computer, j->node);
        return true;
    }
    bool ok = op_shutdown_domain(j, dom, timeout, detail, dlen, e);
    virDomainFree(dom);
    return ok;
}

/* node_status after power_off/shutdown: RELOAD, why. */
static bool st_status_off(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    char reason[256];
    snprintf(reason, sizeof reason, "powered off by reservation %lld (%s)", j->id, j->operation);
    snprintf(detail, dlen, "RELOAD: %s", reason);
    return job_write_status(j, "RELOAD", reason, false, e);
}

static const stage_def power_on_stages[] = {
    { "power_on", st_power_on, "start the computer's domain unless it runs (resume if paused)" },
    { "node_status", op_stage_check_status, "check with libvirt and write node_status back" },
    { NULL, NULL, NULL },
};
static const stage_def power_off_stages[] = {
    { "power_off", st_power_off, "destroy the computer's domain unless it is off" },
    { "node_status", st_status_off, "write RELOAD: powered off by this reservation" },
    { NULL, NULL, NULL },
};
static const stage_def power_reset_stages[] = {
    { "power_off", st_reset_off, "destroy the computer's domain unless it is off" },
    { "power_on", st_power_on, "start it again" },
    { "node_status", op_stage_check_status, "check with libvirt and write node_status back" },
    { NULL, NULL, NULL },
};
static const stage_def shutdown_stages[] = {
    { "shutdown", st_shutdown,
      "ACPI shutdown (re-sent every 5 s); destroy after args timeout or shutdown_timeout_seconds" },
    { "node_status", st_status_off, "write RELOAD: powered off by this reservation" },
    { NULL, NULL, NULL },
};

const op_def op_power_on = { "power_on", power_on_stages, "power a loaded computer on", NULL };
const op_def op_power_off = { "power_off", power_off_stages, "power a computer off (hard)", NULL };
const op_def op_power_reset = { "power_reset", power_reset_stages,
                                "power a loaded computer off and on again", NULL };
const op_def op_shutdown = { "shutdown", shutdown_stages,
                             "shut a computer down gracefully, destroy it after a timeout", NULL };
