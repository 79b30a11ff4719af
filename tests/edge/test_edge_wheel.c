/*  =========================================================================
    test_edge_wheel - the edge's timing wheel: order, moves, laps, and no
    allocation per schedule

    Linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc (see
    tests/CMakeLists.txt) so the test counts the wheel's allocations.
    Build alone (from the repository root):
    gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g \
        -fsanitize=address,undefined -Iedge \
        -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc \
        tests/edge/test_edge_wheel.c edge/edge_wheel.c -lcmocka
    =========================================================================
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "edge_wheel.h"

//  Allocations made since the count was last reset
static size_t s_allocations;

void *__real_malloc (size_t size);
void *__real_calloc (size_t count, size_t size);
void *__real_realloc (void *ptr, size_t size);

void *
__wrap_malloc (size_t size)
{
    s_allocations++;
    return __real_malloc (size);
}

void *
__wrap_calloc (size_t count, size_t size)
{
    s_allocations++;
    return __real_calloc (count, size);
}

void *
__wrap_realloc (void *ptr, size_t size)
{
    s_allocations++;
    return __real_realloc (ptr, size);
}

//  An owner with an embedded link, as edge_conn_t has
typedef struct {
    int id;                     //  which item
    int64_t at;                 //  when it was scheduled for
    edge_wheel_link_t timer;    //  its link in the wheel
} item_t;

//  The owner of the next expired link, or NULL
static item_t *
s_expire (edge_wheel_t *wheel, int64_t now)
{
    edge_wheel_link_t *link = edge_wheel_expire (wheel, now);
    return link? edge_wheel_owner (link, item_t, timer): NULL;
}

//  --------------------------------------------------------------------------
//  The plain usage: schedule three, take them out as time passes

static void
test_usage (void **state)
{
    (void) state;
    s_allocations = 0;
    edge_wheel_t *wheel = edge_wheel_new (1000, 50000);
    assert_int_equal (s_allocations, 1);        //  the wheel, once
    item_t a = { .id = 1 }, b = { .id = 2 }, c = { .id = 3 };
    edge_wheel_add (wheel, &a.timer, 53000);
    edge_wheel_add (wheel, &b.timer, 51500);
    edge_wheel_add (wheel, &c.timer, 80000);
    assert_int_equal (edge_wheel_size (wheel), 3);
    assert_true (edge_wheel_scheduled (&a.timer));
    assert_int_equal (edge_wheel_next_due (wheel), 52000);     //  b's tick
    assert_int_equal (edge_wheel_when (wheel, &a.timer), 53000);

    assert_null (s_expire (wheel, 51999));      //  b is due at 51500: tick 52
    assert_ptr_equal (s_expire (wheel, 52000), &b);
    assert_false (edge_wheel_scheduled (&b.timer));
    assert_null (s_expire (wheel, 52999));
    assert_ptr_equal (s_expire (wheel, 60000), &a);
    assert_null (s_expire (wheel, 60000));
    assert_int_equal (edge_wheel_next_due (wheel), 80000);
    assert_ptr_equal (s_expire (wheel, 80000), &c);
    assert_int_equal (edge_wheel_size (wheel), 0);
    assert_int_equal (edge_wheel_next_due (wheel), -1);
    edge_wheel_destroy (&wheel);
    assert_null (wheel);
    edge_wheel_destroy (&wheel);                //  twice is fine
}

//  --------------------------------------------------------------------------
//  Remove and move: a removed link never comes out, a moved one comes out
//  at its new time, and removing twice is harmless

static void
test_remove_and_move (void **state)
{
    (void) state;
    edge_wheel_t *wheel = edge_wheel_new (100, 0);
    item_t a = { .id = 1 }, b = { .id = 2 }, c = { .id = 3 };
    edge_wheel_add (wheel, &a.timer, 500);
    edge_wheel_add (wheel, &b.timer, 500);
    edge_wheel_add (wheel, &c.timer, 500);
    edge_wheel_remove (wheel, &b.timer);
    edge_wheel_remove (wheel, &b.timer);
    assert_false (edge_wheel_scheduled (&b.timer));
    edge_wheel_add (wheel, &a.timer, 900);      //  moved later
    edge_wheel_add (wheel, &c.timer, 200);      //  moved earlier
    assert_int_equal (edge_wheel_size (wheel), 2);
    assert_ptr_equal (s_expire (wheel, 200), &c);
    assert_null (s_expire (wheel, 800));
    assert_ptr_equal (s_expire (wheel, 900), &a);
    assert_null (s_expire (wheel, 10000));
    assert_int_equal (edge_wheel_size (wheel), 0);
    edge_wheel_destroy (&wheel);
}

//  --------------------------------------------------------------------------
//  Links of the same tick come out in the order they were added; the
//  caller may remove one of them, or add more, while the tick is expiring

static void
test_changes_during_a_pass (void **state)
{
    (void) state;
    edge_wheel_t *wheel = edge_wheel_new (1000, 0);
    item_t items [4];
    for (int i = 0; i < 4; i++) {
        memset (&items [i], 0, sizeof (items [i]));
        items [i].id = i;
        edge_wheel_add (wheel, &items [i].timer, 3000);
    }
    assert_ptr_equal (s_expire (wheel, 3000), &items [0]);
    edge_wheel_remove (wheel, &items [2].timer);
    //  Due now, or in the past: the next tick, not this pass
    edge_wheel_add (wheel, &items [0].timer, 3000);
    assert_ptr_equal (s_expire (wheel, 3000), &items [1]);
    assert_ptr_equal (s_expire (wheel, 3000), &items [3]);
    assert_null (s_expire (wheel, 3999));
    assert_ptr_equal (s_expire (wheel, 4000), &items [0]);
    //  Before the wheel's start: the next tick too
    edge_wheel_add (wheel, &items [1].timer, -5);
    assert_ptr_equal (s_expire (wheel, 5000), &items [1]);
    edge_wheel_destroy (&wheel);
}

//  --------------------------------------------------------------------------
//  Links several laps ahead wait in their slot for their lap

static void
test_laps (void **state)
{
    (void) state;
    edge_wheel_t *wheel = edge_wheel_new (10, 0);
    int64_t lap = EDGE_WHEEL_SLOTS * 10;
    item_t near = { .id = 1 }, far = { .id = 2 }, farther = { .id = 3 };
    edge_wheel_add (wheel, &near.timer, 50);
    edge_wheel_add (wheel, &far.timer, 50 + lap);
    edge_wheel_add (wheel, &farther.timer, 50 + 3 * lap);
    assert_ptr_equal (s_expire (wheel, 50), &near);
    //  The pass is not over until expire says so: far and farther wait in it
    assert_int_equal (edge_wheel_next_due (wheel), 50);
    assert_null (s_expire (wheel, 50));
    assert_int_equal (edge_wheel_next_due (wheel), 50 + lap);
    assert_null (s_expire (wheel, 49 + lap));
    assert_ptr_equal (s_expire (wheel, 50 + lap), &far);
    assert_null (s_expire (wheel, 50 + lap));
    //  farther is two laps on: its slot's next turn comes early, never late
    assert_int_equal (edge_wheel_next_due (wheel), 50 + 2 * lap);
    assert_null (s_expire (wheel, 50 + 2 * lap));
    //  A long stall: everything due comes out, late but once
    assert_ptr_equal (s_expire (wheel, 100 * lap), &farther);
    assert_null (s_expire (wheel, 100 * lap));
    edge_wheel_destroy (&wheel);
}

//  --------------------------------------------------------------------------
//  Many links, scheduled and moved at random: each comes out once, in the
//  order of its tick, never early and at most a tick late; no schedule
//  allocates

#define S_MANY 100000

static void
test_many (void **state)
{
    (void) state;
    const int64_t tick = 250;
    item_t *items = (item_t *) calloc (S_MANY, sizeof (item_t));
    assert_non_null (items);
    edge_wheel_t *wheel = edge_wheel_new (tick, 1000);
    srand (7);

    s_allocations = 0;
    for (int i = 0; i < S_MANY; i++) {
        items [i].id = i;
        items [i].at = 1000 + rand () % 120000;
        edge_wheel_add (wheel, &items [i].timer, items [i].at);
    }
    for (int i = 0; i < S_MANY; i += 3) {   //  move a third, remove a ninth
        items [i].at = 1000 + rand () % 120000;
        edge_wheel_add (wheel, &items [i].timer, items [i].at);
        if (i % 9 == 0)
            edge_wheel_remove (wheel, &items [i].timer);
    }
    assert_int_equal (s_allocations, 0);

    size_t expected = edge_wheel_size (wheel);
    size_t seen = 0;
    int64_t last_due = 0;
    for (int64_t now = 1000; now <= 1000 + 120000 + tick; now += 100) {
        item_t *item;
        while ((item = s_expire (wheel, now))) {
            assert_true (item->at <= now);
            assert_true (now - item->at < tick + 100);
            int64_t due = (item->at + tick - 1) / tick;
            assert_true (due >= last_due);
            assert_true (item->id % 9 != 0);
            last_due = due;
            item->at = INT64_MAX;       //  seen
            seen++;
        }
    }
    assert_int_equal (s_allocations, 0);
    assert_int_equal (seen, expected);
    assert_int_equal (edge_wheel_size (wheel), 0);
    for (int i = 0; i < S_MANY; i++)
        assert_true (i % 9 == 0 || items [i].at == INT64_MAX);
    edge_wheel_destroy (&wheel);
    free (items);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_usage),
        cmocka_unit_test (test_remove_and_move),
        cmocka_unit_test (test_changes_during_a_pass),
        cmocka_unit_test (test_laps),
        cmocka_unit_test (test_many),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
