/* ref_graph.h: a naive double-precision reference for graphs of dense,
 * conv2d, avgpool, add and rnn operations with ReLUs, written from the
 * language specification and docs/method.md, independently of the compiler.
 * An rnn over T steps is T nodes, step t reading frame t of the sequence
 * (a block of columns of its operand) and step t - 1, all of them expanded
 * from the same four tensors.
 *
 * Every operation is expanded into explicit dense matrices over flattened
 * values (C-major order, c then y then x), one per operand, plus a constant
 * vector: value = sum_k M_k operand_k + c.  That form is the most obviously
 * correct one (a conv is a sparse matrix whose entries are read off the
 * definition of cross-correlation with zero padding); the products below skip
 * the zero entries, which changes nothing but the running time.
 *   forward      in double from the float parameters and raw input
 *   Jacobians    J_v = sum_k M_k diag(mask_k) J_k, J_input = I / std
 *                (raw units) or I (normalized units); masks from a given z
 *   magnitudes   the same products over |M| and |J| (rounding tolerances)
 *   margins      eps_p = min_h |z_h| / ||g_h||_q, q dual to p
 *   prediction   min(eps_p, min_{k != y} (f_y - f_k) / ||J_y - J_k||_q)
 *   direction    min over neurons with z (g . d) < 0 of |z| / |g . d|
 *   losses       cross-entropy (softmax, or sigmoid for one logit), ROLL with
 *                the top-gamma selection, the distance regularizer (rt.h)
 * Hidden neurons are the values of relu'd statements in definition order;
 * parameters are laid out per parameterized statement, weight then bias.
 * Header-only; every function is static inline.
 */
#ifndef LLN_TEST_REF_GRAPH_H
#define LLN_TEST_REF_GRAPH_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RG_MAXN 72

typedef enum { RG_INPUT, RG_DENSE, RG_CONV, RG_POOL, RG_ADD, RG_RNN } rg_kind;

/* A sparse row-compressed copy of an expanded matrix. */
typedef struct rg_csr {
	int rows;
	int *start;     /* rows + 1 */
	int *col;
	double *val;
} rg_csr;

typedef struct rg_node {
	rg_kind kind;
	char name[32];
	int arg[2];           /* operand nodes (arg[1]: add, and rnn steps after the first) */
	int slice, F;         /* rnn: the frame is F columns of arg[0] from slice */
	int C, H, W, n;       /* output shape, n = C H W */
	int out, k, stride, pad;
	bool relu;
	int64_t poff;         /* first weight in P (bias follows), -1 if none */
	int64_t wcount, bcount;
	int zoff;             /* first hidden neuron, -1 if not relu'd */
	/* expanded form, rebuilt by rg_load */
	double *M[2];         /* n x operand n, row-major */
	rg_csr S[2];
	double *c;            /* n */
} rg_node;

typedef struct rg_graph {
	int nn;               /* nodes; node 0 is the input */
	rg_node node[RG_MAXN];
	int out;              /* output node */
	int D, Hn, O;         /* inputs, hidden neurons, logits */
	double mean, std;
	int64_t n_params;
} rg_graph;

/* ---- building ---- */

static inline int rg_input(rg_graph *g, int C, int H, int W, double mean, double std)
{
	memset(g, 0, sizeof *g);
	rg_node *v = &g->node[0];
	v->kind = RG_INPUT;
	strcpy(v->name, "x");
	v->C = C, v->H = H, v->W = W, v->n = C * H * W;
	v->poff = -1;
	v->zoff = -1;
	g->nn = 1;
	g->D = v->n;
	g->mean = mean;
	g->std = std;
	g->out = -1;
	return 0;
}

static inline int rg_add_node(rg_graph *g, rg_kind kind, const char *name, int a, int b, bool relu)
{
	if (g->nn >= RG_MAXN)
		abort();
	int i = g->nn++;
	rg_node *v = &g->node[i];
	memset(v, 0, sizeof *v);
	v->kind = kind;
	snprintf(v->name, sizeof v->name, "%s", name);
	v->arg[0] = a;
	v->arg[1] = b;
	v->relu = relu;
	v->poff = -1;
	v->zoff = -1;
	return i;
}

