/* complete.c: bash completion scripts from the programs' tables; see complete.h. */
#include "base/complete.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void append(completion *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void append(completion *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || c->oom)
        return;
    if (c->len + (size_t)n + 1 > c->cap) {
        size_t cap = (c->cap ? c->cap * 2 : 4096) + (size_t)n;
        char *p = realloc(c->cases, cap);
        if (!p) {
            c->oom = true;
            return;
        }
        c->cases = p;
        c->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(c->cases + c->len, c->cap - c->len, fmt, ap);
    va_end(ap);
    c->len += (size_t)n;
}

/* " word " into a set kept as " a b c " (no duplicates). */
static void set_add(char *set, size_t size, const char *word)
{
    char key[96];
    snprintf(key, sizeof key, " %s ", word);
    if (strstr(set, key))
        return;
    size_t n = strlen(set);
    snprintf(set + n, size - n, "%s%s ", n ? "" : " ", word);
}

void complete_init(completion *c, const char *prog)
{
    memset(c, 0, sizeof *c);
    snprintf(c->prog, sizeof c->prog, "%s", prog);
    snprintf(c->fn, sizeof c->fn, "_%s", prog);
    for (char *p = c->fn; *p; p++)
        if (*p == '-')
            *p = '_';
}

void complete_path(completion *c, const char *path)
{
    if (c->open)
        append(c, "\";;\n");
    append(c, "        \"%s\") echo \"", path);
    c->open = true;
}

void complete_word(completion *c, const char *word)
{
    append(c, " %s", word);
}

void complete_option(completion *c, const char *name, const char *arg)
{
    complete_word(c, name);
    if (!arg)
        return;
    set_add(c->takes, sizeof c->takes, name);
    if (strstr(arg, "FILE") || strstr(arg, "DIR") || strstr(arg, "PATH"))
        set_add(c->files, sizeof c->files, name);
}

bool complete_write(completion *c, FILE *f)
{
    if (c->open) {
        append(c, "\";;\n");
        c->open = false;
    }
    if (c->oom)
        return false;
    fprintf(f,
            "# bash completion for %1$s, made by `%1$s --help-completion` from the tables\n"
            "# behind `%1$s --help` (do not edit: it is regenerated with the program).\n"
            "%2$s_words() {\n"
            "    case \"$1\" in\n"
            "%3$s"
            "        *) return 1;;\n"
            "    esac\n"
            "}\n"
            "%2$s() {\n"
            "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}\n"
            "    local path='' i w words\n"
            "    # an option's value: file names for FILE/DIR/PATH, else nothing to offer\n"
            "    if ((COMP_CWORD > 1)) && [[ $%2$s_takes == *\" $prev \"* ]]; then\n"
            "        if [[ $%2$s_files == *\" $prev \"* ]]; then\n"
            "            mapfile -t COMPREPLY < <(compgen -f -- \"$cur\")\n"
            "        else\n"
            "            COMPREPLY=()\n"
            "        fi\n"
            "        return 0\n"
            "    fi\n"
            "    # the command path typed so far: words that extend a known path\n"
            "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
            "        w=${COMP_WORDS[i]}\n"
            "        if [[ $%2$s_takes == *\" $w \"* ]]; then\n"
            "            ((i++))\n"
            "        elif [[ $w != -* ]] && %2$s_words \"${path:+$path }$w\" >/dev/null; then\n"
            "            path=${path:+$path }$w\n"
            "        fi\n"
            "    done\n"
            "    words=$(%2$s_words \"$path\")\n"
            "    mapfile -t COMPREPLY < <(compgen -W \"$words\" -- \"$cur\")\n"
            "    return 0\n"
            "}\n"
            "%2$s_takes='%4$s'\n"
            "%2$s_files='%5$s'\n"
            "complete -F %2$s %1$s\n",
            c->prog, c->fn, c->cases ? c->cases : "", c->takes, c->files);
    return !ferror(f);
}

void complete_clear(completion *c)
{
    free(c->cases);
    memset(c, 0, sizeof *c);
}
