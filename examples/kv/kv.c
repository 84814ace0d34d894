/* tpc-kv: a sharded key-value server that speaks the Redis protocol (RESP2), on libtpc's public
 * API.
 *
 *   tpc-kv [--port N] [--bind ADDR] [--shards N] [--max-bulk BYTES] [--max-args N]
 *          [--appendonly yes|no] [--appendfsync always|everysec|no] [--dir DIR]
 *          [--auto-aof-rewrite-min-size BYTES]
 *
 * Each key (or the part of it between the first braces, its {hashtag}) is owned by one shard,
 * picked by an xxhash of it; the shard keeps its keys in its own table (db.c), found through
 * libtpc's per-shard storage. Every shard accepts connections (tpc_server_start). A connection
 * reads what the client sent, parses every whole command in it (resp.c), runs the commands of
 * its own shard's keys at once and sends the others to their owners, one batch per owner, all
 * batches at once (tpc_call_many, which owns the batches: a connection that goes away never
 * leaves an owner pointing at freed memory), then writes the replies in the order of the
 * commands and sends them together (tpc_wbuf).
 *
 * Commands over keys of several shards (MSET, MGET, DEL, EXISTS, UNLINK) are atomic: the
 * connection locks each owner in ascending shard order (so two such commands never wait for each
 * other in a cycle), then runs every owner's part and unlocks in one fan-out. While an owner is
 * locked, every other command on it waits: nobody sees half of an MSET. A lock carries the
 * command's token: a command that stops waiting (its fiber cancelled, at shutdown) unlocks with
 * it every owner it may have locked, and a lock that comes after its unlock is not taken.
 *
 * Expiry: lazily when a key is touched, and actively from a timer on every shard that walks a
 * few buckets of the table every 100 ms.
 *
 * Durability (--appendonly yes): each shard appends the write commands it runs to its own log
 * (aof.c), written by a fiber of its own; with appendfsync always a reply goes only once the
 * fdatasync covering its commands has returned, and one sync covers every command appended
 * before it (group commit). Start-up replays the logs. A log is rewritten in the background
 * (BGREWRITEAOF, or once it has doubled since the last rewrite and passed
 * --auto-aof-rewrite-min-size, 64 MiB by default) while the shard goes on serving. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "tpc.h"
#include "aof.h"
#include "cmd.h"
#include "resp.h"

#define BATCH_MAX      1024 /* commands parsed from one read before their replies go */
#define REPLY_LIMIT    ((size_t)1 << 30)
#define EXPIRE_TICK_NS (100 * 1000 * 1000)

static struct {
    struct resp_limits lim;
    size_t query_limit; /* a connection's input buffer: the longest command it may send */
    int key;            /* the per-shard storage key of struct shard */
    int nshards;
    const char *bind;
    int port;
    bool appendonly;
    int appendfsync;
    const char *dir;
    uint64_t auto_rewrite_min;
} cfg = {
    .auto_rewrite_min = 64u << 20,
    .appendfsync = AOF_EVERYSEC,
    .dir = ".",
    .lim = {.max_bulk = 512u << 20, .max_args = 1024 * 1024, .max_inline = 64 * 1024},
    .key = -1,
    .bind = "127.0.0.1",
    .port = 6379,
};

/* A lock request waiting for its turn (on its fiber's stack). */
struct locker {
    struct locker *next;
    tpc_event turn; /* set when it is first in line and the shard may be free */
};

/* A shard's state. */
struct shard {
    struct kv_db db;
    uint64_t locked; /* the token of the multi-shard command that holds it, 0: none */
    struct locker *lk_head, *lk_tail; /* lock requests in arrival order */
    uint64_t given_up[8]; /* tokens of commands that stopped waiting (the latest, a ring) */
    unsigned ngiven_up;
    uint64_t txn_seq;   /* this shard's tokens */
    tpc_event unlocked; /* set while not locked */
    tpc_timer expire_timer;
    uint64_t expire_cursor;
    struct aof aof;
};

static tpc_server *server; /* shard 0's */

/* The clock of multi-shard writes (aof.h): a command's stamp, taken once every owner is locked
 * for it, and a rewrite's cut. Shared by the shards: one atomic add per such command. */
static _Atomic uint64_t txn_clock = 1;

static struct shard *me(void)
{
    return tpc_shard_get(cfg.key);
}

static int owner_of(const char *key, size_t klen)
{
    if (cfg.nshards == 1)
        return 0; /* no hash to compute */
    return (int)((key_slot_hash(key, klen) >> 32) % (uint64_t)cfg.nshards);
}

