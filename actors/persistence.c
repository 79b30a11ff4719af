/*  =========================================================================
    persistence - the stage that saves: sequence numbers, group commit, acks

    Keys in each tenant's column family (docs/storage.md):
        'm' ch seq      -> message record (msgpack map)
        'd' uid cmid    -> dedupe record {ch, seq, ts, h: digest of the body}
        'p' ch uid      -> positions {r: read seq, d: delivered seq}
        'x' ch seq      -> empty: the message was deleted (unread counts)
    Every waiting send is staged into one batch; the batch is written with
    sync=true; only then are acks and events sent. If the write fails, every
    staged send is answered storage_unavailable, the in-memory heads and
    positions are rolled back, and the store refuses writes until restart.
    Reads (history, sync, channel_list) flush the batch first, so a client
    always reads its own acknowledged writes.
    =========================================================================
*/
#include <sodium.h>
#include "persistence_priv.h"


static void
s_free_item (void **item)
{
    free (*item);
    *item = NULL;
}

static void
s_staged_destroy (void **item)
{
    staged_send_t *staged = (staged_send_t *) *item;
    if (staged) {
        free (staged);
        *item = NULL;
    }
}

static void
s_pending_destroy (void **item)
{
    pending_t *pending = (pending_t *) *item;
    if (pending) {
        free (pending);
        *item = NULL;
    }
}

//  Copies frame's bytes to *cursor and points frame at the copy
static void
s_frame_keep (stage_frame_t *frame, uint8_t **cursor)
{
    if (frame->size)
        memcpy (*cursor, frame->data, frame->size);
    frame->data = *cursor;
    *cursor += frame->size;
}

//  --------------------------------------------------------------------------
//  Keys

//  A kind byte and two big-endian integers: 17 bytes
static size_t
s_key_pair (uint8_t *key, char kind, uint64_t first, uint64_t second)
{
    key [0] = (uint8_t) kind;
    store_u64_put (key + 1, first);
    store_u64_put (key + 9, second);
    return 17;
}

size_t
pst_key_message (uint8_t *key, uint64_t ch, uint64_t seq)
{
    return s_key_pair (key, 'm', ch, seq);
}

size_t
pst_key_position (uint8_t *key, uint64_t ch, uint64_t user)
{
    return s_key_pair (key, 'p', ch, user);
}

size_t
pst_key_deleted (uint8_t *key, uint64_t ch, uint64_t seq)
{
    return s_key_pair (key, 'x', ch, seq);
}

static size_t
s_key_dedupe (uint8_t *key, uint64_t user, const char *cmid, size_t cmid_len)
{
    key [0] = 'd';
    store_u64_put (key + 1, user);
    memcpy (key + 9, cmid, cmid_len);
    return 9 + cmid_len;
}

//  --------------------------------------------------------------------------
//  The committer: writes the commits the actor hands it, one at a time, and
//  hands each back once written (and synced). It touches nothing but the
//  commit (store_commit_apply), so the actor stages the next batch meanwhile.

static void
s_committer (zsock_t *pipe, void *args)
{
    stage_thread_name ("committer");
    (void) args;
    zsock_signal (pipe, 0);
    while (true) {
        char *command = NULL;
        void *commit = NULL;
        if (zsock_recv (pipe, "sp", &command, &commit)) {
            if (zmq_errno () == EINTR)
                continue;           //  a signal: the command is still queued
            break;
        }
        bool is_commit = command && streq (command, "COMMIT") && commit;
        free (command);
        if (!is_commit)
            break;                  //  $TERM
        store_commit_apply ((store_commit_t *) commit);
        while (zsock_send (pipe, "p", commit) && zmq_errno () == EINTR)
            ;
    }
}

//  --------------------------------------------------------------------------
//  Construction

