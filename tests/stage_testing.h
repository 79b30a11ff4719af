/*  =========================================================================
    stage_testing - tests that play a stage speak packets (stage_packet.h)

    Tests build and read messages as CZMQ zmsg_t, one frame per frame; these
    helpers turn them into the one-frame packets stage inboxes take and back.
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

//  Receives one packet (waiting as the socket's receive timeout says) as a
//  zmsg_t of its frames; NULL if none came or it was not a packet
static inline zmsg_t *
stage_testing_recv (zsock_t *sock)
{
    zframe_t *packet = zframe_recv (sock);
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
