/* Metrics (include/tpc/metrics.h): the Prometheus text parses (a checker of the exposition
 * format below: names, labels, values, TYPE before samples, histogram buckets cumulative and
 * ending at +Inf = _count, no series twice) and counts what the test did; the table; gathering
 * while a shard is stalled; the errors. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <unistd.h>
#include "helpers.h"

/* ---- A checker of the Prometheus text format (0.0.4). ---- */

#define MS           1000000ull
#define MAX_FAMILIES 128
#define MAX_SERIES   4096

struct family {
    char name[96], type[16];
};

struct series {
    char key[300]; /* name{labels}, le after a space for buckets */
    double value;
};

struct prom {
    struct family fam[MAX_FAMILIES];
    int nfam;
    struct series *ser; /* every sample, as written */
    int nser;
    char err[256];
};

static bool is_name_char(int c, bool first)
{
    return isalpha(c) || c == '_' || c == ':' || (!first && isdigit(c));
}

static struct family *find_family(struct prom *p, const char *name)
{
    for (int i = 0; i < p->nfam; i++)
        if (!strcmp(p->fam[i].name, name))
            return &p->fam[i];
    return NULL;
}

/* The family a sample belongs to: its name, or for a histogram its name without the suffix. */
static struct family *family_of(struct prom *p, const char *name)
{
    struct family *f = find_family(p, name);
    if (f)
        return f;
    static const char *const sfx[] = {"_bucket", "_sum", "_count"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(name), k = strlen(sfx[i]);
        if (n > k && !strcmp(name + n - k, sfx[i])) {
            char base[96];
            snprintf(base, sizeof(base), "%.*s", (int)(n - k), name);
            f = find_family(p, base);
            if (f && !strcmp(f->type, "histogram"))
                return f;
        }
    }
    return NULL;
}

static bool bad_line(struct prom *p, int line, const char *why)
{
    snprintf(p->err, sizeof(p->err), "line %d: %s", line, why);
    return false;
}

