/* error.h: the one error value every module fills in.
 * An error is either retryable (node unreachable, libvirt busy, lost DB
 * connection: try again later) or permanent (bad name, image missing
 * everywhere: fail the reservation at once). The message is what an operator
 * reads on the reservation, so it says what failed and, where it helps, what
 * to do.
 *
 * A third outcome is neither: LOST, "this worker no longer holds the
 * lease". A fenced write (job_fenced_ok, every job_* and job_db write) that
 * matched no row sets it: the reservation was taken over, cancelled or
 * finished meanwhile, so the caller stops quietly and writes nothing more
 * about the job (the stage engine returns STAGE_RUN_LOST; the pool logs
 * "lease lost" and leaves the row to whoever holds it now). Class NONE is
 * only ever "no error". */
#ifndef VCL_ERROR_H
#define VCL_ERROR_H
#include <stdbool.h>
#include <stdio.h>

typedef enum {
    VCL_ERR_NONE = 0,
    VCL_ERR_RETRYABLE,
    VCL_ERR_PERMANENT,
    VCL_ERR_LOST,          /* fenced out: this worker no longer holds the lease */
    VCL_ERR__COUNT
} vcl_err_class;

typedef struct vcl_error {
    vcl_err_class cls;
    char msg[1024];
} vcl_error;

const char *vcl_err_class_name(vcl_err_class c);
void vcl_error_clear(vcl_error *e);
/* Set cls and msg (printf style). Returns false, so `return vcl_error_set(...)` works. */
bool vcl_error_set(vcl_error *e, vcl_err_class cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prepend context: "ctx: old message"; keeps the class. Returns false. */
bool vcl_error_prefix(vcl_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#endif