/* Bookkeeping shared by every statement once its shape is known. */
static inline int rg_finish_node(rg_graph *g, int i)
{
	rg_node *v = &g->node[i];
	v->n = v->C * v->H * v->W;
	if (v->wcount + v->bcount > 0) {
		v->poff = g->n_params;
		g->n_params += v->wcount + v->bcount;
	}
	if (v->relu) {
		v->zoff = g->Hn;
		g->Hn += v->n;
	}
	return i;
}

static inline int rg_dense(rg_graph *g, const char *name, int a, int n, bool relu)
{
	int i = rg_add_node(g, RG_DENSE, name, a, -1, relu);
	rg_node *v = &g->node[i];
	v->out = n;
	v->C = n, v->H = 1, v->W = 1;
	v->wcount = (int64_t)n * g->node[a].n;
	v->bcount = n;
	return rg_finish_node(g, i);
}

static inline int rg_conv(rg_graph *g, const char *name, int a, int out, int k, int stride, int pad, bool relu)
{
	int i = rg_add_node(g, RG_CONV, name, a, -1, relu);
	rg_node *v = &g->node[i];
	const rg_node *u = &g->node[a];
	v->out = out, v->k = k, v->stride = stride, v->pad = pad;
	v->C = out;
	v->H = (u->H + 2 * pad - k) / stride + 1;
	v->W = (u->W + 2 * pad - k) / stride + 1;
	v->wcount = (int64_t)out * u->C * k * k;
	v->bcount = out;
	return rg_finish_node(g, i);
}

static inline int rg_pool(rg_graph *g, const char *name, int a, int k, int stride, bool relu)
{
	int i = rg_add_node(g, RG_POOL, name, a, -1, relu);
	rg_node *v = &g->node[i];
	const rg_node *u = &g->node[a];
	v->k = k, v->stride = stride;
	v->C = u->C;
	v->H = (u->H - k) / stride + 1;
	v->W = (u->W - k) / stride + 1;
	return rg_finish_node(g, i);
}

static inline int rg_add(rg_graph *g, const char *name, int a, int b, bool relu)
{
	int i = rg_add_node(g, RG_ADD, name, a, b, relu);
	rg_node *v = &g->node[i];
	const rg_node *u = &g->node[a];
	v->C = u->C, v->H = u->H, v->W = u->W;
	return rg_finish_node(g, i);
}

/* rnn(a, n) over T steps: nn.RNN(F, n, nonlinearity='relu'), the frames
 * being T blocks of F values of the input (a = 0, D = T F) or the steps of
 * a stacked rnn starting at node a.  Its tensors W_ih [n, F], W_hh [n, n],
 * b_ih [n], b_hh [n] follow each other in P.  Returns the last step. */
static inline int rg_rnn(rg_graph *g, const char *name, int a, int T, int n)
{
	int first = g->nn, F = a == 0 ? g->D / T : g->node[a].n;
	for (int t = 0; t < T; t++) {
		int i = rg_add_node(g, RG_RNN, name, a == 0 ? 0 : a + t, t ? first + t - 1 : -1, true);
		rg_node *v = &g->node[i];
		v->out = n;
		v->C = n, v->H = 1, v->W = 1;
		v->F = F;
		v->slice = a == 0 ? t * F : 0;
		if (t == 0) {
			v->wcount = (int64_t)n * (F + n);
			v->bcount = 2 * n;
		}
		rg_finish_node(g, i);
		if (t > 0) {
			v->poff = g->node[first].poff;
			v->wcount = g->node[first].wcount;
			v->bcount = g->node[first].bcount;
		}
	}
	return first + T - 1;
}

static inline void rg_output(rg_graph *g, int i)
{
	g->out = i;
	g->O = g->node[i].n;
}

static inline int rg_nargs(const rg_node *v)
{
	return v->kind == RG_INPUT ? 0 : v->kind == RG_ADD || (v->kind == RG_RNN && v->arg[1] >= 0) ? 2 : 1;
}

