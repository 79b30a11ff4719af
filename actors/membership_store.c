/*  =========================================================================
    membership_store - the records of <data_dir>/meta and loading them

    Global column family (tenant 0):
        'a'                 -> {hash: bin32, ts}         admin token hash
        'n'                 -> {tenant}                  last tenant id
        't' tenant          -> {id, name}                tenant
        'T' name            -> {id}                      tenant name index
        'k' hash32          -> {tn, uid, kind, ts}       token (usr or bot)
    Tenant column family ("t/<id>"):
        'n'                 -> {user, channel}           last counters issued
        'u' user            -> {id, handle, display_name, bot, pw}
        'U' handle          -> {id}                      handle index
        'c' channel         -> {id, name, type, by, ts}
        'C' name            -> {id}                      channel name index
        'm' channel user    -> {joined, muted, notify_always, aff, aff_ts}
        'd' user...         -> {id}                      DM index, sorted ids
    At load, the records are the truth; the name indexes are rebuilt from
    them and the DM index is read as it is.
    =========================================================================
*/
#include "membership_store.h"
#include "chorus/proto.h"

#define KEY_MAX         (1 + 8 * MB_DM_MEMBERS_MAX + 256)   //  longest key
#define LOAD_STR_MAX    1024                //  longest string read back

//  What a tenant's loaders need
typedef struct {
    store_t *store;             //  the database
    mb_model_t *model;          //  the model being filled
    mb_tenant_t *tenant;        //  tenant being loaded, or NULL
} s_load_t;

//  A loader for one record; returns 0 or -1 (after logging)
typedef int (s_loader_fn) (s_load_t *load, const uint8_t *key, size_t key_len,
                           proto_msg_t *value);

//  --------------------------------------------------------------------------
//  Keys

//  Key: prefix and a big-endian id; returns its length
static size_t
s_key_id (uint8_t *key, char prefix, uint64_t id)
{
    key [0] = (uint8_t) prefix;
    store_u64_put (key + 1, id);
    return 9;
}

//  Key: prefix and a name's bytes; returns its length
static size_t
s_key_name (uint8_t *key, char prefix, const char *name)
{
    size_t len = strlen (name);
    assert (len < KEY_MAX - 1);
    key [0] = (uint8_t) prefix;
    memcpy (key + 1, name, len);
    return 1 + len;
}

//  Key: 'm', channel id, user id; returns its length
static size_t
s_key_member (uint8_t *key, uint64_t channel, uint64_t user)
{
    key [0] = 'm';
    store_u64_put (key + 1, channel);
    store_u64_put (key + 9, user);
    return 17;
}

//  Queues key -> the map in writer, then destroys the writer
static void
s_put (store_batch_t *batch, uint64_t tenant, const uint8_t *key, size_t key_len,
       proto_writer_t **writer_p)
{
    proto_writer_t *writer = *writer_p;
    store_batch_put (batch, tenant, key, key_len,
                     proto_writer_data (writer), proto_writer_size (writer));
    proto_writer_destroy (writer_p);
}

//  Queues name index key -> {id}
static void
s_put_index (store_batch_t *batch, uint64_t tenant, char prefix, const char *name,
             uint64_t id)
{
    uint8_t key [KEY_MAX];
    size_t key_len = s_key_name (key, prefix, name);
    proto_writer_t *writer = proto_writer_new ();
    proto_writer_map_begin (writer);
    proto_writer_kv_u64 (writer, "id", id);
    proto_writer_map_end (writer);
    s_put (batch, tenant, key, key_len, &writer);
}

//  --------------------------------------------------------------------------
//  A tenant's record and its name index

void
mb_store_put_tenant (store_batch_t *batch, mb_tenant_t *tenant)
{
    uint8_t key [9];
    s_key_id (key, 't', tenant->id);
    proto_writer_t *writer = proto_writer_new ();
    proto_writer_map_begin (writer);
    proto_writer_kv_u64 (writer, "id", tenant->id);
    proto_writer_kv_str (writer, "name", tenant->name);
    proto_writer_map_end (writer);
    s_put (batch, STORE_GLOBAL, key, 9, &writer);
    s_put_index (batch, STORE_GLOBAL, 'T', tenant->name, tenant->id);
}

