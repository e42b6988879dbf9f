/*
 * Privileges and socket files: `ioplex serve --user NAME` binds as root (a
 * port below 1024), then serves as that user; `--mode OCTAL` makes a Unix
 * socket file with exactly that mode; a stale socket file is replaced and
 * anything else at the path is left alone.
 *
 * Checked from outside, as a user would: /proc/PID/task/TID/status of the
 * server's every thread (and of a fork or prefork child) says nobody's
 * uid, gid and groups, with no capability left; the server answers on the
 * low port and exits 0 on SIGTERM; stat() of the socket file shows its
 * mode and owner, and that it is gone once the server has stopped.
 *
 * Most of it needs root (CI is root); each such test is skipped with one
 * line on stderr when not.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "tool.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ioplex.h"

#define CMD_TIMEOUT_MS 10000
#define LOW_PORT_MIN 600 /* privileged ports tried: 600..1019 */
#define LOW_PORT_SPAN 420
#define PORT_TRIES 8
#define MAX_PIDS 16

static int need_root(void)
{
    if (geteuid() == 0)
        return 1;
    fprintf(stderr, "test_privilege: skipped: needs root to bind below 1024 and "
                    "change user (running as uid %ld)\n", (long)geteuid());
    return 0;
}
#define NEED_ROOT()        \
    do {                   \
        if (!need_root())  \
            skip();        \
    } while (0)

/* ---- the user to become ------------------------------------------------------ */

struct who {
    uid_t uid;
    gid_t gid;
    gid_t groups[64];
    int ngroups;
};

static void lookup(const char *name, struct who *w)
{
    struct passwd *pw = getpwnam(name);
    if (!pw)
        fail_msg("no user '%s' on this machine", name);
    w->uid = pw->pw_uid;
    w->gid = pw->pw_gid;
    w->ngroups = (int)(sizeof w->groups / sizeof w->groups[0]);
    if (getgrouplist(name, w->gid, w->groups, &w->ngroups) < 0)
        fail_msg("getgrouplist(%s): more than %d groups", name, w->ngroups);
}

/* ---- reading /proc --------------------------------------------------------- */

/* The value after "Key:" in a status file (the rest of that line). */
static int status_field(const char *status, const char *key, char *out, size_t cap)
{
    size_t klen = strlen(key);
    for (const char *p = status; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, key, klen) == 0 && p[klen] == ':') {
            p += klen + 1;
            size_t n = strcspn(p, "\n");
            if (n >= cap)
                n = cap - 1;
            memcpy(out, p, n);
            out[n] = '\0';
            return 0;
        }
    }
    return -1;
}

static int cmp_gid(const void *a, const void *b)
{
    gid_t x = *(const gid_t *)a, y = *(const gid_t *)b;
    return x < y ? -1 : x > y;
}

/* Put a sentence in why and return it. */
static const char *say(char *why, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static const char *say(char *why, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return why;
}

/*
 * One task's credentials are w's: the four uids (real, effective, saved,
 * file system) and gids, the supplementary groups (as a set), and no
 * capability permitted or effective unless w is root. Returns NULL or
 * what differs (in why).
 */
static const char *task_creds_differ(const char *status_path, const struct who *w,
                                     char *why, size_t cap)
{
    char st[4096], f[512];
    if (proc_read_text(status_path, st, sizeof st) < 0)
        return NULL; /* the task has just ended: nothing to judge */
    unsigned long v[4];
    if (status_field(st, "Uid", f, sizeof f) != 0 ||
        sscanf(f, "%lu %lu %lu %lu", &v[0], &v[1], &v[2], &v[3]) != 4)
        return say(why, cap, "no Uid line");
    for (int i = 0; i < 4; i++)
        if (v[i] != w->uid)
            return say(why, cap, "Uid:%s, want %lu", f, (unsigned long)w->uid);
    if (status_field(st, "Gid", f, sizeof f) != 0 ||
        sscanf(f, "%lu %lu %lu %lu", &v[0], &v[1], &v[2], &v[3]) != 4)
        return say(why, cap, "no Gid line");
    for (int i = 0; i < 4; i++)
        if (v[i] != w->gid)
            return say(why, cap, "Gid:%s, want %lu", f, (unsigned long)w->gid);
    if (status_field(st, "Groups", f, sizeof f) != 0)
        return say(why, cap, "no Groups line");
    gid_t got[64];
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(f, " \t", &save); t; t = strtok_r(NULL, " \t", &save))
        if (n < 64)
            got[n++] = (gid_t)strtoul(t, NULL, 10);
    gid_t want[64];
    memcpy(want, w->groups, sizeof want);
    qsort(got, (size_t)n, sizeof got[0], cmp_gid);
    qsort(want, (size_t)w->ngroups, sizeof want[0], cmp_gid);
    if (n != w->ngroups || memcmp(got, want, (size_t)n * sizeof got[0]) != 0)
        return say(why, cap, "Groups:%s differ from the user's %d group(s)",
                        f, w->ngroups);
    if (w->uid != 0) {
        const char *caps[] = {"CapPrm", "CapEff"};
        for (int i = 0; i < 2; i++)
            if (status_field(st, caps[i], f, sizeof f) != 0 ||
                strtoull(f, NULL, 16) != 0)
                return say(why, cap, "%s:%s, want none", caps[i], f);
    }
    return NULL;
}

