/* test_names.c: strict names, directories, MACs and the node naming scheme. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base/names.h"
#include "tap.h"

/* A string of n copies of c (static buffer, n < 8192). */
static const char *rep(char c, size_t n)
{
    static char buf[8192];
    memset(buf, c, n);
    buf[n] = '\0';
    return buf;
}

static void test_names(void)
{
    static const char *good[] = {
        "a", "Z", "0", "vclv99-197", "win7-base-v3", "a.b_c-d", "a..b", "_x", "x.", "x-",
        "UPPER_lower.123", NULL,
    };
    static const char *bad[] = {
        "", ".hidden", "..", ".", "-rf", "a b", "a/b", "/", "a'b", "a\"b", "$(reboot)", "a;b",
        "a`b`", "a\\b", "a:b", "a*", "a\nb", "a\tb", "caf\xc3\xa9", "\xe2\x80\x8bzw", "a|b",
        "a&b", "a<b", NULL,
    };
    vcl_error e;

    for (int i = 0; good[i]; i++) {
        ok(name_valid(good[i]), "name '%s' is valid", good[i]);
        vcl_error_clear(&e);
        ok(name_check("computer", good[i], &e) && e.cls == VCL_ERR_NONE, "name_check accepts '%s'", good[i]);
    }
    for (int i = 0; bad[i]; i++) {
        ok(!name_valid(bad[i]), "name #%d (%zu bytes) is invalid", i, strlen(bad[i]));
        vcl_error_clear(&e);
        bool r = name_check("computer", bad[i], &e);
        ok(!r && e.cls == VCL_ERR_PERMANENT, "name_check refuses name #%d with a permanent error: %.200s", i,
           e.msg);
        ok(strstr(e.msg, "invalid computer name") != NULL, "message says what: %.200s", e.msg);
    }
    ok(!name_valid(NULL), "NULL is not a valid name");
    bool r = name_check("computer", NULL, &e);
    ok(!r && e.cls == VCL_ERR_PERMANENT, "NULL refused: %.200s", e.msg);

    ok(name_valid(rep('a', 99)), "99 characters valid");
    ok(name_valid(rep('a', NAME_MAX_LEN)), "100 characters valid");
    ok(!name_valid(rep('a', NAME_MAX_LEN + 1)), "101 characters invalid");
    r = name_check("computer", rep('a', 101), &e);
    ok(!r && strstr(e.msg, "101 characters"),
       "too long says the length: %.200s", e.msg);
    ok(strlen(e.msg) < 300, "long value is shortened in the message (%zu bytes)", strlen(e.msg));
    ok(!name_valid(rep('a', 5000)), "5000 characters invalid");

    /* Exact messages: what and why. */
    name_check("computer", "a b", &e);
    is_str(e.msg,
           "invalid computer name 'a b': character ' ' at position 2 is not allowed "
           "(use letters, digits, '.', '_', '-')",
           "message for a space");
    name_check("computer", "", &e);
    is_str(e.msg, "invalid computer name '': it is empty", "message for empty");
    name_check("image file stem", ".x", &e);
    is_str(e.msg, "invalid image file stem name '.x': must not start with '.'", "message for leading dot");
    name_check("computer", "-x", &e);
    is_str(e.msg, "invalid computer name '-x': must not start with '-'", "message for leading dash");
    name_check("computer", "caf\xc3\xa9", &e);
    is_str(e.msg,
           "invalid computer name 'caf\\xc3\\xa9': character '\\xc3' at position 4 is not allowed "
           "(use letters, digits, '.', '_', '-')",
           "non-ASCII bytes shown escaped");
    name_check("computer", "a\nb", &e);
    ok(strchr(e.msg, '\n') == NULL, "no raw newline in a message: %.200s", e.msg);
    name_check("computer", "$(rm -rf /)", &e);
    ok(strstr(e.msg, "'$' at position 1") != NULL, "shell metacharacter named: %.200s", e.msg);

    ok(!name_check("computer", "a b", NULL), "NULL error pointer is tolerated");
}

