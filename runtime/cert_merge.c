/* cert_merge.c: `llnc merge`, the shard files of one certifier run joined.
 *
 * The tasks of a job array certify the N shards of an input, each writing
 * its records with --shard-out: a first line saying which model (a digest
 * of it and its weights), which input (a digest of its values and labels),
 * which settings and which shard, then one JSON object per input, as
 * `--format jsonl` prints it.  Merging reads every first line and checks
 * that the files are the N shards of one run, each once; then reads the
 * records shard after shard, checks each (its index is the next one, every
 * field is there and well formed) and prints them in input order in any
 * --format, or adds them to a summary.  The records keep the certifier's
 * radii exactly (9 significant digits rounded toward zero read back give
 * the same float), so the records and the summary printed are those of the
 * unsharded run, byte for byte: the percentiles are computed from every
 * input's radii, not combined from the shards'.  Nothing is written before
 * every record has been read and checked.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "rt.h"

static const char *norm_name[RT_NNORMS] = { "l1", "l2", "linf" };
#define BATCH 4096   /* records added to the summary at a time */

/* A shard file's first line, parsed. */
typedef struct shard {
	const char *path;
	char model[128];
	rt_shard_head h;
	rt_record_layout L;
	rt_radii radii;
	char who[320], what[600];   /* model and input; settings: compared as text */
} shard;

static void usage(FILE *out, const char *prog)
{
	fprintf(out,
		"usage: %s [--summary] [--format jsonl|csv|table] [-o OUT] SHARD...\n"
		"\n"
		"Joins the shard files that certifier runs wrote with '--shard I/N\n"
		"--shard-out SHARD' (the tasks of a Slurm job array, say) into what the\n"
		"unsharded run prints: the records of every input in input order, in\n"
		"--format; with --summary, the summary of every input instead, exactly as\n"
		"the unsharded --summary (with -o, the records go to OUT and the summary to\n"
		"stdout).  The SHARD files may come in any order; each shard of the run must\n"
		"be there once, all from the same model and weights, the same INPUT and the\n"
		"same settings (--norms, --eps, --norm, labels, --direction).\n"
		"\n"
		"options:\n"
		"  --summary      print accuracy, certified accuracy, percentiles of each\n"
		"                 radius and distinct activation patterns (docs/certifier.md)\n"
		"  --format F     jsonl (default), csv or table, as the certifier's --format\n"
		"  -o OUT         write the records to OUT (atomically)\n"
		"  --help         show this help\n"
		"\n"
		"Exit status: 0 done, 1 a bad, missing or repeated shard file or a failed\n"
		"write, 2 usage.  (docs/scale.md: a job array and its merge.)\n",
		prog);
}

/* ---- reading JSON fields ---- */

static int get_int(json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *v)
{
	json_t *j = json_object_get(o, key);
	if (!json_is_integer(j) || json_integer_value(j) < lo || json_integer_value(j) > hi)
		return -1;
	*v = json_integer_value(j);
	return 0;
}

static int get_hex64(json_t *o, const char *key, uint64_t *v)
{
	const char *s = json_string_value(json_object_get(o, key));
	if (!s || strlen(s) != 16 || strspn(s, "0123456789abcdef") != 16)
		return -1;
	*v = strtoull(s, NULL, 16);
	return 0;
}

/* A radius as the certifier prints it: a number >= 0 that is a float, or
 * null for one that nothing bounds. */
static int get_radius(json_t *o, const char *key, float *v)
{
	json_t *j = json_object_get(o, key);
	if (json_is_null(j)) {
		*v = INFINITY;
		return 0;
	}
	if (!json_is_number(j))
		return -1;
	double d = json_number_value(j);
	*v = (float)d;
	return d >= 0 && isfinite(*v) ? 0 : -1;
}

/* ---- the first line ---- */

static int norm_of(const char *s)
{
	for (int p = 0; p < RT_NNORMS; p++)
		if (s && !strcmp(s, norm_name[p]))
			return p;
	return -1;
}