/* Every task (thread) of pid has w's credentials; returns the number of
 * tasks checked, failing the test on the first that differs. */
static int check_creds(struct server *s, pid_t pid, const struct who *w, const char *what)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    if (!d) {
        server_dump(s);
        fail_msg("%s: cannot read %s: %s", what, dir, strerror(errno));
    }
    int tasks = 0;
    const char *bad = NULL;
    char why[256], path[384];
    struct dirent *e;
    while (!bad && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s/status", dir, e->d_name);
        bad = task_creds_differ(path, w, why, sizeof why);
        tasks++;
    }
    closedir(d);
    if (bad) {
        server_dump(s);
        fail_msg("%s: %s: %s", what, path, bad);
    }
    if (tasks == 0) {
        server_dump(s);
        fail_msg("%s: no task under %s", what, dir);
    }
    return tasks;
}

/* Wait (bounded) until pid has at least `want` children. */
static int wait_children(pid_t pid, pid_t *kids, int want)
{
    long long until = now_ms() + HARNESS_IO_TIMEOUT_MS;
    int n;
    while ((n = proc_children(pid, kids, MAX_PIDS, 1)) < want && now_ms() < until)
        sleep_ms(20);
    return n;
}

/* ---- running the tool ------------------------------------------------------ */


/* ---- serving --------------------------------------------------------------- */

/* The course's exchange: a line, and the ack. */
static void expect_ack(struct server *s, const char *msg)
{
    int fd = client_connect(s);
    if (fd < 0) {
        server_dump(s);
        fail_msg("cannot connect to %s", s->address);
    }
    char line[128];
    snprintf(line, sizeof line, "%s\n", msg);
    assert_int_equal(send_all(fd, line, strlen(line)), 0);
    ssize_t n = recv_line(fd, line, sizeof line, HARNESS_IO_TIMEOUT_MS);
    client_close(fd);
    if (n <= 0 || strcmp(line, "I got your message\n") != 0) {
        server_dump(s);
        fail_msg("%s: no ack for '%s' (got %zd bytes)", s->address, msg, n);
    }
}

/* A privileged TCP port on 127.0.0.1 that nothing seems to hold. */
static unsigned low_port(unsigned *seed)
{
    for (int i = 0; i < 50; i++) {
        unsigned port = LOW_PORT_MIN + rng_next(seed) % LOW_PORT_SPAN;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int r = bind(fd, (struct sockaddr *)&a, sizeof a);
        close(fd);
        if (r == 0)
            return port;
    }
    fail_msg("no free port from %d to %d", LOW_PORT_MIN, LOW_PORT_MIN + LOW_PORT_SPAN - 1);
    return 0;
}

/*
 * Start `ioplex serve EXTRA... 127.0.0.1 PORT` on a free port below 1024,
 * trying another port should it be taken in between (exit 6). Returns 0,
 * or the server's exit status if it failed otherwise (its stderr kept in
 * s->err).
 */
static int start_low(struct server *s, const char *const extra[])
{
    static unsigned seed;
    if (!seed)
        seed = harness_seed();
    const char *args[24];
    size_t n = 0;
    for (; extra[n]; n++) {
        assert_true(n < sizeof args / sizeof args[0] - 3);
        args[n] = extra[n];
    }
    char port[16];
    args[n] = "127.0.0.1";
    args[n + 1] = port;
    args[n + 2] = NULL;
    for (int i = 0; i < PORT_TRIES; i++) {
        snprintf(port, sizeof port, "%u", low_port(&seed));
        if (server_start(s, args) == 0) {
            assert_true(s->port < 1024);
            return 0;
        }
        if (!s->exited || s->status != 6)
            return s->exited ? s->status : -1;
    }
    fail_msg("no port below 1024 could be bound in %d tries", PORT_TRIES);
    return -1;
}

