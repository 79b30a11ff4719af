/*  =========================================================================
    stage_msg - a message from a stage's socket, received into the caller's
    memory
    =========================================================================
*/
#include "stage_msg.h"

//  --------------------------------------------------------------------------
//  Receive one whole message without blocking

int
stage_msg_recv (stage_msg_t *self, zsock_t *sock)
{
    void *handle = zsock_resolve (sock);
    self->size = 0;
    bool more = true;
    while (more) {
        zmq_msg_t dropped;
        zmq_msg_t *frame = self->size < STAGE_MSG_FRAMES? &self->frames [self->size]: &dropped;
        zmq_msg_init (frame);
        //  Never waits: the rest of a message arrives with its first frame
        if (zmq_msg_recv (frame, handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (frame);
            stage_msg_close (self);
            return -1;
        }
        more = zmq_msg_more (frame);
        if (frame == &dropped)
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

zmq_msg_t *
stage_msg_frame (stage_msg_t *self, size_t index)
{
    return index < self->size && index < STAGE_MSG_FRAMES? &self->frames [index]: NULL;
}

//  --------------------------------------------------------------------------
//  True if frame index holds exactly the bytes of string

bool
stage_msg_is (stage_msg_t *self, size_t index, const char *string)
{
    zmq_msg_t *frame = stage_msg_frame (self, index);
    size_t len = strlen (string);
    return frame && zmq_msg_size (frame) == len && memcmp (zmq_msg_data (frame), string, len) == 0;
}

//  --------------------------------------------------------------------------
//  Release the frames

void
stage_msg_close (stage_msg_t *self)
{
    for (size_t i = 0; i < self->size && i < STAGE_MSG_FRAMES; i++)
        zmq_msg_close (&self->frames [i]);
    self->size = 0;
}
