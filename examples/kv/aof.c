/* The per-shard append-only log (aof.h).
 *
 * File: a 16-byte header ("TPCKVAOF", version, shard count), then records: a 4-byte length, a
 * 4-byte XXH32 of the payload, and the payload, the command as a RESP array. Replay reads
 * records while each is whole and its checksum holds; what follows the first that is not (a
 * write cut short by a crash, a corrupt block) is reported and cut off, so that new records
 * follow valid ones.
 *
 * With appendfsync always the file is opened O_DIRECT | O_DSYNC and each round is one write of
 * whole blocks starting at a block boundary: its records, then a pad record (replay goes on at
 * the next boundary) and zeros; a few rounds may be out at once, acknowledged in order ("Rounds"
 * below). A zeroer fiber keeps the file written with zeros a few MiB ahead
 * of the rounds, so that a round overwrites space the filesystem has allocated and written
 * already: the write is then the commit, with no metadata to journal and nothing handed to
 * io_uring's workers (docs/guide.md, "Durable appends"). Replay stops at the zeros (a record of
 * length 0) without a word; start-up cuts them off and the zeroer lays new ones. */
#include "aof.h"
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define MAGIC   "TPCKVAOF"
#define HDR_LEN 16
#define VERSION 2 /* 2: TXN, CUT and TXNABORT records may appear (1 is read, and raised to 2) */

#define BLOCK      4096u      /* the unit of a direct write */
#define ZERO_CHUNK (1u << 20) /* one write of the zeroer: each one a journal commit */
#define ZERO_AHEAD (8u << 20) /* how far ahead of the records the zeroer keeps the zeros */
/* A pad record: no payload; the records go on at the first block boundary after its header. */
#define PAD_LEN 0xffffffffu
#define PAD_SUM 0x21444150u /* "PAD!" */

static void put32(char *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static uint32_t get32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static void rewrite_end(struct aof *a, int rc);

/* Logs that cannot be written now, over every shard (write commands are refused meanwhile), and
 * the last such error. */
static _Atomic int failing_logs, last_failure;

int aof_failing(void)
{
    return atomic_load(&failing_logs) ? atomic_load(&last_failure) : 0;
}

/* Syncs the directory that holds path: a file made or renamed there survives a crash. */
static int sync_dir(const char *path)
{
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    int fd = tpc_open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0)
        return fd;
    int rc = tpc_fsync(fd);
    tpc_close(fd);
    return rc;
}

/* One record: length, checksum, the command as a RESP array. Returns its size. */
static size_t frame(struct sbuf *b, size_t argc, const char **argv, const size_t *argl)
{
    size_t start = b->len;
    sb_room(b, 8);
    b->len += 8;
    sb_array(b, (long long)argc);
    for (size_t i = 0; i < argc; i++)
        sb_bulk(b, argv[i], argl[i]);
    size_t len = b->len - start - 8;
    put32(b->p + start, (uint32_t)len);
    put32(b->p + start + 4, XXH32(b->p + start + 8, len, 0));
    return b->len - start;
}

void aof_append_tagged(struct aof *a, const struct aof_tag *tag, size_t argc, const char **argv,
                       const size_t *argl)
{
    if (a->fd < 0)
        return;
    size_t n;
    if (tag) {
        const char *sv[8], **v = argc + 3 <= 8 ? sv : malloc((argc + 3) * sizeof(*v));
        size_t sl[8], *l = argc + 3 <= 8 ? sl : malloc((argc + 3) * sizeof(*l));
        if (!v || !l) {
            fputs("tpc-kv: out of memory\n", stderr);
            abort();
        }
        char num[24];
        v[0] = "TXN";
        l[0] = 3;
        v[1] = num;
        l[1] = resp_fmt_ll(num, (long long)tag->stamp);
        v[2] = tag->owners;
        l[2] = strlen(tag->owners);
        memcpy(v + 3, argv, argc * sizeof(*v));
        memcpy(l + 3, argl, argc * sizeof(*l));
        n = frame(&a->buf, argc + 3, v, l);
        if (v != sv)
            free(v);
        if (l != sl)
            free(l);
    } else {
        n = frame(&a->buf, argc, argv, argl);
    }
    if (a->rw.on)
        sb_put(&a->rw.cmds, a->buf.p + a->buf.len - n, n);
    a->appended += n;
    tpc_event_set(&a->work);
}

void aof_append(struct aof *a, size_t argc, const char **argv, const size_t *argl)
{
    aof_append_tagged(a, NULL, argc, argv, argl);
}

int aof_settle(struct aof *a)
{
    if (a->fd < 0)
        return 0;
    uint64_t upto = a->appended;
    if (a->want_sync < upto) /* (appendfsync no too: a rewrite elsewhere relies on it) */
        a->want_sync = upto;
    tpc_event_set(&a->work);
    while ((a->written < upto || a->synced < upto) && !a->err) {
        int rc = tpc_event_wait(&a->progress);
        if (rc < 0)
            return rc;
    }
    return a->err;
}

int aof_wait(struct aof *a, uint64_t upto, bool own)
{
    if (a->fd < 0 || a->mode != AOF_ALWAYS)
        return 0;
    while (a->synced < upto && !a->fatal) {
        if (a->err && !own)
            return 0; /* (the writes' own clients wait for the retries) */
        int rc = tpc_event_wait(&a->progress);
        if (rc < 0)
            return rc;
    }
    return a->synced < upto ? a->err : 0;
}

/* ---- Rounds (direct) ----
 * A round is one write of whole blocks at a->size (a block boundary): its records, then a pad
 * record that sends replay on to the next boundary, where the next round goes. Each round starts
 * a block of its own rather than writing the last round's block again, so that no write ever goes
 * over records already acknowledged (a torn write then loses only what it was writing); the cost
 * is up to a block of log per round, which compaction takes back.
 *
 * Up to AOF_ROUNDS rounds are out at once: a round takes its place in the file when it goes out
 * (a->size moves on at once), a fiber of its own writes it, and written and synced move on only
 * over rounds that are written with every round before them. So a record is acknowledged only
 * once every record before it is on disk too, and a crash that kept a later round but not an
 * earlier one loses only records nobody was told about: replay stops at the earlier round's
 * zeros. With one round out at a time, the next round waited for the last one's completion,
 * which comes through the disk's interrupt and the block layer's flush worker on whichever CPU
 * takes them (on this project's VM the client's); with more out, the next rounds go to the disk
 * meanwhile (docs/benchmarks.md, "tpc-kv: log rounds out at once": 1.08x the requests a second
 * at redis-benchmark -P 1). A round whose write fails stays out, first in line, and the writer
 * writes it again in place each second (write commands are refused meanwhile: aof_failing);
 * rounds behind it wait for it. */

