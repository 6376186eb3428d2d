/* certifier_main.c: the command-line driver of standalone certifiers.
 *
 * `llnc build --certifier` links this file with the generated kernels, the
 * lln_model descriptor and the embedded lln_weights into one executable.
 * It reads inputs, certifies them across threads and prints, per input,
 * the prediction, the l1 / l2 / linf margins of its activation region with
 * their binding neurons, the certified-prediction radius and a hash of the
 * activation pattern, or a percentile summary.  It streams: inputs are
 * read, certified and written in chunks of CHUNK examples, so memory does
 * not grow with the number of inputs (--summary keeps the radii, 32 bytes
 * an input, for exact percentiles) and a bad record stops the run as soon
 * as it is read.  An output file is written whole or not at all.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
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
/* Examples per chunk: enough to keep every core busy, small enough that a
 * chunk of MNIST-sized inputs is a few megabytes. */
#define CHUNK 4096

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
		"  --threads N         threads, 0: all cores (default, %d here)\n"
		"  --direction FILE    also report the directional margin along each\n"
		"                      direction of FILE (one row for all inputs, or one per input)\n"
		"  --summary           print P25/P50/P75/P100 of each radius and the number of\n"
		"                      distinct activation patterns instead of per-input lines\n"
		"  -o FILE             write the per-input output to FILE (default: stdout)\n"
		"  --vnnlib DIR        also write DIR/prop_N.vnnlib for input N: its certified\n"
		"                      l_inf prediction ball as a VNN-LIB property, for the\n"
		"                      ONNX graph of 'llnc export' (docs/certifier.md)\n"
		"  --help              show this help\n",
		prog, lln_model.name, lln_model.n_in, lln_model.n_out, lln_model.n_hidden,
		lln_model.n_in, rt_ncpus());
}

static void print_number(FILE *out, float v, bool json)
{
	char buf[64];
	rt_format_down(buf, sizeof buf, v, 9);
	fputs(isinf(v) ? (json ? "null" : "inf") : buf, out);
}

static void print_binding(FILE *out, int32_t h, bool json)
{
	int32_t idx = 0;
	const rt_layer *l = h >= 0 ? rt_layer_of(&lln_model, h, &idx) : NULL;
	if (json) {
		if (l && l->h > 0)   /* an image layer: also where in it */
			fprintf(out, "{\"layer\":\"%s\",\"index\":%d,\"channel\":%d,\"row\":%d,\"col\":%d}", l->name, idx,
			        idx / (l->h * l->w), idx / l->w % l->h, idx % l->w);
		else if (l)
			fprintf(out, "{\"layer\":\"%s\",\"index\":%d}", l->name, idx);
		else
			fputs("null", out);
	} else if (l) {
		fprintf(out, "%s,%d", l->name, idx);
	} else {
		fputs(",", out);
	}
}

static void print_header(FILE *out, int32_t norms, bool dirs, int format)
{
	if (format == FORMAT_TABLE) {
		fprintf(out, "%6s %5s", "input", "label");
		for (int p = 0; p < RT_NNORMS; p++)
			if (norms & RT_NORM_BIT(p))
				fprintf(out, " %11s %-14s %11s", eps_title[p], "binding", "eps_pred");
		if (dirs)
			fprintf(out, " %11s", "eps_dir");
		fprintf(out, "  %-16s\n", "pattern");
	} else if (format == FORMAT_CSV) {
		fputs("index,label", out);
		for (int p = 0; p < RT_NNORMS; p++)
			if (norms & RT_NORM_BIT(p))
				fprintf(out, ",eps_%s,bind_%s_layer,bind_%s_index,eps_pred_%s", norm_name[p],
				        norm_name[p], norm_name[p], norm_name[p]);
		if (dirs)
			fputs(",eps_dir,bind_dir_layer,bind_dir_index", out);
		fputs(",pattern\n", out);
	}
}

static void print_table_row(FILE *out, const rt_batch *b, int64_t i, int64_t index)
{
	const rt_cert *c = &b->cert[i];
	fprintf(out, "%6lld %5d", (long long)index, c->label);
	for (int p = 0; p < RT_NNORMS; p++) {
		if (!(b->norms & RT_NORM_BIT(p)))
			continue;
		char bind[64] = "-";
		int32_t idx;
		const rt_layer *l = c->bind[p] >= 0 ? rt_layer_of(&lln_model, c->bind[p], &idx) : NULL;
		if (l && l->h > 0)
			snprintf(bind, sizeof bind, "%s[%d,%d,%d]", l->name, idx / (l->h * l->w), idx / l->w % l->h, idx % l->w);
		else if (l)
			snprintf(bind, sizeof bind, "%s[%d]", l->name, idx);
		char e[32], ep[32];
		rt_format_down(e, sizeof e, c->eps[p], 4);
		rt_format_down(ep, sizeof ep, c->eps_pred[p], 4);
		fprintf(out, " %11s %-14s %11s", e, bind, ep);
	}
	if (b->dirs) {
		char t[32];
		rt_format_down(t, sizeof t, b->t[i], 4);
		fprintf(out, " %11s", t);
	}
	fprintf(out, "  %016llx\n", (unsigned long long)b->pattern[i]);
}

