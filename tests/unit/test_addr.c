/*
 * Address parsing and formatting: iop_addr_parse, iop_addr_set_host,
 * iop_addr_set_unix, iop_addr_format and iop_sockaddr_format. Parsing is
 * form only, so none of this touches the network.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "ioplex.h"

/* ---- good addresses ----------------------------------------------------- */

struct good {
    const char *spec;
    enum iop_transport dflt;
    enum iop_transport transport;
    int family;
    const char *host;
    const char *port;
    const char *path;
};

static const struct good goods[] = {
    {"tcp://host:80", IOP_UDP, IOP_TCP, AF_UNSPEC, "host", "80", ""},
    {"udp://1.2.3.4:53", IOP_TCP, IOP_UDP, AF_UNSPEC, "1.2.3.4", "53", ""},
    {"tcp4://h:1", IOP_TCP, IOP_TCP, AF_INET, "h", "1", ""},
    {"udp4://10.0.0.1:9", IOP_TCP, IOP_UDP, AF_INET, "10.0.0.1", "9", ""},
    {"tcp6://[::1]:8080", IOP_TCP, IOP_TCP, AF_INET6, "::1", "8080", ""},
    {"udp6://[::]:53", IOP_TCP, IOP_UDP, AF_INET6, "::", "53", ""},
    {"tcp6://h:1", IOP_TCP, IOP_TCP, AF_INET6, "h", "1", ""},
    {"[::1]:8080", IOP_TCP, IOP_TCP, AF_INET6, "::1", "8080", ""},
    {"[::1]:8080", IOP_UDP, IOP_UDP, AF_INET6, "::1", "8080", ""},
    {"[fe80::1%lo]:80", IOP_TCP, IOP_TCP, AF_INET6, "fe80::1%lo", "80", ""},
    {"localhost:51717", IOP_TCP, IOP_TCP, AF_UNSPEC, "localhost", "51717", ""},
    {"localhost:51717", IOP_UDP, IOP_UDP, AF_UNSPEC, "localhost", "51717", ""},
    {"my-host_1.example.com:7", IOP_TCP, IOP_TCP, AF_UNSPEC, "my-host_1.example.com", "7", ""},
    {"51717", IOP_TCP, IOP_TCP, AF_UNSPEC, "", "51717", ""},
    {"51717", IOP_UDP, IOP_UDP, AF_UNSPEC, "", "51717", ""},
    {"echo", IOP_TCP, IOP_TCP, AF_UNSPEC, "", "echo", ""},
    {"localhost:echo", IOP_TCP, IOP_TCP, AF_UNSPEC, "localhost", "echo", ""},
    {"h:http-alt", IOP_TCP, IOP_TCP, AF_UNSPEC, "h", "http-alt", ""},
    {"h:0", IOP_TCP, IOP_TCP, AF_UNSPEC, "h", "0", ""},
    {"0", IOP_TCP, IOP_TCP, AF_UNSPEC, "", "0", ""},
    {"h:65535", IOP_TCP, IOP_TCP, AF_UNSPEC, "h", "65535", ""},
    {"65535", IOP_TCP, IOP_TCP, AF_UNSPEC, "", "65535", ""},
    {"unix:///tmp/x.sock", IOP_TCP, IOP_UNIX, AF_UNSPEC, "", "", "/tmp/x.sock"},
    {"unix:///tmp/x.sock", IOP_UDP, IOP_UNIX, AF_UNSPEC, "", "", "/tmp/x.sock"},
    {"unixgram:///tmp/y", IOP_TCP, IOP_UNIX_DGRAM, AF_UNSPEC, "", "", "/tmp/y"},
    /* A bare path keeps the stream/datagram kind of the default. */
    {"/tmp/z", IOP_TCP, IOP_UNIX, AF_UNSPEC, "", "", "/tmp/z"},
    {"/tmp/z", IOP_UDP, IOP_UNIX_DGRAM, AF_UNSPEC, "", "", "/tmp/z"},
    {"/tmp/z", IOP_UNIX, IOP_UNIX, AF_UNSPEC, "", "", "/tmp/z"},
    {"/tmp/z", IOP_UNIX_DGRAM, IOP_UNIX_DGRAM, AF_UNSPEC, "", "", "/tmp/z"},
    /* And a host form with a Unix default takes the matching IP kind. */
    {"h:1", IOP_UNIX, IOP_TCP, AF_UNSPEC, "h", "1", ""},
    {"h:1", IOP_UNIX_DGRAM, IOP_UDP, AF_UNSPEC, "h", "1", ""},
};

