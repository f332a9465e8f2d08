/* names.c: strict names and the node naming scheme; see names.h.
 *
 * Every check fills a permanent vcl_error whose message names the offending
 * value (made printable and shortened: it may be hostile) and says why it was
 * refused, so the operator reading the reservation knows what to fix. */
#include "base/names.h"
#include "base/util.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>

/* How much of a bad value is quoted back in an error message. */
#define SHOW_MAX 64

static bool name_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

/* A printable copy of an untrusted value for an error message: printable ASCII
 * as is, anything else as \xNN, at most SHOW_MAX input bytes then "...". */
void names_show(const char *s, char *buf, size_t size)
{
    size_t o = 0;
    size_t i;

    if (size == 0)
        return;
    buf[0] = '\0';
    if (!s)
        return;
    for (i = 0; s[i] && i < SHOW_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        int w;
        if (c >= 0x20 && c < 0x7f)
            w = snprintf(buf + o, size - o, "%c", c);
        else
            w = snprintf(buf + o, size - o, "\\x%02x", c);
        if (w < 0 || (size_t)w >= size - o) {
            buf[o] = '\0';
            return;
        }
        o += (size_t)w;
    }
    if (s[i] && o + 4 <= size)
        snprintf(buf + o, size - o, "...");
}

/* One character for an error message: 'c' or '\xNN'. */
static void show_char(unsigned char c, char *buf, size_t size)
{
    if (c >= 0x20 && c < 0x7f)
        snprintf(buf, size, "%c", c);
    else
        snprintf(buf, size, "\\x%02x", c);
}

/* The reason a name is not valid, or NULL when it is. why must hold 128. */
static const char *name_problem(const char *s, char *why, size_t size)
{
    size_t len;
    char ch[8];

    if (!s)
        return "none given";
    len = strlen(s);
    if (len == 0)
        return "it is empty";
    if (len > NAME_MAX_LEN) {
        snprintf(why, size, "%zu characters, at most %d allowed", len, NAME_MAX_LEN);
        return why;
    }
    if (s[0] == '.' || s[0] == '-') {
        snprintf(why, size, "must not start with '%c'", s[0]);
        return why;
    }
    for (size_t i = 0; i < len; i++) {
        if (!name_char_ok((unsigned char)s[i])) {
            show_char((unsigned char)s[i], ch, sizeof ch);
            snprintf(why, size,
                     "character '%s' at position %zu is not allowed "
                     "(use letters, digits, '.', '_', '-')",
                     ch, i + 1);
            return why;
        }
    }
    return NULL;
}

bool name_valid(const char *s)
{
    char why[160];
    return name_problem(s, why, sizeof why) == NULL;
}

bool name_check(const char *what, const char *s, vcl_error *e)
{
    char why[160], shown[SHOW_MAX * 4 + 4];
    const char *p = name_problem(s, why, sizeof why);

    if (!p)
        return true;
    if (!what)
        what = "given";
    if (!s)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "invalid %s name: %s", what, p);
    names_show(s, shown, sizeof shown);
    return vcl_error_set(e, VCL_ERR_PERMANENT, "invalid %s name '%s': %s", what, shown, p);
}

/* "/": the root itself is refused too: a node directory that is the root would
 * let cleanup and copies reach every file on the node. */
bool dir_check(const char *what, const char *dir, vcl_error *e)
{
    char why[512], shown[SHOW_MAX * 4 + 4];
    const char *p = NULL;
    size_t len;

    if (!what)
        what = "given";
    if (!dir)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "invalid %s directory: none given", what);
    len = strlen(dir);
    if (len == 0) {
        p = "it is empty";
    } else if (len >= PATH_MAX) {
        snprintf(why, sizeof why, "%zu characters, at most %d allowed", len, PATH_MAX - 1);
        p = why;
    } else if (dir[0] != '/') {
        p = "must be an absolute path (start with '/')";
    } else if (len == 1) {
        p = "must not be the root directory";
    } else {
        /* Walk the components between slashes; a single trailing '/' is fine. */
        size_t start = 1;
        while (start < len && !p) {
            const char *slash = strchr(dir + start, '/');
            size_t end = slash ? (size_t)(slash - dir) : len;
            size_t clen = end - start;
            char comp[NAME_MAX_LEN + 2], cwhy[160];
            const char *cp;

            if (clen == 0) {
                snprintf(why, sizeof why, "empty component at position %zu ('//')", start + 1);
                p = why;
                break;
            }
            if (clen > NAME_MAX_LEN) {
                snprintf(why, sizeof why, "component at position %zu has %zu characters, at most %d allowed",
                         start + 1, clen, NAME_MAX_LEN);
                p = why;
                break;
            }
            memcpy(comp, dir + start, clen);
            comp[clen] = '\0';
            cp = name_problem(comp, cwhy, sizeof cwhy);
            if (cp) {
                char cshown[SHOW_MAX * 4 + 4];
                names_show(comp, cshown, sizeof cshown);
                snprintf(why, sizeof why, "component '%s': %s", cshown,
                         comp[0] == '.' ? "not allowed (no '.', '..' or hidden components)" : cp);
                p = why;
                break;
            }
            start = end + 1;
        }
    }
    if (!p)
        return true;
    names_show(dir, shown, sizeof shown);
    return vcl_error_set(e, VCL_ERR_PERMANENT, "invalid %s directory '%s': %s", what, shown, p);
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool mac_check(const char *mac, vcl_error *e)
{
    char shown[SHOW_MAX * 4 + 4];
    const char *p = NULL;
    int first = 0;
    bool all_zero = true;

    if (!mac)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "invalid MAC address: none given");
    if (strlen(mac) != 17) {
        p = "expected six hex pairs separated by ':' (like 52:54:00:ab:cd:ef)";
    } else {
        for (int i = 0; i < 6 && !p; i++) {
            int hi = hexval((unsigned char)mac[3 * i]);
            int lo = hexval((unsigned char)mac[3 * i + 1]);
            if (hi < 0 || lo < 0 || (i < 5 && mac[3 * i + 2] != ':'))
                p = "expected six hex pairs separated by ':' (like 52:54:00:ab:cd:ef)";
            else {
                if (i == 0)
                    first = hi * 16 + lo;
                if (hi || lo)
                    all_zero = false;
            }
        }
        if (!p && (first & 1))
            p = "it is a multicast address (the low bit of the first octet must be 0)";
        else if (!p && all_zero)
            p = "the all-zero address is not a usable MAC";
    }
    if (!p)
        return true;
    names_show(mac, shown, sizeof shown);
    return vcl_error_set(e, VCL_ERR_PERMANENT, "invalid MAC address '%s': %s", shown, p);
}

