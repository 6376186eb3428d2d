/* regions.c: activation regions drawn exactly.
 *
 * rt_regions_2d partitions a window of the plane into the activation regions
 * of a 2-input model by polygon clipping, layer by layer.  Inside a polygon
 * on which the masks of layers 1..l-1 are constant, every neuron of layer l
 * is one affine function of the input, z_j(x) = z_j(c) + g_j . (x - c), read
 * off the forward and grads kernels at the polygon's centroid c; the line
 * z_j = 0 cuts the polygon into two convex parts.  After cutting by all of
 * layer l's lines, the masks of layers 1..l are constant on every part, so
 * the next layer proceeds the same way.  The masks decided by the cuts are
 * carried along with each polygon and given to the grads kernel, so a thin
 * polygon whose centroid lies within rounding of one of its edges still gets
 * the gradients of its own pattern; the pattern hash of a final polygon is
 * rt_pattern_hash of those signs, which is the hash of z at any point of its
 * interior.
 *
 * rt_segment_boundaries walks a segment with the direction kernel: the
 * directional margin from the current point is the distance to the next
 * boundary; record it, step just past it (checking that the pattern did
 * change, so float rounding of the point cannot record one crossing twice),
 * and continue.
 *
 * docs/regions.md describes both with their tolerances.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

/* ------------------------------------------------------------------------
 * Polygons under construction: vertices and the sign bits decided so far
 * ---------------------------------------------------------------------- */
typedef struct poly {
	int n;
	double *xy;          /* 2n, in one block with bits */
	uint64_t *bits;      /* nw words: bit h set when neuron h is on */
} poly;

typedef struct plist {
	poly *p;
	int64_t n, cap;
} plist;

static void poly_free(poly *p)
{
	free(p->xy);
	p->xy = NULL;
	p->bits = NULL;
}

static void plist_free(plist *l)
{
	for (int64_t i = 0; i < l->n; i++)
		poly_free(&l->p[i]);
	free(l->p);
	memset(l, 0, sizeof *l);
}

static int plist_push(plist *l, poly p)
{
	if (l->n == l->cap) {
		int64_t cap = l->cap ? 2 * l->cap : 16;
		poly *q = realloc(l->p, sizeof *q * (size_t)cap);
		if (!q)
			return -1;
		l->p = q;
		l->cap = cap;
	}
	l->p[l->n++] = p;
	return 0;
}

static double poly_area(const double *xy, int n)
{
	double a = 0;
	for (int i = 0; i < n; i++) {
		int j = i + 1 == n ? 0 : i + 1;
		a += xy[2 * i] * xy[2 * j + 1] - xy[2 * j] * xy[2 * i + 1];
	}
	return 0.5 * a;
}

/* Area centroid; strictly interior for a convex polygon of positive area. */
static void poly_centroid(const double *xy, int n, double c[2])
{
	/* relative to the first vertex, for accuracy far from the origin */
	double x0 = xy[0], y0 = xy[1], a = 0, cx = 0, cy = 0;
	for (int i = 1; i + 1 < n; i++) {
		double ax = xy[2 * i] - x0, ay = xy[2 * i + 1] - y0;
		double bx = xy[2 * i + 2] - x0, by = xy[2 * i + 3] - y0;
		double t = ax * by - bx * ay;
		a += t;
		cx += t * (ax + bx);
		cy += t * (ay + by);
	}
	if (a != 0) {
		c[0] = x0 + cx / (3 * a);
		c[1] = y0 + cy / (3 * a);
	} else {
		double sx = 0, sy = 0;
		for (int i = 0; i < n; i++) {
			sx += xy[2 * i];
			sy += xy[2 * i + 1];
		}
		c[0] = sx / n;
		c[1] = sy / n;
	}
}

/* Drops consecutive vertices closer than dup (and a closing duplicate). */
static int poly_clean(double *xy, int n, double dup)
{
	int m = 0;
	for (int i = 0; i < n; i++) {
		if (m > 0 && fabs(xy[2 * i] - xy[2 * (m - 1)]) <= dup &&
		    fabs(xy[2 * i + 1] - xy[2 * (m - 1) + 1]) <= dup)
			continue;
		xy[2 * m] = xy[2 * i];
		xy[2 * m + 1] = xy[2 * i + 1];
		m++;
	}
	while (m > 1 && fabs(xy[0] - xy[2 * (m - 1)]) <= dup && fabs(xy[1] - xy[2 * (m - 1) + 1]) <= dup)
		m--;
	return m;
}

