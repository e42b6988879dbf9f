/*
 * Running the ioplex tool as a command (not a server): its exit code,
 * what it printed, how long it took, and the check every error path of
 * the tool must pass (one clear line on stderr, a distinct exit code).
 */
#ifndef IOPLEX_TEST_TOOL_H
#define IOPLEX_TEST_TOOL_H

#define TOOL_OUT_CAP 65536

struct tool_result {
    int code;       /* as run_cmd(): exit code, 128+N for signal N, -1 if killed at the timeout */
    long long ms;   /* how long it ran */
    char out[TOOL_OUT_CAP];
    char err[TOOL_OUT_CAP];
};

/* Run `ioplex ARGS...` (NULL-terminated) with stdin closed; killed after
 * timeout_ms. */
void tool_run(struct tool_result *r, const char *const args[], int timeout_ms);

/* The same under a wrapper command (NULL-terminated, e.g. "prlimit",
 * "--nofile=64:64", "--"), which execs the tool after its own words. */
void tool_run_under(struct tool_result *r, const char *const wrapper[],
                    const char *const args[], int timeout_ms);

/* The same with the arguments listed inline, NULL-terminated; the test
 * fails if the command had to be killed at the timeout. */
void tool_runl(struct tool_result *r, int timeout_ms, ...);

/* The first number after "key": in a JSON text (the tool's --json
 * output); NAN if there is none, or no text. */
double tool_json_number(const char *json, const char *key);

/* Print what it did on stderr, headed by `what`. */
void tool_show(const char *what, const struct tool_result *r);

/* Lines in s, a last one without its newline included. */
int count_lines(const char *s);

/* The command exited with `code`, and stderr is exactly one line that
 * starts with `prefix` and names each of the NULL-terminated needles;
 * otherwise show it and fail the test. */
void tool_expect_error(const char *what, const struct tool_result *r, int code,
                       const char *prefix, ...);

#endif
