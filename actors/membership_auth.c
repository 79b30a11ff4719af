/*  =========================================================================
    membership_auth - credentials and administration

    Passwords are kept as crypto_pwhash_str (argon2id, interactive limits),
    hashed and checked by membership_hasher's workers, off this thread;
    tokens only as their 32-byte crypto_generichash. A token is a prefix
    (chr_usr_ session, chr_bot_ API, chr_adm_ admin) and 32 random bytes in
    base64url without padding. The admin token is issued on first start and
    written to <data_dir>/admin.token (mode 0600); its hash is in the store.
    =========================================================================
*/
#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>
#include "membership.h"
#include "membership_ops.h"
#include "membership_store.h"

#define TOKEN_RANDOM    32          //  random bytes in a token
#define TOKEN_PREFIX    8           //  "chr_usr_"
#define TOKEN_MAX       (TOKEN_PREFIX + sodium_base64_ENCODED_LEN (TOKEN_RANDOM, \
                         sodium_base64_VARIANT_URLSAFE_NO_PADDING))
#define FIELD_MAX       (4 * MEMBERSHIP_NAME_MAX + 1)   //  a name, NUL-terminated

//  A crypto_pwhash_str of a password nobody has: login verifies against it
//  for an unknown handle, so that takes as long as a wrong password
static const char *s_dummy_hash =
    "$argon2id$v=19$m=65536,t=2,p=1$i8+v3ON3WLgWnitBGjHong$"
    "UHdGk2I3pTuM7Z9QYTkTrdvNAdu78fQMaJO6vo4Oewc";

//  --------------------------------------------------------------------------
//  Tokens

