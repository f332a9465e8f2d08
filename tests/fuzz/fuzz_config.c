/* fuzz_config.c: the YAML configuration (worker/base/config.c): load,
 * validate, --print-config, and the SIGHUP reload merge.
 *
 * Input: one or two config files separated by the first NUL byte: with
 * one, it is loaded over the defaults; with two, the first is the running
 * config and the second the file a SIGHUP reads. (config_load takes a path:
 * the bytes go to a memfd, read as /proc/self/fd/N.)
 * Properties: a refused file says why (file:line:col); a loaded config
 * prints as YAML that loads again and prints the same (print is a fixed
 * point after one step: passwords are masked once); the reload merge keeps
 * exactly the restart-only options that changed, applies the others, and a
 * second merge finds no restart-only change left. */
#include <sys/mman.h>
#include <unistd.h>

#include "base/config.h"
#include "base/log.h"
#include "fuzz.h"

static int fd_a = -1, fd_b = -1;

static void put(int fd, const void *p, size_t n, char *path, size_t path_len)
{
    FUZZ_CHECK(ftruncate(fd, 0) == 0, "ftruncate");
    FUZZ_CHECK(n == 0 || pwrite(fd, p, n, 0) == (ssize_t)n, "pwrite");
    snprintf(path, path_len, "/proc/self/fd/%d", fd);
}

static char *print(const vcl_config *c)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    FUZZ_CHECK(f != NULL, "open_memstream");
    config_print(c, f);
    fclose(f);
    return text;
}

/* print -> load -> print gives the same text */
static void check_print(const vcl_config *c)
{
    char path[64], *p1 = print(c), *p2;
    vcl_config again;
    vcl_error e;

    put(fd_b, p1, strlen(p1), path, sizeof path);
    config_defaults(&again);
    vcl_error_clear(&e);
    FUZZ_CHECK(config_load(&again, path, &e), "printed config does not load: %s\n%s", e.msg, p1);
    p2 = print(&again);
    FUZZ_CHECK(strcmp(p1, p2) == 0, "print differs after a load:\n%s\n---\n%s", p1, p2);
    free(p2);
    config_clear(&again);
    free(p1);
}

static bool load(vcl_config *c, int fd, const uint8_t *data, size_t size)
{
    char path[64];
    vcl_error e;
    put(fd, data, size, path, sizeof path);
    config_defaults(c);
    vcl_error_clear(&e);
    if (!config_load(c, path, &e)) {
        FUZZ_CHECK(e.msg[0] && strncmp(e.msg, path, strlen(path)) == 0,
                   "a refused file names itself: %s", e.msg);
        return false;
    }
    vcl_error_clear(&e);
    if (!config_validate(c, &e)) {
        FUZZ_CHECK(e.msg[0], "a refused config says why");
        return false;
    }
    FUZZ_CHECK(config_stage_deadline(c, "define") >= 0, "negative deadline");
    return true;
}

static void check_merge(vcl_config *next, const vcl_config *running)
{
    config_changes ch, ch2;
    config_reload_merge(next, running, &ch);
    FUZZ_CHECK(ch.n_kept + ch.n_applied <= CONFIG_MAX_OPTIONS, "too many changes");
    for (int i = 0; i < ch.n_kept; i++)
        FUZZ_CHECK(config_needs_restart(ch.kept[i]), "kept '%s' is reloadable", ch.kept[i]);
    for (int i = 0; i < ch.n_applied; i++)
        FUZZ_CHECK(!config_needs_restart(ch.applied[i]), "applied '%s' needs a restart",
                   ch.applied[i]);
    config_reload_merge(next, running, &ch2);
    FUZZ_CHECK(ch2.n_kept == 0, "a restart-only option '%s' still differs after the merge",
               ch2.kept[0]);
    FUZZ_CHECK(ch2.n_applied == ch.n_applied, "applied %d then %d", ch.n_applied, ch2.n_applied);
    for (int i = 0; i < ch.n_applied; i++)
        FUZZ_CHECK(strcmp(ch.applied[i], ch2.applied[i]) == 0, "applied list changed");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vcl_config running, next;

    if (size > FUZZ_MAX_INPUT)
        return 0;
    if (fd_a < 0) {
        log_set_level(LOG_LVL_ERROR);
        fd_a = memfd_create("fuzz-config-a", 0);
        fd_b = memfd_create("fuzz-config-b", 0);
        FUZZ_CHECK(fd_a >= 0 && fd_b >= 0, "memfd_create");
    }
    const uint8_t *nul = memchr(data, '\0', size);
    size_t la = nul ? (size_t)(nul - data) : size;

    bool ok_a = load(&running, fd_a, data, la);
    if (ok_a)
        check_print(&running);
    if (nul) {
        bool ok_b = load(&next, fd_a, nul + 1, size - la - 1);
        if (ok_b) {
            if (!ok_a) {
                config_clear(&running);
                config_defaults(&running);
            }
            check_print(&next);
            check_merge(&next, &running);
        }
        config_clear(&next);
    }
    config_clear(&running);
    return 0;
}