/* Waits until no multi-shard command holds the shard. */
static int wait_unlocked(struct shard *sh)
{
    while (sh->locked) {
        int rc = tpc_event_wait(&sh->unlocked);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The first lock request in line, if any, gets its turn. Only it is woken: waking every one
 * (they waited on `unlocked` with the other commands) made each unlock wake thousands of
 * requests under many connections, all but one to wait again. */
static void next_turn(struct shard *sh)
{
    if (!sh->locked && sh->lk_head)
        tpc_event_set(&sh->lk_head->turn);
}

static void unlock_if(struct shard *sh, uint64_t token)
{
    if (sh->locked == token) {
        sh->locked = 0;
        tpc_event_set(&sh->unlocked); /* the other commands first (they are woken first) */
        next_turn(sh);
    }
}

static bool given_up(const struct shard *sh, uint64_t token)
{
    for (unsigned i = 0; i < 8; i++)
        if (sh->given_up[i] == token)
            return true;
    return false;
}

/* Active expiry: each tick walks a hundredth of the table (at least 64 buckets), so that a
 * walk passes every key in 10 s whatever the table's size, and goes on while a walk finds as
 * many expired keys as a quarter of the buckets it walked, for up to 1 ms (1 % of the CPU). */
static void expire_tick(tpc_timer *t, void *arg)
{
    (void)t;
    struct shard *sh = arg;
    sh->db.now = kv_now_ms();
    dict_rehash_step(&sh->db.keys, 64);
    /* Nothing can expire: no walk (with 12 M keys it took a third of a CPU). */
    if (!sh->db.expires) {
        sh->db.avg_ttl = 0;
        return;
    }
    /* A hundredth of the table, again while a quarter of what was walked went, within 1 ms: the
     * clock is read every 256 buckets, so a big table's walk cannot overrun it. */
    size_t buckets = (sh->db.keys.size[0] + sh->db.keys.size[1]) / 100, walked = 0, gone = 0;
    if (buckets < 64)
        buckets = 64;
    uint64_t t0 = tpc_now_fresh();
    do {
        gone += db_expire_some(&sh->db, &sh->expire_cursor, 256);
        if ((walked += 256) >= buckets) {
            if (gone < buckets / 4)
                break;
            walked = gone = 0;
        }
    } while (tpc_now_fresh() - t0 < 1000 * 1000);
}

static void shard_destroy(void *p)
{
    struct shard *sh = p;
    tpc_timer_stop(&sh->expire_timer);
    aof_close(&sh->aof);
    dict_free(&sh->db.keys, true);
    tpc_event_destroy(&sh->unlocked);
    free(sh);
}

/* ---- What a log rewrite needs (aof.h, struct aof_hooks) ---- */

static int rewrite_begin(struct aof *a, uint64_t *cut)
{
    struct shard *sh = (struct shard *)((char *)a - offsetof(struct shard, aof));
    int rc = wait_unlocked(sh);
    if (rc == 0) /* (no suspension from the check to here) */
        *cut = atomic_fetch_add(&txn_clock, 1);
    return rc;
}

static int settle(void *arg)
{
    (void)arg;
    struct shard *sh = me();
    int rc = wait_unlocked(sh); /* a command stamped before the cut runs its part here first */
    return rc < 0 ? rc : aof_settle(&sh->aof);
}

static int rewrite_settle_others(struct aof *a) /* (all at once: each waits on its disk) */
{
    if (cfg.nshards == 1)
        return 0;
    tpc_call_item *items = calloc((size_t)cfg.nshards - 1, sizeof(*items));
    if (!items)
        return -ENOMEM;
    for (int o = 0, i = 0; o < cfg.nshards; o++)
        if (o != a->shard)
            items[i++].shard = o;
    int rc = tpc_call_many(items, (size_t)cfg.nshards - 1, settle, NULL);
    for (int i = 0; rc == 0 && i < cfg.nshards - 1; i++)
        rc = items[i].err < 0 ? items[i].err : items[i].result < 0 ? items[i].result : 0;
    free(items);
    return rc;
}

static const struct aof_hooks rewrite_hooks = {rewrite_begin, rewrite_settle_others};

/* What start-up read of the logs, for each shard to replay its own. */
struct start {
    struct aof_verdict verdict;
    struct aof_scan *scans; /* by shard (NULL: no logs) */
};

/* A key whose time passed goes from the log too (cmd.h, kv_db.expiring). */
static void log_expired(void *arg, const struct entry *e)
{
    struct shard *sh = arg;
    if (sh->aof.fd >= 0)
        aof_append(&sh->aof, 2, (const char *[]){"DEL", e->key}, (size_t[]){3, e->klen});
}

static int shard_init(void *arg)
{
    struct start *st = arg;
    struct shard *sh = calloc(1, sizeof(*sh));
    if (!sh)
        return -ENOMEM;
    dict_init(&sh->db.keys);
    tpc_event_init(&sh->unlocked, true);
    sh->db.expiring = log_expired; /* (after the replay: nothing expires while it runs) */
    sh->db.expiring_arg = sh;
    tpc_timer_init(&sh->expire_timer, expire_tick, sh);
    int rc = tpc_shard_set(cfg.key, sh);
    if (rc < 0) {
        free(sh);
        return rc;
    }
    if (cfg.appendonly) {
        if ((rc = aof_open(&sh->aof, cfg.dir, tpc_shard_id(), cfg.nshards, cfg.appendfsync, &sh->db,
                           &st->verdict, &st->scans[tpc_shard_id()], &rewrite_hooks)) < 0)
            return rc; /* the destructor frees what was made */
        sh->aof.auto_min = cfg.auto_rewrite_min;
    } else {
        aof_off(&sh->aof);
    }
    tpc_timer_start(&sh->expire_timer, EXPIRE_TICK_NS, EXPIRE_TICK_NS);
    return 0;
}

static int shard_scan(void *arg)
{
    struct aof_scan *scans = arg;
    int rc = aof_scan(cfg.dir, tpc_shard_id(), &scans[tpc_shard_id()]);
    if (rc < 0)
        fprintf(stderr, "tpc-kv: cannot read the log of shard %d in %s: %s\n", tpc_shard_id(),
                cfg.dir, tpc_strerror(rc));
    return rc;
}

static int shard_flush(void *arg) /* the drain of a clean stop: the log to disk */
{
    (void)arg;
    return aof_flush(&me()->aof);
}

/* ---- What goes to the log ----
 * A write command as run, except that relative times become absolute (a replay may come much
 * later) and SPOP's random choice becomes the SREM of what it popped. Errors change nothing and
 * are not logged. */

/* The bulk strings of a reply (a bulk, or an array of them), as arguments from argv[from]. */
static size_t reply_bulks(const char *r, size_t len, const char **argv, size_t *argl, size_t from,
                          size_t max)
{
    size_t n = from;
    const char *end = r + len;
    if (*r == '*')
        r = strchr(r, '\n') + 1;
    while (r < end && *r == '$' && n < max) {
        long long l = strtoll(r + 1, NULL, 10);
        r = strchr(r, '\n') + 1;
        if (l < 0)
            break;
        argv[n] = r;
        argl[n++] = (size_t)l;
        r += l + 2;
    }
    return n;
}

/* Before a write command runs: a log rewrite in progress writes its keys out first. */
static void touch_keys(struct shard *sh, const struct command *c, size_t argc, const char **argv,
                       const size_t *argl)
{
    if (!sh->aof.rw.on || !(c->flags & F_WRITE))
        return;
    size_t last = c->last < 0 ? argc - (size_t)(-c->last) : (size_t)c->last;
    if (c->first)
        for (size_t i = (size_t)c->first; i <= last && i < argc; i += (size_t)c->step)
            aof_touch(&sh->aof, argv[i], argl[i]);
}

/* SET as the log writes it: its time (the last EX, PX, EXAT or PXAT: set_options let through
 * only one kind) as one PXAT, a wall time, so that a replay knows when the key goes whenever it
 * runs; the other options as given. */
static void log_set(struct aof *a, size_t argc, const char **argv, const size_t *argl)
{
    const char *sv[8], **v = argc <= 8 ? sv : malloc(argc * sizeof(*v));
    size_t sl[8], *l = argc <= 8 ? sl : malloc(argc * sizeof(*l));
    if (!v || !l) {
        fputs("tpc-kv: out of memory\n", stderr);
        abort();
    }
    size_t n = 0, t = 0;
    int unit = 0;
    for (size_t i = 0; i < argc; i++) {
        int u = 0;
        if (i >= 3 && i + 1 < argc && argl[i] == 2)
            u = !strncasecmp(argv[i], "ex", 2) ? 1 : !strncasecmp(argv[i], "px", 2) ? 2 : 0;
        else if (i >= 3 && i + 1 < argc && argl[i] == 4)
            u = !strncasecmp(argv[i], "exat", 4) ? 3 : !strncasecmp(argv[i], "pxat", 4) ? 4 : 0;
        if (u) {
            unit = u;
            t = ++i;
        } else {
            v[n] = argv[i];
            l[n++] = argl[i];
        }
    }
    char num[24];
    if (unit) {
        long long x, now = wall_ms();
        resp_ll(argv[t], argl[t], &x); /* (set_options checked it, and that it does not overflow) */
        long long ms = unit == 1 ? x * 1000 : x;
        long long at = unit == 4 ? x : unit == 3 ? ms : ms > LLONG_MAX - now ? LLONG_MAX : now + ms;
        v[n] = "PXAT";
        l[n++] = 4;
        v[n] = num;
        l[n++] = (size_t)snprintf(num, sizeof(num), "%lld", at);
    }
    aof_append(a, n, v, l);
    if (v != sv)
        free(v);
    if (l != sl)
        free(l);
}

/* A command that gave its key a time already past deleted it (SET ... PXAT, EXPIRE and the
 * like, as Redis): it goes to the log as the DEL it was, not as a time that a replay (which
 * expires nothing until its end) would keep the key alive under for the commands after it. */
static bool logged_as_del(struct shard *sh, const char *key, size_t klen)
{
    if (dict_find(&sh->db.keys, key, klen, kv_hash(key, klen)))
        return false;
    aof_append(&sh->aof, 2, (const char *[]){"DEL", key}, (size_t[]){3, klen});
    return true;
}

static void log_write(struct shard *sh, const struct command *c, size_t argc, const char **argv,
                      const size_t *argl, const char *reply, size_t rlen, const struct aof_tag *tag)
{
    if (sh->aof.fd < 0 || !(c->flags & F_WRITE) || (rlen && reply[0] == '-'))
        return;
    if (c->op == OP_SET) {
        if (!logged_as_del(sh, argv[1], argl[1]))
            log_set(&sh->aof, argc, argv, argl);
    } else if (c->op == OP_EXPIREAT) {
        if (rlen >= 2 && reply[1] == '1' && !logged_as_del(sh, argv[1], argl[1]))
            aof_append(&sh->aof, argc, argv, argl);
    } else if (c->op == OP_EXPIRE || c->op == OP_PEXPIRE) {
        long long t;
        if (rlen < 2 || reply[1] != '1' || resp_ll(argv[2], argl[2], &t) < 0)
            return; /* nothing changed */
        if (logged_as_del(sh, argv[1], argl[1]))
            return;
        char num[24];
        const char *v[3] = {"PEXPIREAT", argv[1], num};
        size_t l[3] = {9, argl[1], 0};
        l[2] = (size_t)snprintf(num, sizeof(num), "%lld",
                                (long long)wall_ms() + t * (c->op == OP_EXPIRE ? 1000 : 1));
        aof_append(&sh->aof, 3, v, l);
    } else if (c->op == OP_SPOP) {
        size_t max = rlen / 4 + 3; /* a bulk takes 6 bytes at least */
        const char **v = malloc(max * sizeof(*v));
        size_t *l = malloc(max * sizeof(*l));
        v[0] = "SREM";
        l[0] = 4;
        v[1] = argv[1];
        l[1] = argl[1];
        size_t n = reply_bulks(reply, rlen, v, l, 2, max);
        if (n > 2)
            aof_append(&sh->aof, n, v, l);
        free(v);
        free(l);
    } else {
        aof_append_tagged(&sh->aof, tag, argc, argv, argl);
    }
}

/* ---- Batches: commands sent to their owner, with their arguments copied ---- */

struct bcmd {
    const struct command *c;
    size_t a0, argc; /* its arguments: argl[a0 .. a0 + argc) */
    size_t off, len; /* its reply in out */
};

struct batch {
    bool txn;       /* part of a multi-shard command: the owner is locked for it; unlock after */
    bool hold;      /* and with appendfsync always, the owner stays locked after its part: the
                       command unlocks every owner once every part is synced (multi) */
    uint64_t token; /* the command's lock token */
    int owner;      /* the shard it runs on */
    bool ran;       /* batch_run began (read by batch_release, after the call let it go) */
    struct aof_tag tag; /* a multi-shard write's part: its stamp and owners (its own copy) */
    struct bcmd *cmds;
    size_t n, cap;
    size_t *argl;
    size_t nargs, capargs;
    struct sbuf data; /* the arguments' bytes, back to back */
    struct sbuf out;  /* the replies */
};

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) {
        fputs("tpc-kv: out of memory\n", stderr);
        abort();
    }
    return p;
}

static void batch_add(struct batch *b, const struct command *c, size_t argc, const char **argv,
                      const size_t *argl)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 8;
        b->cmds = xrealloc(b->cmds, b->cap * sizeof(*b->cmds));
    }
    if (b->capargs - b->nargs < argc) {
        while (b->capargs - b->nargs < argc)
            b->capargs = b->capargs ? b->capargs * 2 : 16;
        b->argl = xrealloc(b->argl, b->capargs * sizeof(*b->argl));
    }
    b->cmds[b->n++] = (struct bcmd){.c = c, .a0 = b->nargs, .argc = argc};
    for (size_t i = 0; i < argc; i++) {
        b->argl[b->nargs++] = argl[i];
        sb_put(&b->data, argv[i], argl[i]);
    }
}

