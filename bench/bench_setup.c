/*  =========================================================================
    bench_setup - makes a population through the admin API: a tenant,
    users u0..uN-1 with API tokens, and channels whose members are ranges
    of users:

        w0..wW-1    the workspace: wK holds users K*M .. K*M+M-1
        fan         users 0 .. F-1 (fan-out, catch-up)
        all         every user (connections)
        i0..iC-1    ingest: iK holds sender K mod S only
        hist        user 0 only (history)

    user_create hashes the password with argon2id (~75 ms here, on the
    membership stage's two hasher workers, which queue 32 more at most), so
    a large population takes minutes: scripts/bench.sh makes it once and
    copies the data directory.
    =========================================================================
*/
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include "chorus/proto.h"
#include "bench.h"

#define WINDOW      64
#define USER_WINDOW 32          //  user_creates in flight: the hashers' queue
#define TIMEOUT_MS  60000

typedef struct {
    char name [POP_NAME_MAX];
    uint32_t first;
    uint32_t count;
    uint64_t id;
} spec_t;

//  Reads the first line of a file into a fresh string
static char *
s_read_token (const char *path)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return NULL;
    char line [512] = "";
    char *got = fgets (line, sizeof (line), file);
    fclose (file);
    if (!got)
        return NULL;
    line [strcspn (line, "\r\n")] = 0;
    return strdup (line);
}

//  Waits for count replies; returns the number of errors (logs the first)
static size_t
s_collect (rpc_t *rpc, size_t count, const char *what, proto_msg_t **keep, uint64_t first_rid)
{
    size_t errors = 0;
    for (size_t i = 0; i < count; i++) {
        uint64_t rid = 0;
        proto_msg_t *reply = (proto_msg_t *) rpc_collect (rpc, TIMEOUT_MS, &rid);
        const char *error = rpc_error (reply);
        if (error) {
            if (errors++ == 0)
                bench_log ("%s: %s", what, error);
            proto_msg_destroy (&reply);
            if (!reply && rid == 0)
                return errors + (count - i - 1);
            continue;
        }
        if (keep && rid >= first_rid && rid < first_rid + count)
            keep [rid - first_rid] = reply;
        else
            proto_msg_destroy (&reply);
    }
    return errors;
}

static void
s_usage (void)
{
    fprintf (stderr,
"usage: chorus-bench setup --api EP --admin-token-file F --out FILE [options]\n"
"  --tenant NAME          tenant to create (default bench)\n"
"  --users N              users u0..uN-1 (default 1000)\n"
"  --wchannels W          workspace channels w0.. (default 0)\n"
"  --wsize M              members per workspace channel (default 100)\n"
"  --fan F                members of channel fan (default 0: no channel)\n"
"  --all                  a channel 'all' with every user\n"
"  --ingest-channels C    ingest channels i0.. (default 0)\n"
"  --ingest-senders S     senders spread over them (default 64)\n"
"  --hist                 a channel 'hist' with user 0\n");
}

