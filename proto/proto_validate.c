/*  =========================================================================
    proto_validate - bounded scan of untrusted msgpack before decoding

    msgpack-c allocates whatever an array32 or map32 header claims, so five
    bytes can ask for gigabytes. This scan walks the bytes once, with an
    explicit stack and no allocation, and accepts only input within the
    limits of proto.h. Only then does proto_msg_decode call msgpack-c.
    =========================================================================
*/
#include <stdlib.h>
#include <string.h>
#include "chorus/proto.h"

typedef enum { S_SCALAR, S_ARRAY, S_MAP, S_STRING } s_kind_t;

typedef struct {
    uint32_t remaining;         //  items still to read in this container
    bool is_map;                //  map (keys and values alternate)
    uint32_t keys;              //  keys seen so far (maps only)
    const uint8_t *key_ptr [PROTO_MAX_MAP_ENTRIES];  //  keys seen, for duplicates
    uint32_t key_len [PROTO_MAX_MAP_ENTRIES];
} s_frame_t;

typedef struct {
    const uint8_t *pos;         //  next byte to read
    const uint8_t *end;         //  one past the last byte
    const char *why;            //  reason for rejection
    size_t nodes;               //  objects seen so far
} s_scan_t;

static uint64_t
s_be (const uint8_t *p, int n)
{
    uint64_t value = 0;
    for (int i = 0; i < n; i++)
        value = (value << 8) | p [i];
    return value;
}

//  Reads an n-byte big-endian length; -1 if the input is too short
static int
s_read_len (s_scan_t *scan, int n, uint64_t *len)
{
    if (scan->end - scan->pos < n) {
        scan->why = "truncated length";
        return -1;
    }
    *len = s_be (scan->pos, n);
    scan->pos += n;
    return 0;
}

//  Skips a payload of len bytes, checking it is there
static int
s_skip (s_scan_t *scan, uint64_t len)
{
    if ((uint64_t) (scan->end - scan->pos) < len) {
        scan->why = "truncated payload";
        return -1;
    }
    scan->pos += len;
    return 0;
}

//  The top bit of each byte of a 64-bit word
#define S_HIGH_BITS 0x8080808080808080ULL

//  Eight bytes as a word (any alignment)
static inline uint64_t
s_word (const uint8_t *bytes)
{
    uint64_t word;
    memcpy (&word, bytes, sizeof (word));
    return word;
}

//  --------------------------------------------------------------------------
//  True if the bytes are valid UTF-8 (shortest form, no surrogates, <= U+10FFFF)

