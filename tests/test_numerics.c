/* test_numerics.c: the generated kernels against a naive double-precision
 * reference (ref.h), finite differences and the geometry of the region.
 *
 * Several small fully connected networks (different input sizes, depths,
 * widths, 1 / 3 / 10 outputs, with and without normalize) get seeded He
 * weights plus extra random biases; on many random inputs each we check
 *   1. forward: z and logits
 *   2. grads: every hidden neuron's raw-unit gradient row, against the
 *      reference product and against central finite differences
 *   3. certify: eps_1 / eps_2 / eps_inf, binding neurons, eps_pred, label
 *   4. direction: the directional margin and the pattern just before and
 *      just after it
 *   5. geometry: points inside the certified l_p ball keep the pattern, the
 *      point just past it toward the binding hyperplane does not
 *   6. rt_certify_batch: independent of the thread count, pattern hashes
 *   7. a model without hidden layers
 * Models are compiled from .lln source text through the whole front end.
 */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llnc.h"
#include "jit.h"
#include "ref.h"
#include "sample.h"

/* ---- the networks under test ---- */

typedef struct spec {
	const char *name;
	int D, L;
	int sizes[REF_MAXL + 1];   /* hidden sizes, then outputs */
	bool normalize;
	double mean, std;
	uint64_t seed;
	int parts;   /* kernels in parts of this many ops (cg.h); 0: whole */
} spec;

static const spec specs[] = {
	{ "a", 5, 2, { 7, 6, 3 }, true, 0.2, 0.5, 11, 0 },
	{ "b", 8, 3, { 12, 10, 9, 1 }, false, 0, 1, 12, 0 },
	{ "c", 13, 4, { 20, 16, 14, 11, 10 }, true, 0.1307, 0.3081, 13, 1 },
	{ "d", 8, 2, { 6, 6, 10 }, true, -0.3, 2.0, 14, 0 },
	{ "e", 5, 1, { 9, 1 }, true, 0.5, 0.25, 15, 0 },
	{ "f", 13, 3, { 18, 8, 15, 3 }, false, 0, 1, 16, 2 },
};
#define NSPECS (sizeof specs / sizeof *specs)

/* The .lln source of a spec. */
static char *spec_source(const spec *s)
{
	size_t cap = 4096, k = 0;
	char *buf = malloc(cap);
	k += (size_t)snprintf(buf + k, cap - k, "model %s {\n  input x[%d]", s->name, s->D);
	if (s->normalize)
		k += (size_t)snprintf(buf + k, cap - k, " normalize(%.17g, %.17g)", s->mean, s->std);
	k += (size_t)snprintf(buf + k, cap - k, ";\n");
	for (int i = 0; i <= s->L; i++) {
		char prev[16];
		if (i == 0)
			snprintf(prev, sizeof prev, "x");
		else
			snprintf(prev, sizeof prev, "fc%d", i);
		if (i < s->L)
			k += (size_t)snprintf(buf + k, cap - k, "  fc%d = relu(dense(%s, %d));\n", i + 1, prev, s->sizes[i]);
		else
			k += (size_t)snprintf(buf + k, cap - k, "  fc%d = dense(%s, %d);\n", i + 1, prev, s->sizes[i]);
	}
	k += (size_t)snprintf(buf + k, cap - k, "  output fc%d;\n}\n", s->L + 1);
	/* a single logit needs the binary loss */
	if (s->sizes[s->L] == 1)
		snprintf(buf + k, cap - k, "objective {\n  loss = sigmoid_cross_entropy;\n}\n");
	return buf;
}

/* A compiled model with its parameters, reference and buffers. */
typedef struct tmodel {
	const spec *s;
	arena *a;
	cg_unit *u;
	const rt_model *m;
	float *P, *pre, *ws;
	ref_net r;
	int D, H, O;
} tmodel;

static sema_program *front_end(arena *a, const char *text)
{
	source *src = source_from_string(a, "test.lln", text);
	assert_non_null(src);
	FILE *sink = fopen("/dev/null", "w");
	src->out = sink;
	ast_program *ast = ast_parse(a, src);
	sema_program *p = ast ? sema_check(a, ast) : NULL;
	fclose(sink);
	src->out = stderr;
	return p;
}

static void tmodel_open(tmodel *t, const spec *s)
{
	memset(t, 0, sizeof *t);
	t->s = s;
	t->a = arena_new();
	char *text = spec_source(s);
	sema_program *p = front_end(t->a, text);
	if (!p)
		fprintf(stderr, "front end rejected:\n%s", text);
	free(text);
	assert_non_null(p);
	ir_module *ir = ir_lower(t->a, p);
	assert_non_null(ir);
	char err[RT_ERRLEN];
	cg_options co = { .opt_level = test_opt(3), .ops_per_part = s->parts ? s->parts : 1 << 30 };
	t->u = cg_generate(ir, &co, err);
	if (!t->u)
		fail_msg("cg_generate: %s", err);
	t->m = cg_jit(t->u, err);
	if (!t->m)
		fail_msg("cg_jit: %s", err);
	const rt_model *m = t->m;

	/* the descriptor describes the spec */
	assert_int_equal(m->abi, RT_ABI_VERSION);
	assert_int_equal(m->n_in, s->D);
	assert_int_equal(m->n_out, s->sizes[s->L]);
	assert_int_equal(m->n_layers, s->L);
	int H = 0;
	for (int i = 0; i < s->L; i++) {
		assert_int_equal(m->layers[i].size, s->sizes[i]);
		assert_int_equal(m->layers[i].offset, H);
		H += s->sizes[i];
	}
	assert_int_equal(m->n_hidden, H);
	assert_true(m->std == (s->normalize ? s->std : 1.0));
	assert_true(m->mean == (s->normalize ? s->mean : 0.0));
	/* tensor table: fc1.weight, fc1.bias, ... contiguous in PyTorch order */
	assert_int_equal(m->n_tensors, 2 * (s->L + 1));
	int64_t off = 0;
	for (int i = 0; i <= s->L; i++) {
		int in = i ? s->sizes[i - 1] : s->D;
		char wn[32], bn[32];
		snprintf(wn, sizeof wn, "fc%d.weight", i + 1);
		snprintf(bn, sizeof bn, "fc%d.bias", i + 1);
		const rt_tensor *w = &m->tensors[2 * i], *b = &m->tensors[2 * i + 1];
		assert_string_equal(w->name, wn);
		assert_int_equal(w->rank, 2);
		assert_int_equal(w->shape[0], s->sizes[i]);
		assert_int_equal(w->shape[1], in);
		assert_int_equal(w->offset, off);
		assert_int_equal(w->count, (int64_t)s->sizes[i] * in);
		assert_int_equal(w->is_bias, 0);
		off += w->count;
		assert_string_equal(b->name, bn);
		assert_int_equal(b->rank, 1);
		assert_int_equal(b->shape[0], s->sizes[i]);
		assert_int_equal(b->offset, off);
		assert_int_equal(b->is_bias, 1);
		off += b->count;
	}
	assert_int_equal(m->n_params, off);

	t->P = falloc(m->n_params);
	rt_init_params(m->tensors, m->n_tensors, s->seed, RT_INIT_HE, t->P);
	/* extra random biases of magnitude ~0.1 so that biases matter */
	trng r = { s->seed * 7919 + 1 };
	for (int i = 0; i < m->n_tensors; i++)
		if (m->tensors[i].is_bias)
			for (int64_t k = 0; k < m->tensors[i].count; k++)
				t->P[m->tensors[i].offset + k] += (float)(0.2 * trng_u(&r) - 0.1);
	/* binary models: shift the output bias so that the decision boundary
	 * passes near the inputs' centre and both labels occur */
	if (s->sizes[s->L] == 1) {
		ref_net r0;
		ref_init(&r0, s->D, s->L, s->sizes, m->mean, m->std, t->P);
		double *x0 = calloc((size_t)s->D, sizeof(double)), *z0 = calloc((size_t)H + 1, sizeof(double)), f0;
		for (int d = 0; d < s->D; d++)
			x0[d] = m->mean + 0.3 * m->std * (d % 3 - 1);
		ref_forward_d(&r0, x0, z0, &f0);
		t->P[m->tensors[m->n_tensors - 1].offset] -= (float)f0;
		ref_free(&r0);
		free(x0);
		free(z0);
	}
	t->pre = falloc(m->pre_floats);
	t->ws = falloc(m->ws_floats);
	m->prepare(t->P, t->pre);
	ref_init(&t->r, s->D, s->L, s->sizes, s->normalize ? (double)m->mean : 0.0,
	         s->normalize ? (double)m->std : 1.0, t->P);
	assert_int_equal(ref_n_params(&t->r), m->n_params);
	t->D = s->D;
	t->H = H;
	t->O = s->sizes[s->L];
}