//  --------------------------------------------------------------------------
//  The last tenant id issued

void
mb_store_put_tenant_counter (store_batch_t *batch, uint64_t last_tenant)
{
    proto_writer_t *writer = proto_writer_new ();
    proto_writer_map_begin (writer);
    proto_writer_kv_u64 (writer, "tenant", last_tenant);
    proto_writer_map_end (writer);
    s_put (batch, STORE_GLOBAL, (const uint8_t *) "n", 1, &writer);
}

//  --------------------------------------------------------------------------
//  The last user and channel ids issued in a tenant

void
mb_store_put_counters (store_batch_t *batch, uint64_t tenant,
                       uint64_t last_user, uint64_t last_channel)
{
    proto_writer_t *writer = proto_writer_new ();
    proto_writer_map_begin (writer);
    proto_writer_kv_u64 (writer, "user", last_user);
    proto_writer_kv_u64 (writer, "channel", last_channel);
    proto_writer_map_end (writer);
    s_put (batch, tenant, (const uint8_t *) "n", 1, &writer);
}

//  --------------------------------------------------------------------------
//  A user's record and its handle index

void
mb_store_put_user (store_batch_t *batch, uint64_t tenant, mb_user_t *user)
{
    uint8_t key [9];
    s_key_id (key, 'u', user->id);
    proto_writer_t *writer = proto_writer_new ();
    proto_writer_map_begin (writer);
    proto_writer_kv_u64 (writer, "id", user->id);
    proto_writer_kv_str (writer, "handle", user->handle);
    proto_writer_kv_str (writer, "display_name", user->display_name);
    proto_writer_kv_bool (writer, "bot", user->bot);
    proto_writer_kv_str (writer, "pw", user->pwhash);
    proto_writer_map_end (writer);
    s_put (batch, tenant, key, 9, &writer);
    s_put_index (batch, tenant, 'U', user->handle, user->id);
}

//  --------------------------------------------------------------------------
//  A channel's record, and its name index for public and private channels

void
mb_store_put_channel (store_batch_t *batch, uint64_t tenant, mb_channel_t *channel)
{
    uint8_t key [9];
    s_key_id (key, 'c', channel->id);
    proto_writer_t *writer = proto_writer_new ();
    proto_writer_map_begin (writer);
    proto_writer_kv_u64 (writer, "id", channel->id);
    proto_writer_kv_str (writer, "name", channel->name);
    proto_writer_kv_str (writer, "type", mb_ctype_name (channel->type));
    proto_writer_kv_u64 (writer, "by", channel->created_by);
    proto_writer_kv_u64 (writer, "ts", channel->created_ts);
    proto_writer_map_end (writer);
    s_put (batch, tenant, key, 9, &writer);
    if (channel->type == MB_PUBLIC || channel->type == MB_PRIVATE)
        s_put_index (batch, tenant, 'C', channel->name, channel->id);
}

//  --------------------------------------------------------------------------
//  A membership's record: settings and affinity

void
mb_store_put_member (store_batch_t *batch, uint64_t tenant, mb_member_t *member)
{
    uint8_t key [17];
    s_key_member (key, member->channel->id, member->user->id);
    proto_writer_t *writer = proto_writer_new ();
    proto_writer_map_begin (writer);
    proto_writer_kv_u64 (writer, "joined", member->joined_ts);
    proto_writer_kv_bool (writer, "muted", member->muted);
    proto_writer_kv_bool (writer, "notify_always", member->notify_always);
    proto_writer_str (writer, "aff");
    proto_writer_double (writer, member->affinity);
    proto_writer_kv_u64 (writer, "aff_ts", member->affinity_ts);
    proto_writer_map_end (writer);
    s_put (batch, tenant, key, 17, &writer);
}

