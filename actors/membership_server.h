/*  =========================================================================
    membership_server - what the membership stage's handlers share

    The store, the model, the outgoing sockets and scratch writers, plus the
    request being handled, and the helpers every handler uses: replies,
    errors, the user/tenant/channel objects of the protocol, recipients,
    events to fan-out, visibility, and the one synced write per change.
    =========================================================================
*/
#ifndef CHORUS_MEMBERSHIP_SERVER_H_INCLUDED
#define CHORUS_MEMBERSHIP_SERVER_H_INCLUDED

#include "stage.h"
#include "store.h"
#include "membership_model.h"
#include "membership_hasher.h"

//  Affinity weights (docs/protocol.md, Affinity)
#define MB_WEIGHT_SEND      1.0
#define MB_WEIGHT_READ      0.5
#define MB_WEIGHT_HISTORY   0.25

//  The stage's state, shared by the handlers
typedef struct {
    const stage_config_t *config;       //  process configuration (read at start)
    store_t *store;                     //  <data_dir>/meta
    mb_model_t *model;                  //  working copy of the store
    zsock_t *broker;                    //  replies
    zsock_t *persistence;               //  requests passed on
    zsock_t *fanout;                    //  events
    store_batch_t *batch;               //  the change being prepared
    proto_writer_t *reply;              //  scratch: reply map
    proto_writer_t *ctl;                //  scratch: reply ctl map
    proto_writer_t *ctx;                //  scratch: ctx passed on
    proto_writer_t *meta;               //  scratch: event meta
    proto_writer_t *event;              //  scratch: event map
    mb_hasher_t *hasher;                //  password checks, off this thread
    bool verbose;                       //  log every request
} mb_server_t;

//  The request being handled
typedef struct {
    const stage_frame_t *route;                   //  session to answer
    const stage_frame_t *req_frame;               //  the client's request bytes
    proto_msg_t *req;                   //  the client's request, decoded
    const char *op;                     //  its op (points into req)
    size_t op_len;                      //  length of op
    uint64_t rid;                       //  request id, echoed as re
    uint64_t tn;                        //  ctx: tenant id (0 = none)
    uint64_t uid;                       //  ctx: user id (0 = none)
    bool adm;                           //  ctx: admin session
    mb_tenant_t *tenant;                //  session's tenant (user ops), or NULL
    mb_user_t *user;                    //  session's user (user ops), or NULL
    uint64_t now;                       //  ms since the epoch at arrival
} mb_request_t;

//  Open <data_dir>/meta, load it and connect the outboxes; NULL (after
//  logging why) on failure
mb_server_t *
    mb_server_new (const stage_config_t *config);
//  Close everything; nulls the reference
void
    mb_server_destroy (mb_server_t **self_p);
//  Write self->batch atomically with sync, then clear it. 0, or -1 after
//  logging (the caller answers storage_unavailable and changes nothing).
int
    mb_server_commit (mb_server_t *self);
//  Save the affinity of every changed membership in one batch
void
    mb_server_flush (mb_server_t *self);

//  Start the reply {re, ok: true, ...} in self->reply
void
    mb_reply_begin (mb_server_t *self, mb_request_t *request);
//  Close and send the reply in self->reply, with ctl (or NULL)
void
    mb_reply_send (mb_server_t *self, mb_request_t *request, proto_writer_t *ctl);
//  Send {re, ok: true} with ctl (or NULL)
void
    mb_reply_empty (mb_server_t *self, mb_request_t *request, proto_writer_t *ctl);
//  Send an error reply; message may be NULL (the error's default text)
void
    mb_reply_error (mb_server_t *self, mb_request_t *request, proto_error_t code,
                    const char *message);
//  Write the ctl {set: {tn, uid, adm}} into self->ctl and return it
proto_writer_t *
    mb_ctl_set (mb_server_t *self, uint64_t tenant, uint64_t user, bool admin);

//  Write {id, handle, display_name, bot}
void
    mb_write_user (proto_writer_t *writer, mb_user_t *user);
//  Write {id, name}
void
    mb_write_tenant (proto_writer_t *writer, mb_tenant_t *tenant);
//  Write the channel object as member->user sees it at now
void
    mb_write_channel (proto_writer_t *writer, mb_member_t *member, uint64_t now);
//  Write the recipient bin (stage.h) of every member but except (0 = none)
void
    mb_write_recips (proto_writer_t *writer, mb_channel_t *channel, uint64_t except);

//  Events from this stage never notify: their recipients are flagged muted
//  in the meta, which is what fan-out checks first.
//  Send the event in self->event to one member (author 0, so it is never
//  suppressed for that user)
void
    mb_event_to_member (mb_server_t *self, mb_tenant_t *tenant, mb_member_t *member);
//  Send the event in self->event to every member of the channel but except
void
    mb_event_to_members (mb_server_t *self, mb_tenant_t *tenant, mb_channel_t *channel,
                         uint64_t author, uint64_t except);
//  Send channel_joined {ev, channel} to the member who joined or was added
void
    mb_event_channel_joined (mb_server_t *self, mb_tenant_t *tenant,
                             mb_member_t *member, uint64_t now);
//  Send member_joined or member_left {ev, ch, user} to the members but user
void
    mb_event_member (mb_server_t *self, mb_tenant_t *tenant, mb_channel_t *channel,
                     const char *ev, uint64_t user);

//  The channel ch if the request's user may see it (public, or a member);
//  NULL otherwise. *member is the user's membership or NULL.
mb_channel_t *
    mb_request_channel (mb_request_t *request, uint64_t ch, mb_member_t **member);

//  True if name is 1..max characters, each a lower-case letter, a digit or
//  one of extra ("-_" for channel and tenant names, "._-" for handles)
bool
    mb_name_valid (const char *name, size_t len, size_t max, const char *extra);

//  Copies the request's "name" field (a workspace or channel name) into
//  copy (MEMBERSHIP_NAME_MAX + 1 bytes) if it is valid; else answers
//  invalid_args and returns false
bool
    mb_request_name (mb_server_t *self, mb_request_t *request, char *copy);

#endif
