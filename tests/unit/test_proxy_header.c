/*
 * iop__proxy_parse() and iop__proxy_write() (src/net/proxy_header.c): the
 * PROXY protocol header, v1 and v2, with the specification's examples.
 * Every valid header is also fed cut at every byte: each proper prefix
 * must ask for more, the whole must be read to its exact length, and the
 * bytes after it left alone. Every bad one must fail, and no prefix of it
 * may be read as a header.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "net/proxy_header.h"

#define SIG "\r\n\r\n\0\r\nQUIT\n"

/* Parse h[0, n) whole, after checking it cut at every byte; returns the
 * length parsed, with *out filled. */
static ssize_t parse_every_split(const void *h, size_t n, size_t hdr_len,
                                 struct iop__proxy_header *out)
{
    const char *why = NULL;
    for (size_t k = 0; k < hdr_len; k++) {
        ssize_t r = iop__proxy_parse(h, k, out, &why);
        if (r != 0)
            fail_msg("prefix of %zu bytes: %zd (%s)", k, r, why ? why : "");
    }
    ssize_t r = iop__proxy_parse(h, n, out, &why);
    if (r < 0)
        fail_msg("rejected: %s", why);
    return r;
}

/* A bad header: fails once whole; every prefix either needs more or fails,
 * and once failed stays failed. Returns the reason. */
static const char *parse_bad(const void *h, size_t n)
{
    struct iop__proxy_header out;
    const char *why = NULL;
    int failed = 0;
    for (size_t k = 0; k <= n; k++) {
        ssize_t r = iop__proxy_parse(h, k, &out, &why);
        assert_true(r <= 0);
        if (failed)
            assert_int_equal(r, -1);
        failed = r < 0;
    }
    assert_true(failed);
    assert_non_null(why);
    return why;
}

static void check_in(const struct sockaddr_storage *ss, socklen_t len, const char *host,
                     unsigned port)
{
    const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
    assert_int_equal(len, sizeof *in);
    assert_int_equal(in->sin_family, AF_INET);
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    assert_string_equal(buf, host);
    assert_int_equal(ntohs(in->sin_port), port);
}

static void check_in6(const struct sockaddr_storage *ss, socklen_t len, const char *host,
                      unsigned port)
{
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
    assert_int_equal(len, sizeof *in6);
    assert_int_equal(in6->sin6_family, AF_INET6);
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    assert_string_equal(buf, host);
    assert_int_equal(ntohs(in6->sin6_port), port);
}

/* ---- v1 ---------------------------------------------------------------- */

