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
    proto_writer_t *sids;       //  scratch: the sids of one reply
    int64_t next_sweep;         //  when to look for silent peers
    bool terminated;            //  $TERM received
    uint64_t dropped;           //  sends to peers that failed
} self_t;

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

//  Writes the route of identity + sid into buffer (ROUTE_MAX bytes);
//  returns it as a frame
static stage_frame_t
s_route_init (byte *buffer, const stage_frame_t *identity, uint64_t sid)
{
    size_t id_size = identity->size;
    buffer [0] = (byte) id_size;
    memcpy (buffer + 1, identity->data, id_size);
    for (int i = 0; i < 8; i++)
        buffer [1 + id_size + i] = (byte) (sid >> (56 - 8 * i));
    return stage_frame_mem (buffer, 1 + id_size + 8);
}

//  Splits a route frame: returns its identity bytes (in the frame) and
//  their size, and the sid; NULL if it is not a route
static const byte *
s_route_parse (const stage_frame_t *route, size_t *id_size, uint64_t *sid)
{
    size_t size = route->size;
    const byte *data = (const byte *) route->data;
    if (size < 9 || (size_t) data [0] + 9 != size)
        return NULL;
    *id_size = data [0];
    *sid = 0;
    for (int i = 0; i < 8; i++)
        *sid = (*sid << 8) | data [1 + data [0] + i];
    return data + 1;
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
    self->sids = proto_writer_new ();
    self->next_sweep = zclock_mono () + 1000;
    if (!bound || !self->inbox || !self->ingest || !self->fanout) {
        self->terminated = true;
        return self;
    }
    self->poller = zpoller_new (pipe, self->front, self->inbox, NULL);
    //  A fan-out that knew an earlier broker's sessions must forget them
    stage_send (self->fanout, (stage_frame_t []) { stage_frame_str (STAGE_RESET) }, 1);
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
        proto_writer_destroy (&self->sids);
        free (self);
        *self_p = NULL;
    }
}

//  Tells fan-out that a session went away
static void
s_send_down (self_t *self, session_t *session)
{
    stage_frame_t down [] = {
        stage_frame_str (STAGE_DOWN),
        stage_frame_mem (zframe_data (session->route), zframe_size (session->route))
    };
    stage_send (self->fanout, down, 2);
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
    stage_frame_t up [] = {
        stage_frame_str (STAGE_UP),
        stage_frame_mem (zframe_data (session->route), zframe_size (session->route)),
        stage_frame_writer (self->writer)
    };
    stage_send (self->fanout, up, 3);
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
    stage_hex (zframe_data (peer->identity), zframe_size (peer->identity), key);
    zhashx_delete (self->peers, key);
}

