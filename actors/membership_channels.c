/*  =========================================================================
    membership_channels - users, channels and memberships

    The user and channel operations that the membership stage answers by
    itself. A channel the user may not see (private, dm or group without
    membership, or not in the user's tenant) answers channel_not_found,
    exactly as one that does not exist. Every change is one synced batch,
    written before memory changes and before the reply leaves; events go
    to fan-out after the reply.
    =========================================================================
*/
#include "membership.h"
#include "membership_ops.h"
#include "membership_store.h"

//  --------------------------------------------------------------------------
//  Helpers

//  The request's ch field (ingest checked it is there and positive)
static uint64_t
s_request_ch (mb_request_t *request)
{
    uint64_t ch = 0;
    proto_msg_u64 (request->req, "ch", &ch);
    return ch;
}

//  The channel the request names, if visible, with the user's membership.
//  Answers channel_not_found (NULL) or, if member_needed, not_in_channel.
static mb_channel_t *
s_channel_or_error (mb_server_t *server, mb_request_t *request, mb_member_t **member,
                    bool member_needed)
{
    mb_channel_t *channel = mb_request_channel (request, s_request_ch (request), member);
    if (!channel)
        mb_reply_error (server, request, PROTO_ERR_CHANNEL_NOT_FOUND, NULL);
    else
    if (member_needed && !*member) {
        mb_reply_error (server, request, PROTO_ERR_NOT_IN_CHANNEL, NULL);
        channel = NULL;
    }
    return channel;
}

//  Adds user to channel: saves the membership, then attaches it. Returns
//  the membership, or NULL if it could not be saved.
static mb_member_t *
s_member_add (mb_server_t *server, mb_request_t *request, mb_channel_t *channel,
              mb_user_t *user)
{
    mb_member_t *member = mb_member_new (channel, user, request->now);
    mb_store_put_member (server->batch, request->tenant->id, member);
    if (mb_server_commit (server)) {
        mb_member_destroy (&member);
        return NULL;
    }
    mb_member_t *added = member;
    mb_member_attach (&member);
    return added;
}

//  Replies {channel} as the member sees it
static void
s_reply_channel (mb_server_t *server, mb_request_t *request, mb_member_t *member)
{
    mb_reply_begin (server, request);
    proto_writer_str (server->reply, "channel");
    mb_write_channel (server->reply, member, request->now);
    mb_reply_send (server, request, NULL);
}

//  --------------------------------------------------------------------------
//  user_list -> {users: [user]} of the tenant

void
mb_channels_user_list (mb_server_t *server, mb_request_t *request)
{
    mb_reply_begin (server, request);
    proto_writer_str (server->reply, "users");
    proto_writer_array_begin (server->reply);
    for (uint64_t n = 1; n <= request->tenant->last_user; n++) {
        mb_user_t *user = mb_tenant_user (request->tenant, mb_tenant_user_id (request->tenant, n));
        if (user)
            mb_write_user (server->reply, user);
    }
    proto_writer_array_end (server->reply);
    mb_reply_send (server, request, NULL);
}

//  --------------------------------------------------------------------------
//  channel_create: name, private? -> {channel}; the creator is a member

//  Saves a new channel, its counters and its creator's membership in one
//  batch. Returns the creator's membership, or NULL if nothing was saved.
static mb_member_t *
s_channel_save (mb_server_t *server, mb_request_t *request, mb_channel_t **channel_p)
{
    mb_tenant_t *tenant = request->tenant;
    mb_member_t *member = mb_member_new (*channel_p, request->user, request->now);
    mb_store_put_channel (server->batch, tenant->id, *channel_p);
    mb_store_put_counters (server->batch, tenant->id, tenant->last_user, (*channel_p)->id);
    mb_store_put_member (server->batch, tenant->id, member);
    stage_kill_point ("channel_create");
    int rc = mb_server_commit (server);
    stage_kill_point ("channel_create");
    if (rc) {
        mb_member_destroy (&member);
        mb_channel_destroy (channel_p);
        return NULL;
    }
    mb_member_t *added = member;
    mb_member_attach (&member);
    mb_tenant_channel_add (tenant, channel_p);
    return added;
}

