/* lln.c: liblln, the public interface of include/lln.h over llnc's stages.
 *
 * A model handle is what `llnc certify` holds while it runs: the arena of
 * the compiled program, the JIT-compiled kernels (cg_unit), the runtime's
 * model descriptor, the parameter vector and the .lln file's settings as
 * default flags.  Each entry point checks its arguments, calls the same
 * runtime function the commands call (rt_certify_batch, rt_evaluate,
 * rt_train_main, the readers and rt_params_load_named) and turns failures
 * into the per-thread message of lln_error.  Diagnostics of a source are
 * collected in memory rather than printed, so a caller (Python) can raise
 * them; a compiler bug still ends the process through internal_error.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llnc.h"
#include "lln.h"

struct lln_model {
	arena *a;
	cg_unit *u;
	const rt_model *m;
	const ir_module *ir;
	float *P;
	const char *defaults;   /* the .lln file's settings, for lln_train */
	rt_objective obj;       /* its objective, for lln_evaluate */
};

static _Thread_local char last_error[4096];

static int set_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(last_error, sizeof last_error, fmt, ap);
	va_end(ap);
	return -1;
}

int lln_version(void)
{
	return LLN_VERSION;
}

const char *lln_error(void)
{
	return last_error;
}

/* The objective of the checked program, as `llnc eval` gets it from the
 * default flags: softmax cross-entropy, or sigmoid for one logit. */
static rt_objective objective_of(const sema_program *p, const rt_model *m)
{
	static const rt_obj_kind kind[] = { [REG_NONE] = RT_OBJ_VANILLA, [REG_ROLL] = RT_OBJ_ROLL,
	                                    [REG_DISTANCE] = RT_OBJ_DISTANCE };
	const sema_objective *o = &p->objective;
	return (rt_objective){ .kind = kind[o->reg], .sigmoid = m->n_out == 1, .lambda = o->lambda, .C = o->C,
	                       .gamma = o->reg == REG_ROLL ? o->gamma : 100 };
}

/* Parse, check, lower, generate and JIT, with diagnostics into memory. */
static lln_model *compile(arena *a, source *src, const char *name)
{
	char *diag = NULL;
	size_t diag_len = 0;
	FILE *mem = open_memstream(&diag, &diag_len);
	if (!mem) {
		arena_free(a);
		set_error("%s: out of memory", name);
		return NULL;
	}
	src->out = mem;
	ast_program *ast = ast_parse(a, src);
	sema_program *prog = ast ? sema_check(a, ast) : NULL;
	ir_module *ir = prog ? ir_lower(a, prog) : NULL;
	diag_finish(src);
	fclose(mem);
	src->out = stderr;
	lln_model *h = NULL;
	char err[RT_ERRLEN];
	if (!ir) {
		set_error("%s", diag && *diag ? diag : "the model has errors");
		goto fail;
	}
	if (diag && *diag)   /* warnings of a model that compiled */
		fputs(diag, stderr);
	h = calloc(1, sizeof *h);
	if (!h) {
		set_error("%s: out of memory", name);
		goto fail;
	}
	h->a = a;
	h->ir = ir;
	/* -O3 for this CPU, as llnc train: the kernels of its cache entry */
	cg_options co = { .opt_level = CG_DEFAULT_OPT };
	LLVMMemoryBufferRef kernels = cg_cache_kernels(ir, &co, err);
	h->m = kernels ? cg_jit_object(kernels, &h->u, err) : NULL;
	h->P = rt_alloc_floats(ir->n_params);
	if (!h->m || !h->P) {
		set_error("%s: %s", name, h->m ? "out of memory" : err);
		goto fail;
	}
	rt_init_params(ir->tensors, ir->n_tensors, prog->train.seed, prog->train.init, h->P);
	h->defaults = arena_printf(a, "%s--source\n%s\n", sema_defaults(a, prog), name);
	h->obj = objective_of(prog, h->m);
	free(diag);
	return h;
fail:
	free(diag);
	if (h) {
		h->a = NULL;
		lln_free(h);
	}
	arena_free(a);
	return NULL;
}

lln_model *lln_compile(const char *path)
{
	if (!path)
		return set_error("lln_compile: no path"), NULL;
	FILE *f = fopen(path, "rb");
	if (!f)
		return set_error("%s: cannot read: %s", path, strerror(errno)), NULL;
	fclose(f);
	arena *a = arena_new();
	source *src = source_load(a, path);
	if (!src) {
		arena_free(a);
		return set_error("%s: not a .lln source (the reason is on standard error)", path), NULL;
	}
	return compile(a, src, path);
}

lln_model *lln_compile_text(const char *name, const char *text)
{
	if (!text)
		return set_error("lln_compile_text: no text"), NULL;
	if (!name)
		name = "model.lln";
	if (rt_utf8_valid(text, strlen(text)) != strlen(text))
		return set_error("%s: not a .lln source: invalid UTF-8 at byte %zu", name,
		                 rt_utf8_valid(text, strlen(text))), NULL;
	arena *a = arena_new();
	return compile(a, source_from_string(a, name, text), name);
}

