/* ioplex serve: run a built-in service under a chosen model. */
#define _GNU_SOURCE
#include "activation.h"
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static iop_server *running;

/* SIGHUP, with TLS: read the certificate and key again. */
static void on_reload_signal(int sig)
{
    (void)sig;
    if (running)
        iop_server_reload_tls(running);
}

static volatile sig_atomic_t stop_signals;

/* First SIGINT/SIGTERM: stop gracefully. Second: leave at once. */
static void on_stop_signal(int sig)
{
    if (stop_signals++ > 0)
        _exit(128 + sig);
    notify_send("STOPPING=1");
    if (running)
        iop_server_stop(running);
}

struct report_opts {
    int verbosity; /* -1 quiet, 0 errors and notices, 1 + debug */
    int out_syslog, err_syslog; /* --inetd: stdout, stderr are the socket */
};

static void report(void *ctx, enum iop_log level, const char *line)
{
    const struct report_opts *o = ctx;
    if (level == IOP_LOG_OUTPUT ? o->out_syslog : o->err_syslog) {
        if (level == IOP_LOG_OUTPUT || level == IOP_LOG_ERROR || o->verbosity >= 0)
            activation_syslog(level, line);
        return;
    }
    switch (level) {
    case IOP_LOG_OUTPUT:
        /* One write per line, flushed, so lines from threads or child
         * processes never interleave mid-line. */
        flockfile(stdout);
        fputs(line, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        funlockfile(stdout);
        return;
    case IOP_LOG_ERROR:
        break;
    case IOP_LOG_INFO:
        if (o->verbosity < 0)
            return;
        break;
    case IOP_LOG_DEBUG:
        if (o->verbosity < 1)
            return;
        break;
    }
    fprintf(stderr, "ioplex serve: %s\n", line);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ioplex serve [options] [HOST] PORT\n"
            "       ioplex serve [options] ADDRESS   (tcp://H:P, udp://H:P, unix:///PATH, unixgram:///PATH)\n"
            "       ioplex serve [options] -U PATH\n"
            "\n"
            "Serve a built-in service under a chosen concurrency model. PORT 0\n"
            "picks a free port; the address is printed on stderr.\n"
            "\n"
            "Options:\n"
            "  -m, --model NAME      concurrency model (default %s)\n"
            "  -S, --service NAME    service (default ack)\n"
            "  -u, --udp             UDP (with -U: a Unix datagram socket)\n"
            "  -U, --unix PATH       a Unix-domain socket at PATH\n"
            "  -4, -6                IPv4 only, IPv6 only\n"
            "  -F, --framing KIND    raw, line or len32 (default: the service's)\n"
            "      --max-frame N     longest message in bytes; longer ones close\n"
            "                        the connection (default 65536)\n"
            "      --max-conns N     clients served at once; more are closed at once\n"
            "                        (default 10000, or what `ulimit -n` holds less 32\n"
            "                        descriptors kept for the server; select: below\n"
            "                        FD_SETSIZE; aio: two descriptors a client)\n"
            "      --once            exit after the first client, like the lab's server\n"
            "      --backlog N       listen backlog (default SOMAXCONN)\n"
            "      --drain-ms N      at stop, wait this long for output to flush (5000)\n"
            "  -w, --workers N       event loops (one per core), or the N of prefork/pool;\n"
            "                        -m MODEL:N says the same\n"
            "      --accept-lock     prefork: children take turns in accept() under a\n"
            "                        lock, so a new client wakes one (thundering herd)\n"
            "      --idle-timeout S  close a client with no message in and no output out\n"
            "                        for S seconds (default 300, so a stalled peer's\n"
            "                        half-sent message is not held for ever; 0: never)\n"
            "      --high-water N    stop reading a client whose unsent output passes\n"
            "                        N bytes (default 262144)\n"
            "      --low-water N     resume reading below N bytes (default high/4)\n"
            "      --user NAME       bind as root (a port below 1024 needs it), then\n"
            "                        serve as this user and its groups (needs root); a\n"
            "                        Unix socket file is made NAME's, and removed at exit\n"
            "                        only if NAME may write to its directory (give NAME\n"
            "                        the directory, as systemd's RuntimeDirectory= does)\n"
            "      --allow-root      let --user name a user with uid 0 (refused otherwise)\n"
            "      --mode OCTAL      Unix socket: the socket file's mode, e.g. 0660, never\n"
            "                        looser while it is made\n"
            "      --tls-cert FILE   speak TLS 1.2/1.3 with this certificate (PEM; may hold\n"
            "                        the chain); read before --user; SIGHUP reads it again\n"
            "      --tls-key FILE    its private key (PEM; default: in --tls-cert)\n"
            "      --tls-ca FILE     CAs that client certificates are verified against\n"
            "      --tls-verify-client  require a client certificate (mutual TLS)\n"
            "      --inetd           serve the socket on standard input, as inetd (or\n"
            "                        systemd with Accept=yes) passes it: a connection\n"
            "                        (nowait), or a datagram socket served until idle for\n"
            "                        --idle-timeout (wait; default 10 s); model iterative\n"
            "      --proxy-protocol  every connection starts with a PROXY protocol header\n"
            "                        (v1 or v2, from a balancer such as HAProxy): the\n"
            "                        client it names is the peer; a missing or bad\n"
            "                        header closes the connection (before --tls-cert's\n"
            "                        handshake; streams only)\n"
            "  -q, --quiet           print only service output and errors\n"
            "  -v, --verbose         print connections opening and closing\n"
            "  -h, --help            this text\n"
            "\n"
            "Models:\n",
            iop_default_model());
    for (const struct iop_model_info *const *m = iop_models(); *m; m++)
        fprintf(f, "  %-10s %s%s\n", (*m)->name, (*m)->summary,
                (*m)->datagram ? " (also UDP/unixgram)" : "");
    fprintf(f, "\nServices:\n");
    for (const struct iop_service *const *s = iop_services(); *s; s++)
        fprintf(f, "  %-10s %s%s\n", (*s)->name, (*s)->summary,
                (*s)->on_datagram ? "" : " (streams only)");
    fprintf(f, "\nThe defaults bound what peers can take without any flag: memory to\n"
               "about max-conns x (max-frame + high-water), and time to the idle\n"
               "timeout.\n"
               "Over UDP, as inetd does for its built-in services, a datagram from a\n"
               "port below 1024, from the server's own address or from a broadcast\n"
               "or multicast address gets no answer (so two services cannot be set\n"
               "to answer each other for ever), and a source is answered at most 10\n"
               "times a second, after a burst of 20, where the answer can be bigger\n"
               "than the datagram (ack, daytime, chargen); drops are reported once.\n"
               "\nSocket activation (sd_listen_fds(3)): when LISTEN_PID is this process,\n"
               "the sockets on descriptors 3... (LISTEN_FDS, named by LISTEN_FDNAMES)\n"
               "are served instead of binding: give no address. Streams or datagrams,\n"
               "not both; several streams with iterative, thread, pool or an event\n"
               "loop; -w N workers share them. With NOTIFY_SOCKET set (Type=notify),\n"
               "READY=1 is sent once listening and STOPPING=1 at SIGTERM.\n"
               "\nSIGINT or SIGTERM stops accepting, answers what was received and\n"
               "exits 0; a second one exits at once.\n\n" EXIT_CODES_HELP);
}

