/* transport.c: see transport.h.
 *
 * Every public function dispatches through a per-kind ops table
 * (transport_impl.h): "local" is here, "ssh" (libssh2 + SFTP) is in
 * transport_ssh.c; callers never change.
 *
 * The "local" kind runs commands with fork + execvp (never a shell): stdin is
 * /dev/null, stdout and stderr come back through pipes read with poll(), the
 * child leads its own process group so a timeout kills everything it started,
 * and every other descriptor is closed before exec. */
#include "node/transport.h"
#include "node/transport_impl.h"
#include "base/log.h"
#include "base/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define OUT_CAP (1024 * 1024)       /* stdout kept: first 1 MiB */
#define ERR_CAP (64 * 1024)         /* stderr kept: last 64 KiB (the error is at the end) */
#define READ_FILE_CAP (64LL * 1024 * 1024)
#define COPY_BLOCK (1024 * 1024)
#define PROGRESS_EVERY (64LL * 1024 * 1024)

/* ------------------------------------------------------------------ helpers */

vcl_err_class transport_errno_class(int err)
{
    switch (err) {
    case ENOENT: case ENOTDIR: case EACCES: case EPERM: case EROFS:
    case ENAMETOOLONG: case EINVAL: case EISDIR: case ELOOP: case EEXIST:
    case ENOTEMPTY: case EXDEV:
        return VCL_ERR_PERMANENT;
    default:
        return VCL_ERR_RETRYABLE;
    }
}

bool transport_errno_error(vcl_error *e, int err, const char *what, const char *path)
{
    return vcl_error_set(e, transport_errno_class(err), "%s '%s': %s", what, path, strerror(err));
}

const char *transport_file_kind(unsigned mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFDIR: return "a directory";
    case S_IFLNK: return "a symbolic link";
    case S_IFIFO: return "a FIFO";
    case S_IFSOCK: return "a socket";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    default: return "a special file";
    }
}

bool transport_not_regular(vcl_error *e, const char *verb, const char *path, const char *where,
                           unsigned mode)
{
    return vcl_error_set(e, VCL_ERR_PERMANENT,
                         "refusing to %s '%s'%s: it is %s, not a regular file (the worker never "
                         "follows links or opens special files on a node: remove it and retry)",
                         verb, path, where ? where : "", transport_file_kind(mode));
}

void transport_stat_fill(transport_stat_info *st, unsigned mode, unsigned uid, unsigned gid,
                         long long size, long long mtime)
{
    memset(st, 0, sizeof *st);
    st->exists = true;
    st->mode = mode;
    st->is_dir = S_ISDIR(mode);
    st->is_reg = S_ISREG(mode);
    st->is_link = S_ISLNK(mode);
    st->uid = uid;
    st->gid = gid;
    st->size = size;
    st->mtime = mtime;
}

bool transport_mode_writable(unsigned mode, unsigned owner, unsigned group, unsigned uid,
                             const unsigned *gids, size_t n_gids)
{
    if (uid == 0)
        return true;
    if (owner == uid)
        return (mode & 0300) == 0300;
    for (size_t i = 0; i < n_gids; i++)
        if (gids[i] == group)
            return (mode & 0030) == 0030;
    return (mode & 0003) == 0003;
}

/* Open a file on this host that must be a regular file: for reading, or for
 * writing (created 0644 when missing, truncated only once it is known to be
 * a regular file with no other name). follow=false: a final symbolic link is
 * refused, never followed (O_NOFOLLOW); a FIFO never blocks the open
 * (O_NONBLOCK, cleared afterwards). The fd, or -1 with e set. */
int transport_open_regular(const char *path, bool write, bool follow, const char *verb,
                           vcl_error *e)
{
    int flags = (write ? O_WRONLY | O_CREAT : O_RDONLY) | O_NONBLOCK | O_CLOEXEC |
                (follow ? 0 : O_NOFOLLOW);
    struct stat sb;
    int fd = open(path, flags, 0644);
    if (fd < 0) {
        int err = errno;
        /* ELOOP: a link (O_NOFOLLOW); ENXIO: a FIFO without a reader or a
         * device without its driver; EISDIR: a directory opened to write. */
        if ((err == ELOOP || err == ENXIO || err == EISDIR || err == ENODEV) &&
            (follow ? stat(path, &sb) : lstat(path, &sb)) == 0 && !S_ISREG(sb.st_mode))
            transport_not_regular(e, verb, path, "", sb.st_mode);
        else
            transport_errno_error(e, err, write ? "cannot create" : "cannot open", path);
        return -1;
    }
    if (fstat(fd, &sb) < 0) {
        transport_errno_error(e, errno, "cannot stat", path);
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        transport_not_regular(e, verb, path, "", sb.st_mode);
        goto fail;
    }
    if (write && sb.st_nlink > 1) {
        vcl_error_set(e, VCL_ERR_PERMANENT,
                      "refusing to %s '%s': it has %lu hard links (the same file under another "
                      "name elsewhere): remove it and retry", verb, path,
                      (unsigned long)sb.st_nlink);
        goto fail;
    }
    if (write && ftruncate(fd, 0) < 0) {
        transport_errno_error(e, errno, "cannot truncate", path);
        goto fail;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        transport_errno_error(e, errno, "cannot set blocking mode on", path);
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return -1;
}

static bool arg_check(const char *what, const char *s, vcl_error *e)
{
    if (!s || !*s)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "%s: empty path", what);
    return true;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* fsync and close a file written to path: *fd is -1 once close was tried
 * (an fsync error leaves it open for the caller's cleanup). */
static bool sync_close(int *fd, const char *path, vcl_error *e)
{
    if (fsync(*fd) < 0)
        return transport_errno_error(e, errno, "cannot fsync", path);
    int r = close(*fd);
    *fd = -1;
    if (r < 0)
        return transport_errno_error(e, errno, "cannot close", path);
    return true;
}

/* Parent directory of path into buf ("." when none). */
static void parent_dir(const char *path, char *buf, size_t len)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(buf, len, ".");
    else if (slash == path)
        snprintf(buf, len, "/");
    else
        snprintf(buf, len, "%.*s", (int)(slash - path), path);
}

/* Best effort: make a rename or create in dir durable. */
static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    if (fsync(fd) < 0 && errno != EINVAL)
        log_warn("fsync of directory %s failed: %s", dir, strerror(errno));
    close(fd);
}

static void fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    parent_dir(path, dir, sizeof dir);
    fsync_dir(dir);
}

