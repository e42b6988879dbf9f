/*
 * Sockets made elsewhere (socket activation, inetd): iop_socket_address()
 * says what a descriptor is; iop_server_open() with cfg.listen_fds checks
 * each against the transport and the model, leaves them to the caller
 * when it fails, owns them (and closes them, never removing a socket
 * file) when it succeeds.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ioplex.h"

static int ip_socket(int type)
{
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&in, sizeof in), 0);
    if (type == SOCK_STREAM)
        assert_int_equal(listen(fd, 8), 0);
    return fd;
}

static int is_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

static void test_socket_address(void **state)
{
    (void)state;
    struct iop_addr a;
    int listening = -1;
    int t = ip_socket(SOCK_STREAM);
    assert_int_equal(iop_socket_address(t, &a, &listening), 0);
    assert_int_equal(a.transport, IOP_TCP);
    assert_int_equal(a.family, AF_INET);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(listening, 1);

    int u = ip_socket(SOCK_DGRAM);
    assert_int_equal(iop_socket_address(u, &a, &listening), 0);
    assert_int_equal(a.transport, IOP_UDP);
    assert_int_equal(listening, 0);

    /* a connection (inetd's nowait) is a stream socket, not listening */
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in in;
    socklen_t len = sizeof in;
    assert_int_equal(getsockname(t, (struct sockaddr *)&in, &len), 0);
    assert_int_equal(connect(c, (struct sockaddr *)&in, len), 0);
    assert_int_equal(iop_socket_address(c, &a, &listening), 0);
    assert_int_equal(a.transport, IOP_TCP);
    assert_int_equal(listening, 0);

    /* abstract Unix datagram: "@name" */
    int x = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    char name[64];
    snprintf(name, sizeof name, "ioplex-unit-%ld", (long)getpid());
    memcpy(un.sun_path + 1, name, strlen(name));
    assert_int_equal(bind(x, (struct sockaddr *)&un,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name))),
                     0);
    assert_int_equal(iop_socket_address(x, &a, NULL), 0);
    assert_int_equal(a.transport, IOP_UNIX_DGRAM);
    assert_int_equal(a.path[0], '@');
    assert_string_equal(a.path + 1, name);

    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(iop_socket_address(p[0], &a, NULL), -ENOTSOCK);
    close(p[0]), close(p[1]), close(x), close(c), close(u), close(t);
}

static void test_misfit_left_to_caller(void **state)
{
    (void)state;
    int u = ip_socket(SOCK_DGRAM), t1 = ip_socket(SOCK_STREAM), t2 = ip_socket(SOCK_STREAM);
    struct iop_server_config cfg;
    iop_server_config_init(&cfg);
    iop_server *s = NULL;
    char err[IOP_ERR_LEN], want[64];

    /* a datagram socket where streams were asked for */
    int fds[2] = {t1, u};
    cfg.addr.transport = IOP_TCP;
    cfg.listen_fds = fds;
    cfg.n_listen_fds = 2;
    cfg.model = "poll";
    assert_int_equal(iop_server_open(&s, &cfg, err), -EINVAL);
    snprintf(want, sizeof want, "descriptor %d is a udp socket", u);
    assert_non_null(strstr(err, want));
    assert_true(is_open(t1) && is_open(u));

    /* two listeners under a model that accepts from one */
    fds[1] = t2;
    cfg.model = "fork";
    assert_int_equal(iop_server_open(&s, &cfg, err), IOP_EUNFIT);
    assert_non_null(strstr(err, "model 'fork' accepts from one listener"));
    assert_true(is_open(t1) && is_open(t2));

    /* inetd wants a connection, not a listener */
    cfg.model = "iterative";
    cfg.n_listen_fds = 1;
    cfg.inetd = 1;
    assert_int_equal(iop_server_open(&s, &cfg, err), -EINVAL);
    assert_non_null(strstr(err, "listening"));
    assert_true(is_open(t1));
    close(u), close(t1), close(t2);
}

static void test_owned_and_closed(void **state)
{
    (void)state;
    char dir[] = "/tmp/ioplex-listeners.XXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/s.sock", dir);
    int f = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    memcpy(un.sun_path, path, strlen(path));
    assert_int_equal(bind(f, (struct sockaddr *)&un, sizeof un), 0);
    assert_int_equal(listen(f, 8), 0);
    int t = ip_socket(SOCK_STREAM);

    struct iop_server_config cfg;
    iop_server_config_init(&cfg);
    int fds[2] = {t, f};
    cfg.addr.transport = IOP_TCP;
    cfg.listen_fds = fds;
    cfg.n_listen_fds = 2;
    cfg.model = "poll";
    iop_server *s = NULL;
    char err[IOP_ERR_LEN];
    assert_int_equal(iop_server_open(&s, &cfg, err), 0);
    assert_non_null(strstr(iop_server_address(s), "tcp://127.0.0.1:"));
    iop_server_close(s);
    assert_false(is_open(t));
    assert_false(is_open(f));
    struct stat st; /* the socket file is whoever made it's */
    assert_int_equal(lstat(path, &st), 0);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_socket_address),
        cmocka_unit_test(test_misfit_left_to_caller),
        cmocka_unit_test(test_owned_and_closed),
    };
    return cmocka_run_group_tests_name("listeners", tests, NULL, NULL);
}
