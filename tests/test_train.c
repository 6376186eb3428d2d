/* test_train.c: the training runtime (objective.c, optim.c, train.c, eval.c).
 *
 * - Optimizers: two or three steps of SGD (plain, momentum, Nesterov, weight
 *   decay), Adam and AMSGrad from known weights and gradients against values
 *   worked out by hand from PyTorch's update rules; the step from the
 *   gradient sums (the training loop's) against the mean, then the step.
 * - Objectives: cross-entropy and sigmoid cross-entropy against hand values;
 *   every objective's partial derivatives against central differences in
 *   double; the top-gamma selection and the binding neuron, ties included.
 * - The learning-rate schedule.
 * - The loop and the command lines, on two models: a hand-written one-layer
 *   network implementing the kernel ABI in plain C (so the runtime is tested
 *   on its own) and a model compiled by llnc's JIT.  Same seed and threads
 *   give identical files; 2 epochs equal 1 epoch plus a resumed one, bit for
 *   bit; bad input gives the documented message and exit status and leaves
 *   no output file.
 */
#define _XOPEN_SOURCE 700   /* nftw */
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "llnc.h"
#include "jit.h"

static char tmpdir[256];

static const char *P_(const char *name)
{
	/* a ring large enough that no test outlives its path */
	static char ring[256][512];
	static int k;
	char *b = ring[k++ % 256];
	snprintf(b, 512, "%s/%s", tmpdir, name);
	return b;
}

static void put_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)n + 1);
	assert_non_null(b);
	assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
	b[n] = 0;
	fclose(f);
	if (len)
		*len = (size_t)n;
	return b;
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static void assert_same_file(const char *a, const char *b)
{
	size_t la, lb;
	char *x = slurp(a, &la), *y = slurp(b, &lb);
	assert_non_null(x);
	assert_non_null(y);
	if (la != lb || memcmp(x, y, la) != 0)
		fail_msg("%s and %s differ (%zu and %zu bytes)", a, b, la, lb);
	free(x);
	free(y);
}

/* ------------------------------------------------------------------------
 * Optimizers
 * ---------------------------------------------------------------------- */
static void check_vec(const float *got, const double *want, int n, double tol)
{
	for (int i = 0; i < n; i++)
		if (fabs(got[i] - want[i]) > tol * (1 + fabs(want[i])))
			fail_msg("element %d: got %.9g, expected %.9g", i, got[i], want[i]);
}

static const float P0[3] = { 1.0f, -2.0f, 0.5f };
static const float G1[3] = { 0.1f, -0.2f, 0.3f };
static const float G2[3] = { 0.2f, 0.1f, -0.1f };

static void sgd_two_steps(rt_optimizer o, const double *s1, const double *s2)
{
	rt_opt_state s;
	float P[3];
	memcpy(P, P0, sizeof P);
	assert_int_equal(rt_opt_init(&s, &o, 3), 0);
	rt_opt_step(&o, &s, o.lr, P, G1);
	check_vec(P, s1, 3, 1e-6);
	rt_opt_step(&o, &s, o.lr, P, G2);
	check_vec(P, s2, 3, 1e-6);
	assert_int_equal(s.step, 2);
	rt_opt_free(&s);
}

static void test_sgd(void **state)
{
	(void)state;
	/* plain: p -= 0.1 g */
	sgd_two_steps((rt_optimizer){ .kind = RT_SGD, .lr = 0.1 },
	              (double[]){ 0.99, -1.98, 0.47 }, (double[]){ 0.97, -1.99, 0.48 });
	/* momentum 0.5: buf1 = g1 = (.1,-.2,.3); buf2 = .5 buf1 + g2 = (.25, 0, .05) */
	sgd_two_steps((rt_optimizer){ .kind = RT_SGD, .lr = 0.1, .momentum = 0.5 },
	              (double[]){ 0.99, -1.98, 0.47 }, (double[]){ 0.965, -1.98, 0.465 });
	/* Nesterov: step uses g + .5 buf: (.15,-.3,.45), then (.325, .1, -.075) */
	sgd_two_steps((rt_optimizer){ .kind = RT_SGD, .lr = 0.1, .momentum = 0.5, .nesterov = true },
	              (double[]){ 0.985, -1.97, 0.455 }, (double[]){ 0.9525, -1.98, 0.4625 });
	/* weight decay 0.1: g1 + .1 p0 = (.2, -.4, .35) -> (.98, -1.96, .465);
	 * g2 + .1 p1 = (.298, -.096, -.0535) -> (.9502, -1.9504, .47035) */
	sgd_two_steps((rt_optimizer){ .kind = RT_SGD, .lr = 0.1, .weight_decay = 0.1 },
	              (double[]){ 0.98, -1.96, 0.465 }, (double[]){ 0.9502, -1.9504, 0.47035 });
	/* the step's lr argument is the one used (the schedule's value) */
	rt_optimizer o = { .kind = RT_SGD, .lr = 0.1 };
	rt_opt_state s;
	assert_int_equal(rt_opt_init(&s, &o, 3), 0);
	assert_int_equal(s.nstate, 0);
	float P[3];
	memcpy(P, P0, sizeof P);
	rt_opt_step(&o, &s, 0.01, P, G1);
	check_vec(P, (double[]){ 0.999, -1.998, 0.497 }, 3, 1e-6);
	rt_opt_free(&s);
}

static void adam_steps(rt_opt_kind kind, float p0, const float *g, const double *want, int n)
{
	rt_optimizer o = { .kind = kind, .lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8 };
	rt_opt_state s;
	assert_int_equal(rt_opt_init(&s, &o, 1), 0);
	assert_int_equal(s.nstate, kind == RT_AMSGRAD ? 3 : 2);
	float P = p0;
	for (int t = 0; t < n; t++) {
		rt_opt_step(&o, &s, o.lr, &P, &g[t]);
		check_vec(&P, &want[t], 1, 1e-6);
	}
	assert_int_equal(s.step, n);
	rt_opt_free(&s);
}

static void test_adam(void **state)
{
	(void)state;
	/* g = .5, -.25, .1 from p = 1:
	 * t=1: m = .05, v = .00025, p -= .1/.1 * .05 / (sqrt(.00025)/sqrt(.001) + 1e-8) = .0999999980
	 * t=2: m = .02, v = .00031225, p -= .1/.19 * .02 / (sqrt(.00031225/.001999) + 1e-8)
	 * t=3: m = .028, v = .0003219377..., bc1 = .271, bc2 = .002997001 */
	adam_steps(RT_ADAM, 1.0f, (float[]){ 0.5f, -0.25f, 0.1f },
	           (double[]){ 0.900000002000, 0.873366298708, 0.841841943026 }, 3);
	adam_steps(RT_ADAM, -0.5f, (float[]){ -2.0f, 1.0f, 3.0f },
	           (double[]){ -0.400000000500, -0.373366296702, -0.412305275501 }, 3);
	/* AMSGrad with g = .5, 0, 0: v shrinks (.00025, .00024975, ...), vmax
	 * stays .00025, so the steps are smaller than Adam's */
	adam_steps(RT_AMSGRAD, 1.0f, (float[]){ 0.5f, 0.0f, 0.0f },
	           (double[]){ 0.900000002000, 0.833027689773, 0.781283790013 }, 3);
	adam_steps(RT_ADAM, 1.0f, (float[]){ 0.5f, 0.0f, 0.0f },
	           (double[]){ 0.900000002000, 0.832994178482, 0.781198483029 }, 3);
	/* weight decay enters the gradient: g = 0 + .5 * 1 = .5 gives the first
	 * step above */
	rt_optimizer o = { .kind = RT_ADAM, .lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
	                   .weight_decay = 0.5 };
	rt_opt_state s;
	assert_int_equal(rt_opt_init(&s, &o, 1), 0);
	float P = 1, g = 0;
	rt_opt_step(&o, &s, o.lr, &P, &g);
	check_vec(&P, (double[]){ 0.900000002 }, 1, 1e-7);
	assert_string_equal(rt_opt_state_name(&s, 0), "m");
	assert_string_equal(rt_opt_state_name(&s, 1), "v");
	assert_null(rt_opt_state_name(&s, 2));
	rt_opt_free(&s);
}

