/* test_log: log lines in both formats (logfmt, json): fields, job context,
 * and escaping of quotes, backslashes, control characters and bytes that are
 * not UTF-8, so one event is always one parseable line. */
#include "base/log.h"
#include "tap.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *buf;
static size_t buf_len;
static FILE *mem;

static void capture(void)
{
    if (mem)
        fclose(mem);
    free(buf);
    buf = NULL;
    buf_len = 0;
    mem = open_memstream(&buf, &buf_len);
    log_set_output(mem);
}

/* What was logged since capture(), without the timestamp (it varies):
 * logfmt from "level=", JSON as {"level":...}. */
static const char *logged(void)
{
    static char out[4096];
    fflush(mem);
    const char *b = buf ? buf : "";
    const char *lvl = strstr(b, "level");
    if (!lvl) {
        snprintf(out, sizeof out, "%s", b);
        return out;
    }
    if (b[0] == '{')
        snprintf(out, sizeof out, "{\"%s", lvl);
    else
        snprintf(out, sizeof out, "%s", lvl);
    return out;
}

static bool ts_ok(void)
{
    fflush(mem);
    const char *b = buf ? buf : "";
    /* 2026-11-26T16:18:04.123Z */
    const char *t = b[0] == '{' ? b + 7 : b + 3;
    return strlen(b) > 30 && t[4] == '-' && t[10] == 'T' && t[19] == '.' && t[23] == 'Z';
}

static int newlines(void)
{
    fflush(mem);
    int n = 0;
    for (const char *p = buf ? buf : ""; *p; p++)
        n += *p == '\n';
    return n;
}

static void *other_thread(void *arg)
{
    (void)arg;
    log_info("from another thread");
    return NULL;
}

int main(void)
{
    log_format f;
    ok(log_format_parse("json", &f) && f == LOG_FMT_JSON, "parse json");
    ok(log_format_parse("LOGFMT", &f) && f == LOG_FMT_LOGFMT, "parse logfmt (any case)");
    ok(!log_format_parse("xml", &f) && !log_format_parse(NULL, &f), "xml and NULL are no format");
    is_str(log_format_name(LOG_FMT_JSON), "json", "name of json");

    log_set_level(LOG_LVL_INFO);
    log_set_worker("w1");

    /* ---- logfmt ---- */
    log_set_format(LOG_FMT_LOGFMT);
    capture();
    log_info("hello");
    is_str(logged(), "level=info worker=w1 msg=hello\n", "logfmt: plain value bare");
    ok(ts_ok(), "logfmt: ts=YYYY-MM-DDTHH:MM:SS.mmmZ first");
    capture();
    log_debug("not shown");
    is_str(logged(), "", "below the level: nothing");
    capture();
    log_warn("say \"hi\" \\ there");
    is_str(logged(), "level=warn worker=w1 msg=\"say \\\"hi\\\" \\\\ there\"\n",
           "logfmt: quotes and backslashes escaped inside quotes");
    capture();
    log_error("a\nb\tc\rd\001e\177f");
    is_str(logged(), "level=error worker=w1 msg=\"a\\nb\\tc\\rd\\u0001e\\u007ff\"\n",
           "logfmt: control characters escaped");
    is_int(newlines(), 1, "logfmt: a message with newlines is one line");
    capture();
    log_info("%s", "");
    is_str(logged(), "level=info worker=w1 msg=\"\"\n", "logfmt: empty value quoted");
    capture();
    log_info("k=v");
    is_str(logged(), "level=info worker=w1 msg=\"k=v\"\n", "logfmt: '=' quoted");
    capture();
    log_info("back\\slash");
    is_str(logged(), "level=info worker=w1 msg=\"back\\\\slash\"\n", "logfmt: backslash alone quoted");
    capture();
    log_info("caf\xc3\xa9");
    is_str(logged(), "level=info worker=w1 msg=caf\xc3\xa9\n", "logfmt: UTF-8 kept as is");

    log_ctx_set(42, "pc 1", "node1");
    log_ctx_stage("define");
    capture();
    log_info("stage define started");
    is_str(logged(),
           "level=info worker=w1 reservation=42 computer=\"pc 1\" node=node1 stage=define "
           "msg=\"stage define started\"\n",
           "logfmt: job context fields in order");
    capture();
    pthread_t th;
    pthread_create(&th, NULL, other_thread, NULL);
    pthread_join(th, NULL);
    is_str(logged(), "level=info worker=w1 msg=\"from another thread\"\n",
           "job context is per thread");

    /* ---- JSON ---- */
    log_set_format(LOG_FMT_JSON);
    capture();
    log_info("stage define started");
    is_str(logged(),
           "{\"level\":\"info\",\"worker\":\"w1\",\"reservation\":42,\"computer\":\"pc 1\","
           "\"node\":\"node1\",\"stage\":\"define\",\"msg\":\"stage define started\"}\n",
           "json: same keys, reservation a number");
    ok(ts_ok(), "json: {\"ts\":\"YYYY-MM-DDTHH:MM:SS.mmmZ\" first");
    log_ctx_clear();
    capture();
    log_warn("say \"hi\" \\ there/");
    is_str(logged(), "{\"level\":\"warn\",\"worker\":\"w1\",\"msg\":\"say \\\"hi\\\" \\\\ there/\"}\n",
           "json: quotes and backslashes escaped");
    capture();
    log_error("a\nb\tc\rd\001e\037f\177g\bh\fi");
    is_str(logged(),
           "{\"level\":\"error\",\"worker\":\"w1\",\"msg\":"
           "\"a\\nb\\tc\\rd\\u0001e\\u001ff\\u007fg\\u0008h\\u000ci\"}\n",
           "json: control characters escaped");
    is_int(newlines(), 1, "json: one line");
    capture();
    log_info("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    is_str(logged(), "{\"level\":\"info\",\"worker\":\"w1\",\"msg\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}\n",
           "json: valid UTF-8 (2, 3 and 4 bytes) kept");
    capture();
    log_info("a\xff" "b\xe2\x82" "c\xc0\xaf" "d\xed\xa0\x80" "e\xf4\x90\x80\x80" "f\x80");
    is_str(logged(),
           "{\"level\":\"info\",\"worker\":\"w1\",\"msg\":\"a\\ufffdb\\ufffd\\ufffdc\\ufffd\\ufffd"
           "d\\ufffd\\ufffd\\ufffde\\ufffd\\ufffd\\ufffd\\ufffdf\\ufffd\"}\n",
           "json: invalid, truncated, overlong, surrogate, >U+10FFFF and stray bytes -> U+FFFD");
    capture();
    log_info("ends in a cut sequence \xe2");
    is_str(logged(), "{\"level\":\"info\",\"worker\":\"w1\",\"msg\":\"ends in a cut sequence \\ufffd\"}\n",
           "json: a sequence cut by the end of the string");
    log_ctx_set(7, "x\"y", "n\\1");
    log_ctx_stage("s\n");
    capture();
    log_info("ctx");
    is_str(logged(),
           "{\"level\":\"info\",\"worker\":\"w1\",\"reservation\":7,\"computer\":\"x\\\"y\","
           "\"node\":\"n\\\\1\",\"stage\":\"s\\n\",\"msg\":\"ctx\"}\n",
           "json: context values escaped too");
    log_ctx_clear();
    log_set_worker("w\"2");
    capture();
    log_info("w");
    is_str(logged(), "{\"level\":\"info\",\"worker\":\"w\\\"2\",\"msg\":\"w\"}\n",
           "json: worker name escaped");

    log_set_output(NULL);
    fclose(mem);
    free(buf);
    return done_testing();
}
