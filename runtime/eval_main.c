/* eval_main.c: the `eval` command.
 *
 * Evaluates weights on a labeled data set (by default the train block's
 * test set, else its data): accuracy, the objective's loss, margin
 * percentiles, distinct activation patterns and logit Jacobians, as a
 * table or one JSON object, optionally with every example's margins.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train.h"

/* --distortion EPS and --clip LO,HI|none into c->dist (the other distortion
 * settings are read by the table); 0 or exit status 2. */
static int distortion_opts(config *c)
{
	char *end;
	double eps = strtod(c->distortion, &end);
	if (end == c->distortion || *end || !isfinite(eps) || eps < 0)
		return rt_usage_fail(c, "--distortion takes a radius >= 0, got '%s'", c->distortion);
	double lo = 1, hi = 0;   /* lo > hi: no clipping */
	if (strcmp(c->clip, "none") != 0) {
		lo = strtod(c->clip, &end);
		if (end == c->clip || *end != ',' || (hi = strtod(end + 1, &end), *end) || !(lo <= hi) ||
		    !isfinite(lo) || !isfinite(hi))
			return rt_usage_fail(c, "--clip takes LO,HI with LO <= HI, or none; got '%s'", c->clip);
	}
	c->dist.eps = eps;
	c->dist.lo = lo;
	c->dist.hi = hi;
	c->dist.seed = c->seed;
	c->dist.threads = c->threads;
	return 0;
}

int rt_eval_main(const rt_model *m, const char *defaults, int argc, char **argv)
{
	config c;
	int rc = rt_config_parse(&c, RT_MODE_EVAL, defaults, argc, argv);
	rt_data d = { 0 };
	float *P = NULL, *ex_eps = NULL;
	unsigned char *ex_correct = NULL;
	if (rc)
		goto done;
	if (c.help) {
		rt_config_usage(stdout, m, &c);
		goto done;
	}
	const char *spec = rt_config_eval_data(&c);
	rc = 2;
	if (!c.weights) {
		rt_usage_fail(&c, "--weights W.safetensors is required");
		goto done;
	}
	if (!spec) {
		rt_usage_fail(&c, "no data: give --data FILE[,LABELS]");
		goto done;
	}
	if (c.distortion && m->max_len) {   /* its points would move the padding too */
		rc = rt_usage_fail(&c, "--distortion does not take models over sequences of free length (input x[*, F])");
		goto done;
	}
	if ((rc = rt_config_objective(m, &c)) || (c.distortion && (rc = distortion_opts(&c))))
		goto done;
	if (rt_is_shape(m)) {   /* a shape: the flags alone (rt.h) */
		rc = -1;
		goto done;
	}
	bool sigmoid = c.obj.sigmoid;
	rc = 1;
	char err[RT_ERRLEN];
	P = rt_alloc_floats(m->n_params);
	if (!P) {
		rt_user_fail(&c, "out of memory");
		goto done;
	}
	if (rt_params_load_named(m->tensors, m->n_tensors, &c.names, c.weights, P, err) != 0) {
		fprintf(stderr, "%s\n", err);
		goto done;
	}
	if (rt_load_labeled(c.prog, m, sigmoid, spec, &d))
		goto done;
	if (c.per_example && !c.json) {
		rc = rt_usage_fail(&c, "--per-example needs --json");
		goto done;
	}
	if (c.per_example) {
		size_t cnt = (size_t)(d.n > 0 ? d.n : 1);
		ex_eps = malloc(sizeof *ex_eps * cnt * RT_NNORMS);
		ex_correct = malloc(cnt);
		if (!ex_eps || !ex_correct) {
			rt_user_fail(&c, "out of memory");
			goto done;
		}
	}
	rt_eval e;
	if (rt_evaluate_examples(m, &c.obj, P, &d, c.threads, c.norms, &e, ex_eps, ex_correct) != 0) {
		rt_user_fail(&c, "out of memory");
		goto done;
	}
	/* Finite weights can still overflow float32 on the way to the logits;
	 * a NaN loss is no result to report. */
	if (!isfinite(e.loss) || !isfinite(e.ce)) {
		rt_user_fail(&c, "the loss on %s is not finite: the weights %s overflow float32 arithmetic "
		          "on these inputs", spec, c.weights);
		goto done;
	}
	rt_distortion_report dr;
	if (c.distortion && rt_distortion_summary(m, P, &d, &c.dist, &dr, err) != 0) {
		rt_user_fail(&c, "%s", err);
		goto done;
	}
	if (c.json) {
		rt_eval_json_members(stdout, &e, c.norms);
		if (c.distortion)
			rt_distortion_json(stdout, &c.dist, &dr);
		if (c.per_example)
			rt_examples_json(stdout, d.n, c.norms, ex_eps, ex_correct);
		fputs("}\n", stdout);
	} else {
		printf("model %s, weights %s, data %s\n", m->name, c.weights, spec);
		rt_eval_table(stdout, &e, c.norms, "");
		if (c.distortion)
			rt_distortion_table(stdout, &c.dist, &dr);
	}
	rc = fflush(stdout) == 0 ? 0 : 1;
done:
	rt_data_free(&d);
	free(P);
	free(ex_eps);
	free(ex_correct);
	rt_config_free(&c);
	return rc;
}
