/* Buffered socket reading and writing (tpc_rbuf, tpc_wbuf) over Unix socket pairs: lines and
 * counted payloads that arrive in pieces, the limits (-EMSGSIZE, -ENOBUFS, nothing lost),
 * end of stream, a deadline in the middle of a line or a flush (the call may be made again),
 * references released exactly once (also when sent in parts, over more than 64 segments), the
 * writer's memory bounded when copies and references alternate, flushes larger than one send
 * may carry, and misuse. */
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include "helpers.h"

static void pair(int sv[2])
{
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

/* A pattern that repeats every 251 bytes, written fast (no per-byte arithmetic). */
static void fill_pattern(char *p, size_t n)
{
    for (size_t i = 0; i < 251 && i < n; i++)
        p[i] = (char)(i * 7);
    for (size_t done = 251; done < n; done *= 2)
        memcpy(p + done, p, done < n - done ? done : n - done);
}

struct dribble {
    int fd;
    const char *text;
    size_t len;
    bool close_after;
};

static int dribble_fn(void *p) /* writes text one byte at a time, yielding in between */
{
    struct dribble *d = p;
    for (size_t i = 0; i < d->len; i++) {
        CHECK_EQ(tpc_write_full(d->fd, d->text + i, 1, -1), 1);
        tpc_yield();
    }
    if (d->close_after)
        tpc_sock_shutdown(d->fd, SHUT_WR);
    return 0;
}

static int lines_main(void *arg)
{
    (void)arg;
    int sv[2];
    pair(sv);
    tpc_rbuf b;
    CHECK_EQ(tpc_rbuf_init(&b, sv[0], 0), 0);
    static const char text[] = "PING\r\n*2\r\n$3\r\nGET\r\n$5\r\nhello\r\ntail";
    struct dribble d = {sv[1], text, sizeof(text) - 1, true};
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn(dribble_fn, &d, &f), 0);
    const char *p;
    CHECK_EQ(tpc_rbuf_line(&b, &p), 6);
    CHECK(memcmp(p, "PING\r\n", 6) == 0);
    CHECK_EQ(tpc_rbuf_consume(&b, 6), 0);
    CHECK_EQ(tpc_rbuf_line(&b, &p), 4);
    CHECK_EQ(tpc_rbuf_consume(&b, 4), 0);
    CHECK_EQ(tpc_rbuf_need(&b, 9, &p), 9); /* "$3\r\nGET\r\n" exactly */
    CHECK(memcmp(p, "$3\r\nGET\r\n", 9) == 0);
    CHECK_EQ(tpc_rbuf_consume(&b, 9), 0);
    CHECK_EQ(tpc_rbuf_line(&b, &p), 4);
    CHECK_EQ(tpc_rbuf_consume(&b, 4), 0);
    CHECK_EQ(tpc_rbuf_need(&b, 7, &p), 7);
    CHECK(memcmp(p, "hello\r\n", 7) == 0);
    CHECK_EQ(tpc_rbuf_consume(&b, 7), 0);
    /* The stream ends inside a line: 0, and the partial line stays buffered. */
    CHECK_EQ(tpc_rbuf_line(&b, &p), 0);
    CHECK_EQ(tpc_rbuf_len(&b), 4);
    CHECK(memcmp(tpc_rbuf_data(&b), "tail", 4) == 0);
    CHECK_EQ(tpc_rbuf_need(&b, 5, &p), 0);
    CHECK_EQ(tpc_rbuf_fill(&b), 0);
    CHECK_EQ(tpc_rbuf_consume(&b, 5), -EINVAL); /* more than buffered: nothing consumed */
    CHECK_EQ(tpc_rbuf_len(&b), 4);
    CHECK_EQ(tpc_join(f, NULL), 0);
    tpc_rbuf_destroy(&b);
    tpc_rbuf_destroy(&b); /* twice is harmless */
    tpc_close(sv[0]);
    tpc_close(sv[1]);
    return 0;
}

static void test_lines(void **state)
{
    (void)state;
    run_main(1, lines_main, NULL);
}

