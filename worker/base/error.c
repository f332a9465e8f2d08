/* error.c: see error.h. */
#include "base/error.h"

#include <stdarg.h>
#include <string.h>

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
    return false;
}
