/*
 * The server: checks that model, service and transport fit, binds, runs
 * the model, and stops it. Accepting and waiting are here too, because
 * every model does them the same way: a poll() on the listener and the
 * stop pipe, so that a stop is noticed whichever thread took the signal.
 */
#define _GNU_SOURCE
#include "internal.h"
#include "model/workers.h"
#include "net/acceptor.h"
#include "tls/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_FRAME_LIMIT (1u << 30)
#define DRAIN_MS_DEFAULT 5000
/* Defaults that make a server safe without flags (serve --help says them):
 * - at most 10,000 connections (Redis' maxclients), fewer where the
 *   descriptor limit (ulimit -n, LimitNOFILE=) holds fewer, keeping 32
 *   for the server's own (Redis' CONFIG_MIN_RESERVED_FDS): with the
 *   high watermark and --max-frame, that bounds the server's memory;
 * - a connection with no progress for 5 minutes is closed, so half-sent
 *   frames and stalled readers are not held for ever (nginx closes a
 *   stalled client in 60 s; 5 minutes leaves a person time to type at the
 *   course's prompt). */
#define MAX_CONNS_DEFAULT 10000
#define RESERVED_FDS 32
#define IDLE_TIMEOUT_DEFAULT_MS (300 * 1000)
/* Output queued for a peer beyond which it is not read (a peer that sends
 * without reading cannot grow our memory past it): Redis' default
 * client-output-buffer-limit for pub/sub is 8 MB hard, 2 MB soft; 256 KiB
 * holds a few round trips of any message at 64 KiB --max-frame. Reading
 * resumes at a quarter of it. */
#define HIGH_WATER_DEFAULT (256 * 1024)
/* Lingering close: nginx's lingering_time is 30 s, lingering_timeout 5 s;
 * 2 s is enough for a peer that is still sending to see our FIN. */
#define LINGER_MS 2000
/* accept() out of descriptors: out of the loop this long, unless a
 * connection closes sooner (nginx's accept pause is 500 ms). */
#define ACCEPT_PAUSE_MS 100

#if defined(__has_include)
#if __has_include(<sys/event.h>)
#define IOP_HAVE_KQUEUE 1
#endif
#endif

/* The first is the default: the best event loop the platform has. */
static const struct iop__model *const models[] = {
#ifdef __linux__
    &iop__model_epoll,
#endif
#ifdef IOPLEX_HAVE_URING
    &iop__model_uring,
#endif
#ifdef IOP_HAVE_KQUEUE
    &iop__model_kqueue,
#endif
    &iop__model_poll,
    &iop__model_select,
    &iop__model_iterative,
    &iop__model_fork,
    &iop__model_thread,
    &iop__model_prefork,
    &iop__model_pool,
    &iop__model_aio,
    NULL,
};

const struct iop_model_info *const *iop_models(void)
{
    static const struct iop_model_info *infos[sizeof models / sizeof models[0]];
    for (size_t i = 0; models[i]; i++)
        infos[i] = &models[i]->info;
    return infos;
}

const char *iop_default_model(void) { return models[0]->info.name; }

static const struct iop__model *find_model(const char *name)
{
    for (size_t i = 0; models[i]; i++)
        if (strcmp(models[i]->info.name, name) == 0)
            return models[i];
    return NULL;
}

void iop_server_config_init(struct iop_server_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->framing = -1;
    cfg->addr.transport = IOP_TCP;
}

