/* names.h: strict names and the node naming scheme (from VCL's libvirt module).
 * Every name that reaches a path, a command line, a domain name or XML is
 * checked here first: letters, digits, '.', '_', '-'; no leading '.' or '-';
 * 1..NAME_MAX_LEN characters. A name that fails is an error, never a path.
 *   domain name:  <computer>:<revision file stem>
 *   file base:    <computer>_<image id>-v<revision>
 *   XML file:     <xml dir>/<file base>.xml
 *   console log:  <xml dir>/<file base>.console.log (the guest's serial port)
 *   COW disk:     <cow dir>/<file base>.<ext>
 *   master image: <master image dir>/<file stem>.<ext>
 *   temp file:    <final path>.tmp-vcl+<16 hex digits>[-conv]
 * Masters and COW disks never share a name space: the COW directory must not
 * be the master image directory (names_build refuses it, and so does the
 * schema's node_cow_dir_not_master_dir), so a file stem that equals another
 * computer's file base ("pc2_7-v3") names a master, never that COW (one
 * directory inside the other is fine: no name holds a '/'; the node check's
 * "disk dirs" item fails when they are the same). A temp file holds '+',
 * which no name, stem or file base can: names_is_temp can never match a
 * master or a COW. Its random suffix is recorded in vcl.temp_file before the
 * file is created, and a stale-temp cleanup removes only recorded temps
 * whose job's lease is gone (node/temps.h): a file that merely has the temp
 * form is never removed. */
#ifndef VCL_NAMES_H
#define VCL_NAMES_H
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include "base/error.h"

#define NAME_MAX_LEN 100

bool name_valid(const char *s);
/* A printable copy of an untrusted value for a message: printable ASCII as
 * is, anything else as \xNN, at most 64 input bytes then "..."; size 260
 * holds any. */
void names_show(const char *s, char *buf, size_t size);
/* Fills e (permanent) with "invalid <what> name '<s>': <why>" when not valid. */
bool name_check(const char *what, const char *s, vcl_error *e);
/* Absolute directory: starts with '/', every component a valid name (so no
 * '..', no empty or dot components except a trailing '/'), < PATH_MAX. */
bool dir_check(const char *what, const char *dir, vcl_error *e);
/* MAC "52:54:00:ab:cd:ef" (lower or upper hex); unicast (low bit of first octet 0). */
bool mac_check(const char *mac, vcl_error *e);

typedef struct vcl_names {
    char domain[2 * NAME_MAX_LEN + 2];
    char file_base[NAME_MAX_LEN + 64];
    char xml_path[PATH_MAX];
    char console_path[PATH_MAX];
    char cow_path[PATH_MAX];
    char master_path[PATH_MAX];
} vcl_names;

/* The same directory after dropping trailing '/': "/a/b/" and "/a/b". */
bool names_same_dir(const char *a, const char *b);
/* inner is a directory strictly below outer, by name (trailing '/'
 * dropped): "/a/b/c" is inside "/a/b" and "/", "/a/bc" is not inside "/a/b". */
bool names_dir_inside(const char *inner, const char *outer);
/* "<final>.tmp-vcl+<16 random hex digits>" into out (size > strlen(final) + 26);
 * false when no random bytes or too long. */
bool names_temp(const char *final, char *out, size_t size);
/* name (a file name, no directory) is a temp file of base (the final file
 * name): exactly "<base>.tmp-vcl+<16 hex>", optionally then "-conv"; the
 * form before the random suffix ("<base>.tmp-<digits>[-conv]", exactly) too,
 * for leftovers of an older worker. A master or COW name never matches.
 * The form alone never makes a file removable (node/temps.h: only recorded
 * temps are); node/temps.c uses it to log look-alikes it leaves alone. */
bool names_is_temp(const char *name, const char *base);
/* name (a file name, no directory) is one of this computer's files, exactly:
 * "<computer>_<digits>-v<digits>" then ".<ext>", ".xml" or ".console.log"
 * (ext a valid name without '.'). Read from the right, so computer "pc"
 * never owns "pc_1_7-v3.qcow2" (computer "pc_1"'s). */
bool names_owned_by(const char *name, const char *computer);

/* Is domain in computer's domain name space, "<computer>:<anything>"? No
 * name holds ':', so computer "pc" matches neither "pc1:x" nor "pc_1:x".
 * A pre-filter only: it proves nothing about ownership (the <metadata>
 * owner element does), it says which domains can be worth asking. */
bool names_domain_of(const char *domain, const char *computer);

/* The master path alone, "<master_dir>/<file_stem>.<disk_ext>", with the
 * checks names_build makes of those three (an operation on a node with no
 * computer: stage_image); false + permanent error otherwise. */
bool names_master(const char *file_stem, const char *master_dir, const char *disk_ext, char *out,
                  size_t size, vcl_error *e);
/* Check every input and build all names; false + permanent error otherwise.
 * disk_ext has no dot ("qcow2"). */
bool names_build(const char *computer, long long image_id, int revision, const char *file_stem,
                 const char *xml_dir, const char *cow_dir, const char *master_dir,
                 const char *disk_ext, vcl_names *out, vcl_error *e);
#endif
