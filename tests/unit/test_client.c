/*  =========================================================================
    test_client - chorus_client against a scripted fake server

    The fake server is a ROUTER actor in this process on tcp://127.0.0.1:*.
    Each test sets its script (MODE), drives a client, then reads what the
    server saw (STATS: requests, identical requests, a log of "op:peer:sid").
    =========================================================================
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <czmq.h>
#include "chorus/client.h"

#define TEST_TIMEOUT 150        //  msecs per attempt in these tests

//  The fake server's state
typedef struct {
    zsock_t *pipe;              //  actor pipe
    zsock_t *router;            //  the API front door
    int port;                   //  where it is bound
    zpoller_t *poller;          //  pipe and router
    char mode [32];             //  script in use
    zlistx_t *peers;            //  zframe_t identities, in order of first request
    zchunk_t *first;            //  bytes of the first request since MODE
    int requests;               //  requests since MODE
    int identical;              //  requests equal to the first
    int sends;                  //  "send" requests since MODE
    zlistx_t *held;             //  reverse mode: zmsg_t replies held back
    char log [2048];            //  "op:peer:sid " per request
    bool terminated;            //  $TERM received
} fake_t;

//  --------------------------------------------------------------------------
//  Send [identity][payload][sids][notify] to a peer

static void
s_fake_send (fake_t *self, zframe_t *identity, const void *data, size_t size)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_append (msg, &(zframe_t *) { zframe_dup (identity) });
    zmsg_addmem (msg, data, size);
    zmsg_addmem (msg, "\x91\x00", 2);
    zmsg_addmem (msg, "\x90", 1);
    zmsg_send (&msg, self->router);
}

//  Send an ok reply {re, ok: true, op[, token][, seq]}
static void
s_fake_reply (fake_t *self, zframe_t *identity, uint64_t rid, const char *op)
{
    proto_writer_t *writer = proto_writer_new ();
    proto_writer_map_begin (writer);
    proto_writer_kv_u64 (writer, "re", rid);
    proto_writer_kv_bool (writer, "ok", true);
    proto_writer_kv_str (writer, "op", op);
    if (streq (op, "login"))
        proto_writer_kv_str (writer, "token", "tok-login");
    if (streq (op, "send"))
        proto_writer_kv_u64 (writer, "seq", 42);
    proto_writer_map_end (writer);
    s_fake_send (self, identity, proto_writer_data (writer), proto_writer_size (writer));
    proto_writer_destroy (&writer);
}

//  Send an error reply
static void
s_fake_error (fake_t *self, zframe_t *identity, uint64_t rid, proto_error_t code)
{
    proto_writer_t *writer = proto_writer_new ();
    proto_write_error (writer, rid, code, NULL, 0);
    s_fake_send (self, identity, proto_writer_data (writer), proto_writer_size (writer));
    proto_writer_destroy (&writer);
}

//  Send the event {ev: "message", ch: 1, seq}
static void
s_fake_event (fake_t *self, zframe_t *identity, uint64_t seq)
{
    proto_writer_t *writer = proto_writer_new ();
    proto_writer_map_begin (writer);
    proto_writer_kv_str (writer, "ev", "message");
    proto_writer_kv_u64 (writer, "ch", 1);
    proto_writer_kv_u64 (writer, "seq", seq);
    proto_writer_map_end (writer);
    s_fake_send (self, identity, proto_writer_data (writer), proto_writer_size (writer));
    proto_writer_destroy (&writer);
}

//  --------------------------------------------------------------------------
//  Send everything a broken server might: none of it may reach the caller

static void
s_fake_garbage (fake_t *self, zframe_t *identity)
{
    s_fake_send (self, identity, "\xdd\xff\xff\xff\xff", 5);   //  allocation bomb
    s_fake_send (self, identity, "not msgpack at all", 18);
    s_fake_send (self, identity, "", 0);
    s_fake_send (self, identity, "\x92\x01\x02", 3);            //  an array
    s_fake_send (self, identity, "\x81\xa2" "re" "\xa1x", 6);         //  re is a string
    s_fake_send (self, identity, "\x82\xa2" "re" "\xce\x00\x0f\x42\x3f\xa2" "ok" "\xc3", 13);  //  unknown rid
    s_fake_send (self, identity, "\x81\xa2" "ev" "\xa3\xff\xfe\xfd", 8);   //  invalid UTF-8
    //  Nested deeper than PROTO_MAX_DEPTH
    uint8_t deep [64];
    size_t size = 0;
    deep [size++] = 0x81; deep [size++] = 0xa2; deep [size++] = 'e'; deep [size++] = 'v';
    for (int i = 0; i < 20; i++)
        deep [size++] = 0x91;
    deep [size++] = 0x01;
    s_fake_send (self, identity, deep, size);
    //  Over PROTO_MAX_FRAME
    size_t big = PROTO_MAX_FRAME + 100;
    uint8_t *huge = (uint8_t *) calloc (1, big);
    huge [0] = 0x81; huge [1] = 0xa2; huge [2] = 'e'; huge [3] = 'v';
    huge [4] = 0xdb; huge [5] = 0; huge [6] = 1; huge [7] = 0; huge [8] = 0x5b;
    memset (huge + 9, 'a', big - 9);
    s_fake_send (self, identity, huge, big);
    free (huge);
    //  Only an identity and nothing the client can use
    zmsg_t *msg = zmsg_new ();
    zmsg_append (msg, &(zframe_t *) { zframe_dup (identity) });
    zmsg_addmem (msg, "\xc0", 1);
    zmsg_send (&msg, self->router);
}

//  --------------------------------------------------------------------------
//  Index (from 1) of a peer, added if new

static int
s_fake_peer (fake_t *self, zframe_t *identity)
{
    int index = 1;
    zframe_t *peer = (zframe_t *) zlistx_first (self->peers);
    for (; peer; peer = (zframe_t *) zlistx_next (self->peers), index++)
        if (zframe_eq (peer, identity))
            return index;
    zlistx_add_end (self->peers, zframe_dup (identity));
    return index;
}

//  Count the request and log it
static void
s_fake_note (fake_t *self, zframe_t *identity, zframe_t *payload,
             const char *op, uint64_t sid)
{
    self->requests++;
    if (!self->first)
        self->first = zchunk_new (zframe_data (payload), zframe_size (payload));
    if (zchunk_size (self->first) == zframe_size (payload)
    &&  memcmp (zchunk_data (self->first), zframe_data (payload), zframe_size (payload)) == 0)
        self->identical++;
    size_t used = strlen (self->log);
    snprintf (self->log + used, sizeof (self->log) - used, "%s:%d:%" PRIu64 " ",
              op, s_fake_peer (self, identity), sid);
}

//  --------------------------------------------------------------------------
//  Act out the script for one request. silent: answer nothing;
//  lose-first-send: no answer to the first send; expire: not_authed to the
//  first send; refuse: that, and every auth is refused; garbage: junk
//  before each reply; otherwise echo the op (and send 3 events for "events").

static void
s_fake_script (fake_t *self, zframe_t *identity, uint64_t rid, const char *op)
{
    bool first_send = streq (op, "send") && ++self->sends == 1;
    bool refuse = streq (self->mode, "refuse");
    if (streq (self->mode, "silent"))
        return;
    if (streq (self->mode, "lose-first-send") && first_send)
        return;
    if (streq (self->mode, "welcome") && streq (op, "auth"))
        s_fake_event (self, identity, 1);
    if ((streq (self->mode, "expire") || refuse) && first_send)
        s_fake_error (self, identity, rid, PROTO_ERR_NOT_AUTHED);
    else
    if (refuse && streq (op, "auth"))
        s_fake_error (self, identity, rid, PROTO_ERR_BAD_CREDENTIALS);
    else {
        if (streq (self->mode, "garbage"))
            s_fake_garbage (self, identity);
        if (streq (op, "events"))
            for (uint64_t seq = 1; seq <= 3; seq++)
                s_fake_event (self, identity, seq);
        s_fake_reply (self, identity, rid, op);
    }
}

//  --------------------------------------------------------------------------
//  Reverse mode: hold five requests, then answer them last first

static void
s_fake_reverse (fake_t *self, zframe_t *identity, uint64_t rid)
{
    zlistx_add_end (self->held, (void *) (uintptr_t) rid);
    if (zlistx_size (self->held) < 5)
        return;
    void *item = zlistx_last (self->held);
    for (; item; item = zlistx_prev (self->held))
        s_fake_reply (self, identity, (uint64_t) (uintptr_t) item, "ping");
    zlistx_purge (self->held);
}

//  --------------------------------------------------------------------------
//  Read one request: [identity][payload][sid?]

static void
s_fake_handle (fake_t *self)
{
    zmsg_t *msg = zmsg_recv (self->router);
    zframe_t *identity = zmsg_first (msg);
    zframe_t *payload = zmsg_next (msg);
    zframe_t *sid_frame = zmsg_next (msg);
    proto_msg_t *request = payload?
        proto_msg_decode (zframe_data (payload), zframe_size (payload), NULL): NULL;
    char op [64] = "?";
    uint64_t rid = 0, sid = 0;
    if (request) {
        proto_map_strcpy (proto_msg_root (request), "op", op, sizeof (op));
        proto_msg_u64 (request, "rid", &rid);
        if (sid_frame && zframe_size (sid_frame) == 1)
            sid = zframe_data (sid_frame) [0];
        s_fake_note (self, identity, payload, op, sid);
        if (streq (self->mode, "reverse"))
            s_fake_reverse (self, identity, rid);
        else
            s_fake_script (self, identity, rid, op);
    }
    proto_msg_destroy (&request);
    zmsg_destroy (&msg);
}

//  --------------------------------------------------------------------------
//  Forget what was seen and take a new script

static void
s_fake_reset (fake_t *self, const char *mode)
{
    snprintf (self->mode, sizeof (self->mode), "%s", mode? mode: "echo");
    zchunk_destroy (&self->first);
    self->requests = self->identical = self->sends = 0;
    self->log [0] = 0;
    zlistx_purge (self->peers);
}

//  Bind a new ROUTER on the same port, as a restarted server would
static void
s_fake_restart (fake_t *self)
{
    zpoller_remove (self->poller, self->router);
    zsock_destroy (&self->router);
    self->router = zsock_new (ZMQ_ROUTER);
    zsock_set_router_mandatory (self->router, 1);
    //  libzmq closes the old listener in its I/O thread, a moment later
    int rc = -1;
    for (int attempt = 0; attempt < 100 && rc != self->port; attempt++)
        if ((rc = zsock_bind (self->router, "tcp://127.0.0.1:%d", self->port)) != self->port)
            zclock_sleep (10);
    assert (rc == self->port);
    zpoller_add (self->poller, self->router);
}

//  --------------------------------------------------------------------------
//  Commands: MODE name (answers a signal), RESTART name (a new ROUTER, then
//  as MODE), STATS (answers "iis"), $TERM

static void
s_fake_command (fake_t *self)
{
    char *command, *arg;
    if (zstr_recvx (self->pipe, &command, &arg, NULL) < 1)
        return;
    if (streq (command, "$TERM"))
        self->terminated = true;
    else
    if (streq (command, "MODE") || streq (command, "RESTART")) {
        if (streq (command, "RESTART"))
            s_fake_restart (self);
        s_fake_reset (self, arg);
        zsock_signal (self->pipe, 0);
    }
    else
    if (streq (command, "STATS"))
        zsock_send (self->pipe, "iis", self->requests, self->identical, self->log);
    zstr_free (&command);
    zstr_free (&arg);
}

static void
s_frame_list_destroy (void **item)
{
    zframe_destroy ((zframe_t **) item);
}

//  --------------------------------------------------------------------------
//  The fake server actor; sends its port when ready

static void
s_fake_server (zsock_t *pipe, void *args)
{
    (void) args;
    fake_t self = { .pipe = pipe, .mode = "echo" };
    self.router = zsock_new (ZMQ_ROUTER);
    zsock_set_router_mandatory (self.router, 1);
    self.port = zsock_bind (self.router, "tcp://127.0.0.1:*");
    self.peers = zlistx_new ();
    zlistx_set_destructor (self.peers, s_frame_list_destroy);
    self.held = zlistx_new ();
    zsock_signal (pipe, 0);
    zsock_send (pipe, "i", self.port);
    self.poller = zpoller_new (pipe, self.router, NULL);
    while (!self.terminated) {
        zsock_t *which = (zsock_t *) zpoller_wait (self.poller, -1);
        if (which == pipe)
            s_fake_command (&self);
        else
        if (which == self.router)
            s_fake_handle (&self);
        else
            break;
    }
    zpoller_destroy (&self.poller);
    zlistx_destroy (&self.peers);
    zlistx_destroy (&self.held);
    zchunk_destroy (&self.first);
    zsock_destroy (&self.router);
}

//  ---------------------------------------------------------------------
//  Fixture: a fake server and a client connected to it

typedef struct {
    zactor_t *server;           //  the fake server
    char endpoint [64];         //  where it listens
    chorus_client_t *client;    //  client under test
} fixture_t;

static int
s_setup (void **state)
{
    fixture_t *fixture = (fixture_t *) calloc (1, sizeof (fixture_t));
    fixture->server = zactor_new (s_fake_server, NULL);
    int port = 0;
    zsock_recv (fixture->server, "i", &port);
    snprintf (fixture->endpoint, sizeof (fixture->endpoint), "tcp://127.0.0.1:%d", port);
    fixture->client = chorus_client_new (fixture->endpoint);
    assert_non_null (fixture->client);
    chorus_client_set_timeout (fixture->client, TEST_TIMEOUT);
    chorus_client_set_retries (fixture->client, 2);
    *state = fixture;
    return 0;
}

static int
s_teardown (void **state)
{
    fixture_t *fixture = (fixture_t *) *state;
    chorus_client_destroy (&fixture->client);
    chorus_client_destroy (&fixture->client);     //  idempotent
    zactor_destroy (&fixture->server);
    free (fixture);
    return 0;
}

//  Set the fake server's script
static void
s_mode (fixture_t *fixture, const char *mode)
{
    zstr_sendx (fixture->server, "MODE", mode, NULL);
    zsock_wait (fixture->server);
}

//  Read the fake server's counters; the caller frees *log_p if given
static void
s_stats (fixture_t *fixture, int *requests, int *identical, char **log_p)
{
    char *log = NULL;
    zstr_send (fixture->server, "STATS");
    zsock_recv (fixture->server, "iis", requests, identical, &log);
    if (log_p)
        *log_p = log;
    else
        zstr_free (&log);
}

//  True if the reply's "op" (echoed by the fake) equals op
static bool
s_reply_op_is (proto_msg_t *reply, const char *op)
{
    return reply && proto_obj_streq (proto_msg_get (reply, "op"), op);
}

//  ---------------------------------------------------------------------
//  Tests

static void
test_request_reply (void **state)
{
    fixture_t *fixture = (fixture_t *) *state;
    proto_msg_t *reply = chorus_client_ping (fixture->client);
    assert_true (s_reply_op_is (reply, "ping"));
    assert_null (chorus_client_error (reply));
    uint64_t re = 0;
    assert_true (proto_msg_u64 (reply, "re", &re));
    assert_true (re > 0);
    proto_msg_destroy (&reply);

    //  A map built elsewhere gets a rid; a rid given by the caller is replaced
    proto_writer_t *writer = proto_writer_new ();
    proto_writer_map_begin (writer);
    proto_writer_kv_u64 (writer, "rid", 999);
    proto_writer_kv_str (writer, "op", "echo");
    proto_writer_kv_u64 (writer, "x", 5);
    proto_writer_map_end (writer);
    reply = chorus_client_request (fixture->client, writer);
    assert_true (s_reply_op_is (reply, "echo"));
    assert_true (proto_msg_u64 (reply, "re", &re));
    assert_int_not_equal (re, 999);
    proto_msg_destroy (&reply);

    //  Without an op it is refused locally
    proto_writer_reset (writer);
    proto_writer_map_begin (writer);
    proto_writer_kv_u64 (writer, "x", 5);
    proto_writer_map_end (writer);
    errno = 0;
    assert_null (chorus_client_request (fixture->client, writer));
    assert_int_equal (errno, EINVAL);
    proto_writer_destroy (&writer);

    int requests, identical;
    s_stats (fixture, &requests, &identical, NULL);
    assert_int_equal (requests, 2);
}

static void
test_events_queued (void **state)
{
    fixture_t *fixture = (fixture_t *) *state;
    assert_null (chorus_client_next_event (fixture->client, 20));
    chorus_client_begin (fixture->client, "events");
    proto_msg_t *reply = chorus_client_call (fixture->client);
    assert_true (s_reply_op_is (reply, "events"));
    proto_msg_destroy (&reply);
    for (uint64_t expected = 1; expected <= 3; expected++) {
        proto_msg_t *event = chorus_client_next_event (fixture->client, 0);
        assert_non_null (event);
        uint64_t seq = 0;
        assert_true (proto_msg_u64 (event, "seq", &seq));
        assert_int_equal (seq, expected);
        proto_msg_destroy (&event);
    }
    assert_null (chorus_client_next_event (fixture->client, 20));
    assert_int_equal (chorus_client_dropped_events (fixture->client), 0);

    //  A full queue drops the oldest and counts them
    chorus_client_set_max_events (fixture->client, 2);
    chorus_client_begin (fixture->client, "events");
    reply = chorus_client_call (fixture->client);
    proto_msg_destroy (&reply);
    assert_int_equal (chorus_client_dropped_events (fixture->client), 1);
    proto_msg_t *event = chorus_client_next_event (fixture->client, 0);
    uint64_t seq = 0;
    assert_true (proto_msg_u64 (event, "seq", &seq));
    assert_int_equal (seq, 2);
    proto_msg_destroy (&event);
    //  Unread events are freed with the client (checked by ASan)
}

static void
test_events_waited_for (void **state)
{
    fixture_t *fixture = (fixture_t *) *state;
    //  Events that arrive while nobody waits for a reply
    chorus_client_begin (fixture->client, "events");
    uint64_t rid = chorus_client_post (fixture->client);
    proto_msg_t *event = chorus_client_next_event (fixture->client, 2000);
    assert_non_null (event);
    proto_msg_destroy (&event);
    uint64_t got = 0;
    proto_msg_t *reply = chorus_client_collect (fixture->client, &got);
    assert_int_equal (got, rid);
    proto_msg_destroy (&reply);
}

static void
test_silent_server_retries (void **state)
{
    fixture_t *fixture = (fixture_t *) *state;
    s_mode (fixture, "silent");
    int64_t start = zclock_mono ();
    uint64_t seq = 7;
    proto_msg_t *reply = chorus_client_send (fixture->client, 1, "id-1", "hello", &seq);
    assert_null (reply);
    assert_int_equal (seq, 7);
    assert_string_equal (chorus_client_error (reply), "timeout");
    assert_true (zclock_mono () - start >= 3 * TEST_TIMEOUT);
    int requests, identical;
    s_stats (fixture, &requests, &identical, NULL);
    assert_int_equal (requests, 3);             //  the first attempt and 2 retries
    assert_int_equal (identical, 3);            //  the same bytes each time
    assert_int_equal (chorus_client_pending (fixture->client), 0);
}

static void
test_reconnect_authenticates_first (void **state)
{
    fixture_t *fixture = (fixture_t *) *state;
    s_mode (fixture, "lose-first-send");
    proto_msg_t *reply = chorus_client_auth (fixture->client, "tok-A");
    assert_null (chorus_client_error (reply));
    proto_msg_destroy (&reply);
    assert_string_equal (chorus_client_token (fixture->client), "tok-A");
    uint64_t seq = 0;
    reply = chorus_client_send (fixture->client, 1, "id-2", "hello", &seq);
    assert_null (chorus_client_error (reply));
    assert_int_equal (seq, 42);
    proto_msg_destroy (&reply);
    char *log;
    int requests, identical;
    s_stats (fixture, &requests, &identical, &log);
    //  A new peer (new socket) that authenticates before the resend
    assert_string_equal (log, "auth:1:0 send:1:0 auth:2:0 send:2:0 ");
    zstr_free (&log);
}

static void
test_not_authed_authenticates_again (void **state)
{
    fixture_t *fixture = (fixture_t *) *state;
    s_mode (fixture, "expire");
    proto_msg_t *reply = chorus_client_login (fixture->client, "acme", "alice", "secret-pw");
    assert_null (chorus_client_error (reply));
    proto_msg_destroy (&reply);
    assert_string_equal (chorus_client_token (fixture->client), "tok-login");
    reply = chorus_client_send (fixture->client, 1, "id-3", "hello", NULL);
    assert_null (chorus_client_error (reply));
    proto_msg_destroy (&reply);
    char *log;
    int requests, identical;
    s_stats (fixture, &requests, &identical, &log);
    assert_string_equal (log, "login:1:0 send:1:0 auth:1:0 send:1:0 ");
    zstr_free (&log);
}

static void
test_refused_reauth_forgets_token (void **state)
{
    fixture_t *fixture = (fixture_t *) *state;
    s_mode (fixture, "echo");
    proto_msg_t *reply = chorus_client_auth (fixture->client, "tok-B");
    proto_msg_destroy (&reply);
    //  From now on every auth is refused and the first send gets not_authed
    s_mode (fixture, "refuse");
    reply = chorus_client_send (fixture->client, 1, "id-4", "hello", NULL);
    assert_non_null (reply);
    assert_null (chorus_client_token (fixture->client));
    proto_msg_destroy (&reply);
}

static void
test_server_restart_authenticates_again (void **state)
{
    fixture_t *fixture = (fixture_t *) *state;
    proto_msg_t *reply = chorus_client_auth (fixture->client, "tok-R");
    proto_msg_destroy (&reply);
    //  The client only listens; the socket reconnects by itself
    zstr_sendx (fixture->server, "RESTART", "welcome", NULL);
    zsock_wait (fixture->server);
    proto_msg_t *event = chorus_client_next_event (fixture->client, 5000);
    assert_non_null (event);
    proto_msg_destroy (&event);
    char *log;
    int requests, identical;
    s_stats (fixture, &requests, &identical, &log);
    assert_string_equal (log, "auth:1:0 ");
    zstr_free (&log);
}

static void
test_malformed_input_ignored (void **state)
{
    fixture_t *fixture = (fixture_t *) *state;
    s_mode (fixture, "garbage");
    chorus_client_set_verbose (fixture->client, true);
    for (int i = 0; i < 3; i++) {
        proto_msg_t *reply = chorus_client_ping (fixture->client);
        assert_true (s_reply_op_is (reply, "ping"));
        proto_msg_destroy (&reply);
    }
    assert_null (chorus_client_next_event (fixture->client, 50));
}

static void
test_pipelined_replies_matched (void **state)
{
    fixture_t *fixture = (fixture_t *) *state;
    s_mode (fixture, "reverse");
    uint64_t rids [5];
    for (int i = 0; i < 5; i++) {
        chorus_client_begin (fixture->client, "ping");
        rids [i] = chorus_client_post (fixture->client);
    }
    assert_int_equal (chorus_client_pending (fixture->client), 5);
    for (int i = 4; i >= 0; i--) {
        uint64_t rid = 0;
        proto_msg_t *reply = chorus_client_collect (fixture->client, &rid);
        assert_non_null (reply);
        assert_int_equal (rid, rids [i]);
        uint64_t re = 0;
        assert_true (proto_msg_u64 (reply, "re", &re));
        assert_int_equal (re, rid);
        proto_msg_destroy (&reply);
    }
    uint64_t rid = 99;
    assert_null (chorus_client_collect (fixture->client, &rid));
    assert_int_equal (rid, 0);
}

static void
test_pipelined_requests_abandoned (void **state)
{
    fixture_t *fixture = (fixture_t *) *state;
    s_mode (fixture, "silent");
    uint64_t rids [3];
    for (int i = 0; i < 3; i++) {
        chorus_client_begin (fixture->client, "ping");
        rids [i] = chorus_client_post (fixture->client);
    }
    bool seen [3] = { false, false, false };
    for (int i = 0; i < 3; i++) {
        uint64_t rid = 0;
        assert_null (chorus_client_collect (fixture->client, &rid));
        for (int j = 0; j < 3; j++)
            if (rids [j] == rid) {
                assert_false (seen [j]);
                seen [j] = true;
            }
    }
    assert_true (seen [0] && seen [1] && seen [2]);
    assert_int_equal (chorus_client_pending (fixture->client), 0);
    int requests, identical;
    s_stats (fixture, &requests, &identical, NULL);
    assert_true (requests >= 9);                //  each sent once and retried twice
}

static void
test_sessions_multiplexed (void **state)
{
    fixture_t *fixture = (fixture_t *) *state;
    s_mode (fixture, "lose-first-send");
    chorus_client_t *client = fixture->client;
    assert_int_equal (chorus_client_use_session (client, 3), 0);
    proto_msg_t *reply = chorus_client_auth (client, "tok-3");
    proto_msg_destroy (&reply);
    assert_int_equal (chorus_client_use_session (client, 5), 0);
    reply = chorus_client_auth (client, "tok-5");
    proto_msg_destroy (&reply);
    chorus_client_use_session (client, 3);
    assert_string_equal (chorus_client_token (client), "tok-3");
    reply = chorus_client_send (client, 1, "id-5", "hi", NULL);
    assert_null (chorus_client_error (reply));
    proto_msg_destroy (&reply);
    char *log;
    int requests, identical;
    s_stats (fixture, &requests, &identical, &log);
    //  Both sessions authenticate again on the new socket
    assert_string_equal (log, "auth:1:3 auth:1:5 send:1:3 auth:2:3 auth:2:5 send:2:3 ");
    zstr_free (&log);
    for (uint64_t sid = 6; sid < 6 + CHORUS_CLIENT_MAX_SESSIONS - 3; sid++)
        assert_int_equal (chorus_client_use_session (client, sid), 0);
    assert_int_equal (chorus_client_use_session (client, 100), -1);
}

static void
test_invalid_request_refused_locally (void **state)
{
    fixture_t *fixture = (fixture_t *) *state;
    proto_writer_t *writer = chorus_client_begin (fixture->client, "send");
    proto_writer_kv_u64 (writer, "ch", 1);
    proto_writer_kv_str (writer, "client_msg_id", "id-6");
    proto_writer_kv_strn (writer, "body", "\xff\xfe", 2);
    proto_msg_t *reply = chorus_client_call (fixture->client);
    assert_string_equal (chorus_client_error (reply), "invalid_utf8");
    proto_msg_destroy (&reply);
    int requests, identical;
    s_stats (fixture, &requests, &identical, NULL);
    assert_int_equal (requests, 0);
}

static void
test_unreachable_server (void **state)
{
    (void) state;
    //  Nobody listens: with ZMQ_IMMEDIATE nothing is even queued
    zsock_t *probe = zsock_new (ZMQ_ROUTER);
    int port = zsock_bind (probe, "tcp://127.0.0.1:*");
    zsock_destroy (&probe);
    char *endpoint = zsys_sprintf ("tcp://127.0.0.1:%d", port);
    chorus_client_t *client = chorus_client_new (endpoint);
    zstr_free (&endpoint);
    chorus_client_set_timeout (client, 100);
    chorus_client_set_retries (client, 1);
    int64_t start = zclock_mono ();
    assert_null (chorus_client_ping (client));
    assert_true (zclock_mono () - start >= 200);
    chorus_client_destroy (&client);
    assert_null (chorus_client_new ("not-an-endpoint"));
}

static void
test_helpers (void **state)
{
    (void) state;
    char id [CHORUS_CLIENT_MSG_ID_SIZE], other [CHORUS_CLIENT_MSG_ID_SIZE];
    chorus_client_new_msg_id (id);
    chorus_client_new_msg_id (other);
    assert_int_equal (strlen (id), 36);
    assert_string_not_equal (id, other);
    assert_int_equal (id [8], '-');
    assert_int_equal (id [14], '4');
    assert_true (strchr ("89ab", id [19]) != NULL);

    proto_writer_t *writer = proto_writer_new ();
    proto_write_error (writer, 5, PROTO_ERR_RATE_LIMITED, "slow \"down\"\n", 250);
    proto_msg_t *reply = proto_msg_decode (proto_writer_data (writer),
                                           proto_writer_size (writer), NULL);
    assert_string_equal (chorus_client_error (reply), "rate_limited");
    char *json = chorus_json_encode (proto_msg_root (reply));
    assert_string_equal (json, "{\"re\":5,\"ok\":false,\"error\":\"rate_limited\","
        "\"message\":\"slow \\\"down\\\"\\n\",\"retriable\":true,\"retry_after_ms\":250}");
    free (json);
    proto_msg_destroy (&reply);

    proto_writer_reset (writer);
    proto_writer_map_begin (writer);
    proto_writer_kv_bool (writer, "ok", true);
    proto_writer_str (writer, "list");
    proto_writer_array_begin (writer);
    proto_writer_i64 (writer, -3);
    proto_writer_nil (writer);
    proto_writer_double (writer, 1.5);
    proto_writer_bin (writer, "\x01\xab", 2);
    proto_writer_array_end (writer);
    proto_writer_map_end (writer);
    reply = proto_msg_decode (proto_writer_data (writer), proto_writer_size (writer), NULL);
    assert_null (chorus_client_error (reply));
    json = chorus_json_encode (proto_msg_root (reply));
    assert_string_equal (json, "{\"ok\":true,\"list\":[-3,null,1.5,\"01ab\"]}");
    free (json);
    proto_msg_destroy (&reply);

    proto_writer_reset (writer);
    proto_writer_map_begin (writer);
    proto_writer_kv_str (writer, "error", "brand_new_error");
    proto_writer_map_end (writer);
    reply = proto_msg_decode (proto_writer_data (writer), proto_writer_size (writer), NULL);
    assert_string_equal (chorus_client_error (reply), "unknown");
    proto_msg_destroy (&reply);
    proto_writer_destroy (&writer);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_request_reply, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_events_queued, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_events_waited_for, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_silent_server_retries, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_reconnect_authenticates_first, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_not_authed_authenticates_again, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_refused_reauth_forgets_token, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_server_restart_authenticates_again, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_malformed_input_ignored, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_pipelined_replies_matched, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_pipelined_requests_abandoned, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_sessions_multiplexed, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_invalid_request_refused_locally, s_setup, s_teardown),
        cmocka_unit_test (test_unreachable_server),
        cmocka_unit_test (test_helpers),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