static poly poly_make(const double *xy, int n, const uint64_t *bits, int nw)
{
	poly p = { n, malloc(sizeof(double) * 2 * (size_t)n + sizeof(uint64_t) * (size_t)nw), NULL };
	if (p.xy) {
		p.bits = (uint64_t *)(p.xy + 2 * n);
		memcpy(p.xy, xy, sizeof(double) * 2 * (size_t)n);
		memcpy(p.bits, bits, sizeof(uint64_t) * (size_t)nw);
	}
	return p;
}

static void set_bit(uint64_t *bits, int64_t h, bool on)
{
	const uint64_t bit = (uint64_t)1 << (h & 63);
	if (on)
		bits[h >> 6] |= bit;
	else
		bits[h >> 6] &= ~bit;
}

static bool get_bit(const uint64_t *bits, int64_t h)
{
	return (bits[h >> 6] >> (h & 63)) & 1;
}

static void bits_to_z(const uint64_t *bits, int64_t H, float *z)
{
	for (int64_t h = 0; h < H; h++)
		z[h] = get_bit(bits, h) ? 1.0f : -1.0f;
}

/* The line z_h(x) = z0 + a . (x - c) = 0 of one neuron on one polygon. */
typedef struct line {
	double a0, a1, z0, tol;
} line;

typedef struct rctx {
	const rt_model *m;
	const float *P;
	int64_t H;
	int nw;
	double min_area;     /* pieces smaller than this are dropped */
	double dist_tol;     /* vertices this close to a line lie on it */
	double dup;          /* vertices this close are one */
	float *ws, *logits, *zm;
	float **z, **G;      /* per layer: forward and grads at that layer's centroid */
	line *lines;         /* the current layer's lines */
	plist *work, *tmp;   /* per layer: the pieces of one polygon */
	double *buf, *s;     /* split scratch for polygons of up to cap_v vertices */
	int cap_v;
	plist out;
} rctx;

/* Splits q by line L of neuron h: the part with z_h > 0 gets h's bit set.
 * Appends the surviving parts to out; q is consumed. */
static int split(rctx *x, poly q, const line *L, const double c[2], int64_t h, plist *out)
{
	const int n = q.n;
	if (n + 2 > x->cap_v) {
		int cap = x->cap_v;
		while (cap < n + 2)
			cap *= 2;
		double *b = malloc(sizeof(double) * 4 * (size_t)(cap + 2)), *s = malloc(sizeof(double) * (size_t)cap);
		if (!b || !s) {
			free(b);
			free(s);
			poly_free(&q);
			return -1;
		}
		free(x->buf);
		free(x->s);
		x->buf = b;
		x->s = s;
		x->cap_v = cap;
	}
	double *s = x->s;
	int npos = 0, nneg = 0;
	for (int i = 0; i < n; i++) {
		s[i] = L->a0 * (q.xy[2 * i] - c[0]) + L->a1 * (q.xy[2 * i + 1] - c[1]) + L->z0;
		npos += s[i] > L->tol;
		nneg += s[i] < -L->tol;
	}
	if (nneg == 0 || npos == 0) {
		/* one side only; all on the line (g = 0, a constant form): by its value */
		set_bit(q.bits, h, npos ? true : nneg ? false : L->z0 > 0);
		int rc = plist_push(out, q);
		if (rc)
			poly_free(&q);
		return rc;
	}
	double *Pp = x->buf, *Np = x->buf + 2 * (n + 2);
	int np = 0, nn = 0;
	for (int i = 0; i < n; i++) {
		int j = i + 1 == n ? 0 : i + 1;
		int ki = s[i] > L->tol ? 1 : s[i] < -L->tol ? -1 : 0;
		int kj = s[j] > L->tol ? 1 : s[j] < -L->tol ? -1 : 0;
		double xi = q.xy[2 * i], yi = q.xy[2 * i + 1];
		if (ki >= 0) {
			Pp[2 * np] = xi;
			Pp[2 * np + 1] = yi;
			np++;
		}
		if (ki <= 0) {
			Np[2 * nn] = xi;
			Np[2 * nn + 1] = yi;
			nn++;
		}
		if (ki * kj < 0) {
			double t = s[i] / (s[i] - s[j]);
			double px = xi + t * (q.xy[2 * j] - xi), py = yi + t * (q.xy[2 * j + 1] - yi);
			Pp[2 * np] = px;
			Pp[2 * np + 1] = py;
			np++;
			Np[2 * nn] = px;
			Np[2 * nn + 1] = py;
			nn++;
		}
	}
	np = poly_clean(Pp, np, x->dup);
	nn = poly_clean(Np, nn, x->dup);
	int rc = 0;
	const double *part[2] = { Pp, Np };
	const int cnt[2] = { np, nn };
	for (int k = 0; k < 2 && rc == 0; k++) {
		if (cnt[k] < 3 || poly_area(part[k], cnt[k]) < x->min_area)
			continue;
		poly r = poly_make(part[k], cnt[k], q.bits, x->nw);
		if (!r.xy) {
			rc = -1;
			break;
		}
		set_bit(r.bits, h, k == 0);
		rc = plist_push(out, r);
		if (rc)
			poly_free(&r);
	}
	poly_free(&q);
	return rc;
}