static void tmodel_close_(tmodel *t)
{
	ref_free(&t->r);
	free(t->P);
	free(t->pre);
	free(t->ws);
	cg_unit_free(t->u);
	arena_free(t->a);
}

/* Compiling a model takes most of the time: each is compiled once, on first
 * use, and freed by the group teardown. */
static tmodel cache[NSPECS];
static bool cached[NSPECS];

static void tmodel_get(tmodel *t, const spec *s)
{
	size_t i = (size_t)(s - specs);
	if (!cached[i]) {
		tmodel_open(&cache[i], s);
		cached[i] = true;
	}
	*t = cache[i];
}
static void tmodel_close(tmodel *t) { (void)t; }

static int teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < NSPECS; i++)
		if (cached[i]) {
			tmodel_close_(&cache[i]);
			cached[i] = false;
		}
	return 0;
}

/* A random raw input around the normalisation's centre. */
static void random_input(const tmodel *t, trng *r, float *x)
{
	double c = t->r.mean, w = t->r.std;
	for (int d = 0; d < t->D; d++)
		x[d] = (float)(c + w * (4 * trng_u(r) - 2));
}

/* Per-example reference quantities. */
typedef struct refx {
	double *z, *f, *G, *J, *Gabs, *Jabs;
	double eps[3], second[3], pred[3];
	int bind[3], label;
} refx;

static void refx_alloc(refx *e, const tmodel *t)
{
	e->z = calloc((size_t)t->H + 1, sizeof(double));
	e->f = calloc((size_t)t->O, sizeof(double));
	e->G = calloc((size_t)(t->H + 1) * t->D, sizeof(double));
	e->Gabs = calloc((size_t)(t->H + 1) * t->D, sizeof(double));
	e->J = calloc((size_t)t->O * t->D, sizeof(double));
	e->Jabs = calloc((size_t)t->O * t->D, sizeof(double));
}
static void refx_free(refx *e)
{
	free(e->z);
	free(e->f);
	free(e->G);
	free(e->Gabs);
	free(e->J);
	free(e->Jabs);
}
static void refx_compute(refx *e, const tmodel *t, const float *x)
{
	ref_forward(&t->r, x, e->z, e->f);
	ref_jacobians(&t->r, e->z, e->G, e->J, e->Gabs, e->Jabs);
	ref_margins(&t->r, e->z, e->G, e->eps, e->bind, e->second);
	e->label = ref_pred(&t->r, e->f, e->J, e->eps, e->pred);
}

static double min_abs_z(const tmodel *t, const double *z)
{
	double m = INFINITY;
	for (int h = 0; h < t->H; h++)
		m = fmin(m, fabs(z[h]));
	return m;
}

/* True when float rounding of points within `reach` (linf) of x cannot
 * move any neuron by more than a thousandth of its |z| at x: then the
 * geometric checks can use the generated forward on float inputs. */
static bool float_robust(const tmodel *t, const float *x, const refx *e, double reach)
{
	double xmax = 0;
	for (int d = 0; d < t->D; d++)
		xmax = fmax(xmax, fabs(x[d]));
	double ulp = (xmax + reach) * FLT_EPSILON;
	for (int h = 0; h < t->H; h++) {
		double g1 = 0;
		for (int d = 0; d < t->D; d++)
			g1 += fabs(e->G[(size_t)h * t->D + d]);
		if (1e-3 * fabs(e->z[h]) < 100 * ulp * g1)
			return false;
	}
	return true;
}

/* ---- 1 and 2: forward and grads ---- */

