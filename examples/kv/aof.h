/* A shard's append-only log: the write commands it ran, one record each, appended through
 * libtpc's file I/O by a writer fiber, synced as appendfsync says; replayed at start-up. */
#ifndef KV_AOF_H
#define KV_AOF_H

#include <stdint.h>
#include "tpc.h"
#include "cmd.h"

enum { AOF_NO, AOF_EVERYSEC, AOF_ALWAYS };

struct aof {
    int fd; /* -1: off */
    int mode;
    int shard;
    struct sbuf buf, spare; /* records appended, not yet handed to the kernel; the writer's */
    uint64_t appended;      /* bytes appended since start-up */
    uint64_t written, synced;
    int err;            /* the first write or sync error: nothing is acknowledged after it */
    tpc_event work;     /* set while buf holds something */
    tpc_event progress; /* pulsed after each write (and sync) */
    uint64_t last_sync_ns;
    bool stopping;
    tpc_fiber *writer;
};

/* Opens (or creates) DIR/tpc-kv-<shard>.aof, checks it was written by as many shards, replays
 * it into db (stopping at a torn or corrupt tail, which it reports and cuts off), and starts the
 * writer fiber. Returns 0 or a negative errno (having said why on stderr). */
int aof_open(struct aof *a, const char *dir, int shard, int nshards, int mode, struct kv_db *db);
/* Appends one command as a record (the command as run, its relative times made absolute by the
 * caller). */
void aof_append(struct aof *a, size_t argc, const char **argv, const size_t *argl);
/* With appendfsync always: waits until every byte appended up to `upto` is synced (one sync
 * covers every record appended before it: group commit). Otherwise returns at once. Returns 0 or
 * the log's error. */
int aof_wait(struct aof *a, uint64_t upto);
/* Writes and syncs what is left (the drain of a clean stop), then stops the writer. */
int aof_flush(struct aof *a);
void aof_close(struct aof *a);

#endif
