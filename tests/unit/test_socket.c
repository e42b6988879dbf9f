/*
 * iop_listen() and iop_connect() on loopback and on Unix sockets in a
 * private directory. Ports are always 0 (the kernel picks), so tests can
 * run in parallel with anything else on the machine.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "ioplex.h"

/* ---- helpers ------------------------------------------------------------ */

static char tmpdir[64];

static int make_tmpdir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ioplex-unit-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
    (void)state;
    DIR *d = opendir(tmpdir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    return rmdir(tmpdir);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void tmp_path(char *buf, size_t len, const char *name)
{
    int n = snprintf(buf, len, "%s/%s", tmpdir, name);
    assert_true(n > 0 && (size_t)n < len);
}

/* Nothing here may hang the suite: every receive gives up after 2 s. */
static void set_rcv_timeout(int fd)
{
    struct timeval tv = {.tv_sec = 2, .tv_usec = 0};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
}

static void parse(struct iop_addr *a, const char *spec, enum iop_transport dflt)
{
    int r = iop_addr_parse(a, spec, dflt);
    if (r != 0)
        fail_msg("parse \"%s\": %s", spec, iop_strerror(r));
}

static void listen_ok(const struct iop_addr *a, int *fd, struct iop_addr *bound)
{
    char err[IOP_ERR_LEN] = "";
    int r = iop_listen(a, 0, fd, bound, err);
    if (r != 0)
        fail_msg("iop_listen: %d (%s): %s", r, iop_strerror(r), err);
    assert_true(*fd >= 0);
}

static void connect_ok(const struct iop_addr *a, int timeout_ms, int *fd)
{
    char err[IOP_ERR_LEN] = "";
    int r = iop_connect(a, timeout_ms, fd, err);
    if (r != 0)
        fail_msg("iop_connect: %d (%s): %s", r, iop_strerror(r), err);
    assert_true(*fd >= 0);
}

static int port_number(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    assert_true(*s != '\0' && *end == '\0');
    return (int)v;
}

static int socket_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    assert_int_equal(ss.ss_family, AF_INET6);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* Bytes go both ways over a connected stream pair. */
static void exchange_stream(int client, int server)
{
    char buf[16];
    set_rcv_timeout(client);
    set_rcv_timeout(server);
    assert_int_equal(send(client, "ping", 4, MSG_NOSIGNAL), 4);
    /* Read exactly 4 bytes, waiting for them. */
    size_t got = 0;
    while (got < 4) {
        ssize_t n = recv(server, buf + got, 4 - got, 0);
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_memory_equal(buf, "ping", 4);
    assert_int_equal(send(server, "pong!", 5, MSG_NOSIGNAL), 5);
    got = 0;
    while (got < 5) {
        ssize_t n = recv(client, buf + got, 5 - got, 0);
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_memory_equal(buf, "pong!", 5);
}

static int accept_ok(int lfd)
{
    int fd = accept(lfd, NULL, NULL);
    assert_true(fd >= 0);
    return fd;
}

/* The descriptor iop_connect/iop_listen hand out: close-on-exec, and (for
 * connect) back in blocking mode after the bounded connect. */
static void assert_fd_modes(int fd, int want_blocking)
{
    int fdfl = fcntl(fd, F_GETFD);
    assert_true(fdfl >= 0 && (fdfl & FD_CLOEXEC));
    if (want_blocking) {
        int fl = fcntl(fd, F_GETFL);
        assert_true(fl >= 0);
        assert_false(fl & O_NONBLOCK);
    }
}

/* ---- TCP ---------------------------------------------------------------- */

static void tcp_listen_connect(const char *listen_spec, const char *want_host,
                               int timeout_ms)
{
    struct iop_addr a, bound, c;
    int lfd = -1, cfd = -1;
    parse(&a, listen_spec, IOP_TCP);
    memset(&bound, 0x5a, sizeof bound);
    listen_ok(&a, &lfd, &bound);
    assert_fd_modes(lfd, 0);

    /* `bound` names the real port, which is the socket's own. */
    assert_int_equal(bound.transport, IOP_TCP);
    assert_string_equal(bound.host, want_host);
    int port = port_number(bound.port);
    assert_true(port > 0 && port <= 65535);
    assert_int_equal(port, socket_port(lfd));

    assert_int_equal(iop_addr_set_host(&c, IOP_TCP, want_host, bound.port), 0);
    connect_ok(&c, timeout_ms, &cfd);
    assert_fd_modes(cfd, 1);
    int nodelay = 0;
    socklen_t sl = sizeof nodelay;
    assert_int_equal(getsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &sl), 0);
    assert_true(nodelay);

    int sfd = accept_ok(lfd);
    exchange_stream(cfd, sfd);
    close(sfd);
    close(cfd);
    close(lfd);
}

static void test_tcp4_port0(void **state)
{
    (void)state;
    tcp_listen_connect("tcp://127.0.0.1:0", "127.0.0.1", 2000);
    tcp_listen_connect("127.0.0.1:0", "127.0.0.1", -1); /* unbounded connect */
    tcp_listen_connect("tcp4://127.0.0.1:0", "127.0.0.1", 0);
}

/* "localhost" may resolve to several addresses; the client tries each. */
static void test_tcp_connect_localhost(void **state)
{
    (void)state;
    struct iop_addr a, bound, c;
    int lfd, cfd;
    parse(&a, "127.0.0.1:0", IOP_TCP);
    listen_ok(&a, &lfd, &bound);
    assert_int_equal(iop_addr_set_host(&c, IOP_TCP, "localhost", bound.port), 0);
    connect_ok(&c, 2000, &cfd);
    int sfd = accept_ok(lfd);
    exchange_stream(cfd, sfd);
    close(sfd);
    close(cfd);
    close(lfd);
}

static void test_tcp6_port0(void **state)
{
    (void)state;
    tcp_listen_connect("tcp://[::1]:0", "::1", 2000);
    tcp_listen_connect("tcp6://[::1]:0", "::1", -1);

    /* A v6 literal means v6 only. */
    struct iop_addr a, bound;
    int lfd, v6only = 0;
    socklen_t sl = sizeof v6only;
    parse(&a, "[::1]:0", IOP_TCP);
    listen_ok(&a, &lfd, &bound);
    assert_int_equal(getsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &sl), 0);
    assert_true(v6only);
    close(lfd);
}

static void test_tcp_addrinuse(void **state)
{
    (void)state;
    struct iop_addr a, bound, again;
    int lfd, fd2 = -1;
    char err[IOP_ERR_LEN] = "";
    parse(&a, "tcp://127.0.0.1:0", IOP_TCP);
    listen_ok(&a, &lfd, &bound);

    assert_int_equal(iop_addr_set_host(&again, IOP_TCP, "127.0.0.1", bound.port), 0);
    assert_int_equal(iop_listen(&again, 0, &fd2, NULL, err), -EADDRINUSE);
    assert_int_equal(fd2, -1); /* untouched on failure */
    /* The message names the address, port included. */
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%s", bound.port);
    if (!strstr(err, want) || !strstr(err, strerror(EADDRINUSE)))
        fail_msg("err \"%s\" should name %s and the reason", err, want);

    /* No err buffer: the same code, no crash. */
    assert_int_equal(iop_listen(&again, 0, &fd2, NULL, NULL), -EADDRINUSE);
    /* The first listener is unharmed. */
    int cfd;
    connect_ok(&again, 2000, &cfd);
    int sfd = accept_ok(lfd);
    close(sfd);
    close(cfd);
    close(lfd);
}

static void test_resolve_failure(void **state)
{
    (void)state;
    struct iop_addr a;
    int fd = -1;
    char err[IOP_ERR_LEN] = "";

    parse(&a, "nosuchhost.invalid:80", IOP_TCP);
    assert_int_equal(iop_connect(&a, 1000, &fd, err), IOP_ERESOLVE);
    assert_int_equal(fd, -1);
    assert_non_null(strstr(err, "nosuchhost.invalid"));
    assert_true(strlen(err) > strlen("nosuchhost.invalid"));

    err[0] = '\0';
    assert_int_equal(iop_listen(&a, 0, &fd, NULL, err), IOP_ERESOLVE);
    assert_non_null(strstr(err, "nosuchhost.invalid"));

    /* A service name that is not in /etc/services. */
    err[0] = '\0';
    parse(&a, "127.0.0.1:no-such-service-x", IOP_TCP);
    assert_int_equal(iop_connect(&a, 1000, &fd, err), IOP_ERESOLVE);
    assert_non_null(strstr(err, "no-such-service-x"));
    assert_string_not_equal(iop_strerror(IOP_ERESOLVE), "");
}

static void test_connect_refused(void **state)
{
    (void)state;
    /* A bound socket that does not listen holds the port, so nothing else
     * can take it, and a SYN to it is refused. */
    int hold = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(hold >= 0);
    struct sockaddr_in sin = {0};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(hold, (struct sockaddr *)&sin, sizeof sin), 0);
    char port[16];
    snprintf(port, sizeof port, "%d", socket_port(hold));

    struct iop_addr a;
    int fd = -1;
    char err[IOP_ERR_LEN] = "";
    assert_int_equal(iop_addr_set_host(&a, IOP_TCP, "127.0.0.1", port), 0);
    assert_int_equal(iop_connect(&a, 2000, &fd, err), -ECONNREFUSED);
    assert_int_equal(fd, -1);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%s", port);
    if (!strstr(err, want))
        fail_msg("err \"%s\" should name %s", err, want);
    assert_int_equal(iop_connect(&a, -1, &fd, err), -ECONNREFUSED);
    close(hold);
}

