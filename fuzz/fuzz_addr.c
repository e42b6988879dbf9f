/*
 * Addresses (src/net/addr.c): iop_addr_parse, iop_addr_set_host,
 * iop_addr_set_unix, iop_addr_format and iop_sockaddr_format.
 *
 * Properties, not only "no crash":
 *  - parsing returns 0, IOP_EADDR or -ENAMETOOLONG, and a parsed address
 *    is NUL-terminated, with a port for IP and a path for Unix;
 *  - iop_addr_format() output parses back to the same transport, host,
 *    port and path. The family comes back only where the text carries it
 *    (a host with ':' is IPv6 in brackets); "-4"/"tcp4://" are not shown.
 *    An empty host prints as "*", which is not an address: for it
 *    "scheme://PORT" is parsed back instead;
 *  - iop_sockaddr_format() of an IPv4/IPv6 sockaddr parses back (as
 *    HOST:PORT) to the same address and port; for any bytes and any
 *    length it writes a NUL-terminated string within the buffer.
 */
#include "fuzz_util.h"
#include "ioplex.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

static const enum iop_transport transports[] = {IOP_TCP, IOP_UDP, IOP_UNIX,
                                                IOP_UNIX_DGRAM};

static int terminated(const char *s, size_t size)
{
    return memchr(s, '\0', size) != NULL;
}

static void check_parsed(const struct iop_addr *a)
{
    FUZZ_CHECK(terminated(a->host, sizeof a->host));
    FUZZ_CHECK(terminated(a->port, sizeof a->port));
    FUZZ_CHECK(terminated(a->path, sizeof a->path));
    if (iop_transport_is_unix(a->transport)) {
        FUZZ_CHECK(a->path[0] && !a->host[0] && !a->port[0]);
    } else {
        FUZZ_CHECK(a->transport == IOP_TCP || a->transport == IOP_UDP);
        FUZZ_CHECK(a->port[0] && !a->path[0]);
        FUZZ_CHECK(a->family == AF_UNSPEC || a->family == AF_INET ||
                   a->family == AF_INET6);
    }
}

static void same_addr(const struct iop_addr *a, const struct iop_addr *b)
{
    FUZZ_CHECK(a->transport == b->transport);
    FUZZ_CHECK(strcmp(a->host, b->host) == 0);
    FUZZ_CHECK(strcmp(a->port, b->port) == 0);
    FUZZ_CHECK(strcmp(a->path, b->path) == 0);
}

/* Format, parse back, compare. */
static void round_trip(const struct iop_addr *a, enum iop_transport dflt)
{
    char text[IOP_HOST_MAX + IOP_PATH_MAX + 64];
    iop_addr_format(a, text, sizeof text);
    FUZZ_CHECK(strlen(text) < sizeof text - 1); /* never cut short */
    struct iop_addr b;
    if (!iop_transport_is_unix(a->transport) && !a->host[0]) {
        char star[16 + IOP_PORT_MAX];
        snprintf(star, sizeof star, "%s://*:%s", iop_transport_name(a->transport), a->port);
        FUZZ_CHECK(strcmp(text, star) == 0);
        snprintf(text, sizeof text, "%s://%s", iop_transport_name(a->transport), a->port);
    }
    int r = iop_addr_parse(&b, text, dflt);
    if (r != 0)
        fprintf(stderr, "'%s' does not parse back (%d)\n", text, r);
    FUZZ_CHECK(r == 0);
    same_addr(a, &b);
    if (!iop_transport_is_unix(a->transport)) {
        int v6 = strchr(a->host, ':') != NULL;
        FUZZ_CHECK(b.family == (v6 ? AF_INET6 : AF_UNSPEC));
    }
}

static void fuzz_parse(const char *s, enum iop_transport dflt)
{
    struct iop_addr a;
    memset(&a, 0xAA, sizeof a); /* the parser must not rely on a cleared struct */
    int r = iop_addr_parse(&a, s, dflt);
    FUZZ_CHECK(r == 0 || r == IOP_EADDR || r == -ENAMETOOLONG);
    if (r == -ENAMETOOLONG)
        FUZZ_CHECK(strlen(s) >= IOP_PATH_MAX);
    if (r != 0)
        return;
    check_parsed(&a);
    round_trip(&a, dflt);
}

