/* stats.h: the small statistics of the bench: medians, median absolute deviations, extremes.
 * Every function takes n >= 1 values and leaves them unmodified. */
#ifndef LLAMIX_BENCH_STATS_H
#define LLAMIX_BENCH_STATS_H

double stats_median(const double *x, int n);
/* Median absolute deviation: the spread that one outlier cannot inflate. */
double stats_mad(const double *x, int n);
double stats_min(const double *x, int n);
double stats_max(const double *x, int n);

#endif