//  --------------------------------------------------------------------------
//  Delete a membership's record

void
mb_store_delete_member (store_batch_t *batch, uint64_t tenant,
                        uint64_t channel, uint64_t user)
{
    uint8_t key [17];
    s_key_member (key, channel, user);
    store_batch_delete (batch, tenant, key, 17);
}

//  --------------------------------------------------------------------------
//  The DM index entry: 'd' and every member id, sorted -> {id}

void
mb_store_put_dm (store_batch_t *batch, uint64_t tenant, const uint64_t *ids,
                 size_t count, uint64_t channel)
{
    assert (count <= MB_DM_MEMBERS_MAX);
    uint8_t key [1 + 8 * MB_DM_MEMBERS_MAX];
    key [0] = 'd';
    for (size_t i = 0; i < count; i++)
        store_u64_put (key + 1 + 8 * i, ids [i]);
    proto_writer_t *writer = proto_writer_new ();
    proto_writer_map_begin (writer);
    proto_writer_kv_u64 (writer, "id", channel);
    proto_writer_map_end (writer);
    s_put (batch, tenant, key, 1 + 8 * count, &writer);
}

//  --------------------------------------------------------------------------
//  A token's record under its hash

void
mb_store_put_token (store_batch_t *batch, const uint8_t *hash, mb_token_t *token,
                    uint64_t created_ts)
{
    uint8_t key [1 + MB_HASH_SIZE];
    key [0] = 'k';
    memcpy (key + 1, hash, MB_HASH_SIZE);
    proto_writer_t *writer = proto_writer_new ();
    proto_writer_map_begin (writer);
    proto_writer_kv_u64 (writer, "tn", token->tenant);
    proto_writer_kv_u64 (writer, "uid", token->user);
    proto_writer_kv_str (writer, "kind", token->bot? "bot": "usr");
    proto_writer_kv_u64 (writer, "ts", created_ts);
    proto_writer_map_end (writer);
    s_put (batch, STORE_GLOBAL, key, sizeof (key), &writer);
}

//  --------------------------------------------------------------------------
//  Delete a token's record

void
mb_store_delete_token (store_batch_t *batch, const uint8_t *hash)
{
    uint8_t key [1 + MB_HASH_SIZE];
    key [0] = 'k';
    memcpy (key + 1, hash, MB_HASH_SIZE);
    store_batch_delete (batch, STORE_GLOBAL, key, sizeof (key));
}

//  --------------------------------------------------------------------------
//  The admin token's hash

void
mb_store_put_admin (store_batch_t *batch, const uint8_t *hash, uint64_t created_ts)
{
    proto_writer_t *writer = proto_writer_new ();
    proto_writer_map_begin (writer);
    proto_writer_str (writer, "hash");
    proto_writer_bin (writer, hash, MB_HASH_SIZE);
    proto_writer_kv_u64 (writer, "ts", created_ts);
    proto_writer_map_end (writer);
    s_put (batch, STORE_GLOBAL, (const uint8_t *) "a", 1, &writer);
}

//  --------------------------------------------------------------------------
//  Loading

//  A string field as a new NUL-terminated copy; NULL if absent or too long
static char *
s_field_str (proto_msg_t *value, const char *name)
{
    const char *str;
    size_t len;
    if (!proto_msg_str (value, name, &str, &len) || len > LOAD_STR_MAX
    ||  memchr (str, 0, len))
        return NULL;
    return strndup (str, len);
}

//  An id field that must equal the id in the key
static bool
s_field_id (proto_msg_t *value, const uint8_t *key_id, uint64_t *id)
{
    return proto_msg_u64 (value, "id", id) && *id == store_u64_get (key_id)
        && *id > 0 && *id <= MB_ID_MAX;
}

