/*  =========================================================================
    fuzz_stateful - libFuzzer target: sequences of operations against the
    real membership and persistence stages, checked against a model

    Once per process (LLVMFuzzerInitialize) the real membership and
    persistence actors start on a fresh data directory in /dev/shm (tmpfs:
    RocksDB's synced writes cost little), with their own inproc endpoints.
    The target plays ingest (it pushes [route][ctx][req] into membership's
    inbox, after ingest_check, as ingest does), the broker (replies) and
    fan-out (events). Two workspaces: alice, bob and carol in one, mallory
    in the other; sessions are impersonated through the ctx, as ingest
    does after auth, so no password is hashed after the start.

    Each input is a program of up to 48 operations (one opcode byte, then
    parameter bytes): channel_create (public or private, a taken or an
    invalid name now and then), join, leave, invite, send (client_msg_ids
    reused on purpose, bodies with mentions, blank bodies), a burst of sends
    pipelined without waiting (same batch: the staged dedupe path), edit,
    delete, read, history (every anchor), channel_list, channel_browse,
    channel_members, dm_open, sync. Every reply is compared with a model of
    docs/protocol.md kept here, which lives as long as the process (so does
    the server's state; inputs are not independent, which the model handles:
    it is the model of everything sent since the start).

    Invariants checked on every reply:
    * seqs are gapless per channel: a new message gets head + 1;
    * a retry with the same client_msg_id returns the original {ch, seq,
      ts} with duplicate: true and makes no event; other content answers
      idempotency_conflict;
    * unread == messages in (read_seq, head] not deleted and not one's own
      (capped at 1,000); read_seq only moves forward, never past head;
      sending moves one's read position to one's own message;
    * a non-member never sees a private channel or a DM (channel_not_found
      everywhere, absent from channel_list and channel_browse, never a
      recipient of its events), nor anyone a channel of another workspace;
    * history pages, sync pages (limits, budget, delivered positions,
      removed) and channel ids (counters per workspace, DMs included) are
      those the model computes; message events go to exactly the members
      and carry exactly the mentions of members.

    On a mismatch the target prints the operations of the current input and
    aborts. Build: cmake -DCHORUS_FUZZ=ON; corpus tests/fuzz/corpus/fuzz_stateful.
    =========================================================================
*/
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "membership.h"
#include "persistence.h"
#include "ingest.h"
#include "../stage_testing.h"

//  1: the model follows what persistence does when a retry comes after an
//  edit (it compares the retried body with the edited one and answers
//  idempotency_conflict); 0: it follows docs/protocol.md (the original
//  body, so duplicate). See the report: 0 fails at once.
#ifndef ST_KNOWN_EDIT_DEDUPE
#   define ST_KNOWN_EDIT_DEDUPE 0
#endif

//  The operations, the model and the checks of this target are left out of
//  the coverage instrumentation (clang's no_sanitize ("coverage")): loops
//  over the model make features of its size, not of the stages' code, and
//  tracing them costs time. Coverage and comparisons are traced in what
//  they call in the stages, and in the dispatch (LLVMFuzzerTestOneInput).
//  Not inlined: clang 14 would instrument a copy inlined into a traced
//  caller.
#if defined (__clang__) && __clang_major__ >= 13
#   define ST_UNTRACED __attribute__ ((no_sanitize ("coverage"), noinline))
#else
#   define ST_UNTRACED
#endif

#define ST_USERS        4           //  alice, bob, carol (workspace 0), mallory (1)
#define ST_MAX_OPS      48          //  operations per input
#define ST_MAX_CHANNELS 48          //  channels per workspace; then no more creates
#define ST_MAX_MESSAGES 1100        //  messages per channel (past the unread cap)
#define ST_TIMEOUT_MS   10000       //  a reply later than this is a hang
#define ST_UNREAD_MAX   1000        //  unread counts stop here

#define ST_PUBLIC   0
#define ST_PRIVATE  1
#define ST_DM       2
#define ST_GROUP    3
static const char *s_st_types [] = { "public", "private", "dm", "group" };
static const char *s_st_handles [ST_USERS] = { "alice", "bob", "carol", "mallory" };
static const int s_st_tenant_of [ST_USERS] = { 0, 0, 0, 1 };

//  ---------------------------------------------------------------------
//  The model

typedef struct {
    int author;                 //  user index
    char *body;                 //  current body ("" once deleted)
    char *cmid;                 //  its client_msg_id
    bool deleted;
    uint64_t ts;                //  from the send reply
} st_msg_t;

typedef struct {
    uint64_t id;
    int tenant;                 //  0 or 1
    int type;                   //  ST_PUBLIC...
    char name [48];
    bool member [ST_USERS];
    uint64_t read [ST_USERS];   //  read positions (kept when one leaves)
    uint64_t delivered [ST_USERS];
    st_msg_t *msgs;             //  seq n is msgs [n - 1]
    size_t count;
    size_t capacity;
    unsigned dm_set;            //  DMs: bit per user index
} st_chan_t;

typedef struct {
    st_chan_t *chan;            //  where it went
    uint64_t seq;
    uint64_t ts;
    char *body;                 //  the body it was sent with
} st_dedupe_t;

typedef struct {
    //  The stages
    char dir [64];
    char endpoints [4][80];     //  membership, persistence, broker, fanout
    stage_config_t config;
    zactor_t *membership;
    zactor_t *persistence;
    zsock_t *push;              //  into membership (as ingest)
    zsock_t *broker;            //  replies
    zsock_t *fanout;            //  events
    //  The world
    uint64_t tenant_id [2];
    char tenant_name [2][32];
    uint64_t user_id [ST_USERS];
    //  The model
    st_chan_t **chans;          //  every channel, in creation order
    size_t chan_count;
    size_t chan_capacity;
    st_chan_t **by_id [2];      //  per workspace, by id - 1 (ids are dense)
    size_t by_id_capacity [2];
    uint64_t last_channel [2];  //  channel id counter per workspace
    size_t per_tenant [2];      //  channels made per workspace
    zhashx_t *dedupe;           //  "user/cmid" -> st_dedupe_t
    uint64_t rid;
    uint64_t inputs;            //  inputs run
    uint64_t names;             //  channel names made
    //  What the current input did, for a failure report
    char log [8192];
    size_t log_size;
} st_world_t;

static st_world_t *s_st;

ST_UNTRACED static void
s_st_log (const char *format, ...)
{
    if (s_st->log_size >= sizeof (s_st->log) - 128)
        return;
    va_list args;
    va_start (args, format);
    int n = vsnprintf (s_st->log + s_st->log_size, sizeof (s_st->log) - s_st->log_size,
                       format, args);
    va_end (args);
    if (n > 0)
        s_st->log_size += (size_t) n < sizeof (s_st->log) - s_st->log_size
                        ? (size_t) n: sizeof (s_st->log) - s_st->log_size - 1;
}

ST_UNTRACED static void
s_st_fail (const char *format, ...)
{
    fprintf (stderr, "fuzz_stateful: input %" PRIu64 ", operations so far:\n%s\n",
             s_st->inputs, s_st->log);
    fprintf (stderr, "fuzz_stateful: ");
    va_list args;
    va_start (args, format);
    vfprintf (stderr, format, args);
    va_end (args);
    fprintf (stderr, "\n");
    abort ();
}

#define ST_CHECK(cond, ...) do { if (!(cond)) s_st_fail (__VA_ARGS__); } while (0)

//  True if user u may see channel c (docs/protocol.md 4)
ST_UNTRACED static bool
s_st_visible (int u, st_chan_t *c)
{
    return c->tenant == s_st_tenant_of [u] && (c->type == ST_PUBLIC || c->member [u]);
}

ST_UNTRACED static st_chan_t *
s_st_chan_by_id (int tenant, uint64_t id)
{
    if (id == 0 || id > s_st->by_id_capacity [tenant])
        return NULL;
    return s_st->by_id [tenant][id - 1];
}

ST_UNTRACED static st_chan_t *
s_st_chan_add (int tenant, uint64_t id, int type, const char *name)
{
    if (s_st->chan_count == s_st->chan_capacity) {
        s_st->chan_capacity = s_st->chan_capacity? s_st->chan_capacity * 2: 64;
        s_st->chans = (st_chan_t **) realloc (s_st->chans,
                                              s_st->chan_capacity * sizeof (st_chan_t *));
        assert (s_st->chans);
    }
    st_chan_t *c = (st_chan_t *) zmalloc (sizeof (st_chan_t));
    c->id = id;
    c->tenant = tenant;
    c->type = type;
    snprintf (c->name, sizeof (c->name), "%s", name);
    s_st->chans [s_st->chan_count++] = c;
    s_st->per_tenant [tenant]++;
    if (id > s_st->by_id_capacity [tenant]) {
        size_t capacity = s_st->by_id_capacity [tenant] * 2 + 64;
        while (capacity < id)
            capacity *= 2;
        s_st->by_id [tenant] = (st_chan_t **) realloc (s_st->by_id [tenant],
                                                       capacity * sizeof (st_chan_t *));
        assert (s_st->by_id [tenant]);
        memset (s_st->by_id [tenant] + s_st->by_id_capacity [tenant], 0,
                (capacity - s_st->by_id_capacity [tenant]) * sizeof (st_chan_t *));
        s_st->by_id_capacity [tenant] = capacity;
    }
    s_st->by_id [tenant][id - 1] = c;
    return c;
}

