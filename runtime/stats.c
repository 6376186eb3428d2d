/* stats.c: summary statistics over a data set's certificates.
 *
 * The certifier reports percentiles of margins, how many distinct activation
 * patterns a data set visits, and which layer a binding neuron belongs to.
 * Percentiles must agree with numpy.percentile (default "linear" method) so
 * that numbers printed by lln can be compared one to one with a Python
 * reference; margins may be +inf (no neuron binds), which numpy handles
 * badly, so the interpolation guards those cases explicitly.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* numpy's _lerp: interpolating from the nearer end keeps the result exact
 * at t == 1 and monotone in t; copying it keeps our last digits equal. */
static double lerp(double a, double b, double t)
{
	double d = b - a;
	return t >= 0.5 ? b - d * (1.0 - t) : a + d * t;
}

double rt_percentile(const float *v, int64_t n, double q)
{
	if (n <= 0 || isnan(q))
		return NAN;
	/* numpy propagates NaN whatever q is; do the same rather than let the
	 * comparator see an unordered value. */
	for (int64_t i = 0; i < n; i++)
		if (isnan(v[i]))
			return NAN;
	float *a = malloc((size_t)n * sizeof *a);
	if (!a)
		return NAN;
	memcpy(a, v, (size_t)n * sizeof *a);
	qsort(a, (size_t)n, sizeof *a, cmp_float);

	if (q < 0)
		q = 0;
	if (q > 100)
		q = 100;
	/* numpy computes (n-1) * (q/100), in that order; (n-1)*q/100 rounds
	 * differently for some q. */
	double h = (double)(n - 1) * (q / 100.0);
	int64_t lo = (int64_t)floor(h);
	if (lo < 0)
		lo = 0;
	if (lo > n - 1)
		lo = n - 1;
	int64_t hi = lo + 1 < n ? lo + 1 : n - 1;
	double t = h - (double)lo;
	double x = a[lo], y = a[hi];
	double r;
	if (t == 0 || x == y)
		r = x;           /* also inf == inf, where inf - inf would be NaN */
	else if (isinf(y) && y > 0)
		r = y;           /* any positive weight on +inf is +inf */
	else if (isinf(x) && x < 0)
		r = x;
	else
		r = lerp(x, y, t);
	free(a);
	return r;
}

uint64_t rt_fnv1a(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* Only the signs matter: two inputs in the same activation region must
 * hash equal however different their pre-activations are.  The count n is
 * mixed in first so that patterns of different lengths whose packed bytes
 * coincide (trailing zero bits) still differ; then the signs, 8 to a byte. */
void rt_pattern_start(rt_pattern *p, int64_t n)
{
	unsigned char le[8];
	for (int i = 0; i < 8; i++)
		le[i] = (unsigned char)((uint64_t)n >> (8 * i));
	*p = (rt_pattern){ rt_fnv1a(RT_FNV_BASIS, le, 8), 0, 0 };
}

void rt_pattern_add(rt_pattern *p, const float *z, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		p->byte |= (unsigned char)((z[i] > 0) << p->bits);
		if (++p->bits == 8) {
			p->h = rt_fnv1a(p->h, &p->byte, 1);
			p->byte = 0;
			p->bits = 0;
		}
	}
}

uint64_t rt_pattern_end(rt_pattern *p)
{
	return p->bits ? rt_fnv1a(p->h, &p->byte, 1) : p->h;
}

uint64_t rt_pattern_hash(const float *z, int64_t n)
{
	rt_pattern p;
	rt_pattern_start(&p, n);
	rt_pattern_add(&p, z, n);
	return rt_pattern_end(&p);
}

int64_t rt_count_distinct(const uint64_t *h, int64_t n)
{
	if (n <= 0)
		return 0;
	uint64_t *a = malloc((size_t)n * sizeof *a);
	if (!a)
		return -1;
	memcpy(a, h, (size_t)n * sizeof *a);
	qsort(a, (size_t)n, sizeof *a, cmp_u64);
	int64_t d = 1;
	for (int64_t i = 1; i < n; i++)
		d += a[i] != a[i - 1];
	free(a);
	return d;
}

const rt_layer *rt_layer_of(const rt_model *m, int32_t h, int32_t *index)
{
	if (index)
		*index = -1;
	if (!m || h < 0 || h >= m->n_hidden || m->n_layers <= 0)
		return NULL;
	/* Layers are stored in neuron order; find the last one starting at or
	 * before h. */
	int32_t lo = 0, hi = m->n_layers - 1;
	while (lo < hi) {
		int32_t mid = lo + (hi - lo + 1) / 2;
		if (m->layers[mid].offset <= h)
			lo = mid;
		else
			hi = mid - 1;
	}
	const rt_layer *L = &m->layers[lo];
	if (h < L->offset || h >= L->offset + L->size)
		return NULL;
	if (index)
		*index = h - L->offset;
	return L;
}