/* ---- expansion into matrices ---- */

static inline void rg_csr_build(rg_csr *s, const double *M, int rows, int cols)
{
	free(s->start);
	free(s->col);
	free(s->val);
	int nnz = 0;
	for (int64_t i = 0; i < (int64_t)rows * cols; i++)
		nnz += M[i] != 0;
	s->rows = rows;
	s->start = malloc(sizeof(int) * (size_t)(rows + 1));
	s->col = malloc(sizeof(int) * (size_t)(nnz + 1));
	s->val = malloc(sizeof(double) * (size_t)(nnz + 1));
	int k = 0;
	for (int r = 0; r < rows; r++) {
		s->start[r] = k;
		for (int c = 0; c < cols; c++)
			if (M[(size_t)r * cols + c] != 0) {
				s->col[k] = c;
				s->val[k++] = M[(size_t)r * cols + c];
			}
	}
	s->start[rows] = k;
}

/* Expand every statement from the parameters P (double, n_params). */
static inline void rg_load(rg_graph *g, const double *P)
{
	for (int i = 1; i < g->nn; i++) {
		rg_node *v = &g->node[i];
		const rg_node *u = &g->node[v->arg[0]];
		int na = rg_nargs(v);
		for (int k = 0; k < na; k++) {
			int cols = g->node[v->arg[k]].n;
			free(v->M[k]);
			v->M[k] = calloc((size_t)v->n * cols, sizeof(double));
		}
		free(v->c);
		v->c = calloc((size_t)v->n, sizeof(double));
		double *M = v->M[0];
		const double *Wt = v->poff >= 0 ? P + v->poff : NULL;
		const double *bias = v->poff >= 0 ? P + v->poff + v->wcount : NULL;
		switch (v->kind) {
		case RG_DENSE:   /* y_j = sum_i W[j][i] x_i + b_j over the C-major flattening */
			for (int j = 0; j < v->n; j++) {
				for (int c = 0; c < u->n; c++)
					M[(size_t)j * u->n + c] = Wt[(size_t)j * u->n + c];
				v->c[j] = bias[j];
			}
			break;
		case RG_CONV:    /* y[o][oy][ox] = b[o] + sum W[o][c][ky][kx] x[c][oy S - P + ky][ox S - P + kx] */
			for (int o = 0; o < v->C; o++)
				for (int oy = 0; oy < v->H; oy++)
					for (int ox = 0; ox < v->W; ox++) {
						int r = (o * v->H + oy) * v->W + ox;
						v->c[r] = bias[o];
						for (int c = 0; c < u->C; c++)
							for (int ky = 0; ky < v->k; ky++)
								for (int kx = 0; kx < v->k; kx++) {
									int iy = oy * v->stride - v->pad + ky, ix = ox * v->stride - v->pad + kx;
									if (iy < 0 || iy >= u->H || ix < 0 || ix >= u->W)
										continue;   /* zero padding */
									int col = (c * u->H + iy) * u->W + ix;
									M[(size_t)r * u->n + col] +=
										Wt[(((size_t)o * u->C + c) * v->k + ky) * v->k + kx];
								}
					}
			break;
		case RG_POOL:    /* y[c][oy][ox] = mean of the K x K window at (oy S, ox S) */
			for (int c = 0; c < v->C; c++)
				for (int oy = 0; oy < v->H; oy++)
					for (int ox = 0; ox < v->W; ox++) {
						int r = (c * v->H + oy) * v->W + ox;
						for (int ky = 0; ky < v->k; ky++)
							for (int kx = 0; kx < v->k; kx++) {
								int col = (c * u->H + oy * v->stride + ky) * u->W + ox * v->stride + kx;
								M[(size_t)r * u->n + col] += 1.0 / (v->k * v->k);
							}
					}
			break;
		case RG_ADD:     /* y = a + b */
			for (int k = 0; k < 2; k++)
				for (int r = 0; r < v->n; r++)
					v->M[k][(size_t)r * v->n + r] += 1;
			break;
		case RG_RNN:     /* z_t = W_ih x_t + b_ih + W_hh relu(z_{t-1}) + b_hh */
			for (int j = 0; j < v->n; j++) {
				for (int i = 0; i < v->F; i++)
					M[(size_t)j * u->n + v->slice + i] = Wt[(size_t)j * v->F + i];
				if (na > 1)
					for (int k = 0; k < v->n; k++)
						v->M[1][(size_t)j * v->n + k] = Wt[(size_t)v->n * v->F + (size_t)j * v->n + k];
				v->c[j] = bias[j] + bias[v->n + j];
			}
			break;
		case RG_INPUT:
			break;
		}
		for (int k = 0; k < na; k++)
			rg_csr_build(&v->S[k], v->M[k], v->n, g->node[v->arg[k]].n);
	}
}

