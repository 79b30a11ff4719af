/*  =========================================================================
    chorus - command-line client for the Chorus API

    chorus [--api ENDPOINT] [--token T | --token-file F] COMMAND [ARGS]

    Each command is one function over the client library (chorus/client.h).
    Exit codes: 0 ok, 1 server error ("error: <code>: <message>"), 2 usage,
    3 unreachable or timeout.
    =========================================================================
*/
#include <czmq.h>
#include <time.h>
#include "chorus/client.h"

#define EXIT_SERVER   1             //  the server answered with an error
#define EXIT_USAGE    2             //  bad command line
#define EXIT_TIMEOUT  3             //  no answer from the server
#define TAIL_PING_MS  30000         //  keep-alive period of `tail`
#define TOKEN_MAX     512           //  bytes in a token file we read
#define DM_MAX_OTHERS 8             //  others in a group DM, at most
#define SYNC_MAX      100           //  CH=SEQ pairs on one sync command line

static const char *s_usage =
    "usage: chorus [--api ENDPOINT] [--token T | --token-file F]\n"
    "              [--curve-server SERVER.cert --curve-cert MY.cert_secret] COMMAND ...\n"
    "\n"
    "  ENDPOINT defaults to " CHORUS_CLIENT_ENDPOINT "\n"
    "\n"
    "administration (admin token, e.g. --token-file DATA/admin.token):\n"
    "  tenant-create NAME\n"
    "  tenant-list\n"
    "  user-create TENANT HANDLE \"DISPLAY NAME\" PASSWORD [--bot]\n"
    "  token-create TENANT HANDLE           prints a new API token\n"
    "  seed-demo                            creates the demo workspace once\n"
    "\n"
    "session:\n"
    "  login TENANT HANDLE PASSWORD         prints the token\n"
    "  ping\n"
    "\n"
    "as a user (--token or --token-file); CH is a channel id or name:\n"
    "  channels                             your channels, with unread counts\n"
    "  channel-create NAME [--private]\n"
    "  join CH\n"
    "  dm HANDLE...                         opens a DM or group DM, prints its id\n"
    "  send CH TEXT [--id CLIENT_MSG_ID]    prints the seq\n"
    "  history CH [--before N | --after N] [--limit N]\n"
    "  read CH SEQ\n"
    "  sync [CH=SEQ ...]\n"
    "  tail                                 prints events until interrupted\n";

//  The command line being run
typedef struct {
    const char *endpoint;           //  API endpoint
    char *token;                    //  token to authenticate with, or NULL
    chorus_client_t *client;        //  the connection
    int argc;                       //  command arguments left (after the name)
    char **argv;                    //  those arguments
    const char *curve_server;       //  server's public certificate, or NULL
    const char *curve_cert;         //  our secret certificate, or NULL
} cli_t;

typedef int (cli_fn) (cli_t *cli);

//  --------------------------------------------------------------------------
//  Print an error reply (or a timeout) and return the exit code for it

static int
s_fail (cli_t *cli, proto_msg_t **reply_p)
{
    if (!*reply_p) {
        fprintf (stderr, "error: timeout: no reply from %s\n", cli->endpoint);
        return EXIT_TIMEOUT;
    }
    const char *message = "";
    size_t len = 0;
    proto_msg_str (*reply_p, "message", &message, &len);
    fprintf (stderr, "error: %s: %.*s\n", chorus_client_error (*reply_p), (int) len, message);
    proto_msg_destroy (reply_p);
    return EXIT_SERVER;
}

//  Print a usage problem; returns EXIT_USAGE
static int
s_usage_error (const char *problem)
{
    fprintf (stderr, "chorus: %s\n%s", problem, s_usage);
    return EXIT_USAGE;
}

//  --------------------------------------------------------------------------
//  Remove a flag from the arguments; true if it was there

static bool
s_take_flag (cli_t *cli, const char *flag)
{
    for (int i = 0; i < cli->argc; i++)
        if (streq (cli->argv [i], flag)) {
            memmove (&cli->argv [i], &cli->argv [i + 1], (cli->argc - i - 1) * sizeof (char *));
            cli->argc--;
            return true;
        }
    return false;
}