static void test_forward_grads(void **state)
{
	(void)state;
	double max_z = 0, max_f = 0, max_g = 0, max_fd_ref = 0, max_fd_gen = 0;
	long fd_checked = 0, fd_skipped = 0;
	for (size_t si = 0; si < NSPECS; si++) {
		tmodel t;
		tmodel_get(&t, &specs[si]);
		const rt_model *m = t.m;
		int D = t.D, H = t.H, O = t.O;
		float *x = falloc(D), *z = falloc(H), *lg = falloc(O), *G = falloc((int64_t)H * D);
		double *xd = calloc((size_t)D, sizeof(double)), *zp = calloc((size_t)H, sizeof(double)),
		       *zm = calloc((size_t)H, sizeof(double)), *fp = calloc((size_t)O, sizeof(double)),
		       *fm = calloc((size_t)O, sizeof(double));
		refx e;
		refx_alloc(&e, &t);
		trng r = { 100 + si };
		for (int it = 0; it < 200; it++) {
			random_input(&t, &r, x);
			m->forward(t.P, x, t.ws, z, lg);
			refx_compute(&e, &t, x);
			for (int h = 0; h < H; h++) {
				/* float rounding of a double: relative 2^-24, plus absolute slack for near-zero z
				 * relative to the sizes of the summed terms */
				double err = fabs(z[h] - e.z[h]);
				double tol = 1e-5 * fabs(e.z[h]) + 1e-9;
				if (err > tol)
					fail_msg("%s: input %d: z[%d] = %.9g, reference %.17g", t.s->name, it, h, z[h], e.z[h]);
				max_z = fmax(max_z, relerr(z[h], e.z[h]));
			}
			for (int k = 0; k < O; k++) {
				if (fabs(lg[k] - e.f[k]) > 1e-5 * fabs(e.f[k]) + 1e-9)
					fail_msg("%s: input %d: logit %d = %.9g, reference %.17g", t.s->name, it, k, lg[k], e.f[k]);
				max_f = fmax(max_f, relerr(lg[k], e.f[k]));
			}

			/* gradient rows vs the explicit Jacobian product */
			m->grads(t.P, z, G, t.ws);
			for (int h = 0; h < H; h++)
				for (int d = 0; d < D; d++) {
					size_t i = (size_t)h * D + d;
					double err = fabs(G[i] - e.G[i]);
					/* rel 1e-5 of the element, or of the magnitudes summed into it
					 * (cancellation); an element that is exactly 0 must be 0 */
					double tol = 1e-5 * fmax(fabs(e.G[i]), e.Gabs[i]);
					if (err > tol)
						fail_msg("%s: input %d: G[%d][%d] = %.9g, reference %.17g (|.| sum %.3g)", t.s->name,
						         it, h, d, G[i], e.G[i], e.Gabs[i]);
					if (e.Gabs[i] > 0)
						max_g = fmax(max_g, err / e.Gabs[i]);
				}

			/* central finite differences of the double reference forward */
			if (min_abs_z(&t, e.z) < 1e-4) {
				fd_skipped++;
				continue;
			}
			for (int d = 0; d < D; d++) {
				for (int k = 0; k < D; k++)
					xd[k] = x[k];
				double step = 1e-6 * fmax(1.0, fabs(xd[d]));
				xd[d] = (double)x[d] + step;
				ref_forward_d(&t.r, xd, zp, fp);
				xd[d] = (double)x[d] - step;
				ref_forward_d(&t.r, xd, zm, fm);
				double h2 = ((double)x[d] + step) - ((double)x[d] - step);
				if (ref_pattern_diff_dd(zp, e.z, H) || ref_pattern_diff_dd(zm, e.z, H)) {
					fd_skipped++;
					continue;
				}
				fd_checked++;
				for (int h = 0; h < H; h++) {
					double fd = (zp[h] - zm[h]) / h2;
					size_t i = (size_t)h * D + d;
					double scale = fmax(fabs(e.G[i]), e.Gabs[i]);
					double err = fabs(fd - e.G[i]);
					if (err > 1e-6 * scale + 1e-12)
						fail_msg("%s: input %d: finite difference d z[%d] / d x[%d] = %.12g, reference %.12g",
						         t.s->name, it, h, d, fd, e.G[i]);
					if (scale > 0)
						max_fd_ref = fmax(max_fd_ref, err / scale);
					double eg = fabs(fd - G[i]);
					if (eg > 1e-5 * scale + 1e-12)
						fail_msg("%s: input %d: finite difference d z[%d] / d x[%d] = %.12g, generated %.9g",
						         t.s->name, it, h, d, fd, G[i]);
					if (scale > 0)
						max_fd_gen = fmax(max_fd_gen, eg / scale);
				}
				/* logits too: the Jacobian of the output */
				for (int k = 0; k < O; k++) {
					double fd = (fp[k] - fm[k]) / h2;
					size_t i = (size_t)k * D + d;
					double scale = fmax(fabs(e.J[i]), e.Jabs[i]);
					if (fabs(fd - e.J[i]) > 1e-6 * scale + 1e-12)
						fail_msg("%s: input %d: finite difference d f[%d] / d x[%d] = %.12g, reference %.12g",
						         t.s->name, it, k, d, fd, e.J[i]);
				}
			}
		}
		refx_free(&e);
		free(x);
		free(z);
		free(lg);
		free(G);
		free(xd);
		free(zp);
		free(zm);
		free(fp);
		free(fm);
		tmodel_close(&t);
	}
	/* the finite-difference check must actually have run */
	assert_true(fd_checked > 1000);
	assert_true(fd_skipped < fd_checked / 4);
	printf("[ forward/grads ] max rel err z %.3g, logits %.3g, grads %.3g; finite differences (%ld checked, %ld skipped): "
	       "vs reference %.3g, vs generated %.3g\n",
	       max_z, max_f, max_g, fd_checked, fd_skipped, max_fd_ref, max_fd_gen);
}

/* ---- 3: margins ---- */