/* The keys a first line may hold: anything else is from another program
 * or another version. */
static const char *const head_keys[] = { "lln_shard", "model", "model_digest", "input_digest", "n_in", "n_out",
	                                 "inputs", "shard", "shards", "norms", "labeled", "direction",
	                                 "eps_norm", "eps" };

static int parse_head(shard *s, const char *line, size_t len, char *err)
{
	json_error_t je;
	json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
	int rc = -1;
	int64_t v, n_in, n_out, part, parts;
	if (!json_is_object(o) || !json_object_get(o, "lln_shard")) {
		rt_fail_file(err, s->path, "not a shard file: its first line does not say which run it is "
		             "from (write shard files with the certifier's --shard-out)");
		goto done;
	}
	if (get_int(o, "lln_shard", RT_SHARD_VERSION, RT_SHARD_VERSION, &v)) {
		rt_fail_file(err, s->path, "a shard file of another version of lln (this one reads version %d)",
		             RT_SHARD_VERSION);
		goto done;
	}
	const char *key;
	json_t *val;
	json_object_foreach(o, key, val) {
		size_t k = 0;
		while (k < sizeof head_keys / sizeof *head_keys && strcmp(key, head_keys[k]))
			k++;
		if (k == sizeof head_keys / sizeof *head_keys) {
			rt_fail_file(err, s->path, "line 1: unknown field '%s'", key);
			goto done;
		}
	}
	const char *model = json_string_value(json_object_get(o, "model"));
	json_t *norms = json_object_get(o, "norms"), *labeled = json_object_get(o, "labeled"),
	       *dirs = json_object_get(o, "direction"), *eps = json_object_get(o, "eps");
	const char *eps_norm = json_string_value(json_object_get(o, "eps_norm"));
	if (!model || strlen(model) >= sizeof s->model || get_hex64(o, "model_digest", &s->h.model_digest) ||
	    get_hex64(o, "input_digest", &s->h.input_digest) || get_int(o, "n_in", 1, INT32_MAX, &n_in) ||
	    get_int(o, "n_out", 1, INT32_MAX, &n_out) || get_int(o, "inputs", 1, INT64_MAX / 1000000, &s->h.inputs) ||
	    get_int(o, "shards", 1, 1000000, &parts) || get_int(o, "shard", 0, parts - 1, &part) ||
	    !json_is_array(norms) || !json_array_size(norms) || !json_is_boolean(labeled) ||
	    !json_is_boolean(dirs) || !eps != !eps_norm || (eps && (!json_is_array(eps) || !json_array_size(eps) ||
	                                                            json_array_size(eps) > RT_MAX_RADII))) {
		rt_fail_file(err, s->path, "line 1: a shard file's first line, but a field is missing or wrong");
		goto done;
	}
	snprintf(s->model, sizeof s->model, "%s", model);
	s->h.model = s->model;
	s->h.n_in = (int32_t)n_in;
	s->h.n_out = (int32_t)n_out;
	s->h.part = (int)part;
	s->h.parts = (int)parts;
	s->L = (rt_record_layout){ .labeled = json_is_true(labeled), .dirs = json_is_true(dirs),
	                           .radii = &s->radii };
	size_t i;
	json_t *e;
	json_array_foreach(norms, i, e) {
		int p = norm_of(json_string_value(e));
		if (p < 0 || (s->L.norms & RT_NORM_BIT(p))) {
			rt_fail_file(err, s->path, "line 1: 'norms' must list distinct l1, l2, linf");
			goto done;
		}
		s->L.norms |= RT_NORM_BIT(p);
	}
	if (eps) {
		/* the radii as the certifier's --eps read them: "%.17g" gives back the double */
		char text[RT_MAX_RADII * 32] = "";
		bool numbers = true;
		json_array_foreach(eps, i, e) {
			size_t at = strlen(text);
			snprintf(text + at, sizeof text - at, "%s%.17g", i ? "," : "", json_number_value(e));
			numbers &= json_is_number(e);
		}
		s->radii.norm = norm_of(eps_norm);
		if (!numbers || s->radii.norm < 0 || !(s->L.norms & RT_NORM_BIT(s->radii.norm)) ||
		    rt_radii_parse(text, &s->radii)) {
			rt_fail_file(err, s->path, "line 1: 'eps' must be radii >= 0 in 'eps_norm', one of 'norms'");
			goto done;
		}
	}
	snprintf(s->who, sizeof s->who, "model '%s' (weights digest %016" PRIx64 "), an INPUT of %lld examples "
	         "(digest %016" PRIx64 ")", s->model, s->h.model_digest, (long long)s->h.inputs, s->h.input_digest);
	int at = snprintf(s->what, sizeof s->what, "--norms ");
	for (int p = 0, first = 1; p < RT_NNORMS; p++)
		if (s->L.norms & RT_NORM_BIT(p)) {
			at += snprintf(s->what + at, sizeof s->what - (size_t)at, "%s%s", first ? "" : ",", norm_name[p] + 1);
			first = 0;
		}
	at += snprintf(s->what + at, sizeof s->what - (size_t)at, "%s%s", s->L.labeled ? ", labels" : ", no labels",
	               s->L.dirs ? ", --direction" : "");
	for (int k = 0; k < s->radii.n; k++)
		at += snprintf(s->what + at, sizeof s->what - (size_t)at, "%s%s", k ? "," : ", --eps ", s->radii.key[k]);
	if (s->radii.n)
		snprintf(s->what + at, sizeof s->what - (size_t)at, " --norm %s", norm_name[s->radii.norm] + 1);
	rc = 0;
done:
	json_decref(o);
	return rc;
}

