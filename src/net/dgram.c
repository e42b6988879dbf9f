/*
 * The datagram gate (dgram.h): what every model does with a datagram
 * before and after the service sees it. A datagram's source is whatever
 * the sender wrote in it, so a server that answers every datagram can be
 * aimed at others: at itself or at another such server (a loop: one
 * forged datagram from chargen's address to echo never ends), or at a
 * victim, with an answer bigger than the request (chargen turns 1 byte
 * into 444). As inetd does for its built-in services:
 *
 * - Sources that are never a client are dropped before the service runs
 *   (OpenBSD inetd's dg_badinput(), FreeBSD inetd's check_loop()): a
 *   well-known port (below 1024, where the services that answer live,
 *   and NFS's 2049), the server's own address (any address with its port
 *   when it is bound to the wildcard, as check_loop compares the port
 *   only; a Unix socket's own path), and unspecified, broadcast or
 *   multicast addresses. Loopback is allowed, unlike dg_badinput: local
 *   clients are this tool's first users, and the own-port check already
 *   stops a server answering itself.
 * - Answers that amplify are limited per source address (not port: a
 *   forger picks any port): every datagram to a service flagged
 *   IOP_SERVICE_AMPLIFIES (its answer does not depend on the request:
 *   chargen, daytime, ack), and any answer bigger than its request, costs
 *   a token; each source has RATE_BURST and gets RATE_PER_SEC back a
 *   second (a token bucket, as nginx's limit_req or BIND's response rate
 *   limiting). The table is fixed (RATE_SETS x RATE_WAYS sources, the
 *   least recently seen of a set replaced), so memory is bounded whatever
 *   the number of sources; a source pushed out comes back with a full
 *   bucket, so a crowd can only make the limit laxer, never block anyone.
 *   It is per gate (one per event-loop worker): with -w N and
 *   SO_REUSEPORT a source's datagrams may reach several workers.
 * - An answer is never waited for (MSG_DONTWAIT, whatever the model left
 *   the socket): one the peer has no room for (a Unix datagram client that
 *   does not read has at most net.unix.max_dgram_qlen queued) is dropped
 *   and counted, as UDP itself would drop it, instead of holding every
 *   other client until that one reads (audit finding 6).
 * - Nothing is logged per datagram: drops come in episodes, one line when
 *   one starts, and one with the counts when it ends, at the first
 *   datagram served QUIET_MS after the last drop, or at stop (the same
 *   rule as accept()'s failure episodes: the end is reported once the
 *   server has caught up).
 */
#define _GNU_SOURCE
#include "net/dgram.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/un.h>
#include <unistd.h>

#define RATE_PER_SEC 10
#define RATE_BURST 20
#define RATE_SETS 256 /* a power of two */
#define RATE_WAYS 4
#define TOKEN 1000    /* a token in milli-tokens: RATE_PER_SEC of them a second
                       * is RATE_PER_SEC milli-tokens a millisecond */
#define QUIET_MS 1000
#define NFS_PORT 2049

struct slot {
    uint64_t key; /* a hash of the source address; 0: empty */
    uint64_t at;  /* when its tokens were last counted (ms) */
    uint32_t milli;
};

struct iop__dgram {
    iop_server *s;
    /* The gate's own address, as getsockname() gave it. */
    struct sockaddr_storage self;
    socklen_t selflen;
    uint64_t seed; /* for the table's hash: sources cannot be chosen to collide */
    struct {
        int on;
        uint64_t first, last; /* ms */
        uint64_t count[IOP__DROP_REASONS];
    } ep;
    struct slot table[RATE_SETS * RATE_WAYS];
};

static const char *const reason_text[IOP__DROP_REASONS] = {
    [IOP__DROP_PORT] = "from a well-known port",
    [IOP__DROP_SELF] = "from the server's own address",
    [IOP__DROP_NOUNICAST] = "from an unspecified, broadcast or multicast address",
    [IOP__DROP_RATE] = "over the per-source rate limit",
    [IOP__DROP_LONG] = "longer than the receive buffer",
    [IOP__DROP_FULL] = "answers the peer had no room for",
};

struct iop__dgram *iop__dgram_new(iop_server *s, int fd)
{
    struct iop__dgram *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->s = s;
    g->selflen = sizeof g->self;
    if (getsockname(fd, (struct sockaddr *)&g->self, &g->selflen) != 0)
        g->selflen = 0; /* nothing is "ours": only the other checks apply */
    if (getrandom(&g->seed, sizeof g->seed, GRND_NONBLOCK) != (ssize_t)sizeof g->seed)
        g->seed = iop__now_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)g;
    return g;
}

