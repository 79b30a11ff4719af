/*  =========================================================================
    fuzz_stage_packet - libFuzzer target for the packet between stages

    Any bytes, as a tcp inbox may receive them from another host: the
    parser accepts a packet or refuses, never reads past the input. A packet
    it accepts writes back to the same bytes from its frames, and each frame
    then goes to the decoder a split stage uses for its context.
    =========================================================================
*/
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include "stage_packet.h"
#include "chorus/proto.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    stage_frame_t frames [STAGE_PACKET_FRAMES_MAX];
    size_t count = 0;
    if (!stage_packet_parse (data, size, frames, STAGE_PACKET_FRAMES_MAX, &count))
        return 0;
    assert (count >= 1 && count <= STAGE_PACKET_FRAMES_MAX);
    assert (stage_packet_size (frames, count) == size);
    uint8_t *again = (uint8_t *) malloc (size);
    assert (again);
    stage_packet_write (again, frames, count);
    assert (memcmp (again, data, size) == 0);
    free (again);
    //  Keeping fewer views reports the same count
    stage_frame_t first;
    size_t count_one = 0;
    assert (stage_packet_parse (data, size, &first, 1, &count_one) && count_one == count);
    assert (first.data == frames [0].data && first.size == frames [0].size);
    for (size_t i = 0; i < count; i++) {
        proto_msg_t *msg = proto_msg_decode_stage (frames [i].data, frames [i].size, NULL);
        proto_msg_destroy (&msg);
    }
    return 0;
}
