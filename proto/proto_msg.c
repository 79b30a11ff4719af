/*  =========================================================================
    proto_msg - a validated, decoded msgpack map with typed field access

    The message keeps its own copy of the input, so the caller may free its
    buffer at once: decoded strings point into that copy.

    Decoding always validates first (proto_validate), so msgpack-c never
    sees a header that claims more than the frame holds.
    =========================================================================
*/
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "chorus/proto.h"

//  msgpack-c 4.0.0 exports msgpack_unpack (its unpack.c keeps it for
//  compatibility) but no longer declares it. Unlike msgpack_unpack_next,
//  which makes a new zone for every object, it decodes into a zone we own,
//  so a message's zone is cleared and used again.
msgpack_unpack_return
    msgpack_unpack (const char *data, size_t len, size_t *off,
                    msgpack_zone *result_zone, msgpack_object *result);

struct _proto_msg_t {
    msgpack_zone zone;          //  msgpack-c's objects
    msgpack_object root;        //  the decoded map
    char *bytes;                //  our copy of the input: strings point into it
    size_t capacity;            //  of bytes
    proto_msg_t *next;          //  in its thread's list of spares
};

//  Spare messages, per thread: proto_msg_destroy keeps up to SPARES_MAX
//  (with their zone's first chunk and their buffer, if no larger than
//  SPARE_BYTES_MAX) and the next decode on that thread takes one, so a busy
//  stage allocates nothing per message. A thread's spares are freed when
//  it ends.
#define SPARES_MAX      64
#define SPARE_BYTES_MAX (64 * 1024)

//  Under AddressSanitizer a spare's buffer, objects and root are poisoned
//  while it waits, so a use after proto_msg_destroy is still reported
#if defined (__has_feature)
#   if __has_feature (address_sanitizer)
#       define PROTO_MSG_ASAN
#   endif
#endif
#if defined (__SANITIZE_ADDRESS__) && !defined (PROTO_MSG_ASAN)
#   define PROTO_MSG_ASAN
#endif
#ifdef PROTO_MSG_ASAN
#   include <sanitizer/asan_interface.h>
#   define S_POISON(addr, size)   ASAN_POISON_MEMORY_REGION (addr, size)
#   define S_UNPOISON(addr, size) ASAN_UNPOISON_MEMORY_REGION (addr, size)
#else
#   define S_POISON(addr, size)   ((void) (addr), (void) (size))
#   define S_UNPOISON(addr, size) ((void) (addr), (void) (size))
#endif

//  Poisons (or unpoisons) what a spare must not be used for
static void
s_spare_poison (proto_msg_t *self, bool poison)
{
    void *objects = self->zone.chunk_list.ptr;
    size_t room = self->zone.chunk_list.free;
    if (poison) {
        S_POISON (self->bytes, self->capacity);
        S_POISON (objects, room);
        S_POISON (&self->root, sizeof (self->root));
    }
    else {
        S_UNPOISON (self->bytes, self->capacity);
        S_UNPOISON (objects, room);
        S_UNPOISON (&self->root, sizeof (self->root));
    }
}

typedef struct {
    proto_msg_t *head;
    size_t count;
} s_spares_t;

static pthread_key_t s_spares_key;
static pthread_once_t s_spares_once = PTHREAD_ONCE_INIT;

static void
s_msg_free (proto_msg_t *self)
{
    msgpack_zone_destroy (&self->zone);
    free (self->bytes);
    free (self);
}

static void
s_spares_destroy (void *arg)
{
    s_spares_t *spares = (s_spares_t *) arg;
    while (spares->head) {
        proto_msg_t *next = spares->head->next;
        s_spare_poison (spares->head, false);
        s_msg_free (spares->head);
        spares->head = next;
    }
    free (spares);
}

static void
s_spares_key_create (void)
{
    pthread_key_create (&s_spares_key, s_spares_destroy);
}

//  This thread's spares, made on first use; NULL if out of memory
static s_spares_t *
s_spares (void)
{
    pthread_once (&s_spares_once, s_spares_key_create);
    s_spares_t *spares = (s_spares_t *) pthread_getspecific (s_spares_key);
    if (!spares) {
        spares = (s_spares_t *) calloc (1, sizeof (s_spares_t));
        if (spares && pthread_setspecific (s_spares_key, spares)) {
            free (spares);
            spares = NULL;
        }
    }
    return spares;
}

//  A message with room for size bytes: a spare if this thread has one
static proto_msg_t *
s_msg_take (size_t size)
{
    s_spares_t *spares = s_spares ();
    proto_msg_t *self = spares? spares->head: NULL;
    if (self) {
        spares->head = self->next;
        spares->count--;
        s_spare_poison (self, false);
    }
    else {
        self = (proto_msg_t *) calloc (1, sizeof (proto_msg_t));
        if (!self)
            return NULL;
        if (!msgpack_zone_init (&self->zone, MSGPACK_ZONE_CHUNK_SIZE)) {
            free (self);
            return NULL;
        }
    }
    if (self->capacity < size) {
        char *bytes = (char *) realloc (self->bytes, size);
        if (!bytes) {
            s_msg_free (self);
            return NULL;
        }
        self->bytes = bytes;
        self->capacity = size;
    }
    return self;
}

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
    proto_msg_t *self = s_msg_take (size? size: 1);
    if (!self) {
        if (why)
            *why = "out of memory";
        return NULL;
    }
    memcpy (self->bytes, data, size);
    size_t offset = 0;
    if (msgpack_unpack (self->bytes, size, &offset, &self->zone, &self->root)
            != MSGPACK_UNPACK_SUCCESS
    ||  self->root.type != MSGPACK_OBJECT_MAP) {
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
        proto_msg_t *self = *self_p;
        *self_p = NULL;
        s_spares_t *spares = s_spares ();
        if (spares && spares->count < SPARES_MAX && self->capacity <= SPARE_BYTES_MAX) {
            msgpack_zone_clear (&self->zone);
            memset (&self->root, 0, sizeof (self->root));
            s_spare_poison (self, true);
            self->next = spares->head;
            spares->head = self;
            spares->count++;
        }
        else
            s_msg_free (self);
    }
}

//  --------------------------------------------------------------------------
//  Root map of a decoded message

const msgpack_object *
proto_msg_root (proto_msg_t *self)
{
    return &self->root;
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
    size_t len = strlen (key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *candidate = &map->via.map.ptr [i].key;
        //  Keys are short and mostly differ in length or first byte
        if (candidate->type == MSGPACK_OBJECT_STR && candidate->via.str.size == len
        &&  (len == 0 || (candidate->via.str.ptr [0] == key [0]
                      &&  memcmp (candidate->via.str.ptr, key, len) == 0)))
            return &map->via.map.ptr [i].val;
    }
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
    return proto_map_get (&self->root, key);
}

bool
proto_msg_str (proto_msg_t *self, const char *key, const char **str, size_t *len)
{
    return proto_map_str (&self->root, key, str, len);
}

bool
proto_msg_u64 (proto_msg_t *self, const char *key, uint64_t *out)
{
    return proto_map_u64 (&self->root, key, out);
}

bool
proto_msg_bool (proto_msg_t *self, const char *key, bool *out)
{
    return proto_map_bool (&self->root, key, out);
}