static void test_dirs(void)
{
    static const char *good[] = {
        "/tmp/vcl", "/tmp/vcl/", "/var/lib/libvirt/images", "/a", "/a/", "/srv/vcl-images_1.0", NULL,
    };
    static const char *bad[] = {
        "", "tmp/vcl", "./x", "/", "//", "/a//b", "/a/b//", "/a/../b", "/..", "/a/..", "/a/./b",
        "/a/.hidden", "/a/b c", "/a/-x", "/a/$(id)", "/a/b;c", "~/x", "/a/\xc3\xa9", NULL,
    };
    vcl_error e;

    for (int i = 0; good[i]; i++) {
        vcl_error_clear(&e);
        ok(dir_check("XML", good[i], &e) && e.cls == VCL_ERR_NONE, "dir '%s' is valid", good[i]);
    }
    for (int i = 0; bad[i]; i++) {
        vcl_error_clear(&e);
        bool r = dir_check("XML", bad[i], &e);
        ok(!r && e.cls == VCL_ERR_PERMANENT, "dir #%d refused: %.200s", i, e.msg);
        ok(strstr(e.msg, "invalid XML directory") != NULL, "message says what");
    }
    bool r = dir_check("XML", NULL, &e);
    ok(!r && e.cls == VCL_ERR_PERMANENT, "NULL dir refused: %.200s", e.msg);

    dir_check("COW disk", "tmp/vcl", &e);
    is_str(e.msg, "invalid COW disk directory 'tmp/vcl': must be an absolute path (start with '/')",
           "relative dir message");
    dir_check("XML", "/a/../b", &e);
    ok(strstr(e.msg, "'..'") != NULL, "'..' named in message: %.200s", e.msg);
    dir_check("XML", "/a//b", &e);
    ok(strstr(e.msg, "empty component") != NULL, "'//' named in message: %.200s", e.msg);

    /* Length bounds: components <= NAME_MAX_LEN, whole < PATH_MAX. */
    char long_dir[PATH_MAX + 8];
    long_dir[0] = '/';
    memcpy(long_dir + 1, rep('a', 100), 101);
    ok(dir_check("XML", long_dir, &e), "100-character component is valid");
    memcpy(long_dir + 1, rep('a', 101), 102);
    r = dir_check("XML", long_dir, &e);
    ok(!r, "101-character component refused: %.200s", e.msg);
    size_t o = 0;
    for (int i = 0; i < (PATH_MAX + 4) / 10; i++, o += 10)
        memcpy(long_dir + o, "/aaaaaaaaa", 10);
    long_dir[o] = '\0';
    r = dir_check("XML", long_dir, &e);
    ok(strlen(long_dir) >= PATH_MAX && !r, "dir of %zu bytes refused: %.120s",
       strlen(long_dir), e.msg);
}

static void test_macs(void)
{
    static const char *good[] = { "52:54:00:ab:cd:ef", "52:54:00:AB:CD:EF", "00:16:3e:00:00:01",
                                  "02:00:00:00:00:00", NULL };
    static const char *bad[] = { "", "52:54:00:ab:cd", "52:54:00:ab:cd:ef:01", "52:54:00:ab:cd:e",
                                 "52-54-00-ab-cd-ef", "5254.00ab.cdef", "52:54:00:ab:cd:eg",
                                 "52:54:00:ab:cd:ef ", " 52:54:00:ab:cd:e", "01:00:5e:00:00:01",
                                 "ff:ff:ff:ff:ff:ff", "53:54:00:ab:cd:ef", "00:00:00:00:00:00",
                                 "52:54:00:ab:cd:'f", NULL };
    vcl_error e;

    for (int i = 0; good[i]; i++) {
        vcl_error_clear(&e);
        ok(mac_check(good[i], &e) && e.cls == VCL_ERR_NONE, "MAC '%s' is valid", good[i]);
    }
    for (int i = 0; bad[i]; i++) {
        vcl_error_clear(&e);
        bool r = mac_check(bad[i], &e);
        ok(!r && e.cls == VCL_ERR_PERMANENT, "MAC '%s' refused: %.200s", bad[i], e.msg);
    }
    ok(!mac_check(NULL, &e) && e.cls == VCL_ERR_PERMANENT, "NULL MAC refused");
    mac_check("01:00:5e:00:00:01", &e);
    ok(strstr(e.msg, "multicast") != NULL, "multicast named: %.200s", e.msg);
}

