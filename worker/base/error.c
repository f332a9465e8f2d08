/* error.c: see error.h. */
#include "base/error.h"
#include "base/util.h"

#include <stdarg.h>
#include <string.h>

/* Every message is valid UTF-8: a byte that does not start a well-formed
 * sequence becomes '?'. Messages quote values cut by byte count ("%.128s")
 * and text from nodes; last_error is a PostgreSQL text column, which
 * refuses the whole vcl.fail call for one bad byte (the failure would not
 * be recorded at all). */
static void msg_utf8(char *s)
{
    for (unsigned char *p = (unsigned char *)s; *p;) {
        size_t n = util_utf8_len(p);
        if (n == 0) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

const char *vcl_err_class_name(vcl_err_class c)
{
    static const char *const names[VCL_ERR__COUNT] = { "none", "retryable", "permanent", "lost" };
    return (c >= 0 && c < VCL_ERR__COUNT) ? names[c] : "?";
}

void vcl_error_clear(vcl_error *e)
{
    if (!e)
        return;
    e->cls = VCL_ERR_NONE;
    e->msg[0] = '\0';
}

bool vcl_error_set(vcl_error *e, vcl_err_class cls, const char *fmt, ...)
{
    if (!e)
        return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    msg_utf8(e->msg);
    e->cls = cls;
    return false;
}

bool vcl_error_prefix(vcl_error *e, const char *fmt, ...)
{
    if (!e)
        return false;
    char pre[512], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    size_t pl = strlen(pre), cap = sizeof e->msg - 1;
    if (pl > cap - 2)
        pl = cap - 2;
    memcpy(e->msg, pre, pl);
    memcpy(e->msg + pl, ": ", 2);
    size_t ol = strnlen(old, sizeof old - 1);
    if (ol > cap - pl - 2)
        ol = cap - pl - 2;
    memcpy(e->msg + pl + 2, old, ol);
    e->msg[pl + 2 + ol] = '\0';
    msg_utf8(e->msg);
    return false;
}
