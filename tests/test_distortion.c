/* test_distortion.c: gradient distortion (runtime/distortion.c) against a
 * reference written here.
 *
 * The model is a small ReLU network whose true-class gradient the test
 * computes itself, in double, from the weights: W3[y] diag(m2) W2 diag(m1)
 * W1 / std with the masks of a double forward pass.  Checked: the search's
 * witness lies in the clipped ball and its distortion by the reference is
 * the reported maximum; the search never reports less than the uniform
 * points it starts from; the expected distortion agrees with the test's own
 * Monte Carlo estimate within a statistical bound; a model that is linear on
 * the ball has distortion 0; the thread count changes nothing; bad labels
 * are refused with the record.
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
#include "jit.h"
#include "sample.h"

enum { D = 5, H = 6, O = 3, N = 6 };
#define MEAN 0.5
#define STD 0.25

static const char model_lln[] =
	"model small {\n"
	"  input x[5] normalize(0.5, 0.25);\n"
	"  h1 = relu(dense(x, 6));\n"
	"  h2 = relu(dense(h1, 6));\n"
	"  out = dense(h2, 3);\n"
	"  output out;\n"
	"}\n";

/* The model, compiled once for every test (compiling is most of their
 * time; the kernels do not depend on the weights); the group's teardown
 * frees it. */
static arena *model_arena;
static cg_unit *model_unit;
static const rt_model *model;

static int teardown(void **state)
{
	(void)state;
	if (model) {
		cg_unit_free(model_unit);
		arena_free(model_arena);
		model = NULL;
	}
	return 0;
}

typedef struct fixture {
	const rt_model *m;
	float *P;
	const float *W[3], *b[3];
	float x[N * D];
	int32_t y[N];
	rt_data d;
} fixture;

static const float *tensor(const fixture *f, const char *name)
{
	for (int i = 0; i < f->m->n_tensors; i++)
		if (strcmp(f->m->tensors[i].name, name) == 0)
			return f->P + f->m->tensors[i].offset;
	fail_msg("no tensor %s", name);
	return NULL;
}

static void open_fixture(fixture *f, double bias_shift)
{
	memset(f, 0, sizeof *f);
	if (!model) {
		model_arena = arena_new();
		model = jit_text(model_arena, model_lln, 2, &model_unit);
	}
	f->m = model;
	f->P = calloc((size_t)f->m->n_params, sizeof *f->P);
	assert_non_null(f->P);
	rt_init_params(f->m->tensors, f->m->n_tensors, 5, RT_INIT_HE, f->P);
	static const char *names[3] = { "h1", "h2", "out" };
	for (int l = 0; l < 3; l++) {
		char nm[32];
		snprintf(nm, sizeof nm, "%s.weight", names[l]);
		f->W[l] = tensor(f, nm);
		snprintf(nm, sizeof nm, "%s.bias", names[l]);
		f->b[l] = tensor(f, nm);
		if (l < 2)   /* shifting the hidden biases up makes every unit active */
			for (int j = 0; j < H; j++)
				((float *)f->b[l])[j] += (float)bias_shift;
	}
	trng r = { 77 };
	for (int i = 0; i < N * D; i++)
		f->x[i] = (float)trng_u(&r);
	for (int i = 0; i < N; i++)
		f->y[i] = i % O;
	f->d = (rt_data){ .n = N, .dim = D, .x = f->x, .y = f->y };
}

static void close_fixture(fixture *f)
{
	free(f->P);
}

