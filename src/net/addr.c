/*
 * Address parsing and formatting. Parsing checks form only; names are
 * resolved later, with getaddrinfo, by iop_listen() and iop_connect().
 */
#include "ioplex.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

_Static_assert(IOP_PATH_MAX == sizeof(((struct sockaddr_un *)0)->sun_path),
               "IOP_PATH_MAX must match sun_path");

/* A decimal port up to 65535, or a service name as RFC 6335 (5.1) has
 * them: letters, digits and inner hyphens, at least one letter, so "-1"
 * is a malformed port (a usage error), not a name that fails to resolve.
 * '_' is kept for old /etc/services entries ("kerberos_master"). */
static int valid_port(const char *p, size_t n)
{
    if (n == 0 || n >= IOP_PORT_MAX)
        return 0;
    int letters = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        int alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        letters |= alpha;
        if (!(ch >= '0' && ch <= '9') && !alpha && ch != '-' && ch != '_')
            return 0;
    }
    if (letters) /* a service name from /etc/services, e.g. "echo" */
        return p[0] != '-' && p[n - 1] != '-';
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0; /* digits and hyphens: neither a number nor a name */
        v = v * 10 + (unsigned long)(p[i] - '0');
        if (v > 65535)
            return 0;
    }
    return 1;
}

/* Host names, IPv4 and IPv6 literals (with a %scope): letters, digits and
 * a little punctuation, nothing that could be a shell or URL artefact. */
static int valid_host(const char *h, size_t n)
{
    if (n >= IOP_HOST_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)h[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
              (ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '.' ||
              ch == ':' || ch == '%' || ch == '_'))
            return 0;
    }
    return 1;
}

static void clear(struct iop_addr *a, enum iop_transport t)
{
    memset(a, 0, sizeof *a);
    a->transport = t;
    a->family = AF_UNSPEC;
}

static enum iop_transport unix_kind(enum iop_transport t)
{
    return (t == IOP_UDP || t == IOP_UNIX_DGRAM) ? IOP_UNIX_DGRAM : IOP_UNIX;
}

static enum iop_transport ip_kind(enum iop_transport t)
{
    return (t == IOP_UDP || t == IOP_UNIX_DGRAM) ? IOP_UDP : IOP_TCP;
}

int iop_addr_set_unix(struct iop_addr *a, enum iop_transport t, const char *path)
{
    if (!path || !*path)
        return IOP_EADDR;
    size_t n = strlen(path);
    clear(a, unix_kind(t));
    if (n >= sizeof a->path)
        return -ENAMETOOLONG;
    memcpy(a->path, path, n + 1);
    return 0;
}

static int set_host_n(struct iop_addr *a, enum iop_transport t, const char *host,
                      size_t hn, const char *port, size_t pn)
{
    clear(a, ip_kind(t));
    if (hn >= 2 && host[0] == '[' && host[hn - 1] == ']') {
        host++;
        hn -= 2;
        a->family = AF_INET6;
    }
    if (!valid_host(host, hn) || !valid_port(port, pn))
        return IOP_EADDR;
    memcpy(a->host, host, hn);
    memcpy(a->port, port, pn);
    return 0;
}

int iop_addr_set_host(struct iop_addr *a, enum iop_transport t,
                      const char *host, const char *port)
{
    if (!port)
        return IOP_EADDR;
    if (!host)
        host = "";
    return set_host_n(a, t, host, strlen(host), port, strlen(port));
}

static const struct {
    const char *scheme;
    enum iop_transport transport;
    int family;
} schemes[] = {
    {"tcp://", IOP_TCP, AF_UNSPEC},    {"tcp4://", IOP_TCP, AF_INET},
    {"tcp6://", IOP_TCP, AF_INET6},    {"udp://", IOP_UDP, AF_UNSPEC},
    {"udp4://", IOP_UDP, AF_INET},     {"udp6://", IOP_UDP, AF_INET6},
    {"unix://", IOP_UNIX, AF_UNIX},    {"unixgram://", IOP_UNIX_DGRAM, AF_UNIX},
};

