/* The driver of the micro-benchmark (see loopbench.h). */
#define _GNU_SOURCE
#include "loopbench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int *pairs; /* pairs[2*i] read end, pairs[2*i+1] write end */
static int num_pairs, num_active, num_writes;
static long count, writes, fired;

void lb_on_read(int fd, int idx)
{
    unsigned char ch;
    if (read(fd, &ch, 1) == 1)
        count++;
    if (writes) {
        int next = idx + 1 >= num_pairs ? idx + 1 - num_pairs : idx + 1;
        if (write(pairs[2 * next + 1], "e", 1) == 1) {
            writes--;
            fired++;
        }
    }
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static double run_once(const struct lb_adapter *a, const int *read_fds)
{
    if (a->add_all(num_pairs, read_fds) != 0)
        return -1;
    a->once();
    fired = 0;
    int space = num_pairs / num_active * 2;
    for (int i = 0; i < num_active; i++, fired++)
        if (write(pairs[i * space + 1], "e", 1) != 1)
            return -1;
    count = 0;
    writes = num_writes;
    double t0 = now_us();
    do
        a->once();
    while (count != fired);
    return now_us() - t0;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

int lb_main(int argc, char **argv, const struct lb_adapter *a)
{
    const char *backend = NULL;
    int runs = 25, c;
    num_pairs = 100;
    num_active = 1;
    num_writes = -1;
    while ((c = getopt(argc, argv, "n:a:w:b:r:")) != -1) {
        switch (c) {
        case 'n': num_pairs = atoi(optarg); break;
        case 'a': num_active = atoi(optarg); break;
        case 'w': num_writes = atoi(optarg); break;
        case 'b': backend = optarg; break;
        case 'r': runs = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: %s [-n pairs] [-a active] [-w writes] [-b backend] [-r runs]\n", argv[0]);
            return 2;
        }
    }
    if (num_pairs < 1 || num_active < 1 || num_active > num_pairs || runs < 1 || runs > 1000) {
        fprintf(stderr, "%s: need 1 <= active <= pairs, 1 <= runs <= 1000\n", argv[0]);
        return 2;
    }
    if (num_writes < 0)
        num_writes = num_pairs;
    struct rlimit rl = {.rlim_cur = (rlim_t)num_pairs * 2 + 50, .rlim_max = (rlim_t)num_pairs * 2 + 50};
    struct rlimit cur;
    getrlimit(RLIMIT_NOFILE, &cur);
    if (cur.rlim_max > rl.rlim_max)
        rl.rlim_max = cur.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        fprintf(stderr, "%s: %d pairs need %lu descriptors; the hard limit is %lu "
                "and raising it failed: %s\n", argv[0], num_pairs,
                (unsigned long)rl.rlim_cur, (unsigned long)cur.rlim_max, strerror(errno));
        return 1;
    }
    pairs = calloc((size_t)num_pairs * 2, sizeof *pairs);
    int *read_fds = calloc((size_t)num_pairs, sizeof *read_fds);
    if (!pairs || !read_fds)
        return 1;
    for (int i = 0; i < num_pairs; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, &pairs[2 * i]) != 0) {
            perror("socketpair");
            return 1;
        }
        read_fds[i] = pairs[2 * i];
    }
    if (a->init(backend) != 0) {
        fprintf(stderr, "%s: backend %s unavailable\n", a->name, backend ? backend : "(default)");
        return 1;
    }
    double *us = calloc((size_t)runs, sizeof *us);
    for (int i = 0; i < runs; i++) {
        us[i] = run_once(a, read_fds);
        if (us[i] < 0) {
            fprintf(stderr, "%s: run failed\n", a->name);
            return 1;
        }
    }
    qsort(us, (size_t)runs, sizeof *us, cmp_double);
    /* One line: library backend pairs active writes median min max (us per run). */
    printf("%s %s %d %d %d %.1f %.1f %.1f\n", a->name, backend ? backend : "default",
           num_pairs, num_active, num_writes, us[runs / 2], us[0], us[runs - 1]);
    return 0;
}
