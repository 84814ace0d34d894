/* The per-shard append-only log (aof.h).
 *
 * File: a 16-byte header ("TPCKVAOF", version, shard count), then records: a 4-byte length, a
 * 4-byte XXH32 of the payload, and the payload, the command as a RESP array. Replay reads
 * records while each is whole and its checksum holds; what follows the first that is not (a
 * write cut short by a crash, a corrupt block) is reported and cut off, so that new records
 * follow valid ones. */
#include "aof.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#define MAGIC   "TPCKVAOF"
#define HDR_LEN 16
#define VERSION 1

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

void aof_append(struct aof *a, size_t argc, const char **argv, const size_t *argl)
{
    if (a->fd < 0)
        return;
    size_t start = a->buf.len;
    sb_room(&a->buf, 8);
    a->buf.len += 8;
    sb_array(&a->buf, (long long)argc);
    for (size_t i = 0; i < argc; i++)
        sb_bulk(&a->buf, argv[i], argl[i]);
    size_t len = a->buf.len - start - 8;
    put32(a->buf.p + start, (uint32_t)len);
    put32(a->buf.p + start + 4, XXH32(a->buf.p + start + 8, len, 0));
    a->appended += a->buf.len - start;
    tpc_event_set(&a->work);
}

int aof_wait(struct aof *a, uint64_t upto)
{
    if (a->fd < 0 || a->mode != AOF_ALWAYS)
        return 0;
    while (a->synced < upto && !a->err) {
        int rc = tpc_event_wait(&a->progress);
        if (rc < 0)
            return rc;
    }
    return a->err;
}

/* One round: hands what was appended to the kernel, and syncs as the mode says. */
static int write_round(struct aof *a, bool sync)
{
    struct sbuf out = a->buf;
    a->buf = a->spare;
    a->buf.len = 0;
    tpc_event_reset(&a->work);
    uint64_t upto = a->appended;
    int rc = 0;
    if (out.len) {
        ssize_t n = tpc_write_full(a->fd, out.p, out.len, -1);
        rc = n < 0 ? (int)n : (size_t)n < out.len ? -EIO : 0;
    }
    if (rc == 0)
        a->written = upto;
    if (rc == 0 && (sync || a->mode == AOF_ALWAYS) && a->synced < a->written) {
        rc = tpc_fdatasync(a->fd);
        a->last_sync_ns = tpc_now();
        if (rc == 0)
            a->synced = upto;
    }
    out.len = 0;
    a->spare = out;
    if (rc < 0 && rc != -ECANCELED && !a->err) {
        a->err = rc;
        fprintf(stderr, "tpc-kv: shard %d: cannot write its log: %s (writes fail from now on)\n",
                a->shard, tpc_strerror(rc));
    }
    tpc_event_set(&a->progress);
    tpc_event_reset(&a->progress);
    return rc;
}

