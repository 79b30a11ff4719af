/*  =========================================================================
    edge_ws - WebSocket connections on /ws: one broker session each

    Incoming: fragments are gathered (capped over the whole message: 1009
    beyond), JSON text becomes msgpack and goes to the broker with the
    connection's sid. Until auth or login succeeds only the operations the
    server accepts anonymously go through; anything else is answered
    not_authed here.

    Outgoing: replies and events wait in the connection's queue as links
    to shared buffers. When the socket is writeable, several queued frames
    are framed into one buffer and handed to the kernel in one write. A
    queue over its cap cuts the client off with 4008.

    Deadlines: one timing wheel for the whole edge (edge_wheel), ticked by
    one lws timer, holds each connection at its next deadline: the auth
    deadline, a ping after ping_interval_s without receiving anything,
    the hang-up after idle_timeout_s. lws keeps no timer per connection.
    =========================================================================
*/
#include "edge_priv.h"

//  Requests passed on before the session is authenticated: the operations
//  ingest accepts from an anonymous session (actors/ingest.c, is_public).
//  The admin operations carry their own token.
static bool
s_public_op (const json_result_t *result)
{
    static const char *ops [] = {
        "auth", "login", "ping", "bye", "tenant_create", "tenant_list",
        "user_create", "token_create"
    };
    for (size_t i = 0; result->has_op && i < sizeof (ops) / sizeof (ops [0]); i++)
        if (streq (result->op, ops [i]))
            return true;
    return false;
}

//  The connection's next deadline (ms), or 0 for none: the auth deadline
//  while it is unauthenticated, and the ping (or, once pinged, the idle
//  hang-up) counted from what it last received. The edge keeps itself
//  alive at the broker, not each session: see s_keepalive in edge.c.
static int64_t
s_deadline (edge_t *self, edge_conn_t *conn)
{
    const edge_config_t *config = self->config;
    int64_t at = 0;
    if (!conn->authed && config->auth_timeout_s > 0)
        at = conn->unauthed_since + (int64_t) config->auth_timeout_s * 1000;
    if (config->idle_timeout_s > 0) {
        int secs = conn->pinged? config->idle_timeout_s: config->ping_interval_s;
        int64_t idle_at = conn->last_rx + (int64_t) secs * 1000;
        if (!at || idle_at < at)
            at = idle_at;
    }
    return at;
}

//  Puts the connection in the edge's timing wheel at its next deadline,
//  or takes it out. Traffic only moves last_rx: the wheel sees it when
//  the old deadline comes, so a busy connection costs the wheel nothing.
static void
s_schedule (edge_t *self, edge_conn_t *conn)
{
    int64_t at = conn->close_code || conn->hung_up? 0: s_deadline (self, conn);
    if (at) {
        edge_wheel_add (self->wheel, &conn->timer, at);
        edge_tick_arm (self, edge_wheel_when (self->wheel, &conn->timer));
    }
    else
        edge_wheel_remove (self->wheel, &conn->timer);
}

//  The connection received a frame or a pong: it is alive
static void
s_alive (edge_conn_t *conn)
{
    conn->last_rx = edge_now_ms ();
    conn->pinged = false;
}

//  Queues an error reply made by the edge itself
static void
s_reply_error (edge_t *self, edge_conn_t *conn, uint64_t rid, proto_error_t code,
               const char *message)
{
    edge_buf_t *buf = edge_error_json (self, rid, code, message);
    if (buf) {
        edge_ws_queue (self, conn, buf);
        edge_buf_unlink (&buf);
    }
}

//  --------------------------------------------------------------------------
//  A WebSocket connection is open: it becomes a new broker session

int
edge_ws_established (edge_t *self, struct lws *wsi, edge_pss_t *pss)
{
    const edge_config_t *config = self->config;
    edge_conn_t *conn = edge_conn_new (edge_new_sid (self), config->queue_max_msgs,
                                       config->queue_max_bytes);
    conn->wsi = wsi;
    conn->last_sent = conn->unauthed_since = conn->last_rx = edge_now_ms ();
    pss->conn = conn;
    zhashx_insert (self->conns, &conn->sid, conn);
    self->metrics->connections++;
    self->metrics->connections_total++;
    s_schedule (self, conn);
    if (config->verbose) {
        char ip [64] = "";
        lws_get_peer_simple (wsi, ip, sizeof (ip));
        zsys_debug ("edge: session %" PRIu64 " open from %s", conn->sid, ip);
    }
    return 0;
}