enum {
    OPT_MAX_FRAME = 256, OPT_MAX_CONNS, OPT_ONCE, OPT_BACKLOG, OPT_DRAIN,
    OPT_IDLE, OPT_HIGH, OPT_LOW, OPT_ACCEPT_LOCK, OPT_USER, OPT_ALLOW_ROOT,
    OPT_MODE, OPT_TLS_CERT, OPT_TLS_KEY, OPT_TLS_CA, OPT_TLS_VERIFY, OPT_INETD,
    OPT_PROXY_PROTOCOL,
};

static const struct option options[] = {
    {"model", required_argument, NULL, 'm'},
    {"service", required_argument, NULL, 'S'},
    {"udp", no_argument, NULL, 'u'},
    {"unix", required_argument, NULL, 'U'},
    {"framing", required_argument, NULL, 'F'},
    {"max-frame", required_argument, NULL, OPT_MAX_FRAME},
    {"max-conns", required_argument, NULL, OPT_MAX_CONNS},
    {"once", no_argument, NULL, OPT_ONCE},
    {"backlog", required_argument, NULL, OPT_BACKLOG},
    {"drain-ms", required_argument, NULL, OPT_DRAIN},
    {"workers", required_argument, NULL, 'w'},
    {"idle-timeout", required_argument, NULL, OPT_IDLE},
    {"high-water", required_argument, NULL, OPT_HIGH},
    {"low-water", required_argument, NULL, OPT_LOW},
    {"accept-lock", no_argument, NULL, OPT_ACCEPT_LOCK},
    {"user", required_argument, NULL, OPT_USER},
    {"allow-root", no_argument, NULL, OPT_ALLOW_ROOT},
    {"mode", required_argument, NULL, OPT_MODE},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"tls-ca", required_argument, NULL, OPT_TLS_CA},
    {"tls-verify-client", no_argument, NULL, OPT_TLS_VERIFY},
    {"inetd", no_argument, NULL, OPT_INETD},
    {"proxy-protocol", no_argument, NULL, OPT_PROXY_PROTOCOL},
    {"quiet", no_argument, NULL, 'q'},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* A numeric option, or a usage error naming it. */