//  Logs a record that cannot be loaded; returns -1
static int
s_corrupt (s_load_t *load, const char *what)
{
    zsys_error ("membership: corrupt %s record in tenant %" PRIu64 "; not starting",
                what, load->tenant? load->tenant->id: 0);
    return -1;
}

//  Calls loader for every record whose key starts with prefix
static int
s_scan (s_load_t *load, uint64_t tenant, char prefix, s_loader_fn *loader)
{
    uint8_t lower [1] = { (uint8_t) prefix };
    uint8_t upper [1] = { (uint8_t) (prefix + 1) };
    store_iter_t *iter = store_iter_new (load->store, tenant, lower, 1, upper, 1);
    if (!iter)
        return s_corrupt (load, "column family");
    int rc = 0;
    for (store_iter_first (iter); rc == 0 && store_iter_valid (iter); store_iter_next (iter)) {
        size_t key_len, value_len;
        const uint8_t *key = (const uint8_t *) store_iter_key (iter, &key_len);
        const void *data = store_iter_value (iter, &value_len);
        proto_msg_t *value = proto_msg_decode_stage (data, value_len, NULL);
        rc = value? loader (load, key, key_len, value): s_corrupt (load, "undecodable");
        proto_msg_destroy (&value);
    }
    char *err = NULL;
    if (rc == 0 && store_iter_status (iter, &err)) {
        zsys_error ("membership: cannot read the store: %s", err);
        free (err);
        rc = -1;
    }
    store_iter_destroy (&iter);
    return rc;
}

//  Reads one point record; 1 found, 0 absent, -1 error. The decoded value
//  points into *data: free it after destroying the value.
static int
s_get (store_t *store, uint64_t tenant, const char *key, proto_msg_t **value,
       char **data)
{
    char *err = NULL;
    size_t len = 0;
    *data = NULL;
    *value = NULL;
    int rc = store_get (store, tenant, key, strlen (key), data, &len, &err);
    if (rc == 1) {
        *value = proto_msg_decode_stage (*data, len, NULL);
        rc = *value? 1: -1;
    }
    if (rc < 0)
        zsys_error ("membership: cannot read record '%s': %s", key, err? err: "undecodable");
    free (err);
    return rc;
}

//  A user id field that must equal the key's and be one of the tenant's
static bool
s_field_user_id (s_load_t *load, proto_msg_t *value, const uint8_t *key_id, uint64_t *id)
{
    return proto_msg_u64 (value, "id", id) && *id == store_u64_get (key_id)
        && (*id >> MB_USER_SHIFT) == load->tenant->id
        && (*id & MB_ID_MAX) > 0;
}

//  Loads a 'u' record
static int
s_load_user (s_load_t *load, const uint8_t *key, size_t key_len, proto_msg_t *value)
{
    uint64_t id;
    bool bot = false;
    char *handle = s_field_str (value, "handle");
    char *display = s_field_str (value, "display_name");
    char *pwhash = s_field_str (value, "pw");
    int rc = 0;
    if (key_len != 9 || !s_field_user_id (load, value, key + 1, &id) || !handle || !display
    ||  !pwhash || !proto_msg_bool (value, "bot", &bot)
    ||  mb_tenant_user (load->tenant, id) || mb_tenant_user_named (load->tenant, handle))
        rc = s_corrupt (load, "user");
    else {
        mb_user_t *user = mb_user_new (id, handle, display, bot, pwhash);
        mb_tenant_user_add (load->tenant, &user);
    }
    free (handle);
    free (display);
    free (pwhash);
    return rc;
}

