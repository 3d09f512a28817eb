/* cmd_init.c: (to be written) */
