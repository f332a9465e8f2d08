/* cmd_inventory.c: the inventory: migrate (the schema), node, image (with
 * its revisions, and where a master is: image exists/size) and computer. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/cpumode.h"
#include "queue/db.h"
#include "base/error.h"
#include "node/image.h"
#include "queue/migrate.h"
#include "base/names.h"
#include "node/transport.h"
#include "vclctl.h"
#include "query.h"
#include "sql.h"

/* The vocabulary shared with the schema's CHECK constraints. */
static const char *const TRANSPORTS[] = { "local", "ssh", NULL };
static const char *const REPO_LOCATIONS[] = { "node", "management", NULL };
static const char *const INVENTORY_STATES[] = { "available", "maintenance", NULL };
static const char *const OS_TYPES[] = { "none", "linux", "windows", NULL };

/* ---- migrate ---- */

const optspec OPTS_MIGRATE[] = {
    { "sql-dir", "DIR", 0, "directory of the numbered migrations NNN_name.sql and of functions/ "
                           "(default: $VCL_SQL_DIR, else next to the program, else the installed "
                           "share dir)" },
    { NULL, NULL, 0, NULL },
};

/* names, separated by newlines (for the JSON, which PostgreSQL makes); or,
 * with flags, "t"/"f" per name. NULL when out of memory. */
static char *join_lines(const char *const *names, const bool *flags, int n)
{
    size_t cap = 1, len = 0;
    for (int i = 0; i < n; i++)
        cap += (flags ? 1 : strlen(names[i])) + 1;
    char *s = calloc(1, cap);
    for (int i = 0; s && i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s%s", i ? "\n" : "",
                                flags ? (flags[i] ? "t" : "f") : names[i]);
    return s;
}

static int migrate_report(ctl *c, const char *dir, const migrate_result *r)
{
    if (c->json) {
        char na[32], nv[32];
        char *applied = join_lines(r->applied, NULL, r->napplied);
        char *live = join_lines(r->live, NULL, r->nlive);
        char *changed = join_lines(r->live, r->live_changed, r->nlive);
        int rc = EXIT_FAIL;
        snprintf(na, sizeof na, "%d", r->napplied);
        snprintf(nv, sizeof nv, "%d", r->version);
        const char *p[6] = { na, nv, dir, applied, live, changed };
        if (applied && live && changed)
            rc = print_json(c, SQL_MIGRATE_JSON, 6, p, "the result");
        else
            fail("out of memory");
        free(applied);
        free(live);
        free(changed);
        return rc;
    }
    if (c->quiet)
        return EXIT_OK;
    int changed = 0;
    for (int i = 0; i < r->napplied; i++)
        printf("applied     %s\n", r->applied[i]);
    for (int i = 0; i < r->nlive; i++) {
        printf("re-applied  %s%s\n", r->live[i], r->live_changed[i] ? " (changed)" : "");
        changed += r->live_changed[i];
    }
    printf("applied %d migration(s) and re-applied %d live file(s), %d changed; schema at "
           "version %d\n", r->napplied, r->nlive, changed, r->version);
    return EXIT_OK;
}

int cmd_migrate(ctl *c, const args *a)
{
    const char *dir = opt_str(a, "sql-dir");
    char real[PATH_MAX];
    vcl_error e;
    migrate_result r = { 0 };
    int rc;
    if (!dir)
        dir = migrate_default_dir();
    if (realpath(dir, real))
        dir = real;
    vcl_error_clear(&e);
    migrate_plan *plan = migrate_plan_new(dir, &e);
    if (!plan) {
        fail("%s", e.msg);
        fprintf(stderr, "%s: hint: another SQL directory: --sql-dir DIR or VCL_SQL_DIR\n", PROG);
        return EXIT_FAIL;
    }
    if (!ctl_db(c)) {
        migrate_plan_free(plan);
        return EXIT_FAIL;
    }
    if (migrate_apply(c->db, plan, &r, &e)) {
        rc = migrate_report(c, dir, &r);
    } else {
        const char *state = db_sqlstate(c->db);
        rc = fail("migrate: nothing applied: %s", db_msg(&e));
        if (strcmp(state, "55P03") == 0)
            fprintf(stderr, "%s: hint: another session holds a lock the migration needs (see "
                            "pg_stat_activity); try again\n", PROG);
        else if (strcmp(state, "42501") == 0)
            fprintf(stderr, "%s: hint: migrate as the schema owner (--db, VCL_DATABASE or "
                            "PGUSER)\n", PROG);
    }
    migrate_result_clear(&r);
    migrate_plan_free(plan);
    return rc;
}

