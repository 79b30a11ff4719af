/*  =========================================================================
    bench_rpc - a blocking, pipelining ZeroMQ DEALER client, for setup,
    fill and history. Requests carry a sid frame (docs/protocol.md §1) so
    one socket holds many sessions.
    =========================================================================
*/
#include <stdlib.h>
#include <string.h>
#include <zmq.h>
#include "chorus/proto.h"
#include "bench.h"

struct _rpc_t {
    void *context;
    void *socket;
    proto_writer_t *writer;
    uint64_t next_rid;
    uint64_t events;
};

rpc_t *
rpc_new (const char *endpoint)
{
    rpc_t *self = (rpc_t *) calloc (1, sizeof (rpc_t));
    self->context = zmq_ctx_new ();
    self->socket = zmq_socket (self->context, ZMQ_DEALER);
    int linger = 0, hwm = 0;
    zmq_setsockopt (self->socket, ZMQ_LINGER, &linger, sizeof (linger));
    zmq_setsockopt (self->socket, ZMQ_SNDHWM, &hwm, sizeof (hwm));
    zmq_setsockopt (self->socket, ZMQ_RCVHWM, &hwm, sizeof (hwm));
    if (zmq_connect (self->socket, endpoint)) {
        bench_log ("cannot connect %s: %s", endpoint, zmq_strerror (zmq_errno ()));
        rpc_destroy (&self);
        return NULL;
    }
    self->writer = proto_writer_new ();
    self->next_rid = 1;
    return self;
}

void
rpc_destroy (rpc_t **self_p)
{
    rpc_t *self = *self_p;
    if (self) {
        if (self->socket)
            zmq_close (self->socket);
        if (self->context)
            zmq_ctx_term (self->context);
        if (self->writer)
            proto_writer_destroy (&self->writer);
        free (self);
        *self_p = NULL;
    }
}

proto_writer_t *
rpc_begin (rpc_t *self, const char *op)
{
    proto_writer_reset (self->writer);
    proto_writer_map_begin (self->writer);
    proto_writer_kv_str (self->writer, "op", op);
    proto_writer_kv_u64 (self->writer, "rid", self->next_rid);
    return self->writer;
}

uint64_t
rpc_post (rpc_t *self, uint64_t sid)
{
    proto_writer_map_end (self->writer);
    uint8_t sid_frame [9];
    size_t sid_size;
    if (sid < 128) {
        sid_frame [0] = (uint8_t) sid;
        sid_size = 1;
    }
    else {
        sid_frame [0] = 0xcf;
        for (int i = 0; i < 8; i++)
            sid_frame [1 + i] = (uint8_t) (sid >> (56 - 8 * i));
        sid_size = 9;
    }
    zmq_send (self->socket, proto_writer_data (self->writer),
              proto_writer_size (self->writer), sid? ZMQ_SNDMORE: 0);
    if (sid)
        zmq_send (self->socket, sid_frame, sid_size, 0);
    return self->next_rid++;
}

void *
rpc_collect (rpc_t *self, int msecs, uint64_t *rid)
{
    uint64_t deadline = bench_now_ns () + (uint64_t) msecs * 1000000ull;
    while (true) {
        int64_t left = (int64_t) (deadline - bench_now_ns ()) / 1000000;
        if (left < 0)
            return NULL;
        zmq_pollitem_t item = { self->socket, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, (long) left) <= 0)
            continue;
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        if (zmq_msg_recv (&frame, self->socket, 0) < 0) {
            zmq_msg_close (&frame);
            continue;
        }
        proto_msg_t *msg = proto_msg_decode_stage (zmq_msg_data (&frame), zmq_msg_size (&frame), NULL);
        int more = zmq_msg_more (&frame);
        zmq_msg_close (&frame);
        while (more) {                  //  sids and notify frames
            zmq_msg_init (&frame);
            zmq_msg_recv (&frame, self->socket, 0);
            more = zmq_msg_more (&frame);
            zmq_msg_close (&frame);
        }
        if (!msg)
            continue;
        uint64_t re;
        if (proto_msg_u64 (msg, "re", &re)) {
            *rid = re;
            return msg;
        }
        self->events++;
        proto_msg_destroy (&msg);
    }
}

void *
rpc_call (rpc_t *self, uint64_t sid, int msecs)
{
    uint64_t want = rpc_post (self, sid);
    uint64_t deadline = bench_now_ns () + (uint64_t) msecs * 1000000ull;
    while (bench_now_ns () < deadline) {
        uint64_t rid = 0;
        proto_msg_t *reply = (proto_msg_t *) rpc_collect (self, msecs, &rid);
        if (!reply)
            return NULL;
        if (rid == want)
            return reply;
        proto_msg_destroy (&reply);
    }
    return NULL;
}

const char *
rpc_error (void *reply)
{
    if (!reply)
        return "timeout";
    bool ok = false;
    if (proto_msg_bool ((proto_msg_t *) reply, "ok", &ok) && ok)
        return NULL;
    static char error [64];
    if (!proto_map_strcpy (proto_msg_root ((proto_msg_t *) reply), "error", error, sizeof (error)))
        strcpy (error, "unknown");
    return error;
}

uint64_t
rpc_events (rpc_t *self)
{
    return self->events;
}
