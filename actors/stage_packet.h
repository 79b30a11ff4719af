/*  =========================================================================
    stage_packet - several frames as one ZeroMQ frame, between stages

    A packet is: the frame count (1 byte, 1..STAGE_PACKET_FRAMES_MAX), then
    each frame's size (4 bytes little-endian each), then the frames' bytes
    one after another, nothing after them. Its size is bounded by
    STAGE_PACKET_SIZE_MAX. A packet from another host (a tcp inbox) is
    bytes from outside: stage_packet_parse checks every size against what
    is there and refuses anything else.
    =========================================================================
*/
#ifndef CHORUS_STAGE_PACKET_H_INCLUDED
#define CHORUS_STAGE_PACKET_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "stage_msg.h"

//  Frames a packet may hold
#define STAGE_PACKET_FRAMES_MAX  16
//  Bytes a packet may have: a request, its context and headers fit with
//  room to spare (proto.h bounds each frame well below this)
#define STAGE_PACKET_SIZE_MAX    (4 * 1024 * 1024)

//  The size of the packet of frames; 0 if there are none, more than
//  STAGE_PACKET_FRAMES_MAX, or the packet would pass STAGE_PACKET_SIZE_MAX
size_t
    stage_packet_size (const stage_frame_t *frames, size_t count);
//  Write the packet of frames into out, which holds stage_packet_size bytes
void
    stage_packet_write (uint8_t *out, const stage_frame_t *frames, size_t count);
//  Parse a packet: sets *count to its frames and views to the first
//  `keep` of them (pointing into data). False if data is not a packet.
bool
    stage_packet_parse (const uint8_t *data, size_t size, stage_frame_t *views,
                        size_t keep, size_t *count);

#endif
