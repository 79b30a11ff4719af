/*  =========================================================================
    fuzz_codec_roundtrip - libFuzzer target: valid requests survive the codec

    The input is not a message: it is a recipe. The target reads it as a
    little program that builds one valid request (a map with "op" and "rid"
    and fields of every type: maps and arrays nested up to the depth limit,
    strings of valid UTF-8, integers at every width boundary, booleans,
    nil, doubles, bin) within the limits of docs/protocol.md 2. The request
    is written twice:

    * by proto_writer, as every stage writes (32-bit container headers);
    * by an encoder here that writes the canonical msgpack form, the
      smallest encoding of each value (the msgpack spec's rule, and what
      msgpack_pack_object writes).

    Oracles: encode(decode(x)) == canonical(x), byte for byte, where x is
    proto_writer's bytes and decode is proto_msg_decode (the bounded
    validator and msgpack-c behind it); decode(canonical(x)) is the same
    object; the typed getters read back op and rid; ingest's schema check
    answers a valid code. When the value is exactly representable in JSON
    (no bin, integers within +-2^53, finite non-integral doubles), the
    edge's JSON codec round-trips it too: json_to_msgpack(json_from_msgpack
    (canonical)) re-encodes to the canonical bytes.

    Build: cmake -DCHORUS_FUZZ=ON; corpus tests/fuzz/corpus/fuzz_codec_roundtrip.
    =========================================================================
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "chorus/proto.h"
#include "ingest.h"
#include "json.h"

//  The canonical encoder and the recipe readers are left out of the
//  coverage instrumentation (clang's no_sanitize ("coverage")): they run
//  for every byte, and the codec code they feed is what is measured. The
//  generator's choices (s_crt_value, s_crt_container) stay traced. Not
//  inlined: clang 14 would instrument a copy inlined into a traced caller.
#if defined (__clang__) && __clang_major__ >= 13
#   define CRT_UNTRACED __attribute__ ((no_sanitize ("coverage"), noinline))
#else
#   define CRT_UNTRACED
#endif

#define CRT_MAX_OUT     (PROTO_MAX_FRAME - 1024)    //  leave room for the last value
#define CRT_MAX_NODES   (PROTO_MAX_NODES - 16)

CRT_UNTRACED static void
s_crt_fail (const char *what)
{
    fprintf (stderr, "fuzz_codec_roundtrip: %s\n", what);
    abort ();
}

#define CRT_CHECK(cond, what) do { if (!(cond)) s_crt_fail (what); } while (0)

//  ---------------------------------------------------------------------
//  The canonical encoder: a growable buffer and the msgpack spec's
//  smallest form of each value

typedef struct {
    uint8_t *data;
    size_t size;
    size_t capacity;
} s_crt_buf_t;

CRT_UNTRACED static void
s_crt_put (s_crt_buf_t *buf, const void *data, size_t size)
{
    if (size == 0)
        return;
    if (buf->size + size > buf->capacity) {
        size_t capacity = buf->capacity? buf->capacity * 2: 4096;
        while (capacity < buf->size + size)
            capacity *= 2;
        buf->data = (uint8_t *) realloc (buf->data, capacity);
        CRT_CHECK (buf->data, "out of memory");
        buf->capacity = capacity;
    }
    memcpy (buf->data + buf->size, data, size);
    buf->size += size;
}

//  A marker byte followed by an n-byte big-endian value
CRT_UNTRACED static void
s_crt_put_be (s_crt_buf_t *buf, uint8_t marker, uint64_t value, int n)
{
    uint8_t bytes [9];
    bytes [0] = marker;
    for (int i = 0; i < n; i++)
        bytes [1 + i] = (uint8_t) (value >> (8 * (n - 1 - i)));
    s_crt_put (buf, bytes, 1 + n);
}

CRT_UNTRACED static void
s_crt_canon_uint (s_crt_buf_t *buf, uint64_t value)
{
    if (value < 128)
        s_crt_put_be (buf, (uint8_t) value, 0, 0);
    else
    if (value < 256)
        s_crt_put_be (buf, 0xcc, value, 1);
    else
    if (value < 65536)
        s_crt_put_be (buf, 0xcd, value, 2);
    else
    if (value <= UINT32_MAX)
        s_crt_put_be (buf, 0xce, value, 4);
    else
        s_crt_put_be (buf, 0xcf, value, 8);
}

CRT_UNTRACED static void
s_crt_canon_int (s_crt_buf_t *buf, int64_t value)
{
    if (value >= 0)
        s_crt_canon_uint (buf, (uint64_t) value);
    else
    if (value >= -32)
        s_crt_put_be (buf, (uint8_t) (0xe0 | (value & 0x1f)), 0, 0);
    else
    if (value >= INT8_MIN)
        s_crt_put_be (buf, 0xd0, (uint64_t) value & 0xff, 1);
    else
    if (value >= INT16_MIN)
        s_crt_put_be (buf, 0xd1, (uint64_t) value & 0xffff, 2);
    else
    if (value >= INT32_MIN)
        s_crt_put_be (buf, 0xd2, (uint64_t) value & 0xffffffff, 4);
    else
        s_crt_put_be (buf, 0xd3, (uint64_t) value, 8);
}

CRT_UNTRACED static void
s_crt_canon_str (s_crt_buf_t *buf, const char *text, size_t len)
{
    if (len < 32)
        s_crt_put_be (buf, (uint8_t) (0xa0 | len), 0, 0);
    else
    if (len < 256)
        s_crt_put_be (buf, 0xd9, len, 1);
    else
    if (len < 65536)
        s_crt_put_be (buf, 0xda, len, 2);
    else
        s_crt_put_be (buf, 0xdb, len, 4);
    s_crt_put (buf, text, len);
}

CRT_UNTRACED static void
s_crt_canon_bin (s_crt_buf_t *buf, const void *data, size_t len)
{
    if (len < 256)
        s_crt_put_be (buf, 0xc4, len, 1);
    else
    if (len < 65536)
        s_crt_put_be (buf, 0xc5, len, 2);
    else
        s_crt_put_be (buf, 0xc6, len, 4);
    s_crt_put (buf, data, len);
}

CRT_UNTRACED static void
s_crt_canon_double (s_crt_buf_t *buf, double value)
{
    uint64_t bits;
    memcpy (&bits, &value, 8);
    s_crt_put_be (buf, 0xcb, bits, 8);
}

//  Container headers with a known count
CRT_UNTRACED static void
s_crt_canon_container (s_crt_buf_t *buf, bool is_map, uint32_t count)
{
    if (count < 16)
        s_crt_put_be (buf, (uint8_t) ((is_map? 0x80: 0x90) | count), 0, 0);
    else
    if (count < 65536)
        s_crt_put_be (buf, is_map? 0xde: 0xdc, count, 2);
    else
        s_crt_put_be (buf, is_map? 0xdf: 0xdd, count, 4);
}

//  ---------------------------------------------------------------------
//  The generator: reads the recipe, writes both encodings at once.
//  Containers are written to the canonical buffer after their items (the
//  count must be known), so each level builds into its own buffer: one
//  per depth (siblings take turns), kept from one input to the next, as a
//  buffer of its own for every container made the allocator the cost.

typedef struct {
    const uint8_t *pos;         //  next recipe byte
    const uint8_t *end;
    proto_writer_t *writer;     //  proto_writer's encoding
    size_t nodes;               //  objects written so far
    size_t bytes;               //  rough size written so far
    bool json_exact;            //  JSON can carry the value exactly
    bool has_nan;               //  a NaN double (msgpack_object_equal says NaN != NaN)
    const char *op;             //  the op written
    uint64_t rid;               //  the rid written
} s_crt_gen_t;

static s_crt_buf_t s_crt_level [PROTO_MAX_DEPTH + 1];     //  by depth

CRT_UNTRACED static uint8_t
s_crt_byte (s_crt_gen_t *gen)
{
    return gen->pos < gen->end? *gen->pos++: 0;
}

CRT_UNTRACED static uint64_t
s_crt_bytes (s_crt_gen_t *gen, int n)
{
    uint64_t value = 0;
    for (int i = 0; i < n; i++)
        value = (value << 8) | s_crt_byte (gen);
    return value;
}

//  Field names: those the schemas know, so ingest_check gets far
static const char *s_crt_keys [] = {
    "ch", "seq", "body", "client_msg_id", "limit", "before", "after", "around",
    "around_unread", "token", "tenant", "handle", "password", "display_name",
    "name", "private", "users", "user", "channels", "muted", "notify_always",
    "ref", "bot", "x", "", "é", "\xf0\x9f\x98\x80"
};
#define CRT_KEY_COUNT (sizeof (s_crt_keys) / sizeof (s_crt_keys [0]))

static const char *s_crt_ops [] = {
    "ping", "bye", "login", "auth", "logout", "tenant_create", "tenant_list",
    "user_create", "token_create", "user_list", "channel_create", "channel_list",
    "channel_browse", "channel_join", "channel_leave", "channel_invite",
    "channel_members", "channel_settings", "dm_open", "send", "edit", "delete",
    "typing", "history", "read", "sync", "fly", ""
};
#define CRT_OP_COUNT (sizeof (s_crt_ops) / sizeof (s_crt_ops [0]))

//  Integers at the width boundaries, where encoders go wrong
static const int64_t s_crt_edges [] = {
    0, 1, 31, 32, 127, 128, 255, 256, 65535, 65536, 4294967295LL, 4294967296LL,
    9007199254740991LL, 9007199254740992LL, INT64_MAX,
    -1, -31, -32, -33, -127, -128, -129, -32767, -32768, -32769,
    -2147483647LL, -2147483648LL, -2147483649LL, -9007199254740991LL,
    -9007199254740992LL, INT64_MIN
};
#define CRT_EDGE_COUNT (sizeof (s_crt_edges) / sizeof (s_crt_edges [0]))

//  Writes a valid UTF-8 string built from the recipe: each byte picks a
//  code point from a range of each encoded length, surrogates skipped
CRT_UNTRACED static size_t
s_crt_utf8 (s_crt_gen_t *gen, char *out, size_t max_len)
{
    size_t len = 0;
    size_t chars = s_crt_byte (gen);
    if (chars > 200)
        chars = (chars - 200) * 64;     //  now and then a long one
    for (size_t i = 0; i < chars && gen->pos < gen->end; i++) {
        uint8_t b = s_crt_byte (gen);
        uint32_t cp;
        switch (b >> 6) {
            case 0: cp = 0x20 + (b & 0x3f); break;                                //  ASCII
            case 1: cp = (b & 0x3f) < 0x20? (uint32_t) (b & 0x1f): 0x80 + (uint32_t) b * 7; break;
            case 2: cp = 0x800 + (uint32_t) s_crt_bytes (gen, 2) % (0xFFFF - 0x800); break;
            default: cp = 0x10000 + (uint32_t) s_crt_bytes (gen, 3) % 0x100000; break;
        }
        if (cp >= 0xD800 && cp <= 0xDFFF)
            cp = 0xFFFD;
        uint8_t enc [4];
        size_t n;
        if (cp < 0x80) {
            enc [0] = (uint8_t) cp; n = 1;
        }
        else
        if (cp < 0x800) {
            enc [0] = (uint8_t) (0xC0 | (cp >> 6));
            enc [1] = (uint8_t) (0x80 | (cp & 0x3F)); n = 2;
        }
        else
        if (cp < 0x10000) {
            enc [0] = (uint8_t) (0xE0 | (cp >> 12));
            enc [1] = (uint8_t) (0x80 | ((cp >> 6) & 0x3F));
            enc [2] = (uint8_t) (0x80 | (cp & 0x3F)); n = 3;
        }
        else {
            enc [0] = (uint8_t) (0xF0 | (cp >> 18));
            enc [1] = (uint8_t) (0x80 | ((cp >> 12) & 0x3F));
            enc [2] = (uint8_t) (0x80 | ((cp >> 6) & 0x3F));
            enc [3] = (uint8_t) (0x80 | (cp & 0x3F)); n = 4;
        }
        if (len + n > max_len)
            break;
        memcpy (out + len, enc, n);
        len += n;
    }
    return len;
}

static void s_crt_value (s_crt_gen_t *gen, s_crt_buf_t *canon, int depth);

//  A map of distinct string keys (or an array) at depth
static void
s_crt_container (s_crt_gen_t *gen, s_crt_buf_t *canon, int depth, bool is_map)
{
    uint32_t count = s_crt_byte (gen);
    if (count > 40)
        count = count % 7;
    if (is_map && count > PROTO_MAX_MAP_ENTRIES)
        count = PROTO_MAX_MAP_ENTRIES;
    s_crt_buf_t *inner = &s_crt_level [depth];
    inner->size = 0;
    uint32_t written = 0;
    if (is_map)
        proto_writer_map_begin (gen->writer);
    else
        proto_writer_array_begin (gen->writer);
    bool used [CRT_KEY_COUNT] = { false };
    for (uint32_t i = 0; i < count && gen->pos < gen->end; i++) {
        if (gen->nodes + 2 > CRT_MAX_NODES || gen->bytes > CRT_MAX_OUT)
            break;
        if (is_map) {
            //  A known key not used yet, else a made-up one that cannot clash
            uint8_t k = s_crt_byte (gen) % (CRT_KEY_COUNT + 1);
            char made [16];
            const char *key;
            if (k < CRT_KEY_COUNT && !used [k]) {
                used [k] = true;
                key = s_crt_keys [k];
            }
            else {
                snprintf (made, sizeof (made), "k%u", (unsigned) i);
                key = made;
            }
            proto_writer_str (gen->writer, key);
            s_crt_canon_str (inner, key, strlen (key));
            gen->nodes++;
            gen->bytes += strlen (key) + 5;
        }
        s_crt_value (gen, inner, depth + 1);
        written++;
    }
    if (is_map)
        proto_writer_map_end (gen->writer);
    else
        proto_writer_array_end (gen->writer);
    s_crt_canon_container (canon, is_map, written);
    s_crt_put (canon, inner->data, inner->size);
}

//  One value at depth (the root map is depth 1)
static void
s_crt_value (s_crt_gen_t *gen, s_crt_buf_t *canon, int depth)
{
    gen->nodes++;
    gen->bytes += 9;
    uint8_t kind = s_crt_byte (gen) % 12;
    if ((kind == 10 || kind == 11) && depth > PROTO_MAX_DEPTH)
        kind = 0;                       //  no container below the depth limit
    switch (kind) {
        case 0: {                       //  unsigned, any width
            int width = 1 << (s_crt_byte (gen) % 4);
            uint64_t value = s_crt_bytes (gen, width);
            proto_writer_u64 (gen->writer, value);
            s_crt_canon_uint (canon, value);
            if (value > ((uint64_t) 1 << 53))
                gen->json_exact = false;
            break;
        }
        case 1: {                       //  signed, any width
            int width = 1 << (s_crt_byte (gen) % 4);
            uint64_t raw = s_crt_bytes (gen, width);
            int64_t value = width == 8? (int64_t) raw
                          : (int64_t) raw - (int64_t) (((uint64_t) 1 << (8 * width)) >> 1);
            proto_writer_i64 (gen->writer, value);
            s_crt_canon_int (canon, value);
            if (value > (int64_t) 1 << 53 || value < -((int64_t) 1 << 53))
                gen->json_exact = false;
            break;
        }
        case 2: {                       //  an edge integer
            int64_t value = s_crt_edges [s_crt_byte (gen) % CRT_EDGE_COUNT];
            if (value >= 0 && (s_crt_byte (gen) & 1))
                proto_writer_u64 (gen->writer, (uint64_t) value);
            else
                proto_writer_i64 (gen->writer, value);
            s_crt_canon_int (canon, value);
            if (value > (int64_t) 1 << 53 || value < -((int64_t) 1 << 53))
                gen->json_exact = false;
            break;
        }
        case 3: case 4: {               //  a string
            char text [4096];
            size_t len = s_crt_utf8 (gen, text, sizeof (text));
            proto_writer_strn (gen->writer, text, len);
            s_crt_canon_str (canon, text, len);
            gen->bytes += len;
            break;
        }
        case 5:
            proto_writer_bool (gen->writer, true);
            s_crt_put_be (canon, 0xc3, 0, 0);
            break;
        case 6:
            proto_writer_bool (gen->writer, false);
            s_crt_put_be (canon, 0xc2, 0, 0);
            break;
        case 7:
            proto_writer_nil (gen->writer);
            s_crt_put_be (canon, 0xc0, 0, 0);
            break;
        case 8: {                       //  a double, any bits
            uint64_t bits = s_crt_bytes (gen, 8);
            double value;
            memcpy (&value, &bits, 8);
            proto_writer_double (gen->writer, value);
            s_crt_canon_double (canon, value);
            if (isnan (value))
                gen->has_nan = true;
            //  JSON carries finite doubles, but integral ones within
            //  +-2^53 come back as integers
            if (!isfinite (value)
            ||  (fabs (value) <= 9007199254740992.0 && value == floor (value)))
                gen->json_exact = false;
            break;
        }
        case 9: {                       //  bin
            size_t len = s_crt_byte (gen);
            if (len > 200)
                len = (len - 200) * 300;
            if ((size_t) (gen->end - gen->pos) < len)
                len = (size_t) (gen->end - gen->pos);
            proto_writer_bin (gen->writer, gen->pos, len);
            s_crt_canon_bin (canon, gen->pos, len);
            gen->pos += len;
            gen->bytes += len;
            gen->json_exact = false;
            break;
        }
        case 10:
            s_crt_container (gen, canon, depth, true);
            break;
        default:
            s_crt_container (gen, canon, depth, false);
            break;
    }
}

//  The request: {op, rid, fields...}
static void
s_crt_request (s_crt_gen_t *gen, s_crt_buf_t *canon)
{
    s_crt_buf_t *inner = &s_crt_level [1];
    inner->size = 0;
    gen->op = s_crt_ops [s_crt_byte (gen) % CRT_OP_COUNT];
    gen->rid = s_crt_bytes (gen, 1 + s_crt_byte (gen) % 8);
    proto_writer_map_begin (gen->writer);
    proto_writer_kv_str (gen->writer, "op", gen->op);
    proto_writer_kv_u64 (gen->writer, "rid", gen->rid);
    s_crt_canon_str (inner, "op", 2);
    s_crt_canon_str (inner, gen->op, strlen (gen->op));
    s_crt_canon_str (inner, "rid", 3);
    s_crt_canon_uint (inner, gen->rid);
    if (gen->rid > ((uint64_t) 1 << 53))
        gen->json_exact = false;
    gen->nodes = 5;
    uint32_t count = 2;
    bool used [CRT_KEY_COUNT] = { false };
    uint32_t fields = s_crt_byte (gen) % 16;
    for (uint32_t i = 0; i < fields && gen->pos < gen->end; i++) {
        if (gen->nodes + 2 > CRT_MAX_NODES || gen->bytes > CRT_MAX_OUT)
            break;
        uint8_t k = s_crt_byte (gen) % CRT_KEY_COUNT;
        if (used [k])
            continue;
        used [k] = true;
        proto_writer_str (gen->writer, s_crt_keys [k]);
        s_crt_canon_str (inner, s_crt_keys [k], strlen (s_crt_keys [k]));
        gen->nodes++;
        s_crt_value (gen, inner, 2);
        count++;
    }
    proto_writer_map_end (gen->writer);
    s_crt_canon_container (canon, true, count);
    s_crt_put (canon, inner->data, inner->size);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    static proto_writer_t *writer, *again;
    if (!writer) {
        writer = proto_writer_new ();
        again = proto_writer_new ();
    }
    proto_writer_reset (writer);
    s_crt_gen_t gen = { data, data + size, writer, 0, 0, true, false, NULL, 0 };
    static s_crt_buf_t canon;           //  kept, as the levels are
    canon.size = 0;
    s_crt_request (&gen, &canon);
    if (proto_writer_size (writer) > PROTO_MAX_FRAME)
        return 0;                       //  over the frame cap: not a valid request
    //  decode(x): valid by construction
    const char *why = NULL;
    proto_msg_t *msg = proto_msg_decode (proto_writer_data (writer), proto_writer_size (writer),
                                         &why);
    if (!msg) {
        fprintf (stderr, "fuzz_codec_roundtrip: refused: %s (%zu bytes, %zu nodes)\n",
                 why, proto_writer_size (writer), gen.nodes);
        s_crt_fail ("a valid request was refused");
    }
    //  encode(decode(x)) == canonical(x)
    proto_writer_reset (again);
    proto_writer_object (again, proto_msg_root (msg));
    CRT_CHECK (proto_writer_size (again) == canon.size
               && memcmp (proto_writer_data (again), canon.data, canon.size) == 0,
               "encode(decode(x)) is not the canonical form of x");
    //  decode(canonical(x)) == decode(x)
    proto_msg_t *canonical = proto_msg_decode (canon.data, canon.size, &why);
    CRT_CHECK (canonical, "the canonical form is refused");
    CRT_CHECK (gen.has_nan
               || msgpack_object_equal (*proto_msg_root (msg), *proto_msg_root (canonical)),
               "decode(canonical(x)) differs from decode(x)");
    //  The typed getters read back what was written
    const char *op;
    size_t op_len;
    uint64_t rid;
    CRT_CHECK (proto_msg_str (msg, "op", &op, &op_len) && op_len == strlen (gen.op)
               && memcmp (op, gen.op, op_len) == 0, "op does not read back");
    CRT_CHECK (proto_msg_u64 (msg, "rid", &rid) && rid == gen.rid, "rid does not read back");
    proto_error_t code = ingest_check (msg, &why);
    CRT_CHECK (code >= PROTO_OK && code < PROTO_ERR_COUNT, "ingest_check: bad code");
    //  Through the edge's JSON codec and back, when JSON can carry it
    if (gen.json_exact) {
        json_out_t out;
        json_out_init (&out, 0);
        CRT_CHECK (json_from_msgpack (canon.data, canon.size, &out, NULL, NULL) == 0,
                   "json_from_msgpack refused a valid request");
        json_result_t result;
        proto_writer_reset (again);
        if (json_to_msgpack (json_out_text (&out), out.size, out.size, again, &result)) {
            fprintf (stderr, "fuzz_codec_roundtrip: %s at %zu\n",
                     json_error_text (result.error), result.offset);
            s_crt_fail ("json_to_msgpack refused what json_from_msgpack wrote");
        }
        proto_msg_t *back = proto_msg_decode (proto_writer_data (again),
                                              proto_writer_size (again), &why);
        CRT_CHECK (back, "the JSON round trip is refused");
        proto_writer_reset (again);
        proto_writer_object (again, proto_msg_root (back));
        CRT_CHECK (proto_writer_size (again) == canon.size
                   && memcmp (proto_writer_data (again), canon.data, canon.size) == 0,
                   "the JSON round trip changed the request");
        proto_msg_destroy (&back);
        json_out_free (&out);
    }
    proto_msg_destroy (&canonical);
    proto_msg_destroy (&msg);
    return 0;
}
