/* cmd_tokenize.c: (to be written) */
