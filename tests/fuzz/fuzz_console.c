/* fuzz_console.c: scanning text that comes from a guest or a node: the
 * serial console log (op_console_ready, op_console_last_line in
 * worker/ops/op_common.c: a guest writes whatever it likes there) and the
 * libvirt/QEMU messages of a failed start (cpu_start_failure,
 * cpu_start_unexplained, cpu_mode_from_domain_xml in worker/node/cpumode.c)
 * and a failed command's output (transport_status_error in
 * worker/node/transport.c: the last line of a node's stderr or stdout goes
 * into the error that becomes last_error).
 *
 * Input: the first byte picks the output buffer size (its low 6 bits,
 * 0..63) and the libvirt error code (bit 6), the rest is the text. The
 * console scans get exactly those bytes (not NUL-terminated: the copy is
 * exactly that long, so ASan sees any read past it).
 * Properties: the line copied out is printable ASCII and fits; a ready line
 * starts with the marker or ends with "login:" (op_common.h); no ready line
 * leaves line empty; the CPU reason and the mode read from an XML fit their
 * buffers; a message is never both a CPU failure and "unexplained"; a failed
 * command's error is valid UTF-8 without control characters (PostgreSQL
 * refuses anything else in last_error, terminals act on escapes); the scans
 * are deterministic. */
#include "node/cpumode.h"
#include "node/transport.h"
#include "ops/op_common.h"
#include "base/util.h"
#include "fuzz.h"

#include <libvirt/virterror.h>

/* op_common.h: the ready marker at the start of a line */
#define READY_MARKER "VCL-READY"

static void check_line(const char *line, size_t cap)
{
    if (!cap)
        return;
    size_t n = strnlen(line, cap);
    FUZZ_CHECK(n < cap, "line not terminated within %zu bytes", cap);
    FUZZ_CHECK(fuzz_printable(line), "line not printable: '%s'", line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > FUZZ_MAX_INPUT)
        return 0;
    size_t cap = data[0] & 63;
    const uint8_t *text = data + 1;
    size_t len = size - 1;
    char *exact = malloc(len ? len : 1);
    char line[64], line2[64];
    FUZZ_CHECK(exact != NULL, "out of memory");
    memcpy(exact, text, len);

    memset(line, 'x', sizeof line);
    bool ready = op_console_ready(exact, len, line, cap);
    check_line(line, cap);
    memset(line2, 'y', sizeof line2);
    FUZZ_CHECK(op_console_ready(exact, len, line2, cap) == ready, "ready differs on a rescan");
    FUZZ_CHECK(!cap || strcmp(line, line2) == 0, "ready line differs on a rescan");
    if (ready && cap == sizeof line - 1) {
        size_t l = strlen(line);
        FUZZ_CHECK(strncmp(line, READY_MARKER, strlen(READY_MARKER)) == 0 ||
                       (l >= 6 && strcmp(line + l - 6, "login:") == 0) || l == cap - 1,
                   "ready line '%s' has neither the marker nor a prompt", line);
    }
    if (!ready && cap)
        FUZZ_CHECK(line[0] == '\0', "no ready line, but line '%s'", line);
    memset(line, 'x', sizeof line);
    op_console_last_line(exact, len, line, cap);
    check_line(line, cap);

    /* libvirt's message of a failed start: a C string */
    char *msg = fuzz_cstr(text, len);
    char why[64];
    memset(why, 'z', sizeof why);
    int code = (data[0] & 64) ? VIR_ERR_CPU_INCOMPATIBLE : VIR_ERR_INTERNAL_ERROR;
    bool cpu = cpu_start_failure(code, msg, why, cap);
    if (cap) {
        FUZZ_CHECK(strnlen(why, cap) < cap, "why not terminated within %zu bytes", cap);
        if (!cpu)
            FUZZ_CHECK(why[0] == '\0', "not a CPU failure, but why '%s'", why);
    }
    FUZZ_CHECK(cpu_start_failure(code, msg, NULL, 0) == cpu, "cap 0 changes the answer");
    FUZZ_CHECK(!(cpu_start_unexplained(msg) && cpu_start_failure(0, msg, NULL, 0)),
               "a start failure both explained by the CPU and unexplained");

    /* the mode a domain XML asks for */
    char mode[CPU_MODE_STR_MAX];
    memset(mode, 'm', sizeof mode);
    cpu_mode_from_domain_xml(msg, mode, cap < sizeof mode ? cap : sizeof mode);
    if (cap)
        FUZZ_CHECK(strnlen(mode, sizeof mode) < sizeof mode, "mode not terminated");
    /* a command failed on a node: its stderr (else stdout) in the error */
    const char *argv[] = { "qemu-img", "convert", NULL };
    transport_result res = { .status = data[0], .out = msg, .err = (data[0] & 128) ? msg : NULL };
    vcl_error e;
    vcl_error_clear(&e);
    FUZZ_CHECK(!transport_status_error(argv, &res, VCL_ERR_PERMANENT, &e) && e.msg[0],
               "no error for a failed command");
    for (const unsigned char *p = (const unsigned char *)e.msg; *p;) {
        size_t n = util_utf8_len(p);
        FUZZ_CHECK(n > 0 && *p >= 0x20 && *p != 0x7f, "byte 0x%02x at %zu of the error: %s", *p,
                   (size_t)((const char *)p - e.msg), e.msg);
        p += n;
    }
    free(msg);
    free(exact);
    return 0;
}
