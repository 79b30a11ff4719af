/*  =========================================================================
    membership_dm - direct and group messages

    dm_open finds the one channel of a set of people, or creates it: the
    DM index maps the sorted member ids to the channel, so the same set
    gives the same channel whoever opens it. One other person makes a dm,
    two to eight a group; the requester is always a member, their own id
    in the list is ignored and duplicate ids count once.
    =========================================================================
*/
#include "membership.h"
#include "membership_ops.h"
#include "membership_store.h"

//  The people of a DM being opened
typedef struct {
    uint64_t ids [MB_DM_MEMBERS_MAX];   //  every member, sorted
    size_t count;                       //  members, requester included
} s_people_t;

//  qsort order of ids: ascending
static int
s_compare_ids (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y? -1: x > y? 1: 0;
}

//  Adds id to people unless it is there; false if people is full
static bool
s_people_add (s_people_t *people, uint64_t id)
{
    for (size_t i = 0; i < people->count; i++)
        if (people->ids [i] == id)
            return true;
    if (people->count == MB_DM_MEMBERS_MAX)
        return false;
    people->ids [people->count++] = id;
    return true;
}

//  Reads the users field into people (requester included, sorted). Answers
//  invalid_args or user_not_found and returns -1 if it is not a valid set.
static int
s_people_read (mb_server_t *server, mb_request_t *request, s_people_t *people)
{
    const msgpack_object *users = proto_msg_get (request->req, "users");
    people->count = 0;
    s_people_add (people, request->user->id);
    bool valid = users && users->type == MSGPACK_OBJECT_ARRAY;
    for (uint32_t i = 0; valid && i < users->via.array.size; i++) {
        const msgpack_object *id = &users->via.array.ptr [i];
        valid = id->type == MSGPACK_OBJECT_POSITIVE_INTEGER && s_people_add (people, id->via.u64);
    }
    if (!valid || people->count < 2) {
        mb_reply_error (server, request, PROTO_ERR_INVALID_ARGS,
                        "users: ids of 1 to 8 other people");
        return -1;
    }
    for (size_t i = 0; i < people->count; i++)
        if (!mb_tenant_user (request->tenant, people->ids [i])) {
            mb_reply_error (server, request, PROTO_ERR_USER_NOT_FOUND, NULL);
            return -1;
        }
    qsort (people->ids, people->count, sizeof (uint64_t), s_compare_ids);
    return 0;
}

//  Saves a new DM or group channel: its record, the counters, every
//  membership and the DM index entry, in one batch. On success the channel
//  is in the tenant and indexed; on failure it is destroyed. 0 or -1.
static int
s_dm_save (mb_server_t *server, mb_request_t *request, s_people_t *people,
           mb_channel_t **channel_p)
{
    mb_tenant_t *tenant = request->tenant;
    mb_channel_t *channel = *channel_p;
    mb_member_t *members [MB_DM_MEMBERS_MAX];
    mb_store_put_channel (server->batch, tenant->id, channel);
    mb_store_put_counters (server->batch, tenant->id, tenant->last_user, channel->id);
    for (size_t i = 0; i < people->count; i++) {
        members [i] = mb_member_new (channel, mb_tenant_user (tenant, people->ids [i]),
                                     request->now);
        mb_store_put_member (server->batch, tenant->id, members [i]);
    }
    mb_store_put_dm (server->batch, tenant->id, people->ids, people->count, channel->id);
    stage_kill_point ("channel_create");
    int rc = mb_server_commit (server);
    stage_kill_point ("channel_create");
    for (size_t i = 0; i < people->count; i++)
        if (rc)
            mb_member_destroy (&members [i]);
        else
            mb_member_attach (&members [i]);
    if (rc)
        mb_channel_destroy (channel_p);
    else {
        char key [MB_DM_KEY_MAX];
        mb_dm_key (people->ids, people->count, key);
        mb_tenant_dm_add (tenant, key, channel);
        mb_tenant_channel_add (tenant, channel_p);
    }
    return rc;
}

//  Replies {channel} as the requester sees it. The DM index and the
//  memberships come from the store, so a mismatch is answered, not asserted.
static void
s_reply_channel (mb_server_t *server, mb_request_t *request, mb_channel_t *channel)
{
    mb_member_t *member = mb_channel_member (channel, request->user->id);
    if (!member) {
        zsys_error ("membership: DM index of tenant %" PRIu64 " names channel %" PRIu64
                    " without user %" PRIu64, request->tenant->id, channel->id, request->user->id);
        mb_reply_error (server, request, PROTO_ERR_INTERNAL, NULL);
        return;
    }
    mb_reply_begin (server, request);
    proto_writer_str (server->reply, "channel");
    mb_write_channel (server->reply, member, request->now);
    mb_reply_send (server, request, NULL);
}

//  --------------------------------------------------------------------------
//  dm_open: users -> {channel}; the same channel every time for the same set

void
mb_dm_open (mb_server_t *server, mb_request_t *request)
{
    s_people_t people;
    if (s_people_read (server, request, &people))
        return;
    char key [MB_DM_KEY_MAX];
    mb_dm_key (people.ids, people.count, key);
    mb_channel_t *channel = mb_tenant_dm (request->tenant, key);
    if (channel) {
        s_reply_channel (server, request, channel);
        return;
    }
    if (request->tenant->last_channel >= MB_ID_MAX) {
        mb_reply_error (server, request, PROTO_ERR_INTERNAL, "no channel ids left");
        return;
    }
    channel = mb_channel_new (request->tenant->last_channel + 1, "",
                              people.count == 2? MB_DM: MB_GROUP,
                              request->user->id, request->now);
    mb_channel_t *created = channel;
    if (s_dm_save (server, request, &people, &channel)) {
        mb_reply_error (server, request, PROTO_ERR_STORAGE_UNAVAILABLE, NULL);
        return;
    }
    s_reply_channel (server, request, created);
    for (size_t i = 0; i < created->members.size; i++)
        mb_event_channel_joined (server, request->tenant,
                                 (mb_member_t *) created->members.items [i], request->now);
}