static void say_failing(struct aof *a, int rc, bool fatal);
static void say_recovered(struct aof *a);

/* A round's write (or its start) failed: write commands are refused until it is written, the
 * writer tries again (it may wait on work: no write command comes now), and a fiber waiting for
 * progress that need not wait for the round (aof_wait of a read, aof_settle) hears of it. A
 * cancelled write (the runtime stopping) is no failure: aof_flush writes it again. */
static void round_failed(struct aof *a, int rc)
{
    if (rc == -ECANCELED)
        return;
    say_failing(a, rc, false);
    tpc_event_set(&a->work);
    tpc_event_set(&a->progress);
    tpc_event_reset(&a->progress);
}

/* Takes the rounds at the head that are written: written and synced move on over them. */
static void rounds_advance(struct aof *a)
{
    bool moved = false;
    while (a->r_out && a->round[a->r_first].done && !a->round[a->r_first].rc) {
        struct aof_round *r = &a->round[a->r_first];
        if (r->upto > a->synced) {
            a->written = a->synced = r->upto;
            a->writes++;
        }
        a->r_first = (a->r_first + 1) % AOF_ROUNDS;
        a->r_out--;
        moved = true;
    }
    if (!moved)
        return;
    bool failing = false;
    for (unsigned i = 0; i < a->r_out; i++)
        failing |= a->round[(a->r_first + i) % AOF_ROUNDS].rc != 0;
    if (a->err && !a->fatal && !failing)
        say_recovered(a);
    tpc_event_set(&a->progress);
    tpc_event_reset(&a->progress);
}

static int round_write(struct aof_round *r)
{
    ssize_t n = tpc_write_full(r->a->fd, r->blk, r->span, (int64_t)r->at);
    return n < 0 ? (int)n : (size_t)n < r->span ? -EIO : 0;
}

static int round_fn(void *arg)
{
    struct aof_round *r = arg;
    struct aof *a = r->a;
    r->rc = round_write(r);
    r->done = true;
    if (r->rc)
        round_failed(a, r->rc);
    rounds_advance(a);
    tpc_event_set(&a->r_done);
    tpc_event_reset(&a->r_done);
    return 0;
}

/* Starts round r's fiber; one that cannot start counts as a failed write (the writer tries the
 * round again). */
static void round_start(struct aof_round *r)
{
    r->rc = 0;
    r->done = false;
    tpc_fiber_opts o = {.name = "aof-round", .stack_size = 64 * 1024, .detached = true};
    int rc = tpc_spawn_opts(&o, round_fn, r, NULL);
    if (rc < 0) {
        r->rc = rc;
        r->done = true;
        round_failed(r->a, rc);
    }
}

/* Sends src's bytes out as a round, once one of the AOF_ROUNDS is free, and empties src (what is
 * appended to it while this waits goes too); records: src is a->buf (written and synced move on
 * once it is written), else the tail block written again at an opening. Returns 0 (sent: its
 * write may still fail, or its fiber not start, which round_failed reports), or with nothing
 * sent -ENOMEM, -ECANCELED, or the error of the failed round at the head (the writer's to try
 * again first). */
static int round_send(struct aof *a, struct sbuf *src, bool records)
{
    size_t len, pad, span;
    for (;;) { /* nothing suspends from the last look at src to its emptying */
        if (a->r_out && a->round[a->r_first].done && a->round[a->r_first].rc)
            return a->round[a->r_first].rc; /* (the writer's to try again) */
        len = src->len;
        pad = len % BLOCK ? 8 : 0; /* (a header; in the last 7 bytes of a block it spills) */
        span = (len + pad + BLOCK - 1) / BLOCK * BLOCK;
        /* Never beside the zeroer's write: past the zeros, this write extends the file itself. */
        tpc_event *e = a->r_out == AOF_ROUNDS                     ? &a->r_done
                       : a->size + span > a->zeroed && a->zeroing ? &a->zdone
                                                                  : NULL;
        if (!e)
            break;
        int rc = tpc_event_wait(e);
        if (rc < 0)
            return rc;
    }
    struct aof_round *r = &a->round[(a->r_first + a->r_out) % AOF_ROUNDS];
    if (span > r->cap) {
        size_t cap = r->cap ? r->cap : 16 * BLOCK;
        while (cap < span)
            cap *= 2;
        char *b = tpc_alloc_aligned(BLOCK, cap);
        if (!b)
            return -ENOMEM;
        free(r->blk);
        r->blk = b;
        r->cap = cap;
    }
    memcpy(r->blk, src->p, len);
    memset(r->blk + len, 0, span - len);
    if (pad) {
        put32(r->blk + len, PAD_LEN);
        put32(r->blk + len + 4, PAD_SUM);
    }
    src->len = 0;
    r->upto = records ? a->appended : 0;
    r->at = a->size;
    r->span = span;
    if (r->at + span > a->zeroed)
        a->zeroed = r->at + span; /* before the write: the zeroer starts after it */
    a->size = r->at + span;
    a->r_out++;
    round_start(r);
    if (a->zeroed - a->size < ZERO_AHEAD / 2)
        tpc_event_set(&a->zwork);
    return 0;
}

/* Waits until every round out is written: a failed one is written again here, once. Returns 0,
 * or the error of the first round that could not be written (it stays out). */
static int rounds_settle(struct aof *a)
{
    for (;;) {
        unsigned busy = 0;
        for (unsigned i = 0; i < a->r_out; i++)
            busy += !a->round[(a->r_first + i) % AOF_ROUNDS].done;
        if (!busy)
            break;
        int rc = tpc_event_wait(&a->r_done);
        if (rc < 0)
            return rc;
    }
    while (a->r_out) {
        struct aof_round *r = &a->round[a->r_first];
        if (r->rc && (r->rc = round_write(r)) != 0) {
            round_failed(a, r->rc);
            return r->rc;
        }
        rounds_advance(a);
    }
    return 0;
}

/* Direct: keeps the file written with zeros up to ZERO_AHEAD past the records. */
static int zeroer(void *arg)
{
    struct aof *a = arg;
    int err = 0;
    while (!a->stopping) {
        if (err || a->zero_hold || a->zeroed >= a->size + ZERO_AHEAD) {
            tpc_event_reset(&a->zwork);
            if (tpc_event_wait(&a->zwork) == -ECANCELED)
                break;
            continue;
        }
        uint64_t at = a->zeroed;
        a->zeroing = true;
        ssize_t n = tpc_write_full(a->fd, a->zeros, ZERO_CHUNK, (int64_t)at);
        a->zeroing = false;
        if (n == ZERO_CHUNK)
            a->zeroed = at + ZERO_CHUNK;
        else /* not fatal: the rounds then extend the file themselves (and meet the error) */
            err = n < 0 ? (int)n : -EIO;
        tpc_event_set(&a->zdone);
        tpc_event_reset(&a->zdone);
    }
    return err;
}

