/* cpuprobe.c: see cpuprobe.h. */
#include "node/cpuprobe.h"
#include "node/domxml.h"
#include "base/log.h"
#include "node/virt.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

/* How long a started probe must keep running to count (QEMU that dies while
 * its vCPUs come up is gone well within this). */
#define PROBE_SETTLE_MS 300

/* Errors that say nothing about the mode: libvirt itself cannot be asked. */
static bool connection_error(const virError *err)
{
    if (!err)
        return true;
    return err->domain == VIR_FROM_RPC || err->domain == VIR_FROM_REMOTE ||
           err->code == VIR_ERR_NO_CONNECT || err->code == VIR_ERR_INVALID_CONN ||
           err->code == VIR_ERR_AUTH_FAILED || err->code == VIR_ERR_OPERATION_TIMEOUT;
}

/* The first line of a libvirt message, or the CPU line in it. */
static void rejection(const virError *err, char *why, size_t cap)
{
    const char *msg = err && err->message ? err->message : "libvirt error";
    if (cpu_start_failure(err ? err->code : 0, msg, why, cap))
        return;
    const char *nl = strchr(msg, '\n');
    snprintf(why, cap, "%.*s", nl ? (int)(nl - msg) : (int)strlen(msg), msg);
}

static void probe_name(const char *node, char *name, size_t ncap, char *uuid, size_t ucap)
{
    unsigned char r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        /* no entropy: time and address still keep concurrent probes apart */
        unsigned long long t = (unsigned long long)util_mono_ms() ^ (unsigned long long)(size_t)name;
        for (size_t i = 0; i < sizeof r; i++)
            r[i] = (unsigned char)(t >> (8 * (i % 8))) ^ (unsigned char)i;
    }
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(uuid, ucap,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1],
             r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
             r[15]);
    snprintf(name, ncap, "vcl-cpu-probe-%s-%.8s", node, uuid);
}

static bool probe_once(const cpu_probe_target *pt, const cpu_mode *m, cpu_probe_try *t, vcl_error *e);

/* A probe whose QEMU died before libvirt could say why runs once more (see
 * cpu_start_unexplained): the second start usually shows the real reason,
 * and a mode that only lost a race gets its fair chance. */
bool cpu_probe_one(const cpu_probe_target *pt, const cpu_mode *m, cpu_probe_try *t, vcl_error *e)
{
    if (!probe_once(pt, m, t, e))
        return false;
    if (t->ok || !cpu_start_unexplained(t->why))
        return true;
    log_debug("CPU probe: %s: QEMU died without a reason (%s): once more", t->mode, t->why);
    int first_ms = t->ms;
    if (!probe_once(pt, m, t, e))
        return false;
    t->ms += first_ms;
    return true;
}

