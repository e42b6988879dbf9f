/*
 * The course's two hosts with a bad network between them: every model
 * delivers every byte exactly over a lossy, slow link.
 *
 * Two network namespaces, the lab's "Server" and "Client", joined by a veth
 * pair with 198.18.0.1/24 and 198.18.0.2/24 (RFC 2544's benchmarking range;
 * nothing outside the two namespaces is touched). On that link:
 *
 *   loss   nftables on the INPUT hook of both namespaces, one rule per
 *          model's port: `numgen random mod 100 < N counter drop`, N = 1..5
 *          (the models take N = 1, 2, 3, 4, 5, 1, ... in turn). Dropping on
 *          input, on each side, is a packet lost on the wire: the sender
 *          believed it sent it. (On OUTPUT the sender's own stack would be
 *          told, which is not loss.) A `counter` before the numgen counts
 *          every packet of the port, the one after it the drops.
 *   slow   `tc qdisc ... tbf rate 8mbit burst 16kb latency 100ms` on both
 *          veth ends: a queueing link (up to 100 ms of queue). It sits on
 *          the sender's own interface, so when its queue is full the drop
 *          is local congestion, which the sender's TCP is told of, not
 *          loss on the wire; a few dozen per run. (This kernel has no
 *          sch_netem, so no added delay or reordering: loss and a rate.)
 *
 * Both faults were checked to be real on the kernel this was written on (a
 * Firecracker VM's Linux 6.18, no gVisor): nft drops about the share it is
 * told to and TCP retransmits (some 200 segments each way, a dozen or two
 * after a retransmission timeout); tbf's `overlimits` counter rises and a
 * run takes at least its bytes at the link rate. The test asserts these,
 * so a kernel that ignores either fault fails here instead of passing
 * vacuously. Its report on stderr (ctest -V) gives the numbers.
 *
 * Under that, for every model compiled in, all at once on their own ports
 * (which keeps the whole run at about ten seconds, the link being the
 * bottleneck):
 *   - a bulk echo: `ioplex connect` with BULK_BYTES of random data on
 *     stdin, its stdout compared byte for byte;
 *   - BENCH_PROCS concurrent `ioplex bench` ping-pong runs (random sizes,
 *     pipelined, every echoed byte checked by bench): each must answer all
 *     its messages with no error of any kind. Against `iterative` each
 *     bench holds one connection (one client at a time: a second
 *     connection of the same bench would wait for the first to close);
 *   - the server then stops cleanly (exit 0, nothing left behind).
 * Waits are generous (loss makes TCP wait for retransmission timeouts of
 * at least 200 ms, a lost SYN a second) and every one is bounded.
 *
 * Servers run in the server namespace and clients in the client namespace,
 * entered with setns() just as `ip netns exec` does. Namespace names carry
 * the PID; they are deleted (servers and clients killed by PID first) in
 * the group teardown and again at exit. Namespaces left by a run that was
 * killed outright are deleted at the start when their PID is gone.
 *
 * Skipped (cmocka skip, one line on stderr) only where namespaces cannot be
 * created: not root, or not permitted. Missing ip, nft or tc is a failure:
 * CI runs as root and must run this (scripts/setup.sh installs iproute2 and
 * nftables).
 */
#define _GNU_SOURCE
#include "harness.h"
#include "netns.h"
#include "ioplex.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define SERVER_IP "198.18.0.1"
#define CLIENT_IP "198.18.0.2"
#define LINK_RATE "8mbit"
#define LINK_BYTES_PER_S 1000000.0 /* 8 Mbit/s */
#define LINK_BURST "16kb"
#define LINK_BURST_BYTES 16384.0
#define LINK_LATENCY "100ms"
#define NFT_TABLE "ioplex_loss"

#define BULK_BYTES (256 * 1024)
#define BENCH_PROCS 3
#define BENCH_MSGS "100"     /* per bench process */
#define BENCH_CONNS "2"      /* per bench process (iterative: 1) */
#define BENCH_PIPELINE "2"
#define BENCH_SIZES "1-2048"
#define BENCH_TIMEOUT_S "30" /* an answer or a connect, under loss */
#define BENCH_LIMIT_S "40"   /* bench's own limit on the run */
#define CONNECT_IDLE_S "30"  /* ioplex connect gives up after this */
#define JOBS_DEADLINE_MS 50000

