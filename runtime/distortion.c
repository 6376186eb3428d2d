/* distortion.c: gradient distortion, the paper's robustness measure for
 * images (PAPER.md, "The paper's experiments", Caltech-256).
 *
 * For an example x with true label y and a radius eps, the distortion of a
 * point x' is ||grad f_y(x') - grad f_y(x)||_1, gradients in raw input units,
 * over the l_inf ball of radius eps around x clipped to the input range.
 * Two numbers per example:
 *   expected  the mean over `samples` uniform points of the clipped ball;
 *   maximum   the largest distortion found: among those uniform points and,
 *             with `generations` > 0, by a seeded genetic search.
 * The search (docs/robustness.md states it): a population of uniform points;
 * each generation keeps its best point and breeds the rest from parents
 * chosen by tournaments of two, by uniform crossover and by mutation that
 * redraws each coordinate with probability `mutation`.  Crossover and
 * mutation keep every coordinate inside its interval, so no candidate
 * leaves the ball.  The budget is population x generations evaluations.
 *
 * A gradient comes from the input_grad kernel: a forward pass and one
 * backward pass in double, with the activation pattern as computed (an
 * empirical measure, not a certificate).  Every example draws from its own
 * generators, seeded by the seed and its index, so results do not depend on
 * the thread count.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

typedef struct dist_job {
	const rt_model *m;
	const float *P;
	const rt_data *d;
	const rt_distortion_opts *o;
	int64_t begin, end;
	double *expected, *maximum;
	float *witness;
	int failed;
} dist_job;

/* Per-thread buffers for one gradient evaluation. */
typedef struct grad_buf {
	float *ws;
	double *g0, *g;      /* the example's own gradient, and a point's */
	float *cand, *next;  /* the search's population, and the next one */
	double *fit, *nfit;
	float *xp;           /* a uniform point */
} grad_buf;

/* ||grad f_y(x') - g0||_1. */
static double distortion_at(const dist_job *j, grad_buf *b, const float *x, int y)
{
	const int64_t D = j->m->n_in;
	j->m->input_grad(j->P, x, y, b->ws, b->g);
	double s = 0;
	for (int64_t i = 0; i < D; i++)
		s += fabs(b->g[i] - b->g0[i]);
	return s;
}

/* The interval of coordinate i: [x - eps, x + eps] within [lo, hi]. */
static void interval(const rt_distortion_opts *o, double x, double *a, double *b)
{
	*a = x - o->eps;
	*b = x + o->eps;
	if (o->lo <= o->hi) {
		*a = fmax(*a, o->lo);
		*b = fmin(*b, o->hi);
		if (*a > *b)   /* x itself outside the range: the ball is its clipped point */
			*a = *b = fmin(fmax(x, o->lo), o->hi);
	}
}
static float draw(rt_rng *r, const rt_distortion_opts *o, double x)
{
	double a, b;
	interval(o, x, &a, &b);
	float v = (float)(a + (b - a) * rt_rng_uniform(r));
	/* rounding to float may step out of the interval */
	if (v < a)
		v = nextafterf(v, INFINITY);
	if (v > b)
		v = nextafterf(v, -INFINITY);
	return v;
}

/* A uniform point of the ball and its distortion. */
static double uniform_point(const dist_job *j, grad_buf *b, rt_rng *r, const double *x, int y, float *out)
{
	for (int64_t i = 0; i < j->m->n_in; i++)
		out[i] = draw(r, j->o, x[i]);
	return distortion_at(j, b, out, y);
}

static int tournament(rt_rng *r, const double *fit, int n)
{
	int a = (int)(rt_rng_uniform(r) * n), b = (int)(rt_rng_uniform(r) * n);
	return fit[b] > fit[a] ? b : a;
}

/* The search, from a population of fresh uniform points; updates *best and
 * the witness. */
