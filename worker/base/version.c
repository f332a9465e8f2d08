/* version.c: see version.h. */
#include "base/version.h"

#include <libpq-fe.h>
#include <libssh2.h>
#include <libvirt/libvirt.h>
#include <libxml/parser.h>
#include <stdlib.h>
#include <microhttpd.h>
#include <yaml.h>

#ifndef VCL_VERSION
#error "VCL_VERSION is not defined: build with make (it passes -DVCL_VERSION)"
#endif

const char *version_string(void)
{
    return VCL_VERSION;
}

void version_print(FILE *f, const char *prog)
{
    unsigned long virt = 0;
    int pq = PQlibVersion();
    int xml = atoi(xmlParserVersion); /* "20914" = 2.9.14 */
    const char *ssh = libssh2_version(0);

    fprintf(f, "%s %s\n", prog, VCL_VERSION);
    if (virGetVersion(&virt, NULL, NULL) != 0)
        virt = 0;
    /* PQlibVersion: 150008 = 15.8 (10 and later), 90624 = 9.6.24 */
    if (pq >= 100000)
        fprintf(f, "libpq %d.%d", pq / 10000, pq % 10000);
    else
        fprintf(f, "libpq %d.%d.%d", pq / 10000, pq / 100 % 100, pq % 100);
    fprintf(f, ", libvirt %lu.%lu.%lu, libxml2 %d.%d.%d, libssh2 %s, libyaml %s, "
               "libmicrohttpd %s\n",
            virt / 1000000, virt / 1000 % 1000, virt % 1000, xml / 10000, xml / 100 % 100,
            xml % 100, ssh ? ssh : "?", yaml_get_version_string(), MHD_get_version());
}