/* ---- Unix stream -------------------------------------------------------- */

static void test_unix_missing(void **state)
{
    (void)state;
    char path[256];
    tmp_path(path, sizeof path, "missing.sock");
    struct iop_addr a;
    int fd = -1;
    char err[IOP_ERR_LEN] = "";
    assert_int_equal(iop_addr_set_unix(&a, IOP_UNIX, path), 0);
    assert_int_equal(iop_connect(&a, 1000, &fd, err), -ENOENT);
    assert_int_equal(fd, -1);
    assert_non_null(strstr(err, path));
    assert_int_equal(iop_connect(&a, -1, &fd, err), -ENOENT);
    assert_int_equal(iop_addr_set_unix(&a, IOP_UNIX_DGRAM, path), 0);
    assert_int_equal(iop_connect(&a, 1000, &fd, err), -ENOENT);
}

static void test_unix_stream(void **state)
{
    (void)state;
    char path[256];
    tmp_path(path, sizeof path, "s.sock");
    struct iop_addr a, bound;
    int lfd, cfd;
    assert_int_equal(iop_addr_set_unix(&a, IOP_UNIX, path), 0);
    listen_ok(&a, &lfd, &bound);
    assert_int_equal(bound.transport, IOP_UNIX);
    assert_string_equal(bound.path, path);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));

    connect_ok(&a, 2000, &cfd);
    assert_fd_modes(cfd, 1);
    int sfd = accept_ok(lfd);
    exchange_stream(cfd, sfd);
    close(sfd);
    close(cfd);
    close(lfd);
    unlink(path);
}

