/* stats.c: medians, median absolute deviations, extremes (see stats.h). */
#include "stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double stats_median(const double *x, int n)
{
    double sorted[64];
    double *s = n <= 64 ? sorted : malloc(sizeof(double) * (size_t)n);
    if (!s)
        return NAN;
    memcpy(s, x, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), compare_doubles);
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    if (s != sorted)
        free(s);
    return m;
}

double stats_mad(const double *x, int n)
{
    double m = stats_median(x, n), dev[64];
    double *d = n <= 64 ? dev : malloc(sizeof(double) * (size_t)n);
    if (!d)
        return NAN;
    for (int i = 0; i < n; i++)
        d[i] = fabs(x[i] - m);
    double r = stats_median(d, n);
    if (d != dev)
        free(d);
    return r;
}

double stats_min(const double *x, int n)
{
    double m = x[0];
    for (int i = 1; i < n; i++)
        m = x[i] < m ? x[i] : m;
    return m;
}

double stats_max(const double *x, int n)
{
    double m = x[0];
    for (int i = 1; i < n; i++)
        m = x[i] > m ? x[i] : m;
    return m;
}
