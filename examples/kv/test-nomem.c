/* A preload for test-kv.py: with KV_TEST_NOMEM set in the environment, tpc_alloc_aligned fails
 * for anything above 1 MiB (tpc-kv's log rounds take their buffers from it), as it would when
 * memory runs out. */
#include <dlfcn.h>
#include <stddef.h>
#include <stdlib.h>

void *tpc_alloc_aligned(size_t align, size_t size);

void *tpc_alloc_aligned(size_t align, size_t size)
{
    static void *(*real)(size_t, size_t);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "tpc_alloc_aligned");
    if (size > (1u << 20) && getenv("KV_TEST_NOMEM"))
        return NULL;
    return real(align, size);
}