static void test_build(void)
{
    vcl_names n;
    vcl_error e;

    vcl_error_clear(&e);
    bool r = names_build("vclv99-197", 234, 3, "win7-base-v3", "/tmp/vcl", "/var/lib/libvirt/images",
                         "/var/lib/vcl/masters", "qcow2", &n, &e);
    ok(r, "names_build ok: %.200s", e.msg);
    is_str(n.domain, "vclv99-197:win7-base-v3", "domain name");
    is_str(n.file_base, "vclv99-197_234-v3", "file base");
    is_str(n.xml_path, "/tmp/vcl/vclv99-197_234-v3.xml", "xml path");
    is_str(n.cow_path, "/var/lib/libvirt/images/vclv99-197_234-v3.qcow2", "cow path");
    is_str(n.master_path, "/var/lib/vcl/masters/win7-base-v3.qcow2", "master path");

    ok(names_build("vclv99-37", 234, 23, "win7-base-v3", "/tmp/vcl/", "/images/", "/masters/", "qcow2",
                   &n, &e),
       "names_build with trailing slashes");
    is_str(n.file_base, "vclv99-37_234-v23", "file base (DESIGN.md example)");
    is_str(n.xml_path, "/tmp/vcl/vclv99-37_234-v23.xml", "trailing '/' not doubled (xml)");
    is_str(n.cow_path, "/images/vclv99-37_234-v23.qcow2", "trailing '/' not doubled (cow)");
    is_str(n.master_path, "/masters/win7-base-v3.qcow2", "trailing '/' not doubled (master)");

    ok(names_build("c", 1, 0, "s", "/x", "/y", "/z", "img", &n, &e), "revision 0 is allowed");
    is_str(n.file_base, "c_1-v0", "revision 0 file base");
    is_str(n.cow_path, "/y/c_1-v0.img", "other disk extension");
    ok(names_build("c", 9223372036854775807LL, 2147483647, "s", "/x", "/y", "/z", "qcow2", &n, &e),
       "largest ids fit");
    is_str(n.file_base, "c_9223372036854775807-v2147483647", "largest file base");

    /* Longest names fit in the fixed buffers. */
    char comp[NAME_MAX_LEN + 1], stem[NAME_MAX_LEN + 1], want[512];
    memcpy(comp, rep('c', NAME_MAX_LEN), sizeof comp);
    memcpy(stem, rep('s', NAME_MAX_LEN), sizeof stem);
    ok(names_build(comp, 1, 1, stem, "/x", "/y", "/z", "qcow2", &n, &e), "longest names ok");
    snprintf(want, sizeof want, "%s:%s", comp, stem);
    is_str(n.domain, want, "longest domain name intact");

    /* Each bad input: false, permanent error naming it, output cleared. */
    struct {
        const char *computer;
        long long image_id;
        int revision;
        const char *stem, *xml, *cow, *master, *ext, *expect;
    } bad[] = {
        { "vcl 1", 1, 1, "s", "/x", "/y", "/z", "qcow2", "computer name" },
        { NULL, 1, 1, "s", "/x", "/y", "/z", "qcow2", "computer name" },
        { "../etc", 1, 1, "s", "/x", "/y", "/z", "qcow2", "computer name" },
        { "c", 1, 1, "a/b", "/x", "/y", "/z", "qcow2", "file stem" },
        { "c", 1, 1, "", "/x", "/y", "/z", "qcow2", "file stem" },
        { "c", 1, 1, "s", "x", "/y", "/z", "qcow2", "XML directory" },
        { "c", 1, 1, "s", "/x", "/y/../..", "/z", "qcow2", "COW disk directory" },
        { "c", 1, 1, "s", "/x", "/y", NULL, "qcow2", "master image directory" },
        { "c", 1, 1, "s", "/x", "/y", "/z", ".qcow2", "disk extension" },
        { "c", 1, 1, "s", "/x", "/y", "/z", "", "disk extension" },
        { "c", 1, 1, "s", "/x", "/y", "/z", "q/x", "disk extension" },
        { "c", 0, 1, "s", "/x", "/y", "/z", "qcow2", "image id" },
        { "c", -5, 1, "s", "/x", "/y", "/z", "qcow2", "image id" },
        { "c", 1, -1, "s", "/x", "/y", "/z", "qcow2", "image revision" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&n, 'X', sizeof n);
        vcl_error_clear(&e);
        r = names_build(bad[i].computer, bad[i].image_id, bad[i].revision, bad[i].stem, bad[i].xml,
                             bad[i].cow, bad[i].master, bad[i].ext, &n, &e);
        ok(!r && e.cls == VCL_ERR_PERMANENT && strstr(e.msg, bad[i].expect),
           "bad input %zu refused naming '%s': %.200s", i, bad[i].expect, e.msg);
        ok(n.domain[0] == '\0' && n.file_base[0] == '\0' && n.xml_path[0] == '\0' &&
               n.cow_path[0] == '\0' && n.master_path[0] == '\0',
           "bad input %zu leaves no names behind", i);
    }
    ok(!names_build("c", 1, 1, "s", "/x", "/y", "/z", "qcow2", NULL, &e), "NULL output refused");

    /* A directory that is valid but leaves no room for the file name. */
    char deep[PATH_MAX];
    size_t o = 0;
    for (int i = 0; i < (PATH_MAX - 1) / 10; i++, o += 10)
        memcpy(deep + o, "/aaaaaaaaa", 10);
    deep[o] = '\0';
    ok(dir_check("XML", deep, &e), "deep dir of %zu bytes is itself valid", strlen(deep));
    r = names_build("vclv99-1", 1, 1, "s", deep, "/y", "/z", "qcow2", &n, &e);
    ok(!r && e.cls == VCL_ERR_PERMANENT && strstr(e.msg, "XML path"),
       "path overflow refused: %.80s", e.msg);
    ok(!names_build("vclv99-1", 1, 1, "s", "/x", deep, "/z", "qcow2", &n, &e) && strstr(e.msg, "COW"),
       "cow path overflow refused");
    ok(!names_build("vclv99-1", 1, 1, "s", "/x", "/y", deep, "qcow2", &n, &e) && strstr(e.msg, "master"),
       "master path overflow refused");
}

