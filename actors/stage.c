/*  =========================================================================
    stage - sockets and envelopes shared by every Chorus stage
    =========================================================================
*/
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include "stage.h"
#include "security.h"
#include "stage_packet.h"

#define STAGE_HWM 100000

//  --------------------------------------------------------------------------
//  Decode a frame that reached the inbox at endpoint (see stage.h)

proto_msg_t *
stage_decode (const char *endpoint, const proto_limits_t *limits,
              const stage_frame_t *frame, const char **why)
{
    const void *data = frame->data;
    size_t size = frame->size;
    if (strncmp (endpoint, "inproc://", 9) == 0)
        return proto_msg_decode_trusted (data, size, why);
    return limits == &proto_client_limits
         ? proto_msg_decode (data, size, why)
         : proto_msg_decode_stage (data, size, why);
}

//  --------------------------------------------------------------------------
//  A PULL inbox bound to endpoint

zsock_t *
stage_inbox_new (const stage_config_t *config, const char *endpoint)
{
    zsock_t *inbox = zsock_new (ZMQ_PULL);
    if (!inbox)
        return NULL;
    zsock_set_rcvhwm (inbox, STAGE_HWM);
    if (config->curve_dir && strncmp (endpoint, "tcp://", 6) == 0
    &&  security_apply_server (inbox, config->curve_dir)) {
        zsock_destroy (&inbox);
        return NULL;
    }
    if (zsock_bind (inbox, "%s", endpoint) < 0) {
        zsys_error ("stage: cannot bind %s: %s", endpoint, zmq_strerror (zmq_errno ()));
        zsock_destroy (&inbox);
    }
    return inbox;
}

//  --------------------------------------------------------------------------
//  A PUSH connected to endpoint; sends fail at once instead of blocking

zsock_t *
stage_outbox_new (const stage_config_t *config, const char *endpoint, bool immediate)
{
    zsock_t *outbox = zsock_new (ZMQ_PUSH);
    if (!outbox)
        return NULL;
    if (config->curve_dir && strncmp (endpoint, "tcp://", 6) == 0
    &&  security_apply_client (outbox, config->curve_dir)) {
        zsock_destroy (&outbox);
        return NULL;
    }
    zsock_set_sndhwm (outbox, STAGE_HWM);
    zsock_set_sndtimeo (outbox, 0);
    zsock_set_immediate (outbox, immediate? 1: 0);
    zsock_set_reconnect_ivl (outbox, 20);
    zsock_set_reconnect_ivl_max (outbox, 1000);
    zsock_set_linger (outbox, 1000);
    if (zsock_connect (outbox, "%s", endpoint) < 0) {
        zsys_error ("stage: cannot connect %s", endpoint);
        zsock_destroy (&outbox);
    }
    return outbox;
}

//  --------------------------------------------------------------------------
//  Bundles (see stage.h): the sockets of this thread with a bundle open

typedef struct {
    void *handle;               //  the socket
    size_t packets;             //  packets in its bundle so far
} s_open_bundle_t;

static _Thread_local struct {
    int depth;                  //  begin calls not yet ended
    s_open_bundle_t open [STAGE_BUNDLE_SOCKETS];
    size_t open_count;          //  entries in open
} s_bundles;

void
stage_bundle_begin (void)
{
    s_bundles.depth++;
}

//  Ends the bundle open on a socket with the empty frame. It cannot fail
//  for want of room: ZeroMQ took the message whole with its first frame.
static void
s_bundle_close (s_open_bundle_t *open)
{
    zmq_send (open->handle, NULL, 0, ZMQ_DONTWAIT);
    *open = s_bundles.open [--s_bundles.open_count];
}

void
stage_bundle_flush (void)
{
    while (s_bundles.open_count)
        s_bundle_close (&s_bundles.open [0]);
}

void
stage_bundle_end (void)
{
    assert (s_bundles.depth > 0);
    if (--s_bundles.depth == 0)
        stage_bundle_flush ();
}

//  The open bundle of a socket, or NULL
static s_open_bundle_t *
s_bundle_find (void *handle)
{
    for (size_t index = 0; index < s_bundles.open_count; index++)
        if (s_bundles.open [index].handle == handle)
            return &s_bundles.open [index];
    return NULL;
}

