/* grad.c: the mean gradient of a batch, across threads.
 *
 * Each thread takes a contiguous share of the batch and accumulates its
 * examples' parameter gradients (train_forward, the objective, then
 * train_backward) into a float buffer of its own; the shares are then added
 * in thread order, so the result depends on the thread count and on nothing
 * else.  The buffers live in an rt_grad_ctx kept across the batches of a
 * run.  Each example's loss, cross-entropy and whether its prediction (under
 * the weights before the step) was right are kept, for the epoch's report.
 *
 * Models with the batched kernels (every model without recurrence) go
 * another way (batch_sums): each thread takes its share of the batch's
 * examples through the forward kernel, the objective and the backward
 * kernel, with no meeting between the layers; then each computes its share
 * of the rows of the one weight gradient.  Two meetings per batch, the data
 * crossing between the cores only at the second.  The vanilla objective's
 * gradient does not depend on the thread count.  (Split by rows at every
 * layer, two threads were 1.1-1.3x one: docs/performance.md.)  Objectives
 * that need sq take it there too when the model has train_gram (exact sq of
 * a dense chain): each example's sq from its row of z between the forward
 * kernel and the objective, and its Gram terms, right after the objective,
 * into the thread's own buffer, added to the rows' gradient at the end in
 * thread order as above; and with approximate ROLL (the model has the
 * tangent kernels), a few examples at a time: their sampled axes' tangents
 * as columns through train_batch_tangents, the objectives, then the
 * tangents' backward pass and weight gradient into the same buffer.
 */
#include <stdlib.h>
#include <string.h>

#include "rt.h"

typedef struct gthread {
	float *ws, *z, *logits, *sq, *dlogits, *dz, *dsq, *grad;
	int32_t *scratch, *axes;   /* axes: approximate ROLL's draw */
	float *tws;                /* the tangent kernels' workspace */
	int32_t *baxes;            /* their examples' draws */
	rt_seqbuf *seq;            /* a model over sequences of free length */
} gthread;

struct rt_grad_ctx {
	const rt_model *m;
	const int32_t *lens;   /* the data's sequence lengths (rt_grad_ctx_lengths) */
	int threads;
	gthread *t;
	/* the batched kernels' workspace, shared: the threads work on disjoint
	 * examples, then on disjoint rows of the gradient; m->batch rows of the
	 * logits and their adjoints */
	float *bws, *blogits, *bdlogits;
	float *bz, *bdz;   /* rows of z and of its adjoint, for objectives needing sq */
	float *bsq, *bdsq; /* rows of sq and of its adjoint (the tangent kernels) */
	const float **rows;
	double *loss, *ce;   /* per example of the batch */
	unsigned char *right;
	double sum_loss, sum_ce;   /* of the last batch */
	int64_t correct;
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
		free(t->tws);
		free(t->baxes);
		rt_seqbuf_free(t->seq);
	}
	free(c->t);
	free(c->bws);
	free(c->blogits);
	free(c->bdlogits);
	free(c->bz);
	free(c->bdz);
	free(c->bsq);
	free(c->bdsq);
	free(c->rows);
	free(c->loss);
	free(c->ce);
	free(c->right);
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
		/* thread 0's holds the batch's sums, and their tail (rt_grad_sums) */
		t->grad = rt_alloc_floats((m->grad_floats > m->n_params ? m->grad_floats : m->n_params) + RT_SUM_TAIL);
		t->scratch = malloc(sizeof(int32_t) * (size_t)H);
		t->axes = malloc(sizeof(int32_t) * (size_t)(m->samples + 1));
		t->seq = m->max_len ? rt_seqbuf_new(m) : NULL;
		if (!t->ws || !t->z || !t->logits || !t->sq || !t->dlogits || !t->dz || !t->dsq ||
		    !t->grad || !t->scratch || !t->axes || (m->max_len && !t->seq)) {
			rt_grad_ctx_free(c);
			return NULL;
		}
	}
	if (m->batch) {
		c->bws = rt_alloc_floats(m->batch_ws_floats);
		c->blogits = rt_alloc_floats(m->batch * (int64_t)m->n_out);
		c->bdlogits = rt_alloc_floats(m->batch * (int64_t)m->n_out);
		c->rows = malloc(sizeof *c->rows * (size_t)m->batch);
		const bool sq_rows = m->train_gram || m->train_batch_tangents;
		if (sq_rows) {
			c->bz = rt_alloc_floats(m->batch * (int64_t)m->n_hidden);
			c->bdz = rt_alloc_floats(m->batch * (int64_t)m->n_hidden);
		}
		bool tangents_ok = true;
		if (m->train_batch_tangents) {
			c->bsq = rt_alloc_floats(m->batch * (int64_t)m->n_hidden);
			c->bdsq = rt_alloc_floats(m->batch * (int64_t)m->n_hidden);
			tangents_ok = c->bsq && c->bdsq;
			for (int i = 0; i < c->threads; i++) {
				c->t[i].tws = rt_alloc_floats(m->tangent_ws_floats);
				c->t[i].baxes = malloc(sizeof(int32_t) * (size_t)(m->batch * m->samples));
				tangents_ok &= c->t[i].tws && c->t[i].baxes;
			}
		}
		if (!c->bws || !c->blogits || !c->bdlogits || !c->rows || (sq_rows && (!c->bz || !c->bdz)) || !tangents_ok) {
			rt_grad_ctx_free(c);
			return NULL;
		}
	}
	return c;
}

