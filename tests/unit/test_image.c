/* test_image.c: qemu-img JSON parsing, then master images and COW disks with
 * the real qemu-img in a temp dir (skipped with a diag when qemu-img is not
 * installed). */
#include "tap.h"
#include "node/image.h"
#include "node/imgtrust.h"
#include "node/transport.h"
#include "base/error.h"
#include "base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Captured from `qemu-img info --output=json -U` (QEMU 7.2.22, Debian 12). */
static const char *const sample_plain =
    "{\n"
    "    \"virtual-size\": 16777216,\n"
    "    \"filename\": \"base.qcow2\",\n"
    "    \"cluster-size\": 65536,\n"
    "    \"format\": \"qcow2\",\n"
    "    \"actual-size\": 200704,\n"
    "    \"format-specific\": {\n"
    "        \"type\": \"qcow2\",\n"
    "        \"data\": {\n"
    "            \"compat\": \"1.1\",\n"
    "            \"compression-type\": \"zlib\",\n"
    "            \"lazy-refcounts\": false,\n"
    "            \"refcount-bits\": 16,\n"
    "            \"corrupt\": false,\n"
    "            \"extended-l2\": false\n"
    "        }\n"
    "    },\n"
    "    \"dirty-flag\": false\n"
    "}\n";

/* An overlay created with a relative -b: full-backing-filename is the one
 * to compare with a master path. */
static const char *const sample_overlay =
    "{\n"
    "    \"backing-filename-format\": \"qcow2\",\n"
    "    \"virtual-size\": 16777216,\n"
    "    \"filename\": \"/tmp/qi/rel2.qcow2\",\n"
    "    \"cluster-size\": 65536,\n"
    "    \"format\": \"qcow2\",\n"
    "    \"actual-size\": 200704,\n"
    "    \"format-specific\": {\n"
    "        \"type\": \"qcow2\",\n"
    "        \"data\": {\n"
    "            \"compat\": \"1.1\",\n"
    "            \"compression-type\": \"zlib\",\n"
    "            \"lazy-refcounts\": false,\n"
    "            \"refcount-bits\": 16,\n"
    "            \"corrupt\": false,\n"
    "            \"extended-l2\": false\n"
    "        }\n"
    "    },\n"
    "    \"full-backing-filename\": \"/tmp/qi/base.qcow2\",\n"
    "    \"backing-filename\": \"base.qcow2\",\n"
    "    \"dirty-flag\": false\n"
    "}\n";

static const char *const sample_raw =
    "{\n"
    "    \"virtual-size\": 1048576,\n"
    "    \"filename\": \"r.raw\",\n"
    "    \"format\": \"raw\",\n"
    "    \"actual-size\": 4096,\n"
    "    \"dirty-flag\": false\n"
    "}\n";

/* Shaped like newer QEMU (8.x adds "children" and bitmaps): sequences of
 * mappings inside mappings, and keys we look for nested inside them, which
 * must not be taken for the top-level ones. */
static const char *const sample_nested =
    "{\"children\": [{\"name\": \"file\", \"info\": {\"children\": [], \"virtual-size\": 1,"
    " \"filename\": \"x\", \"format\": \"file\", \"actual-size\": 2, \"format-specific\":"
    " {\"type\": \"file\", \"data\": {}}}}], \"virtual-size\": 1073741824, \"filename\": \"/v/a.qcow2\","
    " \"cluster-size\": 65536, \"format\": \"qcow2\", \"actual-size\": 4096,"
    " \"format-specific\": {\"type\": \"qcow2\", \"data\": {\"bitmaps\": [{\"flags\": [\"auto\"],"
    " \"name\": \"b\", \"granularity\": 65536}], \"backing-filename\": \"/nested/wrong\"}},"
    " \"snapshots\": [], \"dirty-flag\": false}";

static void test_parse(void)
{
    qimg_info q;
    ok(qimg_info_parse(sample_plain, &q), "plain qcow2 parses");
    is_str(q.format, "qcow2", "format");
    is_int(q.virtual_size, 16777216, "virtual size");
    is_int(q.actual_size, 200704, "actual size");
    is_str(q.backing_file, "", "no backing file");
    is_str(q.backing_format, "", "no backing format");

    ok(qimg_info_parse(sample_overlay, &q), "overlay parses");
    is_str(q.backing_file, "/tmp/qi/base.qcow2", "full-backing-filename preferred");
    is_str(q.backing_format, "qcow2", "backing format");

    ok(qimg_info_parse(sample_raw, &q), "raw parses");
    is_str(q.format, "raw", "raw format");
    is_int(q.virtual_size, 1048576, "raw virtual size");

    ok(qimg_info_parse(sample_nested, &q), "nested objects and arrays are skipped");
    is_str(q.format, "qcow2", "top-level format, not a child's");
    is_int(q.virtual_size, 1073741824, "top-level virtual size");
    is_int(q.actual_size, 4096, "top-level actual size");
    is_str(q.backing_file, "", "nested backing-filename ignored");

    ok(qimg_info_parse("{\"format\":\"raw\",\"backing-filename\":\"b.img\"}", &q) &&
       strcmp(q.backing_file, "b.img") == 0, "backing-filename used when there is no full one");

    /* qemu-img escapes every non-ASCII character, above U+FFFF as a JSON
     * surrogate pair, which YAML alone refuses (found by tests/fuzz) */
    ok(qimg_info_parse("{\n    \"backing-filename-format\": \"qcow2\",\n"
                       "    \"format\": \"qcow2\",\n"
                       "    \"full-backing-filename\": \"/tmp/qi/\\u00E9\\uD83D\\uDE00.qcow2\",\n"
                       "    \"backing-filename\": \"/tmp/qi/\\u00E9\\uD83D\\uDE00.qcow2\"\n}\n", &q),
       "a surrogate pair (U+1F600 in a file name) parses");
    is_str(q.backing_file, "/tmp/qi/\xc3\xa9\xf0\x9f\x98\x80.qcow2", "... to the UTF-8 name");
    ok(qimg_info_parse("{\"format\": \"raw\", \"backing-filename\": \"a\\\\uD83D\\\\uDE00\"}", &q) &&
           strcmp(q.backing_file, "a\\uD83D\\uDE00") == 0,
       "an escaped backslash before 'uD83D' is not a surrogate escape");
    ok(!qimg_info_parse("{\"format\": \"raw\", \"backing-filename\": \"\\uD83D\"}", &q),
       "a lone surrogate escape is refused");
    ok(!qimg_info_parse("{\"format\": \"raw\", \"backing-filename\": \"\\uDE00\\uD83D\"}", &q),
       "a reversed pair is refused");

    static const char *const bad[] = {
        "", "{", "{\"format\": \"qcow2\"", "not json", "[1, 2]", "{\"format\": {\"x\": 1}}",
        "{\"virtual-size\": \"big\", \"format\": \"raw\"}", "{\"virtual-size\": 12}",
        "{\"format\": \"qcow2\"} {\"format\": \"raw\"}", "{\"format\": \"qcow2\",, }",
        "{\"format\": \"a-format-name-far-too-long-for-the-field-0123456789\"}",
        "qemu-img: Could not open 'x': No such file or directory",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&q, 'x', sizeof q);
        bool r = qimg_info_parse(bad[i], &q);
        ok(!r && q.format[0] == '\0', "malformed input %zu refused", i);
    }
    ok(!qimg_info_parse(NULL, &q), "NULL refused");
}