//  Loads a 'c' record
static int
s_load_channel (s_load_t *load, const uint8_t *key, size_t key_len, proto_msg_t *value)
{
    uint64_t id, by = 0, ts = 0;
    const char *type_name;
    size_t type_len;
    mb_ctype_t type;
    char *name = s_field_str (value, "name");
    int rc = 0;
    if (key_len != 9 || !s_field_id (value, key + 1, &id) || !name
    ||  !proto_msg_str (value, "type", &type_name, &type_len)
    ||  !mb_ctype_parse (type_name, type_len, &type)
    ||  !proto_msg_u64 (value, "by", &by) || !proto_msg_u64 (value, "ts", &ts)
    ||  mb_tenant_channel (load->tenant, id)
    ||  ((type == MB_PUBLIC || type == MB_PRIVATE)
         && (!*name || mb_tenant_channel_named (load->tenant, name))))
        rc = s_corrupt (load, "channel");
    else {
        mb_channel_t *channel = mb_channel_new (id, name, type, by, ts);
        mb_tenant_channel_add (load->tenant, &channel);
    }
    free (name);
    return rc;
}

//  The affinity score as stored: a float64 (or float32)
static bool
s_field_double (proto_msg_t *value, const char *name, double *out)
{
    const msgpack_object *obj = proto_msg_get (value, name);
    if (!obj || (obj->type != MSGPACK_OBJECT_FLOAT64 && obj->type != MSGPACK_OBJECT_FLOAT32))
        return false;
    *out = obj->via.f64;
    return true;
}

//  Loads an 'm' record; its channel and user are loaded already
static int
s_load_member (s_load_t *load, const uint8_t *key, size_t key_len, proto_msg_t *value)
{
    if (key_len != 17)
        return s_corrupt (load, "membership");
    mb_channel_t *channel = mb_tenant_channel (load->tenant, store_u64_get (key + 1));
    mb_user_t *user = mb_tenant_user (load->tenant, store_u64_get (key + 9));
    uint64_t joined = 0;
    if (!channel || !user || mb_channel_member (channel, user->id)
    ||  !proto_msg_u64 (value, "joined", &joined))
        return s_corrupt (load, "membership");
    mb_member_t *member = mb_member_new (channel, user, joined);
    proto_msg_bool (value, "muted", &member->muted);
    proto_msg_bool (value, "notify_always", &member->notify_always);
    s_field_double (value, "aff", &member->affinity);
    proto_msg_u64 (value, "aff_ts", &member->affinity_ts);
    mb_member_attach (&member);
    return 0;
}

//  Loads a 'd' record into the DM index
static int
s_load_dm (s_load_t *load, const uint8_t *key, size_t key_len, proto_msg_t *value)
{
    size_t count = (key_len - 1) / 8;
    uint64_t ids [MB_DM_MEMBERS_MAX];
    uint64_t id = 0;
    if ((key_len - 1) % 8 || count < 2 || count > MB_DM_MEMBERS_MAX
    ||  !proto_msg_u64 (value, "id", &id))
        return s_corrupt (load, "DM index");
    mb_channel_t *channel = mb_tenant_channel (load->tenant, id);
    if (!channel || (channel->type != MB_DM && channel->type != MB_GROUP))
        return s_corrupt (load, "DM index");
    for (size_t i = 0; i < count; i++)
        ids [i] = store_u64_get (key + 1 + 8 * i);
    char dm_key [MB_DM_KEY_MAX];
    mb_dm_key (ids, count, dm_key);
    mb_tenant_dm_add (load->tenant, dm_key, channel);
    return 0;
}

//  Reads a tenant's counters and makes sure they cover every id loaded
static int
s_load_counters (s_load_t *load)
{
    proto_msg_t *value;
    char *data;
    int rc = s_get (load->store, load->tenant->id, "n", &value, &data);
    if (rc < 0) {
        free (data);
        return -1;
    }
    uint64_t last_user = 0, last_channel = 0;
    if (rc == 1) {
        proto_msg_u64 (value, "user", &last_user);
        proto_msg_u64 (value, "channel", &last_channel);
    }
    proto_msg_destroy (&value);
    free (data);
    if (last_user > load->tenant->last_user)
        load->tenant->last_user = last_user;
    if (last_channel > load->tenant->last_channel)
        load->tenant->last_channel = last_channel;
    return 0;
}