ST_UNTRACED static void
s_st_msg_add (st_chan_t *c, int author, const char *body, const char *cmid, uint64_t ts)
{
    if (c->count == c->capacity) {
        c->capacity = c->capacity? c->capacity * 2: 16;
        c->msgs = (st_msg_t *) realloc (c->msgs, c->capacity * sizeof (st_msg_t));
        assert (c->msgs);
    }
    st_msg_t *m = &c->msgs [c->count++];
    m->author = author;
    m->body = strdup (body);
    m->cmid = strdup (cmid);
    m->deleted = false;
    m->ts = ts;
}

//  Unread of user u in c: (read, head], not deleted, not u's, capped
ST_UNTRACED static uint64_t
s_st_unread (st_chan_t *c, int u)
{
    uint64_t unread = 0;
    for (uint64_t seq = c->read [u] + 1; seq <= c->count && unread < ST_UNREAD_MAX; seq++)
        if (!c->msgs [seq - 1].deleted && c->msgs [seq - 1].author != u)
            unread++;
    return unread;
}

//  Moves positions forward only, delivered never behind read (persistence)
ST_UNTRACED static void
s_st_position (st_chan_t *c, int u, uint64_t read, uint64_t delivered)
{
    if (read > c->read [u])
        c->read [u] = read;
    if (delivered > c->delivered [u])
        c->delivered [u] = delivered;
    if (c->delivered [u] < c->read [u])
        c->delivered [u] = c->read [u];
}

//  The user ids mentioned in body that are members of c, in order of
//  first mention (membership_forward.c's rule, from docs: @handle)
ST_UNTRACED static size_t
s_st_mentions (st_chan_t *c, const char *body, uint64_t *ids)
{
    static const char *chars = "abcdefghijklmnopqrstuvwxyz0123456789._-";
    size_t count = 0;
    size_t len = strlen (body);
    for (size_t at = 0; at < len; at++) {
        if (body [at] != '@')
            continue;
        size_t end = at + 1;
        while (end < len && strchr (chars, body [end]))
            end++;
        for (int u = 0; u < ST_USERS; u++)
            if (s_st_tenant_of [u] == c->tenant && c->member [u]
            &&  strlen (s_st_handles [u]) == end - at - 1
            &&  memcmp (s_st_handles [u], body + at + 1, end - at - 1) == 0) {
                bool seen = false;
                for (size_t i = 0; i < count; i++)
                    seen = seen || ids [i] == s_st->user_id [u];
                if (!seen)
                    ids [count++] = s_st->user_id [u];
            }
        if (end > at + 1)
            at = end - 1;
    }
    return count;
}

//  ---------------------------------------------------------------------
//  Talking to the stages

typedef struct {
    proto_writer_t *writer;
    uint64_t rid;
    int user;                   //  session: user index, or -1 for admin
} st_req_t;

ST_UNTRACED static st_req_t
s_st_req (int user, const char *op)
{
    st_req_t req = { proto_writer_new (), ++s_st->rid, user };
    proto_writer_map_begin (req.writer);
    proto_writer_kv_str (req.writer, "op", op);
    proto_writer_kv_u64 (req.writer, "rid", req.rid);
    return req;
}

//  Closes the request and checks it as ingest would: returns PROTO_OK and
//  pushes it into membership's inbox, or returns ingest's refusal
ST_UNTRACED static proto_error_t
s_st_push (st_req_t *req)
{
    proto_writer_map_end (req->writer);
    const char *why = NULL;
    proto_msg_t *msg = proto_msg_decode (proto_writer_data (req->writer),
                                         proto_writer_size (req->writer), &why);
    ST_CHECK (msg, "a request we built is refused: %s", why);
    proto_error_t code = ingest_check (msg, &why);
    proto_msg_destroy (&msg);
    if (code != PROTO_OK) {
        proto_writer_destroy (&req->writer);
        return code;
    }
    proto_writer_t *ctx = proto_writer_new ();
    proto_writer_map_begin (ctx);
    bool admin = req->user < 0;
    proto_writer_kv_u64 (ctx, "tn", admin? 0: s_st->tenant_id [s_st_tenant_of [req->user]]);
    proto_writer_kv_u64 (ctx, "uid", admin? 0: s_st->user_id [req->user]);
    proto_writer_kv_bool (ctx, "adm", admin);
    proto_writer_map_end (ctx);
    uint8_t route [9] = { 'S', 'T' };
    memcpy (route + 1, &req->rid, 8);
    zmsg_t *zmsg = zmsg_new ();
    zmsg_addmem (zmsg, route, sizeof (route));
    zmsg_addmem (zmsg, proto_writer_data (ctx), proto_writer_size (ctx));
    zmsg_addmem (zmsg, proto_writer_data (req->writer), proto_writer_size (req->writer));
    ST_CHECK (stage_testing_send (&zmsg, s_st->push) == 0, "cannot push into membership");
    proto_writer_destroy (&ctx);
    proto_writer_destroy (&req->writer);
    return PROTO_OK;
}

//  The next reply from the broker socket (any rid)
ST_UNTRACED static proto_msg_t *
s_st_next_reply (void)
{
    bool replied = stage_testing_wait (s_st->broker, ST_TIMEOUT_MS);
    ST_CHECK (replied, "no reply within %d ms: a stage hangs", ST_TIMEOUT_MS);
    zmsg_t *zmsg = stage_testing_recv (s_st->broker);
    ST_CHECK (zmsg && zmsg_size (zmsg) == 4, "a broker message is not [R][route][reply][ctl]");
    char *kind = zmsg_popstr (zmsg);
    ST_CHECK (kind && streq (kind, STAGE_REPLY), "not a reply: %s", kind? kind: "?");
    free (kind);
    zframe_t *route = zmsg_pop (zmsg);
    zframe_t *body = zmsg_pop (zmsg);
    const char *why = NULL;
    proto_msg_t *reply = proto_msg_decode_stage (zframe_data (body), zframe_size (body), &why);
    ST_CHECK (reply, "a reply is not msgpack: %s", why);
    uint64_t re = 0;
    ST_CHECK (proto_msg_u64 (reply, "re", &re), "a reply without re");
    ST_CHECK (zframe_size (route) == 9 && memcmp (zframe_data (route) + 1, &re, 8) == 0,
              "reply %" PRIu64 " came back on another route", re);
    zframe_destroy (&route);
    zframe_destroy (&body);
    zmsg_destroy (&zmsg);
    return reply;
}

//  Sends a request, returns its reply; NULL with *ingest set if ingest
//  refuses it
ST_UNTRACED static proto_msg_t *
s_st_call (st_req_t *req, proto_error_t *ingest)
{
    *ingest = s_st_push (req);
    if (*ingest != PROTO_OK)
        return NULL;
    proto_msg_t *reply = s_st_next_reply ();
    uint64_t re = 0;
    proto_msg_u64 (reply, "re", &re);
    ST_CHECK (re == req->rid, "reply for rid %" PRIu64 " while waiting for %" PRIu64, re, req->rid);
    return reply;
}

//  The error code of a reply, or "" if ok
ST_UNTRACED static const char *
s_st_error (proto_msg_t *reply, char *buffer, size_t size)
{
    bool ok = false;
    ST_CHECK (proto_msg_bool (reply, "ok", &ok), "a reply without ok");
    buffer [0] = 0;
    if (!ok)
        ST_CHECK (proto_map_strcpy (proto_msg_root (reply), "error", buffer, size),
                  "an error reply without error");
    return buffer;
}

//  Checks the outcome: error is NULL for ok, else the expected code. An
//  ingest refusal counts as its code. Returns the reply when ok (the
//  caller destroys it), else NULL.
ST_UNTRACED static proto_msg_t *
s_st_expect (proto_msg_t *reply, proto_error_t ingest, const char *error, const char *what)
{
    char got [48];
    if (!reply)
        snprintf (got, sizeof (got), "%s", proto_error_name (ingest));
    else
        s_st_error (reply, got, sizeof (got));
    const char *expected = error? error: "";
    if (strcmp (got, expected)) {
        s_st_fail ("%s: expected %s, got %s", what, *expected? expected: "ok",
                   *got? got: "ok");
    }
    if (error) {
        proto_msg_destroy (&reply);
        return NULL;
    }
    return reply;
}