void lln_free(lln_model *m)
{
	if (!m)
		return;
	free(m->P);
	cg_unit_free(m->u);
	arena_free(m->a);
	free(m);
}

const char *lln_name(const lln_model *m) { return m->m->name; }
int lln_n_inputs(const lln_model *m) { return m->m->n_in; }
int lln_n_outputs(const lln_model *m) { return m->m->n_out; }
int lln_n_hidden(const lln_model *m) { return m->m->n_hidden; }
int64_t lln_n_params(const lln_model *m) { return m->m->n_params; }
int lln_n_layers(const lln_model *m) { return m->m->n_layers; }
int lln_n_tensors(const lln_model *m) { return m->m->n_tensors; }
float *lln_params(lln_model *m) { return m->P; }

const char *lln_layer_name(const lln_model *m, int layer)
{
	return layer >= 0 && layer < m->m->n_layers ? m->m->layers[layer].name : NULL;
}

int lln_layer_size(const lln_model *m, int layer)
{
	return layer >= 0 && layer < m->m->n_layers ? m->m->layers[layer].size : -1;
}

int lln_layer_of(const lln_model *m, int32_t h, int32_t *index)
{
	const rt_layer *l = rt_layer_of(m->m, h, index);
	return l ? (int)(l - m->m->layers) : -1;
}

const char *lln_tensor_name(const lln_model *m, int tensor)
{
	return tensor >= 0 && tensor < m->m->n_tensors ? m->m->tensors[tensor].name : NULL;
}

int lln_tensor_shape(const lln_model *m, int tensor, int64_t shape[4])
{
	if (tensor < 0 || tensor >= m->m->n_tensors)
		return set_error("tensor %d: the model has %d", tensor, m->m->n_tensors);
	const rt_tensor *t = &m->m->tensors[tensor];
	for (int i = 0; i < t->rank; i++)
		shape[i] = t->shape[i];
	return t->rank;
}

int lln_load_weights(lln_model *m, const char *path, const char *strip_prefix)
{
	char err[RT_ERRLEN];
	rt_names names = { .strip = strip_prefix && *strip_prefix ? strip_prefix : NULL };
	float *P = rt_alloc_floats(m->m->n_params);
	if (!P)
		return set_error("%s: out of memory", path);
	/* into a copy: a failure leaves the model's weights as they were */
	if (rt_params_load_named(m->m->tensors, m->m->n_tensors, &names, path, P, err)) {
		free(P);
		return set_error("%s", err);
	}
	/* copied, not swapped: lln_params pointers (numpy views) stay valid */
	memcpy(m->P, P, sizeof(float) * (size_t)m->m->n_params);
	free(P);
	return 0;
}

int lln_save_weights(const lln_model *m, const char *path)
{
	char err[RT_ERRLEN];
	const char *meta[] = { "model", m->m->name, NULL };
	if (rt_params_save(m->m->tensors, m->m->n_tensors, m->P, NULL, 0, NULL, meta, path, err))
		return set_error("%s", err);
	return 0;
}

int lln_set_tensor(lln_model *m, const char *name, const float *data, int64_t count)
{
	for (int i = 0; i < m->m->n_tensors; i++) {
		const rt_tensor *t = &m->m->tensors[i];
		if (strcmp(t->name, name) != 0)
			continue;
		if (count != t->count)
			return set_error("tensor '%s' has %lld values, not %lld", name, (long long)t->count,
			                 (long long)count);
		for (int64_t k = 0; k < count; k++)
			if (!isfinite(data[k]))
				return set_error("tensor '%s': value %lld is not finite", name, (long long)k);
		memcpy(m->P + t->offset, data, sizeof(float) * (size_t)count);
		return 0;
	}
	return set_error("model '%s' has no tensor '%s'", m->m->name, name);
}

static int check_batch(const lln_model *m, const float *x, int64_t n, int norms)
{
	if (n < 0 || (n > 0 && !x))
		return set_error("no inputs (x is NULL or n < 0)");
	if (norms & ~LLN_ALL_NORMS || !norms)
		return set_error("norms %d: give a set of LLN_L1, LLN_L2, LLN_LINF", norms);
	for (int64_t k = 0; k < n * m->m->n_in; k++)
		if (!isfinite(x[k]))
			return set_error("input %lld: value %lld is NaN or infinite", (long long)(k / m->m->n_in),
			                 (long long)(k % m->m->n_in));
	return 0;
}

