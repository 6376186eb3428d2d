/* cert_summary.c: what the certifier's --summary says about a data set.
 *
 * Over all inputs: how many, how many distinct activation patterns they
 * visit, the accuracy when the true labels are known, for each radius of
 * --eps the fraction whose prediction is certified at that radius (robust)
 * and the fraction certified and correct (certified accuracy, the paper's
 * "certified accuracy at radius r" with the activation-region certificate),
 * and the P25 / P50 / P75 / P100 of every radius.  The summary is gathered
 * chunk by chunk as the certifier streams, keeping 32 bytes an input for
 * exact percentiles, and printed in the format of the per-input records:
 * one JSON object, CSV rows "statistic,value", or a table for reading.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

static const char *norm_name[RT_NNORMS] = { "l1", "l2", "linf" };

int rt_radii_parse(const char *s, rt_radii *r)
{
	int norm = r->norm;
	memset(r, 0, sizeof *r);
	r->norm = norm;
	char buf[512];
	if (!*s || strlen(s) >= sizeof buf)
		return -1;
	snprintf(buf, sizeof buf, "%s", s);
	for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *end;
		double v = strtod(tok, &end);
		if (end == tok || *end || !isfinite(v) || v < 0 || r->n == RT_MAX_RADII)
			return -1;
		r->r[r->n] = v;
		snprintf(r->key[r->n], sizeof r->key[r->n], "%.9g", v);
		r->n++;
	}
	return r->n ? 0 : -1;
}

bool rt_robust_at(const rt_cert *c, const rt_radii *r, int k)
{
	/* the float radius is the certificate; compared exactly, in double */
	return (double)c->eps_pred[r->norm] >= r->r[k];
}

int rt_summary_add(rt_cert_summary *s, const rt_batch *b, const int32_t *y, const rt_radii *r)
{
	if (s->n + b->n > s->cap) {
		int64_t cap = s->cap ? s->cap : 4096;
		while (cap < s->n + b->n)
			cap *= 2;
		for (int k = 0; k < 2 * RT_NNORMS + 1; k++) {
			float *v = rt_realloc(s->v[k], sizeof(float) * (size_t)cap);
			if (!v)
				return -1;
			s->v[k] = v;
		}
		uint64_t *pt = rt_realloc(s->pattern, sizeof(uint64_t) * (size_t)cap);
		if (!pt)
			return -1;
		s->pattern = pt;
		s->cap = cap;
	}
	s->labeled = y != NULL;
	for (int64_t i = 0; i < b->n; i++) {
		const rt_cert *c = &b->cert[i];
		for (int p = 0; p < RT_NNORMS; p++) {
			s->v[2 * p][s->n + i] = c->eps[p];
			s->v[2 * p + 1][s->n + i] = c->eps_pred[p];
		}
		s->v[2 * RT_NNORMS][s->n + i] = b->dirs ? b->t[i] : 0;
		s->pattern[s->n + i] = b->pattern[i];
		bool correct = y && y[i] == c->label;
		s->correct += correct;
		s->undecided += c->undecided != 0;
		for (int k = 0; k < r->n; k++) {
			bool robust = rt_robust_at(c, r, k);
			s->robust[k] += robust;
			s->certified[k] += robust && correct;
		}
	}
	s->n += b->n;
	return 0;
}

/* The packed form: the counts as int64, then the radii arrays and the
 * patterns of the n inputs, in the machine's byte order (the parts of one
 * job run on machines of one kind). */
enum { PACK_HEAD = 4 + 2 * RT_MAX_RADII, NV = 2 * RT_NNORMS + 1 };

char *rt_summary_pack(const rt_cert_summary *s, int64_t *len)
{
	int64_t head[PACK_HEAD] = { s->n, s->labeled, s->correct, s->undecided };
	memcpy(head + 4, s->robust, sizeof s->robust);
	memcpy(head + 4 + RT_MAX_RADII, s->certified, sizeof s->certified);
	size_t vbytes = sizeof(float) * (size_t)s->n, total = sizeof head + NV * vbytes + sizeof(uint64_t) * (size_t)s->n;
	char *buf = malloc(total), *at = buf;
	if (!buf)
		return NULL;
	memcpy(at, head, sizeof head);
	at += sizeof head;
	for (int k = 0; k < NV; k++, at += vbytes)
		if (vbytes)
			memcpy(at, s->v[k], vbytes);
	if (s->n)
		memcpy(at, s->pattern, sizeof(uint64_t) * (size_t)s->n);
	*len = (int64_t)total;
	return buf;
}

