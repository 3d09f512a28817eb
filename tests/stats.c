/* stats.c: chi-square and binomial p-values for the distribution tests (see stats.h). */
#include <math.h>
#include <stdlib.h>

#include "stats.h"

/* Regularised lower incomplete gamma P(a, x) by its series, for x < a + 1. */
static double gamma_p_series(double a, double x)
{
    double term = 1.0 / a, sum = term;
    for (int n = 1; n < 10000; n++) {
        term *= x / (a + n);
        sum += term;
        if (fabs(term) < fabs(sum) * 1e-15)
            break;
    }
    return sum * exp(-x + a * log(x) - lgamma(a));
}

/* Regularised upper incomplete gamma Q(a, x) by its continued fraction (Lentz), for x >= a + 1. */
static double gamma_q_fraction(double a, double x)
{
    const double tiny = 1e-300;
    double b = x + 1.0 - a, c = 1.0 / tiny, d = 1.0 / b, h = d;
    for (int i = 1; i < 10000; i++) {
        double an = -i * (i - a);
        b += 2.0;
        d = an * d + b;
        if (fabs(d) < tiny)
            d = tiny;
        c = b + an / c;
        if (fabs(c) < tiny)
            c = tiny;
        d = 1.0 / d;
        double delta = d * c;
        h *= delta;
        if (fabs(delta - 1.0) < 1e-15)
            break;
    }
    return exp(-x + a * log(x) - lgamma(a)) * h;
}

double chi_square_sf(double x, int dof)
{
    if (dof <= 0)
        return 1.0;
    if (x <= 0)
        return 1.0;
    double a = 0.5 * dof, h = 0.5 * x;
    return h < a + 1.0 ? 1.0 - gamma_p_series(a, h) : gamma_q_fraction(a, h);
}

double chi_square_test(const long *counts, const double *probs, int n, double min_expected,
                       double *stat_out, int *dof_out)
{
    long total = 0;
    for (int i = 0; i < n; i++)
        total += counts[i];
    double stat = 0.0, pooled_expected = 0.0;
    long pooled_count = 0;
    int cells = 0, impossible = 0;
    for (int i = 0; i < n; i++) {
        double expected = probs[i] * (double)total;
        if (probs[i] <= 0.0) {
            if (counts[i] > 0)
                impossible = 1;
            continue;
        }
        if (expected < min_expected) {
            pooled_expected += expected;
            pooled_count += counts[i];
            continue;
        }
        double d = (double)counts[i] - expected;
        stat += d * d / expected;
        cells++;
    }
    if (pooled_expected >= min_expected || (pooled_expected > 0 && cells == 0)) {
        double d = (double)pooled_count - pooled_expected;
        stat += d * d / pooled_expected;
        cells++;
    } else if (pooled_expected > 0) {
        /* Too small to stand alone: the leftover mass is folded into the statistic as one cell
         * only if it was hit far more than expected; otherwise dropped (conservative). */
        if (pooled_count > 0 && pooled_count > 10.0 * pooled_expected + 10.0)
            impossible = 1;
    }
    int dof = cells - 1;
    if (stat_out)
        *stat_out = stat;
    if (dof_out)
        *dof_out = dof;
    if (impossible)
        return 0.0;
    return chi_square_sf(stat, dof);
}

double binomial_test(long k, long n, double p)
{
    double mean = (double)n * p, sd = sqrt((double)n * p * (1.0 - p));
    double z = fabs((double)k - mean) / sd;
    return erfc(z / sqrt(2.0));
}