static int number_opt(const char *name, const char *val, long long min,
                      long long max, long long *out)
{
    *out = cli_parse_number(val, min, max);
    if (*out < 0) {
        cli_error("serve", "%s wants a number from %lld to %lld, not '%s'",
                  name, min, max, val);
        return -1;
    }
    return 0;
}

/* --mode: octal digits only, 1 to 7777 (0 would be a socket no one but
 * root could use, and means "not given" to the library). */
static int mode_opt(const char *val, unsigned *out)
{
    size_t len = strlen(val);
    unsigned long m = 0;
    if (len > 0 && strspn(val, "01234567") == len)
        m = strtoul(val, NULL, 8); /* ULONG_MAX on overflow: out of range */
    if (m == 0 || m > 07777) {
        cli_error("serve", "--mode wants an octal file mode from 1 to 7777 "
                  "(e.g. 0660), not '%s'", val);
        return -1;
    }
    *out = (unsigned)m;
    return 0;
}

/* For a server, a Unix path in a missing directory (or under a file, or
 * on a read-only file system) is a bind failure, not "no server there" as
 * the same errno means to a client. */
static int bind_exit_code(int err)
{
    if (err == -ENOENT || err == -ENOTDIR || err == -EROFS)
        return EXIT_BIND;
    return cli_exit_code(err);
}

