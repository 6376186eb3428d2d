/* train.c: the training loop and the `train` / `eval` command lines.
 *
 * One epoch: shuffle the training examples with a permutation seeded by
 * (seed, epoch), then for each batch compute the mean gradient of the
 * objective across threads (rt_batch_grad) and take one optimizer step.
 * After the epoch the held-out validation examples are evaluated; the
 * weights with the best validation loss go to OUT, and a checkpoint (weights,
 * optimizer state, best weights, epoch counters as metadata) is written so
 * that a run can be resumed.  Every random choice derives from the seed and
 * the epoch number alone, so training 2 epochs equals training 1 and
 * resuming for 1, bit for bit, and two runs with the same seed and thread
 * count write identical files.
 *
 * Options come from two lists: the defaults llnc derives from the .lln file
 * (one argument per line) and then the command line, which overrides them.
 * Everything given is checked before any training starts, and all output
 * files are written atomically.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rt.h"

/* ------------------------------------------------------------------------
 * Batch gradients
 * ---------------------------------------------------------------------- */
typedef struct gthread {
	float *ws, *z, *logits, *sq, *dlogits, *dz, *dsq, *grad;
	int32_t *scratch, *axes;   /* axes: approximate ROLL's draw */
} gthread;

struct rt_grad_ctx {
	const rt_model *m;
	int threads;
	gthread *t;
	double *loss, *ce;   /* per example of the batch */
	int64_t cap;
};

typedef struct gjob {
	rt_grad_ctx *c;
	gthread *t;
	const rt_objective *o;
	const float *P, *pre, *X;
	const int32_t *y;
	const int64_t *idx;
	int64_t begin, end;
	pthread_t tid;
	bool started;
} gjob;

void rt_grad_ctx_free(rt_grad_ctx *c)
{
	if (!c)
		return;
	for (int i = 0; c->t && i < c->threads; i++) {
		gthread *t = &c->t[i];
		free(t->ws);
		free(t->z);
		free(t->logits);
		free(t->sq);
		free(t->dlogits);
		free(t->dz);
		free(t->dsq);
		free(t->grad);
		free(t->scratch);
		free(t->axes);
	}
	free(c->t);
	free(c->loss);
	free(c->ce);
	free(c);
}

rt_grad_ctx *rt_grad_ctx_new(const rt_model *m, int threads)
{
	rt_grad_ctx *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->m = m;
	c->threads = threads > 0 ? threads : rt_ncpus();
	c->t = calloc((size_t)c->threads, sizeof *c->t);
	if (!c->t) {
		free(c);
		return NULL;
	}
	const int64_t H = m->n_hidden + 1;
	for (int i = 0; i < c->threads; i++) {
		gthread *t = &c->t[i];
		t->ws = rt_alloc_floats(m->ws_floats);
		t->z = rt_alloc_floats(H);
		t->logits = rt_alloc_floats(m->n_out);
		t->sq = rt_alloc_floats(H);
		t->dlogits = rt_alloc_floats(m->n_out);
		t->dz = rt_alloc_floats(H);
		t->dsq = rt_alloc_floats(H);
		t->grad = rt_alloc_floats(m->grad_floats > m->n_params ? m->grad_floats : m->n_params);
		t->scratch = malloc(sizeof(int32_t) * (size_t)H);
		t->axes = malloc(sizeof(int32_t) * (size_t)(m->samples + 1));
		if (!t->ws || !t->z || !t->logits || !t->sq || !t->dlogits || !t->dz || !t->dsq ||
		    !t->grad || !t->scratch || !t->axes) {
			rt_grad_ctx_free(c);
			return NULL;
		}
	}
	return c;
}

static void *grad_share(void *arg)
{
	gjob *j = arg;
	const rt_model *m = j->c->m;
	gthread *t = j->t;
	int64_t gf = m->grad_floats > m->n_params ? m->grad_floats : m->n_params;
	memset(t->grad, 0, sizeof(float) * (size_t)gf);
	const bool need_sq = rt_objective_needs_sq(j->o);
	for (int64_t i = j->begin; i < j->end; i++) {
		int64_t r = j->idx ? j->idx[i] : i;
		if (need_sq && m->samples)
			rt_sample_axes(j->o->sample_seed, (uint64_t)r, m->n_in, m->samples, t->axes);
		m->train_forward(j->P, j->pre, j->X + r * m->n_in, need_sq, t->ws, t->z, t->logits, t->sq, t->axes);
		j->c->loss[i] = rt_objective_eval(j->o, m, t->logits, t->z, t->sq, j->y[r], t->dlogits,
		                                  t->dz, t->dsq, &j->c->ce[i], t->scratch);
		m->train_backward(j->P, j->pre, t->ws, t->dlogits, t->dz, need_sq ? t->dsq : NULL, t->grad);
	}
	return NULL;
}

int rt_batch_grad_ctx(rt_grad_ctx *c, const rt_objective *o, const float *P, const float *pre,
                      const float *X, const int32_t *y, const int64_t *idx, int64_t nb,
                      float *grad, double *loss, double *ce)
{
	const rt_model *m = c->m;
	if (nb <= 0)
		return -1;
	if (nb > c->cap) {
		double *l = realloc(c->loss, sizeof(double) * (size_t)nb);
		if (l)
			c->loss = l;
		double *e = realloc(c->ce, sizeof(double) * (size_t)nb);
		if (e)
			c->ce = e;
		if (!l || !e)
			return -1;
		c->cap = nb;
	}
	int threads = c->threads < nb ? c->threads : (int)nb;
	gjob jobs[threads];
	for (int t = 0; t < threads; t++) {
		jobs[t] = (gjob){ .c = c, .t = &c->t[t], .o = o, .P = P, .pre = pre, .X = X, .y = y,
		                  .idx = idx, .begin = nb * t / threads, .end = nb * (t + 1) / threads };
		if (t < threads - 1)
			jobs[t].started = pthread_create(&jobs[t].tid, NULL, grad_share, &jobs[t]) == 0;
	}
	for (int t = threads - 1; t >= 0; t--) {
		if (jobs[t].started)
			pthread_join(jobs[t].tid, NULL);
		else
			grad_share(&jobs[t]);
	}
	/* fixed order: thread 0's sum, plus thread 1's, ...; the accumulators
	 * past n_params hold only the Gram terms of sq-based objectives */
	const bool need_sq = rt_objective_needs_sq(o);
	int64_t gf = need_sq && m->grad_floats > m->n_params ? m->grad_floats : m->n_params;
	float *g0 = c->t[0].grad;
	for (int t = 1; t < threads; t++) {
		const float *gt = c->t[t].grad;
		for (int64_t i = 0; i < gf; i++)
			g0[i] += gt[i];
	}
	if (need_sq)
		m->train_finish(P, g0);
	const float inv = (float)nb;
	for (int64_t i = 0; i < m->n_params; i++)
		grad[i] = g0[i] / inv;
	double sl = 0, sc = 0;
	for (int64_t i = 0; i < nb; i++) {
		sl += c->loss[i];
		sc += c->ce[i];
	}
	if (loss)
		*loss = sl / (double)nb;
	if (ce)
		*ce = sc / (double)nb;
	return 0;
}

int rt_batch_grad(const rt_model *m, const rt_objective *o, const float *P, const float *pre,
                  const float *X, const int32_t *y, const int64_t *idx, int64_t nb, int threads,
                  float *grad, double *loss, double *ce)
{
	if (threads <= 0)
		threads = rt_ncpus();
	if (threads > nb)
		threads = nb > 0 ? (int)nb : 1;
	rt_grad_ctx *c = rt_grad_ctx_new(m, threads);
	if (!c)
		return -1;
	int rc = rt_batch_grad_ctx(c, o, P, pre, X, y, idx, nb, grad, loss, ce);
	rt_grad_ctx_free(c);
	return rc;
}

/* ------------------------------------------------------------------------
 * Options
 * ---------------------------------------------------------------------- */
enum { MODE_TRAIN = 1, MODE_EVAL = 2 };

typedef struct config {
	const char *prog;
	int mode;
	const char *data, *test, *out, *init, *resume, *checkpoint, *log, *weights;
	const char *source;     /* the .lln file (from the defaults only), never an output */
	bool data_cli;          /* --data came from the command line */
	int epochs, batch, threads, distance_p;
	int64_t valid;
	uint64_t seed;
	int32_t norms;          /* evaluation norms */
	int loss;               /* -1: from the model (one logit: sigmoid), 0 softmax, 1 sigmoid */
	rt_optimizer opt;
	rt_objective obj;
	rt_init_scheme init_scheme;   /* fresh weights (not --init, not --resume) */
	bool json, help;
	bool per_example;       /* eval --json: every example's margins too */
	bool in_defaults;       /* parsing the .lln defaults (for messages) */
	rt_names names;         /* --rename, --strip-prefix: for --init and --weights */
	bool distortion;        /* eval --distortion EPS */
	rt_distortion_opts dist;
} config;

