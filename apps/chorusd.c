/*  =========================================================================
    chorusd - the Chorus server

    Reads the options, starts the stages this process runs, waits for
    SIGINT or SIGTERM, then stops them front to back so that nothing new
    comes in while persistence flushes and closes RocksDB.
    =========================================================================
*/
#include <getopt.h>
#include <signal.h>
#include <sys/stat.h>
#include "stage.h"
#include "broker.h"
#include "ingest.h"
#include "membership.h"
#include "persistence.h"
#include "fanout.h"
#include "security.h"
#include "edge.h"
#include "chorus/client.h"

#ifndef CHORUS_WEB_ROOT
#   define CHORUS_WEB_ROOT "edge/web"
#endif

//  What this process runs, and how
typedef struct {
    stage_config_t stage;       //  endpoints and limits for the stages
    edge_config_t edge;         //  the web edge
    const char *stages;         //  comma list of stages to run here
    bool seed_demo;             //  create the demo workspace on start
} options_t;

static void
s_usage (FILE *out)
{
    fprintf (out,
"usage: chorusd [options]\n"
"  --data DIR             data directory (default ./data)\n"
"  --api ENDPOINTS        broker ROUTER endpoints, comma list (default tcp://127.0.0.1:5555)\n"
"  --http HOST:PORT       web edge: WebSocket, REST, web client (default 127.0.0.1:8080)\n"
"  --web DIR              web client directory (default " CHORUS_WEB_ROOT ")\n"
"  --origins LIST         allowed browser origins, comma list (default: the edge's own)\n"
"  --role ROLE            all | store | front | edge, or --stages LIST (default all)\n"
"  --stages LIST          stages to run: broker,ingest,membership,persistence,fanout,edge\n"
"  --broker-ep EP         broker inbox (default inproc://chorus-broker)\n"
"  --ingest-ep EP         ingest inbox (default inproc://chorus-ingest)\n"
"  --membership-ep EP     membership inbox (default inproc://chorus-membership)\n"
"  --persistence-ep EP    persistence inbox (default inproc://chorus-persistence)\n"
"  --fanout-ep EP         fan-out inbox (default inproc://chorus-fanout)\n"
"  --edge-api EP          broker endpoint the edge connects to (default inproc://chorus-front)\n"
"  --ws-queue-msgs N      WebSocket outgoing queue cap, messages (default 1000)\n"
"  --ws-queue-bytes N     WebSocket outgoing queue cap, bytes (default 1048576)\n"
"  --max-conns-per-ip N   open connections per client address (default 1000)\n"
"  --ws-ping S            WebSocket ping after S seconds with nothing received (default 30)\n"
"  --ws-idle S            hang up after S seconds with nothing received (default 60)\n"
"  --tls-cert FILE        PEM certificate: serve HTTPS and WSS\n"
"  --tls-key FILE         PEM private key for --tls-cert\n"
"  --curve-dir DIR        CURVE on every tcp link: DIR/server.cert_secret (made on\n"
"                         first start) and DIR/clients/*.cert, the keys allowed in\n"
"  --session-idle S       forget peers silent for S seconds (default 90)\n"
"  --rate N --burst N     requests per second per user, and burst (default 50, 200)\n"
"  --batch-max N          sends per group commit at most (default 1024)\n"
"  --seed-demo            create the demo workspace if it does not exist\n"
"  --verbose              log more\n");
}

//  Fills in defaults
static void
s_options_init (options_t *options)
{
    memset (options, 0, sizeof (*options));
    options->stage.data_dir = "./data";
    options->stage.front_endpoint = "tcp://127.0.0.1:5555";
    options->stage.broker_endpoint = "inproc://chorus-broker";
    options->stage.ingest_endpoint = "inproc://chorus-ingest";
    options->stage.membership_endpoint = "inproc://chorus-membership";
    options->stage.persistence_endpoint = "inproc://chorus-persistence";
    options->stage.fanout_endpoint = "inproc://chorus-fanout";
    options->stage.session_idle_s = 90;
    options->stage.rate_per_s = 50;
    options->stage.rate_burst = 200;
    options->stage.batch_max = 1024;
    edge_config_defaults (&options->edge);
    options->edge.web_root = CHORUS_WEB_ROOT;
    options->edge.api_endpoint = "inproc://chorus-front";
    options->stages = "broker,ingest,membership,persistence,fanout,edge";
}

