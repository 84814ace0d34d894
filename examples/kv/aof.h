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
    /* appendfsync always: the file is O_DSYNC, so that each write is the commit; and where the
     * filesystem allows it O_DIRECT too (direct), written a block at a time into space written
     * with zeros ahead of it, so that the commit needs no metadata (no io-wq worker, no journal
     * commit). */
    bool direct;
    char *blk; /* direct: a round's records, its pad record and zeros (aligned) */
    size_t blk_cap;
    char *zeros;     /* direct: ZERO_CHUNK bytes of zeros (aligned), the zeroer's */
    uint64_t zeroed; /* direct: the file is zeros from the end of the records up to here */
    bool zeroing;    /* direct: the zeroer's write is out */
    bool zero_hold;  /* direct: the zeroer starts no write (a rewrite is switching files) */
    tpc_event zwork; /* direct: set when the zeroer may have work */
    tpc_event zdone; /* direct: pulsed after each of the zeroer's writes */
    tpc_fiber *zeroer;
    int shard;
    struct sbuf buf, spare; /* records appended, not yet handed to the kernel; the writer's */
    uint64_t appended;      /* bytes appended since start-up */
    uint64_t written, synced;
    uint64_t writes;    /* rounds that wrote records */
    int err;            /* the first write or sync error: nothing is acknowledged after it */
    tpc_event work;     /* set while buf holds something */
    tpc_event progress; /* pulsed after each write (and sync) */
    uint64_t last_sync_ns;
    bool stopping;
    tpc_fiber *writer;
    struct kv_db *db;
    int nshards;
    char path[4096];
    uint64_t size;      /* of the log as written: records (and in a direct log the padding of
                         * each round: where the next round goes); zeros may follow */
    uint64_t base_size; /* after the last rewrite (or at start-up) */
    uint64_t auto_min;  /* rewrite once the file is this big and twice base_size; 0: never */
    /* A rewrite in progress: every key written out once, as the commands that rebuild it,
     * while the commands run since it began are kept as well; the writer then switches. */
    struct {
        bool on;
        int fd;           /* the new file */
        struct sbuf out;  /* keys written out, not yet in the new file */
        struct sbuf cmds; /* records appended since the rewrite began */
        bool ready;       /* every key is out: the writer may switch */
        tpc_event done;   /* set when the rewrite has switched or failed */
        int err;
        uint64_t rewrites; /* completed */
    } rw;
};

/* A log that is off (fd -1), ready for aof_close: what aof_open does first. */
void aof_off(struct aof *a);
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
/* Before a write command changes key: during a rewrite, a key not yet written out is written
 * out as it is now (the command that follows is kept with the others). */
void aof_touch(struct aof *a, const char *key, size_t klen);
/* Starts a rewrite in the background (a fiber); -EBUSY if one runs, 0 if the log is off. */
int aof_rewrite_start(struct aof *a);

/* Writes and syncs what is left (the drain of a clean stop), then stops the writer. */
int aof_flush(struct aof *a);
void aof_close(struct aof *a);

#endif
