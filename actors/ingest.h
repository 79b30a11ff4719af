/*  =========================================================================
    ingest - the first stage: bounded decode, schema, sizes, auth, rate limits

    A CZMQ actor. Takes [route][ctx][req] from the broker; answers what is
    malformed, unauthenticated or too fast; passes the rest to membership.

        zactor_t *ingest = zactor_new (ingest_actor, (void *) &config);
    =========================================================================
*/
#ifndef CHORUS_INGEST_H_INCLUDED
#define CHORUS_INGEST_H_INCLUDED

#include "stage.h"

void
    ingest_actor (zsock_t *pipe, void *args);

//  Check one request against the schema of its op. Returns PROTO_OK or the
//  error to answer, with a static message in *why. Pure: used by the fuzzer.
proto_error_t
    ingest_check (proto_msg_t *request, const char **why);

//  True if the op may be used by a session that has not authenticated
bool
    ingest_op_is_public (const char *op, size_t len);

#endif
