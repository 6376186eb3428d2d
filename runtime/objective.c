/* objective.c: the per-example training losses and their partial derivatives.
 *
 * The generated kernels give, for one example, the logits, the hidden
 * pre-activations z and sq[h] = ||d z_h / d x||_2^2 (gradients with respect
 * to the normalized input, masks held constant).  Every objective lln trains
 * is a function of those three vectors; this file evaluates it in double
 * precision and returns d loss / d logits, d loss / d z and d loss / d sq,
 * which train_backward turns into the parameter gradient (docs/method.md,
 * "Learning"):
 *
 *   cross-entropy      logsumexp(f) - f_y            (softmax over n_out logits)
 *   sigmoid CE         softplus(f) - y f             (one logit, y in {0, 1})
 *   roll               CE + lambda/k sum_{h in I} (sq_h + C max(0, 1 - |z_h|))
 *                      I = the k = ceil(gamma/100 H) largest brackets
 *   distance           CE - lambda min_{h: sq_h > 0} |z_h| / sqrt(sq_h)
 *
 * Selections are deterministic: the top-k set is unique under the order
 * "larger bracket first, then lower index", and sums run in index order.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

bool rt_objective_needs_sq(const rt_objective *o)
{
	return o->kind == RT_OBJ_ROLL || o->kind == RT_OBJ_DISTANCE;
}

/* Cross-entropy and its gradient with respect to the logits. */
static double cross_entropy(const rt_objective *o, int32_t n_out, const float *f, int32_t y,
                            float *df)
{
	if (o->sigmoid) {
		double x = f[0], t = y ? 1.0 : 0.0;
		/* softplus(x) - t x, stably: max(x, 0) - t x + log1p(exp(-|x|)) */
		double loss = (x > 0 ? x : 0) - t * x + log1p(exp(-fabs(x)));
		double s = x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
		if (df)
			df[0] = (float)(s - t);
		return loss;
	}
	double mx = -INFINITY;
	for (int32_t i = 0; i < n_out; i++)
		if (f[i] > mx)
			mx = f[i];
	double sum = 0;
	for (int32_t i = 0; i < n_out; i++)
		sum += exp((double)f[i] - mx);
	double lse = mx + log(sum);
	if (df)
		for (int32_t i = 0; i < n_out; i++)
			df[i] = (float)(exp((double)f[i] - lse) - (i == y ? 1.0 : 0.0));
	return lse - f[y];
}

static double roll_bracket(const float *z, const float *sq, double C, int32_t h)
{
	double a = 1.0 - fabs((double)z[h]);
	double v = (double)sq[h] + C * (a > 0 ? a : 0);
	return isnan(v) ? -INFINITY : v;
}

typedef struct order {
	const float *z, *sq;
	double C;
} order;

/* a precedes b: larger bracket, then lower index (a strict total order). */
static bool before(const order *o, int32_t a, int32_t b)
{
	double va = roll_bracket(o->z, o->sq, o->C, a), vb = roll_bracket(o->z, o->sq, o->C, b);
	return va > vb || (va == vb && a < b);
}

/* Rearranges idx[0..n) so that its first k entries are the k first elements
 * under `before` (quickselect, median-of-three pivot). */
static void select_top(const order *o, int32_t *idx, int32_t n, int32_t k)
{
	int32_t lo = 0, hi = n - 1;
	while (lo < hi) {
		int32_t mid = lo + (hi - lo) / 2;
		/* median of three into idx[hi] as the pivot */
		if (before(o, idx[mid], idx[lo])) {
			int32_t t = idx[mid]; idx[mid] = idx[lo]; idx[lo] = t;
		}
		if (before(o, idx[hi], idx[lo])) {
			int32_t t = idx[hi]; idx[hi] = idx[lo]; idx[lo] = t;
		}
		if (before(o, idx[mid], idx[hi])) {
			int32_t t = idx[mid]; idx[mid] = idx[hi]; idx[hi] = t;
		}
		int32_t pivot = idx[hi], store = lo;
		for (int32_t i = lo; i < hi; i++)
			if (before(o, idx[i], pivot)) {
				int32_t t = idx[i]; idx[i] = idx[store]; idx[store] = t;
				store++;
			}
		idx[hi] = idx[store];
		idx[store] = pivot;
		/* idx[lo..store) precede the pivot, idx(store..hi] follow it */
		if (store == k - 1 || store == k)
			return;
		if (store > k)
			hi = store - 1;
		else
			lo = store + 1;
	}
}

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return (x > y) - (x < y);
}

