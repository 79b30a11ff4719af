/*  =========================================================================
    membership_forward - authorize message operations, pass them on

    send, edit, delete, history, read, sync and channel_list are answered by
    persistence. This stage checks that the user may do them and passes the
    request on unchanged with a new ctx: the session's tn, uid and adm plus
    what persistence needs (ch, ctype, recips, mentions, channels). The
    affinity of the membership grows with each send, read and history.
    =========================================================================
*/
#include "membership.h"
#include "membership_ops.h"

//  Characters a handle may hold
#define HANDLE_CHARS "abcdefghijklmnopqrstuvwxyz0123456789._-"
//  Different people one message may mention, at most
#define MENTIONS_MAX 64

//  --------------------------------------------------------------------------
//  Helpers

//  Starts the ctx for persistence with the session's fields
static void
s_ctx_begin (mb_server_t *server, mb_request_t *request)
{
    proto_writer_reset (server->ctx);
    proto_writer_map_begin (server->ctx);
    proto_writer_kv_u64 (server->ctx, "tn", request->tn);
    proto_writer_kv_u64 (server->ctx, "uid", request->uid);
    proto_writer_kv_bool (server->ctx, "adm", request->adm);
}

//  Adds ch and ctype to the ctx
static void
s_ctx_channel (mb_server_t *server, mb_channel_t *channel)
{
    proto_writer_kv_u64 (server->ctx, "ch", channel->id);
    proto_writer_kv_str (server->ctx, "ctype", mb_ctype_name (channel->type));
}

//  Closes the ctx and passes the request on. Persistence decodes the ctx
//  within the limits of proto.h and drops one it cannot, so a ctx over them
//  (a channel of thousands of members, a user in hundreds of channels) is
//  answered internal here rather than never. Answers stage_unavailable if
//  persistence cannot take the request now. 0, or -1 if not passed on.
static int
s_forward (mb_server_t *server, mb_request_t *request)
{
    proto_writer_map_end (server->ctx);
    const char *why = NULL;
    if (proto_validate_limits (proto_writer_data (server->ctx), proto_writer_size (server->ctx),
                               &proto_stage_limits, &why)) {
        zsys_error ("membership: ctx of %.*s for %" PRIu64 "/%" PRIu64 " is over the limits: %s",
                    (int) request->op_len, request->op, request->tn, request->uid, why);
        mb_reply_error (server, request, PROTO_ERR_INTERNAL, "too many members or channels");
        return -1;
    }
    if (stage_forward (server->persistence, request->route, server->ctx, request->req_frame)) {
        mb_reply_error (server, request, PROTO_ERR_STAGE_UNAVAILABLE, NULL);
        return -1;
    }
    return 0;
}

//  Adds weight to a membership's affinity; saved by the next flush
static void
s_affinity_add (mb_server_t *server, mb_request_t *request, mb_member_t *member,
                double weight)
{
    mb_member_affinity_add (member, weight, request->now);
    mb_model_dirty_add (server->model, request->tenant, member);
}

//  The channel the request's ch names, if visible, with the user's
//  membership. Answers channel_not_found (NULL) or, if member_needed,
//  not_in_channel.
static mb_channel_t *
s_channel_or_error (mb_server_t *server, mb_request_t *request, mb_member_t **member,
                    bool member_needed)
{
    uint64_t ch = 0;
    proto_msg_u64 (request->req, "ch", &ch);
    mb_channel_t *channel = mb_request_channel (request, ch, member);
    if (!channel)
        mb_reply_error (server, request, PROTO_ERR_CHANNEL_NOT_FOUND, NULL);
    else
    if (member_needed && !*member) {
        mb_reply_error (server, request, PROTO_ERR_NOT_IN_CHANNEL, NULL);
        channel = NULL;
    }
    return channel;
}

