/* Walking the layers (core/layer.h): set-up bottom first, tear-down top first. */
#include <stdlib.h>
#include "internal.h"

int tpc__layers_runtime_init(struct tpc_runtime *rt, const tpc_config *c)
{
    for (unsigned i = 0; i < TPC__LAYERS; i++) {
        const struct tpc__layer *l = tpc__layers[i];
        int rc = l && l->runtime_init ? l->runtime_init(rt, c) : 0;
        if (rc < 0) {
            while (i--)
                if (tpc__layers[i] && tpc__layers[i]->runtime_fini)
                    tpc__layers[i]->runtime_fini(rt);
            return rc;
        }
        if (l && l->arm && !rt->clock)
            rt->clock = l;
    }
    return rt->clock ? 0 : -ENOSYS; /* no layer keeps time: waits could not time out */
}

void tpc__layers_runtime_fini(struct tpc_runtime *rt)
{
    for (unsigned i = TPC__LAYERS; i--;)
        if (tpc__layers[i] && tpc__layers[i]->runtime_fini)
            tpc__layers[i]->runtime_fini(rt);
}

int tpc__layers_shard_init(struct tpc__shard *s)
{
    for (unsigned i = 0; i < TPC__LAYERS; i++) {
        const struct tpc__layer *l = tpc__layers[i];
        if (!l)
            continue;
        if (l->state_size && !(s->layer[i] = calloc(1, l->state_size)))
            return -ENOMEM;
        int rc = l->shard_init ? l->shard_init(s, s->layer[i]) : 0;
        if (rc < 0)
            return rc; /* tpc__layers_shard_fini undoes what was done */
        if (l->poll)
            s->polls[s->npolls++] = (struct tpc__hook){.poll = l->poll, .state = s->layer[i]};
        if (l->timeout)
            s->timeouts[s->ntimeouts++] =
                (struct tpc__hook){.timeout = l->timeout, .state = s->layer[i]};
    }
    s->arm = s->rt->clock->arm;
    s->disarm = s->rt->clock->disarm;
    return 0;
}

void tpc__layers_shard_fini(struct tpc__shard *s)
{
    for (unsigned i = TPC__LAYERS; i--;) {
        const struct tpc__layer *l = tpc__layers[i];
        if (l && l->shard_fini && (!l->state_size || s->layer[i]))
            l->shard_fini(s, s->layer[i]);
    }
}

/* The state itself stays until the runtime is freed: a message run in the afterlife (core/ring.c)
 * may still start a timer, which then never fires. */
void tpc__layers_shard_free(struct tpc__shard *s)
{
    for (unsigned i = 0; i < TPC__LAYERS; i++) {
        free(s->layer[i]);
        s->layer[i] = NULL;
    }
}

int64_t tpc__layers_timeout(struct tpc__shard *s)
{
    int64_t soonest = -1;
    for (unsigned i = 0; i < s->ntimeouts; i++) {
        int64_t t = s->timeouts[i].timeout(s, s->timeouts[i].state);
        if (t >= 0 && (soonest < 0 || t < soonest))
            soonest = t;
    }
    return soonest;
}