/* Cuts q, on which the masks of layers < l are constant, by the lines of
 * layer l and recurses into the parts (depth first, so only one polygon's
 * pieces per layer are alive).  cz/cG/cf, when not NULL, are forward and
 * grads at a point cf of q whose actual masks of layers < l are q's: their
 * rows for layer l are q's forms, and no kernel call is needed.  q is
 * consumed. */
static int process(rctx *x, poly q, int l, const float *cz, const float *cG, const float *cf)
{
	const rt_model *m = x->m;
	if (l == m->n_layers)
		return plist_push(&x->out, q) ? (poly_free(&q), -1) : 0;
	const int64_t off = m->layers[l].offset, size = m->layers[l].size;
	float xf[2];
	if (!cz) {
		double c[2];
		poly_centroid(q.xy, q.n, c);
		xf[0] = (float)c[0];
		xf[1] = (float)c[1];
		m->forward(x->P, xf, x->ws, x->z[l], x->logits);
		/* the masks of earlier layers are those decided by the cuts */
		memcpy(x->zm, x->z[l], sizeof(float) * (size_t)x->H);
		bits_to_z(q.bits, off, x->zm);
		m->grads(x->P, x->zm, x->G[l], x->ws);
		cz = x->z[l];
		cG = x->G[l];
		cf = xf;
	}
	/* the forms are exact at cf (a float point) */
	const double c[2] = { cf[0], cf[1] };
	line *lines = x->lines;
	for (int64_t j = 0; j < size; j++) {
		const int64_t h = off + j;
		line *L = &lines[j];
		L->a0 = cG[2 * h];
		L->a1 = cG[2 * h + 1];
		L->z0 = cz[h];
		L->tol = x->dist_tol * sqrt(L->a0 * L->a0 + L->a1 * L->a1);
	}
	plist *work = &x->work[l], *tmp = &x->tmp[l];
	work->n = 0;
	if (plist_push(work, q)) {
		poly_free(&q);
		return -1;
	}
	for (int64_t j = 0; j < size; j++) {
		tmp->n = 0;
		for (int64_t k = 0; k < work->n; k++) {
			poly r = work->p[k];
			work->p[k] = (poly){ 0 };
			if (split(x, r, &lines[j], c, off + j, tmp))
				return -1;
		}
		plist t = *work;
		*work = *tmp;
		*tmp = t;
	}
	/* the part holding cf (if its actual masks of layers <= l are the
	 * part's) reuses cz/cG for the next layer */
	const bool last = l + 1 == m->n_layers;
	const int64_t upto = off + size;
	for (int64_t k = 0; k < work->n; k++) {
		poly r = work->p[k];
		work->p[k] = (poly){ 0 };
		bool holds = !last;
		for (int64_t h = 0; h < upto && holds; h++)
			holds = get_bit(r.bits, h) == (cz[h] > 0);
		if (process(x, r, l + 1, holds ? cz : NULL, holds ? cG : NULL, holds ? cf : NULL))
			return -1;
	}
	work->n = 0;
	return 0;
}