static inline void rg_load_f(rg_graph *g, const float *P)
{
	double *Pd = malloc(sizeof(double) * (size_t)(g->n_params + 1));
	for (int64_t i = 0; i < g->n_params; i++)
		Pd[i] = P[i];
	rg_load(g, Pd);
	free(Pd);
}

static inline void rg_free(rg_graph *g)
{
	for (int i = 1; i < g->nn; i++)
		for (int k = 0; k < 2; k++) {
			free(g->node[i].M[k]);
			free(g->node[i].S[k].start);
			free(g->node[i].S[k].col);
			free(g->node[i].S[k].val);
			g->node[i].M[k] = NULL;
			g->node[i].S[k] = (rg_csr){ 0 };
		}
	for (int i = 1; i < g->nn; i++) {
		free(g->node[i].c);
		g->node[i].c = NULL;
	}
}

/* ---- forward ---- */

/* Per-node values of one example: pre-activations and a bound on the
 * magnitudes that flowed into each (for rounding tolerances). */
typedef struct rg_vals {
	double *pre[RG_MAXN];
	double *mag[RG_MAXN];
} rg_vals;

static inline void rg_vals_alloc(const rg_graph *g, rg_vals *s)
{
	for (int i = 0; i < g->nn; i++) {
		s->pre[i] = calloc((size_t)g->node[i].n, sizeof(double));
		s->mag[i] = calloc((size_t)g->node[i].n, sizeof(double));
	}
}
static inline void rg_vals_free(const rg_graph *g, rg_vals *s)
{
	for (int i = 0; i < g->nn; i++) {
		free(s->pre[i]);
		free(s->mag[i]);
	}
}

/* The value node i passes on: relu of its pre-activation when relu'd. */
static inline double rg_act(const rg_graph *g, const rg_vals *s, int i, int r)
{
	double v = s->pre[i][r];
	return g->node[i].relu ? (v > 0 ? v : 0) : v;
}

/* Forward from a double raw input.  z (Hn) and f (O) may be NULL.
 * mag[i][r] = |c_r| + sum |M| mag(operand): every magnitude summed into the
 * value, through all earlier statements (a bound for the error of any
 * evaluation that rounds each intermediate value). */
static inline void rg_forward_v(const rg_graph *g, const double *x, rg_vals *s, double *z, double *f)
{
	for (int d = 0; d < g->D; d++) {
		s->pre[0][d] = (x[d] - g->mean) / g->std;
		s->mag[0][d] = fabs(s->pre[0][d]);
	}
	for (int i = 1; i < g->nn; i++) {
		const rg_node *v = &g->node[i];
		for (int r = 0; r < v->n; r++) {
			double acc = v->c[r], mag = fabs(v->c[r]);
			for (int k = 0; k < rg_nargs(v); k++) {
				const rg_csr *S = &v->S[k];
				int a = v->arg[k];
				for (int e = S->start[r]; e < S->start[r + 1]; e++) {
					acc += S->val[e] * rg_act(g, s, a, S->col[e]);
					mag += fabs(S->val[e]) * s->mag[a][S->col[e]];
				}
			}
			s->pre[i][r] = acc;
			s->mag[i][r] = mag;
		}
		if (z && v->relu)
			memcpy(z + v->zoff, s->pre[i], sizeof(double) * (size_t)v->n);
	}
	if (f)
		memcpy(f, s->pre[g->out], sizeof(double) * (size_t)g->O);
}

