/*  =========================================================================
    fanout_table - (tenant, user) -> item, open addressing, integer hash

    Fan-out looks up every recipient of every event; this table finds a
    user from its two 64-bit ids with one multiply-and-shift hash and a
    linear probe, without building a string key. Deletion shifts the probe
    run back, so there are no tombstones. Items are not owned: the caller
    frees them.

        fanout_table_t *table = fanout_table_new ();
        fanout_table_insert (table, tenant, user, item);
        void *found = fanout_table_lookup (table, tenant, user);
        fanout_table_delete (table, tenant, user);
        fanout_table_destroy (&table);
    =========================================================================
*/
#ifndef CHORUS_FANOUT_TABLE_H_INCLUDED
#define CHORUS_FANOUT_TABLE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FANOUT_TABLE_MIN  64        //  slots in a new table (a power of two)

typedef struct _fanout_table_t fanout_table_t;

//  An empty table
fanout_table_t *
    fanout_table_new (void);
//  Destroy the table (not its items); nulls the reference
void
    fanout_table_destroy (fanout_table_t **self_p);
//  The item of (tenant, user), or NULL
void *
    fanout_table_lookup (fanout_table_t *self, uint64_t tenant, uint64_t user);
//  Add an item (not NULL) for (tenant, user). Returns 0, or -1 if the key
//  is there already (the table is unchanged).
int
    fanout_table_insert (fanout_table_t *self, uint64_t tenant, uint64_t user, void *item);
//  Remove (tenant, user); returns its item, or NULL if it was not there
void *
    fanout_table_delete (fanout_table_t *self, uint64_t tenant, uint64_t user);
//  Number of items
size_t
    fanout_table_size (fanout_table_t *self);
//  Calls fn (item, arg) for every item, then empties the table (keeps its slots)
void
    fanout_table_purge (fanout_table_t *self, void (*fn) (void *item, void *arg), void *arg);

#endif
