/* fuzz_metrics.c: the metrics_listen parser and the exposition text
 * (worker/base/metrics.c). Label values come from the database (operation
 * names in reservation rows) and the config (worker name), so the renderer
 * must turn any bytes into text Prometheus accepts.
 *
 * Input: NUL-separated fields: a metrics_listen value, the worker name, the
 * version, then event records: one byte (which event, and for a stage
 * observation the duration) followed by an operation name, then a stage
 * name, each its own field.
 * Properties: metrics_parse_listen and metrics_check_listen agree; an
 * accepted address has the family and length of its form and a port in
 * 1..65535; a refusal says why. The rendered text is valid UTF-8 and every
 * line is "# HELP|TYPE ..." or `name{label="escaped",...} value`. */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>

#include "base/metrics.h"
#include "base/util.h"
#include "fuzz.h"

#define MAX_FIELDS 64

static void check_listen(const char *spec)
{
    struct sockaddr_storage ss;
    socklen_t len = 12345;
    bool off = true;
    char why[200] = "", why2[200];
    bool ok = metrics_parse_listen(spec, &ss, &len, &off, why, sizeof why);
    FUZZ_CHECK(metrics_check_listen(spec, why2, sizeof why2) == ok, "check and parse disagree");
    if (!ok) {
        FUZZ_CHECK(why[0] != '\0', "a refused address says why");
        return;
    }
    if (off) {
        FUZZ_CHECK(spec[0] == '\0' && len == 0, "off only for \"\"");
        return;
    }
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        FUZZ_CHECK(len == sizeof *a && ntohs(a->sin_port) > 0, "IPv4 length %u", (unsigned)len);
        FUZZ_CHECK(spec[0] != '[', "a bracketed address parsed as IPv4");
    } else {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        FUZZ_CHECK(ss.ss_family == AF_INET6, "family %d", ss.ss_family);
        FUZZ_CHECK(len == sizeof *a && ntohs(a->sin6_port) > 0, "IPv6 length %u", (unsigned)len);
        FUZZ_CHECK(spec[0] == '[', "IPv6 without brackets");
    }
}

static bool is_name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

/* One sample line: name, optional {k="v",...}, ' ', a number. */
static void check_sample(const char *l, size_t n)
{
    size_t i = 0;
    FUZZ_CHECK(n > 0 && is_name_char(l[0], true), "line '%.*s'", (int)n, l);
    while (i < n && is_name_char(l[i], i == 0))
        i++;
    if (i < n && l[i] == '{') {
        i++;
        for (;;) {
            size_t k = i;
            while (i < n && is_name_char(l[i], i == k))
                i++;
            FUZZ_CHECK(i > k && i + 1 < n && l[i] == '=' && l[i + 1] == '"',
                       "label name in '%.*s'", (int)n, l);
            i += 2;
            while (i < n && l[i] != '"') {
                if (l[i] == '\\') {
                    FUZZ_CHECK(i + 1 < n && (l[i + 1] == '\\' || l[i + 1] == '"' || l[i + 1] == 'n'),
                               "bad escape in '%.*s'", (int)n, l);
                    i++;
                }
                i++;
            }
            FUZZ_CHECK(i < n, "unterminated label value in '%.*s'", (int)n, l);
            i++;
            if (i < n && l[i] == ',') {
                i++;
                continue;
            }
            FUZZ_CHECK(i < n && l[i] == '}', "labels not closed in '%.*s'", (int)n, l);
            i++;
            break;
        }
    }
    FUZZ_CHECK(i < n && l[i] == ' ', "no value in '%.*s'", (int)n, l);
    char num[64];
    size_t vl = n - i - 1;
    FUZZ_CHECK(vl > 0 && vl < sizeof num, "value length %zu", vl);
    memcpy(num, l + i + 1, vl);
    num[vl] = '\0';
    char *end;
    double v = strtod(num, &end);
    FUZZ_CHECK(*end == '\0' && !isnan(v), "value '%s'", num);
}

static void check_render(void)
{
    char *t = metrics_render();
    FUZZ_CHECK(t != NULL, "render failed");
    for (const unsigned char *p = (const unsigned char *)t; *p;) {
        size_t n = util_utf8_len(p);
        FUZZ_CHECK(n > 0, "not UTF-8 at byte %zu", (size_t)((const char *)p - t));
        p += n;
    }
    for (const char *l = t; *l;) {
        const char *nl = strchr(l, '\n');
        FUZZ_CHECK(nl != NULL, "last line without a newline");
        size_t n = (size_t)(nl - l);
        if (l[0] == '#')
            FUZZ_CHECK(strncmp(l, "# HELP ", 7) == 0 || strncmp(l, "# TYPE ", 7) == 0,
                       "comment '%.*s'", (int)n, l);
        else
            check_sample(l, n);
        l = nl + 1;
    }
    free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *f[MAX_FIELDS];
    char *buf;

    if (size > FUZZ_MAX_INPUT)
        return 0;
    fuzz_fields(data, size, &buf, f, MAX_FIELDS);
    check_listen(f[0]);

    metrics_stop();
    metrics_reset();
    metrics_init(f[1], f[2]);
    for (size_t i = 3; i + 2 < MAX_FIELDS && f[i][0]; i += 3) {
        unsigned char ev = (unsigned char)f[i][0];
        const char *op = f[i + 1], *stage = f[i + 2];
        switch (ev & 7) {
        case 0: metrics_seed_operation(op); break;
        case 1: metrics_job_claimed(op); break;
        case 2: metrics_job_done(op); break;
        case 3: metrics_job_failed(op); break;
        case 4: metrics_job_retried(op); break;
        case 5: metrics_stage_observe(op, stage, (double)(ev >> 3) * 37.5 - 100); break;
        case 6: metrics_stage_deadline(op, stage); break;
        default:
            /* two labels from the database (an operation or node name, a stage) */
            if (ev & 8)
                metrics_computer_reload(op, stage);
            else
                metrics_job_observe(op, stage, (double)(ev >> 4) * 75 - 100);
            break;
        }
    }
    metrics_slot_busy(1);
    check_render();
    free(buf);
    return 0;
}
