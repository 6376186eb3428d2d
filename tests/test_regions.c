/* test_regions.c: activation regions, segment boundaries and toy data
 * (runtime/regions.c, runtime/toy.c).
 *
 * - Hand-set weights whose regions are known exactly: one layer z1 = x,
 *   z2 = y gives the four quadrants; a second layer cuts them further along
 *   lines worked out by hand (10 polygons, exact vertices and patterns).
 * - Random nets (seeded, non-zero biases, 2 and 3 hidden layers, with and
 *   without normalize): the polygons tile the window, are convex and
 *   counter-clockwise, carry distinct patterns, every interior point has its
 *   polygon's pattern, the point just across every inner edge lies in another
 *   polygon, and random window points lie in exactly one polygon whose hash
 *   is the point's.
 * - Segment boundaries against dense sampling (1e5 samples) in 2 and 5
 *   dimensions, and against the polygon edges a segment crosses.
 * - rt_toy2d: determinism, balance, ranges; `llnc data` writes CSV that
 *   reads back to the same examples and rejects bad arguments with exit 2;
 *   the toy2d: spec of --data trains and rejects bad specs.
 * - The n_in != 2 error.
 */
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <valgrind/valgrind.h>

#include "llnc.h"
#include "jit.h"

#define SIG "objective { loss = sigmoid_cross_entropy; }\n"

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */
typedef struct jitted {
	arena *a;
	cg_unit *u;
	const rt_model *m;
	float *P;
} jitted;