//  Writes the ids of the channel's members whose @handle is in the body:
//  the handle followed by the end or a character a handle cannot hold.
//  Each id once, in order of first mention.
static void
s_write_mentions (proto_writer_t *writer, mb_tenant_t *tenant, mb_channel_t *channel,
                  const char *body, size_t len)
{
    mb_user_t *seen [MENTIONS_MAX];
    size_t seen_count = 0;
    proto_writer_array_begin (writer);
    for (size_t at = 0; at < len && seen_count < sizeof (seen) / sizeof (seen [0]); at++) {
        if (body [at] != '@')
            continue;
        size_t end = at + 1;
        while (end < len && body [end] && strchr (HANDLE_CHARS, body [end]))
            end++;
        size_t handle_len = end - at - 1;
        if (handle_len == 0 || handle_len > MEMBERSHIP_HANDLE_MAX)
            continue;
        char handle [MEMBERSHIP_HANDLE_MAX + 1];
        memcpy (handle, body + at + 1, handle_len);
        handle [handle_len] = 0;
        mb_user_t *user = mb_tenant_user_named (tenant, handle);
        bool repeated = false;
        for (size_t i = 0; i < seen_count && !repeated; i++)
            repeated = seen [i] == user;
        if (user && !repeated && mb_channel_member (channel, user->id)) {
            seen [seen_count++] = user;
            proto_writer_u64 (writer, user->id);
        }
        at = end - 1;
    }
    proto_writer_array_end (writer);
}

//  Adds recips and the mentions of the request's body (none if no body)
static void
s_ctx_audience (mb_server_t *server, mb_request_t *request, mb_channel_t *channel)
{
    const char *body = "";
    size_t len = 0;
    proto_msg_str (request->req, "body", &body, &len);
    proto_writer_str (server->ctx, "recips");
    mb_write_recips (server->ctx, channel, 0);
    proto_writer_str (server->ctx, "mentions");
    s_write_mentions (server->ctx, request->tenant, channel, body, len);
}

//  True if the request's ref may be quoted in channel: the channel is a dm
//  or group, and the quoted channel is one the user may see
static bool
s_ref_allowed (mb_request_t *request, mb_channel_t *channel)
{
    const msgpack_object *ref = proto_msg_get (request->req, "ref");
    uint64_t ref_ch = 0;
    mb_member_t *ref_member;
    if (!ref)
        return true;
    return (channel->type == MB_DM || channel->type == MB_GROUP)
        && proto_map_u64 (ref, "ch", &ref_ch)
        && mb_request_channel (request, ref_ch, &ref_member) != NULL;
}

//  --------------------------------------------------------------------------
//  send: members only; a ref only in a dm or group, of a visible channel

void
mb_forward_send (mb_server_t *server, mb_request_t *request)
{
    mb_member_t *member;
    mb_channel_t *channel = s_channel_or_error (server, request, &member, true);
    if (!channel)
        return;
    if (!s_ref_allowed (request, channel)) {
        mb_reply_error (server, request, PROTO_ERR_MESSAGE_NOT_FOUND,
                        "no such message to quote here");
        return;
    }
    s_ctx_begin (server, request);
    s_ctx_channel (server, channel);
    s_ctx_audience (server, request, channel);
    if (s_forward (server, request) == 0)
        s_affinity_add (server, request, member, MB_WEIGHT_SEND);
}

//  --------------------------------------------------------------------------
//  edit: members only; mentions of the new body

void
mb_forward_edit (mb_server_t *server, mb_request_t *request)
{
    mb_member_t *member;
    mb_channel_t *channel = s_channel_or_error (server, request, &member, true);
    if (!channel)
        return;
    s_ctx_begin (server, request);
    s_ctx_channel (server, channel);
    s_ctx_audience (server, request, channel);
    s_forward (server, request);
}

//  --------------------------------------------------------------------------
//  delete: members only; no mentions

