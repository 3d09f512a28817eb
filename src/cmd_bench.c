/* cmd_bench.c: (to be written) */
#include "cli.h"
int cmd_bench(int argc, char **argv) { (void)argc; (void)argv; cli_error("bench: not written yet"); return EXIT_RUNTIME; }
