/*  =========================================================================
    test_store - unit tests for storage/store.{h,c} (cmocka)

    Each test runs in a fresh temporary directory (mkdtemp under /tmp) that
    teardown removes. Build with -DCHORUS_TESTING (for both this file and
    store.c) to also run the test-hook failure test; without it that test is
    skipped. The binary re-executes itself ("--crash-child <dir>") to test
    recovery after a process that is killed without closing the store.
    =========================================================================
*/

#ifndef _GNU_SOURCE
#   define _GNU_SOURCE
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>

#include "store.h"

extern char **environ;

//  Per-test state: the temporary directory and the database path inside it
typedef struct {
    char root [64];                     //  mkdtemp directory, removed at teardown
    char path [128];                    //  Database directory (nested, not created)
} fixture_t;


//  --------------------------------------------------------------------------
//  Helpers

static int
s_rm_entry (const char *path, const struct stat *info, int flag, struct FTW *ftw)
{
    (void) info; (void) flag; (void) ftw;
    return remove (path);
}

static int
s_setup (void **state)
{
    fixture_t *fixture = calloc (1, sizeof (fixture_t));
    assert_non_null (fixture);
    strcpy (fixture->root, "/tmp/test_store.XXXXXX");
    assert_non_null (mkdtemp (fixture->root));
    //  Nested path: store_new must mkdir -p it
    snprintf (fixture->path, sizeof (fixture->path), "%s/data/db", fixture->root);
    *state = fixture;
    return 0;
}