bool names_master(const char *file_stem, const char *master_dir, const char *disk_ext, char *out,
                  size_t size, vcl_error *e)
{
    char shown[SHOW_MAX * 4 + 4];
    if (!name_check("image file stem", file_stem, e) || !name_check("disk extension", disk_ext, e) ||
        !dir_check("master image", master_dir, e))
        return false;
    if (!util_join_path(out, size, master_dir, file_stem, disk_ext)) {
        names_show(master_dir, shown, sizeof shown);
        return vcl_error_set(e, VCL_ERR_PERMANENT, "master image path for '%s' under '%s' would "
                             "exceed %zu bytes", file_stem, shown, size - 1);
    }
    return true;
}

bool names_build(const char *computer, long long image_id, int revision, const char *file_stem,
                 const char *xml_dir, const char *cow_dir, const char *master_dir,
                 const char *disk_ext, vcl_names *out, vcl_error *e)
{
    bool ok = false;
    char shown[SHOW_MAX * 4 + 4];
    int w;

    if (!out)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "names_build: no output given");
    memset(out, 0, sizeof *out);

    if (!name_check("computer", computer, e) || !name_check("image file stem", file_stem, e) ||
        !name_check("disk extension", disk_ext, e) || !dir_check("XML", xml_dir, e) ||
        !dir_check("COW disk", cow_dir, e) || !dir_check("master image", master_dir, e))
        goto cleanup;
    if (names_same_dir(cow_dir, master_dir)) {
        names_show(cow_dir, shown, sizeof shown);
        vcl_error_set(e, VCL_ERR_PERMANENT,
                      "the COW directory '%s' is the master image directory: a file stem could "
                      "name another computer's COW disk; give the node a cow_dir of its own "
                      "(vclctl node set --cow-dir)", shown);
        goto cleanup;
    }
    if (image_id <= 0) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "invalid image id %lld for computer '%s': must be > 0",
                      image_id, computer);
        goto cleanup;
    }
    if (revision < 0) {
        vcl_error_set(e, VCL_ERR_PERMANENT,
                      "invalid image revision %d for computer '%s': must be >= 0", revision, computer);
        goto cleanup;
    }

    w = snprintf(out->domain, sizeof out->domain, "%s:%s", computer, file_stem);
    if (w < 0 || (size_t)w >= sizeof out->domain) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "domain name for computer '%s' would be too long", computer);
        goto cleanup;
    }
    w = snprintf(out->file_base, sizeof out->file_base, "%s_%lld-v%d", computer, image_id, revision);
    if (w < 0 || (size_t)w >= sizeof out->file_base) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "file base name for computer '%s' would be too long", computer);
        goto cleanup;
    }
    if (!util_join_path(out->xml_path, sizeof out->xml_path, xml_dir, out->file_base, "xml")) {
        names_show(xml_dir, shown, sizeof shown);
        vcl_error_set(e, VCL_ERR_PERMANENT, "XML path for '%s' under '%s' would exceed %d bytes", out->file_base,
                      shown, PATH_MAX - 1);
        goto cleanup;
    }
    if (!util_join_path(out->console_path, sizeof out->console_path, xml_dir, out->file_base,
                   "console.log")) {
        names_show(xml_dir, shown, sizeof shown);
        vcl_error_set(e, VCL_ERR_PERMANENT, "console log path for '%s' under '%s' would exceed %d bytes",
                      out->file_base, shown, PATH_MAX - 1);
        goto cleanup;
    }
    if (!util_join_path(out->cow_path, sizeof out->cow_path, cow_dir, out->file_base, disk_ext)) {
        names_show(cow_dir, shown, sizeof shown);
        vcl_error_set(e, VCL_ERR_PERMANENT, "COW disk path for '%s' under '%s' would exceed %d bytes", out->file_base,
                      shown, PATH_MAX - 1);
        goto cleanup;
    }
    if (!names_master(file_stem, master_dir, disk_ext, out->master_path, sizeof out->master_path, e))
        goto cleanup;
    ok = true;

