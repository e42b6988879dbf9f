/*
 * ioplex bench: a load generator for any server (not only ioplex's).
 *
 * This file reads the options, checks the server is there (one probe
 * connection, so a dead server is one clear line, not a thousand
 * refusals), raises the descriptor limit, starts the threads, keeps the
 * run's clock (warm-up, measured window, hard stop), writes intervals and
 * the progress line while it runs, and reports at the end.
 */
#define _GNU_SOURCE
#include "bench.h"
#include "hlog.h"
#include "progress.h"
#include "tls_client.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CMD "bench"
#define NS 1000000000LL
#define MAX_CONNS 1000000
#define MAX_THREADS 256
#define MAX_PIPELINE 4096
#define STREAM_MSG_MAX (16u << 20) /* a message over a stream */
#define BYTES_MAX (64u << 20)      /* the bytes service's limit */
#define GRACE_NS (3 * NS)          /* hard stop: this long past the end */
#define FD_SPARE 8                 /* descriptors beyond the connections' (libc's) */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ioplex bench [options] HOST PORT\n"
            "       ioplex bench [options] ADDRESS   (tcp://H:P, udp://H:P, unix:///PATH, unixgram:///PATH)\n"
            "       ioplex bench [options] -U PATH\n"
            "\n"
            "Load any server and measure it: messages per second, MB/s, latency\n"
            "percentiles and errors, each kind explained.\n"
            "\n"
            "Modes (-m):\n"
            "  pingpong  each connection sends a message and waits for its echo,\n"
            "            -P messages in flight; every byte is checked (default)\n"
            "  rate      open loop at -R messages/s in all; latency counts from each\n"
            "            message's scheduled time, so a stalled server cannot hide\n"
            "  stream    bulk one way as fast as it goes; an echo is checked\n"
            "  connect   a connection per request: send \"N\\n\" (N = -s), read N\n"
            "            bytes, close (ioplex serve -S bytes; Stevens' UNP ch. 30)\n"
            "\n"
            "Options:\n"
            "  -m, --mode MODE       pingpong, rate, stream or connect\n"
            "  -c, --connections N   connections (connect: requests at once) (1)\n"
            "  -t, --threads N       threads, each its own epoll loop (1)\n"
            "  -d, --duration SECS   measure this long after the warm-up (10;\n"
            "                        with -n: a limit, 60 unless given)\n"
            "      --warmup SECS     run this long first, not measured (1)\n"
            "  -n, --count N         stop after N messages, answered or failed\n"
            "  -s, --size N|MIN-MAX  message bytes, or a random size per message\n"
            "                        (64; stream: bytes per write, 64k by default and\n"
            "                        at most); k and m suffixes\n"
            "  -P, --pipeline N      messages in flight per connection (1)\n"
            "  -R, --rate N          messages per second in all (rate mode)\n"
            "      --framing KIND    raw, line or len32 (raw); the echo must match\n"
            "      --timeout SECS    no answer or connect by then: timed out (1)\n"
            "  -u, --udp             UDP, a datagram per message (with -U: unixgram)\n"
            "  -U, --unix PATH       a Unix-domain socket\n"
            "  -4, -6                IPv4 only, IPv6 only\n"
            "      --send-proxy-v2   start every connection with a PROXY protocol v2\n"
            "                        header, as HAProxy's send-proxy-v2 (for a server\n"
            "                        run with --proxy-protocol)\n"
            "      --json            one JSON object on stdout instead of the summary\n"
            "      --interval SECS   a JSON line per interval on stderr\n"
            "      --interval-file F   ... written to F instead\n"
            "      --hgrm FILE       latency percentiles in HdrHistogram's text form (ms)\n"
            "      --hlog FILE       HdrHistogram's interval log: a compressed histogram\n"
            "                        (nanoseconds) per --interval (1 s unless given), then\n"
            "                        the result; HdrHistogram's tools and ioplex report\n"
            "                        read it\n"
            "      --start-at TIME   connect and warm up until TIME, measure from it (Unix\n"
            "                        seconds or RFC 3339, e.g. 2026-12-04T17:30:00Z), so\n"
            "                        generators on several hosts measure the same window;\n"
            "                        replaces --warmup; a TIME already past is refused\n"
            "  -q, --quiet           no live progress line (it is shown only on a terminal:\n"
            "                        rate, p99 so far, errors, time left)\n"
            "  -h, --help            this text\n"
            "\n"
            "TLS (TCP or Unix stream):\n"
            "      --tls             speak TLS 1.2/1.3; each connection's handshake comes\n"
            "                        before its first message and is timed apart: the\n"
            "                        summary and JSON (\"handshake\") give handshakes per\n"
            "                        second and their latency. In connect mode that is a\n"
            "                        full handshake per request. The server is NOT\n"
            "                        verified: a load generator measures, it does not\n"
            "                        authenticate.\n"
            "      --tls-ca FILE     verify the server against the CAs in FILE (and its\n"
            "                        name, HOST); a failure is counted as a TLS error\n"
            "      --tls-resume      each thread offers its first connection's session on\n"
            "                        every later one: resumed handshakes (how many were\n"
            "                        resumed is reported)\n"
            "\n"
            "Errors are counted by kind (refused, reset, timed out, short read,\n"
            "mismatch, descriptor limit, TLS, other) and explained in the summary. The\n"
            "run stops at the duration (or -n), and in any case a few seconds past it.\n"
            "If no message got through the exit code says why: 4 refused, 5 timed\n"
            "out, 7 TLS, 1 anything else. More connections than the descriptor limit\n"
            "(ulimit -Hn) allows are refused at the start (2). With --json, an error\n"
            "that ends the run early is a JSON object too: {\"error\": the line,\n"
            "\"exit_code\": N}.\n\n"
            EXIT_CODES_HELP);
}

