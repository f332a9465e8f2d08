/* test_hvdriver.c: the driver registry with the real modules from
 * lib/vcl-worker/drivers (built by `make`), refused modules built here from
 * tests/unit/fixtures/bad_abi.c when a C compiler is installed, the host
 * services, and selection against libvirt's test:///default (whose only
 * domain type is "test") and, when a libvirtd answers, qemu:///system. */
#include "tap.h"
#include "node/hvdriver.h"
#include "node/image.h"
#include "node/transport.h"
#include "base/error.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

static char root[PATH_MAX];        /* source tree */
static char drivers_dir[PATH_MAX];
static char tmp[] = "/tmp/vclw-hvdriver-XXXXXX";
static vcl_transport *T;

static void quiet_libvirt(void *opaque, virErrorPtr err)
{
    (void)opaque;
    (void)err;
}

static void find_root(void)
{
    if (access("drivers/driver.h", F_OK) == 0) {
        snprintf(root, sizeof root, ".");
    } else {
        /* <root>/build/tests/test_hvdriver */
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = '\0';
        char *d = dirname(dirname(dirname(exe)));
        snprintf(root, sizeof root, "%s", d);
    }
    const char *env = getenv("VCL_DRIVERS_DIR");
    if (env && *env)
        snprintf(drivers_dir, sizeof drivers_dir, "%s", env);
    else
        snprintf(drivers_dir, sizeof drivers_dir, "%s/lib/vcl-worker/drivers", root);
}

static bool run(const char *const argv[])
{
    vcl_error e;
    vcl_error_clear(&e);
    bool r = transport_run(T, argv, 120, VCL_ERR_RETRYABLE, NULL, &e);
    if (!r)
        diag("%s", e.msg);
    return r;
}

static void test_load_real(void)
{
    vcl_error e;
    hvdriver_set *s = NULL;
    char *order[] = { "kvm", "qemu" };

    vcl_error_clear(&e);
    ok(hvdriver_load_all(drivers_dir, order, 2, &s, &e), "load the built drivers from %s", drivers_dir);
    if (!s) {
        diag("%s (run `make` first)", e.msg);
        return;
    }
    ok(hvdriver_count(s) >= 2, "at least two drivers (%zu)", hvdriver_count(s));
    const vcl_driver_ops *kvm = hvdriver_get(s, 0), *qemu = hvdriver_get(s, 1);
    ok(kvm && qemu, "two drivers");
    if (!kvm || !qemu) {
        hvdriver_set_free(s);
        return;
    }
    is_str(kvm->name, "kvm", "first in order: kvm");
    is_str(qemu->name, "qemu", "second in order: qemu");
    ok(hvdriver_get(s, hvdriver_count(s)) == NULL, "get past the end: NULL");
    is_int(kvm->abi_version, VCL_DRIVER_ABI_VERSION, "kvm ABI version");
    is_int(qemu->abi_version, VCL_DRIVER_ABI_VERSION, "qemu ABI version");
    ok(kvm->description && kvm->description[0], "kvm has a description");
    ok(kvm->initialize && kvm->domain_type && kvm->disk_driver_name && kvm->disk_format &&
       kvm->disk_extension && kvm->extend_domain_xml && kvm->pre_define, "kvm fills every op");
    ok(qemu->initialize && qemu->domain_type && qemu->disk_driver_name && qemu->disk_format &&
       qemu->disk_extension && qemu->extend_domain_xml && qemu->pre_define, "qemu fills every op");
    is_str(kvm->domain_type(0), "kvm", "kvm domain type");
    is_str(qemu->domain_type(0), "qemu", "qemu domain type (TCG)");
    is_str(kvm->disk_driver_name(0), "qemu", "kvm disk driver");
    is_str(kvm->disk_format(0), "qcow2", "kvm disk format");
    is_str(kvm->disk_extension(0), "qcow2", "kvm disk extension");
    is_str(qemu->disk_format(0), "qcow2", "qemu disk format");
    vcl_error_clear(&e);
    ok(kvm->extend_domain_xml(hvdriver_host(), NULL, NULL, 0, &e), "extend_domain_xml is a no-op");
    vcl_error_clear(&e);
    ok(!kvm->pre_define(hvdriver_host(), NULL, 0, &e) && e.cls == VCL_ERR_PERMANENT, "pre_define without a load");
    hvdriver_set_free(s);

    /* Order: listed first, then the rest alphabetically. */
    char *order2[] = { "qemu", "no-such-driver" };
    s = NULL;
    ok(hvdriver_load_all(drivers_dir, order2, 2, &s, &e), "load with order qemu");
    is_str(hvdriver_get(s, 0) ? hvdriver_get(s, 0)->name : NULL, "qemu", "qemu first");
    is_str(hvdriver_get(s, 1) ? hvdriver_get(s, 1)->name : NULL, "kvm", "kvm after (not listed)");
    hvdriver_set_free(s);
    s = NULL;
    ok(hvdriver_load_all(drivers_dir, NULL, 0, &s, &e), "load without an order");
    is_str(hvdriver_get(s, 0) ? hvdriver_get(s, 0)->name : NULL, "kvm", "alphabetical: kvm");
    hvdriver_set_free(s);

    s = NULL;
    vcl_error_clear(&e);
    ok(!hvdriver_load_all("/nonexistent/vclw-drivers", order, 2, &s, &e) && !s, "missing dir: false");
    is_int(e.cls, VCL_ERR_PERMANENT, "missing dir: permanent");
    ok(strstr(e.msg, "/nonexistent/vclw-drivers") != NULL, "message names the dir");

    hvdriver_set_free(NULL);
    is_int(hvdriver_count(NULL), 0, "count of NULL");
}