//  Sends a request and checks its outcome (see s_st_expect)
ST_UNTRACED static proto_msg_t *
s_st_call_expect (st_req_t *req, const char *error, const char *what)
{
    proto_error_t ingest;
    proto_msg_t *reply = s_st_call (req, &ingest);
    return s_st_expect (reply, ingest, error, what);
}

ST_UNTRACED static uint64_t
s_st_u64 (const msgpack_object *map, const char *key)
{
    uint64_t value = 0;
    ST_CHECK (proto_map_u64 (map, key, &value), "%s is not an unsigned integer", key);
    return value;
}

//  The next event on the fan-out socket; NULL if none within timeout
ST_UNTRACED static proto_msg_t *
s_st_next_event (int timeout, proto_msg_t **meta)
{
    if (!stage_testing_wait (s_st->fanout, timeout))
        return NULL;
    zmsg_t *zmsg = stage_testing_recv (s_st->fanout);
    ST_CHECK (zmsg && zmsg_size (zmsg) == 3, "a fan-out message is not [EV][meta][event]");
    char *kind = zmsg_popstr (zmsg);
    ST_CHECK (kind && streq (kind, STAGE_EVENT), "not an event");
    free (kind);
    zframe_t *meta_frame = zmsg_pop (zmsg);
    zframe_t *event_frame = zmsg_pop (zmsg);
    *meta = proto_msg_decode_stage (zframe_data (meta_frame), zframe_size (meta_frame), NULL);
    proto_msg_t *event = proto_msg_decode_stage (zframe_data (event_frame),
                                                 zframe_size (event_frame), NULL);
    ST_CHECK (*meta && event, "an event or its meta is not msgpack");
    zframe_destroy (&meta_frame);
    zframe_destroy (&event_frame);
    zmsg_destroy (&zmsg);
    return event;
}

ST_UNTRACED static bool
s_st_is_message_event (proto_msg_t *event)
{
    const msgpack_object *ev = proto_msg_get (event, "ev");
    return proto_obj_streq (ev, "message") || proto_obj_streq (ev, "message_edited")
        || proto_obj_streq (ev, "message_deleted");
}

//  Checks that a meta's recips are exactly the members of c
ST_UNTRACED static void
s_st_check_recips (proto_msg_t *meta, st_chan_t *c, const char *what)
{
    const msgpack_object *recips = proto_msg_get (meta, "recips");
    ST_CHECK (recips && recips->type == MSGPACK_OBJECT_BIN
              && recips->via.bin.size % STAGE_RECIP_SIZE == 0, "%s: no recips", what);
    unsigned seen = 0;
    for (uint32_t i = 0; i < recips->via.bin.size / STAGE_RECIP_SIZE; i++) {
        uint64_t uid, flags;
        stage_recip_get ((const uint8_t *) recips->via.bin.ptr + i * STAGE_RECIP_SIZE,
                         &uid, &flags);
        (void) flags;
        int u = -1;
        for (int k = 0; k < ST_USERS; k++)
            if (s_st->user_id [k] == uid)
                u = k;
        ST_CHECK (u >= 0 && c->member [u] && c->tenant == s_st_tenant_of [u],
                  "%s: user %" PRIu64 " gets an event of channel %" PRIu64
                  " without being a member", what, uid, c->id);
        ST_CHECK (!(seen & (1u << u)), "%s: a recipient twice", what);
        seen |= 1u << u;
    }
    for (int u = 0; u < ST_USERS; u++)
        ST_CHECK (!c->member [u] || (seen & (1u << u)),
                  "%s: member %s of channel %" PRIu64 " is not a recipient", what,
                  s_st_handles [u], c->id);
}

//  Waits for the message event (ev) of c/seq: skips other kinds of event,
//  fails on another message event (each is waited for when it is made)
ST_UNTRACED static proto_msg_t *
s_st_wait_event (const char *ev, st_chan_t *c, uint64_t seq, proto_msg_t **meta)
{
    while (true) {
        proto_msg_t *event = s_st_next_event (ST_TIMEOUT_MS, meta);
        ST_CHECK (event, "no %s event for %" PRIu64 "/%" PRIu64, ev, c->id, seq);
        if (s_st_is_message_event (event)) {
            uint64_t ch = 0, got_seq = 0;
            proto_msg_u64 (event, "ch", &ch);
            proto_msg_u64 (event, "seq", &got_seq);
            ST_CHECK (proto_obj_streq (proto_msg_get (event, "ev"), ev) && ch == c->id
                      && got_seq == seq, "unexpected message event %" PRIu64 "/%" PRIu64
                      " while waiting for %s %" PRIu64 "/%" PRIu64, ch, got_seq, ev, c->id, seq);
            s_st_check_recips (*meta, c, ev);
            return event;
        }
        proto_msg_destroy (&event);
        proto_msg_destroy (meta);
    }
}

//  Reads what events are there now: none may be a message event
ST_UNTRACED static void
s_st_drain_events (void)
{
    proto_msg_t *meta, *event;
    while ((event = s_st_next_event (0, &meta))) {
        ST_CHECK (!s_st_is_message_event (event), "a message event nobody made");
        proto_msg_destroy (&event);
        proto_msg_destroy (&meta);
    }
}

//  Checks a message object (history, sync) against the model
ST_UNTRACED static void
s_st_check_message (const msgpack_object *m, st_chan_t *c, uint64_t seq, const char *what)
{
    ST_CHECK (m->type == MSGPACK_OBJECT_MAP, "%s: a message is not a map", what);
    ST_CHECK (s_st_u64 (m, "seq") == seq && s_st_u64 (m, "ch") == c->id,
              "%s: expected message %" PRIu64 "/%" PRIu64 ", got %" PRIu64, what, c->id,
              seq, s_st_u64 (m, "seq"));
    st_msg_t *model = &c->msgs [seq - 1];
    ST_CHECK (s_st_u64 (m, "author") == s_st->user_id [model->author], "%s: author", what);
    const char *body;
    size_t len;
    ST_CHECK (proto_map_str (m, "body", &body, &len) && len == strlen (model->body)
              && memcmp (body, model->body, len) == 0,
              "%s: body of %" PRIu64 "/%" PRIu64 " is not %s", what, c->id, seq, model->body);
    bool deleted = false;
    proto_map_bool (m, "deleted", &deleted);
    ST_CHECK (deleted == model->deleted, "%s: deleted flag of seq %" PRIu64, what, seq);
    const char *cmid;
    ST_CHECK (proto_map_str (m, "client_msg_id", &cmid, &len) && len == strlen (model->cmid)
              && memcmp (cmid, model->cmid, len) == 0, "%s: client_msg_id", what);
    ST_CHECK (s_st_u64 (m, "ts") == model->ts, "%s: ts", what);
}

//  ---------------------------------------------------------------------
//  Reading the program

typedef struct {
    const uint8_t *pos;
    const uint8_t *end;
} st_input_t;

ST_UNTRACED static uint8_t
s_st_byte (st_input_t *in)
{
    return in->pos < in->end? *in->pos++: 0;
}

ST_UNTRACED static int
s_st_user (st_input_t *in)
{
    return s_st_byte (in) % ST_USERS;
}

//  A channel id for user u to use: mostly the id of a recent channel,
//  sometimes of any, sometimes one past its workspace's last id. Ids are
//  per workspace: the channel is the one with that id in u's workspace
//  (NULL if none), whichever workspace the id was picked from, as the
//  server resolves it with the session's tenant.
ST_UNTRACED static st_chan_t *
s_st_pick (st_input_t *in, int u, uint64_t *id)
{
    uint8_t b = s_st_byte (in);
    if (s_st->chan_count == 0 || b >= 250)
        *id = s_st->last_channel [s_st_tenant_of [u]] + 1 + (b & 7);
    else {
        size_t n = s_st->chan_count;
        size_t index = b < 200? n - 1 - (b % (n < 12? n: 12)): (b * 7919u) % n;
        *id = s_st->chans [index]->id;
    }
    return s_st_chan_by_id (s_st_tenant_of [u], *id);
}

static const char *s_st_bodies [] = {
    "hello", "@bob can you look?", "hey @alice and @carol!", "@bob @bob twice",
    "@mallory is elsewhere", "mail@example.com", "κόσμε 😀", "   ", "",
    "@carol.", "second", "x"
};
#define ST_BODY_COUNT (sizeof (s_st_bodies) / sizeof (s_st_bodies [0]))

