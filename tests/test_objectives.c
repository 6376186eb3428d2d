/* test_objectives.c: gradient checks of every compiled training objective.
 *
 * For small random networks with non-zero biases, the parameter gradient
 * that lln computes (train_forward, rt_objective_eval, train_backward,
 * train_finish: the Gram recurrence and its adjoint, double back-
 * propagation in effect) must match central finite differences of the
 * per-example loss, computed here in double precision by a reference that
 * forms every neuron gradient explicitly.  Inputs are drawn away from kinks
 * (ReLU and hinge boundaries, ties in the top-gamma selection and in the
 * binding neuron), where the loss is differentiable.
 *
 * The batched kernels of dense chains (train_batch_forward/backward/
 * weights, with train_gram for objectives that need sq: what rt_batch_grad
 * uses on dense chains) are checked the same way, over batches that fill a
 * kernel call, leave a remainder and split across threads, against the
 * same reference.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llnc.h"
#include "jit.h"

enum { MAXL = 10, MAXN = 80, MAXD = 20 };

/* Central differences of the double reference are most of this test's
 * time, and under ASan (which instruments the reference, not the kernels)
 * most of the sanitized suite's: there every FD_EVERY-th parameter is
 * differenced, every kernel still runs in full. */
#ifdef LLN_SANITIZE
enum { FD_EVERY = 4 };
#else
enum { FD_EVERY = 1 };
#endif

typedef struct net {
	const char *src;
	int nl;              /* dense layers, the last gives the logits */
	int size[MAXL + 1];  /* size[0] = D */
	double mean, std;
} net;

static const net nets[] = {
	{ "model a { input x[6] normalize(0.3, 0.7); fc1 = relu(dense(x, 9)); fc2 = relu(dense(fc1, 8));"
	  " fc3 = relu(dense(fc2, 7)); out = dense(fc3, 3); output out; }",
	  4, { 6, 9, 8, 7, 3 }, 0.3, 0.7 },
	{ "model b { input x[2]; h1 = relu(dense(x, 10)); h2 = relu(dense(h1, 10)); out = dense(h2, 1); output out; }"
	  " objective { loss = sigmoid_cross_entropy; }",
	  3, { 2, 10, 10, 1 }, 0.0, 1.0 },
	{ "model c { input x[5] normalize(-0.5, 2); h = relu(dense(x, 12)); out = dense(h, 4); output out; }",
	  2, { 5, 12, 4 }, -0.5, 2.0 },
};

/* ---- the reference: per-example loss in double from the parameters ---- */

typedef struct refout {
	int H;
	double z[MAXL * MAXN], sq[MAXL * MAXN], logits[MAXN];
} refout;

static void ref_forward(const net *nt, const double *P, const float *x, refout *o)
{
	double v[MAXL + 1][MAXN], J[MAXL + 1][MAXN][MAXD];
	int off = 0, h = 0;
	for (int d = 0; d < nt->size[0]; d++)
		v[0][d] = (x[d] - nt->mean) / nt->std;
	for (int l = 1; l <= nt->nl; l++) {
		int n = nt->size[l], nin = nt->size[l - 1];
		const double *W = P + off, *b = P + off + n * nin;
		off += n * nin + n;
		for (int j = 0; j < n; j++) {
			double s = b[j];
			for (int t = 0; t < nin; t++)
				s += W[j * nin + t] * (l > 1 ? fmax(v[l - 1][t], 0) : v[l - 1][t]);
			v[l][j] = s;
			for (int d = 0; d < nt->size[0]; d++) {
				double g = 0;
				if (l == 1)
					g = W[j * nin + d];
				else
					for (int t = 0; t < nin; t++)
						if (v[l - 1][t] > 0)
							g += W[j * nin + t] * J[l - 1][t][d];
				J[l][j][d] = g;
			}
			if (l < nt->nl) {
				double sq = 0;
				for (int d = 0; d < nt->size[0]; d++)
					sq += J[l][j][d] * J[l][j][d];
				o->z[h] = s;
				o->sq[h++] = sq;
			} else {
				o->logits[j] = s;
			}
		}
	}
	o->H = h;
}

