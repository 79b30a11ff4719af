/*  =========================================================================
    bench_run - the load engine

    Sessions are WebSocket (our own client: HTTP upgrade, masked text
    frames out, unmasked frames in, over non-blocking sockets and epoll),
    ZeroMQ (one DEALER per session, the integrator API) or IRC (NICK,
    USER, JOIN, PRIVMSG: the relay peer). Each session is a user of the
    population; it is a member of some of the channels named by --channels
    and receives their events. Some sessions are also senders:

      closed loop   each sender keeps --window sends in flight
      open loop     --rate msgs/s in all, spread evenly over the senders

    Each body starts with the send time (monotonic ns) so send->deliver
    latency is measured at every receiver; send->ack latency is measured
    at the sender (for IRC, a PING after each PRIVMSG stands for the ack:
    the server answers PONG once it has relayed the line). In open loop
    the stamp is the intended send time, so a late sender shows as latency
    (no coordinated omission).

    Sessions are spread over --threads event loops. The run is bounded:
    --setup-timeout to connect, then --warmup, --duration, --drain.
    =========================================================================
*/
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <zmq.h>
#include "chorus/proto.h"
#include "bench.h"

#define RX_SCRATCH      (256 * 1024)
#define RING_SIZE       65536           //  sends in flight per sender, at most
#define ERROR_KINDS     16
#define MAX_SEQ_SAFE    9007199254740991ull

typedef enum { P_WS, P_ZMQ, P_IRC } proto_kind_t;
typedef enum { S_IDLE, S_CONNECTING, S_HANDSHAKE, S_AUTH, S_READY, S_DONE, S_CLOSED } state_t;
typedef enum { M_LOAD, M_CATCHUP } mode_t_;

//  ---------------------------------------------------------------------
//  Configuration

typedef struct {
    const char *pop_path;
    const char *api;                //  ZeroMQ endpoint
    char ws_host [64];
    int ws_port;
    char irc_host [64];
    int irc_port;
    proto_kind_t proto;             //  member sessions
    proto_kind_t send_proto;        //  senders (if not a member session)
    bool send_proto_set;
    const char *channels;           //  pattern: "fan", "w*", "i*", ...
    long members;                   //  online members per channel (-1: all)
    long sessions;                  //  total member sessions (-1: one per member)
    long senders;
    long window;                    //  closed loop: in flight per sender
    double rate;                    //  open loop: msgs/s in all (0: closed)
    size_t size;                    //  body bytes
    double warmup, duration, drain, setup_timeout, start_delay;
    long max_sends;                 //  per sender (0: no bound)
    int server_pid;
    int peer_pid;                   //  a second process to sample (a peer)
    const char *json_path;
    const char *label;
    int threads;
    int src_ips;                    //  127.0.0.2 .. 127.0.0.(1+N) as sources
    int per_ip;                     //  sessions per source address
    int connect_concurrency;
    mode_t_ mode;
    uint64_t since;                 //  catch-up: the checkpoint in the channel
} config_t;

//  ---------------------------------------------------------------------
//  A session

typedef struct _loop_t loop_t;

typedef struct {
    proto_kind_t kind;
    state_t state;
    int fd;
    void *zsock;                    //  ZeroMQ DEALER
    bool zmq_sent;                  //  sent on since its last drain
    loop_t *loop;
    size_t user;                    //  population index
    unsigned index;                 //  session number (for nicks, ids)
    uint32_t src_ip;                //  source address, host order
    //  Output not yet taken by the kernel
    char *wbuf;
    size_t wlen, wcap;
    bool want_out;
    //  Input: a partial frame or line
    char *rbuf;
    size_t rlen, rcap;
    //  WebSocket fragments of one message
    char *frag;
    size_t fraglen, fragcap;
    //  IRC: JOINs still to be confirmed
    int joins_left;
    //  Sender state
    bool sender;
    unsigned sender_id;
    uint64_t *channels;             //  channels it sends to, round robin
    size_t channel_count, channel_next;
    size_t *channel_slot;           //  index of each in the run's channel list
    uint64_t next_rid;
    uint64_t *ring;                 //  rid -> send time (ns)
    uint32_t *ring_slot;            //  rid -> channel slot
    long inflight;
    long sent;
    uint64_t next_due;              //  open loop
    uint64_t interval;              //  open loop, ns
    //  Catch-up
    uint64_t started_ns;
    bool asked;                     //  sync sent
} session_t;

//  Statistics of one loop
typedef struct {
    uint64_t sends, sends_window;
    uint64_t acks, acks_window;
    uint64_t deliveries, deliveries_window;
    uint64_t errors;
    uint64_t error_count [ERROR_KINDS];
    char error_name [ERROR_KINDS][32];
    uint64_t disconnects;
    uint64_t connect_failures;
    uint64_t stalls;                //  open loop: a send skipped, ring full
    uint64_t catchup_messages;
    uint64_t catchup_done;
    uint64_t catchup_more;          //  replies with has_more
    hist_t ack;
    hist_t deliver;
    hist_t catchup;
} stats_t;

struct _loop_t {
    int id;
    pthread_t thread;
    int epoll;
    int timer;
    session_t **sessions;
    size_t count;
    session_t **zmq;                //  its ZeroMQ sessions
    size_t zmq_count;
    session_t **senders;
    size_t sender_count;
    char *scratch;                  //  reads land here
    char *out;                      //  frames are built here
    char *text;                     //  JSON requests are built here
    size_t out_cap;
    proto_writer_t *writer;
    size_t next_connect;            //  sessions started so far
    size_t connecting;              //  connects in progress
    atomic_size_t ready;
    atomic_size_t failed;
    atomic_uint_fast64_t expected;  //  deliveries expected from its acks
    atomic_uint_fast64_t delivered; //  deliveries received
    atomic_long inflight;
    stats_t stats;
    uint64_t body_counter;
};

//  Shared by every loop
typedef struct {
    config_t config;
    pop_t *pop;
    void *zmq_context;
    uint64_t *run_channels;         //  the channel ids of the pattern
    size_t run_channel_count;
    uint64_t *online;               //  online sessions per run channel
    uint32_t run_id;
    atomic_int phase;               //  0 setup, 1 running, 2 stop sending, 3 quit
    atomic_uint_fast64_t t_start;   //  ns: the run starts (warmup)
    uint64_t t_window, t_window_end, t_send_end;
    loop_t *loops;
    int loop_count;
    struct sockaddr_in ws_addr, irc_addr;
} run_t;

static run_t s_run;

//  ---------------------------------------------------------------------
//  Helpers

static void
s_error_count (stats_t *stats, const char *name, size_t len)
{
    stats->errors++;
    if (len > 31)
        len = 31;
    for (int i = 0; i < ERROR_KINDS; i++) {
        if (stats->error_name [i][0] == 0) {
            memcpy (stats->error_name [i], name, len);
            stats->error_name [i][len] = 0;
            stats->error_count [i]++;
            return;
        }
        if (strlen (stats->error_name [i]) == len && memcmp (stats->error_name [i], name, len) == 0) {
            stats->error_count [i]++;
            return;
        }
    }
}

static bool
s_in_window (uint64_t ns)
{
    return ns >= s_run.t_window && ns < s_run.t_window_end;
}

static void
s_out_reserve (loop_t *loop, size_t size)
{
    if (size > loop->out_cap) {
        loop->out_cap = size * 2;
        loop->out = (char *) realloc (loop->out, loop->out_cap);
    }
}

static void
s_epoll_mod (session_t *session, bool want_out)
{
    if (session->fd < 0 || session->kind == P_ZMQ || session->want_out == want_out)
        return;
    session->want_out = want_out;
    struct epoll_event event = { .events = EPOLLIN | (want_out? EPOLLOUT: 0), .data.ptr = session };
    epoll_ctl (session->loop->epoll, EPOLL_CTL_MOD, session->fd, &event);
}

static void
s_close (session_t *session, bool counted)
{
    if (session->state == S_CLOSED)
        return;
    loop_t *loop = session->loop;
    if (counted && atomic_load (&s_run.phase) < 3)
        loop->stats.disconnects++;
    if (session->state == S_CONNECTING || session->state == S_HANDSHAKE || session->state == S_AUTH) {
        atomic_fetch_add (&loop->failed, 1);
        if (session->state == S_CONNECTING && loop->connecting)
            loop->connecting--;
    }
    if (session->fd >= 0 && session->kind != P_ZMQ) {
        epoll_ctl (loop->epoll, EPOLL_CTL_DEL, session->fd, NULL);
        close (session->fd);
    }
    if (session->zsock) {
        int fd;
        size_t size = sizeof (fd);
        if (zmq_getsockopt (session->zsock, ZMQ_FD, &fd, &size) == 0)
            epoll_ctl (loop->epoll, EPOLL_CTL_DEL, fd, NULL);
        zmq_close (session->zsock);
        session->zsock = NULL;
    }
    session->fd = -1;
    session->state = S_CLOSED;
    atomic_fetch_sub (&loop->inflight, session->inflight);
    session->inflight = 0;
}

