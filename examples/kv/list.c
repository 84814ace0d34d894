/* Lists (db.h): elements packed end to end in nodes of LIST_NODE bytes, each framed by its
 * length before and after its bytes, so that either end is read and cut without a pointer or an
 * allocation per element. A node fills from the end it was made for: a push at the tail writes
 * after its last element, a push at the head before its first; a full node (or a node whose
 * free space is at the other end) gets a new neighbour. A list's first node starts as small as
 * its element and grows, so that a short list costs little more than its bytes. An element too
 * big for a node gets a node of its own size.
 *
 * The frame: a length under 255 is one byte before and one after (an element of 3 bytes takes
 * 5); a longer one is 0xff and 4 bytes before, the 4 bytes and 0xff after. */
#include <stdlib.h>
#include <string.h>
#include "db.h"

enum { LIST_NODE = 4096 - sizeof(struct lnode) }; /* a node's bytes: one page with its head */

static size_t frame_size(size_t n)
{
    return n < 255 ? n + 2 : n + 10;
}

/* The element that starts at p: its bytes and length; returns its frame's size. */
static size_t read_forward(const unsigned char *p, const char **d, size_t *n)
{
    if (p[0] != 255) {
        *n = p[0];
        *d = (const char *)p + 1;
        return *n + 2;
    }
    uint32_t len;
    memcpy(&len, p + 1, 4);
    *n = len;
    *d = (const char *)p + 5;
    return (size_t)len + 10;
}

/* The element that ends just before `end`: as read_forward. */
static size_t read_backward(const unsigned char *end, const char **d, size_t *n)
{
    if (end[-1] != 255) {
        *n = end[-1];
        *d = (const char *)end - 1 - *n;
        return *n + 2;
    }
    uint32_t len;
    memcpy(&len, end - 5, 4);
    *n = len;
    *d = (const char *)end - 5 - len;
    return (size_t)len + 10;
}

static void write_frame(unsigned char *p, const void *d, size_t n)
{
    if (n < 255) {
        p[0] = (unsigned char)n;
        memcpy(p + 1, d, n);
        p[n + 1] = (unsigned char)n;
        return;
    }
    uint32_t len = (uint32_t)n;
    p[0] = 255;
    memcpy(p + 1, &len, 4);
    memcpy(p + 5, d, n);
    memcpy(p + 5 + n, &len, 4);
    p[n + 9] = 255;
}

/* A list's first node starts the size of what it holds and grows (node_grow) to LIST_NODE, so
 * that a short list costs its bytes, not a page; the nodes after it start whole. */
static struct lnode *node_new(struct list *l, size_t need, bool at_head)
{
    size_t cap = need > LIST_NODE ? need : l->head ? LIST_NODE : (need + 15) & ~(size_t)15;
    struct lnode *x = malloc(sizeof(*x) + cap);
    if (!x)
        abort();
    x->cap = (uint32_t)cap;
    x->start = x->end = at_head ? x->cap : 0;
    x->count = 0;
    if (at_head) {
        x->prev = NULL;
        x->next = l->head;
        if (l->head)
            l->head->prev = x;
        else
            l->tail = x;
        l->head = x;
    } else {
        x->next = NULL;
        x->prev = l->tail;
        if (l->tail)
            l->tail->next = x;
        else
            l->head = x;
        l->tail = x;
    }
    l->bytes += sizeof(*x) + cap;
    return x;
}

/* Gives x room for need more bytes at the end it fills (at_head: before its elements), up to
 * LIST_NODE: its elements move to the other end of the larger node. Returns x where it now is. */
static struct lnode *node_grow(struct list *l, struct lnode *x, size_t need, bool at_head)
{
    uint32_t used = x->end - x->start;
    size_t cap = 2 * (size_t)x->cap;
    if (cap < used + need)
        cap = used + need;
    if (cap > LIST_NODE)
        cap = LIST_NODE;
    if (at_head || x->start) /* (elements to move: first where they stay valid) */
        memmove(x->d, x->d + x->start, used);
    struct lnode *y = realloc(x, sizeof(*y) + cap);
    if (!y)
        abort();
    l->bytes += cap - y->cap;
    y->cap = (uint32_t)cap;
    y->start = at_head ? y->cap - used : 0;
    y->end = y->start + used;
    if (at_head)
        memmove(y->d + y->start, y->d, used);
    if (y->prev)
        y->prev->next = y;
    else
        l->head = y;
    if (y->next)
        y->next->prev = y;
    else
        l->tail = y;
    return y;
}

static void node_drop(struct list *l, struct lnode *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        l->head = x->next;
    if (x->next)
        x->next->prev = x->prev;
    else
        l->tail = x->prev;
    l->bytes -= sizeof(*x) + x->cap;
    free(x);
}

void list_push(struct list *l, const void *d, size_t n, bool at_head)
{
    size_t need = frame_size(n);
    struct lnode *x = at_head ? l->head : l->tail;
    bool room = x && (at_head ? x->start >= need : x->cap - x->end >= need);
    if (x && !room && x->cap < LIST_NODE && x->end - x->start + need <= LIST_NODE)
        x = node_grow(l, x, need, at_head), room = true;
    if (!room)
        x = node_new(l, need, at_head);
    if (at_head) {
        x->start -= (uint32_t)need;
        write_frame(x->d + x->start, d, n);
    } else {
        write_frame(x->d + x->end, d, n);
        x->end += (uint32_t)need;
    }
    x->count++;
    l->n++;
}

bool list_end(const struct list *l, bool at_head, const char **d, size_t *n)
{
    if (!l->n)
        return false;
    if (at_head)
        read_forward(l->head->d + l->head->start, d, n);
    else
        read_backward(l->tail->d + l->tail->end, d, n);
    return true;
}

void list_pop(struct list *l, bool at_head)
{
    if (!l->n)
        return;
    const char *d;
    size_t n;
    struct lnode *x = at_head ? l->head : l->tail;
    if (at_head)
        x->start += (uint32_t)read_forward(x->d + x->start, &d, &n);
    else
        x->end -= (uint32_t)read_backward(x->d + x->end, &d, &n);
    l->n--;
    if (--x->count == 0)
        node_drop(l, x);
}

void list_seek(const struct list *l, size_t i, struct list_it *it)
{
    it->node = NULL;
    if (i >= l->n)
        return;
    struct lnode *x;
    if (i < l->n / 2) {
        for (x = l->head; i >= x->count; x = x->next)
            i -= x->count;
    } else {
        size_t after = l->n - 1 - i; /* elements past the one wanted */
        for (x = l->tail; after >= x->count; x = x->prev)
            after -= x->count;
        i = x->count - 1 - after;
    }
    uint32_t off = x->start;
    const char *d;
    size_t n;
    while (i--)
        off += (uint32_t)read_forward(x->d + off, &d, &n);
    it->node = x;
    it->off = off;
}

bool list_next(struct list_it *it, const char **d, size_t *n)
{
    struct lnode *x = it->node;
    if (!x)
        return false;
    it->off += (uint32_t)read_forward(x->d + it->off, d, n);
    if (it->off == x->end) {
        it->node = x->next;
        it->off = it->node ? it->node->start : 0;
    }
    return true;
}

void list_release(struct list *l)
{
    while (l->head)
        node_drop(l, l->head);
    l->n = 0;
}
