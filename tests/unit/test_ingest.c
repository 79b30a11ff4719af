/*  =========================================================================
    test_ingest - request schemas, limits and the notify rule of fan-out
    =========================================================================
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include "chorus/proto.h"
#include "ingest.h"
#include "fanout.h"

//  Checks a request built by fill(); returns the error code
static proto_error_t
s_check (void (*fill) (proto_writer_t *))
{
    proto_writer_t *writer = proto_writer_new ();
    proto_writer_map_begin (writer);
    fill (writer);
    proto_writer_map_end (writer);
    const char *why = NULL;
    proto_msg_t *msg = proto_msg_decode (proto_writer_data (writer), proto_writer_size (writer), &why);
    assert_non_null (msg);
    proto_error_t code = ingest_check (msg, &why);
    if (code != PROTO_OK)
        assert_non_null (why);
    proto_msg_destroy (&msg);
    proto_writer_destroy (&writer);
    return code;
}

static void s_send_ok (proto_writer_t *w)
{
    proto_writer_kv_str (w, "op", "send"); proto_writer_kv_u64 (w, "rid", 1);
    proto_writer_kv_u64 (w, "ch", 3); proto_writer_kv_str (w, "client_msg_id", "abc");
    proto_writer_kv_str (w, "body", "hello");
}
static void s_send_no_id (proto_writer_t *w)
{
    proto_writer_kv_str (w, "op", "send"); proto_writer_kv_u64 (w, "ch", 3);
    proto_writer_kv_str (w, "body", "hello");
}
static void s_send_blank (proto_writer_t *w)
{
    proto_writer_kv_str (w, "op", "send"); proto_writer_kv_u64 (w, "ch", 3);
    proto_writer_kv_str (w, "client_msg_id", "abc"); proto_writer_kv_str (w, "body", " \n\t");
}
static void s_send_long (proto_writer_t *w)
{
    char *body = malloc (PROTO_MAX_BODY_CHARS + 2);
    memset (body, 'x', PROTO_MAX_BODY_CHARS + 1);
    body [PROTO_MAX_BODY_CHARS + 1] = 0;
    proto_writer_kv_str (w, "op", "send"); proto_writer_kv_u64 (w, "ch", 3);
    proto_writer_kv_str (w, "client_msg_id", "abc"); proto_writer_kv_str (w, "body", body);
    free (body);
}
static void s_send_zero_channel (proto_writer_t *w)
{
    proto_writer_kv_str (w, "op", "send"); proto_writer_kv_u64 (w, "ch", 0);
    proto_writer_kv_str (w, "client_msg_id", "abc"); proto_writer_kv_str (w, "body", "x");
}
static void s_send_bad_ref (proto_writer_t *w)
{
    s_send_ok (w);
    proto_writer_str (w, "ref"); proto_writer_map_begin (w);
    proto_writer_kv_u64 (w, "ch", 1); proto_writer_map_end (w);
}
static void s_unknown (proto_writer_t *w)  { proto_writer_kv_str (w, "op", "teleport"); }
static void s_no_op (proto_writer_t *w)    { proto_writer_kv_u64 (w, "rid", 2); }
static void s_bad_rid (proto_writer_t *w)
{
    proto_writer_kv_str (w, "op", "ping"); proto_writer_kv_str (w, "rid", "one");
}
static void s_history_two_anchors (proto_writer_t *w)
{
    proto_writer_kv_str (w, "op", "history"); proto_writer_kv_u64 (w, "ch", 1);
    proto_writer_kv_u64 (w, "before", 9); proto_writer_kv_u64 (w, "after", 2);
}
static void s_history_big_page (proto_writer_t *w)
{
    proto_writer_kv_str (w, "op", "history"); proto_writer_kv_u64 (w, "ch", 1);
    proto_writer_kv_u64 (w, "limit", PROTO_PAGE_MAX + 1);
}
static void s_history_ok (proto_writer_t *w)
{
    proto_writer_kv_str (w, "op", "history"); proto_writer_kv_u64 (w, "ch", 1);
    proto_writer_kv_bool (w, "around_unread", true); proto_writer_kv_u64 (w, "limit", PROTO_PAGE_MAX);
}

static void
test_schemas (void **state)
{
    (void) state;
    assert_int_equal (s_check (s_send_ok), PROTO_OK);
    assert_int_equal (s_check (s_send_no_id), PROTO_ERR_INVALID_ARGS);
    assert_int_equal (s_check (s_send_blank), PROTO_ERR_NO_TEXT);
    assert_int_equal (s_check (s_send_long), PROTO_ERR_MSG_TOO_LONG);
    assert_int_equal (s_check (s_send_zero_channel), PROTO_ERR_INVALID_ARGS);
    assert_int_equal (s_check (s_send_bad_ref), PROTO_ERR_INVALID_ARGS);
    assert_int_equal (s_check (s_unknown), PROTO_ERR_UNKNOWN_OP);
    assert_int_equal (s_check (s_no_op), PROTO_ERR_INVALID_ARGS);
    assert_int_equal (s_check (s_bad_rid), PROTO_ERR_INVALID_ARGS);
    assert_int_equal (s_check (s_history_two_anchors), PROTO_ERR_INVALID_ARGS);
    assert_int_equal (s_check (s_history_big_page), PROTO_ERR_INVALID_ARGS);
    assert_int_equal (s_check (s_history_ok), PROTO_OK);
}

static void
test_public_ops (void **state)
{
    (void) state;
    assert_true (ingest_op_is_public ("login", 5));
    assert_true (ingest_op_is_public ("ping", 4));
    assert_false (ingest_op_is_public ("send", 4));
    assert_false (ingest_op_is_public ("history", 7));
    assert_false (ingest_op_is_public ("nope", 4));
}

static void
test_notify_rule (void **state)
{
    (void) state;
    //  public channel: only mentions and notify_always notify
    assert_false (fanout_should_notify ("public", 6, 2, 1, 0, false));
    assert_true (fanout_should_notify ("public", 6, 2, 1, 0, true));
    assert_true (fanout_should_notify ("public", 6, 2, 1, STAGE_RECIP_NOTIFY_ALWAYS, false));
    //  DMs and group DMs notify
    assert_true (fanout_should_notify ("dm", 2, 2, 1, 0, false));
    assert_true (fanout_should_notify ("group", 5, 2, 1, 0, false));
    //  muted never notifies, nor does one's own message
    assert_false (fanout_should_notify ("dm", 2, 2, 1, STAGE_RECIP_MUTED, true));
    assert_false (fanout_should_notify ("dm", 2, 1, 1, 0, true));
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_schemas),
        cmocka_unit_test (test_public_ops),
        cmocka_unit_test (test_notify_rule),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
