/* op_common.c: see op_common.h. */
#include "ops/op_common.h"
#include "node/nodestatus.h"
#include "node/domxml.h"
#include "base/log.h"
#include "base/metrics.h"
#include "queue/job_db.h"
#include "base/names.h"
#include "node/virt.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The recorded domain (uuid or name) is ours whatever its name; any other
 * is ours only when its owner element (a metadata call, not its whole
 * definition: with 111 domains on one libvirtd 10-21 ms against 44-83 ms for
 * virDomainGetXMLDesc + parse) names this computer. That call is made only
 * for domains in the computer's name space ("<computer>:...", the only names
 * the worker gives its domains): on a node with many domains, one round trip
 * each was the most of a cleanup (tests/bench/load). A domain renamed by
 * hand out of that space is no longer found by its metadata (the recorded
 * one still is, by uuid). */
bool op_domain_owned(const job *j, virDomainPtr dom)
{
    char uuid[VIR_UUID_STRING_BUFLEN] = "";
    const char *name = virDomainGetName(dom);
    virDomainGetUUIDString(dom, uuid);
    if (j->rec_domain_uuid[0] && strcmp(uuid, j->rec_domain_uuid) == 0)
        return true;
    if (j->rec_domain_name[0] && name && strcmp(name, j->rec_domain_name) == 0)
        return true;
    if (j->names.domain[0] && name && strcmp(name, j->names.domain) == 0)
        return true;
    if (!names_domain_of(name, j->computer))
        return false;
    domxml_owner o;
    char *meta = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, VCL_XML_NS, 0);
    bool owned = meta && domxml_read_owner_element(meta, &o) && strcmp(o.computer, j->computer) == 0;
    free(meta);
    return owned;
}

/* path is dir + "/" + one of this computer's file names, exactly
 * (names_owned_by: "<computer>_<id>-v<rev>.<ext>", read from the right, so
 * computer "pc" never owns computer "pc_1"'s files) */
static bool owned_file(const job *j, const char *path, const char *dir)
{
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    if (strncmp(path, dir, dl) != 0 || path[dl] != '/')
        return false;
    return names_owned_by(path + dl + 1, j->computer);
}

static bool remove_file(job *j, const char *path, op_cleanup_stats *s, vcl_error *e)
{
    transport_stat_info st;
    /* lstat: a link planted there is removed itself (unlink never follows) */
    if (!transport_lstat(j->t, path, &st, e))
        return false;
    if (!st.exists)
        return true;
    if (!transport_remove(j->t, path, e))
        return false;
    s->files++;
    log_info("removed %s", path);
    return true;
}

/* "<dir>/<base>.ext" -> "<xml dir>/<base>.xml" and ".console.log" */
static bool remove_companions(job *j, const char *disk, op_cleanup_stats *s, vcl_error *e)
{
    const char *slash = strrchr(disk, '/');
    char base[256], path[PATH_MAX + 300];
    snprintf(base, sizeof base, "%s", slash ? slash + 1 : disk);
    char *dot = strrchr(base, '.');
    if (dot)
        *dot = '\0';
    snprintf(path, sizeof path, "%s/%s.xml", j->xml_dir, base);
    if (owned_file(j, path, j->xml_dir) && !remove_file(j, path, s, e))
        return false;
    snprintf(path, sizeof path, "%s/%s.console.log", j->xml_dir, base);
    return !owned_file(j, path, j->xml_dir) || remove_file(j, path, s, e);
}

static void add_name(op_cleanup_stats *s, const char *name)
{
    size_t l = strlen(s->names);
    snprintf(s->names + l, sizeof s->names - l, "%s%s", l ? ", " : "", name);
}

