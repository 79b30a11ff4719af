/*  =========================================================================
    chorus_client - one DEALER socket to the Chorus API, Lazy Pirate style

    Requests in flight are kept as the exact bytes sent, so a retry after a
    timeout resends them unchanged on a fresh socket, once every session
    that had authenticated has done so again. Replies are matched by rid;
    events are queued (bounded). Nothing from the socket is trusted: every
    payload goes through proto_msg_decode and anything unexpected is
    dropped. See include/chorus/client.h for the contract.
    =========================================================================
*/
#include <czmq.h>
#include <errno.h>
#include "chorus/client.h"

#define CLIENT_TOKEN_MAX     512                 //  bytes in a remembered token
#define CLIENT_MAX_MSG_SIZE  (16 * 1024 * 1024)  //  bigger messages cut the connection
#define CLIENT_RECV_BATCH    1000                //  messages read per wake-up, at most
#define CLIENT_POLL_SLICE    250                 //  msecs per poll, so interrupts are seen

//  A request in flight
typedef struct {
    uint64_t rid;               //  request id, echoed as "re"
    uint64_t sid;               //  session it is for
    void *data;                 //  the request bytes, resent unchanged
    size_t size;                //  bytes in data
    int64_t deadline;           //  zclock_mono when the current attempt expires
    int expiries;               //  attempts that timed out
    bool sent;                  //  written to the current socket
    bool reauthed;              //  already resent once after not_authed
} s_request_t;

//  A reply for the caller, or a request given up on (reply NULL)
typedef struct {
    uint64_t rid;               //  the request it answers
    proto_msg_t *reply;         //  decoded reply, or NULL if abandoned
} s_ready_t;

//  A session on the socket
typedef struct {
    uint64_t sid;               //  session id (0: no sid frame)
    char *token;                //  token to authenticate again, or NULL
    bool needs_auth;            //  authenticate before sending its requests
} s_session_t;

struct _chorus_client_t {
    char *endpoint;             //  API endpoint to (re)connect to
    zsock_t *socket;            //  DEALER to the server, NULL if it could not be made
    zsock_t *monitor;           //  PAIR receiving the socket's connect events, or NULL
    unsigned generation;        //  sockets made so far, names monitor endpoints
    int connects;               //  connections the current socket has made
    proto_writer_t *writer;     //  the request being built by the caller
    proto_writer_t *scratch;    //  sid frames and internal requests
    bool building;              //  writer holds an unfinished request
    uint64_t building_rid;      //  rid written into that request
    uint64_t rid_next;          //  next rid to give out
    s_session_t sessions [CHORUS_CLIENT_MAX_SESSIONS];  //  sessions in use
    size_t session_count;       //  entries used in sessions
    size_t session;             //  index of the selected session
    zlistx_t *requests;         //  s_request_t in flight, oldest first
    zlistx_t *ready;            //  s_ready_t, in arrival order
    zlistx_t *events;           //  proto_msg_t events, oldest first
    size_t max_events;          //  events kept, at most
    uint64_t dropped;           //  events dropped because the queue was full
    int timeout;                //  msecs per attempt
    int retries;                //  resends before giving up
    bool verbose;               //  log drops and retries
    zcert_t *curve_cert;        //  our CURVE certificate, or NULL (no CURVE)
    char *curve_server_key;     //  the server's public key (Z85), with curve_cert
};

static proto_msg_t *s_receive (chorus_client_t *self, uint64_t claim);

//  --------------------------------------------------------------------------
//  Close the socket and its monitor

static void
s_disconnect (chorus_client_t *self)
{
    if (self->socket && self->monitor)
        zmq_socket_monitor (zsock_resolve (self->socket), NULL, 0);
    zsock_destroy (&self->monitor);
    zsock_destroy (&self->socket);
}

//  --------------------------------------------------------------------------
//  Open a DEALER that queues nothing for absent peers, with a monitor that
//  reports its connections (a reconnect means a new, unauthenticated
//  session on the server). Returns 0, or -1 if the endpoint is not valid.

