/*  =========================================================================
    stage - sockets and envelopes shared by every Chorus stage
    =========================================================================
*/
#include <signal.h>
#include <sys/time.h>
#include "stage.h"
#include "security.h"

#define STAGE_HWM 100000

//  --------------------------------------------------------------------------
//  Decode a frame that reached the inbox at endpoint (see stage.h)

proto_msg_t *
stage_decode (const char *endpoint, const proto_limits_t *limits, zframe_t *frame,
              const char **why)
{
    if (strncmp (endpoint, "inproc://", 9) == 0)
        return proto_msg_decode_trusted (zframe_data (frame), zframe_size (frame), why);
    return limits == &proto_client_limits
         ? proto_msg_decode (zframe_data (frame), zframe_size (frame), why)
         : proto_msg_decode_stage (zframe_data (frame), zframe_size (frame), why);
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

static zframe_t *
s_frame_of (proto_writer_t *writer)
{
    if (!writer)
        return zframe_new_empty ();
    return zframe_new (proto_writer_data (writer), proto_writer_size (writer));
}

//  Sends msg without blocking; destroys it in any case
static int
s_send (zsock_t *sock, zmsg_t **msg_p)
{
    int rc = zmsg_send (msg_p, sock);
    if (rc)
        zmsg_destroy (msg_p);
    return rc;
}

//  --------------------------------------------------------------------------
//  Send a reply to the broker

int
stage_send_reply (zsock_t *broker, zframe_t *route, proto_writer_t *reply,
                  proto_writer_t *ctl)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, STAGE_REPLY);
    zmsg_append (msg, &(zframe_t *) { zframe_dup (route) });
    zmsg_append (msg, &(zframe_t *) { s_frame_of (reply) });
    zmsg_append (msg, &(zframe_t *) { s_frame_of (ctl) });
    return s_send (broker, &msg);
}

//  --------------------------------------------------------------------------
//  Send an error reply for request rid

int
stage_send_error (zsock_t *broker, zframe_t *route, uint64_t rid,
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
stage_forward (zsock_t *next, zframe_t *route, proto_writer_t *ctx, zframe_t *req)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_append (msg, &(zframe_t *) { zframe_dup (route) });
    zmsg_append (msg, &(zframe_t *) { s_frame_of (ctx) });
    zmsg_append (msg, &(zframe_t *) { zframe_dup (req) });
    return s_send (next, &msg);
}

//  --------------------------------------------------------------------------
//  Pass a request on unchanged

int
stage_pass (zsock_t *next, zframe_t *route, zframe_t *ctx, zframe_t *req)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_append (msg, &(zframe_t *) { zframe_dup (route) });
    zmsg_append (msg, &(zframe_t *) { zframe_dup (ctx) });
    zmsg_append (msg, &(zframe_t *) { zframe_dup (req) });
    return s_send (next, &msg);
}

//  --------------------------------------------------------------------------
//  Send an event to fan-out

int
stage_send_event (zsock_t *fanout, proto_writer_t *meta, proto_writer_t *event)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, STAGE_EVENT);
    zmsg_append (msg, &(zframe_t *) { s_frame_of (meta) });
    zmsg_append (msg, &(zframe_t *) { s_frame_of (event) });
    return s_send (fanout, &msg);
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
stage_serve (zsock_t *pipe, zsock_t *inbox, void (*handle) (void *self), void *self)
{
    zpoller_t *poller = zpoller_new (pipe, inbox, NULL);
    zsock_signal (pipe, 0);
    bool terminated = false;
    while (!terminated) {
        zsock_t *which = (zsock_t *) zpoller_wait (poller, -1);
        if (which == pipe)
            terminated = stage_actor_command (pipe);
        else
        if (which == inbox)
            for (int i = 0; i < STAGE_DRAIN_MAX && (zsock_events (inbox) & ZMQ_POLLIN); i++)
                handle (self);
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
//  Milliseconds since the epoch

uint64_t
stage_now_ms (void)
{
    struct timeval tv;
    gettimeofday (&tv, NULL);
    return (uint64_t) tv.tv_sec * 1000 + (uint64_t) tv.tv_usec / 1000;
}