static inline void rg_forward_d(const rg_graph *g, const double *x, double *z, double *f, double *zmag, double *fmag)
{
	rg_vals s;
	rg_vals_alloc(g, &s);
	rg_forward_v(g, x, &s, z, f);
	for (int i = 1; i < g->nn; i++)
		if (zmag && g->node[i].relu)
			memcpy(zmag + g->node[i].zoff, s.mag[i], sizeof(double) * (size_t)g->node[i].n);
	if (fmag)
		memcpy(fmag, s.mag[g->out], sizeof(double) * (size_t)g->O);
	rg_vals_free(g, &s);
}

static inline void rg_forward_f(const rg_graph *g, const float *x, double *z, double *f, double *zmag, double *fmag)
{
	double *xd = malloc(sizeof(double) * (size_t)g->D);
	for (int d = 0; d < g->D; d++)
		xd[d] = x[d];
	rg_forward_d(g, xd, z, f, zmag, fmag);
	free(xd);
}

/* ---- Jacobians ---- */

/* Rows d z_h / d x for every hidden neuron (G: Hn x D) and d f / d x
 * (J: O x D), the masks of relu'd values taken from z (z > 0).  `scale` is
 * d x_normalized / d x: 1/std for raw units, 1 for normalized units.
 * Gabs, Jabs (may be NULL): the same products over |M| and |J|. */
static inline void rg_jacobians(const rg_graph *g, const double *z, double scale, double *G, double *J, double *Gabs,
                                double *Jabs)
{
	int D = g->D;
	double *Jn[RG_MAXN], *An[RG_MAXN];
	Jn[0] = calloc((size_t)D * D, sizeof(double));
	An[0] = calloc((size_t)D * D, sizeof(double));
	for (int d = 0; d < D; d++) {
		Jn[0][(size_t)d * D + d] = scale;
		An[0][(size_t)d * D + d] = fabs(scale);
	}
	for (int i = 1; i < g->nn; i++) {
		const rg_node *v = &g->node[i];
		Jn[i] = calloc((size_t)v->n * D, sizeof(double));
		An[i] = calloc((size_t)v->n * D, sizeof(double));
		for (int r = 0; r < v->n; r++) {
			double *dst = Jn[i] + (size_t)r * D, *dsta = An[i] + (size_t)r * D;
			for (int k = 0; k < rg_nargs(v); k++) {
				const rg_csr *S = &v->S[k];
				const rg_node *u = &g->node[v->arg[k]];
				for (int e = S->start[r]; e < S->start[r + 1]; e++) {
					int col = S->col[e];
					if (u->relu && !(z[u->zoff + col] > 0))   /* diag(mask) */
						continue;
					double w = S->val[e];
					const double *src = Jn[v->arg[k]] + (size_t)col * D, *srca = An[v->arg[k]] + (size_t)col * D;
					for (int d = 0; d < D; d++) {
						dst[d] += w * src[d];
						dsta[d] += fabs(w) * srca[d];
					}
				}
			}
		}
		if (v->relu) {
			if (G)
				memcpy(G + (size_t)v->zoff * D, Jn[i], sizeof(double) * (size_t)v->n * D);
			if (Gabs)
				memcpy(Gabs + (size_t)v->zoff * D, An[i], sizeof(double) * (size_t)v->n * D);
		}
	}
	if (J)
		memcpy(J, Jn[g->out], sizeof(double) * (size_t)g->O * D);
	if (Jabs)
		memcpy(Jabs, An[g->out], sizeof(double) * (size_t)g->O * D);
	for (int i = 0; i < g->nn; i++) {
		free(Jn[i]);
		free(An[i]);
	}
}

/* ---- certificates ---- */

/* Dual norm of v for the l_p ball, p in rt.h order (0: l1, 1: l2, 2: linf). */
static inline double rg_dual(const double *v, int D, int p)
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

/* eps_p = min_h |z_h| / ||g_h||_q (g = 0 never binds), its binding neuron
 * and the runner-up value. */
