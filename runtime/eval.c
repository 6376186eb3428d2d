/* eval.c: the quantities lln reports about a trained model on a data set.
 *
 * For every labeled example: the certificate (prediction and margins eps_p in
 * raw input units), the objective's loss and cross-entropy, the hash of its
 * activation pattern and the hash of its logit Jacobian.  Over the set:
 * accuracy, mean loss, percentiles of the margins, and the numbers of
 * distinct patterns (an upper bound on the linear regions the data visits)
 * and of distinct Jacobians (a lower bound), as in the paper's tables.
 * Threads take contiguous shares and write per-example results; all
 * reductions run afterwards in example order, so nothing depends on the
 * thread count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

typedef struct eval_job {
	const rt_model *m;
	const rt_objective *o;
	const float *P, *pre;
	const rt_data *d;
	int32_t norms;
	int64_t begin, end;
	/* per-example outputs */
	unsigned char *correct;
	double *loss, *ce;
	float *eps[RT_NNORMS];
	uint64_t *pattern, *jac;
	int failed;
} eval_job;

static void *eval_share(void *arg)
{
	eval_job *j = arg;
	const rt_model *m = j->m;
	const int64_t H = m->n_hidden, O = m->n_out, D = m->n_in;
	float *ws = rt_alloc_floats(m->ws_floats), *z = rt_alloc_floats(H + 1), *logits = rt_alloc_floats(O), *sq = rt_alloc_floats(H + 1);
	int32_t *scratch = malloc(sizeof(int32_t) * (size_t)(H + 1)), *axes = malloc(sizeof(int32_t) * (size_t)(m->samples + 1));
	double *jg = malloc(sizeof(double) * (size_t)D);
	rt_seqbuf *sb = m->max_len ? rt_seqbuf_new(m) : NULL;
	if (!ws || !z || !logits || !sq || !scratch || !axes || !jg || (m->max_len && !sb)) {
		j->failed = 1;
		goto done;
	}
	const bool need_sq = rt_objective_needs_sq(j->o);
	for (int64_t i = j->begin; i < j->end; i++) {
		const float *x = j->d->x + i * D;
		int32_t y = j->d->y ? j->d->y[i] : -1, len = rt_seq_len(m, j->d->len, i);
		rt_seq_begin(m, ws, len);
		rt_cert c;
		m->certify(j->P, j->pre, x, j->norms, ws, z, logits, &c, j->d->xlo ? j->d->xlo + i * D : NULL);
		j->correct[i] = c.label == y;
		for (int p = 0; p < RT_NNORMS; p++)
			j->eps[p][i] = c.eps[p];
		j->pattern[i] = rt_seq_pattern(m, len, z);
		/* every logit's gradient by input_grad, whatever certify computed
		 * (eps_2 alone by the Gram recurrence forms no Jacobian) */
		uint64_t h = RT_FNV_BASIS;
		for (int k = 0; k < O; k++) {
			m->input_grad(j->P, x, k, ws, jg);
			h = rt_fnv1a(h, jg, sizeof *jg * (size_t)D);
		}
		j->jac[i] = h;
		if (y < 0) {
			j->loss[i] = j->ce[i] = NAN;
		} else if (m->train_forward) {
			/* approximate ROLL: the same axes for example i in every evaluation
			 * (not the training step's), so that losses compare across epochs */
			if (need_sq && m->samples)
				rt_seq_axes(m, len, 0, (uint64_t)i, axes);
			m->train_forward(j->P, j->pre, x, need_sq, ws, z, logits, sq, axes);
			j->loss[i] = rt_objective_eval_seq(j->o, m, len, logits, z, sq, y, NULL, NULL, NULL,
			                                   &j->ce[i], scratch, sb);
		} else if (!need_sq) {
			/* no training kernels: the logits from certify suffice */
			j->loss[i] = rt_objective_eval_seq(j->o, m, len, logits, z, NULL, y, NULL, NULL, NULL,
			                                   &j->ce[i], scratch, sb);
		} else {
			j->loss[i] = NAN;
			j->ce[i] = rt_objective_eval(&(rt_objective){ .sigmoid = j->o->sigmoid }, m, logits,
			                             z, NULL, y, NULL, NULL, NULL, NULL, NULL);
		}
	}
done:
	free(ws);
	free(z);
	free(logits);
	free(sq);
	free(scratch);
	free(axes);
	free(jg);
	rt_seqbuf_free(sb);
	return NULL;
}

