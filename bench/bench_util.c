/*  =========================================================================
    bench_util - clocks, histograms, /proc samples, JSON reports, bodies,
    the population file
    =========================================================================
*/
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "bench.h"

uint64_t
bench_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

double
bench_now_s (void)
{
    return (double) bench_now_ns () / 1e9;
}

void
bench_log (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    fprintf (stderr, "chorus-bench: ");
    vfprintf (stderr, format, args);
    fprintf (stderr, "\n");
    va_end (args);
}

//  --------------------------------------------------------------------------
//  Histogram: values below 64 exact, then 32 buckets per power of two

static int
s_hist_index (uint64_t value)
{
    if (value < 64)
        return (int) value;
    int msb = 63 - __builtin_clzll (value);
    int shift = msb - 5;
    int index = 64 + (msb - 6) * 32 + (int) ((value >> shift) - 32);
    return index < HIST_BUCKETS? index: HIST_BUCKETS - 1;
}

//  Middle of a bucket's range
static uint64_t
s_hist_value (int index)
{
    if (index < 64)
        return (uint64_t) index;
    int k = (index - 64) / 32;
    int msb = k + 6;
    int shift = msb - 5;
    uint64_t m = (uint64_t) ((index - 64) % 32 + 32);
    uint64_t low = m << shift;
    uint64_t high = ((m + 1) << shift) - 1;
    return low + (high - low) / 2;
}

void
hist_init (hist_t *self)
{
    memset (self, 0, sizeof (*self));
    self->min = UINT64_MAX;
}

void
hist_add (hist_t *self, uint64_t value)
{
    self->count++;
    self->sum += (double) value;
    if (value < self->min)
        self->min = value;
    if (value > self->max)
        self->max = value;
    self->buckets [s_hist_index (value)]++;
}

void
hist_merge (hist_t *self, const hist_t *other)
{
    self->count += other->count;
    self->sum += other->sum;
    if (other->min < self->min)
        self->min = other->min;
    if (other->max > self->max)
        self->max = other->max;
    for (int i = 0; i < HIST_BUCKETS; i++)
        self->buckets [i] += other->buckets [i];
}

uint64_t
hist_quantile (const hist_t *self, double q)
{
    if (self->count == 0)
        return 0;
    if (q >= 1.0)
        return self->max;
    uint64_t rank = (uint64_t) ceil (q * (double) self->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += self->buckets [i];
        if (seen >= rank) {
            uint64_t value = s_hist_value (i);
            if (value > self->max)
                value = self->max;
            if (value < self->min)
                value = self->min;
            return value;
        }
    }
    return self->max;
}

//  --------------------------------------------------------------------------
//  /proc/<pid>/stat and status