int cmd_serve(int argc, char **argv)
{
    struct iop_server_config cfg;
    iop_server_config_init(&cfg);
    struct report_opts ro = {0};
    enum iop_transport transport = IOP_TCP;
    int family = AF_UNSPEC;
    const char *unix_path = NULL, *service = "ack";
    long long v;
    int c, inetd = 0, idle_given = 0;
    optind = 1;
    opterr = 0; /* errors are reported in one line by cli_option_error */
    while ((c = getopt_long(argc, argv, ":m:S:uU:46F:w:qvh", options, NULL)) != -1) {
        switch (c) {
        case 'm': cfg.model = optarg; break;
        case 'S': service = optarg; break;
        case 'u': transport = IOP_UDP; break;
        case 'U': unix_path = optarg; break;
        case '4': family = AF_INET; break;
        case '6': family = AF_INET6; break;
        case 'F': {
            enum iop_framing f;
            if (iop_framing_parse(optarg, &f) != 0) {
                cli_error("serve", "unknown framing '%s' (raw, line or len32)", optarg);
                return EXIT_USAGE;
            }
            cfg.framing = (int)f;
            break;
        }
        case OPT_MAX_FRAME:
            if (number_opt("--max-frame", optarg, 1, 1 << 30, &v))
                return EXIT_USAGE;
            cfg.max_frame = (size_t)v;
            break;
        case OPT_MAX_CONNS:
            if (number_opt("--max-conns", optarg, 1, 1 << 24, &v))
                return EXIT_USAGE;
            cfg.max_conns = (unsigned)v;
            break;
        case OPT_ONCE: cfg.once = 1; break;
        case OPT_BACKLOG:
            if (number_opt("--backlog", optarg, 1, 1 << 20, &v))
                return EXIT_USAGE;
            cfg.backlog = (int)v;
            break;
        case OPT_DRAIN:
            if (number_opt("--drain-ms", optarg, 1, 3600 * 1000, &v))
                return EXIT_USAGE;
            cfg.drain_ms = (int)v;
            break;
        case 'w':
            if (number_opt("-w", optarg, 1, 1024, &v))
                return EXIT_USAGE;
            cfg.workers = (unsigned)v;
            break;
        case OPT_IDLE:
            if (number_opt("--idle-timeout", optarg, 0, 86400, &v))
                return EXIT_USAGE;
            cfg.idle_timeout_ms = v ? (int)v * 1000 : -1; /* 0: never */
            idle_given = 1;
            break;
        case OPT_HIGH:
            if (number_opt("--high-water", optarg, 1, 1 << 30, &v))
                return EXIT_USAGE;
            cfg.high_water = (size_t)v;
            break;
        case OPT_LOW:
            if (number_opt("--low-water", optarg, 0, 1 << 30, &v))
                return EXIT_USAGE;
            cfg.low_water = (size_t)v;
            break;
        case OPT_ACCEPT_LOCK: cfg.accept_lock = 1; break;
        case OPT_USER: cfg.user = optarg; break;
        case OPT_ALLOW_ROOT: cfg.allow_root = 1; break;
        case OPT_MODE:
            if (mode_opt(optarg, &cfg.unix_mode))
                return EXIT_USAGE;
            break;
        case OPT_TLS_CERT: cfg.tls_cert = optarg; break;
        case OPT_TLS_KEY: cfg.tls_key = optarg; break;
        case OPT_TLS_CA: cfg.tls_ca = optarg; break;
        case OPT_TLS_VERIFY: cfg.tls_verify_client = 1; break;
        case OPT_INETD: inetd = 1; break;
        case OPT_PROXY_PROTOCOL: cfg.proxy_protocol = 1; break;
        case 'q': ro.verbosity = -1; break;
        case 'v': ro.verbosity++; break;
        case 'h': usage(stdout); return EXIT_OK;
        default:
            cli_option_error("serve", c, argv);
            return EXIT_USAGE;
        }
    }
    /* -m prefork:8 is -m prefork -w 8 */
    char model[64];
    if (cfg.model && strchr(cfg.model, ':')) {
        unsigned n;
        if (cli_parse_model(cfg.model, model, sizeof model, &n) != 0) {
            cli_error("serve", "-m wants MODEL or MODEL:N, N from 1 to %d, not '%s'",
                      CLI_MODEL_N_MAX, cfg.model);
            return EXIT_USAGE;
        }
        cfg.model = model;
        cfg.workers = n;
    }
    if (cfg.high_water && cfg.low_water > cfg.high_water) {
        cli_error("serve", "--low-water (%zu) must not exceed --high-water (%zu)",
                  cfg.low_water, cfg.high_water);
        return EXIT_USAGE;
    }
    cfg.service = iop_service_find(service);
    if (!cfg.service) {
        cli_error("serve", "unknown service '%s' (see ioplex serve --help)", service);
        return EXIT_USAGE;
    }
    /* Sockets made by systemd or inetd (activation.c), else bind. */
    static struct activation sockets; /* static: 48 KiB, one serve a process */
    struct activation *act = &sockets;
    int passed = inetd ? activation_from_stdin(act) : activation_from_env(act);
    if (passed > 0 && activation_configure(act, &cfg, transport == IOP_UDP, family,
                                           unix_path || optind < argc) != 0)
        passed = -1;
    if (passed < 0)
        return EXIT_USAGE;
    if (passed && cfg.inetd && !idle_given)
        /* inetd wait: exit when idle for 10 s. inetd starts another at
         * the next datagram, so a short wait costs only a fork and exec
         * (in.tftpd's --timeout waits 900 s; give --idle-timeout for it). */
        cfg.idle_timeout_ms = 10 * 1000;
    if (passed && cfg.inetd) {
        ro.out_syslog = activation_is_socket(act, STDOUT_FILENO);
        ro.err_syslog = activation_is_socket(act, STDERR_FILENO);
    }
    if (!passed && cli_parse_address("serve", &cfg.addr, transport, family, unix_path,
                                     argc - optind, argv + optind, 1) != 0)
        return EXIT_USAGE;
    if (cfg.unix_mode && !iop_transport_is_unix(cfg.addr.transport)) {
        cli_error("serve", "--mode is for Unix sockets only (-U PATH or unix:///PATH)");
        return EXIT_USAGE;
    }
    if (!cfg.tls_cert && (cfg.tls_key || cfg.tls_ca || cfg.tls_verify_client)) {
        cli_error("serve", "--tls-key, --tls-ca and --tls-verify-client need --tls-cert");
        return EXIT_USAGE;
    }
    if (cfg.user && geteuid() != 0) {
        cli_error("serve", "--user needs root (this process runs as uid %ld)",
                  (long)geteuid());
        return EXIT_USAGE;
    }
    cfg.report = report;
    cfg.report_ctx = &ro;
    cfg.report_debug = ro.verbosity >= 1;

    notify_open(); /* before --user: NOTIFY_SOCKET may be root's to use */
    char err[IOP_ERR_LEN];
    iop_server *s;
    int r = iop_server_open(&s, &cfg, err);
    if (r != 0) {
        if (passed) /* sockets passed in: what was wrong with them is a usage error */
            ro.err_syslog ? activation_syslog(IOP_LOG_ERROR, err) : cli_error("serve", "%s", err);
        else
            cli_error("serve", "%s", err);
        return passed ? cli_exit_code(r) : bind_exit_code(r);
    }
    running = s;
    struct sigaction sa = {.sa_handler = on_stop_signal}; /* no SA_RESTART */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (cfg.tls_cert) {
        struct sigaction hup = {.sa_handler = on_reload_signal, .sa_flags = SA_RESTART};
        sigaction(SIGHUP, &hup, NULL);
    }
    const char *mname = cfg.model ? cfg.model : iop_default_model();
    if (ro.verbosity >= 0 && passed && !ro.err_syslog)
        activation_describe(act, cfg.service->name, mname);
    else if (ro.verbosity >= 0 && !passed)
        fprintf(stderr, "ioplex serve: %s on %s (model %s)\n", cfg.service->name,
                iop_server_address(s), mname);
    notify_send("READY=1");
    r = iop_server_run(s);
    running = NULL;
    if (r != 0) { /* one line: the reason in words if there is one */
        const char *why = iop_server_failure(s);
        if (ro.err_syslog)
            activation_syslog(IOP_LOG_ERROR, why ? why : iop_strerror(r));
        else
            cli_error("serve", "%s", why ? why : iop_strerror(r));
    }
    iop_server_close(s);
    if (r != 0)
        return EXIT_ERROR;
    return EXIT_OK;
}