/* ---- node ---- */

#define NODE_FIELD_OPTS                                                                     \
    { "transport", "local|ssh", 0, "how the worker reaches the node (default local)" },     \
    { "ssh-host", "HOST", 0, "ssh: host name or address" },                                 \
    { "ssh-port", "PORT", 0, "ssh: port (default 22)" },                                    \
    { "ssh-user", "USER", 0, "ssh: user" },                                                 \
    { "master-dir", "DIR", 0, "master image directory on the node" },                       \
    { "cow-dir", "DIR", 0, "copy-on-write disk directory on the node" },                    \
    { "xml-dir", "DIR", 0, "domain XML and console log directory on the node (default "    \
                           "/var/lib/vcl-worker/xml; made 0755, must not be world-writable)" }, \
    { "repo", "PATH", OPT_MULTI, "image repository path searched for masters; repeat for " \
                                 "several (node set: replaces the list)" },                 \
    { "max-loads", "N", 0, "at most N loads at once on this node (default 8)" },            \
    { "repo-location", "node|management", 0, "where the --repo paths are: on the node "     \
                                              "(default) or on the worker's host" },         \
    { "network", "NAME", 0, "libvirt network the NICs attach to" },                       \
    { "cpu-mode", "MODE", 0, "guest CPU: auto (default: probed once on the node), "         \
                             "host-passthrough, host-model or custom:MODEL (e.g. "          \
                             "custom:EPYC, custom:qemu64)" }

const optspec OPTS_NODE_ADD[] = {
    { "uri", "URI", OPT_REQUIRED, "libvirt connection URI (qemu:///system, "
                                  "qemu+libssh2://user@host/system?..., test:///default)" },
    NODE_FIELD_OPTS,
    { NULL, NULL, 0, NULL },
};

const optspec OPTS_NODE_SET[] = {
    { "state", "available|maintenance", 0, "maintenance: the worker starts no new work here" },
    { "uri", "URI", 0, "libvirt connection URI" },
    NODE_FIELD_OPTS,
    { NULL, NULL, 0, NULL },
};

/* Check the node options shared by add and set; fill the columns. repos
 * receives the --repo values joined by newlines (sent as one parameter and
 * split by string_to_array: no array literal is ever built by hand). */