//  Writes bytes to a TCP session, keeping what the kernel does not take
static void
s_write (session_t *session, const char *data, size_t len)
{
    if (session->state == S_CLOSED)
        return;
    if (session->wlen == 0) {
        ssize_t n = send (session->fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            s_close (session, true);
            return;
        }
        if (n > 0) {
            data += n;
            len -= (size_t) n;
        }
        if (len == 0)
            return;
    }
    if (session->wlen + len > session->wcap) {
        session->wcap = (session->wlen + len) * 2;
        session->wbuf = (char *) realloc (session->wbuf, session->wcap);
    }
    memcpy (session->wbuf + session->wlen, data, len);
    session->wlen += len;
    s_epoll_mod (session, true);
}

static void
s_flush (session_t *session)
{
    while (session->wlen) {
        ssize_t n = send (session->fd, session->wbuf, session->wlen, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                s_close (session, true);
            return;
        }
        memmove (session->wbuf, session->wbuf + n, session->wlen - (size_t) n);
        session->wlen -= (size_t) n;
    }
    s_epoll_mod (session, false);
}

//  Sends one masked WebSocket frame (opcode op) with payload
static void
s_ws_frame (session_t *session, int op, const char *payload, size_t len)
{
    loop_t *loop = session->loop;
    s_out_reserve (loop, len + 14);
    uint8_t *out = (uint8_t *) loop->out;
    size_t header = 0;
    out [header++] = (uint8_t) (0x80 | op);
    if (len < 126)
        out [header++] = (uint8_t) (0x80 | len);
    else
    if (len < 65536) {
        out [header++] = 0x80 | 126;
        out [header++] = (uint8_t) (len >> 8);
        out [header++] = (uint8_t) len;
    }
    else {
        out [header++] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            out [header++] = (uint8_t) ((uint64_t) len >> (56 - 8 * i));
    }
    loop->body_counter = loop->body_counter * 6364136223846793005ull + 1442695040888963407ull;
    uint8_t mask [4];
    uint32_t bits = (uint32_t) (loop->body_counter >> 32);
    memcpy (mask, &bits, 4);
    memcpy (out + header, mask, 4);
    header += 4;
    uint8_t *dest = out + header;
    for (size_t i = 0; i < len; i++)
        dest [i] = (uint8_t) payload [i] ^ mask [i & 3];
    s_write (session, (const char *) out, header + len);
}

//  Sends a request map in msgpack on a ZeroMQ session
static void
s_zmq_send (session_t *session, proto_writer_t *writer)
{
    if (zmq_send (session->zsock, proto_writer_data (writer), proto_writer_size (writer),
                  ZMQ_DONTWAIT) < 0)
        s_error_count (&session->loop->stats, "zmq_send", 8);
    session->zmq_sent = true;
}

//  ---------------------------------------------------------------------
//  Sending messages

static void
s_send_one (session_t *session, uint64_t stamp)
{
    loop_t *loop = session->loop;
    const config_t *config = &s_run.config;
    uint64_t rid = session->next_rid;
    if (session->inflight >= RING_SIZE - 1) {
        loop->stats.stalls++;
        return;
    }
    size_t slot_index = session->channel_next;
    uint64_t ch = session->channels [slot_index];
    session->channel_next = (session->channel_next + 1) % session->channel_count;
    char body [BODY_MAX + 1];
    size_t body_len = body_make (body, config->size, stamp, session->sender_id,
                                 (uint64_t) session->sent);
    char cmid [64];
    snprintf (cmid, sizeof (cmid), "b%x-%u-%ld", s_run.run_id, session->sender_id, session->sent);
    if (session->kind == P_WS) {
        //  The JSON text in the loop's text buffer, then framed into out
        char *text = loop->text;
        int n = snprintf (text, 256,
                          "{\"op\":\"send\",\"rid\":%llu,\"ch\":%llu,\"client_msg_id\":\"%s\",\"body\":\"",
                          (unsigned long long) rid, (unsigned long long) ch, cmid);
        memcpy (text + n, body, body_len);
        memcpy (text + n + body_len, "\"}", 2);
        s_ws_frame (session, 1, text, (size_t) n + body_len + 2);
    }
    else
    if (session->kind == P_ZMQ) {
        proto_writer_t *w = loop->writer;
        proto_writer_reset (w);
        proto_writer_map_begin (w);
        proto_writer_kv_str (w, "op", "send");
        proto_writer_kv_u64 (w, "rid", rid);
        proto_writer_kv_u64 (w, "ch", ch);
        proto_writer_kv_str (w, "client_msg_id", cmid);
        proto_writer_kv_strn (w, "body", body, body_len);
        proto_writer_map_end (w);
        s_zmq_send (session, w);
    }
    else {
        //  IRC: the line, then a PING whose PONG stands for the ack
        const pop_channel_t *channel = NULL;
        for (size_t i = 0; i < s_run.pop->channels && !channel; i++)
            if (s_run.pop->channel [i].id == ch)
                channel = &s_run.pop->channel [i];
        s_out_reserve (loop, body_len + 128);
        int n = snprintf (loop->out, 64, "PRIVMSG #%s :", channel? channel->name: "x");
        memcpy (loop->out + n, body, body_len);
        n += (int) body_len;
        n += snprintf (loop->out + n, 64, "\r\nPING :%llu\r\n", (unsigned long long) rid);
        s_write (session, loop->out, (size_t) n);
    }
    session->ring [rid & (RING_SIZE - 1)] = stamp;
    session->ring_slot [rid & (RING_SIZE - 1)] = (uint32_t) session->channel_slot [slot_index];
    session->next_rid++;
    session->inflight++;
    atomic_fetch_add (&loop->inflight, 1);
    session->sent++;
    loop->stats.sends++;
    if (s_in_window (stamp))
        loop->stats.sends_window++;
}

//  Sends what a sender may send now
static void
s_pump (session_t *session, uint64_t now)
{
    const config_t *config = &s_run.config;
    if (!session->sender || session->state != S_READY || atomic_load (&s_run.phase) != 1)
        return;
    uint64_t start = atomic_load (&s_run.t_start) + (uint64_t) (config->start_delay * 1e9);
    if (now < start || now >= s_run.t_send_end)
        return;
    if (config->rate > 0) {
        while (session->next_due <= now
        &&     (config->max_sends == 0 || session->sent < config->max_sends)) {
            s_send_one (session, session->next_due);
            session->next_due += session->interval;
        }
    }
    else
        while (session->inflight < config->window
        &&     (config->max_sends == 0 || session->sent < config->max_sends)
        &&     session->state == S_READY)
            s_send_one (session, bench_now_ns ());
}

//  An ack (or error) for rid arrived at a sender
static void
s_acked (session_t *session, uint64_t rid, bool ok, const char *error, size_t error_len)
{
    loop_t *loop = session->loop;
    if (!session->sender || rid >= session->next_rid || session->inflight == 0
    ||  rid + (uint64_t) session->inflight < session->next_rid)
        return;                         //  not one of ours in flight
    uint64_t now = bench_now_ns ();
    uint64_t stamp = session->ring [rid & (RING_SIZE - 1)];
    session->inflight--;
    atomic_fetch_sub (&loop->inflight, 1);
    if (ok) {
        loop->stats.acks++;
        if (s_in_window (now))
            loop->stats.acks_window++;
        if (s_in_window (stamp))
            hist_add (&loop->stats.ack, now - stamp);
        uint32_t slot = session->ring_slot [rid & (RING_SIZE - 1)];
        uint64_t expect = s_run.online [slot];
        if (session->kind == P_IRC && expect > 0)
            expect -= 1;                //  IRC does not echo to the sender
        atomic_fetch_add (&loop->expected, expect);
    }
    else
        s_error_count (&loop->stats, error? error: "error", error? error_len: 5);
    s_pump (session, now);
}

//  A message event arrived with this body
static void
s_delivered (loop_t *loop, const char *body, size_t len)
{
    uint64_t now = bench_now_ns ();
    uint64_t stamp;
    loop->stats.deliveries++;
    atomic_fetch_add (&loop->delivered, 1);
    if (s_in_window (now))
        loop->stats.deliveries_window++;
    if (body_stamp (body, len, &stamp) && s_in_window (stamp) && now >= stamp)
        hist_add (&loop->stats.deliver, now - stamp);
}

//  ---------------------------------------------------------------------
//  Catch-up: sync with the checkpoint

static void
s_catchup_request (session_t *session)
{
    loop_t *loop = session->loop;
    const pop_t *pop = s_run.pop;
    s_out_reserve (loop, 65536);
    size_t n = (size_t) snprintf (loop->out, 128, "{\"op\":\"sync\",\"rid\":2,\"limit\":200,\"channels\":{");
    bool first = true;
    for (size_t i = 0; i < pop->channels; i++) {
        const pop_channel_t *channel = &pop->channel [i];
        if (session->user < channel->first || session->user >= channel->first + channel->count)
            continue;
        bool target = false;
        for (size_t k = 0; k < s_run.run_channel_count; k++)
            target |= s_run.run_channels [k] == channel->id;
        n += (size_t) snprintf (loop->out + n, 128, "%s\"%llu\":%llu", first? "": ",",
                                (unsigned long long) channel->id,
                                (unsigned long long) (target? s_run.config.since: MAX_SEQ_SAFE));
        first = false;
    }
    n += (size_t) snprintf (loop->out + n, 8, "}}");
    memcpy (loop->text, loop->out, n);
    s_ws_frame (session, 1, loop->text, n);
}

