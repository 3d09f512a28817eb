/* cmd_score.c: (to be written) */
