/*  =========================================================================
    membership_hasher - password work off the membership stage's thread
    =========================================================================
*/
#include <sodium.h>
#include "membership_hasher.h"
#include "stage.h"

//  A check or a hash waiting for a worker
typedef struct {
    mb_password_t *request;         //  what to answer when it is done
    char *hash;                     //  check: argon2id string to check against
    char *password;                 //  the password (wiped when freed)
    size_t password_len;            //  its length
} job_t;

//  One worker and the check it runs
typedef struct {
    zactor_t *actor;                //  the worker
    job_t *job;                     //  its current check, or NULL
} worker_t;

struct _mb_hasher_t {
    worker_t workers [MB_HASHER_WORKERS];   //  the workers
    zlistx_t *queue;                //  job_t waiting, oldest first
};

void
mb_password_destroy (mb_password_t **self_p)
{
    if (self_p && *self_p) {
        mb_password_t *self = *self_p;
        //  The request holds the password
        sodium_memzero (self->bytes, self->route.size + self->req_frame.size);
        free (self->bytes);
        free (self->pwhash);
        free (self);
        *self_p = NULL;
    }
}

static void
s_job_destroy (job_t **job_p)
{
    job_t *job = *job_p;
    if (job) {
        mb_password_destroy (&job->request);
        free (job->hash);
        sodium_memzero (job->password, job->password_len);
        free (job->password);
        free (job);
        *job_p = NULL;
    }
}

//  Checks [hash][password]: "1" (match) or "0"
static void
s_worker_check (zsock_t *pipe, zmsg_t *msg)
{
    char *hash = zmsg_popstr (msg);
    zframe_t *password = zmsg_pop (msg);
    bool match = crypto_pwhash_str_verify (hash, (const char *) zframe_data (password),
                                           zframe_size (password)) == 0;
    sodium_memzero (zframe_data (password), zframe_size (password));
    zframe_destroy (&password);
    free (hash);
    zstr_send (pipe, match? "1": "0");
}

//  Hashes [password]: the argon2id string, or "" if it failed
static void
s_worker_hash (zsock_t *pipe, zmsg_t *msg)
{
    zframe_t *password = zmsg_pop (msg);
    char hash [crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str (hash, (const char *) zframe_data (password), zframe_size (password),
                           crypto_pwhash_OPSLIMIT_INTERACTIVE,
                           crypto_pwhash_MEMLIMIT_INTERACTIVE))
        hash [0] = 0;                   //  out of memory
    sodium_memzero (zframe_data (password), zframe_size (password));
    zframe_destroy (&password);
    zstr_send (pipe, hash);
}

//  A worker: CHECK [hash][password] or HASH [password] in, its result out,
//  until $TERM
static void
s_worker (zsock_t *pipe, void *args)
{
    stage_thread_name ("hasher");
    (void) args;
    zsock_signal (pipe, 0);
    while (true) {
        zmsg_t *msg = zmsg_recv (pipe);
        if (!msg)
            break;
        char *command = zmsg_popstr (msg);
        bool stop = !command || streq (command, "$TERM");
        if (!stop && streq (command, "CHECK") && zmsg_size (msg) == 2)
            s_worker_check (pipe, msg);
        else
        if (!stop && streq (command, "HASH") && zmsg_size (msg) == 1)
            s_worker_hash (pipe, msg);
        free (command);
        zmsg_destroy (&msg);
        if (stop)
            break;
    }
}

//  Gives a job to a worker
static void
s_start (worker_t *worker, job_t *job)
{
    worker->job = job;
    zmsg_t *msg = zmsg_new ();
    if (job->request->hashing)
        zmsg_addstr (msg, "HASH");
    else {
        zmsg_addstr (msg, "CHECK");
        zmsg_addstr (msg, job->hash);
    }
    zmsg_addmem (msg, job->password, job->password_len);
    zmsg_send (&msg, worker->actor);
}

//  --------------------------------------------------------------------------
//  Start the workers

mb_hasher_t *
mb_hasher_new (void)
{
    mb_hasher_t *self = (mb_hasher_t *) zmalloc (sizeof (mb_hasher_t));
    self->queue = zlistx_new ();
    for (int i = 0; i < MB_HASHER_WORKERS; i++) {
        self->workers [i].actor = zactor_new (s_worker, NULL);
        if (!self->workers [i].actor) {
            mb_hasher_destroy (&self);
            break;
        }
    }
    return self;
}