/* A log that cannot be written: write commands are refused (aof_failing) until it can, or, when
 * fatal, from now on. */
static void say_failing(struct aof *a, int rc, bool fatal)
{
    atomic_store(&last_failure, rc);
    if (!a->err) {
        atomic_fetch_add(&failing_logs, 1);
        fprintf(stderr, "tpc-kv: shard %d: cannot %s its log: %s (write commands are refused %s)\n",
                a->shard, fatal ? "sync" : "write", tpc_strerror(rc),
                fatal ? "from now on" : "until it can; trying again each second");
    }
    a->err = rc;
    a->fatal = fatal;
}

static void say_recovered(struct aof *a)
{
    a->err = 0;
    atomic_fetch_sub(&failing_logs, 1);
    fprintf(stderr, "tpc-kv: shard %d: its log is written again\n", a->shard);
}

/* A write that failed (a full disk, an I/O error): its records stay, first in line, and the
 * writer tries again each second; meanwhile write commands are refused (aof_failing). A failed
 * sync is for good: what the kernel could not write back it may have dropped. */
static void write_failed(struct aof *a, struct sbuf *out, int rc)
{
    bool fatal = !out; /* (out: the records the write failed to hand over, to keep) */
    if (out) {
        sb_put(out, a->buf.p, a->buf.len); /* what came meanwhile goes after them */
        a->buf.len = 0;
        struct sbuf t = a->buf;
        a->buf = *out;
        *out = t;
        if (ftruncate(a->fd, (off_t)a->size) < 0)
            fatal = true, rc = -errno; /* a record cut short stays: nothing may follow it */
    }
    say_failing(a, rc, fatal);
}

/* Direct: sends what was appended out as a round; settle: first and then waits until every
 * round out is written (rounds_settle). */
static int direct_round(struct aof *a, bool settle)
{
    int rc = settle ? rounds_settle(a) : 0;
    tpc_event_reset(&a->work);
    if (rc == 0 && a->buf.len)
        rc = round_send(a, &a->buf, true);
    if (rc == 0 && settle)
        rc = rounds_settle(a);
    if (rc < 0 && !a->err) /* (-ENOMEM: the writer tries again each second) */
        round_failed(a, rc);
    if (a->buf.len)
        tpc_event_set(&a->work);
    return rc;
}

/* One round: hands what was appended to the kernel, and syncs as the mode says (direct: and
 * waits for every round out). */
static int write_round(struct aof *a, bool sync)
{
    if (a->direct)
        return direct_round(a, true);
    struct sbuf out = a->buf;
    a->buf = a->spare;
    a->buf.len = 0;
    tpc_event_reset(&a->work);
    uint64_t upto = a->appended;
    int rc = 0;
    if (out.len) {
        ssize_t n = tpc_write_full(a->fd, out.p, out.len, -1);
        rc = n < 0 ? (int)n : (size_t)n < out.len ? -ENOSPC : 0; /* (short: no room) */
    }
    if (rc < 0 && rc != -ECANCELED) {
        write_failed(a, &out, rc);
        out.len = 0;
        a->spare = out;
        tpc_event_set(&a->progress);
        tpc_event_reset(&a->progress);
        return rc;
    }
    if (rc == 0 && a->err && !a->fatal)
        say_recovered(a);
    if (rc == 0) {
        a->writes += out.len > 0;
        a->written = upto;
        a->size += out.len;
        if (a->mode == AOF_ALWAYS) /* the file is O_DSYNC: the write was the sync */
            a->synced = upto;
    }
    if (rc == 0 && (sync || a->mode == AOF_ALWAYS) && a->synced < a->written) {
        rc = tpc_fdatasync(a->fd);
        a->last_sync_ns = tpc_now();
        if (rc == 0)
            a->synced = upto;
    }
    out.len = 0;
    a->spare = out;
    if (rc < 0 && rc != -ECANCELED) /* the sync: its records were handed over, but are lost */
        write_failed(a, NULL, rc);
    tpc_event_set(&a->progress);
    tpc_event_reset(&a->progress);
    return rc;
}

static int rewrite_switch(struct aof *a);

static int writer(void *arg)
{
    struct aof *a = arg;
    while (!a->stopping && !a->fatal) {
        if (a->err) { /* a write failed: again in a second (or at the stop) */
            for (int i = 0; i < 10 && !a->stopping; i++)
                if (tpc_sleep(100 * 1000 * 1000) == -ECANCELED)
                    return 0;
            if (write_round(a, true) == -ECANCELED)
                return 0;
            continue;
        }
        if (a->rw.on && a->rw.ready) {
            if (rewrite_switch(a) == -ECANCELED)
                return 0;
            continue;
        }
        if (!a->rw.on && !a->rw.starting && a->auto_min && a->size >= a->auto_min &&
            a->size >= 2 * a->base_size)
            aof_rewrite_start(a);
        if (!a->buf.len) {
            if (a->mode == AOF_EVERYSEC && a->synced < a->written)
                tpc_deadline_set(1000 * 1000 * 1000);
            int rc = tpc_event_wait(&a->work);
            tpc_deadline_clear();
            if (rc == -ECANCELED)
                return 0;
        }
        bool sync = (a->mode == AOF_EVERYSEC && tpc_now() - a->last_sync_ns >= 1000000000ull) ||
                    a->want_sync > a->synced;
        if ((a->direct ? direct_round(a, false) : write_round(a, sync)) == -ECANCELED)
            return 0;
    }
    return 0;
}

int aof_flush(struct aof *a)
{
    if (a->fd < 0)
        return 0;
    a->stopping = true;
    tpc_event_set(&a->work);
    if (a->writer) {
        tpc_join(a->writer, NULL);
        a->writer = NULL;
    }
    tpc_event_set(&a->zwork);
    if (a->zeroer) {
        tpc_join(a->zeroer, NULL);
        a->zeroer = NULL;
    }
    return a->fatal ? a->err : write_round(a, a->mode != AOF_NO); /* (a failed one: again) */
}