static void episode_end(struct iop__dgram *g)
{
    char counts[256] = "";
    uint64_t total = 0;
    size_t o = 0;
    for (int i = 0; i < IOP__DROP_REASONS; i++) {
        if (!g->ep.count[i])
            continue;
        total += g->ep.count[i];
        int n = snprintf(counts + o, sizeof counts - o, "%s%" PRIu64 " %s", o ? ", " : "",
                         g->ep.count[i], reason_text[i]);
        if (n > 0 && (size_t)n < sizeof counts - o)
            o += (size_t)n;
    }
    uint64_t ms = g->ep.last - g->ep.first;
    iop_report(g->s, IOP_LOG_INFO, "dropped %" PRIu64 " datagram%s in %" PRIu64 ".%01" PRIu64
               " s: %s", total, total == 1 ? "" : "s", ms / 1000, ms % 1000 / 100, counts);
    memset(&g->ep, 0, sizeof g->ep);
}

void iop__dgram_free(struct iop__dgram *g)
{
    if (!g)
        return;
    if (g->ep.on)
        episode_end(g);
    free(g);
}

void iop__dgram_drop(struct iop__dgram *g, enum iop__dgram_drop why, const iop_peer *p)
{
    uint64_t now = iop__now_ms();
    if (!g->ep.on) {
        char who[IOP_PATH_MAX + 32];
        iop_sockaddr_format((const struct sockaddr *)&p->addr, p->addrlen, who, sizeof who);
        iop_report(g->s, IOP_LOG_INFO, "dropping datagrams: %s (%s); counting them until "
                   "they stop", reason_text[why], who);
        g->ep.on = 1;
        g->ep.first = now;
    }
    g->ep.last = now;
    g->ep.count[why]++;
}

int iop__peer_answerable(const iop_peer *p)
{
    return p->addrlen > 0 &&
           !(p->addr.ss_family == AF_UNIX && p->addrlen <= offsetof(struct sockaddr_un, sun_path));
}

/* ---- sources --------------------------------------------------------------------- */

/* An IP source, v4-mapped IPv6 taken as the IPv4 it is. */
struct ipsrc {
    int family; /* AF_INET or AF_INET6; 0 if not IP */
    unsigned char addr[16];
    unsigned port;
};

static struct ipsrc ip_of(const struct sockaddr_storage *ss, socklen_t len)
{
    struct ipsrc a = {0};
    if (ss->ss_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        a.family = AF_INET;
        memcpy(a.addr, &in->sin_addr, 4);
        a.port = ntohs(in->sin_port);
    } else if (ss->ss_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        a.port = ntohs(in6->sin6_port);
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            a.family = AF_INET;
            memcpy(a.addr, in6->sin6_addr.s6_addr + 12, 4);
        } else {
            a.family = AF_INET6;
            memcpy(a.addr, &in6->sin6_addr, 16);
        }
    }
    return a;
}

static int ip_unspecified(const struct ipsrc *a)
{
    static const unsigned char zero[16];
    return memcmp(a->addr, zero, a->family == AF_INET ? 4 : 16) == 0;
}

static int ip_not_unicast(const struct ipsrc *a)
{
    if (a->family == AF_INET) /* 0/8, multicast 224/4, reserved 240/4 with broadcast */
        return a->addr[0] == 0 || a->addr[0] >= 224;
    return ip_unspecified(a) || a->addr[0] == 0xff; /* ::, multicast ff00::/8 */
}

static int is_self(const struct iop__dgram *g, const iop_peer *p)
{
    if (g->selflen == 0)
        return 0;
    if (g->self.ss_family == AF_UNIX) {
        size_t off = offsetof(struct sockaddr_un, sun_path);
        return p->addr.ss_family == AF_UNIX && p->addrlen == g->selflen && g->selflen > off &&
               memcmp(((const struct sockaddr_un *)&p->addr)->sun_path,
                      ((const struct sockaddr_un *)&g->self)->sun_path, g->selflen - off) == 0;
    }
    struct ipsrc me = ip_of(&g->self, g->selflen), src = ip_of(&p->addr, p->addrlen);
    if (!me.family || !src.family || me.port != src.port)
        return 0;
    /* Bound to the wildcard, every local address is ours: the port decides. */
    if (ip_unspecified(&me))
        return 1;
    return me.family == src.family && memcmp(me.addr, src.addr, me.family == AF_INET ? 4 : 16) == 0;
}