//  The ingest error for a body, or NULL
ST_UNTRACED static const char *
s_st_body_error (const char *body)
{
    for (const char *p = body; *p; p++)
        if (*p != ' ')
            return NULL;
    return "no_text";
}

//  ---------------------------------------------------------------------
//  Operations

//  The expected membership refusal of a channel op, or NULL
ST_UNTRACED static const char *
s_st_channel_error (int u, st_chan_t *c, bool member_needed)
{
    if (!c || !s_st_visible (u, c))
        return "channel_not_found";
    if (member_needed && !c->member [u])
        return "not_in_channel";
    return NULL;
}

ST_UNTRACED static void
s_st_op_create (st_input_t *in)
{
    int u = s_st_user (in);
    uint8_t b = s_st_byte (in);
    int tenant = s_st_tenant_of [u];
    bool is_private = b & 1;
    char name [48];
    const char *expected = NULL;
    st_chan_t *taken = NULL;
    if ((b & 6) == 2 && s_st->chan_count) {
        //  A name in use in the workspace (public or private)
        for (size_t i = s_st->chan_count; i > 0 && !taken; i--)
            if (s_st->chans [i - 1]->tenant == tenant && s_st->chans [i - 1]->type <= ST_PRIVATE)
                taken = s_st->chans [i - 1];
    }
    if (taken) {
        snprintf (name, sizeof (name), "%s", taken->name);
        expected = "name_taken";
    }
    else
    if ((b & 6) == 4) {
        snprintf (name, sizeof (name), "Bad Name");
        expected = "invalid_args";
    }
    else {
        if (s_st->per_tenant [tenant] >= ST_MAX_CHANNELS)
            return;
        snprintf (name, sizeof (name), "c%d-%" PRIu64, getpid (), ++s_st->names);
    }
    s_st_log ("create %s %s%s\n", s_st_handles [u], name, is_private? " private": "");
    st_req_t req = s_st_req (u, "channel_create");
    proto_writer_kv_str (req.writer, "name", name);
    proto_writer_kv_bool (req.writer, "private", is_private);
    proto_msg_t *reply = s_st_call_expect (&req, expected, "channel_create");
    if (!reply)
        return;
    const msgpack_object *channel = proto_msg_get (reply, "channel");
    ST_CHECK (channel, "channel_create: no channel");
    uint64_t id = s_st_u64 (channel, "id");
    ST_CHECK (id == s_st->last_channel [tenant] + 1,
              "channel ids not gapless: %" PRIu64 " after %" PRIu64, id,
              s_st->last_channel [tenant]);
    ST_CHECK (proto_obj_streq (proto_map_get (channel, "type"), s_st_types [is_private]),
              "channel_create: type");
    ST_CHECK (proto_obj_streq (proto_map_get (channel, "name"), name), "channel_create: name");
    s_st->last_channel [tenant] = id;
    st_chan_t *c = s_st_chan_add (tenant, id, is_private? ST_PRIVATE: ST_PUBLIC, name);
    c->member [u] = true;
    proto_msg_destroy (&reply);
}

ST_UNTRACED static void
s_st_op_join (st_input_t *in)
{
    int u = s_st_user (in);
    uint64_t id;
    st_chan_t *c = s_st_pick (in, u, &id);
    s_st_log ("join %s %" PRIu64 "\n", s_st_handles [u], id);
    const char *expected = s_st_channel_error (u, c, false);
    st_req_t req = s_st_req (u, "channel_join");
    proto_writer_kv_u64 (req.writer, "ch", id);
    proto_msg_t *reply = s_st_call_expect (&req, expected, "channel_join");
    if (reply) {
        c->member [u] = true;
        const msgpack_object *channel = proto_msg_get (reply, "channel");
        ST_CHECK (channel && s_st_u64 (channel, "id") == c->id, "channel_join: channel");
        proto_msg_destroy (&reply);
    }
}

ST_UNTRACED static void
s_st_op_leave (st_input_t *in)
{
    int u = s_st_user (in);
    uint64_t id;
    st_chan_t *c = s_st_pick (in, u, &id);
    s_st_log ("leave %s %" PRIu64 "\n", s_st_handles [u], id);
    const char *expected = s_st_channel_error (u, c, false);
    if (!expected && c->type >= ST_DM)
        expected = "invalid_args";
    st_req_t req = s_st_req (u, "channel_leave");
    proto_writer_kv_u64 (req.writer, "ch", id);
    proto_msg_t *reply = s_st_call_expect (&req, expected, "channel_leave");
    if (reply) {
        c->member [u] = false;
        proto_msg_destroy (&reply);
    }
}

ST_UNTRACED static void
s_st_op_invite (st_input_t *in)
{
    int u = s_st_user (in);
    uint64_t id;
    st_chan_t *c = s_st_pick (in, u, &id);
    uint8_t t = s_st_byte (in) % (ST_USERS + 1);
    uint64_t target = t < ST_USERS? s_st->user_id [t]
                    : s_st->user_id [0] + 1000;        //  nobody
    s_st_log ("invite %s %" PRIu64 " %" PRIu64 "\n", s_st_handles [u], id, target);
    const char *expected = s_st_channel_error (u, c, true);
    if (!expected && c->type >= ST_DM)
        expected = "invalid_args";
    else
    if (!expected && (t == ST_USERS || s_st_tenant_of [t] != c->tenant))
        expected = "user_not_found";
    st_req_t req = s_st_req (u, "channel_invite");
    proto_writer_kv_u64 (req.writer, "ch", id);
    proto_writer_kv_u64 (req.writer, "user", target);
    proto_msg_t *reply = s_st_call_expect (&req, expected, "channel_invite");
    if (reply) {
        c->member [t] = true;
        proto_msg_destroy (&reply);
    }
}

//  A send as the model sees it, to check its reply and event
typedef struct {
    int user;
    st_chan_t *chan;
    uint64_t id;
    char cmid [80];
    const char *body;
    const char *expected;       //  error, or NULL
    bool fresh;                 //  a new message (seq = head + 1)
    st_dedupe_t *original;      //  a retry of it
    uint64_t seq;               //  the new message's seq
    uint64_t mentions [ST_USERS];
    size_t mention_count;
    proto_error_t ingest;
    uint64_t rid;
} st_send_t;

//  Works out what a send should do, and applies it to the model
ST_UNTRACED static void
s_st_send_plan (st_send_t *send)
{
    int u = send->user;
    st_chan_t *c = send->chan;
    //  Ingest's order: client_msg_id, then body (ingest.c, s_check_rules)
    if (strlen (send->cmid) == 0 || strlen (send->cmid) > PROTO_MAX_CLIENT_ID)
        send->expected = "invalid_args";
    if (!send->expected)
        send->expected = s_st_body_error (send->body);
    if (!send->expected)
        send->expected = s_st_channel_error (u, c, true);
    if (send->expected)
        return;
    char key [128];
    snprintf (key, sizeof (key), "%d/%s", u, send->cmid);
    st_dedupe_t *original = (st_dedupe_t *) zhashx_lookup (s_st->dedupe, key);
    if (original) {
        st_msg_t *m = &original->chan->msgs [original->seq - 1];
        //  A retry must carry the body first sent, edited or deleted since
        bool same = original->chan == c
                 && (ST_KNOWN_EDIT_DEDUPE? (m->deleted || streq (send->body, m->body))
                                         : streq (send->body, original->body));
        if (same)
            send->original = original;
        else
            send->expected = "idempotency_conflict";
        return;
    }
    if (c->count >= ST_MAX_MESSAGES) {
        send->expected = "skip";
        return;
    }
    send->fresh = true;
    send->seq = c->count + 1;
    send->mention_count = s_st_mentions (c, send->body, send->mentions);
    s_st_msg_add (c, u, send->body, send->cmid, 0);
    s_st_position (c, u, send->seq, send->seq);
    st_dedupe_t *record = (st_dedupe_t *) zmalloc (sizeof (st_dedupe_t));
    record->chan = c;
    record->seq = send->seq;
    record->body = strdup (send->body);
    zhashx_insert (s_st->dedupe, key, record);
    send->original = record;
}

ST_UNTRACED static void
s_st_send_push (st_send_t *send)
{
    st_req_t req = s_st_req (send->user, "send");
    send->rid = req.rid;
    proto_writer_kv_u64 (req.writer, "ch", send->id);
    proto_writer_kv_str (req.writer, "client_msg_id", send->cmid);
    proto_writer_kv_str (req.writer, "body", send->body);
    send->ingest = s_st_push (&req);
}

