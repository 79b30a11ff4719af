/*  =========================================================================
    edge_http - HTTP on the edge's port: WebSocket upgrade checks, static
    files, /metrics, and writing responses

    lws 4.1.6 checks little of a WebSocket handshake, so every upgrade is
    looked at here first (path, method, version, key, Origin, subprotocol)
    and refused with a proper status. Responses are written from the
    writeable callback, a chunk at a time.
    =========================================================================
*/
#include <sys/stat.h>
#include "edge_priv.h"

#define S_API_PREFIX "/api/"

//  Content types by file name ending
static const struct {
    const char *ending;         //  file name ending
    const char *type;           //  its Content-Type
} s_types [] = {
    { ".html", "text/html; charset=utf-8" },
    { ".htm", "text/html; charset=utf-8" },
    { ".js", "text/javascript; charset=utf-8" },
    { ".mjs", "text/javascript; charset=utf-8" },
    { ".css", "text/css; charset=utf-8" },
    { ".svg", "image/svg+xml" },
    { ".png", "image/png" },
    { ".json", "application/json" },
    { ".webmanifest", "application/manifest+json" },
    { ".map", "application/json" },
    { ".ico", "image/x-icon" },
    { ".txt", "text/plain; charset=utf-8" },
    { ".jpg", "image/jpeg" },
    { ".jpeg", "image/jpeg" },
    { ".gif", "image/gif" },
    { ".webp", "image/webp" },
    { ".woff2", "font/woff2" },
};

//  Content-Type for a file name
static const char *
s_content_type (const char *file)
{
    size_t len = strlen (file);
    for (size_t i = 0; i < sizeof (s_types) / sizeof (s_types [0]); i++) {
        size_t ending = strlen (s_types [i].ending);
        if (len > ending && strcasecmp (file + len - ending, s_types [i].ending) == 0)
            return s_types [i].type;
    }
    return "application/octet-stream";
}

//  Reason phrase of the statuses used to refuse an upgrade
static const char *
s_reason (int status)
{
    return status == 400? "Bad Request": status == 403? "Forbidden":
           status == 404? "Not Found": status == 426? "Upgrade Required": "Error";
}

//  Writes a whole small response at once, then the connection closes:
//  used only to refuse upgrades. lws has not set the request's HTTP
//  version at this point (it would say HTTP/1.0), so we write the status
//  line ourselves. Returns 1 (done).
static int
s_refuse_now (edge_t *self, struct lws *wsi, int status, const char *text,
              const char *headers)
{
    self->metrics->refused_upgrade++;
    uint8_t buffer [LWS_PRE + 1024];
    char *response = (char *) buffer + LWS_PRE;
    int len = snprintf (response, sizeof (buffer) - LWS_PRE,
                        "HTTP/1.1 %d %s\r\nserver: chorus-edge\r\n"
                        "content-type: text/plain; charset=utf-8\r\n"
                        "content-length: %zu\r\nconnection: close\r\n%s\r\n%s",
                        status, s_reason (status), strlen (text), headers? headers: "", text);
    if (len < 0 || len >= (int) (sizeof (buffer) - LWS_PRE)
    ||  lws_write (wsi, buffer + LWS_PRE, (size_t) len, LWS_WRITE_HTTP_FINAL) != len)
        return -1;
    if (self->config->verbose)
        zsys_debug ("edge: refused a WebSocket upgrade: %d %s", status, text);
    return 1;
}

//  True if the Sec-WebSocket-Key is base64 of 16 bytes
static bool
s_key_valid (struct lws *wsi)
{
    static const char alphabet [] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char key [32];
    if (lws_hdr_total_length (wsi, WSI_TOKEN_KEY) != 24
    ||  lws_hdr_copy (wsi, key, sizeof (key), WSI_TOKEN_KEY) != 24)
        return false;
    for (int i = 0; i < 22; i++)
        if (!strchr (alphabet, key [i]) || !key [i])
            return false;
    return strchr ("AQgw", key [21]) && key [22] == '=' && key [23] == '=';
}

//  True if Sec-WebSocket-Protocol is absent or lists chorus.v1
static bool
s_subprotocol_ok (struct lws *wsi)
{
    char list [256];
    int len = lws_hdr_total_length (wsi, WSI_TOKEN_PROTOCOL);
    if (len <= 0)
        return true;
    if (len >= (int) sizeof (list) || lws_hdr_copy (wsi, list, sizeof (list), WSI_TOKEN_PROTOCOL) < 0)
        return false;
    for (char *token = list; *token; ) {
        size_t size = strcspn (token, ",");
        char *next = token [size]? token + size + 1: token + size;
        while (size && (*token == ' ' || *token == '\t')) {
            token++;
            size--;
        }
        while (size && (token [size - 1] == ' ' || token [size - 1] == '\t'))
            size--;
        if (size == strlen (EDGE_SUBPROTOCOL) && memcmp (token, EDGE_SUBPROTOCOL, size) == 0)
            return true;
        token = next;
    }
    return false;
}