//  Loads everything in one tenant's column family
static int
s_load_tenant_data (s_load_t *load)
{
    if (!store_tenant_exists (load->store, load->tenant->id))
        return s_corrupt (load, "tenant (no column family)");
    if (s_scan (load, load->tenant->id, 'u', s_load_user)
    ||  s_scan (load, load->tenant->id, 'c', s_load_channel)
    ||  s_scan (load, load->tenant->id, 'm', s_load_member)
    ||  s_scan (load, load->tenant->id, 'd', s_load_dm)
    ||  s_load_counters (load))
        return -1;
    return 0;
}

//  Loads a 't' record, then everything in that tenant's column family
static int
s_load_tenant (s_load_t *load, const uint8_t *key, size_t key_len, proto_msg_t *value)
{
    uint64_t id;
    char *name = s_field_str (value, "name");
    int rc = 0;
    if (key_len != 9 || !s_field_id (value, key + 1, &id) || !name || !*name
    ||  id > MB_TENANT_MAX || mb_model_tenant (load->model, id) || mb_model_tenant_named (load->model, name))
        rc = s_corrupt (load, "tenant");
    else {
        mb_tenant_t *tenant = mb_tenant_new (id, name);
        load->tenant = tenant;
        mb_model_tenant_add (load->model, &tenant);
        rc = s_load_tenant_data (load);
        load->tenant = NULL;
    }
    free (name);
    return rc;
}

//  Loads a 'k' record
static int
s_load_token (s_load_t *load, const uint8_t *key, size_t key_len, proto_msg_t *value)
{
    mb_token_t token = { 0 };
    const char *kind;
    size_t kind_len;
    if (key_len != 1 + MB_HASH_SIZE
    ||  !proto_msg_u64 (value, "tn", &token.tenant) || !proto_msg_u64 (value, "uid", &token.user)
    ||  !proto_msg_str (value, "kind", &kind, &kind_len))
        return s_corrupt (load, "token");
    mb_tenant_t *tenant = mb_model_tenant (load->model, token.tenant);
    if (!tenant || !mb_tenant_user (tenant, token.user))
        return s_corrupt (load, "token");
    token.bot = kind_len == 3 && memcmp (kind, "bot", 3) == 0;
    mb_model_token_add (load->model, key + 1, token);
    return 0;
}

//  Reads the admin token's hash, if there is one
static int
s_load_admin (s_load_t *load)
{
    proto_msg_t *value;
    char *data;
    int rc = s_get (load->store, STORE_GLOBAL, "a", &value, &data);
    if (rc == 1) {
        const void *hash;
        size_t len;
        if (proto_map_bin (proto_msg_root (value), "hash", &hash, &len) && len == MB_HASH_SIZE) {
            memcpy (load->model->admin_hash, hash, MB_HASH_SIZE);
            load->model->has_admin = true;
        }
        else
            rc = s_corrupt (load, "admin");
    }
    proto_msg_destroy (&value);
    free (data);
    return rc < 0? -1: 0;
}

//  Reads the last tenant id issued
static int
s_load_tenant_counter (s_load_t *load)
{
    proto_msg_t *value;
    char *data;
    int rc = s_get (load->store, STORE_GLOBAL, "n", &value, &data);
    uint64_t last = 0;
    if (rc == 1)
        proto_msg_u64 (value, "tenant", &last);
    proto_msg_destroy (&value);
    free (data);
    if (last > load->model->last_tenant)
        load->model->last_tenant = last;
    return rc < 0? -1: 0;
}

//  --------------------------------------------------------------------------
//  Load every record into an empty model

int
mb_store_load (store_t *store, mb_model_t *model)
{
    s_load_t load = { store, model, NULL };
    if (s_load_admin (&load)
    ||  s_scan (&load, STORE_GLOBAL, 't', s_load_tenant)
    ||  s_load_tenant_counter (&load)
    ||  s_scan (&load, STORE_GLOBAL, 'k', s_load_token))
        return -1;
    return 0;
}
