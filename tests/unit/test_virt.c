/* test_virt.c: virt_uri_check (the URIs the worker accepts), then
 * virt_open's connect timeout, without a daemon. A libvirt "daemon" that
 * accepts the connection and never answers (a listening TCP socket on
 * loopback nobody reads, reached with qemu+libssh2://: the kernel completes
 * the connect, the ssh handshake waits forever) makes virt_open give up after
 * the connect timeout, retryable, naming the URI; a port nobody listens on
 * fails at once; the attempt given up on ends by itself once the socket goes
 * away. (qemu+unix:// with socket= is refused by virt_uri_check now.) */
#include "node/virt.h"
#include "base/error.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
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
    /* virt_uri_check: accepted and refused, before any connect */
    static const char *const good[] = {
        "qemu:///system", "qemu:///session", "test:///default", "test:///tmp/w/fixture.xml",
        "qemu+libssh2://root@kvm2.example.org:22/system?keyfile=/etc/vcl-worker/id_ed25519"
        "&known_hosts=/etc/vcl-worker/known_hosts&sshauth=privkey",
        "qemu+libssh2://u@127.0.0.1:2222/session?known_hosts_verify=normal",
        "qemu+ssh://node1/system", "qemu+libssh2://[::1]:22/system",
    };
    static const struct { const char *uri, *why; } bad[] = {
        { "qemu+ext:///system?command=/bin/touch", "are supported" },
        { "qemu+libssh2://h/system?command=/bin/sh", "'command' is not allowed" },
        { "qemu+ssh://h/system?netcat=/tmp/nc", "'netcat' is not allowed" },
        { "qemu+unix:///system?socket=/tmp/s", "are supported" },
        { "qemu:///system?socket=/tmp/s", "are supported" },
        { "qemu+tcp://h/system", "are supported" },
        { "qemu+tls://h/system", "are supported" },
        { "qemu+libssh2://h/system?no_verify=1", "'no_verify' is not allowed" },
        { "qemu+libssh2://h/system?known_hosts_verify=ignore", "would not verify" },
        { "qemu+libssh2://h/system?known_hosts_verify=auto", "would not verify" },
        { "qemu+libssh2://h/system?%63ommand=/bin/sh", "one of #" },
        { "qemu+libssh2://h/system;command=x", "one of #" },
        { "qemu+libssh2://h/system?keyfile=relative/key", "absolute" },
        { "qemu+libssh2://h/system?keyfile=/etc/../root/key", "without '.'" },
        { "qemu+libssh2://-oProxyCommand=x/system", "host part" },
        { "qemu+libssh2://h/other", "/system or /session" },
        { "test:///default?x=1", "no query" },
        { "qemu+libssh2://h/system?keyfile=/k\x1b[2J", "control" },
        { "", "no libvirt URI" },
    };
    vcl_error e;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        vcl_error_clear(&e);
        ok(virt_uri_check(good[i], &e), "URI accepted: %s (%s)", good[i], e.msg);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vcl_error_clear(&e);
        ok(!virt_uri_check(bad[i].uri, &e) && e.cls == VCL_ERR_PERMANENT &&
               strstr(e.msg, bad[i].why),
           "URI refused: %s (%s)", bad[i].uri, e.msg);
    }
    virt_set_ssh_keyfile("/etc/vcl-worker/id_ed25519");
    vcl_error_clear(&e);
    ok(virt_uri_check("qemu+libssh2://h/system?keyfile=/etc/vcl-worker/id_ed25519", &e),
       "keyfile = the configured key: accepted (%s)", e.msg);
    vcl_error_clear(&e);
    ok(!virt_uri_check("qemu+libssh2://h/system?keyfile=/root/.ssh/id_rsa", &e) &&
           strstr(e.msg, "not the configured ssh_private_key"),
       "another keyfile: refused (%s)", e.msg);
    vcl_error_clear(&e);
    ok(!virt_open("qemu+ext:///system?command=/bin/true", &e) && e.cls == VCL_ERR_PERMANENT &&
           strstr(e.msg, "refused"),
       "virt_open refuses before connecting, permanent (%s)", e.msg);
    virt_set_ssh_keyfile(NULL);

    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t slen = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ok(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 16) == 0 &&
           getsockname(fd, (struct sockaddr *)&sa, &slen) == 0,
       "a TCP socket that accepts connections and never answers");
    char port[16];
    snprintf(port, sizeof port, "%d", ntohs(sa.sin_port));

    char uri[PATH_MAX + 64];
    snprintf(uri, sizeof uri,
             "qemu+libssh2://root@127.0.0.1:%s/system?keyfile=%s/key&known_hosts=%s/known_hosts"
             "&sshauth=privkey", port, dir, dir);
    virt_set_connect_timeout(2);
    vcl_error_clear(&e);
    double t0 = now_s();
    virConnectPtr c = virt_open(uri, &e);
    double took = now_s() - t0;
    ok(c == NULL, "no connection to a daemon that never answers");
    ok(e.cls == VCL_ERR_RETRYABLE, "retryable");
    ok(strstr(e.msg, "did not answer within 2 s (connecting)") && strstr(e.msg, port),
       "the error says so and names the URI (%s)", e.msg);
    ok(took >= 1.9 && took < 10, "given up after the connect timeout (%.1f s)", took);

    char none[PATH_MAX + 64];
    /* a port nobody listens on: the one of a socket bound and closed */
    int fd2 = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sb = { .sin_family = AF_INET };
    sb.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sblen = sizeof sb;
    if (fd2 < 0 || bind(fd2, (struct sockaddr *)&sb, sizeof sb) != 0 ||
        getsockname(fd2, (struct sockaddr *)&sb, &sblen) != 0)
        return printf("Bail out! no second socket\n"), 1;
    close(fd2);
    snprintf(none, sizeof none, "qemu+libssh2://root@127.0.0.1:%d/system?keyfile=%s/key",
             ntohs(sb.sin_port), dir);
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
