/*  =========================================================================
    bench_tools - fill (history data), history (page latency), wait-ready
    (start-up time) and rocksdb (the raw synced write rate: the limit)
    =========================================================================
*/
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>
#include <rocksdb/c.h>
#include "chorus/proto.h"
#include "bench.h"

#define TIMEOUT_MS 30000

static bool
s_loopback (const char *endpoint)
{
    return strncmp (endpoint, "tcp://127.", 10) == 0 || strncmp (endpoint, "tcp://localhost:", 16) == 0
        || strncmp (endpoint, "ipc://", 6) == 0;
}

//  Authenticates session sid of rpc as a user; 0 or -1
static int
s_auth (rpc_t *rpc, uint64_t sid, const char *token)
{
    proto_writer_kv_str (rpc_begin (rpc, "auth"), "token", token);
    proto_msg_t *reply = (proto_msg_t *) rpc_call (rpc, sid, TIMEOUT_MS);
    const char *error = rpc_error (reply);
    if (error)
        bench_log ("auth: %s", error);
    proto_msg_destroy (&reply);
    return error? -1: 0;
}

//  --------------------------------------------------------------------------
//  fill: COUNT pipelined sends into one channel, WINDOW in flight

int
bench_fill (int argc, char **argv)
{
    const char *api = NULL, *pop_path = NULL, *channel_name = NULL, *json = NULL;
    long user = -1, window = 512, sessions = 4;
    uint64_t count = 1000;
    size_t size = 200;
    static struct option longs [] = {
        { "api", 1, 0, 'a' }, { "pop", 1, 0, 'p' }, { "channel", 1, 0, 'c' },
        { "user", 1, 0, 'u' }, { "count", 1, 0, 'n' }, { "window", 1, 0, 'w' },
        { "size", 1, 0, 'b' }, { "sessions", 1, 0, 's' }, { "json", 1, 0, 'j' }, { 0, 0, 0, 0 }
    };
    int opt;
    optind = 1;
    while ((opt = getopt_long (argc, argv, "", longs, NULL)) != -1) {
        switch (opt) {
            case 'a': api = optarg; break;
            case 'p': pop_path = optarg; break;
            case 'c': channel_name = optarg; break;
            case 'u': user = atol (optarg); break;
            case 'n': count = strtoull (optarg, NULL, 10); break;
            case 'w': window = atol (optarg); break;
            case 'b': size = strtoul (optarg, NULL, 10); break;
            case 's': sessions = atol (optarg); break;
            case 'j': json = optarg; break;
            default: goto usage;
        }
    }
    if (!api || !pop_path || !channel_name || window < 1 || sessions < 1 || sessions > 64
    ||  !s_loopback (api))
        goto usage;
    pop_t *pop = pop_load (pop_path);
    if (!pop)
        return 1;
    const pop_channel_t *channel = pop_channel (pop, channel_name);
    if (!channel) {
        bench_log ("no channel %s", channel_name);
        pop_destroy (&pop);
        return 2;
    }
    if (user < 0)
        user = channel->first;
    rpc_t *rpc = rpc_new (api);
    int rc = 1;
    //  Several sessions of the user on one socket, used in turn
    for (long s = 0; s < sessions; s++)
        if (s_auth (rpc, (uint64_t) s + 1, pop->tokens [user]))
            goto done;
    char body [BODY_MAX + 1];
    uint32_t run_id = (uint32_t) (bench_now_ns () ^ (uint64_t) getpid ());
    uint64_t posted = 0, acked = 0, errors = 0, head = 0;
    double started = bench_now_s (), last_log = started;
    while (acked + errors < count) {
        while (posted < count && (long) (posted - acked - errors) < window) {
            proto_writer_t *w = rpc_begin (rpc, "send");
            proto_writer_kv_u64 (w, "ch", channel->id);
            char cmid [48];
            snprintf (cmid, sizeof (cmid), "f%x-%llu", run_id, (unsigned long long) posted);
            proto_writer_kv_str (w, "client_msg_id", cmid);
            size_t len = body_make (body, size, 0, 0, posted);
            proto_writer_kv_strn (w, "body", body, len);
            rpc_post (rpc, 1 + posted % (uint64_t) sessions);
            posted++;
        }
        uint64_t rid;
        proto_msg_t *reply = (proto_msg_t *) rpc_collect (rpc, TIMEOUT_MS, &rid);
        if (!reply) {
            bench_log ("fill: no reply in %d ms", TIMEOUT_MS);
            goto done;
        }
        const char *error = rpc_error (reply);
        if (error) {
            if (errors++ < 5)
                bench_log ("fill: %s", error);
        }
        else {
            uint64_t seq = 0;
            proto_msg_u64 (reply, "seq", &seq);
            if (seq > head)
                head = seq;
            acked++;
        }
        proto_msg_destroy (&reply);
        if (bench_now_s () - last_log > 10) {
            last_log = bench_now_s ();
            bench_log ("fill: %llu/%llu acked, %.0f/s", (unsigned long long) acked,
                       (unsigned long long) count, acked / (last_log - started));
        }
    }
    double elapsed = bench_now_s () - started;
    printf ("fill: %llu sends acked (%llu errors) in %.1f s: %.0f msgs/s; head %llu\n",
            (unsigned long long) acked, (unsigned long long) errors, elapsed, acked / elapsed,
            (unsigned long long) head);
    if (json) {
        report_t *report = report_new ("fill");
        report_str (report, "channel", channel_name);
        report_int (report, "acked", (int64_t) acked);
        report_int (report, "errors", (int64_t) errors);
        report_num (report, "seconds", elapsed);
        report_num (report, "acked_per_s", acked / elapsed);
        report_int (report, "head", (int64_t) head);
        report_int (report, "window", window);
        report_save (report, json);
        report_destroy (&report);
    }
    rc = errors? 1: 0;
done:
    rpc_destroy (&rpc);
    pop_destroy (&pop);
    return rc;
usage:
    fprintf (stderr, "usage: chorus-bench fill --api EP --pop FILE --channel NAME [--user I]\n"
                     "       [--count N] [--window W] [--sessions S] [--size B] [--json FILE]\n");
    return 2;
}

