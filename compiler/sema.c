/* sema.c: the checked program.
 *
 * The grammar accepts any name applied to any arguments; this file decides
 * what they mean.  Model statements are flattened into sema_nodes in
 * definition order (operands first), with names resolved and shapes
 * inferred; objective and train settings are matched against tables and
 * range-checked.  Every mistake is reported at the token that causes it and
 * checking goes on, so one run lists all of them.
 *
 * Everything the language knows is in tables: an operation is a line of
 * ops.def with its parameters (params_ID) and shape rule (shape_ID) here, a
 * setting is a `setting` (a plain number or a family of calls such as
 * sgd/adam/amsgrad), and a call's arguments are matched to a pspec list by
 * one binder; name resolution and the relu/usage rules apply to every
 * operation unchanged.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "llnc.h"

/* ------------------------------------------------------------------------
 * Parameter specifications and the argument binder
 * ---------------------------------------------------------------------- */
typedef enum pkind {
	P_VALUE,   /* a model value: a name or an operation */
	P_NUM,     /* finite real */
	P_INT,     /* integer-valued real */
	P_SEED,    /* non-negative integer up to 2^64 - 1 */
	P_BOOL,    /* on / off / true / false */
	P_STR,     /* non-empty string */
	P_NORM,    /* 1, 2 or inf */
} pkind;

typedef struct range {
	double lo, hi;
	bool lo_open, hi_open;
	int setting;          /* RT_SET_X + 1: the range of setting X (settings.def) */
} range;

#define ANY      { -INFINITY, INFINITY, true, true, 0 }
#define GE(x)    { (x), INFINITY, false, true, 0 }
#define GT(x)    { (x), INFINITY, true, true, 0 }
#define SET(id)  { .setting = RT_SET_##id + 1 }   /* as the flag --id */

typedef struct pspec {
	const char *name;
	pkind kind;
	bool required;
	range r;
	const char *what;     /* how messages name it; NULL: by its name */
} pspec;

typedef struct symbol symbol;

typedef struct checker {
	arena *a;
	source *src;
	sema_program *prog;
	loc loss_at;           /* the loss setting, for the output-size check */
	bool loss_bad;         /* it was reported already */
	loc output_at;         /* the output statement's name */
	int max_len;           /* the frames of 'input x[*, F]' */
	/* model block */
	symbol *syms;          /* names defined by model statements */
	int n_syms;
	int *sym_slot;         /* hash table of indices into syms, -1 free */
	size_t sym_mask;
	int64_t n_params, n_hidden;   /* running totals, for the limits */
	sema_node *nodes;
	loc *use_at;           /* per node: where its operand is written */
	loc *def_at;           /* per node: its statement's name */
	int n_nodes, cap_nodes;
} checker;

#define NELEM(x) ((int)(sizeof(x) / sizeof((x)[0])))

static void err(checker *ck, loc at, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_verror(ck->src, at, fmt, ap);
	va_end(ap);
}

/* "; did you mean 'lambda'?" for the closest candidate (rt_closest), or
 * "" when nothing is close. */
static const char *suggest(checker *ck, const char *name, const char *const *cands, int n)
{
	int k = rt_closest(name, cands, n);
	return k >= 0 ? arena_printf(ck->a, "; did you mean '%s'?", cands[k]) : "";
}

/* "a, b or c" */
static const char *alternatives(checker *ck, const char *const *names, int n)
{
	const char *s = "";
	for (int i = 0; i < n; i++)
		s = arena_printf(ck->a, "%s%s%s", s, i == 0 ? "" : i == n - 1 ? " or " : ", ", names[i]);
	return s;
}

/* A number as the user wrote it, for "got ..." in messages. */
static const char *num_text(checker *ck, const ast_expr *e)
{
	return arena_printf(ck->a, "%s%s", e->negative ? "-" : "", e->text);
}

static const char *describe(checker *ck, const ast_expr *e)
{
	switch (e->kind) {
	case AST_NUMBER: return arena_printf(ck->a, "number %s", num_text(ck, e));
	case AST_INF: return e->negative ? "-inf" : "inf";
	case AST_STRING: return arena_printf(ck->a, "string \"%s\"", e->text);
	case AST_NAME: return arena_printf(ck->a, "name '%s'", e->text);
	case AST_CALL: return arena_printf(ck->a, "call %s(...)", e->text);
	}
	internal_error("describe: bad expression kind %d", (int)e->kind);
}

static const char *what(const pspec *p)
{
	return p->what ? p->what : p->name;
}

/* Matches a call's arguments to parameters: positional ones in order, then
 * keyword ones by name.  out[i] receives parameter i's expression or NULL.
 * Returns false after reporting when the call does not fit. */
static bool bind(checker *ck, const ast_expr *call, const char *fname,
                 const pspec *ps, int np, const ast_expr **out)
{
	bool ok = true, keyword_seen = false, unknown_keyword = false, too_many = false;
	int pos = 0;
	for (int i = 0; i < np; i++)
		out[i] = NULL;
	const char **names = arena_alloc(ck->a, sizeof *names * (size_t)(np + 1));
	for (int i = 0; i < np; i++)
		names[i] = ps[i].name;
	for (const ast_arg *g = call->args; g; g = g->next) {
		if (!g->name) {
			if (keyword_seen) {
				err(ck, g->at, "positional argument after keyword arguments in %s", fname);
				ok = false;
			} else if (pos >= np) {
				if (!too_many) {
					if (np == 0)
						err(ck, g->at, "%s takes no arguments", fname);
					else
						err(ck, g->at, "too many arguments to %s: it takes at most %d", fname, np);
				}
				too_many = true;
				ok = false;
			} else {
				out[pos++] = g->value;
			}
			continue;
		}
		keyword_seen = true;
		int i = 0;
		while (i < np && strcmp(ps[i].name, g->name) != 0)
			i++;
		if (i == np) {
			if (np == 0)
				err(ck, g->at, "unknown option '%s' for %s: it takes no arguments", g->name, fname);
			else
				err(ck, g->at, "unknown option '%s' for %s%s", g->name, fname,
				    suggest(ck, g->name, names, np));
			ok = false;
			unknown_keyword = true;
		} else if (out[i]) {
			err(ck, g->at, "argument '%s' of %s is given twice", g->name, fname);
			ok = false;
		} else {
			out[i] = g->value;
		}
	}
	/* A misspelt keyword usually is the missing argument; one message. */
	if (!unknown_keyword) {
		for (int i = 0; i < np; i++) {
			if (ps[i].required && !out[i]) {
				err(ck, call->at, "missing argument '%s' for %s", ps[i].name, fname);
				ok = false;
			}
		}
	}
	return ok;
}

/* ------------------------------------------------------------------------
 * Values
 * ---------------------------------------------------------------------- */
static bool in_range(range r, double v)
{
	if (r.setting)
		return rt_setting_in_range(r.setting - 1, v, (char[64]){ 0 }, 64);
	if (r.lo_open ? !(v > r.lo) : !(v >= r.lo))
		return false;
	if (r.hi_open ? !(v < r.hi) : !(v <= r.hi))
		return false;
	return true;
}

static const char *range_text(checker *ck, const pspec *p, double v)
{
	range r = p->r;
	char rule[64];
	if (r.setting && !rt_setting_in_range(r.setting - 1, v, rule, sizeof rule))
		return arena_printf(ck->a, "%s", rule);
	if (p->kind == P_INT && r.lo == 1 && !r.lo_open && isinf(r.hi))
		return "a positive integer";
	if (p->kind == P_INT && r.lo == 0 && !r.lo_open && isinf(r.hi))
		return "a non-negative integer";
	if (isinf(r.hi))
		return arena_printf(ck->a, "%s %g", r.lo_open ? ">" : ">=", r.lo);
	return arena_printf(ck->a, "in %c%g, %g%c", r.lo_open ? '(' : '[', r.lo, r.hi,
	                    r.hi_open ? ')' : ']');
}