static bool build_fixture(const char *out, const char *define, const char *define2)
{
    char src[PATH_MAX], inc1[PATH_MAX + 2], inc2[PATH_MAX + 2];
    snprintf(src, sizeof src, "%s/tests/unit/fixtures/bad_abi.c", root);
    snprintf(inc1, sizeof inc1, "-I%s/drivers", root);
    snprintf(inc2, sizeof inc2, "-I%s/worker", root);
    const char *argv[] = { "cc", "-shared", "-fPIC", "-std=c11", inc1, inc2, define ? define : "-DFIXTURE",
                           define2 ? define2 : "-DFIXTURE2", "-o", out, src, NULL };
    return run(argv);
}

static void test_refused(void)
{
    vcl_error e;
    char d[PATH_MAX], p[PATH_MAX], target[PATH_MAX];
    hvdriver_set *s = NULL;

    transport_result r = { 0 };
    const char *v[] = { "cc", "--version", NULL };
    vcl_error_clear(&e);
    if (!transport_exec(T, v, 10, &r, &e) || r.status != 0) {
        transport_result_clear(&r);
        diag("no C compiler: skipping the refused-module checks");
        return;
    }
    transport_result_clear(&r);

    snprintf(d, sizeof d, "%s/mods", tmp);
    ok(transport_mkdir_p(T, d, 0755, &e), "module dir");

    /* Only a module with a wrong ABI: nothing usable. */
    snprintf(p, sizeof p, "%s/bad_abi.so", d);
    ok(build_fixture(p, NULL, NULL), "bad_abi.so built");
    vcl_error_clear(&e);
    ok(!hvdriver_load_all(d, NULL, 0, &s, &e) && !s, "a dir with only a wrong-ABI module: false");
    is_int(e.cls, VCL_ERR_PERMANENT, "permanent");
    ok(strstr(e.msg, "no usable hypervisor driver") && strstr(e.msg, "1 refused"), "message: %.300s", e.msg);

    /* Add the real ones, one without the entry symbol, a duplicate name,
     * and a file that is not a shared object at all. */
    snprintf(p, sizeof p, "%s/no_entry.so", d);
    ok(build_fixture(p, "-DFIXTURE_NO_ENTRY", NULL), "no_entry.so built");
    snprintf(p, sizeof p, "%s/zz-dup-kvm.so", d);
    ok(build_fixture(p, "-DFIXTURE_NAME=\"kvm\"", "-DFIXTURE_ABI=VCL_DRIVER_ABI_VERSION"), "zz-dup-kvm.so built");
    snprintf(p, sizeof p, "%s/junk.so", d);
    ok(transport_write_file(T, p, "not an ELF\n", 11, 0644, &e), "junk.so written");
    snprintf(p, sizeof p, "%s/README", d);
    transport_write_file(T, p, "x", 1, 0644, &e);
    const char *names[] = { "kvm.so", "qemu.so" };
    for (size_t i = 0; i < 2; i++) {
        char abs_target[PATH_MAX];
        snprintf(target, sizeof target, "%s/%s", drivers_dir, names[i]);
        if (!realpath(target, abs_target))
            snprintf(abs_target, sizeof abs_target, "%s", target);
        snprintf(p, sizeof p, "%s/%s", d, names[i]);
        ok(symlink(abs_target, p) == 0, "link %s", names[i]);
    }
    vcl_error_clear(&e);
    char *order[] = { "kvm", "qemu" };
    ok(hvdriver_load_all(d, order, 2, &s, &e), "load a dir with refused modules among good ones");
    is_int(hvdriver_count(s), 2, "only kvm and qemu kept");
    is_str(hvdriver_get(s, 0) ? hvdriver_get(s, 0)->name : NULL, "kvm", "kvm (the real one)");
    ok(hvdriver_get(s, 0) && hvdriver_get(s, 0)->initialize != NULL, "the real kvm, not the duplicate");
    is_str(hvdriver_get(s, 1) ? hvdriver_get(s, 1)->name : NULL, "qemu", "qemu");
    hvdriver_set_free(s);
}