/* The next line of f into *line (without its newline); 0 at the end, -1
 * for a line cut short (no newline: the file was truncated). */
static ssize_t next_line(FILE *f, char **line, size_t *cap)
{
	ssize_t n = getline(line, cap, f);
	if (n <= 0)
		return 0;
	if ((*line)[n - 1] != '\n')
		return -1;
	(*line)[--n] = 0;
	return n + 1;
}

static int read_head(shard *s, char *err)
{
	FILE *f = fopen(s->path, "r");
	if (!f)
		return rt_fail_file(err, s->path, "cannot read: %s", strerror(errno));
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = next_line(f, &line, &cap);
	int rc = n > 0 ? parse_head(s, line, (size_t)n - 1, err)
	               : rt_fail_file(err, s->path, n == 0 && !ferror(f) ? "empty: not a shard file"
	                                                                  : "not a shard file (no first line)");
	free(line);
	fclose(f);
	return rc;
}

/* ---- the records ---- */

static int bad(char *err, const shard *s, int64_t rec, const char *what, const char *key)
{
	return rt_fail_record(err, s->path, rec, "%s '%s'", what, key);
}

static int parse_bind(json_t *j, rt_bind *b)
{
	memset(b, 0, sizeof *b);
	if (json_is_null(j))
		return 0;
	int64_t v[4];
	static const char *const image[] = { "channel", "row", "col" }, *const seq[] = { "step", "unit" };
	b->layer = json_string_value(json_object_get(j, "layer"));
	if (!json_is_object(j) || !b->layer || get_int(j, "index", 0, INT32_MAX, &v[0]))
		return -1;
	b->index = (int32_t)v[0];
	size_t size = json_object_size(j);
	if (size == 5) {
		b->shape = RT_BIND_IMAGE;
		for (int k = 0; k < 3; k++)
			if (get_int(j, image[k], 0, INT32_MAX, &v[1 + k]))
				return -1;
	} else if (size == 4) {
		b->shape = RT_BIND_SEQUENCE;
		for (int k = 0; k < 2; k++)
			if (get_int(j, seq[k], 0, INT32_MAX, &v[1 + k]))
				return -1;
	} else if (size != 2) {
		return -1;
	}
	b->a = (int32_t)v[1];
	b->b = (int32_t)v[2];
	b->c = (int32_t)v[3];
	return 0;
}

