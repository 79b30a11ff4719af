/*  =========================================================================
    chorus/proto.h - the wire codec every Chorus stage speaks

    Requests, replies and events are msgpack maps. Anything read from outside
    goes through proto_msg_decode, which bounds the input with a scan *before*
    msgpack-c allocates anything (msgpack-c trusts array/map headers), then
    gives read access by key. proto_writer builds maps without knowing their
    size in advance. Limits are documented in docs/protocol.md.
    =========================================================================
*/
#ifndef CHORUS_PROTO_H_INCLUDED
#define CHORUS_PROTO_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>

//  Limits on anything decoded from outside (clients, integrators)
#define PROTO_MAX_FRAME        (192 * 1024)  //  bytes in one request (40,000 4-byte chars fit)
#define PROTO_MAX_DEPTH        8             //  nesting of maps/arrays
#define PROTO_MAX_NODES        4096          //  objects in one request
#define PROTO_MAX_MAP_ENTRIES  256           //  keys in one map
#define PROTO_MAX_BODY_CHARS   40000         //  characters in a message body
#define PROTO_MAX_NAME_CHARS   80            //  channel names, handles
#define PROTO_MAX_CLIENT_ID    64            //  bytes in a client_msg_id
#define PROTO_PAGE_DEFAULT     50            //  history page size
#define PROTO_PAGE_MAX         200           //  history page size, at most
#define PROTO_MAX_SEQ          ((uint64_t) 1 << 53)  //  JSON-safe integers

//  Limits on frames between stages (contexts with member and channel lists)
#define PROTO_STAGE_MAX_FRAME  (64 * 1024 * 1024)
#define PROTO_STAGE_MAX_NODES  (4 * 1024 * 1024)

//  The limits one decode enforces
typedef struct {
    size_t max_frame;           //  bytes
    size_t max_nodes;           //  objects
} proto_limits_t;

//  Limits for requests from outside, and for frames between stages
extern const proto_limits_t proto_client_limits;
extern const proto_limits_t proto_stage_limits;

//  Error codes: the single source for docs/errors.md and every reply
typedef enum {
    PROTO_OK = 0,
    PROTO_ERR_INVALID_MESSAGE,      //  not msgpack, not a map, over a limit
    PROTO_ERR_UNKNOWN_OP,           //  op is not one we know
    PROTO_ERR_INVALID_ARGS,         //  a field is missing, of the wrong type or range
    PROTO_ERR_INVALID_UTF8,         //  a string is not valid UTF-8
    PROTO_ERR_NOT_AUTHED,           //  the session has not authenticated
    PROTO_ERR_BAD_CREDENTIALS,      //  wrong token, handle or password
    PROTO_ERR_FORBIDDEN,            //  authenticated, but not allowed (admin ops)
    PROTO_ERR_TENANT_NOT_FOUND,     //  no such workspace
    PROTO_ERR_USER_NOT_FOUND,       //  no such user in this workspace
    PROTO_ERR_CHANNEL_NOT_FOUND,    //  no such channel, or not visible to you
    PROTO_ERR_MESSAGE_NOT_FOUND,    //  no such message in the channel
    PROTO_ERR_NOT_IN_CHANNEL,       //  a public channel you have not joined
    PROTO_ERR_NAME_TAKEN,           //  handle, tenant or channel name in use
    PROTO_ERR_NO_TEXT,              //  empty message body
    PROTO_ERR_MSG_TOO_LONG,         //  body over PROTO_MAX_BODY_CHARS
    PROTO_ERR_IDEMPOTENCY_CONFLICT, //  client_msg_id reused with other content
    PROTO_ERR_NOT_AUTHOR,           //  edit/delete of someone else's message
    PROTO_ERR_RATE_LIMITED,         //  too fast; retry_after_ms says when
    PROTO_ERR_STORAGE_UNAVAILABLE,  //  not saved; retry with the same client_msg_id
    PROTO_ERR_STAGE_UNAVAILABLE,    //  a stage is unreachable; retry
    PROTO_ERR_INTERNAL,             //  a bug; nothing was changed
    PROTO_ERR_COUNT
} proto_error_t;

//  Name of an error code as it goes on the wire ("channel_not_found")
const char *
    proto_error_name (proto_error_t code);
//  Default human message for an error code
const char *
    proto_error_text (proto_error_t code);
//  True if the client should retry the same request later
bool
    proto_error_retriable (proto_error_t code);

//  ---------------------------------------------------------------------
//  Validation and reading

//  Scan data and check it is one msgpack value within the limits above:
//  depth, nodes, counts against remaining bytes, UTF-8 strings, string map
//  keys without duplicates, no ext types, no trailing bytes. Root must be a
//  map. Returns 0 if valid, else -1 and sets *why (static string).
int
    proto_validate (const void *data, size_t size, const char **why);
//  The same with other frame and node limits (depth and map size stay)
int
    proto_validate_limits (const void *data, size_t size,
                           const proto_limits_t *limits, const char **why);

//  True if the bytes are valid UTF-8 (no overlongs, no surrogates)
bool
    proto_utf8_valid (const void *data, size_t size);
//  Number of Unicode code points in a valid UTF-8 string
size_t
    proto_utf8_chars (const void *data, size_t size);

