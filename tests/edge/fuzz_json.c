/*  =========================================================================
    fuzz_json - libFuzzer target for the edge's JSON <-> msgpack code

    Each input is used twice:
    * as JSON: whatever json_to_msgpack accepts must pass the broker's
      proto_validate, and must come back unchanged through
      json_from_msgpack and json_to_msgpack again (byte for byte);
    * as msgpack: json_from_msgpack must not crash, and what it writes
      must be valid UTF-8.

    Build and run (from the repository root):
    clang-14 -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
        -Iinclude -Iedge tests/edge/fuzz_json.c edge/json.c proto/proto_*.c \
        -lmsgpackc -o fuzz_json
    mkdir -p /tmp/fuzz-json && ./fuzz_json -max_total_time=30 -max_len=200000 \
        /tmp/fuzz-json tests/fuzz/corpus/fuzz_json
    (libFuzzer adds what it finds to the first directory: keep it out of git)
    =========================================================================
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "json.h"

//  Fails the run with a message
static void
s_fail (const char *what)
{
    fprintf (stderr, "fuzz_json: %s\n", what);
    abort ();
}

//  JSON in: the msgpack must be valid and stable over a round trip
static void
s_check_json (const uint8_t *data, size_t size, proto_writer_t *first, proto_writer_t *second)
{
    json_result_t result;
    proto_writer_reset (first);
    if (json_to_msgpack (data, size, PROTO_MAX_FRAME, first, &result))
        return;
    const char *why = NULL;
    if (proto_validate (proto_writer_data (first), proto_writer_size (first), &why))
        s_fail (why);
    json_out_t out;
    json_out_init (&out, 16);
    if (json_from_msgpack (proto_writer_data (first), proto_writer_size (first), &out, NULL, NULL))
        s_fail ("accepted JSON cannot be written back");
    proto_writer_reset (second);
    //  Written back, it may be longer (escapes), so allow any size here
    if (json_to_msgpack (json_out_text (&out), out.size, out.size, second, &result))
        s_fail ("JSON we wrote is refused");
    if (proto_writer_size (first) != proto_writer_size (second)
    ||  memcmp (proto_writer_data (first), proto_writer_data (second),
                proto_writer_size (first)))
        s_fail ("round trip changed the value");
    json_out_free (&out);
}

//  msgpack in: any bytes; the JSON out must be valid UTF-8
static void
s_check_msgpack (const uint8_t *data, size_t size)
{
    json_out_t out;
    json_out_init (&out, 0);
    json_root_t root;
    if (json_from_msgpack (data, size, &out, "re", &root) == 0
    &&  !proto_utf8_valid (json_out_text (&out), out.size))
        s_fail ("JSON written is not valid UTF-8");
    json_out_free (&out);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    static proto_writer_t *first, *second;
    if (!first) {
        first = proto_writer_new ();
        second = proto_writer_new ();
    }
    s_check_json (data, size, first, second);
    s_check_msgpack (data, size);
    return 0;
}