//  Remove "--name VALUE" from the arguments; the value, or NULL
static const char *
s_take_option (cli_t *cli, const char *name)
{
    for (int i = 0; i + 1 < cli->argc; i++)
        if (streq (cli->argv [i], name)) {
            const char *value = cli->argv [i + 1];
            memmove (&cli->argv [i], &cli->argv [i + 2], (cli->argc - i - 2) * sizeof (char *));
            cli->argc -= 2;
            return value;
        }
    return NULL;
}

//  Parse a positive decimal number below 2^53; false if it is not one
static bool
s_parse_u64 (const char *text, uint64_t *value)
{
    if (!text || !*text || strspn (text, "0123456789") != strlen (text) || strlen (text) > 16)
        return false;
    *value = strtoull (text, NULL, 10);
    return *value > 0 && *value < PROTO_MAX_SEQ;
}

//  --------------------------------------------------------------------------
//  Call the request begun on the client; on an error reply print it, set
//  *rc and return NULL

static proto_msg_t *
s_call (cli_t *cli, int *rc)
{
    proto_msg_t *reply = chorus_client_call (cli->client);
    if (chorus_client_error (reply)) {
        *rc = s_fail (cli, &reply);
        return NULL;
    }
    return reply;
}

//  Print an ok reply's id field of object (e.g. channel.id) and destroy it
static int
s_print_id (proto_msg_t **reply_p, const char *object)
{
    uint64_t id = 0;
    proto_map_u64 (proto_msg_get (*reply_p, object), "id", &id);
    printf ("%" PRIu64 "\n", id);
    proto_msg_destroy (reply_p);
    return 0;
}

//  Print a string field of an ok reply and destroy it
static int
s_print_str (proto_msg_t **reply_p, const char *field)
{
    const char *text = "";
    size_t len = 0;
    proto_msg_str (*reply_p, field, &text, &len);
    printf ("%.*s\n", (int) len, text);
    proto_msg_destroy (reply_p);
    return 0;
}

//  --------------------------------------------------------------------------
//  Find the channel called name (with or without '#') among the user's
//  channels, then the public ones

static uint64_t
s_channel_lookup (cli_t *cli, const char *name, int *rc)
{
    const char *ops [] = { "channel_list", "channel_browse" };
    for (int i = 0; i < 2; i++) {
        chorus_client_begin (cli->client, ops [i]);
        proto_msg_t *reply = s_call (cli, rc);
        if (!reply)
            return 0;
        const msgpack_object *list = proto_msg_get (reply, "channels");
        uint64_t id = 0;
        for (uint32_t j = 0; list && list->type == MSGPACK_OBJECT_ARRAY
                           && j < list->via.array.size && !id; j++)
            if (proto_obj_streq (proto_map_get (&list->via.array.ptr [j], "name"), name))
                proto_map_u64 (&list->via.array.ptr [j], "id", &id);
        proto_msg_destroy (&reply);
        if (id)
            return id;
    }
    fprintf (stderr, "error: channel_not_found: no channel named '%s'\n", name);
    *rc = EXIT_SERVER;
    return 0;
}

//  Channel id of a CH argument: a number, or a name; 0 and *rc on failure
static uint64_t
s_channel_arg (cli_t *cli, const char *arg, int *rc)
{
    uint64_t id;
    if (s_parse_u64 (arg, &id))
        return id;
    return s_channel_lookup (cli, arg [0] == '#'? arg + 1: arg, rc);
}

//  --------------------------------------------------------------------------
//  The users of the workspace (reply of user_list), or NULL

static proto_msg_t *
s_user_list (cli_t *cli, int *rc)
{
    chorus_client_begin (cli->client, "user_list");
    return s_call (cli, rc);
}

//  The user object with field (id or handle) equal to the given value
static const msgpack_object *
s_user_find (proto_msg_t *users, uint64_t id, const char *handle)
{
    const msgpack_object *list = users? proto_msg_get (users, "users"): NULL;
    for (uint32_t i = 0; list && list->type == MSGPACK_OBJECT_ARRAY && i < list->via.array.size; i++) {
        const msgpack_object *user = &list->via.array.ptr [i];
        uint64_t user_id = 0;
        proto_map_u64 (user, "id", &user_id);
        if (handle? proto_obj_streq (proto_map_get (user, "handle"), handle): user_id == id)
            return user;
    }
    return NULL;
}