/* One record of shard s (its rec-th, from 1; `want` the index it must
 * have) into r; o holds the strings r points to. */
static int parse_record(const shard *s, int64_t rec, json_t *o, int64_t want, rt_record *r, char *err)
{
	const rt_record_layout *L = &s->L;
	const rt_radii *radii = L->radii;
	int64_t v, begin = s->h.inputs * s->h.part / s->h.parts, end = s->h.inputs * (s->h.part + 1) / s->h.parts;
	int64_t classes = s->h.n_out > 1 ? s->h.n_out : 2;
	size_t fields = 3;   /* index, pred, pattern */
	memset(r, 0, sizeof *r);
	if (get_int(o, "index", 0, INT64_MAX, &r->index))
		return bad(err, s, rec, "no input index in", "index");
	if (r->index < begin || r->index >= end)
		return rt_fail_record(err, s->path, rec, "index %lld is not in shard %d/%d (indices %lld to %lld)",
		                      (long long)r->index, s->h.part, s->h.parts, (long long)begin, (long long)end - 1);
	if (r->index < want)
		return rt_fail_record(err, s->path, rec, "index %lld again", (long long)r->index);
	if (r->index > want)
		return rt_fail_record(err, s->path, rec, "index %lld, but %lld is missing", (long long)r->index,
		                      (long long)want);
	if (get_int(o, "pred", 0, classes - 1, &v))
		return bad(err, s, rec, "not a class of the model in", "pred");
	r->c.label = (int32_t)v;
	bool correct = false;
	if (L->labeled) {
		json_t *c = json_object_get(o, "correct");
		if (get_int(o, "label", 0, classes - 1, &v))
			return bad(err, s, rec, "not a class of the model in", "label");
		r->y = (int32_t)v;
		correct = r->y == r->c.label;
		if (!json_is_boolean(c) || json_is_true(c) != correct)
			return bad(err, s, rec, "not whether pred equals label:", "correct");
		fields += 2;
	}
	char key[32];
	for (int p = 0; p < RT_NNORMS; p++) {
		if (!(L->norms & RT_NORM_BIT(p)))
			continue;
		snprintf(key, sizeof key, "eps_%s", norm_name[p]);
		if (get_radius(o, key, &r->c.eps[p]))
			return bad(err, s, rec, "no radius in", key);
		snprintf(key, sizeof key, "bind_%s", norm_name[p]);
		if (parse_bind(json_object_get(o, key), &r->bind[p]))
			return bad(err, s, rec, "no binding neuron in", key);
		snprintf(key, sizeof key, "eps_pred_%s", norm_name[p]);
		if (get_radius(o, key, &r->c.eps_pred[p]))
			return bad(err, s, rec, "no radius in", key);
		fields += 3;
	}
	if (L->dirs) {
		if (get_radius(o, "eps_dir", &r->t))
			return bad(err, s, rec, "no radius in", "eps_dir");
		if (parse_bind(json_object_get(o, "bind_dir"), &r->tbind))
			return bad(err, s, rec, "no binding neuron in", "bind_dir");
		fields += 2;
	}
	if (radii->n) {
		/* the certifier's decision, made again: it must agree */
		const char *name = L->labeled ? "certified" : "robust";
		json_t *at = json_object_get(o, name);
		if (!json_is_object(at) || json_object_size(at) != (size_t)radii->n)
			return bad(err, s, rec, "one answer per radius of --eps needed in", name);
		for (int k = 0; k < radii->n; k++) {
			json_t *b = json_object_get(at, radii->key[k]);
			bool ok = rt_robust_at(&r->c, radii, k) && (!L->labeled || correct);
			if (!json_is_boolean(b) || json_is_true(b) != ok)
				return rt_fail_record(err, s->path, rec, "'%s' at %s is not what eps_pred_%s%s says", name,
				                      radii->key[k], norm_name[radii->norm], L->labeled ? " and the label" : "");
		}
		fields++;
	}
	if (json_object_get(o, "undecided")) {
		if (get_int(o, "undecided", 1, INT32_MAX, &v))
			return bad(err, s, rec, "not a count of neurons in", "undecided");
		r->c.undecided = (int32_t)v;
		fields++;
	}
	if (get_hex64(o, "pattern", &r->pattern))
		return bad(err, s, rec, "not 16 hex digits in", "pattern");
	if (json_object_size(o) != fields) {
		const char *k;
		json_t *x;
		json_object_foreach(o, k, x) {
			/* the first field that the checks above did not take */
			bool known = !strcmp(k, "index") || !strcmp(k, "pred") || !strcmp(k, "pattern") ||
			             !strcmp(k, "undecided") || (L->labeled && (!strcmp(k, "label") || !strcmp(k, "correct"))) ||
			             (radii->n && !strcmp(k, L->labeled ? "certified" : "robust")) ||
			             (L->dirs && (!strcmp(k, "eps_dir") || !strcmp(k, "bind_dir")));
			for (int p = 0; p < RT_NNORMS && !known; p++)
				if (L->norms & RT_NORM_BIT(p)) {
					const char *tail = strrchr(k, '_');
					known = tail && !strcmp(tail + 1, norm_name[p]) &&
					        (!strncmp(k, "eps_", 4) || !strncmp(k, "bind_", 5));
				}
			if (!known)
				return rt_fail_record(err, s->path, rec, "unknown field '%s' (not one of this run's: %s)", k,
				                      s->what);
		}
	}
	return 0;
}

