/* Shard-local synchronisation: mutex, semaphore, event, wait group and channel.
 *
 * One mechanism serves all five: a waiting fiber parks a struct tpc__wait (on its own stack) in
 * the object's FIFO waiter list; whoever satisfies it unlinks it and makes the fiber ready,
 * handing over what it waited for (ownership, a unit, a value) before the fiber even runs. So
 * there is no barging: a fiber that arrives later cannot take what a waiter was promised. */
#include <stdlib.h>
#include "internal.h"

/* The objects inside the public, opaque types of tpc/sync.h. */
struct mutex {
    tpc_list waiters;
    void *shard;
    uint64_t owner; /* the owning fiber's serial; 0: none (a record may be reused by then) */
};

struct sem {
    tpc_list waiters;
    void *shard;
    uint64_t count;
};

struct event {
    tpc_list waiters;
    void *shard;
    bool set;
};

struct waitgroup {
    tpc_list waiters;
    void *shard;
    int64_t count;
};

struct chan {
    tpc_list senders, receivers;
    void *shard;
    void **buf;
    size_t cap, head, len;
    bool closed;
};

_Static_assert(sizeof(struct mutex) <= sizeof(tpc_mutex) &&
                   _Alignof(struct mutex) <= _Alignof(tpc_mutex),
               "tpc_mutex must hold a struct mutex");
_Static_assert(sizeof(struct sem) <= sizeof(tpc_sem) && _Alignof(struct sem) <= _Alignof(tpc_sem),
               "tpc_sem must hold a struct sem");
_Static_assert(sizeof(struct event) <= sizeof(tpc_event) &&
                   _Alignof(struct event) <= _Alignof(tpc_event),
               "tpc_event must hold a struct event");
_Static_assert(sizeof(struct waitgroup) <= sizeof(tpc_waitgroup) &&
                   _Alignof(struct waitgroup) <= _Alignof(tpc_waitgroup),
               "tpc_waitgroup must hold a struct waitgroup");
_Static_assert(sizeof(struct chan) <= sizeof(tpc_chan) &&
                   _Alignof(struct chan) <= _Alignof(tpc_chan),
               "tpc_chan must hold a struct chan");

static struct tpc__wait *first_waiter(tpc_list *q)
{
    tpc_list *n = tpc__list_first(q);
    return n ? tpc__container_of(n, struct tpc__wait, node) : NULL;
}

static void wake_all(tpc_list *q, int result)
{
    struct tpc__wait *w;
    while ((w = first_waiter(q)))
        tpc__wake(w, result);
}

static int obj_init(tpc_list *waiters, void **shard)
{
    if (!tpc__self)
        return -EPERM;
    tpc__list_init(waiters);
    *shard = tpc__self;
    return 0;
}

static int obj_destroy(tpc_list *waiters, void **shard)
{
    if (!tpc__list_empty(waiters))
        return -EBUSY;
    *shard = NULL;
    return 0;
}

/* ---- Mutex ---- */

int tpc_mutex_init(tpc_mutex *pub)
{
    if (!pub)
        return -EINVAL;
    struct mutex *m = (void *)pub;
    m->owner = 0;
    return obj_init(&m->waiters, &m->shard);
}

int tpc_mutex_trylock(tpc_mutex *pub)
{
    struct mutex *m = (void *)pub;
    TPC__CHECK_SHARD(m);
    TPC__CHECK_FIBER();
    uint64_t self = tpc__self->current->serial;
    if (m->owner == self)
        return -EDEADLK;
    if (m->owner)
        return -EBUSY;
    m->owner = self;
    return 0;
}

int tpc_mutex_lock(tpc_mutex *pub)
{
    struct mutex *m = (void *)pub;
    TPC__CHECK_SHARD(m);
    TPC__CHECK_SUSPEND();
    int rc = tpc_mutex_trylock(pub);
    if (rc != -EBUSY)
        return rc;
    struct tpc__wait w;
    return tpc__park(&m->waiters, &w); /* 0: unlock handed us ownership */
}

int tpc_mutex_unlock(tpc_mutex *pub)
{
    struct mutex *m = (void *)pub;
    TPC__CHECK_SHARD(m);
    if (!m->owner || !tpc__self->current || m->owner != tpc__self->current->serial)
        return -EPERM;
    struct tpc__wait *w = first_waiter(&m->waiters);
    m->owner = w ? w->fiber->serial : 0;
    if (w)
        tpc__wake(w, 0);
    return 0;
}

