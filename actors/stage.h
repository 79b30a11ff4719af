/*  =========================================================================
    stage - what every Chorus stage shares: configuration, sockets, envelopes

    See docs/architecture.md for the frames between stages. Stages send
    without blocking: a full or absent next stage is reported to the caller,
    who answers the client stage_unavailable instead of hanging.
    =========================================================================
*/
#ifndef CHORUS_STAGE_H_INCLUDED
#define CHORUS_STAGE_H_INCLUDED

#include <czmq.h>
#include "chorus/proto.h"
#include "stage_msg.h"

//  Configuration of a chorusd process; every stage reads what it needs
typedef struct {
    const char *data_dir;               //  RocksDB directories live under it
    const char *front_endpoint;         //  broker's ROUTER for peers (comma list)
    const char *broker_endpoint;        //  broker's inbox for replies, deliveries
    const char *ingest_endpoint;        //  ingest's inbox
    const char *membership_endpoint;    //  membership's inbox
    const char *persistence_endpoint;   //  persistence's inbox
    const char *fanout_endpoint;        //  fan-out's inbox
    int session_idle_s;                 //  broker forgets silent sessions after this
    int rate_per_s;                     //  ingest: sustained requests/s per user
    int rate_burst;                     //  ingest: burst size per user
    int batch_max;                      //  persistence: sends per group commit
    const char *curve_dir;              //  CURVE certificates for tcp links, or NULL
    bool verbose;                       //  log every message
} stage_config_t;

//  Messages a stage takes from one socket before it polls again
#define STAGE_DRAIN_MAX 256
//  Packets a bundle holds at most, and sockets with a bundle open at once
#define STAGE_BUNDLE_PACKETS 64
#define STAGE_BUNDLE_SOCKETS 4

//  Frame kinds on the broker's and fan-out's inboxes
#define STAGE_REPLY     "R"
#define STAGE_DELIVERY  "D"
#define STAGE_EVENT     "EV"
#define STAGE_UP        "UP"
#define STAGE_DOWN      "DN"
#define STAGE_RESET     "RESET"     //  broker -> fan-out: forget every session
#define STAGE_RESYNC    "RESYNC"    //  fan-out -> broker: send UP for every session

//  Flags of a recipient in event meta
#define STAGE_RECIP_MUTED          1
#define STAGE_RECIP_NOTIFY_ALWAYS  2

//  Recipients in request ctx and event meta ("recips") are one msgpack bin
//  of records of STAGE_RECIP_SIZE bytes: the uid, 8 bytes little-endian,
//  then its flags, 1 byte. A stage copies the list as bytes and walks it
//  without decoding an object per recipient.
#define STAGE_RECIP_SIZE           9

//  Write one recipient record (spelled out byte by byte, which compilers
//  turn into one store on little-endian machines)
static inline void
stage_recip_put (uint8_t *record, uint64_t uid, uint64_t flags)
{
    record [0] = (uint8_t) uid;
    record [1] = (uint8_t) (uid >> 8);
    record [2] = (uint8_t) (uid >> 16);
    record [3] = (uint8_t) (uid >> 24);
    record [4] = (uint8_t) (uid >> 32);
    record [5] = (uint8_t) (uid >> 40);
    record [6] = (uint8_t) (uid >> 48);
    record [7] = (uint8_t) (uid >> 56);
    record [8] = (uint8_t) flags;
}

//  Read one recipient record
static inline void
stage_recip_get (const uint8_t *record, uint64_t *uid, uint64_t *flags)
{
    *uid = (uint64_t) record [0]       | (uint64_t) record [1] << 8
         | (uint64_t) record [2] << 16 | (uint64_t) record [3] << 24
         | (uint64_t) record [4] << 32 | (uint64_t) record [5] << 40
         | (uint64_t) record [6] << 48 | (uint64_t) record [7] << 56;
    *flags = record [8];
}

//  A PULL inbox bound to endpoint; NULL if it cannot bind. On tcp, with
//  config->curve_dir set, it only accepts CURVE peers zauth allows.
zsock_t *
    stage_inbox_new (const stage_config_t *config, const char *endpoint);
//  A PUSH connected to endpoint whose sends never block. With immediate
//  (requests), nothing is queued for a stage that is not connected, so the
//  caller answers stage_unavailable at once; without it (replies, events),
//  messages wait in the queue while the connection is (re)established.
zsock_t *
    stage_outbox_new (const stage_config_t *config, const char *endpoint, bool immediate);

//  Bytes, which the send copies
static inline stage_frame_t
stage_frame_mem (const void *data, size_t size)
{
    return (stage_frame_t) { data, size };
}

