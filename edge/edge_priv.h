/*  =========================================================================
    edge_priv - what the edge's libwebsockets files share: the actor state,
    the per-connection data lws allocates, and each file's entry points

    edge.c       the actor, the lws context, the broker DEALER, routing
    edge_ws.c    WebSocket connections (/ws)
    edge_http.c  HTTP: upgrade checks, static files, /metrics, responses
    edge_rest.c  REST under /api/v1/

    Everything here runs in the actor's thread, which owns every wsi and
    the DEALER. Only edge/ includes <libwebsockets.h>.
    =========================================================================
*/
#ifndef CHORUS_EDGE_PRIV_H_INCLUDED
#define CHORUS_EDGE_PRIV_H_INCLUDED

#include <libwebsockets.h>
#include <limits.h>
#include <arpa/inet.h>
#include "edge.h"
#include "edge_buf.h"
#include "edge_conn.h"
#include "edge_metrics.h"
#include "edge_wheel.h"
#include "json.h"

//  The rid of the edge's own keepalive pings; their replies are not
//  passed to the client (2^53 - 1: no client counts that high)
#define EDGE_KEEPALIVE_RID      ((uint64_t) 9007199254740991)
//  Frames gathered into one write, at most
#define EDGE_BATCH_BYTES        (64 * 1024)
//  Largest WebSocket frame header the edge writes
#define EDGE_FRAME_HEADER_MAX   10
//  Bytes of an HTTP response body written per writeable callback
#define EDGE_HTTP_CHUNK         (32 * 1024)
//  The timing wheel's tick: connection deadlines are this precise
#define EDGE_TICK_MS            1000

typedef struct _edge_rest_t edge_rest_t;

//  A list of session ids read from a broker message
typedef struct {
    uint64_t *items;            //  the ids
    size_t count;               //  how many
    size_t capacity;            //  entries allocated
} edge_sids_t;

//  Data lws allocates, zeroed, with each connection (HTTP or WebSocket)
typedef struct {
    edge_conn_t *conn;          //  WebSocket state, or NULL
    edge_rest_t *rest;          //  REST request waiting for the broker, or NULL
    int method;                 //  LWSHUMETH_* of the HTTP request
    char path [256];            //  its path, for REST requests with a body
    json_out_t body;            //  HTTP request body received so far
    bool body_started;          //  body was initialised
    bool body_too_big;          //  the body passed the cap
    json_out_t response;        //  HTTP response body to write
    size_t response_sent;       //  bytes of it written
    int status;                 //  its HTTP status
    const char *content_type;   //  its Content-Type
    char headers [256];         //  more header lines ("name: value\r\n")
    bool responding;            //  a response is ready or being written
    bool headers_sent;          //  its headers are written
    bool close_after;           //  close the connection after this response
    bool is_api;                //  a REST request (counted in the metrics)
} edge_pss_t;

//  The actor's state
typedef struct {
    zsock_t *pipe;              //  actor command pipe
    const edge_config_t *config;    //  options, owned by the caller
    struct lws_context *context;    //  libwebsockets context
    lws_sorted_usec_list_t keepalive;   //  timer of the ping that keeps this peer alive
    lws_sorted_usec_list_t tick;        //  timer of the wheel's tick
    int64_t tick_at;            //  when that timer is due (monotonic ms)
    edge_wheel_t *wheel;        //  every WebSocket's next deadline
    struct lws_vhost *vhost;    //  the one vhost
    zsock_t *dealer;            //  DEALER to the broker
    void *dealer_handle;        //  its libzmq socket
    zhashx_t *conns;            //  sid -> edge_conn_t: WebSocket sessions
    zhashx_t *rests;            //  sid -> edge_rest_t: REST sessions
    zhashx_t *ip_counts;        //  client address -> open TCP connections
    zhashx_t *wsi_ips;          //  wsi -> its client address (counted)
    char pending_ip [INET6_ADDRSTRLEN];    //  address let in, wsi not made yet
    zlistx_t *origins;          //  allowed Origin values
    uint64_t next_sid;          //  next session id to hand out
    uint64_t event_epoch;       //  counts events, for notify marks
    edge_sids_t sids;           //  scratch: sessions a broker message is for
    edge_sids_t notify;         //  scratch: sessions an event must notify
    edge_metrics_t *metrics;    //  counters for /metrics
    proto_writer_t *writer;     //  scratch msgpack writer
    uint8_t *batch;             //  scratch for several frames in one write
    edge_conn_t **ready;        //  connections a drain queued to, to write at its end
    size_t ready_count;         //  how many
    size_t ready_capacity;      //  slots allocated in ready
    bool draining;              //  routing the DEALER's messages now
    lws_retry_bo_t retry;       //  lws's ping and hang-up policy: none (the wheel's)
    char web_root [PATH_MAX];   //  static files directory, resolved
    int port;                   //  the port we listen on
    bool terminated;            //  $TERM received
    bool failed;                //  could not start
    bool backlog;               //  the DEALER may hold more messages
} edge_t;

//  ---------------------------------------------------------------------
//  edge.c: sessions and the broker

//  A new session id
uint64_t
    edge_new_sid (edge_t *self);
