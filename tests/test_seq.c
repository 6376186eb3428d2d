/* test_seq.c: models over sequences of free length (input x[*, F]) against
 * a naive double-precision reference (ref_graph.h), central finite
 * differences and the geometry of the activation region.
 *
 * A sequence of L frames reaches the kernels left-padded to max_len frames;
 * every number they give must be the sequence's own, as if the model had
 * been written for exactly L frames.  So each check builds the reference
 * for the sequence's own length (ref_graph.h's rnn over L steps, written
 * independently of the compiler) and compares the kernels' outputs on the
 * sequence's own neurons and input values, and requires exact zeros (or
 * silence) at the padding.  Lengths 1 to 30 are mixed in one batch.
 *
 * Models: the acceptance example of issue 12 (tests/data/vowels.lln, read
 * as the file is), a stacked rnn with a ReLU dense head and normalize, and
 * two seeded random shapes (one or two layers, a head or none).
 * test_commands runs the acceptance example through llnc as a user would:
 * check, build a certifier, certify a .ts file, train.
 * Tolerances are test_conv.c's (its header explains them).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llnc.h"
#include "ref_graph.h"
#include "sample.h"
#include "tmpfiles.h"

#define LLNC LLN_BINARY_DIR "/llnc"
#define VOWELS LLN_SOURCE_DIR "/tests/data/vowels.lln"

#define MAXLEN 30
#define TOL_Z 1e-6
#define TOL_G 2e-5

/* A model: rnn(x, h1) [, rnn(., h2)] -> last [-> relu(dense(., d))] ->
 * dense(., o), over frames of f values. */
typedef struct shape {
	int f, h1, h2, d, o;
	double mean, std;
} shape;

typedef struct smodel {
	const char *name, *file;   /* file: the .lln as written, else generated */
	shape sh;
	char text[512];
	arena *a;
	cg_unit *u;
	const rt_model *m;
	float *P, *pre;
} smodel;

/* The reference for a sequence of L frames. */
static void build(const shape *sh, rg_graph *g, int L)
{
	rg_input(g, 1, L, sh->f, sh->mean, sh->std);
	int v = rg_rnn(g, "h", 0, L, sh->h1);
	if (sh->h2)
		v = rg_rnn(g, "s", v - (L - 1), L, sh->h2);
	if (sh->d)
		v = rg_dense(g, "f", v, sh->d, true);
	rg_output(g, rg_dense(g, "out", v, sh->o, false));
}

static void source_text(smodel *s)
{
	const shape *sh = &s->sh;
	int k = snprintf(s->text, sizeof s->text, "model %s {\n  input x[*, %d]", s->name, sh->f);
	if (sh->mean != 0 || sh->std != 1)
		k += snprintf(s->text + k, sizeof s->text - (size_t)k, " normalize(%.17g, %.17g)", sh->mean, sh->std);
	k += snprintf(s->text + k, sizeof s->text - (size_t)k, ";\n  h = rnn(x, %d);\n", sh->h1);
	const char *last = "h";
	if (sh->h2) {
		k += snprintf(s->text + k, sizeof s->text - (size_t)k, "  s = rnn(h, %d);\n", sh->h2);
		last = "s";
	}
	if (sh->d)
		k += snprintf(s->text + k, sizeof s->text - (size_t)k, "  f = relu(dense(last(%s), %d));\n"
		              "  out = dense(f, %d);\n", last, sh->d, sh->o);
	else
		k += snprintf(s->text + k, sizeof s->text - (size_t)k, "  out = dense(last(%s), %d);\n", last, sh->o);
	snprintf(s->text + k, sizeof s->text - (size_t)k, "  output out;\n}\n");
}

/* The acceptance example, a stacked rnn with a ReLU head and normalize, and
 * two seeded random shapes (random_shapes). */
static smodel models[] = {
	{ .name = "vowels", .file = LLN_SOURCE_DIR "/tests/data/vowels.lln", .sh = { 12, 16, 0, 0, 9, 0, 1 } },
	{ .name = "stack", .sh = { 2, 3, 2, 4, 3, 0.1, 0.8 } },
	{ .name = "random1" },
	{ .name = "random2" },
};
#define NMODELS (sizeof models / sizeof *models)

static double *dalloc(int64_t n)
{
	double *p = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
	assert_non_null(p);
	return p;
}

/* Compiled through the whole front end for MAXLEN frames; -O0 keeps the
 * build of 30 unrolled steps short, and changes no arithmetic. */