int tpc_mutex_destroy(tpc_mutex *pub)
{
    struct mutex *m = (void *)pub;
    TPC__CHECK_SHARD(m);
    if (m->owner)
        return -EBUSY;
    return obj_destroy(&m->waiters, &m->shard);
}

/* ---- Semaphore ---- */

int tpc_sem_init(tpc_sem *pub, uint64_t count)
{
    if (!pub)
        return -EINVAL;
    struct sem *s = (void *)pub;
    s->count = count;
    return obj_init(&s->waiters, &s->shard);
}

int tpc_sem_tryacquire(tpc_sem *pub)
{
    struct sem *s = (void *)pub;
    TPC__CHECK_SHARD(s);
    if (s->count == 0 || !tpc__list_empty(&s->waiters))
        return -EAGAIN;
    s->count--;
    return 0;
}

int tpc_sem_acquire(tpc_sem *pub)
{
    struct sem *s = (void *)pub;
    TPC__CHECK_SHARD(s);
    TPC__CHECK_SUSPEND();
    if (tpc_sem_tryacquire(pub) == 0)
        return 0;
    struct tpc__wait w;
    return tpc__park(&s->waiters, &w);
}

int tpc_sem_release(tpc_sem *pub, uint64_t n)
{
    struct sem *s = (void *)pub;
    TPC__CHECK_SHARD(s);
    struct tpc__wait *w;
    uint64_t handed = 0;
    /* Count the waiters that would be served, to check for overflow before changing anything. */
    for (tpc_list *p = s->waiters.next; p != &s->waiters && handed < n; p = p->next)
        handed++;
    if (n - handed > UINT64_MAX - s->count)
        return -EOVERFLOW;
    for (uint64_t i = 0; i < handed && (w = first_waiter(&s->waiters)); i++)
        tpc__wake(w, 0);
    s->count += n - handed;
    return 0;
}

uint64_t tpc_sem_value(const tpc_sem *pub)
{
    const struct sem *s = (const void *)pub;
    return s ? s->count : 0;
}

int tpc_sem_destroy(tpc_sem *pub)
{
    struct sem *s = (void *)pub;
    TPC__CHECK_SHARD(s);
    return obj_destroy(&s->waiters, &s->shard);
}

/* ---- Event ---- */

int tpc_event_init(tpc_event *pub, bool set)
{
    if (!pub)
        return -EINVAL;
    struct event *e = (void *)pub;
    e->set = set;
    return obj_init(&e->waiters, &e->shard);
}

int tpc_event_set(tpc_event *pub)
{
    struct event *e = (void *)pub;
    TPC__CHECK_SHARD(e);
    e->set = true;
    wake_all(&e->waiters, 0);
    return 0;
}

int tpc_event_reset(tpc_event *pub)
{
    struct event *e = (void *)pub;
    TPC__CHECK_SHARD(e);
    e->set = false;
    return 0;
}

int tpc_event_wait(tpc_event *pub)
{
    struct event *e = (void *)pub;
    TPC__CHECK_SHARD(e);
    TPC__CHECK_SUSPEND();
    if (e->set)
        return 0;
    struct tpc__wait w;
    return tpc__park(&e->waiters, &w);
}

bool tpc_event_is_set(const tpc_event *pub)
{
    const struct event *e = (const void *)pub;
    return e && e->set;
}

int tpc_event_destroy(tpc_event *pub)
{
    struct event *e = (void *)pub;
    TPC__CHECK_SHARD(e);
    return obj_destroy(&e->waiters, &e->shard);
}

/* ---- Wait group ---- */

int tpc_wg_init(tpc_waitgroup *pub)
{
    if (!pub)
        return -EINVAL;
    struct waitgroup *wg = (void *)pub;
    wg->count = 0;
    return obj_init(&wg->waiters, &wg->shard);
}

int tpc_wg_add(tpc_waitgroup *pub, int64_t n)
{
    struct waitgroup *wg = (void *)pub;
    TPC__CHECK_SHARD(wg);
    /* count >= 0, so count + n cannot overflow for n < 0. */
    if ((n < 0 && wg->count + n < 0) || (n > 0 && wg->count > INT64_MAX - n))
        return -EINVAL;
    wg->count += n;
    if (wg->count == 0)
        wake_all(&wg->waiters, 0);
    return 0;
}

int tpc_wg_done(tpc_waitgroup *pub)
{
    return tpc_wg_add(pub, -1);
}