//  --------------------------------------------------------------------------
//  history: page latency at the newest, oldest and middle of a channel

//  One page request; returns its latency in ns, or 0 on error
static uint64_t
s_page (rpc_t *rpc, uint64_t ch, const char *anchor, uint64_t seq, uint64_t limit,
        size_t *messages, uint64_t *head)
{
    proto_writer_t *w = rpc_begin (rpc, "history");
    proto_writer_kv_u64 (w, "ch", ch);
    if (anchor)
        proto_writer_kv_u64 (w, anchor, seq);
    proto_writer_kv_u64 (w, "limit", limit);
    uint64_t start = bench_now_ns ();
    proto_msg_t *reply = (proto_msg_t *) rpc_call (rpc, 1, TIMEOUT_MS);
    uint64_t took = bench_now_ns () - start;
    const char *error = rpc_error (reply);
    if (error) {
        bench_log ("history: %s", error);
        proto_msg_destroy (&reply);
        return 0;
    }
    const msgpack_object *list = proto_msg_get (reply, "messages");
    *messages = list && list->type == MSGPACK_OBJECT_ARRAY? list->via.array.size: 0;
    if (head)
        proto_msg_u64 (reply, "head", head);
    proto_msg_destroy (&reply);
    return took? took: 1;
}

int
bench_history (int argc, char **argv)
{
    const char *api = NULL, *pop_path = NULL, *channel_name = "hist", *json = NULL;
    long count = 1000, limit = 50, user = -1;
    static struct option longs [] = {
        { "api", 1, 0, 'a' }, { "pop", 1, 0, 'p' }, { "channel", 1, 0, 'c' },
        { "count", 1, 0, 'n' }, { "limit", 1, 0, 'l' }, { "user", 1, 0, 'u' },
        { "json", 1, 0, 'j' }, { 0, 0, 0, 0 }
    };
    int opt;
    optind = 1;
    while ((opt = getopt_long (argc, argv, "", longs, NULL)) != -1) {
        switch (opt) {
            case 'a': api = optarg; break;
            case 'p': pop_path = optarg; break;
            case 'c': channel_name = optarg; break;
            case 'n': count = atol (optarg); break;
            case 'l': limit = atol (optarg); break;
            case 'u': user = atol (optarg); break;
            case 'j': json = optarg; break;
            default: goto usage;
        }
    }
    if (!api || !pop_path || count < 1 || limit < 1 || limit > 200 || !s_loopback (api))
        goto usage;
    pop_t *pop = pop_load (pop_path);
    if (!pop)
        return 1;
    const pop_channel_t *channel = pop_channel (pop, channel_name);
    if (!channel) {
        bench_log ("no channel %s", channel_name);
        pop_destroy (&pop);
        return 2;
    }
    rpc_t *rpc = rpc_new (api);
    int rc = 1;
    report_t *report = report_new ("history");
    if (s_auth (rpc, 1, pop->tokens [user < 0? channel->first: (size_t) user]))
        goto done;
    size_t messages = 0;
    uint64_t head = 0;
    uint64_t cold = s_page (rpc, channel->id, NULL, 0, (uint64_t) limit, &messages, &head);
    if (!cold)
        goto done;
    report_int (report, "head", (int64_t) head);
    report_num (report, "first_page_ms", cold / 1e6);
    printf ("\n== history: channel %s, head %llu, page of %ld, %ld requests each, one in flight ==\n",
            channel_name, (unsigned long long) head, limit, count);
    printf ("first page after connect: %.3f ms\n", cold / 1e6);
    struct { const char *name; const char *anchor; uint64_t seq; } pages [] = {
        { "newest", NULL, 0 },
        { "oldest", "before", (uint64_t) limit + 1 },
        { "middle", "around", head / 2 },
    };
    rc = 0;
    for (size_t i = 0; i < 3; i++) {
        hist_t hist;
        hist_init (&hist);
        size_t short_pages = 0;
        for (long n = 0; n < count; n++) {
            //  Middle pages wander a little so the cache is not one block
            uint64_t seq = pages [i].seq;
            if (pages [i].anchor && strcmp (pages [i].anchor, "around") == 0 && head > 2000)
                seq = head / 2 - 500 + (uint64_t) (n * 7919) % 1000;
            uint64_t took = s_page (rpc, channel->id, pages [i].anchor, seq, (uint64_t) limit,
                                    &messages, NULL);
            if (!took) {
                rc = 1;
                break;
            }
            if ((long) messages < limit && head >= (uint64_t) limit)
                short_pages++;
            hist_add (&hist, took);
        }
        char key [32];
        snprintf (key, sizeof (key), "%s_ms", pages [i].name);
        report_hist (report, key, &hist);
        printf ("%-8s p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms  (n=%llu, short pages %zu)\n",
                pages [i].name, hist_quantile (&hist, 0.5) / 1e6, hist_quantile (&hist, 0.99) / 1e6,
                hist_quantile (&hist, 0.999) / 1e6, hist_quantile (&hist, 1.0) / 1e6,
                (unsigned long long) hist.count, short_pages);
        if (short_pages)
            rc = 1;
    }
    report_int (report, "limit", limit);
    report_save (report, json);
done:
    report_destroy (&report);
    rpc_destroy (&rpc);
    pop_destroy (&pop);
    return rc;
usage:
    fprintf (stderr, "usage: chorus-bench history --api EP --pop FILE [--channel hist] [--count N]\n"
                     "       [--limit 50] [--json FILE]\n");
    return 2;
}