void aof_close(struct aof *a)
{
    if (a->rw.on || a->rw.starting) /* a rewrite cut short by the stop */
        rewrite_end(a, -ECANCELED);
    sb_free(&a->rw.out);
    sb_free(&a->rw.cmds);
    tpc_event_destroy(&a->rw.done);
    if (a->fd >= 0)
        tpc_close(a->fd);
    a->fd = -1;
    sb_free(&a->buf);
    sb_free(&a->spare);
    for (int i = 0; i < AOF_ROUNDS; i++) {
        free(a->round[i].blk);
        a->round[i].blk = NULL;
    }
    free(a->zeros);
    a->zeros = NULL;
    tpc_event_destroy(&a->r_done);
    tpc_event_destroy(&a->work);
    tpc_event_destroy(&a->progress);
    tpc_event_destroy(&a->zwork);
    tpc_event_destroy(&a->zdone);
}

static bool is(const char *p, size_t n, const char *word)
{
    return n == strlen(word) && !memcmp(p, word, n);
}

static int stamp_of(const char *p, size_t n, uint64_t *out)
{
    long long v;
    if (resp_ll(p, n, &v) < 0 || v <= 0)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

/* Calls fn on each record of buf[HDR_LEN..len) in order, while each is whole, its checksum holds
 * and fn takes it (returns NULL); stops at the first that is not, saying why in *why. Returns
 * where the records taken end; *count is how many. */
typedef const char *(*record_fn)(void *arg, size_t argc, const char **argv, const size_t *argl);
static size_t walk(char *buf, size_t len, record_fn fn, void *arg, const char **why, size_t *count)
{
    struct resp_limits lim = {.max_bulk = UINT32_MAX, .max_args = 1u << 30, .max_inline = 0};
    struct resp_args args = {0};
    size_t off = HDR_LEN;
    *why = NULL;
    *count = 0;
    while (off < len) {
        if (len - off < 8) {
            *why = "a torn record header";
            break;
        }
        uint32_t n = get32(buf + off), sum = get32(buf + off + 4);
        if (n == PAD_LEN && sum == PAD_SUM) {
            size_t next = (off + 8 + BLOCK - 1) / BLOCK * BLOCK;
            if (next > len) { /* its filler cut (the log ends here: what is appended next must
                                 not land where the pad says to skip) */
                *why = "a pad record cut short";
                break;
            }
            off = next;
            continue;
        }
        if (n == 0 && sum == 0) { /* the zeros a direct log lays ahead of its records */
            size_t z = off;
            while (z < len && !buf[z])
                z++;
            if (z < len)
                *why = "bytes that are not zeros after the zeros that end the records";
            break;
        }
        if (len - off - 8 < n) {
            *why = "a torn record";
            break;
        }
        if (XXH32(buf + off + 8, n, 0) != sum) {
            *why = "a record whose checksum does not match";
            break;
        }
        size_t need;
        const char *err;
        resp_args_clear(&args);
        if (n == 0 || buf[off + 8] != '*' ||
            resp_parse(buf + off + 8, n, &lim, &args, &need, &err) != (long)n || !args.n) {
            *why = "a record that is not a command";
            break;
        }
        if ((*why = fn(arg, args.n, args.argv, args.argl)) != NULL)
            break;
        off += 8 + n;
        ++*count;
    }
    resp_args_free(&args);
    return off;
}

struct replay {
    struct kv_db *db;
    struct sbuf scratch;
    const struct aof_verdict *v;
    uint64_t *left_out; /* stamps of the parts not replayed */
    size_t nleft_out, capleft_out;
    uint64_t *aborted; /* this log's TXNABORT records */
    size_t naborted, capaborted;
};

static void push_stamp(uint64_t **v, size_t *n, size_t *cap, uint64_t stamp)
{
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 8;
        *v = realloc(*v, *cap * sizeof(**v));
        if (!*v)
            abort();
    }
    (*v)[(*n)++] = stamp;
}

/* Why a record cannot be replayed, or NULL: the scan and the replay take the same records, so
 * that the scan never counts a part that start-up then cuts off. */
