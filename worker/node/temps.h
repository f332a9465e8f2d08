/* temps.h: recorded temp files on a node (issue #12 item 4, "Names").
 *
 * A worker writes every file it makes on a node under a temp name first
 * (names_temp: "<final>.tmp-vcl+<16 random hex digits>", and "<that>-conv"
 * for a conversion) and renames it into place once checked. Each temp name
 * is recorded in the database (vcl.temp_file, fenced on the job's lease)
 * BEFORE the file is created, and forgotten after it was renamed or
 * removed. A stale-temp cleanup removes only recorded temps whose owner's
 * lease is gone, and forgets them; a file that merely has the temp form
 * (planted, or left by an older worker) is left alone and logged at info.
 * SIGKILL at any instant: a record without a file is harmless (the next
 * cleanup forgets it); a file is never created unrecorded.
 *
 * The database side is reached through callbacks (op_common.c fills them
 * from job_db.h's job_temp_*), so node code and unit tests need no
 * connection. */
#ifndef VCL_TEMPS_H
#define VCL_TEMPS_H
#include <stdbool.h>
#include <stddef.h>
#include "base/error.h"
#include "node/transport.h"

typedef struct node_temps {
    /* Record path for the job's lease; false (e: LOST when fenced out) =
     * create nothing. */
    bool (*record)(void *opaque, const char *path, vcl_error *e);
    /* Forget path (renamed or removed). */
    bool (*forget)(void *opaque, const char *path, vcl_error *e);
    /* The recorded temps of final whose owner's lease is gone (*paths
     * malloc'd, util_strv_free). */
    bool (*stale)(void *opaque, const char *final, char ***paths, size_t *n, vcl_error *e);
    void *opaque;
} node_temps;

/* A new random temp name of final (names_temp) plus suffix ("" or "-conv")
 * into out (size bytes), not recorded yet. false + permanent e when it does
 * not fit or no random bytes. */
bool temps_name(const char *final, const char *suffix, char *out, size_t size, vcl_error *e);
/* Record path before it is created. tt NULL (unit tests): nothing recorded. */
bool temps_record(const node_temps *tt, const char *path, vcl_error *e);
/* Done with path: remove the file first when remove is true, then forget
 * it. Failures are logged, not returned: a record left behind is forgotten
 * by the next cleanup, a file left behind is removed by it. */
void temps_done(vcl_transport *t, const node_temps *tt, const char *path, bool remove);
/* Remove the stale recorded temps of final (on t) and forget them; log at
 * info, once each, any other file next to final with the temp form
 * (names_is_temp), which stays. Call it only where nobody else can be
 * writing a temp of final under a live lease it does not hold (the image
 * lock; one job per computer for a COW), though a live owner's temp is
 * never listed as stale anyway. */
bool temps_remove_stale(vcl_transport *t, const node_temps *tt, const char *final, vcl_error *e);
#endif
