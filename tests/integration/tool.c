/* Running the ioplex tool as a command (tool.h). */
#include "tool.h"
#include "harness.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

void tool_run(struct tool_result *r, const char *const args[], int timeout_ms)
{
    tool_run_under(r, NULL, args, timeout_ms);
}

void tool_run_under(struct tool_result *r, const char *const wrapper[],
                    const char *const args[], int timeout_ms)
{
    const char *argv[64];
    size_t n = 0;
    for (size_t i = 0; wrapper && wrapper[i]; i++) {
        assert_true(n < sizeof argv / sizeof argv[0] - 2);
        argv[n++] = wrapper[i];
    }
    argv[n++] = ioplex_bin();
    for (size_t i = 0; args[i]; i++) {
        assert_true(n < sizeof argv / sizeof argv[0] - 1);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    memset(r, 0, sizeof *r);
    long long t0 = now_ms();
    r->code = run_cmd(argv, NULL, 0, r->out, sizeof r->out, NULL, r->err, sizeof r->err,
                      timeout_ms);
    r->ms = now_ms() - t0;
}

void tool_show(const char *what, const struct tool_result *r)
{
    fprintf(stderr, "--- %s: exit %d after %lld ms\n--- stdout:\n%s--- stderr:\n%s---\n",
            what, r->code, r->ms, r->out, r->err);
}

int count_lines(const char *s)
{
    int n = 0;
    for (const char *p = s; *p; p++)
        n += *p == '\n';
    return n + (*s && s[strlen(s) - 1] != '\n');
}

void tool_expect_error(const char *what, const struct tool_result *r, int code,
                       const char *prefix, ...)
{
    int ok = r->code == code && count_lines(r->err) == 1 &&
             strncmp(r->err, prefix, strlen(prefix)) == 0;
    va_list ap;
    va_start(ap, prefix);
    const char *needle;
    while ((needle = va_arg(ap, const char *)) != NULL)
        if (!strstr(r->err, needle)) {
            fprintf(stderr, "--- %s: stderr does not name '%s'\n", what, needle);
            ok = 0;
        }
    va_end(ap);
    if (!ok) {
        tool_show(what, r);
        fail_msg("%s: expected exit %d and one stderr line starting '%s'", what, code,
                 prefix);
    }
}

void tool_runl(struct tool_result *r, int timeout_ms, ...)
{
    const char *args[48];
    size_t n = 0;
    va_list ap;
    va_start(ap, timeout_ms);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        assert_true(n < sizeof args / sizeof args[0] - 1);
        args[n++] = a;
    }
    va_end(ap);
    args[n] = NULL;
    tool_run(r, args, timeout_ms);
    if (r->code < 0) {
        tool_show("killed at the timeout", r);
        fail_msg("ioplex %s did not end within %d ms", args[0] ? args[0] : "", timeout_ms);
    }
}

double tool_json_number(const char *json, const char *key)
{
    char needle[64];
    snprintf(needle, sizeof needle, "\"%s\":", key);
    const char *p = json ? strstr(json, needle) : NULL;
    return p ? strtod(p + strlen(needle), NULL) : NAN;
}
