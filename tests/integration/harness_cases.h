/*
 * A model_*.c test registers its cases at run time (which cases apply
 * depends on the model and the transports this machine has), each named
 * "<variant>.<case>" and run with harness_teardown(), in a group named
 * "<file>.<model>".
 */
#ifndef IOPLEX_TEST_HARNESS_CASES_H
#define IOPLEX_TEST_HARNESS_CASES_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define HARNESS_MAX_CASES 64

struct harness_cases {
    struct CMUnitTest tests[HARNESS_MAX_CASES];
    char names[HARNESS_MAX_CASES][64];
    size_t n;
};

/* The model named on the command line (argv[1]), checked to be compiled
 * into this build; exits 2 without one and 1 if there is no such model.
 * *datagram (may be NULL) says whether it serves datagram transports. */
const char *harness_model_checked(int argc, char **argv, int *datagram);

/* Add the case "<variant>.<name>"; state is the test's initial *state.
 * Exits 1 past HARNESS_MAX_CASES (a test file's own mistake). */
void harness_add_case(struct harness_cases *l, const char *variant, const char *name,
                      CMUnitTestFunction fn, void *state);

/* Run them as the group "<file>.<model>"; returns the failure count. */
int harness_run_cases(struct harness_cases *l, const char *file, const char *model);

#endif
