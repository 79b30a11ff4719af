/*  =========================================================================
    chorus_json - render a decoded msgpack object as one line of JSON

    For display (the `chorus tail` command, logs). Strings are escaped;
    binary becomes a string of hex digits; ext types and NaN become null.
    Nesting is bounded by proto_msg_decode, and again here.
    =========================================================================
*/
#include <czmq.h>
#include <math.h>
#include "chorus/client.h"

#define JSON_MAX_DEPTH 32       //  deeper objects are written as null

static void s_write (FILE *out, const msgpack_object *obj, int depth);

//  --------------------------------------------------------------------------
//  Write bytes as a JSON string

static void
s_write_string (FILE *out, const char *text, size_t len)
{
    fputc ('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) text [i];
        if (c == '"' || c == '\\')
            fprintf (out, "\\%c", c);
        else
        if (c == '\n')
            fputs ("\\n", out);
        else
        if (c == '\t')
            fputs ("\\t", out);
        else
        if (c == '\r')
            fputs ("\\r", out);
        else
        if (c < 0x20 || c == 0x7f)
            fprintf (out, "\\u%04x", c);
        else
            fputc (c, out);
    }
    fputc ('"', out);
}

//  --------------------------------------------------------------------------
//  Write an array or a map; map keys that are not strings are rendered
//  as JSON and then quoted

static void
s_write_container (FILE *out, const msgpack_object *obj, int depth)
{
    bool is_map = obj->type == MSGPACK_OBJECT_MAP;
    uint32_t size = is_map? obj->via.map.size: obj->via.array.size;
    fputc (is_map? '{': '[', out);
    for (uint32_t i = 0; i < size; i++) {
        if (i)
            fputc (',', out);
        if (!is_map) {
            s_write (out, &obj->via.array.ptr [i], depth + 1);
            continue;
        }
        const msgpack_object *key = &obj->via.map.ptr [i].key;
        if (key->type == MSGPACK_OBJECT_STR)
            s_write_string (out, key->via.str.ptr, key->via.str.size);
        else {
            char *text = chorus_json_encode (key);
            s_write_string (out, text? text: "", text? strlen (text): 0);
            free (text);
        }
        fputc (':', out);
        s_write (out, &obj->via.map.ptr [i].val, depth + 1);
    }
    fputc (is_map? '}': ']', out);
}

//  --------------------------------------------------------------------------
//  Write any object

static void
s_write (FILE *out, const msgpack_object *obj, int depth)
{
    if (depth > JSON_MAX_DEPTH) {
        fputs ("null", out);
        return;
    }
    switch (obj->type) {
        case MSGPACK_OBJECT_BOOLEAN:
            fputs (obj->via.boolean? "true": "false", out);
            break;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            fprintf (out, "%" PRIu64, obj->via.u64);
            break;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            fprintf (out, "%" PRId64, obj->via.i64);
            break;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            if (isfinite (obj->via.f64))
                fprintf (out, "%.17g", obj->via.f64);
            else
                fputs ("null", out);
            break;
        case MSGPACK_OBJECT_STR:
            s_write_string (out, obj->via.str.ptr, obj->via.str.size);
            break;
        case MSGPACK_OBJECT_BIN:
            fputc ('"', out);
            for (uint32_t i = 0; i < obj->via.bin.size; i++)
                fprintf (out, "%02x", (unsigned char) obj->via.bin.ptr [i]);
            fputc ('"', out);
            break;
        case MSGPACK_OBJECT_ARRAY:
        case MSGPACK_OBJECT_MAP:
            s_write_container (out, obj, depth);
            break;
        default:
            fputs ("null", out);
    }
}

//  --------------------------------------------------------------------------
//  Render obj as JSON; the caller frees the string

char *
chorus_json_encode (const msgpack_object *obj)
{
    assert (obj);
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    if (!out)
        return NULL;
    s_write (out, obj, 0);
    if (fclose (out)) {
        free (text);
        return NULL;
    }
    return text;
}
