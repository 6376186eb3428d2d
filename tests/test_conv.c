/* test_conv.c: the kernels of convolutional and residual models against a
 * naive double-precision reference (ref_graph.h), central finite
 * differences and the geometry of the activation region.
 *
 * Models: the acceptance example (tests/data/cnn.lln, read as the file is),
 * hand-written graphs covering stride 2, padding 0/1/2, kernels 1/2/3,
 * non-square images, residual adds reading values several statements back,
 * avgpool with kernel = stride and with stride < kernel, relu after avgpool,
 * dense heads, 1-3 input channels, 11 output channels (more than a
 * register block of the batched kernels), with and without normalize, one
 * logit (sigmoid) and several, and seeded random graphs.  Each is compiled from
 * .lln text through the whole front end; the reference graph is built
 * separately from the statement list, so the descriptor (hidden layers,
 * tensor table) is checked against the specification, not against itself.
 *
 * Tolerances (u = 2^-24, float32's unit roundoff):
 *   z, logits     1e-6 of the magnitudes summed into the value through every
 *                 earlier statement (ref mag): about 16 u per rounding of
 *                 any intermediate value; the forward pass accumulates in
 *                 double, so this is far above what a correct kernel shows.
 *   gradient rows 2e-5 of max(|g|, the same product over |W| and |g|): the
 *                 rows are float32 products over at most ~300 summed terms
 *                 along the deepest path, 300 u = 1.8e-5 in the worst case.
 *   eps, eps_pred, directional margins: intervals from those two bounds
 *                 (|z| +- dz over ||g||_q -+ dg), not a fixed relative error;
 *                 the largest relative error to the point reference is printed.
 *   parameter gradients: 2e-3 |fd| + 2e-4 of the largest |fd| of the model
 *                 and objective (float32 sums over thousands of terms).
 * Soundness (docs/method.md): no radius may exceed the exact one, for which the
 * double reference stands in (1e-12 of the magnitudes for its own rounding).
 *
 * Compiling the models is most of the running time; the program runs as six
 * ctest entries, conv.PART (parts.h, main), each compiling its own models,
 * so that ctest -j2 spreads it over both cores.
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
#include <llvm-c/Core.h>

#include "llnc.h"
#include "jit.h"
#include "parts.h"
#include "ref_graph.h"
#include "sample.h"

#define TOL_Z 1e-6
#define TOL_G 2e-5
#define ULP 0x1.0p-24

/* ---- the models under test ---- */

typedef struct spec {
	const char *name;
	const char *text;    /* .lln source; NULL: read `file`, or generated from the graph */
	const char *file;
	void (*build)(rg_graph *g);
	uint64_t seed;       /* > 1000: a random graph of that seed */
	bool he;             /* He weights instead of PyTorch's default */
	int parts;           /* kernels in parts of this many ops (cg.h); 0: whole */
} spec;

static void build_cnn(rg_graph *g)
{
	rg_input(g, 1, 12, 12, 0.5, 0.25);
	int c1 = rg_conv(g, "c1", 0, 4, 3, 1, 1, true);
	int c2 = rg_conv(g, "c2", c1, 4, 3, 1, 1, false);
	int r1 = rg_add(g, "r1", c2, c1, true);
	int p1 = rg_pool(g, "p1", r1, 2, 2, false);
	int c3 = rg_conv(g, "c3", p1, 6, 3, 2, 1, true);
	int fc = rg_dense(g, "fc", c3, 16, true);
	rg_output(g, rg_dense(g, "out", fc, 3, false));
}

static const char res3_lln[] =
	"model res3 {\n"
	"  input x[2, 9, 9] normalize(0.1, 0.7);\n"
	"  a = relu(conv2d(x, 3, kernel = 3, padding = 1));\n"
	"  b = relu(conv2d(a, 3, kernel = 3, stride = 1, padding = 1));\n"
	"  c = conv2d(b, 3, kernel = 1);\n"
	"  d = relu(add(c, a));\n"
	"  e = avgpool(d, kernel = 3, stride = 2);\n"
	"  f = relu(conv2d(e, 5, kernel = 2, stride = 2));\n"
	"  out = dense(f, 4);\n"
	"  output out;\n"
	"}\n";
static void build_res3(rg_graph *g)
{
	rg_input(g, 2, 9, 9, 0.1, 0.7);
	int a = rg_conv(g, "a", 0, 3, 3, 1, 1, true);
	int b = rg_conv(g, "b", a, 3, 3, 1, 1, true);
	int c = rg_conv(g, "c", b, 3, 1, 1, 0, false);
	int d = rg_add(g, "d", c, a, true);
	int e = rg_pool(g, "e", d, 3, 2, false);
	int f = rg_conv(g, "f", e, 5, 2, 2, 0, true);
	rg_output(g, rg_dense(g, "out", f, 4, false));
}

static const char wide_lln[] =
	"model wide {\n"
	"  input x[3, 7, 10];\n"
	"  a = relu(conv2d(x, 4, kernel = 2, stride = 2, padding = 1));\n"
	"  p = avgpool(a, 2);\n"
	"  h = relu(dense(p, 10));\n"
	"  out = dense(h, 1);\n"
	"  output out;\n"
	"}\n"
	"objective {\n  loss = sigmoid_cross_entropy;\n}\n";
static void build_wide(rg_graph *g)
{
	rg_input(g, 3, 7, 10, 0, 1);
	int a = rg_conv(g, "a", 0, 4, 2, 2, 1, true);
	int p = rg_pool(g, "p", a, 2, 2, false);
	int h = rg_dense(g, "h", p, 10, true);
	rg_output(g, rg_dense(g, "out", h, 1, false));
}

static const char skip_lln[] =
	"model skip {\n"
	"  input x[1, 8, 8] normalize(0.5, 0.25);\n"
	"  a = relu(conv2d(x, 2, kernel = 3, padding = 2));\n"
	"  b = conv2d(a, 2, kernel = 3);\n"
	"  c = relu(conv2d(x, 2, kernel = 1));\n"
	"  d = relu(add(b, c));\n"
	"  e = relu(add(d, c));\n"
	"  p = avgpool(e, 4);\n"
	"  out = dense(p, 3);\n"
	"  output out;\n"
	"}\n";
static void build_skip(rg_graph *g)
{
	rg_input(g, 1, 8, 8, 0.5, 0.25);
	int a = rg_conv(g, "a", 0, 2, 3, 1, 2, true);
	int b = rg_conv(g, "b", a, 2, 3, 1, 0, false);
	int c = rg_conv(g, "c", 0, 2, 1, 1, 0, true);
	int d = rg_add(g, "d", b, c, true);
	int e = rg_add(g, "e", d, c, true);
	int p = rg_pool(g, "p", e, 4, 4, false);
	rg_output(g, rg_dense(g, "out", p, 3, false));
}

static const char deep_lln[] =
	"model deep {\n"
	"  input x[2, 6, 6];\n"
	"  a = relu(conv2d(x, 3, kernel = 3, stride = 2, padding = 1));\n"
	"  b = relu(conv2d(a, 3, kernel = 3, padding = 1));\n"
	"  c = relu(conv2d(b, 3, kernel = 3, padding = 1));\n"
	"  d = relu(add(c, a));\n"
	"  f = relu(dense(d, 8));\n"
	"  g = relu(dense(f, 8));\n"
	"  out = dense(g, 5);\n"
	"  output out;\n"
	"}\n";
static void build_deep(rg_graph *g)
{
	rg_input(g, 2, 6, 6, 0, 1);
	int a = rg_conv(g, "a", 0, 3, 3, 2, 1, true);
	int b = rg_conv(g, "b", a, 3, 3, 1, 1, true);
	int c = rg_conv(g, "c", b, 3, 3, 1, 1, true);
	int d = rg_add(g, "d", c, a, true);
	int f = rg_dense(g, "f", d, 8, true);
	int g2 = rg_dense(g, "g", f, 8, true);
	rg_output(g, rg_dense(g, "out", g2, 5, false));
}

/* relu after avgpool of a value that is not relu'd, and a 1x1 conv with
 * padding 1 whose border neurons see only padding (gradient 0: they never
 * bind). */
static const char poolrelu_lln[] =
	"model poolrelu {\n"
	"  input x[1, 6, 6] normalize(0, 2);\n"
	"  a = conv2d(x, 3, kernel = 3, padding = 1);\n"
	"  b = relu(avgpool(a, 2));\n"
	"  c = relu(conv2d(b, 4, kernel = 1));\n"
	"  out = dense(c, 3);\n"
	"  output out;\n"
	"}\n";
static void build_poolrelu(rg_graph *g)
{
	rg_input(g, 1, 6, 6, 0, 2);
	int a = rg_conv(g, "a", 0, 3, 3, 1, 1, false);
	int b = rg_pool(g, "b", a, 2, 2, true);
	int c = rg_conv(g, "c", b, 4, 1, 1, 0, true);
	rg_output(g, rg_dense(g, "out", c, 3, false));
}

/* Padding as wide as the kernel, which nn.Conv2d accepts: the border
 * outputs see only zeros, so their value is the bias and their gradient 0
 * (they never bind).  Kept apart: the specification says "like nn.Conv2d". */
static const char border_lln[] =
	"model border {\n"
	"  input x[2, 5, 5] normalize(0.5, 0.5);\n"
	"  a = relu(conv2d(x, 3, kernel = 1, padding = 1));\n"
	"  b = relu(conv2d(a, 3, kernel = 2, stride = 2, padding = 2));\n"
	"  out = dense(b, 3);\n"
	"  output out;\n"
	"}\n";
static void build_border(rg_graph *g)
{
	rg_input(g, 2, 5, 5, 0.5, 0.5);
	int a = rg_conv(g, "a", 0, 3, 1, 1, 1, true);
	int b = rg_conv(g, "b", a, 3, 2, 2, 2, true);
	rg_output(g, rg_dense(g, "out", b, 3, false));
}

/* More channels than a register block of the batched kernels (8): 11 and
 * 9 output channels, 11 input channels for a transposed window. */
static const char chan_lln[] =
	"model chan {\n"
	"  input x[2, 6, 5] normalize(0.2, 0.9);\n"
	"  a = relu(conv2d(x, 11, kernel = 3, padding = 1));\n"
	"  b = relu(conv2d(a, 9, kernel = 3, stride = 2, padding = 1));\n"
	"  c = conv2d(b, 9, kernel = 1);\n"
	"  d = relu(add(c, b));\n"
	"  out = dense(d, 3);\n"
	"  output out;\n"
	"}\n";
static void build_chan(rg_graph *g)
{
	rg_input(g, 2, 6, 5, 0.2, 0.9);
	int a = rg_conv(g, "a", 0, 11, 3, 1, 1, true);
	int b = rg_conv(g, "b", a, 9, 3, 2, 1, true);
	int c = rg_conv(g, "c", b, 9, 1, 1, 0, false);
	int d = rg_add(g, "d", c, b, true);
	rg_output(g, rg_dense(g, "out", d, 3, false));
}

/* Recurrent models: nn.RNN(F, n, nonlinearity='relu') unrolled over a
 * fixed length, alone and stacked (every step's states hidden neurons). */
static const char rnn_lln[] =
	"model rnn {\n"
	"  input x[4, 3] normalize(0.2, 0.9);\n"
	"  h = rnn(x, 5);\n"
	"  out = dense(last(h), 3);\n"
	"  output out;\n"
	"}\n";
static void build_rnn(rg_graph *g)
{
	rg_input(g, 1, 4, 3, 0.2, 0.9);
	int h = rg_rnn(g, "h", 0, 4, 5);
	rg_output(g, rg_dense(g, "out", h, 3, false));
}

static const char rnn2_lln[] =
	"model rnn2 {\n"
	"  input x[6, 2];\n"
	"  h = rnn(x, 4);\n"
	"  s = rnn(h, 3);\n"
	"  f = relu(dense(last(s), 5));\n"
	"  out = dense(f, 2);\n"
	"  output out;\n"
	"}\n";
static void build_rnn2(rg_graph *g)
{
	rg_input(g, 1, 6, 2, 0, 1);
	int h = rg_rnn(g, "h", 0, 6, 4);
	int s = rg_rnn(g, "s", h - 5, 6, 3);
	int f = rg_dense(g, "f", s, 5, true);
	rg_output(g, rg_dense(g, "out", f, 2, false));
}

/* A random graph: a few of {conv (+relu), avgpool, residual block} on an
 * image, then one or two dense layers. */
static void build_random(rg_graph *g, uint64_t seed)
{
	trng r = { seed };
	int C = 1 + trng_int(&r, 3), H = 5 + trng_int(&r, 5), W = 5 + trng_int(&r, 5);
	bool norm = trng_int(&r, 2);
	rg_input(g, C, H, W, norm ? 0.25 : 0, norm ? 0.5 : 1);
	int v = 0, nst = 2 + trng_int(&r, 3), k = 0;
	char name[16];
	for (int s = 0; s < nst; s++) {
		const rg_node *u = &g->node[v];
		int op = trng_int(&r, 3);
		if (op == 1 && (u->H < 4 || u->W < 4))
			op = 0;
		if (op == 0) {
			int kk = 1 + trng_int(&r, 3), st = 1 + trng_int(&r, 2), pad = trng_int(&r, kk < 3 ? kk : 3);
			if (u->H + 2 * pad < kk || u->W + 2 * pad < kk)
				kk = 1;
			if ((u->H + 2 * pad - kk) / st + 1 < 2 || (u->W + 2 * pad - kk) / st + 1 < 2)
				st = 1;
			snprintf(name, sizeof name, "v%d", k++);
			v = rg_conv(g, name, v, 2 + trng_int(&r, 3), kk, st, pad, trng_int(&r, 4) != 0);
		} else if (op == 1) {
			int kk = 2 + trng_int(&r, 2), st = 1 + trng_int(&r, kk);
			snprintf(name, sizeof name, "v%d", k++);
			v = rg_pool(g, name, v, kk, st, false);
		} else {
			/* residual block: t = relu(conv3x3(v)); w = relu(add(conv(t), v)) */
			snprintf(name, sizeof name, "v%d", k++);
			int t = rg_conv(g, name, v, 2 + trng_int(&r, 2), 3, 1, 1, true);
			int kk = trng_int(&r, 2) ? 3 : 1;
			snprintf(name, sizeof name, "v%d", k++);
			int c = rg_conv(g, name, t, g->node[v].C, kk, 1, kk / 2, false);
			snprintf(name, sizeof name, "v%d", k++);
			bool swap = trng_int(&r, 2);
			v = rg_add(g, name, swap ? v : c, swap ? c : v, true);
		}
	}
	if (trng_int(&r, 2)) {
		snprintf(name, sizeof name, "v%d", k++);
		v = rg_dense(g, name, v, 6 + trng_int(&r, 6), true);
	}
	rg_output(g, rg_dense(g, "out", v, 2 + trng_int(&r, 3), false));
}
static void build_r1(rg_graph *g) { build_random(g, 1001); }
static void build_r2(rg_graph *g) { build_random(g, 1002); }
static void build_r3(rg_graph *g) { build_random(g, 1003); }