/* Parses text into p; false (with p->err) at the first line that breaks the format. */
static bool prom_parse(struct prom *p, const char *text)
{
    memset(p, 0, sizeof(*p));
    p->ser = calloc(MAX_SERIES, sizeof(*p->ser));
    int line = 0;
    for (const char *s = text; *s;) {
        line++;
        const char *end = strchr(s, '\n');
        if (!end)
            return bad_line(p, line, "no newline at the end");
        char buf[1024];
        size_t len = (size_t)(end - s);
        if (len >= sizeof(buf))
            return bad_line(p, line, "line too long");
        memcpy(buf, s, len);
        buf[len] = '\0';
        s = end + 1;
        if (buf[0] == '#') {
            char kw[8], name[96], rest[512];
            if (sscanf(buf, "# %7s %95s %511[^\n]", kw, name, rest) != 3)
                return bad_line(p, line, "comment is not '# HELP|TYPE name text'");
            if (!strcmp(kw, "TYPE")) {
                if (find_family(p, name))
                    return bad_line(p, line, "TYPE twice");
                if (strcmp(rest, "counter") && strcmp(rest, "gauge") && strcmp(rest, "histogram"))
                    return bad_line(p, line, "unknown type");
                if (p->nfam == MAX_FAMILIES)
                    return bad_line(p, line, "too many families");
                snprintf(p->fam[p->nfam].name, sizeof(p->fam[0].name), "%s", name);
                snprintf(p->fam[p->nfam].type, sizeof(p->fam[0].type), "%.15s", rest);
                p->nfam++;
            } else if (strcmp(kw, "HELP")) {
                return bad_line(p, line, "comment keyword");
            }
            continue;
        }
        /* name{label="value",...} value */
        const char *c = buf;
        char name[96];
        size_t n = 0;
        if (!is_name_char(*c, true))
            return bad_line(p, line, "bad metric name");
        while (is_name_char(*c, n == 0) && n < sizeof(name) - 1)
            name[n++] = *c++;
        name[n] = '\0';
        struct family *f = family_of(p, name);
        if (!f)
            return bad_line(p, line, "sample before its TYPE");
        char key[256], le[32] = "";
        int k = snprintf(key, sizeof(key), "%s{", name);
        if (*c == '{') {
            c++;
            bool firstl = true;
            while (*c != '}') {
                if (!firstl && *c++ != ',')
                    return bad_line(p, line, "labels not separated by ','");
                firstl = false;
                char lname[64], lval[128];
                size_t ln = 0, lv = 0;
                if (!is_name_char(*c, true) || *c == ':')
                    return bad_line(p, line, "bad label name");
                while (is_name_char(*c, false) && *c != ':' && ln < sizeof(lname) - 1)
                    lname[ln++] = *c++;
                lname[ln] = '\0';
                if (*c++ != '=' || *c++ != '"')
                    return bad_line(p, line, "label without =\"");
                while (*c && *c != '"' && lv < sizeof(lval) - 1) {
                    if (*c == '\\') {
                        c++;
                        if (*c != '\\' && *c != '"' && *c != 'n')
                            return bad_line(p, line, "bad escape in a label value");
                    }
                    lval[lv++] = *c++;
                }
                lval[lv] = '\0';
                if (*c++ != '"')
                    return bad_line(p, line, "unterminated label value");
                if (!strcmp(lname, "le"))
                    snprintf(le, sizeof(le), "%.31s", lval);
                else
                    k += snprintf(key + k, sizeof(key) - (size_t)k, "%s=\"%s\",", lname, lval);
            }
            c++;
        }
        snprintf(key + k, sizeof(key) - (size_t)k, "}");
        if (*c++ != ' ')
            return bad_line(p, line, "no space before the value");
        char *vend;
        double v = strtod(c, &vend);
        if (vend == c || *vend != '\0')
            return bad_line(p, line, "bad value");
        bool bucket = strlen(name) > 7 && !strcmp(name + strlen(name) - 7, "_bucket");
        if (bucket != (le[0] != '\0'))
            return bad_line(p, line, "le on a sample that is not a bucket, or a bucket without le");
        if (!strcmp(f->type, "counter") && (v < 0 || strcmp(f->name, name)))
            return bad_line(p, line, "negative counter, or a counter with a suffix");
        /* Series: each once; buckets of one series in rising le, cumulative, ending at +Inf. */
        char full[300];
        snprintf(full, sizeof(full), "%s%s%s", key, le[0] ? " le=" : "", le);
        for (int i = 0; i < p->nser; i++)
            if (!strcmp(p->ser[i].key, full))
                return bad_line(p, line, "a series twice");
        if (bucket && p->nser > 0) {
            struct series *prev = &p->ser[p->nser - 1];
            size_t kl = strlen(key);
            if (!strncmp(prev->key, key, kl) && prev->key[kl] == ' ') {
                double prev_le = strtod(strchr(prev->key, '=') + 1, NULL);
                double this_le = strcmp(le, "+Inf") ? strtod(le, NULL) : INFINITY;
                if (!(this_le > prev_le))
                    return bad_line(p, line, "bucket le not rising");
                if (v < prev->value)
                    return bad_line(p, line, "buckets not cumulative");
            }
        }
        if (p->nser == MAX_SERIES)
            return bad_line(p, line, "too many series");
        snprintf(p->ser[p->nser].key, sizeof(p->ser[0].key), "%s", full);
        p->ser[p->nser++].value = v;
    }
    /* Every histogram series: its +Inf bucket equals its _count. */
    for (int i = 0; i < p->nser; i++) {
        char *inf = strstr(p->ser[i].key, "_bucket{");
        if (!inf || !strstr(p->ser[i].key, " le=+Inf"))
            continue;
        char want[300];
        snprintf(want, sizeof(want), "%.*s_count%.*s", (int)(inf - p->ser[i].key), p->ser[i].key,
                 (int)(strchr(p->ser[i].key, ' ') - (inf + 7)), inf + 7);
        bool found = false;
        for (int j = 0; j < p->nser; j++)
            if (!strcmp(p->ser[j].key, want)) {
                found = true;
                if (p->ser[j].value != p->ser[i].value)
                    return bad_line(p, 0, "histogram +Inf bucket differs from _count");
            }
        if (!found)
            return bad_line(p, 0, "histogram without _count");
    }
    return true;
}

/* The value of series key (name{labels,}), or -1. */
static double prom_get(const struct prom *p, const char *key)
{
    for (int i = 0; i < p->nser; i++)
        if (!strcmp(p->ser[i].key, key))
            return p->ser[i].value;
    return -1;
}

