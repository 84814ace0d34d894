/* The layers, bottom first (core/layer.h). This file is the one place that names them all: it
 * sits at the top of the graph, so that core can walk the table without naming what is above
 * it. net keeps per-shard state of its own; its loop work
 * only ends the running relays when the shard stops. */
#include "internal.h"

static const struct tpc__layer net_layer = {
    .name = "net",
    .state_size = sizeof(struct tpc__net_shard),
    .shard_fini = tpc__net_shard_fini,
    .poll = tpc__relay_poll,
};

const struct tpc__layer *const tpc__layers[TPC__LAYERS] = {
    [TPC__TIMER_LAYER] = &tpc__timer_layer,
    [TPC__IO_LAYER] = &tpc__io_layer,
    [TPC__NET_LAYER] = &net_layer,
};