#define MAX_MODELS 16

/* ---- names, tools, commands ----------------------------------------------- */

static char ns_srv[32], ns_cli[32]; /* "ioplexS<pid>", "ioplexC<pid>" */
static char if_srv[16], if_cli[16]; /* "iopvS<pid>", "iopvC<pid>" */
static int ns_created;
static char skip_reason[256];

/* ---- the namespaces --------------------------------------------------------- */

static void delete_namespaces(void)
{
    if (!ns_created)
        return;
    ns_created = 0;
    /* Deleting a namespace deletes its end of the veth pair, and so both. */
    netns_cmd(NULL, NULL, 0, NULL, 0, "ip", "netns", "delete", ns_srv, NULL);
    netns_cmd(NULL, NULL, 0, NULL, 0, "ip", "netns", "delete", ns_cli, NULL);
}

/*
 * Create the two namespaces. Returns 0; 1 if namespaces cannot be created
 * here (skip_reason says why); fails the test on any other error.
 */
static int create_namespaces(void)
{
    snprintf(ns_srv, sizeof ns_srv, "ioplexS%d", (int)getpid());
    snprintf(ns_cli, sizeof ns_cli, "ioplexC%d", (int)getpid());
    snprintf(if_srv, sizeof if_srv, "iopvS%d", (int)getpid());
    snprintf(if_cli, sizeof if_cli, "iopvC%d", (int)getpid());
    if (geteuid() == 0)
        netns_delete_stale("ioplex");
    if (netns_add(ns_srv, skip_reason, sizeof skip_reason) != 0)
        return 1;
    ns_created = 1;
    NETNS_MUST("ip", "netns", "add", ns_cli);
    /* Both ends are born inside their namespaces: nothing in the root one. */
    NETNS_MUST("ip", "link", "add", if_srv, "netns", ns_srv, "type", "veth", "peer", "name", if_cli,
         "netns", ns_cli);
    NETNS_MUST("ip", "-n", ns_srv, "addr", "add", SERVER_IP "/24", "dev", if_srv);
    NETNS_MUST("ip", "-n", ns_cli, "addr", "add", CLIENT_IP "/24", "dev", if_cli);
    NETNS_MUST("ip", "-n", ns_srv, "link", "set", if_srv, "up");
    NETNS_MUST("ip", "-n", ns_cli, "link", "set", if_cli, "up");
    NETNS_MUST("tc", "-n", ns_srv, "qdisc", "add", "dev", if_srv, "root", "tbf", "rate", LINK_RATE,
         "burst", LINK_BURST, "latency", LINK_LATENCY);
    NETNS_MUST("tc", "-n", ns_cli, "qdisc", "add", "dev", if_cli, "root", "tbf", "rate", LINK_RATE,
         "burst", LINK_BURST, "latency", LINK_LATENCY);
    return 0;
}

/* ---- teardown ---------------------------------------------------------------- */

static void cleanup(void)
{
    netns_kill_jobs();
    harness_teardown(NULL); /* the servers, by PID */
    delete_namespaces();
}

static pid_t owner_pid;

static void at_exit_cleanup(void)
{
    if (getpid() == owner_pid) /* not in a forked child */
        cleanup();
}

static int test_teardown(void **state)
{
    (void)state;
    cleanup();
    return 0;
}

/* ---- reading the counters ---------------------------------------------------- */

struct nft_counts {
    long long seen, dropped; /* packets */
    long long seen_bytes, dropped_bytes;
};

/* The two counters of the rule commented "model" in a namespace's table. */
static int nft_read(const char *ns, const char *model, struct nft_counts *c)
{
    static char out[65536];
    char err[1024];
    if (netns_cmd(NULL, out, sizeof out, err, sizeof err, "ip", "netns", "exec", ns, "nft", "list",
            "table", "inet", NFT_TABLE, NULL) != 0)
        return -1;
    char needle[64];
    snprintf(needle, sizeof needle, "comment \"%s\"", model);
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strstr(line, needle))
            continue;
        char *a = strstr(line, "counter packets");
        char *b = a ? strstr(a + 1, "counter packets") : NULL;
        if (!b || sscanf(a, "counter packets %lld bytes %lld", &c->seen, &c->seen_bytes) != 2 ||
            sscanf(b, "counter packets %lld bytes %lld", &c->dropped, &c->dropped_bytes) != 2)
            return -1;
        return 0;
    }
    return -1;
}