static void test_lr_schedule(void **state)
{
	(void)state;
	rt_optimizer o = { .lr = 0.1, .lr_step = 3, .lr_gamma = 0.5 };
	const double want[] = { 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025 };
	for (int e = 0; e < 8; e++)
		assert_true(fabs(rt_lr_at(&o, e) - want[e]) < 1e-15);
	o.lr_step = 0;
	assert_true(rt_lr_at(&o, 100) == 0.1);
	o.lr_step = 1;
	o.lr_gamma = 0.1;
	assert_true(fabs(rt_lr_at(&o, 2) - 0.001) < 1e-15);
}

/* rt_opt_step_mean, the training loop's step from the gradient sums: the
 * same bits as dividing first (rt_batch_grad_ctx's sums[i] / nb in float) and
 * stepping on one thread, for every rule, on 3 threads and a length that
 * leaves vector tails; SGD against the rule written out here in float; and
 * false exactly when an element of the gradient is NaN or infinite. */
static void test_step_mean(void **state)
{
	(void)state;
	enum { N = 1003, NB = 7 };
	const rt_optimizer opts[] = {
		{ .kind = RT_SGD, .lr = 0.1 },
		{ .kind = RT_SGD, .lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3 },
		{ .kind = RT_SGD, .lr = 0.05, .momentum = 0.9, .nesterov = true, .weight_decay = 1e-3 },
		{ .kind = RT_ADAM, .lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 1e-4 },
		{ .kind = RT_AMSGRAD, .lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8 },
	};
	static float sums[N], grad[N], P1[N], P2[N], Pref[N], bref[N];
	uint64_t r = 12345;
	for (size_t k = 0; k < sizeof opts / sizeof *opts; k++) {
		const rt_optimizer *o = &opts[k];
		rt_opt_state s1, s2;
		assert_int_equal(rt_opt_init(&s1, o, N), 0);
		assert_int_equal(rt_opt_init(&s2, o, N), 0);
		for (int i = 0; i < N; i++) {
			r = r * 6364136223846793005ull + 1442695040888963407ull;
			P1[i] = P2[i] = Pref[i] = (float)((double)(r >> 40) / (1 << 24) - 0.5);
			bref[i] = 0;
		}
		for (int step = 0; step < 3; step++) {
			for (int i = 0; i < N; i++) {
				r = r * 6364136223846793005ull + 1442695040888963407ull;
				sums[i] = (float)((double)(r >> 40) / (1 << 20) - 8);
				grad[i] = sums[i] / (float)NB;
			}
			rt_opt_step_threads(o, &s1, o->lr, P1, grad, 1);
			assert_true(rt_opt_step_mean(o, &s2, o->lr, P2, sums, NB, 3));
			if (memcmp(P1, P2, sizeof P1) != 0 ||
			    (s1.nstate && memcmp(s1.mem, s2.mem, sizeof(float) * (size_t)(s1.nstate * N)) != 0))
				fail_msg("optimizer %zu, step %d: rt_opt_step_mean differs from the mean, then the step", k, step);
			if (o->kind != RT_SGD)
				continue;
			const float lr = (float)o->lr, mu = (float)o->momentum, wd = (float)o->weight_decay;
			for (int i = 0; i < N; i++) {
				float g = grad[i] + wd * Pref[i];
				if (mu == 0) {
					Pref[i] = Pref[i] - lr * g;
					continue;
				}
				bref[i] = step == 0 ? g : mu * bref[i] + g;
				float d = o->nesterov ? g + mu * bref[i] : bref[i];
				Pref[i] = Pref[i] - lr * d;
			}
			if (memcmp(Pref, P2, sizeof Pref) != 0)
				fail_msg("optimizer %zu, step %d: SGD differs from PyTorch's rule in float", k, step);
		}
		/* a gradient that is not finite anywhere, the tail included */
		const int at[] = { 0, N / 2, N - 1 };
		const float badv[] = { NAN, INFINITY, -INFINITY };
		for (int a = 0; a < 3; a++) {
			float keep = sums[at[a]];
			sums[at[a]] = badv[a];
			assert_false(rt_opt_step_mean(o, &s2, o->lr, P2, sums, NB, 2));
			sums[at[a]] = keep;
		}
		rt_opt_free(&s1);
		rt_opt_free(&s2);
	}
}

/* ------------------------------------------------------------------------
 * Objectives
 * ---------------------------------------------------------------------- */
static rt_model shape_model(int O, int H)
{
	return (rt_model){ .n_out = O, .n_hidden = H };
}

static void test_cross_entropy_values(void **state)
{
	(void)state;
	rt_model m = shape_model(3, 0);
	rt_objective o = { .kind = RT_OBJ_VANILLA };
	float f[3] = { 1, 2, 3 }, d[3];
	double ce;
	double loss = rt_objective_eval(&o, &m, f, NULL, NULL, 0, d, NULL, NULL, &ce, NULL);
	assert_true(fabs(loss - 2.407605964444380) < 1e-12);
	assert_true(ce == loss);
	check_vec(d, (double[]){ 0.090030573170380 - 1, 0.244728471054798, 0.665240955774822 }, 3, 1e-7);
	/* large logits do not overflow */
	float big[3] = { 1000, 0, -1000 };
	loss = rt_objective_eval(&o, &m, big, NULL, NULL, 1, d, NULL, NULL, NULL, NULL);
	assert_true(fabs(loss - 1000) < 1e-9);

	rt_model m1 = shape_model(1, 0);
	o.sigmoid = true;
	float x = 0.5f, dx;
	loss = rt_objective_eval(&o, &m1, &x, NULL, NULL, 1, &dx, NULL, NULL, &ce, NULL);
	assert_true(fabs(loss - 0.474076984180107) < 1e-12);
	assert_true(fabs(dx - -0.377540668798145) < 1e-7);
	x = -30;  /* softplus(-30) + 30, stably */
	loss = rt_objective_eval(&o, &m1, &x, NULL, NULL, 1, &dx, NULL, NULL, NULL, NULL);
	assert_true(fabs(loss - 30) < 1e-9 && loss > 30);
	x = 40;
	loss = rt_objective_eval(&o, &m1, &x, NULL, NULL, 0, &dx, NULL, NULL, NULL, NULL);
	assert_true(fabs(loss - 40) < 1e-9);
	assert_true(fabs(dx - 1) < 1e-7);
	x = -800;
	loss = rt_objective_eval(&o, &m1, &x, NULL, NULL, 0, &dx, NULL, NULL, NULL, NULL);
	assert_true(loss >= 0 && loss < 1e-300 && isfinite(loss));
}