static int cmp_desc(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x < y) - (x > y);
}

/* Returns the loss; *ok is cleared when x is too close to a kink. */
static double ref_loss(const net *nt, const double *P, const float *x, int y, const rt_objective *ob, bool *ok)
{
	refout o;
	ref_forward(nt, P, x, &o);
	int K = nt->size[nt->nl];
	double ce;
	if (K == 1) {
		double f = o.logits[0];
		ce = fmax(f, 0) + log1p(exp(-fabs(f))) - y * f;
	} else {
		double mx = o.logits[0];
		for (int k = 1; k < K; k++)
			mx = fmax(mx, o.logits[k]);
		double s = 0;
		for (int k = 0; k < K; k++)
			s += exp(o.logits[k] - mx);
		ce = mx + log(s) - o.logits[y];
	}
	for (int h = 0; h < o.H; h++)
		if (fabs(o.z[h]) < 1e-3 || fabs(fabs(o.z[h]) - 1) < 1e-3)
			*ok = false;
	double reg = 0;
	if (ob->kind == RT_OBJ_ROLL) {
		double sorted[MAXL * MAXN];
		for (int h = 0; h < o.H; h++)
			sorted[h] = o.sq[h] + ob->C * fmax(0, 1 - fabs(o.z[h]));
		qsort(sorted, (size_t)o.H, sizeof *sorted, cmp_desc);
		int k = (int)ceil(ob->gamma / 100.0 * o.H - 1e-9);
		if (k < o.H && sorted[k - 1] - sorted[k] < 1e-4)
			*ok = false;
		for (int i = 0; i < k; i++)
			reg += sorted[i];
		reg *= ob->lambda / k;
	} else if (ob->kind == RT_OBJ_DISTANCE) {
		double best = INFINITY, second = INFINITY;
		for (int h = 0; h < o.H; h++) {
			if (o.sq[h] <= 0)
				continue;
			double e = fabs(o.z[h]) / sqrt(o.sq[h]);
			if (e < best)
				second = best, best = e;
			else if (e < second)
				second = e;
		}
		if (second - best < 1e-4 * best)
			*ok = false;
		reg = -ob->lambda * best;
	}
	return ce + reg;
}

/* He-initialised weights with non-zero biases, as floats and doubles. */
static float *random_params(const rt_model *m, uint64_t seed, double **Pd)
{
	float *P = malloc(sizeof(float) * (size_t)m->n_params);
	rt_init_params(m->tensors, m->n_tensors, seed, RT_INIT_HE, P);
	rt_rng r;
	rt_rng_seed(&r, seed * 7919 + 1);
	for (int i = 0; i < m->n_tensors; i++)
		if (m->tensors[i].is_bias)
			for (int64_t k = 0; k < m->tensors[i].count; k++)
				P[m->tensors[i].offset + k] = (float)(0.6 * (rt_rng_uniform(&r) - 0.5));
	*Pd = malloc(sizeof(double) * (size_t)m->n_params);
	for (int64_t i = 0; i < m->n_params; i++)
		(*Pd)[i] = P[i];
	return P;
}

/* ---- the compiled nets ---- */

/* Each net is compiled once for all the objectives and batch checks: the
 * objective is a run-time argument of the kernels, and compiling is most of
 * this program's time.  The group's teardown frees them. */
enum { MAXNETS = 8 };
static struct compiled {
	const net *nt;
	arena *a;
	cg_unit *u;
	const rt_model *m;
} compiled[MAXNETS];

