/* Shared definitions of the public headers: export macro and forward types. */
#ifndef TPC_COMMON_H
#define TPC_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(TPC_BUILDING) && defined(__GNUC__)
#define TPC_EXTERN __attribute__((visibility("default")))
#else
#define TPC_EXTERN
#endif

/* Marks what strict ISO C modes would warn about but every supported compiler takes (an
 * anonymous union before C11). */
#if defined(__GNUC__)
#define TPC_EXTENSION __extension__
#else
#define TPC_EXTENSION
#endif

/* A fiber: a task with its own stack. Opaque; owned by the runtime. */
typedef struct tpc_fiber tpc_fiber;

/* A fiber's body. Its return value is what tpc_join() hands back. */
typedef int (*tpc_fiber_fn)(void *arg);

/* A callback task: runs once, to completion, on the shard's own stack. It may not suspend. */
typedef void (*tpc_callback_fn)(void *arg);

/* Frees (or otherwise lets go of) what a call or a buffer owned on the caller's behalf:
 * tpc_call_owned's argument, a tpc_shard_key's values, tpc_wbuf_append_ref's bytes. */
typedef void (*tpc_release_fn)(void *arg);

#endif
