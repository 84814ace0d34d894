/* Relaying both directions of a proxied connection (tpc_relay, include/tpc/net.h): a tpc_fwd
 * each way, a to b in the calling fiber and b to a in a fiber it starts and joins, one idle timer
 * for both, and a stop that reaches each direction wherever it waits. Everything lives on the
 * caller's stack: the join and the timer's stop before returning are what make that safe. */
#include <sys/socket.h>
#include "internal.h"

#define RELAY_CHUNK (64 * 1024) /* tpc_forward's most */

struct relay_dir {
    tpc_fwd f;
    int *from_err, *to_err; /* the stats' a_err / b_err of its source and of its destination */
    bool ended;             /* reached end of stream and half-closed its destination */
};

struct relay {
    struct relay_dir ab, ba;
    size_t chunk;
    int64_t idle;  /* ns; 0: no limit */
    uint64_t last; /* tpc_now() when a byte was last delivered, either way */
    tpc_timer idle_timer;
    tpc_fiber *caller, *helper;
    bool caller_moving; /* the caller is in its direction's loop */
    bool stopped;       /* both directions are to stop */
    int why;            /* what ended the relay: 0 or a negative errno, the first reason */
};

/* Stops both directions for `why` (the first reason wins). The helper fiber is cancelled. The
 * caller cannot be: a cancel is for good, and the caller goes on after tpc_relay returns. So its
 * direction is stopped as a deadline would stop it: its deadline goes into the past, which fails
 * each further wait inside tpc_forward at once (so it cannot slip into a next wait between two
 * of them), and its current wait is woken as its deadline's timer wakes it (an operation in the
 * kernel is cancelled and waited for, keeping what it did). tpc_relay puts the caller's own
 * deadline back once the loop has left. Called from either direction or the idle timer. */
static void relay_stop(struct relay *r, int why)
{
    if (r->stopped)
        return;
    r->stopped = true;
    r->why = why;
    tpc_fiber *self = tpc_self();
    if (r->helper && r->helper != self)
        tpc_cancel(r->helper);
    tpc_fiber *c = r->caller;
    if (r->caller_moving && c != self) {
        c->deadline = 1;
        if (c->state == TPC__F_WAITING && c->wait && !c->wait->hard)
            tpc__wake(c->wait, -ETIMEDOUT);
    }
}

/* Moves one direction until its source ends (then half-closes the destination), a socket
 * fails, or the relay stops. */
static void relay_move(struct relay *r, struct relay_dir *d)
{
    while (!r->stopped) {
        ssize_t n = tpc_forward(&d->f, r->chunk);
        if (n > 0) {
            r->last = tpc_now();
            continue;
        }
        if (r->stopped)
            return;
        if (n == -EAGAIN) { /* readable, then nothing there; or no free SQE: let the loop run */
            tpc_yield();
            continue;
        }
        if (n == 0) { /* end of stream, everything delivered */
            int rc = tpc_sock_shutdown(d->f.to, SHUT_WR);
            if (rc == 0) {
                d->ended = true;
                return;
            }
            *d->to_err = rc;
            relay_stop(r, rc);
            return;
        }
        int own = tpc__fiber_stopped(tpc_self());
        if (own) {
            /* The caller's own cancel or deadline ends the relay. The helper is cancelled only
             * by relay_stop, by the caller's join (the caller tells why) or by a shutdown of the
             * runtime (which cancels the caller too): it leaves quietly. */
            if (tpc_self() == r->caller)
                relay_stop(r, own);
            return;
        }
        /* A socket's error. tpc_forward delivers what it holds before it touches the source
         * again, so with bytes held the destination failed; with none, the source. */
        if (n != -ENOMEM)
            *(tpc_fwd_held(&d->f) ? d->to_err : d->from_err) = (int)n;
        relay_stop(r, (int)n);
        return;
    }
}

/* Re-armed at the last delivery plus the limit: it fires at most once per limit while bytes
 * move, and the directions pay a store per delivery, not a timer restart. */
static void relay_idle(tpc_timer *t, void *arg)
{
    struct relay *r = arg;
    if (r->stopped || (r->ab.ended && r->ba.ended))
        return;
    uint64_t due = r->last + (uint64_t)r->idle;
    if (tpc_now() >= due)
        relay_stop(r, -ETIMEDOUT);
    else
        tpc_timer_start_at(t, due, 0);
}

static int relay_back(void *arg)
{
    struct relay *r = arg;
    relay_move(r, &r->ba);
    return 0;
}

int tpc_relay(int a, int b, const tpc_relay_opts *opts, tpc_relay_stats *out)
{
    if (out)
        *out = (tpc_relay_stats){0};
    TPC__CHECK_SUSPEND();
    if (a < 0 || b < 0)
        return -EBADF;
    if (a == b || (opts && opts->idle_ns < 0))
        return -EINVAL;
    tpc_relay_stats st = {0};
    size_t chunk = opts ? opts->chunk : 0;
    struct relay r = {
        .chunk = chunk && chunk < RELAY_CHUNK ? chunk : RELAY_CHUNK,
        .idle = opts ? opts->idle_ns : 0,
        .caller = tpc__self->current,
    };
    tpc_fwd_init(&r.ab.f, a, b);
    tpc_fwd_init(&r.ba.f, b, a);
    r.ab.from_err = r.ba.to_err = &st.a_err;
    r.ab.to_err = r.ba.from_err = &st.b_err;
    tpc_fiber_opts fo = {.name = "relay"};
    int rc = tpc_spawn_opts(&fo, relay_back, &r, &r.helper);
    if (rc < 0)
        return rc;
    if (r.idle) {
        r.last = tpc_now();
        tpc_timer_init(&r.idle_timer, relay_idle, &r);
        tpc_timer_start_at(&r.idle_timer, r.last + (uint64_t)r.idle, 0);
    }
    uint64_t deadline = r.caller->deadline;
    r.caller_moving = true;
    relay_move(&r, &r.ab);
    r.caller_moving = false;
    r.caller->deadline = deadline;
    /* Structured: a caller cancelled (or past its deadline) here cancels the helper and still
     * waits for it. */
    rc = tpc_join(r.helper, NULL);
    r.helper = NULL;
    if (rc < 0 && !r.stopped) {
        r.stopped = true;
        r.why = rc;
    }
    if (r.idle)
        tpc_timer_stop(&r.idle_timer);
    st.a_to_b = r.ab.f.out;
    st.b_to_a = r.ba.f.out;
    st.a_to_b_unsent = r.ab.f.in - r.ab.f.out;
    st.b_to_a_unsent = r.ba.f.in - r.ba.f.out;
    tpc_fwd_destroy(&r.ab.f);
    tpc_fwd_destroy(&r.ba.f);
    if (out)
        *out = st;
    return r.why;
}
