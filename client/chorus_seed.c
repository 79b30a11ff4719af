/*  =========================================================================
    chorus_seed - create the demo workspace over the normal API

    Tenant "demo" with alice, bob, carol and dave (password "chorus-demo"),
    #general (everyone), #random (alice, bob, carol), private #leads (alice,
    carol), a DM alice-bob, a group DM alice-bob-carol, 1,200 numbered
    messages in #general from the four in turn and 30 in #random.

    All four users are logged in as sessions 1..4 of one socket, so the
    messages reach the server in the order they are numbered. Sends are
    pipelined (SEED_WINDOW in flight) and paced per user under the server's
    rate limit; client_msg_ids are fixed ("demo-general-0001"), so a retry
    is stored once.
    =========================================================================
*/
#include <czmq.h>
#include "chorus/client.h"

#define SEED_TENANT     "demo"
#define SEED_PASSWORD   "chorus-demo"
#define SEED_PEOPLE     4
#define SEED_GENERAL    1200        //  messages in #general
#define SEED_RANDOM     30          //  messages in #random
#define SEED_WINDOW     64          //  sends in flight
#define SEED_BURST      150.0       //  sends per user at once (server allows 200)
#define SEED_RATE       40.0        //  sends per user per second (server allows 50)
#define SEED_ATTEMPTS   5           //  tries of a send answered with a retriable error

//  The demo people
static const struct {
    const char *handle;             //  login name
    const char *display_name;       //  shown name
} s_people [SEED_PEOPLE] = {
    { "alice", "Alice Liddell" },
    { "bob",   "Bob Marley" },
    { "carol", "Carol King" },
    { "dave",  "Dave Brubeck" },
};
enum { ALICE, BOB, CAROL, DAVE };

//  Short bodies for the long histories; %s is a colleague's handle
static const char *s_bodies [] = {
    "Good morning, everyone!",
    "Coffee machine on 3 is fixed, finally.",
    "Has anyone seen the latest build numbers?",
    "@%s can you take a look at the release notes?",
    "Lunch at the usual place?",
    "Pushed the fix for the login timeout.",
    "The staging deploy is green.",
    "Reminder: retro at 4 pm today.",
    "I'll be a bit late, train delays again.",
    "Nice work on the demo yesterday @%s",
    "Who owns the flaky test in the billing suite?",
    "Let's move the standup to 10 tomorrow.",
    "Docs are updated, feedback welcome.",
    "Anyone up for a walk after lunch?",
    "Customer call went well, notes in the wiki.",
    "I'm out Friday, @%s is covering for me.",
    "The new dashboards look great.",
    "Does anyone have the VPN config for the lab?",
    "Merged. Thanks for the review!",
    "Heads up: database maintenance tonight at 11.",
    "Found the bug: an off-by-one in the pager.",
    "Can we timebox this discussion to 15 minutes?",
    "Sprint board is cleaned up.",
    "Welcome to the team, everyone say hi!",
    "Build is red again, looking into it.",
    "False alarm, it was the cache.",
    "Who wants to pair on the search feature?",
    "Ordering pizza for the hack night, any requests?",
    "The quarterly report draft is in the shared folder.",
    "@%s ping me when you're back",
    "Benchmarks: 20% faster after the index change.",
    "Please update your laptops this week.",
    "Happy birthday @%s!",
    "I'll write up the incident summary.",
    "Moving the planning doc to the new template.",
    "Is the meeting room booked for Thursday?",
    "That's a great idea, let's try it.",
    "Back from vacation, catching up on threads.",
    "The office will be closed on Monday.",
    "Thanks all, good week!",
};
#define SEED_BODIES (sizeof (s_bodies) / sizeof (s_bodies [0]))

//  One message to send
typedef struct {
    int author;                     //  index in s_people (its session is author + 1)
    uint64_t ch;                    //  channel id
    char id [32];                   //  client_msg_id
    char body [160];                //  text
    int attempts;                   //  sends answered with a retriable error
} s_message_t;

//  A send in flight
typedef struct {
    uint64_t rid;                   //  request id
    size_t index;                   //  message it carries
} s_flight_t;

//  The seeding run
typedef struct {
    chorus_client_t *admin;         //  admin session
    chorus_client_t *client;        //  the four people, sessions 1..4
    uint64_t users [SEED_PEOPLE];   //  user ids
    uint64_t general, random, leads, dm, group;     //  channel ids
    s_message_t *messages;          //  everything to send, in order
    size_t message_count;           //  entries used in messages
    s_flight_t flights [SEED_WINDOW];   //  sends in flight
    size_t flight_count;            //  entries used in flights
    double tokens [SEED_PEOPLE];    //  pacing bucket per person
    int64_t refilled [SEED_PEOPLE]; //  zclock_mono of the last refill
} s_seed_t;

