/* lln_bench: the lln side of the performance benchmark (bench/run).
 *
 *   lln_bench --model FILE.lln --weights W.safetensors --x X.npy --y Y.npy
 *             --mode MODE [--threads N] [--reps R] [--steps S] [--n N]
 *             [--batch B] [--grad-out FILE] [--lambda L] [--C C] [--opt sgd|adam]
 *
 * JIT-compiles the model in process (the llnc pipeline: parse, check, IR,
 * LLVM, JIT), loads the weights and the examples, then runs one measurement
 * and prints one JSON object per line on stdout.  The timed regions never
 * include the JIT compile.  Modes:
 *
 *   check     vanilla and ROLL loss of the first batch (and the ROLL
 *             gradient, written as safetensors to --grad-out), and the
 *             certificates of the first --n examples with norms = all and
 *             with norms = {2} (the Gram strategy), for bench/run to compare
 *             with the PyTorch template; for a model with approximate ROLL
 *             (samples = K) also the K input axes each example of the batch
 *             drew (rt_sample_axes with the objective's sample_seed 0 and
 *             the example's row as stream, as rt_batch_grad does), so that
 *             PyTorch can recompute the same estimate
 *   vanilla   training steps as train.c takes them: rt_batch_sums_ctx +
 *             rt_opt_step_mean, SGD (prepare only for ROLL)
 *   roll      the same with ROLL (--lambda, default 2; --C, default 0.25;
 *             gamma 100; approximate when the model samples axes)
 *   cert_all  rt_certify_batch over --n examples, norms = 1, 2, inf
 *             (--no-prune 1: with RT_NO_PRUNE, every gradient row formed)
 *   cert_l2   the same with norms = 2 only
 *   kernels   one thread, per kernel: forward, train_forward (need_sq off and
 *             on), train_backward (without and with dsq), certify (all, all
 *             with every row formed, l2), grads, prepare, train_finish, the
 *             optimizer step; plus the FLOPs of the explicit gradient rows,
 *             for the GFLOP/s figure (over certify forming every row)
 *   compile   the stages of `llnc build --certifier` without the kernel
 *             cache, timed apart: front end (parse to IR, weights read),
 *             cg_generate (LLVM IR and its O3 pipeline), cg_emit_object
 *             (machine code), cg_link (the weights' object and cc)
 *
 * Every timed mode repeats its measurement --reps times and reports each
 * repetition's rate; bench/run takes the median.  ru_maxrss at exit is the
 * process's peak memory (one mode per process).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <llvm-c/Core.h>

#include "llnc.h"

typedef struct opts {
	const char *model, *weights, *x, *y, *mode, *grad_out, *perf_ctl;
	int threads, reps, steps, n, batch, perf_map, no_prune;
	double lambda, C;
	bool adam;
} opts;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double rss_mb(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	char line[256];
	double kb = -1;
	size_t n = strlen(field);
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, field, n) && line[n] == ':')
			kb = atof(line + n + 1);
	fclose(f);
	return kb / 1024.0;
}

static double maxrss_mb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_maxrss / 1024.0;   /* Linux: kilobytes */
}

static _Noreturn void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "lln_bench: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(1);
}

