/*
 * Several clients, and what each model does with them: the iterative
 * server makes the second client wait for the first; the others answer
 * it at once. --once ends the server after its first client. Many
 * sequential clients leave no descriptor, thread or zombie behind.
 * Run as `model_concurrency MODEL`.
 */
#include "harness.h"
#include "harness_cases.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define IO_MS HARNESS_IO_TIMEOUT_MS
#define ACK "I got your message\n"
#define SEQUENTIAL_CLIENTS 200

static const char *model;
static int one_at_a_time; /* the iterative model */
/* prefork:N and pool:N serve N clients at once (the rest wait), so a test
 * with more silent clients than N runs them with enough (-w). */
static int bounded;
static unsigned seed;

static const char *transport_of(void **state)
{
    return *state ? *state : "tcp4";
}

static void start(struct server *s, void **state, const char *const extra[])
{
    const char *t = transport_of(state);
    if (server_start_on(s, model, t, "ack", extra) != 0)
        fail_msg("cannot start ack on %s under %s", t, model);
}

/* Offset of needle in the server's stdout, or -1. */
static long output_pos(struct server *s, const char *needle)
{
    server_pump(s);
    const char *p = strstr(s->out, needle);
    return p ? p - s->out : -1;
}

/* A connects and says nothing; B connects and sends its line. */
static void two_clients(void **state)
{
    struct server s;
    start(&s, state, NULL);
    int a = client_connect(&s);
    CHECK(&s, a >= 0);
    /* Let the server take A first (the iterative one then sits in A's
     * recv(); the others have handed A to a process or thread). */
    sleep_ms(100);
    int b = client_connect(&s);
    CHECK(&s, b >= 0);
    CHECK(&s, send_fragmented(b, "second\n", 7, &seed) == 0);
    if (one_at_a_time) {
        /* B waits in the backlog while A is served. */
        CHECK(&s, wait_readable(b, 500) == 0);
        CHECK(&s, output_pos(&s, "Here is the message: second") < 0);
        CHECK(&s, send_fragmented(a, "first\n", 6, &seed) == 0);
        CHECK(&s, recv_ack(a, IO_MS));
        CHECK(&s, recv_ack(b, IO_MS));
        CHECK(&s, server_wait_output(&s, "Here is the message: second\n", IO_MS));
        long pa = output_pos(&s, "Here is the message: first\n");
        long pb = output_pos(&s, "Here is the message: second\n");
        CHECK(&s, pa >= 0 && pa < pb);
    } else {
        /* B is answered while A is connected and silent. */
        CHECK(&s, recv_ack(b, IO_MS));
        CHECK(&s, server_wait_output(&s, "Here is the message: second\n", IO_MS));
        CHECK(&s, wait_readable(a, 0) == 0);
        CHECK(&s, send_fragmented(a, "first\n", 6, &seed) == 0);
        CHECK(&s, recv_ack(a, IO_MS));
        CHECK(&s, server_wait_output(&s, "Here is the message: first\n", IO_MS));
        long pa = output_pos(&s, "Here is the message: first\n");
        long pb = output_pos(&s, "Here is the message: second\n");
        CHECK(&s, pb >= 0 && pb < pa);
    }
    client_close(a);
    client_close(b);
    server_stop_clean(&s);
}

/* Twenty clients connected and silent at once; answered in reverse
 * order of connection (models that serve clients concurrently). */
static void twenty_silent(void **state)
{
    struct server s;
    static const char *const twenty[] = {"-w", "20", NULL};
    start(&s, state, bounded ? twenty : NULL);
    int fd[20];
    for (int i = 0; i < 20; i++) {
        fd[i] = client_connect(&s);
        CHECK(&s, fd[i] >= 0);
    }
    for (int i = 19; i >= 0; i--) {
        char line[32];
        snprintf(line, sizeof line, "client %d\n", i);
        CHECK(&s, send_all(fd[i], line, strlen(line)) == 0);
        CHECK(&s, recv_ack(fd[i], IO_MS));
        client_close(fd[i]);
    }
    CHECK(&s, server_output_count(&s, "Here is the message: client ") == 20);
    server_stop_clean(&s);
}

/* --once: exit 0 once the first client has been served. */
static void once(void **state)
{
    struct server s;
    static const char *const extra[] = {"--once", NULL};
    start(&s, state, extra);
    CHECK(&s, ack_exchange(&s, "only\n"));
    int st = server_wait_exit(&s, IO_MS);
    CHECK(&s, st == 0);
    CHECK(&s, !s.leftovers);
    CHECK(&s, server_output_count(&s, "Here is the message: only\n") == 1);
}

/* --once with a second client waiting: the first is served in full, the
 * server exits 0 and the second client gets EOF or a reset, no answer. */
static void once_second_client(void **state)
{
    struct server s;
    static const char *const extra[] = {"--once", NULL};
    start(&s, state, extra);
    int a = client_connect(&s);
    CHECK(&s, a >= 0);
    sleep_ms(100);
    int b = client_connect(&s); /* in the listen backlog */
    CHECK(&s, b >= 0);
    CHECK(&s, send_all(b, "second\n", 7) == 0);
    CHECK(&s, send_all(a, "first\n", 6) == 0);
    CHECK(&s, recv_ack(a, IO_MS));
    int st = server_wait_exit(&s, IO_MS);
    CHECK(&s, st == 0);
    client_close(a);
    /* B's connection went with the listener: EOF or a reset, no answer. */
    char buf[64];
    ssize_t n = recv_all(b, buf, sizeof buf, IO_MS);
    CHECK(&s, n <= 0);
    client_close(b);
    CHECK(&s, server_output_count(&s, "Here is the message: ") == 1);
}

