/*  =========================================================================
    membership_ops - the operation handlers of the membership stage

    Each handler answers one op (docs/protocol.md, section 4), or authorizes
    it and passes it on to persistence. The actor (membership.c) has
    already checked the session: admin ops run only for an admin, user ops
    only with request->tenant and request->user set.
    =========================================================================
*/
#ifndef CHORUS_MEMBERSHIP_OPS_H_INCLUDED
#define CHORUS_MEMBERSHIP_OPS_H_INCLUDED

#include "membership_server.h"

//  A handler of one op
typedef void (mb_handler_fn) (mb_server_t *server, mb_request_t *request);

//  membership_auth.c: credentials and administration

//  Issue the admin token on first start, or again when admin.token is
//  missing. 0, or -1 after logging.
int
    mb_auth_admin_setup (mb_server_t *server);
//  True if the session is an admin's or the request carries the admin token
bool
    mb_auth_is_admin (mb_server_t *server, mb_request_t *request);
mb_handler_fn mb_auth_login;
//  Answers a login once its password was checked, or a user_create once
//  its password was hashed (membership_hasher)
void mb_auth_password_done (mb_server_t *server, mb_password_t *done);
mb_handler_fn mb_auth_auth;
mb_handler_fn mb_auth_logout;
mb_handler_fn mb_auth_tenant_create;
mb_handler_fn mb_auth_tenant_list;
mb_handler_fn mb_auth_user_create;
mb_handler_fn mb_auth_token_create;

//  membership_channels.c: users, channels, DMs, typing
mb_handler_fn mb_channels_user_list;
mb_handler_fn mb_channels_create;
mb_handler_fn mb_channels_browse;
mb_handler_fn mb_channels_join;
mb_handler_fn mb_channels_leave;
mb_handler_fn mb_channels_invite;
mb_handler_fn mb_channels_members;
mb_handler_fn mb_channels_settings;
mb_handler_fn mb_channels_typing;

//  membership_dm.c: direct and group messages
mb_handler_fn mb_dm_open;

//  membership_forward.c: authorized, then passed on to persistence
mb_handler_fn mb_forward_send;
mb_handler_fn mb_forward_edit;
mb_handler_fn mb_forward_delete;
mb_handler_fn mb_forward_history;
mb_handler_fn mb_forward_read;
mb_handler_fn mb_forward_sync;
mb_handler_fn mb_forward_channel_list;

#endif