void transport_names_sort(char **names, size_t n)
{
    if (n > 1)
        qsort(names, n, sizeof *names, util_cmp_str);
}

/* ------------------------------------------------------------- local: exec */

bool transport_capbuf_init(transport_capbuf *b, size_t cap, bool keep_tail)
{
    b->buf = malloc(cap + 1);
    b->len = 0;
    b->cap = cap;
    b->keep_tail = keep_tail;
    b->truncated = false;
    if (b->buf)
        b->buf[0] = '\0';
    return b->buf != NULL;
}

void transport_capbuf_add(transport_capbuf *b, const char *data, size_t n)
{
    if (b->len + n <= b->cap) {
        memcpy(b->buf + b->len, data, n);
        b->len += n;
    } else if (!b->keep_tail) {
        size_t room = b->cap - b->len;
        memcpy(b->buf + b->len, data, room);
        b->len = b->cap;
        b->truncated = true;
    } else {
        b->truncated = true;
        if (n >= b->cap) {
            memcpy(b->buf, data + (n - b->cap), b->cap);
            b->len = b->cap;
        } else {
            size_t drop = b->len + n - b->cap;
            memmove(b->buf, b->buf + drop, b->len - drop);
            b->len -= drop;
            memcpy(b->buf + b->len, data, n);
            b->len += n;
        }
    }
    b->buf[b->len] = '\0';
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void child_exec(const char *const argv[], int out_w, int err_w, int report_w)
{
    int saved;
    setpgid(0, 0);

    /* If the worker runs with 0, 1 or 2 closed, a pipe may sit there; move
     * our ends above 2 before the dup2s below can clobber them. */
    if (out_w < 3)
        out_w = fcntl(out_w, F_DUPFD_CLOEXEC, 3);
    if (err_w < 3)
        err_w = fcntl(err_w, F_DUPFD_CLOEXEC, 3);
    if (report_w < 3)
        report_w = fcntl(report_w, F_DUPFD_CLOEXEC, 3);
    if (out_w < 0 || err_w < 0 || report_w < 0)
        _exit(127);

    /* The worker may block or ignore signals in its threads; the command
     * starts with a clean slate. */
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    signal(SIGPIPE, SIG_DFL);

    int devnull = open("/dev/null", O_RDONLY);
    if (devnull < 0 || dup2(devnull, STDIN_FILENO) < 0 ||
        dup2(out_w, STDOUT_FILENO) < 0 || dup2(err_w, STDERR_FILENO) < 0)
        goto fail;

    /* Close everything but 0, 1, 2 and the report pipe (which is CLOEXEC and
     * tells the parent about a failed exec). */
    int lo = 3, hi = report_w - 1;
    if (hi >= lo && close_range((unsigned)lo, (unsigned)hi, 0) < 0) {
        for (int fd = lo; fd <= hi; fd++)
            close(fd);
    }
    if (close_range((unsigned)report_w + 1, ~0U, 0) < 0) {
        long max = sysconf(_SC_OPEN_MAX);
        for (int fd = report_w + 1; fd < (max > 0 ? max : 1024); fd++)
            close(fd);
    }

    execvp(argv[0], (char *const *)argv);
fail:
    saved = errno;
    if (write(report_w, &saved, sizeof saved) < 0) {
        /* nothing more we can do */
    }
    _exit(127);
}

static bool local_exec(vcl_transport *t, const char *const argv[], int timeout_s,
                       transport_result *res, vcl_error *e)
{
    bool ok = false;
    int out_p[2] = { -1, -1 }, err_p[2] = { -1, -1 }, rep_p[2] = { -1, -1 };
    pid_t pid = -1;
    transport_capbuf out = { 0 }, err = { 0 };
    bool timed_out = false;
    int child_errno = 0;

    res->status = -1;
    res->out = res->err = NULL;

    if (!transport_capbuf_init(&out, OUT_CAP, false) ||
        !transport_capbuf_init(&err, ERR_CAP, true)) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory running '%s'", argv[0]);
        goto cleanup;
    }
    if (pipe2(out_p, O_CLOEXEC) < 0 || pipe2(err_p, O_CLOEXEC) < 0 ||
        pipe2(rep_p, O_CLOEXEC) < 0) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "cannot run '%s': pipe: %s", argv[0], strerror(errno));
        goto cleanup;
    }

    pid = fork();
    if (pid < 0) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "cannot run '%s': fork: %s", argv[0], strerror(errno));
        goto cleanup;
    }
    if (pid == 0)
        child_exec(argv, out_p[1], err_p[1], rep_p[1]);

    /* Both sides set the group, so a kill right after fork reaches it. */
    setpgid(pid, pid);
    close_fd(&out_p[1]);
    close_fd(&err_p[1]);
    close_fd(&rep_p[1]);

    int64_t deadline = timeout_s > 0 ? util_mono_ms() + (int64_t)timeout_s * 1000 : 0;
    struct pollfd pfd[3] = {
        { .fd = out_p[0], .events = POLLIN },
        { .fd = err_p[0], .events = POLLIN },
        { .fd = rep_p[0], .events = POLLIN },
    };
    char buf[16384];
    size_t rep_len = 0;
    unsigned char rep_buf[sizeof(int)];

    while (pfd[0].fd >= 0 || pfd[1].fd >= 0 || pfd[2].fd >= 0) {
        int wait_ms = -1;
        if (deadline) {
            int64_t left = deadline - util_mono_ms();
            if (left <= 0) {
                timed_out = true;
                break;
            }
            wait_ms = left > INT_MAX ? INT_MAX : (int)left;
        }
        int r = poll(pfd, 3, wait_ms);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            vcl_error_set(e, VCL_ERR_RETRYABLE, "running '%s': poll: %s", argv[0], strerror(errno));
            kill(-pid, SIGKILL);
            goto reap;
        }
        for (int i = 0; i < 3; i++) {
            if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = read(pfd[i].fd, buf, sizeof buf);
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (n <= 0) {
                close(pfd[i].fd);
                pfd[i].fd = -1;
                if (i == 0)
                    out_p[0] = -1;
                else if (i == 1)
                    err_p[0] = -1;
                else
                    rep_p[0] = -1;
                continue;
            }
            if (i == 0)
                transport_capbuf_add(&out, buf, (size_t)n);
            else if (i == 1)
                transport_capbuf_add(&err, buf, (size_t)n);
            else {
                for (ssize_t k = 0; k < n && rep_len < sizeof rep_buf; k++)
                    rep_buf[rep_len++] = (unsigned char)buf[k];
            }
        }
    }

    /* Pipes are closed; the child may still be running (it closed its
     * output, or we timed out). Its pipes close as it exits, a moment before
     * it can be reaped: the first naps are short (0.1 ms, doubling to 10 ms),
     * or every command would wait a whole nap for nothing. */
    int wstatus = 0;
    long nap_us = 100;
    for (;;) {
        if (timed_out) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
                ;
            break;
        }
        pid_t w = waitpid(pid, &wstatus, deadline ? WNOHANG : 0);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            vcl_error_set(e, VCL_ERR_RETRYABLE, "running '%s': waitpid: %s", argv[0], strerror(errno));
            kill(-pid, SIGKILL);
            pid = -1;
            goto cleanup;
        }
        if (w == 0) {
            if (util_mono_ms() >= deadline)
                timed_out = true;
            else {
                struct timespec ts = { 0, nap_us * 1000 };
                nanosleep(&ts, NULL);
                nap_us = nap_us < 5000 ? nap_us * 2 : 10000;
            }
        }
    }
    pid = -1;

    if (rep_len == sizeof rep_buf) {
        memcpy(&child_errno, rep_buf, sizeof child_errno);
        vcl_error_set(e, (child_errno == ENOENT || child_errno == EACCES) ? VCL_ERR_PERMANENT
                                                                          : VCL_ERR_RETRYABLE,
                      "cannot run '%s': %s%s", argv[0], strerror(child_errno),
                      child_errno == ENOENT ? " (is it installed on the node?)" : "");
        goto cleanup;
    }
    if (timed_out) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "command '%s' timed out after %ds", argv[0], timeout_s);
        goto cleanup;
    }

    if (WIFEXITED(wstatus))
        res->status = WEXITSTATUS(wstatus);
    else if (WIFSIGNALED(wstatus))
        res->status = 128 + WTERMSIG(wstatus);
    if (out.truncated)
        log_debug("stdout of '%s' truncated at %d bytes", argv[0], OUT_CAP);
    res->out = out.buf;
    res->err = err.buf;
    out.buf = err.buf = NULL;
    ok = true;
    goto cleanup;