/* A socket file whose server died: bind, close, leave the file. */
static void make_stale_socket(const char *path, int type)
{
    int fd = socket(AF_UNIX, type, 0);
    assert_true(fd >= 0);
    struct sockaddr_un un = {0};
    un.sun_family = AF_UNIX;
    strcpy(un.sun_path, path);
    assert_int_equal(bind(fd, (struct sockaddr *)&un, sizeof un), 0);
    close(fd);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
}

static void test_unix_stale_replaced(void **state)
{
    (void)state;
    char path[256];
    tmp_path(path, sizeof path, "stale.sock");
    make_stale_socket(path, SOCK_STREAM);

    struct iop_addr a;
    int lfd, cfd;
    assert_int_equal(iop_addr_set_unix(&a, IOP_UNIX, path), 0);
    listen_ok(&a, &lfd, NULL);
    /* The new socket is the one at the path now. */
    connect_ok(&a, 2000, &cfd);
    int sfd = accept_ok(lfd);
    exchange_stream(cfd, sfd);
    close(sfd);
    close(cfd);
    close(lfd);
    unlink(path);

    /* The same for a datagram socket file. */
    tmp_path(path, sizeof path, "stale-dgram.sock");
    make_stale_socket(path, SOCK_DGRAM);
    assert_int_equal(iop_addr_set_unix(&a, IOP_UNIX_DGRAM, path), 0);
    listen_ok(&a, &lfd, NULL);
    connect_ok(&a, 2000, &cfd);
    set_rcv_timeout(lfd);
    assert_int_equal(send(cfd, "d", 1, 0), 1);
    char c;
    assert_int_equal(recv(lfd, &c, 1, 0), 1);
    assert_int_equal(c, 'd');
    close(cfd);
    close(lfd);
    unlink(path);
}