/* grad f_y at x (raw units), by the masks of a double forward pass. */
static void ref_grad(const fixture *f, const float *x, int y, double g[D])
{
	double a0[D], z1[H], z2[H];
	for (int i = 0; i < D; i++)
		a0[i] = ((double)x[i] - MEAN) / STD;
	for (int j = 0; j < H; j++) {
		z1[j] = f->b[0][j];
		for (int i = 0; i < D; i++)
			z1[j] += (double)f->W[0][j * D + i] * a0[i];
	}
	for (int j = 0; j < H; j++) {
		z2[j] = f->b[1][j];
		for (int i = 0; i < H; i++)
			z2[j] += (double)f->W[1][j * H + i] * fmax(z1[i], 0);
	}
	/* v = W3[y] diag(m2) W2 diag(m1) W1 / std */
	double v2[H], v1[H];
	for (int j = 0; j < H; j++)
		v2[j] = z2[j] > 0 ? f->W[2][y * H + j] : 0;
	for (int i = 0; i < H; i++) {
		v1[i] = 0;
		for (int j = 0; j < H; j++)
			v1[i] += v2[j] * f->W[1][j * H + i];
		if (!(z1[i] > 0))
			v1[i] = 0;
	}
	for (int k = 0; k < D; k++) {
		g[k] = 0;
		for (int i = 0; i < H; i++)
			g[k] += v1[i] * f->W[0][i * D + k];
		g[k] /= STD;
	}
}

static double ref_distortion(const fixture *f, const float *x, const float *xp, int y)
{
	double g0[D], g1[D], s = 0;
	ref_grad(f, x, y, g0);
	ref_grad(f, xp, y, g1);
	for (int k = 0; k < D; k++)
		s += fabs(g1[k] - g0[k]);
	return s;
}

static rt_distortion_opts opts(int samples, int generations)
{
	return (rt_distortion_opts){ .eps = 0.3, .lo = 0, .hi = 1, .samples = samples, .generations = generations,
	                             .population = 8, .mutation = 0.2, .seed = 3, .threads = 1 };
}

static void test_witness(void **state)
{
	(void)state;
	fixture f;
	open_fixture(&f, 0);
	rt_distortion_opts o = opts(30, 12);
	double ex[N], mx[N];
	float wit[N * D];
	char err[RT_ERRLEN];
	assert_int_equal(rt_distortion(f.m, f.P, &f.d, &o, ex, mx, wit, err), 0);
	int nonzero = 0;
	for (int e = 0; e < N; e++) {
		const float *x = f.x + e * D, *w = wit + e * D;
		for (int k = 0; k < D; k++) {
			double lo = fmax(0, x[k] - o.eps), hi = fmin(1, x[k] + o.eps);
			if (!(w[k] >= lo && w[k] <= hi))
				fail_msg("example %d: the witness's coordinate %d, %.9g, is outside [%.9g, %.9g]", e, k, w[k], lo, hi);
		}
		double want = ref_distortion(&f, x, w, f.y[e]);
		if (fabs(mx[e] - want) > 1e-5 * (1 + want))
			fail_msg("example %d: maximum %.9g, the reference at its witness %.9g", e, mx[e], want);
		assert_true(ex[e] <= mx[e]);
		nonzero += mx[e] > 0;
	}
	assert_true(nonzero > N / 2);   /* the ball does cross boundaries: the test is not vacuous */
	close_fixture(&f);
}

static void test_search_beats_samples(void **state)
{
	(void)state;
	fixture f;
	open_fixture(&f, 0);
	double ex0[N], mx0[N], ex1[N], mx1[N];
	char err[RT_ERRLEN];
	rt_distortion_opts o0 = opts(20, 0), o1 = opts(20, 15);
	assert_int_equal(rt_distortion(f.m, f.P, &f.d, &o0, ex0, mx0, NULL, err), 0);
	assert_int_equal(rt_distortion(f.m, f.P, &f.d, &o1, ex1, mx1, NULL, err), 0);
	int better = 0;
	for (int e = 0; e < N; e++) {
		assert_true(ex0[e] == ex1[e]);   /* the same uniform points */
		assert_true(mx1[e] >= mx0[e]);
		better += mx1[e] > mx0[e];
	}
	assert_true(better > 0);
	close_fixture(&f);
}

/* The expected distortion against the test's own estimate from other
 * points: the two means differ by less than 5 standard errors. */
