/*
 * Socket set-up: resolve, create, bind/listen or connect. Every failure
 * comes back as a negative code plus a sentence in `err` naming the
 * address, like Redis' anet.
 */
#define _GNU_SOURCE
#include "../internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static void seterr(char *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void seterr(char *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, IOP_ERR_LEN, fmt, ap);
    va_end(ap);
}

static int socktype(enum iop_transport t)
{
    return iop_transport_is_stream(t) ? SOCK_STREAM : SOCK_DGRAM;
}

static int resolve(const struct iop_addr *a, int passive, struct addrinfo **res,
                   char *err)
{
    struct addrinfo hints = {0};
    hints.ai_family = a->family;
    hints.ai_socktype = socktype(a->transport);
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    const char *host = a->host[0] ? a->host : NULL;
    int r = getaddrinfo(host, a->port, &hints, res);
    if (r == 0)
        return 0;
    const char *what = host ? host : (passive ? "*" : "localhost");
    if (r == EAI_SYSTEM) {
        int e = errno ? errno : EIO;
        seterr(err, "resolve %s port %s: %s", what, a->port, strerror(e));
        return -e;
    }
    seterr(err, "resolve %s port %s: %s", what, a->port, gai_strerror(r));
    if (r == EAI_MEMORY)
        return -ENOMEM;
    return r == EAI_AGAIN ? IOP_ERESOLVE_AGAIN : IOP_ERESOLVE;
}

static void fill_unix(struct sockaddr_un *un, const char *path)
{
    memset(un, 0, sizeof *un);
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, strnlen(path, sizeof un->sun_path - 1));
}

/* A socket file left by a server that died is replaced; any other file is
 * left alone. A live server's socket answers a connect, so it is kept
 * (that server sees one empty connection from the probe).
 *
 * The path can change under us when others may write to its directory
 * (the README's /run/ack, owned by the --user account); each step is safe
 * anyway. lstat() and unlink() act on the name itself, never through a
 * symlink, and unlink() only removes an entry of that directory, which
 * whoever could swap it can remove too (in a sticky directory, only its
 * owner or ours). The probe's connect() may follow a symlink swapped in
 * after the lstat(): it sends nothing, and it is non-blocking, so a
 * listener with a full backlog cannot hold the server at start (EAGAIN
 * counts as alive: the name is kept and bind() fails). The directories
 * above the name are trusted, as for any daemon's socket path. */
static int unlink_if_stale(const char *path, int type)
{
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode))
        return 0;
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_un un;
    fill_unix(&un, path);
    int alive = connect(fd, (struct sockaddr *)&un, sizeof un) == 0 ||
                errno != ECONNREFUSED;
    close(fd);
    return !alive && unlink(path) == 0;
}

/* bind() under a umask that makes the file with at most `mode`'s
 * permissions, so it is never looser than asked, not even for an instant
 * (a directory's default ACL can still differ: set_file() corrects it).
 * The umask is process-wide, hence put back at once. */
static int bind_masked(int fd, const struct sockaddr_un *un, unsigned mode)
{
    mode_t old = mode ? umask((mode_t)(~mode & 0777)) : 0;
    int r = bind(fd, (const struct sockaddr *)un, sizeof *un);
    int e = errno;
    if (mode)
        umask(old);
    errno = e;
    return r;
}

/* The socket file just bound, opened without following a symlink
 * (O_PATH: the socket itself is not opened) and checked to be the one we
 * made: a socket, this process's user's, with a single link. Anything
 * else means the name was swapped (a symlink, another user's file, or a
 * hard link to a file elsewhere): -EPERM, and nothing is changed. */
static int open_own_socket(const char *path, struct stat *st)
{
    int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, st) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (!S_ISSOCK(st->st_mode) || st->st_uid != geteuid() || st->st_nlink != 1) {
        close(fd);
        return -EPERM;
    }
    return fd;
}

/* The socket file's owner, then its exact mode (chown may clear set-id
 * bits, so the mode comes last), both on the inode opened above and never
 * through the path: a writer of the directory who swaps the name after
 * bind() cannot turn them onto another file (audit finding 2: a chmod()
 * that followed a swapped-in symlink gave a root-owned 0600 file 0666).
 * The owner goes through the descriptor itself (AT_EMPTY_PATH). There is
 * no fchmod() of an O_PATH descriptor; its /proc/self/fd link names that
 * inode, whatever the path says now (glibc's fchmodat() does the same).
 * Usually no mode change is needed at all: bind_masked() made the file
 * with the permission bits asked. Where one is (set-id or sticky bits, a
 * directory's default ACL) and /proc is missing, this fails closed. */