/* Reads a number parameter; reports and returns false when it is not a
 * number, not finite, not integral where it must be, or out of range. */
static bool get_num(checker *ck, const ast_expr *e, const pspec *p, double *out)
{
	if (e->kind == AST_INF) {
		err(ck, e->at, "%s must be a finite number, got %s", what(p), describe(ck, e));
		return false;
	}
	if (e->kind != AST_NUMBER) {
		err(ck, e->at, "%s must be a number, got %s", what(p), describe(ck, e));
		return false;
	}
	double v = e->num;
	if (p->kind == P_INT && v != floor(v)) {
		err(ck, e->at, "%s must be an integer, got %s", what(p), num_text(ck, e));
		return false;
	}
	if (!in_range(p->r, v)) {
		err(ck, e->at, "%s must be %s, got %s", what(p), range_text(ck, p, v), num_text(ck, e));
		return false;
	}
	if (p->kind == P_INT && fabs(v) > INT_MAX) {
		err(ck, e->at, "%s is too large (at most %d), got %s", what(p), INT_MAX, num_text(ck, e));
		return false;
	}
	*out = v;
	return true;
}

static bool get_int(checker *ck, const ast_expr *e, const pspec *p, int *out)
{
	double v;
	if (!get_num(ck, e, p, &v))
		return false;
	*out = (int)v;
	return true;
}

/* Seeds are 64-bit: read the digits rather than the double, which would
 * round seeds above 2^53. */
static bool get_seed(checker *ck, const ast_expr *e, const pspec *p, uint64_t *out)
{
	if (e->kind != AST_NUMBER || e->negative || e->num != floor(e->num)) {
		err(ck, e->at, "%s must be a non-negative integer, got %s", what(p),
		    e->kind == AST_NUMBER ? num_text(ck, e) : describe(ck, e));
		return false;
	}
	if (e->is_int) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(e->text, &end, 10);
		if (errno == ERANGE || *end) {
			err(ck, e->at, "%s is too large (at most %llu), got %s", what(p),
			    (unsigned long long)UINT64_MAX, e->text);
			return false;
		}
		*out = (uint64_t)v;
		return true;
	}
	if (e->num >= 18446744073709551616.0) {
		err(ck, e->at, "%s is too large (at most %llu), got %s", what(p),
		    (unsigned long long)UINT64_MAX, e->text);
		return false;
	}
	*out = (uint64_t)e->num;
	return true;
}

static bool get_bool(checker *ck, const ast_expr *e, const pspec *p, bool *out)
{
	if (e->kind == AST_NAME) {
		if (!strcmp(e->text, "on") || !strcmp(e->text, "true")) {
			*out = true;
			return true;
		}
		if (!strcmp(e->text, "off") || !strcmp(e->text, "false")) {
			*out = false;
			return true;
		}
	}
	err(ck, e->at, "%s must be on, off, true or false, got %s", what(p), describe(ck, e));
	return false;
}

static bool get_str(checker *ck, const ast_expr *e, const pspec *p, const char **out)
{
	if (e->kind != AST_STRING) {
		err(ck, e->at, "%s must be a string, got %s", what(p), describe(ck, e));
		return false;
	}
	if (!e->text[0]) {
		err(ck, e->at, "%s must not be empty", what(p));
		return false;
	}
	*out = e->text;
	return true;
}

/* The norm of the distance regularizer: 1, 2, or 0 for inf (sema_objective). */
static bool get_norm(checker *ck, const ast_expr *e, const pspec *p, int *out)
{
	if (e->kind == AST_INF && !e->negative) {
		*out = 0;
		return true;
	}
	if (e->kind == AST_NUMBER && (e->num == 1 || e->num == 2)) {
		*out = (int)e->num;
		return true;
	}
	err(ck, e->at, "%s must be 1, 2 or inf, got %s", what(p),
	    e->kind == AST_NUMBER ? num_text(ck, e) : describe(ck, e));
	return false;
}

/* Optional parameters: leave the default in *dst when absent or invalid. */
static void opt_num(checker *ck, const ast_expr *e, const pspec *p, double *dst)
{
	double v;
	if (e && get_num(ck, e, p, &v))
		*dst = v;
}

static void opt_int(checker *ck, const ast_expr *e, const pspec *p, int *dst)
{
	int v;
	if (e && get_int(ck, e, p, &v))
		*dst = v;
}

/* ------------------------------------------------------------------------
 * Settings of the objective and train blocks
 * ---------------------------------------------------------------------- */
typedef struct fspec fspec;
/* Stores a bound call into dst, the field the setting names. */
typedef void apply_fn(checker *ck, const fspec *f, const ast_expr *call,
                      const ast_expr **args, void *dst);

/* A family's name is the runtime's where the command line has the same
 * choice (rt_optimizer_names, ...), so that each is written once. */
#define NAME(s) ((const char *const[]){ s })

struct fspec {
	const char *const *name;
	const pspec *params;
	int n_params;
	apply_fn *apply;
};

typedef struct family {
	const char *what;      /* "optimizer" */
	const fspec *fns;
	int n;
} family;

typedef struct setting {
	const char *name;
	pspec spec;            /* a plain value: P_NUM, P_INT or P_SEED */
	const family *fam;     /* or a call from a family */
	size_t off;            /* where it goes in sema_program */
} setting;

/* -- loss -- */
static void apply_ce(checker *ck, const fspec *f, const ast_expr *call,
                     const ast_expr **args, void *dst)
{
	((sema_objective *)dst)->loss = LOSS_CROSS_ENTROPY;
}

static void apply_sce(checker *ck, const fspec *f, const ast_expr *call,
                      const ast_expr **args, void *dst)
{
	((sema_objective *)dst)->loss = LOSS_SIGMOID_CROSS_ENTROPY;
}

static const fspec loss_fns[] = {
	{ &rt_loss_names[0], NULL, 0, apply_ce },
	{ &rt_loss_names[1], NULL, 0, apply_sce },
};
static const family loss_family = { "loss", loss_fns, NELEM(loss_fns) };

/* -- regularizer -- */
static const pspec roll_params[] = {
	{ "lambda", P_NUM, true, SET(LAMBDA), NULL },
	{ "C", P_NUM, true, SET(C), NULL },
	{ "gamma", P_NUM, false, SET(GAMMA), NULL },
	{ "samples", P_INT, false, GE(1), NULL },
};
static const pspec distance_params[] = {
	{ "lambda", P_NUM, true, SET(LAMBDA), NULL },
	{ "p", P_NORM, false, ANY, NULL },
};

static void apply_roll(checker *ck, const fspec *f, const ast_expr *call,
                       const ast_expr **args, void *dst)
{
	sema_objective *o = dst;
	o->reg = REG_ROLL;
	opt_num(ck, args[0], &f->params[0], &o->lambda);
	opt_num(ck, args[1], &f->params[1], &o->C);
	opt_num(ck, args[2], &f->params[2], &o->gamma);
	opt_int(ck, args[3], &f->params[3], &o->samples);
	if (!args[3])
		return;
	/* approximate ROLL estimates the mean over all neurons (PAPER.md) */
	if (o->gamma != 100)
		err(ck, args[3]->at, "samples (approximate ROLL) needs gamma = 100: a top-gamma selection of "
		    "estimates is biased; got gamma = %g", o->gamma);
	const sema_model *m = &ck->prog->model;
	if (m->n_nodes > 0 && m->nodes[0].op == OP_INPUT && o->samples > m->nodes[0].size)
		err(ck, args[3]->at, "samples = %d exceeds the %d input values of '%s'", o->samples, m->nodes[0].size,
		    m->nodes[0].name);
}

static void apply_distance(checker *ck, const fspec *f, const ast_expr *call,
                           const ast_expr **args, void *dst)
{
	sema_objective *o = dst;
	o->reg = REG_DISTANCE;
	opt_num(ck, args[0], &f->params[0], &o->lambda);
	int p;
	if (args[1] && get_norm(ck, args[1], &f->params[1], &p)) {
		o->p = p;
		const char *why = rt_distance_unsupported(p);
		if (why)
			err(ck, args[1]->at, "%s, got p = %s", why, rt_p_names[p]);
	}
}