static float *falloc(int64_t n)
{
	size_t bytes = ((size_t)(n > 0 ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
	float *p = aligned_alloc(64, bytes);
	if (!p)
		die("out of memory%s", "");
	memset(p, 0, bytes);
	return p;
}

static void usage(void)
{
	fputs("usage: lln_bench --model FILE.lln --weights W.safetensors --x X.npy --y Y.npy\n"
	      "                 --mode check|vanilla|roll|cert_all|cert_l2|kernels|compile\n"
	      "                 [--threads N] [--reps R] [--steps S] [--n N] [--batch B] [--grad-out FILE]\n"
	      "                 [--perf-map 1] [--perf-ctl FIFO] [--lambda L] [--C C] [--opt sgd|adam]\n"
	      "                 [--no-prune 1]   (cert_*: every gradient row formed, RT_NO_PRUNE)\n",
	      stderr);
	exit(2);
}

static void parse(int argc, char **argv, opts *o)
{
	*o = (opts){ .threads = 1, .reps = 5, .steps = 10, .n = 256, .batch = 64, .lambda = 2, .C = 0.25 };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--model")) o->model = v;
		else if (!strcmp(a, "--weights")) o->weights = v;
		else if (!strcmp(a, "--x")) o->x = v;
		else if (!strcmp(a, "--y")) o->y = v;
		else if (!strcmp(a, "--mode")) o->mode = v;
		else if (!strcmp(a, "--grad-out")) o->grad_out = v;
		else if (!strcmp(a, "--threads")) o->threads = atoi(v);
		else if (!strcmp(a, "--reps")) o->reps = atoi(v);
		else if (!strcmp(a, "--steps")) o->steps = atoi(v);
		else if (!strcmp(a, "--n")) o->n = atoi(v);
		else if (!strcmp(a, "--batch")) o->batch = atoi(v);
		else if (!strcmp(a, "--perf-map")) o->perf_map = atoi(v);
		else if (!strcmp(a, "--no-prune")) o->no_prune = atoi(v);
		else if (!strcmp(a, "--perf-ctl")) o->perf_ctl = v;
		else if (!strcmp(a, "--lambda")) o->lambda = atof(v);
		else if (!strcmp(a, "--C")) o->C = atof(v);
		else if (!strcmp(a, "--opt") && (!strcmp(v, "sgd") || !strcmp(v, "adam"))) o->adam = !strcmp(v, "adam");
		else usage();
	}
	if (!o->model || !o->weights || !o->x || !o->y || !o->mode || o->threads < 1 || o->reps < 1 ||
	    o->steps < 1 || o->n < 1 || o->batch < 1)
		usage();
}

static void print_list(const char *name, const double *v, int n)
{
	printf(",\"%s\":[", name);
	for (int i = 0; i < n; i++)
		printf("%s%.9g", i ? "," : "", v[i]);
	printf("]");
}

/* A float that may be infinite, as JSON. */
static void jnum(double v)
{
	if (isfinite(v))
		printf("%.9g", v);
	else
		printf("null");
}

typedef struct bench {
	const opts *o;
	const ir_module *ir;
	const rt_model *m;
	float *P, *pre;
	rt_data data;
	double jit_s;
} bench;

/* --perf-ctl FIFO: the control fifo of `perf record --control fifo:FIFO -D -1`,
 * so that perf samples the timed region only (not the JIT compile). */
static void perf_ctl(const bench *b, const char *cmd)
{
	if (!b->o->perf_ctl)
		return;
	FILE *f = fopen(b->o->perf_ctl, "w");
	if (f) {
		fprintf(f, "%s\n", cmd);
		fclose(f);
	}
}

static const rt_objective OBJ_VANILLA = { .kind = RT_OBJ_VANILLA };
/* ROLL: lambda and C from --lambda and --C (main sets them), gamma 100,
 * sample_seed 0 */
static rt_objective OBJ_ROLL = { .kind = RT_OBJ_ROLL, .lambda = 2, .C = 0.25, .gamma = 100 };
/* the settings of the two examples: mnist_fc's SGD (lr 0.01, Nesterov
 * momentum 0.5), or with --opt adam mnist_cnn's Adam (lr 0.001, PyTorch's
 * betas and eps) */
static rt_optimizer OPT = { .kind = RT_SGD, .lr = 0.01, .momentum = 0.5, .nesterov = true };
static const rt_optimizer ADAM_CNN = { .kind = RT_ADAM, .lr = 0.001, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8 };

static void header(const bench *b, const char *mode)
{
	printf("{\"side\":\"lln\",\"mode\":\"%s\",\"threads\":%d,\"jit_s\":%.6f", mode, b->o->threads, b->jit_s);
}

static void footer(double rss_before)
{
	printf(",\"rss_before_mb\":%.1f,\"maxrss_mb\":%.1f}\n", rss_before, maxrss_mb());
	fflush(stdout);
}

/* ---- check ---- */
static void run_check(bench *b)
{
	const rt_model *m = b->m;
	const int64_t nb = b->o->batch, nc = b->o->n;
	if (b->data.n < nb || b->data.n < nc)
		die("%s has fewer examples than --batch / --n", b->o->x);
	float *grad = falloc(m->n_params);
	double lv, cv, lr, cr;
	m->prepare(b->P, b->pre);
	if (rt_batch_grad(m, &OBJ_VANILLA, b->P, b->pre, b->data.x, b->data.y, NULL, nb, 1, grad, &lv, &cv))
		die("rt_batch_grad failed%s", "");
	if (rt_batch_grad(m, &OBJ_ROLL, b->P, b->pre, b->data.x, b->data.y, NULL, nb, 1, grad, &lr, &cr))
		die("rt_batch_grad failed%s", "");
	char err[RT_ERRLEN];
	if (b->o->grad_out && rt_params_save(b->ir->tensors, b->ir->n_tensors, grad, NULL, 0, NULL, NULL,
	                                     b->o->grad_out, err))
		die("%s", err);
	rt_cert *ca = calloc((size_t)nc, sizeof *ca), *c2 = calloc((size_t)nc, sizeof *c2);
	rt_batch ba = { .x = b->data.x, .n = nc, .norms = RT_ALL_NORMS, .threads = 1, .cert = ca };
	rt_batch b2 = { .x = b->data.x, .n = nc, .norms = RT_NORM_BIT(RT_L2), .threads = 1, .cert = c2 };
	if (rt_certify_batch(m, b->P, &ba) || rt_certify_batch(m, b->P, &b2))
		die("rt_certify_batch failed%s", "");
	header(b, "check");
	printf(",\"batch\":%lld,\"loss_vanilla\":%.10g,\"ce_vanilla\":%.10g,\"loss_roll\":%.10g,\"ce_roll\":%.10g",
	       (long long)nb, lv, cv, lr, cr);
	printf(",\"n\":%lld,\"label\":[", (long long)nc);
	for (int64_t i = 0; i < nc; i++)
		printf("%s%d", i ? "," : "", ca[i].label);
	const char *names[] = { "eps_l1", "eps_l2", "eps_linf" };
	for (int p = 0; p < RT_NNORMS; p++) {
		printf("],\"%s\":[", names[p]);
		for (int64_t i = 0; i < nc; i++) {
			printf("%s", i ? "," : "");
			jnum(ca[i].eps[p]);
		}
		printf("],\"pred_%s\":[", names[p]);
		for (int64_t i = 0; i < nc; i++) {
			printf("%s", i ? "," : "");
			jnum(ca[i].eps_pred[p]);
		}
	}
	printf("],\"eps_l2_gram\":[");
	for (int64_t i = 0; i < nc; i++) {
		printf("%s", i ? "," : "");
		jnum(c2[i].eps[RT_L2]);
	}
	printf("],\"pred_eps_l2_gram\":[");
	for (int64_t i = 0; i < nc; i++) {
		printf("%s", i ? "," : "");
		jnum(c2[i].eps_pred[RT_L2]);
	}
	printf("],\"samples\":%d,\"axes\":[", m->samples);
	int32_t *axes = malloc(sizeof(int32_t) * (size_t)(m->samples + 1));
	if (!axes)
		die("out of memory%s", "");
	for (int64_t i = 0; m->samples && i < nb; i++) {
		rt_sample_axes(OBJ_ROLL.sample_seed, (uint64_t)i, m->n_in, m->samples, axes);
		printf("%s[", i ? "," : "");
		for (int32_t k = 0; k < m->samples; k++)
			printf("%s%d", k ? "," : "", axes[k]);
		printf("]");
	}
	free(axes);
	printf("]");
	footer(-1);
	free(ca);
	free(c2);
	free(grad);
}

/* ---- training steps ---- */
static void run_train(bench *b, bool roll)
{
	const rt_model *m = b->m;
	const opts *o = b->o;
	const rt_objective *obj = roll ? &OBJ_ROLL : &OBJ_VANILLA;
	const int64_t nb = o->batch, nbat = b->data.n / nb;
	if (nbat < 1)
		die("%s has fewer examples than one batch", o->x);
	rt_grad_ctx *gc = rt_grad_ctx_new(m, o->threads);
	rt_opt_state os;
	if (!gc || rt_opt_init(&os, &OPT, m->n_params))
		die("out of memory%s", "");
	int64_t step = 0;
	double loss = 0;
	/* one step: exactly what the training loop does per batch (train.c) */
#define STEP()                                                                                   \
	do {                                                                                         \
		const float *X = b->data.x + (step % nbat) * nb * m->n_in;                              \
		const int32_t *Y = b->data.y + (step % nbat) * nb;                                       \
		rt_grad_prepare(gc, obj, b->P, b->pre);                                                  \
		const float *sums = rt_batch_sums_ctx(gc, obj, b->P, b->pre, X, Y, NULL, nb, &loss, NULL); \
		if (!sums)                                                                               \
			die("rt_batch_sums_ctx failed%s", "");                                               \
		if (!rt_opt_step_mean(&OPT, &os, OPT.lr, b->P, sums, nb, o->threads))                   \
			die("the gradient is not finite%s", "");                                             \
		step++;                                                                                  \
	} while (0)
	STEP();   /* warm-up: page in buffers */
	double rss_before = rss_mb("VmRSS");
	double *rate = calloc((size_t)o->reps, sizeof *rate), *secs = calloc((size_t)o->reps, sizeof *secs);
	perf_ctl(b, "enable");
	for (int r = 0; r < o->reps; r++) {
		double t0 = now();
		for (int s = 0; s < o->steps; s++)
			STEP();
		secs[r] = now() - t0;
		rate[r] = o->steps / secs[r];
	}
	perf_ctl(b, "disable");
#undef STEP
	header(b, roll ? "roll" : "vanilla");
	printf(",\"batch\":%lld,\"steps\":%d,\"unit\":\"steps/s\",\"last_loss\":%.6g", (long long)nb, o->steps, loss);
	print_list("rate", rate, o->reps);
	print_list("secs", secs, o->reps);
	footer(rss_before);
	free(rate);
	free(secs);
	rt_opt_free(&os);
	rt_grad_ctx_free(gc);
}

/* ---- certification ---- */

/* FLOPs of the explicit gradient rows of one example whose pre-activations
 * are z: every op fed by a hidden layer multiplies its weights over the
 * active inputs by the input layer's n_in-wide rows, 2 out active D. */
static double row_flops(const ir_module *ir, const float *z, bool with_logits)
{
	double f = 0;
	for (int k = 0; k < ir->n_ops; k++) {
		const ir_op *op = &ir->ops[k];
		if (op->in[0] == 0 || (!op->relu && !with_logits))
			continue;
		const ir_op *ip = &ir->ops[op->in[0] - 1];
		int act = 0;
		for (int j = 0; j < ip->out_size; j++)
			act += z[ip->z_off + j] > 0;
		f += 2.0 * op->out_size * act * ir->n_in;
	}
	return f;
}

static void run_cert(bench *b, int32_t norms)
{
	const opts *o = b->o;
	const rt_model *m = b->m;
	int64_t n = o->n < b->data.n ? o->n : b->data.n;
	/* the FLOPs of the explicit gradient rows over these examples (not
	 * timed): what certify with norms 1 or inf computes, logit rows included */
	double flops = 0;
	{
		float *ws = falloc(m->ws_floats), *z = falloc(m->n_hidden + 1), *lg = falloc(m->n_out);
		for (int64_t i = 0; i < n; i++) {
			m->forward(b->P, b->data.x + i * m->n_in, ws, z, lg);
			flops += row_flops(b->ir, z, true);
		}
		free(ws), free(z), free(lg);
	}
	rt_cert *c = calloc((size_t)n, sizeof *c);
	rt_batch bt = { .x = b->data.x, .n = n, .norms = norms | (o->no_prune ? RT_NO_PRUNE : 0),
	                .threads = o->threads, .cert = c };
	if (rt_certify_batch(m, b->P, &bt))   /* warm-up */
		die("rt_certify_batch failed%s", "");
	double rss_before = rss_mb("VmRSS");
	double *rate = calloc((size_t)o->reps, sizeof *rate), *secs = calloc((size_t)o->reps, sizeof *secs);
	perf_ctl(b, "enable");
	for (int r = 0; r < o->reps; r++) {
		double t0 = now();
		if (rt_certify_batch(m, b->P, &bt))
			die("rt_certify_batch failed%s", "");
		secs[r] = now() - t0;
		rate[r] = (double)n / secs[r];
	}
	perf_ctl(b, "disable");
	header(b, norms == RT_ALL_NORMS ? "cert_all" : "cert_l2");
	printf(",\"n\":%lld,\"unit\":\"examples/s\",\"no_prune\":%d,\"flops_rows_per_example\":%.6g", (long long)n,
	       o->no_prune, flops / (double)n);
	print_list("rate", rate, o->reps);
	print_list("secs", secs, o->reps);
	footer(rss_before);
	free(rate);
	free(secs);
	free(c);
}

/* ---- kernel-level breakdown, one thread ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

enum { K_FORWARD, K_TF0, K_TB0, K_TF1, K_TB1, K_OBJ, K_CERT_ALL, K_CERT_FULL, K_CERT_L2, K_GRADS,
       K_PREPARE, K_FINISH, K_OPT, K_N };
static const char *const knames[K_N] = {
	"forward", "train_forward_nosq", "train_backward_nosq", "train_forward_sq", "train_backward_sq",
	"objective_eval_roll", "certify_all", "certify_all_unpruned", "certify_l2", "grads", "prepare",
	"train_finish", "opt_step",
};

static void run_kernels(bench *b)
{
	const rt_model *m = b->m;
	const opts *o = b->o;
	int64_t n = o->n < b->data.n ? o->n : b->data.n;
	const int64_t H = m->n_hidden + 1;
	float *ws = falloc(m->ws_floats), *z = falloc(H), *logits = falloc(m->n_out), *sq = falloc(H);
	float *dl = falloc(m->n_out), *dz = falloc(H), *dsq = falloc(H);
	int64_t gf = m->grad_floats > m->n_params ? m->grad_floats : m->n_params;
	float *grad = falloc(gf), *G = falloc((int64_t)m->n_hidden * m->n_in);
	int32_t *scratch = malloc(sizeof(int32_t) * (size_t)H);
	rt_opt_state os;
	if (rt_opt_init(&os, &OPT, m->n_params))
		die("out of memory%s", "");
	m->prepare(b->P, b->pre);

	double flops_rows = 0, flops_hidden = 0;
	for (int64_t i = 0; i < n; i++) {
		m->forward(b->P, b->data.x + i * m->n_in, ws, z, logits);
		flops_rows += row_flops(b->ir, z, true);
		flops_hidden += row_flops(b->ir, z, false);
	}

	double *t[K_N];
	for (int k = 0; k < K_N; k++)
		t[k] = calloc((size_t)o->reps, sizeof(double));
	rt_cert cert;
	for (int r = 0; r < o->reps; r++) {
		double acc[K_N] = { 0 }, t0, t1;
		for (int64_t i = 0; i < n; i++) {
			const float *x = b->data.x + i * m->n_in;
			t0 = now();
			m->forward(b->P, x, ws, z, logits);
			acc[K_FORWARD] += now() - t0;
		}
		for (int pass = 0; pass < 2; pass++) {
			const rt_objective *obj = pass ? &OBJ_ROLL : &OBJ_VANILLA;
			memset(grad, 0, sizeof(float) * (size_t)gf);
			for (int64_t i = 0; i < n; i++) {
				const float *x = b->data.x + i * m->n_in;
				t0 = now();
				m->train_forward(b->P, b->pre, x, pass, ws, z, logits, sq, NULL);
				t1 = now();
				acc[pass ? K_TF1 : K_TF0] += t1 - t0;
				rt_objective_eval(obj, m, logits, z, sq, b->data.y[i], dl, dz, dsq, NULL, scratch);
				t0 = now();
				if (pass)
					acc[K_OBJ] += t0 - t1;
				m->train_backward(b->P, b->pre, ws, dl, dz, pass ? dsq : NULL, grad);
				acc[pass ? K_TB1 : K_TB0] += now() - t0;
			}
			if (pass) {
				t0 = now();
				m->train_finish(b->P, grad, 0, 1);
				acc[K_FINISH] += now() - t0;
			}
		}
		for (int64_t i = 0; i < n; i++) {
			const float *x = b->data.x + i * m->n_in;
			t0 = now();
			m->certify(b->P, b->pre, x, RT_ALL_NORMS, ws, z, logits, &cert, NULL);
			t1 = now();
			m->certify(b->P, b->pre, x, RT_NORM_BIT(RT_L2), ws, z, logits, &cert, NULL);
			acc[K_CERT_L2] += now() - t1;
			acc[K_CERT_ALL] += t1 - t0;
			t0 = now();
			m->certify(b->P, b->pre, x, RT_ALL_NORMS | RT_NO_PRUNE, ws, z, logits, &cert, NULL);
			acc[K_CERT_FULL] += now() - t0;
		}
		for (int64_t i = 0; i < n; i++) {
			const float *x = b->data.x + i * m->n_in;
			m->forward(b->P, x, ws, z, logits);
			t0 = now();
			m->grads(b->P, z, G, ws);
			acc[K_GRADS] += now() - t0;
		}
		/* per-batch costs: repeated to get above the clock's resolution */
		const int rep_small = 20;
		t0 = now();
		for (int s = 0; s < rep_small; s++)
			m->prepare(b->P, b->pre);
		acc[K_PREPARE] = (now() - t0) / rep_small;
		/* scale the gradient down so repeated steps keep P sane */
		for (int64_t i = 0; i < m->n_params; i++)
			grad[i] *= 1e-6f;
		t0 = now();
		for (int s = 0; s < rep_small; s++)
			rt_opt_step(&OPT, &os, OPT.lr, b->P, grad);
		acc[K_OPT] = (now() - t0) / rep_small;
		m->prepare(b->P, b->pre);
		for (int k = 0; k < K_N; k++)
			t[k][r] = acc[k];
	}
	header(b, "kernels");
	printf(",\"n\":%lld,\"per\":{", (long long)n);
	for (int k = 0; k < K_N; k++) {
		double med = median(t[k], o->reps);
		/* per-example kernels in microseconds per example, per-batch ones per call */
		bool per_batch = k == K_PREPARE || k == K_FINISH || k == K_OPT;
		printf("%s\"%s\":%.3f", k ? "," : "", knames[k], per_batch ? 1e6 * med : 1e6 * med / (double)n);
	}
	printf("},\"per_unit\":{");
	for (int k = 0; k < K_N; k++) {
		bool per_batch = k == K_PREPARE || k == K_FINISH || k == K_OPT;
		printf("%s\"%s\":\"%s\"", k ? "," : "", knames[k], per_batch ? "us/call" : "us/example");
	}
	double cert_s = 0, full_s = 0, grads_s = 0;
	{
		double u[o->reps], v[o->reps], w[o->reps];
		for (int r = 0; r < o->reps; r++)
			u[r] = t[K_CERT_FULL][r], v[r] = t[K_CERT_ALL][r], w[r] = t[K_GRADS][r];
		full_s = median(u, o->reps);
		cert_s = median(v, o->reps);
		grads_s = median(w, o->reps);
	}
	printf("},\"ws_mb\":%.2f,\"pre_mb\":%.2f,\"grad_mb\":%.2f,\"n_params\":%lld", 4e-6 * (double)m->ws_floats,
	       4e-6 * (double)m->pre_floats, 4e-6 * (double)gf, (long long)m->n_params);
	printf(",\"flops_rows_per_example\":%.6g,\"flops_hidden_rows_per_example\":%.6g",
	       flops_rows / (double)n, flops_hidden / (double)n);
	/* the kernels' rate: every row formed (pruning forms fewer, so the
	 * pruned certify's "rate" over the same FLOPs is an effective one) */
	printf(",\"gflops_certify_all\":%.4f,\"gflops_certify_all_effective\":%.4f,\"gflops_grads\":%.4f",
	       1e-9 * flops_rows / full_s, 1e-9 * flops_rows / cert_s, 1e-9 * flops_hidden / grads_s);
	footer(-1);
	for (int k = 0; k < K_N; k++)
		free(t[k]);
	rt_opt_free(&os);
	free(ws), free(z), free(logits), free(sq), free(dl), free(dz), free(dsq), free(grad), free(G);
	free(scratch);
}