//  --------------------------------------------------------------------------
//  A client asks to upgrade: check the whole handshake, refuse with a status

int
edge_http_confirm_upgrade (edge_t *self, struct lws *wsi, const char *upgrade)
{
    char path [64] = "";
    char version [8] = "";
    if (!upgrade || strcasecmp (upgrade, "websocket"))
        return s_refuse_now (self, wsi, 400, "only WebSocket upgrades are served\n", NULL);
    if (lws_hdr_total_length (wsi, WSI_TOKEN_GET_URI) <= 0)
        return s_refuse_now (self, wsi, 400, "a WebSocket upgrade must be a GET\n", NULL);
    if (lws_hdr_copy (wsi, path, sizeof (path), WSI_TOKEN_GET_URI) < 0
    ||  strcmp (path, EDGE_WS_PATH))
        return s_refuse_now (self, wsi, 404, "WebSocket is served on /ws only\n", NULL);
    if (lws_hdr_copy (wsi, version, sizeof (version), WSI_TOKEN_VERSION) <= 0
    ||  strcmp (version, "13"))
        return s_refuse_now (self, wsi, 426, "WebSocket version 13 is required\n",
                             "sec-websocket-version: 13\r\n");
    if (!s_key_valid (wsi))
        return s_refuse_now (self, wsi, 400, "bad Sec-WebSocket-Key\n", NULL);
    if (!edge_origin_allowed (self, wsi))
        return s_refuse_now (self, wsi, 403, "origin not allowed\n", NULL);
    if (!s_subprotocol_ok (wsi))
        return s_refuse_now (self, wsi, 400, "subprotocol chorus.v1 is required\n", NULL);
    return 0;
}

//  Forgets the request and response of the last transaction
static void
s_reset (edge_pss_t *pss)
{
    json_out_free (&pss->body);
    json_out_free (&pss->response);
    pss->body_started = false;
    pss->body_too_big = false;
    pss->responding = false;
    pss->headers_sent = false;
    pss->close_after = false;
    pss->is_api = false;
    pss->response_sent = 0;
    pss->path [0] = 0;
}

//  --------------------------------------------------------------------------
//  Start a response; it is written when the socket is writeable

void
edge_http_respond (edge_t *self, struct lws *wsi, edge_pss_t *pss, int status,
                   const char *content_type, json_out_t *body, const char *headers)
{
    json_out_free (&pss->response);
    if (body) {
        pss->response = *body;
        json_out_init (body, EDGE_BUF_HEADROOM);
    }
    else
        json_out_init (&pss->response, EDGE_BUF_HEADROOM);
    pss->status = status;
    pss->content_type = content_type;
    snprintf (pss->headers, sizeof (pss->headers), "%s", headers? headers: "");
    pss->responding = true;
    pss->headers_sent = false;
    pss->response_sent = 0;
    if (pss->is_api)
        edge_metrics_rest (self->metrics, status);
    if (self->config->verbose)
        zsys_debug ("edge: HTTP %d %s", status, pss->path);
    lws_callback_on_writable (wsi);
}

//  --------------------------------------------------------------------------
//  Respond with a JSON error body {ok:false, error, message}

void
edge_http_respond_error (edge_t *self, struct lws *wsi, edge_pss_t *pss, int status,
                         const char *error, const char *message, const char *headers)
{
    proto_writer_reset (self->writer);
    proto_writer_map_begin (self->writer);
    proto_writer_kv_bool (self->writer, "ok", false);
    proto_writer_kv_str (self->writer, "error", error);
    proto_writer_kv_str (self->writer, "message", message);
    proto_writer_map_end (self->writer);
    json_out_t out;
    json_out_init (&out, EDGE_BUF_HEADROOM);
    json_from_msgpack (proto_writer_data (self->writer), proto_writer_size (self->writer),
                       &out, NULL, NULL);
    edge_http_respond (self, wsi, pss, status, "application/json", &out, headers);
    json_out_free (&out);
}