static void test_parse_good(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof goods / sizeof goods[0]; i++) {
        const struct good *g = &goods[i];
        struct iop_addr a;
        memset(&a, 0x5a, sizeof a); /* every field must be set by the parser */
        int r = iop_addr_parse(&a, g->spec, g->dflt);
        if (r != 0)
            fail_msg("\"%s\": returned %d (%s)", g->spec, r, iop_strerror(r));
        if (a.transport != g->transport)
            fail_msg("\"%s\": transport %d, expected %d", g->spec, a.transport,
                     g->transport);
        if (!iop_transport_is_unix(g->transport) && a.family != g->family)
            fail_msg("\"%s\": family %d, expected %d", g->spec, a.family, g->family);
        if (strcmp(a.host, g->host) != 0)
            fail_msg("\"%s\": host \"%s\", expected \"%s\"", g->spec, a.host, g->host);
        if (strcmp(a.port, g->port) != 0)
            fail_msg("\"%s\": port \"%s\", expected \"%s\"", g->spec, a.port, g->port);
        if (strcmp(a.path, g->path) != 0)
            fail_msg("\"%s\": path \"%s\", expected \"%s\"", g->spec, a.path, g->path);
    }
}

/* ---- bad addresses ------------------------------------------------------ */

static const char *const bads[] = {
    "",
    "host:",
    ":80",
    ":",
    "65536",
    "99999999999999999999",
    "host:65536",
    "host:99999",
    "host:-1x!",
    "::1:80",        /* bare IPv6 literal: brackets required */
    "::1",
    "fe80::1:80",
    "[::1]",         /* no port */
    "[::1]:",
    "[::1]80",
    "[::1",
    "::1]:80",
    "[::1]:80:81",
    "ftp://x:1",
    "http://host:80",
    "tcp4://[::1]:80", /* family conflict */
    "udp4://[::1]:53",
    "tcp://",
    "tcp://:80",
    "unix://",
    "unixgram://",
    "host name:80",   /* space */
    " host:80",
    "host :80",
    "host;rm -rf:80",
    "a|b:80",
    "a&b:80",
    "$(id):80",
    "`id`:80",
    "a'b:80",
    "a\"b:80",
    "a*b:80",
    "a?b:80",
    "a\\b:80",
    "a\tb:80",
    "a\nb:80",
    "a@b:80",
    "h:8 0",
    "h:80 ",
    "h:8.0",
    "h:8:0",
    "h:%50",
    "h:-1",           /* a port that is neither a number nor a name */
    "-1",
    "h:1-2",
    "h:-echo",
    "h:echo-",
};

static void test_parse_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        const enum iop_transport dflts[] = {IOP_TCP, IOP_UDP};
        for (size_t d = 0; d < 2; d++) {
            struct iop_addr a;
            int r = iop_addr_parse(&a, bads[i], dflts[d]);
            if (r != IOP_EADDR)
                fail_msg("\"%s\": returned %d, expected IOP_EADDR", bads[i], r);
        }
    }
    struct iop_addr a;
    assert_int_equal(iop_addr_parse(&a, NULL, IOP_TCP), IOP_EADDR);
}

