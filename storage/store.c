/*  =========================================================================
    store - thin, safe wrapper over the RocksDB C API

    See store.h for the contract and README.md for the design notes. This is
    the only file in Chorus that includes <rocksdb/c.h>.
    =========================================================================
*/

#if !defined (_GNU_SOURCE) && !defined (_POSIX_C_SOURCE)
#   define _POSIX_C_SOURCE 200809L
#endif

#include "store.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <fcntl.h>
#include <unistd.h>

#include <rocksdb/c.h>

//  Tuning (see README.md)
#define STORE_BLOCK_CACHE_SIZE   (256u << 20)   //  LRU block cache shared by all CFs
#define STORE_CACHE_SHARD_BITS   2              //  4 shards: a shard holds a big index block
#define STORE_BLOOM_BITS         10             //  Bloom filter bits per key
#define STORE_BACKGROUND_JOBS    2              //  Flush + compaction threads
#define STORE_WRITE_BUFFER_SIZE  (32u << 20)    //  Memtable size per CF
#define STORE_DB_WRITE_BUFFER    (256u << 20)   //  Cap on all memtables together
#define STORE_MAX_TOTAL_WAL      (512ull << 20) //  Force flushes past this WAL size
#define STORE_BLOOM_AFTER_BYTES  (1u << 20)     //  A tenant that wrote this since open...
#define STORE_BLOOM_TENANTS_MAX  64             //  ...gets a memtable filter, up to this many
#define STORE_MEMTABLE_BLOOM     "0.01"         //  Of the memtable: 336 KB, ~10 bits a key
#define STORE_INSERT_HINTS       "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.9"

#define STORE_GLOBAL_CF   "global"
#define STORE_LOG_QUIET   4         //  RocksDB info log level: FATAL
#define STORE_LOG_EXPLAIN 2         //  WARN: says which file is corrupt
#define STORE_REGISTRY_PREFIX "\x00" "cf/"    //  registry keys in the global CF
#define STORE_REGISTRY_KEY (sizeof (STORE_REGISTRY_PREFIX) - 1 + 8)
#define STORE_DEFAULT_CF  "default"
#define STORE_TENANT_PFX  "t/"

//  One slot of the tenant -> column family hash table
typedef struct {
    uint64_t tenant;                            //  Tenant id (meaningful if cf)
    rocksdb_column_family_handle_t *cf;         //  CF handle; NULL = empty slot
    uint64_t written;                           //  Key and value bytes since open
    bool filtered;                              //  Memtable filter requested
} s_slot_t;

//  Structure of our store
//  Write batches kept cleared for the next commits (one staged, one in
//  flight), so a commit does not grow a new one from nothing; one that grew
//  past STORE_SPARE_WBATCH_MAX bytes is not kept
#define STORE_SPARE_WBATCHES     2
#define STORE_SPARE_WBATCH_MAX   (8 * 1024 * 1024)

struct _store_t {
    char *path;                                 //  Database directory
    rocksdb_t *db;                              //  Open database, or NULL
    rocksdb_options_t *options;                 //  DB options, also used per CF
    rocksdb_cache_t *cache;                     //  Our reference to the block cache
    rocksdb_writeoptions_t *wopts_sync;         //  Write options, sync = true
    rocksdb_writeoptions_t *wopts_nosync;       //  Write options, sync = false
    rocksdb_readoptions_t *ropts;               //  Read options for point reads
    rocksdb_column_family_handle_t *global;     //  Handle of the "global" CF
    rocksdb_column_family_handle_t **others;    //  "default" and unknown CF handles
    size_t others_count;                        //  Number of handles in others
    s_slot_t *slots;                            //  Tenant CF hash (open addressing)
    size_t slots_cap;                           //  Slot count, a power of two
    size_t tenants;                             //  Number of tenant CFs in slots
    size_t filtered;                            //  Tenants given a memtable filter
    bool filter_wanted;                         //  A tenant passed the threshold
    size_t iterators;                           //  Live iterators on this store
    bool failed;                                //  True after any failed write
    char *failure;                              //  Message of the first failure
    rocksdb_writebatch_t *spare_wbatches [STORE_SPARE_WBATCHES];
    size_t spare_wbatch_count;                  //  Cleared batches kept for reuse
#ifdef CHORUS_TESTING
    bool fail_next_write;                       //  Test hook: fake an I/O error
#endif
};

//  One queued batch operation; key and value bytes live in the batch buffer
typedef struct {
    uint64_t tenant;                            //  Target tenant (0 = global)
    bool is_delete;                             //  Delete (true) or put (false)
    size_t key_off;                             //  Offset of the key in data
    size_t key_len;                             //  Key length in bytes
    size_t value_off;                           //  Offset of the value in data
    size_t value_len;                           //  Value length (0 for delete)
} s_op_t;

//  An operation's place in key order (see store_write)
typedef struct {
    uint64_t tenant;
    uint64_t head [2];                          //  Key bytes 0-15, big-endian
    const char *key;
    size_t key_len;
    size_t index;                               //  Its place in the batch
} s_sorted_op_t;

//  Structure of our batch
struct _store_batch_t {
    s_op_t *ops;                                //  Queued operations, in order
    size_t count;                               //  Number of queued operations
    size_t ops_cap;                             //  Allocated entries in ops
    char *data;                                 //  Concatenated keys and values
    size_t data_len;                            //  Bytes used in data
    size_t data_cap;                            //  Bytes allocated in data
    s_sorted_op_t *sorted;                      //  The ops in key order
    size_t sorted_cap;                          //  Allocated entries in sorted
};

//  Structure of our iterator
struct _store_iter_t {
    store_t *store;                             //  Owning store (iterator count)
    rocksdb_readoptions_t *ropts;               //  Read options holding the bounds
    rocksdb_iterator_t *iter;                   //  RocksDB iterator
    char *lower;                                //  Copy of the lower bound, or NULL
    char *upper;                                //  Copy of the upper bound, or NULL
};


//  --------------------------------------------------------------------------
//  realloc that treats out of memory as fatal (like CZMQ); never NULL.

static void *
s_realloc (void *ptr, size_t size)
{
    void *result = realloc (ptr, size ? size : 1);
    if (!result) {
        fprintf (stderr, "store: out of memory (%zu bytes)\n", size);
        abort ();
    }
    return result;
}


//  --------------------------------------------------------------------------
//  Duplicate a string; out of memory is fatal.

static char *
s_strdup (const char *string)
{
    size_t size = strlen (string) + 1;
    char *copy = (char *) s_realloc (NULL, size);
    memcpy (copy, string, size);
    return copy;
}


//  --------------------------------------------------------------------------
//  Duplicate len bytes (non-NULL result even for len 0); OOM is fatal.