static const spec specs[] = {
	{ "cnn", NULL, LLN_SOURCE_DIR "/tests/data/cnn.lln", build_cnn, 21, false, 3 },
	{ "res3", res3_lln, NULL, build_res3, 22, true, 0 },
	{ "wide", wide_lln, NULL, build_wide, 23, false, 0 },
	{ "skip", skip_lln, NULL, build_skip, 24, true, 0 },
	{ "deep", deep_lln, NULL, build_deep, 25, true, 2 },
	{ "poolrelu", poolrelu_lln, NULL, build_poolrelu, 26, false, 0 },
	{ "r1", NULL, NULL, build_r1, 1001, true, 1 },
	{ "r2", NULL, NULL, build_r2, 1002, false, 0 },
	{ "r3", NULL, NULL, build_r3, 1003, true, 0 },
	{ "rnn", rnn_lln, NULL, build_rnn, 28, false, 0 },
	{ "rnn2", rnn2_lln, NULL, build_rnn2, 29, false, 5 },
	{ "chan", chan_lln, NULL, build_chan, 30, false, 0 },
	{ "border", border_lln, NULL, build_border, 27, false, 0 },
};
#define NSPECS (sizeof specs / sizeof *specs)

/* The models a test function runs on (its cmocka state), bit i for specs[i]:
 * those of one part of the program (parts.h, main), each compiled once in
 * it.  The border model runs apart from the others. */
typedef struct models { unsigned mask; } models;
#define M_(i) (1u << (i))
static models models_a = { M_(0) | M_(1) | M_(2) | M_(8) },   /* cnn, res3, wide, r3 */
              models_b = { M_(3) | M_(4) | M_(5) | M_(6) },   /* skip, deep, poolrelu, r1 */
              models_c = { M_(7) | M_(9) | M_(10) | M_(11) },  /* r2, rnn, rnn2, chan */
              border_model = { M_(NSPECS - 1) };
static bool in_part(void **state, size_t i) { return ((const models *)*state)->mask & M_(i); }
/* The first model of the part from i on; NSPECS after the last. */
static size_t next_model(void **state, size_t i)
{
	while (i < NSPECS && !in_part(state, i))
		i++;
	return i;
}
static long n_models(void **state) { return __builtin_popcount(((const models *)*state)->mask); }
#define FOR_MODELS(si, state) for (size_t si = next_model(state, 0); si < NSPECS; si = next_model(state, si + 1))

/* The .lln text of a graph (random graphs), spelling options in several
 * equivalent ways. */
static char *graph_source(const rg_graph *g, const char *name, uint64_t seed)
{
	trng r = { seed * 31 };
	size_t cap = 8192, k = 0;
	char *buf = malloc(cap);
	const rg_node *x = &g->node[0];
	k += (size_t)snprintf(buf + k, cap - k, "model %s {\n  input x[%d, %d, %d]", name, x->C, x->H, x->W);
	if (g->mean != 0 || g->std != 1)
		k += (size_t)snprintf(buf + k, cap - k, " normalize(%.17g, %.17g)", g->mean, g->std);
	k += (size_t)snprintf(buf + k, cap - k, ";\n");
	for (int i = 1; i < g->nn; i++) {
		const rg_node *v = &g->node[i];
		char op[160];
		const char *a = g->node[v->arg[0]].name;
		switch (v->kind) {
		case RG_CONV: {
			int n = snprintf(op, sizeof op, "conv2d(%s, %d, kernel = %d", a, v->out, v->k);
			if (v->stride != 1 || trng_int(&r, 2))
				n += snprintf(op + n, sizeof op - (size_t)n, ", stride = %d", v->stride);
			if (v->pad != 0 || trng_int(&r, 2))
				n += snprintf(op + n, sizeof op - (size_t)n, ", padding = %d", v->pad);
			snprintf(op + n, sizeof op - (size_t)n, ")");
			break;
		}
		case RG_POOL:
			if (v->stride == v->k && trng_int(&r, 2))
				snprintf(op, sizeof op, "avgpool(%s, %d)", a, v->k);
			else
				snprintf(op, sizeof op, "avgpool(%s, kernel = %d, stride = %d)", a, v->k, v->stride);
			break;
		case RG_ADD:
			snprintf(op, sizeof op, "add(%s, %s)", a, g->node[v->arg[1]].name);
			break;
		case RG_DENSE:
			snprintf(op, sizeof op, "dense(%s, %d)", a, v->out);
			break;
		default:
			abort();
		}
		k += (size_t)snprintf(buf + k, cap - k, v->relu ? "  %s = relu(%s);\n" : "  %s = %s;\n", v->name, op);
	}
	k += (size_t)snprintf(buf + k, cap - k, "  output %s;\n}\n", g->node[g->out].name);
	if (g->O == 1)
		snprintf(buf + k, cap - k, "objective {\n  loss = sigmoid_cross_entropy;\n}\n");
	return buf;
}

/* A compiled model with its parameters and reference. */
typedef struct tmodel {
	const spec *s;
	arena *a;
	cg_unit *u;
	const rt_model *m;
	float *P, *pre, *ws;
	rg_graph g;
	int D, H, O;
} tmodel;

static double *dalloc(int64_t n)
{
	double *p = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
	assert_non_null(p);
	return p;
}

/* The descriptor against the specification: hidden layers are the relu'd
 * statements in order; tensors NAME.weight, NAME.bias per parameterized
 * statement, PyTorch shapes, contiguous. */
static void check_descriptor(const tmodel *t)
{
	const rt_model *m = t->m;
	const rg_graph *g = &t->g;
	assert_int_equal(m->abi, RT_ABI_VERSION);
	assert_int_equal(m->n_in, g->D);
	assert_int_equal(m->n_out, g->O);
	assert_int_equal(m->n_hidden, g->Hn);
	/* in the descriptor's own precision */
	assert_true(m->mean == (__typeof__(m->mean))g->mean);
	assert_true(m->std == (__typeof__(m->std))g->std);
	int L = 0, nt = 0;
	for (int i = 1; i < g->nn; i++) {
		const rg_node *v = &g->node[i];
		if (v->kind == RG_RNN && v->arg[1] >= 0)
			continue;   /* a later step: one layer and one set of tensors for all */
		int steps = 1;
		while (v->kind == RG_RNN && i + steps < g->nn && g->node[i + steps].kind == RG_RNN &&
		       g->node[i + steps].arg[1] == i + steps - 1)
			steps++;
		if (v->relu) {
			assert_true(L < m->n_layers);
			if (strcmp(m->layers[L].name, v->name) != 0 || m->layers[L].size != steps * v->n ||
			    m->layers[L].offset != v->zoff || (v->kind == RG_RNN && m->layers[L].w != v->n))
				fail_msg("%s: layer %d is %s (%d at %d), expected %s (%d at %d)", t->s->name, L, m->layers[L].name,
				         m->layers[L].size, m->layers[L].offset, v->name, steps * v->n, v->zoff);
			L++;
		}
		if (v->poff < 0)
			continue;
		if (v->kind == RG_RNN) {   /* W_ih [n, F], W_hh [n, n], b_ih [n], b_hh [n] */
			static const char *const names[4] = { "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0" };
			int64_t off = v->poff;
			for (int b = 0; b < 4; b++) {
				assert_true(nt < m->n_tensors);
				const rt_tensor *tt = &m->tensors[nt++];
				char want[48];
				snprintf(want, sizeof want, "%s.%s", v->name, names[b]);
				int64_t count = (int64_t)v->n * (b == 0 ? v->F : b == 1 ? v->n : 1);
				if (strcmp(tt->name, want) != 0 || tt->rank != (b < 2 ? 2 : 1) || tt->offset != off ||
				    tt->count != count || tt->shape[0] != v->n || (b < 2 && tt->shape[1] != (b ? v->n : v->F)) ||
				    tt->is_bias != (b >= 2))
					fail_msg("%s: tensor %d is %s at %lld, expected %s at %lld", t->s->name, nt - 1, tt->name,
					         (long long)tt->offset, want, (long long)off);
				off += count;
			}
			continue;
		}
		const rg_node *u = &g->node[v->arg[0]];
		for (int b = 0; b < 2; b++) {
			assert_true(nt < m->n_tensors);
			const rt_tensor *tt = &m->tensors[nt++];
			char want[48];
			snprintf(want, sizeof want, "%s.%s", v->name, b ? "bias" : "weight");
			int rank = b ? 1 : v->kind == RG_CONV ? 4 : 2;
			int shape[4] = { v->out, v->kind == RG_CONV ? u->C : u->n, v->k, v->k };
			int64_t off = v->poff + (b ? v->wcount : 0), count = b ? v->bcount : v->wcount;
			bool ok = strcmp(tt->name, want) == 0 && tt->rank == rank && tt->offset == off && tt->count == count &&
			          tt->is_bias == b;
			for (int d = 0; d < rank; d++)
				ok &= tt->shape[d] == shape[d];
			if (!ok)
				fail_msg("%s: tensor %d is %s rank %d [%d %d %d %d] at %lld (%lld), expected %s rank %d [%d %d %d %d] "
				         "at %lld (%lld)",
				         t->s->name, nt - 1, tt->name, tt->rank, tt->shape[0], tt->shape[1], tt->shape[2],
				         tt->shape[3], (long long)tt->offset, (long long)tt->count, want, rank, shape[0], shape[1],
				         shape[2], shape[3], (long long)off, (long long)count);
		}
	}
	assert_int_equal(L, m->n_layers);
	assert_int_equal(nt, m->n_tensors);
	assert_int_equal(m->n_params, g->n_params);
}

static void tmodel_open(tmodel *t, const spec *s)
{
	memset(t, 0, sizeof *t);
	t->s = s;
	t->a = arena_new();
	s->build(&t->g);
	cg_options co = { .opt_level = test_opt(3), .ops_per_part = s->parts ? s->parts : 1 << 30 };
	if (s->file) {
		t->m = jit_source_opts(t->a, source_load(t->a, s->file), &co, &t->u);
	} else {
		char *text = s->text ? strdup(s->text) : graph_source(&t->g, s->name, s->seed);
		if (!s->text)
			printf("[ %s ]\n%s", s->name, text);
		t->m = jit_source_opts(t->a, source_from_string(t->a, "test.lln", text), &co, &t->u);
		free(text);
	}
	check_descriptor(t);
	const rt_model *m = t->m;
	t->P = falloc(m->n_params);
	rt_init_params(m->tensors, m->n_tensors, s->seed, s->he ? RT_INIT_HE : RT_INIT_PYTORCH, t->P);
	/* extra random biases so that biases matter everywhere */
	trng r = { s->seed * 7919 + 1 };
	for (int i = 0; i < m->n_tensors; i++)
		if (m->tensors[i].is_bias)
			for (int64_t k = 0; k < m->tensors[i].count; k++)
				t->P[m->tensors[i].offset + k] += (float)(0.2 * trng_u(&r) - 0.1);
	t->D = t->g.D;
	t->H = t->g.Hn;
	t->O = t->g.O;
	rg_load_f(&t->g, t->P);
	/* one logit: centre the decision boundary so that both labels occur */
	if (t->O == 1) {
		double *x0 = dalloc(t->D), f0;
		for (int d = 0; d < t->D; d++)
			x0[d] = t->g.mean + 0.3 * t->g.std * (d % 3 - 1);
		rg_forward_d(&t->g, x0, NULL, &f0, NULL, NULL);
		t->P[m->tensors[m->n_tensors - 1].offset] -= (float)f0;
		free(x0);
		rg_load_f(&t->g, t->P);
	}
	t->pre = falloc(m->pre_floats);
	t->ws = falloc(m->ws_floats);
	m->prepare(t->P, t->pre);
}

static void tmodel_close_(tmodel *t)
{
	rg_free(&t->g);
	free(t->P);
	free(t->pre);
	free(t->ws);
	cg_unit_free(t->u);
	arena_free(t->a);
}

static tmodel cache[NSPECS];
static bool cached[NSPECS];

static const tmodel *tmodel_get(size_t i)
{
	if (!cached[i]) {
		tmodel_open(&cache[i], &specs[i]);
		cached[i] = true;
	}
	return &cache[i];
}

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

static void random_input(const tmodel *t, trng *r, float *x)
{
	for (int d = 0; d < t->D; d++)
		x[d] = (float)(t->g.mean + t->g.std * (4 * trng_u(r) - 2));
}

/* Per-example reference quantities, masks taken from a given z. */
typedef struct refx {
	double *z, *zmag, *f, *fmag, *G, *Gabs, *J, *Jabs;
} refx;