static void test_parse_host_length(void **state)
{
    (void)state;
    char spec[300 + 8];
    struct iop_addr a;
    /* 255 characters fit host[256] with its NUL. */
    memset(spec, 'a', 255);
    memcpy(spec + 255, ":80", 4);
    assert_int_equal(iop_addr_parse(&a, spec, IOP_TCP), 0);
    assert_int_equal(strlen(a.host), 255);
    assert_string_equal(a.port, "80");
    /* 256 and more do not. */
    for (size_t n = 256; n <= 300; n += 44) {
        memset(spec, 'a', n);
        memcpy(spec + n, ":80", 4);
        assert_int_equal(iop_addr_parse(&a, spec, IOP_TCP), IOP_EADDR);
    }
    memset(spec, 'b', 256);
    spec[256] = '\0';
    assert_int_equal(iop_addr_set_host(&a, IOP_TCP, spec, "80"), IOP_EADDR);
}

static void test_parse_port_length(void **state)
{
    (void)state;
    struct iop_addr a;
    char spec[64];
    /* A 31-character service name fits port[32]; 32 do not. */
    snprintf(spec, sizeof spec, "h:%s", "abcdefghijklmnopqrstuvwxyzabcde");
    assert_int_equal(iop_addr_parse(&a, spec, IOP_TCP), 0);
    assert_int_equal(strlen(a.port), 31);
    snprintf(spec, sizeof spec, "h:%s", "abcdefghijklmnopqrstuvwxyzabcdef");
    assert_int_equal(iop_addr_parse(&a, spec, IOP_TCP), IOP_EADDR);
    /* Leading zeros are still numbers within range. */
    assert_int_equal(iop_addr_parse(&a, "h:00080", IOP_TCP), 0);
    assert_int_equal(iop_addr_parse(&a, "h:0000065536", IOP_TCP), IOP_EADDR);
}

/* ---- Unix paths --------------------------------------------------------- */

static void test_unix_path_length(void **state)
{
    (void)state;
    char path[IOP_PATH_MAX + 2];
    char spec[IOP_PATH_MAX + 16];
    struct iop_addr a;

    /* 107 bytes plus the NUL fill sun_path exactly. */
    memset(path, 'p', sizeof path);
    path[0] = '/';
    path[107] = '\0';
    assert_int_equal(iop_addr_set_unix(&a, IOP_UNIX, path), 0);
    assert_int_equal(a.transport, IOP_UNIX);
    assert_string_equal(a.path, path);
    assert_int_equal(iop_addr_parse(&a, path, IOP_TCP), 0);
    assert_string_equal(a.path, path);
    snprintf(spec, sizeof spec, "unix://%s", path);
    assert_int_equal(iop_addr_parse(&a, spec, IOP_TCP), 0);
    assert_string_equal(a.path, path);
    snprintf(spec, sizeof spec, "unixgram://%s", path);
    assert_int_equal(iop_addr_parse(&a, spec, IOP_TCP), 0);
    assert_int_equal(a.transport, IOP_UNIX_DGRAM);

    /* 108 bytes leave no room for the NUL. */
    memset(path, 'p', sizeof path);
    path[0] = '/';
    path[108] = '\0';
    assert_int_equal(iop_addr_set_unix(&a, IOP_UNIX, path), -ENAMETOOLONG);
    assert_int_equal(iop_addr_parse(&a, path, IOP_TCP), -ENAMETOOLONG);
    snprintf(spec, sizeof spec, "unix://%s", path);
    assert_int_equal(iop_addr_parse(&a, spec, IOP_TCP), -ENAMETOOLONG);
    snprintf(spec, sizeof spec, "unixgram://%s", path);
    assert_int_equal(iop_addr_parse(&a, spec, IOP_TCP), -ENAMETOOLONG);

    assert_int_equal(iop_addr_set_unix(&a, IOP_UNIX, ""), IOP_EADDR);
    assert_int_equal(iop_addr_set_unix(&a, IOP_UNIX, NULL), IOP_EADDR);
}

