/* score_report.h: what `llamix score` prints: progress on stderr while members run, and the
 * report (a table, or JSON) on stdout. */
#ifndef LLAMIX_SCORE_REPORT_H
#define LLAMIX_SCORE_REPORT_H

#include <stdio.h>
#include <llamix.h>

typedef struct {
    int quiet;
    int tty;          /* stderr is a terminal: one line rewritten in place */
    int member, k;    /* which member is running (0-based), of k */
    double start;     /* when this member started */
    int last_decile;  /* not a terminal: the last 10% step printed */
    int printed;      /* something is on the current terminal line */
} Progress;

/* The LxScoreProgress callback (user: a Progress), and the end of its terminal line. */
void score_progress(void *user, int member, long done, long total, double nll_sum);
void score_progress_end(Progress *p);
/* Seconds on a monotonic clock. */
double score_seconds(void);

typedef struct {
    const char *text_path;
    int k;
    char *const *model_paths;
    const LxScore *score;
    const double *weights;  /* (k) normalised */
    const double *fitted;   /* (k) or NULL */
    const LxScoreFit *fit;
    const char *router_path;  /* --router or --fit-router's file, or NULL */
    double router_nll;        /* the routed NLL on this text */
    const LxRouterFit *router_fit; /* --fit-router: the fit, else NULL */
    double router_prior;
} Report;

void score_print_table(FILE *out, const Report *r);
void score_print_json(FILE *out, const Report *r);

#endif
