/*
 * The PROXY protocol header (proxy_header.h), as HAProxy's specification
 * has it. Strict where the spec is: a v1 line is "PROXY", one space, a
 * protocol, single spaces and CRLF, within 107 bytes; a v2 header has the
 * 12-byte signature, version 2, a known command and, for PROXY, one of the
 * listed family/transport bytes, whose address block fits in its length,
 * and TLVs that end exactly where the header ends.
 */
#include "net/proxy_header.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

static const char v1_prefix[] = "PROXY ";
#define V1_PREFIX_LEN 6
#define V2_FIXED 16

#define FAIL(reason) (*why = (reason), (ssize_t)-1)

/* p[0, n) against the first n bytes of want[0, wn): 1 if it could still
 * become want, 0 if it cannot. */
static int prefix_ok(const unsigned char *p, size_t n, const char *want, size_t wn)
{
    return memcmp(p, want, n < wn ? n : wn) == 0;
}

/* ---- v1 ---------------------------------------------------------------- */

/* A port: 1 to 5 digits, no leading zero, at most 65535. */
static int v1_port(const char *s, size_t n, uint16_t *port)
{
    if (n == 0 || n > 5 || (s[0] == '0' && n > 1))
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

static int v1_addr(int family, const char *s, size_t n, uint16_t port,
                   struct sockaddr_storage *out, socklen_t *len)
{
    char text[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof text)
        return -1;
    memcpy(text, s, n);
    text[n] = '\0';
    memset(out, 0, sizeof *out);
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)out;
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        *len = sizeof *in;
        return inet_pton(AF_INET, text, &in->sin_addr) == 1 ? 0 : -1;
    }
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    *len = sizeof *in6;
    return inet_pton(AF_INET6, text, &in6->sin6_addr) == 1 ? 0 : -1;
}

/* The next field of line[*at, end): up to a space or the end. */
static size_t v1_field(const char *line, size_t *at, size_t end, const char **f)
{
    size_t i = *at;
    *f = line + i;
    while (i < end && line[i] != ' ')
        i++;
    size_t n = i - *at;
    *at = i < end ? i + 1 : i; /* past the one space */
    return n;
}

static ssize_t parse_v1(const unsigned char *p, size_t n, struct iop__proxy_header *h,
                        const char **why)
{
    if (!prefix_ok(p, n, v1_prefix, V1_PREFIX_LEN))
        return FAIL("not a PROXY header (the connection must start with one)");
    /* Printable ASCII up to CR LF, within 107 bytes: checked as bytes
     * come, so a bad line fails without waiting for its end. */
    size_t lim = n < IOP__PROXY_V1_MAX ? n : IOP__PROXY_V1_MAX, cr = 0;
    for (size_t i = V1_PREFIX_LEN; i < lim; i++) {
        if (p[i] == '\r') {
            if (i + 2 > IOP__PROXY_V1_MAX)
                return FAIL("v1 line longer than 107 bytes");
            if (i + 1 == n)
                return 0; /* its LF may come */
            if (p[i + 1] != '\n')
                return FAIL("v1 line: CR not followed by LF");
            cr = i;
            break;
        }
        if (p[i] == '\n')
            return FAIL("v1 line not ended by CR LF");
        if (p[i] < 0x20 || p[i] > 0x7e)
            return FAIL("v1 line: a byte that is not printable ASCII");
    }
    if (cr == 0)
        return n >= IOP__PROXY_V1_MAX ? FAIL("v1 line longer than 107 bytes") : 0;

    const char *line = (const char *)p, *f;
    size_t at = V1_PREFIX_LEN;
    size_t fn = v1_field(line, &at, cr, &f);
    memset(h, 0, sizeof *h);
    h->version = 1;
    h->command = IOP__PROXY_CMD_PROXY;
    if (fn == 7 && memcmp(f, "UNKNOWN", 7) == 0) {
        /* The spec: the receiver ignores the rest of the line and keeps
         * the real endpoints. */
        h->family = AF_UNSPEC;
        return (ssize_t)cr + 2;
    }
    int family;
    if (fn == 4 && memcmp(f, "TCP4", 4) == 0)
        family = AF_INET;
    else if (fn == 4 && memcmp(f, "TCP6", 4) == 0)
        family = AF_INET6;
    else
        return FAIL("v1 line: protocol not TCP4, TCP6 or UNKNOWN");
    const char *src, *dst, *sp, *dp;
    size_t srcn = v1_field(line, &at, cr, &src);
    size_t dstn = v1_field(line, &at, cr, &dst);
    size_t spn = v1_field(line, &at, cr, &sp);
    size_t before = at;
    size_t dpn = v1_field(line, &at, cr, &dp);
    if (at != cr || before + dpn != cr) /* a fifth field, or a trailing space */
        return FAIL("v1 line: not 'PROXY TCPn SRC DST SPORT DPORT'");
    uint16_t sport, dport;
    if (v1_port(sp, spn, &sport) != 0 || v1_port(dp, dpn, &dport) != 0)
        return FAIL("v1 line: a port that is not a number from 0 to 65535");
    if (v1_addr(family, src, srcn, sport, &h->src, &h->srclen) != 0 ||
        v1_addr(family, dst, dstn, dport, &h->dst, &h->dstlen) != 0)
        return FAIL(family == AF_INET ? "v1 line: not an IPv4 address"
                                      : "v1 line: not an IPv6 address");
    h->family = family;
    h->socktype = SOCK_STREAM;
    return (ssize_t)cr + 2;
}