/* ---- compile-time breakdown: what `llnc build --certifier` does, by stage ---- */
static void run_compile(const opts *o)
{
	enum { FRONT, GEN, EMIT, LINK, TOTAL, NS };
	static const char *const names[NS] = { "front_end", "cg_generate", "cg_emit_object", "cg_link", "total" };
	double *t[NS];
	for (int k = 0; k < NS; k++)
		t[k] = calloc((size_t)o->reps, sizeof(double));
	char err[RT_ERRLEN];
	int64_t ir_insts = 0, fcount[32];
	char fname[32][64];
	int nfn = 0;
	for (int r = 0; r < o->reps; r++) {
		double t0 = now();
		arena *a = arena_new();
		source *src = source_load(a, o->model);
		ast_program *ast = src ? ast_parse(a, src) : NULL;
		sema_program *prog = ast ? sema_check(a, ast) : NULL;
		ir_module *ir = prog ? ir_lower(a, prog) : NULL;
		if (!ir)
			die("%s does not compile", o->model);
		float *P = falloc(ir->n_params);
		if (rt_params_load(ir->tensors, ir->n_tensors, o->weights, P, err))
			die("%s", err);
		double t1 = now();
		cg_options co = { .opt_level = 3, .certifier = true };
		cg_unit *u = cg_generate(ir, &co, err);
		if (!u)
			die("%s", err);
		double t2 = now();
		ir_insts = 0;
		nfn = 0;
		for (LLVMValueRef f = LLVMGetFirstFunction(u->mod); f; f = LLVMGetNextFunction(f)) {
			int64_t c = 0;
			for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(f); bb; bb = LLVMGetNextBasicBlock(bb))
				for (LLVMValueRef i = LLVMGetFirstInstruction(bb); i; i = LLVMGetNextInstruction(i))
					c++;
			ir_insts += c;
			if (c && nfn < 32) {
				size_t len;
				const char *nm = LLVMGetValueName2(f, &len);
				snprintf(fname[nfn], sizeof fname[nfn], "%.*s", (int)len, nm);
				fcount[nfn++] = c;
			}
		}
		char exe[] = "/tmp/lln_bench-XXXXXX";
		int fe = mkstemp(exe);
		if (fe < 0)
			die("cannot create temporary files%s", "");
		close(fe);
		double t3 = now();
		LLVMMemoryBufferRef obj = cg_emit_object(u, err);
		if (!obj)
			die("%s", err);
		double t4 = now();
		cg_exe e = { CG_CERTIFIER, NULL, P, ir->n_params, NULL };
		if (cg_build_exe(obj, &e, exe, err))
			die("%s", err);
		double t5 = now();
		LLVMDisposeMemoryBuffer(obj);
		unlink(exe);
		cg_unit_free(u);
		free(P);
		arena_free(a);
		t[FRONT][r] = t1 - t0, t[GEN][r] = t2 - t1, t[EMIT][r] = t4 - t3, t[LINK][r] = t5 - t4;
		t[TOTAL][r] = t5 - t0 - (t3 - t2);
	}
	printf("{\"side\":\"lln\",\"mode\":\"compile\",\"threads\":1,\"optimized_ir_instructions\":%lld,\"median_s\":{",
	       (long long)ir_insts);
	for (int k = 0; k < NS; k++)
		printf("%s\"%s\":%.4f", k ? "," : "", names[k], median(t[k], o->reps));
	printf("},\"ir_instructions_by_function\":{");
	for (int k = 0; k < nfn; k++)
		printf("%s\"%s\":%lld", k ? "," : "", fname[k], (long long)fcount[k]);
	printf("}");
	footer(-1);
	for (int k = 0; k < NS; k++)
		free(t[k]);
}