static char *
s_memdup (const void *src, size_t len)
{
    char *copy = (char *) s_realloc (NULL, len);
    if (len)
        memcpy (copy, src, len);
    return copy;
}


//  --------------------------------------------------------------------------
//  Format a new malloc'd error message into *err, if err is not NULL.

static void
s_set_err (char **err, const char *format, ...)
{
    if (!err)
        return;
    va_list args;
    va_start (args, format);
    int size = vsnprintf (NULL, 0, format, args);
    va_end (args);
    if (size < 0)
        size = 0;
    char *message = (char *) s_realloc (NULL, (size_t) size + 1);
    va_start (args, format);
    vsnprintf (message, (size_t) size + 1, format, args);
    va_end (args);
    *err = message;
}


//  --------------------------------------------------------------------------
//  Enter the failed state (sticky); remembers the first failure message.

static void
s_enter_failed (store_t *self, const char *what, const char *message)
{
    if (!self->failed) {
        self->failed = true;
        size_t size = strlen (what) + strlen (message) + 3;
        self->failure = (char *) s_realloc (NULL, size);
        snprintf (self->failure, size, "%s: %s", what, message);
    }
}


//  --------------------------------------------------------------------------
//  Hash a tenant id (splitmix64 finalizer) for the open-addressing table.

static size_t
s_hash (uint64_t tenant)
{
    tenant ^= tenant >> 30;
    tenant *= 0xbf58476d1ce4e5b9ull;
    tenant ^= tenant >> 27;
    tenant *= 0x94d049bb133111ebull;
    tenant ^= tenant >> 31;
    return (size_t) tenant;
}


//  --------------------------------------------------------------------------
//  Insert a tenant CF into a slot table with linear probing (no duplicates).

static void
s_slots_put (s_slot_t *slots, size_t cap, const s_slot_t *slot)
{
    size_t index = s_hash (slot->tenant) & (cap - 1);
    while (slots [index].cf) {
        assert (slots [index].tenant != slot->tenant);
        index = (index + 1) & (cap - 1);
    }
    slots [index] = *slot;
}


//  --------------------------------------------------------------------------
//  Add a tenant CF to the store's table, growing it to keep load <= 1/2.

static void
s_tenant_insert (store_t *self, uint64_t tenant, rocksdb_column_family_handle_t *cf)
{
    if ((self->tenants + 1) * 2 > self->slots_cap) {
        size_t new_cap = self->slots_cap ? self->slots_cap * 2 : 16;
        s_slot_t *new_slots = (s_slot_t *) s_realloc (NULL, new_cap * sizeof (s_slot_t));
        memset (new_slots, 0, new_cap * sizeof (s_slot_t));
        for (size_t index = 0; index < self->slots_cap; index++)
            if (self->slots [index].cf)
                s_slots_put (new_slots, new_cap, &self->slots [index]);
        free (self->slots);
        self->slots = new_slots;
        self->slots_cap = new_cap;
    }
    s_slot_t slot = { .tenant = tenant, .cf = cf };
    s_slots_put (self->slots, self->slots_cap, &slot);
    self->tenants++;
}


//  --------------------------------------------------------------------------
//  Look up the slot of a tenant (not 0); NULL if it has no CF.

static s_slot_t *
s_slot_lookup (store_t *self, uint64_t tenant)
{
    if (self->tenants == 0)
        return NULL;
    size_t index = s_hash (tenant) & (self->slots_cap - 1);
    while (self->slots [index].cf) {
        if (self->slots [index].tenant == tenant)
            return &self->slots [index];
        index = (index + 1) & (self->slots_cap - 1);
    }
    return NULL;
}


//  --------------------------------------------------------------------------
//  Look up the CF handle of a tenant (0 = global); NULL if it does not exist.

static rocksdb_column_family_handle_t *
s_cf_lookup (store_t *self, uint64_t tenant)
{
    if (tenant == STORE_GLOBAL)
        return self->global;
    s_slot_t *slot = s_slot_lookup (self, tenant);
    return slot? slot->cf: NULL;
}


//  --------------------------------------------------------------------------
//  Counts what a write puts in a tenant's CF. A point read of a key that is
//  absent (the dedupe lookup of every send) searches every memtable's skip
//  list; a whole-key filter answers it in a few hundred instructions. The
//  filter is allocated with each memtable, busy or idle, and counts against
//  the write-buffer cap, so only tenants that write get one, and at most
//  STORE_BLOOM_TENANTS_MAX of them.

static void
s_count_written (store_t *self, s_slot_t *slot, size_t bytes)
{
    slot->written += bytes;
    if (!slot->filtered && slot->written >= STORE_BLOOM_AFTER_BYTES
    &&  self->filtered < STORE_BLOOM_TENANTS_MAX)
        self->filter_wanted = true;
}


//  --------------------------------------------------------------------------
//  Give a memtable filter to the tenants that passed the threshold. RocksDB
//  rewrites its OPTIONS file each time, and gives the filter to the next
//  memtable, so the current one (a MiB or so) is flushed in the background.

static void
s_filter_busy_tenants (store_t *self)
{
    static const char *keys [] = {
        "memtable_whole_key_filtering", "memtable_prefix_bloom_size_ratio"
    };
    static const char *values [] = { "true", STORE_MEMTABLE_BLOOM };
    self->filter_wanted = false;
    for (size_t index = 0; index < self->slots_cap; index++) {
        s_slot_t *slot = &self->slots [index];
        if (!slot->cf || slot->filtered || slot->written < STORE_BLOOM_AFTER_BYTES
        ||  self->filtered >= STORE_BLOOM_TENANTS_MAX)
            continue;
        char *rerr = NULL;
        rocksdb_set_options_cf (self->db, slot->cf, 2, keys, values, &rerr);
        if (!rerr) {
            rocksdb_flushoptions_t *flush = rocksdb_flushoptions_create ();
            rocksdb_flushoptions_set_wait (flush, 0);
            rocksdb_flush_cf (self->db, flush, slot->cf, &rerr);
            rocksdb_flushoptions_destroy (flush);
        }
        free (rerr);                    //  Only costs speed: never asked again
        slot->filtered = true;
        self->filtered++;
    }
}


//  --------------------------------------------------------------------------
//  Number of tenants given a memtable filter since open.

size_t
store_filtered_tenants (store_t *self)
{
    assert (self);
    return self->filtered;
}


//  --------------------------------------------------------------------------
//  Parse a CF name "t/<decimal>" (no sign, no leading zero, not 0, no
//  overflow) into *tenant. Returns true if the name is a tenant CF name.