/* ---- --user on a privileged port, under every model ---------------------------- */

struct model_case {
    const char *model;       /* as in iop_models() */
    const char *args[8];     /* the -m (and -w) arguments */
    int prefork_children;    /* children made in advance, checked */
    int child_per_client;    /* fork: the client's child is checked */
    int threads;             /* at least this many tasks are checked */
};

static const struct model_case model_cases[] = {
    {"iterative", {"-m", "iterative"}, 0, 0, 1},
    {"fork", {"-m", "fork"}, 0, 1, 1},
    {"thread", {"-m", "thread"}, 0, 0, 1},
    {"prefork", {"-m", "prefork:2"}, 2, 0, 1},
    {"pool", {"-m", "pool:2"}, 0, 0, 3},
    {"select", {"-m", "select"}, 0, 0, 1},
    {"poll", {"-m", "poll", "-w", "2"}, 0, 0, 2},
    {"epoll", {"-m", "epoll", "-w", "2"}, 0, 0, 2},
    {"uring", {"-m", "uring", "-w", "2"}, 0, 0, 2},
    {"aio", {"-m", "aio"}, 0, 0, 1},
};

static void user_on_low_port(void **state)
{
    const struct model_case *mc = *state;
    NEED_ROOT();
    if (model_serves_datagrams(mc->model) < 0) {
        fprintf(stderr, "test_privilege: skipped: model %s is not compiled in\n", mc->model);
        skip();
    }
    struct who nobody;
    lookup("nobody", &nobody);
    const char *extra[16];
    size_t n = 0;
    for (; mc->args[n]; n++)
        extra[n] = mc->args[n];
    extra[n++] = "--user";
    extra[n++] = "nobody";
    extra[n] = NULL;

    struct server s;
    int st = start_low(&s, extra);
    if (st != 0 && strcmp(mc->model, "uring") == 0 && strstr(s.err, "io_uring is not available")) {
        fprintf(stderr, "test_privilege: skipped: %s", s.err);
        skip();
    }
    if (st != 0)
        fail_msg("-m %s --user nobody: the server failed (status %d)", mc->model, st);

    /* The address line comes after the drop; the model's threads start
     * after it: wait for them, then every one must be nobody. */
    long long until = now_ms() + HARNESS_IO_TIMEOUT_MS;
    while (count_threads(s.pid) < mc->threads && now_ms() < until)
        sleep_ms(10);
    int tasks = check_creds(&s, s.pid, &nobody, mc->model);
    if (tasks < mc->threads) {
        server_dump(&s);
        fail_msg("-m %s: %d task(s) checked, want at least %d", mc->model, tasks, mc->threads);
    }
    pid_t kids[MAX_PIDS];
    if (mc->prefork_children) {
        int k = wait_children(s.pid, kids, mc->prefork_children);
        if (k < mc->prefork_children) {
            server_dump(&s);
            fail_msg("prefork: %d children, want %d", k, mc->prefork_children);
        }
        for (int i = 0; i < k; i++)
            check_creds(&s, kids[i], &nobody, "a prefork child");
    }
    if (mc->child_per_client) {
        /* A client half-way through its line: its child is serving it. */
        int fd = client_connect(&s);
        assert_true(fd >= 0);
        assert_int_equal(send_all(fd, "hal", 3), 0);
        int k = wait_children(s.pid, kids, 1);
        if (k < 1) {
            server_dump(&s);
            fail_msg("fork: no child for a connected client");
        }
        for (int i = 0; i < k; i++)
            check_creds(&s, kids[i], &nobody, "a fork child");
        assert_int_equal(send_all(fd, "f\n", 2), 0);
        char line[64];
        ssize_t r = recv_line(fd, line, sizeof line, HARNESS_IO_TIMEOUT_MS);
        client_close(fd);
        assert_true(r > 0);
        assert_string_equal(line, "I got your message\n");
    }
    expect_ack(&s, "hello from below 1024");
    assert_true(server_wait_output(&s, "Here is the message: hello from below 1024",
                                   HARNESS_IO_TIMEOUT_MS));
    /* Threads started lazily (aio's helpers, io_uring's workers) too. */
    check_creds(&s, s.pid, &nobody, mc->model);
    int status = server_stop(&s, 0);
    if (status != 0) {
        server_dump(&s);
        fail_msg("-m %s --user nobody: SIGTERM: exit status %d, want 0", mc->model, status);
    }
}