//  Notes auth, login and logout requests, to follow the session's state
static void
s_note_request (edge_conn_t *conn, const json_result_t *result)
{
    if (!result->has_op || !result->has_rid)
        return;
    if (streq (result->op, "auth") || streq (result->op, "login")) {
        conn->auth_pending = true;
        conn->auth_rid = result->rid;
    }
    else
    if (streq (result->op, "logout")) {
        conn->logout_pending = true;
        conn->logout_rid = result->rid;
    }
}

//  --------------------------------------------------------------------------
//  What to do with one whole text message (pure: no lws, no I/O, fuzzed
//  by tests/fuzz/fuzz_ws_message.c)

edge_ws_verdict_t
edge_ws_decide (const void *data, size_t size, size_t max_size, bool authed,
                proto_writer_t *writer, json_result_t *result)
{
    proto_writer_reset (writer);
    if (!data)
        data = "";                      //  an empty message: rx was never allocated
    if (json_to_msgpack (data, size, max_size, writer, result))
        return EDGE_WS_INVALID;
    if (!authed && !s_public_op (result))
        return EDGE_WS_NOT_AUTHED;
    return EDGE_WS_FORWARD;
}

//  A whole text message: JSON to msgpack, then to the broker
static void
s_handle_text (edge_t *self, edge_conn_t *conn)
{
    json_result_t result;
    edge_ws_verdict_t verdict = edge_ws_decide (conn->rx, conn->rx_size,
                                                self->config->max_message_bytes,
                                                conn->authed, self->writer, &result);
    if (verdict == EDGE_WS_INVALID) {
        char message [128];
        snprintf (message, sizeof (message), "%s (at byte %zu)",
                  json_error_text (result.error), result.offset);
        self->metrics->invalid_in++;
        s_reply_error (self, conn, 0, PROTO_ERR_INVALID_MESSAGE, message);
        return;
    }
    uint64_t rid = result.has_rid? result.rid: 0;
    if (verdict == EDGE_WS_NOT_AUTHED) {
        self->metrics->not_authed++;
        s_reply_error (self, conn, rid, PROTO_ERR_NOT_AUTHED,
                       "authenticate first: send auth or login");
        return;
    }
    if (edge_broker_send (self, conn->sid, proto_writer_data (self->writer),
                          proto_writer_size (self->writer))) {
        s_reply_error (self, conn, rid, PROTO_ERR_STAGE_UNAVAILABLE,
                       "the server cannot be reached; retry");
        return;
    }
    s_note_request (conn, &result);
    conn->last_sent = edge_now_ms ();
}

//  A whole message has arrived
static void
s_handle_message (edge_t *self, edge_conn_t *conn)
{
    self->metrics->messages_in++;
    if (conn->rx_binary) {
        self->metrics->invalid_in++;
        s_reply_error (self, conn, 0, PROTO_ERR_INVALID_MESSAGE,
                       "binary messages are not accepted: send JSON as text");
    }
    else
        s_handle_text (self, conn);
    edge_conn_rx_reset (conn);
}

//  Drops the rest of a message over the cap, then closes with 1009. The
//  close waits for the message's end: closing while the client is still
//  sending would reset the connection, and the client might never see
//  the 1009. A client that keeps sending far past the cap is closed at
//  once, and the close timer bounds how long the end may take.
static void
s_discard (edge_t *self, struct lws *wsi, edge_conn_t *conn, size_t size)
{
    size_t limit = 16 * self->config->max_message_bytes;
    if (!conn->rx_discarding) {
        edge_conn_rx_reset (conn);
        conn->rx_discarding = true;
        lws_set_timeout (wsi, PENDING_TIMEOUT_USER_OK,
                         self->config->close_grace_s > 0? self->config->close_grace_s: 1);
    }
    conn->rx_discarded += size;
    if (lws_is_final_fragment (wsi) || conn->rx_discarded > limit
    ||  lws_remaining_packet_payload (wsi) > limit) {
        edge_conn_rx_reset (conn);
        edge_ws_close (self, conn, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too big",
                       EDGE_DISC_TOO_BIG);
    }
}