static int check_fit(const struct iop_server_config *cfg,
                     const struct iop__model *m, const struct iop_service *svc,
                     char *err)
{
    enum iop_transport t = cfg->addr.transport;
    const char *tn = iop_transport_name(t);
    if (!iop_transport_is_stream(t) && !m->info.datagram) {
        snprintf(err, IOP_ERR_LEN, "model '%s' does not serve %s (datagrams "
                 "have no connection to hand to a %s; use -m iterative)",
                 m->info.name, tn, m->info.name);
        return IOP_EUNFIT;
    }
    if (!iop_transport_is_stream(t) && !svc->on_datagram) {
        snprintf(err, IOP_ERR_LEN, "service '%s' has no datagram form and "
                 "cannot run over %s", svc->name, tn);
        return IOP_EUNFIT;
    }
    if ((svc->flags & IOP_SERVICE_SHARED_STATE) && !m->info.shared_state) {
        snprintf(err, IOP_ERR_LEN, "service '%s' shares state between "
                 "connections, which model '%s' cannot (its connections are "
                 "separate processes)", svc->name, m->info.name);
        return IOP_EUNFIT;
    }
    if ((svc->flags & IOP_SERVICE_CLIENTS_TOGETHER) && m->one_at_a_time &&
        iop_transport_is_stream(t)) {
        snprintf(err, IOP_ERR_LEN, "service '%s' connects its clients to each "
                 "other, but model '%s' serves one client at a time, so none "
                 "would ever hear another", svc->name, m->info.name);
        return IOP_EUNFIT;
    }
    return 0;
}

/* The default --max-conns: what the descriptor limit holds, at most
 * MAX_CONNS_DEFAULT and at most the model's own ceiling. */
static unsigned default_max_conns(const struct iop__model *m)
{
    struct rlimit rl;
    rlim_t fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 1024;
    if (m->fd_ceiling && fds > m->fd_ceiling)
        fds = m->fd_ceiling;
    rlim_t room = fds > 2 * RESERVED_FDS ? fds - RESERVED_FDS : fds / 2;
    room /= m->conn_fds ? m->conn_fds : 1;
    if (room < 1)
        room = 1;
    if (room > MAX_CONNS_DEFAULT)
        room = MAX_CONNS_DEFAULT;
    if (m->max_conns_ceiling && room > m->max_conns_ceiling)
        room = m->max_conns_ceiling;
    return (unsigned)room;
}

/* Every default resolved once, into the server's own copy. */
static int resolve_limits(iop_server *s, char *err)
{
    const struct iop__model *m = s->model;
    if (m->max_conns_ceiling && s->cfg.max_conns > m->max_conns_ceiling) {
        snprintf(err, IOP_ERR_LEN, "model '%s' serves at most %u connections "
                 "(--max-conns %u)", m->info.name, m->max_conns_ceiling,
                 s->cfg.max_conns);
        return -EINVAL;
    }
    s->max_conns = s->cfg.max_conns ? s->cfg.max_conns : default_max_conns(m);
    if (s->cfg.idle_timeout_ms == 0)
        s->cfg.idle_timeout_ms = IDLE_TIMEOUT_DEFAULT_MS;
    else if (s->cfg.idle_timeout_ms < 0)
        s->cfg.idle_timeout_ms = 0; /* never: the models test > 0 */
    if (s->cfg.drain_ms <= 0)
        s->cfg.drain_ms = DRAIN_MS_DEFAULT;
    struct iop__policy *p = &s->pol;
    p->high_water = s->cfg.high_water ? s->cfg.high_water : HIGH_WATER_DEFAULT;
    p->low_water = s->cfg.low_water ? s->cfg.low_water : p->high_water / 4;
    p->idle_ms = s->cfg.idle_timeout_ms;
    p->linger_ms = LINGER_MS;
    p->drain_ms = s->cfg.drain_ms;
    p->accept_pause_ms = ACCEPT_PAUSE_MS;
    return 0;
}

