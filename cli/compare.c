/*
 * ioplex compare: every model side by side on the same workloads.
 *
 * For each repetition, scenario and model (interleaved in that order, so
 * that a noisy moment of the machine does not fall on one model only) it
 * starts `ioplex serve -m MODEL` on a loopback port, drives it with
 * `ioplex bench --json`, and measures the server from outside:
 * - CPU: user + system time of the server over its life, children it
 *   reaped included (wait4's rusage; startup and stop are a few ms);
 * - memory: the peak, over samples every SAMPLE_MS, of the summed RSS of
 *   the process tree (fork and prefork children included).
 * With two or more cores the server is pinned to core 0 and the load
 * generator to core 1, so they do not fight for one core.
 */
#define _GNU_SOURCE
#include "cli.h"
#include "compare.h"
#include "progress.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <getopt.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SAMPLE_MS 100
#define START_TIMEOUT_MS 5000
#define STOP_TIMEOUT_MS 8000

static const struct cmp_scenario scenarios[] = {
    {"pp1", "ping-pong, 64 B, 1 connection", "echo", "pingpong", 1, 0, 64, 0},
    {"pp100", "ping-pong, 64 B, 100 connections", "echo", "pingpong", 100, 0, 64, 0},
    {"pp1000", "ping-pong, 64 B, 1,000 connections", "echo", "pingpong", 1000, 0, 64, 0},
    {"stevens", "Stevens: 5,000 connections, 4,000 bytes each", "bytes", "connect", 50, 5000, 4000, 0},
    {"stream", "bulk stream, 64 KiB writes, 1 connection", "echo", "stream", 1, 0, 65536, 0},
    /* TLS: the record layer's cost per message, then the handshake's
     * (a full one per request, 100-byte answers: the handshake dominates). */
    {"tlspp100", "TLS ping-pong, 64 B, 100 connections", "echo", "pingpong", 100, 0, 64, 1},
    {"tlshs", "TLS handshakes: 2,000 connections, 100 bytes each", "bytes", "connect", 50,
     2000, 100, 1},
};
#define NSCENARIOS (sizeof scenarios / sizeof scenarios[0])

/* --quick: fewer, shorter runs; Stevens' workload with 1,000 requests. */
static const struct cmp_scenario stevens_quick =
    {"stevens", "Stevens: 1,000 connections, 4,000 bytes each", "bytes", "connect", 50, 1000, 4000, 0};
static const struct cmp_scenario tlshs_quick =
    {"tlshs", "TLS handshakes: 500 connections, 100 bytes each", "bytes", "connect", 50, 500,
     100, 1};

static volatile sig_atomic_t interrupted;
static void on_interrupt(int sig) { (void)sig; interrupted = 1; }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- the server's process tree --------------------------------------------- */

struct procstat {
    int pid, ppid;
    double rss_kib;
};

static int read_stat(int pid, struct procstat *p)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *s = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!s)
        return -1;
    long rss;
    int ppid;
    if (sscanf(s + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d "
               "%*d %*d %*d %*d %*u %*u %ld", &ppid, &rss) != 2)
        return -1;
    p->pid = pid;
    p->ppid = ppid;
    p->rss_kib = (double)rss * (double)sysconf(_SC_PAGESIZE) / 1024.0;
    return 0;
}

/* Summed RSS of root and every descendant. */
static double tree_rss_kib(int root)
{
    static struct procstat procs[65536];
    size_t n = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) && n < sizeof procs / sizeof procs[0]) {
        int pid = atoi(e->d_name);
        if (pid > 0 && read_stat(pid, &procs[n]) == 0)
            n++;
    }
    if (d)
        closedir(d);
    double rss_kib = 0;
    /* Mark descendants by walking parents; the tree is shallow (fork,
     * prefork: one level), so a few passes settle it. */
    static unsigned char in[65536];
    memset(in, 0, n);
    for (int pass = 0, changed = 1; changed && pass < 8; pass++) {
        changed = 0;
        for (size_t i = 0; i < n; i++) {
            if (in[i])
                continue;
            int is = procs[i].pid == root;
            for (size_t j = 0; !is && j < n; j++)
                is = in[j] && procs[j].pid == procs[i].ppid;
            if (is)
                in[i] = changed = 1;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (in[i])
            rss_kib += procs[i].rss_kib;
    return rss_kib;
}

/* ---- processes ----------------------------------------------------------------- */

static void pin_to(int cpu)
{
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

/* Start argv with stdout or stderr (which = 1 or 2) on a pipe; returns pid. */
static int spawn(char *const argv[], int which, int cpu, int *pipe_out)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    int pid = fork();
    if (pid == 0) {
        pin_to(cpu);
        dup2(p[1], which);
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, which == 1 ? 2 : 1);
            if (null > 2)
                close(null); /* the program gets 0-2, not a spare /dev/null */
        }
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return -1;
    }
    *pipe_out = p[0];
    return pid;
}