static void test_roll_and_distance_values(void **state)
{
	(void)state;
	rt_model m = shape_model(2, 3);
	float f[2] = { 0, 0 }, df[2], dz[3], dsq[3];
	float z[3] = { 0.5f, -2.0f, 0.25f }, sq[3] = { 1, 2, 3 };
	int32_t scratch[3];
	double ce;
	/* brackets: 1 + .5*.5, 2 + 0, 3 + .5*.75 = 1.25, 2, 3.375 */
	rt_objective o = { .kind = RT_OBJ_ROLL, .lambda = 2, .C = 0.5, .gamma = 100 };
	double loss = rt_objective_eval(&o, &m, f, z, sq, 0, df, dz, dsq, &ce, scratch);
	assert_true(fabs(ce - log(2)) < 1e-12);
	assert_true(fabs(loss - ce - 2.0 / 3 * 6.625) < 1e-9);
	check_vec(dsq, (double[]){ 2.0 / 3, 2.0 / 3, 2.0 / 3 }, 3, 1e-7);
	check_vec(dz, (double[]){ -2.0 / 3 * 0.5, 0, -2.0 / 3 * 0.5 }, 3, 1e-7);
	/* gamma 34: k = ceil(1.02) = 2, the brackets 3.375 and 2 */
	o.gamma = 34;
	loss = rt_objective_eval(&o, &m, f, z, sq, 0, df, dz, dsq, &ce, scratch);
	assert_true(fabs(loss - ce - 5.375) < 1e-9);
	check_vec(dsq, (double[]){ 0, 1, 1 }, 3, 0);
	check_vec(dz, (double[]){ 0, 0, -0.5 }, 3, 0);
	/* without scratch it allocates; same result */
	double again = rt_objective_eval(&o, &m, f, z, sq, 0, df, dz, dsq, NULL, NULL);
	assert_true(again == loss);
	/* ties go to the lower index */
	float zt[3] = { 5, 5, 5 }, st[3] = { 1, 1, 1 };
	loss = rt_objective_eval(&o, &m, f, zt, st, 0, df, dz, dsq, &ce, scratch);
	check_vec(dsq, (double[]){ 1, 1, 0 }, 3, 0);
	/* gamma tiny: the maximum only */
	o.gamma = 1e-9;
	loss = rt_objective_eval(&o, &m, f, z, sq, 0, df, dz, dsq, &ce, scratch);
	assert_true(fabs(loss - ce - 2 * 3.375) < 1e-9);
	check_vec(dsq, (double[]){ 0, 0, 2 }, 3, 0);

	/* distance: eps = .5/1, 2/2, none (sq 0): binding neuron 0 */
	rt_objective d = { .kind = RT_OBJ_DISTANCE, .lambda = 2 };
	float sq2[3] = { 1, 4, 0 };
	loss = rt_objective_eval(&d, &m, f, z, sq2, 1, df, dz, dsq, &ce, NULL);
	assert_true(fabs(loss - ce + 1.0) < 1e-12);
	check_vec(dz, (double[]){ -2, 0, 0 }, 3, 1e-7);
	check_vec(dsq, (double[]){ 0.5, 0, 0 }, 3, 1e-7);
	/* equal margins: the lower index binds */
	float z3[3] = { -1, 2, 1 }, sq3[3] = { 1, 4, 1 };
	loss = rt_objective_eval(&d, &m, f, z3, sq3, 1, df, dz, dsq, &ce, NULL);
	check_vec(dz, (double[]){ 2, 0, 0 }, 3, 1e-7);
	/* no neuron with a gradient: no regularizer */
	float sq0[3] = { 0, 0, 0 };
	loss = rt_objective_eval(&d, &m, f, z, sq0, 1, df, dz, dsq, &ce, NULL);
	assert_true(loss == ce);
	check_vec(dz, (double[]){ 0, 0, 0 }, 3, 0);
	assert_true(rt_objective_needs_sq(&d) && rt_objective_needs_sq(&o));
	assert_false(rt_objective_needs_sq(&(rt_objective){ .kind = RT_OBJ_VANILLA }));
}

/* Central differences of the loss in each of logits, z and sq. */
static double uni(uint64_t *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return (double)(*s >> 11) * 0x1.0p-53;
}

static void fd_check(const rt_objective *o, int O, int H, uint64_t seed)
{
	rt_model m = shape_model(O, H);
	float f[8], z[32], sq[32], df[8], dz[32], dsq[32];
	int32_t scratch[32];
	uint64_t s = seed;
	for (int i = 0; i < O; i++)
		f[i] = (float)(4 * uni(&s) - 2);
	int32_t y = O == 1 ? (int32_t)(uni(&s) < 0.5) : (int32_t)(uni(&s) * O);
	/* away from kinks (|z| = 1, z = 0) and from ties between brackets */
	for (int h = 0; h < H; h++) {
		double a;
		do
			a = 6 * uni(&s) - 3;
		while (fabs(fabs(a) - 1) < 0.05 || fabs(a) < 0.05);
		z[h] = (float)a;
		sq[h] = (float)(0.1 + 3 * uni(&s));
	}
	/* and away from ties at the top-gamma boundary and for the binding neuron */
	double key[32];
	for (int i = 0; i < H; i++)
		key[i] = o->kind == RT_OBJ_DISTANCE ? fabs(z[i]) / sqrt(sq[i])
		                                    : -(sq[i] + o->C * fmax(0, 1 - fabs(z[i])));
	for (int i = 0; i < H; i++)
		for (int j = i + 1; j < H; j++)
			if (key[j] < key[i]) {
				double t = key[i];
				key[i] = key[j];
				key[j] = t;
			}
	int k = o->kind == RT_OBJ_DISTANCE ? 1 : o->kind == RT_OBJ_ROLL ? (int)ceil(o->gamma / 100 * H) : H;
	if (k >= 1 && k < H && key[k] - key[k - 1] < 0.02) {
		fd_check(o, O, H, seed * 31 + 1);
		return;
	}
	rt_objective_eval(o, &m, f, z, sq, y, df, dz, dsq, NULL, scratch);
	const double h = 1e-3;
	float *vecs[3] = { f, z, sq }, *grads[3] = { df, dz, dsq };
	int lens[3] = { O, H, H };
	for (int v = 0; v < 3; v++)
		for (int i = 0; i < lens[v]; i++) {
			float keep = vecs[v][i];
			float up = (float)(keep + h), down = (float)(keep - h);
			vecs[v][i] = up;
			double lu = rt_objective_eval(o, &m, f, z, sq, y, NULL, NULL, NULL, NULL, scratch);
			vecs[v][i] = down;
			double ld = rt_objective_eval(o, &m, f, z, sq, y, NULL, NULL, NULL, NULL, scratch);
			vecs[v][i] = keep;
			double fd = (lu - ld) / ((double)up - (double)down);
			if (fabs(fd - grads[v][i]) > 1e-5 * (1 + fabs(fd)))
				fail_msg("kind %d gamma %g: d/d%s[%d]: analytic %.9g, differences %.9g", o->kind,
				         o->gamma, v == 0 ? "logits" : v == 1 ? "z" : "sq", i, grads[v][i], fd);
		}
}

static void test_objective_finite_differences(void **state)
{
	(void)state;
	for (uint64_t seed = 1; seed <= 20; seed++) {
		for (int sig = 0; sig < 2; sig++) {
			int O = sig ? 1 : 5;
			rt_objective o = { .kind = RT_OBJ_VANILLA, .sigmoid = sig };
			fd_check(&o, O, 17, seed);
			o = (rt_objective){ .kind = RT_OBJ_ROLL, .sigmoid = sig, .lambda = 1.5, .C = 0.7, .gamma = 100 };
			fd_check(&o, O, 17, seed);
			o.gamma = 25;
			fd_check(&o, O, 17, seed);
			o = (rt_objective){ .kind = RT_OBJ_DISTANCE, .sigmoid = sig, .lambda = 0.8 };
			fd_check(&o, O, 17, seed);
		}
	}
}