static void test_expected(void **state)
{
	(void)state;
	fixture f;
	open_fixture(&f, 0);
	enum { S = 400 };
	rt_distortion_opts o = opts(S, 0);
	double ex[N], mx[N];
	char err[RT_ERRLEN];
	assert_int_equal(rt_distortion(f.m, f.P, &f.d, &o, ex, mx, NULL, err), 0);
	trng r = { 991 };
	for (int e = 0; e < N; e++) {
		const float *x = f.x + e * D;
		double s = 0, s2 = 0;
		for (int i = 0; i < S; i++) {
			float xp[D];
			for (int k = 0; k < D; k++) {
				double lo = fmax(0, x[k] - o.eps), hi = fmin(1, x[k] + o.eps);
				xp[k] = (float)(lo + (hi - lo) * trng_u(&r));
			}
			double v = ref_distortion(&f, x, xp, f.y[e]);
			s += v;
			s2 += v * v;
		}
		double mean = s / S, var = s2 / S - mean * mean;
		double se = sqrt(2 * var / S);
		if (fabs(ex[e] - mean) > 5 * se + 1e-9)
			fail_msg("example %d: expected distortion %.6g, the reference's estimate %.6g (standard error %.3g)", e,
			         ex[e], mean, se);
	}
	close_fixture(&f);
}

static void test_one_region(void **state)
{
	(void)state;
	fixture f;
	open_fixture(&f, 100);
	rt_distortion_opts o = opts(25, 5);
	double ex[N], mx[N];
	char err[RT_ERRLEN];
	assert_int_equal(rt_distortion(f.m, f.P, &f.d, &o, ex, mx, NULL, err), 0);
	for (int e = 0; e < N; e++) {
		assert_true(ex[e] == 0);
		assert_true(mx[e] == 0);
	}
	close_fixture(&f);
}

static void test_threads(void **state)
{
	(void)state;
	fixture f;
	open_fixture(&f, 0);
	double ex[2][N], mx[2][N];
	char err[RT_ERRLEN];
	for (int t = 0; t < 2; t++) {
		rt_distortion_opts o = opts(15, 4);
		o.threads = t + 1;
		assert_int_equal(rt_distortion(f.m, f.P, &f.d, &o, ex[t], mx[t], NULL, err), 0);
	}
	assert_memory_equal(ex[0], ex[1], sizeof ex[0]);
	assert_memory_equal(mx[0], mx[1], sizeof mx[0]);
	close_fixture(&f);
}

/* A convolutional model: the witnesses stay in the ball, the search finds
 * more than the mean, and an input far outside [0, 1] clips to a point. */
static void test_conv_model(void **state)
{
	(void)state;
	arena *a = arena_new();
	cg_unit *u;
	const rt_model *m = jit_source(a, source_load(a, LLN_SOURCE_DIR "/tests/data/cnn.lln"), 2, &u);
	enum { NC = 3 };
	const int64_t Dc = m->n_in;
	float *P = calloc((size_t)m->n_params, sizeof *P), *x = calloc((size_t)(NC * Dc), sizeof *x);
	float *wit = calloc((size_t)(NC * Dc), sizeof *wit);
	assert_true(P && x && wit);
	rt_init_params(m->tensors, m->n_tensors, 9, RT_INIT_HE, P);
	trng r = { 5 };
	for (int64_t i = 0; i < NC * Dc; i++)
		x[i] = (float)trng_u(&r);
	for (int64_t i = 2 * Dc; i < 3 * Dc; i++)
		x[i] = 7;   /* clipped to 1 in every coordinate: one point */
	int32_t y[NC] = { 0, 2, 1 };
	rt_data d = { .n = NC, .dim = Dc, .x = x, .y = y };
	rt_distortion_opts o = opts(10, 6);
	o.eps = 0.1;
	double ex[NC], mx[NC];
	char err[RT_ERRLEN];
	assert_int_equal(rt_distortion(m, P, &d, &o, ex, mx, wit, err), 0);
	for (int e = 0; e < NC; e++) {
		for (int64_t k = 0; k < Dc; k++) {
			double xv = x[e * Dc + k], lo = fmax(0, xv - o.eps), hi = fmin(1, xv + o.eps);
			if (xv > 1)
				lo = hi = 1;
			assert_true(wit[e * Dc + k] >= lo && wit[e * Dc + k] <= hi);
		}
		assert_true(ex[e] <= mx[e]);
	}
	assert_true(mx[0] > ex[0] && mx[1] > ex[1]);
	/* x = 7 and its ball clipped to the point 1: the gradient there against x's */
	assert_true(ex[2] == mx[2]);
	free(P), free(x), free(wit);
	cg_unit_free(u);
	arena_free(a);
}

