/*  =========================================================================
    membership_model - the membership stage's working copy of its data

    Tables by id for tenants, users and channels; sorted vectors for the
    members of a channel and the memberships of a user; hash maps for the
    name indexes, the DM index and the tokens. The model never touches the
    store: callers save a change first, then apply it here.
    =========================================================================
*/
#include <math.h>
#include <sodium.h>
#include "membership_model.h"

static const char *s_ctype_names [] = { "public", "private", "dm", "group" };

//  --------------------------------------------------------------------------
//  Tables by id

//  Item at id, or NULL if there is none
static void *
s_table_get (mb_table_t *table, uint64_t id)
{
    if (id == 0 || id > table->size)
        return NULL;
    return table->items [id - 1];
}

//  Puts item at id, growing the table by doubling
static void
s_table_put (mb_table_t *table, uint64_t id, void *item)
{
    assert (id > 0);
    if (id > table->size) {
        size_t size = table->size? table->size: 16;
        while (size < id)
            size *= 2;
        table->items = (void **) realloc (table->items, size * sizeof (void *));
        assert (table->items);
        memset (table->items + table->size, 0, (size - table->size) * sizeof (void *));
        table->size = size;
    }
    table->items [id - 1] = item;
}

//  --------------------------------------------------------------------------
//  Sorted vectors of memberships

typedef uint64_t (s_key_fn) (const mb_member_t *member);

//  A membership's key in its channel's members
static uint64_t
s_key_user (const mb_member_t *member)
{
    return member->user->id;
}

//  A membership's key in its user's memberships
static uint64_t
s_key_channel (const mb_member_t *member)
{
    return member->channel->id;
}

