/*  =========================================================================
    json - bounded JSON <-> msgpack translation for the web edge

    Both directions walk their input once with an explicit stack of fixed
    size, so neither deep nesting nor a hostile length can blow the C stack
    or make us allocate more than the input justifies. See json.h.
    =========================================================================
*/
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "json.h"

//  Integers within this magnitude stay integers (JavaScript-safe)
#define S_MAX_SAFE_INT  ((uint64_t) 1 << 53)

static const char *s_error_texts [JSON_ERR_COUNT] = {
    [JSON_OK] = "ok",
    [JSON_ERR_EMPTY] = "empty message",
    [JSON_ERR_TOO_BIG] = "message too big",
    [JSON_ERR_SYNTAX] = "not valid JSON",
    [JSON_ERR_NOT_OBJECT] = "a request must be a JSON object",
    [JSON_ERR_TRAILING] = "unexpected data after the JSON object",
    [JSON_ERR_DEPTH] = "objects and arrays nested too deep",
    [JSON_ERR_TOO_MANY] = "too many values or keys",
    [JSON_ERR_UTF8] = "string is not valid UTF-8",
    [JSON_ERR_CONTROL] = "control character in a string",
    [JSON_ERR_ESCAPE] = "bad escape sequence or lone surrogate",
    [JSON_ERR_DUP_KEY] = "duplicate key in an object",
    [JSON_ERR_NUMBER] = "number out of range or too long",
    [JSON_ERR_MEMORY] = "out of memory",
};

//  --------------------------------------------------------------------------
//  Short English text for an error code

const char *
json_error_text (json_error_t error)
{
    if (error < 0 || error >= JSON_ERR_COUNT)
        return "unknown error";
    return s_error_texts [error];
}

//  The "C" locale, for number conversions that must not follow LC_NUMERIC
static locale_t s_c_locale;
static pthread_once_t s_c_locale_once = PTHREAD_ONCE_INIT;

//  Creates the "C" locale, once
static void
s_c_locale_init (void)
{
    s_c_locale = newlocale (LC_NUMERIC_MASK, "C", (locale_t) 0);
}

//  The "C" locale, or 0 if it could not be made
static locale_t
s_locale (void)
{
    pthread_once (&s_c_locale_once, s_c_locale_init);
    return s_c_locale;
}

//  Length of the valid UTF-8 sequence at p (shortest form, no surrogates,
//  at most U+10FFFF), or 0 if the bytes there are not one
static size_t
s_utf8_seq (const uint8_t *p, const uint8_t *end)
{
    uint8_t c = p [0];
    if (c < 0x80)
        return 1;
    size_t extra;
    uint8_t low = 0x80, high = 0xBF;    //  range of the second byte
    if (c >= 0xC2 && c <= 0xDF)
        extra = 1;
    else
    if (c >= 0xE0 && c <= 0xEF) {
        extra = 2;
        if (c == 0xE0)
            low = 0xA0;                 //  no overlong forms
        if (c == 0xED)
            high = 0x9F;                //  no surrogates
    }
    else
    if (c >= 0xF0 && c <= 0xF4) {
        extra = 3;
        if (c == 0xF0)
            low = 0x90;
        if (c == 0xF4)
            high = 0x8F;                //  nothing above U+10FFFF
    }
    else
        return 0;
    if ((size_t) (end - p) <= extra || p [1] < low || p [1] > high)
        return 0;
    for (size_t i = 2; i <= extra; i++)
        if ((p [i] & 0xC0) != 0x80)
            return 0;
    return extra + 1;
}

