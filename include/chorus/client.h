/*  =========================================================================
    chorus/client.h - the client library for Chorus integrators

    One chorus_client_t is one DEALER socket to a Chorus API endpoint, used
    by one thread. It speaks docs/protocol.md: one msgpack map per request,
    three-frame replies and events.

    Requests are built in the client's own writer, so the library can stamp
    each one with a fresh "rid" and keep the exact bytes for a resend:

        proto_writer_t *w = chorus_client_begin (client, "history");
        proto_writer_kv_u64 (w, "ch", 7);           //  add the op's fields
        proto_writer_kv_u64 (w, "limit", 20);
        proto_msg_t *reply = chorus_client_call (client);
        if (!reply)                                  //  no answer after retries
            ...
        else
        if (chorus_client_error (reply))             //  "channel_not_found", ...
            ...
        proto_msg_destroy (&reply);

    Reliability is Lazy Pirate (ZeroMQ Guide ch. 4): each attempt waits
    `timeout` msecs; then the socket is closed and reopened, every session
    that had authenticated is authenticated again (a new socket is a new
    session to the server), and the same bytes are sent again. After
    `retries` resends the request is abandoned and the call returns NULL.
    This is safe for `send` because the server deduplicates on
    client_msg_id; the library never invents one. A reply `not_authed` to a
    session that had a token (the server forgets idle sessions) is answered
    by authenticating again and resending once.

    Events (maps with "ev") arriving while the client waits are queued, at
    most `max_events` (default 10,000); beyond that the oldest are dropped
    and counted, and the caller catches up with sync or history.

    Everything read from the socket goes through proto_msg_decode; frames
    that do not decode, and replies to requests not in flight, are dropped.
    =========================================================================
*/
#ifndef CHORUS_CLIENT_H_INCLUDED
#define CHORUS_CLIENT_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "chorus/proto.h"

#define CHORUS_CLIENT_ENDPOINT      "tcp://127.0.0.1:5555"  //  default API endpoint
#define CHORUS_CLIENT_TIMEOUT       5000    //  msecs per attempt
#define CHORUS_CLIENT_RETRIES       3       //  resends after the first attempt
#define CHORUS_CLIENT_MAX_EVENTS    10000   //  events queued before dropping the oldest
#define CHORUS_CLIENT_MAX_SESSIONS  16      //  sessions multiplexed on one socket
#define CHORUS_CLIENT_MSG_ID_SIZE   37      //  chorus_client_new_msg_id output, with NUL

typedef struct _chorus_client_t chorus_client_t;

//  ---------------------------------------------------------------------
//  Life cycle and settings

//  Create a client with a DEALER socket connected to endpoint (ZMQ_IMMEDIATE,
//  so nothing queues for a server that is not there). NULL if the endpoint
//  is not valid. Connecting is asynchronous: an absent server shows up as a
//  timeout on the first request.
chorus_client_t *
    chorus_client_new (const char *endpoint);
//  Destroy the client: waits up to one timeout for the replies to requests
//  still in flight (so they reach the server), then closes with linger 0.
//  Nulls the reference; safe to call twice.
void
    chorus_client_destroy (chorus_client_t **self_p);
//  Milliseconds to wait for a reply, per attempt (default 5000)
void
    chorus_client_set_timeout (chorus_client_t *self, int msecs);
//  Resends after the first attempt before giving up (default 3)
void
    chorus_client_set_retries (chorus_client_t *self, int retries);
//  Events kept in the queue, at most (default 10,000; 0 drops all events)
void
    chorus_client_set_max_events (chorus_client_t *self, size_t max_events);
//  Log what the client drops and retries (zsys_debug/zsys_warning)
void
    chorus_client_set_verbose (chorus_client_t *self, bool verbose);
//  Speak CURVE to a server started with --curve-dir: server_cert is its
//  public certificate (DIR/server.cert), client_cert our secret certificate
//  file (made with zcert; its public half must be in DIR/clients).
//  Reconnects. Returns 0, or -1 if a certificate cannot be loaded.
int
    chorus_client_set_curve (chorus_client_t *self, const char *server_cert,
                             const char *client_cert);

//  ---------------------------------------------------------------------
//  Sessions: a socket carries session 0 unless told otherwise. A peer that
//  wants several users on one socket selects a session id before each of
//  its requests (docs/protocol.md §1: the sid frame).

//  Select the session the next requests are for. Returns 0, or -1 when
//  CHORUS_CLIENT_MAX_SESSIONS sessions are in use already.
int
    chorus_client_use_session (chorus_client_t *self, uint64_t sid);
//  Token the selected session authenticated with, or NULL
const char *
    chorus_client_token (chorus_client_t *self);
//  Remember (or with NULL, forget) the token of the selected session, so
//  the library can authenticate it again on a new socket. _login and _auth
//  do this; call it when authenticating through _begin/_call yourself.
void
    chorus_client_set_token (chorus_client_t *self, const char *token);

//  ---------------------------------------------------------------------
//  Generic requests