static bool probe_once(const cpu_probe_target *pt, const cpu_mode *m, cpu_probe_try *t, vcl_error *e)
{
    virConnectPtr conn = pt->conn;
    char name[160], uuid[40];
    bool ran = false;
    char *xml = NULL;
    xmlDocPtr doc = NULL;
    virDomainPtr dom = NULL;

    memset(t, 0, sizeof *t);
    cpu_mode_format(m, t->mode, sizeof t->mode);
    probe_name(pt->node, name, sizeof name, uuid, sizeof uuid);
    if (!(doc = domxml_build_probe(name, uuid, pt->domain_type, m, pt->emulator, e)) ||
        !(xml = domxml_to_string(doc))) {
        if (doc)
            vcl_error_set(e, VCL_ERR_RETRYABLE, "CPU probe: serialising the probe domain failed");
        goto cleanup;
    }
    long long t0 = util_mono_ms();
    virResetLastError();
    dom = virDomainCreateXML(conn, xml, VIR_DOMAIN_START_AUTODESTROY);
    if (!dom) {
        virErrorPtr err = virGetLastError();
        if (err && (err->code == VIR_ERR_NO_SUPPORT || err->code == VIR_ERR_INVALID_ARG) &&
            strstr(err->message ? err->message : "", "flags")) {
            /* a driver without autodestroy (test://): destroyed below anyway */
            virResetLastError();
            dom = virDomainCreateXML(conn, xml, 0);
            err = dom ? NULL : virGetLastError();
        }
        if (!dom) {
            if (connection_error(err)) {
                virt_error(e, NULL, "CPU probe with %s", t->mode);
                e->cls = VCL_ERR_RETRYABLE;
                goto cleanup;
            }
            rejection(err, t->why, sizeof t->why);
            t->ms = (int)(util_mono_ms() - t0);
            ran = true;
            goto cleanup;
        }
    }
    /* QEMU may die while its vCPUs come up, after the start returned */
    struct timespec settle = { 0, PROBE_SETTLE_MS * 1000000L };
    nanosleep(&settle, NULL);
    int st = 0, reason = 0;
    if (virDomainGetState(dom, &st, &reason, 0) < 0) {
        virErrorPtr err = virGetLastError();
        if (connection_error(err)) {
            virt_error(e, NULL, "CPU probe with %s: reading the probe's state", t->mode);
            e->cls = VCL_ERR_RETRYABLE;
            goto cleanup;
        }
        /* a transient domain that died is gone: no domain = it did not run */
        snprintf(t->why, sizeof t->why, "the guest stopped within %d ms of its start",
                 PROBE_SETTLE_MS);
    } else if (st != VIR_DOMAIN_RUNNING && st != VIR_DOMAIN_BLOCKED) {
        snprintf(t->why, sizeof t->why, "the guest was %s %d ms after its start",
                 virt_state_name(st), PROBE_SETTLE_MS);
    } else {
        t->ok = true;
    }
    t->ms = (int)(util_mono_ms() - t0);
    ran = true;

cleanup:
    if (dom) {
        if (virDomainDestroy(dom) < 0) {
            virErrorPtr err = virGetLastError();
            if (err && err->code != VIR_ERR_NO_DOMAIN && err->code != VIR_ERR_OPERATION_INVALID)
                log_warn("CPU probe: destroying probe domain %s: %s (it is transient and "
                         "autodestroyed with the connection)",
                         name, err->message ? err->message : "error");
        }
        virDomainFree(dom);
    }
    free(xml);
    xmlFreeDoc(doc);
    return ran;
}

/* The hypervisor's baseline for this host: the domain capabilities' host-model
 * CPU fed to virConnectBaselineHypervisorCPU; the model name only (its
 * feature list is what makes host-model crash where it does). "" when the
 * driver cannot say. */
static void baseline_model(virConnectPtr conn, const char *domain_type, const char *emulator,
                           char *model, size_t cap)
{
    char *caps = NULL, *cpu = NULL, *base = NULL;
    xmlDocPtr cd = NULL, out = NULL, bd = NULL;
    xmlChar *buf = NULL;
    int len = 0;

    model[0] = '\0';
    caps = virConnectGetDomainCapabilities(conn, emulator, "x86_64", NULL, domain_type, 0);
    if (!caps || !(cd = xmlReadMemory(caps, (int)strlen(caps), "domcaps.xml", NULL,
                                      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)))
        goto cleanup;
    xmlNodePtr root = xmlDocGetRootElement(cd), hm = NULL;
    for (xmlNodePtr c = root ? root->children : NULL; c && !hm; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || !xmlStrEqual(c->name, BAD_CAST "cpu"))
            continue;
        for (xmlNodePtr mo = c->children; mo && !hm; mo = mo->next) {
            xmlChar *nm = mo->type == XML_ELEMENT_NODE ? xmlGetProp(mo, BAD_CAST "name") : NULL;
            if (nm && xmlStrEqual(mo->name, BAD_CAST "mode") && xmlStrEqual(nm, BAD_CAST "host-model"))
                hm = mo;
            xmlFree(nm);
        }
    }
    if (!hm)
        goto cleanup;
    /* <cpu mode='custom'> with the host-model's model, vendor and features */
    if (!(out = xmlNewDoc(BAD_CAST "1.0")))
        goto cleanup;
    xmlNodePtr oc = xmlNewNode(NULL, BAD_CAST "cpu");
    if (!oc)
        goto cleanup;
    xmlDocSetRootElement(out, oc);
    xmlNewProp(oc, BAD_CAST "mode", BAD_CAST "custom");
    for (xmlNodePtr c = hm->children; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE)
            xmlAddChild(oc, xmlDocCopyNode(c, out, 1));
    xmlDocDumpMemory(out, &buf, &len);
    if (!buf)
        goto cleanup;
    cpu = strdup((const char *)buf);
    const char *cpus[1] = { cpu };
    if (!cpu || !(base = virConnectBaselineHypervisorCPU(conn, emulator, "x86_64", NULL, domain_type,
                                                         cpus, 1, 0)))
        goto cleanup;
    if (!(bd = xmlReadMemory(base, (int)strlen(base), "baseline.xml", NULL,
                             XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)))
        goto cleanup;
    root = xmlDocGetRootElement(bd);
    for (xmlNodePtr c = root ? root->children : NULL; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST "model")) {
            xmlChar *txt = xmlNodeGetContent(c);
            cpu_mode m;
            char probe[CPU_MODE_STR_MAX];
            snprintf(probe, sizeof probe, "custom:%s", txt ? (const char *)txt : "");
            /* only a model name our own checks accept */
            if (cpu_mode_parse(probe, &m, &(vcl_error){ 0 }))
                snprintf(model, cap, "%s", m.model);
            xmlFree(txt);
            break;
        }

