/*  =========================================================================
    proto_writer - build msgpack maps and arrays without knowing their size

    Containers are written with a 32-bit header whose count is patched when
    the container is closed, so callers add fields as they go.
    =========================================================================
*/
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include "chorus/proto.h"

#define WRITER_MAX_DEPTH 16
#define WRITER_FIRST_ALLOC 256

struct _proto_writer_t {
    uint8_t *data;                          //  bytes written so far
    size_t size;                            //  bytes used
    size_t alloc;                           //  bytes allocated
    msgpack_packer packer;                  //  msgpack-c packer, for whole objects
    size_t offset [WRITER_MAX_DEPTH];       //  header offset of each open container
    uint32_t items [WRITER_MAX_DEPTH];      //  objects written into each
    bool is_map [WRITER_MAX_DEPTH];         //  is that container a map
    int depth;                              //  open containers
};

//  Doubles the buffer until len more bytes fit (out of memory is fatal)
static void __attribute__ ((noinline))
s_grow (proto_writer_t *self, size_t len)
{
    size_t alloc = self->alloc * 2;
    while (alloc - self->size < len)
        alloc *= 2;
    self->data = (uint8_t *) realloc (self->data, alloc);
    assert (self->data);
    self->alloc = alloc;
}

//  Makes room for len more bytes and returns where they go; the caller
//  fills them and the writer counts them as used
static inline uint8_t *
s_reserve (proto_writer_t *self, size_t len)
{
    if (__builtin_expect (self->alloc - self->size < len, 0))
        s_grow (self, len);
    uint8_t *dest = self->data + self->size;
    self->size += len;
    return dest;
}

//  Appends len bytes; an empty string or bin may come with a NULL pointer
static inline void
s_put_bytes (proto_writer_t *self, const void *bytes, size_t len)
{
    if (len)
        memcpy (s_reserve (self, len), bytes, len);
}

//  The packer's sink: msgpack-c writes whole objects through it
static int
s_packer_write (void *data, const char *bytes, size_t len)
{
    s_put_bytes ((proto_writer_t *) data, bytes, len);
    return 0;
}

static inline void
s_put_be (uint8_t *dest, uint64_t value, int width)
{
    for (int index = width - 1; index >= 0; index--) {
        dest [index] = (uint8_t) value;
        value >>= 8;
    }
}

//  A marker and a big-endian number of width bytes (0 to 8)
static inline void
s_put_marked (proto_writer_t *self, uint8_t marker, uint64_t value, int width)
{
    uint8_t *dest = s_reserve (self, 1 + width);
    dest [0] = marker;
    s_put_be (dest + 1, value, width);
}

//  A header of a string or bin: smallest form, as msgpack-c writes it
static void
s_put_header (proto_writer_t *self, bool is_str, size_t len)
{
    if (is_str && len < 32)
        *s_reserve (self, 1) = (uint8_t) (0xa0 | len);
    else
    if (len < 0x100)
        s_put_marked (self, is_str? 0xd9: 0xc4, len, 1);
    else
    if (len < 0x10000)
        s_put_marked (self, is_str? 0xda: 0xc5, len, 2);
    else
        s_put_marked (self, is_str? 0xdb: 0xc6, len, 4);
}

static void
s_put_uint (proto_writer_t *self, uint64_t value)
{
    if (value < 0x80)
        *s_reserve (self, 1) = (uint8_t) value;
    else
    if (value < 0x100)
        s_put_marked (self, 0xcc, value, 1);
    else
    if (value < 0x10000)
        s_put_marked (self, 0xcd, value, 2);
    else
    if (value < 0x100000000ull)
        s_put_marked (self, 0xce, value, 4);
    else
        s_put_marked (self, 0xcf, value, 8);
}

//  --------------------------------------------------------------------------
//  New writer with an empty buffer

proto_writer_t *
proto_writer_new (void)
{
    proto_writer_t *self = (proto_writer_t *) calloc (1, sizeof (proto_writer_t));
    assert (self);
    self->data = (uint8_t *) malloc (WRITER_FIRST_ALLOC);
    assert (self->data);
    self->alloc = WRITER_FIRST_ALLOC;
    msgpack_packer_init (&self->packer, self, s_packer_write);
    return self;
}

void
proto_writer_destroy (proto_writer_t **self_p)
{
    if (self_p && *self_p) {
        free ((*self_p)->data);
        free (*self_p);
        *self_p = NULL;
    }
}

void
proto_writer_reset (proto_writer_t *self)
{
    self->size = 0;
    self->depth = 0;
}

//  Counts one more object in the innermost open container
static inline void
s_count (proto_writer_t *self)
{
    if (self->depth > 0)
        self->items [self->depth - 1]++;
}

static void
s_begin (proto_writer_t *self, uint8_t marker, bool is_map)
{
    assert (self->depth < WRITER_MAX_DEPTH);
    s_count (self);
    self->offset [self->depth] = self->size;
    self->items [self->depth] = 0;
    self->is_map [self->depth] = is_map;
    self->depth++;
    s_put_marked (self, marker, 0, 4);
}