static int node_fields(ctl *c, const args *a, colset *s, num *port, num *loads, char *repos,
                       size_t repos_size)
{
    int rc;
    const char *uri = opt_str(a, "uri");
    if ((rc = opt_word(c, a, "transport", TRANSPORTS)) != EXIT_OK ||
        (rc = check_uri(c, uri)) != EXIT_OK ||
        (rc = check_host(c, opt_str(a, "ssh-host"))) != EXIT_OK ||
        (rc = opt_num(c, a, "ssh-port", 1, 65535, port)) != EXIT_OK ||
        (rc = opt_num(c, a, "max-loads", 1, 1000, loads)) != EXIT_OK ||
        (rc = opt_word(c, a, "repo-location", REPO_LOCATIONS)) != EXIT_OK ||
        (rc = check_dir(c, "master image", opt_str(a, "master-dir"))) != EXIT_OK ||
        (rc = check_dir(c, "COW", opt_str(a, "cow-dir"))) != EXIT_OK ||
        (rc = check_dir(c, "XML", opt_str(a, "xml-dir"))) != EXIT_OK)
        return rc;
    if (opt_str(a, "ssh-user") && (rc = check_name(c, "ssh user", opt_str(a, "ssh-user"))))
        return rc;
    if (opt_str(a, "network") && (rc = check_name(c, "network", opt_str(a, "network"))))
        return rc;
    if (opt_str(a, "cpu-mode")) {
        cpu_mode m;
        vcl_error e;
        vcl_error_clear(&e);
        if (!cpu_mode_parse(opt_str(a, "cpu-mode"), &m, &e))
            return usage_error(c, "--cpu-mode: %s", e.msg);
    }
    repos[0] = '\0';
    for (int i = 0, o = 0; i < a->nmulti; i++) {
        if ((rc = check_repo(c, a->multi[i])) != EXIT_OK)
            return rc;
        int w = snprintf(repos + o, repos_size - (size_t)o, "%s%s", i ? "\n" : "", a->multi[i]);
        if (w < 0 || (size_t)w >= repos_size - (size_t)o)
            return usage_error(c, "too many or too long --repo paths");
        o += w;
    }
    colset_add(s, "libvirt_uri", uri);
    colset_add(s, "transport", opt_str(a, "transport"));
    colset_add(s, "ssh_host", opt_str(a, "ssh-host"));
    colset_add_expr(s, "ssh_port", "?::int", NUM_PARAM(*port));
    colset_add(s, "ssh_user", opt_str(a, "ssh-user"));
    colset_add(s, "master_image_dir", opt_str(a, "master-dir"));
    colset_add(s, "cow_dir", opt_str(a, "cow-dir"));
    colset_add(s, "xml_dir", opt_str(a, "xml-dir"));
    colset_add_expr(s, "repository_paths", "string_to_array(?, chr(10))",
                    a->nmulti ? repos : NULL);
    colset_add_expr(s, "max_concurrent_loads", "?::int", NUM_PARAM(*loads));
    colset_add(s, "repository_location", opt_str(a, "repo-location"));
    colset_add(s, "network", opt_str(a, "network"));
    colset_add(s, "cpu_mode", opt_str(a, "cpu-mode"));
    return EXIT_OK;
}

/* Explain why a named INSERT failed; unique violations say "already exists". */
static int insert_fail(ctl *c, const vcl_error *e, const char *what, const char *name)
{
    if (strcmp(db_sqlstate(c->db), "23505") == 0)
        return fail("cannot add %s '%s': %s (see: %s %s list)", what, name,
                    strstr(db_msg(e), "revision") ? "that revision already exists"
                                                  : "it already exists",
                    PROG, what);
    return db_fail(c, e, "cannot add %s '%s'", what, name);
}

/* A computer's MAC belongs to it alone (unique regardless of case). */
static bool mac_taken(ctl *c, const vcl_error *e)
{
    return strcmp(db_sqlstate(c->db), "23505") == 0 && strstr(e->msg, "mac0") != NULL;
}

/* The end of `node set` and `computer set`: --state joins the columns
 * already checked into s, the row of table vcl.<kind> named name is
 * updated, and the new row (json_sql) or a line is printed. mac, for a
 * computer, is the --mac value that a uniqueness error names. */
static int set_by_name(ctl *c, const args *a, const char *kind, const char *name, colset *s,
                       const char *json_sql, const char *mac)
{
    char table[32], what[32];
    long long id = 0;
    bool found = false;
    vcl_error e;
    snprintf(table, sizeof table, "vcl.%s", kind);
    colset_add(s, "state", opt_str(a, "state"));
    if (s->n == 0)
        return usage_error(c, "nothing to change: give at least one option");
    if (!ctl_db(c))
        return EXIT_FAIL;
    vcl_error_clear(&e);
    if (!colset_update(c, table, s, "name", name, &id, &found, &e)) {
        if (mac && mac_taken(c, &e))
            return fail("cannot update %s '%s': MAC %s is already used by another "
                        "computer (see: %s computer list)", kind, name, mac, PROG);
        return db_fail(c, &e, "cannot update %s '%s'", kind, name);
    }
    if (!found)
        return fail("no %s named '%s' (see: %s %s list)", kind, name, PROG, kind);
    if (c->json) {
        snprintf(what, sizeof what, "the %s", kind);
        return print_row_json(c, json_sql, id, what);
    }
    if (!c->quiet)
        printf("updated %s %s\n", kind, name);
    return EXIT_OK;
}

