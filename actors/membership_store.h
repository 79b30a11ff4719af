/*  =========================================================================
    membership_store - the records of <data_dir>/meta and loading them

    Keys are a one-letter prefix and big-endian ids; values are msgpack maps
    (binary data as msgpack bin). The full schema is docs/storage-meta.md.
    The put functions only queue records into a batch: callers write the
    batch (one atomic, synced write per change) and apply the change to the
    model only when the write succeeded. mb_store_load reads everything
    into an empty model at start.
    =========================================================================
*/
#ifndef CHORUS_MEMBERSHIP_STORE_H_INCLUDED
#define CHORUS_MEMBERSHIP_STORE_H_INCLUDED

#include "store.h"
#include "membership_model.h"

//  Global column family: a tenant's record {id, name} and its name index
void
    mb_store_put_tenant (store_batch_t *batch, mb_tenant_t *tenant);
//  Global column family: the last tenant id issued
void
    mb_store_put_tenant_counter (store_batch_t *batch, uint64_t last_tenant);
//  Tenant column family: the last user counter and channel id issued
void
    mb_store_put_counters (store_batch_t *batch, uint64_t tenant,
                           uint64_t last_user, uint64_t last_channel);
//  Tenant column family: a user's record and its handle index
void
    mb_store_put_user (store_batch_t *batch, uint64_t tenant, mb_user_t *user);
//  Tenant column family: a channel's record (and name index if it has a name)
void
    mb_store_put_channel (store_batch_t *batch, uint64_t tenant, mb_channel_t *channel);
//  Tenant column family: a membership's record
void
    mb_store_put_member (store_batch_t *batch, uint64_t tenant, mb_member_t *member);
//  Tenant column family: delete a membership's record
void
    mb_store_delete_member (store_batch_t *batch, uint64_t tenant,
                            uint64_t channel, uint64_t user);
//  Tenant column family: the DM index entry of a sorted member set
void
    mb_store_put_dm (store_batch_t *batch, uint64_t tenant, const uint64_t *ids,
                     size_t count, uint64_t channel);
//  Global column family: a token's record, keyed by its hash
void
    mb_store_put_token (store_batch_t *batch, const uint8_t *hash, mb_token_t *token,
                        uint64_t created_ts);
//  Global column family: delete a token's record
void
    mb_store_delete_token (store_batch_t *batch, const uint8_t *hash);
//  Global column family: the admin token's hash
void
    mb_store_put_admin (store_batch_t *batch, const uint8_t *hash, uint64_t created_ts);

//  Load every record into an empty model. Returns 0, or -1 after logging
//  what is wrong (an unreadable or inconsistent record stops the start).
int
    mb_store_load (store_t *store, mb_model_t *model);

#endif
