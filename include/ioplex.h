/*
 * ioplex: one service API, every classic server design.
 *
 * This is the library's only public header. A service is a table of
 * callbacks (struct iop_service); a server binds an address and drives the
 * service under the concurrency model named in its configuration.
 *
 * Conventions: functions return 0 (or a count) on success and a negative
 * errno value, or one of the IOP_E* codes below, on failure. The library
 * never prints and never exits; where a caller needs words, functions take
 * an `err` buffer of IOP_ERR_LEN bytes (as Redis' anet does) and
 * iop_strerror() names every code.
 */
#ifndef IOPLEX_H
#define IOPLEX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What the library exports: the declarations below, marked IOPLEX_API,
 * and nothing else. It is built with -fvisibility=hidden, so its internal
 * functions are no part of its ABI (libuv's UV_EXTERN, libevent's
 * EVENT2_EXPORT_SYMBOL). Empty where the attribute is unknown; ELF needs
 * nothing else for a static build. */
#ifndef IOPLEX_API
#if defined(__GNUC__) && __GNUC__ >= 4
#define IOPLEX_API __attribute__((visibility("default")))
#else
#define IOPLEX_API
#endif
#endif

#define IOPLEX_VERSION "0.1.0"

/* ---- errors ----------------------------------------------------------- */

/* Failures errno cannot name. All are below -4095, outside errno's range. */
enum {
    IOP_EADDR = -20001,          /* malformed address */
    IOP_ERESOLVE = -20002,       /* host or service name does not resolve */
    IOP_ERESOLVE_AGAIN = -20003, /* temporary name-resolution failure */
    IOP_EMODEL = -20004,         /* unknown concurrency model */
    IOP_ESERVICE = -20005,       /* unknown service */
    IOP_EUNFIT = -20006,         /* model, service and transport do not fit */
};

#define IOP_ERR_LEN 256

IOPLEX_API const char *iop_strerror(int err);

/* ---- addresses -------------------------------------------------------- */

enum iop_transport {
    IOP_TCP = 1,
    IOP_UDP,
    IOP_UNIX,       /* Unix-domain stream socket */
    IOP_UNIX_DGRAM, /* Unix-domain datagram socket */
};

#define IOP_HOST_MAX 256
#define IOP_PORT_MAX 32
#define IOP_PATH_MAX 108 /* sizeof(((struct sockaddr_un *)0)->sun_path) on Linux */

struct iop_addr {
    enum iop_transport transport;
    int family;               /* AF_UNSPEC, AF_INET or AF_INET6 (IP only) */
    char host[IOP_HOST_MAX];  /* "" means any address (server), loopback (client) */
    char port[IOP_PORT_MAX];  /* decimal number or service name */
    char path[IOP_PATH_MAX];  /* Unix-domain socket path, NUL-terminated */
};

/*
 * Parse one address: "tcp://host:port", "udp://host:port", "unix:///path",
 * "unixgram:///path", "host:port", "[v6addr]:port", "port" or "/path".
 * A form without a scheme takes `dflt` (IOP_TCP or IOP_UDP for host forms;
 * a Unix form keeps the stream/datagram kind of `dflt`).
 * Returns 0, IOP_EADDR, or -ENAMETOOLONG for a path too long for sun_path.
 */
IOPLEX_API int iop_addr_parse(struct iop_addr *a, const char *spec,
                              enum iop_transport dflt);

/* The "HOST PORT" form of the command line. host may be NULL. */
IOPLEX_API int iop_addr_set_host(struct iop_addr *a, enum iop_transport t,
                                 const char *host, const char *port);
/* A Unix-domain address; -ENAMETOOLONG if it does not fit sun_path. */
IOPLEX_API int iop_addr_set_unix(struct iop_addr *a, enum iop_transport t,
                                 const char *path);

IOPLEX_API int iop_transport_is_stream(enum iop_transport t);
IOPLEX_API int iop_transport_is_unix(enum iop_transport t);
IOPLEX_API const char *iop_transport_name(enum iop_transport t);

