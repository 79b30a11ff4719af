/*  =========================================================================
    persistence - the stage that saves: sequence numbers, group commit, acks

    A CZMQ actor that owns the messages store (<data_dir>/messages). It
    drains every waiting send into one batch, writes it with one synced WAL
    write, and only then acks each send and hands its event to fan-out. It
    also serves history, sync, unread counts and read positions.

        zactor_t *persistence = zactor_new (persistence_actor, (void *) &config);
    =========================================================================
*/
#ifndef CHORUS_PERSISTENCE_H_INCLUDED
#define CHORUS_PERSISTENCE_H_INCLUDED

#include "stage.h"

void
    persistence_actor (zsock_t *pipe, void *args);

#endif