enum {
    OPT_WARMUP = 256, OPT_FRAMING, OPT_TIMEOUT, OPT_JSON, OPT_INTERVAL,
    OPT_INTERVAL_FILE, OPT_HGRM, OPT_SEND_PROXY, OPT_HLOG, OPT_START_AT, OPT_TLS, OPT_TLS_CA,
    OPT_TLS_RESUME,
};

#define OPTSTRING ":m:c:t:d:n:s:P:R:uU:46qh"

static const struct option options[] = {
    {"mode", required_argument, NULL, 'm'},
    {"connections", required_argument, NULL, 'c'},
    {"threads", required_argument, NULL, 't'},
    {"duration", required_argument, NULL, 'd'},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"count", required_argument, NULL, 'n'},
    {"size", required_argument, NULL, 's'},
    {"pipeline", required_argument, NULL, 'P'},
    {"rate", required_argument, NULL, 'R'},
    {"framing", required_argument, NULL, OPT_FRAMING},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"udp", no_argument, NULL, 'u'},
    {"unix", required_argument, NULL, 'U'},
    {"json", no_argument, NULL, OPT_JSON},
    {"interval", required_argument, NULL, OPT_INTERVAL},
    {"interval-file", required_argument, NULL, OPT_INTERVAL_FILE},
    {"hgrm", required_argument, NULL, OPT_HGRM},
    {"send-proxy-v2", no_argument, NULL, OPT_SEND_PROXY},
    {"hlog", required_argument, NULL, OPT_HLOG},
    {"start-at", required_argument, NULL, OPT_START_AT},
    {"quiet", no_argument, NULL, 'q'},
    {"tls", no_argument, NULL, OPT_TLS},
    {"tls-ca", required_argument, NULL, OPT_TLS_CA},
    {"tls-resume", no_argument, NULL, OPT_TLS_RESUME},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* ---- parsing values --------------------------------------------------------- */

/* Seconds within [min, max] (cli_parse_seconds), or a usage error. */
static int parse_seconds(const char *opt, const char *s, double min, double max,
                         double *out)
{
    if (cli_parse_seconds(s, min, max, out) != 0) {
        cli_error(CMD, "%s wants seconds from %g to %g, not '%s'", opt, min, max,
                  s ? s : "");
        return -1;
    }
    return 0;
}

/* A number with an optional k or m (cli_parse_amount), or a usage error. */
static int amount_opt(const char *opt, const char *s, long long min, long long max,
                      int binary, long long *out)
{
    *out = cli_parse_amount(s, min, max, binary);
    if (*out < 0) {
        cli_error(CMD, "%s wants a number from %lld to %lld, not '%s'", opt, min,
                  max, s);
        return -1;
    }
    return 0;
}

static int parse_mode(const char *s, enum bench_mode *m)
{
    static const enum bench_mode all[] = {MODE_PINGPONG, MODE_RATE, MODE_STREAM,
                                          MODE_CONNECT};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(s, bench_mode_name(all[i])) == 0) {
            *m = all[i];
            return 0;
        }
    return -1;
}

/* ---- checking the options fit together ------------------------------------- */

struct given {
    int size, pipeline, rate, framing, count, duration;
};