/* ---- refusals ----------------------------------------------------------------- */

static void test_root_refused_unless_allowed(void **state)
{
    (void)state;
    NEED_ROOT();
    struct tool_result r;
    tool_run(&r, (const char *const[]){"serve", "--user", "root", "127.0.0.1", "0", NULL},
             CMD_TIMEOUT_MS);
    tool_expect_error("serve --user root", &r, 2, "ioplex serve: ", "'root'", "uid 0",
                      "--allow-root", NULL);

    struct who root;
    lookup("root", &root);
    struct server s;
    assert_int_equal(server_startl(&s, "--user", "root", "--allow-root", "127.0.0.1", "0",
                                   NULL), 0);
    check_creds(&s, s.pid, &root, "--user root --allow-root");
    expect_ack(&s, "as root, since asked");
    assert_int_equal(server_stop(&s, 0), 0);
}

/* A user whose primary group is 0: made for this test (no such user on a
 * stock Debian), removed after it whatever happens. */
static char group0_user[32];

static void remove_group0_user(void)
{
    if (!group0_user[0])
        return;
    const char *argv[] = {"userdel", group0_user, NULL};
    char out[256], err[256];
    run_cmd(argv, NULL, 0, out, sizeof out, NULL, err, sizeof err, CMD_TIMEOUT_MS);
    group0_user[0] = '\0';
}

static void test_group_root_refused_unless_allowed(void **state)
{
    (void)state;
    NEED_ROOT();
    snprintf(group0_user, sizeof group0_user, "iopg0-%ld", (long)getpid());
    atexit(remove_group0_user);
    const char *add[] = {"useradd", "-M", "-N", "-g", "0", "-s", "/usr/sbin/nologin",
                         group0_user, NULL};
    char out[256], err[512];
    int code = run_cmd(add, NULL, 0, out, sizeof out, NULL, err, sizeof err, CMD_TIMEOUT_MS);
    if (code != 0) {
        group0_user[0] = '\0';
        fail_msg("useradd -g 0: exit %d: %s", code, err);
    }
    struct tool_result r;
    tool_run(&r, (const char *const[]){"serve", "--user", group0_user, "127.0.0.1", "0",
                                         NULL}, CMD_TIMEOUT_MS);
    tool_expect_error("serve --user <primary group 0>", &r, 2, "ioplex serve: ",
                      group0_user, "group 0", "--allow-root", NULL);

    struct server s;
    int started = server_startl(&s, "--user", group0_user, "--allow-root", "127.0.0.1", "0",
                                NULL);
    if (started == 0) {
        expect_ack(&s, "group 0, since asked");
        started = server_stop(&s, 0);
    }
    remove_group0_user();
    assert_int_equal(started, 0);
}

static void test_unknown_user(void **state)
{
    (void)state;
    NEED_ROOT();
    struct tool_result r;
    tool_run(&r, (const char *const[]){"serve", "--user", "ioplex-no-such-user",
                                         "127.0.0.1", "0", NULL}, CMD_TIMEOUT_MS);
    tool_expect_error("serve --user <unknown>", &r, 2, "ioplex serve: ",
                      "unknown user 'ioplex-no-such-user'", NULL);
    /* Refused before binding: no socket file is made. */
    char path[256];
    assert_non_null(harness_tmp_path(path, sizeof path, "nouser"));
    tool_run(&r, (const char *const[]){"serve", "--user", "ioplex-no-such-user", "-U",
                                         path, NULL}, CMD_TIMEOUT_MS);
    tool_expect_error("serve --user <unknown> -U", &r, 2, "ioplex serve: ", "unknown user", NULL);
    struct stat st;
    assert_int_not_equal(lstat(path, &st), 0);
    assert_int_equal(errno, ENOENT);
}

/* --user from a process that is not root: the tool run as nobody. The
 * binary is run from a descriptor opened as root, so that no directory
 * above it needs to be open to nobody. */
