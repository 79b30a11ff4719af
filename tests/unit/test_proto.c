/*  =========================================================================
    test_proto - the wire codec: bounded validation, reading, writing
    =========================================================================
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "chorus/proto.h"

static int
s_validate (const char *bytes, size_t size)
{
    const char *why = NULL;
    int rc = proto_validate (bytes, size, &why);
    if (rc)
        assert_non_null (why);
    return rc;
}

static void
test_accepts_a_plain_map (void **state)
{
    (void) state;
    //  {"op": "ping", "rid": 1}
    const char bytes [] = "\x82\xa2op\xa4ping\xa3rid\x01";
    assert_int_equal (s_validate (bytes, sizeof (bytes) - 1), 0);
    assert_int_equal (s_validate ("\x80", 1), 0);
}

static void
test_refuses_what_is_not_a_bounded_map (void **state)
{
    (void) state;
    assert_int_equal (s_validate ("", 0), -1);                   //  empty
    assert_int_equal (s_validate ("\x91\x01", 2), -1);           //  root array
    assert_int_equal (s_validate ("\xc1", 1), -1);               //  reserved byte
    assert_int_equal (s_validate ("\x81\xa1" "a", 3), -1);       //  truncated
    assert_int_equal (s_validate ("\x81\xa1" "a\x01\x01", 5), -1);   //  trailing byte
    //  array32 claiming 4 billion items in 8 bytes
    assert_int_equal (s_validate ("\x81\xa1" "a\xdd\xff\xff\xff\xff", 8), -1);
    //  map32 claiming 4 billion pairs
    assert_int_equal (s_validate ("\xdf\xff\xff\xff\xff", 5), -1);
    //  str32 claiming 4 GB
    assert_int_equal (s_validate ("\x81\xa1" "a\xdb\xff\xff\xff\xff", 8), -1);
    //  ext types
    assert_int_equal (s_validate ("\x81\xa1" "a\xd4\x01\x01", 6), -1);
    assert_int_equal (s_validate ("\x81\xa1" "a\xc7\x01\x01x", 7), -1);
    //  non-string and duplicate keys
    assert_int_equal (s_validate ("\x81\x01\x01", 3), -1);
    assert_int_equal (s_validate ("\x82\xa1" "a\x01\xa1" "a\x02", 7), -1);
}

static void
test_depth_and_node_limits (void **state)
{
    (void) state;
    char deep [64] = "\x81\xa1" "a";
    size_t size = 3;
    for (int i = 0; i < PROTO_MAX_DEPTH - 1; i++)
        deep [size++] = (char) 0x91;
    deep [size++] = (char) 0xc0;
    assert_int_equal (s_validate (deep, size), 0);            //  depth 8: fine
    memmove (deep + 4, deep + 3, size - 3);
    deep [3] = (char) 0x91;
    assert_int_equal (s_validate (deep, size + 1), -1);       //  depth 9: refused
    //  an array of 5000 nils is more objects than allowed
    char *many = malloc (8 + 5000);
    memcpy (many, "\x81\xa1" "a\xdc\x13\x88", 6);
    memset (many + 6, 0xc0, 5000);
    assert_int_equal (s_validate (many, 6 + 5000), -1);
    free (many);
}

static void
test_utf8 (void **state)
{
    (void) state;
    assert_true (proto_utf8_valid ("héllo €𝄞", strlen ("héllo €𝄞")));
    assert_false (proto_utf8_valid ("\xc0\xaf", 2));          //  overlong
    assert_false (proto_utf8_valid ("\xed\xa0\x80", 3));      //  surrogate
    assert_false (proto_utf8_valid ("\xf4\x90\x80\x80", 4));  //  past U+10FFFF
    assert_false (proto_utf8_valid ("\xe2\x82", 2));          //  truncated
    assert_int_equal (proto_utf8_chars ("é€𝄞a", strlen ("é€𝄞a")), 4);
    //  a string with bad UTF-8 makes the request invalid
    assert_int_equal (s_validate ("\x81\xa1" "a\xa2\xff\xfe", 6), -1);
    //  a bad byte anywhere in a long ASCII run (the 8-byte fast path)
    char text [41];
    for (size_t at = 0; at < 40; at++) {
        memset (text, 'a', 40);
        text [at] = (char) 0xff;
        assert_false (proto_utf8_valid (text, 40));
        text [at] = 'a';
        assert_true (proto_utf8_valid (text, 40));
    }
    //  a character split by the end of the input, after a word of ASCII
    assert_false (proto_utf8_valid ("aaaaaaaa\xe2\x82", 10));
}

//  Code points of valid UTF-8, one byte at a time
static size_t
s_chars_bytewise (const uint8_t *text, size_t size)
{
    size_t chars = 0;
    for (size_t i = 0; i < size; i++)
        chars += (text [i] & 0xC0) != 0x80;
    return chars;
}

static void
test_utf8_chars_by_words (void **state)
{
    (void) state;
    //  Strings of 1-4 byte characters at every length and alignment
    const char *pieces [] = { "a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9d\x84\x9e" };
    srand (7);
    for (int round = 0; round < 2000; round++) {
        uint8_t text [200];
        size_t size = 0;
        size_t want = (size_t) rand () % 60;
        while (size + 4 < sizeof (text) && want--) {
            const char *piece = pieces [rand () % 4];
            memcpy (text + size, piece, strlen (piece));
            size += strlen (piece);
        }
        size_t skip = (size_t) rand () % 3;
        skip = skip < size? skip: 0;
        //  skipping into a character leaves continuation bytes at the start
        assert_int_equal (proto_utf8_chars (text + skip, size - skip),
                          s_chars_bytewise (text + skip, size - skip));
        if (skip == 0)
            assert_true (proto_utf8_valid (text, size));
    }
}

static void
test_writer_round_trip (void **state)
{
    (void) state;
    proto_writer_t *writer = proto_writer_new ();
    proto_writer_map_begin (writer);
    proto_writer_kv_str (writer, "op", "send");
    proto_writer_kv_u64 (writer, "ch", 42);
    proto_writer_kv_bool (writer, "flag", true);
    proto_writer_str (writer, "list");
    proto_writer_array_begin (writer);
    for (int i = 0; i < 3; i++)
        proto_writer_u64 (writer, i);
    proto_writer_map_begin (writer);
    proto_writer_map_end (writer);
    proto_writer_array_end (writer);
    proto_writer_map_end (writer);
    const char *why = NULL;
    proto_msg_t *msg = proto_msg_decode (proto_writer_data (writer),
                                         proto_writer_size (writer), &why);
    assert_non_null (msg);
    const char *op;
    size_t len;
    uint64_t ch;
    bool flag;
    assert_true (proto_msg_str (msg, "op", &op, &len));
    assert_int_equal (len, 4);
    assert_memory_equal (op, "send", 4);
    assert_true (proto_msg_u64 (msg, "ch", &ch));
    assert_int_equal (ch, 42);
    assert_true (proto_msg_bool (msg, "flag", &flag) && flag);
    const msgpack_object *list = proto_msg_get (msg, "list");
    assert_int_equal (list->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal (list->via.array.size, 4);
    assert_false (proto_msg_u64 (msg, "op", &ch));           //  wrong type
    assert_null (proto_msg_get (msg, "missing"));
    char copy [8];
    assert_true (proto_map_strcpy (proto_msg_root (msg), "op", copy, sizeof (copy)));
    assert_string_equal (copy, "send");
    assert_false (proto_map_strcpy (proto_msg_root (msg), "op", copy, 4));
    proto_msg_destroy (&msg);
    assert_null (msg);
    proto_msg_destroy (&msg);                                 //  idempotent
    proto_writer_destroy (&writer);
    assert_null (writer);
}

//  A reserved bin is filled in place, and the buffer grows past its first size
static void
test_writer_bin_reserve (void **state)
{
    (void) state;
    proto_writer_t *writer = proto_writer_new ();
    proto_writer_map_begin (writer);
    proto_writer_str (writer, "small");
    memcpy (proto_writer_bin_reserve (writer, 3), "abc", 3);
    proto_writer_str (writer, "large");
    uint8_t *large = proto_writer_bin_reserve (writer, 100000);
    for (size_t i = 0; i < 100000; i++)
        assert_int_equal (large [i], 0);
    memset (large, 7, 100000);
    proto_writer_kv_u64 (writer, "after", 42);
    proto_writer_map_end (writer);
    proto_msg_t *msg = proto_msg_decode_stage (proto_writer_data (writer),
                                               proto_writer_size (writer), NULL);
    assert_non_null (msg);
    const void *data;
    size_t len;
    assert_true (proto_map_bin (proto_msg_root (msg), "small", &data, &len));
    assert_int_equal (len, 3);
    assert_memory_equal (data, "abc", 3);
    assert_true (proto_map_bin (proto_msg_root (msg), "large", &data, &len));
    assert_int_equal (len, 100000);
    assert_int_equal (((const uint8_t *) data) [99999], 7);
    uint64_t after = 0;
    assert_true (proto_msg_u64 (msg, "after", &after));
    assert_int_equal (after, 42);
    proto_msg_destroy (&msg);
    proto_writer_destroy (&writer);
}

//  Every scalar is written in the same smallest form msgpack-c's packer
//  chooses, at each boundary between forms
static void
test_writer_matches_msgpack_c (void **state)
{
    (void) state;
    static const uint64_t unsigned_values [] = {
        0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295ull, 4294967296ull, UINT64_MAX
    };
    static const int64_t signed_values [] = {
        0, 5, -1, -32, -33, -128, -129, -32768, -32769, INT32_MIN,
        (int64_t) INT32_MIN - 1, INT64_MIN, 300, INT64_MAX
    };
    static const size_t lengths [] = { 0, 1, 31, 32, 255, 256, 65535, 65536, 70000 };
    static char text [70000];
    memset (text, 'x', sizeof (text));

    msgpack_sbuffer expected;
    msgpack_sbuffer_init (&expected);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &expected, msgpack_sbuffer_write);
    proto_writer_t *writer = proto_writer_new ();
    proto_writer_array_begin (writer);
    size_t count = 0;
    for (size_t i = 0; i < sizeof (unsigned_values) / sizeof (uint64_t); i++, count++) {
        proto_writer_u64 (writer, unsigned_values [i]);
        msgpack_pack_uint64 (&packer, unsigned_values [i]);
    }
    for (size_t i = 0; i < sizeof (signed_values) / sizeof (int64_t); i++, count++) {
        proto_writer_i64 (writer, signed_values [i]);
        msgpack_pack_int64 (&packer, signed_values [i]);
    }
    for (size_t i = 0; i < sizeof (lengths) / sizeof (size_t); i++, count += 2) {
        proto_writer_strn (writer, text, lengths [i]);
        msgpack_pack_str_with_body (&packer, text, lengths [i]);
        proto_writer_bin (writer, text, lengths [i]);
        msgpack_pack_bin_with_body (&packer, text, lengths [i]);
    }
    //  Empty strings and bins may come without a pointer (as msgpack-c's
    //  objects do)
    proto_writer_strn (writer, NULL, 0);
    msgpack_pack_str (&packer, 0);
    proto_writer_bin (writer, NULL, 0);
    msgpack_pack_bin (&packer, 0);
    count += 2;
    proto_writer_double (writer, -2.5);
    msgpack_pack_double (&packer, -2.5);
    proto_writer_bool (writer, true);
    msgpack_pack_true (&packer);
    proto_writer_bool (writer, false);
    msgpack_pack_false (&packer);
    proto_writer_nil (writer);
    msgpack_pack_nil (&packer);
    count += 4;
    proto_writer_array_end (writer);

    //  The writer's array header is always the 32-bit form
    const uint8_t *written = (const uint8_t *) proto_writer_data (writer);
    assert_int_equal (written [0], 0xdd);
    assert_int_equal ((written [1] << 24) | (written [2] << 16) | (written [3] << 8) | written [4],
                      count);
    assert_int_equal (proto_writer_size (writer), expected.size + 5);
    assert_memory_equal (written + 5, expected.data, expected.size);
    msgpack_sbuffer_destroy (&expected);
    proto_writer_destroy (&writer);
}

static void
test_error_table (void **state)
{
    (void) state;
    for (int code = 1; code < PROTO_ERR_COUNT; code++) {
        assert_non_null (proto_error_name (code));
        assert_non_null (proto_error_text (code));
        for (int other = 1; other < code; other++)
            assert_string_not_equal (proto_error_name (code), proto_error_name (other));
    }
    assert_true (proto_error_retriable (PROTO_ERR_STORAGE_UNAVAILABLE));
    assert_false (proto_error_retriable (PROTO_ERR_CHANNEL_NOT_FOUND));
    assert_string_equal (proto_error_name (PROTO_ERR_COUNT), "internal");
    proto_writer_t *writer = proto_writer_new ();
    proto_write_error (writer, 7, PROTO_ERR_RATE_LIMITED, NULL, 250);
    proto_msg_t *msg = proto_msg_decode (proto_writer_data (writer), proto_writer_size (writer), NULL);
    uint64_t value;
    assert_true (proto_msg_u64 (msg, "re", &value) && value == 7);
    assert_true (proto_msg_u64 (msg, "retry_after_ms", &value) && value == 250);
    proto_msg_destroy (&msg);
    proto_writer_destroy (&writer);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_accepts_a_plain_map),
        cmocka_unit_test (test_refuses_what_is_not_a_bounded_map),
        cmocka_unit_test (test_depth_and_node_limits),
        cmocka_unit_test (test_utf8),
        cmocka_unit_test (test_utf8_chars_by_words),
        cmocka_unit_test (test_writer_round_trip),
        cmocka_unit_test (test_writer_bin_reserve),
        cmocka_unit_test (test_writer_matches_msgpack_c),
        cmocka_unit_test (test_error_table),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