static const char *check_record(size_t argc, const char **argv, const size_t *argl)
{
    uint64_t stamp;
    if (is(argv[0], argl[0], "TXN")) {
        if (argc < 4 || stamp_of(argv[1], argl[1], &stamp) < 0 || is(argv[3], argl[3], "TXN") ||
            is(argv[3], argl[3], "CUT") || is(argv[3], argl[3], "TXNABORT"))
            return "a TXN record that is not one";
        return check_record(argc - 3, argv + 3, argl + 3);
    }
    if (is(argv[0], argl[0], "CUT") || is(argv[0], argl[0], "TXNABORT"))
        return argc == 2 && stamp_of(argv[1], argl[1], &stamp) == 0
                   ? NULL
                   : "a CUT or TXNABORT record that is not one";
    const struct command *c = cmd_lookup(argv[0], argl[0]);
    if (!c || (!c->fn && c->op != OP_FLUSHALL && c->op != OP_FLUSHDB))
        return "a record with an unknown command";
    return NULL;
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

static bool has_stamp(const uint64_t *v, size_t n, uint64_t stamp)
{
    return n && bsearch(&stamp, v, n, sizeof(*v), cmp_u64);
}

static const char *apply(void *arg, size_t argc, const char **argv, const size_t *argl)
{
    struct replay *r = arg;
    uint64_t stamp = 0;
    const char *why = check_record(argc, argv, argl);
    if (why)
        return why;
    if (is(argv[0], argl[0], "TXN")) {
        stamp_of(argv[1], argl[1], &stamp);
        if (!has_stamp(r->v ? r->v->dropped : NULL, r->v ? r->v->n : 0, stamp))
            return apply(arg, argc - 3, argv + 3, argl + 3);
        push_stamp(&r->left_out, &r->nleft_out, &r->capleft_out, stamp);
        return NULL;
    }
    if (is(argv[0], argl[0], "TXNABORT")) {
        stamp_of(argv[1], argl[1], &stamp);
        push_stamp(&r->aborted, &r->naborted, &r->capaborted, stamp);
        return NULL;
    }
    if (is(argv[0], argl[0], "CUT"))
        return NULL;
    const struct command *c = cmd_lookup(argv[0], argl[0]);
    if (!c->fn) { /* FLUSHALL, FLUSHDB */
        db_flush(r->db);
        return NULL;
    }
    r->scratch.len = 0;
    cmd_run(r->db, c, argc, argv, argl, &r->scratch);
    return NULL;
}

/* Runs the records of buf[HDR_LEN..len) into db (db->loading: nothing expires on the way), but
 * the parts of multi-shard commands v drops; returns where the valid records end. */
static size_t replay(struct aof *a, const char *path, char *buf, size_t len, struct kv_db *db,
                     struct replay *r)
{
    const char *why;
    size_t records;
    r->db = db;
    db->now = kv_now_ms();
    size_t off = walk(buf, len, apply, r, &why, &records);
    if (why)
        fprintf(stderr,
                "tpc-kv: shard %d: %s: %zu records replayed, then %s at offset %zu: the %zu bytes "
                "from there on are cut off\n",
                a->shard, path, records, why, off, len - off);
    sb_free(&r->scratch);
    return off;
}

/* ---- Reading every log before any is replayed (aof.h) ---- */

static const char *collect(void *arg, size_t argc, const char **argv, const size_t *argl)
{
    struct aof_scan *s = arg;
    uint64_t stamp;
    const char *why = check_record(argc, argv, argl);
    if (why)
        return why;
    bool txn = is(argv[0], argl[0], "TXN"), cut = is(argv[0], argl[0], "CUT"),
         abort_ = is(argv[0], argl[0], "TXNABORT");
    if (!txn && !cut && !abort_)
        return NULL;
    if (argc < (txn ? 4u : 2u) || stamp_of(argv[1], argl[1], &stamp) < 0)
        return "a TXN, CUT or TXNABORT record that is not one";
    if (stamp > s->max_stamp)
        s->max_stamp = stamp;
    if (cut) {
        s->cut = stamp;
    } else if (abort_) {
        push_stamp(&s->aborted, &s->naborted, &s->capaborted, stamp);
    } else {
        if (s->n == s->cap) {
            s->cap = s->cap ? 2 * s->cap : 16;
            s->txns = realloc(s->txns, s->cap * sizeof(*s->txns));
        }
        char *owners = s->txns ? strndup(argv[2], argl[2]) : NULL;
        if (!owners)
            abort();
        s->txns[s->n++] = (struct aof_txn){stamp, owners};
    }
    return NULL;
}

static int cmp_txn(const void *x, const void *y)
{
    return cmp_u64(&((const struct aof_txn *)x)->stamp, &((const struct aof_txn *)y)->stamp);
}

int aof_scan(const char *dir, int shard, struct aof_scan *s)
{
    memset(s, 0, sizeof(*s));
    char path[4200];
    snprintf(path, sizeof(path), "%s/tpc-kv-%d.aof", dir, shard);
    int fd = tpc_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd == -ENOENT)
        return 0;
    if (fd < 0)
        return fd;
    struct stat st;
    int rc = fstat(fd, &st) < 0 ? -errno : 0;
    char *buf = rc == 0 ? malloc((size_t)st.st_size + 1) : NULL;
    if (rc == 0 && !buf)
        rc = -ENOMEM;
    ssize_t n = rc == 0 ? tpc_read_full(fd, buf, (size_t)st.st_size, 0) : 0;
    if (n < 0)
        rc = (int)n;
    tpc_close(fd);
    if (rc == 0 && n >= HDR_LEN && !memcmp(buf, MAGIC, 8)) { /* (aof_open judges the rest) */
        s->nshards = get32(buf + 12);
        const char *why;
        walk(buf, (size_t)n, collect, s, &why, &s->records);
        if (s->n)
            qsort(s->txns, s->n, sizeof(*s->txns), cmp_txn);
        if (s->naborted)
            qsort(s->aborted, s->naborted, sizeof(*s->aborted), cmp_u64);
    }
    if (rc == 0) {
        s->log = buf;
        s->len = (size_t)n;
    } else {
        free(buf);
    }
    return rc;
}

void aof_scan_free(struct aof_scan *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->txns[i].owners);
    free(s->txns);
    free(s->aborted);
    free(s->log);
    memset(s, 0, sizeof(*s));
}

/* Whether the log of scan p holds its part of the command stamped `stamp`: a TXN record of it,
 * or a CUT past it (the part folded into the keys by a rewrite). */
static bool part_in(const struct aof_scan *p, uint64_t stamp)
{
    struct aof_txn key = {.stamp = stamp};
    return p->cut > stamp || (p->n && bsearch(&key, p->txns, p->n, sizeof(key), cmp_txn));
}

int aof_decide(const struct aof_scan *scans, int nshards, struct aof_verdict *v)
{
    memset(v, 0, sizeof(*v));
    size_t cap = 0;
    for (int i = 0; i < nshards; i++) {
        if (scans[i].max_stamp >= v->clock)
            v->clock = scans[i].max_stamp + 1;
        for (size_t k = 0; k < scans[i].n; k++) {
            uint64_t stamp = scans[i].txns[k].stamp;
            const char *o = scans[i].txns[k].owners;
            bool whole = true, all = !strcmp(o, "*");
            for (int j = 0; j < nshards && whole; j++)
                whole = !has_stamp(scans[j].aborted, scans[j].naborted, stamp);
            for (int p = 0; all && p < nshards && whole; p++)
                whole = p == i || part_in(&scans[p], stamp);
            while (!all && whole && *o) {
                char *end;
                long p = strtol(o, &end, 10);
                if (end == o || p < 0 || p >= nshards || (*end && *end != ','))
                    whole = false; /* not a list of this many shards' */
                else
                    whole = p == i || part_in(&scans[p], stamp);
                o = *end ? end + 1 : end;
            }
            if (whole)
                continue;
            if (v->n == cap) {
                cap = cap ? 2 * cap : 8;
                uint64_t *d = realloc(v->dropped, cap * sizeof(*d));
                if (!d)
                    return -ENOMEM;
                v->dropped = d;
            }
            v->dropped[v->n++] = stamp;
        }
    }
    if (v->n)
        qsort(v->dropped, v->n, sizeof(*v->dropped), cmp_u64);
    if (!v->clock)
        v->clock = 1;
    return 0;
}

void aof_verdict_free(struct aof_verdict *v)
{
    free(v->dropped);
    memset(v, 0, sizeof(*v));
}

/* A version 1 log is raised to VERSION before anything new is appended: a tpc-kv that knows
 * only version 1 then refuses the log rather than cutting it off at the first new record. */
static int raise_version(const char *path)
{
    int fd = tpc_open(path, O_WRONLY | O_CLOEXEC, 0); /* (not O_APPEND: a write in place) */
    if (fd < 0)
        return fd;
    char v[4];
    put32(v, VERSION);
    ssize_t n = tpc_write(fd, v, 4, 8);
    int rc = n < 0 ? (int)n : n != 4 ? -EIO : tpc_fdatasync(fd);
    tpc_close(fd);
    return rc;
}

/* Replays the log open at a->fd; scan's bytes of it, if they are all of it, rather than read
 * them again (and takes them). */
/* What start-up cuts off a log, unless it is only zeros (the space ahead of a direct log's
 * rounds), goes to PATH.cut-OFFSET first: a torn round after a crash, or the records behind a
 * corrupt one, which an operator may still want (the cut itself is for the log to go on from
 * valid records). Returns 0, or why it could not be kept (then nothing is cut: start-up fails). */