bool op_remove_computer_domains(job *j, op_cleanup_stats *s, vcl_error *e)
{
    memset(s, 0, sizeof *s);
    virDomainPtr *doms = NULL;
    int n = virConnectListAllDomains(j->conn, &doms, 0);
    bool ok = false;
    if (n < 0)
        return virt_error(e, NULL, "listing domains on node %s", j->node);
    for (int i = 0; i < n; i++) {
        if (!op_domain_owned(j, doms[i]))
            continue;
        char *xml = virDomainGetXMLDesc(doms[i], 0);
        const char *name = virDomainGetName(doms[i]);
        char **disks = NULL;
        size_t nd = 0;
        if (xml)
            domxml_disk_files(xml, &disks, &nd);
        free(xml);
        bool step = job_check_ours(j, e) && virt_domain_stop(doms[i], e) &&
                    virt_domain_undefine(doms[i], e);
        for (size_t k = 0; step && k < nd; k++) {
            if (owned_file(j, disks[k], j->cow_dir))
                step = remove_file(j, disks[k], s, e) && remove_companions(j, disks[k], s, e);
            else
                log_warn("domain %s uses %s, outside this computer's files: left alone", name,
                         disks[k]);
        }
        util_strv_free(disks, nd);
        if (!step) {
            vcl_error_prefix(e, "removing domain %s", name);
            goto cleanup;
        }
        log_info("removed domain %s", name);
        s->domains++;
        add_name(s, name);
    }
    /* artifacts recorded before define whose domain never existed */
    if (j->rec_cow_path[0] && owned_file(j, j->rec_cow_path, j->cow_dir) &&
        (!remove_file(j, j->rec_cow_path, s, e) || !remove_companions(j, j->rec_cow_path, s, e)))
        goto cleanup;
    if (j->rec_xml_path[0] && owned_file(j, j->rec_xml_path, j->xml_dir) &&
        !remove_file(j, j->rec_xml_path, s, e))
        goto cleanup;
    ok = true;
cleanup:
    for (int i = 0; i < n; i++)
        virDomainFree(doms[i]);
    free(doms);
    return ok;
}

#define OP_READY_MARKER "VCL-READY"

/* Copy [b, e) to out, bounded, with every byte that is not printable ASCII
 * shown as '?' (tabs as blanks): it goes into logs and reservation errors. */
