/* certifier_main.c: the certifier's command line, rt_certify_main.
 *
 * A standalone certifier (`llnc build --certifier`: certifier_exe.c's main
 * around the generated lln_model and the embedded lln_weights) and `llnc
 * certify` (the same model compiled in process) both run this function, so
 * they print the same bytes.  It reads inputs, and their true labels when
 * given (a labeled CSV, or --labels), certifies them across threads and
 * prints, per input, the prediction, the l1 / l2 / linf margins of its
 * activation region with their binding neurons, the certified-prediction
 * radius, whether the prediction is correct and certified at the radii of
 * --eps, and a hash of the activation pattern, or a summary
 * (cert_summary.c).  It streams: inputs are
 * read, certified and written in chunks of CHUNK examples, so memory does
 * not grow with the number of inputs (--summary keeps the radii, 32 bytes
 * an input, for exact percentiles) and a bad record stops the run as soon
 * as it is read.  An output file is written whole or not at all.
 *
 * --shard I/N certifies only the I-th of N contiguous parts of the input,
 * its records keeping their index in the whole input, and only shard 0
 * prints the header, so the shards' outputs concatenated in shard order
 * are the unsharded output byte for byte.  --shard-out FILE writes the
 * records, after a line that says which model, input, settings and shard
 * they come from, for `llnc merge` (cert_merge.c) to join the shards of a
 * job array into the one output or the exact summary.  Run as one part of a job
 * (rt_certify_job: `llnc certify` under mpirun), the parts' records and
 * --summary data go to part 0, which writes the one output
 * (docs/scale.md).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt.h"

static const char *norm_name[RT_NNORMS] = { "l1", "l2", "linf" };
enum { FORMAT_JSONL = RT_FORMAT_JSONL, FORMAT_CSV = RT_FORMAT_CSV, FORMAT_TABLE = RT_FORMAT_TABLE };
/* Examples per chunk: enough to keep every core busy, small enough that a
 * chunk of MNIST-sized inputs is a few megabytes. */
#define CHUNK 4096

static void usage(FILE *out, const rt_model *m, const char *prog, const char *synopsis)
{
	if (synopsis)
		fprintf(out, "usage: %s\n", synopsis);
	else
		fprintf(out, "usage: %s [options] INPUT\n", prog);
	fprintf(out,
		"\n"
		"Certifies each input of INPUT for the model '%s' (%d inputs, %d outputs,\n"
		"%d hidden neurons): how far it can move, in raw input units, while the\n"
		"network stays linear (eps), and while its prediction also stays (eps_pred).\n"
		"\n"
		"INPUT: a .csv file (one example of %d values per line), a .npy array\n"
		"(float32/float64), an IDX file (MNIST format), or - for CSV on stdin.\n"
		"A CSV file whose records have %d values holds each example's true label\n"
		"first; --labels gives them for other inputs.\n"
		"\n"
		"options:\n"
		"  --norms LIST        norms to certify, from 1,2,inf (default 1,2,inf)\n"
		"  --format F          per-input output: jsonl (default), csv, or table\n"
		"                      (aligned columns for reading)\n"
		"  --threads N         threads, 0: all cores (default, %d here)\n"
		"  --direction FILE    also report the directional margin along each\n"
		"                      direction of FILE (one row for all inputs, or one per input)\n"
		"  --labels FILE       the true labels (IDX, .npy or CSV, one per input): adds\n"
		"                      'label' and 'correct' to each record, accuracy to --summary\n"
		"  --eps R[,R2...]     radii: is each prediction certified at R in --norm, and\n"
		"                      (with labels) correct too: 'certified' (without labels:\n"
		"                      'robust'); --summary gives certified accuracy at each R\n"
		"  --norm P            the norm of --eps: 1, 2 or inf (default: the one norm of\n"
		"                      --norms, when it names one)\n"
		"  --summary           print accuracy, certified accuracy, P25/P50/P75/P100 of\n"
		"                      each radius and the number of distinct activation patterns\n"
		"                      instead of per-input lines, in --format (jsonl: one object)\n"
		"  -o FILE             write the per-input output to FILE (default: stdout)\n"
		"  --shard I/N         certify only the I-th (from 0) of N contiguous parts of\n"
		"                      INPUT, records keeping their index; shard 0 alone prints\n"
		"                      the header, so the outputs concatenated in shard order\n"
		"                      are the unsharded output (docs/scale.md)\n"
		"  --shard-out FILE    write the records to FILE (instead of stdout or -o) as a\n"
		"                      shard file: a line naming the model, INPUT and settings,\n"
		"                      then JSON lines; 'llnc merge' joins the shard files of a\n"
		"                      run into its output or its exact --summary\n"
		"  --vnnlib DIR        also write DIR/prop_N.vnnlib for input N: its certified\n"
		"                      l_inf prediction ball as a VNN-LIB property, for the\n"
		"                      ONNX graph of 'llnc export' (docs/certifier.md)\n"
		"  --help              show this help\n"
		"\n"
		"Exit status: 0 done, 1 bad input (data, labels) or a failed write, 2 usage.\n",
		m->name, m->n_in, m->n_out, m->n_hidden, m->n_in, m->n_in + 1, rt_ncpus());
}