//  Writes code point cp as UTF-8 at dest; returns the byte count
static size_t
s_utf8_put (uint8_t *dest, uint32_t cp)
{
    if (cp < 0x80) {
        dest [0] = (uint8_t) cp;
        return 1;
    }
    if (cp < 0x800) {
        dest [0] = (uint8_t) (0xC0 | (cp >> 6));
        dest [1] = (uint8_t) (0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        dest [0] = (uint8_t) (0xE0 | (cp >> 12));
        dest [1] = (uint8_t) (0x80 | ((cp >> 6) & 0x3F));
        dest [2] = (uint8_t) (0x80 | (cp & 0x3F));
        return 3;
    }
    dest [0] = (uint8_t) (0xF0 | (cp >> 18));
    dest [1] = (uint8_t) (0x80 | ((cp >> 12) & 0x3F));
    dest [2] = (uint8_t) (0x80 | ((cp >> 6) & 0x3F));
    dest [3] = (uint8_t) (0x80 | (cp & 0x3F));
    return 4;
}

//  =========================================================================
//  JSON -> msgpack

//  One open object or array
typedef struct {
    bool is_object;             //  object (keys and values) or array
    size_t key_base;            //  index of this object's first key in keys
    size_t arena_mark;          //  arena bytes in use when it opened
} s_level_t;

//  One key of an open object, decoded into the arena
typedef struct {
    size_t offset;              //  where its bytes start in the arena
    size_t len;                 //  how many bytes
} s_key_t;

//  Which top-level field the next value belongs to
typedef enum { S_FIELD_NONE, S_FIELD_OP, S_FIELD_RID } s_field_t;

//  State of one json_to_msgpack call
typedef struct {
    const uint8_t *start;       //  first byte of the input
    const uint8_t *pos;         //  next byte to read
    const uint8_t *end;         //  one past the last byte
    proto_writer_t *writer;     //  where the msgpack goes
    json_result_t *result;      //  what we tell the caller
    s_level_t levels [JSON_MAX_DEPTH];  //  open containers
    int depth;                  //  how many are open
    size_t nodes;               //  values and keys seen so far
    s_key_t *keys;              //  keys of every open object, in order
    size_t key_count;           //  entries used in keys
    size_t key_capacity;        //  entries allocated in keys
    uint8_t *arena;             //  decoded keys, then scratch for strings
    size_t arena_used;          //  bytes held by keys of open objects
    s_field_t field;            //  top-level field the next value is for
    bool opened;                //  the last token opened a container
} s_parser_t;

//  Records an error at the current position; always returns -1
static int
s_fail (s_parser_t *self, json_error_t error)
{
    self->result->error = error;
    self->result->offset = (size_t) (self->pos - self->start);
    return -1;
}

//  Skips JSON white space
static void
s_skip_space (s_parser_t *self)
{
    while (self->pos < self->end
       && (*self->pos == ' ' || *self->pos == '\t'
       ||  *self->pos == '\n' || *self->pos == '\r'))
        self->pos++;
}

//  Counts one more value or key against the limit
static int
s_count_node (s_parser_t *self)
{
    if (++self->nodes > JSON_MAX_NODES)
        return s_fail (self, JSON_ERR_TOO_MANY);
    return 0;
}

//  Reads four hex digits at pos into *value
static int
s_read_hex4 (s_parser_t *self, uint32_t *value)
{
    if (self->end - self->pos < 4)
        return s_fail (self, JSON_ERR_ESCAPE);
    uint32_t result = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = self->pos [i];
        uint32_t digit;
        if (c >= '0' && c <= '9')
            digit = c - '0';
        else
        if (c >= 'a' && c <= 'f')
            digit = c - 'a' + 10;
        else
        if (c >= 'A' && c <= 'F')
            digit = c - 'A' + 10;
        else
            return s_fail (self, JSON_ERR_ESCAPE);
        result = (result << 4) | digit;
    }
    self->pos += 4;
    *value = result;
    return 0;
}

//  Decodes \uXXXX (pos is after the 'u'), joining surrogate pairs
static int
s_read_unicode (s_parser_t *self, uint32_t *cp)
{
    uint32_t high;
    if (s_read_hex4 (self, &high))
        return -1;
    if (high >= 0xDC00 && high <= 0xDFFF)
        return s_fail (self, JSON_ERR_ESCAPE);     //  low surrogate first
    if (high < 0xD800 || high > 0xDBFF) {
        *cp = high;
        return 0;
    }
    if (self->end - self->pos < 2 || self->pos [0] != '\\' || self->pos [1] != 'u')
        return s_fail (self, JSON_ERR_ESCAPE);     //  high surrogate alone
    self->pos += 2;
    uint32_t low;
    if (s_read_hex4 (self, &low))
        return -1;
    if (low < 0xDC00 || low > 0xDFFF)
        return s_fail (self, JSON_ERR_ESCAPE);
    *cp = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
    return 0;
}

//  Decodes one escape (pos is after the backslash) into dest; *len bytes
static int
s_read_escape (s_parser_t *self, uint8_t *dest, size_t *len)
{
    if (self->pos >= self->end)
        return s_fail (self, JSON_ERR_ESCAPE);
    uint8_t c = *self->pos++;
    uint8_t plain = 0;
    switch (c) {
        case '"':  plain = '"'; break;
        case '\\': plain = '\\'; break;
        case '/':  plain = '/'; break;
        case 'b':  plain = '\b'; break;
        case 'f':  plain = '\f'; break;
        case 'n':  plain = '\n'; break;
        case 'r':  plain = '\r'; break;
        case 't':  plain = '\t'; break;
        case 'u': {
            uint32_t cp = 0;
            if (s_read_unicode (self, &cp))
                return -1;
            *len = s_utf8_put (dest, cp);
            return 0;
        }
        default:
            self->pos--;
            return s_fail (self, JSON_ERR_ESCAPE);
    }
    dest [0] = plain;
    *len = 1;
    return 0;
}

