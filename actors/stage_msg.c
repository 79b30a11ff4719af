/*  =========================================================================
    stage_msg - a message from a socket, received into the caller's memory
    =========================================================================
*/
#include "stage_msg.h"
#include "stage_packet.h"

//  Bundle ends skipped in one receive at most
#define STAGE_MSG_ENDS_MAX 64

//  --------------------------------------------------------------------------
//  Receive one packet without blocking

int
stage_msg_recv (stage_msg_t *self, zsock_t *sock)
{
    self->size = 0;
    self->parts_held = 0;
    self->malformed = false;
    zmq_msg_t *packet = &self->parts [0];
    //  Every frame is a packet, alone or in a bundle; the empty frame that
    //  ends a bundle is skipped (a bounded number of them a call)
    for (int ends = 0; ; ends++) {
        zmq_msg_init (packet);
        if (ends == STAGE_MSG_ENDS_MAX
        ||  zmq_msg_recv (packet, zsock_resolve (sock), ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (packet);
            return -1;
        }
        if (zmq_msg_size (packet) > 0 || zmq_msg_more (packet))
            break;
        zmq_msg_close (packet);
    }
    self->parts_held = 1;
    if (!stage_packet_parse ((const uint8_t *) zmq_msg_data (packet), zmq_msg_size (packet),
                             self->frames, STAGE_MSG_FRAMES, &self->size)) {
        self->size = 0;
        self->malformed = true;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Receive one multipart message without blocking

int
stage_msg_recv_parts (stage_msg_t *self, zsock_t *sock)
{
    void *handle = zsock_resolve (sock);
    self->size = 0;
    self->parts_held = 0;
    self->malformed = false;
    bool more = true;
    while (more) {
        zmq_msg_t dropped;
        bool keep = self->size < STAGE_MSG_FRAMES;
        zmq_msg_t *frame = keep? &self->parts [self->size]: &dropped;
        zmq_msg_init (frame);
        //  Never waits: the rest of a message arrives with its first frame
        if (zmq_msg_recv (frame, handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (frame);
            stage_msg_close (self);
            return -1;
        }
        more = zmq_msg_more (frame);
        if (keep) {
            self->frames [self->size] = (stage_frame_t) { zmq_msg_data (frame), zmq_msg_size (frame) };
            self->parts_held++;
        }
        else
            zmq_msg_close (frame);
        self->size++;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  The number of frames the message had

size_t
stage_msg_size (stage_msg_t *self)
{
    return self->size;
}

//  --------------------------------------------------------------------------
//  Frame index, or NULL

const stage_frame_t *
stage_msg_frame (stage_msg_t *self, size_t index)
{
    return index < self->size && index < STAGE_MSG_FRAMES? &self->frames [index]: NULL;
}

//  --------------------------------------------------------------------------
//  True if frame index holds exactly the bytes of string

bool
stage_msg_is (stage_msg_t *self, size_t index, const char *string)
{
    const stage_frame_t *frame = stage_msg_frame (self, index);
    size_t len = strlen (string);
    return frame && frame->size == len && memcmp (frame->data, string, len) == 0;
}

//  --------------------------------------------------------------------------
//  Release the frames

void
stage_msg_close (stage_msg_t *self)
{
    for (size_t i = 0; i < self->parts_held; i++)
        zmq_msg_close (&self->parts [i]);
    self->parts_held = 0;
    self->size = 0;
}