/* The predicted class, as the certifier has it: the first largest logit;
 * with one logit, 1 when it is positive. */
static int32_t predict(const rt_model *m, const float *logits)
{
	if (m->n_out == 1)
		return logits[0] > 0;
	int32_t best = 0;
	for (int32_t k = 1; k < m->n_out; k++)
		if (logits[k] > logits[best])
			best = k;
	return best;
}

/* The accumulators of the last rt_grad_sums: all of grad_floats with an
 * sq-based objective, else the parameters' gradient alone. */
static int64_t sums_floats(const rt_model *m, const rt_objective *o)
{
	return rt_objective_needs_sq(o) && m->grad_floats > m->n_params ? m->grad_floats : m->n_params;
}

/* A thread's part of a batched step. */
typedef struct bjob {
	rt_grad_ctx *c;
	const rt_objective *o;
	const float *P, *pre, *X;
	const int32_t *y;
	const int64_t *idx;
	float *grad;
	bool sq;                /* the objective needs sq: train_gram */
	int64_t s;              /* the call's first example in the batch */
	int32_t n, c0, c1;      /* its examples; this part's columns */
	int32_t part, parts, accumulate;
} bjob;

/* The objective of column e (an example of the call), with its sq and
 * dsq rows when the objective needs them. */
static void eval_column(const bjob *j, gthread *t, int32_t e, const float *sq, float *dsq)
{
	rt_grad_ctx *c = j->c;
	const rt_model *m = c->m;
	const int64_t O = m->n_out, H = m->n_hidden, i = j->s + e, r = j->idx ? j->idx[i] : i;
	const float *logits = c->blogits + e * O;
	float *z = j->sq ? c->bz + e * H : NULL, *dz = j->sq ? c->bdz + e * H : NULL;
	c->loss[i] = rt_objective_eval(j->o, m, logits, z, sq, j->y[r], c->bdlogits + e * O, dz, dsq, &c->ce[i],
	                               t->scratch);
	c->right[i] = predict(m, logits) == j->y[r];
}

/* Columns [c0, c1): forward, the objective, backward.  The vanilla
 * objective is a function of the logits alone: z is neither kept nor given
 * an adjoint.  One that needs sq gets it from train_gram (exact, dense
 * chains), or from the tangent kernels (approximate ROLL) for groups of
 * examples, whose terms of the gradient go to the part's own buffer
 * (zeroed with the first call of a batch). */
