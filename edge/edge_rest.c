/*  =========================================================================
    edge_rest - REST under /api/v1/: each request is its own broker session

    A request becomes one protocol operation. With a bearer token the edge
    first sends {op:"auth"} on a fresh session and, once that is answered,
    the operation; then it ends the session with {op:"bye"}. (The two are
    not pipelined: the broker binds the session to its user only when the
    auth reply passes back through it.) The reply map, less "re", is the
    response body; error codes map to HTTP statuses. A send is answered
    only once it is durable, because the broker answers only then.
    =========================================================================
*/
#include "edge_priv.h"

#define S_PREFIX     "/api/v1/"
#define S_AUTH_RID   1              //  rid of the auth request
#define S_OP_RID     2              //  rid of the operation (1 for login)
#define S_TOKEN_MAX  512            //  longest bearer token accepted

//  The endpoints
static const struct {
    int method;                 //  LWSHUMETH_GET or LWSHUMETH_POST
    const char *pattern;        //  path after /api/v1/; {ch} is a channel id
    const char *op;             //  the protocol operation
    bool needs_token;           //  authenticated with a bearer token
} s_routes [] = {
    { LWSHUMETH_POST, "login", "login", false },
    { LWSHUMETH_GET, "channels", "channel_list", true },
    { LWSHUMETH_POST, "channels/{ch}/messages", "send", true },
    { LWSHUMETH_GET, "channels/{ch}/messages", "history", true },
    { LWSHUMETH_POST, "channels/{ch}/read", "read", true },
    { LWSHUMETH_POST, "dm", "dm_open", true },
    { LWSHUMETH_POST, "sync", "sync", true },
};
#define S_ROUTES (sizeof (s_routes) / sizeof (s_routes [0]))

struct _edge_rest_t {
    uint64_t sid;               //  broker session of this request
    struct lws *wsi;            //  its HTTP connection
    edge_pss_t *pss;            //  that connection's data
    const char *op;             //  the operation
    proto_writer_t *request;    //  the operation's request map
    bool authing;               //  waiting for the auth reply
    uint64_t op_rid;            //  rid of the operation
    int64_t sent_at;            //  when the operation went out (usecs, monotonic)
};

//  --------------------------------------------------------------------------
//  Destroy a REST request

void
edge_rest_destroy (edge_rest_t **self_p)
{
    assert (self_p);
    edge_rest_t *self = *self_p;
    if (self) {
        proto_writer_destroy (&self->request);
        free (self);
        *self_p = NULL;
    }
}

//  HTTP status for a protocol error code
static int
s_status_of (const char *error)
{
    size_t len = strlen (error);
    if (strncmp (error, "invalid_", 8) == 0 || streq (error, "no_text") || streq (error, "unknown_op"))
        return 400;
    if (streq (error, "not_authed") || streq (error, "bad_credentials"))
        return 401;
    if (streq (error, "forbidden") || streq (error, "not_in_channel") || streq (error, "not_author"))
        return 403;
    if (len > 10 && streq (error + len - 10, "_not_found"))
        return 404;
    if (streq (error, "name_taken") || streq (error, "idempotency_conflict"))
        return 409;
    if (streq (error, "msg_too_long"))
        return 413;
    if (streq (error, "rate_limited"))
        return 429;
    if (streq (error, "storage_unavailable") || streq (error, "stage_unavailable"))
        return 503;
    return 500;
}

//  Matches path against a pattern; a {ch} segment is copied into ch
static bool
s_match (const char *pattern, const char *path, char *ch, size_t ch_size)
{
    while (*pattern && *path) {
        if (strncmp (pattern, "{ch}", 4) == 0) {
            size_t len = strcspn (path, "/");
            if (len == 0 || len >= ch_size)
                return false;
            memcpy (ch, path, len);
            ch [len] = 0;
            path += len;
            pattern += 4;
        }
        else
        if (*pattern++ != *path++)
            return false;
    }
    return *pattern == 0 && *path == 0;
}