static inline void rg_margins(const rg_graph *g, const double *z, const double *G, double eps[3], int bind[3],
                              double second[3])
{
	for (int p = 0; p < 3; p++) {
		eps[p] = second[p] = INFINITY;
		bind[p] = -1;
		for (int h = 0; h < g->Hn; h++) {
			double q = rg_dual(G + (size_t)h * g->D, g->D, p);
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

/* The label (argmax; one logit: f > 0) and the certified-prediction radius
 * min(eps_p, min_{k != y} (f_y - f_k) / ||J_y - J_k||_q). */
static inline int rg_pred(const rg_graph *g, const double *f, const double *J, const double eps[3], double pred[3])
{
	int D = g->D, y = 0;
	double *v = malloc(sizeof(double) * (size_t)D);
	for (int p = 0; p < 3; p++)
		pred[p] = eps[p];
	if (g->O == 1) {
		y = f[0] > 0;
		for (int p = 0; p < 3; p++)
			pred[p] = fmin(pred[p], fabs(f[0]) / rg_dual(J, D, p));
	} else {
		for (int k = 1; k < g->O; k++)
			if (f[k] > f[y])
				y = k;
		for (int k = 0; k < g->O; k++) {
			if (k == y)
				continue;
			for (int d = 0; d < D; d++)
				v[d] = J[(size_t)y * D + d] - J[(size_t)k * D + d];
			for (int p = 0; p < 3; p++)
				pred[p] = fmin(pred[p], (f[y] - f[k]) / rg_dual(v, D, p));
		}
	}
	free(v);
	return y;
}

/* Directional margin along dir: min over neurons moving toward zero. */
static inline double rg_direction(const rg_graph *g, const double *z, const double *G, const double *dir, int *bind,
                                  double *second)
{
	double t = INFINITY, t2 = INFINITY;
	*bind = -1;
	for (int h = 0; h < g->Hn; h++) {
		double gd = 0;
		for (int k = 0; k < g->D; k++)
			gd += G[(size_t)h * g->D + k] * dir[k];
		if (!(z[h] > 0 ? gd < 0 : gd > 0))
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

static inline int rg_pattern_diff(const double *a, const double *b, int n)
{
	int c = 0;
	for (int i = 0; i < n; i++)
		c += (a[i] > 0) != (b[i] > 0);
	return c;
}

/* ---- training losses (rt.h's formulas, in double) ---- */

typedef struct rg_loss_spec {
	int kind;          /* 0 vanilla, 1 roll, 2 distance */
	double lambda, C, gamma;
} rg_loss_spec;

/* Per-example quantities of the loss: everything is in double. */
typedef struct rg_example {
	double *z, *f, *sq;   /* Hn, O, Hn */
	double ce, loss;
	uint64_t piece;       /* hash of the smooth piece the loss lies on */
	double kink;          /* distance to the nearest kink, relative (min over the tests below) */
} rg_example;

static inline void rg_example_alloc(const rg_graph *g, rg_example *e)
{
	e->z = calloc((size_t)g->Hn + 1, sizeof(double));
	e->f = calloc((size_t)g->O, sizeof(double));
	e->sq = calloc((size_t)g->Hn + 1, sizeof(double));
}
static inline void rg_example_free(rg_example *e)
{
	free(e->z);
	free(e->f);
	free(e->sq);
}

static inline uint64_t rg_mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
	return h * 0x100000001b3ULL;
}

/* The loss of one example for the current parameters (rg_load first):
 *   cross-entropy  logsumexp(f) - f_y, or softplus(f) - y f for one logit
 *   roll           + lambda/k sum_{h in I} (sq_h + C max(0, 1 - |z_h|)),
 *                  I the k = ceil(gamma/100 Hn) largest brackets, ties to
 *                  the lower index
 *   distance       - lambda min_{h: sq_h > 0} |z_h| / sqrt(sq_h)
 * sq_h = ||d z_h / d x_normalized||^2.  e->piece identifies the smooth piece
 * (masks, active hinges, the selected set, the binding neuron); e->kink is
 * how close the example is to leaving it (absolute for z, relative for the
 * selection and the binding neuron). */
static inline double rg_loss(const rg_graph *g, const float *x, int y, const rg_loss_spec *ls, rg_example *e)
{
	int Hn = g->Hn, D = g->D, O = g->O;
	rg_forward_f(g, x, e->z, e->f, NULL, NULL);
	uint64_t piece = 1469598103934665603ULL;
	double kink = INFINITY;
	for (int h = 0; h < Hn; h++) {
		piece = rg_mix(piece, (uint64_t)(e->z[h] > 0) | (uint64_t)(fabs(e->z[h]) < 1) << 1);
		kink = fmin(kink, fabs(e->z[h]));
	}
	if (ls->kind != 0) {
		double *G = malloc(sizeof(double) * ((size_t)Hn * D + 1));
		rg_jacobians(g, e->z, 1.0, G, NULL, NULL, NULL);
		for (int h = 0; h < Hn; h++) {
			double s = 0;
			for (int d = 0; d < D; d++)
				s += G[(size_t)h * D + d] * G[(size_t)h * D + d];
			e->sq[h] = s;
		}
		free(G);
	}
	double ce;
	if (O == 1) {
		double f = e->f[0];
		ce = fmax(f, 0) + log1p(exp(-fabs(f))) - (y ? f : 0);
	} else {
		double mx = e->f[0];
		for (int k = 1; k < O; k++)
			mx = fmax(mx, e->f[k]);
		double s = 0;
		for (int k = 0; k < O; k++)
			s += exp(e->f[k] - mx);
		ce = mx + log(s) - e->f[y];
	}
	double reg = 0;
	if (ls->kind == 1) {
		for (int h = 0; h < Hn; h++)
			kink = fmin(kink, fabs(fabs(e->z[h]) - 1));
		int k = ls->gamma >= 100 ? Hn : (int)ceil(ls->gamma / 100.0 * Hn);
		if (k < 1)
			k = 1;
		double *br = malloc(sizeof(double) * (size_t)Hn);
		int *idx = malloc(sizeof(int) * (size_t)Hn);
		for (int h = 0; h < Hn; h++) {
			br[h] = e->sq[h] + ls->C * fmax(0, 1 - fabs(e->z[h]));
			idx[h] = h;
		}
		/* selection by insertion sort on (larger bracket, lower index) */
		for (int i = 1; i < Hn; i++) {
			int t = idx[i], j = i;
			while (j > 0 && (br[idx[j - 1]] < br[t] || (br[idx[j - 1]] == br[t] && idx[j - 1] > t))) {
				idx[j] = idx[j - 1];
				j--;
			}
			idx[j] = t;
		}
		double sum = 0;
		for (int i = 0; i < k; i++)
			sum += br[idx[i]];
		reg = ls->lambda / k * sum;
		if (k < Hn) {
			double gap = br[idx[k - 1]] - br[idx[k]];
			kink = fmin(kink, gap / fmax(fabs(br[idx[k - 1]]), 1e-300));
			bool *in = calloc((size_t)Hn, sizeof(bool));
			for (int i = 0; i < k; i++)
				in[idx[i]] = true;
			for (int h = 0; h < Hn; h++)
				piece = rg_mix(piece, in[h]);
			free(in);
		}
		free(br);
		free(idx);
	} else if (ls->kind == 2) {
		double best = INFINITY, second = INFINITY;
		int b = -1;
		for (int h = 0; h < Hn; h++) {
			if (!(e->sq[h] > 0))
				continue;
			double r = fabs(e->z[h]) / sqrt(e->sq[h]);
			if (r < best) {
				second = best;
				best = r;
				b = h;
			} else if (r < second) {
				second = r;
			}
		}
		if (b >= 0) {
			reg = -ls->lambda * best;
			kink = fmin(kink, (second - best) / best);
		}
		piece = rg_mix(piece, (uint64_t)(b + 1));
	}
	e->ce = ce;
	e->loss = ce + reg;
	e->piece = piece;
	e->kink = kink;
	return e->loss;
}

#endif