//  --------------------------------------------------------------------------
//  Print one message as "seq  ts  author  body" on one line

static void
s_print_message (const msgpack_object *message, proto_msg_t *users)
{
    uint64_t seq = 0, ts = 0, author = 0;
    bool deleted = false;
    const char *body = "", *handle = NULL;
    size_t body_len = 0, handle_len = 0;
    proto_map_u64 (message, "seq", &seq);
    proto_map_u64 (message, "ts", &ts);
    proto_map_u64 (message, "author", &author);
    proto_map_bool (message, "deleted", &deleted);
    proto_map_str (message, "body", &body, &body_len);
    proto_map_str (s_user_find (users, author, NULL), "handle", &handle, &handle_len);
    time_t seconds = (time_t) (ts / 1000);
    struct tm tm;
    char when [32];
    strftime (when, sizeof (when), "%Y-%m-%d %H:%M:%S", localtime_r (&seconds, &tm));
    printf ("%" PRIu64 "  %s  ", seq, when);
    if (handle)
        printf ("%.*s  ", (int) handle_len, handle);
    else
        printf ("%" PRIu64 "  ", author);
    if (deleted)
        fputs ("(deleted)", stdout);
    for (size_t i = 0; i < body_len; i++)
        if (body [i] == '\n')
            fputs ("\\n", stdout);
        else
            putchar (body [i]);
    putchar ('\n');
}

//  Print every message of a "messages" array
static void
s_print_messages (const msgpack_object *messages, proto_msg_t *users)
{
    for (uint32_t i = 0; messages && messages->type == MSGPACK_OBJECT_ARRAY
                       && i < messages->via.array.size; i++)
        s_print_message (&messages->via.array.ptr [i], users);
}

//  ---------------------------------------------------------------------
//  Administration

static int
s_tenant_create (cli_t *cli)
{
    proto_writer_t *writer = chorus_client_begin (cli->client, "tenant_create");
    proto_writer_kv_str (writer, "name", cli->argv [0]);
    int rc = 0;
    proto_msg_t *reply = s_call (cli, &rc);
    return reply? s_print_id (&reply, "tenant"): rc;
}

static int
s_tenant_list (cli_t *cli)
{
    chorus_client_begin (cli->client, "tenant_list");
    int rc = 0;
    proto_msg_t *reply = s_call (cli, &rc);
    if (!reply)
        return rc;
    const msgpack_object *list = proto_msg_get (reply, "tenants");
    for (uint32_t i = 0; list && list->type == MSGPACK_OBJECT_ARRAY && i < list->via.array.size; i++) {
        uint64_t id = 0;
        const char *name = "";
        size_t len = 0;
        proto_map_u64 (&list->via.array.ptr [i], "id", &id);
        proto_map_str (&list->via.array.ptr [i], "name", &name, &len);
        printf ("%" PRIu64 "  %.*s\n", id, (int) len, name);
    }
    proto_msg_destroy (&reply);
    return 0;
}

static int
s_user_create (cli_t *cli)
{
    bool bot = s_take_flag (cli, "--bot");
    if (cli->argc != 4)
        return s_usage_error ("user-create needs TENANT HANDLE DISPLAY PASSWORD");
    proto_writer_t *writer = chorus_client_begin (cli->client, "user_create");
    proto_writer_kv_str (writer, "tenant", cli->argv [0]);
    proto_writer_kv_str (writer, "handle", cli->argv [1]);
    proto_writer_kv_str (writer, "display_name", cli->argv [2]);
    proto_writer_kv_str (writer, "password", cli->argv [3]);
    if (bot)
        proto_writer_kv_bool (writer, "bot", true);
    int rc = 0;
    proto_msg_t *reply = s_call (cli, &rc);
    return reply? s_print_id (&reply, "user"): rc;
}

static int
s_token_create (cli_t *cli)
{
    proto_writer_t *writer = chorus_client_begin (cli->client, "token_create");
    proto_writer_kv_str (writer, "tenant", cli->argv [0]);
    proto_writer_kv_str (writer, "handle", cli->argv [1]);
    int rc = 0;
    proto_msg_t *reply = s_call (cli, &rc);
    return reply? s_print_str (&reply, "token"): rc;
}