static void *batch_columns(void *arg)
{
	const bjob *j = arg;
	rt_grad_ctx *c = j->c;
	const rt_model *m = c->m;
	const int64_t H = m->n_hidden;
	gthread *t = &c->t[j->part];
	if (j->sq && j->s == 0)
		memset(t->grad, 0, sizeof(float) * (size_t)sums_floats(m, j->o));
	m->train_batch_forward(j->P, c->rows, j->n, c->bws, j->sq ? c->bz : NULL, c->blogits, j->c0, j->c1);
	const int32_t end = j->c1 < j->n ? j->c1 : j->n;
	if (j->sq && m->train_batch_tangents) {
		const int32_t K = m->samples, G = (K + 15) & ~15, per = m->batch / G;
		for (int32_t e0 = j->c0; e0 < end; e0 += per) {
			int32_t ne = end - e0 < per ? end - e0 : per;
			for (int32_t e = 0; e < ne; e++) {
				int64_t i = j->s + e0 + e, r = j->idx ? j->idx[i] : i;
				rt_seq_axes(m, rt_seq_len(m, c->lens, r), j->o->sample_seed, (uint64_t)r, t->baxes + e * K);
			}
			m->train_batch_tangents(j->P, c->bws, t->tws, e0, ne, t->baxes, c->bsq);
			for (int32_t e = e0; e < e0 + ne; e++)
				eval_column(j, t, e, c->bsq + e * H, c->bdsq + e * H);
			m->train_batch_tangents_backward(j->P, c->bws, t->tws, e0, ne, c->bdsq);
			m->train_batch_tangent_weights(j->P, t->tws, ne * G, t->grad, 1, 0, 1);
		}
	} else {
		for (int32_t e = j->c0; e < end; e++) {
			if (j->sq)
				m->train_gram(j->P, j->pre, c->bz + e * H, t->ws, t->sq);
			eval_column(j, t, e, j->sq ? t->sq : NULL, j->sq ? t->dsq : NULL);
			if (j->sq)
				m->train_gram_backward(j->pre, t->ws, t->dsq, t->grad);
		}
	}
	m->train_batch_backward(j->P, c->bws, j->n, c->bdlogits, j->sq ? c->bdz : NULL, j->c0, j->c1);
	return NULL;
}

static void *batch_weights(void *arg)
{
	const bjob *j = arg;
	j->c->m->train_batch_weights(j->P, j->c->bws, j->n, j->grad, j->accumulate, j->part, j->parts);
	return NULL;
}

/* The batch's gradient sum by the batched kernels, m->batch examples at a
 * time, in grad (thread 0's buffer), the same as one example at a time up
 * to float rounding.  Vanilla: the same whatever the thread count.  With
 * sq: the rows' terms accumulate on the Gram terms of part 0's examples,
 * then the other parts' are added (rt_grad_sums). */