//  Checks a send's reply (NULL if ingest refused it), then its event
ST_UNTRACED static void
s_st_send_check (st_send_t *send, proto_msg_t *reply)
{
    proto_msg_t *ok = s_st_expect (reply, send->ingest, send->expected, "send");
    if (!ok)
        return;
    uint64_t seq = s_st_u64 (proto_msg_root (ok), "seq");
    uint64_t ts = s_st_u64 (proto_msg_root (ok), "ts");
    bool duplicate = true;
    ST_CHECK (proto_msg_bool (ok, "duplicate", &duplicate), "send: no duplicate flag");
    ST_CHECK (s_st_u64 (proto_msg_root (ok), "ch") == send->chan->id, "send: ch");
    if (send->fresh) {
        ST_CHECK (!duplicate, "send: a new message marked duplicate");
        ST_CHECK (seq == send->seq, "seqs not gapless in %" PRIu64 ": got %" PRIu64
                  ", expected %" PRIu64, send->chan->id, seq, send->seq);
        send->chan->msgs [seq - 1].ts = ts;
        send->original->ts = ts;
        proto_msg_t *meta;
        proto_msg_t *event = s_st_wait_event ("message", send->chan, seq, &meta);
        ST_CHECK (s_st_u64 (proto_msg_root (event), "author") == s_st->user_id [send->user]
                  && s_st_u64 (proto_msg_root (event), "ts") == ts, "message event: author, ts");
        ST_CHECK (proto_obj_streq (proto_msg_get (event, "body"), send->body),
                  "message event: body");
        const msgpack_object *mentions = proto_msg_get (meta, "mentions");
        ST_CHECK (mentions && mentions->type == MSGPACK_OBJECT_ARRAY
                  && mentions->via.array.size == send->mention_count,
                  "mentions of '%s': %u, expected %zu", send->body,
                  mentions? mentions->via.array.size: 0, send->mention_count);
        for (size_t i = 0; i < send->mention_count; i++)
            ST_CHECK (mentions->via.array.ptr [i].via.u64 == send->mentions [i],
                      "mentions of '%s' in another order", send->body);
        proto_msg_destroy (&event);
        proto_msg_destroy (&meta);
    }
    else {
        ST_CHECK (duplicate, "send: a retry not marked duplicate");
        ST_CHECK (seq == send->original->seq && ts == send->original->ts,
                  "dedupe: retry got %" PRIu64 "@%" PRIu64 ", original %" PRIu64 "@%" PRIu64,
                  seq, ts, send->original->seq, send->original->ts);
    }
    proto_msg_destroy (&ok);
}

//  A client_msg_id: one of 8 of this input, one of an earlier input, or
//  an invalid one
ST_UNTRACED static void
s_st_cmid (st_input_t *in, char *cmid, size_t size)
{
    uint8_t b = s_st_byte (in);
    if (b < 224)
        snprintf (cmid, size, "i%" PRIu64 "-%u", s_st->inputs, b & 7);
    else
    if (b < 248)
        snprintf (cmid, size, "i%" PRIu64 "-%u", s_st->inputs > (b & 7)? s_st->inputs - (b & 7): 0,
                  (b >> 3) & 7);
    else
    if (b < 252)
        snprintf (cmid, size, "%s", "");
    else
        snprintf (cmid, size, "%065d", 7);
}

ST_UNTRACED static void
s_st_send_read (st_input_t *in, st_send_t *send)
{
    memset (send, 0, sizeof (*send));
    send->user = s_st_user (in);
    send->chan = s_st_pick (in, send->user, &send->id);
    s_st_cmid (in, send->cmid, sizeof (send->cmid));
    send->body = s_st_bodies [s_st_byte (in) % ST_BODY_COUNT];
}

ST_UNTRACED static void
s_st_op_send (st_input_t *in)
{
    st_send_t send;
    s_st_send_read (in, &send);
    s_st_log ("send %s %" PRIu64 " %s '%s'\n", s_st_handles [send.user], send.id, send.cmid,
              send.body);
    s_st_send_plan (&send);
    if (send.expected && streq (send.expected, "skip"))
        return;
    s_st_send_push (&send);
    s_st_send_check (&send, send.ingest == PROTO_OK? s_st_next_reply (): NULL);
}

//  Several sends pushed at once: persistence may stage them in one batch
ST_UNTRACED static void
s_st_op_burst (st_input_t *in)
{
    st_send_t sends [6];
    size_t count = 2 + s_st_byte (in) % 5;
    size_t pushed = 0;
    s_st_log ("burst of %zu:\n", count);
    for (size_t i = 0; i < count; i++) {
        s_st_send_read (in, &sends [i]);
        s_st_log ("  send %s %" PRIu64 " %s '%s'\n", s_st_handles [sends [i].user], sends [i].id,
                  sends [i].cmid, sends [i].body);
        s_st_send_plan (&sends [i]);
        if (sends [i].expected && streq (sends [i].expected, "skip")) {
            sends [i].rid = 0;
            continue;
        }
        s_st_send_push (&sends [i]);
        if (sends [i].ingest == PROTO_OK)
            pushed++;
    }
    proto_msg_t *replies [6] = { NULL };
    for (size_t n = 0; n < pushed; n++) {
        proto_msg_t *reply = s_st_next_reply ();
        uint64_t re = 0;
        proto_msg_u64 (reply, "re", &re);
        size_t i = 0;
        while (i < count && !(sends [i].rid == re && sends [i].ingest == PROTO_OK))
            i++;
        ST_CHECK (i < count && !replies [i], "burst: a reply for rid %" PRIu64 " nobody sent", re);
        replies [i] = reply;
    }
    //  In push order, so events come in the order they were made
    for (size_t i = 0; i < count; i++)
        if (sends [i].rid)
            s_st_send_check (&sends [i], replies [i]);
}

//  A seq to use: mostly one that exists, sometimes 0 or past the head
ST_UNTRACED static uint64_t
s_st_seq (st_input_t *in, st_chan_t *c)
{
    uint8_t b = s_st_byte (in);
    uint64_t head = c? c->count: 0;
    if (b >= 240)
        return b == 255? 0: head + 1 + (b & 3);
    return head? head - (b % (head < 8? head: 8)): 1;
}

ST_UNTRACED static void
s_st_op_change (st_input_t *in, bool is_delete)
{
    int u = s_st_user (in);
    uint64_t id;
    st_chan_t *c = s_st_pick (in, u, &id);
    uint64_t seq = s_st_seq (in, c);
    const char *body = is_delete? "": s_st_bodies [s_st_byte (in) % ST_BODY_COUNT];
    s_st_log ("%s %s %" PRIu64 "/%" PRIu64 "%s%s\n", is_delete? "delete": "edit",
              s_st_handles [u], id, seq, is_delete? "": " ", is_delete? "": body);
    const char *expected = seq == 0? "invalid_args": NULL;
    if (!expected && !is_delete)
        expected = s_st_body_error (body);
    if (!expected)
        expected = s_st_channel_error (u, c, true);
    if (!expected && (seq > c->count || c->msgs [seq - 1].deleted))
        expected = "message_not_found";
    if (!expected && c->msgs [seq - 1].author != u)
        expected = "not_author";
    st_req_t req = s_st_req (u, is_delete? "delete": "edit");
    proto_writer_kv_u64 (req.writer, "ch", id);
    proto_writer_kv_u64 (req.writer, "seq", seq);
    if (!is_delete)
        proto_writer_kv_str (req.writer, "body", body);
    proto_msg_t *reply = s_st_call_expect (&req, expected, is_delete? "delete": "edit");
    if (!reply)
        return;
    ST_CHECK (s_st_u64 (proto_msg_root (reply), "seq") == seq, "edit/delete: seq");
    st_msg_t *m = &c->msgs [seq - 1];
    free (m->body);
    m->body = strdup (is_delete? "": body);
    m->deleted = is_delete;
    proto_msg_t *meta;
    proto_msg_t *event = s_st_wait_event (is_delete? "message_deleted": "message_edited",
                                          c, seq, &meta);
    if (!is_delete) {
        uint64_t ids [ST_USERS];
        size_t count = s_st_mentions (c, body, ids);
        const msgpack_object *mentions = proto_msg_get (meta, "mentions");
        ST_CHECK (mentions && mentions->type == MSGPACK_OBJECT_ARRAY
                  && mentions->via.array.size == count, "edit: mentions of '%s'", body);
    }
    proto_msg_destroy (&event);
    proto_msg_destroy (&meta);
    proto_msg_destroy (&reply);
}