static const rt_model *compile_net(const net *nt)
{
	int i = 0;
	while (i < MAXNETS && compiled[i].nt && compiled[i].nt != nt)
		i++;
	assert_true(i < MAXNETS);
	if (!compiled[i].nt) {
		compiled[i].a = arena_new();
		compiled[i].m = jit_text(compiled[i].a, nt->src, test_opt(3), &compiled[i].u);
		compiled[i].nt = nt;
	}
	return compiled[i].m;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < MAXNETS && compiled[i].nt; i++) {
		cg_unit_free(compiled[i].u);
		arena_free(compiled[i].a);
		compiled[i].nt = NULL;
	}
	return 0;
}

/* ---- the check ---- */

static void check(const net *nt, const rt_objective *ob, uint64_t seed)
{
	const rt_model *m = compile_net(nt);

	double *Pd;
	float *P = random_params(m, seed, &Pd);
	rt_rng r;
	rt_rng_seed(&r, seed * 7919 + 2);

	float *pre = aligned_alloc(64, (size_t)((m->pre_floats * 4 + 63) / 64 * 64));
	float *ws = aligned_alloc(64, (size_t)((m->ws_floats * 4 + 63) / 64 * 64));
	float *grad = malloc(sizeof(float) * (size_t)m->grad_floats);
	int H = m->n_hidden, K = m->n_out;
	float *z = malloc(sizeof(float) * (size_t)H), *sq = malloc(sizeof(float) * (size_t)H);
	float *dz = malloc(sizeof(float) * (size_t)H), *dsq = malloc(sizeof(float) * (size_t)H);
	float logits[MAXN], dlogits[MAXN];
	int32_t *scratch = malloc(sizeof(int32_t) * (size_t)H);
	m->prepare(P, pre);

	int checked = 0;
	for (int attempt = 0; attempt < 200 && checked < 3; attempt++) {
		float x[MAXD];
		for (int d = 0; d < m->n_in; d++)
			x[d] = (float)(nt->mean + nt->std * 1.5 * rt_rng_normal(&r));
		int y = (int)(rt_rng_uniform(&r) * (K == 1 ? 2 : K));
		bool ok = true;
		double L = ref_loss(nt, Pd, x, y, ob, &ok);
		if (!ok)
			continue;

		bool need = ob->kind != RT_OBJ_VANILLA;
		m->train_forward(P, pre, x, need, ws, z, logits, sq, NULL);
		double ce;
		double loss = rt_objective_eval(ob, m, logits, z, sq, y, dlogits, dz, dsq, &ce, scratch);
		assert_true(fabs(loss - L) <= 1e-4 * fmax(1, fabs(L)));
		memset(grad, 0, sizeof(float) * (size_t)m->grad_floats);
		m->train_backward(P, pre, ws, dlogits, need ? dz : NULL, need ? dsq : NULL, grad);
		m->train_finish(P, grad, 0, 1);

		double worst = 0;
		for (int64_t i = 0; i < m->n_params; i += FD_EVERY) {
			double h = 1e-6 * fmax(1, fabs(Pd[i])), keep = Pd[i];
			bool ok2 = true;
			Pd[i] = keep + h;
			double lp = ref_loss(nt, Pd, x, y, ob, &ok2);
			Pd[i] = keep - h;
			double lm = ref_loss(nt, Pd, x, y, ob, &ok2);
			Pd[i] = keep;
			double fd = (lp - lm) / (2 * h);
			double e = fabs(fd - grad[i]) / (fabs(fd) + 1e-2);
			if (e > worst)
				worst = e;
			if (e > 2e-3)
				print_error("%s objective %d param %lld: finite difference %.9g, lln %.9g\n",
				            m->name, ob->kind, (long long)i, fd, grad[i]);
		}
		assert_true(worst <= 2e-3);
		checked++;
	}
	assert_int_equal(checked, 3);

	free(P);
	free(Pd);
	free(pre);
	free(ws);
	free(grad);
	free(z);
	free(sq);
	free(dz);
	free(dsq);
	free(scratch);
}

/* ---- the batched kernels ---- */

/* Two more nets for the batched kernels: widths around the matrix kernel's
 * blocks (16 columns, 8 rows, masked tails of fewer than 8 columns; W W^T
 * over whole vectors of 8 and a tail of 3), and more than 8 ops (the
 * kernels are then built in parts, cg_part_step). */