//  The peer for identity (size bytes), created on first contact
static peer_t *
s_peer_touch (self_t *self, const byte *identity, size_t size)
{
    char key [512 + 1];
    stage_hex (identity, size, key);
    peer_t *peer = (peer_t *) zhashx_lookup (self->peers, key);
    if (!peer) {
        peer = (peer_t *) zmalloc (sizeof (peer_t));
        peer->identity = zframe_new (identity, size);
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

//  Writes the sids [sid] of a reply into self->sids
static void
s_write_sids (self_t *self, uint64_t sid)
{
    proto_writer_reset (self->sids);
    proto_writer_array_begin (self->sids);
    proto_writer_u64 (self->sids, sid);
    proto_writer_array_end (self->sids);
}

//  Sends [payload][sids][notify] to the peer of identity (size bytes);
//  drops the peer if it is gone
static void
s_send_to_peer (self_t *self, const byte *identity, size_t size, stage_frame_t payload,
                stage_frame_t sids, stage_frame_t notify)
{
    stage_frame_t frames [] = { stage_frame_mem (identity, size), payload, sids, notify };
    if (stage_send_parts (self->front, frames, 4) == 0)
        return;
    bool gone = errno == EHOSTUNREACH;
    self->dropped++;
    char key [512 + 1];
    stage_hex (identity, size, key);
    peer_t *peer = (peer_t *) zhashx_lookup (self->peers, key);
    if (peer && gone) {
        zsys_info ("broker: peer %s is gone, dropping its sessions", key);
        s_peer_drop (self, peer);
    }
}

//  Answers a request the broker could not pass on
static void
s_reply_unavailable (self_t *self, const stage_frame_t *identity,
                     const stage_frame_t *payload, uint64_t sid)
{
    uint64_t rid = 0;
    proto_msg_t *request = proto_msg_decode (payload->data, payload->size, NULL);
    if (request)
        proto_msg_u64 (request, "rid", &rid);
    proto_msg_destroy (&request);
    proto_write_error (self->writer, rid, PROTO_ERR_STAGE_UNAVAILABLE, NULL, 0);
    s_write_sids (self, sid);
    s_send_to_peer (self, (const byte *) identity->data, identity->size,
                    stage_frame_writer (self->writer), stage_frame_writer (self->sids),
                    stage_frame_mem ("\x90", 1));
}

//  Reads the optional sid frame of a request, a msgpack unsigned integer;
//  false if it is not one
static bool
s_sid_parse (const stage_frame_t *frame, uint64_t *sid)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    bool valid = frame->size <= 9
              && msgpack_unpack_next (&unpacked, (const char *) frame->data,
                                      frame->size, &offset) == MSGPACK_UNPACK_SUCCESS
              && unpacked.data.type == MSGPACK_OBJECT_POSITIVE_INTEGER;
    if (valid)
        *sid = unpacked.data.via.u64;
    msgpack_unpacked_destroy (&unpacked);
    return valid;
}

//  Stamps a request with its session's ctx and passes it to ingest
static void
s_request_forward (self_t *self, const stage_frame_t *identity, const stage_frame_t *payload,
                   uint64_t sid)
{
    s_peer_touch (self, (const byte *) identity->data, identity->size);
    byte route_bytes [ROUTE_MAX];
    stage_frame_t route = s_route_init (route_bytes, identity, sid);
    char key [ROUTE_MAX * 2 + 1];
    stage_hex (route.data, route.size, key);
    session_t *session = (session_t *) zhashx_lookup (self->sessions, key);
    s_write_ctx (self, session);
    if (stage_forward (self->ingest, &route, self->writer, payload))
        s_reply_unavailable (self, identity, payload, sid);
}

//  A request from a peer: [identity][payload][sid?]; false if none waited
static bool
s_handle_front (self_t *self)
{
    stage_msg_t msg;
    if (stage_msg_recv_parts (&msg, self->front))
        return false;
    size_t size = stage_msg_size (&msg);
    const stage_frame_t *identity = stage_msg_frame (&msg, 0);
    uint64_t sid = 0;
    bool valid = (size == 2 || size == 3) && identity->size <= 255
              && (size == 2 || s_sid_parse (stage_msg_frame (&msg, 2), &sid));
    if (valid)
        s_request_forward (self, identity, stage_msg_frame (&msg, 1), sid);
    stage_msg_close (&msg);
    return true;
}

//  Applies a reply's ctl: {set: {tn, uid, adm}} or {drop: true}
static void
s_apply_ctl (self_t *self, const stage_frame_t *route, const stage_frame_t *ctl)
{
    proto_msg_t *msg = proto_msg_decode (ctl->data, ctl->size, NULL);
    if (!msg)
        return;
    uint64_t sid;
    size_t id_size;
    const byte *identity = s_route_parse (route, &id_size, &sid);
    char key [ROUTE_MAX * 2 + 1];
    stage_hex (route->data, route->size, key);
    session_t *session = (session_t *) zhashx_lookup (self->sessions, key);
    const msgpack_object *set = proto_msg_get (msg, "set");
    bool drop = false;
    proto_msg_bool (msg, "drop", &drop);
    if (session && (drop || set))
        s_session_drop (self, session);
    if (set && identity) {
        session = (session_t *) zmalloc (sizeof (session_t));
        strcpy (session->key, key);
        session->route = zframe_new (route->data, route->size);
        session->sid = sid;
        session->peer = s_peer_touch (self, identity, id_size);
        proto_map_u64 (set, "tn", &session->tenant);
        proto_map_u64 (set, "uid", &session->user);
        proto_map_bool (set, "adm", &session->admin);
        zhashx_insert (self->sessions, key, session);
        zhashx_insert (session->peer->sessions, key, session);
        if (session->user)
            s_send_up (self, session);
    }
    proto_msg_destroy (&msg);
}

//  A (re)started fan-out asks for every session: resends them as UP
static void
s_replay_sessions (self_t *self)
{
    stage_send (self->fanout, (stage_frame_t []) { stage_frame_str (STAGE_RESET) }, 1);
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
s_handle_reply (self_t *self, stage_msg_t *msg)
{
    const stage_frame_t *route = stage_msg_frame (msg, 1);
    const stage_frame_t *reply = stage_msg_frame (msg, 2);
    const stage_frame_t *ctl = stage_msg_frame (msg, 3);
    uint64_t sid;
    size_t id_size;
    const byte *identity = route? s_route_parse (route, &id_size, &sid): NULL;
    if (!identity || !reply || !ctl) {
        zsys_warning ("broker: malformed reply from a stage");
        return;
    }
    if (ctl->size)
        s_apply_ctl (self, route, ctl);
    if (reply->size) {
        s_write_sids (self, sid);
        s_send_to_peer (self, identity, id_size, *reply,
                        stage_frame_writer (self->sids), stage_frame_mem ("\x90", 1));
    }
}

//  A delivery from fan-out: ["D"][identity][event][sids][notify]
static void
s_handle_delivery (self_t *self, stage_msg_t *msg)
{
    const stage_frame_t *identity = stage_msg_frame (msg, 1);
    const stage_frame_t *event = stage_msg_frame (msg, 2);
    const stage_frame_t *sids = stage_msg_frame (msg, 3);
    const stage_frame_t *notify = stage_msg_frame (msg, 4);
    if (identity && event && sids && notify && identity->size <= 255)
        s_send_to_peer (self, (const byte *) identity->data, identity->size,
                        *event, *sids, *notify);
    else
        zsys_warning ("broker: malformed delivery from fan-out");
}

//  A message from a stage; false if none was waiting
static bool
s_handle_inbox (self_t *self)
{
    stage_msg_t msg;
    if (stage_msg_recv (&msg, self->inbox))
        return false;
    if (stage_msg_is (&msg, 0, STAGE_REPLY))
        s_handle_reply (self, &msg);
    else
    if (stage_msg_is (&msg, 0, STAGE_DELIVERY))
        s_handle_delivery (self, &msg);
    else
    if (stage_msg_is (&msg, 0, STAGE_RESYNC))
        s_replay_sessions (self);
    else
        zsys_warning ("broker: unknown inbox message");
    stage_msg_close (&msg);
    return true;
}

//  Handles up to STAGE_DRAIN_MAX waiting messages with handle
static void
s_drain (self_t *self, bool (*handle) (self_t *self))
{
    int handled = 0;
    stage_bundle_begin ();
    while (handled < STAGE_DRAIN_MAX && handle (self))
        handled++;
    stage_bundle_end ();
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
    stage_thread_name ("broker");
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
            s_drain (self, s_handle_front);
        else
        if (which == self->inbox)
            s_drain (self, s_handle_inbox);
        else
        if (zpoller_terminated (self->poller))
            break;
        s_sweep (self);
    }
    s_self_destroy (&self);
}