void
mb_channels_create (mb_server_t *server, mb_request_t *request)
{
    bool is_private = false;
    proto_msg_bool (request->req, "private", &is_private);
    char copy [MEMBERSHIP_NAME_MAX + 1];
    if (!mb_request_name (server, request, copy))
        return;
    if (mb_tenant_channel_named (request->tenant, copy))
        mb_reply_error (server, request, PROTO_ERR_NAME_TAKEN, NULL);
    else
    if (request->tenant->last_channel >= MB_ID_MAX)
        mb_reply_error (server, request, PROTO_ERR_INTERNAL, "no channel ids left");
    else {
        mb_channel_t *channel = mb_channel_new (request->tenant->last_channel + 1, copy,
                                                is_private? MB_PRIVATE: MB_PUBLIC,
                                                request->user->id, request->now);
        mb_member_t *member = s_channel_save (server, request, &channel);
        if (!member)
            mb_reply_error (server, request, PROTO_ERR_STORAGE_UNAVAILABLE, NULL);
        else {
            s_reply_channel (server, request, member);
            mb_event_channel_joined (server, request->tenant, member, request->now);
        }
    }
}

//  --------------------------------------------------------------------------
//  channel_browse -> {channels: [{id, name, members, joined}]}, every public one

void
mb_channels_browse (mb_server_t *server, mb_request_t *request)
{
    mb_reply_begin (server, request);
    proto_writer_str (server->reply, "channels");
    proto_writer_array_begin (server->reply);
    for (uint64_t id = 1; id <= request->tenant->last_channel; id++) {
        mb_channel_t *channel = mb_tenant_channel (request->tenant, id);
        if (!channel || channel->type != MB_PUBLIC)
            continue;
        proto_writer_map_begin (server->reply);
        proto_writer_kv_u64 (server->reply, "id", channel->id);
        proto_writer_kv_str (server->reply, "name", channel->name);
        proto_writer_kv_u64 (server->reply, "members", channel->members.size);
        proto_writer_kv_bool (server->reply, "joined",
                              mb_channel_member (channel, request->user->id) != NULL);
        proto_writer_map_end (server->reply);
    }
    proto_writer_array_end (server->reply);
    mb_reply_send (server, request, NULL);
}

//  --------------------------------------------------------------------------
//  channel_join: ch -> {channel}; public channels only

void
mb_channels_join (mb_server_t *server, mb_request_t *request)
{
    mb_member_t *member;
    mb_channel_t *channel = s_channel_or_error (server, request, &member, false);
    if (!channel)
        return;
    if (member) {
        s_reply_channel (server, request, member);
        return;
    }
    member = s_member_add (server, request, channel, request->user);
    if (!member)
        mb_reply_error (server, request, PROTO_ERR_STORAGE_UNAVAILABLE, NULL);
    else {
        s_reply_channel (server, request, member);
        mb_event_channel_joined (server, request->tenant, member, request->now);
        mb_event_member (server, request->tenant, channel, "member_joined", request->user->id);
    }
}

//  --------------------------------------------------------------------------
//  channel_leave: ch -> {}; DMs cannot be left

void
mb_channels_leave (mb_server_t *server, mb_request_t *request)
{
    mb_member_t *member;
    mb_channel_t *channel = s_channel_or_error (server, request, &member, false);
    if (!channel)
        return;
    if (channel->type == MB_DM || channel->type == MB_GROUP) {
        mb_reply_error (server, request, PROTO_ERR_INVALID_ARGS, "direct messages cannot be left");
        return;
    }
    if (!member) {
        mb_reply_empty (server, request, NULL);     //  not in it: nothing to do
        return;
    }
    mb_store_delete_member (server->batch, request->tenant->id, channel->id,
                            request->user->id);
    if (mb_server_commit (server)) {
        mb_reply_error (server, request, PROTO_ERR_STORAGE_UNAVAILABLE, NULL);
        return;
    }
    mb_member_remove (&member);
    mb_reply_empty (server, request, NULL);
    mb_event_member (server, request->tenant, channel, "member_left", request->user->id);
}

