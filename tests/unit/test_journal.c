/* test_journal: JOURNAL_STREAM parsing and matching fd 2 (base/journal.c), the
 * sd_notify STATUS= text and no-op without NOTIFY_SOCKET (base/sdnotify.c).
 * The journal itself and the notify protocol are proven in
 * tests/integration/90-journal.t. */
#include "base/journal.h"
#include "base/sdnotify.h"
#include "tap.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void)
{
    unsigned long long d = 0, i = 0;
    ok(journal_parse_stream("9:4260673", &d, &i) && d == 9 && i == 4260673, "9:4260673");
    ok(journal_parse_stream("18446744073709551615:1", &d, &i) && d == 18446744073709551615ULL,
       "64-bit device");
    const char *bad[] = { NULL, "", ":", "9:", ":9", "9", "9:x", "9:1x", "-1:2", "9:-2", " 9:2",
                          "9:2 ", "99999999999999999999:1" };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++)
        ok(!journal_parse_stream(bad[k], &d, &i), "rejects '%s'", bad[k] ? bad[k] : "(null)");

    /* fd 2 on a file: JOURNAL_STREAM naming that file matches, another does not */
    char path[] = "/tmp/test_journal.XXXXXX";
    int fd = mkstemp(path);
    int saved = dup(2);
    struct stat st;
    ok(fd >= 0 && saved >= 0 && fstat(fd, &st) == 0, "a temp file");
    char js[64];
    snprintf(js, sizeof js, "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    unsetenv("JOURNAL_STREAM");
    ok(!journal_stderr_is_journal(), "no JOURNAL_STREAM: not the journal");
    setenv("JOURNAL_STREAM", js, 1);
    ok(!journal_stderr_is_journal(), "JOURNAL_STREAM names another file than fd 2");
    dup2(fd, 2);
    bool same = journal_stderr_is_journal();
    dup2(saved, 2);
    ok(same, "JOURNAL_STREAM names fd 2's file: the journal");
    setenv("JOURNAL_STREAM", "garbage", 1);
    dup2(fd, 2);
    same = journal_stderr_is_journal();
    dup2(saved, 2);
    ok(!same, "garbage JOURNAL_STREAM: not the journal");
    unsetenv("JOURNAL_STREAM");
    close(fd);
    unlink(path);

    char buf[160];
    sdnotify_status_text(buf, sizeof buf, 0, 4, 0, 0);
    is_str(buf, "0 of 4 slots busy; last claim none yet", "status before any claim");
    sdnotify_status_text(buf, sizeof buf, 2, 4, 3661, 42);
    is_str(buf, "2 of 4 slots busy; last claim 01:01:01 UTC (reservation 42)", "status after a claim");

    unsetenv("NOTIFY_SOCKET");
    setenv("WATCHDOG_USEC", "3000000", 1);
    sdnotify_init();
    sdnotify_claimed(1, 5);
    sdnotify_tick(1, 2);
    ok(sdnotify_next_due() == 0, "no NOTIFY_SOCKET: no watchdog due, calls are no-ops");
    return done_testing();
}
