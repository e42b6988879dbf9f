/* Transports and addresses: the ones the tests name and how a server is
 * started on each, and the address line a server prints, parsed into
 * struct server. */
#include "harness_private.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the transports the tests name ---------------------------------------- */

const struct test_transport harness_transports[] = {
    {"tcp4", SERVER_TCP, 0},  {"tcp6", SERVER_TCP, 1},  {"unix", SERVER_UNIX, 0},
    {"udp4", SERVER_UDP, 0},  {"udp6", SERVER_UDP, 1},  {"unixgram", SERVER_UNIXGRAM, 0},
    {NULL, 0, 0},
};

const struct test_transport *harness_transport(const char *name)
{
    for (const struct test_transport *t = harness_transports; t->name; t++)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

int transport_is_dgram(const struct test_transport *t)
{
    return t->kind == SERVER_UDP || t->kind == SERVER_UNIXGRAM;
}

int have_ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

int server_start_on(struct server *s, const char *model, const char *transport,
                    const char *service, const char *const extra[])
{
    const struct test_transport *t = harness_transport(transport);
    if (!t) {
        fprintf(stderr, "harness: unknown transport '%s'\n", transport);
        return -1;
    }
    const char *args[64];
    size_t n = 0;
    char path[108];
    if (model) {
        args[n++] = "-m";
        args[n++] = model;
    }
    if (service) {
        args[n++] = "-S";
        args[n++] = service;
    }
    for (size_t i = 0; extra && extra[i]; i++) {
        if (n >= 50) {
            fprintf(stderr, "harness: too many arguments\n");
            return -1;
        }
        args[n++] = extra[i];
    }
    if (transport_is_dgram(t))
        args[n++] = "-u";
    if (t->kind == SERVER_UNIX || t->kind == SERVER_UNIXGRAM) {
        if (!harness_tmp_path(path, sizeof path, t->name))
            return -1;
        args[n++] = "-U";
        args[n++] = path;
    } else {
        if (t->ipv6)
            args[n++] = "-6";
        args[n++] = t->ipv6 ? "::1" : "127.0.0.1";
        args[n++] = "0";
    }
    args[n] = NULL;
    return server_start(s, args);
}

/* ---- the address a server prints ------------------------------------------- */

/* Parse "tcp://127.0.0.1:41234", "tcp://[::1]:5", "unix:///p", ... */
static int parse_address(struct server *s, const char *a)
{
    static const struct {
        const char *scheme;
        enum server_transport t;
    } schemes[] = {
        {"tcp://", SERVER_TCP}, {"udp://", SERVER_UDP},
        {"unixgram://", SERVER_UNIXGRAM}, {"unix://", SERVER_UNIX},
    };
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t n = strlen(schemes[i].scheme);
        if (strncmp(a, schemes[i].scheme, n) != 0)
            continue;
        const char *rest = a + n;
        s->transport = schemes[i].t;
        if (s->transport == SERVER_UNIX || s->transport == SERVER_UNIXGRAM) {
            if (rest[0] != '/' || strlen(rest) >= sizeof s->path)
                return -1;
            s->family = AF_UNIX;
            strcpy(s->path, rest);
            return 0;
        }
        const char *colon;
        if (rest[0] == '[') {
            const char *end = strchr(rest, ']');
            if (!end || end[1] != ':' || (size_t)(end - rest - 1) >= sizeof s->host)
                return -1;
            memcpy(s->host, rest + 1, (size_t)(end - rest - 1));
            s->host[end - rest - 1] = '\0';
            colon = end + 1;
        } else {
            colon = strrchr(rest, ':');
            if (!colon || (size_t)(colon - rest) >= sizeof s->host)
                return -1;
            memcpy(s->host, rest, (size_t)(colon - rest));
            s->host[colon - rest] = '\0';
        }
        char *end;
        unsigned long port = strtoul(colon + 1, &end, 10);
        if (*end || port == 0 || port > 65535)
            return -1;
        s->port = (unsigned)port;
        struct in6_addr a6;
        struct in_addr a4;
        if (inet_pton(AF_INET, s->host, &a4) == 1)
            s->family = AF_INET;
        else if (inet_pton(AF_INET6, s->host, &a6) == 1)
            s->family = AF_INET6;
        else
            return -1; /* "*" (any address): the tests always name a host */
        return 0;
    }
    return -1;
}

/* Copy, truncating to fit. */
static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Look for "ioplex serve: <svc> on <addr> (model <m>)" in complete lines. */
int harness__find_address_line(struct server *s)
{
    static const char prefix[] = "ioplex serve: ";
    const char *line = s->err;
    for (;;) {
        const char *nl = strchr(line, '\n');
        if (!nl)
            return 0;
        if (strncmp(line, prefix, sizeof prefix - 1) == 0) {
            char buf[512];
            size_t n = (size_t)(nl - line);
            if (n < sizeof buf) {
                memcpy(buf, line, n);
                buf[n] = '\0';
                char *svc = buf + sizeof prefix - 1;
                char *on = strstr(svc, " on ");
                char *model = on ? strstr(on, " (model ") : NULL;
                if (on && model && buf[n - 1] == ')') {
                    *on = '\0';
                    *model = '\0';
                    buf[n - 1] = '\0';
                    copy_str(s->service, sizeof s->service, svc);
                    copy_str(s->address, sizeof s->address, on + 4);
                    copy_str(s->model, sizeof s->model, model + 8);
                    if (parse_address(s, s->address) != 0) {
                        fprintf(stderr, "harness: cannot parse the address '%s'\n",
                                s->address);
                        return -1;
                    }
                    return 1;
                }
            }
        }
        line = nl + 1;
    }
}