int cmd_node_add(ctl *c, const args *a)
{
    const char *name = a->pos[0];
    colset s = { .n = 0 };
    num port, loads;
    char repos[MAX_MULTI * 260];
    long long id = 0;
    vcl_error e;
    int rc;
    if ((rc = check_name(c, "node", name)) != EXIT_OK ||
        (rc = node_fields(c, a, &s, &port, &loads, repos, sizeof repos)) != EXIT_OK)
        return rc;
    bool ssh = opt_str(a, "transport") && strcmp(opt_str(a, "transport"), "ssh") == 0;
    if (ssh && !opt_str(a, "ssh-host"))
        return usage_error(c, "--transport ssh needs --ssh-host HOST");
    if (!ssh && (opt_str(a, "ssh-host") || port.set || opt_str(a, "ssh-user")))
        return usage_error(c, "--ssh-host/--ssh-port/--ssh-user need --transport ssh");
    colset_add(&s, "name", name);
    if (!ctl_db(c))
        return EXIT_FAIL;
    vcl_error_clear(&e);
    if (!colset_insert(c, "vcl.node", &s, &id, &e))
        return insert_fail(c, &e, "node", name);
    if (c->json)
        return print_row_json(c, SQL_NODE_JSON, id, "the node");
    if (!c->quiet)
        printf("added node %s (id %lld)\n", name, id);
    return EXIT_OK;
}

int cmd_node_set(ctl *c, const args *a)
{
    const char *name = a->pos[0];
    colset s = { .n = 0 };
    num port, loads;
    char repos[MAX_MULTI * 260];
    int rc;
    if ((rc = check_name(c, "node", name)) != EXIT_OK ||
        (rc = opt_word(c, a, "state", INVENTORY_STATES)) != EXIT_OK ||
        (rc = node_fields(c, a, &s, &port, &loads, repos, sizeof repos)) != EXIT_OK)
        return rc;
    return set_by_name(c, a, "node", name, &s, SQL_NODE_JSON, NULL);
}

int cmd_node_list(ctl *c, const args *a)
{
    (void)a;
    if (!ctl_db(c))
        return EXIT_FAIL;
    if (c->json)
        return print_json(c, JSON_ARRAY(SQL_NODE_ROWS), 0, NULL, "nodes");
    return print_query_table(c, SQL_NODE_LIST, 0, NULL, NULL, "nodes",
                             "no nodes (add one: vclctl node add NAME --uri URI)");
}

/* ---- image ---- */

const optspec OPTS_IMAGE_ADD[] = {
    { "os-type", "none|linux|windows", 0, "how post_load waits for the guest (default none)" },
    { NULL, NULL, 0, NULL },
};

int cmd_image_add(ctl *c, const args *a)
{
    const char *name = a->pos[0];
    colset s = { .n = 0 };
    long long id = 0;
    vcl_error e;
    int rc;
    if ((rc = check_name(c, "image", name)) != EXIT_OK ||
        (rc = opt_word(c, a, "os-type", OS_TYPES)) != EXIT_OK)
        return rc;
    colset_add(&s, "name", name);
    colset_add(&s, "os_type", opt_str(a, "os-type"));
    if (!ctl_db(c))
        return EXIT_FAIL;
    vcl_error_clear(&e);
    if (!colset_insert(c, "vcl.image", &s, &id, &e))
        return insert_fail(c, &e, "image", name);
    if (c->json)
        return print_row_json(c, SQL_IMAGE_JSON, id, "the image");
    if (!c->quiet)
        printf("added image %s (id %lld)\n", name, id);
    return EXIT_OK;
}

const optspec OPTS_REVISION_ADD[] = {
    { "revision", "N", OPT_REQUIRED, "revision number" },
    { "file-stem", "STEM", OPT_REQUIRED, "file name of the master without extension "
                                         "(<master dir>/<STEM>.qcow2)" },
    { "size", "BYTES", 0, "size of the master image" },
    { "checksum", "SUM", 0, "checksum of the master image" },
    { "production", NULL, 0, "mark as production (what IMAGE without :REV loads)" },
    { NULL, NULL, 0, NULL },
};

