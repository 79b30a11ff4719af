/*  =========================================================================
    membership - the membership stage: the actor, its loop and its dispatch

    Opens <data_dir>/meta and loads it (membership_server), issues the admin
    token if needed (membership_auth), binds its inbox, then serves
    [route][ctx][req] messages from ingest one at a time: the op's access
    rule is checked here, the op's handler does the rest
    (membership_auth, membership_channels, membership_dm,
    membership_forward). Every MEMBERSHIP_FLUSH_MS at most, and at $TERM,
    the changed affinities are saved.
    =========================================================================
*/
#include "membership.h"
#include "membership_ops.h"

#define POLL_MS         250         //  wake at least this often to flush
#define DRAIN_MAX       256         //  requests handled per wake, at most

//  Who may use an op
typedef enum {
    ACCESS_LOGIN,                   //  anyone but an admin session
    ACCESS_ANYONE,                  //  anyone (auth)
    ACCESS_ADMIN,                   //  an admin session or the admin token
    ACCESS_USER                     //  an authenticated user
} access_t;

//  One op this stage serves
typedef struct {
    const char *op;                 //  op name
    access_t access;                //  who may use it
    mb_handler_fn *handler;         //  what does it
} op_t;

static const op_t s_ops [] = {
    { "login", ACCESS_LOGIN, mb_auth_login },
    { "auth", ACCESS_ANYONE, mb_auth_auth },
    { "logout", ACCESS_USER, mb_auth_logout },
    { "tenant_create", ACCESS_ADMIN, mb_auth_tenant_create },
    { "tenant_list", ACCESS_ADMIN, mb_auth_tenant_list },
    { "user_create", ACCESS_ADMIN, mb_auth_user_create },
    { "token_create", ACCESS_ADMIN, mb_auth_token_create },
    { "user_list", ACCESS_USER, mb_channels_user_list },
    { "channel_create", ACCESS_USER, mb_channels_create },
    { "channel_browse", ACCESS_USER, mb_channels_browse },
    { "channel_join", ACCESS_USER, mb_channels_join },
    { "channel_leave", ACCESS_USER, mb_channels_leave },
    { "channel_invite", ACCESS_USER, mb_channels_invite },
    { "channel_members", ACCESS_USER, mb_channels_members },
    { "channel_settings", ACCESS_USER, mb_channels_settings },
    { "typing", ACCESS_USER, mb_channels_typing },
    { "dm_open", ACCESS_USER, mb_dm_open },
    { "send", ACCESS_USER, mb_forward_send },
    { "edit", ACCESS_USER, mb_forward_edit },
    { "delete", ACCESS_USER, mb_forward_delete },
    { "history", ACCESS_USER, mb_forward_history },
    { "read", ACCESS_USER, mb_forward_read },
    { "sync", ACCESS_USER, mb_forward_sync },
    { "channel_list", ACCESS_USER, mb_forward_channel_list },
};
#define OP_COUNT (sizeof (s_ops) / sizeof (s_ops [0]))

typedef struct {
    zsock_t *pipe;                  //  actor pipe
    zsock_t *inbox;                 //  requests from ingest
    zpoller_t *poller;              //  pipe and inbox
    mb_server_t *server;            //  store, model, outboxes
    int64_t flushed;                //  zclock_mono of the last affinity flush
    bool terminated;                //  $TERM received
} self_t;

static void s_self_destroy (self_t **self_p);

//  --------------------------------------------------------------------------
//  Start: store, model, admin token, sockets; NULL (after logging) on failure

static self_t *
s_self_new (zsock_t *pipe, const stage_config_t *config)
{
    self_t *self = (self_t *) zmalloc (sizeof (self_t));
    self->pipe = pipe;
    self->flushed = zclock_mono ();
    self->server = mb_server_new (config);
    if (self->server && mb_auth_admin_setup (self->server) == 0)
        self->inbox = stage_inbox_new (config, config->membership_endpoint);
    if (self->inbox) {
        self->poller = zpoller_new (pipe, self->inbox, NULL);
        mb_hasher_poll_with (self->server->hasher, self->poller);
    }
    else {
        zsys_error ("membership: cannot start");
        s_self_destroy (&self);
    }
    return self;
}

