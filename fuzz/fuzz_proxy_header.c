/*
 * The PROXY protocol header parser (src/net/proxy_header.c).
 *
 * Properties, not only "no crash":
 *  - the result is -1 (with a reason), 0, or a length within the input
 *    and within the protocol's bounds (v1: 107 bytes; all: 4096);
 *  - cut anywhere, the input reads as a connection's reader sees it: a
 *    header of length L is "need more" at every shorter prefix and the
 *    same header (length, command, family, addresses) at every longer
 *    one; a rejected input is "need more", then rejected from some
 *    prefix on and at every longer one (a split never changes the
 *    outcome);
 *  - a header read with IPv4 or IPv6 addresses, written again with
 *    iop__proxy_write() in the same version, reads back to the same
 *    addresses.
 *
 * Input: the header bytes, as a peer would send them.
 */
#include "fuzz_util.h"
#include "net/proxy_header.h"

#include <string.h>

static void same_header(const struct iop__proxy_header *a, const struct iop__proxy_header *b)
{
    FUZZ_CHECK(a->version == b->version && a->command == b->command);
    FUZZ_CHECK(a->family == b->family && a->socktype == b->socktype);
    FUZZ_CHECK(a->srclen == b->srclen && a->dstlen == b->dstlen && a->tlvs == b->tlvs);
    FUZZ_CHECK(memcmp(&a->src, &b->src, a->srclen) == 0);
    FUZZ_CHECK(memcmp(&a->dst, &b->dst, a->dstlen) == 0);
}

static void check_prefix(const uint8_t *data, size_t k, ssize_t whole,
                         const struct iop__proxy_header *h, ssize_t *last)
{
    struct iop__proxy_header p;
    const char *why = NULL;
    ssize_t r = iop__proxy_parse(data, k, &p, &why);
    if (whole > 0) {
        FUZZ_CHECK(r == ((ssize_t)k < whole ? 0 : whole));
        if (r > 0)
            same_header(&p, h);
    } else if (whole == 0) {
        FUZZ_CHECK(r == 0);
    } else {
        FUZZ_CHECK(r == 0 || r == -1);
        FUZZ_CHECK(*last != -1 || r == -1); /* once rejected, always */
        if (r < 0)
            FUZZ_CHECK(why && why[0]);
    }
    *last = r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    struct iop__proxy_header h;
    const char *why = NULL;
    ssize_t whole = iop__proxy_parse(data, n, &h, &why);
    FUZZ_CHECK(whole >= -1 && whole <= (ssize_t)n && whole <= IOP__PROXY_MAX);
    if (whole < 0)
        FUZZ_CHECK(why && why[0]);
    if (whole > 0) {
        FUZZ_CHECK(h.version == 1 || h.version == 2);
        if (h.version == 1)
            FUZZ_CHECK(whole <= IOP__PROXY_V1_MAX && h.command == IOP__PROXY_CMD_PROXY);
        if (h.command == IOP__PROXY_CMD_LOCAL)
            FUZZ_CHECK(h.family == AF_UNSPEC);
    }
    /* Every prefix up to 300 bytes (a v1 line, a v2 header with the
     * largest addresses), then every 61st: prefixes are ordered, so the
     * properties hold for all or fail on some of these. */
    ssize_t last = 0;
    for (size_t k = 0; k <= n; k += k < 300 ? 1 : 61)
        check_prefix(data, k, whole, &h, &last);
    check_prefix(data, n, whole, &h, &last);

    if (whole > 0 && h.command == IOP__PROXY_CMD_PROXY &&
        (h.family == AF_INET || h.family == AF_INET6)) {
        char buf[IOP__PROXY_V1_MAX];
        ssize_t m = iop__proxy_write(h.version, (const struct sockaddr *)&h.src,
                                     (const struct sockaddr *)&h.dst, buf, sizeof buf);
        FUZZ_CHECK(m > 0);
        struct iop__proxy_header b;
        FUZZ_CHECK(iop__proxy_parse(buf, (size_t)m, &b, NULL) == m);
        FUZZ_CHECK(b.family == h.family && b.srclen == h.srclen && b.dstlen == h.dstlen);
        FUZZ_CHECK(memcmp(&b.src, &h.src, h.srclen) == 0);
        FUZZ_CHECK(memcmp(&b.dst, &h.dst, h.dstlen) == 0);
    }
    return 0;
}