//  Reads a string (pos is on the opening quote) and decodes it into the
//  arena after the bytes in use; sets *str and *len. The decoded form is
//  never longer than the quoted one, so the arena (input size) suffices.
static int
s_read_string (s_parser_t *self, const uint8_t **str, size_t *len)
{
    uint8_t *dest = self->arena + self->arena_used;
    size_t used = 0;
    self->pos++;
    while (true) {
        if (self->pos >= self->end)
            return s_fail (self, JSON_ERR_SYNTAX);
        uint8_t c = *self->pos;
        if (c == '"') {
            self->pos++;
            break;
        }
        if (c == '\\') {
            self->pos++;
            size_t n = 0;
            if (s_read_escape (self, dest + used, &n))
                return -1;
            used += n;
        }
        else
        if (c < 0x20)
            return s_fail (self, JSON_ERR_CONTROL);
        else {
            size_t n = s_utf8_seq (self->pos, self->end);
            if (n == 0)
                return s_fail (self, JSON_ERR_UTF8);
            memcpy (dest + used, self->pos, n);
            self->pos += n;
            used += n;
        }
    }
    *str = dest;
    *len = used;
    return 0;
}

//  Writes an integer literal of magnitude digits[0..len) with its sign;
//  falls back to a double beyond 2^53
static int
s_write_integer (s_parser_t *self, const uint8_t *digits, size_t len, bool negative)
{
    uint64_t value = 0;
    bool big = false;
    for (size_t i = 0; i < len && !big; i++) {
        value = value * 10 + (digits [i] - '0');
        big = value > S_MAX_SAFE_INT;
    }
    if (big)
        return 1;                       //  the caller writes a double
    if (negative && value)
        proto_writer_i64 (self->writer, -(int64_t) value);
    else
        proto_writer_u64 (self->writer, value);
    if (self->field == S_FIELD_RID && (!negative || value == 0)) {
        self->result->has_rid = true;
        self->result->rid = value;
    }
    return 0;
}

//  Writes a number text[0..len) (already checked against the grammar) as a
//  double, or as an integer when the double is integral and safe
static int
s_write_double (s_parser_t *self, const uint8_t *text, size_t len)
{
    char buffer [JSON_MAX_NUMBER_CHARS + 1];
    memcpy (buffer, text, len);
    buffer [len] = 0;
    locale_t locale = s_locale ();
    if (!locale)
        return s_fail (self, JSON_ERR_MEMORY);
    double value = strtod_l (buffer, NULL, locale);
    if (!isfinite (value))
        return s_fail (self, JSON_ERR_NUMBER);
    double limit = (double) S_MAX_SAFE_INT;
    if (value >= -limit && value <= limit && value == (double) (int64_t) value) {
        if (value < 0)
            proto_writer_i64 (self->writer, (int64_t) value);
        else {
            proto_writer_u64 (self->writer, (uint64_t) value);
            if (self->field == S_FIELD_RID) {
                self->result->has_rid = true;
                self->result->rid = (uint64_t) value;
            }
        }
    }
    else
        proto_writer_double (self->writer, value);
    return 0;
}

//  True if the next byte is a decimal digit
static bool
s_is_digit (s_parser_t *self)
{
    return self->pos < self->end && *self->pos >= '0' && *self->pos <= '9';
}

//  Skips one or more digits; -1 if there is none
static int
s_skip_digits (s_parser_t *self)
{
    if (!s_is_digit (self))
        return s_fail (self, JSON_ERR_SYNTAX);
    while (s_is_digit (self))
        self->pos++;
    return 0;
}

//  Reads a number per RFC 8259 and writes it
static int
s_read_number (s_parser_t *self)
{
    const uint8_t *text = self->pos;
    bool negative = *self->pos == '-';
    if (negative)
        self->pos++;
    const uint8_t *digits = self->pos;
    if (self->pos < self->end && *self->pos == '0') {
        self->pos++;
        if (s_is_digit (self))
            return s_fail (self, JSON_ERR_SYNTAX);  //  no leading zeros
    }
    else
    if (s_skip_digits (self))
        return -1;
    size_t digit_count = (size_t) (self->pos - digits);
    bool integral = true;
    if (self->pos < self->end && *self->pos == '.') {
        self->pos++;
        integral = false;
        if (s_skip_digits (self))
            return -1;
    }
    if (self->pos < self->end && (*self->pos == 'e' || *self->pos == 'E')) {
        self->pos++;
        integral = false;
        if (self->pos < self->end && (*self->pos == '+' || *self->pos == '-'))
            self->pos++;
        if (s_skip_digits (self))
            return -1;
    }
    size_t len = (size_t) (self->pos - text);
    if (len > JSON_MAX_NUMBER_CHARS)
        return s_fail (self, JSON_ERR_NUMBER);
    if (integral) {
        int rc = s_write_integer (self, digits, digit_count, negative);
        if (rc <= 0)
            return rc;
    }
    return s_write_double (self, text, len);
}

//  Reads true, false or null
static int
s_read_literal (s_parser_t *self)
{
    size_t left = (size_t) (self->end - self->pos);
    if (left >= 4 && memcmp (self->pos, "true", 4) == 0) {
        self->pos += 4;
        proto_writer_bool (self->writer, true);
    }
    else
    if (left >= 5 && memcmp (self->pos, "false", 5) == 0) {
        self->pos += 5;
        proto_writer_bool (self->writer, false);
    }
    else
    if (left >= 4 && memcmp (self->pos, "null", 4) == 0) {
        self->pos += 4;
        proto_writer_nil (self->writer);
    }
    else
        return s_fail (self, JSON_ERR_SYNTAX);
    return 0;
}

