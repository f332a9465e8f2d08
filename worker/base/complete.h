/* complete.h: a bash completion script, written from a program's own
 * tables (vcl-worker's option table, vclctl's command and option tables),
 * so it cannot disagree with --help. Both programs print it with the hidden
 * option --help-completion; make writes it to
 * share/bash-completion/completions/PROG.
 *
 * The script completes, after the program name, the words of the "path" of
 * commands typed so far ("" = top level, "node", "node add"): each path has
 * its words (subcommands and options); an option that takes a value skips
 * that value when the path is worked out, and a value named FILE or DIR
 * completes file names. Usage:
 *   completion c; complete_init(&c, "vclctl");
 *   complete_path(&c, "");  complete_option(&c, "--db", "CONNINFO"); ...
 *   complete_path(&c, "node"); complete_word(&c, "add"); ...
 *   complete_write(&c, stdout); complete_clear(&c); */
#ifndef VCL_COMPLETE_H
#define VCL_COMPLETE_H
#include <stdbool.h>
#include <stdio.h>

typedef struct completion {
    char prog[64];
    char fn[72];            /* the bash function: _vcl_worker for vcl-worker */
    char *cases;            /* "path) w1 w2 ..." lines, growing */
    size_t len, cap;
    char takes[2048];       /* " --db --uri " options that take a value */
    char files[1024];       /* " --config " whose value is a file name */
    bool open;              /* a path is being filled */
    bool oom;
} completion;

void complete_init(completion *c, const char *prog);
/* Start the words of PATH (space-separated command words, "" for the top). */
void complete_path(completion *c, const char *path);
void complete_word(completion *c, const char *word);
/* An option ("--uri") with its value placeholder ("URI"; NULL: a flag). */
void complete_option(completion *c, const char *name, const char *arg);
/* The script; false when memory ran out while building it. */
bool complete_write(completion *c, FILE *f);
void complete_clear(completion *c);
#endif