static void search(const dist_job *j, grad_buf *b, rt_rng *r, const double *x, int y, double *best, float *wit)
{
	const rt_distortion_opts *o = j->o;
	const int64_t D = j->m->n_in;
	const int n = o->population;
	for (int p = 0; p < n; p++)
		b->fit[p] = uniform_point(j, b, r, x, y, b->cand + (int64_t)p * D);
	for (int gen = 0;; gen++) {
		int top = 0;
		for (int p = 0; p < n; p++) {
			if (b->fit[p] > b->fit[top])
				top = p;
			if (b->fit[p] > *best) {
				*best = b->fit[p];
				if (wit)
					memcpy(wit, b->cand + (int64_t)p * D, sizeof *wit * (size_t)D);
			}
		}
		if (gen == o->generations)
			break;
		/* the best point survives; the others are children */
		memcpy(b->next, b->cand + (int64_t)top * D, sizeof *b->next * (size_t)D);
		b->nfit[0] = b->fit[top];
		for (int p = 1; p < n; p++) {
			const float *pa = b->cand + (int64_t)tournament(r, b->fit, n) * D;
			const float *pb = b->cand + (int64_t)tournament(r, b->fit, n) * D;
			float *c = b->next + (int64_t)p * D;
			for (int64_t i = 0; i < D; i++) {
				c[i] = rt_rng_uniform(r) < 0.5 ? pa[i] : pb[i];
				if (rt_rng_uniform(r) < o->mutation)
					c[i] = draw(r, o, x[i]);
			}
			b->nfit[p] = distortion_at(j, b, c, y);
		}
		float *t = b->cand;
		b->cand = b->next;
		b->next = t;
		double *f = b->fit;
		b->fit = b->nfit;
		b->nfit = f;
	}
}

static void *dist_share(void *arg)
{
	dist_job *j = arg;
	const rt_model *m = j->m;
	const rt_distortion_opts *o = j->o;
	const int64_t D = m->n_in, pop = o->generations > 0 ? o->population : 0;
	grad_buf b = {
		.ws = rt_alloc_floats(m->ws_floats), .g0 = malloc(sizeof(double) * (size_t)D),
		.g = malloc(sizeof(double) * (size_t)D),
		.cand = rt_alloc_floats(pop * D + 1), .next = rt_alloc_floats(pop * D + 1),
		.fit = malloc(sizeof(double) * (size_t)(pop + 1)), .nfit = malloc(sizeof(double) * (size_t)(pop + 1)),
		.xp = rt_alloc_floats(D),
	};
	double *x = malloc(sizeof(double) * (size_t)D);
	if (!b.ws || !b.g0 || !b.g || !b.cand || !b.next || !b.fit || !b.nfit || !b.xp || !x) {
		j->failed = 1;
		goto done;
	}
	for (int64_t e = j->begin; e < j->end; e++) {
		const float *xe = j->d->x + e * D, *xlo = j->d->xlo ? j->d->xlo + e * D : NULL;
		/* (the ball is around x as given; its gradient is that of its float) */
		int y = j->d->y[e];
		float *wit = j->witness ? j->witness + e * D : NULL;
		for (int64_t i = 0; i < D; i++)
			x[i] = (double)xe[i] + (xlo ? (double)xlo[i] : 0);
		m->input_grad(j->P, xe, y, b.ws, b.g0);
		rt_rng r;
		rt_rng_seed(&r, o->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)e);
		double sum = 0, best = -1;
		for (int s = 0; s < o->samples; s++) {
			double v = uniform_point(j, &b, &r, x, y, b.xp);
			sum += v;
			if (v > best) {
				best = v;
				if (wit)
					memcpy(wit, b.xp, sizeof *wit * (size_t)D);
			}
		}
		if (pop > 0) {
			rt_rng rs;   /* its own stream: the uniform samples do not depend on the search */
			rt_rng_seed(&rs, o->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)e + 0x5851F42D4C957F2DULL);
			search(j, &b, &rs, x, y, &best, wit);
		}
		j->expected[e] = sum / o->samples;
		j->maximum[e] = best;
	}
done:
	free(b.ws), free(b.g0), free(b.g), free(b.cand), free(b.next);
	free(b.fit), free(b.nfit), free(b.xp), free(x);
	return NULL;
}

int rt_distortion(const rt_model *m, const float *P, const rt_data *d, const rt_distortion_opts *o,
                  double *expected, double *maximum, float *witness, char *err)
{
	if (!d->y)
		return rt_fail(err, "the distortion needs labels: it is the gradient of the true class's logit");
	if (!(o->eps >= 0) || o->samples < 1 || o->generations < 0 || (o->generations > 0 && o->population < 2) ||
	    !(o->mutation >= 0 && o->mutation <= 1))
		return rt_fail(err, "distortion: eps >= 0, samples >= 1, generations >= 0, population >= 2 and "
		                    "mutation in [0, 1] are required");
	for (int64_t e = 0; e < d->n; e++)
		if (d->y[e] < 0 || d->y[e] >= m->n_out)
			return rt_fail(err, "record %lld: label %d is not a class of the model (0..%d)",
			               (long long)e + 1, d->y[e], m->n_out - 1);
	int threads = o->threads > 0 ? o->threads : rt_ncpus();
	if (threads > d->n)
		threads = d->n > 0 ? (int)d->n : 1;
	dist_job *jobs = calloc((size_t)threads, sizeof *jobs);
	if (!jobs)
		return rt_fail(err, "out of memory");
	for (int t = 0; t < threads; t++)
		jobs[t] = (dist_job){ .m = m, .P = P, .d = d, .o = o,
		                      .begin = d->n * t / threads, .end = d->n * (t + 1) / threads,
		                      .expected = expected, .maximum = maximum, .witness = witness };
	rt_parallel(threads, dist_share, jobs, sizeof *jobs);
	int failed = 0;
	for (int t = 0; t < threads; t++)
		failed |= jobs[t].failed;
	free(jobs);
	return failed ? rt_fail(err, "out of memory") : 0;
}

