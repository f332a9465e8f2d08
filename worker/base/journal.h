/* journal.h: events to systemd's journal, with fields.
 *
 * When systemd connects a service's stderr to the journal it sets
 * JOURNAL_STREAM to "DEVICE:INODE" of that stream (systemd.exec(5)). If fd 2
 * is still that stream (same device and inode: not redirected since),
 * journal_stderr_is_journal() says so and log.c sends each event through
 * sd_journal_sendv() instead of writing a logfmt/JSON line: PRIORITY= from
 * the level, and RESERVATION=, COMPUTER=, NODE=, STAGE=, OPERATION=,
 * WORKER= from the log context, so `journalctl -u vcl-worker RESERVATION=42`
 * and `journalctl -p warning` work. Anywhere else (a terminal, a file, a pipe,
 * systemd-run --pipe) nothing changes. */
#ifndef VCL_JOURNAL_H
#define VCL_JOURNAL_H
#include <stdbool.h>

/* "DEVICE:INODE" (decimal, as systemd writes it) into its two numbers. */
bool journal_parse_stream(const char *s, unsigned long long *dev, unsigned long long *ino);

/* Is fd 2 the stream JOURNAL_STREAM names? */
bool journal_stderr_is_journal(void);

/* One event. Fields that are NULL, empty or 0 are left out. */
typedef struct {
    int priority;             /* syslog(3): LOG_DEBUG 7, LOG_INFO 6, LOG_WARNING 4, LOG_ERR 3 */
    const char *message;
    const char *identifier;   /* SYSLOG_IDENTIFIER= (journalctl -t) */
    const char *worker;
    long long reservation;
    const char *computer;
    const char *node;
    const char *stage;
    const char *operation;
} journal_event;

/* Send it (sd_journal_sendv). false when the journal did not take it: the
 * caller writes the line to stderr instead. */
bool journal_send(const journal_event *ev);
#endif