/* ---- v2 ---------------------------------------------------------------- */

static size_t v2_addr_len(int family)
{
    return family == AF_INET ? 12 : family == AF_INET6 ? 36 : family == AF_UNIX ? 216 : 0;
}

static void v2_unix(const unsigned char *p, struct sockaddr_storage *out, socklen_t *len)
{
    struct sockaddr_un *un = (struct sockaddr_un *)out;
    memset(out, 0, sizeof *out);
    un->sun_family = AF_UNIX;
    size_t n = strnlen((const char *)p, sizeof un->sun_path);
    memcpy(un->sun_path, p, n);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
}

static void v2_addresses(const unsigned char *a, struct iop__proxy_header *h)
{
    if (h->family == AF_INET) {
        struct sockaddr_in *s = (struct sockaddr_in *)&h->src;
        struct sockaddr_in *d = (struct sockaddr_in *)&h->dst;
        s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, a, 4);
        memcpy(&d->sin_addr, a + 4, 4);
        memcpy(&s->sin_port, a + 8, 2); /* both in network order */
        memcpy(&d->sin_port, a + 10, 2);
        h->srclen = h->dstlen = sizeof *s;
    } else if (h->family == AF_INET6) {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&h->src;
        struct sockaddr_in6 *d = (struct sockaddr_in6 *)&h->dst;
        s->sin6_family = d->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, a, 16);
        memcpy(&d->sin6_addr, a + 16, 16);
        memcpy(&s->sin6_port, a + 32, 2);
        memcpy(&d->sin6_port, a + 34, 2);
        h->srclen = h->dstlen = sizeof *s;
    } else if (h->family == AF_UNIX) {
        v2_unix(a, &h->src, &h->srclen);
        v2_unix(a + 108, &h->dst, &h->dstlen);
    }
}

static ssize_t parse_v2(const unsigned char *p, size_t n, struct iop__proxy_header *h,
                        const char **why)
{
    if (!prefix_ok(p, n, IOP__PROXY_V2_SIG, IOP__PROXY_V2_SIGLEN))
        return FAIL("not a PROXY header (the connection must start with one)");
    if (n <= IOP__PROXY_V2_SIGLEN)
        return 0;
    unsigned ver = p[12] >> 4, cmd = p[12] & 0x0f;
    if (ver != 2)
        return FAIL("v2 header: version not 2");
    if (cmd > 1)
        return FAIL("v2 header: command not LOCAL or PROXY");
    if (n < 14)
        return 0;
    int family = AF_UNSPEC, socktype = 0;
    if (cmd == IOP__PROXY_CMD_PROXY) {
        /* The spec lists these; any other value "must be rejected". */
        switch (p[13]) {
        case 0x00: break;
        case 0x11: family = AF_INET, socktype = SOCK_STREAM; break;
        case 0x12: family = AF_INET, socktype = SOCK_DGRAM; break;
        case 0x21: family = AF_INET6, socktype = SOCK_STREAM; break;
        case 0x22: family = AF_INET6, socktype = SOCK_DGRAM; break;
        case 0x31: family = AF_UNIX, socktype = SOCK_STREAM; break;
        case 0x32: family = AF_UNIX, socktype = SOCK_DGRAM; break;
        default: return FAIL("v2 header: unknown address family or transport");
        }
    } /* LOCAL: the family byte is ignored, as is the whole block (the spec) */
    if (n < V2_FIXED)
        return 0;
    size_t len = (size_t)p[14] << 8 | p[15];
    if (V2_FIXED + len > IOP__PROXY_MAX)
        return FAIL("v2 header longer than 4096 bytes");
    size_t alen = v2_addr_len(family);
    if (len < alen)
        return FAIL("v2 header: shorter than its addresses");
    if (n < V2_FIXED + len)
        return 0;

    memset(h, 0, sizeof *h);
    h->version = 2;
    h->command = (enum iop__proxy_cmd)cmd;
    if (cmd == IOP__PROXY_CMD_PROXY) {
        h->family = family;
        h->socktype = socktype;
        v2_addresses(p + V2_FIXED, h);
        /* TLVs (type, 16-bit length, value) up to the end: each must fit.
         * None changes what we do, so they are checked and skipped. */
        size_t at = V2_FIXED + alen, end = V2_FIXED + len;
        while (at < end) {
            if (end - at < 3)
                return FAIL("v2 header: a TLV cut off at the header's end");
            size_t tl = (size_t)p[at + 1] << 8 | p[at + 2];
            if (end - at - 3 < tl)
                return FAIL("v2 header: a TLV longer than what is left of the header");
            at += 3 + tl;
            h->tlvs++;
        }
    }
    return (ssize_t)(V2_FIXED + len);
}

