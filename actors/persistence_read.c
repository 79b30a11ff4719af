/*  =========================================================================
    persistence_read - history, sync and channel lists: range scans only

    Every reader first commits what is staged (pst_commit), so a client reads
    what it was told is saved. A page or a catch-up costs O(messages
    returned): each is one bounded range scan of 'm' ch seq keys, whose
    stored values are copied into the reply without decoding.
    =========================================================================
*/
#include "persistence_priv.h"

//  --------------------------------------------------------------------------
//  Reading messages

//  Gets and decodes the record of one message; NULL if absent
proto_msg_t *
pst_message_get (self_t *self, uint64_t tenant, uint64_t ch, uint64_t seq, char **value)
{
    uint8_t key [17];
    pst_key_message (key, ch, seq);
    size_t value_len = 0;
    *value = NULL;
    if (!store_tenant_exists (self->store, tenant)
    ||  store_get (self->store, tenant, key, 17, value, &value_len, NULL) != 1)
        return NULL;
    return proto_msg_decode_stage (*value, value_len, NULL);
}

//  Writes the records of seqs [lo, hi] of a channel as array items
size_t
pst_write_range (self_t *self, proto_writer_t *writer, uint64_t tenant,
               uint64_t ch, uint64_t lo, uint64_t hi)
{
    size_t count = 0;
    if (lo > hi || lo == 0)
        return 0;
    uint8_t lower [17], upper [17];
    pst_key_message (lower, ch, lo);
    pst_key_message (upper, ch, hi + 1);
    store_iter_t *iter = store_iter_new (self->store, tenant, lower, 17, upper, 17);
    if (!iter)
        return 0;
    for (store_iter_first (iter); store_iter_valid (iter); store_iter_next (iter)) {
        size_t len;
        const void *value = store_iter_value (iter, &len);
        proto_writer_raw (writer, value, len);
        count++;
    }
    store_iter_destroy (&iter);
    return count;
}

//  Counts unread messages in (read, head], up to UNREAD_SCAN_MAX: not
//  deleted and not the user's own. Sending moves one's read position to
//  one's own message, so no own message lies past read: the count is the
//  range less the deleted messages in it, found in the 'x' index. Costs
//  O(deletions in the range), never O(unread).
uint64_t
pst_unread (self_t *self, uint64_t tenant, uint64_t ch, uint64_t user,
            uint64_t read, uint64_t head)
{
    (void) user;
    if (read >= head)
        return 0;
    uint8_t lower [17], upper [17];
    pst_key_deleted (lower, ch, read + 1);
    pst_key_deleted (upper, ch, head + 1);
    store_iter_t *iter = store_iter_new (self->store, tenant, lower, 17, upper, 17);
    uint64_t deleted = 0;
    if (iter)
        store_iter_first (iter);
    for (; iter && store_iter_valid (iter); store_iter_next (iter)) {
        size_t len;
        const uint8_t *key = store_iter_key (iter, &len);
        //  Messages before this deleted one that count: enough already?
        if (store_u64_get (key + 9) - read - 1 - deleted >= UNREAD_SCAN_MAX)
            break;
        deleted++;
    }
    store_iter_destroy (&iter);
    uint64_t unread = head - read - deleted;
    return unread < UNREAD_SCAN_MAX? unread: UNREAD_SCAN_MAX;
}

//  --------------------------------------------------------------------------
//  history: a page of a channel, O(page)

