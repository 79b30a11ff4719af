/*  =========================================================================
    ingest - the first stage: bounded decode, schema, sizes, auth, rate limits

    Every operation has a schema row below: its fields, their types, which
    are required. Requests that fail get the documented error and go no
    further. ping is answered here; bye drops the session.
    =========================================================================
*/
#include "ingest.h"

typedef enum { F_STR, F_U64, F_BOOL, F_MAP, F_ARRAY } field_type_t;

typedef struct {
    const char *name;           //  field name
    field_type_t type;          //  expected msgpack type
    bool required;              //  must be present
} field_t;

#define MAX_FIELDS 7

typedef struct {
    const char *op;             //  operation name
    bool is_public;             //  allowed before authentication
    field_t fields [MAX_FIELDS];    //  its fields
} op_schema_t;

static const op_schema_t s_schemas [] = {
    { "ping", true, { { NULL, F_STR, false } } },
    { "bye", true, { { NULL, F_STR, false } } },
    { "login", true, { { "tenant", F_STR, true }, { "handle", F_STR, true }, { "password", F_STR, true } } },
    { "auth", true, { { "token", F_STR, true } } },
    { "logout", false, { { "token", F_STR, false } } },
    { "tenant_create", true, { { "name", F_STR, true }, { "token", F_STR, false } } },
    { "tenant_list", true, { { "token", F_STR, false } } },
    { "user_create", true, { { "tenant", F_STR, true }, { "handle", F_STR, true },
        { "display_name", F_STR, true }, { "password", F_STR, true }, { "bot", F_BOOL, false },
        { "token", F_STR, false } } },
    { "token_create", true, { { "tenant", F_STR, true }, { "handle", F_STR, true }, { "token", F_STR, false } } },
    { "user_list", false, { { NULL, F_STR, false } } },
    { "channel_create", false, { { "name", F_STR, true }, { "private", F_BOOL, false } } },
    { "channel_list", false, { { NULL, F_STR, false } } },
    { "channel_browse", false, { { NULL, F_STR, false } } },
    { "channel_join", false, { { "ch", F_U64, true } } },
    { "channel_leave", false, { { "ch", F_U64, true } } },
    { "channel_invite", false, { { "ch", F_U64, true }, { "user", F_U64, true } } },
    { "channel_members", false, { { "ch", F_U64, true } } },
    { "channel_settings", false, { { "ch", F_U64, true }, { "muted", F_BOOL, false }, { "notify_always", F_BOOL, false } } },
    { "dm_open", false, { { "users", F_ARRAY, true } } },
    { "send", false, { { "ch", F_U64, true }, { "client_msg_id", F_STR, true }, { "body", F_STR, true }, { "ref", F_MAP, false } } },
    { "edit", false, { { "ch", F_U64, true }, { "seq", F_U64, true }, { "body", F_STR, true } } },
    { "delete", false, { { "ch", F_U64, true }, { "seq", F_U64, true } } },
    { "typing", false, { { "ch", F_U64, true } } },
    { "history", false, { { "ch", F_U64, true }, { "before", F_U64, false }, { "after", F_U64, false },
        { "around", F_U64, false }, { "around_unread", F_BOOL, false }, { "limit", F_U64, false } } },
    { "read", false, { { "ch", F_U64, true }, { "seq", F_U64, true } } },
    { "sync", false, { { "channels", F_MAP, false }, { "limit", F_U64, false } } },
};
#define SCHEMA_COUNT (sizeof (s_schemas) / sizeof (s_schemas [0]))

//  A token bucket for one user (or one anonymous session)
typedef struct {
    double tokens;              //  requests that may go now
    int64_t updated;            //  zclock_mono of the last refill
} bucket_t;

typedef struct {
    zsock_t *pipe;              //  actor pipe
    const stage_config_t *config;   //  process configuration
    zsock_t *inbox;             //  requests from the broker
    zsock_t *broker;            //  replies
    zsock_t *membership;        //  requests passed on
    zhashx_t *buckets;          //  principal or route -> bucket_t
    proto_writer_t *writer;     //  scratch writer
    bool failed;                //  could not start
} self_t;

static const op_schema_t *
s_schema_find (const char *op, size_t len)
{
    for (size_t i = 0; i < SCHEMA_COUNT; i++)
        if (strlen (s_schemas [i].op) == len && memcmp (s_schemas [i].op, op, len) == 0)
            return &s_schemas [i];
    return NULL;
}