reap:
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    pid = -1;
cleanup:
    if (pid > 0) {
        kill(-pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    close_fd(&out_p[0]);
    close_fd(&out_p[1]);
    close_fd(&err_p[0]);
    close_fd(&err_p[1]);
    close_fd(&rep_p[0]);
    close_fd(&rep_p[1]);
    free(out.buf);
    free(err.buf);
    (void)t;
    return ok;
}

/* -------------------------------------------------------------- local: files */

static bool local_stat(vcl_transport *t, const char *path, transport_stat_info *st, bool follow,
                       vcl_error *e)
{
    struct stat sb;
    (void)t;
    memset(st, 0, sizeof *st);
    if ((follow ? stat(path, &sb) : lstat(path, &sb)) < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return true;
        return transport_errno_error(e, errno, "cannot stat", path);
    }
    transport_stat_fill(st, (unsigned)sb.st_mode, (unsigned)sb.st_uid, (unsigned)sb.st_gid,
                        (long long)sb.st_size, (long long)sb.st_mtime);
    st->has_id = true;
    st->dev = (unsigned long long)sb.st_dev;
    st->ino = (unsigned long long)sb.st_ino;
    st->mtime_ns = (long long)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
    st->ctime_ns = (long long)sb.st_ctim.tv_sec * 1000000000LL + sb.st_ctim.tv_nsec;
    return true;
}

static bool write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool local_write_file(vcl_transport *t, const char *path, const void *data, size_t len,
                             mode_t mode, vcl_error *e)
{
    bool ok = false;
    char tmp[PATH_MAX];
    int fd = -1;
    bool made = false;

    if (snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path) >= (int)sizeof tmp) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "path too long: '%s'", path);
        goto cleanup;
    }
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        transport_errno_error(e, errno, "cannot create temporary file for", path);
        goto cleanup;
    }
    made = true;
    if (!write_all(fd, data, len)) {
        transport_errno_error(e, errno, "cannot write", tmp);
        goto cleanup;
    }
    if (fchmod(fd, mode) < 0) {
        transport_errno_error(e, errno, "cannot chmod", tmp);
        goto cleanup;
    }
    if (!sync_close(&fd, tmp, e))
        goto cleanup;
    /* rename replaces a link or a FIFO without following it, but something
     * other than a regular file there was not made by the worker: refuse. */
    struct stat sb;
    if (lstat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        transport_not_regular(e, "replace", path, "", (unsigned)sb.st_mode);
        goto cleanup;
    }
    if (rename(tmp, path) < 0) {
        transport_errno_error(e, errno, "cannot rename into place", path);
        goto cleanup;
    }
    made = false;
    fsync_parent(path);
    ok = true;
cleanup:
    close_fd(&fd);
    if (made)
        unlink(tmp);
    (void)t;
    return ok;
}

static bool local_read_file(vcl_transport *t, const char *path, char **data, size_t *len,
                            vcl_error *e)
{
    bool ok = false;
    int fd = -1;
    char *buf = NULL;
    size_t used = 0, cap = 0;

    *data = NULL;
    if (len)
        *len = 0;
    fd = transport_open_regular(path, false, false, "read", e);
    if (fd < 0)
        goto cleanup;
    for (;;) {
        if (used + 1 >= cap) {
            size_t ncap = cap ? cap * 2 : 8192;
            if ((long long)ncap > READ_FILE_CAP + 1) {
                vcl_error_set(e, VCL_ERR_PERMANENT, "file '%s' is too large to read (over %lld bytes)",
                              path, READ_FILE_CAP);
                goto cleanup;
            }
            char *nb = realloc(buf, ncap);
            if (!nb) {
                vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory reading '%s'", path);
                goto cleanup;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + used, cap - used - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            transport_errno_error(e, errno, "cannot read", path);
            goto cleanup;
        }
        if (n == 0)
            break;
        used += (size_t)n;
    }
    buf[used] = '\0';
    *data = buf;
    buf = NULL;
    if (len)
        *len = used;
    ok = true;
cleanup:
    close_fd(&fd);
    free(buf);
    (void)t;
    return ok;
}

static bool local_rename(vcl_transport *t, const char *from, const char *to, vcl_error *e)
{
    (void)t;
    if (rename(from, to) < 0)
        return vcl_error_set(e, transport_errno_class(errno), "cannot rename '%s' to '%s': %s",
                             from, to, strerror(errno));
    fsync_parent(to);
    return true;
}

static bool local_rename_noreplace(vcl_transport *t, const char *from, const char *to,
                                   bool *existed, vcl_error *e)
{
    (void)t;
    *existed = false;
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0) {
        fsync_parent(to);
        return true;
    }
    if (errno == EINVAL || errno == ENOSYS) {
        /* File system without RENAME_NOREPLACE: link() never replaces either. */
        if (link(from, to) == 0) {
            unlink(from);
            fsync_parent(to);
            return true;
        }
    }
    if (errno == EEXIST)
        *existed = true;
    return vcl_error_set(e, transport_errno_class(errno), "cannot rename '%s' to '%s': %s", from,
                         to, strerror(errno));
}

