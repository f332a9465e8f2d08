/* test_console.c: post_load's reading of a guest's serial console log: the
 * ready line (marker at the start of a line, or a getty prompt) and the last
 * line quoted by the timeout error. */
#include <string.h>

#include "ops/op_common.h"
#include "tap.h"

static bool ready(const char *log, char *line, size_t ll)
{
    return op_console_ready(log, strlen(log), line, ll);
}

static void test_ready(void)
{
    char line[64];
    static const struct {
        const char *log, *want;
    } yes[] = {
        { "VCL-READY\n", "VCL-READY" },
        { "VCL-READY", "VCL-READY" },                      /* no newline yet */
        { "[    1.8] Run /init\r\n\r\nVCL-READY\r\n", "VCL-READY" },
        { "boot\n  \tVCL-READY now\r\n", "VCL-READY now" },
        { "\x1b[0m\x1b[2JVCL-READY\n", "VCL-READY" },      /* after escape codes */
        { "Debian GNU/Linux 12 vm ttyS0\r\n\r\nvm login: ", "vm login:" },
        { "\x1b[H\x1b[Jdebian login:", "debian login:" },
        { "login:\n", "login:" },
        { "x\nVCL-READY\nlater\n", "VCL-READY" },
    };
    static const char *no[] = {
        "",
        "\n\n\r\n",
        "[    0.000000] Command line: console=ttyS0 VCL-READY\n",
        "echo VCL-READY\n",
        "vcl-test-guest: up, no VCL-READY will follow\n",
        "VCL-READ",                                        /* half written */
        "VCL-READ\nY\n",
        "Last login: Tue Nov 26 14:00:00 2024\n",
        "login: incorrect\n",
        "vcl-test-guest: built with --no-ready: no ready line will follow\r\n",
    };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        bool r = ready(yes[i].log, line, sizeof line);
        ok(r, "ready line found in log #%zu", i);
        is_str(line, yes[i].want, "ready line of log #%zu copied", i);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        snprintf(line, sizeof line, "junk");
        ok(!ready(no[i], line, sizeof line), "no ready line in log #%zu", i);
        is_str(line, "", "line cleared for log #%zu", i);
    }
    /* data is not NUL-terminated: the scan stops at len */
    const char buf[] = "VCL-READY\n";
    ok(!op_console_ready(buf, 5, line, sizeof line), "only len bytes are read");
    ok(op_console_ready("xxVCL-READY", 0, line, sizeof line) == false, "len 0: nothing");
    /* a NUL inside the log does not stop the scan */
    const char nul[] = "a\0b\nVCL-READY\n";
    ok(op_console_ready(nul, sizeof nul - 1, line, sizeof line), "a NUL byte does not end the scan");
    /* bounded copy */
    char small[6];
    ok(ready("VCL-READY and more\n", small, sizeof small), "found with a small buffer");
    is_str(small, "VCL-R", "copy is truncated to the buffer");
}

static void test_last_line(void)
{
    char line[32];
    static const struct {
        const char *log, *want;
    } cases[] = {
        { "", "" },
        { "\r\n\n  \n", "" },
        { "one\ntwo\n", "two" },
        { "one\ntwo", "two" },
        { "one\ntwo\r\n\r\n\n", "two" },
        { "a\n[    2.1] Run /init as init process\r\n", "[    2.1] Run /init as init pro" },
        { "x\n\x01\x02gar\xff" "bage\n", "??gar?bage" },
        { "\x1b[1mbold\x1b[0m\n", "bold?[0m" },
        { "single", "single" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(line, sizeof line, "junk");
        op_console_last_line(cases[i].log, strlen(cases[i].log), line, sizeof line);
        is_str(line, cases[i].want, "last line of log #%zu", i);
    }
}

int main(void)
{
    test_ready();
    test_last_line();
    return done_testing();
}
