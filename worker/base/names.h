/* names.h: strict names and the node naming scheme (from VCL's libvirt module).
 * Every name that reaches a path, a command line, a domain name or XML is
 * checked here first: letters, digits, '.', '_', '-'; no leading '.' or '-';
 * 1..NAME_MAX_LEN characters. A name that fails is an error, never a path.
 *   domain name:  <computer>:<revision file stem>
 *   file base:    <computer>_<image id>-v<revision>
 *   XML file:     <xml dir>/<file base>.xml
 *   console log:  <xml dir>/<file base>.console.log (the guest's serial port)
 *   COW disk:     <cow dir>/<file base>.<ext>
 *   master image: <master image dir>/<file stem>.<ext> */
#ifndef VCL_NAMES_H
#define VCL_NAMES_H
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include "base/error.h"

#define NAME_MAX_LEN 100

bool name_valid(const char *s);
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

/* Check every input and build all names; false + permanent error otherwise.
 * disk_ext has no dot ("qcow2"). */
bool names_build(const char *computer, long long image_id, int revision, const char *file_stem,
                 const char *xml_dir, const char *cow_dir, const char *master_dir,
                 const char *disk_ext, vcl_names *out, vcl_error *e);
#endif