//  Counts the messages of a sync reply
static void
s_catchup_reply (session_t *session, const char *text, size_t len)
{
    loop_t *loop = session->loop;
    uint64_t now = bench_now_ns ();
    size_t count = 0;
    const char *p = text, *end = text + len;
    while ((p = (const char *) memmem (p, (size_t) (end - p), "\"body\":\"", 8))) {
        count++;
        p += 8;
    }
    loop->stats.catchup_messages += count;
    if (memmem (text, len, "\"has_more\":true", 15))
        loop->stats.catchup_more++;
    loop->stats.catchup_done++;
    hist_add (&loop->stats.catchup, now - atomic_load (&s_run.t_start));
    session->state = S_DONE;
    atomic_fetch_add (&loop->delivered, 1);
}

//  ---------------------------------------------------------------------
//  Replies and events, as JSON text (WebSocket)

static uint64_t
s_parse_u64 (const char *p, const char *end)
{
    uint64_t value = 0;
    while (p < end && *p >= '0' && *p <= '9')
        value = value * 10 + (uint64_t) (*p++ - '0');
    return value;
}

static void
s_ws_text (session_t *session, const char *text, size_t len)
{
    loop_t *loop = session->loop;
    if (!text || len < 2)
        return;
    const char *end = text + len;
    if (len > 6 && memcmp (text, "{\"re\":", 6) == 0) {
        uint64_t rid = s_parse_u64 (text + 6, end);
        const char *ok = (const char *) memmem (text, len < 48? len: 48, "\"ok\":true", 9);
        const char *error = NULL;
        size_t error_len = 0;
        if (!ok) {
            error = (const char *) memmem (text, len, "\"error\":\"", 9);
            if (error) {
                error += 9;
                const char *quote = memchr (error, '"', (size_t) (end - error));
                error_len = quote? (size_t) (quote - error): 0;
            }
        }
        if (session->state == S_AUTH && rid == 1) {
            if (ok) {
                session->state = S_READY;
                atomic_fetch_add (&loop->ready, 1);
            }
            else {
                s_error_count (&loop->stats, error? error: "auth", error? error_len: 4);
                s_close (session, false);
            }
            return;
        }
        if (s_run.config.mode == M_CATCHUP && rid == 2) {
            if (ok)
                s_catchup_reply (session, text, len);
            else
                s_error_count (&loop->stats, error? error: "sync", error? error_len: 4);
            return;
        }
        s_acked (session, rid, ok != NULL, error, error_len);
        return;
    }
    if (len > 16 && memcmp (text, "{\"ev\":\"message\"", 15) == 0) {
        const char *body = (const char *) memmem (text, len, "\"body\":\"", 8);
        if (body)
            s_delivered (loop, body + 8, (size_t) (end - body - 8));
        return;
    }
    //  Other events (member_joined, read, typing) are ignored
}

//  WebSocket frames from the server
static size_t
s_ws_frames (session_t *session, char *data, size_t len)
{
    size_t used = 0;
    while (len - used >= 2 && session->state != S_CLOSED) {
        uint8_t *p = (uint8_t *) data + used;
        bool fin = p [0] & 0x80;
        int op = p [0] & 0x0f;
        uint64_t size = p [1] & 0x7f;
        size_t header = 2;
        if (p [1] & 0x80) {             //  a server never masks
            s_error_count (&session->loop->stats, "masked_frame", 12);
            s_close (session, true);
            return len;
        }
        if (size == 126) {
            if (len - used < 4)
                break;
            size = ((uint64_t) p [2] << 8) | p [3];
            header = 4;
        }
        else
        if (size == 127) {
            if (len - used < 10)
                break;
            size = 0;
            for (int i = 0; i < 8; i++)
                size = (size << 8) | p [2 + i];
            header = 10;
        }
        if (len - used < header + size)
            break;
        char *payload = (char *) p + header;
        used += header + (size_t) size;
        if (op == 0x9)                  //  ping: pong with the same payload
            s_ws_frame (session, 0xA, payload, (size_t) size);
        else
        if (op == 0x8) {                //  close
            if (size >= 2) {
                char code [16];
                snprintf (code, sizeof (code), "close_%d", ((uint8_t) payload [0] << 8) | (uint8_t) payload [1]);
                s_error_count (&session->loop->stats, code, strlen (code));
            }
            s_close (session, true);
            return len;
        }
        else
        if (op == 0x1 || op == 0x2 || op == 0x0) {
            if (op != 0 && fin && session->fraglen == 0)
                s_ws_text (session, payload, (size_t) size);
            else {
                if (session->fraglen + size > session->fragcap) {
                    session->fragcap = (session->fraglen + (size_t) size) * 2;
                    session->frag = (char *) realloc (session->frag, session->fragcap);
                }
                memcpy (session->frag + session->fraglen, payload, (size_t) size);
                session->fraglen += (size_t) size;
                if (fin) {
                    s_ws_text (session, session->frag, session->fraglen);
                    session->fraglen = 0;
                }
            }
        }
    }
    return used;
}

//  ---------------------------------------------------------------------
//  IRC lines from the server

static void
s_irc_join (session_t *session)
{
    loop_t *loop = session->loop;
    const pop_t *pop = s_run.pop;
    session->joins_left = 0;
    for (size_t k = 0; k < s_run.run_channel_count; k++)
        for (size_t i = 0; i < pop->channels; i++) {
            const pop_channel_t *channel = &pop->channel [i];
            if (channel->id != s_run.run_channels [k]
            ||  session->user < channel->first || session->user >= channel->first + channel->count)
                continue;
            char line [128];
            int n = snprintf (line, sizeof (line), "JOIN #%s\r\n", channel->name);
            s_write (session, line, (size_t) n);
            session->joins_left++;
        }
    if (session->joins_left == 0) {
        session->state = S_READY;
        atomic_fetch_add (&loop->ready, 1);
    }
}

static void
s_irc_line (session_t *session, char *line, size_t len)
{
    loop_t *loop = session->loop;
    char *end = line + len;
    if (len >= 5 && memcmp (line, "PING ", 5) == 0) {
        line [1] = 'O';
        s_write (session, line, len);
        s_write (session, "\r\n", 2);
        return;
    }
    if (len < 2 || line [0] != ':')
        return;
    char *space = memchr (line, ' ', len);
    if (!space)
        return;
    char *command = space + 1;
    size_t left = (size_t) (end - command);
    if (left > 8 && memcmp (command, "PRIVMSG ", 8) == 0) {
        char *text = memmem (command, left, " :", 2);
        if (text)
            s_delivered (loop, text + 2, (size_t) (end - text - 2));
        return;
    }
    if (left > 5 && memcmp (command, "PONG ", 5) == 0) {
        char *token = memmem (command, left, " :", 2);
        if (token)
            s_acked (session, s_parse_u64 (token + 2, end), true, NULL, 0);
        return;
    }
    if (left > 4 && memcmp (command, "001 ", 4) == 0 && session->state == S_AUTH) {
        s_irc_join (session);
        return;
    }
    if (left > 4 && memcmp (command, "366 ", 4) == 0 && session->state == S_AUTH) {
        if (--session->joins_left == 0) {
            session->state = S_READY;
            atomic_fetch_add (&loop->ready, 1);
        }
        return;
    }
    //  Error numerics count, but 422 (no MOTD) is only informative
    if (left > 4 && (command [0] == '4' || command [0] == '5')
    &&  command [1] >= '0' && command [1] <= '9' && command [3] == ' '
    &&  memcmp (command, "422", 3) != 0)
        s_error_count (&loop->stats, command, 3);
    else
    if (left > 6 && memcmp (command, "ERROR ", 6) == 0)
        s_error_count (&loop->stats, "irc_error", 9);
}

static size_t
s_irc_lines (session_t *session, char *data, size_t len)
{
    size_t used = 0;
    while (used < len && session->state != S_CLOSED) {
        char *nl = memchr (data + used, '\n', len - used);
        if (!nl)
            break;
        size_t line_len = (size_t) (nl - (data + used));
        if (line_len && data [used + line_len - 1] == '\r')
            line_len--;
        s_irc_line (session, data + used, line_len);
        used = (size_t) (nl - data) + 1;
    }
    return used;
}

//  ---------------------------------------------------------------------
//  The WebSocket upgrade

static void
s_ws_upgrade_sent (session_t *session)
{
    char request [512];
    int n = snprintf (request, sizeof (request),
        "GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: Y2hvcnVzLWJlbmNoLWtleQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: chorus.v1\r\n\r\n",
        s_run.config.ws_host, s_run.config.ws_port);
    s_write (session, request, (size_t) n);
    session->state = S_HANDSHAKE;
}

static void
s_auth_send (session_t *session)
{
    loop_t *loop = session->loop;
    const char *token = s_run.pop->tokens [session->user];
    if (session->kind == P_WS) {
        char text [512];
        int n = snprintf (text, sizeof (text), "{\"op\":\"auth\",\"rid\":1,\"token\":\"%s\"}", token);
        s_ws_frame (session, 1, text, (size_t) n);
    }
    else
    if (session->kind == P_ZMQ) {
        proto_writer_t *w = loop->writer;
        proto_writer_reset (w);
        proto_writer_map_begin (w);
        proto_writer_kv_str (w, "op", "auth");
        proto_writer_kv_u64 (w, "rid", 1);
        proto_writer_kv_str (w, "token", token);
        proto_writer_map_end (w);
        s_zmq_send (session, w);
    }
    else {
        char text [256];
        int n = snprintf (text, sizeof (text), "NICK u%zux%u\r\nUSER b%u 0 * :bench\r\n",
                          session->user, session->index, session->index);
        s_write (session, text, (size_t) n);
    }
    session->state = S_AUTH;
}