/* ------------------------------------------------------------------ world */

static char base[] = "/tmp/vclw-image-XXXXXX";
static vcl_transport *T;

static void pathf(char *buf, size_t len, const char *rel)
{
    snprintf(buf, len, "%s/%s", base, rel);
}

static bool run(const char *const argv[])
{
    vcl_error e;
    vcl_error_clear(&e);
    bool r = transport_run(T, argv, 60, VCL_ERR_RETRYABLE, NULL, &e);
    if (!r)
        diag("%s", e.msg);
    return r;
}

static bool qimg_create(const char *path, const char *fmt, const char *size)
{
    const char *argv[] = { "qemu-img", "create", "-q", "-f", fmt, "--", path, size, NULL };
    return run(argv);
}

static bool touch(const char *path)
{
    vcl_error e;
    return transport_write_file(T, path, "x\n", 2, 0644, &e);
}

/* touch <base>/rel */
static bool touch_rel(const char *rel)
{
    char p[PATH_MAX];
    pathf(p, sizeof p, rel);
    return touch(p);
}

static bool file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static bool stat_of(const char *path, struct stat *sb)
{
    return stat(path, sb) == 0;
}

/* Damage a qcow2: zero its first refcount block entry, so `qemu-img check`
 * reports errors (exit 2) while `qemu-img info` still opens it. */
static bool corrupt_qcow2(const char *path)
{
    bool ok = false;
    unsigned char h[104], be[8];
    int fd = open(path, O_RDWR);
    if (fd < 0 || pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h)
        goto out;
    uint64_t rt = 0, rb = 0;
    for (int i = 0; i < 8; i++)
        rt = rt << 8 | h[48 + i];
    if (pread(fd, be, 8, (off_t)rt) != 8)
        goto out;
    for (int i = 0; i < 8; i++)
        rb = rb << 8 | be[i];
    static const unsigned char zero[8];
    ok = rb && pwrite(fd, zero, sizeof zero, (off_t)rb) == 8;
out:
    if (fd >= 0)
        close(fd);
    return ok;
}

typedef struct fake_lock {
    int acquired, released;
    int timeout_s;                  /* what the last acquire was given */
    int held_calls;
    bool lost;                      /* lock_held says it was taken over */
    bool fail;
    const char *make_master_from;   /* on acquire: simulate another worker */
    const char *master;
} fake_lock;

static bool fake_lock_fn(void *opaque, bool acquire, int timeout_s, vcl_error *e)
{
    fake_lock *l = opaque;
    if (!acquire) {
        l->released++;
        return true;
    }
    if (timeout_s <= 0)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "no lock timeout given");
    l->timeout_s = timeout_s;
    if (l->fail)
        return vcl_error_set(e, VCL_ERR_RETRYABLE, "lock busy");
    l->acquired++;
    if (l->make_master_from) {
        const char *argv[] = { "cp", "--", l->make_master_from, l->master, NULL };
        run(argv);
    }
    return true;
}

static bool fake_lock_held(void *opaque, vcl_error *e)
{
    fake_lock *l = opaque;
    l->held_calls++;
    if (l->lost)
        return vcl_error_set(e, VCL_ERR_RETRYABLE, "lost the copy lock");
    return true;
}

static int progress_calls;
static void on_progress(void *opaque, const char *what, long long done, long long total)
{
    (void)opaque;
    (void)what;
    (void)done;
    (void)total;
    progress_calls++;
}

static char master_dir[PATH_MAX], cow_dir[PATH_MAX], repo_pat[PATH_MAX], repo_missing[PATH_MAX];
static const char *repo_paths[2];

/* Files in dir named "<base>.tmp-..." */
static int count_temps(const char *dir, const char *fbase)
{
    char **names = NULL;
    size_t n = 0;
    int c = 0;
    vcl_error e;
    char prefix[PATH_MAX];
    snprintf(prefix, sizeof prefix, "%s.tmp-", fbase);
    if (!transport_list_dir(T, dir, &names, &n, &e))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (strncmp(names[i], prefix, strlen(prefix)) == 0)
            c++;
    util_strv_free(names, n);
    return c;
}