void
pst_history (self_t *self, request_t *request)
{
    pst_commit (self);
    uint64_t head = *pst_head (self, request->tenant, request->ch);
    position_t *position = pst_position (self, request->tenant, request->ch, request->user);
    uint64_t limit = PROTO_PAGE_DEFAULT, anchor = 0, lo, hi;
    proto_msg_u64 (request->req, "limit", &limit);
    if (limit == 0)
        limit = PROTO_PAGE_DEFAULT;
    bool around_unread = false;
    proto_msg_bool (request->req, "around_unread", &around_unread);
    if (proto_msg_u64 (request->req, "before", &anchor)) {
        hi = anchor - 1 < head? anchor - 1: head;
        lo = hi >= limit? hi - limit + 1: 1;
    }
    else
    if (proto_msg_u64 (request->req, "after", &anchor)) {
        lo = anchor + 1;
        hi = anchor + limit < head? anchor + limit: head;
    }
    else
    if (proto_msg_u64 (request->req, "around", &anchor)
    ||  (around_unread && position->read < head && (anchor = position->read + 1))) {
        lo = anchor > limit / 2? anchor - limit / 2: 1;
        hi = lo + limit - 1 < head? lo + limit - 1: head;
        lo = hi >= limit? hi - limit + 1: 1;
    }
    else {
        hi = head;
        lo = hi >= limit? hi - limit + 1: 1;
    }
    pst_reply_begin (self, request->rid);
    proto_writer_kv_u64 (self->writer, "ch", request->ch);
    proto_writer_str (self->writer, "messages");
    proto_writer_array_begin (self->writer);
    if (head > 0 && lo <= hi)
        pst_write_range (self, self->writer, request->tenant, request->ch, lo, hi);
    proto_writer_array_end (self->writer);
    bool empty = head == 0 || lo > hi;
    proto_writer_kv_bool (self->writer, "has_more_before", empty? (lo > 1 && head > 0): lo > 1);
    proto_writer_kv_bool (self->writer, "has_more_after", empty? false: hi < head);
    proto_writer_kv_u64 (self->writer, "head", head);
    proto_writer_kv_u64 (self->writer, "read_seq", position->read);
    pst_reply_send (self, request);
}

//  --------------------------------------------------------------------------
//  channel_list: membership's channel objects plus head, read_seq, unread

void
pst_channel_list (self_t *self, request_t *request)
{
    pst_commit (self);
    const msgpack_object *channels = proto_msg_get (request->ctx, "channels");
    pst_reply_begin (self, request->rid);
    proto_writer_str (self->writer, "channels");
    proto_writer_array_begin (self->writer);
    for (uint32_t i = 0; channels && channels->type == MSGPACK_OBJECT_ARRAY
                         && i < channels->via.array.size; i++) {
        const msgpack_object *channel = &channels->via.array.ptr [i];
        uint64_t ch = 0;
        if (channel->type != MSGPACK_OBJECT_MAP || !proto_map_u64 (channel, "id", &ch))
            continue;
        uint64_t head = *pst_head (self, request->tenant, ch);
        position_t *position = pst_position (self, request->tenant, ch, request->user);
        proto_writer_map_begin (self->writer);
        for (uint32_t k = 0; k < channel->via.map.size; k++) {
            proto_writer_object (self->writer, &channel->via.map.ptr [k].key);
            proto_writer_object (self->writer, &channel->via.map.ptr [k].val);
        }
        proto_writer_kv_u64 (self->writer, "head", head);
        proto_writer_kv_u64 (self->writer, "read_seq", position->read);
        proto_writer_kv_u64 (self->writer, "unread",
            pst_unread (self, request->tenant, ch, request->user, position->read, head));
        uint64_t last_ts = 0;
        char *value = NULL;
        proto_msg_t *last = head? pst_message_get (self, request->tenant, ch, head, &value): NULL;
        if (last)
            proto_msg_u64 (last, "ts", &last_ts);
        proto_msg_destroy (&last);
        free (value);
        proto_writer_kv_u64 (self->writer, "last_ts", last_ts);
        proto_writer_map_end (self->writer);
    }
    proto_writer_array_end (self->writer);
    pst_reply_send (self, request);
}

//  --------------------------------------------------------------------------
//  sync: what each channel's checkpoint missed, in order, bounded

