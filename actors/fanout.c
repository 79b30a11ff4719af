/*  =========================================================================
    fanout - delivers each event to the online sessions of its recipients

    Sessions are grouped by peer for each event: one delivery per peer
    carries the event bytes once and the sids to hand them to, so an edge
    with a thousand members online gets one message, not a thousand.
    =========================================================================
*/
#include "fanout.h"
#include "fanout_table.h"

//  A peer (an edge or an integrator), interned on its first session up; it
//  gathers the sids of the event being delivered
typedef struct {
    char *key;                  //  identity hex (peers table key)
    zframe_t *identity;         //  routing identity
    size_t sessions;            //  online sessions on this peer
    uint64_t event;             //  event its writers were last opened for
    proto_writer_t *sids;       //  sessions to deliver to (open array)
    proto_writer_t *notify;     //  sessions to notify (open array)
} peer_t;

//  One of a user's online sessions, as the event loop walks them
typedef struct {
    peer_t *peer;               //  its peer
    uint64_t sid;               //  session id on the peer
} seat_t;

//  A user with sessions online
typedef struct {
    seat_t *seats;              //  its sessions
    size_t size;                //  seats in use
    size_t capacity;            //  seats allocated
    uint64_t event;             //  event it was last delivered (duplicate recips)
} user_t;

//  An online session, by route
typedef struct {
    char *key;                  //  route hex (sessions table key)
    uint64_t tenant;            //  its user's tenant id
    uint64_t user;              //  its user's id
    peer_t *peer;               //  its peer
    uint64_t sid;               //  session id on the peer
} session_t;

typedef struct {
    zsock_t *pipe;              //  actor pipe
    zsock_t *inbox;             //  events and session changes
    zsock_t *broker;            //  deliveries
    const char *endpoint;       //  the inbox's (decides how frames are decoded)
    zhashx_t *sessions;         //  route hex -> session_t
    zhashx_t *peers;            //  identity hex -> peer_t
    fanout_table_t *users;      //  (tn, uid) -> user_t
    peer_t **touched;           //  peers with sids for this event
    size_t touched_size;        //  peers in touched
    size_t touched_capacity;    //  room in touched
    uint64_t event;             //  events handled (stamps peers and users)
    bool failed;                //  could not start
    uint64_t delivered;         //  session deliveries made
} self_t;

static void
s_peer_destroy (peer_t **self_p)
{
    peer_t *peer = *self_p;
    if (peer) {
        free (peer->key);
        zframe_destroy (&peer->identity);
        proto_writer_destroy (&peer->sids);
        proto_writer_destroy (&peer->notify);
        free (peer);
        *self_p = NULL;
    }
}

static void
s_peer_free (void **item)
{
    s_peer_destroy ((peer_t **) item);
}

static void
s_session_free (void **item)
{
    session_t *session = (session_t *) *item;
    if (session) {
        free (session->key);
        free (session);
        *item = NULL;
    }
}

static void
s_user_free (void *item, void *arg)
{
    (void) arg;
    user_t *user = (user_t *) item;
    free (user->seats);
    free (user);
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
    self->endpoint = config->fanout_endpoint;
    self->broker = stage_outbox_new (config, config->broker_endpoint, false);
    self->sessions = zhashx_new ();
    zhashx_set_destructor (self->sessions, s_session_free);
    self->peers = zhashx_new ();
    zhashx_set_destructor (self->peers, s_peer_free);
    self->users = fanout_table_new ();
    if (!self->inbox || !self->broker)
        self->failed = true;
    else
        stage_send (self->broker, (stage_frame_t []) { stage_frame_str (STAGE_RESYNC) }, 1);   //  after a restart we know no session
    return self;
}

//  Forgets every session, user and peer
static void
s_forget_all (self_t *self)
{
    zhashx_purge (self->sessions);
    fanout_table_purge (self->users, s_user_free, NULL);
    zhashx_purge (self->peers);
}

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (self) {
        s_forget_all (self);
        zsock_destroy (&self->inbox);
        zsock_destroy (&self->broker);
        zhashx_destroy (&self->sessions);
        zhashx_destroy (&self->peers);
        fanout_table_destroy (&self->users);
        free (self->touched);
        free (self);
        *self_p = NULL;
    }
}