static bool
s_parse_tenant_cf (const char *name, uint64_t *tenant)
{
    size_t prefix = strlen (STORE_TENANT_PFX);
    if (strncmp (name, STORE_TENANT_PFX, prefix) != 0)
        return false;
    const char *digits = name + prefix;
    if (*digits < '1' || *digits > '9')
        return false;
    uint64_t value = 0;
    for (const char *cursor = digits; *cursor; cursor++) {
        if (*cursor < '0' || *cursor > '9')
            return false;
        unsigned digit = (unsigned) (*cursor - '0');
        if (value > (UINT64_MAX - digit) / 10)
            return false;
        value = value * 10 + digit;
    }
    *tenant = value;
    return true;
}


//  --------------------------------------------------------------------------
//  Create directory `path` and its missing parents (mkdir -p). 0 / -1 errno.

static int
s_mkdir_p (const char *path)
{
    char *copy = s_strdup (path);
    int rc = 0;
    for (char *cursor = copy + 1; ; cursor++) {
        if (*cursor == '/' || *cursor == '\0') {
            char saved = *cursor;
            *cursor = '\0';
            if (mkdir (copy, 0755) != 0 && errno != EEXIST) {
                rc = -1;
                break;
            }
            *cursor = saved;
            if (saved == '\0')
                break;
        }
    }
    free (copy);
    if (rc == 0) {
        struct stat info;
        if (stat (path, &info) != 0)
            rc = -1;
        else
        if (!S_ISDIR (info.st_mode)) {
            errno = ENOTDIR;
            rc = -1;
        }
    }
    return rc;
}


//  --------------------------------------------------------------------------
//  Returns the name of the first RocksDB data file (*.sst, *.log, MANIFEST-*)
//  found in directory `path` as a new string, or NULL if there is none.

static char *
s_find_db_file (const char *path)
{
    DIR *dir = opendir (path);
    if (!dir)
        return NULL;
    char *found = NULL;
    struct dirent *entry;
    while (!found && (entry = readdir (dir)) != NULL) {
        const char *name = entry->d_name;
        size_t len = strlen (name);
        if (strncmp (name, "MANIFEST-", 9) == 0
        || (len > 4 && strcmp (name + len - 4, ".sst") == 0)
        || (len > 4 && strcmp (name + len - 4, ".log") == 0))
            found = s_strdup (name);
    }
    closedir (dir);
    return found;
}


//  --------------------------------------------------------------------------
//  After a failed open, find RocksDB's own account of WAL corruption in the
//  info LOG ("<dir>/000123.log: dropping N bytes; Corruption: ..."), which
//  names the damaged file, unlike the status message. Returns the text after
//  the "[source:line] " tag of the last such line as a new string, or NULL.

static char *
s_log_corruption_hint (const char *path)
{
    size_t log_size = strlen (path) + sizeof ("/LOG");
    char *log_path = (char *) s_realloc (NULL, log_size);
    snprintf (log_path, log_size, "%s/LOG", path);
    FILE *file = fopen (log_path, "r");
    free (log_path);
    if (!file)
        return NULL;
    char *hint = NULL;
    char *line = NULL;
    size_t line_size = 0;
    ssize_t line_len;
    while ((line_len = getline (&line, &line_size, file)) > 0) {
        char *dropping = strstr (line, ": dropping ");
        if (!dropping)
            continue;
        //  Start of the message: just after the last "] " before it
        char *start = line;
        for (char *cursor = line; cursor < dropping; cursor++)
            if (cursor [0] == ']' && cursor [1] == ' ')
                start = cursor + 2;
        while (line_len > 0 && (line [line_len - 1] == '\n' || line [line_len - 1] == '\r'))
            line [--line_len] = '\0';
        free (hint);
        hint = s_strdup (start);
    }
    free (line);
    fclose (file);
    return hint;
}


//  --------------------------------------------------------------------------
//  Keys start with a type byte and an 8-byte id ('m' channel seq, 'p'
//  channel user, 'd' user ...): the memtable keeps its last insert position
//  for each such 9-byte prefix, so a message appended to its channel, or a
//  position next to the last one written, is placed without a search from
//  the skip list's top. RocksDB's C API sets this option only by name.

static void
s_options_add_insert_hints (store_t *self)
{
    rocksdb_options_t *hinted = rocksdb_options_create ();
    char *rerr = NULL;
    rocksdb_get_options_from_string (self->options, STORE_INSERT_HINTS, hinted, &rerr);
    assert (!rerr);
    rocksdb_options_destroy (self->options);
    self->options = hinted;
}


//  --------------------------------------------------------------------------
//  Create the RocksDB options and per-store objects. Cannot fail.

static void
s_options_new (store_t *self)
{
    //  Few, large shards: a table of millions of messages has index and
    //  filter blocks of several MB, which must fit one shard to stay cached
    //  (with RocksDB's default of 64 shards, history pages and dedupe
    //  lookups re-read them from disk)
    rocksdb_lru_cache_options_t *cache_options = rocksdb_lru_cache_options_create ();
    rocksdb_lru_cache_options_set_capacity (cache_options, STORE_BLOCK_CACHE_SIZE);
    rocksdb_lru_cache_options_set_num_shard_bits (cache_options, STORE_CACHE_SHARD_BITS);
    self->cache = rocksdb_cache_create_lru_opts (cache_options);
    rocksdb_lru_cache_options_destroy (cache_options);
    rocksdb_block_based_table_options_t *table = rocksdb_block_based_options_create ();
    rocksdb_block_based_options_set_block_cache (table, self->cache);
    //  The table options take ownership of the filter policy
    rocksdb_block_based_options_set_filter_policy (
        table, rocksdb_filterpolicy_create_bloom_full (STORE_BLOOM_BITS));
    //  Bound index/filter memory by the cache even with thousands of CFs
    rocksdb_block_based_options_set_cache_index_and_filter_blocks (table, 1);
    rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache (table, 1);

    self->options = rocksdb_options_create ();
    rocksdb_options_set_create_if_missing (self->options, 1);
    rocksdb_options_set_create_missing_column_families (self->options, 1);
    rocksdb_options_set_paranoid_checks (self->options, 1);
    //  RocksDB's LOG lives on the same disk: when it is full, Debian's build
    //  (assertions on) aborts on the LOG line that reports the failed write.
    //  Keep the LOG to fatal errors; s_open turns warnings on to explain a
    //  failed open.
    rocksdb_options_set_info_log_level (self->options, STORE_LOG_QUIET);
    rocksdb_options_set_wal_recovery_mode (
        self->options, rocksdb_tolerate_corrupted_tail_records_recovery);
    rocksdb_options_set_max_background_jobs (self->options, STORE_BACKGROUND_JOBS);
    rocksdb_options_set_write_buffer_size (self->options, STORE_WRITE_BUFFER_SIZE);
    rocksdb_options_set_db_write_buffer_size (self->options, STORE_DB_WRITE_BUFFER);
    rocksdb_options_set_max_total_wal_size (self->options, STORE_MAX_TOTAL_WAL);
    //  The factory copies the table options (and shares the cache)
    rocksdb_options_set_block_based_table_factory (self->options, table);
    rocksdb_block_based_options_destroy (table);
    s_options_add_insert_hints (self);

    self->wopts_sync = rocksdb_writeoptions_create ();
    rocksdb_writeoptions_set_sync (self->wopts_sync, 1);
    self->wopts_nosync = rocksdb_writeoptions_create ();
    rocksdb_writeoptions_set_sync (self->wopts_nosync, 0);
    self->ropts = rocksdb_readoptions_create ();
}


