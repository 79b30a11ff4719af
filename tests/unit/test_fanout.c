/*  =========================================================================
    test_fanout - the fan-out actor, driven through its sockets

    A fake broker binds the broker's inbox and sends session ups and downs
    to fan-out; events come in as persistence sends them; each test checks
    the deliveries: one per peer per event, the right sids and notify sids.
    =========================================================================
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <unistd.h>
#include <cmocka.h>
#include "fanout.h"
#include "../stage_testing.h"

typedef struct {
    char endpoints [2][96];     //  fan-out's inbox, the broker's inbox
    stage_config_t config;      //  the actor's configuration
    zsock_t *broker;            //  the fake broker's inbox (deliveries)
    zsock_t *inbox;             //  our PUSH into fan-out
    zactor_t *actor;            //  the fan-out actor
} world_t;

//  One delivery as the broker gets it
typedef struct {
    char identity [16];         //  peer identity
    uint64_t sids [8];          //  sessions to deliver to
    size_t sid_count;
    uint64_t notify [8];        //  sessions to notify
    size_t notify_count;
} delivery_t;

static int
s_setup (void **state)
{
    static int instance = 0;
    world_t *world = (world_t *) calloc (1, sizeof (world_t));
    instance++;
    snprintf (world->endpoints [0], 96, "inproc://test-fanout-%d-%d-in", getpid (), instance);
    snprintf (world->endpoints [1], 96, "inproc://test-fanout-%d-%d-broker", getpid (), instance);
    world->config = (stage_config_t) { .fanout_endpoint = world->endpoints [0],
                                       .broker_endpoint = world->endpoints [1] };
    world->broker = zsock_new_pull (world->endpoints [1]);
    assert_non_null (world->broker);
    zsock_set_rcvtimeo (world->broker, 2000);
    world->actor = stage_actor_new (fanout_actor, &world->config);
    assert_non_null (world->actor);
    world->inbox = zsock_new_push (world->endpoints [0]);
    zmsg_t *resync = stage_testing_recv (world->broker);   //  a new fan-out asks for sessions
    assert_non_null (resync);
    assert_true (zframe_streq (zmsg_first (resync), STAGE_RESYNC));
    zmsg_destroy (&resync);
    *state = world;
    return 0;
}

static int
s_teardown (void **state)
{
    world_t *world = (world_t *) *state;
    zsock_destroy (&world->inbox);
    zactor_destroy (&world->actor);
    zsock_destroy (&world->broker);
    free (world);
    return 0;
}

//  A route: identity length, identity, sid big-endian
static zframe_t *
s_route (const char *identity, uint64_t sid)
{
    size_t len = strlen (identity);
    byte data [1 + 16 + 8];
    data [0] = (byte) len;
    memcpy (data + 1, identity, len);
    for (int i = 0; i < 8; i++)
        data [1 + len + i] = (byte) (sid >> (56 - 8 * i));
    return zframe_new (data, 1 + len + 8);
}

static void
s_up (world_t *world, const char *identity, uint64_t sid, uint64_t tenant, uint64_t user)
{
    proto_writer_t *who = proto_writer_new ();
    proto_writer_map_begin (who);
    proto_writer_kv_u64 (who, "tn", tenant);
    proto_writer_kv_u64 (who, "uid", user);
    proto_writer_map_end (who);
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, STAGE_UP);
    zmsg_append (msg, &(zframe_t *) { s_route (identity, sid) });
    zmsg_addmem (msg, proto_writer_data (who), proto_writer_size (who));
    assert_int_equal (stage_testing_send (&msg, world->inbox), 0);
    proto_writer_destroy (&who);
}

static void
s_down (world_t *world, const char *identity, uint64_t sid)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, STAGE_DOWN);
    zmsg_append (msg, &(zframe_t *) { s_route (identity, sid) });
    assert_int_equal (stage_testing_send (&msg, world->inbox), 0);
}

//  An event of tenant 1 to recips {uid, flags} pairs (count of them), by
//  author, in a channel of type ctype; recips_size overrides the bin size
static void
s_event (world_t *world, const char *ctype, uint64_t author, const uint64_t *recips,
         size_t count, size_t recips_size)
{
    proto_writer_t *meta = proto_writer_new ();
    proto_writer_map_begin (meta);
    proto_writer_kv_u64 (meta, "tn", 1);
    proto_writer_kv_u64 (meta, "ch", 5);
    proto_writer_kv_str (meta, "ctype", ctype);
    proto_writer_kv_u64 (meta, "author", author);
    proto_writer_str (meta, "mentions");
    proto_writer_array_begin (meta);
    proto_writer_array_end (meta);
    proto_writer_str (meta, "recips");
    uint8_t *record = proto_writer_bin_reserve (meta, recips_size);
    for (size_t i = 0; i < count && (i + 1) * STAGE_RECIP_SIZE <= recips_size; i++)
        stage_recip_put (record + i * STAGE_RECIP_SIZE, recips [2 * i], recips [2 * i + 1]);
    proto_writer_map_end (meta);
    proto_writer_t *event = proto_writer_new ();
    proto_writer_map_begin (event);
    proto_writer_kv_str (event, "ev", "message");
    proto_writer_map_end (event);
    assert_int_equal (stage_send_event (world->inbox, meta, event), 0);
    proto_writer_destroy (&meta);
    proto_writer_destroy (&event);
}

//  Reads a msgpack array of u64 into ids
static size_t
s_ids (zframe_t *frame, uint64_t *ids, size_t max)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    assert_int_equal (msgpack_unpack_next (&unpacked, (const char *) zframe_data (frame),
                                           zframe_size (frame), &offset), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal (unpacked.data.type, MSGPACK_OBJECT_ARRAY);
    size_t count = unpacked.data.via.array.size;
    assert_true (count <= max);
    for (size_t i = 0; i < count; i++)
        ids [i] = unpacked.data.via.array.ptr [i].via.u64;
    msgpack_unpacked_destroy (&unpacked);
    return count;
}

//  Receives one delivery; false if none came within the timeout
static bool
s_delivery (world_t *world, delivery_t *delivery)
{
    memset (delivery, 0, sizeof (*delivery));
    zmsg_t *msg = stage_testing_recv (world->broker);
    if (!msg)
        return false;
    assert_int_equal (zmsg_size (msg), 5);
    char *kind = zmsg_popstr (msg);
    assert_string_equal (kind, STAGE_DELIVERY);
    zstr_free (&kind);
    char *identity = zmsg_popstr (msg);
    snprintf (delivery->identity, sizeof (delivery->identity), "%s", identity);
    zstr_free (&identity);
    zframe_t *event = zmsg_pop (msg);
    assert_int_equal (zframe_size (event), 16);       //  {ev: "message"}, as sent
    zframe_destroy (&event);
    zframe_t *sids = zmsg_pop (msg);
    zframe_t *notify = zmsg_pop (msg);
    delivery->sid_count = s_ids (sids, delivery->sids, 8);
    delivery->notify_count = s_ids (notify, delivery->notify, 8);
    zframe_destroy (&sids);
    zframe_destroy (&notify);
    zmsg_destroy (&msg);
    return true;
}

//  True if nothing is waiting at the broker within a short while
static bool
s_quiet (world_t *world)
{
    zsock_set_rcvtimeo (world->broker, 200);
    zmsg_t *msg = stage_testing_recv (world->broker);
    zsock_set_rcvtimeo (world->broker, 2000);
    bool quiet = msg == NULL;
    zmsg_destroy (&msg);
    return quiet;
}

//  The plain usage example: a session up, an event, one delivery
static void
test_fanout_delivers_to_online_session (void **state)
{
    world_t *world = (world_t *) *state;
    s_up (world, "edge-a", 7, 1, 42);
    uint64_t recips [] = { 42, 0, 43, 0 };
    s_event (world, "dm", 43, recips, 2, 2 * STAGE_RECIP_SIZE);
    delivery_t delivery;
    assert_true (s_delivery (world, &delivery));
    assert_string_equal (delivery.identity, "edge-a");
    assert_int_equal (delivery.sid_count, 1);
    assert_int_equal (delivery.sids [0], 7);
    assert_int_equal (delivery.notify_count, 1);       //  a DM notifies
    assert_int_equal (delivery.notify [0], 7);
    assert_true (s_quiet (world));
}

//  One delivery per peer, with all of that peer's sessions; the notify
//  rule per recipient; a user listed twice gets the event once
static void
test_fanout_groups_by_peer (void **state)
{
    world_t *world = (world_t *) *state;
    s_up (world, "edge-a", 1, 1, 10);
    s_up (world, "edge-a", 2, 1, 11);
    s_up (world, "edge-b", 3, 1, 10);
    s_up (world, "edge-b", 4, 2, 11);       //  same uid, other tenant
    uint64_t recips [] = { 10, STAGE_RECIP_NOTIFY_ALWAYS, 11, 0, 10, STAGE_RECIP_NOTIFY_ALWAYS };
    s_event (world, "public", 99, recips, 3, 3 * STAGE_RECIP_SIZE);
    delivery_t first, second;
    assert_true (s_delivery (world, &first));
    assert_true (s_delivery (world, &second));
    assert_true (s_quiet (world));
    delivery_t *a = streq (first.identity, "edge-a")? &first: &second;
    delivery_t *b = a == &first? &second: &first;
    assert_string_equal (a->identity, "edge-a");
    assert_string_equal (b->identity, "edge-b");
    assert_int_equal (a->sid_count, 2);
    assert_int_equal (a->sids [0] + a->sids [1], 1 + 2);
    assert_int_equal (a->notify_count, 1);
    assert_int_equal (a->notify [0], 1);
    assert_int_equal (b->sid_count, 1);
    assert_int_equal (b->sids [0], 3);
    assert_int_equal (b->notify_count, 1);
}

//  Down forgets a session, a duplicate up replaces it, RESET forgets all
static void
test_fanout_session_changes (void **state)
{
    world_t *world = (world_t *) *state;
    uint64_t recips [] = { 10, 0 };
    delivery_t delivery;
    s_up (world, "edge-a", 1, 1, 10);
    s_up (world, "edge-a", 1, 1, 10);       //  duplicate: still one session
    s_up (world, "edge-a", 2, 1, 10);
    s_down (world, "edge-a", 2);
    s_down (world, "edge-a", 2);            //  duplicate: nothing
    s_event (world, "public", 0, recips, 1, STAGE_RECIP_SIZE);
    assert_true (s_delivery (world, &delivery));
    assert_int_equal (delivery.sid_count, 1);
    assert_int_equal (delivery.sids [0], 1);
    assert_int_equal (delivery.notify_count, 0);
    s_up (world, "edge-a", 1, 1, 11);       //  the route now belongs to user 11
    s_event (world, "public", 0, recips, 1, STAGE_RECIP_SIZE);
    assert_true (s_quiet (world));
    s_up (world, "edge-b", 5, 1, 10);
    zmsg_t *reset = zmsg_new ();
    zmsg_addstr (reset, STAGE_RESET);
    assert_int_equal (stage_testing_send (&reset, world->inbox), 0);
    s_event (world, "public", 0, recips, 1, STAGE_RECIP_SIZE);
    assert_true (s_quiet (world));
    s_up (world, "edge-b", 5, 1, 10);       //  after a reset, sessions come back
    s_event (world, "public", 0, recips, 1, STAGE_RECIP_SIZE);
    assert_true (s_delivery (world, &delivery));
    assert_string_equal (delivery.identity, "edge-b");
    assert_int_equal (delivery.sids [0], 5);
}

//  A recipient bin that is not whole records is dropped; fan-out goes on
static void
test_fanout_drops_malformed_recips (void **state)
{
    world_t *world = (world_t *) *state;
    s_up (world, "edge-a", 1, 1, 10);
    uint64_t recips [] = { 10, 0 };
    s_event (world, "public", 0, recips, 1, STAGE_RECIP_SIZE + 1);
    assert_true (s_quiet (world));
    s_event (world, "public", 0, recips, 1, STAGE_RECIP_SIZE);
    delivery_t delivery;
    assert_true (s_delivery (world, &delivery));
    assert_int_equal (delivery.sids [0], 1);
}

int
main (void)
{
    zsys_init ();
    zsys_set_logstream (NULL);
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_fanout_delivers_to_online_session, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_fanout_groups_by_peer, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_fanout_session_changes, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_fanout_drops_malformed_recips, s_setup, s_teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
