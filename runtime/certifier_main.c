/* certifier_main.c: the command-line driver of standalone certifiers.
 *
 * `llnc build --certifier` links this file with the generated kernels, the
 * lln_model descriptor and the embedded lln_weights into one executable.
 * It reads inputs, certifies them across threads and prints, per input,
 * the prediction, the l1 / l2 / linf margins of its activation region with
 * their binding neurons, the certified-prediction radius and a hash of the
 * activation pattern, or a percentile summary.  All input is read and
 * checked before anything is written, and output files are written whole
 * or not at all.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt.h"

extern const rt_model lln_model;
extern const float lln_weights[];

static const char *norm_name[RT_NNORMS] = { "l1", "l2", "linf" };
static const char *eps_title[RT_NNORMS] = { "eps_1", "eps_2", "eps_inf" };
enum { FORMAT_JSONL, FORMAT_CSV, FORMAT_TABLE };

static void usage(FILE *out, const char *prog)
{
	fprintf(out,
		"usage: %s [options] INPUT\n"
		"\n"
		"Certifies each input of INPUT for the model '%s' (%d inputs, %d outputs,\n"
		"%d hidden neurons): how far it can move, in raw input units, while the\n"
		"network stays linear (eps), and while its prediction also stays (eps_pred).\n"
		"\n"
		"INPUT: a .csv file (one example of %d values per line), a .npy array\n"
		"(float32/float64), an IDX file (MNIST format), or - for CSV on stdin.\n"
		"\n"
		"options:\n"
		"  --norms LIST        norms to certify, from 1,2,inf (default 1,2,inf)\n"
		"  --format F          per-input output: jsonl (default), csv, or table\n"
		"                      (aligned columns for reading)\n"
		"  --threads N         threads (default: all cores, %d here)\n"
		"  --direction FILE    also report the directional margin along each\n"
		"                      direction of FILE (one row for all inputs, or one per input)\n"
		"  --summary           print P25/P50/P75/P100 of each radius and the number of\n"
		"                      distinct activation patterns instead of per-input lines\n"
		"  -o FILE             write the per-input output to FILE (default: stdout)\n"
		"  --help              show this help\n",
		prog, lln_model.name, lln_model.n_in, lln_model.n_out, lln_model.n_hidden,
		lln_model.n_in, rt_ncpus());
}

static void print_number(FILE *out, float v, bool json)
{
	if (isinf(v))
		fputs(json ? "null" : "inf", out);
	else
		fprintf(out, "%.9g", v);
}

static void print_binding(FILE *out, int32_t h, bool json)
{
	int32_t idx = 0;
	const rt_layer *l = h >= 0 ? rt_layer_of(&lln_model, h, &idx) : NULL;
	if (json) {
		if (l)
			fprintf(out, "{\"layer\":\"%s\",\"index\":%d}", l->name, idx);
		else
			fputs("null", out);
	} else if (l) {
		fprintf(out, "%s,%d", l->name, idx);
	} else {
		fputs(",", out);
	}
}

static void print_table(FILE *out, const rt_batch *b)
{
	fprintf(out, "%6s %5s", "input", "label");
	for (int p = 0; p < RT_NNORMS; p++)
		if (b->norms & RT_NORM_BIT(p))
			fprintf(out, " %11s %-14s %11s", eps_title[p],
			        "binding", "eps_pred");
	if (b->dirs)
		fprintf(out, " %11s", "eps_dir");
	fprintf(out, "  %-16s\n", "pattern");
	for (int64_t i = 0; i < b->n; i++) {
		const rt_cert *c = &b->cert[i];
		fprintf(out, "%6lld %5d", (long long)i, c->label);
		for (int p = 0; p < RT_NNORMS; p++) {
			if (!(b->norms & RT_NORM_BIT(p)))
				continue;
			char bind[64] = "-";
			int32_t idx;
			const rt_layer *l = c->bind[p] >= 0 ? rt_layer_of(&lln_model, c->bind[p], &idx) : NULL;
			if (l)
				snprintf(bind, sizeof bind, "%s[%d]", l->name, idx);
			fprintf(out, " %11.4g %-14s %11.4g", c->eps[p], bind, c->eps_pred[p]);
		}
		if (b->dirs)
			fprintf(out, " %11.4g", b->t[i]);
		fprintf(out, "  %016llx\n", (unsigned long long)b->pattern[i]);
	}
}

static void print_records(FILE *out, const rt_batch *b, int format)
{
	if (format == FORMAT_TABLE) {
		print_table(out, b);
		return;
	}
	bool json = format == FORMAT_JSONL;
	if (!json) {
		fputs("index,label", out);
		for (int p = 0; p < RT_NNORMS; p++)
			if (b->norms & RT_NORM_BIT(p))
				fprintf(out, ",eps_%s,bind_%s_layer,bind_%s_index,eps_pred_%s", norm_name[p],
				        norm_name[p], norm_name[p], norm_name[p]);
		if (b->dirs)
			fputs(",eps_dir,bind_dir_layer,bind_dir_index", out);
		fputs(",pattern\n", out);
	}
	for (int64_t i = 0; i < b->n; i++) {
		const rt_cert *c = &b->cert[i];
		fprintf(out, json ? "{\"index\":%lld,\"label\":%d" : "%lld,%d", (long long)i, c->label);
		for (int p = 0; p < RT_NNORMS; p++) {
			if (!(b->norms & RT_NORM_BIT(p)))
				continue;
			fprintf(out, json ? ",\"eps_%s\":" : ",", norm_name[p]);
			print_number(out, c->eps[p], json);
			fprintf(out, json ? ",\"bind_%s\":" : ",", norm_name[p]);
			print_binding(out, c->bind[p], json);
			fprintf(out, json ? ",\"eps_pred_%s\":" : ",", norm_name[p]);
			print_number(out, c->eps_pred[p], json);
		}
		if (b->dirs) {
			fputs(json ? ",\"eps_dir\":" : ",", out);
			print_number(out, b->t[i], json);
			fputs(json ? ",\"bind_dir\":" : ",", out);
			print_binding(out, b->tbind[i], json);
		}
		fprintf(out, json ? ",\"pattern\":\"%016llx\"}\n" : ",%016llx\n", (unsigned long long)b->pattern[i]);
	}
}

static void print_summary(FILE *out, const rt_batch *b)
{
	float *v = malloc(sizeof(float) * (size_t)(b->n ? b->n : 1));
	fprintf(out, "%lld inputs, %lld distinct activation patterns\n", (long long)b->n,
	        (long long)rt_count_distinct(b->pattern, b->n));
	fprintf(out, "%-12s %12s %12s %12s %12s\n", "radius", "P25", "P50", "P75", "P100");
	for (int p = 0; p < RT_NNORMS; p++) {
		if (!(b->norms & RT_NORM_BIT(p)))
			continue;
		for (int which = 0; which < 2; which++) {
			for (int64_t i = 0; i < b->n; i++)
				v[i] = which ? b->cert[i].eps_pred[p] : b->cert[i].eps[p];
			char name[32];
			snprintf(name, sizeof name, "%s_%s", which ? "eps_pred" : "eps", norm_name[p]);
			fprintf(out, "%-12s", name);
			for (int q = 25; q <= 100; q += 25)
				fprintf(out, " %12.6g", rt_percentile(v, b->n, q));
			fputc('\n', out);
		}
	}
	if (b->dirs) {
		fprintf(out, "%-12s", "eps_dir");
		for (int q = 25; q <= 100; q += 25)
			fprintf(out, " %12.6g", rt_percentile(b->t, b->n, q));
		fputc('\n', out);
	}
	free(v);
}

int main(int argc, char **argv)
{
	const char *prog = argv[0], *input = NULL, *dir_path = NULL, *out_path = NULL;
	int32_t norms = RT_ALL_NORMS;
	int format = FORMAT_JSONL;
	bool summary = false;
	int threads = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout, prog);
			return 0;
		} else if (strcmp(a, "--summary") == 0) {
			summary = true;
		} else if (strcmp(a, "--norms") == 0 || strcmp(a, "--format") == 0 || strcmp(a, "--threads") == 0 ||
		           strcmp(a, "--direction") == 0 || strcmp(a, "-o") == 0) {
			if (!val) {
				fprintf(stderr, "%s: %s needs a value\n", prog, a);
				return 2;
			}
			i++;
			if (strcmp(a, "--norms") == 0 && rt_parse_norms(val, &norms) != 0) {
				fprintf(stderr, "%s: --norms takes a comma-separated list of 1, 2, inf; got '%s'\n", prog, val);
				return 2;
			} else if (strcmp(a, "--format") == 0) {
				if (strcmp(val, "jsonl") == 0)
					format = FORMAT_JSONL;
				else if (strcmp(val, "csv") == 0)
					format = FORMAT_CSV;
				else if (strcmp(val, "table") == 0)
					format = FORMAT_TABLE;
				else {
					fprintf(stderr, "%s: --format takes jsonl, csv or table; got '%s'\n", prog, val);
					return 2;
				}
			} else if (strcmp(a, "--threads") == 0) {
				char *end;
				long n = strtol(val, &end, 10);
				if (*end || n < 1 || n > 1024) {
					fprintf(stderr, "%s: --threads takes a number from 1 to 1024; got '%s'\n", prog, val);
					return 2;
				}
				threads = (int)n;
			} else if (strcmp(a, "--direction") == 0) {
				dir_path = val;
			} else if (strcmp(a, "-o") == 0) {
				out_path = val;
			}
		} else if (a[0] == '-' && a[1] != 0) {
			fprintf(stderr, "%s: unknown option '%s' (see --help)\n", prog, a);
			return 2;
		} else if (input) {
			fprintf(stderr, "%s: more than one INPUT ('%s' and '%s')\n", prog, input, a);
			return 2;
		} else {
			input = a;
		}
	}
	if (!input) {
		usage(stderr, prog);
		return 2;
	}

	char err[RT_ERRLEN];
	rt_data data = { 0 }, dirs = { 0 };
	if (rt_data_read(input, lln_model.n_in, false, &data, err) != 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (dir_path) {
		if (rt_data_read(dir_path, lln_model.n_in, false, &dirs, err) != 0) {
			fprintf(stderr, "%s\n", err);
			rt_data_free(&data);
			return 1;
		}
		if (dirs.n != 1 && dirs.n != data.n) {
			fprintf(stderr, "%s: holds %lld directions; expected 1 or one per input (%lld)\n", dir_path,
			        (long long)dirs.n, (long long)data.n);
			rt_data_free(&data);
			rt_data_free(&dirs);
			return 1;
		}
	}

	int64_t n = data.n;
	rt_batch b = { .x = data.x, .n = n, .dirs = dir_path ? dirs.x : NULL, .n_dirs = dirs.n,
	               .norms = norms, .threads = threads };
	size_t cnt = (size_t)(n ? n : 1);
	b.cert = calloc(cnt, sizeof *b.cert);
	b.pattern = calloc(cnt, sizeof *b.pattern);
	b.t = calloc(cnt, sizeof *b.t);
	b.tbind = calloc(cnt, sizeof *b.tbind);
	int rc = 1;
	if (!b.cert || !b.pattern || !b.t || !b.tbind) {
		fprintf(stderr, "%s: out of memory\n", prog);
		goto done;
	}

	/* in blocks, so that a terminal shows progress on long inputs */
	bool progress = isatty(2) && n > 2000;
	for (int64_t at = 0; at < n; at += 1024) {
		rt_batch part = b;
		part.x = b.x + at * lln_model.n_in;
		part.n = n - at < 1024 ? n - at : 1024;
		if (b.dirs && b.n_dirs > 1)
			part.dirs = b.dirs + at * lln_model.n_in;
		part.cert += at;
		part.pattern += at;
		part.t += at;
		part.tbind += at;
		if (rt_certify_batch(&lln_model, lln_weights, &part) != 0) {
			fprintf(stderr, "%s: out of memory\n", prog);
			goto done;
		}
		if (progress)
			fprintf(stderr, "\rcertified %lld / %lld", (long long)(at + part.n), (long long)n);
	}
	if (progress)
		fputc('\n', stderr);

	if (out_path) {
		char *buf = NULL;
		size_t len = 0;
		FILE *mem = open_memstream(&buf, &len);
		print_records(mem, &b, format);
		fclose(mem);
		int wr = rt_write_atomic(out_path, buf, len, err);
		free(buf);
		if (wr != 0) {
			fprintf(stderr, "%s\n", err);
			goto done;
		}
	} else if (!summary) {
		print_records(stdout, &b, format);
	}
	if (summary)
		print_summary(stdout, &b);
	rc = fflush(stdout) == 0 ? 0 : 1;
done:
	free(b.cert);
	free(b.pattern);
	free(b.t);
	free(b.tbind);
	rt_data_free(&data);
	rt_data_free(&dirs);
	return rc;
}