//  Parses a decimal id of 1 to 2^53 - 1; false if it is not one
static bool
s_parse_id (const char *text, uint64_t *value)
{
    size_t len = strlen (text);
    if (len == 0 || len > 16 || strspn (text, "0123456789") != len)
        return false;
    *value = strtoull (text, NULL, 10);
    return *value >= 1 && *value < PROTO_MAX_SEQ;
}

//  Parses a decimal count of 0 to 2^53 - 1; false if it is not one
static bool
s_parse_count (const char *text, uint64_t *value)
{
    if (streq (text, "0")) {
        *value = 0;
        return true;
    }
    return s_parse_id (text, value);
}

//  Finishes the request: ends the session and forgets it
static void
s_finish (edge_t *self, edge_rest_t *rest)
{
    edge_broker_bye (self, rest->sid);
    zhashx_delete (self->rests, &rest->sid);
    if (rest->pss) {
        rest->pss->rest = NULL;
        lws_set_timer_usecs (rest->wsi, LWS_SET_TIMER_USEC_CANCEL);
    }
    edge_rest_destroy (&rest);
}

//  Copies the body's fields into the request map, except op, rid and ch
static int
s_add_body (edge_t *self, proto_writer_t *request, json_out_t *body, char *why, size_t why_size)
{
    if (!body || body->size == 0)
        return 0;
    json_result_t result;
    proto_writer_reset (self->writer);
    if (json_to_msgpack (json_out_text (body), body->size, self->config->max_message_bytes,
                         self->writer, &result)) {
        snprintf (why, why_size, "body: %s (at byte %zu)", json_error_text (result.error),
                  result.offset);
        return -1;
    }
    proto_msg_t *msg = proto_msg_decode (proto_writer_data (self->writer),
                                         proto_writer_size (self->writer), NULL);
    if (!msg) {
        snprintf (why, why_size, "body: not a request within the limits");
        return -1;
    }
    const msgpack_object *root = proto_msg_root (msg);
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object_kv *kv = &root->via.map.ptr [i];
        if (proto_obj_streq (&kv->key, "op") || proto_obj_streq (&kv->key, "rid")
        ||  proto_obj_streq (&kv->key, "ch"))
            continue;
        proto_writer_object (request, &kv->key);
        proto_writer_object (request, &kv->val);
    }
    proto_msg_destroy (&msg);
    return 0;
}

//  Adds the history query arguments; -1 if one is malformed
static int
s_add_query (struct lws *wsi, proto_writer_t *request, char *why, size_t why_size)
{
    static const char *numbers [] = { "before", "after", "around", "limit" };
    char name [32], value [64];
    for (size_t i = 0; i < sizeof (numbers) / sizeof (numbers [0]); i++) {
        snprintf (name, sizeof (name), "%s=", numbers [i]);
        const char *text = lws_get_urlarg_by_name (wsi, name, value, sizeof (value));
        uint64_t number;
        if (!text)
            continue;
        if (!s_parse_count (text, &number)) {
            snprintf (why, why_size, "%s must be a whole number", numbers [i]);
            return -1;
        }
        proto_writer_kv_u64 (request, numbers [i], number);
    }
    const char *text = lws_get_urlarg_by_name (wsi, "around_unread=", value, sizeof (value));
    if (text) {
        bool yes = streq (text, "1") || streq (text, "true");
        if (!yes && !streq (text, "0") && !streq (text, "false")) {
            snprintf (why, why_size, "around_unread must be 1 or 0");
            return -1;
        }
        proto_writer_kv_bool (request, "around_unread", yes);
    }
    return 0;
}