//  The client's checkpoint for ch in its channels map; false if none
static bool
s_checkpoint (const msgpack_object *given, uint64_t ch, uint64_t *seq)
{
    char name [24];
    snprintf (name, sizeof (name), "%" PRIu64, ch);
    const msgpack_object *value = proto_map_get (given, name);
    if (!value || value->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *seq = value->via.u64;
    return true;
}

//  Writes the channel ids the client gave that are not memberships
static void
s_sync_removed (self_t *self, const msgpack_object *given, const msgpack_object *channels)
{
    proto_writer_str (self->writer, "removed");
    proto_writer_array_begin (self->writer);
    for (uint32_t i = 0; given && given->type == MSGPACK_OBJECT_MAP && i < given->via.map.size; i++) {
        const msgpack_object *key = &given->via.map.ptr [i].key;
        char name [24];
        if (key->type != MSGPACK_OBJECT_STR || key->via.str.size >= sizeof (name))
            continue;
        memcpy (name, key->via.str.ptr, key->via.str.size);
        name [key->via.str.size] = 0;
        uint64_t ch = strtoull (name, NULL, 10);
        bool member = false;
        for (uint32_t j = 0; channels && j < channels->via.array.size && !member; j++) {
            const msgpack_object *pair = &channels->via.array.ptr [j];
            member = pair->type == MSGPACK_OBJECT_ARRAY && pair->via.array.size >= 1
                  && pair->via.array.ptr [0].via.u64 == ch;
        }
        if (ch && !member)
            proto_writer_u64 (self->writer, ch);
    }
    proto_writer_array_end (self->writer);
}

void
pst_sync (self_t *self, request_t *request)
{
    pst_commit (self);
    const msgpack_object *channels = proto_msg_get (request->ctx, "channels");
    if (channels && channels->type != MSGPACK_OBJECT_ARRAY)
        channels = NULL;
    const msgpack_object *given = proto_msg_get (request->req, "channels");
    uint64_t limit = SYNC_LIMIT_DEFAULT;
    proto_msg_u64 (request->req, "limit", &limit);
    if (limit == 0 || limit > PROTO_PAGE_MAX)
        limit = SYNC_LIMIT_DEFAULT;
    uint64_t budget = SYNC_TOTAL_MAX;
    pst_reply_begin (self, request->rid);
    proto_writer_str (self->writer, "channels");
    proto_writer_array_begin (self->writer);
    for (uint32_t i = 0; channels && i < channels->via.array.size; i++) {
        const msgpack_object *pair = &channels->via.array.ptr [i];
        if (pair->type != MSGPACK_OBJECT_ARRAY || pair->via.array.size < 1
        ||  pair->via.array.ptr [0].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            continue;
        uint64_t ch = pair->via.array.ptr [0].via.u64;
        position_t *position = pst_position (self, request->tenant, ch, request->user);
        uint64_t checkpoint = position->delivered;
        bool client_given = s_checkpoint (given, ch, &checkpoint);
        uint64_t head = *pst_head (self, request->tenant, ch);
        if (checkpoint >= head)
            continue;
        uint64_t take = head - checkpoint < limit? head - checkpoint: limit;
        if (take > budget)
            take = budget;
        budget -= take;
        uint64_t last = checkpoint + take;
        proto_writer_map_begin (self->writer);
        proto_writer_kv_u64 (self->writer, "ch", ch);
        proto_writer_str (self->writer, "messages");
        proto_writer_array_begin (self->writer);
        pst_write_range (self, self->writer, request->tenant, ch, checkpoint + 1, last);
        proto_writer_array_end (self->writer);
        proto_writer_kv_bool (self->writer, "has_more", last < head);
        proto_writer_kv_u64 (self->writer, "head", head);
        proto_writer_kv_u64 (self->writer, "read_seq", position->read);
        proto_writer_kv_u64 (self->writer, "unread",
            pst_unread (self, request->tenant, ch, request->user, position->read, head));
        proto_writer_map_end (self->writer);
        (void) client_given;
        if (last > position->delivered && store_tenant_exists (self->store, request->tenant))
            pst_position_stage (self, request->tenant, ch, request->user, 0, last);
    }
    proto_writer_array_end (self->writer);
    s_sync_removed (self, given, channels);
    proto_writer_map_end (self->writer);
    //  Delivered positions are saved with the reply
    pst_pending_add (self, request, false);
    pst_commit (self);
}