//  Reads a string value and writes it
static int
s_read_string_value (s_parser_t *self)
{
    const uint8_t *str;
    size_t len;
    if (s_read_string (self, &str, &len))
        return -1;
    proto_writer_strn (self->writer, (const char *) str, len);
    if (self->field == S_FIELD_OP && len < sizeof (self->result->op) && !memchr (str, 0, len)) {
        memcpy (self->result->op, str, len);
        self->result->op [len] = 0;
        self->result->has_op = true;
    }
    return 0;
}

//  Opens an object or array (pos is on its bracket)
static int
s_open (s_parser_t *self, bool is_object)
{
    if (self->depth >= JSON_MAX_DEPTH)
        return s_fail (self, JSON_ERR_DEPTH);
    s_level_t *level = &self->levels [self->depth++];
    level->is_object = is_object;
    level->key_base = self->key_count;
    level->arena_mark = self->arena_used;
    self->pos++;
    self->opened = true;
    if (is_object)
        proto_writer_map_begin (self->writer);
    else
        proto_writer_array_begin (self->writer);
    return 0;
}

//  Closes the innermost container (pos is on its bracket)
static void
s_close (s_parser_t *self)
{
    s_level_t *level = &self->levels [--self->depth];
    self->pos++;
    if (level->is_object) {
        self->key_count = level->key_base;
        self->arena_used = level->arena_mark;
        proto_writer_map_end (self->writer);
    }
    else
        proto_writer_array_end (self->writer);
}

//  Reads one value of any kind; containers are only opened
static int
s_read_value (s_parser_t *self)
{
    if (s_count_node (self))
        return -1;
    if (self->pos >= self->end)
        return s_fail (self, JSON_ERR_SYNTAX);
    uint8_t c = *self->pos;
    int rc;
    if (c == '{')
        rc = s_open (self, true);
    else
    if (c == '[')
        rc = s_open (self, false);
    else
    if (c == '"')
        rc = s_read_string_value (self);
    else
    if (c == '-' || (c >= '0' && c <= '9'))
        rc = s_read_number (self);
    else
        rc = s_read_literal (self);
    self->field = S_FIELD_NONE;
    return rc;
}

//  Notes which top-level field a key of the root object names
static void
s_note_root_key (s_parser_t *self, const uint8_t *key, size_t len)
{
    self->field = S_FIELD_NONE;
    if (self->depth != 1)
        return;
    if (len == 2 && memcmp (key, "op", 2) == 0)
        self->field = S_FIELD_OP;
    else
    if (len == 3 && memcmp (key, "rid", 3) == 0)
        self->field = S_FIELD_RID;
}

//  Reads `"key" :` in the innermost object, refusing duplicates
static int
s_read_key (s_parser_t *self)
{
    s_skip_space (self);
    if (self->pos >= self->end || *self->pos != '"')
        return s_fail (self, JSON_ERR_SYNTAX);
    if (s_count_node (self))
        return -1;
    s_level_t *level = &self->levels [self->depth - 1];
    if (self->key_count - level->key_base >= JSON_MAX_KEYS
    ||  self->key_count >= self->key_capacity)
        return s_fail (self, JSON_ERR_TOO_MANY);
    const uint8_t *key_start = self->pos;
    const uint8_t *key;
    size_t len;
    if (s_read_string (self, &key, &len))
        return -1;
    for (size_t i = level->key_base; i < self->key_count; i++) {
        s_key_t *other = &self->keys [i];
        if (other->len == len && memcmp (self->arena + other->offset, key, len) == 0) {
            self->pos = key_start;
            return s_fail (self, JSON_ERR_DUP_KEY);
        }
    }
    self->keys [self->key_count].offset = self->arena_used;
    self->keys [self->key_count].len = len;
    self->key_count++;
    self->arena_used += len;            //  keep the key until the object closes
    proto_writer_strn (self->writer, (const char *) key, len);
    s_note_root_key (self, key, len);
    s_skip_space (self);
    if (self->pos >= self->end || *self->pos != ':')
        return s_fail (self, JSON_ERR_SYNTAX);
    self->pos++;
    s_skip_space (self);
    return 0;
}

//  After '{' or '[': closes an empty container, or reads its first entry
static int
s_first_entry (s_parser_t *self)
{
    self->opened = false;
    s_skip_space (self);
    s_level_t *level = &self->levels [self->depth - 1];
    uint8_t closer = level->is_object? '}': ']';
    if (self->pos < self->end && *self->pos == closer) {
        s_close (self);
        return 0;
    }
    if (level->is_object && s_read_key (self))
        return -1;
    return s_read_value (self);
}

