/*
 * --mode and a writer of the socket's directory who swaps the socket file
 * for a symlink while the server sets its mode (audit finding 2). The race
 * is made deterministic by an LD_PRELOAD interposer (preload/race_sockfile.c)
 * that swaps in a symlink to a 0600 target file right after the server
 * first looks at or opens the socket's path, and makes
 * fchmodat(AT_SYMLINK_NOFOLLOW) fail as glibc 2.36 does without /proc.
 * Whatever the server does: the target keeps its mode.
 *
 *   swap_mode        --mode 0666: the target stays 0600; the server serves
 *   swap_sticky      --mode 1666 (a bit umask cannot give, so the mode is
 *                    changed after bind): the target stays 0600, and the
 *                    socket itself, renamed aside by the swap, has 1666
 *   swap_no_proc     the same where /proc/self/fd is missing: the server
 *                    refuses to start, in one line, and the target stays
 *   unixgram         swap_mode on a Unix datagram socket
 *
 * Needs no privilege: as any user the server could otherwise chmod that
 * user's own file; CI runs it as root, where the target is root's.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "tool.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define CMD_TIMEOUT_MS 10000

struct race {
    char path[256], aside[272], target[256];
};

/* A 0600 file to aim the symlink at, and the interposer armed for path. */
static void arm(struct race *r, const char *stem)
{
    assert_non_null(harness_tmp_path(r->path, sizeof r->path, stem));
    snprintf(r->aside, sizeof r->aside, "%s.real", r->path);
    assert_non_null(harness_tmp_path(r->target, sizeof r->target, "target"));
    int fd = open(r->target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, 0600), 0); /* whatever the umask */
    close(fd);
    setenv("LD_PRELOAD", IOPLEX_RACE_PRELOAD, 1);
    setenv("IOPLEX_RACE_PATH", r->path, 1);
    setenv("IOPLEX_RACE_TARGET", r->target, 1);
    /* An ASan build wants its runtime first; the interposer is not. */
    setenv("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1:verify_asan_link_order=0", 1);
}

static void disarm(void)
{
    unsetenv("LD_PRELOAD");
    unsetenv("IOPLEX_RACE_PATH");
    unsetenv("IOPLEX_RACE_TARGET");
    unsetenv("IOPLEX_RACE_NOPROC");
}

static unsigned mode_of(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        fail_msg("lstat %s: %s", path, strerror(errno));
    return (unsigned)st.st_mode & 07777;
}

static void expect_target_kept(const struct race *r)
{
    unsigned m = mode_of(r->target);
    if (m != 0600)
        fail_msg("the server changed the mode of %s (a symlink's target) to %04o; "
                 "it was 0600", r->target, m);
}

static void cleanup(const struct race *r)
{
    unlink(r->path);
    unlink(r->aside);
    unlink(r->target);
}

static int teardown(void **state)
{
    disarm();
    return harness_teardown(state);
}

static void swap_and_serve(const char *mode, unsigned want, int dgram)
{
    struct race r;
    arm(&r, dgram ? "racegram" : "race");
    struct server s;
    int st = dgram ? server_startl(&s, "-m", "iterative", "-u", "--mode", mode, "-U", r.path, NULL)
                   : server_startl(&s, "--mode", mode, "-U", r.path, NULL);
    disarm();
    if (st != 0)
        fail_msg("the server did not start");
    /* The interposer did swap: the path is now the symlink. */
    struct stat sb;
    CHECK(&s, lstat(r.path, &sb) == 0 && S_ISLNK(sb.st_mode));
    expect_target_kept(&r);
    /* The mode went to the socket itself (renamed aside by the swap). */
    CHECK(&s, lstat(r.aside, &sb) == 0 && S_ISSOCK(sb.st_mode));
    if ((sb.st_mode & 07777) != want) {
        server_dump(&s);
        fail_msg("the socket has mode %04o, want %04o", (unsigned)sb.st_mode & 07777, want);
    }
    server_stop_clean(&s);
    expect_target_kept(&r);
    cleanup(&r);
}

static void swap_mode(void **state)
{
    (void)state;
    swap_and_serve("0666", 0666, 0);
}

static void swap_sticky(void **state)
{
    (void)state;
    swap_and_serve("1666", 01666, 0);
}

static void unixgram(void **state)
{
    (void)state;
    swap_and_serve("0666", 0666, 1);
}

static void swap_no_proc(void **state)
{
    (void)state;
    struct race r;
    arm(&r, "noproc");
    setenv("IOPLEX_RACE_NOPROC", "1", 1);
    struct tool_result t;
    tool_run(&t, (const char *const[]){"serve", "--mode", "1666", "-U", r.path, NULL},
             CMD_TIMEOUT_MS);
    disarm();
    expect_target_kept(&r);
    tool_expect_error("serve --mode 1666 without /proc", &t, 6, "ioplex serve: ", r.path,
                      "/proc", NULL);
    cleanup(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(swap_mode, teardown),
        cmocka_unit_test_teardown(swap_sticky, teardown),
        cmocka_unit_test_teardown(swap_no_proc, teardown),
        cmocka_unit_test_teardown(unixgram, teardown),
    };
    return cmocka_run_group_tests_name("test_sockfile_race", tests, NULL, NULL);
}
