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

struct _proto_writer_t {
    msgpack_sbuffer buffer;                 //  bytes written so far
    msgpack_packer packer;                  //  msgpack-c packer into buffer
    size_t offset [WRITER_MAX_DEPTH];       //  header offset of each open container
    uint32_t items [WRITER_MAX_DEPTH];      //  objects written into each
    bool is_map [WRITER_MAX_DEPTH];         //  is that container a map
    int depth;                              //  open containers
};

//  --------------------------------------------------------------------------
//  New writer with an empty buffer

proto_writer_t *
proto_writer_new (void)
{
    proto_writer_t *self = (proto_writer_t *) calloc (1, sizeof (proto_writer_t));
    assert (self);
    msgpack_sbuffer_init (&self->buffer);
    msgpack_packer_init (&self->packer, &self->buffer, msgpack_sbuffer_write);
    return self;
}

void
proto_writer_destroy (proto_writer_t **self_p)
{
    if (self_p && *self_p) {
        msgpack_sbuffer_destroy (&(*self_p)->buffer);
        free (*self_p);
        *self_p = NULL;
    }
}

void
proto_writer_reset (proto_writer_t *self)
{
    self->buffer.size = 0;
    self->depth = 0;
}

//  Counts one more object in the innermost open container
static void
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
    uint8_t header [5] = { marker, 0, 0, 0, 0 };
    self->offset [self->depth] = self->buffer.size;
    self->items [self->depth] = 0;
    self->is_map [self->depth] = is_map;
    self->depth++;
    msgpack_sbuffer_write (&self->buffer, (const char *) header, sizeof (header));
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
    uint8_t *header = (uint8_t *) self->buffer.data + self->offset [self->depth];
    header [1] = (uint8_t) (count >> 24);
    header [2] = (uint8_t) (count >> 16);
    header [3] = (uint8_t) (count >> 8);
    header [4] = (uint8_t) count;
}

void proto_writer_map_begin (proto_writer_t *self)   { s_begin (self, 0xdf, true); }
void proto_writer_map_end (proto_writer_t *self)     { s_end (self, true); }
void proto_writer_array_begin (proto_writer_t *self) { s_begin (self, 0xdd, false); }
void proto_writer_array_end (proto_writer_t *self)   { s_end (self, false); }

void
proto_writer_strn (proto_writer_t *self, const char *text, size_t len)
{
    s_count (self);
    msgpack_pack_str (&self->packer, len);
    msgpack_pack_str_body (&self->packer, text, len);
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
    msgpack_pack_uint64 (&self->packer, value);
}

void
proto_writer_i64 (proto_writer_t *self, int64_t value)
{
    s_count (self);
    msgpack_pack_int64 (&self->packer, value);
}

void
proto_writer_double (proto_writer_t *self, double value)
{
    s_count (self);
    msgpack_pack_double (&self->packer, value);
}

void
proto_writer_bool (proto_writer_t *self, bool value)
{
    s_count (self);
    if (value)
        msgpack_pack_true (&self->packer);
    else
        msgpack_pack_false (&self->packer);
}

void
proto_writer_nil (proto_writer_t *self)
{
    s_count (self);
    msgpack_pack_nil (&self->packer);
}

void
proto_writer_bin (proto_writer_t *self, const void *data, size_t len)
{
    s_count (self);
    msgpack_pack_bin (&self->packer, len);
    msgpack_pack_bin_body (&self->packer, data, len);
}

uint8_t *
proto_writer_bin_reserve (proto_writer_t *self, size_t len)
{
    s_count (self);
    msgpack_pack_bin (&self->packer, len);
    msgpack_sbuffer *buffer = &self->buffer;
    if (buffer->alloc - buffer->size < len) {
        size_t alloc = buffer->alloc? buffer->alloc * 2: 256;
        while (alloc - buffer->size < len)
            alloc *= 2;
        buffer->data = (char *) realloc (buffer->data, alloc);
        assert (buffer->data);
        buffer->alloc = alloc;
    }
    uint8_t *body = (uint8_t *) buffer->data + buffer->size;
    memset (body, 0, len);
    buffer->size += len;
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
    msgpack_sbuffer_write (&self->buffer, (const char *) data, len);
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
    return self->buffer.data;
}

size_t
proto_writer_size (proto_writer_t *self)
{
    return self->buffer.size;
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