/* --once over a datagram transport: the first datagram is answered, then
 * the server exits 0. */
static void once_dgram(void **state)
{
    struct server s;
    static const char *const extra[] = {"--once", NULL};
    start(&s, state, extra);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    CHECK(&s, send_all(fd, "only\n", 5) == 0);
    char buf[256];
    ssize_t n = recv_dgram(fd, buf, sizeof buf, IO_MS);
    CHECK(&s, n == (ssize_t)strlen(ACK) && memcmp(buf, ACK, (size_t)n) == 0);
    client_close(fd);
    CHECK(&s, server_wait_exit(&s, IO_MS) == 0);
}

/* Poll (up to 5 s) until f(pid) <= limit; returns the last count. */
static int settle(int (*f)(pid_t), pid_t pid, int limit)
{
    long long deadline = now_ms() + 5000;
    int n;
    while ((n = f(pid)) > limit && now_ms() < deadline)
        sleep_ms(20);
    return n;
}

static int zombies_of(pid_t pid)
{
    return count_children(pid, 1);
}

static int children_of(pid_t pid)
{
    return count_children(pid, 0);
}

/* Sequential clients leave no descriptor (nor, for the thread model, a
 * thread) behind in the server. */
static void no_leaks(void **state)
{
    struct server s;
    start(&s, state, NULL);
    CHECK(&s, ack_exchange(&s, "warm-up\n"));
    sleep_ms(50);
    int fds = count_fds(s.pid);
    int threads = count_threads(s.pid);
    CHECK(&s, fds > 0 && threads > 0);
    for (int i = 0; i < SEQUENTIAL_CLIENTS; i++)
        CHECK(&s, ack_exchange(&s, "again\n"));
    int fds_after = settle(count_fds, s.pid, fds);
    int threads_after = settle(count_threads, s.pid, threads);
    if (fds_after > fds || threads_after > threads)
        fprintf(stderr, "server %d: %d descriptors before, %d after; %d threads "
                "before, %d after\n", (int)s.pid, fds, fds_after, threads,
                threads_after);
    CHECK(&s, fds_after <= fds);
    CHECK(&s, threads_after <= threads);
    CHECK(&s, server_output_count(&s, "Here is the message: again\n") ==
                  SEQUENTIAL_CLIENTS);
    server_stop_clean(&s);
}

/* fork: after many clients, each fully served, no zombie child remains,
 * and the server still answers. */
static void no_zombies(void **state)
{
    struct server s;
    start(&s, state, NULL);
    /* The scan sees the child serving a connected client. */
    int idle = client_connect(&s);
    CHECK(&s, idle >= 0);
    long long deadline = now_ms() + IO_MS;
    while (children_of(s.pid) != 1 && now_ms() < deadline)
        sleep_ms(10);
    CHECK(&s, children_of(s.pid) == 1);
    CHECK(&s, zombies_of(s.pid) == 0);
    client_close(idle);
    for (int i = 0; i < SEQUENTIAL_CLIENTS; i++)
        CHECK(&s, ack_exchange(&s, "zombie?\n"));
    int z = settle(zombies_of, s.pid, 0);
    if (z != 0)
        fprintf(stderr, "server %d: %d zombie children after 5 s\n", (int)s.pid, z);
    CHECK(&s, z == 0);
    /* Every child has exited (each client saw its connection close). */
    CHECK(&s, settle(children_of, s.pid, 0) == 0);
    CHECK(&s, ack_exchange(&s, "still there\n"));
    CHECK(&s, server_wait_output(&s, "Here is the message: still there\n", IO_MS));
    server_stop_clean(&s);
}

/* ---- registration ---------------------------------------------------------- */

static struct harness_cases cases;

static void add(const char *name, CMUnitTestFunction fn, const char *transport)
{
    harness_add_case(&cases, transport, name, fn, (void *)transport);
}

int main(int argc, char **argv)
{
    int dgram;
    model = harness_model_checked(argc, argv, &dgram);
    one_at_a_time = strcmp(model, "iterative") == 0;
    bounded = strcmp(model, "prefork") == 0 || strcmp(model, "pool") == 0;
    seed = harness_seed();

    static const char *const streams[] = {"tcp4", "unix"};
    for (size_t i = 0; i < 2; i++) {
        add("two_clients", two_clients, streams[i]);
        if (!one_at_a_time)
            add("twenty_silent", twenty_silent, streams[i]);
        add("once", once, streams[i]);
    }
    add("once_second_client", once_second_client, "tcp4");
    if (dgram) {
        add("once", once_dgram, "udp4");
        add("once", once_dgram, "unixgram");
    }
    add("no_leaks", no_leaks, "tcp4");
    add("no_leaks", no_leaks, "unix");
    if (strcmp(model, "fork") == 0)
        add("no_zombies", no_zombies, "tcp4");

    return harness_run_cases(&cases, "model_concurrency", model);
}
