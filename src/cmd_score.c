/* cmd_score.c: (to be written) */
#include "cli.h"
int cmd_score(int argc, char **argv) { (void)argc; (void)argv; cli_error("score: not written yet"); return EXIT_RUNTIME; }