int iop_server_open(iop_server **out, const struct iop_server_config *cfg,
                    char *err)
{
    char scratch[IOP_ERR_LEN];
    if (!err)
        err = scratch;
    err[0] = '\0';
    const char *mname = cfg->model ? cfg->model : iop_default_model();
    const struct iop__model *m = find_model(mname);
    if (!m) {
        snprintf(err, IOP_ERR_LEN, "unknown model '%s'", mname);
        return IOP_EMODEL;
    }
    const struct iop_service *svc = cfg->service ? cfg->service
                                                 : iop_service_find("ack");
    int r = check_fit(cfg, m, svc, err);
    if (r != 0)
        return r;
    if (cfg->framing > IOP_FRAMING_LEN32 || cfg->max_frame > MAX_FRAME_LIMIT) {
        snprintf(err, IOP_ERR_LEN, "framing or maximum frame size out of range "
                 "(at most %u bytes)", MAX_FRAME_LIMIT);
        return -EINVAL;
    }
    if (m->check && (r = m->check(err)) != 0)
        return r; /* the model cannot run here (io_uring disabled, ...) */
    struct iop__user user = {0, 0};
    if (cfg->user && (r = iop__user_lookup(cfg->user, cfg->allow_root, &user, err)) != 0)
        return r; /* unknown user, root refused, or we are not root */

    iop_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, IOP_ERR_LEN, "out of memory");
        return -ENOMEM;
    }
    s->cfg = *cfg;
    s->model = m;
    s->svc = svc;
    s->framing = cfg->framing >= 0 ? (enum iop_framing)cfg->framing : svc->framing;
    s->max_frame = cfg->max_frame ? cfg->max_frame
                 : svc->max_frame ? svc->max_frame : IOP_MAX_FRAME_DEFAULT;
    s->listen_fd = -1;
    s->stop_pipe[0] = s->stop_pipe[1] = -1;
    atomic_init(&s->inline_fd, -1);
    if ((r = resolve_limits(s, err)) != 0) {
        iop_server_close(s);
        return r;
    }
    /* TLS files are read first: as whoever started us (root, for a key
     * only root may read), and before anything is bound. */
    if (cfg->tls_cert && !iop_transport_is_stream(cfg->addr.transport)) {
        snprintf(err, IOP_ERR_LEN, "TLS needs a stream transport (DTLS is not supported)");
        iop_server_close(s);
        return -EINVAL;
    }
    if (cfg->proxy_protocol && !iop_transport_is_stream(cfg->addr.transport)) {
        snprintf(err, IOP_ERR_LEN, "the PROXY protocol needs a stream transport");
        iop_server_close(s);
        return -EINVAL;
    }
    if ((r = iop__tls_server_new(&s->tls, cfg, err)) != 0) {
        iop_server_close(s);
        return r;
    }
    if (pipe2(s->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        r = -errno;
        snprintf(err, IOP_ERR_LEN, "pipe: %s", strerror(-r));
        iop_server_close(s);
        return r;
    }
    /* Event-loop workers each bind their own listener (SO_REUSEPORT);
     * the first must carry the option too for the others to bind. */
    unsigned lflags = m->backend && cfg->workers > 1 &&
                      !iop_transport_is_unix(cfg->addr.transport) ? IOP__LISTEN_REUSEPORT : 0;
    /* With a user to become, the Unix socket file is made theirs, so the
     * server can still remove it after the drop. */
    struct iop__sockfile file = {cfg->unix_mode, (uid_t)-1, (gid_t)-1};
    if (cfg->user) {
        file.uid = user.uid;
        file.gid = user.gid;
    }
    if (cfg->n_listen_fds || cfg->inetd) /* made elsewhere: net/listeners.c */
        r = iop__listeners_adopt(s, err);
    else
        r = iop__listen_file(&cfg->addr, cfg->backlog, lflags, &file, &s->listen_fd,
                             &s->bound, err);
    if (r != 0) {
        s->listen_fd = -1;
        iop_server_close(s);
        return r;
    }
    if (!s->listeners)
        s->owner = getpid(); /* the socket file is ours to remove */
    iop__acceptor_init(&s->acceptor, s, s->listen_fd);
    /* Every bind is done here, then privileges are dropped: nothing has
     * been served, and no thread or process started. The model is checked
     * again as that user (io_uring may be limited to a group). */
    r = iop__worker_listeners_bind(s, err);
    if (r == 0 && cfg->user)
        r = iop__user_become(cfg->user, &user, err);
    if (r == 0 && cfg->user && m->check)
        r = m->check(err);
    if (r != 0) {
        iop__listeners_release(s); /* passed sockets stay the caller's */
        iop_server_close(s);
        return r;
    }
    iop_addr_format(&s->bound, s->address, sizeof s->address);
    *out = s;
    return 0;
}

