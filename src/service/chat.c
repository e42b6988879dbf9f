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
 * Order: the room is a list under one mutex; a line is posted to every
 * receiver while holding it, and iop_post() keeps each receiver's posts in
 * the order they were made. So every client sees the room's events in one
 * order, the order the server processed them (in particular, each
 * sender's lines in the order sent, and a join before that user's lines).
 *
 * A client that does not read while others talk is disconnected once its
 * unsent output would pass the high watermark (--high-water, 256 KiB by
 * default), and the others see it leave: see iop_post().
 *
 * Models: the room is memory shared by all connections
 * (IOP_SERVICE_SHARED_STATE), so chat runs under the single-process and
 * threaded models and fork and prefork refuse it at start. So does
 * iterative (IOP_SERVICE_CLIENTS_TOGETHER): it serves one client at a
 * time, so the room would never hold more than one.
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

struct member {
    iop_conn *conn;
    iop_server *server;
    struct member *prev, *next;
};

static pthread_mutex_t room_lock = PTHREAD_MUTEX_INITIALIZER;
static struct member *room; /* every server's members; guarded by room_lock */

/* Post a line to everyone in from's room but from. Called with room_lock
 * held, which keeps every member open (they leave in on_close, which
 * takes the lock) and makes the posts one order for all. */
static void broadcast(const struct member *from, const char *line, size_t len)
{
    for (struct member *m = room; m; m = m->next)
        if (m != from && m->server == from->server)
            iop_post(m->conn, line, len); /* -ENOMEM: that receiver misses it */
}

/* Tell the room, and the server's log at debug level (-v). */
static void announce(const struct member *who, const char *what)
{
    char line[64];
    int n = snprintf(line, sizeof line, "* user%" PRIu64 " has %s\n",
                     iop_conn_id(who->conn), what);
    broadcast(who, line, (size_t)n);
    iop_report(who->server, IOP_LOG_DEBUG, "chat: %.*s", n - 3, line + 2);
}

static void chat_open(iop_conn *c)
{
    struct member *m = calloc(1, sizeof *m);
    if (!m) {
        iop_close(c);
        return;
    }
    m->conn = c;
    m->server = iop_conn_server(c);
    iop_conn_set_data(c, m);
    pthread_mutex_lock(&room_lock);
    m->next = room;
    if (room)
        room->prev = m;
    room = m;
    announce(m, "joined");
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
    broadcast(m, line, n);
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
    if (m->prev)
        m->prev->next = m->next;
    else
        room = m->next;
    if (m->next)
        m->next->prev = m->prev;
    announce(m, "left");
    pthread_mutex_unlock(&room_lock);
    iop_conn_set_data(c, NULL);
    free(m);
}

const struct iop_service iop_service_chat = {
    .name = "chat",
    .summary = "a chat room: each line goes to every other client (ncat --chat)",
    .framing = IOP_FRAMING_LINE,
    .flags = IOP_SERVICE_SHARED_STATE | IOP_SERVICE_CLIENTS_TOGETHER,
    .on_open = chat_open,
    .on_message = chat_message,
    .on_close = chat_close,
};