static self_t *
s_self_new (zsock_t *pipe, const stage_config_t *config)
{
    self_t *self = (self_t *) zmalloc (sizeof (self_t));
    self->pipe = pipe;
    self->config = config;
    char *path = zsys_sprintf ("%s/messages", config->data_dir);
    char *err = NULL;
    self->store = store_new (path, &err);
    if (!self->store) {
        zsys_error ("persistence: cannot open %s: %s", path, err);
        free (err);
    }
    free (path);
    self->heads = zhashx_new ();
    zhashx_set_destructor (self->heads, s_free_item);
    self->positions = zhashx_new ();
    zhashx_set_destructor (self->positions, s_free_item);
    for (int index = 0; index < 2; index++) {
        generation_t *generation = &self->generations [index];
        generation->staged = zhashx_new ();
        zhashx_set_destructor (generation->staged, s_staged_destroy);
        generation->batch = store_batch_new ();
        generation->pending = zlistx_new ();
        zlistx_set_destructor (generation->pending, s_pending_destroy);
    }
    self->now = &self->generations [0];
    self->flight = &self->generations [1];
    self->writer = proto_writer_new ();
    self->record = proto_writer_new ();
    self->event = proto_writer_new ();
    self->meta = proto_writer_new ();
    if (self->store) {
        self->inbox = stage_inbox_new (config, config->persistence_endpoint);
        self->broker = stage_outbox_new (config, config->broker_endpoint, false);
        self->fanout = stage_outbox_new (config, config->fanout_endpoint, false);
    }
    if (self->store)
        self->committer = zactor_new (s_committer, NULL);
    if (!self->store || !self->inbox || !self->broker || !self->fanout)
        self->terminated = true;
    else
        self->poller = zpoller_new (pipe, self->inbox, self->committer, NULL);
    return self;
}

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (self) {
        zpoller_destroy (&self->poller);
        zsock_destroy (&self->inbox);
        zsock_destroy (&self->broker);
        zsock_destroy (&self->fanout);
        zhashx_destroy (&self->heads);
        zhashx_destroy (&self->positions);
        assert (!self->commit);
        zactor_destroy (&self->committer);
        for (int index = 0; index < 2; index++) {
            generation_t *generation = &self->generations [index];
            zhashx_destroy (&generation->staged);
            zlistx_destroy (&generation->pending);
            store_batch_destroy (&generation->batch);
            free (generation->undo);
        }
        free (self->changed);
        proto_writer_destroy (&self->writer);
        proto_writer_destroy (&self->record);
        proto_writer_destroy (&self->event);
        proto_writer_destroy (&self->meta);
        store_destroy (&self->store);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Cached heads and positions

//  A cache key: the numbers in hex joined by '/', then '/' and the tail if
//  there is one, truncated to size - 1 bytes (as snprintf would); without
//  snprintf's cost, which was 5 % of a send's instructions
static void
s_cache_key (char *key, size_t size, const uint64_t *numbers, size_t count,
             const char *tail, size_t tail_len)
{
    static const char digits [] = "0123456789abcdef";
    char buffer [17 * 3 + 1];
    size_t len = 0;
    for (size_t index = 0; index < count && index < 3; index++) {
        if (index)
            buffer [len++] = '/';
        char reversed [16];
        size_t ndigits = 0;
        uint64_t value = numbers [index];
        do {
            reversed [ndigits++] = digits [value & 15];
            value >>= 4;
        } while (value);
        while (ndigits)
            buffer [len++] = reversed [--ndigits];
    }
    size_t used = len < size - 1? len: size - 1;
    memcpy (key, buffer, used);
    if (tail && used < size - 1) {
        key [used++] = '/';
        size_t room = size - 1 - used;
        size_t copy = tail_len < room? tail_len: room;
        memcpy (key + used, tail, copy);
        used += copy;
    }
    key [used] = 0;
}

//  Pointer to the cached head of a channel, loaded from the store if needed
uint64_t *
pst_head (self_t *self, uint64_t tenant, uint64_t ch)
{
    char key [48];
    s_cache_key (key, sizeof (key), (uint64_t []) { tenant, ch }, 2, NULL, 0);
    uint64_t *head = (uint64_t *) zhashx_lookup (self->heads, key);
    if (head)
        return head;
    if (zhashx_size (self->heads) > CACHE_MAX && store_batch_count (self->now->batch) == 0
    &&  !self->commit)
        zhashx_purge (self->heads);
    head = (uint64_t *) zmalloc (sizeof (uint64_t));
    uint8_t lower [17], upper [17];
    pst_key_message (lower, ch, 0);
    pst_key_message (upper, ch, PROTO_MAX_SEQ);
    store_iter_t *iter = store_iter_new (self->store, tenant, lower, 17, upper, 17);
    if (iter) {
        store_iter_last (iter);
        size_t len;
        if (store_iter_valid (iter)) {
            const uint8_t *found = (const uint8_t *) store_iter_key (iter, &len);
            if (len == 17)
                *head = store_u64_get (found + 9);
        }
        store_iter_destroy (&iter);
    }
    zhashx_insert (self->heads, key, head);
    return head;
}

//  Pointer to the cached positions of a member, loaded if needed
position_t *
pst_position (self_t *self, uint64_t tenant, uint64_t ch, uint64_t user)
{
    char key [72];
    s_cache_key (key, sizeof (key), (uint64_t []) { tenant, ch, user }, 3, NULL, 0);
    position_t *position = (position_t *) zhashx_lookup (self->positions, key);
    if (position)
        return position;
    if (zhashx_size (self->positions) > CACHE_MAX && store_batch_count (self->now->batch) == 0
    &&  !self->commit && self->changed_size == 0)
        zhashx_purge (self->positions);
    position = (position_t *) zmalloc (sizeof (position_t));
    uint8_t store_key [17];
    pst_key_position (store_key, ch, user);
    char *value = NULL;
    size_t value_len = 0;
    if (store_tenant_exists (self->store, tenant)
    &&  store_get (self->store, tenant, store_key, 17, &value, &value_len, NULL) == 1) {
        proto_msg_t *record = proto_msg_decode_stage (value, value_len, NULL);
        if (record) {
            proto_msg_u64 (record, "r", &position->read);
            proto_msg_u64 (record, "d", &position->delivered);
        }
        proto_msg_destroy (&record);
    }
    free (value);
    zhashx_insert (self->positions, key, position);
    return position;
}

//  Remembers a cached value so a failed commit can restore it
static void
s_undo_push (self_t *self, uint64_t *slot)
{
    if (self->now->undo_size == self->now->undo_max) {
        self->now->undo_max = self->now->undo_max? self->now->undo_max * 2: 256;
        self->now->undo = (undo_t *) realloc (self->now->undo, self->now->undo_max * sizeof (undo_t));
        assert (self->now->undo);
    }
    self->now->undo [self->now->undo_size].slot = slot;
    self->now->undo [self->now->undo_size].old = *slot;
    self->now->undo_size++;
}

//  Stages new positions (never moving back) for a member
void
pst_position_stage (self_t *self, uint64_t tenant, uint64_t ch, uint64_t user,
                  uint64_t read, uint64_t delivered)
{
    position_t *position = pst_position (self, tenant, ch, user);
    if (read <= position->read && delivered <= position->delivered)
        return;
    s_undo_push (self, &position->read);
    s_undo_push (self, &position->delivered);
    if (read > position->read)
        position->read = read;
    if (delivered > position->delivered)
        position->delivered = delivered;
    if (position->delivered < position->read)
        position->delivered = position->read;
    if (position->staged)
        return;                 //  written once, with its last value, at the commit
    if (self->changed_size == self->changed_max) {
        self->changed_max = self->changed_max? self->changed_max * 2: 256;
        self->changed = (changed_position_t *) realloc (self->changed,
                            self->changed_max * sizeof (changed_position_t));
        assert (self->changed);
    }
    self->changed [self->changed_size++] = (changed_position_t) { tenant, ch, user, position };
    position->staged = true;
}

//  Puts every position the batch changed into it, once each
static void
s_positions_put (self_t *self)
{
    for (size_t i = 0; i < self->changed_size; i++) {
        changed_position_t *changed = &self->changed [i];
        proto_writer_reset (self->record);
        proto_writer_map_begin (self->record);
        proto_writer_kv_u64 (self->record, "r", changed->position->read);
        proto_writer_kv_u64 (self->record, "d", changed->position->delivered);
        proto_writer_map_end (self->record);
        uint8_t key [17];
        pst_key_position (key, changed->ch, changed->user);
        store_batch_put (self->now->batch, changed->tenant, key, 17,
                         proto_writer_data (self->record), proto_writer_size (self->record));
        changed->position->staged = false;
    }
    self->changed_size = 0;
}

//  --------------------------------------------------------------------------
//  Replies

void
pst_reply_begin (self_t *self, uint64_t rid)
{
    proto_writer_reset (self->writer);
    proto_writer_map_begin (self->writer);
    proto_writer_kv_u64 (self->writer, "re", rid);
    proto_writer_kv_bool (self->writer, "ok", true);
}

void
pst_reply_send (self_t *self, request_t *request)
{
    proto_writer_map_end (self->writer);
    stage_send_reply (self->broker, request->route, self->writer, NULL);
}

void
pst_reply_error (self_t *self, request_t *request, proto_error_t code, const char *why)
{
    stage_send_error (self->broker, request->route, request->rid, code, why);
}

//  Queues the reply in self->writer (and an event, if any) until the commit
void
pst_pending_add (self_t *self, request_t *request, bool with_event)
{
    //  One allocation holds the pending record and its frames
    stage_frame_t route = *request->route;
    stage_frame_t reply = stage_frame_writer (self->writer);
    stage_frame_t meta = with_event? stage_frame_writer (self->meta): stage_frame_mem ("", 0);
    stage_frame_t event = with_event? stage_frame_writer (self->event): stage_frame_mem ("", 0);
    pending_t *pending = (pending_t *) malloc (sizeof (pending_t) + route.size + reply.size
                                               + meta.size + event.size);
    assert (pending);
    uint8_t *cursor = pending->bytes;
    s_frame_keep (&route, &cursor);
    s_frame_keep (&reply, &cursor);
    s_frame_keep (&meta, &cursor);
    s_frame_keep (&event, &cursor);
    *pending = (pending_t) {
        .route = route, .reply = reply, .meta = meta, .event = event,
        .with_event = with_event, .rid = request->rid
    };
    zlistx_add_end (self->now->pending, pending);
}

//  --------------------------------------------------------------------------
//  Commit: one synced write for everything staged, then acks and events

//  Counts an ack or event the next stage would not take (it is saved; the
//  client retries or catches up by seq), and logs the first of each 1,000
static void
s_dropped (self_t *self, const char *what)
{
    if (self->dropped++ % 1000 == 0)
        zsys_warning ("persistence: the next stage is not taking %ss (%" PRIu64 " dropped so far)",
                      what, self->dropped);
}

//  Sends the ack of one staged request, then its event if it has one
static void
s_pending_send (self_t *self, pending_t *pending)
{
    stage_frame_t ack [] = {
        stage_frame_str (STAGE_REPLY), pending->route, pending->reply, stage_frame_mem ("", 0)
    };
    if (stage_send (self->broker, ack, 4))
        s_dropped (self, "ack");
    pending->acked = true;
    if (!pending->with_event)
        return;
    stage_frame_t event [] = { stage_frame_str (STAGE_EVENT), pending->meta, pending->event };
    if (stage_send (self->fanout, event, 3))
        s_dropped (self, "event");
}

//  Sends the acks and events of a commit (its write succeeded)
static void
s_commit_acks (self_t *self, generation_t *generation)
{
    size_t acked = 0;
    for (pending_t *pending = (pending_t *) zlistx_first (generation->pending); pending;
         pending = (pending_t *) zlistx_next (generation->pending)) {
        if (++acked == zlistx_size (generation->pending) / 2 + 1)
            stage_kill_point ("mid_acks");
        s_pending_send (self, pending);
    }
}

//  Rolls back the cached heads and positions a commit changed and answers
//  its requests storage_unavailable (its write failed)
static void
s_commit_refuse (self_t *self, generation_t *generation)
{
    for (size_t i = generation->undo_size; i > 0; i--)
        *generation->undo [i - 1].slot = generation->undo [i - 1].old;
    for (pending_t *pending = (pending_t *) zlistx_first (generation->pending); pending;
         pending = (pending_t *) zlistx_next (generation->pending))
        if (!pending->acked)        //  acked only in the early-ack control build
            stage_send_error (self->broker, &pending->route, pending->rid,
                              PROTO_ERR_STORAGE_UNAVAILABLE, NULL);
}

static void
s_generation_clear (generation_t *generation)
{
    zlistx_purge (generation->pending);
    zhashx_purge (generation->staged);
    store_batch_clear (generation->batch);
    generation->undo_size = 0;
    generation->taken = 0;
}

//  Ends a commit: its acks and events, or, if its write failed, its
//  refusal, and that of the commit staged on top of it, rolled back first
//  (the store refuses every write from now on)
static void
s_commit_end (self_t *self, generation_t *generation, int rc, const char *err)
{
    if (rc) {
        zsys_error ("persistence: write failed, refusing writes until restart: %s", err);
        if (generation != self->now) {
            s_positions_put (self);
            s_commit_refuse (self, self->now);
            s_generation_clear (self->now);
        }
        s_commit_refuse (self, generation);
    }
    else {
#ifndef CHORUS_UNSAFE_EARLY_ACK
        s_commit_acks (self, generation);
#endif
        self->commits++;
        self->committed += zlistx_size (generation->pending);
    }
    s_generation_clear (generation);
}

//  Hands what is staged to the committer, or ends it at once when it has
//  nothing to write. Nothing may be in flight.
static void
s_commit_start (self_t *self)
{
    assert (!self->commit);
    s_positions_put (self);
    if (zlistx_size (self->now->pending) == 0 && store_batch_count (self->now->batch) == 0) {
        self->now->taken = 0;
        return;
    }
#ifdef CHORUS_UNSAFE_EARLY_ACK
    //  Negative control for the durability tests: acks before the write.
    //  Never built into chorusd; the tests that must catch it use it. The
    //  pause lets the acks leave the process before a kill point fires, so
    //  the control fails every time, not only when the I/O thread wins.
    s_commit_acks (self, self->now);
    stage_bundle_flush ();
    zclock_sleep (20);
#endif
    if (store_batch_count (self->now->batch) == 0) {
        s_commit_end (self, self->now, 0, NULL);
        return;
    }
    stage_kill_point ("before_write");
    char *err = NULL;
    self->commit = store_commit_new (self->store, self->now->batch, true, &err);
    if (!self->commit) {
        s_commit_end (self, self->now, -1, err);
        free (err);
        return;
    }
    generation_t *written = self->now;
    self->now = self->flight;
    self->flight = written;
    zsock_send (self->committer, "sp", "COMMIT", self->commit);
}

//  Waits for the commit in flight, if there is one, and ends it
static void
s_commit_wait (self_t *self)
{
    if (!self->commit)
        return;
    void *written = NULL;
    //  A signal may interrupt the wait; the commit still comes back
    while (zsock_recv (self->committer, "p", &written) && zmq_errno () == EINTR)
        ;
    assert (written == self->commit);
    stage_kill_point ("after_write");
    char *err = NULL;
    int rc = store_commit_finish (&self->commit, &err);
    s_commit_end (self, self->flight, rc, err);
    free (err);
}

//  Makes everything staged durable and answered before the caller goes on
void
pst_commit (self_t *self)
{
    s_commit_wait (self);
    s_commit_start (self);
    s_commit_wait (self);
}

//  --------------------------------------------------------------------------
//  send

//  Digest of a body as first sent, kept in the dedupe record
static void
s_body_hash (const char *body, size_t len, uint8_t *digest)
{
    crypto_generichash (digest, BODY_HASH_SIZE, (const unsigned char *) body, len, NULL, 0);
}

//  Answers a send that was saved before (a retry); false if not a retry
static bool
s_send_dedupe (self_t *self, request_t *request, const char *cmid, size_t cmid_len,
               const char *body, size_t body_len)
{
    char key [128];
    s_cache_key (key, sizeof (key), (uint64_t []) { request->tenant, request->user }, 2,
                 cmid, cmid_len);
    uint64_t ch = 0, seq = 0, ts = 0;
    bool same = false;
    staged_send_t *staged = (staged_send_t *) zhashx_lookup (self->now->staged, key);
    if (!staged && self->commit)
        staged = (staged_send_t *) zhashx_lookup (self->flight->staged, key);
    if (staged) {
        ch = staged->ch, seq = staged->seq, ts = staged->ts;
        uint8_t digest [BODY_HASH_SIZE];
        s_body_hash (body, body_len, digest);
        same = ch == request->ch && memcmp (staged->digest, digest, BODY_HASH_SIZE) == 0;
    }
    else {
        uint8_t store_key [9 + PROTO_MAX_CLIENT_ID];
        size_t key_len = s_key_dedupe (store_key, request->user, cmid, cmid_len);
        char *value = NULL;
        size_t value_len;
        if (!store_tenant_exists (self->store, request->tenant)
        ||  store_get (self->store, request->tenant, store_key, key_len,
                       &value, &value_len, NULL) != 1)
            return false;
        proto_msg_t *record = proto_msg_decode_stage (value, value_len, NULL);
        const void *hash = NULL;
        size_t hash_len = 0;
        if (record) {
            proto_msg_u64 (record, "ch", &ch);
            proto_msg_u64 (record, "seq", &seq);
            proto_msg_u64 (record, "ts", &ts);
            proto_map_bin (proto_msg_root (record), "h", &hash, &hash_len);
        }
        //  The retry must carry the body first sent, whatever edits came since
        uint8_t digest [BODY_HASH_SIZE];
        s_body_hash (body, body_len, digest);
        same = record && ch == request->ch && hash && hash_len == BODY_HASH_SIZE
            && memcmp (hash, digest, BODY_HASH_SIZE) == 0;
        proto_msg_destroy (&record);
        free (value);
    }
    if (!same) {
        pst_reply_error (self, request, PROTO_ERR_IDEMPOTENCY_CONFLICT, NULL);
        return true;
    }
    pst_reply_begin (self, request->rid);
    proto_writer_kv_u64 (self->writer, "ch", ch);
    proto_writer_kv_u64 (self->writer, "seq", seq);
    proto_writer_kv_u64 (self->writer, "ts", ts);
    proto_writer_kv_bool (self->writer, "duplicate", true);
    proto_writer_map_end (self->writer);
    if (staged)     //  durable with its batch: answered after the next commit
        pst_pending_add (self, request, false);
    else
        stage_send_reply (self->broker, request->route, self->writer, NULL);
    return true;
}

//  Writes the quoted original {ch, seq, author, body} for a reply-privately
//  send into self->record; false if it does not exist or was deleted
static bool
s_send_quote (self_t *self, request_t *request, const msgpack_object *ref,
              proto_writer_t *writer)
{
    uint64_t ref_ch = 0, ref_seq = 0, author = 0;
    proto_map_u64 (ref, "ch", &ref_ch);
    proto_map_u64 (ref, "seq", &ref_seq);
    char *value = NULL;
    proto_msg_t *original = pst_message_get (self, request->tenant, ref_ch, ref_seq, &value);
    const char *body;
    size_t body_len;
    bool deleted = false;
    bool found = original && proto_msg_u64 (original, "author", &author)
              && proto_msg_str (original, "body", &body, &body_len)
              && !(proto_msg_bool (original, "deleted", &deleted) && deleted);
    if (found) {
        proto_writer_str (writer, "ref");
        proto_writer_map_begin (writer);
        proto_writer_kv_u64 (writer, "ch", ref_ch);
        proto_writer_kv_u64 (writer, "seq", ref_seq);
        proto_writer_kv_u64 (writer, "author", author);
        proto_writer_kv_strn (writer, "body", body, body_len);
        proto_writer_map_end (writer);
    }
    proto_msg_destroy (&original);
    free (value);
    return found;
}

//  Writes the fields of a message into an open map
static void
s_write_message_fields (proto_writer_t *writer, request_t *request, uint64_t seq,
                        uint64_t ts, const char *cmid, size_t cmid_len,
                        const char *body, size_t body_len)
{
    proto_writer_kv_u64 (writer, "ch", request->ch);
    proto_writer_kv_u64 (writer, "seq", seq);
    proto_writer_kv_u64 (writer, "author", request->user);
    proto_writer_kv_u64 (writer, "ts", ts);
    proto_writer_kv_strn (writer, "body", body, body_len);
    proto_writer_kv_strn (writer, "client_msg_id", cmid, cmid_len);
    const msgpack_object *mentions = proto_msg_get (request->ctx, "mentions");
    if (mentions && mentions->type == MSGPACK_OBJECT_ARRAY && mentions->via.array.size)
        proto_writer_kv_object (writer, "mentions", mentions);
}

//  Writes the event meta for fan-out into self->meta
static void
s_write_meta (self_t *self, request_t *request)
{
    proto_writer_reset (self->meta);
    proto_writer_map_begin (self->meta);
    proto_writer_kv_u64 (self->meta, "tn", request->tenant);
    proto_writer_kv_u64 (self->meta, "ch", request->ch);
    proto_writer_kv_u64 (self->meta, "author", request->user);
    const char *keys [] = { "ctype", "recips", "mentions" };
    for (size_t i = 0; i < 3; i++) {
        const msgpack_object *value = proto_msg_get (request->ctx, keys [i]);
        if (value)
            proto_writer_kv_object (self->meta, keys [i], value);
    }
    proto_writer_map_end (self->meta);
}

static void
s_handle_send (self_t *self, request_t *request)
{
    const char *cmid, *body;
    size_t cmid_len, body_len;
    proto_msg_str (request->req, "client_msg_id", &cmid, &cmid_len);
    proto_msg_str (request->req, "body", &body, &body_len);
    if (s_send_dedupe (self, request, cmid, cmid_len, body, body_len))
        return;
    char *err = NULL;
    if (store_failed (self->store)
    ||  store_tenant_ensure (self->store, request->tenant, &err)) {
        free (err);
        pst_reply_error (self, request, PROTO_ERR_STORAGE_UNAVAILABLE, NULL);
        return;
    }
    //  The record: the message as history returns it
    const msgpack_object *ref = proto_msg_get (request->req, "ref");
    uint64_t *head = pst_head (self, request->tenant, request->ch);
    uint64_t seq = *head + 1;
    uint64_t ts = stage_now_ms ();
    proto_writer_reset (self->record);
    proto_writer_map_begin (self->record);
    s_write_message_fields (self->record, request, seq, ts, cmid, cmid_len, body, body_len);
    if (ref && !s_send_quote (self, request, ref, self->record)) {
        proto_writer_reset (self->record);
        pst_reply_error (self, request, PROTO_ERR_MESSAGE_NOT_FOUND, "the quoted message does not exist");
        return;
    }
    proto_writer_map_end (self->record);
    s_undo_push (self, head);
    *head = seq;
    uint8_t key [9 + PROTO_MAX_CLIENT_ID];
    pst_key_message (key, request->ch, seq);
    store_batch_put (self->now->batch, request->tenant, key, 17,
                     proto_writer_data (self->record), proto_writer_size (self->record));
    //  The event: {ev: "message", ...record}
    proto_writer_reset (self->event);
    proto_writer_map_begin (self->event);
    proto_writer_kv_str (self->event, "ev", "message");
    msgpack_object_kv *fields = NULL;
    (void) fields;
    s_write_message_fields (self->event, request, seq, ts, cmid, cmid_len, body, body_len);
    if (ref)
        s_send_quote (self, request, ref, self->event);
    proto_writer_map_end (self->event);
    //  The dedupe record, in the same atomic batch
    proto_writer_reset (self->writer);
    proto_writer_map_begin (self->writer);
    proto_writer_kv_u64 (self->writer, "ch", request->ch);
    proto_writer_kv_u64 (self->writer, "seq", seq);
    proto_writer_kv_u64 (self->writer, "ts", ts);
    uint8_t digest [BODY_HASH_SIZE];
    s_body_hash (body, body_len, digest);
    proto_writer_str (self->writer, "h");
    proto_writer_bin (self->writer, digest, BODY_HASH_SIZE);
    proto_writer_map_end (self->writer);
    size_t key_len = s_key_dedupe (key, request->user, cmid, cmid_len);
    store_batch_put (self->now->batch, request->tenant, key, key_len,
                     proto_writer_data (self->writer), proto_writer_size (self->writer));
    //  Sending marks the channel read up to one's own message
    pst_position_stage (self, request->tenant, request->ch, request->user, seq, seq);
    staged_send_t *staged = (staged_send_t *) zmalloc (sizeof (staged_send_t));
    staged->ch = request->ch, staged->seq = seq, staged->ts = ts;
    memcpy (staged->digest, digest, BODY_HASH_SIZE);
    char staged_key [128];
    s_cache_key (staged_key, sizeof (staged_key),
                 (uint64_t []) { request->tenant, request->user }, 2, cmid, cmid_len);
    zhashx_update (self->now->staged, staged_key, staged);
    s_write_meta (self, request);
    pst_reply_begin (self, request->rid);
    proto_writer_kv_u64 (self->writer, "ch", request->ch);
    proto_writer_kv_u64 (self->writer, "seq", seq);
    proto_writer_kv_u64 (self->writer, "ts", ts);
    proto_writer_kv_bool (self->writer, "duplicate", false);
    proto_writer_map_end (self->writer);
    pst_pending_add (self, request, true);
}

//  --------------------------------------------------------------------------
//  edit and delete: rewrite the record in place, keep its seq

static void
s_handle_change (self_t *self, request_t *request, bool is_delete)
{
    pst_commit (self);
    uint64_t seq = 0;
    proto_msg_u64 (request->req, "seq", &seq);
    char *value = NULL;
    proto_msg_t *message = pst_message_get (self, request->tenant, request->ch, seq, &value);
    uint64_t author = 0;
    bool deleted = false;
    if (message)
        proto_msg_bool (message, "deleted", &deleted);
    if (!message || deleted)
        pst_reply_error (self, request, PROTO_ERR_MESSAGE_NOT_FOUND, NULL);
    else
    if (!proto_msg_u64 (message, "author", &author) || author != request->user)
        pst_reply_error (self, request, PROTO_ERR_NOT_AUTHOR, NULL);
    else
    if (store_failed (self->store))
        pst_reply_error (self, request, PROTO_ERR_STORAGE_UNAVAILABLE, NULL);
    else {
        uint64_t now = stage_now_ms ();
        const char *body = "";
        size_t body_len = 0;
        if (!is_delete)
            proto_msg_str (request->req, "body", &body, &body_len);
        //  Copy every field but body/edited_ts/deleted/ref, then set them
        const msgpack_object *root = proto_msg_root (message);
        proto_writer_reset (self->record);
        proto_writer_map_begin (self->record);
        for (uint32_t i = 0; i < root->via.map.size; i++) {
            const msgpack_object *k = &root->via.map.ptr [i].key;
            if (proto_obj_streq (k, "body") || proto_obj_streq (k, "edited_ts")
            ||  proto_obj_streq (k, "deleted") || (is_delete && proto_obj_streq (k, "ref"))
            ||  (is_delete && proto_obj_streq (k, "mentions")))
                continue;
            proto_writer_object (self->record, k);
            proto_writer_object (self->record, &root->via.map.ptr [i].val);
        }
        proto_writer_kv_strn (self->record, "body", body, body_len);
        if (is_delete)
            proto_writer_kv_bool (self->record, "deleted", true);
        else
            proto_writer_kv_u64 (self->record, "edited_ts", now);
        proto_writer_map_end (self->record);
        uint8_t key [17];
        pst_key_message (key, request->ch, seq);
        store_batch_put (self->now->batch, request->tenant, key, 17,
                         proto_writer_data (self->record), proto_writer_size (self->record));
        if (is_delete) {
            pst_key_deleted (key, request->ch, seq);
            store_batch_put (self->now->batch, request->tenant, key, 17, "", 0);
        }
        proto_writer_reset (self->event);
        proto_writer_map_begin (self->event);
        proto_writer_kv_str (self->event, "ev", is_delete? "message_deleted": "message_edited");
        proto_writer_kv_u64 (self->event, "ch", request->ch);
        proto_writer_kv_u64 (self->event, "seq", seq);
        if (!is_delete) {
            proto_writer_kv_strn (self->event, "body", body, body_len);
            proto_writer_kv_u64 (self->event, "edited_ts", now);
        }
        proto_writer_map_end (self->event);
        s_write_meta (self, request);
        pst_reply_begin (self, request->rid);
        proto_writer_kv_u64 (self->writer, "ch", request->ch);
        proto_writer_kv_u64 (self->writer, "seq", seq);
        if (!is_delete)
            proto_writer_kv_u64 (self->writer, "edited_ts", now);
        proto_writer_map_end (self->writer);
        pst_pending_add (self, request, true);
        pst_commit (self);
    }
    proto_msg_destroy (&message);
    free (value);
}

//  --------------------------------------------------------------------------
//  read: move the read position forward, tell the user's other sessions

static void
s_handle_read (self_t *self, request_t *request)
{
    uint64_t seq = 0;
    proto_msg_u64 (request->req, "seq", &seq);
    uint64_t head = *pst_head (self, request->tenant, request->ch);
    if (seq > head)
        seq = head;
    position_t *position = pst_position (self, request->tenant, request->ch, request->user);
    if (seq <= position->read) {
        pst_reply_begin (self, request->rid);
        proto_writer_kv_u64 (self->writer, "ch", request->ch);
        proto_writer_kv_u64 (self->writer, "read_seq", position->read);
        if (position->staged || self->commit) {
            //  A position this batch or the one in flight raised is durable
            //  only with its batch
            proto_writer_map_end (self->writer);
            pst_pending_add (self, request, false);
        }
        else
            pst_reply_send (self, request);
        return;
    }
    if (store_failed (self->store)) {
        pst_reply_error (self, request, PROTO_ERR_STORAGE_UNAVAILABLE, NULL);
        return;
    }
    pst_position_stage (self, request->tenant, request->ch, request->user, seq, 0);
    stage_kill_point ("read_position");
    proto_writer_reset (self->event);
    proto_writer_map_begin (self->event);
    proto_writer_kv_str (self->event, "ev", "read");
    proto_writer_kv_u64 (self->event, "ch", request->ch);
    proto_writer_kv_u64 (self->event, "read_seq", seq);
    proto_writer_map_end (self->event);
    proto_writer_reset (self->meta);
    proto_writer_map_begin (self->meta);
    proto_writer_kv_u64 (self->meta, "tn", request->tenant);
    proto_writer_kv_u64 (self->meta, "ch", request->ch);
    proto_writer_str (self->meta, "recips");
    stage_recip_put (proto_writer_bin_reserve (self->meta, STAGE_RECIP_SIZE), request->user, 0);
    proto_writer_map_end (self->meta);
    pst_reply_begin (self, request->rid);
    proto_writer_kv_u64 (self->writer, "ch", request->ch);
    proto_writer_kv_u64 (self->writer, "read_seq", seq);
    proto_writer_map_end (self->writer);
    pst_pending_add (self, request, true);
}

//  --------------------------------------------------------------------------
//  Dispatch

static void
s_handle_request (self_t *self, request_t *request)
{
    const char *op;
    size_t op_len;
    if (!proto_msg_str (request->req, "op", &op, &op_len))
        return;
    if (op_len == 4 && !memcmp (op, "send", 4))
        s_handle_send (self, request);
    else
    if (op_len == 4 && !memcmp (op, "edit", 4))
        s_handle_change (self, request, false);
    else
    if (op_len == 6 && !memcmp (op, "delete", 6))
        s_handle_change (self, request, true);
    else
    if (op_len == 7 && !memcmp (op, "history", 7))
        pst_history (self, request);
    else
    if (op_len == 4 && !memcmp (op, "read", 4))
        s_handle_read (self, request);
    else
    if (op_len == 4 && !memcmp (op, "sync", 4))
        pst_sync (self, request);
    else
    if (op_len == 12 && !memcmp (op, "channel_list", 12))
        pst_channel_list (self, request);
    else
        pst_reply_error (self, request, PROTO_ERR_INTERNAL, "persistence does not serve this op");
}

//  Decodes [route][ctx][req] and handles it
static void
s_handle_message (self_t *self, stage_msg_t *msg)
{
    request_t request;
    memset (&request, 0, sizeof (request));
    request.route = stage_msg_frame (msg, 0);
    const stage_frame_t *ctx = stage_msg_frame (msg, 1);
    const stage_frame_t *req = stage_msg_frame (msg, 2);
    if (request.route && ctx && req) {
        const char *inbox = self->config->persistence_endpoint;
        request.ctx = stage_decode (inbox, &proto_stage_limits, ctx, NULL);
        request.req = stage_decode (inbox, &proto_client_limits, req, NULL);
    }
    if (request.ctx && request.req) {
        proto_msg_u64 (request.req, "rid", &request.rid);
        proto_msg_u64 (request.ctx, "tn", &request.tenant);
        proto_msg_u64 (request.ctx, "uid", &request.user);
        proto_msg_u64 (request.ctx, "ch", &request.ch);
        s_handle_request (self, &request);
    }
    else
        zsys_error ("persistence: malformed request from membership");
    proto_msg_destroy (&request.ctx);
    proto_msg_destroy (&request.req);
}

//  Stages everything waiting on the inbox (up to batch_max a commit), and
//  hands it to the committer unless a commit is in flight; then it goes
//  when that one comes back, or at once if it is full
static void
s_handle_inbox (self_t *self)
{
    size_t batch_max = self->config->batch_max > 0? (size_t) self->config->batch_max: 1024;
    while (self->now->taken < batch_max) {
        stage_msg_t msg;
        if (stage_msg_recv (&msg, self->inbox))
            break;
        self->now->taken++;
        s_handle_message (self, &msg);
        stage_msg_close (&msg);
    }
    //  A busy inbox must not hold back the acks of a batch already written
    if (self->commit && (self->now->taken >= batch_max
                     ||  (zsock_events (self->committer) & ZMQ_POLLIN)))
        s_commit_wait (self);
    if (!self->commit)
        s_commit_start (self);
}

//  --------------------------------------------------------------------------
//  The persistence actor

void
persistence_actor (zsock_t *pipe, void *args)
{
    stage_thread_name ("persistence");
    self_t *self = s_self_new (pipe, (const stage_config_t *) args);
    if (self->terminated) {
        s_self_destroy (&self);
        stage_actor_failed (pipe);
        return;
    }
    zsock_signal (pipe, 0);
    while (!self->terminated) {
        zsock_t *which = (zsock_t *) zpoller_wait (self->poller, -1);
        stage_bundle_begin ();          //  the acks and events of a commit
        if (which == self->pipe)
            self->terminated = stage_actor_command (self->pipe);
        else
        if (which == self->inbox)
            s_handle_inbox (self);
        else
        if (which == (void *) self->committer) {
            s_commit_wait (self);
            s_commit_start (self);      //  what was staged meanwhile
        }
        else
            self->terminated = true;    //  interrupted
        stage_bundle_end ();
    }
    pst_commit (self);
    zsys_info ("persistence: %" PRIu64 " sends in %" PRIu64 " commits", self->committed, self->commits);
    s_self_destroy (&self);
}