/* --perf-map 1: /tmp/perf-PID.map names the JIT-compiled kernels and the
 * matrix products they call (lln_gemm_N) for `perf report`, which
 * otherwise shows them as bare addresses.  Each is taken to reach up to the
 * next one's start (the last: 1 MiB). */
enum { KERNELS = 18, MAX_GEMMS = 64 };   /* the kernels named below; products at most */
static void write_perf_map(const rt_model *m, cg_unit *u)
{
	struct { const char *name; uintptr_t at; } k[KERNELS + MAX_GEMMS] = {
		{ "lln_prepare", (uintptr_t)m->prepare }, { "lln_forward", (uintptr_t)m->forward },
		{ "lln_grads", (uintptr_t)m->grads }, { "lln_certify", (uintptr_t)m->certify },
		{ "lln_direction", (uintptr_t)m->direction }, { "lln_train_forward", (uintptr_t)m->train_forward },
		{ "lln_train_backward", (uintptr_t)m->train_backward }, { "lln_train_finish", (uintptr_t)m->train_finish },
		{ "lln_input_grad", (uintptr_t)m->input_grad },
		{ "lln_train_batch_forward", (uintptr_t)m->train_batch_forward },
		{ "lln_train_batch_backward", (uintptr_t)m->train_batch_backward },
		{ "lln_train_batch_weights", (uintptr_t)m->train_batch_weights },
		{ "lln_train_gram", (uintptr_t)m->train_gram },
		{ "lln_train_gram_backward", (uintptr_t)m->train_gram_backward },
		{ "lln_train_prepare", (uintptr_t)m->train_prepare },
		{ "lln_train_batch_tangents", (uintptr_t)m->train_batch_tangents },
		{ "lln_train_batch_tangents_backward", (uintptr_t)m->train_batch_tangents_backward },
		{ "lln_train_batch_tangent_weights", (uintptr_t)m->train_batch_tangent_weights },
	};
	static char gemm_names[MAX_GEMMS][16];
	for (int i = 0; i < MAX_GEMMS; i++) {
		LLVMOrcExecutorAddress at = 0;
		snprintf(gemm_names[i], sizeof gemm_names[i], "lln_gemm_%d", i);
		LLVMErrorRef e = LLVMOrcLLJITLookup(u->jit, &at, gemm_names[i]);
		if (e) {
			LLVMConsumeError(e);
			break;
		}
		k[KERNELS + i].name = gemm_names[i], k[KERNELS + i].at = (uintptr_t)at;
	}
	int n = 0;   /* the kernels and products the model has */
	for (size_t i = 0; i < sizeof k / sizeof *k; i++)
		if (k[i].at)
			k[n++] = k[i];
	for (int i = 1; i < n; i++)   /* insertion sort by address */
		for (int j = i; j > 0 && k[j].at < k[j - 1].at; j--) {
			__typeof__(k[0]) t = k[j];
			k[j] = k[j - 1];
			k[j - 1] = t;
		}
	char path[64];
	snprintf(path, sizeof path, "/tmp/perf-%d.map", (int)getpid());
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	for (int i = 0; i < n; i++)
		fprintf(f, "%lx %lx %s\n", (unsigned long)k[i].at,
		        (unsigned long)(i + 1 < n ? k[i + 1].at - k[i].at : 1 << 20), k[i].name);
	fclose(f);
}