ST_UNTRACED static void
s_st_op_read (st_input_t *in)
{
    int u = s_st_user (in);
    uint64_t id;
    st_chan_t *c = s_st_pick (in, u, &id);
    uint64_t seq = s_st_seq (in, c);
    s_st_log ("read %s %" PRIu64 "/%" PRIu64 "\n", s_st_handles [u], id, seq);
    const char *expected = seq == 0? "invalid_args": s_st_channel_error (u, c, true);
    st_req_t req = s_st_req (u, "read");
    proto_writer_kv_u64 (req.writer, "ch", id);
    proto_writer_kv_u64 (req.writer, "seq", seq);
    proto_msg_t *reply = s_st_call_expect (&req, expected, "read");
    if (!reply)
        return;
    s_st_position (c, u, seq < c->count? seq: c->count, 0);
    uint64_t got = s_st_u64 (proto_msg_root (reply), "read_seq");
    ST_CHECK (got == c->read [u], "read: read_seq %" PRIu64 ", expected %" PRIu64, got,
              c->read [u]);
    proto_msg_destroy (&reply);
}

ST_UNTRACED static void
s_st_op_history (st_input_t *in)
{
    int u = s_st_user (in);
    uint64_t id;
    st_chan_t *c = s_st_pick (in, u, &id);
    uint8_t mode = s_st_byte (in) % 6;
    uint64_t anchor = s_st_seq (in, c);
    uint8_t lb = s_st_byte (in);
    uint64_t limit = lb < 200? 1 + lb % 12: lb < 250? 50 + lb: 0;     //  0: none given
    static const char *modes [] = {
        "newest", "before", "after", "around", "around_unread", "newest"
    };
    s_st_log ("history %s %" PRIu64 " %s %" PRIu64 " limit %" PRIu64 "\n", s_st_handles [u],
              id, modes [mode], anchor, limit);
    st_req_t req = s_st_req (u, "history");
    proto_writer_kv_u64 (req.writer, "ch", id);
    if (mode >= 1 && mode <= 3)
        proto_writer_kv_u64 (req.writer, modes [mode], anchor);
    if (mode == 4)
        proto_writer_kv_bool (req.writer, "around_unread", true);
    if (limit)
        proto_writer_kv_u64 (req.writer, "limit", limit);
    const char *expected = NULL;
    if (limit > PROTO_PAGE_MAX || (mode >= 1 && mode <= 3 && anchor == 0))
        expected = "invalid_args";
    if (!expected)
        expected = s_st_channel_error (u, c, false);
    proto_msg_t *reply = s_st_call_expect (&req, expected, "history");
    if (!reply)
        return;
    //  The page persistence must give (its window rules, docs 4 "History")
    uint64_t head = c->count, lo, hi;
    uint64_t lim = limit? limit: PROTO_PAGE_DEFAULT;
    if (mode == 1) {
        hi = anchor - 1 < head? anchor - 1: head;
        lo = hi >= lim? hi - lim + 1: 1;
    }
    else
    if (mode == 2) {
        lo = anchor + 1;
        hi = anchor + lim < head? anchor + lim: head;
    }
    else
    if (mode == 3 || (mode == 4 && c->read [u] < head)) {
        uint64_t at = mode == 3? anchor: c->read [u] + 1;
        lo = at > lim / 2? at - lim / 2: 1;
        hi = lo + lim - 1 < head? lo + lim - 1: head;
        lo = hi >= lim? hi - lim + 1: 1;
        if (at <= head)
            ST_CHECK (lo <= at && at <= hi, "history around %" PRIu64 ": not in the page", at);
    }
    else {
        hi = head;
        lo = hi >= lim? hi - lim + 1: 1;
    }
    const msgpack_object *messages = proto_msg_get (reply, "messages");
    ST_CHECK (messages && messages->type == MSGPACK_OBJECT_ARRAY, "history: no messages");
    uint64_t expected_count = head > 0 && lo <= hi? hi - lo + 1: 0;
    ST_CHECK (messages->via.array.size == expected_count,
              "history %s %" PRIu64 " limit %" PRIu64 " of %" PRIu64 ": %u messages, expected %"
              PRIu64, modes [mode], anchor, lim, head, messages->via.array.size, expected_count);
    ST_CHECK (expected_count <= lim, "history: page over the limit");
    for (uint32_t i = 0; i < messages->via.array.size; i++)
        s_st_check_message (&messages->via.array.ptr [i], c, lo + i, "history");
    ST_CHECK (s_st_u64 (proto_msg_root (reply), "head") == head, "history: head");
    ST_CHECK (s_st_u64 (proto_msg_root (reply), "read_seq") == c->read [u], "history: read_seq");
    bool before = false, after = false;
    proto_msg_bool (reply, "has_more_before", &before);
    proto_msg_bool (reply, "has_more_after", &after);
    if (expected_count)
        ST_CHECK (before == (lo > 1) && after == (hi < head), "history: has_more flags");
    proto_msg_destroy (&reply);
}

ST_UNTRACED static void
s_st_op_channel_list (st_input_t *in)
{
    int u = s_st_user (in);
    s_st_log ("channel_list %s\n", s_st_handles [u]);
    st_req_t req = s_st_req (u, "channel_list");
    proto_msg_t *reply = s_st_call_expect (&req, NULL, "channel_list");
    const msgpack_object *channels = proto_msg_get (reply, "channels");
    ST_CHECK (channels && channels->type == MSGPACK_OBJECT_ARRAY, "channel_list: no channels");
    size_t expected = 0;
    for (size_t i = 0; i < s_st->chan_count; i++)
        if (s_st->chans [i]->tenant == s_st_tenant_of [u] && s_st->chans [i]->member [u])
            expected++;
    ST_CHECK (channels->via.array.size == expected, "channel_list of %s: %u channels, expected %zu",
              s_st_handles [u], channels->via.array.size, expected);
    for (uint32_t i = 0; i < channels->via.array.size; i++) {
        const msgpack_object *item = &channels->via.array.ptr [i];
        st_chan_t *c = s_st_chan_by_id (s_st_tenant_of [u], s_st_u64 (item, "id"));
        ST_CHECK (c && c->member [u], "channel_list of %s: channel %" PRIu64 " is not a membership",
                  s_st_handles [u], s_st_u64 (item, "id"));
        ST_CHECK (proto_obj_streq (proto_map_get (item, "type"), s_st_types [c->type]),
                  "channel_list: type of %" PRIu64, c->id);
        uint64_t head = s_st_u64 (item, "head"), read = s_st_u64 (item, "read_seq");
        uint64_t unread = s_st_u64 (item, "unread");
        ST_CHECK (head == c->count, "channel_list: head of %" PRIu64 " is %" PRIu64
                  ", expected %zu", c->id, head, c->count);
        ST_CHECK (read == c->read [u] && read <= head, "channel_list: read_seq of %" PRIu64
                  " is %" PRIu64 ", expected %" PRIu64, c->id, read, c->read [u]);
        ST_CHECK (unread == s_st_unread (c, u), "unread of %s in %" PRIu64 " is %" PRIu64
                  ", expected %" PRIu64, s_st_handles [u], c->id, unread, s_st_unread (c, u));
        ST_CHECK (s_st_u64 (item, "members") == (uint64_t) (c->member [0] + c->member [1]
                  + c->member [2] + c->member [3]), "channel_list: members of %" PRIu64, c->id);
    }
    proto_msg_destroy (&reply);
}

ST_UNTRACED static void
s_st_op_browse (st_input_t *in)
{
    int u = s_st_user (in);
    s_st_log ("channel_browse %s\n", s_st_handles [u]);
    st_req_t req = s_st_req (u, "channel_browse");
    proto_msg_t *reply = s_st_call_expect (&req, NULL, "channel_browse");
    const msgpack_object *channels = proto_msg_get (reply, "channels");
    ST_CHECK (channels && channels->type == MSGPACK_OBJECT_ARRAY, "browse: no channels");
    size_t expected = 0;
    for (size_t i = 0; i < s_st->chan_count; i++)
        if (s_st->chans [i]->tenant == s_st_tenant_of [u] && s_st->chans [i]->type == ST_PUBLIC)
            expected++;
    ST_CHECK (channels->via.array.size == expected, "browse: %u channels, expected %zu",
              channels->via.array.size, expected);
    for (uint32_t i = 0; i < channels->via.array.size; i++) {
        const msgpack_object *item = &channels->via.array.ptr [i];
        st_chan_t *c = s_st_chan_by_id (s_st_tenant_of [u], s_st_u64 (item, "id"));
        ST_CHECK (c && c->type == ST_PUBLIC, "browse shows a channel that is not public");
        bool joined = false;
        proto_map_bool (item, "joined", &joined);
        ST_CHECK (joined == c->member [u], "browse: joined of %" PRIu64, c->id);
    }
    proto_msg_destroy (&reply);
}