static float *falloc(int64_t n)
{
	size_t bytes = ((size_t)(n > 0 ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
	float *p = aligned_alloc(64, bytes);
	assert_non_null(p);
	memset(p, 0, bytes);
	return p;
}

static void jit_open(jitted *j, const char *text)
{
	memset(j, 0, sizeof *j);
	j->a = arena_new();
	j->m = jit_text(j->a, text, 2, &j->u);
	j->P = falloc(j->m->n_params);
}

static void jit_close(jitted *j)
{
	free(j->P);
	cg_unit_free(j->u);
	arena_free(j->a);
}

static void set_tensor(jitted *j, const char *name, const float *v, int64_t n)
{
	for (int i = 0; i < j->m->n_tensors; i++)
		if (!strcmp(j->m->tensors[i].name, name)) {
			assert_int_equal(j->m->tensors[i].count, n);
			memcpy(j->P + j->m->tensors[i].offset, v, sizeof(float) * (size_t)n);
			return;
		}
	fail_msg("no tensor '%s'", name);
}

/* Pattern hash of a raw input (forward kernel). */
static uint64_t pattern_at(const rt_model *m, const float *P, const float *x, float *ws, float *z,
                           float *logits)
{
	m->forward(P, x, ws, z, logits);
	return rt_pattern_hash(z, m->n_hidden);
}

static double area_of(const rt_polygon *p)
{
	double a = 0;
	for (int i = 0; i < p->n; i++) {
		int j = (i + 1) % p->n;
		a += p->xy[2 * i] * p->xy[2 * j + 1] - p->xy[2 * j] * p->xy[2 * i + 1];
	}
	return 0.5 * a;
}

static void centroid_of(const rt_polygon *p, double c[2])
{
	c[0] = c[1] = 0;
	for (int i = 0; i < p->n; i++) {
		c[0] += p->xy[2 * i] / p->n;
		c[1] += p->xy[2 * i + 1] / p->n;
	}
}

/* Signed distance from (x, y) to the boundary of convex CCW polygon p:
 * positive inside (the distance to the nearest edge line). */
static double inside_dist(const rt_polygon *p, double x, double y)
{
	double d = INFINITY;
	for (int i = 0; i < p->n; i++) {
		int j = (i + 1) % p->n;
		double ex = p->xy[2 * j] - p->xy[2 * i], ey = p->xy[2 * j + 1] - p->xy[2 * i + 1];
		double len = hypot(ex, ey);
		double s = (ex * (y - p->xy[2 * i + 1]) - ey * (x - p->xy[2 * i])) / len;
		if (s < d)
			d = s;
	}
	return d;
}

/* ------------------------------------------------------------------------
 * Hand-set weights
 * ---------------------------------------------------------------------- */
static const char *one_layer_src =
	"model hand1 {\n"
	"  input x[2];\n"
	"  h1 = relu(dense(x, 2));\n"
	"  y = dense(h1, 1);\n"
	"  output y;\n"
	"}\n" SIG;

static const char *two_layer_src =
	"model hand2 {\n"
	"  input x[2];\n"
	"  h1 = relu(dense(x, 2));\n"
	"  h2 = relu(dense(h1, 2));\n"
	"  y = dense(h2, 1);\n"
	"  output y;\n"
	"}\n" SIG;

typedef struct expect_poly {
	int n;
	double xy[12];
	int signs[4];   /* on/off of each hidden neuron */
} expect_poly;

static uint64_t hash_signs(const int *s, int n)
{
	float z[8];
	for (int i = 0; i < n; i++)
		z[i] = s[i] ? 1.0f : -1.0f;
	return rt_pattern_hash(z, n);
}

/* Each expected polygon is found once, with the same vertices (as a cyclic
 * sequence, counter-clockwise) and pattern. */
static void match_polygons(const rt_regions *r, const expect_poly *e, int ne, int H)
{
	assert_int_equal(r->n, ne);
	bool *used = calloc((size_t)ne, 1);
	for (int k = 0; k < ne; k++) {
		int found = -1;
		for (int64_t i = 0; i < r->n && found < 0; i++) {
			const rt_polygon *p = &r->p[i];
			if (used[i] || p->n != e[k].n)
				continue;
			for (int s = 0; s < p->n && found < 0; s++) {
				bool ok = true;
				for (int v = 0; v < p->n && ok; v++) {
					int w = (v + s) % p->n;
					ok = fabs(p->xy[2 * w] - e[k].xy[2 * v]) < 1e-12 &&
					     fabs(p->xy[2 * w + 1] - e[k].xy[2 * v + 1]) < 1e-12;
				}
				if (ok)
					found = (int)i;
			}
		}
		if (found < 0)
			fail_msg("expected polygon %d (%d vertices from (%g, %g)) not found", k, e[k].n,
			         e[k].xy[0], e[k].xy[1]);
		used[found] = true;
		assert_true(r->p[found].pattern == hash_signs(e[k].signs, H));
	}
	free(used);
}

static void test_hand_quadrants(void **state)
{
	jitted j;
	jit_open(&j, one_layer_src);
	const float w1[4] = { 1, 0, 0, 1 }, b1[2] = { 0, 0 }, w2[2] = { 1, 1 }, b2[1] = { 0 };
	set_tensor(&j, "h1.weight", w1, 4);
	set_tensor(&j, "h1.bias", b1, 2);
	set_tensor(&j, "y.weight", w2, 2);
	set_tensor(&j, "y.bias", b2, 1);
	rt_regions r;
	char err[RT_ERRLEN];
	const double win[4] = { -1, 1, -1, 1 };
	assert_int_equal(rt_regions_2d(j.m, j.P, win, &r, err), 0);
	const expect_poly e[] = {
		{ 4, { 0, 0, 1, 0, 1, 1, 0, 1 }, { 1, 1 } },
		{ 4, { -1, 0, 0, 0, 0, 1, -1, 1 }, { 0, 1 } },
		{ 4, { -1, -1, 0, -1, 0, 0, -1, 0 }, { 0, 0 } },
		{ 4, { 0, -1, 1, -1, 1, 0, 0, 0 }, { 1, 0 } },
	};
	match_polygons(&r, e, 4, 2);
	rt_regions_free(&r);
	jit_close(&j);
}

/* Layer 2: u1 = relu(x) + relu(y) - 0.5, u2 = -relu(x) + 0.25.
 *   x > 0, y > 0: lines x + y = 0.5 and x = 0.25, meeting at (0.25, 0.25)
 *   x > 0, y < 0: u1 = x - 0.5, u2 = 0.25 - x: lines x = 0.5 and x = 0.25
 *   x < 0, y > 0: u1 = y - 0.5, u2 = 0.25 (on): line y = 0.5
 *   x < 0, y < 0: u1 = -0.5 (off), u2 = 0.25 (on): no cut            */
static void test_hand_two_layers(void **state)
{
	jitted j;
	jit_open(&j, two_layer_src);
	const float w1[4] = { 1, 0, 0, 1 }, b1[2] = { 0, 0 };
	const float w2[4] = { 1, 1, -1, 0 }, b2[2] = { -0.5f, 0.25f };
	const float w3[2] = { 1, -1 }, b3[1] = { 0 };
	set_tensor(&j, "h1.weight", w1, 4);
	set_tensor(&j, "h1.bias", b1, 2);
	set_tensor(&j, "h2.weight", w2, 4);
	set_tensor(&j, "h2.bias", b2, 2);
	set_tensor(&j, "y.weight", w3, 2);
	set_tensor(&j, "y.bias", b3, 1);
	rt_regions r;
	char err[RT_ERRLEN];
	const double win[4] = { -1, 1, -1, 1 };
	assert_int_equal(rt_regions_2d(j.m, j.P, win, &r, err), 0);
	const expect_poly e[] = {
		/* first quadrant */
		{ 4, { 0, 0, 0.25, 0, 0.25, 0.25, 0, 0.5 }, { 1, 1, 0, 1 } },
		{ 3, { 0.25, 0, 0.5, 0, 0.25, 0.25 }, { 1, 1, 0, 0 } },
		{ 4, { 0, 0.5, 0.25, 0.25, 0.25, 1, 0, 1 }, { 1, 1, 1, 1 } },
		{ 5, { 0.5, 0, 1, 0, 1, 1, 0.25, 1, 0.25, 0.25 }, { 1, 1, 1, 0 } },
		/* fourth quadrant */
		{ 4, { 0, -1, 0.25, -1, 0.25, 0, 0, 0 }, { 1, 0, 0, 1 } },
		{ 4, { 0.25, -1, 0.5, -1, 0.5, 0, 0.25, 0 }, { 1, 0, 0, 0 } },
		{ 4, { 0.5, -1, 1, -1, 1, 0, 0.5, 0 }, { 1, 0, 1, 0 } },
		/* second quadrant */
		{ 4, { -1, 0, 0, 0, 0, 0.5, -1, 0.5 }, { 0, 1, 0, 1 } },
		{ 4, { -1, 0.5, 0, 0.5, 0, 1, -1, 1 }, { 0, 1, 1, 1 } },
		/* third quadrant */
		{ 4, { -1, -1, 0, -1, 0, 0, -1, 0 }, { 0, 0, 0, 1 } },
	};
	match_polygons(&r, e, 10, 4);
	rt_regions_free(&r);
	jit_close(&j);
}

/* ------------------------------------------------------------------------
 * Random nets
 * ---------------------------------------------------------------------- */
typedef struct xorshift { uint64_t s; } xorshift;
static double urand(xorshift *r)
{
	r->s ^= r->s << 13;
	r->s ^= r->s >> 7;
	r->s ^= r->s << 17;
	return (double)(r->s >> 11) / 9007199254740992.0;
}

static const char *random_src[] = {
	"model r2 {\n"
	"  input x[2];\n"
	"  h1 = relu(dense(x, 12));\n"
	"  h2 = relu(dense(h1, 20));\n"
	"  y = dense(h2, 1);\n"
	"  output y;\n"
	"}\n" SIG,
	"model r3 {\n"
	"  input x[2] normalize(0.25, 0.6);\n"
	"  h1 = relu(dense(x, 16));\n"
	"  h2 = relu(dense(h1, 8));\n"
	"  h3 = relu(dense(h2, 14));\n"
	"  y = dense(h3, 2);\n"
	"  output y;\n"
	"}\n",
};

/* bounding boxes, to skip most polygons when locating a point */
static double *bboxes(const rt_regions *r)
{
	double *b = malloc(sizeof(double) * 4 * (size_t)r->n);
	assert_non_null(b);
	for (int64_t i = 0; i < r->n; i++) {
		double *q = &b[4 * i];
		q[0] = q[2] = INFINITY;
		q[1] = q[3] = -INFINITY;
		for (int v = 0; v < r->p[i].n; v++) {
			q[0] = fmin(q[0], r->p[i].xy[2 * v]);
			q[1] = fmax(q[1], r->p[i].xy[2 * v]);
			q[2] = fmin(q[2], r->p[i].xy[2 * v + 1]);
			q[3] = fmax(q[3], r->p[i].xy[2 * v + 1]);
		}
	}
	return b;
}

static bool in_box(const double *q, double x, double y, double slack)
{
	return x >= q[0] - slack && x <= q[1] + slack && y >= q[2] - slack && y <= q[3] + slack;
}

/* the polygon that contains (x, y) with the largest margin */
static int64_t locate(const rt_regions *r, const double *bb, double x, double y, double *margin)
{
	int64_t best = -1;
	double bd = -INFINITY;
	for (int64_t i = 0; i < r->n; i++) {
		if (!in_box(&bb[4 * i], x, y, 1e-9))
			continue;
		double d = inside_dist(&r->p[i], x, y);
		if (d > bd) {
			bd = d;
			best = i;
		}
	}
	*margin = bd;
	return best;
}

/* random_src compiled once, shared by the tests (freed in teardown) */
static jitted cached[2];
static bool cached_ok[2];

static jitted *random_model(int which)
{
	if (!cached_ok[which]) {
		jit_open(&cached[which], random_src[which]);
		cached_ok[which] = true;
	}
	return &cached[which];
}

static void check_random_regions(int which, uint64_t seed, const double win[4])
{
	jitted j = *random_model(which);
	const rt_model *m = j.m;
	rt_init_params(m->tensors, m->n_tensors, seed, RT_INIT_HE, j.P);
	float *ws = falloc(m->ws_floats), *z = falloc(m->n_hidden), *lg = falloc(m->n_out);
	rt_regions r;
	char err[RT_ERRLEN];
	assert_int_equal(rt_regions_2d(m, j.P, win, &r, err), 0);
	const double W = (win[1] - win[0]) * (win[3] - win[2]);
	const double diag = hypot(win[1] - win[0], win[3] - win[2]);
	assert_true(r.n > 10);
	double *bb = bboxes(&r);

	/* tiling, convexity, orientation, distinct patterns */
	double total = 0;
	for (int64_t i = 0; i < r.n; i++) {
		const rt_polygon *p = &r.p[i];
		assert_true(p->n >= 3);
		double a = area_of(p);
		assert_true(a > 0);
		total += a;
		for (int v = 0; v < p->n; v++) {
			const double *A = &p->xy[2 * v], *B = &p->xy[2 * ((v + 1) % p->n)],
			             *C = &p->xy[2 * ((v + 2) % p->n)];
			double cross = (B[0] - A[0]) * (C[1] - B[1]) - (B[1] - A[1]) * (C[0] - B[0]);
			if (cross < -1e-12 * diag * diag)
				fail_msg("polygon %lld is not convex and counter-clockwise at vertex %d",
				         (long long)i, v);
			assert_true(A[0] >= win[0] - 1e-12 && A[0] <= win[1] + 1e-12);
			assert_true(A[1] >= win[2] - 1e-12 && A[1] <= win[3] + 1e-12);
		}
	}
	uint64_t *hs = malloc(sizeof *hs * (size_t)r.n);
	for (int64_t i = 0; i < r.n; i++)
		hs[i] = r.p[i].pattern;
	assert_int_equal(rt_count_distinct(hs, r.n), r.n);   /* one polygon per pattern */
	free(hs);
	if (fabs(total - W) > 1e-9 * W)
		fail_msg("areas sum to %.17g, window %.17g", total, W);

	/* interior points of every polygon share its pattern */
	xorshift rng = { 0x9e3779b97f4a7c15ULL ^ seed };
	int64_t near = 0, checked = 0;
	for (int64_t i = 0; i < r.n; i++) {
		const rt_polygon *p = &r.p[i];
		double c[2];
		centroid_of(p, c);
		for (int k = 0; k < 20; k++) {
			double wsum = 0, px = 0, py = 0;
			for (int v = 0; v < p->n; v++) {
				double w = urand(&rng);
				wsum += w;
				px += w * p->xy[2 * v];
				py += w * p->xy[2 * v + 1];
			}
			px = c[0] + 0.95 * (px / wsum - c[0]);
			py = c[1] + 0.95 * (py / wsum - c[1]);
			const float x[2] = { (float)px, (float)py };
			uint64_t h = pattern_at(m, j.P, x, ws, z, lg);
			checked++;
			if (inside_dist(p, x[0], x[1]) < 1e-6 * diag) {
				near++;   /* within rounding of an edge: either side is right */
				continue;
			}
			if (h != p->pattern)
				fail_msg("point (%g, %g) of polygon %lld has another pattern", px, py, (long long)i);
		}
	}
	assert_true(near * 100 <= checked);

	/* across every inner edge lies another polygon with another pattern */
	for (int64_t i = 0; i < r.n; i++) {
		const rt_polygon *p = &r.p[i];
		for (int v = 0; v < p->n; v++) {
			const double *A = &p->xy[2 * v], *B = &p->xy[2 * ((v + 1) % p->n)];
			double ex = B[0] - A[0], ey = B[1] - A[1], len = hypot(ex, ey);
			if (len < 1e-4 * diag)
				continue;
			double mx = 0.5 * (A[0] + B[0]) + 1e-7 * diag * ey / len;
			double my = 0.5 * (A[1] + B[1]) - 1e-7 * diag * ex / len;
			if (mx <= win[0] || mx >= win[1] || my <= win[2] || my >= win[3])
				continue;   /* a window edge */
			double mg;
			int64_t o = locate(&r, bb, mx, my, &mg);
			assert_true(o >= 0 && o != i);
			assert_true(mg > -1e-9 * diag);
			assert_true(r.p[o].pattern != p->pattern);
		}
	}

	/* random window points: in exactly one polygon, with its pattern */
	int64_t near2 = 0;
	for (int k = 0; k < 10000; k++) {
		const float x[2] = { (float)(win[0] + (win[1] - win[0]) * urand(&rng)),
		                     (float)(win[2] + (win[3] - win[2]) * urand(&rng)) };
		int inside = 0, strictly = 0;
		int64_t which = -1;
		for (int64_t i = 0; i < r.n; i++) {
			if (!in_box(&bb[4 * i], x[0], x[1], 1e-9))
				continue;
			double d = inside_dist(&r.p[i], x[0], x[1]);
			if (d >= -1e-12 * diag)
				inside++;
			if (d > 1e-9 * diag) {
				strictly++;
				which = i;
			}
		}
		assert_true(inside >= 1);
		assert_true(strictly <= 1);
		if (strictly == 0 || inside_dist(&r.p[which], x[0], x[1]) < 1e-6 * diag) {
			near2++;
			continue;
		}
		uint64_t h = pattern_at(m, j.P, x, ws, z, lg);
		if (h != r.p[which].pattern)
			fail_msg("window point (%g, %g) is in polygon %lld but has another pattern", x[0],
			         x[1], (long long)which);
	}
	assert_true(near2 < 100);
	free(bb);
	rt_regions_free(&r);
	free(ws);
	free(z);
	free(lg);
}

static void test_random_regions(void **state)
{
	const double w1[4] = { -2, 2, -1.5, 2 };
	const double w2[4] = { -1, 3, 0.5, 1.25 };
	for (uint64_t s = 1; s <= 3; s++) {
		check_random_regions(0, s, w1);
		check_random_regions(1, s + 10, w1);
	}
	check_random_regions(1, 99, w2);
}

/* The toy model (4 x 100) at its initialisation: fast enough. */
static void test_toy_size_timing(void **state)
{
	jitted j;
	jit_open(&j,
		"model toy {\n"
		"  input x[2];\n"
		"  h1 = relu(dense(x, 100));\n"
		"  h2 = relu(dense(h1, 100));\n"
		"  h3 = relu(dense(h2, 100));\n"
		"  h4 = relu(dense(h3, 100));\n"
		"  y = dense(h4, 1);\n"
		"  output y;\n"
		"}\n" SIG);
	rt_init_params(j.m->tensors, j.m->n_tensors, 7, RT_INIT_HE, j.P);
	rt_regions r;
	char err[RT_ERRLEN];
	/* under valgrind a small window (a few hundred regions) keeps it quick */
	const double hw = RUNNING_ON_VALGRIND ? 0.2 : 1.5;
	const double win[4] = { -hw, hw, -hw, hw };
	/* the best of three, as other processes may share the machine; once
	 * when instrumented, whose time says nothing */
	double secs = INFINITY;
#ifdef LLN_SANITIZE
	const int reps = 1;
#else
	const int reps = RUNNING_ON_VALGRIND ? 1 : 3;
#endif
	for (int rep = 0; rep < reps; rep++) {
		struct timespec t0, t1;
		if (rep)
			rt_regions_free(&r);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		assert_int_equal(rt_regions_2d(j.m, j.P, win, &r, err), 0);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		secs = fmin(secs, (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
	}
	double total = 0;
	for (int64_t i = 0; i < r.n; i++)
		total += area_of(&r.p[i]);
	assert_true(fabs(total - 4 * hw * hw) < 1e-9 * 4 * hw * hw);
	print_message("toy 4x100: %lld regions in %.3f s\n", (long long)r.n, secs);
	rt_regions_free(&r);
	jit_close(&j);
}

/* ------------------------------------------------------------------------
 * Segment boundaries
 * ---------------------------------------------------------------------- */
static const char *seg5_src =
	"model s5 {\n"
	"  input x[5] normalize(0.1, 0.8);\n"
	"  h1 = relu(dense(x, 16));\n"
	"  h2 = relu(dense(h1, 12));\n"
	"  h3 = relu(dense(h2, 10));\n"
	"  y = dense(h3, 3);\n"
	"  output y;\n"
	"}\n";

/* Dense sampling: every interval between samples where the pattern changes
 * holds a reported t (give or take one interval), and vice versa. */
static void check_segment_sampling(const rt_model *m, const float *P, const float *a,
                                   const float *b, const double *t, int64_t n)
{
	enum { N = 100000 };
	const int64_t D = m->n_in;
	float *ws = falloc(m->ws_floats), *z = falloc(m->n_hidden), *lg = falloc(m->n_out);
	float *x = falloc(D);
	uint8_t *changed = calloc(N, 1);
	uint64_t prev = 0;
	int64_t nchanged = 0;
	for (int k = 0; k <= N; k++) {
		double s = (double)k / N;
		for (int64_t i = 0; i < D; i++)
			x[i] = (float)((double)a[i] + s * ((double)b[i] - (double)a[i]));
		uint64_t h = pattern_at(m, P, x, ws, z, lg);
		if (k > 0 && h != prev) {
			changed[k - 1] = 1;
			nchanged++;
		}
		prev = h;
	}
	for (int64_t i = 0; i < n; i++) {
		assert_true(t[i] > 0 && t[i] < 1);
		if (i > 0)
			assert_true(t[i] > t[i - 1]);
		int64_t k = (int64_t)floor(t[i] * N);
		bool ok = false;
		for (int64_t q = k - 1; q <= k + 1; q++)
			if (q >= 0 && q < N && changed[q])
				ok = true;
		if (!ok)
			fail_msg("reported boundary t = %.9g has no pattern change near it", t[i]);
	}
	for (int64_t k = 0; k < N; k++) {
		if (!changed[k])
			continue;
		bool ok = false;
		for (int64_t i = 0; i < n && !ok; i++)
			ok = t[i] >= (double)(k - 1) / N && t[i] <= (double)(k + 2) / N;
		if (!ok)
			fail_msg("pattern changes between samples %lld and %lld but no boundary was reported",
			         (long long)k, (long long)k + 1);
	}
	assert_int_equal(n, nchanged);
	free(ws);
	free(z);
	free(lg);
	free(x);
	free(changed);
}

static void test_segment_5d(void **state)
{
	jitted j;
	jit_open(&j, seg5_src);
	for (uint64_t s = 1; s <= 3; s++) {
		rt_init_params(j.m->tensors, j.m->n_tensors, s, RT_INIT_HE, j.P);
		xorshift rng = { 12345 + s };
		float a[5], b[5];
		for (int i = 0; i < 5; i++) {
			a[i] = (float)(4 * urand(&rng) - 2);
			b[i] = (float)(4 * urand(&rng) - 2);
		}
		double *t;
		int64_t n;
		char err[RT_ERRLEN];
		assert_int_equal(rt_segment_boundaries(j.m, j.P, a, b, &t, &n, err), 0);
		assert_true(n > 3);
		check_segment_sampling(j.m, j.P, a, b, t, n);
		free(t);
	}
	jit_close(&j);
}

/* Cyrus-Beck: the parameter interval of the segment inside convex p. */
static bool clip_segment(const rt_polygon *p, const double a[2], const double b[2], double *t0,
                         double *t1)
{
	double lo = 0, hi = 1;
	const double d[2] = { b[0] - a[0], b[1] - a[1] };
	for (int i = 0; i < p->n; i++) {
		int j = (i + 1) % p->n;
		double ex = p->xy[2 * j] - p->xy[2 * i], ey = p->xy[2 * j + 1] - p->xy[2 * i + 1];
		/* inside: ex (y - yi) - ey (x - xi) >= 0 */
		double num = ex * (a[1] - p->xy[2 * i + 1]) - ey * (a[0] - p->xy[2 * i]);
		double den = ex * d[1] - ey * d[0];
		if (den == 0) {
			if (num < 0)
				return false;
		} else if (den > 0) {
			lo = fmax(lo, -num / den);
		} else {
			hi = fmin(hi, -num / den);
		}
	}
	*t0 = lo;
	*t1 = hi;
	return hi - lo > 1e-9;
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return (a > b) - (a < b);
}

static void test_segment_2d(void **state)
{
	const double win[4] = { -2, 2, -2, 2 };
	for (int which = 0; which < 2; which++) {
		jitted j = *random_model(which);
		rt_init_params(j.m->tensors, j.m->n_tensors, 5 + (uint64_t)which, RT_INIT_HE, j.P);
		const float a[2] = { -1.7f, -1.3f }, b[2] = { 1.9f, 1.45f };
		double *t;
		int64_t n;
		char err[RT_ERRLEN];
		assert_int_equal(rt_segment_boundaries(j.m, j.P, a, b, &t, &n, err), 0);
		assert_true(n > 3);
		check_segment_sampling(j.m, j.P, a, b, t, n);

		/* the exits of the segment from the polygons it passes through */
		rt_regions r;
		assert_int_equal(rt_regions_2d(j.m, j.P, win, &r, err), 0);
		const double ad[2] = { a[0], a[1] }, bd[2] = { b[0], b[1] };
		double *exits = malloc(sizeof(double) * (size_t)r.n);
		int64_t ne = 0;
		for (int64_t i = 0; i < r.n; i++) {
			double t0, t1;
			if (clip_segment(&r.p[i], ad, bd, &t0, &t1) && t1 < 1 - 1e-9)
				exits[ne++] = t1;
		}
		qsort(exits, (size_t)ne, sizeof *exits, cmp_double);
		assert_int_equal(ne, n);
		for (int64_t i = 0; i < n; i++)
			if (fabs(exits[i] - t[i]) > 1e-5)
				fail_msg("boundary %lld: walk %.9g, polygons %.9g", (long long)i, t[i], exits[i]);
		free(exits);
		free(t);
		rt_regions_free(&r);
	}
}

/* ------------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------- */
static void test_needs_two_inputs(void **state)
{
	jitted j;
	jit_open(&j,
		"model three {\n"
		"  input x[3];\n"
		"  h = relu(dense(x, 4));\n"
		"  y = dense(h, 1);\n"
		"  output y;\n"
		"}\n" SIG);
	rt_regions r = { 5, NULL };
	char err[RT_ERRLEN] = "";
	const double win[4] = { -1, 1, -1, 1 };
	assert_int_equal(rt_regions_2d(j.m, j.P, win, &r, err), -1);
	assert_string_equal(err, "model 'three' has 3 inputs; the region picture needs exactly 2");
	assert_int_equal(r.n, 0);
	rt_regions_free(&r);
	jit_close(&j);

	/* an empty window */
	jit_open(&j, one_layer_src);
	const double bad[4] = { 1, -1, -1, 1 };
	assert_int_equal(rt_regions_2d(j.m, j.P, bad, &r, err), -1);
	assert_non_null(strstr(err, "window"));
	jit_close(&j);
}

/* ------------------------------------------------------------------------
 * Toy data
 * ---------------------------------------------------------------------- */
static void test_toy2d(void **state)
{
	char err[RT_ERRLEN];
	const char *kinds[2] = { "spirals", "moons" };
	for (int k = 0; k < 2; k++) {
		rt_data a, b, c;
		assert_int_equal(rt_toy2d(kinds[k], 401, 0.1, 3, &a, err), 0);
		assert_int_equal(rt_toy2d(kinds[k], 401, 0.1, 3, &b, err), 0);
		assert_int_equal(rt_toy2d(kinds[k], 401, 0.1, 4, &c, err), 0);
		assert_int_equal(a.n, 401);
		assert_int_equal(a.dim, 2);
		assert_memory_equal(a.x, b.x, sizeof(float) * 802);
		assert_memory_equal(a.y, b.y, sizeof(int32_t) * 401);
		assert_memory_not_equal(a.x, c.x, sizeof(float) * 802);
		int64_t ones = 0;
		for (int64_t i = 0; i < a.n; i++) {
			assert_true(a.y[i] == 0 || a.y[i] == 1);
			assert_int_equal(a.y[i], i % 2);
			ones += a.y[i];
			assert_true(isfinite(a.x[2 * i]) && isfinite(a.x[2 * i + 1]));
		}
		assert_int_equal(ones, 200);
		rt_data_free(&a);
		rt_data_free(&b);
		rt_data_free(&c);

		/* without noise: on the curves */
		rt_data d;
		assert_int_equal(rt_toy2d(kinds[k], 100, 0, 0, &d, err), 0);
		for (int64_t i = 0; i < d.n; i++) {
			double x = d.x[2 * i], y = d.x[2 * i + 1];
			if (k == 0) {
				double r = hypot(x, y);
				assert_true(r >= 0.1 - 1e-6 && r <= 1 + 1e-6);
			} else if (d.y[i] == 0) {
				assert_true(fabs(hypot(x, y) - 1) < 1e-6 && y >= -1e-6);
			} else {
				assert_true(fabs(hypot(x - 1, y - 0.5) - 1) < 1e-6 && y <= 0.5 + 1e-6);
			}
		}
		/* the two spirals: class c at angle 3 pi t + c pi */
		if (k == 0) {
			assert_true(fabs(d.x[0] - 0.1 * cos(0.3 * M_PI)) < 1e-6);
			assert_true(fabs(d.x[3] - 0.1 * sin(1.3 * M_PI)) < 1e-6);
		}
		rt_data_free(&d);
	}
	rt_data d;
	assert_int_equal(rt_toy2d("circles", 10, 0.1, 0, &d, err), -1);
	assert_non_null(strstr(err, "spirals or moons"));
	assert_int_equal(rt_toy2d("moons", 1, 0.1, 0, &d, err), -1);
	assert_int_equal(rt_toy2d("moons", 10, -1, 0, &d, err), -1);
	assert_int_equal(rt_toy2d("moons", 2, 0, 0, &d, err), 0);
	assert_int_equal(d.y[0] + d.y[1], 1);
	rt_data_free(&d);
}

static char tmpdir[256];

static int quiet_run(int argc, char **argv)
{
	fflush(stderr);
	int saved = dup(2);
	int devnull = open("/dev/null", O_WRONLY);
	dup2(devnull, 2);
	close(devnull);
	int rc = rt_data_main(argc, argv);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	return rc;
}

static void test_data_main(void **state)
{
	char path[512], err[RT_ERRLEN];
	snprintf(path, sizeof path, "%s/moons.csv", tmpdir);
	char *args[] = { "llnc data", "toy2d", "--kind", "moons", "--n", "51", "--noise", "0.2",
	                 "--seed", "9", "-o", path };
	assert_int_equal(rt_data_main(12, args), 0);
	rt_data got, want;
	assert_int_equal(rt_data_read(path, 2, true, &got, err), 0);
	assert_int_equal(rt_toy2d("moons", 51, 0.2, 9, &want, err), 0);
	assert_int_equal(got.n, 51);
	assert_memory_equal(got.x, want.x, sizeof(float) * 102);
	assert_memory_equal(got.y, want.y, sizeof(int32_t) * 51);
	rt_data_free(&got);
	rt_data_free(&want);
	FILE *f = fopen(path, "r");
	char line[256];
	assert_non_null(fgets(line, sizeof line, f));
	assert_int_equal(line[0], '#');
	assert_non_null(fgets(line, sizeof line, f));
	assert_string_equal(line, "label,x1,x2\n");
	fclose(f);

	/* defaults */
	char *dargs[] = { "llnc data", "toy2d", "-o", path };
	assert_int_equal(rt_data_main(4, dargs), 0);
	assert_int_equal(rt_data_read(path, 2, true, &got, err), 0);
	assert_int_equal(rt_toy2d("spirals", 400, 0.1, 0, &want, err), 0);
	assert_int_equal(got.n, 400);
	assert_memory_equal(got.x, want.x, sizeof(float) * 800);
	rt_data_free(&got);
	rt_data_free(&want);

	/* usage errors: exit 2, no file */
	char bad_path[512];
	snprintf(bad_path, sizeof bad_path, "%s/bad.csv", tmpdir);
	char *o = bad_path;
	char *bad[][8] = {
		{ "llnc data", NULL },
		{ "llnc data", "toy3d", "-o", o, NULL },
		{ "llnc data", "toy2d", NULL },
		{ "llnc data", "toy2d", "--kind", "circles", "-o", o, NULL },
		{ "llnc data", "toy2d", "--n", "1", "-o", o, NULL },
		{ "llnc data", "toy2d", "--n", "12x", "-o", o, NULL },
		{ "llnc data", "toy2d", "--noise", "-0.5", "-o", o, NULL },
		{ "llnc data", "toy2d", "--noise", "nan", "-o", o, NULL },
		{ "llnc data", "toy2d", "--seed", "-3", "-o", o, NULL },
		{ "llnc data", "toy2d", "--seed", "1.5", "-o", o, NULL },
		{ "llnc data", "toy2d", "--bogus", "1", "-o", o, NULL },
		{ "llnc data", "toy2d", "-o", NULL },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int argc = 0;
		while (bad[i][argc])
			argc++;
		assert_int_equal(quiet_run(argc, bad[i]), 2);
		assert_int_not_equal(access(bad_path, F_OK), 0);
	}
	/* unwritable: exit 1 */
	char *nodir[] = { "llnc data", "toy2d", "-o", "/nonexistent-dir/x.csv" };
	assert_int_equal(quiet_run(4, nodir), 1);
	/* --help */
	char *help[] = { "llnc data", "--help" };
	fflush(stdout);
	int saved = dup(1), devnull = open("/dev/null", O_WRONLY);
	dup2(devnull, 1);
	close(devnull);
	int rc = rt_data_main(2, help);
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
	assert_int_equal(rc, 0);
}

/* The toy2d: spec of --data, through the training command line. */
static int quiet_train(const rt_model *m, int argc, char **argv)
{
	fflush(stdout);
	fflush(stderr);
	int s1 = dup(1), s2 = dup(2), devnull = open("/dev/null", O_WRONLY);
	dup2(devnull, 1);
	dup2(devnull, 2);
	close(devnull);
	int rc = rt_train_main(m, NULL, argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(s1, 1);
	dup2(s2, 2);
	close(s1);
	close(s2);
	return rc;
}

static void test_train_toy2d_spec(void **state)
{
	jitted j;
	jit_open(&j,
		"model t {\n"
		"  input x[2];\n"
		"  h = relu(dense(x, 8));\n"
		"  y = dense(h, 1);\n"
		"  output y;\n"
		"}\n"
		"objective { loss = sigmoid_cross_entropy; }\n");
	char out[512];
	snprintf(out, sizeof out, "%s/t.safetensors", tmpdir);
	char *ok[] = { "llnc train", "--data", "toy2d:kind=moons,n=64,noise=0.05,seed=2",
	               "--epochs", "1", "--valid", "8", "--threads", "1", "-o", out };
	assert_int_equal(quiet_train(j.m, 11, ok), 0);
	assert_int_equal(access(out, F_OK), 0);
	char *dflt[] = { "llnc train", "--data", "toy2d:", "--epochs", "1", "--threads", "1", "-o", out };
	assert_int_equal(quiet_train(j.m, 9, dflt), 0);
	const char *bad[] = { "toy2d:kind=circles", "toy2d:n=1", "toy2d:noise=-1", "toy2d:seed=x",
	                      "toy2d:size=3", "toy2d:n=5,n=6", "toy2d:moons" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char *argv[] = { "llnc train", "--data", (char *)bad[i], "--epochs", "1", "-o", out };
		assert_int_equal(quiet_train(j.m, 7, argv), 1);
	}
	jit_close(&j);
	/* a model with another input size */
	jit_open(&j,
		"model t3 {\n"
		"  input x[3];\n"
		"  h = relu(dense(x, 8));\n"
		"  y = dense(h, 1);\n"
		"  output y;\n"
		"}\n"
		"objective { loss = sigmoid_cross_entropy; }\n");
	char *argv[] = { "llnc train", "--data", "toy2d:", "--epochs", "1", "-o", out };
	assert_int_equal(quiet_train(j.m, 7, argv), 1);
	jit_close(&j);
}

static int setup(void **state)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/lln_regions_XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	for (int i = 0; i < 2; i++)
		if (cached_ok[i])
			jit_close(&cached[i]);
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hand_quadrants),
		cmocka_unit_test(test_hand_two_layers),
		cmocka_unit_test(test_random_regions),
		cmocka_unit_test(test_toy_size_timing),
		cmocka_unit_test(test_segment_5d),
		cmocka_unit_test(test_segment_2d),
		cmocka_unit_test(test_needs_two_inputs),
		cmocka_unit_test(test_toy2d),
		cmocka_unit_test(test_data_main),
		cmocka_unit_test(test_train_toy2d_spec),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