static int
s_teardown (void **state)
{
    fixture_t *fixture = *state;
    nftw (fixture->root, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free (fixture);
    return 0;
}

//  Open a store and assert success
static store_t *
s_open (const char *path)
{
    char *err = NULL;
    store_t *store = store_new (path, &err);
    if (!store)
        fail_msg ("store_new (%s): %s", path, err ? err : "(no message)");
    assert_null (err);
    return store;
}

//  Put one key/value (strings) into a tenant, assert success
static void
s_put (store_t *store, uint64_t tenant, const char *key, const char *value, bool sync)
{
    store_batch_t *batch = store_batch_new ();
    store_batch_put (batch, tenant, key, strlen (key), value, strlen (value));
    char *err = NULL;
    int rc = store_write (store, batch, sync, &err);
    if (rc != 0)
        fail_msg ("store_write: %s", err ? err : "(no message)");
    store_batch_destroy (&batch);
}

//  Assert that tenant/key holds `expected` (NULL = not found)
static void
s_expect (store_t *store, uint64_t tenant, const char *key, const char *expected)
{
    char *value = NULL;
    size_t value_len = 0;
    char *err = NULL;
    int rc = store_get (store, tenant, key, strlen (key), &value, &value_len, &err);
    if (rc < 0)
        fail_msg ("store_get: %s", err ? err : "(no message)");
    if (expected) {
        assert_int_equal (rc, 1);
        assert_int_equal (value_len, strlen (expected));
        assert_memory_equal (value, expected, value_len);
        assert_int_equal (value [value_len], '\0');
    }
    else {
        assert_int_equal (rc, 0);
        assert_null (value);
        assert_int_equal (value_len, 0);
    }
    free (value);
}

//  Ensure a tenant, assert success
static void
s_ensure (store_t *store, uint64_t tenant)
{
    char *err = NULL;
    if (store_tenant_ensure (store, tenant, &err) != 0)
        fail_msg ("store_tenant_ensure (%" PRIu64 "): %s", tenant, err ? err : "?");
    assert_null (err);
}

//  Put keys be64(i) -> "v<i>" for i in [from, to) into a tenant, one batch
static void
s_put_range (store_t *store, uint64_t tenant, uint64_t from, uint64_t to)
{
    store_batch_t *batch = store_batch_new ();
    for (uint64_t i = from; i < to; i++) {
        uint8_t key [8];
        char value [32];
        store_u64_put (key, i);
        snprintf (value, sizeof (value), "v%" PRIu64, i);
        store_batch_put (batch, tenant, key, 8, value, strlen (value));
    }
    assert_int_equal (store_write (store, batch, false, NULL), 0);
    store_batch_destroy (&batch);
}

//  Assert the iterator is on key be64(expected) with value "v<expected>"
static void
s_iter_expect (store_iter_t *iter, uint64_t expected)
{
    assert_true (store_iter_valid (iter));
    size_t key_len, value_len;
    const uint8_t *key = store_iter_key (iter, &key_len);
    const char *value = store_iter_value (iter, &value_len);
    assert_int_equal (key_len, 8);
    assert_int_equal (store_u64_get (key), expected);
    char want [32];
    snprintf (want, sizeof (want), "v%" PRIu64, expected);
    assert_int_equal (value_len, strlen (want));
    assert_memory_equal (value, want, value_len);
}

//  Return the path of the newest WAL (*.log) in dir, malloc'd, or NULL
static char *
s_newest_wal (const char *dir)
{
    DIR *handle = opendir (dir);
    assert_non_null (handle);
    char *best = NULL;
    unsigned long best_number = 0;
    struct dirent *entry;
    while ((entry = readdir (handle)) != NULL) {
        size_t len = strlen (entry->d_name);
        if (len > 4 && strcmp (entry->d_name + len - 4, ".log") == 0) {
            unsigned long number = strtoul (entry->d_name, NULL, 10);
            if (!best || number > best_number) {
                free (best);
                if (asprintf (&best, "%s/%s", dir, entry->d_name) < 0)
                    best = NULL;
                best_number = number;
            }
        }
    }
    closedir (handle);
    return best;
}

//  Read a whole file into a malloc'd buffer
static char *
s_read_file (const char *path, size_t *size)
{
    FILE *file = fopen (path, "rb");
    assert_non_null (file);
    fseek (file, 0, SEEK_END);
    long length = ftell (file);
    assert_true (length >= 0);
    fseek (file, 0, SEEK_SET);
    char *data = malloc ((size_t) length + 1);
    assert_non_null (data);
    assert_int_equal (fread (data, 1, (size_t) length, file), (size_t) length);
    fclose (file);
    *size = (size_t) length;
    return data;
}

//  Write N small sync records "key-%04d" -> "value-%04d-payload" to global
static void
s_write_numbered (store_t *store, int count)
{
    for (int index = 0; index < count; index++) {
        char key [32], value [64];
        snprintf (key, sizeof (key), "key-%04d", index);
        snprintf (value, sizeof (value), "value-%04d-payload", index);
        s_put (store, STORE_GLOBAL, key, value, true);
    }
}


//  --------------------------------------------------------------------------
//  Big-endian helpers: round trip, and bytewise order == numeric order

static void
test_u64_ordering (void **state)
{
    (void) state;
    const uint64_t values [] = {
        0, 1, 2, 255, 256, 65535, 65536, 0xffffffffull, 0x100000000ull,
        0x0123456789abcdefull, 0x7fffffffffffffffull, 0x8000000000000000ull,
        UINT64_MAX - 1, UINT64_MAX
    };
    size_t count = sizeof (values) / sizeof (values [0]);
    uint8_t bytes [8];
    store_u64_put (bytes, 0x0102030405060708ull);
    const uint8_t expected [8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    assert_memory_equal (bytes, expected, 8);

    for (size_t i = 0; i < count; i++) {
        uint8_t a [8];
        store_u64_put (a, values [i]);
        assert_int_equal (store_u64_get (a), values [i]);
        for (size_t j = 0; j < count; j++) {
            uint8_t b [8];
            store_u64_put (b, values [j]);
            int cmp = memcmp (a, b, 8);
            if (values [i] < values [j])
                assert_true (cmp < 0);
            else
            if (values [i] > values [j])
                assert_true (cmp > 0);
            else
                assert_int_equal (cmp, 0);
        }
    }
    //  Pseudo-random pairs
    uint64_t x = 88172645463325252ull;
    for (int round = 0; round < 10000; round++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        uint64_t y = x * 2654435761ull;
        uint8_t a [8], b [8];
        store_u64_put (a, x);
        store_u64_put (b, y);
        int cmp = memcmp (a, b, 8);
        assert_true ((x < y) == (cmp < 0));
        assert_true ((x > y) == (cmp > 0));
    }
}


//  --------------------------------------------------------------------------
//  Open (mkdir -p), write, close, reopen: data and tenant CFs are kept

static void
test_open_close_reopen (void **state)
{
    fixture_t *fixture = *state;
    store_t *store = s_open (fixture->path);
    assert_false (store_failed (store));
    assert_true (store_tenant_exists (store, STORE_GLOBAL));
    assert_false (store_tenant_exists (store, 7));
    assert_int_equal (store_tenant_list (store, NULL, 0), 0);

    s_ensure (store, 7);
    s_ensure (store, 7);                  //  Idempotent
    s_ensure (store, STORE_GLOBAL);       //  Always exists
    assert_true (store_tenant_exists (store, 7));
    s_put (store, STORE_GLOBAL, "config", "global-value", false);
    s_put (store, 7, "room/1", "tenant-seven", false);
    store_destroy (&store);
    assert_null (store);
    store_destroy (&store);               //  Idempotent

    store = s_open (fixture->path);
    assert_true (store_tenant_exists (store, 7));
    uint64_t ids [4] = { 0 };
    assert_int_equal (store_tenant_list (store, ids, 4), 1);
    assert_int_equal (ids [0], 7);
    s_expect (store, STORE_GLOBAL, "config", "global-value");
    s_expect (store, 7, "room/1", "tenant-seven");
    s_expect (store, 7, "config", NULL);
    store_destroy (&store);

    //  Third open: still the same
    store = s_open (fixture->path);
    s_expect (store, 7, "room/1", "tenant-seven");
    store_destroy (&store);
}


//  --------------------------------------------------------------------------
//  Open errors: a regular file as path, an empty path, leftovers without
//  CURRENT

static void
test_open_errors (void **state)
{
    fixture_t *fixture = *state;
    char file_path [160];
    snprintf (file_path, sizeof (file_path), "%s/plain-file", fixture->root);
    FILE *file = fopen (file_path, "w");
    assert_non_null (file);
    fputs ("not a directory", file);
    fclose (file);

    char *err = NULL;
    store_t *store = store_new (file_path, &err);
    assert_null (store);
    assert_non_null (err);
    assert_non_null (strstr (err, file_path));
    free (err);

    err = NULL;
    store = store_new ("", &err);
    assert_null (store);
    assert_non_null (err);
    free (err);

    //  err = NULL is allowed
    assert_null (store_new (file_path, NULL));

    //  A database whose CURRENT file vanished is not silently recreated empty
    store = s_open (fixture->path);
    s_put (store, STORE_GLOBAL, "k", "v", true);
    store_destroy (&store);
    char current [200];
    snprintf (current, sizeof (current), "%s/CURRENT", fixture->path);
    assert_int_equal (unlink (current), 0);
    err = NULL;
    store = store_new (fixture->path, &err);
    assert_null (store);
    assert_non_null (err);
    assert_non_null (strstr (err, "CURRENT"));
    free (err);
}


//  --------------------------------------------------------------------------
//  Tenant isolation; a tenant that was never ensured

static void
test_tenant_isolation (void **state)
{
    fixture_t *fixture = *state;
    store_t *store = s_open (fixture->path);
    s_ensure (store, 1);
    s_ensure (store, 2);
    s_put (store, 1, "k", "one", false);
    s_put (store, 2, "k", "two", false);
    s_put (store, STORE_GLOBAL, "k", "global", false);
    s_expect (store, 1, "k", "one");
    s_expect (store, 2, "k", "two");
    s_expect (store, STORE_GLOBAL, "k", "global");

    //  Delete in tenant 1 does not touch tenant 2 or global
    store_batch_t *batch = store_batch_new ();
    store_batch_delete (batch, 1, "k", 1);
    assert_int_equal (store_write (store, batch, false, NULL), 0);
    s_expect (store, 1, "k", NULL);
    s_expect (store, 2, "k", "two");
    s_expect (store, STORE_GLOBAL, "k", "global");

    //  Tenant 3 never ensured: write fails, store NOT failed
    store_batch_clear (batch);
    store_batch_put (batch, 3, "k", 1, "three", 5);
    char *err = NULL;
    assert_int_equal (store_write (store, batch, true, &err), -1);
    assert_non_null (err);
    assert_non_null (strstr (err, "tenant 3"));
    free (err);
    assert_false (store_failed (store));
    assert_false (store_tenant_exists (store, 3));

    //  Get on a missing tenant: documented as -1 with an error
    char *value = (char *) 1;
    size_t value_len = 99;
    err = NULL;
    assert_int_equal (store_get (store, 3, "k", 1, &value, &value_len, &err), -1);
    assert_null (value);
    assert_int_equal (value_len, 0);
    assert_non_null (err);
    free (err);
    //  Iterator on a missing tenant: NULL
    assert_null (store_iter_new (store, 3, NULL, 0, NULL, 0));

    //  Later valid writes still work; after ensure, tenant 3 works too
    s_put (store, 2, "k2", "two-b", true);
    s_ensure (store, 3);
    assert_int_equal (store_write (store, batch, true, NULL), 0);
    s_expect (store, 3, "k", "three");
    s_expect (store, 1, "k", NULL);
    store_batch_destroy (&batch);
    store_batch_destroy (&batch);         //  Idempotent
    assert_null (batch);
    store_destroy (&store);
}


//  --------------------------------------------------------------------------
//  Batches: atomic across CFs, count/clear, reuse, put+delete ordering

static void
test_batch_atomic (void **state)
{
    fixture_t *fixture = *state;
    store_t *store = s_open (fixture->path);
    s_ensure (store, 1);
    s_ensure (store, 2);

    store_batch_t *batch = store_batch_new ();
    assert_int_equal (store_batch_count (batch), 0);
    store_batch_put (batch, STORE_GLOBAL, "g", 1, "G", 1);
    store_batch_put (batch, 1, "a", 1, "A", 1);
    store_batch_put (batch, 2, "b", 1, "B", 1);
    store_batch_put (batch, 9, "x", 1, "X", 1);   //  Tenant 9 missing
    assert_int_equal (store_batch_count (batch), 4);

    //  One bad operation: nothing at all is applied
    assert_int_equal (store_write (store, batch, true, NULL), -1);
    assert_false (store_failed (store));
    s_expect (store, STORE_GLOBAL, "g", NULL);
    s_expect (store, 1, "a", NULL);
    s_expect (store, 2, "b", NULL);

    //  Rebuild without the bad op: everything is applied together
    store_batch_clear (batch);
    assert_int_equal (store_batch_count (batch), 0);
    store_batch_put (batch, STORE_GLOBAL, "g", 1, "G", 1);
    store_batch_put (batch, 1, "a", 1, "A", 1);
    store_batch_put (batch, 2, "b", 1, "B", 1);
    store_batch_put (batch, 1, "tmp", 3, "T", 1);
    store_batch_delete (batch, 1, "tmp", 3);      //  Later op wins
    store_batch_put (batch, 2, "empty", 5, NULL, 0);
    assert_int_equal (store_batch_count (batch), 6);
    assert_int_equal (store_write (store, batch, true, NULL), 0);
    assert_int_equal (store_batch_count (batch), 6);  //  Not consumed
    s_expect (store, STORE_GLOBAL, "g", "G");
    s_expect (store, 1, "a", "A");
    s_expect (store, 2, "b", "B");
    s_expect (store, 1, "tmp", NULL);
    s_expect (store, 2, "empty", "");             //  Found, zero length

    //  Writing the same batch again is fine (idempotent content)
    assert_int_equal (store_write (store, batch, false, NULL), 0);

    //  Empty batch
    store_batch_clear (batch);
    assert_int_equal (store_write (store, batch, true, NULL), 0);

    //  Large batch: many ops, large values, buffer growth
    char *big = malloc (100000);
    assert_non_null (big);
    memset (big, 'z', 100000);
    for (int index = 0; index < 500; index++) {
        char key [16];
        snprintf (key, sizeof (key), "big%03d", index);
        store_batch_put (batch, (uint64_t) (index % 3), key, strlen (key),
                         big, (size_t) (index * 197) % 100000);
    }
    assert_int_equal (store_write (store, batch, true, NULL), 0);
    store_destroy (&store);
    store = s_open (fixture->path);
    for (int index = 0; index < 500; index++) {
        char key [16];
        snprintf (key, sizeof (key), "big%03d", index);
        char *value = NULL;
        size_t value_len = 0;
        assert_int_equal (store_get (store, (uint64_t) (index % 3), key,
                                     strlen (key), &value, &value_len, NULL), 1);
        assert_int_equal (value_len, (size_t) (index * 197) % 100000);
        assert_memory_equal (value, big, value_len);
        free (value);
    }
    free (big);
    store_batch_destroy (&batch);
    store_destroy (&store);
}


//  --------------------------------------------------------------------------
//  Sync write survives a reopen; sync and async writes survive a process
//  that is SIGKILLed without closing the store (child re-exec)

static int
s_crash_child (const char *path)
{
    store_t *store = store_new (path, NULL);
    if (!store)
        return 2;
    if (store_tenant_ensure (store, 5, NULL) != 0)
        return 3;
    store_batch_t *batch = store_batch_new ();
    store_batch_put (batch, 5, "synced", 6, "yes", 3);
    store_batch_put (batch, STORE_GLOBAL, "synced", 6, "global-yes", 10);
    if (store_write (store, batch, true, NULL) != 0)
        return 4;
    store_batch_clear (batch);
    store_batch_put (batch, 5, "async", 5, "also", 4);
    if (store_write (store, batch, false, NULL) != 0)
        return 5;
    //  Die without store_destroy: no WAL flush, no clean close
    raise (SIGKILL);
    return 6;
}

static void
test_sync_write (void **state)
{
    fixture_t *fixture = *state;
    store_t *store = s_open (fixture->path);
    s_ensure (store, 1);
    s_put (store, 1, "durable", "value", true);
    s_expect (store, 1, "durable", "value");
    store_destroy (&store);
    store = s_open (fixture->path);
    s_expect (store, 1, "durable", "value");
    store_destroy (&store);

    //  Crash test in a child process (fresh process: no fork of our threads)
    char crash_path [160];
    snprintf (crash_path, sizeof (crash_path), "%s/crash", fixture->root);
    char *argv [] = { (char *) "/proc/self/exe", (char *) "--crash-child", crash_path, NULL };
    pid_t pid;
    assert_int_equal (posix_spawn (&pid, "/proc/self/exe", NULL, NULL, argv, environ), 0);
    int status = 0;
    assert_int_equal (waitpid (pid, &status, 0), pid);
    if (!(WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL))
        fail_msg ("crash child did not die by SIGKILL (status 0x%x)", status);

    store = s_open (crash_path);
    assert_true (store_tenant_exists (store, 5));
    s_expect (store, 5, "synced", "yes");
    s_expect (store, STORE_GLOBAL, "synced", "global-yes");
    //  Process crash (not power loss): the async write reached the OS too
    s_expect (store, 5, "async", "also");
    store_destroy (&store);
}


//  --------------------------------------------------------------------------
//  Point reads: found / not found / binary keys / empty key

static void
test_get (void **state)
{
    fixture_t *fixture = *state;
    store_t *store = s_open (fixture->path);
    s_ensure (store, 42);
    const uint8_t binary_key [] = { 0, 1, 0, 2, 0xff };
    const uint8_t binary_value [] = { 0, 0, 0xde, 0xad, 0 };
    store_batch_t *batch = store_batch_new ();
    store_batch_put (batch, 42, binary_key, sizeof (binary_key),
                     binary_value, sizeof (binary_value));
    store_batch_put (batch, 42, "", 0, "empty-key", 9);
    assert_int_equal (store_write (store, batch, false, NULL), 0);
    store_batch_destroy (&batch);

    char *value = NULL;
    size_t value_len = 0;
    assert_int_equal (store_get (store, 42, binary_key, sizeof (binary_key),
                                 &value, &value_len, NULL), 1);
    assert_int_equal (value_len, sizeof (binary_value));
    assert_memory_equal (value, binary_value, value_len);
    free (value);

    //  Prefix of an existing key is a different key
    assert_int_equal (store_get (store, 42, binary_key, 4, &value, &value_len, NULL), 0);
    assert_null (value);
    s_expect (store, 42, "", "empty-key");
    s_expect (store, 42, "missing", NULL);
    s_expect (store, STORE_GLOBAL, "", NULL);
    store_destroy (&store);
}



//  --------------------------------------------------------------------------
//  store_write applies a batch in key order: whatever the order of the
//  operations, the last one on each key wins, in every tenant

static void
test_batch_last_write_wins (void **state)
{
    fixture_t *fixture = *state;
    store_t *store = s_open (fixture->path);
    s_ensure (store, 1);
    s_ensure (store, 2);
    store_batch_t *batch = store_batch_new ();
    //  Keys past 16 bytes sharing their first 16, written out of order
    const char *long_a = "0123456789abcdef-a";
    const char *long_b = "0123456789abcdef-b";
    const char *prefix = "0123456789abcdef";
    store_batch_put (batch, 1, long_b, 18, "B1", 2);
    store_batch_put (batch, 1, long_a, 18, "A1", 2);
    store_batch_put (batch, 2, long_a, 18, "other tenant", 12);
    store_batch_put (batch, 1, prefix, 16, "P", 1);
    store_batch_put (batch, 1, long_b, 18, "B2", 2);     //  Wins over B1
    store_batch_delete (batch, 1, long_a, 18);          //  Wins over A1
    store_batch_put (batch, 1, "z", 1, "Z1", 2);
    store_batch_delete (batch, 1, "z", 1);
    store_batch_put (batch, 1, "z", 1, "Z2", 2);        //  Wins over both
    store_batch_put (batch, STORE_GLOBAL, "z", 1, "G", 1);
    assert_int_equal (store_write (store, batch, false, NULL), 0);
    s_expect (store, 1, long_b, "B2");
    s_expect (store, 1, long_a, NULL);
    s_expect (store, 2, long_a, "other tenant");
    s_expect (store, 1, prefix, "P");
    s_expect (store, 1, "z", "Z2");
    s_expect (store, STORE_GLOBAL, "z", "G");

    //  Many keys in reverse order, each written twice: the second wins
    store_batch_clear (batch);
    for (int round = 0; round < 2; round++)
        for (uint64_t i = 300; i > 0; i--) {
            uint8_t key [8];
            char value [32];
            store_u64_put (key, i);
            snprintf (value, sizeof (value), "r%d-%" PRIu64, round, i);
            store_batch_put (batch, 2, key, 8, value, strlen (value));
        }
    assert_int_equal (store_write (store, batch, false, NULL), 0);
    for (uint64_t i = 1; i <= 300; i++) {
        uint8_t key [8];
        char expected [32];
        store_u64_put (key, i);
        snprintf (expected, sizeof (expected), "r1-%" PRIu64, i);
        char *value = NULL;
        size_t value_len = 0;
        assert_int_equal (store_get (store, 2, key, 8, &value, &value_len, NULL), 1);
        assert_int_equal (value_len, strlen (expected));
        assert_memory_equal (value, expected, value_len);
        free (value);
    }
    store_batch_destroy (&batch);
    store_destroy (&store);
}

//  --------------------------------------------------------------------------
//  Iterators: forward/backward within bounds, seek, seek_for_prev, bounds
//  respected, bounds copied

static void
test_iter_bounds (void **state)
{
    fixture_t *fixture = *state;
    store_t *store = s_open (fixture->path);
    s_ensure (store, 1);
    s_ensure (store, 2);
    s_put_range (store, 1, 0, 100);
    s_put_range (store, 2, 0, 100);            //  Other tenant, same keys
    s_put_range (store, STORE_GLOBAL, 0, 100);

    //  Bounds from a buffer we then clobber: the iterator must have copies
    uint8_t lower [8], upper [8];
    store_u64_put (lower, 10);
    store_u64_put (upper, 20);
    store_iter_t *iter = store_iter_new (store, 1, lower, 8, upper, 8);
    assert_non_null (iter);
    memset (lower, 0, 8);
    memset (upper, 0xff, 8);
    assert_false (store_iter_valid (iter));    //  Not positioned yet

    //  Forward: exactly 10..19 (9 and 20 are just outside)
    uint64_t expected = 10;
    for (store_iter_first (iter); store_iter_valid (iter); store_iter_next (iter))
        s_iter_expect (iter, expected++);
    assert_int_equal (expected, 20);
    assert_int_equal (store_iter_status (iter, NULL), 0);
    size_t len = 99;
    assert_null (store_iter_key (iter, &len));
    assert_int_equal (len, 0);
    assert_null (store_iter_value (iter, &len));

    //  Backward: 19..10
    expected = 19;
    int seen = 0;
    for (store_iter_last (iter); store_iter_valid (iter); store_iter_prev (iter)) {
        s_iter_expect (iter, expected--);
        seen++;
    }
    assert_int_equal (seen, 10);

    //  seek: first key >= target, clamped to the bounds
    uint8_t target [9];
    store_u64_put (target, 15);
    store_iter_seek (iter, target, 8);
    s_iter_expect (iter, 15);
    store_iter_next (iter);
    s_iter_expect (iter, 16);
    store_iter_prev (iter);
    store_iter_prev (iter);
    s_iter_expect (iter, 14);
    target [8] = 0;                            //  be(15) + "\0": between 15 and 16
    store_iter_seek (iter, target, 9);
    s_iter_expect (iter, 16);
    store_u64_put (target, 5);                 //  Below lower: clamps to 10
    store_iter_seek (iter, target, 8);
    s_iter_expect (iter, 10);
    store_u64_put (target, 20);                //  At upper (exclusive): nothing
    store_iter_seek (iter, target, 8);
    assert_false (store_iter_valid (iter));
    store_u64_put (target, 50);
    store_iter_seek (iter, target, 8);
    assert_false (store_iter_valid (iter));

    //  seek_for_prev: last key <= target, clamped to the bounds
    store_u64_put (target, 15);
    store_iter_seek_for_prev (iter, target, 8);
    s_iter_expect (iter, 15);
    target [8] = 0;                            //  Between 15 and 16: 15
    store_iter_seek_for_prev (iter, target, 9);
    s_iter_expect (iter, 15);
    store_u64_put (target, 20);                //  Upper itself excluded: 19
    store_iter_seek_for_prev (iter, target, 8);
    s_iter_expect (iter, 19);
    store_iter_next (iter);
    assert_false (store_iter_valid (iter));    //  20 not returned
    store_u64_put (target, 99);
    store_iter_seek_for_prev (iter, target, 8);
    s_iter_expect (iter, 19);
    store_u64_put (target, 10);
    store_iter_seek_for_prev (iter, target, 8);
    s_iter_expect (iter, 10);
    store_iter_prev (iter);
    assert_false (store_iter_valid (iter));    //  9 not returned
    store_u64_put (target, 3);                 //  Below lower: nothing
    store_iter_seek_for_prev (iter, target, 8);
    assert_false (store_iter_valid (iter));
    assert_int_equal (store_iter_status (iter, NULL), 0);
    store_iter_destroy (&iter);
    store_iter_destroy (&iter);                //  Idempotent
    assert_null (iter);

    //  Only a lower bound: 90..99
    store_u64_put (lower, 90);
    iter = store_iter_new (store, 2, lower, 8, NULL, 0);
    expected = 90;
    for (store_iter_first (iter); store_iter_valid (iter); store_iter_next (iter))
        s_iter_expect (iter, expected++);
    assert_int_equal (expected, 100);
    store_iter_last (iter);
    s_iter_expect (iter, 99);
    store_iter_destroy (&iter);

    //  Only an upper bound: 0..4 backwards from last
    store_u64_put (upper, 5);
    iter = store_iter_new (store, STORE_GLOBAL, NULL, 0, upper, 8);
    expected = 4;
    for (store_iter_last (iter); store_iter_valid (iter); store_iter_prev (iter)) {
        s_iter_expect (iter, expected);
        if (expected-- == 0)
            break;
    }
    store_iter_first (iter);
    s_iter_expect (iter, 0);
    store_iter_destroy (&iter);

    //  Unbounded: all 100 keys; a write after creation is not seen (snapshot)
    iter = store_iter_new (store, 1, NULL, 0, NULL, 0);
    s_put_range (store, 1, 100, 110);
    int count = 0;
    for (store_iter_first (iter); store_iter_valid (iter); store_iter_next (iter))
        s_iter_expect (iter, (uint64_t) count++);
    assert_int_equal (count, 100);
    store_iter_destroy (&iter);

    //  Prefix scan with string keys: "room/" .. "room0" ('/' + 1 == '0')
    store_batch_t *batch = store_batch_new ();
    store_batch_put (batch, 2, "roo", 3, "-", 1);
    store_batch_put (batch, 2, "room", 4, "-", 1);
    store_batch_put (batch, 2, "room/", 5, "a", 1);
    store_batch_put (batch, 2, "room/a", 6, "b", 1);
    store_batch_put (batch, 2, "room/z\xff", 7, "c", 1);
    store_batch_put (batch, 2, "room0", 5, "-", 1);
    store_batch_put (batch, 2, "rooms", 5, "-", 1);
    assert_int_equal (store_write (store, batch, false, NULL), 0);
    store_batch_destroy (&batch);
    iter = store_iter_new (store, 2, "room/", 5, "room0", 5);
    const char *want [] = { "a", "b", "c" };
    count = 0;
    for (store_iter_first (iter); store_iter_valid (iter); store_iter_next (iter)) {
        const char *value = store_iter_value (iter, &len);
        assert_true (count < 3);
        assert_int_equal (len, 1);
        assert_memory_equal (value, want [count], 1);
        count++;
    }
    assert_int_equal (count, 3);
    store_iter_destroy (&iter);
    store_destroy (&store);
}


//  --------------------------------------------------------------------------
//  Empty ranges and empty column families

static void
test_iter_empty (void **state)
{
    fixture_t *fixture = *state;
    store_t *store = s_open (fixture->path);
    s_ensure (store, 8);

    //  Empty CF
    store_iter_t *iter = store_iter_new (store, 8, NULL, 0, NULL, 0);
    assert_non_null (iter);
    store_iter_first (iter);
    assert_false (store_iter_valid (iter));
    store_iter_last (iter);
    assert_false (store_iter_valid (iter));
    store_iter_seek (iter, "a", 1);
    assert_false (store_iter_valid (iter));
    store_iter_seek_for_prev (iter, "a", 1);
    assert_false (store_iter_valid (iter));
    assert_int_equal (store_iter_status (iter, NULL), 0);
    store_iter_destroy (&iter);

    s_put_range (store, 8, 0, 10);
    s_put_range (store, 8, 20, 30);
    uint8_t lower [8], upper [8];

    //  lower == upper
    store_u64_put (lower, 5);
    store_u64_put (upper, 5);
    iter = store_iter_new (store, 8, lower, 8, upper, 8);
    store_iter_first (iter);
    assert_false (store_iter_valid (iter));
    store_iter_last (iter);
    assert_false (store_iter_valid (iter));
    store_iter_destroy (&iter);

    //  Range inside the gap [10, 20)
    store_u64_put (lower, 10);
    store_u64_put (upper, 20);
    iter = store_iter_new (store, 8, lower, 8, upper, 8);
    store_iter_first (iter);
    assert_false (store_iter_valid (iter));
    store_iter_last (iter);
    assert_false (store_iter_valid (iter));
    store_iter_seek (iter, lower, 8);
    assert_false (store_iter_valid (iter));
    store_iter_seek_for_prev (iter, upper, 8);
    assert_false (store_iter_valid (iter));
    assert_int_equal (store_iter_status (iter, NULL), 0);
    store_iter_destroy (&iter);

    //  Range past the end
    store_u64_put (lower, 1000);
    iter = store_iter_new (store, 8, lower, 8, NULL, 0);
    store_iter_first (iter);
    assert_false (store_iter_valid (iter));
    store_iter_last (iter);
    assert_false (store_iter_valid (iter));
    store_iter_destroy (&iter);

    //  Zero-length upper bound: nothing is below ""
    iter = store_iter_new (store, 8, NULL, 0, "", 0);
    store_iter_first (iter);
    assert_false (store_iter_valid (iter));
    store_iter_destroy (&iter);
    store_destroy (&store);
}


//  --------------------------------------------------------------------------
//  Many tenants: 100 CFs, spread and extreme ids, open and reopen

#define MANY 100

static uint64_t
s_many_id (int index)
{
    if (index == 0)
        return 1;
    if (index == 1)
        return UINT64_MAX;
    if (index == 2)
        return UINT64_MAX - 1;
    return (uint64_t) index * 1000003ull + ((uint64_t) index << 40);
}

static void
test_many_tenants (void **state)
{
    fixture_t *fixture = *state;
    store_t *store = s_open (fixture->path);
    store_batch_t *batch = store_batch_new ();
    for (int index = 0; index < MANY; index++) {
        uint64_t tenant = s_many_id (index);
        s_ensure (store, tenant);
        char value [32];
        snprintf (value, sizeof (value), "%" PRIu64, tenant);
        store_batch_put (batch, tenant, "id", 2, value, strlen (value));
    }
    //  One atomic batch across all of them
    assert_int_equal (store_write (store, batch, true, NULL), 0);
    store_batch_destroy (&batch);
    assert_int_equal (store_tenant_list (store, NULL, 0), MANY);
    store_destroy (&store);

    for (int round = 0; round < 2; round++) {
        store = s_open (fixture->path);
        uint64_t *ids = calloc (MANY, sizeof (uint64_t));
        assert_non_null (ids);
        assert_int_equal (store_tenant_list (store, ids, MANY), MANY);
        for (int index = 1; index < MANY; index++)
            assert_true (ids [index - 1] < ids [index]);   //  Ascending
        assert_int_equal (ids [0], 1);
        assert_int_equal (ids [MANY - 1], UINT64_MAX);
        //  Truncated listing: total count, the smallest ids
        uint64_t few [5];
        assert_int_equal (store_tenant_list (store, few, 5), MANY);
        assert_memory_equal (few, ids, sizeof (few));
        free (ids);

        for (int index = 0; index < MANY; index++) {
            uint64_t tenant = s_many_id (index);
            assert_true (store_tenant_exists (store, tenant));
            char value [32];
            snprintf (value, sizeof (value), "%" PRIu64, tenant);
            s_expect (store, tenant, "id", value);
        }
        assert_false (store_tenant_exists (store, 2));
        assert_false (store_tenant_exists (store, 1000003ull));
        store_destroy (&store);
    }
}


//  --------------------------------------------------------------------------
//  Failed state through the test hook (needs -DCHORUS_TESTING)

static void
test_failed_state_hook (void **state)
{
#ifdef CHORUS_TESTING
    fixture_t *fixture = *state;
    store_t *store = s_open (fixture->path);
    s_ensure (store, 1);
    s_put (store, 1, "before", "ok", true);

    store_test_fail_next_write (store);
    //  A caller error does not consume the hook nor fail the store
    store_batch_t *batch = store_batch_new ();
    store_batch_put (batch, 77, "k", 1, "v", 1);
    assert_int_equal (store_write (store, batch, true, NULL), -1);
    assert_false (store_failed (store));

    store_batch_clear (batch);
    store_batch_put (batch, 1, "lost", 4, "v", 1);
    char *err = NULL;
    assert_int_equal (store_write (store, batch, true, &err), -1);
    assert_non_null (err);
    assert_non_null (strstr (err, "simulated"));
    free (err);
    assert_true (store_failed (store));

    //  Sticky: later writes fail at once, with the original cause
    store_batch_clear (batch);
    store_batch_put (batch, 1, "after", 5, "v", 1);
    err = NULL;
    assert_int_equal (store_write (store, batch, false, &err), -1);
    assert_non_null (err);
    assert_non_null (strstr (err, "failed state"));
    assert_non_null (strstr (err, "simulated"));
    free (err);
    assert_int_equal (store_write (store, batch, true, NULL), -1);
    assert_true (store_failed (store));
    //  No new tenants either
    assert_int_equal (store_tenant_ensure (store, 2, NULL), -1);
    //  Reads still work
    s_expect (store, 1, "before", "ok");
    s_expect (store, 1, "lost", NULL);
    store_destroy (&store);

    //  Reopen: fresh state, nothing of the failed writes
    store = s_open (fixture->path);
    assert_false (store_failed (store));
    s_expect (store, 1, "before", "ok");
    s_expect (store, 1, "lost", NULL);
    s_expect (store, 1, "after", NULL);
    assert_int_equal (store_write (store, batch, true, NULL), 0);
    s_expect (store, 1, "after", "v");
    store_batch_destroy (&batch);
    store_destroy (&store);
#else
    (void) state;
    skip ();
#endif
}


//  --------------------------------------------------------------------------
//  Failed state after a real I/O error: swap the WAL's file descriptor for a
//  read-only /dev/null so RocksDB's next WAL append fails with EBADF (works
//  as root, unlike chmod). Linux only; skipped if the WAL fd is not found.

static int
s_find_wal_fd (const char *dir)
{
    DIR *fds = opendir ("/proc/self/fd");
    if (!fds)
        return -1;
    int found = -1;
    size_t dir_len = strlen (dir);
    struct dirent *entry;
    while (found < 0 && (entry = readdir (fds)) != NULL) {
        if (entry->d_name [0] == '.')
            continue;
        char link [300], target [512];
        snprintf (link, sizeof (link), "/proc/self/fd/%s", entry->d_name);
        ssize_t len = readlink (link, target, sizeof (target) - 1);
        if (len <= 0)
            continue;
        target [len] = '\0';
        if (strncmp (target, dir, dir_len) == 0 && target [dir_len] == '/'
        &&  len > 4 && strcmp (target + len - 4, ".log") == 0)
            found = atoi (entry->d_name);
    }
    closedir (fds);
    return found;
}

static void
test_failed_state_real_io (void **state)
{
    fixture_t *fixture = *state;
    store_t *store = s_open (fixture->path);
    s_ensure (store, 1);
    s_put (store, 1, "before", "ok", true);

    char real_dir [PATH_MAX];
    assert_non_null (realpath (fixture->path, real_dir));
    int wal_fd = s_find_wal_fd (real_dir);
    if (wal_fd < 0) {
        store_destroy (&store);
        skip ();
    }
    int null_fd = open ("/dev/null", O_RDONLY);
    assert_true (null_fd >= 0);
    assert_int_equal (dup2 (null_fd, wal_fd), wal_fd);
    close (null_fd);

    store_batch_t *batch = store_batch_new ();
    store_batch_put (batch, 1, "lost", 4, "v", 1);
    char *err = NULL;
    assert_int_equal (store_write (store, batch, true, &err), -1);
    assert_non_null (err);
    print_message ("  (expected) %s\n", err);
    free (err);
    assert_true (store_failed (store));
    //  Sticky, even though the next call might "succeed" in RocksDB
    assert_int_equal (store_write (store, batch, false, NULL), -1);
    store_destroy (&store);

    //  Reopen (WAL has a preallocated zero tail: tolerated); earlier data kept
    store = s_open (fixture->path);
    assert_false (store_failed (store));
    s_expect (store, 1, "before", "ok");
    s_expect (store, 1, "lost", NULL);
    store_batch_destroy (&batch);
    store_destroy (&store);
}


//  --------------------------------------------------------------------------
//  WAL recovery mode: a torn tail (truncated last record) is tolerated

static void
test_wal_torn_tail (void **state)
{
    fixture_t *fixture = *state;
    store_t *store = s_open (fixture->path);
    s_write_numbered (store, 50);
    store_destroy (&store);

    char *wal = s_newest_wal (fixture->path);
    assert_non_null (wal);
    size_t size;
    char *data = s_read_file (wal, &size);
    //  The last record must be the last bytes of the file
    const char *last = memmem (data, size, "value-0049-payload", 18);
    assert_non_null (last);
    assert_true ((size_t) (last - data) + 18 == size);
    free (data);
    //  Tear the last record: cut its last 5 bytes
    assert_int_equal (truncate (wal, (off_t) size - 5), 0);
    free (wal);

    //  After a clean close the last record was durable: losing it is data
    //  loss, and the store refuses to start behind LAST_SEQUENCE
    char *err = NULL;
    assert_null (store_new (fixture->path, &err));
    assert_non_null (strstr (err, "was closed at"));
    free (err);
    //  A crash leaves no newer LAST_SEQUENCE: a torn tail is then a write
    //  that never completed, and recovery drops it
    char sequence [PATH_MAX];
    snprintf (sequence, sizeof (sequence), "%s/LAST_SEQUENCE", fixture->path);
    assert_int_equal (unlink (sequence), 0);
    store = s_open (fixture->path);
    s_expect (store, STORE_GLOBAL, "key-0000", "value-0000-payload");
    s_expect (store, STORE_GLOBAL, "key-0048", "value-0048-payload");
    s_expect (store, STORE_GLOBAL, "key-0049", NULL);
    //  And it keeps working
    s_put (store, STORE_GLOBAL, "key-0049", "again", true);
    store_destroy (&store);
    store = s_open (fixture->path);
    s_expect (store, STORE_GLOBAL, "key-0049", "again");
    s_expect (store, STORE_GLOBAL, "key-0025", "value-0025-payload");
    store_destroy (&store);
}


//  --------------------------------------------------------------------------
//  WAL recovery mode: corruption in the middle fails the open (never serve
//  a gap), with a message; the database is left untouched for an operator

static void
test_wal_mid_corruption (void **state)
{
    fixture_t *fixture = *state;
    store_t *store = s_open (fixture->path);
    s_write_numbered (store, 50);
    store_destroy (&store);

    char *wal = s_newest_wal (fixture->path);
    assert_non_null (wal);
    size_t size;
    char *data = s_read_file (wal, &size);
    char *middle = memmem (data, size, "value-0025-payload", 18);
    assert_non_null (middle);
    middle [6] ^= 0x01;                        //  Flip one bit
    FILE *file = fopen (wal, "r+b");
    assert_non_null (file);
    assert_int_equal (fseek (file, middle - data, SEEK_SET), 0);
    assert_int_equal (fwrite (middle, 1, 18, file), 18);
    fclose (file);
    free (data);

    for (int attempt = 0; attempt < 2; attempt++) {
        char *err = NULL;
        store = store_new (fixture->path, &err);
        assert_null (store);
        assert_non_null (err);
        assert_non_null (strstr (err, fixture->path));
        assert_non_null (strstr (err, "Corruption"));
        //  The damaged WAL file is named (taken from RocksDB's LOG)
        assert_non_null (strstr (err, strrchr (wal, '/') + 1));
        if (attempt == 0)
            print_message ("  (expected) %s\n", err);
        free (err);
    }
    free (wal);
}


//  --------------------------------------------------------------------------
//  Two stores open at once in different directories (no global state)

static void
test_two_stores (void **state)
{
    fixture_t *fixture = *state;
    char other [160];
    snprintf (other, sizeof (other), "%s/meta", fixture->root);
    store_t *messages = s_open (fixture->path);
    store_t *metadata = s_open (other);
    s_ensure (messages, 1);
    s_put (messages, 1, "k", "messages", false);
    s_put (metadata, STORE_GLOBAL, "k", "metadata", false);
    assert_false (store_tenant_exists (metadata, 1));
    s_expect (messages, STORE_GLOBAL, "k", NULL);
    s_expect (metadata, STORE_GLOBAL, "k", "metadata");
    store_destroy (&metadata);
    s_expect (messages, 1, "k", "messages");
    store_destroy (&messages);
}


//  Writes `mib` MiB to a tenant in batches of 16 values of 64 KB; keys
//  "<tag>-<n>"
static void
s_write_mib (store_t *store, uint64_t tenant, const char *tag, int mib)
{
    static char value [65536];
    memset (value, 'v', sizeof (value));
    store_batch_t *batch = store_batch_new ();
    for (int round = 0; round < mib; round++) {
        store_batch_clear (batch);
        for (int i = 0; i < 16; i++) {
            char key [64];
            snprintf (key, sizeof (key), "%s-%d", tag, round * 16 + i);
            store_batch_put (batch, tenant, key, strlen (key), value, sizeof (value));
        }
        assert_int_equal (store_write (store, batch, false, NULL), 0);
    }
    store_batch_destroy (&batch);
}

//  The section of a CF in the newest OPTIONS file RocksDB wrote (malloc'd)
static char *
s_cf_options_section (const char *path, const char *cf_name)
{
    DIR *dir = opendir (path);
    assert_non_null (dir);
    char newest [PATH_MAX] = "";
    long newest_number = -1;
    struct dirent *entry;
    while ((entry = readdir (dir)))
        if (strncmp (entry->d_name, "OPTIONS-", 8) == 0
        &&  atol (entry->d_name + 8) > newest_number) {
            newest_number = atol (entry->d_name + 8);
            snprintf (newest, sizeof (newest), "%s/%s", path, entry->d_name);
        }
    closedir (dir);
    FILE *file = fopen (newest, "r");
    assert_non_null (file);
    static char text [1 << 20];
    size_t size = fread (text, 1, sizeof (text) - 1, file);
    fclose (file);
    text [size] = 0;
    char header [64];
    snprintf (header, sizeof (header), "[CFOptions \"%s\"]", cf_name);
    char *start = strstr (text, header);
    assert_non_null (start);
    char *end = strstr (start + 1, "\n[");
    return strndup (start, end? (size_t) (end - start): strlen (start));
}

//  A tenant that writes 1 MiB gets a whole-key filter on its memtables, at
//  most 64 tenants do, and point reads stay exact through filtered memtables;
//  every tenant's memtables keep insert hints
static void
test_memtable_filter_for_busy_tenants (void **state)
{
    fixture_t *fixture = *state;
    store_t *store = s_open (fixture->path);
    s_ensure (store, 1);
    s_ensure (store, 2);
    s_put (store, 2, "quiet", "q", false);
    s_write_mib (store, 1, "a", 1);
    assert_int_equal (store_filtered_tenants (store), 1);
    char *busy = s_cf_options_section (fixture->path, "t/1");
    char *quiet = s_cf_options_section (fixture->path, "t/2");
    assert_non_null (strstr (busy, "memtable_whole_key_filtering=true"));
    assert_non_null (strstr (busy, "memtable_prefix_bloom_size_ratio=0.010000"));
    assert_non_null (strstr (quiet, "memtable_whole_key_filtering=false"));
    //  Every CF keeps an insert position per 9-byte key prefix
    assert_non_null (strstr (busy, "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.9"));
    assert_non_null (strstr (quiet, "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.9"));
    free (busy);
    free (quiet);

    //  Tenant 1's next memtables carry the filter
    s_write_mib (store, 1, "b", 8);
    char key [64];
    for (int i = 0; i < 8 * 16; i += 3) {
        snprintf (key, sizeof (key), "b-%d", i);
        char *value = NULL;
        size_t len = 0;
        assert_int_equal (store_get (store, 1, key, strlen (key), &value, &len, NULL), 1);
        assert_int_equal (len, 65536);
        free (value);
        snprintf (key, sizeof (key), "absent-%d", i);
        s_expect (store, 1, key, NULL);
    }
    char *value = NULL;
    size_t len = 0;
    assert_int_equal (store_get (store, 1, "a-3", 3, &value, &len, NULL), 1);
    free (value);

    //  70 tenants more write 1 MiB each: 64 tenants in all get a filter
    for (uint64_t tenant = 10; tenant < 80; tenant++) {
        s_ensure (store, tenant);
        s_write_mib (store, tenant, "c", 1);
    }
    assert_int_equal (store_filtered_tenants (store), 64);
    store_destroy (&store);
}

static void *
s_apply_thread (void *commit)
{
    store_commit_apply ((store_commit_t *) commit);
    return NULL;
}

//  A commit prepared here, written by another thread while this one reads
//  and stages the next batch, finished here; a failed one fails the store
static void
test_commit_in_another_thread (void **state)
{
    fixture_t *fixture = *state;
    store_t *store = s_open (fixture->path);
    s_ensure (store, 1);
    s_put (store, 1, "old", "o", true);
    store_batch_t *batch = store_batch_new ();
    store_batch_put (batch, 1, "new", 3, "n", 1);
    store_commit_t *commit = store_commit_new (store, batch, true, NULL);
    assert_non_null (commit);
    store_batch_clear (batch);                  //  the commit holds its own copy
    store_batch_put (batch, 1, "next", 4, "x", 1);
    pthread_t thread;
    assert_int_equal (pthread_create (&thread, NULL, s_apply_thread, commit), 0);
    s_expect (store, 1, "old", "o");            //  reads go on meanwhile
    s_ensure (store, 2);                        //  so do new tenants
    assert_int_equal (pthread_join (thread, NULL), 0);
    assert_int_equal (store_commit_finish (&commit, NULL), 0);
    assert_null (commit);
    s_expect (store, 1, "new", "n");
    s_expect (store, 1, "next", NULL);
    assert_int_equal (store_write (store, batch, true, NULL), 0);
    s_expect (store, 1, "next", "x");

    //  A caller error is found while preparing, and fails nothing
    store_batch_clear (batch);
    store_batch_put (batch, 9, "k", 1, "v", 1);
    char *err = NULL;
    assert_null (store_commit_new (store, batch, true, &err));
    assert_non_null (strstr (err, "no column family"));
    free (err);
    assert_false (store_failed (store));
#ifdef CHORUS_TESTING
    //  A failed write is reported when finished, and fails the store
    store_batch_clear (batch);
    store_batch_put (batch, 1, "lost", 4, "v", 1);
    store_test_fail_next_write (store);
    commit = store_commit_new (store, batch, true, NULL);
    assert_non_null (commit);
    assert_int_equal (pthread_create (&thread, NULL, s_apply_thread, commit), 0);
    assert_int_equal (pthread_join (thread, NULL), 0);
    assert_false (store_failed (store));        //  not until it is finished
    err = NULL;
    assert_int_equal (store_commit_finish (&commit, &err), -1);
    assert_non_null (strstr (err, "simulated"));
    free (err);
    assert_true (store_failed (store));
    assert_null (store_commit_new (store, batch, true, NULL));
    s_expect (store, 1, "lost", NULL);
#endif
    store_batch_destroy (&batch);
    store_destroy (&store);
}

int
main (int argc, char *argv [])
{
    if (argc == 3 && strcmp (argv [1], "--crash-child") == 0)
        return s_crash_child (argv [2]);

    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_u64_ordering),
        cmocka_unit_test_setup_teardown (test_open_close_reopen, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_open_errors, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_tenant_isolation, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_batch_atomic, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_sync_write, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_get, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_batch_last_write_wins, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_memtable_filter_for_busy_tenants, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_iter_bounds, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_iter_empty, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_many_tenants, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_failed_state_hook, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_commit_in_another_thread, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_failed_state_real_io, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_wal_torn_tail, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_wal_mid_corruption, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_two_stores, s_setup, s_teardown),
    };
    return cmocka_run_group_tests_name ("store", tests, NULL, NULL);
}