//  Binary search; true if found. *index is where key is or would go.
static bool
s_vec_find (mb_vec_t *vec, uint64_t key, s_key_fn *key_of, size_t *index)
{
    size_t lo = 0, hi = vec->size;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t mid_key = key_of ((const mb_member_t *) vec->items [mid]);
        if (mid_key == key) {
            *index = mid;
            return true;
        }
        if (mid_key < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    *index = lo;
    return false;
}

//  Inserts item at index, growing the vector by doubling
static void
s_vec_insert (mb_vec_t *vec, size_t index, void *item)
{
    if (vec->size == vec->max) {
        vec->max = vec->max? vec->max * 2: 4;
        vec->items = (void **) realloc (vec->items, vec->max * sizeof (void *));
        assert (vec->items);
    }
    memmove (vec->items + index + 1, vec->items + index,
             (vec->size - index) * sizeof (void *));
    vec->items [index] = item;
    vec->size++;
}

//  Removes the item at index
static void
s_vec_remove (mb_vec_t *vec, size_t index)
{
    assert (index < vec->size);
    memmove (vec->items + index, vec->items + index + 1,
             (vec->size - index - 1) * sizeof (void *));
    vec->size--;
}

//  Destructor for items allocated with malloc
static void
s_free_item (void **item)
{
    free (*item);
    *item = NULL;
}

//  --------------------------------------------------------------------------
//  New empty model

mb_model_t *
mb_model_new (void)
{
    mb_model_t *self = (mb_model_t *) zmalloc (sizeof (mb_model_t));
    self->tenant_names = zhashx_new ();
    self->tokens = zhashx_new ();
    zhashx_set_destructor (self->tokens, s_free_item);
    self->dirty = zlistx_new ();
    zlistx_set_destructor (self->dirty, s_free_item);
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy the model and everything in it

void
mb_model_destroy (mb_model_t **self_p)
{
    mb_model_t *self = *self_p;
    if (self) {
        for (size_t i = 0; i < self->tenants.size; i++) {
            mb_tenant_t *tenant = (mb_tenant_t *) self->tenants.items [i];
            mb_tenant_destroy (&tenant);
        }
        free (self->tenants.items);
        zhashx_destroy (&self->tenant_names);
        zhashx_destroy (&self->tokens);
        zlistx_destroy (&self->dirty);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Tenant by id

mb_tenant_t *
mb_model_tenant (mb_model_t *self, uint64_t id)
{
    return (mb_tenant_t *) s_table_get (&self->tenants, id);
}

//  --------------------------------------------------------------------------
//  Tenant by name

mb_tenant_t *
mb_model_tenant_named (mb_model_t *self, const char *name)
{
    return (mb_tenant_t *) zhashx_lookup (self->tenant_names, name);
}

//  --------------------------------------------------------------------------
//  Add a tenant; the model owns it from now on

void
mb_model_tenant_add (mb_model_t *self, mb_tenant_t **tenant_p)
{
    mb_tenant_t *tenant = *tenant_p;
    assert (!mb_model_tenant (self, tenant->id));
    s_table_put (&self->tenants, tenant->id, tenant);
    int rc = zhashx_insert (self->tenant_names, tenant->name, tenant);
    assert (rc == 0);
    (void) rc;
    (void) rc;
    if (tenant->id > self->last_tenant)
        self->last_tenant = tenant->id;
    *tenant_p = NULL;
}

//  Hex form of a token hash, the key of the tokens map
static void
s_token_key (const uint8_t *hash, char *key)
{
    sodium_bin2hex (key, MB_HASH_SIZE * 2 + 1, hash, MB_HASH_SIZE);
}

//  --------------------------------------------------------------------------
//  Token by hash

mb_token_t *
mb_model_token (mb_model_t *self, const uint8_t *hash)
{
    char key [MB_HASH_SIZE * 2 + 1];
    s_token_key (hash, key);
    return (mb_token_t *) zhashx_lookup (self->tokens, key);
}

//  --------------------------------------------------------------------------
//  Add or replace a token

void
mb_model_token_add (mb_model_t *self, const uint8_t *hash, mb_token_t token)
{
    char key [MB_HASH_SIZE * 2 + 1];
    s_token_key (hash, key);
    mb_token_t *copy = (mb_token_t *) zmalloc (sizeof (mb_token_t));
    *copy = token;
    zhashx_update (self->tokens, key, copy);
}

//  --------------------------------------------------------------------------
//  Forget a token

void
mb_model_token_remove (mb_model_t *self, const uint8_t *hash)
{
    char key [MB_HASH_SIZE * 2 + 1];
    s_token_key (hash, key);
    zhashx_delete (self->tokens, key);
}

//  --------------------------------------------------------------------------
//  Remember that a membership's affinity must be saved (once per flush)

void
mb_model_dirty_add (mb_model_t *self, mb_tenant_t *tenant, mb_member_t *member)
{
    if (member->dirty)
        return;
    member->dirty = true;
    mb_dirty_t *dirty = (mb_dirty_t *) zmalloc (sizeof (mb_dirty_t));
    dirty->tenant = tenant->id;
    dirty->channel = member->channel->id;
    dirty->user = member->user->id;
    zlistx_add_end (self->dirty, dirty);
}

//  --------------------------------------------------------------------------
//  New tenant with no users or channels

mb_tenant_t *
mb_tenant_new (uint64_t id, const char *name)
{
    mb_tenant_t *self = (mb_tenant_t *) zmalloc (sizeof (mb_tenant_t));
    self->id = id;
    self->name = strdup (name);
    assert (self->name);
    self->handles = zhashx_new ();
    self->channel_names = zhashx_new ();
    self->dms = zhashx_new ();
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy a tenant: channels (and their memberships) first, then users

void
mb_tenant_destroy (mb_tenant_t **self_p)
{
    mb_tenant_t *self = *self_p;
    if (self) {
        for (size_t i = 0; i < self->channels.size; i++) {
            mb_channel_t *channel = (mb_channel_t *) self->channels.items [i];
            mb_channel_destroy (&channel);
        }
        for (size_t i = 0; i < self->users.size; i++) {
            mb_user_t *user = (mb_user_t *) self->users.items [i];
            mb_user_destroy (&user);
        }
        free (self->channels.items);
        free (self->users.items);
        zhashx_destroy (&self->handles);
        zhashx_destroy (&self->channel_names);
        zhashx_destroy (&self->dms);
        free (self->name);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  The id of the tenant's user number n

uint64_t
mb_tenant_user_id (mb_tenant_t *self, uint64_t n)
{
    assert (n <= MB_ID_MAX && self->id <= MB_TENANT_MAX);
    return (self->id << MB_USER_SHIFT) | n;
}

//  --------------------------------------------------------------------------
//  User by id; the id must be one of this tenant's

mb_user_t *
mb_tenant_user (mb_tenant_t *self, uint64_t id)
{
    if ((id >> MB_USER_SHIFT) != self->id)
        return NULL;
    return (mb_user_t *) s_table_get (&self->users, id & MB_ID_MAX);
}

//  --------------------------------------------------------------------------
//  User by handle

mb_user_t *
mb_tenant_user_named (mb_tenant_t *self, const char *handle)
{
    return (mb_user_t *) zhashx_lookup (self->handles, handle);
}

//  --------------------------------------------------------------------------
//  Add a user; the tenant owns it from now on

void
mb_tenant_user_add (mb_tenant_t *self, mb_user_t **user_p)
{
    mb_user_t *user = *user_p;
    assert ((user->id >> MB_USER_SHIFT) == self->id);
    assert (!mb_tenant_user (self, user->id));
    uint64_t n = user->id & MB_ID_MAX;
    s_table_put (&self->users, n, user);
    int rc = zhashx_insert (self->handles, user->handle, user);
    assert (rc == 0);
    (void) rc;
    if (n > self->last_user)
        self->last_user = n;
    *user_p = NULL;
}

//  --------------------------------------------------------------------------
//  Channel by id

mb_channel_t *
mb_tenant_channel (mb_tenant_t *self, uint64_t id)
{
    return (mb_channel_t *) s_table_get (&self->channels, id);
}

//  --------------------------------------------------------------------------
//  Public or private channel by name

mb_channel_t *
mb_tenant_channel_named (mb_tenant_t *self, const char *name)
{
    return (mb_channel_t *) zhashx_lookup (self->channel_names, name);
}

//  --------------------------------------------------------------------------
//  Add a channel; the tenant owns it from now on. Public and private
//  channels are indexed by name (DMs are indexed with mb_tenant_dm_add).

void
mb_tenant_channel_add (mb_tenant_t *self, mb_channel_t **channel_p)
{
    mb_channel_t *channel = *channel_p;
    assert (!mb_tenant_channel (self, channel->id));
    s_table_put (&self->channels, channel->id, channel);
    if (channel->type == MB_PUBLIC || channel->type == MB_PRIVATE) {
        int rc = zhashx_insert (self->channel_names, channel->name, channel);
        assert (rc == 0);
        (void) rc;
    }
    if (channel->id > self->last_channel)
        self->last_channel = channel->id;
    *channel_p = NULL;
}

//  --------------------------------------------------------------------------
//  DM or group channel of exactly this member set

mb_channel_t *
mb_tenant_dm (mb_tenant_t *self, const char *key)
{
    return (mb_channel_t *) zhashx_lookup (self->dms, key);
}

//  --------------------------------------------------------------------------
//  Index a DM or group channel under its key

void
mb_tenant_dm_add (mb_tenant_t *self, const char *key, mb_channel_t *channel)
{
    zhashx_update (self->dms, key, channel);
}

//  --------------------------------------------------------------------------
//  The DM key of a sorted set of member ids: "1,4,9"

void
mb_dm_key (const uint64_t *ids, size_t count, char *key)
{
    assert (count <= MB_DM_MEMBERS_MAX);
    size_t used = 0;
    key [0] = 0;
    for (size_t i = 0; i < count; i++)
        used += snprintf (key + used, MB_DM_KEY_MAX - used, "%s%" PRIu64,
                          i? ",": "", ids [i]);
}

//  --------------------------------------------------------------------------
//  New user; strings are copied

mb_user_t *
mb_user_new (uint64_t id, const char *handle, const char *display_name,
             bool bot, const char *pwhash)
{
    mb_user_t *self = (mb_user_t *) zmalloc (sizeof (mb_user_t));
    self->id = id;
    self->handle = strdup (handle);
    self->display_name = strdup (display_name);
    self->bot = bot;
    self->pwhash = strdup (pwhash);
    assert (self->handle && self->display_name && self->pwhash);
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy a user; its memberships must be gone already

void
mb_user_destroy (mb_user_t **self_p)
{
    mb_user_t *self = *self_p;
    if (self) {
        assert (self->memberships.size == 0);
        free (self->memberships.items);
        free (self->handle);
        free (self->display_name);
        sodium_memzero (self->pwhash, strlen (self->pwhash));
        free (self->pwhash);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  The user's membership of a channel, or NULL

mb_member_t *
mb_user_member (mb_user_t *self, uint64_t channel)
{
    size_t index;
    if (s_vec_find (&self->memberships, channel, s_key_channel, &index))
        return (mb_member_t *) self->memberships.items [index];
    return NULL;
}

//  --------------------------------------------------------------------------
//  New channel with no members

mb_channel_t *
mb_channel_new (uint64_t id, const char *name, mb_ctype_t type,
                uint64_t created_by, uint64_t created_ts)
{
    mb_channel_t *self = (mb_channel_t *) zmalloc (sizeof (mb_channel_t));
    self->id = id;
    self->name = strdup (name);
    assert (self->name);
    self->type = type;
    self->created_by = created_by;
    self->created_ts = created_ts;
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy a channel and its memberships

void
mb_channel_destroy (mb_channel_t **self_p)
{
    mb_channel_t *self = *self_p;
    if (self) {
        while (self->members.size) {
            mb_member_t *member = (mb_member_t *) self->members.items [self->members.size - 1];
            mb_member_remove (&member);
        }
        free (self->members.items);
        free (self->name);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Member by user id, or NULL

mb_member_t *
mb_channel_member (mb_channel_t *self, uint64_t user)
{
    size_t index;
    if (s_vec_find (&self->members, user, s_key_user, &index))
        return (mb_member_t *) self->members.items [index];
    return NULL;
}

//  --------------------------------------------------------------------------
//  Wire name of a channel type

const char *
mb_ctype_name (mb_ctype_t type)
{
    assert ((size_t) type < sizeof (s_ctype_names) / sizeof (s_ctype_names [0]));
    return s_ctype_names [type];
}

//  --------------------------------------------------------------------------
//  Channel type of a wire name; false if unknown

bool
mb_ctype_parse (const char *name, size_t len, mb_ctype_t *type)
{
    for (size_t i = 0; i < sizeof (s_ctype_names) / sizeof (s_ctype_names [0]); i++)
        if (strlen (s_ctype_names [i]) == len && memcmp (s_ctype_names [i], name, len) == 0) {
            *type = (mb_ctype_t) i;
            return true;
        }
    return false;
}

//  --------------------------------------------------------------------------
//  New membership, not attached yet

mb_member_t *
mb_member_new (mb_channel_t *channel, mb_user_t *user, uint64_t joined_ts)
{
    mb_member_t *self = (mb_member_t *) zmalloc (sizeof (mb_member_t));
    self->channel = channel;
    self->user = user;
    self->joined_ts = joined_ts;
    self->affinity_ts = joined_ts;
    return self;
}

//  --------------------------------------------------------------------------
//  Attach a membership to its channel and its user

void
mb_member_attach (mb_member_t **self_p)
{
    mb_member_t *self = *self_p;
    size_t in_channel, in_user;
    bool found = s_vec_find (&self->channel->members, self->user->id, s_key_user, &in_channel);
    assert (!found);
    found = s_vec_find (&self->user->memberships, self->channel->id, s_key_channel, &in_user);
    assert (!found);
    (void) found;
    s_vec_insert (&self->channel->members, in_channel, self);
    s_vec_insert (&self->user->memberships, in_user, self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Detach a membership from its channel and user, and destroy it

void
mb_member_remove (mb_member_t **self_p)
{
    mb_member_t *self = *self_p;
    if (self) {
        size_t index;
        if (s_vec_find (&self->channel->members, self->user->id, s_key_user, &index))
            s_vec_remove (&self->channel->members, index);
        if (s_vec_find (&self->user->memberships, self->channel->id, s_key_channel, &index))
            s_vec_remove (&self->user->memberships, index);
        mb_member_destroy (self_p);
    }
}

//  --------------------------------------------------------------------------
//  Destroy a membership that is not attached

void
mb_member_destroy (mb_member_t **self_p)
{
    if (*self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Current affinity: score(t0) * 2^(-(now - t0) / 7 days)

double
mb_member_affinity (mb_member_t *self, uint64_t now_ms)
{
    if (now_ms <= self->affinity_ts)
        return self->affinity;
    return self->affinity * exp2 (-(double) (now_ms - self->affinity_ts) / MB_HALF_LIFE_MS);
}

//  --------------------------------------------------------------------------
//  Add weight to the current affinity

void
mb_member_affinity_add (mb_member_t *self, double weight, uint64_t now_ms)
{
    self->affinity = mb_member_affinity (self, now_ms) + weight;
    if (now_ms > self->affinity_ts)
        self->affinity_ts = now_ms;
}