//  Serves a file under the web root
static int
s_serve_file (edge_t *self, struct lws *wsi, edge_pss_t *pss, const char *uri)
{
    if (!self->web_root [0]) {
        edge_http_respond_error (self, wsi, pss, 404, "not_found", "no web root", NULL);
        return 0;
    }
    if (uri [0] != '/' || strstr (uri, "..") || strchr (uri, '\\')) {
        edge_http_respond_error (self, wsi, pss, 400, "invalid_path", "bad path", NULL);
        return 0;
    }
    char file [PATH_MAX * 2];
    size_t len = (size_t) snprintf (file, sizeof (file), "%s%s", self->web_root, uri);
    if (len + 16 >= sizeof (file)) {
        edge_http_respond_error (self, wsi, pss, 414, "invalid_path", "path too long", NULL);
        return 0;
    }
    if (file [len - 1] == '/')
        strcat (file, "index.html");
    struct stat info;
    if (stat (file, &info) || !S_ISREG (info.st_mode)) {
        edge_http_respond_error (self, wsi, pss, 404, "not_found", "no such file", NULL);
        return 0;
    }
    const char *type = s_content_type (file);
    const char *headers = strncmp (type, "text/html", 9) == 0
        ? "cache-control: no-cache\r\nx-content-type-options: nosniff\r\n"
        : "cache-control: max-age=300\r\nx-content-type-options: nosniff\r\n";
    int rc = lws_serve_http_file (wsi, file, type, headers, (int) strlen (headers));
    if (rc < 0 || (rc > 0 && lws_http_transaction_completed (wsi)))
        return -1;
    return 0;
}

//  Serves GET /metrics
static void
s_serve_metrics (edge_t *self, struct lws *wsi, edge_pss_t *pss)
{
    json_out_t out;
    json_out_init (&out, EDGE_BUF_HEADROOM);
    edge_metrics_render (self->metrics, &out);
    edge_http_respond (self, wsi, pss, 200, "text/plain; version=0.0.4; charset=utf-8", &out,
                       "cache-control: no-store\r\n");
    json_out_free (&out);
}