static const smodel *compiled(smodel *s, uint64_t seed)
{
	if (s->m)
		return s;
	s->a = arena_new();
	if (!s->file && !s->text[0])
		source_text(s);
	source *src = s->file ? source_load(s->a, s->file) : source_from_string(s->a, "test.lln", s->text);
	assert_non_null(src);
	ast_program *ast = ast_parse(s->a, src);
	sema_program *p = ast ? sema_check_len(s->a, ast, MAXLEN) : NULL;
	assert_non_null(p);
	ir_module *ir = ir_lower(s->a, p);
	assert_non_null(ir);
	char err[RT_ERRLEN];
	s->u = cg_generate(ir, &(cg_options){ .opt_level = 0 }, err);
	if (!s->u)
		fail_msg("%s: %s", s->name, err);
	s->m = cg_jit(s->u, err);
	if (!s->m)
		fail_msg("%s: %s", s->name, err);
	assert_int_equal(s->m->max_len, MAXLEN);
	assert_int_equal(s->m->frame, s->sh.f);
	assert_int_equal(s->m->n_in, MAXLEN * s->sh.f);
	s->P = falloc(s->m->n_params);
	s->pre = falloc(s->m->pre_floats);
	rt_init_params(s->m->tensors, s->m->n_tensors, seed, RT_INIT_PYTORCH, s->P);
	s->m->prepare(s->P, s->pre);
	return s;
}

/* A seeded random shape: 1 to 4 values a frame, one or two rnn layers of 2
 * to 6 units, a ReLU dense head or none, 2 to 4 logits, normalize or not. */
static shape random_shape(uint64_t seed)
{
	trng r = { seed };
	shape sh = { 1 + trng_int(&r, 4), 2 + trng_int(&r, 5), 0, 0, 2 + trng_int(&r, 3), 0, 1 };
	if (trng_int(&r, 2))
		sh.h2 = 2 + trng_int(&r, 3);
	if (trng_int(&r, 2))
		sh.d = 3 + trng_int(&r, 4);
	if (trng_int(&r, 2))
		sh.mean = trng_u(&r) - 0.5, sh.std = 0.5 + trng_u(&r);
	return sh;
}

static const smodel *model(size_t i)
{
	if (!models[i].sh.f)
		models[i].sh = random_shape(2000 + i);
	return compiled(&models[i], 7 + i);
}

static void smodel_free(smodel *s)
{
	cg_unit_free(s->u);
	if (s->a)
		arena_free(s->a);
	free(s->P);
	free(s->pre);
}

static int teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < NMODELS; i++)
		smodel_free(&models[i]);
	return 0;
}

/* A random sequence of L frames, left-padded into x (max_len frames). */
static void random_seq(const rt_model *m, trng *r, int L, float *x)
{
	int pad = (m->max_len - L) * m->frame;
	memset(x, 0, sizeof(float) * (size_t)pad);
	for (int d = pad; d < m->n_in; d++)
		x[d] = (float)(2 * trng_u(r) - 1);
}

/* The reference for a sequence of L frames: its graph with the weights. */
typedef struct ref {
	rg_graph g;
	double *z, *f, *zmag, *fmag, *G, *Gabs, *J;
	double eps[3], second[3], pred[3];
	int bind[3], label;
} ref;

static void ref_open(ref *e, const smodel *s, int L, const float *x)
{
	build(&s->sh, &e->g, L);
	rg_load_f(&e->g, s->P);
	const rg_graph *g = &e->g;
	int pad = (s->m->max_len - L) * s->sh.f;
	e->z = dalloc(g->Hn), e->zmag = dalloc(g->Hn), e->f = dalloc(g->O), e->fmag = dalloc(g->O);
	e->G = dalloc((int64_t)g->Hn * g->D), e->Gabs = dalloc((int64_t)g->Hn * g->D), e->J = dalloc((int64_t)g->O * g->D);
	rg_forward_f(g, x + pad, e->z, e->f, e->zmag, e->fmag);
	rg_jacobians(g, e->z, 1 / g->std, e->G, e->J, e->Gabs, NULL);
	rg_margins(g, e->z, e->G, e->eps, e->bind, e->second);
	e->label = rg_pred(g, e->f, e->J, e->eps, e->pred);
}

static void ref_close(ref *e)
{
	free(e->z), free(e->f), free(e->zmag), free(e->fmag), free(e->G), free(e->Gabs), free(e->J);
	rg_free(&e->g);
}

/* The kernel's neuron h as the reference numbers it (its place among the
 * live neurons), -1 for padding. */
static int ref_neuron(int32_t h, const int32_t *live, int32_t nlive)
{
	for (int32_t i = 0; i < nlive; i++)
		if (live[i] == h)
			return i;
	return -1;
}

