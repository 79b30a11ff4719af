/*  =========================================================================
    fail_nth - LD_PRELOAD shim: fail the Nth write or sync under a directory

    SQLite-style "Nth operation" fault injection for the I/O fault tests
    (tests/integration/test_io_faults.py). libfiu can fail a function always,
    once, or at random, but it cannot count; this shim counts.

    Counted operations (only on file descriptors whose /proc/self/fd target
    is under FAIL_NTH_DIR, so ZeroMQ's eventfds, sockets and the server log
    are never touched):
        write pwrite pwrite64 writev pwritev pwritev64 fdatasync fsync
        and, if asked for, rename (source path under the directory)
    Files whose name starts with a prefix in FAIL_NTH_SKIP (default "LOG",
    RocksDB's info log) are never counted: their writes depend on timers,
    which would make N irreproducible.

    The Nth counted operation after arming fails once (FIU_ONETIME style:
    the next call succeeds again, which is exactly the case where a server
    that retries fsync would wrongly succeed) with errno FAIL_NTH_ERRNO.
    Unless FAIL_NTH_KEEP_UNSYNCED=1, a failed fdatasync/fsync of a regular
    file also truncates that file to its size at its last successful sync:
    the kernel may drop dirty pages after a writeback error ("fsyncgate"),
    and this makes an ack sent after a failed sync show up as a lost message
    after a restart instead of passing unnoticed.

    Environment:
        FAIL_NTH_DIR    directory (absolute, canonical); required
        FAIL_NTH_CTL    control file, 4096 bytes, mapped shared; see below
        FAIL_NTH_N      arm at start: fail the Nth operation from start-up
        FAIL_NTH_ERRNO  errno for FAIL_NTH_N (default 5, EIO)
        FAIL_NTH_OPS    operations for FAIL_NTH_N, comma list (default
                        write,pwrite,writev,fdatasync,fsync)
        FAIL_NTH_SKIP   comma list of file name prefixes never counted
        FAIL_NTH_KEEP_UNSYNCED  1: do not truncate after a failed sync

    Control file: little-endian int64 slots, written by the test, read
    and updated by the shim without system calls (MAP_SHARED):
        [0] gen     arm generation; the test bumps it to arm again
        [1] n       fail the nth counted operation; 0 = disarmed
        [2] errno   errno to fail with
        [3] ops     bit mask of operations (OP_* below)
        [4] count   operations counted since arming (shim)
        [5] fired   generation that fired (shim)
        [6] op      OP_* bit of the operation that failed (shim)
        [7] pid     pid of the process that failed it (shim)
        [8..]       byte 64: path of the file it failed on, NUL-ended (shim)

    Build: gcc -shared -fPIC -O1 -o fail_nth.so fail_nth.c -ldl
    =========================================================================
*/
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define OP_WRITE     1
#define OP_PWRITE    2
#define OP_WRITEV    4
#define OP_FDATASYNC 8
#define OP_FSYNC     16
#define OP_RENAME    32

#define CTL_SIZE     4096
#define CTL_PATH_OFF 64
#define FD_MAX       4096               //  fds tracked for "size at last sync"

typedef struct {
    int64_t gen, n, err, ops, count, fired, op, pid;
} ctl_t;

typedef struct {
    dev_t dev;
    ino_t ino;
    off_t synced;                       //  size at the last successful sync
    int valid;
} track_t;

static ssize_t (*real_write) (int, const void *, size_t);
static ssize_t (*real_pwrite) (int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64) (int, const void *, size_t, off_t);
static ssize_t (*real_writev) (int, const struct iovec *, int);
static ssize_t (*real_pwritev) (int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev64) (int, const struct iovec *, int, off_t);
static int (*real_fdatasync) (int);
static int (*real_fsync) (int);
static int (*real_rename) (const char *, const char *);

static char s_dir [PATH_MAX];
static size_t s_dir_len;
static char s_skip [256] = "LOG";
static int s_keep_unsynced;
static ctl_t s_private;                 //  used when there is no control file
static volatile ctl_t *s_ctl;
static char *s_ctl_path_area;
static track_t s_files [FD_MAX];
static int s_ready;

static void *
s_sym (const char *name)
{
    return dlsym (RTLD_NEXT, name);
}

//  Resolves the real functions (also when called before the constructor)
static void
s_resolve (void)
{
    if (real_rename)
        return;
    real_write = s_sym ("write");
    real_pwrite = s_sym ("pwrite");
    real_pwrite64 = s_sym ("pwrite64");
    real_writev = s_sym ("writev");
    real_pwritev = s_sym ("pwritev");
    real_pwritev64 = s_sym ("pwritev64");
    real_fdatasync = s_sym ("fdatasync");
    real_fsync = s_sym ("fsync");
    real_rename = s_sym ("rename");
}