static void batch_free(void *p)
{
    struct batch *b = p;
    if (!b)
        return;
    free((char *)b->tag.owners);
    free(b->cmds);
    free(b->argl);
    sb_free(&b->data);
    sb_free(&b->out);
    free(b);
}

static struct batch *batch_new(void)
{
    struct batch *b = calloc(1, sizeof(*b));
    if (!b)
        abort();
    return b;
}

/* On the owner: runs the batch's commands in order, with no suspension between them. */
static int batch_run(void *p)
{
    struct batch *b = p;
    b->ran = true;
    struct shard *sh = me();
    if (!b->txn) {
        int rc = wait_unlocked(sh);
        if (rc < 0)
            return rc;
    } else if (sh->locked != b->token) {
        return -ECANCELED; /* its command stopped waiting and unlocked: not run */
    }
    sh->db.now = kv_now_ms();
    uint64_t appended = sh->aof.appended;
    const char *argv_small[16], **argv = argv_small;
    size_t maxargs = 0;
    for (size_t i = 0; i < b->n; i++)
        if (b->cmds[i].argc > maxargs)
            maxargs = b->cmds[i].argc;
    if (maxargs > 16)
        argv = xrealloc(NULL, maxargs * sizeof(*argv));
    const char *d = b->data.p;
    for (size_t i = 0; i < b->n; i++) {
        struct bcmd *c = &b->cmds[i];
        for (size_t k = 0; k < c->argc; k++) {
            argv[k] = d;
            d += b->argl[c->a0 + k];
        }
        c->off = b->out.len;
        touch_keys(sh, c->c, c->argc, argv, b->argl + c->a0);
        cmd_run(&sh->db, c->c, c->argc, argv, b->argl + c->a0, &b->out);
        c->len = b->out.len - c->off;
        log_write(sh, c->c, c->argc, argv, b->argl + c->a0, b->out.p + c->off, c->len,
                  b->tag.stamp ? &b->tag : NULL);
    }
    if (argv != argv_small)
        free(argv);
    if (b->txn && !b->hold)
        unlock_if(sh, b->token);
    /* appendfsync always: synced first */
    return aof_wait(&sh->aof, sh->aof.appended, sh->aof.appended != appended);
}

/* A stamped part that the caller stopped waiting for before it was sent (or could start) still
 * runs, on its owner, which stays locked for it until then: a stamped command is finished, never
 * half dropped (an owner unlocked without its part could take a rewrite's cut past the stamp,
 * and the next start would replay the other parts alone). */
static int batch_detached(void *p)
{
    struct batch *b = p;
    batch_run(b);
    if (b->hold) /* (nobody waits for the others: as soon as its own part is synced) */
        unlock_if(me(), b->token);
    batch_free(b);
    return 0;
}

static void txn_unlock(void *arg);

/* Runs run(arg) (which unlocks shard for token, and frees arg after) on shard in a fiber of its
 * own; if it cannot (a stop), unlocks the shard and frees arg. */
static void finish_part(int shard, tpc_fiber_fn run, void *arg, uint64_t token,
                        void (*free_fn)(void *))
{
    tpc_fiber_opts o = {.name = "kv-part", .detached = true};
    if (tpc_spawn_on(shard, &o, run, arg, NULL) < 0) {
        tpc_submit_to(shard, txn_unlock, (void *)(uintptr_t)token);
        free_fn(arg);
    }
}

static void batch_release(void *p)
{
    struct batch *b = p;
    if (b->ran && b->hold) /* its caller stopped waiting: nobody unlocks all at once */
        tpc_submit_to(b->owner, txn_unlock, (void *)(uintptr_t)b->token);
    if (b->ran || !b->tag.stamp)
        batch_free(b);
    else
        finish_part(b->owner, batch_detached, b, b->token, batch_free);
}

/* ---- A connection ---- */

struct slot {
    const struct command *c; /* NULL: unknown command or wrong arity (reply made already) */
    size_t a0, argc;         /* in conn.args */
    int owner;               /* its shard; -1: the connection's own business, or a barrier */
    bool barrier;            /* runs alone, after everything before it: F_ALL, multi-shard */
    int src;                 /* its reply: -1 in conn.local, else in the batch of that shard */
    size_t off, len;
};

struct conn {
    int fd;
    tpc_rbuf in;
    tpc_wbuf out;
    struct resp_args args;
    struct slot *slots;
    struct sbuf local; /* replies made here */
    tpc_call_item *items;
    struct batch **batches; /* by shard, for the run being sent */
    bool quit;
    const char *perr; /* a protocol error after the commands parsed (they run first) */
};

/* Replies of the connection's own commands (PING, ECHO, SELECT, QUIT, COMMAND, CONFIG). */
static void conn_command(struct conn *c, const struct command *cmd, size_t argc, const char **argv,
                         const size_t *argl, struct sbuf *out)
{
    switch (cmd->op) {
    case OP_PING:
        if (argc > 2)
            sb_errorf(out, "ERR wrong number of arguments for '%s' command", "ping");
        else if (argc == 2)
            sb_bulk(out, argv[1], argl[1]);
        else
            sb_simple(out, "PONG");
        break;
    case OP_ECHO:
        sb_bulk(out, argv[1], argl[1]);
        break;
    case OP_SELECT: {
        long long db;
        if (resp_ll(argv[1], argl[1], &db) < 0)
            sb_error(out, "ERR value is not an integer or out of range");
        else if (db != 0)
            sb_error(out, "ERR DB index is out of range");
        else
            sb_simple(out, "OK");
        break;
    }
    case OP_QUIT:
        sb_simple(out, "OK");
        c->quit = true;
        break;
    case OP_COMMAND: {
        static const char *subs[] = {"count", "docs", "info", "list", "help"};
        int sub = argc < 2 ? 1 : -1;
        for (int i = 0; i < 5 && argc >= 2; i++)
            if (argl[1] == strlen(subs[i]) && !strncasecmp(argv[1], subs[i], argl[1]))
                sub = i;
        if (sub < 0)
            sb_errorf(out, "ERR unknown subcommand '%.*s'. Try COMMAND HELP.",
                      (int)(argl[1] < 128 ? argl[1] : 128), argv[1]);
        else if ((sub == 0 || sub == 4) && argc > 2)
            sb_errorf(out, "ERR wrong number of arguments for 'command|%s' command", subs[sub]);
        else if (sub == 0)
            sb_int(out, (long long)cmd_count());
        else if (sub == 4) {
            sb_array(out, 2);
            sb_simple(out, "COMMAND COUNT: how many commands there are.");
            sb_simple(out, "COMMAND [DOCS|INFO|LIST]: an empty list (no documentation here).");
        } else
            sb_array(out, 0); /* COMMAND, COMMAND DOCS ...: no documentation here */
        break;
    }
    default: { /* OP_CONFIG */
        static const char *fsyncs[] = {
            [AOF_ALWAYS] = "always", [AOF_EVERYSEC] = "everysec", [AOF_NO] = "no"};
        const char *params[][2] = {
            {"save", ""},
            {"appendonly", cfg.appendonly ? "yes" : "no"},
            {"appendfsync", fsyncs[cfg.appendfsync]},
            {"databases", "1"},
            {"maxmemory", "0"},
            {"dir", cfg.dir},
        };
        enum { NPARAMS = sizeof(params) / sizeof(params[0]) };
        bool get = argl[1] == 3 && !strncasecmp(argv[1], "get", 3);
        if (argl[1] == 9 && !strncasecmp(argv[1], "resetstat", 9) && argc == 2) {
            sb_simple(out, "OK"); /* (no statistics to reset) */
            return;
        }
        if ((argl[1] == 3 && !strncasecmp(argv[1], "set", 3)) ||
            (argl[1] == 7 && !strncasecmp(argv[1], "rewrite", 7))) {
            sb_error(out, "ERR only CONFIG GET is supported");
            return;
        }
        if (!get || argc < 3) {
            if (get)
                sb_error(out, "ERR wrong number of arguments for 'config|get' command");
            else
                sb_errorf(out, "ERR unknown subcommand '%.*s'. Try CONFIG HELP.",
                          (int)(argl[1] < 128 ? argl[1] : 128), argv[1]);
            return;
        }
        /* Each once, whatever matches it, case aside (as Redis 7): a pattern answers with the
         * parameter's name, a plain name with its own spelling. */
        const char *name[NPARAMS] = {NULL};
        size_t namel[NPARAMS], n = 0;
        for (size_t k = 2; k < argc; k++) {
            bool glob = memchr(argv[k], '*', argl[k]) || memchr(argv[k], '?', argl[k]) ||
                        memchr(argv[k], '[', argl[k]);
            char *low = glob ? malloc(argl[k] + 1) : NULL;
            for (size_t j = 0; low && j < argl[k]; j++)
                low[j] = (char)tolower((unsigned char)argv[k][j]);
            for (size_t i = 0; i < NPARAMS; i++) {
                size_t pl = strlen(params[i][0]);
                if (name[i] || (glob && !low))
                    continue;
                if (glob ? glob_match(low, argl[k], params[i][0], pl)
                         : argl[k] == pl && !strncasecmp(argv[k], params[i][0], pl)) {
                    name[i] = glob ? params[i][0] : argv[k];
                    namel[i] = glob ? pl : argl[k];
                    n++;
                }
            }
            free(low);
        }
        sb_array(out, 2 * (long long)n);
        for (size_t i = 0; i < NPARAMS; i++)
            if (name[i]) {
                sb_bulk(out, name[i], namel[i]);
                sb_bulk(out, params[i][1], strlen(params[i][1]));
            }
    }
    }
}