/* A kernel radius against the reference's: never above it (the reference
 * stands in for exact arithmetic), and within the rounding of float rows. */
static void check_radius(const char *what, const smodel *s, int L, float got, double want)
{
	if (isinf(want)) {
		if (!isinf(got))
			fail_msg("%s L=%d %s: %.9g, reference unbounded", s->name, L, what, got);
		return;
	}
	if (!(got <= want * (1 + 1e-9)) || !(got >= want * (1 - 1e-4)))
		fail_msg("%s L=%d %s: %.9g, reference %.12g", s->name, L, what, got, want);
}

/* Every kernel on a batch of sequences of lengths 1 to 30 in shuffled
 * order: certify (radii, binding neurons, prediction radii, patterns) and
 * direction through rt_certify_batch, then forward, grads and input_grad. */
static void test_kernels(void **state)
{
	(void)state;
	for (size_t mi = 0; mi < NMODELS; mi++) {
		const smodel *s = model(mi);
		const rt_model *m = s->m;
		const int D = m->n_in, H = m->n_hidden, O = m->n_out, n = MAXLEN;
		trng r = { 100 + mi };
		int32_t lens[MAXLEN];
		for (int i = 0; i < n; i++)
			lens[i] = i + 1;
		for (int i = n - 1; i > 0; i--) {
			int j = trng_int(&r, i + 1), t = lens[i];
			lens[i] = lens[j], lens[j] = t;
		}
		float *X = falloc((int64_t)n * D), *dirs = falloc((int64_t)n * D);
		for (int i = 0; i < n; i++) {
			random_seq(m, &r, lens[i], X + (int64_t)i * D);
			random_seq(m, &r, lens[i], dirs + (int64_t)i * D);
		}
		rt_batch b = { .x = X, .len = lens, .n = n, .dirs = dirs, .n_dirs = n, .norms = 7, .threads = 2 };
		b.cert = calloc((size_t)n, sizeof *b.cert);
		b.pattern = calloc((size_t)n, sizeof *b.pattern);
		b.t = calloc((size_t)n, sizeof *b.t);
		b.tbind = calloc((size_t)n, sizeof *b.tbind);
		assert_int_equal(rt_certify_batch(m, s->P, &b), 0);

		float *ws = falloc(m->ws_floats), *z = falloc(H + 1), *lg = falloc(O), *G = falloc((int64_t)H * D);
		double *ig = dalloc(D);
		int32_t *live = malloc(sizeof *live * (size_t)(H + 1));
		int binds = 0;
		for (int i = 0; i < n; i++) {
			int L = lens[i], pad = (MAXLEN - L) * s->sh.f;
			const float *x = X + (int64_t)i * D;
			ref e;
			ref_open(&e, s, L, x);
			int32_t nlive = rt_seq_live(m, L, live);
			assert_int_equal(nlive, e.g.Hn);
			const rt_cert *c = &b.cert[i];
			assert_int_equal(c->undecided, 0);
			assert_int_equal(c->label, e.label);
			for (int p = 0; p < 3; p++) {
				check_radius("eps", s, L, c->eps[p], e.eps[p]);
				check_radius("eps_pred", s, L, c->eps_pred[p], e.pred[p]);
				if (e.second[p] > e.eps[p] * (1 + 1e-3)) {   /* no near tie */
					assert_int_equal(ref_neuron(c->bind[p], live, nlive), e.bind[p]);
					binds++;
				}
			}
			/* the direction, from the sequence's own values */
			double *dd = dalloc(e.g.D);
			for (int d = 0; d < e.g.D; d++)
				dd[d] = dirs[(int64_t)i * D + pad + d];
			int tb;
			double t2, t = rg_direction(&e.g, e.z, e.G, dd, &tb, &t2);
			check_radius("eps_dir", s, L, b.t[i], t);
			if (isfinite(t) && t2 > t * (1 + 1e-3))
				assert_int_equal(ref_neuron(b.tbind[i], live, nlive), tb);
			free(dd);
			/* the pattern: the signs of the sequence's own neurons */
			for (int h = 0; h < e.g.Hn; h++)
				z[h] = (float)e.z[h];
			assert_true(b.pattern[i] == rt_pattern_hash(z, e.g.Hn));

			rt_seq_begin(m, ws, L);
			m->forward(s->P, x, ws, z, lg);
			for (int32_t h = 0, k = 0; h < H; h++) {
				if (k < nlive && live[k] == h) {
					if (!(fabs(z[h] - e.z[k]) <= TOL_Z * e.zmag[k]))
						fail_msg("%s L=%d: z[%d] = %.9g, reference %.17g", s->name, L, h, z[h], e.z[k]);
					k++;
				} else if (z[h] != 0) {
					fail_msg("%s L=%d: padding neuron %d is %g, not 0", s->name, L, h, z[h]);
				}
			}
			for (int k = 0; k < O; k++)
				if (!(fabs(lg[k] - e.f[k]) <= TOL_Z * e.fmag[k]))
					fail_msg("%s L=%d: logit %d = %.9g, reference %.17g", s->name, L, k, lg[k], e.f[k]);
			/* gradient rows of the own neurons: 0 on the padding */
			m->grads(s->P, z, G, ws);
			for (int32_t k = 0; k < nlive; k++)
				for (int d = 0; d < D; d++) {
					float gv = G[(int64_t)live[k] * D + d];
					double want = d < pad ? 0 : e.G[(int64_t)k * e.g.D + d - pad];
					double tol = d < pad ? 0 : TOL_G * fmax(fabs(want), e.Gabs[(int64_t)k * e.g.D + d - pad]);
					if (!(fabs(gv - want) <= tol))
						fail_msg("%s L=%d: row of neuron %d, input %d: %.9g, reference %.12g", s->name, L, live[k],
						         d, gv, want);
				}
			for (int k = 0; k < O; k++) {
				rt_seq_begin(m, ws, L);
				m->input_grad(s->P, x, k, ws, ig);
				for (int d = 0; d < D; d++) {
					double want = d < pad ? 0 : e.J[(int64_t)k * e.g.D + d - pad];
					if (!(fabs(ig[d] - want) <= 1e-9 * fmax(1, fabs(want))))
						fail_msg("%s L=%d: input_grad %d [%d] = %.12g, reference %.12g", s->name, L, k, d, ig[d],
						         want);
				}
			}
			ref_close(&e);
		}
		printf("[ kernels ] %s (%d values a frame, rnn %d, rnn %d, dense %d, %d logits): %d sequences of 1 to %d frames in one batch agree with the reference "
		       "(%d binding neurons compared)\n", s->name, s->sh.f, s->sh.h1, s->sh.h2, s->sh.d, s->sh.o, n, MAXLEN, binds);
		assert_true(binds >= n);
		free(X), free(dirs), free(b.cert), free(b.pattern), free(b.t), free(b.tbind);
		free(ws), free(z), free(lg), free(G), free(ig), free(live);
	}
}