static void refx_alloc(refx *e, const tmodel *t)
{
	e->z = dalloc(t->H);
	e->zmag = dalloc(t->H);
	e->f = dalloc(t->O);
	e->fmag = dalloc(t->O);
	e->G = dalloc((int64_t)t->H * t->D);
	e->Gabs = dalloc((int64_t)t->H * t->D);
	e->J = dalloc((int64_t)t->O * t->D);
	e->Jabs = dalloc((int64_t)t->O * t->D);
}
static void refx_free(refx *e)
{
	free(e->z);
	free(e->zmag);
	free(e->f);
	free(e->fmag);
	free(e->G);
	free(e->Gabs);
	free(e->J);
	free(e->Jabs);
}
/* Forward in double; Jacobians with the masks of zmask (the generated z,
 * when given: grads and certify take their masks from it). */
static void refx_compute(refx *e, const tmodel *t, const float *x, const float *zmask)
{
	rg_forward_f(&t->g, x, e->z, e->f, e->zmag, e->fmag);
	double *zm = e->z;
	if (zmask) {
		zm = dalloc(t->H);
		for (int h = 0; h < t->H; h++)
			zm[h] = zmask[h];
	}
	rg_jacobians(&t->g, zm, 1.0 / t->g.std, e->G, e->J, e->Gabs, e->Jabs);
	if (zmask)
		free(zm);
}

/* The interval a correctly rounded kernel's eps_p must lie in. */
typedef struct interval {
	double lo, hi, point;
	int bind;           /* reference binding neuron (point values) */
	int candidates;     /* neurons whose own interval reaches below hi */
	int cand;           /* one of them */
} interval;

static void neuron_interval(const tmodel *t, const refx *e, int h, int p, double *lo, double *hi, double *pt)
{
	int D = t->D;
	double q = rg_dual(e->G + (size_t)h * D, D, p);
	double dq = TOL_G * rg_dual(e->Gabs + (size_t)h * D, D, p);
	double dz = TOL_Z * e->zmag[h], az = fabs(e->z[h]);
	*pt = q > 0 ? az / q : INFINITY;
	if (!(q + dq > 0)) {
		*lo = *hi = INFINITY;
		return;
	}
	*lo = fmax(az - dz, 0) / (q + dq);
	*hi = q - dq > 0 ? (az + dz) / (q - dq) : INFINITY;
}

static interval eps_interval(const tmodel *t, const refx *e, int p)
{
	interval iv = { INFINITY, INFINITY, INFINITY, -1, 0, -1 };
	for (int h = 0; h < t->H; h++) {
		double lo, hi, pt;
		neuron_interval(t, e, h, p, &lo, &hi, &pt);
		iv.lo = fmin(iv.lo, lo);
		iv.hi = fmin(iv.hi, hi);
		if (pt < iv.point) {
			iv.point = pt;
			iv.bind = h;
		}
	}
	for (int h = 0; h < t->H; h++) {
		double lo, hi, pt;
		neuron_interval(t, e, h, p, &lo, &hi, &pt);
		if (lo <= iv.hi) {
			iv.candidates++;
			iv.cand = h;
		}
	}
	return iv;
}

/* eps_pred's interval given eps_p's; *label = -1 on a near tie. */
static interval pred_interval(const tmodel *t, const refx *e, int p, const interval *eps, int *label)
{
	int D = t->D, O = t->O;
	interval iv = { eps->lo, eps->hi, eps->point, -1, 0, -1 };
	double *v = dalloc(D), *va = dalloc(D);
	int y = 0;
	if (O == 1) {
		y = e->f[0] > 0;
		*label = fabs(e->f[0]) > TOL_Z * e->fmag[0] ? y : -1;
	} else {
		for (int k = 1; k < O; k++)
			if (e->f[k] > e->f[y])
				y = k;
		*label = y;
		for (int k = 0; k < O; k++)
			if (k != y && e->f[y] - e->f[k] <= TOL_Z * (e->fmag[y] + e->fmag[k]))
				*label = -1;
	}
	for (int k = 0; k < (O == 1 ? 1 : O); k++) {
		if (O > 1 && k == y)
			continue;
		double gap, dgap;
		for (int d = 0; d < D; d++) {
			if (O == 1) {
				v[d] = e->J[d];
				va[d] = e->Jabs[d];
			} else {
				v[d] = e->J[(size_t)y * D + d] - e->J[(size_t)k * D + d];
				va[d] = e->Jabs[(size_t)y * D + d] + e->Jabs[(size_t)k * D + d];
			}
		}
		if (O == 1) {
			gap = fabs(e->f[0]);
			dgap = TOL_Z * e->fmag[0];
		} else {
			gap = e->f[y] - e->f[k];
			dgap = TOL_Z * (e->fmag[y] + e->fmag[k]);
		}
		double q = rg_dual(v, D, p), dq = TOL_G * rg_dual(va, D, p);
		iv.point = fmin(iv.point, gap / q);
		iv.lo = fmin(iv.lo, fmax(gap - dgap, 0) / (q + dq));
		iv.hi = fmin(iv.hi, q - dq > 0 ? (gap + dgap) / (q - dq) : INFINITY);
	}
	free(v);
	free(va);
	return iv;
}

/* Within [lo, hi], allowing for the rounding of the result to float. */
static bool within(double v, const interval *iv)
{
	if (isinf(iv->lo))
		return isinf(v) && v > 0;
	return v >= iv->lo * (1 - 4 * ULP) && v <= iv->hi * (1 + 4 * ULP);
}


/* ---- 1, 2: forward and gradient rows ---- */

static void test_forward_grads(void **state)
{
	double max_z = 0, max_g = 0, max_fd_ref = 0, max_fd_gen = 0;
	long fd_checked = 0, fd_skipped = 0, gen_checked = 0, gen_skipped = 0, rows = 0;
	FOR_MODELS(si, state) {
		const tmodel *t = tmodel_get(si);
		const rt_model *m = t->m;
		int D = t->D, H = t->H, O = t->O;
		float *x = falloc(D), *z = falloc(H), *lg = falloc(O), *G = falloc((int64_t)H * D), *xs = falloc(D),
		      *zp = falloc(H), *zmn = falloc(H), *lgp = falloc(O);
		double *xd = dalloc(D), *zpd = dalloc(H), *zmd = dalloc(H), *fp = dalloc(O), *fm = dalloc(O);
		refx e;
		refx_alloc(&e, t);
		trng r = { 100 + si };
		int n_inputs = test_inputs(si == 0 ? 25 : 40);
		for (int it = 0; it < n_inputs; it++) {
			random_input(t, &r, x);
			m->forward(t->P, x, t->ws, z, lg);
			refx_compute(&e, t, x, z);
			for (int h = 0; h < H; h++) {
				double err = fabs(z[h] - e.z[h]);
				if (!(err <= TOL_Z * e.zmag[h]))
					fail_msg("%s: input %d: z[%d] = %.9g, reference %.17g (magnitudes %.3g)", t->s->name, it, h, z[h],
					         e.z[h], e.zmag[h]);
				max_z = fmax(max_z, err / fmax(e.zmag[h], DBL_MIN));
			}
			for (int k = 0; k < O; k++)
				if (!(fabs(lg[k] - e.f[k]) <= TOL_Z * e.fmag[k]))
					fail_msg("%s: input %d: logit %d = %.9g, reference %.17g", t->s->name, it, k, lg[k], e.f[k]);

			/* gradient rows vs the explicit products, masks from the generated z */
			memset(G, 0, sizeof(float) * (size_t)H * D);
			m->grads(t->P, z, G, t->ws);
			rows += H;
			for (int h = 0; h < H; h++)
				for (int d = 0; d < D; d++) {
					size_t i = (size_t)h * D + d;
					double err = fabs(G[i] - e.G[i]), scale = fmax(fabs(e.G[i]), e.Gabs[i]);
					if (!(err <= TOL_G * scale))
						fail_msg("%s: input %d: G[%d][%d] = %.9g, reference %.17g (|.| product %.3g)", t->s->name, it,
						         h, d, G[i], e.G[i], e.Gabs[i]);
					if (scale > 0)
						max_g = fmax(max_g, err / scale);
				}

			/* input_grad: each logit's gradient, in double, masks from its
			 * own double forward pass (the generated z's, up to rounding) */
			for (int k = 0; k < O; k++) {
				double *gk = dalloc(D);
				m->input_grad(t->P, x, k, t->ws, gk);
				for (int d = 0; d < D; d++) {
					size_t i = (size_t)k * D + d;
					if (!(fabs(gk[d] - e.J[i]) <= 1e-9 * fmax(fabs(e.J[i]), e.Jabs[i])))
						fail_msg("%s: input %d: input_grad of logit %d, [%d] = %.17g, reference %.17g", t->s->name,
						         it, k, d, gk[d], e.J[i]);
				}
				free(gk);
			}

			/* central finite differences of the double reference forward,
			 * where its masks are the generated ones (no |z| within rounding) */
			bool same_masks = true;
			for (int h = 0; h < H; h++)
				same_masks &= (z[h] > 0) == (e.z[h] > 0);
			if (!same_masks) {
				fd_skipped++;
				continue;
			}
			for (int d = 0; d < D; d++) {
				for (int k = 0; k < D; k++)
					xd[k] = x[k];
				double step = 1e-6 * fmax(1.0, fabs(xd[d]));
				xd[d] = (double)x[d] + step;
				rg_forward_d(&t->g, xd, zpd, fp, NULL, NULL);
				xd[d] = (double)x[d] - step;
				rg_forward_d(&t->g, xd, zmd, fm, NULL, NULL);
				if (rg_pattern_diff(zpd, e.z, H) || rg_pattern_diff(zmd, e.z, H)) {
					fd_skipped++;
					continue;
				}
				fd_checked++;
				double h2 = ((double)x[d] + step) - ((double)x[d] - step);
				for (int h = 0; h < H; h++) {
					size_t i = (size_t)h * D + d;
					double fd = (zpd[h] - zmd[h]) / h2, scale = fmax(fabs(e.G[i]), e.Gabs[i]);
					double err = fabs(fd - e.G[i]);
					/* double rounding of z over the step: ~1e-16 |mag| / 1e-6 */
					if (!(err <= 1e-6 * scale + 1e-9 * e.zmag[h]))
						fail_msg("%s: input %d: finite difference d z[%d] / d x[%d] = %.12g, reference %.12g",
						         t->s->name, it, h, d, fd, e.G[i]);
					if (scale > 0)
						max_fd_ref = fmax(max_fd_ref, err / scale);
					if (!(fabs(fd - G[i]) <= TOL_G * scale + 1e-9 * e.zmag[h]))
						fail_msg("%s: input %d: finite difference d z[%d] / d x[%d] = %.12g, generated %.9g", t->s->name,
						         it, h, d, fd, G[i]);
				}
				for (int k = 0; k < O; k++) {
					size_t i = (size_t)k * D + d;
					double fd = (fp[k] - fm[k]) / h2;
					if (!(fabs(fd - e.J[i]) <= 1e-6 * fmax(fabs(e.J[i]), e.Jabs[i]) + 1e-9 * e.fmag[k]))
						fail_msg("%s: input %d: finite difference d f[%d] / d x[%d] = %.12g, reference %.12g",
						         t->s->name, it, k, d, fd, e.J[i]);
				}
			}

			/* finite differences of the generated forward: z is affine inside
			 * the region and x +- s e_d stays in it for s below the reference's
			 * directional margins along +-e_d, so the difference quotient is
			 * exact up to the float rounding of z, TOL_Z mag / s; checked where
			 * that is below 1e-3 of the row */
			for (int d = 0; d < D; d++) {
				double tmax = INFINITY;
				for (int h = 0; h < H; h++) {
					double gd = fabs(e.G[(size_t)h * D + d]) + TOL_G * e.Gabs[(size_t)h * D + d];
					if (gd > 0)
						tmax = fmin(tmax, fmax(fabs(e.z[h]) - TOL_Z * e.zmag[h], 0) / gd);
				}
				double s = fmin(0.5 * tmax, 1.0);
				memcpy(xs, x, sizeof(float) * (size_t)D);
				float a = (float)((double)x[d] + s), b = (float)((double)x[d] - s);
				if (!(fabs((double)a - x[d]) < tmax && fabs((double)b - x[d]) < tmax) || a == b)
					continue;
				xs[d] = a;
				m->forward(t->P, xs, t->ws, zp, lgp);
				xs[d] = b;
				m->forward(t->P, xs, t->ws, zmn, lgp);
				double s2 = (double)a - (double)b;
				for (int h = 0; h < H; h++) {
					size_t i = (size_t)h * D + d;
					double bound = 2 * TOL_Z * e.zmag[h] / s2, scale = fmax(fabs(e.G[i]), e.Gabs[i]);
					if (bound > 1e-3 * scale || scale == 0) {
						gen_skipped++;
						continue;
					}
					gen_checked++;
					double fd = ((double)zp[h] - zmn[h]) / s2;
					if (!(fabs(fd - G[i]) <= bound + TOL_G * scale))
						fail_msg("%s: input %d: generated forward's difference quotient d z[%d] / d x[%d] = %.9g, "
						         "grads %.9g (bound %.3g)",
						         t->s->name, it, h, d, fd, G[i], bound + TOL_G * scale);
					max_fd_gen = fmax(max_fd_gen, fabs(fd - G[i]) / scale);
				}
			}
		}
		refx_free(&e);
		free(x);
		free(z);
		free(lg);
		free(G);
		free(xs);
		free(zp);
		free(zmn);
		free(lgp);
		free(xd);
		free(zpd);
		free(zmd);
		free(fp);
		free(fm);
	}
	long nm = n_models(state);
	assert_true(fd_checked > 100 * nm);
	assert_true(fd_skipped < fd_checked / 4);
	assert_true(gen_checked > 1000 * nm);
	printf("[ forward/grads ] %ld gradient rows; max err z %.3g of magnitudes, grads %.3g; finite differences of the "
	       "reference (%ld, %ld skipped) %.3g; of the generated forward (%ld checked, %ld skipped) %.3g\n",
	       rows, max_z, max_g, fd_checked, fd_skipped, max_fd_ref, gen_checked, gen_skipped, max_fd_gen);
}

