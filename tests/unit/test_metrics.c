/* test_metrics: metrics_listen parsing, label escaping, the exposition text
 * (counters, gauges, histogram buckets, no queue-wide gauge: those are
 * vcl.metrics'), /proc/self/stat parsing and the process_* metrics; the
 * HTTP side is tested against a real worker in tests/integration/70-metrics.t. */
#include "base/metrics.h"
#include "tap.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static bool parses(const char *spec, int family, const char *addr, unsigned port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    bool off;
    char why[160] = "", got[64] = "";
    if (!metrics_parse_listen(spec, &ss, &len, &off, why, sizeof why) || off)
        return false;
    if (ss.ss_family != family)
        return false;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, got, sizeof got);
        return strcmp(got, addr) == 0 && ntohs(a->sin_port) == port && len == sizeof *a;
    }
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &a->sin6_addr, got, sizeof got);
    return strcmp(got, addr) == 0 && ntohs(a->sin6_port) == port && len == sizeof *a;
}

static const char *refused(const char *spec)
{
    static char why[160];
    struct sockaddr_storage ss;
    socklen_t len;
    bool off;
    why[0] = '\0';
    if (metrics_parse_listen(spec, &ss, &len, &off, why, sizeof why))
        return "(accepted)";
    return why;
}

/* Does the text have this exact line? */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
            return true;
    return false;
}