//  --------------------------------------------------------------------------
//  Part of a message arrived: gather it, checking the cap on the whole

int
edge_ws_receive (edge_t *self, struct lws *wsi, edge_pss_t *pss,
                 const void *data, size_t size)
{
    edge_conn_t *conn = pss->conn;
    if (!conn || conn->close_code || conn->hung_up)
        return 0;                       //  closing: input is ignored
    s_alive (conn);
    conn->rx_since_write = true;
    if (!conn->rx_active) {
        conn->rx_active = true;
        conn->rx_binary = lws_frame_is_binary (wsi) != 0;
    }
    size_t max = self->config->max_message_bytes;
    size_t rest_of_frame = lws_remaining_packet_payload (wsi);
    if (conn->rx_discarding || rest_of_frame > max
    ||  edge_conn_rx_append (conn, data, size, max) || conn->rx_size > max - rest_of_frame)
        s_discard (self, wsi, conn, size);
    else
    if (lws_is_final_fragment (wsi))
        s_handle_message (self, conn);
    return 0;
}

//  Writes a WebSocket text frame header for len bytes; returns its size
static size_t
s_frame_header (uint8_t *dest, size_t len)
{
    dest [0] = 0x81;                    //  FIN, text
    if (len < 126) {
        dest [1] = (uint8_t) len;
        return 2;
    }
    if (len < 65536) {
        dest [1] = 126;
        dest [2] = (uint8_t) (len >> 8);
        dest [3] = (uint8_t) len;
        return 4;
    }
    dest [1] = 127;
    for (int i = 0; i < 8; i++)
        dest [2 + i] = (uint8_t) ((uint64_t) len >> (56 - 8 * i));
    return 10;
}

//  Frames as many queued messages as fit in the batch buffer; returns the
//  bytes framed and how many messages in *count
static size_t
s_pack (edge_t *self, edge_conn_t *conn, size_t *count)
{
    uint8_t *batch = self->batch + LWS_PRE;
    size_t used = 0;
    *count = 0;
    edge_buf_t *buf;
    while ((buf = edge_conn_peek (conn, *count))) {
        size_t size = edge_buf_size (buf);
        if (used + EDGE_FRAME_HEADER_MAX + size > EDGE_BATCH_BYTES)
            break;
        used += s_frame_header (batch + used, size);
        memcpy (batch + used, edge_buf_data (buf), size);
        used += size;
        (*count)++;
    }
    return used;
}

//  Writes the oldest queued frames: one alone in place when it is large
//  or alone, else several framed together and written with one send.
//  lws 4.1 writes LWS_WRITE_HTTP bytes raw on a WebSocket, and keeps
//  whatever the kernel did not take in its own buffer, so whole frames
//  always go out in order. Returns 0, or -1 if the connection failed.
static int
s_write_some (edge_t *self, struct lws *wsi, edge_conn_t *conn)
{
    edge_buf_t *head = edge_conn_peek (conn, 0);
    size_t size = edge_buf_size (head);
    size_t count = 0;
    size_t used = 0;
    if (conn->queue_count > 1 && size + EDGE_FRAME_HEADER_MAX <= EDGE_BATCH_BYTES)
        used = s_pack (self, conn, &count);
    if (count > 1) {
        if (lws_write (wsi, self->batch + LWS_PRE, used, LWS_WRITE_HTTP) < (int) used)
            return -1;
    }
    else {
        //  The header goes in the buffer's headroom: the same bytes for every
        //  connection sharing it, so this is safe in our one thread
        count = 1;
        if (lws_write (wsi, edge_buf_data (head), size, LWS_WRITE_TEXT) < (int) size)
            return -1;
    }
    for (size_t i = 0; i < count; i++)
        edge_conn_pop (conn);
    self->metrics->messages_out += count;
    self->metrics->ws_writes++;
    return 0;
}