static int limits_main(void *arg)
{
    (void)arg;
    int sv[2];
    pair(sv);
    tpc_rbuf b;
    CHECK_EQ(tpc_rbuf_init(&b, sv[0], 32), 0);
    char junk[40];
    memset(junk, 'x', sizeof(junk));
    CHECK_EQ(tpc_write_full(sv[1], junk, sizeof(junk), -1), 40);
    CHECK_EQ(tpc_write_full(sv[1], "\n", 1, -1), 1);
    const char *p;
    CHECK_EQ(tpc_rbuf_line(&b, &p), -EMSGSIZE); /* 32 bytes and no end of line */
    CHECK_EQ(tpc_rbuf_len(&b), 32);
    CHECK_EQ(tpc_rbuf_fill(&b), -ENOBUFS);
    CHECK_EQ(tpc_rbuf_need(&b, 33, &p), -EMSGSIZE);
    CHECK_EQ(tpc_rbuf_consume(&b, 30), 0); /* nothing was lost: the rest comes after */
    CHECK_EQ(tpc_rbuf_line(&b, &p), 11);
    CHECK(memcmp(p, "xxxxxxxxxx\n", 11) == 0);
    tpc_rbuf_destroy(&b);
    /* Misuse. */
    CHECK_EQ(tpc_rbuf_init(NULL, 0, 0), -EINVAL);
    CHECK_EQ(tpc_rbuf_init(&b, -1, 0), -EBADF);
    CHECK_EQ(tpc_rbuf_init(&b, sv[0], 0), 0);
    CHECK_EQ(tpc_rbuf_line(&b, NULL), -EINVAL);
    CHECK_EQ(tpc_rbuf_need(&b, 1, NULL), -EINVAL);
    CHECK_EQ(tpc_rbuf_fill(NULL), -EINVAL);
    CHECK_EQ(tpc_rbuf_len(NULL), 0);
    CHECK_EQ(tpc_rbuf_len(&b), 0);
    CHECK(tpc_rbuf_data(&b) != NULL);
    tpc_rbuf_destroy(&b);
    tpc_close(sv[0]);
    tpc_close(sv[1]);
    return 0;
}

static void test_limits(void **state)
{
    (void)state;
    run_main(1, limits_main, NULL);
}

/* A large payload grows the buffer (up to the limit); once consumed, the memory goes. */
struct blob {
    int fd;
    char *data;
    size_t len;
};
static int send_blob(void *p)
{
    struct blob *bl = p;
    CHECK_EQ(tpc_write_full(bl->fd, bl->data, bl->len, -1), (ssize_t)bl->len);
    return 0;
}

static int large_main(void *arg)
{
    (void)arg;
    int sv[2];
    pair(sv);
    size_t n = 3u << 20;
    struct blob bl = {sv[1], malloc(n), n};
    fill_pattern(bl.data, n);
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn(send_blob, &bl, &f), 0);
    tpc_rbuf b;
    CHECK_EQ(tpc_rbuf_init(&b, sv[0], 4u << 20), 0);
    const char *p;
    CHECK_EQ(tpc_rbuf_need(&b, n, &p), (ssize_t)n);
    CHECK(memcmp(p, bl.data, n) == 0);
    CHECK(b.cap <= 4u << 20);
    CHECK_EQ(tpc_rbuf_consume(&b, n), 0);
    CHECK_EQ(b.cap, 0); /* given back */
    CHECK_EQ(tpc_join(f, NULL), 0);
    tpc_rbuf_destroy(&b);
    free(bl.data);
    tpc_close(sv[0]);
    tpc_close(sv[1]);
    return 0;
}

static void test_large(void **state)
{
    (void)state;
    run_main(1, large_main, NULL);
}

/* A deadline in the middle of a line: -ETIMEDOUT, what came stays, and the call may be made
 * again. */
static int deadline_main(void *arg)
{
    (void)arg;
    int sv[2];
    pair(sv);
    tpc_rbuf b;
    CHECK_EQ(tpc_rbuf_init(&b, sv[0], 0), 0);
    CHECK_EQ(tpc_write_full(sv[1], "half", 4, -1), 4);
    const char *p;
    CHECK_EQ(tpc_deadline_set(10 * 1000 * 1000), 0);
    CHECK_EQ(tpc_rbuf_line(&b, &p), -ETIMEDOUT);
    CHECK_EQ(tpc_deadline_clear(), 0);
    CHECK_EQ(tpc_rbuf_len(&b), 4);
    CHECK_EQ(tpc_write_full(sv[1], " line\n", 6, -1), 6);
    CHECK_EQ(tpc_rbuf_line(&b, &p), 10);
    CHECK(memcmp(p, "half line\n", 10) == 0);
    tpc_rbuf_destroy(&b);
    tpc_close(sv[0]);
    tpc_close(sv[1]);
    return 0;
}