static int keep_cut(const char *path, const char *p, size_t len, size_t off)
{
    while (len && !p[len - 1])
        len--;
    if (!len)
        return 0;
    char name[4200];
    snprintf(name, sizeof(name), "%s.cut-%zu", path, off);
    int fd = tpc_open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ssize_t n = fd < 0 ? fd : tpc_write_full(fd, p, len, 0);
    int rc = n < 0 ? (int)n : (size_t)n < len ? -ENOSPC : tpc_fdatasync(fd);
    if (fd >= 0)
        tpc_close(fd);
    if (rc == 0)
        rc = sync_dir(name);
    if (rc < 0)
        fprintf(stderr, "tpc-kv: cannot keep what is cut off %s in %s: %s (nothing cut)\n", path,
                name, tpc_strerror(rc));
    else
        fprintf(stderr, "tpc-kv: %s: the %zu bytes cut off (up to the zeros) are kept in %s\n",
                path, len, name);
    return rc;
}

static int load(struct aof *a, const char *path, int nshards, struct kv_db *db, struct replay *r,
                struct aof_scan *scan)
{
    struct stat st;
    if (fstat(a->fd, &st) < 0)
        return -errno;
    size_t len = (size_t)st.st_size;
    if (len == 0) { /* a new log */
        char hdr[HDR_LEN] = MAGIC;
        put32(hdr + 8, VERSION);
        put32(hdr + 12, (uint32_t)nshards);
        ssize_t n = tpc_write_full(a->fd, hdr, HDR_LEN, -1);
        int rc = n < 0 ? (int)n : tpc_fdatasync(a->fd);
        return rc < 0 ? rc : sync_dir(path);
    }
    char *buf;
    ssize_t n;
    if (scan && scan->log && scan->len == len) {
        buf = scan->log;
        n = (ssize_t)len;
        scan->log = NULL;
    } else if ((buf = malloc(len))) {
        n = tpc_read_full(a->fd, buf, len, 0);
    } else {
        return -ENOMEM;
    }
    int rc = n < 0 ? (int)n : 0;
    if (rc == 0 && ((size_t)n < HDR_LEN || memcmp(buf, MAGIC, 8) ||
                    (get32(buf + 8) != VERSION && get32(buf + 8) != 1))) {
        fprintf(stderr, "tpc-kv: %s is not a tpc-kv log\n", path);
        rc = -EINVAL;
    } else if (rc == 0 && get32(buf + 12) != (uint32_t)nshards) {
        fprintf(stderr, "tpc-kv: %s was written by %u shards: run with --shards %u\n", path,
                get32(buf + 12), get32(buf + 12));
        rc = -EINVAL;
    }
    if (rc == 0) {
        db->loading = true; /* a key whose time passed may be made persistent later on */
        size_t end = replay(a, path, buf, (size_t)n, db, r);
        db->loading = false;
        db->now = kv_now_ms();
        if (db->expires)
            db_expire_all(db);
        if (end < (size_t)n)
            rc = keep_cut(path, buf + end, (size_t)n - end, end);
        if (end < (size_t)n && rc == 0 && (rc = tpc_ftruncate(a->fd, (int64_t)end)) == 0)
            rc = tpc_fdatasync(a->fd);
        if (rc == 0 && get32(buf + 8) != VERSION)
            rc = raise_version(path);
    }
    free(buf);
    return rc;
}

/* Goes on with the log at a->path in place of a->fd (whose records end at a->size), opened as
 * the mode wants: with appendfsync always, O_DIRECT | O_DSYNC (direct) where the filesystem
 * allows it, else O_DSYNC. */
static int reopen(struct aof *a)
{
    if (a->mode != AOF_ALWAYS)
        return 0;
    int fd = tpc_open(a->path, O_RDWR | O_CLOEXEC | O_DIRECT | O_DSYNC, 0);
    bool direct = fd >= 0;
    if (direct && tpc_dio_align(fd) > (int)BLOCK) {
        tpc_close(fd);
        direct = false;
        fd = -EINVAL;
    }
    if (fd == -EINVAL) /* no O_DIRECT here (or not with 4 KiB blocks) */
        fd = tpc_open(a->path, O_RDWR | O_APPEND | O_CLOEXEC | O_DSYNC, 0);
    if (fd < 0)
        return fd;
    tpc_close(a->fd);
    a->fd = fd;
    a->direct = direct;
    a->zeroed = (a->size + BLOCK - 1) / BLOCK * BLOCK;
    size_t head = a->size % BLOCK;
    if (!direct || !head)
        return 0;
    /* The records end inside a block: that block again, as a round ending with a pad record,
     * so that the rounds start at block boundaries. */
    char *b = tpc_alloc_aligned(BLOCK, BLOCK);
    if (!b)
        return -ENOMEM;
    ssize_t n = tpc_read_full(fd, b, BLOCK, (int64_t)(a->size - head));
    a->size -= head;
    struct sbuf tail = {.p = b, .len = head};
    int rc = n < 0 ? (int)n : n != (ssize_t)head ? -EIO : round_send(a, &tail, false);
    free(b);
    return rc ? rc : rounds_settle(a);
}

void aof_off(struct aof *a)
{
    memset(a, 0, sizeof(*a));
    a->fd = -1;
    a->rw.fd = -1;
    tpc_event_init(&a->work, false);
    tpc_event_init(&a->progress, false);
    tpc_event_init(&a->zwork, false);
    tpc_event_init(&a->zdone, false);
    tpc_event_init(&a->r_done, false);
    for (int i = 0; i < AOF_ROUNDS; i++)
        a->round[i].a = a;
    tpc_event_init(&a->rw.done, false);
}