/* Read the child's stderr until it names a 127.0.0.1 port. */
static int wait_port(int fd, char *port, size_t len)
{
    char buf[4096];
    size_t got = 0;
    double end = now_s() + START_TIMEOUT_MS / 1000.0;
    while (got < sizeof buf - 1 && now_s() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
        buf[got] = '\0';
        char *at = strstr(buf, "127.0.0.1:");
        if (at && strchr(at, '\n')) {
            at += strlen("127.0.0.1:");
            size_t k = strspn(at, "0123456789");
            if (k == 0 || k >= len)
                return -1;
            memcpy(port, at, k);
            port[k] = '\0';
            return 0;
        }
    }
    return -1;
}

/* SIGTERM, then SIGKILL after STOP_TIMEOUT_MS. Returns the CPU seconds
 * (user + system) of its whole life, children it waited for included,
 * from wait4(): microseconds, where /proc counts clock ticks. */
static double stop_process(int pid)
{
    kill(pid, SIGTERM);
    double end = now_s() + STOP_TIMEOUT_MS / 1000.0;
    int status;
    struct rusage ru = {0};
    while (now_s() < end) {
        if (wait4(pid, &status, WNOHANG, &ru) == pid)
            goto done;
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    wait4(pid, &status, 0, &ru);
done:
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* ---- one measurement --------------------------------------------------------------- */

/* The number after "key": in a JSON text (the bench's own output, whose
 * keys are unique). NAN if absent or null. */
static double json_number(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *at = strstr(json, pat);
    if (!at)
        return 0.0 / 0.0;
    at += strlen(pat);
    char *end;
    double v = strtod(at, &end);
    return end == at ? 0.0 / 0.0 : v;
}

struct cmp_opts {
    const char *self;
    double duration;
    const struct cmp_cert *cert; /* the TLS scenarios' */
};

/* pc: the live progress line to redraw while it runs; NULL for none. */
static void measure(const struct cmp_opts *o, const struct cmp_model *m,
                    const struct cmp_scenario *sc, struct cmp_run *run,
                    struct progress_compare *pc)
{
    memset(run, 0, sizeof *run);
    char model_arg[40];
    snprintf(model_arg, sizeof model_arg, "%s", m->name);
    char *serve_argv[16] = {(char *)o->self, "serve", "-m", model_arg, "-S",
                            (char *)sc->service, "--drain-ms", "2000"};
    int sa = 8;
    if (sc->tls) {
        serve_argv[sa++] = "--tls-cert";
        serve_argv[sa++] = (char *)o->cert->cert;
        serve_argv[sa++] = "--tls-key";
        serve_argv[sa++] = (char *)o->cert->key;
    }
    serve_argv[sa++] = "127.0.0.1";
    serve_argv[sa++] = "0";
    serve_argv[sa] = NULL;
    char *peer_argv[] = {"/bin/sh", "-c", (char *)m->peer_cmd, NULL};
    int errfd;
    int server = spawn(m->peer ? peer_argv : serve_argv, 2, 0, &errfd);
    char port[16];
    if (server < 0 || wait_port(errfd, port, sizeof port) != 0) {
        snprintf(run->note, sizeof run->note, "the server did not start");
        if (server > 0)
            (void)stop_process(server);
        if (server >= 0)
            close(errfd);
        return;
    }
    char conns[16], size[16], count[24], dur[24];
    snprintf(conns, sizeof conns, "%d", sc->connections);
    snprintf(size, sizeof size, "%d", sc->size);
    snprintf(count, sizeof count, "%ld", sc->count);
    snprintf(dur, sizeof dur, "%g", sc->count ? o->duration * 20 + 10 : o->duration);
    char *bench_argv[24];
    int a = 0;
    bench_argv[a++] = (char *)o->self;
    bench_argv[a++] = "bench";
    bench_argv[a++] = "-q";
    bench_argv[a++] = "--json";
    bench_argv[a++] = "--warmup";
    bench_argv[a++] = "0";
    bench_argv[a++] = "-m";
    bench_argv[a++] = (char *)sc->mode;
    bench_argv[a++] = "-c";
    bench_argv[a++] = conns;
    bench_argv[a++] = "-s";
    bench_argv[a++] = size;
    bench_argv[a++] = "-d";
    bench_argv[a++] = dur;
    if (sc->count) {
        bench_argv[a++] = "-n";
        bench_argv[a++] = count;
    }
    if (sc->tls)
        bench_argv[a++] = "--tls";
    bench_argv[a++] = "127.0.0.1";
    bench_argv[a++] = port;
    bench_argv[a] = NULL;

    run->peak_rss_kib = tree_rss_kib(server);
    int outfd;
    int bench = spawn(bench_argv, 1, 1, &outfd);
    static char out[1 << 18]; /* bench's JSON, its histogram included (tens of KB) */
    size_t got = 0;
    double next_sample = now_s(), t_run = now_s();
    while (bench > 0) {
        if (pc) {
            pc->run_s = now_s() - t_run;
            progress_compare(stderr, pc);
        }
        struct pollfd p = {.fd = outfd, .events = POLLIN};
        if (poll(&p, 1, SAMPLE_MS) > 0) {
            ssize_t n = read(outfd, out + got, sizeof out - 1 - got);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        if (now_s() >= next_sample) {
            double rss = tree_rss_kib(server);
            if (rss > run->peak_rss_kib)
                run->peak_rss_kib = rss;
            next_sample = now_s() + SAMPLE_MS / 1000.0;
        }
    }
    out[got] = '\0';
    int status = 0;
    if (bench > 0) {
        close(outfd);
        waitpid(bench, &status, 0);
    }
    run->cpu_s = stop_process(server);
    close(errfd);

    run->msgs_per_s = json_number(out, "messages_per_s");
    run->mb_per_s = json_number(out, "mb_per_s_received");
    int stream = strcmp(sc->mode, "stream") == 0;
    if (bench < 0 || got == 0 || !isfinite(stream ? run->mb_per_s : run->msgs_per_s)) {
        snprintf(run->note, sizeof run->note, "no result from the load generator (status %d)",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return;
    }
    run->ok = 1;
    run->messages = json_number(out, "messages");
    run->p50_ms = json_number(out, "p50");
    run->p99_ms = json_number(out, "p99");
    run->errors = json_number(out, "total");
}

/* ---- options ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ioplex compare [options]\n"
            "\n"
            "Run every model side by side: each is started on a loopback port and\n"
            "loaded with ioplex bench, scenario by scenario, runs interleaved across\n"
            "models and repeated. Prints a Markdown table (medians, min-max) and\n"
            "writes results.json, results.md and gnuplot plots (SVG, PNG) to the\n"
            "output directory.\n"
            "\n"
            "Scenarios: pp1, pp100, pp1000 (64-byte ping-pong at 1, 100 and 1,000\n"
            "connections), stevens (Stevens' UNP ch. 30 workload: a connection per\n"
            "request for 4,000 bytes, 5,000 of them), stream (bulk echo), tlspp100\n"
            "(ping-pong over TLS, 100 connections), tlshs (a TLS handshake per request,\n"
            "2,000 of them; the servers get a throwaway self-signed certificate).\n"
            "\n"
            "Options:\n"
            "      --quick           one short run each, pp1000 left out; about a minute\n"
            "  -m, --models LIST     comma-separated models (default: all compiled in)\n"
            "      --scenarios LIST  comma-separated scenarios (default: all)\n"
            "  -r, --repeat N        runs of each (default 3, at most %d)\n"
            "  -d, --duration SECS   length of each timed run (default 3)\n"
            "      --peers DIR       also run the reference servers in DIR\n"
            "                        (DIR/epoll_echo, from make bench) on the echo scenarios\n"
            "  -o, --out DIR         output directory (default compare-out)\n"
            "  -q, --quiet           no progress on stderr: neither the live line (on a\n"
            "                        terminal: model, scenario, runs left) nor a line per run\n"
            "  -h, --help            this text\n\n" EXIT_CODES_HELP,
            CMP_MAX_REPEAT);
}

enum { OPT_QUICK = 256, OPT_SCEN, OPT_PEERS };

static const struct option options[] = {
    {"quick", no_argument, NULL, OPT_QUICK},
    {"models", required_argument, NULL, 'm'},
    {"scenarios", required_argument, NULL, OPT_SCEN},
    {"repeat", required_argument, NULL, 'r'},
    {"duration", required_argument, NULL, 'd'},
    {"peers", required_argument, NULL, OPT_PEERS},
    {"out", required_argument, NULL, 'o'},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int add_models(struct cmp_result *r, const char *list)
{
    for (const struct iop_model_info *const *m = iop_models(); *m; m++) {
        if (list) {
            char pat[40];
            snprintf(pat, sizeof pat, ",%s,", (*m)->name);
            char padded[512];
            snprintf(padded, sizeof padded, ",%s,", list);
            if (!strstr(padded, pat))
                continue;
        }
        if (r->nmodels == CMP_MAX_MODELS)
            break;
        snprintf(r->models[r->nmodels++].name, sizeof r->models[0].name, "%s", (*m)->name);
    }
    if (list) { /* every name asked for must exist */
        char copy[512];
        snprintf(copy, sizeof copy, "%s", list);
        for (char *save, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            int found = 0;
            for (int i = 0; i < r->nmodels; i++)
                found |= strcmp(r->models[i].name, t) == 0;
            if (!found) {
                cli_error("compare", "unknown model '%s' (see ioplex serve --help)", t);
                return -1;
            }
        }
    }
    return 0;
}

static int add_scenarios(struct cmp_result *r, const char *list, int quick)
{
    for (size_t i = 0; i < NSCENARIOS; i++) {
        const struct cmp_scenario *sc = &scenarios[i];
        if (list) {
            char pat[32], padded[256];
            snprintf(pat, sizeof pat, ",%s,", sc->name);
            snprintf(padded, sizeof padded, ",%s,", list);
            if (!strstr(padded, pat))
                continue;
        } else if (quick && strcmp(sc->name, "pp1000") == 0) {
            continue;
        }
        if (quick && strcmp(sc->name, "stevens") == 0)
            sc = &stevens_quick;
        if (quick && strcmp(sc->name, "tlshs") == 0)
            sc = &tlshs_quick;
        r->scenarios[r->nscenarios++] = sc;
    }
    if (r->nscenarios == 0) {
        cli_error("compare", "no known scenario in '%s' (pp1, pp100, pp1000, stevens, stream, "
                             "tlspp100, tlshs)",
                  list ? list : "");
        return -1;
    }
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max; /* inherited by the servers and the bench */
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int cmd_compare(int argc, char **argv)
{
    static struct cmp_result r;
    memset(&r, 0, sizeof r);
    const char *models = NULL, *scen = NULL, *peers = NULL, *outdir = "compare-out";
    int quick = 0, quiet = 0, repeat = -1, c;
    double duration = -1;
    long long v;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:r:d:o:hq", options, NULL)) != -1) {
        switch (c) {
        case OPT_QUICK: quick = 1; break;
        case 'q': quiet = 1; break;
        case 'm': models = optarg; break;
        case OPT_SCEN: scen = optarg; break;
        case OPT_PEERS: peers = optarg; break;
        case 'o': outdir = optarg; break;
        case 'r':
            if ((v = cli_parse_number(optarg, 1, CMP_MAX_REPEAT)) < 0) {
                cli_error("compare", "-r wants a number from 1 to %d, not '%s'", CMP_MAX_REPEAT, optarg);
                return EXIT_USAGE;
            }
            repeat = (int)v;
            break;
        case 'd':
            if (cli_parse_seconds(optarg, 0.1, 600, &duration) != 0) {
                cli_error("compare", "-d wants seconds from 0.1 to 600, not '%s'", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'h': usage(stdout); return EXIT_OK;
        default:
            cli_option_error("compare", c, argv);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        cli_error("compare", "unexpected argument '%s' (try ioplex compare --help)", argv[optind]);
        return EXIT_USAGE;
    }
    r.repeat = repeat > 0 ? repeat : quick ? 1 : 3;
    r.duration = duration > 0 ? duration : quick ? 0.5 : 3;
    if (add_models(&r, models) != 0 || add_scenarios(&r, scen, quick) != 0)
        return EXIT_USAGE;
    if (peers) {
        char path[400];
        snprintf(path, sizeof path, "%s/epoll_echo", peers);
        if (access(path, X_OK) != 0) {
            cli_error("compare", "no reference server at %s (build it with make bench)", path);
            return EXIT_USAGE;
        }
        if (r.nmodels < CMP_MAX_MODELS) {
            struct cmp_model *m = &r.models[r.nmodels++];
            snprintf(m->name, sizeof m->name, "ref-epoll");
            m->peer = 1;
            snprintf(m->peer_cmd, sizeof m->peer_cmd, "exec '%s' 0", path);
        }
    }
    if (mkdir(outdir, 0755) != 0 && errno != EEXIST) {
        cli_error("compare", "cannot create %s: %s", outdir, strerror(errno));
        return EXIT_ERROR;
    }
    char self[512];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        cli_error("compare", "cannot find the ioplex binary: %s", strerror(errno));
        return EXIT_ERROR;
    }
    self[n] = '\0';
    struct cmp_cert cert = {0};
    int need_cert = 0;
    for (int s = 0; s < r.nscenarios; s++)
        need_cert |= r.scenarios[s]->tls;
    if (need_cert && cmp_make_cert(&cert) != 0) {
        cli_error("compare", "cannot make a certificate for the TLS scenarios in %s: %s",
                  cert.dir[0] ? cert.dir : "$TMPDIR", strerror(errno));
        return EXIT_ERROR;
    }
    struct cmp_opts o = {.self = self, .duration = r.duration, .cert = &cert};
    raise_nofile();
    struct sigaction sa = {.sa_handler = on_interrupt};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int total = r.repeat * r.nscenarios * r.nmodels, done = 0;
    int live = progress_wanted(quiet);
    double t0 = now_s();
    for (int rep = 0; rep < r.repeat && !interrupted; rep++)
        for (int s = 0; s < r.nscenarios && !interrupted; s++)
            for (int m = 0; m < r.nmodels && !interrupted; m++) {
                const struct cmp_scenario *sc = r.scenarios[s];
                struct cmp_run *run = &r.runs[m][s][rep];
                done++;
                /* The reference servers only echo. */
                if (r.models[m].peer && strcmp(sc->service, "echo") != 0) {
                    snprintf(run->note, sizeof run->note, "not an echo workload");
                    continue;
                }
                struct progress_compare pc = {
                    .done = done, .total = total, .model = r.models[m].name,
                    .scenario = sc->name, .rep = rep + 1, .reps = r.repeat,
                    .run_len_s = sc->count ? 0 : o.duration, .elapsed_s = now_s() - t0,
                };
                if (!quiet && !live)
                    fprintf(stderr, "[%d/%d %3.0fs] %-10s %-8s run %d/%d ... ", done, total,
                            now_s() - t0, r.models[m].name, sc->name, rep + 1, r.repeat);
                measure(&o, &r.models[m], sc, run, live ? &pc : NULL);
                if (live) { /* the run's line stays, the live line goes under it */
                    progress_clear(stderr);
                    fprintf(stderr, "[%d/%d %3.0fs] %-10s %-8s run %d/%d ... ", done, total,
                            pc.elapsed_s, r.models[m].name, sc->name, rep + 1, r.repeat);
                }
                if (!quiet && run->ok && isfinite(run->msgs_per_s))
                    fprintf(stderr, "%.0f msg/s\n", run->msgs_per_s);
                else if (!quiet && run->ok) /* stream: bytes, no messages */
                    fprintf(stderr, "%.1f MB/s\n", run->mb_per_s);
                else if (!quiet)
                    fprintf(stderr, "%s\n", run->note);
            }
    cmp_remove_cert(&cert);
    if (interrupted) {
        cli_error("compare", "interrupted; nothing written");
        return EXIT_ERROR;
    }
    if (!quiet)
        fprintf(stderr, "compare: %d runs in %.0f s\n\n", total, now_s() - t0);

    cmp_print_table(&r, stdout);
    char path[600];
    snprintf(path, sizeof path, "%s/results.md", outdir);
    FILE *md = fopen(path, "w");
    if (md) {
        cmp_print_table(&r, md);
        fclose(md);
    }
    snprintf(path, sizeof path, "%s/results.json", outdir);
    if (cmp_write_json(&r, path) != 0) {
        cli_error("compare", "cannot write %s: %s", path, strerror(errno));
        return EXIT_ERROR;
    }
    if (cmp_write_plots(&r, outdir) != 0)
        fprintf(stderr, "compare: gnuplot not found: plots not drawn (apt-get install gnuplot-nox)\n");
    printf("\nResults: %s/results.md, %s/results.json; plots: %s/*.svg, %s/*.png\n",
           outdir, outdir, outdir, outdir);
    return EXIT_OK;
}