static int set_file(const char *path, const struct iop__sockfile *f, char *err)
{
    if (!f->mode && f->uid == (uid_t)-1 && f->gid == (gid_t)-1)
        return 0;
    struct stat st;
    int fd = open_own_socket(path, &st);
    if (fd < 0) {
        seterr(err, "%s: %s", path, fd == -EPERM ? "replaced by another file "
               "before its owner and mode were set" : strerror(-fd));
        return fd;
    }
    int r = 0;
    if ((f->uid != (uid_t)-1 || f->gid != (gid_t)-1) &&
        (fchownat(fd, "", f->uid, f->gid, AT_EMPTY_PATH) != 0 || fstat(fd, &st) != 0)) {
        r = -errno;
        seterr(err, "chown %s to %ld:%ld: %s", path, (long)f->uid, (long)f->gid,
               strerror(-r));
    }
    if (r == 0 && f->mode && (st.st_mode & 07777) != f->mode) {
        char self[32];
        snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
        if (chmod(self, (mode_t)f->mode) != 0) {
            r = -errno;
            if (r == -ENOENT) {
                r = -EPERM;
                seterr(err, "chmod %s to %04o: no /proc to change it safely through",
                       path, f->mode);
            } else {
                seterr(err, "chmod %s to %04o: %s", path, f->mode, strerror(-r));
            }
        }
    }
    close(fd);
    return r;
}

static int listen_unix(const struct iop_addr *a, int backlog,
                       const struct iop__sockfile *f, int *out, char *err)
{
    int type = socktype(a->transport);
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        seterr(err, "socket: %s", strerror(e));
        return -e;
    }
    unsigned mode = f ? f->mode : 0;
    struct sockaddr_un un;
    fill_unix(&un, a->path);
    /* bind() never follows a symlink at the name: anything there is
     * EADDRINUSE. */
    int r = bind_masked(fd, &un, mode);
    if (r != 0 && errno == EADDRINUSE && unlink_if_stale(a->path, type))
        r = bind_masked(fd, &un, mode);
    if (r != 0) {
        int e = errno;
        seterr(err, "bind %s: %s", a->path, strerror(e));
        close(fd);
        return -e;
    }
    /* From here the file is ours: a failure removes it. */
    if (type == SOCK_STREAM && listen(fd, backlog) != 0) {
        r = -errno;
        seterr(err, "listen %s: %s", a->path, strerror(-r));
    }
    if (r == 0 && f)
        r = set_file(a->path, f, err);
    if (r != 0) {
        close(fd);
        unlink(a->path); /* safe for the reasons unlink_if_stale() gives */
        return r;
    }
    *out = fd;
    return 0;
}

static int bind_one(const struct addrinfo *ai, const struct iop_addr *a,
                    int backlog, unsigned flags, int *out)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (ai->ai_socktype == SOCK_STREAM)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if ((flags & IOP__LISTEN_REUSEPORT) &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (ai->ai_family == AF_INET6) {
        /* "::" without -6 serves IPv4 too; -6 or a v6 literal means v6 only. */
        int v6only = a->family == AF_INET6;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        (ai->ai_socktype == SOCK_STREAM && listen(fd, backlog) != 0)) {
        int e = errno;
        close(fd);
        return -e;
    }
    *out = fd;
    return 0;
}

