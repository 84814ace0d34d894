/* The commands: a table of names, arities and key positions, and the handlers that run on the
 * shard owning the key(s). No libtpc here: kv.c routes and runs them. */
#ifndef KV_CMD_H
#define KV_CMD_H

#include <stddef.h>
#include <stdint.h>
#include "db.h"
#include "resp.h"

enum {
    F_WRITE = 1, /* changes the keyspace */
    F_CONN = 2,  /* about the connection or the server, no key: runs where it was read */
    F_ALL = 4,   /* over every shard's keyspace (DBSIZE, FLUSHALL, SCAN, INFO) */
    F_MULTI = 8, /* several keys, possibly on several shards: atomic across them */
};

/* The commands that some code treats apart (kv.c: the connection's own, the barriers, what the
 * log writes differently; aof.c: the flushes): tested per command, so an integer rather than
 * the name. */
enum {
    OP_NONE,
    /* F_CONN */
    OP_PING,
    OP_ECHO,
    OP_SELECT,
    OP_QUIT,
    OP_COMMAND,
    OP_CONFIG,
    /* F_ALL */
    OP_SCAN,
    OP_INFO,
    OP_KEYS,
    OP_BGREWRITEAOF,
    OP_DBSIZE,
    OP_FLUSHALL,
    OP_FLUSHDB,
    /* F_MULTI */
    OP_MSET,
    OP_MGET,
    /* logged as other commands */
    OP_SET,
    OP_EXPIRE,
    OP_PEXPIRE,
    OP_EXPIREAT, /* and PEXPIREAT */
    OP_SPOP,
};

/* What a handler works on: its shard's keyspace and clock. */
struct kv_db {
    struct dict keys;
    int64_t now;      /* ms, monotonic, read once per batch */
    uint64_t expired; /* keys removed because their time passed */
    size_t expires;   /* keys with a time (db_set_expire, db_del, db_flush keep it) */
    int64_t avg_ttl;  /* ms: what those keys have left, averaged over active expiry's walks */
    /* Called with a key whose time passed, just before it goes (lazily or by active expiry;
     * not while loading): the log writes a DEL, so that a replay sees the commands after it
     * on the key as they ran (Redis logs the same). NULL: none. */
    void (*expiring)(void *arg, const struct entry *e);
    void *expiring_arg;
    bool loading; /* replaying a log: nothing expires (as Redis), db_expire_all after */
};

struct command {
    const char *name;
    int arity; /* > 0: exactly; < 0: at least -arity (the name counts) */
    int flags;
    int first, last, step; /* key positions: first..last (last < 0: from the end), 0: none */
    void (*fn)(struct kv_db *db, size_t argc, const char **argv, const size_t *argl,
               struct sbuf *out);
    int op; /* OP_*, or OP_NONE */
};

/* The command named argv[0] (case-insensitive), or NULL. */
const struct command *cmd_lookup(const char *name, size_t len);
/* Checks the arity; writes Redis's error and returns -1 if wrong. */
int cmd_check(const struct command *c, size_t argc, struct sbuf *out);
/* The unknown command's error. */
void cmd_unknown(size_t argc, const char **argv, const size_t *argl, struct sbuf *out);
/* Key positions: the indices of argv that are keys, in order; returns how many (at most max). */
size_t cmd_keys(const struct command *c, size_t argc, size_t *idx, size_t max);

/* Runs c on db (the shard that owns its keys). */
void cmd_run(struct kv_db *db, const struct command *c, size_t argc, const char **argv,
             const size_t *argl, struct sbuf *out);

/* The key's entry if it is there and not expired (an expired one is deleted on the way). */
/* A key's time (0: none), its removal, and every key's removal, keeping db->expires. */
void db_set_expire(struct kv_db *db, struct entry *e, int64_t at);
void db_del(struct kv_db *db, struct entry *e);
void db_flush(struct kv_db *db);
struct entry *db_lookup(struct kv_db *db, const char *key, size_t klen);
/* Active expiry: deletes the expired keys of `buckets` buckets from *cursor on and returns how
 * many; what the others seen have left moves avg_ttl (a running average, as Redis keeps it). */
size_t db_expire_some(struct kv_db *db, uint64_t *cursor, int buckets);
size_t db_expire_all(struct kv_db *db);
/* How many commands there are (COMMAND COUNT). */
size_t cmd_count(void);
/* The part of a key that picks its shard: the first {...} with something inside, or all. */
uint64_t key_slot_hash(const char *key, size_t klen);

/* ms since the Unix epoch. */
int64_t wall_ms(void);

/* Glob-style matching as Redis's MATCH (*, ?, [...], \). */
int glob_match(const char *pat, size_t plen, const char *s, size_t slen);

#endif
