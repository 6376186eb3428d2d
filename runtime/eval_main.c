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

#include "train.h"

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
	if ((rc = rt_config_objective(m, &c)))
		goto done;
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
	if (c.json) {
		rt_eval_json_members(stdout, &e, c.norms);
		if (c.per_example)
			rt_examples_json(stdout, d.n, c.norms, ex_eps, ex_correct);
		fputs("}\n", stdout);
	} else {
		printf("model %s, weights %s, data %s\n", m->name, c.weights, spec);
		rt_eval_table(stdout, &e, c.norms, "");
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