/* The records of one chunk; `first` is the index of its first input. */
static void print_records(FILE *out, const rt_batch *b, int64_t first, int format)
{
	bool json = format == FORMAT_JSONL;
	for (int64_t i = 0; i < b->n; i++) {
		if (format == FORMAT_TABLE) {
			print_table_row(out, b, i, first + i);
			continue;
		}
		const rt_cert *c = &b->cert[i];
		fprintf(out, json ? "{\"index\":%lld,\"label\":%d" : "%lld,%d", (long long)(first + i), c->label);
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
		if (json && c->undecided)   /* signs within rounding error of 0: every radius is 0 */
			fprintf(out, ",\"undecided\":%d", c->undecided);
		fprintf(out, json ? ",\"pattern\":\"%016llx\"}\n" : ",%016llx\n", (unsigned long long)b->pattern[i]);
	}
}

/* What --summary needs of every input: its radii and pattern. */
typedef struct summary {
	int64_t n, cap;
	float *v[2 * RT_NNORMS + 1];   /* eps_p, eps_pred_p, eps_dir */
	uint64_t *pattern;
} summary;

static int summary_add(summary *s, const rt_batch *b)
{
	if (s->n + b->n > s->cap) {
		int64_t cap = s->cap ? s->cap : CHUNK;
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
	for (int64_t i = 0; i < b->n; i++) {
		for (int p = 0; p < RT_NNORMS; p++) {
			s->v[2 * p][s->n + i] = b->cert[i].eps[p];
			s->v[2 * p + 1][s->n + i] = b->cert[i].eps_pred[p];
		}
		s->v[2 * RT_NNORMS][s->n + i] = b->dirs ? b->t[i] : 0;
		s->pattern[s->n + i] = b->pattern[i];
	}
	s->n += b->n;
	return 0;
}

static void summary_free(summary *s)
{
	for (int k = 0; k < 2 * RT_NNORMS + 1; k++)
		free(s->v[k]);
	free(s->pattern);
}

static void print_pct(FILE *out, const char *name, const float *v, int64_t n)
{
	fprintf(out, "%-12s", name);
	for (int q = 25; q <= 100; q += 25)
		fprintf(out, " %12.6g", rt_percentile(v, n, q));
	fputc('\n', out);
}

static void print_summary(FILE *out, const summary *s, int32_t norms, bool dirs)
{
	fprintf(out, "%lld inputs, %lld distinct activation patterns\n", (long long)s->n,
	        (long long)rt_count_distinct(s->pattern, s->n));
	fprintf(out, "%-12s %12s %12s %12s %12s\n", "radius", "P25", "P50", "P75", "P100");
	for (int p = 0; p < RT_NNORMS; p++) {
		if (!(norms & RT_NORM_BIT(p)))
			continue;
		for (int which = 0; which < 2; which++) {
			char name[32];
			snprintf(name, sizeof name, "%s_%s", which ? "eps_pred" : "eps", norm_name[p]);
			print_pct(out, name, s->v[2 * p + which], s->n);
		}
	}
	if (dirs)
		print_pct(out, "eps_dir", s->v[2 * RT_NNORMS], s->n);
}

/* Directions: one row for every input, or one per input read in step with
 * the inputs (per_input). */
typedef struct directions {
	rt_reader *r;
	const char *path;
	bool per_input;
	float *one;        /* the single row */
	rt_data chunk;     /* the per-input rows of the current chunk */
} directions;

static int dirs_open(directions *d, const char *path, char *err)
{
	d->path = path;
	if (rt_reader_open(path, lln_model.n_in, &d->r, err) || rt_reader_next(d->r, CHUNK, &d->chunk, err))
		return -1;
	if (d->chunk.n == 0)
		return rt_fail(err, "%s: holds no examples", path);
	/* a chunk is short only at the end of the file: one row is all */
	if (d->chunk.n > 1) {
		d->per_input = true;
		return 0;
	}
	d->one = rt_alloc_floats(lln_model.n_in);
	if (!d->one)
		return rt_fail(err, "%s: out of memory", path);
	memcpy(d->one, d->chunk.x, sizeof(float) * (size_t)lln_model.n_in);
	return 0;
}

/* Counts what is left of a reader, to say how many records a file holds. */
static int64_t count_rest(rt_reader *r, char *err)
{
	rt_data c;
	while (rt_reader_next(r, CHUNK, &c, err) == 0 && c.n > 0)
		;
	return rt_reader_count(r);
}

static int directions_mismatch(directions *d, rt_reader *in, char *err)
{
	char scratch[RT_ERRLEN];
	int64_t nd = count_rest(d->r, scratch), ni = count_rest(in, scratch);
	return rt_fail(err, "%s: holds %lld directions; expected 1 or one per input (%lld)", d->path,
	               (long long)nd, (long long)ni);
}

int main(int argc, char **argv)
{
	const char *prog = argv[0], *input = NULL, *dir_path = NULL, *out_path = NULL, *vnnlib = NULL;
	int32_t norms = RT_ALL_NORMS;
	int format = FORMAT_JSONL;
	bool summary_only = false;
	int threads = 0;
	enum { F_HELP, F_SUMMARY, F_NORMS, F_FORMAT, F_THREADS, F_DIRECTION, F_OUT, F_VNNLIB };
	static const rt_flag flags[] = {
		{ "help", false, F_HELP }, { "-h", false, F_HELP }, { "summary", false, F_SUMMARY },
		{ "norms", true, F_NORMS }, { "format", true, F_FORMAT }, { "threads", true, F_THREADS },
		{ "direction", true, F_DIRECTION }, { "-o", true, F_OUT }, { "vnnlib", true, F_VNNLIB },
	};
	rt_flags fl;
	rt_flags_init(&fl, flags, (int)(sizeof flags / sizeof *flags), argc, argv);
	int urc = -1;   /* exit now with this status */
	for (int id; urc < 0 && (id = rt_flags_next(&fl)) != RT_FLAG_END;) {
		const char *val = fl.value;
		char *end;
		double n;
		switch (id) {
		case RT_FLAG_ERROR: urc = 2; break;
		case F_HELP: usage(stdout, prog); urc = 0; break;
		case F_SUMMARY: summary_only = true; break;
		case F_NORMS:
			if (rt_parse_norms(val, &norms) != 0)
				urc = rt_cmd_fail(prog, 2, "--norms takes a comma-separated list of 1, 2, inf; got '%s'", val);
			break;
		case F_FORMAT:
			format = !strcmp(val, "jsonl") ? FORMAT_JSONL : !strcmp(val, "csv") ? FORMAT_CSV
			       : !strcmp(val, "table") ? FORMAT_TABLE : -1;
			if (format < 0)
				urc = rt_cmd_fail(prog, 2, "--format takes jsonl, csv or table; got '%s'", val);
			break;
		case F_THREADS:
			/* the range of --threads everywhere (settings.def) */
			n = strtod(val, &end);
			if (!*val || *end || !rt_setting_in_range(RT_SET_THREADS, n, (char[64]){ 0 }, 64) || n != floor(n))
				urc = rt_cmd_fail(prog, 2, "--threads takes a number from 0 (all cores) to 1024; got '%s'", val);
			else
				threads = (int)n;
			break;
		case F_DIRECTION: dir_path = val; break;
		case F_OUT: out_path = val; break;
		case F_VNNLIB: vnnlib = val; break;
		default:
			if (input)
				urc = rt_cmd_fail(prog, 2, "more than one INPUT ('%s' and '%s')", input, val);
			input = val;
		}
	}
	rt_flags_done(&fl);
	if (urc >= 0)
		return urc;
	if (!input) {
		usage(stderr, prog);
		return 2;
	}

	char err[RT_ERRLEN];
	const rt_file files[] = {
		{ "INPUT", input, RT_FILE_IN, 0 },
		{ "--direction", dir_path, RT_FILE_IN, 0 },
		{ "-o", out_path, RT_FILE_OUT, 0 },
	};
	int rc = rt_files_check(files, 3, err);
	if (rc)
		return rt_cmd_fail(prog, rc, "%s", err);
	if (vnnlib && !(norms & RT_NORM_BIT(RT_LINF)))
		return rt_cmd_fail(prog, 2, "--vnnlib states the l_inf ball: give inf among --norms");
	if (vnnlib && rt_vnnlib_dir(vnnlib, err))
		return rt_cmd_fail(prog, 1, "%s", err);

	rc = 1;
	rt_reader *in = NULL;
	directions dirs = { 0 };
	summary sum = { 0 };
	rt_atomic atom = { .fd = -1 };
	FILE *out = stdout;
	rt_batch b = { .norms = norms, .threads = threads };
	b.cert = rt_calloc(CHUNK, sizeof *b.cert);
	b.pattern = rt_calloc(CHUNK, sizeof *b.pattern);
	b.t = rt_calloc(CHUNK, sizeof *b.t);
	b.tbind = rt_calloc(CHUNK, sizeof *b.tbind);
	if (!b.cert || !b.pattern || !b.t || !b.tbind) {
		fprintf(stderr, "%s: out of memory\n", prog);
		goto done;
	}
	if (rt_reader_open(input, lln_model.n_in, &in, err) || (dir_path && dirs_open(&dirs, dir_path, err))) {
		fprintf(stderr, "%s\n", err);
		goto done;
	}
	bool records = out_path || !summary_only;
	if (out_path) {
		if (rt_atomic_open(out_path, &atom, err) != 0) {
			fprintf(stderr, "%s\n", err);
			goto done;
		}
		out = fdopen(atom.fd, "w");
		if (!out) {
			fprintf(stderr, "%s: cannot write: %s\n", out_path, strerror(errno));
			goto done;
		}
		atom.fd = -1;   /* fclose closes it */
	}
	if (records)
		print_header(out, norms, dir_path != NULL, format);

	bool progress = isatty(2);
	int64_t done_n = 0;
	for (;;) {
		rt_data chunk;
		if (rt_reader_next(in, CHUNK, &chunk, err) != 0) {
			fprintf(stderr, "%s\n", err);
			goto done;
		}
		if (chunk.n == 0)
			break;
		b.x = chunk.x;
		b.xlo = chunk.xlo;
		b.n = chunk.n;
		if (dir_path && dirs.per_input) {
			if (done_n > 0 && rt_reader_next(dirs.r, CHUNK, &dirs.chunk, err) != 0) {
				fprintf(stderr, "%s\n", err);
				goto done;
			}
			if (dirs.chunk.n != chunk.n) {
				directions_mismatch(&dirs, in, err);
				fprintf(stderr, "%s\n", err);
				goto done;
			}
			b.dirs = dirs.chunk.x;
			b.n_dirs = chunk.n;
		} else if (dir_path) {
			b.dirs = dirs.one;
			b.n_dirs = 1;
		}
		if (rt_certify_batch(&lln_model, lln_weights, &b) != 0) {
			fprintf(stderr, "%s: out of memory\n", prog);
			goto done;
		}
		if (records)
			print_records(out, &b, done_n, format);
		if (vnnlib && rt_vnnlib_batch(vnnlib, &lln_model, &b, done_n, err) != 0) {
			fprintf(stderr, "%s\n", err);
			goto done;
		}
		if (summary_only && summary_add(&sum, &b) != 0) {
			fprintf(stderr, "%s: out of memory\n", prog);
			goto done;
		}
		done_n += chunk.n;
		if (progress && done_n > 2000)
			fprintf(stderr, "\rcertified %lld", (long long)done_n);
	}
	if (progress && done_n > 2000)
		fputc('\n', stderr);
	if (done_n == 0) {
		fprintf(stderr, "%s: holds no examples\n", strcmp(input, "-") == 0 ? "stdin" : input);
		goto done;
	}
	if (dir_path && dirs.per_input) {
		rt_data rest;
		if (rt_reader_next(dirs.r, CHUNK, &rest, err) != 0 || rest.n > 0) {
			if (rest.n > 0)
				directions_mismatch(&dirs, in, err);
			fprintf(stderr, "%s\n", err);
			goto done;
		}
	}
	if (out_path) {
		int bad = ferror(out) || fflush(out) != 0;
		int e = errno;
		atom.fd = dup(fileno(out));
		fclose(out);
		out = stdout;
		if (bad) {
			fprintf(stderr, "%s: cannot write: %s\n", out_path, strerror(e ? e : EIO));
			goto done;
		}
		if (rt_atomic_commit(&atom, err) != 0) {
			fprintf(stderr, "%s\n", err);
			goto done;
		}
	}
	if (summary_only)
		print_summary(stdout, &sum, norms, dir_path != NULL);
	rc = fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
	if (rc)
		fprintf(stderr, "%s: cannot write the output: %s\n", prog, strerror(errno ? errno : EIO));
done:
	if (out != stdout)
		fclose(out);
	if (atom.tmp)
		rt_atomic_abort(&atom);
	free(b.cert);
	free(b.pattern);
	free(b.t);
	free(b.tbind);
	rt_reader_close(in);
	rt_reader_close(dirs.r);
	free(dirs.one);
	summary_free(&sum);
	return rc;
}