static void test_host(void)
{
    const vcl_driver_host *h = hvdriver_host();
    vcl_error e;

    ok(h && h->abi_version == VCL_DRIVER_ABI_VERSION, "host table with the ABI version");
    ok(h->node_path_exists && h->node_supports_domain_type && h->ensure_master && h->ensure_cow && h->log,
       "every host service is there");

    hv_node_handle nh = { .t = T, .conn = NULL };
    vcl_driver_node node = { .name = "n1", .libvirt_uri = "none", .transport = "local", .handle = &nh };
    vcl_error_clear(&e);
    is_int(h->node_path_exists(&node, "/dev/null", &e), 1, "/dev/null exists");
    is_int(h->node_path_exists(&node, "/nonexistent/x", &e), 0, "/nonexistent/x does not");
    vcl_driver_node bare = { .name = "n0" };
    vcl_error_clear(&e);
    is_int(h->node_path_exists(&bare, "/dev/null", &e), -1, "no handle: -1");
    is_int(e.cls, VCL_ERR_PERMANENT, "no handle: permanent");

    vcl_error_clear(&e);
    ok(!h->node_supports_domain_type(&node, "kvm", &e) && e.cls == VCL_ERR_RETRYABLE,
       "no libvirt connection: retryable error");

    vcl_driver_load ld = { .node = &node, .handle = NULL };
    vcl_error_clear(&e);
    ok(!h->ensure_master(&ld, &e) && e.cls == VCL_ERR_PERMANENT, "ensure_master without image_req");
    vcl_error_clear(&e);
    ok(!h->ensure_cow(&ld, &e) && e.cls == VCL_ERR_PERMANENT, "ensure_cow without image_req");
    h->log(0, "host log at debug");
    h->log(9, "host log beyond error is clamped");
}

static void test_select_test_driver(const hvdriver_set *s)
{
    vcl_error e;
    const vcl_driver_host *h = hvdriver_host();
    virConnectPtr conn = virConnectOpen("test:///default");
    ok(conn != NULL, "virConnectOpen test:///default");
    if (!conn)
        return;
    hv_node_handle nh = { .t = T, .conn = conn };
    vcl_driver_node node = { .name = "testnode", .libvirt_uri = "test:///default", .transport = "local",
                             .handle = &nh };

    vcl_error_clear(&e);
    ok(h->node_supports_domain_type(&node, "test", &e), "test:///default offers domain type 'test'");
    vcl_error_clear(&e);
    ok(!h->node_supports_domain_type(&node, "kvm", &e) && e.cls == VCL_ERR_NONE, "but not 'kvm' (no error)");
    ok(!h->node_supports_domain_type(&node, "qemu", &e) && e.cls == VCL_ERR_NONE, "nor 'qemu'");
    ok(!h->node_supports_domain_type(&node, "test' or '1'='1", &e), "the type is a value, not XPath");

    vcl_error_clear(&e);
    const vcl_driver_ops *d = hvdriver_select(s, &node, &e);
    ok(d == NULL, "no driver accepts test:///default");
    is_int(e.cls, VCL_ERR_PERMANENT, "permanent");
    ok(strstr(e.msg, "kvm: ") != NULL, "kvm's reason listed");
    ok(strstr(e.msg, "qemu: libvirt on node testnode does not offer domain type 'qemu'") != NULL,
       "qemu's reason listed");
    ok(strstr(e.msg, "kvm: node testnode has no /dev/kvm") != NULL ||
       strstr(e.msg, "kvm: libvirt on node testnode does not offer domain type 'kvm'") != NULL,
       "kvm's reason is /dev/kvm or the domain type");
    diag("%s", e.msg);

    /* A node whose libvirt does not answer: retryable, not a verdict. */
    hv_node_handle dead = { .t = T, .conn = NULL };
    vcl_driver_node dnode = node;
    dnode.handle = &dead;
    vcl_error_clear(&e);
    ok(hvdriver_select(s, &dnode, &e) == NULL && e.cls == VCL_ERR_RETRYABLE, "unreachable libvirt: retryable");
    virConnectClose(conn);
}