//  --------------------------------------------------------------------------
//  True if the op may be used before authentication

bool
ingest_op_is_public (const char *op, size_t len)
{
    const op_schema_t *schema = s_schema_find (op, len);
    return schema && schema->is_public;
}

static bool
s_type_matches (const msgpack_object *value, field_type_t type)
{
    switch (type) {
        case F_STR:   return value->type == MSGPACK_OBJECT_STR;
        case F_U64:   return value->type == MSGPACK_OBJECT_POSITIVE_INTEGER
                          && value->via.u64 > 0 && value->via.u64 < PROTO_MAX_SEQ;
        case F_BOOL:  return value->type == MSGPACK_OBJECT_BOOLEAN;
        case F_MAP:   return value->type == MSGPACK_OBJECT_MAP;
        case F_ARRAY: return value->type == MSGPACK_OBJECT_ARRAY;
    }
    return false;
}

//  Checks the body of send/edit: present, 1..40000 characters
static proto_error_t
s_check_body (proto_msg_t *request, const char **why)
{
    const char *body;
    size_t len;
    if (!proto_msg_str (request, "body", &body, &len))
        return PROTO_OK;
    size_t chars = proto_utf8_chars (body, len);
    //  Whitespace-only bodies are empty too
    bool blank = true;
    for (size_t i = 0; i < len && blank; i++)
        blank = (body [i] == ' ' || body [i] == '\n' || body [i] == '\t' || body [i] == '\r');
    if (blank) {
        *why = "the message body is empty";
        return PROTO_ERR_NO_TEXT;
    }
    if (chars > PROTO_MAX_BODY_CHARS) {
        *why = "the message body is over 40000 characters";
        return PROTO_ERR_MSG_TOO_LONG;
    }
    return PROTO_OK;
}

//  Checks the op-specific rules that a type alone does not express
static proto_error_t
s_check_rules (proto_msg_t *request, const char *op, size_t op_len, const char **why)
{
    const char *id;
    size_t id_len;
    if (proto_msg_str (request, "client_msg_id", &id, &id_len)
    &&  (id_len == 0 || id_len > PROTO_MAX_CLIENT_ID)) {
        *why = "client_msg_id must be 1 to 64 bytes";
        return PROTO_ERR_INVALID_ARGS;
    }
    uint64_t limit;
    if (proto_msg_u64 (request, "limit", &limit) && limit > PROTO_PAGE_MAX) {
        *why = "limit is at most 200";
        return PROTO_ERR_INVALID_ARGS;
    }
    if (op_len == 7 && memcmp (op, "history", 7) == 0) {
        int anchors = !!proto_msg_get (request, "before") + !!proto_msg_get (request, "after")
                    + !!proto_msg_get (request, "around") + !!proto_msg_get (request, "around_unread");
        if (anchors > 1) {
            *why = "give at most one of before, after, around, around_unread";
            return PROTO_ERR_INVALID_ARGS;
        }
    }
    const msgpack_object *ref = proto_msg_get (request, "ref");
    if (ref) {
        uint64_t value;
        if (!proto_map_u64 (ref, "ch", &value) || !proto_map_u64 (ref, "seq", &value)
        ||  value == 0 || value >= PROTO_MAX_SEQ) {
            *why = "ref must be {ch, seq}";
            return PROTO_ERR_INVALID_ARGS;
        }
    }
    return s_check_body (request, why);
}

//  --------------------------------------------------------------------------
//  Check one request against the schema of its op

proto_error_t
ingest_check (proto_msg_t *request, const char **why)
{
    const char *op;
    size_t op_len;
    uint64_t rid;
    if (!proto_msg_str (request, "op", &op, &op_len)) {
        *why = "op is missing or not a string";
        return PROTO_ERR_INVALID_ARGS;
    }
    const op_schema_t *schema = s_schema_find (op, op_len);
    if (!schema) {
        *why = "unknown operation";
        return PROTO_ERR_UNKNOWN_OP;
    }
    const msgpack_object *rid_obj = proto_msg_get (request, "rid");
    if (rid_obj && !proto_msg_u64 (request, "rid", &rid)) {
        *why = "rid must be an unsigned integer";
        return PROTO_ERR_INVALID_ARGS;
    }
    for (int i = 0; i < MAX_FIELDS && schema->fields [i].name; i++) {
        const field_t *field = &schema->fields [i];
        const msgpack_object *value = proto_msg_get (request, field->name);
        if (!value && field->required) {
            *why = field->name;
            return PROTO_ERR_INVALID_ARGS;
        }
        if (value && !s_type_matches (value, field->type)) {
            *why = field->name;
            return PROTO_ERR_INVALID_ARGS;
        }
    }
    return s_check_rules (request, op, op_len, why);
}

