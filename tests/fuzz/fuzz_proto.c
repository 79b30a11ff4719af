/*  =========================================================================
    fuzz_proto - libFuzzer target for the request decoder and schema check

    Any bytes: the bounded validator, msgpack-c's decoder behind it, and
    ingest's schema check must answer or refuse, never crash or allocate
    beyond the input's size. A decoded request must also re-encode to bytes
    that decode to the same map.
    =========================================================================
*/
#include <assert.h>
#include <string.h>
#include "chorus/proto.h"
#include "ingest.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    const char *why = NULL;
    proto_msg_t *msg = proto_msg_decode (data, size, &why);
    if (!msg) {
        assert (why);
        return 0;
    }
    proto_error_t code = ingest_check (msg, &why);
    assert (code >= PROTO_OK && code < PROTO_ERR_COUNT);
    //  Round trip: re-encoding the decoded map gives a valid map that
    //  encodes to the same bytes again (bytes, not values: NaN != NaN)
    proto_writer_t *writer = proto_writer_new ();
    proto_writer_object (writer, proto_msg_root (msg));
    proto_msg_t *again = proto_msg_decode (proto_writer_data (writer),
                                           proto_writer_size (writer), &why);
    assert (again);
    proto_writer_t *twice = proto_writer_new ();
    proto_writer_object (twice, proto_msg_root (again));
    assert (proto_writer_size (twice) == proto_writer_size (writer));
    assert (memcmp (proto_writer_data (twice), proto_writer_data (writer),
                    proto_writer_size (writer)) == 0);
    proto_writer_destroy (&twice);
    proto_msg_destroy (&again);
    proto_writer_destroy (&writer);
    proto_msg_destroy (&msg);
    return 0;
}
