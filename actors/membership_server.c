/*  =========================================================================
    membership_server - what the membership stage's handlers share

    Construction opens and loads the store and connects the outboxes; the
    helpers write replies, protocol objects and events the same way for
    every handler.
    =========================================================================
*/
#include <sodium.h>
#include "membership_server.h"
#include "membership_store.h"

//  Opens <data_dir>/meta and loads it into the model; 0 or -1 (logged)
static int
s_open_store (mb_server_t *self)
{
    char *path = zsys_sprintf ("%s/meta", self->config->data_dir);
    char *err = NULL;
    self->store = store_new (path, &err);
    if (!self->store)
        zsys_error ("membership: cannot open %s: %s", path, err);
    free (err);
    free (path);
    if (!self->store)
        return -1;
    return mb_store_load (self->store, self->model);
}

//  --------------------------------------------------------------------------
//  Open <data_dir>/meta, load it, connect the outboxes; NULL on failure

mb_server_t *
mb_server_new (const stage_config_t *config)
{
    mb_server_t *self = (mb_server_t *) zmalloc (sizeof (mb_server_t));
    self->config = config;
    self->verbose = config->verbose;
    self->model = mb_model_new ();
    self->batch = store_batch_new ();
    self->reply = proto_writer_new ();
    self->ctl = proto_writer_new ();
    self->ctx = proto_writer_new ();
    self->meta = proto_writer_new ();
    self->event = proto_writer_new ();
    int rc = sodium_init () < 0? -1: 0;
    if (rc)
        zsys_error ("membership: libsodium cannot start");
    if (rc == 0)
        rc = s_open_store (self);
    if (rc == 0) {
        self->broker = stage_outbox_new (config, config->broker_endpoint, false);
        self->persistence = stage_outbox_new (config, config->persistence_endpoint, true);
        self->fanout = stage_outbox_new (config, config->fanout_endpoint, false);
        self->hasher = mb_hasher_new ();
        rc = self->broker && self->persistence && self->fanout && self->hasher? 0: -1;
    }
    if (rc)
        mb_server_destroy (&self);
    return self;
}

//  --------------------------------------------------------------------------
//  Close everything