//  After a value inside a container: a comma and the next entry, or the
//  closing bracket
static int
s_next_entry (s_parser_t *self)
{
    s_skip_space (self);
    if (self->pos >= self->end)
        return s_fail (self, JSON_ERR_SYNTAX);
    s_level_t *level = &self->levels [self->depth - 1];
    uint8_t c = *self->pos;
    if (c == (level->is_object? '}': ']')) {
        s_close (self);
        return 0;
    }
    if (c != ',')
        return s_fail (self, JSON_ERR_SYNTAX);
    self->pos++;
    if (level->is_object && s_read_key (self))
        return -1;
    s_skip_space (self);
    return s_read_value (self);
}

//  True if the input starts like a JSON value other than an object, to
//  tell "JSON of the wrong shape" from "not JSON"
static bool
s_looks_like_json (s_parser_t *self)
{
    static const char *literals [] = { "true", "false", "null" };
    uint8_t c = *self->pos;
    if (c == '[' || c == '"' || c == '-' || (c >= '0' && c <= '9'))
        return true;
    size_t left = (size_t) (self->end - self->pos);
    for (size_t i = 0; i < 3; i++) {
        size_t len = strlen (literals [i]);
        if (left >= len && memcmp (self->pos, literals [i], len) == 0)
            return true;
    }
    return false;
}

//  Parses the whole input; the root must be an object
static int
s_parse (s_parser_t *self)
{
    s_skip_space (self);
    if (self->pos >= self->end)
        return s_fail (self, JSON_ERR_EMPTY);
    if (*self->pos != '{')
        return s_fail (self, s_looks_like_json (self)? JSON_ERR_NOT_OBJECT: JSON_ERR_SYNTAX);
    if (s_read_value (self))
        return -1;
    while (self->depth > 0) {
        int rc = self->opened? s_first_entry (self): s_next_entry (self);
        if (rc)
            return -1;
    }
    s_skip_space (self);
    if (self->pos != self->end)
        return s_fail (self, JSON_ERR_TRAILING);
    return 0;
}

//  --------------------------------------------------------------------------
//  Translate one JSON object into one msgpack map

int
json_to_msgpack (const void *data, size_t size, size_t max_size,
                 proto_writer_t *writer, json_result_t *result)
{
    memset (result, 0, sizeof (*result));
    if (size > max_size) {
        result->error = JSON_ERR_TOO_BIG;
        result->offset = max_size;
        return -1;
    }
    s_parser_t self;
    memset (&self, 0, sizeof (self));
    self.start = self.pos = (const uint8_t *) data;
    self.end = self.start + size;
    self.writer = writer;
    self.result = result;
    self.key_capacity = size / 3 + 1;   //  a key takes at least `"":0` less one
    if (self.key_capacity > JSON_MAX_NODES)
        self.key_capacity = JSON_MAX_NODES;
    self.keys = (s_key_t *) malloc (self.key_capacity * sizeof (s_key_t));
    self.arena = (uint8_t *) malloc (size + 1);
    int rc;
    if (!self.keys || !self.arena)
        rc = s_fail (&self, JSON_ERR_MEMORY);
    else
        rc = s_parse (&self);
    if (rc == 0 && proto_writer_size (writer) > PROTO_MAX_FRAME)
        rc = s_fail (&self, JSON_ERR_TOO_BIG);
    free (self.keys);
    free (self.arena);
    return rc;
}

//  =========================================================================
//  Output buffer

//  --------------------------------------------------------------------------
//  Start an empty buffer with head bytes of headroom

void
json_out_init (json_out_t *self, size_t head)
{
    memset (self, 0, sizeof (*self));
    self->head = head;
}

//  --------------------------------------------------------------------------
//  Free the buffer's memory

void
json_out_free (json_out_t *self)
{
    free (self->data);
    self->data = NULL;
    self->size = 0;
    self->capacity = 0;
}

//  Makes room for extra more bytes; false if memory ran out
static bool
s_out_reserve (json_out_t *self, size_t extra)
{
    if (self->failed)
        return false;
    if (self->size + extra <= self->capacity && self->data)
        return true;
    size_t capacity = self->capacity? self->capacity: 256;
    while (capacity < self->size + extra)
        capacity *= 2;
    uint8_t *data = (uint8_t *) realloc (self->data, self->head + capacity);
    if (!data) {
        self->failed = true;
        return false;
    }
    self->data = data;
    self->capacity = capacity;
    return true;
}

//  --------------------------------------------------------------------------
//  Append bytes to the text

void
json_out_append (json_out_t *self, const void *data, size_t size)
{
    if (s_out_reserve (self, size)) {
        memcpy (self->data + self->head + self->size, data, size);
        self->size += size;
    }
}

//  --------------------------------------------------------------------------
//  The text written so far (not NUL-terminated)

const char *
json_out_text (json_out_t *self)
{
    return self->data? (const char *) self->data + self->head: "";
}

//  Appends one character
static void
s_out_char (json_out_t *self, char c)
{
    if (s_out_reserve (self, 1))
        self->data [self->head + self->size++] = (uint8_t) c;
}

//  Appends a C string
static void
s_out_str (json_out_t *self, const char *text)
{
    json_out_append (self, text, strlen (text));
}

//  =========================================================================
//  msgpack -> JSON