/* "HOST PORT" of the command line: s is split at its first space. */
static void fuzz_set_host(const char *s, enum iop_transport t)
{
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", s);
    char *space = strchr(buf, ' ');
    const char *host = NULL, *port = buf;
    if (space) {
        *space = '\0';
        host = buf;
        port = space + 1;
    }
    struct iop_addr a;
    int r = iop_addr_set_host(&a, t, host, port);
    FUZZ_CHECK(r == 0 || r == IOP_EADDR);
    if (r == 0) {
        check_parsed(&a);
        FUZZ_CHECK(a.transport == (t == IOP_UDP || t == IOP_UNIX_DGRAM ? IOP_UDP : IOP_TCP));
        round_trip(&a, t);
    }
    r = iop_addr_set_unix(&a, t, s);
    FUZZ_CHECK(r == 0 || r == IOP_EADDR || r == -ENAMETOOLONG);
    FUZZ_CHECK((r == 0) == (s[0] && strlen(s) < IOP_PATH_MAX));
    if (r == 0) {
        check_parsed(&a);
        FUZZ_CHECK(strcmp(a.path, s) == 0);
        round_trip(&a, t);
    }
}

/* Raw sockaddr bytes of every length, and IP ones parsed back. */
static void fuzz_sockaddr(const uint8_t *p, size_t n, uint8_t outlen)
{
    if (n > sizeof(struct sockaddr_storage))
        n = sizeof(struct sockaddr_storage);
    /* Exactly n bytes, so ASan sees a read past the stated length. */
    struct sockaddr *sa = malloc(n ? n : 1);
    FUZZ_CHECK(sa);
    memcpy(sa, p, n);
    char out[300];
    size_t len = outlen % 2 ? sizeof out : (size_t)outlen % 64;
    memset(out, 'Z', sizeof out);
    iop_sockaddr_format(sa, (socklen_t)n, out, len);
    if (len > 0)
        FUZZ_CHECK(terminated(out, len));
    for (size_t i = len; i < sizeof out; i++)
        FUZZ_CHECK(out[i] == 'Z'); /* nothing written past len */

    int fam = n >= sizeof(sa_family_t) ? sa->sa_family : AF_UNSPEC;
    if (len == sizeof out &&
        ((fam == AF_INET && n >= sizeof(struct sockaddr_in)) ||
         (fam == AF_INET6 && n >= sizeof(struct sockaddr_in6)))) {
        struct iop_addr a;
        FUZZ_CHECK(iop_addr_parse(&a, out, IOP_TCP) == 0);
        unsigned char bin[16];
        FUZZ_CHECK(inet_pton(fam, a.host, bin) == 1);
        if (fam == AF_INET) {
            const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
            FUZZ_CHECK(memcmp(bin, &in->sin_addr, 4) == 0);
            FUZZ_CHECK(strtoul(a.port, NULL, 10) == ntohs(in->sin_port));
        } else {
            const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
            FUZZ_CHECK(a.family == AF_INET6);
            FUZZ_CHECK(memcmp(bin, &in6->sin6_addr, 16) == 0);
            FUZZ_CHECK(strtoul(a.port, NULL, 10) == ntohs(in6->sin6_port));
        }
    }
    free(sa);
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size)
{
    struct fuzz_in in = {bytes, size};
    uint8_t op = fuzz_byte(&in);
    enum iop_transport t = transports[(op >> 2) & 3];
    switch (op & 3) {
    case 2: {
        uint8_t outlen = fuzz_byte(&in);
        fuzz_sockaddr(in.p, in.n, outlen);
        return 0;
    }
    default: {
        /* The rest as a C string (an embedded NUL ends it). */
        char *s = malloc(in.n + 1);
        FUZZ_CHECK(s);
        memcpy(s, in.p, in.n);
        s[in.n] = '\0';
        if ((op & 3) == 1)
            fuzz_set_host(s, t);
        else
            fuzz_parse(s, t);
        free(s);
        return 0;
    }
    }
}
