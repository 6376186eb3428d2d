/* optim.c: SGD, Adam and AMSGrad with PyTorch 1.13's update rules.
 *
 * The paper's scripts train with torch.optim, so lln reproduces its rules
 * exactly (torch/optim/sgd.py and adam.py, single-tensor path):
 *   weight decay   g = grad + wd p
 *   SGD            buf = g on the first step, else mu buf + g (no dampening);
 *                  p -= lr (nesterov ? g + mu buf : buf)   (plain g if mu = 0)
 *   Adam           t += 1; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *                  p -= lr/(1-b1^t) m / (sqrt(v)/sqrt(1-b2^t) + eps)
 *   AMSGrad        vmax = max(vmax, v) replaces v in the denominator
 * SGD computes in float, each operation of PyTorch's in its order (its
 * kernels may fuse a multiply-add, so the bits can differ by a rounding);
 * Adam, whose square roots and quotients PyTorch also takes in float,
 * computes each element in double and stores it as float.  The state is
 * what a checkpoint saves, and a resumed run continues bit for bit.
 * The training loop steps from the batch's gradient sums: the division by
 * the batch size (in float, as rt_batch_grad_ctx does it) and the finiteness
 * check happen in the same pass as the step, which reads every parameter
 * once instead of three times (a fifth of a vanilla step on mnist_fc).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

int rt_opt_init(rt_opt_state *s, const rt_optimizer *o, int64_t n)
{
	memset(s, 0, sizeof *s);
	s->n = n;
	switch (o->kind) {
	case RT_SGD:
		s->nstate = o->momentum != 0 ? 1 : 0;
		break;
	case RT_ADAM:
		s->nstate = 2;
		break;
	case RT_AMSGRAD:
		s->nstate = 3;
		break;
	}
	if (s->nstate == 0)
		return 0;
	s->mem = calloc((size_t)(s->nstate * (n > 0 ? n : 1)), sizeof(float));
	if (!s->mem)
		return -1;
	if (o->kind == RT_SGD) {
		s->buf = s->mem;
	} else {
		s->m = s->mem;
		s->v = s->mem + n;
		if (o->kind == RT_AMSGRAD)
			s->vmax = s->mem + 2 * n;
	}
	return 0;
}

void rt_opt_free(rt_opt_state *s)
{
	free(s->mem);
	memset(s, 0, sizeof *s);
}

const char *rt_opt_state_name(const rt_opt_state *s, int i)
{
	if (i < 0 || i >= s->nstate)
		return NULL;
	if (s->buf)
		return "buf";
	static const char *adam[] = { "m", "v", "vmax" };
	return adam[i];
}

double rt_lr_at(const rt_optimizer *o, int epoch)
{
	if (o->lr_step <= 0 || epoch <= 0)
		return o->lr;
	return o->lr * pow(o->lr_gamma, (double)(epoch / o->lr_step));
}

/* One step over parameters [lo, hi): every rule is elementwise, so the
 * parameters can be cut into ranges run on several threads alike. */
typedef struct step {
	const rt_optimizer *o;
	rt_opt_state *s;
	double lr, step_size, bc2s;   /* the last two: Adam's bias corrections */
	float *P;
	const float *grad;            /* nb times the gradient */
	float nb;
	bool bad[RT_MAX_PARTS];       /* a part saw a gradient that is not finite */
} step;

/* The step is a pass over every parameter, bound by memory and by how fast
 * the core converts and multiplies: with GCC it is compiled again for AVX2
 * and AVX-512 and the loader picks the widest the CPU has; the results are
 * the same bits (no reassociation, no FMA contraction: -std=c17 turns it
 * off).  SGD in float takes a third of the time it took in double. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void step_range(void *ctx, int part, int64_t lo, int64_t hi)
{
	step *t = ctx;
	const rt_optimizer *o = t->o;
	rt_opt_state *s = t->s;
	float *restrict P = t->P;
	const float *restrict grad = t->grad;
	const float nb = t->nb;
	const double wd = o->weight_decay, lr = t->lr;
	/* x - x is 0 for finite x and NaN otherwise: a test that vectorizes */
	int bad = 0;
#define G(i) (bad |= (grad[i] / nb - grad[i] / nb) != 0, grad[i] / nb)
	if (o->kind == RT_SGD) {
		/* in float, PyTorch's operations in its order; one loop per case,
		 * without branches inside, so that it vectorises */
		const float mu = (float)o->momentum, wdf = (float)wd, lrf = (float)lr;
		float *restrict buf = s->buf;
		if (!buf) {
			for (int64_t i = lo; i < hi; i++)
				P[i] = P[i] - lrf * (G(i) + wdf * P[i]);
		} else if (s->step == 0) {
			for (int64_t i = lo; i < hi; i++) {
				float g = G(i) + wdf * P[i];
				buf[i] = g;
				P[i] = P[i] - lrf * (o->nesterov ? g + mu * g : g);
			}
		} else if (o->nesterov) {
			for (int64_t i = lo; i < hi; i++) {
				float g = G(i) + wdf * P[i];
				buf[i] = mu * buf[i] + g;
				P[i] = P[i] - lrf * (g + mu * buf[i]);
			}
		} else {
			for (int64_t i = lo; i < hi; i++) {
				buf[i] = mu * buf[i] + (G(i) + wdf * P[i]);
				P[i] = P[i] - lrf * buf[i];
			}
		}
		t->bad[part] = bad;
		return;
	}
	const double b1 = o->beta1, b2 = o->beta2, eps = o->eps;
	for (int64_t i = lo; i < hi; i++) {
		double p = P[i];
		double g = (double)G(i) + wd * p;
		s->m[i] = (float)(b1 * (double)s->m[i] + (1.0 - b1) * g);
		s->v[i] = (float)(b2 * (double)s->v[i] + (1.0 - b2) * g * g);
		double v = s->v[i];
		if (s->vmax) {
			if (s->v[i] > s->vmax[i])
				s->vmax[i] = s->v[i];
			v = s->vmax[i];
		}
		double denom = sqrt(v) / t->bc2s + eps;
		P[i] = (float)(p - t->step_size * (double)s->m[i] / denom);
	}
#undef G
	t->bad[part] = bad;
}

void rt_opt_step(const rt_optimizer *o, rt_opt_state *s, double lr, float *P, const float *grad)
{
	rt_opt_step_threads(o, s, lr, P, grad, 1);
}

void rt_opt_step_threads(const rt_optimizer *o, rt_opt_state *s, double lr, float *P, const float *grad, int threads)
{
	rt_opt_step_mean(o, s, lr, P, grad, 1, threads);
}

bool rt_opt_step_mean(const rt_optimizer *o, rt_opt_state *s, double lr, float *P, const float *sums, int64_t nb,
                      int threads)
{
	step t = { .o = o, .s = s, .lr = lr, .P = P, .grad = sums, .nb = (float)nb };
	if (o->kind != RT_SGD) {   /* Adam counts the step before it; SGD's first step is step 0 */
		s->step++;
		t.step_size = lr / (1.0 - pow(o->beta1, (double)s->step));
		t.bc2s = sqrt(1.0 - pow(o->beta2, (double)s->step));
	}
	rt_parallel_range(threads, s->n, step_range, &t);
	if (o->kind == RT_SGD)
		s->step++;
	bool ok = true;
	for (int p = 0; p < RT_MAX_PARTS; p++)
		ok &= !t.bad[p];
	return ok;
}