//  --------------------------------------------------------------------------
//  Integrity beyond the MANIFEST. A MANIFEST cut short is read by RocksDB as
//  a torn tail: the edits lost with it (a column family's creation, a
//  flush) vanish without an error, and the WAL records of a forgotten
//  column family are skipped. Two records outside it catch that: a registry
//  of tenant column families in the global CF (keys STORE_REGISTRY_PREFIX +
//  tenant id, hidden from callers' scans by their own prefixes), and the
//  last sequence number, written to LAST_SEQUENCE at every clean close.

static void
s_registry_key (uint8_t *key, uint64_t tenant)
{
    memcpy (key, STORE_REGISTRY_PREFIX, sizeof (STORE_REGISTRY_PREFIX) - 1);
    store_u64_put (key + sizeof (STORE_REGISTRY_PREFIX) - 1, tenant);
}

//  Fails if a registered tenant has no column family. 0 or -1 with *err.
static int
s_registry_check (store_t *self, char **err)
{
    rocksdb_iterator_t *iter = rocksdb_create_iterator_cf (self->db, self->ropts, self->global);
    size_t prefix = sizeof (STORE_REGISTRY_PREFIX) - 1;
    int rc = 0;
    for (rocksdb_iter_seek (iter, STORE_REGISTRY_PREFIX, prefix);
         rc == 0 && rocksdb_iter_valid (iter); rocksdb_iter_next (iter)) {
        size_t len;
        const char *key = rocksdb_iter_key (iter, &len);
        if (len != STORE_REGISTRY_KEY || memcmp (key, STORE_REGISTRY_PREFIX, prefix) != 0)
            break;
        uint64_t tenant = store_u64_get ((const uint8_t *) key + prefix);
        if (!s_cf_lookup (self, tenant)) {
            s_set_err (err, "store: tenant %" PRIu64 "'s column family is missing from '%s': "
                       "its MANIFEST is corrupt; refusing to start on lost data",
                       tenant, self->path);
            rc = -1;
        }
    }
    rocksdb_iter_destroy (iter);
    return rc;
}

//  Path of the LAST_SEQUENCE file (caller frees)
static char *
s_sequence_path (store_t *self)
{
    size_t size = strlen (self->path) + sizeof ("/LAST_SEQUENCE");
    char *path = (char *) s_realloc (NULL, size);
    snprintf (path, size, "%s/LAST_SEQUENCE", self->path);
    return path;
}

//  Fails if the database is behind the sequence of its last clean close
static int
s_sequence_check (store_t *self, char **err)
{
    char *path = s_sequence_path (self);
    FILE *file = fopen (path, "r");
    unsigned long long recorded = 0;
    int rc = 0;
    if (file && fscanf (file, "%llu", &recorded) == 1
    &&  rocksdb_get_latest_sequence_number (self->db) < recorded) {
        s_set_err (err, "store: '%s' recovered to sequence %" PRIu64 " but was closed at %llu: "
                   "data was lost (corrupt MANIFEST or deleted files); refusing to start",
                   self->path, (uint64_t) rocksdb_get_latest_sequence_number (self->db), recorded);
        rc = -1;
    }
    if (file)
        fclose (file);
    free (path);
    return rc;
}

//  Records the latest sequence number at a clean close, durably
static void
s_sequence_save (store_t *self)
{
    char *path = s_sequence_path (self);
    size_t size = strlen (path) + 5;
    char *temp = (char *) s_realloc (NULL, size);
    snprintf (temp, size, "%s.tmp", path);
    FILE *file = fopen (temp, "w");
    if (file) {
        fprintf (file, "%llu\n", (unsigned long long) rocksdb_get_latest_sequence_number (self->db));
        fflush (file);
        fsync (fileno (file));
        fclose (file);
        if (rename (temp, path) == 0) {
            int dir = open (self->path, O_RDONLY | O_DIRECTORY);
            if (dir >= 0) {
                fsync (dir);
                close (dir);
            }
        }
    }
    free (temp);
    free (path);
}

//  Opens once more with warnings in the LOG, only so that RocksDB writes
//  there which file is damaged (the open fails the same way again)
static void
s_open_for_the_log (store_t *self, size_t count, const char **names,
                    const rocksdb_options_t **cf_options)
{
    rocksdb_options_set_info_log_level (self->options, STORE_LOG_EXPLAIN);
    rocksdb_column_family_handle_t **handles =
        (rocksdb_column_family_handle_t **) s_realloc (NULL, count * sizeof (void *));
    char *rerr = NULL;
    rocksdb_t *db = rocksdb_open_column_families (
        self->options, self->path, (int) count, names, cf_options, handles, &rerr);
    if (db) {
        for (size_t index = 0; index < count; index++)
            rocksdb_column_family_handle_destroy (handles [index]);
        rocksdb_close (db);
    }
    free (rerr);
    free (handles);
    rocksdb_options_set_info_log_level (self->options, STORE_LOG_QUIET);
}

//  --------------------------------------------------------------------------
//  Open the database with all its column families and dispatch the handles.
//  Returns 0, or -1 with *err.