//  Parses argv into options; returns 0, or -1 on a usage error
static int
s_options_parse (options_t *options, int argc, char **argv)
{
    static struct option longs [] = {
        { "data", 1, 0, 'd' }, { "api", 1, 0, 'a' }, { "http", 1, 0, 'h' },
        { "web", 1, 0, 'w' }, { "origins", 1, 0, 'o' }, { "role", 1, 0, 'r' },
        { "stages", 1, 0, 's' }, { "broker-ep", 1, 0, 1 }, { "ingest-ep", 1, 0, 2 },
        { "membership-ep", 1, 0, 3 }, { "persistence-ep", 1, 0, 4 },
        { "fanout-ep", 1, 0, 5 }, { "edge-api", 1, 0, 6 }, { "session-idle", 1, 0, 7 },
        { "rate", 1, 0, 8 }, { "burst", 1, 0, 9 }, { "batch-max", 1, 0, 10 },
        { "seed-demo", 0, 0, 11 }, { "verbose", 0, 0, 'v' }, { "help", 0, 0, 12 },
        { "ws-queue-msgs", 1, 0, 13 }, { "ws-queue-bytes", 1, 0, 14 },
        { "max-conns-per-ip", 1, 0, 15 }, { "ws-ping", 1, 0, 16 }, { "ws-idle", 1, 0, 17 },
        { "tls-cert", 1, 0, 18 }, { "tls-key", 1, 0, 19 }, { "curve-dir", 1, 0, 20 },
        { 0, 0, 0, 0 }
    };
    int opt;
    while ((opt = getopt_long (argc, argv, "", longs, NULL)) != -1) {
        switch (opt) {
            case 'd': options->stage.data_dir = optarg; break;
            case 'a': options->stage.front_endpoint = optarg; break;
            case 'h': if (edge_config_set_listen (&options->edge, optarg)) return -1; break;
            case 'w': options->edge.web_root = optarg; break;
            case 'o': options->edge.allowed_origins = optarg; break;
            case 'r':
                if (streq (optarg, "all"))
                    options->stages = "broker,ingest,membership,persistence,fanout,edge";
                else
                if (streq (optarg, "store"))
                    options->stages = "persistence";
                else
                if (streq (optarg, "front"))
                    options->stages = "broker,ingest,membership,fanout,edge";
                else
                if (streq (optarg, "edge"))
                    options->stages = "edge";
                else
                    return -1;
                break;
            case 's': options->stages = optarg; break;
            case 1: options->stage.broker_endpoint = optarg; break;
            case 2: options->stage.ingest_endpoint = optarg; break;
            case 3: options->stage.membership_endpoint = optarg; break;
            case 4: options->stage.persistence_endpoint = optarg; break;
            case 5: options->stage.fanout_endpoint = optarg; break;
            case 6: options->edge.api_endpoint = optarg; break;
            case 7: options->stage.session_idle_s = atoi (optarg); break;
            case 8: options->stage.rate_per_s = atoi (optarg); break;
            case 9: options->stage.rate_burst = atoi (optarg); break;
            case 10: options->stage.batch_max = atoi (optarg); break;
            case 11: options->seed_demo = true; break;
            case 12: s_usage (stdout); exit (0);
            case 13: options->edge.queue_max_msgs = (size_t) atol (optarg); break;
            case 14: options->edge.queue_max_bytes = (size_t) atol (optarg); break;
            case 15: options->edge.max_conns_per_ip = atoi (optarg); break;
            case 16: options->edge.ping_interval_s = atoi (optarg); break;
            case 17: options->edge.idle_timeout_s = atoi (optarg); break;
            case 18: options->edge.tls_cert = optarg; break;
            case 19: options->edge.tls_key = optarg; break;
            case 20: options->stage.curve_dir = optarg; break;
            case 'v': options->stage.verbose = true; options->edge.verbose = true; break;
            default: return -1;
        }
    }
    if (optind != argc || options->stage.session_idle_s < 1
    ||  options->edge.queue_max_msgs < 1 || options->edge.queue_max_bytes < 1024
    ||  options->edge.max_conns_per_ip < 1 || options->edge.ping_interval_s < 1
    ||  options->edge.idle_timeout_s < 1 || (!options->edge.tls_cert != !options->edge.tls_key)
    ||  options->stage.rate_per_s < 1 || options->stage.rate_burst < 1
    ||  options->stage.batch_max < 1)
        return -1;
    return 0;
}

