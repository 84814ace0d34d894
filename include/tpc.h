/* libtpc: a thread-per-core, shared-nothing runtime for C on Linux.
 *
 * One shard per CPU core; each runs a single-threaded executor of fibers and callback tasks
 * with its own io_uring. See README.md and docs/ for the guide. */
#ifndef TPC_H
#define TPC_H

#ifdef __cplusplus
extern "C" {
#endif

#include "tpc/version.h"
#include "tpc/common.h"
#include "tpc/error.h"
#include "tpc/runtime.h"
#include "tpc/task.h"
#include "tpc/sync.h"
#include "tpc/timer.h"
#include "tpc/xchan.h"
#include "tpc/io.h"
#include "tpc/net.h"
#include "tpc/metrics.h"
#include "tpc/numa.h"

#ifdef __cplusplus
}
#endif

#endif