static void test_margins(void **state)
{
	(void)state;
	double max_eps[3] = { 0 }, max_pred[3] = { 0 }, max_sub = 0;
	long binds_checked = 0, ties = 0, label_checked = 0;
	for (size_t si = 0; si < NSPECS; si++) {
		tmodel t;
		tmodel_get(&t, &specs[si]);
		const rt_model *m = t.m;
		int D = t.D, H = t.H, O = t.O;
		float *x = falloc(D), *z = falloc(H), *lg = falloc(O), *z2 = falloc(H), *lg2 = falloc(O);
		refx e;
		refx_alloc(&e, &t);
		trng r = { 200 + si };
		for (int it = 0; it < 300; it++) {
			random_input(&t, &r, x);
			rt_cert c;
			memset(&c, 0x55, sizeof c);
			m->certify(t.P, t.pre, x, RT_ALL_NORMS, t.ws, z, lg, &c, NULL);
			m->forward(t.P, x, t.ws, z2, lg2);
			refx_compute(&e, &t, x);
			/* certify's z and logits are the forward pass */
			for (int h = 0; h < H; h++)
				if (fabs(z[h] - z2[h]) > 1e-6 * fabs(z2[h]) + 1e-9)
					fail_msg("%s: certify z[%d] = %.9g, forward %.9g", t.s->name, h, z[h], z2[h]);
			for (int k = 0; k < O; k++)
				if (fabs(lg[k] - lg2[k]) > 1e-6 * fabs(lg2[k]) + 1e-9)
					fail_msg("%s: certify logit %d = %.9g, forward %.9g", t.s->name, k, lg[k], lg2[k]);

			for (int p = 0; p < 3; p++) {
				double re = relerr(c.eps[p], e.eps[p]);
				if (!(re <= 1e-5))
					fail_msg("%s: input %d: eps[%d] = %.9g, reference %.17g", t.s->name, it, p, c.eps[p], e.eps[p]);
				max_eps[p] = fmax(max_eps[p], re);
				if ((e.second[p] - e.eps[p]) > 1e-6 * e.eps[p]) {
					binds_checked++;
					if (c.bind[p] != e.bind[p])
						fail_msg("%s: input %d: norm %d binds neuron %d, reference %d (eps %.9g, runner-up %.9g)",
						         t.s->name, it, p, c.bind[p], e.bind[p], e.eps[p], e.second[p]);
				} else {
					ties++;
					/* a near tie: the chosen neuron must at least attain the minimum */
					assert_true(c.bind[p] >= 0 && c.bind[p] < H);
					double q = ref_dual(e.G + (size_t)c.bind[p] * D, D, p);
					assert_true(relerr(fabs(e.z[c.bind[p]]) / q, e.eps[p]) < 1e-5);
				}
				double rp = relerr(c.eps_pred[p], e.pred[p]);
				/* the gap f_y - f_k may cancel: allow for the logits' rounding in it */
				if (!(rp <= 1e-5)) {
					fail_msg("%s: input %d: eps_pred[%d] = %.9g, reference %.17g (eps %.9g)", t.s->name, it, p,
					         c.eps_pred[p], e.pred[p], e.eps[p]);
				}
				max_pred[p] = fmax(max_pred[p], rp);
				assert_true(c.eps_pred[p] <= c.eps[p]);
			}
			/* subsets of the norms (eps_2 alone may use another algorithm):
			 * the requested norms match the reference just the same */
			static const int32_t subsets[] = { RT_NORM_BIT(RT_L1), RT_NORM_BIT(RT_L2), RT_NORM_BIT(RT_LINF),
				RT_NORM_BIT(RT_L1) | RT_NORM_BIT(RT_L2), RT_NORM_BIT(RT_L2) | RT_NORM_BIT(RT_LINF) };
			for (size_t ss = 0; ss < sizeof subsets / sizeof *subsets; ss++) {
				rt_cert cs;
				m->certify(t.P, t.pre, x, subsets[ss], t.ws, z2, lg2, &cs, NULL);
				assert_int_equal(cs.label, c.label);
				for (int p = 0; p < 3; p++) {
					if (!(subsets[ss] & RT_NORM_BIT(p)))
						continue;
					double re = relerr(cs.eps[p], e.eps[p]), rp = relerr(cs.eps_pred[p], e.pred[p]);
					if (!(re <= 1e-5) || !(rp <= 1e-5))
						fail_msg("%s: input %d: norms %d: eps[%d] = %.9g (reference %.17g), eps_pred %.9g (reference %.17g)",
						         t.s->name, it, subsets[ss], p, cs.eps[p], e.eps[p], cs.eps_pred[p], e.pred[p]);
					max_sub = fmax(max_sub, fmax(re, rp));
					if ((e.second[p] - e.eps[p]) > 1e-6 * e.eps[p] && cs.bind[p] != e.bind[p])
						fail_msg("%s: input %d: norms %d: norm %d binds %d, reference %d", t.s->name, it,
						         subsets[ss], p, cs.bind[p], e.bind[p]);
				}
			}
			/* label: argmax of the reference logits (binary: f > 0) unless a near tie */
			bool near_tie = false;
			if (O == 1) {
				near_tie = fabs(e.f[0]) < 1e-6;
			} else {
				for (int k = 0; k < O; k++)
					if (k != e.label && e.f[e.label] - e.f[k] < 1e-6 * fmax(1, fabs(e.f[e.label])))
						near_tie = true;
			}
			if (!near_tie) {
				label_checked++;
				if (c.label != e.label)
					fail_msg("%s: input %d: label %d, reference %d", t.s->name, it, c.label, e.label);
			}
		}
		refx_free(&e);
		free(x);
		free(z);
		free(lg);
		free(z2);
		free(lg2);
		tmodel_close(&t);
	}
	assert_true(binds_checked > 1000);
	assert_true(label_checked > 1000);
	printf("[ margins ] max rel err eps l1 %.3g l2 %.3g linf %.3g; eps_pred l1 %.3g l2 %.3g linf %.3g; "
	       "%ld binding neurons compared (%ld near ties); norm subsets max rel err %.3g\n",
	       max_eps[0], max_eps[1], max_eps[2], max_pred[0], max_pred[1], max_pred[2], binds_checked, ties, max_sub);
}

/* certify's pruned strategy (cg_certify.c) forms the gradient rows of
 * neurons that may bind and of active units that feed the layer above,
 * nothing else: its certificates must be bit for bit those of the same
 * kernel forming every row (RT_NO_PRUNE), for every set of norms it
 * serves.  And the rows it skips must really be skipped, or the comparison
 * proves nothing: with the workspace filled with a NaN pattern before each call,
 * the pruned call leaves more of it untouched.  The deeper, wider net "p" is
 * where most rows go unformed. */
static const spec prune_spec = { "p", 40, 4, { 32, 32, 32, 32, 10 }, true, 0.1307, 0.3081, 17, 2 };

static void prune_check(const tmodel *t, int inputs, uint64_t seed, long *skipped)
{
	const rt_model *m = t->m;
	float *x = falloc(t->D), *z = falloc(t->H), *lg = falloc(t->O);
	static const int32_t sets[] = { RT_ALL_NORMS, RT_NORM_BIT(RT_L1), RT_NORM_BIT(RT_L2), RT_NORM_BIT(RT_LINF),
		RT_NORM_BIT(RT_L1) | RT_NORM_BIT(RT_L2), RT_NORM_BIT(RT_L2) | RT_NORM_BIT(RT_LINF),
		RT_NORM_BIT(RT_L1) | RT_NORM_BIT(RT_LINF) };
	const uint32_t poison = 0x7fbadbadu;   /* a NaN no arithmetic produces */
	trng r = { seed };
	for (int it = 0; it < inputs; it++) {
		random_input(t, &r, x);
		for (size_t s = 0; s < sizeof sets / sizeof *sets; s++) {
			rt_cert c[2];
			int64_t untouched[2] = { 0, 0 };
			for (int np = 0; np < 2; np++) {
				for (int64_t i = 0; i < m->ws_floats; i++)
					memcpy(&t->ws[i], &poison, sizeof poison);
				memset(&c[np], 0, sizeof c[np]);
				m->certify(t->P, t->pre, x, sets[s] | (np ? RT_NO_PRUNE : 0), t->ws, z, lg, &c[np], NULL);
				for (int64_t i = 0; i < m->ws_floats; i++)
					untouched[np] += memcmp(&t->ws[i], &poison, sizeof poison) == 0;
			}
			if (memcmp(&c[0], &c[1], sizeof c[0]) != 0)
				fail_msg("%s: input %d, norms %d: pruned eps %.9g %.9g %.9g bind %d %d %d, "
				         "unpruned eps %.9g %.9g %.9g bind %d %d %d", t->s->name, it, sets[s], c[0].eps[0],
				         c[0].eps[1], c[0].eps[2], c[0].bind[0], c[0].bind[1], c[0].bind[2], c[1].eps[0],
				         c[1].eps[1], c[1].eps[2], c[1].bind[0], c[1].bind[1], c[1].bind[2]);
			if (untouched[0] < untouched[1])
				fail_msg("%s: input %d, norms %d: %lld untouched pruned, %lld unpruned", t->s->name, it, sets[s], (long long)untouched[0], (long long)untouched[1]);
			*skipped += untouched[0] - untouched[1];
		}
	}
	free(x);
	free(z);
	free(lg);
}

