/* toy.c: the built-in 2-D data sets and `llnc data`.
 *
 * Two binary tasks in the plane, generated deterministically from
 * (kind, n, noise, seed) with the runtime's portable generator, so a data
 * set named in a .lln file is the same on every machine:
 *
 *   spirals  example i has class c = i mod 2 and position k = i div 2 among
 *            the m_c examples of its class; u = k / (m_c - 1) (0 when
 *            m_c = 1), t = 0.1 + 0.9 u, angle = 3 pi t + c pi,
 *            x = (t cos(angle), t sin(angle)) + noise (N1, N2)
 *   moons    (sklearn's make_moons) theta = pi u,
 *            class 0: (cos theta, sin theta),
 *            class 1: (1 - cos theta, 1 - sin theta - 0.5), + noise (N1, N2)
 *
 * N1, N2 are standard normals drawn in example order from rt_rng seeded
 * with `seed` (two per example, drawn even when noise is 0, so the noise
 * scales one fixed realisation).  Classes alternate, so any prefix is
 * balanced.  docs/regions.md has the same formulas.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* "toy2d:kind=spirals,n=400,noise=0.1,seed=1", the form --data takes: every
 * key optional (defaults spirals, 400, 0.1, 0), in any order, each at most
 * once.  Messages start with the quoted spec. */
int rt_toy2d_spec(const char *spec, const rt_model *m, rt_data *d, char *err)
{
	char kind[16] = "spirals";
	long long n = 400;
	double noise = 0.1;
	unsigned long long seed = 0;
	bool seen[4] = { false, false, false, false };
	static const char *const keys[4] = { "kind", "n", "noise", "seed" };
	char *s = strdup(spec + strlen("toy2d:"));
	if (!s)
		return rt_fail(err, "out of memory");
	int rc = -1;
	char *save = NULL;
	for (char *item = *s ? strtok_r(s, ",", &save) : NULL; item; item = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(item, '=');
		if (!eq) {
			rt_fail(err, "'%s': expected KEY=VALUE after toy2d:, got '%s' (keys: kind, n, noise, seed)",
			          spec, item);
			goto done;
		}
		*eq = 0;
		const char *v = eq + 1;
		int k = 0;
		while (k < 4 && strcmp(item, keys[k]) != 0)
			k++;
		if (k == 4) {
			rt_fail(err, "'%s': unknown toy2d key '%s' (keys: kind, n, noise, seed)", spec, item);
			goto done;
		}
		if (seen[k]) {
			rt_fail(err, "'%s': toy2d key '%s' is given twice", spec, item);
			goto done;
		}
		seen[k] = true;
		char *end;
		errno = 0;
		if (k == 0) {
			if (strcmp(v, "spirals") != 0 && strcmp(v, "moons") != 0) {
				rt_fail(err, "'%s': toy2d kind must be spirals or moons, got '%s'", spec, v);
				goto done;
			}
			snprintf(kind, sizeof kind, "%s", v);
		} else if (k == 1) {
			n = strtoll(v, &end, 10);
			if (!*v || *end || errno == ERANGE || n < 2 || n > (1LL << 31)) {
				rt_fail(err, "'%s': toy2d n must be an integer in [2, %lld], got '%s'", spec,
				          1LL << 31, v);
				goto done;
			}
		} else if (k == 2) {
			noise = strtod(v, &end);
			if (!*v || *end || !isfinite(noise) || noise < 0) {
				rt_fail(err, "'%s': toy2d noise must be a finite number >= 0, got '%s'", spec, v);
				goto done;
			}
		} else {
			seed = strtoull(v, &end, 10);
			if (!*v || *end || errno == ERANGE || v[0] == '-' || v[0] == '+') {
				rt_fail(err, "'%s': toy2d seed must be a non-negative integer, got '%s'", spec, v);
				goto done;
			}
		}
	}
	if (m->n_in != 2) {
		rt_fail(err, "'%s': toy2d examples have 2 values, but the model '%s' has %d inputs", spec,
		          m->name, m->n_in);
		goto done;
	}
	if (rt_toy2d(kind, n, noise, seed, d, err) != 0)
		goto done;
	rc = 0;
done:
	free(s);
	return rc;
}