int rt_summary_unpack(rt_cert_summary *s, const char *buf, int64_t len)
{
	for (const char *at = buf, *end = buf + len; at < end;) {
		int64_t head[PACK_HEAD];
		if ((size_t)(end - at) < sizeof head)
			return -1;
		memcpy(head, at, sizeof head);
		at += sizeof head;
		const int64_t n = head[0];
		size_t vbytes = sizeof(float) * (size_t)n;
		if (n < 0 || (size_t)(end - at) < NV * vbytes + sizeof(uint64_t) * (size_t)n)
			return -1;
		if (s->n + n > s->cap) {   /* grown to exactly what the parts hold */
			for (int k = 0; k < NV; k++) {
				float *v = rt_realloc(s->v[k], sizeof(float) * (size_t)(s->n + n));
				if (!v)
					return -1;
				s->v[k] = v;
			}
			uint64_t *pt = rt_realloc(s->pattern, sizeof(uint64_t) * (size_t)(s->n + n));
			if (!pt)
				return -1;
			s->pattern = pt;
			s->cap = s->n + n;
		}
		for (int k = 0; k < NV; k++, at += vbytes)
			if (vbytes)
				memcpy(s->v[k] + s->n, at, vbytes);
		if (n)
			memcpy(s->pattern + s->n, at, sizeof(uint64_t) * (size_t)n);
		at += sizeof(uint64_t) * (size_t)n;
		s->n += n;
		s->labeled |= head[1] != 0;
		s->correct += head[2];
		s->undecided += head[3];
		for (int k = 0; k < RT_MAX_RADII; k++) {
			s->robust[k] += head[4 + k];
			s->certified[k] += head[4 + RT_MAX_RADII + k];
		}
	}
	return 0;
}

void rt_summary_free(rt_cert_summary *s)
{
	for (int k = 0; k < 2 * RT_NNORMS + 1; k++)
		free(s->v[k]);
	free(s->pattern);
	memset(s, 0, sizeof *s);
}

/* The radii whose percentiles are reported: index into s->v and name. */
static int radius_rows(int32_t norms, bool dirs, int *which, char (*name)[24])
{
	int n = 0;
	for (int p = 0; p < RT_NNORMS; p++) {
		if (!(norms & RT_NORM_BIT(p)))
			continue;
		for (int pred = 0; pred < 2; pred++) {
			which[n] = 2 * p + pred;
			snprintf(name[n++], 24, "%s_%s", pred ? "eps_pred" : "eps", norm_name[p]);
		}
	}
	if (dirs) {
		which[n] = 2 * RT_NNORMS;
		snprintf(name[n++], 24, "eps_dir");
	}
	return n;
}

static double frac(int64_t k, int64_t n)
{
	return n ? (double)k / (double)n : NAN;
}

/* A percentile as JSON and CSV print it: 9 digits rounded toward zero, as
 * the per-input radii, and null or inf for an unbounded radius. */
static void put_radius(FILE *out, double v, bool json)
{
	char buf[64];
	rt_format_down(buf, sizeof buf, v, 9);
	fputs(isinf(v) ? (json ? "null" : "inf") : buf, out);
}

/* ,"key":{"R1":fraction,...}: a count per radius of --eps, over n inputs */
static void json_fractions(FILE *out, const char *key, const rt_radii *r, const int64_t *count, int64_t n)
{
	fprintf(out, ",\"%s\":{", key);
	for (int k = 0; k < r->n; k++)
		fprintf(out, "%s\"%s\":%.9g", k ? "," : "", r->key[k], frac(count[k], n));
	fputc('}', out);
}

