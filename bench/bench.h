/*  =========================================================================
    bench.h - chorus-bench: the Chorus load generator

    One binary, several commands (see bench_main.c for the usage text):

        setup       creates a population (tenant, users, tokens, channels)
                    through the admin API and writes it to a file
        fill        pipelined sends into one channel (history data)
        run         the load engine: WebSocket, ZeroMQ and IRC clients on
                    one epoll loop, closed or open loop, latency from a
                    timestamp carried in each message body
        history     history page latency (newest, oldest, middle)
        wait-ready  time until a server answers ping (start-up time)
        rocksdb     the raw RocksDB synced write rate (the limit)
        gen-history writes a channel's history straight into a stopped
                    server's RocksDB (when the API fill would take hours)
        relay       a minimal epoll IRC relay: the fan-out limit

    Every run is bounded in count and time and stops by itself. Traffic
    goes only to the loopback addresses given on the command line.
    =========================================================================
*/
#ifndef CHORUS_BENCH_H_INCLUDED
#define CHORUS_BENCH_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

//  ---------------------------------------------------------------------
//  Time

//  Monotonic nanoseconds
uint64_t
    bench_now_ns (void);
//  Monotonic seconds as a double
double
    bench_now_s (void);

//  ---------------------------------------------------------------------
//  Latency histogram: log-linear buckets, about 3 % relative error

#define HIST_BUCKETS 2048

typedef struct {
    uint64_t count;
    uint64_t min;
    uint64_t max;
    double sum;
    uint64_t buckets [HIST_BUCKETS];
} hist_t;

void
    hist_init (hist_t *self);
void
    hist_add (hist_t *self, uint64_t value);
void
    hist_merge (hist_t *self, const hist_t *other);
//  Value at quantile q (0..1); the exact max for q == 1
uint64_t
    hist_quantile (const hist_t *self, double q);

//  ---------------------------------------------------------------------
//  A process's CPU and memory, from /proc/<pid>

typedef struct {
    int pid;
    bool valid;
    double cpu_s;               //  utime + stime, seconds
    long rss_kb;                //  VmRSS
    long hwm_kb;                //  VmHWM
    int threads;
    double at;                  //  bench_now_s when sampled
} proc_sample_t;

void
    proc_sample (int pid, proc_sample_t *out);

//  ---------------------------------------------------------------------
//  Results written as JSON (one object, flat keys and nested latency maps)

typedef struct _report_t report_t;

report_t *
    report_new (const char *name);
void
    report_destroy (report_t **self_p);
void
    report_str (report_t *self, const char *key, const char *value);
void
    report_num (report_t *self, const char *key, double value);
void
    report_int (report_t *self, const char *key, int64_t value);
//  {count, p50, p99, p999, max, mean} in milliseconds
void
    report_hist (report_t *self, const char *key, const hist_t *hist);
void
    report_proc (report_t *self, const char *key, const proc_sample_t *start,
                 const proc_sample_t *end);
//  Prints the JSON to file
void
    report_write (report_t *self, FILE *file);
//  Writes to path ("-" for stdout); returns 0 or -1
int
    report_save (report_t *self, const char *path);

//  ---------------------------------------------------------------------
//  Message bodies: "T<16 hex digits of ns>S<sender>N<counter> " padded
//  with letters to the requested size. Plain ASCII: no JSON escaping.

#define BODY_MAX 40000

size_t
    body_make (char *dest, size_t size, uint64_t stamp_ns, unsigned sender, uint64_t counter);
//  Reads the stamp from a body starting with "T"; false if not ours
bool
    body_stamp (const char *body, size_t len, uint64_t *stamp_ns);

//  ---------------------------------------------------------------------
//  The population: what setup created, read by the other commands

#define POP_NAME_MAX 64

typedef struct {
    char name [POP_NAME_MAX];
    uint64_t id;
    uint32_t first;             //  first member's user index (ranges)
    uint32_t count;             //  members
} pop_channel_t;

typedef struct {
    char tenant [POP_NAME_MAX];
    uint64_t tenant_id;
    size_t users;
    uint64_t *uids;
    char **tokens;
    size_t channels;
    pop_channel_t *channel;
} pop_t;

pop_t *
    pop_load (const char *path);
void
    pop_destroy (pop_t **self_p);
//  Channel by name, or NULL
const pop_channel_t *
    pop_channel (const pop_t *self, const char *name);

//  ---------------------------------------------------------------------
//  A blocking ZeroMQ client for setup, fill and history (raw DEALER)

typedef struct _rpc_t rpc_t;

rpc_t *
    rpc_new (const char *endpoint);
void
    rpc_destroy (rpc_t **self_p);
//  The request writer: a map is open with "op" and "rid" written
struct _proto_writer_t;
struct _proto_writer_t *
    rpc_begin (rpc_t *self, const char *op);
//  Sends the request for session sid without waiting; returns its rid
uint64_t
    rpc_post (rpc_t *self, uint64_t sid);
//  Waits up to msecs for the next reply (events are skipped). Returns the
//  reply (caller destroys, proto_msg_t *) and its rid, or NULL on timeout.
void *
    rpc_collect (rpc_t *self, int msecs, uint64_t *rid);
//  Post and wait for that reply; NULL on timeout
void *
    rpc_call (rpc_t *self, uint64_t sid, int msecs);
//  Error code of a reply, or NULL if ok
const char *
    rpc_error (void *reply);
//  Events skipped while waiting
uint64_t
    rpc_events (rpc_t *self);

//  ---------------------------------------------------------------------
//  Commands

int bench_setup (int argc, char **argv);
int bench_fill (int argc, char **argv);
int bench_run (int argc, char **argv);
int bench_history (int argc, char **argv);
int bench_wait_ready (int argc, char **argv);
int bench_rocksdb (int argc, char **argv);
int bench_gen_history (int argc, char **argv);
int bench_relay (int argc, char **argv);

//  Logging to stderr with a prefix
void
    bench_log (const char *format, ...) __attribute__ ((format (printf, 1, 2)));

#endif