/* The mean loss of a batch of sequences (each at its own length) by the
 * reference, and a hash of the smooth piece it lies on. */
static double ref_batch_loss(const smodel *s, const double *Pd, const float *X, const int32_t *lens,
                             const int32_t *y, int nb, const rg_loss_spec *ls, uint64_t *piece, double *kink)
{
	double sum = 0;
	uint64_t pc = 0;
	*kink = INFINITY;
	for (int i = 0; i < nb; i++) {
		rg_graph g;
		build(&s->sh, &g, lens[i]);
		rg_load(&g, Pd);
		rg_example ex;
		rg_example_alloc(&g, &ex);
		sum += rg_loss(&g, X + (int64_t)i * s->m->n_in + (int64_t)(s->m->max_len - lens[i]) * s->sh.f, y[i], ls, &ex);
		pc = rg_mix(pc, ex.piece);
		*kink = fmin(*kink, ex.kink);
		rg_example_free(&ex);
		rg_free(&g);
	}
	*piece = pc;
	return sum / nb;
}

/* rt_batch_grad on a batch of mixed lengths against central differences
 * of the reference loss: the regularizer of each sequence over its own
 * neurons, the batch's loss the mean over sequences. */
static void check_training(size_t mi, const rt_objective *ob, const rg_loss_spec *ls, const char *what)
{
	const smodel *s = model(mi);
	const rt_model *m = s->m;
	enum { NB = 6 };
	const int32_t lens[NB] = { 1, 7, MAXLEN, 12, 2, 19 };
	const int D = m->n_in;
	float *X = falloc((int64_t)NB * D);
	int32_t y[NB];
	double *Pd = dalloc(m->n_params);
	for (int64_t i = 0; i < m->n_params; i++)
		Pd[i] = s->P[i];
	trng r = { 300 + mi * 7 + (uint64_t)ls->kind * 31 + (uint64_t)ls->gamma };
	uint64_t piece0 = 0;
	double kink = 0, L0 = 0;
	for (int tries = 0; tries < 200 && !(kink >= 1e-4); tries++) {
		for (int i = 0; i < NB; i++) {
			random_seq(m, &r, lens[i], X + (int64_t)i * D);
			y[i] = trng_int(&r, m->n_out);
		}
		L0 = ref_batch_loss(s, Pd, X, lens, y, NB, ls, &piece0, &kink);
	}
	if (!(kink >= 1e-4))
		fail_msg("%s %s: no batch away from the kinks", s->name, what);

	float *grad = falloc(m->n_params), *grad2 = falloc(m->n_params);
	double loss, loss2;
	for (int threads = 1; threads <= 2; threads++) {
		rt_grad_ctx *c = rt_grad_ctx_new(m, threads);
		assert_non_null(c);
		rt_grad_ctx_lengths(c, lens);
		assert_int_equal(rt_batch_grad_ctx(c, ob, s->P, s->pre, X, y, NULL, NB, threads == 1 ? grad : grad2,
		                                   threads == 1 ? &loss : &loss2, NULL), 0);
		rt_grad_ctx_free(c);
	}
	if (!(fabs(loss - L0) <= 1e-4 * fmax(1, fabs(L0))))
		fail_msg("%s %s: loss %.9g, reference %.12g", s->name, what, loss, L0);
	assert_true(fabs(loss2 - loss) <= 1e-6 * fmax(1, fabs(loss)));

	int checked = 0, skipped = 0;
	double gscale = 1e-6, worst = 0;
	enum { PER = 12 };
	int64_t which[64];
	double fd[64];
	int nw = 0;
	for (int ti = 0; ti < m->n_tensors && nw + PER <= 64; ti++)
		for (int k = 0; k < PER && k < m->tensors[ti].count; k++)
			which[nw++] = m->tensors[ti].offset + (int64_t)(trng_next(&r) % (uint64_t)m->tensors[ti].count);
	for (int k = 0; k < nw; k++) {
		int64_t i = which[k];
		double h = 1e-6 * fmax(1, fabs(Pd[i])), keep = Pd[i], kp, km;
		uint64_t pp, pm;
		Pd[i] = keep + h;
		double lp = ref_batch_loss(s, Pd, X, lens, y, NB, ls, &pp, &kp);
		Pd[i] = keep - h;
		double lm = ref_batch_loss(s, Pd, X, lens, y, NB, ls, &pm, &km);
		Pd[i] = keep;
		fd[k] = pp == piece0 && pm == piece0 ? (lp - lm) / (2 * h) : NAN;
		if (!isnan(fd[k]))
			gscale = fmax(gscale, fabs(fd[k]));
	}
	for (int k = 0; k < nw; k++) {
		if (isnan(fd[k])) {
			skipped++;
			continue;
		}
		int64_t i = which[k];
		double err = fabs(fd[k] - grad[i]), tol = 2e-3 * fabs(fd[k]) + 2e-4 * gscale;
		worst = fmax(worst, err / (fabs(fd[k]) + 0.1 * gscale));
		if (!(err <= tol))
			fail_msg("%s %s: parameter %lld: finite difference %.9g, rt_batch_grad %.9g", s->name, what,
			         (long long)i, fd[k], grad[i]);
		if (!(fabs(grad2[i] - grad[i]) <= 1e-5 * fabs(grad[i]) + 1e-6 * gscale))
			fail_msg("%s %s: parameter %lld: 2 threads %.9g, 1 thread %.9g", s->name, what, (long long)i, grad2[i],
			         grad[i]);
		checked++;
	}
	assert_true(checked >= nw * 3 / 4);
	printf("[ training ] %s %s: loss %.6g (reference %.9g), %d parameters checked (%d at kinks), worst err %.3g\n",
	       s->name, what, loss, L0, checked, skipped, worst);
	free(X), free(Pd), free(grad), free(grad2);
}