static void test_read_deadline(void **state)
{
    (void)state;
    run_main(1, deadline_main, NULL);
}

/* ---- The writer ---- */
static atomic_int refs_released;
static void ref_release(void *p)
{
    (void)p;
    atomic_fetch_add(&refs_released, 1);
}

struct sink {
    int fd;
    size_t want;
    char *got;
};
static int sink_fn(void *p) /* reads want bytes */
{
    struct sink *k = p;
    CHECK_EQ(tpc_read_full(k->fd, k->got, k->want, -1), (ssize_t)k->want);
    return 0;
}

static int writer_main(void *arg)
{
    (void)arg;
    atomic_store(&refs_released, 0);
    int sv[2];
    pair(sv);
    tpc_wbuf w;
    CHECK_EQ(tpc_wbuf_init(&w, sv[0], 1u << 20), 0);
    /* Many small copies, a large reference in the middle, and a reserved span. */
    size_t big = 200 * 1024, total = 0;
    char *ref = malloc(big), *expect = malloc(big + 100000);
    memset(ref, 'R', big);
    for (int i = 0; i < 1000; i++) {
        char piece[16];
        int n = snprintf(piece, sizeof(piece), "%d,", i);
        CHECK_EQ(tpc_wbuf_append(&w, piece, (size_t)n), 0);
        memcpy(expect + total, piece, (size_t)n);
        total += (size_t)n;
        if (i == 500) {
            CHECK_EQ(tpc_wbuf_append_ref(&w, ref, big, ref_release, ref), 0);
            memcpy(expect + total, ref, big);
            total += big;
        }
    }
    void *room;
    CHECK_EQ(tpc_wbuf_reserve(&w, 64, &room), 0);
    int n = snprintf(room, 64, ":%d:", 12345);
    CHECK_EQ(tpc_wbuf_commit(&w, 65), -EINVAL);
    CHECK_EQ(tpc_wbuf_commit(&w, (size_t)n), 0);
    memcpy(expect + total, ":12345:", 7);
    total += 7;
    CHECK_EQ(tpc_wbuf_pending(&w), total);
    CHECK_EQ(atomic_load(&refs_released), 0);
    struct sink k = {sv[1], total, malloc(total)};
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn(sink_fn, &k, &f), 0);
    CHECK_EQ(tpc_wbuf_flush(&w), (ssize_t)total);
    CHECK_EQ(tpc_wbuf_pending(&w), 0);
    CHECK_EQ(atomic_load(&refs_released), 1); /* sent: released */
    CHECK_EQ(tpc_join(f, NULL), 0);
    CHECK(memcmp(k.got, expect, total) == 0);
    CHECK_EQ(tpc_wbuf_flush(&w), 0); /* nothing pending */
    /* The limit: an append past it fails and appends nothing. */
    CHECK_EQ(tpc_wbuf_append(&w, expect, (1u << 20) + 1), -ENOBUFS);
    CHECK_EQ(tpc_wbuf_append_ref(&w, ref, (1u << 20) + 1, ref_release, ref), -ENOBUFS);
    CHECK_EQ(tpc_wbuf_reserve(&w, (1u << 20) + 1, &room), -ENOBUFS);
    CHECK_EQ(tpc_wbuf_pending(&w), 0);
    CHECK_EQ(atomic_load(&refs_released), 1); /* a failed append_ref does not release */
    /* Destroy drops what is pending and releases its references, once. */
    CHECK_EQ(tpc_wbuf_append(&w, "x", 1), 0);
    CHECK_EQ(tpc_wbuf_append_ref(&w, ref, 1000, ref_release, ref), 0);
    CHECK_EQ(tpc_wbuf_append_ref(&w, ref, 0, ref_release, ref), 0); /* empty: released at once */
    CHECK_EQ(atomic_load(&refs_released), 2);
    tpc_wbuf_destroy(&w);
    CHECK_EQ(atomic_load(&refs_released), 3);
    tpc_wbuf_destroy(&w);
    CHECK_EQ(atomic_load(&refs_released), 3);
    /* Short references are copied and released at once: a million 1-byte ones stay within the
     * limit's memory (each took a 48-byte segment: 48 MiB of bookkeeping for 1 MiB of bytes). */
    CHECK_EQ(tpc_wbuf_init(&w, sv[0], 1u << 20), 0);
    atomic_store(&refs_released, 0);
    for (int i = 0; i < (1 << 20); i++)
        CHECK_EQ(tpc_wbuf_append_ref(&w, ref + (i % 255), 1, ref_release, ref), 0);
    CHECK_EQ(atomic_load(&refs_released), 1 << 20);
    CHECK_EQ(tpc_wbuf_pending(&w), 1u << 20);
    CHECK(w.capsegs <= 64);
    CHECK_EQ(tpc_wbuf_append_ref(&w, ref, 1, ref_release, ref), -ENOBUFS); /* full */
    CHECK_EQ(atomic_load(&refs_released), 1 << 20);
    tpc_wbuf_destroy(&w);
    atomic_store(&refs_released, 3);
    /* Misuse. */
    CHECK_EQ(tpc_wbuf_init(NULL, 1, 0), -EINVAL);
    CHECK_EQ(tpc_wbuf_init(&w, -1, 0), -EBADF);
    CHECK_EQ(tpc_wbuf_init(&w, sv[0], 0), 0);
    CHECK_EQ(tpc_wbuf_append(&w, NULL, 1), -EINVAL);
    CHECK_EQ(tpc_wbuf_append_ref(&w, NULL, 1, NULL, NULL), -EINVAL);
    CHECK_EQ(tpc_wbuf_reserve(&w, 1, NULL), -EINVAL);
    CHECK_EQ(tpc_wbuf_commit(&w, 1), -EINVAL); /* nothing reserved */
    CHECK_EQ(tpc_wbuf_flush(NULL), -EINVAL);
    tpc_wbuf_destroy(&w);
    free(ref);
    free(expect);
    free(k.got);
    tpc_close(sv[0]);
    tpc_close(sv[1]);
    return 0;
}