static const net wide = { "model d { input x[19] normalize(0.1, 1.5); h1 = relu(dense(x, 16)); h2 = relu(dense(h1, 13));"
	  " out = dense(h2, 5); output out; }",
	  3, { 19, 16, 13, 5 }, 0.1, 1.5 };
/* Active blocks wider than a panel of the matrix kernel (two vectors, up
 * to 32 columns), so that the symmetric products' mirrored triangle is
 * read; its ROLL gradient is checked on every 199th parameter. */
static const net big = { "model f { input x[19]; h1 = relu(dense(x, 80)); h2 = relu(dense(h1, 76)); h3 = relu(dense(h2, 72));"
	  " out = dense(h3, 3); output out; }",
	  4, { 19, 80, 76, 72, 3 }, 0.0, 1.0 };
static const net deep = { "model e { input x[3]; h1 = relu(dense(x, 6)); h2 = relu(dense(h1, 5)); h3 = relu(dense(h2, 6));"
	  " h4 = relu(dense(h3, 5)); h5 = relu(dense(h4, 6)); h6 = relu(dense(h5, 5)); h7 = relu(dense(h6, 6));"
	  " h8 = relu(dense(h7, 5)); h9 = relu(dense(h8, 6)); out = dense(h9, 3); output out; }",
	  10, { 3, 6, 5, 6, 5, 6, 5, 6, 5, 6, 3 }, 0.0, 1.0 };

enum { NBATCH = 140 };   /* two full calls of 64 examples and 12 more */

static double ref_mean_loss(const net *nt, const double *P, const float *X, const int32_t *y, int n,
                            const rt_objective *ob, bool *ok)
{
	double s = 0;
	for (int e = 0; e < n; e++)
		s += ref_loss(nt, P, X + e * nt->size[0], y[e], ob, ok);
	return s / n;
}

/* The batched path for objective kind `kind`: with the vanilla objective
 * the kernels themselves too, and a gradient that does not depend on the
 * thread count; with sq, one that depends on it only by float rounding. */