/* A fake of vcl.temp_file (node/temps.h): what the worker recorded, and
 * whether its owner's lease is still live. */
#define FAKE_TEMPS_MAX 64
static struct { char path[PATH_MAX]; bool dead; } temp_rows[FAKE_TEMPS_MAX];
static int n_temp_rows, temp_records, temp_forgets;
static bool temp_created_unrecorded;   /* a temp file existed before its record */

static int temp_row(const char *path)
{
    for (int i = 0; i < n_temp_rows; i++)
        if (strcmp(temp_rows[i].path, path) == 0)
            return i;
    return -1;
}

static bool fake_temp_record(void *opaque, const char *path, vcl_error *e)
{
    struct stat sb;
    if (lstat(path, &sb) == 0)
        temp_created_unrecorded = true;
    if (temp_row(path) >= 0 || n_temp_rows == FAKE_TEMPS_MAX)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "fake: %s recorded twice (or full)", path);
    snprintf(temp_rows[n_temp_rows].path, PATH_MAX, "%s", path);
    temp_rows[n_temp_rows++].dead = false;
    temp_records++;
    return true;
}

static bool fake_temp_forget(void *opaque, const char *path, vcl_error *e)
{
    int i = temp_row(path);
    if (i >= 0)
        temp_rows[i] = temp_rows[--n_temp_rows];
    temp_forgets++;
    return true;
}

static bool fake_temp_stale(void *opaque, const char *final, char ***paths, size_t *n,
                            vcl_error *e)
{
    char prefix[PATH_MAX];
    snprintf(prefix, sizeof prefix, "%s.tmp-vcl+", final);
    *paths = calloc(FAKE_TEMPS_MAX, sizeof **paths);
    *n = 0;
    for (int i = 0; i < n_temp_rows; i++)
        if (temp_rows[i].dead && strncmp(temp_rows[i].path, prefix, strlen(prefix)) == 0)
            (*paths)[(*n)++] = strdup(temp_rows[i].path);
    return true;
}

/* A row left by a worker whose lease is gone. */
static void fake_temp_dead(const char *path)
{
    snprintf(temp_rows[n_temp_rows].path, PATH_MAX, "%s", path);
    temp_rows[n_temp_rows++].dead = true;
}

static const node_temps fake_temps = {
    .record = fake_temp_record, .forget = fake_temp_forget, .stale = fake_temp_stale,
};

static void req_init(image_req *r, const char *stem, char *master, char *cow, size_t len, fake_lock *l)
{
    memset(r, 0, sizeof *r);
    snprintf(master, len, "%s/%s.qcow2", master_dir, stem);
    snprintf(cow, len, "%s/vclv1-1_7-v1.qcow2", cow_dir);
    r->t = T;
    r->master_path = master;
    r->cow_path = cow;
    r->file_stem = stem;
    r->disk_format = "qcow2";
    r->repo_paths = repo_paths;
    r->n_repo = 2;
    r->reservation_id = 42;
    r->lock = l ? fake_lock_fn : NULL;
    r->lock_held = l ? fake_lock_held : NULL;
    r->lock_opaque = l;
    r->progress = on_progress;
    r->command_timeout_s = 120;
    r->temps = &fake_temps;
}

static bool check_passes(const char *path)
{
    const char *argv[] = { "qemu-img", "check", "-q", "--", path, NULL };
    return run(argv);
}

static void test_repository(void)
{
    vcl_error e;
    image_req r;
    char master[PATH_MAX], cow[PATH_MAX], p[PATH_MAX], found[PATH_MAX];
    fake_lock l = { 0 };

    /* Only files that must be ignored. */
    touch_rel("repo-a/win7.xml");
    touch_rel("repo-a/win7.txt");
    touch_rel("repo-a/win7.vmx");
    touch_rel("repo-a/win7-s001.vmdk");
    pathf(p, sizeof p, "repo-a/win7.qcow2.d");  /* a directory named like an image */
    transport_mkdir_p(T, p, 0755, &e);

    req_init(&r, "win7", master, cow, sizeof master, &l);
    vcl_error_clear(&e);
    ok(!image_find_in_repository(&r, found, sizeof found, &e), "only .xml/.txt/.vmx/-s001.vmdk: not found");
    is_int(e.cls, VCL_ERR_PERMANENT, "not found is permanent");
    char want[2 * PATH_MAX + 200];
    snprintf(want, sizeof want, "image 'win7' not found on the node (%s) or in repository paths: %s, %s",
             master, repo_missing, repo_pat);
    is_str(e.msg, want, "not-found message lists the master and every repository path");

    vcl_error_clear(&e);
    l = (fake_lock){ 0 };
    ok(!image_ensure_master(&r, &e), "ensure_master with the image nowhere fails");
    is_int(e.cls, VCL_ERR_PERMANENT, "permanent");
    is_str(e.msg, want, "same message from ensure_master");
    is_int(l.acquired, 1, "lock taken once");
    is_int(l.released, 1, "lock released on failure");

    /* The descriptor of a split vmdk counts. */
    pathf(p, sizeof p, "repo-b/win7.vmdk");
    const char *mk[] = { "qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse",
                         "--", p, "8M", NULL };
    ok(run(mk), "split vmdk created");
    ok(image_find_in_repository(&r, found, sizeof found, &e), "split vmdk found by its descriptor");
    is_str(found, p, "descriptor path");

    /* qcow2 wins over vmdk in the same directory. */
    pathf(p, sizeof p, "repo-b/win7.qcow2");
    ok(qimg_create(p, "qcow2", "16M"), "repo-b/win7.qcow2 created");
    ok(image_find_in_repository(&r, found, sizeof found, &e), "found through the wildcard repo path");
    is_str(found, p, "qcow2 preferred");

    vcl_error_clear(&e);
    image_req bad = r;
    bad.file_stem = "../etc/passwd";
    ok(!image_find_in_repository(&bad, found, sizeof found, &e) && e.cls == VCL_ERR_PERMANENT,
       "a stem with a slash is refused");
    bad.file_stem = "win*";
    ok(!image_find_in_repository(&bad, found, sizeof found, &e) && e.cls == VCL_ERR_PERMANENT,
       "a stem with a wildcard is refused");
}