static void apply_noreg(checker *ck, const fspec *f, const ast_expr *call,
                        const ast_expr **args, void *dst)
{
	((sema_objective *)dst)->reg = REG_NONE;
}

static const fspec reg_fns[] = {
	{ &rt_objective_names[RT_OBJ_ROLL], roll_params, NELEM(roll_params), apply_roll },
	{ &rt_objective_names[RT_OBJ_DISTANCE], distance_params, NELEM(distance_params), apply_distance },
	{ NAME("none"), NULL, 0, apply_noreg },
	{ &rt_objective_names[RT_OBJ_VANILLA], NULL, 0, apply_noreg },
};
static const family reg_family = { "regularizer", reg_fns, NELEM(reg_fns) };

/* -- optimizer -- */
static const pspec sgd_params[] = {
	{ "momentum", P_NUM, false, SET(MOMENTUM), NULL },
	{ "nesterov", P_BOOL, false, ANY, NULL },
	{ "weight_decay", P_NUM, false, SET(WEIGHT_DECAY), NULL },
};
static const pspec adam_params[] = {
	{ "beta1", P_NUM, false, SET(BETA1), NULL },
	{ "beta2", P_NUM, false, SET(BETA2), NULL },
	{ "eps", P_NUM, false, SET(EPS), NULL },
	{ "weight_decay", P_NUM, false, SET(WEIGHT_DECAY), NULL },
};

static void apply_sgd(checker *ck, const fspec *f, const ast_expr *call,
                      const ast_expr **args, void *dst)
{
	sema_train *t = dst;
	t->optimizer = OPT_SGD;
	bool momentum_ok = true, b;
	double v;
	if (args[0]) {
		momentum_ok = get_num(ck, args[0], &f->params[0], &v);
		if (momentum_ok)
			t->momentum = v;
	}
	if (args[1] && get_bool(ck, args[1], &f->params[1], &b))
		t->nesterov = b;
	opt_num(ck, args[2], &f->params[2], &t->weight_decay);
	/* Nesterov's look-ahead is a step along the momentum; without momentum
	 * it silently does nothing, which is surely not what was meant. */
	const char *why = momentum_ok ? rt_nesterov_unsupported(t->nesterov, t->momentum) : NULL;
	if (why)
		err(ck, args[1] ? args[1]->at : call->at, "%s", why);
}

static void apply_adam_like(checker *ck, const fspec *f, const ast_expr **args, sema_train *t)
{
	opt_num(ck, args[0], &f->params[0], &t->beta1);
	opt_num(ck, args[1], &f->params[1], &t->beta2);
	opt_num(ck, args[2], &f->params[2], &t->adam_eps);
	opt_num(ck, args[3], &f->params[3], &t->weight_decay);
}

static void apply_adam(checker *ck, const fspec *f, const ast_expr *call,
                       const ast_expr **args, void *dst)
{
	((sema_train *)dst)->optimizer = OPT_ADAM;
	apply_adam_like(ck, f, args, dst);
}

static void apply_amsgrad(checker *ck, const fspec *f, const ast_expr *call,
                          const ast_expr **args, void *dst)
{
	((sema_train *)dst)->optimizer = OPT_AMSGRAD;
	apply_adam_like(ck, f, args, dst);
}

static const fspec opt_fns[] = {
	{ &rt_optimizer_names[RT_SGD], sgd_params, NELEM(sgd_params), apply_sgd },
	{ &rt_optimizer_names[RT_ADAM], adam_params, NELEM(adam_params), apply_adam },
	{ &rt_optimizer_names[RT_AMSGRAD], adam_params, NELEM(adam_params), apply_amsgrad },
};
static const family opt_family = { "optimizer", opt_fns, NELEM(opt_fns) };

/* -- learning-rate schedule -- */
static const pspec step_params[] = {
	{ "every", P_INT, true, SET(LR_STEP), NULL },
	{ "factor", P_NUM, false, SET(LR_GAMMA), NULL },
};

static void apply_step(checker *ck, const fspec *f, const ast_expr *call,
                       const ast_expr **args, void *dst)
{
	sema_train *t = dst;
	opt_int(ck, args[0], &f->params[0], &t->lr_step);
	opt_num(ck, args[1], &f->params[1], &t->lr_gamma);
}

static void apply_constant(checker *ck, const fspec *f, const ast_expr *call,
                           const ast_expr **args, void *dst)
{
	((sema_train *)dst)->lr_step = 0;
}

static const fspec sched_fns[] = {
	{ NAME("constant"), NULL, 0, apply_constant },
	{ NAME("step"), step_params, NELEM(step_params), apply_step },
};
static const family sched_family = { "learning-rate schedule", sched_fns, NELEM(sched_fns) };

/* -- data sets -- */
static const pspec idx_params[] = {
	{ "images", P_STR, true, ANY, "images file name" },
	{ "labels", P_STR, true, ANY, "labels file name" },
};
static const pspec csv_params[] = {
	{ "path", P_STR, true, ANY, "file name" },
};
static const pspec npy_params[] = {
	{ "x", P_STR, true, ANY, "examples file name" },
	{ "y", P_STR, true, ANY, "labels file name" },
};

static void apply_files(checker *ck, const fspec *f, const ast_expr **args, sema_data *d,
                        sema_data_kind kind)
{
	d->kind = kind;
	for (int i = 0; i < f->n_params && i < 2; i++)
		if (args[i])
			get_str(ck, args[i], &f->params[i], &d->path[i]);
}

static void apply_idx(checker *ck, const fspec *f, const ast_expr *call,
                      const ast_expr **args, void *dst)
{
	apply_files(ck, f, args, dst, DATA_IDX);
}

static void apply_csv(checker *ck, const fspec *f, const ast_expr *call,
                      const ast_expr **args, void *dst)
{
	apply_files(ck, f, args, dst, DATA_CSV);
}

static void apply_ts(checker *ck, const fspec *f, const ast_expr *call,
                     const ast_expr **args, void *dst)
{
	apply_files(ck, f, args, dst, DATA_TS);
}

static void apply_npy(checker *ck, const fspec *f, const ast_expr *call,
                      const ast_expr **args, void *dst)
{
	apply_files(ck, f, args, dst, DATA_NPY);
}

/* toy2d(kind = spirals, n = 400, noise = 0.1, seed = 0): the built-in 2-D
 * data sets (runtime/toy.c); every argument is optional. */
static const pspec toy2d_params[] = {
	{ "kind", P_STR, false, ANY, NULL },
	{ "n", P_INT, false, GE(2), NULL },
	{ "noise", P_NUM, false, GE(0), NULL },
	{ "seed", P_SEED, false, GE(0), NULL },
};

static void apply_toy2d(checker *ck, const fspec *f, const ast_expr *call,
                        const ast_expr **args, void *dst)
{
	sema_data *d = dst;
	d->kind = DATA_TOY2D;
	d->toy_kind = "spirals";
	d->toy_n = 400;
	d->toy_noise = 0.1;
	d->toy_seed = 0;
	if (args[0]) {
		static const char *const kinds[] = { "spirals", "moons" };
		const ast_expr *e = args[0];
		if (e->kind != AST_NAME && e->kind != AST_STRING)
			err(ck, e->at, "kind must be spirals or moons, got %s", describe(ck, e));
		else if (strcmp(e->text, kinds[0]) && strcmp(e->text, kinds[1])) {
			const char *sug = suggest(ck, e->text, kinds, NELEM(kinds));
			if (*sug)
				err(ck, e->at, "unknown toy2d kind '%s'%s", e->text, sug);
			else
				err(ck, e->at, "unknown toy2d kind '%s': expected spirals or moons", e->text);
		} else
			d->toy_kind = e->text;
	}
	int n;
	if (args[1] && get_int(ck, args[1], &f->params[1], &n))
		d->toy_n = n;
	opt_num(ck, args[2], &f->params[2], &d->toy_noise);
	uint64_t seed;
	if (args[3] && get_seed(ck, args[3], &f->params[3], &seed))
		d->toy_seed = seed;
	/* the examples are points in the plane */
	const sema_model *m = &ck->prog->model;
	if (m->n_nodes > 0 && m->nodes[0].op == OP_INPUT && m->nodes[0].size > 0 &&
	    m->nodes[0].size != 2)
		err(ck, call->at, "toy2d examples have 2 values, but the model's input '%s' has %d",
		    m->nodes[0].name, m->nodes[0].size);
}

