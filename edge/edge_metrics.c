/*  =========================================================================
    edge_metrics - counters of the web edge, written as Prometheus text
    =========================================================================
*/
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "edge_metrics.h"

static const double s_ack_bounds [EDGE_ACK_BUCKETS] = {
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000
};

static const char *s_disconnect_names [EDGE_DISC_COUNT] = {
    [EDGE_DISC_NETWORK] = "network",
    [EDGE_DISC_PEER] = "peer_close",
    [EDGE_DISC_TOO_SLOW] = "too_slow",
    [EDGE_DISC_TOO_BIG] = "too_big",
    [EDGE_DISC_AUTH_TIMEOUT] = "auth_timeout",
    [EDGE_DISC_SHUTDOWN] = "shutdown",
    [EDGE_DISC_IDLE] = "idle",
};

//  --------------------------------------------------------------------------
//  A new zeroed set of counters

edge_metrics_t *
edge_metrics_new (void)
{
    edge_metrics_t *self = (edge_metrics_t *) calloc (1, sizeof (edge_metrics_t));
    assert (self);
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy the counters; nulls the reference

void
edge_metrics_destroy (edge_metrics_t **self_p)
{
    assert (self_p);
    free (*self_p);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Count a REST response

void
edge_metrics_rest (edge_metrics_t *self, int status)
{
    if (status >= 100 && status < 600)
        self->rest_status [status]++;
}

//  Adds one observation to a histogram
static void
s_observe (edge_histogram_t *histogram, double ms)
{
    for (int i = 0; i < EDGE_ACK_BUCKETS; i++)
        if (ms <= s_ack_bounds [i]) {
            histogram->buckets [i]++;
            break;
        }
    histogram->sum_ms += ms;
    histogram->count++;
}

//  --------------------------------------------------------------------------
//  Record one REST send ack latency

void
edge_metrics_ack (edge_metrics_t *self, double ms)
{
    s_observe (&self->ack, ms);
}

//  --------------------------------------------------------------------------
//  Record the fan-out latency of one message event, in ms

void
edge_metrics_fanout (edge_metrics_t *self, double ms)
{
    s_observe (&self->fanout, ms < 0? 0: ms);
}

//  --------------------------------------------------------------------------
//  Keep the deepest queue seen

void
edge_metrics_queue_depth (edge_metrics_t *self, uint64_t depth)
{
    if (depth > self->queue_depth_max)
        self->queue_depth_max = depth;
}

//  Appends printf-formatted text
static void
s_printf (json_out_t *out, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

static void
s_printf (json_out_t *out, const char *format, ...)
{
    char line [256];
    va_list args;
    va_start (args, format);
    int len = vsnprintf (line, sizeof (line), format, args);
    va_end (args);
    if (len > 0)
        json_out_append (out, line, (size_t) len < sizeof (line)? (size_t) len: sizeof (line) - 1);
}

//  Writes one metric with HELP and TYPE lines
static void
s_metric (json_out_t *out, const char *name, const char *type, const char *help,
          unsigned long long value)
{
    s_printf (out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, value);
}

//  Writes the disconnect counters, one per reason
static void
s_render_disconnects (edge_metrics_t *self, json_out_t *out)
{
    s_printf (out, "# HELP chorus_edge_disconnects_total WebSocket connections ended, by reason\n"
                   "# TYPE chorus_edge_disconnects_total counter\n");
    for (int i = 0; i < EDGE_DISC_COUNT; i++)
        s_printf (out, "chorus_edge_disconnects_total{reason=\"%s\"} %llu\n",
                  s_disconnect_names [i], (unsigned long long) self->disconnects [i]);
}

//  Writes the REST counters, one per status seen
static void
s_render_rest (edge_metrics_t *self, json_out_t *out)
{
    s_printf (out, "# HELP chorus_edge_rest_requests_total REST responses, by HTTP status\n"
                   "# TYPE chorus_edge_rest_requests_total counter\n");
    for (int status = 100; status < 600; status++)
        if (self->rest_status [status])
            s_printf (out, "chorus_edge_rest_requests_total{status=\"%d\"} %llu\n",
                      status, (unsigned long long) self->rest_status [status]);
}

//  Writes one latency histogram
static void
s_render_histogram (edge_histogram_t *histogram, json_out_t *out,
                    const char *name, const char *help)
{
    s_printf (out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    unsigned long long cumulative = 0;
    for (int i = 0; i < EDGE_ACK_BUCKETS; i++) {
        cumulative += histogram->buckets [i];
        s_printf (out, "%s_bucket{le=\"%g\"} %llu\n", name, s_ack_bounds [i], cumulative);
    }
    s_printf (out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long) histogram->count);
    s_printf (out, "%s_sum %.3f\n%s_count %llu\n", name, histogram->sum_ms,
              name, (unsigned long long) histogram->count);
}

//  --------------------------------------------------------------------------
//  Append the Prometheus text exposition

void
edge_metrics_render (edge_metrics_t *self, json_out_t *out)
{
    s_metric (out, "chorus_edge_connections", "gauge",
              "Open WebSocket connections", self->connections);
    s_metric (out, "chorus_edge_connections_total", "counter",
              "WebSocket connections accepted", self->connections_total);
    s_metric (out, "chorus_edge_refused_per_ip_total", "counter",
              "TCP connections refused by the per-IP cap", self->refused_per_ip);
    s_metric (out, "chorus_edge_refused_upgrades_total", "counter",
              "WebSocket upgrades refused (origin, handshake)", self->refused_upgrade);
    s_metric (out, "chorus_edge_messages_in_total", "counter",
              "WebSocket messages received from clients", self->messages_in);
    s_metric (out, "chorus_edge_messages_out_total", "counter",
              "WebSocket messages written to clients", self->messages_out);
    s_metric (out, "chorus_edge_ws_writes_total", "counter",
              "Writes of WebSocket data, each carrying one or more messages", self->ws_writes);
    s_metric (out, "chorus_edge_pings_total", "counter",
              "WebSocket pings sent to connections silent for the ping interval", self->pings);
    s_metric (out, "chorus_edge_invalid_messages_total", "counter",
              "Client messages answered invalid_message by the edge", self->invalid_in);
    s_metric (out, "chorus_edge_not_authed_total", "counter",
              "Requests before auth answered not_authed by the edge", self->not_authed);
    s_metric (out, "chorus_edge_replies_total", "counter",
              "Replies received from the broker", self->replies);
    s_metric (out, "chorus_edge_events_total", "counter",
              "Events received from the broker", self->events);
    s_metric (out, "chorus_edge_event_deliveries_total", "counter",
              "Event copies queued to connections (fan-out)", self->deliveries);
    s_metric (out, "chorus_edge_unknown_sessions_total", "counter",
              "Broker messages for sessions that are gone", self->unknown_sid);
    s_metric (out, "chorus_edge_broker_send_failures_total", "counter",
              "Requests the broker socket did not take", self->broker_send_failed);
    s_metric (out, "chorus_edge_broker_malformed_total", "counter",
              "Broker messages the edge could not read", self->broker_malformed);
    s_metric (out, "chorus_edge_queue_depth_max", "gauge",
              "Deepest per-connection outgoing queue seen, in messages", self->queue_depth_max);
    s_render_disconnects (self, out);
    s_render_rest (self, out);
    s_render_histogram (&self->ack, out, "chorus_edge_rest_send_ack_ms",
                        "REST send: request to durable ack, in ms");
    s_render_histogram (&self->fanout, out, "chorus_edge_fanout_latency_ms",
                        "message saved (its ts) to queued for its WebSocket recipients, in ms");
}
