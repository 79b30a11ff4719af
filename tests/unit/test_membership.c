/*  =========================================================================
    test_membership - the membership stage, driven through its sockets

    One actor on a temporary data directory with its own inproc endpoints;
    the test binds PULL sockets where the broker, persistence and fan-out
    would be, and pushes [route][ctx][req] into the actor's inbox as ingest
    would. The world (two tenants, four users) is made once for the group,
    because each password hash costs ~100 ms; every test uses its own
    channel names. The last test restarts the actor on the same directory.
    =========================================================================
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>
#include "membership.h"
#include "../stage_testing.h"

#define TIMEOUT_MS  5000            //  a hung actor fails the test
#define ROUTE       "\x01" "A" "\0\0\0\0\0\0\0\x07"
#define ROUTE_SIZE  10

//  What a request's ctx says about its session
typedef struct {
    uint64_t tn;                    //  tenant id
    uint64_t uid;                   //  user id
    bool adm;                       //  admin session
} session_t;

//  Everything the tests share
typedef struct {
    char dir [64];                  //  temporary data directory
    char endpoints [4][64];         //  inbox, broker, persistence, fanout
    stage_config_t config;          //  the actor's configuration
    zactor_t *actor;                //  the membership actor
    zsock_t *push;                  //  into its inbox
    zsock_t *broker;                //  replies come here
    zsock_t *persistence;           //  forwarded requests come here
    zsock_t *fanout;                //  events come here
    proto_msg_t *ctl;               //  ctl of the last reply, or NULL
    char admin_token [128];         //  from admin.token
    session_t admin;                //  an admin session
    session_t alice, bob, carol;    //  users of tenant acme
    session_t mallory;              //  a user of tenant other
} world_t;

static world_t s_world;
static uint64_t s_rid;
static zlistx_t *s_frames;          //  frames decoded messages point into

//  --------------------------------------------------------------------------
//  Plumbing

//  A PULL socket bound where a stage would be
static zsock_t *
s_pull_bind (const char *endpoint)
{
    zsock_t *sock = zsock_new (ZMQ_PULL);
    assert_non_null (sock);
    assert_int_equal (zsock_bind (sock, "%s", endpoint), 0);
    zsock_set_rcvtimeo (sock, TIMEOUT_MS);
    return sock;
}

//  Starts the actor on the world's directory; connects a PUSH to its inbox
static void
s_actor_start (void)
{
    s_world.actor = stage_actor_new (membership_actor, &s_world.config);
    assert_non_null (s_world.actor);
    s_world.push = zsock_new (ZMQ_PUSH);
    assert_int_equal (zsock_connect (s_world.push, "%s", s_world.endpoints [0]), 0);
}

//  Stops the actor (it flushes affinity and closes its store)
static void
s_actor_stop (void)
{
    zsock_destroy (&s_world.push);
    zactor_destroy (&s_world.actor);
}

//  A new request map {op, rid}; finish it with the kv writers
static proto_writer_t *
s_req (const char *op)
{
    proto_writer_t *writer = proto_writer_new ();
    proto_writer_map_begin (writer);
    proto_writer_kv_str (writer, "op", op);
    proto_writer_kv_u64 (writer, "rid", ++s_rid);
    return writer;
}

//  Sends [route][ctx][req] to the actor; destroys the request writer
static void
s_push (session_t *session, proto_writer_t **writer_p)
{
    proto_writer_t *writer = *writer_p;
    proto_writer_map_end (writer);
    proto_writer_t *ctx = proto_writer_new ();
    proto_writer_map_begin (ctx);
    proto_writer_kv_u64 (ctx, "tn", session->tn);
    proto_writer_kv_u64 (ctx, "uid", session->uid);
    proto_writer_kv_bool (ctx, "adm", session->adm);
    proto_writer_map_end (ctx);
    zmsg_t *msg = zmsg_new ();
    zmsg_addmem (msg, ROUTE, ROUTE_SIZE);
    zmsg_addmem (msg, proto_writer_data (ctx), proto_writer_size (ctx));
    zmsg_addmem (msg, proto_writer_data (writer), proto_writer_size (writer));
    assert_int_equal (stage_testing_send (&msg, s_world.push), 0);
    proto_writer_destroy (&ctx);
    proto_writer_destroy (writer_p);
}

//  Decodes a frame, which is kept until the end (the message points into it)
static proto_msg_t *
s_decode (zframe_t *frame)
{
    zframe_t *kept = zframe_dup (frame);
    zlistx_add_end (s_frames, kept);
    proto_msg_t *msg = proto_msg_decode_stage (zframe_data (kept), zframe_size (kept), NULL);
    assert_non_null (msg);
    return msg;
}

//  Destructor of kept frames
static void
s_frame_destroy (void **item)
{
    zframe_destroy ((zframe_t **) item);
}

//  Sends a request and returns its reply (for rid); keeps the ctl
static proto_msg_t *
s_call (session_t *session, proto_writer_t *writer)
{
    uint64_t rid = s_rid;
    s_push (session, &writer);
    zmsg_t *msg = stage_testing_recv (s_world.broker);
    assert_non_null (msg);
    assert_int_equal (zmsg_size (msg), 4);
    char *kind = zmsg_popstr (msg);
    assert_string_equal (kind, STAGE_REPLY);
    free (kind);
    zframe_t *route = zmsg_pop (msg);
    assert_true (zframe_size (route) == ROUTE_SIZE
              && memcmp (zframe_data (route), ROUTE, ROUTE_SIZE) == 0);
    zframe_t *reply_frame = zmsg_pop (msg);
    zframe_t *ctl_frame = zmsg_pop (msg);
    proto_msg_t *reply = s_decode (reply_frame);
    proto_msg_destroy (&s_world.ctl);
    if (zframe_size (ctl_frame))
        s_world.ctl = s_decode (ctl_frame);
    uint64_t re = 0;
    assert_true (proto_msg_u64 (reply, "re", &re));
    assert_int_equal (re, rid);
    zframe_destroy (&route);
    zframe_destroy (&reply_frame);
    zframe_destroy (&ctl_frame);
    zmsg_destroy (&msg);
    return reply;
}

//  Sends a request that must succeed; returns the reply
static proto_msg_t *
s_call_ok (session_t *session, proto_writer_t *writer)
{
    proto_msg_t *reply = s_call (session, writer);
    bool ok = false;
    const char *error = "";
    size_t len = 0;
    proto_msg_str (reply, "error", &error, &len);
    if (!proto_msg_bool (reply, "ok", &ok) || !ok)
        fail_msg ("request failed: %.*s", (int) len, error);
    return reply;
}

//  Sends a request that must fail with code
static void
s_call_error (session_t *session, proto_writer_t *writer, const char *code)
{
    proto_msg_t *reply = s_call (session, writer);
    bool ok = true;
    const char *error = "";
    size_t len = 0;
    assert_true (proto_msg_bool (reply, "ok", &ok));
    assert_false (ok);
    assert_true (proto_msg_str (reply, "error", &error, &len));
    if (strlen (code) != len || memcmp (code, error, len))
        fail_msg ("expected %s, got %.*s", code, (int) len, error);
    proto_msg_destroy (&reply);
}

//  Reads the next request passed on to persistence; returns its ctx and
//  checks the request bytes are the ones sent
static proto_msg_t *
s_forwarded (void)
{
    zmsg_t *msg = stage_testing_recv (s_world.persistence);
    assert_non_null (msg);
    assert_int_equal (zmsg_size (msg), 3);
    zframe_t *route = zmsg_first (msg);
    assert_true (zframe_size (route) == ROUTE_SIZE
              && memcmp (zframe_data (route), ROUTE, ROUTE_SIZE) == 0);
    proto_msg_t *ctx = s_decode (zmsg_next (msg));
    proto_msg_t *req = s_decode (zmsg_next (msg));
    uint64_t rid = 0;
    assert_true (proto_msg_u64 (req, "rid", &rid));
    assert_int_equal (rid, s_rid);
    proto_msg_destroy (&req);
    zmsg_destroy (&msg);
    return ctx;
}

//  Reads the next event; it must be of kind ev. Returns it, and its meta.
static proto_msg_t *
s_event (const char *ev, proto_msg_t **meta)
{
    zmsg_t *msg = stage_testing_recv (s_world.fanout);
    assert_non_null (msg);
    assert_int_equal (zmsg_size (msg), 3);
    char *kind = zmsg_popstr (msg);
    assert_string_equal (kind, STAGE_EVENT);
    free (kind);
    zframe_t *meta_frame = zmsg_pop (msg);
    zframe_t *event_frame = zmsg_pop (msg);
    proto_msg_t *event = s_decode (event_frame);
    *meta = s_decode (meta_frame);
    const char *name;
    size_t len;
    assert_true (proto_msg_str (event, "ev", &name, &len));
    if (strlen (ev) != len || memcmp (ev, name, len))
        fail_msg ("expected event %s, got %.*s", ev, (int) len, name);
    zframe_destroy (&meta_frame);
    zframe_destroy (&event_frame);
    zmsg_destroy (&msg);
    return event;
}

//  Checks that nothing else is waiting on sock
static void
s_nothing_on (zsock_t *sock)
{
    assert_false (stage_testing_wait (sock, 100));
}

//  --------------------------------------------------------------------------
//  Readers of replies

//  An unsigned field that must be there
static uint64_t
s_u64 (const msgpack_object *map, const char *key)
{
    uint64_t value = 0;
    if (!proto_map_u64 (map, key, &value))
        fail_msg ("%s is not an unsigned integer", key);
    return value;
}

//  A boolean field that must be there
static bool
s_bool (const msgpack_object *map, const char *key)
{
    bool value = false;
    if (!proto_map_bool (map, key, &value))
        fail_msg ("%s is not a boolean", key);
    return value;
}

//  True if the map's key holds the string text
static bool
s_str_is (const msgpack_object *map, const char *key, const char *text)
{
    return proto_obj_streq (proto_map_get (map, key), text);
}

//  A float field that must be there
static double
s_double (const msgpack_object *map, const char *key)
{
    const msgpack_object *obj = proto_map_get (map, key);
    assert_non_null (obj);
    assert_true (obj->type == MSGPACK_OBJECT_FLOAT64 || obj->type == MSGPACK_OBJECT_FLOAT32);
    return obj->via.f64;
}

//  The id of the channel object in a reply
static uint64_t
s_channel_id (proto_msg_t *reply)
{
    const msgpack_object *channel = proto_msg_get (reply, "channel");
    assert_non_null (channel);
    return s_u64 (channel, "id");
}

//  The number of records in a recipient bin (stage.h)
static size_t
s_recip_count (const msgpack_object *recips)
{
    assert_non_null (recips);
    assert_int_equal (recips->type, MSGPACK_OBJECT_BIN);
    assert_int_equal (recips->via.bin.size % STAGE_RECIP_SIZE, 0);
    return recips->via.bin.size / STAGE_RECIP_SIZE;
}

//  The flags of uid in a recipient bin; -1 if uid is not in it
static int
s_recip_flags (const msgpack_object *recips, uint64_t uid)
{
    for (size_t i = 0; i < s_recip_count (recips); i++) {
        uint64_t id, flags;
        stage_recip_get ((const uint8_t *) recips->via.bin.ptr + i * STAGE_RECIP_SIZE, &id, &flags);
        if (id == uid)
            return (int) flags;
    }
    return -1;
}

//  The array at key as a list of u64, compared with the expected ids
static void
s_assert_ids (const msgpack_object *array, const uint64_t *ids, size_t count)
{
    assert_non_null (array);
    assert_int_equal (array->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal (array->via.array.size, count);
    for (size_t i = 0; i < count; i++)
        assert_int_equal (array->via.array.ptr [i].via.u64, ids [i]);
}

//  --------------------------------------------------------------------------
//  Shortcuts for common requests

//  Creates a channel, reads its channel_joined event; returns its id
static uint64_t
s_channel_create (session_t *session, const char *name, bool is_private)
{
    proto_writer_t *req = s_req ("channel_create");
    proto_writer_kv_str (req, "name", name);
    proto_writer_kv_bool (req, "private", is_private);
    proto_msg_t *reply = s_call_ok (session, req);
    uint64_t id = s_channel_id (reply);
    proto_msg_destroy (&reply);
    proto_msg_t *meta, *event = s_event ("channel_joined", &meta);
    proto_msg_destroy (&event);
    proto_msg_destroy (&meta);
    return id;
}

//  A new request {op, rid, ch}
static proto_writer_t *
s_req_ch (const char *op, uint64_t ch)
{
    proto_writer_t *req = s_req (op);
    proto_writer_kv_u64 (req, "ch", ch);
    return req;
}

//  Joins a channel (the caller reads or skips the events)
static void
s_join (session_t *session, uint64_t ch)
{
    proto_msg_t *reply = s_call_ok (session, s_req_ch ("channel_join", ch));
    proto_msg_destroy (&reply);
}

//  Reads and drops n events
static void
s_skip_events (size_t n)
{
    zmsg_t *msg;
    for (size_t i = 0; i < n; i++) {
        msg = stage_testing_recv (s_world.fanout);
        assert_non_null (msg);
        zmsg_destroy (&msg);
    }
}

//  A new send request
static proto_writer_t *
s_req_send (uint64_t ch, const char *body, const char *cmid)
{
    proto_writer_t *req = s_req_ch ("send", ch);
    proto_writer_kv_str (req, "body", body);
    proto_writer_kv_str (req, "client_msg_id", cmid);
    return req;
}

//  A new dm_open request with these ids
static proto_writer_t *
s_req_dm (const uint64_t *ids, size_t count)
{
    proto_writer_t *req = s_req ("dm_open");
    proto_writer_str (req, "users");
    proto_writer_array_begin (req);
    for (size_t i = 0; i < count; i++)
        proto_writer_u64 (req, ids [i]);
    proto_writer_array_end (req);
    return req;
}

//  A new user_create request; display_name is the handle
static proto_writer_t *
s_req_user_create (const char *tenant, const char *handle, const char *password)
{
    proto_writer_t *req = s_req ("user_create");
    proto_writer_kv_str (req, "tenant", tenant);
    proto_writer_kv_str (req, "handle", handle);
    proto_writer_kv_str (req, "display_name", handle);
    proto_writer_kv_str (req, "password", password);
    return req;
}

//  Creates a user (password "password-1"); sets session->uid
static void
s_user_create (const char *tenant, const char *handle, session_t *session)
{
    proto_msg_t *reply = s_call_ok (&s_world.admin,
                                    s_req_user_create (tenant, handle, "password-1"));
    const msgpack_object *user = proto_msg_get (reply, "user");
    assert_true (s_str_is (user, "handle", handle));
    assert_false (s_bool (user, "bot"));
    session->uid = s_u64 (user, "id");
    proto_msg_destroy (&reply);
}

//  Creates a tenant as admin; returns its id
static uint64_t
s_tenant_create (const char *name)
{
    proto_writer_t *req = s_req ("tenant_create");
    proto_writer_kv_str (req, "name", name);
    proto_msg_t *reply = s_call_ok (&s_world.admin, req);
    const msgpack_object *tenant = proto_msg_get (reply, "tenant");
    assert_true (s_str_is (tenant, "name", name));
    uint64_t id = s_u64 (tenant, "id");
    proto_msg_destroy (&reply);
    return id;
}

//  Reads the admin token file; checks mode 0600 and the final newline
static void
s_admin_token_read (void)
{
    char *path = zsys_sprintf ("%s/%s", s_world.dir, MEMBERSHIP_ADMIN_FILE);
    struct stat st;
    assert_int_equal (stat (path, &st), 0);
    assert_int_equal (st.st_mode & 0777, 0600);
    FILE *file = fopen (path, "r");
    assert_non_null (file);
    assert_non_null (fgets (s_world.admin_token, sizeof (s_world.admin_token), file));
    fclose (file);
    free (path);
    size_t len = strlen (s_world.admin_token);
    assert_true (len > 8 && s_world.admin_token [len - 1] == '\n');
    s_world.admin_token [len - 1] = 0;
    assert_memory_equal (s_world.admin_token, "chr_adm_", 8);
}

//  --------------------------------------------------------------------------
//  The world: tenants acme (alice, bob, carol) and other (mallory)

static int
s_world_setup (void **state)
{
    (void) state;
    static int instance;
    instance++;
    s_frames = zlistx_new ();
    zlistx_set_destructor (s_frames, s_frame_destroy);
    strcpy (s_world.dir, "/tmp/test-membership-XXXXXX");
    assert_non_null (mkdtemp (s_world.dir));
    const char *names [4] = { "inbox", "broker", "persistence", "fanout" };
    for (int i = 0; i < 4; i++)
        snprintf (s_world.endpoints [i], sizeof (s_world.endpoints [i]),
                  "inproc://test-membership-%d-%d-%s", getpid (), instance, names [i]);
    s_world.config = (stage_config_t) {
        .data_dir = s_world.dir, .membership_endpoint = s_world.endpoints [0],
        .broker_endpoint = s_world.endpoints [1],
        .persistence_endpoint = s_world.endpoints [2],
        .fanout_endpoint = s_world.endpoints [3]
    };
    s_world.broker = s_pull_bind (s_world.endpoints [1]);
    s_world.persistence = s_pull_bind (s_world.endpoints [2]);
    s_world.fanout = s_pull_bind (s_world.endpoints [3]);
    s_actor_start ();
    s_admin_token_read ();
    s_world.admin = (session_t) { 0, 0, true };
    s_world.alice.tn = s_world.bob.tn = s_world.carol.tn = s_tenant_create ("acme");
    s_world.mallory.tn = s_tenant_create ("other");
    s_user_create ("acme", "alice", &s_world.alice);
    s_user_create ("acme", "bob", &s_world.bob);
    s_user_create ("acme", "carol", &s_world.carol);
    s_user_create ("other", "mallory", &s_world.mallory);
    return 0;
}

static int
s_world_teardown (void **state)
{
    (void) state;
    s_actor_stop ();
    proto_msg_destroy (&s_world.ctl);
    zsock_destroy (&s_world.broker);
    zsock_destroy (&s_world.persistence);
    zsock_destroy (&s_world.fanout);
    zlistx_destroy (&s_frames);
    char *command = zsys_sprintf ("rm -rf '%s'", s_world.dir);
    assert_int_equal (system (command), 0);
    free (command);
    return 0;
}

//  Tokens kept for the restart test
static char s_bot_token [128];      //  bob's API token
static char s_carol_token [128];    //  carol's session token
static char s_revoked_token [128];  //  alice's session token, logged out

//  Sends auth with token; returns the reply
static proto_msg_t *
s_auth (const char *token)
{
    session_t anon = { 0 };
    proto_writer_t *req = s_req ("auth");
    proto_writer_kv_str (req, "token", token);
    return s_call (&anon, req);
}

//  Sends login; returns the reply
static proto_msg_t *
s_login (const char *tenant, const char *handle, const char *password)
{
    session_t anon = { 0 };
    proto_writer_t *req = s_req ("login");
    proto_writer_kv_str (req, "tenant", tenant);
    proto_writer_kv_str (req, "handle", handle);
    proto_writer_kv_str (req, "password", password);
    return s_call (&anon, req);
}

//  Checks a reply's error code
static void
s_assert_error (proto_msg_t **reply_p, const char *code)
{
    assert_true (s_str_is (proto_msg_root (*reply_p), "error", code));
    proto_msg_destroy (reply_p);
}

//  Checks the last ctl is {set: {tn, uid, adm}}
static void
s_assert_ctl_set (uint64_t tn, uint64_t uid, bool adm)
{
    assert_non_null (s_world.ctl);
    const msgpack_object *set = proto_msg_get (s_world.ctl, "set");
    assert_non_null (set);
    assert_int_equal (s_u64 (set, "tn"), tn);
    assert_int_equal (s_u64 (set, "uid"), uid);
    assert_true (s_bool (set, "adm") == adm);
}

//  --------------------------------------------------------------------------
//  Admin token, admin operations, who may use them

static void
test_admin (void **state)
{
    (void) state;
    session_t anon = { 0 };
    proto_msg_t *reply = s_auth (s_world.admin_token);
    assert_true (s_bool (proto_msg_root (reply), "admin"));
    s_assert_ctl_set (0, 0, true);
    proto_msg_destroy (&reply);

    //  Only an admin session or the admin token may administer
    proto_writer_t *req = s_req ("tenant_create");
    proto_writer_kv_str (req, "name", "evil");
    s_call_error (&anon, req, "forbidden");
    req = s_req ("tenant_create");
    proto_writer_kv_str (req, "name", "evil");
    s_call_error (&s_world.alice, req, "forbidden");
    req = s_req ("tenant_create");
    proto_writer_kv_str (req, "name", "evil");
    proto_writer_kv_str (req, "token", "chr_adm_forged");
    s_call_error (&anon, req, "forbidden");
    req = s_req ("tenant_create");
    proto_writer_kv_str (req, "name", "by-token");
    proto_writer_kv_str (req, "token", s_world.admin_token);
    reply = s_call_ok (&anon, req);
    proto_msg_destroy (&reply);

    //  Names: rules and uniqueness
    req = s_req ("tenant_create");
    proto_writer_kv_str (req, "name", "acme");
    s_call_error (&s_world.admin, req, "name_taken");
    req = s_req ("tenant_create");
    proto_writer_kv_str (req, "name", "Not Valid");
    s_call_error (&s_world.admin, req, "invalid_args");

    reply = s_call_ok (&s_world.admin, s_req ("tenant_list"));
    const msgpack_object *tenants = proto_msg_get (reply, "tenants");
    assert_int_equal (tenants->via.array.size, 3);
    assert_true (s_str_is (&tenants->via.array.ptr [0], "name", "acme"));
    assert_true (s_str_is (&tenants->via.array.ptr [2], "name", "by-token"));
    proto_msg_destroy (&reply);

    //  user_create checks its arguments before hashing anything
    s_call_error (&s_world.admin, s_req_user_create ("acme", "Bad Handle", "password-1"), "invalid_args");
    s_call_error (&s_world.admin, s_req_user_create ("acme", "dave", "short"), "invalid_args");
    s_call_error (&s_world.admin, s_req_user_create ("nowhere", "dave", "password-1"), "tenant_not_found");
    s_call_error (&s_world.admin, s_req_user_create ("acme", "alice", "password-1"), "name_taken");
    req = s_req ("token_create");
    proto_writer_kv_str (req, "tenant", "acme");
    proto_writer_kv_str (req, "handle", "nobody");
    s_call_error (&s_world.admin, req, "user_not_found");

    //  An admin session only administers
    s_call_error (&s_world.admin, s_req ("user_list"), "forbidden");
    s_call_error (&s_world.admin, s_req ("channel_list"), "forbidden");
    //  A session with no user may not use user operations
    s_call_error (&anon, s_req ("channel_list"), "not_authed");
    session_t ghost = { s_world.alice.tn, 999, false };
    s_call_error (&ghost, s_req ("user_list"), "not_authed");
}

//  --------------------------------------------------------------------------
//  login, auth with session and API tokens, logout

static void
test_login_and_tokens (void **state)
{
    (void) state;
    proto_msg_t *reply = s_login ("acme", "alice", "password-1");
    assert_true (s_bool (proto_msg_root (reply), "ok"));
    const char *token;
    size_t len;
    assert_true (proto_msg_str (reply, "token", &token, &len));
    assert_true (len > 40 && len < sizeof (s_revoked_token) && memcmp (token, "chr_usr_", 8) == 0);
    memcpy (s_revoked_token, token, len);
    s_revoked_token [len] = 0;
    assert_int_equal (s_u64 (proto_msg_get (reply, "user"), "id"), s_world.alice.uid);
    assert_true (s_str_is (proto_msg_get (reply, "tenant"), "name", "acme"));
    assert_int_equal (s_u64 (proto_msg_get (reply, "tenant"), "id"), s_world.alice.tn);
    s_assert_ctl_set (s_world.alice.tn, s_world.alice.uid, false);
    proto_msg_destroy (&reply);

    reply = s_login ("acme", "alice", "password-2");
    s_assert_error (&reply, "bad_credentials");
    assert_null (s_world.ctl);
    reply = s_login ("acme", "nobody", "password-1");
    s_assert_error (&reply, "bad_credentials");
    reply = s_login ("nowhere", "alice", "password-1");
    s_assert_error (&reply, "tenant_not_found");

    //  auth with the session token
    reply = s_auth (s_revoked_token);
    assert_true (s_str_is (proto_msg_get (reply, "user"), "handle", "alice"));
    assert_true (s_str_is (proto_msg_get (reply, "tenant"), "name", "acme"));
    s_assert_ctl_set (s_world.alice.tn, s_world.alice.uid, false);
    proto_msg_destroy (&reply);

    //  An API token for bob
    proto_writer_t *req = s_req ("token_create");
    proto_writer_kv_str (req, "tenant", "acme");
    proto_writer_kv_str (req, "handle", "bob");
    reply = s_call_ok (&s_world.admin, req);
    assert_true (proto_msg_str (reply, "token", &token, &len));
    assert_true (len < sizeof (s_bot_token) && memcmp (token, "chr_bot_", 8) == 0);
    memcpy (s_bot_token, token, len);
    s_bot_token [len] = 0;
    proto_msg_destroy (&reply);
    reply = s_auth (s_bot_token);
    assert_int_equal (s_u64 (proto_msg_get (reply, "user"), "id"), s_world.bob.uid);
    s_assert_ctl_set (s_world.bob.tn, s_world.bob.uid, false);
    proto_msg_destroy (&reply);
    reply = s_auth ("chr_usr_forged");
    s_assert_error (&reply, "bad_credentials");

    //  No user or bot token is an admin credential
    req = s_req ("tenant_list");
    proto_writer_kv_str (req, "token", s_bot_token);
    session_t anon = { 0 };
    s_call_error (&anon, req, "forbidden");

    //  logout revokes only the caller's own token
    req = s_req ("logout");
    proto_writer_kv_str (req, "token", s_bot_token);
    reply = s_call_ok (&s_world.alice, req);
    proto_msg_destroy (&reply);
    reply = s_auth (s_bot_token);
    assert_true (s_bool (proto_msg_root (reply), "ok"));
    proto_msg_destroy (&reply);
    req = s_req ("logout");
    proto_writer_kv_str (req, "token", s_revoked_token);
    reply = s_call_ok (&s_world.alice, req);
    assert_true (s_bool (proto_msg_root (s_world.ctl), "drop"));
    proto_msg_destroy (&reply);
    reply = s_auth (s_revoked_token);
    s_assert_error (&reply, "bad_credentials");

    //  carol's session token stays valid (checked after the restart)
    reply = s_login ("acme", "carol", "password-1");
    assert_true (proto_msg_str (reply, "token", &token, &len));
    memcpy (s_carol_token, token, len);
    s_carol_token [len] = 0;
    proto_msg_destroy (&reply);
}

//  --------------------------------------------------------------------------
//  Create, browse, join, leave, invite, members, typing

static void
test_channels (void **state)
{
    (void) state;
    proto_writer_t *req = s_req ("channel_create");
    proto_writer_kv_str (req, "name", "general");
    proto_msg_t *reply = s_call_ok (&s_world.alice, req);
    const msgpack_object *channel = proto_msg_get (reply, "channel");
    uint64_t general = s_u64 (channel, "id");
    assert_true (s_str_is (channel, "name", "general"));
    assert_true (s_str_is (channel, "type", "public"));
    assert_int_equal (s_u64 (channel, "members"), 1);
    assert_false (s_bool (channel, "muted"));
    assert_false (s_bool (channel, "notify_always"));
    assert_true (s_double (channel, "affinity") == 0.0);
    assert_null (proto_map_get (channel, "member_ids"));
    proto_msg_destroy (&reply);
    //  The creator gets channel_joined, with author 0
    proto_msg_t *meta, *event = s_event ("channel_joined", &meta);
    assert_int_equal (s_u64 (proto_msg_get (event, "channel"), "id"), general);
    assert_int_equal (s_u64 (proto_msg_root (meta), "author"), 0);
    assert_int_equal (s_u64 (proto_msg_root (meta), "tn"), s_world.alice.tn);
    assert_true (s_str_is (proto_msg_root (meta), "ctype", "public"));
    assert_true (s_recip_flags (proto_msg_get (meta, "recips"), s_world.alice.uid) >= 0);
    assert_int_equal (s_recip_count (proto_msg_get (meta, "recips")), 1);
    proto_msg_destroy (&event);
    proto_msg_destroy (&meta);

    req = s_req ("channel_create");
    proto_writer_kv_str (req, "name", "general");
    s_call_error (&s_world.bob, req, "name_taken");
    req = s_req ("channel_create");
    proto_writer_kv_str (req, "name", "No Spaces");
    s_call_error (&s_world.bob, req, "invalid_args");

    //  bob browses, joins (twice), and alice hears of it once
    reply = s_call_ok (&s_world.bob, s_req ("channel_browse"));
    const msgpack_object *channels = proto_msg_get (reply, "channels");
    assert_int_equal (channels->via.array.size, 1);
    assert_false (s_bool (&channels->via.array.ptr [0], "joined"));
    proto_msg_destroy (&reply);
    reply = s_call_ok (&s_world.bob, s_req_ch ("channel_join", general));
    assert_int_equal (s_u64 (proto_msg_get (reply, "channel"), "members"), 2);
    proto_msg_destroy (&reply);
    event = s_event ("channel_joined", &meta);
    assert_int_equal (s_recip_flags (proto_msg_get (meta, "recips"), s_world.bob.uid) & 1, 1);
    proto_msg_destroy (&event);
    proto_msg_destroy (&meta);
    event = s_event ("member_joined", &meta);
    assert_int_equal (s_u64 (proto_msg_root (event), "ch"), general);
    assert_int_equal (s_u64 (proto_msg_root (event), "user"), s_world.bob.uid);
    assert_true (s_recip_flags (proto_msg_get (meta, "recips"), s_world.alice.uid) >= 0);
    assert_int_equal (s_recip_flags (proto_msg_get (meta, "recips"), s_world.bob.uid), -1);
    proto_msg_destroy (&event);
    proto_msg_destroy (&meta);
    s_join (&s_world.bob, general);
    s_nothing_on (s_world.fanout);
    reply = s_call_ok (&s_world.bob, s_req ("channel_browse"));
    assert_true (s_bool (&proto_msg_get (reply, "channels")->via.array.ptr [0], "joined"));
    proto_msg_destroy (&reply);

    //  Anyone in the tenant may list a public channel's members
    reply = s_call_ok (&s_world.carol, s_req_ch ("channel_members", general));
    const msgpack_object *members = proto_msg_get (reply, "members");
    assert_int_equal (members->via.array.size, 2);
    assert_true (s_str_is (&members->via.array.ptr [0], "handle", "alice"));
    assert_true (s_str_is (&members->via.array.ptr [1], "display_name", "bob"));
    proto_msg_destroy (&reply);

    //  bob leaves; alice is told
    reply = s_call_ok (&s_world.bob, s_req_ch ("channel_leave", general));
    proto_msg_destroy (&reply);
    event = s_event ("member_left", &meta);
    assert_int_equal (s_u64 (proto_msg_root (event), "user"), s_world.bob.uid);
    assert_int_equal (s_recip_count (proto_msg_get (meta, "recips")), 1);
    proto_msg_destroy (&event);
    proto_msg_destroy (&meta);

    //  alice invites carol; carol gets channel_joined, alice member_joined
    req = s_req_ch ("channel_invite", general);
    proto_writer_kv_u64 (req, "user", s_world.carol.uid);
    reply = s_call_ok (&s_world.alice, req);
    proto_msg_destroy (&reply);
    event = s_event ("channel_joined", &meta);
    assert_true (s_recip_flags (proto_msg_get (meta, "recips"), s_world.carol.uid) >= 0);
    proto_msg_destroy (&event);
    proto_msg_destroy (&meta);
    s_skip_events (1);
    req = s_req_ch ("channel_invite", general);
    proto_writer_kv_u64 (req, "user", 999);
    s_call_error (&s_world.alice, req, "user_not_found");
    req = s_req_ch ("channel_invite", general);
    proto_writer_kv_u64 (req, "user", s_world.alice.uid);
    s_call_error (&s_world.bob, req, "not_in_channel");

    reply = s_call_ok (&s_world.carol, s_req ("user_list"));
    const msgpack_object *users = proto_msg_get (reply, "users");
    assert_int_equal (users->via.array.size, 3);
    assert_true (s_str_is (&users->via.array.ptr [2], "handle", "carol"));
    proto_msg_destroy (&reply);

    //  typing: members only; the others hear it, not the typist
    reply = s_call_ok (&s_world.alice, s_req_ch ("typing", general));
    proto_msg_destroy (&reply);
    event = s_event ("typing", &meta);
    assert_int_equal (s_u64 (proto_msg_root (event), "user"), s_world.alice.uid);
    assert_int_equal (s_recip_flags (proto_msg_get (meta, "recips"), s_world.alice.uid), -1);
    assert_true (s_recip_flags (proto_msg_get (meta, "recips"), s_world.carol.uid) >= 0);
    proto_msg_destroy (&event);
    proto_msg_destroy (&meta);
    s_call_error (&s_world.bob, s_req_ch ("typing", general), "not_in_channel");
    s_nothing_on (s_world.fanout);
}

//  --------------------------------------------------------------------------
//  Private channels and other tenants' channels are invisible

static void
test_visibility (void **state)
{
    (void) state;
    uint64_t secret = s_channel_create (&s_world.alice, "secret", true);
    uint64_t lobby = s_channel_create (&s_world.alice, "lobby", false);
    const char *ops [] = { "channel_join", "channel_members", "channel_leave", "typing",
                           "history", "channel_settings" };
    for (size_t i = 0; i < sizeof (ops) / sizeof (ops [0]); i++)
        s_call_error (&s_world.bob, s_req_ch (ops [i], secret), "channel_not_found");
    s_call_error (&s_world.bob, s_req_send (secret, "x", "v1"), "channel_not_found");
    proto_writer_t *req = s_req_ch ("read", secret);
    proto_writer_kv_u64 (req, "seq", 1);
    s_call_error (&s_world.bob, req, "channel_not_found");
    proto_msg_t *reply = s_call_ok (&s_world.bob, s_req ("channel_browse"));
    const msgpack_object *channels = proto_msg_get (reply, "channels");
    for (uint32_t i = 0; i < channels->via.array.size; i++)
        assert_int_not_equal (s_u64 (&channels->via.array.ptr [i], "id"), secret);
    proto_msg_destroy (&reply);

    //  Another tenant's user, with the right ids, sees nothing
    for (size_t i = 0; i < sizeof (ops) / sizeof (ops [0]); i++) {
        s_call_error (&s_world.mallory, s_req_ch (ops [i], secret), "channel_not_found");
        s_call_error (&s_world.mallory, s_req_ch (ops [i], lobby), "channel_not_found");
    }
    s_call_error (&s_world.mallory, s_req_send (lobby, "x", "v2"), "channel_not_found");
    reply = s_call_ok (&s_world.mallory, s_req ("channel_browse"));
    assert_int_equal (proto_msg_get (reply, "channels")->via.array.size, 0);
    proto_msg_destroy (&reply);
    reply = s_call_ok (&s_world.mallory, s_req ("user_list"));
    assert_int_equal (proto_msg_get (reply, "users")->via.array.size, 1);
    proto_msg_destroy (&reply);

    //  Invited, bob may send to the private channel
    req = s_req_ch ("channel_invite", secret);
    proto_writer_kv_u64 (req, "user", s_world.bob.uid);
    reply = s_call_ok (&s_world.alice, req);
    proto_msg_destroy (&reply);
    s_skip_events (2);
    reply = s_call_ok (&s_world.bob, s_req_ch ("channel_join", secret));
    assert_true (s_str_is (proto_msg_get (reply, "channel"), "type", "private"));
    proto_msg_destroy (&reply);
    s_push (&s_world.bob, &(proto_writer_t *) { s_req_send (secret, "now I am in", "v3") });
    proto_msg_t *ctx = s_forwarded ();
    assert_true (s_str_is (proto_msg_root (ctx), "ctype", "private"));
    proto_msg_destroy (&ctx);
    s_nothing_on (s_world.fanout);
    s_nothing_on (s_world.broker);
}

//  --------------------------------------------------------------------------
//  dm_open: one channel per set of people, both ways; group DMs

//  Opens a DM as session; returns the reply
static proto_msg_t *
s_dm_open (session_t *session, const uint64_t *ids, size_t count)
{
    return s_call_ok (session, s_req_dm (ids, count));
}

static void
test_dm (void **state)
{
    (void) state;
    uint64_t alice = s_world.alice.uid, bob = s_world.bob.uid, carol = s_world.carol.uid;
    proto_msg_t *reply = s_dm_open (&s_world.alice, &bob, 1);
    const msgpack_object *channel = proto_msg_get (reply, "channel");
    uint64_t dm = s_u64 (channel, "id");
    assert_true (s_str_is (channel, "type", "dm"));
    assert_true (s_str_is (channel, "name", "bob"));
    assert_int_equal (s_u64 (channel, "members"), 2);
    s_assert_ids (proto_map_get (channel, "member_ids"), (uint64_t []) { alice, bob }, 2);
    proto_msg_destroy (&reply);
    //  Both members get channel_joined, each with their own view
    proto_msg_t *meta, *event = s_event ("channel_joined", &meta);
    assert_true (s_str_is (proto_msg_get (event, "channel"), "name", "bob"));
    assert_true (s_str_is (proto_msg_root (meta), "ctype", "dm"));
    proto_msg_destroy (&event);
    proto_msg_destroy (&meta);
    event = s_event ("channel_joined", &meta);
    assert_true (s_str_is (proto_msg_get (event, "channel"), "name", "alice"));
    assert_true (s_recip_flags (proto_msg_get (meta, "recips"), bob) >= 0);
    proto_msg_destroy (&event);
    proto_msg_destroy (&meta);

    //  The same channel both ways, with duplicates and oneself ignored
    reply = s_dm_open (&s_world.bob, &alice, 1);
    assert_int_equal (s_channel_id (reply), dm);
    assert_true (s_str_is (proto_msg_get (reply, "channel"), "name", "alice"));
    proto_msg_destroy (&reply);
    reply = s_dm_open (&s_world.alice, (uint64_t []) { bob, bob, alice }, 3);
    assert_int_equal (s_channel_id (reply), dm);
    proto_msg_destroy (&reply);
    s_nothing_on (s_world.fanout);

    //  A group DM
    reply = s_dm_open (&s_world.alice, (uint64_t []) { carol, bob }, 2);
    channel = proto_msg_get (reply, "channel");
    uint64_t group = s_u64 (channel, "id");
    assert_int_not_equal (group, dm);
    assert_true (s_str_is (channel, "type", "group"));
    assert_true (s_str_is (channel, "name", "bob, carol"));
    s_assert_ids (proto_map_get (channel, "member_ids"),
                  (uint64_t []) { alice, bob, carol }, 3);
    proto_msg_destroy (&reply);
    s_skip_events (3);
    reply = s_dm_open (&s_world.carol, (uint64_t []) { bob, alice }, 2);
    assert_int_equal (s_channel_id (reply), group);
    proto_msg_destroy (&reply);

    //  DMs cannot be left or joined by invitation; outsiders see nothing
    s_call_error (&s_world.alice, s_req_ch ("channel_leave", dm), "invalid_args");
    s_call_error (&s_world.alice, s_req_ch ("channel_leave", group), "invalid_args");
    proto_writer_t *req = s_req_ch ("channel_invite", dm);
    proto_writer_kv_u64 (req, "user", carol);
    s_call_error (&s_world.alice, req, "invalid_args");
    s_call_error (&s_world.carol, s_req_ch ("history", dm), "channel_not_found");
    s_call_error (&s_world.carol, s_req_ch ("channel_join", dm), "channel_not_found");
    s_call_error (&s_world.carol, s_req_send (dm, "x", "d1"), "channel_not_found");

    //  Bad sets of people
    s_call_error (&s_world.alice, s_req_dm ((uint64_t []) { 999 }, 1), "user_not_found");
    s_call_error (&s_world.alice, s_req_dm (NULL, 0), "invalid_args");
    s_call_error (&s_world.alice, s_req_dm (&alice, 1), "invalid_args");
    s_call_error (&s_world.alice, s_req_dm ((uint64_t []) { 2, 3, 4, 5, 6, 7, 8, 9, 10 }, 9),
                  "invalid_args");
    s_call_error (&s_world.mallory, s_req_dm (&bob, 1), "user_not_found");
    //  alice and mallory are each their tenant's first user, yet their ids
    //  differ: a user id is never valid in another tenant
    assert_int_not_equal (alice, s_world.mallory.uid);
    s_call_error (&s_world.mallory, s_req_dm (&alice, 1), "user_not_found");
    s_nothing_on (s_world.fanout);
}

//  --------------------------------------------------------------------------
//  send, edit, delete, history, read, sync, channel_list go to persistence

static void
test_forwarding (void **state)
{
    (void) state;
    uint64_t alice = s_world.alice.uid, bob = s_world.bob.uid;
    uint64_t dev = s_channel_create (&s_world.alice, "dev", false);
    s_join (&s_world.bob, dev);
    s_skip_events (2);
    proto_writer_t *req = s_req_ch ("channel_settings", dev);
    proto_writer_kv_bool (req, "muted", true);
    proto_msg_t *reply = s_call_ok (&s_world.bob, req);
    assert_true (s_bool (proto_msg_get (reply, "channel"), "muted"));
    proto_msg_destroy (&reply);
    req = s_req_ch ("channel_settings", dev);
    proto_writer_kv_bool (req, "notify_always", true);
    reply = s_call_ok (&s_world.alice, req);
    assert_true (s_bool (proto_msg_get (reply, "channel"), "notify_always"));
    assert_false (s_bool (proto_msg_get (reply, "channel"), "muted"));
    proto_msg_destroy (&reply);

    //  send: recips with flags, mentions of members only, whole handles only
    s_push (&s_world.alice, &(proto_writer_t *) {
        s_req_send (dev, "hi @bob, @carol @bobby @alice. @bob", "f1") });
    proto_msg_t *ctx = s_forwarded ();
    const msgpack_object *root = proto_msg_root (ctx);
    assert_int_equal (s_u64 (root, "tn"), s_world.alice.tn);
    assert_int_equal (s_u64 (root, "uid"), alice);
    assert_false (s_bool (root, "adm"));
    assert_int_equal (s_u64 (root, "ch"), dev);
    assert_true (s_str_is (root, "ctype", "public"));
    assert_int_equal (s_recip_count (proto_msg_get (ctx, "recips")), 2);
    assert_int_equal (s_recip_flags (proto_msg_get (ctx, "recips"), alice), STAGE_RECIP_NOTIFY_ALWAYS);
    assert_int_equal (s_recip_flags (proto_msg_get (ctx, "recips"), bob), STAGE_RECIP_MUTED);
    s_assert_ids (proto_msg_get (ctx, "mentions"), &bob, 1);
    proto_msg_destroy (&ctx);
    s_call_error (&s_world.carol, s_req_send (dev, "x", "f2"), "not_in_channel");
    s_call_error (&s_world.carol, s_req_send (424242, "x", "f3"), "channel_not_found");

    //  edit: mentions of the new body; delete: none
    req = s_req_ch ("edit", dev);
    proto_writer_kv_u64 (req, "seq", 1);
    proto_writer_kv_str (req, "body", "@alice");
    s_push (&s_world.alice, &req);
    ctx = s_forwarded ();
    s_assert_ids (proto_msg_get (ctx, "mentions"), &alice, 1);
    assert_int_equal (s_recip_count (proto_msg_get (ctx, "recips")), 2);
    proto_msg_destroy (&ctx);
    req = s_req_ch ("delete", dev);
    proto_writer_kv_u64 (req, "seq", 1);
    s_push (&s_world.alice, &req);
    ctx = s_forwarded ();
    s_assert_ids (proto_msg_get (ctx, "mentions"), NULL, 0);
    assert_true (s_str_is (proto_msg_root (ctx), "ctype", "public"));
    proto_msg_destroy (&ctx);
    req = s_req_ch ("edit", dev);
    proto_writer_kv_u64 (req, "seq", 1);
    proto_writer_kv_str (req, "body", "mine");
    s_call_error (&s_world.carol, req, "not_in_channel");

    //  history: anyone for a public channel; read: members only
    s_push (&s_world.carol, &(proto_writer_t *) { s_req_ch ("history", dev) });
    ctx = s_forwarded ();
    assert_int_equal (s_u64 (proto_msg_root (ctx), "ch"), dev);
    proto_msg_destroy (&ctx);
    req = s_req_ch ("read", dev);
    proto_writer_kv_u64 (req, "seq", 1);
    s_call_error (&s_world.carol, req, "not_in_channel");
    req = s_req_ch ("read", dev);
    proto_writer_kv_u64 (req, "seq", 1);
    s_push (&s_world.bob, &req);
    ctx = s_forwarded ();
    assert_int_equal (s_u64 (proto_msg_root (ctx), "uid"), bob);
    proto_msg_destroy (&ctx);

    //  sync: [ch, ctype] of every membership
    s_push (&s_world.bob, &(proto_writer_t *) { s_req ("sync") });
    ctx = s_forwarded ();
    const msgpack_object *channels = proto_msg_get (ctx, "channels");
    bool found = false;
    for (uint32_t i = 0; i < channels->via.array.size; i++) {
        const msgpack_object *pair = &channels->via.array.ptr [i];
        if (pair->via.array.ptr [0].via.u64 == dev)
            found = proto_obj_streq (&pair->via.array.ptr [1], "public");
    }
    assert_true (found);
    proto_msg_destroy (&ctx);

    //  channel_list: the channel objects, the one alice sent to first
    s_push (&s_world.alice, &(proto_writer_t *) { s_req ("channel_list") });
    ctx = s_forwarded ();
    channels = proto_msg_get (ctx, "channels");
    assert_true (channels->via.array.size >= 4);
    assert_int_equal (s_u64 (&channels->via.array.ptr [0], "id"), dev);
    assert_true (s_double (&channels->via.array.ptr [0], "affinity") > 0.99);
    assert_true (s_double (&channels->via.array.ptr [1], "affinity") < 0.01);
    for (uint32_t i = 0; i < channels->via.array.size; i++) {
        const msgpack_object *channel = &channels->via.array.ptr [i];
        bool direct = s_str_is (channel, "type", "dm") || s_str_is (channel, "type", "group");
        assert_true (direct == (proto_map_get (channel, "member_ids") != NULL));
    }
    proto_msg_destroy (&ctx);
    s_nothing_on (s_world.broker);
    s_nothing_on (s_world.fanout);
}

//  --------------------------------------------------------------------------
//  ref (reply privately): in a dm or group only, of a channel one may see

//  A send with ref {ch, seq: 1}
static proto_writer_t *
s_req_send_ref (uint64_t ch, uint64_t ref_ch, const char *cmid)
{
    proto_writer_t *req = s_req_send (ch, "quoting", cmid);
    proto_writer_str (req, "ref");
    proto_writer_map_begin (req);
    proto_writer_kv_u64 (req, "ch", ref_ch);
    proto_writer_kv_u64 (req, "seq", 1);
    proto_writer_map_end (req);
    return req;
}

static void
test_ref_rules (void **state)
{
    (void) state;
    uint64_t refs = s_channel_create (&s_world.alice, "refs", false);
    uint64_t hidden = s_channel_create (&s_world.alice, "refs-hidden", true);
    s_join (&s_world.bob, refs);
    s_skip_events (2);
    proto_msg_t *reply = s_dm_open (&s_world.bob, &s_world.alice.uid, 1);
    uint64_t dm = s_channel_id (reply);
    proto_msg_destroy (&reply);

    s_call_error (&s_world.bob, s_req_send_ref (refs, refs, "r1"), "message_not_found");
    s_call_error (&s_world.bob, s_req_send_ref (dm, hidden, "r2"), "message_not_found");
    s_call_error (&s_world.bob, s_req_send_ref (dm, 424242, "r3"), "message_not_found");
    s_push (&s_world.bob, &(proto_writer_t *) { s_req_send_ref (dm, refs, "r4") });
    proto_msg_t *ctx = s_forwarded ();
    assert_true (s_str_is (proto_msg_root (ctx), "ctype", "dm"));
    proto_msg_destroy (&ctx);
    //  carol is not in refs, but it is public: she may quote it
    reply = s_dm_open (&s_world.carol, &s_world.alice.uid, 1);
    uint64_t carol_dm = s_channel_id (reply);
    proto_msg_destroy (&reply);
    s_skip_events (2);
    s_push (&s_world.carol, &(proto_writer_t *) { s_req_send_ref (carol_dm, refs, "r5") });
    ctx = s_forwarded ();
    proto_msg_destroy (&ctx);
    s_nothing_on (s_world.fanout);
}

//  --------------------------------------------------------------------------
//  Restart on the same directory keeps everything

static void
test_restart (void **state)
{
    (void) state;
    uint64_t alice = s_world.alice.uid, carol = s_world.carol.uid;
    proto_msg_t *reply = s_dm_open (&s_world.alice, (uint64_t []) { carol, s_world.bob.uid }, 2);
    uint64_t group = s_channel_id (reply);
    proto_msg_destroy (&reply);
    uint64_t kept = s_channel_create (&s_world.alice, "kept", false);
    s_join (&s_world.bob, kept);
    s_skip_events (2);
    proto_writer_t *req = s_req_ch ("channel_settings", kept);
    proto_writer_kv_bool (req, "muted", true);
    reply = s_call_ok (&s_world.bob, req);
    proto_msg_destroy (&reply);
    for (int i = 0; i < 3; i++) {
        char cmid [8];
        snprintf (cmid, sizeof (cmid), "k%d", i);
        s_push (&s_world.alice, &(proto_writer_t *) { s_req_send (kept, "busy", cmid) });
        proto_msg_t *ctx = s_forwarded ();
        proto_msg_destroy (&ctx);
    }

    s_actor_stop ();
    s_actor_start ();

    //  Tenants, users and every kind of token
    reply = s_call_ok (&s_world.admin, s_req ("tenant_list"));
    assert_int_equal (proto_msg_get (reply, "tenants")->via.array.size, 3);
    proto_msg_destroy (&reply);
    reply = s_auth (s_world.admin_token);
    assert_true (s_bool (proto_msg_root (reply), "admin"));
    proto_msg_destroy (&reply);
    reply = s_auth (s_carol_token);
    assert_int_equal (s_u64 (proto_msg_get (reply, "user"), "id"), carol);
    proto_msg_destroy (&reply);
    reply = s_auth (s_bot_token);
    assert_int_equal (s_u64 (proto_msg_get (reply, "user"), "id"), s_world.bob.uid);
    proto_msg_destroy (&reply);
    reply = s_auth (s_revoked_token);
    s_assert_error (&reply, "bad_credentials");
    reply = s_login ("acme", "bob", "password-1");
    assert_true (s_bool (proto_msg_root (reply), "ok"));
    proto_msg_destroy (&reply);

    //  Channels, memberships, settings, the DM index
    reply = s_call_ok (&s_world.bob, s_req ("channel_browse"));
    const msgpack_object *channels = proto_msg_get (reply, "channels");
    const msgpack_object *last = &channels->via.array.ptr [channels->via.array.size - 1];
    assert_int_equal (s_u64 (last, "id"), kept);
    assert_true (s_bool (last, "joined"));
    assert_int_equal (s_u64 (last, "members"), 2);
    proto_msg_destroy (&reply);
    reply = s_call_ok (&s_world.bob, s_req_ch ("channel_settings", kept));
    assert_true (s_bool (proto_msg_get (reply, "channel"), "muted"));
    proto_msg_destroy (&reply);
    reply = s_dm_open (&s_world.carol, (uint64_t []) { alice, s_world.bob.uid }, 2);
    assert_int_equal (s_channel_id (reply), group);
    assert_true (s_str_is (proto_msg_get (reply, "channel"), "name", "alice, bob"));
    proto_msg_destroy (&reply);
    s_nothing_on (s_world.fanout);

    //  Affinity was saved at $TERM: kept ranks first for alice
    s_push (&s_world.alice, &(proto_writer_t *) { s_req ("channel_list") });
    proto_msg_t *ctx = s_forwarded ();
    channels = proto_msg_get (ctx, "channels");
    assert_int_equal (s_u64 (&channels->via.array.ptr [0], "id"), kept);
    assert_true (s_double (&channels->via.array.ptr [0], "affinity") > 2.99);
    proto_msg_destroy (&ctx);

    //  Counters: new ids follow the old ones
    assert_int_equal (s_channel_create (&s_world.alice, "after", false), kept + 1);
    session_t dave = { s_world.alice.tn, 0, false };
    s_user_create ("acme", "dave", &dave);
    assert_int_equal (dave.uid, carol + 1);
}

//  --------------------------------------------------------------------------
//  A missing admin.token is issued again; the old admin token stops working

static void
test_admin_token_reissued (void **state)
{
    (void) state;
    char old [sizeof (s_world.admin_token)];
    strcpy (old, s_world.admin_token);
    s_actor_stop ();
    char *path = zsys_sprintf ("%s/%s", s_world.dir, MEMBERSHIP_ADMIN_FILE);
    assert_int_equal (unlink (path), 0);
    free (path);
    s_actor_start ();
    s_admin_token_read ();
    assert_string_not_equal (old, s_world.admin_token);
    proto_msg_t *reply = s_auth (old);
    s_assert_error (&reply, "bad_credentials");
    reply = s_auth (s_world.admin_token);
    assert_true (s_bool (proto_msg_root (reply), "admin"));
    proto_msg_destroy (&reply);
    //  A restart with the file in place keeps the token
    s_actor_stop ();
    s_actor_start ();
    strcpy (old, s_world.admin_token);
    s_admin_token_read ();
    assert_string_equal (old, s_world.admin_token);
}

//  --------------------------------------------------------------------------
//  A ctx persistence could not decode is answered here, not dropped

static void
test_ctx_over_limits (void **state)
{
    (void) state;
    for (int i = 0; i < 300; i++) {
        char name [32];
        snprintf (name, sizeof (name), "bulk-%d", i);
        s_channel_create (&s_world.carol, name, false);
    }
    //  Contexts between stages have their own, larger limits: a user in
    //  300 channels still gets a channel list and a sync
    s_push (&s_world.carol, &(proto_writer_t *) { s_req ("channel_list") });
    proto_msg_t *ctx = s_forwarded ();
    assert_true (proto_msg_get (ctx, "channels")->via.array.size > 300);
    proto_msg_destroy (&ctx);
    s_push (&s_world.carol, &(proto_writer_t *) { s_req ("sync") });
    ctx = s_forwarded ();
    assert_true (proto_msg_get (ctx, "channels")->via.array.size > 300);
    proto_msg_destroy (&ctx);
}

int
main (void)
{
    zsys_init ();
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_admin),
        cmocka_unit_test (test_login_and_tokens),
        cmocka_unit_test (test_channels),
        cmocka_unit_test (test_visibility),
        cmocka_unit_test (test_dm),
        cmocka_unit_test (test_forwarding),
        cmocka_unit_test (test_ref_rules),
        cmocka_unit_test (test_restart),
        cmocka_unit_test (test_admin_token_reissued),
        cmocka_unit_test (test_ctx_over_limits),
    };
    return cmocka_run_group_tests (tests, s_world_setup, s_world_teardown);
}