static int
s_seed_demo (cli_t *cli)
{
    //  chorus_seed_demo says whether it created the workspace or found it
    if (chorus_seed_demo (cli->endpoint, cli->token)) {
        fprintf (stderr, "error: seeding the demo workspace failed (see above)\n");
        return EXIT_SERVER;
    }
    printf ("workspace demo: log in as alice, bob, carol or dave, password chorus-demo\n");
    return 0;
}

//  ---------------------------------------------------------------------
//  Session

static int
s_login (cli_t *cli)
{
    proto_msg_t *reply = chorus_client_login (cli->client, cli->argv [0], cli->argv [1], cli->argv [2]);
    return chorus_client_error (reply)? s_fail (cli, &reply): s_print_str (&reply, "token");
}

static int
s_ping (cli_t *cli)
{
    proto_msg_t *reply = chorus_client_ping (cli->client);
    if (chorus_client_error (reply))
        return s_fail (cli, &reply);
    uint64_t ts = 0;
    proto_msg_u64 (reply, "ts", &ts);
    printf ("pong %" PRIu64 "\n", ts);
    proto_msg_destroy (&reply);
    return 0;
}

//  ---------------------------------------------------------------------
//  Channels

static int
s_channels (cli_t *cli)
{
    chorus_client_begin (cli->client, "channel_list");
    int rc = 0;
    proto_msg_t *reply = s_call (cli, &rc);
    if (!reply)
        return rc;
    const msgpack_object *list = proto_msg_get (reply, "channels");
    for (uint32_t i = 0; list && list->type == MSGPACK_OBJECT_ARRAY && i < list->via.array.size; i++) {
        const msgpack_object *channel = &list->via.array.ptr [i];
        uint64_t id = 0, unread = 0;
        char name [PROTO_MAX_NAME_CHARS * 4 + 1] = "", type [16] = "";
        proto_map_u64 (channel, "id", &id);
        proto_map_u64 (channel, "unread", &unread);
        proto_map_strcpy (channel, "name", name, sizeof (name));
        proto_map_strcpy (channel, "type", type, sizeof (type));
        bool is_dm = streq (type, "dm") || streq (type, "group");
        char count [24] = "999+";
        if (unread < 1000)
            snprintf (count, sizeof (count), "%" PRIu64, unread);
        printf ("%-6" PRIu64 " %-8s %s%-30s unread %s\n", id, type, is_dm? "@": "#", name, count);
    }
    proto_msg_destroy (&reply);
    return 0;
}

static int
s_channel_create (cli_t *cli)
{
    bool is_private = s_take_flag (cli, "--private");
    if (cli->argc != 1)
        return s_usage_error ("channel-create needs NAME");
    proto_writer_t *writer = chorus_client_begin (cli->client, "channel_create");
    proto_writer_kv_str (writer, "name", cli->argv [0] [0] == '#'? cli->argv [0] + 1: cli->argv [0]);
    if (is_private)
        proto_writer_kv_bool (writer, "private", true);
    int rc = 0;
    proto_msg_t *reply = s_call (cli, &rc);
    return reply? s_print_id (&reply, "channel"): rc;
}

static int
s_join (cli_t *cli)
{
    int rc = 0;
    uint64_t ch = s_channel_arg (cli, cli->argv [0], &rc);
    if (!ch)
        return rc;
    proto_writer_t *writer = chorus_client_begin (cli->client, "channel_join");
    proto_writer_kv_u64 (writer, "ch", ch);
    proto_msg_t *reply = s_call (cli, &rc);
    return reply? s_print_id (&reply, "channel"): rc;
}