static void test_v1_tcp4(void **state)
{
    (void)state;
    /* The spec's example, then the connection's first data. */
    static const char h[] = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
    size_t hl = strlen("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
    struct iop__proxy_header out;
    assert_int_equal(parse_every_split(h, sizeof h - 1, hl, &out), hl);
    assert_int_equal(out.version, 1);
    assert_int_equal(out.command, IOP__PROXY_CMD_PROXY);
    assert_int_equal(out.family, AF_INET);
    check_in(&out.src, out.srclen, "192.168.0.1", 56324);
    check_in(&out.dst, out.dstlen, "192.168.0.11", 443);
}

static void test_v1_tcp6(void **state)
{
    (void)state;
    static const char h[] = "PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
    struct iop__proxy_header out;
    assert_int_equal(parse_every_split(h, sizeof h - 1, sizeof h - 1, &out), sizeof h - 1);
    assert_int_equal(out.family, AF_INET6);
    check_in6(&out.src, out.srclen, "2001:db8::1", 65535);
    check_in6(&out.dst, out.dstlen, "::1", 0);
}

static void test_v1_unknown(void **state)
{
    (void)state;
    /* UNKNOWN: the rest of the line, whatever it is, is ignored. */
    static const char *const lines[] = {
        "PROXY UNKNOWN\r\n",
        "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
    };
    for (size_t i = 0; i < 2; i++) {
        struct iop__proxy_header out;
        size_t n = strlen(lines[i]);
        assert_int_equal(parse_every_split(lines[i], n, n, &out), n);
        assert_int_equal(out.version, 1);
        assert_int_equal(out.family, AF_UNSPEC);
    }
}

static void test_v1_longest(void **state)
{
    (void)state;
    /* The spec's worst case is 107 bytes: it must pass; 108 must not. */
    char h[128] = "PROXY UNKNOWN ";
    size_t n = strlen(h);
    memset(h + n, 'x', 105 - n);
    memcpy(h + 105, "\r\n", 3);
    struct iop__proxy_header out;
    assert_int_equal(parse_every_split(h, 107, 107, &out), 107);
    char g[128] = "PROXY UNKNOWN ";
    memset(g + n, 'x', 106 - n);
    memcpy(g + 106, "\r\n", 3);
    assert_string_equal(parse_bad(g, 108), "v1 line longer than 107 bytes");
    /* No CRLF at all: fails at 107 bytes, without waiting for more. */
    char l[200];
    memcpy(l, "PROXY UNKNOWN ", n);
    memset(l + n, 'y', sizeof l - n);
    const char *why = NULL;
    struct iop__proxy_header o2;
    assert_int_equal(iop__proxy_parse(l, 106, &o2, &why), 0);
    assert_int_equal(iop__proxy_parse(l, 107, &o2, &why), -1);
}

static void test_v1_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",    /* LF alone */
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\rX\n", /* CR, no LF */
        "PROXY TCP4 192.168.0.1\t192.168.0.11 56324 443\r\n", /* a tab */
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 4\xc3\xa9\r\n",
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",       /* a field missing */
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 9\r\n", /* one too many */
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 \r\n",  /* trailing space */
        "PROXY TCP4  192.168.0.1 192.168.0.11 56324 443\r\n",  /* two spaces */
        "PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",   /* port too big */
        "PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n",  /* leading zero */
        "PROXY TCP4 192.168.0.1 192.168.0.11 -1 443\r\n",
        "PROXY TCP4 192.168.0.256 192.168.0.11 1 443\r\n",
        "PROXY TCP4 ::1 ::1 1 443\r\n",                        /* v6 under TCP4 */
        "PROXY TCP6 192.168.0.1 192.168.0.11 1 443\r\n",       /* v4 under TCP6 */
        "PROXY UDP4 192.168.0.1 192.168.0.11 1 443\r\n",
        "PROXY tcp4 192.168.0.1 192.168.0.11 1 443\r\n",
        "PROXY UNKNOWNX\r\n",
        "PROXY \r\n",
        "PROXY\r\n",
        "PROXYTCP4 1.2.3.4 1.2.3.4 1 1\r\n",
        "GET / HTTP/1.1\r\n", /* plaintext first: no header at all */
        "hello\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        parse_bad(bad[i], strlen(bad[i]));
    /* Plaintext fails at its first byte, not after 107. */
    struct iop__proxy_header out;
    const char *why = NULL;
    assert_int_equal(iop__proxy_parse("h", 1, &out, &why), -1);
    assert_string_equal(why, "not a PROXY header (the connection must start with one)");
    assert_int_equal(iop__proxy_parse("PROXZ", 5, &out, &why), -1);
}

/* ---- v2 ---------------------------------------------------------------- */

static void test_v2_tcp4(void **state)
{
    (void)state;
    static const unsigned char h[] = SIG "\x21\x11\x00\x0c"
        "\xc0\xa8\x00\x01" "\xc0\xa8\x00\x0b" "\xdc\x04" "\x01\xbb" "data";
    size_t hl = 16 + 12;
    struct iop__proxy_header out;
    assert_int_equal(parse_every_split(h, sizeof h - 1, hl, &out), hl);
    assert_int_equal(out.version, 2);
    assert_int_equal(out.command, IOP__PROXY_CMD_PROXY);
    assert_int_equal(out.family, AF_INET);
    assert_int_equal(out.socktype, SOCK_STREAM);
    check_in(&out.src, out.srclen, "192.168.0.1", 56324);
    check_in(&out.dst, out.dstlen, "192.168.0.11", 443);
    assert_int_equal(out.tlvs, 0);
}

static void test_v2_tcp6_tlvs(void **state)
{
    (void)state;
    /* Two TLVs after the addresses (an ALPN, a NOOP of 3 bytes), then an
     * empty one: read and skipped. */
    static const unsigned char h[] = SIG "\x21\x21\x00\x32"
        "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01"
        "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01"
        "\x30\x39" "\x00\x50"
        "\x01\x00\x02" "h2"
        "\x04\x00\x03" "abc"
        "\x05\x00\x00"
        "after";
    size_t hl = 16 + 0x32;
    struct iop__proxy_header out;
    assert_int_equal(parse_every_split(h, sizeof h - 1, hl, &out), hl);
    assert_int_equal(out.family, AF_INET6);
    check_in6(&out.src, out.srclen, "2001:db8::1", 12345);
    check_in6(&out.dst, out.dstlen, "::1", 80);
    assert_int_equal(out.tlvs, 3);
}