//  --------------------------------------------------------------------------
//  Check a reply; log what failed. Destroys the reply unless it is kept.

static bool
s_ok (proto_msg_t **reply_p, const char *what, bool keep)
{
    const char *error = chorus_client_error (*reply_p);
    if (error) {
        const char *message = "";
        size_t len = 0;
        if (*reply_p)
            proto_msg_str (*reply_p, "message", &message, &len);
        zsys_error ("chorus_seed: %s: %s: %.*s", what, error, (int) len, message);
    }
    if (error || !keep)
        proto_msg_destroy (reply_p);
    return error == NULL;
}

//  Id of an object field ("user", "channel") of a reply; 0 if absent
static uint64_t
s_object_id (proto_msg_t *reply, const char *field)
{
    uint64_t id = 0;
    proto_map_u64 (proto_msg_get (reply, field), "id", &id);
    return id;
}

//  --------------------------------------------------------------------------
//  True if the admin sees the demo tenant already; -1 on failure

static int
s_tenant_exists (s_seed_t *self)
{
    chorus_client_begin (self->admin, "tenant_list");
    proto_msg_t *reply = chorus_client_call (self->admin);
    if (!s_ok (&reply, "tenant_list", true))
        return -1;
    const msgpack_object *tenants = proto_msg_get (reply, "tenants");
    int found = 0;
    if (tenants && tenants->type == MSGPACK_OBJECT_ARRAY)
        for (uint32_t i = 0; i < tenants->via.array.size; i++)
            if (proto_obj_streq (proto_map_get (&tenants->via.array.ptr [i], "name"), SEED_TENANT))
                found = 1;
    proto_msg_destroy (&reply);
    return found;
}

//  --------------------------------------------------------------------------
//  Create the tenant and the four users