/* ---- 3: certify ---- */

static void test_certify(void **state)
{
	const int n_inputs = test_inputs(60);
	double max_eps[3] = { 0 }, max_pred[3] = { 0 }, max_over = 0;
	long binds = 0, ties = 0, labels = 0, over[3] = { 0 }, n_eps = 0, zero_g = 0;
	FOR_MODELS(si, state) {
		const tmodel *t = tmodel_get(si);
		const rt_model *m = t->m;
		int D = t->D, H = t->H, O = t->O;
		float *x = falloc(D), *z = falloc(H), *lg = falloc(O), *z2 = falloc(H), *lg2 = falloc(O);
		refx e;
		refx_alloc(&e, t);
		trng r = { 200 + si };
		for (int it = 0; it < n_inputs; it++) {
			random_input(t, &r, x);
			rt_cert c;
			memset(&c, 0x55, sizeof c);
			m->certify(t->P, t->pre, x, RT_ALL_NORMS, t->ws, z, lg, &c, NULL);
			m->forward(t->P, x, t->ws, z2, lg2);
			for (int h = 0; h < H; h++)
				if (fabs(z[h] - z2[h]) > 1e-6 * fabs(z2[h]) + 1e-30)
					fail_msg("%s: certify z[%d] = %.9g, forward %.9g", t->s->name, h, z[h], z2[h]);
			for (int k = 0; k < O; k++)
				if (fabs(lg[k] - lg2[k]) > 1e-6 * fabs(lg2[k]) + 1e-30)
					fail_msg("%s: certify logit %d = %.9g, forward %.9g", t->s->name, k, lg[k], lg2[k]);
			refx_compute(&e, t, x, z);
			for (int h = 0; h < H; h++)
				if (rg_dual(e.Gabs + (size_t)h * D, D, 2) == 0)
					zero_g++;
			for (int p = 0; p < 3; p++) {
				interval iv = eps_interval(t, &e, p);
				if (!within(c.eps[p], &iv))
					fail_msg("%s: input %d: eps[%d] = %.9g, reference %.17g in [%.9g, %.9g]", t->s->name, it, p,
					         c.eps[p], iv.point, iv.lo, iv.hi);
				n_eps++;
				over[p] += c.eps[p] > iv.point;
				if (c.eps[p] > iv.point)
					max_over = fmax(max_over, c.eps[p] / iv.point - 1);
				if (isfinite(iv.point))
					max_eps[p] = fmax(max_eps[p], relerr(c.eps[p], iv.point));
				/* the binding neuron attains the minimum within rounding */
				if (isinf(iv.lo)) {
					assert_int_equal(c.bind[p], -1);
				} else {
					if (c.bind[p] < 0 || c.bind[p] >= H)
						fail_msg("%s: input %d: norm %d binds %d", t->s->name, it, p, c.bind[p]);
					double lo, hi, pt;
					neuron_interval(t, &e, c.bind[p], p, &lo, &hi, &pt);
					if (!(lo <= iv.hi))
						fail_msg("%s: input %d: norm %d binds neuron %d (%.9g), reference %d (%.9g)", t->s->name, it, p,
						         c.bind[p], pt, iv.bind, iv.point);
					if (iv.candidates == 1) {
						binds++;
						assert_int_equal(c.bind[p], iv.cand);
					} else {
						ties++;
					}
				}
				int label;
				interval pv = pred_interval(t, &e, p, &iv, &label);
				if (!within(c.eps_pred[p], &pv))
					fail_msg("%s: input %d: eps_pred[%d] = %.9g, reference %.17g in [%.9g, %.9g]", t->s->name, it, p,
					         c.eps_pred[p], pv.point, pv.lo, pv.hi);
				max_pred[p] = fmax(max_pred[p], relerr(c.eps_pred[p], pv.point));
				assert_true(c.eps_pred[p] <= c.eps[p]);
				if (p == 0 && label >= 0) {
					labels++;
					if (c.label != label)
						fail_msg("%s: input %d: label %d, reference %d", t->s->name, it, c.label, label);
				}
			}
			/* subsets of the norms give the same numbers */
			static const int32_t subsets[] = { RT_NORM_BIT(RT_L1), RT_NORM_BIT(RT_L2), RT_NORM_BIT(RT_LINF),
				                           RT_NORM_BIT(RT_L1) | RT_NORM_BIT(RT_L2) };
			for (size_t ss = 0; ss < sizeof subsets / sizeof *subsets; ss++) {
				rt_cert cs;
				m->certify(t->P, t->pre, x, subsets[ss], t->ws, z2, lg2, &cs, NULL);
				assert_int_equal(cs.label, c.label);
				for (int p = 0; p < 3; p++)
					if (subsets[ss] & RT_NORM_BIT(p)) {
						interval iv = eps_interval(t, &e, p);
						int label;
						interval pv = pred_interval(t, &e, p, &iv, &label);
						if (!within(cs.eps[p], &iv) || !within(cs.eps_pred[p], &pv))
							fail_msg("%s: input %d: norms %d: eps[%d] = %.9g in [%.9g, %.9g], eps_pred %.9g in "
							         "[%.9g, %.9g]",
							         t->s->name, it, subsets[ss], p, cs.eps[p], iv.lo, iv.hi, cs.eps_pred[p], pv.lo,
							         pv.hi);
					}
			}
		}
		refx_free(&e);
		free(x);
		free(z);
		free(lg);
		free(z2);
		free(lg2);
	}
	long nm = n_models(state);   /* the counts scale with the inputs drawn */
	assert_true(binds * 60 > 100 * nm * n_inputs);
	assert_true(labels * 60 > 50 * nm * n_inputs);
	printf("[ certify ] max rel err to the point reference: eps l1 %.3g l2 %.3g linf %.3g, eps_pred %.3g %.3g %.3g; "
	       "%ld binding neurons compared exactly, %ld within rounding ties; %ld labels; eps above the point "
	       "reference: %ld / %ld / %ld of %ld, by up to %.3g\n",
	       max_eps[0], max_eps[1], max_eps[2], max_pred[0], max_pred[1], max_pred[2], binds, ties, labels, over[0],
	       over[1], over[2], n_eps / 3, max_over);
}

/* Soundness (docs/method.md): every radius must hold in exact arithmetic, so
 * rounding may only make it smaller.  The double reference stands in for
 * exact arithmetic, with 1e-12 of the magnitudes summed into each value for
 * its own rounding.  eps_p, eps_pred_p and directional margins must not
 * exceed it. */
static void test_soundness(void **state)
{
	long checked = 0, zero = 0;
	FOR_MODELS(si, state) {
		const tmodel *t = tmodel_get(si);
		const rt_model *m = t->m;
		int D = t->D, H = t->H, O = t->O;
		float *x = falloc(D), *dir = falloc(D), *z = falloc(H), *lg = falloc(O);
		refx e;
		refx_alloc(&e, t);
		trng r = { 800 + si };
		for (int it = 0; it < test_inputs(30); it++) {
			random_input(t, &r, x);
			rt_cert c;
			m->certify(t->P, t->pre, x, RT_ALL_NORMS, t->ws, z, lg, &c, NULL);
			refx_compute(&e, t, x, z);
			double bound[3] = { INFINITY, INFINITY, INFINITY };
			for (int h = 0; h < H; h++)
				for (int p = 0; p < 3; p++) {
					double q = rg_dual(e.G + (size_t)h * D, D, p);
					if (q > 0)
						bound[p] = fmin(bound[p], (fabs(e.z[h]) + 1e-12 * e.zmag[h]) / q);
				}
			int y = c.label;
			for (int p = 0; p < 3; p++) {
				double pb = bound[p];
				for (int k = 0; k < (O == 1 ? 1 : O); k++) {
					if (O > 1 && k == y)
						continue;
					double *v = dalloc(D);
					for (int d = 0; d < D; d++)
						v[d] = O == 1 ? e.J[d] : e.J[(size_t)y * D + d] - e.J[(size_t)k * D + d];
					double gap = O == 1 ? (y ? e.f[0] : -e.f[0]) : e.f[y] - e.f[k];
					double sl = O == 1 ? e.fmag[0] : e.fmag[y] + e.fmag[k];
					pb = fmin(pb, fmax(gap + 1e-12 * sl, 0) / rg_dual(v, D, p));
					free(v);
				}
				if (!(c.eps[p] <= bound[p]) || !(c.eps_pred[p] <= pb))
					fail_msg("%s: input %d: norm %d: eps %.9g (exact %.17g), eps_pred %.9g (exact %.17g): a radius "
					         "above the exact one",
					         t->s->name, it, p, c.eps[p], bound[p], c.eps_pred[p], pb);
				zero += c.eps[p] == 0;
				checked++;
			}
			for (int d = 0; d < D; d++)
				dir[d] = (float)trng_normal(&r);
			float tt;
			int32_t tb;
			m->direction(t->P, x, dir, t->ws, &tt, &tb, NULL);
			double tmax = INFINITY;
			for (int h = 0; h < H; h++) {
				double gd = 0;
				for (int d = 0; d < D; d++)
					gd += e.G[(size_t)h * D + d] * dir[d];
				if (z[h] > 0 ? gd < 0 : gd > 0)
					tmax = fmin(tmax, (fabs(e.z[h]) + 1e-12 * e.zmag[h]) / fabs(gd));
			}
			if (!(tt <= tmax))
				fail_msg("%s: input %d: directional margin %.9g above the exact %.17g", t->s->name, it, tt, tmax);
		}
		refx_free(&e);
		free(x);
		free(dir);
		free(z);
		free(lg);
	}
	printf("[ soundness ] %ld radii at most the exact ones (%ld of them 0)\n", checked, zero);
}

/* eps_pred where the decision binds: inputs bisected to near the decision
 * boundary of the reference; the generated eps_pred lies in its interval,
 * and the label holds at 0.999 of the reference eps_pred_2 toward the
 * nearest other class and flips at 1.001. */
static void test_pred_binding(void **state)
{
	const size_t which[] = { 0, 2, 4 };   /* the acceptance example, one logit, five */
	int models = 0;
	for (size_t w = 0; w < sizeof which / sizeof *which; w++) {
		if (!in_part(state, which[w]))
			continue;
		models++;
		const tmodel *t = tmodel_get(which[w]);
		int D = t->D, O = t->O, H = t->H;
		float *x = falloc(D), *x0 = falloc(D), *x1 = falloc(D), *z = falloc(H), *lg = falloc(O);
		double *f = dalloc(O), *zz = dalloc(H), *v = dalloc(D), *xs = dalloc(D);
		refx e;
		refx_alloc(&e, t);
		trng r = { 300 + w };
		int strict = 0, tried = 0;
		for (int it = 0; it < 200 && tried < 12; it++) {
			random_input(t, &r, x0);
			/* the far side of the centre: far out the network is close to
			 * linear, so the labels usually differ */
			for (int d = 0; d < D; d++)
				x1[d] = (float)(t->g.mean - (it % 2 ? 10 : 1) * ((double)x0[d] - t->g.mean));
			refx_compute(&e, t, x0, NULL);
			int l0 = rg_pred(&t->g, e.f, e.J, (double[3]){ 0, 0, 0 }, (double[3]){ 0 });
			refx_compute(&e, t, x1, NULL);
			if (rg_pred(&t->g, e.f, e.J, (double[3]){ 0, 0, 0 }, (double[3]){ 0 }) == l0)
				continue;
			double lo = 0, hi = 1;
			/* 16 halvings leave a logit gap well above float rounding */
			for (int k = 0; k < 16; k++) {
				double mid = (lo + hi) / 2;
				for (int d = 0; d < D; d++)
					x[d] = (float)(x0[d] + mid * ((double)x1[d] - x0[d]));
				refx_compute(&e, t, x, NULL);
				double dummy[3] = { 0 };
				if (rg_pred(&t->g, e.f, e.J, (double[3]){ 0, 0, 0 }, dummy) == l0)
					lo = mid;
				else
					hi = mid;
			}
			for (int d = 0; d < D; d++)
				x[d] = (float)(x0[d] + lo * ((double)x1[d] - x0[d]));
			rt_cert c;
			t->m->certify(t->P, t->pre, x, RT_ALL_NORMS, t->ws, z, lg, &c, NULL);
			refx_compute(&e, t, x, z);
			tried++;
			for (int p = 0; p < 3; p++) {
				interval iv = eps_interval(t, &e, p);
				int label;
				interval pv = pred_interval(t, &e, p, &iv, &label);
				if (!within(c.eps_pred[p], &pv))
					fail_msg("%s: boundary input %d: eps_pred[%d] = %.9g in [%.9g, %.9g]", t->s->name, it, p,
					         c.eps_pred[p], pv.lo, pv.hi);
				if (label >= 0)
					assert_int_equal(c.label, label);
			}
			double eps[3], second[3], pred[3];
			int bind[3];
			rg_margins(&t->g, e.z, e.G, eps, bind, second);
			int y = rg_pred(&t->g, e.f, e.J, eps, pred);
			if (!(pred[1] < 0.5 * eps[1]))
				continue;
			bool masks_agree = true;
			for (int h = 0; h < H; h++)
				masks_agree &= (z[h] > 0) == (e.z[h] > 0);
			if (!masks_agree)
				continue;
			strict++;
			/* the worst class k and the direction -grad(f_y - f_k) */
			int kb = -1;
			double best = INFINITY;
			for (int k = 0; k < (O == 1 ? 1 : O); k++) {
				if (O > 1 && k == y)
					continue;
				for (int d = 0; d < D; d++)
					v[d] = O == 1 ? (e.f[0] > 0 ? 1 : -1) * e.J[d] : e.J[(size_t)y * D + d] - e.J[(size_t)k * D + d];
				double gap = O == 1 ? fabs(e.f[0]) : e.f[y] - e.f[k], rr = gap / rg_dual(v, D, RT_L2);
				if (rr < best)
					best = rr, kb = k;
			}
			for (int d = 0; d < D; d++)
				v[d] = O == 1 ? (e.f[0] > 0 ? 1 : -1) * e.J[d] : e.J[(size_t)y * D + d] - e.J[(size_t)kb * D + d];
			double n2 = rg_dual(v, D, RT_L2);
			for (int s = 0; s < 2; s++) {
				double fac = s ? 1.001 : 0.999;
				for (int d = 0; d < D; d++)
					xs[d] = (double)x[d] - fac * pred[1] * v[d] / n2;
				rg_forward_d(&t->g, xs, zz, f, NULL, NULL);
				assert_int_equal(rg_pattern_diff(zz, e.z, H), 0);
				int lab = rg_pred(&t->g, f, e.J, (double[3]){ 0, 0, 0 }, (double[3]){ 0 });
				if (s ? lab == y : lab != y)
					fail_msg("%s: label %s at %.4g eps_pred", t->s->name, s ? "kept" : "changed", fac);
			}
		}
		printf("[ eps_pred ] %s: %d of %d boundary inputs with eps_pred_2 < eps_2 / 2 checked geometrically\n",
		       t->s->name, strict, tried);
		assert_true(tried >= 8);
		assert_true(strict >= tried / 3);
		refx_free(&e);
		free(x);
		free(x0);
		free(x1);
		free(z);
		free(lg);
		free(f);
		free(zz);
		free(v);
		free(xs);
	}
	assert_true(models > 0);   /* registered only for parts holding one of them */
}

