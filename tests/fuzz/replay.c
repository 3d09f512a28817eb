/* replay.c: the harness side of the fuzz targets.
 *
 * Each fuzz_X.c defines LLVMFuzzerTestOneInput(). Linked with libFuzzer (tests/fuzz/run.sh) the
 * target is fuzzed; linked with this file it becomes a plain program, replay_X, that feeds it
 * every file named on the command line, and every file inside a directory named there (hidden
 * files such as .keep are skipped). `make check` runs the replays over the saved corpus and over
 * every crasher ever found (tests/fuzz/replay.sh), so a fixed bug stays fixed, also in the
 * sanitizer build.
 *
 * It also keeps the counters the targets report through fuzz_count(): how many inputs were run
 * and how many were rejected (bad inputs: the parser said no), and how many of those rejected
 * inputs were distinct. run.sh builds this file with -DFUZZ_NO_MAIN into the libFuzzer binaries so
 * that they print the same line when they exit. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void fuzz_count(const char *target, const uint8_t *data, size_t size, int rejected);

/* ------------------------------------------------------------------ counters */

static const char *target_name;
static unsigned long long n_inputs, n_rejected, n_distinct;
/* Hashes of the rejected inputs seen so far: open addressing, 0 marks a free slot. */
static uint64_t *seen;
static size_t seen_cap, seen_used;

static uint64_t hash_input(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ n; /* FNV-1a, seeded with the length */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    h ^= h >> 29; /* the low bits index the table: mix the high ones in */
    return h ? h : 1;
}

/* 1 if h is new. When memory runs out the count stops growing rather than failing. */
static int remember(uint64_t h)
{
    if (2 * (seen_used + 1) > seen_cap) {
        size_t cap = seen_cap ? 2 * seen_cap : 1 << 12;
        uint64_t *table = calloc(cap, sizeof *table);
        if (!table)
            return 0;
        for (size_t i = 0; i < seen_cap; i++)
            if (seen[i])
                for (size_t s = seen[i] & (cap - 1);; s = (s + 1) & (cap - 1))
                    if (!table[s]) {
                        table[s] = seen[i];
                        break;
                    }
        free(seen);
        seen = table;
        seen_cap = cap;
    }
    for (size_t s = h & (seen_cap - 1);; s = (s + 1) & (seen_cap - 1)) {
        if (seen[s] == h)
            return 0;
        if (!seen[s]) {
            seen[s] = h;
            seen_used++;
            return 1;
        }
    }
}

static void report(void)
{
    if (target_name)
        fprintf(stderr, "fuzz %s: %llu inputs, %llu rejected (%llu distinct), %llu accepted\n",
                target_name, n_inputs, n_rejected, n_distinct, n_inputs - n_rejected);
    free(seen);
    seen = NULL;
    seen_cap = seen_used = 0;
}

/* Called by the targets once per input: rejected is 1 if the library refused it. */
void fuzz_count(const char *target, const uint8_t *data, size_t size, int rejected)
{
    if (!target_name) {
        target_name = target;
        atexit(report);
    }
    n_inputs++;
    if (rejected) {
        n_rejected++;
        n_distinct += (unsigned long long)remember(hash_input(data, size));
    }
}

#ifndef FUZZ_NO_MAIN
/* ------------------------------------------------------------------ replaying files */

/* Run one file through the target; -1 if it cannot be read. The bytes go in a buffer of exactly
 * their size so that a sanitizer build catches any read past the end. */
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: %s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    size_t size = 0, cap = 0;
    uint8_t *data = NULL;
    for (;;) {
        if (size == cap) {
            cap = cap ? 2 * cap : 4096;
            uint8_t *p = realloc(data, cap);
            if (!p) {
                fprintf(stderr, "replay: %s: out of memory\n", path);
                free(data);
                fclose(f);
                return -1;
            }
            data = p;
        }
        size_t got = fread(data + size, 1, cap - size, f);
        size += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "replay: %s: read error\n", path);
        free(data);
        return -1;
    }
    uint8_t *exact = malloc(size ? size : 1);
    if (!exact) {
        free(data);
        return -1;
    }
    if (size)
        memcpy(exact, data, size);
    free(data);
    LLVMFuzzerTestOneInput(exact, size);
    free(exact);
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every non-hidden regular file of a directory, in name order (not recursive). */
static int replay_dir(const char *dir, long *count)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay: %s: cannot open: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int status = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **p = realloc(names, cap * sizeof *names);
            if (!p) {
                status = -1;
                break;
            }
            names = p;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        if (!(names[n] = malloc(len))) {
            status = -1;
            break;
        }
        snprintf(names[n++], len, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (status == 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            if (replay_file(names[i]))
                status = -1;
            else
                (*count)++;
        }
        free(names[i]);
    }
    free(names);
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR ...  (runs each input through the fuzz target)\n", argv[0]);
        return 2;
    }
    long count = 0;
    int status = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            status = 1;
        } else if (S_ISDIR(st.st_mode)) {
            if (replay_dir(argv[i], &count))
                status = 1;
        } else if (replay_file(argv[i])) {
            status = 1;
        } else {
            count++;
        }
    }
    fprintf(stderr, "replay: %ld inputs replayed without a crash\n", count);
    return status;
}
#endif
