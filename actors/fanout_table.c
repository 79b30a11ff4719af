/*  =========================================================================
    fanout_table - (tenant, user) -> item, open addressing, integer hash

    Linear probing over a power-of-two array of slots, kept at most half
    full; an empty slot has a NULL item.
    =========================================================================
*/
#include <assert.h>
#include <stdlib.h>
#include "fanout_table.h"

typedef struct {
    uint64_t tenant;            //  key, first half
    uint64_t user;              //  key, second half
    void *item;                 //  NULL if the slot is empty
} slot_t;

struct _fanout_table_t {
    slot_t *slots;              //  capacity slots
    size_t capacity;            //  a power of two
    size_t size;                //  slots in use
};

//  --------------------------------------------------------------------------
//  An empty table

fanout_table_t *
fanout_table_new (void)
{
    fanout_table_t *self = (fanout_table_t *) calloc (1, sizeof (fanout_table_t));
    assert (self);
    self->capacity = FANOUT_TABLE_MIN;
    self->slots = (slot_t *) calloc (self->capacity, sizeof (slot_t));
    assert (self->slots);
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy the table (not its items)

void
fanout_table_destroy (fanout_table_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        free ((*self_p)->slots);
        free (*self_p);
        *self_p = NULL;
    }
}

//  Home slot of a key: the two ids mixed by multiplies (fmix64's constants)
static size_t
s_home (fanout_table_t *self, uint64_t tenant, uint64_t user)
{
    uint64_t hash = (user ^ (tenant * 0x9e3779b97f4a7c15ULL)) * 0xff51afd7ed558ccdULL;
    hash ^= hash >> 32;
    return (size_t) hash & (self->capacity - 1);
}

//  Index of the key's slot, or of the empty slot where it would go
static size_t
s_find (fanout_table_t *self, uint64_t tenant, uint64_t user)
{
    size_t mask = self->capacity - 1;
    size_t index = s_home (self, tenant, user);
    while (self->slots [index].item
       && (self->slots [index].user != user || self->slots [index].tenant != tenant))
        index = (index + 1) & mask;
    return index;
}

//  Doubles the slots and places every item again
static void
s_grow (fanout_table_t *self)
{
    slot_t *old = self->slots;
    size_t old_capacity = self->capacity;
    self->capacity *= 2;
    self->slots = (slot_t *) calloc (self->capacity, sizeof (slot_t));
    assert (self->slots);
    for (size_t i = 0; i < old_capacity; i++)
        if (old [i].item)
            self->slots [s_find (self, old [i].tenant, old [i].user)] = old [i];
    free (old);
}

//  --------------------------------------------------------------------------
//  The item of (tenant, user), or NULL

void *
fanout_table_lookup (fanout_table_t *self, uint64_t tenant, uint64_t user)
{
    assert (self);
    return self->slots [s_find (self, tenant, user)].item;
}

//  --------------------------------------------------------------------------
//  Add an item for (tenant, user); -1 if the key is there already

int
fanout_table_insert (fanout_table_t *self, uint64_t tenant, uint64_t user, void *item)
{
    assert (self);
    assert (item);
    if ((self->size + 1) * 2 > self->capacity)
        s_grow (self);
    slot_t *slot = &self->slots [s_find (self, tenant, user)];
    if (slot->item)
        return -1;
    slot->tenant = tenant;
    slot->user = user;
    slot->item = item;
    self->size++;
    return 0;
}

//  True if home lies cyclically in (hole, index]: the item at index may not
//  move back into the hole
static bool
s_stays (size_t hole, size_t index, size_t home)
{
    if (hole <= index)
        return hole < home && home <= index;
    return hole < home || home <= index;
}

//  --------------------------------------------------------------------------
//  Remove (tenant, user); returns its item, or NULL

void *
fanout_table_delete (fanout_table_t *self, uint64_t tenant, uint64_t user)
{
    assert (self);
    size_t mask = self->capacity - 1;
    size_t hole = s_find (self, tenant, user);
    void *item = self->slots [hole].item;
    if (!item)
        return NULL;
    //  Shift the rest of the probe run back over the hole
    for (size_t index = (hole + 1) & mask; self->slots [index].item; index = (index + 1) & mask) {
        slot_t *slot = &self->slots [index];
        if (!s_stays (hole, index, s_home (self, slot->tenant, slot->user))) {
            self->slots [hole] = *slot;
            hole = index;
        }
    }
    self->slots [hole].item = NULL;
    self->size--;
    return item;
}

//  --------------------------------------------------------------------------
//  Number of items

size_t
fanout_table_size (fanout_table_t *self)
{
    assert (self);
    return self->size;
}

//  --------------------------------------------------------------------------
//  Calls fn for every item, then empties the table

void
fanout_table_purge (fanout_table_t *self, void (*fn) (void *item, void *arg), void *arg)
{
    assert (self);
    for (size_t i = 0; i < self->capacity; i++)
        if (self->slots [i].item) {
            if (fn)
                fn (self->slots [i].item, arg);
            self->slots [i].item = NULL;
        }
    self->size = 0;
}