static int
s_ops_parse (const char *list)
{
    if (!list || !*list)
        return OP_WRITE | OP_PWRITE | OP_WRITEV | OP_FDATASYNC | OP_FSYNC;
    int ops = 0;
    if (strstr (list, "pwrite"))    ops |= OP_PWRITE;
    if (strstr (list, "writev"))    ops |= OP_WRITEV;
    //  "write" alone (not only as part of pwrite/writev)
    for (const char *p = list; (p = strstr (p, "write")); p += 5)
        if ((p == list || p [-1] == ',') && (p [5] == 0 || p [5] == ','))
            ops |= OP_WRITE;
    if (strstr (list, "fdatasync")) ops |= OP_FDATASYNC;
    for (const char *p = list; (p = strstr (p, "fsync")); p += 5)
        if (p == list || p [-1] == ',')
            ops |= OP_FSYNC;
    if (strstr (list, "rename"))    ops |= OP_RENAME;
    return ops;
}

__attribute__ ((constructor)) static void
s_init (void)
{
    s_resolve ();
    const char *dir = getenv ("FAIL_NTH_DIR");
    if (!dir || !*dir || strlen (dir) >= sizeof (s_dir) - 2)
        return;                         //  no directory: count nothing
    snprintf (s_dir, sizeof (s_dir), "%s", dir);
    s_dir_len = strlen (s_dir);
    while (s_dir_len > 1 && s_dir [s_dir_len - 1] == '/')
        s_dir [--s_dir_len] = 0;
    const char *skip = getenv ("FAIL_NTH_SKIP");
    if (skip)
        snprintf (s_skip, sizeof (s_skip), "%s", skip);
    const char *keep = getenv ("FAIL_NTH_KEEP_UNSYNCED");
    s_keep_unsynced = keep && *keep == '1';
    s_ctl = &s_private;
    const char *ctl_path = getenv ("FAIL_NTH_CTL");
    if (ctl_path && *ctl_path) {
        int fd = open (ctl_path, O_RDWR | O_CLOEXEC);
        void *map = fd >= 0? mmap (NULL, CTL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0): MAP_FAILED;
        if (fd >= 0)
            close (fd);
        if (map != MAP_FAILED) {
            s_ctl = (volatile ctl_t *) map;
            s_ctl_path_area = (char *) map + CTL_PATH_OFF;
        }
        else {
            fprintf (stderr, "fail_nth: cannot map control file %s\n", ctl_path);
            abort ();
        }
    }
    const char *n = getenv ("FAIL_NTH_N");
    if (n && atoll (n) > 0) {
        const char *err = getenv ("FAIL_NTH_ERRNO");
        s_ctl->err = err? atoi (err): EIO;
        s_ctl->ops = s_ops_parse (getenv ("FAIL_NTH_OPS"));
        s_ctl->count = 0;
        s_ctl->fired = 0;
        s_ctl->gen = s_ctl->gen + 1;
        __atomic_store_n (&s_ctl->n, atoll (n), __ATOMIC_RELEASE);
    }
    s_ready = 1;
}

//  The path of an fd if it is a file under the directory and not skipped
static int
s_fd_path (int fd, char *path, size_t size)
{
    char link [64];
    snprintf (link, sizeof (link), "/proc/self/fd/%d", fd);
    ssize_t len = readlink (link, path, size - 1);
    if (len <= 0)
        return 0;
    path [len] = 0;
    return 1;
}

static int
s_under_dir (const char *path)
{
    if (strncmp (path, s_dir, s_dir_len) != 0
    ||  (path [s_dir_len] != '/' && path [s_dir_len] != 0))
        return 0;
    const char *base = strrchr (path, '/');
    base = base? base + 1: path;
    //  Skip list: comma separated name prefixes
    const char *p = s_skip;
    while (*p) {
        const char *end = strchr (p, ',');
        size_t len = end? (size_t) (end - p): strlen (p);
        if (len && strncmp (base, p, len) == 0)
            return 0;
        p += len + (end? 1: 0);
    }
    return 1;
}

//  Remembers the size of a file the first time we see it (before any write
//  we see), and again after each successful sync
static void
s_track (int fd, int after_sync)
{
    struct stat st;
    if (fd < 0 || fd >= FD_MAX || fstat (fd, &st) || !S_ISREG (st.st_mode))
        return;
    track_t *t = &s_files [fd];
    if (after_sync || !t->valid || t->dev != st.st_dev || t->ino != st.st_ino) {
        t->dev = st.st_dev;
        t->ino = st.st_ino;
        t->synced = st.st_size;
        t->valid = 1;
    }
}

