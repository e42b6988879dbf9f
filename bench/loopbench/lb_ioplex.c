/* The micro-benchmark over ioplex's own loop; -b picks the backend. */
#include "loop/loop.h"
#include "loopbench.h"

#include <stdint.h>

static iop__loop *loop;

static void on_read(iop__loop *l, int fd, unsigned events, void *arg)
{
    (void)l, (void)events;
    lb_on_read(fd, (int)(intptr_t)arg);
}

static int init(const char *backend) { return iop__loop_create(&loop, backend); }

static int add_all(int n, const int *fds)
{
    for (int i = 0; i < n; i++) {
        /* Delete, then add: what bench.c's event_del/event_add cost. */
        if (iop__loop_io(loop, fds[i], 0, NULL, NULL) != 0 ||
            iop__loop_io(loop, fds[i], IOP_EV_READ, on_read, (void *)(intptr_t)i) != 0)
            return -1;
    }
    return 0;
}

static void once(void) { iop__loop_once(loop, 0); }

int main(int argc, char **argv)
{
    static const struct lb_adapter a = {"ioplex", init, add_all, once};
    return lb_main(argc, argv, &a);
}
