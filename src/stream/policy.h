/*
 * The policy every connection obeys, whatever the model.
 */
#ifndef IOP_STREAM_POLICY_H
#define IOP_STREAM_POLICY_H

#include <stddef.h>

/* ---- the policy every connection obeys ------------------------------------- */

/* Resolved once, by iop_server_open(), from the configuration and the
 * defaults; the connection paths read this, never the configuration. */
struct iop__policy {
    size_t high_water; /* queued output: reading stops at this */
    size_t low_water;  /* and resumes at this; producers are asked below it */
    int idle_ms;       /* no progress for this long: closed (0: never) */
    int linger_ms;     /* lingering close: input discarded at most this long */
    int drain_ms;      /* at stop: output gets this long to go out */
    int accept_pause_ms; /* accept() out of descriptors: tried again after */
};
/* on_drain calls in a row, at most, before others get their turn. */
#define IOP__PRODUCE_ROUNDS 16

#endif