int tpc_wg_wait(tpc_waitgroup *pub)
{
    struct waitgroup *wg = (void *)pub;
    TPC__CHECK_SHARD(wg);
    TPC__CHECK_SUSPEND();
    if (wg->count == 0)
        return 0;
    struct tpc__wait w;
    return tpc__park(&wg->waiters, &w);
}

int tpc_wg_destroy(tpc_waitgroup *pub)
{
    struct waitgroup *wg = (void *)pub;
    TPC__CHECK_SHARD(wg);
    return obj_destroy(&wg->waiters, &wg->shard);
}

/* ---- Channel ---- */

int tpc_chan_init(tpc_chan *pub, size_t capacity)
{
    if (!pub)
        return -EINVAL;
    struct chan *c = (void *)pub;
    if (!tpc__self)
        return -EPERM;
    if (capacity > ((size_t)1 << 31))
        return -EINVAL;
    c->buf = NULL;
    if (capacity && !(c->buf = malloc(capacity * sizeof(void *))))
        return -ENOMEM;
    c->cap = capacity;
    c->head = c->len = 0;
    c->closed = false;
    tpc__list_init(&c->senders);
    return obj_init(&c->receivers, &c->shard);
}

int tpc_chan_trysend(tpc_chan *pub, void *value)
{
    struct chan *c = (void *)pub;
    TPC__CHECK_SHARD(c);
    if (c->closed)
        return -EPIPE;
    struct tpc__wait *w = first_waiter(&c->receivers);
    if (w) { /* receivers wait only when the buffer is empty: hand over directly */
        w->value = value;
        tpc__wake(w, 0);
        return 0;
    }
    if (c->len == c->cap)
        return -EAGAIN;
    size_t tail = c->head + c->len++;
    c->buf[tail >= c->cap ? tail - c->cap : tail] = value;
    return 0;
}

int tpc_chan_send(tpc_chan *pub, void *value)
{
    struct chan *c = (void *)pub;
    TPC__CHECK_SHARD(c);
    TPC__CHECK_SUSPEND();
    int rc = tpc_chan_trysend(pub, value);
    if (rc != -EAGAIN)
        return rc;
    struct tpc__wait w;
    w.value = value;
    return tpc__park(&c->senders, &w);
}

int tpc_chan_tryrecv(tpc_chan *pub, void **out)
{
    struct chan *c = (void *)pub;
    TPC__CHECK_SHARD(c);
    if (!out)
        return -EINVAL;
    struct tpc__wait *w = first_waiter(&c->senders);
    if (c->len) {
        *out = c->buf[c->head];
        c->head = c->head + 1 == c->cap ? 0 : c->head + 1;
        c->len--;
        if (w) { /* a slot freed: the first blocked sender's value takes it */
            size_t tail = c->head + c->len;
            c->buf[tail >= c->cap ? tail - c->cap : tail] = w->value;
            c->len++;
            tpc__wake(w, 0);
        }
        return 0;
    }
    if (w) { /* rendezvous channel */
        *out = w->value;
        tpc__wake(w, 0);
        return 0;
    }
    return c->closed ? -EPIPE : -EAGAIN;
}

int tpc_chan_recv(tpc_chan *pub, void **out)
{
    struct chan *c = (void *)pub;
    TPC__CHECK_SHARD(c);
    if (!out)
        return -EINVAL;
    TPC__CHECK_SUSPEND();
    int rc = tpc_chan_tryrecv(pub, out);
    if (rc != -EAGAIN)
        return rc;
    struct tpc__wait w;
    rc = tpc__park(&c->receivers, &w);
    if (rc == 0)
        *out = w.value;
    return rc;
}

int tpc_chan_close(tpc_chan *pub)
{
    struct chan *c = (void *)pub;
    TPC__CHECK_SHARD(c);
    c->closed = true;
    wake_all(&c->senders, -EPIPE);
    wake_all(&c->receivers, -EPIPE);
    return 0;
}

size_t tpc_chan_len(const tpc_chan *pub)
{
    const struct chan *c = (const void *)pub;
    return c ? c->len : 0;
}

int tpc_chan_destroy(tpc_chan *pub)
{
    struct chan *c = (void *)pub;
    TPC__CHECK_SHARD(c);
    if (!tpc__list_empty(&c->senders))
        return -EBUSY;
    int rc = obj_destroy(&c->receivers, &c->shard);
    if (rc == 0) {
        free(c->buf);
        c->buf = NULL;
    }
    return rc;
}
