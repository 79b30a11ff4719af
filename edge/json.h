/*  =========================================================================
    json - bounded JSON <-> msgpack translation for the web edge

    json_to_msgpack turns one JSON text (a WebSocket message, a REST body)
    into the msgpack map the broker expects, under the limits of
    docs/protocol.md: it validates UTF-8, decodes \u escapes (surrogate
    pairs included), rejects duplicate keys, caps size, depth, objects and
    keys, and never recurses. It is a pure function of its input bytes, so
    it can be fuzzed alone.

    json_from_msgpack writes a reply or event map as JSON text, once, into
    a buffer that keeps headroom in front for the WebSocket frame header.
    It walks the msgpack bytes itself (no msgpack-c unpacking, no zone) and
    checks every length against the input.
    =========================================================================
*/
#ifndef CHORUS_EDGE_JSON_H_INCLUDED
#define CHORUS_EDGE_JSON_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "chorus/proto.h"

//  Limits on JSON input: the same as on msgpack input (proto.h)
#define JSON_MAX_DEPTH          PROTO_MAX_DEPTH        //  nested objects/arrays
#define JSON_MAX_NODES          PROTO_MAX_NODES        //  values and keys in all
#define JSON_MAX_KEYS           PROTO_MAX_MAP_ENTRIES  //  keys in one object
#define JSON_MAX_NUMBER_CHARS   64                     //  characters in one number
#define JSON_MAX_OUT_DEPTH      32                     //  nesting of msgpack we write as JSON

//  Why a JSON text was refused
typedef enum {
    JSON_OK = 0,
    JSON_ERR_EMPTY,             //  no bytes, or only white space
    JSON_ERR_TOO_BIG,           //  over the byte cap (or its msgpack form is)
    JSON_ERR_SYNTAX,            //  not JSON
    JSON_ERR_NOT_OBJECT,        //  the top-level value is not an object
    JSON_ERR_TRAILING,          //  something after the top-level value
    JSON_ERR_DEPTH,             //  objects/arrays nested deeper than JSON_MAX_DEPTH
    JSON_ERR_TOO_MANY,          //  over JSON_MAX_NODES values or JSON_MAX_KEYS keys
    JSON_ERR_UTF8,              //  a string is not valid UTF-8
    JSON_ERR_CONTROL,           //  a raw control character inside a string
    JSON_ERR_ESCAPE,            //  a bad \ escape, or a lone surrogate
    JSON_ERR_DUP_KEY,           //  the same key twice in one object
    JSON_ERR_NUMBER,            //  a number out of range or too long
    JSON_ERR_MEMORY,            //  out of memory
    JSON_ERR_COUNT
} json_error_t;

//  What json_to_msgpack tells about its input
typedef struct {
    json_error_t error;         //  JSON_OK, or why the text was refused
    size_t offset;              //  byte offset of the error in the input
    bool has_op;                //  the top-level object has a string "op"
    char op [32];               //  its value, if shorter than 32 bytes
    bool has_rid;               //  the top-level object has an integer "rid" >= 0
    uint64_t rid;               //  its value
} json_result_t;

//  Translate the JSON text data[0..size) into one msgpack map written to
//  writer (which the caller has reset). The top-level value must be an
//  object. Numbers become integers when integral and within +-2^53,
//  doubles otherwise. Returns 0, or -1 with result->error set; the writer
//  then holds a partial map and must be reset before reuse.
int
    json_to_msgpack (const void *data, size_t size, size_t max_size,
                     proto_writer_t *writer, json_result_t *result);

//  Short English text for an error code ("duplicate key")
const char *
    json_error_text (json_error_t error);

//  A growable output buffer with headroom before the text
typedef struct {
    uint8_t *data;              //  malloc'd block; the text starts at data + head
    size_t head;                //  bytes reserved in front of the text
    size_t size;                //  bytes of text written
    size_t capacity;            //  bytes allocated after head
    bool failed;                //  an allocation failed; the text is incomplete
} json_out_t;

//  Start an empty buffer that keeps head bytes free in front of the text
void
    json_out_init (json_out_t *self, size_t head);
//  Free the buffer's memory; the buffer may be initialised again
void
    json_out_free (json_out_t *self);
//  Append bytes; sets failed on allocation failure
void
    json_out_append (json_out_t *self, const void *data, size_t size);
//  The text written so far
const char *
    json_out_text (json_out_t *self);

//  What json_from_msgpack saw at the root of a reply or event
typedef struct {
    bool has_re;                //  the root map has an unsigned "re"
    uint64_t re;                //  its value (the request's rid)
    bool has_ok;                //  the root map has a boolean "ok"
    bool ok;                    //  its value
    bool has_ev;                //  the root map has "ev" (an event)
    char error [40];            //  "error" string, if shorter than 40 bytes
    uint64_t retry_after_ms;    //  "retry_after_ms", or 0
    bool is_pong;               //  the root map has "pong": true
    uint64_t ts;                //  "ts" (ms since the epoch), or 0
} json_root_t;

//  Append the msgpack value data[0..size) as JSON to out. A root map key
//  equal to skip_key (may be NULL) is left out with its value. root, if not
//  NULL, is filled from the root map. Strings that are not valid UTF-8 get
//  U+FFFD for each bad byte, bin becomes a base64 string, NaN and infinities
//  become null, ext values become null. Returns 0, or -1 if the input is
//  not exactly one msgpack value within JSON_MAX_OUT_DEPTH, or on failed
//  allocation.
int
    json_from_msgpack (const void *data, size_t size, json_out_t *out,
                       const char *skip_key, json_root_t *root);

#endif
