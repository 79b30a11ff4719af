/*  =========================================================================
    store - thin, safe wrapper over the RocksDB C API

    One store_t is one RocksDB database in one directory, used by exactly one
    thread (one actor). Each tenant's data lives in its own column family
    ("t/<decimal tenant id>"); tenant id 0 (STORE_GLOBAL) selects the "global"
    column family. The module keeps no global state: several stores may be
    open at once in different directories.

    Error convention: functions that can fail return 0 (or a count / 1) on
    success and -1 on error. When `err` is not NULL, an error stores a new
    malloc'd message in *err, which the caller frees with free(); *err is left
    untouched on success. Passing err = NULL discards the message.

    Only this module includes <rocksdb/c.h>.
    =========================================================================
*/

#ifndef CHORUS_STORE_H_INCLUDED
#define CHORUS_STORE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _store_t store_t;
typedef struct _store_batch_t store_batch_t;
typedef struct _store_iter_t store_iter_t;

#define STORE_GLOBAL 0   //  "tenant" id 0 selects the global column family

//  --------------------------------------------------------------------------
//  Open (creating if missing) the database in directory `path` (mkdir -p).
//  Opens every existing column family: "default" (unused), "global", and
//  "t/<decimal tenant id>" per tenant; unknown CFs are opened and ignored.
//  WAL recovery mode is kTolerateCorruptedTailRecords: a torn last record is
//  dropped, any other WAL corruption makes the open fail. Refuses to create a
//  new database in a directory holding RocksDB files but no CURRENT file.
//  On error returns NULL and sets *err to a malloc'd message naming the
//  directory and RocksDB's status; for WAL corruption, whose status does not
//  name the file, the matching line of RocksDB's LOG (which does) is appended.
store_t *
    store_new (const char *path, char **err);

//  --------------------------------------------------------------------------
//  Sync the WAL and close the database; idempotent; nulls *self_p. All
//  iterators of the store must have been destroyed before (asserted).
void
    store_destroy (store_t **self_p);

//  --------------------------------------------------------------------------
//  Create the tenant's column family if it does not exist (idempotent; tenant
//  0 always exists). Returns 0, or -1 and *err. A failure to create the CF
//  (a metadata write) puts the store in the failed state, like store_write.
int
    store_tenant_ensure (store_t *self, uint64_t tenant, char **err);

//  --------------------------------------------------------------------------
//  True if the tenant's column family exists (always true for tenant 0).
bool
    store_tenant_exists (store_t *self, uint64_t tenant);

//  --------------------------------------------------------------------------
//  Number of tenants whose memtables got a whole-key filter since open: a
//  tenant gets one once it has written 1 MiB since open, up to 64 tenants.
size_t
    store_filtered_tenants (store_t *self);

//  --------------------------------------------------------------------------
//  Returns the number of tenant column families (the global CF is not
//  counted) and fills ids[0..max) with the smallest tenant ids in ascending
//  order. ids may be NULL when max is 0 (just count).
size_t
    store_tenant_list (store_t *self, uint64_t *ids, size_t max);

//  --------------------------------------------------------------------------
//  Create an empty write batch. A batch is independent of any store; it
//  records tenant ids, which are resolved to column families by store_write.
store_batch_t *
    store_batch_new (void);

//  --------------------------------------------------------------------------
//  Destroy a batch; idempotent; nulls *self_p.
void
    store_batch_destroy (store_batch_t **self_p);

//  --------------------------------------------------------------------------
//  Queue a put of key/value into the CF of `tenant` (0 = global). Key and
//  value are copied. The CF need not exist yet; store_write checks it.
void
    store_batch_put (store_batch_t *self, uint64_t tenant,
                     const void *key, size_t key_len,
                     const void *value, size_t value_len);

//  --------------------------------------------------------------------------
//  Queue a delete of key in the CF of `tenant` (0 = global). Key is copied.
void
    store_batch_delete (store_batch_t *self, uint64_t tenant,
                        const void *key, size_t key_len);

//  --------------------------------------------------------------------------
//  Number of operations queued in the batch.
size_t
    store_batch_count (store_batch_t *self);

//  --------------------------------------------------------------------------
//  Remove all queued operations (keeps the allocated memory for reuse).
void
    store_batch_clear (store_batch_t *self);

//  --------------------------------------------------------------------------
//  Apply the batch atomically across column families (one WAL record). The
//  batch is not modified (clear or destroy it yourself). sync = true returns
//  only once the WAL is fsync'ed. Returns 0, or -1 and *err:
//  - if an operation targets a tenant whose CF does not exist, nothing is
//    written and the store is NOT marked failed (caller error);
//  - if RocksDB fails the write, the store enters the failed state for good:
//    store_failed() returns true and every later store_write (and
//    store_tenant_ensure) returns -1 at once without touching RocksDB. Never
//    retry a failed fsync and report success ("fsyncgate"); close the store,
//    reopen it (WAL recovery decides what survived) or stop the process.
int
    store_write (store_t *self, store_batch_t *batch, bool sync, char **err);