static void test_pruning(void **state)
{
	(void)state;
	long skipped = 0;
	for (size_t si = 0; si < NSPECS; si++) {
		tmodel t;
		tmodel_get(&t, &specs[si]);
		prune_check(&t, 100, 300 + si, &skipped);
		tmodel_close(&t);
	}
	long small = skipped;
	tmodel t;
	tmodel_open(&t, &prune_spec);
	prune_check(&t, 100, 400, &skipped);
	tmodel_close_(&t);
	assert_true(skipped - small > 0);
	printf("[ pruning ] certificates equal with and without pruning; %ld workspace floats left unwritten "
	       "by pruning (%ld in net p)\n", skipped, skipped - small);
}

/* eps_pred where the prediction binds: inputs close to the decision
 * boundary (found by bisection between two inputs with different labels in
 * the reference) have eps_pred < eps, which random inputs rarely show. */
/* (shortfalls up to 1e-11 raw units: about what rounding the gap costs) */
static bool pred_close(double got, double want)
{
	return relerr(got, want) < 1e-5 || (got <= want && want - got < 1e-11);
}

static void test_pred_binding(void **state)
{
	(void)state;
	const int which[] = { 1, 2, 4 };   /* binary, 10 classes, binary with one layer */
	for (int w = 0; w < 3; w++) {
		tmodel t;
		tmodel_get(&t, &specs[which[w]]);
		int D = t.D;
		float *x = falloc(D), *x0 = falloc(D), *x1 = falloc(D), *z = falloc(t.H), *lg = falloc(t.O);
		double *f = calloc((size_t)t.O, sizeof(double)), *zz = calloc((size_t)t.H + 1, sizeof(double));
		refx e;
		refx_alloc(&e, &t);
		trng r = { 300 + (uint64_t)w };
		int strict = 0, tried = 0;
		double maxerr = 0;
		for (int it = 0; it < 400; it++) {
			random_input(&t, &r, x0);
			/* the far side of the centre: piecewise-linear networks are close to
			 * linear far out, so the labels usually differ */
			for (int d = 0; d < D; d++)
				x1[d] = (float)(t.r.mean - (it % 2 ? 10 : 1) * ((double)x0[d] - t.r.mean));
			refx_compute(&e, &t, x0);
			int l0 = e.label;
			refx_compute(&e, &t, x1);
			if (e.label == l0)
				continue;
			double lo = 0, hi = 1;   /* label l0 at lo, another at hi */
			for (int k = 0; k < 22; k++) {
				double mid = (lo + hi) / 2;
				for (int d = 0; d < D; d++)
					x[d] = (float)(x0[d] + mid * ((double)x1[d] - x0[d]));
				refx_compute(&e, &t, x);
				if (e.label == l0)
					lo = mid;
				else
					hi = mid;
			}
			for (int d = 0; d < D; d++)
				x[d] = (float)(x0[d] + lo * ((double)x1[d] - x0[d]));
			rt_cert c;
			t.m->certify(t.P, t.pre, x, RT_ALL_NORMS, t.ws, z, lg, &c, NULL);
			refx_compute(&e, &t, x);
			tried++;
			assert_int_equal(c.label, e.label);
			rt_cert c2;   /* eps_2 alone (the Gram strategy, if the kernel has one) */
			t.m->certify(t.P, t.pre, x, RT_NORM_BIT(RT_L2), t.ws, z, lg, &c2, NULL);
			/* Near the decision boundary the gap f_y - f_k is close to its
			 * rounding error, which the sound radius subtracts (and which
			 * the double reference makes as well): there it may fall short
			 * of the reference by more than elsewhere, never exceed it. */
			if (!(pred_close(c2.eps_pred[1], e.pred[1])) || !(relerr(c2.eps[1], e.eps[1]) < 1e-5))
				fail_msg("%s: boundary input %d: l2 only: eps %.9g eps_pred %.9g, reference %.17g %.17g", t.s->name,
				         it, c2.eps[1], c2.eps_pred[1], e.eps[1], e.pred[1]);
			maxerr = fmax(maxerr, relerr(c2.eps_pred[1], e.pred[1]));
			for (int p = 0; p < 3; p++) {
				double re = relerr(c.eps_pred[p], e.pred[p]);
				if (!pred_close(c.eps_pred[p], e.pred[p]))
					fail_msg("%s: boundary input %d: eps_pred[%d] = %.9g, reference %.17g", t.s->name, it, p,
					         c.eps_pred[p], e.pred[p]);
				maxerr = fmax(maxerr, re);
				assert_true(c.eps_pred[p] <= c.eps[p]);
			}
			/* (a radius below 1e-9 is a step the double reference's own
			 * rounding of the logits cannot resolve to 0.1%) */
			if (e.pred[1] < 0.5 * e.eps[1] && e.pred[1] > 1e-9) {
				strict++;
				/* the prediction holds at 0.999 of the l2 radius along the worst
				 * direction for the decision, -grad(f_y - f_k) for the binding k,
				 * and flips at 1.001 of it (still inside the linear region) */
				int y = e.label, kb = -1;
				double best = INFINITY;
				double *v = calloc((size_t)D, sizeof(double)), *xs = calloc((size_t)D, sizeof(double));
				for (int k = 0; k < (t.O == 1 ? 1 : t.O); k++) {
					if (t.O > 1 && k == y)
						continue;
					double gap = t.O == 1 ? fabs(e.f[0]) : e.f[y] - e.f[k];
					for (int d = 0; d < D; d++)
						v[d] = t.O == 1 ? (e.f[0] > 0 ? 1 : -1) * e.J[d] : e.J[(size_t)y * D + d] - e.J[(size_t)k * D + d];
					double rr = gap / ref_dual(v, D, RT_L2);
					if (rr < best) {
						best = rr;
						kb = k;
					}
				}
				assert_true(relerr(best, e.pred[1]) < 1e-12);
				for (int d = 0; d < D; d++)
					v[d] = t.O == 1 ? (e.f[0] > 0 ? 1 : -1) * e.J[d] : e.J[(size_t)y * D + d] - e.J[(size_t)kb * D + d];
				double n2 = ref_dual(v, D, RT_L2);
				for (int sgn = 0; sgn < 2; sgn++) {
					double fac = sgn ? 1.001 : 0.999;
					for (int d = 0; d < D; d++)
						xs[d] = (double)x[d] - fac * e.pred[1] * v[d] / n2;
					ref_forward_d(&t.r, xs, zz, f);
					assert_int_equal(ref_pattern_diff_dd(zz, e.z, t.H), 0);
					int lab = 0;
					if (t.O == 1)
						lab = f[0] > 0;
					else
						for (int k = 1; k < t.O; k++)
							if (f[k] > f[lab])
								lab = k;
					if (sgn ? lab == y : lab != y)
						fail_msg("%s: label %s at %.4g eps_pred", t.s->name, sgn ? "kept" : "changed", fac);
				}
				free(v);
				free(xs);
			}
		}
		printf("[ eps_pred ] %s: %d of %d boundary inputs have eps_pred_2 < eps_2 / 2; max rel err %.3g\n",
		       t.s->name, strict, tried, maxerr);
		assert_true(tried >= 20);
		assert_true(strict >= tried / 2);
		refx_free(&e);
		free(x);
		free(x0);
		free(x1);
		free(z);
		free(lg);
		free(f);
		free(zz);
		tmodel_close(&t);
	}
}