//  Counts an operation; true if this one must fail (errno set)
static int
s_must_fail (int op, const char *path)
{
    volatile ctl_t *ctl = s_ctl;
    int64_t n = __atomic_load_n (&ctl->n, __ATOMIC_ACQUIRE);
    if (n <= 0 || !(ctl->ops & op))
        return 0;
    int64_t gen = ctl->gen;
    if (__atomic_load_n (&ctl->fired, __ATOMIC_ACQUIRE) == gen)
        return 0;
    int64_t count = __atomic_add_fetch (&ctl->count, 1, __ATOMIC_ACQ_REL);
    if (count != n)
        return 0;
    ctl->op = op;
    ctl->pid = getpid ();
    if (s_ctl_path_area)
        snprintf (s_ctl_path_area, CTL_SIZE - CTL_PATH_OFF, "%s", path);
    __atomic_store_n (&ctl->fired, gen, __ATOMIC_RELEASE);
    char line [PATH_MAX + 128];
    int len = snprintf (line, sizeof (line), "fail_nth: failing operation %lld (op %d) on %s with errno %lld\n",
                        (long long) n, op, path, (long long) ctl->err);
    if (len > 0 && real_write)
        real_write (2, line, (size_t) len < sizeof (line)? (size_t) len: sizeof (line) - 1);
    errno = (int) ctl->err;
    return 1;
}

//  Common path for the write family: returns 1 if the call must fail
static int
s_write_check (int fd, int op)
{
    s_resolve ();
    if (!s_ready || !s_dir_len)
        return 0;
    char path [PATH_MAX];
    if (!s_fd_path (fd, path, sizeof (path)) || !s_under_dir (path))
        return 0;
    s_track (fd, 0);
    return s_must_fail (op, path);
}

ssize_t
write (int fd, const void *buf, size_t count)
{
    if (s_write_check (fd, OP_WRITE))
        return -1;
    return real_write (fd, buf, count);
}

ssize_t
pwrite (int fd, const void *buf, size_t count, off_t offset)
{
    if (s_write_check (fd, OP_PWRITE))
        return -1;
    return real_pwrite (fd, buf, count, offset);
}

ssize_t
pwrite64 (int fd, const void *buf, size_t count, off_t offset)
{
    if (s_write_check (fd, OP_PWRITE))
        return -1;
    return real_pwrite64 (fd, buf, count, offset);
}

ssize_t
writev (int fd, const struct iovec *iov, int iovcnt)
{
    if (s_write_check (fd, OP_WRITEV))
        return -1;
    return real_writev (fd, iov, iovcnt);
}

ssize_t
pwritev (int fd, const struct iovec *iov, int iovcnt, off_t offset)
{
    if (s_write_check (fd, OP_WRITEV))
        return -1;
    return real_pwritev (fd, iov, iovcnt, offset);
}

ssize_t
pwritev64 (int fd, const struct iovec *iov, int iovcnt, off_t offset)
{
    if (s_write_check (fd, OP_WRITEV))
        return -1;
    return real_pwritev64 (fd, iov, iovcnt, offset);
}

//  fdatasync and fsync: count, maybe fail (dropping what was never synced)
static int
s_sync (int fd, int op, int (*real) (int))
{
    s_resolve ();
    char path [PATH_MAX];
    int ours = s_ready && s_dir_len && s_fd_path (fd, path, sizeof (path)) && s_under_dir (path);
    if (ours) {
        s_track (fd, 0);
        if (s_must_fail (op, path)) {
            int saved = errno;
            struct stat st;
            if (!s_keep_unsynced && fd < FD_MAX && s_files [fd].valid
            &&  fstat (fd, &st) == 0 && S_ISREG (st.st_mode)
            &&  st.st_size > s_files [fd].synced) {
                char line [PATH_MAX + 128];
                int len = snprintf (line, sizeof (line),
                    "fail_nth: dropping unsynced bytes of %s: %lld -> %lld\n", path,
                    (long long) st.st_size, (long long) s_files [fd].synced);
                if (len > 0)
                    real_write (2, line, (size_t) len < sizeof (line)? (size_t) len: sizeof (line) - 1);
                if (ftruncate (fd, s_files [fd].synced))
                    real_write (2, "fail_nth: ftruncate failed\n", 27);
            }
            errno = saved;
            return -1;
        }
    }
    int rc = real (fd);
    if (rc == 0 && ours)
        s_track (fd, 1);
    return rc;
}

int
fdatasync (int fd)
{
    s_resolve ();
    return s_sync (fd, OP_FDATASYNC, real_fdatasync);
}

int
fsync (int fd)
{
    s_resolve ();
    return s_sync (fd, OP_FSYNC, real_fsync);
}

int
rename (const char *from, const char *to)
{
    s_resolve ();
    if (s_ready && s_dir_len && from) {
        char path [PATH_MAX];
        if (realpath (from, path) && s_under_dir (path) && s_must_fail (OP_RENAME, path))
            return -1;
    }
    return real_rename (from, to);
}
