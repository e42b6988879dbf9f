/* Run-time registration of a model test's cases (harness_cases.h). */
#include "harness_cases.h"
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>

const char *harness_model_checked(int argc, char **argv, int *datagram)
{
    const char *model = harness_model(argc, argv);
    int dgram = model_serves_datagrams(model);
    if (dgram < 0) {
        fprintf(stderr, "%s: no model '%s' in this build\n", argv[0], model);
        exit(1);
    }
    if (datagram)
        *datagram = dgram;
    return model;
}

void harness_add_case(struct harness_cases *l, const char *variant, const char *name,
                      CMUnitTestFunction fn, void *state)
{
    if (l->n == HARNESS_MAX_CASES) {
        fprintf(stderr, "more than %d test cases\n", HARNESS_MAX_CASES);
        exit(1);
    }
    snprintf(l->names[l->n], sizeof l->names[l->n], "%s.%s", variant, name);
    l->tests[l->n] = (struct CMUnitTest){
        .name = l->names[l->n],
        .test_func = fn,
        .teardown_func = harness_teardown,
        .initial_state = state,
    };
    l->n++;
}

int harness_run_cases(struct harness_cases *l, const char *file, const char *model)
{
    char group[128];
    snprintf(group, sizeof group, "%s.%s", file, model);
    return _cmocka_run_group_tests(group, l->tests, l->n, NULL, harness_teardown);
}