static double roll(const rt_objective *o, int32_t H, const float *z, const float *sq, float *dz,
                   float *dsq, int32_t *scratch)
{
	if (H <= 0)
		return 0;
	double C = o->C;
	int32_t k = o->gamma >= 100 ? H : (int32_t)ceil(o->gamma / 100.0 * H);
	if (k < 1)
		k = 1;
	if (k > H)
		k = H;
	double w = o->lambda / k;
	if (dz)
		memset(dz, 0, sizeof(float) * (size_t)H);
	if (dsq)
		memset(dsq, 0, sizeof(float) * (size_t)H);
	double sum = 0;
	if (k == H) {
		for (int32_t h = 0; h < H; h++) {
			sum += roll_bracket(z, sq, C, h);
			if (dsq)
				dsq[h] = (float)w;
			if (dz && fabsf(z[h]) < 1)
				dz[h] = (float)(z[h] > 0 ? -w * C : z[h] < 0 ? w * C : 0.0);
		}
		return w * sum;
	}
	int32_t *idx = scratch ? scratch : malloc(sizeof(int32_t) * (size_t)H);
	if (!idx)
		return NAN;
	for (int32_t h = 0; h < H; h++)
		idx[h] = h;
	order ord = { z, sq, C };
	select_top(&ord, idx, H, k);
	qsort(idx, (size_t)k, sizeof *idx, cmp_i32);
	for (int32_t j = 0; j < k; j++) {
		int32_t h = idx[j];
		sum += roll_bracket(z, sq, C, h);
		if (dsq)
			dsq[h] = (float)w;
		if (dz && fabsf(z[h]) < 1)
			dz[h] = (float)(z[h] > 0 ? -w * C : z[h] < 0 ? w * C : 0.0);
	}
	if (!scratch)
		free(idx);
	return w * sum;
}

static double distance(const rt_objective *o, int32_t H, const float *z, const float *sq,
                       float *dz, float *dsq)
{
	if (dz)
		memset(dz, 0, sizeof(float) * (size_t)H);
	if (dsq)
		memset(dsq, 0, sizeof(float) * (size_t)H);
	int32_t b = -1;
	double best = INFINITY;
	for (int32_t h = 0; h < H; h++) {
		if (!(sq[h] > 0))
			continue;
		double e = fabs((double)z[h]) / sqrt((double)sq[h]);
		if (e < best) {
			best = e;
			b = h;
		}
	}
	if (b < 0)
		return 0;
	double s = sq[b], r = sqrt(s), a = z[b];
	if (dz)
		dz[b] = (float)(-o->lambda * (a > 0 ? 1.0 : a < 0 ? -1.0 : 0.0) / r);
	if (dsq)
		dsq[b] = (float)(o->lambda * fabs(a) / (2.0 * s * r));
	return -o->lambda * best;
}

double rt_objective_eval(const rt_objective *o, const rt_model *m, const float *logits,
                         const float *z, const float *sq, int32_t label, float *dlogits,
                         float *dz, float *dsq, double *ce_out, int32_t *scratch)
{
	double ce = cross_entropy(o, m->n_out, logits, label, dlogits);
	if (ce_out)
		*ce_out = ce;
	double reg = 0;
	switch (o->kind) {
	case RT_OBJ_ROLL:
		reg = roll(o, m->n_hidden, z, sq, dz, dsq, scratch);
		break;
	case RT_OBJ_DISTANCE:
		reg = distance(o, m->n_hidden, z, sq, dz, dsq);
		break;
	case RT_OBJ_VANILLA:
		if (dz)
			memset(dz, 0, sizeof(float) * (size_t)m->n_hidden);
		if (dsq)
			memset(dsq, 0, sizeof(float) * (size_t)m->n_hidden);
		break;
	}
	return ce + reg;
}

struct rt_seqbuf {
	int32_t *live;
	float *z, *sq, *dz, *dsq;
};

rt_seqbuf *rt_seqbuf_new(const rt_model *m)
{
	rt_seqbuf *b = calloc(1, sizeof *b);
	size_t H = (size_t)m->n_hidden + 1;
	if (!b || !(b->live = malloc(H * sizeof *b->live)) || !(b->z = malloc(4 * H * sizeof *b->z))) {
		rt_seqbuf_free(b);
		return NULL;
	}
	b->sq = b->z + H;
	b->dz = b->sq + H;
	b->dsq = b->dz + H;
	return b;
}

void rt_seqbuf_free(rt_seqbuf *b)
{
	if (b) {
		free(b->live);
		free(b->z);
		free(b);
	}
}

/* The sequence's own neurons gathered into sb, evaluated as a model of
 * their count, and the partial derivatives scattered back. */
double rt_objective_eval_seq(const rt_objective *o, const rt_model *m, int32_t len, const float *logits,
                             const float *z, const float *sq, int32_t label, float *dlogits, float *dz,
                             float *dsq, double *ce_out, int32_t *scratch, rt_seqbuf *sb)
{
	if (!m->max_len || len == m->max_len)
		return rt_objective_eval(o, m, logits, z, sq, label, dlogits, dz, dsq, ce_out, scratch);
	rt_model own = *m;
	own.n_hidden = rt_seq_live(m, len, sb->live);
	double f = rt_seq_sq_scale(m, len);
	for (int32_t i = 0; i < own.n_hidden; i++) {
		sb->z[i] = z[sb->live[i]];
		sb->sq[i] = sq ? (float)(f * sq[sb->live[i]]) : 0;
	}
	double loss = rt_objective_eval(o, &own, logits, sb->z, sq ? sb->sq : NULL, label, dlogits,
	                                dz ? sb->dz : NULL, dsq ? sb->dsq : NULL, ce_out, scratch);
	if (dz)
		memset(dz, 0, sizeof(float) * (size_t)m->n_hidden);
	if (dsq)
		memset(dsq, 0, sizeof(float) * (size_t)m->n_hidden);
	for (int32_t i = 0; i < own.n_hidden; i++) {
		if (dz)
			dz[sb->live[i]] = sb->dz[i];
		if (dsq)   /* d/d sq_kernel = f d/d sq_own */
			dsq[sb->live[i]] = (float)(f * sb->dsq[i]);
	}
	return loss;
}