static int add_batch(rt_cert_summary *sum, rt_batch *b, const rt_record_layout *L, const int32_t *y, char *err)
{
	int rc = rt_summary_add(sum, b, L->labeled ? y : NULL, L->radii) ? rt_fail(err, "llnc merge: out of memory") : 0;
	b->n = 0;
	return rc;
}

/* The records of every shard, in shard order: printed to out (when not
 * NULL) and added to sum (when not NULL). */
static int merge_records(shard *sh, int n, FILE *out, const rt_record_layout *L, rt_cert_summary *sum, char *err)
{
	rt_cert cert[BATCH];
	uint64_t pattern[BATCH];
	float t[BATCH];
	int32_t y[BATCH];
	rt_batch b = { .cert = cert, .pattern = pattern, .t = t, .dirs = L->dirs ? t : NULL };
	char *line = NULL;
	size_t cap = 0;
	int rc = 0;
	int64_t want = 0;
	for (int i = 0; i < n && !rc; i++) {
		shard *s = &sh[i];
		FILE *f = fopen(s->path, "r");
		if (!f) {
			rc = rt_fail_file(err, s->path, "cannot read: %s", strerror(errno));
			break;
		}
		int64_t end = s->h.inputs * (s->h.part + 1) / s->h.parts, rec = 0;
		ssize_t len = next_line(f, &line, &cap);   /* the first line, read before */
		while (!rc && len > 0 && (len = next_line(f, &line, &cap)) != 0) {
			rec++;
			json_error_t je;
			json_t *o = len < 0 ? NULL : json_loadb(line, (size_t)len - 1, JSON_REJECT_DUPLICATES, &je);
			rt_record r;
			if (len < 0)
				rc = rt_fail_record(err, s->path, rec, "cut short (no newline at its end)");
			else if (!json_is_object(o))
				rc = rt_fail_record(err, s->path, rec, "not a JSON object: %s", o ? "another value" : je.text);
			else
				rc = parse_record(s, rec, o, want, &r, err);
			if (!rc && out)
				rt_record_print(out, L, &r);
			if (!rc && sum) {
				cert[b.n] = r.c;
				pattern[b.n] = r.pattern;
				t[b.n] = r.t;
				y[b.n++] = r.y;
				if (b.n == BATCH)
					rc = add_batch(sum, &b, L, y, err);
			}
			want++;
			json_decref(o);
		}
		if (!rc && ferror(f))
			rc = rt_fail_file(err, s->path, "cannot read: %s", strerror(errno));
		if (!rc && want < end)
			rc = rt_fail_file(err, s->path, "holds %lld records, but shard %d/%d has %lld (indices %lld to %lld): "
			                  "the file was cut short", (long long)rec, s->h.part, s->h.parts,
			                  (long long)(end - s->h.inputs * s->h.part / s->h.parts),
			                  (long long)(s->h.inputs * s->h.part / s->h.parts), (long long)end - 1);
		fclose(f);
	}
	free(line);
	if (!rc && sum && b.n)
		rc = add_batch(sum, &b, L, y, err);
	return rc;
}

