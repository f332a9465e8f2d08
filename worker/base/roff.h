/* roff.h: writing man(7) pages. vcl-worker --help-man and vclctl --help-man
 * print their manual pages from the same tables that drive --help (the
 * operations, the config option table, vclctl's command table), so a manual
 * page can never disagree with --help. These helpers do the escaping. */
#ifndef VCL_ROFF_H
#define VCL_ROFF_H
#include <stdio.h>

/* Text for a roff line, escaped: '\' as \e, '-' as \- (a real minus/hyphen
 * that never becomes a line break), and a '.' or '\'' that would start the
 * line (a control line) behind \&. No newline is added. Embedded newlines
 * start new input lines (each checked for a leading '.' or '\''). */
void roff_text(FILE *f, const char *s);

/* A whole input line: roff_text, then '\n'. */
void roff_line(FILE *f, const char *s);

/* A macro line with one argument: ".B text" with text escaped and quoted
 * when it contains spaces or quotes ("" inside). */
void roff_macro(FILE *f, const char *macro, const char *arg);

/* A tagged paragraph: ".TP", the term in font macro B or I (roff_macro),
 * then text as one line (roff_line). */
void roff_item(FILE *f, const char *font, const char *term, const char *text);

/* The page header: .TH NAME SECTION DATE SOURCE MANUAL (DATE NULL:
 * $SOURCE_DATE_EPOCH, else today, as YYYY-MM-DD in UTC), plus no hyphenation
 * and left adjustment (names like image_lock_timeout_seconds stay whole). */
void roff_header(FILE *f, const char *name, const char *section, const char *date,
                 const char *source, const char *manual);

/* Preformatted text (between .nf/.fi, .RS/.RE indented by 4): each line of s
 * escaped. */
void roff_block(FILE *f, const char *s);

#endif