//  --------------------------------------------------------------------------
//  Send frames to a stage's inbox as one packet without blocking; inside
//  a bundle scope, as the next frame of the socket's bundle

int
stage_send (zsock_t *sock, const stage_frame_t *frames, size_t count)
{
    size_t size = stage_packet_size (frames, count);
    if (size == 0) {
        errno = EMSGSIZE;
        return -1;
    }
    zmq_msg_t packet;
    if (zmq_msg_init_size (&packet, size))
        return -1;
    stage_packet_write ((uint8_t *) zmq_msg_data (&packet), frames, count);
    void *handle = zsock_resolve (sock);
    s_open_bundle_t *open = s_bundles.depth? s_bundle_find (handle): NULL;
    bool bundled = open
                || (s_bundles.depth && s_bundles.open_count < STAGE_BUNDLE_SOCKETS);
    if (zmq_msg_send (&packet, handle, ZMQ_DONTWAIT | (bundled? ZMQ_SNDMORE: 0)) < 0) {
        zmq_msg_close (&packet);
        return -1;
    }
    if (bundled) {
        if (!open) {
            open = &s_bundles.open [s_bundles.open_count++];
            *open = (s_open_bundle_t) { handle, 0 };
        }
        if (++open->packets == STAGE_BUNDLE_PACKETS)
            s_bundle_close (open);
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Send frames as one multipart message without blocking

int
stage_send_parts (zsock_t *sock, const stage_frame_t *frames, size_t count)
{
    assert (count > 0);
    void *handle = zsock_resolve (sock);
    int more = count > 1? ZMQ_SNDMORE: 0;
    if (zmq_send (handle, frames [0].data, frames [0].size, ZMQ_DONTWAIT | more) < 0)
        return -1;
    //  Once the first frame is taken, a later one fails only if the peer
    //  went away meanwhile; libzmq then drops the message, and is still
    //  handed the rest of it so that the next message starts clean
    int rc = 0;
    for (size_t i = 1; i < count; i++) {
        more = i + 1 < count? ZMQ_SNDMORE: 0;
        if (zmq_send (handle, frames [i].data, frames [i].size, ZMQ_DONTWAIT | more) < 0)
            rc = -1;
    }
    return rc;
}

//  --------------------------------------------------------------------------
//  Send a reply to the broker

int
stage_send_reply (zsock_t *broker, const stage_frame_t *route, proto_writer_t *reply,
                  proto_writer_t *ctl)
{
    stage_frame_t frames [] = {
        stage_frame_str (STAGE_REPLY), *route,
        stage_frame_writer (reply), stage_frame_writer (ctl)
    };
    return stage_send (broker, frames, 4);
}

//  --------------------------------------------------------------------------
//  Send an error reply for request rid

int
stage_send_error (zsock_t *broker, const stage_frame_t *route, uint64_t rid,
                  proto_error_t code, const char *message)
{
    proto_writer_t *writer = proto_writer_new ();
    proto_write_error (writer, rid, code, message, 0);
    int rc = stage_send_reply (broker, route, writer, NULL);
    proto_writer_destroy (&writer);
    return rc;
}

//  --------------------------------------------------------------------------
//  Pass a request on to the next stage

int
stage_forward (zsock_t *next, const stage_frame_t *route, proto_writer_t *ctx,
               const stage_frame_t *req)
{
    stage_frame_t frames [] = { *route, stage_frame_writer (ctx), *req };
    return stage_send (next, frames, 3);
}

//  --------------------------------------------------------------------------
//  Pass a request on unchanged

int
stage_pass (zsock_t *next, const stage_frame_t *route, const stage_frame_t *ctx,
            const stage_frame_t *req)
{
    stage_frame_t frames [] = { *route, *ctx, *req };
    return stage_send (next, frames, 3);
}

//  --------------------------------------------------------------------------
//  Send an event to fan-out

int
stage_send_event (zsock_t *fanout, proto_writer_t *meta, proto_writer_t *event)
{
    stage_frame_t frames [] = {
        stage_frame_str (STAGE_EVENT), stage_frame_writer (meta), stage_frame_writer (event)
    };
    return stage_send (fanout, frames, 3);
}

//  --------------------------------------------------------------------------
//  Start an actor and check that it started; NULL if it did not

zactor_t *
stage_actor_new (zactor_fn *fn, void *args)
{
    zactor_t *actor = zactor_new (fn, args);
    if (!actor)
        return NULL;
    zstr_send (actor, "STATUS");
    char *status = zstr_recv (actor);
    bool ok = status && streq (status, "OK");
    free (status);
    if (!ok)
        zactor_destroy (&actor);
    return actor;
}

//  --------------------------------------------------------------------------
//  For an actor that could not start: answer FAILED until $TERM

void
stage_actor_failed (zsock_t *pipe)
{
    zsock_signal (pipe, 0);
    while (true) {
        char *command = zstr_recv (pipe);
        bool stop = !command || streq (command, "$TERM");
        if (command && streq (command, "STATUS"))
            zstr_send (pipe, "FAILED");
        free (command);
        if (stop)
            break;
    }
}

//  --------------------------------------------------------------------------
//  Handles a command on an actor's pipe; true when the actor must stop

bool
stage_actor_command (zsock_t *pipe)
{
    char *command = zstr_recv (pipe);
    bool stop = !command || streq (command, "$TERM");
    if (command && streq (command, "STATUS"))
        zstr_send (pipe, "OK");
    else
    if (!stop)
        zsys_error ("stage: unknown actor command %s", command);
    free (command);
    return stop;
}

//  --------------------------------------------------------------------------
//  The loop of an actor with one inbox

void
stage_serve (zsock_t *pipe, zsock_t *inbox, bool (*handle) (void *self), void *self)
{
    zpoller_t *poller = zpoller_new (pipe, inbox, NULL);
    zsock_signal (pipe, 0);
    bool terminated = false;
    while (!terminated) {
        zsock_t *which = (zsock_t *) zpoller_wait (poller, -1);
        if (which == pipe)
            terminated = stage_actor_command (pipe);
        else
        if (which == inbox) {
            int handled = 0;
            stage_bundle_begin ();
            while (handled < STAGE_DRAIN_MAX && handle (self))
                handled++;
            stage_bundle_end ();
        }
        else
            terminated = true;          //  interrupted
    }
    zpoller_destroy (&poller);
}

//  --------------------------------------------------------------------------
//  Kills the process at a named point when CHORUS_KILL_AT asks for it

void
stage_kill_point (const char *point)
{
    static const char *setting = NULL;
    static bool read = false;
    if (!read) {
        setting = getenv ("CHORUS_KILL_AT");
        read = true;
    }
    if (!setting)
        return;
    size_t len = strlen (point);
    if (strncmp (setting, point, len) != 0 || setting [len] != ':')
        return;
    long odds = atol (setting + len + 1);
    if (odds <= 1 || randof (odds) == 0) {
        zsys_warning ("stage: killed at %s (CHORUS_KILL_AT)", point);
        raise (SIGKILL);
    }
}

//  --------------------------------------------------------------------------
//  Write bytes as lower-case hex

void
stage_hex (const void *data, size_t size, char *out)
{
    static const char digits [] = "0123456789abcdef";
    const byte *bytes = (const byte *) data;
    for (size_t i = 0; i < size; i++) {
        out [i * 2] = digits [bytes [i] >> 4];
        out [i * 2 + 1] = digits [bytes [i] & 15];
    }
    out [size * 2] = 0;
}

//  --------------------------------------------------------------------------
//  Milliseconds since the epoch

uint64_t
stage_now_ms (void)
{
    struct timeval tv;
    gettimeofday (&tv, NULL);
    return (uint64_t) tv.tv_sec * 1000 + (uint64_t) tv.tv_usec / 1000;
}

//  --------------------------------------------------------------------------
//  Name the calling thread (what top -H and perf show)

void
stage_thread_name (const char *name)
{
    char short_name [16];
    snprintf (short_name, sizeof (short_name), "%s", name);
    pthread_setname_np (pthread_self (), short_name);
}