void rt_regions_free(rt_regions *r)
{
	if (!r)
		return;
	for (int64_t i = 0; i < r->n; i++)
		free(r->p[i].xy);
	free(r->p);
	r->p = NULL;
	r->n = 0;
}

int rt_regions_2d(const rt_model *m, const float *P, const double window[4], rt_regions *out,
                  char *err)
{
	memset(out, 0, sizeof *out);
	if (m->n_in != 2)
		return rt_fail(err, "model '%s' has %d input%s; the region picture needs exactly 2", m->name,
		            m->n_in, m->n_in == 1 ? "" : "s");
	const double x0 = window[0], x1 = window[1], y0 = window[2], y1 = window[3];
	if (!(isfinite(x0) && isfinite(x1) && isfinite(y0) && isfinite(y1) && x1 > x0 && y1 > y0))
		return rt_fail(err, "bad window [%g, %g] x [%g, %g]: needs x0 < x1 and y0 < y1, all finite",
		            x0, x1, y0, y1);
	const int64_t H = m->n_hidden;
	const int L = m->n_layers;
	const double diag = hypot(x1 - x0, y1 - y0);
	const double scale = fmax(fmax(fabs(x0), fabs(x1)), fmax(fabs(y0), fabs(y1)));
	rctx x = {
		.m = m, .P = P, .H = H,
		.nw = (int)((H + 63) / 64 > 0 ? (H + 63) / 64 : 1),
		.min_area = 1e-12 * (x1 - x0) * (y1 - y0),
		.dist_tol = 1e-12 * fmax(diag, scale),
		.dup = 1e-13 * fmax(diag, scale),
		.cap_v = 16,
	};
	int rc = -1, max_size = 1;
	for (int l = 0; l < L; l++)
		if (m->layers[l].size > max_size)
			max_size = m->layers[l].size;
	x.ws = rt_alloc_floats(m->ws_floats);
	x.logits = rt_alloc_floats(m->n_out);
	x.zm = rt_alloc_floats(H);
	x.z = calloc((size_t)L + 1, sizeof *x.z);
	x.G = calloc((size_t)L + 1, sizeof *x.G);
	x.work = calloc((size_t)L + 1, sizeof *x.work);
	x.tmp = calloc((size_t)L + 1, sizeof *x.tmp);
	x.lines = malloc(sizeof *x.lines * (size_t)max_size);
	x.buf = malloc(sizeof(double) * 4 * (size_t)(x.cap_v + 2));
	x.s = malloc(sizeof(double) * (size_t)x.cap_v);
	uint64_t *zero = calloc((size_t)x.nw, sizeof *zero);
	if (!x.ws || !x.logits || !x.zm || !x.z || !x.G || !x.work || !x.tmp || !x.lines || !x.buf ||
	    !x.s || !zero)
		goto oom;
	for (int l = 0; l < L; l++) {
		x.z[l] = rt_alloc_floats(H);
		x.G[l] = rt_alloc_floats(2 * H);
		if (!x.z[l] || !x.G[l])
			goto oom;
	}
	const double win[8] = { x0, y0, x1, y0, x1, y1, x0, y1 };
	poly w = poly_make(win, 4, zero, x.nw);
	if (!w.xy || process(&x, w, 0, NULL, NULL, NULL))
		goto oom;

	out->p = calloc((size_t)(x.out.n > 0 ? x.out.n : 1), sizeof *out->p);
	if (!out->p)
		goto oom;
	out->n = x.out.n;
	for (int64_t i = 0; i < x.out.n; i++) {
		poly *q = &x.out.p[i];
		bits_to_z(q->bits, H, x.zm);
		out->p[i].n = q->n;
		out->p[i].xy = q->xy;   /* the bits after it are freed with it */
		out->p[i].pattern = rt_pattern_hash(x.zm, H);
		q->xy = NULL;
	}
	rc = 0;
	goto done;
oom:
	rt_regions_free(out);
	rt_fail(err, "out of memory while computing the activation regions of '%s'", m->name);
done:
	plist_free(&x.out);
	for (int l = 0; l < L; l++) {
		if (x.z)
			free(x.z[l]);
		if (x.G)
			free(x.G[l]);
		if (x.work)
			plist_free(&x.work[l]);
		if (x.tmp)
			plist_free(&x.tmp[l]);
	}
	free(x.z);
	free(x.G);
	free(x.work);
	free(x.tmp);
	free(x.ws);
	free(x.logits);
	free(x.zm);
	free(x.lines);
	free(x.buf);
	free(x.s);
	free(zero);
	return rc;
}

