/*  =========================================================================
    stage_testing - tests that play a stage speak packets (stage_packet.h)

    Tests build and read messages as CZMQ zmsg_t, one frame per frame; these
    helpers turn them into the one-frame packets stage inboxes take and back.
    A stage may send packets in bundles (stage.h), which end with an empty
    frame: wait with stage_testing_wait, not a poller, which would wake for
    that frame alone. A packet stage_testing_wait read ahead is kept for
    the next stage_testing_recv on its socket.
    =========================================================================
*/
#ifndef CHORUS_STAGE_TESTING_H_INCLUDED
#define CHORUS_STAGE_TESTING_H_INCLUDED

#include <czmq.h>
#include "stage.h"
#include "stage_packet.h"

//  Sends the frames of *msg_p as one packet (waiting up to a second for
//  room) and destroys the message; 0 or -1
static inline int
stage_testing_send (zmsg_t **msg_p, zsock_t *sock)
{
    stage_frame_t frames [STAGE_PACKET_FRAMES_MAX];
    size_t count = 0;
    for (zframe_t *frame = zmsg_first (*msg_p); frame && count < STAGE_PACKET_FRAMES_MAX;
         frame = zmsg_next (*msg_p))
        frames [count++] = stage_frame_mem (zframe_data (frame), zframe_size (frame));
    int rc = -1;
    for (int tries = 0; tries < 1000 && rc; tries++)
        if ((rc = stage_send (sock, frames, count)) && errno == EAGAIN)
            zclock_sleep (1);
        else
            break;
    zmsg_destroy (msg_p);
    return rc;
}

#define STAGE_TESTING_SOCKETS 8

//  The packet read ahead for each socket
static struct {
    zsock_t *sock;
    zframe_t *frame;
} s_testing_ahead [STAGE_TESTING_SOCKETS];

static inline zframe_t **
s_testing_ahead_of (zsock_t *sock)
{
    for (size_t i = 0; i < STAGE_TESTING_SOCKETS; i++)
        if (s_testing_ahead [i].sock == sock)
            return &s_testing_ahead [i].frame;
    for (size_t i = 0; i < STAGE_TESTING_SOCKETS; i++)
        if (!s_testing_ahead [i].frame) {
            s_testing_ahead [i].sock = sock;
            return &s_testing_ahead [i].frame;
        }
    assert (false);
    return NULL;
}

//  The next frame that is a packet (bundle ends skipped), waiting up to
//  timeout_ms (-1: for ever); NULL if none. A signal does not end the
//  wait: libFuzzer's timeout alarm fires every timeout/2 + 1 seconds, and
//  taking that for a hang once stopped a deep fuzz_stateful run.
static inline zframe_t *
stage_testing_next_frame (zsock_t *sock, int timeout_ms)
{
    zframe_t **ahead = s_testing_ahead_of (sock);
    zframe_t *frame = *ahead;
    *ahead = NULL;
    if (frame)
        return frame;
    int64_t deadline = zclock_mono () + timeout_ms;
    zpoller_t *poller = zpoller_new (sock, NULL);
    while (!frame) {
        int64_t left = timeout_ms < 0? -1: deadline - zclock_mono ();
        if (timeout_ms >= 0 && left < 0)
            break;
        if (!zpoller_wait (poller, (int) left))
            continue;
        frame = zframe_recv_nowait (sock);
        if (frame && zframe_size (frame) == 0 && !zframe_more (frame))
            zframe_destroy (&frame);
    }
    zpoller_destroy (&poller);
    return frame;
}

//  True if a packet comes on sock within timeout_ms (it is kept for the
//  next stage_testing_recv)
static inline bool
stage_testing_wait (zsock_t *sock, int timeout_ms)
{
    zframe_t *frame = stage_testing_next_frame (sock, timeout_ms);
    *s_testing_ahead_of (sock) = frame;
    return frame != NULL;
}

//  Receives one packet (waiting as the socket's receive timeout says) as a
//  zmsg_t of its frames; NULL if none came or it was not a packet
static inline zmsg_t *
stage_testing_recv (zsock_t *sock)
{
    zframe_t *packet = stage_testing_next_frame (sock, zsock_rcvtimeo (sock));
    if (!packet)
        return NULL;
    stage_frame_t frames [STAGE_PACKET_FRAMES_MAX];
    size_t count = 0;
    zmsg_t *msg = NULL;
    if (stage_packet_parse (zframe_data (packet), zframe_size (packet), frames,
                            STAGE_PACKET_FRAMES_MAX, &count)) {
        msg = zmsg_new ();
        for (size_t i = 0; i < count; i++)
            zmsg_addmem (msg, frames [i].data, frames [i].size);
    }
    zframe_destroy (&packet);
    return msg;
}

#endif