/* Classifies the command of slot s: its owner, or the connection, or a barrier. */
static void classify(struct conn *c, struct slot *s)
{
    const char **argv = c->args.argv + s->a0;
    const size_t *argl = c->args.argl + s->a0;
    s->owner = -1;
    s->barrier = false;
    s->src = -1;
    s->off = c->local.len;
    s->c = cmd_lookup(argv[0], argl[0]);
    if (!s->c || cmd_check(s->c, s->argc, &c->local) < 0) {
        if (!s->c)
            cmd_unknown(s->argc, argv, argl, &c->local);
        s->c = NULL; /* the error is its reply */
        s->len = c->local.len - s->off;
        return;
    }
    int failing;
    if ((s->c->flags & F_WRITE) && (failing = aof_failing()) != 0) { /* as Redis words it */
        sb_errorf(&c->local, "MISCONF Errors writing to the AOF file: %s", tpc_strerror(failing));
        s->c = NULL;
        s->len = c->local.len - s->off;
        return;
    }
    if (s->c->flags & F_CONN)
        return;
    if (s->c->flags & F_ALL) {
        s->barrier = true;
        return;
    }
    if (cfg.nshards == 1) {
        s->owner = 0; /* every key is here */
        return;
    }
    size_t idx[64];
    size_t n = cmd_keys(s->c, s->argc, idx, 64);
    s->owner = owner_of(argv[idx[0]], argl[idx[0]]);
    if (s->c->flags & F_MULTI) {
        /* All the keys on one shard: an ordinary command there. Else a barrier. */
        size_t last = s->c->last < 0 ? s->argc - (size_t)(-s->c->last) : (size_t)s->c->last;
        for (size_t i = (size_t)s->c->first; i <= last && i < s->argc; i += (size_t)s->c->step)
            if (owner_of(argv[i], argl[i]) != s->owner) {
                s->barrier = true;
                s->owner = -1;
                return;
            }
    }
    (void)n;
}

#define EMIT_RUN   (64 * 1024)        /* replies appended together, at most */
#define EMIT_SLICE ((size_t)64 << 20) /* pending reply bytes a connection holds, about */
#define RUN_MAX    64                 /* commands run (and their replies built) together */

/* Appends n bytes of replies, in slices: a reply bigger than the writer's limit (an MGET of a
 * thousand 1 MiB values) goes out as it is flushed (it closed the connection without a word),
 * and past EMIT_SLICE pending the writer is flushed (the client then paces the reading). */
static int emit_bytes(struct conn *c, const char *p, size_t n)
{
    while (n) {
        size_t k = n < EMIT_SLICE ? n : EMIT_SLICE;
        int rc = tpc_wbuf_append(&c->out, p, k);
        if (rc == -ENOBUFS && (rc = (int)tpc_wbuf_flush(&c->out)) >= 0)
            rc = tpc_wbuf_append(&c->out, p, k);
        if (rc < 0)
            return rc;
        if (tpc_wbuf_pending(&c->out) > EMIT_SLICE && (rc = (int)tpc_wbuf_flush(&c->out)) < 0)
            return rc;
        p += k, n -= k;
    }
    return 0;
}