/* ---- 4: direction ---- */

static void test_direction(void **state)
{
	const int n_inputs = test_inputs(60);
	double max_t = 0;
	long geo = 0, none = 0, binds = 0;
	FOR_MODELS(si, state) {
		const tmodel *t = tmodel_get(si);
		const rt_model *m = t->m;
		int D = t->D, H = t->H, O = t->O;
		float *x = falloc(D), *dir = falloc(D), *z = falloc(H), *lg = falloc(O);
		double *dd = dalloc(D), *xsd = dalloc(D), *zsd = dalloc(H), *fsd = dalloc(O);
		refx e;
		refx_alloc(&e, t);
		trng r = { 400 + si };
		for (int it = 0; it < n_inputs; it++) {
			random_input(t, &r, x);
			double scale = it % 3 == 0 ? 1.0 : it % 3 == 1 ? 1e-2 : 10.0;
			for (int d = 0; d < D; d++) {
				dir[d] = (float)(scale * trng_normal(&r));
				dd[d] = dir[d];
			}
			float tt;
			int32_t tb;
			m->direction(t->P, x, dir, t->ws, &tt, &tb, NULL);
			m->forward(t->P, x, t->ws, z, lg);
			refx_compute(&e, t, x, z);
			/* interval: g.d to within TOL_G (|G| . |d|); neurons whose sign of
			 * g.d is uncertain may or may not count */
			double lo = INFINITY, hi = INFINITY, pt = INFINITY;
			int pb = -1, cands = 0, cand = -1;
			double *los = dalloc(H);
			for (int h = 0; h < H; h++) {
				double gd = 0, ga = 0;
				for (int k = 0; k < D; k++) {
					gd += e.G[(size_t)h * D + k] * dd[k];
					ga += e.Gabs[(size_t)h * D + k] * fabs(dd[k]);
				}
				double dg = TOL_G * ga, az = fabs(e.z[h]), dz = TOL_Z * e.zmag[h];
				double toward = z[h] > 0 ? -gd : gd;   /* > 0: moves toward zero */
				los[h] = INFINITY;
				if (toward + dg > 0)
					los[h] = fmax(az - dz, 0) / (toward + dg);
				if (toward - dg > 0)
					hi = fmin(hi, (az + dz) / (toward - dg));
				if (toward > 0 && az / toward < pt)
					pt = az / toward, pb = h;
				lo = fmin(lo, los[h]);
			}
			for (int h = 0; h < H; h++)
				if (los[h] <= hi)
					cands++, cand = h;
			free(los);
			interval iv = { lo, hi, pt, pb, cands, cand };
			if (!within(tt, &iv))
				fail_msg("%s: input %d: directional margin %.9g, reference %.17g in [%.9g, %.9g]", t->s->name, it, tt,
				         pt, lo, hi);
			if (isinf(lo)) {
				none++;
				assert_int_equal(tb, -1);
				continue;
			}
			if (isfinite(pt))
				max_t = fmax(max_t, relerr(tt, pt));
			if (cands == 1) {
				binds++;
				assert_int_equal(tb, cand);
			}
			/* geometry in double: same pattern at 0.999 t, another at 1.001 t */
			if (!isfinite(pt))
				continue;
			bool masks_agree = true;
			for (int h = 0; h < H; h++)
				masks_agree &= (z[h] > 0) == (e.z[h] > 0);
			if (!masks_agree || cands != 1)
				continue;
			for (int s = 0; s < 2; s++) {
				double f = s ? 1.001 : 0.999;
				for (int d = 0; d < D; d++)
					xsd[d] = (double)x[d] + f * tt * dd[d];
				rg_forward_d(&t->g, xsd, zsd, fsd, NULL, NULL);
				int diff = rg_pattern_diff(zsd, e.z, H);
				if (s ? diff == 0 : diff != 0)
					fail_msg("%s: input %d: pattern %s at %.4g t", t->s->name, it, s ? "unchanged" : "changed", f);
				if (s && (zsd[tb] > 0) == (e.z[tb] > 0))
					fail_msg("%s: input %d: the binding neuron %d did not flip at 1.001 t", t->s->name, it, tb);
			}
			geo++;
		}
		refx_free(&e);
		free(x);
		free(dir);
		free(z);
		free(lg);
		free(dd);
		free(xsd);
		free(zsd);
		free(fsd);
	}
	long nm = n_models(state);   /* the counts scale with the inputs drawn */
	assert_true(geo * 60 > 20 * nm * n_inputs);
	assert_true(binds * 60 > 30 * nm * n_inputs);
	printf("[ direction ] max rel err %.3g; %ld binding neurons compared; geometry checked %ld; %ld with no crossing\n",
	       max_t, binds, geo, none);
}

/* ---- 5: geometry of the certified balls ---- */

/* Corners of the ball (where the worst case lies): every coordinate at the
 * full radius for linf, one coordinate for l1. */
static void sample_vertex(trng *r, int p, int D, double *u)
{
	memset(u, 0, sizeof(double) * (size_t)D);
	if (p == RT_LINF)
		for (int d = 0; d < D; d++)
			u[d] = trng_sign(r);
	else
		u[trng_next(r) % (uint64_t)D] = trng_sign(r);
}

/* True when float rounding within `reach` (linf) of x cannot move any
 * neuron by more than a thousandth of its |z|: then the generated forward's
 * pattern on float points can be compared. */
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
		if (1e-3 * fabs(e->z[h]) < 100 * ulp * g1 + 2 * ULP * e->zmag[h])
			return false;
	}
	return true;
}