static void test_user_needs_root(void **state)
{
    (void)state;
    NEED_ROOT();
    struct who nobody;
    lookup("nobody", &nobody);
    int exe = open(ioplex_bin(), O_RDONLY | O_CLOEXEC);
    assert_true(exe >= 0);
    int errp[2];
    assert_int_equal(pipe2(errp, O_CLOEXEC), 0);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char *const argv[] = {"ioplex", "serve", "--user", "nobody", "127.0.0.1", "0", NULL};
        extern char **environ;
        if (dup2(errp[1], 2) < 0 || setgroups(0, NULL) != 0 || setgid(nobody.gid) != 0 ||
            setuid(nobody.uid) != 0)
            _exit(126);
        signal(SIGPIPE, SIG_DFL);
        fexecve(exe, argv, environ);
        _exit(127);
    }
    close(exe);
    close(errp[1]);
    char err[8192] = "";
    size_t len = 0;
    long long until = now_ms() + CMD_TIMEOUT_MS;
    for (;;) {
        if (!wait_readable(errp[0], (int)(until - now_ms() > 0 ? until - now_ms() : 0)))
            break;
        ssize_t n = read(errp[0], err + len, sizeof err - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    err[len] = '\0';
    close(errp[0]);
    int status = 0;
    pid_t w;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && now_ms() < until)
        sleep_ms(10);
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("serve --user as nobody did not exit (stderr '%s')", err);
    }
    struct tool_result r = {.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1};
    memcpy(r.err, err, len + 1);
    tool_expect_error("serve --user, not as root", &r, 2, "ioplex serve: ",
                      "--user needs root", NULL);
}

/* ---- Unix socket files ------------------------------------------------------- */

/* A directory like /tmp (world-writable, sticky), where only a file's owner
 * may remove it: the server can remove its socket after the drop only if
 * the file was given to it. */
static char sticky_dir[64];

static void remove_sticky_dir(void)
{
    if (!sticky_dir[0])
        return;
    DIR *d = opendir(sticky_dir);
    if (d) {
        struct dirent *e;
        char p[sizeof sticky_dir + 256];
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            snprintf(p, sizeof p, "%s/%s", sticky_dir, e->d_name);
            if (unlink(p) != 0)
                rmdir(p);
        }
        closedir(d);
    }
    rmdir(sticky_dir);
    sticky_dir[0] = '\0';
}

static const char *sticky_path(char *buf, size_t cap, const char *name)
{
    if (!sticky_dir[0]) {
        snprintf(sticky_dir, sizeof sticky_dir, "/tmp/ioplex-priv.XXXXXX");
        assert_non_null(mkdtemp(sticky_dir));
        assert_int_equal(chmod(sticky_dir, 01777), 0);
        atexit(remove_sticky_dir);
    }
    snprintf(buf, cap, "%s/%s", sticky_dir, name);
    return buf;
}

static void expect_file(const char *path, unsigned mode, uid_t uid, gid_t gid)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        fail_msg("%s: %s", path, strerror(errno));
    if (!S_ISSOCK(st.st_mode) || (st.st_mode & 07777) != mode || st.st_uid != uid ||
        st.st_gid != gid)
        fail_msg("%s: mode %o owner %ld:%ld, want a socket, mode %o, owner %ld:%ld", path,
                 (unsigned)st.st_mode, (long)st.st_uid, (long)st.st_gid, mode, (long)uid,
                 (long)gid);
}

static void expect_gone(const char *path)
{
    struct stat st;
    if (lstat(path, &st) == 0)
        fail_msg("%s is still there after the server stopped", path);
    assert_int_equal(errno, ENOENT);
}

static void test_mode(void **state)
{
    (void)state;
    /* The test's own umask would make 0644 of a 0666 request: the mode is
     * exact whatever the umask. */
    mode_t old = umask(022);
    char path[256];
    static const struct {
        const char *mode;
        unsigned want;
        int dgram;
    } cases[] = {
        {"0600", 0600, 0}, {"0666", 0666, 0}, {"660", 0660, 0}, {"0640", 0640, 1},
        {"1660", 01660, 0}, /* no umask makes a sticky bit: the chmod after bind does */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_non_null(harness_tmp_path(path, sizeof path, "mode"));
        struct server s;
        int r = cases[i].dgram
                    ? server_startl(&s, "-m", "iterative", "-u", "--mode", cases[i].mode,
                                    "-U", path, NULL)
                    : server_startl(&s, "--mode", cases[i].mode, "-U", path, NULL);
        assert_int_equal(r, 0);
        expect_file(path, cases[i].want, geteuid(), getegid());
        if (!cases[i].dgram)
            expect_ack(&s, "through a moded socket");
        assert_int_equal(server_stop(&s, 0), 0);
        expect_gone(path);
    }
    umask(old);
}