static void test_set_unix_kind(void **state)
{
    (void)state;
    struct iop_addr a;
    assert_int_equal(iop_addr_set_unix(&a, IOP_TCP, "/s"), 0);
    assert_int_equal(a.transport, IOP_UNIX);
    assert_int_equal(iop_addr_set_unix(&a, IOP_UDP, "/s"), 0);
    assert_int_equal(a.transport, IOP_UNIX_DGRAM);
    assert_int_equal(iop_addr_set_unix(&a, IOP_UNIX_DGRAM, "rel/s"), 0);
    assert_int_equal(a.transport, IOP_UNIX_DGRAM);
    assert_string_equal(a.path, "rel/s");
    assert_string_equal(a.host, "");
    assert_string_equal(a.port, "");
}

/* ---- iop_addr_set_host -------------------------------------------------- */

static void test_set_host(void **state)
{
    (void)state;
    struct iop_addr a;
    assert_int_equal(iop_addr_set_host(&a, IOP_TCP, "example.com", "80"), 0);
    assert_int_equal(a.transport, IOP_TCP);
    assert_int_equal(a.family, AF_UNSPEC);
    assert_string_equal(a.host, "example.com");
    assert_string_equal(a.port, "80");
    assert_string_equal(a.path, "");

    assert_int_equal(iop_addr_set_host(&a, IOP_UDP, NULL, "53"), 0);
    assert_int_equal(a.transport, IOP_UDP);
    assert_string_equal(a.host, "");
    assert_string_equal(a.port, "53");

    /* The command line's HOST may be a bracketed or a bare IPv6 literal:
     * there is no port in it to confuse. */
    assert_int_equal(iop_addr_set_host(&a, IOP_TCP, "[::1]", "8080"), 0);
    assert_int_equal(a.family, AF_INET6);
    assert_string_equal(a.host, "::1");
    assert_int_equal(iop_addr_set_host(&a, IOP_TCP, "::1", "8080"), 0);
    assert_string_equal(a.host, "::1");

    assert_int_equal(iop_addr_set_host(&a, IOP_TCP, "h", NULL), IOP_EADDR);
    assert_int_equal(iop_addr_set_host(&a, IOP_TCP, "h", ""), IOP_EADDR);
    assert_int_equal(iop_addr_set_host(&a, IOP_TCP, "h", "65536"), IOP_EADDR);
    assert_int_equal(iop_addr_set_host(&a, IOP_TCP, "h", "8 0"), IOP_EADDR);
    assert_int_equal(iop_addr_set_host(&a, IOP_TCP, "a b", "80"), IOP_EADDR);
    assert_int_equal(iop_addr_set_host(&a, IOP_TCP, "a;b", "80"), IOP_EADDR);
    assert_int_equal(iop_addr_set_host(&a, IOP_TCP, "h", "65535"), 0);
    assert_int_equal(iop_addr_set_host(&a, IOP_TCP, "h", "0"), 0);
}

/* ---- iop_addr_format ---------------------------------------------------- */

static void expect_format(const char *spec, enum iop_transport dflt, const char *want)
{
    struct iop_addr a;
    char buf[512];
    assert_int_equal(iop_addr_parse(&a, spec, dflt), 0);
    memset(buf, 'Z', sizeof buf);
    iop_addr_format(&a, buf, sizeof buf);
    if (strcmp(buf, want) != 0)
        fail_msg("format of \"%s\": \"%s\", expected \"%s\"", spec, buf, want);
    /* What format prints, parse reads back to the same address (except the
     * "*" of an empty host, which is for people, not for parsing). */
    if (a.host[0] || iop_transport_is_unix(a.transport)) {
        struct iop_addr b;
        assert_int_equal(iop_addr_parse(&b, buf, IOP_TCP), 0);
        assert_int_equal(b.transport, a.transport);
        assert_string_equal(b.host, a.host);
        assert_string_equal(b.port, a.port);
        assert_string_equal(b.path, a.path);
    }
}