static int check_fit(struct bench_cfg *cfg, const struct given *g)
{
    enum bench_mode m = cfg->mode;
    const char *mode = bench_mode_name(m);
    int msgs = m == MODE_PINGPONG || m == MODE_RATE;
    if (m == MODE_RATE && !g->rate) {
        cli_error(CMD, "rate mode needs -R, messages per second in all");
        return -1;
    }
    if (g->rate && m != MODE_RATE) {
        cli_error(CMD, "-R applies to rate mode (-m rate), not %s", mode);
        return -1;
    }
    if (g->pipeline && !msgs) {
        cli_error(CMD, "-P applies to pingpong and rate modes, not %s", mode);
        return -1;
    }
    if (g->framing && (!msgs || !cfg->stream)) {
        cli_error(CMD, "--framing applies to pingpong and rate over a stream socket");
        return -1;
    }
    if (cfg->send_proxy && !cfg->stream) {
        cli_error(CMD, "--send-proxy-v2 needs a stream socket");
        return -1;
    }
    if (g->count && m == MODE_STREAM) {
        cli_error(CMD, "-n counts messages; stream mode has none (use -d)");
        return -1;
    }
    if (!cfg->stream && !msgs) {
        cli_error(CMD, "%s mode needs a stream socket (TCP or Unix), not datagrams", mode);
        return -1;
    }
    if (m == MODE_STREAM && !g->size)
        cfg->size_min = cfg->size_max = BENCH_IO_BUF;
    uint32_t max = !cfg->stream ? BENCH_DGRAM_MAX
                   : m == MODE_CONNECT ? BYTES_MAX
                   : m == MODE_STREAM ? BENCH_IO_BUF : STREAM_MSG_MAX;
    if (cfg->size_max > max) {
        cli_error(CMD, "-s: at most %u bytes %s", max,
                  !cfg->stream ? "in a datagram" : m == MODE_STREAM ? "per write"
                                                                     : "per message");
        return -1;
    }
    if ((cfg->hgrm_file || cfg->hlog_file) && m == MODE_STREAM) {
        cli_error(CMD, "%s: stream mode measures no latency",
                  cfg->hgrm_file ? "--hgrm" : "--hlog");
        return -1;
    }
    if (cfg->count && !g->duration)
        cfg->duration_ns = 60 * NS;
    return 0;
}

/* --start-at: ahead of now by this host's clock, and within a day. */
static int start_at_check(const struct bench_cfg *cfg)
{
    if (cfg->start_at <= 0)
        return 0;
    double ahead = cfg->start_at - hlog_now();
    char when[48], now[48];
    hlog_format_time(when, sizeof when, cfg->start_at);
    hlog_format_time(now, sizeof now, hlog_now());
    if (ahead <= 0) {
        cli_error(CMD, "--start-at %s is %.1f s in the past by this host's clock (%s): "
                       "give a time ahead, e.g. $(($(date +%%s) + 10))", when, -ahead, now);
        return -1;
    }
    if (ahead > 86400) {
        cli_error(CMD, "--start-at %s is more than a day ahead of this host's clock (%s)",
                  when, now);
        return -1;
    }
    return 0;
}

/* ---- the environment ---------------------------------------------------------- */

/* Descriptors open now, or -1 if /proc cannot say. */
static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own */
}

/*
 * Every connection is a descriptor, all open at once: raise the soft
 * RLIMIT_NOFILE to the hard one (as HAProxy does for its maxconn) and, if
 * even the hard limit is short of what -c needs, refuse now. Running
 * anyway spins on EMFILE, and the spinning loop reads the server's answers
 * late: the generator's own limit blamed on the server.
 */
static int fit_fd_limit(struct bench_cfg *cfg)
{
    long open = open_fds();
    long need = (open > 0 ? open : 5) + (long)cfg->threads /* epoll */ + (long)cfg->conns +
                FD_SPARE;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        cli_error(CMD, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return EXIT_ERROR;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = rl;
        want.rlim_cur = rl.rlim_max == RLIM_INFINITY ? 1048576 : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl = want;
        else if ((rlim_t)need > rl.rlim_cur) {
            want.rlim_cur = (rlim_t)need; /* above fs.nr_open: ask for what is needed */
            if (setrlimit(RLIMIT_NOFILE, &want) == 0)
                rl = want;
        }
    }
    cfg->fd_limit = rl.rlim_cur == RLIM_INFINITY ? 1048576 : (long)rl.rlim_cur;
    if (need > cfg->fd_limit) {
        long fit = cfg->fd_limit - (need - (long)cfg->conns);
        char hint[64] = "";
        if (fit >= 1)
            snprintf(hint, sizeof hint, "use -c %ld or fewer, or ", fit);
        cli_error(CMD, "-c %u needs %ld descriptors, but only %ld can be open here "
                       "(ulimit -n): %sraise the hard limit (ulimit -Hn)",
                  cfg->conns, need, cfg->fd_limit, hint);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

/* How many ephemeral ports one source address has. */
static long ephemeral_ports(void)
{
    long lo = 32768, hi = 60999;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &lo, &hi) != 2)
            lo = 32768, hi = 60999;
        fclose(f);
    }
    return hi >= lo ? hi - lo + 1 : 28232;
}

/* Connect once, to learn which of the name's addresses answers and to
 * fail in one line if none does. */