static bool local_remove(vcl_transport *t, const char *path, vcl_error *e)
{
    (void)t;
    if (unlink(path) < 0 && errno != ENOENT)
        return transport_errno_error(e, errno, "cannot remove", path);
    return true;
}

static bool local_mkdir(vcl_transport *t, const char *path, mode_t mode, bool *existed,
                        vcl_error *e)
{
    (void)t;
    *existed = false;
    if (mkdir(path, mode) < 0) {
        *existed = errno == EEXIST;
        return transport_errno_error(e, errno, "cannot create directory", path);
    }
    /* exactly mode: the worker's umask does not decide who may read it */
    if (chmod(path, mode) < 0)
        return transport_errno_error(e, errno, "cannot chmod", path);
    return true;
}

static bool local_user_name(vcl_transport *t, unsigned uid, char *name, size_t name_len)
{
    struct passwd pw, *pwp = NULL;
    char buf[4096];
    (void)t;
    if (getpwuid_r((uid_t)uid, &pw, buf, sizeof buf, &pwp) != 0 || !pwp)
        return false;
    snprintf(name, name_len, "%s", pwp->pw_name);
    return true;
}

static bool local_whoami(vcl_transport *t, unsigned *uid, char *name, size_t name_len,
                         vcl_error *e)
{
    (void)e;
    *uid = (unsigned)geteuid();
    if (!local_user_name(t, *uid, name, name_len))
        snprintf(name, name_len, "%u", *uid);
    return true;
}

static bool local_writable(vcl_transport *t, const char *path, bool *writable, vcl_error *e)
{
    (void)t;
    *writable = faccessat(AT_FDCWD, path, W_OK | X_OK, AT_EACCESS) == 0;
    if (!*writable && errno != EACCES && errno != EROFS && errno != EPERM)
        return transport_errno_error(e, errno, "cannot check access to", path);
    return true;
}

static bool local_fsinfo(vcl_transport *t, const char *path, long long *free_bytes, bool *readonly,
                         vcl_error *e)
{
    struct statvfs sv;
    (void)t;
    *free_bytes = -1;
    *readonly = false;
    if (statvfs(path, &sv) < 0)
        return transport_errno_error(e, errno, "cannot statvfs", path);
    *free_bytes = (long long)sv.f_bavail * (long long)sv.f_frsize;
    *readonly = (sv.f_flag & ST_RDONLY) != 0;
    return true;
}

static bool local_realpath(vcl_transport *t, const char *path, char *out, size_t out_len,
                           vcl_error *e)
{
    char buf[PATH_MAX];
    (void)t;
    if (!realpath(path, buf))
        return transport_errno_error(e, errno, "cannot resolve", path);
    if (snprintf(out, out_len, "%s", buf) >= (int)out_len)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "path too long: '%s'", buf);
    return true;
}

bool transport_strvec_push(transport_strvec *sv, const char *s)
{
    if (sv->n == sv->cap) {
        size_t ncap = sv->cap ? sv->cap * 2 : 16;
        char **nv = realloc(sv->v, ncap * sizeof *nv);
        if (!nv)
            return false;
        sv->v = nv;
        sv->cap = ncap;
    }
    char *d = strdup(s);
    if (!d)
        return false;
    sv->v[sv->n++] = d;
    return true;
}

static bool local_list_dir(vcl_transport *t, const char *dir, char ***names, size_t *n,
                           vcl_error *e)
{
    bool ok = false;
    DIR *d = NULL;
    transport_strvec sv = { 0 };
    (void)t;

    d = opendir(dir);
    if (!d) {
        transport_errno_error(e, errno, "cannot list directory", dir);
        goto cleanup;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno) {
                transport_errno_error(e, errno, "cannot list directory", dir);
                goto cleanup;
            }
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (!transport_strvec_push(&sv, de->d_name)) {
            vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory listing '%s'", dir);
            goto cleanup;
        }
    }
    transport_names_sort(sv.v, sv.n);
    *names = sv.v;
    *n = sv.n;
    sv.v = NULL;
    sv.n = 0;
    ok = true;
cleanup:
    if (d)
        closedir(d);
    util_strv_free(sv.v, sv.n);
    return ok;
}

/* Copy keeping holes: walk the data segments (SEEK_DATA/SEEK_HOLE; the whole
 * file when the file system cannot tell), and within them skip blocks that
 * are all zero; ftruncate gives the file its size. Both ends must be regular
 * files; src_follow: a link at local_src is followed (copy_in: the source is
 * the management host's repository), else refused (copy_out: a node file). */