static void summary_json(FILE *out, const rt_cert_summary *s, const rt_radii *r, int nrows, const int *which,
                         char (*name)[24], int64_t patterns)
{
	fprintf(out, "{\"inputs\":%lld,\"patterns\":%lld,\"undecided\":%lld", (long long)s->n,
	        (long long)patterns, (long long)s->undecided);
	if (s->labeled)
		fprintf(out, ",\"correct\":%lld,\"accuracy\":%.9g", (long long)s->correct, frac(s->correct, s->n));
	if (r->n) {
		fprintf(out, ",\"norm\":\"%s\"", norm_name[r->norm]);
		json_fractions(out, "robust", r, s->robust, s->n);
		if (s->labeled)
			json_fractions(out, "certified_accuracy", r, s->certified, s->n);
	}
	fputs(",\"percentiles\":{", out);
	for (int i = 0; i < nrows; i++) {
		fprintf(out, "%s\"%s\":{", i ? "," : "", name[i]);
		for (int q = 25; q <= 100; q += 25) {
			fprintf(out, "%s\"P%d\":", q > 25 ? "," : "", q);
			put_radius(out, rt_percentile(s->v[which[i]], s->n, q), true);
		}
		fputc('}', out);
	}
	fputs("}}\n", out);
}

static void summary_csv(FILE *out, const rt_cert_summary *s, const rt_radii *r, int nrows, const int *which,
                        char (*name)[24], int64_t patterns)
{
	fprintf(out, "statistic,value\ninputs,%lld\npatterns,%lld\nundecided,%lld\n", (long long)s->n,
	        (long long)patterns, (long long)s->undecided);
	if (s->labeled)
		fprintf(out, "correct,%lld\naccuracy,%.9g\n", (long long)s->correct, frac(s->correct, s->n));
	for (int k = 0; k < r->n; k++)
		fprintf(out, "robust_%s@%s,%.9g\n", norm_name[r->norm], r->key[k], frac(s->robust[k], s->n));
	for (int k = 0; s->labeled && k < r->n; k++)
		fprintf(out, "certified_accuracy_%s@%s,%.9g\n", norm_name[r->norm], r->key[k],
		        frac(s->certified[k], s->n));
	for (int i = 0; i < nrows; i++)
		for (int q = 25; q <= 100; q += 25) {
			fprintf(out, "%s_P%d,", name[i], q);
			put_radius(out, rt_percentile(s->v[which[i]], s->n, q), false);
			fputc('\n', out);
		}
}

static void summary_table(FILE *out, const rt_cert_summary *s, const rt_radii *r, int nrows, const int *which,
                          char (*name)[24], int64_t patterns)
{
	fprintf(out, "%lld inputs, %lld distinct activation patterns\n", (long long)s->n, (long long)patterns);
	if (s->undecided)
		fprintf(out, "%lld undecided (a neuron within rounding error of 0: every radius 0)\n",
		        (long long)s->undecided);
	if (s->labeled)
		fprintf(out, "accuracy %.2f%% (%lld of %lld)\n", 100 * frac(s->correct, s->n), (long long)s->correct,
		        (long long)s->n);
	if (r->n) {
		fprintf(out, "%-12s %12s", "radius", "robust");
		if (s->labeled)
			fprintf(out, " %12s", "certified");
		fputc('\n', out);
		for (int k = 0; k < r->n; k++) {
			char head[48];
			snprintf(head, sizeof head, "%s %s", norm_name[r->norm], r->key[k]);
			fprintf(out, "%-12s %11.2f%%", head, 100 * frac(s->robust[k], s->n));
			if (s->labeled)
				fprintf(out, " %11.2f%%", 100 * frac(s->certified[k], s->n));
			fputc('\n', out);
		}
	}
	fprintf(out, "%-14s %12s %12s %12s %12s\n", "percentile", "P25", "P50", "P75", "P100");
	for (int i = 0; i < nrows; i++) {
		fprintf(out, "%-14s", name[i]);
		for (int q = 25; q <= 100; q += 25)
			fprintf(out, " %12.6g", rt_percentile(s->v[which[i]], s->n, q));
		fputc('\n', out);
	}
}

int rt_summary_print(FILE *out, const rt_cert_summary *s, const rt_radii *r, int32_t norms, bool dirs,
                     int format)
{
	int which[2 * RT_NNORMS + 1];
	char name[2 * RT_NNORMS + 1][24];
	int nrows = radius_rows(norms, dirs, which, name);
	int64_t patterns = rt_count_distinct(s->pattern, s->n);
	if (patterns < 0)
		return -1;
	if (format == RT_FORMAT_JSONL)
		summary_json(out, s, r, nrows, which, name, patterns);
	else if (format == RT_FORMAT_CSV)
		summary_csv(out, s, r, nrows, which, name, patterns);
	else
		summary_table(out, s, r, nrows, which, name, patterns);
	return 0;
}
