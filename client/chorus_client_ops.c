/*  =========================================================================
    chorus_client_ops - the typed operations of chorus_client

    Thin wrappers over chorus_client_begin/_call for the operations an
    integrator uses most, plus reply helpers. Each returns the reply as it
    came (ok or error) or NULL when the server did not answer.
    =========================================================================
*/
#include <czmq.h>
#include <sodium.h>
#include "chorus/client.h"

//  Bytes in the longest token the library remembers
#define OPS_TOKEN_MAX 512

//  --------------------------------------------------------------------------
//  Error code of a reply, NULL if ok, "timeout" for no reply

const char *
chorus_client_error (proto_msg_t *reply)
{
    if (!reply)
        return "timeout";
    bool ok = false;
    if (proto_msg_bool (reply, "ok", &ok) && ok)
        return NULL;
    const msgpack_object *error = proto_msg_get (reply, "error");
    for (int code = PROTO_OK + 1; code < PROTO_ERR_COUNT; code++)
        if (proto_obj_streq (error, proto_error_name ((proto_error_t) code)))
            return proto_error_name ((proto_error_t) code);
    return "unknown";
}

//  --------------------------------------------------------------------------
//  Log in with a password; remember the token on success

proto_msg_t *
chorus_client_login (chorus_client_t *self, const char *tenant,
                     const char *handle, const char *password)
{
    proto_writer_t *writer = chorus_client_begin (self, "login");
    proto_writer_kv_str (writer, "tenant", tenant);
    proto_writer_kv_str (writer, "handle", handle);
    proto_writer_kv_str (writer, "password", password);
    proto_msg_t *reply = chorus_client_call (self);
    char token [OPS_TOKEN_MAX];
    if (reply && !chorus_client_error (reply)
    &&  proto_map_strcpy (proto_msg_root (reply), "token", token, sizeof (token)))
        chorus_client_set_token (self, token);
    return reply;
}

//  --------------------------------------------------------------------------
//  Authenticate with a token; remember it on success

proto_msg_t *
chorus_client_auth (chorus_client_t *self, const char *token)
{
    proto_writer_t *writer = chorus_client_begin (self, "auth");
    proto_writer_kv_str (writer, "token", token);
    proto_msg_t *reply = chorus_client_call (self);
    if (reply && !chorus_client_error (reply))
        chorus_client_set_token (self, token);
    return reply;
}

//  --------------------------------------------------------------------------
//  Ping the server

proto_msg_t *
chorus_client_ping (chorus_client_t *self)
{
    chorus_client_begin (self, "ping");
    return chorus_client_call (self);
}

//  --------------------------------------------------------------------------
//  Send a message with the caller's client_msg_id; sets *seq_p on success

proto_msg_t *
chorus_client_send (chorus_client_t *self, uint64_t ch,
                    const char *client_msg_id, const char *body, uint64_t *seq_p)
{
    proto_writer_t *writer = chorus_client_begin (self, "send");
    proto_writer_kv_u64 (writer, "ch", ch);
    proto_writer_kv_str (writer, "client_msg_id", client_msg_id);
    proto_writer_kv_str (writer, "body", body);
    proto_msg_t *reply = chorus_client_call (self);
    if (seq_p && reply && !chorus_client_error (reply)
    &&  !proto_msg_u64 (reply, "seq", seq_p))
        *seq_p = 0;
    return reply;
}

//  --------------------------------------------------------------------------
//  One page of history, anchored before/after/around seq or the newest

proto_msg_t *
chorus_client_history (chorus_client_t *self, uint64_t ch,
                       const char *anchor, uint64_t seq, unsigned limit)
{
    proto_writer_t *writer = chorus_client_begin (self, "history");
    proto_writer_kv_u64 (writer, "ch", ch);
    if (anchor)
        proto_writer_kv_u64 (writer, anchor, seq);
    if (limit)
        proto_writer_kv_u64 (writer, "limit", limit);
    return chorus_client_call (self);
}

//  --------------------------------------------------------------------------
//  Messages after the given checkpoints

proto_msg_t *
chorus_client_sync (chorus_client_t *self, const uint64_t *chs,
                    const uint64_t *seqs, size_t count, unsigned limit)
{
    proto_writer_t *writer = chorus_client_begin (self, "sync");
    if (count) {
        proto_writer_str (writer, "channels");
        proto_writer_map_begin (writer);
        for (size_t i = 0; i < count; i++) {
            char key [24];
            snprintf (key, sizeof (key), "%" PRIu64, chs [i]);
            proto_writer_kv_u64 (writer, key, seqs [i]);
        }
        proto_writer_map_end (writer);
    }
    if (limit)
        proto_writer_kv_u64 (writer, "limit", limit);
    return chorus_client_call (self);
}

//  --------------------------------------------------------------------------
//  Move the read position of a channel forward

proto_msg_t *
chorus_client_read (chorus_client_t *self, uint64_t ch, uint64_t seq)
{
    proto_writer_t *writer = chorus_client_begin (self, "read");
    proto_writer_kv_u64 (writer, "ch", ch);
    proto_writer_kv_u64 (writer, "seq", seq);
    return chorus_client_call (self);
}

//  --------------------------------------------------------------------------
//  A random version 4 UUID in lower-case hex, for client_msg_id

void
chorus_client_new_msg_id (char out [CHORUS_CLIENT_MSG_ID_SIZE])
{
    int rc = sodium_init ();    //  0, or 1 if done before
    assert (rc >= 0);
    (void) rc;
    uint8_t bytes [16];
    randombytes_buf (bytes, sizeof (bytes));
    bytes [6] = (bytes [6] & 0x0f) | 0x40;      //  version 4
    bytes [8] = (bytes [8] & 0x3f) | 0x80;      //  RFC 4122 variant
    char *pos = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *pos++ = '-';
        pos += sprintf (pos, "%02x", bytes [i]);
    }
    *pos = 0;
}