int cmd_image_revision_add(ctl *c, const args *a)
{
    const char *image = a->pos[0], *stem = opt_str(a, "file-stem");
    colset s = { .n = 0 };
    num rev, size;
    long long image_id = 0, id = 0;
    char image_ids[32];
    vcl_error e;
    int rc;
    if ((rc = check_name(c, "image", image)) != EXIT_OK ||
        (rc = opt_num(c, a, "revision", 0, 2147483647, &rev)) != EXIT_OK ||
        (rc = check_name(c, "file stem", stem)) != EXIT_OK ||
        (rc = opt_num(c, a, "size", 0, 9223372036854775807LL, &size)) != EXIT_OK ||
        (rc = check_text(c, "--checksum", opt_str(a, "checksum"), 256)) != EXIT_OK)
        return rc;
    if (!ctl_db(c))
        return EXIT_FAIL;
    if ((rc = lookup_id(c, SQL_IMAGE_ID, "image", image, &image_id)) != EXIT_OK)
        return rc;
    snprintf(image_ids, sizeof image_ids, "%lld", image_id);
    colset_add_expr(&s, "image_id", "?::bigint", image_ids);
    colset_add_expr(&s, "revision", "?::int", NUM_PARAM(rev));
    colset_add(&s, "file_stem", stem);
    colset_add_expr(&s, "size_bytes", "?::bigint", NUM_PARAM(size));
    colset_add(&s, "checksum", opt_str(a, "checksum"));
    colset_add_expr(&s, "production", "?::boolean", opt_flag(a, "production") ? "true" : NULL);
    vcl_error_clear(&e);
    if (!colset_insert(c, "vcl.image_revision", &s, &id, &e)) {
        if (strcmp(db_sqlstate(c->db), "23505") == 0 && strstr(e.msg, "file_stem"))
            return fail("file stem '%s' is already used by another revision (each revision "
                        "has its own master file; see: %s image list)", stem, PROG);
        if (strcmp(db_sqlstate(c->db), "23505") == 0)
            return fail("image %s already has revision %lld (see: %s image list)", image, rev.v,
                        PROG);
        return db_fail(c, &e, "cannot add revision %lld of image '%s'", rev.v, image);
    }
    if (c->json)
        return print_row_json(c, SQL_REVISION_JSON, id, "the revision");
    if (!c->quiet)
        printf("added %s:%lld (file stem %s%s)\n", image, rev.v, stem,
               opt_flag(a, "production") ? ", production" : "");
    return EXIT_OK;
}

int cmd_image_list(ctl *c, const args *a)
{
    (void)a;
    if (!ctl_db(c))
        return EXIT_FAIL;
    if (c->json)
        return print_json(c, SQL_IMAGE_LIST_JSON, 0, NULL, "images");
    return print_query_table(c, SQL_IMAGE_LIST, 0, NULL, NULL, "images",
                             "no images (add one: vclctl image add NAME)");
}

/* ---- image exists, image size (VCL's does_image_exist / get_image_size) ---- */

const optspec OPTS_IMAGE_WHERE[] = {
    { "node", "NODE", 0, "look only for this node (default: every node, one line each)" },
    { NULL, NULL, 0, NULL },
};

/* One node's answer, joined into \x1f-separated columns for the query that
 * prints them (PostgreSQL makes the table and the JSON; nothing is escaped
 * here). A value holding \x1f itself cannot be passed: it is cut there. */
typedef struct where_cols {
    char node[8192], at[2048], path[65536], files[2048], bytes[4096], mb[4096];
    int n;
} where_cols;