//  Reads "Authorization: Bearer <token>"; false if there is none
static bool
s_bearer (struct lws *wsi, char *token, size_t size)
{
    char header [S_TOKEN_MAX + 16];
    int len = lws_hdr_total_length (wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (len <= 7 || len >= (int) sizeof (header)
    ||  lws_hdr_copy (wsi, header, sizeof (header), WSI_TOKEN_HTTP_AUTHORIZATION) < 0
    ||  strncasecmp (header, "bearer ", 7))
        return false;
    const char *value = header + 7;
    while (*value == ' ')
        value++;
    size_t value_len = strcspn (value, " \t");
    if (value_len == 0 || value_len >= size)
        return false;
    memcpy (token, value, value_len);
    token [value_len] = 0;
    return true;
}

//  Finds the route for method and path; answers 404 or 405 itself
static int
s_route (edge_t *self, struct lws *wsi, edge_pss_t *pss, const char *path,
         char *ch, size_t ch_size)
{
    bool path_known = false;
    if (strncmp (path, S_PREFIX, strlen (S_PREFIX)) == 0) {
        const char *sub = path + strlen (S_PREFIX);
        for (size_t i = 0; i < S_ROUTES; i++)
            if (s_match (s_routes [i].pattern, sub, ch, ch_size)) {
                if (s_routes [i].method == pss->method)
                    return (int) i;
                path_known = true;
            }
    }
    if (path_known)
        edge_http_respond_error (self, wsi, pss, 405, "method_not_allowed",
                                 "method not allowed on this path", NULL);
    else
        edge_http_respond_error (self, wsi, pss, 404, "not_found", "no such endpoint", NULL);
    return -1;
}

//  Builds the operation's request map; answers 400 itself on bad input
static proto_writer_t *
s_build (edge_t *self, struct lws *wsi, edge_pss_t *pss, int route, const char *ch,
         json_out_t *body, uint64_t rid)
{
    char why [160] = "";
    proto_writer_t *request = proto_writer_new ();
    proto_writer_map_begin (request);
    proto_writer_kv_str (request, "op", s_routes [route].op);
    proto_writer_kv_u64 (request, "rid", rid);
    uint64_t ch_id = 0;
    int rc = 0;
    if (*ch && !s_parse_id (ch, &ch_id)) {
        snprintf (why, sizeof (why), "bad channel id");
        rc = -1;
    }
    if (rc == 0 && *ch)
        proto_writer_kv_u64 (request, "ch", ch_id);
    if (rc == 0 && s_routes [route].method == LWSHUMETH_POST)
        rc = s_add_body (self, request, body, why, sizeof (why));
    if (rc == 0 && streq (s_routes [route].op, "history"))
        rc = s_add_query (wsi, request, why, sizeof (why));
    proto_writer_map_end (request);
    if (rc) {
        bool args = strncmp (why, "body:", 5) != 0;
        edge_http_respond_error (self, wsi, pss, 400, args? "invalid_args": "invalid_message",
                                 why, NULL);
        proto_writer_destroy (&request);
    }
    return request;
}

//  Sends the auth request with the token
static int
s_send_auth (edge_t *self, edge_rest_t *rest, const char *token)
{
    proto_writer_reset (self->writer);
    proto_writer_map_begin (self->writer);
    proto_writer_kv_str (self->writer, "op", "auth");
    proto_writer_kv_u64 (self->writer, "rid", S_AUTH_RID);
    proto_writer_kv_str (self->writer, "token", token);
    proto_writer_map_end (self->writer);
    rest->authing = true;
    return edge_broker_send (self, rest->sid, proto_writer_data (self->writer),
                             proto_writer_size (self->writer));
}

//  Sends the operation
static int
s_send_op (edge_t *self, edge_rest_t *rest)
{
    rest->authing = false;
    rest->sent_at = zclock_usecs ();
    return edge_broker_send (self, rest->sid, proto_writer_data (rest->request),
                             proto_writer_size (rest->request));
}

//  The broker cannot be reached
static void
s_unavailable (edge_t *self, edge_rest_t *rest)
{
    edge_http_respond_error (self, rest->wsi, rest->pss, 503, "stage_unavailable",
                             "the server cannot be reached; retry", "retry-after: 1\r\n");
    s_finish (self, rest);
}

//  Starts the broker session for a routed, built request
static void
s_start (edge_t *self, struct lws *wsi, edge_pss_t *pss, int route,
         proto_writer_t *request, const char *token)
{
    edge_rest_t *rest = (edge_rest_t *) zmalloc (sizeof (edge_rest_t));
    assert (rest);
    rest->sid = edge_new_sid (self);
    rest->wsi = wsi;
    rest->pss = pss;
    rest->op = s_routes [route].op;
    rest->request = request;
    rest->op_rid = token? S_OP_RID: S_AUTH_RID;
    zhashx_insert (self->rests, &rest->sid, rest);
    pss->rest = rest;
    int rc = token? s_send_auth (self, rest, token): s_send_op (self, rest);
    if (rc)
        s_unavailable (self, rest);
    else
        lws_set_timer_usecs (wsi, (lws_usec_t) self->config->rest_timeout_ms * 1000);
}

//  --------------------------------------------------------------------------
//  Handle a REST request

void
edge_rest_request (edge_t *self, struct lws *wsi, edge_pss_t *pss,
                   const char *path, json_out_t *body)
{
    char ch [32] = "";
    int route = s_route (self, wsi, pss, path, ch, sizeof (ch));
    if (route < 0)
        return;
    char token [S_TOKEN_MAX + 1] = "";
    bool needs_token = s_routes [route].needs_token;
    if (needs_token && !s_bearer (wsi, token, sizeof (token))) {
        edge_http_respond_error (self, wsi, pss, 401, "not_authed",
                                 "send Authorization: Bearer <token>",
                                 "www-authenticate: Bearer\r\n");
        return;
    }
    proto_writer_t *request = s_build (self, wsi, pss, route, ch, body,
                                       needs_token? S_OP_RID: S_AUTH_RID);
    if (request)
        s_start (self, wsi, pss, route, request, needs_token? token: NULL);
}

//  Responds with a reply rendered as JSON (without "re")
static void
s_respond (edge_t *self, edge_rest_t *rest, const json_root_t *root, json_out_t *out)
{
    bool ok = root->has_ok && root->ok;
    int status = ok? 200: s_status_of (root->error);
    char headers [96] = "cache-control: no-store\r\n";
    if (status == 401)
        strcat (headers, "www-authenticate: Bearer\r\n");
    if (status == 429) {
        uint64_t seconds = (root->retry_after_ms + 999) / 1000;
        snprintf (headers + strlen (headers), sizeof (headers) - strlen (headers),
                  "retry-after: %llu\r\n", (unsigned long long) (seconds? seconds: 1));
    }
    if (ok && streq (rest->op, "send"))
        edge_metrics_ack (self->metrics, (double) (zclock_usecs () - rest->sent_at) / 1000.0);
    edge_http_respond (self, rest->wsi, rest->pss, status, "application/json", out, headers);
}

//  --------------------------------------------------------------------------
//  A broker reply for this request's session

void
edge_rest_reply (edge_t *self, edge_rest_t *rest, const void *data, size_t size)
{
    json_root_t root;
    json_out_t out;
    json_out_init (&out, EDGE_BUF_HEADROOM);
    if (json_from_msgpack (data, size, &out, "re", &root) || !root.has_re
    ||  root.re != (rest->authing? S_AUTH_RID: rest->op_rid)) {
        json_out_free (&out);           //  not the reply we wait for
        return;
    }
    if (rest->authing && root.has_ok && root.ok) {
        json_out_free (&out);
        if (s_send_op (self, rest))
            s_unavailable (self, rest);
        return;
    }
    s_respond (self, rest, &root, &out);
    json_out_free (&out);
    s_finish (self, rest);
}

//  --------------------------------------------------------------------------
//  The broker did not answer in time

void
edge_rest_timeout (edge_t *self, struct lws *wsi, edge_pss_t *pss)
{
    edge_rest_t *rest = pss->rest;
    edge_http_respond_error (self, wsi, pss, 504, "stage_unavailable",
                             "the server did not answer in time; retry", NULL);
    s_finish (self, rest);
}

//  --------------------------------------------------------------------------
//  The client went away: end the session, forget the request

void
edge_rest_abandon (edge_t *self, edge_pss_t *pss)
{
    edge_rest_t *rest = pss->rest;
    rest->pss = NULL;                   //  the connection is going
    pss->rest = NULL;
    s_finish (self, rest);
}