cleanup:
    if (!ok)
        memset(out, 0, sizeof *out);
    return ok;
}

/* Length of dir without its trailing '/', keeping at least keep bytes. */
static size_t dir_len(const char *dir, size_t keep)
{
    size_t n = strlen(dir);
    while (n > keep && dir[n - 1] == '/')
        n--;
    return n;
}

bool names_same_dir(const char *a, const char *b)
{
    if (!a || !b)
        return false;
    size_t al = dir_len(a, 1), bl = dir_len(b, 1);
    return al == bl && strncmp(a, b, al) == 0;
}

bool names_dir_inside(const char *inner, const char *outer)
{
    if (!inner || !outer)
        return false;
    /* "/" becomes "": every absolute path is below it */
    size_t il = dir_len(inner, 1), ol = dir_len(outer, 0);
    return il > ol + 1 && strncmp(inner, outer, ol) == 0 && inner[ol] == '/';
}

#define TEMP_TAG ".tmp-vcl+"
#define TEMP_HEX 16

bool names_temp(const char *final, char *out, size_t size)
{
    unsigned char r[TEMP_HEX / 2];
    char hex[TEMP_HEX + 1];
    int w;

    if (!final || !out || size == 0)
        return false;
    out[0] = '\0';
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        return false;
    for (size_t i = 0; i < sizeof r; i++)
        snprintf(hex + 2 * i, 3, "%02x", r[i]);
    w = snprintf(out, size, "%s" TEMP_TAG "%s", final, hex);
    if (w < 0 || (size_t)w >= size) {
        out[0] = '\0';
        return false;
    }
    return true;
}

/* s is exactly n characters from set, then rest */
static bool span_then(const char *s, const char *set, size_t min, size_t max, const char **rest)
{
    size_t n = strspn(s, set);
    if (n < min || n > max)
        return false;
    *rest = s + n;
    return true;
}

bool names_is_temp(const char *name, const char *base)
{
    size_t bl;
    const char *p;

    if (!name || !base || !base[0])
        return false;
    bl = strlen(base);
    if (strncmp(name, base, bl) != 0)
        return false;
    p = name + bl;
    if (strncmp(p, TEMP_TAG, strlen(TEMP_TAG)) == 0) {
        if (!span_then(p + strlen(TEMP_TAG), "0123456789abcdef", TEMP_HEX, TEMP_HEX, &p))
            return false;
        return !*p || strcmp(p, "-conv") == 0;
    }
    /* an older worker's "<base>.tmp-<reservation id>[-conv]" */
    if (strncmp(p, ".tmp-", 5) != 0 || !span_then(p + 5, "0123456789", 1, 20, &p))
        return false;
    return !*p || strcmp(p, "-conv") == 0;
}

bool names_domain_of(const char *domain, const char *computer)
{
    if (!domain || !computer || !name_valid(computer))
        return false;
    size_t cl = strlen(computer);
    return strncmp(domain, computer, cl) == 0 && domain[cl] == ':';
}

bool names_owned_by(const char *name, const char *computer)
{
    char base[NAME_MAX_LEN + 64 + 16];
    size_t n, cl;
    char *dot, *v, *p;

    if (!name || !computer || !name_valid(computer) || strchr(name, '/'))
        return false;
    n = strlen(name);
    if (n >= sizeof base)
        return false;
    memcpy(base, name, n + 1);
    /* the suffix: ".console.log", else the last ".<ext>" */
    if (n > 12 && strcmp(base + n - 12, ".console.log") == 0)
        base[n - 12] = '\0';
    else {
        dot = strrchr(base, '.');
        if (!dot || !name_valid(dot + 1))
            return false;
        *dot = '\0';
    }
    /* "<computer>_<digits>-v<digits>", from the right */
    v = strrchr(base, 'v');
    if (!v || v == base || v[-1] != '-' || !v[1] || strspn(v + 1, "0123456789") != strlen(v + 1))
        return false;
    p = v - 1; /* the '-' */
    char *q = p;
    while (q > base && q[-1] >= '0' && q[-1] <= '9')
        q--;
    if (q == p || q == base || q[-1] != '_')
        return false;
    cl = (size_t)(q - 1 - base);
    return cl == strlen(computer) && strncmp(base, computer, cl) == 0;
}