static const fspec data_fns[] = {
	{ NAME("idx"), idx_params, NELEM(idx_params), apply_idx },
	{ NAME("csv"), csv_params, NELEM(csv_params), apply_csv },
	{ NAME("npy"), npy_params, NELEM(npy_params), apply_npy },
	{ NAME("ts"), csv_params, NELEM(csv_params), apply_ts },
	{ NAME("toy2d"), toy2d_params, NELEM(toy2d_params), apply_toy2d },
};
static const family data_family = { "data format", data_fns, NELEM(data_fns) };

/* init = pytorch | he: how llnc train draws fresh weights (runtime/rng.c) */
static void apply_init_pytorch(checker *ck, const fspec *f, const ast_expr *call,
                               const ast_expr **args, void *dst)
{
	*(rt_init_scheme *)dst = RT_INIT_PYTORCH;
}

static void apply_init_he(checker *ck, const fspec *f, const ast_expr *call,
                          const ast_expr **args, void *dst)
{
	*(rt_init_scheme *)dst = RT_INIT_HE;
}

static const fspec init_fns[] = {
	{ &rt_init_names[RT_INIT_PYTORCH], NULL, 0, apply_init_pytorch },
	{ &rt_init_names[RT_INIT_HE], NULL, 0, apply_init_he },
};
static const family init_family = { "initialisation", init_fns, NELEM(init_fns) };

#define AT(field) offsetof(sema_program, field)
#define NOSPEC { NULL, P_NUM, false, ANY, NULL }

static const setting objective_settings[] = {
	{ "loss", NOSPEC, &loss_family, AT(objective) },
	{ "regularizer", NOSPEC, &reg_family, AT(objective) },
};

static const setting train_settings[] = {
	{ "optimizer", NOSPEC, &opt_family, AT(train) },
	{ "lr", { "lr", P_NUM, true, SET(LR), NULL }, NULL, AT(train.lr) },
	{ "lr_schedule", NOSPEC, &sched_family, AT(train) },
	{ "batch", { "batch", P_INT, true, SET(BATCH), NULL }, NULL, AT(train.batch) },
	{ "epochs", { "epochs", P_INT, true, SET(EPOCHS), NULL }, NULL, AT(train.epochs) },
	{ "seed", { "seed", P_SEED, true, GE(0), NULL }, NULL, AT(train.seed) },
	{ "valid", { "valid", P_INT, true, SET(VALID), NULL }, NULL, AT(train.valid) },
	{ "init", NOSPEC, &init_family, AT(train.init) },
	{ "data", NOSPEC, &data_family, AT(train.data) },
	{ "test", NOSPEC, &data_family, AT(train.test) },
};

/* A setting's value from a family: a bare name (sgd) or a call (sgd(...)). */
static void apply_family(checker *ck, const ast_expr *e, const family *fam, void *dst)
{
	const char **names = arena_alloc(ck->a, sizeof *names * (size_t)fam->n);
	for (int i = 0; i < fam->n; i++)
		names[i] = *fam->fns[i].name;
	if (e->kind != AST_NAME && e->kind != AST_CALL) {
		err(ck, e->at, "%s must be %s, got %s", fam->what, alternatives(ck, names, fam->n),
		    describe(ck, e));
		return;
	}
	const fspec *f = NULL;
	for (int i = 0; i < fam->n; i++)
		if (!strcmp(*fam->fns[i].name, e->text))
			f = &fam->fns[i];
	if (!f) {
		const char *s = suggest(ck, e->text, names, fam->n);
		if (*s)
			err(ck, e->at, "unknown %s '%s'%s", fam->what, e->text, s);
		else
			err(ck, e->at, "unknown %s '%s': expected %s", fam->what, e->text,
			    alternatives(ck, names, fam->n));
		return;
	}
	/* Arguments that did bind are still checked, so a misspelt option does
	 * not hide an out-of-range value next to it. */
	const ast_expr **args = arena_alloc(ck->a, sizeof *args * (size_t)(f->n_params + 1));
	bind(ck, e, *f->name, f->params, f->n_params, args);
	f->apply(ck, f, e, args, dst);
}

static void check_settings(checker *ck, const ast_block *b, const setting *tab, int n)
{
	const ast_stmt **seen = arena_alloc(ck->a, sizeof *seen * (size_t)n);
	const char **names = arena_alloc(ck->a, sizeof *names * (size_t)n);
	for (int i = 0; i < n; i++)
		names[i] = tab[i].name;
	const char *block = ast_block_keyword(b->kind);
	for (const ast_stmt *s = b->stmts; s; s = s->next) {
		if (s->kind != AST_ASSIGN) {
			err(ck, s->at, "'%s' is only allowed in a model block",
			    s->kind == AST_INPUT ? "input" : "output");
			continue;
		}
		int i = 0;
		while (i < n && strcmp(tab[i].name, s->name) != 0)
			i++;
		if (i == n) {
			const char *sug = suggest(ck, s->name, names, n);
			if (*sug)
				err(ck, s->name_at, "unknown setting '%s' in %s block%s", s->name, block, sug);
			else
				err(ck, s->name_at, "unknown setting '%s' in %s block (known: %s)", s->name,
				    block, alternatives(ck, names, n));
			continue;
		}
		if (seen[i]) {
			err(ck, s->name_at, "'%s' is already set (first set at %d:%d)", s->name,
			    seen[i]->name_at.line, seen[i]->name_at.col);
			continue;
		}
		seen[i] = s;
		const setting *st = &tab[i];
		void *dst = (char *)ck->prog + st->off;
		if (st->fam) {
			int before = ck->src->errors;
			apply_family(ck, s->value, st->fam, dst);
			if (st->fam == &loss_family) {
				ck->loss_at = s->value->at;
				ck->loss_bad = ck->src->errors != before;
			}
		} else if (st->spec.kind == P_SEED) {
			get_seed(ck, s->value, &st->spec, dst);
		} else if (st->spec.kind == P_INT) {
			get_int(ck, s->value, &st->spec, dst);
		} else {
			get_num(ck, s->value, &st->spec, dst);
		}
	}
}

/* ------------------------------------------------------------------------
 * The model block
 * ---------------------------------------------------------------------- */
struct symbol {
	const char *name;
	loc at;          /* the defining statement's name */
	int stmt;        /* index of the defining statement in the block */
	int node;        /* its value; -1 until checked, or if it failed */
};

typedef struct stmt_ctx {
	const char *name;             /* the statement's name */
	int index;                    /* its position in the block */
	loc name_at;
	const ast_expr *param_call;   /* the parameterized op already seen */
} stmt_ctx;

typedef bool shape_fn(checker *ck, const ast_expr **args, const int *in, sema_node *out);

typedef struct op_spec {
	const char *name;
	op_kind op;
	const pspec *params;   /* P_VALUE parameters are operands, first */
	int n_params;
	shape_fn *shape;       /* fills size/ndims/dims and attributes, or reports and fails */
} op_spec;

/* Limits that keep every size computation of the later stages in range
 * (docs/language.md): element counts fit an int with room to spare, and
 * the parameter vector and the hidden neurons fit the runtime's indices. */