/* A live server's socket is not taken over. */
static void test_unix_live_kept(void **state)
{
    (void)state;
    char path[256];
    tmp_path(path, sizeof path, "live.sock");
    struct iop_addr a;
    int lfd, fd2 = -1, cfd;
    char err[IOP_ERR_LEN] = "";
    assert_int_equal(iop_addr_set_unix(&a, IOP_UNIX, path), 0);
    listen_ok(&a, &lfd, NULL);
    assert_int_equal(iop_listen(&a, 0, &fd2, NULL, err), -EADDRINUSE);
    assert_int_equal(fd2, -1);
    assert_non_null(strstr(err, path));
    /* Clients still reach the first server. iop_listen's liveness probe
     * was itself a connection (closed at once, so it reads as EOF); skip
     * it and find ours. */
    connect_ok(&a, 2000, &cfd);
    set_rcv_timeout(cfd);
    assert_int_equal(send(cfd, "ping", 4, MSG_NOSIGNAL), 4);
    int found = 0;
    for (int tries = 0; tries < 3 && !found; tries++) {
        int sfd = accept_ok(lfd);
        set_rcv_timeout(sfd);
        char buf[8];
        ssize_t n = recv(sfd, buf, sizeof buf, 0);
        if (n == 4 && memcmp(buf, "ping", 4) == 0) {
            assert_int_equal(send(sfd, "pong", 4, MSG_NOSIGNAL), 4);
            assert_int_equal(recv(cfd, buf, sizeof buf, 0), 4);
            assert_memory_equal(buf, "pong", 4);
            found = 1;
        } else {
            assert_int_equal(n, 0); /* only the probe may come first */
        }
        close(sfd);
    }
    assert_true(found);
    close(cfd);
    close(lfd);
    unlink(path);
}

static void assert_file_contents(const char *path, const char *want)
{
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    char buf[64] = "";
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

/* Any other file at the path is never unlinked. */
static void test_unix_regular_file_kept(void **state)
{
    (void)state;
    char path[256];
    tmp_path(path, sizeof path, "precious.txt");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("precious data\n", f);
    fclose(f);

    const enum iop_transport kinds[] = {IOP_UNIX, IOP_UNIX_DGRAM};
    for (size_t i = 0; i < 2; i++) {
        struct iop_addr a;
        int fd = -1;
        char err[IOP_ERR_LEN] = "";
        assert_int_equal(iop_addr_set_unix(&a, kinds[i], path), 0);
        int r = iop_listen(&a, 0, &fd, NULL, err);
        assert_int_equal(r, -EADDRINUSE);
        assert_int_equal(fd, -1);
        assert_non_null(strstr(err, path));
        assert_file_contents(path, "precious data\n");
    }

    /* A symbolic link at the path is left alone too, and so is its target. */
    char link[256];
    tmp_path(link, sizeof link, "link.sock");
    assert_int_equal(symlink(path, link), 0);
    struct iop_addr a;
    int fd = -1;
    assert_int_equal(iop_addr_set_unix(&a, IOP_UNIX, link), 0);
    assert_true(iop_listen(&a, 0, &fd, NULL, NULL) < 0);
    struct stat st;
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_file_contents(path, "precious data\n");
    unlink(link);
    unlink(path);
}

/* ---- datagrams ---------------------------------------------------------- */

static void test_unix_dgram_answer(void **state)
{
    (void)state;
    char path[256];
    tmp_path(path, sizeof path, "dgram.sock");
    struct iop_addr a;
    int sfd, cfd;
    assert_int_equal(iop_addr_parse(&a, path, IOP_UDP), 0);
    assert_int_equal(a.transport, IOP_UNIX_DGRAM);
    listen_ok(&a, &sfd, NULL);
    int files_before = count_entries(tmpdir);
    connect_ok(&a, 2000, &cfd);
    set_rcv_timeout(sfd);
    set_rcv_timeout(cfd);

    assert_int_equal(send(cfd, "hello", 5, 0), 5);
    char buf[32];
    struct sockaddr_storage from;
    socklen_t fromlen = sizeof from;
    memset(&from, 0, sizeof from);
    ssize_t n = recvfrom(sfd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fromlen);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "hello", 5);
    /* The client has a name of its own to be answered at. */
    assert_int_equal(from.ss_family, AF_UNIX);
    assert_true(fromlen > offsetof(struct sockaddr_un, sun_path));
    char name[IOP_PATH_MAX + 16];
    iop_sockaddr_format((struct sockaddr *)&from, fromlen, name, sizeof name);
    assert_string_not_equal(name, "unix:(unnamed)");

    assert_int_equal(sendto(sfd, "world!", 6, 0, (struct sockaddr *)&from, fromlen), 6);
    n = recv(cfd, buf, sizeof buf, 0);
    assert_int_equal(n, 6);
    assert_memory_equal(buf, "world!", 6);

    /* The client's name left nothing in the file system. */
    assert_int_equal(count_entries(tmpdir), files_before);

    close(cfd);
    close(sfd);
    unlink(path);
}

