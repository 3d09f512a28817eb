/* report.h: the bench's two reports of one BenchReport: Markdown for people, JSON for tools
 * (bench/run-suite reads it by line: every result, ratio and limit is on a line of its own). */
#ifndef LLAMIX_BENCH_REPORT_H
#define LLAMIX_BENCH_REPORT_H

#include "harness.h"

#include <stdio.h>

void report_markdown(FILE *f, const BenchReport *R);
void report_json(FILE *f, const BenchReport *R);

#endif
