/* test_nodecheck.c: the pure items of the node check (no node, no libvirt):
 * "disk dirs" (the COW directory is not the master image directory) and
 * the name test it relies on (names_dir_inside). */
#include <string.h>

#include "base/names.h"
#include "node/nodecheck.h"
#include "tap.h"

static void test_dir_inside(void)
{
    ok(names_dir_inside("/a/b/c", "/a/b"), "/a/b/c is inside /a/b");
    ok(names_dir_inside("/a/b/c/", "/a/b/"), "trailing '/' ignored");
    ok(names_dir_inside("/a", "/"), "everything is inside /");
    ok(!names_dir_inside("/a/bc", "/a/b"), "/a/bc is not inside /a/b");
    ok(!names_dir_inside("/a/b", "/a/b/"), "a directory is not inside itself");
    ok(!names_dir_inside("/a", "/a/b"), "nor inside its own child");
    ok(!names_dir_inside("/", "/"), "/ is not inside /");
}

static void test_disk_dirs(void)
{
    node_check_item it;

    memset(&it, 0, sizeof it);
    node_check_disk_dirs("/srv/vcl/master", "/srv/vcl/master", &it);
    ok(!it.ok, "cow_dir == master dir fails");
    ok(strstr(it.detail, "is the master image directory") != NULL, "and says why: %s", it.detail);
    ok(strstr(it.fix, "--cow-dir /srv/vcl/master/vcl-cow") != NULL, "the fix sets cow_dir: %s", it.fix);

    memset(&it, 0, sizeof it);
    node_check_disk_dirs("/srv/vcl/master/", "/srv/vcl/master", &it);
    ok(!it.ok, "a trailing '/' does not make them apart");

    memset(&it, 0, sizeof it);
    node_check_disk_dirs("/var/lib/libvirt/images", "/var/lib/libvirt/images/vcl-cow", &it);
    ok(it.ok, "the default layout (vcl-cow inside the images directory) passes");
    ok(strstr(it.detail, "one inside the other") != NULL, "with a note: %s", it.detail);

    memset(&it, 0, sizeof it);
    node_check_disk_dirs("/srv/m", "/srv/c", &it);
    ok(it.ok, "separate directories pass");
    is_str(it.fix, "", "with no fix");

    memset(&it, 0, sizeof it);
    node_check_disk_dirs(NULL, "/srv/c", &it);
    ok(!it.ok, "a missing directory fails");
}

int main(void)
{
    test_dir_inside();
    test_disk_dirs();
    return done_testing();
}