/* Fill `bound` from the socket itself, so port 0 shows the real port. */
static void describe_bound(int fd, const struct iop_addr *a, struct iop_addr *bound)
{
    *bound = *a;
    if (iop_transport_is_unix(a->transport))
        return;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    char host[IOP_HOST_MAX], port[IOP_PORT_MAX];
    if (getnameinfo((struct sockaddr *)&ss, len, host, sizeof host, port,
                    sizeof port, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        return;
    snprintf(bound->host, sizeof bound->host, "%s", host);
    snprintf(bound->port, sizeof bound->port, "%s", port);
}

int iop_listen(const struct iop_addr *a, int backlog, int *out,
               struct iop_addr *bound, char *err)
{
    return iop__listen(a, backlog, 0, out, bound, err);
}

int iop__set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

int iop__listen(const struct iop_addr *a, int backlog, unsigned flags, int *out,
                struct iop_addr *bound, char *err)
{
    return iop__listen_file(a, backlog, flags, NULL, out, bound, err);
}

int iop__listen_file(const struct iop_addr *a, int backlog, unsigned flags,
                     const struct iop__sockfile *file, int *out,
                     struct iop_addr *bound, char *err)
{
    if (backlog <= 0)
        backlog = SOMAXCONN;
    int unix_path = iop_transport_is_unix(a->transport);
    if (file && file->mode > 07777) {
        seterr(err, "socket file mode %o is out of range (at most 7777)", file->mode);
        return -EINVAL;
    }
    if (file && file->mode && !unix_path) {
        seterr(err, "a socket file mode applies to Unix sockets only, not %s",
               iop_transport_name(a->transport));
        return -EINVAL;
    }
    int r;
    if (unix_path) {
        r = listen_unix(a, backlog, file, out, err);
    } else {
        struct addrinfo *res;
        r = resolve(a, 1, &res, err);
        if (r != 0)
            return r;
        /* With no host and no -4/-6, prefer the dual-stack "::". */
        const struct addrinfo *first = res;
        if (!a->host[0] && a->family == AF_UNSPEC)
            for (const struct addrinfo *ai = res; ai; ai = ai->ai_next)
                if (ai->ai_family == AF_INET6) {
                    first = ai;
                    break;
                }
        char where[IOP_HOST_MAX + IOP_PORT_MAX + 32];
        iop_addr_format(a, where, sizeof where);
        r = bind_one(first, a, backlog, flags, out);
        int first_err = r; /* the error worth reporting if all fail */
        for (const struct addrinfo *ai = res; r != 0 && ai; ai = ai->ai_next)
            if (ai != first)
                r = bind_one(ai, a, backlog, flags, out);
        if (r != 0)
            r = first_err;
        freeaddrinfo(res);
        if (r != 0)
            seterr(err, "bind %s: %s", where, strerror(-r));
    }
    if (r == 0 && bound)
        describe_bound(*out, a, bound);
    return r;
}

static int set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    fl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
    return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

/* connect() with a bound on the wait: non-blocking connect, then poll. */
static int connect_within(int fd, const struct sockaddr *sa, socklen_t len,
                          int timeout_ms)
{
    if (timeout_ms < 0)
        return connect(fd, sa, len) == 0 ? 0 : -errno;
    int r = set_nonblock(fd, 1);
    if (r != 0)
        return r;
    if (connect(fd, sa, len) != 0) {
        if (errno != EINPROGRESS)
            return -errno;
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        do
            r = poll(&p, 1, timeout_ms);
        while (r < 0 && errno == EINTR);
        if (r < 0)
            return -errno;
        if (r == 0)
            return -ETIMEDOUT;
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
            return -errno;
        if (soerr != 0)
            return -soerr;
    }
    return set_nonblock(fd, 0);
}

static int connect_unix(const struct iop_addr *a, int timeout_ms, int *out,
                        char *err)
{
    int type = socktype(a->transport);
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        seterr(err, "socket: %s", strerror(e));
        return -e;
    }
    int r = 0;
#ifdef __linux__
    /* A datagram client needs a name of its own for the server to answer
     * to; Linux "autobind" gives one in the abstract namespace, so nothing
     * is left behind in the file system. */
    if (type == SOCK_DGRAM) {
        /* Only the family is passed, but from a zeroed sockaddr_un: tools
         * that read sun_path regardless (valgrind) find it empty. */
        struct sockaddr_un self = {.sun_family = AF_UNIX};
        if (bind(fd, (struct sockaddr *)&self, sizeof(sa_family_t)) != 0)
            r = -errno;
    }
#endif
    struct sockaddr_un un;
    fill_unix(&un, a->path);
    if (r == 0)
        r = connect_within(fd, (struct sockaddr *)&un, sizeof un, timeout_ms);
    if (r != 0) {
        seterr(err, "connect %s: %s", a->path, strerror(-r));
        close(fd);
        return r;
    }
    *out = fd;
    return 0;
}

int iop_connect(const struct iop_addr *a, int timeout_ms, int *out, char *err)
{
    if (iop_transport_is_unix(a->transport))
        return connect_unix(a, timeout_ms, out, err);
    struct addrinfo *res;
    int r = resolve(a, 0, &res, err);
    if (r != 0)
        return r;
    char where[IOP_HOST_MAX + IOP_PORT_MAX + 32] = "";
    r = -EADDRNOTAVAIL;
    /* Try every address the name has, as nc and curl do: "localhost" may
     * be ::1 first while the server listens on 127.0.0.1 only. */
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        iop_sockaddr_format(ai->ai_addr, ai->ai_addrlen, where, sizeof where);
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            r = -errno;
            continue;
        }
        r = connect_within(fd, ai->ai_addr, ai->ai_addrlen, timeout_ms);
        if (r == 0) {
            if (ai->ai_socktype == SOCK_STREAM) {
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            }
            *out = fd;
            break;
        }
        close(fd);
    }
    freeaddrinfo(res);
    if (r != 0)
        seterr(err, "connect %s: %s", where, strerror(-r));
    return r;
}
