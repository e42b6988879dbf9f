/*
 * The PROXY protocol header, versions 1 and 2 (HAProxy's specification,
 * doc/proxy-protocol.txt): what a balancer in front of a server sends
 * first on every connection, so that the server learns the original
 * client's address. Pure functions, no I/O (iop__proxy_write_for() asks
 * the socket its two ends, nothing more): the connection's layers
 * (stream/layers.c) feed the parser what they receive; `ioplex connect
 * --send-proxy` and `bench --send-proxy-v2` write headers with
 * iop__proxy_write().
 */
#ifndef IOP_NET_PROXY_HEADER_H
#define IOP_NET_PROXY_HEADER_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

/* v1: a line of at most 107 bytes, CRLF included (the spec). */
#define IOP__PROXY_V1_MAX 107
/* v2: 16 bytes, then `len` more (at most 65535 by the format). A receiver
 * may bound it; we take nginx's bound, 4096 bytes in all
 * (NGX_PROXY_PROTOCOL_MAX_HEADER): the largest addresses (AF_UNIX, 216
 * bytes) leave 3864 for TLVs, far above what balancers send (an AWS VPC
 * endpoint ID, HAProxy's SSL TLVs: tens to hundreds of bytes), and a
 * pending header cannot make the server hold more than that. */
#define IOP__PROXY_MAX 4096
#define IOP__PROXY_V2_SIG "\r\n\r\n\0\r\nQUIT\n"
#define IOP__PROXY_V2_SIGLEN 12

enum iop__proxy_cmd {
    IOP__PROXY_CMD_LOCAL = 0, /* v2 LOCAL: the sender's own connection (a
                               * health check): keep the real endpoints */
    IOP__PROXY_CMD_PROXY = 1, /* relayed for a client: src/dst below */
};

struct iop__proxy_header {
    int version;          /* 1 or 2 */
    enum iop__proxy_cmd command;
    /* AF_INET, AF_INET6, AF_UNIX, or AF_UNSPEC: v1 UNKNOWN, v2 UNSPEC, and
     * any LOCAL (the spec: its address block is ignored). With AF_UNSPEC
     * the receiver keeps the real endpoints. */
    int family;
    int socktype;         /* SOCK_STREAM, SOCK_DGRAM, or 0: unspecified */
    struct sockaddr_storage src, dst; /* meaningful if family != AF_UNSPEC */
    socklen_t srclen, dstlen;
    unsigned tlvs;        /* v2: TLVs read (and skipped) */
};

/* Parse the header at the start of p[0, n). Returns its length (> 0) once
 * it is complete, with *h filled in; 0 if p is a valid beginning that
 * needs more bytes; -1 if it cannot be the start of a valid header, with
 * *why saying why in a few words (a static string). Bytes after the
 * header are not looked at. A prefix that cannot become a header fails at
 * once (plaintext first fails at its first byte), and neither version
 * ever needs more than IOP__PROXY_MAX bytes. */
ssize_t iop__proxy_parse(const void *p, size_t n, struct iop__proxy_header *h,
                         const char **why);

/* Write a header (version 1 or 2) for a connection from src to dst into
 * out (cap bytes): TCP4 or TCP6 when both are AF_INET or both AF_INET6,
 * else (a Unix socket) v1 UNKNOWN or v2 PROXY with family UNSPEC, which
 * tell the receiver to keep the real endpoints. Returns its length, or -1
 * if cap is too small (IOP__PROXY_V1_MAX bytes always do). */
ssize_t iop__proxy_write(int version, const struct sockaddr *src,
                         const struct sockaddr *dst, void *out, size_t cap);
/* The header a balancer would send for the connected socket fd: its own
 * two ends (getsockname(), getpeername()) as source and destination.
 * Returns its length, or a negative errno. */
ssize_t iop__proxy_write_for(int fd, int version, void *out, size_t cap);

#endif