static void test_bad_mode(void **state)
{
    (void)state;
    char path[256];
    assert_non_null(harness_tmp_path(path, sizeof path, "badmode"));
    static const char *const bad[] = {"rw", "0800", "10000", "0", "", "-1", "0o660"};
    struct tool_result r;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tool_run(&r, (const char *const[]){"serve", "--mode", bad[i], "-U", path, NULL},
                 CMD_TIMEOUT_MS);
        char what[64];
        snprintf(what, sizeof what, "serve --mode '%s'", bad[i]);
        tool_expect_error(what, &r, 2, "ioplex serve: ", "--mode", NULL);
    }
    tool_run(&r, (const char *const[]){"serve", "--mode", "0600", "127.0.0.1", "0", NULL},
             CMD_TIMEOUT_MS);
    tool_expect_error("serve --mode 0600 <tcp>", &r, 2, "ioplex serve: ", "--mode", "Unix", NULL);
    tool_run(&r, (const char *const[]){"serve", "-u", "--mode", "0600", "127.0.0.1", "0",
                                         NULL}, CMD_TIMEOUT_MS);
    tool_expect_error("serve -u --mode 0600 <udp>", &r, 2, "ioplex serve: ", "--mode", "Unix",
                      NULL);
    struct stat st;
    assert_int_not_equal(lstat(path, &st), 0);
}

/* With --user, the socket file is the user's (so the server removes it at
 * exit, after the drop, even from a sticky directory), with the mode asked. */
static void unix_user(const char *model)
{
    struct who nobody;
    lookup("nobody", &nobody);
    char path[256], name[32];
    snprintf(name, sizeof name, "%s.sock", model);
    sticky_path(path, sizeof path, name);
    struct server s;
    assert_int_equal(server_startl(&s, "-m", model, "--user", "nobody", "--mode", "0660",
                                   "-U", path, NULL), 0);
    check_creds(&s, s.pid, &nobody, model);
    expect_file(path, 0660, nobody.uid, nobody.gid);
    expect_ack(&s, "over a socket file owned by nobody");
    int status = server_stop(&s, 0);
    if (status != 0) {
        server_dump(&s);
        fail_msg("-m %s -U: SIGTERM: exit %d, want 0", model, status);
    }
    expect_gone(path);
}

static void test_unix_user(void **state)
{
    (void)state;
    NEED_ROOT();
    unix_user("epoll");
    unix_user("fork");
}

/* --user with the socket in a directory only root may write to: the server
 * cannot remove the file at exit, and says so in one line (exit 0 still);
 * the next start replaces the stale file. */
