/*  =========================================================================
    fanout - delivers each event to the online sessions of its recipients

    A CZMQ actor. Learns from the broker which sessions are up ("UP"/"DN"),
    takes events from persistence and membership ("EV"), decides per
    recipient whether the event should notify, and sends the event bytes,
    encoded once, to each peer with the list of that peer's sessions.

        zactor_t *fanout = zactor_new (fanout_actor, (void *) &config);
    =========================================================================
*/
#ifndef CHORUS_FANOUT_H_INCLUDED
#define CHORUS_FANOUT_H_INCLUDED

#include "stage.h"

void
    fanout_actor (zsock_t *pipe, void *args);

//  True if an event for this recipient should notify: not the author, not
//  muted, and a DM or group DM, a mention of the user, or notify_always.
bool
    fanout_should_notify (const char *ctype, size_t ctype_len, uint64_t user,
                          uint64_t author, uint64_t flags, bool mentioned);

#endif