typedef struct _proto_msg_t proto_msg_t;

//  Validate and decode one message. Returns NULL on malformed input and
//  sets *why. The message keeps its own copy of the bytes (the caller may
//  free its buffer at once); decoded strings point into that copy.
proto_msg_t *
    proto_msg_decode (const void *data, size_t size, const char **why);
//  Decode a frame from another stage, with proto_stage_limits
proto_msg_t *
    proto_msg_decode_stage (const void *data, size_t size, const char **why);
//  Decode a frame without the validating scan: only for bytes that were
//  validated where they entered the process (ingest) or built by our own
//  writers, and reached this stage over inproc. Still bounded by the stage
//  frame size; NULL if msgpack-c cannot decode a map from them.
proto_msg_t *
    proto_msg_decode_trusted (const void *data, size_t size, const char **why);
//  Destroy a decoded message; nulls the reference
void
    proto_msg_destroy (proto_msg_t **self_p);
//  Root map of a decoded message
const msgpack_object *
    proto_msg_root (proto_msg_t *self);

//  Look a key up in a map object; NULL if absent or obj is not a map
const msgpack_object *
    proto_map_get (const msgpack_object *map, const char *key);
//  Typed getters on a map: return true and set *out if the key holds that type
bool
    proto_map_str (const msgpack_object *map, const char *key, const char **str, size_t *len);
bool
    proto_map_u64 (const msgpack_object *map, const char *key, uint64_t *out);
bool
    proto_map_i64 (const msgpack_object *map, const char *key, int64_t *out);
bool
    proto_map_bool (const msgpack_object *map, const char *key, bool *out);
bool
    proto_map_bin (const msgpack_object *map, const char *key, const void **data, size_t *len);
//  Copy a string field into a NUL-terminated buffer; false if absent, not a
//  string, or longer than size - 1
bool
    proto_map_strcpy (const msgpack_object *map, const char *key, char *dest, size_t size);
//  Shortcuts on a decoded message's root map
const msgpack_object *
    proto_msg_get (proto_msg_t *self, const char *key);
bool
    proto_msg_str (proto_msg_t *self, const char *key, const char **str, size_t *len);
bool
    proto_msg_u64 (proto_msg_t *self, const char *key, uint64_t *out);
bool
    proto_msg_bool (proto_msg_t *self, const char *key, bool *out);
//  True if the object is a string equal to text
bool
    proto_obj_streq (const msgpack_object *obj, const char *text);

//  ---------------------------------------------------------------------
//  Writing

typedef struct _proto_writer_t proto_writer_t;

//  New writer with an empty buffer
proto_writer_t *
    proto_writer_new (void);
void
    proto_writer_destroy (proto_writer_t **self_p);
//  Forget what was written, keep the buffer
void
    proto_writer_reset (proto_writer_t *self);
//  Open a map or an array; its size is filled in when it is closed
void
    proto_writer_map_begin (proto_writer_t *self);
void
    proto_writer_map_end (proto_writer_t *self);
void
    proto_writer_array_begin (proto_writer_t *self);
void
    proto_writer_array_end (proto_writer_t *self);
//  Scalars; inside a map, write the key with proto_writer_str first
void
    proto_writer_str (proto_writer_t *self, const char *text);
void
    proto_writer_strn (proto_writer_t *self, const char *text, size_t len);
void
    proto_writer_u64 (proto_writer_t *self, uint64_t value);
void
    proto_writer_i64 (proto_writer_t *self, int64_t value);
void
    proto_writer_double (proto_writer_t *self, double value);
void
    proto_writer_bool (proto_writer_t *self, bool value);
void
    proto_writer_nil (proto_writer_t *self);
void
    proto_writer_bin (proto_writer_t *self, const void *data, size_t len);
//  A bin of len bytes whose body the caller fills in through the pointer
//  returned (zeroed), before the next write to the writer
uint8_t *
    proto_writer_bin_reserve (proto_writer_t *self, size_t len);
//  Copy a decoded object as it is
void
    proto_writer_object (proto_writer_t *self, const msgpack_object *obj);
//  Append bytes that already hold one encoded msgpack object
void
    proto_writer_raw (proto_writer_t *self, const void *data, size_t len);
//  Key-value shortcuts for maps
void
    proto_writer_kv_str (proto_writer_t *self, const char *key, const char *value);
void
    proto_writer_kv_strn (proto_writer_t *self, const char *key, const char *value, size_t len);
void
    proto_writer_kv_u64 (proto_writer_t *self, const char *key, uint64_t value);
void
    proto_writer_kv_bool (proto_writer_t *self, const char *key, bool value);
void
    proto_writer_kv_object (proto_writer_t *self, const char *key, const msgpack_object *obj);
//  The bytes written so far (all containers must be closed)
const void *
    proto_writer_data (proto_writer_t *self);
size_t
    proto_writer_size (proto_writer_t *self);

//  Write a whole error reply {re, ok:false, error, message[, retry_after_ms]}
//  to a reset writer. rid may be 0 when the request had none.
void
    proto_write_error (proto_writer_t *self, uint64_t rid, proto_error_t code,
                       const char *message, uint64_t retry_after_ms);

#endif
