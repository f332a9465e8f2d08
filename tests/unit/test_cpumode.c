/* test_cpumode.c: node.cpu_mode parsing, the <cpu> element, reading the mode
 * back from a domain XML, and telling CPU start failures from others (the
 * messages are the ones libvirt 9.0 / QEMU 7.2 really print). */
#include <string.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>

#include "node/cpumode.h"
#include "node/cpuprobe.h"
#include "tap.h"

static void test_parse(void)
{
    static const char *const good[] = { "auto", "host-passthrough", "host-model", "custom:EPYC",
                                        "custom:qemu64", "custom:Skylake-Client-IBRS",
                                        "custom:EPYC-Rome_v2.1", NULL };
    static const char *const bad[] = { "", "Auto", "host", "custom:", "custom:-x", "custom:.x",
                                       "custom:a b", "custom:a/b", "custom:a'b", "custom:<x>",
                                       "passthrough", "host-passthrough ", NULL };
    for (int i = 0; good[i]; i++) {
        cpu_mode m;
        char back[CPU_MODE_STR_MAX];
        vcl_error e;
        vcl_error_clear(&e);
        ok(cpu_mode_parse(good[i], &m, &e), "'%s' parses", good[i]);
        cpu_mode_format(&m, back, sizeof back);
        is_str(back, good[i], "'%s' formats back the same", good[i]);
    }
    for (int i = 0; bad[i]; i++) {
        cpu_mode m;
        vcl_error e;
        vcl_error_clear(&e);
        ok(!cpu_mode_parse(bad[i], &m, &e) && e.cls == VCL_ERR_PERMANENT && strstr(e.msg, "CPU mode"),
           "'%s' refused: %s", bad[i], e.msg);
    }
    char longm[100];
    memset(longm, 'a', sizeof longm);
    memcpy(longm, "custom:", 7);
    longm[7 + 64] = '\0';
    cpu_mode m;
    ok(cpu_mode_parse(longm, &m, &(vcl_error){ 0 }), "a 64-character model is accepted");
    longm[7 + 64] = 'a';
    longm[7 + 65] = '\0';
    ok(!cpu_mode_parse(longm, &m, &(vcl_error){ 0 }), "a 65-character model is refused");
}

static void test_from_xml(void)
{
    char buf[CPU_MODE_STR_MAX];
    cpu_mode_from_domain_xml("<domain><cpu mode='host-passthrough' check='none'/></domain>", buf, sizeof buf);
    is_str(buf, "host-passthrough", "passthrough read back");
    cpu_mode_from_domain_xml("<domain><cpu mode='custom' match='exact'><model fallback='allow'>EPYC</model>"
                             "<topology sockets='1' cores='2' threads='1'/></cpu></domain>",
                             buf, sizeof buf);
    is_str(buf, "custom:EPYC", "custom model read back");
    cpu_mode_from_domain_xml("<domain><name>x</name></domain>", buf, sizeof buf);
    is_str(buf, "", "no <cpu>: empty");
    cpu_mode_from_domain_xml("<domain><cpu", buf, sizeof buf);
    is_str(buf, "", "unparsable: empty");
    cpu_mode_from_domain_xml(NULL, buf, sizeof buf);
    is_str(buf, "", "NULL: empty");
}

