/* ref.h: a naive double-precision reference for fully connected ReLU
 * networks, written from docs/method.md and independently of compiler/cg.c.
 *
 * The network is a chain  x -> normalize -> dense+relu (L times) -> dense.
 * Everything is computed in double from the float parameters:
 *   forward      z^i = W^i a^{i-1} + b^i,  a^i = relu(z^i),  f = W^{L+1} a^L + b
 *   Jacobians    by the explicit product J^1 = W^1 / std,
 *                J^i = W^i diag(m^{i-1}) J^{i-1}  (raw input units)
 *   margins      eps_p = min_h |z_h| / ||g_h||_q  (closed form)
 *   prediction   min(eps_p, min_{k != y} (f_y - f_k) / ||grad(f_y - f_k)||_q)
 *   direction    min over neurons with z (g . d) < 0 of |z| / |g . d|
 * Header-only; every function is static.
 */
#ifndef LLN_TEST_REF_H
#define LLN_TEST_REF_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define REF_MAXL 8

typedef struct ref_net {
	int D;               /* inputs */
	int L;               /* hidden layers */
	int n[REF_MAXL + 1]; /* n[0..L-1] hidden sizes, n[L] outputs */
	int H;               /* total hidden neurons */
	int O;
	double mean, std;
	double *W[REF_MAXL + 1];  /* n[i] x in(i), row-major */
	double *b[REF_MAXL + 1];
} ref_net;

static inline int ref_in_size(const ref_net *r, int i) { return i == 0 ? r->D : r->n[i - 1]; }

/* Copy parameters out of a flat float vector laid out as
 * fc1.weight, fc1.bias, fc2.weight, ... (the PyTorch order). */
static inline void ref_init(ref_net *r, int D, int L, const int *sizes, double mean, double std, const float *P)
{
	memset(r, 0, sizeof *r);
	r->D = D;
	r->L = L;
	r->mean = mean;
	r->std = std;
	int64_t off = 0;
	for (int i = 0; i <= L; i++) {
		r->n[i] = sizes[i];
		int in = ref_in_size(r, i);
		r->W[i] = malloc(sizeof(double) * (size_t)sizes[i] * (size_t)in);
		r->b[i] = malloc(sizeof(double) * (size_t)sizes[i]);
		for (int64_t k = 0; k < (int64_t)sizes[i] * in; k++)
			r->W[i][k] = P[off + k];
		off += (int64_t)sizes[i] * in;
		for (int k = 0; k < sizes[i]; k++)
			r->b[i][k] = P[off + k];
		off += sizes[i];
		if (i < L)
			r->H += sizes[i];
	}
	r->O = sizes[L];
}

static inline int64_t ref_n_params(const ref_net *r)
{
	int64_t s = 0;
	for (int i = 0; i <= r->L; i++)
		s += (int64_t)r->n[i] * (ref_in_size(r, i) + 1);
	return s;
}

static inline void ref_free(ref_net *r)
{
	for (int i = 0; i <= r->L; i++) {
		free(r->W[i]);
		free(r->b[i]);
	}
}

/* Forward pass from a double raw input: z (H values), f (O values). */
static inline void ref_forward_d(const ref_net *r, const double *x, double *z, double *f)
{
	int maxn = r->D;
	for (int i = 0; i <= r->L; i++)
		if (r->n[i] > maxn)
			maxn = r->n[i];
	double *a = malloc(sizeof(double) * (size_t)maxn), *t = malloc(sizeof(double) * (size_t)maxn);
	for (int d = 0; d < r->D; d++)
		a[d] = (x[d] - r->mean) / r->std;
	int zo = 0;
	for (int i = 0; i <= r->L; i++) {
		int in = ref_in_size(r, i);
		for (int j = 0; j < r->n[i]; j++) {
			double s = r->b[i][j];
			for (int k = 0; k < in; k++)
				s += r->W[i][(size_t)j * in + k] * a[k];
			t[j] = s;
		}
		if (i < r->L) {
			for (int j = 0; j < r->n[i]; j++) {
				z[zo + j] = t[j];
				a[j] = t[j] > 0 ? t[j] : 0;
			}
			zo += r->n[i];
		} else {
			memcpy(f, t, sizeof(double) * (size_t)r->n[i]);
		}
	}
	free(a);
	free(t);
}

static inline void ref_forward(const ref_net *r, const float *x, double *z, double *f)
{
	double *xd = malloc(sizeof(double) * (size_t)r->D);
	for (int d = 0; d < r->D; d++)
		xd[d] = x[d];
	ref_forward_d(r, xd, z, f);
	free(xd);
}

/* Jacobians in raw input units by the explicit product with masks from z.
 * G: H x D (row h = gradient of hidden neuron h), J: O x D (logits).
 * Gabs / Jabs (may be NULL): the same products over |W| and |J|, a bound
 * on the magnitudes summed (for rounding tolerances). */