//  --------------------------------------------------------------------------
//  wait-ready: start a server, time until its API answers ping

int
bench_wait_ready (int argc, char **argv)
{
    const char *api = NULL, *pidfile = NULL, *json = NULL, *log = NULL;
    double timeout = 120;
    static struct option longs [] = {
        { "api", 1, 0, 'a' }, { "pidfile", 1, 0, 'p' }, { "timeout", 1, 0, 't' },
        { "json", 1, 0, 'j' }, { "log", 1, 0, 'l' }, { 0, 0, 0, 0 }
    };
    int opt;
    optind = 1;
    while ((opt = getopt_long (argc, argv, "+", longs, NULL)) != -1) {
        switch (opt) {
            case 'a': api = optarg; break;
            case 'p': pidfile = optarg; break;
            case 't': timeout = atof (optarg); break;
            case 'j': json = optarg; break;
            case 'l': log = optarg; break;
            default: goto usage;
        }
    }
    if (!api || !s_loopback (api))
        goto usage;
    double started = bench_now_s ();
    pid_t pid = 0;
    if (optind < argc) {
        pid = fork ();
        if (pid == 0) {
            if (log) {
                FILE *file = freopen (log, "a", stdout);
                if (file)
                    dup2 (fileno (stdout), 2);
            }
            setsid ();
            execv (argv [optind], argv + optind);
            _exit (127);
        }
        if (pid < 0) {
            bench_log ("fork: %s", strerror (errno));
            return 1;
        }
        if (pidfile) {
            FILE *file = fopen (pidfile, "w");
            if (file) {
                fprintf (file, "%d\n", (int) pid);
                fclose (file);
            }
        }
    }
    void *context = zmq_ctx_new ();
    void *socket = zmq_socket (context, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt (socket, ZMQ_LINGER, &linger, sizeof (linger));
    zmq_connect (socket, api);
    double ready = -1;
    const uint8_t ping [] = { 0x82, 0xa2, 'o', 'p', 0xa4, 'p', 'i', 'n', 'g', 0xa3, 'r', 'i', 'd', 0x01 };
    while (bench_now_s () - started < timeout) {
        if (pid > 0 && waitpid (pid, NULL, WNOHANG) == pid) {
            bench_log ("the server exited before it was ready");
            break;
        }
        zmq_send (socket, ping, sizeof (ping), ZMQ_DONTWAIT);
        zmq_pollitem_t item = { socket, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, 5) > 0) {
            ready = bench_now_s () - started;
            break;
        }
    }
    zmq_close (socket);
    zmq_ctx_term (context);
    if (ready < 0) {
        bench_log ("no answer to ping in %.0f s", timeout);
        return 1;
    }
    printf ("ready_ms %.1f\n", ready * 1000);
    if (json) {
        report_t *report = report_new ("startup");
        report_num (report, "ready_ms", ready * 1000);
        report_int (report, "pid", pid);
        report_save (report, json);
        report_destroy (&report);
    }
    return 0;
usage:
    fprintf (stderr, "usage: chorus-bench wait-ready --api EP [--pidfile F] [--log F] [--json F]\n"
                     "       [--timeout S] [-- SERVER ARGS...]\n");
    return 2;
}

//  --------------------------------------------------------------------------
//  rocksdb: one writer, WriteBatch of BATCH messages, sync=true, the
//  options of storage/store.c that matter for writes. Each message is the
//  puts Chorus makes for a send: the record, the dedupe record and the
//  sender's position (--puts 3), or the record alone (--puts 1).

