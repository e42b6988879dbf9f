/*
 * chat: a chat room, in the manner of `ncat --chat`. Line-framed: every
 * line a client sends goes to every other client connected to the same
 * server, prefixed with the sender's name.
 *
 * Names: "user<N>", N being the connection's id (iop_conn_id(): 1, 2, ...
 * in the order the server accepted them; unique per server). What a
 * client receives, one "\n"-terminated line each:
 *
 *   * user3 has joined     user3 connected
 *   <user3> hello          user3 sent the line "hello" ("hello\r\n" too)
 *   * user3 has left       user3's connection closed, for whatever reason
 *
 * A client never gets its own lines back, nor its own announcements: a
 * client alone in the room gets nothing at all. Lines are relayed as they
 * are, empty ones included; one longer than --max-frame (64 KiB) closes
 * the sender's connection, as for every line-framed service.
 *
 * Order: the room is an array under one mutex; a line is posted to every
 * receiver while holding it, and iop_post_many() keeps each receiver's
 * posts in the order they were made. So every client sees the room's
 * events in one order, the order the server processed them (in
 * particular, each sender's lines in the order sent, and a join before
 * that user's lines).
 *
 * Memory: a line is copied once for all its receivers (iop_post_many()),
 * and a receiver's backlog is bounded when the line is posted: a client
 * that does not read while others talk is disconnected once its backlog
 * would pass the high watermark (--high-water, 256 KiB by default), and
 * the others see it leave. With at most ROOM_MAX members, the room holds
 * at most ROOM_MAX x high_water bytes, whatever the clients do.
 *
 * Size: a room takes at most ROOM_MAX (100) members; one more is told
 * "* room is full" and closed (and reported, at INFO). 100 is ncat
 * --chat's own limit (its --max-conns default); every line costs the
 * server one post per member, so the work of a room where all talk grows
 * as the square of its size, and its memory as size x high_water (25 MB
 * at the defaults). (Redis' maxclients is 10000, but a Redis client
 * costs O(1) per command; Redis bounds pub/sub fan-out by output limits.)
 *
 * Models: the room is memory shared by all connections
 * (IOP_SERVICE_SHARED_STATE), so chat runs under the single-process and
 * threaded models and fork and prefork refuse it at start. So does
 * iterative (IOP_SERVICE_CLIENTS_TOGETHER): it serves one client at a
 * time, so the room would never hold more than one. Under thread and pool
 * each member is a thread that every line wakes; a pool of N serves N
 * members at once (the others wait their turn), and the thread model's
 * threads are bounded by --max-conns (by default what the descriptor
 * limit holds).
 *
 * One room per server: a process running two chat servers has two rooms.
 * With -v the server logs "chat: user3 has joined" and "... has left"
 * once the room has changed.
 */
#include "ioplex.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROOM_MAX 100 /* members per room: ncat --chat's limit (see above) */
#define STR(x) #x
#define XSTR(x) STR(x)

struct member {
    iop_conn *conn;
    struct room *room;
    size_t index; /* in room->members; under room_lock */
};

struct room {
    iop_server *server;
    struct room *next;
    size_t n;
    struct member *members[ROOM_MAX];
};

static pthread_mutex_t room_lock = PTHREAD_MUTEX_INITIALIZER;
static struct room *rooms; /* one per server with members; under room_lock */

/* The server's room, made on its first member's arrival; NULL if there is
 * no memory for it. Called with room_lock held. */
static struct room *room_of(iop_server *s)
{
    for (struct room *r = rooms; r; r = r->next)
        if (r->server == s)
            return r;
    struct room *r = calloc(1, sizeof *r);
    if (r) {
        r->server = s;
        r->next = rooms;
        rooms = r;
    }
    return r;
}

/* Post a line to everyone in the room but `from`. Called with room_lock
 * held, which keeps every member open (they leave in on_close, which
 * takes the lock) and makes the posts one order for all. One copy of the
 * line is shared by all its receivers. */
static void broadcast(const struct room *r, const struct member *from, const char *line,
                      size_t len)
{
    iop_conn *to[ROOM_MAX];
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++)
        if (r->members[i] != from)
            to[n++] = r->members[i]->conn;
    iop_post_many(to, n, line, len); /* -ENOMEM: they miss it */
}

/* Tell the room, and the server's log at debug level (-v). */
static void announce(const struct room *r, const struct member *who, const char *what)
{
    char line[64];
    int n = snprintf(line, sizeof line, "* user%" PRIu64 " has %s\n", iop_conn_id(who->conn),
                     what);
    broadcast(r, who, line, (size_t)n);
    iop_report(r->server, IOP_LOG_DEBUG, "chat: %.*s", n - 3, line + 2);
}

static void chat_open(iop_conn *c)
{
    static const char full[] = "* room is full\n";
    struct member *m = malloc(sizeof *m);
    if (!m) {
        iop_close(c);
        return;
    }
    pthread_mutex_lock(&room_lock);
    struct room *r = room_of(iop_conn_server(c));
    if (!r || r->n == ROOM_MAX) {
        pthread_mutex_unlock(&room_lock);
        free(m);
        if (r) {
            iop_report(iop_conn_server(c), IOP_LOG_INFO, "chat: room is full (%d members); "
                       "closing %s", ROOM_MAX, iop_conn_peer_name(c));
            iop_send(c, full, sizeof full - 1);
        }
        iop_close(c);
        return;
    }
    m->conn = c;
    m->room = r;
    m->index = r->n;
    r->members[r->n++] = m;
    iop_conn_set_data(c, m);
    announce(r, m, "joined");
    pthread_mutex_unlock(&room_lock);
}

static void chat_message(iop_conn *c, const char *msg, size_t len)
{
    struct member *m = iop_conn_data(c);
    if (!m)
        return;
    char prefix[32], stack[1024];
    int pn = snprintf(prefix, sizeof prefix, "<user%" PRIu64 "> ", iop_conn_id(c));
    size_t n = (size_t)pn + len + 1;
    char *line = n <= sizeof stack ? stack : malloc(n);
    if (!line)
        return;
    memcpy(line, prefix, (size_t)pn);
    memcpy(line + pn, msg, len);
    line[n - 1] = '\n';
    pthread_mutex_lock(&room_lock);
    broadcast(m->room, m, line, n);
    pthread_mutex_unlock(&room_lock);
    if (line != stack)
        free(line);
}

static void chat_close(iop_conn *c, int error)
{
    (void)error;
    struct member *m = iop_conn_data(c);
    if (!m)
        return;
    pthread_mutex_lock(&room_lock);
    struct room *r = m->room;
    struct member *last = r->members[--r->n];
    r->members[m->index] = last;
    last->index = m->index;
    announce(r, m, "left");
    if (r->n == 0) { /* the last one out: the room goes too */
        for (struct room **pp = &rooms; *pp; pp = &(*pp)->next)
            if (*pp == r) {
                *pp = r->next;
                break;
            }
        free(r);
    }
    pthread_mutex_unlock(&room_lock);
    iop_conn_set_data(c, NULL);
    free(m);
}

const struct iop_service iop__service_chat = {
    .name = "chat",
    .summary = "a chat room of at most " XSTR(ROOM_MAX) " members: each line goes to "
               "every other (ncat --chat)",
    .framing = IOP_FRAMING_LINE,
    .flags = IOP_SERVICE_SHARED_STATE | IOP_SERVICE_CLIENTS_TOGETHER,
    .on_open = chat_open,
    .on_message = chat_message,
    .on_close = chat_close,
};