static void config_init(config *c, const char *prog, int mode)
{
	memset(c, 0, sizeof *c);
	c->prog = prog;
	c->mode = mode;
	c->epochs = 10;
	c->batch = 64;
	c->dist = (rt_distortion_opts){ .lo = 0, .hi = 1, .samples = 100, .population = 32, .mutation = 0.05 };
	c->distance_p = 2;
	c->norms = RT_ALL_NORMS;
	c->loss = -1;
	c->opt = (rt_optimizer){ .kind = RT_SGD, .lr = 0.01, .momentum = 0, .beta1 = 0.9,
	                         .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0, .nesterov = false,
	                         .lr_step = 0, .lr_gamma = 0.1 };
	c->obj = (rt_objective){ .kind = RT_OBJ_VANILLA, .lambda = 1, .C = 1, .gamma = 100 };
}

static int usage_fail(const config *c, const char *fmt, ...)
{
	fprintf(stderr, "%s: ", c->prog);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (c->in_defaults)
		fputs(" (in the settings from the .lln file)", stderr);
	fputc('\n', stderr);
	return 2;
}

#define user_fail(c, ...) rt_cmd_fail((c)->prog, 1, __VA_ARGS__)

typedef enum { R_ANY, R_GT0, R_GE0, R_UNIT, R_GAMMA } range;

static const char *range_text[] = {
	[R_ANY] = "a number", [R_GT0] = "> 0", [R_GE0] = ">= 0", [R_UNIT] = "in [0, 1)",
	[R_GAMMA] = "in (0, 100]",
};

static int get_num(const config *c, const char *flag, const char *v, range r, double *out)
{
	char *end;
	errno = 0;
	double x = strtod(v, &end);
	if (end == v || *end || !isfinite(x))
		return usage_fail(c, "%s takes a number, got '%s'", flag, v);
	bool ok = r == R_ANY || (r == R_GT0 && x > 0) || (r == R_GE0 && x >= 0) ||
	          (r == R_UNIT && x >= 0 && x < 1) || (r == R_GAMMA && x > 0 && x <= 100);
	if (!ok)
		return usage_fail(c, "%s must be %s, got %s", flag, range_text[r], v);
	*out = x;
	return 0;
}

static int get_int(const config *c, const char *flag, const char *v, long long lo, long long hi,
                   long long *out)
{
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (end == v || *end || errno) {
		double d;
		char *e2;
		d = strtod(v, &e2);
		if (e2 != v && !*e2 && isfinite(d)) {
			if (d < (double)lo)
				return usage_fail(c, "%s must be >= %lld, got %s", flag, lo, v);
			return usage_fail(c, "%s must be an integer, got %s", flag, v);
		}
		return usage_fail(c, "%s takes an integer, got '%s'", flag, v);
	}
	if (x < lo || x > hi) {
		if (hi == LLONG_MAX || x < lo)
			return x < lo ? usage_fail(c, "%s must be >= %lld, got %s", flag, lo, v)
			              : usage_fail(c, "%s must be <= %lld, got %s", flag, hi, v);
		return usage_fail(c, "%s must be from %lld to %lld, got %s", flag, lo, hi, v);
	}
	*out = x;
	return 0;
}

/* Which flags each command takes on its command line (the defaults may hold
 * any of them). */
typedef struct flag {
	const char *name;
	int modes;
	bool has_value;
} flag;

static const flag flags[] = {
	{ "--data", MODE_TRAIN | MODE_EVAL, true }, { "--test", MODE_TRAIN, true },
	{ "--epochs", MODE_TRAIN, true }, { "--batch", MODE_TRAIN, true },
	{ "--lr", MODE_TRAIN, true }, { "--momentum", MODE_TRAIN, true },
	{ "--nesterov", MODE_TRAIN, true }, { "--optimizer", MODE_TRAIN, true },
	{ "--beta1", MODE_TRAIN, true }, { "--beta2", MODE_TRAIN, true },
	{ "--eps", MODE_TRAIN, true }, { "--weight-decay", MODE_TRAIN, true },
	{ "--lr-step", MODE_TRAIN, true }, { "--lr-gamma", MODE_TRAIN, true },
	{ "--objective", MODE_TRAIN | MODE_EVAL, true }, { "--loss", MODE_TRAIN | MODE_EVAL, true },
	{ "--lambda", MODE_TRAIN | MODE_EVAL, true }, { "--C", MODE_TRAIN | MODE_EVAL, true },
	{ "--gamma", MODE_TRAIN | MODE_EVAL, true }, { "--p", MODE_TRAIN | MODE_EVAL, true },
	{ "--valid", MODE_TRAIN, true }, { "--seed", MODE_TRAIN | MODE_EVAL, true },
	{ "--distortion", MODE_EVAL, true }, { "--samples", MODE_EVAL, true }, { "--search", MODE_EVAL, true },
	{ "--population", MODE_EVAL, true }, { "--mutation", MODE_EVAL, true }, { "--clip", MODE_EVAL, true },
	{ "--threads", MODE_TRAIN | MODE_EVAL, true }, { "--init", MODE_TRAIN, true },
	{ "--init-scheme", MODE_TRAIN, true },
	{ "--resume", MODE_TRAIN, true }, { "--checkpoint", MODE_TRAIN, true },
	{ "--log", MODE_TRAIN, true }, { "--eval-norms", MODE_TRAIN, true },
	{ "--source", 0, true },
	{ "--norms", MODE_EVAL, true }, { "-o", MODE_TRAIN, true },
	{ "--weights", MODE_EVAL, true }, { "--json", MODE_EVAL, false },
	{ "--per-example", MODE_EVAL, false },
	{ "--rename", MODE_TRAIN | MODE_EVAL, true }, { "--strip-prefix", MODE_TRAIN | MODE_EVAL, true },
	{ "--help", MODE_TRAIN | MODE_EVAL, false }, { "-h", MODE_TRAIN | MODE_EVAL, false },
};