int rt_toy2d(const char *kind, int64_t n, double noise, uint64_t seed, rt_data *out, char *err)
{
	memset(out, 0, sizeof *out);
	int k;
	if (kind && strcmp(kind, "spirals") == 0)
		k = 0;
	else if (kind && strcmp(kind, "moons") == 0)
		k = 1;
	else
		return rt_fail(err, "toy2d: unknown kind '%s': expected spirals or moons", kind ? kind : "");
	if (n < 2)
		return rt_fail(err, "toy2d: n must be an integer >= 2, got %lld", (long long)n);
	if (n > ((int64_t)1 << 31))
		return rt_fail(err, "toy2d: n is too large (at most %lld), got %lld",
		            (long long)1 << 31, (long long)n);
	if (!(noise >= 0) || !isfinite(noise))
		return rt_fail(err, "toy2d: noise must be a finite number >= 0, got %g", noise);
	float *x = malloc(sizeof(float) * 2 * (size_t)n);
	int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
	if (!x || !y) {
		free(x);
		free(y);
		return rt_fail(err, "toy2d: out of memory for %lld examples", (long long)n);
	}
	rt_rng r;
	rt_rng_seed(&r, seed);
	const int64_t m[2] = { (n + 1) / 2, n / 2 };   /* examples per class */
	for (int64_t i = 0; i < n; i++) {
		int c = (int)(i % 2);
		int64_t j = i / 2;
		double u = m[c] > 1 ? (double)j / (double)(m[c] - 1) : 0.0;
		double px, py;
		if (k == 0) {
			double t = 0.1 + 0.9 * u;
			double a = 3 * M_PI * t + c * M_PI;
			px = t * cos(a);
			py = t * sin(a);
		} else {
			double th = M_PI * u;
			if (c == 0) {
				px = cos(th);
				py = sin(th);
			} else {
				px = 1 - cos(th);
				py = 1 - sin(th) - 0.5;
			}
		}
		double n1 = rt_rng_normal(&r), n2 = rt_rng_normal(&r);
		x[2 * i] = (float)(px + noise * n1);
		x[2 * i + 1] = (float)(py + noise * n2);
		y[i] = c;
	}
	out->n = n;
	out->dim = 2;
	out->x = x;
	out->y = y;
	return 0;
}

/* ------------------------------------------------------------------------
 * llnc data
 * ---------------------------------------------------------------------- */
static void data_usage(FILE *f, const char *prog)
{
	fprintf(f,
		"usage: %s toy2d [--kind spirals|moons] [--n N] [--noise X] [--seed S] -o FILE.csv\n"
		"\n"
		"Writes a built-in 2-D binary data set as labeled CSV (label,x1,x2), the\n"
		"same examples as `data = toy2d(...)` in a train block.\n"
		"\n"
		"  --kind K     spirals (two interleaved spirals) or moons (two moons) [spirals]\n"
		"  --n N        examples, an integer >= 2; classes alternate 0, 1, 0, ... [400]\n"
		"  --noise X    standard deviation of the Gaussian noise added, >= 0 [0.1]\n"
		"  --seed S     seed of the noise, a non-negative integer [0]\n"
		"  -o FILE.csv  output file (written atomically; required)\n"
		"  --help       show this help\n",
		prog);
}

static int usage_err(const char *prog, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n(run '%s --help' for usage)\n", prog);
	va_end(ap);
	return 2;
}

