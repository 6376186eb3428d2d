/* rng.c: deterministic random numbers and parameter initialisation.
 *
 * Training runs must be reproducible from the seed alone, on any machine and
 * with any libc, so nothing here calls rand(): the generator is xoshiro256**
 * (integer only), seeded through splitmix64 so that small or similar seeds
 * still give unrelated states.  Normals go through libm's log and cos, which
 * glibc rounds correctly in practice; another libm may differ in the last
 * bit of a float32 weight, no more.  Each tensor draws from its own
 * stream derived from (seed, tensor index), so adding a layer at the end of
 * a model leaves the initial values of the earlier layers unchanged.
 * Two schemes (docs/training.md): PyTorch's default, so a .lln model starts
 * like the same PyTorch model (the paper's authors used it), and He-normal.
 */
#include <math.h>
#include <string.h>

#include "rt.h"

/* M_PI is not ISO C. */
static const double two_pi = 6.283185307179586476925286766559;

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

void rt_rng_seed(rt_rng *r, uint64_t seed)
{
	uint64_t x = seed;
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
	/* splitmix64 is a bijection on distinct counters, so the state can
	 * never be all zero (xoshiro's one forbidden state); no check needed. */
}

uint64_t rt_rng_next(rt_rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

double rt_rng_uniform(rt_rng *r)
{
	/* 53 bits fill a double's mantissa exactly: every value is k * 2^-53. */
	return (double)(rt_rng_next(r) >> 11) * 0x1.0p-53;
}

double rt_rng_normal(rt_rng *r)
{
	/* Box-Muller on two fresh uniforms per call: keeping no cached second
	 * value means the sequence depends only on the number of calls, which
	 * keeps per-tensor streams simple to reason about.  1 - u lies in
	 * (0, 1], so the log is finite. */
	double u1 = 1.0 - rt_rng_uniform(r);
	double u2 = rt_rng_uniform(r);
	return sqrt(-2.0 * log(u1)) * cos(two_pi * u2);
}

const char *rt_init_name(rt_init_scheme s)
{
	return rt_init_names[s == RT_INIT_HE];
}

int rt_init_parse(const char *name, rt_init_scheme *s)
{
	for (int i = 0; rt_init_names[i]; i++)
		if (!strcmp(name, rt_init_names[i])) {
			*s = (rt_init_scheme)i;
			return 0;
		}
	return -1;
}

void rt_init_params(const rt_tensor *t, int n_tensors, uint64_t seed, rt_init_scheme scheme, float *P)
{
	for (int k = 0; k < n_tensors; k++) {
		const rt_tensor *T = &t[k];
		/* Mix the index through splitmix64 rather than adding it to the
		 * seed: seed s tensor 1 must not equal seed s+1 tensor 0. */
		uint64_t x = seed;
		uint64_t a = splitmix64(&x);
		uint64_t y = a ^ (0xd1b54a32d192ed03ULL * (uint64_t)(k + 1));
		rt_rng r;
		rt_rng_seed(&r, splitmix64(&y));
		double fan = T->fan_in > 0 ? (double)T->fan_in : 1.0;
		float *p = P + T->offset;
		if (T->is_bias || scheme == RT_INIT_PYTORCH) {
			/* PyTorch's kaiming_uniform_(a = sqrt(5)) for weights has the
			 * bound gain * sqrt(3 / fan_in) with gain = sqrt(2 / (1 + 5)),
			 * which is 1/sqrt(fan_in): the biases' bound. */
			double b = 1.0 / sqrt(fan);
			for (int64_t i = 0; i < T->count; i++)
				p[i] = (float)((2.0 * rt_rng_uniform(&r) - 1.0) * b);
		} else {
			double sd = sqrt(2.0 / fan);
			for (int64_t i = 0; i < T->count; i++)
				p[i] = (float)(sd * rt_rng_normal(&r));
		}
	}
}

/* Selection sampling (Knuth's Algorithm S): axis d is taken with
 * probability (K - taken) / (D - d), which makes every K-subset equally
 * likely, in one pass and without scratch. */
void rt_sample_axes(uint64_t seed, uint64_t stream, int32_t D, int32_t K, int32_t *out)
{
	rt_rng r;
	rt_rng_seed(&r, seed ^ (stream * 0x9E3779B97F4A7C15ULL + 0xD1B54A32D192ED03ULL));
	int32_t taken = 0;
	for (int32_t d = 0; d < D && taken < K; d++)
		if ((double)(D - d) * rt_rng_uniform(&r) < (double)(K - taken))
			out[taken++] = d;
}
