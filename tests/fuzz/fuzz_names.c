/* fuzz_names.c: the name, directory and MAC checks and the naming scheme
 * (worker/base/names.c), the gate every value passes before it reaches a
 * path, a command line, a domain name or XML.
 *
 * Input: NUL-separated fields: computer, file stem, disk extension, XML dir,
 * COW dir, master dir, MAC, then two numbers (image id, revision).
 * Properties: name_valid and name_check agree; a valid name has only the
 * allowed characters; an error quotes the value printably; a valid directory
 * is absolute with no '.', '..' or empty component; names_build succeeds
 * only on valid parts and every path it builds is <dir>/<one component>. */
#include <limits.h>

#include "base/names.h"
#include "fuzz.h"

static int name_chars_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > NAME_MAX_LEN || s[0] == '.' || s[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static void check_name(const char *s)
{
    vcl_error e;
    vcl_error_clear(&e);
    int v = name_valid(s), c = name_check("fuzz", s, &e);
    FUZZ_CHECK(v == c, "name_valid %d, name_check %d", v, c);
    FUZZ_CHECK(v == name_chars_ok(s), "name_valid %d for a name whose characters say otherwise", v);
    if (!c) {
        FUZZ_CHECK(e.cls == VCL_ERR_PERMANENT && e.msg[0], "a refused name sets a permanent error");
        FUZZ_CHECK(fuzz_printable(e.msg), "error quotes the name printably: %s", e.msg);
    }
}

static void check_dir(const char *d)
{
    vcl_error e;
    vcl_error_clear(&e);
    if (!dir_check("fuzz", d, &e)) {
        FUZZ_CHECK(e.cls == VCL_ERR_PERMANENT && fuzz_printable(e.msg), "dir error: %s", e.msg);
        return;
    }
    size_t n = strlen(d);
    FUZZ_CHECK(d[0] == '/' && n > 1 && n < PATH_MAX, "a valid dir is absolute, not the root");
    /* every component between slashes is a valid name (a trailing '/' is fine) */
    char comp[NAME_MAX_LEN + 2];
    for (const char *p = d + 1; *p;) {
        const char *slash = strchr(p, '/');
        size_t l = slash ? (size_t)(slash - p) : strlen(p);
        FUZZ_CHECK(l > 0, "empty component in '%s'", d);
        FUZZ_CHECK(l <= NAME_MAX_LEN, "overlong component in a valid dir");
        memcpy(comp, p, l);
        comp[l] = '\0';
        FUZZ_CHECK(name_valid(comp), "component '%s' of a valid dir is not a valid name", comp);
        if (!slash)
            break;
        p = slash + 1;
    }
}

/* up to 8 bytes big-endian; a leading '-' makes it negative */
static long long num(const char *s)
{
    unsigned long long v = 0;
    for (size_t i = 0; s[i] && i < 8; i++)
        v = v * 256 + (unsigned char)s[i];
    long long x = (long long)(v >> 1);
    return s[0] == '-' ? -x : x;
}

/* path == dir + ['/'] + base [+ '.' + ext], nothing else */
static void check_under(const char *path, const char *dir, const char *base, const char *ext)
{
    char want[PATH_MAX + 8];
    size_t dl = strlen(dir);
    snprintf(want, sizeof want, "%s%s%s.%s", dir, dir[dl - 1] == '/' ? "" : "/", base, ext);
    FUZZ_CHECK(strcmp(path, want) == 0, "'%s' is not '%s'", path, want);
    FUZZ_CHECK(!strstr(path, "/../") && !strstr(path, "//"), "'%s' climbs or doubles", path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *f[9];
    char *buf;
    vcl_names n;
    vcl_error e;

    if (size > FUZZ_MAX_INPUT)
        return 0;
    fuzz_fields(data, size, &buf, f, 9);
    for (int i = 0; i < 3; i++)
        check_name(f[i]);
    for (int i = 3; i < 6; i++)
        check_dir(f[i]);
    vcl_error_clear(&e);
    if (!mac_check(f[6], &e))
        FUZZ_CHECK(fuzz_printable(e.msg), "MAC error: %s", e.msg);
    else
        FUZZ_CHECK(strlen(f[6]) == 17, "a valid MAC has 17 characters");

    long long image_id = num(f[7]);
    int revision = (int)num(f[8]);
    vcl_error_clear(&e);
    bool built = names_build(f[0], image_id, revision, f[1], f[3], f[4], f[5], f[2], &n, &e);
    bool parts_ok = name_valid(f[0]) && name_valid(f[1]) && name_valid(f[2]) &&
                    dir_check(NULL, f[3], NULL) && dir_check(NULL, f[4], NULL) &&
                    dir_check(NULL, f[5], NULL) && image_id > 0 && revision >= 0;
    if (built) {
        FUZZ_CHECK(parts_ok, "names_build accepted a bad part");
        char want[2 * NAME_MAX_LEN + 2];
        snprintf(want, sizeof want, "%s:%s", f[0], f[1]);
        FUZZ_CHECK(strcmp(n.domain, want) == 0, "domain '%s'", n.domain);
        char base[NAME_MAX_LEN + 64];
        snprintf(base, sizeof base, "%s_%lld-v%d", f[0], image_id, revision);
        FUZZ_CHECK(strcmp(n.file_base, base) == 0, "file base '%s'", n.file_base);
        check_under(n.xml_path, f[3], n.file_base, "xml");
        check_under(n.console_path, f[3], n.file_base, "console.log");
        check_under(n.cow_path, f[4], n.file_base, f[2]);
        check_under(n.master_path, f[5], f[1], f[2]);
    } else {
        FUZZ_CHECK(e.cls == VCL_ERR_PERMANENT && e.msg[0] && fuzz_printable(e.msg),
                   "names_build error: %s", e.msg);
        FUZZ_CHECK(n.domain[0] == '\0' && n.cow_path[0] == '\0', "no half-built names");
    }
    free(buf);
    return 0;
}