//  Send a request for session sid to the broker: [payload][sid]. Returns
//  0, or -1 if the DEALER cannot take it now (no broker, or queue full).
int
    edge_broker_send (edge_t *self, uint64_t sid, const void *data, size_t size);
//  Tell the broker a session is over ({op:"bye", rid:0}; no reply)
void
    edge_broker_bye (edge_t *self, uint64_t sid);
//  Render an error reply {re, ok:false, error, message, retriable} as JSON;
//  NULL if out of memory
edge_buf_t *
    edge_error_json (edge_t *self, uint64_t rid, proto_error_t code, const char *message);
//  True if the request has no Origin, or one on the allowed list
bool
    edge_origin_allowed (edge_t *self, struct lws *wsi);
//  Monotonic milliseconds
int64_t
    edge_now_ms (void);
//  A link was put in the wheel due in the tick starting at at_ms: make the
//  tick timer come by then
void
    edge_tick_arm (edge_t *self, int64_t at_ms);

//  ---------------------------------------------------------------------
//  edge_ws.c: WebSocket connections

//  What the edge does with one whole text message from a client
typedef enum {
    EDGE_WS_FORWARD,            //  pass the writer's msgpack on to the broker
    EDGE_WS_INVALID,            //  answer invalid_message (result says why)
    EDGE_WS_NOT_AUTHED          //  answer not_authed with the request's rid
} edge_ws_verdict_t;

//  Decide what to do with one whole text message: JSON to msgpack into
//  writer (reset first; max_size caps both forms), then the check of the
//  operations allowed before authentication. Pure: no lws, no I/O.
edge_ws_verdict_t
    edge_ws_decide (const void *data, size_t size, size_t max_size, bool authed,
                    proto_writer_t *writer, json_result_t *result);

int
    edge_ws_established (edge_t *self, struct lws *wsi, edge_pss_t *pss);
int
    edge_ws_receive (edge_t *self, struct lws *wsi, edge_pss_t *pss,
                     const void *data, size_t size);
int
    edge_ws_writeable (edge_t *self, struct lws *wsi, edge_pss_t *pss);
int
    edge_ws_peer_close (edge_t *self, struct lws *wsi, edge_pss_t *pss,
                        const void *data, size_t size);
void
    edge_ws_closed (edge_t *self, struct lws *wsi, edge_pss_t *pss);
int
    edge_ws_pong (edge_t *self, struct lws *wsi, edge_pss_t *pss);
//  The wheel's tick: close, hang up or ping the connections that are due
void
    edge_ws_expire (edge_t *self);
//  Write what the drain of the DEALER queued, without waiting for poll
void
    edge_ws_write_ready (edge_t *self);
//  Queue a frame to a connection; cuts it off (4008) if its queue is full
void
    edge_ws_queue (edge_t *self, edge_conn_t *conn, edge_buf_t *buf);
//  A reply for a connection: notes auth and logout, hides keepalive
//  replies, queues the rest
void
    edge_ws_reply (edge_t *self, edge_conn_t *conn, edge_buf_t *buf,
                   const json_root_t *root);
//  Ask a connection to close with code and reason (static text)
void
    edge_ws_close (edge_t *self, edge_conn_t *conn, int code, const char *reason,
                   edge_disconnect_t why);

//  ---------------------------------------------------------------------
//  edge_http.c: HTTP

int
    edge_http_confirm_upgrade (edge_t *self, struct lws *wsi, const char *upgrade);
int
    edge_http_request (edge_t *self, struct lws *wsi, edge_pss_t *pss, const char *uri);
int
    edge_http_body (edge_t *self, struct lws *wsi, edge_pss_t *pss,
                    const void *data, size_t size);
int
    edge_http_body_done (edge_t *self, struct lws *wsi, edge_pss_t *pss);
int
    edge_http_writeable (edge_t *self, struct lws *wsi, edge_pss_t *pss);
//  The HTTP connection (or its protocol binding) is going away
void
    edge_http_closed (edge_t *self, struct lws *wsi, edge_pss_t *pss);
//  Start a response: takes body (may be NULL for none); headers are extra
//  header lines ("name: value\r\n") or NULL. Asks for a writeable callback.
void
    edge_http_respond (edge_t *self, struct lws *wsi, edge_pss_t *pss, int status,
                       const char *content_type, json_out_t *body, const char *headers);
//  Respond with a JSON error body {ok:false, error, message}
void
    edge_http_respond_error (edge_t *self, struct lws *wsi, edge_pss_t *pss, int status,
                             const char *error, const char *message, const char *headers);

//  ---------------------------------------------------------------------
//  edge_rest.c: REST under /api/v1/

//  Handle a request; body is the request body (NULL for none)
void
    edge_rest_request (edge_t *self, struct lws *wsi, edge_pss_t *pss,
                       const char *path, json_out_t *body);
//  A broker reply for a REST session
void
    edge_rest_reply (edge_t *self, edge_rest_t *rest, const void *data, size_t size);
//  The REST request timed out
void
    edge_rest_timeout (edge_t *self, struct lws *wsi, edge_pss_t *pss);
//  The connection closed: end the session, forget the request
void
    edge_rest_abandon (edge_t *self, edge_pss_t *pss);
//  Destroy a REST request (for the sessions table)
void
    edge_rest_destroy (edge_rest_t **self_p);

#endif
