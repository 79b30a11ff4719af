/*  =========================================================================
    stage_packet - several frames as one ZeroMQ frame, between stages
    =========================================================================
*/
#include <string.h>
#include "stage_packet.h"

#define S_HEADER_BYTES(count)   (1 + 4 * (count))

static inline void
s_put_u32 (uint8_t *out, uint32_t value)
{
    out [0] = (uint8_t) value;
    out [1] = (uint8_t) (value >> 8);
    out [2] = (uint8_t) (value >> 16);
    out [3] = (uint8_t) (value >> 24);
}

static inline uint32_t
s_get_u32 (const uint8_t *in)
{
    return (uint32_t) in [0] | (uint32_t) in [1] << 8
         | (uint32_t) in [2] << 16 | (uint32_t) in [3] << 24;
}

//  --------------------------------------------------------------------------
//  The size of the packet of frames; 0 if it cannot be one

size_t
stage_packet_size (const stage_frame_t *frames, size_t count)
{
    if (count == 0 || count > STAGE_PACKET_FRAMES_MAX)
        return 0;
    size_t size = S_HEADER_BYTES (count);
    for (size_t i = 0; i < count; i++) {
        if (frames [i].size > STAGE_PACKET_SIZE_MAX - size)
            return 0;
        size += frames [i].size;
    }
    return size;
}

//  --------------------------------------------------------------------------
//  Write the packet of frames into out

void
stage_packet_write (uint8_t *out, const stage_frame_t *frames, size_t count)
{
    out [0] = (uint8_t) count;
    uint8_t *body = out + S_HEADER_BYTES (count);
    for (size_t i = 0; i < count; i++) {
        s_put_u32 (out + 1 + 4 * i, (uint32_t) frames [i].size);
        if (frames [i].size)
            memcpy (body, frames [i].data, frames [i].size);
        body += frames [i].size;
    }
}

//  --------------------------------------------------------------------------
//  Parse a packet; false if data is not one

bool
stage_packet_parse (const uint8_t *data, size_t size, stage_frame_t *views,
                    size_t keep, size_t *count)
{
    if (size < 1 || size > STAGE_PACKET_SIZE_MAX)
        return false;
    size_t frames = data [0];
    if (frames == 0 || frames > STAGE_PACKET_FRAMES_MAX || size < S_HEADER_BYTES (frames))
        return false;
    size_t offset = S_HEADER_BYTES (frames);
    for (size_t i = 0; i < frames; i++) {
        size_t frame_size = s_get_u32 (data + 1 + 4 * i);
        if (frame_size > size - offset)
            return false;
        if (i < keep)
            views [i] = (stage_frame_t) { data + offset, frame_size };
        offset += frame_size;
    }
    if (offset != size)
        return false;           //  bytes after the last frame
    *count = frames;
    return true;
}