/* The top-gamma set equals the one a full sort gives. */
static void test_roll_selection_matches_sort(void **state)
{
	(void)state;
	enum { H = 29 };
	rt_model m = shape_model(2, H);
	float f[2] = { 0, 0 }, df[2], z[H], sq[H], dz[H], dsq[H];
	int32_t scratch[H];
	uint64_t s = 99;
	for (int rep = 0; rep < 200; rep++) {
		for (int h = 0; h < H; h++) {
			/* few distinct values, so ties are common */
			z[h] = (float)((int)(uni(&s) * 4) - 2) * 0.5f;
			sq[h] = (float)(int)(uni(&s) * 3);
		}
		double gamma = 1 + uni(&s) * 98;
		rt_objective o = { .kind = RT_OBJ_ROLL, .lambda = 1, .C = 1, .gamma = gamma };
		rt_objective_eval(&o, &m, f, z, sq, 0, df, dz, dsq, NULL, scratch);
		int k = (int)ceil(gamma / 100 * H);
		/* reference: selection sort by (bracket desc, index asc) */
		int order[H];
		double v[H];
		for (int h = 0; h < H; h++) {
			order[h] = h;
			v[h] = sq[h] + fmax(0, 1 - fabs(z[h]));
		}
		for (int i = 0; i < H; i++)
			for (int j = i + 1; j < H; j++)
				if (v[order[j]] > v[order[i]] || (v[order[j]] == v[order[i]] && order[j] < order[i])) {
					int t = order[i];
					order[i] = order[j];
					order[j] = t;
				}
		bool in[H] = { false };
		for (int i = 0; i < k; i++)
			in[order[i]] = true;
		for (int h = 0; h < H; h++)
			if ((dsq[h] != 0) != in[h])
				fail_msg("rep %d gamma %g k %d: neuron %d selected %d, expected %d", rep, gamma, k, h,
				         dsq[h] != 0, in[h]);
	}
}

/* ------------------------------------------------------------------------
 * A hand-written model: x (D) -> normalize -> dense H + relu -> dense O.
 * Implements the training ABI like generated code does, including an
 * accumulator past n_params that train_finish folds in (sum of dsq per
 * neuron, whose gradient 2 dsq_h W1[h] is linear in W1).
 * ---------------------------------------------------------------------- */
enum { FD_ = 4, FH = 6 };
static int FO = 3;
static const float FMEAN = 0.5f, FSTD = 2.0f;
#define W1 (P)
#define B1 (P + FH * FD_)
#define W2 (P + FH * FD_ + FH)
#define B2 (P + FH * FD_ + FH + FO * FH)

static void fake_prepare(const float *P, float *pre)
{
	(void)P;
	pre[0] = 1;
}

static void fake_train_forward(const float *P, const float *pre, const float *x, int32_t need_sq,
                               float *ws, float *z, float *logits, float *sq, const int32_t *axes)
{
	(void)axes;
	float *xn = ws, *a = ws + FD_;
	for (int d = 0; d < FD_; d++)
		xn[d] = (x[d] - FMEAN) / FSTD;
	for (int h = 0; h < FH; h++) {
		double s = B1[h], q = 0;
		for (int d = 0; d < FD_; d++) {
			s += (double)W1[h * FD_ + d] * xn[d];
			q += (double)W1[h * FD_ + d] * W1[h * FD_ + d];
		}
		z[h] = (float)s;
		a[h] = s > 0 ? (float)s : 0;
		if (need_sq)
			sq[h] = (float)q;
	}
	for (int o = 0; o < FO; o++) {
		double s = B2[o];
		for (int h = 0; h < FH; h++)
			s += (double)W2[o * FH + h] * a[h];
		logits[o] = (float)s;
	}
}

static void fake_train_backward(const float *P, const float *pre, float *ws, const float *dl,
                                const float *dz, const float *dsq, float *grad)
{
	const float *xn = ws, *a = ws + FD_;
	float *gW1 = grad, *gB1 = grad + FH * FD_, *gW2 = gB1 + FH, *gB2 = gW2 + FO * FH;
	float *acc = gB2 + FO;
	for (int o = 0; o < FO; o++) {
		gB2[o] += dl[o];
		for (int h = 0; h < FH; h++)
			gW2[o * FH + h] += dl[o] * a[h];
	}
	for (int h = 0; h < FH; h++) {
		double t = dz[h];
		if (a[h] > 0)
			for (int o = 0; o < FO; o++)
				t += (double)dl[o] * W2[o * FH + h];
		gB1[h] += (float)t;
		for (int d = 0; d < FD_; d++)
			gW1[h * FD_ + d] += (float)(t * xn[d]);
		if (dsq)
			acc[h] += dsq[h];
	}
}

static int fake_finish_calls;

static void fake_train_finish(const float *P, float *grad, int32_t part, int32_t parts)
{
	fake_finish_calls++;
	float *acc = grad + FH * FD_ + FH + FO * FH + FO;
	for (int h = FH * part / parts; h < FH * (part + 1) / parts; h++)
		for (int d = 0; d < FD_; d++)
			grad[h * FD_ + d] += 2 * acc[h] * W1[h * FD_ + d];
}

static void fake_certify(const float *P, const float *pre, const float *x, int32_t norms, float *ws,
                         float *z, float *logits, rt_cert *out, const float *xlo)
{
	float sq[FH];
	fake_train_forward(P, pre, x, 0, ws, z, logits, sq, NULL);
	int best = 0;
	for (int o = 1; o < FO; o++)
		if (logits[o] > logits[best])
			best = o;
	out->label = FO == 1 ? logits[0] > 0 : best;
	for (int p = 0; p < RT_NNORMS; p++) {
		out->eps[p] = INFINITY;
		out->bind[p] = -1;
		for (int h = 0; h < FH; h++) {
			double n1 = 0, n2 = 0, ni = 0;
			for (int d = 0; d < FD_; d++) {
				double g = fabs(W1[h * FD_ + d] / FSTD);
				n1 += g;
				n2 += g * g;
				ni = g > ni ? g : ni;
			}
			double q = p == RT_L1 ? ni : p == RT_L2 ? sqrt(n2) : n1;
			double e = fabs(z[h]) / q;
			if (q > 0 && e < out->eps[p]) {
				out->eps[p] = (float)e;
				out->bind[p] = h;
			}
		}
		out->eps_pred[p] = out->eps[p];
	}
	/* logit Jacobian W2 diag(z > 0) W1 after xn and a */
	float *J = ws + FD_ + FH;
	for (int o = 0; o < FO; o++)
		for (int d = 0; d < FD_; d++) {
			double s = 0;
			for (int h = 0; h < FH; h++)
				if (z[h] > 0)
					s += (double)W2[o * FH + h] * W1[h * FD_ + d];
			J[o * FD_ + d] = (float)s;
		}
}

/* the gradient of logit k in raw units: W2[k] diag(z > 0) W1 / std */
static void fake_input_grad(const float *P, const float *x, int32_t k, float *ws, double *g)
{
	float z[FH], logits[4], sq[FH];   /* FO <= 3 */
	fake_train_forward(P, NULL, x, 0, ws, z, logits, sq, NULL);
	for (int d = 0; d < FD_; d++) {
		g[d] = 0;
		for (int h = 0; h < FH; h++)
			if (z[h] > 0)
				g[d] += (double)W2[k * FH + h] * W1[h * FD_ + d] / FSTD;
	}
}

static rt_tensor fake_tensors[4];
static const rt_layer fake_layers[1] = { { "fc1", FH, 0, 0, 0, 0 } };

static rt_model fake_model(int O, const char *name)
{
	FO = O;
	fake_tensors[0] = (rt_tensor){ "fc1.weight", 2, { FH, FD_ }, 0, FH * FD_, FD_, 0 };
	fake_tensors[1] = (rt_tensor){ "fc1.bias", 1, { FH }, FH * FD_, FH, FD_, 1 };
	fake_tensors[2] = (rt_tensor){ "fc2.weight", 2, { O, FH }, FH * FD_ + FH, O * FH, FH, 0 };
	fake_tensors[3] = (rt_tensor){ "fc2.bias", 1, { O }, FH * FD_ + FH + O * FH, O, FH, 1 };
	int64_t np = FH * FD_ + FH + O * FH + O;
	return (rt_model){
		.abi = RT_ABI_VERSION, .name = name, .n_in = FD_, .n_out = O, .n_hidden = FH,
		.n_layers = 1, .n_tensors = 4, .n_params = np, .ws_floats = FD_ + FH + O * FD_,
		.pre_floats = 1, .grad_floats = np + FH, .logit_jac_off = FD_ + FH, .mean = FMEAN,
		.std = FSTD, .layers = fake_layers, .tensors = fake_tensors, .prepare = fake_prepare,
		.certify = fake_certify, .input_grad = fake_input_grad, .train_forward = fake_train_forward,
		.train_backward = fake_train_backward, .train_finish = fake_train_finish,
	};
}