/* Masters and COW disks never collide; temp files and ownership are exact. */
static void test_trust(void)
{
    vcl_names n;
    vcl_error e;
    vcl_error_clear(&e);
    ok(!names_build("pc1", 7, 3, "pc2_7-v3", "/x", "/img/", "/img", "qcow2", &n, &e) &&
           e.cls == VCL_ERR_PERMANENT && strstr(e.msg, "is the master image directory"),
       "COW dir = master dir (trailing '/' aside): refused (%s)", e.msg);
    vcl_error_clear(&e);
    ok(names_build("pc1", 7, 3, "pc2_7-v3", "/x", "/img/vcl-cow", "/img", "qcow2", &n, &e) &&
           strcmp(n.master_path, "/img/pc2_7-v3.qcow2") == 0 &&
           strcmp(n.cow_path, "/img/vcl-cow/pc1_7-v3.qcow2") == 0,
       "a COW dir below the master dir: the stem 'pc2_7-v3' names a master only (%s)", e.msg);
    ok(names_same_dir("/a/b/", "/a/b") && !names_same_dir("/a/b", "/a/bc") &&
           !names_same_dir("/a", "/a/b"), "names_same_dir");

    char t1[PATH_MAX], t2[PATH_MAX];
    ok(names_temp("/img/x.qcow2", t1, sizeof t1) && names_temp("/img/x.qcow2", t2, sizeof t2) &&
           strncmp(t1, "/img/x.qcow2.tmp-vcl+", 21) == 0 && strlen(t1) == 21 + 16 &&
           strcmp(t1, t2) != 0,
       "names_temp: '<final>.tmp-vcl+<16 hex>', random (%s, %s)", t1, t2);
    ok(names_is_temp(t1 + 5, "x.qcow2"), "its own temp is a temp");
    static const char *const temps[] = { "x.qcow2.tmp-vcl+0123456789abcdef",
                                         "x.qcow2.tmp-vcl+0123456789abcdef-conv",
                                         "x.qcow2.tmp-42", "x.qcow2.tmp-42-conv", NULL };
    static const char *const not_temps[] = { "x.qcow2.tmp-42.qcow2", "x.qcow2.tmp-5a.qcow2",
                                             "x.qcow2.tmp-vcl+0123456789abcde",
                                             "x.qcow2.tmp-vcl+0123456789abcdef.qcow2",
                                             "x.qcow2.tmp-", "x.qcow2", "y.qcow2.tmp-1", NULL };
    for (int i = 0; temps[i]; i++)
        ok(names_is_temp(temps[i], "x.qcow2"), "temp of x.qcow2: %s", temps[i]);
    for (int i = 0; not_temps[i]; i++)
        ok(!names_is_temp(not_temps[i], "x.qcow2"), "not a temp of x.qcow2: %s", not_temps[i]);

    static const struct { const char *name, *computer; bool owned; } own[] = {
        { "pc_7-v3.qcow2", "pc", true },
        { "pc_7-v3.xml", "pc", true },
        { "pc_7-v3.console.log", "pc", true },
        { "pc_1_7-v3.qcow2", "pc", false },
        { "pc_1_7-v3.qcow2", "pc_1", true },
        { "pc_7-v3", "pc", false },
        { "pc_x-v3.qcow2", "pc", false },
        { "pc_7-v.qcow2", "pc", false },
        { "pc-7-v3.qcow2", "pc", false },
        { "pcx_7-v3.qcow2", "pc", false },
        { "../pc_7-v3.qcow2", "pc", false },
        { "pc_7-v3.qcow2.tmp-vcl+0123456789abcdef", "pc", false },
    };
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        ok(names_owned_by(own[i].name, own[i].computer) == own[i].owned, "%s %s %s",
           own[i].computer, own[i].owned ? "owns" : "does not own", own[i].name);

    /* the name space of computer "pc" (and of "pc_1"): "<computer>:..." */
    static const char *const of_pc[] = { "pc:win7-v3", "pc:", NULL };
    static const char *const not_of_pc[] = { "pc1:win7-v3", "pc", "xpc:win7-v3", "pc_1:win7-v3", NULL };
    for (int i = 0; of_pc[i]; i++)
        ok(names_domain_of(of_pc[i], "pc"), "domain %s is in pc's name space", of_pc[i]);
    for (int i = 0; not_of_pc[i]; i++)
        ok(!names_domain_of(not_of_pc[i], "pc"), "domain %s is not in pc's name space", not_of_pc[i]);
    ok(names_domain_of("pc_1:win7-v3", "pc_1"), "pc_1:win7-v3 is in pc_1's name space");
    ok(!names_domain_of("pc:win7-v3", "pc:") && !names_domain_of("pc:win7-v3", ""),
       "no name space for an invalid computer name");
    ok(!names_domain_of(NULL, "pc") && !names_domain_of("pc:x", NULL), "names_domain_of(NULL) is false");
}