//  Bytes arrived on a TCP session
static void
s_readable (session_t *session)
{
    loop_t *loop = session->loop;
    for (int rounds = 0; rounds < 4 && session->state != S_CLOSED; rounds++) {
        ssize_t n = recv (session->fd, loop->scratch, RX_SCRATCH, 0);
        if (n == 0) {
            s_close (session, true);
            return;
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                s_close (session, true);
            return;
        }
        char *data = loop->scratch;
        size_t len = (size_t) n;
        if (session->rlen) {
            if (session->rlen + len > session->rcap) {
                session->rcap = (session->rlen + len) * 2;
                session->rbuf = (char *) realloc (session->rbuf, session->rcap);
            }
            memcpy (session->rbuf + session->rlen, data, len);
            session->rlen += len;
            data = session->rbuf;
            len = session->rlen;
        }
        size_t used = 0;
        if (session->state == S_HANDSHAKE) {
            char *end = memmem (data, len, "\r\n\r\n", 4);
            if (end) {
                if (len < 12 || memcmp (data, "HTTP/1.1 101", 12) != 0) {
                    s_error_count (&loop->stats, "upgrade_refused", 15);
                    s_close (session, false);
                    return;
                }
                used = (size_t) (end + 4 - data);
                s_auth_send (session);
            }
        }
        if (session->state != S_HANDSHAKE && session->state != S_CLOSED)
            used += session->kind == P_WS? s_ws_frames (session, data + used, len - used)
                                        : s_irc_lines (session, data + used, len - used);
        if (session->state == S_CLOSED)
            return;
        //  Keep the partial frame or line
        size_t rest = len - used;
        if (data == session->rbuf) {
            memmove (session->rbuf, session->rbuf + used, rest);
            session->rlen = rest;
        }
        else
        if (rest) {
            if (rest > session->rcap) {
                session->rcap = rest * 2;
                session->rbuf = (char *) realloc (session->rbuf, session->rcap);
            }
            memcpy (session->rbuf, data + used, rest);
            session->rlen = rest;
        }
        if ((size_t) n < RX_SCRATCH)
            return;
    }
}

//  ---------------------------------------------------------------------
//  ZeroMQ sessions

//  A minimal msgpack reader for replies and events: the root map's "re",
//  "ok", "error", "ev" and "body"

typedef struct {
    const uint8_t *p, *end;
} mp_t;

static bool
s_mp_need (mp_t *mp, size_t n)
{
    return (size_t) (mp->end - mp->p) >= n;
}

static uint64_t
s_mp_be (const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p [i];
    return v;
}

//  Reads one object header; sets *kind ('u' uint, 'i' int, 's' str, 'b'
//  bool, 'n' nil, 'm' map, 'a' array, 'x' other) and *value (number, or
//  length, or count). Strings: *str points to the bytes.
static bool
s_mp_read (mp_t *mp, char *kind, uint64_t *value, const uint8_t **str)
{
    if (!s_mp_need (mp, 1))
        return false;
    uint8_t c = *mp->p++;
    int n = 0;
    if (c <= 0x7f) { *kind = 'u'; *value = c; return true; }
    if (c >= 0xe0) { *kind = 'i'; *value = c; return true; }
    if ((c & 0xf0) == 0x80) { *kind = 'm'; *value = c & 0x0f; return true; }
    if ((c & 0xf0) == 0x90) { *kind = 'a'; *value = c & 0x0f; return true; }
    if ((c & 0xe0) == 0xa0) { *kind = 's'; *value = c & 0x1f; goto string; }
    switch (c) {
        case 0xc0: *kind = 'n'; *value = 0; return true;
        case 0xc2: *kind = 'b'; *value = 0; return true;
        case 0xc3: *kind = 'b'; *value = 1; return true;
        case 0xcc: n = 1; *kind = 'u'; break;
        case 0xcd: n = 2; *kind = 'u'; break;
        case 0xce: n = 4; *kind = 'u'; break;
        case 0xcf: n = 8; *kind = 'u'; break;
        case 0xd0: n = 1; *kind = 'i'; break;
        case 0xd1: n = 2; *kind = 'i'; break;
        case 0xd2: n = 4; *kind = 'i'; break;
        case 0xd3: n = 8; *kind = 'i'; break;
        case 0xca: n = 4; *kind = 'x'; break;
        case 0xcb: n = 8; *kind = 'x'; break;
        case 0xd9: case 0xc4:
            if (!s_mp_need (mp, 1)) return false;
            *value = *mp->p++; *kind = c == 0xd9? 's': 'r'; goto string;
        case 0xda: case 0xc5:
            if (!s_mp_need (mp, 2)) return false;
            *value = s_mp_be (mp->p, 2); mp->p += 2; *kind = c == 0xda? 's': 'r'; goto string;
        case 0xdb: case 0xc6:
            if (!s_mp_need (mp, 4)) return false;
            *value = s_mp_be (mp->p, 4); mp->p += 4; *kind = c == 0xdb? 's': 'r'; goto string;
        case 0xdc: if (!s_mp_need (mp, 2)) return false;
            *value = s_mp_be (mp->p, 2); mp->p += 2; *kind = 'a'; return true;
        case 0xdd: if (!s_mp_need (mp, 4)) return false;
            *value = s_mp_be (mp->p, 4); mp->p += 4; *kind = 'a'; return true;
        case 0xde: if (!s_mp_need (mp, 2)) return false;
            *value = s_mp_be (mp->p, 2); mp->p += 2; *kind = 'm'; return true;
        case 0xdf: if (!s_mp_need (mp, 4)) return false;
            *value = s_mp_be (mp->p, 4); mp->p += 4; *kind = 'm'; return true;
        default: return false;
    }
    if (!s_mp_need (mp, (size_t) n))
        return false;
    *value = s_mp_be (mp->p, n);
    mp->p += n;
    return true;
string:
    if (!s_mp_need (mp, *value))
        return false;
    *str = mp->p;
    mp->p += *value;
    return true;
}

static bool
s_mp_skip (mp_t *mp, int depth)
{
    char kind;
    uint64_t value;
    const uint8_t *str;
    if (depth > 16 || !s_mp_read (mp, &kind, &value, &str))
        return false;
    if (kind == 'a' || kind == 'm') {
        uint64_t items = kind == 'm'? value * 2: value;
        for (uint64_t i = 0; i < items; i++)
            if (!s_mp_skip (mp, depth + 1))
                return false;
    }
    return true;
}

static void
s_zmq_message (session_t *session, const uint8_t *data, size_t size)
{
    loop_t *loop = session->loop;
    mp_t mp = { data, data + size };
    char kind;
    uint64_t count, value;
    const uint8_t *str = NULL;
    if (!s_mp_read (&mp, &kind, &count, &str) || kind != 'm')
        return;
    bool has_re = false, ok = false, is_message = false;
    uint64_t re = 0;
    const char *error = NULL, *body = NULL;
    size_t error_len = 0, body_len = 0;
    for (uint64_t i = 0; i < count; i++) {
        const uint8_t *key = NULL;
        uint64_t key_len;
        if (!s_mp_read (&mp, &kind, &key_len, &key) || kind != 's')
            return;
        const uint8_t *before = mp.p;
        if (!s_mp_read (&mp, &kind, &value, &str))
            return;
        if (kind == 'a' || kind == 'm') {
            mp.p = before;
            if (!s_mp_skip (&mp, 0))
                return;
            continue;
        }
        if (key_len == 2 && memcmp (key, "re", 2) == 0 && kind == 'u')
            has_re = true, re = value;
        else
        if (key_len == 2 && memcmp (key, "ok", 2) == 0 && kind == 'b')
            ok = value;
        else
        if (key_len == 5 && memcmp (key, "error", 5) == 0 && kind == 's')
            error = (const char *) str, error_len = value;
        else
        if (key_len == 2 && memcmp (key, "ev", 2) == 0 && kind == 's')
            is_message = value == 7 && memcmp (str, "message", 7) == 0;
        else
        if (key_len == 4 && memcmp (key, "body", 4) == 0 && kind == 's')
            body = (const char *) str, body_len = value;
    }
    if (has_re) {
        if (session->state == S_AUTH && re == 1) {
            if (ok) {
                session->state = S_READY;
                atomic_fetch_add (&loop->ready, 1);
            }
            else {
                s_error_count (&loop->stats, error? error: "auth", error? error_len: 4);
                s_close (session, false);
            }
        }
        else
            s_acked (session, re, ok, error, error_len);
    }
    else
    if (is_message && body)
        s_delivered (loop, body, body_len);
}

