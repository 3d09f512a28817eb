/* atomic_file.c: writing a file so that readers see either the old file or the complete new one,
 * never a part of it.
 *
 * The bytes go to a file in the target's directory that has no name yet (O_TMPFILE): a crash, a
 * kill -9 or a full disk leaves nothing behind. On commit it is flushed to disk (fsync), given a
 * temporary name (linkat through /proc/self/fd) and renamed over the target in one step. A
 * process that has the old file mapped keeps its own copy of the old inode, so replacing a model
 * in use cannot pull the pages from under it. Where the file system has no O_TMPFILE a named
 * temporary (".NAME.XXXXXX", removed on failure) takes its place. */
#define _GNU_SOURCE
#include "config.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* dir (PATH_MAX) = the directory of path ("." for a bare name); base = its last component. */
static const char *split_path(const char *path, char *dir)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
        return path;
    }
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    memcpy(dir, path, n);
    dir[n] = '\0';
    return slash + 1;
}

int atomic_file_open(AtomicFile *af, const char *path, uint64_t bytes, LxError *err)
{
    memset(af, 0, sizeof *af);
    char dir[PATH_MAX];
    if (strlen(path) >= sizeof af->path || strlen(path) + 64 >= sizeof af->temp)
        return fail(err, LX_ERR_ARGUMENT, "file name too long: %.64s...", path);
    const char *base = split_path(path, dir);
    if (!*base)
        return fail(err, LX_ERR_ARGUMENT, "%s: not a file name", path);
    snprintf(af->path, sizeof af->path, "%s", path);
    struct statvfs vfs;
    if (statvfs(dir, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < bytes)
        return fail(err, LX_ERR_IO, "%s: not enough free space: the file needs %llu bytes, %s has %llu",
                    path, (unsigned long long)bytes, dir, (unsigned long long)vfs.f_bavail * vfs.f_frsize);
    int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        snprintf(af->temp, sizeof af->temp, "%s/.%s.XXXXXX", dir, base);
        fd = mkstemp(af->temp);
        af->named = fd >= 0;
        if (fd >= 0)
            fchmod(fd, 0644);
    }
    if (fd < 0)
        return fail(err, LX_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        close(fd);
        atomic_file_abort(af);
        return fail(err, LX_ERR_MEMORY, "%s: out of memory", path);
    }
    return 0;
}

void atomic_file_abort(AtomicFile *af)
{
    if (af->f)
        fclose(af->f);
    if (af->named)
        unlink(af->temp);
    af->f = NULL;
    af->named = 0;
}

int atomic_file_commit(AtomicFile *af, LxError *err)
{
    int fd = fileno(af->f);
    if (fflush(af->f) != 0 || ferror(af->f) || fsync(fd) != 0) {
        int e = errno;
        atomic_file_abort(af);
        return fail(err, LX_ERR_IO, "%s: write failed: %s", af->path, strerror(e ? e : EIO));
    }
    if (!af->named) { /* give the unnamed file a temporary name next to the target */
        char proc[64], dir[sizeof af->path];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        const char *base = split_path(af->path, dir);
        for (int attempt = 0; attempt < 100 && !af->named; attempt++) {
            snprintf(af->temp, sizeof af->temp, "%s/.%s.%ld.%d", dir, base, (long)getpid(), attempt);
            if (linkat(AT_FDCWD, proc, AT_FDCWD, af->temp, AT_SYMLINK_FOLLOW) == 0)
                af->named = 1;
            else if (errno != EEXIST)
                break;
        }
        if (!af->named) {
            int e = errno;
            atomic_file_abort(af);
            return fail(err, LX_ERR_IO, "%s: cannot name the new file: %s", af->path, strerror(e));
        }
    }
    if (fclose(af->f) != 0) {
        int e = errno;
        af->f = NULL;
        atomic_file_abort(af);
        return fail(err, LX_ERR_IO, "%s: write failed: %s", af->path, strerror(e));
    }
    af->f = NULL;
    if (rename(af->temp, af->path) != 0) {
        int e = errno;
        atomic_file_abort(af);
        return fail(err, LX_ERR_IO, "%s: cannot replace it: %s", af->path, strerror(e));
    }
    af->named = 0;
    return 0;
}