int lln_certify(const lln_model *m, const float *x, int64_t n, int norms, int threads, lln_certificates *out)
{
	if (check_batch(m, x, n, norms))
		return -1;
	rt_cert *cert = rt_calloc((size_t)(n ? n : 1), sizeof *cert);
	uint64_t *pattern = rt_calloc((size_t)(n ? n : 1), sizeof *pattern);
	rt_batch b = { .x = x, .n = n, .norms = norms, .threads = threads, .cert = cert, .pattern = pattern };
	int rc = !cert || !pattern || rt_certify_batch(m->m, m->P, &b) ? set_error("out of memory") : 0;
	for (int64_t i = 0; !rc && i < n; i++) {
		const rt_cert *c = &cert[i];
		if (out->pred)
			out->pred[i] = c->label;
		for (int p = 0; p < RT_NNORMS; p++) {
			bool asked = norms & RT_NORM_BIT(p);
			if (out->eps)
				out->eps[i * 3 + p] = asked ? c->eps[p] : NAN;
			if (out->eps_pred)
				out->eps_pred[i * 3 + p] = asked ? c->eps_pred[p] : NAN;
			if (out->bind)
				out->bind[i * 3 + p] = asked ? c->bind[p] : -1;
		}
		if (out->pattern)
			out->pattern[i] = pattern[i];
		if (out->undecided)
			out->undecided[i] = c->undecided;
	}
	free(cert);
	free(pattern);
	return rc;
}

int lln_evaluate(const lln_model *m, const float *x, const int32_t *y, int64_t n, int norms, int threads,
                 lln_evaluation *out)
{
	if (check_batch(m, x, n, norms))
		return -1;
	if (!y)
		return set_error("no labels (y is NULL)");
	int32_t classes = m->m->n_out > 1 ? m->m->n_out : 2;
	for (int64_t i = 0; i < n; i++)
		if (y[i] < 0 || y[i] >= classes)
			return set_error("labels: record %lld: label %d is not a class of model '%s' (0 to %d)",
			                 (long long)(i + 1), y[i], m->m->name, classes - 1);
	rt_data d = { .n = n, .dim = m->m->n_in, .x = (float *)x, .y = (int32_t *)y };
	rt_eval e;
	if (rt_evaluate(m->m, &m->obj, m->P, &d, threads, norms, &e))
		return set_error("out of memory");
	*out = (lln_evaluation){ .n = e.n, .accuracy = e.accuracy, .loss = e.loss, .ce = e.ce,
	                         .patterns = e.patterns, .jacobians = e.jacobians };
	memcpy(out->eps_pct, e.eps_pct, sizeof out->eps_pct);
	return 0;
}

int lln_train(lln_model *m, int argc, const char *const *argv)
{
	const char *out = NULL;
	for (int i = 0; i + 1 < argc; i++)
		if (!strcmp(argv[i], "-o"))
			out = argv[i + 1];
	char **args = malloc(sizeof *args * (size_t)(argc + 2));
	if (!args)
		return set_error("lln_train: out of memory");
	args[0] = "lln_train";
	for (int i = 0; i < argc; i++)
		args[i + 1] = (char *)argv[i];
	args[argc + 1] = NULL;
	int rc = rt_train_main(m->m, m->defaults, argc + 1, args);
	free(args);
	if (rc)
		return set_error("lln_train: training failed with status %d (the reason is on standard error)", rc);
	if (!out)   /* --help */
		return 0;
	return lln_load_weights(m, out, NULL);
}

int lln_read_data(const char *path, int64_t dim, int labels, lln_data *out)
{
	char err[RT_ERRLEN];
	memset(out, 0, sizeof *out);
	if (!path)
		return set_error("lln_read_data: no path");
	rt_reader *r;
	if ((dim > 0 && labels ? rt_reader_open_labeled(path, dim, &r, err) : rt_reader_open(path, dim, &r, err)))
		return set_error("%s", err);
	float *X = NULL;
	int32_t *Y = NULL;
	int64_t count = 0, width = dim;
	int rc = 0;
	for (;;) {
		rt_data c;
		if (rt_reader_next(r, 4096, &c, err)) {
			rc = set_error("%s", err);
			break;
		}
		if (c.n == 0)
			break;
		width = c.dim;
		float *nx = realloc(X, sizeof(float) * (size_t)((count + c.n) * width));
		int32_t *ny = c.y ? realloc(Y, sizeof(int32_t) * (size_t)(count + c.n)) : Y;
		if (nx)
			X = nx;
		if (ny)
			Y = ny;
		if (!nx || (c.y && !ny)) {
			rc = set_error("%s: out of memory", path);
			break;
		}
		memcpy(X + count * width, c.x, sizeof(float) * (size_t)(c.n * width));
		if (c.y)
			memcpy(Y + count, c.y, sizeof(int32_t) * (size_t)c.n);
		count += c.n;
	}
	rt_reader_close(r);
	if (!rc && count == 0)
		rc = set_error("%s: holds no examples", path);
	if (rc) {
		free(X);
		free(Y);
		return -1;
	}
	*out = (lln_data){ .n = count, .dim = width, .x = X, .y = Y };
	return 0;
}

int lln_read_labels(const char *path, lln_data *out)
{
	char err[RT_ERRLEN];
	memset(out, 0, sizeof *out);
	if (!path)
		return set_error("lln_read_labels: no path");
	if (rt_labels_read(path, 0, &out->y, &out->n, err))
		return set_error("%s", err);
	return 0;
}

void lln_data_free(lln_data *d)
{
	if (!d)
		return;
	free(d->x);
	free(d->y);
	memset(d, 0, sizeof *d);
}
