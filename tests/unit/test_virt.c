/* test_virt.c: virt_open's connect timeout, without a daemon. A libvirt
 * "daemon" that accepts the connection and never answers (a listening unix
 * socket nobody reads: the kernel completes the connect, libvirt's open
 * request waits forever) makes virt_open give up after the connect timeout,
 * retryable, naming the URI; a socket nobody listens on fails at once; the
 * attempt given up on ends by itself once the socket goes away. */
#include "virt.h"
#include "error.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tap.h"
static char dir[] = "/tmp/vcl-virt-test.XXXXXX";
#include "helpers.h"

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/silent.sock", dir);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ok(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 16) == 0,
       "a unix socket that accepts connections and never answers");

    char uri[PATH_MAX + 64];
    snprintf(uri, sizeof uri, "qemu+unix:///system?socket=%s", sa.sun_path);
    virt_set_connect_timeout(2);
    vcl_error e;
    vcl_error_clear(&e);
    double t0 = now_s();
    virConnectPtr c = virt_open(uri, &e);
    double took = now_s() - t0;
    ok(c == NULL, "no connection to a daemon that never answers");
    ok(e.cls == VCL_ERR_RETRYABLE, "retryable");
    ok(strstr(e.msg, "did not answer within 2 s (connecting)") && strstr(e.msg, sa.sun_path),
       "the error says so and names the URI (%s)", e.msg);
    ok(took >= 1.9 && took < 10, "given up after the connect timeout (%.1f s)", took);

    char none[PATH_MAX + 64];
    snprintf(none, sizeof none, "qemu+unix:///system?socket=%s/nobody.sock", dir);
    vcl_error_clear(&e);
    t0 = now_s();
    c = virt_open(none, &e);
    took = now_s() - t0;
    ok(c == NULL && e.cls == VCL_ERR_RETRYABLE && strstr(e.msg, "cannot connect to libvirt at"),
       "nothing listening: fails at once, retryable (%s)", e.msg);
    ok(took < 2, "at once (%.2f s)", took);

    /* The socket goes away: the attempt given up on gets its answer (a reset
     * connection) and its thread ends; a new open fails at once again. */
    close(fd);
    unlink(sa.sun_path);
    usleep(300 * 1000);
    vcl_error_clear(&e);
    t0 = now_s();
    c = virt_open(uri, &e);
    ok(c == NULL && now_s() - t0 < 2, "after the socket is gone: fails at once (%s)", e.msg);

    virt_set_connect_timeout(0);
    vcl_error_clear(&e);
    c = virt_open(none, &e);
    ok(c == NULL && strstr(e.msg, "cannot connect to libvirt at"),
       "without a connect timeout: the same error (%s)", e.msg);
    rmdir(dir);
    return done_testing();
}