int
bench_rocksdb (int argc, char **argv)
{
    const char *dir = NULL, *json = NULL;
    long batch = 64, puts = 3;
    size_t value_size = 300;
    double seconds = 5;
    static struct option longs [] = {
        { "dir", 1, 0, 'd' }, { "batch", 1, 0, 'b' }, { "value-size", 1, 0, 'v' },
        { "seconds", 1, 0, 's' }, { "puts", 1, 0, 'p' }, { "json", 1, 0, 'j' }, { 0, 0, 0, 0 }
    };
    int opt;
    optind = 1;
    while ((opt = getopt_long (argc, argv, "", longs, NULL)) != -1) {
        switch (opt) {
            case 'd': dir = optarg; break;
            case 'b': batch = atol (optarg); break;
            case 'v': value_size = strtoul (optarg, NULL, 10); break;
            case 's': seconds = atof (optarg); break;
            case 'p': puts = atol (optarg); break;
            case 'j': json = optarg; break;
            default: goto usage;
        }
    }
    if (!dir || batch < 1 || puts < 1 || puts > 3 || value_size < 1 || value_size > 65536
    ||  seconds <= 0 || seconds > 600)
        goto usage;
    mkdir (dir, 0700);
    rocksdb_options_t *options = rocksdb_options_create ();
    rocksdb_options_set_create_if_missing (options, 1);
    rocksdb_options_set_max_background_jobs (options, 2);
    rocksdb_options_set_write_buffer_size (options, 32u << 20);
    rocksdb_options_set_db_write_buffer_size (options, 256u << 20);
    rocksdb_options_set_max_total_wal_size (options, 512ull << 20);
    char *err = NULL;
    rocksdb_t *db = rocksdb_open (options, dir, &err);
    if (!db) {
        bench_log ("rocksdb_open %s: %s", dir, err);
        free (err);
        rocksdb_options_destroy (options);
        return 1;
    }
    rocksdb_writeoptions_t *wopts = rocksdb_writeoptions_create ();
    rocksdb_writeoptions_set_sync (wopts, 1);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create ();
    char *value = (char *) malloc (value_size);
    for (size_t i = 0; i < value_size; i++)
        value [i] = (char) ('a' + i % 26);
    hist_t commit;
    hist_init (&commit);
    uint64_t seq = 0, messages = 0, commits = 0;
    double started = bench_now_s ();
    int rc = 0;
    while (bench_now_s () - started < seconds) {
        rocksdb_writebatch_clear (wb);
        for (long i = 0; i < batch; i++) {
            seq++;
            uint8_t key [64];
            key [0] = 'm';
            for (int b = 0; b < 8; b++)
                key [1 + b] = (uint8_t) (((seq % 100) + 1) >> (56 - 8 * b));
            for (int b = 0; b < 8; b++)
                key [9 + b] = (uint8_t) (seq >> (56 - 8 * b));
            memcpy (value, &seq, sizeof (seq));
            rocksdb_writebatch_put (wb, (const char *) key, 17, value, value_size);
            if (puts >= 2) {
                char dkey [64], dval [32];
                int n = snprintf (dkey, sizeof (dkey), "d%08llxb0000-0000-%llu",
                                  (unsigned long long) (seq % 64), (unsigned long long) seq);
                rocksdb_writebatch_put (wb, dkey, (size_t) n, dval, 24);
            }
            if (puts >= 3) {
                key [0] = 'p';
                rocksdb_writebatch_put (wb, (const char *) key, 17, value, 8);
            }
        }
        uint64_t t0 = bench_now_ns ();
        rocksdb_write (db, wopts, wb, &err);
        hist_add (&commit, bench_now_ns () - t0);
        if (err) {
            bench_log ("rocksdb_write: %s", err);
            free (err);
            rc = 1;
            break;
        }
        messages += (uint64_t) batch;
        commits++;
    }
    double elapsed = bench_now_s () - started;
    printf ("rocksdb: batch %ld x %ld puts, value %zu B, sync: %.0f msgs/s, %.0f commits/s, "
            "commit p50 %.3f ms p99 %.3f ms\n", batch, puts, value_size, messages / elapsed,
            commits / elapsed, hist_quantile (&commit, 0.5) / 1e6, hist_quantile (&commit, 0.99) / 1e6);
    if (json) {
        report_t *report = report_new ("rocksdb");
        report_int (report, "batch", batch);
        report_int (report, "puts_per_msg", puts);
        report_int (report, "value_bytes", (int64_t) value_size);
        report_num (report, "msgs_per_s", messages / elapsed);
        report_num (report, "commits_per_s", commits / elapsed);
        report_hist (report, "commit_ms", &commit);
        report_save (report, json);
        report_destroy (&report);
    }
    free (value);
    rocksdb_writebatch_destroy (wb);
    rocksdb_writeoptions_destroy (wopts);
    rocksdb_close (db);
    rocksdb_options_destroy (options);
    return rc;
usage:
    fprintf (stderr, "usage: chorus-bench rocksdb --dir DIR [--batch N] [--puts 1|2|3]\n"
                     "       [--value-size B] [--seconds S] [--json FILE]\n");
    return 2;
}

//  --------------------------------------------------------------------------
//  gen-history: writes COUNT messages of one channel straight into a stopped
//  server's messages/ database, in the layout persistence writes (docs/
//  storage.md): 'm' ch seq -> the message record, 'd' uid cmid -> {ch, seq,
//  ts}, in the tenant's column family. For the history scenario, when
//  filling through the API would take hours (see BENCHMARKS.md).

static void
s_be64 (uint8_t *dest, uint64_t value)
{
    for (int i = 0; i < 8; i++)
        dest [i] = (uint8_t) (value >> (56 - 8 * i));
}