/* The records of one certified chunk; `first` is the index of its first
 * input, y its true labels (when L->labeled). */
static void print_records(FILE *out, const rt_record_layout *L, const rt_model *m, const rt_batch *b,
                          const int32_t *y, int64_t first)
{
	for (int64_t i = 0; i < b->n; i++) {
		rt_record rec = { .index = first + i, .c = b->cert[i], .y = y ? y[i] : 0, .pattern = b->pattern[i] };
		int32_t len = rt_seq_len(m, b->len, i);
		for (int p = 0; p < RT_NNORMS; p++)
			if (L->norms & RT_NORM_BIT(p))
				rt_bind_of(m, len, b->cert[i].bind[p], &rec.bind[p]);
		if (b->dirs) {
			rec.t = b->t[i];
			rt_bind_of(m, len, b->tbind[i], &rec.tbind);
		}
		rt_record_print(out, L, &rec);
	}
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

static int dirs_open(directions *d, const rt_model *m, const char *path, char *err)
{
	d->path = path;
	if (rt_reader_open_model(path, m, false, &d->r, err) || rt_reader_next(d->r, CHUNK, &d->chunk, err))
		return -1;
	if (d->chunk.n == 0)
		return rt_fail(err, "%s: holds no examples", path);
	if (m->max_len && d->chunk.n == 1 && d->chunk.len)
		return rt_fail(err, "%s: holds one direction; a model over sequences of free length takes one per input, "
		               "each as long as its input", path);
	/* a chunk is short only at the end of the file: one row is all */
	if (d->chunk.n > 1) {
		d->per_input = true;
		return 0;
	}
	d->one = rt_alloc_floats(m->n_in);
	if (!d->one)
		return rt_fail(err, "%s: out of memory", path);
	memcpy(d->one, d->chunk.x, sizeof(float) * (size_t)m->n_in);
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

/* The true labels of a chunk: its CSV's first column, or the next n of
 * --labels; each must be a class of the model.  NULL with err on failure. */
static const int32_t *chunk_labels(const rt_model *m, const rt_data *chunk, const char *input,
                                   const char *labels_path, const int32_t *labels, int64_t n_labels,
                                   int64_t first, char *err)
{
	const int32_t *y = chunk->y;
	const char *from = input;
	if (labels_path) {
		if (first + chunk->n > n_labels) {
			rt_fail(err, "%s: holds %lld labels but %s has more examples", labels_path, (long long)n_labels,
			        strcmp(input, "-") ? input : "stdin");
			return NULL;
		}
		y = labels + first;
		from = labels_path;
	}
	int32_t classes = m->n_out > 1 ? m->n_out : 2;
	for (int64_t i = 0; i < chunk->n; i++)
		if (y[i] >= classes) {
			rt_fail(err, "%s: record %lld: label %d is not a class of model '%s' (0 to %d)",
			        strcmp(from, "-") ? from : "stdin", (long long)(first + i + 1), y[i], m->name, classes - 1);
			return NULL;
		}
	return y;
}

/* "I/N" with 0 <= I < N into part and parts; -1 if it is not. */
static int parse_shard(const char *s, int *part, int *parts)
{
	char *end;
	long i = strtol(s, &end, 10);
	if (end == s || *end != '/' || i < 0)
		return -1;
	const char *n_at = end + 1;
	long n = strtol(n_at, &end, 10);
	if (end == n_at || *end || n < 1 || n > 1000000 || i >= n)
		return -1;
	*part = (int)i;
	*parts = (int)n;
	return 0;
}

/* The inputs of INPUT, for the bounds of a shard: a pass that reads (and
 * checks) every record; -1 with err on a bad record.  *digest gets a hash
 * of their values and labels, which tells the shard files of one input
 * from another's (llnc merge). */
static int64_t count_inputs(const rt_model *m, const char *path, uint64_t *digest, char *err)
{
	rt_reader *r;
	if (rt_reader_open_model(path, m, true, &r, err))
		return -1;
	rt_data c;
	int64_t n = -1;
	uint64_t h = RT_FNV_BASIS;
	for (;;) {
		if (rt_reader_next(r, CHUNK, &c, err) != 0)
			break;
		if (c.n == 0) {
			n = rt_reader_count(r);
			break;
		}
		size_t values = sizeof(float) * (size_t)(c.n * m->n_in);
		h = rt_fnv1a(h, c.x, values);
		if (c.xlo)
			h = rt_fnv1a(h, c.xlo, values);
		if (c.y)
			h = rt_fnv1a(h, c.y, sizeof(int32_t) * (size_t)c.n);
		if (c.len)
			h = rt_fnv1a(h, c.len, sizeof(int32_t) * (size_t)c.n);
	}
	rt_reader_close(r);
	*digest = h;
	return n;
}

/* A hash of the model and its weights: shards of one run agree on it. */
static uint64_t model_digest(const rt_model *m, const float *P)
{
	int64_t shape[] = { m->n_in, m->n_out, m->n_hidden, m->n_layers, m->n_params };
	uint64_t h = rt_fnv1a(RT_FNV_BASIS, m->name, strlen(m->name) + 1);
	h = rt_fnv1a(h, shape, sizeof shape);
	for (int32_t i = 0; i < m->n_layers; i++) {
		const rt_layer *l = &m->layers[i];
		int32_t dims[] = { l->size, l->offset, l->c, l->h, l->w };
		h = rt_fnv1a(h, l->name, strlen(l->name) + 1);
		h = rt_fnv1a(h, dims, sizeof dims);
	}
	double norm[] = { m->mean, m->std };
	h = rt_fnv1a(h, norm, sizeof norm);
	return rt_fnv1a(h, P, sizeof(float) * (size_t)m->n_params);
}

int rt_certify_main(const rt_model *m, const float *P, const char *synopsis, int argc, char **argv)
{
	return rt_certify_job(m, P, synopsis, argc, argv, NULL);
}

int rt_certify_job(const rt_model *m, const float *P, const char *synopsis, int argc, char **argv,
                   const rt_cert_job *job)
{
	const char *prog = argv[0], *input = NULL, *dir_path = NULL, *out_path = NULL, *vnnlib = NULL;
	const char *labels_path = NULL, *eps_text = NULL, *shard_out = NULL;
	int norm = -1;
	bool norms_given = false;
	int32_t norms = RT_ALL_NORMS;
	int format = FORMAT_JSONL;
	bool summary_only = false;
	int threads = 0, part = 0, parts = 1;
	enum { F_HELP, F_SUMMARY, F_NORMS, F_FORMAT, F_THREADS, F_DIRECTION, F_OUT, F_VNNLIB, F_LABELS, F_EPS, F_NORM,
	       F_SHARD, F_SHARD_OUT };
	static const rt_flag flags[] = {
		{ "help", false, F_HELP }, { "-h", false, F_HELP }, { "summary", false, F_SUMMARY },
		{ "norms", true, F_NORMS }, { "format", true, F_FORMAT }, { "threads", true, F_THREADS },
		{ "direction", true, F_DIRECTION }, { "-o", true, F_OUT }, { "vnnlib", true, F_VNNLIB },
		{ "labels", true, F_LABELS }, { "eps", true, F_EPS }, { "norm", true, F_NORM },
		{ "shard", true, F_SHARD }, { "shard-out", true, F_SHARD_OUT },
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
		case F_HELP: usage(stdout, m, prog, synopsis); urc = 0; break;
		case F_SUMMARY: summary_only = true; break;
		case F_NORMS:
			if (rt_parse_norms(val, &norms) != 0)
				urc = rt_cmd_fail(prog, 2, "--norms takes a comma-separated list of 1, 2, inf; got '%s'", val);
			norms_given = true;
			break;
		case F_NORM: {
			int32_t one;
			if (rt_parse_norms(val, &one) != 0 || (one & (one - 1)))
				urc = rt_cmd_fail(prog, 2, "--norm takes one of 1, 2, inf; got '%s'", val);
			else
				norm = __builtin_ctz((unsigned)one);   /* the bit's index: RT_L1, RT_L2 or RT_LINF */
			break;
		}
		case F_EPS: eps_text = val; break;
		case F_LABELS: labels_path = val; break;
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
		case F_SHARD:
			if (job)
				urc = rt_cmd_fail(prog, 2, "--shard: under mpirun each rank is a shard already");
			else if (parse_shard(val, &part, &parts) != 0)
				urc = rt_cmd_fail(prog, 2, "--shard takes I/N, the I-th (0 to N-1) of N parts; got '%s'", val);
			break;
		case F_SHARD_OUT:
			if (job)
				urc = rt_cmd_fail(prog, 2, "--shard-out: under mpirun rank 0 writes the one output already");
			shard_out = val;
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
		usage(stderr, m, prog, synopsis);
		return 2;
	}
	rt_radii radii = { 0 };
	if (eps_text) {
		if (rt_radii_parse(eps_text, &radii) != 0)
			return rt_cmd_fail(prog, 2, "--eps takes up to %d comma-separated radii >= 0; got '%s'",
			                   RT_MAX_RADII, eps_text);
		if (norm < 0 && norms_given && !(norms & (norms - 1)))
			norm = __builtin_ctz((unsigned)norms);
		if (norm < 0)
			return rt_cmd_fail(prog, 2, "--eps needs the norm of its radii: --norm 1, 2 or inf");
		if (!(norms & RT_NORM_BIT(norm)))
			return rt_cmd_fail(prog, 2, "--norm %s is not among --norms", norm_name[norm] + 1);
		radii.norm = norm;
	} else if (norm >= 0) {
		return rt_cmd_fail(prog, 2, "--norm is the norm of the radii of --eps; give --eps R too");
	}
	if (labels_path && !strcmp(labels_path, "-") && !strcmp(input, "-"))
		return rt_cmd_fail(prog, 2, "INPUT and --labels cannot both be standard input");
	if (job) {
		part = job->part;
		parts = job->parts;
	}
	if ((parts > 1 || shard_out) && !strcmp(input, "-"))
		return rt_cmd_fail(prog, 2, "a shard needs INPUT in a file (its parts are counted first), not stdin");
	if (shard_out && out_path)
		return rt_cmd_fail(prog, 2, "--shard-out FILE takes the records that -o would: give one of the two");

	if (rt_is_shape(m))   /* a shape: the flags alone (rt.h) */
		return -1;
	char err[RT_ERRLEN];
	const rt_file files[] = {
		{ "INPUT", input, RT_FILE_IN, 0 },
		{ "--direction", dir_path, RT_FILE_IN, 0 },
		{ "--labels", labels_path, RT_FILE_IN, 0 },
		{ "-o", out_path, RT_FILE_OUT, 0 },
		{ "--shard-out", shard_out, RT_FILE_OUT, 0 },
	};
	/* only part 0 of a job writes the output file */
	int rc = rt_files_check(files, job && part > 0 ? 3 : 5, err);
	if (rc)
		return rt_cmd_fail(prog, rc, "%s", err);
	if (vnnlib && m->max_len)   /* a property over max_len frames would free the padding */
		return rt_cmd_fail(prog, 2, "--vnnlib does not take models over sequences of free length (input x[*, F])");
	if (vnnlib && !(norms & RT_NORM_BIT(RT_LINF)))
		return rt_cmd_fail(prog, 2, "--vnnlib states the l_inf ball: give inf among --norms");
	if (vnnlib && rt_vnnlib_dir(vnnlib, err))
		return rt_cmd_fail(prog, 1, "%s", err);

	rc = 1;
	rt_reader *in = NULL;
	directions dirs = { 0 };
	rt_cert_summary sum = { 0 };
	int32_t *labels = NULL;
	int64_t n_labels = 0;
	rt_atomic atom = { .fd = -1 };
	FILE *out = stdout;
	char *mem = NULL, *all = NULL, *packed = NULL;   /* a job's output, gathered; its summary */
	size_t mem_len = 0;
	int64_t begin = 0, end = INT64_MAX;   /* the shard */
	rt_batch b = { .norms = norms, .threads = threads };
	b.cert = rt_calloc(CHUNK, sizeof *b.cert);
	b.pattern = rt_calloc(CHUNK, sizeof *b.pattern);
	b.t = rt_calloc(CHUNK, sizeof *b.t);
	b.tbind = rt_calloc(CHUNK, sizeof *b.tbind);
	if (!b.cert || !b.pattern || !b.t || !b.tbind) {
		fprintf(stderr, "%s: out of memory\n", prog);
		goto done;
	}
	if (rt_reader_open_model(input, m, true, &in, err) || (dir_path && dirs_open(&dirs, m, dir_path, err)) ||
	    (labels_path && rt_labels_read(labels_path, 0, &labels, &n_labels, err))) {
		fprintf(stderr, "%s\n", err);
		goto done;
	}
	/* --shard-out takes the records, whatever --summary says */
	const char *file_out = shard_out ? shard_out : out_path;
	bool records = file_out || !summary_only;
	rt_shard_head head = { m->name, 0, 0, m->n_in, m->n_out, 0, part, parts };
	if (parts > 1 || shard_out) {
		head.inputs = count_inputs(m, input, &head.input_digest, err);
		if (head.inputs < 0) {
			fprintf(stderr, "%s\n", err);
			goto done;
		}
		begin = head.inputs * part / parts;
		end = head.inputs * (part + 1) / parts;
		if (labels)
			head.input_digest = rt_fnv1a(head.input_digest, labels, sizeof(int32_t) * (size_t)n_labels);
		head.model_digest = model_digest(m, P);
	}
	if (job && records) {   /* the records go to part 0 (below) */
		if (!(out = open_memstream(&mem, &mem_len))) {
			out = stdout;
			fprintf(stderr, "%s: out of memory\n", prog);
			goto done;
		}
	} else if (file_out) {
		if (rt_atomic_open(file_out, &atom, err) != 0) {
			fprintf(stderr, "%s\n", err);
			goto done;
		}
		out = fdopen(atom.fd, "w");
		if (!out) {
			fprintf(stderr, "%s: cannot write: %s\n", file_out, strerror(errno));
			goto done;
		}
		atom.fd = -1;   /* fclose closes it */
	}
	/* a shard file holds JSON lines, read back by llnc merge */
	rt_record_layout L = { .norms = norms, .dirs = dir_path != NULL, .labeled = labels_path != NULL,
	                       .format = shard_out ? FORMAT_JSONL : format, .radii = &radii };
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
		if (done_n == 0) {
			/* a CSV's first record says whether it carries labels */
			if (chunk.y && labels_path) {
				fprintf(stderr, "%s: its records carry a label in the first column, and --labels "
				        "gives them again; give one of the two\n", input);
				goto done;
			}
			L.labeled |= chunk.y != NULL;
			if (shard_out)
				rt_shard_head_print(out, &head, &L);
			else if (records && part == 0)
				rt_record_header(out, &L);
		}
		const int32_t *y = NULL;
		if (L.labeled && !(y = chunk_labels(m, &chunk, input, labels_path, labels, n_labels, done_n, err))) {
			fprintf(stderr, "%s\n", err);
			goto done;
		}
		/* the shard's part of the chunk: [lo, hi) */
		int64_t lo = begin > done_n ? begin - done_n : 0;
		int64_t hi = end - done_n < chunk.n ? end - done_n : chunk.n;
		if (lo > chunk.n)
			lo = chunk.n;
		if (hi < lo)
			hi = lo;
		b.x = chunk.x + lo * m->n_in;
		b.xlo = chunk.xlo ? chunk.xlo + lo * m->n_in : NULL;
		b.len = chunk.len ? chunk.len + lo : NULL;
		b.n = hi - lo;
		if (y)
			y += lo;
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
			for (int64_t i = lo; i < hi; i++)
				if (rt_seq_len(m, dirs.chunk.len, i) != rt_seq_len(m, chunk.len, i)) {
					fprintf(stderr, "%s: record %lld: a direction of %d frames for an input of %d\n", dir_path,
					        (long long)(done_n + i + 1), rt_seq_len(m, dirs.chunk.len, i),
					        rt_seq_len(m, chunk.len, i));
					goto done;
				}
			b.dirs = dirs.chunk.x + lo * m->n_in;
			b.n_dirs = b.n;
		} else if (dir_path) {
			b.dirs = dirs.one;
			b.n_dirs = 1;
		}
		if (b.n == 0) {
			done_n += chunk.n;
			continue;
		}
		if (rt_certify_batch(m, P, &b) != 0) {
			fprintf(stderr, "%s: out of memory\n", prog);
			goto done;
		}
		if (records)
			print_records(out, &L, m, &b, y, done_n + lo);
		if (vnnlib && rt_vnnlib_batch(vnnlib, m, &b, done_n + lo, err) != 0) {
			fprintf(stderr, "%s\n", err);
			goto done;
		}
		if (summary_only && rt_summary_add(&sum, &b, y, &radii) != 0) {
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
	if (labels_path && n_labels != done_n) {
		fprintf(stderr, "%s: holds %lld labels but %s has %lld examples\n", labels_path, (long long)n_labels,
		        strcmp(input, "-") ? input : "stdin", (long long)done_n);
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
	if (job && records) {
		int bad = ferror(out) || fflush(out) != 0;
		fclose(out);
		out = stdout;
		int64_t total;
		all = job->gather(mem, bad ? 0 : (int64_t)mem_len, &total);
		if (bad) {
			fprintf(stderr, "%s: out of memory\n", prog);
			goto done;
		}
		if (all && out_path && rt_write_atomic(out_path, all, (size_t)total, err) != 0) {
			fprintf(stderr, "%s\n", err);
			goto done;
		}
		if (all && !out_path)
			fwrite(all, 1, (size_t)total, stdout);
	} else if (file_out) {
		int bad = ferror(out) || fflush(out) != 0;
		int e = errno;
		atom.fd = dup(fileno(out));
		fclose(out);
		out = stdout;
		if (bad) {
			fprintf(stderr, "%s: cannot write: %s\n", file_out, strerror(e ? e : EIO));
			goto done;
		}
		if (rt_atomic_commit(&atom, err) != 0) {
			fprintf(stderr, "%s\n", err);
			goto done;
		}
	}
	if (summary_only && job) {   /* every part's radii, merged exactly on part 0 */
		int64_t len, total;
		if (!(packed = rt_summary_pack(&sum, &len))) {
			fprintf(stderr, "%s: out of memory\n", prog);
			goto done;
		}
		free(all);
		all = job->gather(packed, len, &total);
		rt_summary_free(&sum);
		if (all && rt_summary_unpack(&sum, all, total) != 0) {
			fprintf(stderr, "%s: out of memory\n", prog);
			goto done;
		}
	}
	if (summary_only && (!job || job->part == 0) &&
	    rt_summary_print(stdout, &sum, &radii, norms, dir_path != NULL, format) != 0) {
		fprintf(stderr, "%s: out of memory\n", prog);
		goto done;
	}
	rc = fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
	if (rc)
		fprintf(stderr, "%s: cannot write the output: %s\n", prog, strerror(errno ? errno : EIO));
done:
	if (out != stdout)
		fclose(out);
	free(mem);
	free(all);
	free(packed);
	if (atom.tmp)
		rt_atomic_abort(&atom);
	free(b.cert);
	free(b.pattern);
	free(b.t);
	free(b.tbind);
	rt_reader_close(in);
	rt_reader_close(dirs.r);
	free(dirs.one);
	rt_summary_free(&sum);
	free(labels);
	return rc;
}
