/*  =========================================================================
    broker - the front door: routes peers' requests in, replies and events out

    Peers send [payload] or [payload][sid]; the broker names the session by
    a route (identity + sid), stamps the request with the session's principal
    and passes it to ingest. Replies come back on its inbox as
    ["R"][route][reply][ctl]; deliveries from fan-out as
    ["D"][identity][event][sids][notify]. Every frame to a peer is
    [payload][sids][notify]. The ROUTER is mandatory: a peer that is gone
    makes the send fail, and its sessions are dropped.
    =========================================================================
*/
#include "broker.h"
#include "security.h"

#define ROUTE_MAX (1 + 255 + 8)

//  A peer socket: an integrator or an edge
typedef struct {
    zframe_t *identity;         //  ZeroMQ routing identity
    int64_t last_seen;          //  zclock_mono of its last message
    zhashx_t *sessions;         //  route key -> session_t (not owned)
} peer_t;

//  An authenticated session on a peer
typedef struct {
    char key [ROUTE_MAX * 2 + 1];   //  route as hex, the table key
    zframe_t *route;            //  route bytes
    peer_t *peer;               //  its peer
    uint64_t tenant;            //  principal: tenant id (0 for admin)
    uint64_t user;              //  principal: user id
    bool admin;                 //  admin session
    uint64_t sid;               //  session id on the peer
} session_t;

typedef struct {
    zsock_t *pipe;              //  actor pipe
    const stage_config_t *config;   //  process configuration
    zsock_t *front;             //  ROUTER for peers
    zsock_t *inbox;             //  replies and deliveries
    zsock_t *ingest;            //  requests out
    zsock_t *fanout;            //  session up/down out
    zpoller_t *poller;          //  front, inbox, pipe
    zhashx_t *peers;            //  identity hex -> peer_t
    zhashx_t *sessions;         //  route hex -> session_t
    proto_writer_t *writer;     //  scratch writer
    int64_t next_sweep;         //  when to look for silent peers
    bool terminated;            //  $TERM received
    uint64_t dropped;           //  sends to peers that failed
} self_t;

static void
s_hex (const byte *data, size_t size, char *out)
{
    static const char digits [] = "0123456789abcdef";
    for (size_t i = 0; i < size; i++) {
        out [i * 2] = digits [data [i] >> 4];
        out [i * 2 + 1] = digits [data [i] & 15];
    }
    out [size * 2] = 0;
}

static void
s_peer_destroy (void **item)
{
    peer_t *peer = (peer_t *) *item;
    if (peer) {
        zframe_destroy (&peer->identity);
        zhashx_destroy (&peer->sessions);
        free (peer);
        *item = NULL;
    }
}

static void
s_session_destroy (void **item)
{
    session_t *session = (session_t *) *item;
    if (session) {
        zframe_destroy (&session->route);
        free (session);
        *item = NULL;
    }
}

//  Builds the route frame for identity + sid
static zframe_t *
s_route_new (zframe_t *identity, uint64_t sid)
{
    size_t id_size = zframe_size (identity);
    byte route [ROUTE_MAX];
    route [0] = (byte) id_size;
    memcpy (route + 1, zframe_data (identity), id_size);
    for (int i = 0; i < 8; i++)
        route [1 + id_size + i] = (byte) (sid >> (56 - 8 * i));
    return zframe_new (route, 1 + id_size + 8);
}

//  Splits a route frame; returns identity frame (new) and sid, or NULL
static zframe_t *
s_route_parse (zframe_t *route, uint64_t *sid)
{
    size_t size = zframe_size (route);
    byte *data = zframe_data (route);
    if (size < 9 || (size_t) data [0] + 9 != size)
        return NULL;
    *sid = 0;
    for (int i = 0; i < 8; i++)
        *sid = (*sid << 8) | data [1 + data [0] + i];
    return zframe_new (data + 1, data [0]);
}

