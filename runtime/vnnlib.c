/* vnnlib.c: certificates as VNN-LIB properties, for complete verifiers.
 *
 * A certifier proves that an input's prediction stays the same in the l_inf
 * ball of radius eps_pred_inf around it.  Complete verifiers (the tools of
 * VNN-COMP) take such claims as VNN-LIB properties next to an ONNX network,
 * so `--vnnlib DIR` writes one per input: the box x_i - r <= X_i <= x_i + r
 * and the negation of the claim, which the verifier must prove
 * unsatisfiable: another class scores at least as high as the predicted one
 * (for one logit: the logit crosses 0).  Inputs are raw, as the certifier
 * reads them, so the property applies as it is to the ONNX graph of `llnc
 * export`, which includes normalize.  Bounds are computed in double from the
 * float32 input and radius and written with 17 significant digits in plain
 * decimal notation (some VNN-LIB parsers take no exponents), so each reads
 * back as the double computed here.  Each file is written atomically.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt.h"

/* v in decimal without an exponent, round-tripping the double. */
static void put_num(FILE *f, double v)
{
	char buf[400];
	snprintf(buf, sizeof buf, "%.17g", v);
	if (strchr(buf, 'e')) {
		int decimals = 17 - (int)floor(log10(fabs(v)));
		snprintf(buf, sizeof buf, "%.*f", decimals > 0 ? decimals : 0, v);
	}
	fputs(buf, f);
}

static int write_property(const char *path, const rt_model *m, const float *x, const float *xlo, const rt_cert *c,
                          int64_t index, char *err)
{
	double r = c->eps_pred[RT_LINF];
	if (!isfinite(r))
		return rt_fail(err, "%s: input %lld: the certified l_inf radius is infinite (no neuron or class "
		               "bounds it); VNN-LIB needs a bounded box", path, (long long)index);
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return rt_fail(err, "%s: out of memory", path);
	fprintf(f, "; lln certificate of input %lld for model '%s': class %d is predicted\n"
	        "; everywhere in the l_inf ball of radius eps_pred_inf = %.9g around it.\n"
	        "; X: the %d raw inputs (the certifier's units; the ONNX graph of llnc\n"
	        "; export includes normalize); Y: the %d logits.  The assertions state a\n"
	        "; counterexample, which a verifier proves unsatisfiable to confirm this.\n\n",
	        (long long)index, m->name, c->label, r, m->n_in, m->n_out);
	for (int i = 0; i < m->n_in; i++)
		fprintf(f, "(declare-const X_%d Real)\n", i);
	for (int j = 0; j < m->n_out; j++)
		fprintf(f, "(declare-const Y_%d Real)\n", j);
	fputc('\n', f);
	/* around the input as given (x + xlo); each bound rounded inward, so the
	 * box stays inside the certified ball */
	for (int i = 0; i < m->n_in; i++) {
		double v = (double)x[i] + (xlo ? (double)xlo[i] : 0);
		fprintf(f, "(assert (>= X_%d ", i);
		put_num(f, nextafter(nextafter(v - r, INFINITY), INFINITY));
		fprintf(f, "))\n(assert (<= X_%d ", i);
		put_num(f, nextafter(nextafter(v + r, -INFINITY), -INFINITY));
		fputs("))\n", f);
	}
	fputc('\n', f);
	if (m->n_out == 1) {
		fprintf(f, "(assert (%s Y_0 0))\n", c->label ? "<=" : ">=");
	} else {
		fputs("(assert (or", f);
		for (int k = 0; k < m->n_out; k++)
			if (k != c->label)
				fprintf(f, "\n    (and (>= Y_%d Y_%d))", k, c->label);
		fputs("\n))\n", f);
	}
	int rc = fclose(f) != 0 ? rt_fail(err, "%s: out of memory", path) : rt_write_atomic(path, text, len, err);
	free(text);
	return rc;
}

int rt_vnnlib_dir(const char *dir, char *err)
{
	struct stat st;
	if (mkdir(dir, 0777) != 0 && errno != EEXIST)
		return rt_fail(err, "cannot write %s: %s", dir, strerror(errno));
	if (stat(dir, &st) != 0)
		return rt_fail(err, "cannot write %s: %s", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return rt_fail(err, "cannot write %s: %s", dir, strerror(ENOTDIR));
	if (access(dir, W_OK | X_OK) != 0)
		return rt_fail(err, "cannot write %s: %s", dir, strerror(errno));
	return 0;
}

int rt_vnnlib_batch(const char *dir, const rt_model *m, const rt_batch *b, int64_t first, char *err)
{
	size_t cap = strlen(dir) + 48;
	char *path = rt_malloc(cap);
	if (!path)
		return rt_fail(err, "%s: out of memory", dir);
	int rc = 0;
	for (int64_t i = 0; i < b->n && !rc; i++) {
		snprintf(path, cap, "%s/prop_%lld.vnnlib", dir, (long long)(first + i));
		rc = write_property(path, m, b->x + i * m->n_in, b->xlo ? b->xlo + i * m->n_in : NULL, &b->cert[i],
		                    first + i, err);
	}
	free(path);
	return rc;
}