void
proc_sample (int pid, proc_sample_t *out)
{
    memset (out, 0, sizeof (*out));
    out->pid = pid;
    out->at = bench_now_s ();
    if (pid <= 0)
        return;
    char path [64], buf [4096];
    snprintf (path, sizeof (path), "/proc/%d/stat", pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return;
    size_t n = fread (buf, 1, sizeof (buf) - 1, file);
    fclose (file);
    buf [n] = 0;
    char *p = strrchr (buf, ')');
    if (!p)
        return;
    p += 2;                             //  field 3, the state
    unsigned long long utime = 0, stime = 0;
    long threads = 0;
    //  Fields 3..20: state ppid pgrp session tty tpgid flags minflt cminflt
    //  majflt cmajflt utime stime cutime cstime priority nice num_threads
    if (sscanf (p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %ld",
                &utime, &stime, &threads) != 3)
        return;
    long hz = sysconf (_SC_CLK_TCK);
    out->cpu_s = (double) (utime + stime) / (double) hz;
    out->threads = (int) threads;
    snprintf (path, sizeof (path), "/proc/%d/status", pid);
    file = fopen (path, "r");
    if (!file)
        return;
    char line [256];
    while (fgets (line, sizeof (line), file)) {
        if (strncmp (line, "VmRSS:", 6) == 0)
            out->rss_kb = atol (line + 6);
        else
        if (strncmp (line, "VmHWM:", 6) == 0)
            out->hwm_kb = atol (line + 6);
    }
    fclose (file);
    out->valid = true;
}

//  --------------------------------------------------------------------------
//  Reports

struct _report_t {
    char *text;                 //  "key": value, pairs so far
    size_t size;
    size_t capacity;
};

static void
s_append (report_t *self, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    char piece [1024];
    int n = vsnprintf (piece, sizeof (piece), format, args);
    va_end (args);
    if (n < 0)
        return;
    if ((size_t) n >= sizeof (piece))
        n = sizeof (piece) - 1;
    if (self->size + (size_t) n + 1 > self->capacity) {
        self->capacity = (self->size + (size_t) n + 1) * 2;
        self->text = (char *) realloc (self->text, self->capacity);
    }
    memcpy (self->text + self->size, piece, (size_t) n + 1);
    self->size += (size_t) n;
}

report_t *
report_new (const char *name)
{
    report_t *self = (report_t *) calloc (1, sizeof (report_t));
    s_append (self, "\"name\": \"%s\"", name);
    return self;
}

void
report_destroy (report_t **self_p)
{
    if (*self_p) {
        free ((*self_p)->text);
        free (*self_p);
        *self_p = NULL;
    }
}

void
report_str (report_t *self, const char *key, const char *value)
{
    s_append (self, ",\n  \"%s\": \"", key);
    for (const char *p = value; p && *p; p++) {
        if (*p == '"' || *p == '\\')
            s_append (self, "\\%c", *p);
        else
        if ((unsigned char) *p < 0x20)
            s_append (self, " ");
        else
            s_append (self, "%c", *p);
    }
    s_append (self, "\"");
}

void
report_num (report_t *self, const char *key, double value)
{
    if (isfinite (value))
        s_append (self, ",\n  \"%s\": %.6g", key, value);
    else
        s_append (self, ",\n  \"%s\": null", key);
}

void
report_int (report_t *self, const char *key, int64_t value)
{
    s_append (self, ",\n  \"%s\": %lld", key, (long long) value);
}

void
report_hist (report_t *self, const char *key, const hist_t *hist)
{
    s_append (self, ",\n  \"%s\": {\"count\": %llu, \"p50\": %.4f, \"p99\": %.4f, "
              "\"p999\": %.4f, \"max\": %.4f, \"mean\": %.4f}",
              key, (unsigned long long) hist->count,
              hist_quantile (hist, 0.5) / 1e6, hist_quantile (hist, 0.99) / 1e6,
              hist_quantile (hist, 0.999) / 1e6, hist_quantile (hist, 1.0) / 1e6,
              hist->count? hist->sum / (double) hist->count / 1e6: 0.0);
}

void
report_proc (report_t *self, const char *key, const proc_sample_t *start,
             const proc_sample_t *end)
{
    if (!start->valid || !end->valid) {
        s_append (self, ",\n  \"%s\": null", key);
        return;
    }
    double wall = end->at - start->at;
    s_append (self, ",\n  \"%s\": {\"pid\": %d, \"cpu_pct\": %.1f, \"rss_kb_start\": %ld, "
              "\"rss_kb_end\": %ld, \"hwm_kb\": %ld, \"threads\": %d}",
              key, end->pid, wall > 0? 100.0 * (end->cpu_s - start->cpu_s) / wall: 0.0,
              start->rss_kb, end->rss_kb, end->hwm_kb, end->threads);
}

void
report_write (report_t *self, FILE *file)
{
    fprintf (file, "{\n  %s\n}\n", self->text);
}

int
report_save (report_t *self, const char *path)
{
    if (!path)
        return 0;
    if (strcmp (path, "-") == 0) {
        report_write (self, stdout);
        return 0;
    }
    FILE *file = fopen (path, "w");
    if (!file) {
        bench_log ("cannot write %s: %s", path, strerror (errno));
        return -1;
    }
    report_write (self, file);
    fclose (file);
    return 0;
}

//  --------------------------------------------------------------------------
//  Bodies

size_t
body_make (char *dest, size_t size, uint64_t stamp_ns, unsigned sender, uint64_t counter)
{
    if (size < 40)
        size = 40;
    if (size > BODY_MAX)
        size = BODY_MAX;
    int n = snprintf (dest, size + 1, "T%016llxS%uN%llu ",
                      (unsigned long long) stamp_ns, sender, (unsigned long long) counter);
    for (size_t i = (size_t) n; i < size; i++)
        dest [i] = (char) ('a' + i % 26);
    dest [size] = 0;
    return size;
}

bool
body_stamp (const char *body, size_t len, uint64_t *stamp_ns)
{
    if (len < 17 || body [0] != 'T')
        return false;
    uint64_t value = 0;
    for (int i = 1; i <= 16; i++) {
        char c = body [i];
        int digit;
        if (c >= '0' && c <= '9')
            digit = c - '0';
        else
        if (c >= 'a' && c <= 'f')
            digit = c - 'a' + 10;
        else
            return false;
        value = (value << 4) | (uint64_t) digit;
    }
    *stamp_ns = value;
    return true;
}

//  --------------------------------------------------------------------------
//  The population file:
//      tenant NAME ID
//      user INDEX UID TOKEN
//      channel NAME ID FIRST COUNT

pop_t *
pop_load (const char *path)
{
    FILE *file = fopen (path, "r");
    if (!file) {
        bench_log ("cannot read %s: %s", path, strerror (errno));
        return NULL;
    }
    pop_t *self = (pop_t *) calloc (1, sizeof (pop_t));
    size_t user_cap = 0, channel_cap = 0;
    char line [512];
    while (fgets (line, sizeof (line), file)) {
        char kind [16], name [POP_NAME_MAX], token [256];
        unsigned long long a, b;
        unsigned first, count;
        if (sscanf (line, "%15s", kind) != 1)
            continue;
        if (strcmp (kind, "tenant") == 0
        &&  sscanf (line, "%*s %63s %llu", name, &a) == 2) {
            strcpy (self->tenant, name);
            self->tenant_id = a;
        }
        else
        if (strcmp (kind, "user") == 0
        &&  sscanf (line, "%*s %llu %llu %255s", &a, &b, token) == 3) {
            if (a >= user_cap) {
                size_t cap = user_cap? user_cap * 2: 1024;
                while (cap <= a)
                    cap *= 2;
                self->uids = (uint64_t *) realloc (self->uids, cap * sizeof (uint64_t));
                self->tokens = (char **) realloc (self->tokens, cap * sizeof (char *));
                memset (self->tokens + user_cap, 0, (cap - user_cap) * sizeof (char *));
                user_cap = cap;
            }
            self->uids [a] = b;
            free (self->tokens [a]);
            self->tokens [a] = strdup (token);
            if (a + 1 > self->users)
                self->users = a + 1;
        }
        else
        if (strcmp (kind, "channel") == 0
        &&  sscanf (line, "%*s %63s %llu %u %u", name, &a, &first, &count) == 4) {
            if (self->channels == channel_cap) {
                channel_cap = channel_cap? channel_cap * 2: 64;
                self->channel = (pop_channel_t *) realloc (self->channel,
                                                           channel_cap * sizeof (pop_channel_t));
            }
            pop_channel_t *channel = &self->channel [self->channels++];
            strcpy (channel->name, name);
            channel->id = a;
            channel->first = first;
            channel->count = count;
        }
    }
    fclose (file);
    for (size_t i = 0; i < self->users; i++)
        if (!self->tokens [i]) {
            bench_log ("%s: user %zu has no token", path, i);
            pop_destroy (&self);
            return NULL;
        }
    return self;
}

void
pop_destroy (pop_t **self_p)
{
    pop_t *self = *self_p;
    if (self) {
        for (size_t i = 0; i < self->users; i++)
            free (self->tokens [i]);
        free (self->tokens);
        free (self->uids);
        free (self->channel);
        free (self);
        *self_p = NULL;
    }
}

const pop_channel_t *
pop_channel (const pop_t *self, const char *name)
{
    for (size_t i = 0; i < self->channels; i++)
        if (strcmp (self->channel [i].name, name) == 0)
            return &self->channel [i];
    return NULL;
}