static int probe(struct bench_cfg *cfg)
{
    char err[IOP_ERR_LEN];
    int fd;
    int timeout_ms = (int)(cfg->timeout_ns / 1000000);
    int r = iop_connect(&cfg->addr, timeout_ms > 0 ? timeout_ms : 1, &fd, err);
    if (r != 0) {
        const char *hint = "";
        if (r == -ECONNREFUSED)
            hint = " (is the server running and listening there?)";
        else if (r == -ENOENT)
            hint = " (no socket at that path: is the server running?)";
        else if (r == -ETIMEDOUT)
            hint = " (no answer within --timeout: is the host up, or a firewall dropping it?)";
        cli_error(CMD, "%s%s", err, hint);
        return cli_exit_code(r);
    }
    if (cfg->tls_ctx) {
        /* A server that is not TLS, or fails verification, is one line
         * now rather than an error per connection. */
        char why[TLS_WHY_LEN];
        SSL *ssl = tls_client_ssl(cfg->tls_ctx, fd, cfg->tls_name, why);
        int ok = 0;
        if (ssl) {
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
            ok = tls_client_handshake_wait(ssl, fd, timeout_ms > 0 ? timeout_ms : 1, why);
            SSL_free(ssl);
        }
        if (ok != 1) {
            close(fd);
            cli_error(CMD, "%s%s", why, ok == 0 ? " (--timeout)" : "");
            return ok == 0 ? EXIT_TIMEOUT : EXIT_TLS;
        }
    }
    if (iop_transport_is_unix(cfg->addr.transport)) {
        struct sockaddr_un *un = (struct sockaddr_un *)&cfg->peer;
        memset(un, 0, sizeof *un);
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, cfg->addr.path, strnlen(cfg->addr.path, sizeof un->sun_path - 1));
        cfg->peerlen = sizeof *un;
    } else {
        cfg->peerlen = sizeof cfg->peer;
        if (getpeername(fd, (struct sockaddr *)&cfg->peer, &cfg->peerlen) != 0) {
            int e = errno;
            close(fd);
            cli_error(CMD, "getpeername: %s", strerror(e));
            return EXIT_ERROR;
        }
    }
    close(fd);
    return EXIT_OK;
}

/* Above one address's ephemeral ports, spread the sources over 127.0.0.2,
 * .3, ... -- only possible when the target is IPv4 loopback. */