static void printable_copy(const char *b, const char *end, char *out, size_t outlen)
{
    size_t o = 0;
    if (!outlen)
        return;
    for (; b < end && o + 1 < outlen; b++) {
        unsigned char c = (unsigned char)*b;
        out[o++] = c == '\t' ? ' ' : (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[o] = '\0';
}

/* Trim one console line [*b, *e): leading blanks, '\r' and ANSI escape
 * sequences (ESC [ ... final byte, ESC x); trailing blanks and '\r'. */
static void trim_line(const char **b, const char **e)
{
    const char *p = *b, *q = *e;
    for (;;) {
        if (p < q && (*p == ' ' || *p == '\t' || *p == '\r')) {
            p++;
        } else if (p < q && *p == '\x1b') {
            p++;
            if (p < q && *p == '[') {
                p++;
                while (p < q && !((unsigned char)*p >= 0x40 && (unsigned char)*p <= 0x7e))
                    p++;
            }
            if (p < q)
                p++;
        } else {
            break;
        }
    }
    while (q > p && (q[-1] == ' ' || q[-1] == '\t' || q[-1] == '\r'))
        q--;
    *b = p;
    *e = q;
}

bool op_console_ready(const char *data, size_t len, char *line, size_t linelen)
{
    static const char marker[] = OP_READY_MARKER, prompt[] = "login:";
    const char *p = data, *end = data + len;
    if (linelen)
        line[0] = '\0';
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *b = p, *e = nl ? nl : end;
        p = nl ? nl + 1 : end;
        trim_line(&b, &e);
        size_t l = (size_t)(e - b);
        if ((l >= sizeof marker - 1 && memcmp(b, marker, sizeof marker - 1) == 0) ||
            (l >= sizeof prompt - 1 &&
             memcmp(e - (sizeof prompt - 1), prompt, sizeof prompt - 1) == 0)) {
            printable_copy(b, e, line, linelen);
            return true;
        }
    }
    return false;
}

void op_console_last_line(const char *data, size_t len, char *line, size_t linelen)
{
    const char *end = data + len;
    if (linelen)
        line[0] = '\0';
    while (end > data) {
        const char *b = end;
        while (b > data && b[-1] != '\n')
            b--;
        const char *lb = b, *le = end;
        trim_line(&lb, &le);
        if (le > lb) {
            printable_copy(lb, le, line, linelen);
            return;
        }
        end = b > data ? b - 1 : data;
    }
}

/* "last console line: '...'" or why there is none, for errors. */
static void console_tail(bool have_log, const char *data, size_t len, char *out, size_t outlen)
{
    char last[160];
    if (!have_log) {
        snprintf(out, outlen, "no console log yet");
        return;
    }
    op_console_last_line(data, len, last, sizeof last);
    if (last[0])
        snprintf(out, outlen, "last console line: '%s'", last);
    else
        snprintf(out, outlen, "the console log is empty");
}

bool op_wait_booted(job *j, char *detail, size_t dlen, vcl_error *e)
{
    if (strcmp(j->os_type, "none") == 0 || !j->os_type[0]) {
        snprintf(detail, dlen, "os_type none: nothing to wait for");
        return true;
    }
    char tail[256] = "no console log yet";
    const char *log = j->names.console_path;
    int timeout = j->cfg ? j->cfg->post_load_timeout_seconds : 300;
    time_t start = time(NULL);
    for (;;) {
        char *data = NULL, line[160];
        size_t len = 0;
        vcl_error re;
        vcl_error_clear(&re);
        bool got_log = transport_read_file(j->t, log, &data, &len, &re);
        /* Not there yet is normal (and a node that does not answer now may
         * later); a link or FIFO planted there is not. */
        vcl_error ce;
        vcl_error_clear(&ce);
        if (!got_log && !transport_check_file(j->t, log, NULL, &ce) &&
            ce.cls == VCL_ERR_PERMANENT) {
            if (e)
                *e = ce;
            return false;
        }
        if (got_log) {
            bool ready = op_console_ready(data, len, line, sizeof line);
            console_tail(true, data, len, tail, sizeof tail);
            free(data);
            if (ready) {
                snprintf(detail, dlen, "%s guest booted after %lds: ready line '%s' in %s",
                         j->os_type, (long)(time(NULL) - start), line, log);
                log_info("computer %s: %s", j->computer, detail);
                return true;
            }
        }
        virDomainPtr dom = NULL;
        int st = 0;
        if (virt_lookup_uuid(j->conn, j->domain_uuid, &dom, e) && dom) {
            bool have = virt_domain_state(dom, &st, e);
            virDomainFree(dom);
            if (have && st != VIR_DOMAIN_RUNNING && st != VIR_DOMAIN_BLOCKED)
                return vcl_error_set(e, VCL_ERR_RETRYABLE,
                                     "the %s guest stopped while booting (state %s; %s; "
                                     "console log %s)",
                                     j->os_type, virt_state_name(st), tail, log);
        }
        if (time(NULL) - start >= timeout)
            return vcl_error_set(e, VCL_ERR_RETRYABLE,
                                 "timeout: the %s guest did not print a ready line ('"
                                 OP_READY_MARKER "' at the start of a line, or a login prompt) "
                                 "on its serial console within %d s "
                                 "(post_load_timeout_seconds); %s; console log %s",
                                 j->os_type, timeout, tail, log);
        sleep(1);
    }
}

int op_command_timeout(const job *j)
{
    return config_command_timeout(j->cfg ? j->cfg->command_timeout_seconds : 0);
}

static bool temp_record(void *opaque, const char *path, vcl_error *e)
{
    return job_temp_record(opaque, path, e);
}

static bool temp_forget(void *opaque, const char *path, vcl_error *e)
{
    return job_temp_forget(opaque, path, e);
}

static bool temp_stale(void *opaque, const char *final, char ***paths, size_t *n, vcl_error *e)
{
    return job_temp_stale(opaque, final, paths, n, e);
}

node_temps op_temps(job *j)
{
    return (node_temps){ .record = temp_record, .forget = temp_forget, .stale = temp_stale,
                         .opaque = j };
}

bool op_recorded_domain(job *j, virDomainPtr *dom, vcl_error *e)
{
    *dom = NULL;
    if (j->rec_domain_uuid[0])
        return virt_lookup_uuid(j->conn, j->rec_domain_uuid, dom, e);
    if (j->rec_domain_name[0])
        return virt_lookup_name(j->conn, j->rec_domain_name, dom, e);
    return true;
}

bool op_require_domain(job *j, virDomainPtr *dom, vcl_error *e)
{
    if (!op_recorded_domain(j, dom, e))
        return false;
    if (*dom)
        return true;
    if (j->rec_domain_name[0])
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "computer %s has no loaded domain (its domain %s is gone from node "
                             "%s); load it first", j->computer, j->rec_domain_name, j->node);
    return vcl_error_set(e, VCL_ERR_PERMANENT, "computer %s has no loaded domain; load it first",
                         j->computer);
}