static int
s_open (store_t *self, char **err)
{
    char *rerr = NULL;
    char **listed = NULL;
    size_t listed_count = 0;

    //  An existing database has a CURRENT file; list its column families
    size_t current_size = strlen (self->path) + sizeof ("/CURRENT");
    char *current = (char *) s_realloc (NULL, current_size);
    snprintf (current, current_size, "%s/CURRENT", self->path);
    struct stat info;
    bool existing = stat (current, &info) == 0;
    free (current);

    if (existing) {
        listed = rocksdb_list_column_families (self->options, self->path,
                                               &listed_count, &rerr);
        if (rerr) {
            s_set_err (err, "store: cannot list column families of '%s': %s",
                       self->path, rerr);
            free (rerr);
            return -1;
        }
    }
    else {
        //  Never create a fresh database over the remains of another one
        char *leftover = s_find_db_file (self->path);
        if (leftover) {
            s_set_err (err, "store: '%s' has no CURRENT file but contains "
                       "RocksDB file '%s'; refusing to create a new database",
                       self->path, leftover);
            free (leftover);
            return -1;
        }
    }
    //  Names to open: every listed CF, plus "default" and "global" if absent
    const char **names = (const char **) s_realloc (NULL, (listed_count + 2) * sizeof (char *));
    size_t count = 0;
    bool have_default = false;
    bool have_global = false;
    for (size_t index = 0; index < listed_count; index++) {
        names [count++] = listed [index];
        if (strcmp (listed [index], STORE_DEFAULT_CF) == 0)
            have_default = true;
        else
        if (strcmp (listed [index], STORE_GLOBAL_CF) == 0)
            have_global = true;
    }
    if (existing && !have_global) {
        //  Created with the database: only a damaged MANIFEST loses it, and
        //  recreating it would hide that every write to it is gone
        s_set_err (err, "store: '%s' has no '%s' column family: its MANIFEST is "
                   "corrupt; refusing to start on a database with lost data",
                   self->path, STORE_GLOBAL_CF);
        free (names);
        rocksdb_list_column_families_destroy (listed, listed_count);
        return -1;
    }
    if (!have_default)
        names [count++] = STORE_DEFAULT_CF;
    if (!have_global)
        names [count++] = STORE_GLOBAL_CF;

    const rocksdb_options_t **cf_options =
        (const rocksdb_options_t **) s_realloc (NULL, count * sizeof (void *));
    rocksdb_column_family_handle_t **handles =
        (rocksdb_column_family_handle_t **) s_realloc (NULL, count * sizeof (void *));
    for (size_t index = 0; index < count; index++) {
        cf_options [index] = self->options;
        handles [index] = NULL;
    }
    int rc = 0;
    self->db = rocksdb_open_column_families (
        self->options, self->path, (int) count, names, cf_options, handles, &rerr);
    if (rerr || !self->db) {
        char *hint = NULL;
        if (rerr && strncmp (rerr, "Corruption", 10) == 0) {
            s_open_for_the_log (self, count, names, cf_options);
            hint = s_log_corruption_hint (self->path);
        }
        s_set_err (err, "store: cannot open database '%s': %s%s%s%s",
                   self->path, rerr ? rerr : "unknown error",
                   hint ? " [RocksDB LOG: " : "", hint ? hint : "", hint ? "]" : "");
        free (hint);
        free (rerr);
        self->db = NULL;
        rc = -1;
    }
    else {
        self->others = (rocksdb_column_family_handle_t **)
            s_realloc (NULL, count * sizeof (void *));
        for (size_t index = 0; index < count; index++) {
            uint64_t tenant;
            if (strcmp (names [index], STORE_GLOBAL_CF) == 0)
                self->global = handles [index];
            else
            if (s_parse_tenant_cf (names [index], &tenant))
                s_tenant_insert (self, tenant, handles [index]);
            else
                self->others [self->others_count++] = handles [index];
        }
    }
    free (handles);
    free (cf_options);
    free (names);
    if (listed)
        rocksdb_list_column_families_destroy (listed, listed_count);
    return rc;
}


//  --------------------------------------------------------------------------
//  Open (creating if missing) the database in directory `path`, with all its
//  column families. Returns NULL and *err on error.

store_t *
store_new (const char *path, char **err)
{
    if (!path || !*path) {
        s_set_err (err, "store: empty database path");
        return NULL;
    }
    if (s_mkdir_p (path) != 0) {
        s_set_err (err, "store: cannot create directory '%s': %s",
                   path, strerror (errno));
        return NULL;
    }
    store_t *self = (store_t *) s_realloc (NULL, sizeof (store_t));
    memset (self, 0, sizeof (store_t));
    self->path = s_strdup (path);
    s_options_new (self);
    if (s_open (self, err) != 0
    ||  s_registry_check (self, err) != 0
    ||  s_sequence_check (self, err) != 0) {
        self->failed = true;        //  close without writing anything
        store_destroy (&self);
    }
    return self;
}


//  --------------------------------------------------------------------------
//  Sync the WAL, close the database and free everything; nulls *self_p.

void
store_destroy (store_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        store_t *self = *self_p;
        assert (self->iterators == 0);
        if (self->db) {
            //  No fsync retry after a failure: nothing could be trusted
            if (!self->failed) {
                char *rerr = NULL;
                rocksdb_flush_wal (self->db, 1, &rerr);
                if (rerr) {
                    fprintf (stderr, "store: WAL sync on close of '%s' failed: %s\n",
                             self->path, rerr);
                    free (rerr);
                }
                else
                    s_sequence_save (self);
            }
            //  Handles must go before the database
            for (size_t index = 0; index < self->slots_cap; index++)
                if (self->slots [index].cf)
                    rocksdb_column_family_handle_destroy (self->slots [index].cf);
            for (size_t index = 0; index < self->others_count; index++)
                rocksdb_column_family_handle_destroy (self->others [index]);
            if (self->global)
                rocksdb_column_family_handle_destroy (self->global);
            rocksdb_close (self->db);
        }
        for (size_t index = 0; index < self->spare_wbatch_count; index++)
            rocksdb_writebatch_destroy (self->spare_wbatches [index]);
        rocksdb_readoptions_destroy (self->ropts);
        rocksdb_writeoptions_destroy (self->wopts_nosync);
        rocksdb_writeoptions_destroy (self->wopts_sync);
        rocksdb_options_destroy (self->options);
        rocksdb_cache_destroy (self->cache);
        free (self->slots);
        free (self->others);
        free (self->failure);
        free (self->path);
        free (self);
        *self_p = NULL;
    }
}


//  --------------------------------------------------------------------------
//  Create the tenant's column family if it does not exist. 0 / -1 (+*err).

int
store_tenant_ensure (store_t *self, uint64_t tenant, char **err)
{
    assert (self);
    if (s_cf_lookup (self, tenant))
        return 0;
    if (self->failed) {
        s_set_err (err, "store: '%s' is in the failed state (%s)",
                   self->path, self->failure);
        return -1;
    }
    char name [32];
    snprintf (name, sizeof (name), STORE_TENANT_PFX "%" PRIu64, tenant);
    char *rerr = NULL;
    rocksdb_column_family_handle_t *cf =
        rocksdb_create_column_family (self->db, self->options, name, &rerr);
    if (rerr) {
        s_set_err (err, "store: cannot create column family '%s' in '%s': %s",
                   name, self->path, rerr);
        s_enter_failed (self, "create column family", rerr);
        free (rerr);
        if (cf)
            rocksdb_column_family_handle_destroy (cf);
        return -1;
    }
    s_tenant_insert (self, tenant, cf);
    //  Register it where a damaged MANIFEST cannot silently lose it
    uint8_t key [STORE_REGISTRY_KEY];
    s_registry_key (key, tenant);
    rocksdb_put_cf (self->db, self->wopts_sync, self->global, (const char *) key,
                    sizeof (key), "", 0, &rerr);
    if (rerr) {
        s_set_err (err, "store: cannot register column family '%s' in '%s': %s",
                   name, self->path, rerr);
        s_enter_failed (self, "register column family", rerr);
        free (rerr);
        return -1;
    }
    return 0;
}


