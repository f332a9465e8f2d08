/* journal.c: events to systemd's journal through libsystemd; see journal.h. */
#include "base/journal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

bool journal_parse_stream(const char *s, unsigned long long *dev, unsigned long long *ino)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long d = strtoull(s, &end, 10);
    if (errno || *end != ':' || end[1] < '0' || end[1] > '9')
        return false;
    unsigned long long i = strtoull(end + 1, &end, 10);
    if (errno || *end)
        return false;
    *dev = d;
    *ino = i;
    return true;
}

bool journal_stderr_is_journal(void)
{
    unsigned long long dev, ino;
    struct stat st;
    if (!journal_parse_stream(getenv("JOURNAL_STREAM"), &dev, &ino))
        return false;
    if (fstat(2, &st) != 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

/* The fields live in one buffer; each iovec points into it. A field that
 * does not fit whole is cut (the journal takes any length, the buffer is
 * what bounds us: MESSAGE is at most log.c's 2 KiB anyway). */
enum { JOURNAL_FIELDS = 10, JOURNAL_BUF = 4096 };

typedef struct {
    struct iovec iov[JOURNAL_FIELDS];
    int n;
    char buf[JOURNAL_BUF];
    size_t used;
} field_list;

static void add(field_list *l, const char *key, const char *value)
{
    if (!value || !value[0] || l->n >= JOURNAL_FIELDS || l->used >= sizeof l->buf)
        return;
    size_t room = sizeof l->buf - l->used;
    int len = snprintf(l->buf + l->used, room, "%s=%s", key, value);
    if (len < 0)
        return;
    size_t n = (size_t)len < room ? (size_t)len : room - 1;
    l->iov[l->n].iov_base = l->buf + l->used;
    l->iov[l->n].iov_len = n;
    l->n++;
    l->used += n + 1;
}

bool journal_send(const journal_event *ev)
{
    field_list l;
    char prio[4], res[24];
    l.n = 0;
    l.used = 0;
    snprintf(prio, sizeof prio, "%d", ev->priority);
    add(&l, "MESSAGE", ev->message ? ev->message : "");
    add(&l, "PRIORITY", prio);
    add(&l, "SYSLOG_IDENTIFIER", ev->identifier);
    add(&l, "WORKER", ev->worker);
    if (ev->reservation) {
        snprintf(res, sizeof res, "%lld", ev->reservation);
        add(&l, "RESERVATION", res);
    }
    add(&l, "COMPUTER", ev->computer);
    add(&l, "NODE", ev->node);
    add(&l, "STAGE", ev->stage);
    add(&l, "OPERATION", ev->operation);
    return sd_journal_sendv(l.iov, l.n) >= 0;
}