/* "tcp://127.0.0.1:80", "udp://[::1]:53", "unix:///run/x.sock". */
IOPLEX_API void iop_addr_format(const struct iop_addr *a, char *buf,
                                size_t len);
/* "127.0.0.1:80", "[::1]:53", "/run/x.sock", or "unix:(unnamed)". */
IOPLEX_API void iop_sockaddr_format(const struct sockaddr *sa,
                                    socklen_t salen, char *buf, size_t len);

/* What a socket made elsewhere is (socket activation, inetd): its
 * transport, family and local address into *a, and whether it is a
 * listening stream socket (*listening, may be NULL). Returns 0, -ENOTSOCK,
 * -EAFNOSUPPORT for a family other than AF_INET, AF_INET6 and AF_UNIX, or
 * another negative errno. */
IOPLEX_API int iop_socket_address(int fd, struct iop_addr *a, int *listening);

/* Bind (and for streams, listen). On success *fd is the socket and, if
 * `bound` is non-NULL, the actual address (port 0 resolved) is stored. */
IOPLEX_API int iop_listen(const struct iop_addr *a, int backlog, int *fd,
                          struct iop_addr *bound, char *err);
/* Connect (a datagram socket is connected to its peer; a Unix datagram
 * client binds an automatic address first so the server can answer).
 * timeout_ms < 0 waits as long as the kernel does. */
IOPLEX_API int iop_connect(const struct iop_addr *a, int timeout_ms, int *fd,
                           char *err);

/* ---- framing ---------------------------------------------------------- */

enum iop_framing {
    IOP_FRAMING_RAW,   /* every chunk read is one message */
    IOP_FRAMING_LINE,  /* "\n"-terminated; a "\r" before it is dropped */
    IOP_FRAMING_LEN32, /* 32-bit big-endian length, then that many bytes */
};

#define IOP_MAX_FRAME_DEFAULT (64 * 1024)

struct iop_frame {
    size_t payload_off; /* where the message starts in the input */
    size_t payload_len; /* message length, framing excluded */
    size_t frame_len;   /* bytes the frame occupies, framing included */
};

/*
 * Find the first complete frame in data[0, len). Returns 1 and fills *f;
 * 0 if more bytes are needed; -EMSGSIZE if the frame's payload is, or is
 * bound to be, longer than max_payload. Raw framing returns all of data
 * (at most max_payload bytes) as one frame.
 */
IOPLEX_API int iop_frame_next(enum iop_framing framing, size_t max_payload,
                              const char *data, size_t len,
                              struct iop_frame *f);
/* Bytes framing adds around a payload: header (len32) and trailer (line). */
IOPLEX_API size_t iop_frame_header(enum iop_framing framing,
                                   size_t payload_len, char hdr[4]);
IOPLEX_API const char *iop_framing_name(enum iop_framing framing);
IOPLEX_API int iop_framing_parse(const char *name, enum iop_framing *out);

/* ---- services --------------------------------------------------------- */

typedef struct iop_conn iop_conn;     /* a stream connection */
typedef struct iop_peer iop_peer;     /* the sender of one datagram */
typedef struct iop_server iop_server;

enum {
    /* The service keeps state shared by all connections, so it needs a
     * model whose connections share memory (not fork or prefork). Its
     * connections can be sent to from any thread with iop_post(). */
    IOP_SERVICE_SHARED_STATE = 1u << 0,
    /* Its clients talk to each other (chat), so it needs a model that
     * serves them at once: an iterative server, one client at a time,
     * refuses it at start. */
    IOP_SERVICE_CLIENTS_TOGETHER = 1u << 1,
    /* The service's datagram answer does not depend on the request
     * (chargen, daytime, ack): it can be many times bigger, so the server
     * answers each source address at most about 10 times a second, after
     * a burst of 20, as it does for any answer bigger than its request. */
    IOP_SERVICE_AMPLIFIES = 1u << 2,
};

