/* ioplex: serve, connect, bench, compare, report. */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ioplex COMMAND [options] ...\n"
            "\n"
            "Commands:\n"
            "  serve    serve a built-in service under a chosen model\n"
            "  connect  connect to a server, like netcat\n"
            "  bench    load a server and measure it (any server, not only ioplex)\n"
            "  compare  run every model side by side and tabulate (and plot) them\n"
            "  report   merge the results of several bench runs (hosts) into one\n"
            "\n"
            "ioplex COMMAND --help describes each command.\n"
            "ioplex --version prints the version.\n\n" EXIT_CODES_HELP);
}

int main(int argc, char **argv)
{
    /* Write errors to a vanished peer or pipe come back as EPIPE. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "connect") == 0)
        return cmd_connect(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0)
        return cmd_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "compare") == 0)
        return cmd_compare(argc - 1, argv + 1);
    if (strcmp(cmd, "report") == 0)
        return cmd_report(argc - 1, argv + 1);
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("ioplex %s\n", IOPLEX_VERSION);
        return EXIT_OK;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    fprintf(stderr, "ioplex: unknown command '%s' (try ioplex --help)\n", cmd);
    return EXIT_USAGE;
}
