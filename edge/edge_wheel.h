/*  =========================================================================
    edge_wheel - a hashed timing wheel: one timer for many connections

    Each entry is a link embedded in its owner (edge_conn_t), so adding,
    moving and removing an entry cost O(1) and allocate nothing. Time is
    cut into ticks of tick_ms; an entry due at some time lands in the slot
    of the first tick at or after it, and comes out of edge_wheel_expire
    once that tick has passed. Entries more than a lap ahead wait in their
    slot for the lap they are due in. The class knows nothing of lws, so
    it can be tested alone.

        edge_wheel_t *wheel = edge_wheel_new (1000, now);
        edge_wheel_add (wheel, &conn->timer, now + 30000);
        ...
        edge_wheel_link_t *link;
        while ((link = edge_wheel_expire (wheel, edge_now_ms ())))
            s_handle (edge_wheel_owner (link, edge_conn_t, timer));
        next_call_at = edge_wheel_next_due (wheel);
    =========================================================================
*/
#ifndef CHORUS_EDGE_WHEEL_H_INCLUDED
#define CHORUS_EDGE_WHEEL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Slots in the wheel: one lap is EDGE_WHEEL_SLOTS ticks (a power of 2)
#define EDGE_WHEEL_SLOTS 512

//  The link an owner embeds; zeroed means not scheduled
typedef struct _edge_wheel_link_t {
    struct _edge_wheel_link_t *next;    //  next in its slot (circular), or NULL
    struct _edge_wheel_link_t *prev;    //  previous in its slot, or NULL
    int64_t due;                        //  the tick it is due in
} edge_wheel_link_t;

typedef struct _edge_wheel_t edge_wheel_t;

//  The owner of a link, given the owner's type and the link's field
#define edge_wheel_owner(link, type, field) \
    ((type *) ((char *) (link) - offsetof (type, field)))

//  A new, empty wheel with ticks of tick_ms (1 or more), starting at now_ms
edge_wheel_t *
    edge_wheel_new (int64_t tick_ms, int64_t now_ms);
//  Destroy it; links still in it are left dangling, not freed
void
    edge_wheel_destroy (edge_wheel_t **self_p);

//  Schedule link for at_ms, moving it if it is scheduled already. A time
//  in the past is due at the next tick, never in a pass under way.
void
    edge_wheel_add (edge_wheel_t *self, edge_wheel_link_t *link, int64_t at_ms);
//  Unschedule link; nothing if it is not scheduled
void
    edge_wheel_remove (edge_wheel_t *self, edge_wheel_link_t *link);
//  True if link is scheduled
bool
    edge_wheel_scheduled (const edge_wheel_link_t *link);

//  The next link due at or before now_ms, taken out of the wheel, or NULL
//  when none is. Links come out tick by tick, and the caller may add and
//  remove links between calls.
edge_wheel_link_t *
    edge_wheel_expire (edge_wheel_t *self, int64_t now_ms);
//  Links scheduled
size_t
    edge_wheel_size (edge_wheel_t *self);
//  When the tick a scheduled link is due in starts (ms)
int64_t
    edge_wheel_when (edge_wheel_t *self, const edge_wheel_link_t *link);
//  When the next tick whose slot holds links starts (ms), or -1 if the
//  wheel is empty: the time to call edge_wheel_expire again. Those links
//  may be due laps later, so it can come early, never late. O(slots).
int64_t
    edge_wheel_next_due (edge_wheel_t *self);

#endif
