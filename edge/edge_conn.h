/*  =========================================================================
    edge_conn - one WebSocket connection: its broker session, the message
    it is receiving, and the frames waiting to go out

    The outgoing queue holds links to shared edge_bufs, capped in messages
    and in bytes: a client that cannot keep up is cut off (close 4008)
    instead of making the edge hold an unbounded backlog. The receive
    buffer gathers the fragments of one message, capped in bytes. The
    class knows nothing of libwebsockets, so it can be tested alone.
    =========================================================================
*/
#ifndef CHORUS_EDGE_CONN_H_INCLUDED
#define CHORUS_EDGE_CONN_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "edge_buf.h"
#include "edge_wheel.h"

typedef struct {
    //  Session state, read and written by edge_ws.c
    uint64_t sid;               //  broker session id of this connection
    void *wsi;                  //  its libwebsockets connection
    bool authed;                //  auth or login succeeded, and no logout since
    bool auth_pending;          //  an auth or login is waiting for its reply
    uint64_t auth_rid;          //  the rid of that request
    bool logout_pending;        //  a logout is waiting for its reply
    uint64_t logout_rid;        //  the rid of that request
    int close_code;             //  close code we asked for, or 0
    const char *close_reason;   //  its reason text (static)
    int disconnect;             //  why it closed, an edge_disconnect_t
    uint64_t notify_epoch;      //  epoch of the last event it must notify for
    int64_t last_sent;          //  when it last sent to the broker (monotonic ms)
    int64_t unauthed_since;     //  when it last became unauthenticated (ms)
    int64_t last_rx;            //  when it last received a frame or a pong (ms)
    edge_wheel_link_t timer;    //  its place in the edge's timing wheel
    bool pinged;                //  pinged since last_rx
    bool ping_owed;             //  a ping waits for the socket to be writeable
    bool hung_up;               //  idle, or a write refused: lws drops it, no close frame
    bool peer_closed;           //  the client sent a close frame: nothing more goes out
    bool ready;                 //  on the edge's list of queues to write after a drain
    bool rx_since_write;        //  a frame came in since the last writeable callback:
                                //  lws may owe a pong, which must go out first

    //  The message being received
    uint8_t *rx;                //  bytes received so far
    size_t rx_size;             //  how many
    size_t rx_capacity;         //  bytes allocated in rx
    bool rx_active;             //  a message has started and not ended
    bool rx_binary;             //  that message is binary
    bool rx_discarding;         //  that message is over the cap: dropping it
    size_t rx_discarded;        //  bytes of it dropped so far

    //  The outgoing queue: a ring of links, use the functions below
    edge_buf_t **queue;         //  ring of queued frames
    size_t queue_head;          //  index of the oldest
    size_t queue_count;         //  frames queued
    size_t queue_capacity;      //  slots allocated in the ring
    size_t queue_bytes;         //  bytes of text queued
    size_t max_msgs;            //  cap on queue_count
    size_t max_bytes;           //  cap on queue_bytes
} edge_conn_t;

//  A new connection state for session sid with the given queue caps
edge_conn_t *
    edge_conn_new (uint64_t sid, size_t max_msgs, size_t max_bytes);
//  Destroy it, dropping every queued link; nulls the reference
void
    edge_conn_destroy (edge_conn_t **self_p);

//  Queue a link to buf. Returns 0, or -1 if that would pass a cap (then
//  nothing is queued: the caller cuts the connection off). A single frame
//  larger than max_bytes is accepted into an empty queue.
int
    edge_conn_push (edge_conn_t *self, edge_buf_t *buf);
//  The index-th queued frame from the oldest (borrowed), or NULL
edge_buf_t *
    edge_conn_peek (edge_conn_t *self, size_t index);
//  Drop the oldest queued frame
void
    edge_conn_pop (edge_conn_t *self);
//  Drop every queued frame
void
    edge_conn_clear (edge_conn_t *self);

//  Add received bytes to the message being gathered. Returns 0, or -1 if
//  the message would pass max bytes (nothing is added).
int
    edge_conn_rx_append (edge_conn_t *self, const void *data, size_t size, size_t max);
//  Forget the message being gathered (keeps the buffer for the next one,
//  unless it grew large)
void
    edge_conn_rx_reset (edge_conn_t *self);

#endif