static int
s_create_people (s_seed_t *self)
{
    proto_writer_t *writer = chorus_client_begin (self->admin, "tenant_create");
    proto_writer_kv_str (writer, "name", SEED_TENANT);
    proto_msg_t *reply = chorus_client_call (self->admin);
    if (!s_ok (&reply, "tenant_create", false))
        return -1;
    for (int i = 0; i < SEED_PEOPLE; i++) {
        writer = chorus_client_begin (self->admin, "user_create");
        proto_writer_kv_str (writer, "tenant", SEED_TENANT);
        proto_writer_kv_str (writer, "handle", s_people [i].handle);
        proto_writer_kv_str (writer, "display_name", s_people [i].display_name);
        proto_writer_kv_str (writer, "password", SEED_PASSWORD);
        reply = chorus_client_call (self->admin);
        if (!s_ok (&reply, "user_create", true))
            return -1;
        self->users [i] = s_object_id (reply, "user");
        proto_msg_destroy (&reply);
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Log each person in as session person + 1 of the shared socket

static int
s_login_people (s_seed_t *self)
{
    for (int i = 0; i < SEED_PEOPLE; i++) {
        chorus_client_use_session (self->client, (uint64_t) i + 1);
        proto_msg_t *reply = chorus_client_login (self->client, SEED_TENANT,
                                                  s_people [i].handle, SEED_PASSWORD);
        if (!s_ok (&reply, "login", false))
            return -1;
        self->tokens [i] = SEED_BURST;
        self->refilled [i] = zclock_mono ();
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Call op with a channel id as person; returns the reply's channel id, or
//  0 (logged) on failure. field/value add one u64 field if field is set.

static uint64_t
s_channel_op (s_seed_t *self, int person, const char *op, uint64_t ch,
              const char *field, uint64_t value)
{
    chorus_client_use_session (self->client, (uint64_t) person + 1);
    proto_writer_t *writer = chorus_client_begin (self->client, op);
    proto_writer_kv_u64 (writer, "ch", ch);
    if (field)
        proto_writer_kv_u64 (writer, field, value);
    proto_msg_t *reply = chorus_client_call (self->client);
    if (!s_ok (&reply, op, false))
        return 0;
    return ch;
}

//  Create a channel as alice; returns its id or 0
static uint64_t
s_channel_create (s_seed_t *self, const char *name, bool is_private)
{
    chorus_client_use_session (self->client, ALICE + 1);
    proto_writer_t *writer = chorus_client_begin (self->client, "channel_create");
    proto_writer_kv_str (writer, "name", name);
    proto_writer_kv_bool (writer, "private", is_private);
    proto_msg_t *reply = chorus_client_call (self->client);
    if (!s_ok (&reply, "channel_create", true))
        return 0;
    uint64_t id = s_object_id (reply, "channel");
    proto_msg_destroy (&reply);
    return id;
}

//  Open a DM (one other) or group DM as alice; returns its id or 0
static uint64_t
s_dm_open (s_seed_t *self, const int *others, size_t count)
{
    chorus_client_use_session (self->client, ALICE + 1);
    proto_writer_t *writer = chorus_client_begin (self->client, "dm_open");
    proto_writer_str (writer, "users");
    proto_writer_array_begin (writer);
    for (size_t i = 0; i < count; i++)
        proto_writer_u64 (writer, self->users [others [i]]);
    proto_writer_array_end (writer);
    proto_msg_t *reply = chorus_client_call (self->client);
    if (!s_ok (&reply, "dm_open", true))
        return 0;
    uint64_t id = s_object_id (reply, "channel");
    proto_msg_destroy (&reply);
    return id;
}

//  --------------------------------------------------------------------------
//  Create the channels and DMs and fill their memberships

static int
s_create_channels (s_seed_t *self)
{
    self->general = s_channel_create (self, "general", false);
    self->random = s_channel_create (self, "random", false);
    self->leads = s_channel_create (self, "leads", true);
    if (!self->general || !self->random || !self->leads)
        return -1;
    for (int i = BOB; i <= DAVE; i++)
        if (!s_channel_op (self, i, "channel_join", self->general, NULL, 0))
            return -1;
    for (int i = BOB; i <= CAROL; i++)
        if (!s_channel_op (self, i, "channel_join", self->random, NULL, 0))
            return -1;
    if (!s_channel_op (self, ALICE, "channel_invite", self->leads, "user", self->users [CAROL]))
        return -1;
    int dm [] = { BOB };
    int group [] = { BOB, CAROL };
    self->dm = s_dm_open (self, dm, 1);
    self->group = s_dm_open (self, group, 2);
    return self->dm && self->group? 0: -1;
}

//  --------------------------------------------------------------------------
//  Add a message to the plan

static void
s_plan (s_seed_t *self, int author, uint64_t ch, const char *id, const char *body)
{
    s_message_t *message = &self->messages [self->message_count++];
    message->author = author;
    message->ch = ch;
    snprintf (message->id, sizeof (message->id), "%s", id);
    snprintf (message->body, sizeof (message->body), "%s", body);
}

//  Plan count numbered messages in ch from the first `people` in turn
static void
s_plan_history (s_seed_t *self, uint64_t ch, const char *name, int count, int people)
{
    for (int i = 0; i < count; i++) {
        int author = i % people;
        const char *other = s_people [(author + 1 + i / people) % SEED_PEOPLE].handle;
        if (streq (other, s_people [author].handle))
            other = s_people [(author + 1) % SEED_PEOPLE].handle;
        char text [128], body [160], id [32];
        //  Every phrase has at most one %s
        snprintf (text, sizeof (text), s_bodies [(i * 7 + author) % SEED_BODIES], other);
        snprintf (body, sizeof (body), "%s (#%d)", text, i + 1);
        snprintf (id, sizeof (id), "demo-%s-%04d", name, i + 1);
        s_plan (self, author, ch, id, body);
    }
}

//  --------------------------------------------------------------------------
//  Plan every message of the demo, in the order they are sent

static void
s_plan_all (s_seed_t *self)
{
    self->messages = (s_message_t *) calloc (SEED_GENERAL + SEED_RANDOM + 16, sizeof (s_message_t));
    assert (self->messages);
    s_plan_history (self, self->general, "general", SEED_GENERAL, 4);
    s_plan_history (self, self->random, "random", SEED_RANDOM, 3);
    s_plan (self, ALICE, self->group, "demo-group-1", "Quick sync on the offsite: dates?");
    s_plan (self, BOB, self->group, "demo-group-2", "Second week of June works for me.");
    s_plan (self, CAROL, self->group, "demo-group-3", "Same here. I'll look for venues.");
    s_plan (self, ALICE, self->group, "demo-group-4", "Great, thanks Carol!");
    s_plan (self, ALICE, self->dm, "demo-dm-1", "Hey Bob, got a minute?");
    s_plan (self, BOB, self->dm, "demo-dm-2", "Sure, what's up?");
    s_plan (self, ALICE, self->dm, "demo-dm-3", "Can you look at the deploy script before Friday?");
    s_plan (self, BOB, self->dm, "demo-dm-4", "Will do. I'll ping you when it's done.");
    s_plan (self, ALICE, self->dm, "demo-dm-5", "Thanks!");
}

//  --------------------------------------------------------------------------
//  Take one pacing token of person; false if none is left yet

static bool
s_pace (s_seed_t *self, int person)
{
    int64_t now = zclock_mono ();
    self->tokens [person] += (now - self->refilled [person]) * SEED_RATE / 1000.0;
    if (self->tokens [person] > SEED_BURST)
        self->tokens [person] = SEED_BURST;
    self->refilled [person] = now;
    if (self->tokens [person] < 1.0)
        return false;
    self->tokens [person] -= 1.0;
    return true;
}

//  Post the send of message index; records it in flight
static void
s_post (s_seed_t *self, size_t index)
{
    s_message_t *message = &self->messages [index];
    chorus_client_use_session (self->client, (uint64_t) message->author + 1);
    proto_writer_t *writer = chorus_client_begin (self->client, "send");
    proto_writer_kv_u64 (writer, "ch", message->ch);
    proto_writer_kv_str (writer, "client_msg_id", message->id);
    proto_writer_kv_str (writer, "body", message->body);
    s_flight_t *flight = &self->flights [self->flight_count++];
    flight->index = index;
    flight->rid = chorus_client_post (self->client);
}

//  --------------------------------------------------------------------------
//  Collect one send reply. A retriable error sends the message again after
//  the time the server asks for. Returns 0, or -1 on failure (logged).

static int
s_collect (s_seed_t *self)
{
    uint64_t rid = 0;
    proto_msg_t *reply = chorus_client_collect (self->client, &rid);
    size_t slot = 0;
    while (slot < self->flight_count && self->flights [slot].rid != rid)
        slot++;
    if (slot == self->flight_count) {
        proto_msg_destroy (&reply);
        return rid? 0: -1;
    }
    size_t index = self->flights [slot].index;
    self->flights [slot] = self->flights [--self->flight_count];
    bool retriable = false;
    uint64_t wait_ms = 0;
    if (reply && chorus_client_error (reply)) {
        proto_msg_bool (reply, "retriable", &retriable);
        proto_msg_u64 (reply, "retry_after_ms", &wait_ms);
    }
    if (retriable && ++self->messages [index].attempts < SEED_ATTEMPTS) {
        proto_msg_destroy (&reply);
        zsys_warning ("chorus_seed: %s is sent again (the order may differ)",
                      self->messages [index].id);
        zclock_sleep ((int) (wait_ms < 5000? wait_ms: 5000));
        s_post (self, index);
        return 0;
    }
    return s_ok (&reply, self->messages [index].id, false)? 0: -1;
}

//  --------------------------------------------------------------------------
//  Send the planned messages in order, SEED_WINDOW in flight

static int
s_send_all (s_seed_t *self)
{
    size_t next = 0;
    while (next < self->message_count || self->flight_count) {
        bool can_post = next < self->message_count && self->flight_count < SEED_WINDOW;
        if (can_post && s_pace (self, self->messages [next].author))
            s_post (self, next++);
        else
        if (self->flight_count) {
            if (s_collect (self))
                return -1;
        }
        else
            zclock_sleep (5);       //  waiting for pacing tokens
        if (zsys_interrupted)
            return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Free what a run holds

static void
s_seed_destroy (s_seed_t *self)
{
    chorus_client_destroy (&self->admin);
    chorus_client_destroy (&self->client);
    free (self->messages);
}

//  --------------------------------------------------------------------------
//  Create the demo workspace unless it exists; 0 if it is there, else -1

int
chorus_seed_demo (const char *endpoint, const char *admin_token)
{
    assert (endpoint);
    assert (admin_token);
    s_seed_t self = { 0 };
    int64_t start = zclock_mono ();
    self.admin = chorus_client_new (endpoint);
    self.client = chorus_client_new (endpoint);
    if (!self.admin || !self.client) {
        zsys_error ("chorus_seed: cannot connect to %s", endpoint);
        s_seed_destroy (&self);
        return -1;
    }
    chorus_client_set_max_events (self.client, 0);     //  we only send
    proto_msg_t *reply = chorus_client_auth (self.admin, admin_token);
    int rc = s_ok (&reply, "auth", false)? s_tenant_exists (&self): -1;
    if (rc == 0) {
        if (s_create_people (&self) || s_login_people (&self) || s_create_channels (&self))
            rc = -1;
        else {
            s_plan_all (&self);
            rc = s_send_all (&self);
        }
    }
    if (rc == 1)
        zsys_info ("chorus_seed: the demo workspace exists already: nothing done");
    else
    if (rc == 0)
        zsys_info ("chorus_seed: demo workspace created: %zu messages in %" PRId64 " ms",
                   self.message_count, zclock_mono () - start);
    s_seed_destroy (&self);
    return rc < 0? -1: 0;
}
