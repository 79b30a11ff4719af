/*  =========================================================================
    membership - the membership stage: tenants, users, tokens, channels,
    DMs, memberships and affinity; authorization of every channel operation

    A CZMQ actor. It owns the RocksDB database <data_dir>/meta (schema in
    docs/storage-meta.md), keeps a working copy of it in memory, answers the
    login, administration, channel and DM operations itself, and passes the
    message operations on to persistence with the context persistence needs
    (channel, type, recipients, mentions). Every change is written with one
    synced batch before it is applied in memory and before the reply leaves;
    only affinity is written lazily, at most once a second.

    On first start it issues the admin token and writes it to
    <data_dir>/admin.token (mode 0600).

    Usage:

        stage_config_t cfg = { .data_dir = "/var/lib/chorus", ... };
        zactor_t *membership = stage_actor_new (membership_actor, &cfg);
        if (!membership)
            ...                             //  it logged why
        zactor_destroy (&membership);      //  flushes affinity, closes the DB

    The actor reads cfg only while it starts: data_dir, membership_endpoint
    (its inbox, bound), broker_endpoint, persistence_endpoint and
    fanout_endpoint (connected), verbose.

    The implementation is split by concern, every internal name prefixed
    mb_: membership.c (actor, dispatch), membership_server (shared state,
    replies, events), membership_model (memory), membership_store (records),
    membership_auth, membership_channels, membership_dm, membership_forward
    (the operations, declared in membership_ops.h).
    =========================================================================
*/
#ifndef CHORUS_MEMBERSHIP_H_INCLUDED
#define CHORUS_MEMBERSHIP_H_INCLUDED

#include "stage.h"

//  Limits the membership stage checks (docs/protocol.md, section 2)
#define MEMBERSHIP_HANDLE_MAX       40      //  characters in a handle
#define MEMBERSHIP_NAME_MAX         80      //  characters in a channel or workspace name
#define MEMBERSHIP_DISPLAY_MAX      80      //  characters in a display name
#define MEMBERSHIP_PASSWORD_MIN     8       //  bytes in a password, at least
#define MEMBERSHIP_PASSWORD_MAX     256     //  bytes in a password, at most
#define MEMBERSHIP_DM_OTHERS_MAX    8       //  other people in a group DM
#define MEMBERSHIP_FLUSH_MS         1000    //  affinity is saved at most this often

//  Name of the admin token file under data_dir
#define MEMBERSHIP_ADMIN_FILE       "admin.token"

//  The actor: args is a const stage_config_t *. Once the store is loaded,
//  the admin token issued and the sockets up, it signals 0 and answers
//  STATUS with OK. If it cannot start, it logs why and answers STATUS with
//  FAILED (stage_actor_failed) until $TERM. Exits on $TERM.
void
    membership_actor (zsock_t *pipe, void *args);

#endif