int
bench_gen_history (int argc, char **argv)
{
    const char *db_path = NULL, *pop_path = NULL, *channel_name = "hist";
    uint64_t count = 0;
    size_t size = 200;
    static struct option longs [] = {
        { "db", 1, 0, 'd' }, { "pop", 1, 0, 'p' }, { "channel", 1, 0, 'c' },
        { "count", 1, 0, 'n' }, { "size", 1, 0, 'b' }, { 0, 0, 0, 0 }
    };
    int opt;
    optind = 1;
    while ((opt = getopt_long (argc, argv, "", longs, NULL)) != -1) {
        switch (opt) {
            case 'd': db_path = optarg; break;
            case 'p': pop_path = optarg; break;
            case 'c': channel_name = optarg; break;
            case 'n': count = strtoull (optarg, NULL, 10); break;
            case 'b': size = strtoul (optarg, NULL, 10); break;
            default: goto usage;
        }
    }
    if (!db_path || !pop_path || count == 0)
        goto usage;
    pop_t *pop = pop_load (pop_path);
    if (!pop)
        return 1;
    const pop_channel_t *channel = pop_channel (pop, channel_name);
    if (!channel) {
        bench_log ("no channel %s", channel_name);
        pop_destroy (&pop);
        return 2;
    }
    uint64_t ch = channel->id, author = pop->uids [channel->first];
    char cf_name [64];
    snprintf (cf_name, sizeof (cf_name), "t/%llu", (unsigned long long) pop->tenant_id);
    //  The options storage/store.c creates its tables with
    rocksdb_cache_t *cache = rocksdb_cache_create_lru (64u << 20);
    rocksdb_block_based_table_options_t *table = rocksdb_block_based_options_create ();
    rocksdb_block_based_options_set_block_cache (table, cache);
    rocksdb_block_based_options_set_filter_policy (table, rocksdb_filterpolicy_create_bloom_full (10));
    rocksdb_block_based_options_set_cache_index_and_filter_blocks (table, 1);
    rocksdb_options_t *options = rocksdb_options_create ();
    rocksdb_options_set_create_if_missing (options, 1);
    rocksdb_options_set_create_missing_column_families (options, 1);
    rocksdb_options_set_max_background_jobs (options, 2);
    rocksdb_options_set_write_buffer_size (options, 32u << 20);
    rocksdb_options_set_db_write_buffer_size (options, 256u << 20);
    rocksdb_options_set_block_based_table_factory (options, table);
    char *err = NULL;
    size_t listed_count = 0;
    char **listed = rocksdb_list_column_families (options, db_path, &listed_count, &err);
    if (err) {
        bench_log ("%s: %s (start the server on it once first)", db_path, err);
        free (err);
        return 1;
    }
    const char **names = (const char **) calloc (listed_count + 1, sizeof (char *));
    const rocksdb_options_t **cf_options = (const rocksdb_options_t **) calloc (listed_count + 1, sizeof (void *));
    rocksdb_column_family_handle_t **handles = (rocksdb_column_family_handle_t **)
        calloc (listed_count + 1, sizeof (void *));
    size_t names_count = 0;
    int target = -1;
    for (size_t i = 0; i < listed_count; i++) {
        if (strcmp (listed [i], cf_name) == 0)
            target = (int) names_count;
        names [names_count++] = listed [i];
    }
    if (target < 0) {
        target = (int) names_count;
        names [names_count++] = cf_name;
    }
    for (size_t i = 0; i < names_count; i++)
        cf_options [i] = options;
    rocksdb_t *db = rocksdb_open_column_families (options, db_path, (int) names_count, names,
                                                  cf_options, handles, &err);
    if (!db) {
        bench_log ("open %s: %s", db_path, err);
        free (err);
        return 1;
    }
    rocksdb_column_family_handle_t *cf = handles [target];
    //  Continue after the channel's last message, if any
    uint64_t first_seq = 1;
    uint8_t lower [17], upper [17];
    lower [0] = upper [0] = 'm';
    s_be64 (lower + 1, ch);
    s_be64 (lower + 9, 0);
    s_be64 (upper + 1, ch + 1);
    s_be64 (upper + 9, 0);
    rocksdb_readoptions_t *ropts = rocksdb_readoptions_create ();
    rocksdb_readoptions_set_iterate_upper_bound (ropts, (const char *) upper, 17);
    rocksdb_iterator_t *iter = rocksdb_create_iterator_cf (db, ropts, cf);
    rocksdb_iter_seek_for_prev (iter, (const char *) upper, 17);
    if (rocksdb_iter_valid (iter)) {
        size_t len;
        const uint8_t *key = (const uint8_t *) rocksdb_iter_key (iter, &len);
        if (len == 17 && key [0] == 'm' && memcmp (key + 1, lower + 1, 8) == 0) {
            uint64_t seq = 0;
            for (int i = 0; i < 8; i++)
                seq = (seq << 8) | key [9 + i];
            first_seq = seq + 1;
        }
    }
    rocksdb_iter_destroy (iter);
    rocksdb_readoptions_destroy (ropts);
    rocksdb_writeoptions_t *wopts = rocksdb_writeoptions_create ();
    rocksdb_writeoptions_disable_WAL (wopts, 1);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create ();
    proto_writer_t *record = proto_writer_new ();
    char body [BODY_MAX + 1];
    uint32_t run_id = (uint32_t) (bench_now_ns () ^ (uint64_t) getpid ());
    uint64_t now_ms = (uint64_t) time (NULL) * 1000;
    double started = bench_now_s ();
    int rc = 0;
    uint64_t last = first_seq + count - 1;
    for (uint64_t seq = first_seq; seq <= last; seq++) {
        uint64_t ts = now_ms - (last - seq) / 10;    //  ten messages a millisecond
        char cmid [48];
        int cmid_len = snprintf (cmid, sizeof (cmid), "g%x-%llu", run_id, (unsigned long long) seq);
        size_t body_len = body_make (body, size, 0, 0, seq);
        proto_writer_reset (record);
        proto_writer_map_begin (record);
        proto_writer_kv_u64 (record, "ch", ch);
        proto_writer_kv_u64 (record, "seq", seq);
        proto_writer_kv_u64 (record, "author", author);
        proto_writer_kv_u64 (record, "ts", ts);
        proto_writer_kv_strn (record, "body", body, body_len);
        proto_writer_kv_strn (record, "client_msg_id", cmid, (size_t) cmid_len);
        proto_writer_map_end (record);
        uint8_t key [9 + 64];
        key [0] = 'm';
        s_be64 (key + 1, ch);
        s_be64 (key + 9, seq);
        rocksdb_writebatch_put_cf (wb, cf, (const char *) key, 17,
                                   proto_writer_data (record), proto_writer_size (record));
        proto_writer_reset (record);
        proto_writer_map_begin (record);
        proto_writer_kv_u64 (record, "ch", ch);
        proto_writer_kv_u64 (record, "seq", seq);
        proto_writer_kv_u64 (record, "ts", ts);
        proto_writer_map_end (record);
        key [0] = 'd';
        s_be64 (key + 1, author);
        memcpy (key + 9, cmid, (size_t) cmid_len);
        rocksdb_writebatch_put_cf (wb, cf, (const char *) key, 9 + (size_t) cmid_len,
                                   proto_writer_data (record), proto_writer_size (record));
        if (rocksdb_writebatch_count (wb) >= 20000 || seq == last) {
            rocksdb_write (db, wopts, wb, &err);
            rocksdb_writebatch_clear (wb);
            if (err) {
                bench_log ("write: %s", err);
                free (err);
                rc = 1;
                break;
            }
        }
        if (seq % 1000000 == 0)
            bench_log ("gen-history: seq %llu (%.0f msgs/s)", (unsigned long long) seq,
                       (seq - first_seq + 1) / (bench_now_s () - started));
    }
    //  The sender's read position, as sending would leave it
    uint8_t pkey [17];
    pkey [0] = 'p';
    s_be64 (pkey + 1, ch);
    s_be64 (pkey + 9, author);
    proto_writer_reset (record);
    proto_writer_map_begin (record);
    proto_writer_kv_u64 (record, "r", last);
    proto_writer_kv_u64 (record, "d", last);
    proto_writer_map_end (record);
    rocksdb_put_cf (db, wopts, cf, (const char *) pkey, 17, proto_writer_data (record),
                    proto_writer_size (record), &err);
    free (err);
    err = NULL;
    double written = bench_now_s () - started;
    rocksdb_flushoptions_t *fopts = rocksdb_flushoptions_create ();
    rocksdb_flushoptions_set_wait (fopts, 1);
    rocksdb_flush_cf (db, fopts, cf, &err);
    free (err);
    err = NULL;
    rocksdb_compact_range_cf (db, cf, NULL, 0, NULL, 0);
    double compacted = bench_now_s () - started;
    printf ("gen-history: seqs %llu..%llu written in %.1f s (%.0f msgs/s), flushed and compacted at %.1f s\n",
            (unsigned long long) first_seq, (unsigned long long) last, written,
            count / written, compacted);
    rocksdb_flushoptions_destroy (fopts);
    proto_writer_destroy (&record);
    rocksdb_writebatch_destroy (wb);
    rocksdb_writeoptions_destroy (wopts);
    for (size_t i = 0; i < names_count; i++)
        rocksdb_column_family_handle_destroy (handles [i]);
    rocksdb_close (db);
    rocksdb_options_destroy (options);
    rocksdb_block_based_options_destroy (table);
    rocksdb_cache_destroy (cache);
    rocksdb_list_column_families_destroy (listed, listed_count);
    free (names);
    free (cf_options);
    free (handles);
    pop_destroy (&pop);
    return rc;
usage:
    fprintf (stderr, "usage: chorus-bench gen-history --db DATA/messages --pop FILE [--channel hist]\n"
                     "       --count N [--size B]   (the server must be stopped)\n");
    return 2;
}