struct iop_service {
    const char *name;
    const char *summary;       /* one line for --help */
    enum iop_framing framing;
    size_t max_frame;          /* 0: IOP_MAX_FRAME_DEFAULT */
    unsigned flags;
    void (*on_open)(iop_conn *c);
    void (*on_message)(iop_conn *c, const char *msg, size_t len);
    /* The output queue has drained: a producer (chargen) may send more.
     * Called after the peer's FIN too (it ends input, not output): the
     * connection closes once this sends nothing. */
    void (*on_drain)(iop_conn *c);
    /* error is 0 for an orderly close, else a negative errno. */
    void (*on_close)(iop_conn *c, int error);
    /* NULL if the service has no datagram form. */
    void (*on_datagram)(iop_peer *p, const char *msg, size_t len);
};

IOPLEX_API const struct iop_service *iop_service_find(const char *name);
/* NULL-terminated list of the built-in services. */
IOPLEX_API const struct iop_service *const *iop_services(void);

/* Queue bytes for the peer. Never blocks an event loop: the model writes
 * them when the socket is writable. Returns 0 or -ENOMEM; after iop_close()
 * it returns -EPIPE and queues nothing. */
IOPLEX_API int iop_send(iop_conn *c, const void *data, size_t len);
/* Queue one message with the connection's framing added around it. */
IOPLEX_API int iop_send_frame(iop_conn *c, const void *msg, size_t len);
/*
 * Queue bytes for c from any thread (iop_send() is for c's own callbacks
 * only). The bytes are copied; c's owner (its event loop, or its thread)
 * appends them to c's output on its own thread and writes them. Posts
 * reach c in the order they were made. Needs a service flagged
 * IOP_SERVICE_SHARED_STATE; for any other, this is iop_send().
 *
 * Lifetime: the caller must guarantee that c is open, i.e. that the call
 * falls between c's on_open and the return of its on_close. The usual
 * way: the service keeps its connections in a list under its own mutex,
 * adds in on_open, removes in on_close, and posts only while holding that
 * mutex. What is still posted to c when on_close returns is dropped.
 *
 * Limit, checked when the post is made: a post that would take c's
 * backlog (its unsent output and what is posted to it and not yet
 * appended, together) past the server's high watermark (high_water,
 * 256 KiB by default) is dropped, and so is every later one, and c is
 * closed ("closing PEER: not reading (N bytes queued)"): a client that
 * does not read cannot grow the server's memory, however busy its owner.
 *
 * Returns 0 (accepted; dropped later if c closes first), -ENOBUFS if it
 * was over the limit, -ENOMEM, or, for a post made on c's own thread and
 * applied at once, what iop_send() returns.
 */
IOPLEX_API int iop_post(iop_conn *c, const void *data, size_t len);
/*
 * iop_post() of the same bytes to each of n connections (a broadcast),
 * copied once for all of them: one allocation, shared by the receivers
 * and freed once the last has taken its copy into its output. The same
 * lifetime rule and limit apply to each connection. Returns how many of
 * them it was accepted for (those over their limit, or closing, are not
 * counted), or -ENOMEM if it could not be copied for any.
 */
IOPLEX_API int iop_post_many(iop_conn *const conns[], size_t n,
                             const void *data, size_t len);
/* Close once the queued output has been written; no more messages are
 * delivered. */
IOPLEX_API void iop_close(iop_conn *c);
IOPLEX_API const struct sockaddr *iop_conn_peer(const iop_conn *c,
                                                socklen_t *len);
/* The peer address as text: "127.0.0.1:40000". */
IOPLEX_API const char *iop_conn_peer_name(const iop_conn *c);
IOPLEX_API uint64_t iop_conn_id(const iop_conn *c);
IOPLEX_API void *iop_conn_data(const iop_conn *c);
IOPLEX_API void iop_conn_set_data(iop_conn *c, void *data);
IOPLEX_API iop_server *iop_conn_server(const iop_conn *c);
/* 1 if c speaks TLS. */
IOPLEX_API int iop_conn_tls(const iop_conn *c);
/* With mutual TLS, the subject of the peer's verified certificate (one
 * line, RFC 2253: "CN=alice,O=Example"); NULL without one. */
