/*  =========================================================================
    membership_model - the membership stage's working copy of its data

    Tenants, users, tokens, channels and memberships as the membership
    stage holds them in memory, loaded from <data_dir>/meta at start (see
    membership_store.h) and changed only after the store has the change.
    Ids are counters (per tenant for users and channels, global for tenants)
    and are never reused, so each kind is a table indexed by its counter.
    A user id carries its tenant: tenant id * 2^32 + the tenant's counter,
    so no user id is valid in two tenants (an id from another workspace is
    user_not_found, never someone else) and ids stay below 2^53.

    Every name in the membership stage's internal headers starts with mb_
    (membership), so the stage's classes cannot clash with other stages'
    symbols in the one library they are linked into. Single thread, no locks.
    =========================================================================
*/
#ifndef CHORUS_MEMBERSHIP_MODEL_H_INCLUDED
#define CHORUS_MEMBERSHIP_MODEL_H_INCLUDED

#include "membership.h"

#define MB_HASH_SIZE        32          //  bytes in a token hash
#define MB_HALF_LIFE_MS     (7.0 * 24 * 3600 * 1000)    //  affinity half-life
#define MB_DM_MEMBERS_MAX   (MEMBERSHIP_DM_OTHERS_MAX + 1)  //  members of a DM, at most
#define MB_ID_MAX           (((uint64_t) 1 << 32) - 1)  //  counter values, at most
#define MB_TENANT_MAX       (((uint64_t) 1 << 21) - 1)  //  tenant ids, at most
#define MB_USER_SHIFT       32          //  user id = tenant << 32 | counter

//  Channel types, in the order of their names on the wire
typedef enum {
    MB_PUBLIC = 0,                      //  anyone in the tenant may see and join
    MB_PRIVATE,                         //  members only, by invitation
    MB_DM,                              //  two people
    MB_GROUP                            //  three to nine people
} mb_ctype_t;

//  A table of pointers indexed by id (1..size)
typedef struct {
    void **items;                       //  items [id - 1], or NULL
    size_t size;                        //  highest id that fits
} mb_table_t;

//  A vector of pointers kept sorted by a 64-bit key
typedef struct {
    void **items;                       //  the pointers, sorted
    size_t size;                        //  pointers in use
    size_t max;                         //  capacity
} mb_vec_t;

typedef struct _mb_user_t mb_user_t;
typedef struct _mb_channel_t mb_channel_t;

//  One user's membership of one channel
typedef struct {
    mb_channel_t *channel;              //  the channel
    mb_user_t *user;                    //  the member
    uint64_t joined_ts;                 //  when they joined, ms since the epoch
    bool muted;                         //  no notifications
    bool notify_always;                 //  notify on every message
    double affinity;                    //  score at affinity_ts
    uint64_t affinity_ts;               //  when the score was last changed, ms
    bool dirty;                         //  affinity not yet saved
} mb_member_t;

//  A user of a tenant
struct _mb_user_t {
    uint64_t id;                        //  user id, per tenant
    char *handle;                       //  unique in the tenant
    char *display_name;                 //  shown to others
    bool bot;                           //  a bot account
    char *pwhash;                       //  crypto_pwhash_str result
    mb_vec_t memberships;               //  mb_member_t *, by channel id
};

//  A channel of a tenant
struct _mb_channel_t {
    uint64_t id;                        //  channel id, per tenant
    char *name;                         //  name; "" for dm and group
    mb_ctype_t type;                    //  public, private, dm, group
    uint64_t created_by;                //  user id of its creator
    uint64_t created_ts;                //  ms since the epoch
    mb_vec_t members;                   //  mb_member_t * (owned), by user id
};

//  A tenant (workspace)
typedef struct {
    uint64_t id;                        //  tenant id
    char *name;                         //  unique workspace name
    uint64_t last_user;                 //  last user counter value issued
    uint64_t last_channel;              //  last channel id issued
    mb_table_t users;                   //  mb_user_t * (owned) by counter
    mb_table_t channels;                //  mb_channel_t * (owned) by id
    zhashx_t *handles;                  //  handle -> mb_user_t *
    zhashx_t *channel_names;            //  name -> public or private mb_channel_t *
    zhashx_t *dms;                      //  DM key ("1,4,9") -> mb_channel_t *
} mb_tenant_t;

//  What a token is worth
typedef struct {
    uint64_t tenant;                    //  its user's tenant
    uint64_t user;                      //  its user
    bool bot;                           //  an API token (else a session token)
} mb_token_t;

//  A membership whose affinity must be saved, by ids (it may be gone)
typedef struct {
    uint64_t tenant;                    //  tenant id
    uint64_t channel;                   //  channel id
    uint64_t user;                      //  user id
} mb_dirty_t;

//  The whole model
typedef struct {
    uint64_t last_tenant;               //  last tenant id issued
    mb_table_t tenants;                 //  mb_tenant_t * (owned) by id
    zhashx_t *tenant_names;             //  name -> mb_tenant_t *
    zhashx_t *tokens;                   //  hex hash -> mb_token_t (owned)
    uint8_t admin_hash [MB_HASH_SIZE];  //  hash of the admin token
    bool has_admin;                     //  admin_hash is set
    zlistx_t *dirty;                    //  mb_dirty_t (owned), affinity to save
} mb_model_t;

