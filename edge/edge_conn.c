/*  =========================================================================
    edge_conn - one WebSocket connection: session, receive buffer, queue
    =========================================================================
*/
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include "edge_conn.h"

//  A receive buffer larger than this is freed between messages
#define S_RX_KEEP (16 * 1024)

//  --------------------------------------------------------------------------
//  A new connection state

edge_conn_t *
edge_conn_new (uint64_t sid, size_t max_msgs, size_t max_bytes)
{
    edge_conn_t *self = (edge_conn_t *) calloc (1, sizeof (edge_conn_t));
    assert (self);
    self->sid = sid;
    self->max_msgs = max_msgs? max_msgs: 1;
    self->max_bytes = max_bytes;
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy a connection state

void
edge_conn_destroy (edge_conn_t **self_p)
{
    assert (self_p);
    edge_conn_t *self = *self_p;
    if (self) {
        edge_conn_clear (self);
        free (self->queue);
        free (self->rx);
        free (self);
        *self_p = NULL;
    }
}

//  Grows the ring, keeping the order; false if out of memory
static bool
s_grow (edge_conn_t *self)
{
    size_t capacity = self->queue_capacity? self->queue_capacity * 2: 8;
    if (capacity > self->max_msgs)
        capacity = self->max_msgs;
    edge_buf_t **queue = (edge_buf_t **) malloc (capacity * sizeof (edge_buf_t *));
    if (!queue)
        return false;
    for (size_t i = 0; i < self->queue_count; i++)
        queue [i] = self->queue [(self->queue_head + i) % self->queue_capacity];
    free (self->queue);
    self->queue = queue;
    self->queue_head = 0;
    self->queue_capacity = capacity;
    return true;
}

//  --------------------------------------------------------------------------
//  Queue a link to buf, within the caps

int
edge_conn_push (edge_conn_t *self, edge_buf_t *buf)
{
    size_t size = edge_buf_size (buf);
    if (self->queue_count >= self->max_msgs
    || (self->queue_count > 0 && self->queue_bytes + size > self->max_bytes))
        return -1;
    if (self->queue_count == self->queue_capacity && !s_grow (self))
        return -1;
    size_t tail = (self->queue_head + self->queue_count) % self->queue_capacity;
    self->queue [tail] = edge_buf_link (buf);
    self->queue_count++;
    self->queue_bytes += size;
    return 0;
}

//  --------------------------------------------------------------------------
//  The index-th queued frame, or NULL

edge_buf_t *
edge_conn_peek (edge_conn_t *self, size_t index)
{
    if (index >= self->queue_count)
        return NULL;
    return self->queue [(self->queue_head + index) % self->queue_capacity];
}

//  --------------------------------------------------------------------------
//  Drop the oldest queued frame

void
edge_conn_pop (edge_conn_t *self)
{
    if (self->queue_count == 0)
        return;
    edge_buf_t **slot = &self->queue [self->queue_head];
    self->queue_bytes -= edge_buf_size (*slot);
    edge_buf_unlink (slot);
    self->queue_head = (self->queue_head + 1) % self->queue_capacity;
    self->queue_count--;
}

//  --------------------------------------------------------------------------
//  Drop every queued frame

void
edge_conn_clear (edge_conn_t *self)
{
    while (self->queue_count)
        edge_conn_pop (self);
}

//  --------------------------------------------------------------------------
//  Add received bytes to the message being gathered

int
edge_conn_rx_append (edge_conn_t *self, const void *data, size_t size, size_t max)
{
    if (size > max || self->rx_size > max - size)
        return -1;
    if (self->rx_size + size > self->rx_capacity) {
        size_t capacity = self->rx_capacity? self->rx_capacity: 1024;
        while (capacity < self->rx_size + size)
            capacity *= 2;
        if (capacity > max)
            capacity = max;
        uint8_t *rx = (uint8_t *) realloc (self->rx, capacity);
        if (!rx)
            return -1;
        self->rx = rx;
        self->rx_capacity = capacity;
    }
    if (size)
        memcpy (self->rx + self->rx_size, data, size);
    self->rx_size += size;
    return 0;
}

//  --------------------------------------------------------------------------
//  Forget the message being gathered

void
edge_conn_rx_reset (edge_conn_t *self)
{
    self->rx_size = 0;
    self->rx_active = false;
    self->rx_binary = false;
    self->rx_discarding = false;
    self->rx_discarded = 0;
    if (self->rx_capacity > S_RX_KEEP) {
        free (self->rx);
        self->rx = NULL;
        self->rx_capacity = 0;
    }
}
