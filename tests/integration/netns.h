/*
 * Network namespaces for the tests that need more than one host
 * (test_netns, test_multihost): running ip/nft/tc, creating and entering
 * namespaces, deleting those a killed run left, and client processes
 * started inside a namespace. Needs root; netns_add() says when the
 * machine does not allow namespaces, so that the test can skip.
 */
#ifndef IOPLEX_TEST_NETNS_H
#define IOPLEX_TEST_NETNS_H

#include <stddef.h>
#include <sys/types.h>

/* ip, nft and tc live in /usr/sbin or /sbin, which a test's PATH may lack:
 * their full path (any other name is returned as it is). */
const char *netns_tool(const char *name);

/* Run a NULL-terminated command (its first word a tool name), stdin `in`
 * (may be NULL); its stdout in out (may be NULL), its stderr in err.
 * Returns the exit code, -1 if killed at the timeout or not run. */
int netns_cmd(const char *in, char *out, size_t outcap, char *err, size_t errcap, ...);

/* A command that must succeed: fail the test with its stderr if not. */
#define NETNS_MUST(...)                                                        \
    do {                                                                       \
        char e_[2048];                                                         \
        int c_ = netns_cmd(NULL, NULL, 0, e_, sizeof e_, __VA_ARGS__, NULL);   \
        if (c_ != 0)                                                           \
            fail_msg("`%s` failed (%d): %s", #__VA_ARGS__, c_, e_);            \
    } while (0)

/* Delete namespaces named PREFIX<letter><pid> whose PID is gone (a run
 * killed before its teardown). */
void netns_delete_stale(const char *prefix);

/* `ip netns add name`. 0; 1 if namespaces cannot be created here (not
 * root, not permitted: the reason in skip); fails the test otherwise. */
int netns_add(const char *name, char *skip, size_t skiplen);

/* Enter a namespace by name (this thread only). 0 or -1. */
int netns_enter(const char *name);

/* A process started in a namespace. */
struct netns_job {
    pid_t pid;
    char what[64];
    char out_path[256], err_path[256];
    long long t0, ms;
    int status; /* exit code, 128+N for signal N, -1 killed at the deadline */
    int done;
};

/* Start argv (argv[0] an absolute path) in namespace ns: stdin from
 * in_path (NULL: /dev/null), stdout and stderr to files in the test's
 * directory, its own process group, killed if this process dies. */
struct netns_job *netns_spawn(const char *ns, const char *what, const char *in_path,
                              const char *const argv[]);
/* Wait for every job, up to the deadline (now_ms()); kill what is left. */
void netns_wait_jobs(long long deadline);
/* Kill every job still running. */
void netns_kill_jobs(void);

/* A whole file into a malloc'ed buffer (NUL-terminated); NULL if unreadable. */
char *netns_slurp(const char *path, size_t *len);

#endif