static void where_add(where_cols *w, const char *node, const char *at, const char *path,
                      int files, long long bytes, long long mb)
{
    struct { char *buf; size_t size; char val[PATH_MAX + 1024]; } cols[6] = {
        { w->node, sizeof w->node, "" },   { w->at, sizeof w->at, "" },
        { w->path, sizeof w->path, "" },   { w->files, sizeof w->files, "" },
        { w->bytes, sizeof w->bytes, "" }, { w->mb, sizeof w->mb, "" },
    };
    snprintf(cols[0].val, sizeof cols[0].val, "%s", node);
    snprintf(cols[1].val, sizeof cols[1].val, "%s", at);
    snprintf(cols[2].val, sizeof cols[2].val, "%s", path);
    if (bytes >= 0) {
        snprintf(cols[3].val, sizeof cols[3].val, "%d", files);
        snprintf(cols[4].val, sizeof cols[4].val, "%lld", bytes);
        snprintf(cols[5].val, sizeof cols[5].val, "%lld", mb);
    }
    for (int i = 0; i < 6; i++) {
        cols[i].val[strcspn(cols[i].val, "\x1f")] = '\0';
        size_t used = strlen(cols[i].buf);
        snprintf(cols[i].buf + used, cols[i].size - used, "%s%s", w->n ? "\x1f" : "", cols[i].val);
    }
    w->n++;
}

/* The revision IMAGE[:REV] means: REV when given, else the highest
 * production revision, else the highest revision. */
int resolve_revision(ctl *c, const image_ref *ref, long long *revision_id)
{
    vcl_error e;
    long long image_id = 0;
    bool isnull = true;
    int rc;
    if ((rc = lookup_id(c, SQL_IMAGE_ID, "image", ref->name, &image_id)) != EXIT_OK)
        return rc;
    char ids[32];
    snprintf(ids, sizeof ids, "%lld", image_id);
    const char *p[2] = { ids, ref->has_rev ? ref->rev_s : NULL };
    vcl_error_clear(&e);
    if (!db_scalar_ll(c->db, SQL_REVISION_OF_IMAGE, 2, p, revision_id, &isnull, &e))
        return db_fail(c, &e, "cannot look up image '%s'", ref->name);
    if (isnull && ref->has_rev)
        return fail("image %s has no revision %lld (see: %s image list)", ref->name, ref->rev,
                    PROG);
    if (isnull)
        return fail("image %s has no revisions (add one: %s image revision-add %s "
                    "--revision N --file-stem STEM)", ref->name, PROG, ref->name);
    return EXIT_OK;
}

/* Look for IMAGE[:REV] on the chosen nodes. The master path a load would use
 * is <master dir>/<file stem>.qcow2 (the kvm and qemu drivers' extension). */
