/*
 * The datagram gate: every datagram a server receives, whatever the model
 * (iterative.c, evloop.c, uring.c), goes through iop__dgram_input(), and
 * every answer through iop_peer_send() (peer.c), so that the policy below
 * is written once. See dgram.c.
 */
#ifndef IOP_NET_DGRAM_H
#define IOP_NET_DGRAM_H

#include "internal.h"

/* Why a datagram, or an answer, was dropped. */
enum iop__dgram_drop {
    IOP__DROP_PORT,      /* from a well-known port (below 1024, or NFS's) */
    IOP__DROP_SELF,      /* from the server's own address */
    IOP__DROP_NOUNICAST, /* from an unspecified, broadcast or multicast address */
    IOP__DROP_RATE,      /* over the per-source limit on answers */
    IOP__DROP_LONG,      /* longer than the receive buffer */
    IOP__DROP_FULL,      /* an answer the peer had no room for (not reading) */
    IOP__DROP_REASONS
};

struct iop__dgram;

/* A gate for the datagrams one thread receives on fd. NULL: no memory. */
struct iop__dgram *iop__dgram_new(iop_server *s, int fd);
/* Report a drop episode still open, and free. NULL is ignored. */
void iop__dgram_free(struct iop__dgram *g);

/* One datagram received on the gate's descriptor: p has server, fd, addr
 * and addrlen set; truncated: it was longer than buf. Dropped and counted
 * if it must not be served, else handed to the service's on_datagram.
 * Returns 1 if served (the first client, for --once), 0 if dropped. */
int iop__dgram_input(struct iop__dgram *g, iop_peer *p, const char *buf, size_t len,
                     int truncated);

/* For iop_peer_send(): 1 if the answer of len bytes may go, 0 if it is
 * over the source's rate limit (then dropped and counted). */
int iop__dgram_may_send(struct iop__dgram *g, iop_peer *p, size_t len);
/* Count a dropped datagram or answer (a line when an episode starts). */
void iop__dgram_drop(struct iop__dgram *g, enum iop__dgram_drop why, const iop_peer *p);

/* 1 if p can be answered at all (an unnamed Unix peer cannot). */
int iop__peer_answerable(const iop_peer *p);

#endif
