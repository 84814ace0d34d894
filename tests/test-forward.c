/* Forwarding one direction of a proxied connection (tpc_fwd): nothing taken from the source is
 * lost when the destination stalls past a deadline, the two timeouts are told apart by what is
 * held, and an idle direction holds nothing. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "helpers.h"

#define MS 1000000

enum { TOTAL = 1 << 20 };

static char pattern(size_t i)
{
    return (char)(i * 13 + i / 1000);
}

/* Each case: source -> (src[0], src[1]) -> forward src[1] to dst[0] -> (dst[0], dst[1]) ->
 * reader, with a small send buffer on dst[0] so that the destination can stall. */
struct fwd_setup {
    int src[2], dst[2];
    tpc_fwd f;
};

static void fwd_setup(struct fwd_setup *s)
{
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s->src), 0);
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s->dst), 0);
    int small = 4096;
    setsockopt(s->dst[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    CHECK_EQ(tpc_fwd_init(&s->f, s->src[1], s->dst[0]), 0);
}

static void fwd_teardown(struct fwd_setup *s)
{
    tpc_fwd_destroy(&s->f);
    for (int i = 0; i < 2; i++) {
        close(s->src[i]);
        close(s->dst[i]);
    }
}

/* Idle source: a timeout with nothing held. */
static int fwd_idle_main(void *arg)
{
    (void)arg;
    struct fwd_setup s;
    fwd_setup(&s);
    CHECK_EQ(tpc_deadline_set(5 * MS), 0);
    CHECK_EQ(tpc_forward(&s.f, 1 << 20), -ETIMEDOUT);
    CHECK_EQ(tpc_fwd_held(&s.f), 0);
    CHECK_EQ(tpc_deadline_clear(), 0);
    fwd_teardown(&s);
    return 0;
}

static void test_forward_idle_holds_nothing(void **state)
{
    (void)state;
    run_main(1, fwd_idle_main, NULL);
}

/* The destination stalls past deadlines with bytes held: they are delivered later, every byte
 * in order. */
static int fwd_main(void *arg)
{
    (void)arg;
    struct fwd_setup s;
    fwd_setup(&s);
    /* A writer thread would block: the source side is filled by non-blocking sends in turns. */
    char *out = malloc(TOTAL), *in = malloc(TOTAL);
    for (size_t i = 0; i < TOTAL; i++)
        out[i] = pattern(i);
    size_t sent = 0, delivered = 0, got = 0;
    int stalls = 0;
    for (unsigned round = 0; got < TOTAL; round++) {
        if (sent < TOTAL) {
            ssize_t n = send(s.src[0], out + sent, TOTAL - sent, MSG_DONTWAIT);
            if (n > 0)
                sent += (size_t)n;
        }
        /* The destination's reader reads only every fourth round: the destination stalls. */
        CHECK_EQ(tpc_deadline_set(1 * MS), 0);
        ssize_t n = tpc_forward(&s.f, 1 << 20);
        CHECK_EQ(tpc_deadline_clear(), 0);
        if (n > 0)
            delivered += (size_t)n;
        else if (n == -ETIMEDOUT && tpc_fwd_held(&s.f) > 0)
            stalls++;
        else
            CHECK(n == -ETIMEDOUT || n == -EAGAIN);
        if (round % 4 == 3) {
            ssize_t r;
            while ((r = recv(s.dst[1], in + got, TOTAL - got, MSG_DONTWAIT)) > 0)
                got += (size_t)r;
        }
        if (n < 0 && n != -ETIMEDOUT && n != -EAGAIN)
            break;
    }
    CHECK_EQ(got, TOTAL);
    CHECK(stalls > 0); /* the destination did stall with bytes held */
    CHECK_EQ(delivered, TOTAL);
    CHECK_EQ(s.f.in, TOTAL);
    CHECK_EQ(s.f.out, TOTAL);
    CHECK(!memcmp(in, out, TOTAL));
    free(in);
    free(out);
    fwd_teardown(&s);
    return 0;
}

static void test_forward_loses_nothing(void **state)
{
    (void)state;
    run_main(1, fwd_main, NULL);
}

/* End of stream once nothing is held. */
static int fwd_end_main(void *arg)
{
    (void)arg;
    struct fwd_setup s;
    fwd_setup(&s);
    CHECK_EQ(send(s.src[0], "bytes", 5, 0), 5);
    shutdown(s.src[0], SHUT_WR);
    CHECK_EQ(tpc_forward(&s.f, 1 << 20), 5);
    CHECK_EQ(tpc_fwd_held(&s.f), 0);
    CHECK_EQ(tpc_forward(&s.f, 1 << 20), 0);
    char buf[8];
    CHECK_EQ(recv(s.dst[1], buf, sizeof(buf), MSG_DONTWAIT), 5);
    fwd_teardown(&s);
    return 0;
}

static void test_forward_end_of_stream(void **state)
{
    (void)state;
    run_main(1, fwd_end_main, NULL);
}

/* The destination fails with bytes held: they stay held (reported), and the error comes. */
static int fail_main(void *arg)
{
    (void)arg;
    int src[2], dst[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, src), 0);
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, dst), 0);
    close(dst[1]);
    tpc_fwd f;
    CHECK_EQ(tpc_fwd_init(&f, src[1], dst[0]), 0);
    CHECK_EQ(send(src[0], "hello", 5, 0), 5);
    CHECK_EQ(tpc_forward(&f, 100), -EPIPE);
    CHECK_EQ(tpc_fwd_held(&f), 5);
    CHECK_EQ(f.in, 5);
    CHECK_EQ(f.out, 0);
    CHECK_EQ(tpc_forward(&f, 100), -EPIPE); /* again, nothing lost or invented */
    CHECK_EQ(tpc_fwd_held(&f), 5);
    tpc_fwd_destroy(&f);
    CHECK_EQ(tpc_fwd_held(&f), 0);
    close(src[0]);
    close(src[1]);
    close(dst[0]);
    return 0;
}

static void test_forward_destination_fails(void **state)
{
    (void)state;
    run_main(1, fail_main, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_idle_holds_nothing),
        cmocka_unit_test(test_forward_loses_nothing),
        cmocka_unit_test(test_forward_end_of_stream),
        cmocka_unit_test(test_forward_destination_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
