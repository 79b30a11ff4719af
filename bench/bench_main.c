/*  =========================================================================
    chorus-bench - the Chorus load generator (see bench.h, BENCHMARKS.md)
    =========================================================================
*/
#include <string.h>
#include "bench.h"

static void
s_usage (void)
{
    fprintf (stderr,
"usage: chorus-bench COMMAND [options]   (COMMAND --help for its options)\n"
"  setup       create a population (tenant, users, tokens, channels) -> file\n"
"  fill        pipelined sends into one channel (history data)\n"
"  run         the load: WebSocket, ZeroMQ and IRC clients, closed or open loop\n"
"  history     history page latency: newest, oldest, middle\n"
"  wait-ready  milliseconds until the API answers ping (start-up time)\n"
"  rocksdb     raw RocksDB synced WriteBatch rate (the limit)\n"
"  gen-history write a channel's history into a stopped server's RocksDB\n"
"  relay       a minimal epoll IRC relay on 127.0.0.1: the fan-out limit\n");
}

int
main (int argc, char **argv)
{
    if (argc < 2) {
        s_usage ();
        return 2;
    }
    const char *command = argv [1];
    argv [1] = argv [0];
    argc--;
    argv++;
    if (strcmp (command, "setup") == 0)
        return bench_setup (argc, argv);
    if (strcmp (command, "fill") == 0)
        return bench_fill (argc, argv);
    if (strcmp (command, "run") == 0)
        return bench_run (argc, argv);
    if (strcmp (command, "history") == 0)
        return bench_history (argc, argv);
    if (strcmp (command, "wait-ready") == 0)
        return bench_wait_ready (argc, argv);
    if (strcmp (command, "rocksdb") == 0)
        return bench_rocksdb (argc, argv);
    if (strcmp (command, "gen-history") == 0)
        return bench_gen_history (argc, argv);
    if (strcmp (command, "relay") == 0)
        return bench_relay (argc, argv);
    s_usage ();
    return 2;
}