static void
s_end (proto_writer_t *self, bool is_map)
{
    assert (self->depth > 0);
    self->depth--;
    assert (self->is_map [self->depth] == is_map);
    uint32_t count = self->items [self->depth];
    if (is_map) {
        assert (count % 2 == 0);
        count /= 2;
    }
    s_put_be (self->data + self->offset [self->depth] + 1, count, 4);
}

void proto_writer_map_begin (proto_writer_t *self)   { s_begin (self, 0xdf, true); }
void proto_writer_map_end (proto_writer_t *self)     { s_end (self, true); }
void proto_writer_array_begin (proto_writer_t *self) { s_begin (self, 0xdd, false); }
void proto_writer_array_end (proto_writer_t *self)   { s_end (self, false); }

void
proto_writer_strn (proto_writer_t *self, const char *text, size_t len)
{
    s_count (self);
    if (len < 32) {                     //  Keys and most values: one reserve
        *s_reserve (self, 1) = (uint8_t) (0xa0 | len);
        s_put_bytes (self, text, len);
    }
    else {
        s_put_header (self, true, len);
        s_put_bytes (self, text, len);
    }
}

void
proto_writer_str (proto_writer_t *self, const char *text)
{
    proto_writer_strn (self, text, strlen (text));
}

void
proto_writer_u64 (proto_writer_t *self, uint64_t value)
{
    s_count (self);
    if (value < 0x80)
        *s_reserve (self, 1) = (uint8_t) value;
    else
        s_put_uint (self, value);
}

void
proto_writer_i64 (proto_writer_t *self, int64_t value)
{
    s_count (self);
    if (value >= 0)
        s_put_uint (self, (uint64_t) value);
    else
    if (value >= -32)
        *s_reserve (self, 1) = (uint8_t) value;
    else
    if (value >= INT8_MIN)
        s_put_marked (self, 0xd0, (uint64_t) value, 1);
    else
    if (value >= INT16_MIN)
        s_put_marked (self, 0xd1, (uint64_t) value, 2);
    else
    if (value >= INT32_MIN)
        s_put_marked (self, 0xd2, (uint64_t) value, 4);
    else
        s_put_marked (self, 0xd3, (uint64_t) value, 8);
}

void
proto_writer_double (proto_writer_t *self, double value)
{
    s_count (self);
    uint64_t bits;
    memcpy (&bits, &value, sizeof (bits));
    s_put_marked (self, 0xcb, bits, 8);
}

void
proto_writer_bool (proto_writer_t *self, bool value)
{
    s_count (self);
    *s_reserve (self, 1) = value? 0xc3: 0xc2;
}

void
proto_writer_nil (proto_writer_t *self)
{
    s_count (self);
    *s_reserve (self, 1) = 0xc0;
}

void
proto_writer_bin (proto_writer_t *self, const void *data, size_t len)
{
    s_count (self);
    s_put_header (self, false, len);
    s_put_bytes (self, data, len);
}

uint8_t *
proto_writer_bin_reserve (proto_writer_t *self, size_t len)
{
    s_count (self);
    s_put_header (self, false, len);
    uint8_t *body = s_reserve (self, len);
    memset (body, 0, len);
    return body;
}

void
proto_writer_object (proto_writer_t *self, const msgpack_object *obj)
{
    s_count (self);
    msgpack_pack_object (&self->packer, *obj);
}

void
proto_writer_raw (proto_writer_t *self, const void *data, size_t len)
{
    s_count (self);
    s_put_bytes (self, data, len);
}

void
proto_writer_kv_str (proto_writer_t *self, const char *key, const char *value)
{
    proto_writer_str (self, key);
    proto_writer_str (self, value);
}

void
proto_writer_kv_strn (proto_writer_t *self, const char *key, const char *value, size_t len)
{
    proto_writer_str (self, key);
    proto_writer_strn (self, value, len);
}

void
proto_writer_kv_u64 (proto_writer_t *self, const char *key, uint64_t value)
{
    proto_writer_str (self, key);
    proto_writer_u64 (self, value);
}

void
proto_writer_kv_bool (proto_writer_t *self, const char *key, bool value)
{
    proto_writer_str (self, key);
    proto_writer_bool (self, value);
}

void
proto_writer_kv_object (proto_writer_t *self, const char *key, const msgpack_object *obj)
{
    proto_writer_str (self, key);
    proto_writer_object (self, obj);
}

const void *
proto_writer_data (proto_writer_t *self)
{
    assert (self->depth == 0);
    return self->data;
}

size_t
proto_writer_size (proto_writer_t *self)
{
    return self->size;
}

//  --------------------------------------------------------------------------
//  Write a whole error reply to a reset writer

void
proto_write_error (proto_writer_t *self, uint64_t rid, proto_error_t code,
                   const char *message, uint64_t retry_after_ms)
{
    proto_writer_reset (self);
    proto_writer_map_begin (self);
    proto_writer_kv_u64 (self, "re", rid);
    proto_writer_kv_bool (self, "ok", false);
    proto_writer_kv_str (self, "error", proto_error_name (code));
    proto_writer_kv_str (self, "message", message? message: proto_error_text (code));
    proto_writer_kv_bool (self, "retriable", proto_error_retriable (code));
    if (retry_after_ms)
        proto_writer_kv_u64 (self, "retry_after_ms", retry_after_ms);
    proto_writer_map_end (self);
}