static bool local_copy(const char *local_src, bool src_follow, const char *dst,
                       transport_progress_fn progress, void *opaque, vcl_error *e)
{
    bool ok = false;
    int in = -1, out = -1;
    char *buf = NULL;
    struct stat sb;

    in = transport_open_regular(local_src, false, src_follow, "copy", e);
    if (in < 0)
        goto cleanup;
    if (fstat(in, &sb) < 0) {
        transport_errno_error(e, errno, "cannot stat", local_src);
        goto cleanup;
    }
    out = transport_open_regular(dst, true, false, "write", e);
    if (out < 0)
        goto cleanup;
    buf = malloc(COPY_BLOCK);
    if (!buf) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory copying '%s'", local_src);
        goto cleanup;
    }

    off_t size = sb.st_size, off = 0;
    long long next_report = PROGRESS_EVERY;
    if (progress)
        progress(opaque, 0, (long long)size);
    while (off < size) {
        off_t data = lseek(in, off, SEEK_DATA), hole;
        if (data < 0) {
            if (errno == ENXIO)
                break;                  /* only a hole is left */
            data = off;                 /* no SEEK_DATA here: treat all as data */
            hole = size;
        } else {
            hole = lseek(in, data, SEEK_HOLE);
            if (hole < 0)
                hole = size;
        }
        if (hole > size)
            hole = size;
        for (off = data; off < hole;) {
            size_t want = (size_t)((hole - off) < COPY_BLOCK ? (hole - off) : COPY_BLOCK);
            ssize_t n = pread(in, buf, want, off);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                transport_errno_error(e, errno, "cannot read", local_src);
                goto cleanup;
            }
            if (n == 0) {               /* file shrank under us */
                hole = size = off;
                break;
            }
            if (!util_all_zero(buf, (size_t)n) && !util_pwrite_all(out, buf, (size_t)n, off)) {
                transport_errno_error(e, errno, "cannot write", dst);
                goto cleanup;
            }
            off += n;
            if (progress && (long long)off >= next_report) {
                progress(opaque, (long long)off, (long long)size);
                next_report = (long long)off + PROGRESS_EVERY;
            }
        }
        off = hole;
    }
    if (ftruncate(out, size) < 0) {
        transport_errno_error(e, errno, "cannot set size of", dst);
        goto cleanup;
    }
    if (!sync_close(&out, dst, e))
        goto cleanup;
    if (progress)
        progress(opaque, (long long)size, (long long)size);
    ok = true;
cleanup:
    close_fd(&in);
    close_fd(&out);
    free(buf);
    return ok;
}

static bool local_copy_in(vcl_transport *t, const char *local_src, const char *dst,
                          transport_progress_fn progress, void *opaque, vcl_error *e)
{
    (void)t;
    return local_copy(local_src, true, dst, progress, opaque, e);
}

static bool local_copy_out(vcl_transport *t, const char *src, const char *local_dst,
                           transport_progress_fn progress, void *opaque, vcl_error *e)
{
    (void)t;
    return local_copy(src, false, local_dst, progress, opaque, e);
}

static bool local_glob(vcl_transport *t, const char *pattern, char ***paths, size_t *n,
                       vcl_error *e)
{
    bool ok = false;
    glob_t g;
    transport_strvec sv = { 0 };
    (void)t;

    memset(&g, 0, sizeof g);
    int r = glob(pattern, 0, NULL, &g);
    if (r != 0 && r != GLOB_NOMATCH) {
        vcl_error_set(e, r == GLOB_NOSPACE ? VCL_ERR_RETRYABLE : VCL_ERR_PERMANENT,
                      "cannot expand '%s': %s", pattern,
                      r == GLOB_NOSPACE ? "out of memory" : "read error");
        goto cleanup;
    }
    for (size_t i = 0; r == 0 && i < g.gl_pathc; i++) {
        if (!transport_strvec_push(&sv, g.gl_pathv[i])) {
            vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory expanding '%s'", pattern);
            goto cleanup;
        }
    }
    *paths = sv.v;
    *n = sv.n;
    sv.v = NULL;
    sv.n = 0;
    ok = true;
cleanup:
    globfree(&g);
    util_strv_free(sv.v, sv.n);
    return ok;
}

static const transport_ops local_ops = {
    .kind = "local",
    .open = NULL,
    .close = NULL,
    .exec = local_exec,
    .stat = local_stat,
    .write_file = local_write_file,
    .read_file = local_read_file,
    .rename = local_rename,
    .rename_noreplace = local_rename_noreplace,
    .remove = local_remove,
    .mkdir = local_mkdir,
    .whoami = local_whoami,
    .user_name = local_user_name,
    .writable = local_writable,
    .fsinfo = local_fsinfo,
    .realpath = local_realpath,
    .list_dir = local_list_dir,
    .copy_in = local_copy_in,
    .copy_out = local_copy_out,    /* node and this host are the same: one local copy */
    .glob = local_glob,
};

/* A kind whose ops is NULL is known but not built yet. */
static const struct {
    const char *kind;
    const transport_ops *ops;
} transport_kinds[] = {
    { "local", &local_ops },
    { "ssh", &transport_ssh_ops },
};

/* ------------------------------------------------------------------- public */

vcl_transport *transport_new(const char *kind, const transport_opts *opts, vcl_error *e)
{
    const transport_ops *ops = NULL;
    bool known = false;
    vcl_transport *t = NULL;

    for (size_t i = 0; kind && i < sizeof transport_kinds / sizeof transport_kinds[0]; i++) {
        if (strcmp(kind, transport_kinds[i].kind) == 0) {
            known = true;
            ops = transport_kinds[i].ops;
            break;
        }
    }
    if (!known) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "unknown transport '%s' (expected 'local' or 'ssh')",
                      kind ? kind : "(null)");
        return NULL;
    }
    if (!ops) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "transport '%s' is not available in this build yet", kind);
        return NULL;
    }
    t = calloc(1, sizeof *t);
    if (!t) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory");
        return NULL;
    }
    t->ops = ops;
    if (ops->open && !ops->open(t, opts, e)) {
        free(t);
        return NULL;
    }
    return t;
}

void transport_free(vcl_transport *t)
{
    if (!t)
        return;
    if (t->ops->close)
        t->ops->close(t);
    free(t);
}

const char *transport_kind(const vcl_transport *t)
{
    return t ? t->ops->kind : "(none)";
}

void transport_set_guard(vcl_transport *t, transport_guard_fn fn, void *ctx)
{
    if (!t)
        return;
    t->guard = fn;
    t->guard_ctx = ctx;
}

/* The guard's verdict before a call that changes something. */
static bool guarded(vcl_transport *t, vcl_error *e)
{
    return !t->guard || t->guard(t->guard_ctx, e);
}

bool transport_exec(vcl_transport *t, const char *const argv[], int timeout_s,
                    transport_result *res, vcl_error *e)
{
    if (!t || !res)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "transport_exec: no transport or result");
    res->status = -1;
    res->out = res->err = NULL;
    if (!argv || !argv[0] || !argv[0][0])
        return vcl_error_set(e, VCL_ERR_PERMANENT, "transport_exec: empty command");
    if (timeout_s < 0)
        timeout_s = 0;
    if (!guarded(t, e))
        return false;
    log_debug("exec on %s: %s%s%s", t->ops->kind, argv[0], argv[1] ? " " : "", argv[1] ? argv[1] : "");
    return t->ops->exec(t, argv, timeout_s, res, e);
}

void transport_result_clear(transport_result *res)
{
    if (!res)
        return;
    free(res->out);
    free(res->err);
    res->out = res->err = NULL;
    res->status = -1;
}

