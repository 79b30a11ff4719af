/*  =========================================================================
    edge_buf - a reference-counted frame, shared by every connection it goes to

    All links live in the edge's one service thread, so the count is a
    plain integer.
    =========================================================================
*/
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include "edge_buf.h"

struct _edge_buf_t {
    size_t links;               //  references held by queues and callers
    uint8_t *block;             //  malloc'd: headroom, then the text
    size_t size;                //  bytes of text after the headroom
};

//  --------------------------------------------------------------------------
//  A new buffer taking over the text of out

edge_buf_t *
edge_buf_new (json_out_t *out)
{
    assert (out->head == EDGE_BUF_HEADROOM);
    if (out->failed) {
        json_out_free (out);
        return NULL;
    }
    if (!out->data)                     //  empty text: make the block anyway
        json_out_append (out, "", 0);
    edge_buf_t *self = (edge_buf_t *) calloc (1, sizeof (edge_buf_t));
    if (!self || out->failed) {
        free (self);
        json_out_free (out);
        return NULL;
    }
    self->links = 1;
    self->block = out->data;
    self->size = out->size;
    json_out_init (out, EDGE_BUF_HEADROOM);
    return self;
}

//  --------------------------------------------------------------------------
//  A new buffer with a copy of data

edge_buf_t *
edge_buf_new_copy (const void *data, size_t size)
{
    json_out_t out;
    json_out_init (&out, EDGE_BUF_HEADROOM);
    json_out_append (&out, data, size);
    return edge_buf_new (&out);
}

//  --------------------------------------------------------------------------
//  Another link to the same buffer

edge_buf_t *
edge_buf_link (edge_buf_t *self)
{
    assert (self && self->links > 0);
    self->links++;
    return self;
}

//  --------------------------------------------------------------------------
//  Drop a link; the last one frees the buffer

void
edge_buf_unlink (edge_buf_t **self_p)
{
    assert (self_p);
    edge_buf_t *self = *self_p;
    if (self) {
        assert (self->links > 0);
        if (--self->links == 0) {
            free (self->block);
            free (self);
        }
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  The text; EDGE_BUF_HEADROOM bytes before it may be written

uint8_t *
edge_buf_data (edge_buf_t *self)
{
    return self->block + EDGE_BUF_HEADROOM;
}

//  --------------------------------------------------------------------------
//  Bytes of text

size_t
edge_buf_size (edge_buf_t *self)
{
    return self->size;
}

//  --------------------------------------------------------------------------
//  How many links the buffer has

size_t
edge_buf_links (edge_buf_t *self)
{
    return self->links;
}