static void check_batch(const net *nt, uint64_t seed, rt_objective van, int64_t stride)
{
	const rt_model *m = compile_net(nt);
	assert_int_equal(m->batch, 64);   /* dense chains have the batched kernels */
	assert_non_null(m->train_gram);   /* and the Gram ones */
	double *Pd;
	float *P = random_params(m, seed, &Pd);
	const int D = m->n_in, H = m->n_hidden, K = m->n_out;
	van.sigmoid = K == 1;
	const bool sq = rt_objective_needs_sq(&van);
	/* what training prepares, as rt_grad_prepare does (in one share here) */
	float *pre = aligned_alloc(64, (size_t)((m->pre_floats * 4 + 63) / 64 * 64));
	m->train_prepare(P, pre, 0, 1);

	/* examples away from the kinks */
	float *X = malloc(sizeof(float) * (size_t)(NBATCH * D));
	int32_t y[NBATCH];
	rt_rng r;
	rt_rng_seed(&r, seed + 5);
	for (int e = 0; e < NBATCH;) {
		for (int d = 0; d < D; d++)
			X[e * D + d] = (float)(nt->mean + nt->std * 1.5 * rt_rng_normal(&r));
		y[e] = (int32_t)(rt_rng_uniform(&r) * (K == 1 ? 2 : K));
		bool ok = true;
		ref_loss(nt, Pd, X + e * D, y[e], &van, &ok);
		e += ok;
	}

	/* the kernels themselves: z and logits of a full call and of a short
	 * one against the reference, in double */
	float *bws = aligned_alloc(64, (size_t)((m->batch_ws_floats * 4 + 63) / 64 * 64));
	float *z = malloc(sizeof(float) * (size_t)(64 * H)), *logits = malloc(sizeof(float) * (size_t)(64 * K));
	const float *rows[64];
	static const int32_t sizes[] = { 1, 5, 8, 13, 37, 64 };
	for (size_t c = 0; !sq && c < sizeof sizes / sizeof *sizes; c++) {
		int32_t n = sizes[c];
		for (int e = 0; e < n; e++)
			rows[e] = X + (e * 37 % NBATCH) * D;
		/* without z, then as two shares of columns (the second running
		 * past nb) with it: the same logits */
		float *lz = malloc(sizeof(float) * (size_t)(64 * K));
		m->train_batch_forward(P, rows, n, bws, NULL, lz, 0, 64);
		m->train_batch_forward(P, rows, n, bws, z, logits, 0, 16);
		m->train_batch_forward(P, rows, n, bws, z, logits, 16, 64);
		assert_memory_equal(lz, logits, sizeof(float) * (size_t)(n * K));
		free(lz);
		for (int e = 0; e < n; e++) {
			refout o;
			ref_forward(nt, Pd, rows[e], &o);
			for (int h = 0; h < H; h++)
				assert_true(fabs(z[e * H + h] - o.z[h]) <= 1e-5 * (1 + fabs(o.z[h])));
			for (int k = 0; k < K; k++)
				assert_true(fabs(logits[e * K + k] - o.logits[k]) <= 1e-5 * (1 + fabs(o.logits[k])));
		}
	}

	/* rt_batch_grad on 1 and 3 threads: the mean loss, and its gradient
	 * against central differences of the reference */
	const size_t gb = sizeof(float) * (size_t)m->n_params;
	float *g1 = malloc(gb), *g3 = malloc(gb), *g3b = malloc(gb);
	double l1, l3, l3b;
	assert_int_equal(rt_batch_grad(m, &van, P, pre, X, y, NULL, NBATCH, 1, g1, &l1, NULL), 0);
	assert_int_equal(rt_batch_grad(m, &van, P, pre, X, y, NULL, NBATCH, 3, g3, &l3, NULL), 0);
	assert_int_equal(rt_batch_grad(m, &van, P, pre, X, y, NULL, NBATCH, 3, g3b, &l3b, NULL), 0);
	bool ok = true;
	double L = ref_mean_loss(nt, Pd, X, y, NBATCH, &van, &ok);
	assert_true(ok);
	assert_true(fabs(l1 - L) <= 1e-5 * fmax(1, fabs(L)));
	assert_memory_equal(g3, g3b, gb);   /* deterministic for a thread count */
	if (sq) {
		/* what training prepares (train_prepare, in three shares, in any
		 * order) is all that the batched path reads of pre */
		float *pre3 = aligned_alloc(64, (size_t)((m->pre_floats * 4 + 63) / 64 * 64));
		for (int64_t i = 0; i < m->pre_floats; i++)
			pre3[i] = NAN;
		for (int part = 2; part >= 0; part--)
			m->train_prepare(P, pre3, part, 3);
		assert_int_equal(rt_batch_grad(m, &van, P, pre3, X, y, NULL, NBATCH, 3, g3b, &l3b, NULL), 0);
		assert_memory_equal(g3, g3b, gb);
		free(pre3);
	}
	if (!sq) {
		/* threads split the examples, then the gradient's rows, and each
		 * element is computed alike: the same bits */
		assert_true(l1 == l3);
		assert_memory_equal(g1, g3, gb);
	}
	for (int64_t i = 0; i < m->n_params; i++)   /* with sq, the Gram terms are summed by thread */
		assert_true(fabs(g1[i] - g3[i]) <= 1e-5 * (1 + fabs(g1[i])));
	double worst = 0;
	for (int64_t i = 0; i < m->n_params; i += stride * FD_EVERY) {
		double h = 1e-6 * fmax(1, fabs(Pd[i])), keep = Pd[i];
		Pd[i] = keep + h;
		double lp = ref_mean_loss(nt, Pd, X, y, NBATCH, &van, &ok);
		Pd[i] = keep - h;
		double lm = ref_mean_loss(nt, Pd, X, y, NBATCH, &van, &ok);
		Pd[i] = keep;
		double fd = (lp - lm) / (2 * h);
		double e = fabs(fd - g1[i]) / (fabs(fd) + 1e-2);
		if (e > 1e-3)
			print_error("%s param %lld: finite difference %.9g, batched %.9g\n", m->name, (long long)i, fd, g1[i]);
		worst = fmax(worst, e);
	}
	assert_true(worst <= 1e-3);

	free(g1);
	free(g3);
	free(g3b);
	free(pre);
	free(z);
	free(logits);
	free(bws);
	free(X);
	free(P);
	free(Pd);
}

