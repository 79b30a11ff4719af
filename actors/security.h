/*  =========================================================================
    security - CURVE on tcp links: integrators, edges and stages

    With --curve-dir DIR, every tcp socket of Chorus speaks CURVE:
        DIR/server.cert, DIR/server.cert_secret   the deployment's certificate
                                                  (made on first start)
        DIR/clients/NAME.cert                     public certificates allowed
                                                  to connect (the deployment's
                                                  own is copied there)
    A zauth actor, started before any socket binds, checks each CURVE
    handshake against DIR/clients: an unknown key is refused (ZAP 400).
    Without zauth libzmq would let any key in, so security_start must
    succeed before the stages start.
    =========================================================================
*/
#ifndef CHORUS_SECURITY_H_INCLUDED
#define CHORUS_SECURITY_H_INCLUDED

#include <czmq.h>

//  Make the certificate if missing and start zauth on DIR/clients.
//  Returns the zauth actor (destroy it after the stages), or NULL.
zactor_t *
    security_start (const char *dir, bool verbose);

//  Make a socket a CURVE server with the deployment's certificate. 0 or -1.
int
    security_apply_server (zsock_t *sock, const char *dir);

//  Make a socket a CURVE client of the deployment, authenticating with the
//  deployment's certificate (stages, the in-process edge). 0 or -1.
int
    security_apply_client (zsock_t *sock, const char *dir);

#endif