/* ------------------------------------------------------------------------
 * A JIT-compiled model
 * ---------------------------------------------------------------------- */
typedef struct jitted {
	arena *a;
	cg_unit *u;
	const rt_model *m;
} jitted;

static bool jit_open(jitted *j, const char *text)
{
	memset(j, 0, sizeof *j);
	j->a = arena_new();
	j->m = jit_text(j->a, text, 2, &j->u);
	return j->m->train_forward && j->m->train_backward && j->m->train_finish;
}

static void jit_close(jitted *j)
{
	cg_unit_free(j->u);
	arena_free(j->a);
}

static const char tiny_lln[] =
	"model tiny { input x[4] normalize(0.5, 2); h1 = relu(dense(x, 8)); h2 = relu(dense(h1, 6));"
	" out = dense(h2, 3); output out; }\n"
	"objective { loss = cross_entropy; regularizer = roll(lambda = 0.5, C = 1, gamma = 100); }\n";

/* ------------------------------------------------------------------------
 * Command lines, with stdout and stderr captured
 * ---------------------------------------------------------------------- */
typedef int main_fn(const rt_model *, const char *, int, char **);

static char out_text[65536], err_text[65536];

static int run_main(main_fn *fn, const rt_model *m, const char *defaults, const char *const *args)
{
	char *argv[64];
	int argc = 0;
	for (; args[argc]; argc++)
		argv[argc] = (char *)args[argc];
	argv[argc] = NULL;
	fflush(stdout);
	fflush(stderr);
	int save1 = dup(1), save2 = dup(2);
	char po[512], pe[512];
	snprintf(po, sizeof po, "%s/stdout.txt", tmpdir);
	snprintf(pe, sizeof pe, "%s/stderr.txt", tmpdir);
	int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fo >= 0 && fe >= 0);
	dup2(fo, 1);
	dup2(fe, 2);
	close(fo);
	close(fe);
	int rc = fn(m, defaults, argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(save1, 1);
	dup2(save2, 2);
	close(save1);
	close(save2);
	char *o = slurp(po, NULL), *e = slurp(pe, NULL);
	snprintf(out_text, sizeof out_text, "%s", o ? o : "");
	snprintf(err_text, sizeof err_text, "%s", e ? e : "");
	free(o);
	free(e);
	return rc;
}

#define TRAIN(m, d, ...) run_main(rt_train_main, m, d, (const char *const[]){ "llnc train", __VA_ARGS__, NULL })
#define EVAL(m, d, ...) run_main(rt_eval_main, m, d, (const char *const[]){ "llnc eval", __VA_ARGS__, NULL })

#define OK(call) \
	do { \
		int rc_ = (call); \
		if (rc_ != 0) \
			fail_msg("exit %d, stderr:\n%s", rc_, err_text); \
	} while (0)

static void expect_error(int rc, int want_rc, const char *want_msg)
{
	if (rc != want_rc || !strstr(err_text, want_msg))
		fail_msg("exit %d (expected %d), stderr:\n%s\nexpected to contain: %s", rc, want_rc, err_text,
		         want_msg);
}

/* A labeled CSV with n examples of 4 values; the class is decided by the
 * signs of two coordinates, so it is learnable. */