//  Writes the ping owed. Its payload is the session id in 16 hex digits:
//  lws 4.1 passes no empty pong on (LWS_CALLBACK_RECEIVE_PONG), and checks
//  a pong's payload as UTF-8 when the last message was text (1007 if not).
//  Returns 0, or -1 if the connection failed.
static int
s_write_ping (edge_t *self, struct lws *wsi, edge_conn_t *conn)
{
    conn->ping_owed = false;
    char *payload = (char *) self->batch + LWS_PRE;
    snprintf (payload, 17, "%016" PRIx64, conn->sid);
    if (lws_write (wsi, (unsigned char *) payload, 16, LWS_WRITE_PING) < 0)
        return -1;
    self->metrics->pings++;
    return 0;
}

//  --------------------------------------------------------------------------
//  The socket can take more: write the ping, queued frames, or the close
//  we owe

int
edge_ws_writeable (edge_t *self, struct lws *wsi, edge_pss_t *pss)
{
    edge_conn_t *conn = pss->conn;
    if (!conn)
        return 0;
    conn->rx_since_write = false;       //  lws writes a pong it owes before this
    if (conn->close_code) {
        const char *reason = conn->close_reason? conn->close_reason: "";
        lws_close_reason (wsi, (enum lws_close_status) conn->close_code,
                          (unsigned char *) reason, strlen (reason));
        return -1;
    }
    //  lws failed the connection itself (RSV bits, bad opcode...): it has
    //  set a close reason and sends, or has sent, its close frame. Nothing
    //  may follow a close frame (RFC 6455 5.5.1): drop what is queued.
    if (lws_get_close_length (wsi)) {
        edge_conn_clear (conn);
        return 0;
    }
    bool wrote = conn->ping_owed;
    if (conn->ping_owed && s_write_ping (self, wsi, conn))
        return -1;
    //  A few batches per callback, while the kernel takes them
    for (int round = 0; round < 4 && conn->queue_count; round++) {
        if (wrote && lws_send_pipe_choked (wsi))
            break;
        if (s_write_some (self, wsi, conn))
            return -1;
        wrote = true;
    }
    if (conn->queue_count)
        lws_callback_on_writable (wsi);
    return 0;
}

//  --------------------------------------------------------------------------
//  The client sent a close frame. lws already turns reserved codes into
//  1002; we do the same for codes of 5000 and above, and fail a 1-byte
//  payload outright (RFC 6455 7.1.5 and 7.4).