static int
s_dm (cli_t *cli)
{
    if (cli->argc < 1 || cli->argc > DM_MAX_OTHERS)
        return s_usage_error ("dm needs 1 to 8 HANDLEs");
    int rc = 0;
    proto_msg_t *users = s_user_list (cli, &rc);
    if (!users)
        return rc;
    uint64_t ids [DM_MAX_OTHERS];
    for (int i = 0; i < cli->argc && !rc; i++) {
        const char *handle = cli->argv [i] [0] == '@'? cli->argv [i] + 1: cli->argv [i];
        if (!proto_map_u64 (s_user_find (users, 0, handle), "id", &ids [i])) {
            fprintf (stderr, "error: user_not_found: no user '%s'\n", handle);
            rc = EXIT_SERVER;
        }
    }
    proto_msg_destroy (&users);
    if (rc)
        return rc;
    proto_writer_t *writer = chorus_client_begin (cli->client, "dm_open");
    proto_writer_str (writer, "users");
    proto_writer_array_begin (writer);
    for (int i = 0; i < cli->argc; i++)
        proto_writer_u64 (writer, ids [i]);
    proto_writer_array_end (writer);
    proto_msg_t *reply = s_call (cli, &rc);
    return reply? s_print_id (&reply, "channel"): rc;
}

//  ---------------------------------------------------------------------
//  Messages

static int
s_send (cli_t *cli)
{
    const char *given = s_take_option (cli, "--id");
    if (cli->argc != 2)
        return s_usage_error ("send needs CH TEXT");
    char id [CHORUS_CLIENT_MSG_ID_SIZE];
    if (!given)
        chorus_client_new_msg_id (id);
    int rc = 0;
    uint64_t ch = s_channel_arg (cli, cli->argv [0], &rc);
    if (!ch)
        return rc;
    uint64_t seq = 0;
    proto_msg_t *reply = chorus_client_send (cli->client, ch, given? given: id, cli->argv [1], &seq);
    if (chorus_client_error (reply)) {
        rc = s_fail (cli, &reply);
        if (rc == EXIT_TIMEOUT)
            fprintf (stderr, "retry with --id %s: it is stored at most once\n", given? given: id);
        return rc;
    }
    bool duplicate = false;
    proto_msg_bool (reply, "duplicate", &duplicate);
    printf ("%" PRIu64 "%s\n", seq, duplicate? " (duplicate)": "");
    proto_msg_destroy (&reply);
    return 0;
}

static int
s_history (cli_t *cli)
{
    const char *before = s_take_option (cli, "--before");
    const char *after = s_take_option (cli, "--after");
    const char *limit_arg = s_take_option (cli, "--limit");
    uint64_t seq = 0, limit = 0;
    if (cli->argc != 1 || (before && after)
    ||  (before && !s_parse_u64 (before, &seq)) || (after && !s_parse_u64 (after, &seq))
    ||  (limit_arg && (!s_parse_u64 (limit_arg, &limit) || limit > PROTO_PAGE_MAX)))
        return s_usage_error ("history needs CH [--before N | --after N] [--limit 1..200]");
    int rc = 0;
    uint64_t ch = s_channel_arg (cli, cli->argv [0], &rc);
    proto_msg_t *users = ch? s_user_list (cli, &rc): NULL;
    if (!users)
        return rc;
    proto_msg_t *reply = chorus_client_history (cli->client, ch,
        before? "before": after? "after": NULL, seq, (unsigned) limit);
    if (chorus_client_error (reply))
        rc = s_fail (cli, &reply);
    else
        s_print_messages (proto_msg_get (reply, "messages"), users);
    proto_msg_destroy (&reply);
    proto_msg_destroy (&users);
    return rc;
}

static int
s_read (cli_t *cli)
{
    uint64_t seq;
    if (!s_parse_u64 (cli->argv [1], &seq))
        return s_usage_error ("read needs CH SEQ");
    int rc = 0;
    uint64_t ch = s_channel_arg (cli, cli->argv [0], &rc);
    if (!ch)
        return rc;
    proto_msg_t *reply = chorus_client_read (cli->client, ch, seq);
    if (chorus_client_error (reply))
        return s_fail (cli, &reply);
    uint64_t read_seq = 0;
    proto_msg_u64 (reply, "read_seq", &read_seq);
    printf ("%" PRIu64 "\n", read_seq);
    proto_msg_destroy (&reply);
    return 0;
}

//  --------------------------------------------------------------------------
//  Print a sync reply: a header per channel, its messages, removed channels