static int image_where(ctl *c, const args *a, bool want_size)
{
    image_ref ref;
    long long revision_id = 0;
    const char *node = opt_str(a, "node");
    char stem[NAME_MAX_LEN + 1] = "", ids[32];
    where_cols *w = NULL;
    PGresult *r = NULL;
    vcl_error e;
    int rc, missing = 0;

    if ((rc = parse_image_ref(c, a->pos[0], &ref)) != EXIT_OK ||
        (node && (rc = check_name(c, "node", node)) != EXIT_OK))
        return rc;
    if (!ctl_db(c))
        return EXIT_FAIL;
    if ((rc = resolve_revision(c, &ref, &revision_id)) != EXIT_OK)
        return rc;
    if (node) {
        long long node_id;
        if ((rc = lookup_id(c, SQL_NODE_ID, "node", node, &node_id)) != EXIT_OK)
            return rc;
    }
    snprintf(ids, sizeof ids, "%lld", revision_id);
    {
        const char *p[1] = { ids };
        PGresult *sr;
        vcl_error_clear(&e);
        if (!(sr = db_exec(c->db, SQL_REVISION_STEM, 1, p, &e)))
            return db_fail(c, &e, "cannot look up the file stem of %s", a->pos[0]);
        if (PQntuples(sr) == 1)
            snprintf(stem, sizeof stem, "%s", PQgetvalue(sr, 0, 0));
        PQclear(sr);
    }
    const char *np[1] = { node };
    vcl_error_clear(&e);
    if (!(r = db_exec(c->db, SQL_IMAGE_NODES, 1, np, &e)))
        return db_fail(c, &e, "cannot list the nodes");
    if (PQntuples(r) == 0) {
        PQclear(r);
        return fail("no nodes to look on (add one: %s node add NAME --uri URI)", PROG);
    }
    if (!(w = calloc(1, sizeof *w))) {
        PQclear(r);
        return fail("out of memory");
    }
    for (int i = 0; i < PQntuples(r); i++) {
        const char *nname = PQgetvalue(r, i, 0), *kind = PQgetvalue(r, i, 1),
                   *mdir = PQgetvalue(r, i, 2), *repos = PQgetvalue(r, i, 3);
        char master[PATH_MAX], *dup = strdup(repos), *save = NULL;
        const char *paths[64];
        size_t np_ = 0;
        size_t ml = strlen(mdir);
        while (ml > 1 && mdir[ml - 1] == '/')
            ml--;
        snprintf(master, sizeof master, "%.*s/%s.qcow2", (int)ml, mdir, stem);
        for (char *tok = dup ? strtok_r(dup, "\x1f", &save) : NULL; tok && np_ < 64;
             tok = strtok_r(NULL, "\x1f", &save))
            paths[np_++] = tok;
        image_req req = { .master_path = master, .file_stem = stem, .disk_format = "qcow2",
                          .repo_paths = paths, .n_repo = np_ };
        image_location loc;
        /* ssh nodes: where from the node row; the key and known_hosts file
         * from --ssh-key/--known-hosts ($VCL_SSH_KEY, $VCL_SSH_KNOWN_HOSTS). */
        transport_opts to = { .host = PQgetvalue(r, i, 4), .port = atoi(PQgetvalue(r, i, 5)),
                              .user = PQgetvalue(r, i, 6)[0] ? PQgetvalue(r, i, 6) : NULL,
                              .private_key = c->ssh_key, .known_hosts = c->known_hosts };
        vcl_error_clear(&e);
        /* 'management': the repository paths are on this host. */
        bool mgmt = strcmp(PQgetvalue(r, i, 7), "management") == 0;
        if (!(req.t = transport_new(kind, &to, &e)) ||
            (mgmt && !(req.repo_t = transport_new("local", NULL, &e))) ||
            !image_locate(&req, &loc, &e)) {
            where_add(w, nname, "error", e.msg, 0, -1, -1);
            missing++;
        } else if (loc.at == IMAGE_AT_NONE) {
            where_add(w, nname, image_at_name(loc.at), "", 0, -1, -1);
            missing++;
        } else {
            where_add(w, nname, image_at_name(loc.at), loc.path, loc.n_files, loc.size_bytes,
                      loc.size_mb);
        }
        transport_free(req.repo_t);
        transport_free(req.t);
        free(dup);
    }
    PQclear(r);

    const char *p[6] = { w->node, w->at, w->path, w->files, w->bytes, w->mb };
    if (c->json)
        rc = print_json(c, JSON_ARRAY(SQL_WHERE_ROWS), 6, p, "the answer");
    else if (want_size)
        rc = print_query_table(c, SQL_IMAGE_SIZE_LIST, 6, p, NULL, "the answer", "");
    else
        rc = print_query_table(c, SQL_IMAGE_EXISTS_LIST, 6, p, NULL, "the answer", "");
    free(w);
    if (rc != EXIT_OK)
        return rc;
    return missing ? EXIT_FAIL : EXIT_OK;
}

int cmd_image_exists(ctl *c, const args *a)
{
    return image_where(c, a, false);
}

int cmd_image_size(ctl *c, const args *a)
{
    return image_where(c, a, true);
}

/* ---- computer ---- */

const optspec OPTS_COMPUTER_ADD[] = {
    { "node", "NODE", OPT_REQUIRED, "the node this VM slot lives on" },
    { "mac", "MAC", OPT_REQUIRED, "MAC address of the first NIC (52:54:00:xx:xx:xx)" },
    { "memory", "MB", 0, "memory in MiB" },
    { "vcpus", "N", 0, "virtual CPUs" },
    { NULL, NULL, 0, NULL },
};