//  One open map or array of the input
typedef struct {
    uint64_t left;              //  items still to read (keys count as items)
    bool is_map;                //  map (keys and values alternate)
    bool first;                 //  nothing written into it yet
    bool muted;                 //  left out of the output (the skipped value)
} s_out_level_t;

//  Which root field the next value is
typedef enum {
    S_ROOT_NONE, S_ROOT_RE, S_ROOT_OK, S_ROOT_EV, S_ROOT_ERROR,
    S_ROOT_RETRY, S_ROOT_PONG, S_ROOT_TS
} s_root_field_t;

//  State of one json_from_msgpack call
typedef struct {
    const uint8_t *pos;         //  next byte to read
    const uint8_t *end;         //  one past the last byte
    json_out_t *out;            //  where the JSON goes
    const char *skip_key;       //  root key to leave out, or NULL
    json_root_t *root;          //  what we saw at the root, or NULL
    s_out_level_t levels [JSON_MAX_OUT_DEPTH];  //  open containers
    int depth;                  //  how many are open
    bool mute_next;             //  leave the next value out
    s_root_field_t field;       //  root field the next value is
} s_writer_t;

//  Reads an n-byte big-endian unsigned number
static int
s_get_be (s_writer_t *self, int n, uint64_t *value)
{
    if (self->end - self->pos < n)
        return -1;
    uint64_t result = 0;
    for (int i = 0; i < n; i++)
        result = (result << 8) | self->pos [i];
    self->pos += n;
    *value = result;
    return 0;
}

//  Writes a string as a JSON string, escaping as needed and replacing each
//  byte that does not start valid UTF-8 with U+FFFD
static void
s_put_string (json_out_t *out, const uint8_t *str, size_t len)
{
    static const char hex [] = "0123456789abcdef";
    const uint8_t *end = str + len;
    s_out_char (out, '"');
    const uint8_t *run = str;           //  start of bytes to copy as they are
    while (str < end) {
        uint8_t c = *str;
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            str++;
            continue;
        }
        size_t n = c < 0x80? 0: s_utf8_seq (str, end);
        if (n > 0) {
            str += n;
            continue;
        }
        json_out_append (out, run, (size_t) (str - run));
        if (c == '"' || c == '\\') {
            char escaped [2] = { '\\', (char) c };
            json_out_append (out, escaped, 2);
        }
        else
        if (c < 0x20) {
            char escaped [6] = { '\\', 'u', '0', '0', hex [c >> 4], hex [c & 15] };
            json_out_append (out, escaped, 6);
        }
        else
            json_out_append (out, "\xEF\xBF\xBD", 3);
        str++;
        run = str;
    }
    json_out_append (out, run, (size_t) (str - run));
    s_out_char (out, '"');
}

//  Writes bytes as a base64 JSON string
static void
s_put_base64 (json_out_t *out, const uint8_t *data, size_t len)
{
    static const char alphabet [] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    s_out_char (out, '"');
    for (size_t i = 0; i < len; i += 3) {
        uint32_t group = (uint32_t) data [i] << 16;
        if (i + 1 < len)
            group |= (uint32_t) data [i + 1] << 8;
        if (i + 2 < len)
            group |= data [i + 2];
        char quad [4] = {
            alphabet [(group >> 18) & 63], alphabet [(group >> 12) & 63],
            i + 1 < len? alphabet [(group >> 6) & 63]: '=',
            i + 2 < len? alphabet [group & 63]: '='
        };
        json_out_append (out, quad, 4);
    }
    s_out_char (out, '"');
}

//  Writes an unsigned integer
static void
s_put_u64 (json_out_t *out, uint64_t value)
{
    char text [24];
    int len = snprintf (text, sizeof (text), "%llu", (unsigned long long) value);
    json_out_append (out, text, (size_t) len);
}

//  Writes a signed integer
static void
s_put_i64 (json_out_t *out, int64_t value)
{
    char text [24];
    int len = snprintf (text, sizeof (text), "%lld", (long long) value);
    json_out_append (out, text, (size_t) len);
}

//  Writes the shortest "%g" form that reads back as the same double
static void
s_put_double (json_out_t *out, double value)
{
    if (!isfinite (value)) {
        s_out_str (out, "null");
        return;
    }
    locale_t locale = s_locale ();
    locale_t previous = locale? uselocale (locale): (locale_t) 0;
    char text [40];
    for (int precision = 15; precision <= 17; precision++) {
        snprintf (text, sizeof (text), "%.*g", precision, value);
        if (precision == 17 || strtod (text, NULL) == value)
            break;
    }
    if (previous)
        uselocale (previous);
    s_out_str (out, text);
}

//  Emits the separator before a new item of the innermost container
static void
s_separate (s_writer_t *self)
{
    if (self->depth == 0)
        return;
    s_out_level_t *level = &self->levels [self->depth - 1];
    if (!level->first)
        s_out_char (self->out, ',');
    level->first = false;
}