//  Start a request map for op in the client's writer, with "op" and a new
//  "rid" already written. Add the op's fields with proto_writer_kv_* and
//  friends (the map stays open), then finish with _call or _post. A second
//  _begin discards an unfinished request.
proto_writer_t *
    chorus_client_begin (chorus_client_t *self, const char *op);
//  Finish the request begun with _begin, send it and wait for its reply.
//  Returns the decoded reply (ok or error; the caller destroys it), or NULL
//  when no reply came after the retries.
proto_msg_t *
    chorus_client_call (chorus_client_t *self);
//  Send a complete request map built elsewhere, without "rid" (one is
//  added; a rid already there is replaced). NULL with errno EINVAL if the
//  bytes are not a valid map with an "op" string; else as _call.
proto_msg_t *
    chorus_client_request (chorus_client_t *self, proto_writer_t *request);

//  Pipelining: finish the request begun with _begin and queue it without
//  waiting. Returns its rid (never 0). Any number may be in flight; the
//  retry rules are those of _call.
uint64_t
    chorus_client_post (chorus_client_t *self);
//  Wait for the next reply to a posted request, in arrival order. Returns
//  the reply and sets *rid_p to its rid; returns NULL with *rid_p set to
//  the rid of a request abandoned after the retries; returns NULL with
//  *rid_p = 0 when nothing is in flight.
proto_msg_t *
    chorus_client_collect (chorus_client_t *self, uint64_t *rid_p);
//  Posted requests not collected yet
size_t
    chorus_client_pending (chorus_client_t *self);

//  ---------------------------------------------------------------------
//  Events

//  Next queued event, else wait up to msecs (-1: forever) for one. Returns
//  the event map (caller destroys) or NULL on timeout or interrupt.
proto_msg_t *
    chorus_client_next_event (chorus_client_t *self, int msecs);
//  Events dropped because the queue was full, since the client was created
uint64_t
    chorus_client_dropped_events (chorus_client_t *self);

//  ---------------------------------------------------------------------
//  Operations (chorus_client_ops.c). Each returns the reply, ok or error,
//  which the caller destroys, or NULL when the server did not answer.

//  Log in with a password; on success the session remembers the token
proto_msg_t *
    chorus_client_login (chorus_client_t *self, const char *tenant,
                         const char *handle, const char *password);
//  Authenticate with a token (user, bot or admin); remembered on success
proto_msg_t *
    chorus_client_auth (chorus_client_t *self, const char *token);
//  Ping: keeps the session alive (the server forgets idle sessions)
proto_msg_t *
    chorus_client_ping (chorus_client_t *self);
//  Send a message. The caller chooses client_msg_id (1 to 64 bytes; see
//  chorus_client_new_msg_id) and keeps it for a retry after NULL, so the
//  message is stored once. Sets *seq_p on success if seq_p is not NULL.
proto_msg_t *
    chorus_client_send (chorus_client_t *self, uint64_t ch,
                        const char *client_msg_id, const char *body, uint64_t *seq_p);
//  One page of history. anchor is NULL (the newest page), "before",
//  "after" or "around", with seq; limit 0 takes the server's default.
proto_msg_t *
    chorus_client_history (chorus_client_t *self, uint64_t ch,
                           const char *anchor, uint64_t seq, unsigned limit);
//  Messages after checkpoints: count pairs chs [i] -> seqs [i] (count may
//  be 0: the server's delivered positions); limit 0 is the default.
proto_msg_t *
    chorus_client_sync (chorus_client_t *self, const uint64_t *chs,
                        const uint64_t *seqs, size_t count, unsigned limit);
//  Move the read position of a channel forward to seq
proto_msg_t *
    chorus_client_read (chorus_client_t *self, uint64_t ch, uint64_t seq);

//  Error code of a reply ("channel_not_found", ...), or NULL if it is ok.
//  A NULL reply gives "timeout"; a reply with an error code this library
//  does not know gives "unknown". Static strings.
const char *
    chorus_client_error (proto_msg_t *reply);
//  Write a random UUID (version 4, lower-case hex) to out, for client_msg_id
void
    chorus_client_new_msg_id (char out [CHORUS_CLIENT_MSG_ID_SIZE]);

//  ---------------------------------------------------------------------
//  Text (chorus_json.c)

//  Render a decoded object as one line of JSON (binary as a string of hex
//  digits, ext types as null). Returns a fresh string the caller frees, or
//  NULL if out of memory.
char *
    chorus_json_encode (const msgpack_object *obj);

//  ---------------------------------------------------------------------
//  The demo workspace (chorus_seed.c)

//  Create the demo workspace (tenant "demo", users alice, bob, carol and
//  dave with password "chorus-demo", channels, DMs and a long history)
//  through the API at endpoint, using the admin token. Idempotent: if the
//  tenant exists, does nothing. Says which with zsys_info. Returns 0 if the
//  workspace is there (made now or before), -1 on failure (zsys_error).
int
    chorus_seed_demo (const char *endpoint, const char *admin_token);

#endif