static inline void ref_jacobians(const ref_net *r, const double *z, double *G, double *J, double *Gabs, double *Jabs)
{
	int D = r->D;
	int maxn = 1;
	for (int i = 0; i <= r->L; i++)
		if (r->n[i] > maxn)
			maxn = r->n[i];
	double *prev = malloc(sizeof(double) * (size_t)maxn * D), *cur = malloc(sizeof(double) * (size_t)maxn * D);
	double *prevA = malloc(sizeof(double) * (size_t)maxn * D), *curA = malloc(sizeof(double) * (size_t)maxn * D);
	int zo = 0, zprev = 0;
	for (int i = 0; i <= r->L; i++) {
		int in = ref_in_size(r, i);
		for (int j = 0; j < r->n[i]; j++)
			for (int d = 0; d < D; d++) {
				double s = 0, sa = 0;
				if (i == 0) {
					s = r->W[0][(size_t)j * D + d] / r->std;
					sa = fabs(s);
				} else {
					for (int k = 0; k < in; k++) {
						if (!(z[zprev + k] > 0))   /* diag(m^{i-1}) */
							continue;
						double w = r->W[i][(size_t)j * in + k];
						s += w * prev[(size_t)k * D + d];
						sa += fabs(w) * prevA[(size_t)k * D + d];
					}
				}
				cur[(size_t)j * D + d] = s;
				curA[(size_t)j * D + d] = sa;
			}
		double *dst = i < r->L ? G + (size_t)zo * D : J;
		double *dstA = i < r->L ? (Gabs ? Gabs + (size_t)zo * D : NULL) : Jabs;
		memcpy(dst, cur, sizeof(double) * (size_t)r->n[i] * D);
		if (dstA)
			memcpy(dstA, curA, sizeof(double) * (size_t)r->n[i] * D);
		double *tmp = prev;
		prev = cur;
		cur = tmp;
		tmp = prevA;
		prevA = curA;
		curA = tmp;
		if (i < r->L) {
			zprev = zo;
			zo += r->n[i];
		}
	}
	free(prev);
	free(cur);
	free(prevA);
	free(curA);
}

/* Dual norm of v for the l_p ball, p in {0: l1, 1: l2, 2: linf}
 * (the rt.h order): q = inf, 2, 1. */
static inline double ref_dual(const double *v, int D, int p)
{
	double s = 0;
	for (int d = 0; d < D; d++) {
		double a = fabs(v[d]);
		if (p == 0)
			s = a > s ? a : s;
		else if (p == 1)
			s += a * a;
		else
			s += a;
	}
	return p == 1 ? sqrt(s) : s;
}

/* eps_p = min_h |z_h| / ||g_h||_q with its binding neuron and the runner-up
 * value (for deciding whether the binding neuron is a near tie). */
static inline void ref_margins(const ref_net *r, const double *z, const double *G, double eps[3], int bind[3], double second[3])
{
	for (int p = 0; p < 3; p++) {
		eps[p] = INFINITY;
		second[p] = INFINITY;
		bind[p] = -1;
		for (int h = 0; h < r->H; h++) {
			double q = ref_dual(G + (size_t)h * r->D, r->D, p);
			if (!(q > 0))
				continue;
			double e = fabs(z[h]) / q;
			if (e < eps[p]) {
				second[p] = eps[p];
				eps[p] = e;
				bind[p] = h;
			} else if (e < second[p]) {
				second[p] = e;
			}
		}
	}
}

/* Label and certified-prediction radius. */
static inline int ref_pred(const ref_net *r, const double *f, const double *J, const double eps[3], double pred[3])
{
	int D = r->D, y = 0;
	double *v = malloc(sizeof(double) * (size_t)D);
	for (int p = 0; p < 3; p++)
		pred[p] = eps[p];
	if (r->O == 1) {
		y = f[0] > 0;
		for (int p = 0; p < 3; p++) {
			double rr = fabs(f[0]) / ref_dual(J, D, p);
			if (rr < pred[p])
				pred[p] = rr;
		}
	} else {
		for (int k = 1; k < r->O; k++)
			if (f[k] > f[y])
				y = k;
		for (int k = 0; k < r->O; k++) {
			if (k == y)
				continue;
			for (int d = 0; d < D; d++)
				v[d] = J[(size_t)y * D + d] - J[(size_t)k * D + d];
			for (int p = 0; p < 3; p++) {
				double rr = (f[y] - f[k]) / ref_dual(v, D, p);
				if (rr < pred[p])
					pred[p] = rr;
			}
		}
	}
	free(v);
	return y;
}

/* Directional margin along d (raw units): min over neurons whose z moves
 * toward zero, z (g . d) < 0, of |z| / |g . d|. */
static inline double ref_direction(const ref_net *r, const double *z, const double *G, const double *d, int *bind, double *second)
{
	double t = INFINITY, t2 = INFINITY;
	*bind = -1;
	for (int h = 0; h < r->H; h++) {
		double gd = 0;
		for (int k = 0; k < r->D; k++)
			gd += G[(size_t)h * r->D + k] * d[k];
		bool on = z[h] > 0;
		if (!(on ? gd < 0 : gd > 0))
			continue;
		double e = fabs(z[h]) / fabs(gd);
		if (e < t) {
			t2 = t;
			t = e;
			*bind = h;
		} else if (e < t2) {
			t2 = e;
		}
	}
	if (second)
		*second = t2;
	return t;
}

/* Number of neurons whose sign (z > 0) differs between two z vectors. */
static inline int ref_pattern_diff_dd(const double *a, const double *b, int n)
{
	int c = 0;
	for (int i = 0; i < n; i++)
		c += (a[i] > 0) != (b[i] > 0);
	return c;
}
static inline int ref_pattern_diff_fd(const float *a, const double *b, int n)
{
	int c = 0;
	for (int i = 0; i < n; i++)
		c += (a[i] > 0) != (b[i] > 0);
	return c;
}

#endif
