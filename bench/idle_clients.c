/*
 * idle_clients: what an idle connection costs a server, in resident memory.
 *
 *   idle_clients -p PID -a HOST:PORT [-n N] [-b BATCH] [-t SECONDS]
 *   idle_clients --free-port          print a free TCP port on 127.0.0.1
 *
 * Reads the server's VmRSS (/proc/PID/status), opens N connections to it
 * in batches of BATCH (default 1000; each batch waits until the server
 * holds that many more descriptors, /proc/PID/fd, so the listen backlog
 * never overflows), reads VmRSS again, checks that the connections are
 * alive (one echo round trip on a few of them: the server must echo), and
 * prints one line:
 *
 *   conns=N rss_before_kb=B rss_after_kb=A bytes_per_conn=X
 *
 * Kernel socket buffers are not in RSS: this is the server's own memory
 * per connection (its connection state, its descriptor tables). Loopback
 * only; every wait is bounded (-t, default 60 s). Exit 0 on success, 1 on
 * any failure (with a reason on stderr).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

static long rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static int count_fds(int pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("idle_clients: free port");
        return 1;
    }
    printf("%u\n", ntohs(a.sin_port));
    close(fd);
    return 0;
}

/* One round trip on a connected socket: the server must echo. */
static int echo_ok(int fd, long long deadline)
{
    static const char msg[] = "idle_clients ping\n";
    size_t len = sizeof msg - 1, got = 0;
    if (send(fd, msg, len, MSG_NOSIGNAL) != (ssize_t)len)
        return 0;
    char buf[64];
    while (got < len) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        long long left = deadline - now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) != 1)
            return 0;
        ssize_t n = recv(fd, buf + got, sizeof buf - got, 0);
        if (n <= 0)
            return 0;
        got += (size_t)n;
    }
    return memcmp(buf, msg, len) == 0;
}

int main(int argc, char **argv)
{
    int pid = 0, n = 10000, batch = 1000, timeout_s = 60;
    const char *addr = NULL;
    if (argc == 2 && strcmp(argv[1], "--free-port") == 0)
        return free_port();
    int opt;
    while ((opt = getopt(argc, argv, "p:a:n:b:t:")) != -1) {
        switch (opt) {
        case 'p': pid = atoi(optarg); break;
        case 'a': addr = optarg; break;
        case 'n': n = atoi(optarg); break;
        case 'b': batch = atoi(optarg); break;
        case 't': timeout_s = atoi(optarg); break;
        default: goto usage;
        }
    }
    if (pid <= 0 || !addr || n <= 0 || batch <= 0 || timeout_s <= 0)
        goto usage;
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host)
        goto usage;
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        goto usage;

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < (rlim_t)n + 16) {
            fprintf(stderr, "idle_clients: RLIMIT_NOFILE %llu is too low for %d connections\n",
                    (unsigned long long)rl.rlim_cur, n);
            return 1;
        }
    }
    int *fds = calloc((size_t)n, sizeof *fds);
    if (!fds)
        return 1;
    long long deadline = now_ms() + (long long)timeout_s * 1000;
    int fds0 = count_fds(pid);
    long before = rss_kb(pid);
    if (fds0 < 0 || before < 0) {
        fprintf(stderr, "idle_clients: cannot read /proc/%d\n", pid);
        return 1;
    }
    int open_n = 0;
    while (open_n < n) {
        int end = open_n + batch < n ? open_n + batch : n;
        for (; open_n < end; open_n++) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
            if (fd < 0 || (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 &&
                           errno != EINPROGRESS)) {
                fprintf(stderr, "idle_clients: connection %d: %s\n", open_n, strerror(errno));
                return 1;
            }
            fds[open_n] = fd;
        }
        /* The server has accepted the batch. */
        int have;
        while ((have = count_fds(pid)) >= 0 && have < fds0 + open_n) {
            if (now_ms() > deadline) {
                fprintf(stderr, "idle_clients: the server holds %d descriptors after %d s, "
                        "expected %d + %d\n", have, timeout_s, fds0, open_n);
                return 1;
            }
            sleep_ms(10);
        }
        if (have < 0) {
            fprintf(stderr, "idle_clients: server %d is gone\n", pid);
            return 1;
        }
    }
    sleep_ms(500); /* let the last accepts settle */
    long after = rss_kb(pid);
    /* Alive: a few of them answer. */
    for (int i = 0; i < n; i += n / 8 > 0 ? n / 8 : 1) {
        struct pollfd p = {.fd = fds[i], .events = POLLOUT};
        if (poll(&p, 1, 5000) != 1 || !echo_ok(fds[i], now_ms() + 5000)) {
            fprintf(stderr, "idle_clients: connection %d does not echo\n", i);
            return 1;
        }
    }
    printf("conns=%d rss_before_kb=%ld rss_after_kb=%ld bytes_per_conn=%ld\n", n, before,
           after, (after - before) * 1024 / n);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
    return 0;

usage:
    fprintf(stderr, "usage: idle_clients -p PID -a HOST:PORT [-n N] [-b BATCH] [-t SECONDS]\n"
                    "       idle_clients --free-port\n");
    return 2;
}