static void
s_print_sync (proto_msg_t *reply, proto_msg_t *users)
{
    const msgpack_object *list = proto_msg_get (reply, "channels");
    for (uint32_t i = 0; list && list->type == MSGPACK_OBJECT_ARRAY && i < list->via.array.size; i++) {
        const msgpack_object *channel = &list->via.array.ptr [i];
        uint64_t ch = 0, head = 0, read_seq = 0, unread = 0;
        bool has_more = false;
        proto_map_u64 (channel, "ch", &ch);
        proto_map_u64 (channel, "head", &head);
        proto_map_u64 (channel, "read_seq", &read_seq);
        proto_map_u64 (channel, "unread", &unread);
        proto_map_bool (channel, "has_more", &has_more);
        printf ("== channel %" PRIu64 ": head %" PRIu64 ", read %" PRIu64 ", unread %" PRIu64 "%s\n",
                ch, head, read_seq, unread, has_more? ", more after these": "");
        s_print_messages (proto_map_get (channel, "messages"), users);
    }
    const msgpack_object *removed = proto_msg_get (reply, "removed");
    for (uint32_t i = 0; removed && removed->type == MSGPACK_OBJECT_ARRAY && i < removed->via.array.size; i++)
        if (removed->via.array.ptr [i].type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            printf ("== channel %" PRIu64 ": removed\n", removed->via.array.ptr [i].via.u64);
}

static int
s_sync (cli_t *cli)
{
    uint64_t chs [SYNC_MAX], seqs [SYNC_MAX];
    size_t count = 0;
    int rc = 0;
    for (int i = 0; i < cli->argc && !rc; i++) {
        char *equals = strchr (cli->argv [i], '=');
        if (!equals || !equals [1] || count == SYNC_MAX
        ||  strspn (equals + 1, "0123456789") != strlen (equals + 1) || strlen (equals + 1) > 16)
            return s_usage_error ("sync needs CH=SEQ pairs (at most 100), SEQ a number");
        *equals = 0;
        seqs [count] = strtoull (equals + 1, NULL, 10);
        chs [count++] = s_channel_arg (cli, cli->argv [i], &rc);
    }
    proto_msg_t *users = rc? NULL: s_user_list (cli, &rc);
    if (!users)
        return rc;
    proto_msg_t *reply = chorus_client_sync (cli->client, chs, seqs, count, 0);
    if (chorus_client_error (reply))
        rc = s_fail (cli, &reply);
    else
        s_print_sync (reply, users);
    proto_msg_destroy (&reply);
    proto_msg_destroy (&users);
    return rc;
}

//  --------------------------------------------------------------------------
//  Print events as JSON lines until interrupted, pinging to stay alive

static int
s_tail (cli_t *cli)
{
    setvbuf (stdout, NULL, _IOLBF, 0);
    int64_t next_ping = zclock_mono () + TAIL_PING_MS;
    uint64_t dropped = 0;
    while (!zsys_interrupted) {
        proto_msg_t *event = chorus_client_next_event (cli->client, 1000);
        if (event) {
            char *json = chorus_json_encode (proto_msg_root (event));
            if (json)
                printf ("%s\n", json);
            free (json);
            proto_msg_destroy (&event);
        }
        if (chorus_client_dropped_events (cli->client) != dropped) {
            dropped = chorus_client_dropped_events (cli->client);
            fprintf (stderr, "warning: %" PRIu64 " events dropped so far; use sync to catch up\n", dropped);
        }
        if (zclock_mono () >= next_ping && !zsys_interrupted) {
            proto_msg_t *reply = chorus_client_ping (cli->client);
            if (!reply && !zsys_interrupted)
                return s_fail (cli, &reply);
            proto_msg_destroy (&reply);
            next_ping = zclock_mono () + TAIL_PING_MS;
        }
    }
    return 0;
}

//  ---------------------------------------------------------------------
//  The command table

static const struct {
    const char *name;               //  command word
    cli_fn *fn;                     //  what it does
    int args;                       //  positional arguments, -1: checked by fn
    bool auth;                      //  authenticate with the token first
} s_commands [] = {
    { "tenant-create",  s_tenant_create,  1, true },
    { "tenant-list",    s_tenant_list,    0, true },
    { "user-create",    s_user_create,   -1, true },
    { "token-create",   s_token_create,   2, true },
    { "seed-demo",      s_seed_demo,      0, false },
    { "login",          s_login,          3, false },
    { "ping",           s_ping,           0, false },
    { "channels",       s_channels,       0, true },
    { "channel-create", s_channel_create,-1, true },
    { "join",           s_join,           1, true },
    { "dm",             s_dm,            -1, true },
    { "send",           s_send,          -1, true },
    { "history",        s_history,       -1, true },
    { "read",           s_read,           2, true },
    { "sync",           s_sync,          -1, true },
    { "tail",           s_tail,           0, true },
};
#define COMMAND_COUNT (sizeof (s_commands) / sizeof (s_commands [0]))

//  --------------------------------------------------------------------------
//  Read a token from a file (first line, trimmed); NULL if unreadable

static char *
s_read_token (const char *path)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return NULL;
    char buffer [TOKEN_MAX] = "";
    char *line = fgets (buffer, sizeof (buffer), file);
    fclose (file);
    if (!line)
        return NULL;
    buffer [strcspn (buffer, "\r\n \t")] = 0;
    return *buffer? strdup (buffer): NULL;
}