/* Last non-empty line of s into buf (trimmed); false when there is none. */
static bool last_line(const char *s, char *buf, size_t len)
{
    if (!s)
        return false;
    const char *end = s + strlen(s);
    while (end > s) {
        while (end > s && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
            end--;
        const char *start = end;
        while (start > s && start[-1] != '\n' && start[-1] != '\r')
            start--;
        const char *p = start;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p < end) {
            /* the node's text goes into last_error and onto terminals:
             * control characters (ESC sequences) become '?', and a cut
             * never splits a UTF-8 character (vcl_error_set makes any
             * other bad byte '?') */
            size_t o = 0;
            while (p < end && len && o + 1 < len) {
                size_t n = util_utf8_len((const unsigned char *)p);
                if (n == 0 || n > (size_t)(end - p))
                    n = 1;
                if (o + n >= len)
                    break;
                for (size_t k = 0; k < n; k++) {
                    unsigned char c = (unsigned char)p[k];
                    buf[o++] = n == 1 && (c < 0x20 || c == 0x7f) ? (c == '\t' ? ' ' : '?') : (char)c;
                }
                p += n;
            }
            if (len)
                buf[o] = '\0';
            return true;
        }
        end = start;
    }
    return false;
}

bool transport_status_error(const char *const argv[], const transport_result *res,
                            vcl_err_class cls, vcl_error *e)
{
    char line[512];
    if (!argv || !argv[0] || !res)
        return vcl_error_set(e, cls, "command failed");
    if (!last_line(res->err, line, sizeof line) && !last_line(res->out, line, sizeof line))
        snprintf(line, sizeof line, "(no output)");
    return vcl_error_set(e, cls, "%s%s%s failed (exit %d): %s", argv[0], argv[1] ? " " : "",
                         argv[1] ? argv[1] : "", res->status, line);
}

bool transport_run(vcl_transport *t, const char *const argv[], int timeout_s,
                   vcl_err_class cls, transport_result *res_or_null, vcl_error *e)
{
    transport_result local = { .status = -1 };
    transport_result *res = res_or_null ? res_or_null : &local;
    bool ok = false;

    if (!transport_exec(t, argv, timeout_s, res, e))
        goto cleanup;
    if (res->status != 0) {
        transport_status_error(argv, res, cls, e);
        goto cleanup;
    }
    ok = true;
cleanup:
    transport_result_clear(&local);
    return ok;
}

bool transport_stat(vcl_transport *t, const char *path, transport_stat_info *st, vcl_error *e)
{
    if (!t || !st)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "transport_stat: bad arguments");
    if (!arg_check("stat", path, e))
        return false;
    return t->ops->stat(t, path, st, true, e);
}

bool transport_lstat(vcl_transport *t, const char *path, transport_stat_info *st, vcl_error *e)
{
    if (!t || !st)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "transport_lstat: bad arguments");
    if (!arg_check("stat", path, e))
        return false;
    return t->ops->stat(t, path, st, false, e);
}

bool transport_check_file(vcl_transport *t, const char *path, bool *exists, vcl_error *e)
{
    transport_stat_info st;
    if (exists)
        *exists = false;
    if (!transport_lstat(t, path, &st, e))
        return false;
    if (!st.exists)
        return true;
    if (!st.is_reg)
        return transport_not_regular(e, "use", path, "", st.mode);
    if (exists)
        *exists = true;
    return true;
}

/* ------------------------------------------------------- directories: safety
 *
 * A directory on the node is safe when nobody but root and the node user
 * (the transport's user) can change what is in it: it is not world-writable
 * without the sticky bit and belongs to root or the node user. The same must
 * hold for every directory above it (whoever can rename an ancestor can swap
 * the whole tree), and for the real path when a symbolic link is on the way
 * (the link itself must belong to root or the node user). The directory
 * itself must not be a symbolic link. Group-writable directories are the
 * operator's choice and are left alone. */

typedef struct node_user {
    unsigned uid;
    char name[64];
} node_user;

typedef struct dir_walk {
    bool safe;                  /* nothing unsafe on the way */
    bool blocked;               /* something other than a directory is on the way */
    bool exists;                /* the path itself exists (lstat) */
    transport_stat_info st;     /* its lstat when it exists */
    char deepest[PATH_MAX];     /* the deepest existing directory on the way */
    char problem[256];
    char fix[256];
} dir_walk;

/* s as one word for a POSIX shell: as is when plain, else single-quoted. */
static void shell_word(const char *s, char *buf, size_t len)
{
    if (*s && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./:@%+,=-") ==
                  strlen(s)) {
        snprintf(buf, len, "%s", s);
        return;
    }
    size_t n = 0;
    if (len < 3) {
        if (len)
            buf[0] = '\0';
        return;
    }
    buf[n++] = '\'';
    for (; *s && n + 6 < len; s++) {
        if (*s == '\'') {
            memcpy(buf + n, "'\\''", 4);
            n += 4;
        } else
            buf[n++] = *s;
    }
    buf[n++] = '\'';
    buf[n] = '\0';
}

static bool node_user_get(vcl_transport *t, node_user *u, vcl_error *e)
{
    memset(u, 0, sizeof *u);
    return t->ops->whoami(t, &u->uid, u->name, sizeof u->name, e);
}

static void owner_text(vcl_transport *t, unsigned uid, char *buf, size_t len)
{
    char name[64];
    if (t->ops->user_name && t->ops->user_name(t, uid, name, sizeof name))
        snprintf(buf, len, "%s (uid %u)", name, uid);
    else
        snprintf(buf, len, "uid %u", uid);
}

/* Is the existing directory dir (st: following a link; via says so) safe
 * for u? false with w->problem and w->fix filled. */
static bool dir_judge(vcl_transport *t, const node_user *u, const char *dir, const char *via,
                      const transport_stat_info *st, dir_walk *w)
{
    char q[PATH_MAX + 8], owner[96], uq[80];
    shell_word(dir, q, sizeof q);
    shell_word(u->name, uq, sizeof uq);
    if ((st->mode & S_IWOTH) && !(st->mode & S_ISVTX)) {
        snprintf(w->problem, sizeof w->problem,
                 "directory %s%s is world-writable without the sticky bit (mode %04o): any user "
                 "on the node could replace the files in it", dir, via, st->mode & 07777);
        snprintf(w->fix, sizeof w->fix, "chmod o-w %s", q);
        return w->safe = false;
    }
    if (st->uid != 0 && st->uid != u->uid) {
        owner_text(t, st->uid, owner, sizeof owner);
        snprintf(w->problem, sizeof w->problem,
                 "directory %s%s is owned by %s, not by root or the node user %s: that user "
                 "could replace the files in it", dir, via, owner, u->name);
        snprintf(w->fix, sizeof w->fix, "chown %s %s", uq, q);
        return w->safe = false;
    }
    return true;
}

