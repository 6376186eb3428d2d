/* sample.h: seeded random numbers and samplers of l_p balls for the
 * numeric tests (test_numerics.c, test_conv.c), independent of the
 * runtime's generator so that a bug there cannot hide one in the kernels.
 *
 *   trng         splitmix64; uniform [0,1) and (0,1), normal, exponential,
 *                random sign, integer in [0, n)
 *   sample_ball  a point of the unit l_p ball (p in rt.h order): uniform in
 *                the volume, or on the sphere
 *   lp_norm      ||u||_p
 *   falloc       a zeroed, 64-byte aligned float buffer (kernels' buffers)
 *   relerr       |a - b| / |b|
 * Include after <cmocka.h>; every function is static inline.
 */
#ifndef LLN_TEST_SAMPLE_H
#define LLN_TEST_SAMPLE_H

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct trng { uint64_t s; } trng;
static inline uint64_t trng_next(trng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}
static inline double trng_u(trng *r) { return (double)(trng_next(r) >> 11) * 0x1.0p-53; }       /* [0,1) */
static inline double trng_u_open(trng *r) { return ((double)(trng_next(r) >> 11) + 0.5) * 0x1.0p-53; } /* (0,1) */
static inline double trng_normal(trng *r)
{
	return sqrt(-2.0 * log(trng_u_open(r))) * cos(2 * M_PI * trng_u(r));
}
static inline double trng_exp(trng *r) { return -log(trng_u_open(r)); }
static inline double trng_sign(trng *r) { return (trng_next(r) >> 63) ? 1.0 : -1.0; }
static inline int trng_int(trng *r, int n) { return (int)(trng_next(r) % (uint64_t)n); }   /* [0, n) */

/* A point with ||u||_p <= 1 (volume: uniform in the unit ball; else on the
 * unit sphere), p in rt.h order (0: l1, 1: l2, 2: linf). */
static inline void sample_ball(trng *r, int p, int D, bool volume, double *u)
{
	double radius = volume ? pow(trng_u_open(r), 1.0 / D) : 1.0;
	if (p == 1) {
		double s = 0;
		for (int d = 0; d < D; d++) {
			u[d] = trng_normal(r);
			s += u[d] * u[d];
		}
		s = sqrt(s);
		for (int d = 0; d < D; d++)
			u[d] = u[d] / s * radius;
	} else if (p == 2) {
		for (int d = 0; d < D; d++)
			u[d] = 2 * trng_u(r) - 1;
		if (!volume)   /* uniform on the cube's surface: one coordinate on a face */
			u[trng_next(r) % (uint64_t)D] = trng_sign(r);
	} else {
		/* l1: normalised exponentials are uniform on the simplex (Dirichlet(1..1)),
		 * random signs give the sphere, U^(1/D) the volume */
		double s = 0;
		for (int d = 0; d < D; d++) {
			u[d] = trng_exp(r);
			s += u[d];
		}
		for (int d = 0; d < D; d++)
			u[d] = trng_sign(r) * u[d] / s * radius;
	}
}

static inline double lp_norm(const double *u, int D, int p)
{
	double s = 0;
	for (int d = 0; d < D; d++) {
		double a = fabs(u[d]);
		if (p == 2)
			s = fmax(s, a);
		else if (p == 1)
			s += a * a;
		else
			s += a;
	}
	return p == 1 ? sqrt(s) : s;
}

static inline float *falloc(int64_t n)
{
	size_t bytes = ((size_t)(n > 0 ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
	float *p = aligned_alloc(64, bytes);
	assert_non_null(p);
	memset(p, 0, bytes);
	return p;
}

static inline double relerr(double a, double b)
{
	if (a == b)
		return 0;
	return fabs(a - b) / fmax(fabs(b), DBL_MIN);
}

#endif
