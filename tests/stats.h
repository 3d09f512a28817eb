/* stats.h: the statistics of the distribution tests.
 *
 * Pearson's chi-square goodness of fit: with counts c_i of N draws and expected probabilities
 * p_i, X^2 = sum_i (c_i - N p_i)^2 / (N p_i) is approximately chi-square with (cells - 1) degrees
 * of freedom when the draws follow p. Cells whose expected count N p_i is below min_expected are
 * pooled into one cell (and that cell too if it stays small), the usual rule for the
 * approximation to hold. The p-value is Q(dof/2, X^2/2), the regularised upper incomplete gamma. */
#ifndef LLAMIX_STATS_H
#define LLAMIX_STATS_H

/* P(chi-square with dof degrees of freedom >= x). */
double chi_square_sf(double x, int dof);

/* Test counts (n cells, total = sum of counts) against probabilities probs (n, summing to 1).
 * Returns the p-value; *stat and *dof (may be NULL) get X^2 and the degrees of freedom.
 * A draw in a cell of probability 0 makes the p-value 0. */
double chi_square_test(const long *counts, const double *probs, int n, double min_expected,
                       double *stat, int *dof);

/* Two-sided p-value of k successes in n Bernoulli(p) trials (normal approximation, fine for
 * n p (1 - p) >= 25). */
double binomial_test(long k, long n, double p);

#endif