static void test_train(void **state)
{
	(void)state;
	static const struct {
		rt_objective o;
		rg_loss_spec ls;
		const char *what;
	} objs[] = {
		{ { .kind = RT_OBJ_VANILLA }, { 0, 0, 0, 0 }, "vanilla" },
		{ { .kind = RT_OBJ_ROLL, .lambda = 0.5, .C = 1, .gamma = 100 }, { 1, 0.5, 1, 100 }, "roll gamma=100" },
		{ { .kind = RT_OBJ_ROLL, .lambda = 0.5, .C = 2, .gamma = 30 }, { 1, 0.5, 2, 30 }, "roll gamma=30" },
		{ { .kind = RT_OBJ_DISTANCE, .lambda = 0.3 }, { 2, 0.3, 0, 0 }, "distance" },
	};
	for (size_t mi = 0; mi < NMODELS; mi++)
		for (size_t k = 0; k < sizeof objs / sizeof *objs; k++)
			check_training(mi, &objs[k].o, &objs[k].ls, objs[k].what);
}

/* Inside the certified balls (raw units, the sequence's own values) every
 * own neuron keeps its sign; just past eps along the binding neuron's
 * gradient that neuron's sign flips.  Evaluated by the reference. */
static void test_geometry(void **state)
{
	(void)state;
	static const int Ls[] = { 1, 4, 17, MAXLEN };
	for (size_t mi = 0; mi < NMODELS; mi++) {
		const smodel *s = model(mi);
		const rt_model *m = s->m;
		float *x = falloc(m->n_in), *ws = falloc(m->ws_floats), *z = falloc(m->n_hidden + 1), *lg = falloc(m->n_out);
		trng r = { 500 + mi };
		int32_t *live = malloc(sizeof *live * (size_t)(m->n_hidden + 1));
		for (size_t li = 0; li < sizeof Ls / sizeof *Ls; li++) {
			int L = Ls[li], pad = (MAXLEN - L) * s->sh.f;
			random_seq(m, &r, L, x);
			rt_cert c;
			rt_seq_begin(m, ws, L);
			m->certify(s->P, s->pre, x, 7, ws, z, lg, &c, NULL);
			ref e;
			ref_open(&e, s, L, x);
			int32_t nlive = rt_seq_live(m, L, live);
			int Dn = e.g.D;
			double *u = dalloc(Dn), *xd = dalloc(Dn), *zz = dalloc(e.g.Hn), *ff = dalloc(e.g.O);
			for (int p = 1; p < 3; p++) {   /* l2 and linf */
				for (int k = 0; k < 200; k++) {
					sample_ball(&r, p, Dn, false, u);
					for (int d = 0; d < Dn; d++)
						xd[d] = x[pad + d] + 0.999 * c.eps[p] * u[d];
					rg_forward_d(&e.g, xd, zz, ff, NULL, NULL);
					assert_int_equal(rg_pattern_diff(zz, e.z, e.g.Hn), 0);
				}
				int b = ref_neuron(c.bind[p], live, nlive);
				assert_true(b >= 0);
				const double *g = e.G + (int64_t)b * Dn;
				double q = rg_dual(g, Dn, p), sz = e.z[b] > 0 ? -1 : 1;
				for (int d = 0; d < Dn; d++) {
					double step = p == 1 ? g[d] / q : (g[d] > 0) - (g[d] < 0);
					xd[d] = x[pad + d] + sz * 1.001 * c.eps[p] * step;
				}
				rg_forward_d(&e.g, xd, zz, ff, NULL, NULL);
				if ((zz[b] > 0) == (e.z[b] > 0))
					fail_msg("%s L=%d: past eps_%s along the binding neuron %d its sign stays", s->name, L,
					         p == 1 ? "2" : "inf", b);
			}
			free(u), free(xd), free(zz), free(ff);
			ref_close(&e);
		}
		free(x), free(ws), free(z), free(lg), free(live);
	}
}

