/* The micro-benchmark over libev (Debian's libev-dev). */
#include "loopbench.h"

#include <ev.h>
#include <stdlib.h>
#include <string.h>

static struct ev_loop *loop;
static ev_io *watchers;

static void on_read(struct ev_loop *l, ev_io *w, int revents)
{
    (void)l, (void)revents;
    lb_on_read(w->fd, (int)(w - watchers));
}

static int init(const char *backend)
{
    unsigned flags = EVFLAG_AUTO;
    if (backend)
        flags = strcmp(backend, "epoll") == 0 ? EVBACKEND_EPOLL
              : strcmp(backend, "poll") == 0 ? EVBACKEND_POLL
              : strcmp(backend, "select") == 0 ? EVBACKEND_SELECT : 0;
    loop = flags ? ev_loop_new(flags) : NULL;
    return loop ? 0 : -1;
}

static int add_all(int n, const int *fds)
{
    if (!watchers)
        watchers = calloc((size_t)n, sizeof *watchers);
    if (!watchers)
        return -1;
    for (int i = 0; i < n; i++) {
        ev_io_stop(loop, &watchers[i]);
        ev_io_init(&watchers[i], on_read, fds[i], EV_READ);
        ev_io_start(loop, &watchers[i]);
    }
    return 0;
}

static void once(void) { ev_run(loop, EVRUN_NOWAIT); }

int main(int argc, char **argv)
{
    static const struct lb_adapter a = {"libev", init, add_all, once};
    return lb_main(argc, argv, &a);
}
