/* What the tool's subcommands share: exit codes and error reporting. */
#ifndef IOPLEX_CLI_H
#define IOPLEX_CLI_H

#include "ioplex.h"
#include "parse.h"

/* Exit codes, the same for every subcommand (listed in --help). */
enum {
    EXIT_OK = 0,
    EXIT_ERROR = 1,   /* a network or system error not listed below */
    EXIT_USAGE = 2,   /* bad flags or arguments; model/service/transport misfit */
    EXIT_RESOLVE = 3, /* a host or service name does not resolve */
    EXIT_REFUSED = 4, /* connection refused, or no server at the Unix path */
    EXIT_TIMEOUT = 5, /* connect or idle timeout (-w) */
    EXIT_BIND = 6,    /* cannot bind: address in use, not permitted, no such directory */
    EXIT_TLS = 7,     /* TLS handshake or certificate verification failed */
};

#define EXIT_CODES_HELP \
    "Exit codes: 0 success, 1 network or system error, 2 usage error,\n" \
    "  3 name does not resolve, 4 connection refused, 5 timed out,\n" \
    "  6 cannot bind (address in use, not permitted, or no such directory),\n" \
    "  7 TLS handshake or certificate verification failed.\n"

/* Print "ioplex <cmd>: <message>" on stderr. */
void cli_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The message of the last cli_error() (without "ioplex <cmd>: "), for a
 * command that also reports it as JSON (bench --json); "" if none. */
const char *cli_last_error(void);
/* The exit code for a library error. */
int cli_exit_code(int err);

/* Fill an address from the positional arguments: "[HOST] PORT" or one
 * ADDRESS (scheme://..., host:port, /path), or -U PATH. Returns 0 or an
 * error already reported. */
int cli_parse_address(const char *cmd, struct iop_addr *a, enum iop_transport t,
                      int family, const char *unix_path, int argc, char **argv,
                      int server);
/* Report a getopt failure (c is what getopt_long returned, with a ':'
 * leading the option string) as one line. */
void cli_option_error(const char *cmd, int c, char **argv);

int cmd_serve(int argc, char **argv);
int cmd_connect(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_report(int argc, char **argv);

#endif