//  The bytes of a string, without its terminating NUL
static inline stage_frame_t
stage_frame_str (const char *string)
{
    return stage_frame_mem (string, strlen (string));
}

//  The bytes in writer, or an empty frame if writer is NULL
static inline stage_frame_t
stage_frame_writer (proto_writer_t *writer)
{
    return writer? stage_frame_mem (proto_writer_data (writer), proto_writer_size (writer))
                 : stage_frame_mem ("", 0);
}

//  Send count frames to a stage's inbox as one message (a packet) without
//  blocking. 0, or -1 if the socket cannot take it now (a full queue or no
//  peer: errno says which; EMSGSIZE: too many frames or bytes for a packet).
int
    stage_send (zsock_t *sock, const stage_frame_t *frames, size_t count);
//  Between stage_bundle_begin and stage_bundle_end (nested scopes count
//  as one), what stage_send sends to a socket goes as a bundle: one
//  ZeroMQ message whose frames are the packets, at most
//  STAGE_BUNDLE_PACKETS, then an empty frame. The receiving stage wakes
//  once for a bundle, not once a packet. Packets for more than
//  STAGE_BUNDLE_SOCKETS sockets at once go alone. Nothing in a bundle
//  leaves before the outermost scope ends: end it before waiting. Each
//  thread has its own scope.
void
    stage_bundle_begin (void);
void
    stage_bundle_end (void);
//  Send the bundles open now; the scope goes on
void
    stage_bundle_flush (void);

//  Send count frames as one multipart message (the front door, to peers
//  outside Chorus) without blocking; 0 or -1 as stage_send
int
    stage_send_parts (zsock_t *sock, const stage_frame_t *frames, size_t count);

//  Send a reply to the broker: ["R"][route][reply][ctl or empty]. Returns
//  0, or -1 if the broker cannot take it now.
int
    stage_send_reply (zsock_t *broker, const stage_frame_t *route, proto_writer_t *reply,
                      proto_writer_t *ctl);
//  Send an error reply for request rid
int
    stage_send_error (zsock_t *broker, const stage_frame_t *route, uint64_t rid,
                      proto_error_t code, const char *message);
//  Pass a request on: [route][ctx][req]. 0 or -1.
int
    stage_forward (zsock_t *next, const stage_frame_t *route, proto_writer_t *ctx,
                   const stage_frame_t *req);
//  Pass a request on unchanged: [route][ctx][req]. 0 or -1.
int
    stage_pass (zsock_t *next, const stage_frame_t *route, const stage_frame_t *ctx,
                const stage_frame_t *req);
//  Send an event to fan-out: ["EV"][meta][event]. 0 or -1.
int
    stage_send_event (zsock_t *fanout, proto_writer_t *meta, proto_writer_t *event);

//  Actor start contract: after zactor_new, the owner sends "STATUS" and
//  the actor answers "OK", or "FAILED" if it could not start (it then only
//  waits for $TERM). stage_actor_new does this handshake.
zactor_t *
    stage_actor_new (zactor_fn *fn, void *args);
//  For an actor that could not start: signal, answer FAILED until $TERM
void
    stage_actor_failed (zsock_t *pipe);
//  For an actor's pipe handler: handles STATUS and $TERM; returns true
//  when the actor must stop
bool
    stage_actor_command (zsock_t *pipe);

//  Decodes a frame that reached the inbox at endpoint. An inproc inbox
//  hears only stages of this process, whose frames were validated where
//  they entered (ingest) or built by our writers: no second scan. Any
//  other inbox validates within limits (client or stage limits).
proto_msg_t *
    stage_decode (const char *endpoint, const proto_limits_t *limits,
                  const stage_frame_t *frame, const char **why);

//  Crash testing: with CHORUS_KILL_AT=<point>:<odds> in the environment,
//  the process kills itself with SIGKILL at that named point with
//  probability 1/odds. Points: before_write, after_write, mid_acks,
//  read_position, channel_create. Does nothing otherwise.
void
    stage_kill_point (const char *point);

//  The loop of an actor with one inbox: signals the pipe that it started,
//  then calls handle (self) for each waiting message (up to STAGE_DRAIN_MAX
//  per wake) until $TERM. handle reads one message from the inbox and
//  returns false if none was waiting.
void
    stage_serve (zsock_t *pipe, zsock_t *inbox, bool (*handle) (void *self), void *self);

//  Name the calling thread, as top -H and perf show it (15 characters kept)
void
    stage_thread_name (const char *name);

//  Write size bytes of data as lower-case hex into out (2 * size + 1 bytes)
void
    stage_hex (const void *data, size_t size, char *out);

//  Milliseconds since the epoch (wall clock, for timestamps)
uint64_t
    stage_now_ms (void);

#endif