//  True if the comma list of stages names this one
static bool
s_runs (const options_t *options, const char *stage)
{
    size_t len = strlen (stage);
    for (const char *p = options->stages; p && *p; ) {
        const char *comma = strchr (p, ',');
        size_t item = comma? (size_t) (comma - p): strlen (p);
        if (item == len && memcmp (p, stage, len) == 0)
            return true;
        p = comma? comma + 1: NULL;
    }
    return false;
}

//  Reads the admin token the membership stage wrote; NULL if none
static char *
s_admin_token (const char *data_dir)
{
    char *path = zsys_sprintf ("%s/admin.token", data_dir);
    FILE *file = fopen (path, "r");
    free (path);
    if (!file)
        return NULL;
    char token [256] = "";
    char *line = fgets (token, sizeof (token), file);
    fclose (file);
    if (!line)
        return NULL;
    token [strcspn (token, "\r\n")] = 0;
    return strdup (token);
}

//  Creates the demo workspace through the API, as any integrator would
static int
s_seed_demo (const options_t *options)
{
    char *token = s_admin_token (options->stage.data_dir);
    if (!token) {
        zsys_error ("chorusd: --seed-demo needs the membership stage in this process");
        return -1;
    }
    char *endpoint = strdup (options->stage.front_endpoint);    //  the first one
    endpoint [strcspn (endpoint, ",")] = 0;
    int rc = chorus_seed_demo (endpoint, token);
    free (endpoint);
    free (token);
    return rc;
}

//  The actors read the options until they stop, so they outlive main's frame
static options_t options;

int
main (int argc, char **argv)
{
    s_options_init (&options);
    if (s_options_parse (&options, argc, argv)) {
        s_usage (stderr);
        return 2;
    }
    zsys_init ();
    zsys_set_logident ("chorusd");
    //  An edge in this process reaches the broker in this process in memory
    char *front = NULL;
    if (s_runs (&options, "broker") && s_runs (&options, "edge")
    &&  strncmp (options.edge.api_endpoint, "inproc://", 9) == 0) {
        front = zsys_sprintf ("%s,%s", options.stage.front_endpoint, options.edge.api_endpoint);
        options.stage.front_endpoint = front;
    }
    mkdir (options.stage.data_dir, 0700);
    //  zauth must run before any socket binds, or CURVE lets every key in
    zactor_t *auth = NULL;
    char *curve_cert = NULL;
    if (options.stage.curve_dir) {
        auth = security_start (options.stage.curve_dir, options.stage.verbose);
        if (!auth)
            return 1;
        curve_cert = zsys_sprintf ("%s/server.cert_secret", options.stage.curve_dir);
        options.edge.curve_cert = curve_cert;
    }
    //  Stages start back to front, so each finds its next stage bound
    struct { const char *name; zactor_fn *fn; void *args; zactor_t *actor; } stages [] = {
        { "persistence", persistence_actor, &options.stage, NULL },
        { "fanout", fanout_actor, &options.stage, NULL },
        { "membership", membership_actor, &options.stage, NULL },
        { "ingest", ingest_actor, &options.stage, NULL },
        { "broker", broker_actor, &options.stage, NULL },
        { "edge", edge_actor, &options.edge, NULL },
    };
    size_t count = sizeof (stages) / sizeof (stages [0]);
    int rc = 0;
    for (size_t i = 0; i < count && rc == 0; i++) {
        if (!s_runs (&options, stages [i].name))
            continue;
        stages [i].actor = stage_actor_new (stages [i].fn, stages [i].args);
        if (!stages [i].actor) {
            zsys_error ("chorusd: the %s stage failed to start", stages [i].name);
            rc = 1;
        }
    }
    if (rc == 0) {
        zsys_info ("chorusd: running %s, data in %s, API on %s",
                   options.stages, options.stage.data_dir, options.stage.front_endpoint);
        if (options.seed_demo && s_seed_demo (&options))
            zsys_warning ("chorusd: seeding the demo workspace failed");
        while (!zsys_interrupted)
            zclock_sleep (100);
        zsys_info ("chorusd: stopping");
    }
    //  A second signal must not cut the actors' shutdown short
    signal (SIGINT, SIG_IGN);
    signal (SIGTERM, SIG_IGN);
    //  Stop front to back: no new input while persistence flushes
    for (size_t i = count; i > 0; i--)
        zactor_destroy (&stages [i - 1].actor);
    zactor_destroy (&auth);
    free (curve_cert);
    free (front);
    return rc;
}