struct tbf_counts {
    long long sent_bytes, dropped, overlimits;
};

static int tbf_read(const char *ns, const char *dev, struct tbf_counts *t)
{
    char out[4096];
    if (netns_cmd(NULL, out, sizeof out, NULL, 0, "tc", "-n", ns, "-s", "qdisc", "show", "dev", dev,
            NULL) != 0)
        return -1;
    const char *s = strstr(out, "qdisc tbf");
    s = s ? strstr(s, "Sent ") : NULL;
    long long pkts;
    if (!s || sscanf(s, "Sent %lld bytes %lld pkt (dropped %lld, overlimits %lld", &t->sent_bytes,
                     &pkts, &t->dropped, &t->overlimits) != 4)
        return -1;
    return 0;
}

/* A counter of a namespace's /proc/net/snmp or /proc/net/netstat, whose
 * lines come in pairs, "Tcp: Name1 Name2 ...\nTcp: 1 2 ...\n"; -1 if
 * unknown. (/proc/net is the reading process's namespace's.) */
static long long proc_counter(const char *ns, const char *file, const char *prefix,
                              const char *name)
{
    static char out[32768];
    if (netns_cmd(NULL, out, sizeof out, NULL, 0, "ip", "netns", "exec", ns, "cat", file, NULL) != 0)
        return -1;
    char head[32];
    snprintf(head, sizeof head, "\n%s ", prefix);
    size_t skip = strlen(head);
    memmove(out + 1, out, strlen(out) + 1); /* so the first line has a "\n" too */
    out[0] = '\n';
    char *names = strstr(out, head);
    char *values = names ? strstr(names + 1, head) : NULL;
    if (!values)
        return -1;
    *values = '\0';
    char *end = strchr(values + 1, '\n');
    if (end)
        *end = '\0';
    int col = 0, found = 0;
    char *save = NULL;
    for (char *t = strtok_r(names + skip, " \n", &save); t; t = strtok_r(NULL, " \n", &save)) {
        if (strcmp(t, name) == 0) {
            found = 1;
            break;
        }
        col++;
    }
    if (!found)
        return -1;
    save = NULL;
    char *t = strtok_r(values + skip, " \n", &save);
    for (int i = 0; t && i < col; i++)
        t = strtok_r(NULL, " \n", &save);
    return t ? strtoll(t, NULL, 10) : -1;
}

/* A number after "\"key\":" in a JSON text; -1 if absent. */
static double json_num(const char *json, const char *key)
{
    char needle[64];
    snprintf(needle, sizeof needle, "\"%s\":", key);
    const char *p = strstr(json, needle);
    return p ? strtod(p + strlen(needle), NULL) : -1;
}

/* ---- the test ------------------------------------------------------------------ */

struct model_run {
    const char *name;
    int loss; /* percent, each direction */
    struct server srv;
    char in_path[256];
    unsigned char *data;
    struct netns_job *bulk, *bench[BENCH_PROCS];
    struct nft_counts to_srv, to_cli; /* dropped on the server's / client's input */
    long long bench_bytes;            /* echoed to the benches, all checked */
};

static struct model_run runs[MAX_MODELS];
static size_t nruns;

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Start every model's echo server in the server namespace. */
static void start_servers(void)
{
    int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    assert_true(home >= 0);
    nruns = 0;
    for (const struct iop_model_info *const *m = iop_models(); *m; m++) {
        assert_true(nruns < MAX_MODELS);
        struct model_run *r = &runs[nruns];
        r->name = (*m)->name;
        r->loss = 1 + (int)(nruns % 5);
        if (netns_enter(ns_srv) != 0)
            fail_msg("setns into %s: %s", ns_srv, strerror(errno));
        /* The server is forked now, so it is born in this namespace. */
        int started = server_startl(&r->srv, "-m", r->name, "-S", "echo", SERVER_IP, "0", NULL);
        if (setns(home, CLONE_NEWNET) != 0)
            fail_msg("setns back home: %s", strerror(errno));
        if (started != 0)
            fail_msg("%s: ioplex serve did not start in namespace %s", r->name, ns_srv);
        nruns++;
    }
    close(home);
}