const char *iop_server_address(const iop_server *s) { return s->address; }

int iop_server_run(iop_server *s)
{
    if (iop_transport_is_stream(s->cfg.addr.transport)) {
        char idle[32] = "none";
        if (s->cfg.idle_timeout_ms > 0)
            snprintf(idle, sizeof idle, "%d s", s->cfg.idle_timeout_ms / 1000);
        iop_report(s, IOP_LOG_DEBUG, "limits: %u clients%s, idle timeout %s, "
                   "messages up to %zu bytes", s->max_conns,
                   s->cfg.max_conns ? "" : " (default)", idle, s->max_frame);
    }
    return s->model->run(s);
}

void iop_server_close(iop_server *s)
{
    if (!s)
        return;
    iop__tls_server_free(s->tls);
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
        /* Only the process that bound it removes the socket file. Safe
         * if the name was swapped meanwhile: unlink() never follows a
         * symlink there, and removes only an entry of the socket's
         * directory, which whoever could swap it can remove as well
         * (see unlink_if_stale() in net/socket.c). After --user, that
         * takes a directory the user may write to: say so when it is not,
         * rather than leave the file silently. */
        if (iop_transport_is_unix(s->cfg.addr.transport) && s->owner == getpid() &&
            unlink(s->cfg.addr.path) != 0 && errno != ENOENT)
            iop_report(s, IOP_LOG_ERROR, "cannot remove the socket file %s: %s%s",
                       s->cfg.addr.path, strerror(errno), s->cfg.user ?
                       " (after --user, the server can remove it only from a directory "
                       "that user may write to)" : "");
    }
    iop__worker_listeners_close(s);
    iop__listeners_close(s);
    for (int i = 0; i < 2; i++)
        if (s->stop_pipe[i] >= 0)
            close(s->stop_pipe[i]);
    free(s);
}

int iop__accept(iop_server *s, struct sockaddr_storage *peer, socklen_t *peerlen)
{
    if (s->cfg.inetd)
        return iop__listeners_take_conn(s, peer, peerlen);
    for (;;) {
        iop__accept_caught_up(s);
        int lfd = s->listen_fd;
        int r = s->n_listeners > 1 ? iop__listeners_wait(s, &lfd)
                                   : iop__wait_fd(s, lfd, POLLIN, -1);
        if (r < 0)
            return r;
        s->acceptor.listen_fd = lfd; /* the one that has a client */
        int fd = iop__acceptor_accept(&s->acceptor, peer, peerlen, 0);
        if (fd != -EAGAIN) /* another process or thread took it first */
            return fd;
    }
}

void iop__accept_failed(iop_server *s, int err)
{
    int ms = iop__acceptor_failed(&s->acceptor, err);
    if (ms > 0) /* the pause ends early on stop */
        iop__wait_fd(s, -1, 0, ms);
}

void iop__accept_caught_up(iop_server *s)
{
    struct iop__acceptor *a = &s->acceptor;
    if (iop__acceptor_may_catch_up(a) && iop__acceptor_listener_idle(a))
        iop__acceptor_caught_up(a);
}

int iop__fail(iop_server *s, int err, const char *fmt, ...)
{
    if (s->failure[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->failure, sizeof s->failure, fmt, ap);
        va_end(ap);
    }
    return err;
}

const char *iop_server_failure(const iop_server *s)
{
    return s->failure[0] ? s->failure : NULL;
}