static void test_failures(void)
{
    char why[256];
    const char *msr = "starting domain pc1:img: internal error: qemu unexpectedly closed the monitor: "
                      "2026-12-06T04:19:03.619963Z qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n"
                      "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion "
                      "`ret == cpu->kvm_msr_buf->nmsrs' failed.";
    ok(cpu_start_failure(VIR_ERR_INTERNAL_ERROR, msr, why, sizeof why), "the MSR crash is a CPU failure");
    is_str(why, "failed to set MSR 0x10a to 0x69", "why: QEMU's line without its prefix");
    ok(cpu_start_failure(VIR_ERR_CONFIG_UNSUPPORTED,
                         "unsupported configuration: CPU model 'NoSuchCPU' is not supported by hypervisor",
                         why, sizeof why), "an unknown model is a CPU failure");
    ok(strstr(why, "NoSuchCPU") != NULL, "why names the model: %s", why);
    ok(cpu_start_failure(VIR_ERR_CONFIG_UNSUPPORTED,
                         "unsupported configuration: CPU mode 'host-passthrough' for x86_64 qemu domain on "
                         "x86_64 host is not supported by hypervisor", why, sizeof why),
       "passthrough under TCG is a CPU failure");
    ok(cpu_start_failure(VIR_ERR_CPU_INCOMPATIBLE, "the CPU is incompatible with host CPU", why, sizeof why),
       "VIR_ERR_CPU_INCOMPATIBLE by code");
    ok(!cpu_start_failure(VIR_ERR_INTERNAL_ERROR,
                          "internal error: process exited while connecting to monitor: Could not open "
                          "'/var/lib/vcl/cow/pc1.qcow2': Permission denied", why, sizeof why),
       "a disk permission error is not a CPU failure");
    ok(!cpu_start_failure(VIR_ERR_OPERATION_FAILED, "Cannot write data: Broken pipe", why, sizeof why),
       "a broken connection is not a CPU failure");
    ok(!cpu_start_failure(0, NULL, why, sizeof why), "no message, no code: not a CPU failure");

    vcl_error e;
    vcl_error_set(&e, VCL_ERR_RETRYABLE, "%s", msr);
    ok(cpu_start_error(&e, 0, "node1", "host-passthrough"), "rewritten");
    ok(e.cls == VCL_ERR_PERMANENT, "permanent (no five identical retries)");
    ok(strstr(e.msg, "CPU mode host-passthrough") && strstr(e.msg, "vclctl node check node1") &&
           strstr(e.msg, "failed to set MSR"),
       "names the mode, the hint and the cause: %s", e.msg);
    vcl_error_set(&e, VCL_ERR_RETRYABLE, "starting domain x: Cannot write data: Broken pipe");
    ok(!cpu_start_error(&e, 0, "node1", "host-passthrough") && e.cls == VCL_ERR_RETRYABLE &&
           strstr(e.msg, "Broken pipe"), "other failures stay as they were (retryable)");
}

static void test_unexplained(void)
{
    ok(cpu_start_unexplained("starting domain x: internal error: failed to connect to monitor socket: "
                             "Connection refused"), "monitor race: unexplained");
    ok(cpu_start_unexplained("internal error: process exited while connecting to monitor: "),
       "exited while connecting, nothing after: unexplained");
    ok(!cpu_start_unexplained("internal error: process exited while connecting to monitor: "
                              "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69"),
       "the MSR line is there: explained");
    ok(!cpu_start_unexplained("internal error: qemu unexpectedly closed the monitor: 2026-12-06T04:19:03Z "
                              "qemu-system-x86_64: -drive file=/x: Could not open '/x': Permission denied"),
       "QEMU said why: explained");
    ok(!cpu_start_unexplained("Cannot write data: Broken pipe"), "not a monitor message");
    ok(!cpu_start_unexplained(NULL), "NULL");
}

static void test_report(void)
{
    cpu_probe_result r = { .n = 3 };
    snprintf(r.tries[0].mode, sizeof r.tries[0].mode, "host-passthrough");
    snprintf(r.tries[0].why, sizeof r.tries[0].why, "failed to set MSR 0x10a to 0x69");
    snprintf(r.tries[1].mode, sizeof r.tries[1].mode, "host-model");
    snprintf(r.tries[1].why, sizeof r.tries[1].why, "failed to set MSR 0x10a to 0x69");
    snprintf(r.tries[2].mode, sizeof r.tries[2].mode, "custom:kvm64");
    r.tries[2].ok = true;
    char buf[1024];
    cpu_probe_report(&r, buf, sizeof buf);
    is_str(buf, "host-passthrough: rejected (failed to set MSR 0x10a to 0x69); host-model: rejected "
                "(failed to set MSR 0x10a to 0x69); custom:kvm64: ok", "report line");
    char small[20];
    cpu_probe_report(&r, small, sizeof small);
    ok(strlen(small) < sizeof small, "report is bounded by its buffer");
}

int main(void)
{
    test_parse();
    test_from_xml();
    test_failures();
    test_unexplained();
    test_report();
    xmlCleanupParser();
    return done_testing();
}
