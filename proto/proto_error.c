/*  =========================================================================
    proto_error - names, texts and retry hints of Chorus error codes

    The table below is the single source of truth for error codes: replies,
    docs/errors.md and the error-table test are all checked against it.
    =========================================================================
*/
#include "chorus/proto.h"

typedef struct {
    const char *name;       //  name on the wire
    const char *text;       //  default message for humans
    bool retriable;         //  may the client retry the same request?
} s_error_row_t;

static const s_error_row_t s_errors [PROTO_ERR_COUNT] = {
    [PROTO_OK] = { "ok", "success", false },
    [PROTO_ERR_INVALID_MESSAGE] = { "invalid_message", "request is not a valid msgpack map within the limits", false },
    [PROTO_ERR_UNKNOWN_OP] = { "unknown_op", "unknown operation", false },
    [PROTO_ERR_INVALID_ARGS] = { "invalid_args", "a field is missing, of the wrong type or out of range", false },
    [PROTO_ERR_INVALID_UTF8] = { "invalid_utf8", "a string is not valid UTF-8", false },
    [PROTO_ERR_NOT_AUTHED] = { "not_authed", "authenticate first", false },
    [PROTO_ERR_BAD_CREDENTIALS] = { "bad_credentials", "wrong token, handle or password", false },
    [PROTO_ERR_FORBIDDEN] = { "forbidden", "this credential may not do that", false },
    [PROTO_ERR_TENANT_NOT_FOUND] = { "tenant_not_found", "no such workspace", false },
    [PROTO_ERR_USER_NOT_FOUND] = { "user_not_found", "no such user", false },
    [PROTO_ERR_CHANNEL_NOT_FOUND] = { "channel_not_found", "no such channel", false },
    [PROTO_ERR_MESSAGE_NOT_FOUND] = { "message_not_found", "no such message", false },
    [PROTO_ERR_NOT_IN_CHANNEL] = { "not_in_channel", "join the channel first", false },
    [PROTO_ERR_NAME_TAKEN] = { "name_taken", "that name is already in use", false },
    [PROTO_ERR_NO_TEXT] = { "no_text", "the message body is empty", false },
    [PROTO_ERR_MSG_TOO_LONG] = { "msg_too_long", "the message body is over 40000 characters", false },
    [PROTO_ERR_IDEMPOTENCY_CONFLICT] = { "idempotency_conflict", "client_msg_id was already used for another message", false },
    [PROTO_ERR_NOT_AUTHOR] = { "not_author", "only the author may change this message", false },
    [PROTO_ERR_RATE_LIMITED] = { "rate_limited", "too many requests; retry after retry_after_ms", true },
    [PROTO_ERR_STORAGE_UNAVAILABLE] = { "storage_unavailable", "not saved; retry with the same client_msg_id", true },
    [PROTO_ERR_STAGE_UNAVAILABLE] = { "stage_unavailable", "a server stage is unreachable; retry", true },
    [PROTO_ERR_INTERNAL] = { "internal", "internal error; nothing was changed", false },
};

//  --------------------------------------------------------------------------
//  Name of an error code as it goes on the wire

const char *
proto_error_name (proto_error_t code)
{
    if (code < 0 || code >= PROTO_ERR_COUNT)
        return "internal";
    return s_errors [code].name;
}

//  --------------------------------------------------------------------------
//  Default human-readable text of an error code

const char *
proto_error_text (proto_error_t code)
{
    if (code < 0 || code >= PROTO_ERR_COUNT)
        return s_errors [PROTO_ERR_INTERNAL].text;
    return s_errors [code].text;
}

//  --------------------------------------------------------------------------
//  True if a client should retry the same request (same client_msg_id)

bool
proto_error_retriable (proto_error_t code)
{
    if (code < 0 || code >= PROTO_ERR_COUNT)
        return false;
    return s_errors [code].retriable;
}