bool
proto_utf8_valid (const void *data, size_t size)
{
    const uint8_t *p = (const uint8_t *) data;
    const uint8_t *end = p + size;
    while (p < end) {
        if (end - p >= 8 && (s_word (p) & S_HIGH_BITS) == 0) {
            p += 8;             //  eight ASCII bytes at once
            continue;
        }
        uint8_t c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        int extra;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            extra = 1; cp = c & 0x1F;
        }
        else
        if (c >= 0xE0 && c <= 0xEF) {
            extra = 2; cp = c & 0x0F;
        }
        else
        if (c >= 0xF0 && c <= 0xF4) {
            extra = 3; cp = c & 0x07;
        }
        else
            return false;
        if (end - p <= extra)
            return false;
        for (int i = 1; i <= extra; i++) {
            if ((p [i] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p [i] & 0x3F);
        }
        if ((extra == 2 && cp < 0x800)
        ||  (extra == 3 && (cp < 0x10000 || cp > 0x10FFFF))
        ||  (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        p += extra + 1;
    }
    return true;
}

//  --------------------------------------------------------------------------
//  Number of code points in a valid UTF-8 string

size_t
proto_utf8_chars (const void *data, size_t size)
{
    //  Every byte starts a code point but continuation bytes (10xxxxxx);
    //  a word's continuation bytes are those with bit 7 set and bit 6 clear
    const uint8_t *p = (const uint8_t *) data;
    size_t continuations = 0;
    size_t i = 0;
    for (; i + 8 <= size; i += 8) {
        uint64_t word = s_word (p + i);
        continuations += __builtin_popcountll (word & ~(word << 1) & S_HIGH_BITS);
    }
    for (; i < size; i++)
        if ((p [i] & 0xC0) == 0x80)
            continuations++;
    return size - continuations;
}

//  Records a string key in the innermost map frame; -1 on duplicate
static int
s_note_key (s_scan_t *scan, s_frame_t *frame, const uint8_t *key, uint32_t len)
{
    for (uint32_t i = 0; i < frame->keys; i++)
        if (frame->key_len [i] == len && memcmp (frame->key_ptr [i], key, len) == 0) {
            scan->why = "duplicate map key";
            return -1;
        }
    frame->key_ptr [frame->keys] = key;
    frame->key_len [frame->keys] = len;
    frame->keys++;
    return 0;
}

//  Reads one object header; for containers sets *count (items, not pairs)
//  and *is_map; for strings returns their bytes in *str/*str_len.
//  Returns 0, or -1 on malformed input.
static int
s_read_header (s_scan_t *scan, s_kind_t *kind, uint64_t *count,
               const uint8_t **str, uint64_t *str_len)
{
    if (scan->pos >= scan->end) {
        scan->why = "truncated input";
        return -1;
    }
    uint8_t b = *scan->pos++;
    uint64_t len = 0;
    *kind = S_SCALAR;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return 0;
    if (b >= 0x80 && b <= 0x8f) {
        *kind = S_MAP; *count = (uint64_t) (b & 0x0f) * 2;
        return 0;
    }
    if (b >= 0x90 && b <= 0x9f) {
        *kind = S_ARRAY; *count = b & 0x0f;
        return 0;
    }
    if (b >= 0xa0 && b <= 0xbf) {
        len = b & 0x1f;
        goto string;
    }
    switch (b) {
        case 0xc4: case 0xc5: case 0xc6:       //  bin 8/16/32
            if (s_read_len (scan, 1 << (b - 0xc4), &len))
                return -1;
            return s_skip (scan, len);
        case 0xca: return s_skip (scan, 4);    //  float32
        case 0xcb: return s_skip (scan, 8);    //  float64
        case 0xcc: case 0xd0: return s_skip (scan, 1);
        case 0xcd: case 0xd1: return s_skip (scan, 2);
        case 0xce: case 0xd2: return s_skip (scan, 4);
        case 0xcf: case 0xd3: return s_skip (scan, 8);
        case 0xd9: case 0xda: case 0xdb:       //  str 8/16/32
            if (s_read_len (scan, 1 << (b - 0xd9), &len))
                return -1;
            goto string;
        case 0xdc: case 0xdd:                  //  array 16/32
            if (s_read_len (scan, b == 0xdc? 2: 4, count))
                return -1;
            *kind = S_ARRAY;
            return 0;
        case 0xde: case 0xdf:                  //  map 16/32
            if (s_read_len (scan, b == 0xde? 2: 4, count))
                return -1;
            *count *= 2;
            *kind = S_MAP;
            return 0;
        default:
            scan->why = "ext types and reserved bytes are not accepted";
            return -1;
    }
string:
    if ((uint64_t) (scan->end - scan->pos) < len) {
        scan->why = "truncated string";
        return -1;
    }
    if (!proto_utf8_valid (scan->pos, len)) {
        scan->why = "string is not valid UTF-8";
        return -1;
    }
    *kind = S_STRING;
    *str = scan->pos;
    *str_len = len;
    scan->pos += len;
    return 0;
}

const proto_limits_t proto_client_limits = { PROTO_MAX_FRAME, PROTO_MAX_NODES };
const proto_limits_t proto_stage_limits = { PROTO_STAGE_MAX_FRAME, PROTO_STAGE_MAX_NODES };

//  --------------------------------------------------------------------------
//  Check that data is one msgpack map within the client limits

int
proto_validate (const void *data, size_t size, const char **why)
{
    return proto_validate_limits (data, size, &proto_client_limits, why);
}

//  --------------------------------------------------------------------------
//  Check that data is one msgpack map within the given limits

int
proto_validate_limits (const void *data, size_t size,
                       const proto_limits_t *limits, const char **why)
{
    static const char *dummy;
    if (!why)
        why = &dummy;
    if (size == 0 || size > limits->max_frame) {
        *why = size? "frame over the size limit": "empty frame";
        return -1;
    }
    s_scan_t scan = { (const uint8_t *) data, (const uint8_t *) data + size, NULL, 0 };
    //  PROTO_MAX_DEPTH frames of PROTO_MAX_MAP_ENTRIES keys: 24.7 KB on the
    //  caller's stack (threads here have the default 8 MB), no allocation
    s_frame_t stack [PROTO_MAX_DEPTH];
    int depth = 0;
    int rc = -1;
    bool root = true;
    while (true) {
        //  Pop finished containers
        while (depth > 0 && stack [depth - 1].remaining == 0)
            depth--;
        if (depth == 0 && !root)
            break;
        s_frame_t *parent = depth? &stack [depth - 1]: NULL;
        bool is_key = parent && parent->is_map && (parent->remaining % 2 == 0);
        s_kind_t kind;
        uint64_t count = 0, str_len = 0;
        const uint8_t *str = NULL;
        if (++scan.nodes > limits->max_nodes) {
            scan.why = "too many objects";
            goto done;
        }
        if (s_read_header (&scan, &kind, &count, &str, &str_len))
            goto done;
        if (root && kind != S_MAP) {
            scan.why = "request must be a map";
            goto done;
        }
        root = false;
        if (parent)
            parent->remaining--;
        if (is_key) {
            if (kind != S_STRING) {
                scan.why = "map keys must be strings";
                goto done;
            }
            if (s_note_key (&scan, parent, str, (uint32_t) str_len))
                goto done;
        }
        if (kind == S_ARRAY || kind == S_MAP) {
            if (depth >= PROTO_MAX_DEPTH) {
                scan.why = "nested too deep";
                goto done;
            }
            if (count > (uint64_t) (scan.end - scan.pos)) {
                scan.why = "container claims more items than bytes remain";
                goto done;
            }
            if (kind == S_MAP && count / 2 > PROTO_MAX_MAP_ENTRIES) {
                scan.why = "map has too many keys";
                goto done;
            }
            s_frame_t *frame = &stack [depth++];
            frame->remaining = (uint32_t) count;
            frame->is_map = (kind == S_MAP);
            frame->keys = 0;
        }
    }
    if (scan.pos != scan.end) {
        scan.why = "trailing bytes after the request";
        goto done;
    }
    rc = 0;
done:
    *why = scan.why;
    return rc;
}