static int by_part(const void *a, const void *b)
{
	const shard *x = a, *y = b;
	return (x->h.part > y->h.part) - (x->h.part < y->h.part);
}

/* Every shard file of one run, each once: the first lines agree, and the
 * shards are 0 to N-1. */
static int check_shards(shard *sh, int n, const char *prog, char *err)
{
	for (int i = 0; i < n; i++)
		if (read_head(&sh[i], err))
			return -1;
	for (int i = 1; i < n; i++) {
		if (strcmp(sh[i].what, sh[0].what))
			return rt_fail_file(err, sh[i].path, "certified with %s, but %s with %s: not shards of one run",
			                    sh[i].what, sh[0].path, sh[0].what);
		if (strcmp(sh[i].who, sh[0].who))
			return rt_fail_file(err, sh[i].path, "from %s, but %s from %s: not shards of one run", sh[i].who,
			                    sh[0].path, sh[0].who);
		if (sh[i].h.parts != sh[0].h.parts)
			return rt_fail_file(err, sh[i].path, "shard %d/%d, but %s is shard %d/%d: not shards of one run",
			                    sh[i].h.part, sh[i].h.parts, sh[0].path, sh[0].h.part, sh[0].h.parts);
	}
	qsort(sh, (size_t)n, sizeof *sh, by_part);
	for (int i = 0; i < n; i++)   /* moved: the layout's radii are the shard's own */
		sh[i].L.radii = &sh[i].radii;
	for (int i = 1; i < n; i++)
		if (sh[i].h.part == sh[i - 1].h.part && !strcmp(sh[i].path, sh[i - 1].path))
			return rt_fail_file(err, sh[i].path, "given twice");
		else if (sh[i].h.part == sh[i - 1].h.part)
			return rt_fail_file(err, sh[i].path, "shard %d/%d again (%s is shard %d/%d too)", sh[i].h.part,
			                    sh[i].h.parts, sh[i - 1].path, sh[i].h.part, sh[i].h.parts);
	for (int i = 0; i < sh[0].h.parts; i++)
		if (i >= n || sh[i].h.part != i)
			return rt_fail(err, "%s: shard %d/%d is missing: %d of the run's %d shard files given", prog, i,
			               sh[0].h.parts, n, sh[0].h.parts);
	return 0;
}

/* stdout gets the records only once all of them are checked: a copy of
 * the temporary file they went to. */
static int copy_out(FILE *tmp, char *err)
{
	char buf[1 << 16];
	size_t k;
	rewind(tmp);
	while ((k = fread(buf, 1, sizeof buf, tmp)) > 0)
		if (fwrite(buf, 1, k, stdout) != k)
			break;
	if (ferror(tmp) || ferror(stdout))
		return rt_fail(err, "llnc merge: cannot write the output: %s", strerror(errno ? errno : EIO));
	return 0;
}