static int set_option(config *c, const char *a, const char *v)
{
	double d;
	long long k;
	int rc;
#define NUM(name, r, dst) \
	if (strcmp(a, name) == 0) { \
		if ((rc = get_num(c, a, v, r, &d))) \
			return rc; \
		dst = d; \
		return 0; \
	}
#define INT(name, lo, hi, dst) \
	if (strcmp(a, name) == 0) { \
		if ((rc = get_int(c, a, v, lo, hi, &k))) \
			return rc; \
		dst = k; \
		return 0; \
	}
	NUM("--lr", R_GT0, c->opt.lr)
	NUM("--momentum", R_GE0, c->opt.momentum)
	NUM("--beta1", R_UNIT, c->opt.beta1)
	NUM("--beta2", R_UNIT, c->opt.beta2)
	NUM("--eps", R_GE0, c->opt.eps)
	NUM("--weight-decay", R_GE0, c->opt.weight_decay)
	NUM("--lr-gamma", R_GT0, c->opt.lr_gamma)
	NUM("--lambda", R_GE0, c->obj.lambda)
	NUM("--C", R_GE0, c->obj.C)
	NUM("--gamma", R_GAMMA, c->obj.gamma)
	INT("--epochs", 1, 1000000000, c->epochs)
	INT("--batch", 1, 1000000000, c->batch)
	INT("--lr-step", 0, 1000000000, c->opt.lr_step)
	INT("--valid", 0, LLONG_MAX, c->valid)
	INT("--threads", 0, 1024, c->threads)
	NUM("--mutation", R_UNIT, c->dist.mutation)
	INT("--samples", 1, 100000000, c->dist.samples)
	INT("--search", 0, 100000000, c->dist.generations)
	INT("--population", 2, 100000000, c->dist.population)
#undef NUM
#undef INT
	if (strcmp(a, "--distortion") == 0) {
		if ((rc = get_num(c, a, v, R_GE0, &d)))
			return rc;
		c->dist.eps = d;
		c->distortion = true;
	} else if (strcmp(a, "--clip") == 0) {
		char *end;
		if (strcmp(v, "none") == 0) {
			c->dist.lo = 1;
			c->dist.hi = 0;
			return 0;
		}
		double lo = strtod(v, &end), hi;
		if (end == v || *end != ',' || (hi = strtod(end + 1, &end), *end) || !(lo <= hi) || !isfinite(lo) ||
		    !isfinite(hi))
			return usage_fail(c, "--clip takes LO,HI with LO <= HI, or none; got '%s'", v);
		c->dist.lo = lo;
		c->dist.hi = hi;
	} else if (strcmp(a, "--seed") == 0) {
		char *end;
		errno = 0;
		unsigned long long s = strtoull(v, &end, 10);
		if (v[0] < '0' || v[0] > '9' || *end || errno)
			return usage_fail(c, "--seed takes an integer from 0 to 18446744073709551615, got '%s'", v);
		c->seed = s;
	} else if (strcmp(a, "--nesterov") == 0) {
		if (strcmp(v, "on") == 0 || strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
			c->opt.nesterov = true;
		else if (strcmp(v, "off") == 0 || strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
			c->opt.nesterov = false;
		else
			return usage_fail(c, "--nesterov takes on or off, got '%s'", v);
	} else if (strcmp(a, "--optimizer") == 0) {
		if (strcmp(v, "sgd") == 0)
			c->opt.kind = RT_SGD;
		else if (strcmp(v, "adam") == 0)
			c->opt.kind = RT_ADAM;
		else if (strcmp(v, "amsgrad") == 0)
			c->opt.kind = RT_AMSGRAD;
		else
			return usage_fail(c, "--optimizer takes sgd, adam or amsgrad, got '%s'", v);
	} else if (strcmp(a, "--objective") == 0) {
		if (strcmp(v, "vanilla") == 0 || strcmp(v, "none") == 0)
			c->obj.kind = RT_OBJ_VANILLA;
		else if (strcmp(v, "roll") == 0)
			c->obj.kind = RT_OBJ_ROLL;
		else if (strcmp(v, "distance") == 0)
			c->obj.kind = RT_OBJ_DISTANCE;
		else
			return usage_fail(c, "--objective takes vanilla, roll or distance, got '%s'", v);
	} else if (strcmp(a, "--loss") == 0) {
		if (strcmp(v, "cross_entropy") == 0)
			c->loss = 0;
		else if (strcmp(v, "sigmoid_cross_entropy") == 0)
			c->loss = 1;
		else
			return usage_fail(c, "--loss takes cross_entropy or sigmoid_cross_entropy, got '%s'", v);
	} else if (strcmp(a, "--p") == 0) {
		if (strcmp(v, "1") == 0)
			c->distance_p = 1;
		else if (strcmp(v, "2") == 0)
			c->distance_p = 2;
		else if (strcmp(v, "inf") == 0)
			c->distance_p = 0;
		else
			return usage_fail(c, "--p takes 1, 2 or inf, got '%s'", v);
	} else if (strcmp(a, "--eval-norms") == 0 || strcmp(a, "--norms") == 0) {
		if (rt_parse_norms(v, &c->norms) != 0)
			return usage_fail(c, "%s takes a comma-separated list of 1, 2, inf; got '%s'", a, v);
	} else if (strcmp(a, "--data") == 0) {
		c->data = v;
		c->data_cli = !c->in_defaults;
	} else if (strcmp(a, "--test") == 0) {
		c->test = v;
	} else if (strcmp(a, "--init") == 0) {
		c->init = v;
	} else if (strcmp(a, "--init-scheme") == 0) {
		if (rt_init_parse(v, &c->init_scheme) != 0)
			return usage_fail(c, "--init-scheme takes pytorch or he, got '%s'", v);
	} else if (strcmp(a, "--resume") == 0) {
		c->resume = v;
	} else if (strcmp(a, "--checkpoint") == 0) {
		c->checkpoint = v;
	} else if (strcmp(a, "--log") == 0) {
		c->log = v;
	} else if (strcmp(a, "--source") == 0) {
		c->source = v;
	} else if (strcmp(a, "-o") == 0) {
		c->out = v;
	} else if (strcmp(a, "--weights") == 0) {
		c->weights = v;
	} else if (strcmp(a, "--rename") == 0 || strcmp(a, "--strip-prefix") == 0) {
		char err[RT_ERRLEN];
		if (rt_names_flag(&c->names, a, v, err))
			return usage_fail(c, "%s", err);
	} else {
		return usage_fail(c, "internal error: option %s has no handler", a);
	}
	return 0;
}

/* Parses args[0..n); the defaults list may hold any flag, the command line
 * only its command's. */
static int parse_list(config *c, char **args, int n, bool defaults)
{
	c->in_defaults = defaults;
	for (int i = 0; i < n; i++) {
		const char *a = args[i];
		const flag *f = NULL;
		for (size_t j = 0; j < sizeof flags / sizeof *flags; j++)
			if (strcmp(a, flags[j].name) == 0 && (defaults || (flags[j].modes & c->mode)))
				f = &flags[j];
		if (!f) {
			if (a[0] == '-' && a[1])
				return usage_fail(c, "unknown option '%s' (see --help)", a);
			return usage_fail(c, "unexpected argument '%s' (see --help)", a);
		}
		if (!f->has_value) {
			if (strcmp(a, "--json") == 0)
				c->json = true;
			else if (strcmp(a, "--per-example") == 0)
				c->per_example = true;
			else if (!defaults) {
				c->help = true;
				break;
			}
			continue;
		}
		if (i + 1 >= n)
			return usage_fail(c, "%s needs a value", a);
		int rc = set_option(c, a, args[++i]);
		if (rc)
			return rc;
	}
	c->in_defaults = false;
	return 0;
}

static int parse_all(config *c, const char *defaults, char **dcopy, int argc, char **argv)
{
	*dcopy = NULL;
	if (defaults && defaults[0]) {
		char *s = strdup(defaults);
		if (!s)
			return user_fail(c, "out of memory");
		*dcopy = s;
		int n = 1;
		for (const char *p = s; *p; p++)
			n += *p == '\n';
		char **list = malloc(sizeof(char *) * (size_t)n);
		if (!list)
			return user_fail(c, "out of memory");
		int k = 0;
		for (char *save = NULL, *tok = strtok_r(s, "\n", &save); tok; tok = strtok_r(NULL, "\n", &save))
			list[k++] = tok;
		int rc = parse_list(c, list, k, true);
		free(list);
		if (rc)
			return rc;
	}
	return parse_list(c, argv + 1, argc > 0 ? argc - 1 : 0, false);
}

static const char *opt_name(rt_opt_kind k)
{
	return k == RT_SGD ? "sgd" : k == RT_ADAM ? "adam" : "amsgrad";
}

static const char *obj_name(rt_obj_kind k)
{
	return k == RT_OBJ_ROLL ? "roll" : k == RT_OBJ_DISTANCE ? "distance" : "vanilla";
}

static const char *norms_text(int32_t norms, char *buf, size_t cap)
{
	static const char *names[RT_NNORMS] = { "1", "2", "inf" };
	buf[0] = 0;
	for (int p = 0; p < RT_NNORMS; p++)
		if (norms & RT_NORM_BIT(p)) {
			size_t l = strlen(buf);
			snprintf(buf + l, cap - l, "%s%s", l ? "," : "", names[p]);
		}
	return buf;
}

static bool model_sigmoid(const rt_model *m, const config *c)
{
	return c->loss >= 0 ? c->loss == 1 : m->n_out == 1;
}

static void train_usage(FILE *f, const rt_model *m, const config *c)
{
	char nb[32];
	const char *none = "(none)";
	fprintf(f,
		"usage: %s [options] -o OUT.safetensors\n"
		"\n"
		"Trains the model '%s' (%d inputs, %d outputs, %d hidden neurons, %lld parameters)\n"
		"and writes the weights with the best validation loss (or, with --valid 0, the\n"
		"final weights) to OUT.  Values in brackets are the current settings: those of\n"
		"the .lln file, overridden by the options before --help.\n"
		"\n"
		"data:\n"
		"  --data FILE[,LABELS]  training examples: labeled CSV (label in the first column),\n"
		"                        or examples and labels files (IDX, .npy, CSV), or a built-in\n"
		"                        data set: toy2d:kind=spirals|moons,n=N,noise=X,seed=S [%s]\n"
		"  --test FILE[,LABELS]  test set, evaluated once at the end [%s]\n"
		"  --valid N             training examples held out for validation [%lld]\n"
		"objective:\n"
		"  --objective K         vanilla, roll or distance [%s]\n"
		"  --loss L              cross_entropy or sigmoid_cross_entropy [%s]\n"
		"  --lambda X            regularizer weight [%g]\n"
		"  --C X                 roll: weight of the hinge max(0, 1 - |z|) [%g]\n"
		"  --gamma X             roll: percent of neurons with the largest terms [%g]\n"
		"  --p P                 distance: norm of the margin (only 2 trains) [%s]\n"
		"optimization:\n"
		"  --optimizer O         sgd, adam or amsgrad [%s]\n"
		"  --lr X                learning rate [%g]\n"
		"  --momentum X          sgd momentum [%g]\n"
		"  --nesterov on|off     sgd Nesterov momentum [%s]\n"
		"  --beta1 X             adam [%g]\n"
		"  --beta2 X             adam [%g]\n"
		"  --eps X               adam [%g]\n"
		"  --weight-decay X      L2 penalty added to the gradient [%g]\n"
		"  --lr-step N           multiply the lr by --lr-gamma every N epochs, 0: never [%d]\n"
		"  --lr-gamma X          [%g]\n"
		"  --epochs N            total epochs, including those of a resumed run [%d]\n"
		"  --batch N             examples per step [%d]\n"
		"  --seed N              initialisation, split and shuffling [%llu]\n"
		"  --init-scheme S       fresh weights: pytorch (U(+-1/sqrt(fan_in))) or he\n"
		"                        (N(0, 2/fan_in)); biases U(+-1/sqrt(fan_in)) in both [%s]\n"
		"  --threads N           threads, 0: all cores (%d here); results depend on N [%d]\n"
		"files:\n"
		"  -o OUT.safetensors    the trained weights (required) [%s]\n"
		"  --init W.safetensors  start from these weights, fresh optimizer [%s]\n"
		"  --rename OLD=NEW, --strip-prefix P\n"
		"                        map --init's tensor names (docs/formats.md)\n"
		"  --resume CKPT         continue the run saved in checkpoint CKPT [%s]\n"
		"  --checkpoint FILE     checkpoint written after every epoch\n"
		"                        [%s; default OUT with .ckpt.safetensors]\n"
		"  --log FILE            one JSON line per epoch [%s]\n"
		"  --eval-norms LIST     margins evaluated on the validation set [%s]\n"
		"  --help                show this help\n",
		c->prog, m->name, m->n_in, m->n_out, m->n_hidden, (long long)m->n_params,
		c->data ? c->data : none, c->test ? c->test : none, (long long)c->valid,
		obj_name(c->obj.kind), model_sigmoid(m, c) ? "sigmoid_cross_entropy" : "cross_entropy",
		c->obj.lambda, c->obj.C, c->obj.gamma,
		c->distance_p == 0 ? "inf" : c->distance_p == 1 ? "1" : "2",
		opt_name(c->opt.kind), c->opt.lr, c->opt.momentum, c->opt.nesterov ? "on" : "off",
		c->opt.beta1, c->opt.beta2, c->opt.eps, c->opt.weight_decay, c->opt.lr_step,
		c->opt.lr_gamma, c->epochs, c->batch, (unsigned long long)c->seed,
		rt_init_name(c->init_scheme), rt_ncpus(), c->threads,
		c->out ? c->out : none, c->init ? c->init : none, c->resume ? c->resume : none,
		c->checkpoint ? c->checkpoint : none, c->log ? c->log : none,
		norms_text(c->norms, nb, sizeof nb));
}

static void eval_usage(FILE *f, const rt_model *m, const config *c)
{
	char nb[32];
	fprintf(f,
		"usage: %s --weights W.safetensors [--data FILE[,LABELS]] [options]\n"
		"\n"
		"Evaluates the model '%s' with weights W on a labeled data set: accuracy, loss,\n"
		"margins eps_p (percentiles, raw input units), distinct activation patterns and\n"
		"distinct logit Jacobians.\n"
		"\n"
		"  --weights FILE        weights (a checkpoint works too)\n"
		"  --rename OLD=NEW, --strip-prefix P\n"
		"                        map the weights' tensor names (docs/formats.md)\n"
		"  --data FILE[,LABELS]  labeled CSV, or examples and labels files [%s]\n"
		"  --norms LIST          margins to report, from 1,2,inf [%s]\n"
		"  --json                print one JSON object instead of a table\n"
		"  --per-example         with --json: also \"examples\", every example's margins\n"
		"                        and whether it is classified correctly (llnc plot --margins)\n"
		"  --threads N           threads, 0: all cores; results do not depend on N [%d]\n"
		"  --objective K, --loss L, --lambda X, --C X, --gamma X, --p P\n"
		"                        the objective whose loss is reported [%s]\n"
		"gradient distortion of the true class's logit (docs/robustness.md):\n"
		"  --distortion EPS      report it over the l_inf ball of radius EPS (raw units)\n"
		"  --samples N           uniform points per example, their mean is the expected\n"
		"                        distortion [%d]\n"
		"  --search G            generations of the genetic search for the maximum, 0: the\n"
		"                        largest among the uniform points [%d]\n"
		"  --population N        the search's population [%d]\n"
		"  --mutation X          probability that a child's coordinate is redrawn [%g]\n"
		"  --clip LO,HI|none     input range the ball is clipped to [0,1]\n"
		"  --seed N              the samples' and the search's generator [%llu]\n"
		"  --help                show this help\n",
		c->prog, m->name, c->data ? c->data : c->test ? c->test : "(none)",
		norms_text(c->norms, nb, sizeof nb), c->threads, obj_name(c->obj.kind), c->dist.samples,
		c->dist.generations, c->dist.population, c->dist.mutation, (unsigned long long)c->seed);
}

/* ------------------------------------------------------------------------
 * Data
 * ---------------------------------------------------------------------- */

static int load_toy2d(const config *c, const rt_model *m, const char *spec, rt_data *d)
{
	char err[RT_ERRLEN];
	return rt_toy2d_spec(spec, m, d, err) != 0 ? user_fail(c, "%s", err) : 0;
}

/* Reads FILE[,LABELS] (or a toy2d: spec) and checks every label against the
 * model's outputs.  Prints the error and returns 1 on failure. */
static int load_labeled(const config *c, const rt_model *m, bool sigmoid, const char *spec,
                        rt_data *d)
{
	char err[RT_ERRLEN];
	memset(d, 0, sizeof *d);
	if (strncmp(spec, "toy2d:", 6) == 0) {
		if (load_toy2d(c, m, spec, d))
			return 1;
		if (!sigmoid && m->n_out < 2) {
			rt_data_free(d);
			return user_fail(c, "'%s': toy2d labels are 0 and 1, but the model has one output and the loss is cross_entropy", spec);
		}
		return 0;
	}
	char *labels;
	char *s = rt_split_labels(spec, &labels);
	if (!s)
		return user_fail(c, "out of memory");
	int rc = 1;
	if (labels && !labels[0]) {
		user_fail(c, "'%s': the labels file after the comma is missing", spec);
		goto done;
	}
	if (rt_data_read(s, m->n_in, labels == NULL, d, err) != 0) {
		fprintf(stderr, "%s\n", err);
		goto done;
	}
	if (labels) {
		int64_t nl;
		if (rt_labels_read(labels, d->n, &d->y, &nl, err) != 0) {
			fprintf(stderr, "%s\n", err);
			goto done;
		}
	}
	const char *lname = labels ? labels : s;
	int32_t top = sigmoid ? 1 : m->n_out - 1;
	for (int64_t i = 0; i < d->n; i++)
		if (d->y[i] < 0 || d->y[i] > top) {
			fprintf(stderr, "%s: record %lld: label %d is outside 0..%d\n", lname,
			        (long long)(i + 1), d->y[i], top);
			goto done;
		}
	rc = 0;
done:
	if (rc)
		rt_data_free(d);
	free(s);
	return rc;
}

/* ------------------------------------------------------------------------
 * Reports
 * ---------------------------------------------------------------------- */
static const char *norm_key[RT_NNORMS] = { "l1", "l2", "linf" };
static const char *eps_title[RT_NNORMS] = { "eps_1", "eps_2", "eps_inf" };

/* (rounded toward zero: these are radii and their percentiles) */
static void json_num(FILE *f, double v)
{
	char buf[64];
	rt_format_down(buf, sizeof buf, v, 9);
	fputs(isfinite(v) ? buf : "null", f);
}

/* The members of an evaluation's JSON object, without the closing brace. */
static void eval_json_members(FILE *f, const rt_eval *e, int32_t norms)
{
	fprintf(f, "{\"n\":%lld,\"accuracy\":", (long long)e->n);
	json_num(f, e->accuracy);
	fputs(",\"loss\":", f);
	json_num(f, e->loss);
	fputs(",\"ce\":", f);
	json_num(f, e->ce);
	for (int p = 0; p < RT_NNORMS; p++) {
		if (!(norms & RT_NORM_BIT(p)))
			continue;
		fprintf(f, ",\"eps_%s\":[", norm_key[p]);
		for (int k = 0; k < 4; k++) {
			if (k)
				fputc(',', f);
			json_num(f, e->eps_pct[p][k]);
		}
		fputc(']', f);
	}
	fprintf(f, ",\"patterns\":%lld,\"jacobians\":%lld", (long long)e->patterns,
	        (long long)e->jacobians);
}

static void eval_json(FILE *f, const rt_eval *e, int32_t norms)
{
	eval_json_members(f, e, norms);
	fputc('}', f);
}

/* eval --per-example: one more member of the evaluation's object,
 * "examples": {"correct": [1, 0, ...], "eps_l2": [...], ...}, in example
 * order (null for a margin no neuron bounds). */
static void examples_json(FILE *f, int64_t n, int32_t norms, const float *eps,
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
			json_num(f, eps[(size_t)p * (size_t)n + (size_t)i]);
		}
		fputc(']', f);
	}
	fputc('}', f);
}