ST_UNTRACED static void
s_st_op_members (st_input_t *in)
{
    int u = s_st_user (in);
    uint64_t id;
    st_chan_t *c = s_st_pick (in, u, &id);
    s_st_log ("channel_members %s %" PRIu64 "\n", s_st_handles [u], id);
    st_req_t req = s_st_req (u, "channel_members");
    proto_writer_kv_u64 (req.writer, "ch", id);
    proto_msg_t *reply = s_st_call_expect (&req, s_st_channel_error (u, c, false),
                                           "channel_members");
    if (!reply)
        return;
    const msgpack_object *members = proto_msg_get (reply, "members");
    ST_CHECK (members && members->type == MSGPACK_OBJECT_ARRAY, "members: none");
    unsigned seen = 0;
    for (uint32_t i = 0; i < members->via.array.size; i++) {
        uint64_t uid = s_st_u64 (&members->via.array.ptr [i], "id");
        for (int k = 0; k < ST_USERS; k++)
            if (s_st->user_id [k] == uid)
                seen |= 1u << k;
    }
    for (int k = 0; k < ST_USERS; k++)
        ST_CHECK (!!(seen & (1u << k)) == c->member [k], "members of %" PRIu64 ": %s", c->id,
                  s_st_handles [k]);
    ST_CHECK (members->via.array.size == (uint32_t) __builtin_popcount (seen),
              "members: someone unknown");
    proto_msg_destroy (&reply);
}

ST_UNTRACED static void
s_st_op_dm (st_input_t *in)
{
    int u = s_st_user (in);
    size_t count = s_st_byte (in) % 4;
    uint64_t ids [3];
    unsigned set = 1u << u;
    bool nobody = false, foreign = false;
    for (size_t i = 0; i < count; i++) {
        int pick = s_st_byte (in) % (ST_USERS + 1);
        if (pick == ST_USERS) {
            ids [i] = s_st->user_id [0] + 999;      //  nobody's id
            nobody = true;
        }
        else {
            ids [i] = s_st->user_id [pick];
            set |= 1u << pick;
            foreign = foreign || s_st_tenant_of [pick] != s_st_tenant_of [u];
        }
    }
    s_st_log ("dm_open %s set %x%s%s\n", s_st_handles [u], set, nobody? " nobody": "",
              foreign? " foreign": "");
    const char *expected = NULL;
    if (__builtin_popcount (set) + (nobody? 1: 0) < 2)
        expected = "invalid_args";
    else
    if (foreign || nobody)
        expected = "user_not_found";
    st_req_t req = s_st_req (u, "dm_open");
    proto_writer_str (req.writer, "users");
    proto_writer_array_begin (req.writer);
    for (size_t i = 0; i < count; i++)
        proto_writer_u64 (req.writer, ids [i]);
    proto_writer_array_end (req.writer);
    proto_msg_t *reply = s_st_call_expect (&req, expected, "dm_open");
    if (!reply)
        return;
    const msgpack_object *channel = proto_msg_get (reply, "channel");
    ST_CHECK (channel, "dm_open: no channel");
    uint64_t id = s_st_u64 (channel, "id");
    int tenant = s_st_tenant_of [u];
    st_chan_t *c = NULL;
    for (size_t i = 0; i < s_st->chan_count && !c; i++)
        if (s_st->chans [i]->tenant == tenant && s_st->chans [i]->type >= ST_DM
        &&  s_st->chans [i]->dm_set == set)
            c = s_st->chans [i];
    if (c)
        ST_CHECK (id == c->id, "dm_open: another channel for the same people");
    else {
        ST_CHECK (id == s_st->last_channel [tenant] + 1, "dm_open: channel id not gapless");
        s_st->last_channel [tenant] = id;
        c = s_st_chan_add (tenant, id, __builtin_popcount (set) == 2? ST_DM: ST_GROUP, "");
        c->dm_set = set;
        for (int k = 0; k < ST_USERS; k++)
            c->member [k] = (set >> k) & 1;
    }
    ST_CHECK (proto_obj_streq (proto_map_get (channel, "type"), s_st_types [c->type]),
              "dm_open: type");
    proto_msg_destroy (&reply);
}

ST_UNTRACED static void
s_st_op_sync (st_input_t *in)
{
    int u = s_st_user (in);
    uint8_t b = s_st_byte (in);
    uint64_t limit = b & 0x80? 1 + (b & 7): 0;
    //  Checkpoints for up to 4 picked channels (members or not)
    uint64_t given_id [4], given_seq [4];
    size_t given = 0;
    size_t wanted = b & 3;
    for (size_t i = 0; i < wanted; i++) {
        uint64_t id;
        st_chan_t *c = s_st_pick (in, u, &id);
        bool dup = false;
        for (size_t k = 0; k < given; k++)
            dup = dup || given_id [k] == id;
        if (dup)
            continue;
        given_id [given] = id;
        uint8_t s = s_st_byte (in);
        uint64_t head = c? c->count: 0;
        given_seq [given++] = s % (head + 2);
    }
    s_st_log ("sync %s limit %" PRIu64 " given %zu\n", s_st_handles [u], limit, given);
    st_req_t req = s_st_req (u, "sync");
    if (given) {
        proto_writer_str (req.writer, "channels");
        proto_writer_map_begin (req.writer);
        for (size_t i = 0; i < given; i++) {
            char key [24];
            snprintf (key, sizeof (key), "%" PRIu64, given_id [i]);
            proto_writer_kv_u64 (req.writer, key, given_seq [i]);
        }
        proto_writer_map_end (req.writer);
    }
    if (limit)
        proto_writer_kv_u64 (req.writer, "limit", limit);
    proto_msg_t *reply = s_st_call_expect (&req, NULL, "sync");
    const msgpack_object *channels = proto_msg_get (reply, "channels");
    ST_CHECK (channels && channels->type == MSGPACK_OBJECT_ARRAY, "sync: no channels");
    uint64_t lim = limit? limit: 100, budget = 1000;
    uint32_t next = 0;
    int tenant = s_st_tenant_of [u];
    //  Memberships in channel id order, as membership lists them
    for (uint64_t id = 1; id <= s_st->last_channel [tenant]; id++) {
        st_chan_t *c = s_st_chan_by_id (tenant, id);
        if (!c || !c->member [u])
            continue;
        uint64_t checkpoint = c->delivered [u];
        for (size_t i = 0; i < given; i++)
            if (given_id [i] == id)
                checkpoint = given_seq [i];
        uint64_t head = c->count;
        if (checkpoint >= head)
            continue;
        uint64_t take = head - checkpoint < lim? head - checkpoint: lim;
        if (take > budget)
            take = budget;
        budget -= take;
        uint64_t last = checkpoint + take;
        ST_CHECK (next < channels->via.array.size, "sync of %s: channel %" PRIu64
                  " missing (checkpoint %" PRIu64 ", head %" PRIu64 ")", s_st_handles [u], id,
                  checkpoint, head);
        const msgpack_object *item = &channels->via.array.ptr [next++];
        ST_CHECK (s_st_u64 (item, "ch") == id, "sync: channel %" PRIu64 " where %" PRIu64
                  " was expected", s_st_u64 (item, "ch"), id);
        const msgpack_object *messages = proto_map_get (item, "messages");
        ST_CHECK (messages && messages->type == MSGPACK_OBJECT_ARRAY
                  && messages->via.array.size == take, "sync: messages of %" PRIu64, id);
        for (uint32_t i = 0; i < messages->via.array.size; i++)
            s_st_check_message (&messages->via.array.ptr [i], c, checkpoint + 1 + i, "sync");
        bool more = false;
        proto_map_bool (item, "has_more", &more);
        ST_CHECK (more == (last < head), "sync: has_more of %" PRIu64, id);
        ST_CHECK (s_st_u64 (item, "head") == head && s_st_u64 (item, "read_seq") == c->read [u]
                  && s_st_u64 (item, "unread") == s_st_unread (c, u),
                  "sync: head, read_seq or unread of %" PRIu64, id);
        s_st_position (c, u, 0, last);
    }
    ST_CHECK (next == channels->via.array.size, "sync of %s: %u channels, expected %u",
              s_st_handles [u], channels->via.array.size, next);
    const msgpack_object *removed = proto_msg_get (reply, "removed");
    ST_CHECK (removed && removed->type == MSGPACK_OBJECT_ARRAY, "sync: no removed");
    uint32_t expected_removed = 0;
    for (size_t i = 0; i < given; i++) {
        st_chan_t *c = s_st_chan_by_id (tenant, given_id [i]);
        if (!c || !c->member [u]) {
            ST_CHECK (expected_removed < removed->via.array.size
                      && removed->via.array.ptr [expected_removed].via.u64 == given_id [i],
                      "sync: %" PRIu64 " not in removed", given_id [i]);
            expected_removed++;
        }
    }
    ST_CHECK (removed->via.array.size == expected_removed, "sync: removed has extra ids");
    proto_msg_destroy (&reply);
}

