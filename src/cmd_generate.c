/* cmd_generate.c: (to be written) */