static void eval_table(FILE *f, const rt_eval *e, int32_t norms, const char *indent)
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

static void format_duration(char *buf, size_t cap, double s)
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

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------------
 * The training run
 * ---------------------------------------------------------------------- */

/* Random index below `bound` without modulo bias. */
static uint64_t below(rt_rng *r, uint64_t bound)
{
	uint64_t threshold = (0 - bound) % bound;
	for (;;) {
		uint64_t x = rt_rng_next(r);
		if (x >= threshold)
			return x % bound;
	}
}

static void shuffle(int64_t *a, int64_t n, uint64_t seed)
{
	rt_rng r;
	rt_rng_seed(&r, seed);
	for (int64_t i = n - 1; i > 0; i--) {
		int64_t j = (int64_t)below(&r, (uint64_t)i + 1);
		int64_t t = a[i];
		a[i] = a[j];
		a[j] = t;
	}
}

static uint64_t mix(uint64_t a, uint64_t b)
{
	uint64_t x = a ^ (b * 0x9e3779b97f4a7c15ULL);
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

#define SPLIT_SALT 0x6c6c6e2d73706c74ULL   /* "lln-splt" */
#define EPOCH_SALT 0x6c6c6e2d65706f63ULL   /* "lln-epoc" */
#define AXES_SALT 0x6c6c6e2d61786573ULL    /* "lln-axes": approximate ROLL */

typedef struct run {
	const rt_model *m;
	config *c;
	bool sigmoid;
	char *ckpt_path;
	rt_data data, test, valid;
	int64_t n_train, *order, *perm;
	float *P, *pre, *grad, *best, *E;
	rt_opt_state os;
	rt_grad_ctx *gc;
	rt_tensor *extra;
	char **extra_names;
	int n_extra;
	int start_epoch, best_epoch;
	double best_loss;
	FILE *log;
} run;

static void run_free(run *r)
{
	free(r->ckpt_path);
	rt_data_free(&r->data);
	rt_data_free(&r->test);
	rt_data_free(&r->valid);
	free(r->order);
	free(r->perm);
	free(r->P);
	free(r->pre);
	free(r->grad);
	free(r->best);
	free(r->E);
	rt_opt_free(&r->os);
	rt_grad_ctx_free(r->gc);
	for (int i = 0; i < r->n_extra; i++)
		free(r->extra_names[i]);
	free(r->extra_names);
	free(r->extra);
	if (r->log)
		fclose(r->log);
}

static bool is_valid(const run *r)
{
	return r->c->valid > 0;
}

/* The checkpoint's extra tensors: optimizer state arrays, then the best
 * weights so far (with validation), all shaped like the model's tensors. */
static int build_extra(run *r)
{
	const rt_model *m = r->m;
	int arrays = r->os.nstate + is_valid(r);
	int n = arrays * m->n_tensors;
	r->extra = calloc((size_t)(n ? n : 1), sizeof *r->extra);
	r->extra_names = calloc((size_t)(n ? n : 1), sizeof *r->extra_names);
	r->E = rt_alloc_floats((int64_t)arrays * m->n_params);
	if (!r->extra || !r->extra_names || !r->E)
		return -1;
	for (int a = 0; a < arrays; a++) {
		const char *state = a < r->os.nstate ? rt_opt_state_name(&r->os, a) : "best";
		for (int t = 0; t < m->n_tensors; t++) {
			rt_tensor *T = &r->extra[r->n_extra];
			*T = m->tensors[t];
			size_t len = strlen(state) + strlen(m->tensors[t].name) + 16;
			char *name = malloc(len);
			if (!name)
				return -1;
			snprintf(name, len, "optim.%s.%s", state, m->tensors[t].name);
			r->extra_names[r->n_extra] = name;
			T->name = name;
			T->offset = (int64_t)a * m->n_params + m->tensors[t].offset;
			r->n_extra++;
		}
	}
	return 0;
}

static void objective_text(const run *r, char *buf, size_t cap)
{
	const rt_objective *o = &r->c->obj;
	if (o->kind == RT_OBJ_ROLL)
		snprintf(buf, cap, "roll(lambda=%.9g, C=%.9g, gamma=%.9g)", o->lambda, o->C, o->gamma);
	else if (o->kind == RT_OBJ_DISTANCE)
		snprintf(buf, cap, "distance(lambda=%.9g, p=2)", o->lambda);
	else
		snprintf(buf, cap, "none");
}

static int save_weights(run *r, const float *P, int epoch, double vloss)
{
	char err[RT_ERRLEN], ep[32], vl[40], seed[32], obj[160];
	snprintf(ep, sizeof ep, "%d", epoch);
	snprintf(vl, sizeof vl, "%.17g", vloss);
	snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->c->seed);
	objective_text(r, obj, sizeof obj);
	const char *md[] = {
		"format", "lln-weights", "model", r->m->name, "epoch", ep,
		"loss", r->sigmoid ? "sigmoid_cross_entropy" : "cross_entropy", "regularizer", obj,
		"seed", seed, is_valid(r) ? "valid_loss" : NULL, vl, NULL, NULL,
	};
	if (rt_params_save(r->m->tensors, r->m->n_tensors, P, NULL, 0, NULL, md, r->c->out, err) != 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	return 0;
}

/* "buf", "m,v", "m,v,vmax" or "" (plain sgd): the optimizer's arrays. */
static void state_list(const run *r, char *buf, size_t cap)
{
	buf[0] = 0;
	for (int i = 0; i < r->os.nstate; i++) {
		size_t l = strlen(buf);
		snprintf(buf + l, cap - l, "%s%s", i ? "," : "", rt_opt_state_name(&r->os, i));
	}
}

static int save_checkpoint(run *r, int epoch)
{
	const rt_model *m = r->m;
	char err[RT_ERRLEN], ep[32], step[32], bl[40], be[32], seed[32], valid[32], ntr[32], obj[160];
	if (r->os.nstate)
		memcpy(r->E, r->os.mem, sizeof(float) * (size_t)(r->os.nstate * m->n_params));
	if (is_valid(r))
		memcpy(r->E + (int64_t)r->os.nstate * m->n_params, r->best, sizeof(float) * (size_t)m->n_params);
	snprintf(ep, sizeof ep, "%d", epoch);
	snprintf(step, sizeof step, "%lld", (long long)r->os.step);
	snprintf(bl, sizeof bl, "%.17g", r->best_loss);
	snprintf(be, sizeof be, "%d", r->best_epoch);
	snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->c->seed);
	snprintf(valid, sizeof valid, "%lld", (long long)r->c->valid);
	snprintf(ntr, sizeof ntr, "%lld", (long long)r->data.n);
	objective_text(r, obj, sizeof obj);
	char states[64];
	state_list(r, states, sizeof states);
	const char *md[] = {
		"format", "lln-checkpoint", "optimizer_state", states, "model", m->name, "epoch", ep, "step", step,
		"best_valid_loss", bl, "best_epoch", be, "seed", seed, "optimizer", opt_name(r->c->opt.kind),
		"valid", valid, "examples", ntr, "regularizer", obj, NULL, NULL,
	};
	if (rt_params_save(m->tensors, m->n_tensors, r->P, r->extra, r->n_extra, r->E, md, r->ckpt_path,
	                   err) != 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	return 0;
}

/* Reads one metadata entry of the checkpoint; 0 or 1 after printing why. */
static int ckpt_meta(run *r, const char *key, char *val, size_t cap)
{
	char err[RT_ERRLEN];
	int rc = rt_st_metadata(r->c->resume, key, val, cap, err);
	if (rc < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (rc == 1) {
		fprintf(stderr, "%s: not a checkpoint of llnc train (no '%s' in its metadata); "
		        "use --init to start from its weights\n", r->c->resume, key);
		return 1;
	}
	return 0;
}

static int ckpt_int(run *r, const char *key, long long lo, long long hi, long long *out)
{
	char v[64], *end;
	if (ckpt_meta(r, key, v, sizeof v))
		return 1;
	errno = 0;
	*out = strtoll(v, &end, 10);
	if (end == v || *end || errno || *out < lo || *out > hi) {
		fprintf(stderr, "%s: metadata '%s' is not a count from %lld to %lld: '%s'\n", r->c->resume,
		        key, lo, hi, v);
		return 1;
	}
	return 0;
}

static int resume(run *r)
{
	const rt_model *m = r->m;
	config *c = r->c;
	const char *path = c->resume;
	char v[256], err[RT_ERRLEN];
	long long epoch, step, best_epoch, valid, examples;
	if (ckpt_meta(r, "format", v, sizeof v))
		return 1;
	if (strcmp(v, "lln-checkpoint") != 0) {
		fprintf(stderr, "%s: not a checkpoint of llnc train (format '%s'); use --init to start "
		        "from its weights\n", path, v);
		return 1;
	}
	if (ckpt_meta(r, "model", v, sizeof v))
		return 1;
	if (strcmp(v, m->name) != 0) {
		fprintf(stderr, "%s: is a checkpoint of model '%s', not '%s'\n", path, v, m->name);
		return 1;
	}
	if (ckpt_meta(r, "optimizer", v, sizeof v))
		return 1;
	if (strcmp(v, opt_name(c->opt.kind)) != 0) {
		fprintf(stderr, "%s: was trained with optimizer %s; resuming needs the same optimizer, "
		        "not %s\n", path, v, opt_name(c->opt.kind));
		return 1;
	}
	if (ckpt_meta(r, "optimizer_state", v, sizeof v))
		return 1;
	char states[64];
	state_list(r, states, sizeof states);
	if (strcmp(v, states) != 0) {
		fprintf(stderr, "%s: holds optimizer state '%s' but %s with these settings keeps '%s' "
		        "(momentum 0 keeps none); resume with the settings of the checkpoint\n", path, v,
		        opt_name(c->opt.kind), states);
		return 1;
	}
	if (ckpt_meta(r, "seed", v, sizeof v))
		return 1;
	char want[32];
	snprintf(want, sizeof want, "%llu", (unsigned long long)c->seed);
	if (strcmp(v, want) != 0) {
		fprintf(stderr, "%s: was trained with --seed %s; resuming needs the same seed, not %s\n",
		        path, v, want);
		return 1;
	}
	/* Every number is checked against what a run can have written: a
	 * checkpoint is written after an epoch (epoch >= 1, at most --epochs'
	 * limit), every epoch takes at least one step, and the best epoch is
	 * one of those done. */
	if (ckpt_int(r, "epoch", 1, 1000000000, &epoch) || ckpt_int(r, "step", epoch, LLONG_MAX, &step) ||
	    ckpt_int(r, "best_epoch", 0, epoch, &best_epoch) || ckpt_int(r, "valid", 0, LLONG_MAX, &valid) ||
	    ckpt_int(r, "examples", 1, LLONG_MAX, &examples))
		return 1;
	if (valid != c->valid) {
		fprintf(stderr, "%s: was trained with --valid %lld; resuming needs the same split, not %lld\n",
		        path, valid, (long long)c->valid);
		return 1;
	}
	if (examples != r->data.n) {
		fprintf(stderr, "%s: was trained on %lld examples, but %s holds %lld\n", path, examples,
		        c->data, (long long)r->data.n);
		return 1;
	}
	if (ckpt_meta(r, "best_valid_loss", v, sizeof v))
		return 1;
	char *end;
	r->best_loss = strtod(v, &end);
	if (end == v || *end) {
		fprintf(stderr, "%s: metadata 'best_valid_loss' is not a number: '%s'\n", path, v);
		return 1;
	}
	/* inf until a validation loss was finite (best_epoch 0), then that loss */
	bool finite = isfinite(r->best_loss) && r->best_loss >= 0;
	if (best_epoch > 0 ? !finite : r->best_loss != INFINITY) {
		fprintf(stderr, "%s: metadata 'best_valid_loss' %s does not fit best_epoch %lld\n", path, v,
		        best_epoch);
		return 1;
	}
	if (valid == 0 && best_epoch > 0) {
		fprintf(stderr, "%s: metadata 'best_epoch' is %lld without a validation set\n", path, best_epoch);
		return 1;
	}
	bool has_extra = false;
	if (rt_params_load_ex(m->tensors, m->n_tensors, r->extra, r->n_extra, path, r->P, r->E,
	                      &has_extra, err) != 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (r->n_extra && !has_extra) {
		fprintf(stderr, "%s: holds no optimizer state (optim.* tensors) to resume from\n", path);
		return 1;
	}
	if (r->os.nstate)
		memcpy(r->os.mem, r->E, sizeof(float) * (size_t)(r->os.nstate * m->n_params));
	if (is_valid(r))
		memcpy(r->best, r->E + (int64_t)r->os.nstate * m->n_params, sizeof(float) * (size_t)m->n_params);
	r->os.step = step;
	r->start_epoch = (int)epoch;
	r->best_epoch = (int)best_epoch;
	return 0;
}

/* One line per epoch, flushed and checked: a full disk stops the run. */
static int log_epoch(run *r, int epoch, double lr, double loss, double ce, const rt_eval *ve,
                     bool improved, double secs, double rate)
{
	FILE *f = r->log;
	fprintf(f, "{\"epoch\":%d,\"lr\":%.9g,\"train_loss\":", epoch, lr);
	json_num(f, loss);
	fputs(",\"train_ce\":", f);
	json_num(f, ce);
	if (ve) {
		fputs(",\"valid\":", f);
		eval_json(f, ve, r->c->norms);
		fprintf(f, ",\"best\":%s", improved ? "true" : "false");
	}
	fprintf(f, ",\"seconds\":%.3f,\"samples_per_s\":%.1f}\n", secs, rate);
	if (fflush(f) != 0 || ferror(f))
		return user_fail(r->c, "cannot write %s: %s", r->c->log, strerror(errno ? errno : EIO));
	return 0;
}

/* The epoch number of a log line, or -1. */
static long long log_line_epoch(const char *s, const char *e)
{
	static const char key[] = "{\"epoch\":";
	if ((size_t)(e - s) <= sizeof key - 1 || memcmp(s, key, sizeof key - 1) != 0)
		return -1;
	return strtoll(s + sizeof key - 1, NULL, 10);
}

/* Opens the log.  A resumed run keeps the lines of the epochs its
 * checkpoint holds and drops later ones, which a run killed between its
 * log line and its checkpoint left (docs/training.md), so every epoch is
 * in the log exactly once. */
static int log_open(run *r)
{
	config *c = r->c;
	struct stat st;
	if (c->resume && stat(c->log, &st) == 0 && S_ISREG(st.st_mode)) {
		char err[RT_ERRLEN];
		FILE *f = fopen(c->log, "rb");
		char *buf = f && st.st_size >= 0 ? malloc((size_t)st.st_size + 1) : NULL;
		size_t len = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
		bool ok = buf && !ferror(f);
		int e = errno;
		if (f)
			fclose(f);
		if (!ok) {
			free(buf);
			return user_fail(c, "cannot read %s: %s", c->log, strerror(f ? e : errno));
		}
		size_t keep = 0;
		for (size_t at = 0; at < len;) {
			char *nl = memchr(buf + at, '\n', len - at);
			size_t end = nl ? (size_t)(nl - buf) + 1 : len;
			if (log_line_epoch(buf + at, buf + end) <= r->start_epoch) {
				memmove(buf + keep, buf + at, end - at);
				keep += end - at;
			}
			at = end;
		}
		int rc = keep < len ? rt_write_atomic(c->log, buf, keep, err) : 0;
		free(buf);
		if (rc)
			return user_fail(c, "%s", err);
	}
	r->log = fopen(c->log, c->resume ? "a" : "w");
	if (!r->log)
		return user_fail(c, "cannot write %s: %s", c->log, strerror(errno));
	return 0;
}

/* The run's files, all checked before any work (rt_files_check): inputs
 * are never outputs, outputs are distinct and writable.  --resume may be
 * the checkpoint it continues. */
static int check_files(const config *c, const char *ckpt)
{
	char *dl = NULL, *tl = NULL;
	char *d = c->data && strncmp(c->data, "toy2d:", 6) ? rt_split_labels(c->data, &dl) : NULL;
	char *t = c->test && strncmp(c->test, "toy2d:", 6) ? rt_split_labels(c->test, &tl) : NULL;
	const rt_file f[] = {
		{ "the model", c->source, RT_FILE_IN, 0 },
		{ "--data", d, RT_FILE_IN, 0 }, { "--data", dl, RT_FILE_IN, 0 },
		{ "--test", t, RT_FILE_IN, 0 }, { "--test", tl, RT_FILE_IN, 0 },
		{ "--init", c->init, RT_FILE_IN, 0 }, { "--resume", c->resume, RT_FILE_IN, 1 },
		{ "-o", c->out, RT_FILE_OUT, 0 }, { "--checkpoint", ckpt, RT_FILE_OUT, 1 },
		{ "--log", c->log, RT_FILE_STREAM, 0 },
	};
	char err[RT_ERRLEN];
	int rc = rt_files_check(f, (int)(sizeof f / sizeof *f), err);
	free(d);
	free(t);
	return rc ? rt_cmd_fail(c->prog, rc, "%s", err) : 0;
}

static int train_epoch(run *r, int epoch, double lr, double *loss_out, double *ce_out, double *secs)
{
	const rt_model *m = r->m;
	config *c = r->c;
	const int64_t n = r->n_train;
	memcpy(r->perm, r->order, sizeof(int64_t) * (size_t)n);
	shuffle(r->perm, n, mix(c->seed ^ EPOCH_SALT, (uint64_t)epoch));
	int64_t nbatches = (n + c->batch - 1) / c->batch;
	bool tty = isatty(2);
	double t0 = now(), last = t0, sum_loss = 0, sum_ce = 0;
	for (int64_t b = 0; b < nbatches; b++) {
		int64_t begin = b * c->batch, nb = n - begin < c->batch ? n - begin : c->batch;
		if (rt_objective_needs_sq(&c->obj))   /* vanilla reads nothing prepared */
			m->prepare(r->P, r->pre);
		/* approximate ROLL's axes: fresh every step, the same after --resume */
		c->obj.sample_seed = mix(mix(c->seed ^ AXES_SALT, (uint64_t)epoch), (uint64_t)b);
		double loss, ce;
		if (rt_batch_grad_ctx(r->gc, &c->obj, r->P, r->pre, r->data.x, r->data.y, r->perm + begin,
		                      nb, r->grad, &loss, &ce) != 0)
			return user_fail(c, "out of memory");
		bool finite = isfinite(loss);
		for (int64_t i = 0; finite && i < m->n_params; i++)
			finite = isfinite(r->grad[i]);
		if (!finite) {
			if (tty)
				fputc('\n', stderr);
			return user_fail(c, "epoch %d, batch %lld: the %s is not finite; training diverged "
			                 "(try a smaller --lr); the checkpoint holds the last finished epoch",
			                 epoch + 1, (long long)(b + 1), isfinite(loss) ? "gradient" : "loss");
		}
		rt_opt_step(&c->opt, &r->os, lr, r->P, r->grad);
		sum_loss += loss * (double)nb;
		sum_ce += ce * (double)nb;
		double t = now();
		if (tty && (t - last > 0.2 || b + 1 == nbatches)) {
			last = t;
			double done = (double)(begin + nb), rate = done / (t - t0 > 0 ? t - t0 : 1e-9);
			char eta[32];
			format_duration(eta, sizeof eta, (double)(n - begin - nb) / rate);
			fprintf(stderr, "\repoch %d/%d  batch %lld/%lld  loss %.4f  %.0f samples/s  ETA %s\033[K",
			        epoch + 1, c->epochs, (long long)(b + 1), (long long)nbatches, sum_loss / done,
			        rate, eta);
		}
	}
	*loss_out = sum_loss / (double)n;
	*ce_out = sum_ce / (double)n;
	*secs = now() - t0;
	return 0;
}

static int train_run(const rt_model *m, config *c)
{
	run R = { .m = m, .c = c, .best_loss = INFINITY };
	run *r = &R;
	int rc = 2;
	char err[RT_ERRLEN];

	/* -- the options together -- */
	if (!c->out) {
		rc = usage_fail(c, "-o OUT.safetensors is required (where the trained weights go)");
		goto done;
	}
	if (!c->data) {
		rc = usage_fail(c, "no training data: give --data FILE[,LABELS] (or data = ... in the "
		                "train block)");
		goto done;
	}
	if (c->init && c->resume) {
		rc = usage_fail(c, "--init and --resume exclude each other (--resume continues a run "
		                "with its optimizer state, --init starts a new one from weights)");
		goto done;
	}
	if (c->opt.kind == RT_SGD && c->opt.nesterov && c->opt.momentum == 0) {
		rc = usage_fail(c, "--nesterov on needs --momentum > 0");
		goto done;
	}
	if (c->obj.kind == RT_OBJ_DISTANCE && c->distance_p != 2) {
		rc = usage_fail(c, "the distance regularizer trains only with p = 2 (the kernels provide "
		                "||g||_2), got p = %s", c->distance_p == 1 ? "1" : "inf");
		goto done;
	}
	r->sigmoid = model_sigmoid(m, c);
	if (r->sigmoid != (m->n_out == 1)) {
		rc = usage_fail(c, r->sigmoid ? "sigmoid_cross_entropy needs one output logit, the model has %d"
		                              : "cross_entropy needs at least 2 outputs, the model has %d",
		                m->n_out);
		goto done;
	}
	c->obj.sigmoid = r->sigmoid;
	size_t ol = strlen(c->out);
	r->ckpt_path = malloc(ol + 32);
	if (!r->ckpt_path) {
		rc = user_fail(c, "out of memory");
		goto done;
	}
	if (c->checkpoint)
		snprintf(r->ckpt_path, ol + 32, "%s", c->checkpoint);
	else if (ol > 12 && strcmp(c->out + ol - 12, ".safetensors") == 0)
		snprintf(r->ckpt_path, ol + 32, "%.*s.ckpt.safetensors", (int)(ol - 12), c->out);
	else
		snprintf(r->ckpt_path, ol + 32, "%s.ckpt", c->out);
	if ((rc = check_files(c, r->ckpt_path)))
		goto done;
	rc = 1;
	if (!m->train_forward || !m->train_backward || !m->train_finish || !m->prepare) {
		user_fail(c, "model '%s' was compiled without training kernels", m->name);
		goto done;
	}

	/* -- inputs, all read and checked before training -- */
	if (load_labeled(c, m, r->sigmoid, c->data, &r->data))
		goto done;
	if (c->test && load_labeled(c, m, r->sigmoid, c->test, &r->test))
		goto done;
	if (c->valid >= r->data.n) {
		user_fail(c, "--valid %lld leaves no training examples: %s holds %lld", (long long)c->valid,
		          c->data, (long long)r->data.n);
		goto done;
	}

	const int64_t N = r->data.n, D = m->n_in;
	r->n_train = N - c->valid;
	r->order = malloc(sizeof(int64_t) * (size_t)N);
	r->perm = malloc(sizeof(int64_t) * (size_t)N);
	r->P = rt_alloc_floats(m->n_params);
	r->pre = rt_alloc_floats(m->pre_floats);
	r->grad = rt_alloc_floats(m->n_params);
	r->best = is_valid(r) ? rt_alloc_floats(m->n_params) : NULL;
	int threads = c->threads > 0 ? c->threads : rt_ncpus();
	r->gc = rt_grad_ctx_new(m, threads);
	if (!r->order || !r->perm || !r->P || !r->pre || !r->grad || (is_valid(r) && !r->best) || !r->gc ||
	    rt_opt_init(&r->os, &c->opt, m->n_params) != 0 || build_extra(r) != 0) {
		user_fail(c, "out of memory");
		goto done;
	}
	/* the split: a permutation fixed by the seed; its tail is the validation set */
	for (int64_t i = 0; i < N; i++)
		r->order[i] = i;
	shuffle(r->order, N, mix(c->seed ^ SPLIT_SALT, 0));
	if (is_valid(r)) {
		r->valid.n = c->valid;
		r->valid.dim = D;
		r->valid.x = malloc(sizeof(float) * (size_t)(c->valid * D));
		r->valid.y = malloc(sizeof(int32_t) * (size_t)c->valid);
		if (!r->valid.x || !r->valid.y) {
			user_fail(c, "out of memory");
			goto done;
		}
		for (int64_t i = 0; i < c->valid; i++) {
			int64_t k = r->order[r->n_train + i];
			memcpy(r->valid.x + i * D, r->data.x + k * D, sizeof(float) * (size_t)D);
			r->valid.y[i] = r->data.y[k];
		}
	}
	/* order[0..n_train) is the training set; each epoch shuffles a copy */
	if (c->resume) {
		if (resume(r))
			goto done;
	} else if (c->init) {
		if (rt_params_load_named(m->tensors, m->n_tensors, &c->names, c->init, r->P, err) != 0) {
			fprintf(stderr, "%s\n", err);
			goto done;
		}
	} else {
		rt_init_params(m->tensors, m->n_tensors, c->seed, c->init_scheme, r->P);
	}
	if (c->log && log_open(r))
		goto done;

	/* -- epochs -- */
	bool tty = isatty(2);
	if (r->start_epoch >= c->epochs)
		fprintf(stderr, "%s: %s has already trained %d epochs (--epochs %d); nothing to train\n",
		        c->prog, c->resume, r->start_epoch, c->epochs);
	for (int epoch = r->start_epoch; epoch < c->epochs; epoch++) {
		double lr = rt_lr_at(&c->opt, epoch), loss = 0, ce = 0, secs = 0;
		if (train_epoch(r, epoch, lr, &loss, &ce, &secs))
			goto done;
		double rate = (double)r->n_train / (secs > 0 ? secs : 1e-9);
		rt_eval ve;
		bool improved = false;
		if (is_valid(r)) {
			if (rt_evaluate(m, &c->obj, r->P, &r->valid, threads, c->norms, &ve) != 0) {
				user_fail(c, "out of memory");
				goto done;
			}
			if (ve.loss < r->best_loss) {
				improved = true;
				r->best_loss = ve.loss;
				r->best_epoch = epoch + 1;
				memcpy(r->best, r->P, sizeof(float) * (size_t)m->n_params);
			}
		}
		/* log line, weights, checkpoint: a kill between them leaves the
		 * log ahead of the checkpoint, which log_open trims on resume */
		if (r->log && log_epoch(r, epoch + 1, lr, loss, ce, is_valid(r) ? &ve : NULL, improved, secs, rate))
			goto done;
		if (improved && save_weights(r, r->best, r->best_epoch, r->best_loss))
			goto done;
		if (save_checkpoint(r, epoch + 1))
			goto done;
		if (tty)
			fputs("\r\033[K", stderr);
		fprintf(stderr, "epoch %d/%d  lr %.4g  loss %.4f (ce %.4f)", epoch + 1, c->epochs, lr, loss, ce);
		if (is_valid(r)) {
			fprintf(stderr, "  valid: acc %.2f%%  loss %.4f", 100 * ve.accuracy, ve.loss);
			if (c->norms & RT_NORM_BIT(RT_L2))
				fprintf(stderr, "  eps_2 P50 %.3g", ve.eps_pct[RT_L2][1]);
			if (improved)
				fputs("  *", stderr);
		}
		fprintf(stderr, "  %.1fs  %.0f samples/s\n", secs, rate);
	}

	/* -- the result -- */
	const float *final = r->P;
	if (is_valid(r)) {
		if (r->best_epoch > 0) {
			final = r->best;
			if (save_weights(r, r->best, r->best_epoch, r->best_loss))
				goto done;
		} else {
			/* validation loss never finite: keep the last weights */
			if (save_weights(r, r->P, c->epochs, NAN))
				goto done;
		}
	} else if (save_weights(r, r->P, c->epochs > r->start_epoch ? c->epochs : r->start_epoch, NAN)) {
		goto done;
	}
	printf("model %s: trained %d epochs (%lld steps) with %s, objective %s\n", m->name,
	       c->epochs > r->start_epoch ? c->epochs : r->start_epoch, (long long)r->os.step,
	       opt_name(c->opt.kind), obj_name(c->obj.kind));
	if (is_valid(r) && r->best_epoch > 0)
		printf("best validation loss %.6g at epoch %d\n", r->best_loss, r->best_epoch);
	printf("weights: %s\ncheckpoint: %s\n", c->out, r->ckpt_path);
	rt_eval e;
	if (is_valid(r)) {
		if (rt_evaluate(m, &c->obj, final, &r->valid, threads, c->norms, &e) != 0) {
			user_fail(c, "out of memory");
			goto done;
		}
		printf("\nvalidation set (%s weights)\n", r->best_epoch > 0 ? "best" : "final");
		eval_table(stdout, &e, c->norms, "  ");
	}
	if (c->test) {
		if (rt_evaluate(m, &c->obj, final, &r->test, threads, c->norms, &e) != 0) {
			user_fail(c, "out of memory");
			goto done;
		}
		printf("\ntest set %s\n", c->test);
		eval_table(stdout, &e, c->norms, "  ");
	}
	rc = fflush(stdout) == 0 ? 0 : 1;
done:
	run_free(r);
	return rc;
}

int rt_train_main(const rt_model *m, const char *defaults, int argc, char **argv)
{
	config c;
	config_init(&c, argc > 0 && argv[0] ? argv[0] : "train", MODE_TRAIN);
	char *dcopy = NULL;
	int rc = parse_all(&c, defaults, &dcopy, argc, argv);
	if (rc == 0 && c.help)
		train_usage(stdout, m, &c);
	else if (rc == 0)
		rc = train_run(m, &c);
	free(dcopy);
	return rc;
}

/* ------------------------------------------------------------------------
 * Evaluation command
 * ---------------------------------------------------------------------- */
int rt_eval_main(const rt_model *m, const char *defaults, int argc, char **argv)
{
	config c;
	config_init(&c, argc > 0 && argv[0] ? argv[0] : "eval", MODE_EVAL);
	char *dcopy = NULL;
	int rc = parse_all(&c, defaults, &dcopy, argc, argv);
	rt_data d = { 0 };
	float *P = NULL, *ex_eps = NULL;
	unsigned char *ex_correct = NULL;
	if (rc)
		goto done;
	if (c.help) {
		eval_usage(stdout, m, &c);
		goto done;
	}
	/* the command line's --data, else the train block's test set, else its data */
	const char *spec = c.data_cli ? c.data : c.test ? c.test : c.data;
	rc = 2;
	if (!c.weights) {
		usage_fail(&c, "--weights W.safetensors is required");
		goto done;
	}
	if (!spec) {
		usage_fail(&c, "no data: give --data FILE[,LABELS]");
		goto done;
	}
	if (c.obj.kind == RT_OBJ_DISTANCE && c.distance_p != 2) {
		usage_fail(&c, "the distance regularizer's loss is computed only for p = 2");
		goto done;
	}
	bool sigmoid = model_sigmoid(m, &c);
	if (sigmoid != (m->n_out == 1)) {
		usage_fail(&c, sigmoid ? "sigmoid_cross_entropy needs one output logit, the model has %d"
		                       : "cross_entropy needs at least 2 outputs, the model has %d", m->n_out);
		goto done;
	}
	c.obj.sigmoid = sigmoid;
	rc = 1;
	char err[RT_ERRLEN];
	P = rt_alloc_floats(m->n_params);
	if (!P) {
		user_fail(&c, "out of memory");
		goto done;
	}
	if (rt_params_load_named(m->tensors, m->n_tensors, &c.names, c.weights, P, err) != 0) {
		fprintf(stderr, "%s\n", err);
		goto done;
	}
	if (load_labeled(&c, m, sigmoid, spec, &d))
		goto done;
	if (c.per_example && !c.json) {
		rc = usage_fail(&c, "--per-example needs --json");
		goto done;
	}
	if (c.per_example) {
		size_t cnt = (size_t)(d.n > 0 ? d.n : 1);
		ex_eps = malloc(sizeof *ex_eps * cnt * RT_NNORMS);
		ex_correct = malloc(cnt);
		if (!ex_eps || !ex_correct) {
			user_fail(&c, "out of memory");
			goto done;
		}
	}
	rt_eval e;
	if (rt_evaluate_examples(m, &c.obj, P, &d, c.threads, c.norms, &e, ex_eps, ex_correct) != 0) {
		user_fail(&c, "out of memory");
		goto done;
	}
	/* Finite weights can still overflow float32 on the way to the logits;
	 * a NaN loss is no result to report. */
	if (!isfinite(e.loss) || !isfinite(e.ce)) {
		user_fail(&c, "the loss on %s is not finite: the weights %s overflow float32 arithmetic "
		          "on these inputs", spec, c.weights);
		goto done;
	}
	rt_distortion_report dr = { 0 };
	if (c.distortion) {
		c.dist.seed = c.seed;
		c.dist.threads = c.threads;
		if (rt_distortion_summary(m, P, &d, &c.dist, &dr, err) != 0) {
			user_fail(&c, "%s", err);
			goto done;
		}
	}
	if (c.json) {
		eval_json_members(stdout, &e, c.norms);
		if (c.distortion)
			rt_distortion_json(stdout, &c.dist, &dr);
		if (c.per_example)
			examples_json(stdout, d.n, c.norms, ex_eps, ex_correct);
		fputs("}\n", stdout);
	} else {
		printf("model %s, weights %s, data %s\n", m->name, c.weights, spec);
		eval_table(stdout, &e, c.norms, "");
		if (c.distortion)
			rt_distortion_table(stdout, &c.dist, &dr);
	}
	rc = fflush(stdout) == 0 ? 0 : 1;
done:
	rt_data_free(&d);
	free(P);
	free(ex_eps);
	free(ex_correct);
	free(dcopy);
	return rc;
}