static void batch_sums(rt_grad_ctx *c, const rt_objective *o, const float *P, const float *pre, const float *X,
                       const int32_t *y, const int64_t *idx, int64_t nb, float *grad)
{
	const rt_model *m = c->m;
	const int T = c->threads;
	const bool sq = rt_objective_needs_sq(o);
	bjob jobs[T];
	for (int64_t s = 0; s < nb; s += m->batch) {
		int32_t n = (int32_t)(nb - s < m->batch ? nb - s : m->batch), n8 = (n + 7) & ~7;
		for (int32_t e = 0; e < n; e++)
			c->rows[e] = X + (idx ? idx[s + e] : s + e) * m->n_in;
		for (int t = 0; t < T; t++) {
			/* columns cut on multiples of 16: whole vectors and cache lines */
			int32_t c0 = (int32_t)((int64_t)n8 * t / T) & ~15;
			int32_t c1 = t + 1 == T ? n8 : (int32_t)((int64_t)n8 * (t + 1) / T) & ~15;
			jobs[t] = (bjob){ .c = c, .o = o, .P = P, .pre = pre, .X = X, .y = y, .idx = idx, .grad = grad,
			                  .sq = sq, .s = s, .n = n, .c0 = c0, .c1 = c1, .part = t, .parts = T,
			                  .accumulate = sq || s > 0 };
		}
		rt_parallel_hot(T, batch_columns, jobs, sizeof *jobs);
		rt_parallel_hot(T, batch_weights, jobs, sizeof *jobs);
	}
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
		int32_t len = rt_seq_len(m, j->c->lens, r);
		rt_seq_begin(m, t->ws, len);
		if (need_sq && m->samples)
			rt_seq_axes(m, len, j->o->sample_seed, (uint64_t)r, t->axes);
		m->train_forward(j->P, j->pre, j->X + r * m->n_in, need_sq, t->ws, t->z, t->logits, t->sq, t->axes);
		j->c->loss[i] = rt_objective_eval_seq(j->o, m, len, t->logits, t->z, t->sq, j->y[r], t->dlogits,
		                                      t->dz, t->dsq, &j->c->ce[i], t->scratch, t->seq);
		j->c->right[i] = predict(m, t->logits) == j->y[r];
		m->train_backward(j->P, j->pre, t->ws, t->dlogits, t->dz, need_sq ? t->dsq : NULL, t->grad);
	}
	return NULL;
}

/* The threads' gradient buffers summed into thread 0's, in thread order
 * for every element (so the cut into ranges changes no bit). */
typedef struct reduce {
	rt_grad_ctx *c;
	int threads;   /* buffers filled */
} reduce;

static void reduce_range(void *ctx, int part, int64_t lo, int64_t hi)
{
	(void)part;
	const reduce *r = ctx;
	float *restrict g0 = r->c->t[0].grad;
	for (int t = 1; t < r->threads; t++) {
		const float *restrict gt = r->c->t[t].grad;
		for (int64_t i = lo; i < hi; i++)
			g0[i] += gt[i];
	}
}

typedef struct mean {
	const float *sums;
	float *grad;
	float nb;
} mean;

static void mean_range(void *ctx, int part, int64_t lo, int64_t hi)
{
	(void)part;
	const mean *a = ctx;
	const float *restrict sums = a->sums;
	float *restrict grad = a->grad;
	for (int64_t i = lo; i < hi; i++)
		grad[i] = sums[i] / a->nb;
}

float *rt_grad_sums(rt_grad_ctx *c, const rt_objective *o, const float *P, const float *pre,
                    const float *X, const int32_t *y, const int64_t *idx, int64_t nb, int64_t *len)
{
	const rt_model *m = c->m;
	const int64_t gf = sums_floats(m, o);
	float *g0 = c->t[0].grad;
	*len = gf + RT_SUM_TAIL;
	c->sum_loss = c->sum_ce = 0;
	c->correct = 0;
	if (nb <= 0) {   /* a process whose part of the batch is empty */
		memset(g0, 0, sizeof(float) * (size_t)*len);
		return g0;
	}
	if (nb > c->cap) {
		double *l = realloc(c->loss, sizeof(double) * (size_t)nb);
		if (l)
			c->loss = l;
		double *e = realloc(c->ce, sizeof(double) * (size_t)nb);
		if (e)
			c->ce = e;
		unsigned char *k = realloc(c->right, (size_t)nb);
		if (k)
			c->right = k;
		if (!l || !e || !k)
			return NULL;
		c->cap = nb;
	}
	const bool sq = rt_objective_needs_sq(o);
	int filled;   /* the threads' buffers holding sums */
	if (m->batch && (!sq || m->train_gram || m->train_batch_tangents)) {
		batch_sums(c, o, P, pre, X, y, idx, nb, g0);
		filled = sq ? c->threads : 1;
	} else {
		filled = c->threads < nb ? c->threads : (int)nb;
		gjob jobs[filled];
		for (int t = 0; t < filled; t++) {
			jobs[t] = (gjob){ .c = c, .t = &c->t[t], .o = o, .P = P, .pre = pre, .X = X, .y = y,
			                  .idx = idx, .begin = nb * t / filled, .end = nb * (t + 1) / filled };
		}
		rt_parallel(filled, grad_share, jobs, sizeof *jobs);
	}
	if (filled > 1) {
		/* fixed order: thread 0's sum, plus thread 1's, ...; the accumulators
		 * past n_params hold only the Gram terms of sq-based objectives */
		reduce r = { c, filled };
		rt_parallel_range(c->threads, gf, reduce_range, &r);
	}
	for (int64_t i = 0; i < nb; i++) {
		c->sum_loss += c->loss[i];
		c->sum_ce += c->ce[i];
		c->correct += c->right[i];
	}
	float *tail = g0 + *len;
	tail[-RT_SUM_LOSS] = (float)c->sum_loss;
	tail[-RT_SUM_CE] = (float)c->sum_ce;
	tail[-RT_SUM_CORRECT] = (float)c->correct;
	tail[-RT_SUM_FLAG] = 0;
	return g0;
}