static void test_geometry(void **state)
{
	long points = 0, points_gen = 0, toward = 0;
	FOR_MODELS(si, state) {
		const tmodel *t = tmodel_get(si);
		const rt_model *m = t->m;
		int D = t->D, H = t->H, O = t->O;
		float *x = falloc(D), *xs = falloc(D), *zs = falloc(H), *lg = falloc(O), *z = falloc(H);
		double *u = dalloc(D), *xsd = dalloc(D), *zsd = dalloc(H), *fsd = dalloc(O);
		refx e;
		refx_alloc(&e, t);
		trng r = { 500 + si };
		for (int p = 0; p < 3; p++) {
			int found = 0;
			for (int tries = 0; found < 2 && tries < 300; tries++) {
				random_input(t, &r, x);
				rt_cert c;
				m->certify(t->P, t->pre, x, RT_ALL_NORMS, t->ws, z, lg, &c, NULL);
				refx_compute(&e, t, x, z);
				if (c.bind[p] < 0)
					continue;
				interval iv = eps_interval(t, &e, p);
				if (iv.candidates != 1)
					continue;
				double eps = c.eps[p];
				bool gen = float_robust(t, x, &e, eps * 1.001);
				found++;
				for (int k = 0; k < 300; k++) {
					int kind = k % 3;   /* volume, surface at 0.999, vertices at 0.999 */
					if (kind == 2 && p == RT_L2)
						kind = 1;
					if (kind == 2)
						sample_vertex(&r, p, D, u);
					else
						sample_ball(&r, p, D, kind == 0, u);
					assert_true(lp_norm(u, D, p) <= 1 + 1e-12);
					double rad = (kind == 0 ? eps : 0.999 * eps) * (1 - 1e-6);
					for (int d = 0; d < D; d++)
						xsd[d] = (double)x[d] + rad * u[d];
					rg_forward_d(&t->g, xsd, zsd, fsd, NULL, NULL);
					int diff = rg_pattern_diff(zsd, e.z, H);
					if (diff)
						fail_msg("%s: norm %d: point %d (kind %d) inside the ball of radius %.9g changes %d neurons",
						         t->s->name, p, k, kind, eps, diff);
					points++;
					if (gen) {
						for (int d = 0; d < D; d++)
							xs[d] = (float)xsd[d];
						m->forward(t->P, xs, t->ws, zs, lg);
						int dg = 0;
						for (int h = 0; h < H; h++)
							dg += (zs[h] > 0) != (e.z[h] > 0);
						if (dg)
							fail_msg("%s: norm %d: the generated pattern changes at point %d", t->s->name, p, k);
						points_gen++;
					}
				}
				/* just past the ball toward the binding neuron's hyperplane */
				int b = c.bind[p];
				const double *g = e.G + (size_t)b * D;
				double sz = e.z[b] > 0 ? 1 : -1;
				memset(u, 0, sizeof(double) * (size_t)D);
				if (p == RT_L2) {
					double n2 = rg_dual(g, D, RT_L2);
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
				for (int s = 0; s < 2; s++) {
					double f = s ? 1.001 : 0.999;
					for (int d = 0; d < D; d++)
						xsd[d] = (double)x[d] + f * eps * u[d];
					rg_forward_d(&t->g, xsd, zsd, fsd, NULL, NULL);
					int diff = rg_pattern_diff(zsd, e.z, H);
					if (s ? diff == 0 || (zsd[b] > 0) == (e.z[b] > 0) : diff != 0)
						fail_msg("%s: norm %d: at %.4g eps toward neuron %d: %d neurons changed", t->s->name, p, f, b,
						         diff);
				}
				if (gen) {
					for (int d = 0; d < D; d++)
						xs[d] = (float)((double)x[d] + 1.001 * eps * u[d]);
					m->forward(t->P, xs, t->ws, zs, lg);
					if ((zs[b] > 0) == (e.z[b] > 0))
						fail_msg("%s: norm %d: the generated binding neuron %d did not flip at 1.001 eps", t->s->name,
						         p, b);
				}
				toward++;
			}
			if (found < 2)
				fail_msg("%s: norm %d: only %d inputs with a clear binding neuron", t->s->name, p, found);
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
	}
	assert_true(points_gen > 0);
	printf("[ geometry ] %ld ball points (reference), %ld (generated forward), %ld boundary crossings\n", points,
	       points_gen, toward);
}

/* ---- 6: batches across threads ---- */

static void test_batch(void **state)
{
	FOR_MODELS(si, state) {
		const tmodel *t = tmodel_get(si);
		const rt_model *m = t->m;
		const int n = 23;
		int D = t->D;
		float *x = falloc((int64_t)n * D), *dirs = falloc((int64_t)n * D);
		trng r = { 600 + si };
		for (int i = 0; i < n; i++) {
			random_input(t, &r, x + (size_t)i * D);
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
			assert_int_equal(rt_certify_batch(m, t->P, &b), 0);
		}
		for (int th = 1; th < 3; th++) {
			assert_memory_equal(cert[0], cert[th], sizeof(rt_cert) * n);
			assert_memory_equal(pat[0], pat[th], sizeof(uint64_t) * n);
			assert_memory_equal(tt[0], tt[th], sizeof(float) * n);
			assert_memory_equal(tb[0], tb[th], sizeof(int32_t) * n);
		}
		float *z = falloc(t->H), *lg = falloc(t->O);
		for (int i = 0; i < n; i++) {
			rt_cert c;
			memset(&c, 0, sizeof c);
			m->certify(t->P, t->pre, x + (size_t)i * D, RT_ALL_NORMS, t->ws, z, lg, &c, NULL);
			assert_memory_equal(&c, &cert[0][i], sizeof c);
			m->forward(t->P, x + (size_t)i * D, t->ws, z, lg);
			/* the pattern hash, computed here from rt.h's definition */
			uint64_t h = 0xcbf29ce484222325ULL;
			uint64_t nh = (uint64_t)t->H;
			for (int k = 0; k < 8; k++)
				h = (h ^ ((nh >> (8 * k)) & 255)) * 1099511628211ULL;
			for (int k = 0; k < (t->H + 7) / 8; k++) {
				unsigned byte = 0;
				for (int j = 0; j < 8 && 8 * k + j < t->H; j++)
					byte |= (unsigned)(z[8 * k + j] > 0) << j;
				h = (h ^ byte) * 1099511628211ULL;
			}
			if (pat[0][i] != h)
				fail_msg("%s: input %d: pattern hash %016llx, expected %016llx (rt_pattern_hash %016llx)", t->s->name, i,
				         (unsigned long long)pat[0][i], (unsigned long long)h,
				         (unsigned long long)rt_pattern_hash(z, t->H));
			float td;
			int32_t bd;
			m->direction(t->P, x + (size_t)i * D, dirs + (size_t)i * D, t->ws, &td, &bd, NULL);
			assert_memory_equal(&td, &tt[0][i], sizeof td);
			assert_int_equal(bd, tb[0][i]);
		}
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
	}
}

/* ---- the batched training kernels ----
 * Every model without recurrence trains a batch at a time (cg_batch.c, in
 * float, columns of examples): z and logits of the batched forward against
 * the reference, for calls of several sizes, whole and as two shares of
 * columns; the mean gradient of the vanilla objective over 70 examples (a
 * full call of 64 and a partial one) the same bits on 1, 2 and 3 threads,
 * and within float rounding of the per-example kernels' (another
 * implementation, accumulating in double), which test_train_vanilla checks
 * against finite differences of the reference. */
static void test_train_batched(void **state)
{
	FOR_MODELS(si, state) {
		const tmodel *t = tmodel_get(si);
		const rt_model *m = t->m;
		bool rnn = false;
		for (int i = 0; i < t->g.nn; i++)
			rnn |= t->g.node[i].kind == RG_RNN;
		assert_int_equal(m->batch, rnn ? 0 : 64);
		if (rnn)
			continue;
		enum { N = 70 };
		const int D = t->D, H = t->H, O = t->O;
		float *X = falloc((int64_t)N * D);
		int32_t y[N];
		trng r = { 800 + si };
		for (int e = 0; e < N; e++) {
			random_input(t, &r, X + (size_t)e * D);
			y[e] = trng_int(&r, O == 1 ? 2 : O);
		}

		float *bws = falloc(m->batch_ws_floats), *z = falloc(64 * (int64_t)H), *lg = falloc(64 * (int64_t)O);
		float *lz = falloc(64 * (int64_t)O);
		const float *rows[64];
		refx e;
		refx_alloc(&e, t);
		static const int32_t sizes[] = { 1, 5, 8, 13, 37, 64 };
		for (size_t c = 0; c < sizeof sizes / sizeof *sizes; c++) {
			int32_t n = sizes[c];
			for (int i = 0; i < n; i++)
				rows[i] = X + (size_t)(i * 37 % N) * D;
			m->train_batch_forward(t->P, rows, n, bws, NULL, lz, 0, 64);
			m->train_batch_forward(t->P, rows, n, bws, z, lg, 0, 16);
			m->train_batch_forward(t->P, rows, n, bws, z, lg, 16, 64);
			assert_memory_equal(lz, lg, sizeof(float) * (size_t)(n * O));
			for (int i = 0; i < n; i++) {
				rg_forward_f(&t->g, rows[i], e.z, e.f, e.zmag, e.fmag);
				for (int h = 0; h < H; h++)
					if (!(fabs(z[i * H + h] - e.z[h]) <= TOL_Z * e.zmag[h]))
						fail_msg("%s: batch of %d, example %d: z[%d] = %.9g, reference %.17g", t->s->name, n, i, h,
						         z[i * H + h], e.z[h]);
				for (int k = 0; k < O; k++)
					if (!(fabs(lg[i * O + k] - e.f[k]) <= TOL_Z * e.fmag[k]))
						fail_msg("%s: batch of %d, example %d: logit %d = %.9g, reference %.17g", t->s->name, n, i,
						         k, lg[i * O + k], e.f[k]);
			}
		}

		rt_objective van = { .kind = RT_OBJ_VANILLA, .sigmoid = O == 1 };
		const int64_t np = m->n_params;
		float *g[3];
		double loss[3];
		for (int th = 0; th < 3; th++) {
			g[th] = falloc(np);
			assert_int_equal(rt_batch_grad(m, &van, t->P, t->pre, X, y, NULL, N, th + 1, g[th], &loss[th], NULL), 0);
		}
		for (int th = 1; th < 3; th++) {
			assert_true(loss[th] == loss[0]);
			assert_memory_equal(g[th], g[0], sizeof(float) * (size_t)np);
		}
		/* the per-example kernels, summed in double */
		double *ref = dalloc(np), lref = 0, ce;
		float *gone = falloc(np), *zz = falloc(H), *dz = falloc(H), *dl = falloc(O);
		int32_t *scratch = calloc((size_t)H + 1, sizeof(int32_t));
		for (int i = 0; i < N; i++) {
			const float *x = X + (size_t)i * D;
			memset(gone, 0, sizeof(float) * (size_t)np);
			m->train_forward(t->P, t->pre, x, 0, t->ws, zz, lz, NULL, NULL);
			lref += rt_objective_eval(&van, m, lz, zz, NULL, y[i], dl, dz, NULL, &ce, scratch);
			m->train_backward(t->P, t->pre, t->ws, dl, dz, NULL, gone);
			for (int64_t p = 0; p < np; p++)
				ref[p] += gone[p];
		}
		double gmax = 0, worst = 0;
		for (int64_t p = 0; p < np; p++)
			gmax = fmax(gmax, fabs(ref[p] / N));
		for (int64_t p = 0; p < np; p++) {
			double err = fabs(g[0][p] - ref[p] / N);
			worst = fmax(worst, err / gmax);
			if (!(err <= 1e-5 * fabs(ref[p] / N) + 1e-5 * gmax))
				fail_msg("%s: parameter %lld: batched %.9g, per-example kernels %.9g", t->s->name, (long long)p,
				         g[0][p], ref[p] / N);
		}
		assert_true(fabs(loss[0] - lref / N) <= 1e-5 * fmax(1, fabs(lref / N)));
		printf("[ batched ] %s: %lld parameters, largest |gradient| %.3g, worst error %.3g of it\n", t->s->name,
		       (long long)np, gmax, worst);
		for (int th = 0; th < 3; th++)
			free(g[th]);
		free(ref);
		free(gone);
		free(zz);
		free(dz);
		free(dl);
		free(scratch);
		refx_free(&e);
		free(bws);
		free(z);
		free(lg);
		free(lz);
		free(X);
	}
}

/* ---- 7: training gradients against finite differences ---- */

static double batch_loss(rg_graph *g, const float *X, const int32_t *y, int nb, const rg_loss_spec *ls, uint64_t *piece,
                         rg_example *ex)
{
	double s = 0;
	uint64_t pc = 0;
	for (int i = 0; i < nb; i++) {
		s += rg_loss(g, X + (size_t)i * g->D, y[i], ls, ex);
		pc = rg_mix(pc, ex->piece);
	}
	if (piece)
		*piece = pc;
	return s / nb;
}

static void check_training(size_t si, const rt_objective *ob, const rg_loss_spec *ls, const char *what)
{
	tmodel *t = (tmodel *)tmodel_get(si);
	const rt_model *m = t->m;
	int D = t->D, H = t->H, O = t->O;
	rt_objective o = *ob;
	o.sigmoid = O == 1;
	const int nb = 2;
	float *X = falloc((int64_t)nb * D), *z = falloc(H), *sq = falloc(H), *lg = falloc(O);
	int32_t y[2];
	rg_example ex;
	rg_example_alloc(&t->g, &ex);
	refx e;
	refx_alloc(&e, t);
	double *Gn = dalloc((int64_t)H * D), *Gna = dalloc((int64_t)H * D);
	trng r = { 700 + si * 13 + (uint64_t)ls->kind * 101 + (uint64_t)ls->gamma };
	/* examples away from every kink (ReLU, hinge, selection, binding) */
	int got = 0;
	for (int tries = 0; got < nb && tries < 400; tries++) {
		float *x = X + (size_t)got * D;
		random_input(t, &r, x);
		int lab = trng_int(&r, O == 1 ? 2 : O);
		rg_loss(&t->g, x, lab, ls, &ex);
		if (ex.kink < 1e-4)
			continue;
		y[got++] = lab;
	}
	if (got < nb)
		fail_msg("%s %s: no example away from the kinks", t->s->name, what);

	/* train_forward's z, logits and sq (normalized units) */
	for (int i = 0; i < nb; i++) {
		const float *x = X + (size_t)i * D;
		m->train_forward(t->P, t->pre, x, 1, t->ws, z, lg, sq, NULL);
		rg_forward_f(&t->g, x, e.z, e.f, e.zmag, e.fmag);
		rg_jacobians(&t->g, e.z, 1.0, Gn, NULL, Gna, NULL);
		for (int h = 0; h < H; h++) {
			if (!(fabs(z[h] - e.z[h]) <= TOL_Z * e.zmag[h]))
				fail_msg("%s: train_forward z[%d] = %.9g, reference %.17g", t->s->name, h, z[h], e.z[h]);
			double s = 0, bound = 0;
			for (int d = 0; d < D; d++) {
				double gv = Gn[(size_t)h * D + d];
				s += gv * gv;
				bound += 2 * fabs(gv) * TOL_G * Gna[(size_t)h * D + d] + pow(TOL_G * Gna[(size_t)h * D + d], 2);
			}
			if (!(fabs(sq[h] - s) <= bound + 4 * ULP * s))
				fail_msg("%s: train_forward sq[%d] = %.9g, reference %.17g (bound %.3g)", t->s->name, h, sq[h], s,
				         bound);
		}
		for (int k = 0; k < O; k++)
			if (!(fabs(lg[k] - e.f[k]) <= TOL_Z * e.fmag[k]))
				fail_msg("%s: train_forward logit %d = %.9g, reference %.17g", t->s->name, k, lg[k], e.f[k]);
	}

	float *grad = falloc(m->n_params), *grad2 = falloc(m->n_params);
	double loss, ce, loss2;
	assert_int_equal(rt_batch_grad(m, &o, t->P, t->pre, X, y, NULL, nb, 1, grad, &loss, &ce), 0);
	assert_int_equal(rt_batch_grad(m, &o, t->P, t->pre, X, y, NULL, nb, 2, grad2, &loss2, NULL), 0);
	double *Pd = dalloc(m->n_params);
	for (int64_t i = 0; i < m->n_params; i++)
		Pd[i] = t->P[i];
	uint64_t piece0;
	double L = batch_loss(&t->g, X, y, nb, ls, &piece0, &ex);
	if (!(fabs(loss - L) <= 1e-4 * fmax(1, fabs(L))))
		fail_msg("%s %s: loss %.9g, reference %.12g", t->s->name, what, loss, L);

	/* finite differences of the reference loss over a sample of each tensor;
	 * under the sanitizers a smaller one: the loop runs only this file's
	 * reference (lln's code ran above, the same either way), instrumented,
	 * most of this test's time there, and the plain build checks the full
	 * sample of the same gradients */
#ifdef LLN_SANITIZE
	int per_tensor = 3;
#else
	int per_tensor = si == 0 ? 10 : 14;
#endif
	int64_t *which = malloc(sizeof(int64_t) * (size_t)m->n_tensors * per_tensor);
	int nw = 0;
	for (int ti = 0; ti < m->n_tensors; ti++) {
		const rt_tensor *tt = &m->tensors[ti];
		for (int k = 0; k < per_tensor && k < tt->count; k++)
			which[nw++] = tt->offset + (tt->count <= per_tensor ? k : (int64_t)(trng_next(&r) % (uint64_t)tt->count));
	}
	double *fd = dalloc(nw);
	int skipped = 0;
	double gscale = 1e-6;
	for (int k = 0; k < nw; k++) {
		int64_t i = which[k];
		double h = 1e-6 * fmax(1, fabs(Pd[i])), keep = Pd[i];
		uint64_t pp, pm;
		Pd[i] = keep + h;
		rg_load(&t->g, Pd);
		double lp = batch_loss(&t->g, X, y, nb, ls, &pp, &ex);
		Pd[i] = keep - h;
		rg_load(&t->g, Pd);
		double lm = batch_loss(&t->g, X, y, nb, ls, &pm, &ex);
		Pd[i] = keep;
		if (pp != piece0 || pm != piece0) {
			fd[k] = NAN;
			skipped++;
			continue;
		}
		fd[k] = (lp - lm) / (2 * h);
		gscale = fmax(gscale, fabs(fd[k]));
	}
	rg_load(&t->g, Pd);
	double worst = 0;
	int checked = 0;
	for (int k = 0; k < nw; k++) {
		if (isnan(fd[k]))
			continue;
		int64_t i = which[k];
		double err = fabs(fd[k] - grad[i]), tol = 2e-3 * fabs(fd[k]) + 2e-4 * gscale;
		worst = fmax(worst, err / (fabs(fd[k]) + 0.1 * gscale));
		checked++;
		const char *tn = "?";
		for (int ti = 0; ti < m->n_tensors; ti++)
			if (i >= m->tensors[ti].offset && i < m->tensors[ti].offset + m->tensors[ti].count)
				tn = m->tensors[ti].name;
		if (!(err <= tol))
			fail_msg("%s %s: parameter %lld (%s): finite difference %.9g, rt_batch_grad %.9g (tolerance %.3g)",
			         t->s->name, what, (long long)i, tn, fd[k], grad[i], tol);
		if (!(fabs(grad2[i] - grad[i]) <= 1e-5 * fabs(grad[i]) + 1e-6 * gscale))
			fail_msg("%s %s: parameter %lld: 2 threads %.9g, 1 thread %.9g", t->s->name, what, (long long)i, grad2[i],
			         grad[i]);
	}
	assert_true(checked >= nw * 3 / 4);
	assert_true(fabs(loss2 - loss) <= 1e-6 * fmax(1, fabs(loss)));
	printf("[ training ] %s %s: loss %.6g (reference %.9g); %d parameters checked (%d skipped at kinks), largest "
	       "|fd| %.3g, worst err %.3g of |fd| + gscale/10\n",
	       t->s->name, what, loss, L, checked, skipped, gscale, worst);
	free(which);
	free(fd);
	free(Pd);
	free(grad);
	free(grad2);
	free(X);
	free(z);
	free(sq);
	free(lg);
	free(Gn);
	free(Gna);
	refx_free(&e);
	rg_example_free(&ex);
}

static const size_t train_models[] = { 0, 1, 2, 6, 9, 10, 11 };   /* cnn, res3, wide (one logit), r1, rnn, rnn2, chan */
#define NTRAIN (sizeof train_models / sizeof *train_models)

/* One objective on the training models of the part. */
static void check_training_part(void **state, const rt_objective *ob, const rg_loss_spec *ls, const char *what)
{
	int models = 0;
	for (size_t i = 0; i < NTRAIN; i++)
		if (in_part(state, train_models[i])) {
			check_training(train_models[i], ob, ls, what);
			models++;
		}
	assert_true(models > 0);   /* registered only for parts holding one of them */
}

static void test_train_vanilla(void **state)
{
	check_training_part(state, &(rt_objective){ .kind = RT_OBJ_VANILLA }, &(rg_loss_spec){ 0 }, "vanilla");
}

static void test_train_distance(void **state)
{
	check_training_part(state, &(rt_objective){ .kind = RT_OBJ_DISTANCE, .lambda = 0.5 },
	                     &(rg_loss_spec){ .kind = 2, .lambda = 0.5 }, "distance");
}

static void test_train_roll100(void **state)
{
	check_training_part(state, &(rt_objective){ .kind = RT_OBJ_ROLL, .lambda = 2, .C = 0.25, .gamma = 100 },
	                     &(rg_loss_spec){ .kind = 1, .lambda = 2, .C = 0.25, .gamma = 100 }, "roll gamma 100");
}

static void test_train_roll50(void **state)
{
	check_training_part(state, &(rt_objective){ .kind = RT_OBJ_ROLL, .lambda = 1, .C = 1, .gamma = 50 },
	                     &(rg_loss_spec){ .kind = 1, .lambda = 1, .C = 1, .gamma = 50 }, "roll gamma 50");
}

/* ---- approximate ROLL: K sampled input axes (rt_model.samples) ---- */

/* sq of every hidden neuron and the gradient of dsq . sq for one input;
 * axes NULL: the model's own (exact) kernels. */
static void sq_and_grad(const rt_model *m, const float *P, const float *pre, const float *x, const float *dsq,
                        const int32_t *axes, double *sq_out, double *grad_out)
{
	int64_t H = m->n_hidden, O = m->n_out;
	float *ws = falloc(m->ws_floats), *z = falloc(H), *lg = falloc(O), *sq = falloc(H), *dl = falloc(O);
	float *dz = falloc(H), *grad = falloc(m->grad_floats);
	m->train_forward(P, pre, x, 1, ws, z, lg, sq, axes);
	m->train_backward(P, pre, ws, dl, dz, dsq, grad);
	m->train_finish(P, grad, 0, 1);
	for (int64_t h = 0; h < H; h++)
		sq_out[h] = sq[h];
	for (int64_t i = 0; i < m->n_params; i++)
		grad_out[i] = grad[i];
	free(ws), free(z), free(lg), free(sq), free(dl), free(dz), free(grad);
}

static const char approx_conv_lln[] =
	"model approx {\n"
	"  input x[2, 5, 5] normalize(0.5, 0.25);\n"
	"  a = relu(conv2d(x, 3, kernel = 3, padding = 1));\n"
	"  p = avgpool(a, 2);\n"
	"  b = relu(dense(p, 7));\n"
	"  out = dense(b, 3);\n"
	"  output out;\n"
	"}\n"
	"objective {\n  loss = cross_entropy;\n  regularizer = roll(lambda = 1, C = 1%s);\n}\n";
static const char approx_chain_lln[] =
	"model chain {\n"
	"  input x[50] normalize(0.1, 0.3);\n"
	"  a = relu(dense(x, 9));\n"
	"  b = relu(dense(a, 8));\n"
	"  out = dense(b, 4);\n"
	"  output out;\n"
	"}\n"
	"objective {\n  loss = cross_entropy;\n  regularizer = roll(lambda = 1, C = 1%s);\n}\n";
static const char approx_rnn_lln[] =
	"model seq {\n"
	"  input x[10, 5] normalize(0.1, 0.5);\n"
	"  h = rnn(x, 6);\n"
	"  out = dense(last(h), 3);\n"
	"  output out;\n"
	"}\n"
	"objective {\n  loss = cross_entropy;\n  regularizer = roll(lambda = 1, C = 1%s);\n}\n";

static const char *const approx_fmts[] = { approx_conv_lln, approx_chain_lln, approx_rnn_lln };
#define NAPPROX (sizeof approx_fmts / sizeof *approx_fmts)

/* Format f compiled with exact ROLL (K = 0) or K sampled axes; --dump=ir
 * states the cost of sampling, and only when it is on. */
static const rt_model *approx_compile(arena *a, size_t f, int K, cg_unit **u)
{
	char text[1024], extra[32] = "";
	if (K)
		snprintf(extra, sizeof extra, ", samples = %d", K);
	snprintf(text, sizeof text, approx_fmts[f], extra);
	const rt_model *m = jit_text(a, text, test_opt(2), u);
	char *dump = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&dump, &len);
	ir_dump(fp, jit_ir(a, source_from_string(a, "approx.lln", text)));
	fclose(fp);
	char want[160];
	snprintf(want, sizeof want, "approximate ROLL, %d of the %d input axes sampled per example: %d + 1 tangent "
	         "passes instead of %d + 1", K, m->n_in, K, m->n_in);
	if (K ? !strstr(dump, want) : strstr(dump, "approximate ROLL") != NULL)
		fail_msg("--dump=ir of %s:\n%s", K ? "approximate ROLL" : "exact ROLL", dump);
	free(dump);
	assert_int_equal(m->samples, K);
	return m;
}

/* The exact model of each format, compiled once for both tests below (the
 * group's teardown frees them). */
static arena *approx_arena[NAPPROX];
static cg_unit *approx_unit[NAPPROX];
static const rt_model *approx_exact[NAPPROX];

typedef struct approx_case {
	arena *a;
	cg_unit *u;
	const rt_model *m[2];   /* exact, sampled */
	float *P, *pre[2], *x, *dsq;
	int K;
} approx_case;

static void approx_open(approx_case *c, size_t f, int K)
{
	memset(c, 0, sizeof *c);
	if (!approx_exact[f]) {
		approx_arena[f] = arena_new();
		approx_exact[f] = approx_compile(approx_arena[f], f, 0, &approx_unit[f]);
	}
	c->a = arena_new();
	c->K = K;
	c->m[0] = approx_exact[f];
	c->m[1] = approx_compile(c->a, f, K, &c->u);
	const rt_model *m = c->m[0];
	c->P = falloc(m->n_params);
	rt_init_params(m->tensors, m->n_tensors, 4, RT_INIT_HE, c->P);
	for (int v = 0; v < 2; v++) {
		c->pre[v] = falloc(c->m[v]->pre_floats);
		c->m[v]->prepare(c->P, c->pre[v]);
	}
	c->x = falloc(m->n_in);
	c->dsq = falloc(m->n_hidden);
	trng r = { 17 };
	for (int64_t i = 0; i < m->n_in; i++)
		c->x[i] = (float)trng_u(&r);
	for (int64_t h = 0; h < m->n_hidden; h++)
		c->dsq[h] = (float)(trng_u(&r) + 0.5);
}

static void approx_close(approx_case *c)
{
	for (int v = 0; v < 2; v++)
		free(c->pre[v]);
	cg_unit_free(c->u);
	free(c->P), free(c->x), free(c->dsq);
	arena_free(c->a);
}

static int approx_teardown(void **state)
{
	(void)state;
	for (size_t f = 0; f < NAPPROX; f++)
		if (approx_exact[f]) {
			cg_unit_free(approx_unit[f]);
			arena_free(approx_arena[f]);
			approx_exact[f] = NULL;
		}
	return 0;
}

static void test_sample_axes(void **state)
{
	(void)state;
	enum { D = 12, K = 4, M = 6000 };
	int count[D] = { 0 };
	for (int s = 0; s < M; s++) {
		int32_t ax[K];
		rt_sample_axes(5, (uint64_t)s, D, K, ax);
		for (int k = 0; k < K; k++) {
			assert_true(ax[k] >= 0 && ax[k] < D);
			if (k)
				assert_true(ax[k] > ax[k - 1]);
			count[ax[k]]++;
		}
	}
	/* each axis is drawn with probability K / D: binomial counts */
	double p = (double)K / D, mean = M * p, sd = sqrt(M * p * (1 - p));
	for (int d = 0; d < D; d++)
		if (fabs(count[d] - mean) > 5 * sd)
			fail_msg("axis %d drawn %d times, expected %.0f +- %.0f", d, count[d], mean, sd);
}

/* With K = D every axis is drawn: the estimate is exact ROLL's value. */
static void test_approx_all_axes(void **state)
{
	for (size_t f = 0; f < NAPPROX; f++) {
		if (!in_part(state, f))
			continue;
		approx_case c;
		approx_open(&c, f, 50);
		const rt_model *m = c.m[0];
		int64_t H = m->n_hidden, NP = m->n_params, D = m->n_in;
		double *sq0 = dalloc(H), *sq1 = dalloc(H), *g0 = dalloc(NP), *g1 = dalloc(NP);
		int32_t *axes = malloc(sizeof *axes * (size_t)D);
		rt_sample_axes(1, 0, (int32_t)D, (int32_t)D, axes);
		sq_and_grad(c.m[0], c.P, c.pre[0], c.x, c.dsq, NULL, sq0, g0);
		sq_and_grad(c.m[1], c.P, c.pre[1], c.x, c.dsq, axes, sq1, g1);
		for (int64_t h = 0; h < H; h++)
			if (fabs(sq1[h] - sq0[h]) > 1e-5 * (1 + fabs(sq0[h])))
				fail_msg("%s: neuron %lld: sq %.9g with all axes sampled, %.9g exact", m->name, (long long)h, sq1[h], sq0[h]);
		double gn = 0;
		for (int64_t i = 0; i < NP; i++)
			gn = fmax(gn, fabs(g0[i]));
		for (int64_t i = 0; i < NP; i++)
			if (fabs(g1[i] - g0[i]) > 1e-5 * (1 + gn))
				fail_msg("%s: parameter %lld: gradient %.9g with all axes sampled, %.9g exact", m->name, (long long)i,
				         g1[i], g0[i]);
		free(sq0), free(sq1), free(g0), free(g1), free(axes);
		approx_close(&c);
	}
}

/* Approximate ROLL through the batched kernels (the tangents of each
 * example's K axes as round16(K) columns, several examples a call): the
 * mean loss and gradient over 70 examples against the per-example kernels
 * with the same axes (rt_seq_axes of the same seed and example), and on 1,
 * 2 and 3 threads (whose sums of the tangents' terms differ by rounding). */
static void check_batched_tangents(const rt_model *m, const char *what, uint64_t seed)
{
	assert_int_equal(m->batch, 64);
	assert_non_null(m->train_batch_tangents);
	enum { N = 70 };
	const int64_t D = m->n_in, H = m->n_hidden, O = m->n_out, NP = m->n_params;
	float *P = falloc(NP), *pre = falloc(m->pre_floats), *X = falloc(N * D);
	rt_init_params(m->tensors, m->n_tensors, seed, RT_INIT_PYTORCH, P);
	m->prepare(P, pre);
	int32_t y[N];
	trng r = { seed };
	for (int64_t i = 0; i < N * D; i++)
		X[i] = (float)(m->mean + m->std * (2 * trng_u(&r) - 1));
	for (int i = 0; i < N; i++)
		y[i] = trng_int(&r, (int)O);
	rt_objective o = { .kind = RT_OBJ_ROLL, .lambda = 1, .C = 1, .gamma = 50, .sample_seed = seed * 31 };
	float *g[3];
	double loss[3];
	for (int th = 0; th < 3; th++) {
		g[th] = falloc(NP);
		assert_int_equal(rt_batch_grad(m, &o, P, pre, X, y, NULL, N, th + 1, g[th], &loss[th], NULL), 0);
	}
	float *ws = falloc(m->ws_floats), *z = falloc(H), *sq = falloc(H), *lg = falloc(O), *dl = falloc(O);
	float *dz = falloc(H), *dsq = falloc(H), *gone = falloc(NP);
	int32_t *axes = calloc((size_t)m->samples, sizeof(int32_t)), *scratch = calloc((size_t)H + 1, sizeof(int32_t));
	double *ref = dalloc(NP), lref = 0, ce;
	for (int i = 0; i < N; i++) {
		rt_seq_axes(m, rt_seq_len(m, NULL, i), o.sample_seed, (uint64_t)i, axes);
		memset(gone, 0, sizeof(float) * (size_t)NP);
		m->train_forward(P, pre, X + i * D, 1, ws, z, lg, sq, axes);
		lref += rt_objective_eval(&o, m, lg, z, sq, y[i], dl, dz, dsq, &ce, scratch);
		m->train_backward(P, pre, ws, dl, dz, dsq, gone);
		for (int64_t p = 0; p < NP; p++)
			ref[p] += gone[p];
	}
	double gmax = 0, worst = 0;
	for (int64_t p = 0; p < NP; p++)
		gmax = fmax(gmax, fabs(ref[p] / N));
	for (int th = 0; th < 3; th++) {
		if (!(fabs(loss[th] - lref / N) <= 1e-5 * fmax(1, fabs(lref / N))))
			fail_msg("%s: %d threads: loss %.9g, per-example kernels %.9g", what, th + 1, loss[th], lref / N);
		for (int64_t p = 0; p < NP; p++) {
			double err = fabs(g[th][p] - ref[p] / N);
			worst = fmax(worst, err / gmax);
			if (!(err <= 1e-5 * fabs(ref[p] / N) + 1e-5 * gmax))
				fail_msg("%s: %d threads: parameter %lld: batched %.9g, per-example kernels %.9g", what, th + 1,
				         (long long)p, g[th][p], ref[p] / N);
		}
	}
	printf("[ batched tangents ] %s: K = %d, %lld parameters, largest |gradient| %.3g, worst error %.3g of it\n", what,
	       m->samples, (long long)NP, gmax, worst);
	for (int th = 0; th < 3; th++)
		free(g[th]);
	free(P), free(pre), free(X), free(ws), free(z), free(sq), free(lg), free(dl), free(dz), free(dsq), free(gone);
	free(axes), free(scratch), free(ref);
}

static void test_approx_batched(void **state)
{
	(void)state;
	static const int Ks[] = { 20, 7 };   /* 2 and 4 examples a call */
	for (size_t f = 0; f < 2; f++) {      /* conv and chain: the rnn has no batched kernels */
		arena *a = arena_new();
		cg_unit *u;
		const rt_model *m = approx_compile(a, f, Ks[f], &u);
		check_batched_tangents(m, m->name, 40 + f);
		cg_unit_free(u);
		arena_free(a);
	}
	/* wider than a register block, a residual add */
	arena *a = arena_new();
	cg_unit *u;
	char text[1024];
	snprintf(text, sizeof text, "%sobjective {\n  loss = cross_entropy;\n  regularizer = roll(lambda = 1, C = 1, "
	         "samples = 16);\n}\n", chan_lln);
	check_batched_tangents(jit_text(a, text, test_opt(2), &u), "chan", 44);
	cg_unit_free(u);
	arena_free(a);
}

/* Over many draws of K < D axes, the mean of sq and of the parameter
 * gradient is exact ROLL's, within five standard errors. */
static void test_approx_unbiased(void **state)
{
	const int Ks[NAPPROX] = { 7, 9, 8 };
	enum { M = 500 };
	for (size_t f = 0; f < NAPPROX; f++) {
		if (!in_part(state, f))
			continue;
		approx_case c;
		approx_open(&c, f, Ks[f]);
		const rt_model *m = c.m[0];
		int64_t H = m->n_hidden, NP = m->n_params;
		double *sq0 = dalloc(H), *g0 = dalloc(NP), *sq = dalloc(H), *g = dalloc(NP);
		double *s1 = dalloc(H + NP), *s2 = dalloc(H + NP);
		sq_and_grad(c.m[0], c.P, c.pre[0], c.x, c.dsq, NULL, sq0, g0);
		int32_t axes[16];
		for (int t = 0; t < M; t++) {
			rt_sample_axes(99, (uint64_t)t, m->n_in, c.K, axes);
			sq_and_grad(c.m[1], c.P, c.pre[1], c.x, c.dsq, axes, sq, g);
			for (int64_t i = 0; i < H + NP; i++) {
				double v = i < H ? sq[i] : g[i - H];
				s1[i] += v;
				s2[i] += v * v;
			}
		}
		int varied = 0;
		for (int64_t i = 0; i < H + NP; i++) {
			double mean = s1[i] / M, var = fmax(s2[i] / M - mean * mean, 0), se = sqrt(var / M);
			double want = i < H ? sq0[i] : g0[i - H];
			varied += se > 0;
			if (fabs(mean - want) > 5 * se + 1e-5 * (1 + fabs(want)))
				fail_msg("%s: %s %lld: mean of the estimates %.9g, exact %.9g (standard error %.3g)", m->name,
				         i < H ? "sq of neuron" : "gradient of parameter", (long long)(i < H ? i : i - H), mean, want, se);
		}
		assert_true(varied > H);   /* the estimates do vary: the test is not vacuous */
		free(sq0), free(g0), free(sq), free(g), free(s1), free(s2);
		approx_close(&c);
	}
}

/* ---- kernels in parts (cg.h) compute what whole kernels do ---- */

/* Every kernel's outputs on a few inputs, in one buffer, for comparison. */
static float *kernel_outputs(const rt_model *m, const float *P, uint64_t seed, size_t *n)
{
	enum { NX = 3 };
	int64_t D = m->n_in, H = m->n_hidden, O = m->n_out;
	size_t per = (size_t)(H + O + H * D + 2 * sizeof(rt_cert) / 4 + 2 + H + (H + O) + m->grad_floats);
	float *out = calloc(NX * per, sizeof *out), *o = out;
	float *pre = falloc(m->pre_floats), *ws = falloc(m->ws_floats), *x = falloc(D), *d = falloc(D);
	float *dl = falloc(O), *dz = falloc(H), *dsq = falloc(H);
	assert_non_null(out);
	m->prepare(P, pre);
	trng r = { seed };
	for (int e = 0; e < NX; e++) {
		for (int64_t i = 0; i < D; i++) {
			x[i] = (float)trng_u(&r);
			d[i] = (float)(trng_u(&r) - 0.5);
		}
		float *z = o, *lg = o + H, *G = lg + O;
		m->forward(P, x, ws, z, lg);
		m->grads(P, z, G, ws);
		rt_cert *c = (rt_cert *)(G + H * D);
		m->certify(P, pre, x, RT_ALL_NORMS, ws, z, lg, &c[0], NULL);
		m->certify(P, pre, x, RT_NORM_BIT(RT_L2), ws, z, lg, &c[1], NULL);
		float *t = (float *)(c + 2);
		m->direction(P, x, d, ws, t, (int32_t *)t + 1, NULL);
		float *sq = t + 2, *gr = sq + H;
		m->train_forward(P, pre, x, 1, ws, z, lg, sq, NULL);
		for (int64_t i = 0; i < O; i++)
			dl[i] = (float)(trng_u(&r) - 0.5);
		for (int64_t i = 0; i < H; i++) {
			dz[i] = (float)(trng_u(&r) - 0.5);
			dsq[i] = (float)trng_u(&r);
		}
		m->train_backward(P, pre, ws, dl, dz, dsq, gr);
		m->train_finish(P, gr, 0, 1);
		o = gr + m->grad_floats;
	}
	*n = (size_t)(o - out);
	free(pre), free(ws), free(x), free(d), free(dl), free(dz), free(dsq);
	return out;
}

static void test_parts_agree(void **state)
{
	(void)state;
	/* a chain of dense layers (the Gram strategy) and the residual CNN */
	char chain[4096];
	int k = snprintf(chain, sizeof chain, "model chain {\n  input x[6] normalize(0.25, 0.5);\n  h0 = relu(dense(x, 5));\n");
	for (int i = 1; i < 9; i++)
		k += snprintf(chain + k, sizeof chain - (size_t)k, "  h%d = relu(dense(h%d, %d));\n", i, i - 1, 3 + i % 4);
	snprintf(chain + k, sizeof chain - (size_t)k, "  out = dense(h8, 4);\n  output out;\n}\n");
	for (int c = 0; c < 2; c++) {
		/* whole, and the default (10 ops: 8 + 2) or 2 ops per part (cnn.lln
		 * is shorter than the default); one op per part is spec r1's */
		float *outs[2];
		size_t n[2];
		int per_part[2] = { 1 << 30, c == 0 ? 0 : 2 };
		const int nv = 2;
		for (int v = 0; v < nv; v++) {
			arena *a = arena_new();
			cg_unit *u;
			source *src = c == 0 ? source_from_string(a, "chain.lln", chain)
			                     : source_load(a, LLN_SOURCE_DIR "/tests/data/cnn.lln");
			cg_options co = { .opt_level = test_opt(3), .ops_per_part = per_part[v] };
			char err[RT_ERRLEN];
			u = cg_generate(jit_ir(a, src), &co, err);
			assert_non_null(u);
			/* the parts are there, or not */
			int parts = 0;
			for (LLVMValueRef f = LLVMGetFirstFunction(u->mod); f; f = LLVMGetNextFunction(f))
				parts += strstr(LLVMGetValueName(f), ".part") != NULL;
			if ((v == 1) != (parts > 0))
				fail_msg("%d parts with %d ops per part", parts, per_part[v]);
			const rt_model *m = cg_jit(u, err);
			assert_non_null(m);
			float *P = falloc(m->n_params);
			rt_init_params(m->tensors, m->n_tensors, 7, RT_INIT_PYTORCH, P);
			outs[v] = kernel_outputs(m, P, 99, &n[v]);
			free(P);
			cg_unit_free(u);
			arena_free(a);
		}
		for (int v = 1; v < nv; v++) {
			assert_int_equal(n[v], n[0]);
			if (memcmp(outs[v], outs[0], n[0] * sizeof(float)) != 0)
				fail_msg("%s: kernels in parts of %d ops differ from whole kernels", c ? "cnn" : "chain", per_part[v]);
		}
		for (int v = 0; v < nv; v++)
			free(outs[v]);
	}
}

/* ---- the reference itself, on cases small enough to do by hand ---- */

static void test_reference(void **state)
{
	(void)state;
	/* conv 1 -> 1 channel, 3x3 input, kernel 2, stride 1, padding 1:
	 * output 4x4; output (0,0) sees only input (0,0) via weight (1,1) */
	rg_graph g;
	rg_input(&g, 1, 3, 3, 0, 1);
	int c = rg_conv(&g, "c", 0, 1, 2, 1, 1, false);
	rg_output(&g, c);
	assert_int_equal(g.node[c].H, 4);
	assert_int_equal(g.node[c].W, 4);
	assert_int_equal(g.n_params, 5);
	double P[5] = { 1, 2, 3, 4, 0.5 };   /* w[0][0][ky][kx] = 1 2 / 3 4, bias 0.5 */
	rg_load(&g, P);
	double x[9] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 }, f[16];
	rg_forward_d(&g, x, NULL, f, NULL, NULL);
	/* hand-computed: out[oy][ox] = 0.5 + sum w[ky][kx] x[oy-1+ky][ox-1+kx] */
	assert_true(f[0] == 0.5 + 4 * 1);
	assert_true(f[1] == 0.5 + 3 * 1 + 4 * 2);
	assert_true(f[5] == 0.5 + 1 * 1 + 2 * 2 + 3 * 4 + 4 * 5);
	assert_true(f[15] == 0.5 + 1 * 9);
	rg_free(&g);
	/* stride 2, padding 0 on 5x5: output 2x2; avgpool kernel 2 stride 1 on
	 * it gives 1x1, the mean of the four */
	rg_input(&g, 1, 5, 5, 0, 1);
	c = rg_conv(&g, "c", 0, 1, 1, 2, 0, false);
	int p = rg_pool(&g, "p", c, 2, 1, false);
	rg_output(&g, p);
	assert_int_equal(g.node[c].H, 3);
	assert_int_equal(g.node[p].H, 2);
	double P2[2] = { 2, 0 }, x2[25], f2[4];
	for (int i = 0; i < 25; i++)
		x2[i] = i;
	rg_load(&g, P2);
	rg_forward_d(&g, x2, NULL, f2, NULL, NULL);
	/* conv picks x[0], x[2], x[4], x[10], ... times 2 */
	assert_true(f2[0] == 2 * (0 + 2 + 10 + 12) / 4.0);
	assert_true(f2[3] == 2 * (12 + 14 + 22 + 24) / 4.0);
	rg_free(&g);
}

