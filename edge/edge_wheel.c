/*  =========================================================================
    edge_wheel - a hashed timing wheel: one timer for many connections

    Each slot is a circular list with a sentinel, so a link comes out of
    whatever list holds it without knowing which. A tick's slot is moved
    whole to the pending list before its links are handed out: links the
    caller adds meanwhile go to their own slots, never into the pass.
    =========================================================================
*/
#include <assert.h>
#include <stdlib.h>
#include "edge_wheel.h"

struct _edge_wheel_t {
    int64_t tick_ms;                //  length of a tick
    int64_t tick;                   //  the last tick whose slot was taken
    size_t size;                    //  links scheduled
    edge_wheel_link_t pending;      //  sentinel: links of the tick being expired
    edge_wheel_link_t slots [EDGE_WHEEL_SLOTS];     //  sentinels, one per slot
};

//  Makes a sentinel an empty list
static void
s_list_init (edge_wheel_link_t *head)
{
    head->next = head->prev = head;
}

//  Puts link at the end of a list
static void
s_list_append (edge_wheel_link_t *head, edge_wheel_link_t *link)
{
    link->prev = head->prev;
    link->next = head;
    head->prev->next = link;
    head->prev = link;
}

//  Takes link out of its list; it is then unscheduled
static void
s_list_unlink (edge_wheel_link_t *link)
{
    link->prev->next = link->next;
    link->next->prev = link->prev;
    link->next = link->prev = NULL;
}

//  Moves every link of list from to the end of list to
static void
s_list_splice (edge_wheel_link_t *to, edge_wheel_link_t *from)
{
    if (from->next == from)
        return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    s_list_init (from);
}

//  The slot of a tick
static edge_wheel_link_t *
s_slot (edge_wheel_t *self, int64_t tick)
{
    return &self->slots [(uint64_t) tick & (EDGE_WHEEL_SLOTS - 1)];
}

//  --------------------------------------------------------------------------
//  A new, empty wheel

edge_wheel_t *
edge_wheel_new (int64_t tick_ms, int64_t now_ms)
{
    assert (tick_ms > 0);
    edge_wheel_t *self = (edge_wheel_t *) calloc (1, sizeof (edge_wheel_t));
    assert (self);
    self->tick_ms = tick_ms;
    self->tick = now_ms / tick_ms;
    s_list_init (&self->pending);
    for (size_t i = 0; i < EDGE_WHEEL_SLOTS; i++)
        s_list_init (&self->slots [i]);
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy a wheel

void
edge_wheel_destroy (edge_wheel_t **self_p)
{
    assert (self_p);
    free (*self_p);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Schedule (or move) a link

void
edge_wheel_add (edge_wheel_t *self, edge_wheel_link_t *link, int64_t at_ms)
{
    assert (self);
    assert (link);
    if (link->next)
        s_list_unlink (link);
    else
        self->size++;
    int64_t due = at_ms > 0? (at_ms + self->tick_ms - 1) / self->tick_ms: 0;
    if (due <= self->tick)
        due = self->tick + 1;
    link->due = due;
    s_list_append (s_slot (self, due), link);
}

//  --------------------------------------------------------------------------
//  Unschedule a link

void
edge_wheel_remove (edge_wheel_t *self, edge_wheel_link_t *link)
{
    assert (self);
    assert (link);
    if (!link->next)
        return;
    s_list_unlink (link);
    assert (self->size > 0);
    self->size--;
}

//  --------------------------------------------------------------------------
//  True if the link is scheduled

bool
edge_wheel_scheduled (const edge_wheel_link_t *link)
{
    return link->next != NULL;
}

//  --------------------------------------------------------------------------
//  The next link due at or before now_ms, or NULL

edge_wheel_link_t *
edge_wheel_expire (edge_wheel_t *self, int64_t now_ms)
{
    assert (self);
    int64_t now_tick = now_ms / self->tick_ms;
    while (true) {
        edge_wheel_link_t *link = self->pending.next;
        if (link != &self->pending) {
            s_list_unlink (link);
            if (link->due <= self->tick) {
                self->size--;
                return link;
            }
            s_list_append (s_slot (self, link->due), link);     //  a later lap
            continue;
        }
        if (self->tick >= now_tick)
            return NULL;
        self->tick++;
        s_list_splice (&self->pending, s_slot (self, self->tick));
    }
}

//  --------------------------------------------------------------------------
//  Links scheduled

size_t
edge_wheel_size (edge_wheel_t *self)
{
    assert (self);
    return self->size;
}

//  --------------------------------------------------------------------------
//  When the tick a link is due in starts

int64_t
edge_wheel_when (edge_wheel_t *self, const edge_wheel_link_t *link)
{
    assert (self);
    assert (link->next);
    return link->due * self->tick_ms;
}

//  --------------------------------------------------------------------------
//  When the next tick with links in its slot starts, or -1

int64_t
edge_wheel_next_due (edge_wheel_t *self)
{
    assert (self);
    if (!self->size)
        return -1;
    if (self->pending.next != &self->pending)
        return self->tick * self->tick_ms;      //  a pass was left half done
    for (int64_t tick = self->tick + 1; tick <= self->tick + EDGE_WHEEL_SLOTS; tick++) {
        edge_wheel_link_t *slot = s_slot (self, tick);
        if (slot->next != slot)
            return tick * self->tick_ms;
    }
    assert (false);                             //  size counts what is in slots
    return -1;
}
