/* fuzz_qimg.c: the parser of `qemu-img info --output=json` (qimg_info_parse,
 * worker/node/image.c), which reads what a node prints about an image whose
 * bytes anyone with repository access may have written.
 *
 * Input: the JSON text as qemu-img would print it (up to the first NUL).
 * Properties: a parse that succeeds has a format, non-negative sizes and
 * NUL-terminated fields; the same facts printed back as qemu-img's JSON
 * (strings escaped) parse to the same facts; parsing is deterministic. */
#include "node/image.h"
#include "fuzz.h"

/* a JSON string, escaped as qemu-img (glib's JSON writer) would */
static size_t put_json(char *out, size_t cap, size_t n, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    if (n + 1 < cap)
        out[n++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p && n + 8 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            out[n++] = '\\';
            out[n++] = (char)*p;
        } else if (*p < 0x20) {
            memcpy(out + n, "\\u00", 4);
            out[n + 4] = hex[*p >> 4];
            out[n + 5] = hex[*p & 15];
            n += 6;
        } else {
            out[n++] = (char)*p;
        }
    }
    if (n + 1 < cap)
        out[n++] = '"';
    out[n] = '\0';
    return n;
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
    static char again[3 * 4096 + 512];
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
    FUZZ_CHECK(memcmp(&a, &b, sizeof a) == 0, "the facts do not survive printing:\n%s", again);
    free(json);
    return 0;
}