int aof_open(struct aof *a, const char *dir, int shard, int nshards, int mode, struct kv_db *db,
             const struct aof_verdict *v, struct aof_scan *scan, const struct aof_hooks *hooks)
{
    aof_off(a);
    a->mode = mode;
    a->shard = shard;
    a->hooks = hooks;
    snprintf(a->path, sizeof(a->path), "%s/tpc-kv-%d.aof", dir, shard);
    int fd = tpc_open(a->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "tpc-kv: cannot open %s: %s\n", a->path, tpc_strerror(fd));
        return fd;
    }
    a->fd = fd;
    struct replay r = {.v = v};
    int rc = load(a, a->path, nshards, db, &r, scan);
    struct stat st;
    if (rc == 0)
        rc = fstat(fd, &st) == 0 ? 0 : -errno;
    if (rc == 0) {
        a->size = a->base_size = (uint64_t)st.st_size;
        rc = reopen(a);
    }
    /* Each part left out gets a TXNABORT in this log unless it has one: said for good, before
     * anything else is appended (a TXNABORT in another log may go with that log's rewrite). */
    size_t said = 0;
    if (r.naborted)
        qsort(r.aborted, r.naborted, sizeof(*r.aborted), cmp_u64);
    for (size_t i = 0; rc == 0 && i < r.nleft_out; i++) {
        if (has_stamp(r.aborted, r.naborted, r.left_out[i]))
            continue;
        char num[24];
        size_t l = resp_fmt_ll(num, (long long)r.left_out[i]);
        aof_append(a, 2, (const char *[]){"TXNABORT", num}, (size_t[]){8, l});
        said++;
    }
    if (said) {
        fprintf(stderr,
                "tpc-kv: shard %d: %s: %zu parts of commands over several shards left out: "
                "not every other owner's log has its part (a crash or a stop came between "
                "the owners' writes)\n",
                shard, a->path, said);
        rc = write_round(a, true);
    }
    free(r.aborted);
    free(r.left_out);
    if (rc < 0) {
        if (rc != -EINVAL)
            fprintf(stderr, "tpc-kv: cannot read %s: %s\n", a->path, tpc_strerror(rc));
        return rc;
    }
    a->last_sync_ns = tpc_now();
    a->db = db;
    a->nshards = nshards;
    tpc_fiber_opts o = {.name = "aof-writer", .stack_size = 64 * 1024};
    if ((rc = tpc_spawn_opts(&o, writer, a, &a->writer)) < 0 || !a->direct)
        return rc;
    if (!(a->zeros = tpc_alloc_aligned(BLOCK, ZERO_CHUNK)))
        return -ENOMEM;
    memset(a->zeros, 0, ZERO_CHUNK);
    tpc_fiber_opts z = {.name = "aof-zeroer", .stack_size = 64 * 1024};
    return tpc_spawn_opts(&z, zeroer, a, &a->zeroer);
}

/* ---- Rewriting: the log as the commands that rebuild every key, without stopping ----
 * The rewrite walks the table (SCAN's cursor, a few buckets at a time, yielding between them)
 * and writes each key out once, stamping it with the table's rewrite epoch. A write command
 * first touches its keys (aof_touch): one not yet written out is written out then, before it
 * changes; keys made during the rewrite carry the new epoch already. Every record appended
 * since the rewrite began is kept too, so the new file, the keys then those records, holds
 * every write exactly once. When the walk is over, the writer fiber (the only one that writes
 * the log) catches up the new file with the records, syncs it, and once none came in meanwhile,
 * renames it over the log and goes on with it. */

/* A rewrite's record of a list, hash, set or sorted set takes elements up to about this many
 * bytes (and 128 arguments): a record's length is 32 bits. */
#define DUMP_BYTES (64u << 20)

static void dump_entry(struct aof *a, struct entry *e)
{
    struct sbuf *b = &a->rw.out;
    const char *argv[130];
    size_t argl[130];
    char nums[64][32];
    argv[1] = e->key;
    argl[1] = e->klen;
    if (e->type == T_STRING) {
        const struct str *s = e->val;
        frame(b, 3, (const char *[]){"SET", e->key, s->d}, (size_t[]){3, e->klen, s->len});
    } else if (e->type == T_LIST) {
        const struct list *l = e->val;
        struct list_it it;
        list_seek(l, 0, &it);
        for (size_t i = 0; i < l->n;) {
            size_t n = 2, bytes = 0;
            for (; i < l->n && n < 130 && bytes < DUMP_BYTES; i++, n++) {
                list_next(&it, &argv[n], &argl[n]);
                bytes += argl[n];
            }
            argv[0] = "RPUSH";
            argl[0] = 5;
            frame(b, n, argv, argl);
        }
    } else if (e->type == T_HASH || e->type == T_SET) {
        struct dict *d = e->val;
        argv[0] = e->type == T_HASH ? "HSET" : "SADD";
        argl[0] = 4;
        size_t n = 2, bytes = 0;
        for (int t = 0; t < 2; t++)
            for (size_t k = 0; k < d->size[t]; k++)
                for (struct entry *f = d->t[t][k]; f; f = f->next) {
                    argv[n] = f->key;
                    bytes += argl[n++] = f->klen;
                    if (e->type == T_HASH) {
                        argv[n] = ((struct str *)f->val)->d;
                        bytes += argl[n++] = ((struct str *)f->val)->len;
                    }
                    if (n >= 128 || bytes >= DUMP_BYTES) {
                        frame(b, n, argv, argl);
                        n = 2, bytes = 0;
                    }
                }
        if (n > 2)
            frame(b, n, argv, argl);
    } else if (e->type == T_ZSET) {
        const struct zset *z = e->val;
        argv[0] = "ZADD";
        argl[0] = 4;
        for (const struct znode *x = zset_first(z); x;) {
            size_t n = 2, bytes = 0;
            for (int k = 0; x && k < 64 && bytes < DUMP_BYTES; x = x->lv[0].fwd, k++) {
                argl[n] = (size_t)snprintf(nums[k], sizeof(nums[k]), "%.17g", x->score);
                argv[n++] = nums[k];
                argv[n] = x->e->key;
                bytes += argl[n++] = x->e->klen;
            }
            frame(b, n, argv, argl);
        }
    }
    if (e->expire) {
        char at[24];
        int n =
            snprintf(at, sizeof(at), "%lld", (long long)(wall_ms() + (e->expire - kv_now_ms())));
        frame(b, 3, (const char *[]){"PEXPIREAT", e->key, at}, (size_t[]){9, e->klen, (size_t)n});
    }
    e->epoch = a->db->keys.epoch;
}

void aof_touch(struct aof *a, const char *key, size_t klen)
{
    if (!a->rw.on || a->rw.ready)
        return;
    struct entry *e = dict_find(&a->db->keys, key, klen, kv_hash(key, klen));
    if (e && e->epoch != a->db->keys.epoch)
        dump_entry(a, e);
}

static void dump_cb(void *arg, struct entry *e)
{
    struct aof *a = arg;
    if (e->epoch != a->db->keys.epoch && !(e->expire && e->expire <= kv_now_ms()))
        dump_entry(a, e);
}

/* Writes out what b holds, taking it first: others append to b while the write is out. */
static int rw_write(struct aof *a, struct sbuf *b)
{
    struct sbuf mine = *b;
    *b = (struct sbuf){0};
    if (!mine.len)
        return 0;
    ssize_t n = tpc_write_full(a->rw.fd, mine.p, mine.len, -1);
    int rc = n < 0 ? (int)n : (size_t)n < mine.len ? -EIO : 0;
    sb_free(&mine);
    return rc;
}