IOPLEX_API const char *iop_conn_tls_peer(const iop_conn *c);

/* Answer the datagram's sender (one datagram). Never blocks. Returns 0,
 * -EAGAIN if it was dropped (over the source's rate limit, or the peer
 * had no room for it now; counted, and reported once per episode), or
 * another negative errno. */
IOPLEX_API int iop_peer_send(iop_peer *p, const void *data, size_t len);
IOPLEX_API const struct sockaddr *iop_peer_addr(const iop_peer *p,
                                                socklen_t *len);
IOPLEX_API iop_server *iop_peer_server(const iop_peer *p);

/* ---- reporting ---------------------------------------------------------- */

enum iop_log {
    IOP_LOG_OUTPUT, /* a service's own output ("Here is the message: ...") */
    IOP_LOG_ERROR,
    IOP_LOG_INFO,
    IOP_LOG_DEBUG,
};

/* Send one line to the server's report sink (no trailing newline). */
IOPLEX_API void iop_report(const iop_server *s, enum iop_log level,
                           const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- servers ---------------------------------------------------------- */

struct iop_server_config {
    struct iop_addr addr;
    const char *model;                 /* NULL: iop_default_model() */
    const struct iop_service *service; /* NULL: the "ack" service */
    int framing;                       /* -1: the service's own */
    size_t max_frame;                  /* 0: the service's own */
    unsigned max_conns;                /* beyond it, accept and close; 0: the
                                        * default, 10000 or what RLIMIT_NOFILE
                                        * holds less 32 (select: FD_SETSIZE) */
    int once;                          /* exit after the first client */
    int backlog;                       /* 0: SOMAXCONN */
    int drain_ms;                      /* bound on flushing at stop; 0: 5000 */
    unsigned workers;                  /* event loops (-w), or the N of prefork:N
                                        * and pool:N; 0: the model's default */
    int accept_lock;                   /* prefork: children take a lock around
                                        * accept() (Stevens' ch. 30 answer to
                                        * the thundering herd) */
    int idle_timeout_ms;               /* close connections idle this long (no
                                        * complete message in, no output out);
                                        * 0: the default, 300 s; < 0: never */
    size_t high_water;                 /* stop reading a connection whose queued
                                        * output passes this; 0: 256 KiB */
    size_t low_water;                  /* resume below this; 0: high_water / 4 */
    /* Report sink; may be called from several threads or processes. */
    void (*report)(void *ctx, enum iop_log level, const char *line);
    void *report_ctx;
    int report_debug;                  /* pass IOP_LOG_DEBUG lines too (the open
                                        * and close of every connection); 0:
                                        * they are not even formatted */
    /* Unix sockets: the socket file's mode (e.g. 0660, at most 07777),
     * never looser at any moment (set with umask() around bind(), which
     * is process-wide: open before starting threads that create files);
     * 0: as bind() makes it, 0777 less the umask. */
    unsigned unix_mode;
    /* Privileges: once iop_server_open() has bound every listener, it
     * makes the process this user, with its group and supplementary
     * groups, and checks that root cannot be regained; nothing is served
     * before. Needs root. A Unix socket file is given to that user, so the
     * server can still remove it. NULL: stay as is. */
    const char *user;
    int allow_root;                    /* let `user` have uid 0 */
    /* TLS (OpenSSL 3), stream transports only: with tls_cert, every
     * connection speaks TLS 1.2 or 1.3 and the service sees plaintext.
     * The files are read by iop_server_open(), before `user` drops
     * privileges. PEM; tls_cert may hold the chain; tls_key NULL: the key
     * is in tls_cert. tls_ca: the CAs a client certificate is verified
     * against; tls_verify_client: require one (mutual TLS). */
    const char *tls_cert;
    const char *tls_key;
    const char *tls_ca;
    int tls_verify_client;
    /* Sockets made by another process (systemd's socket activation,
     * inetd): serve these instead of binding addr. addr.transport says
     * their kind (iop_socket_address() reads it from a descriptor); each
     * is checked to fit it (a listening stream socket, or a datagram
     * socket; AF_INET, AF_INET6 or AF_UNIX): -EINVAL and a sentence
     * naming the descriptor otherwise. From iop_server_open() on they are
     * the server's, closed by iop_server_close(), which never removes a
     * socket file (whoever made it does). Several stream listeners are
     * served by one server, under the models that accept from several
     * (iterative, thread, pool and the event loops; fork, prefork, aio
     * and uring take one: IOP_EUNFIT); a datagram server takes one. With
     * -w N (workers), the workers share them: nothing is bound. */
    const int *listen_fds;
    unsigned n_listen_fds;
    /* inetd: listen_fds[0] is the one socket inetd (or systemd with
     * Accept=yes) passed. A connected stream socket is served as the only
     * client, then iop_server_run() returns (inetd's "nowait"); a
     * datagram socket is served until no datagram has come for
     * idle_timeout_ms (inetd's "wait": inetd watches it again once the
     * server has exited). The iterative model only. */
    int inetd;
    /* Stream transports only: every connection starts with a PROXY
     * protocol header, v1 or v2 (HAProxy's specification; the version is
     * detected), which a balancer in front sends: the service and the log
     * see the client it names (iop_conn_peer()). A LOCAL header (the
     * balancer's health check) or UNKNOWN keeps the real peer. A missing
     * or bad header closes the connection with one line; one not complete
     * within the idle timeout too. With TLS, the header comes first. */
    int proxy_protocol;
};

IOPLEX_API void iop_server_config_init(struct iop_server_config *cfg);

/* Check that model, service and transport fit, then bind (and become
 * cfg->user). An unknown user, a user with uid 0 without allow_root, or a
 * bad unix_mode is -EINVAL; `user` in a process that is not root, -EPERM;
 * all of these before anything is bound. */
IOPLEX_API int iop_server_open(iop_server **out,
                               const struct iop_server_config *cfg, char *err);
/* The bound address, port 0 resolved: "tcp://127.0.0.1:51717". */
IOPLEX_API const char *iop_server_address(const iop_server *s);
/* Serve until iop_server_stop() or, with `once`, the first client is done.
 * 0, or a negative errno: see iop_server_failure(). */
IOPLEX_API int iop_server_run(iop_server *s);
/* Why iop_server_run() failed, in words, where the errno alone would not
 * say it ("cannot start worker 3 of 4: Resource temporarily unavailable");
 * NULL if it did not fail, or the errno says all. */
IOPLEX_API const char *iop_server_failure(const iop_server *s);
/* Stop accepting, answer what was received, flush within drain_ms and make
 * iop_server_run() return. Async-signal-safe; callable from any thread. */
IOPLEX_API void iop_server_stop(iop_server *s);
/* Read the TLS certificate, key and CA files again: new connections get
 * the new ones, open ones keep theirs; if they cannot be read, the old
 * ones stay and a line says why. Async-signal-safe (a SIGHUP handler):
 * done before the next connection is accepted. */
IOPLEX_API void iop_server_reload_tls(iop_server *s);
IOPLEX_API void iop_server_close(iop_server *s);

struct iop_model_info {
    const char *name;
    const char *summary;
    int datagram;     /* serves datagram transports */
    int shared_state; /* connections share memory */
};
/* NULL-terminated list of the models compiled in. */
IOPLEX_API const struct iop_model_info *const *iop_models(void);
IOPLEX_API const char *iop_default_model(void);

#ifdef __cplusplus
}
#endif
#endif /* IOPLEX_H */
