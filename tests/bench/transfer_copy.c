/* transfer_copy: one transport_copy_in over ssh, timed (used by
 * tests/bench/transfer; not a test). Prints the seconds it took on stdout.
 *   transfer_copy SRC DST    with VCL_SSH_PORT, VCL_SSH_KEY, VCL_SSH_KNOWN_HOSTS
 *                            (host 127.0.0.1, user root; VCL_SSH_HOST/USER override) */
#include "node/transport.h"
#include "base/log.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>

static void progress(void *opaque, long long done, long long total)
{
    (void)opaque;
    if (getenv("VCL_BENCH_PROGRESS"))
        fprintf(stderr, "  %lld / %lld MiB\n", done >> 20, total >> 20);
}

int main(int argc, char **argv)
{
    if (argc != 3 || !getenv("VCL_SSH_PORT") || !getenv("VCL_SSH_KEY") ||
        !getenv("VCL_SSH_KNOWN_HOSTS")) {
        fprintf(stderr, "usage: VCL_SSH_PORT=.. VCL_SSH_KEY=.. VCL_SSH_KNOWN_HOSTS=.. "
                        "transfer_copy SRC DST\n");
        return 2;
    }
    log_set_level(getenv("VCL_BENCH_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_WARN);
    transport_opts o = { .host = getenv("VCL_SSH_HOST") ? getenv("VCL_SSH_HOST") : "127.0.0.1",
                         .port = atoi(getenv("VCL_SSH_PORT")),
                         .user = getenv("VCL_SSH_USER") ? getenv("VCL_SSH_USER") : "root",
                         .private_key = getenv("VCL_SSH_KEY"),
                         .known_hosts = getenv("VCL_SSH_KNOWN_HOSTS") };
    vcl_error e;
    vcl_error_clear(&e);
    vcl_transport *t = transport_new("ssh", &o, &e);
    if (!t) {
        fprintf(stderr, "transfer_copy: %s\n", e.msg);
        return 1;
    }
    double t0 = util_mono_s();
    bool ok = transport_copy_in(t, argv[1], argv[2], progress, NULL, &e);
    double dt = util_mono_s() - t0;
    transport_free(t);
    if (!ok) {
        fprintf(stderr, "transfer_copy: %s\n", e.msg);
        return 1;
    }
    printf("%.3f\n", dt);
    return 0;
}