/* ------------------------------------------------------------------------
 * Boundaries along a segment
 * ---------------------------------------------------------------------- */
static bool same_signs(const float *u, const float *v, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		if ((u[i] > 0) != (v[i] > 0))
			return false;
	return true;
}

int rt_segment_boundaries(const rt_model *m, const float *P, const float *a, const float *b,
                          double **t_out, int64_t *n_out, char *err)
{
	*t_out = NULL;
	*n_out = 0;
	const int64_t D = m->n_in, H = m->n_hidden;
	const int64_t cap_crossings = 1000000;
	int rc = -1;
	float *ws = rt_alloc_floats(m->ws_floats), *d = rt_alloc_floats(D), *x = rt_alloc_floats(D), *z = rt_alloc_floats(H), *z2 = rt_alloc_floats(H),
	      *logits = rt_alloc_floats(m->n_out);
	double *t = NULL;
	int64_t n = 0, cap = 0;
	if (!ws || !d || !x || !z || !z2 || !logits)
		goto oom;
	for (int64_t i = 0; i < D; i++) {
		d[i] = b[i] - a[i];
		if (!isfinite(a[i]) || !isfinite(b[i]) || !isfinite(d[i])) {
			rt_fail(err, "segment endpoints must be finite (coordinate %lld)", (long long)i);
			goto done;
		}
	}
	double cur = 0;
	for (int64_t i = 0; i < D; i++)
		x[i] = a[i];
	m->forward(P, x, ws, z, logits);
	for (;;) {
		float e;
		int32_t bind;
		m->direction(P, x, d, ws, &e, &bind, NULL);
		double eps = e;
		if (!(eps < INFINITY) || cur + eps >= 1)
			break;
		if (eps < 0)
			eps = 0;
		const double cross = cur + eps;
		/* step just past the boundary; if rounding of the point left it in
		 * the same region, step further */
		double tiny = eps > 0 ? 1e-6 * fmax(eps, 1e-6) : 1e-9;
		bool changed = false;
		double nt = cross;
		for (int tries = 0; tries < 64; tries++) {
			nt = cross + tiny;
			if (nt >= 1)
				break;
			for (int64_t i = 0; i < D; i++)
				x[i] = (float)((double)a[i] + nt * ((double)b[i] - (double)a[i]));
			m->forward(P, x, ws, z2, logits);
			if (!same_signs(z, z2, H)) {
				changed = true;
				break;
			}
			tiny *= 2;
		}
		if (!changed)
			break;   /* no change of pattern before b: the margin was rounding */
		if (n == cap_crossings) {
			rt_fail(err, "more than %lld region boundaries along the segment", (long long)cap_crossings);
			goto done;
		}
		if (n == cap) {
			int64_t nc = cap ? 2 * cap : 64;
			double *q = realloc(t, sizeof *q * (size_t)nc);
			if (!q)
				goto oom;
			t = q;
			cap = nc;
		}
		t[n++] = cross;
		cur = nt;
		float *sw = z;
		z = z2;
		z2 = sw;
	}
	*t_out = t;
	*n_out = n;
	t = NULL;
	rc = 0;
	goto done;
oom:
	rt_fail(err, "out of memory while walking the segment");
done:
	free(t);
	free(ws);
	free(d);
	free(x);
	free(z);
	free(z2);
	free(logits);
	return rc;
}