static void test_writer(void **state)
{
    (void)state;
    run_main(1, writer_main, NULL);
}

/* A peer that does not read: the flush's deadline passes with bytes pending; flushing again once
 * the peer reads delivers everything, in order. Then a closed peer: -EPIPE or -ECONNRESET. */
static int flush_deadline_main(void *arg)
{
    (void)arg;
    int sv[2];
    pair(sv);
    CHECK_EQ(tpc_sock_buffers(sv[0], 4096, 0), 0);
    CHECK_EQ(tpc_sock_buffers(sv[1], 0, 4096), 0);
    tpc_wbuf w;
    size_t total = 1u << 20;
    CHECK_EQ(tpc_wbuf_init(&w, sv[0], total), 0);
    char *data = malloc(total);
    fill_pattern(data, total);
    for (size_t off = 0; off < total; off += 1000)
        CHECK_EQ(tpc_wbuf_append(&w, data + off, total - off < 1000 ? total - off : 1000), 0);
    CHECK_EQ(tpc_deadline_set(20 * 1000 * 1000), 0);
    CHECK_EQ(tpc_wbuf_flush(&w), -ETIMEDOUT);
    CHECK_EQ(tpc_deadline_clear(), 0);
    size_t left = tpc_wbuf_pending(&w);
    CHECK(left > 0 && left < total);
    struct sink k = {sv[1], total, malloc(total)};
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn(sink_fn, &k, &f), 0);
    CHECK_EQ(tpc_wbuf_flush(&w), (ssize_t)left);
    CHECK_EQ(tpc_join(f, NULL), 0);
    CHECK(memcmp(k.got, data, total) == 0);
    tpc_close(sv[1]);
    CHECK_EQ(tpc_wbuf_append(&w, "bye", 3), 0);
    ssize_t rc = tpc_wbuf_flush(&w);
    CHECK(rc == -EPIPE || rc == -ECONNRESET);
    CHECK_EQ(tpc_wbuf_pending(&w), 3); /* kept */
    tpc_wbuf_destroy(&w);
    free(data);
    free(k.got);
    tpc_close(sv[0]);
    return 0;
}

