/*  =========================================================================
    test_json - JSON <-> msgpack translation of the web edge

    Build (from the repository root):
    gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g \
        -fsanitize=address,undefined -Iinclude -Iedge \
        tests/edge/test_json.c edge/json.c proto/proto_*.c -lmsgpackc -lcmocka
    =========================================================================
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "json.h"

#define MAX_SIZE PROTO_MAX_FRAME

//  Parses text; returns the error code (JSON_OK on success)
static json_error_t
s_parse (const char *text, size_t size, proto_writer_t *writer, json_result_t *result)
{
    proto_writer_reset (writer);
    if (json_to_msgpack (text, size, MAX_SIZE, writer, result) == 0) {
        assert_int_equal (result->error, JSON_OK);
        //  Whatever we accept, the broker's validator accepts too
        const char *why = NULL;
        assert_int_equal (proto_validate (proto_writer_data (writer),
                                          proto_writer_size (writer), &why), 0);
    }
    else
        assert_int_not_equal (result->error, JSON_OK);
    return result->error;
}

static json_error_t
s_error_of (const char *text)
{
    proto_writer_t *writer = proto_writer_new ();
    json_result_t result;
    json_error_t error = s_parse (text, strlen (text), writer, &result);
    proto_writer_destroy (&writer);
    return error;
}

//  JSON -> msgpack -> JSON; returns a malloc'd NUL-terminated string
static char *
s_round_trip (const char *text)
{
    proto_writer_t *writer = proto_writer_new ();
    json_result_t result;
    assert_int_equal (s_parse (text, strlen (text), writer, &result), JSON_OK);
    json_out_t out;
    json_out_init (&out, 16);
    assert_int_equal (json_from_msgpack (proto_writer_data (writer),
                                         proto_writer_size (writer), &out, NULL, NULL), 0);
    char *copy = (char *) malloc (out.size + 1);
    memcpy (copy, json_out_text (&out), out.size);
    copy [out.size] = 0;
    json_out_free (&out);
    proto_writer_destroy (&writer);
    return copy;
}

static void
s_assert_round_trip (const char *text, const char *expected)
{
    char *back = s_round_trip (text);
    assert_string_equal (back, expected);
    free (back);
}

//  msgpack bytes -> JSON string (malloc'd), or NULL if refused
static char *
s_to_json (const void *data, size_t size, const char *skip, json_root_t *root)
{
    json_out_t out;
    json_out_init (&out, 0);
    char *copy = NULL;
    if (json_from_msgpack (data, size, &out, skip, root) == 0) {
        copy = (char *) malloc (out.size + 1);
        memcpy (copy, json_out_text (&out), out.size);
        copy [out.size] = 0;
    }
    json_out_free (&out);
    return copy;
}

//  --------------------------------------------------------------------------
//  The plain usage: a request in, its fields read back, JSON out again

static void
test_usage (void **state)
{
    (void) state;
    const char *text = "{\"op\":\"send\",\"rid\":7,\"ch\":3,\"client_msg_id\":\"c-1\",\"body\":\"hi\"}";
    proto_writer_t *writer = proto_writer_new ();
    json_result_t result;
    assert_int_equal (json_to_msgpack (text, strlen (text), MAX_SIZE, writer, &result), 0);
    assert_true (result.has_op);
    assert_string_equal (result.op, "send");
    assert_true (result.has_rid);
    assert_int_equal (result.rid, 7);

    proto_msg_t *msg = proto_msg_decode (proto_writer_data (writer),
                                         proto_writer_size (writer), NULL);
    assert_non_null (msg);
    uint64_t ch = 0;
    assert_true (proto_msg_u64 (msg, "ch", &ch));
    assert_int_equal (ch, 3);
    const char *body;
    size_t len;
    assert_true (proto_msg_str (msg, "body", &body, &len));
    assert_int_equal (len, 2);
    assert_memory_equal (body, "hi", 2);
    proto_msg_destroy (&msg);

    json_out_t out;
    json_out_init (&out, 16);
    json_root_t root;
    assert_int_equal (json_from_msgpack (proto_writer_data (writer),
                                         proto_writer_size (writer), &out, "rid", &root), 0);
    assert_int_equal (out.size, strlen (text) - strlen ("\"rid\":7,"));
    assert_memory_equal (json_out_text (&out),
        "{\"op\":\"send\",\"ch\":3,\"client_msg_id\":\"c-1\",\"body\":\"hi\"}", out.size);
    json_out_free (&out);
    proto_writer_destroy (&writer);
}

static void
test_round_trips (void **state)
{
    (void) state;
    s_assert_round_trip ("{}", "{}");
    s_assert_round_trip (" { \"a\" : 1 , \"b\" : [ ] }\r\n", "{\"a\":1,\"b\":[]}");
    s_assert_round_trip (
        "{\"a\":1,\"b\":-2,\"c\":1.5,\"d\":\"x\",\"e\":true,\"f\":false,\"g\":null,"
        "\"h\":[1,[2,[]],{}],\"i\":{\"j\":{\"k\":\"l\"}}}",
        "{\"a\":1,\"b\":-2,\"c\":1.5,\"d\":\"x\",\"e\":true,\"f\":false,\"g\":null,"
        "\"h\":[1,[2,[]],{}],\"i\":{\"j\":{\"k\":\"l\"}}}");
    //  Integral numbers become integers, others stay doubles
    s_assert_round_trip ("{\"a\":1e3,\"b\":-0,\"c\":2.50,\"d\":-1.25e-3,\"e\":1E+2}",
                         "{\"a\":1000,\"b\":0,\"c\":2.5,\"d\":-0.00125,\"e\":100}");
    s_assert_round_trip ("{\"a\":0.1,\"b\":1e-400}", "{\"a\":0.1,\"b\":0}");
    //  Up to 2^53 integers are integers; beyond, doubles
    s_assert_round_trip ("{\"a\":9007199254740992,\"b\":-9007199254740992}",
                         "{\"a\":9007199254740992,\"b\":-9007199254740992}");
    s_assert_round_trip ("{\"a\":9007199254740993}", "{\"a\":9007199254740992}");
    s_assert_round_trip ("{\"a\":123456789012345678901234567890}",
                         "{\"a\":1.2345678901234568e+29}");
    //  Eight levels of nesting are allowed
    s_assert_round_trip ("{\"a\":[[[[[{\"b\":[]}]]]]]}", "{\"a\":[[[[[{\"b\":[]}]]]]]}");
}

static void
test_escapes (void **state)
{
    (void) state;
    const char *text = "{\"s\":\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u0041\\u00e9\\u20AC\\u0000\"}";
    proto_writer_t *writer = proto_writer_new ();
    json_result_t result;
    assert_int_equal (s_parse (text, strlen (text), writer, &result), JSON_OK);
    proto_msg_t *msg = proto_msg_decode (proto_writer_data (writer),
                                         proto_writer_size (writer), NULL);
    const char *str;
    size_t len;
    assert_true (proto_msg_str (msg, "s", &str, &len));
    const char expected [] = "a\"b\\c/d\b\f\n\r\tA\xC3\xA9\xE2\x82\xAC";
    assert_int_equal (len, sizeof (expected));      //  and the NUL at the end
    assert_memory_equal (str, expected, sizeof (expected));
    proto_msg_destroy (&msg);
    proto_writer_destroy (&writer);

    s_assert_round_trip (text,
        "{\"s\":\"a\\\"b\\\\c/d\\u0008\\u000c\\u000a\\u000d\\u0009A\xC3\xA9\xE2\x82\xAC\\u0000\"}");
    //  Raw UTF-8 passes through unchanged
    s_assert_round_trip ("{\"\xE2\x82\xAC\":\"\xF0\x9F\x98\x80 \xC3\xA9\"}",
                         "{\"\xE2\x82\xAC\":\"\xF0\x9F\x98\x80 \xC3\xA9\"}");
}

static void
test_surrogate_pairs (void **state)
{
    (void) state;
    s_assert_round_trip ("{\"s\":\"\\ud83d\\ude00\"}", "{\"s\":\"\xF0\x9F\x98\x80\"}");
    s_assert_round_trip ("{\"s\":\"\\uD800\\uDC00\\uDBFF\\uDFFF\"}",
                         "{\"s\":\"\xF0\x90\x80\x80\xF4\x8F\xBF\xBF\"}");
    assert_int_equal (s_error_of ("{\"s\":\"\\ud83d\"}"), JSON_ERR_ESCAPE);
    assert_int_equal (s_error_of ("{\"s\":\"\\ude00\"}"), JSON_ERR_ESCAPE);
    assert_int_equal (s_error_of ("{\"s\":\"\\ud83d\\u0041\"}"), JSON_ERR_ESCAPE);
    assert_int_equal (s_error_of ("{\"s\":\"\\ud83dx\"}"), JSON_ERR_ESCAPE);
    assert_int_equal (s_error_of ("{\"s\":\"\\ud83d\\ud83d\"}"), JSON_ERR_ESCAPE);
}

static void
test_errors_syntax (void **state)
{
    (void) state;
    assert_int_equal (s_error_of (""), JSON_ERR_EMPTY);
    assert_int_equal (s_error_of (" \r\n\t"), JSON_ERR_EMPTY);
    assert_int_equal (s_error_of ("hello"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{\"a\"}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{\"a\":}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{\"a\":1,}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{,}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{a:1}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{'a':1}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{\"a\":[1,]}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{\"a\":[1 2]}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{\"a\":tru}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{\"a\":nul}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{\"a\":[}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{\"a\":{]}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{\"a\":\"x}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("\xEF\xBB\xBF{}"), JSON_ERR_SYNTAX);   //  no BOM
    //  JSON, but not an object
    assert_int_equal (s_error_of ("[]"), JSON_ERR_NOT_OBJECT);
    assert_int_equal (s_error_of ("\"op\""), JSON_ERR_NOT_OBJECT);
    assert_int_equal (s_error_of ("42"), JSON_ERR_NOT_OBJECT);
    assert_int_equal (s_error_of ("null"), JSON_ERR_NOT_OBJECT);
    assert_int_equal (s_error_of ("nothing"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("trust me"), JSON_ERR_SYNTAX);
    //  Trailing garbage
    assert_int_equal (s_error_of ("{} x"), JSON_ERR_TRAILING);
    assert_int_equal (s_error_of ("{}{}"), JSON_ERR_TRAILING);
    assert_int_equal (s_error_of ("{}}"), JSON_ERR_TRAILING);
    assert_int_equal (s_error_of ("{}\n"), JSON_OK);
}

static void
test_errors_escapes (void **state)
{
    (void) state;
    assert_int_equal (s_error_of ("{\"a\":\"\\x\"}"), JSON_ERR_ESCAPE);
    assert_int_equal (s_error_of ("{\"a\":\"\\'\"}"), JSON_ERR_ESCAPE);
    assert_int_equal (s_error_of ("{\"a\":\"\\u12\"}"), JSON_ERR_ESCAPE);
    assert_int_equal (s_error_of ("{\"a\":\"\\u12G4\"}"), JSON_ERR_ESCAPE);
    assert_int_equal (s_error_of ("{\"a\":\"\\U0041\"}"), JSON_ERR_ESCAPE);
    assert_int_equal (s_error_of ("{\"a\":\"\\"), JSON_ERR_ESCAPE);
    //  Raw control characters must be escaped
    assert_int_equal (s_error_of ("{\"a\":\"x\ny\"}"), JSON_ERR_CONTROL);
    assert_int_equal (s_error_of ("{\"a\":\"\t\"}"), JSON_ERR_CONTROL);
}

static void
test_errors_utf8 (void **state)
{
    (void) state;
    const char *bad [] = {
        "{\"a\":\"\xFF\"}",                 //  never valid
        "{\"a\":\"\xC0\x80\"}",             //  overlong NUL
        "{\"a\":\"\xE0\x80\xAF\"}",         //  overlong '/'
        "{\"a\":\"\xED\xA0\x80\"}",         //  a surrogate
        "{\"a\":\"\xE2\x82\"}",             //  truncated
        "{\"a\":\"\xF4\x90\x80\x80\"}",     //  above U+10FFFF
        "{\"a\":\"\x80\"}",                 //  a lone continuation byte
        "{\"\xC3\":1}",                     //  in a key
    };
    for (size_t i = 0; i < sizeof (bad) / sizeof (bad [0]); i++)
        assert_int_equal (s_error_of (bad [i]), JSON_ERR_UTF8);
    //  Invalid UTF-8 outside strings is not JSON at all
    assert_int_equal (s_error_of ("{\"a\":1\xFF}"), JSON_ERR_SYNTAX);
}

static void
test_errors_depth (void **state)
{
    (void) state;
    char text [64] = "";
    //  Eight containers are fine, nine are not
    strcpy (text, "{\"a\":[[[[[[[]]]]]]]}");
    assert_int_equal (s_error_of (text), JSON_OK);
    strcpy (text, "{\"a\":[[[[[[[[]]]]]]]]}");
    assert_int_equal (s_error_of (text), JSON_ERR_DEPTH);
    //  A deep unclosed input fails on depth, not on the stack
    size_t size = 100000;
    char *deep = (char *) malloc (size + 1);
    deep [0] = '{';
    deep [1] = '"';
    deep [2] = '"';
    deep [3] = ':';
    memset (deep + 4, '[', size - 4);
    deep [size] = 0;
    proto_writer_t *writer = proto_writer_new ();
    json_result_t result;
    assert_int_equal (json_to_msgpack (deep, size, size, writer, &result), -1);
    assert_int_equal (result.error, JSON_ERR_DEPTH);
    assert_int_equal (result.offset, 4 + 7);
    proto_writer_destroy (&writer);
    free (deep);
}

static void
test_errors_duplicate_keys (void **state)
{
    (void) state;
    assert_int_equal (s_error_of ("{\"a\":1,\"a\":2}"), JSON_ERR_DUP_KEY);
    assert_int_equal (s_error_of ("{\"a\":1,\"\\u0061\":2}"), JSON_ERR_DUP_KEY);
    assert_int_equal (s_error_of ("{\"x\":{\"k\":1,\"b\":2,\"k\":3}}"), JSON_ERR_DUP_KEY);
    assert_int_equal (s_error_of ("{\"\":1,\"\":2}"), JSON_ERR_DUP_KEY);
    //  The same key in different objects is fine
    assert_int_equal (s_error_of ("{\"a\":{\"a\":1}}"), JSON_OK);
    assert_int_equal (s_error_of ("{\"x\":{\"a\":1},\"y\":{\"a\":1},\"a\":[{\"a\":1},{\"a\":2}]}"), JSON_OK);
    //  Prefixes are different keys
    assert_int_equal (s_error_of ("{\"ab\":1,\"a\":2,\"abc\":3}"), JSON_OK);

    json_result_t result;
    proto_writer_t *writer = proto_writer_new ();
    const char *text = "{\"a\":1, \"a\":2}";
    assert_int_equal (s_parse (text, strlen (text), writer, &result), JSON_ERR_DUP_KEY);
    assert_int_equal (result.offset, 8);
    proto_writer_destroy (&writer);
}

static void
test_errors_numbers (void **state)
{
    (void) state;
    assert_int_equal (s_error_of ("{\"a\":1e400}"), JSON_ERR_NUMBER);
    assert_int_equal (s_error_of ("{\"a\":-1e400}"), JSON_ERR_NUMBER);
    assert_int_equal (s_error_of ("{\"a\":01}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{\"a\":-01}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{\"a\":1.}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{\"a\":.5}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{\"a\":-}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{\"a\":1e}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{\"a\":1e+}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{\"a\":+1}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{\"a\":0x10}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{\"a\":NaN}"), JSON_ERR_SYNTAX);
    assert_int_equal (s_error_of ("{\"a\":Infinity}"), JSON_ERR_SYNTAX);
    //  Numbers longer than JSON_MAX_NUMBER_CHARS
    char text [200];
    strcpy (text, "{\"a\":1.");
    memset (text + 7, '5', 80);
    strcpy (text + 87, "}");
    assert_int_equal (s_error_of (text), JSON_ERR_NUMBER);
}

static void
test_errors_limits (void **state)
{
    (void) state;
    proto_writer_t *writer = proto_writer_new ();
    json_result_t result;
    //  Over the byte cap
    assert_int_equal (json_to_msgpack ("{}", 2, 1, writer, &result), -1);
    assert_int_equal (result.error, JSON_ERR_TOO_BIG);

    //  257 keys in one object
    char *text = (char *) malloc (16 * 1024);
    char *p = text;
    p += sprintf (p, "{");
    for (int i = 0; i < JSON_MAX_KEYS + 1; i++)
        p += sprintf (p, "%s\"k%d\":%d", i? ",": "", i, i);
    p += sprintf (p, "}");
    assert_int_equal (s_parse (text, strlen (text), writer, &result), JSON_ERR_TOO_MANY);
    //  256 are fine
    p = text;
    p += sprintf (p, "{");
    for (int i = 0; i < JSON_MAX_KEYS; i++)
        p += sprintf (p, "%s\"k%d\":%d", i? ",": "", i, i);
    p += sprintf (p, "}");
    assert_int_equal (s_parse (text, strlen (text), writer, &result), JSON_OK);
    free (text);

    //  More than 4096 values in all
    text = (char *) malloc (32 * 1024);
    p = text;
    p += sprintf (p, "{\"a\":[");
    for (int i = 0; i < JSON_MAX_NODES; i++)
        p += sprintf (p, "%s0", i? ",": "");
    p += sprintf (p, "]}");
    assert_int_equal (s_parse (text, strlen (text), writer, &result), JSON_ERR_TOO_MANY);
    free (text);

    //  JSON under the cap whose msgpack form is over PROTO_MAX_FRAME: a
    //  float64 takes 9 bytes in msgpack and 4 in JSON ("0.5,")
    size_t count = 4000;
    size_t filler = PROTO_MAX_FRAME - 4 * count - 32;
    text = (char *) malloc (PROTO_MAX_FRAME);
    p = text;
    p += sprintf (p, "{\"s\":\"");
    memset (p, 'x', filler);
    p += filler;
    p += sprintf (p, "\",\"a\":[");
    for (size_t i = 0; i < count; i++)
        p += sprintf (p, "%s0.5", i? ",": "");
    p += sprintf (p, "]}");
    (void) p;
    assert_true (strlen (text) <= MAX_SIZE);
    assert_int_equal (s_parse (text, strlen (text), writer, &result), JSON_ERR_TOO_BIG);
    free (text);
    proto_writer_destroy (&writer);
}

static void
test_every_truncation_fails (void **state)
{
    (void) state;
    const char *text = "{\"a\":[1,-2.5e3,{\"b\":\"c\\u00e9\\ud83d\\ude00\"}],\"t\":true,\"n\":null}";
    assert_int_equal (s_error_of (text), JSON_OK);
    proto_writer_t *writer = proto_writer_new ();
    for (size_t size = 0; size < strlen (text); size++) {
        json_result_t result;
        assert_int_not_equal (s_parse (text, size, writer, &result), JSON_OK);
    }
    proto_writer_destroy (&writer);
}

static void
test_op_and_rid (void **state)
{
    (void) state;
    proto_writer_t *writer = proto_writer_new ();
    json_result_t result;
    const char *text = "{\"x\":{\"op\":\"inner\",\"rid\":9},\"rid\":5,\"op\":\"auth\"}";
    assert_int_equal (s_parse (text, strlen (text), writer, &result), JSON_OK);
    assert_true (result.has_op);
    assert_string_equal (result.op, "auth");
    assert_true (result.has_rid);
    assert_int_equal (result.rid, 5);

    text = "{\"x\":{\"op\":\"inner\",\"rid\":9}}";
    assert_int_equal (s_parse (text, strlen (text), writer, &result), JSON_OK);
    assert_false (result.has_op);
    assert_false (result.has_rid);

    text = "{\"op\":1,\"rid\":-1}";
    assert_int_equal (s_parse (text, strlen (text), writer, &result), JSON_OK);
    assert_false (result.has_op);
    assert_false (result.has_rid);

    text = "{\"op\":\"p\\u0069ng\",\"rid\":2.0}";
    assert_int_equal (s_parse (text, strlen (text), writer, &result), JSON_OK);
    assert_string_equal (result.op, "ping");
    assert_int_equal (result.rid, 2);

    text = "{\"op\":\"a-very-long-operation-name-over-32\",\"rid\":\"7\"}";
    assert_int_equal (s_parse (text, strlen (text), writer, &result), JSON_OK);
    assert_false (result.has_op);
    assert_false (result.has_rid);
    proto_writer_destroy (&writer);
}

//  --------------------------------------------------------------------------
//  msgpack -> JSON

static void
test_from_msgpack_reply (void **state)
{
    (void) state;
    proto_writer_t *writer = proto_writer_new ();
    proto_write_error (writer, 12, PROTO_ERR_RATE_LIMITED, "slow down", 250);
    json_root_t root;
    char *json = s_to_json (proto_writer_data (writer), proto_writer_size (writer), "re", &root);
    assert_non_null (json);
    assert_string_equal (json, "{\"ok\":false,\"error\":\"rate_limited\",\"message\":\"slow down\","
                               "\"retriable\":true,\"retry_after_ms\":250}");
    assert_true (root.has_re);
    assert_int_equal (root.re, 12);
    assert_true (root.has_ok);
    assert_false (root.ok);
    assert_string_equal (root.error, "rate_limited");
    assert_int_equal (root.retry_after_ms, 250);
    assert_false (root.has_ev);
    free (json);

    //  A skipped key whose value is a container
    proto_writer_reset (writer);
    proto_writer_map_begin (writer);
    proto_writer_str (writer, "ev");
    proto_writer_str (writer, "message");
    proto_writer_str (writer, "re");
    proto_writer_map_begin (writer);
    proto_writer_kv_u64 (writer, "x", 1);
    proto_writer_str (writer, "y");
    proto_writer_array_begin (writer);
    proto_writer_u64 (writer, 2);
    proto_writer_array_end (writer);
    proto_writer_map_end (writer);
    proto_writer_kv_bool (writer, "pong", true);
    proto_writer_map_end (writer);
    json = s_to_json (proto_writer_data (writer), proto_writer_size (writer), "re", &root);
    assert_string_equal (json, "{\"ev\":\"message\",\"pong\":true}");
    assert_true (root.has_ev);
    assert_true (root.is_pong);
    assert_false (root.has_re);
    free (json);
    proto_writer_destroy (&writer);
}

static void
test_from_msgpack_types (void **state)
{
    (void) state;
    //  {"b": bin "\x00\xff\x10\x20", "f": float32 1.5, "d": NaN, "e": fixext,
    //   1: -3, "s": "a\xffb", "i": int64 min}
    const uint8_t data [] = {
        0x87,
        0xa1, 'b', 0xc4, 0x04, 0x00, 0xff, 0x10, 0x20,
        0xa1, 'f', 0xca, 0x3f, 0xc0, 0x00, 0x00,
        0xa1, 'd', 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0,
        0xa1, 'e', 0xd4, 0x01, 0x02,
        0x01, 0xfd,
        0xa1, 's', 0xa3, 'a', 0xff, 'b',
        0xa1, 'i', 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0
    };
    char *json = s_to_json (data, sizeof (data), NULL, NULL);
    assert_non_null (json);
    assert_string_equal (json, "{\"b\":\"AP8QIA==\",\"f\":1.5,\"d\":null,\"e\":null,\"1\":-3,"
                               "\"s\":\"a\xEF\xBF\xBD" "b\",\"i\":-9223372036854775808}");
    free (json);

    //  base64 of 1 and 2 bytes, and a negative fixint key
    const uint8_t small [] = { 0x92, 0xc4, 0x01, 'M', 0xc4, 0x02, 'M', 'a' };
    json = s_to_json (small, sizeof (small), NULL, NULL);
    assert_string_equal (json, "[\"TQ==\",\"TWE=\"]");
    free (json);
    const uint8_t doubles [] = {
        0x93, 0xcb, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a,     //  0.1
        0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0,                             //  +inf
        0xcb, 0xc0, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18            //  -pi
    };
    json = s_to_json (doubles, sizeof (doubles), NULL, NULL);
    assert_string_equal (json, "[0.1,null,-3.141592653589793]");
    free (json);
}

static void
test_from_msgpack_malformed (void **state)
{
    (void) state;
    const uint8_t truncated [] = { 0x82, 0xa1, 'a', 0x01, 0xa1 };
    assert_null (s_to_json (truncated, sizeof (truncated), NULL, NULL));
    const uint8_t trailing [] = { 0x80, 0x00 };
    assert_null (s_to_json (trailing, sizeof (trailing), NULL, NULL));
    const uint8_t reserved [] = { 0x81, 0xa1, 'a', 0xc1 };
    assert_null (s_to_json (reserved, sizeof (reserved), NULL, NULL));
    const uint8_t huge [] = { 0xdd, 0xff, 0xff, 0xff, 0xff, 0x00 };
    assert_null (s_to_json (huge, sizeof (huge), NULL, NULL));
    const uint8_t long_str [] = { 0xdb, 0x7f, 0xff, 0xff, 0xff, 'a' };
    assert_null (s_to_json (long_str, sizeof (long_str), NULL, NULL));
    const uint8_t bad_key [] = { 0x81, 0xc0, 0x01 };
    assert_null (s_to_json (bad_key, sizeof (bad_key), NULL, NULL));
    assert_null (s_to_json ("", 0, NULL, NULL));
    //  Nesting: 32 levels are written, 33 are refused
    uint8_t deep [40];
    memset (deep, 0x91, sizeof (deep));
    deep [JSON_MAX_OUT_DEPTH] = 0xc0;
    char *json = s_to_json (deep, JSON_MAX_OUT_DEPTH + 1, NULL, NULL);
    assert_non_null (json);
    free (json);
    deep [JSON_MAX_OUT_DEPTH] = 0x91;
    deep [JSON_MAX_OUT_DEPTH + 1] = 0xc0;
    assert_null (s_to_json (deep, JSON_MAX_OUT_DEPTH + 2, NULL, NULL));
}

static void
test_out_headroom (void **state)
{
    (void) state;
    json_out_t out;
    json_out_init (&out, 16);
    for (int i = 0; i < 1000; i++)
        json_out_append (&out, "0123456789", 10);
    assert_int_equal (out.size, 10000);
    assert_ptr_equal (json_out_text (&out), (const char *) out.data + 16);
    assert_memory_equal (json_out_text (&out) + 9990, "0123456789", 10);
    json_out_free (&out);
    assert_null (out.data);
    assert_string_equal (json_error_text (JSON_ERR_DUP_KEY), "duplicate key in an object");
    assert_string_equal (json_error_text ((json_error_t) 999), "unknown error");
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_usage),
        cmocka_unit_test (test_round_trips),
        cmocka_unit_test (test_escapes),
        cmocka_unit_test (test_surrogate_pairs),
        cmocka_unit_test (test_errors_syntax),
        cmocka_unit_test (test_errors_escapes),
        cmocka_unit_test (test_errors_utf8),
        cmocka_unit_test (test_errors_depth),
        cmocka_unit_test (test_errors_duplicate_keys),
        cmocka_unit_test (test_errors_numbers),
        cmocka_unit_test (test_errors_limits),
        cmocka_unit_test (test_every_truncation_fails),
        cmocka_unit_test (test_op_and_rid),
        cmocka_unit_test (test_from_msgpack_reply),
        cmocka_unit_test (test_from_msgpack_types),
        cmocka_unit_test (test_from_msgpack_malformed),
        cmocka_unit_test (test_out_headroom),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
