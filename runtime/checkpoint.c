/* checkpoint.c: the files a training run saves and resumes from.
 *
 * The weights file (OUT: the model's tensors and what they come from) and
 * the checkpoint (the weights, the optimizer state as optim.STATE.NAME, the
 * best weights as optim.best.NAME, and the run's counters as metadata).
 * Resuming checks every number of the checkpoint against what a run can
 * have written, and the settings that must not change against the
 * command line, before any of it is used.  Layout: docs/training.md.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train.h"

/* The checkpoint's extra tensors: optimizer state arrays, then the best
 * weights so far (with validation), all shaped like the model's tensors. */
int rt_ckpt_layout(run *r)
{
	const rt_model *m = r->m;
	int arrays = r->os.nstate + run_has_valid(r);
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

int rt_save_weights(run *r, const float *P, int epoch, double vloss)
{
	char err[RT_ERRLEN], ep[32], vl[40], seed[32], obj[160];
	snprintf(ep, sizeof ep, "%d", epoch);
	snprintf(vl, sizeof vl, "%.17g", vloss);
	snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->c->seed);
	objective_text(r, obj, sizeof obj);
	const char *md[] = {
		"format", "lln-weights", "model", r->m->name, "epoch", ep,
		"loss", r->sigmoid ? "sigmoid_cross_entropy" : "cross_entropy", "regularizer", obj,
		"seed", seed, run_has_valid(r) ? "valid_loss" : NULL, vl, NULL, NULL,
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

int rt_save_checkpoint(run *r, int epoch)
{
	const rt_model *m = r->m;
	char err[RT_ERRLEN], ep[32], step[32], bl[40], be[32], seed[32], valid[32], ntr[32], obj[160];
	if (r->os.nstate)
		memcpy(r->E, r->os.mem, sizeof(float) * (size_t)(r->os.nstate * m->n_params));
	if (run_has_valid(r))
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
		"best_valid_loss", bl, "best_epoch", be, "seed", seed, "optimizer", rt_optimizer_names[r->c->opt.kind],
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

int rt_resume(run *r)
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
	if (strcmp(v, rt_optimizer_names[c->opt.kind]) != 0) {
		fprintf(stderr, "%s: was trained with optimizer %s; resuming needs the same optimizer, "
		        "not %s\n", path, v, rt_optimizer_names[c->opt.kind]);
		return 1;
	}
	if (ckpt_meta(r, "optimizer_state", v, sizeof v))
		return 1;
	char states[64];
	state_list(r, states, sizeof states);
	if (strcmp(v, states) != 0) {
		fprintf(stderr, "%s: holds optimizer state '%s' but %s with these settings keeps '%s' "
		        "(momentum 0 keeps none); resume with the settings of the checkpoint\n", path, v,
		        rt_optimizer_names[c->opt.kind], states);
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
	if (run_has_valid(r))
		memcpy(r->best, r->E + (int64_t)r->os.nstate * m->n_params, sizeof(float) * (size_t)m->n_params);
	r->os.step = step;
	r->start_epoch = (int)epoch;
	r->best_epoch = (int)best_epoch;
	return 0;
}