static void test_flush_deadline(void **state)
{
    (void)state;
    run_main(1, flush_deadline_main, NULL);
}

/* More segments than one sendmsg takes (150 references between copies: 300), sent in parts
 * through small socket buffers: a deadline stops the first flush midway, and by then exactly
 * the references whose last byte went out are released; the second flush sends the rest, in
 * order, and releases every reference once. */
static int segments_main(void *arg)
{
    (void)arg;
    atomic_store(&refs_released, 0);
    int sv[2];
    pair(sv);
    CHECK_EQ(tpc_sock_buffers(sv[0], 4096, 0), 0);
    CHECK_EQ(tpc_sock_buffers(sv[1], 0, 4096), 0);
    enum { REFS = 150, REF_LEN = 1000 };
    size_t total = REFS * (REF_LEN + 2), ends[REFS], off = 0;
    char *refs = malloc(REFS * REF_LEN), *expect = malloc(total);
    fill_pattern(refs, REFS * REF_LEN);
    tpc_wbuf w;
    CHECK_EQ(tpc_wbuf_init(&w, sv[0], 0), 0);
    for (int i = 0; i < REFS; i++) {
        CHECK_EQ(tpc_wbuf_append(&w, "ab", 2), 0);
        memcpy(expect + off, "ab", 2);
        off += 2;
        CHECK_EQ(tpc_wbuf_append_ref(&w, refs + i * REF_LEN, REF_LEN, ref_release, NULL), 0);
        memcpy(expect + off, refs + i * REF_LEN, REF_LEN);
        off += REF_LEN;
        ends[i] = off;
    }
    CHECK_EQ(tpc_wbuf_pending(&w), total);
    CHECK_EQ(tpc_deadline_set(20 * 1000 * 1000), 0);
    CHECK_EQ(tpc_wbuf_flush(&w), -ETIMEDOUT); /* the peer reads nothing yet */
    CHECK_EQ(tpc_deadline_clear(), 0);
    size_t sent = total - tpc_wbuf_pending(&w);
    int whole = 0;
    while (whole < REFS && ends[whole] <= sent)
        whole++;
    CHECK(sent > 0 && whole < REFS);
    CHECK_EQ(atomic_load(&refs_released), whole);
    struct sink k = {sv[1], total, malloc(total)};
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn(sink_fn, &k, &f), 0);
    CHECK_EQ(tpc_wbuf_flush(&w), (ssize_t)(total - sent));
    CHECK_EQ(tpc_join(f, NULL), 0);
    CHECK(memcmp(k.got, expect, total) == 0);
    CHECK_EQ(atomic_load(&refs_released), REFS);
    tpc_wbuf_destroy(&w);
    CHECK_EQ(atomic_load(&refs_released), REFS);
    free(refs);
    free(expect);
    free(k.got);
    tpc_close(sv[0]);
    tpc_close(sv[1]);
    return 0;
}

static void test_segments(void **state)
{
    (void)state;
    run_main(1, segments_main, NULL);
}

/* Copies between references: each starts a chunk of its own, and the limit bounds those chunks'
 * memory, not only the bytes pending (a chunk of 16 KiB per 1-byte copy took 16 MiB for 2,000
 * pending bytes; references under 256 bytes are now copies themselves). With an 8 KiB limit
 * -ENOBUFS comes within 31 pairs of a 256-byte reference and a 1-byte copy, appends nothing,
 * and after a flush appends work again. */
