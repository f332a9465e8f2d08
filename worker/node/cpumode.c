/* cpumode.c: see cpumode.h. */
#include "node/cpumode.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>

static const char *const kind_names[CPU_MODE__COUNT] = {
    [CPU_MODE_AUTO] = "auto",
    [CPU_MODE_HOST_PASSTHROUGH] = "host-passthrough",
    [CPU_MODE_HOST_MODEL] = "host-model",
    [CPU_MODE_CUSTOM] = "custom",
};

const char *cpu_mode_kind_name(cpu_mode_kind k)
{
    return k >= 0 && k < CPU_MODE__COUNT ? kind_names[k] : "?";
}

static bool model_ok(const char *m)
{
    size_t n = strlen(m);
    if (n == 0 || n > CPU_MODEL_MAX || m[0] == '.' || m[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)m[i]) && m[i] != '.' && m[i] != '_' && m[i] != '-')
            return false;
    return true;
}

bool cpu_mode_parse(const char *s, cpu_mode *out, vcl_error *e)
{
    memset(out, 0, sizeof *out);
    if (!s)
        s = "";
    for (int k = 0; k < CPU_MODE__COUNT; k++)
        if (k != CPU_MODE_CUSTOM && strcmp(s, kind_names[k]) == 0) {
            out->kind = (cpu_mode_kind)k;
            return true;
        }
    if (strncmp(s, "custom:", 7) == 0 && model_ok(s + 7)) {
        out->kind = CPU_MODE_CUSTOM;
        snprintf(out->model, sizeof out->model, "%s", s + 7);
        return true;
    }
    return vcl_error_set(e, VCL_ERR_PERMANENT,
                         "CPU mode '%.80s' is not one of auto, host-passthrough, host-model, "
                         "custom:<model> (model: letters, digits, '.', '_', '-', at most %d)",
                         s, CPU_MODEL_MAX);
}

void cpu_mode_format(const cpu_mode *m, char *buf, size_t cap)
{
    if (m->kind == CPU_MODE_CUSTOM)
        snprintf(buf, cap, "custom:%s", m->model);
    else
        snprintf(buf, cap, "%s", cpu_mode_kind_name(m->kind));
}

void cpu_mode_fill_xml(xmlNodePtr cpu, const cpu_mode *m, bool *ok)
{
    if (!cpu) {
        *ok = false;
        return;
    }
    switch (m->kind) {
    case CPU_MODE_HOST_PASSTHROUGH:
        /* check='none': libvirt does not second-guess what QEMU accepts */
        *ok = *ok && xmlNewProp(cpu, BAD_CAST "mode", BAD_CAST "host-passthrough") &&
              xmlNewProp(cpu, BAD_CAST "check", BAD_CAST "none");
        break;
    case CPU_MODE_HOST_MODEL:
        *ok = *ok && xmlNewProp(cpu, BAD_CAST "mode", BAD_CAST "host-model");
        break;
    case CPU_MODE_CUSTOM: {
        /* check='none' and fallback='allow': a named model starts even where
         * libvirt's view of the host lacks one of its flags (qemu64 on an AMD
         * host without svm). */
        *ok = *ok && xmlNewProp(cpu, BAD_CAST "mode", BAD_CAST "custom") &&
              xmlNewProp(cpu, BAD_CAST "match", BAD_CAST "exact") &&
              xmlNewProp(cpu, BAD_CAST "check", BAD_CAST "none");
        xmlNodePtr model = *ok ? xmlNewTextChild(cpu, NULL, BAD_CAST "model", BAD_CAST m->model) : NULL;
        *ok = *ok && model && xmlNewProp(model, BAD_CAST "fallback", BAD_CAST "allow");
        break;
    }
    default:
        *ok = false;   /* auto is resolved before any XML is written */
        break;
    }
}