//  --------------------------------------------------------------------------
//  True if the tenant's column family exists (always true for tenant 0).

bool
store_tenant_exists (store_t *self, uint64_t tenant)
{
    assert (self);
    return s_cf_lookup (self, tenant) != NULL;
}


//  --------------------------------------------------------------------------
//  Compare two tenant ids for qsort.

static int
s_tenant_compare (const void *left, const void *right)
{
    uint64_t a = *(const uint64_t *) left;
    uint64_t b = *(const uint64_t *) right;
    return (a > b) - (a < b);
}


//  --------------------------------------------------------------------------
//  Return the number of tenant CFs; fill ids with up to max ids, ascending.

size_t
store_tenant_list (store_t *self, uint64_t *ids, size_t max)
{
    assert (self);
    if (max == 0 || self->tenants == 0)
        return self->tenants;
    assert (ids);
    uint64_t *all = (uint64_t *) s_realloc (NULL, self->tenants * sizeof (uint64_t));
    size_t count = 0;
    for (size_t index = 0; index < self->slots_cap; index++)
        if (self->slots [index].cf)
            all [count++] = self->slots [index].tenant;
    assert (count == self->tenants);
    qsort (all, count, sizeof (uint64_t), s_tenant_compare);
    memcpy (ids, all, (count < max ? count : max) * sizeof (uint64_t));
    free (all);
    return count;
}


//  --------------------------------------------------------------------------
//  Create an empty write batch.

store_batch_t *
store_batch_new (void)
{
    store_batch_t *self = (store_batch_t *) s_realloc (NULL, sizeof (store_batch_t));
    memset (self, 0, sizeof (store_batch_t));
    return self;
}


//  --------------------------------------------------------------------------
//  Destroy a batch; idempotent; nulls *self_p.

void
store_batch_destroy (store_batch_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        store_batch_t *self = *self_p;
        free (self->ops);
        free (self->data);
        free (self->sorted);
        free (self);
        *self_p = NULL;
    }
}


//  --------------------------------------------------------------------------
//  Append bytes to the batch data buffer; returns their offset.

static size_t
s_batch_append (store_batch_t *self, const void *bytes, size_t len)
{
    size_t offset = self->data_len;
    if (len == 0)
        return offset;
    if (len > SIZE_MAX - self->data_len) {
        fprintf (stderr, "store: batch too large\n");
        abort ();
    }
    if (self->data_len + len > self->data_cap) {
        size_t new_cap = self->data_cap ? self->data_cap : 256;
        while (new_cap < self->data_len + len)
            new_cap = new_cap > SIZE_MAX / 2 ? self->data_len + len : new_cap * 2;
        self->data = (char *) s_realloc (self->data, new_cap);
        self->data_cap = new_cap;
    }
    memcpy (self->data + self->data_len, bytes, len);
    self->data_len += len;
    return offset;
}


//  --------------------------------------------------------------------------
//  Queue one operation in the batch (key and value copied).

static void
s_batch_add (store_batch_t *self, bool is_delete, uint64_t tenant,
             const void *key, size_t key_len, const void *value, size_t value_len)
{
    assert (self);
    assert (key || key_len == 0);
    assert (value || value_len == 0);
    if (self->count == self->ops_cap) {
        self->ops_cap = self->ops_cap ? self->ops_cap * 2 : 16;
        self->ops = (s_op_t *) s_realloc (self->ops, self->ops_cap * sizeof (s_op_t));
    }
    s_op_t *op = &self->ops [self->count++];
    op->tenant = tenant;
    op->is_delete = is_delete;
    op->key_len = key_len;
    op->key_off = s_batch_append (self, key, key_len);
    op->value_len = value_len;
    op->value_off = s_batch_append (self, value, value_len);
}


//  --------------------------------------------------------------------------
//  Queue a put into the CF of `tenant` (0 = global).

void
store_batch_put (store_batch_t *self, uint64_t tenant,
                 const void *key, size_t key_len,
                 const void *value, size_t value_len)
{
    s_batch_add (self, false, tenant, key, key_len, value, value_len);
}


//  --------------------------------------------------------------------------
//  Queue a delete into the CF of `tenant` (0 = global).

void
store_batch_delete (store_batch_t *self, uint64_t tenant,
                    const void *key, size_t key_len)
{
    s_batch_add (self, true, tenant, key, key_len, NULL, 0);
}


//  --------------------------------------------------------------------------
//  Number of queued operations.

size_t
store_batch_count (store_batch_t *self)
{
    assert (self);
    return self->count;
}


//  --------------------------------------------------------------------------
//  Remove all queued operations, keeping the memory.

void
store_batch_clear (store_batch_t *self)
{
    assert (self);
    self->count = 0;
    self->data_len = 0;
}


//  --------------------------------------------------------------------------
//  Order of operations for store_write: by tenant, then key bytes, then
//  their place in the batch (so a later write to the same key still wins).

