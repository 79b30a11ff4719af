/*  =========================================================================
    test_stage - frames between stages: stage_send, stage_msg, stage_packet

    Messages go over inproc PUSH/PULL pairs as between stages: frames sent
    from bytes, writers and received frames arrive whole and unchanged, a
    received frame passed on stays usable, extra frames are counted and
    dropped, and a send the next stage cannot take fails at once and leaves
    the socket clean for the next message. Bundles leave when their scope
    ends, or when full, in order. Frames that are not packets (truncated,
    sizes that do not add up) are received as malformed, with no frames,
    and the next message arrives whole.
    =========================================================================
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>
#include "stage.h"
#include "stage_packet.h"

typedef struct {
    char endpoint [96];         //  the pair's endpoint
    zsock_t *pull;              //  receiving end
    zsock_t *push;              //  sending end
} pair_t;

//  A PUSH/PULL pair whose queue holds about hwm messages
static pair_t *
s_pair_new (int hwm)
{
    static int instance = 0;
    pair_t *pair = (pair_t *) calloc (1, sizeof (pair_t));
    snprintf (pair->endpoint, sizeof (pair->endpoint), "inproc://test-stage-%d-%d",
              getpid (), ++instance);
    pair->pull = zsock_new (ZMQ_PULL);
    zsock_set_rcvhwm (pair->pull, hwm);
    assert_int_equal (zsock_bind (pair->pull, "%s", pair->endpoint), 0);
    pair->push = zsock_new (ZMQ_PUSH);
    zsock_set_sndhwm (pair->push, hwm);
    assert_int_equal (zsock_connect (pair->push, "%s", pair->endpoint), 0);
    return pair;
}

static void
s_pair_destroy (pair_t **pair_p)
{
    zsock_destroy (&(*pair_p)->push);
    zsock_destroy (&(*pair_p)->pull);
    free (*pair_p);
    *pair_p = NULL;
}

//  Receives a message, waiting up to a second for it
static void
s_recv (pair_t *pair, stage_msg_t *msg)
{
    for (int tries = 0; tries < 1000; tries++) {
        if (stage_msg_recv (msg, pair->pull) == 0)
            return;
        zclock_sleep (1);
    }
    fail_msg ("no message");
}

static void
s_assert_frame (stage_msg_t *msg, size_t index, const char *bytes, size_t size)
{
    const stage_frame_t *frame = stage_msg_frame (msg, index);
    assert_non_null (frame);
    assert_int_equal (frame->size, size);
    if (size)
        assert_memory_equal (frame->data, bytes, size);
}

//  count frames holding "<prefix><index>", their text in names
static void
s_named_frames (stage_frame_t *frames, char names [][32], size_t count, const char *prefix)
{
    for (size_t i = 0; i < count; i++) {
        snprintf (names [i], sizeof (names [i]), "%s%zu", prefix, i);
        frames [i] = stage_frame_str (names [i]);
    }
}

//  Bytes, strings, writers and received frames arrive as sent
static void
test_stage_frames_arrive_whole (void **state)
{
    (void) state;
    pair_t *pair = s_pair_new (100);
    proto_writer_t *writer = proto_writer_new ();
    proto_writer_map_begin (writer);
    proto_writer_kv_u64 (writer, "rid", 7);
    proto_writer_map_end (writer);
    //  A frame received once, to pass on
    stage_frame_t first [] = { stage_frame_mem ("route-bytes-over-33-bytes-long....", 34) };
    assert_int_equal (stage_send (pair->push, first, 1), 0);
    stage_msg_t in;
    s_recv (pair, &in);
    stage_frame_t frames [] = {
        stage_frame_str (STAGE_REPLY), *stage_msg_frame (&in, 0),
        stage_frame_writer (writer), stage_frame_writer (NULL)
    };
    assert_int_equal (stage_send (pair->push, frames, 4), 0);
    stage_msg_t out;
    s_recv (pair, &out);
    assert_int_equal (stage_msg_size (&out), 4);
    assert_true (stage_msg_is (&out, 0, STAGE_REPLY));
    assert_false (stage_msg_is (&out, 0, STAGE_RESET));
    s_assert_frame (&out, 1, "route-bytes-over-33-bytes-long....", 34);
    s_assert_frame (&out, 2, (const char *) proto_writer_data (writer), proto_writer_size (writer));
    s_assert_frame (&out, 3, "", 0);
    assert_null (stage_msg_frame (&out, 4));
    //  The frame passed on is still the receiver's
    s_assert_frame (&in, 0, "route-bytes-over-33-bytes-long....", 34);
    stage_msg_close (&in);
    stage_msg_close (&out);
    proto_writer_destroy (&writer);
    s_pair_destroy (&pair);
}

//  Frames past STAGE_MSG_FRAMES are counted, not kept; the next message
//  is received from its start
static void
test_stage_msg_drops_extra_frames (void **state)
{
    (void) state;
    pair_t *pair = s_pair_new (100);
    stage_frame_t frames [STAGE_MSG_FRAMES + 2];
    char names [STAGE_MSG_FRAMES + 2][32];
    s_named_frames (frames, names, STAGE_MSG_FRAMES + 2, "");
    assert_int_equal (stage_send (pair->push, frames, STAGE_MSG_FRAMES + 2), 0);
    assert_int_equal (stage_send (pair->push, frames, 1), 0);
    stage_msg_t msg;
    s_recv (pair, &msg);
    assert_int_equal (stage_msg_size (&msg), STAGE_MSG_FRAMES + 2);
    assert_true (stage_msg_is (&msg, STAGE_MSG_FRAMES - 1, names [STAGE_MSG_FRAMES - 1]));
    assert_null (stage_msg_frame (&msg, STAGE_MSG_FRAMES));
    stage_msg_close (&msg);
    s_recv (pair, &msg);
    assert_int_equal (stage_msg_size (&msg), 1);
    assert_true (stage_msg_is (&msg, 0, "0"));
    stage_msg_close (&msg);
    //  Nothing waiting: -1 at once, nothing to close
    assert_int_equal (stage_msg_recv (&msg, pair->pull), -1);
    assert_int_equal (stage_msg_size (&msg), 0);
    s_pair_destroy (&pair);
}

//  A full queue refuses the next message at once; every message taken
//  arrives whole, and the socket takes messages again once drained
static void
test_stage_send_full_queue (void **state)
{
    (void) state;
    pair_t *pair = s_pair_new (10);
    uint64_t sent = 0;
    while (sent < 1000) {
        stage_frame_t frames [] = {
            stage_frame_str ("seq"), stage_frame_mem (&sent, sizeof (sent)), stage_frame_str ("end")
        };
        if (stage_send (pair->push, frames, 3))
            break;
        sent++;
    }
    assert_in_range (sent, 1, 999);
    for (uint64_t i = 0; i < sent; i++) {
        stage_msg_t msg;
        s_recv (pair, &msg);
        assert_int_equal (stage_msg_size (&msg), 3);
        s_assert_frame (&msg, 1, (const char *) &i, sizeof (i));
        assert_true (stage_msg_is (&msg, 2, "end"));
        stage_msg_close (&msg);
    }
    //  The sender learns of the reads from a command it takes within a
    //  millisecond or so
    stage_frame_t again [] = { stage_frame_str ("again"), stage_frame_str ("end") };
    int tries = 0;
    while (stage_send (pair->push, again, 2) && ++tries < 1000)
        zclock_sleep (1);
    assert_in_range (tries, 0, 999);
    stage_msg_t msg;
    s_recv (pair, &msg);
    assert_int_equal (stage_msg_size (&msg), 2);
    assert_true (stage_msg_is (&msg, 0, "again"));
    stage_msg_close (&msg);
    s_pair_destroy (&pair);
}

//  An outbox with immediate set refuses a message for a stage that is not
//  there (over tcp: an inproc connect queues until the bind). The port is
//  held bound without a listener, so connects to it are refused.
static void
test_stage_send_absent_stage (void **state)
{
    (void) state;
    int holder = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = { .sin_family = AF_INET,
                                   .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    socklen_t size = sizeof (address);
    assert_int_equal (bind (holder, (struct sockaddr *) &address, size), 0);
    assert_int_equal (getsockname (holder, (struct sockaddr *) &address, &size), 0);
    char endpoint [64];
    snprintf (endpoint, sizeof (endpoint), "tcp://127.0.0.1:%d", ntohs (address.sin_port));
    stage_config_t config = { .curve_dir = NULL };
    zsock_t *outbox = stage_outbox_new (&config, endpoint, true);
    assert_non_null (outbox);
    stage_frame_t frames [] = { stage_frame_str ("route"), stage_frame_str ("req") };
    assert_int_equal (stage_send (outbox, frames, 2), -1);
    assert_int_equal (errno, EAGAIN);
    zsock_destroy (&outbox);
    close (holder);
}


//  The front door's multipart messages: frames arrive as sent, extra
//  frames are counted and dropped
static void
test_stage_parts_round_trip (void **state)
{
    (void) state;
    pair_t *pair = s_pair_new (100);
    stage_frame_t frames [STAGE_MSG_FRAMES + 1];
    char names [STAGE_MSG_FRAMES + 1][32];
    s_named_frames (frames, names, STAGE_MSG_FRAMES + 1, "p");
    frames [1] = stage_frame_mem ("", 0);
    assert_int_equal (stage_send_parts (pair->push, frames, STAGE_MSG_FRAMES + 1), 0);
    stage_msg_t msg;
    int tries = 0;
    while (stage_msg_recv_parts (&msg, pair->pull) && ++tries < 1000)
        zclock_sleep (1);
    assert_int_equal (stage_msg_size (&msg), STAGE_MSG_FRAMES + 1);
    assert_true (stage_msg_is (&msg, 0, "p0"));
    s_assert_frame (&msg, 1, "", 0);
    assert_true (stage_msg_is (&msg, STAGE_MSG_FRAMES - 1, names [STAGE_MSG_FRAMES - 1]));
    assert_null (stage_msg_frame (&msg, STAGE_MSG_FRAMES));
    stage_msg_close (&msg);
    s_pair_destroy (&pair);
}

//  What is not a packet is received as malformed, with no frames; the next
//  message is whole
static void
test_stage_malformed_packets (void **state)
{
    (void) state;
    pair_t *pair = s_pair_new (100);
    //  A multipart message whose frames are not packets (not a bundle from
    //  a stage): each frame is malformed
    stage_frame_t parts [] = { stage_frame_str ("\x01"), stage_frame_str ("tail") };
    assert_int_equal (stage_send_parts (pair->push, parts, 2), 0);
    //  Raw bytes: no frames, count past the maximum, a size past the end,
    //  bytes after the last frame
    const char *raw [] = { "\x00", "\x11", "\x01\x05\x00\x00\x00" "abc",
                           "\x01\x02\x00\x00\x00" "abc", "\x02\x01\x00\x00\x00" };
    size_t raw_size [] = { 1, 1, 8, 8, 5 };
    for (size_t i = 0; i < 5; i++)
        assert_true (zmq_send (zsock_resolve (pair->push), raw [i], raw_size [i], 0) >= 0);
    stage_frame_t good [] = { stage_frame_str ("good"), stage_frame_mem ("", 0) };
    assert_int_equal (stage_send (pair->push, good, 2), 0);
    for (size_t i = 0; i < 7; i++) {
        stage_msg_t msg;
        s_recv (pair, &msg);
        assert_true (msg.malformed);
        assert_int_equal (stage_msg_size (&msg), 0);
        assert_null (stage_msg_frame (&msg, 0));
        assert_false (stage_msg_is (&msg, 0, "good"));
        stage_msg_close (&msg);
    }
    stage_msg_t msg;
    s_recv (pair, &msg);
    assert_false (msg.malformed);
    assert_int_equal (stage_msg_size (&msg), 2);
    assert_true (stage_msg_is (&msg, 0, "good"));
    s_assert_frame (&msg, 1, "", 0);
    stage_msg_close (&msg);
    s_pair_destroy (&pair);
}

//  Sends a packet of one frame holding number
static void
s_send_number (zsock_t *push, uint32_t number)
{
    stage_frame_t frame = stage_frame_mem (&number, sizeof (number));
    assert_int_equal (stage_send (push, &frame, 1), 0);
}

//  Receives the packets first..last-1 in order, then nothing
static void
s_expect_numbers (pair_t *pair, uint32_t first, uint32_t last)
{
    for (uint32_t number = first; number < last; number++) {
        stage_msg_t msg;
        s_recv (pair, &msg);
        assert_false (msg.malformed);
        assert_int_equal (stage_msg_size (&msg), 1);
        s_assert_frame (&msg, 0, (const char *) &number, sizeof (number));
        stage_msg_close (&msg);
    }
    stage_msg_t msg;
    assert_int_equal (stage_msg_recv (&msg, pair->pull), -1);
}

//  Nothing in a bundle leaves before the outermost scope ends; then each
//  socket's packets arrive in order, one message each, and the bundle's
//  end is not a message. A full bundle leaves at once, and so does a
//  flushed one; a socket past STAGE_BUNDLE_SOCKETS gets its packets alone.
static void
test_stage_bundles (void **state)
{
    (void) state;
    pair_t *pairs [STAGE_BUNDLE_SOCKETS + 1];
    for (size_t i = 0; i <= STAGE_BUNDLE_SOCKETS; i++)
        pairs [i] = s_pair_new (100);
    stage_bundle_begin ();
    stage_bundle_begin ();
    for (uint32_t number = 0; number < 3; number++)
        for (size_t i = 0; i <= STAGE_BUNDLE_SOCKETS; i++)
            s_send_number (pairs [i]->push, number);
    stage_bundle_end ();
    zclock_sleep (20);
    stage_msg_t msg;
    for (size_t i = 0; i < STAGE_BUNDLE_SOCKETS; i++)
        assert_int_equal (stage_msg_recv (&msg, pairs [i]->pull), -1);
    s_expect_numbers (pairs [STAGE_BUNDLE_SOCKETS], 0, 3);
    stage_bundle_end ();
    for (size_t i = 0; i < STAGE_BUNDLE_SOCKETS; i++)
        s_expect_numbers (pairs [i], 0, 3);
    //  A full bundle goes before the scope ends; the rest at its end
    stage_bundle_begin ();
    for (uint32_t number = 0; number < STAGE_BUNDLE_PACKETS + 5; number++)
        s_send_number (pairs [0]->push, number);
    s_expect_numbers (pairs [0], 0, STAGE_BUNDLE_PACKETS);
    stage_bundle_end ();
    s_expect_numbers (pairs [0], STAGE_BUNDLE_PACKETS, STAGE_BUNDLE_PACKETS + 5);
    //  A flush sends what is open; the scope goes on
    stage_bundle_begin ();
    s_send_number (pairs [2]->push, 1);
    s_send_number (pairs [2]->push, 2);
    stage_bundle_flush ();
    s_expect_numbers (pairs [2], 1, 3);
    s_send_number (pairs [2]->push, 3);
    zclock_sleep (20);
    assert_int_equal (stage_msg_recv (&msg, pairs [2]->pull), -1);
    stage_bundle_end ();
    s_expect_numbers (pairs [2], 3, 4);
    //  Outside a scope a packet goes at once
    s_send_number (pairs [1]->push, 7);
    s_expect_numbers (pairs [1], 7, 8);
    for (size_t i = 0; i <= STAGE_BUNDLE_SOCKETS; i++)
        s_pair_destroy (&pairs [i]);
}

//  Packet bounds: frame count and total size
static void
test_stage_packet_bounds (void **state)
{
    (void) state;
    stage_frame_t frames [STAGE_PACKET_FRAMES_MAX + 1];
    for (size_t i = 0; i <= STAGE_PACKET_FRAMES_MAX; i++)
        frames [i] = stage_frame_str ("x");
    assert_int_equal (stage_packet_size (frames, 0), 0);
    assert_int_equal (stage_packet_size (frames, STAGE_PACKET_FRAMES_MAX),
                      1 + 5 * STAGE_PACKET_FRAMES_MAX);
    assert_int_equal (stage_packet_size (frames, STAGE_PACKET_FRAMES_MAX + 1), 0);
    //  A packet at the size limit is one; a byte more is not
    size_t room = STAGE_PACKET_SIZE_MAX - (1 + 4 * 2) - 1;
    stage_frame_t big [] = { stage_frame_mem (NULL, room), stage_frame_str ("y") };
    assert_int_equal (stage_packet_size (big, 2), STAGE_PACKET_SIZE_MAX);
    big [0].size++;
    assert_int_equal (stage_packet_size (big, 2), 0);
    pair_t *pair = s_pair_new (100);
    errno = 0;
    assert_int_equal (stage_send (pair->push, frames, STAGE_PACKET_FRAMES_MAX + 1), -1);
    assert_int_equal (errno, EMSGSIZE);
    //  A written packet parses back to its frames
    uint8_t packet [64];
    stage_frame_t three [] = { stage_frame_str ("one"), stage_frame_mem ("", 0),
                               stage_frame_str ("three") };
    size_t size = stage_packet_size (three, 3);
    assert_true (size <= sizeof (packet));
    stage_packet_write (packet, three, 3);
    stage_frame_t views [2];
    size_t count = 0;
    assert_true (stage_packet_parse (packet, size, views, 2, &count));
    assert_int_equal (count, 3);
    assert_int_equal (views [0].size, 3);
    assert_memory_equal (views [0].data, "one", 3);
    assert_int_equal (views [1].size, 0);
    //  Every shorter prefix is refused
    for (size_t cut = 0; cut < size; cut++)
        assert_false (stage_packet_parse (packet, cut, views, 2, &count));
    s_pair_destroy (&pair);
}

int
main (void)
{
    zsys_init ();
    zsys_set_logstream (NULL);
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_stage_frames_arrive_whole),
        cmocka_unit_test (test_stage_msg_drops_extra_frames),
        cmocka_unit_test (test_stage_send_full_queue),
        cmocka_unit_test (test_stage_send_absent_stage),
        cmocka_unit_test (test_stage_parts_round_trip),
        cmocka_unit_test (test_stage_malformed_packets),
        cmocka_unit_test (test_stage_bundles),
        cmocka_unit_test (test_stage_packet_bounds),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