//  The peer of an identity, interned on first use
static peer_t *
s_peer_intern (self_t *self, const byte *identity, size_t size)
{
    zframe_t *frame = zframe_new (identity, size);
    char *key = zframe_strhex (frame);
    peer_t *peer = (peer_t *) zhashx_lookup (self->peers, key);
    if (peer) {
        zframe_destroy (&frame);
        free (key);
    }
    else {
        peer = (peer_t *) zmalloc (sizeof (peer_t));
        peer->key = key;
        peer->identity = frame;
        peer->sids = proto_writer_new ();
        peer->notify = proto_writer_new ();
        zhashx_insert (self->peers, key, peer);
    }
    return peer;
}

//  Removes the session's seat from its user; forgets the user with its last
static void
s_seat_remove (self_t *self, session_t *session)
{
    user_t *user = (user_t *) fanout_table_lookup (self->users, session->tenant, session->user);
    if (!user)
        return;
    for (size_t i = 0; i < user->size; i++)
        if (user->seats [i].peer == session->peer && user->seats [i].sid == session->sid) {
            user->seats [i] = user->seats [--user->size];
            break;
        }
    if (user->size == 0)
        s_user_free (fanout_table_delete (self->users, session->tenant, session->user), NULL);
}

//  Adds the session's seat to its user, made on its first session
static void
s_seat_add (self_t *self, session_t *session)
{
    user_t *user = (user_t *) fanout_table_lookup (self->users, session->tenant, session->user);
    if (!user) {
        user = (user_t *) zmalloc (sizeof (user_t));
        user->event = self->event;
        fanout_table_insert (self->users, session->tenant, session->user, user);
    }
    if (user->size == user->capacity) {
        user->capacity = user->capacity? user->capacity * 2: 2;
        user->seats = (seat_t *) realloc (user->seats, user->capacity * sizeof (seat_t));
        assert (user->seats);
    }
    user->seats [user->size++] = (seat_t) { session->peer, session->sid };
}

//  The sessions table key of a route: its bytes as hex (caller frees)
static char *
s_route_key (const stage_frame_t *route)
{
    char *key = (char *) malloc (2 * route->size + 1);
    assert (key);
    stage_hex (route->data, route->size, key);
    return key;
}

//  Forgets a session (nothing if it is not known)
static void
s_session_down (self_t *self, const stage_frame_t *route)
{
    char *key = s_route_key (route);
    session_t *session = (session_t *) zhashx_lookup (self->sessions, key);
    if (session) {
        s_seat_remove (self, session);
        peer_t *peer = session->peer;
        zhashx_delete (self->sessions, key);
        if (--peer->sessions == 0)
            zhashx_delete (self->peers, peer->key);
    }
    free (key);
}

//  Records a session as online for (tn, uid); an UP for a known route
//  replaces it
static void
s_session_up (self_t *self, const stage_frame_t *route, const stage_frame_t *who)
{
    size_t size = route->size;
    byte *data = (byte *) route->data;
    proto_msg_t *msg = proto_msg_decode (who->data, who->size, NULL);
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
    session->key = s_route_key (route);
    session->tenant = tenant;
    session->user = user;
    session->peer = s_peer_intern (self, data + 1, data [0]);
    session->peer->sessions++;
    for (int i = 0; i < 8; i++)
        session->sid = (session->sid << 8) | data [1 + data [0] + i];
    zhashx_insert (self->sessions, session->key, session);
    s_seat_add (self, session);
}

//  Adds one session to its peer's delivery for this event
static void
s_seat_deliver (self_t *self, seat_t *seat, bool notify)
{
    peer_t *peer = seat->peer;
    if (peer->event != self->event) {
        peer->event = self->event;
        proto_writer_reset (peer->sids);
        proto_writer_reset (peer->notify);
        proto_writer_array_begin (peer->sids);
        proto_writer_array_begin (peer->notify);
        if (self->touched_size == self->touched_capacity) {
            self->touched_capacity = self->touched_capacity? self->touched_capacity * 2: 16;
            self->touched = (peer_t **) realloc (self->touched,
                                                 self->touched_capacity * sizeof (peer_t *));
            assert (self->touched);
        }
        self->touched [self->touched_size++] = peer;
    }
    proto_writer_u64 (peer->sids, seat->sid);
    if (notify)
        proto_writer_u64 (peer->notify, seat->sid);
    self->delivered++;
}