const optspec OPTS_COMPUTER_SET[] = {
    { "state", "available|maintenance", 0, "maintenance: the worker starts no new work here" },
    { "mac", "MAC", 0, "MAC address of the first NIC" },
    { "memory", "MB", 0, "memory in MiB (used by the next load)" },
    { "vcpus", "N", 0, "virtual CPUs (used by the next load)" },
    { NULL, NULL, 0, NULL },
};

/* MAC, memory and vCPUs, shared by add and set. mac is lower-cased into
 * macbuf. */
static int computer_fields(ctl *c, const args *a, colset *s, num *mem, num *cpus, char *macbuf,
                           size_t size)
{
    const char *mac = opt_str(a, "mac");
    vcl_error e;
    int rc;
    vcl_error_clear(&e);
    if (mac) {
        if (!mac_check(mac, &e))
            return usage_error(c, "%s", e.msg);
        snprintf(macbuf, size, "%s", mac);
        for (char *p = macbuf; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    }
    if ((rc = opt_num(c, a, "memory", 64, 4194304, mem)) != EXIT_OK ||
        (rc = opt_num(c, a, "vcpus", 1, 1024, cpus)) != EXIT_OK)
        return rc;
    colset_add(s, "mac0", mac ? macbuf : NULL);
    colset_add_expr(s, "memory_mb", "?::int", NUM_PARAM(*mem));
    colset_add_expr(s, "vcpus", "?::int", NUM_PARAM(*cpus));
    return EXIT_OK;
}

int cmd_computer_add(ctl *c, const args *a)
{
    const char *name = a->pos[0], *node = opt_str(a, "node");
    colset s = { .n = 0 };
    num mem, cpus;
    char mac[32], node_ids[32];
    long long node_id = 0, id = 0;
    vcl_error e;
    int rc;
    if ((rc = check_name(c, "computer", name)) != EXIT_OK ||
        (rc = check_name(c, "node", node)) != EXIT_OK ||
        (rc = computer_fields(c, a, &s, &mem, &cpus, mac, sizeof mac)) != EXIT_OK)
        return rc;
    if (!ctl_db(c))
        return EXIT_FAIL;
    if ((rc = lookup_id(c, SQL_NODE_ID, "node", node, &node_id)) != EXIT_OK)
        return rc;
    snprintf(node_ids, sizeof node_ids, "%lld", node_id);
    colset_add(&s, "name", name);
    colset_add_expr(&s, "node_id", "?::bigint", node_ids);
    vcl_error_clear(&e);
    if (!colset_insert(c, "vcl.computer", &s, &id, &e)) {
        if (mac_taken(c, &e))
            return fail("cannot add computer '%s': MAC %s is already used by another computer "
                        "(see: %s computer list)", name, mac, PROG);
        return insert_fail(c, &e, "computer", name);
    }
    if (c->json)
        return print_row_json(c, SQL_COMPUTER_JSON, id, "the computer");
    if (!c->quiet)
        printf("added computer %s on node %s (id %lld)\n", name, node, id);
    return EXIT_OK;
}

int cmd_computer_set(ctl *c, const args *a)
{
    const char *name = a->pos[0];
    colset s = { .n = 0 };
    num mem, cpus;
    char mac[32] = "";
    int rc;
    if ((rc = check_name(c, "computer", name)) != EXIT_OK ||
        (rc = opt_word(c, a, "state", INVENTORY_STATES)) != EXIT_OK ||
        (rc = computer_fields(c, a, &s, &mem, &cpus, mac, sizeof mac)) != EXIT_OK)
        return rc;
    return set_by_name(c, a, "computer", name, &s, SQL_COMPUTER_JSON, mac);
}

int cmd_computer_list(ctl *c, const args *a)
{
    (void)a;
    if (!ctl_db(c))
        return EXIT_FAIL;
    if (c->json)
        return print_json(c, JSON_ARRAY(SQL_COMPUTER_ROWS), 0, NULL, "computers");
    return print_query_table(c, SQL_COMPUTER_LIST, 0, NULL, NULL, "computers",
                             "no computers (add one: vclctl computer add NAME --node NODE "
                             "--mac MAC)");
}