static void
s_zmq_drain (session_t *session, bool signalled)
{
    session->zmq_sent = false;
    //  Its descriptor fired: take the socket's commands (ZMQ_EVENTS does,
    //  at the cost of a system call or two; a receive may put that off)
    if (signalled) {
        int events = 0;
        size_t size = sizeof (events);
        if (!session->zsock
        ||  zmq_getsockopt (session->zsock, ZMQ_EVENTS, &events, &size) || !(events & ZMQ_POLLIN))
            return;
    }
    while (session->zsock) {
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        if (zmq_msg_recv (&frame, session->zsock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&frame);
            return;
        }
        int more = zmq_msg_more (&frame);
        s_zmq_message (session, (const uint8_t *) zmq_msg_data (&frame), zmq_msg_size (&frame));
        zmq_msg_close (&frame);
        while (more && session->zsock) {
            zmq_msg_init (&frame);
            if (zmq_msg_recv (&frame, session->zsock, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close (&frame);
                break;
            }
            more = zmq_msg_more (&frame);
            zmq_msg_close (&frame);
        }
    }
}

//  ---------------------------------------------------------------------
//  Connecting

static void
s_start (session_t *session)
{
    loop_t *loop = session->loop;
    if (session->kind == P_ZMQ) {
        session->zsock = zmq_socket (s_run.zmq_context, ZMQ_DEALER);
        int zero = 0;
        zmq_setsockopt (session->zsock, ZMQ_LINGER, &zero, sizeof (zero));
        zmq_setsockopt (session->zsock, ZMQ_SNDHWM, &zero, sizeof (zero));
        zmq_setsockopt (session->zsock, ZMQ_RCVHWM, &zero, sizeof (zero));
        if (zmq_connect (session->zsock, s_run.config.api)) {
            s_error_count (&loop->stats, "zmq_connect", 11);
            s_close (session, false);
            return;
        }
        int fd;
        size_t size = sizeof (fd);
        zmq_getsockopt (session->zsock, ZMQ_FD, &fd, &size);
        struct epoll_event event = { .events = EPOLLIN, .data.ptr = session };
        epoll_ctl (loop->epoll, EPOLL_CTL_ADD, fd, &event);
        session->fd = fd;
        s_auth_send (session);
        return;
    }
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        s_error_count (&loop->stats, "socket", 6);
        session->state = S_CLOSED;
        atomic_fetch_add (&loop->failed, 1);
        return;
    }
    int one = 1;
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof (one));
#ifdef IP_BIND_ADDRESS_NO_PORT
    setsockopt (fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof (one));
#endif
    struct sockaddr_in source = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (session->src_ip) };
    if (bind (fd, (struct sockaddr *) &source, sizeof (source))) {
        s_error_count (&loop->stats, "bind", 4);
        close (fd);
        session->state = S_CLOSED;
        atomic_fetch_add (&loop->failed, 1);
        return;
    }
    struct sockaddr_in *target = session->kind == P_WS? &s_run.ws_addr: &s_run.irc_addr;
    session->fd = fd;
    session->state = S_CONNECTING;
    loop->connecting++;
    struct epoll_event event = { .events = EPOLLIN | EPOLLOUT, .data.ptr = session };
    session->want_out = true;
    epoll_ctl (loop->epoll, EPOLL_CTL_ADD, fd, &event);
    if (connect (fd, (struct sockaddr *) target, sizeof (*target)) && errno != EINPROGRESS) {
        s_error_count (&loop->stats, "connect", 7);
        s_close (session, false);
    }
}

static void
s_connected (session_t *session)
{
    int error = 0;
    socklen_t size = sizeof (error);
    getsockopt (session->fd, SOL_SOCKET, SO_ERROR, &error, &size);
    session->loop->connecting--;
    if (error) {
        session->loop->stats.connect_failures++;
        s_error_count (&session->loop->stats, "connect", 7);
        session->state = S_AUTH;        //  counted as failed by s_close
        s_close (session, false);
        return;
    }
    s_epoll_mod (session, false);
    if (session->kind == P_WS)
        s_ws_upgrade_sent (session);
    else
        s_auth_send (session);
}

//  ---------------------------------------------------------------------
//  The event loop

static void
s_arm_timer (loop_t *loop)
{
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < loop->sender_count; i++)
        if (loop->senders [i]->state == S_READY && loop->senders [i]->next_due < next)
            next = loop->senders [i]->next_due;
    if (next == UINT64_MAX || s_run.config.rate <= 0)
        return;
    struct itimerspec spec = { { 0, 0 }, { (time_t) (next / 1000000000ull), (long) (next % 1000000000ull) } };
    timerfd_settime (loop->timer, TFD_TIMER_ABSTIME, &spec, NULL);
}