int
bench_setup (int argc, char **argv)
{
    const char *api = NULL, *token_file = NULL, *out = NULL, *tenant = "bench";
    size_t users = 1000, wchannels = 0, wsize = 100, fan = 0, ichannels = 0, isenders = 64;
    bool all = false, hist = false;
    static struct option longs [] = {
        { "api", 1, 0, 'a' }, { "admin-token-file", 1, 0, 't' }, { "out", 1, 0, 'o' },
        { "tenant", 1, 0, 'n' }, { "users", 1, 0, 'u' }, { "wchannels", 1, 0, 'w' },
        { "wsize", 1, 0, 'm' }, { "fan", 1, 0, 'f' }, { "all", 0, 0, 'A' },
        { "ingest-channels", 1, 0, 'c' }, { "ingest-senders", 1, 0, 's' },
        { "hist", 0, 0, 'H' }, { 0, 0, 0, 0 }
    };
    int opt;
    optind = 1;
    while ((opt = getopt_long (argc, argv, "", longs, NULL)) != -1) {
        switch (opt) {
            case 'a': api = optarg; break;
            case 't': token_file = optarg; break;
            case 'o': out = optarg; break;
            case 'n': tenant = optarg; break;
            case 'u': users = strtoul (optarg, NULL, 10); break;
            case 'w': wchannels = strtoul (optarg, NULL, 10); break;
            case 'm': wsize = strtoul (optarg, NULL, 10); break;
            case 'f': fan = strtoul (optarg, NULL, 10); break;
            case 'A': all = true; break;
            case 'c': ichannels = strtoul (optarg, NULL, 10); break;
            case 's': isenders = strtoul (optarg, NULL, 10); break;
            case 'H': hist = true; break;
            default: s_usage (); return 2;
        }
    }
    if (!api || !token_file || !out || users == 0 || isenders == 0
    ||  wchannels * wsize > users || fan > users || (ichannels && isenders > users)) {
        s_usage ();
        return 2;
    }
    char *admin = s_read_token (token_file);
    if (!admin) {
        bench_log ("cannot read %s", token_file);
        return 1;
    }
    //  The channel specs
    size_t spec_count = wchannels + (fan? 1: 0) + (all? 1: 0) + ichannels + (hist? 1: 0);
    spec_t *specs = (spec_t *) calloc (spec_count + 1, sizeof (spec_t));
    size_t n = 0;
    for (size_t k = 0; k < wchannels; k++, n++) {
        snprintf (specs [n].name, POP_NAME_MAX, "w%zu", k);
        specs [n].first = (uint32_t) (k * wsize);
        specs [n].count = (uint32_t) wsize;
    }
    if (fan) {
        strcpy (specs [n].name, "fan");
        specs [n++].count = (uint32_t) fan;
    }
    if (all) {
        strcpy (specs [n].name, "all");
        specs [n++].count = (uint32_t) users;
    }
    for (size_t k = 0; k < ichannels; k++, n++) {
        snprintf (specs [n].name, POP_NAME_MAX, "i%zu", k);
        specs [n].first = (uint32_t) (k % isenders);
        specs [n].count = 1;
    }
    if (hist) {
        strcpy (specs [n].name, "hist");
        specs [n++].count = 1;
    }
    rpc_t *rpc = rpc_new (api);
    if (!rpc)
        return 1;
    int rc = 1;
    uint64_t *uids = (uint64_t *) calloc (users, sizeof (uint64_t));
    char **tokens = (char **) calloc (users, sizeof (char *));
    proto_msg_t **replies = (proto_msg_t **) calloc (users > WINDOW? users: WINDOW, sizeof (proto_msg_t *));
    double started = bench_now_s ();
    uint64_t tenant_id = 0;

    //  The admin session and the tenant
    proto_writer_kv_str (rpc_begin (rpc, "auth"), "token", admin);
    proto_msg_t *reply = (proto_msg_t *) rpc_call (rpc, 0, TIMEOUT_MS);
    if (rpc_error (reply)) {
        bench_log ("admin auth: %s", rpc_error (reply));
        goto done;
    }
    proto_msg_destroy (&reply);
    proto_writer_kv_str (rpc_begin (rpc, "tenant_create"), "name", tenant);
    reply = (proto_msg_t *) rpc_call (rpc, 0, TIMEOUT_MS);
    if (rpc_error (reply)) {
        bench_log ("tenant_create %s: %s", tenant, rpc_error (reply));
        goto done;
    }
    const msgpack_object *t = proto_msg_get (reply, "tenant");
    if (t)
        proto_map_u64 (t, "id", &tenant_id);
    proto_msg_destroy (&reply);

    //  Users, then their tokens, pipelined within what the hashers queue
    for (size_t base = 0; base < users; base += USER_WINDOW) {
        size_t chunk = users - base < USER_WINDOW? users - base: USER_WINDOW;
        uint64_t first_rid = 0;
        for (size_t i = 0; i < chunk; i++) {
            char handle [32];
            snprintf (handle, sizeof (handle), "u%zu", base + i);
            proto_writer_t *w = rpc_begin (rpc, "user_create");
            proto_writer_kv_str (w, "tenant", tenant);
            proto_writer_kv_str (w, "handle", handle);
            proto_writer_kv_str (w, "display_name", handle);
            proto_writer_kv_str (w, "password", "bench-password");
            uint64_t rid = rpc_post (rpc, 0);
            if (i == 0)
                first_rid = rid;
        }
        memset (replies, 0, chunk * sizeof (proto_msg_t *));
        if (s_collect (rpc, chunk, "user_create", replies, first_rid))
            goto done;
        for (size_t i = 0; i < chunk; i++) {
            const msgpack_object *user = proto_msg_get (replies [i], "user");
            if (user)
                proto_map_u64 (user, "id", &uids [base + i]);
            proto_msg_destroy (&replies [i]);
        }
        for (size_t i = 0; i < chunk; i++) {
            char handle [32];
            snprintf (handle, sizeof (handle), "u%zu", base + i);
            proto_writer_t *w = rpc_begin (rpc, "token_create");
            proto_writer_kv_str (w, "tenant", tenant);
            proto_writer_kv_str (w, "handle", handle);
            uint64_t rid = rpc_post (rpc, 0);
            if (i == 0)
                first_rid = rid;
        }
        if (s_collect (rpc, chunk, "token_create", replies, first_rid))
            goto done;
        for (size_t i = 0; i < chunk; i++) {
            char token [256];
            if (proto_map_strcpy (proto_msg_root (replies [i]), "token", token, sizeof (token)))
                tokens [base + i] = strdup (token);
            proto_msg_destroy (&replies [i]);
        }
        if ((base / USER_WINDOW) % 32 == 31 || base + chunk == users)
            bench_log ("setup: %zu/%zu users (%.0f s)", base + chunk, users,
                       bench_now_s () - started);
    }
    for (size_t i = 0; i < users; i++)
        if (!uids [i] || !tokens [i]) {
            bench_log ("setup: user %zu incomplete", i);
            goto done;
        }

    //  Channels, each created by its first member
    for (size_t k = 0; k < spec_count; k++) {
        uint64_t sid = 1 + specs [k].first;
        proto_writer_kv_str (rpc_begin (rpc, "auth"), "token", tokens [specs [k].first]);
        reply = (proto_msg_t *) rpc_call (rpc, sid, TIMEOUT_MS);
        if (rpc_error (reply)) {
            bench_log ("auth u%u: %s", specs [k].first, rpc_error (reply));
            goto done;
        }
        proto_msg_destroy (&reply);
        proto_writer_kv_str (rpc_begin (rpc, "channel_create"), "name", specs [k].name);
        reply = (proto_msg_t *) rpc_call (rpc, sid, TIMEOUT_MS);
        if (rpc_error (reply)) {
            bench_log ("channel_create %s: %s", specs [k].name, rpc_error (reply));
            goto done;
        }
        const msgpack_object *channel = proto_msg_get (reply, "channel");
        if (channel)
            proto_map_u64 (channel, "id", &specs [k].id);
        proto_msg_destroy (&reply);
        rpc_begin (rpc, "bye");
        rpc_post (rpc, sid);
    }

    //  Joins: a window of users at a time authenticates, joins its
    //  channels, and leaves (bye), so few sessions get member_joined events
    for (size_t base = 0; base < users; base += WINDOW) {
        size_t chunk = users - base < WINDOW? users - base: WINDOW;
        for (size_t i = 0; i < chunk; i++) {
            proto_writer_kv_str (rpc_begin (rpc, "auth"), "token", tokens [base + i]);
            rpc_post (rpc, 1 + base + i);
        }
        if (s_collect (rpc, chunk, "auth", NULL, 0))
            goto done;
        size_t joins = 0;
        for (size_t i = 0; i < chunk; i++) {
            size_t u = base + i;
            for (size_t k = 0; k < spec_count; k++)
                if (u > specs [k].first && u < (size_t) specs [k].first + specs [k].count) {
                    proto_writer_kv_u64 (rpc_begin (rpc, "channel_join"), "ch", specs [k].id);
                    rpc_post (rpc, 1 + u);
                    joins++;
                }
        }
        if (s_collect (rpc, joins, "channel_join", NULL, 0))
            goto done;
        for (size_t i = 0; i < chunk; i++) {
            rpc_begin (rpc, "bye");
            rpc_post (rpc, 1 + base + i);
        }
        if ((base / WINDOW) % 32 == 31 || base + chunk == users)
            bench_log ("setup: joins done for %zu/%zu users (%.0f s)", base + chunk, users,
                       bench_now_s () - started);
    }

    FILE *file = fopen (out, "w");
    if (!file) {
        bench_log ("cannot write %s", out);
        goto done;
    }
    fprintf (file, "tenant %s %llu\n", tenant, (unsigned long long) tenant_id);
    for (size_t i = 0; i < users; i++)
        fprintf (file, "user %zu %llu %s\n", i, (unsigned long long) uids [i], tokens [i]);
    for (size_t k = 0; k < spec_count; k++)
        fprintf (file, "channel %s %llu %u %u\n", specs [k].name,
                 (unsigned long long) specs [k].id, specs [k].first, specs [k].count);
    fclose (file);
    bench_log ("setup: %zu users, %zu channels in %.1f s -> %s", users, spec_count,
               bench_now_s () - started, out);
    rc = 0;
done:
    for (size_t i = 0; i < users; i++)
        free (tokens [i]);
    free (tokens);
    free (uids);
    free (replies);
    free (specs);
    free (admin);
    rpc_destroy (&rpc);
    return rc;
}