static self_t *
s_self_new (zsock_t *pipe, const stage_config_t *config)
{
    self_t *self = (self_t *) zmalloc (sizeof (self_t));
    self->pipe = pipe;
    self->config = config;
    self->front = zsock_new (ZMQ_ROUTER);
    zsock_set_router_mandatory (self->front, 1);
    zsock_set_sndhwm (self->front, 100000);
    zsock_set_rcvhwm (self->front, 100000);
    zsock_set_sndtimeo (self->front, 0);
    zsock_set_maxmsgsize (self->front, PROTO_MAX_FRAME * 4);
    bool bound = true;
    if (config->curve_dir && security_apply_server (self->front, config->curve_dir))
        bound = false;
    char *endpoints = strdup (config->front_endpoint);
    for (char *save = NULL, *ep = strtok_r (endpoints, ",", &save); ep;
         ep = strtok_r (NULL, ",", &save))
        if (zsock_bind (self->front, "%s", ep) < 0) {
            zsys_error ("broker: cannot bind %s: %s", ep, zmq_strerror (zmq_errno ()));
            bound = false;
        }
    free (endpoints);
    self->inbox = stage_inbox_new (config, config->broker_endpoint);
    self->ingest = stage_outbox_new (config, config->ingest_endpoint, true);
    self->fanout = stage_outbox_new (config, config->fanout_endpoint, false);
    self->peers = zhashx_new ();
    zhashx_set_destructor (self->peers, s_peer_destroy);
    self->sessions = zhashx_new ();
    zhashx_set_destructor (self->sessions, s_session_destroy);
    self->writer = proto_writer_new ();
    self->next_sweep = zclock_mono () + 1000;
    if (!bound || !self->inbox || !self->ingest || !self->fanout) {
        self->terminated = true;
        return self;
    }
    self->poller = zpoller_new (pipe, self->front, self->inbox, NULL);
    //  A fan-out that knew an earlier broker's sessions must forget them
    zstr_send (self->fanout, STAGE_RESET);
    return self;
}

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (self) {
        zpoller_destroy (&self->poller);
        zhashx_destroy (&self->sessions);
        zhashx_destroy (&self->peers);
        zsock_destroy (&self->front);
        zsock_destroy (&self->inbox);
        zsock_destroy (&self->ingest);
        zsock_destroy (&self->fanout);
        proto_writer_destroy (&self->writer);
        free (self);
        *self_p = NULL;
    }
}

//  Tells fan-out that a session went away
static void
s_send_down (self_t *self, session_t *session)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, STAGE_DOWN);
    zmsg_append (msg, &(zframe_t *) { zframe_dup (session->route) });
    if (zmsg_send (&msg, self->fanout))
        zmsg_destroy (&msg);
}

//  Tells fan-out that a session is up as (tenant, user)
static void
s_send_up (self_t *self, session_t *session)
{
    proto_writer_reset (self->writer);
    proto_writer_map_begin (self->writer);
    proto_writer_kv_u64 (self->writer, "tn", session->tenant);
    proto_writer_kv_u64 (self->writer, "uid", session->user);
    proto_writer_map_end (self->writer);
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, STAGE_UP);
    zmsg_append (msg, &(zframe_t *) { zframe_dup (session->route) });
    zmsg_addmem (msg, proto_writer_data (self->writer), proto_writer_size (self->writer));
    if (zmsg_send (&msg, self->fanout))
        zmsg_destroy (&msg);
}

//  Forgets one session
static void
s_session_drop (self_t *self, session_t *session)
{
    if (session->user)
        s_send_down (self, session);
    zhashx_delete (session->peer->sessions, session->key);
    zhashx_delete (self->sessions, session->key);
}

