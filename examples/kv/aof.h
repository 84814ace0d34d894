/* A shard's append-only log: the write commands it ran, one record each, appended through
 * libtpc's file I/O by a writer fiber, synced as appendfsync says; replayed at start-up. */
#ifndef KV_AOF_H
#define KV_AOF_H

#include <stdint.h>
#include "tpc.h"
#include "cmd.h"

enum { AOF_NO, AOF_EVERYSEC, AOF_ALWAYS };

#define AOF_ROUNDS 4 /* direct rounds out at once */

struct aof;

/* Commands over several shards (MSET, DEL, UNLINK, FLUSHALL) are all-or-nothing across a crash.
 * Each owner logs its part as one record
 *     TXN <stamp> <owners> <command ...>
 * where stamp is the command's place on a process-wide clock (taken once every owner is locked
 * for it) and owners lists them ("0,2", or "*" for all). A rewritten log begins with
 *     CUT <stamp>
 * the clock when its rewrite began, its shard unlocked: a command stamped before it had run its
 * part there, and the rewrite folded that part into the keys. At start-up every log is read
 * first (aof_scan), and a command is replayed only if each owner's log has its part or a CUT
 * past its stamp; else none of its parts is (a crash came between the owners' writes, or it was
 * cut short at a stop), and each log that held a part gets a TXNABORT <stamp> record, so that a
 * later rewrite elsewhere cannot make it look whole. */
struct aof_tag {
    uint64_t stamp;
    const char *owners;
};

/* What a shard's log holds of multi-shard commands, read before any log is replayed. */
struct aof_txn {
    uint64_t stamp;
    char *owners; /* as written */
};
struct aof_scan {
    uint64_t cut;         /* the log's CUT, 0: none (a log never rewritten) */
    struct aof_txn *txns; /* its TXN records, by stamp */
    size_t n, cap;
    uint64_t *aborted; /* its TXNABORT records */
    size_t naborted, capaborted;
    uint64_t max_stamp; /* the largest stamp or cut it holds */
    char *log;          /* the log as read (NULL: none), for aof_open to replay */
    size_t len;
    uint32_t nshards; /* the shard count its header says (0: none read) */
    size_t records;   /* whole records it holds */
};

/* The decision over every log: the stamps of commands not replayed (sorted), and where the clock
 * of multi-shard commands goes on from. */
struct aof_verdict {
    uint64_t *dropped;
    size_t n;
    uint64_t clock;
};

/* Reads DIR/tpc-kv-<shard>.aof (if there is one) up to its first torn or corrupt record into
 * *s, keeping the bytes read for aof_open. Returns 0 or a negative errno. */
int aof_scan(const char *dir, int shard, struct aof_scan *s);
void aof_scan_free(struct aof_scan *s);
/* Decides over the scans of every shard's log (aof.h's top comment). Returns 0 or -ENOMEM. */
int aof_decide(const struct aof_scan *scans, int nshards, struct aof_verdict *v);
void aof_verdict_free(struct aof_verdict *v);

/* What a rewrite needs from the program (kv.c): begin waits until no multi-shard command holds
 * the shard, then, without suspending after that, returns the clock's next stamp (the CUT);
 * settle_others makes every other shard's log durable up to what it holds (once no multi-shard
 * command holds that shard), so that no command whose part this rewrite folds can lose its
 * other parts in a crash after the new log replaces the old. */
struct aof_hooks {
    int (*begin)(struct aof *a, uint64_t *cut);
    int (*settle_others)(struct aof *a);
};