//  Sends one delivery per peer gathered for an event
static void
s_deliveries_send (self_t *self, const stage_frame_t *event)
{
    for (size_t i = 0; i < self->touched_size; i++) {
        peer_t *peer = self->touched [i];
        proto_writer_array_end (peer->sids);
        proto_writer_array_end (peer->notify);
        stage_frame_t delivery [] = {
            stage_frame_str (STAGE_DELIVERY),
            stage_frame_mem (zframe_data (peer->identity), zframe_size (peer->identity)),
            *event,
            stage_frame_writer (peer->sids), stage_frame_writer (peer->notify)
        };
        if (stage_send (self->broker, delivery, 5))
            zsys_warning ("fanout: broker is not taking deliveries; dropped one");
    }
    self->touched_size = 0;
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

//  What an event's meta says about its recipients
typedef struct {
    uint64_t tenant;            //  tenant id
    uint64_t author;            //  author, 0 if none
    const char *ctype;          //  channel type (not terminated)
    size_t ctype_len;           //  its length
    const msgpack_object *mentions;     //  array of uids, or NULL
} audience_t;

//  Delivers the event to every online session of one recipient, once
static void
s_recipient_deliver (self_t *self, audience_t *audience, uint64_t uid, uint64_t flags)
{
    user_t *user = (user_t *) fanout_table_lookup (self->users, audience->tenant, uid);
    if (!user || user->event == self->event)
        return;                 //  offline, or listed twice
    user->event = self->event;
    bool notify = fanout_should_notify (audience->ctype, audience->ctype_len, uid,
                                        audience->author, flags,
                                        s_mentioned (audience->mentions, uid));
    for (size_t i = 0; i < user->size; i++)
        s_seat_deliver (self, &user->seats [i], notify);
}

//  The recipient records of an event's meta (none if it has no recips);
//  false if they are not a bin of whole records
static bool
s_recips_get (proto_msg_t *meta, const uint8_t **records, size_t *size)
{
    const void *data = NULL;
    *size = 0;
    if (proto_msg_get (meta, "recips")
    &&  !proto_map_bin (proto_msg_root (meta), "recips", &data, size))
        return false;
    *records = (const uint8_t *) data;
    return *size % STAGE_RECIP_SIZE == 0;
}

//  Delivers one event to every online session of its recipients
static void
s_handle_event (self_t *self, const stage_frame_t *meta_frame, const stage_frame_t *event)
{
    //  From persistence or membership: validated only when it came over tcp
    proto_msg_t *meta = stage_decode (self->endpoint, &proto_stage_limits, meta_frame, NULL);
    const uint8_t *records = NULL;
    size_t size = 0;
    if (!meta || !s_recips_get (meta, &records, &size)) {
        zsys_warning ("fanout: malformed event meta");
        proto_msg_destroy (&meta);
        return;
    }
    audience_t audience = { .ctype = "" };
    proto_msg_u64 (meta, "tn", &audience.tenant);
    proto_msg_u64 (meta, "author", &audience.author);
    proto_msg_str (meta, "ctype", &audience.ctype, &audience.ctype_len);
    audience.mentions = proto_msg_get (meta, "mentions");
    self->event++;
    for (size_t at = 0; at < size; at += STAGE_RECIP_SIZE) {
        uint64_t uid, flags;
        stage_recip_get (records + at, &uid, &flags);
        s_recipient_deliver (self, &audience, uid, flags);
    }
    s_deliveries_send (self, event);
    proto_msg_destroy (&meta);
}

//  Handles one inbox message; false if none was waiting
static bool
s_handle_inbox (self_t *self)
{
    stage_msg_t msg;
    if (stage_msg_recv (&msg, self->inbox))
        return false;
    const stage_frame_t *first = stage_msg_frame (&msg, 1);
    const stage_frame_t *second = stage_msg_frame (&msg, 2);
    if (stage_msg_is (&msg, 0, STAGE_EVENT) && first && second)
        s_handle_event (self, first, second);
    else
    if (stage_msg_is (&msg, 0, STAGE_UP) && first && second)
        s_session_up (self, first, second);
    else
    if (stage_msg_is (&msg, 0, STAGE_DOWN) && first)
        s_session_down (self, first);
    else
    if (stage_msg_is (&msg, 0, STAGE_RESET))
        s_forget_all (self);
    else
        zsys_warning ("fanout: unknown inbox message");
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
//  The fan-out actor

void
fanout_actor (zsock_t *pipe, void *args)
{
    stage_thread_name ("fanout");
    self_t *self = s_self_new (pipe, (const stage_config_t *) args);
    if (self->failed) {
        s_self_destroy (&self);
        stage_actor_failed (pipe);
        return;
    }
    stage_serve (pipe, self->inbox, s_serve_one, self);
    s_self_destroy (&self);
}