#define MAX_VALUE_SIZE (1 << 26)
#define MAX_PARAMS ((int64_t)1 << 31)
#define MAX_HIDDEN (1 << 30)
/* an rnn is unrolled into one op per step, built in about 0.4 s each */
#define MAX_RNN_STEPS SEMA_MAX_STEPS

static const pspec params_DENSE[] = {
	{ "x", P_VALUE, true, ANY, NULL },
	{ "n", P_INT, true, GE(1), "dense size" },
};
static const pspec params_CONV2D[] = {
	{ "x", P_VALUE, true, ANY, NULL },
	{ "out", P_INT, true, GE(1), "conv2d output channels" },
	{ "kernel", P_INT, true, GE(1), "conv2d kernel size" },
	{ "stride", P_INT, false, GE(1), "conv2d stride" },
	{ "padding", P_INT, false, GE(0), "conv2d padding" },
};
static const pspec params_AVGPOOL[] = {
	{ "x", P_VALUE, true, ANY, NULL },
	{ "kernel", P_INT, true, GE(1), "avgpool kernel size" },
	{ "stride", P_INT, false, GE(1), "avgpool stride" },
};
static const pspec params_ADD[] = {
	{ "a", P_VALUE, true, ANY, NULL },
	{ "b", P_VALUE, true, ANY, NULL },
};
static const pspec params_RELU[] = {
	{ "x", P_VALUE, true, ANY, NULL },
};
static const pspec params_RNN[] = {
	{ "x", P_VALUE, true, ANY, NULL },
	{ "n", P_INT, true, GE(1), "rnn size" },
};
static const pspec params_LAST[] = {
	{ "h", P_VALUE, true, ANY, NULL },
};

static shape_fn shape_DENSE, shape_CONV2D, shape_AVGPOOL, shape_ADD, shape_RELU, shape_RNN, shape_LAST;