int main(int argc, char **argv)
{
	opts o;
	parse(argc, argv, &o);
	if (!strcmp(o.mode, "compile")) {
		run_compile(&o);
		return 0;
	}
	bench b = { .o = &o };
	char err[RT_ERRLEN];
	OBJ_ROLL.lambda = o.lambda;
	OBJ_ROLL.C = o.C;
	if (o.adam)
		OPT = ADAM_CNN;

	double t0 = now();
	arena *a = arena_new();
	source *src = source_load(a, o.model);
	ast_program *ast = src ? ast_parse(a, src) : NULL;
	sema_program *prog = ast ? sema_check(a, ast) : NULL;
	ir_module *ir = prog ? ir_lower(a, prog) : NULL;
	if (!ir)
		die("%s does not compile", o.model);
	cg_options co = { .opt_level = 3 };
	cg_unit *u = cg_generate(ir, &co, err);
	const rt_model *m = u ? cg_jit(u, err) : NULL;
	if (!m)
		die("%s", err);
	b.jit_s = now() - t0;
	if (o.perf_map)
		write_perf_map(m, u);
	b.ir = ir;
	b.m = m;

	b.P = falloc(m->n_params);
	b.pre = falloc(m->pre_floats);
	if (rt_params_load(ir->tensors, ir->n_tensors, o.weights, b.P, err))
		die("%s", err);
	if (rt_data_read(o.x, m->n_in, false, &b.data, err))
		die("%s", err);
	int64_t ny;
	if (rt_labels_read(o.y, b.data.n, &b.data.y, &ny, err))
		die("%s", err);

	if (!strcmp(o.mode, "check"))
		run_check(&b);
	else if (!strcmp(o.mode, "vanilla"))
		run_train(&b, false);
	else if (!strcmp(o.mode, "roll"))
		run_train(&b, true);
	else if (!strcmp(o.mode, "cert_all"))
		run_cert(&b, RT_ALL_NORMS);
	else if (!strcmp(o.mode, "cert_l2"))
		run_cert(&b, RT_NORM_BIT(RT_L2));
	else if (!strcmp(o.mode, "kernels"))
		run_kernels(&b);
	else
		usage();

	rt_data_free(&b.data);
	free(b.P);
	free(b.pre);
	cg_unit_free(u);
	arena_free(a);
	return 0;
}