ssize_t iop__proxy_parse(const void *buf, size_t n, struct iop__proxy_header *h,
                         const char **why)
{
    const unsigned char *p = buf;
    static const char *unused;
    if (!why)
        why = &unused;
    if (n == 0)
        return 0;
    if (p[0] == 'P')
        return parse_v1(p, n, h, why);
    if (p[0] == '\r')
        return parse_v2(p, n, h, why);
    return FAIL("not a PROXY header (the connection must start with one)");
}

/* ---- writing ---------------------------------------------------------- */

ssize_t iop__proxy_write(int version, const struct sockaddr *src,
                         const struct sockaddr *dst, void *out, size_t cap)
{
    int family = src->sa_family == dst->sa_family &&
                 (src->sa_family == AF_INET || src->sa_family == AF_INET6)
                 ? src->sa_family : AF_UNSPEC;
    const struct sockaddr_in *s4 = (const void *)src, *d4 = (const void *)dst;
    const struct sockaddr_in6 *s6 = (const void *)src, *d6 = (const void *)dst;
    if (version == 1) {
        char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
        int n;
        if (family == AF_INET) {
            inet_ntop(AF_INET, &s4->sin_addr, sa, sizeof sa);
            inet_ntop(AF_INET, &d4->sin_addr, da, sizeof da);
            n = snprintf(out, cap, "PROXY TCP4 %s %s %u %u\r\n", sa, da,
                         ntohs(s4->sin_port), ntohs(d4->sin_port));
        } else if (family == AF_INET6) {
            inet_ntop(AF_INET6, &s6->sin6_addr, sa, sizeof sa);
            inet_ntop(AF_INET6, &d6->sin6_addr, da, sizeof da);
            n = snprintf(out, cap, "PROXY TCP6 %s %s %u %u\r\n", sa, da,
                         ntohs(s6->sin6_port), ntohs(d6->sin6_port));
        } else {
            n = snprintf(out, cap, "PROXY UNKNOWN\r\n");
        }
        return n > 0 && (size_t)n < cap ? n : -1;
    }
    size_t alen = v2_addr_len(family), total = V2_FIXED + alen;
    if (cap < total)
        return -1;
    unsigned char *p = out;
    memcpy(p, IOP__PROXY_V2_SIG, IOP__PROXY_V2_SIGLEN);
    p[12] = 0x20 | IOP__PROXY_CMD_PROXY;
    p[13] = family == AF_INET ? 0x11 : family == AF_INET6 ? 0x21 : 0x00;
    p[14] = (unsigned char)(alen >> 8);
    p[15] = (unsigned char)alen;
    unsigned char *a = p + V2_FIXED;
    if (family == AF_INET) {
        memcpy(a, &s4->sin_addr, 4);
        memcpy(a + 4, &d4->sin_addr, 4);
        memcpy(a + 8, &s4->sin_port, 2);
        memcpy(a + 10, &d4->sin_port, 2);
    } else if (family == AF_INET6) {
        memcpy(a, &s6->sin6_addr, 16);
        memcpy(a + 16, &d6->sin6_addr, 16);
        memcpy(a + 32, &s6->sin6_port, 2);
        memcpy(a + 34, &d6->sin6_port, 2);
    }
    return (ssize_t)total;
}

ssize_t iop__proxy_write_for(int fd, int version, void *out, size_t cap)
{
    struct sockaddr_storage me, peer;
    socklen_t ml = sizeof me, pl = sizeof peer;
    if (getsockname(fd, (struct sockaddr *)&me, &ml) != 0 ||
        getpeername(fd, (struct sockaddr *)&peer, &pl) != 0)
        return -errno;
    ssize_t n = iop__proxy_write(version, (struct sockaddr *)&me, (struct sockaddr *)&peer, out,
                                 cap);
    return n > 0 ? n : -EINVAL;
}