//  --------------------------------------------------------------------------
//  Stop the workers, drop what waits

void
mb_hasher_destroy (mb_hasher_t **self_p)
{
    mb_hasher_t *self = *self_p;
    if (self) {
        for (int i = 0; i < MB_HASHER_WORKERS; i++) {
            zactor_destroy (&self->workers [i].actor);
            s_job_destroy (&self->workers [i].job);
        }
        job_t *job = (job_t *) zlistx_first (self->queue);
        while (job) {
            s_job_destroy (&job);
            job = (job_t *) zlistx_next (self->queue);
        }
        zlistx_destroy (&self->queue);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Queue a job; -1 if the queue is full

static int
s_submit (mb_hasher_t *self, const stage_frame_t *route, const stage_frame_t *req_frame,
          uint64_t tenant, uint64_t user, const char *hash,
          const char *password, size_t password_len)
{
    if (zlistx_size (self->queue) >= MB_HASHER_QUEUE_MAX)
        return -1;
    job_t *job = (job_t *) zmalloc (sizeof (job_t));
    mb_password_t *request = (mb_password_t *) zmalloc (sizeof (mb_password_t));
    //  The frames are the sender's until its message closes: keep copies
    request->bytes = (uint8_t *) malloc (route->size + req_frame->size + 1);
    memcpy (request->bytes, route->data, route->size);
    memcpy (request->bytes + route->size, req_frame->data, req_frame->size);
    request->route = (stage_frame_t) { request->bytes, route->size };
    request->req_frame = (stage_frame_t) { request->bytes + route->size, req_frame->size };
    request->tenant = tenant;
    request->user = user;
    request->hashing = hash == NULL;
    job->request = request;
    job->hash = hash? strdup (hash): NULL;
    job->password = (char *) malloc (password_len + 1);
    memcpy (job->password, password, password_len);
    job->password_len = password_len;
    for (int i = 0; i < MB_HASHER_WORKERS; i++)
        if (!self->workers [i].job) {
            s_start (&self->workers [i], job);
            return 0;
        }
    zlistx_add_end (self->queue, job);
    return 0;
}

int
mb_hasher_check (mb_hasher_t *self, const stage_frame_t *route,
                 const stage_frame_t *req_frame,
                 uint64_t tenant, uint64_t user, const char *hash,
                 const char *password, size_t password_len)
{
    assert (hash);
    return s_submit (self, route, req_frame, tenant, user, hash, password, password_len);
}

int
mb_hasher_hash (mb_hasher_t *self, const stage_frame_t *route,
                const stage_frame_t *req_frame, uint64_t tenant,
                const char *password, size_t password_len)
{
    return s_submit (self, route, req_frame, tenant, 0, NULL, password, password_len);
}

//  --------------------------------------------------------------------------
//  Add the workers' sockets to a poller

void
mb_hasher_poll_with (mb_hasher_t *self, zpoller_t *poller)
{
    for (int i = 0; i < MB_HASHER_WORKERS; i++)
        zpoller_add (poller, self->workers [i].actor);
}

//  --------------------------------------------------------------------------
//  Take a worker's result and start its next job; NULL if not a worker

mb_password_t *
mb_hasher_result (mb_hasher_t *self, void *which)
{
    for (int i = 0; i < MB_HASHER_WORKERS; i++) {
        worker_t *worker = &self->workers [i];
        if (which != worker->actor && which != zactor_sock (worker->actor))
            continue;
        char *result = zstr_recv (worker->actor);
        job_t *job = worker->job;
        worker->job = NULL;
        mb_password_t *request = NULL;
        if (job) {
            request = job->request;
            job->request = NULL;
            if (request->hashing)
                request->pwhash = result && *result? strdup (result): NULL;
            else
                request->match = result && streq (result, "1");
            s_job_destroy (&job);
        }
        zstr_free (&result);
        job_t *next = (job_t *) zlistx_first (self->queue);
        if (next) {
            zlistx_detach (self->queue, NULL);
            s_start (worker, next);
        }
        return request;
    }
    return NULL;
}