/* ---- over a data set ---- */

int rt_distortion_summary(const rt_model *m, const float *P, const rt_data *d, const rt_distortion_opts *o,
                          rt_distortion_report *r, char *err)
{
	memset(r, 0, sizeof *r);
	size_t cnt = (size_t)(d->n > 0 ? d->n : 1);
	double *ex = malloc(sizeof *ex * cnt), *mx = malloc(sizeof *mx * cnt);
	float *fe = malloc(sizeof *fe * cnt), *fm = malloc(sizeof *fm * cnt);
	int rc = -1;
	if (!ex || !mx || !fe || !fm) {
		rt_fail(err, "out of memory");
		goto done;
	}
	if (rt_distortion(m, P, d, o, ex, mx, NULL, err) != 0)
		goto done;
	const int64_t k = d->n;
	for (int64_t e = 0; e < k; e++) {
		fe[e] = (float)ex[e];
		fm[e] = (float)mx[e];
		r->mean_expected += ex[e];
		r->mean_maximum += mx[e];
	}
	r->n = k;
	static const double q[4] = { 25, 50, 75, 100 };
	for (int i = 0; i < 4; i++) {
		r->expected[i] = k ? rt_percentile(fe, k, q[i]) : NAN;
		r->maximum[i] = k ? rt_percentile(fm, k, q[i]) : NAN;
	}
	r->mean_expected = k ? r->mean_expected / (double)k : NAN;
	r->mean_maximum = k ? r->mean_maximum / (double)k : NAN;
	rc = 0;
done:
	free(ex), free(mx), free(fe), free(fm);
	return rc;
}

static void json_num(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, "%.9g", v);
	else
		fputs("null", f);
}
static void json_four(FILE *f, const char *key, const double v[4])
{
	fprintf(f, ",\"%s\":[", key);
	for (int i = 0; i < 4; i++) {
		if (i)
			fputc(',', f);
		json_num(f, v[i]);
	}
	fputc(']', f);
}

void rt_distortion_json(FILE *f, const rt_distortion_opts *o, const rt_distortion_report *r)
{
	fprintf(f, ",\"distortion\":{\"eps\":%.17g,\"samples\":%d,\"generations\":%d,\"population\":%d,"
	        "\"mutation\":%.17g,\"seed\":%llu,\"clip\":", o->eps, o->samples, o->generations, o->population,
	        o->mutation, (unsigned long long)o->seed);
	if (o->lo <= o->hi)
		fprintf(f, "[%.17g,%.17g]", o->lo, o->hi);
	else
		fputs("null", f);
	fprintf(f, ",\"n\":%lld", (long long)r->n);
	json_four(f, "expected", r->expected);
	json_four(f, "maximum", r->maximum);
	fputs(",\"mean_expected\":", f);
	json_num(f, r->mean_expected);
	fputs(",\"mean_maximum\":", f);
	json_num(f, r->mean_maximum);
	fputc('}', f);
}

void rt_distortion_table(FILE *f, const rt_distortion_opts *o, const rt_distortion_report *r)
{
	fprintf(f, "gradient distortion ||grad f_y(x') - grad f_y(x)||_1, l_inf ball of radius %g", o->eps);
	if (o->lo <= o->hi)
		fprintf(f, " within [%g, %g]", o->lo, o->hi);
	fprintf(f, "\n  %d uniform points per example", o->samples);
	if (o->generations > 0)
		fprintf(f, "; search: %d generations of %d, mutation %g", o->generations, o->population, o->mutation);
	fprintf(f, "; seed %llu\n", (unsigned long long)o->seed);
	fprintf(f, "                 P25          P50          P75         P100         mean\n");
	const double *v[2] = { r->expected, r->maximum };
	const double mean[2] = { r->mean_expected, r->mean_maximum };
	for (int i = 0; i < 2; i++) {
		fprintf(f, "  %-9s", i ? "maximum" : "expected");
		for (int k = 0; k < 4; k++)
			fprintf(f, " %12.6g", v[i][k]);
		fprintf(f, " %12.6g\n", mean[i]);
	}
}