/* One loss rule per model port, on the input hook of each side. */
static void add_loss_rules(void)
{
    static char rules_srv[8192], rules_cli[8192];
    size_t ls = 0, lc = 0;
    const char *head = "table inet " NFT_TABLE " {\n chain input {\n"
                       "  type filter hook input priority 0; policy accept;\n";
    ls += (size_t)snprintf(rules_srv + ls, sizeof rules_srv - ls, "%s", head);
    lc += (size_t)snprintf(rules_cli + lc, sizeof rules_cli - lc, "%s", head);
    for (size_t i = 0; i < nruns; i++) {
        ls += (size_t)snprintf(rules_srv + ls, sizeof rules_srv - ls,
                               "  tcp dport %u counter numgen random mod 100 < %d counter drop"
                               " comment \"%s\"\n",
                               runs[i].srv.port, runs[i].loss, runs[i].name);
        lc += (size_t)snprintf(rules_cli + lc, sizeof rules_cli - lc,
                               "  tcp sport %u counter numgen random mod 100 < %d counter drop"
                               " comment \"%s\"\n",
                               runs[i].srv.port, runs[i].loss, runs[i].name);
        assert_true(ls < sizeof rules_srv && lc < sizeof rules_cli);
    }
    ls += (size_t)snprintf(rules_srv + ls, sizeof rules_srv - ls, " }\n}\n");
    lc += (size_t)snprintf(rules_cli + lc, sizeof rules_cli - lc, " }\n}\n");
    assert_true(ls < sizeof rules_srv && lc < sizeof rules_cli);
    char err[2048];
    int c = netns_cmd(rules_srv, NULL, 0, err, sizeof err, "ip", "netns", "exec", ns_srv, "nft", "-f",
                "-", NULL);
    if (c != 0)
        fail_msg("nft in %s failed (%d): %s (is nftables installed?)\n%s", ns_srv, c, err,
                 rules_srv);
    c = netns_cmd(rules_cli, NULL, 0, err, sizeof err, "ip", "netns", "exec", ns_cli, "nft", "-f", "-",
            NULL);
    if (c != 0)
        fail_msg("nft in %s failed (%d): %s\n%s", ns_cli, c, err, rules_cli);
}

static void start_clients(unsigned *seed)
{
    char port[16];
    for (size_t i = 0; i < nruns; i++) {
        struct model_run *r = &runs[i];
        r->data = malloc(BULK_BYTES);
        assert_non_null(r->data);
        fill_random(r->data, BULK_BYTES, seed);
        assert_non_null(harness_tmp_path(r->in_path, sizeof r->in_path, "bulk"));
        write_file(r->in_path, r->data, BULK_BYTES);
        snprintf(port, sizeof port, "%u", r->srv.port);
        char what[64];
        snprintf(what, sizeof what, "%s bulk", r->name);
        const char *bulk[] = {ioplex_bin(), "connect", "-w", CONNECT_IDLE_S, SERVER_IP, port,
                              NULL};
        r->bulk = netns_spawn(ns_cli, what, r->in_path, bulk);
        int one = strcmp(r->name, "iterative") == 0;
        for (int k = 0; k < BENCH_PROCS; k++) {
            snprintf(what, sizeof what, "%s bench %d", r->name, k + 1);
            const char *bench[] = {ioplex_bin(), "bench", "-m", "pingpong",
                                   "-c", one ? "1" : BENCH_CONNS, "-P", BENCH_PIPELINE,
                                   "-s", BENCH_SIZES, "-n", BENCH_MSGS,
                                   "--warmup", "0", "-d", BENCH_LIMIT_S,
                                   "--timeout", BENCH_TIMEOUT_S, "--json", SERVER_IP,
                                   port, NULL};
            r->bench[k] = netns_spawn(ns_cli, what, NULL, bench);
        }
    }
}

