/* version.h: which vcl-worker this is. The version string comes from the
 * Makefile (-DVCL_VERSION: `git describe` in a git tree, else its VERSION
 * default); only version.o is compiled with it, so a new commit rebuilds one
 * object, not the tree. vcl-worker --version and vclctl --version print it
 * with the versions of the libraries they run with; the worker also records it
 * in vcl.worker.version and the vclw_worker_info metric. */
#ifndef VCL_VERSION_H
#define VCL_VERSION_H
#include <stdio.h>

/* "0.2.0-12-gabcdef" (a tag, commits since, commit; "-dirty" for a tree with
 * uncommitted changes), or the VERSION default outside git. */
const char *version_string(void);

/* "PROG VERSION\n" and a line with the run-time versions of libpq, libvirt,
 * libxml2, libssh2, libyaml and libmicrohttpd. */
void version_print(FILE *f, const char *prog);
#endif