static void
s_bucket_destroy (void **item)
{
    free (*item);
    *item = NULL;
}

static self_t *
s_self_new (zsock_t *pipe, const stage_config_t *config)
{
    self_t *self = (self_t *) zmalloc (sizeof (self_t));
    self->pipe = pipe;
    self->config = config;
    self->inbox = stage_inbox_new (config, config->ingest_endpoint);
    self->broker = stage_outbox_new (config, config->broker_endpoint, false);
    self->membership = stage_outbox_new (config, config->membership_endpoint, true);
    self->buckets = zhashx_new ();
    zhashx_set_destructor (self->buckets, s_bucket_destroy);
    self->writer = proto_writer_new ();
    if (!self->inbox || !self->broker || !self->membership)
        self->failed = true;
    return self;
}

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (self) {
        zsock_destroy (&self->inbox);
        zsock_destroy (&self->broker);
        zsock_destroy (&self->membership);
        zhashx_destroy (&self->buckets);
        proto_writer_destroy (&self->writer);
        free (self);
        *self_p = NULL;
    }
}

//  Takes one token from the caller's bucket; returns 0, or the ms to wait
static uint64_t
s_rate_take (self_t *self, const char *key)
{
    int64_t now = zclock_mono ();
    bucket_t *bucket = (bucket_t *) zhashx_lookup (self->buckets, key);
    if (!bucket) {
        if (zhashx_size (self->buckets) > 100000)
            zhashx_purge (self->buckets);
        bucket = (bucket_t *) zmalloc (sizeof (bucket_t));
        bucket->tokens = self->config->rate_burst;
        bucket->updated = now;
        zhashx_insert (self->buckets, key, bucket);
    }
    double rate = self->config->rate_per_s;
    bucket->tokens += (now - bucket->updated) * rate / 1000.0;
    if (bucket->tokens > self->config->rate_burst)
        bucket->tokens = self->config->rate_burst;
    bucket->updated = now;
    if (bucket->tokens >= 1.0) {
        bucket->tokens -= 1.0;
        return 0;
    }
    return (uint64_t) ((1.0 - bucket->tokens) * 1000.0 / rate) + 1;
}

static void
s_reply_pong (self_t *self, const stage_frame_t *route, uint64_t rid, bool authed)
{
    proto_writer_reset (self->writer);
    proto_writer_map_begin (self->writer);
    proto_writer_kv_u64 (self->writer, "re", rid);
    proto_writer_kv_bool (self->writer, "ok", true);
    proto_writer_kv_bool (self->writer, "pong", true);
    proto_writer_kv_bool (self->writer, "authed", authed);
    proto_writer_kv_u64 (self->writer, "ts", stage_now_ms ());
    proto_writer_map_end (self->writer);
    stage_send_reply (self->broker, route, self->writer, NULL);
}

//  Tells the broker to forget the session, with no reply to the peer
static void
s_reply_bye (self_t *self, const stage_frame_t *route)
{
    proto_writer_t *ctl = proto_writer_new ();
    proto_writer_map_begin (ctl);
    proto_writer_kv_bool (ctl, "drop", true);
    proto_writer_map_end (ctl);
    stage_send_reply (self->broker, route, NULL, ctl);
    proto_writer_destroy (&ctl);
}

static void
s_reply_rate_limited (self_t *self, const stage_frame_t *route, uint64_t rid, uint64_t wait_ms)
{
    proto_write_error (self->writer, rid, PROTO_ERR_RATE_LIMITED, NULL, wait_ms);
    stage_send_reply (self->broker, route, self->writer, NULL);
}

