/*  =========================================================================
    test_fanout_table - the (tenant, user) table of fan-out
    =========================================================================
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <cmocka.h>
#include "fanout_table.h"

//  The plain usage example
static void
test_table_usage (void **state)
{
    (void) state;
    int alice = 1, bob = 2;
    fanout_table_t *table = fanout_table_new ();
    assert_int_equal (fanout_table_insert (table, 7, 42, &alice), 0);
    assert_int_equal (fanout_table_insert (table, 8, 42, &bob), 0);
    assert_ptr_equal (fanout_table_lookup (table, 7, 42), &alice);
    assert_ptr_equal (fanout_table_lookup (table, 8, 42), &bob);
    assert_null (fanout_table_lookup (table, 42, 7));
    assert_int_equal (fanout_table_size (table), 2);
    assert_ptr_equal (fanout_table_delete (table, 7, 42), &alice);
    assert_null (fanout_table_lookup (table, 7, 42));
    assert_null (fanout_table_delete (table, 7, 42));
    assert_int_equal (fanout_table_size (table), 1);
    fanout_table_destroy (&table);
    assert_null (table);
    fanout_table_destroy (&table);      //  idempotent
}

static void
test_table_rejects_duplicate (void **state)
{
    (void) state;
    int one = 1, two = 2;
    fanout_table_t *table = fanout_table_new ();
    assert_int_equal (fanout_table_insert (table, 1, 1, &one), 0);
    assert_int_equal (fanout_table_insert (table, 1, 1, &two), -1);
    assert_ptr_equal (fanout_table_lookup (table, 1, 1), &one);
    assert_int_equal (fanout_table_size (table), 1);
    fanout_table_destroy (&table);
}

//  The item stored for key i: an odd fake pointer, never dereferenced
static void *
s_item (uint64_t i)
{
    return (void *) (uintptr_t) (i * 2 + 1);
}

//  Many keys through growth and deletions, against a plain array model
static void
test_table_against_model (void **state)
{
    (void) state;
    enum { KEYS = 5000 };
    static bool present [KEYS];
    fanout_table_t *table = fanout_table_new ();
    srand (1);
    size_t size = 0;
    for (int round = 0; round < 200000; round++) {
        uint64_t i = (uint64_t) rand () % KEYS;
        uint64_t tenant = i % 3, user = i / 3 + 1;
        if (rand () % 3) {
            int rc = fanout_table_insert (table, tenant, user, s_item (i));
            assert_int_equal (rc, present [i]? -1: 0);
            if (!present [i])
                size++;
            present [i] = true;
        }
        else {
            void *item = fanout_table_delete (table, tenant, user);
            assert_ptr_equal (item, present [i]? s_item (i): NULL);
            if (present [i])
                size--;
            present [i] = false;
        }
        assert_int_equal (fanout_table_size (table), size);
    }
    for (uint64_t i = 0; i < KEYS; i++)
        assert_ptr_equal (fanout_table_lookup (table, i % 3, i / 3 + 1),
                          present [i]? s_item (i): NULL);
    fanout_table_destroy (&table);
}

static void
s_count (void *item, void *arg)
{
    (void) item;
    (*(size_t *) arg)++;
}

static void
test_table_purge (void **state)
{
    (void) state;
    fanout_table_t *table = fanout_table_new ();
    for (uint64_t i = 0; i < 1000; i++)
        fanout_table_insert (table, 9, i, s_item (i));
    size_t seen = 0;
    fanout_table_purge (table, s_count, &seen);
    assert_int_equal (seen, 1000);
    assert_int_equal (fanout_table_size (table), 0);
    assert_null (fanout_table_lookup (table, 9, 5));
    assert_int_equal (fanout_table_insert (table, 9, 5, s_item (5)), 0);
    assert_ptr_equal (fanout_table_lookup (table, 9, 5), s_item (5));
    fanout_table_destroy (&table);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_table_usage),
        cmocka_unit_test (test_table_rejects_duplicate),
        cmocka_unit_test (test_table_against_model),
        cmocka_unit_test (test_table_purge),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
