/*  =========================================================================
    proto_msg - a validated, decoded msgpack map with typed field access

    The message keeps its own copy of the input, so the caller may free its
    buffer at once: decoded strings point into that copy.

    Decoding always validates first (proto_validate), so msgpack-c never
    sees a header that claims more than the frame holds.
    =========================================================================
*/
#include <stdlib.h>
#include <string.h>
#include "chorus/proto.h"

struct _proto_msg_t {
    msgpack_unpacked unpacked;  //  msgpack-c's zone and root object
    char *bytes;                //  our copy of the input: strings point into it
};

//  Validates with limits (unless none are given: trusted bytes), then decodes
static proto_msg_t *
s_decode (const void *data, size_t size, const proto_limits_t *limits, const char **why)
{
    if (limits && proto_validate_limits (data, size, limits, why))
        return NULL;
    if (!limits && size > proto_stage_limits.max_frame) {
        if (why)
            *why = "frame over the stage limit";
        return NULL;
    }
    proto_msg_t *self = (proto_msg_t *) calloc (1, sizeof (proto_msg_t));
    if (!self) {
        if (why)
            *why = "out of memory";
        return NULL;
    }
    msgpack_unpacked_init (&self->unpacked);
    self->bytes = (char *) malloc (size);
    if (!self->bytes) {
        if (why)
            *why = "out of memory";
        free (self);
        return NULL;
    }
    memcpy (self->bytes, data, size);
    size_t offset = 0;
    if (msgpack_unpack_next (&self->unpacked, self->bytes, size, &offset)
            != MSGPACK_UNPACK_SUCCESS
    ||  self->unpacked.data.type != MSGPACK_OBJECT_MAP) {
        if (why)
            *why = "msgpack decoding failed";
        proto_msg_destroy (&self);
    }
    return self;
}

//  --------------------------------------------------------------------------
//  Validate and decode one request; NULL and *why on malformed input

proto_msg_t *
proto_msg_decode (const void *data, size_t size, const char **why)
{
    return s_decode (data, size, &proto_client_limits, why);
}

//  --------------------------------------------------------------------------
//  Validate and decode a frame from another stage

proto_msg_t *
proto_msg_decode_stage (const void *data, size_t size, const char **why)
{
    return s_decode (data, size, &proto_stage_limits, why);
}

//  --------------------------------------------------------------------------
//  Decode a frame that was validated before it reached us (see proto.h)

proto_msg_t *
proto_msg_decode_trusted (const void *data, size_t size, const char **why)
{
    return s_decode (data, size, NULL, why);
}

//  --------------------------------------------------------------------------
//  Destroy a decoded message

void
proto_msg_destroy (proto_msg_t **self_p)
{
    if (self_p && *self_p) {
        msgpack_unpacked_destroy (&(*self_p)->unpacked);
        free ((*self_p)->bytes);
        free (*self_p);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Root map of a decoded message

const msgpack_object *
proto_msg_root (proto_msg_t *self)
{
    return &self->unpacked.data;
}

//  --------------------------------------------------------------------------
//  True if the object is a string equal to text

bool
proto_obj_streq (const msgpack_object *obj, const char *text)
{
    size_t len = strlen (text);
    return obj && obj->type == MSGPACK_OBJECT_STR
        && obj->via.str.size == len
        && memcmp (obj->via.str.ptr, text, len) == 0;
}

//  --------------------------------------------------------------------------
//  Value of key in a map object, or NULL

const msgpack_object *
proto_map_get (const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (proto_obj_streq (&map->via.map.ptr [i].key, key))
            return &map->via.map.ptr [i].val;
    return NULL;
}

bool
proto_map_str (const msgpack_object *map, const char *key, const char **str, size_t *len)
{
    const msgpack_object *obj = proto_map_get (map, key);
    if (!obj || obj->type != MSGPACK_OBJECT_STR)
        return false;
    *str = obj->via.str.ptr;
    if (len)
        *len = obj->via.str.size;
    return true;
}

bool
proto_map_u64 (const msgpack_object *map, const char *key, uint64_t *out)
{
    const msgpack_object *obj = proto_map_get (map, key);
    if (!obj || obj->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *out = obj->via.u64;
    return true;
}

bool
proto_map_i64 (const msgpack_object *map, const char *key, int64_t *out)
{
    const msgpack_object *obj = proto_map_get (map, key);
    if (!obj)
        return false;
    if (obj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *out = obj->via.i64;
    else
    if (obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER && obj->via.u64 <= INT64_MAX)
        *out = (int64_t) obj->via.u64;
    else
        return false;
    return true;
}

bool
proto_map_bool (const msgpack_object *map, const char *key, bool *out)
{
    const msgpack_object *obj = proto_map_get (map, key);
    if (!obj || obj->type != MSGPACK_OBJECT_BOOLEAN)
        return false;
    *out = obj->via.boolean;
    return true;
}

bool
proto_map_bin (const msgpack_object *map, const char *key, const void **data, size_t *len)
{
    const msgpack_object *obj = proto_map_get (map, key);
    if (!obj || obj->type != MSGPACK_OBJECT_BIN)
        return false;
    *data = obj->via.bin.ptr;
    *len = obj->via.bin.size;
    return true;
}

bool
proto_map_strcpy (const msgpack_object *map, const char *key, char *dest, size_t size)
{
    const char *str;
    size_t len;
    if (!proto_map_str (map, key, &str, &len) || len >= size)
        return false;
    memcpy (dest, str, len);
    dest [len] = 0;
    return true;
}

const msgpack_object *
proto_msg_get (proto_msg_t *self, const char *key)
{
    return proto_map_get (&self->unpacked.data, key);
}

bool
proto_msg_str (proto_msg_t *self, const char *key, const char **str, size_t *len)
{
    return proto_map_str (&self->unpacked.data, key, str, len);
}

bool
proto_msg_u64 (proto_msg_t *self, const char *key, uint64_t *out)
{
    return proto_map_u64 (&self->unpacked.data, key, out);
}

bool
proto_msg_bool (proto_msg_t *self, const char *key, bool *out)
{
    return proto_map_bool (&self->unpacked.data, key, out);
}