/* Walk path (absolute) from "/" down, judging every existing directory on
 * the way and path itself; stops at the first missing component, problem or
 * non-directory. *saw_link: a symbolic link was followed on the way. */
static bool dir_walk_path(vcl_transport *t, const node_user *u, const char *path, dir_walk *w,
                          bool *saw_link, vcl_error *e)
{
    char cur[PATH_MAX], q[PATH_MAX + 8], owner[96], uq[80];
    transport_stat_info st, tst;
    const char *p = path;

    memset(w, 0, sizeof *w);
    w->safe = true;
    if (!path || path[0] != '/')
        return vcl_error_set(e, VCL_ERR_PERMANENT, "not an absolute path: '%s'", path ? path : "");
    snprintf(cur, sizeof cur, "/");
    snprintf(w->deepest, sizeof w->deepest, "/");
    if (!t->ops->stat(t, "/", &st, false, e))
        return false;
    if (!dir_judge(t, u, "/", "", &st, w))
        return true;
    for (;;) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *end = strchr(p, '/');
        if (!end)
            end = p + strlen(p);
        size_t cl = strlen(cur);
        if (snprintf(cur + cl, sizeof cur - cl, "%s%.*s", cl > 1 ? "/" : "", (int)(end - p), p) >=
            (int)(sizeof cur - cl))
            return vcl_error_set(e, VCL_ERR_PERMANENT, "path too long: '%s'", path);
        p = end;
        while (*end == '/')
            end++;
        bool last = *end == '\0';
        if (!t->ops->stat(t, cur, &st, false, e))
            return false;
        if (!st.exists)
            return true;
        if (last) {
            w->exists = true;
            w->st = st;
        }
        shell_word(cur, q, sizeof q);
        if (st.is_link) {
            if (last) {
                snprintf(w->problem, sizeof w->problem,
                         "%s is a symbolic link, not a directory: give the node the directory it "
                         "points to (readlink -f %s) instead", cur, q);
                w->safe = false;
                return true;
            }
            if (st.uid != 0 && st.uid != u->uid) {
                owner_text(t, st.uid, owner, sizeof owner);
                shell_word(u->name, uq, sizeof uq);
                snprintf(w->problem, sizeof w->problem,
                         "%s is a symbolic link owned by %s, not by root or the node user %s: "
                         "that user could point it elsewhere", cur, owner, u->name);
                snprintf(w->fix, sizeof w->fix, "chown -h %s %s", uq, q);
                w->safe = false;
                return true;
            }
            if (!t->ops->stat(t, cur, &tst, true, e))
                return false;
            if (!tst.exists || !tst.is_dir) {
                snprintf(w->problem, sizeof w->problem, "%s is a symbolic link to %s, not to a "
                         "directory", cur, tst.exists ? transport_file_kind(tst.mode) : "nothing");
                w->blocked = true;
                w->safe = false;
                return true;
            }
            *saw_link = true;
            if (!dir_judge(t, u, cur, " (where a symbolic link points)", &tst, w))
                return true;
        } else if (!st.is_dir) {
            snprintf(w->problem, sizeof w->problem, "%s is %s, not a directory", cur,
                     transport_file_kind(st.mode));
            w->blocked = true;
            w->safe = false;
            return true;
        } else if (!dir_judge(t, u, cur, "", &st, w)) {
            return true;
        }
        snprintf(w->deepest, sizeof w->deepest, "%s", cur);
    }
    return true;
}

/* dir_walk_path, then, when a link was followed, the same walk over the
 * real path of the deepest existing directory. */
static bool dir_walk_run(vcl_transport *t, const node_user *u, const char *path, dir_walk *w,
                         vcl_error *e)
{
    bool saw_link = false, again = false;
    char real[PATH_MAX];
    if (!dir_walk_path(t, u, path, w, &saw_link, e))
        return false;
    if (!saw_link || !w->safe || w->blocked)
        return true;
    if (!t->ops->realpath(t, w->deepest, real, sizeof real, e))
        return false;
    dir_walk rw;
    if (!dir_walk_path(t, u, real, &rw, &again, e))
        return false;
    if (!rw.safe) {
        w->safe = false;
        w->blocked = rw.blocked;
        snprintf(w->problem, sizeof w->problem, "%s", rw.problem);
        snprintf(w->fix, sizeof w->fix, "%s", rw.fix);
    }
    return true;
}

bool transport_dir_check(vcl_transport *t, const char *path, transport_dir_verdict *v,
                         vcl_error *e)
{
    node_user u;
    dir_walk w;
    vcl_error we;

    if (!v)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "transport_dir_check: bad arguments");
    memset(v, 0, sizeof *v);
    v->free_bytes = -1;
    if (!t)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "transport_dir_check: bad arguments");
    if (!arg_check("check", path, e))
        return false;
    if (!node_user_get(t, &u, e))
        return false;
    vcl_error_clear(&we);
    if (!dir_walk_run(t, &u, path, &w, &we)) {
        if (we.cls != VCL_ERR_PERMANENT) {
            if (e)
                *e = we;
            return false;
        }
        /* cannot look (permission denied, not absolute...): that is the verdict */
        snprintf(v->problem, sizeof v->problem, "%s", we.msg);
        return true;
    }
    if (!w.exists && !w.safe) {
        /* the walk stopped above it: still say what is there */
        vcl_error_clear(&we);
        if (!t->ops->stat(t, path, &w.st, false, &we) && we.cls != VCL_ERR_PERMANENT) {
            if (e)
                *e = we;
            return false;
        }
        w.exists = w.st.exists;
    }
    v->exists = w.exists;
    if (w.exists) {
        v->is_dir = w.st.is_dir;
        v->uid = w.st.uid;
        v->mode = w.st.mode & 07777;
    }
    v->safe = w.safe && !w.blocked;
    snprintf(v->problem, sizeof v->problem, "%s", w.problem);
    snprintf(v->fix, sizeof v->fix, "%s", w.fix);
    /* Writable and free space: of the directory, or where it would be made. */
    const char *where = w.exists ? (w.st.is_dir ? path : NULL) : (w.blocked ? NULL : w.deepest);
    if (where) {
        bool wr = false, ro = false;
        long long fb = -1;
        vcl_error_clear(&we);
        if (!t->ops->writable(t, where, &wr, &we) || !t->ops->fsinfo(t, where, &fb, &ro, &we)) {
            if (we.cls != VCL_ERR_PERMANENT) {
                if (e)
                    *e = we;
                return false;
            }
            log_debug("dir check %s: %s", path, we.msg);
        }
        v->writable = wr && !ro;
        v->free_bytes = fb;
    }
    return true;
}