/* ---- 4: direction ---- */

static void test_direction(void **state)
{
	(void)state;
	double max_t = 0;
	long geo_ref = 0, geo_gen = 0, none = 0;
	for (size_t si = 0; si < NSPECS; si++) {
		tmodel t;
		tmodel_get(&t, &specs[si]);
		const rt_model *m = t.m;
		int D = t.D, H = t.H, O = t.O;
		float *x = falloc(D), *dir = falloc(D), *xs = falloc(D), *zs = falloc(H), *lg = falloc(O);
		double *dd = calloc((size_t)D, sizeof(double)), *xsd = calloc((size_t)D, sizeof(double)),
		       *zsd = calloc((size_t)H, sizeof(double)), *fsd = calloc((size_t)O, sizeof(double));
		refx e;
		refx_alloc(&e, &t);
		trng r = { 400 + si };
		for (int it = 0; it < 300; it++) {
			random_input(&t, &r, x);
			double scale = (it % 3 == 0) ? 1.0 : (it % 3 == 1 ? 1e-2 : 10.0);
			for (int d = 0; d < D; d++) {
				dir[d] = (float)(scale * trng_normal(&r));
				dd[d] = dir[d];
			}
			float tt;
			int32_t tb;
			m->direction(t.P, x, dir, t.ws, &tt, &tb, NULL);
			refx_compute(&e, &t, x);
			int rb;
			double second;
			double rt = ref_direction(&t.r, e.z, e.G, dd, &rb, &second);
			if (isinf(rt)) {
				none++;
				assert_true(isinf(tt) && tt > 0);
				assert_int_equal(tb, -1);
				continue;
			}
			double re = relerr(tt, rt);
			if (!(re <= 1e-5))
				fail_msg("%s: input %d: directional margin %.9g, reference %.17g", t.s->name, it, tt, rt);
			max_t = fmax(max_t, re);
			if (second - rt > 1e-6 * rt && tb != rb)
				fail_msg("%s: input %d: direction binds %d, reference %d", t.s->name, it, tb, rb);

			/* geometry in double: same pattern at 0.999 t, different at 1.001 t */
			for (int s = 0; s < 2; s++) {
				double f = s ? 1.001 : 0.999;
				for (int d = 0; d < D; d++)
					xsd[d] = (double)x[d] + f * rt * dd[d];
				ref_forward_d(&t.r, xsd, zsd, fsd);
				int diff = ref_pattern_diff_dd(zsd, e.z, H);
				if (s ? diff == 0 : diff != 0)
					fail_msg("%s: input %d: pattern %s at %.4g t", t.s->name, it, s ? "unchanged" : "changed", f);
				if (s)
					assert_true((zsd[rb] > 0) != (e.z[rb] > 0));  /* the binding neuron flipped */
			}
			geo_ref++;
			/* and with the generated forward on float points, when rounding cannot matter */
			double reach = 0;
			for (int d = 0; d < D; d++)
				reach = fmax(reach, fabs(1.001 * rt * dd[d]));
			if (float_robust(&t, x, &e, reach)) {
				for (int s = 0; s < 2; s++) {
					double f = s ? 1.001 : 0.999;
					for (int d = 0; d < D; d++)
						xs[d] = (float)((double)x[d] + f * rt * dd[d]);
					m->forward(t.P, xs, t.ws, zs, lg);
					int diff = ref_pattern_diff_fd(zs, e.z, H);
					if (s ? diff == 0 : diff != 0)
						fail_msg("%s: input %d: generated pattern %s at %.4g t", t.s->name, it,
						         s ? "unchanged" : "changed", f);
				}
				geo_gen++;
			}
		}
		refx_free(&e);
		free(x);
		free(dir);
		free(xs);
		free(zs);
		free(lg);
		free(dd);
		free(xsd);
		free(zsd);
		free(fsd);
		tmodel_close(&t);
	}
	assert_true(geo_ref > 1000);
	assert_true(geo_gen > 300);
	printf("[ direction ] max rel err %.3g; geometry checked %ld (reference) / %ld (generated); %ld with no crossing\n",
	       max_t, geo_ref, geo_gen, none);
}

/* ---- 5: geometry of the certified balls ---- */