void
mb_server_destroy (mb_server_t **self_p)
{
    mb_server_t *self = *self_p;
    if (self) {
        mb_hasher_destroy (&self->hasher);
        zsock_destroy (&self->broker);
        zsock_destroy (&self->persistence);
        zsock_destroy (&self->fanout);
        store_batch_destroy (&self->batch);
        proto_writer_destroy (&self->reply);
        proto_writer_destroy (&self->ctl);
        proto_writer_destroy (&self->ctx);
        proto_writer_destroy (&self->meta);
        proto_writer_destroy (&self->event);
        mb_model_destroy (&self->model);
        store_destroy (&self->store);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Write the prepared change atomically and durably, then clear it

int
mb_server_commit (mb_server_t *self)
{
    char *err = NULL;
    int rc = store_write (self->store, self->batch, true, &err);
    if (rc) {
        zsys_error ("membership: write failed, nothing changed: %s", err);
        free (err);
    }
    store_batch_clear (self->batch);
    return rc;
}

//  --------------------------------------------------------------------------
//  Save the affinity of every changed membership still there, in one batch

void
mb_server_flush (mb_server_t *self)
{
    if (zlistx_size (self->model->dirty) == 0)
        return;
    store_batch_t *batch = store_batch_new ();
    for (mb_dirty_t *dirty = (mb_dirty_t *) zlistx_first (self->model->dirty); dirty;
         dirty = (mb_dirty_t *) zlistx_next (self->model->dirty)) {
        mb_tenant_t *tenant = mb_model_tenant (self->model, dirty->tenant);
        mb_channel_t *channel = tenant? mb_tenant_channel (tenant, dirty->channel): NULL;
        mb_member_t *member = channel? mb_channel_member (channel, dirty->user): NULL;
        if (member && member->dirty) {
            mb_store_put_member (batch, tenant->id, member);
            member->dirty = false;
        }
    }
    zlistx_purge (self->model->dirty);
    char *err = NULL;
    if (store_batch_count (batch) && store_write (self->store, batch, false, &err)) {
        zsys_error ("membership: cannot save affinity: %s", err);
        free (err);
    }
    store_batch_destroy (&batch);
}

//  --------------------------------------------------------------------------
//  Start the reply {re, ok: true, ...}

void
mb_reply_begin (mb_server_t *self, mb_request_t *request)
{
    proto_writer_reset (self->reply);
    proto_writer_map_begin (self->reply);
    proto_writer_kv_u64 (self->reply, "re", request->rid);
    proto_writer_kv_bool (self->reply, "ok", true);
}

//  --------------------------------------------------------------------------
//  Close and send the reply, with ctl or NULL

void
mb_reply_send (mb_server_t *self, mb_request_t *request, proto_writer_t *ctl)
{
    proto_writer_map_end (self->reply);
    if (stage_send_reply (self->broker, request->route, self->reply, ctl))
        zsys_warning ("membership: the broker cannot take a reply now");
}

//  --------------------------------------------------------------------------
//  Send {re, ok: true}

void
mb_reply_empty (mb_server_t *self, mb_request_t *request, proto_writer_t *ctl)
{
    mb_reply_begin (self, request);
    mb_reply_send (self, request, ctl);
}

//  --------------------------------------------------------------------------
//  Send an error reply

void
mb_reply_error (mb_server_t *self, mb_request_t *request, proto_error_t code,
                const char *message)
{
    if (self->verbose)
        zsys_debug ("membership: %.*s by %" PRIu64 "/%" PRIu64 ": %s",
                    (int) request->op_len, request->op, request->tn, request->uid,
                    proto_error_name (code));
    if (stage_send_error (self->broker, request->route, request->rid, code, message))
        zsys_warning ("membership: the broker cannot take a reply now");
}

//  --------------------------------------------------------------------------
//  The ctl that binds the session: {set: {tn, uid, adm}}

proto_writer_t *
mb_ctl_set (mb_server_t *self, uint64_t tenant, uint64_t user, bool admin)
{
    proto_writer_reset (self->ctl);
    proto_writer_map_begin (self->ctl);
    proto_writer_str (self->ctl, "set");
    proto_writer_map_begin (self->ctl);
    proto_writer_kv_u64 (self->ctl, "tn", tenant);
    proto_writer_kv_u64 (self->ctl, "uid", user);
    proto_writer_kv_bool (self->ctl, "adm", admin);
    proto_writer_map_end (self->ctl);
    proto_writer_map_end (self->ctl);
    return self->ctl;
}

//  --------------------------------------------------------------------------
//  The user object

void
mb_write_user (proto_writer_t *writer, mb_user_t *user)
{
    proto_writer_map_begin (writer);
    proto_writer_kv_u64 (writer, "id", user->id);
    proto_writer_kv_str (writer, "handle", user->handle);
    proto_writer_kv_str (writer, "display_name", user->display_name);
    proto_writer_kv_bool (writer, "bot", user->bot);
    proto_writer_map_end (writer);
}

//  --------------------------------------------------------------------------
//  The tenant object

void
mb_write_tenant (proto_writer_t *writer, mb_tenant_t *tenant)
{
    proto_writer_map_begin (writer);
    proto_writer_kv_u64 (writer, "id", tenant->id);
    proto_writer_kv_str (writer, "name", tenant->name);
    proto_writer_map_end (writer);
}

//  Writes a DM's name: the other members' handles, joined by ", "
static void
s_write_dm_name (proto_writer_t *writer, mb_member_t *viewer)
{
    mb_channel_t *channel = viewer->channel;
    size_t size = 1;
    for (size_t i = 0; i < channel->members.size; i++)
        size += strlen (((mb_member_t *) channel->members.items [i])->user->handle) + 2;
    char *name = (char *) zmalloc (size);
    size_t used = 0;
    for (size_t i = 0; i < channel->members.size; i++) {
        mb_user_t *user = ((mb_member_t *) channel->members.items [i])->user;
        if (user == viewer->user)
            continue;
        used += snprintf (name + used, size - used, "%s%s", used? ", ": "", user->handle);
    }
    proto_writer_kv_str (writer, "name", name);
    free (name);
}

//  --------------------------------------------------------------------------
//  The channel object as member->user sees it

void
mb_write_channel (proto_writer_t *writer, mb_member_t *member, uint64_t now)
{
    mb_channel_t *channel = member->channel;
    bool direct = channel->type == MB_DM || channel->type == MB_GROUP;
    proto_writer_map_begin (writer);
    proto_writer_kv_u64 (writer, "id", channel->id);
    if (direct)
        s_write_dm_name (writer, member);
    else
        proto_writer_kv_str (writer, "name", channel->name);
    proto_writer_kv_str (writer, "type", mb_ctype_name (channel->type));
    proto_writer_kv_u64 (writer, "members", channel->members.size);
    proto_writer_kv_bool (writer, "muted", member->muted);
    proto_writer_kv_bool (writer, "notify_always", member->notify_always);
    proto_writer_str (writer, "affinity");
    proto_writer_double (writer, mb_member_affinity (member, now));
    if (direct) {
        proto_writer_str (writer, "member_ids");
        proto_writer_array_begin (writer);
        for (size_t i = 0; i < channel->members.size; i++)
            proto_writer_u64 (writer, ((mb_member_t *) channel->members.items [i])->user->id);
        proto_writer_array_end (writer);
    }
    proto_writer_map_end (writer);
}

//  Writes one recipient record; quiet ones are flagged muted, so that
//  fan-out never notifies anyone of them
static void
s_put_recip (uint8_t *record, mb_member_t *member, bool quiet)
{
    uint64_t flags = (member->muted || quiet? STAGE_RECIP_MUTED: 0)
                   | (member->notify_always && !quiet? STAGE_RECIP_NOTIFY_ALWAYS: 0);
    stage_recip_put (record, member->user->id, flags);
}

//  Writes the recipient bin of one member
static void
s_write_recip (proto_writer_t *writer, mb_member_t *member, bool quiet)
{
    s_put_recip (proto_writer_bin_reserve (writer, STAGE_RECIP_SIZE), member, quiet);
}

//  Writes the recipient bin of every member but except
static void
s_write_recips (proto_writer_t *writer, mb_channel_t *channel, uint64_t except, bool quiet)
{
    size_t count = 0;
    for (size_t i = 0; i < channel->members.size; i++)
        count += ((mb_member_t *) channel->members.items [i])->user->id != except;
    uint8_t *record = proto_writer_bin_reserve (writer, count * STAGE_RECIP_SIZE);
    for (size_t i = 0; i < channel->members.size; i++) {
        mb_member_t *member = (mb_member_t *) channel->members.items [i];
        if (member->user->id != except) {
            s_put_recip (record, member, quiet);
            record += STAGE_RECIP_SIZE;
        }
    }
}

//  --------------------------------------------------------------------------
//  The recipient bin (stage.h) of every member but except (0 = none)

void
mb_write_recips (proto_writer_t *writer, mb_channel_t *channel, uint64_t except)
{
    s_write_recips (writer, channel, except, false);
}

//  Starts the meta map up to its recips key
static void
s_meta_begin (mb_server_t *self, mb_tenant_t *tenant, mb_channel_t *channel,
              uint64_t author)
{
    proto_writer_reset (self->meta);
    proto_writer_map_begin (self->meta);
    proto_writer_kv_u64 (self->meta, "tn", tenant->id);
    proto_writer_kv_u64 (self->meta, "ch", channel->id);
    proto_writer_kv_str (self->meta, "ctype", mb_ctype_name (channel->type));
    proto_writer_kv_u64 (self->meta, "author", author);
    proto_writer_str (self->meta, "mentions");
    proto_writer_array_begin (self->meta);
    proto_writer_array_end (self->meta);
    proto_writer_str (self->meta, "recips");
}

//  Closes the meta map and sends meta and self->event to fan-out
static void
s_event_send (mb_server_t *self)
{
    proto_writer_map_end (self->meta);
    if (stage_send_event (self->fanout, self->meta, self->event))
        zsys_warning ("membership: fan-out cannot take an event now; dropped");
}

//  --------------------------------------------------------------------------
//  Send self->event to one member

void
mb_event_to_member (mb_server_t *self, mb_tenant_t *tenant, mb_member_t *member)
{
    s_meta_begin (self, tenant, member->channel, 0);
    s_write_recip (self->meta, member, true);
    s_event_send (self);
}

//  --------------------------------------------------------------------------
//  Send self->event to every member but except; nothing if there is no one

void
mb_event_to_members (mb_server_t *self, mb_tenant_t *tenant, mb_channel_t *channel,
                     uint64_t author, uint64_t except)
{
    bool anyone = false;
    for (size_t i = 0; i < channel->members.size && !anyone; i++)
        anyone = ((mb_member_t *) channel->members.items [i])->user->id != except;
    if (!anyone)
        return;
    s_meta_begin (self, tenant, channel, author);
    s_write_recips (self->meta, channel, except, true);
    s_event_send (self);
}

//  --------------------------------------------------------------------------
//  channel_joined {ev, channel} to the member who joined or was added

void
mb_event_channel_joined (mb_server_t *self, mb_tenant_t *tenant, mb_member_t *member,
                         uint64_t now)
{
    proto_writer_reset (self->event);
    proto_writer_map_begin (self->event);
    proto_writer_kv_str (self->event, "ev", "channel_joined");
    proto_writer_str (self->event, "channel");
    mb_write_channel (self->event, member, now);
    proto_writer_map_end (self->event);
    mb_event_to_member (self, tenant, member);
}

//  --------------------------------------------------------------------------
//  member_joined or member_left {ev, ch, user} to the other members

void
mb_event_member (mb_server_t *self, mb_tenant_t *tenant, mb_channel_t *channel,
                 const char *ev, uint64_t user)
{
    proto_writer_reset (self->event);
    proto_writer_map_begin (self->event);
    proto_writer_kv_str (self->event, "ev", ev);
    proto_writer_kv_u64 (self->event, "ch", channel->id);
    proto_writer_kv_u64 (self->event, "user", user);
    proto_writer_map_end (self->event);
    mb_event_to_members (self, tenant, channel, user, user);
}

//  --------------------------------------------------------------------------
//  The channel if the request's user may see it, else NULL

mb_channel_t *
mb_request_channel (mb_request_t *request, uint64_t ch, mb_member_t **member)
{
    *member = NULL;
    mb_channel_t *channel = mb_tenant_channel (request->tenant, ch);
    if (!channel)
        return NULL;
    *member = mb_channel_member (channel, request->user->id);
    if (!*member && channel->type != MB_PUBLIC)
        return NULL;
    return channel;
}

//  --------------------------------------------------------------------------
//  True if name is 1..max of [a-z0-9] and the extra characters

bool
mb_name_valid (const char *name, size_t len, size_t max, const char *extra)
{
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name [i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c && strchr (extra, c))))
            return false;
    }
    return true;
}

//  --------------------------------------------------------------------------
//  Copy a valid workspace or channel name from the request, or answer
//  invalid_args

bool
mb_request_name (mb_server_t *self, mb_request_t *request, char *copy)
{
    const char *name = "";
    size_t len = 0;
    proto_msg_str (request->req, "name", &name, &len);
    if (!mb_name_valid (name, len, MEMBERSHIP_NAME_MAX, "-_")) {
        mb_reply_error (self, request, PROTO_ERR_INVALID_ARGS,
                        "name: 1 to 80 of a-z, 0-9, - and _");
        return false;
    }
    memcpy (copy, name, len);
    copy [len] = 0;
    return true;
}
