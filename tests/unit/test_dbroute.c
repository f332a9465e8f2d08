/* test_dbroute: which conninfo gets target_session_attrs=read-write by
 * default, and which SQLSTATEs mean "wrong server" (a lost connection). The
 * pooling check needs a server: tests/fault/85-pgbouncer.t. */
#include "queue/dbroute.h"
#include "tap.h"

int main(void)
{
    static const struct {
        const char *conninfo, *env;
        bool want;
    } cases[] = {
        { NULL, NULL, true },
        { "", NULL, true },
        { "dbname=vcl", NULL, true },
        { "host=pg1,pg2 port=5432,5433 dbname=vcl connect_timeout=5", NULL, true },
        { "postgresql://pg1:5432,pg2:5433/vcl?connect_timeout=5", NULL, true },
        { "host=pg1,pg2 target_session_attrs=read-write", NULL, false },
        { "host=pg1,pg2 target_session_attrs=any", NULL, false },
        { "host=pg1 target_session_attrs=prefer-standby", NULL, false },
        { "postgresql://pg1,pg2/vcl?target_session_attrs=any", NULL, false },
        { "dbname=vcl", "any", false },
        { "dbname=vcl", "", true },
        { "", "read-write", false },
        /* libpq cannot read it: left to libpq, which reports it */
        { "host='unterminated", NULL, false },
        { "postgresql://[::1", NULL, false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        is_int(dbroute_wants_default_tsa(cases[i].conninfo, cases[i].env), cases[i].want,
               "default target_session_attrs for \"%s\" (PGTARGETSESSIONATTRS %s): %s",
               cases[i].conninfo ? cases[i].conninfo : "(null)",
               cases[i].env ? cases[i].env : "unset", cases[i].want ? "yes" : "no");
    is_str(DBROUTE_DEFAULT_TSA, "read-write", "the default is read-write");

    ok(dbroute_wrong_server("25006"), "25006 (read-only transaction: a standby) is the wrong server");
    ok(!dbroute_wrong_server("25001"), "25001 (active transaction) is not");
    ok(!dbroute_wrong_server("42501"), "42501 (permission denied) is not");
    ok(!dbroute_wrong_server("23505"), "23505 (unique violation) is not");
    ok(!dbroute_wrong_server(""), "no SQLSTATE is not (db.c classes that as lost anyway)");
    ok(!dbroute_wrong_server(NULL), "NULL is not");
    return done_testing();
}
