/* replay.c: a main() for the fuzz harnesses without libFuzzer: calls
 * LLVMFuzzerTestOneInput once on every file named on the command line, and
 * on every regular file (sorted by name) of every directory named. `make
 * check` links each harness with this file under gcc's
 * -fsanitize=address,undefined and runs it over tests/fuzz/corpus/<target>/
 * (tests/fuzz/replay.t), so the corpora, and every crash input kept there,
 * are replayed without clang.
 *
 * Prints "replayed N inputs" and exits 0; a failed property or a sanitizer
 * report aborts with the name of the input on stderr. Exit 2 when a path
 * cannot be read (a missing corpus must not pass as "0 inputs"). */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static bool read_all(const char *path, uint8_t **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    bool ok = false;

    if (!f)
        goto cleanup;
    for (;;) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb)
                goto cleanup;
            buf = nb;
            cap = ncap;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    ok = !ferror(f);
cleanup:
    if (f)
        fclose(f);
    if (!ok) {
        free(buf);
        return false;
    }
    /* a copy of exactly n bytes: ASan sees a read past the input */
    *data = malloc(n ? n : 1);
    if (!*data) {
        free(buf);
        return false;
    }
    memcpy(*data, buf, n);
    free(buf);
    *len = n;
    return true;
}

static bool replay_file(const char *path, size_t *count)
{
    uint8_t *data = NULL;
    size_t len = 0;
    if (!read_all(path, &data, &len)) {
        fprintf(stderr, "replay: cannot read %s: %s\n", path, strerror(errno));
        return false;
    }
    /* named before the run: a crash leaves this as the last line */
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
    LLVMFuzzerTestOneInput(data, len);
    free(data);
    (*count)++;
    return true;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static bool replay_path(const char *path, size_t *count)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode))
        return replay_file(path, count);

    struct dirent **ents = NULL;
    int n = scandir(path, &ents, NULL, by_name);
    bool ok = n >= 0;
    if (!ok)
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
    for (int i = 0; i < n; i++) {
        char p[4096];
        struct stat fst;
        if (ok && ents[i]->d_name[0] != '.' &&
            snprintf(p, sizeof p, "%s/%s", path, ents[i]->d_name) < (int)sizeof p &&
            stat(p, &fst) == 0 && S_ISREG(fst.st_mode))
            ok = replay_file(p, count);
        free(ents[i]);
    }
    free(ents);
    return ok;
}

int main(int argc, char **argv)
{
    size_t count = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE-OR-DIRECTORY...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++)
        if (!replay_path(argv[i], &count))
            return 2;
    printf("replayed %zu inputs\n", count);
    return 0;
}