//  --------------------------------------------------------------------------
//  relay: the fan-out limit. A minimal single-threaded IRC relay on epoll:
//  NICK/USER get 001, JOIN gets 366, PRIVMSG goes to every other member of
//  the channel, PING gets PONG. Lines are appended to each receiver's
//  buffer and each connection is written once per loop pass, so this is
//  the cheapest relay the same clients can talk to: what this machine
//  allows, with no storage, JSON or WebSocket framing. Bounded by
//  --seconds; stops on SIGTERM.

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <arpa/inet.h>

typedef struct {
    int fd;
    char nick [32];
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_cap;
    bool dirty;
} relay_conn_t;

typedef struct {
    char name [64];
    relay_conn_t **members;
    size_t count, cap;
} relay_channel_t;

static volatile sig_atomic_t s_relay_stop = 0;

static void
s_relay_signal (int sig)
{
    (void) sig;
    s_relay_stop = 1;
}

static void
s_relay_append (relay_conn_t *conn, const char *data, size_t len, relay_conn_t ***dirty,
                size_t *dirty_count, size_t *dirty_cap)
{
    if (conn->fd < 0)
        return;
    if (conn->out_len + len > conn->out_cap) {
        conn->out_cap = (conn->out_len + len) * 2;
        conn->out = (char *) realloc (conn->out, conn->out_cap);
    }
    if (len) {
        memcpy (conn->out + conn->out_len, data, len);
        conn->out_len += len;
    }
    if (!conn->dirty) {
        conn->dirty = true;
        if (*dirty_count == *dirty_cap) {
            *dirty_cap = *dirty_cap? *dirty_cap * 2: 1024;
            *dirty = (relay_conn_t **) realloc (*dirty, *dirty_cap * sizeof (relay_conn_t *));
        }
        (*dirty) [(*dirty_count)++] = conn;
    }
}

