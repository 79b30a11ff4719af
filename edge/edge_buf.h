/*  =========================================================================
    edge_buf - a reference-counted frame, shared by every connection it goes to

    An event for a thousand connections is written as JSON once, into one
    edge_buf, and each connection's queue takes a link to it. The bytes keep
    EDGE_BUF_HEADROOM free bytes in front, where the WebSocket frame header
    is written at send time (the same header for every connection, so
    sharing the bytes is safe in the one service thread).
    =========================================================================
*/
#ifndef CHORUS_EDGE_BUF_H_INCLUDED
#define CHORUS_EDGE_BUF_H_INCLUDED

#include <stddef.h>
#include <stdint.h>
#include "json.h"

//  Bytes kept free before the text; at least LWS_PRE (checked in edge.c)
#define EDGE_BUF_HEADROOM 16

typedef struct _edge_buf_t edge_buf_t;

//  A new buffer holding the text of out, which must have been started with
//  EDGE_BUF_HEADROOM of headroom. Takes out's memory; out is left empty.
//  Returns NULL if out->failed (out is then freed).
edge_buf_t *
    edge_buf_new (json_out_t *out);
//  A new buffer with a copy of data[0..size)
edge_buf_t *
    edge_buf_new_copy (const void *data, size_t size);
//  Another link to the same buffer
edge_buf_t *
    edge_buf_link (edge_buf_t *self);
//  Drop a link; frees the buffer with the last one. Nulls the reference.
void
    edge_buf_unlink (edge_buf_t **self_p);
//  The text; EDGE_BUF_HEADROOM bytes before it may be written
uint8_t *
    edge_buf_data (edge_buf_t *self);
//  Bytes of text
size_t
    edge_buf_size (edge_buf_t *self);
//  How many links the buffer has
size_t
    edge_buf_links (edge_buf_t *self);

#endif