static long long size_of(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

/* VCL's does_image_exist / get_image_size: the node first, then the
 * repository; split vmdk sets summed; .xml/.txt/.vmx and temp files ignored. */
static void test_exists_size(void)
{
    vcl_error e;
    image_req r;
    image_location loc;
    bool exists = true;
    long long bytes = -1, mb = -1;
    char master[PATH_MAX], cow[PATH_MAX], p[PATH_MAX], ext[PATH_MAX], tmp[PATH_MAX];

    /* nothing but side files and a temp next to where the master would be */
    req_init(&r, "ex-none", master, cow, sizeof master, NULL);
    touch_rel("repo-c/ex-none.xml");
    touch_rel("repo-c/ex-none.txt");
    touch_rel("repo-c/ex-none.vmx");
    snprintf(tmp, sizeof tmp, "%s.tmp-5", master);
    ok(transport_mkdir_p(T, master_dir, 0755, &e) && touch(tmp), "a partial <master>.tmp-5");
    vcl_error_clear(&e);
    ok(image_exists(&r, &exists, &loc, &e), "image_exists runs");
    ok(!exists && loc.at == IMAGE_AT_NONE, "side files and a temp file are not the image");
    is_str(image_at_name(loc.at), "missing", "where: missing");
    vcl_error_clear(&e);
    ok(!image_size(&r, &bytes, &mb, NULL, &e) && e.cls == VCL_ERR_PERMANENT,
       "image_size of a missing image: permanent error");
    ok(strstr(e.msg, "ex-none") && strstr(e.msg, "not found"), "message names the image");
    transport_remove(T, tmp, &e);

    /* a raw file in the repository */
    req_init(&r, "ex-raw", master, cow, sizeof master, NULL);
    pathf(p, sizeof p, "repo-c/ex-raw.raw");
    ok(qimg_create(p, "raw", "3M"), "repo-c/ex-raw.raw (3 MiB raw)");
    vcl_error_clear(&e);
    ok(image_exists(&r, &exists, &loc, &e) && exists, "raw image exists");
    is_int(loc.at, IMAGE_AT_REPOSITORY, "in the repository");
    is_str(loc.path, p, "its path");
    ok(image_size(&r, &bytes, &mb, NULL, &e), "image_size");
    is_int((int)bytes, 3 * 1024 * 1024, "3 MiB in bytes");
    is_int((int)mb, 3, "3 MB");

    /* ... and once its master is on the node, the node wins */
    ok(qimg_create(master, "qcow2", "3M"), "master of ex-raw on the node");
    vcl_error_clear(&e);
    ok(image_size(&r, &bytes, &mb, &loc, &e) && loc.at == IMAGE_AT_NODE, "found on the node first");
    is_str(loc.path, master, "the master path");
    ok(bytes == size_of(master) && mb == 0, "size is the master file's (%lld bytes)", bytes);

    /* a split vmdk: descriptor + extents, summed; other images sharing the
     * prefix are not part of the set */
    req_init(&r, "ex-split", master, cow, sizeof master, NULL);
    pathf(p, sizeof p, "repo-c/ex-split.vmdk");
    const char *mk[] = { "qemu-img", "create", "-q", "-f", "vmdk", "-o",
                         "subformat=twoGbMaxExtentSparse", "--", p, "5G", NULL };
    ok(run(mk), "split vmdk (5 GiB: three 2 GiB extents)");
    pathf(ext, sizeof ext, "repo-c/ex-split-v2.qcow2");
    ok(qimg_create(ext, "qcow2", "1M"), "a different image with the same prefix");
    pathf(tmp, sizeof tmp, "repo-c/ex-split.xml");
    touch(tmp);
    long long want = size_of(p);
    int files = 1;
    for (int i = 1; i <= 3; i++) {
        char part[64];
        snprintf(part, sizeof part, "repo-c/ex-split-s%03d.vmdk", i);
        pathf(ext, sizeof ext, part);
        if (size_of(ext) >= 0) {
            want += size_of(ext);
            files++;
        }
    }
    is_int(files, 4, "qemu-img wrote a descriptor and three extents");
    vcl_error_clear(&e);
    ok(image_size(&r, &bytes, &mb, &loc, &e), "image_size of the split vmdk");
    is_str(loc.path, p, "located by its descriptor");
    is_int(loc.n_files, 4, "four files in the set");
    ok(bytes == want, "size is the sum of descriptor and extents (%lld == %lld)", bytes, want);
    is_int((int)mb, (int)(want / (1024 * 1024)), "MB rounded down");
}

static void test_master(void)
{
    vcl_error e;
    image_req r;
    char master[PATH_MAX], cow[PATH_MAX], p[PATH_MAX], stale[PATH_MAX];
    fake_lock l = { 0 };
    struct stat sb, sb2;

    char planted[PATH_MAX], old[PATH_MAX], nofile[PATH_MAX];
    req_init(&r, "win7", master, cow, sizeof master, &l);
    snprintf(stale, sizeof stale, "%s.tmp-vcl+00000000000000a1", master);
    snprintf(planted, sizeof planted, "%s.tmp-vcl+0123456789abcdef", master);
    snprintf(old, sizeof old, "%s.tmp-99", master);
    snprintf(nofile, sizeof nofile, "%s.tmp-vcl+00000000000000b2-conv", master);
    ok(transport_mkdir_p(T, master_dir, 0755, &e) && touch(stale) && touch(planted) && touch(old),
       "a recorded stale temp, an unrecorded file of the temp form, an older worker's temp");
    n_temp_rows = temp_records = temp_forgets = 0;
    temp_created_unrecorded = false;
    fake_temp_dead(stale);
    fake_temp_dead(nofile);

    vcl_error_clear(&e);
    progress_calls = 0;
    ok(image_ensure_master(&r, &e), "ensure_master copies from the repository");
    if (e.cls != VCL_ERR_NONE)
        diag("%s", e.msg);
    ok(file_exists(master), "master exists");
    ok(check_passes(master), "master passes qemu-img check");
    qimg_info q;
    ok(qimg_info_get(T, master, &q, &e) && strcmp(q.format, "qcow2") == 0 && q.virtual_size == 16777216,
       "master is a 16 MiB qcow2");
    ok(!file_exists(stale), "the recorded temp of a dead lease is removed");
    ok(file_exists(planted), "an unrecorded file of the temp form stays");
    ok(file_exists(old), "an older worker's unrecorded <master>.tmp-99 stays");
    is_int(n_temp_rows, 0, "every record forgotten: the dead ones, the copy's two");
    is_int(temp_records, 2, "the copy recorded its temp and its -conv temp");
    ok(!temp_created_unrecorded, "no temp file existed before its record");
    is_int(count_temps(master_dir, "win7.qcow2"), 2, "no temp file of ours left (two planted)");
    is_int(l.acquired, 1, "lock taken");
    is_int(l.released, 1, "lock released");
    ok(progress_calls >= 2, "progress reported (%d)", progress_calls);

    ok(stat_of(master, &sb), "stat master");
    sleep(1);
    l = (fake_lock){ 0 };
    vcl_error_clear(&e);
    ok(image_ensure_master(&r, &e), "second ensure_master");
    ok(stat_of(master, &sb2) && sb2.st_mtime == sb.st_mtime && sb2.st_ino == sb.st_ino,
       "second call changes nothing (same inode and mtime)");
    is_int(l.acquired, 0, "no lock needed when the master is good");

    /* Without a lock (tests, single worker) it works too. */
    char master2[PATH_MAX], cow2[PATH_MAX];
    image_req r2;
    pathf(p, sizeof p, "repo-b/rhel9.img");
    ok(qimg_create(p, "raw", "4M"), "raw repository image rhel9.img");
    req_init(&r2, "rhel9", master2, cow2, sizeof master2, NULL);
    vcl_error_clear(&e);
    ok(image_ensure_master(&r2, &e), "raw .img converted to a qcow2 master, no lock");
    ok(qimg_info_get(T, master2, &q, &e) && strcmp(q.format, "qcow2") == 0 && q.virtual_size == 4194304,
       "converted to qcow2 (4 MiB)");

    /* Re-check after the lock: another worker made it meanwhile. */
    char master3[PATH_MAX], cow3[PATH_MAX];
    image_req r3;
    fake_lock l3 = { 0 };
    req_init(&r3, "only-elsewhere", master3, cow3, sizeof master3, &l3);
    l3.make_master_from = master;
    l3.master = master3;
    vcl_error_clear(&e);
    ok(image_ensure_master(&r3, &e), "master made by someone else while we waited for the lock");
    is_int(l3.released, 1, "lock released");

    /* Lock cannot be had: retryable, nothing copied. */
    char master4[PATH_MAX], cow4[PATH_MAX];
    image_req r4;
    fake_lock l4 = { .fail = true };
    pathf(p, sizeof p, "repo-b/busy.qcow2");
    qimg_create(p, "qcow2", "1M");
    req_init(&r4, "busy", master4, cow4, sizeof master4, &l4);
    vcl_error_clear(&e);
    ok(!image_ensure_master(&r4, &e) && e.cls == VCL_ERR_RETRYABLE, "lock busy: retryable");
    ok(!file_exists(master4), "nothing copied without the lock");
    is_int(l4.released, 0, "a lock not taken is not released");

    /* A damaged source: permanent, clear message, nothing left behind. */
    char master5[PATH_MAX], cow5[PATH_MAX], tmp5[PATH_MAX];
    image_req r5;
    fake_lock l5 = { 0 };
    pathf(p, sizeof p, "repo-b/broken.qcow2");
    ok(qimg_create(p, "qcow2", "16M") && corrupt_qcow2(p), "damaged repository image");
    req_init(&r5, "broken", master5, cow5, sizeof master5, &l5);
    vcl_error_clear(&e);
    ok(!image_ensure_master(&r5, &e), "damaged source refused");
    is_int(e.cls, VCL_ERR_PERMANENT, "damaged source is permanent");
    ok(strstr(e.msg, "is damaged") && strstr(e.msg, p) && strstr(e.msg, "qemu-img check failed (exit 2)"),
       "message names the source and the check");
    diag("%s", e.msg);
    snprintf(tmp5, sizeof tmp5, "%s.tmp-42", master5);
    ok(!file_exists(master5) && !file_exists(tmp5), "no master, no temp file");
    is_int(l5.released, 1, "lock released");

    /* A damaged master is never overwritten. */
    ok(touch(master5), "garbage where the master should be");
    const char *cp[] = { "cp", "--", p, master5, NULL };
    run(cp);
    vcl_error_clear(&e);
    ok(!image_ensure_master(&r5, &e) && e.cls == VCL_ERR_PERMANENT, "damaged master: permanent error");
    ok(strstr(e.msg, "never overwritten") != NULL, "message says it is never overwritten");
    ok(stat_of(master5, &sb) && corrupt_qcow2(master5), "damaged master still there");
}

/* The copy lock lost mid-copy (our lease ran out, another worker took it
 * over): the copy stops before its rename, leaves no master and no temp
 * file; the configured wait is what the lock is asked for. */
static void test_lock_lost(void)
{
    vcl_error e;
    image_req r;
    char master[PATH_MAX], cow[PATH_MAX], p[PATH_MAX], ours[PATH_MAX];
    fake_lock l = { .lost = true };

    pathf(p, sizeof p, "repo-c/lost1.qcow2");
    ok(qimg_create(p, "qcow2", "4M"), "repository image lost1.qcow2");
    req_init(&r, "lost1", master, cow, sizeof master, &l);
    r.lock_timeout_s = 7;
    vcl_error_clear(&e);
    ok(!image_ensure_master(&r, &e), "ensure_master with the lock lost mid-copy fails");
    is_int(e.cls, VCL_ERR_RETRYABLE, "retryable");
    is_str(e.msg, "lost the copy lock", "with the lock's reason");
    is_int(l.timeout_s, 7, "the lock was asked to wait lock_timeout_s");
    is_int(l.held_calls, 1, "held asked once, before the rename");
    ok(!file_exists(master), "no master renamed into place");
    snprintf(ours, sizeof ours, "lost1.qcow2");
    is_int(count_temps(master_dir, ours), 0, "our temp file removed");
    is_int(n_temp_rows, 0, "and forgotten");
    is_int(l.released, 1, "lock released");

    l = (fake_lock){ 0 };
    r.lock_timeout_s = 0;
    vcl_error_clear(&e);
    ok(image_ensure_master(&r, &e), "with the lock held throughout, the copy completes");
    ok(file_exists(master), "master in place");
    is_int(l.timeout_s, 600, "no lock_timeout_s: the default wait (600 s)");
}

static void test_cow(void)
{
    vcl_error e;
    image_req r;
    char master[PATH_MAX], cow[PATH_MAX], p[PATH_MAX], stale[PATH_MAX];
    struct stat sb, sb2;
    qimg_info q;

    char planted[PATH_MAX];
    req_init(&r, "win7", master, cow, sizeof master, NULL);
    ok(transport_mkdir_p(T, cow_dir, 0755, &e), "cow dir");
    snprintf(stale, sizeof stale, "%s.tmp-vcl+00000000000000c3", cow);
    snprintf(planted, sizeof planted, "%s.tmp-7", cow);
    touch(stale);
    touch(planted);
    n_temp_rows = temp_records = 0;
    temp_created_unrecorded = false;
    fake_temp_dead(stale);

    vcl_error_clear(&e);
    ok(image_ensure_cow(&r, &e), "ensure_cow creates the overlay");
    if (e.cls != VCL_ERR_NONE)
        diag("%s", e.msg);
    ok(qimg_info_get(T, cow, &q, &e), "qemu-img info on the COW");
    is_str(q.format, "qcow2", "COW is qcow2");
    is_str(q.backing_file, master, "backing file is the master");
    is_str(q.backing_format, "qcow2", "backing format recorded (-F)");
    ok(!file_exists(stale), "stale recorded COW temp removed");
    ok(file_exists(planted), "an unrecorded COW temp form stays");
    is_int(temp_records, 1, "the COW temp was recorded");
    ok(!temp_created_unrecorded, "before it was created");
    is_int(n_temp_rows, 0, "and forgotten after its rename");
    unlink(planted);

    ok(stat_of(cow, &sb), "stat COW");
    vcl_error_clear(&e);
    ok(image_ensure_cow(&r, &e), "ensure_cow again");
    ok(stat_of(cow, &sb2) && sb2.st_ino == sb.st_ino, "kept (same inode)");

    /* Wrong backing file: replaced. */
    pathf(p, sizeof p, "other-base.qcow2");
    qimg_create(p, "qcow2", "16M");
    const char *mk[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", p, "--", cow, NULL };
    ok(transport_remove(T, cow, &e) && run(mk), "COW with a wrong backing file");
    ok(stat_of(cow, &sb), "stat wrong COW");
    int hold = open(cow, O_RDONLY);     /* keeps its inode number from being reused */
    vcl_error_clear(&e);
    ok(image_ensure_cow(&r, &e), "ensure_cow replaces it");
    ok(qimg_info_get(T, cow, &q, &e) && strcmp(q.backing_file, master) == 0, "now backed by the master");
    ok(stat_of(cow, &sb2) && sb2.st_ino != sb.st_ino, "a new file");
    if (hold >= 0)
        close(hold);

    /* Garbage: replaced. */
    ok(transport_write_file(T, cow, "garbage", 7, 0644, &e), "garbage COW");
    vcl_error_clear(&e);
    ok(image_ensure_cow(&r, &e) && qimg_info_get(T, cow, &q, &e) && strcmp(q.backing_file, master) == 0,
       "garbage COW replaced");

    /* Master missing: retryable, nothing created. */
    char master2[PATH_MAX], cow2[PATH_MAX];
    image_req r2;
    req_init(&r2, "nowhere", master2, cow2, sizeof master2, NULL);
    snprintf(cow2, sizeof cow2, "%s/vclv1-2_9-v1.qcow2", cow_dir);
    vcl_error_clear(&e);
    ok(!image_ensure_cow(&r2, &e) && e.cls == VCL_ERR_RETRYABLE, "no master: retryable");
    ok(!file_exists(cow2), "no COW created");

    image_req r3 = r;
    r3.cow_path = master;
    vcl_error_clear(&e);
    ok(!image_ensure_cow(&r3, &e) && e.cls == VCL_ERR_PERMANENT, "COW path equal to the master refused");
}

/* imgtrust_judge on qemu-img's JSON (QEMU 7.2, --backing-chain). */
static void test_judge(void)
{
    static const char *const alone =
        "[{\"virtual-size\": 51200, \"filename\": \"/r/a.qcow2\", \"format\": \"qcow2\","
        " \"actual-size\": 4096, \"format-specific\": {\"type\": \"qcow2\", \"data\":"
        " {\"compat\": \"1.1\", \"corrupt\": false}}, \"dirty-flag\": false}]";
    static const struct { const char *json, *why; } bad[] = {
        { "[{\"format\": \"qcow2\", \"backing-filename\": \"/etc/shadow\","
          " \"full-backing-filename\": \"/etc/shadow\"}, {\"format\": \"raw\","
          " \"filename\": \"/etc/shadow\"}]", "has a backing file '/etc/shadow'" },
        { "[{\"format\": \"qcow2\"}, {\"format\": \"raw\", \"filename\": \"/x\"}]",
          "has a backing file '/x'" },
        { "[{\"format\": \"qcow2\", \"format-specific\": {\"type\": \"qcow2\", \"data\":"
          " {\"data-file\": \"/dev/sda\"}}}]", "external data file '/dev/sda'" },
        { "[{\"format\": \"qcow2\", \"format-specific\": {\"data\": {\"extents\":"
          " [{\"filename\": \"/etc/shadow\", \"format\": \"FLAT\"}]}}}]",
          "vmdk extent outside its own directory '/etc/shadow'" },
        { "[{\"format\": \"qcow2\", \"format-specific\": {\"data\": {\"extents\":"
          " [{\"filename\": \"/r/../etc/x\"}]}}}]", "vmdk extent outside" },
        { "[{\"format\": \"qcow2\", \"format\": \"raw\"}]", "cannot read" },
        { "[{\"format\": \"raw\"}]", "another format" },
        { "{\"format\": \"qcow2\"}", "not a list" },
        { "[]", "no image" },
        { "[{\"format\": \"qcow2\", \"virtual-size\": -1}]", "virtual-size" },
        { "not json [", "cannot read" },
        { "", "cannot read" },
    };
    imgtrust_facts *f = calloc(1, sizeof *f);
    vcl_error e;
    vcl_error_clear(&e);
    ok(imgtrust_judge(alone, "/r/a.qcow2", "qcow2", f, &e) && f->info.virtual_size == 51200 &&
           strcmp(f->info.format, "qcow2") == 0 && f->n_extents == 0,
       "a standalone qcow2 passes (%s)", e.msg);
    vcl_error_clear(&e);
    ok(imgtrust_judge("[{\"format\": \"vmdk\", \"format-specific\": {\"data\": {\"extents\":"
                      " [{\"filename\": \"/r/a.vmdk\"}, {\"filename\": \"/r/a-flat.vmdk\"}]}}}]",
                      "/r/a.vmdk", "vmdk", f, &e) &&
           f->n_extents == 1 && strcmp(f->extents[0], "/r/a-flat.vmdk") == 0,
       "vmdk extents: itself and a file next to it pass (%s)", e.msg);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vcl_error_clear(&e);
        ok(!imgtrust_judge(bad[i].json, "/r/a.qcow2", "qcow2", f, &e) &&
               e.cls == VCL_ERR_PERMANENT && strstr(e.msg, bad[i].why),
           "refused #%zu: %s", i, e.msg);
    }
    is_str(imgtrust_format_of("/r/x.raw"), "raw", ".raw is raw");
    is_str(imgtrust_format_of("/r/x.img"), "raw", ".img is raw");
    is_str(imgtrust_format_of("/r/x.vmdk"), "vmdk", ".vmdk is vmdk");
    is_str(imgtrust_format_of("/r/x.qcow2"), "qcow2", ".qcow2 is qcow2");
    ok(imgtrust_format_of("/r/x.iso") == NULL, ".iso: no format");
    free(f);
}

static bool write_text(const char *path, const char *text)
{
    vcl_error e;
    vcl_error_clear(&e);
    return transport_write_file(T, path, text, strlen(text), 0644, &e);
}

/* A qcow2 at path whose backing file is backing (raw). */
static bool qcow2_backed(const char *path, const char *backing)
{
    const char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", backing, "--",
                           path, NULL };
    return run(argv);
}