//  Forgets a peer and all its sessions
static void
s_peer_drop (self_t *self, peer_t *peer)
{
    session_t *session = (session_t *) zhashx_first (peer->sessions);
    while (session) {
        s_session_drop (self, session);
        session = (session_t *) zhashx_first (peer->sessions);
    }
    char key [512 + 1];
    s_hex (zframe_data (peer->identity), zframe_size (peer->identity), key);
    zhashx_delete (self->peers, key);
}

//  The peer for identity, created on first contact
static peer_t *
s_peer_touch (self_t *self, zframe_t *identity)
{
    char key [512 + 1];
    s_hex (zframe_data (identity), zframe_size (identity), key);
    peer_t *peer = (peer_t *) zhashx_lookup (self->peers, key);
    if (!peer) {
        peer = (peer_t *) zmalloc (sizeof (peer_t));
        peer->identity = zframe_dup (identity);
        peer->sessions = zhashx_new ();
        zhashx_insert (self->peers, key, peer);
    }
    peer->last_seen = zclock_mono ();
    return peer;
}

//  Writes the stamp ctx {tn, uid, adm} of a session (or an anonymous one)
static void
s_write_ctx (self_t *self, session_t *session)
{
    proto_writer_reset (self->writer);
    proto_writer_map_begin (self->writer);
    proto_writer_kv_u64 (self->writer, "tn", session? session->tenant: 0);
    proto_writer_kv_u64 (self->writer, "uid", session? session->user: 0);
    proto_writer_kv_bool (self->writer, "adm", session? session->admin: false);
    proto_writer_map_end (self->writer);
}

//  Sends [payload][sids][notify] to a peer; drops the peer if it is gone
static void
s_send_to_peer (self_t *self, zframe_t *identity, zframe_t **payload,
                zframe_t **sids, zframe_t **notify)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_append (msg, &(zframe_t *) { zframe_dup (identity) });
    zmsg_append (msg, payload);
    zmsg_append (msg, sids);
    zmsg_append (msg, notify);
    if (zmsg_send (&msg, self->front)) {
        zmsg_destroy (&msg);
        self->dropped++;
        char key [512 + 1];
        s_hex (zframe_data (identity), zframe_size (identity), key);
        peer_t *peer = (peer_t *) zhashx_lookup (self->peers, key);
        if (peer && errno == EHOSTUNREACH) {
            zsys_info ("broker: peer %s is gone, dropping its sessions", key);
            s_peer_drop (self, peer);
        }
    }
}

//  Answers a request the broker could not pass on
static void
s_reply_unavailable (self_t *self, zframe_t *identity, zframe_t *payload, uint64_t sid)
{
    uint64_t rid = 0;
    proto_msg_t *request = proto_msg_decode (zframe_data (payload), zframe_size (payload), NULL);
    if (request)
        proto_msg_u64 (request, "rid", &rid);
    proto_msg_destroy (&request);
    proto_write_error (self->writer, rid, PROTO_ERR_STAGE_UNAVAILABLE, NULL, 0);
    zframe_t *reply = zframe_new (proto_writer_data (self->writer), proto_writer_size (self->writer));
    proto_writer_reset (self->writer);
    proto_writer_array_begin (self->writer);
    proto_writer_u64 (self->writer, sid);
    proto_writer_array_end (self->writer);
    zframe_t *sids = zframe_new (proto_writer_data (self->writer), proto_writer_size (self->writer));
    zframe_t *notify = zframe_new ("\x90", 1);
    s_send_to_peer (self, identity, &reply, &sids, &notify);
}