void
mb_forward_delete (mb_server_t *server, mb_request_t *request)
{
    mb_member_t *member;
    mb_channel_t *channel = s_channel_or_error (server, request, &member, true);
    if (!channel)
        return;
    s_ctx_begin (server, request);
    s_ctx_channel (server, channel);
    proto_writer_str (server->ctx, "recips");
    mb_write_recips (server->ctx, channel, 0);
    proto_writer_str (server->ctx, "mentions");
    proto_writer_array_begin (server->ctx);
    proto_writer_array_end (server->ctx);
    s_forward (server, request);
}

//  --------------------------------------------------------------------------
//  history: members, or anyone in the tenant for a public channel

void
mb_forward_history (mb_server_t *server, mb_request_t *request)
{
    mb_member_t *member;
    mb_channel_t *channel = s_channel_or_error (server, request, &member, false);
    if (!channel)
        return;
    s_ctx_begin (server, request);
    s_ctx_channel (server, channel);
    if (s_forward (server, request) == 0 && member)
        s_affinity_add (server, request, member, MB_WEIGHT_HISTORY);
}

//  --------------------------------------------------------------------------
//  read: members only

void
mb_forward_read (mb_server_t *server, mb_request_t *request)
{
    mb_member_t *member;
    mb_channel_t *channel = s_channel_or_error (server, request, &member, true);
    if (!channel)
        return;
    s_ctx_begin (server, request);
    s_ctx_channel (server, channel);
    if (s_forward (server, request) == 0)
        s_affinity_add (server, request, member, MB_WEIGHT_READ);
}

//  --------------------------------------------------------------------------
//  sync: channels = [[ch, ctype]...] of every membership

void
mb_forward_sync (mb_server_t *server, mb_request_t *request)
{
    mb_vec_t *memberships = &request->user->memberships;
    s_ctx_begin (server, request);
    proto_writer_str (server->ctx, "channels");
    proto_writer_array_begin (server->ctx);
    for (size_t i = 0; i < memberships->size; i++) {
        mb_channel_t *channel = ((mb_member_t *) memberships->items [i])->channel;
        proto_writer_array_begin (server->ctx);
        proto_writer_u64 (server->ctx, channel->id);
        proto_writer_str (server->ctx, mb_ctype_name (channel->type));
        proto_writer_array_end (server->ctx);
    }
    proto_writer_array_end (server->ctx);
    s_forward (server, request);
}

//  --------------------------------------------------------------------------
//  channel_list: channels = the channel objects of every membership, by
//  current affinity (highest first), ties: most recently joined first

//  A membership and its current affinity, for sorting
typedef struct {
    mb_member_t *member;            //  the membership
    double affinity;                //  its affinity now
} s_ranked_t;

//  qsort order of channel_list: affinity, then joined, then id, descending
static int
s_compare_ranked (const void *a, const void *b)
{
    const s_ranked_t *x = (const s_ranked_t *) a, *y = (const s_ranked_t *) b;
    if (x->affinity != y->affinity)
        return x->affinity > y->affinity? -1: 1;
    if (x->member->joined_ts != y->member->joined_ts)
        return x->member->joined_ts > y->member->joined_ts? -1: 1;
    return x->member->channel->id > y->member->channel->id? -1: 1;
}

void
mb_forward_channel_list (mb_server_t *server, mb_request_t *request)
{
    mb_vec_t *memberships = &request->user->memberships;
    s_ranked_t *ranked = (s_ranked_t *) calloc (memberships->size + 1, sizeof (s_ranked_t));
    assert (ranked);
    for (size_t i = 0; i < memberships->size; i++) {
        ranked [i].member = (mb_member_t *) memberships->items [i];
        ranked [i].affinity = mb_member_affinity (ranked [i].member, request->now);
    }
    qsort (ranked, memberships->size, sizeof (s_ranked_t), s_compare_ranked);
    s_ctx_begin (server, request);
    proto_writer_str (server->ctx, "channels");
    proto_writer_array_begin (server->ctx);
    for (size_t i = 0; i < memberships->size; i++)
        mb_write_channel (server->ctx, ranked [i].member, request->now);
    proto_writer_array_end (server->ctx);
    free (ranked);
    s_forward (server, request);
}