//  Stores a root scalar in *root when it is one of the fields we report
static void
s_note_root_value (s_writer_t *self, uint8_t kind, uint64_t u, const uint8_t *str, size_t len)
{
    json_root_t *root = self->root;
    if (!root || self->depth != 1)
        return;
    if (self->field == S_ROOT_RE && kind == 'u') {
        root->has_re = true;
        root->re = u;
    }
    else
    if (self->field == S_ROOT_OK && kind == 'b') {
        root->has_ok = true;
        root->ok = u != 0;
    }
    else
    if (self->field == S_ROOT_EV)
        root->has_ev = true;
    else
    if (self->field == S_ROOT_ERROR && kind == 's' && len < sizeof (root->error)) {
        memcpy (root->error, str, len);
        root->error [len] = 0;
    }
    else
    if (self->field == S_ROOT_RETRY && kind == 'u')
        root->retry_after_ms = u;
    else
    if (self->field == S_ROOT_PONG && kind == 'b')
        root->is_pong = u != 0;
    else
    if (self->field == S_ROOT_TS && kind == 'u')
        root->ts = u;
}

//  Handles a map key; keys must be strings or integers
static int
s_write_key (s_writer_t *self, uint8_t kind, uint64_t u, int64_t i,
             const uint8_t *str, size_t len, bool muted)
{
    static const struct { const char *name; s_root_field_t field; } fields [] = {
        { "re", S_ROOT_RE }, { "ok", S_ROOT_OK }, { "ev", S_ROOT_EV },
        { "error", S_ROOT_ERROR }, { "retry_after_ms", S_ROOT_RETRY },
        { "pong", S_ROOT_PONG }, { "ts", S_ROOT_TS }
    };
    if (kind != 's' && kind != 'u' && kind != 'i')
        return -1;
    self->field = S_ROOT_NONE;
    if (self->depth == 1 && kind == 's') {
        for (size_t f = 0; f < sizeof (fields) / sizeof (fields [0]); f++)
            if (strlen (fields [f].name) == len && memcmp (fields [f].name, str, len) == 0)
                self->field = fields [f].field;
        if (self->skip_key && strlen (self->skip_key) == len
        &&  memcmp (self->skip_key, str, len) == 0) {
            self->mute_next = true;
            return 0;
        }
    }
    if (muted)
        return 0;
    s_separate (self);
    if (kind == 's')
        s_put_string (self->out, str, len);
    else {
        char text [24];
        int n = kind == 'u'? snprintf (text, sizeof (text), "%llu", (unsigned long long) u)
                           : snprintf (text, sizeof (text), "%lld", (long long) i);
        s_put_string (self->out, (const uint8_t *) text, (size_t) n);
    }
    s_out_char (self->out, ':');
    return 0;
}

//  Writes a scalar value of the given kind
static void
s_write_scalar (s_writer_t *self, uint8_t kind, uint64_t u, int64_t i, double d,
                const uint8_t *str, size_t len)
{
    json_out_t *out = self->out;
    switch (kind) {
        case 'n': s_out_str (out, "null"); break;
        case 'b': s_out_str (out, u? "true": "false"); break;
        case 'u': s_put_u64 (out, u); break;
        case 'i': s_put_i64 (out, i); break;
        case 'd': s_put_double (out, d); break;
        case 's': s_put_string (out, str, len); break;
        case 'x': s_put_base64 (out, str, len); break;
        default:  s_out_str (out, "null"); break;   //  ext
    }
}

//  A decoded msgpack header
typedef struct {
    uint8_t kind;               //  n b u i d s x(bin) e(ext) m(map) a(array)
    uint64_t u;                 //  unsigned value, bool, or container count
    int64_t i;                  //  signed value
    double d;                   //  float value
    const uint8_t *str;         //  string, bin or ext bytes
    size_t len;                 //  their length
} s_item_t;

//  Reads len payload bytes into item
static int
s_get_bytes (s_writer_t *self, uint64_t len, s_item_t *item)
{
    if ((uint64_t) (self->end - self->pos) < len)
        return -1;
    item->str = self->pos;
    item->len = (size_t) len;
    self->pos += len;
    return 0;
}

//  Reads an n-byte float
static int
s_get_float (s_writer_t *self, int n, s_item_t *item)
{
    uint64_t bits;
    if (s_get_be (self, n, &bits))
        return -1;
    item->kind = 'd';
    if (n == 4) {
        uint32_t bits32 = (uint32_t) bits;
        float f;
        memcpy (&f, &bits32, 4);
        item->d = f;
    }
    else
        memcpy (&item->d, &bits, 8);
    return 0;
}

//  Reads a signed integer of n bytes
static int
s_get_signed (s_writer_t *self, int n, s_item_t *item)
{
    uint64_t bits;
    if (s_get_be (self, n, &bits))
        return -1;
    int shift = 64 - 8 * n;
    item->kind = 'i';
    item->i = shift? (int64_t) (bits << shift) >> shift: (int64_t) bits;
    return 0;
}

