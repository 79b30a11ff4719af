/*  =========================================================================
    test_edge_conn - the edge's shared frames, connection queues and metrics

    Build (from the repository root):
    gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g \
        -fsanitize=address,undefined -Iinclude -Iedge \
        tests/edge/test_edge_conn.c edge/edge_conn.c edge/edge_buf.c \
        edge/edge_metrics.c edge/json.c proto/proto_*.c -lmsgpackc -lcmocka
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
#include "edge_conn.h"
#include "edge_metrics.h"

//  A buffer holding text
static edge_buf_t *
s_buf (const char *text)
{
    edge_buf_t *buf = edge_buf_new_copy (text, strlen (text));
    assert_non_null (buf);
    return buf;
}

//  --------------------------------------------------------------------------
//  The plain usage: one event shared by two queues, written, dropped

static void
test_usage (void **state)
{
    (void) state;
    edge_buf_t *event = s_buf ("{\"ev\":\"message\"}");
    edge_conn_t *a = edge_conn_new (1, 10, 1024);
    edge_conn_t *b = edge_conn_new (2, 10, 1024);
    assert_int_equal (edge_conn_push (a, event), 0);
    assert_int_equal (edge_conn_push (b, event), 0);
    assert_int_equal (edge_buf_links (event), 3);
    edge_buf_unlink (&event);
    assert_null (event);

    edge_buf_t *head = edge_conn_peek (a, 0);
    assert_memory_equal (edge_buf_data (head), "{\"ev\":\"message\"}", edge_buf_size (head));
    //  The headroom in front may be written (the frame header goes there)
    memset (edge_buf_data (head) - EDGE_BUF_HEADROOM, 0x81, EDGE_BUF_HEADROOM);
    edge_conn_pop (a);
    assert_int_equal (a->queue_count, 0);
    assert_int_equal (a->queue_bytes, 0);
    assert_int_equal (edge_buf_links (edge_conn_peek (b, 0)), 1);
    edge_conn_destroy (&a);
    edge_conn_destroy (&b);             //  frees the event
    assert_null (b);
    edge_conn_destroy (&b);             //  twice is fine
}

static void
test_buf_from_json_out (void **state)
{
    (void) state;
    json_out_t out;
    json_out_init (&out, EDGE_BUF_HEADROOM);
    json_out_append (&out, "abc", 3);
    edge_buf_t *buf = edge_buf_new (&out);
    assert_non_null (buf);
    assert_null (out.data);             //  taken
    assert_int_equal (edge_buf_size (buf), 3);
    assert_memory_equal (edge_buf_data (buf), "abc", 3);
    edge_buf_unlink (&buf);
    //  Empty text is a valid frame
    json_out_init (&out, EDGE_BUF_HEADROOM);
    buf = edge_buf_new (&out);
    assert_non_null (buf);
    assert_int_equal (edge_buf_size (buf), 0);
    edge_buf_unlink (&buf);
    //  A failed buffer makes no frame
    json_out_init (&out, EDGE_BUF_HEADROOM);
    out.failed = true;
    assert_null (edge_buf_new (&out));
}

static void
test_queue_caps (void **state)
{
    (void) state;
    edge_buf_t *small = s_buf ("0123456789");
    //  Message cap
    edge_conn_t *conn = edge_conn_new (7, 3, 1000);
    for (int i = 0; i < 3; i++)
        assert_int_equal (edge_conn_push (conn, small), 0);
    assert_int_equal (edge_conn_push (conn, small), -1);
    assert_int_equal (conn->queue_count, 3);
    assert_int_equal (edge_buf_links (small), 4);
    edge_conn_clear (conn);
    assert_int_equal (edge_buf_links (small), 1);
    edge_conn_destroy (&conn);
    //  Byte cap: 25 bytes holds two frames of 10
    conn = edge_conn_new (8, 100, 25);
    assert_int_equal (edge_conn_push (conn, small), 0);
    assert_int_equal (edge_conn_push (conn, small), 0);
    assert_int_equal (edge_conn_push (conn, small), -1);
    assert_int_equal (conn->queue_bytes, 20);
    edge_conn_clear (conn);
    //  A single frame over the byte cap still goes into an empty queue
    char *text = (char *) calloc (1, 100);
    memset (text, 'x', 99);
    edge_buf_t *big = s_buf (text);
    free (text);
    assert_int_equal (edge_conn_push (conn, big), 0);
    assert_int_equal (edge_conn_push (conn, small), -1);
    edge_conn_destroy (&conn);
    edge_buf_unlink (&big);
    edge_buf_unlink (&small);
}

static void
test_queue_ring_order (void **state)
{
    (void) state;
    edge_conn_t *conn = edge_conn_new (9, 1000, 1 << 20);
    edge_buf_t *bufs [100];
    char text [16];
    for (int i = 0; i < 100; i++) {
        snprintf (text, sizeof (text), "m%d", i);
        bufs [i] = s_buf (text);
    }
    //  Push and pop so the ring wraps while it grows
    int next_in = 0, next_out = 0;
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 7 && next_in < 100; i++)
            assert_int_equal (edge_conn_push (conn, bufs [next_in++]), 0);
        for (int i = 0; i < 3; i++) {
            snprintf (text, sizeof (text), "m%d", next_out++);
            edge_buf_t *head = edge_conn_peek (conn, 0);
            assert_int_equal (edge_buf_size (head), strlen (text));
            assert_memory_equal (edge_buf_data (head), text, strlen (text));
            edge_conn_pop (conn);
        }
    }
    for (size_t i = 0; i < conn->queue_count; i++) {
        snprintf (text, sizeof (text), "m%d", next_out + (int) i);
        assert_memory_equal (edge_buf_data (edge_conn_peek (conn, i)), text, strlen (text));
    }
    assert_null (edge_conn_peek (conn, conn->queue_count));
    edge_conn_destroy (&conn);
    for (int i = 0; i < 100; i++) {
        assert_int_equal (edge_buf_links (bufs [i]), 1);
        edge_buf_unlink (&bufs [i]);
    }
}

static void
test_rx_cap (void **state)
{
    (void) state;
    edge_conn_t *conn = edge_conn_new (10, 10, 100);
    char chunk [40];
    memset (chunk, 'a', sizeof (chunk));
    assert_int_equal (edge_conn_rx_append (conn, chunk, 40, 100), 0);
    assert_int_equal (edge_conn_rx_append (conn, chunk, 40, 100), 0);
    assert_int_equal (edge_conn_rx_append (conn, chunk, 40, 100), -1);
    assert_int_equal (conn->rx_size, 80);
    assert_int_equal (edge_conn_rx_append (conn, chunk, 20, 100), 0);
    assert_int_equal (conn->rx_size, 100);
    assert_int_equal (edge_conn_rx_append (conn, chunk, 0, 100), 0);
    assert_int_equal (edge_conn_rx_append (conn, chunk, 1, 100), -1);
    assert_int_equal (edge_conn_rx_append (conn, chunk, SIZE_MAX, 100), -1);
    edge_conn_rx_reset (conn);
    assert_int_equal (conn->rx_size, 0);
    assert_false (conn->rx_active);
    edge_conn_destroy (&conn);
}

static void
test_metrics_render (void **state)
{
    (void) state;
    edge_metrics_t *metrics = edge_metrics_new ();
    metrics->connections = 3;
    metrics->disconnects [EDGE_DISC_TOO_SLOW] = 2;
    edge_metrics_rest (metrics, 200);
    edge_metrics_rest (metrics, 200);
    edge_metrics_rest (metrics, 429);
    edge_metrics_rest (metrics, 999);   //  ignored
    edge_metrics_ack (metrics, 0.5);
    edge_metrics_ack (metrics, 7);
    edge_metrics_ack (metrics, 90000);
    edge_metrics_queue_depth (metrics, 5);
    edge_metrics_queue_depth (metrics, 2);
    json_out_t out;
    json_out_init (&out, 0);
    edge_metrics_render (metrics, &out);
    json_out_append (&out, "", 1);
    const char *text = json_out_text (&out);
    assert_non_null (strstr (text, "\nchorus_edge_connections 3\n"));
    assert_non_null (strstr (text, "chorus_edge_disconnects_total{reason=\"too_slow\"} 2\n"));
    assert_non_null (strstr (text, "chorus_edge_rest_requests_total{status=\"200\"} 2\n"));
    assert_non_null (strstr (text, "chorus_edge_rest_requests_total{status=\"429\"} 1\n"));
    assert_null (strstr (text, "status=\"999\""));
    assert_non_null (strstr (text, "chorus_edge_rest_send_ack_ms_bucket{le=\"1\"} 1\n"));
    assert_non_null (strstr (text, "chorus_edge_rest_send_ack_ms_bucket{le=\"10\"} 2\n"));
    assert_non_null (strstr (text, "chorus_edge_rest_send_ack_ms_bucket{le=\"5000\"} 2\n"));
    assert_non_null (strstr (text, "chorus_edge_rest_send_ack_ms_bucket{le=\"+Inf\"} 3\n"));
    assert_non_null (strstr (text, "chorus_edge_rest_send_ack_ms_count 3\n"));
    assert_non_null (strstr (text, "chorus_edge_queue_depth_max 5\n"));
    json_out_free (&out);
    edge_metrics_destroy (&metrics);
    assert_null (metrics);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_usage),
        cmocka_unit_test (test_buf_from_json_out),
        cmocka_unit_test (test_queue_caps),
        cmocka_unit_test (test_queue_ring_order),
        cmocka_unit_test (test_rx_cap),
        cmocka_unit_test (test_metrics_render),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