static void rewrite_end(struct aof *a, int rc)
{
    if (rc < 0) {
        if (rc != -ECANCELED)
            fprintf(stderr,
                    "tpc-kv: shard %d: log rewrite failed: %s (the log goes on as it was)\n",
                    a->shard, tpc_strerror(rc));
        char tmp[4200];
        snprintf(tmp, sizeof(tmp), "%s.rewrite", a->path);
        unlink(tmp);
    }
    if (a->rw.fd >= 0 && rc < 0)
        tpc_close(a->rw.fd);
    a->rw.fd = -1;
    a->rw.on = a->rw.ready = a->rw.starting = false;
    a->rw.err = rc;
    sb_free(&a->rw.out);
    sb_free(&a->rw.cmds);
    tpc_event_set(&a->rw.done);
}

static int rewriter(void *arg)
{
    struct aof *a = arg;
    uint64_t cursor = 0, cut = 0;
    int rc = 0, steps = 0;
    /* The cut: from the moment no multi-shard command holds the shard, every key present is
     * "not yet written out" and every record appended is kept; both at once, no suspension. */
    if (a->hooks && (rc = a->hooks->begin(a, &cut)) < 0) {
        rewrite_end(a, rc);
        return 0;
    }
    if (a->stopping) {
        rewrite_end(a, -ECANCELED);
        return 0;
    }
    a->db->keys.epoch++;
    a->rw.starting = false;
    a->rw.on = true;
    if (cut) {
        char num[24];
        size_t l = resp_fmt_ll(num, (long long)cut);
        frame(&a->rw.out, 2, (const char *[]){"CUT", num}, (size_t[]){3, l});
    }
    do {
        cursor = dict_scan(&a->db->keys, cursor, dump_cb, a);
        if (a->rw.out.len >= (1u << 20))
            rc = rw_write(a, &a->rw.out);
        if (rc == 0 && ++steps % 64 == 0)
            rc = tpc_yield();
        if (a->stopping)
            rc = -ECANCELED;
    } while (cursor && rc == 0);
    while (rc == 0 && a->rw.out.len) /* keys touched while the last part was written */
        rc = rw_write(a, &a->rw.out);
    /* The parts this rewrite folded into the keys: their commands' other parts are in the other
     * shards' logs, which must keep them through a crash once this log no longer does. */
    if (rc == 0 && a->hooks)
        rc = a->hooks->settle_others(a);
    while (rc == 0 && a->rw.out.len) /* keys touched meanwhile */
        rc = rw_write(a, &a->rw.out);
    if (rc < 0) {
        rewrite_end(a, rc);
        return 0;
    }
    a->rw.ready = true; /* from now on the writer finishes */
    tpc_event_set(&a->work);
    return 0;
}

int aof_rewrite_start(struct aof *a)
{
    if (a->fd < 0)
        return 0;
    if (a->rw.on || a->rw.starting)
        return -EBUSY;
    a->rw.starting = true; /* (before the open suspends: a second start in between is refused,
                              or both wrote the one file, a header each) on once it has its cut */
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.rewrite", a->path);
    int fd = tpc_open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        a->rw.starting = false;
        return fd;
    }
    char hdr[HDR_LEN] = MAGIC;
    put32(hdr + 8, VERSION);
    put32(hdr + 12, (uint32_t)a->nshards);
    a->rw.fd = fd;
    a->rw.ready = false;
    tpc_event_reset(&a->rw.done);
    sb_put(&a->rw.out, hdr, HDR_LEN);
    tpc_fiber_opts o = {.name = "aof-rewrite", .stack_size = 64 * 1024, .detached = true};
    int rc = tpc_spawn_opts(&o, rewriter, a, NULL);
    if (rc < 0)
        rewrite_end(a, rc);
    return rc;
}

/* In the writer: catches the new file up with the records appended meanwhile, syncs it, and
 * switches to it. Records that come in while it does so (during the write, the sync or the wait
 * for the zeroer) are not in the new file: they become the first records the writer appends
 * to it, and are acknowledged only then. (It used to go round until a sync passed with nothing
 * new: under a steady load of writes that do not wait for their sync, it never switched while
 * the old log stood still, and what came in during the wait for the zeroer was dropped.) */
static int rewrite_switch(struct aof *a)
{
    int rc = a->direct ? rounds_settle(a) : 0; /* (a failure: the writer tries again) */
    if (rc < 0)
        return rc;
    rc = rw_write(a, &a->rw.cmds);
    if (rc == 0)
        rc = tpc_fdatasync(a->rw.fd);
    if (rc < 0) {
        rewrite_end(a, rc);
        return rc;
    }
    /* The zeroer holds off meanwhile (its writes are for the old file's offsets). */
    a->zero_hold = true;
    while (a->zeroing && rc == 0)
        rc = tpc_event_wait(&a->zdone); /* (-ECANCELED: the writer is being stopped) */
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.rewrite", a->path);
    if (rc == 0)
        rc = rename(tmp, a->path) < 0 ? -errno : 0;
    struct stat st;
    if (rc == 0) {
        tpc_close(a->fd);
        a->fd = a->rw.fd;
        a->rw.fd = -1;
        /* the old log's pending records are in the new file but for the last ones (rw.cmds) */
        struct sbuf rest = a->rw.cmds;
        a->rw.cmds = a->buf;
        a->rw.cmds.len = 0;
        a->buf = rest;
        uint64_t durable = a->appended - rest.len; /* (before anything suspends: appends go on) */
        tpc_event_reset(&a->work);
        if (rest.len)
            tpc_event_set(&a->work);
        a->size = a->base_size = fstat(a->fd, &st) == 0 ? (uint64_t)st.st_size : a->size;
        a->rw.rewrites++;
        if ((rc = reopen(a)) == 0)
            rc = sync_dir(a->path); /* the rename itself survives a crash */
        /* Only now is what the new file holds durable where the log is: an aof_wait that came
         * during reopen or the directory's sync waits until here. */
        if (rc == 0)
            a->written = a->synced = durable;
        if (rc < 0 && !a->fatal) { /* the new file stays, written by a's fd */
            fprintf(stderr, "tpc-kv: shard %d: cannot reopen its log after a rewrite:\n", a->shard);
            write_failed(a, NULL, rc);
        }
        rc = 0;
    }
    a->zero_hold = false;
    tpc_event_set(&a->zwork);
    rewrite_end(a, rc);
    if (rc == 0) {
        tpc_event_set(&a->progress);
        tpc_event_reset(&a->progress);
    }
    return rc;
}
