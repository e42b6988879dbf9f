/* The micro-benchmark over libevent 2 (Debian's libevent-dev). */
#include "loopbench.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct event_base *base;
static struct event **events;

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    lb_on_read((int)fd, (int)(intptr_t)arg);
}

static int init(const char *backend)
{
    struct event_config *cfg = event_config_new();
    if (backend) /* keep only the named method */
        for (const char **m = event_get_supported_methods(); *m; m++)
            if (strcmp(*m, backend) != 0)
                event_config_avoid_method(cfg, *m);
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base ? 0 : -1;
}

static int add_all(int n, const int *fds)
{
    if (!events)
        events = calloc((size_t)n, sizeof *events);
    for (int i = 0; i < n; i++) {
        if (events[i]) {
            event_del(events[i]);
            event_free(events[i]);
        }
        events[i] = event_new(base, fds[i], EV_READ | EV_PERSIST, on_read, (void *)(intptr_t)i);
        if (!events[i] || event_add(events[i], NULL) != 0)
            return -1;
    }
    return 0;
}

static void once(void) { event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK); }

int main(int argc, char **argv)
{
    static const struct lb_adapter a = {"libevent", init, add_all, once};
    return lb_main(argc, argv, &a);
}