int
bench_relay (int argc, char **argv)
{
    int port = 0;
    double seconds = 600;
    const char *portfile = NULL;
    static struct option longs [] = {
        { "port", 1, 0, 'p' }, { "seconds", 1, 0, 's' }, { "portfile", 1, 0, 'f' }, { 0, 0, 0, 0 }
    };
    int opt;
    optind = 1;
    while ((opt = getopt_long (argc, argv, "", longs, NULL)) != -1) {
        switch (opt) {
            case 'p': port = atoi (optarg); break;
            case 's': seconds = atof (optarg); break;
            case 'f': portfile = optarg; break;
            default: goto usage;
        }
    }
    if (port < 0 || port > 65535 || seconds <= 0 || seconds > 7200)
        goto usage;
    signal (SIGTERM, s_relay_signal);
    signal (SIGINT, s_relay_signal);
    signal (SIGPIPE, SIG_IGN);
    int listener = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt (listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof (one));
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port),
                                .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    if (bind (listener, (struct sockaddr *) &addr, sizeof (addr)) || listen (listener, 4096)) {
        bench_log ("relay: cannot listen on 127.0.0.1:%d: %s", port, strerror (errno));
        return 1;
    }
    socklen_t addr_len = sizeof (addr);
    getsockname (listener, (struct sockaddr *) &addr, &addr_len);
    printf ("relay: listening on 127.0.0.1:%d\n", ntohs (addr.sin_port));
    fflush (stdout);
    if (portfile) {
        FILE *file = fopen (portfile, "w");
        if (file) {
            fprintf (file, "%d\n", ntohs (addr.sin_port));
            fclose (file);
        }
    }
    int ep = epoll_create1 (0);
    struct epoll_event event = { .events = EPOLLIN, .data.ptr = NULL };
    epoll_ctl (ep, EPOLL_CTL_ADD, listener, &event);
    relay_channel_t *channels = NULL;
    size_t channel_count = 0, channel_cap = 0;
    relay_conn_t **dirty = NULL;
    size_t dirty_count = 0, dirty_cap = 0;
    relay_conn_t **all = NULL;          //  every connection, freed at exit
    size_t all_count = 0, all_cap = 0;
    char *scratch = (char *) malloc (256 * 1024);
    double started = bench_now_s ();
    struct epoll_event events [512];
    while (!s_relay_stop && bench_now_s () - started < seconds) {
        int n = epoll_wait (ep, events, 512, 100);
        for (int i = 0; i < n; i++) {
            relay_conn_t *conn = (relay_conn_t *) events [i].data.ptr;
            if (!conn) {
                int fd;
                while ((fd = accept4 (listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof (one));
                    relay_conn_t *fresh = (relay_conn_t *) calloc (1, sizeof (relay_conn_t));
                    fresh->fd = fd;
                    if (all_count == all_cap) {
                        all_cap = all_cap? all_cap * 2: 1024;
                        all = (relay_conn_t **) realloc (all, all_cap * sizeof (relay_conn_t *));
                    }
                    all [all_count++] = fresh;
                    struct epoll_event add = { .events = EPOLLIN, .data.ptr = fresh };
                    epoll_ctl (ep, EPOLL_CTL_ADD, fd, &add);
                }
                continue;
            }
            if (conn->fd < 0)
                continue;
            if (events [i].events & EPOLLOUT)     //  flush the rest this pass
                s_relay_append (conn, "", 0, &dirty, &dirty_count, &dirty_cap);
            if (!(events [i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                continue;
            ssize_t got = recv (conn->fd, scratch, 256 * 1024, 0);
            if (got == 0 || (got < 0 && errno != EAGAIN)) {
                epoll_ctl (ep, EPOLL_CTL_DEL, conn->fd, NULL);
                close (conn->fd);
                conn->fd = -1;          //  kept (channels point at it) until exit
                continue;
            }
            if (got < 0)
                continue;
            if (conn->in_len + (size_t) got > conn->in_cap) {
                conn->in_cap = (conn->in_len + (size_t) got) * 2;
                conn->in = (char *) realloc (conn->in, conn->in_cap);
            }
            memcpy (conn->in + conn->in_len, scratch, (size_t) got);
            conn->in_len += (size_t) got;
            size_t used = 0;
            while (used < conn->in_len) {
                char *line = conn->in + used;
                char *nl = memchr (line, '\n', conn->in_len - used);
                if (!nl)
                    break;
                size_t len = (size_t) (nl - line);
                used += len + 1;
                if (len && line [len - 1] == '\r')
                    len--;
                char out [512];
                if (len > 5 && memcmp (line, "NICK ", 5) == 0) {
                    size_t nick_len = len - 5 < sizeof (conn->nick) - 1? len - 5: sizeof (conn->nick) - 1;
                    memcpy (conn->nick, line + 5, nick_len);
                    conn->nick [nick_len] = 0;
                }
                else
                if (len > 5 && memcmp (line, "USER ", 5) == 0) {
                    int k = snprintf (out, sizeof (out), ":relay 001 %s :welcome\r\n", conn->nick);
                    s_relay_append (conn, out, (size_t) k, &dirty, &dirty_count, &dirty_cap);
                }
                else
                if (len > 5 && memcmp (line, "PING ", 5) == 0) {
                    int k = snprintf (out, sizeof (out), ":relay PONG relay %.*s\r\n",
                                      (int) (len - 5 > 400? 400: len - 5), line + 5);
                    s_relay_append (conn, out, (size_t) k, &dirty, &dirty_count, &dirty_cap);
                }
                else
                if (len > 5 && memcmp (line, "JOIN ", 5) == 0) {
                    size_t name_len = len - 5 < 63? len - 5: 63;
                    relay_channel_t *channel = NULL;
                    for (size_t c = 0; c < channel_count && !channel; c++)
                        if (strlen (channels [c].name) == name_len
                        &&  memcmp (channels [c].name, line + 5, name_len) == 0)
                            channel = &channels [c];
                    if (!channel) {
                        if (channel_count == channel_cap) {
                            channel_cap = channel_cap? channel_cap * 2: 64;
                            channels = (relay_channel_t *) realloc (channels, channel_cap * sizeof (relay_channel_t));
                        }
                        channel = &channels [channel_count++];
                        memset (channel, 0, sizeof (*channel));
                        memcpy (channel->name, line + 5, name_len);
                    }
                    if (channel->count == channel->cap) {
                        channel->cap = channel->cap? channel->cap * 2: 16;
                        channel->members = (relay_conn_t **) realloc (channel->members,
                                                                     channel->cap * sizeof (void *));
                    }
                    channel->members [channel->count++] = conn;
                    int k = snprintf (out, sizeof (out), ":relay 366 %s %s :end\r\n", conn->nick, channel->name);
                    s_relay_append (conn, out, (size_t) k, &dirty, &dirty_count, &dirty_cap);
                }
                else
                if (len > 8 && memcmp (line, "PRIVMSG ", 8) == 0) {
                    char *space = memchr (line + 8, ' ', len - 8);
                    if (!space)
                        continue;
                    size_t name_len = (size_t) (space - (line + 8));
                    relay_channel_t *channel = NULL;
                    for (size_t c = 0; c < channel_count && !channel; c++)
                        if (strlen (channels [c].name) == name_len
                        &&  memcmp (channels [c].name, line + 8, name_len) == 0)
                            channel = &channels [c];
                    if (!channel)
                        continue;
                    //  ":nick PRIVMSG #chan :body\r\n", built once, appended to each
                    size_t prefix = (size_t) snprintf (out, sizeof (out), ":%s ", conn->nick);
                    size_t total = prefix + len + 2;
                    char *msg = total <= sizeof (out)? out: (char *) malloc (total);
                    if (msg != out)
                        memcpy (msg, out, prefix);
                    memcpy (msg + prefix, line, len);
                    memcpy (msg + prefix + len, "\r\n", 2);
                    for (size_t m = 0; m < channel->count; m++)
                        if (channel->members [m] != conn)
                            s_relay_append (channel->members [m], msg, total, &dirty, &dirty_count, &dirty_cap);
                    if (msg != out)
                        free (msg);
                }
            }
            memmove (conn->in, conn->in + used, conn->in_len - used);
            conn->in_len -= used;
        }
        //  One write per connection per pass
        for (size_t d = 0; d < dirty_count; d++) {
            relay_conn_t *conn = dirty [d];
            conn->dirty = false;
            if (conn->fd < 0 || conn->out_len == 0)
                continue;
            ssize_t sent = send (conn->fd, conn->out, conn->out_len, MSG_NOSIGNAL);
            if (sent > 0) {
                memmove (conn->out, conn->out + sent, conn->out_len - (size_t) sent);
                conn->out_len -= (size_t) sent;
            }
            struct epoll_event mod = { .events = EPOLLIN | (conn->out_len? EPOLLOUT: 0), .data.ptr = conn };
            epoll_ctl (ep, EPOLL_CTL_MOD, conn->fd, &mod);
        }
        dirty_count = 0;
    }
    for (size_t i = 0; i < all_count; i++) {
        if (all [i]->fd >= 0)
            close (all [i]->fd);
        free (all [i]->in);
        free (all [i]->out);
        free (all [i]);
    }
    free (all);
    close (ep);
    close (listener);
    free (scratch);
    free (dirty);
    for (size_t c = 0; c < channel_count; c++)
        free (channels [c].members);
    free (channels);
    return 0;
usage:
    fprintf (stderr, "usage: chorus-bench relay [--port P] [--portfile F] [--seconds S]\n");
    return 2;
}