/* llnc eval --distortion, end to end: the table and the JSON member. */
static void test_command(void **state)
{
	(void)state;
	char dir[] = "/tmp/lln_distortion_XXXXXX", cmd[2048], buf[8192];
	assert_non_null(mkdtemp(dir));
	snprintf(cmd, sizeof cmd, "%s/model.lln", dir);
	FILE *f = fopen(cmd, "w");
	assert_non_null(f);
	fputs(model_lln, f);
	fclose(f);
	snprintf(cmd, sizeof cmd, "%s/data.csv", dir);
	f = fopen(cmd, "w");
	assert_non_null(f);
	for (int e = 0; e < 4; e++)
		fprintf(f, "%d,0.1,0.%d,0.5,0.7,0.9\n", e % 3, e + 2);
	fclose(f);
	snprintf(cmd, sizeof cmd, "cd %s && %s/llnc init model.lln -o w.safetensors && %s/llnc eval model.lln "
	         "--weights w.safetensors --data data.csv --distortion 0.2 --samples 8 --search 3 --population 4 --json",
	         dir, LLN_BINARY_DIR, LLN_BINARY_DIR);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t n = fread(buf, 1, sizeof buf - 1, p);
	buf[n] = 0;
	assert_int_equal(pclose(p), 0);
	assert_non_null(strstr(buf, "\"distortion\":{\"eps\":0.2"));
	assert_non_null(strstr(buf, "\"samples\":8,\"generations\":3,\"population\":4"));
	assert_non_null(strstr(buf, "\"expected\":["));
	snprintf(cmd, sizeof cmd, "cd %s && %s/llnc eval model.lln --weights w.safetensors --data data.csv "
	         "--distortion 0.2 --clip 1,0 2>&1; echo status $?", dir, LLN_BINARY_DIR);
	p = popen(cmd, "r");
	n = fread(buf, 1, sizeof buf - 1, p);
	buf[n] = 0;
	pclose(p);
	assert_non_null(strstr(buf, "--clip takes LO,HI"));
	assert_non_null(strstr(buf, "status 2"));
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* The Jacobian count does not depend on the norms evaluated: eps_2 alone
 * may take another strategy (the Gram recurrence forms no Jacobian). */
static void test_jacobian_count(void **state)
{
	(void)state;
	fixture f;
	open_fixture(&f, 0);
	rt_objective o = { .kind = RT_OBJ_VANILLA };
	rt_eval e2, all;
	assert_int_equal(rt_evaluate(f.m, &o, f.P, &f.d, 1, RT_NORM_BIT(RT_L2), &e2), 0);
	assert_int_equal(rt_evaluate(f.m, &o, f.P, &f.d, 1, RT_ALL_NORMS, &all), 0);
	assert_int_equal(e2.jacobians, all.jacobians);
	assert_true(e2.jacobians > 1 && e2.jacobians <= e2.patterns);
	close_fixture(&f);
}

static void test_bad_labels(void **state)
{
	(void)state;
	fixture f;
	open_fixture(&f, 0);
	rt_distortion_opts o = opts(5, 0);
	double ex[N], mx[N];
	char err[RT_ERRLEN];
	f.y[3] = O;
	assert_int_equal(rt_distortion(f.m, f.P, &f.d, &o, ex, mx, NULL, err), -1);
	assert_non_null(strstr(err, "record 4"));
	f.d.y = NULL;
	assert_int_equal(rt_distortion(f.m, f.P, &f.d, &o, ex, mx, NULL, err), -1);
	assert_non_null(strstr(err, "labels"));
	close_fixture(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_witness),
		cmocka_unit_test(test_search_beats_samples),
		cmocka_unit_test(test_expected),
		cmocka_unit_test(test_one_region),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_conv_model),
		cmocka_unit_test(test_command),
		cmocka_unit_test(test_jacobian_count),
		cmocka_unit_test(test_bad_labels),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