static void test_udp_roundtrip(void **state)
{
    (void)state;
    struct iop_addr a, bound, c;
    int sfd, cfd;
    parse(&a, "udp://127.0.0.1:0", IOP_TCP);
    listen_ok(&a, &sfd, &bound);
    assert_int_equal(bound.transport, IOP_UDP);
    assert_string_equal(bound.host, "127.0.0.1");
    int port = port_number(bound.port);
    assert_true(port > 0);
    assert_int_equal(port, socket_port(sfd));
    int type = 0;
    socklen_t sl = sizeof type;
    assert_int_equal(getsockopt(sfd, SOL_SOCKET, SO_TYPE, &type, &sl), 0);
    assert_int_equal(type, SOCK_DGRAM);

    assert_int_equal(iop_addr_set_host(&c, IOP_UDP, "127.0.0.1", bound.port), 0);
    connect_ok(&c, 2000, &cfd);
    set_rcv_timeout(sfd);
    set_rcv_timeout(cfd);

    assert_int_equal(send(cfd, "q?", 2, 0), 2);
    char buf[32];
    struct sockaddr_storage from;
    socklen_t fromlen = sizeof from;
    assert_int_equal(recvfrom(sfd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fromlen), 2);
    assert_memory_equal(buf, "q?", 2);
    char name[64];
    iop_sockaddr_format((struct sockaddr *)&from, fromlen, name, sizeof name);
    assert_memory_equal(name, "127.0.0.1:", 10);

    assert_int_equal(sendto(sfd, "a!!", 3, 0, (struct sockaddr *)&from, fromlen), 3);
    assert_int_equal(recv(cfd, buf, sizeof buf, 0), 3);
    assert_memory_equal(buf, "a!!", 3);
    close(cfd);
    close(sfd);
}

/* ---- main --------------------------------------------------------------- */

/* Whether this machine can bind ::1; without it the IPv6 case is not
 * registered at all (rather than passing without testing anything). */
static int have_ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in6 sin6 = {0};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_addr = in6addr_loopback;
    int ok = bind(fd, (struct sockaddr *)&sin6, sizeof sin6) == 0;
    close(fd);
    return ok;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp4_port0),
        cmocka_unit_test(test_tcp_connect_localhost),
        cmocka_unit_test(test_tcp_addrinuse),
        cmocka_unit_test(test_resolve_failure),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_unix_missing),
        cmocka_unit_test(test_unix_stream),
        cmocka_unit_test(test_unix_stale_replaced),
        cmocka_unit_test(test_unix_live_kept),
        cmocka_unit_test(test_unix_regular_file_kept),
        cmocka_unit_test(test_unix_dgram_answer),
        cmocka_unit_test(test_udp_roundtrip),
    };
    const struct CMUnitTest ipv6_tests[] = {
        cmocka_unit_test(test_tcp6_port0),
    };
    int failed = cmocka_run_group_tests_name("socket", tests, make_tmpdir, remove_tmpdir);
    if (have_ipv6_loopback())
        failed += cmocka_run_group_tests_name("socket_ipv6", ipv6_tests, NULL, NULL);
    else
        fprintf(stderr, "no IPv6 loopback: IPv6 tests not built into this run\n");
    return failed;
}