/* The checker rejects what it should (so that its passes mean something). */
static void test_checker_rejects(void **state)
{
    (void)state;
    struct prom p;
    static const char *const bad[] = {
        "x 1\n",                         /* no TYPE */
        "# TYPE x gauge\nx{a=\"1\" 1\n", /* unterminated labels */
        "# TYPE x counter\nx -1\n",      /* negative counter */
        "# TYPE x gauge\nx 1\nx 2\n",    /* a series twice */
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"2\"} 1\n", /* not cumulative */
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n",         /* +Inf != count */
        "# TYPE x gauge\nx 1",                                              /* no final newline */
        "# TYPE x gauge\nx one\n",                                          /* bad value */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(!prom_parse(&p, bad[i]));
        free(p.ser);
    }
    CHECK(prom_parse(&p, "# HELP h a histogram\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\n"
                         "h_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n"));
    free(p.ser);
    assert_no_check_failed();
}

/* ---- The runtime's metrics. ---- */

enum { CALLS = 50, READS = 20 };

static int plus_one(void *arg)
{
    return (int)(intptr_t)arg + 1;
}

/* The whole text in a buffer of the size asked: the shards run meanwhile, so a counter may gain
 * a digit between the two calls (the second then returns more than it had room for, and the
 * caller asks again, as tpc_metrics_write does). */
static char *format_all(int format)
{
    for (int tries = 0; tries < 20; tries++) {
        ssize_t need = tpc_metrics_format(NULL, 0, format);
        CHECK(need > 0);
        if (need <= 0)
            return NULL;
        char *buf = malloc((size_t)need + 1);
        ssize_t got = tpc_metrics_format(buf, (size_t)need + 1, format);
        CHECK(got > 0);
        if (got > 0 && got <= need)
            return buf; /* all of it (a gauge may have lost a digit meanwhile) */
        free(buf);
    }
    CHECK(!"the text kept growing between two calls");
    return NULL;
}

static int metrics_main(void *arg)
{
    (void)arg;
    /* Some of everything: calls to shard 1, reads and writes on a pipe, a sleep. */
    for (int i = 0; i < CALLS; i++) {
        int r = 0;
        CHECK_EQ(tpc_call_on(1, plus_one, (void *)(intptr_t)i, &r), 0);
        CHECK_EQ(r, i + 1);
    }
    int fds[2];
    CHECK_EQ(pipe(fds), 0);
    char c = 'x';
    for (int i = 0; i < READS; i++) {
        CHECK_EQ(tpc_write(fds[1], &c, 1, -1), 1);
        CHECK_EQ(tpc_read(fds[0], &c, 1, -1), 1);
    }
    /* The shard publishes its counters when it sleeps (and every 64 loop iterations): sleep
     * until they are there, not for a time (under valgrind the loop may not have slept yet). */
    char *text = NULL;
    struct prom p = {0};
    bool ok = false;
    for (int64_t end = t_now_ns() + t_wait_limit_ns(); t_now_ns() < end;) {
        CHECK_EQ(tpc_sleep(2 * MS), 0);
        free(p.ser);
        p.ser = NULL;
        free(text);
        text = format_all(TPC_METRICS_PROMETHEUS);
        ok = text && prom_parse(&p, text);
        if (!ok || prom_get(&p, "tpc_messages_out_total{shard=\"0\",}") >= CALLS)
            break;
    }
    if (!ok)
        check_failed("%s:%d: not Prometheus text: %s", __FILE__, __LINE__, p.err);
    if (ok) {
        CHECK_EQ(prom_get(&p, "tpc_shards{}"), 2);
        CHECK(prom_get(&p, on_epoll() ? "tpc_info{version=\"0.3.0\",backend=\"epoll\",}"
                                      : "tpc_info{version=\"0.3.0\",backend=\"io_uring\",}") == 1);
        CHECK(prom_get(&p, "tpc_tasks_total{shard=\"0\",}") > 0);
        CHECK(prom_get(&p, "tpc_loops_total{shard=\"0\",}") > 0);
        CHECK(prom_get(&p, "tpc_messages_out_total{shard=\"0\",}") >= CALLS);
        CHECK(prom_get(&p, "tpc_fibers{shard=\"0\",}") >= 1);
        CHECK(prom_get(&p, "tpc_call_round_trip_seconds_count{shard=\"0\",}") >= CALLS);
        CHECK(prom_get(&p, "tpc_call_round_trip_seconds_sum{shard=\"0\",}") > 0);
        CHECK(prom_get(&p, "tpc_io_seconds_count{shard=\"0\",class=\"read\",}") >= READS);
        CHECK(prom_get(&p, "tpc_io_seconds_count{shard=\"0\",class=\"write\",}") >= READS);
        CHECK(prom_get(&p, "tpc_loop_iteration_seconds_count{shard=\"0\",}") > 0);
        CHECK(prom_get(&p, "tpc_stalls_total{shard=\"1\",}") >= 0);
        CHECK(prom_get(&p, "tpc_blocking_helpers{}") >= 0);
        free(p.ser);
    }
    free(text);

    /* The table: a row per metric, a column per shard and the total. */
    text = format_all(TPC_METRICS_TABLE);
    CHECK(text && strstr(text, "2 shards"));
    CHECK(text && strstr(text, "\ntasks "));
    CHECK(text && strstr(text, "\ncall_round_trip count"));
    CHECK(text && strstr(text, "\nio_read p99 ns <="));
    free(text);

    /* tpc_metrics_write: the same text, through a pipe. */
    CHECK_EQ(tpc_metrics_write(fds[1], TPC_METRICS_PROMETHEUS), 0);
    close(fds[1]);
    char head[32] = "";
    CHECK(tpc_read_full(fds[0], head, sizeof(head) - 1, -1) > 0);
    CHECK(!strncmp(head, "# HELP tpc_info", 15));
    close(fds[0]);

    /* Errors, and a buffer too small: the length it needs, what fits, NUL-terminated. */
    char small[16];
    ssize_t need = tpc_metrics_format(small, sizeof(small), TPC_METRICS_PROMETHEUS);
    CHECK(need > (ssize_t)sizeof(small));
    CHECK_EQ(strlen(small), sizeof(small) - 1);
    CHECK_EQ(tpc_metrics_format(small, sizeof(small), 7), -EINVAL);
    CHECK_EQ(tpc_metrics_format(NULL, 10, TPC_METRICS_TABLE), -EINVAL);
    CHECK_EQ(tpc_metrics_write(-1, TPC_METRICS_TABLE), -EBADF);
    CHECK_EQ(tpc_metrics_write(1, 99), -EINVAL);
    return 0;
}

