/*  =========================================================================
    stage_msg - a message from a stage's socket, received into the caller's
    memory

    The frames are raw zmq_msg_t held in the object, which the caller keeps
    on its stack: no heap object per frame. A frame passed on is sent as a
    zmq_msg_copy (stage_frame_msg), which shares its bytes. The first
    STAGE_MSG_FRAMES frames are kept; any further frames are read, counted
    and dropped.
    =========================================================================
*/
#ifndef CHORUS_STAGE_MSG_H_INCLUDED
#define CHORUS_STAGE_MSG_H_INCLUDED

#include <czmq.h>

//  Frames kept: the most a message between stages has (a delivery)
#define STAGE_MSG_FRAMES 5

typedef struct {
    zmq_msg_t frames [STAGE_MSG_FRAMES];    //  the frames kept
    size_t size;                    //  frames the message had
} stage_msg_t;

//  Receive one whole message without blocking. 0, or -1 if none was
//  waiting (self then holds no frames).
int
    stage_msg_recv (stage_msg_t *self, zsock_t *sock);
//  The number of frames the message had, kept or not
size_t
    stage_msg_size (stage_msg_t *self);
//  Frame index, or NULL if the message had no such frame or it was dropped
zmq_msg_t *
    stage_msg_frame (stage_msg_t *self, size_t index);
//  True if frame index holds exactly the bytes of string
bool
    stage_msg_is (stage_msg_t *self, size_t index, const char *string);
//  Release the frames; self may be received into again
void
    stage_msg_close (stage_msg_t *self);

#endif
