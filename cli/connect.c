/* ioplex connect: placeholder until the client lands. */
#include "cli.h"
int cmd_connect(int argc, char **argv) { (void)argc; (void)argv; return EXIT_ERROR; }
