/* The readiness backends compiled in, best first: the default is the first. */
#include "loop.h"

#include <stddef.h>

#if defined(__has_include)
#if __has_include(<sys/event.h>)
#define IOP_HAVE_KQUEUE 1
#endif
#if __has_include(<sys/epoll.h>)
#define IOP_HAVE_EPOLL 1
#endif
#endif

extern const struct iop__backend iop__backend_epoll, iop__backend_kqueue,
    iop__backend_poll, iop__backend_select;

static const struct iop__backend *const backends[] = {
#ifdef IOP_HAVE_EPOLL
    &iop__backend_epoll,
#endif
#ifdef IOP_HAVE_KQUEUE
    &iop__backend_kqueue,
#endif
    &iop__backend_poll,
    &iop__backend_select,
    NULL,
};

const struct iop__backend *const *iop__backends(void) { return backends; }
