/*  =========================================================================
    broker - the front door: routes peers' requests in, replies and events out

    A CZMQ actor. Binds a ROUTER for peers (integrators, edges) and an inbox
    for replies and deliveries; keeps the session table (peer identity + sid
    -> principal) and tells fan-out which sessions are up.

        zactor_t *broker = zactor_new (broker_actor, (void *) &config);
        ...
        zactor_destroy (&broker);
    =========================================================================
*/
#ifndef CHORUS_BROKER_H_INCLUDED
#define CHORUS_BROKER_H_INCLUDED

#include "stage.h"

void
    broker_actor (zsock_t *pipe, void *args);

#endif