/* Print a job's stderr (and stdout if small) for a failure's log. */
static void show_job(const struct netns_job *j)
{
    char *err = netns_slurp(j->err_path, NULL);
    size_t olen = 0;
    char *out = netns_slurp(j->out_path, &olen);
    fprintf(stderr, "--- %s: status %d after %lld ms\n--- stderr: %s\n", j->what, j->status,
            j->ms, err ? err : "(unreadable)");
    if (out && olen < 4096)
        fprintf(stderr, "--- stdout: %s\n", out);
    free(err);
    free(out);
}

/* The bulk echo came back exact. Returns 1, or 0 after saying why. */
static int check_bulk(const struct model_run *r)
{
    const struct netns_job *j = r->bulk;
    size_t len = 0;
    char *got = netns_slurp(j->out_path, &len);
    int ok = j->status == 0 && got && len == BULK_BYTES && memcmp(got, r->data, len) == 0;
    if (!ok) {
        size_t same = 0;
        while (got && same < len && same < BULK_BYTES &&
               (unsigned char)got[same] == r->data[same])
            same++;
        fprintf(stderr, "FAIL %s: bulk echo: exit %d, %zu of %d bytes back, the first %zu "
                "exact\n", r->name, j->status, len, BULK_BYTES, same);
        show_job(j);
    }
    free(got);
    return ok;
}

/* A bench run answered all its messages with every byte right. */
static int check_bench(struct model_run *r, const struct netns_job *j)
{
    char *json = netns_slurp(j->out_path, NULL);
    if (json && json_num(json, "bytes_received") > 0)
        r->bench_bytes += (long long)json_num(json, "bytes_received");
    double want = atof(BENCH_MSGS);
    int ok = j->status == 0 && json && json_num(json, "messages") == want &&
             json_num(json, "messages_failed") == 0 && json_num(json, "total") == 0 &&
             json_num(json, "in_flight_at_end") == 0 &&
             json_num(json, "bytes_sent") == json_num(json, "bytes_received") &&
             strstr(json, "\"stopped_by\":\"count\"");
    if (!ok) {
        fprintf(stderr, "FAIL %s: %s: not every message answered exactly\n", r->name, j->what);
        show_job(j);
    }
    free(json);
    return ok;
}

