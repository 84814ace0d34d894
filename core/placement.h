/* Placement's policy on a topology (core/placement.c), apart from core/internal.h so that only
 * placement.c and its tests see hwloc. Never installed. */
#ifndef TPC_CORE_PLACEMENT_H
#define TPC_CORE_PLACEMENT_H

#include <hwloc.h>
#include <sched.h>
#include "internal.h"

/* The places policy picks from `want` on topology t (tests pass synthetic topologies). */
int tpc__place_on(hwloc_topology_t t, const cpu_set_t *want, int policy, struct tpc__place *out,
                  int max);

#endif