/* The shipped Japanese Vowels files read for a model over sequences of
 * free length: unequal lengths, left-padded; too long and wrong frames are
 * errors naming the record and file. */
static void test_data(void **state)
{
	(void)state;
	const char *path = LLN_SOURCE_DIR "/examples/data/japanese_vowels/JapaneseVowels_TRAIN.ts";
	rt_model m = { .max_len = 29, .frame = 12, .n_in = 29 * 12 };
	rt_data d;
	char err[RT_ERRLEN];
	assert_int_equal(rt_data_read_model(path, &m, true, &d, err), 0);
	rt_seqdata sd;
	assert_int_equal(rt_ts_read(path, &sd, err), 0);
	assert_int_equal(d.n, 270);
	assert_non_null(d.len);
	int lo = 99, hi = 0;
	for (int64_t i = 0; i < d.n; i++) {
		int L = d.len[i];
		assert_int_equal(L, sd.start[i + 1] - sd.start[i]);
		lo = L < lo ? L : lo, hi = L > hi ? L : hi;
		const float *x = d.x + i * m.n_in;
		for (int k = 0; k < (29 - L) * 12; k++)
			assert_true(x[k] == 0);
		assert_memory_equal(x + (29 - L) * 12, sd.x + sd.start[i] * 12, sizeof(float) * (size_t)L * 12);
		assert_int_equal(d.y[i], sd.y[i]);
	}
	assert_int_equal(lo, 7);
	assert_int_equal(hi, 26);
	rt_data_free(&d);
	rt_seqdata_free(&sd);

	m = (rt_model){ .max_len = 20, .frame = 12, .n_in = 20 * 12 };
	assert_int_equal(rt_data_read_model(path, &m, true, &d, err), -1);
	char want[512];
	snprintf(want, sizeof want, "%s: record 2: a sequence of 26 frames, longer than the 20 the model was built for "
	         "(llnc --max-len; docs/language.md, rnn)", path);
	assert_string_equal(err, want);
	m = (rt_model){ .max_len = 29, .frame = 6, .n_in = 29 * 6 };
	assert_int_equal(rt_data_read_model(path, &m, true, &d, err), -1);
	snprintf(want, sizeof want, "%s: holds frames of 12 values, but the model's are 6 values", path);
	assert_string_equal(err, want);
}