//  --------------------------------------------------------------------------
//  Connect, authenticate if the command needs it, and run it

static int
s_run (cli_t *cli, int command)
{
    if (s_commands [command].args >= 0 && cli->argc != s_commands [command].args)
        return s_usage_error ("wrong number of arguments");
    if ((s_commands [command].auth || streq (s_commands [command].name, "seed-demo"))
    &&  !cli->token)
        return s_usage_error ("this command needs --token or --token-file");
    cli->client = chorus_client_new (cli->endpoint);
    if (!cli->client) {
        fprintf (stderr, "chorus: '%s' is not a valid endpoint\n", cli->endpoint);
        return EXIT_USAGE;
    }
    if (cli->curve_server
    &&  chorus_client_set_curve (cli->client, cli->curve_server, cli->curve_cert)) {
        fprintf (stderr, "chorus: cannot load the CURVE certificates\n");
        chorus_client_destroy (&cli->client);
        return EXIT_USAGE;
    }
    int rc = 0;
    if (s_commands [command].auth) {
        proto_msg_t *reply = chorus_client_auth (cli->client, cli->token);
        if (chorus_client_error (reply))
            rc = s_fail (cli, &reply);
        proto_msg_destroy (&reply);
    }
    if (rc == 0)
        rc = s_commands [command].fn (cli);
    chorus_client_destroy (&cli->client);
    return rc;
}

int
main (int argc, char *argv [])
{
    cli_t cli = { .endpoint = CHORUS_CLIENT_ENDPOINT };
    const char *token_file = NULL;
    int arg = 1;
    for (; arg < argc && argv [arg][0] == '-'; arg++) {
        if (streq (argv [arg], "-h") || streq (argv [arg], "--help")) {
            printf ("%s", s_usage);
            return 0;
        }
        if (arg + 1 >= argc)
            return s_usage_error ("option without a value");
        if (streq (argv [arg], "--api"))
            cli.endpoint = argv [++arg];
        else
        if (streq (argv [arg], "--token"))
            cli.token = strdup (argv [++arg]);
        else
        if (streq (argv [arg], "--token-file"))
            token_file = argv [++arg];
        else
        if (streq (argv [arg], "--curve-server"))
            cli.curve_server = argv [++arg];
        else
        if (streq (argv [arg], "--curve-cert"))
            cli.curve_cert = argv [++arg];
        else
            return s_usage_error ("unknown option");
    }
    if (!cli.curve_server != !cli.curve_cert)
        return s_usage_error ("--curve-server and --curve-cert go together");
    if (token_file && !cli.token && !(cli.token = s_read_token (token_file))) {
        fprintf (stderr, "chorus: cannot read a token from %s\n", token_file);
        return EXIT_USAGE;
    }
    if (arg >= argc) {
        free (cli.token);
        return s_usage_error ("no command");
    }
    int command = 0;
    while (command < (int) COMMAND_COUNT && !streq (s_commands [command].name, argv [arg]))
        command++;
    cli.argc = argc - arg - 1;
    cli.argv = argv + arg + 1;
    int rc = command < (int) COMMAND_COUNT? s_run (&cli, command): s_usage_error ("unknown command");
    free (cli.token);
    return rc;
}