//  True if the request announces a body
static bool
s_has_body (struct lws *wsi)
{
    char length [24] = "";
    return lws_hdr_total_length (wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0
        || (lws_hdr_copy (wsi, length, sizeof (length), WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0
        &&  strtoull (length, NULL, 10) > 0);
}

//  A request under /api/: a body to wait for, or handled now
static int
s_api_request (edge_t *self, struct lws *wsi, edge_pss_t *pss, const char *uri)
{
    pss->is_api = true;
    if (strlen (uri) >= sizeof (pss->path)) {
        edge_http_respond_error (self, wsi, pss, 414, "invalid_args", "path too long", NULL);
        return 0;
    }
    strcpy (pss->path, uri);
    if (!edge_origin_allowed (self, wsi)) {
        edge_http_respond_error (self, wsi, pss, 403, "forbidden", "origin not allowed", NULL);
        return 0;
    }
    if (pss->method != LWSHUMETH_POST) {
        pss->close_after = s_has_body (wsi);    //  a body we do not read
        edge_rest_request (self, wsi, pss, pss->path, NULL);
        return 0;
    }
    char length [24] = "";
    bool chunked = lws_hdr_total_length (wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0;
    int has_length = lws_hdr_copy (wsi, length, sizeof (length), WSI_TOKEN_HTTP_CONTENT_LENGTH);
    if (chunked || (has_length <= 0 && lws_hdr_total_length (wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH))) {
        pss->close_after = true;
        edge_http_respond_error (self, wsi, pss, 411, "invalid_message",
                                 "send the body with a Content-Length", NULL);
        return 0;
    }
    if (has_length > 0 && strtoull (length, NULL, 10) > self->config->max_message_bytes) {
        pss->close_after = true;
        edge_http_respond_error (self, wsi, pss, 413, "invalid_message", "body too big", NULL);
        return 0;
    }
    if (has_length <= 0)                //  no body at all: lws sends no body callbacks
        edge_rest_request (self, wsi, pss, pss->path, NULL);
    return 0;                           //  else wait for the body
}

//  --------------------------------------------------------------------------
//  An HTTP request (not an upgrade)

int
edge_http_request (edge_t *self, struct lws *wsi, edge_pss_t *pss, const char *uri)
{
    s_reset (pss);
    char *uri_ptr = NULL;
    int uri_len = 0;
    pss->method = lws_http_get_uri_and_method (wsi, &uri_ptr, &uri_len);
    if (strncmp (uri, S_API_PREFIX, strlen (S_API_PREFIX)) == 0)
        return s_api_request (self, wsi, pss, uri);
    bool get = pss->method == LWSHUMETH_GET || pss->method == LWSHUMETH_HEAD;
    snprintf (pss->path, sizeof (pss->path), "%s", uri);
    if (!get) {
        pss->close_after = s_has_body (wsi);    //  a body we do not read
        edge_http_respond_error (self, wsi, pss, 405, "method_not_allowed",
                                 "only GET here", "allow: GET, HEAD\r\n");
        return 0;
    }
    if (streq (uri, "/metrics")) {
        if (pss->method == LWSHUMETH_GET)
            s_serve_metrics (self, wsi, pss);
        else
            edge_http_respond_error (self, wsi, pss, 405, "method_not_allowed",
                                     "only GET here", "allow: GET\r\n");
        return 0;
    }
    return s_serve_file (self, wsi, pss, streq (uri, "/")? "/index.html": uri);
}

//  --------------------------------------------------------------------------
//  Part of a request body

int
edge_http_body (edge_t *self, struct lws *wsi, edge_pss_t *pss, const void *data, size_t size)
{
    (void) wsi;
    if (!pss->body_started) {
        json_out_init (&pss->body, 0);
        pss->body_started = true;
    }
    if (pss->body_too_big || pss->body.size + size > self->config->max_message_bytes)
        pss->body_too_big = true;
    else
    if (size)
        json_out_append (&pss->body, data, size);
    return 0;
}

//  --------------------------------------------------------------------------
//  The whole body is here

int
edge_http_body_done (edge_t *self, struct lws *wsi, edge_pss_t *pss)
{
    if (pss->responding)
        return 0;                       //  already answered
    if (pss->body_too_big || pss->body.failed) {
        edge_http_respond_error (self, wsi, pss, 413, "invalid_message", "body too big", NULL);
        return 0;
    }
    edge_rest_request (self, wsi, pss, pss->path, &pss->body);
    return 0;
}

//  Writes the response headers
static int
s_write_headers (struct lws *wsi, edge_pss_t *pss)
{
    uint8_t buffer [LWS_PRE + 1024];
    uint8_t *start = buffer + LWS_PRE, *p = start, *end = buffer + sizeof (buffer) - 1;
    if (lws_add_http_common_headers (wsi, (unsigned int) pss->status, pss->content_type,
                                     pss->response.size, &p, end))
        return -1;
    size_t size = strlen (pss->headers);
    if ((size_t) (end - p) <= size + 8)
        return -1;
    memcpy (p, pss->headers, size);
    p += size;
    if (pss->close_after
    &&  lws_add_http_header_by_token (wsi, WSI_TOKEN_CONNECTION, (unsigned char *) "close", 5, &p, end))
        return -1;
    if (lws_finalize_write_http_header (wsi, start, &p, end))
        return -1;
    pss->headers_sent = true;
    return 0;
}

//  --------------------------------------------------------------------------
//  Write the response: headers, then the body a chunk at a time

int
edge_http_writeable (edge_t *self, struct lws *wsi, edge_pss_t *pss)
{
    (void) self;
    if (!pss || !pss->responding)
        return 0;
    if (!pss->headers_sent && s_write_headers (wsi, pss))
        return -1;
    if (pss->method == LWSHUMETH_HEAD)
        pss->response_sent = pss->response.size;    //  headers only
    size_t left = pss->response.size - pss->response_sent;
    size_t chunk = left > EDGE_HTTP_CHUNK? EDGE_HTTP_CHUNK: left;
    if (chunk) {
        uint8_t *data = pss->response.data + pss->response.head + pss->response_sent;
        enum lws_write_protocol kind = chunk == left? LWS_WRITE_HTTP_FINAL: LWS_WRITE_HTTP;
        if (lws_write (wsi, data, chunk, kind) != (int) chunk)
            return -1;
        pss->response_sent += chunk;
    }
    if (pss->response_sent < pss->response.size) {
        lws_callback_on_writable (wsi);
        return 0;
    }
    bool close_after = pss->close_after;
    s_reset (pss);
    if (close_after)
        return -1;
    return lws_http_transaction_completed (wsi)? -1: 0;
}

//  --------------------------------------------------------------------------
//  The connection or its HTTP binding is going: drop the REST request

void
edge_http_closed (edge_t *self, struct lws *wsi, edge_pss_t *pss)
{
    (void) wsi;
    if (pss->rest)
        edge_rest_abandon (self, pss);
    s_reset (pss);
}