/* IOP__DROP_REASONS if the source may be served. */
static enum iop__dgram_drop check_source(const struct iop__dgram *g, const iop_peer *p)
{
    if (is_self(g, p))
        return IOP__DROP_SELF;
    struct ipsrc src = ip_of(&p->addr, p->addrlen);
    if (!src.family)
        return IOP__DROP_REASONS; /* a Unix peer: nothing else to check */
    if (ip_not_unicast(&src))
        return IOP__DROP_NOUNICAST;
    if (src.port < 1024 || src.port == NFS_PORT)
        return IOP__DROP_PORT;
    return IOP__DROP_REASONS;
}

/* ---- the rate limit -------------------------------------------------------------- */

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

static uint64_t hash(uint64_t seed, int family, const unsigned char *b, size_t n)
{
    uint64_t h = mix(seed ^ ((uint64_t)family << 32) ^ n);
    for (; n >= 8; b += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        h = mix(h ^ w);
    }
    uint64_t w = 0;
    memcpy(&w, b, n);
    return mix(h ^ w ^ seed) | 1; /* never 0: 0 is an empty slot */
}

/* The source's key: its IP address, or its Unix socket's name. */
static uint64_t source_key(const struct iop__dgram *g, const iop_peer *p)
{
    struct ipsrc src = ip_of(&p->addr, p->addrlen);
    if (src.family)
        return hash(g->seed, src.family, src.addr, src.family == AF_INET ? 4 : 16);
    size_t off = offsetof(struct sockaddr_un, sun_path);
    size_t n = p->addrlen > off ? p->addrlen - off : 0;
    if (n > sizeof(struct sockaddr_un) - off)
        n = sizeof(struct sockaddr_un) - off;
    return hash(g->seed, p->addr.ss_family,
                (const unsigned char *)((const struct sockaddr_un *)&p->addr)->sun_path, n);
}

/* Take a token from the source's bucket: 1, or 0 if it is empty. */
static int take_token(struct iop__dgram *g, const iop_peer *p)
{
    uint64_t key = source_key(g, p), now = iop__now_ms();
    struct slot *set = &g->table[(key >> 1) % RATE_SETS * RATE_WAYS], *s = NULL;
    for (int i = 0; i < RATE_WAYS && !s; i++)
        if (set[i].key == key)
            s = &set[i];
    if (!s) { /* new: an empty slot, else the least recently seen */
        s = &set[0];
        for (int i = 1; i < RATE_WAYS; i++)
            if (set[i].key == 0 || (s->key != 0 && set[i].at < s->at))
                s = &set[i];
        s->key = key;
        s->at = now;
        s->milli = RATE_BURST * TOKEN;
    }
    uint64_t refill = (now - s->at) * RATE_PER_SEC;
    s->milli = refill >= RATE_BURST * TOKEN - s->milli ? RATE_BURST * TOKEN
                                                       : s->milli + (uint32_t)refill;
    s->at = now;
    if (s->milli < TOKEN)
        return 0;
    s->milli -= TOKEN;
    return 1;
}

/* ---- the gate -------------------------------------------------------------------- */

int iop__dgram_input(struct iop__dgram *g, iop_peer *p, const char *buf, size_t len,
                     int truncated)
{
    p->gate = g;
    p->req_len = len;
    p->sent = 0;
    if (g->ep.on && iop__now_ms() - g->ep.last >= QUIET_MS)
        episode_end(g);
    enum iop__dgram_drop why = truncated ? IOP__DROP_LONG : check_source(g, p);
    if (why == IOP__DROP_REASONS && (g->s->svc->flags & IOP_SERVICE_AMPLIFIES) &&
        iop__peer_answerable(p) && !take_token(g, p))
        why = IOP__DROP_RATE;
    if (why != IOP__DROP_REASONS) {
        iop__dgram_drop(g, why, p);
        return 0;
    }
    g->s->svc->on_datagram(p, buf, len);
    return 1;
}

int iop__dgram_may_send(struct iop__dgram *g, iop_peer *p, size_t len)
{
    /* A flagged service paid at input; any other answer bigger than its
     * request pays here. */
    if ((g->s->svc->flags & IOP_SERVICE_AMPLIFIES) || p->sent + len <= p->req_len)
        return 1;
    if (take_token(g, p))
        return 1;
    iop__dgram_drop(g, IOP__DROP_RATE, p);
    return 0;
}
