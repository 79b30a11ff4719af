/*  =========================================================================
    membership_hasher - password work off the membership stage's thread

    Argon2id with the interactive limits costs ~64 MiB and tens of
    milliseconds per hash or check. The membership stage hands each login's
    check, and each new user's hash, to one of a few worker actors and goes
    on serving; the number of workers bounds the memory a flood can take,
    and a bounded queue answers the rest rate_limited.
    =========================================================================
*/
#ifndef CHORUS_MEMBERSHIP_HASHER_H_INCLUDED
#define CHORUS_MEMBERSHIP_HASHER_H_INCLUDED

#include <czmq.h>
#include "stage_msg.h"

#define MB_HASHER_WORKERS    2      //  hashes and checks running at once (one per core here)
#define MB_HASHER_QUEUE_MAX  32     //  hashes and checks waiting, at most

typedef struct _mb_hasher_t mb_hasher_t;

//  A request waiting for password work: a login's check, or the hash of a
//  new user's password
typedef struct {
    stage_frame_t route;            //  session to answer
    stage_frame_t req_frame;        //  the request
    uint8_t *bytes;                 //  owns the bytes of both
    uint64_t tenant;                //  tenant id
    uint64_t user;                  //  login: user id, 0 if the handle is unknown
    bool hashing;                   //  true: make a hash; false: check one
    bool match;                     //  check: the verdict, once checked
    char *pwhash;                   //  hash: the argon2id string, NULL if it failed
} mb_password_t;

//  Start the workers; NULL if they cannot start
mb_hasher_t *
    mb_hasher_new (void);
//  Stop the workers, drop what waits
void
    mb_hasher_destroy (mb_hasher_t **self_p);
//  Queue a check of password against hash (an argon2id string). The route
//  and request frames are copied. Returns 0, or -1 if the queue is full.
int
    mb_hasher_check (mb_hasher_t *self, const stage_frame_t *route,
                     const stage_frame_t *req_frame,
                     uint64_t tenant, uint64_t user, const char *hash,
                     const char *password, size_t password_len);
//  Queue the hashing of a new password, as mb_hasher_check.
int
    mb_hasher_hash (mb_hasher_t *self, const stage_frame_t *route,
                    const stage_frame_t *req_frame, uint64_t tenant,
                    const char *password, size_t password_len);
//  Add the workers' sockets to a poller
void
    mb_hasher_poll_with (mb_hasher_t *self, zpoller_t *poller);
//  If which is a worker's socket, take its result: returns the request
//  (caller destroys it with mb_password_destroy) and starts the next job.
//  NULL if which is not a worker.
mb_password_t *
    mb_hasher_result (mb_hasher_t *self, void *which);
void
    mb_password_destroy (mb_password_t **self_p);

#endif