/* ---- the parts (parts.h) ---- */

/* Compiling the models dominates the running time, about a minute per
 * part under the sanitizers; a part compiles only its own models (its
 * group teardown frees them). */
/* The approximate-ROLL formats, bit f for approx_fmts[f] */
static models approx_ab = { M_(0) | M_(1) }, approx_c = { M_(2) };   /* conv and chain; the rnn, the costliest */

static const struct CMUnitTest parts_tests[] = {
	cmocka_unit_test(test_reference),
	cmocka_unit_test(test_parts_agree),
	cmocka_unit_test(test_sample_axes),
};
static const struct CMUnitTest approx_tests[] = {
	cmocka_unit_test_prestate(test_approx_all_axes, &approx_ab),
	cmocka_unit_test_prestate(test_approx_unbiased, &approx_ab),
	cmocka_unit_test(test_approx_batched),
};
static const struct CMUnitTest approx_rnn_tests[] = {
	cmocka_unit_test_prestate(test_approx_all_axes, &approx_c),
	cmocka_unit_test_prestate(test_approx_unbiased, &approx_c),
};
/* Every model test on the models of r. */
#define MODEL_TESTS(r)                                   \
	cmocka_unit_test_prestate(test_forward_grads, &r), \
	cmocka_unit_test_prestate(test_certify, &r),       \
	cmocka_unit_test_prestate(test_direction, &r),     \
	cmocka_unit_test_prestate(test_geometry, &r),      \
	cmocka_unit_test_prestate(test_batch, &r),         \
	cmocka_unit_test_prestate(test_train_batched, &r), \
	cmocka_unit_test_prestate(test_soundness, &r)