/* Appends the replies of slots [from, to) in order. */
static int emit(struct conn *c, size_t from, size_t to)
{
    for (size_t i = from; i < to;) {
        struct slot *s = &c->slots[i];
        const struct sbuf *src = s->src < 0 ? &c->local : &c->batches[s->src]->out;
        size_t off = s->off, len = s->len;
        /* Replies that lie back to back in one buffer (a pipeline's, made here): one append. */
        for (i++; i < to && c->slots[i].src == s->src && c->slots[i].off == off + len &&
                  len + c->slots[i].len <= EMIT_RUN;
             i++)
            len += c->slots[i].len;
        int rc = emit_bytes(c, src->p + off, len);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Runs slots [from, to), none a barrier: the local ones here, the others in one batch per owner,
 * all owners at once; then appends the replies in order. */
static int run(struct conn *c, size_t from, size_t to)
{
    int self = tpc_shard_id();
    struct shard *sh = me();
    size_t nitems = 0;
    int rc = wait_unlocked(sh);
    if (rc < 0)
        return rc;
    sh->db.now = kv_now_ms();
    uint64_t appended = sh->aof.appended;
    for (size_t i = from; i < to; i++) {
        struct slot *s = &c->slots[i];
        const char **argv = c->args.argv + s->a0;
        const size_t *argl = c->args.argl + s->a0;
        if (!s->c)
            continue; /* its error was written by classify */
        s->src = -1;
        if (s->owner >= 0 && s->owner != self) {
            struct batch **b = &c->batches[s->owner];
            if (!*b) {
                *b = batch_new();
                c->items[nitems++] = (tpc_call_item){.shard = s->owner, .arg = *b};
            }
            s->src = s->owner;
            s->off = (*b)->n; /* its index in the batch, for now */
            batch_add(*b, s->c, s->argc, argv, argl);
            continue;
        }
        s->off = c->local.len;
        if (s->owner < 0) {
            conn_command(c, s->c, s->argc, argv, argl, &c->local);
            s->len = c->local.len - s->off;
            continue;
        }
        touch_keys(sh, s->c, s->argc, argv, argl);
        cmd_run(&sh->db, s->c, s->argc, argv, argl, &c->local);
        s->len = c->local.len - s->off;
        log_write(sh, s->c, s->argc, argv, argl, c->local.p + s->off, s->len, NULL);
    }
    uint64_t logged = sh->aof.appended;
    if (nitems) {
        rc = tpc_call_many(c->items, nitems, batch_run, batch_free);
        if (rc < 0) { /* the call released the batches */
            for (size_t k = 0; k < nitems; k++)
                c->batches[c->items[k].shard] = NULL;
            return rc;
        }
        for (size_t k = 0; rc == 0 && k < nitems; k++)
            rc = c->items[k].err < 0 ? c->items[k].err : c->items[k].result;
        for (size_t i = from; rc == 0 && i < to; i++) {
            struct slot *s = &c->slots[i];
            if (s->src >= 0) {
                struct bcmd *bc = &c->batches[s->src]->cmds[s->off];
                s->off = bc->off;
                s->len = bc->len;
            }
        }
    }
    if (rc == 0)
        rc = aof_wait(&sh->aof, logged, logged != appended); /* always: synced, then replies */
    if (rc == 0)
        rc = emit(c, from, to);
    for (size_t k = 0; k < nitems; k++) {
        batch_free(c->batches[c->items[k].shard]);
        c->batches[c->items[k].shard] = NULL;
    }
    return rc;
}

/* ---- Commands over several shards ---- */

static int txn_lock(void *arg)
{
    struct shard *sh = me();
    uint64_t token = (uint64_t)(uintptr_t)arg;
    if (sh->locked || sh->lk_head) { /* in line, in arrival order */
        struct locker l = {.next = NULL};
        tpc_event_init(&l.turn, false);
        if (sh->lk_tail)
            sh->lk_tail->next = &l;
        else
            sh->lk_head = &l;
        sh->lk_tail = &l;
        int rc = 0;
        while (rc == 0 && (sh->locked || sh->lk_head != &l)) {
            rc = tpc_event_wait(&l.turn);
            tpc_event_reset(&l.turn);
        }
        struct locker **pp = &sh->lk_head, *prev = NULL; /* out of the line */
        while (*pp != &l)
            prev = *pp, pp = &(*pp)->next;
        *pp = l.next;
        if (sh->lk_tail == &l)
            sh->lk_tail = prev;
        tpc_event_destroy(&l.turn);
        if (rc < 0) {
            next_turn(sh); /* (its turn, if it had come, goes on) */
            return rc;
        }
    }
    if (given_up(sh, token)) {
        next_turn(sh);
        return -ECANCELED; /* its command is gone */
    }
    sh->locked = token;
    tpc_event_reset(&sh->unlocked);
    return 0;
}

/* A message from a command that stopped waiting: unlocks the owner if the command holds it, and
 * remembers the token so that a lock request of it still queued is not taken. Messages run
 * during the stop may come after the shard's state is gone. */
static void txn_unlock(void *arg)
{
    struct shard *sh = me();
    uint64_t token = (uint64_t)(uintptr_t)arg;
    if (!sh)
        return;
    unlock_if(sh, token);
    sh->given_up[sh->ngiven_up++ % 8] = token;
}

/* A token for a command over several shards: unique over the process. */
static uint64_t txn_token(void)
{
    return ((uint64_t)(tpc_shard_id() + 1) << 48) | ++me()->txn_seq;
}

/* Locks the shards o for which want(o, arg) in ascending order (every command over several
 * shards locks in this order: no deadlock) for token. On failure the ones it may have locked are
 * unlocked, and the error returned. */
static int lock_owners(uint64_t token, bool (*want)(int o, void *arg), void *arg)
{
    int rc = 0;
    for (int o = 0; o < cfg.nshards && rc == 0; o++) {
        if (!want(o, arg))
            continue;
        int r = 0;
        rc = tpc_call_on(o, txn_lock, (void *)(uintptr_t)token, &r);
        if (rc == 0 && r < 0)
            rc = r;
        if (rc < 0) /* those locked, and o, whose lock may still come: unlocked */
            for (int u = 0; u <= o; u++)
                if (want(u, arg))
                    tpc_submit_to(u, txn_unlock, (void *)(uintptr_t)token);
    }
    return rc;
}

static bool has_batch(int o, void *arg)
{
    return ((struct conn *)arg)->batches[o] != NULL;
}

static void batch_begin(struct batch *b, const struct command *c, const char *name, size_t nl)
{
    batch_add(b, c, 1, &name, &nl);
}

static void batch_arg(struct batch *b, const char *p, size_t n)
{
    if (b->nargs == b->capargs) {
        b->capargs = b->capargs ? b->capargs * 2 : 16;
        b->argl = xrealloc(b->argl, b->capargs * sizeof(*b->argl));
    }
    b->argl[b->nargs++] = n;
    b->cmds[b->n - 1].argc++;
    sb_put(&b->data, p, n);
}

static long long reply_int(const struct sbuf *out, size_t off)
{
    return out->p[off] == ':' ? strtoll(out->p + off + 1, NULL, 10) : 0;
}

/* MSET, MGET, DEL, UNLINK, EXISTS over keys of several shards, atomically: every owner is locked
 * (in ascending shard order), then every owner runs its part and unlocks, all at once. MGET runs
 * one single-key MGET per key so that the values can be put back in the keys' order. */
static int multi(struct conn *c, struct slot *s)
{
    const char **argv = c->args.argv + s->a0;
    const size_t *argl = c->args.argl + s->a0;
    const struct command *cmd = s->c;
    bool mset = cmd->op == OP_MSET, mget = cmd->op == OP_MGET;
    if (mset && s->argc % 2 == 0) {
        s->off = c->local.len;
        cmd_check(&(struct command){.name = "mset", .arity = 1}, 0, &c->local);
        s->len = c->local.len - s->off;
        return 0;
    }
    size_t step = mset ? 2 : 1, nitems = 0;
    uint64_t token = txn_token();
    for (size_t i = 1; i < s->argc; i += step) {
        int o = owner_of(argv[i], argl[i]);
        struct batch **b = &c->batches[o];
        if (!*b) {
            *b = batch_new();
            (*b)->txn = true;
            (*b)->token = token;
            (*b)->owner = o;
            c->items[nitems++] = (tpc_call_item){.shard = o, .arg = *b};
        }
        if (mget || (*b)->n == 0)
            batch_begin(*b, cmd, argv[0], argl[0]);
        batch_arg(*b, argv[i], argl[i]);
        if (mset)
            batch_arg(*b, argv[i + 1], argl[i + 1]);
    }
    int rc = lock_owners(token, has_batch, c);
    bool released = false; /* by tpc_call_many, which failed */
    if (rc == 0 && (cmd->flags & F_WRITE) && cfg.appendonly) {
        /* Every owner locked: the stamp orders this command against the rewrites' cuts. */
        size_t cap = (size_t)cfg.nshards * 12 + 2, ol = 0;
        char *owners = malloc(cap);
        if (!owners)
            abort();
        for (int o = 0; o < cfg.nshards; o++)
            if (c->batches[o])
                ol += (size_t)snprintf(owners + ol, cap - ol, "%s%d", ol ? "," : "", o);
        if (nitems == (size_t)cfg.nshards)
            strcpy(owners, "*"); /* every shard */
        uint64_t stamp = atomic_fetch_add(&txn_clock, 1);
        for (size_t k = 0; k < nitems; k++) {
            struct batch *b = c->batches[c->items[k].shard];
            b->tag = (struct aof_tag){.stamp = stamp, .owners = strdup(owners)};
            if (!b->tag.owners)
                abort();
            /* With always, no owner serves another command (and acknowledges it) on the keys
             * of this one before every part is on disk: a crash between would drop the
             * command whole (aof.h) under a write that depended on it. */
            b->hold = cfg.appendfsync == AOF_ALWAYS;
        }
        free(owners);
    }
    if (rc == 0) {
        /* A stamped write is finished whatever its caller does (batch_release): every part
         * runs on its owner, which stays locked for it until then. */
        bool stamped = c->batches[c->items[0].shard]->tag.stamp != 0;
        rc = tpc_call_many(c->items, nitems, batch_run, stamped ? batch_release : batch_free);
        released = rc < 0;
        for (size_t k = 0; rc == 0 && stamped && k < nitems; k++)
            if (c->items[k].err < 0) { /* could not start there: run it there all the same */
                batch_release(c->batches[c->items[k].shard]);
                c->batches[c->items[k].shard] = NULL;
            }
        for (size_t k = 0; !released && k < nitems; k++) /* every part synced: all unlocked */
            if (c->batches[c->items[k].shard] && c->batches[c->items[k].shard]->hold)
                tpc_submit_to(c->items[k].shard, txn_unlock, (void *)(uintptr_t)token);
        for (size_t k = 0; rc == 0 && k < nitems; k++)
            rc = c->items[k].err < 0 ? c->items[k].err : c->items[k].result;
        if (rc < 0 && !stamped) /* parts that did not run, or may still: owners unlocked */
            for (size_t k = 0; k < nitems; k++)
                tpc_submit_to(c->items[k].shard, txn_unlock, (void *)(uintptr_t)token);
    }
    if (rc < 0) {
        for (size_t k = 0; k < nitems; k++) {
            if (!released)
                batch_free(c->batches[c->items[k].shard]);
            c->batches[c->items[k].shard] = NULL;
        }
        return rc;
    }
    s->src = -1;
    s->off = c->local.len;
    if (mset) {
        sb_simple(&c->local, "OK");
    } else if (mget) {
        sb_array(&c->local, (long long)s->argc - 1);
        size_t *next = calloc((size_t)cfg.nshards, sizeof(*next));
        for (size_t i = 1; i < s->argc; i++) {
            struct batch *b = c->batches[owner_of(argv[i], argl[i])];
            struct bcmd *bc = &b->cmds[next[owner_of(argv[i], argl[i])]++];
            sb_put(&c->local, b->out.p + bc->off + 4, bc->len - 4); /* without its "*1\r\n" */
        }
        free(next);
    } else {
        long long n = 0;
        for (size_t k = 0; k < nitems; k++)
            n += reply_int(&c->batches[c->items[k].shard]->out, 0);
        sb_int(&c->local, n);
    }
    s->len = c->local.len - s->off;
    for (size_t k = 0; k < nitems; k++) {
        batch_free(c->batches[c->items[k].shard]);
        c->batches[c->items[k].shard] = NULL;
    }
    return 0;
}

/* ---- Commands over every shard: DBSIZE, FLUSHALL, KEYS, SCAN, INFO ---- */

enum { ALL_COUNT, ALL_FLUSH, ALL_KEYS, ALL_SCAN, ALL_REWRITE };

struct all_arg {
    int op;
    uint64_t token;  /* FLUSHALL, KEYS, DBSIZE: every shard is locked for it (0: none) */
    uint64_t stamp;  /* FLUSHALL with more than one shard: its stamp (aof.h), 0: none */
    int shard;       /* where it runs */
    bool ran;        /* all_run began (read by all_release, after the call let it go) */
    bool hold;       /* a stamped FLUSHALL with always: the shard stays locked after its part,
                        until every part is synced (as a multi-shard MSET's owners) */
    const char *pat; /* MATCH / KEYS pattern, copied (NULL: every key) */
    size_t plen;
    int type;        /* SCAN TYPE, 0: any */
    long long count; /* SCAN COUNT */
    uint64_t cursor; /* SCAN: in and out */
    size_t n, expires;
    int64_t avg_ttl;
    uint64_t rewrites, rewriting, log_bytes, log_writes;
    bool log_direct;
    struct sbuf out; /* matching keys as bulk strings */
    char patbuf[];
};

static void all_free(void *p)
{
    struct all_arg *a = p;
    if (!a)
        return;
    sb_free(&a->out);
    free(a);
}

struct collect {
    struct all_arg *a;
    int64_t now;
};

static void collect_key(void *arg, struct entry *e)
{
    struct collect *k = arg;
    if (e->expire && e->expire <= k->now)
        return;
    if (k->a->type && e->type != k->a->type)
        return;
    if (k->a->pat && !glob_match(k->a->pat, k->a->plen, e->key, e->klen))
        return;
    sb_bulk(&k->a->out, e->key, e->klen);
    k->a->n++;
}

static int all_op(struct shard *sh, struct all_arg *a);

/* On each shard: op, alone (the shard locked for the command's token, or not locked). */
static int all_run(void *p)
{
    struct all_arg *a = p;
    a->ran = true;
    struct shard *sh = me();
    if (a->token && sh->locked != a->token)
        return -ECANCELED; /* the command stopped waiting and unlocked: not run */
    int rc = a->token ? 0 : wait_unlocked(sh);
    if (rc < 0)
        return rc;
    rc = all_op(sh, a);
    if (!a->hold)
        unlock_if(sh, a->token);
    return rc;
}

/* A stamped FLUSHALL's part is finished on its shard whatever its caller does (as
 * batch_release). */
static int all_detached(void *p)
{
    struct all_arg *a = p;
    all_run(a);
    if (a->hold) /* (nobody waits for the others: as soon as its own part is synced) */
        unlock_if(me(), a->token);
    all_free(a);
    return 0;
}

static void all_release(void *p)
{
    struct all_arg *a = p;
    if (a->ran && a->hold) /* its caller stopped waiting: nobody unlocks all at once */
        tpc_submit_to(a->shard, txn_unlock, (void *)(uintptr_t)a->token);
    if (a->ran || !a->stamp)
        all_free(a);
    else
        finish_part(a->shard, all_detached, a, a->token, all_free);
}

static int all_op(struct shard *sh, struct all_arg *a)
{
    int rc;
    struct collect k = {a, kv_now_ms()};
    switch (a->op) {
    case ALL_COUNT:
        a->n = dict_size(&sh->db.keys);
        a->expires = sh->db.expires;
        a->avg_ttl = sh->db.avg_ttl;
        a->rewrites = sh->aof.rw.rewrites;
        a->rewriting = sh->aof.rw.on || sh->aof.rw.starting;
        a->log_bytes = sh->aof.size;
        a->log_writes = sh->aof.writes;
        a->log_direct = sh->aof.direct;
        break;
    case ALL_REWRITE:
        rc = aof_rewrite_start(&sh->aof);
        return rc == -EBUSY ? 0 : rc;
    case ALL_FLUSH:
        db_flush(&sh->db);
        aof_append_tagged(&sh->aof, a->stamp ? &(struct aof_tag){a->stamp, "*"} : NULL, 1,
                          (const char *[]){"FLUSHALL"}, (size_t[]){8});
        return aof_wait(&sh->aof, sh->aof.appended, true);
    case ALL_KEYS:
        do
            a->cursor = dict_scan(&sh->db.keys, a->cursor, collect_key, &k);
        while (a->cursor);
        break;
    default: /* SCAN: until COUNT keys or ten times COUNT buckets, as Redis (a sparse table
              * took a call per COUNT buckets: thousands for a handful of keys) */
        for (long long i = 0; i / 10 < a->count && (long long)a->n < a->count; i++)
            if ((a->cursor = dict_scan(&sh->db.keys, a->cursor, collect_key, &k)) == 0)
                break;
        break;
    }
    return 0;
}

static struct all_arg *all_new(int op, const char *pat, size_t plen)
{
    struct all_arg *a = calloc(1, sizeof(*a) + plen + 1);
    if (!a)
        abort();
    a->op = op;
    if (pat) { /* (NULL: every key) */
        memcpy(a->patbuf, pat, plen);
        a->pat = a->patbuf;
        a->plen = plen;
    }
    return a;
}

static void on_all_free(struct conn *c)
{
    for (int i = 0; i < cfg.nshards; i++)
        all_free(c->items[i].arg);
}

static bool every(int o, void *arg)
{
    (void)o, (void)arg;
    return true;
}

/* Runs op on every shard; results in c->items[i].arg (ours on 0). FLUSHALL, KEYS and DBSIZE
 * (and INFO) lock every shard first, as a multi-shard MSET does its owners: they see all of an
 * MSET or none of it (a FLUSHALL between its parts would leave half of it for good). */
static int on_all(struct conn *c, int op, const char *pat, size_t plen)
{
    uint64_t token = 0, stamp = 0;
    int rc;
    if (op == ALL_FLUSH || op == ALL_KEYS || op == ALL_COUNT) {
        token = txn_token();
        if ((rc = lock_owners(token, every, NULL)) < 0)
            return rc;
    }
    if (op == ALL_FLUSH && cfg.nshards > 1 && cfg.appendonly)
        stamp = atomic_fetch_add(&txn_clock, 1);
    for (int i = 0; i < cfg.nshards; i++) {
        c->items[i] = (tpc_call_item){.shard = i, .arg = all_new(op, pat, plen)};
        ((struct all_arg *)c->items[i].arg)->token = token;
        ((struct all_arg *)c->items[i].arg)->stamp = stamp;
        ((struct all_arg *)c->items[i].arg)->shard = i;
        ((struct all_arg *)c->items[i].arg)->hold = stamp && cfg.appendfsync == AOF_ALWAYS;
    }
    rc = tpc_call_many(c->items, (size_t)cfg.nshards, all_run, stamp ? all_release : all_free);
    bool released = rc < 0; /* the call released the arguments */
    for (int i = 0; rc == 0 && stamp && i < cfg.nshards; i++)
        if (c->items[i].err < 0) { /* could not start there: run it there all the same */
            all_release(c->items[i].arg);
            c->items[i].arg = NULL;
        }
    for (int i = 0; !released && i < cfg.nshards; i++) /* every part synced: all unlocked */
        if (c->items[i].arg && ((struct all_arg *)c->items[i].arg)->hold)
            tpc_submit_to(i, txn_unlock, (void *)(uintptr_t)token);
    for (int i = 0; rc == 0 && i < cfg.nshards; i++)
        rc = c->items[i].err < 0 ? c->items[i].err : c->items[i].result;
    if (rc < 0 && token && !stamp) /* parts that did not run, or may: shards unlocked */
        for (int i = 0; i < cfg.nshards; i++)
            tpc_submit_to(i, txn_unlock, (void *)(uintptr_t)token);
    if (rc < 0 && !released)
        on_all_free(c);
    return rc;
}

static int scan(struct conn *c, const char **argv, const size_t *argl, size_t argc)
{
    struct sbuf *out = &c->local;
    unsigned long long cursor;
    char *end;
    errno = 0;
    cursor = strtoull(argv[1], &end, 10);
    if (end != argv[1] + argl[1] || errno || argl[1] == 0) {
        sb_error(out, "ERR invalid cursor");
        return 0;
    }
    const char *pat = NULL; /* every key */
    size_t plen = 0;
    long long count = 10;
    int type = 0;
    for (size_t i = 2; i < argc; i += 2) {
        if (i + 1 >= argc) {
            sb_error(out, "ERR syntax error");
            return 0;
        }
        if (argl[i] == 5 && !strncasecmp(argv[i], "match", 5)) {
            pat = argv[i + 1];
            plen = argl[i + 1];
            if (plen == 1 && pat[0] == '*')
                pat = NULL;
        } else if (argl[i] == 5 && !strncasecmp(argv[i], "count", 5)) {
            if (resp_ll(argv[i + 1], argl[i + 1], &count) < 0 || count < 1) {
                sb_error(out, count < 1 ? "ERR syntax error"
                                        : "ERR value is not an integer or out of range");
                return 0;
            }
        } else if (argl[i] == 4 && !strncasecmp(argv[i], "type", 4)) {
            static const char *names[] = {"", "string", "list", "hash", "set", "zset"};
            for (int t = 1; t < 6; t++)
                if (strlen(names[t]) == argl[i + 1] &&
                    !strncasecmp(argv[i + 1], names[t], argl[i + 1]))
                    type = t;
            if (!type)
                type = 99; /* an unknown type matches nothing */
        } else {
            sb_error(out, "ERR syntax error");
            return 0;
        }
    }
    int shard = (int)(cursor % (unsigned long long)cfg.nshards);
    struct all_arg *a = all_new(ALL_SCAN, pat, plen);
    a->cursor = cursor / (unsigned long long)cfg.nshards;
    a->count = count;
    a->type = type;
    int r = 0;
    int rc = tpc_call_owned(shard, all_run, a, all_free, &r);
    if (rc < 0 || r < 0)
        return rc < 0 ? rc : (all_free(a), r);
    unsigned long long next = 0;
    if (a->cursor)
        next = a->cursor * (unsigned long long)cfg.nshards + (unsigned long long)shard;
    else if (shard + 1 < cfg.nshards)
        next = (unsigned long long)shard + 1;
    char num[24];
    int n = snprintf(num, sizeof(num), "%llu", next);
    sb_array(out, 2);
    sb_bulk(out, num, (size_t)n);
    sb_array(out, (long long)a->n);
    sb_put(out, a->out.p, a->out.len);
    all_free(a);
    return 0;
}

static size_t start_memory; /* the allocator's bytes in use when the server started to serve */

/* The process's resident memory (/proc/self/statm). */
static size_t rss_bytes(void)
{
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f && fscanf(f, "%*u %lu", &pages) != 1)
        pages = 0;
    if (f)
        fclose(f);
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* The allocator's bytes in use, every thread's arena together (glibc's mallinfo2); where
 * another allocator serves malloc (a sanitizer's) mallinfo2 knows nothing: the resident set
 * then, and *what says which. mallinfo2 walks every free chunk (60-130 ms on a heap that lost
 * a million keys): INFO asks only for its memory section. */
static size_t used_memory(const char **what)
{
    struct mallinfo2 m = mallinfo2();
    size_t n = m.uordblks + m.hblkhd;
    *what = "libc";
    if (!n) {
        *what = "rss";
        n = rss_bytes();
    }
    return n;
}

/* INFO [section ...]: every section, or those named (case aside; "all", "everything" and
 * "default" name every one), as Redis. */
static int info(struct conn *c, const char **argv, const size_t *argl, size_t argc)
{
    int rc = on_all(c, ALL_COUNT, NULL, 0);
    if (rc < 0)
        return rc;
    size_t keys = 0, expires = 0;
    double ttl = 0; /* the shards' averages weighed by their keys with a time */
    uint64_t rewrites = 0, rewriting = 0, log_bytes = 0, log_writes = 0, direct = 0;
    for (int i = 0; i < cfg.nshards; i++) {
        struct all_arg *a = c->items[i].arg;
        keys += a->n;
        expires += a->expires;
        ttl += (double)a->avg_ttl * (double)a->expires;
        log_writes += a->log_writes;
        direct += a->log_direct;
        rewrites += a->rewrites;
        rewriting += a->rewriting;
        log_bytes += a->log_bytes;
    }
    on_all_free(c);
    static const char *names[4] = {"server", "memory", "persistence", "keyspace"};
    bool want[4] = {argc < 2, argc < 2, argc < 2, argc < 2};
    for (size_t k = 1; k < argc; k++)
        for (int i = 0; i < 4; i++) {
            bool every = (argl[k] == 3 && !strncasecmp(argv[k], "all", 3)) ||
                         (argl[k] == 10 && !strncasecmp(argv[k], "everything", 10)) ||
                         (argl[k] == 7 && !strncasecmp(argv[k], "default", 7));
            want[i] |=
                every || (argl[k] == strlen(names[i]) && !strncasecmp(argv[k], names[i], argl[k]));
        }
    const char *allocator = "libc";
    size_t used = want[1] ? used_memory(&allocator) : 0; /* (only when asked: it walks the heap) */
    double per_key =
        keys ? (double)(used > start_memory ? used - start_memory : 0) / (double)keys : 0;
    char sec[4][320];
    snprintf(sec[0], sizeof(sec[0]),
             "# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\n"
             "tpc_kv_shards:%d\r\ntpc_kv_connection_shard:%d\r\n",
             cfg.nshards, tpc_shard_id());
    snprintf(sec[1], sizeof(sec[1]),
             "# Memory\r\nused_memory:%zu\r\nused_memory_rss:%zu\r\nmem_allocator:%s\r\n"
             "tpc_kv_bytes_per_key:%.1f\r\n",
             used, want[1] ? rss_bytes() : 0, allocator, per_key);
    snprintf(
        sec[2], sizeof(sec[2]),
        "# Persistence\r\naof_enabled:%d\r\naof_rewrite_in_progress:%d\r\naof_rewrites:%llu\r\n"
        "aof_current_size:%llu\r\naof_last_write_status:%s\r\ntpc_kv_aof_writes:%llu\r\n"
        "tpc_kv_aof_direct_shards:%llu\r\n",
        cfg.appendonly, rewriting > 0, (unsigned long long)rewrites, (unsigned long long)log_bytes,
        aof_failing() ? "err" : "ok", (unsigned long long)log_writes, (unsigned long long)direct);
    snprintf(sec[3], sizeof(sec[3]), "# Keyspace\r\ndb0:keys=%zu,expires=%zu,avg_ttl=%lld\r\n",
             keys, expires, expires ? (long long)(ttl / (double)expires) : 0);
    char text[1300];
    size_t n = 0;
    for (int i = 0; i < 4; i++)
        if (want[i])
            n += (size_t)snprintf(text + n, sizeof(text) - n, "%s%s", n ? "\r\n" : "", sec[i]);
    sb_bulk(&c->local, text, n);
    return 0;
}

/* A barrier: runs alone, its reply in c->local. */
static int barrier(struct conn *c, struct slot *s)
{
    if (s->c->flags & F_MULTI)
        return multi(c, s);
    const char **argv = c->args.argv + s->a0;
    const size_t *argl = c->args.argl + s->a0;
    int op = s->c->op;
    s->src = -1;
    s->off = c->local.len;
    int rc = 0;
    if (op == OP_SCAN) {
        rc = scan(c, argv, argl, s->argc);
    } else if (op == OP_INFO) {
        rc = info(c, argv, argl, s->argc);
    } else if (op == OP_KEYS) {
        const char *pat = argl[1] == 1 && argv[1][0] == '*' ? NULL : argv[1];
        if ((rc = on_all(c, ALL_KEYS, pat, argl[1])) == 0) {
            size_t n = 0;
            for (int i = 0; i < cfg.nshards; i++)
                n += ((struct all_arg *)c->items[i].arg)->n;
            sb_array(&c->local, (long long)n);
            for (int i = 0; i < cfg.nshards; i++)
                sb_put(&c->local, ((struct all_arg *)c->items[i].arg)->out.p,
                       ((struct all_arg *)c->items[i].arg)->out.len);
            on_all_free(c);
        }
    } else if (op == OP_BGREWRITEAOF) {
        if ((rc = on_all(c, ALL_REWRITE, NULL, 0)) == 0) {
            sb_simple(&c->local, "Background append only file rewriting started");
            on_all_free(c);
        }
    } else if (op == OP_DBSIZE) {
        if ((rc = on_all(c, ALL_COUNT, NULL, 0)) == 0) {
            long long n = 0;
            for (int i = 0; i < cfg.nshards; i++)
                n += (long long)((struct all_arg *)c->items[i].arg)->n;
            sb_int(&c->local, n);
            on_all_free(c);
        }
    } else if (s->argc > 2 ||
               (s->argc == 2 && !(argl[1] == 4 && !strncasecmp(argv[1], "sync", 4)) &&
                !(argl[1] == 5 && !strncasecmp(argv[1], "async", 5)))) {
        sb_error(&c->local, "ERR syntax error"); /* (FLUSHALL [ASYNC | SYNC]: both flush now) */
    } else {                                     /* flushall, flushdb */
        if ((rc = on_all(c, ALL_FLUSH, NULL, 0)) == 0) {
            sb_simple(&c->local, "OK");
            on_all_free(c);
        }
    }
    s->len = c->local.len - s->off;
    return rc;
}

/* ---- The connection loop ---- */

/* Parses every whole command buffered (at most BATCH_MAX). Returns how many, with *used the
 * bytes they took and *need what the next one needs in all (0: unknown); a protocol error ends
 * the parse and is kept in c->perr, answered after the commands before it. */
static long parse_all(struct conn *c, size_t *used, size_t *need)
{
    char *buf = (char *)tpc_rbuf_data(&c->in); /* ours: inline arguments unescape in place */
    size_t len = tpc_rbuf_len(&c->in), n = 0;
    *used = 0;
    resp_args_clear(&c->args);
    while (n < BATCH_MAX) {
        size_t a0 = c->args.n - c->args.resume.done; /* (a partial command's progress: at 0) */
        const char *err;
        long r = resp_parse(buf + *used, len - *used, &cfg.lim, &c->args, need, &err);
        if (r < 0) {
            c->perr = err; /* the commands before it run and are answered first, as in Redis */
            *need = 0;
            break;
        }
        if (r == 0)
            break;
        *used += (size_t)r;
        if (c->args.n == a0)
            continue; /* an empty command */
        c->slots[n] = (struct slot){.a0 = a0, .argc = c->args.n - a0};
        classify(c, &c->slots[n]);
        n++;
    }
    if (*need)
        *need += *used; /* counted from the buffer's start */
    return (long)n;
}

/* Runs n parsed commands: runs of ordinary ones, and the barriers alone, replies in order. */
static int execute(struct conn *c, size_t n)
{
    size_t i = 0;
    while (i < n && !c->quit) {
        /* At most RUN_MAX commands' replies are built at once (1,024 GETs of a 1 MiB value
         * held a GiB a connection); the ones before are out in the writer by then. */
        c->local.len = 0;
        size_t j = i;
        while (j < n && j - i < RUN_MAX && !c->slots[j].barrier &&
               !(c->slots[j].c && c->slots[j].c->op == OP_QUIT))
            j++;
        if (j < n && c->slots[j].c && c->slots[j].c->op == OP_QUIT)
            j++; /* QUIT ends the run; what follows it is not run */
        int rc = j > i ? run(c, i, j) : 0;
        if (rc < 0)
            return rc;
        if (j < n && c->slots[j].barrier && !c->quit) {
            if ((rc = barrier(c, &c->slots[j])) < 0 || (rc = emit(c, j, j + 1)) < 0)
                return rc;
            j++;
        }
        i = j;
    }
    return 0;
}

/* What one pipeline needed and a connection keeps no longer: reply space past 1 MiB, argument
 * arrays past 64 Ki entries (a 300 MB reply or a million-key command left an idle connection
 * holding it until it closed). */
static void conn_trim(struct conn *c)
{
    if (c->local.cap > (1u << 20))
        sb_free(&c->local);
    if (c->args.cap > (1u << 16) && !c->args.resume.done)
        resp_args_free(&c->args);
}

static int serve(struct conn *c)
{
    for (;;) {
        size_t used, need;
        c->local.len = 0;
        long n = parse_all(c, &used, &need);
        if (n > 0) {
            int rc = execute(c, (size_t)n);
            tpc_rbuf_consume(&c->in, used);
            conn_trim(c);
            if (rc < 0)
                return rc;
            /* After QUIT nothing more is read (as Redis): not even a protocol error that
             * came after it, which held back the replies before it. */
            if (c->quit || (!c->perr && (tpc_rbuf_len(&c->in) == 0 || need == 0))) {
                ssize_t w = tpc_wbuf_flush(&c->out);
                if (w < 0)
                    return (int)w;
            }
            if (c->quit)
                return 0;
            if (!c->perr)
                continue;
        }
        if (c->perr) { /* a protocol error: say so, then close (as Redis) */
            c->local.len = 0;
            sb_errorf(&c->local, "ERR %s", c->perr);
            tpc_wbuf_append(&c->out, c->local.p, c->local.len);
            tpc_wbuf_flush(&c->out);
            return -EPROTO;
        }
        tpc_rbuf_consume(&c->in, used); /* empty commands */
        if (tpc_wbuf_pending(&c->out)) {
            ssize_t w = tpc_wbuf_flush(&c->out);
            if (w < 0)
                return (int)w;
        }
        const char *p;
        ssize_t r = need > used ? tpc_rbuf_need(&c->in, need - used, &p) : tpc_rbuf_fill(&c->in);
        if (r == -EMSGSIZE || r == -ENOBUFS) {
            c->local.len = 0;
            sb_error(&c->local, "ERR Protocol error: request too large");
            tpc_wbuf_append(&c->out, c->local.p, c->local.len);
            tpc_wbuf_flush(&c->out);
            return -EMSGSIZE;
        }
        if (r <= 0)
            return (int)r;
    }
}

static int conn_fn(int fd, void *arg)
{
    (void)arg;
    struct conn c = {.fd = fd};
    tpc_sock_nodelay(fd, 1);
    c.slots = malloc(BATCH_MAX * sizeof(*c.slots));
    c.items = malloc((size_t)cfg.nshards * sizeof(*c.items));
    c.batches = calloc((size_t)cfg.nshards, sizeof(*c.batches));
    if (!c.slots || !c.items || !c.batches || tpc_rbuf_init(&c.in, fd, cfg.query_limit) < 0 ||
        tpc_wbuf_init(&c.out, fd, REPLY_LIMIT) < 0) {
        free(c.slots);
        free(c.items);
        free(c.batches);
        return 0;
    }
    serve(&c);
    tpc_rbuf_destroy(&c.in);
    tpc_wbuf_destroy(&c.out);
    resp_args_free(&c.args);
    sb_free(&c.local);
    free(c.slots);
    free(c.items);
    free(c.batches);
    return 0;
}

/* ---- Start-up ---- */

static int kv_main(void *arg)
{
    (void)arg;
    cfg.nshards = tpc_shard_count();
    const char *allocator;
    start_memory = used_memory(&allocator); /* (before the logs are replayed: their keys count) */
    /* Every log is read before any is replayed: a command over several shards is replayed
     * only if every owner's log has its part (aof.h). */
    struct start st = {0};
    int rc = 0;
    if (cfg.appendonly) {
        if (!(st.scans = calloc((size_t)cfg.nshards, sizeof(*st.scans))))
            return 1;
        rc = tpc_on_all(shard_scan, st.scans);
        int present = 0;
        size_t records = 0;
        for (int i = 0; rc == 0 && i < cfg.nshards; i++) {
            struct aof_scan *sc = &st.scans[i];
            present += sc->log != NULL;
            records += sc->records;
            if (rc == 0 && sc->nshards && sc->nshards != (uint32_t)cfg.nshards) {
                /* (before any shard makes a log of its own with this count) */
                fprintf(stderr,
                        "tpc-kv: %s/tpc-kv-%d.aof was written by %u shards: run with "
                        "--shards %u\n",
                        cfg.dir, i, sc->nshards, sc->nshards);
                rc = -EINVAL;
            }
        }
        /* (logs with no record yet: a first start cut short between the shards' creations) */
        if (rc == 0 && present && present < cfg.nshards && records) {
            fprintf(stderr, "tpc-kv: %s has the logs of %d of %d shards; missing:", cfg.dir,
                    present, cfg.nshards);
            for (int i = 0; i < cfg.nshards; i++)
                if (!st.scans[i].log)
                    fprintf(stderr, " tpc-kv-%d.aof", i);
            fprintf(stderr, " (restore it, or remove every log to start empty): not starting\n");
            rc = -ENOENT;
        }
        if (rc == 0)
            rc = aof_decide(st.scans, cfg.nshards, &st.verdict);
        atomic_store(&txn_clock, st.verdict.clock);
    }
    if (rc == 0)
        rc = tpc_on_all(shard_init, &st);
    for (int i = 0; st.scans && i < cfg.nshards; i++)
        aof_scan_free(&st.scans[i]);
    free(st.scans);
    aof_verdict_free(&st.verdict);
    if (rc < 0) {
        fprintf(stderr, "tpc-kv: cannot set up the shards: %s\n", tpc_strerror(rc));
        return 1;
    }
    char text[128];
    snprintf(text, sizeof(text), "%s:%d", cfg.bind, cfg.port);
    tpc_addr a;
    if (tpc_addr_parse(text, &a) < 0) {
        fprintf(stderr, "tpc-kv: bad address %s\n", text);
        return 2;
    }
    tpc_server *srv;
    tpc_server_opts o = {.stack_size = 64 * 1024};
    if ((rc = tpc_server_start(&a, &o, conn_fn, NULL, &srv)) < 0) {
        fprintf(stderr, "tpc-kv: cannot listen on %s: %s\n", text, tpc_strerror(rc));
        return 1;
    }
    server = srv;
    tpc_server_addr(srv, &a);
    tpc_addr_format(&a, text, sizeof(text));
    printf("tpc-kv: %d shards, listening on %s\n", cfg.nshards, text);
    fflush(stdout);
    tpc_event forever;
    tpc_event_init(&forever, false);
    tpc_event_wait(&forever); /* until the runtime stops (SIGINT, SIGTERM) */
    tpc_event_destroy(&forever);
    if (server)
        tpc_server_stop(server);
    return 0;
}

/* The stop's last log writes failed (or were cut short): the exit status says so. */
static atomic_bool stop_unclean;

/* A clean stop (SIGINT, SIGTERM): connections get 100 ms to finish what they do, then every
 * shard writes and syncs what is left of its log. */
static int kv_drain(void *arg)
{
    (void)arg;
    if (server) {
        tpc_deadline_set(100 * 1000 * 1000);
        tpc_server_stop(server);
        tpc_deadline_clear();
        server = NULL;
    }
    int rc = tpc_on_all(shard_flush, NULL);
    if (rc < 0) { /* (each shard said why) */
        atomic_store(&stop_unclean, true);
        fprintf(stderr, "tpc-kv: the logs were not all written at the stop: %s\n",
                tpc_strerror(rc));
    }
    return rc;
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--port N] [--bind ADDR] [--shards N] [--max-bulk BYTES] [--max-args N]\n"
            "          [--appendonly yes|no] [--appendfsync always|everysec|no] [--dir DIR]\n"
            "          [--auto-aof-rewrite-min-size BYTES]\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    tpc_config rc_config = {.drain = kv_drain};
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage(argv[0]);
        if (!strcmp(argv[i], "--port"))
            cfg.port = atoi(v);
        else if (!strcmp(argv[i], "--bind"))
            cfg.bind = v;
        else if (!strcmp(argv[i], "--shards"))
            rc_config.shards = (unsigned)atoi(v);
        else if (!strcmp(argv[i], "--max-bulk"))
            cfg.lim.max_bulk = strtoull(v, NULL, 10);
        else if (!strcmp(argv[i], "--max-args"))
            cfg.lim.max_args = strtoull(v, NULL, 10);
        else if (!strcmp(argv[i], "--dir"))
            cfg.dir = v;
        else if (!strcmp(argv[i], "--auto-aof-rewrite-min-size"))
            cfg.auto_rewrite_min = strtoull(v, NULL, 10);
        else if (!strcmp(argv[i], "--appendonly") && (!strcmp(v, "yes") || !strcmp(v, "no")))
            cfg.appendonly = !strcmp(v, "yes");
        else if (!strcmp(argv[i], "--appendfsync") && !strcmp(v, "always"))
            cfg.appendfsync = AOF_ALWAYS;
        else if (!strcmp(argv[i], "--appendfsync") && !strcmp(v, "everysec"))
            cfg.appendfsync = AOF_EVERYSEC;
        else if (!strcmp(argv[i], "--appendfsync") && !strcmp(v, "no"))
            cfg.appendfsync = AOF_NO;
        else
            usage(argv[0]);
        i++;
    }
    if (cfg.lim.max_bulk > (1u << 30)) { /* (a command fits a log record's 32-bit length) */
        fprintf(stderr, "tpc-kv: --max-bulk is at most 1073741824 (1 GiB)\n");
        return 2;
    }
    if (cfg.port < 0 || cfg.port > 65535 || cfg.lim.max_bulk == 0 || cfg.lim.max_args == 0)
        usage(argv[0]);
    /* A command may hold a few bulks at their limit: the input buffer may hold twice one, and
     * more than the longest inline line. */
    cfg.query_limit = 2 * cfg.lim.max_bulk + (1u << 20);
    /* A shard that has just answered does not keep polling for the next request (libtpc's
     * default spin of 10 us): with many connections that each wait for their answer
     * (redis-benchmark -P 1) the spin cost more CPU per request than it saved (docs/benchmarks.md).
     * TPC_SPIN_NS still sets it. */
    if (!getenv("TPC_SPIN_NS"))
        rc_config.spin_ns = -1;
    cfg.key = tpc_shard_key_create(shard_destroy);
    if (cfg.key < 0)
        return 1;
    int rc = tpc_run(&rc_config, kv_main, NULL);
    /* A stop by SIGINT or SIGTERM that went through cleanly is a success (as redis-server's:
     * a service manager reads 143 as a failure); one whose last log writes failed is not. */
    if (atomic_load(&stop_unclean))
        return 1;
    return rc == 128 + SIGINT || rc == 128 + SIGTERM ? 0 : rc < 0 ? 1 : rc;
}