/* Approximate ROLL over a sequence's own input values: with fewer own
 * values than K every one is drawn and the regularizer is exact ROLL's;
 * with more, the draws avoid the padding and the rescaled estimate of
 * sum_h sq_h averages to the exact one. */
static void test_approx(void **state)
{
	(void)state;
	enum { K = 40 };
	char text[512];
	snprintf(text, sizeof text, "model v {\n  input x[*, 12];\n  h = rnn(x, 16);\n  out = dense(last(h), 9);\n"
	         "  output out;\n}\nobjective {\n  loss = cross_entropy;\n"
	         "  regularizer = roll(lambda = 1, C = 1, gamma = 100, samples = %d);\n}\n", K);
	smodel s = { .name = "approx", .sh = { 12, 16, 0, 0, 9, 0, 1 } };
	snprintf(s.text, sizeof s.text, "%s", text);
	const smodel *a = compiled(&s, 8);
	const rt_model *m = a->m;
	assert_int_equal(m->samples, K);
	const int H = m->n_hidden, D = m->n_in;
	float *x = falloc(D), *ws = falloc(m->ws_floats), *z = falloc(H + 1), *lg = falloc(m->n_out), *sq = falloc(H + 1);
	int32_t axes[K], *live = malloc(sizeof *live * (size_t)(H + 1));
	rt_seqbuf *sb = rt_seqbuf_new(m);
	trng r = { 900 };
	rt_objective o = { .kind = RT_OBJ_ROLL, .lambda = 1, .C = 1, .gamma = 100 };
	rg_loss_spec ls = { 1, 1, 1, 100 };
	for (int L = 1; L <= 3; L++) {   /* L F <= K: exact */
		random_seq(m, &r, L, x);
		rt_seq_begin(m, ws, L);
		rt_seq_axes(m, L, 3, (uint64_t)L, axes);
		m->train_forward(a->P, a->pre, x, 1, ws, z, lg, sq, axes);
		double loss = rt_objective_eval_seq(&o, m, L, lg, z, sq, 0, NULL, NULL, NULL, NULL, NULL, sb);
		rg_graph g;
		build(&a->sh, &g, L);
		rg_load_f(&g, a->P);
		rg_example ex;
		rg_example_alloc(&g, &ex);
		double want = rg_loss(&g, x + (MAXLEN - L) * 12, 0, &ls, &ex);
		if (!(fabs(loss - want) <= 1e-5 * fabs(want)))
			fail_msg("L=%d: approximate ROLL with every own axis drawn %.9g, exact %.12g", L, loss, want);
		rg_example_free(&ex);
		rg_free(&g);
	}
	enum { L = 20, DRAWS = 400 };
	random_seq(m, &r, L, x);
	ref e;
	ref_open(&e, a, L, x);
	double exact = 0, mean = 0;
	for (int h = 0; h < e.g.Hn; h++)
		for (int d = 0; d < e.g.D; d++)
			exact += pow(e.G[(int64_t)h * e.g.D + d] * e.g.std, 2);
	int32_t nlive = rt_seq_live(m, L, live);
	for (int k = 0; k < DRAWS; k++) {
		rt_seq_begin(m, ws, L);
		rt_seq_axes(m, L, 11, (uint64_t)k, axes);
		for (int j = 0; j < K; j++)
			assert_true(axes[j] >= (MAXLEN - L) * 12 && axes[j] < D);
		m->train_forward(a->P, a->pre, x, 1, ws, z, lg, sq, axes);
		for (int32_t i = 0; i < nlive; i++)
			mean += rt_seq_sq_scale(m, L) * sq[live[i]] / DRAWS;
	}
	if (!(fabs(mean - exact) <= 0.05 * exact))
		fail_msg("L=%d: mean of %d estimates of sum sq %.9g, exact %.9g", L, DRAWS, mean, exact);
	printf("[ approx ] L=%d: mean estimate of sum sq %.6g, exact %.6g\n", L, mean, exact);
	ref_close(&e);
	free(x), free(ws), free(z), free(lg), free(sq), free(live);
	rt_seqbuf_free(sb);
	smodel_free(&s);
}

