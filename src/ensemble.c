/* ensemble.c: (to be written) */