//  --------------------------------------------------------------------------
//  channel_invite: ch, user -> {}; members only, not for DMs

void
mb_channels_invite (mb_server_t *server, mb_request_t *request)
{
    mb_member_t *member;
    mb_channel_t *channel = s_channel_or_error (server, request, &member, true);
    if (!channel)
        return;
    uint64_t target_id = 0;
    proto_msg_u64 (request->req, "user", &target_id);
    mb_user_t *target = mb_tenant_user (request->tenant, target_id);
    if (channel->type == MB_DM || channel->type == MB_GROUP)
        mb_reply_error (server, request, PROTO_ERR_INVALID_ARGS,
                        "nobody can be invited to a direct message");
    else
    if (!target)
        mb_reply_error (server, request, PROTO_ERR_USER_NOT_FOUND, NULL);
    else
    if (mb_channel_member (channel, target->id))
        mb_reply_empty (server, request, NULL);
    else
    if (!(member = s_member_add (server, request, channel, target)))
        mb_reply_error (server, request, PROTO_ERR_STORAGE_UNAVAILABLE, NULL);
    else {
        mb_reply_empty (server, request, NULL);
        mb_event_channel_joined (server, request->tenant, member, request->now);
        mb_event_member (server, request->tenant, channel, "member_joined", target->id);
    }
}

//  --------------------------------------------------------------------------
//  channel_members: ch -> {members: [user]}; members, or anyone if public

void
mb_channels_members (mb_server_t *server, mb_request_t *request)
{
    mb_member_t *member;
    mb_channel_t *channel = s_channel_or_error (server, request, &member, false);
    if (!channel)
        return;
    mb_reply_begin (server, request);
    proto_writer_str (server->reply, "members");
    proto_writer_array_begin (server->reply);
    for (size_t i = 0; i < channel->members.size; i++)
        mb_write_user (server->reply, ((mb_member_t *) channel->members.items [i])->user);
    proto_writer_array_end (server->reply);
    mb_reply_send (server, request, NULL);
}

//  --------------------------------------------------------------------------
//  channel_settings: ch, muted?, notify_always? -> {channel}

void
mb_channels_settings (mb_server_t *server, mb_request_t *request)
{
    mb_member_t *member;
    mb_channel_t *channel = s_channel_or_error (server, request, &member, true);
    if (!channel)
        return;
    mb_member_t changed = *member;
    proto_msg_bool (request->req, "muted", &changed.muted);
    proto_msg_bool (request->req, "notify_always", &changed.notify_always);
    if (changed.muted != member->muted || changed.notify_always != member->notify_always) {
        mb_store_put_member (server->batch, request->tenant->id, &changed);
        if (mb_server_commit (server)) {
            mb_reply_error (server, request, PROTO_ERR_STORAGE_UNAVAILABLE, NULL);
            return;
        }
        member->muted = changed.muted;
        member->notify_always = changed.notify_always;
        member->dirty = false;
    }
    s_reply_channel (server, request, member);
}

//  --------------------------------------------------------------------------
//  typing: ch -> {}; the other members get {ev: typing, ch, user}

void
mb_channels_typing (mb_server_t *server, mb_request_t *request)
{
    mb_member_t *member;
    mb_channel_t *channel = s_channel_or_error (server, request, &member, true);
    if (!channel)
        return;
    mb_reply_empty (server, request, NULL);
    proto_writer_reset (server->event);
    proto_writer_map_begin (server->event);
    proto_writer_kv_str (server->event, "ev", "typing");
    proto_writer_kv_u64 (server->event, "ch", channel->id);
    proto_writer_kv_u64 (server->event, "user", request->user->id);
    proto_writer_map_end (server->event);
    mb_event_to_members (server, request->tenant, channel, request->user->id,
                         request->user->id);
}
