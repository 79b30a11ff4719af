/*  =========================================================================
    edge_main - runs the web edge actor alone, for tests and development

    Until chorusd runs the edge itself, this starts edge_actor with options
    from the command line, prints "edge: listening on PORT" once serving,
    and stops on SIGINT or SIGTERM.

    Build (from the repository root):
    gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g \
        -fsanitize=address,undefined -Iinclude -Iedge \
        tests/edge/edge_main.c edge/edge.c edge/edge_ws.c edge/edge_http.c \
        edge/edge_rest.c edge/edge_conn.c edge/edge_buf.c edge/edge_metrics.c \
        edge/json.c proto/proto_*.c -lwebsockets -lczmq -lzmq -lmsgpackc \
        -o edge_main
    =========================================================================
*/
#include <getopt.h>
#include <signal.h>
#include "edge.h"

//  Static: the actor reads it until it has stopped
static edge_config_t s_config;

static void
s_usage (FILE *out)
{
    fprintf (out,
"usage: edge_main [options]\n"
"  --http HOST:PORT      listen address (default 127.0.0.1:8080; port 0: any)\n"
"  --api ENDPOINT        broker ROUTER (default tcp://127.0.0.1:5555)\n"
"  --web DIR             static files (default edge/web)\n"
"  --origins LIST        allowed Origin values, comma list\n"
"  --max-message BYTES   largest message or REST body (default 196608)\n"
"  --queue-msgs N        outgoing queue cap, messages (default 1000)\n"
"  --queue-bytes BYTES   outgoing queue cap, bytes (default 1048576)\n"
"  --per-ip N            connections per client address (default 1000)\n"
"  --ping S --idle S     WebSocket ping and hang-up (default 30, 60)\n"
"  --handshake S         handshake timeout (default 5)\n"
"  --auth-timeout S      close sockets not authenticated after S (default 30)\n"
"  --keepalive S         broker keepalive for quiet sessions (default 30)\n"
"  --rest-timeout MS     REST gives up after MS (default 10000)\n"
"  --close-grace S       time to send a close frame (default 5)\n"
"  --tls-cert FILE --tls-key FILE   serve HTTPS and WSS\n"
"  --verbose             log connections and requests\n");
}

//  Reads a positive number option; -1 if it is not one
static long
s_number (const char *text)
{
    char *end;
    long value = strtol (text, &end, 10);
    return (*text && !*end && value >= 0)? value: -1;
}

//  Parses the options into config; returns 0 or -1
static int
s_parse (edge_config_t *config, int argc, char **argv)
{
    static struct option longs [] = {
        { "http", 1, 0, 'h' }, { "api", 1, 0, 'a' }, { "web", 1, 0, 'w' },
        { "origins", 1, 0, 'o' }, { "max-message", 1, 0, 1 }, { "queue-msgs", 1, 0, 2 },
        { "queue-bytes", 1, 0, 3 }, { "per-ip", 1, 0, 4 }, { "ping", 1, 0, 5 },
        { "idle", 1, 0, 6 }, { "handshake", 1, 0, 7 }, { "auth-timeout", 1, 0, 8 },
        { "keepalive", 1, 0, 9 }, { "rest-timeout", 1, 0, 10 }, { "close-grace", 1, 0, 11 },
        { "tls-cert", 1, 0, 12 }, { "tls-key", 1, 0, 13 }, { "verbose", 0, 0, 'v' },
        { 0, 0, 0, 0 }
    };
    int opt;
    while ((opt = getopt_long (argc, argv, "", longs, NULL)) != -1) {
        long value = optarg? s_number (optarg): 0;
        switch (opt) {
            case 'h': if (edge_config_set_listen (config, optarg)) return -1; break;
            case 'a': config->api_endpoint = optarg; break;
            case 'w': config->web_root = optarg; break;
            case 'o': config->allowed_origins = optarg; break;
            case 'v': config->verbose = true; break;
            case 12: config->tls_cert = optarg; break;
            case 13: config->tls_key = optarg; break;
            default:
                if (opt < 1 || opt > 11 || value < 0)
                    return -1;
                if (opt == 1) config->max_message_bytes = (size_t) value;
                if (opt == 2) config->queue_max_msgs = (size_t) value;
                if (opt == 3) config->queue_max_bytes = (size_t) value;
                if (opt == 4) config->max_conns_per_ip = (int) value;
                if (opt == 5) config->ping_interval_s = (int) value;
                if (opt == 6) config->idle_timeout_s = (int) value;
                if (opt == 7) config->handshake_timeout_s = (int) value;
                if (opt == 8) config->auth_timeout_s = (int) value;
                if (opt == 9) config->keepalive_s = (int) value;
                if (opt == 10) config->rest_timeout_ms = (int) value;
                if (opt == 11) config->close_grace_s = (int) value;
        }
    }
    return optind == argc? 0: -1;
}

int
main (int argc, char **argv)
{
    edge_config_defaults (&s_config);
    if (s_parse (&s_config, argc, argv)) {
        s_usage (stderr);
        return 2;
    }
    zsys_init ();
    zactor_t *edge = zactor_new (edge_actor, &s_config);
    zstr_send (edge, "STATUS");
    char *status = zstr_recv (edge);
    int rc = status && streq (status, "OK")? 0: 1;
    zstr_free (&status);
    if (rc == 0) {
        zstr_send (edge, "PORT");
        char *port = zstr_recv (edge);
        printf ("edge: listening on %s\n", port? port: "?");
        fflush (stdout);
        zstr_free (&port);
        while (!zsys_interrupted)
            zclock_sleep (50);
    }
    //  A second signal would cut zactor_destroy's wait short, and main
    //  would return under the actor's feet
    signal (SIGINT, SIG_IGN);
    signal (SIGTERM, SIG_IGN);
    zactor_destroy (&edge);
    return rc;
}