cleanup:
    if (!model[0])
        log_debug("CPU probe: no baseline model from libvirt (%s)",
                  virGetLastErrorMessage() ? virGetLastErrorMessage() : "not offered");
    xmlFree(buf);
    xmlFreeDoc(cd);
    xmlFreeDoc(out);
    xmlFreeDoc(bd);
    free(caps);
    free(cpu);
    free(base);
}

bool cpu_probe_auto(const cpu_probe_target *pt, bool all, cpu_probe_result *r, vcl_error *e)
{
    cpu_mode cands[CPU_PROBE_MAX];
    int n = 0;
    char base[CPU_MODEL_MAX + 1];

    memset(r, 0, sizeof *r);
    cands[n++] = (cpu_mode){ .kind = CPU_MODE_HOST_PASSTHROUGH };
    cands[n++] = (cpu_mode){ .kind = CPU_MODE_HOST_MODEL };
    baseline_model(pt->conn, pt->domain_type, pt->emulator, base, sizeof base);
    if (base[0] && strcmp(base, "qemu64") != 0) {
        cands[n] = (cpu_mode){ .kind = CPU_MODE_CUSTOM };
        snprintf(cands[n].model, sizeof cands[n].model, "%s", base);
        n++;
    }
    cands[n] = (cpu_mode){ .kind = CPU_MODE_CUSTOM };
    snprintf(cands[n].model, sizeof cands[n].model, "qemu64");
    n++;

    for (int i = 0; i < n; i++) {
        cpu_probe_try *t = &r->tries[r->n];
        if (!cpu_probe_one(pt, &cands[i], t, e))
            return false;
        r->n++;
        log_debug("CPU probe: %s %s in %d ms%s%s", t->mode, t->ok ? "started" : "rejected", t->ms,
                  t->ok ? "" : ": ", t->why);
        if (t->ok && !r->chosen[0])
            snprintf(r->chosen, sizeof r->chosen, "%s", t->mode);
        if (r->chosen[0] && !all)
            break;
    }
    return true;
}

void cpu_probe_report(const cpu_probe_result *r, char *buf, size_t cap)
{
    size_t off = 0;
    if (cap)
        buf[0] = '\0';
    for (int i = 0; i < r->n && off < cap; i++) {
        const cpu_probe_try *t = &r->tries[i];
        int w = snprintf(buf + off, cap - off, "%s%s: %s%s%s", i ? "; " : "", t->mode,
                         t->ok ? "ok" : "rejected (", t->ok ? "" : t->why, t->ok ? "" : ")");
        if (w < 0)
            break;
        off += (size_t)w;
    }
}