static void test_metrics(void **state)
{
    (void)state;
    assert_int_equal(tpc_metrics_format(NULL, 0, TPC_METRICS_PROMETHEUS), -EPERM);
    assert_int_equal(tpc_metrics_write(1, TPC_METRICS_PROMETHEUS), -EPERM);
    tpc_config c = {.shards = 2};
    run_config(&c, metrics_main, NULL);
}

/* Gathering stops no shard: shard 1 computes without coming back to its loop, and shard 0's
 * report does not wait for it. */
static atomic_int spinning, release_spinner;

static int spin(void *arg)
{
    (void)arg;
    atomic_store(&spinning, 1);
    while (!atomic_load(&release_spinner))
        ;
    atomic_store(&spinning, 0);
    return 0;
}

static int stalled_main(void *arg)
{
    (void)arg;
    atomic_store(&release_spinner, 0);
    tpc_fiber *f;
    tpc_fiber_opts o = {.name = "spinner"};
    CHECK_EQ(tpc_spawn_on(1, &o, spin, NULL, &f), 0);
    /* Wait (by polling shared memory, not a message: shard 1 answers none) until it spins. */
    WAIT_UNTIL(atomic_load(&spinning));
    char *text = format_all(TPC_METRICS_PROMETHEUS);
    CHECK(atomic_load(&spinning)); /* formatted while shard 1 was still away */
    struct prom p;
    CHECK(text && prom_parse(&p, text));
    if (text)
        free(p.ser);
    free(text);
    atomic_store(&release_spinner, 1);
    CHECK_EQ(tpc_join(f, NULL), 0);
    return 0;
}

static void test_metrics_while_a_shard_stalls(void **state)
{
    (void)state;
    tpc_config c = {.shards = 2, .cpus = "0,1", .stall_ms = -1};
    SKIP_IF(sysconf(_SC_NPROCESSORS_ONLN) < 2, "needs two CPUs (the spinner holds one)");
    run_config(&c, stalled_main, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checker_rejects),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_metrics_while_a_shard_stalls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