const op_info op_catalogue[OP_COUNT] = {
	[OP_INPUT] = { "input", 0, false, false, "input x[dims]" },
#define OP(id, name, operands, parameterized, linear, signature) \
	[OP_##id] = { name, operands, parameterized, linear, signature },
#include "ops.def"
#undef OP
};

static const op_spec ops[] = {
#define OP(id, name, operands, parameterized, linear, signature) \
	{ name, OP_##id, params_##id, NELEM(params_##id), shape_##id },
#include "ops.def"
#undef OP
};

static const char *op_name(op_kind op) { return op_catalogue[op].name; }
static bool is_layer(op_kind op) { return op_catalogue[op].linear; }

/* "[1, 12, 12]" */
static const char *shape_text(checker *ck, const sema_node *n)
{
	char *s = arena_printf(ck->a, "[");
	for (int i = 0; i < n->ndims; i++)
		s = arena_printf(ck->a, "%s%s%d", s, i ? ", " : "", n->dims[i]);
	return arena_printf(ck->a, "%s]", s);
}

static void set_dims(sema_node *out, int ndims, const int *dims)
{
	out->ndims = ndims;
	out->size = 1;
	for (int i = 0; i < ndims; i++) {
		out->dims[i] = dims[i];
		out->size *= dims[i];
	}
}

/* Sizes are computed in 64 bits and refused past MAX_VALUE_SIZE, so no
 * product below overflows. */
static bool size_ok(checker *ck, loc at, const char *what, int64_t size)
{
	if (size <= MAX_VALUE_SIZE)
		return true;
	err(ck, at, "%s has %lld elements; lln supports at most %d per value", what, (long long)size,
	    MAX_VALUE_SIZE);
	return false;
}

/* dense flattens its input in C-major order: only the element count matters. */
static bool shape_DENSE(checker *ck, const ast_expr **args, const int *in, sema_node *out)
{
	int n;
	if (!get_int(ck, args[1], &params_DENSE[1], &n) || !size_ok(ck, args[1]->at, "dense", n))
		return false;
	out->units = n;
	set_dims(out, 1, &n);
	return true;
}

/* The operand of an image operation must have C x H x W dims. */
static const sema_node *image_operand(checker *ck, const ast_expr *arg, int in, const char *op)
{
	const sema_node *x = &ck->nodes[in];
	if (x->ndims == 3)
		return x;
	err(ck, arg->at, "%s needs an image [C, H, W], but '%s' has shape %s", op, x->name, shape_text(ck, x));
	return NULL;
}

/* Output size of a window sliding over n positions; reports when empty. */
static bool window(checker *ck, loc at, const char *op, const char *axis, int n, int k, int s, int p, int *out)
{
	int64_t span = (int64_t)n + 2 * (int64_t)p;
	if (k > span) {
		err(ck, at, "%s kernel %d is larger than the %s of its input (%d%s)", op, k, axis, n,
		    p ? arena_printf(ck->a, " plus padding 2 x %d", p) : "");
		return false;
	}
	*out = (int)((span - k) / s + 1);
	return true;
}

static bool shape_CONV2D(checker *ck, const ast_expr **args, const int *in, sema_node *out)
{
	const sema_node *x = image_operand(ck, args[0], in[0], "conv2d");
	int oc = 0, k = 0, stride = 1, pad = 0;
	/* every argument is checked, so that one run reports all their errors */
	bool ok = get_int(ck, args[1], &params_CONV2D[1], &oc);
	ok = get_int(ck, args[2], &params_CONV2D[2], &k) && ok;
	if (args[3])
		ok &= get_int(ck, args[3], &params_CONV2D[3], &stride);
	if (args[4])
		ok &= get_int(ck, args[4], &params_CONV2D[4], &pad);
	if (!ok || !x)
		return false;
	int dims[3] = { oc, 0, 0 };
	if (!window(ck, args[2]->at, "conv2d", "height", x->dims[1], k, stride, pad, &dims[1]) ||
	    !window(ck, args[2]->at, "conv2d", "width", x->dims[2], k, stride, pad, &dims[2]) ||
	    !size_ok(ck, out->at, "conv2d output", (int64_t)oc * dims[1] * dims[2]) ||
	    !size_ok(ck, args[1]->at, "conv2d weight", (int64_t)oc * x->dims[0] * k * k))
		return false;
	out->units = oc;
	out->kernel = k;
	out->stride = stride;
	out->padding = pad;
	set_dims(out, 3, dims);
	return true;
}

static bool shape_AVGPOOL(checker *ck, const ast_expr **args, const int *in, sema_node *out)
{
	const sema_node *x = image_operand(ck, args[0], in[0], "avgpool");
	int k = 0, stride = 0;
	bool ok = get_int(ck, args[1], &params_AVGPOOL[1], &k);
	if (args[2])
		ok &= get_int(ck, args[2], &params_AVGPOOL[2], &stride);
	if (!ok || !x)
		return false;
	if (!args[2])
		stride = k;
	int dims[3] = { x->dims[0], 0, 0 };
	if (!window(ck, args[1]->at, "avgpool", "height", x->dims[1], k, stride, 0, &dims[1]) ||
	    !window(ck, args[1]->at, "avgpool", "width", x->dims[2], k, stride, 0, &dims[2]))
		return false;
	out->kernel = k;
	out->stride = stride;
	set_dims(out, 3, dims);
	return true;
}

static bool shape_ADD(checker *ck, const ast_expr **args, const int *in, sema_node *out)
{
	const sema_node *a = &ck->nodes[in[0]], *b = &ck->nodes[in[1]];
	bool same = a->ndims == b->ndims;
	for (int i = 0; same && i < a->ndims; i++)
		same = a->dims[i] == b->dims[i];
	if (!same) {
		err(ck, args[1]->at, "add needs operands of one shape, but '%s' has shape %s and '%s' has shape %s",
		    a->name, shape_text(ck, a), b->name, shape_text(ck, b));
		return false;
	}
	set_dims(out, a->ndims, a->dims);
	return true;
}

/* A ReLU's neurons are the pre-activations of the layer before it, so it
 * must follow a linear operation: relu of the input or of a relu has no
 * neurons of its own. */
static bool shape_RELU(checker *ck, const ast_expr **args, const int *in, sema_node *out)
{
	const sema_node *x = &ck->nodes[in[0]];
	if (!is_layer(x->op)) {
		if (x->op == OP_INPUT)
			err(ck, args[0]->at, "relu cannot be applied to the input '%s': it must follow a layer such as dense",
			    x->name);
		else
			err(ck, args[0]->at, "relu cannot be applied to '%s', which is a %s: it must follow a layer such as dense",
			    x->name, op_name(x->op));
		return false;
	}
	set_dims(out, x->ndims, x->dims);
	return true;
}

/* rnn(x, n) runs over a sequence [T, F]: the input, or the states of an
 * rnn below it (stacked layers).  Its states [T, n] are hidden neurons
 * with the ReLU built in; what reads them is another rnn or last(h). */
static bool shape_RNN(checker *ck, const ast_expr **args, const int *in, sema_node *out)
{
	const sema_node *x = &ck->nodes[in[0]];
	int n;
	if (!get_int(ck, args[1], &params_RNN[1], &n) || !size_ok(ck, args[1]->at, "rnn", n))
		return false;
	if (x->ndims != 2 || (x->op != OP_INPUT && x->op != OP_RNN)) {
		err(ck, args[0]->at, "rnn needs a sequence [T, F] (the input or another rnn's states), but '%s' has shape %s",
		    x->name, shape_text(ck, x));
		return false;
	}
	if (x->dims[0] > MAX_RNN_STEPS) {
		err(ck, args[0]->at, "rnn over %d time steps; lln unrolls a recurrence step by step and supports at most %d",
		    x->dims[0], MAX_RNN_STEPS);
		return false;
	}
	int dims[2] = { x->dims[0], n };
	if (!size_ok(ck, out->at, "rnn states", (int64_t)dims[0] * n) ||
	    !size_ok(ck, args[1]->at, "rnn weight", (int64_t)n * (x->dims[1] + n)))
		return false;
	out->units = n;
	set_dims(out, 2, dims);
	return true;
}

/* last(h): the final state h_T of an rnn, a vector. */
static bool shape_LAST(checker *ck, const ast_expr **args, const int *in, sema_node *out)
{
	const sema_node *h = &ck->nodes[in[0]];
	if (h->op != OP_RNN) {
		err(ck, args[0]->at, "last needs the states of an rnn, but '%s' is %s", h->name,
		    h->op == OP_INPUT ? "the input" : arena_printf(ck->a, "a %s", op_name(h->op)));
		return false;
	}
	set_dims(out, 1, &h->dims[1]);
	return true;
}

/* Symbols: an open-addressing table keyed by name, so that checking is
 * linear in the number of statements. */
static uint64_t name_hash(const char *s)
{
	return rt_fnv1a(RT_FNV_BASIS, s, strlen(s));
}

static symbol *find_sym(checker *ck, const char *name)
{
	for (size_t i = name_hash(name) & ck->sym_mask;; i = (i + 1) & ck->sym_mask) {
		int k = ck->sym_slot[i];
		if (k < 0)
			return NULL;
		if (!strcmp(ck->syms[k].name, name))
			return &ck->syms[k];
	}
}

static void add_sym(checker *ck, symbol s)
{
	size_t i = name_hash(s.name) & ck->sym_mask;
	while (ck->sym_slot[i] >= 0)
		i = (i + 1) & ck->sym_mask;
	ck->sym_slot[i] = ck->n_syms;
	ck->syms[ck->n_syms++] = s;
}

/* Parameters a node owns: weight and bias. */
static int64_t node_params(const checker *ck, const sema_node *n)
{
	switch (n->op) {
	case OP_DENSE: return (int64_t)n->units * (ck->nodes[n->in[0]].size + 1);
	case OP_CONV2D: return (int64_t)n->units * ((int64_t)ck->nodes[n->in[0]].dims[0] * n->kernel * n->kernel + 1);
	case OP_RNN: return (int64_t)n->units * (ck->nodes[n->in[0]].dims[1] + n->units + 2);
	default: return 0;
	}
}

/* Adds a node, or reports a model past the limits and returns -1. */
static int add_node(checker *ck, const sema_node *n, loc use_at, loc def_at)
{
	if (ck->n_nodes == ck->cap_nodes)
		internal_error("sema: more nodes than calls in the model");
	ck->n_params += node_params(ck, n);
	if (n->op == OP_RELU || n->op == OP_RNN)
		ck->n_hidden += n->size;
	if (ck->n_params > MAX_PARAMS) {
		err(ck, n->at, "the model has more than %lld parameters up to here; lln supports at most that many",
		    (long long)MAX_PARAMS);
		return -1;
	}
	if (ck->n_hidden > MAX_HIDDEN) {
		err(ck, n->at, "the model has more than %d hidden neurons up to here; lln supports at most that many",
		    MAX_HIDDEN);
		return -1;
	}
	int i = ck->n_nodes++;
	ck->nodes[i] = *n;
	ck->use_at[i] = use_at;
	ck->def_at[i] = def_at;
	return i;
}

/* The node a name stands for in statement sc, or -1 after reporting. */
static int lookup(checker *ck, const char *name, loc at, const stmt_ctx *sc)
{
	symbol *s = find_sym(ck, name);
	if (!s) {
		const char **names = arena_alloc(ck->a, sizeof *names * (size_t)(ck->n_syms + 1));
		for (int i = 0; i < ck->n_syms; i++)
			names[i] = ck->syms[i].name;
		err(ck, at, "unknown name '%s'%s", name, suggest(ck, name, names, ck->n_syms));
		return -1;
	}
	if (s->stmt == sc->index) {
		err(ck, at, "'%s' is used in its own definition", name);
		return -1;
	}
	if (s->stmt > sc->index) {
		err(ck, at, "'%s' is used before its definition at %d:%d", name, s->at.line, s->at.col);
		return -1;
	}
	return s->node;   /* -1 if its definition failed: already reported */
}

static int apply_op(checker *ck, const ast_expr *call, stmt_ctx *sc);

/* The node an operand expression stands for, or -1 after reporting. */
static int value_of(checker *ck, const ast_expr *e, stmt_ctx *sc)
{
	switch (e->kind) {
	case AST_NAME:
		return lookup(ck, e->text, e->at, sc);
	case AST_CALL:
		return apply_op(ck, e, sc);
	default:
		err(ck, e->at, "expected a value (a name or an operation such as relu(x)), got %s",
		    describe(ck, e));
		return -1;
	}
}

/* Flattens one call and its nested operand calls into nodes, operands
 * first; returns the call's node or -1 after reporting. */
static int apply_op(checker *ck, const ast_expr *call, stmt_ctx *sc)
{
	const op_spec *op = NULL;
	for (int i = 0; i < NELEM(ops); i++)
		if (!strcmp(ops[i].name, call->text))
			op = &ops[i];
	if (!op) {
		const char *names[NELEM(ops)];
		for (int i = 0; i < NELEM(ops); i++)
			names[i] = ops[i].name;
		const char *s = suggest(ck, call->text, names, NELEM(ops));
		if (*s)
			err(ck, call->at, "unknown operation '%s'%s", call->text, s);
		else
			err(ck, call->at, "unknown operation '%s': expected %s", call->text,
			    alternatives(ck, names, NELEM(ops)));
		return -1;
	}
	bool ok = true;
	/* Checked before the operands so that "the second" is the second in
	 * reading order: in dense(dense(x, 3), 4) it is the inner one. */
	if (op_catalogue[op->op].parameterized) {
		if (sc->param_call) {
			err(ck, call->at,
			    "a statement may contain only one %s (the first is at %d:%d): its parameters are named after the statement '%s'; give this one a statement of its own",
			    op->name, sc->param_call->at.line, sc->param_call->at.col, sc->name);
			ok = false;
		} else {
			sc->param_call = call;
		}
	}
	const ast_expr *args[8];
	int in[8] = { -1, -1, -1, -1, -1, -1, -1, -1 };
	if (op->n_params > NELEM(args))
		internal_error("sema: operation %s has too many parameters", op->name);
	if (!bind(ck, call, op->name, op->params, op->n_params, args))
		ok = false;
	loc use_at = { 0, 0 };
	for (int i = 0; i < op->n_params; i++) {
		in[i] = -1;
		if (op->params[i].kind != P_VALUE || !args[i])
			continue;
		in[i] = value_of(ck, args[i], sc);
		if (in[i] < 0)
			ok = false;
		else if (!use_at.line)
			use_at = args[i]->at;
	}
	for (int i = 0; ok && i < op->n_params; i++)
		if (in[i] >= 0 && ck->nodes[in[i]].op == OP_RNN && op->op != OP_RNN && op->op != OP_LAST) {
			err(ck, args[i]->at, "'%s' is the states of an rnn, a sequence %s; %s cannot read it: take last(%s)",
			    ck->nodes[in[i]].name, shape_text(ck, &ck->nodes[in[i]]), op->name, ck->nodes[in[i]].name);
			ok = false;
		} else if (in[i] == 0 && ck->prog->model.max_len && op->op != OP_RNN) {
			err(ck, args[i]->at, "'%s' is a sequence whose length varies ([*, %d]); only rnn can read it",
			    ck->nodes[0].name, ck->nodes[0].dims[1]);
			ok = false;
		}
	if (!ok)
		return -1;
	sema_node n = { .op = op->op, .at = call->at, .name = sc->name, .in = { in[0], in[1] } };
	if (!op->shape(ck, args, in, &n))
		return -1;
	return add_node(ck, &n, use_at, sc->name_at);
}

static int count_calls(const ast_expr *e)
{
	if (!e || e->kind != AST_CALL)
		return 0;
	int n = 1;
	for (const ast_arg *g = e->args; g; g = g->next)
		n += count_calls(g->value);
	return n;
}

/* (bounded so that normalized inputs, pre-activations and radii stay far
 * from overflow and underflow in the kernels' doubles and the floats they
 * report) */
static const pspec normalize_params[] = {
	{ "mean", P_NUM, true, { -1e30, 1e30, false, false, 0 }, NULL },
	{ "std", P_NUM, true, { 1e-30, 1e30, false, false, 0 }, NULL },
};

static void check_input(checker *ck, const ast_stmt *s, symbol *sym)
{
	static const pspec dim = { "dim", P_INT, true, GE(1), "input dimension" };
	sema_model *m = &ck->prog->model;
	sema_node n = { .op = OP_INPUT, .at = s->name_at, .name = s->name, .in = { -1, -1 } };
	bool ok = true;
	long long size = 1;
	int k = 0;
	for (const ast_arg *g = s->dims; g; g = g->next, k++) {
		if (k == NELEM(n.dims)) {
			err(ck, g->at, "input '%s' has %d dimensions; at most %d are supported", s->name,
			    s->n_dims, NELEM(n.dims));
			ok = false;
			break;
		}
		int d;
		if (!g->value) {   /* '*': a sequence of free length, up to max_len frames */
			if (k != 0 || s->n_dims != 2) {
				err(ck, g->at, "'*' stands for a sequence's length: only the first of two dimensions, "
				    "as in 'input %s[*, F]', can be '*'", s->name);
				ok = false;
				continue;
			}
			d = ck->max_len;
			m->max_len = d;
		} else if (!get_int(ck, g->value, &dim, &d)) {
			ok = false;
			continue;
		}
		n.dims[k] = d;
		size *= d;
		if (size > MAX_VALUE_SIZE) {
			err(ck, s->name_at, "input '%s' is too large: more than %d elements", s->name, MAX_VALUE_SIZE);
			ok = false;
			break;
		}
	}
	n.ndims = k < NELEM(n.dims) ? k : NELEM(n.dims);
	n.size = ok ? (int)size : 0;
	if (s->normalize) {
		const ast_expr *args[2];
		double mean, std;
		if (bind(ck, s->normalize, "normalize", normalize_params, 2, args) &&
		    get_num(ck, args[0], &normalize_params[0], &mean) &&
		    get_num(ck, args[1], &normalize_params[1], &std)) {
			m->normalize = true;
			m->mean = mean;
			m->std = std;
		}
	}
	/* Even a malformed input becomes node 0, so its users do not report
	 * it again as unknown. */
	sym->node = add_node(ck, &n, s->name_at, s->name_at);
}

/* A linear value goes through relu at most once, and when it does, every
 * other use must take the relu's value: its hidden neurons are the
 * pre-activations, and later operations see them only after the ReLU.
 * Every value must reach the output. */
static void check_usage(checker *ck)
{
	const sema_model *m = &ck->prog->model;
	int nn = ck->n_nodes;
	int *relu_of = arena_alloc(ck->a, sizeof *relu_of * (size_t)(nn + 1));
	int *raw_use = arena_alloc(ck->a, sizeof *raw_use * (size_t)(nn + 1));   /* a non-relu user, +1 */
	for (int i = 0; i < nn; i++)
		relu_of[i] = -1;
	for (int j = 0; j < nn; j++) {
		for (int k = 0; k < 2; k++) {
			int a = ck->nodes[j].in[k];
			if (a < 0)
				continue;
			if (ck->nodes[j].op != OP_RELU) {
				if (!raw_use[a])
					raw_use[a] = j + 1;
			} else if (relu_of[a] >= 0) {
				loc first = ck->nodes[relu_of[a]].at;
				err(ck, ck->use_at[j], "'%s' already passes through relu at %d:%d; use that value instead",
				    ck->nodes[a].name, first.line, first.col);
			} else {
				relu_of[a] = j;
			}
		}
	}
	for (int a = 0; a < nn; a++) {
		if (relu_of[a] < 0 || (!raw_use[a] && a != m->output))
			continue;
		loc r = ck->nodes[relu_of[a]].at;
		err(ck, raw_use[a] ? ck->use_at[raw_use[a] - 1] : ck->output_at,
		    "'%s' is used here without the relu it passes through at %d:%d; its neurons are hidden, so use the relu's value",
		    ck->nodes[a].name, r.line, r.col);
	}
	if (m->output < 0)
		return;   /* without an output everything would look unused */
	bool *reach = arena_alloc(ck->a, sizeof *reach * (size_t)(nn + 1));
	bool *used = arena_alloc(ck->a, sizeof *used * (size_t)(nn + 1));
	reach[m->output] = true;
	for (int i = m->output; i >= 0; i--)   /* operands precede users */
		for (int k = 0; k < 2; k++)
			if (ck->nodes[i].in[k] >= 0) {
				used[ck->nodes[i].in[k]] = true;
				if (reach[i])
					reach[ck->nodes[i].in[k]] = true;
			}
	for (int i = 0; i < nn; i++)
		if (!reach[i] && !used[i])   /* unreachable chains are reported at their end */
			err(ck, ck->def_at[i], "'%s' is never used: its value does not reach the output '%s'",
			    ck->nodes[i].name, ck->nodes[m->output].name);
}

static void check_model(checker *ck, const ast_block *b)
{
	sema_model *m = &ck->prog->model;
	m->name = b->name;
	m->at = b->name_at;
	m->output = -1;
	int n_stmts = 0, n_calls = 0;
	for (const ast_stmt *s = b->stmts; s; s = s->next) {
		n_stmts++;
		n_calls += count_calls(s->value);
	}
	ck->syms = arena_alloc(ck->a, sizeof *ck->syms * (size_t)(n_stmts + 1));
	size_t slots = 16;
	while (slots < 2 * (size_t)n_stmts)
		slots *= 2;
	ck->sym_slot = arena_alloc(ck->a, sizeof *ck->sym_slot * slots);
	memset(ck->sym_slot, 0xff, sizeof *ck->sym_slot * slots);
	ck->sym_mask = slots - 1;
	bool *skip = arena_alloc(ck->a, sizeof *skip * (size_t)(n_stmts + 1));

	/* Pass 1: every name with its statement, so a use can tell "unknown"
	 * from "defined later". */
	const ast_stmt *input = NULL, *output = NULL;
	int i = 0, output_index = 0;
	for (const ast_stmt *s = b->stmts; s; s = s->next, i++) {
		if (s->kind == AST_OUTPUT) {
			if (output) {
				err(ck, s->at, "more than one output: the first is at %d:%d", output->at.line,
				    output->at.col);
			} else {
				output = s;
				output_index = i;
			}
			continue;
		}
		if (s->kind == AST_INPUT && input) {
			err(ck, s->at, "more than one input: the first is at %d:%d", input->at.line,
			    input->at.col);
			skip[i] = true;
			continue;
		}
		symbol *prev = find_sym(ck, s->name);
		if (prev) {
			err(ck, s->name_at, "'%s' is already defined (first defined at %d:%d)", s->name,
			    prev->at.line, prev->at.col);
			skip[i] = true;
			continue;
		}
		if (s->kind == AST_INPUT)
			input = s;
		add_sym(ck, (symbol){ s->name, s->name_at, i, -1 });
	}
	if (!input)
		err(ck, b->name_at, "model '%s' has no input: declare one, e.g. 'input x[784];'", b->name);
	if (!output)
		err(ck, b->name_at, "model '%s' has no output: name its logits with 'output NAME;'", b->name);

	ck->cap_nodes = n_calls + 1;
	ck->nodes = arena_alloc(ck->a, sizeof *ck->nodes * (size_t)ck->cap_nodes);
	ck->use_at = arena_alloc(ck->a, sizeof *ck->use_at * (size_t)ck->cap_nodes);
	ck->def_at = arena_alloc(ck->a, sizeof *ck->def_at * (size_t)ck->cap_nodes);
	/* The input first, so it is nodes[0] wherever it is written. */
	if (input)
		check_input(ck, input, find_sym(ck, input->name));

	/* Pass 2: statements in order. */
	i = 0;
	for (const ast_stmt *s = b->stmts; s; s = s->next, i++) {
		if (skip[i] || s->kind != AST_ASSIGN)
			continue;
		stmt_ctx sc = { s->name, i, s->name_at, NULL };
		const ast_expr *v = s->value;
		if (v->kind == AST_CALL)
			find_sym(ck, s->name)->node = apply_op(ck, v, &sc);
		else if (v->kind == AST_NAME)
			err(ck, v->at, "expected an operation such as relu(%s): a model statement cannot just rename a value",
			    v->text);
		else
			err(ck, v->at, "expected an operation such as dense(x, n) or relu(x), got %s",
			    describe(ck, v));
	}

	if (output) {
		ck->output_at = output->name_at;
		stmt_ctx sc = { output->name, output_index, output->name_at, NULL };
		int o = lookup(ck, output->name, output->name_at, &sc);
		if (o >= 0) {
			const sema_node *x = &ck->nodes[o];
			if (!is_layer(x->op))
				err(ck, output->name_at,
				    "the output must be a layer such as dense (its values are the logits), but '%s' is %s",
				    output->name, x->op == OP_INPUT ? "the input" : arena_printf(ck->a, "a %s", op_name(x->op)));
			else
				m->output = o;
		}
	}
	check_usage(ck);
	m->nodes = ck->nodes;
	m->n_nodes = ck->n_nodes;
}

/* ------------------------------------------------------------------------
 * The program
 * ---------------------------------------------------------------------- */
static void set_defaults(sema_program *p)
{
	p->model.mean = 0;
	p->model.std = 1;
	p->model.output = -1;
	/* the defaults of the command line's flags (runtime/settings.def) */
#define D(id) rt_setting_default(RT_SET_##id)
	p->objective = (sema_objective){
		.loss = LOSS_CROSS_ENTROPY, .reg = (sema_reg)D(OBJECTIVE), .lambda = D(LAMBDA), .C = D(C),
		.gamma = D(GAMMA), .p = (int)D(P),
	};
	p->train = (sema_train){
		.optimizer = (sema_optimizer)D(OPTIMIZER), .lr = D(LR), .momentum = D(MOMENTUM),
		.nesterov = D(NESTEROV) != 0, .beta1 = D(BETA1), .beta2 = D(BETA2), .adam_eps = D(EPS),
		.weight_decay = D(WEIGHT_DECAY), .lr_step = (int)D(LR_STEP), .lr_gamma = D(LR_GAMMA),
		.batch = (int)D(BATCH), .epochs = (int)D(EPOCHS), .seed = (uint64_t)D(SEED),
		.valid = (int)D(VALID), .init = (rt_init_scheme)D(INIT_SCHEME),
		.data = { DATA_NONE, { NULL, NULL } }, .test = { DATA_NONE, { NULL, NULL } },
	};
#undef D
}

/* sema's choices index the runtime's name lists */
_Static_assert((int)REG_NONE == RT_OBJ_VANILLA && (int)REG_ROLL == RT_OBJ_ROLL &&
               (int)REG_DISTANCE == RT_OBJ_DISTANCE, "sema_reg follows rt_obj_kind");
_Static_assert((int)OPT_SGD == RT_SGD && (int)OPT_ADAM == RT_ADAM && (int)OPT_AMSGRAD == RT_AMSGRAD,
               "sema_optimizer follows rt_opt_kind");
_Static_assert((int)LOSS_CROSS_ENTROPY == 0 && (int)LOSS_SIGMOID_CROSS_ENTROPY == 1,
               "sema_loss follows rt_loss_names");

/* The loss decides how many logits the model must have. */
static void check_loss(checker *ck)
{
	const sema_program *p = ck->prog;
	if (p->model.output < 0 || ck->loss_bad)
		return;
	const sema_node *o = &p->model.nodes[p->model.output];
	loc at = ck->loss_at.line ? ck->loss_at : ck->output_at;
	if (p->objective.loss == LOSS_CROSS_ENTROPY && o->size < 2)
		err(ck, at, "cross_entropy needs at least 2 outputs, but '%s' has %d; use sigmoid_cross_entropy for a single logit",
		    o->name, o->size);
	if (p->objective.loss == LOSS_SIGMOID_CROSS_ENTROPY && o->size != 1)
		err(ck, at, "sigmoid_cross_entropy needs exactly one output logit, but '%s' has %d",
		    o->name, o->size);
}

sema_program *sema_check(arena *a, const ast_program *ast)
{
	return sema_check_len(a, ast, SEMA_MAX_LEN);
}

sema_program *sema_check_len(arena *a, const ast_program *ast, int max_len)
{
	if (!ast)
		return NULL;
	checker ck = { .a = a, .src = ast->src, .max_len = max_len };
	int before = ck.src->errors;
	sema_program *p = arena_alloc(a, sizeof *p);
	ck.prog = p;
	p->src = ast->src;
	set_defaults(p);

	const ast_block *first[3] = { NULL, NULL, NULL };   /* by ast_block_kind */
	for (const ast_block *b = ast->blocks; b; b = b->next) {
		if (first[b->kind])
			err(&ck, b->at, "more than one %s block: the first is at %d:%d",
			    ast_block_keyword(b->kind), first[b->kind]->at.line, first[b->kind]->at.col);
		else
			first[b->kind] = b;
	}
	if (first[AST_MODEL])
		check_model(&ck, first[AST_MODEL]);
	else
		err(&ck, (loc){ 1, 1 }, "no model block: a program needs one 'model NAME { ... }'");
	if (first[AST_OBJECTIVE]) {
		p->has_objective = true;
		check_settings(&ck, first[AST_OBJECTIVE], objective_settings, NELEM(objective_settings));
	}
	if (first[AST_TRAIN]) {
		p->has_train = true;
		check_settings(&ck, first[AST_TRAIN], train_settings, NELEM(train_settings));
	}
	check_loss(&ck);
	return ck.src->errors == before ? p : NULL;
}