//  ---------------------------------------------------------------------
//  The model

//  New empty model
mb_model_t *
    mb_model_new (void);
//  Destroy the model and everything in it; nulls the reference
void
    mb_model_destroy (mb_model_t **self_p);
//  Tenant by id; NULL if none
mb_tenant_t *
    mb_model_tenant (mb_model_t *self, uint64_t id);
//  Tenant by name; NULL if none
mb_tenant_t *
    mb_model_tenant_named (mb_model_t *self, const char *name);
//  Add a tenant (takes it); its id and name must be free
void
    mb_model_tenant_add (mb_model_t *self, mb_tenant_t **tenant_p);
//  Token by hash; NULL if none
mb_token_t *
    mb_model_token (mb_model_t *self, const uint8_t *hash);
//  Add or replace a token
void
    mb_model_token_add (mb_model_t *self, const uint8_t *hash, mb_token_t token);
//  Forget a token
void
    mb_model_token_remove (mb_model_t *self, const uint8_t *hash);
//  Remember that a membership's affinity must be saved
void
    mb_model_dirty_add (mb_model_t *self, mb_tenant_t *tenant, mb_member_t *member);

//  ---------------------------------------------------------------------
//  Tenants

//  New tenant with no users or channels
mb_tenant_t *
    mb_tenant_new (uint64_t id, const char *name);
//  Destroy a tenant and all it holds; nulls the reference
void
    mb_tenant_destroy (mb_tenant_t **self_p);
//  The id of the tenant's user number n (its counter value)
uint64_t
    mb_tenant_user_id (mb_tenant_t *self, uint64_t n);
//  User by id; NULL if none (or if the id is another tenant's)
mb_user_t *
    mb_tenant_user (mb_tenant_t *self, uint64_t id);
//  User by handle; NULL if none
mb_user_t *
    mb_tenant_user_named (mb_tenant_t *self, const char *handle);
//  Add a user (takes it); its id and handle must be free
void
    mb_tenant_user_add (mb_tenant_t *self, mb_user_t **user_p);
//  Channel by id; NULL if none
mb_channel_t *
    mb_tenant_channel (mb_tenant_t *self, uint64_t id);
//  Public or private channel by name; NULL if none
mb_channel_t *
    mb_tenant_channel_named (mb_tenant_t *self, const char *name);
//  Add a channel (takes it, with any members it has); its id must be free
void
    mb_tenant_channel_add (mb_tenant_t *self, mb_channel_t **channel_p);
//  DM or group channel of exactly this key; NULL if none
mb_channel_t *
    mb_tenant_dm (mb_tenant_t *self, const char *key);
//  Index a DM or group channel under its key
void
    mb_tenant_dm_add (mb_tenant_t *self, const char *key, mb_channel_t *channel);
//  Write the DM key of sorted member ids into key ("1,4,9"); key holds
//  MB_DM_KEY_MAX bytes
#define MB_DM_KEY_MAX (MB_DM_MEMBERS_MAX * 21 + 1)
void
    mb_dm_key (const uint64_t *ids, size_t count, char *key);

//  ---------------------------------------------------------------------
//  Users

//  New user; strings are copied
mb_user_t *
    mb_user_new (uint64_t id, const char *handle, const char *display_name,
                 bool bot, const char *pwhash);
//  Destroy a user (not its memberships, which belong to channels)
void
    mb_user_destroy (mb_user_t **self_p);
//  The user's membership of a channel; NULL if not a member
mb_member_t *
    mb_user_member (mb_user_t *self, uint64_t channel);

//  ---------------------------------------------------------------------
//  Channels

//  New channel with no members; name is copied
mb_channel_t *
    mb_channel_new (uint64_t id, const char *name, mb_ctype_t type,
                    uint64_t created_by, uint64_t created_ts);
//  Destroy a channel and its memberships (detaching them from their users)
void
    mb_channel_destroy (mb_channel_t **self_p);
//  Member by user id; NULL if none
mb_member_t *
    mb_channel_member (mb_channel_t *self, uint64_t user);
//  Wire name of a channel type ("public")
const char *
    mb_ctype_name (mb_ctype_t type);
//  Channel type of a wire name; false if unknown
bool
    mb_ctype_parse (const char *name, size_t len, mb_ctype_t *type);

//  ---------------------------------------------------------------------
//  Memberships

//  New membership, not yet attached to its channel and user
mb_member_t *
    mb_member_new (mb_channel_t *channel, mb_user_t *user, uint64_t joined_ts);
//  Attach a membership to its channel and user (takes it); it must be new
void
    mb_member_attach (mb_member_t **self_p);
//  Detach a membership from its channel and user and destroy it
void
    mb_member_remove (mb_member_t **self_p);
//  Destroy a membership that is not attached
void
    mb_member_destroy (mb_member_t **self_p);
//  Current affinity at now_ms, decayed with a half-life of 7 days
double
    mb_member_affinity (mb_member_t *self, uint64_t now_ms);
//  Add weight to the affinity at now_ms
void
    mb_member_affinity_add (mb_member_t *self, double weight, uint64_t now_ms);

#endif
