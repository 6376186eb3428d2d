/* report.c: evaluations as the commands print them.
 *
 * One evaluation (rt_eval) as an aligned table, as JSON members (the eval
 * command's object, a log line's "valid"), and every example's margins for
 * `eval --json --per-example`; radii are rounded toward zero when printed.
 * Also the durations and the clock of the progress lines.
 */
#include <math.h>
#include <stdio.h>
#include <time.h>

#include "train.h"

static const char *norm_key[RT_NNORMS] = { "l1", "l2", "linf" };
static const char *eps_title[RT_NNORMS] = { "eps_1", "eps_2", "eps_inf" };

/* (rounded toward zero: these are radii and their percentiles) */
void rt_json_num(FILE *f, double v)
{
	char buf[64];
	rt_format_down(buf, sizeof buf, v, 9);
	fputs(isfinite(v) ? buf : "null", f);
}

/* The members of an evaluation's JSON object, without the closing brace. */
void rt_eval_json_members(FILE *f, const rt_eval *e, int32_t norms)
{
	fprintf(f, "{\"n\":%lld,\"accuracy\":", (long long)e->n);
	rt_json_num(f, e->accuracy);
	fputs(",\"loss\":", f);
	rt_json_num(f, e->loss);
	fputs(",\"ce\":", f);
	rt_json_num(f, e->ce);
	for (int p = 0; p < RT_NNORMS; p++) {
		if (!(norms & RT_NORM_BIT(p)))
			continue;
		fprintf(f, ",\"eps_%s\":[", norm_key[p]);
		for (int k = 0; k < 4; k++) {
			if (k)
				fputc(',', f);
			rt_json_num(f, e->eps_pct[p][k]);
		}
		fputc(']', f);
	}
	fprintf(f, ",\"patterns\":%lld,\"jacobians\":%lld", (long long)e->patterns,
	        (long long)e->jacobians);
}

void rt_eval_json(FILE *f, const rt_eval *e, int32_t norms)
{
	rt_eval_json_members(f, e, norms);
	fputc('}', f);
}

/* eval --per-example: one more member of the evaluation's object,
 * "examples": {"correct": [1, 0, ...], "eps_l2": [...], ...}, in example
 * order (null for a margin no neuron bounds). */
void rt_examples_json(FILE *f, int64_t n, int32_t norms, const float *eps,
                          const unsigned char *correct)
{
	fputs(",\"examples\":{\"correct\":[", f);
	for (int64_t i = 0; i < n; i++)
		fprintf(f, "%s%d", i ? "," : "", correct[i]);
	fputc(']', f);
	for (int p = 0; p < RT_NNORMS; p++) {
		if (!(norms & RT_NORM_BIT(p)))
			continue;
		fprintf(f, ",\"eps_%s\":[", norm_key[p]);
		for (int64_t i = 0; i < n; i++) {
			if (i)
				fputc(',', f);
			rt_json_num(f, eps[(size_t)p * (size_t)n + (size_t)i]);
		}
		fputc(']', f);
	}
	fputc('}', f);
}

void rt_eval_table(FILE *f, const rt_eval *e, int32_t norms, const char *indent)
{
	fprintf(f, "%sexamples             %lld\n", indent, (long long)e->n);
	fprintf(f, "%saccuracy             %.2f%%\n", indent, 100 * e->accuracy);
	fprintf(f, "%sloss                 %.6g (cross-entropy %.6g)\n", indent, e->loss, e->ce);
	fprintf(f, "%sactivation patterns  %lld\n", indent, (long long)e->patterns);
	fprintf(f, "%slogit Jacobians      %lld\n", indent, (long long)e->jacobians);
	fprintf(f, "%s%-8s %12s %12s %12s %12s   (raw input units)\n", indent, "margin", "P25", "P50",
	        "P75", "P100");
	for (int p = 0; p < RT_NNORMS; p++) {
		if (!(norms & RT_NORM_BIT(p)))
			continue;
		fprintf(f, "%s%-8s", indent, eps_title[p]);
		for (int k = 0; k < 4; k++)
			fprintf(f, " %12.6g", e->eps_pct[p][k]);
		fputc('\n', f);
	}
}

void rt_format_duration(char *buf, size_t cap, double s)
{
	if (!(s >= 0) || s > 1e7)
		snprintf(buf, cap, "?");
	else if (s < 60)
		snprintf(buf, cap, "%ds", (int)(s + 0.5));
	else if (s < 3600)
		snprintf(buf, cap, "%dm%02ds", (int)s / 60, (int)s % 60);
	else
		snprintf(buf, cap, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

double rt_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