int rt_data_main(int argc, char **argv)
{
	const char *prog = argc > 0 && argv[0] ? argv[0] : "llnc data";
	enum { F_HELP, F_KIND, F_N, F_NOISE, F_SEED, F_OUT };
	static const rt_flag flags[] = {
		{ "help", false, F_HELP }, { "-h", false, F_HELP }, { "kind", true, F_KIND }, { "n", true, F_N },
		{ "noise", true, F_NOISE }, { "seed", true, F_SEED }, { "-o", true, F_OUT },
	};
	const char *set = NULL, *kind = "spirals", *outp = NULL;
	long long n = 400;
	double noise = 0.1;
	unsigned long long seed = 0;
	rt_flags f;
	rt_flags_init(&f, flags, (int)(sizeof flags / sizeof *flags), argc, argv);
	f.prog = prog;
	int rc = -1;   /* exit now with this status */
	for (int id; rc < 0 && (id = rt_flags_next(&f)) != RT_FLAG_END;) {
		const char *v = f.value;
		char *end;
		errno = 0;
		switch (id) {
		case RT_FLAG_ERROR: rc = 2; break;
		case F_HELP: data_usage(stdout, prog); rc = 0; break;
		case RT_FLAG_ARG:
			if (set)
				rc = usage_err(prog, "unexpected argument '%s'", v);
			else if (strcmp(v, "toy2d") != 0)
				rc = usage_err(prog, "unknown data set '%s': expected toy2d", v);
			set = v;
			break;
		case F_KIND:
			if (strcmp(v, "spirals") && strcmp(v, "moons"))
				rc = usage_err(prog, "--kind must be spirals or moons, got '%s'", v);
			kind = v;
			break;
		case F_N:
			n = strtoll(v, &end, 10);
			if (!*v || *end || errno == ERANGE || n < 2 || n > (1LL << 31))
				rc = usage_err(prog, "--n must be an integer in [2, %lld], got '%s'", 1LL << 31, v);
			break;
		case F_NOISE:
			noise = strtod(v, &end);
			if (!*v || *end || !isfinite(noise) || noise < 0)
				rc = usage_err(prog, "--noise must be a finite number >= 0, got '%s'", v);
			break;
		case F_SEED:
			seed = strtoull(v, &end, 10);
			if (!*v || *end || errno == ERANGE || v[0] == '-' || v[0] == '+')
				rc = usage_err(prog, "--seed must be a non-negative integer, got '%s'", v);
			break;
		case F_OUT:
			if (!*v)
				rc = usage_err(prog, "-o needs a file name");
			outp = v;
			break;
		}
	}
	rt_flags_done(&f);
	if (rc >= 0)
		return rc;
	if (!set)
		return usage_err(prog, "missing the data set to generate (toy2d)");
	if (!outp)
		return usage_err(prog, "missing -o FILE.csv");

	char err[RT_ERRLEN];
	const rt_file out = { "-o", outp, RT_FILE_OUT, 0 };
	int ok = rt_files_check(&out, 1, err);
	if (ok)
		return rt_cmd_fail(prog, ok, "%s", err);
	rt_data d;
	if (rt_toy2d(kind, n, noise, seed, &d, err) != 0) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return 1;
	}
	size_t cap = 128 + (size_t)d.n * 48;
	char *buf = malloc(cap);
	if (!buf) {
		rt_data_free(&d);
		fprintf(stderr, "%s: out of memory\n", prog);
		return 1;
	}
	size_t len = (size_t)snprintf(buf, cap,
		"# toy2d: kind=%s,n=%lld,noise=%.17g,seed=%llu\nlabel,x1,x2\n", kind, n, noise, seed);
	for (int64_t i = 0; i < d.n; i++)
		len += (size_t)snprintf(buf + len, cap - len, "%d,%.9g,%.9g\n", d.y[i],
		                        (double)d.x[2 * i], (double)d.x[2 * i + 1]);
	rt_data_free(&d);
	rc = rt_write_atomic(outp, buf, len, err);
	free(buf);
	if (rc != 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	return 0;
}