int rt_merge_main(int argc, char **argv)
{
	const char *prog = argc > 0 && argv[0] ? argv[0] : "llnc merge", *out_path = NULL;
	bool summary = false;
	int format = RT_FORMAT_JSONL, n = 0;
	enum { F_HELP, F_SUMMARY, F_FORMAT, F_OUT };
	static const rt_flag flags[] = {
		{ "help", false, F_HELP }, { "-h", false, F_HELP }, { "summary", false, F_SUMMARY },
		{ "format", true, F_FORMAT }, { "-o", true, F_OUT },
	};
	shard *sh = calloc((size_t)(argc > 1 ? argc : 1), sizeof *sh);
	rt_file *files = calloc((size_t)argc + 1, sizeof *files);
	if (!sh || !files) {
		free(sh);
		free(files);
		return rt_cmd_fail(prog, 1, "out of memory");
	}
	rt_flags f;
	rt_flags_init(&f, flags, (int)(sizeof flags / sizeof *flags), argc, argv);
	f.prog = prog;
	int rc = -1;   /* exit now with this status */
	for (int id; rc < 0 && (id = rt_flags_next(&f)) != RT_FLAG_END;) {
		switch (id) {
		case RT_FLAG_ERROR: rc = 2; break;
		case F_HELP: usage(stdout, prog); rc = 0; break;
		case F_SUMMARY: summary = true; break;
		case F_FORMAT:
			format = !strcmp(f.value, "jsonl") ? RT_FORMAT_JSONL : !strcmp(f.value, "csv") ? RT_FORMAT_CSV
			       : !strcmp(f.value, "table") ? RT_FORMAT_TABLE : -1;
			if (format < 0)
				rc = rt_cmd_fail(prog, 2, "--format takes jsonl, csv or table; got '%s'", f.value);
			break;
		case F_OUT: out_path = f.value; break;
		default:
			files[n] = (rt_file){ "SHARD", f.value, RT_FILE_IN, 0 };
			sh[n++].path = f.value;
		}
	}
	rt_flags_done(&f);
	char err[RT_ERRLEN];
	if (rc < 0 && !n) {
		usage(stderr, prog);
		rc = 2;
	}
	files[n] = (rt_file){ "-o", out_path, RT_FILE_OUT, 0 };
	int frc = rc < 0 ? rt_files_check(files, n + 1, err) : 0;
	if (frc)
		rc = rt_cmd_fail(prog, frc, "%s", err);
	free(files);
	if (rc >= 0)
		goto done;
	if (check_shards(sh, n, prog, err)) {
		fprintf(stderr, "%s\n", err);
		rc = 1;
		goto done;
	}
	rt_record_layout L = sh[0].L;
	L.format = format;
	rt_cert_summary sum = { 0 };
	rt_atomic atom = { .fd = -1 };
	FILE *out = NULL;
	err[0] = 0;
	if (out_path || !summary) {   /* the records, as the certifier's --summary and -o */
		if (out_path && rt_atomic_open(out_path, &atom, err) == 0) {
			if (!(out = fdopen(atom.fd, "w")))
				rt_fail_file(err, out_path, "cannot write: %s", strerror(errno));
			else
				atom.fd = -1;   /* fclose closes it */
		} else if (!out_path && !(out = tmpfile())) {
			rt_fail(err, "%s: cannot make a temporary file: %s", prog, strerror(errno));
		}
		if (out)
			rt_record_header(out, &L);
	}
	if (!err[0])
		merge_records(sh, n, out, &L, summary ? &sum : NULL, err);
	if (!err[0] && out && (ferror(out) || fflush(out) != 0))
		rt_fail_file(err, out_path ? out_path : "a temporary file", "cannot write: %s",
		             strerror(errno ? errno : EIO));
	if (!err[0] && out_path) {
		atom.fd = dup(fileno(out));
		fclose(out);
		out = NULL;
		rt_atomic_commit(&atom, err);
	} else if (!err[0] && out) {
		copy_out(out, err);
	}
	if (!err[0] && summary && rt_summary_print(stdout, &sum, L.radii, L.norms, L.dirs, format) != 0)
		rt_fail(err, "%s: out of memory", prog);
	if (!err[0] && (fflush(stdout) != 0 || ferror(stdout)))
		rt_fail(err, "%s: cannot write the output: %s", prog, strerror(errno ? errno : EIO));
	rc = err[0] != 0;
	if (rc)
		fprintf(stderr, "%s\n", err);
	if (out)
		fclose(out);
	if (atom.tmp)
		rt_atomic_abort(&atom);
	rt_summary_free(&sum);
done:
	free(sh);
	return rc;
}