bool transport_write_file(vcl_transport *t, const char *path, const void *data, size_t len,
                          mode_t mode, vcl_error *e)
{
    if (!t || (!data && len))
        return vcl_error_set(e, VCL_ERR_PERMANENT, "transport_write_file: bad arguments");
    if (!arg_check("write", path, e) || !guarded(t, e))
        return false;
    return t->ops->write_file(t, path, data ? data : "", len, mode, e);
}

bool transport_read_file(vcl_transport *t, const char *path, char **data, size_t *len, vcl_error *e)
{
    if (!t || !data)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "transport_read_file: bad arguments");
    if (!arg_check("read", path, e))
        return false;
    return t->ops->read_file(t, path, data, len, e);
}

bool transport_rename(vcl_transport *t, const char *from, const char *to, vcl_error *e)
{
    if (!t)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "transport_rename: bad arguments");
    if (!arg_check("rename", from, e) || !arg_check("rename", to, e) || !guarded(t, e))
        return false;
    return t->ops->rename(t, from, to, e);
}

bool transport_rename_noreplace(vcl_transport *t, const char *from, const char *to,
                                bool *existed, vcl_error *e)
{
    bool dummy;
    if (!existed)
        existed = &dummy;
    *existed = false;
    if (!t)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "transport_rename_noreplace: bad arguments");
    if (!arg_check("rename", from, e) || !arg_check("rename", to, e) || !guarded(t, e))
        return false;
    return t->ops->rename_noreplace(t, from, to, existed, e);
}

bool transport_remove(vcl_transport *t, const char *path, vcl_error *e)
{
    if (!t)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "transport_remove: bad arguments");
    if (!arg_check("remove", path, e) || !guarded(t, e))
        return false;
    return t->ops->remove(t, path, e);
}

bool transport_mkdir_p(vcl_transport *t, const char *path, mode_t mode, vcl_error *e)
{
    node_user u;
    dir_walk w;
    char want[PATH_MAX], part[PATH_MAX];

    if (!t)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "transport_mkdir_p: bad arguments");
    if (!arg_check("mkdir", path, e) || !guarded(t, e))
        return false;
    if (snprintf(want, sizeof want, "%s", path) >= (int)sizeof want)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "path too long: '%s'", path);
    /* one '/' between components, none at the end */
    size_t len = 0;
    for (size_t i = 0; want[i]; i++)
        if (want[i] != '/' || len == 0 || want[len - 1] != '/')
            want[len++] = want[i];
    want[len] = '\0';
    while (len > 1 && want[len - 1] == '/')
        want[--len] = '\0';
    if (!node_user_get(t, &u, e))
        return false;
    /* Someone else may create a directory on the way while we do: look again. */
    for (int round = 0; round < 3; round++) {
        if (!dir_walk_run(t, &u, want, &w, e))
            return false;
        if (w.blocked)
            return vcl_error_set(e, VCL_ERR_PERMANENT, "cannot create directory '%s': %s", want,
                                 w.problem);
        if (!w.safe)
            return vcl_error_set(e, VCL_ERR_PERMANENT,
                                 "unsafe directory on the node for '%s': %s%s%s", want, w.problem,
                                 w.fix[0] ? "; fix it on the node with: " : "", w.fix);
        if (w.exists)
            return true;
        /* Below the deepest existing directory everything is new and ours. */
        bool raced = false;
        size_t dl = strlen(w.deepest);
        for (size_t i = dl + 1; i <= len && !raced; i++) {
            if (want[i] != '/' && want[i] != '\0')
                continue;
            if (want[i] == '/' && (i == 0 || want[i - 1] == '/'))
                continue;
            snprintf(part, sizeof part, "%.*s", (int)i, want);
            bool existed = false;
            if (!t->ops->mkdir(t, part, mode, &existed, e)) {
                if (!existed)
                    return false;
                vcl_error_clear(e);
                raced = true;
            }
        }
        if (!raced)
            return true;
    }
    return vcl_error_set(e, VCL_ERR_RETRYABLE,
                         "cannot create directory '%s': it keeps changing while it is created", want);
}

bool transport_list_dir(vcl_transport *t, const char *dir, char ***names, size_t *n, vcl_error *e)
{
    if (!names || !n)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "transport_list_dir: bad arguments");
    *names = NULL;
    *n = 0;
    if (!t)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "transport_list_dir: bad arguments");
    if (!arg_check("list", dir, e))
        return false;
    return t->ops->list_dir(t, dir, names, n, e);
}

bool transport_copy_in(vcl_transport *t, const char *local_src, const char *dst,
                       transport_progress_fn progress, void *opaque, vcl_error *e)
{
    if (!t)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "transport_copy_in: bad arguments");
    if (!arg_check("copy", local_src, e) || !arg_check("copy", dst, e) || !guarded(t, e))
        return false;
    return t->ops->copy_in(t, local_src, dst, progress, opaque, e);
}

bool transport_copy_out(vcl_transport *t, const char *src, const char *local_dst,
                        transport_progress_fn progress, void *opaque, vcl_error *e)
{
    if (!t)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "transport_copy_out: bad arguments");
    if (!arg_check("copy", src, e) || !arg_check("copy", local_dst, e) || !guarded(t, e))
        return false;
    if (!t->ops->copy_out)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "transport %s cannot copy files off the node",
                             t->ops->kind);
    return t->ops->copy_out(t, src, local_dst, progress, opaque, e);
}

bool transport_glob(vcl_transport *t, const char *pattern, char ***paths, size_t *n, vcl_error *e)
{
    if (!paths || !n)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "transport_glob: bad arguments");
    *paths = NULL;
    *n = 0;
    if (!t)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "transport_glob: bad arguments");
    if (!arg_check("glob", pattern, e))
        return false;
    return t->ops->glob(t, pattern, paths, n, e);
}