//  A request from a peer: [identity][payload][sid?]
static void
s_handle_front (self_t *self)
{
    zmsg_t *msg = zmsg_recv (self->front);
    if (!msg)
        return;
    zframe_t *identity = zmsg_pop (msg);
    zframe_t *payload = zmsg_pop (msg);
    zframe_t *sid_frame = zmsg_pop (msg);
    uint64_t sid = 0;
    bool valid = identity && payload && zframe_size (identity) <= 255
              && zmsg_size (msg) == 0;
    if (valid && sid_frame) {
        //  The sid is a msgpack unsigned integer
        msgpack_unpacked unpacked;
        msgpack_unpacked_init (&unpacked);
        size_t offset = 0;
        if (zframe_size (sid_frame) <= 9
        &&  msgpack_unpack_next (&unpacked, (const char *) zframe_data (sid_frame),
                                 zframe_size (sid_frame), &offset) == MSGPACK_UNPACK_SUCCESS
        &&  unpacked.data.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            sid = unpacked.data.via.u64;
        else
            valid = false;
        msgpack_unpacked_destroy (&unpacked);
    }
    if (valid) {
        peer_t *peer = s_peer_touch (self, identity);
        (void) peer;
        zframe_t *route = s_route_new (identity, sid);
        char key [ROUTE_MAX * 2 + 1];
        s_hex (zframe_data (route), zframe_size (route), key);
        session_t *session = (session_t *) zhashx_lookup (self->sessions, key);
        s_write_ctx (self, session);
        if (stage_forward (self->ingest, route, self->writer, payload))
            s_reply_unavailable (self, identity, payload, sid);
        zframe_destroy (&route);
    }
    zframe_destroy (&identity);
    zframe_destroy (&payload);
    zframe_destroy (&sid_frame);
    zmsg_destroy (&msg);
}

//  Applies a reply's ctl: {set: {tn, uid, adm}} or {drop: true}
static void
s_apply_ctl (self_t *self, zframe_t *route, zframe_t *ctl)
{
    proto_msg_t *msg = proto_msg_decode (zframe_data (ctl), zframe_size (ctl), NULL);
    if (!msg)
        return;
    uint64_t sid;
    zframe_t *identity = s_route_parse (route, &sid);
    char key [ROUTE_MAX * 2 + 1];
    s_hex (zframe_data (route), zframe_size (route), key);
    session_t *session = (session_t *) zhashx_lookup (self->sessions, key);
    const msgpack_object *set = proto_msg_get (msg, "set");
    bool drop = false;
    proto_msg_bool (msg, "drop", &drop);
    if (session && (drop || set))
        s_session_drop (self, session);
    if (set && identity) {
        session = (session_t *) zmalloc (sizeof (session_t));
        strcpy (session->key, key);
        session->route = zframe_dup (route);
        session->sid = sid;
        session->peer = s_peer_touch (self, identity);
        proto_map_u64 (set, "tn", &session->tenant);
        proto_map_u64 (set, "uid", &session->user);
        proto_map_bool (set, "adm", &session->admin);
        zhashx_insert (self->sessions, key, session);
        zhashx_insert (session->peer->sessions, key, session);
        if (session->user)
            s_send_up (self, session);
    }
    zframe_destroy (&identity);
    proto_msg_destroy (&msg);
}

//  A (re)started fan-out asks for every session: resends them as UP
static void
s_replay_sessions (self_t *self)
{
    zstr_send (self->fanout, STAGE_RESET);
    size_t count = 0;
    for (session_t *session = (session_t *) zhashx_first (self->sessions); session;
         session = (session_t *) zhashx_next (self->sessions))
        if (session->user) {
            s_send_up (self, session);
            count++;
        }
    zsys_info ("broker: fan-out asked for the session table: %zu sessions sent", count);
}

//  A reply from a stage: ["R"][route][reply][ctl]
static void
s_handle_reply (self_t *self, zmsg_t *msg)
{
    zframe_t *route = zmsg_pop (msg);
    zframe_t *reply = zmsg_pop (msg);
    zframe_t *ctl = zmsg_pop (msg);
    uint64_t sid;
    zframe_t *identity = route? s_route_parse (route, &sid): NULL;
    if (identity && reply && ctl) {
        if (zframe_size (ctl))
            s_apply_ctl (self, route, ctl);
        if (zframe_size (reply)) {
            proto_writer_reset (self->writer);
            proto_writer_array_begin (self->writer);
            proto_writer_u64 (self->writer, sid);
            proto_writer_array_end (self->writer);
            zframe_t *sids = zframe_new (proto_writer_data (self->writer),
                                         proto_writer_size (self->writer));
            zframe_t *notify = zframe_new ("\x90", 1);
            s_send_to_peer (self, identity, &reply, &sids, &notify);
        }
    }
    else
        zsys_warning ("broker: malformed reply from a stage");
    zframe_destroy (&identity);
    zframe_destroy (&route);
    zframe_destroy (&reply);
    zframe_destroy (&ctl);
}

//  A delivery from fan-out: ["D"][identity][event][sids][notify]
static void
s_handle_delivery (self_t *self, zmsg_t *msg)
{
    zframe_t *identity = zmsg_pop (msg);
    zframe_t *event = zmsg_pop (msg);
    zframe_t *sids = zmsg_pop (msg);
    zframe_t *notify = zmsg_pop (msg);
    if (identity && event && sids && notify)
        s_send_to_peer (self, identity, &event, &sids, &notify);
    else
        zsys_warning ("broker: malformed delivery from fan-out");
    zframe_destroy (&identity);
    zframe_destroy (&event);
    zframe_destroy (&sids);
    zframe_destroy (&notify);
}

static void
s_handle_inbox (self_t *self)
{
    zmsg_t *msg = zmsg_recv (self->inbox);
    if (!msg)
        return;
    char *kind = zmsg_popstr (msg);
    if (kind && streq (kind, STAGE_REPLY))
        s_handle_reply (self, msg);
    else
    if (kind && streq (kind, STAGE_DELIVERY))
        s_handle_delivery (self, msg);
    else
    if (kind && streq (kind, STAGE_RESYNC))
        s_replay_sessions (self);
    else
        zsys_warning ("broker: unknown inbox message");
    free (kind);
    zmsg_destroy (&msg);
}

//  Drops peers that have been silent for longer than session_idle_s
static void
s_sweep (self_t *self)
{
    int64_t now = zclock_mono ();
    if (now < self->next_sweep)
        return;
    self->next_sweep = now + 1000;
    int64_t limit = now - (int64_t) self->config->session_idle_s * 1000;
    zlistx_t *silent = zlistx_new ();
    for (peer_t *peer = (peer_t *) zhashx_first (self->peers); peer;
         peer = (peer_t *) zhashx_next (self->peers))
        if (peer->last_seen < limit)
            zlistx_add_end (silent, peer);
    for (peer_t *peer = (peer_t *) zlistx_first (silent); peer;
         peer = (peer_t *) zlistx_next (silent))
        s_peer_drop (self, peer);
    zlistx_destroy (&silent);
}

//  --------------------------------------------------------------------------
//  The broker actor

void
broker_actor (zsock_t *pipe, void *args)
{
    self_t *self = s_self_new (pipe, (const stage_config_t *) args);
    if (self->terminated) {
        s_self_destroy (&self);
        stage_actor_failed (pipe);
        return;
    }
    zsock_signal (pipe, 0);
    while (!self->terminated) {
        zsock_t *which = (zsock_t *) zpoller_wait (self->poller, 500);
        if (which == self->pipe)
            self->terminated = stage_actor_command (self->pipe);
        else
        if (which == self->front)
            for (int i = 0; i < STAGE_DRAIN_MAX && (zsock_events (self->front) & ZMQ_POLLIN); i++)
                s_handle_front (self);
        else
        if (which == self->inbox)
            for (int i = 0; i < STAGE_DRAIN_MAX && (zsock_events (self->inbox) & ZMQ_POLLIN); i++)
                s_handle_inbox (self);
        else
        if (zpoller_terminated (self->poller))
            break;
        s_sweep (self);
    }
    s_self_destroy (&self);
}