static void test_geometry(void **state)
{
	(void)state;
	long points_ref = 0, points_gen = 0, toward = 0;
	for (size_t si = 0; si < NSPECS; si++) {
		tmodel t;
		tmodel_get(&t, &specs[si]);
		const rt_model *m = t.m;
		int D = t.D, H = t.H, O = t.O;
		float *x = falloc(D), *xs = falloc(D), *zs = falloc(H), *lg = falloc(O), *z = falloc(H);
		double *u = calloc((size_t)D, sizeof(double)), *xsd = calloc((size_t)D, sizeof(double)),
		       *zsd = calloc((size_t)H, sizeof(double)), *fsd = calloc((size_t)O, sizeof(double));
		refx e;
		refx_alloc(&e, &t);
		trng r = { 500 + si };
		for (int p = 0; p < 3; p++) {
			int found = 0;
			for (int tries = 0; found < 3 && tries < 500; tries++) {
				random_input(&t, &r, x);
				rt_cert c;
				m->certify(t.P, t.pre, x, RT_ALL_NORMS, t.ws, z, lg, &c, NULL);
				refx_compute(&e, &t, x);
				if (c.bind[p] < 0 || fabs(e.z[c.bind[p]]) < 1e-2)
					continue;
				double eps = c.eps[p];   /* the generated certificate is what is verified */
				assert_true(relerr(eps, e.eps[p]) < 1e-5);
				bool gen = float_robust(&t, x, &e, eps * 1.001);
				found++;
				for (int k = 0; k < 1000; k++) {
					bool volume = k < 500;
					sample_ball(&r, p, D, volume, u);
					double nu = lp_norm(u, D, p);
					assert_true(nu <= 1 + 1e-12);
					if (!volume)
						assert_true(fabs(nu - 1) < 1e-12);
					double rad = volume ? eps : 0.999 * eps;
					/* the float eps may round up: stay strictly inside the exact ball */
					rad *= 1 - 1e-6;
					for (int d = 0; d < D; d++)
						xsd[d] = (double)x[d] + rad * u[d];
					ref_forward_d(&t.r, xsd, zsd, fsd);
					int diff = ref_pattern_diff_dd(zsd, e.z, H);
					if (diff)
						fail_msg("%s: norm %d: point %d at |u|=%.6g of the ball (eps %.9g) changes %d neurons",
						         t.s->name, p, k, nu * rad / eps, eps, diff);
					points_ref++;
					if (gen) {
						for (int d = 0; d < D; d++)
							xs[d] = (float)xsd[d];
						m->forward(t.P, xs, t.ws, zs, lg);
						if (ref_pattern_diff_fd(zs, e.z, H))
							fail_msg("%s: norm %d: generated pattern changes at point %d", t.s->name, p, k);
						points_gen++;
					}
				}
				/* just past the ball toward the binding neuron's hyperplane */
				int b = c.bind[p];
				const double *g = e.G + (size_t)b * D;
				double sz = e.z[b] > 0 ? 1 : -1;
				memset(u, 0, sizeof(double) * (size_t)D);
				if (p == RT_L2) {
					double n2 = ref_dual(g, D, RT_L2);
					for (int d = 0; d < D; d++)
						u[d] = -sz * g[d] / n2;
				} else if (p == RT_LINF) {
					for (int d = 0; d < D; d++)
						u[d] = -sz * (g[d] > 0 ? 1 : g[d] < 0 ? -1 : 0);
				} else {
					int kmax = 0;
					for (int d = 1; d < D; d++)
						if (fabs(g[d]) > fabs(g[kmax]))
							kmax = d;
					u[kmax] = -sz * (g[kmax] > 0 ? 1 : -1);
				}
				assert_true(lp_norm(u, D, p) <= 1 + 1e-12);
				for (int d = 0; d < D; d++)
					xsd[d] = (double)x[d] + 1.001 * eps * u[d];
				ref_forward_d(&t.r, xsd, zsd, fsd);
				if (ref_pattern_diff_dd(zsd, e.z, H) == 0)
					fail_msg("%s: norm %d: pattern unchanged at 1.001 eps toward neuron %d", t.s->name, p, b);
				/* and 0.999 eps along the same vector stays inside */
				for (int d = 0; d < D; d++)
					xsd[d] = (double)x[d] + 0.999 * eps * u[d];
				ref_forward_d(&t.r, xsd, zsd, fsd);
				assert_int_equal(ref_pattern_diff_dd(zsd, e.z, H), 0);
				if (gen) {
					for (int d = 0; d < D; d++)
						xs[d] = (float)((double)x[d] + 1.001 * eps * u[d]);
					m->forward(t.P, xs, t.ws, zs, lg);
					if (ref_pattern_diff_fd(zs, e.z, H) == 0)
						fail_msg("%s: norm %d: generated pattern unchanged at 1.001 eps", t.s->name, p);
				}
				toward++;
			}
			assert_int_equal(found, 3);
		}
		refx_free(&e);
		free(x);
		free(xs);
		free(zs);
		free(lg);
		free(z);
		free(u);
		free(xsd);
		free(zsd);
		free(fsd);
		tmodel_close(&t);
	}
	assert_true(points_gen > points_ref / 3);
	printf("[ geometry ] %ld ball points (reference), %ld (generated forward), %ld boundary crossings\n",
	       points_ref, points_gen, toward);
}

/* The samplers themselves: volume samples have the right radial law
 * (P(|u| <= 1/2) = 2^-D) and fill the ball symmetrically. */
static void test_samplers(void **state)
{
	(void)state;
	trng r = { 77 };
	const int D = 3, N = 40000;
	double u[3];
	for (int p = 0; p < 3; p++) {
		int inner = 0;
		double mean[3] = { 0 };
		for (int k = 0; k < N; k++) {
			sample_ball(&r, p, D, true, u);
			double n = lp_norm(u, D, p);
			assert_true(n <= 1);
			inner += n <= 0.5;
			for (int d = 0; d < D; d++)
				mean[d] += u[d] / N;
		}
		/* expected N/8 = 5000, sd ~ 66 */
		assert_true(abs(inner - N / 8) < 400);
		for (int d = 0; d < D; d++)
			assert_true(fabs(mean[d]) < 0.02);
	}
	/* l1 surface: each coordinate's |u_d| is Beta(1, D-1), mean 1/D */
	double m0 = 0;
	for (int k = 0; k < N; k++) {
		sample_ball(&r, RT_L1, D, false, u);
		m0 += fabs(u[0]) / N;
	}
	assert_true(fabs(m0 - 1.0 / D) < 0.01);
}

/* ---- 6: batches across threads ---- */