void cpu_mode_from_domain_xml(const char *xml, char *buf, size_t cap)
{
    if (cap)
        buf[0] = '\0';
    if (!xml || !cap)
        return;
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    for (xmlNodePtr n = root ? root->children : NULL; n; n = n->next) {
        if (n->type != XML_ELEMENT_NODE || !xmlStrEqual(n->name, BAD_CAST "cpu"))
            continue;
        xmlChar *mode = xmlGetProp(n, BAD_CAST "mode");
        if (mode && xmlStrEqual(mode, BAD_CAST "custom")) {
            for (xmlNodePtr c = n->children; c; c = c->next)
                if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST "model")) {
                    xmlChar *model = xmlNodeGetContent(c);
                    snprintf(buf, cap, "custom:%s", model ? (const char *)model : "");
                    xmlFree(model);
                }
        } else if (mode) {
            snprintf(buf, cap, "%s", (const char *)mode);
        }
        xmlFree(mode);
        break;
    }
    xmlFreeDoc(doc);
}

/* What QEMU and libvirt say when the guest CPU is the reason a start fails
 * (lower case; matched case-insensitively). */
static const char *const cpu_signs[] = {
    "failed to set msr",           /* QEMU/KVM: host-passthrough on nested/PVM hosts */
    "kvm_buf_set_msrs",
    "kvm_put_msrs",
    "cpu model",                   /* "CPU model 'X' is not supported by hypervisor" */
    "cpu mode",                    /* "CPU mode 'host-passthrough' ... not supported" */
    "host cpu does not provide",   /* check=full/partial with a missing feature */
    "guest cpu doesn't match",
    "host doesn't support requested feature",
    "unsupported cpu",
    "unknown cpu",
    "cpu feature",
    "cpu is incompatible",
    NULL,
};

bool cpu_start_failure(int code, const char *msg, char *why, size_t cap)
{
    const char *hit = NULL;
    if (cap)
        why[0] = '\0';
    for (int i = 0; msg && cpu_signs[i] && !hit; i++)
        hit = strcasestr(msg, cpu_signs[i]);
    if (!hit && code != VIR_ERR_CPU_INCOMPATIBLE)
        return false;
    if (!cap)
        return true;
    if (!hit) {
        snprintf(why, cap, "%s", msg ? msg : "CPU incompatible");
        return true;
    }
    /* The line that holds the sign, without QEMU's "<time> <binary>: error: "
     * prefix: "failed to set MSR 0x10a to 0x69". */
    const char *start = hit, *end = strchr(hit, '\n');
    while (start > msg && start[-1] != '\n')
        start--;
    const char *err = NULL;
    for (const char *p = start; (p = strstr(p, "error: ")) && p < hit; p += 7)
        err = p + 7;
    if (err)
        start = err;
    else if (start < hit - 1 && hit - start > 160)
        start = hit;
    size_t n = end ? (size_t)(end - start) : strlen(start);
    snprintf(why, cap, "%.*s", (int)n, start);
    return true;
}

bool cpu_start_error(vcl_error *e, int code, const char *node, const char *mode)
{
    char why[256];
    if (!cpu_start_failure(code, e->msg, why, sizeof why))
        return false;
    vcl_error_set(e, VCL_ERR_PERMANENT,
                  "node %s cannot start a guest with CPU mode %s: %s; run `vclctl node check %s`, "
                  "then `vclctl node set %s --cpu-mode auto` (or a mode it reports working)",
                  node, mode && mode[0] ? mode : "(unknown)", why, node, node);
    return true;
}

bool cpu_start_unexplained(const char *msg)
{
    char why[8];
    if (!msg || cpu_start_failure(0, msg, why, sizeof why))
        return false;
    const char *m = strcasestr(msg, "monitor");
    if (!m)
        return false;
    /* QEMU said something of its own ("qemu-system-x86_64: ..." or an
     * "error:" line after the monitor words): the reason is there already */
    return !strstr(m, "qemu-system") && !strstr(m, "error:") && !strstr(m, "Could not");
}