static void test_addr_format(void **state)
{
    (void)state;
    expect_format("tcp://127.0.0.1:80", IOP_TCP, "tcp://127.0.0.1:80");
    expect_format("host:80", IOP_TCP, "tcp://host:80");
    expect_format("udp://1.2.3.4:53", IOP_TCP, "udp://1.2.3.4:53");
    expect_format("host:53", IOP_UDP, "udp://host:53");
    expect_format("[::1]:8080", IOP_TCP, "tcp://[::1]:8080");
    expect_format("udp6://[::]:53", IOP_TCP, "udp://[::]:53");
    expect_format("[fe80::1%lo]:80", IOP_TCP, "tcp://[fe80::1%lo]:80");
    expect_format("51717", IOP_TCP, "tcp://*:51717");
    expect_format("echo", IOP_UDP, "udp://*:echo");
    expect_format("unix:///run/x.sock", IOP_TCP, "unix:///run/x.sock");
    expect_format("/tmp/z", IOP_UDP, "unixgram:///tmp/z");
    expect_format("unixgram:///tmp/y", IOP_TCP, "unixgram:///tmp/y");

    /* A short buffer is truncated, still NUL-terminated. */
    struct iop_addr a;
    char small[8];
    assert_int_equal(iop_addr_parse(&a, "tcp://127.0.0.1:80", IOP_TCP), 0);
    memset(small, 'Z', sizeof small);
    iop_addr_format(&a, small, sizeof small);
    assert_string_equal(small, "tcp://1");
}

/* ---- iop_sockaddr_format ------------------------------------------------ */

static void test_sockaddr_in(void **state)
{
    (void)state;
    struct sockaddr_in in = {0};
    char buf[128];
    in.sin_family = AF_INET;
    in.sin_port = htons(51717);
    assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &in.sin_addr), 1);
    iop_sockaddr_format((struct sockaddr *)&in, sizeof in, buf, sizeof buf);
    assert_string_equal(buf, "127.0.0.1:51717");

    in.sin_port = htons(0);
    in.sin_addr.s_addr = htonl(INADDR_ANY);
    iop_sockaddr_format((struct sockaddr *)&in, sizeof in, buf, sizeof buf);
    assert_string_equal(buf, "0.0.0.0:0");

    in.sin_port = htons(65535);
    assert_int_equal(inet_pton(AF_INET, "255.1.2.3", &in.sin_addr), 1);
    iop_sockaddr_format((struct sockaddr *)&in, sizeof in, buf, sizeof buf);
    assert_string_equal(buf, "255.1.2.3:65535");
}