/* A share of a per-step kernel that takes (part, parts). */
typedef struct sjob {
	const rt_model *m;
	const float *P;
	float *buf;
	int32_t part, parts;
	bool fold;   /* train_finish, else train_prepare */
} sjob;

static void *share(void *arg)
{
	const sjob *j = arg;
	if (j->fold)
		j->m->train_finish(j->P, j->buf, j->part, j->parts);
	else
		j->m->train_prepare(j->P, j->buf, j->part, j->parts);
	return NULL;
}

static void shares(rt_grad_ctx *c, const float *P, float *buf, bool fold)
{
	const int T = c->threads;
	sjob jobs[T];
	for (int t = 0; t < T; t++)
		jobs[t] = (sjob){ .m = c->m, .P = P, .buf = buf, .part = t, .parts = T, .fold = fold };
	rt_parallel_hot(T, share, jobs, sizeof *jobs);
}

void rt_grad_prepare(rt_grad_ctx *c, const rt_objective *o, const float *P, float *pre)
{
	if (!rt_objective_needs_sq(o))
		return;
	if (c->m->train_prepare)
		shares(c, P, pre, false);
	else
		c->m->prepare(P, pre);
}

void rt_grad_fold(rt_grad_ctx *c, const rt_objective *o, const float *P, float *sums)
{
	/* train_finish is linear in the accumulators: folding the sum of every
	 * process's equals the sum of their folds, and costs one fold */
	if (rt_objective_needs_sq(o))
		shares(c, P, sums, true);
}

float *rt_batch_sums_ctx(rt_grad_ctx *c, const rt_objective *o, const float *P, const float *pre,
                         const float *X, const int32_t *y, const int64_t *idx, int64_t nb, double *loss,
                         double *ce)
{
	int64_t len;
	if (nb <= 0)
		return NULL;
	float *sums = rt_grad_sums(c, o, P, pre, X, y, idx, nb, &len);
	if (!sums)
		return NULL;
	rt_grad_fold(c, o, P, sums);
	if (loss)
		*loss = c->sum_loss / (double)nb;
	if (ce)
		*ce = c->sum_ce / (double)nb;
	return sums;
}

int rt_batch_grad_ctx(rt_grad_ctx *c, const rt_objective *o, const float *P, const float *pre,
                      const float *X, const int32_t *y, const int64_t *idx, int64_t nb,
                      float *grad, double *loss, double *ce)
{
	float *sums = rt_batch_sums_ctx(c, o, P, pre, X, y, idx, nb, loss, ce);
	if (!sums)
		return -1;
	mean a = { sums, grad, (float)nb };
	rt_parallel_range(c->threads, c->m->n_params, mean_range, &a);
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

void rt_grad_ctx_lengths(rt_grad_ctx *c, const int32_t *lens)
{
	c->lens = lens;
}

int64_t rt_grad_ctx_correct(const rt_grad_ctx *c)
{
	return c->correct;
}