/* A file of tmpdir: "out" and "err" are the last sh()'s stdout and stderr. */
static const char *output(const char *name)
{
	static char buf[1 << 16];
	FILE *f = fopen(P_(name), "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

static void expect(const char *file, const char *want)
{
	const char *got = output(file);
	if (!strstr(got, want))
		fail_msg("expected %s to contain:\n%s\ngot:\n%s", file, want, got);
}

/* A .ts file of sequences of the given lengths (12 values a frame), labels
 * 0, 1, 2, ... */
static const char *ts_file(const char *name, const int *lens, int n)
{
	char *text = malloc(1 << 16);
	size_t k = (size_t)snprintf(text, 1 << 16, "@problemName t\n@univariate false\n@dimensions 12\n"
	                            "@equalLength false\n@classLabel true 0 1 2 3 4 5 6 7 8\n@data\n");
	trng r = { 42 };
	for (int i = 0; i < n; i++) {
		for (int c = 0; c < 12; c++)
			for (int t = 0; t < lens[i]; t++)
				k += (size_t)snprintf(text + k, (1 << 16) - k, "%.4f%s", 2 * trng_u(&r) - 1,
				                      t + 1 < lens[i] ? "," : ":");
		k += (size_t)snprintf(text + k, (1 << 16) - k, "%d\n", i % 9);
	}
	const char *path = puts_(name, text);
	free(text);
	return path;
}

/* The acceptance example through llnc: check, init, build a certifier for
 * up to 8 frames, certify sequences of 1 to 8 frames (as `llnc certify`
 * does, byte for byte), refuse a longer one, train with ROLL. */
static void test_commands(void **state)
{
	(void)state;
	assert_int_equal(sh("%s check %s", LLNC, VOWELS), 0);
	expect("out", "sequences of 1 to 32 frames of 12 (--max-len)");
	assert_int_equal(sh("%s init %s --max-len 8 -o %s", LLNC, VOWELS, P_("w.safetensors")), 0);
	assert_int_equal(sh("%s build -O1 %s --max-len 8 --certifier --weights %s -o %s", LLNC, VOWELS,
	                    P_("w.safetensors"), P_("cert")), 0);
	const int lens[] = { 1, 3, 8, 5, 2, 7 };
	const char *seqs = ts_file("seqs.ts", lens, 6);
	assert_int_equal(sh("%s --format jsonl %s", P_("cert"), seqs), 0);
	char a[1 << 14];
	snprintf(a, sizeof a, "%s", output("out"));
	assert_int_equal(sh("%s certify -O1 --max-len 8 %s --weights %s --format jsonl %s", LLNC, VOWELS,
	                    P_("w.safetensors"), seqs), 0);
	assert_string_equal(a, output("out"));
	/* binding neurons by layer, time step from the sequence's first frame, unit */
	const char *line = a;
	for (int i = 0; i < 6; i++, line = strchr(line, '\n') + 1) {
		const char *st = strstr(line, "\"step\":");
		assert_non_null(st);
		int step = atoi(st + 7);
		assert_true(step >= 0 && step < lens[i]);
		assert_non_null(strstr(line, "\"bind_l2\":{\"layer\":\"h\""));
	}
	const int nine[] = { 4, 9 };
	const char *bad = ts_file("long.ts", nine, 2);
	assert_int_equal(sh("%s %s", P_("cert"), bad), 1);
	expect("err", msg("%s: record 2: a sequence of 9 frames, longer than the 8 the model was built for", bad));
	assert_int_equal(sh("%s train -O0 --max-len 8 %s --data %s --epochs 2 --batch 4 -o %s", LLNC, VOWELS, seqs,
	                    P_("t.safetensors")), 0);
	expect("out", "objective roll");
	assert_int_equal(sh("%s check %s --max-len 0", LLNC, VOWELS), 2);
	expect("err", "--max-len takes a number of frames from 1 to 1024, not '0'");
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/lln-seq-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_all(void **state)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		return -1;
	return teardown(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_data),
		cmocka_unit_test(test_kernels),
		cmocka_unit_test(test_train),
		cmocka_unit_test(test_geometry),
		cmocka_unit_test(test_approx),
		cmocka_unit_test(test_commands),
	};
	return cmocka_run_group_tests(tests, setup, teardown_all);
}
