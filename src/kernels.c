/* kernels.c: (to be written) */