//  --------------------------------------------------------------------------
//  store_write in three steps, so the write can run in another thread while
//  the caller goes on: store_commit_new prepares it in the store's thread
//  (NULL and *err as store_write: the store has failed, or a tenant has no
//  CF; the batch may be cleared once it returns); store_commit_apply writes
//  it, in any one thread at a time, touching nothing of the store but
//  RocksDB; store_commit_finish, back in the store's thread, returns what
//  store_write would (0, or -1 and *err, the store then failed for good)
//  and destroys the commit. Reads from other threads see the batch only
//  once it is written (and synced, with sync).
typedef struct _store_commit_t store_commit_t;

store_commit_t *
    store_commit_new (store_t *self, store_batch_t *batch, bool sync, char **err);
void
    store_commit_apply (store_commit_t *self);
int
    store_commit_finish (store_commit_t **self_p, char **err);

//  --------------------------------------------------------------------------
//  True once a write failed; the state is cleared only by reopening.
bool
    store_failed (store_t *self);

//  --------------------------------------------------------------------------
//  Point read. Returns 1 if found (*value is malloc'd, NUL-terminated for
//  convenience, *value_len excludes the NUL; free it with free()), 0 if not
//  found (*value = NULL, *value_len = 0), -1 on error with *err. Reading from
//  a tenant whose CF does not exist is an error (-1), not "not found".
int
    store_get (store_t *self, uint64_t tenant, const void *key, size_t key_len,
               char **value, size_t *value_len, char **err);

//  --------------------------------------------------------------------------
//  Iterator over the keys in [lower, upper) of one tenant's CF; the bounds
//  are copied and either may be NULL (unbounded). Implemented with the
//  iterate_lower_bound / iterate_upper_bound read options, so a scan costs
//  O(result). Reads a consistent snapshot taken at creation. The iterator is
//  not positioned: call a seek/first/last function before use. Returns NULL
//  if the tenant's CF does not exist. Destroy it before the store.
store_iter_t *
    store_iter_new (store_t *self, uint64_t tenant,
                    const void *lower, size_t lower_len,
                    const void *upper, size_t upper_len);

//  --------------------------------------------------------------------------
//  Destroy an iterator; idempotent; nulls *self_p.
void
    store_iter_destroy (store_iter_t **self_p);

//  --------------------------------------------------------------------------
//  Position at the first key >= key (clamped to the bounds).
void
    store_iter_seek (store_iter_t *self, const void *key, size_t key_len);

//  --------------------------------------------------------------------------
//  Position at the last key <= key (clamped to the bounds).
void
    store_iter_seek_for_prev (store_iter_t *self, const void *key, size_t key_len);

//  --------------------------------------------------------------------------
//  Position at the first key within the bounds.
void
    store_iter_first (store_iter_t *self);

//  --------------------------------------------------------------------------
//  Position at the last key within the bounds.
void
    store_iter_last (store_iter_t *self);

//  --------------------------------------------------------------------------
//  True if the iterator is positioned on a key within the bounds.
bool
    store_iter_valid (store_iter_t *self);

//  --------------------------------------------------------------------------
//  Move to the next key; the iterator must be valid.
void
    store_iter_next (store_iter_t *self);

//  --------------------------------------------------------------------------
//  Move to the previous key; the iterator must be valid.
void
    store_iter_prev (store_iter_t *self);

//  --------------------------------------------------------------------------
//  Current key, valid until the iterator moves; NULL (*len = 0) if invalid.
const void *
    store_iter_key (store_iter_t *self, size_t *len);

//  --------------------------------------------------------------------------
//  Current value, valid until the iterator moves; NULL (*len = 0) if invalid.
const void *
    store_iter_value (store_iter_t *self, size_t *len);

//  --------------------------------------------------------------------------
//  -1 (and *err) if the iterator hit an error, else 0. Check it after a scan
//  ends: an invalid iterator means "end of range" only if the status is 0.
int
    store_iter_status (store_iter_t *self, char **err);

//  --------------------------------------------------------------------------
//  Write value as 8 big-endian bytes at dest, so that keys built from it
//  compare bytewise in numeric order.
void
    store_u64_put (uint8_t *dest, uint64_t value);

//  --------------------------------------------------------------------------
//  Read 8 big-endian bytes at src.
uint64_t
    store_u64_get (const uint8_t *src);

#ifdef CHORUS_TESTING
//  --------------------------------------------------------------------------
//  Test hook (compiled only with -DCHORUS_TESTING): the next store_write that
//  passes validation fails as if RocksDB returned an I/O error, without
//  calling RocksDB, and puts the store in the failed state.
void
    store_test_fail_next_write (store_t *self);
#endif

#ifdef __cplusplus
}
#endif

#endif