static int writer(void *arg)
{
    struct aof *a = arg;
    while (!a->stopping && !a->err) {
        if (!a->buf.len) {
            if (a->mode == AOF_EVERYSEC && a->synced < a->written)
                tpc_deadline_set(1000 * 1000 * 1000);
            int rc = tpc_event_wait(&a->work);
            tpc_deadline_clear();
            if (rc == -ECANCELED)
                return 0;
        }
        bool sync = a->mode == AOF_EVERYSEC && tpc_now() - a->last_sync_ns >= 1000000000ull;
        if (write_round(a, sync) == -ECANCELED)
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
    return a->err ? a->err : write_round(a, a->mode != AOF_NO);
}

void aof_close(struct aof *a)
{
    if (a->fd >= 0)
        tpc_close(a->fd);
    a->fd = -1;
    sb_free(&a->buf);
    sb_free(&a->spare);
    tpc_event_destroy(&a->work);
    tpc_event_destroy(&a->progress);
}

/* Runs the records of buf[HDR_LEN..len) into db; returns where the valid ones end. */
static size_t replay(struct aof *a, const char *path, char *buf, size_t len, struct kv_db *db)
{
    struct resp_limits lim = {.max_bulk = UINT32_MAX, .max_args = 1u << 30, .max_inline = 0};
    struct resp_args args = {0};
    struct sbuf scratch = {0};
    size_t off = HDR_LEN, records = 0;
    const char *why = NULL;
    db->now = kv_now_ms();
    while (off < len) {
        if (len - off < 8) {
            why = "a torn record header";
            break;
        }
        uint32_t n = get32(buf + off), sum = get32(buf + off + 4);
        if (len - off - 8 < n) {
            why = "a torn record";
            break;
        }
        if (XXH32(buf + off + 8, n, 0) != sum) {
            why = "a record whose checksum does not match";
            break;
        }
        size_t need;
        const char *err;
        resp_args_clear(&args);
        if (n == 0 || buf[off + 8] != '*' ||
            resp_parse(buf + off + 8, n, &lim, &args, &need, &err) != (long)n || !args.n) {
            why = "a record that is not a command";
            break;
        }
        const struct command *c = cmd_lookup(args.argv[0], args.argl[0]);
        if (!c || !c->fn) {
            if (!strcmp(c ? c->name : "", "flushall") || !strcmp(c ? c->name : "", "flushdb")) {
                dict_free(&db->keys, true);
            } else {
                why = "a record with an unknown command";
                break;
            }
        } else {
            scratch.len = 0;
            cmd_run(db, c, args.n, args.argv, args.argl, &scratch);
        }
        off += 8 + n;
        records++;
    }
    if (why)
        fprintf(stderr,
                "tpc-kv: shard %d: %s: %zu records replayed, then %s at offset %zu: the %zu bytes "
                "from there on are cut off\n",
                a->shard, path, records, why, off, len - off);
    resp_args_free(&args);
    sb_free(&scratch);
    return off;
}

static int load(struct aof *a, const char *path, int nshards, struct kv_db *db)
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
        return n < 0 ? (int)n : tpc_fdatasync(a->fd);
    }
    char *buf = malloc(len);
    if (!buf)
        return -ENOMEM;
    ssize_t n = tpc_read_full(a->fd, buf, len, 0);
    int rc = n < 0 ? (int)n : 0;
    if (rc == 0 && ((size_t)n < HDR_LEN || memcmp(buf, MAGIC, 8) || get32(buf + 8) != VERSION)) {
        fprintf(stderr, "tpc-kv: %s is not a tpc-kv log\n", path);
        rc = -EINVAL;
    } else if (rc == 0 && get32(buf + 12) != (uint32_t)nshards) {
        fprintf(stderr, "tpc-kv: %s was written by %u shards: run with --shards %u\n", path,
                get32(buf + 12), get32(buf + 12));
        rc = -EINVAL;
    }
    if (rc == 0) {
        size_t end = replay(a, path, buf, (size_t)n, db);
        if (end < (size_t)n && (rc = tpc_ftruncate(a->fd, (int64_t)end)) == 0)
            rc = tpc_fdatasync(a->fd);
    }
    free(buf);
    return rc;
}

int aof_open(struct aof *a, const char *dir, int shard, int nshards, int mode, struct kv_db *db)
{
    memset(a, 0, sizeof(*a));
    a->fd = -1;
    a->mode = mode;
    a->shard = shard;
    tpc_event_init(&a->work, false);
    tpc_event_init(&a->progress, false);
    char path[4096];
    snprintf(path, sizeof(path), "%s/tpc-kv-%d.aof", dir, shard);
    int fd = tpc_open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "tpc-kv: cannot open %s: %s\n", path, tpc_strerror(fd));
        return fd;
    }
    a->fd = fd;
    int rc = load(a, path, nshards, db);
    if (rc < 0) {
        if (rc != -EINVAL)
            fprintf(stderr, "tpc-kv: cannot read %s: %s\n", path, tpc_strerror(rc));
        return rc;
    }
    a->last_sync_ns = tpc_now();
    tpc_fiber_opts o = {.name = "aof-writer", .stack_size = 64 * 1024};
    return tpc_spawn_opts(&o, writer, a, &a->writer);
}