static int alternate_main(void *arg)
{
    (void)arg;
    atomic_store(&refs_released, 0);
    int sv[2];
    pair(sv);
    tpc_wbuf w;
    CHECK_EQ(tpc_wbuf_init(&w, sv[0], 8192), 0);
    static char ref[256];
    memset(ref, 'r', sizeof(ref));
    int pairs = 0, rc = 0, refs = 0;
    size_t appended = 0;
    while (pairs < 1000) {
        if ((rc = tpc_wbuf_append_ref(&w, ref, sizeof(ref), ref_release, NULL)) < 0)
            break;
        refs++;
        appended += sizeof(ref);
        if ((rc = tpc_wbuf_append(&w, "c", 1)) < 0)
            break;
        appended++;
        pairs++;
    }
    CHECK_EQ(rc, -ENOBUFS);
    CHECK(pairs >= 4 && pairs <= 31);
    size_t pending = tpc_wbuf_pending(&w);
    CHECK_EQ(pending, appended);
    CHECK(pending <= 8192);
    CHECK(w.mem <= 8192 + 16 * 1024); /* the chunks' memory: the limit and one chunk at most */
    CHECK_EQ(tpc_wbuf_append_ref(&w, ref, sizeof(ref), ref_release, NULL), -ENOBUFS);
    CHECK_EQ(tpc_wbuf_pending(&w), pending);
    struct sink k = {sv[1], pending, malloc(pending)};
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn(sink_fn, &k, &f), 0);
    CHECK_EQ(tpc_wbuf_flush(&w), (ssize_t)pending);
    CHECK_EQ(tpc_join(f, NULL), 0);
    CHECK_EQ(atomic_load(&refs_released), refs);
    CHECK_EQ(tpc_wbuf_append(&w, "c", 1), 0);
    CHECK_EQ(tpc_wbuf_append_ref(&w, ref, sizeof(ref), ref_release, NULL), 0);
    tpc_wbuf_destroy(&w);
    free(k.got);
    tpc_close(sv[0]);
    tpc_close(sv[1]);
    return 0;
}

static void test_alternate(void **state)
{
    (void)state;
    run_main(1, alternate_main, NULL);
}

/* More pending than one send may carry (3 GiB of references to one untouched 1 GiB mapping):
 * the flush sends at most 0x7ffff000 bytes a time instead of failing with -EINVAL before any
 * I/O; the closed peer makes the first send fail with -EPIPE or -ECONNRESET, and nothing is
 * lost. An append larger than PTRDIFF_MAX is compared as a size: refused, nothing written. */
static int huge_main(void *arg)
{
    (void)arg;
    atomic_store(&refs_released, 0);
    int sv[2];
    pair(sv);
    tpc_close(sv[1]);
    size_t gib = (size_t)1 << 30;
    void *m = mmap(NULL, gib, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(m != MAP_FAILED);
    tpc_wbuf w;
    CHECK_EQ(tpc_wbuf_init(&w, sv[0], SIZE_MAX), 0);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(tpc_wbuf_append_ref(&w, m, gib, ref_release, NULL), 0);
    ssize_t rc = tpc_wbuf_flush(&w);
    CHECK(rc == -EPIPE || rc == -ECONNRESET);
    CHECK_EQ(tpc_wbuf_pending(&w), 3 * gib);
    CHECK_EQ(atomic_load(&refs_released), 0);
    tpc_wbuf_destroy(&w);
    CHECK_EQ(atomic_load(&refs_released), 3);
    CHECK_EQ(tpc_wbuf_init(&w, sv[0], SIZE_MAX), 0);
    CHECK_EQ(tpc_wbuf_append(&w, "x", 1), 0);
    CHECK_EQ(tpc_wbuf_append(&w, m, (size_t)PTRDIFF_MAX + 10), -ENOMEM);
    CHECK_EQ(tpc_wbuf_pending(&w), 1);
    tpc_wbuf_destroy(&w);
    munmap(m, gib);
    tpc_close(sv[0]);
    return 0;
}

static void test_huge(void **state)
{
    (void)state;
    run_main(1, huge_main, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines),    cmocka_unit_test(test_limits),
        cmocka_unit_test(test_large),    cmocka_unit_test(test_read_deadline),
        cmocka_unit_test(test_writer),   cmocka_unit_test(test_flush_deadline),
        cmocka_unit_test(test_segments), cmocka_unit_test(test_alternate),
        cmocka_unit_test(test_huge),
    };
    return cmocka_run_group_tests_name("bufio", tests, NULL, NULL);
}

/* test_huge asks for more memory than exists: the sanitizers' allocators return NULL as malloc
 * does instead of stopping the program. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
    return "allocator_may_return_null=1";
}
