/* complete.c: bash completion scripts from the programs' tables; see complete.h. */
#include "base/complete.h"

#include <string.h>

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

void complete_init(completion *c, const char *prog, FILE *f)
{
    memset(c, 0, sizeof *c);
    c->f = f;
    snprintf(c->prog, sizeof c->prog, "%s", prog);
    snprintf(c->fn, sizeof c->fn, "_%s", prog);
    for (char *p = c->fn; *p; p++)
        if (*p == '-')
            *p = '_';
    /* the words of each path first; the function that uses them, and the
     * option sets (read when it runs), in complete_end */
    fprintf(f,
            "# bash completion for %1$s, made by `%1$s --help-completion` from the tables\n"
            "# behind `%1$s --help` (do not edit: it is regenerated with the program).\n"
            "%2$s_words() {\n"
            "    case \"$1\" in\n",
            c->prog, c->fn);
}

void complete_path(completion *c, const char *path)
{
    if (c->open)
        fputs("\";;\n", c->f);
    fprintf(c->f, "        \"%s\") echo \"", path);
    c->open = true;
}

void complete_word(completion *c, const char *word)
{
    fprintf(c->f, " %s", word);
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

bool complete_end(completion *c)
{
    if (c->open) {
        fputs("\";;\n", c->f);
        c->open = false;
    }
    fprintf(c->f,
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
            "%2$s_takes='%3$s'\n"
            "%2$s_files='%4$s'\n"
            "complete -F %2$s %1$s\n",
            c->prog, c->fn, c->takes, c->files);
    return !ferror(c->f);
}