//  ---------------------------------------------------------------------
//  The world: stages, workspaces, users

ST_UNTRACED static proto_msg_t *
s_st_admin_ok (st_req_t *req, const char *what)
{
    proto_error_t ingest;
    proto_msg_t *reply = s_st_call (req, &ingest);
    return s_st_expect (reply, ingest, NULL, what);
}

ST_UNTRACED static void
s_st_stop (void)
{
    if (!s_st)
        return;
    zsock_destroy (&s_st->push);
    zactor_destroy (&s_st->membership);
    zactor_destroy (&s_st->persistence);
    zsock_destroy (&s_st->broker);
    zsock_destroy (&s_st->fanout);
    char *command = zsys_sprintf ("rm -rf '%s'", s_st->dir);
    if (system (command) != 0)
        fprintf (stderr, "fuzz_stateful: cannot remove %s\n", s_st->dir);
    free (command);
    for (size_t i = 0; i < s_st->chan_count; i++) {
        st_chan_t *c = s_st->chans [i];
        for (size_t k = 0; k < c->count; k++) {
            free (c->msgs [k].body);
            free (c->msgs [k].cmid);
        }
        free (c->msgs);
        free (c);
    }
    free (s_st->chans);
    free (s_st->by_id [0]);
    free (s_st->by_id [1]);
    zhashx_destroy (&s_st->dedupe);
    free (s_st);
    s_st = NULL;
}

ST_UNTRACED static void
s_st_dedupe_destroy (void **item)
{
    st_dedupe_t *record = (st_dedupe_t *) *item;
    if (record) {
        free (record->body);
        free (record);
        *item = NULL;
    }
}

ST_UNTRACED static zsock_t *
s_st_pull_bind (const char *endpoint)
{
    zsock_t *sock = zsock_new (ZMQ_PULL);
    assert (sock);
    zsock_set_rcvhwm (sock, 100000);
    int rc = zsock_bind (sock, "%s", endpoint);
    assert (rc == 0);
    (void) rc;
    return sock;
}

//  Removes the data directories of fuzz_stateful processes that are gone
//  (one that crashed, or stopped at a broken oracle, cannot remove its own)
ST_UNTRACED static void
s_st_remove_stale (const char *base)
{
    DIR *dir = opendir (base);
    if (!dir)
        return;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        int pid = 0;
        char rest [16];
        if (sscanf (entry->d_name, "chorus-fuzz-%d-%15s", &pid, rest) != 2 || pid <= 0
        ||  kill (pid, 0) == 0 || errno != ESRCH)
            continue;
        char *command = zsys_sprintf ("rm -rf '%s/%s'", base, entry->d_name);
        if (system (command) != 0)
            fprintf (stderr, "fuzz_stateful: cannot remove %s/%s\n", base, entry->d_name);
        free (command);
    }
    closedir (dir);
}

//  libFuzzer's leak check after each input rescans the whole heap whenever
//  an input's mallocs and frees differ, which is every input here (the
//  stages and the model keep what they are sent): it costs 3/4 of the time
//  and cannot tell a leak from state. Leaks are still checked at exit,
//  after s_st_stop has freed everything. libFuzzer reads its flags after
//  LLVMFuzzerInitialize, so the flag is added here unless one was given.
ST_UNTRACED static void
s_st_no_leak_check_per_input (int *argc, char ***argv)
{
    static char *args [256];
    static char flag [] = "-detect_leaks=0";
    if (!argc || !argv || *argc < 1 || *argc > 254)
        return;
    for (int i = 1; i < *argc; i++)
        if (strncmp ((*argv) [i], "-detect_leaks=", 14) == 0)
            return;
    for (int i = 0; i < *argc; i++)
        args [i] = (*argv) [i];
    args [*argc] = flag;
    args [*argc + 1] = NULL;
    (*argc)++;
    *argv = args;
}

ST_UNTRACED int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    s_st_no_leak_check_per_input (argc, argv);
    if (s_st)
        return 0;
    zsys_handler_set (NULL);            //  leave the signals to libFuzzer
    zsys_set_logstream (NULL);
    zsys_set_logsystem (false);
    setenv ("ZSYS_LOGIDENT", "fuzz_stateful", 0);
    s_st = (st_world_t *) zmalloc (sizeof (st_world_t));
    const char *base = access ("/dev/shm", W_OK) == 0? "/dev/shm": "/tmp";
    s_st_remove_stale (base);
    snprintf (s_st->dir, sizeof (s_st->dir), "%s/chorus-fuzz-%d-XXXXXX", base, getpid ());
    if (!mkdtemp (s_st->dir)) {
        perror ("fuzz_stateful: mkdtemp");
        abort ();
    }
    const char *names [4] = { "membership", "persistence", "broker", "fanout" };
    for (int i = 0; i < 4; i++)
        snprintf (s_st->endpoints [i], sizeof (s_st->endpoints [i]),
                  "inproc://fuzz-stateful-%d-%s", getpid (), names [i]);
    s_st->config = (stage_config_t) {
        .data_dir = s_st->dir,
        .membership_endpoint = s_st->endpoints [0],
        .persistence_endpoint = s_st->endpoints [1],
        .broker_endpoint = s_st->endpoints [2],
        .fanout_endpoint = s_st->endpoints [3],
        .batch_max = 64
    };
    s_st->dedupe = zhashx_new ();
    zhashx_set_destructor (s_st->dedupe, s_st_dedupe_destroy);
    s_st->broker = s_st_pull_bind (s_st->endpoints [2]);
    s_st->fanout = s_st_pull_bind (s_st->endpoints [3]);
    s_st->persistence = stage_actor_new (persistence_actor, &s_st->config);
    s_st->membership = stage_actor_new (membership_actor, &s_st->config);
    if (!s_st->persistence || !s_st->membership) {
        fprintf (stderr, "fuzz_stateful: the stages did not start\n");
        abort ();
    }
    s_st->push = zsock_new (ZMQ_PUSH);
    zsock_set_sndhwm (s_st->push, 100000);
    int rc = zsock_connect (s_st->push, "%s", s_st->endpoints [0]);
    assert (rc == 0);
    (void) rc;
    //  Two workspaces; alice, bob, carol in the first, mallory in the other
    for (int t = 0; t < 2; t++) {
        snprintf (s_st->tenant_name [t], sizeof (s_st->tenant_name [t]), "fuzz%c", 'a' + t);
        st_req_t req = s_st_req (-1, "tenant_create");
        proto_writer_kv_str (req.writer, "name", s_st->tenant_name [t]);
        proto_msg_t *reply = s_st_admin_ok (&req, "tenant_create");
        s_st->tenant_id [t] = s_st_u64 (proto_msg_get (reply, "tenant"), "id");
        proto_msg_destroy (&reply);
    }
    for (int u = 0; u < ST_USERS; u++) {
        st_req_t req = s_st_req (-1, "user_create");
        proto_writer_kv_str (req.writer, "tenant", s_st->tenant_name [s_st_tenant_of [u]]);
        proto_writer_kv_str (req.writer, "handle", s_st_handles [u]);
        proto_writer_kv_str (req.writer, "display_name", s_st_handles [u]);
        proto_writer_kv_str (req.writer, "password", "password-1");
        proto_msg_t *reply = s_st_admin_ok (&req, "user_create");
        s_st->user_id [u] = s_st_u64 (proto_msg_get (reply, "user"), "id");
        proto_msg_destroy (&reply);
    }
    s_st_drain_events ();
    atexit (s_st_stop);
    return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (!s_st)
        LLVMFuzzerInitialize (NULL, NULL);
    s_st->inputs++;
    s_st->log_size = 0;
    s_st->log [0] = 0;
    st_input_t in = { data, data + size };
    for (int ops = 0; ops < ST_MAX_OPS && in.pos < in.end; ops++) {
        switch (s_st_byte (&in) % 16) {
            case 0: case 1: s_st_op_create (&in); break;
            case 2: s_st_op_join (&in); break;
            case 3: s_st_op_leave (&in); break;
            case 4: s_st_op_invite (&in); break;
            case 5: case 6: s_st_op_send (&in); break;
            case 7: s_st_op_burst (&in); break;
            case 8: s_st_op_change (&in, false); break;
            case 9: s_st_op_change (&in, true); break;
            case 10: s_st_op_read (&in); break;
            case 11: s_st_op_history (&in); break;
            case 12: s_st_op_channel_list (&in); break;
            case 13: s_st_op_dm (&in); break;
            case 14: s_st_op_sync (&in); break;
            default:
                if (in.pos < in.end && (*in.pos & 1))
                    s_st_op_browse (&in);
                else
                    s_st_op_members (&in);
                break;
        }
    }
    s_st_drain_events ();
    return 0;
}