//  The rate limit key of a session: "u/<tenant><user>" (16 bytes as hex)
//  for a user, else "r/<route as hex>"
static void
s_rate_key (const stage_frame_t *route, uint64_t tenant, uint64_t user, char *key, size_t key_size)
{
    if (user) {
        uint8_t ids [16];
        for (int shift = 0; shift < 8; shift++) {
            ids [7 - shift] = (uint8_t) (tenant >> (8 * shift));
            ids [15 - shift] = (uint8_t) (user >> (8 * shift));
        }
        memcpy (key, "u/", 2);
        stage_hex (ids, sizeof (ids), key + 2);
    }
    else {
        size_t size = route->size;
        if (size > (key_size - 3) / 2)
            size = (key_size - 3) / 2;
        memcpy (key, "r/", 2);
        stage_hex (route->data, size, key + 2);
    }
}

//  Handles one request [route][ctx][req]
static void
s_handle_request (self_t *self, const stage_frame_t *route, const stage_frame_t *ctx_frame, const stage_frame_t *req)
{
    const char *why = NULL;
    //  The ctx is the broker's: validated only when it came over tcp
    proto_msg_t *ctx = stage_decode (self->config->ingest_endpoint, &proto_stage_limits,
                                     ctx_frame, &why);
    if (!ctx) {
        zsys_error ("ingest: malformed ctx from the broker: %s", why);
        return;
    }
    uint64_t tenant = 0, user = 0, rid = 0;
    bool admin = false;
    proto_msg_u64 (ctx, "tn", &tenant);
    proto_msg_u64 (ctx, "uid", &user);
    proto_msg_bool (ctx, "adm", &admin);
    proto_msg_destroy (&ctx);

    proto_msg_t *request = proto_msg_decode (req->data, req->size, &why);
    if (!request) {
        bool utf8 = why && strstr (why, "UTF-8");
        stage_send_error (self->broker, route, 0,
            utf8? PROTO_ERR_INVALID_UTF8: PROTO_ERR_INVALID_MESSAGE, why);
        return;
    }
    proto_msg_u64 (request, "rid", &rid);
    //  Users are limited per user, anonymous sessions per session
    char key [2 * 264 + 3];
    s_rate_key (route, tenant, user, key, sizeof (key));
    uint64_t wait_ms = s_rate_take (self, key);
    proto_error_t code = ingest_check (request, &why);
    const char *op = "";
    size_t op_len = 0;
    proto_msg_str (request, "op", &op, &op_len);
    if (wait_ms && !(op_len == 3 && memcmp (op, "bye", 3) == 0))
        s_reply_rate_limited (self, route, rid, wait_ms);
    else
    if (code != PROTO_OK)
        stage_send_error (self->broker, route, rid, code, why);
    else
    if (op_len == 4 && memcmp (op, "ping", 4) == 0)
        s_reply_pong (self, route, rid, user || admin);
    else
    if (op_len == 3 && memcmp (op, "bye", 3) == 0)
        s_reply_bye (self, route);
    else
    if (!user && !admin && !ingest_op_is_public (op, op_len))
        stage_send_error (self->broker, route, rid, PROTO_ERR_NOT_AUTHED, NULL);
    else
    if (stage_pass (self->membership, route, ctx_frame, req))
        stage_send_error (self->broker, route, rid, PROTO_ERR_STAGE_UNAVAILABLE, NULL);
    proto_msg_destroy (&request);
}

//  Handles one inbox message; false if none was waiting
static bool
s_handle_inbox (self_t *self)
{
    stage_msg_t msg;
    if (stage_msg_recv (&msg, self->inbox))
        return false;
    if (stage_msg_size (&msg) == 3)
        s_handle_request (self, stage_msg_frame (&msg, 0), stage_msg_frame (&msg, 1),
                          stage_msg_frame (&msg, 2));
    else
        zsys_error ("ingest: malformed message from the broker");
    stage_msg_close (&msg);
    return true;
}

//  Handles one inbox message (for stage_serve)
static bool
s_serve_one (void *self)
{
    return s_handle_inbox ((self_t *) self);
}

//  --------------------------------------------------------------------------
//  The ingest actor

void
ingest_actor (zsock_t *pipe, void *args)
{
    stage_thread_name ("ingest");
    self_t *self = s_self_new (pipe, (const stage_config_t *) args);
    if (self->failed) {
        s_self_destroy (&self);
        stage_actor_failed (pipe);
        return;
    }
    stage_serve (pipe, self->inbox, s_serve_one, self);
    s_self_destroy (&self);
}