/* "host:port", "[v6]:port" or "port". */
static int parse_host_port(struct iop_addr *a, enum iop_transport t, const char *s)
{
    const char *colon;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return IOP_EADDR;
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon && memchr(s, ':', (size_t)(colon - s)))
            return IOP_EADDR; /* a bare IPv6 literal: brackets are required */
    }
    if (!colon)
        return set_host_n(a, t, "", 0, s, strlen(s));
    size_t hn = (size_t)(colon - s);
    if (hn == 0)
        return IOP_EADDR;
    return set_host_n(a, t, s, hn, colon + 1, strlen(colon + 1));
}

int iop_addr_parse(struct iop_addr *a, const char *spec, enum iop_transport dflt)
{
    if (!spec || !*spec) {
        clear(a, dflt);
        return IOP_EADDR;
    }
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t n = strlen(schemes[i].scheme);
        if (strncmp(spec, schemes[i].scheme, n) != 0)
            continue;
        if (schemes[i].family == AF_UNIX)
            return iop_addr_set_unix(a, schemes[i].transport, spec + n);
        int r = parse_host_port(a, schemes[i].transport, spec + n);
        if (r == 0 && schemes[i].family != AF_UNSPEC) {
            if (a->family != AF_UNSPEC && a->family != schemes[i].family)
                return IOP_EADDR;
            a->family = schemes[i].family;
        }
        return r;
    }
    if (strstr(spec, "://")) {
        clear(a, dflt);
        return IOP_EADDR; /* a scheme we do not know */
    }
    if (strchr(spec, '/'))
        return iop_addr_set_unix(a, dflt, spec);
    return parse_host_port(a, dflt, spec);
}

int iop_transport_is_stream(enum iop_transport t)
{
    return t == IOP_TCP || t == IOP_UNIX;
}

int iop_transport_is_unix(enum iop_transport t)
{
    return t == IOP_UNIX || t == IOP_UNIX_DGRAM;
}

const char *iop_transport_name(enum iop_transport t)
{
    switch (t) {
    case IOP_TCP: return "tcp";
    case IOP_UDP: return "udp";
    case IOP_UNIX: return "unix";
    case IOP_UNIX_DGRAM: return "unixgram";
    }
    return "?";
}

void iop_addr_format(const struct iop_addr *a, char *buf, size_t len)
{
    const char *scheme = iop_transport_name(a->transport);
    if (iop_transport_is_unix(a->transport)) {
        snprintf(buf, len, "%s://%s", scheme, a->path);
        return;
    }
    const char *host = a->host[0] ? a->host : "*";
    if (strchr(host, ':'))
        snprintf(buf, len, "%s://[%s]:%s", scheme, host, a->port);
    else
        snprintf(buf, len, "%s://%s:%s", scheme, host, a->port);
}

void iop_sockaddr_format(const struct sockaddr *sa, socklen_t salen, char *buf,
                         size_t len)
{
    char host[INET6_ADDRSTRLEN];
    switch (salen >= sizeof(sa_family_t) ? sa->sa_family : AF_UNSPEC) {
    case AF_INET: {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        if (salen < sizeof *in) /* never read past what the caller gave */
            break;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(buf, len, "%s:%u", host, ntohs(in->sin_port));
        return;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (salen < sizeof *in6)
            break;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(buf, len, "[%s]:%u", host, ntohs(in6->sin6_port));
        return;
    }
    case AF_UNIX: {
        const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
        size_t n = salen - offsetof(struct sockaddr_un, sun_path);
        if (salen <= offsetof(struct sockaddr_un, sun_path) || n == 0)
            snprintf(buf, len, "unix:(unnamed)");
        else if (un->sun_path[0] == '\0') /* Linux abstract name */
            snprintf(buf, len, "unix:@%.*s", (int)(n - 1), un->sun_path + 1);
        else
            snprintf(buf, len, "%.*s", (int)strnlen(un->sun_path, n), un->sun_path);
        return;
    }
    }
    snprintf(buf, len, "(unknown address)");
}