/* Hostile repository images (issue #12): nothing of the host reaches a
 * master, and nothing is written when one is refused. */
static void test_hostile(void)
{
    image_req r;
    fake_lock l = { 0 };
    char master[PATH_MAX], cow[PATH_MAX], host[PATH_MAX], p[PATH_MAX], desc[PATH_MAX + 200];
    vcl_error e;

    pathf(host, sizeof host, "host-secret.bin");
    const char *mk[] = { "truncate", "-s", "51200", "--", host, NULL };
    ok(run(mk) && write_text(host, "host secret\n"), "a host file outside the repository");

    /* a vmdk descriptor whose FLAT extent is the host file */
    snprintf(desc, sizeof desc,
             "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
             "createType=\"monolithicFlat\"\nRW 100 FLAT \"%s\" 0\n", host);
    pathf(p, sizeof p, "repo-a/evil-vmdk.vmdk");
    ok(write_text(p, desc), "evil-vmdk.vmdk written");
    req_init(&r, "evil-vmdk", master, cow, sizeof master, &l);
    vcl_error_clear(&e);
    ok(!image_ensure_master(&r, &e) && e.cls == VCL_ERR_PERMANENT &&
           strstr(e.msg, "vmdk extent outside its own directory") && strstr(e.msg, host),
       "vmdk extent on a host file: refused, permanent (%s)", e.msg);
    ok(!file_exists(master), "no master written");

    /* a qcow2 whose backing file is the host file */
    pathf(p, sizeof p, "repo-a/evil-back.qcow2");
    ok(qcow2_backed(p, host), "evil-back.qcow2 backed by the host file");
    req_init(&r, "evil-back", master, cow, sizeof master, &l);
    vcl_error_clear(&e);
    ok(!image_ensure_master(&r, &e) && e.cls == VCL_ERR_PERMANENT &&
           strstr(e.msg, "has a backing file") && strstr(e.msg, host),
       "qcow2 with a host backing file: refused, permanent (%s)", e.msg);
    ok(!file_exists(master), "no master written");

    /* a qcow2 with an external data file */
    pathf(p, sizeof p, "repo-a/evil-df.qcow2");
    char opt[PATH_MAX + 16];
    pathf(desc, sizeof desc, "evil-data.raw");
    snprintf(opt, sizeof opt, "data_file=%s", desc);
    const char *df[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-o", opt, "--", p, "1M", NULL };
    ok(run(df), "evil-df.qcow2 with an external data file");
    req_init(&r, "evil-df", master, cow, sizeof master, &l);
    vcl_error_clear(&e);
    ok(!image_ensure_master(&r, &e) && e.cls == VCL_ERR_PERMANENT &&
           strstr(e.msg, "external data file"),
       "qcow2 with a data file: refused, permanent (%s)", e.msg);
    ok(!file_exists(master), "no master written");

    /* a .raw file with a qcow2 header (backed by the host file): read as raw */
    pathf(p, sizeof p, "repo-a/trick.raw");
    ok(qcow2_backed(p, host), "trick.raw: a qcow2 header backed by the host file");
    req_init(&r, "trick", master, cow, sizeof master, &l);
    vcl_error_clear(&e);
    ok(image_ensure_master(&r, &e), "trick.raw loads, as raw (%s)", e.msg);
    qimg_info q;
    ok(qimg_info_get(T, master, &q, &e) && q.backing_file[0] == '\0',
       "its master has no backing file");
    const char *cmp[] = { "qemu-img", "compare", "-q", "-f", "raw", "-F", "qcow2", "--", p, master,
                          NULL };
    ok(run(cmp), "the master holds the .raw file's own bytes, not the host file's");

    /* a vmdk whose flat extent sits next to it: accepted */
    pathf(p, sizeof p, "repo-a/good-flat.vmdk");
    char ext[PATH_MAX];
    pathf(ext, sizeof ext, "repo-a/good-flat-flat.vmdk");
    const char *mkx[] = { "truncate", "-s", "51200", "--", ext, NULL };
    snprintf(desc, sizeof desc,
             "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
             "createType=\"monolithicFlat\"\nRW 100 FLAT \"good-flat-flat.vmdk\" 0\n");
    ok(run(mkx) && write_text(p, desc), "good-flat.vmdk with its extent next to it");
    req_init(&r, "good-flat", master, cow, sizeof master, &l);
    vcl_error_clear(&e);
    ok(image_ensure_master(&r, &e), "a vmdk with its own extent loads (%s)", e.msg);

    /* stale temp cleanup never takes a master whose stem looks like a temp */
    char legit[PATH_MAX], stale[PATH_MAX];
    pathf(legit, sizeof legit, "images/plain.qcow2.tmp-5.qcow2");
    pathf(stale, sizeof stale, "images/plain.qcow2.tmp-vcl+0123456789abcdef");
    pathf(p, sizeof p, "repo-b/plain.qcow2");
    ok(qimg_create(p, "qcow2", "1M") && qimg_create(legit, "qcow2", "1M") && touch(stale),
       "the master of stem 'plain.qcow2.tmp-5' and a stale temp of 'plain'");
    fake_temp_dead(stale);
    req_init(&r, "plain", master, cow, sizeof master, &l);
    vcl_error_clear(&e);
    ok(image_ensure_master(&r, &e), "plain loads (%s)", e.msg);
    ok(file_exists(legit), "the other stem's master survives the stale-temp cleanup");
    ok(!file_exists(stale), "the stale temp is gone");
}

int main(void)
{
    vcl_error e;
    test_parse();
    test_judge();

    T = transport_new("local", NULL, &e);
    transport_result res = { 0 };
    const char *v[] = { "qemu-img", "--version", NULL };
    if (!T || !transport_exec(T, v, 10, &res, &e) || res.status != 0) {
        diag("qemu-img not available: skipping the tests that run it");
        transport_result_clear(&res);
        transport_free(T);
        return done_testing();
    }
    transport_result_clear(&res);
    if (!mkdtemp(base)) {
        printf("Bail out! mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    pathf(master_dir, sizeof master_dir, "images");
    pathf(cow_dir, sizeof cow_dir, "vms");
    pathf(repo_pat, sizeof repo_pat, "repo*");
    pathf(repo_missing, sizeof repo_missing, "not-mounted");
    repo_paths[0] = repo_missing;
    repo_paths[1] = repo_pat;
    char p[PATH_MAX];
    pathf(p, sizeof p, "repo-a");
    ok(transport_mkdir_p(T, p, 0755, &e), "repo-a");
    pathf(p, sizeof p, "repo-b");
    ok(transport_mkdir_p(T, p, 0755, &e), "repo-b");
    pathf(p, sizeof p, "repo-c");
    ok(transport_mkdir_p(T, p, 0755, &e), "repo-c");

    test_repository();
    test_exists_size();
    test_master();
    test_lock_lost();
    test_cow();
    test_hostile();

    const char *rm[] = { "rm", "-rf", "--", base, NULL };
    run(rm);
    transport_free(T);
    return done_testing();
}
