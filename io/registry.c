/* Registered buffers and files as shared resources (include/tpc/io.h): each shard's ring gets a
 * sparse table of each kind on first use (tpc_config.registered_slots slots), and components
 * take slots from it and give them back one at a time with the kernel's slot updates, which,
 * unlike registering a whole set, never wait for the ring to be idle: operations in flight
 * keep the buffer or file they started with. A handle carries its slot and a generation, so
 * one that was given back (and maybe reused) is refused instead of reaching another
 * component's buffer. Generations come from one counter for the whole process, so a handle
 * taken to another shard (whose table has the same slot numbers) is refused there too, and
 * given-back slots go to the end of the free list, so that reuse spreads over all of them:
 * a stale handle matches again only after 65,535 registrations in the process. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include "internal.h"

static _Atomic unsigned next_gen; /* every table's, every shard's */

#define GEN_MASK  ((1u << (30 - TPC__SLOT_BITS)) - 1)
#define SLOT_MASK ((1u << TPC__SLOT_BITS) - 1)

/* Creates the table in the kernel and its free list, on first use. */
static int table_make(struct tpc__shard *s, struct tpc__reg_table *t, bool files)
{
    if (t->made)
        return t->made < 0 ? t->made : 0;
    unsigned n = s->rt->config.registered_slots;
    t->slot = calloc(n, sizeof(*t->slot));
    if (!t->slot)
        return -ENOMEM; /* not remembered: may work next time */
    /* An epoll shard keeps the tables in user space only: a buffer is a checked range, a file a
     * descriptor of its own (core/epoll.c). */
    int rc = s->ep   ? 0
             : files ? io_uring_register_files_sparse(&s->ring, n)
                     : io_uring_register_buffers_sparse(&s->ring, n);
    if (rc < 0) {
        free(t->slot);
        t->slot = NULL;
        if (rc != -ENOMEM)
            t->made = rc; /* the kernel will not have it (too old, or too many files) */
        return rc;
    }
    t->n = n;
    t->dups = files && s->ep;
    for (unsigned i = 0; i < n; i++)
        t->slot[i].next_free = i + 1 < n ? (int)i + 1 : -1;
    t->free_head = 0;
    t->free_tail = (int)n - 1;
    t->made = 1;
    return 0;
}

/* Takes a free slot (-ENOSPC when none is left). */
static int slot_take(struct tpc__reg_table *t)
{
    int i = t->free_head;
    if (i < 0)
        return -ENOSPC;
    t->free_head = t->slot[i].next_free;
    if (t->free_head < 0)
        t->free_tail = -1;
    t->slot[i].used = true;
    unsigned gen;
    do /* 0 is never given, so a zeroed slot matches no handle */
        gen = atomic_fetch_add_explicit(&next_gen, 1, memory_order_relaxed) & GEN_MASK;
    while (gen == 0 || gen == t->slot[i].gen);
    t->slot[i].gen = gen;
    return i;
}

static void slot_give(struct tpc__reg_table *t, int i)
{
    t->slot[i].used = false;
    t->slot[i].base = NULL;
    t->slot[i].len = 0;
    t->slot[i].next_free = -1; /* at the end: the slot longest free is taken first */
    if (t->free_tail >= 0)
        t->slot[t->free_tail].next_free = i;
    else
        t->free_head = i;
    t->free_tail = i;
}

static int handle_of(const struct tpc__reg_table *t, int i)
{
    return (int)(t->slot[i].gen << TPC__SLOT_BITS) | i;
}

/* The slot a handle names (without TPC__FILE_BIT), or -EBADF. */
static int slot_of(const struct tpc__reg_table *t, int handle)
{
    if (handle < 0 || handle >= TPC__FILE_BIT || t->made <= 0)
        return -EBADF;
    unsigned i = (unsigned)handle & SLOT_MASK,
             gen = ((unsigned)handle >> TPC__SLOT_BITS) & GEN_MASK;
    if (i >= t->n || !t->slot[i].used || t->slot[i].gen != gen)
        return -EBADF;
    return (int)i;
}