static const char *make_data(const char *name, int n, int classes, uint64_t seed)
{
	const char *path = P_(name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	uint64_t s = seed;
	for (int i = 0; i < n; i++) {
		double x[4];
		for (int d = 0; d < 4; d++)
			x[d] = uni(&s);
		int y = classes == 2 ? x[0] > 0.5 : (x[0] > 0.5) + (x[1] > 0.5);
		if (y >= classes)
			y = classes - 1;
		fprintf(f, "%d,%.6f,%.6f,%.6f,%.6f\n", y, x[0], x[1], x[2], x[3]);
	}
	fclose(f);
	return path;
}

/* ------------------------------------------------------------------------
 * Batch gradients
 * ---------------------------------------------------------------------- */
static void test_batch_grad(void **state)
{
	(void)state;
	rt_model m = fake_model(3, "fake");
	rt_data d;
	char err[RT_ERRLEN];
	assert_int_equal(rt_data_read(make_data("bg.csv", 23, 3, 5), 4, true, &d, err), 0);
	float *P = calloc((size_t)m.n_params, sizeof *P), pre[1];
	rt_init_params(m.tensors, m.n_tensors, 3, RT_INIT_HE, P);
	m.prepare(P, pre);
	rt_objective objs[] = {
		{ .kind = RT_OBJ_VANILLA },
		{ .kind = RT_OBJ_ROLL, .lambda = 0.7, .C = 1.3, .gamma = 100 },
		{ .kind = RT_OBJ_ROLL, .lambda = 0.7, .C = 1.3, .gamma = 40 },
		{ .kind = RT_OBJ_DISTANCE, .lambda = 0.3 },
	};
	int64_t idx[23];
	for (int i = 0; i < 23; i++)
		idx[i] = (i * 7) % 23;
	float g1[64], g3[64], gsum[64], gi[64];
	for (size_t k = 0; k < sizeof objs / sizeof *objs; k++) {
		double l1, c1, l3, c3;
		fake_finish_calls = 0;
		assert_int_equal(rt_batch_grad(&m, &objs[k], P, pre, d.x, d.y, idx, 23, 1, g1, &l1, &c1), 0);
		/* once per batch on one thread, and only for objectives of sq (vanilla
		 * has no Gram terms) */
		assert_int_equal(fake_finish_calls, rt_objective_needs_sq(&objs[k]) ? 1 : 0);
		assert_int_equal(rt_batch_grad(&m, &objs[k], P, pre, d.x, d.y, idx, 23, 3, g3, &l3, &c3), 0);
		/* the loss does not depend on the thread count; the gradient only by rounding */
		assert_true(l1 == l3 && c1 == c3);
		for (int i = 0; i < m.n_params; i++)
			assert_true(fabs(g1[i] - g3[i]) < 1e-5);
		/* the mean of the one-example gradients */
		memset(gsum, 0, sizeof gsum);
		double ls = 0;
		for (int e = 0; e < 23; e++) {
			double l;
			assert_int_equal(rt_batch_grad(&m, &objs[k], P, pre, d.x, d.y, &idx[e], 1, 4, gi, &l, NULL), 0);
			ls += l;
			for (int i = 0; i < m.n_params; i++)
				gsum[i] += gi[i];
		}
		assert_true(fabs(ls / 23 - l1) < 1e-12);
		for (int i = 0; i < m.n_params; i++)
			assert_true(fabs(gsum[i] / 23 - g1[i]) < 1e-5);
		/* and the derivative of the mean loss (central differences in P) */
		for (int i = 0; i < m.n_params; i++) {
			float keep = P[i];
			const float h = 1e-3f;
			double lu, ld;
			P[i] = keep + h;
			assert_int_equal(rt_batch_grad(&m, &objs[k], P, pre, d.x, d.y, idx, 23, 2, gi, &lu, NULL), 0);
			P[i] = keep - h;
			assert_int_equal(rt_batch_grad(&m, &objs[k], P, pre, d.x, d.y, idx, 23, 2, gi, &ld, NULL), 0);
			P[i] = keep;
			double fd = (lu - ld) / ((double)(keep + h) - (double)(keep - h));
			if (fabs(fd - g1[i]) > 2e-3 * (1 + fabs(fd)))
				fail_msg("objective %zu: dL/dP[%d] = %.6g, differences %.6g", k, i, g1[i], fd);
		}
	}
	free(P);
	rt_data_free(&d);
}

static void test_evaluate_threads(void **state)
{
	(void)state;
	rt_model m = fake_model(3, "fake");
	rt_data d;
	char err[RT_ERRLEN];
	assert_int_equal(rt_data_read(make_data("ev.csv", 57, 3, 8), 4, true, &d, err), 0);
	float P[64];
	rt_init_params(m.tensors, m.n_tensors, 11, RT_INIT_HE, P);
	rt_objective o = { .kind = RT_OBJ_ROLL, .lambda = 1, .C = 1, .gamma = 100 };
	rt_eval a, b;
	assert_int_equal(rt_evaluate(&m, &o, P, &d, 1, RT_ALL_NORMS, &a), 0);
	assert_int_equal(rt_evaluate(&m, &o, P, &d, 5, RT_ALL_NORMS, &b), 0);
	assert_memory_equal(&a, &b, sizeof a);
	assert_int_equal(a.n, 57);
	assert_true(a.accuracy >= 0 && a.accuracy <= 1);
	assert_true(a.patterns >= 1 && a.patterns <= 57);
	assert_true(a.jacobians >= 1 && a.jacobians <= a.patterns);
	for (int p = 0; p < RT_NNORMS; p++)
		for (int k = 1; k < 4; k++)
			assert_true(a.eps_pct[p][k] >= a.eps_pct[p][k - 1]);
	/* only the requested norms */
	assert_int_equal(rt_evaluate(&m, &o, P, &d, 2, RT_NORM_BIT(RT_L2), &b), 0);
	assert_true(isnan(b.eps_pct[RT_L1][1]) && b.eps_pct[RT_L2][1] == a.eps_pct[RT_L2][1]);
	rt_data_free(&d);
}

/* ------------------------------------------------------------------------
 * The loop: determinism, resume, errors (on a given model)
 * ---------------------------------------------------------------------- */
static void loop_tests(const rt_model *m, const char *tag)
{
	char name[64];
	snprintf(name, sizeof name, "%s_data.csv", tag);
	const char *data = make_data(name, 90, 3, 21);
	char a1[512], a2[512], b[512], c1[512], c2[512], cb[512], log1[512];
	snprintf(a1, sizeof a1, "%s", P_("a1.safetensors"));
	snprintf(a2, sizeof a2, "%s", P_("a2.safetensors"));
	snprintf(b, sizeof b, "%s", P_("b.safetensors"));
	snprintf(c1, sizeof c1, "%s", P_("a1.ckpt.safetensors"));
	snprintf(c2, sizeof c2, "%s", P_("a2.ckpt.safetensors"));
	snprintf(cb, sizeof cb, "%s", P_("b.ckpt.safetensors"));
	snprintf(log1, sizeof log1, "%s", P_("a1.log"));
	const char *defaults = "--objective\nroll\n--lambda\n0.5\n--C\n1\n--gamma\n100\n--optimizer\nsgd\n"
	                       "--lr\n0.05\n--momentum\n0.5\n--nesterov\non\n--batch\n16\n--seed\n7\n";
	const char *opts[][4] = {
		{ "--valid", "20", "--optimizer", "sgd" },
		{ "--valid", "0", "--optimizer", "adam" },
		{ "--valid", "15", "--optimizer", "amsgrad" },
	};
	for (size_t k = 0; k < sizeof opts / sizeof *opts; k++) {
		unlink(a1);
		unlink(a2);
		unlink(b);
		unlink(c1);
		unlink(c2);
		unlink(cb);
		/* the same seed and threads: identical files */
		int rc = TRAIN(m, defaults, "--data", data, "--epochs", "2", "--threads", "2", opts[k][0],
		               opts[k][1], opts[k][2], opts[k][3], "--log", log1, "-o", a1);
		if (rc)
			fail_msg("%s: training failed (%d):\n%s", tag, rc, err_text);
		assert_true(strstr(out_text, "trained 2 epochs") != NULL);
		OK(TRAIN(m, defaults, "--data", data, "--epochs", "2", "--threads", "2", opts[k][0],
		         opts[k][1], opts[k][2], opts[k][3], "-o", a2));
		assert_same_file(a1, a2);
		assert_same_file(c1, c2);
		/* 1 epoch, then resumed to 2: identical weights and checkpoint */
		OK(TRAIN(m, defaults, "--data", data, "--epochs", "1", "--threads", "2", opts[k][0],
		         opts[k][1], opts[k][2], opts[k][3], "-o", b));
		rc = TRAIN(m, defaults, "--data", data, "--epochs", "2", "--threads", "2", opts[k][0],
		           opts[k][1], opts[k][2], opts[k][3], "--resume", cb, "-o", b);
		if (rc)
			fail_msg("%s: resume failed (%d):\n%s", tag, rc, err_text);
		assert_same_file(a1, b);
		assert_same_file(c1, cb);
		/* the log: one JSON object per epoch */
		char *lg = slurp(log1, NULL);
		assert_non_null(lg);
		int lines = 0;
		for (char *line = strtok(lg, "\n"); line; line = strtok(NULL, "\n"), lines++) {
			json_error_t je;
			json_t *j = json_loads(line, 0, &je);
			if (!j)
				fail_msg("log line %d is not JSON: %s", lines + 1, line);
			assert_int_equal(json_integer_value(json_object_get(j, "epoch")), lines + 1);
			assert_true(json_is_number(json_object_get(j, "train_loss")));
			json_t *v = json_object_get(j, "valid");
			assert_true(strcmp(opts[k][1], "0") == 0 ? v == NULL : json_is_object(v));
			if (v)
				assert_int_equal(json_array_size(json_object_get(v, "eps_l2")), 4);
			json_decref(j);
		}
		free(lg);
		assert_int_equal(lines, 2);
	}
	/* a different thread count still trains (results may differ in rounding) */
	assert_int_equal(TRAIN(m, defaults, "--data", data, "--epochs", "1", "--threads", "3", "-o", b), 0);
	/* but not with the batched kernels (vanilla on a dense chain): the threads
	 * split the examples, then the gradient's rows, so 1 and 3 threads give
	 * the same bits */
	if (m->batch) {
		OK(TRAIN(m, defaults, "--data", data, "--epochs", "2", "--objective", "vanilla", "--threads", "1", "-o", a1));
		OK(TRAIN(m, defaults, "--data", data, "--epochs", "2", "--objective", "vanilla", "--threads", "3", "-o", a2));
		assert_same_file(a1, a2);
		assert_same_file(c1, c2);
	}

	/* the weights evaluate, as a table and as JSON */
	int rc = EVAL(m, defaults, "--weights", a1, "--data", data, "--json");
	if (rc)
		fail_msg("eval failed:\n%s", err_text);
	json_error_t je;
	json_t *j = json_loads(out_text, 0, &je);
	assert_non_null(j);
	assert_int_equal(json_integer_value(json_object_get(j, "n")), 90);
	double acc = json_number_value(json_object_get(j, "accuracy"));
	assert_true(acc >= 0 && acc <= 1);
	assert_int_equal(json_array_size(json_object_get(j, "eps_linf")), 4);
	json_decref(j);
	assert_int_equal(EVAL(m, defaults, "--weights", c1, "--data", data, "--norms", "2"), 0);
	assert_true(strstr(out_text, "eps_2") && !strstr(out_text, "eps_1"));
	expect_error(EVAL(m, defaults, "--data", data), 2, "llnc eval: --weights W.safetensors is required");
	expect_error(EVAL(m, defaults, "--weights", a1, "--epochs", "3"), 2,
	             "llnc eval: unknown option '--epochs'");
}

static void error_tests(const rt_model *m)
{
	const char *data = make_data("err_data.csv", 40, 3, 4);
	const char *out = P_("err.safetensors");
	unlink(out);
	unlink(P_("err.ckpt.safetensors"));
	unlink(P_("r.safetensors"));
	unlink(P_("r2.safetensors"));
	/* labels outside 0..n_out-1 */
	const char *bad = P_("bad_label.csv");
	put_text(bad, "0,1,2,3,4\n1,1,2,3,4\n2,0,0,0,0\n1,1,1,1,1\n12,0,0,0,1\n");
	char want[600];
	snprintf(want, sizeof want, "%s: record 5: label 12 is outside 0..2", bad);
	expect_error(TRAIN(m, NULL, "--data", bad, "-o", out), 1, want);
	assert_false(exists(out));
	/* labels from a separate file: count mismatch, range */
	const char *x = P_("x.csv"), *y = P_("y.csv"), *y2 = P_("y2.csv");
	put_text(x, "0.1,0.2,0.3,0.4\n0.5,0.6,0.7,0.8\n0.9,1,1.1,1.2\n");
	put_text(y, "0\n1\n");
	put_text(y2, "0\n1\n3\n");
	char spec[1100];
	snprintf(spec, sizeof spec, "%s,%s", x, y);
	snprintf(want, sizeof want, "%s: holds 2 labels but the data has 3 examples", y);
	expect_error(TRAIN(m, NULL, "--data", spec, "-o", out), 1, want);
	snprintf(spec, sizeof spec, "%s,%s", x, y2);
	snprintf(want, sizeof want, "%s: record 3: label 3 is outside 0..2", y2);
	expect_error(TRAIN(m, NULL, "--data", spec, "-o", out), 1, want);
	/* a missing file */
	snprintf(want, sizeof want, "%s: cannot read", P_("nope.csv"));
	expect_error(TRAIN(m, NULL, "--data", P_("nope.csv"), "-o", out), 1, want);
	/* --init and --resume together */
	expect_error(TRAIN(m, NULL, "--data", data, "--init", "w.safetensors", "--resume", "c.safetensors",
	                   "-o", out), 2, "llnc train: --init and --resume exclude each other");
	/* bad values */
	expect_error(TRAIN(m, NULL, "--data", data, "--lr", "-1", "-o", out), 2,
	             "llnc train: --lr must be > 0, got -1");
	expect_error(TRAIN(m, NULL, "--data", data, "--lr", "fast", "-o", out), 2,
	             "llnc train: --lr takes a number, got 'fast'");
	expect_error(TRAIN(m, NULL, "--data", data, "--epochs", "0", "-o", out), 2,
	             "llnc train: --epochs must be >= 1, got 0");
	expect_error(TRAIN(m, NULL, "--data", data, "--batch", "2.5", "-o", out), 2,
	             "llnc train: --batch must be an integer, got 2.5");
	expect_error(TRAIN(m, NULL, "--data", data, "--beta2", "1", "-o", out), 2,
	             "llnc train: --beta2 must be in [0, 1), got 1");
	expect_error(TRAIN(m, NULL, "--data", data, "--gamma", "0", "-o", out), 2,
	             "llnc train: --gamma must be in (0, 100], got 0");
	expect_error(TRAIN(m, NULL, "--data", data, "--optimizer", "rmsprop", "-o", out), 2,
	             "llnc train: --optimizer takes sgd, adam or amsgrad, got 'rmsprop'");
	expect_error(TRAIN(m, NULL, "--data", data, "--nesterov", "yes", "-o", out), 2,
	             "llnc train: --nesterov takes off or on, got 'yes'");
	expect_error(TRAIN(m, NULL, "--data", data, "--nesterov", "on", "-o", out), 2,
	             "llnc train: --nesterov on needs --momentum > 0");
	expect_error(TRAIN(m, NULL, "--data", data, "--seed", "-3", "-o", out), 2,
	             "llnc train: --seed takes an integer");
	expect_error(TRAIN(m, NULL, "--data", data, "--threads", "5000", "-o", out), 2,
	             "llnc train: --threads must be from 0 to 1024, got 5000");
	expect_error(TRAIN(m, NULL, "--data", data, "--eval-norms", "3", "-o", out), 2,
	             "llnc train: --eval-norms takes a comma-separated list of 1, 2, inf; got '3'");
	expect_error(TRAIN(m, NULL, "--data", data, "--objective", "distance", "--p", "1", "-o", out), 2,
	             "only with p = 2");
	expect_error(TRAIN(m, NULL, "--data", data, "--lr"), 2, "llnc train: --lr needs a value");
	expect_error(TRAIN(m, NULL, "--data", data, "--frobnicate", "1", "-o", out), 2,
	             "llnc train: unknown option '--frobnicate' (see --help)");
	expect_error(TRAIN(m, NULL, "--data", data, "stray", "-o", out), 2,
	             "llnc train: unexpected argument 'stray'");
	expect_error(TRAIN(m, NULL, "--data", data), 2, "llnc train: -o OUT.safetensors is required");
	expect_error(TRAIN(m, NULL, "-o", out), 2, "llnc train: no training data");
	expect_error(TRAIN(m, "--lr\n-1\n", "--data", data, "-o", out), 2,
	             "llnc train: --lr must be > 0, got -1 (in the settings from the .lln file)");
	/* the command line overrides the defaults, so a bad default is replaced... no:
	 * defaults are checked as given; a good default is overridden */
	expect_error(TRAIN(m, NULL, "--data", data, "--valid", "40", "-o", out), 1,
	             "llnc train: --valid 40 leaves no training examples");
	expect_error(TRAIN(m, NULL, "--data", data, "--loss", "sigmoid_cross_entropy", "-o", out), 2,
	             "sigmoid_cross_entropy needs one output logit, the model has 3");
	snprintf(want, sizeof want, "cannot write %s: No such file or directory", P_("no/such/dir/w.safetensors"));
	expect_error(TRAIN(m, NULL, "--data", data, "-o", P_("no/such/dir/w.safetensors")), 1, want);
	assert_false(exists(out));
	/* --resume: a file that is not a checkpoint, a different seed */
	assert_int_equal(TRAIN(m, NULL, "--data", data, "--epochs", "1", "--seed", "3", "-o", out), 0);
	const char *ck = P_("err.ckpt.safetensors");
	assert_true(exists(ck));
	snprintf(want, sizeof want, "%s: not a checkpoint of llnc train", out);
	expect_error(TRAIN(m, NULL, "--data", data, "--resume", out, "-o", P_("r.safetensors")), 1, want);
	snprintf(want, sizeof want, "%s: was trained with --seed 3; resuming needs the same seed, not 4", ck);
	expect_error(TRAIN(m, NULL, "--data", data, "--seed", "4", "--resume", ck, "-o", P_("r.safetensors")),
	             1, want);
	snprintf(want, sizeof want, "%s: was trained with optimizer sgd", ck);
	expect_error(TRAIN(m, NULL, "--data", data, "--seed", "3", "--optimizer", "adam", "--resume", ck,
	                   "-o", P_("r.safetensors")), 1, want);
	snprintf(want, sizeof want, "%s: holds optimizer state '' but sgd with these settings keeps 'buf'", ck);
	expect_error(TRAIN(m, NULL, "--data", data, "--seed", "3", "--momentum", "0.9", "--resume", ck,
	                   "-o", P_("r.safetensors")), 1, want);
	assert_false(exists(P_("r.safetensors")));
	/* --init from weights, and resuming a finished run trains nothing */
	assert_int_equal(TRAIN(m, NULL, "--data", data, "--epochs", "1", "--init", out, "-o",
	                       P_("r.safetensors")), 0);
	assert_int_equal(TRAIN(m, NULL, "--data", data, "--epochs", "1", "--seed", "3", "--resume", ck,
	                       "-o", P_("r2.safetensors")), 0);
	assert_true(strstr(err_text, "nothing to train") != NULL);
	/* --help lists every flag with the current values */
	assert_int_equal(TRAIN(m, "--lr\n0.25\n", "--epochs", "7", "--help"), 0);
	const char *all[] = { "--data", "--test", "--valid", "--objective", "--loss", "--lambda", "--C",
	                      "--gamma", "--optimizer", "--lr ", "--momentum", "--nesterov", "--beta1",
	                      "--beta2", "--eps", "--weight-decay", "--lr-step", "--lr-gamma", "--epochs",
	                      "--batch", "--seed", "--threads", "-o OUT", "--init", "--resume",
	                      "--checkpoint", "--log", "--eval-norms", "--help", "[0.25]", "[7]" };
	for (size_t i = 0; i < sizeof all / sizeof *all; i++)
		if (!strstr(out_text, all[i]))
			fail_msg("--help does not mention %s:\n%s", all[i], out_text);
}
static void test_loop_fake(void **state)
{
	(void)state;
	rt_model m = fake_model(3, "fake");
	loop_tests(&m, "fake");
	error_tests(&m);
	/* a one-logit model: sigmoid cross-entropy, labels 0 and 1 */
	rt_model m1 = fake_model(1, "fake1");
	const char *bin = make_data("bin.csv", 50, 2, 9);
	const char *out = P_("bin.safetensors");
	int rc = TRAIN(&m1, NULL, "--data", bin, "--test", bin, "--valid", "10", "--epochs", "3", "--objective",
	               "distance", "--lambda", "0.1", "--optimizer", "adam", "--lr", "0.01", "-o", out);
	if (rc)
		fail_msg("sigmoid training failed:\n%s", err_text);
	assert_true(strstr(out_text, "test set") != NULL);
	char want[600];
	const char *bad = make_data("bin3.csv", 30, 3, 9);
	/* make_data with 3 classes writes some label 2 */
	expect_error(TRAIN(&m1, NULL, "--data", bad, "-o", P_("bin3.safetensors")), 1, "is outside 0..1");
	snprintf(want, sizeof want, "%s: record", bad);
	assert_true(strstr(err_text, want) != NULL);
	FO = 3;
}

static void test_loop_jit(void **state)
{
	(void)state;
	jitted j;
	if (!jit_open(&j, tiny_lln)) {
		jit_close(&j);
		skip();
	}
	loop_tests(j.m, "jit");
	error_tests(j.m);
	/* training lowers the loss on a learnable problem */
	const char *data = make_data("learn.csv", 300, 3, 77);
	const char *out = P_("learn.safetensors");
	assert_int_equal(TRAIN(j.m, NULL, "--data", data, "--epochs", "1", "--lr", "1e-9", "--valid", "100",
	                       "-o", out), 0);
	assert_int_equal(EVAL(j.m, NULL, "--weights", out, "--data", data, "--json"), 0);
	json_error_t je;
	json_t *a = json_loads(out_text, 0, &je);
	assert_int_equal(TRAIN(j.m, NULL, "--data", data, "--epochs", "15", "--lr", "0.05", "--momentum",
	                       "0.9", "--valid", "100", "--batch", "16", "-o", out), 0);
	assert_int_equal(EVAL(j.m, NULL, "--weights", out, "--data", data, "--json"), 0);
	json_t *b = json_loads(out_text, 0, &je);
	assert_non_null(a);
	assert_non_null(b);
	double l0 = json_number_value(json_object_get(a, "loss")), l1 = json_number_value(json_object_get(b, "loss"));
	if (!(l1 < 0.8 * l0))
		fail_msg("loss %g after training, %g before", l1, l0);
	json_decref(a);
	json_decref(b);

	/* eval --per-example: every example's margins, which give the summary's
	 * percentiles and accuracy back */
	expect_error(EVAL(j.m, NULL, "--weights", out, "--data", data, "--per-example"), 2,
	             "--per-example needs --json");
	assert_int_equal(EVAL(j.m, NULL, "--weights", out, "--data", data, "--json", "--per-example",
	                       "--norms", "1,inf"), 0);
	json_t *c = json_loads(out_text, 0, &je);
	assert_non_null(c);
	json_t *ex = json_object_get(c, "examples");
	assert_null(json_object_get(ex, "eps_l2"));
	json_t *cor = json_object_get(ex, "correct");
	assert_int_equal(json_array_size(cor), 300);
	int right = 0;
	for (size_t i = 0; i < 300; i++)
		right += (int)json_integer_value(json_array_get(cor, i));
	assert_true(fabs(right / 300.0 - json_number_value(json_object_get(c, "accuracy"))) < 1e-12);
	static const char *key[2] = { "eps_l1", "eps_linf" };
	for (int k = 0; k < 2; k++) {
		json_t *v = json_object_get(ex, key[k]), *sum = json_object_get(c, key[k]);
		assert_int_equal(json_array_size(v), 300);
		float e[300];
		for (size_t i = 0; i < 300; i++) {
			json_t *x = json_array_get(v, i);
			e[i] = json_is_null(x) ? INFINITY : (float)json_number_value(x);
		}
		for (int q = 0; q < 4; q++) {
			double want = json_number_value(json_array_get(sum, (size_t)q));
			assert_true(fabs(rt_percentile(e, 300, 25.0 * (q + 1)) - want) <= 1e-6 * fabs(want));
		}
	}
	json_decref(c);

	/* --init-scheme: one epoch at lr 1e-12 leaves the initial weights */
	float *W = malloc(sizeof *W * (size_t)j.m->n_params), *I = malloc(sizeof *I * (size_t)j.m->n_params);
	char err[RT_ERRLEN];
	static const char *scheme[2] = { "pytorch", "he" };
	for (int k = 0; k < 2; k++) {
		assert_int_equal(TRAIN(j.m, NULL, "--data", data, "--epochs", "1", "--lr", "1e-12", "--seed", "4",
		                       "--init-scheme", scheme[k], "-o", out), 0);
		assert_int_equal(rt_params_load(j.m->tensors, j.m->n_tensors, out, W, err), 0);
		rt_init_params(j.m->tensors, j.m->n_tensors, 4, k ? RT_INIT_HE : RT_INIT_PYTORCH, I);
		for (int64_t i = 0; i < j.m->n_params; i++)
			assert_true(fabsf(W[i] - I[i]) <= 1e-6f * (1 + fabsf(I[i])));
	}
	expect_error(TRAIN(j.m, NULL, "--data", data, "--init-scheme", "xavier", "-o", out), 2,
	             "--init-scheme takes pytorch or he, got 'xavier'");
	/* divergence in the batched kernels' training (vanilla, dense): said,
	 * and nothing written */
	unlink(out);
	expect_error(TRAIN(j.m, NULL, "--data", data, "--objective", "vanilla", "--optimizer", "sgd", "--lr", "1e37",
	                   "--epochs", "3", "-o", out),
	             1, "is not finite; training diverged (try a smaller --lr)");
	assert_int_equal(access(out, F_OK), -1);
	free(W);
	free(I);
	jit_close(&j);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/lln_test_train_XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sgd),
		cmocka_unit_test(test_adam),
		cmocka_unit_test(test_lr_schedule),
		cmocka_unit_test(test_step_mean),
		cmocka_unit_test(test_cross_entropy_values),
		cmocka_unit_test(test_roll_and_distance_values),
		cmocka_unit_test(test_objective_finite_differences),
		cmocka_unit_test(test_roll_selection_matches_sort),
		cmocka_unit_test(test_batch_grad),
		cmocka_unit_test(test_evaluate_threads),
		cmocka_unit_test(test_loop_fake),
		cmocka_unit_test(test_loop_jit),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
