/*  =========================================================================
    fanout - delivers each event to the online sessions of its recipients

    Sessions are grouped by peer for each event: one delivery per peer
    carries the event bytes once and the sids to hand them to, so an edge
    with a thousand members online gets one message, not a thousand.
    =========================================================================
*/
#include "fanout.h"

//  An online session
typedef struct {
    char *key;                  //  route hex (table key)
    char *user_key;             //  "tn/uid" of its user
    zframe_t *identity;         //  its peer's identity
    uint64_t sid;               //  session id on the peer
} session_t;

//  Deliveries being gathered for one peer
typedef struct {
    zframe_t *identity;         //  the peer
    proto_writer_t *sids;       //  sessions to deliver to (open array)
    proto_writer_t *notify;     //  sessions to notify (open array)
} batch_t;

typedef struct {
    zsock_t *pipe;              //  actor pipe
    zsock_t *inbox;             //  events and session changes
    zsock_t *broker;            //  deliveries
    zhashx_t *sessions;         //  route hex -> session_t
    zhashx_t *users;            //  "tn/uid" -> zlistx_t of session_t
    zhashx_t *batches;          //  identity hex -> batch_t, per event
    bool failed;                //  could not start
    uint64_t delivered;         //  session deliveries made
} self_t;

static void
s_session_destroy (void **item)
{
    session_t *session = (session_t *) *item;
    if (session) {
        free (session->key);
        free (session->user_key);
        zframe_destroy (&session->identity);
        free (session);
        *item = NULL;
    }
}

static void
s_list_destroy (void **item)
{
    zlistx_destroy ((zlistx_t **) item);
}

static void
s_batch_destroy (void **item)
{
    batch_t *batch = (batch_t *) *item;
    if (batch) {
        zframe_destroy (&batch->identity);
        proto_writer_destroy (&batch->sids);
        proto_writer_destroy (&batch->notify);
        free (batch);
        *item = NULL;
    }
}

//  --------------------------------------------------------------------------
//  True if an event for this recipient should notify

bool
fanout_should_notify (const char *ctype, size_t ctype_len, uint64_t user,
                      uint64_t author, uint64_t flags, bool mentioned)
{
    if (user == author || (flags & STAGE_RECIP_MUTED))
        return false;
    bool direct = (ctype_len == 2 && memcmp (ctype, "dm", 2) == 0)
               || (ctype_len == 5 && memcmp (ctype, "group", 5) == 0);
    return direct || mentioned || (flags & STAGE_RECIP_NOTIFY_ALWAYS);
}

static self_t *
s_self_new (zsock_t *pipe, const stage_config_t *config)
{
    self_t *self = (self_t *) zmalloc (sizeof (self_t));
    self->pipe = pipe;
    self->inbox = stage_inbox_new (config, config->fanout_endpoint);
    self->broker = stage_outbox_new (config, config->broker_endpoint, false);
    self->sessions = zhashx_new ();
    zhashx_set_destructor (self->sessions, s_session_destroy);
    self->users = zhashx_new ();
    zhashx_set_destructor (self->users, s_list_destroy);
    self->batches = zhashx_new ();
    zhashx_set_destructor (self->batches, s_batch_destroy);
    if (!self->inbox || !self->broker)
        self->failed = true;
    else
        zstr_send (self->broker, STAGE_RESYNC);   //  after a restart we know no session
    return self;
}

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (self) {
        zsock_destroy (&self->inbox);
        zsock_destroy (&self->broker);
        zhashx_destroy (&self->users);
        zhashx_destroy (&self->sessions);
        zhashx_destroy (&self->batches);
        free (self);
        *self_p = NULL;
    }
}

//  Forgets a session
static void
s_session_down (self_t *self, zframe_t *route)
{
    char *key = zframe_strhex (route);
    session_t *session = (session_t *) zhashx_lookup (self->sessions, key);
    if (session) {
        zlistx_t *list = (zlistx_t *) zhashx_lookup (self->users, session->user_key);
        if (list) {
            void *handle = zlistx_find (list, session);
            if (handle)
                zlistx_delete (list, handle);
            if (zlistx_size (list) == 0)
                zhashx_delete (self->users, session->user_key);
        }
        zhashx_delete (self->sessions, key);
    }
    free (key);
}

//  Records a session as online for (tn, uid)
static void
s_session_up (self_t *self, zframe_t *route, zframe_t *who)
{
    size_t size = zframe_size (route);
    byte *data = zframe_data (route);
    proto_msg_t *msg = proto_msg_decode (zframe_data (who), zframe_size (who), NULL);
    uint64_t tenant = 0, user = 0;
    if (!msg || size < 9 || (size_t) data [0] + 9 != size
    ||  !proto_msg_u64 (msg, "tn", &tenant) || !proto_msg_u64 (msg, "uid", &user)) {
        zsys_warning ("fanout: malformed session up");
        proto_msg_destroy (&msg);
        return;
    }
    proto_msg_destroy (&msg);
    s_session_down (self, route);
    session_t *session = (session_t *) zmalloc (sizeof (session_t));
    session->key = zframe_strhex (route);
    session->user_key = zsys_sprintf ("%" PRIu64 "/%" PRIu64, tenant, user);
    session->identity = zframe_new (data + 1, data [0]);
    for (int i = 0; i < 8; i++)
        session->sid = (session->sid << 8) | data [1 + data [0] + i];
    zhashx_insert (self->sessions, session->key, session);
    zlistx_t *list = (zlistx_t *) zhashx_lookup (self->users, session->user_key);
    if (!list) {
        list = zlistx_new ();
        zhashx_insert (self->users, session->user_key, list);
    }
    zlistx_add_end (list, session);
}