static void test_batch(void **state)
{
	(void)state;
	for (size_t si = 0; si < NSPECS; si++) {
		tmodel t;
		tmodel_get(&t, &specs[si]);
		const rt_model *m = t.m;
		const int n = 37;
		int D = t.D;
		float *x = falloc((int64_t)n * D), *dirs = falloc((int64_t)n * D);
		trng r = { 600 + si };
		for (int i = 0; i < n; i++) {
			random_input(&t, &r, x + (size_t)i * D);
			for (int d = 0; d < D; d++)
				dirs[(size_t)i * D + d] = (float)trng_normal(&r);
		}
		rt_cert *cert[3];
		uint64_t *pat[3];
		float *tt[3];
		int32_t *tb[3];
		for (int th = 1; th <= 3; th++) {
			cert[th - 1] = calloc(n, sizeof(rt_cert));
			pat[th - 1] = calloc(n, sizeof(uint64_t));
			tt[th - 1] = calloc(n, sizeof(float));
			tb[th - 1] = calloc(n, sizeof(int32_t));
			rt_batch b = { .x = x, .n = n, .dirs = dirs, .n_dirs = n, .norms = RT_ALL_NORMS, .threads = th,
			               .cert = cert[th - 1], .pattern = pat[th - 1], .t = tt[th - 1], .tbind = tb[th - 1] };
			assert_int_equal(rt_certify_batch(m, t.P, &b), 0);
		}
		for (int th = 1; th < 3; th++) {
			assert_memory_equal(cert[0], cert[th], sizeof(rt_cert) * n);
			assert_memory_equal(pat[0], pat[th], sizeof(uint64_t) * n);
			assert_memory_equal(tt[0], tt[th], sizeof(float) * n);
			assert_memory_equal(tb[0], tb[th], sizeof(int32_t) * n);
		}
		/* per example: the same bytes as the kernels called directly */
		float *z = falloc(t.H), *lg = falloc(t.O);
		for (int i = 0; i < n; i++) {
			rt_cert c;
			memset(&c, 0, sizeof c);
			m->certify(t.P, t.pre, x + (size_t)i * D, RT_ALL_NORMS, t.ws, z, lg, &c, NULL);
			assert_memory_equal(&c, &cert[0][i], sizeof c);
			m->forward(t.P, x + (size_t)i * D, t.ws, z, lg);
			assert_true(pat[0][i] == rt_pattern_hash(z, t.H));
			float td;
			int32_t bd;
			m->direction(t.P, x + (size_t)i * D, dirs + (size_t)i * D, t.ws, &td, &bd, NULL);
			assert_memory_equal(&td, &tt[0][i], sizeof td);
			assert_int_equal(bd, tb[0][i]);
		}
		/* one direction for all inputs */
		float *t1 = calloc(n, sizeof(float));
		int32_t *b1 = calloc(n, sizeof(int32_t));
		rt_cert *c1 = calloc(n, sizeof(rt_cert));
		rt_batch b = { .x = x, .n = n, .dirs = dirs, .n_dirs = 1, .norms = RT_ALL_NORMS, .threads = 2,
		               .cert = c1, .pattern = NULL, .t = t1, .tbind = b1 };
		assert_int_equal(rt_certify_batch(m, t.P, &b), 0);
		assert_memory_equal(c1, cert[0], sizeof(rt_cert) * n);
		for (int i = 0; i < n; i++) {
			float td;
			int32_t bd;
			m->direction(t.P, x + (size_t)i * D, dirs, t.ws, &td, &bd, NULL);
			assert_memory_equal(&td, &t1[i], sizeof td);
			assert_int_equal(bd, b1[i]);
		}
		/* the hashes distinguish patterns: distinct hashes <= distinct patterns,
		 * and equal patterns hash equally */
		for (int i = 0; i < n; i++)
			for (int j = 0; j < i; j++) {
				float *zi = falloc(t.H), *zj = falloc(t.H);
				m->forward(t.P, x + (size_t)i * D, t.ws, zi, lg);
				m->forward(t.P, x + (size_t)j * D, t.ws, zj, lg);
				bool same = true;
				for (int h = 0; h < t.H; h++)
					same &= (zi[h] > 0) == (zj[h] > 0);
				if (same)
					assert_true(pat[0][i] == pat[0][j]);
				free(zi);
				free(zj);
			}
		free(t1);
		free(b1);
		free(c1);
		free(z);
		free(lg);
		for (int th = 0; th < 3; th++) {
			free(cert[th]);
			free(pat[th]);
			free(tt[th]);
			free(tb[th]);
		}
		free(x);
		free(dirs);
		tmodel_close(&t);
	}
}

/* ---- 7: no hidden layer ---- */

static void test_no_hidden(void **state)
{
	(void)state;
	arena *a = arena_new();
	sema_program *p = front_end(a, "model lin {\n  input x[4] normalize(0.5, 2);\n  out = dense(x, 3);\n  output out;\n}\n");
	if (!p) {
		/* sema may reject a model without hidden neurons; then it must say so */
		arena_free(a);
		printf("[ no hidden ] rejected by sema\n");
		return;
	}
	ir_module *ir = ir_lower(a, p);
	char err[RT_ERRLEN];
	cg_options co = { .opt_level = test_opt(2) };
	cg_unit *u = cg_generate(ir, &co, err);
	assert_non_null(u);
	const rt_model *m = cg_jit(u, err);
	assert_non_null(m);
	assert_int_equal(m->n_hidden, 0);
	assert_int_equal(m->n_layers, 0);
	assert_int_equal(m->n_out, 3);
	float *P = falloc(m->n_params), *pre = falloc(m->pre_floats), *ws = falloc(m->ws_floats);
	rt_init_params(m->tensors, m->n_tensors, 5, RT_INIT_HE, P);
	m->prepare(P, pre);
	ref_net r;
	int sizes[1] = { 3 };
	ref_init(&r, 4, 0, sizes, m->mean, m->std, P);
	trng g = { 9 };
	for (int it = 0; it < 50; it++) {
		float x[4], z[1], lg[3], d[4];
		for (int k = 0; k < 4; k++) {
			x[k] = (float)(4 * trng_u(&g) - 1.5);
			d[k] = (float)trng_normal(&g);
		}
		rt_cert c;
		m->certify(P, pre, x, RT_ALL_NORMS, ws, z, lg, &c, NULL);
		double f[3], J[12], eps[3] = { INFINITY, INFINITY, INFINITY }, pred[3];
		ref_forward(&r, x, NULL, f);
		ref_jacobians(&r, NULL, NULL, J, NULL, NULL);
		int y = ref_pred(&r, f, J, eps, pred);
		assert_int_equal(c.label, y);
		for (int q = 0; q < 3; q++) {
			assert_true(isinf(c.eps[q]) && c.eps[q] > 0);
			assert_int_equal(c.bind[q], -1);
			assert_true(relerr(c.eps_pred[q], pred[q]) < 1e-5);
		}
		for (int k = 0; k < 3; k++)
			assert_true(relerr(lg[k], f[k]) < 1e-5);
		float t;
		int32_t b;
		m->direction(P, x, d, ws, &t, &b, NULL);
		assert_true(isinf(t) && t > 0);
		assert_int_equal(b, -1);
	}
	ref_free(&r);
	free(P);
	free(pre);
	free(ws);
	cg_unit_free(u);
	arena_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_samplers),
		cmocka_unit_test(test_forward_grads),
		cmocka_unit_test(test_margins),
		cmocka_unit_test(test_pruning),
		cmocka_unit_test(test_pred_binding),
		cmocka_unit_test(test_direction),
		cmocka_unit_test(test_geometry),
		cmocka_unit_test(test_batch),
		cmocka_unit_test(test_no_hidden),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