static void test_select_real(const hvdriver_set *s)
{
    vcl_error e;
    const vcl_driver_host *h = hvdriver_host();
    virConnectPtr conn = virConnectOpen("qemu:///system");
    if (!conn) {
        const char *m = virGetLastErrorMessage();
        diag("qemu:///system not available (%s): skipping the real libvirt checks", m ? m : "?");
        return;
    }
    hv_node_handle nh = { .t = T, .conn = conn };
    vcl_driver_node node = { .name = "localhost", .libvirt_uri = "qemu:///system", .transport = "local",
                             .handle = &nh };
    vcl_error_clear(&e);
    bool qemu = h->node_supports_domain_type(&node, "qemu", &e);
    vcl_error_clear(&e);
    bool kvm = h->node_supports_domain_type(&node, "kvm", &e);
    bool devkvm = access("/dev/kvm", F_OK) == 0;
    diag("qemu:///system offers qemu=%d kvm=%d; /dev/kvm %s", qemu, kvm, devkvm ? "present" : "absent");
    ok(qemu, "real libvirt offers domain type 'qemu'");
    vcl_error_clear(&e);
    const vcl_driver_ops *d = hvdriver_select(s, &node, &e);
    ok(d != NULL, "a driver accepts the local node");
    if (d)
        is_str(d->name, (kvm && devkvm) ? "kvm" : "qemu", "kvm when accelerated, else qemu");
    virConnectClose(conn);
}

/* The driver's pre_define through the worker's services, with real qemu-img. */
static void test_pre_define(const hvdriver_set *s)
{
    vcl_error e;
    transport_result r = { 0 };
    const char *v[] = { "qemu-img", "--version", NULL };
    if (!transport_exec(T, v, 10, &r, &e) || r.status != 0) {
        transport_result_clear(&r);
        diag("qemu-img not available: skipping pre_define");
        return;
    }
    transport_result_clear(&r);

    char repo[PATH_MAX], src[PATH_MAX], master[PATH_MAX], cow[PATH_MAX];
    snprintf(repo, sizeof repo, "%s/repo", tmp);
    snprintf(src, sizeof src, "%s/centos9.qcow2", repo);
    snprintf(master, sizeof master, "%s/images/centos9.qcow2", tmp);
    snprintf(cow, sizeof cow, "%s/vms/vclv9-1_3-v2.qcow2", tmp);
    transport_mkdir_p(T, repo, 0755, &e);
    const char *mk[] = { "qemu-img", "create", "-q", "-f", "qcow2", "--", src, "8M", NULL };
    ok(run(mk), "repository image");
    const char *repos[] = { repo };
    image_req req = {
        .t = T, .master_path = master, .cow_path = cow, .file_stem = "centos9", .disk_format = "qcow2",
        .repo_paths = repos, .n_repo = 1, .reservation_id = 5, .command_timeout_s = 60,
    };
    hv_node_handle nh = { .t = T, .conn = NULL };
    vcl_driver_node node = { .name = "n1", .transport = "local", .handle = &nh };
    vcl_driver_load ld = { .node = &node, .computer = "vclv9-1", .reservation_id = 5, .file_stem = "centos9",
                           .master_path = master, .cow_path = cow, .disk_format = "qcow2", .handle = &req };
    const vcl_driver_ops *qemu = NULL;
    for (size_t i = 0; i < hvdriver_count(s); i++)
        if (strcmp(hvdriver_get(s, i)->name, "qemu") == 0)
            qemu = hvdriver_get(s, i);
    if (!qemu)
        return;
    vcl_error_clear(&e);
    ok(qemu->pre_define(hvdriver_host(), &ld, 0, &e), "qemu pre_define: master + COW");
    if (e.cls != VCL_ERR_NONE)
        diag("%s", e.msg);
    qimg_info q;
    ok(qimg_info_get(T, cow, &q, &e) && strcmp(q.backing_file, master) == 0, "COW backed by the master");
    ok(qemu->pre_define(hvdriver_host(), &ld, 0, &e), "pre_define again (idempotent)");

    vcl_driver_load raw = ld;
    raw.disk_format = "raw";
    vcl_error_clear(&e);
    ok(!qemu->pre_define(hvdriver_host(), &raw, 0, &e) && e.cls == VCL_ERR_PERMANENT,
       "a disk format the driver does not use is refused");
}

int main(void)
{
    vcl_error e;
    virSetErrorFunc(NULL, quiet_libvirt);
    find_root();
    T = transport_new("local", NULL, &e);
    if (!T || !mkdtemp(tmp)) {
        printf("Bail out! setup: %s\n", strerror(errno));
        return 1;
    }

    test_load_real();
    test_refused();
    test_host();

    hvdriver_set *s = NULL;
    char *order[] = { "kvm", "qemu" };
    if (hvdriver_load_all(drivers_dir, order, 2, &s, &e)) {
        test_select_test_driver(s);
        test_select_real(s);
        test_pre_define(s);
        hvdriver_set_free(s);
    }

    const char *rm[] = { "rm", "-rf", "--", tmp, NULL };
    run(rm);
    transport_free(T);
    return done_testing();
}
