/*  =========================================================================
    edge - the web edge: WebSocket, REST, static files and metrics over one
    HTTP port, speaking to the broker as one multiplexing DEALER peer

    Each WebSocket connection and each REST request is its own broker
    session, named by a session id (sid) on the edge's one DEALER. JSON
    from clients becomes the protocol's msgpack maps; replies and events
    come back as msgpack and are written to JSON once per message (twice
    at most for an event: with and without "notify": true), then queued
    by reference to every connection they are for. libwebsockets and the
    DEALER are served by the same thread, the actor's.

    Start it as a CZMQ actor with a const edge_config_t *:

        edge_config_t config;
        edge_config_defaults (&config);
        config.api_endpoint = "tcp://127.0.0.1:5555";
        zactor_t *edge = zactor_new (edge_actor, &config);
        zstr_send (edge, "STATUS");         //  "OK", or "FAILED" if the
        char *status = zstr_recv (edge);    //  port could not be bound
        zstr_send (edge, "PORT");           //  the port it listens on, as
        char *port = zstr_recv (edge);      //  text (useful with port 0)
        ...
        zactor_destroy (&edge);             //  $TERM: closes every socket

    The actor signals 0 when it is serving, or 1 if it could not start
    (zactor_new swallows that signal; ask STATUS). The configuration must
    stay valid while the actor runs. See edge/README.md for every option,
    endpoint, close code and limit.
    =========================================================================
*/
#ifndef CHORUS_EDGE_H_INCLUDED
#define CHORUS_EDGE_H_INCLUDED

#include <czmq.h>

//  WebSocket subprotocol and path
#define EDGE_SUBPROTOCOL        "chorus.v1"
#define EDGE_WS_PATH            "/ws"

//  Close codes the edge sends, besides 1001 (stopping), 1007 (invalid
//  UTF-8, sent by libwebsockets) and 1009 (message over the cap)
#define EDGE_CLOSE_AUTH_TIMEOUT 4001    //  no successful auth in time
#define EDGE_CLOSE_TOO_SLOW     4008    //  outgoing queue over its cap

//  The edge's options; edge_config_defaults fills in every one
typedef struct {
    char http_host [256];           //  address to listen on ("0.0.0.0" or "": all)
    int http_port;                  //  TCP port; 0 picks a free one (see PORT)
    const char *api_endpoint;       //  broker ROUTER the edge connects its DEALER to
    const char *web_root;           //  directory served at /
    const char *allowed_origins;    //  comma list of Origin values; NULL: same origin
    size_t max_message_bytes;       //  largest WebSocket message or REST body
    size_t queue_max_msgs;          //  outgoing queue cap per connection, messages
    size_t queue_max_bytes;         //  outgoing queue cap per connection, bytes
    int max_conns_per_ip;           //  open TCP connections per client address
    int ping_interval_s;            //  WebSocket ping after this long with nothing received
    int idle_timeout_s;             //  hang up after this long with nothing received (0: never)
    int handshake_timeout_s;        //  each HTTP/handshake round trip must finish in
    int auth_timeout_s;             //  close a socket still unauthenticated after this
    int keepalive_s;                //  ping the broker this often, keeping the edge's sessions known (0: never)
    int rest_timeout_ms;            //  a REST request gives up (504) after this
    int close_grace_s;              //  time allowed to send a close frame, then hang up
    const char *tls_cert;           //  PEM certificate file, or NULL for plain HTTP
    const char *tls_key;            //  PEM private key file
    const char *curve_cert;         //  CURVE: the deployment's secret cert file, or NULL
    bool verbose;                   //  log connections and requests
} edge_config_t;

//  Fill in the defaults: 127.0.0.1:8080, tcp://127.0.0.1:5555, edge/web,
//  messages up to PROTO_MAX_FRAME (192 KiB, the protocol's request size),
//  1,000 messages or 1 MiB queued, 1,000 connections per
//  address, ping 30 s, hang up 60 s, handshake 5 s, auth 30 s, keepalive
//  30 s, REST 10 s, close grace 5 s, no TLS
void
    edge_config_defaults (edge_config_t *self);

//  Set host and port from "HOST:PORT", "[V6ADDR]:PORT", ":PORT" or "PORT".
//  Returns 0, or -1 if the text is not one of those.
int
    edge_config_set_listen (edge_config_t *self, const char *text);

//  The edge actor; args is a const edge_config_t *
void
    edge_actor (zsock_t *pipe, void *args);

#endif