int main(void)
{
    /* ---- metrics_listen ---- */
    struct sockaddr_storage ss;
    socklen_t len;
    bool off = false;
    char why[160];
    ok(metrics_parse_listen("", &ss, &len, &off, why, sizeof why) && off, "\"\" = off");
    ok(parses("127.0.0.1:9187", AF_INET, "127.0.0.1", 9187), "127.0.0.1:9187");
    ok(parses("0.0.0.0:80", AF_INET, "0.0.0.0", 80), "0.0.0.0:80 (every interface)");
    ok(parses(":9187", AF_INET, "127.0.0.1", 9187), ":9187 = loopback");
    ok(parses("9187", AF_INET, "127.0.0.1", 9187), "bare port = loopback");
    ok(parses("localhost:65535", AF_INET, "127.0.0.1", 65535), "localhost, port 65535");
    ok(parses("[::1]:9187", AF_INET6, "::1", 9187), "[::1]:9187");
    ok(parses("[::]:1", AF_INET6, "::", 1), "[::]:1");
    is_str(refused("127.0.0.1:0"), "the port must be a number from 1 to 65535", "port 0");
    is_str(refused("127.0.0.1:65536"), "the port must be a number from 1 to 65535", "port 65536");
    is_str(refused("127.0.0.1:"), "the port must be a number from 1 to 65535", "no port");
    is_str(refused("127.0.0.1:-1"), "the port must be a number from 1 to 65535", "negative port");
    is_str(refused("127.0.0.1:99999999999"), "the port must be a number from 1 to 65535", "huge port");
    is_str(refused("::1:9187"), "an IPv6 address needs brackets: [ADDRESS]:PORT, e.g. [::1]:9187",
           "IPv6 without brackets");
    is_str(refused("[::1]9187"), "an IPv6 address is written [ADDRESS]:PORT, e.g. [::1]:9187",
           "missing ':' after ]");
    is_str(refused("[1.2.3.4]:80"), "'1.2.3.4' is not an IPv6 address", "IPv4 in brackets");
    is_str(refused("example.org:80"),
           "'example.org' is not an IPv4 address (use an address, not a host name, or [ADDRESS] "
           "for IPv6)", "host name");
    is_str(refused("300.1.1.1:80"),
           "'300.1.1.1' is not an IPv4 address (use an address, not a host name, or [ADDRESS] "
           "for IPv6)", "bad IPv4");
    ok(metrics_check_listen("[::1]:9187", why, sizeof why) && !metrics_check_listen("x", why, sizeof why),
       "metrics_check_listen agrees");

    /* ---- escaping ---- */
    char e[64];
    metrics_escape_label("a\"b\\c\nd", e, sizeof e);
    is_str(e, "a\\\"b\\\\c\\nd", "label: quote, backslash, newline escaped");
    metrics_escape_label("abcdef", e, 4);
    is_str(e, "abc", "label: truncated to the buffer");

    /* ---- off: every call is a no-op ---- */
    metrics_job_claimed("noop");
    char *t = metrics_render();
    ok(t && !strstr(t, "vclw_jobs_claimed_total{"), "nothing collected before metrics_init");
    free(t);

    /* ---- on ---- */
    metrics_init("w\"1", "0.1");
    metrics_seed_operation("load");
    metrics_seed_operation("noop");
    metrics_slots(4);
    metrics_job_claimed("noop");
    metrics_job_claimed("noop");
    metrics_job_done("noop");
    metrics_job_failed("load");
    metrics_job_retried("load");
    metrics_job_retried("load");
    metrics_job_claimed(""); /* no name from the row: "unknown" */
    metrics_slot_busy(1);
    metrics_slot_busy(1);
    metrics_slot_busy(-1);
    metrics_lease_lost();
    metrics_db_reconnect();
    metrics_libvirt_error();
    metrics_libvirt_error();
    metrics_stage_observe("load", "define", 0.005);   /* <= 0.01 */
    metrics_stage_observe("load", "define", 0.01);    /* le is inclusive */
    metrics_stage_observe("load", "define", 3);       /* 5 */
    metrics_stage_observe("load", "define", 5000);    /* only +Inf */
    metrics_stage_observe("load", "post_load", -1);   /* clock oddity: 0 */
    metrics_job_observe("load", "kvm1", 42);
    metrics_job_observe("load", "kvm1", 100);
    metrics_job_observe("load", "kvm2", 0.2);
    metrics_computer_reload("kvm1", "watch");
    metrics_computer_reload("kvm1", "watch");
    metrics_computer_reload("kvm2", "node_status");
    /* label values stay UTF-8: cut at a character boundary (62 ASCII bytes and
     * a 2-byte character would end one byte past the 63 kept), bad bytes '?' */
    char longop[80];
    memset(longop, 'a', 62);
    memcpy(longop + 62, "\xc3\xa9tail", 7);
    metrics_job_done(longop);
    metrics_job_done("bad\xff\xc3" "zop");

    t = metrics_render();
    ok(t != NULL, "rendered");
    const char *want[] = {
        "# TYPE vclw_jobs_claimed_total counter",
        "vclw_jobs_claimed_total{operation=\"load\"} 0",
        "vclw_jobs_claimed_total{operation=\"noop\"} 2",
        "vclw_jobs_claimed_total{operation=\"unknown\"} 1",
        "vclw_jobs_done_total{operation=\"noop\"} 1",
        "vclw_jobs_failed_total{operation=\"load\"} 1",
        "vclw_jobs_retried_total{operation=\"load\"} 2",
        "# TYPE vclw_stage_duration_seconds histogram",
        "vclw_stage_duration_seconds_bucket{operation=\"load\",stage=\"define\",le=\"0.01\"} 2",
        "vclw_stage_duration_seconds_bucket{operation=\"load\",stage=\"define\",le=\"2.5\"} 2",
        "vclw_stage_duration_seconds_bucket{operation=\"load\",stage=\"define\",le=\"5\"} 3",
        "vclw_stage_duration_seconds_bucket{operation=\"load\",stage=\"define\",le=\"1800\"} 3",
        "vclw_stage_duration_seconds_bucket{operation=\"load\",stage=\"define\",le=\"+Inf\"} 4",
        "vclw_stage_duration_seconds_sum{operation=\"load\",stage=\"define\"} 5003.015000",
        "vclw_stage_duration_seconds_count{operation=\"load\",stage=\"define\"} 4",
        "vclw_stage_duration_seconds_bucket{operation=\"load\",stage=\"post_load\",le=\"0.01\"} 1",
        "vclw_stage_duration_seconds_count{operation=\"load\",stage=\"post_load\"} 1",
        "vclw_lease_lost_total 1",
        "vclw_db_reconnects_total 1",
        "vclw_libvirt_errors_total 2",
        "vclw_slots_busy 1",
        "vclw_slots_stuck 0",
        "# TYPE vclw_stage_deadline_exceeded_total counter",
        "# TYPE vclw_slots gauge",
        "vclw_slots 4",
        "# TYPE vclw_job_duration_seconds histogram",
        "vclw_job_duration_seconds_bucket{operation=\"load\",node=\"kvm1\",le=\"30\"} 0",
        "vclw_job_duration_seconds_bucket{operation=\"load\",node=\"kvm1\",le=\"60\"} 1",
        "vclw_job_duration_seconds_bucket{operation=\"load\",node=\"kvm1\",le=\"120\"} 2",
        "vclw_job_duration_seconds_count{operation=\"load\",node=\"kvm1\"} 2",
        "vclw_job_duration_seconds_sum{operation=\"load\",node=\"kvm1\"} 142.000000",
        "vclw_job_duration_seconds_bucket{operation=\"load\",node=\"kvm2\",le=\"0.25\"} 1",
        "# TYPE vclw_computer_reloads_total counter",
        "vclw_computer_reloads_total{node=\"kvm1\",source=\"watch\"} 2",
        "vclw_computer_reloads_total{node=\"kvm2\",source=\"node_status\"} 1",
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_virtual_memory_bytes gauge",
        "# TYPE process_open_fds gauge",
        "# TYPE process_start_time_seconds gauge",
        "vclw_worker_info{version=\"0.1\",worker=\"w\\\"1\"} 1",
        "vclw_jobs_done_total{operation=\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"} 1",
        "vclw_jobs_done_total{operation=\"bad?" "?zop\"} 1",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        ok(t && has_line(t, want[i]), "line: %s", want[i]);
    int help = 0, type = 0;
    for (const char *p = t; p && (p = strstr(p, "\n# ")); p++)
        help += strncmp(p, "\n# HELP vclw_", 13) == 0, type += strncmp(p, "\n# TYPE vclw_", 13) == 0;
    help += t && strncmp(t, "# HELP vclw_", 12) == 0;
    is_int(help, 15, "one HELP line per vclw_ metric");
    is_int(type, 15, "one TYPE line per vclw_ metric");
    ok(t && !strstr(t, "vclw_queue_depth") && !strstr(t, "vclw_slots_total"),
       "no queue-wide gauge (vcl.metrics has them) and no vclw_slots_total (renamed vclw_slots)");
    /* counters end in _total, and nothing else does (Prometheus naming) */
    bool names_ok = true;
    for (const char *p = t; p && (p = strstr(p, "# TYPE ")); p++) {
        char name[128] = "", kind[32] = "";
        if (sscanf(p, "# TYPE %127s %31s", name, kind) != 2)
            continue;
        size_t n = strlen(name);
        bool total = n > 6 && strcmp(name + n - 6, "_total") == 0;
        if (total != (strcmp(kind, "counter") == 0)) {
            diag("%s is a %s", name, kind);
            names_ok = false;
        }
    }
    ok(names_ok, "every counter ends in _total and no gauge or histogram does");
    /* process metrics of this very process */
    double start = -1, fds = -1, rss = -1;
    for (const char *p = t; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        sscanf(p, "process_start_time_seconds %lf", &start);
        sscanf(p, "process_open_fds %lf", &fds);
        sscanf(p, "process_resident_memory_bytes %lf", &rss);
    }
    double now = (double)time(NULL);
    ok(start > now - 3600 && start <= now + 1, "process_start_time_seconds is this process's start (%.0f, now %.0f)", start, now);
    ok(fds >= 3 && fds < 1000, "process_open_fds counts this process's descriptors (%.0f)", fds);
    ok(rss > 100000, "process_resident_memory_bytes is plausible (%.0f)", rss);
    ok(t && t[strlen(t) - 1] == '\n', "ends with a newline");
    free(t);

    /* ---- /proc/self/stat parsing ---- */
    metrics_proc pr;
    /* comm with a space and a ')': fields are counted after the last ')' */
    const char *stat = "1234 (vcl w) rk) S 1 1234 1234 0 -1 4194560 500 0 0 0 "
                       "250 150 0 0 20 0 3 0 1000 104857600 2560 18446744073709551615 1 1 0 0 "
                       "0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
    ok(metrics_parse_proc_stat(stat, 100, 4096, 1700000000.0, &pr), "a stat line parses");
    ok(pr.cpu_seconds == 4.0, "cpu = (utime 250 + stime 150) / 100 ticks = 4 s (%g)", pr.cpu_seconds);
    ok(pr.start_time_seconds == 1700000010.0, "start = boot + 1000 / 100 ticks (%.1f)", pr.start_time_seconds);
    ok(pr.virtual_bytes == 104857600.0, "vsize in bytes");
    ok(pr.resident_bytes == 2560.0 * 4096, "rss pages x page size");
    ok(!metrics_parse_proc_stat("1234 (x) S 1 2", 100, 4096, 0, &pr), "a short line is refused");
    ok(!metrics_parse_proc_stat("garbage", 100, 4096, 0, &pr), "no ')' is refused");
    ok(!metrics_parse_proc_stat(stat, 0, 4096, 0, &pr), "no tick rate is refused");

    metrics_stop();
    metrics_job_done("noop");
    ok(!metrics_enabled(), "metrics_stop turns collection off");
    return done_testing();
}