static void every_model_exact_under_loss(void **state)
{
    (void)state;
    if (create_namespaces() != 0) {
        fprintf(stderr, "test_netns: skipped: %s\n", skip_reason);
        skip();
    }
    unsigned seed = harness_seed();
    start_servers();
    add_loss_rules();

    struct tbf_counts s0, c0, s1, c1;
    assert_int_equal(tbf_read(ns_srv, if_srv, &s0), 0);
    assert_int_equal(tbf_read(ns_cli, if_cli, &c0), 0);
    long long t0 = now_ms();
    start_clients(&seed);
    netns_wait_jobs(t0 + JOBS_DEADLINE_MS);
    long long phase_ms = now_ms() - t0;
    assert_int_equal(tbf_read(ns_srv, if_srv, &s1), 0);
    assert_int_equal(tbf_read(ns_cli, if_cli, &c1), 0);

    int failures = 0;
    long long seen_drops = 0;
    double expected_drops = 0;
    for (size_t i = 0; i < nruns; i++) {
        struct model_run *r = &runs[i];
        failures += !check_bulk(r);
        for (int k = 0; k < BENCH_PROCS; k++)
            failures += !check_bench(r, r->bench[k]);
        if (nft_read(ns_srv, r->name, &r->to_srv) != 0 ||
            nft_read(ns_cli, r->name, &r->to_cli) != 0)
            fail_msg("cannot read the nft counters of %s", r->name);
        seen_drops += r->to_srv.dropped + r->to_cli.dropped;
        expected_drops += (double)(r->to_srv.seen + r->to_cli.seen) * r->loss / 100.0;
        int st = server_stop(&r->srv, 0);
        if (st != 0 || r->srv.leftovers) {
            fprintf(stderr, "FAIL %s: server exit %d after SIGTERM%s\n", r->name, st,
                    r->srv.leftovers ? ", processes left behind" : "");
            server_dump(&r->srv);
            failures++;
        }
    }

    /* The report: numbers for docs/reliability.md. */
    fprintf(stderr, "\nlink: tbf %s burst %s latency %s each way; loss by nft on input; "
            "bytes each way, echoed exactly; drops/packets per direction\n",
            LINK_RATE, LINK_BURST, LINK_LATENCY);
    fprintf(stderr, "%-10s %5s %10s %13s %10s %13s %13s %9s %11s\n", "model", "loss", "bulk B",
            "bench msgs", "bench B", "drops c->s", "drops s->c", "bulk ms", "slowest ms");
    for (size_t i = 0; i < nruns; i++) {
        struct model_run *r = &runs[i];
        long long slowest = r->bulk->ms;
        for (int k = 0; k < BENCH_PROCS; k++)
            if (r->bench[k]->ms > slowest)
                slowest = r->bench[k]->ms;
        char cs[32], sc[32];
        snprintf(cs, sizeof cs, "%lld/%lld", r->to_srv.dropped, r->to_srv.seen);
        snprintf(sc, sizeof sc, "%lld/%lld", r->to_cli.dropped, r->to_cli.seen);
        fprintf(stderr, "%-10s %4d%% %10d %6d x %-4s %10lld %13s %13s %9lld %11lld\n", r->name,
                r->loss, BULK_BYTES, BENCH_PROCS, BENCH_MSGS, r->bench_bytes, cs, sc, r->bulk->ms,
                slowest);
    }
    long long retrans_s = proc_counter(ns_srv, "/proc/net/snmp", "Tcp:", "RetransSegs");
    long long retrans_c = proc_counter(ns_cli, "/proc/net/snmp", "Tcp:", "RetransSegs");
    long long rto_s = proc_counter(ns_srv, "/proc/net/netstat", "TcpExt:", "TCPTimeouts");
    long long rto_c = proc_counter(ns_cli, "/proc/net/netstat", "TcpExt:", "TCPTimeouts");
    fprintf(stderr, "nft drops: %lld (%.0f expected); TCP segments retransmitted: server %lld, "
            "client %lld; retransmission timeouts: server %lld, client %lld\n", seen_drops,
            expected_drops, retrans_s, retrans_c, rto_s, rto_c);
    long long sent_s = s1.sent_bytes - s0.sent_bytes, sent_c = c1.sent_bytes - c0.sent_bytes;
    fprintf(stderr, "tbf server side: %lld bytes sent, %lld overlimits, %lld dropped (queue "
            "full)\ntbf client side: %lld bytes sent, %lld overlimits, %lld dropped\n"
            "all clients done in %lld ms\n\n",
            sent_s, s1.overlimits - s0.overlimits, s1.dropped - s0.dropped, sent_c,
            c1.overlimits - c0.overlimits, c1.dropped - c0.dropped, phase_ms);

    /* The loss is real: nft dropped about the share it was told to (some
     * 380 drops are expected in all; a quarter of that by chance has odds
     * far below 1e-20), and TCP retransmitted on both sides. */
    if ((double)seen_drops < expected_drops / 4 || retrans_s <= 0 || retrans_c <= 0) {
        fprintf(stderr, "FAIL: nft dropped %lld packets (%.0f expected), TCP retransmitted "
                "%lld + %lld: this kernel does not enforce the loss rule\n", seen_drops,
                expected_drops, retrans_s, retrans_c);
        failures++;
    }

    /* The link is shaped: tbf held packets back, and the bytes it sent
     * could not have gone faster than its rate (a slow machine only makes
     * the run longer, so this cannot fail by noise). */
    long long most = sent_s > sent_c ? sent_s : sent_c;
    double floor_ms = (most - 2 * LINK_BURST_BYTES) / LINK_BYTES_PER_S * 1000.0;
    if (s1.overlimits == s0.overlimits || c1.overlimits == c0.overlimits ||
        (double)phase_ms < floor_ms) {
        fprintf(stderr, "FAIL: tbf does not shape this link: %lld bytes in %lld ms (at "
                "%s: >= %.0f ms)\n", most, phase_ms, LINK_RATE, floor_ms);
        failures++;
    }
    for (size_t i = 0; i < nruns; i++) {
        free(runs[i].data);
        runs[i].data = NULL;
    }
    if (failures)
        fail_msg("%d check(s) failed under loss (listed above)", failures);
}

int main(void)
{
    owner_pid = getpid();
    atexit(at_exit_cleanup);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(every_model_exact_under_loss, test_teardown),
    };
    return cmocka_run_group_tests_name("netns", tests, NULL, NULL);
}