static void plan_sources(struct bench_cfg *cfg)
{
    long ports = ephemeral_ports() - 1000; /* leave some for everyone else */
    if (ports < 1000)
        ports = 1000;
    if (cfg->peer.ss_family != AF_INET || (long)cfg->conns <= ports)
        return;
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&cfg->peer;
    if ((ntohl(sin->sin_addr.s_addr) >> 24) != 127)
        return;
    long n = ((long)cfg->conns + ports - 1) / ports;
    cfg->n_sources = (unsigned)(n > 250 ? 250 : n);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static void sleep_until(int64_t t)
{
    int64_t ns = t - now_ns();
    if (ns <= 0)
        return;
    struct timespec ts = {.tv_sec = ns / NS, .tv_nsec = ns % NS};
    nanosleep(&ts, NULL); /* a signal cuts it short, as it should */
}

/* ---- while it runs --------------------------------------------------------- */

struct live {
    struct bench_worker *w;
    unsigned n;
    struct bench_counters prev; /* at the last interval */
    struct bench_counters tick; /* at the last progress line */
    iop__hist *ih;
    FILE *out;                  /* intervals; NULL if none */
    FILE *hlog;                 /* --hlog; NULL if none */
    iop__hist *p99;             /* scratch for the progress line's p99 */
    uint64_t p99_ns;            /* of the measured window so far */
    double interval_s, t_last;  /* seconds into the measured window */
};

/* Counters summed over threads; with `ih`, their interval histograms are
 * moved into it. */
static void snapshot(struct live *L, struct bench_counters *sum, iop__hist *ih)
{
    memset(sum, 0, sizeof *sum);
    for (unsigned i = 0; i < L->n; i++) {
        pthread_mutex_lock(&L->w[i].lock);
        bench_add_counters(sum, &L->w[i].c);
        if (ih) {
            iop__hist_merge(ih, &L->w[i].ihist);
            iop__hist_reset(&L->w[i].ihist);
        }
        if (!ih && L->p99)
            iop__hist_merge(L->p99, &L->w[i].hist);
        pthread_mutex_unlock(&L->w[i].lock);
    }
}

static struct bench_counters minus(const struct bench_counters *a,
                                   const struct bench_counters *b)
{
    struct bench_counters d = *a;
    d.messages -= b->messages;
    d.failed -= b->failed;
    d.bytes_sent -= b->bytes_sent;
    d.bytes_recv -= b->bytes_recv;
    d.connects -= b->connects;
    d.late -= b->late;
    d.idle_closes -= b->idle_closes;
    d.all_answered -= b->all_answered;
    d.all_sent -= b->all_sent;
    d.all_recv -= b->all_recv;
    for (int k = 0; k < ERR_KINDS; k++)
        d.errors[k] -= b->errors[k];
    return d;
}

static void emit_interval(struct live *L, const struct bench_cfg *cfg, double t_s,
                          const struct bench_counters *now)
{
    struct bench_counters d = minus(now, &L->prev);
    if (L->out) {
        bench_report_interval(L->out, cfg, t_s, t_s - L->t_last, &d, L->ih);
        fflush(L->out);
    }
    if (L->hlog) {
        hlog_write_interval(L->hlog, L->t_last, t_s - L->t_last, L->ih);
        fflush(L->hlog);
    }
    iop__hist_reset(L->ih);
    L->prev = *now;
    L->t_last = t_s;
}

/* ---- the command ------------------------------------------------------------ */

static int report_printed; /* the --json object is out */

static int bench_main(int argc, char **argv)
{
    struct bench_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.mode = MODE_PINGPONG;
    cfg.conns = cfg.threads = cfg.pipeline = 1;
    cfg.size_min = cfg.size_max = 64;
    cfg.framing = IOP_FRAMING_RAW;
    cfg.duration_ns = 10 * NS;
    cfg.warmup_ns = 1 * NS;
    cfg.timeout_ns = 1 * NS;
    struct given g = {0};
    enum iop_transport transport = IOP_TCP;
    int family = AF_UNSPEC, quiet = 0, c, tls = 0;
    const char *unix_path = NULL, *tls_ca = NULL;
    long long v;
    double secs;

    optind = 0; /* a second pass over argv (cmd_bench's was the first): start afresh */
    opterr = 0; /* errors are reported in one line by cli_option_error */
    while ((c = getopt_long(argc, argv, OPTSTRING, options, NULL)) != -1) {
        switch (c) {
        case 'm':
            if (parse_mode(optarg, &cfg.mode) != 0) {
                cli_error(CMD, "unknown mode '%s' (pingpong, rate, stream or connect)", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'c':
            if (amount_opt("-c", optarg, 1, MAX_CONNS, 0, &v))
                return EXIT_USAGE;
            cfg.conns = (unsigned)v;
            break;
        case 't':
            if (amount_opt("-t", optarg, 1, MAX_THREADS, 0, &v))
                return EXIT_USAGE;
            cfg.threads = (unsigned)v;
            break;
        case 'd':
            if (parse_seconds("-d", optarg, 0.001, 86400, &secs))
                return EXIT_USAGE;
            cfg.duration_ns = (int64_t)(secs * NS);
            g.duration = 1;
            break;
        case OPT_WARMUP:
            if (parse_seconds("--warmup", optarg, 0, 3600, &secs))
                return EXIT_USAGE;
            cfg.warmup_ns = (int64_t)(secs * NS);
            break;
        case 'n':
            if (amount_opt("-n", optarg, 1, 1000000000000LL, 0, &v))
                return EXIT_USAGE;
            cfg.count = (uint64_t)v;
            g.count = 1;
            break;
        case 's':
            if (cli_parse_size_range(optarg, &cfg.size_min, &cfg.size_max) != 0) {
                cli_error(CMD, "-s wants a size in bytes or a range MIN-MAX "
                               "(1 or more, k and m allowed), not '%s'", optarg);
                return EXIT_USAGE;
            }
            g.size = 1;
            break;
        case 'P':
            if (amount_opt("-P", optarg, 1, MAX_PIPELINE, 0, &v))
                return EXIT_USAGE;
            cfg.pipeline = (unsigned)v;
            g.pipeline = 1;
            break;
        case 'R':
            if (amount_opt("-R", optarg, 1, 100000000, 0, &v))
                return EXIT_USAGE;
            cfg.rate = (double)v;
            g.rate = 1;
            break;
        case OPT_FRAMING:
            if (iop_framing_parse(optarg, &cfg.framing) != 0) {
                cli_error(CMD, "unknown framing '%s' (raw, line or len32)", optarg);
                return EXIT_USAGE;
            }
            g.framing = 1;
            break;
        case OPT_TIMEOUT:
            if (parse_seconds("--timeout", optarg, 0.001, 3600, &secs))
                return EXIT_USAGE;
            cfg.timeout_ns = (int64_t)(secs * NS);
            break;
        case 'u': transport = IOP_UDP; break;
        case 'U': unix_path = optarg; break;
        case '4': family = AF_INET; break;
        case '6': family = AF_INET6; break;
        case OPT_JSON: cfg.json = 1; break;
        case OPT_INTERVAL:
            if (parse_seconds("--interval", optarg, 0.01, 3600, &cfg.interval_s))
                return EXIT_USAGE;
            break;
        case OPT_INTERVAL_FILE: cfg.interval_file = optarg; break;
        case OPT_HGRM: cfg.hgrm_file = optarg; break;
        case OPT_SEND_PROXY: cfg.send_proxy = 1; break;
        case OPT_HLOG: cfg.hlog_file = optarg; break;
        case OPT_START_AT:
            if (hlog_parse_time(optarg, &cfg.start_at) != 0) {
                cli_error(CMD, "--start-at wants Unix seconds or an RFC 3339 time "
                               "(2026-12-04T17:30:00Z), not '%s'", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'q': quiet = 1; break;
        case OPT_TLS: tls = 1; break;
        case OPT_TLS_CA: tls_ca = optarg; break;
        case OPT_TLS_RESUME: cfg.tls_resume = 1; break;
        case 'h': usage(stdout); return EXIT_OK;
        default:
            cli_option_error(CMD, c, argv);
            return EXIT_USAGE;
        }
    }
    if (cli_parse_address(CMD, &cfg.addr, transport, family, unix_path,
                          argc - optind, argv + optind, 0) != 0)
        return EXIT_USAGE;
    if (cfg.interval_file && cfg.interval_s <= 0) {
        cli_error(CMD, "--interval-file needs --interval SECS");
        return EXIT_USAGE;
    }
    cfg.stream = iop_transport_is_stream(cfg.addr.transport);
    if (check_fit(&cfg, &g) != 0)
        return EXIT_USAGE;
    if (!tls && (tls_ca || cfg.tls_resume)) {
        cli_error(CMD, "--tls-ca and --tls-resume need --tls");
        return EXIT_USAGE;
    }
    if (tls && !cfg.stream) {
        cli_error(CMD, "--tls needs a stream socket (TCP or Unix), not datagrams");
        return EXIT_USAGE;
    }
    if (start_at_check(&cfg) != 0)
        return EXIT_USAGE;
    if (gethostname(cfg.host, sizeof cfg.host) != 0)
        snprintf(cfg.host, sizeof cfg.host, "?");
    cfg.host[sizeof cfg.host - 1] = '\0';
    /* JSON lines only when --interval asks; the log's own default is 1 s. */
    int json_intervals = cfg.interval_s > 0;
    if (cfg.hlog_file && cfg.interval_s <= 0)
        cfg.interval_s = 1.0;
    if (cfg.threads > cfg.conns)
        cfg.threads = cfg.conns; /* a thread without connections is idle */
    iop_addr_format(&cfg.addr, cfg.target, sizeof cfg.target);

    /* Files first: a typo in a path should not cost a whole run. */
    FILE *interval_out = NULL, *hgrm_out = NULL, *hlog_out = NULL;
    if (json_intervals) {
        interval_out = cfg.interval_file ? fopen(cfg.interval_file, "w") : stderr;
        if (!interval_out) {
            cli_error(CMD, "cannot write %s: %s", cfg.interval_file, strerror(errno));
            return EXIT_ERROR;
        }
    }
    if (cfg.hgrm_file && !(hgrm_out = fopen(cfg.hgrm_file, "w"))) {
        cli_error(CMD, "cannot write %s: %s", cfg.hgrm_file, strerror(errno));
        if (interval_out && interval_out != stderr)
            fclose(interval_out);
        return EXIT_ERROR;
    }
    if (cfg.hlog_file && !(hlog_out = fopen(cfg.hlog_file, "w"))) {
        cli_error(CMD, "cannot write %s: %s", cfg.hlog_file, strerror(errno));
        if (interval_out && interval_out != stderr)
            fclose(interval_out);
        if (hgrm_out)
            fclose(hgrm_out);
        return EXIT_ERROR;
    }
    int rc = EXIT_OK;
    struct bench_worker *workers = NULL;
    iop__hist *total = NULL, *ih = NULL, *hs = NULL;

    if (tls) {
        struct tls_client_cfg tc = {.verify = tls_ca != NULL, .ca_file = tls_ca};
        char why[TLS_WHY_LEN];
        if (!(cfg.tls_ctx = tls_client_ctx(&tc, why))) {
            cli_error(CMD, "%s", why);
            rc = EXIT_USAGE;
            goto out;
        }
        cfg.tls_verify = tls_ca != NULL;
        cfg.tls_name = iop_transport_is_unix(cfg.addr.transport) ? NULL : cfg.addr.host;
    }

    rc = fit_fd_limit(&cfg);
    if (rc != EXIT_OK)
        goto out;
    rc = probe(&cfg);
    if (rc != EXIT_OK)
        goto out;
    plan_sources(&cfg);
    cfg.progress = progress_wanted(quiet) && !cfg.json && !(interval_out == stderr);

    workers = calloc(cfg.threads, sizeof *workers);
    total = malloc(sizeof *total);
    ih = malloc(sizeof *ih);
    hs = malloc(sizeof *hs);
    if (!workers || !total || !ih || !hs) {
        cli_error(CMD, "out of memory");
        rc = EXIT_ERROR;
        goto out;
    }
    iop__hist_reset(total);
    iop__hist_reset(ih);
    iop__hist_reset(hs);

    struct bench_shared sh;
    memset(&sh, 0, sizeof sh);
    sh.cfg = &cfg;
    atomic_init(&sh.tickets, 0);
    atomic_init(&sh.resolved, 0);
    atomic_init(&sh.t_done, 0);
    atomic_init(&sh.stop, 0);
    sh.t_start = now_ns();
    double wall = hlog_now();
    if (cfg.start_at > 0) {
        /* Warm up until the start, by this host's wall clock. */
        int64_t until = (int64_t)((cfg.start_at - wall) * NS);
        cfg.warmup_ns = until > 0 ? until : 0;
    }
    sh.t_measure = sh.t_start + cfg.warmup_ns;
    sh.t_end = sh.t_measure + cfg.duration_ns;
    sh.t_hard = sh.t_end + cfg.timeout_ns + GRACE_NS;
    double start_wall = cfg.start_at > 0 ? cfg.start_at : wall + (double)cfg.warmup_ns / NS;
    if (hlog_out)
        hlog_write_header(hlog_out, start_wall, cfg.host);

    /* Ctrl-C ends the run early with a report; only this thread takes it. */
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int live = cfg.progress || cfg.interval_s > 0;
    unsigned started = 0;
    for (unsigned i = 0; i < cfg.threads; i++) {
        struct bench_worker *w = &workers[i];
        w->index = i;
        w->sh = &sh;
        w->live = live;
        pthread_mutex_init(&w->lock, NULL);
        iop__hist_reset(&w->hist);
        iop__hist_reset(&w->ihist);
        iop__hist_reset(&w->hshist);
        atomic_init(&w->done, 0);
        if (pthread_create(&w->thread, NULL, bench_worker_main, w) != 0) {
            atomic_store(&sh.stop, 1);
            break;
        }
        started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    struct live L = {.w = workers, .n = started, .ih = ih, .out = interval_out,
                     .hlog = hlog_out, .interval_s = cfg.interval_s, .p99 = total};
    double start_offset = 0;
    int start_seen = 0;
    const char *stopped_by = cfg.count ? "time limit" : "duration";
    int64_t t_stopped = 0, next_tick = sh.t_start + NS;
    int baseline = 0;
    for (;;) {
        int64_t now = now_ns();
        unsigned done = 0;
        for (unsigned i = 0; i < started; i++)
            done += (unsigned)atomic_load(&workers[i].done);
        if (done == started)
            break;
        if (interrupted && !t_stopped) {
            t_stopped = now;
            stopped_by = "interrupt";
            atomic_store(&sh.stop, 1);
        }
        if (now >= sh.t_hard && !atomic_load(&sh.stop)) {
            stopped_by = "hard stop";
            atomic_store(&sh.stop, 1);
        }
        if (now > sh.t_hard + GRACE_NS) {
            /* Every loop in the threads is bounded; should one still not
             * have stopped, leave rather than hang. */
            cli_error(CMD, "threads did not stop; giving up");
            _exit(EXIT_ERROR);
        }
        int64_t wake = now + 50000000LL;
        int intervals = L.out || L.hlog;
        if ((intervals || cfg.start_at > 0) && now < sh.t_measure && sh.t_measure < wake)
            wake = sh.t_measure;
        if (cfg.start_at > 0 && now >= sh.t_measure && !start_seen) {
            start_offset = hlog_now() - cfg.start_at; /* how late, by this clock */
            start_seen = 1;
        }
        if (intervals && now >= sh.t_measure) {
            struct bench_counters cur;
            if (!baseline) {
                /* The window starts here: messages, bytes and latencies
                 * are only ever counted inside it, so they start from 0;
                 * errors and connections of the warm-up are left out. */
                snapshot(&L, &L.prev, L.ih);
                L.prev.messages = L.prev.failed = 0;
                L.prev.bytes_sent = L.prev.bytes_recv = 0;
                baseline = 1;
            }
            double t_s = (double)(now - sh.t_measure) / NS;
            double next = L.t_last + L.interval_s;
            if (t_s >= next && now < sh.t_end) {
                snapshot(&L, &cur, L.ih);
                emit_interval(&L, &cfg, next, &cur);
            }
            int64_t at = sh.t_measure + (int64_t)((L.t_last + L.interval_s) * NS);
            if (at < wake)
                wake = at;
        }
        if (cfg.progress && now >= next_tick) {
            struct bench_counters cur;
            iop__hist_reset(L.p99);
            snapshot(&L, &cur, NULL);
            L.p99_ns = iop__hist_percentile(L.p99, 99);
            struct bench_counters d = minus(&cur, &L.tick);
            struct progress_bench pb = {
                .elapsed_s = (double)(now - sh.t_start) / NS,
                .left_s = (double)(sh.t_end - now) / NS,
                .warmup = now <= sh.t_measure,
                .msgs_per_s = (double)d.all_answered,
                .mb_out = (double)d.all_sent / 1e6,
                .mb_in = (double)d.all_recv / 1e6,
                .p99_ns = cfg.mode == MODE_STREAM ? 0 : L.p99_ns,
                .errors = bench_error_total(&cur),
                .open_now = cur.open_now,
            };
            progress_bench(stderr, &pb);
            L.tick = cur;
            next_tick += NS;
        }
        if (cfg.progress && next_tick < wake)
            wake = next_tick;
        sleep_until(wake);
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(workers[i].thread, NULL);
    if (cfg.progress)
        progress_clear(stderr);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);

    /* ---- the result ---- */
    struct bench_result res = {.cfg = &cfg, .hist = total, .threads = cfg.threads};
    iop__hist_reset(total); /* the progress line's scratch until now */
    if (cfg.tls_ctx)
        res.hshist = hs;
    for (unsigned i = 0; i < started; i++) {
        bench_add_counters(&res.c, &workers[i].c);
        iop__hist_merge(total, &workers[i].hist);
        if (cfg.tls_ctx)
            iop__hist_merge(hs, &workers[i].hshist);
        if (workers[i].setup_error && rc == EXIT_OK) {
            cli_error(CMD, "cannot start a thread's loop: %s",
                      strerror(-workers[i].setup_error));
            rc = EXIT_ERROR;
        }
    }
    if (started < cfg.threads) {
        cli_error(CMD, "cannot start thread %u of %u", started + 1, cfg.threads);
        rc = EXIT_ERROR;
    }
    if (rc != EXIT_OK)
        goto out;
    int64_t t_done = atomic_load(&sh.t_done);
    int64_t end = sh.t_end;
    if (t_stopped)
        end = t_stopped < sh.t_end ? t_stopped : sh.t_end;
    else if (cfg.count && t_done) {
        end = t_done;
        stopped_by = "count";
    }
    res.measured_s = end > sh.t_measure ? (double)(end - sh.t_measure) / NS : 0;
    res.stopped_by = stopped_by;
    res.start_unix_s = start_wall;
    res.start_offset_s = start_offset;

    if ((L.out || L.hlog) && baseline) { /* the rest of the last interval */
        double t_s = res.measured_s;
        if (t_s > L.t_last + 1e-6 || res.c.messages != L.prev.messages) {
            for (unsigned i = 0; i < started; i++)
                iop__hist_merge(L.ih, &workers[i].ihist);
            emit_interval(&L, &cfg, t_s > L.t_last ? t_s : L.t_last, &res.c);
        }
    }
    if (cfg.json) {
        bench_report_json(stdout, &res);
        report_printed = 1;
    } else
        bench_report_human(stdout, &res);
    fflush(stdout);
    if (hlog_out) {
        /* The result last: a log without it was cut short (report says so). */
        fputs(HLOG_RESULT_PREFIX, hlog_out);
        bench_report_json(hlog_out, &res);
        if (fflush(hlog_out) != 0 || ferror(hlog_out)) {
            cli_error(CMD, "cannot write %s: %s", cfg.hlog_file, strerror(errno));
            rc = EXIT_ERROR;
        }
    }
    if (hgrm_out) {
        if (bench_write_hgrm(hgrm_out, total) != 0 || fflush(hgrm_out) != 0) {
            cli_error(CMD, "cannot write %s: %s", cfg.hgrm_file, strerror(errno));
            rc = EXIT_ERROR;
        }
    }

    /* Nothing got through: say why in one line, with the exit code of the
     * commonest cause. */
    uint64_t errors = bench_error_total(&res.c);
    int nothing = cfg.mode == MODE_STREAM ? res.c.bytes_sent == 0 && errors > 0
                                          : res.c.messages == 0;
    if (rc == EXIT_OK && nothing && errors == 0 && cfg.mode != MODE_STREAM &&
        (res.c.unfinished > 0 || res.c.connects > 0)) {
        /* Connected, no error, and yet no answer before the end. */
        cli_error(CMD, "no message got through: %" PRIu64 " still waiting for an answer "
                       "when the run ended (a stalled server, or try a longer -d)",
                  res.c.unfinished);
        rc = EXIT_TIMEOUT;
    } else if (rc == EXIT_OK && nothing && (errors > 0 || res.c.failed > 0)) {
        enum bench_err top = ERR_OTHER;
        for (int k = 0; k < ERR_KINDS; k++)
            if (res.c.errors[k] > res.c.errors[top])
                top = (enum bench_err)k;
        char why[512];
        bench_explain(why, sizeof why, &res, top);
        cli_error(CMD, "no %s got through: %s", cfg.mode == MODE_STREAM ? "byte" : "message",
                  why);
        rc = top == ERR_REFUSED ? EXIT_REFUSED : top == ERR_TIMEOUT ? EXIT_TIMEOUT
             : top == ERR_TLS ? EXIT_TLS : EXIT_ERROR;
    }
out:
    if (workers)
        for (unsigned i = 0; i < cfg.threads; i++)
            pthread_mutex_destroy(&workers[i].lock);
    free(workers);
    free(total);
    free(ih);
    free(hs);
    SSL_CTX_free(cfg.tls_ctx);
    if (interval_out && interval_out != stderr)
        fclose(interval_out);
    if (hgrm_out)
        fclose(hgrm_out);
    if (hlog_out)
        fclose(hlog_out);
    return rc;
}

/* With --json every outcome is one JSON object on stdout: a run that could
 * not start (a bad flag, a name that does not resolve, a refused
 * connection, too few descriptors) gives its error and exit code there
 * too, besides the usual line on stderr. */
int cmd_bench(int argc, char **argv)
{
    int json = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, OPTSTRING, options, NULL)) != -1)
        json |= c == OPT_JSON;
    report_printed = 0;
    int rc = bench_main(argc, argv);
    if (json && rc != EXIT_OK && !report_printed) {
        fputs("{\"tool\":\"ioplex bench\",\"version\":", stdout);
        bench_json_str(stdout, IOPLEX_VERSION);
        fputs(",\"error\":", stdout);
        bench_json_str(stdout, cli_last_error()[0] ? cli_last_error() : "failed");
        printf(",\"exit_code\":%d}\n", rc);
        fflush(stdout);
    }
    return rc;
}