/* The training checks, on the models of r that train_models lists. */
#define TRAIN_TESTS(r)                                   \
	cmocka_unit_test_prestate(test_train_vanilla, &r), \
	cmocka_unit_test_prestate(test_train_distance, &r), \
	cmocka_unit_test_prestate(test_train_roll100, &r), \
	cmocka_unit_test_prestate(test_train_roll50, &r)
static const struct CMUnitTest models_a_tests[] = {
	MODEL_TESTS(models_a),
	cmocka_unit_test_prestate(test_pred_binding, &models_a),
	TRAIN_TESTS(models_a),
};
static const struct CMUnitTest models_b_tests[] = {
	MODEL_TESTS(models_b),
	cmocka_unit_test_prestate(test_pred_binding, &models_b),
	TRAIN_TESTS(models_b),
};
static const struct CMUnitTest models_c_tests[] = {
	MODEL_TESTS(models_c),
	TRAIN_TESTS(models_c),
	cmocka_unit_test_prestate(test_forward_grads, &border_model),
	cmocka_unit_test_prestate(test_certify, &border_model),
	cmocka_unit_test_prestate(test_direction, &border_model),
};

int main(int argc, char **argv)
{
	static const test_part parts[] = {
		TEST_PART("approx", approx_tests, NULL, approx_teardown),
		TEST_PART("approx-rnn", approx_rnn_tests, NULL, approx_teardown),
		TEST_PART("models-a", models_a_tests, NULL, teardown),
		TEST_PART("models-b", models_b_tests, NULL, teardown),
		TEST_PART("models-c", models_c_tests, NULL, teardown),
		TEST_PART("parts", parts_tests, NULL, NULL),
	};
	return run_parts(argc, argv, parts, sizeof parts / sizeof *parts);
}