int tpc_buffer_register(void *base, size_t len)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return -EPERM;
    if (!base || len == 0 || len > (1u << 30))
        return -EINVAL;
    struct tpc__reg_table *t = &tpc__io_of(s)->bufs;
    int rc = table_make(s, t, false);
    if (rc < 0)
        return rc;
    int i = slot_take(t);
    if (i < 0)
        return i;
    struct iovec iov = {base, len};
    __u64 tag = 0;
    rc = s->ep ? 0 : io_uring_register_buffers_update_tag(&s->ring, (unsigned)i, &iov, &tag, 1);
    if (rc < 0) {
        slot_give(t, i);
        return rc;
    }
    t->slot[i].base = base;
    t->slot[i].len = len;
    return handle_of(t, i);
}

int tpc_buffer_unregister(int handle)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return -EPERM;
    struct tpc__reg_table *t = &tpc__io_of(s)->bufs;
    int i = slot_of(t, handle);
    if (i < 0)
        return i;
    if (t->slot[i].inflight)
        return -EBUSY;
    struct iovec none = {NULL, 0};
    __u64 tag = 0;
    int rc =
        s->ep ? 0 : io_uring_register_buffers_update_tag(&s->ring, (unsigned)i, &none, &tag, 1);
    if (rc < 0)
        return rc;
    slot_give(t, i);
    return 0;
}

struct tpc__reg_slot *tpc__io_buf(struct tpc__io_shard *io, int handle, const void *buf, size_t len,
                                  unsigned *slot)
{
    int i = slot_of(&io->bufs, handle);
    if (i < 0 || !buf)
        return NULL;
    struct tpc__reg_slot *b = &io->bufs.slot[i];
    const char *p = buf;
    if (p < b->base || len > b->len || (size_t)(p - b->base) > b->len - len)
        return NULL;
    *slot = (unsigned)i;
    return b;
}

int tpc_file_register(int fd)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return -EPERM;
    if (fd < 0 || fd >= TPC__FILE_BIT)
        return -EBADF;
    struct tpc__reg_table *t = &tpc__io_of(s)->files;
    int rc = table_make(s, t, true);
    if (rc < 0)
        return rc;
    int i = slot_take(t);
    if (i < 0)
        return i;
    if (s->ep) {
        t->slot[i].fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        rc = t->slot[i].fd < 0 ? -errno : 0;
    } else {
        rc = io_uring_register_files_update(&s->ring, (unsigned)i, &fd, 1);
    }
    if (rc < 0) {
        slot_give(t, i);
        return rc;
    }
    return TPC__FILE_BIT | handle_of(t, i);
}

int tpc_file_unregister(int handle)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return -EPERM;
    if (!(handle & TPC__FILE_BIT))
        return -EBADF;
    struct tpc__reg_table *t = &tpc__io_of(s)->files;
    int i = slot_of(t, handle & ~TPC__FILE_BIT);
    if (i < 0)
        return i;
    int none = -1; /* operations in flight keep their own reference to the file */
    int rc = s->ep ? close(t->slot[i].fd),
        0          : io_uring_register_files_update(&s->ring, (unsigned)i, &none, 1);
    if (rc < 0)
        return rc;
    slot_give(t, i);
    return 0;
}

int tpc__io_file(int fd, int *sqe_fd, unsigned char *sqe_flags)
{
    *sqe_fd = fd;
    if (fd < TPC__FILE_BIT)
        return 0; /* a plain descriptor (a negative one the kernel refuses itself) */
    int i = slot_of(&tpc__io_of(tpc__self)->files, fd & ~TPC__FILE_BIT);
    if (i < 0)
        return i;
    if (tpc__self->ep) { /* epoll: the registered file's own descriptor */
        *sqe_fd = tpc__io_of(tpc__self)->files.slot[i].fd;
        return 0;
    }
    *sqe_fd = i;
    *sqe_flags |= IOSQE_FIXED_FILE;
    return 0;
}

void tpc__registry_fini(struct tpc__io_shard *io)
{
    for (unsigned i = 0; i < io->files.n; i++)
        if (io->files.dups && io->files.slot[i].used)
            close(io->files.slot[i].fd);
    free(io->bufs.slot); /* the ring's exit unregisters both tables */
    free(io->files.slot);
    io->bufs = io->files = (struct tpc__reg_table){.free_head = -1, .free_tail = -1};
}
