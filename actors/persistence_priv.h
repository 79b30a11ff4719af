/*  =========================================================================
    persistence_priv - what the persistence stage's two files share

    Not for other stages: they meet persistence only through its inbox.
    =========================================================================
*/
#ifndef CHORUS_PERSISTENCE_PRIV_H_INCLUDED
#define CHORUS_PERSISTENCE_PRIV_H_INCLUDED

#include "persistence.h"
#include "store.h"


#define UNREAD_SCAN_MAX   1000      //  unread counts stop here ("999+")
#define SYNC_LIMIT_DEFAULT 100      //  messages per channel per sync
#define SYNC_TOTAL_MAX    1000      //  messages per sync reply
#define CACHE_MAX         1000000   //  heads/positions kept in memory

//  Work to finish once the batch is durable
typedef struct {
    stage_frame_t route;        //  who to answer
    stage_frame_t reply;        //  reply bytes
    stage_frame_t meta;         //  event meta for fan-out (if with_event)
    stage_frame_t event;        //  event bytes (if with_event)
    bool with_event;            //  an event goes to fan-out after the ack
    bool acked;                 //  the ack went out (before the write only
                                //  in the early-ack control build)
    uint64_t rid;               //  request id, for a failure reply
    uint8_t bytes [];           //  the frames' bytes, one after another
} pending_t;

//  A cached counter and the value to restore if the batch fails
typedef struct {
    uint64_t *slot;             //  cached value changed by the batch
    uint64_t old;               //  its value before
} undo_t;

#define BODY_HASH_SIZE 16           //  bytes of BLAKE2b in a dedupe record

//  A send staged in this batch, for dedupe inside the batch
typedef struct {
    uint64_t ch;                //  channel it went to
    uint64_t seq;               //  its seq
    uint64_t ts;                //  its timestamp
    uint8_t digest [BODY_HASH_SIZE];    //  of its body, as in its dedupe record
} staged_send_t;

//  What one group commit carries: staged in the actor's thread, written by
//  the committer's while the next one is staged, finished back in the
//  actor's thread (acks and events, or a roll-back)
typedef struct {
    store_batch_t *batch;       //  writes staged for the commit
    zlistx_t *pending;          //  pending_t to finish after the commit
    undo_t *undo;               //  cache changes to roll back on failure
    size_t undo_size;           //  entries in undo
    size_t undo_max;            //  capacity of undo
    zhashx_t *staged;           //  "tn/uid/cmid" -> staged_send_t
    size_t taken;               //  requests taken from the inbox into it
} generation_t;

//  Read and delivered positions of a member
typedef struct {
    uint64_t read;              //  read up to this seq
    uint64_t delivered;         //  delivered up to this seq
    bool staged;                //  changed in this batch: in self->changed
} position_t;

//  A position the batch changed, written once at the commit
typedef struct {
    uint64_t tenant, ch, user;  //  whose
    position_t *position;       //  the cached position (stays until the commit)
} changed_position_t;

typedef struct {
    zsock_t *pipe;              //  actor pipe
    const stage_config_t *config;   //  process configuration
    store_t *store;             //  the messages database
    zsock_t *inbox;             //  requests from membership
    zsock_t *broker;            //  replies
    zsock_t *fanout;            //  events
    zpoller_t *poller;          //  pipe and inbox
    zhashx_t *heads;            //  "tn/ch" -> uint64_t head seq
    zhashx_t *positions;        //  "tn/ch/uid" -> position_t
    generation_t generations [2];   //  the two below point here
    generation_t *now;          //  the commit being staged
    generation_t *flight;       //  the commit being written, while commit
    store_commit_t *commit;     //  the write in the committer's hands, or NULL
    zactor_t *committer;        //  writes one commit at a time
    changed_position_t *changed;    //  positions to write at the commit
    size_t changed_size;        //  entries in changed
    size_t changed_max;         //  capacity of changed
    proto_writer_t *writer;     //  scratch writer for replies
    proto_writer_t *record;     //  scratch writer for records
    proto_writer_t *event;      //  scratch writer for events
    proto_writer_t *meta;       //  scratch writer for event meta
    bool terminated;            //  $TERM received
    uint64_t dropped;           //  acks and events a full next stage refused
    uint64_t commits;           //  batches written
    uint64_t committed;         //  sends acknowledged
} self_t;

//  Context of one request as membership stamped it
typedef struct {
    const stage_frame_t *route; //  session to answer
    proto_msg_t *ctx;           //  stage context
    proto_msg_t *req;           //  the client's request
    uint64_t rid;               //  request id
    uint64_t tenant;            //  tenant id
    uint64_t user;              //  user id
    uint64_t ch;                //  channel id (if any)
} request_t;

//  Shared by persistence.c (writes, commit, dispatch) and persistence_read.c
size_t
    pst_key_message (uint8_t *key, uint64_t ch, uint64_t seq);
size_t
    pst_key_position (uint8_t *key, uint64_t ch, uint64_t user);
size_t
    pst_key_deleted (uint8_t *key, uint64_t ch, uint64_t seq);
uint64_t *
    pst_head (self_t *self, uint64_t tenant, uint64_t ch);
position_t *
    pst_position (self_t *self, uint64_t tenant, uint64_t ch, uint64_t user);
void
    pst_position_stage (self_t *self, uint64_t tenant, uint64_t ch, uint64_t user,
                        uint64_t read, uint64_t delivered);
void
    pst_reply_begin (self_t *self, uint64_t rid);
void
    pst_reply_send (self_t *self, request_t *request);
void
    pst_reply_error (self_t *self, request_t *request, proto_error_t code, const char *why);
void
    pst_pending_add (self_t *self, request_t *request, bool with_event);
void
    pst_commit (self_t *self);
proto_msg_t *
    pst_message_get (self_t *self, uint64_t tenant, uint64_t ch, uint64_t seq, char **value);
size_t
    pst_write_range (self_t *self, proto_writer_t *writer, uint64_t tenant,
                     uint64_t ch, uint64_t lo, uint64_t hi);
uint64_t
    pst_unread (self_t *self, uint64_t tenant, uint64_t ch, uint64_t user,
                uint64_t read, uint64_t head);
//  The read operations (persistence_read.c)
void
    pst_history (self_t *self, request_t *request);
void
    pst_channel_list (self_t *self, request_t *request);
void
    pst_sync (self_t *self, request_t *request);

#endif