static void *
s_loop_run (void *arg)
{
    loop_t *loop = (loop_t *) arg;
    const config_t *config = &s_run.config;
    struct epoll_event events [512];
    while (atomic_load (&s_run.phase) < 3) {
        //  Start connections, a bounded number at a time
        while (loop->next_connect < loop->count
        &&     loop->connecting < (size_t) config->connect_concurrency
        &&     (config->mode != M_CATCHUP || atomic_load (&s_run.phase) >= 1)) {
            session_t *session = loop->sessions [loop->next_connect++];
            if (config->mode == M_CATCHUP)
                session->started_ns = bench_now_ns ();
            s_start (session);
        }
        int timeout = loop->zmq_count? 2: 50;
        int n = epoll_wait (loop->epoll, events, 512, timeout);
        for (int i = 0; i < n; i++) {
            if (events [i].data.ptr == NULL) {
                uint64_t expirations;
                if (read (loop->timer, &expirations, sizeof (expirations)) < 0)
                    { /* nothing */ }
                continue;
            }
            session_t *session = (session_t *) events [i].data.ptr;
            if (session->kind == P_ZMQ) {
                s_zmq_drain (session, true);
                continue;
            }
            if (session->state == S_CONNECTING) {
                if (events [i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                    s_connected (session);
                continue;
            }
            if (events [i].events & EPOLLOUT)
                s_flush (session);
            if (events [i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                s_readable (session);
        }
        //  A send may have taken the commands that announced replies, so
        //  the descriptor will not fire for them: read the sockets sent on.
        //  Every socket, and its commands, when the wait timed out.
        for (size_t i = 0; i < loop->zmq_count; i++)
            if (n == 0 || loop->zmq [i]->zmq_sent)
                s_zmq_drain (loop->zmq [i], n == 0);
        //  Catch-up: each session asks for sync once it is authenticated
        if (config->mode == M_CATCHUP)
            for (size_t i = 0; i < loop->count; i++) {
                session_t *session = loop->sessions [i];
                if (session->state == S_READY && !session->asked) {
                    session->asked = true;
                    s_catchup_request (session);
                }
            }
        uint64_t now = bench_now_ns ();
        for (size_t i = 0; i < loop->sender_count; i++)
            s_pump (loop->senders [i], now);
        if (config->rate > 0)
            s_arm_timer (loop);
    }
    for (size_t i = 0; i < loop->count; i++)
        s_close (loop->sessions [i], false);
    return NULL;
}

//  ---------------------------------------------------------------------
//  Setting the run up

static bool
s_pattern_match (const char *pattern, const char *name)
{
    size_t len = strlen (pattern);
    if (len && pattern [len - 1] == '*')
        return strncmp (pattern, name, len - 1) == 0
            && name [len - 1] >= '0' && name [len - 1] <= '9';
    return strcmp (pattern, name) == 0;
}

//  The machine's one-minute load average (others share these cores)
static double
s_loadavg (void)
{
    double load = -1;
    FILE *file = fopen ("/proc/loadavg", "r");
    if (file) {
        if (fscanf (file, "%lf", &load) != 1)
            load = -1;
        fclose (file);
    }
    return load;
}

static int
s_parse_host_port (const char *text, char *host, size_t host_size, int *port)
{
    const char *colon = strrchr (text, ':');
    if (!colon || (size_t) (colon - text) >= host_size)
        return -1;
    memcpy (host, text, (size_t) (colon - text));
    host [colon - text] = 0;
    *port = atoi (colon + 1);
    return *port > 0? 0: -1;
}

static int
s_proto_parse (const char *text, proto_kind_t *kind)
{
    if (strcmp (text, "ws") == 0) *kind = P_WS;
    else if (strcmp (text, "zmq") == 0) *kind = P_ZMQ;
    else if (strcmp (text, "irc") == 0) *kind = P_IRC;
    else return -1;
    return 0;
}

static void
s_usage (void)
{
    fprintf (stderr,
"usage: chorus-bench run --pop FILE --channels PATTERN [options]\n"
"  --api EP               ZeroMQ API endpoint (zmq sessions)\n"
"  --ws HOST:PORT         the WebSocket edge (ws sessions)\n"
"  --irc HOST:PORT        an IRC server (irc sessions, the relay peer)\n"
"  --proto ws|zmq|irc     member sessions (default ws)\n"
"  --send-proto P         senders that are not member sessions (default: --proto)\n"
"  --channels PATTERN     channels of the population: fan, all, w*, i*, ...\n"
"  --members N            online members per channel (default all)\n"
"  --sessions N           member sessions in all, cycling over members\n"
"  --senders N            senders (default 1); sender j is a member of channel j mod C\n"
"  --window K             closed loop: sends in flight per sender (default 1)\n"
"  --rate R               open loop: msgs/s in all (default 0: closed loop)\n"
"  --size B               body bytes (default 200)\n"
"  --warmup S --duration S --drain S   seconds (default 2, 10, 5)\n"
"  --setup-timeout S      to connect and authenticate everyone (default 120)\n"
"  --start-delay S        senders wait this long after setup (idle phase)\n"
"  --max-sends N          per sender (default 0: no bound but time)\n"
"  --server-pid P --peer-pid P   processes to sample in /proc\n"
"  --threads T            event loops (default 1)\n"
"  --src-ips N --per-ip N source addresses 127.0.0.2.. (default 32, 900)\n"
"  --connect-concurrency N  connects in progress at once (default 256)\n"
"  --catchup SEQ          catch-up: every session syncs from SEQ in the channel\n"
"  --json FILE --label TEXT\n");
}

static int
s_config_parse (config_t *config, int argc, char **argv)
{
    memset (config, 0, sizeof (*config));
    config->proto = P_WS;
    config->members = -1;
    config->sessions = -1;
    config->senders = 1;
    config->window = 1;
    config->size = 200;
    config->warmup = 2;
    config->duration = 10;
    config->drain = 5;
    config->setup_timeout = 120;
    config->threads = 1;
    config->src_ips = 32;
    config->per_ip = 900;
    config->connect_concurrency = 256;
    config->label = "run";
    static struct option longs [] = {
        { "pop", 1, 0, 'p' }, { "api", 1, 0, 'a' }, { "ws", 1, 0, 'w' }, { "irc", 1, 0, 'i' },
        { "proto", 1, 0, 'P' }, { "send-proto", 1, 0, 'Q' }, { "channels", 1, 0, 'c' },
        { "members", 1, 0, 'm' }, { "sessions", 1, 0, 'S' }, { "senders", 1, 0, 's' },
        { "window", 1, 0, 'k' }, { "rate", 1, 0, 'r' }, { "size", 1, 0, 'b' },
        { "warmup", 1, 0, 'W' }, { "duration", 1, 0, 'd' }, { "drain", 1, 0, 'D' },
        { "setup-timeout", 1, 0, 'T' }, { "start-delay", 1, 0, 'z' }, { "max-sends", 1, 0, 'x' },
        { "server-pid", 1, 0, 1 }, { "peer-pid", 1, 0, 2 }, { "threads", 1, 0, 't' },
        { "src-ips", 1, 0, 3 }, { "per-ip", 1, 0, 4 }, { "connect-concurrency", 1, 0, 5 },
        { "catchup", 1, 0, 6 }, { "json", 1, 0, 'j' }, { "label", 1, 0, 'l' },
        { "help", 0, 0, 'h' }, { 0, 0, 0, 0 }
    };
    int opt;
    optind = 1;
    while ((opt = getopt_long (argc, argv, "", longs, NULL)) != -1) {
        switch (opt) {
            case 'p': config->pop_path = optarg; break;
            case 'a': config->api = optarg; break;
            case 'w':
                if (s_parse_host_port (optarg, config->ws_host, sizeof (config->ws_host), &config->ws_port))
                    return -1;
                break;
            case 'i':
                if (s_parse_host_port (optarg, config->irc_host, sizeof (config->irc_host), &config->irc_port))
                    return -1;
                break;
            case 'P': if (s_proto_parse (optarg, &config->proto)) return -1; break;
            case 'Q': if (s_proto_parse (optarg, &config->send_proto)) return -1;
                      config->send_proto_set = true; break;
            case 'c': config->channels = optarg; break;
            case 'm': config->members = atol (optarg); break;
            case 'S': config->sessions = atol (optarg); break;
            case 's': config->senders = atol (optarg); break;
            case 'k': config->window = atol (optarg); break;
            case 'r': config->rate = atof (optarg); break;
            case 'b': config->size = strtoul (optarg, NULL, 10); break;
            case 'W': config->warmup = atof (optarg); break;
            case 'd': config->duration = atof (optarg); break;
            case 'D': config->drain = atof (optarg); break;
            case 'T': config->setup_timeout = atof (optarg); break;
            case 'z': config->start_delay = atof (optarg); break;
            case 'x': config->max_sends = atol (optarg); break;
            case 1: config->server_pid = atoi (optarg); break;
            case 2: config->peer_pid = atoi (optarg); break;
            case 't': config->threads = atoi (optarg); break;
            case 3: config->src_ips = atoi (optarg); break;
            case 4: config->per_ip = atoi (optarg); break;
            case 5: config->connect_concurrency = atoi (optarg); break;
            case 6: config->mode = M_CATCHUP; config->since = strtoull (optarg, NULL, 10); break;
            case 'j': config->json_path = optarg; break;
            case 'l': config->label = optarg; break;
            default: return -1;
        }
    }
    if (!config->send_proto_set)
        config->send_proto = config->proto;
    if (!config->pop_path || !config->channels || config->threads < 1 || config->threads > 64
    ||  config->window < 1 || config->window > RING_SIZE / 2 || config->senders < 0
    ||  config->src_ips < 1 || config->src_ips > 250 || config->per_ip < 1
    ||  config->duration <= 0 || config->duration > 3600 || config->size > BODY_MAX)
        return -1;
    if ((config->proto == P_WS || config->send_proto == P_WS) && !config->ws_port
    &&  !(config->senders == 0 && config->proto != P_WS))
        return -1;
    if ((config->proto == P_ZMQ || config->send_proto == P_ZMQ) && !config->api)
        return -1;
    if ((config->proto == P_IRC || config->send_proto == P_IRC) && !config->irc_port)
        return -1;
    return 0;
}

static session_t *
s_session_new (proto_kind_t kind, size_t user, unsigned index)
{
    session_t *session = (session_t *) calloc (1, sizeof (session_t));
    session->kind = kind;
    session->fd = -1;
    session->user = user;
    session->index = index;
    session->state = S_IDLE;
    const config_t *config = &s_run.config;
    unsigned ip_index = (index / (unsigned) config->per_ip) % (unsigned) config->src_ips;
    session->src_ip = (127u << 24) | (2u + ip_index);
    return session;
}

//  Makes session a sender over its user's channels in the run
static void
s_make_sender (session_t *session, unsigned sender_id)
{
    const config_t *config = &s_run.config;
    const pop_t *pop = s_run.pop;
    session->sender = true;
    session->sender_id = sender_id;
    session->channels = (uint64_t *) calloc (s_run.run_channel_count, sizeof (uint64_t));
    session->channel_slot = (size_t *) calloc (s_run.run_channel_count, sizeof (size_t));
    for (size_t k = 0; k < s_run.run_channel_count; k++)
        for (size_t i = 0; i < pop->channels; i++)
            if (pop->channel [i].id == s_run.run_channels [k]
            &&  session->user >= pop->channel [i].first
            &&  session->user < pop->channel [i].first + pop->channel [i].count) {
                session->channel_slot [session->channel_count] = k;
                session->channels [session->channel_count++] = s_run.run_channels [k];
            }
    session->ring = (uint64_t *) calloc (RING_SIZE, sizeof (uint64_t));
    session->ring_slot = (uint32_t *) calloc (RING_SIZE, sizeof (uint32_t));
    session->next_rid = 100;
    if (config->rate > 0)
        session->interval = (uint64_t) (1e9 * (double) config->senders / config->rate);
}

static void
s_print_table (const stats_t *total, size_t ready, size_t wanted, double window,
               const proc_sample_t *s0, const proc_sample_t *s1, uint64_t expected, uint64_t got)
{
    const config_t *config = &s_run.config;
    printf ("\n== %s ==\n", config->label);
    printf ("sessions %zu/%zu ready; senders %ld; %s; body %zu B\n", ready, wanted, config->senders,
            config->rate > 0? "open loop": "closed loop", config->size);
    if (config->rate > 0)
        printf ("target rate %.0f msgs/s\n", config->rate);
    else
        printf ("window %ld in flight per sender\n", config->window);
    printf ("%-22s %14s\n", "what", "value");
    printf ("%-22s %14.0f\n", "acked sends/s", (double) total->acks_window / window);
    printf ("%-22s %14.0f\n", "deliveries/s", (double) total->deliveries_window / window);
    const hist_t *h [2] = { &total->ack, &total->deliver };
    const char *names [2] = { "send->ack ms", "send->deliver ms" };
    for (int i = 0; i < 2; i++)
        printf ("%-22s p50 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (n=%llu)\n", names [i],
                hist_quantile (h [i], 0.5) / 1e6, hist_quantile (h [i], 0.99) / 1e6,
                hist_quantile (h [i], 0.999) / 1e6, hist_quantile (h [i], 1.0) / 1e6,
                (unsigned long long) h [i]->count);
    printf ("%-22s %llu of %llu expected\n", "deliveries (all)", (unsigned long long) got,
            (unsigned long long) expected);
    printf ("%-22s %llu", "errors", (unsigned long long) total->errors);
    for (int i = 0; i < ERROR_KINDS && total->error_name [i][0]; i++)
        printf (" %s=%llu", total->error_name [i], (unsigned long long) total->error_count [i]);
    printf ("\n%-22s %llu\n", "disconnects", (unsigned long long) total->disconnects);
    if (s0->valid && s1->valid)
        printf ("%-22s cpu %.0f%%  rss %ld -> %ld KiB\n", "server", 100.0 * (s1->cpu_s - s0->cpu_s)
                / (s1->at - s0->at), s0->rss_kb, s1->rss_kb);
    printf ("%-22s %.2f (2 cores)\n", "machine load average", s_loadavg ());
    fflush (stdout);
}

int
bench_run (int argc, char **argv)
{
    config_t *config = &s_run.config;
    if (s_config_parse (config, argc, argv)) {
        s_usage ();
        return 2;
    }
    s_run.pop = pop_load (config->pop_path);
    if (!s_run.pop)
        return 1;
    const pop_t *pop = s_run.pop;
    s_run.run_id = (uint32_t) (bench_now_ns () ^ ((uint64_t) getpid () << 16));
    //  The channels of the run
    s_run.run_channels = (uint64_t *) calloc (pop->channels, sizeof (uint64_t));
    const pop_channel_t **run_specs = (const pop_channel_t **) calloc (pop->channels, sizeof (void *));
    for (size_t i = 0; i < pop->channels; i++)
        if (s_pattern_match (config->channels, pop->channel [i].name)) {
            run_specs [s_run.run_channel_count] = &pop->channel [i];
            s_run.run_channels [s_run.run_channel_count++] = pop->channel [i].id;
        }
    if (s_run.run_channel_count == 0) {
        bench_log ("no channel matches %s", config->channels);
        return 2;
    }
    s_run.online = (uint64_t *) calloc (s_run.run_channel_count, sizeof (uint64_t));
    //  Member sessions: the union of the channels' member ranges (first
    //  --members of each), cycled to --sessions
    bool *is_member = (bool *) calloc (pop->users, sizeof (bool));
    size_t member_count = 0;
    for (size_t k = 0; k < s_run.run_channel_count; k++) {
        const pop_channel_t *channel = run_specs [k];
        size_t take = config->members < 0 || (size_t) config->members > channel->count
                    ? channel->count: (size_t) config->members;
        for (size_t j = 0; j < take; j++)
            if (!is_member [channel->first + j]) {
                is_member [channel->first + j] = true;
                member_count++;
            }
    }
    size_t *members = (size_t *) calloc (member_count + 1, sizeof (size_t));
    for (size_t u = 0, n = 0; u < pop->users; u++)
        if (is_member [u])
            members [n++] = u;
    size_t session_count = config->sessions < 0? member_count: (size_t) config->sessions;
    if (member_count == 0)
        session_count = 0;
    size_t total = session_count + (size_t) config->senders;
    session_t **sessions = (session_t **) calloc (total + 1, sizeof (session_t *));
    size_t count = 0;
    for (size_t s = 0; s < session_count; s++)
        sessions [count++] = s_session_new (config->proto, members [s % member_count], (unsigned) s);
    //  Senders: sender j is the (j / C)-th member of run channel j mod C
    size_t sender_sessions = 0;
    for (long j = 0; j < config->senders; j++) {
        const pop_channel_t *channel = run_specs [(size_t) j % s_run.run_channel_count];
        size_t user = channel->first + ((size_t) j / s_run.run_channel_count) % channel->count;
        session_t *session = NULL;
        if (config->send_proto == config->proto)
            for (size_t s = 0; s < session_count && !session; s++)
                if (sessions [s]->user == user && !sessions [s]->sender)
                    session = sessions [s];
        if (!session) {
            session = s_session_new (config->send_proto, user, (unsigned) count);
            sessions [count++] = session;
            sender_sessions++;
        }
        s_make_sender (session, (unsigned) j);
        if (session->channel_count == 0) {
            bench_log ("sender %ld (u%zu) is in no channel of %s", j, user, config->channels);
            return 2;
        }
    }
    //  Online sessions per channel: the expected deliveries of a send
    for (size_t s = 0; s < count; s++)
        for (size_t k = 0; k < s_run.run_channel_count; k++)
            if (sessions [s]->user >= run_specs [k]->first
            &&  sessions [s]->user < run_specs [k]->first + run_specs [k]->count)
                s_run.online [k]++;
    //  File limit
    struct rlimit limit;
    getrlimit (RLIMIT_NOFILE, &limit);
    if (limit.rlim_cur < count + 256 && limit.rlim_max > limit.rlim_cur) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit (RLIMIT_NOFILE, &limit);
    }
    if (limit.rlim_cur < count + 64)
        bench_log ("warning: %zu sessions but the file limit is %llu", count,
                   (unsigned long long) limit.rlim_cur);
    //  Addresses
    if (config->ws_port) {
        s_run.ws_addr.sin_family = AF_INET;
        s_run.ws_addr.sin_port = htons ((uint16_t) config->ws_port);
        inet_pton (AF_INET, strcmp (config->ws_host, "localhost") == 0? "127.0.0.1": config->ws_host,
                   &s_run.ws_addr.sin_addr);
    }
    if (config->irc_port) {
        s_run.irc_addr.sin_family = AF_INET;
        s_run.irc_addr.sin_port = htons ((uint16_t) config->irc_port);
        inet_pton (AF_INET, strcmp (config->irc_host, "localhost") == 0? "127.0.0.1": config->irc_host,
                   &s_run.irc_addr.sin_addr);
    }
    //  Loopback only: this tool sends nowhere else
    if ((config->ws_port && (ntohl (s_run.ws_addr.sin_addr.s_addr) >> 24) != 127)
    ||  (config->irc_port && (ntohl (s_run.irc_addr.sin_addr.s_addr) >> 24) != 127)
    ||  (config->api && strncmp (config->api, "tcp://127.", 10) != 0
                     && strncmp (config->api, "tcp://localhost:", 16) != 0
                     && strncmp (config->api, "ipc://", 6) != 0)) {
        bench_log ("targets must be on 127.0.0.0/8");
        return 2;
    }
    s_run.zmq_context = zmq_ctx_new ();
    zmq_ctx_set (s_run.zmq_context, ZMQ_MAX_SOCKETS, 65536);
    s_run.loop_count = config->threads;
    s_run.loops = (loop_t *) calloc ((size_t) config->threads, sizeof (loop_t));
    for (int t = 0; t < config->threads; t++) {
        loop_t *loop = &s_run.loops [t];
        loop->id = t;
        loop->epoll = epoll_create1 (EPOLL_CLOEXEC);
        loop->timer = timerfd_create (CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        struct epoll_event event = { .events = EPOLLIN, .data.ptr = NULL };
        epoll_ctl (loop->epoll, EPOLL_CTL_ADD, loop->timer, &event);
        loop->sessions = (session_t **) calloc (count / (size_t) config->threads + 2, sizeof (void *));
        loop->zmq = (session_t **) calloc (count / (size_t) config->threads + 2, sizeof (void *));
        loop->senders = (session_t **) calloc (count / (size_t) config->threads + 2, sizeof (void *));
        loop->scratch = (char *) malloc (RX_SCRATCH);
        loop->out_cap = 65536;
        loop->out = (char *) malloc (loop->out_cap);
        loop->text = (char *) malloc (BODY_MAX + 512);
        loop->writer = proto_writer_new ();
        loop->body_counter = (uint64_t) t * 7919 + s_run.run_id;
        hist_init (&loop->stats.ack);
        hist_init (&loop->stats.deliver);
        hist_init (&loop->stats.catchup);
    }
    for (size_t s = 0; s < count; s++) {
        loop_t *loop = &s_run.loops [s % (size_t) config->threads];
        session_t *session = sessions [s];
        session->loop = loop;
        loop->sessions [loop->count++] = session;
        if (session->kind == P_ZMQ)
            loop->zmq [loop->zmq_count++] = session;
        if (session->sender)
            loop->senders [loop->sender_count++] = session;
    }
    bench_log ("%s: %zu sessions (%zu members online, %zu extra sender sessions), %zu channels, "
               "%ld senders, %d threads", config->label, count, session_count, sender_sessions,
               s_run.run_channel_count, config->senders, config->threads);
    proc_sample_t before, ready_sample, s0, s1, c0, c1, p0, p1, idle0, idle1;
    double load_start = s_loadavg ();
    proc_sample (config->server_pid, &before);
    //  Far-off times until the run starts
    s_run.t_window = s_run.t_window_end = s_run.t_send_end = UINT64_MAX;
    atomic_store (&s_run.t_start, UINT64_MAX);
    atomic_store (&s_run.phase, config->mode == M_CATCHUP? 1: 0);
    double setup_started = bench_now_s ();
    if (config->mode == M_CATCHUP) {
        uint64_t now = bench_now_ns ();
        s_run.t_window = now;
        s_run.t_window_end = now + (uint64_t) ((config->setup_timeout + 1) * 1e9);
        s_run.t_send_end = s_run.t_window_end;
        atomic_store (&s_run.t_start, now);
    }
    for (int t = 0; t < config->threads; t++)
        pthread_create (&s_run.loops [t].thread, NULL, s_loop_run, &s_run.loops [t]);
    //  Setup: wait until every session is ready (or failed) or the timeout
    size_t ready = 0, failed = 0;
    while (bench_now_s () - setup_started < config->setup_timeout) {
        ready = failed = 0;
        uint64_t done = 0;
        for (int t = 0; t < config->threads; t++) {
            ready += atomic_load (&s_run.loops [t].ready);
            failed += atomic_load (&s_run.loops [t].failed);
            done += atomic_load (&s_run.loops [t].delivered);
        }
        if (config->mode == M_CATCHUP && done + failed >= count)
            break;
        if (config->mode != M_CATCHUP && ready + failed >= count)
            break;
        usleep (5000);
    }
    double setup_s = bench_now_s () - setup_started;
    bench_log ("%s: %zu/%zu sessions ready in %.1f s (%zu failed)", config->label, ready, count,
               setup_s, failed);
    proc_sample (config->server_pid, &ready_sample);
    uint64_t t0 = bench_now_ns ();
    if (config->mode != M_CATCHUP) {
        uint64_t delay = (uint64_t) (config->start_delay * 1e9);
        s_run.t_window = t0 + delay + (uint64_t) (config->warmup * 1e9);
        s_run.t_window_end = s_run.t_window + (uint64_t) (config->duration * 1e9);
        s_run.t_send_end = s_run.t_window_end;
        //  Open loop: spread the senders' first sends over one interval
        for (size_t s = 0; s < count; s++)
            if (sessions [s]->sender && sessions [s]->interval)
                sessions [s]->next_due = t0 + delay
                    + sessions [s]->interval * sessions [s]->sender_id / (uint64_t) config->senders;
        atomic_store (&s_run.t_start, t0);
        atomic_store (&s_run.phase, 1);
        proc_sample (config->server_pid, &idle0);
        if (config->start_delay > 0) {
            usleep ((useconds_t) (config->start_delay * 1e6));
            proc_sample (config->server_pid, &idle1);
        }
        //  The measured window
        while (bench_now_ns () < s_run.t_window)
            usleep (1000);
        proc_sample (config->server_pid, &s0);
        load_start = s_loadavg ();
        proc_sample (getpid (), &c0);
        proc_sample (config->peer_pid, &p0);
        while (bench_now_ns () < s_run.t_window_end)
            usleep (1000);
        proc_sample (config->server_pid, &s1);
        proc_sample (getpid (), &c1);
        proc_sample (config->peer_pid, &p1);
        //  Drain: wait for acks in flight and the deliveries they imply
        double drain_started = bench_now_s ();
        while (bench_now_s () - drain_started < config->drain) {
            long inflight = 0;
            uint64_t expected = 0, got = 0;
            for (int t = 0; t < config->threads; t++) {
                inflight += atomic_load (&s_run.loops [t].inflight);
                expected += atomic_load (&s_run.loops [t].expected);
                got += atomic_load (&s_run.loops [t].delivered);
            }
            if (inflight <= 0 && got >= expected)
                break;
            usleep (2000);
        }
    }
    else {
        proc_sample (config->server_pid, &s0);
        s1 = ready_sample;
        s0 = before;
        c0 = c1 = p0 = p1 = before;
        idle0 = idle1 = before;
    }
    atomic_store (&s_run.phase, 3);
    for (int t = 0; t < config->threads; t++)
        pthread_join (s_run.loops [t].thread, NULL);
    //  Totals
    stats_t *sum = (stats_t *) calloc (1, sizeof (stats_t));
    hist_init (&sum->ack);
    hist_init (&sum->deliver);
    hist_init (&sum->catchup);
    uint64_t expected = 0, got = 0;
    for (int t = 0; t < config->threads; t++) {
        stats_t *stats = &s_run.loops [t].stats;
        sum->sends += stats->sends;
        sum->sends_window += stats->sends_window;
        sum->acks += stats->acks;
        sum->acks_window += stats->acks_window;
        sum->deliveries += stats->deliveries;
        sum->deliveries_window += stats->deliveries_window;
        sum->disconnects += stats->disconnects;
        sum->connect_failures += stats->connect_failures;
        sum->stalls += stats->stalls;
        sum->catchup_messages += stats->catchup_messages;
        sum->catchup_done += stats->catchup_done;
        sum->catchup_more += stats->catchup_more;
        for (int i = 0; i < ERROR_KINDS && stats->error_name [i][0]; i++)
            for (uint64_t c = 0; c < stats->error_count [i]; c++)
                s_error_count (sum, stats->error_name [i], strlen (stats->error_name [i]));
        hist_merge (&sum->ack, &stats->ack);
        hist_merge (&sum->deliver, &stats->deliver);
        hist_merge (&sum->catchup, &stats->catchup);
        expected += atomic_load (&s_run.loops [t].expected);
        got += atomic_load (&s_run.loops [t].delivered);
    }
    double window = config->duration;
    report_t *report = report_new (config->label);
    report_str (report, "channels", config->channels);
    report_str (report, "proto", config->proto == P_WS? "ws": config->proto == P_ZMQ? "zmq": "irc");
    report_str (report, "send_proto", config->send_proto == P_WS? "ws"
                : config->send_proto == P_ZMQ? "zmq": "irc");
    report_str (report, "loop", config->rate > 0? "open": "closed");
    report_num (report, "rate_target", config->rate);
    report_int (report, "window", config->window);
    report_int (report, "senders", config->senders);
    report_int (report, "sessions", (int64_t) count);
    report_int (report, "sessions_ready", (int64_t) ready);
    report_num (report, "setup_s", setup_s);
    report_int (report, "body_bytes", (int64_t) config->size);
    report_num (report, "duration_s", window);
    report_int (report, "sends", (int64_t) sum->sends);
    report_int (report, "acks", (int64_t) sum->acks);
    report_int (report, "acks_window", (int64_t) sum->acks_window);
    report_num (report, "acked_per_s", (double) sum->acks_window / window);
    report_int (report, "deliveries", (int64_t) sum->deliveries);
    report_int (report, "deliveries_window", (int64_t) sum->deliveries_window);
    report_num (report, "deliveries_per_s", (double) sum->deliveries_window / window);
    report_int (report, "deliveries_expected", (int64_t) expected);
    report_num (report, "delivery_ratio", expected? (double) got / (double) expected: 1.0);
    report_int (report, "errors", (int64_t) sum->errors);
    char kinds [1024] = "";
    for (int i = 0; i < ERROR_KINDS && sum->error_name [i][0]; i++) {
        size_t used = strlen (kinds);
        snprintf (kinds + used, sizeof (kinds) - used, "%s%s=%llu", i? " ": "",
                  sum->error_name [i], (unsigned long long) sum->error_count [i]);
    }
    report_str (report, "error_kinds", kinds);
    report_int (report, "disconnects", (int64_t) sum->disconnects);
    report_int (report, "stalls", (int64_t) sum->stalls);
    report_num (report, "loadavg_start", load_start);
    report_num (report, "loadavg_end", s_loadavg ());
    report_hist (report, "ack_ms", &sum->ack);
    report_hist (report, "deliver_ms", &sum->deliver);
    report_proc (report, "server", &s0, &s1);
    report_proc (report, "client", &c0, &c1);
    report_proc (report, "peer", &p0, &p1);
    if (before.valid && ready_sample.valid) {
        report_int (report, "server_rss_kb_before", before.rss_kb);
        report_int (report, "server_rss_kb_ready", ready_sample.rss_kb);
        report_num (report, "server_rss_kb_per_session",
                    count? (double) (ready_sample.rss_kb - before.rss_kb) / (double) count: 0);
    }
    if (config->start_delay > 0)
        report_proc (report, "server_idle", &idle0, &idle1);
    if (config->mode == M_CATCHUP) {
        report_int (report, "catchup_clients", (int64_t) sum->catchup_done);
        report_int (report, "catchup_messages", (int64_t) sum->catchup_messages);
        report_int (report, "catchup_has_more", (int64_t) sum->catchup_more);
        report_hist (report, "catchup_ms", &sum->catchup);
        report_num (report, "catchup_all_s", (double) hist_quantile (&sum->catchup, 1.0) / 1e9);
    }
    report_save (report, config->json_path);
    if (config->mode == M_CATCHUP) {
        printf ("\n== %s ==\n%llu clients synced %llu messages; all done in %.3f s "
                "(p50 %.1f ms, p99 %.1f ms); has_more %llu; errors %llu\n", config->label,
                (unsigned long long) sum->catchup_done, (unsigned long long) sum->catchup_messages,
                hist_quantile (&sum->catchup, 1.0) / 1e9, hist_quantile (&sum->catchup, 0.5) / 1e6,
                hist_quantile (&sum->catchup, 0.99) / 1e6, (unsigned long long) sum->catchup_more,
                (unsigned long long) sum->errors);
    }
    else
        s_print_table (sum, ready, count, window, &s0, &s1, expected, got);
    report_destroy (&report);
    for (size_t s = 0; s < count; s++) {
        free (sessions [s]->wbuf);
        free (sessions [s]->rbuf);
        free (sessions [s]->frag);
        free (sessions [s]->channels);
        free (sessions [s]->channel_slot);
        free (sessions [s]->ring);
        free (sessions [s]->ring_slot);
        free (sessions [s]);
    }
    for (int t = 0; t < config->threads; t++) {
        loop_t *loop = &s_run.loops [t];
        close (loop->epoll);
        close (loop->timer);
        free (loop->sessions);
        free (loop->zmq);
        free (loop->senders);
        free (loop->scratch);
        free (loop->out);
        free (loop->text);
        proto_writer_destroy (&loop->writer);
    }
    free (s_run.loops);
    free (sessions);
    free (members);
    free (is_member);
    free (run_specs);
    free (s_run.online);
    free (s_run.run_channels);
    free (sum);
    zmq_ctx_term (s_run.zmq_context);
    pop_destroy (&s_run.pop);
    return ready >= count? 0: 1;      //  every session came up
}