/* names_master: a node row's master path alone (stage_image), the same
 * checks and the same path as names_build's. */
static void test_master(void)
{
    char path[PATH_MAX];
    vcl_names n;
    vcl_error e;
    vcl_error_clear(&e);
    ok(names_master("win7-base-v3", "/var/lib/vcl/masters/", "qcow2", path, sizeof path, &e),
       "names_master ok");
    is_str(path, "/var/lib/vcl/masters/win7-base-v3.qcow2", "names_master: <master dir>/<stem>.<ext>");
    ok(names_build("pc1", 1, 1, "win7-base-v3", "/x", "/y", "/var/lib/vcl/masters/", "qcow2", &n, &e) &&
       strcmp(n.master_path, path) == 0, "names_build gives the same master path");
    vcl_error_clear(&e);
    ok(!names_master("../etc/shadow", "/m", "qcow2", path, sizeof path, &e) &&
       e.cls == VCL_ERR_PERMANENT, "names_master refuses a stem with a path (permanent)");
    vcl_error_clear(&e);
    ok(!names_master("stem", "relative/dir", "qcow2", path, sizeof path, &e), "and a relative master dir");
    vcl_error_clear(&e);
    ok(!names_master("stem", "/m", "qcow2", path, 8, &e), "and a path longer than the buffer");
}

int main(void)
{
    test_names();
    test_trust();
    test_dirs();
    test_macs();
    test_build();
    test_master();
    return done_testing();
}
