/*  =========================================================================
    lose_unsynced - LD_PRELOAD shim: record what a power loss would keep

    After LevelDB's fault_injection_test (FaultInjectionTestEnv): what is
    durable after a power loss is, per file, the bytes it had at its last
    successful fsync/fdatasync, and a file's directory entry (creation,
    rename, link) only once its directory was fsync'ed. This shim records
    those facts as they happen, one line per event appended (O_APPEND, one
    write(2) per line) to the side log LOSE_UNSYNCED_LOG, so the log is
    complete up to the instant of a SIGKILL: a sync's line is written before
    the call returns to its caller, so anything the server acknowledged
    after a sync has that sync in the log. apply_power_loss.py then reads
    the log and throws away everything that was not synced.

    Intercepted (the calls librocksdb 7.8 imports, checked with nm -D, plus
    their siblings): open open64 openat openat64 creat creat64 write pwrite
    pwrite64 writev pwritev fsync fdatasync ftruncate ftruncate64 rename
    renameat link unlink unlinkat close. Only paths under LOSE_UNSYNCED_ROOT
    (absolute; default: every absolute path outside /proc /sys /dev) are
    tracked. fopen/fwrite go through libc internals and are not seen (RocksDB
    uses them for nothing that matters here).

    Side log lines (tab-separated, path last):
        O  created(0/1) truncated(0/1) size-at-open  path   open for writing
        S  size  written-since-last-sync  path     fsync/fdatasync ok (size
                                                   taken BEFORE the call)
        D  path                                    fsync of a directory ok
        E  errno  path                             a sync failed
        R  prev  old  new                          rename ok; prev = hard link
                                                   to the replaced target, "-"
        L  old  new                                link ok
        U  path                                    unlink ok
        T  size  path                              ftruncate ok
        C  size  unsynced-bytes  path              close (informational)
        F  size  path                              a sync faked (see below)

    Environment:
        LOSE_UNSYNCED_LOG        side log path (required; nothing is
                                 recorded without it)
        LOSE_UNSYNCED_ROOT       only track paths under this prefix
        LOSE_UNSYNCED_FAKE_SYNC  negative control: fsync/fdatasync of files
                                 whose path matches this fnmatch pattern
                                 (e.g. "*messages/0*.log", the messages WAL)
                                 return 0 without syncing and are logged as
                                 F, not S: a server that "syncs" like this
                                 loses acked writes on power loss, never on
                                 kill -9.

    Build: gcc -shared -fPIC -O1 -o lose_unsynced.so lose_unsynced.c -ldl -lpthread
    =========================================================================
*/
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FD 65536

typedef struct { char *path; int is_dir; long long unsynced; } slot_t;
static slot_t s_fds [MAX_FD];
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static int s_log = -2;                  //  -2: not opened yet, -1: disabled
static const char *s_root, *s_fake;
static unsigned long s_prev_count;