//  --------------------------------------------------------------------------
//  Stop: save the affinities, close everything

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (self) {
        if (self->server && self->inbox)
            mb_server_flush (self->server);
        zpoller_destroy (&self->poller);
        zsock_destroy (&self->inbox);
        mb_server_destroy (&self->server);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Dispatch

//  The op entry of a name; NULL if this stage does not serve it
static const op_t *
s_op_find (const char *op, size_t len)
{
    for (size_t i = 0; i < OP_COUNT; i++)
        if (strlen (s_ops [i].op) == len && memcmp (s_ops [i].op, op, len) == 0)
            return &s_ops [i];
    return NULL;
}

//  Resolves the session's tenant and user; false if there is none
static bool
s_session_user (mb_server_t *server, mb_request_t *request)
{
    request->tenant = mb_model_tenant (server->model, request->tn);
    request->user = request->tenant? mb_tenant_user (request->tenant, request->uid): NULL;
    return request->user != NULL;
}

//  Checks the op's access rule; answers and returns false if refused
static bool
s_access_granted (mb_server_t *server, mb_request_t *request, access_t access)
{
    proto_error_t refusal = PROTO_OK;
    if (access == ACCESS_ADMIN && !mb_auth_is_admin (server, request))
        refusal = PROTO_ERR_FORBIDDEN;
    else
    if ((access == ACCESS_LOGIN || access == ACCESS_USER) && request->adm)
        refusal = PROTO_ERR_FORBIDDEN;      //  admin sessions only administer
    else
    if (access == ACCESS_USER && !s_session_user (server, request))
        refusal = PROTO_ERR_NOT_AUTHED;
    if (refusal != PROTO_OK)
        mb_reply_error (server, request, refusal, NULL);
    return refusal == PROTO_OK;
}

//  Handles one decoded request
static void
s_dispatch (mb_server_t *server, mb_request_t *request)
{
    const op_t *op = s_op_find (request->op, request->op_len);
    if (server->verbose)
        zsys_debug ("membership: %.*s rid=%" PRIu64 " by %" PRIu64 "/%" PRIu64 "%s",
                    (int) request->op_len, request->op, request->rid,
                    request->tn, request->uid, request->adm? " (admin)": "");
    if (!op)
        mb_reply_error (server, request, PROTO_ERR_UNKNOWN_OP, NULL);
    else
    if (s_access_granted (server, request, op->access))
        op->handler (server, request);
}

//  Decodes [route][ctx][req] and handles it
static void
s_handle_request (mb_server_t *server, const stage_frame_t *route, const stage_frame_t *ctx_frame,
                  const stage_frame_t *req_frame)
{
    mb_request_t request = { .route = route, .req_frame = req_frame, .op = "" };
    const char *why = NULL;
    const char *inbox = server->config->membership_endpoint;
    proto_msg_t *ctx = stage_decode (inbox, &proto_stage_limits, ctx_frame, &why);
    request.req = stage_decode (inbox, &proto_client_limits, req_frame, &why);
    if (request.req) {
        proto_msg_u64 (request.req, "rid", &request.rid);
        proto_msg_str (request.req, "op", &request.op, &request.op_len);
    }
    if (!ctx || !request.req) {
        zsys_error ("membership: malformed request from ingest: %s", why);
        mb_reply_error (server, &request, PROTO_ERR_INTERNAL, NULL);
    }
    else {
        proto_msg_u64 (ctx, "tn", &request.tn);
        proto_msg_u64 (ctx, "uid", &request.uid);
        proto_msg_bool (ctx, "adm", &request.adm);
        request.now = stage_now_ms ();
        s_dispatch (server, &request);
    }
    proto_msg_destroy (&request.req);
    proto_msg_destroy (&ctx);
}

//  Handles what is waiting on the inbox, up to DRAIN_MAX requests
static void
s_handle_inbox (self_t *self)
{
    int handled = 0;
    stage_bundle_begin ();
    do {
        stage_msg_t msg;
        if (stage_msg_recv (&msg, self->inbox))
            break;
        if (stage_msg_size (&msg) == 3)
            s_handle_request (self->server, stage_msg_frame (&msg, 0), stage_msg_frame (&msg, 1),
                              stage_msg_frame (&msg, 2));
        else
            zsys_error ("membership: malformed message from ingest (%zu frames)",
                        stage_msg_size (&msg));
        stage_msg_close (&msg);
    } while (++handled < DRAIN_MAX);
    stage_bundle_end ();
}

//  Saves the changed affinities if the last flush is old enough
static void
s_flush_due (self_t *self)
{
    int64_t now = zclock_mono ();
    if (now - self->flushed >= MEMBERSHIP_FLUSH_MS) {
        mb_server_flush (self->server);
        self->flushed = now;
    }
}

//  --------------------------------------------------------------------------
//  The membership actor

void
membership_actor (zsock_t *pipe, void *args)
{
    stage_thread_name ("membership");
    self_t *self = s_self_new (pipe, (const stage_config_t *) args);
    if (!self) {
        stage_actor_failed (pipe);
        return;
    }
    zsock_signal (pipe, 0);
    zsys_info ("membership: serving on %s", ((const stage_config_t *) args)->membership_endpoint);
    while (!self->terminated) {
        zsock_t *which = (zsock_t *) zpoller_wait (self->poller, POLL_MS);
        if (which == self->pipe)
            self->terminated = stage_actor_command (self->pipe);
        else
        if (which == self->inbox)
            s_handle_inbox (self);
        else
        if (which) {
            mb_password_t *done = mb_hasher_result (self->server->hasher, which);
            if (done)
                mb_auth_password_done (self->server, done);
            mb_password_destroy (&done);
        }
        else
        if (zpoller_terminated (self->poller))
            break;
        s_flush_due (self);
    }
    s_self_destroy (&self);
}