static void test_v2_local(void **state)
{
    (void)state;
    /* LOCAL (a health check): addresses ignored, whatever the family
     * byte says and whatever the block holds. */
    static const unsigned char h[] = SIG "\x20\x00\x00\x00";
    static const unsigned char g[] = SIG "\x20\x11\x00\x05" "xxxxx";
    struct iop__proxy_header out;
    assert_int_equal(parse_every_split(h, sizeof h - 1, 16, &out), 16);
    assert_int_equal(out.command, IOP__PROXY_CMD_LOCAL);
    assert_int_equal(out.family, AF_UNSPEC);
    assert_int_equal(parse_every_split(g, sizeof g - 1, 21, &out), 21);
    assert_int_equal(out.command, IOP__PROXY_CMD_LOCAL);
    assert_int_equal(out.family, AF_UNSPEC);
}

static void test_v2_unspec(void **state)
{
    (void)state;
    static const unsigned char h[] = SIG "\x21\x00\x00\x00" "x";
    struct iop__proxy_header out;
    assert_int_equal(parse_every_split(h, sizeof h - 1, 16, &out), 16);
    assert_int_equal(out.command, IOP__PROXY_CMD_PROXY);
    assert_int_equal(out.family, AF_UNSPEC);
}

static void test_v2_unix(void **state)
{
    (void)state;
    unsigned char h[16 + 216 + 3];
    memcpy(h, SIG "\x21\x31\x00\xd8", 16);
    memset(h + 16, 0, 216);
    strcpy((char *)h + 16, "/run/client.sock");
    memset(h + 16 + 108, 'a', 108); /* 108 bytes, no NUL: all of it */
    memcpy(h + 16 + 216, "end", 3);
    struct iop__proxy_header out;
    assert_int_equal(parse_every_split(h, sizeof h, 232, &out), 232);
    assert_int_equal(out.family, AF_UNIX);
    const struct sockaddr_un *src = (const struct sockaddr_un *)&out.src;
    const struct sockaddr_un *dst = (const struct sockaddr_un *)&out.dst;
    assert_int_equal(src->sun_family, AF_UNIX);
    assert_int_equal(out.srclen, offsetof(struct sockaddr_un, sun_path) + 16);
    assert_memory_equal(src->sun_path, "/run/client.sock", 16);
    assert_int_equal(out.dstlen, offsetof(struct sockaddr_un, sun_path) + 108);
    assert_int_equal(dst->sun_path[107], 'a');
}

