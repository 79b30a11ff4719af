/*  =========================================================================
    stage_msg - a message from a socket, received into the caller's memory

    Between stages a message travels as one ZeroMQ frame, a packet of
    frames (see stage_packet.h): one send and one receive a message, not
    one a frame. Several may come as the frames of one multipart message,
    a bundle (see stage.h), which an empty frame ends. The broker's front door, which peers outside Chorus speak
    to, keeps ZeroMQ's own multipart frames. Either way the receiver sees
    frames as stage_frame_t (bytes and size) inside the message it holds,
    valid until stage_msg_close; the caller keeps the message on its stack:
    no heap object per frame. The first STAGE_MSG_FRAMES frames are kept;
    any further frames are counted and dropped.
    =========================================================================
*/
#ifndef CHORUS_STAGE_MSG_H_INCLUDED
#define CHORUS_STAGE_MSG_H_INCLUDED

#include <czmq.h>

//  Frames kept: the most a message between stages has (a delivery)
#define STAGE_MSG_FRAMES 5

//  One frame of a message: bytes and their size. To send, the bytes are
//  copied; a received frame is a view into its message.
typedef struct {
    const void *data;
    size_t size;
} stage_frame_t;

typedef struct {
    zmq_msg_t parts [STAGE_MSG_FRAMES];     //  ZeroMQ frames held
    size_t parts_held;                      //  how many
    stage_frame_t frames [STAGE_MSG_FRAMES];//  the frames kept, views into parts
    size_t size;                            //  frames the message had
    bool malformed;                         //  a packet that did not parse
} stage_msg_t;

//  Receive one whole message from a stage inbox (a packet) without
//  blocking. 0, or -1 if none was waiting (self then holds no frames). A
//  packet that does not parse is received with no frames and malformed set.
int
    stage_msg_recv (stage_msg_t *self, zsock_t *sock);
//  Receive one whole multipart message (the front door) without blocking;
//  0 or -1 as stage_msg_recv
int
    stage_msg_recv_parts (stage_msg_t *self, zsock_t *sock);
//  The number of frames the message had, kept or not
size_t
    stage_msg_size (stage_msg_t *self);
//  Frame index, or NULL if the message had no such frame or it was dropped
const stage_frame_t *
    stage_msg_frame (stage_msg_t *self, size_t index);
//  True if frame index holds exactly the bytes of string
bool
    stage_msg_is (stage_msg_t *self, size_t index, const char *string);
//  Release the frames; self may be received into again
void
    stage_msg_close (stage_msg_t *self);

#endif