//  Writes a new token with the given prefix into token (TOKEN_MAX bytes)
static void
s_token_new (const char *prefix, char *token)
{
    uint8_t random [TOKEN_RANDOM];
    randombytes_buf (random, sizeof (random));
    memcpy (token, prefix, TOKEN_PREFIX);
    sodium_bin2base64 (token + TOKEN_PREFIX, TOKEN_MAX - TOKEN_PREFIX, random,
                       sizeof (random), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero (random, sizeof (random));
}

//  The hash under which a token is stored
static void
s_token_hash (const char *token, size_t len, uint8_t *hash)
{
    int rc = crypto_generichash (hash, MB_HASH_SIZE, (const unsigned char *) token,
                                 len, NULL, 0);
    assert (rc == 0);
    (void) rc;
}

//  Hash of the request's token field; false if it has none
static bool
s_request_token (mb_request_t *request, uint8_t *hash)
{
    const char *token;
    size_t len;
    if (!proto_msg_str (request->req, "token", &token, &len))
        return false;
    s_token_hash (token, len, hash);
    return true;
}

//  True if hash is the admin token's
static bool
s_is_admin_hash (mb_server_t *server, const uint8_t *hash)
{
    return server->model->has_admin
        && sodium_memcmp (hash, server->model->admin_hash, MB_HASH_SIZE) == 0;
}

//  Issues a token for a user: saves its hash, then adds it to the model.
//  Returns 0, or -1 if it could not be saved.
static int
s_token_issue (mb_server_t *server, mb_request_t *request, mb_tenant_t *tenant,
               mb_user_t *user, bool bot, char *token)
{
    s_token_new (bot? "chr_bot_": "chr_usr_", token);
    uint8_t hash [MB_HASH_SIZE];
    s_token_hash (token, strlen (token), hash);
    mb_token_t record = { tenant->id, user->id, bot };
    mb_store_put_token (server->batch, hash, &record, request->now);
    if (mb_server_commit (server))
        return -1;
    mb_model_token_add (server->model, hash, record);
    return 0;
}

//  --------------------------------------------------------------------------
//  The admin token

//  Writes the token to path, mode 0600, through a temporary file renamed
//  over it, so the file is complete or absent
static int
s_admin_file_write (const char *path, const char *token)
{
    char *temp = zsys_sprintf ("%s.tmp", path);
    int fd = open (temp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    size_t len = strlen (token);
    int rc = fd < 0? -1: 0;
    if (rc == 0 && (fchmod (fd, 0600)
                ||  write (fd, token, len) != (ssize_t) len
                ||  write (fd, "\n", 1) != 1 || fsync (fd)))
        rc = -1;
    if (fd >= 0 && close (fd))
        rc = -1;
    if (rc == 0 && rename (temp, path))
        rc = -1;
    if (rc == 0) {
        //  The rename is durable only once the directory is synced
        char *dir = strdup (path);
        char *slash = strrchr (dir, '/');
        if (slash)
            *slash = 0;
        int dir_fd = open (slash? dir: ".", O_RDONLY | O_DIRECTORY);
        if (dir_fd < 0 || fsync (dir_fd))
            rc = -1;
        if (dir_fd >= 0)
            close (dir_fd);
        free (dir);
    }
    if (rc) {
        zsys_error ("membership: cannot write %s: %s", path, strerror (errno));
        unlink (temp);
    }
    free (temp);
    return rc;
}

//  --------------------------------------------------------------------------
//  Issue the admin token on first start, or when admin.token is missing

int
mb_auth_admin_setup (mb_server_t *server)
{
    char *path = zsys_sprintf ("%s/%s", server->config->data_dir, MEMBERSHIP_ADMIN_FILE);
    bool had_admin = server->model->has_admin;
    int rc = 0;
    if (!had_admin || !zsys_file_exists (path)) {
        char token [TOKEN_MAX];
        uint8_t hash [MB_HASH_SIZE];
        s_token_new ("chr_adm_", token);
        s_token_hash (token, strlen (token), hash);
        mb_store_put_admin (server->batch, hash, stage_now_ms ());
        rc = mb_server_commit (server);
        if (rc == 0)
            rc = s_admin_file_write (path, token);
        if (rc == 0) {
            memcpy (server->model->admin_hash, hash, MB_HASH_SIZE);
            server->model->has_admin = true;
            if (had_admin)
                zsys_warning ("membership: %s was missing: issued a new admin token, "
                              "the old one no longer works", path);
            else
                zsys_info ("membership: admin token written to %s", path);
        }
        sodium_memzero (token, sizeof (token));
    }
    free (path);
    return rc;
}

//  --------------------------------------------------------------------------
//  True if the session is an admin's or the request carries the admin token

bool
mb_auth_is_admin (mb_server_t *server, mb_request_t *request)
{
    uint8_t hash [MB_HASH_SIZE];
    return request->adm
        || (s_request_token (request, hash) && s_is_admin_hash (server, hash));
}

//  Copies a string field that holds no NUL into dest; false if absent or
//  too long for dest
static bool
s_field (mb_request_t *request, const char *key, char *dest, size_t size)
{
    const char *str;
    size_t len;
    return proto_msg_str (request->req, key, &str, &len)
        && len < size && !memchr (str, 0, len)
        && proto_map_strcpy (proto_msg_root (request->req), key, dest, size);
}

//  The tenant named in the request's field; NULL if none
static mb_tenant_t *
s_field_tenant (mb_server_t *server, mb_request_t *request, const char *key)
{
    char name [FIELD_MAX];
    if (!s_field (request, key, name, sizeof (name)))
        return NULL;
    return mb_model_tenant_named (server->model, name);
}

//  The user of tenant whose handle is in the request's handle field; NULL
static mb_user_t *
s_field_user (mb_tenant_t *tenant, mb_request_t *request)
{
    char handle [FIELD_MAX];
    if (!s_field (request, "handle", handle, sizeof (handle)))
        return NULL;
    return mb_tenant_user_named (tenant, handle);
}

//  --------------------------------------------------------------------------
//  login: tenant name, handle, password -> a new session token

//  Answers a request the hasher's queue has no room for
static void
s_reply_busy (mb_server_t *server, mb_request_t *request)
{
    proto_write_error (server->reply, request->rid, PROTO_ERR_RATE_LIMITED,
                       "too many password checks at once", 1000);
    stage_send_reply (server->broker, request->route, server->reply, NULL);
}

//  Hands the password check to a hasher worker; the reply is made by
//  mb_auth_password_done. An unknown handle is checked against a dummy hash,
//  so it takes as long as a wrong password.
void
mb_auth_login (mb_server_t *server, mb_request_t *request)
{
    mb_tenant_t *tenant = s_field_tenant (server, request, "tenant");
    if (!tenant) {
        mb_reply_error (server, request, PROTO_ERR_TENANT_NOT_FOUND, NULL);
        return;
    }
    mb_user_t *user = s_field_user (tenant, request);
    const char *password = "";
    size_t len = 0;
    proto_msg_str (request->req, "password", &password, &len);
    if (mb_hasher_check (server->hasher, request->route, request->req_frame, tenant->id,
                         user? user->id: 0, user? user->pwhash: s_dummy_hash, password, len))
        s_reply_busy (server, request);
}

//  --------------------------------------------------------------------------
//  A login's password was checked: issue the token, or refuse

static void
s_login_finish (mb_server_t *server, mb_request_t *request, mb_password_t *login)
{
    mb_tenant_t *tenant = mb_model_tenant (server->model, login->tenant);
    mb_user_t *user = tenant && login->user? mb_tenant_user (tenant, login->user): NULL;
    char token [TOKEN_MAX];
    if (!user || !login->match)
        mb_reply_error (server, request, PROTO_ERR_BAD_CREDENTIALS, NULL);
    else
    if (s_token_issue (server, request, tenant, user, false, token))
        mb_reply_error (server, request, PROTO_ERR_STORAGE_UNAVAILABLE, NULL);
    else {
        mb_reply_begin (server, request);
        proto_writer_kv_str (server->reply, "token", token);
        proto_writer_str (server->reply, "user");
        mb_write_user (server->reply, user);
        proto_writer_str (server->reply, "tenant");
        mb_write_tenant (server->reply, tenant);
        mb_reply_send (server, request, mb_ctl_set (server, tenant->id, user->id, false));
        sodium_memzero (token, sizeof (token));
        zsys_info ("membership: user %" PRIu64 "/%" PRIu64 " logged in", tenant->id, user->id);
    }
}

//  --------------------------------------------------------------------------
//  auth: a user, bot or admin token -> the session is that principal's

void
mb_auth_auth (mb_server_t *server, mb_request_t *request)
{
    uint8_t hash [MB_HASH_SIZE] = { 0 };
    mb_token_t *token = s_request_token (request, hash)?
                        mb_model_token (server->model, hash): NULL;
    mb_tenant_t *tenant = token? mb_model_tenant (server->model, token->tenant): NULL;
    mb_user_t *user = tenant? mb_tenant_user (tenant, token->user): NULL;
    if (token == NULL && s_is_admin_hash (server, hash)) {
        mb_reply_begin (server, request);
        proto_writer_kv_bool (server->reply, "admin", true);
        mb_reply_send (server, request, mb_ctl_set (server, 0, 0, true));
    }
    else
    if (!user)
        mb_reply_error (server, request, PROTO_ERR_BAD_CREDENTIALS, NULL);
    else {
        mb_reply_begin (server, request);
        proto_writer_str (server->reply, "user");
        mb_write_user (server->reply, user);
        proto_writer_str (server->reply, "tenant");
        mb_write_tenant (server->reply, tenant);
        mb_reply_send (server, request, mb_ctl_set (server, tenant->id, user->id, false));
    }
}

//  --------------------------------------------------------------------------
//  logout: revoke the given token if it is this user's; forget the session

void
mb_auth_logout (mb_server_t *server, mb_request_t *request)
{
    uint8_t hash [MB_HASH_SIZE];
    mb_token_t *token = s_request_token (request, hash)?
                        mb_model_token (server->model, hash): NULL;
    if (token && token->tenant == request->tenant->id && token->user == request->user->id) {
        mb_store_delete_token (server->batch, hash);
        if (mb_server_commit (server)) {
            mb_reply_error (server, request, PROTO_ERR_STORAGE_UNAVAILABLE, NULL);
            return;
        }
        mb_model_token_remove (server->model, hash);
    }
    proto_writer_reset (server->ctl);
    proto_writer_map_begin (server->ctl);
    proto_writer_kv_bool (server->ctl, "drop", true);
    proto_writer_map_end (server->ctl);
    mb_reply_empty (server, request, server->ctl);
}

//  --------------------------------------------------------------------------
//  tenant_create: name -> {tenant}

//  Saves a new tenant: its column family, then one batch with its record,
//  its name index and the counters. 0, or -1.
static int
s_tenant_save (mb_server_t *server, mb_tenant_t *tenant)
{
    char *err = NULL;
    if (store_tenant_ensure (server->store, tenant->id, &err)) {
        zsys_error ("membership: cannot create tenant %" PRIu64 ": %s", tenant->id, err);
        free (err);
        return -1;
    }
    mb_store_put_tenant (server->batch, tenant);
    mb_store_put_tenant_counter (server->batch, tenant->id);
    mb_store_put_counters (server->batch, tenant->id, 0, 0);
    return mb_server_commit (server);
}

void
mb_auth_tenant_create (mb_server_t *server, mb_request_t *request)
{
    char copy [MEMBERSHIP_NAME_MAX + 1];
    if (!mb_request_name (server, request, copy))
        return;
    if (mb_model_tenant_named (server->model, copy))
        mb_reply_error (server, request, PROTO_ERR_NAME_TAKEN, NULL);
    else
    if (server->model->last_tenant >= MB_TENANT_MAX)
        mb_reply_error (server, request, PROTO_ERR_INTERNAL, "no tenant ids left");
    else {
        mb_tenant_t *tenant = mb_tenant_new (server->model->last_tenant + 1, copy);
        if (s_tenant_save (server, tenant))
            mb_reply_error (server, request, PROTO_ERR_STORAGE_UNAVAILABLE, NULL);
        else {
            mb_reply_begin (server, request);
            proto_writer_str (server->reply, "tenant");
            mb_write_tenant (server->reply, tenant);
            mb_reply_send (server, request, NULL);
            zsys_info ("membership: tenant %" PRIu64 " created", tenant->id);
            mb_model_tenant_add (server->model, &tenant);
        }
        mb_tenant_destroy (&tenant);
    }
}

//  --------------------------------------------------------------------------
//  tenant_list -> {tenants: [{id, name}]}

void
mb_auth_tenant_list (mb_server_t *server, mb_request_t *request)
{
    mb_reply_begin (server, request);
    proto_writer_str (server->reply, "tenants");
    proto_writer_array_begin (server->reply);
    for (uint64_t id = 1; id <= server->model->last_tenant; id++) {
        mb_tenant_t *tenant = mb_model_tenant (server->model, id);
        if (tenant)
            mb_write_tenant (server->reply, tenant);
    }
    proto_writer_array_end (server->reply);
    mb_reply_send (server, request, NULL);
}

//  --------------------------------------------------------------------------
//  user_create: tenant, handle, display_name, password, bot? -> {user}

//  Checks handle, display name and password; NULL if fine, else why not
static const char *
s_user_args_check (mb_request_t *request)
{
    const char *handle, *display, *password;
    size_t handle_len, display_len, password_len;
    proto_msg_str (request->req, "handle", &handle, &handle_len);
    proto_msg_str (request->req, "display_name", &display, &display_len);
    proto_msg_str (request->req, "password", &password, &password_len);
    size_t display_chars = proto_utf8_chars (display, display_len);
    if (!mb_name_valid (handle, handle_len, MEMBERSHIP_HANDLE_MAX, "._-"))
        return "handle: 1 to 40 of a-z, 0-9, ., - and _";
    if (display_chars == 0 || display_chars > MEMBERSHIP_DISPLAY_MAX
    ||  memchr (display, 0, display_len))
        return "display_name: 1 to 80 characters";
    if (password_len < MEMBERSHIP_PASSWORD_MIN || password_len > MEMBERSHIP_PASSWORD_MAX)
        return "password: 8 to 256 bytes";
    return NULL;
}

//  A new user of tenant from the request (checked), with its password's hash
static mb_user_t *
s_user_from_request (mb_tenant_t *tenant, mb_request_t *request, const char *pwhash)
{
    char handle [MEMBERSHIP_HANDLE_MAX + 1], display [FIELD_MAX];
    bool bot = false;
    s_field (request, "handle", handle, sizeof (handle));
    s_field (request, "display_name", display, sizeof (display));
    proto_msg_bool (request->req, "bot", &bot);
    return mb_user_new (mb_tenant_user_id (tenant, tenant->last_user + 1), handle,
                        display, bot, pwhash);
}

//  Saves a new user with the tenant's counters in one batch; 0 or -1
static int
s_user_save (mb_server_t *server, mb_tenant_t *tenant, mb_user_t *user)
{
    mb_store_put_user (server->batch, tenant->id, user);
    mb_store_put_counters (server->batch, tenant->id, tenant->last_user + 1,
                           tenant->last_channel);
    return mb_server_commit (server);
}

//  True if tenant can take the request's new user now, else answers why not
static bool
s_user_room (mb_server_t *server, mb_tenant_t *tenant, mb_request_t *request)
{
    if (s_field_user (tenant, request))
        mb_reply_error (server, request, PROTO_ERR_NAME_TAKEN, NULL);
    else
    if (tenant->last_user >= MB_ID_MAX)
        mb_reply_error (server, request, PROTO_ERR_INTERNAL, "no user ids left");
    else
        return true;
    return false;
}

//  Checks the request, then hands the password to a hasher worker; the user
//  is made by s_user_create_finish, which checks the handle again
void
mb_auth_user_create (mb_server_t *server, mb_request_t *request)
{
    const char *why = s_user_args_check (request);
    mb_tenant_t *tenant = why? NULL: s_field_tenant (server, request, "tenant");
    if (why)
        mb_reply_error (server, request, PROTO_ERR_INVALID_ARGS, why);
    else
    if (!tenant)
        mb_reply_error (server, request, PROTO_ERR_TENANT_NOT_FOUND, NULL);
    else
    if (s_user_room (server, tenant, request)) {
        const char *password;
        size_t password_len;
        proto_msg_str (request->req, "password", &password, &password_len);
        if (mb_hasher_hash (server->hasher, request->route, request->req_frame,
                            tenant->id, password, password_len))
            s_reply_busy (server, request);
    }
}

//  A new user's password was hashed: save the user, unless its handle was
//  taken meanwhile
static void
s_user_create_finish (mb_server_t *server, mb_request_t *request, mb_password_t *hashed)
{
    mb_tenant_t *tenant = mb_model_tenant (server->model, hashed->tenant);
    if (!tenant) {
        mb_reply_error (server, request, PROTO_ERR_TENANT_NOT_FOUND, NULL);
        return;
    }
    if (!s_user_room (server, tenant, request))
        return;                         //  answered: the handle was taken meanwhile
    if (!hashed->pwhash) {
        zsys_error ("membership: crypto_pwhash_str failed (out of memory?)");
        mb_reply_error (server, request, PROTO_ERR_INTERNAL, "cannot hash the password");
        return;
    }
    mb_user_t *user = s_user_from_request (tenant, request, hashed->pwhash);
    if (s_user_save (server, tenant, user))
        mb_reply_error (server, request, PROTO_ERR_STORAGE_UNAVAILABLE, NULL);
    else {
        mb_reply_begin (server, request);
        proto_writer_str (server->reply, "user");
        mb_write_user (server->reply, user);
        mb_reply_send (server, request, NULL);
        mb_tenant_user_add (tenant, &user);
    }
    mb_user_destroy (&user);
}

//  --------------------------------------------------------------------------
//  A hasher worker is done: finish the login or the user_create it was for

void
mb_auth_password_done (mb_server_t *server, mb_password_t *done)
{
    const char *op = done->hashing? "user_create": "login";
    mb_request_t request = { .route = &done->route, .req_frame = &done->req_frame,
                             .op = op, .op_len = strlen (op) };
    request.req = proto_msg_decode (done->req_frame.data, done->req_frame.size, NULL);
    if (request.req)
        proto_msg_u64 (request.req, "rid", &request.rid);
    request.now = stage_now_ms ();
    if (!request.req)
        mb_reply_error (server, &request, done->hashing? PROTO_ERR_INTERNAL:
                                          PROTO_ERR_BAD_CREDENTIALS, NULL);
    else
    if (done->hashing)
        s_user_create_finish (server, &request, done);
    else
        s_login_finish (server, &request, done);
    proto_msg_destroy (&request.req);
}

//  --------------------------------------------------------------------------
//  token_create: tenant, handle -> {token}, a new API token for that user

void
mb_auth_token_create (mb_server_t *server, mb_request_t *request)
{
    mb_tenant_t *tenant = s_field_tenant (server, request, "tenant");
    mb_user_t *user = tenant? s_field_user (tenant, request): NULL;
    char token [TOKEN_MAX];
    if (!tenant)
        mb_reply_error (server, request, PROTO_ERR_TENANT_NOT_FOUND, NULL);
    else
    if (!user)
        mb_reply_error (server, request, PROTO_ERR_USER_NOT_FOUND, NULL);
    else
    if (s_token_issue (server, request, tenant, user, true, token))
        mb_reply_error (server, request, PROTO_ERR_STORAGE_UNAVAILABLE, NULL);
    else {
        mb_reply_begin (server, request);
        proto_writer_kv_str (server->reply, "token", token);
        mb_reply_send (server, request, NULL);
        sodium_memzero (token, sizeof (token));
        zsys_info ("membership: API token issued for user %" PRIu64 "/%" PRIu64,
                   tenant->id, user->id);
    }
}
