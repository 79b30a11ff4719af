/*  =========================================================================
    test_fuzz_replay - every committed fuzz corpus, replayed on every run

    Each libFuzzer target (tests/fuzz/fuzz_*.c, tests/edge/fuzz_*.c) is
    compiled into this test with its LLVMFuzzerTestOneInput renamed, and
    every file of its corpus, tests/fuzz/corpus/<target>/, goes through it
    once: no fuzzing engine, no clang, just the inputs that found coverage
    and the bugs fixed since. A target fails by aborting (its oracles); the
    file being replayed is printed first.

    A target or a corpus directory that is not registered below fails the
    test, so a new target cannot go unreplayed.

    Built by the unit-test glob of tests/CMakeLists.txt (linked with
    chorus_stages, chorus_edge and cmocka); the sources are found from
    __FILE__, or from CHORUS_SOURCE_DIR if set.
    =========================================================================
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

//  ---------------------------------------------------------------------
//  The targets, each with its entry points renamed. Their static names
//  have a prefix of their own, so they can share this file.

#define LLVMFuzzerTestOneInput fuzz_proto_one
#include "../fuzz/fuzz_proto.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_json_one
#include "../edge/fuzz_json.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_ws_message_one
#include "../fuzz/fuzz_ws_message.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_codec_roundtrip_one
#include "../fuzz/fuzz_codec_roundtrip.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_stage_packet_one
#include "../fuzz/fuzz_stage_packet.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_stateful_one
#define LLVMFuzzerInitialize fuzz_stateful_init
#include "../fuzz/fuzz_stateful.c"
#undef LLVMFuzzerTestOneInput
#undef LLVMFuzzerInitialize

typedef int (replay_fn) (const uint8_t *data, size_t size);

typedef struct {
    const char *name;           //  target name = source file name = corpus directory
    const char *source;         //  its source, from the repository root
    replay_fn *one;             //  its LLVMFuzzerTestOneInput
    void (*init) (void);        //  its LLVMFuzzerInitialize, or NULL
    void (*fini) (void);        //  what frees what init made, or NULL
} replay_target_t;

static void s_stateful_init (void) { fuzz_stateful_init (NULL, NULL); }
static void s_stateful_fini (void) { s_st_stop (); }

static const replay_target_t s_targets [] = {
    { "fuzz_proto", "tests/fuzz/fuzz_proto.c", fuzz_proto_one, NULL, NULL },
    { "fuzz_json", "tests/edge/fuzz_json.c", fuzz_json_one, NULL, NULL },
    { "fuzz_ws_message", "tests/fuzz/fuzz_ws_message.c", fuzz_ws_message_one, NULL, NULL },
    { "fuzz_codec_roundtrip", "tests/fuzz/fuzz_codec_roundtrip.c", fuzz_codec_roundtrip_one,
      NULL, NULL },
    { "fuzz_stage_packet", "tests/fuzz/fuzz_stage_packet.c", fuzz_stage_packet_one, NULL, NULL },
    { "fuzz_stateful", "tests/fuzz/fuzz_stateful.c", fuzz_stateful_one,
      s_stateful_init, s_stateful_fini },
};
#define TARGET_COUNT (sizeof (s_targets) / sizeof (s_targets [0]))

//  ---------------------------------------------------------------------
//  Where things are

static char s_root [2048];              //  the repository root
static char s_current [4096];           //  the file being replayed, for a crash report

//  A target aborts on a broken oracle: say which input did it
static void
s_on_crash (int sig)
{
    static const char text [] = "\ntest_fuzz_replay: crashed replaying ";
    ssize_t rc = write (2, text, sizeof (text) - 1);
    rc = write (2, s_current, strlen (s_current));
    rc = write (2, "\n", 1);
    (void) rc;
    signal (sig, SIG_DFL);
    raise (sig);
}

static int
s_setup (void **state)
{
    (void) state;
    const char *env = getenv ("CHORUS_SOURCE_DIR");
    if (env && *env)
        snprintf (s_root, sizeof (s_root), "%s", env);
    else {
        //  __FILE__ is .../tests/unit/test_fuzz_replay.c
        snprintf (s_root, sizeof (s_root), "%s", __FILE__);
        char *cut = strstr (s_root, "/tests/unit/test_fuzz_replay.c");
        if (cut)
            *cut = 0;
        else
            snprintf (s_root, sizeof (s_root), ".");
    }
    signal (SIGABRT, s_on_crash);
    signal (SIGSEGV, s_on_crash);
    return 0;
}

static const replay_target_t *
s_target_named (const char *name)
{
    for (size_t i = 0; i < TARGET_COUNT; i++)
        if (streq (s_targets [i].name, name))
            return &s_targets [i];
    return NULL;
}

//  qsort order of file names
static int
s_compare_names (const void *a, const void *b)
{
    return strcmp (*(char * const *) a, *(char * const *) b);
}

//  Replays every file of the target's corpus; returns how many
static size_t
s_replay (const replay_target_t *target)
{
    char dir [sizeof (s_root) + 64];
    snprintf (dir, sizeof (dir), "%s/tests/fuzz/corpus/%s", s_root, target->name);
    DIR *handle = opendir (dir);
    if (!handle)
        fail_msg ("no corpus for %s: %s", target->name, dir);
    char **names = NULL;
    size_t count = 0, capacity = 0;
    struct dirent *entry;
    while ((entry = readdir (handle))) {
        if (entry->d_name [0] == '.')
            continue;
        if (count == capacity) {
            capacity = capacity? capacity * 2: 64;
            names = (char **) realloc (names, capacity * sizeof (char *));
            assert_non_null (names);
        }
        names [count++] = strdup (entry->d_name);
    }
    closedir (handle);
    qsort (names, count, sizeof (char *), s_compare_names);     //  the same order each run
    if (target->init)
        target->init ();
    for (size_t i = 0; i < count; i++) {
        snprintf (s_current, sizeof (s_current), "%s/%s", dir, names [i]);
        struct stat st;
        if (stat (s_current, &st) || !S_ISREG (st.st_mode)) {
            free (names [i]);
            continue;
        }
        FILE *file = fopen (s_current, "rb");
        assert_non_null (file);
        uint8_t *data = (uint8_t *) malloc ((size_t) st.st_size + 1);
        assert_non_null (data);
        size_t size = fread (data, 1, (size_t) st.st_size, file);
        fclose (file);
        assert_int_equal (size, (size_t) st.st_size);
        //  A copy of exactly size bytes, so ASan sees reads past the end
        uint8_t *exact = (uint8_t *) malloc (size? size: 1);
        assert_non_null (exact);
        memcpy (exact, data, size);
        assert_int_equal (target->one (exact, size), 0);
        free (exact);
        free (data);
        free (names [i]);
    }
    free (names);
    if (target->fini)
        target->fini ();
    s_current [0] = 0;
    printf ("replay: %s: %zu inputs\n", target->name, count);
    return count;
}

//  ---------------------------------------------------------------------
//  Tests

static void
test_replay_proto (void **state)
{
    (void) state;
    assert_true (s_replay (s_target_named ("fuzz_proto")) > 0);
}

static void
test_replay_json (void **state)
{
    (void) state;
    assert_true (s_replay (s_target_named ("fuzz_json")) > 0);
}

static void
test_replay_ws_message (void **state)
{
    (void) state;
    assert_true (s_replay (s_target_named ("fuzz_ws_message")) > 0);
}

static void
test_replay_codec_roundtrip (void **state)
{
    (void) state;
    assert_true (s_replay (s_target_named ("fuzz_codec_roundtrip")) > 0);
}

static void
test_replay_stateful (void **state)
{
    (void) state;
    assert_true (s_replay (s_target_named ("fuzz_stateful")) > 0);
}

//  Every fuzz source and every corpus directory is registered above
static void
test_every_target_registered (void **state)
{
    (void) state;
    const char *dirs [] = { "tests/fuzz", "tests/edge", "tests/fuzz/corpus" };
    for (size_t d = 0; d < 3; d++) {
        char path [sizeof (s_root) + 64];
        snprintf (path, sizeof (path), "%s/%s", s_root, dirs [d]);
        DIR *handle = opendir (path);
        assert_non_null (handle);
        struct dirent *entry;
        while ((entry = readdir (handle))) {
            char name [256];
            snprintf (name, sizeof (name), "%s", entry->d_name);
            size_t len = strlen (name);
            bool corpus = d == 2 && name [0] != '.';
            bool source = d < 2 && strncmp (name, "fuzz_", 5) == 0 && len > 2
                       && streq (name + len - 2, ".c");
            if (source)
                name [len - 2] = 0;
            if ((corpus || source) && !s_target_named (name))
                fail_msg ("%s/%s is not replayed: register it in test_fuzz_replay.c",
                          dirs [d], entry->d_name);
        }
        closedir (handle);
    }
    for (size_t i = 0; i < TARGET_COUNT; i++) {
        char path [sizeof (s_root) + 128];
        snprintf (path, sizeof (path), "%s/%s", s_root, s_targets [i].source);
        if (access (path, R_OK))
            fail_msg ("%s: no source at %s", s_targets [i].name, path);
    }
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_every_target_registered),
        cmocka_unit_test (test_replay_proto),
        cmocka_unit_test (test_replay_json),
        cmocka_unit_test (test_replay_ws_message),
        cmocka_unit_test (test_replay_codec_roundtrip),
        cmocka_unit_test (test_replay_stateful),
    };
    return cmocka_run_group_tests (tests, s_setup, NULL);
}
