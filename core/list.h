/* Intrusive containers: a circular doubly linked list (for waiters, which must unlink from the
 * middle when cancelled) and a singly linked FIFO (the run queue). No allocation. */
#ifndef TPC_CORE_LIST_H
#define TPC_CORE_LIST_H

#include <stdbool.h>
#include <stddef.h>
#include "tpc/sync.h" /* tpc_list */

#define tpc__container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void tpc__list_init(tpc_list *l)
{
    l->next = l->prev = l;
}

static inline bool tpc__list_empty(const tpc_list *l)
{
    return l->next == l;
}

static inline void tpc__list_push(tpc_list *l, tpc_list *n)
{
    n->prev = l->prev;
    n->next = l;
    l->prev->next = n;
    l->prev = n;
}

static inline void tpc__list_remove(tpc_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = n;
}

static inline tpc_list *tpc__list_first(const tpc_list *l)
{
    return l->next == l ? NULL : l->next;
}

struct tpc__qnode {
    struct tpc__qnode *next;
};

struct tpc__queue {
    struct tpc__qnode *head, **tail;
};

static inline void tpc__queue_init(struct tpc__queue *q)
{
    q->head = NULL;
    q->tail = &q->head;
}

static inline void tpc__queue_push(struct tpc__queue *q, struct tpc__qnode *n)
{
    n->next = NULL;
    *q->tail = n;
    q->tail = &n->next;
}

static inline struct tpc__qnode *tpc__queue_pop(struct tpc__queue *q)
{
    struct tpc__qnode *n = q->head;
    if (n) {
        q->head = n->next;
        if (!q->head)
            q->tail = &q->head;
    }
    return n;
}

#endif