static void batched_objective(rt_objective ob)
{
	for (size_t i = 0; i < sizeof nets / sizeof *nets; i++)
		check_batch(&nets[i], 31 + i, ob, 1);
	check_batch(&wide, 41, ob, 1);
	check_batch(&deep, 43, ob, 1);
}

static void batched_vanilla_kernels_match_reference_and_finite_differences(void **state)
{
	(void)state;
	batched_objective((rt_objective){ .kind = RT_OBJ_VANILLA });
}

static void batched_roll_matches_finite_differences(void **state)
{
	(void)state;
	batched_objective((rt_objective){ .kind = RT_OBJ_ROLL, .lambda = 2, .C = 0.25, .gamma = 100 });
	check_batch(&big, 47, (rt_objective){ .kind = RT_OBJ_ROLL, .lambda = 2, .C = 0.25, .gamma = 100 }, 199);
	/* the objective's other forms reach the kernels only through dz and dsq:
	 * two nets each (the sigmoid one, and one built in parts) */
	check_batch(&nets[1], 32, (rt_objective){ .kind = RT_OBJ_ROLL, .lambda = 1, .C = 1, .gamma = 25 }, 1);
	check_batch(&deep, 43, (rt_objective){ .kind = RT_OBJ_ROLL, .lambda = 1, .C = 1, .gamma = 25 }, 1);
}

static void batched_distance_matches_finite_differences(void **state)
{
	(void)state;
	check_batch(&nets[0], 31, (rt_objective){ .kind = RT_OBJ_DISTANCE, .lambda = 0.5 }, 1);
	check_batch(&deep, 43, (rt_objective){ .kind = RT_OBJ_DISTANCE, .lambda = 0.5 }, 1);
}

static void for_all_nets(rt_objective ob)
{
	for (size_t i = 0; i < sizeof nets / sizeof *nets; i++) {
		ob.sigmoid = nets[i].size[nets[i].nl] == 1;
		check(&nets[i], &ob, 11 + i);
	}
}

static void vanilla_gradient_matches_finite_differences(void **state)
{
	for_all_nets((rt_objective){ .kind = RT_OBJ_VANILLA });
}

static void roll_gamma100_gradient_matches_finite_differences(void **state)
{
	for_all_nets((rt_objective){ .kind = RT_OBJ_ROLL, .lambda = 2, .C = 0.25, .gamma = 100 });
}

static void roll_gamma25_gradient_matches_finite_differences(void **state)
{
	for_all_nets((rt_objective){ .kind = RT_OBJ_ROLL, .lambda = 1, .C = 1, .gamma = 25 });
}

static void distance_gradient_matches_finite_differences(void **state)
{
	for_all_nets((rt_objective){ .kind = RT_OBJ_DISTANCE, .lambda = 0.5 });
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(vanilla_gradient_matches_finite_differences),
		cmocka_unit_test(roll_gamma100_gradient_matches_finite_differences),
		cmocka_unit_test(roll_gamma25_gradient_matches_finite_differences),
		cmocka_unit_test(distance_gradient_matches_finite_differences),
		cmocka_unit_test(batched_vanilla_kernels_match_reference_and_finite_differences),
		cmocka_unit_test(batched_roll_matches_finite_differences),
		cmocka_unit_test(batched_distance_matches_finite_differences),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