#define REAL(ret, name, args) \
    static ret (*real_##name) args; \
    if (!real_##name) real_##name = (ret (*) args) dlsym (RTLD_NEXT, #name)

static ssize_t s_raw_write (int fd, const void *buf, size_t len)
{
    REAL (ssize_t, write, (int, const void *, size_t));
    return real_write (fd, buf, len);
}

//  Opens the side log on first use; 1 if recording
static int s_enabled (void)
{
    if (s_log == -2) {
        int saved = errno;
        const char *path = getenv ("LOSE_UNSYNCED_LOG");
        s_root = getenv ("LOSE_UNSYNCED_ROOT");
        s_fake = getenv ("LOSE_UNSYNCED_FAKE_SYNC");
        REAL (int, open, (const char *, int, ...));
        s_log = path ? real_open (path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
        errno = saved;
    }
    return s_log >= 0;
}

//  Appends one line to the side log (one write: lines never interleave)
static void s_emit (const char *fmt, ...)
{
    if (!s_enabled ())
        return;
    char line [3 * PATH_MAX + 128];
    va_list ap;
    va_start (ap, fmt);
    int n = vsnprintf (line, sizeof line - 1, fmt, ap);
    va_end (ap);
    if (n < 0 || n >= (int) sizeof line - 1)
        return;
    line [n++] = '\n';
    int saved = errno;
    s_raw_write (s_log, line, n);
    errno = saved;
}

//  Absolute path of (dirfd, path) into out; 0 if not tracked
static int s_resolve (int dirfd, const char *path, char *out)
{
    if (!path || !s_enabled ())
        return 0;
    if (path [0] == '/')
        snprintf (out, PATH_MAX, "%s", path);
    else {
        char base [PATH_MAX];
        if (dirfd == AT_FDCWD) {
            if (!getcwd (base, sizeof base))
                return 0;
        }
        else {
            char link [64];
            snprintf (link, sizeof link, "/proc/self/fd/%d", dirfd);
            ssize_t len = readlink (link, base, sizeof base - 1);
            if (len < 0)
                return 0;
            base [len] = 0;
        }
        if (snprintf (out, PATH_MAX, "%.2047s/%.2047s", base, path) >= PATH_MAX)
            return 0;
    }
    size_t len = strlen (out);
    while (len > 1 && out [len - 1] == '/')
        out [--len] = 0;
    if (s_root)
        return strncmp (out, s_root, strlen (s_root)) == 0;
    return strncmp (out, "/proc/", 6) && strncmp (out, "/sys/", 5) && strncmp (out, "/dev/", 5);
}

static void s_track (int fd, const char *abs, int created, int truncated, int flags)
{
    if (fd < 0 || fd >= MAX_FD)
        return;
    struct stat st;
    if (fstat (fd, &st))
        return;
    pthread_mutex_lock (&s_lock);
    free (s_fds [fd].path);
    s_fds [fd].path = strdup (abs);
    s_fds [fd].is_dir = S_ISDIR (st.st_mode);
    s_fds [fd].unsynced = 0;
    pthread_mutex_unlock (&s_lock);
    if (!S_ISDIR (st.st_mode) && (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)))
        s_emit ("O\t%d\t%d\t%lld\t%s", created, truncated, (long long) st.st_size, abs);
}

static int s_open_common (int dirfd, const char *path, int flags, mode_t mode, int at)
{
    char abs [PATH_MAX];
    int tracked = s_resolve (dirfd, path, abs);
    int existed = tracked ? faccessat (dirfd, path, F_OK, 0) == 0 : 1;
    int fd;
    if (at) {
        REAL (int, openat, (int, const char *, int, ...));
        fd = real_openat (dirfd, path, flags, mode);
    }
    else {
        REAL (int, open, (const char *, int, ...));
        fd = real_open (path, flags, mode);
    }
    if (fd >= 0 && tracked) {
        int saved = errno;
        s_track (fd, abs, !existed && (flags & O_CREAT), existed && (flags & O_TRUNC), flags);
        errno = saved;
    }
    return fd;
}

#define MODE_ARG(flags) \
    mode_t mode = 0; \
    if (((flags) & O_CREAT) || ((flags) & __O_TMPFILE) == __O_TMPFILE) { va_list ap; va_start (ap, flags); \
        mode = (mode_t) va_arg (ap, int); va_end (ap); }

int open (const char *path, int flags, ...)
{ MODE_ARG (flags); return s_open_common (AT_FDCWD, path, flags, mode, 0); }
int open64 (const char *path, int flags, ...)
{ MODE_ARG (flags); return s_open_common (AT_FDCWD, path, flags, mode, 0); }
int openat (int dirfd, const char *path, int flags, ...)
{ MODE_ARG (flags); return s_open_common (dirfd, path, flags, mode, 1); }
int openat64 (int dirfd, const char *path, int flags, ...)
{ MODE_ARG (flags); return s_open_common (dirfd, path, flags, mode, 1); }
int creat (const char *path, mode_t mode)
{ return s_open_common (AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode, 0); }
int creat64 (const char *path, mode_t mode)
{ return s_open_common (AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode, 0); }

static void s_wrote (int fd, ssize_t n)
{
    if (n > 0 && fd >= 0 && fd < MAX_FD && s_fds [fd].path)
        __atomic_add_fetch (&s_fds [fd].unsynced, n, __ATOMIC_RELAXED);
}

ssize_t write (int fd, const void *buf, size_t len)
{ ssize_t n = s_raw_write (fd, buf, len); s_wrote (fd, n); return n; }
ssize_t pwrite (int fd, const void *buf, size_t len, off_t off)
{ REAL (ssize_t, pwrite, (int, const void *, size_t, off_t));
  ssize_t n = real_pwrite (fd, buf, len, off); s_wrote (fd, n); return n; }
ssize_t pwrite64 (int fd, const void *buf, size_t len, off_t off)
{ REAL (ssize_t, pwrite64, (int, const void *, size_t, off_t));
  ssize_t n = real_pwrite64 (fd, buf, len, off); s_wrote (fd, n); return n; }
ssize_t writev (int fd, const struct iovec *iov, int cnt)
{ REAL (ssize_t, writev, (int, const struct iovec *, int));
  ssize_t n = real_writev (fd, iov, cnt); s_wrote (fd, n); return n; }
ssize_t pwritev (int fd, const struct iovec *iov, int cnt, off_t off)
{ REAL (ssize_t, pwritev, (int, const struct iovec *, int, off_t));
  ssize_t n = real_pwritev (fd, iov, cnt, off); s_wrote (fd, n); return n; }

//  Path of a tracked fd, copied (close may race); 0 if untracked
static int s_path_of (int fd, char *out, int *is_dir, long long *unsynced)
{
    int found = 0;
    if (fd < 0 || fd >= MAX_FD)
        return 0;
    pthread_mutex_lock (&s_lock);
    if (s_fds [fd].path) {
        snprintf (out, PATH_MAX, "%s", s_fds [fd].path);
        *is_dir = s_fds [fd].is_dir;
        *unsynced = s_fds [fd].unsynced;
        found = 1;
    }
    pthread_mutex_unlock (&s_lock);
    return found;
}

static int s_sync (int fd, int data_only)
{
    REAL (int, fsync, (int));
    REAL (int, fdatasync, (int));
    char path [PATH_MAX];
    int is_dir = 0;
    long long unsynced = 0;
    if (!s_path_of (fd, path, &is_dir, &unsynced))
        return data_only ? real_fdatasync (fd) : real_fsync (fd);
    struct stat st;
    long long size = fstat (fd, &st) == 0 ? (long long) st.st_size : -1;
    if (!is_dir && s_fake && *s_fake && fnmatch (s_fake, path, 0) == 0) {
        s_emit ("F\t%lld\t%s", size, path);
        return 0;                       //  the lie the negative control tells
    }
    int rc = data_only ? real_fdatasync (fd) : real_fsync (fd);
    int saved = errno;
    if (rc)
        s_emit ("E\t%d\t%s", saved, path);
    else
    if (is_dir)
        s_emit ("D\t%s", path);
    else {
        __atomic_sub_fetch (&s_fds [fd].unsynced, unsynced, __ATOMIC_RELAXED);
        s_emit ("S\t%lld\t%lld\t%s", size, unsynced, path);
    }
    errno = saved;
    return rc;
}

int fsync (int fd) { return s_sync (fd, 0); }
int fdatasync (int fd) { return s_sync (fd, 1); }

static int s_truncated (int fd, off_t size, int rc)
{
    char path [PATH_MAX];
    int is_dir;
    long long unsynced;
    if (rc == 0 && s_path_of (fd, path, &is_dir, &unsynced)) {
        int saved = errno;
        s_emit ("T\t%lld\t%s", (long long) size, path);
        errno = saved;
    }
    return rc;
}

int ftruncate (int fd, off_t size)
{ REAL (int, ftruncate, (int, off_t)); return s_truncated (fd, size, real_ftruncate (fd, size)); }
int ftruncate64 (int fd, off_t size)
{ REAL (int, ftruncate64, (int, off_t)); return s_truncated (fd, size, real_ftruncate64 (fd, size)); }

static int s_rename (int olddirfd, const char *old, int newdirfd, const char *new_, int at)
{
    REAL (int, rename, (const char *, const char *));
    REAL (int, renameat, (int, const char *, int, const char *));
    REAL (int, link, (const char *, const char *));
    REAL (int, unlink, (const char *));
    char a [PATH_MAX] = "", b [PATH_MAX] = "", prev [PATH_MAX + 64];
    int tracked = s_resolve (olddirfd, old, a) | s_resolve (newdirfd, new_, b);
    strcpy (prev, "-");
    if (tracked && access (b, F_OK) == 0) {
        //  Keep the replaced target (a hard link) in case the rename is
        //  never made durable: a power loss would bring it back
        const char *log = getenv ("LOSE_UNSYNCED_LOG");
        snprintf (prev, sizeof prev, "%s.prev.%d.%lu", log, (int) getpid (),
                  __atomic_add_fetch (&s_prev_count, 1, __ATOMIC_RELAXED));
        if (real_link (b, prev))
            strcpy (prev, "-");
    }
    int rc = at ? real_renameat (olddirfd, old, newdirfd, new_) : real_rename (old, new_);
    int saved = errno;
    if (tracked) {
        if (rc == 0)
            s_emit ("R\t%s\t%s\t%s", prev, a, b);
        else
        if (strcmp (prev, "-"))
            real_unlink (prev);
    }
    errno = saved;
    return rc;
}

int rename (const char *old, const char *new_) { return s_rename (AT_FDCWD, old, AT_FDCWD, new_, 0); }
int renameat (int od, const char *old, int nd, const char *new_) { return s_rename (od, old, nd, new_, 1); }

int link (const char *old, const char *new_)
{
    REAL (int, link, (const char *, const char *));
    char a [PATH_MAX] = "", b [PATH_MAX] = "";
    int tracked = s_resolve (AT_FDCWD, old, a) | s_resolve (AT_FDCWD, new_, b);
    int rc = real_link (old, new_);
    int saved = errno;
    if (rc == 0 && tracked)
        s_emit ("L\t%s\t%s", a, b);
    errno = saved;
    return rc;
}

static int s_unlinked (int dirfd, const char *path, int rc)
{
    char abs [PATH_MAX];
    int saved = errno;
    if (rc == 0 && s_resolve (dirfd, path, abs))
        s_emit ("U\t%s", abs);
    errno = saved;
    return rc;
}

int unlink (const char *path)
{
    REAL (int, unlink, (const char *));
    char abs [PATH_MAX];
    int tracked = s_resolve (AT_FDCWD, path, abs);     //  before it is gone
    int rc = real_unlink (path);
    int saved = errno;
    if (rc == 0 && tracked)
        s_emit ("U\t%s", abs);
    errno = saved;
    return rc;
}

int unlinkat (int dirfd, const char *path, int flags)
{ REAL (int, unlinkat, (int, const char *, int)); return s_unlinked (dirfd, path, real_unlinkat (dirfd, path, flags)); }

int close (int fd)
{
    REAL (int, close, (int));
    if (fd >= 0 && fd < MAX_FD && s_fds [fd].path) {
        char *path = NULL;
        long long unsynced = 0;
        int is_dir = 0;
        struct stat st;
        long long size = fstat (fd, &st) == 0 ? (long long) st.st_size : -1;
        pthread_mutex_lock (&s_lock);
        path = s_fds [fd].path;
        unsynced = s_fds [fd].unsynced;
        is_dir = s_fds [fd].is_dir;
        s_fds [fd].path = NULL;
        pthread_mutex_unlock (&s_lock);
        if (path && !is_dir && unsynced)
            s_emit ("C\t%lld\t%lld\t%s", size, unsynced, path);
        free (path);
    }
    return real_close (fd);
}
