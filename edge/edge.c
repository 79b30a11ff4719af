/*  =========================================================================
    edge - the web edge actor: the libwebsockets context, the DEALER to the
    broker, and the routing of replies and events to sessions

    One thread serves both sides. The DEALER's and the pipe's ZMQ_FDs are
    adopted into the lws poll set (as raw file descriptors), so the actor
    sleeps in lws_service until a socket, a ZeroMQ message or an lws timer
    needs it. After every service pass it drains the pipe and the DEALER
    (ZMQ_FD is edge-triggered: ZMQ_EVENTS must be read until empty).

    An event for many sessions is written to JSON once, in at most two
    variants (with and without "notify": true), and each connection's
    queue takes a link to the shared bytes.
    =========================================================================
*/
#include <netdb.h>
#include <pthread.h>
#include <unistd.h>
#include "edge_priv.h"

//  Messages taken from the DEALER per service pass, at most
#define S_DRAIN_MAX 4096

static int
    s_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user,
                void *in, size_t len);

//  One protocol serves HTTP and WebSocket (and the adopted ZeroMQ fds), so
//  a WebSocket client that names no subprotocol is served chorus.v1 too
static const struct lws_protocols s_protocols [] = {
    { EDGE_SUBPROTOCOL, s_callback, sizeof (edge_pss_t), 4096, 0, NULL, EDGE_BATCH_BYTES },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

//  --------------------------------------------------------------------------
//  Fill in the defaults

void
edge_config_defaults (edge_config_t *self)
{
    memset (self, 0, sizeof (*self));
    strcpy (self->http_host, "127.0.0.1");
    self->http_port = 8080;
    self->api_endpoint = "tcp://127.0.0.1:5555";
    self->web_root = "edge/web";
    self->allowed_origins = NULL;
    self->max_message_bytes = PROTO_MAX_FRAME;
    self->queue_max_msgs = 1000;
    self->queue_max_bytes = 1024 * 1024;
    self->max_conns_per_ip = 1000;
    self->ping_interval_s = 30;
    self->idle_timeout_s = 60;
    self->handshake_timeout_s = 5;
    self->auth_timeout_s = 30;
    self->keepalive_s = 30;
    self->rest_timeout_ms = 10000;
    self->close_grace_s = 5;
}

//  --------------------------------------------------------------------------
//  Set host and port from "HOST:PORT", "[V6]:PORT", ":PORT" or "PORT"

int
edge_config_set_listen (edge_config_t *self, const char *text)
{
    const char *colon = strrchr (text, ':');
    const char *port = colon? colon + 1: text;
    size_t host_len = colon? (size_t) (colon - text): 0;
    const char *host = text;
    if (host_len >= 2 && host [0] == '[' && host [host_len - 1] == ']') {
        host++;
        host_len -= 2;
    }
    char *end;
    long value = strtol (port, &end, 10);
    if (!*port || *end || value < 0 || value > 65535
    ||  host_len >= sizeof (self->http_host)
    ||  (colon && memchr (host, ':', host_len) && text [0] != '['))
        return -1;
    if (colon) {
        memcpy (self->http_host, host, host_len);
        self->http_host [host_len] = 0;
    }
    self->http_port = (int) value;
    return 0;
}

//  --------------------------------------------------------------------------
//  Monotonic milliseconds

int64_t
edge_now_ms (void)
{
    return zclock_mono ();
}

//  Hash and compare keys that point at a uint64_t session id
static size_t
s_sid_hash (const void *key)
{
    uint64_t sid = *(const uint64_t *) key;
    return (size_t) (sid * 0x9E3779B97F4A7C15ULL >> 16);
}

static int
s_sid_compare (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y? -1: x > y;
}

//  Hash and compare keys that are pointers
static size_t
s_ptr_hash (const void *key)
{
    uintptr_t bits = (uintptr_t) key;
    return (size_t) ((bits >> 4) * 0x9E3779B97F4A7C15ULL >> 16);
}

static int
s_ptr_compare (const void *a, const void *b)
{
    return a < b? -1: a > b;
}

//  Frees a malloc'd table item
static void
s_free_item (void **item)
{
    free (*item);
    *item = NULL;
}

//  A hash table keyed by pointers (sid pointers when by_sid), keys not owned
static zhashx_t *
s_table_new (bool by_sid)
{
    zhashx_t *table = zhashx_new ();
    assert (table);
    zhashx_set_key_hasher (table, by_sid? s_sid_hash: s_ptr_hash);
    zhashx_set_key_comparator (table, by_sid? s_sid_compare: s_ptr_compare);
    zhashx_set_key_duplicator (table, NULL);
    zhashx_set_key_destructor (table, NULL);
    return table;
}

//  Sends lws's warnings and errors to the CZMQ log
static void
s_lws_log (int level, const char *line)
{
    size_t len = strlen (line);
    while (len && (line [len - 1] == '\n' || line [len - 1] == '\r'))
        len--;
    if (level & LLL_ERR)
        zsys_error ("edge: lws: %.*s", (int) len, line);
    else
    if (level & LLL_WARN)
        zsys_warning ("edge: lws: %.*s", (int) len, line);
    else
        zsys_info ("edge: lws: %.*s", (int) len, line);
}

//  Adds an allowed origin
static void
s_origin_add (edge_t *self, const char *origin, size_t len)
{
    while (len && (*origin == ' ' || *origin == '\t')) {
        origin++;
        len--;
    }
    while (len && (origin [len - 1] == ' ' || origin [len - 1] == '\t' || origin [len - 1] == '/'))
        len--;
    if (len)
        zlistx_add_end (self->origins, zsys_sprintf ("%.*s", (int) len, origin));
}

//  Fills the allowed origins: the configured list, or our own origins
static void
s_origins_init (edge_t *self)
{
    const char *list = self->config->allowed_origins;
    if (list) {
        while (*list) {
            size_t len = strcspn (list, ",");
            s_origin_add (self, list, len);
            list += len + (list [len] == ',');
        }
        return;
    }
    const char *scheme = self->config->tls_cert? "https": "http";
    const char *host = self->config->http_host;
    char origin [512];
    snprintf (origin, sizeof (origin), "%s://127.0.0.1:%d", scheme, self->port);
    s_origin_add (self, origin, strlen (origin));
    snprintf (origin, sizeof (origin), "%s://localhost:%d", scheme, self->port);
    s_origin_add (self, origin, strlen (origin));
    if (*host && strcmp (host, "127.0.0.1") && strcmp (host, "localhost")
    &&  strcmp (host, "0.0.0.0") && strcmp (host, "::")) {
        bool v6 = strchr (host, ':') != NULL;
        snprintf (origin, sizeof (origin), "%s://%s%s%s:%d", scheme,
                  v6? "[": "", host, v6? "]": "", self->port);
        s_origin_add (self, origin, strlen (origin));
    }
}

//  --------------------------------------------------------------------------
//  True if the request has no Origin, or an allowed one

bool
edge_origin_allowed (edge_t *self, struct lws *wsi)
{
    int len = lws_hdr_total_length (wsi, WSI_TOKEN_ORIGIN);
    if (len <= 0)
        return true;                    //  not a browser
    char origin [512];
    if (len >= (int) sizeof (origin)
    ||  lws_hdr_copy (wsi, origin, sizeof (origin), WSI_TOKEN_ORIGIN) < 0)
        return false;
    for (const char *allowed = (const char *) zlistx_first (self->origins); allowed;
         allowed = (const char *) zlistx_next (self->origins))
        if (strcasecmp (allowed, origin) == 0)
            return true;
    return false;
}

//  Gives lws a duplicate of a ZeroMQ socket's FD, to wake us when it signals
static int
s_adopt_fd (edge_t *self, zsock_t *sock)
{
    int fd = dup (zsock_fd (sock));
    if (fd < 0)
        return -1;
    lws_sock_file_fd_type desc;
    memset (&desc, 0, sizeof (desc));
    desc.filefd = fd;
    if (!lws_adopt_descriptor_vhost (self->vhost, LWS_ADOPT_RAW_FILE_DESC, desc,
                                     EDGE_SUBPROTOCOL, NULL))
        return -1;
    return 0;
}

//  The lws interface for a host: NULL for every interface, else a numeric
//  address (lws takes a name as an interface name, so "localhost" is
//  resolved here); writes it into iface
static const char *
s_iface (const char *host, char *iface, size_t size)
{
    if (!*host || streq (host, "0.0.0.0") || streq (host, "::") || streq (host, "*"))
        return NULL;
    struct addrinfo hints, *found = NULL;
    memset (&hints, 0, sizeof (hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    if (getaddrinfo (host, NULL, &hints, &found) || !found)
        return host;                    //  lws will fail to bind it, and say so
    const struct addrinfo *use = found;
    for (const struct addrinfo *ai = found; ai; ai = ai->ai_next)
        if (ai->ai_family == AF_INET) {
            use = ai;                   //  IPv4 first, as "localhost" means to most
            break;
        }
    int rc = getnameinfo (use->ai_addr, use->ai_addrlen, iface, (socklen_t) size,
                          NULL, 0, NI_NUMERICHOST);
    freeaddrinfo (found);
    return rc? host: iface;
}

//  Checks the options lws would assert on, or misread
static int
s_config_check (const edge_config_t *config)
{
    bool idle_ok = config->idle_timeout_s == 0
                || (config->ping_interval_s > 0
                &&  config->ping_interval_s < config->idle_timeout_s
                &&  config->idle_timeout_s <= 65535);
    if (!idle_ok)
        zsys_error ("edge: the idle timeout must be 0 (none), or above the ping interval");
    if (config->handshake_timeout_s < 1)
        zsys_error ("edge: the handshake timeout must be 1 s or more");
    if ((config->tls_cert == NULL) != (config->tls_key == NULL))
        zsys_error ("edge: TLS needs both a certificate and a key");
    return idle_ok && config->handshake_timeout_s >= 1
        && (config->tls_cert == NULL) == (config->tls_key == NULL)? 0: -1;
}

//  Creates the lws context listening on the configured address
static int
s_context_new (edge_t *self)
{
    const edge_config_t *config = self->config;
    if (s_config_check (config))
        return -1;
    //  lws warns about each bad frame a client sends: only when verbose
    int levels = LLL_ERR | (config->verbose? LLL_WARN | LLL_NOTICE: 0);
    lws_set_log_level (levels, s_lws_log);
    //  No ping or hang-up from lws: it would keep a timer per connection
    //  in one sorted list (O(n) an insert). The wheel does both. NULL
    //  would not do: lws 4.1 then applies its default 300 s / 310 s.
    memset (&self->retry, 0, sizeof (self->retry));

    struct lws_context_creation_info info;
    memset (&info, 0, sizeof (info));
    char iface [INET6_ADDRSTRLEN + 1];
    info.port = config->http_port;
    info.iface = s_iface (config->http_host, iface, sizeof (iface));
    info.protocols = s_protocols;
    info.vhost_name = "chorus";
    info.server_string = "chorus-edge";
    info.user = self;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8
                 | LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
    if (info.iface && !strchr (info.iface, ':'))
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    info.timeout_secs = (unsigned int) config->handshake_timeout_s;
    info.timeout_secs_ah_idle = (unsigned int) config->handshake_timeout_s;
    info.retry_and_idle_policy = &self->retry;
    info.pt_serv_buf_size = 32 * 1024;
    info.max_http_header_data = 4096;
    info.keepalive_timeout = 5;
    if (config->tls_cert) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = config->tls_cert;
        info.ssl_private_key_filepath = config->tls_key;
        info.alpn = "http/1.1";         //  no HTTP/2: WebSocket over h1 only
    }
    self->context = lws_create_context (&info);
    if (!self->context)
        return -1;
    self->vhost = lws_get_vhost_by_name (self->context, "chorus");
    if (!self->vhost)
        return -1;
    self->port = lws_get_vhost_listen_port (self->vhost);
    return 0;
}

//  Creates the DEALER to the broker
static int
s_dealer_new (edge_t *self)
{
    self->dealer = zsock_new (ZMQ_DEALER);
    if (!self->dealer)
        return -1;
    zsock_set_sndhwm (self->dealer, 100000);
    zsock_set_rcvhwm (self->dealer, 100000);
    zsock_set_sndtimeo (self->dealer, 0);
    zsock_set_immediate (self->dealer, 1);
    zsock_set_linger (self->dealer, 200);
    if (self->config->curve_cert) {
        //  The broker speaks CURVE: authenticate with the deployment's key
        zcert_t *cert = zcert_load (self->config->curve_cert);
        if (!cert) {
            zsys_error ("edge: cannot load %s", self->config->curve_cert);
            return -1;
        }
        zcert_apply (cert, self->dealer);
        zsock_set_curve_serverkey (self->dealer, zcert_public_txt (cert));
        zcert_destroy (&cert);
    }
    if (zsock_connect (self->dealer, "%s", self->config->api_endpoint) < 0) {
        zsys_error ("edge: cannot connect to the broker at %s", self->config->api_endpoint);
        return -1;
    }
    self->dealer_handle = zsock_resolve (self->dealer);
    return 0;
}

//  Resolves web_root to an absolute path, so file paths are simple to check
static void
s_web_root_init (edge_t *self)
{
    const char *root = self->config->web_root? self->config->web_root: "edge/web";
    if (!realpath (root, self->web_root)) {
        zsys_warning ("edge: web root %s is not a directory; static files are off", root);
        self->web_root [0] = 0;
    }
}

//  Destroys the actor's state; closes every connection
static void
s_self_destroy (edge_t **self_p);

//  Creates the actor's state; sets failed if it could not start
static edge_t *
s_self_new (zsock_t *pipe, const edge_config_t *config)
{
    assert (LWS_PRE <= EDGE_BUF_HEADROOM);
    edge_t *self = (edge_t *) zmalloc (sizeof (edge_t));
    assert (self);
    self->pipe = pipe;
    self->config = config;
    self->next_sid = 1;
    self->conns = s_table_new (true);
    self->rests = s_table_new (true);
    self->wsi_ips = s_table_new (false);
    zhashx_set_destructor (self->wsi_ips, s_free_item);
    self->ip_counts = zhashx_new ();
    self->origins = zlistx_new ();
    zlistx_set_destructor (self->origins, (czmq_destructor *) zstr_free);
    self->metrics = edge_metrics_new ();
    self->wheel = edge_wheel_new (EDGE_TICK_MS, edge_now_ms ());
    self->writer = proto_writer_new ();
    self->batch = (uint8_t *) malloc (LWS_PRE + EDGE_BATCH_BYTES);
    assert (self->batch);
    s_web_root_init (self);
    if (s_dealer_new (self) || s_context_new (self)
    ||  s_adopt_fd (self, self->dealer) || s_adopt_fd (self, pipe)) {
        zsys_error ("edge: cannot start on %s:%d", config->http_host, config->http_port);
        self->failed = true;
        return self;
    }
    s_origins_init (self);
    bool v6 = strchr (config->http_host, ':') != NULL;
    zsys_info ("edge: serving http%s://%s%s%s:%d/ (web root %s), broker %s",
               config->tls_cert? "s": "", v6? "[": "",
               *config->http_host? config->http_host: "*", v6? "]": "",
               self->port, self->web_root, config->api_endpoint);
    return self;
}

//  Destroys what is left of every REST request after lws is gone
static void
s_rests_destroy (edge_t *self)
{
    edge_rest_t *rest = (edge_rest_t *) zhashx_first (self->rests);
    while (rest) {
        zhashx_delete (self->rests, zhashx_cursor (self->rests));
        edge_rest_destroy (&rest);
        rest = (edge_rest_t *) zhashx_first (self->rests);
    }
}

//  Destroys the actor's state; closes every connection
static void
s_self_destroy (edge_t **self_p)
{
    edge_t *self = *self_p;
    if (!self)
        return;
    if (self->context)
        lws_context_destroy (self->context);    //  closes every connection
    s_rests_destroy (self);
    edge_wheel_destroy (&self->wheel);  //  after lws: closing takes conns out
    zhashx_destroy (&self->conns);
    zhashx_destroy (&self->rests);
    zhashx_destroy (&self->wsi_ips);
    zhashx_destroy (&self->ip_counts);
    zlistx_destroy (&self->origins);
    edge_metrics_destroy (&self->metrics);
    proto_writer_destroy (&self->writer);
    zsock_destroy (&self->dealer);
    free (self->batch);
    free (self->ready);
    free (self->sids.items);
    free (self->notify.items);
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Per-address connection caps (lws 4.1.6 here has no peer limits)

//  A new TCP connection: refuse it if its address is at the cap
static int
s_filter_network (edge_t *self, struct lws_filter_network_conn_args *args)
{
    char ip [INET6_ADDRSTRLEN] = "";
    const struct sockaddr *sa = (const struct sockaddr *) &args->cli_addr;
    if (sa->sa_family == AF_INET6)
        inet_ntop (AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, ip, sizeof (ip));
    else
    if (sa->sa_family == AF_INET)
        inet_ntop (AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, ip, sizeof (ip));
    else
        strcpy (ip, "local");
    uintptr_t count = (uintptr_t) zhashx_lookup (self->ip_counts, ip);
    if (count >= (uintptr_t) self->config->max_conns_per_ip) {
        self->metrics->refused_per_ip++;
        if (self->config->verbose)
            zsys_warning ("edge: refusing a connection from %s: %d open", ip, (int) count);
        return 1;
    }
    strcpy (self->pending_ip, ip);      //  the wsi for it is made next
    return 0;
}

//  A wsi was made: if it is the connection we just let in, count it
static void
s_wsi_created (edge_t *self, struct lws *wsi)
{
    if (!self->pending_ip [0])
        return;
    const char *ip = self->pending_ip;
    uintptr_t count = (uintptr_t) zhashx_lookup (self->ip_counts, ip);
    zhashx_update (self->ip_counts, ip, (void *) (count + 1));
    zhashx_update (self->wsi_ips, wsi, strdup (ip));
    self->pending_ip [0] = 0;
}

//  A wsi is going: if it was counted, uncount it
static void
s_wsi_destroyed (edge_t *self, struct lws *wsi)
{
    const char *ip = (const char *) zhashx_lookup (self->wsi_ips, wsi);
    if (!ip)
        return;
    uintptr_t count = (uintptr_t) zhashx_lookup (self->ip_counts, ip);
    if (count > 1)
        zhashx_update (self->ip_counts, ip, (void *) (count - 1));
    else
        zhashx_delete (self->ip_counts, ip);
    zhashx_delete (self->wsi_ips, wsi);
}

//  --------------------------------------------------------------------------
//  The one lws callback: hands each reason to its file

static int
s_http_callback (edge_t *self, struct lws *wsi, enum lws_callback_reasons reason,
                 edge_pss_t *pss, void *in, size_t len)
{
    switch (reason) {
        case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
            return edge_http_confirm_upgrade (self, wsi, (const char *) in);
        case LWS_CALLBACK_HTTP:
            return edge_http_request (self, wsi, pss, (const char *) in);
        case LWS_CALLBACK_HTTP_BODY:
            return edge_http_body (self, wsi, pss, in, len);
        case LWS_CALLBACK_HTTP_BODY_COMPLETION:
            return edge_http_body_done (self, wsi, pss);
        case LWS_CALLBACK_HTTP_WRITEABLE:
            return edge_http_writeable (self, wsi, pss);
        case LWS_CALLBACK_HTTP_FILE_COMPLETION:
            return lws_http_transaction_completed (wsi)? -1: 0;
        case LWS_CALLBACK_CLOSED_HTTP:
        case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
            if (pss)
                edge_http_closed (self, wsi, pss);
            return 0;
        default:
            return lws_callback_http_dummy (wsi, reason, pss, in, len);
    }
}

static int
s_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user,
            void *in, size_t len)
{
    edge_t *self = (edge_t *) lws_context_user (lws_get_context (wsi));
    edge_pss_t *pss = (edge_pss_t *) user;
    switch (reason) {
        case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
            return s_filter_network (self, (struct lws_filter_network_conn_args *) user);
        case LWS_CALLBACK_WSI_CREATE:
            s_wsi_created (self, wsi);
            return 0;
        case LWS_CALLBACK_WSI_DESTROY:
            s_wsi_destroyed (self, wsi);
            return 0;
        case LWS_CALLBACK_RAW_ADOPT_FILE:
        case LWS_CALLBACK_RAW_RX_FILE:
        case LWS_CALLBACK_RAW_WRITEABLE_FILE:
        case LWS_CALLBACK_RAW_CLOSE_FILE:
            return 0;                   //  a ZeroMQ socket signalled: drained after the pass
        case LWS_CALLBACK_ESTABLISHED:
            return edge_ws_established (self, wsi, pss);
        case LWS_CALLBACK_RECEIVE:
            return edge_ws_receive (self, wsi, pss, in, len);
        case LWS_CALLBACK_SERVER_WRITEABLE:
            return edge_ws_writeable (self, wsi, pss);
        case LWS_CALLBACK_RECEIVE_PONG:
            return edge_ws_pong (self, wsi, pss);
        case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
            return edge_ws_peer_close (self, wsi, pss, in, len);
        case LWS_CALLBACK_CLOSED:
            edge_ws_closed (self, wsi, pss);
            return 0;
        case LWS_CALLBACK_TIMER:
            if (pss && pss->rest)
                edge_rest_timeout (self, wsi, pss);
            return 0;
        default:
            return s_http_callback (self, wsi, reason, pss, in, len);
    }
}

//  --------------------------------------------------------------------------
//  A new session id

uint64_t
edge_new_sid (edge_t *self)
{
    return self->next_sid++;
}

//  --------------------------------------------------------------------------
//  The broker forgets a peer that is silent for its session_idle_s, with
//  every session on it: one ping (sid 0) every keepalive_s keeps the edge
//  known, however many sessions are quiet.

static void
s_keepalive (lws_sorted_usec_list_t *sul)
{
    edge_t *self = lws_container_of (sul, edge_t, keepalive);
    proto_writer_reset (self->writer);
    proto_writer_map_begin (self->writer);
    proto_writer_kv_str (self->writer, "op", "ping");
    proto_writer_kv_u64 (self->writer, "rid", EDGE_KEEPALIVE_RID);
    proto_writer_map_end (self->writer);
    edge_broker_send (self, 0, proto_writer_data (self->writer), proto_writer_size (self->writer));
    lws_sul_schedule (self->context, 0, &self->keepalive, s_keepalive,
                      (lws_usec_t) self->config->keepalive_s * LWS_US_PER_SEC);
}

//  --------------------------------------------------------------------------
//  Every WebSocket's deadlines are in one timing wheel, ticked by one lws
//  timer only at the ticks whose slot holds links: each wakeup polls every
//  descriptor, so quiet seconds are skipped

static void
    s_tick (lws_sorted_usec_list_t *sul);

//  Schedules the tick timer for at_ms
static void
s_tick_schedule (edge_t *self, int64_t at_ms)
{
    int64_t delay = at_ms - edge_now_ms ();
    if (delay < 1)
        delay = 1;
    self->tick_at = at_ms;
    lws_sul_schedule (self->context, 0, &self->tick, s_tick, (lws_usec_t) delay * LWS_US_PER_MS);
}

static void
s_tick (lws_sorted_usec_list_t *sul)
{
    edge_t *self = lws_container_of (sul, edge_t, tick);
    edge_ws_expire (self);
    int64_t at = edge_wheel_next_due (self->wheel);
    if (at >= 0)
        s_tick_schedule (self, at);
}

void
edge_tick_arm (edge_t *self, int64_t at_ms)
{
    if (lws_dll2_is_detached (&self->tick.list) || at_ms < self->tick_at)
        s_tick_schedule (self, at_ms);
}

//  --------------------------------------------------------------------------
//  Send [payload][sid] to the broker without blocking

int
edge_broker_send (edge_t *self, uint64_t sid, const void *data, size_t size)
{
    uint8_t frame [9];
    size_t frame_size;
    if (sid < 128) {
        frame [0] = (uint8_t) sid;
        frame_size = 1;
    }
    else {
        frame [0] = 0xcf;               //  uint64, big-endian
        for (int i = 0; i < 8; i++)
            frame [1 + i] = (uint8_t) (sid >> (56 - 8 * i));
        frame_size = 9;
    }
    if (zmq_send (self->dealer_handle, data, size, ZMQ_DONTWAIT | ZMQ_SNDMORE) < 0) {
        self->metrics->broker_send_failed++;
        return -1;
    }
    //  The first frame is queued, so the second goes too (atomic multipart)
    if (zmq_send (self->dealer_handle, frame, frame_size, ZMQ_DONTWAIT) < 0) {
        self->metrics->broker_send_failed++;
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Tell the broker a session is over

void
edge_broker_bye (edge_t *self, uint64_t sid)
{
    //  {"op": "bye", "rid": 0}
    static const uint8_t bye [] = { 0x82, 0xa2, 'o', 'p', 0xa3, 'b', 'y', 'e',
                                    0xa3, 'r', 'i', 'd', 0x00 };
    edge_broker_send (self, sid, bye, sizeof (bye));
}

//  --------------------------------------------------------------------------
//  Render an error reply as JSON

edge_buf_t *
edge_error_json (edge_t *self, uint64_t rid, proto_error_t code, const char *message)
{
    proto_write_error (self->writer, rid, code, message, 0);
    json_out_t out;
    json_out_init (&out, EDGE_BUF_HEADROOM);
    if (json_from_msgpack (proto_writer_data (self->writer), proto_writer_size (self->writer),
                           &out, NULL, NULL)) {
        json_out_free (&out);
        return NULL;
    }
    return edge_buf_new (&out);
}

//  --------------------------------------------------------------------------
//  Messages from the broker: [payload][sids][notify]

//  Reads the msgpack array length at *data; -1 if it is not an array
static int
s_read_array_header (const uint8_t **data, const uint8_t *end, uint64_t *items)
{
    const uint8_t *p = *data;
    size_t size = (size_t) (end - p);
    if (size >= 1 && p [0] >= 0x90 && p [0] <= 0x9f) {
        *items = p [0] & 0x0f;
        *data = p + 1;
    }
    else
    if (size >= 3 && p [0] == 0xdc) {
        *items = ((uint64_t) p [1] << 8) | p [2];
        *data = p + 3;
    }
    else
    if (size >= 5 && p [0] == 0xdd) {
        *items = ((uint64_t) p [1] << 24) | ((uint64_t) p [2] << 16)
               | ((uint64_t) p [3] << 8) | p [4];
        *data = p + 5;
    }
    else
        return -1;
    return 0;
}

//  Reads one msgpack unsigned integer at *data
static int
s_read_uint (const uint8_t **data, const uint8_t *end, uint64_t *value)
{
    const uint8_t *p = *data;
    if (p >= end)
        return -1;
    uint8_t b = *p++;
    int width = b <= 0x7f? 0: b == 0xcc? 1: b == 0xcd? 2: b == 0xce? 4: b == 0xcf? 8: -1;
    if (width < 0 || end - p < width)
        return -1;
    uint64_t result = width? 0: b;
    for (int k = 0; k < width; k++)
        result = (result << 8) | *p++;
    *value = result;
    *data = p;
    return 0;
}

//  Reads a msgpack array of unsigned integers (a frame) into sids
static int
s_read_sids (edge_sids_t *sids, const zmq_msg_t *frame)
{
    const uint8_t *data = (const uint8_t *) zmq_msg_data ((zmq_msg_t *) frame);
    const uint8_t *end = data + zmq_msg_size ((zmq_msg_t *) frame);
    uint64_t items;
    sids->count = 0;
    if (s_read_array_header (&data, end, &items)
    ||  items > (uint64_t) (end - data))    //  each takes a byte at least
        return -1;
    if (items > sids->capacity) {
        uint64_t *array = (uint64_t *) realloc (sids->items, items * sizeof (uint64_t));
        if (!array)
            return -1;
        sids->items = array;
        sids->capacity = items;
    }
    for (uint64_t i = 0; i < items; i++)
        if (s_read_uint (&data, end, &sids->items [i]))
            return -1;
    sids->count = (size_t) items;
    return data == end? 0: -1;
}

//  Renders a broker payload as JSON for WebSocket clients
static edge_buf_t *
s_render (const zmq_msg_t *payload, json_root_t *root)
{
    json_out_t out;
    json_out_init (&out, EDGE_BUF_HEADROOM);
    if (json_from_msgpack (zmq_msg_data ((zmq_msg_t *) payload), zmq_msg_size ((zmq_msg_t *) payload),
                           &out, NULL, root)) {
        json_out_free (&out);
        return NULL;
    }
    return edge_buf_new (&out);
}

//  A copy of an event's JSON with "notify": true added at the end
static edge_buf_t *
s_render_notify (edge_buf_t *base)
{
    const uint8_t *text = edge_buf_data (base);
    size_t size = edge_buf_size (base);
    if (size < 2 || text [size - 1] != '}')
        return edge_buf_link (base);
    json_out_t out;
    json_out_init (&out, EDGE_BUF_HEADROOM);
    json_out_append (&out, text, size - 1);
    if (size > 2)
        json_out_append (&out, ",", 1);
    json_out_append (&out, "\"notify\":true}", 14);
    return edge_buf_new (&out);
}

//  A reply: to its WebSocket session, or to its REST request
static void
s_route_reply (edge_t *self, const zmq_msg_t *payload, edge_buf_t *buf,
               const json_root_t *root)
{
    self->metrics->replies++;
    if (root->has_re && root->re == EDGE_KEEPALIVE_RID)
        return;                         //  the answer to our keepalive
    for (size_t i = 0; i < self->sids.count; i++) {
        uint64_t sid = self->sids.items [i];
        edge_conn_t *conn = (edge_conn_t *) zhashx_lookup (self->conns, &sid);
        edge_rest_t *rest = conn? NULL: (edge_rest_t *) zhashx_lookup (self->rests, &sid);
        if (conn)
            edge_ws_reply (self, conn, buf, root);
        else
        if (rest)
            edge_rest_reply (self, rest, zmq_msg_data ((zmq_msg_t *) payload),
                             zmq_msg_size ((zmq_msg_t *) payload));
        else
            self->metrics->unknown_sid++;
    }
}

//  Marks the connections an event must notify; returns how many are here
static size_t
s_mark_notify (edge_t *self, const zmq_msg_t *notify)
{
    if (!notify || zmq_msg_size ((zmq_msg_t *) notify) <= 1
    ||  s_read_sids (&self->notify, notify))
        return 0;
    self->event_epoch++;
    size_t marked = 0;
    for (size_t i = 0; i < self->notify.count; i++) {
        edge_conn_t *conn = (edge_conn_t *) zhashx_lookup (self->conns, &self->notify.items [i]);
        if (conn) {
            conn->notify_epoch = self->event_epoch;
            marked++;
        }
    }
    return marked;
}

//  An event: rendered once (twice with notify), queued to each connection
static void
s_route_event (edge_t *self, const zmq_msg_t *notify, edge_buf_t *base,
               const json_root_t *root)
{
    self->metrics->events++;
    if (root->ts)
        edge_metrics_fanout (self->metrics, (double) zclock_time () - (double) root->ts);
    edge_buf_t *notified = NULL;
    if (s_mark_notify (self, notify))
        notified = s_render_notify (base);
    for (size_t i = 0; i < self->sids.count; i++) {
        edge_conn_t *conn = (edge_conn_t *) zhashx_lookup (self->conns, &self->sids.items [i]);
        if (!conn) {
            //  A REST session has no use for events; any other is gone
            if (!zhashx_lookup (self->rests, &self->sids.items [i]))
                self->metrics->unknown_sid++;
            continue;
        }
        bool notifies = notified && conn->notify_epoch == self->event_epoch;
        edge_ws_queue (self, conn, notifies? notified: base);
        self->metrics->deliveries++;
    }
    edge_buf_unlink (&notified);
}

//  Routes one broker message: rendered to JSON once, then to its sessions
static void
s_handle_broker_message (edge_t *self, zmq_msg_t *parts, int count)
{
    json_root_t root;
    edge_buf_t *buf = NULL;
    if (count < 2 || s_read_sids (&self->sids, &parts [1])
    ||  !(buf = s_render (&parts [0], &root))) {
        self->metrics->broker_malformed++;
        return;
    }
    if (root.has_ev)
        s_route_event (self, count > 2? &parts [2]: NULL, buf, &root);
    else
        s_route_reply (self, &parts [0], buf, &root);
    edge_buf_unlink (&buf);
}

//  Receives one multipart message (up to 3 parts kept); false if none
static bool
s_receive_one (edge_t *self, zmq_msg_t *parts, int *count)
{
    *count = 0;
    bool more = true;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init (&part);
        if (zmq_msg_recv (&part, self->dealer_handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&part);
            return *count > 0;
        }
        more = zmq_msg_more (&part);
        if (*count < 3)
            parts [(*count)++] = part;
        else
            zmq_msg_close (&part);
    }
    return true;
}

//  Routes the DEALER's messages, up to S_DRAIN_MAX
static void
s_drain_dealer (edge_t *self)
{
    self->backlog = false;
    for (int n = 0; n < S_DRAIN_MAX; n++) {
        if (!(zsock_events (self->dealer) & ZMQ_POLLIN))
            return;
        zmq_msg_t parts [3];
        int count = 0;
        if (!s_receive_one (self, parts, &count))
            return;
        s_handle_broker_message (self, parts, count);
        for (int i = 0; i < count; i++)
            zmq_msg_close (&parts [i]);
    }
    self->backlog = true;               //  serve sockets, then come back
}

//  Drains the DEALER, then writes to each connection it queued to: one
//  write for all its frames, in this pass rather than after poll
static void
s_handle_dealer (edge_t *self)
{
    self->draining = true;
    s_drain_dealer (self);
    self->draining = false;
    edge_ws_write_ready (self);
}

//  --------------------------------------------------------------------------
//  Commands on the actor pipe

static void
s_handle_pipe (edge_t *self)
{
    while (!self->terminated && (zsock_events (self->pipe) & ZMQ_POLLIN)) {
        char *command = zstr_recv (self->pipe);
        if (!command || streq (command, "$TERM"))
            self->terminated = true;
        else
        if (streq (command, "STATUS"))
            zstr_send (self->pipe, self->failed? "FAILED": "OK");
        else
        if (streq (command, "PORT"))
            zstr_sendf (self->pipe, "%d", self->port);
        else {
            zsys_error ("edge: invalid command: %s", command);
            assert (false);
        }
        zstr_free (&command);
    }
}

//  Answers STATUS with FAILED until $TERM
static void
s_wait_failed (edge_t *self)
{
    while (!self->terminated) {
        char *command = zstr_recv (self->pipe);
        if (!command || streq (command, "$TERM"))
            self->terminated = true;
        else
        if (streq (command, "STATUS"))
            zstr_send (self->pipe, "FAILED");
        else
        if (streq (command, "PORT"))
            zstr_send (self->pipe, "0");
        zstr_free (&command);
    }
}

//  Closes every WebSocket with 1001 and serves until they are gone, or
//  for close_grace_s at most
static void
s_shutdown (edge_t *self)
{
    lws_sul_schedule (self->context, 0, &self->keepalive, NULL, LWS_SET_TIMER_USEC_CANCEL);
    lws_sul_schedule (self->context, 0, &self->tick, NULL, LWS_SET_TIMER_USEC_CANCEL);
    edge_conn_t *conn = (edge_conn_t *) zhashx_first (self->conns);
    while (conn) {
        edge_ws_close (self, conn, LWS_CLOSE_STATUS_GOINGAWAY, "server stopping",
                       EDGE_DISC_SHUTDOWN);
        conn = (edge_conn_t *) zhashx_next (self->conns);
    }
    int64_t deadline = edge_now_ms () + (int64_t) self->config->close_grace_s * 1000;
    if (deadline > edge_now_ms () + 1000)
        deadline = edge_now_ms () + 1000;
    while (zhashx_size (self->conns) && edge_now_ms () < deadline) {
        lws_service (self->context, -1);
        zclock_sleep (2);
    }
}

//  --------------------------------------------------------------------------
//  The edge actor

void
edge_actor (zsock_t *pipe, void *args)
{
    pthread_setname_np (pthread_self (), "edge");
    edge_t *self = s_self_new (pipe, (const edge_config_t *) args);
    zsock_signal (pipe, self->failed? 1: 0);
    if (self->failed) {
        s_wait_failed (self);
        s_self_destroy (&self);
        return;
    }
    if (self->config->keepalive_s > 0)
        lws_sul_schedule (self->context, 0, &self->keepalive, s_keepalive,
                          (lws_usec_t) self->config->keepalive_s * LWS_US_PER_SEC);
    while (!self->terminated) {
        s_handle_pipe (self);
        if (self->terminated)
            break;
        s_handle_dealer (self);
        //  Sleep in poll until a socket, a ZeroMQ FD or a timer needs us,
        //  unless the DEALER still holds messages
        if (lws_service (self->context, self->backlog? -1: 0) < 0)
            break;
    }
    s_shutdown (self);
    zsys_info ("edge: stopped");
    s_self_destroy (&self);
}