static int
s_connect (chorus_client_t *self)
{
    self->socket = zsock_new (ZMQ_DEALER);
    if (!self->socket)
        return -1;
    zsock_set_immediate (self->socket, 1);
    zsock_set_linger (self->socket, 0);
    zsock_set_rcvhwm (self->socket, 100000);
    zsock_set_maxmsgsize (self->socket, CLIENT_MAX_MSG_SIZE);
    if (self->curve_cert) {
        zcert_apply (self->curve_cert, self->socket);
        zsock_set_curve_serverkey (self->socket, self->curve_server_key);
    }
    char monitor [64];
    snprintf (monitor, sizeof (monitor), "inproc://chorus-client-%p-%u",
              (void *) self, self->generation++);
    if (zmq_socket_monitor (zsock_resolve (self->socket), monitor, ZMQ_EVENT_CONNECTED) == 0) {
        self->monitor = zsock_new (ZMQ_PAIR);
        if (self->monitor && zsock_connect (self->monitor, "%s", monitor) == -1)
            zsock_destroy (&self->monitor);
    }
    self->connects = 0;
    if (zsock_connect (self->socket, "%s", self->endpoint) == -1) {
        s_disconnect (self);
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Destructors for the lists

static void
s_request_destroy (s_request_t **self_p)
{
    if (*self_p) {
        free ((*self_p)->data);
        free (*self_p);
        *self_p = NULL;
    }
}

static void
s_request_list_destroy (void **item)
{
    s_request_destroy ((s_request_t **) item);
}

static void
s_ready_list_destroy (void **item)
{
    s_ready_t *ready = (s_ready_t *) *item;
    if (ready) {
        proto_msg_destroy (&ready->reply);
        free (ready);
        *item = NULL;
    }
}

static void
s_event_list_destroy (void **item)
{
    proto_msg_destroy ((proto_msg_t **) item);
}

//  --------------------------------------------------------------------------
//  Create a client connected to endpoint; NULL if the endpoint is not valid

chorus_client_t *
chorus_client_new (const char *endpoint)
{
    assert (endpoint);
    chorus_client_t *self = (chorus_client_t *) zmalloc (sizeof (chorus_client_t));
    assert (self);
    self->endpoint = strdup (endpoint);
    self->writer = proto_writer_new ();
    self->scratch = proto_writer_new ();
    self->rid_next = 1;
    self->session_count = 1;            //  session 0, selected
    self->requests = zlistx_new ();
    self->ready = zlistx_new ();
    self->events = zlistx_new ();
    zlistx_set_destructor (self->requests, s_request_list_destroy);
    zlistx_set_destructor (self->ready, s_ready_list_destroy);
    zlistx_set_destructor (self->events, s_event_list_destroy);
    self->max_events = CHORUS_CLIENT_MAX_EVENTS;
    self->timeout = CHORUS_CLIENT_TIMEOUT;
    self->retries = CHORUS_CLIENT_RETRIES;
    if (s_connect (self))
        chorus_client_destroy (&self);
    return self;
}

//  --------------------------------------------------------------------------
//  Settings

void
chorus_client_set_timeout (chorus_client_t *self, int msecs)
{
    assert (self);
    self->timeout = msecs > 0? msecs: 1;
}

void
chorus_client_set_retries (chorus_client_t *self, int retries)
{
    assert (self);
    self->retries = retries > 0? retries: 0;
}

void
chorus_client_set_max_events (chorus_client_t *self, size_t max_events)
{
    assert (self);
    self->max_events = max_events;
    while (zlistx_size (self->events) > max_events) {
        zlistx_first (self->events);
        zlistx_delete (self->events, zlistx_cursor (self->events));
        self->dropped++;
    }
}

void
chorus_client_set_verbose (chorus_client_t *self, bool verbose)
{
    assert (self);
    self->verbose = verbose;
}

//  --------------------------------------------------------------------------
//  Sessions

static s_session_t *
s_session_find (chorus_client_t *self, uint64_t sid)
{
    for (size_t i = 0; i < self->session_count; i++)
        if (self->sessions [i].sid == sid)
            return &self->sessions [i];
    return NULL;
}

//  --------------------------------------------------------------------------
//  Select the session the next requests are for; -1 if too many sessions

int
chorus_client_use_session (chorus_client_t *self, uint64_t sid)
{
    assert (self);
    s_session_t *session = s_session_find (self, sid);
    if (!session) {
        if (self->session_count == CHORUS_CLIENT_MAX_SESSIONS)
            return -1;
        session = &self->sessions [self->session_count++];
        session->sid = sid;
    }
    self->session = (size_t) (session - self->sessions);
    return 0;
}

//  --------------------------------------------------------------------------
//  Token of the selected session, or NULL

const char *
chorus_client_token (chorus_client_t *self)
{
    assert (self);
    return self->sessions [self->session].token;
}

//  --------------------------------------------------------------------------
//  Remember (or with NULL, forget) the token of the selected session, so
//  the library can authenticate it again on a new socket

void
chorus_client_set_token (chorus_client_t *self, const char *token)
{
    assert (self);
    s_session_t *session = &self->sessions [self->session];
    free (session->token);
    session->token = token && strlen (token) < CLIENT_TOKEN_MAX? strdup (token): NULL;
}

//  --------------------------------------------------------------------------
//  Write one request to the socket without blocking: [data][sid if not 0].
//  Returns 0, or -1 if the socket cannot take it now.

static int
s_transmit (chorus_client_t *self, uint64_t sid, const void *data, size_t size)
{
    if (!self->socket)
        return -1;
    void *handle = zsock_resolve (self->socket);
    if (zmq_send (handle, data, size, ZMQ_DONTWAIT | (sid? ZMQ_SNDMORE: 0)) == -1)
        return -1;
    if (sid) {
        //  Once the first part is taken, the rest of the message is too
        proto_writer_reset (self->scratch);
        proto_writer_u64 (self->scratch, sid);
        zmq_send (handle, proto_writer_data (self->scratch),
                  proto_writer_size (self->scratch), ZMQ_DONTWAIT);
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Send the requests not yet on the current socket, oldest first, skipping
//  those whose session must authenticate first

static void
s_flush (chorus_client_t *self)
{
    s_request_t *request = (s_request_t *) zlistx_first (self->requests);
    while (request) {
        s_session_t *session = s_session_find (self, request->sid);
        if (!request->sent && !(session && session->needs_auth)) {
            if (s_transmit (self, request->sid, request->data, request->size))
                break;
            request->sent = true;
        }
        request = (s_request_t *) zlistx_next (self->requests);
    }
}

//  True if a request could be sent now if the socket took it
static bool
s_has_sendable (chorus_client_t *self)
{
    s_request_t *request = (s_request_t *) zlistx_first (self->requests);
    while (request) {
        s_session_t *session = s_session_find (self, request->sid);
        if (!request->sent && !(session && session->needs_auth))
            return true;
        request = (s_request_t *) zlistx_next (self->requests);
    }
    return false;
}

//  --------------------------------------------------------------------------
//  Put a reply (or NULL: abandoned) on the ready list

static void
s_ready_add (chorus_client_t *self, uint64_t rid, proto_msg_t **reply_p)
{
    s_ready_t *ready = (s_ready_t *) zmalloc (sizeof (s_ready_t));
    assert (ready);
    ready->rid = rid;
    if (reply_p) {
        ready->reply = *reply_p;
        *reply_p = NULL;
    }
    zlistx_add_end (self->ready, ready);
}

//  --------------------------------------------------------------------------
//  Take the ready entry for rid (0: the oldest); NULL if there is none

static s_ready_t *
s_ready_take (chorus_client_t *self, uint64_t rid)
{
    s_ready_t *ready = (s_ready_t *) zlistx_first (self->ready);
    while (ready && rid && ready->rid != rid)
        ready = (s_ready_t *) zlistx_next (self->ready);
    if (ready)
        zlistx_detach_cur (self->ready);
    return ready;
}

//  Request in flight with this rid, with the list cursor on it; or NULL
static s_request_t *
s_request_find (chorus_client_t *self, uint64_t rid)
{
    s_request_t *request = (s_request_t *) zlistx_first (self->requests);
    while (request && request->rid != rid)
        request = (s_request_t *) zlistx_next (self->requests);
    return request;
}

//  --------------------------------------------------------------------------
//  Queue an event, dropping the oldest if the queue is full

static void
s_event_add (chorus_client_t *self, proto_msg_t **event_p)
{
    if (self->max_events == 0) {
        proto_msg_destroy (event_p);
        self->dropped++;
        return;
    }
    while (zlistx_size (self->events) >= self->max_events) {
        zlistx_first (self->events);
        zlistx_delete (self->events, zlistx_cursor (self->events));
        self->dropped++;
    }
    zlistx_add_end (self->events, *event_p);
    *event_p = NULL;
}

//  --------------------------------------------------------------------------
//  Match a reply to its request: move it to the ready list, or, for a
//  not_authed to a session with a token, schedule one re-auth and resend

static void
s_reply_accept (chorus_client_t *self, proto_msg_t **reply_p)
{
    uint64_t rid = 0;
    proto_msg_u64 (*reply_p, "re", &rid);
    s_request_t *request = rid? s_request_find (self, rid): NULL;
    if (!request) {
        if (self->verbose)
            zsys_debug ("chorus_client: dropped a reply to unknown rid %" PRIu64, rid);
        proto_msg_destroy (reply_p);
        return;
    }
    s_session_t *session = s_session_find (self, request->sid);
    const char *error = chorus_client_error (*reply_p);
    if (error && streq (error, "not_authed")
    &&  session && session->token && !request->reauthed) {
        request->reauthed = true;
        request->sent = false;
        session->needs_auth = true;
        proto_msg_destroy (reply_p);
        return;
    }
    s_ready_add (self, rid, reply_p);
    zlistx_delete (self->requests, zlistx_cursor (self->requests));
}

//  --------------------------------------------------------------------------
//  Decode a server message: replies (a sync of 1,000 messages, a page of
//  long bodies) may be larger than a request, so the stage limits apply.

static proto_msg_t *
s_decode (const void *data, size_t size, const char **why)
{
    return proto_msg_decode_stage (data, size, why);
}

//  --------------------------------------------------------------------------
//  Read one message from the socket and dispatch it. A reply whose rid is
//  claim (not 0) is returned instead; anything malformed is dropped.

static proto_msg_t *
s_receive (chorus_client_t *self, uint64_t claim)
{
    zmsg_t *msg = zmsg_recv (self->socket);
    if (!msg)
        return NULL;
    zframe_t *payload = zmsg_first (msg);
    const char *why = "no frames";
    proto_msg_t *decoded = payload?
        s_decode (zframe_data (payload), zframe_size (payload), &why): NULL;
    zmsg_destroy (&msg);
    uint64_t rid = 0;
    if (!decoded) {
        if (self->verbose)
            zsys_debug ("chorus_client: dropped a malformed message: %s", why);
    }
    else
    if (proto_msg_get (decoded, "ev"))
        s_event_add (self, &decoded);
    else
    if (claim && proto_msg_u64 (decoded, "re", &rid) && rid == claim)
        return decoded;
    else
        s_reply_accept (self, &decoded);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Read the monitor's events: after the first connection of a socket, each
//  new one is a new session to the server, so sessions authenticate again

static void
s_monitor_read (chorus_client_t *self)
{
    while (zsock_events (self->monitor) & ZMQ_POLLIN) {
        zmsg_t *msg = zmsg_recv (self->monitor);
        zframe_t *frame = msg? zmsg_first (msg): NULL;
        uint16_t event = 0;
        if (frame && zframe_size (frame) >= sizeof (event))
            memcpy (&event, zframe_data (frame), sizeof (event));
        zmsg_destroy (&msg);
        if (event != ZMQ_EVENT_CONNECTED || ++self->connects == 1)
            continue;
        if (self->verbose)
            zsys_warning ("chorus_client: reconnected to %s", self->endpoint);
        for (size_t i = 0; i < self->session_count; i++)
            self->sessions [i].needs_auth |= self->sessions [i].token != NULL;
    }
}

//  --------------------------------------------------------------------------
//  Wait, at most until the deadline (-1: none) and CLIENT_POLL_SLICE, for the
//  socket to have input or, if a request is waiting to go, room for it;
//  send and receive what can be

static void
s_pump (chorus_client_t *self, int64_t deadline)
{
    s_flush (self);
    int64_t wait = deadline < 0? CLIENT_POLL_SLICE: deadline - zclock_mono ();
    wait = wait < 0? 0: wait > CLIENT_POLL_SLICE? CLIENT_POLL_SLICE: wait;
    if (!self->socket) {
        zclock_sleep ((int) wait);
        return;
    }
    zmq_pollitem_t items [2] = {
        { zsock_resolve (self->socket), 0, ZMQ_POLLIN, 0 },
        { self->monitor? zsock_resolve (self->monitor): NULL, 0, ZMQ_POLLIN, 0 }
    };
    if (s_has_sendable (self))
        items [0].events |= ZMQ_POLLOUT;
    if (zmq_poll (items, self->monitor? 2: 1, (long) wait) <= 0)
        return;
    if (self->monitor)
        s_monitor_read (self);
    for (int count = 0; count < CLIENT_RECV_BATCH
                     && (zsock_events (self->socket) & ZMQ_POLLIN); count++)
        s_receive (self, 0);
    s_flush (self);
}

//  --------------------------------------------------------------------------
//  Send one internal request now, waiting up to the deadline for the socket
//  to take it and then for its reply. Returns the reply or NULL.

static proto_msg_t *
s_exchange (chorus_client_t *self, uint64_t sid, uint64_t rid, int64_t deadline)
{
    size_t size = proto_writer_size (self->scratch);
    void *data = malloc (size);
    assert (data);
    memcpy (data, proto_writer_data (self->scratch), size);
    bool sent = false;
    proto_msg_t *reply = NULL;
    while (!reply && self->socket && !zsys_interrupted) {
        if (!sent)
            sent = s_transmit (self, sid, data, size) == 0;
        int64_t wait = deadline - zclock_mono ();
        if (wait <= 0)
            break;
        if (wait > CLIENT_POLL_SLICE)
            wait = CLIENT_POLL_SLICE;
        zmq_pollitem_t item = { zsock_resolve (self->socket), 0,
                                (short) (sent? ZMQ_POLLIN: ZMQ_POLLIN | ZMQ_POLLOUT), 0 };
        if (zmq_poll (&item, 1, (long) wait) > 0 && (item.revents & ZMQ_POLLIN))
            reply = s_receive (self, rid);
    }
    free (data);
    return reply;
}

//  --------------------------------------------------------------------------
//  Authenticate a session again with its token. Returns 0 if accepted, 1 if
//  refused (the token is forgotten), -1 if there was no answer.

static int
s_authenticate (chorus_client_t *self, s_session_t *session)
{
    uint64_t rid = self->rid_next++;
    proto_writer_t *writer = self->scratch;
    proto_writer_reset (writer);
    proto_writer_map_begin (writer);
    proto_writer_kv_str (writer, "op", "auth");
    proto_writer_kv_u64 (writer, "rid", rid);
    proto_writer_kv_str (writer, "token", session->token);
    proto_writer_map_end (writer);
    proto_msg_t *reply = s_exchange (self, session->sid, rid, zclock_mono () + self->timeout);
    if (!reply)
        return -1;
    int rc = chorus_client_error (reply)? 1: 0;
    if (rc) {
        zsys_warning ("chorus_client: session %" PRIu64 " lost its authentication: %s",
                      session->sid, chorus_client_error (reply));
        zstr_free (&session->token);
    }
    proto_msg_destroy (&reply);
    return rc;
}

//  --------------------------------------------------------------------------
//  Authenticate the sessions that need it; if the server does not answer,
//  end the current attempt of every request so the socket is replaced

static void
s_reauth_sessions (chorus_client_t *self)
{
    for (size_t i = 0; i < self->session_count; i++) {
        s_session_t *session = &self->sessions [i];
        if (!session->needs_auth)
            continue;
        if (session->token && s_authenticate (self, session) == -1) {
            int64_t now = zclock_mono ();
            s_request_t *request = (s_request_t *) zlistx_first (self->requests);
            for (; request; request = (s_request_t *) zlistx_next (self->requests))
                request->deadline = now;
            return;
        }
        session->needs_auth = false;
    }
}

//  --------------------------------------------------------------------------
//  Replace the socket: requests go again after their sessions authenticate

static void
s_reconnect (chorus_client_t *self)
{
    if (self->verbose)
        zsys_warning ("chorus_client: no reply from %s, reconnecting", self->endpoint);
    s_disconnect (self);
    s_connect (self);
    int64_t deadline = zclock_mono () + self->timeout;
    s_request_t *request = (s_request_t *) zlistx_first (self->requests);
    for (; request; request = (s_request_t *) zlistx_next (self->requests)) {
        request->sent = false;
        request->deadline = deadline;
    }
    for (size_t i = 0; i < self->session_count; i++)
        self->sessions [i].needs_auth = self->sessions [i].token != NULL;
}

//  --------------------------------------------------------------------------
//  Handle requests whose attempt has expired: abandon those out of retries,
//  and reconnect for the others

static void
s_expire (chorus_client_t *self)
{
    int64_t now = zclock_mono ();
    bool retry = false;
    s_request_t *request = (s_request_t *) zlistx_first (self->requests);
    while (request) {
        if (request->deadline <= now && ++request->expiries > self->retries) {
            if (self->verbose)
                zsys_warning ("chorus_client: gave up on request %" PRIu64, request->rid);
            s_ready_add (self, request->rid, NULL);
            //  Deleting moves the cursor back, so _next goes on from here
            zlistx_delete (self->requests, zlistx_cursor (self->requests));
            request = (s_request_t *) zlistx_next (self->requests);
            continue;
        }
        retry |= request->deadline <= now;
        request = (s_request_t *) zlistx_next (self->requests);
    }
    if (retry)
        s_reconnect (self);
}

//  Earliest deadline of the requests in flight
static int64_t
s_next_deadline (chorus_client_t *self)
{
    int64_t deadline = INT64_MAX;
    s_request_t *request = (s_request_t *) zlistx_first (self->requests);
    for (; request; request = (s_request_t *) zlistx_next (self->requests))
        if (request->deadline < deadline)
            deadline = request->deadline;
    return deadline;
}

//  --------------------------------------------------------------------------
//  Wait for the reply to rid (0: to any request). Returns it and sets
//  *rid_p; NULL with *rid_p set if abandoned, with 0 if nothing is waited for.

static proto_msg_t *
s_wait (chorus_client_t *self, uint64_t rid, uint64_t *rid_p)
{
    *rid_p = 0;
    while (true) {
        s_ready_t *ready = s_ready_take (self, rid);
        if (ready) {
            proto_msg_t *reply = ready->reply;
            *rid_p = ready->rid;
            free (ready);
            return reply;
        }
        if (rid? !s_request_find (self, rid): zlistx_size (self->requests) == 0)
            return NULL;
        if (zsys_interrupted) {
            if (rid && s_request_find (self, rid))
                zlistx_delete (self->requests, zlistx_cursor (self->requests));
            return NULL;
        }
        s_reauth_sessions (self);
        int64_t deadline = s_next_deadline (self);
        s_pump (self, deadline);
        if (zclock_mono () >= deadline)
            s_expire (self);
    }
}

//  --------------------------------------------------------------------------
//  Start a request for op (op_len bytes) in the caller's writer

static proto_writer_t *
s_begin (chorus_client_t *self, const char *op, size_t op_len)
{
    self->building_rid = self->rid_next++;
    self->building = true;
    proto_writer_reset (self->writer);
    proto_writer_map_begin (self->writer);
    proto_writer_kv_strn (self->writer, "op", op, op_len);
    proto_writer_kv_u64 (self->writer, "rid", self->building_rid);
    return self->writer;
}

//  --------------------------------------------------------------------------
//  Start a request map for op, with op and a new rid written

proto_writer_t *
chorus_client_begin (chorus_client_t *self, const char *op)
{
    assert (self);
    assert (op);
    return s_begin (self, op, strlen (op));
}

//  --------------------------------------------------------------------------
//  Answer a request the server could not decode ourselves, as the server
//  would (it answers those with re 0, which no caller could match)

static void
s_refuse (chorus_client_t *self, uint64_t rid, const char *why)
{
    proto_error_t code = strstr (why, "UTF-8")? PROTO_ERR_INVALID_UTF8: PROTO_ERR_INVALID_MESSAGE;
    proto_write_error (self->scratch, rid, code, why, 0);
    proto_msg_t *reply = s_decode (proto_writer_data (self->scratch),
                                   proto_writer_size (self->scratch), NULL);
    s_ready_add (self, rid, &reply);
}

//  --------------------------------------------------------------------------
//  Finish the request being built and queue it; returns its rid

uint64_t
chorus_client_post (chorus_client_t *self)
{
    assert (self);
    assert (self->building);
    self->building = false;
    proto_writer_map_end (self->writer);
    const void *data = proto_writer_data (self->writer);
    size_t size = proto_writer_size (self->writer);
    const char *why = NULL;
    if (proto_validate (data, size, &why)) {
        s_refuse (self, self->building_rid, why? why: "invalid request");
        return self->building_rid;
    }
    s_request_t *request = (s_request_t *) zmalloc (sizeof (s_request_t));
    assert (request);
    request->rid = self->building_rid;
    request->sid = self->sessions [self->session].sid;
    request->data = malloc (size);
    assert (request->data);
    memcpy (request->data, data, size);
    request->size = size;
    request->deadline = zclock_mono () + self->timeout;
    zlistx_add_end (self->requests, request);
    s_flush (self);
    return request->rid;
}

//  --------------------------------------------------------------------------
//  Finish, send and wait for the reply; NULL after the retries

proto_msg_t *
chorus_client_call (chorus_client_t *self)
{
    uint64_t rid = chorus_client_post (self);
    return s_wait (self, rid, &rid);
}

//  --------------------------------------------------------------------------
//  Send a complete map without rid and wait for the reply

proto_msg_t *
chorus_client_request (chorus_client_t *self, proto_writer_t *request)
{
    assert (self);
    assert (request);
    proto_msg_t *decoded = proto_msg_decode (proto_writer_data (request),
                                             proto_writer_size (request), NULL);
    const char *op;
    size_t op_len;
    if (!decoded || !proto_msg_str (decoded, "op", &op, &op_len)) {
        proto_msg_destroy (&decoded);
        errno = EINVAL;
        return NULL;
    }
    proto_writer_t *writer = s_begin (self, op, op_len);
    const msgpack_object *root = proto_msg_root (decoded);
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object_kv *field = &root->via.map.ptr [i];
        if (!proto_obj_streq (&field->key, "op") && !proto_obj_streq (&field->key, "rid")) {
            proto_writer_object (writer, &field->key);
            proto_writer_object (writer, &field->val);
        }
    }
    proto_msg_destroy (&decoded);
    return chorus_client_call (self);
}

//  --------------------------------------------------------------------------
//  Next reply to a posted request; see client.h for the NULL cases

proto_msg_t *
chorus_client_collect (chorus_client_t *self, uint64_t *rid_p)
{
    assert (self);
    uint64_t rid;
    proto_msg_t *reply = s_wait (self, 0, &rid);
    if (rid_p)
        *rid_p = rid;
    return reply;
}

//  --------------------------------------------------------------------------
//  Posted requests not collected yet

size_t
chorus_client_pending (chorus_client_t *self)
{
    assert (self);
    return zlistx_size (self->requests) + zlistx_size (self->ready);
}

//  --------------------------------------------------------------------------
//  Next event, waiting up to msecs (-1: forever); NULL on timeout

proto_msg_t *
chorus_client_next_event (chorus_client_t *self, int msecs)
{
    assert (self);
    int64_t deadline = msecs < 0? -1: zclock_mono () + msecs;
    while (zlistx_size (self->events) == 0) {
        if (zsys_interrupted || (deadline >= 0 && zclock_mono () >= deadline))
            return NULL;
        s_reauth_sessions (self);
        s_pump (self, deadline);
    }
    zlistx_first (self->events);
    return (proto_msg_t *) zlistx_detach_cur (self->events);
}

//  --------------------------------------------------------------------------
//  Events dropped because the queue was full

uint64_t
chorus_client_dropped_events (chorus_client_t *self)
{
    assert (self);
    return self->dropped;
}

//  --------------------------------------------------------------------------
//  Destroy the client after giving requests in flight one timeout to finish

void
chorus_client_destroy (chorus_client_t **self_p)
{
    assert (self_p);
    chorus_client_t *self = *self_p;
    if (!self)
        return;
    int64_t deadline = zclock_mono () + self->timeout;
    while (self->socket && zlistx_size (self->requests)
       &&  zclock_mono () < deadline && !zsys_interrupted)
        s_pump (self, deadline);
    zlistx_destroy (&self->requests);
    zlistx_destroy (&self->ready);
    zlistx_destroy (&self->events);
    for (size_t i = 0; i < self->session_count; i++)
        zstr_free (&self->sessions [i].token);
    proto_writer_destroy (&self->writer);
    proto_writer_destroy (&self->scratch);
    s_disconnect (self);
    zcert_destroy (&self->curve_cert);
    free (self->curve_server_key);
    free (self->endpoint);
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Speak CURVE to a server started with --curve-dir: server_cert is its
//  public certificate (DIR/server.cert), client_cert our own secret
//  certificate, whose public half the server has in DIR/clients. Reconnects.
//  Returns 0, or -1 if a certificate cannot be loaded.

int
chorus_client_set_curve (chorus_client_t *self, const char *server_cert,
                         const char *client_cert)
{
    zcert_t *server = zcert_load (server_cert);
    zcert_t *client = zcert_load (client_cert);
    if (!server || !client) {
        zcert_destroy (&server);
        zcert_destroy (&client);
        return -1;
    }
    zcert_destroy (&self->curve_cert);
    free (self->curve_server_key);
    self->curve_cert = client;
    self->curve_server_key = strdup (zcert_public_txt (server));
    zcert_destroy (&server);
    s_disconnect (self);
    return s_connect (self);
}