static void test_sockaddr_in6(void **state)
{
    (void)state;
    struct sockaddr_in6 in6 = {0};
    char buf[128];
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(8080);
    assert_int_equal(inet_pton(AF_INET6, "::1", &in6.sin6_addr), 1);
    iop_sockaddr_format((struct sockaddr *)&in6, sizeof in6, buf, sizeof buf);
    assert_string_equal(buf, "[::1]:8080");

    assert_int_equal(inet_pton(AF_INET6, "2001:db8::ff00:42:8329", &in6.sin6_addr), 1);
    in6.sin6_port = htons(53);
    iop_sockaddr_format((struct sockaddr *)&in6, sizeof in6, buf, sizeof buf);
    assert_string_equal(buf, "[2001:db8::ff00:42:8329]:53");

    /* The longest text form still fits. */
    assert_int_equal(inet_pton(AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
                               &in6.sin6_addr), 1);
    in6.sin6_port = htons(65535);
    iop_sockaddr_format((struct sockaddr *)&in6, sizeof in6, buf, sizeof buf);
    char want[128];
    char text[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
    snprintf(want, sizeof want, "[%s]:65535", text);
    assert_string_equal(buf, want);
}

static void test_sockaddr_un(void **state)
{
    (void)state;
    struct sockaddr_un un;
    char buf[256];

    /* Named, with the length the kernel reports (path and its NUL). */
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    strcpy(un.sun_path, "/run/x.sock");
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
                                strlen(un.sun_path) + 1);
    iop_sockaddr_format((struct sockaddr *)&un, len, buf, sizeof buf);
    assert_string_equal(buf, "/run/x.sock");
    /* The full structure's length gives the same. */
    iop_sockaddr_format((struct sockaddr *)&un, sizeof un, buf, sizeof buf);
    assert_string_equal(buf, "/run/x.sock");
    /* A length without the NUL (allowed by the kernel) too. */
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(un.sun_path));
    memset(un.sun_path + strlen("/run/x.sock"), 'G', 8); /* no NUL after it */
    iop_sockaddr_format((struct sockaddr *)&un, len, buf, sizeof buf);
    assert_string_equal(buf, "/run/x.sock");

    /* A path filling sun_path with no NUL at all. */
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    memset(un.sun_path, 'q', sizeof un.sun_path);
    iop_sockaddr_format((struct sockaddr *)&un, sizeof un, buf, sizeof buf);
    assert_int_equal(strlen(buf), sizeof un.sun_path);
    assert_int_equal(buf[0], 'q');

    /* Unnamed: only the family (a client that never bound). */
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    iop_sockaddr_format((struct sockaddr *)&un, sizeof(sa_family_t), buf, sizeof buf);
    assert_string_equal(buf, "unix:(unnamed)");

    /* Linux abstract name: a leading NUL, then the name (not terminated). */
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    memcpy(un.sun_path, "\0abc12", 6);
    un.sun_path[6] = 'J'; /* junk beyond the length must not show */
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 6);
    iop_sockaddr_format((struct sockaddr *)&un, len, buf, sizeof buf);
    assert_string_equal(buf, "unix:@abc12");
    /* An autobind name is five hex digits. */
    memcpy(un.sun_path, "\0" "00f3a", 6);
    iop_sockaddr_format((struct sockaddr *)&un, len, buf, sizeof buf);
    assert_string_equal(buf, "unix:@00f3a");
}

static void test_sockaddr_unknown(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    char buf[64];
    memset(&ss, 0, sizeof ss);
    ss.ss_family = AF_UNSPEC;
    iop_sockaddr_format((struct sockaddr *)&ss, sizeof ss, buf, sizeof buf);
    assert_string_equal(buf, "(unknown address)");
    /* A length too short to hold even the family. */
    ss.ss_family = AF_INET;
    iop_sockaddr_format((struct sockaddr *)&ss, 1, buf, sizeof buf);
    assert_string_equal(buf, "(unknown address)");
    iop_sockaddr_format((struct sockaddr *)&ss, 0, buf, sizeof buf);
    assert_string_equal(buf, "(unknown address)");
}

static void test_transport_names(void **state)
{
    (void)state;
    assert_string_equal(iop_transport_name(IOP_TCP), "tcp");
    assert_string_equal(iop_transport_name(IOP_UDP), "udp");
    assert_string_equal(iop_transport_name(IOP_UNIX), "unix");
    assert_string_equal(iop_transport_name(IOP_UNIX_DGRAM), "unixgram");
    assert_true(iop_transport_is_stream(IOP_TCP));
    assert_true(iop_transport_is_stream(IOP_UNIX));
    assert_false(iop_transport_is_stream(IOP_UDP));
    assert_false(iop_transport_is_stream(IOP_UNIX_DGRAM));
    assert_true(iop_transport_is_unix(IOP_UNIX));
    assert_true(iop_transport_is_unix(IOP_UNIX_DGRAM));
    assert_false(iop_transport_is_unix(IOP_TCP));
    assert_false(iop_transport_is_unix(IOP_UDP));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_parse_host_length),
        cmocka_unit_test(test_parse_port_length),
        cmocka_unit_test(test_unix_path_length),
        cmocka_unit_test(test_set_unix_kind),
        cmocka_unit_test(test_set_host),
        cmocka_unit_test(test_addr_format),
        cmocka_unit_test(test_sockaddr_in),
        cmocka_unit_test(test_sockaddr_in6),
        cmocka_unit_test(test_sockaddr_un),
        cmocka_unit_test(test_sockaddr_unknown),
        cmocka_unit_test(test_transport_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