struct aof {
    int fd; /* -1: off */
    int mode;
    /* appendfsync always: the file is O_DSYNC, so that each write is the commit; and where the
     * filesystem allows it O_DIRECT too (direct), written a block at a time into space written
     * with zeros ahead of it, so that the commit needs no metadata (no io-wq worker, no journal
     * commit). */
    bool direct;
    /* direct: rounds out at once, a ring of AOF_ROUNDS from r_first: while one round is with the
     * disk the next one goes out, each written by a fiber of its own at an offset taken when it
     * went out, and acknowledged in order (aof.c, "Rounds") */
    struct aof_round {
        struct aof *a; /* its log (set once, by aof_off) */
        char *blk;     /* its records, its pad record and zeros (aligned) */
        size_t cap, span;
        uint64_t at;   /* where in the file */
        uint64_t upto; /* written and synced up to here once it is written (0: no records) */
        int rc;        /* 0: written; else why not */
        bool done;     /* its write is over (or its fiber could not start) */
    } round[AOF_ROUNDS];
    unsigned r_first, r_out; /* the oldest round out; rounds out */
    tpc_event r_done;        /* pulsed as each round's write is over */
    char *zeros;             /* direct: ZERO_CHUNK bytes of zeros (aligned), the zeroer's */
    uint64_t zeroed;         /* direct: the file is zeros from the end of the records up to here */
    bool zeroing;            /* direct: the zeroer's write is out */
    bool zero_hold;          /* direct: the zeroer starts no write (a rewrite is switching files) */
    tpc_event zwork;         /* direct: set when the zeroer may have work */
    tpc_event zdone;         /* direct: pulsed after each of the zeroer's writes */
    tpc_fiber *zeroer;
    int shard;
    struct sbuf buf, spare; /* records appended, not yet handed to the kernel; the writer's */
    uint64_t appended;      /* bytes appended since start-up */
    uint64_t written, synced;
    uint64_t writes;    /* rounds that wrote records */
    int err;            /* a write or sync error: records wait (write commands are refused) */
    bool fatal;         /* a sync's or a reopen's: for good (a write's is tried again) */
    tpc_event work;     /* set while buf holds something */
    tpc_event progress; /* pulsed after each write (and sync) */
    uint64_t last_sync_ns;
    bool stopping;
    tpc_fiber *writer;
    struct kv_db *db;
    int nshards;
    const struct aof_hooks *hooks;
    uint64_t want_sync; /* aof_settle: sync up to here now (not at the next second) */
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
        bool starting;    /* the rewriter waits for its cut (aof_hooks.begin) */
        bool ready;       /* every key is out: the writer may switch */
        tpc_event done;   /* set when the rewrite has switched or failed */
        int err;
        uint64_t rewrites; /* completed */
    } rw;
};

/* A log that is off (fd -1), ready for aof_close: what aof_open does first. */
void aof_off(struct aof *a);
/* Opens (or creates) DIR/tpc-kv-<shard>.aof, checks it was written by as many shards, replays
 * it into db (stopping at a torn or corrupt tail, which it reports and cuts off; leaving out the
 * parts of the multi-shard commands v drops, and logging that it did), and starts the writer
 * fiber. scan, if not NULL, is this log's aof_scan: its bytes are replayed (and taken: scan->log
 * is then NULL) rather than read again. Returns 0 or a negative errno (having said why on
 * stderr). */
int aof_open(struct aof *a, const char *dir, int shard, int nshards, int mode, struct kv_db *db,
             const struct aof_verdict *v, struct aof_scan *scan, const struct aof_hooks *hooks);
/* Appends one command as a record (the command as run, its relative times made absolute by the
 * caller); with a tag, as a part of a multi-shard command. */
void aof_append(struct aof *a, size_t argc, const char **argv, const size_t *argl);
void aof_append_tagged(struct aof *a, const struct aof_tag *tag, size_t argc, const char **argv,
                       const size_t *argl);
/* Waits until everything appended so far is written and synced (whatever appendfsync says).
 * Returns 0 or the log's error. */
int aof_settle(struct aof *a);
/* With appendfsync always: waits until every byte appended up to `upto` is synced (one sync
 * covers every record appended before it: group commit). Otherwise returns at once. While the
 * log cannot be written, a caller with records of its own (`own`) waits for the writer's
 * retries, and one without returns at once (a read is answered). Returns 0 or the log's error
 * (one that is for good). */
int aof_wait(struct aof *a, uint64_t upto, bool own);
/* 0, or the last error of a log that cannot be written now (any shard's): write commands are
 * refused meanwhile ("MISCONF", as Redis). */
int aof_failing(void);
/* Before a write command changes key: during a rewrite, a key not yet written out is written
 * out as it is now (the command that follows is kept with the others). */
void aof_touch(struct aof *a, const char *key, size_t klen);
/* Starts a rewrite in the background (a fiber); -EBUSY if one runs, 0 if the log is off. */
int aof_rewrite_start(struct aof *a);

/* Writes and syncs what is left (the drain of a clean stop), then stops the writer. */
int aof_flush(struct aof *a);
void aof_close(struct aof *a);

#endif