int
edge_ws_peer_close (edge_t *self, struct lws *wsi, edge_pss_t *pss,
                    const void *data, size_t size)
{
    (void) self;
    if (pss->conn && !pss->conn->close_code)
        pss->conn->disconnect = EDGE_DISC_PEER;
    if (pss->conn)
        pss->conn->peer_closed = true;
    if (size == 1) {
        //  A close payload of one byte has no valid code (RFC 6455 5.5.1)
        lws_close_reason (wsi, LWS_CLOSE_STATUS_PROTOCOL_ERR, NULL, 0);
        return -1;
    }
    uint8_t *payload = (uint8_t *) data;
    if (size >= 2 && ((payload [0] << 8) | payload [1]) >= 5000) {
        payload [0] = (uint8_t) (LWS_CLOSE_STATUS_PROTOCOL_ERR >> 8);
        payload [1] = (uint8_t) LWS_CLOSE_STATUS_PROTOCOL_ERR;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  The connection is gone: end its broker session

void
edge_ws_closed (edge_t *self, struct lws *wsi, edge_pss_t *pss)
{
    (void) wsi;
    edge_conn_t *conn = pss? pss->conn: NULL;
    if (!conn)
        return;
    edge_broker_bye (self, conn->sid);
    edge_wheel_remove (self->wheel, &conn->timer);
    zhashx_delete (self->conns, &conn->sid);
    int why = conn->disconnect;
    if (why < 0 || why >= EDGE_DISC_COUNT)
        why = EDGE_DISC_NETWORK;
    self->metrics->disconnects [why]++;
    self->metrics->connections--;
    if (self->config->verbose)
        zsys_debug ("edge: session %" PRIu64 " closed (%d)", conn->sid, why);
    edge_conn_destroy (&pss->conn);
}

//  --------------------------------------------------------------------------
//  A pong arrived: the connection is alive

int
edge_ws_pong (edge_t *self, struct lws *wsi, edge_pss_t *pss)
{
    (void) self;
    (void) wsi;
    if (pss && pss->conn)
        s_alive (pss->conn);
    return 0;
}

//  lws drops the connection at its next service, without a close frame:
//  it was idle for idle_timeout_s (the client stopped answering; it would
//  not read one), or the kernel refused a write made outside lws's callback
static void
s_hang_up (edge_t *self, edge_conn_t *conn, edge_disconnect_t why)
{
    conn->hung_up = true;
    conn->disconnect = why;
    edge_conn_clear (conn);
    lws_set_timeout ((struct lws *) conn->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    if (self->config->verbose)
        zsys_debug ("edge: session %" PRIu64 " hung up (%d)", conn->sid, why);
}

//  A connection's deadline came: close it if it did not authenticate in
//  time, hang up if it was silent for idle_timeout_s, ping it if silent
//  for ping_interval_s; then schedule its next deadline
static void
s_expire (edge_t *self, edge_conn_t *conn, int64_t now)
{
    const edge_config_t *config = self->config;
    if (conn->close_code || conn->hung_up)
        return;
    if (!conn->authed && config->auth_timeout_s > 0
    &&  now - conn->unauthed_since >= (int64_t) config->auth_timeout_s * 1000) {
        edge_ws_close (self, conn, EDGE_CLOSE_AUTH_TIMEOUT, "authentication timeout",
                       EDGE_DISC_AUTH_TIMEOUT);
        return;
    }
    int64_t silent = now - conn->last_rx;
    if (config->idle_timeout_s > 0 && silent >= (int64_t) config->idle_timeout_s * 1000) {
        s_hang_up (self, conn, EDGE_DISC_IDLE);
        return;
    }
    if (config->idle_timeout_s > 0 && !conn->pinged
    &&  silent >= (int64_t) config->ping_interval_s * 1000) {
        conn->pinged = true;
        conn->ping_owed = true;
        lws_callback_on_writable ((struct lws *) conn->wsi);
    }
    s_schedule (self, conn);
}

//  --------------------------------------------------------------------------
//  The timing wheel's tick: every connection whose deadline has come

void
edge_ws_expire (edge_t *self)
{
    int64_t now = edge_now_ms ();
    edge_wheel_link_t *link;
    while ((link = edge_wheel_expire (self->wheel, now)))
        s_expire (self, edge_wheel_owner (link, edge_conn_t, timer), now);
}

//  Puts a connection on the list to write when the drain ends. Returns 0,
//  or -1 if the list cannot grow (then the caller waits for poll).
static int
s_mark_ready (edge_t *self, edge_conn_t *conn)
{
    if (conn->ready)
        return 0;
    if (self->ready_count == self->ready_capacity) {
        size_t capacity = self->ready_capacity? self->ready_capacity * 2: 1024;
        edge_conn_t **ready = (edge_conn_t **) realloc (self->ready, capacity * sizeof (edge_conn_t *));
        if (!ready)
            return -1;
        self->ready = ready;
        self->ready_capacity = capacity;
    }
    self->ready [self->ready_count++] = conn;
    conn->ready = true;
    return 0;
}

//  Writes a connection's queue now. lws 4.1 lets a write happen outside its
//  writeable callback on an h1 WebSocket: what the kernel does not take
//  goes to the connection's own buffer, flushed before the next callback.
//  A new frame may only start when that buffer is empty (lws would take it
//  as the rest of the frame it holds), and nothing goes out after a close:
//  those cases, and a ping owed, wait for the callback. A connection that
//  sent a frame since its last callback may owe a pong (lws 4.1 says
//  nothing of a ping received, and writes the pong only when it services
//  the socket's POLLOUT): its POLLOUT is serviced now, so the pong goes
//  ahead of the reply, then the queue in edge_ws_writeable.
static void
s_write_now (edge_t *self, edge_conn_t *conn)
{
    struct lws *wsi = (struct lws *) conn->wsi;
    if (!conn->queue_count || conn->close_code || conn->hung_up)
        return;
    if (conn->peer_closed || conn->ping_owed
    ||  lws_get_close_length (wsi) || lws_partial_buffered (wsi)) {
        lws_callback_on_writable (wsi);
        return;
    }
    if (conn->rx_since_write) {
        lws_callback_on_writable (wsi);
        struct lws_pollfd pollfd = { .fd = lws_get_socket_fd (wsi),
                                     .events = POLLOUT, .revents = POLLOUT };
        lws_service_fd (self->context, &pollfd);
        return;                         //  conn may be gone now
    }
    for (int round = 0; round < 4 && conn->queue_count && !lws_partial_buffered (wsi); round++)
        if (s_write_some (self, wsi, conn)) {
            s_hang_up (self, conn, EDGE_DISC_NETWORK);
            return;
        }
    if (conn->queue_count)
        lws_callback_on_writable (wsi);
}

//  --------------------------------------------------------------------------
//  Write what the drain of the DEALER queued: a message to 1,000 members
//  goes out in this pass, one send each, instead of after a poll over every
//  connection and a callback each

void
edge_ws_write_ready (edge_t *self)
{
    for (size_t i = 0; i < self->ready_count; i++) {
        edge_conn_t *conn = self->ready [i];
        conn->ready = false;
        s_write_now (self, conn);
    }
    self->ready_count = 0;
}

//  --------------------------------------------------------------------------
//  Queue a frame; a full queue cuts the client off

void
edge_ws_queue (edge_t *self, edge_conn_t *conn, edge_buf_t *buf)
{
    if (conn->close_code || conn->hung_up)
        return;
    if (edge_conn_push (conn, buf)) {
        if (self->config->verbose)
            zsys_debug ("edge: session %" PRIu64 " too slow (%zu queued)",
                        conn->sid, conn->queue_count);
        edge_ws_close (self, conn, EDGE_CLOSE_TOO_SLOW, "too slow", EDGE_DISC_TOO_SLOW);
        return;
    }
    edge_metrics_queue_depth (self->metrics, conn->queue_count);
    if (conn->queue_count > 1)
        return;                         //  already waiting to be written
    if (!self->draining || s_mark_ready (self, conn))
        lws_callback_on_writable ((struct lws *) conn->wsi);
}

//  Changes the session's auth state; the auth deadline restarts when it
//  becomes unauthenticated again
static void
s_set_authed (edge_t *self, edge_conn_t *conn, bool authed)
{
    if (conn->authed == authed)
        return;
    conn->authed = authed;
    if (!authed)
        conn->unauthed_since = edge_now_ms ();
    s_schedule (self, conn);
}

//  Follows the session's auth state from the replies it gets
static void
s_note_reply (edge_t *self, edge_conn_t *conn, const json_root_t *root)
{
    bool ok = root->has_ok && root->ok;
    if (conn->auth_pending && root->has_re && root->re == conn->auth_rid) {
        conn->auth_pending = false;
        if (ok)
            s_set_authed (self, conn, true);
    }
    if (conn->logout_pending && root->has_re && root->re == conn->logout_rid) {
        conn->logout_pending = false;
        if (ok)
            s_set_authed (self, conn, false);
    }
    if (streq (root->error, "not_authed"))
        s_set_authed (self, conn, false);   //  the broker forgot the session
}

//  --------------------------------------------------------------------------
//  A reply for a connection

void
edge_ws_reply (edge_t *self, edge_conn_t *conn, edge_buf_t *buf, const json_root_t *root)
{
    if (root->has_re && root->re == EDGE_KEEPALIVE_RID)
        return;                         //  our own keepalive
    s_note_reply (self, conn, root);
    edge_ws_queue (self, conn, buf);
}

//  --------------------------------------------------------------------------
//  Ask a connection to close: drop what is queued, send the close frame
//  when the socket takes it, hang up after close_grace_s anyway

void
edge_ws_close (edge_t *self, edge_conn_t *conn, int code, const char *reason,
               edge_disconnect_t why)
{
    if (conn->close_code || conn->hung_up)
        return;
    conn->close_code = code;
    conn->close_reason = reason;
    conn->disconnect = why;
    conn->ping_owed = false;
    edge_conn_clear (conn);
    edge_wheel_remove (self->wheel, &conn->timer);
    struct lws *wsi = (struct lws *) conn->wsi;
    lws_callback_on_writable (wsi);
    lws_set_timeout (wsi, PENDING_TIMEOUT_USER_OK,
                     self->config->close_grace_s > 0? self->config->close_grace_s: 1);
}
