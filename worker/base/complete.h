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
 * completes file names. Written as it goes (nothing to free). Usage:
 *   completion c; complete_init(&c, "vclctl", stdout);
 *   complete_path(&c, "");  complete_option(&c, "--db", "CONNINFO"); ...
 *   complete_path(&c, "node"); complete_word(&c, "add"); ...
 *   ok = complete_end(&c); */
#ifndef VCL_COMPLETE_H
#define VCL_COMPLETE_H
#include <stdbool.h>
#include <stdio.h>

typedef struct completion {
    FILE *f;
    char prog[64];
    char fn[72];            /* the bash function: _vcl_worker for vcl-worker */
    char takes[2048];       /* " --db --uri " options that take a value */
    char files[1024];       /* " --config " whose value is a file name */
    bool open;              /* a path's line is being written */
} completion;

void complete_init(completion *c, const char *prog, FILE *f);
/* Start the words of PATH (space-separated command words, "" for the top). */
void complete_path(completion *c, const char *path);
void complete_word(completion *c, const char *word);
/* An option ("--uri") with its value placeholder ("URI"; NULL: a flag). */
void complete_option(completion *c, const char *name, const char *arg);
/* The rest of the script; false when writing failed. */
bool complete_end(completion *c);
#endif