int rt_evaluate(const rt_model *m, const rt_objective *o, const float *P, const rt_data *d,
                int threads, int32_t norms, rt_eval *out)
{
	return rt_evaluate_examples(m, o, P, d, threads, norms, out, NULL, NULL);
}

int rt_evaluate_examples(const rt_model *m, const rt_objective *o, const float *P, const rt_data *d,
                         int threads, int32_t norms, rt_eval *out, float *eps_out,
                         unsigned char *correct_out)
{
	memset(out, 0, sizeof *out);
	const int64_t n = d->n;
	out->n = n;
	if (threads <= 0)
		threads = rt_ncpus();
	if (threads > n)
		threads = n > 0 ? (int)n : 1;
	if (!norms)
		norms = RT_NORM_BIT(RT_L2);
	size_t cnt = (size_t)(n > 0 ? n : 1);
	unsigned char *correct = calloc(cnt, 1);
	double *loss = calloc(cnt, sizeof *loss), *ce = calloc(cnt, sizeof *ce);
	float *eps = calloc(cnt * RT_NNORMS, sizeof *eps);
	uint64_t *pattern = calloc(cnt, sizeof *pattern), *jac = calloc(cnt, sizeof *jac);
	float *pre = rt_alloc_floats(m->pre_floats);
	eval_job *jobs = calloc((size_t)threads, sizeof *jobs);
	int rc = -1;
	if (!correct || !loss || !ce || !eps || !pattern || !jac || !pre || !jobs)
		goto done;
	m->prepare(P, pre);
	for (int t = 0; t < threads; t++) {
		jobs[t] = (eval_job){ .m = m, .o = o, .P = P, .pre = pre, .d = d, .norms = norms,
		                      .begin = n * t / threads, .end = n * (t + 1) / threads,
		                      .correct = correct, .loss = loss, .ce = ce,
		                      .eps = { eps, eps + cnt, eps + 2 * cnt },
		                      .pattern = pattern, .jac = jac };
	}
	rt_parallel(threads, eval_share, jobs, sizeof *jobs);
	int failed = 0;
	for (int t = 0; t < threads; t++)
		failed |= jobs[t].failed;
	if (failed)
		goto done;

	int64_t right = 0;
	double sl = 0, sc = 0;
	for (int64_t i = 0; i < n; i++) {
		right += correct[i];
		sl += loss[i];
		sc += ce[i];
	}
	if (eps_out)
		memcpy(eps_out, eps, sizeof *eps * (size_t)n * RT_NNORMS);
	if (correct_out)
		memcpy(correct_out, correct, (size_t)n);
	out->accuracy = n ? (double)right / (double)n : NAN;
	out->loss = n ? sl / (double)n : NAN;
	out->ce = n ? sc / (double)n : NAN;
	static const double q[4] = { 25, 50, 75, 100 };
	for (int p = 0; p < RT_NNORMS; p++)
		for (int k = 0; k < 4; k++)
			out->eps_pct[p][k] = (norms & RT_NORM_BIT(p)) ? rt_percentile(eps + p * cnt, n, q[k]) : NAN;
	out->patterns = rt_count_distinct(pattern, n);
	out->jacobians = rt_count_distinct(jac, n);
	rc = out->patterns < 0 || out->jacobians < 0 ? -1 : 0;
done:
	free(correct);
	free(loss);
	free(ce);
	free(eps);
	free(pattern);
	free(jac);
	free(pre);
	free(jobs);
	return rc;
}