static int
s_sorted_op_compare (const void *a_ptr, const void *b_ptr)
{
    const s_sorted_op_t *a = (const s_sorted_op_t *) a_ptr;
    const s_sorted_op_t *b = (const s_sorted_op_t *) b_ptr;
    if (a->tenant != b->tenant)
        return a->tenant < b->tenant ? -1 : 1;
    if (a->head [0] != b->head [0])
        return a->head [0] < b->head [0] ? -1 : 1;
    if (a->head [1] != b->head [1])
        return a->head [1] < b->head [1] ? -1 : 1;
    size_t common = a->key_len < b->key_len ? a->key_len : b->key_len;
    int rc = common ? memcmp (a->key, b->key, common) : 0;
    if (rc)
        return rc;
    if (a->key_len != b->key_len)
        return a->key_len < b->key_len ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

//  The first 16 key bytes as two numbers that compare as the bytes do
//  (zero-padded: a key that is a prefix of another also sorts first, as
//  the length decides when the bytes are equal)

static void
s_key_head (s_sorted_op_t *entry)
{
    uint8_t bytes [16] = { 0 };
    memcpy (bytes, entry->key, entry->key_len < 16 ? entry->key_len : 16);
    for (int half = 0; half < 2; half++) {
        uint64_t value = 0;
        for (int i = 0; i < 8; i++)
            value = (value << 8) | bytes [half * 8 + i];
        entry->head [half] = value;
    }
}

//  Puts the batch's operations in key order into batch->sorted. A memtable
//  insert starts from where the previous one landed, so keys in order cost
//  a fraction of keys in arrival order (the batch is atomic: the order of
//  different keys inside it is invisible to readers).

static void
s_batch_sort (store_batch_t *self)
{
    if (self->count > self->sorted_cap) {
        self->sorted_cap = self->ops_cap;
        self->sorted = (s_sorted_op_t *) s_realloc (self->sorted,
                           self->sorted_cap * sizeof (s_sorted_op_t));
    }
    bool in_order = true;
    for (size_t index = 0; index < self->count; index++) {
        const s_op_t *op = &self->ops [index];
        s_sorted_op_t *entry = &self->sorted [index];
        entry->tenant = op->tenant;
        entry->key = (self->data ? self->data : "") + op->key_off;
        entry->key_len = op->key_len;
        entry->index = index;
        s_key_head (entry);
        if (index && in_order && s_sorted_op_compare (entry - 1, entry) > 0)
            in_order = false;
    }
    if (!in_order)
        qsort (self->sorted, self->count, sizeof (s_sorted_op_t), s_sorted_op_compare);
}


//  --------------------------------------------------------------------------
//  A cleared write batch: a spare one (it keeps the memory it grew), or new

static rocksdb_writebatch_t *
s_wbatch_take (store_t *self)
{
    if (self->spare_wbatch_count)
        return self->spare_wbatches [--self->spare_wbatch_count];
    return rocksdb_writebatch_create ();
}

//  Clears a write batch and keeps it for a later commit, or destroys it

static void
s_wbatch_give_back (store_t *self, rocksdb_writebatch_t *wbatch)
{
    size_t size = 0;
    rocksdb_writebatch_data (wbatch, &size);
    if (self->spare_wbatch_count < STORE_SPARE_WBATCHES && size <= STORE_SPARE_WBATCH_MAX) {
        rocksdb_writebatch_clear (wbatch);
        self->spare_wbatches [self->spare_wbatch_count++] = wbatch;
    }
    else
        rocksdb_writebatch_destroy (wbatch);
}


//  --------------------------------------------------------------------------
//  A batch's write, prepared in the store's thread and applied in any one

struct _store_commit_t {
    store_t *store;                             //  Owning store
    rocksdb_writebatch_t *wbatch;               //  The operations, CFs resolved
    bool sync;                                  //  fsync the WAL before returning
    char *error;                                //  RocksDB's error, once applied
#ifdef CHORUS_TESTING
    bool fail;                                  //  Test hook: fake an I/O error
#endif
};

store_commit_t *
store_commit_new (store_t *self, store_batch_t *batch, bool sync, char **err)
{
    assert (self);
    assert (batch);
    if (self->failed) {
        s_set_err (err, "store: '%s' is in the failed state (%s)",
                   self->path, self->failure);
        return NULL;
    }
    //  Resolve every CF first: a missing one is a caller error, not an I/O one
    rocksdb_writebatch_t *wbatch = s_wbatch_take (self);
    const char *data = batch->data ? batch->data : "";
    s_batch_sort (batch);
    for (size_t index = 0; index < batch->count; index++) {
        const s_op_t *op = &batch->ops [batch->sorted [index].index];
        rocksdb_column_family_handle_t *cf = self->global;
        if (op->tenant != STORE_GLOBAL) {
            s_slot_t *slot = s_slot_lookup (self, op->tenant);
            cf = slot? slot->cf: NULL;
            if (slot)
                s_count_written (self, slot, op->key_len + op->value_len);
        }
        if (!cf) {
            s_set_err (err, "store: write to tenant %" PRIu64 " which has no "
                       "column family in '%s' (store_tenant_ensure first)",
                       op->tenant, self->path);
            s_wbatch_give_back (self, wbatch);
            return NULL;
        }
        const char *key = data + op->key_off;
        if (op->is_delete)
            rocksdb_writebatch_delete_cf (wbatch, cf, key, op->key_len);
        else
            rocksdb_writebatch_put_cf (wbatch, cf, key, op->key_len,
                                       data + op->value_off, op->value_len);
    }
    store_commit_t *commit = (store_commit_t *) s_realloc (NULL, sizeof (store_commit_t));
    memset (commit, 0, sizeof (store_commit_t));
    commit->store = self;
    commit->wbatch = wbatch;
    commit->sync = sync;
#ifdef CHORUS_TESTING
    commit->fail = self->fail_next_write;
    self->fail_next_write = false;
#endif
    return commit;
}


//  --------------------------------------------------------------------------
//  Write it: touches nothing of the store but RocksDB, which is thread-safe

void
store_commit_apply (store_commit_t *self)
{
    assert (self);
    store_t *store = self->store;
#ifdef CHORUS_TESTING
    if (self->fail) {
        self->error = s_strdup ("IO error: simulated write failure (store_test_fail_next_write)");
        return;
    }
#endif
    rocksdb_write (store->db, self->sync ? store->wopts_sync : store->wopts_nosync,
                   self->wbatch, &self->error);
}


//  --------------------------------------------------------------------------
//  Back in the store's thread: the outcome; a failed write fails the store
//  for good (see store_write). Destroys the commit.

int
store_commit_finish (store_commit_t **self_p, char **err)
{
    assert (self_p && *self_p);
    store_commit_t *self = *self_p;
    store_t *store = self->store;
    int rc = 0;
    if (self->error) {
        s_set_err (err, "store: write to '%s' failed: %s", store->path, self->error);
        s_enter_failed (store, "write", self->error);
        free (self->error);
        rc = -1;
    }
    else
    if (store->filter_wanted)
        s_filter_busy_tenants (store);
    s_wbatch_give_back (store, self->wbatch);
    free (self);
    *self_p = NULL;
    return rc;
}


//  --------------------------------------------------------------------------
//  Apply the batch atomically across CFs; sticky failed state on write error.

int
store_write (store_t *self, store_batch_t *batch, bool sync, char **err)
{
    store_commit_t *commit = store_commit_new (self, batch, sync, err);
    if (!commit)
        return -1;
    store_commit_apply (commit);
    return store_commit_finish (&commit, err);
}


//  --------------------------------------------------------------------------
//  True once a write failed.

bool
store_failed (store_t *self)
{
    assert (self);
    return self->failed;
}


//  --------------------------------------------------------------------------
//  Point read: 1 found (*value malloc'd), 0 not found, -1 error (*err).

int
store_get (store_t *self, uint64_t tenant, const void *key, size_t key_len,
           char **value, size_t *value_len, char **err)
{
    assert (self);
    assert (key || key_len == 0);
    assert (value);
    assert (value_len);
    *value = NULL;
    *value_len = 0;
    rocksdb_column_family_handle_t *cf = s_cf_lookup (self, tenant);
    if (!cf) {
        s_set_err (err, "store: read from tenant %" PRIu64 " which has no "
                   "column family in '%s'", tenant, self->path);
        return -1;
    }
    char *rerr = NULL;
    //  Pinned get: distinguishes an empty value from "not found"
    rocksdb_pinnableslice_t *slice = rocksdb_get_pinned_cf (
        self->db, self->ropts, cf, (const char *) key, key_len, &rerr);
    if (rerr) {
        s_set_err (err, "store: read from '%s' failed: %s", self->path, rerr);
        free (rerr);
        if (slice)
            rocksdb_pinnableslice_destroy (slice);
        return -1;
    }
    if (!slice)
        return 0;
    size_t len = 0;
    const char *bytes = rocksdb_pinnableslice_value (slice, &len);
    char *copy = (char *) s_realloc (NULL, len + 1);
    if (len)
        memcpy (copy, bytes, len);
    copy [len] = '\0';
    rocksdb_pinnableslice_destroy (slice);
    *value = copy;
    *value_len = len;
    return 1;
}


//  --------------------------------------------------------------------------
//  Create an iterator over [lower, upper) of one tenant's CF (bounds copied).
//  Returns NULL if the tenant's CF does not exist.

store_iter_t *
store_iter_new (store_t *self, uint64_t tenant,
                const void *lower, size_t lower_len,
                const void *upper, size_t upper_len)
{
    assert (self);
    rocksdb_column_family_handle_t *cf = s_cf_lookup (self, tenant);
    if (!cf)
        return NULL;
    store_iter_t *iter = (store_iter_t *) s_realloc (NULL, sizeof (store_iter_t));
    memset (iter, 0, sizeof (store_iter_t));
    iter->store = self;
    iter->ropts = rocksdb_readoptions_create ();
    //  The read options keep pointers to the bounds: they live in iter
    if (lower) {
        iter->lower = s_memdup (lower, lower_len);
        rocksdb_readoptions_set_iterate_lower_bound (iter->ropts, iter->lower, lower_len);
    }
    if (upper) {
        iter->upper = s_memdup (upper, upper_len);
        rocksdb_readoptions_set_iterate_upper_bound (iter->ropts, iter->upper, upper_len);
    }
    iter->iter = rocksdb_create_iterator_cf (self->db, iter->ropts, cf);
    self->iterators++;
    return iter;
}


//  --------------------------------------------------------------------------
//  Destroy an iterator; idempotent; nulls *self_p.

void
store_iter_destroy (store_iter_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        store_iter_t *self = *self_p;
        rocksdb_iter_destroy (self->iter);
        rocksdb_readoptions_destroy (self->ropts);
        free (self->lower);
        free (self->upper);
        assert (self->store->iterators > 0);
        self->store->iterators--;
        free (self);
        *self_p = NULL;
    }
}