//  Reads the header (and scalar payload) of the next item
static int
s_read_item (s_writer_t *self, s_item_t *item)
{
    if (self->pos >= self->end)
        return -1;
    memset (item, 0, sizeof (*item));
    uint8_t b = *self->pos++;
    uint64_t len;
    if (b <= 0x7f) {
        item->kind = 'u'; item->u = b; return 0;
    }
    if (b >= 0xe0) {
        item->kind = 'i'; item->i = (int8_t) b; return 0;
    }
    if (b <= 0x8f) {
        item->kind = 'm'; item->u = b & 0x0f; return 0;
    }
    if (b <= 0x9f) {
        item->kind = 'a'; item->u = b & 0x0f; return 0;
    }
    if (b <= 0xbf) {
        item->kind = 's'; return s_get_bytes (self, b & 0x1f, item);
    }
    switch (b) {
        case 0xc0: item->kind = 'n'; return 0;
        case 0xc2: case 0xc3: item->kind = 'b'; item->u = b == 0xc3; return 0;
        case 0xc4: case 0xc5: case 0xc6:
            item->kind = 'x';
            return s_get_be (self, 1 << (b - 0xc4), &len) || s_get_bytes (self, len, item);
        case 0xc7: case 0xc8: case 0xc9:
            item->kind = 'e';
            return s_get_be (self, 1 << (b - 0xc7), &len) || s_get_bytes (self, len + 1, item);
        case 0xca: return s_get_float (self, 4, item);
        case 0xcb: return s_get_float (self, 8, item);
        case 0xcc: case 0xcd: case 0xce: case 0xcf:
            item->kind = 'u';
            return s_get_be (self, 1 << (b - 0xcc), &item->u);
        case 0xd0: case 0xd1: case 0xd2: case 0xd3:
            return s_get_signed (self, 1 << (b - 0xd0), item);
        case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
            item->kind = 'e';
            return s_get_bytes (self, (1u << (b - 0xd4)) + 1, item);
        case 0xd9: case 0xda: case 0xdb:
            item->kind = 's';
            return s_get_be (self, 1 << (b - 0xd9), &len) || s_get_bytes (self, len, item);
        case 0xdc: case 0xdd:
            item->kind = 'a';
            return s_get_be (self, b == 0xdc? 2: 4, &item->u);
        case 0xde: case 0xdf:
            item->kind = 'm';
            return s_get_be (self, b == 0xde? 2: 4, &item->u);
        default:
            return -1;                  //  0xc1 is never used
    }
}

//  Opens a container item; every item takes at least one byte
static int
s_push (s_writer_t *self, const s_item_t *item, bool muted)
{
    uint64_t items = item->kind == 'm'? item->u * 2: item->u;
    if (self->depth >= JSON_MAX_OUT_DEPTH
    ||  items > (uint64_t) (self->end - self->pos))
        return -1;
    if (!muted)
        s_out_char (self->out, item->kind == 'm'? '{': '[');
    s_out_level_t *level = &self->levels [self->depth++];
    level->left = items;
    level->is_map = item->kind == 'm';
    level->first = true;
    level->muted = muted;
    return 0;
}

//  Closes containers that have no items left
static void
s_pop_finished (s_writer_t *self)
{
    while (self->depth > 0 && self->levels [self->depth - 1].left == 0) {
        s_out_level_t *level = &self->levels [--self->depth];
        if (!level->muted)
            s_out_char (self->out, level->is_map? '}': ']');
    }
}

//  Reads and writes one item: a key, a scalar, or the start of a container
static int
s_write_item (s_writer_t *self)
{
    s_out_level_t *parent = self->depth? &self->levels [self->depth - 1]: NULL;
    bool is_key = parent && parent->is_map && parent->left % 2 == 0;
    bool muted = parent && parent->muted;
    s_item_t item;
    if (s_read_item (self, &item))
        return -1;
    if (parent)
        parent->left--;
    if (is_key)
        return s_write_key (self, item.kind, item.u, item.i, item.str, item.len, muted);
    if (self->mute_next) {
        muted = true;
        self->mute_next = false;
    }
    if (!muted && !(parent && parent->is_map))
        s_separate (self);
    s_note_root_value (self, item.kind, item.u, item.str, item.len);
    if (item.kind == 'm' || item.kind == 'a')
        return s_push (self, &item, muted);
    if (!muted)
        s_write_scalar (self, item.kind, item.u, item.i, item.d, item.str, item.len);
    return 0;
}

//  --------------------------------------------------------------------------
//  Append one msgpack value as JSON

int
json_from_msgpack (const void *data, size_t size, json_out_t *out,
                   const char *skip_key, json_root_t *root)
{
    s_writer_t self;
    memset (&self, 0, sizeof (self));
    self.pos = (const uint8_t *) data;
    self.end = self.pos + size;
    self.out = out;
    self.skip_key = skip_key;
    self.root = root;
    if (root)
        memset (root, 0, sizeof (*root));
    do {
        if (s_write_item (&self))
            return -1;
        s_pop_finished (&self);
    } while (self.depth > 0);
    if (self.pos != self.end || out->failed)
        return -1;
    return 0;
}
