/* fuzz_qimg.c: the parser of `qemu-img info --output=json` (qimg_info_parse,
 * worker/node/image.c), which reads what a node prints about an image whose
 * bytes anyone with repository access may have written.
 *
 * Input: the JSON text as qemu-img would print it (up to the first NUL).
 * Properties: a parse that succeeds has a format, non-negative sizes and
 * NUL-terminated fields; the same facts printed back as qemu-img's JSON
 * (strings escaped) parse to the same facts; parsing is deterministic. */
#include "node/image.h"
#include "base/util.h"
#include "fuzz.h"

/* a JSON string as qemu-img writes it (QEMU's qjson.c): ASCII only; '"' and
 * '\\' escaped; controls and every character from U+007F up as \uXXXX,
 * above U+FFFF as a surrogate pair. The values come from libyaml, so they
 * are well-formed UTF-8. */
static size_t put_json(char *out, size_t cap, size_t n, const char *s)
{
    if (n + 1 < cap)
        out[n++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p && n + 16 < cap;) {
        size_t l = util_utf8_len(p);
        FUZZ_CHECK(l > 0, "a parsed value is not UTF-8");
        unsigned cp = l == 1 ? p[0]
                    : l == 2 ? (p[0] & 0x1fu) << 6 | (p[1] & 0x3fu)
                    : l == 3 ? (p[0] & 0x0fu) << 12 | (p[1] & 0x3fu) << 6 | (p[2] & 0x3fu)
                    : (p[0] & 0x07u) << 18 | (p[1] & 0x3fu) << 12 | (p[2] & 0x3fu) << 6 | (p[3] & 0x3fu);
        p += l;
        if (cp == '"' || cp == '\\') {
            out[n++] = '\\';
            out[n++] = (char)cp;
        } else if (cp >= 0x20 && cp < 0x7f) {
            out[n++] = (char)cp;
        } else if (cp > 0xffff) {
            cp -= 0x10000;
            n += (size_t)snprintf(out + n, cap - n, "\\u%04X\\u%04X", 0xd800 + (cp >> 10),
                                  0xdc00 + (cp & 0x3ff));
        } else {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04X", cp);
        }
    }
    if (n + 1 < cap)
        out[n++] = '"';
    out[n] = '\0';
    return n;
}

/* the same facts (string fields compared as strings: a duplicate key leaves
 * the bytes of a longer earlier value behind the terminator) */
static bool same(const qimg_info *a, const qimg_info *b)
{
    return strcmp(a->format, b->format) == 0 && a->virtual_size == b->virtual_size &&
           a->actual_size == b->actual_size && strcmp(a->backing_file, b->backing_file) == 0 &&
           strcmp(a->backing_format, b->backing_format) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qimg_info a, b;
    if (size > FUZZ_MAX_INPUT)
        return 0;
    char *json = fuzz_cstr(data, size);
    bool ok = qimg_info_parse(json, &a);
    FUZZ_CHECK(qimg_info_parse(json, &b) == ok && memcmp(&a, &b, sizeof a) == 0,
               "two parses of the same text differ");
    if (!ok) {
        static const qimg_info zero;
        FUZZ_CHECK(memcmp(&a, &zero, sizeof a) == 0, "a failed parse leaves fields set");
        free(json);
        return 0;
    }
    FUZZ_CHECK(a.format[0] && memchr(a.format, '\0', sizeof a.format), "format '%.31s'", a.format);
    FUZZ_CHECK(memchr(a.backing_file, '\0', sizeof a.backing_file) &&
                   memchr(a.backing_format, '\0', sizeof a.backing_format),
               "unterminated field");
    FUZZ_CHECK(a.virtual_size >= 0 && a.actual_size >= 0, "negative size");

    /* print the facts back the way qemu-img does and read them again */
    static char again[13 * 4096 + 512];
    size_t n = (size_t)snprintf(again, sizeof again, "{\n    \"virtual-size\": %lld,\n    \"format\": ",
                                a.virtual_size);
    n = put_json(again, sizeof again, n, a.format);
    n += (size_t)snprintf(again + n, sizeof again - n, ",\n    \"actual-size\": %lld", a.actual_size);
    if (a.backing_file[0]) {
        n += (size_t)snprintf(again + n, sizeof again - n, ",\n    \"full-backing-filename\": ");
        n = put_json(again, sizeof again, n, a.backing_file);
    }
    if (a.backing_format[0]) {
        n += (size_t)snprintf(again + n, sizeof again - n, ",\n    \"backing-filename-format\": ");
        n = put_json(again, sizeof again, n, a.backing_format);
    }
    snprintf(again + n, sizeof again - n, "\n}\n");
    FUZZ_CHECK(qimg_info_parse(again, &b), "qemu-img's own form of the facts is refused:\n%s", again);
    FUZZ_CHECK(same(&a, &b), "the facts do not survive printing:\n%s", again);
    free(json);
    return 0;
}