//  --------------------------------------------------------------------------
//  Position at the first key >= key.

void
store_iter_seek (store_iter_t *self, const void *key, size_t key_len)
{
    assert (self);
    assert (key || key_len == 0);
    rocksdb_iter_seek (self->iter, (const char *) key, key_len);
}


//  --------------------------------------------------------------------------
//  Position at the last key <= key.

void
store_iter_seek_for_prev (store_iter_t *self, const void *key, size_t key_len)
{
    assert (self);
    assert (key || key_len == 0);
    rocksdb_iter_seek_for_prev (self->iter, (const char *) key, key_len);
}


//  --------------------------------------------------------------------------
//  Position at the first key within the bounds.

void
store_iter_first (store_iter_t *self)
{
    assert (self);
    rocksdb_iter_seek_to_first (self->iter);
}


//  --------------------------------------------------------------------------
//  Position at the last key within the bounds.

void
store_iter_last (store_iter_t *self)
{
    assert (self);
    rocksdb_iter_seek_to_last (self->iter);
}


//  --------------------------------------------------------------------------
//  True if the iterator is positioned on a key.

bool
store_iter_valid (store_iter_t *self)
{
    assert (self);
    return rocksdb_iter_valid (self->iter) != 0;
}


//  --------------------------------------------------------------------------
//  Move to the next key.

void
store_iter_next (store_iter_t *self)
{
    assert (self);
    assert (rocksdb_iter_valid (self->iter));
    rocksdb_iter_next (self->iter);
}


//  --------------------------------------------------------------------------
//  Move to the previous key.

void
store_iter_prev (store_iter_t *self)
{
    assert (self);
    assert (rocksdb_iter_valid (self->iter));
    rocksdb_iter_prev (self->iter);
}


//  --------------------------------------------------------------------------
//  Current key, or NULL if the iterator is not valid.

const void *
store_iter_key (store_iter_t *self, size_t *len)
{
    assert (self);
    assert (len);
    *len = 0;
    if (!rocksdb_iter_valid (self->iter))
        return NULL;
    return rocksdb_iter_key (self->iter, len);
}


//  --------------------------------------------------------------------------
//  Current value, or NULL if the iterator is not valid.

const void *
store_iter_value (store_iter_t *self, size_t *len)
{
    assert (self);
    assert (len);
    *len = 0;
    if (!rocksdb_iter_valid (self->iter))
        return NULL;
    return rocksdb_iter_value (self->iter, len);
}


//  --------------------------------------------------------------------------
//  -1 (+*err) if the iterator hit an error, else 0.

int
store_iter_status (store_iter_t *self, char **err)
{
    assert (self);
    char *rerr = NULL;
    rocksdb_iter_get_error (self->iter, &rerr);
    if (rerr) {
        s_set_err (err, "store: iterator on '%s' failed: %s", self->store->path, rerr);
        free (rerr);
        return -1;
    }
    return 0;
}


//  --------------------------------------------------------------------------
//  Write value as 8 big-endian bytes.

void
store_u64_put (uint8_t *dest, uint64_t value)
{
    assert (dest);
    for (int index = 7; index >= 0; index--) {
        dest [index] = (uint8_t) (value & 0xff);
        value >>= 8;
    }
}


//  --------------------------------------------------------------------------
//  Read 8 big-endian bytes.

uint64_t
store_u64_get (const uint8_t *src)
{
    assert (src);
    uint64_t value = 0;
    for (int index = 0; index < 8; index++)
        value = (value << 8) | src [index];
    return value;
}


#ifdef CHORUS_TESTING
//  --------------------------------------------------------------------------
//  Test hook: make the next validated store_write fail like an I/O error.

void
store_test_fail_next_write (store_t *self)
{
    assert (self);
    self->fail_next_write = true;
}
#endif