/* ---- graceful shutdown ---- */

/* Any state in which the domain holds its resources and may still run. */
static bool domain_is_on(int st)
{
    return st == VIR_DOMAIN_RUNNING || st == VIR_DOMAIN_BLOCKED || st == VIR_DOMAIN_PAUSED ||
           st == VIR_DOMAIN_SHUTDOWN || st == VIR_DOMAIN_PMSUSPENDED;
}

bool op_shutdown_domain(job *j, virDomainPtr dom, int timeout_s, char *detail, size_t dlen,
                        vcl_error *e)
{
    int st = 0, sent = 0;
    const char *name = virDomainGetName(dom);
    if (!virt_domain_state(dom, &st, e))
        return false;
    if (!domain_is_on(st)) {
        if (st != VIR_DOMAIN_SHUTOFF && (!job_check_ours(j, e) || !virt_domain_stop(dom, e)))
            return false; /* crashed: release it */
        snprintf(detail, dlen, "%s was already %s", name, virt_state_name(st));
        return true;
    }
    double start = util_mono_s(), last = -1e9;
    while (st == VIR_DOMAIN_RUNNING || st == VIR_DOMAIN_BLOCKED || st == VIR_DOMAIN_SHUTDOWN) {
        double now = util_mono_s();
        if (now - start >= timeout_s)
            break;
        if (now - last >= OP_SHUTDOWN_RESEND_S) {
            if (!job_check_ours(j, e))
                return false;
            if (virDomainShutdown(dom) == 0)
                sent++;
            else {
                vcl_error se;
                vcl_error_clear(&se);
                virt_error(&se, NULL, "ACPI shutdown of domain %s", name);
                log_debug("%s (checking its state)", se.msg);
            }
            last = now;
        }
        usleep(500 * 1000);
        if (!virt_domain_state(dom, &st, e))
            return false;
    }
    if (st == VIR_DOMAIN_SHUTOFF) {
        snprintf(detail, dlen, "%s shut down after %.0f s (%d ACPI request(s))", name,
                 util_mono_s() - start, sent);
        return true;
    }
    log_warn("computer %s: domain %s still %s after %d ACPI shutdown request(s) in %d s: "
             "destroying it", j->computer, name, virt_state_name(st), sent, timeout_s);
    if (!job_check_ours(j, e) || !virt_domain_stop(dom, e))
        return false;
    snprintf(detail, dlen, "%s did not shut down within %d s (%d ACPI request(s)): destroyed",
             name, timeout_s, sent);
    return true;
}

/* ---- stage functions several operations share ---- */

bool op_stage_remove_domains(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    if (!job_prepare(j, e))
        return false;
    op_cleanup_stats s;
    if (!op_remove_computer_domains(j, &s, e))
        return false;
    snprintf(detail, dlen, "removed %d domain(s)%s%s, %d file(s)", s.domains,
             s.domains ? ": " : "", s.names, s.files);
    return job_clear_ownership(j, e);
}

bool op_stage_check_status(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    node_status_row row;
    node_status_report rep;
    if (!job_status_row(j, &row, e) || !node_status_check(&row, job_transport_opts(j), &rep, e))
        return false;
    snprintf(detail, dlen, "%s: %s", rep.status, rep.reason);
    if (!job_write_status(j, rep.status, rep.reason, false, e))
        return false;
    /* a computer that had a domain and is found broken (not one never loaded) */
    if (strcmp(rep.status, "RELOAD") == 0 && (row.domain[0] || row.domain_uuid[0]))
        metrics_computer_reload(j->node, "node_status");
    return true;
}