static void test_v2_bad(void **state)
{
    (void)state;
    static const struct {
        const char *h;
        size_t n;
        const char *why;
    } bad[] = {
#define B(s, why) {s, sizeof s - 1, why}
        B("\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x0c", "not a PROXY header (the connection must start with one)"),
        B("\r\n\r\n\0\r\nQUIT\r\x21\x11\x00\x0c", "not a PROXY header (the connection must start with one)"),
        B(SIG "\x11\x11\x00\x0c", "v2 header: version not 2"),
        B(SIG "\x31\x11\x00\x0c", "v2 header: version not 2"),
        B(SIG "\x22\x11\x00\x0c", "v2 header: command not LOCAL or PROXY"),
        B(SIG "\x21\x13\x00\x0c", "v2 header: unknown address family or transport"),
        B(SIG "\x21\x41\x00\x0c", "v2 header: unknown address family or transport"),
        B(SIG "\x21\x10\x00\x0c", "v2 header: unknown address family or transport"),
        B(SIG "\x21\x11\x00\x0b", "v2 header: shorter than its addresses"),
        B(SIG "\x21\x21\x00\x0c", "v2 header: shorter than its addresses"),
        B(SIG "\x21\x31\x00\xd7", "v2 header: shorter than its addresses"),
        B(SIG "\x21\x11\xff\xff", "v2 header longer than 4096 bytes"),
        B(SIG "\x20\x00\x0f\xf1", "v2 header longer than 4096 bytes"),
        /* TLVs that run past the end, or a TLV's header cut off */
        B(SIG "\x21\x11\x00\x10" "AAAABBBBCCDD" "\x01\x00\x02" "x",
          "v2 header: a TLV longer than what is left of the header"),
        B(SIG "\x21\x11\x00\x0e" "AAAABBBBCCDD" "\x01\x00",
          "v2 header: a TLV cut off at the header's end"),
        B(SIG "\x21\x00\x00\x01" "\x01", "v2 header: a TLV cut off at the header's end"),
#undef B
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_string_equal(parse_bad(bad[i].h, bad[i].n), bad[i].why);
    /* The largest header taken: 4096 bytes in all, TLVs filling it. */
    static unsigned char big[4096 + 1];
    memcpy(big, SIG "\x21\x00\x0f\xf0", 16);
    for (size_t at = 16; at < 4096;) {
        size_t tl = 4096 - at - 3 < 1000 ? 4096 - at - 3 : 1000;
        big[at] = 0xe0;
        big[at + 1] = (unsigned char)(tl >> 8);
        big[at + 2] = (unsigned char)tl;
        at += 3 + tl;
    }
    struct iop__proxy_header out;
    assert_int_equal(parse_every_split(big, sizeof big, 4096, &out), 4096);
    assert_int_equal(out.tlvs, 5);
}

/* ---- writing ---------------------------------------------------------- */

static void test_write_round_trip(void **state)
{
    (void)state;
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(5555)};
    struct sockaddr_in d4 = {.sin_family = AF_INET, .sin_port = htons(80)};
    inet_pton(AF_INET, "192.0.2.1", &s4.sin_addr);
    inet_pton(AF_INET, "198.51.100.7", &d4.sin_addr);
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(1)};
    struct sockaddr_in6 d6 = {.sin6_family = AF_INET6, .sin6_port = htons(65535)};
    inet_pton(AF_INET6, "2001:db8::5", &s6.sin6_addr);
    inet_pton(AF_INET6, "::ffff:192.0.2.1", &d6.sin6_addr);
    struct sockaddr_un u = {.sun_family = AF_UNIX};
    char buf[IOP__PROXY_V1_MAX];
    struct iop__proxy_header out;
    for (int v = 1; v <= 2; v++) {
        ssize_t n = iop__proxy_write(v, (void *)&s4, (void *)&d4, buf, sizeof buf);
        assert_true(n > 0);
        if (v == 1)
            assert_memory_equal(buf, "PROXY TCP4 192.0.2.1 198.51.100.7 5555 80\r\n", n);
        assert_int_equal(iop__proxy_parse(buf, (size_t)n, &out, NULL), n);
        assert_int_equal(out.version, v);
        check_in(&out.src, out.srclen, "192.0.2.1", 5555);
        check_in(&out.dst, out.dstlen, "198.51.100.7", 80);
        n = iop__proxy_write(v, (void *)&s6, (void *)&d6, buf, sizeof buf);
        assert_true(n > 0);
        assert_int_equal(iop__proxy_parse(buf, (size_t)n, &out, NULL), n);
        check_in6(&out.src, out.srclen, "2001:db8::5", 1);
        check_in6(&out.dst, out.dstlen, "::ffff:192.0.2.1", 65535);
        n = iop__proxy_write(v, (void *)&u, (void *)&u, buf, sizeof buf);
        assert_true(n > 0);
        assert_int_equal(iop__proxy_parse(buf, (size_t)n, &out, NULL), n);
        assert_int_equal(out.command, IOP__PROXY_CMD_PROXY);
        assert_int_equal(out.family, AF_UNSPEC);
        /* too small a buffer: refused, not cut */
        assert_int_equal(iop__proxy_write(v, (void *)&s4, (void *)&d4, buf, 20), -1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),
        cmocka_unit_test(test_v1_tcp6),
        cmocka_unit_test(test_v1_unknown),
        cmocka_unit_test(test_v1_longest),
        cmocka_unit_test(test_v1_bad),
        cmocka_unit_test(test_v2_tcp4),
        cmocka_unit_test(test_v2_tcp6_tlvs),
        cmocka_unit_test(test_v2_local),
        cmocka_unit_test(test_v2_unspec),
        cmocka_unit_test(test_v2_unix),
        cmocka_unit_test(test_v2_bad),
        cmocka_unit_test(test_write_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