//  Adds one session to the delivery for its peer
static void
s_batch_add (self_t *self, session_t *session, bool notify)
{
    char *key = zframe_strhex (session->identity);
    batch_t *batch = (batch_t *) zhashx_lookup (self->batches, key);
    if (!batch) {
        batch = (batch_t *) zmalloc (sizeof (batch_t));
        batch->identity = zframe_dup (session->identity);
        batch->sids = proto_writer_new ();
        batch->notify = proto_writer_new ();
        proto_writer_array_begin (batch->sids);
        proto_writer_array_begin (batch->notify);
        zhashx_insert (self->batches, key, batch);
    }
    free (key);
    proto_writer_u64 (batch->sids, session->sid);
    if (notify)
        proto_writer_u64 (batch->notify, session->sid);
}

//  Sends one delivery per peer gathered for an event
static void
s_batches_send (self_t *self, zframe_t *event)
{
    for (batch_t *batch = (batch_t *) zhashx_first (self->batches); batch;
         batch = (batch_t *) zhashx_next (self->batches)) {
        proto_writer_array_end (batch->sids);
        proto_writer_array_end (batch->notify);
        zmsg_t *msg = zmsg_new ();
        zmsg_addstr (msg, STAGE_DELIVERY);
        zmsg_append (msg, &(zframe_t *) { zframe_dup (batch->identity) });
        zmsg_append (msg, &(zframe_t *) { zframe_dup (event) });
        zmsg_addmem (msg, proto_writer_data (batch->sids), proto_writer_size (batch->sids));
        zmsg_addmem (msg, proto_writer_data (batch->notify), proto_writer_size (batch->notify));
        if (zmsg_send (&msg, self->broker)) {
            zmsg_destroy (&msg);
            zsys_warning ("fanout: broker is not taking deliveries; dropped one");
        }
    }
    zhashx_purge (self->batches);
}

static bool
s_mentioned (const msgpack_object *mentions, uint64_t user)
{
    for (uint32_t i = 0; mentions && mentions->type == MSGPACK_OBJECT_ARRAY
                         && i < mentions->via.array.size; i++)
        if (mentions->via.array.ptr [i].type == MSGPACK_OBJECT_POSITIVE_INTEGER
        &&  mentions->via.array.ptr [i].via.u64 == user)
            return true;
    return false;
}

//  Delivers one event to every online session of its recipients
static void
s_handle_event (self_t *self, zframe_t *meta_frame, zframe_t *event)
{
    proto_msg_t *meta = proto_msg_decode_stage (zframe_data (meta_frame), zframe_size (meta_frame), NULL);
    if (!meta) {
        zsys_warning ("fanout: malformed event meta");
        return;
    }
    uint64_t tenant = 0, author = 0;
    const char *ctype = "";
    size_t ctype_len = 0;
    proto_msg_u64 (meta, "tn", &tenant);
    proto_msg_u64 (meta, "author", &author);
    proto_msg_str (meta, "ctype", &ctype, &ctype_len);
    const msgpack_object *recips = proto_msg_get (meta, "recips");
    const msgpack_object *mentions = proto_msg_get (meta, "mentions");
    for (uint32_t i = 0; recips && recips->type == MSGPACK_OBJECT_ARRAY
                         && i < recips->via.array.size; i++) {
        const msgpack_object *recip = &recips->via.array.ptr [i];
        if (recip->type != MSGPACK_OBJECT_ARRAY || recip->via.array.size != 2)
            continue;
        uint64_t user = recip->via.array.ptr [0].via.u64;
        uint64_t flags = recip->via.array.ptr [1].via.u64;
        char user_key [48];
        snprintf (user_key, sizeof (user_key), "%" PRIu64 "/%" PRIu64, tenant, user);
        zlistx_t *list = (zlistx_t *) zhashx_lookup (self->users, user_key);
        if (!list)
            continue;
        bool notify = fanout_should_notify (ctype, ctype_len, user, author, flags,
                                            s_mentioned (mentions, user));
        for (session_t *session = (session_t *) zlistx_first (list); session;
             session = (session_t *) zlistx_next (list)) {
            s_batch_add (self, session, notify);
            self->delivered++;
        }
    }
    s_batches_send (self, event);
    proto_msg_destroy (&meta);
}

static void
s_handle_inbox (self_t *self)
{
    zmsg_t *msg = zmsg_recv (self->inbox);
    if (!msg)
        return;
    char *kind = zmsg_popstr (msg);
    zframe_t *first = zmsg_pop (msg);
    zframe_t *second = zmsg_pop (msg);
    if (kind && streq (kind, STAGE_EVENT) && first && second)
        s_handle_event (self, first, second);
    else
    if (kind && streq (kind, STAGE_UP) && first && second)
        s_session_up (self, first, second);
    else
    if (kind && streq (kind, STAGE_DOWN) && first)
        s_session_down (self, first);
    else
    if (kind && streq (kind, STAGE_RESET)) {
        zhashx_purge (self->users);
        zhashx_purge (self->sessions);
    }
    else
        zsys_warning ("fanout: unknown inbox message");
    free (kind);
    zframe_destroy (&first);
    zframe_destroy (&second);
    zmsg_destroy (&msg);
}

//  Handles one inbox message (for stage_serve)
static void
s_serve_one (void *self)
{
    s_handle_inbox ((self_t *) self);
}

//  --------------------------------------------------------------------------
//  The fan-out actor

void
fanout_actor (zsock_t *pipe, void *args)
{
    self_t *self = s_self_new (pipe, (const stage_config_t *) args);
    if (self->failed) {
        s_self_destroy (&self);
        stage_actor_failed (pipe);
        return;
    }
    stage_serve (pipe, self->inbox, s_serve_one, self);
    s_self_destroy (&self);
}
