/*  =========================================================================
    edge_metrics - counters of the web edge, written as Prometheus text

    Plain counters, touched only by the edge's service thread, and read
    by GET /metrics. The names are documented in edge/README.md.
    =========================================================================
*/
#ifndef CHORUS_EDGE_METRICS_H_INCLUDED
#define CHORUS_EDGE_METRICS_H_INCLUDED

#include <stdint.h>
#include "json.h"

//  Why a WebSocket connection ended
typedef enum {
    EDGE_DISC_NETWORK = 0,      //  the TCP connection failed, or lws failed it
    EDGE_DISC_PEER,             //  the client closed it
    EDGE_DISC_TOO_SLOW,         //  its outgoing queue overflowed (4008)
    EDGE_DISC_TOO_BIG,          //  it sent a message over the cap (1009)
    EDGE_DISC_AUTH_TIMEOUT,     //  it did not authenticate in time (4001)
    EDGE_DISC_SHUTDOWN,         //  the edge is stopping (1001)
    EDGE_DISC_IDLE,             //  it received nothing for idle_timeout_s (no close frame)
    EDGE_DISC_COUNT
} edge_disconnect_t;

//  Upper bounds of the latency histograms' buckets, in ms
#define EDGE_ACK_BUCKETS 12

//  A latency histogram in ms
typedef struct {
    uint64_t buckets [EDGE_ACK_BUCKETS];    //  observations per bucket
    double sum_ms;                          //  sum of the observations
    uint64_t count;                         //  observations
} edge_histogram_t;

typedef struct {
    uint64_t connections;           //  open WebSocket connections (gauge)
    uint64_t connections_total;     //  WebSocket connections accepted
    uint64_t refused_per_ip;        //  TCP connections refused by the per-IP cap
    uint64_t refused_upgrade;       //  WebSocket upgrades refused (origin, handshake)
    uint64_t messages_in;           //  WebSocket messages received
    uint64_t messages_out;          //  WebSocket messages written
    uint64_t ws_writes;             //  writes of WebSocket data (one or more messages each)
    uint64_t pings;                 //  WebSocket pings sent to silent connections
    uint64_t invalid_in;            //  messages answered invalid_message by the edge
    uint64_t not_authed;            //  requests answered not_authed by the edge
    uint64_t replies;               //  replies received from the broker
    uint64_t events;                //  events received from the broker
    uint64_t deliveries;            //  event copies queued to connections
    uint64_t unknown_sid;           //  deliveries for sessions no longer here
    uint64_t broker_send_failed;    //  requests the broker socket did not take
    uint64_t broker_malformed;      //  broker messages we could not read
    uint64_t disconnects [EDGE_DISC_COUNT];     //  connections ended, by reason
    uint64_t queue_depth_max;       //  deepest outgoing queue seen (gauge)
    uint64_t rest_status [600];     //  REST responses by HTTP status
    edge_histogram_t ack;           //  REST send: request to durable ack
    edge_histogram_t fanout;        //  message saved (its ts) to queued here
} edge_metrics_t;

//  A new zeroed set of counters
edge_metrics_t *
    edge_metrics_new (void);
void
    edge_metrics_destroy (edge_metrics_t **self_p);
//  Count a REST response with this HTTP status
void
    edge_metrics_rest (edge_metrics_t *self, int status);
//  Record the latency of one REST send ack, in ms
void
    edge_metrics_ack (edge_metrics_t *self, double ms);
//  Record the fan-out latency of one message event (saved to queued), in ms
void
    edge_metrics_fanout (edge_metrics_t *self, double ms);
//  Note a queue depth; keeps the maximum
void
    edge_metrics_queue_depth (edge_metrics_t *self, uint64_t depth);
//  Append the Prometheus text exposition of every counter to out
void
    edge_metrics_render (edge_metrics_t *self, json_out_t *out);

#endif