static void test_unix_user_unremovable(void **state)
{
    (void)state;
    NEED_ROOT();
    char dir[256], path[300];
    assert_non_null(harness_tmp_path(dir, sizeof dir, "rootdir"));
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(chmod(dir, 0755), 0); /* whatever the umask */
    snprintf(path, sizeof path, "%s/ack.sock", dir);
    struct server s;
    for (int round = 0; round < 2; round++) {
        assert_int_equal(server_startl(&s, "--user", "nobody", "-U", path, NULL), 0);
        expect_ack(&s, "in root's directory");
        assert_int_equal(server_stop(&s, 0), 0);
        if (server_stderr_count(&s, "cannot remove the socket file") != 1 ||
            server_stderr_count(&s, path) < 1 ||
            server_stderr_count(&s, "that user may write to") != 1) {
            server_dump(&s);
            fail_msg("--user nobody -U <root's directory>: want one line saying the "
                     "socket file could not be removed");
        }
        struct stat st;
        assert_int_equal(lstat(path, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
    }
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

/* A socket file left by a dead server is replaced, and given the mode and
 * owner asked, as a new one would be. */
static void test_stale_replaced_with_mode_and_owner(void **state)
{
    (void)state;
    NEED_ROOT();
    struct who nobody;
    lookup("nobody", &nobody);
    char path[256];
    sticky_path(path, sizeof path, "stale.sock");
    struct server s;
    assert_int_equal(server_startl(&s, "-U", path, NULL), 0);
    server_kill(&s);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));

    assert_int_equal(server_startl(&s, "--user", "nobody", "--mode", "0600", "-U", path,
                                   NULL), 0);
    expect_file(path, 0600, nobody.uid, nobody.gid);
    expect_ack(&s, "second life");
    assert_int_equal(server_stop(&s, 0), 0);
    expect_gone(path);
}

/* What is not a socket is never removed: a directory, or a symlink (even
 * to a stale socket: neither the link nor its target goes). */
static void test_not_a_socket_kept(void **state)
{
    (void)state;
    char dir[256], link[256], target[256];
    assert_non_null(harness_tmp_path(dir, sizeof dir, "dir"));
    assert_int_equal(mkdir(dir, 0700), 0);
    struct tool_result r;
    tool_run(&r, (const char *const[]){"serve", "-U", dir, NULL}, CMD_TIMEOUT_MS);
    tool_expect_error("serve -U <a directory>", &r, 6, "ioplex serve: ", dir, NULL);
    tool_run(&r, (const char *const[]){"serve", "-m", "iterative", "-u", "--mode", "0600",
                                         "-U", dir, NULL}, CMD_TIMEOUT_MS);
    tool_expect_error("serve -u --mode -U <a directory>", &r, 6, "ioplex serve: ", dir, NULL);
    struct stat st;
    assert_int_equal(lstat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(rmdir(dir), 0);

    /* A stale socket, and a symlink to it. */
    assert_non_null(harness_tmp_path(target, sizeof target, "target"));
    assert_non_null(harness_tmp_path(link, sizeof link, "link"));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    assert_true(strlen(target) < sizeof un.sun_path);
    memcpy(un.sun_path, target, strlen(target) + 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&un, sizeof un), 0);
    close(fd);
    assert_int_equal(symlink(target, link), 0);
    tool_run(&r, (const char *const[]){"serve", "--mode", "0666", "-U", link, NULL},
             CMD_TIMEOUT_MS);
    tool_expect_error("serve -U <a symlink to a stale socket>", &r, 6, "ioplex serve: ", link,
                      NULL);
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(lstat(target, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    unlink(link);
    unlink(target);
}

/* ---- help -------------------------------------------------------------------- */

static void test_help_documents_flags(void **state)
{
    (void)state;
    struct tool_result r;
    tool_run(&r, (const char *const[]){"serve", "-h", NULL}, CMD_TIMEOUT_MS);
    assert_int_equal(r.code, 0);
    static const char *const flags[] = {"--user NAME", "--allow-root", "--mode OCTAL"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (!strstr(r.out, flags[i]))
            fail_msg("ioplex serve -h does not document %s:\n%s", flags[i], r.out);
}

int main(void)
{
    struct CMUnitTest tests[32];
    size_t n = 0;
    char names[sizeof model_cases / sizeof model_cases[0]][48];
    for (size_t i = 0; i < sizeof model_cases / sizeof model_cases[0]; i++) {
        snprintf(names[i], sizeof names[i], "user_on_low_port.%s", model_cases[i].model);
        tests[n++] = (struct CMUnitTest){names[i], user_on_low_port, NULL,
                                         harness_teardown, (void *)&model_cases[i]};
    }
    const struct CMUnitTest more[] = {
        cmocka_unit_test_teardown(test_root_refused_unless_allowed, harness_teardown),
        cmocka_unit_test_teardown(test_group_root_refused_unless_allowed, harness_teardown),
        cmocka_unit_test_teardown(test_unknown_user, harness_teardown),
        cmocka_unit_test_teardown(test_user_needs_root, harness_teardown),
        cmocka_unit_test_teardown(test_mode, harness_teardown),
        cmocka_unit_test_teardown(test_bad_mode, harness_teardown),
        cmocka_unit_test_teardown(test_unix_user, harness_teardown),
        cmocka_unit_test_teardown(test_unix_user_unremovable, harness_teardown),
        cmocka_unit_test_teardown(test_stale_replaced_with_mode_and_owner, harness_teardown),
        cmocka_unit_test_teardown(test_not_a_socket_kept, harness_teardown),
        cmocka_unit_test_teardown(test_help_documents_flags, harness_teardown),
    };
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
        tests[n++] = more[i];
    return _cmocka_run_group_tests("test_privilege", tests, n, NULL, NULL);
}
