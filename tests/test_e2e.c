/* test_e2e.c: llnc and the certifiers it builds, run as programs.
 *
 * Each test writes .lln files and data into a temporary directory, runs
 * `llnc init` and `llnc build --certifier`, runs the certifier with a
 * minimal environment (PATH only) on random inputs in every output mode,
 * parses what it prints and compares every number with the same model
 * compiled in process (JIT, same weights file, rt_certify_batch).  It also
 * checks the certifier's dependencies (ldd), its error handling, llnc's
 * error exits, and, for examples/mnist_fc.lln and the convolutional
 * acceptance example tests/data/cnn.lln, an independent numpy computation
 * (tests/independent_check.py) when numpy is available.  The conv model
 * also runs through `llnc eval` and the certifier on .npy images of shape
 * [N, 1, 12, 12] and on IDX image files.  test_exact_soundness checks the
 * certifier's printed radii against the model as written in exact rational
 * arithmetic (tests/exact_check.py), for a dense, a residual conv and a
 * stacked rnn model, normalized, on decimal CSV inputs.  test_labels
 * gives the certifier true labels in every form (labeled CSV, --labels as
 * CSV, .npy, IDX) and checks pred, label, correct, certified at radii and
 * the summary in each format against the in-process numbers, and its exit
 * statuses; test_certify_command checks that `llnc certify` prints the
 * built certifier's bytes.
 */
#define _XOPEN_SOURCE 700   /* nftw */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "llnc.h"
#include "jit.h"
#include "tmpfiles.h"

extern char **environ;

#define LLNC LLN_BINARY_DIR "/llnc"

/* ---- small utilities ---- */

static char *path_in(const char *name)
{
	static char bufs[16][512];
	static int k;
	char *b = bufs[k++ % 16];
	snprintf(b, 512, "%s/%s", tmpdir, name);
	return b;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *s = malloc((size_t)n + 1);
	size_t got = fread(s, 1, (size_t)n, f);
	s[got] = 0;
	fclose(f);
	return s;
}

static void spit(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* Run argv with stdin/stdout/stderr redirected to files (NULL: /dev/null
 * for stdin, the files "stdout"/"stderr" in tmpdir otherwise).  minimal:
 * the environment is just PATH=/usr/bin:/bin, like `env -i`.  Returns the
 * exit status, or 128 + signal. */
static int run(const char *const argv[], bool minimal, const char *in)
{
	static char *const min_env[] = { "PATH=/usr/bin:/bin", NULL };
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, in ? in : "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, path_in("stdout"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawn_file_actions_addopen(&fa, 2, path_in("stderr"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	pid_t pid;
	int rc = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, minimal ? min_env : environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		fail_msg("cannot run %s: %s", argv[0], strerror(rc));
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *out_text(void) { return slurp(path_in("stdout")); }
static char *err_text(void) { return slurp(path_in("stderr")); }

/* Run and require exit 0, showing stderr otherwise. */
static void run_ok(const char *const argv[], bool minimal, const char *in)
{
	int rc = run(argv, minimal, in);
	if (rc != 0) {
		char *e = err_text();
		fprintf(stderr, "%s exited %d:\n%s", argv[0], rc, e ? e : "");
		free(e);
		fail_msg("%s %s failed", argv[0], argv[1] ? argv[1] : "");
	}
}

/* ---- a model compiled in process ---- */

typedef struct inproc {
	arena *a;
	cg_unit *u;
	const rt_model *m;
	float *P;
} inproc;

static void inproc_open(inproc *ip, const char *lln, const char *weights)
{
	ip->a = arena_new();
	/* llnc build's level: the certifier's numbers must match bit for bit */
	ip->m = jit_source(ip->a, source_load(ip->a, lln), CG_DEFAULT_OPT, &ip->u);
	char err[RT_ERRLEN];
	ip->P = aligned_alloc(64, (sizeof(float) * (size_t)ip->m->n_params + 63) & ~(size_t)63);
	if (rt_params_load(ip->m->tensors, ip->m->n_tensors, weights, ip->P, err) != 0)
		fail_msg("%s", err);
}

static void inproc_close(inproc *ip)
{
	free(ip->P);
	cg_unit_free(ip->u);
	arena_free(ip->a);
}

typedef struct results {
	int64_t n;
	rt_cert *cert;
	uint64_t *pattern;
	float *t;
	int32_t *tbind;
} results;

/* xlo: the rest of the inputs as given past their floats, as the readers
 * keep it (rt_data.xlo), or NULL. */
static void certify_inproc_given(const inproc *ip, const float *x, const float *xlo, int64_t n, const float *dirs,
                                 int64_t n_dirs, int norms, results *r)
{
	r->n = n;
	r->cert = calloc((size_t)n, sizeof(rt_cert));
	r->pattern = calloc((size_t)n, sizeof(uint64_t));
	r->t = calloc((size_t)n, sizeof(float));
	r->tbind = calloc((size_t)n, sizeof(int32_t));
	rt_batch b = { .x = x, .xlo = xlo, .n = n, .dirs = dirs, .n_dirs = n_dirs, .norms = norms, .threads = 2,
	               .cert = r->cert, .pattern = r->pattern, .t = r->t, .tbind = r->tbind };
	assert_int_equal(rt_certify_batch(ip->m, ip->P, &b), 0);
}

static void certify_inproc(const inproc *ip, const float *x, int64_t n, const float *dirs, int64_t n_dirs, int norms,
                           results *r)
{
	certify_inproc_given(ip, x, NULL, n, dirs, n_dirs, norms, r);
}

static void results_free(results *r)
{
	free(r->cert);
	free(r->pattern);
	free(r->t);
	free(r->tbind);
}

/* ---- comparing printed numbers ---- */

static long n_compared, n_exact;
static double max_rel;

static void cmp_num(double got, bool got_inf, float want, const char *what, int64_t i)
{
	if (isinf(want)) {
		if (!got_inf)
			fail_msg("record %lld: %s = %.9g, in process inf", (long long)i, what, got);
		return;
	}
	if (got_inf)
		fail_msg("record %lld: %s printed as inf/null, in process %.9g", (long long)i, what, want);
	double re = got == want ? 0 : fabs(got - want) / fabs(want);
	n_compared++;
	n_exact += (float)got == want;
	if ((float)got != want && getenv("LLN_TEST_VERBOSE"))
		printf("record %lld: %s = %.9g, in process %.9g\n", (long long)i, what, got, want);
	if (re > max_rel)
		max_rel = re;
	if (!(re <= 1e-6))
		fail_msg("record %lld: %s = %.9g, in process %.9g (rel err %.3g)", (long long)i, what, got, want, re);
}

/* The layer name and index of global neuron h, as the certifier prints them. */
static void cmp_bind(const rt_model *m, const char *layer, long index, int32_t h, const char *what, int64_t i)
{
	if (h < 0) {
		if (layer && *layer)
			fail_msg("record %lld: %s = %s[%ld], in process none", (long long)i, what, layer, index);
		return;
	}
	/* independent of rt_layer_of: walk the layer table */
	const char *want = NULL;
	long widx = -1;
	for (int l = 0; l < m->n_layers; l++)
		if (h >= m->layers[l].offset && h < m->layers[l].offset + m->layers[l].size) {
			want = m->layers[l].name;
			widx = h - m->layers[l].offset;
		}
	assert_non_null(want);
	if (!layer || strcmp(layer, want) != 0 || index != widx)
		fail_msg("record %lld: %s = %s[%ld], in process %s[%ld]", (long long)i, what, layer ? layer : "(none)",
		         index, want, widx);
}

/* JSON fields of one jsonl record (flat, plus {"layer":..,"index":..}). */
static const char *json_find(const char *line, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof pat, "\"%s\":", key);
	const char *p = strstr(line, pat);
	return p ? p + strlen(pat) : NULL;
}

static bool json_number(const char *line, const char *key, double *v, bool *is_null)
{
	const char *p = json_find(line, key);
	if (!p)
		return false;
	*is_null = strncmp(p, "null", 4) == 0;
	if (!*is_null) {
		char *end;
		*v = strtod(p, &end);
		assert_true(end > p);
	}
	return true;
}

static bool json_bind(const char *line, const char *key, char *layer, size_t len, long *index)
{
	const char *p = json_find(line, key);
	if (!p)
		return false;
	layer[0] = 0;
	*index = -1;
	if (strncmp(p, "null", 4) == 0)
		return true;
	const char *l = strstr(p, "\"layer\":\"");
	assert_non_null(l);
	l += 9;
	const char *e = strchr(l, '"');
	snprintf(layer, len, "%.*s", (int)(e - l), l);
	const char *ix = strstr(p, "\"index\":");
	assert_non_null(ix);
	*index = strtol(ix + 8, NULL, 10);
	return true;
}

static const char *norm_names[3] = { "l1", "l2", "linf" };

/* Compare jsonl output with in-process results: every field that is
 * present; `norms` and `dirs` say which must be present. */
static void check_jsonl(const char *text, const rt_model *m, const results *r, int norms, bool dirs)
{
	const char *line = text;
	int64_t i = 0;
	while (*line) {
		const char *nl = strchr(line, '\n');
		assert_non_null(nl);
		char *rec = strndup(line, (size_t)(nl - line));
		assert_true(i < r->n);
		assert_true(rec[0] == '{' && rec[strlen(rec) - 1] == '}');
		double v;
		bool isnull;
		assert_true(json_number(rec, "index", &v, &isnull));
		assert_true(v == (double)i);
		assert_true(json_number(rec, "pred", &v, &isnull));
		if ((int)v != r->cert[i].label)
			fail_msg("record %lld: pred %d, in process %d", (long long)i, (int)v, r->cert[i].label);
		for (int p = 0; p < 3; p++) {
			char k[32], layer[64];
			long idx;
			snprintf(k, sizeof k, "eps_%s", norm_names[p]);
			bool has = json_number(rec, k, &v, &isnull);
			assert_int_equal(has, (norms >> p) & 1);
			if (!has)
				continue;
			cmp_num(v, isnull, r->cert[i].eps[p], k, i);
			snprintf(k, sizeof k, "eps_pred_%s", norm_names[p]);
			assert_true(json_number(rec, k, &v, &isnull));
			cmp_num(v, isnull, r->cert[i].eps_pred[p], k, i);
			snprintf(k, sizeof k, "bind_%s", norm_names[p]);
			assert_true(json_bind(rec, k, layer, sizeof layer, &idx));
			cmp_bind(m, layer, idx, r->cert[i].bind[p], k, i);
		}
		bool has = json_number(rec, "eps_dir", &v, &isnull);
		assert_int_equal(has, dirs);
		if (has) {
			char layer[64];
			long idx;
			cmp_num(v, isnull, r->t[i], "eps_dir", i);
			assert_true(json_bind(rec, "bind_dir", layer, sizeof layer, &idx));
			cmp_bind(m, layer, idx, r->tbind[i], "bind_dir", i);
		}
		const char *pp = json_find(rec, "pattern");
		assert_non_null(pp);
		char want[32];
		snprintf(want, sizeof want, "\"%016llx\"", (unsigned long long)r->pattern[i]);
		if (strncmp(pp, want, strlen(want)) != 0)
			fail_msg("record %lld: pattern %.18s, in process %s", (long long)i, pp, want);
		free(rec);
		i++;
		line = nl + 1;
	}
	assert_int_equal(i, r->n);
}

/* Split a CSV line in place. */
static int split_csv(char *s, char **f, int max)
{
	int n = 0;
	f[n++] = s;
	for (char *p = s; *p; p++)
		if (*p == ',') {
			*p = 0;
			assert_true(n < max);
			f[n++] = p + 1;
		}
	return n;
}

static void check_csv(const char *text, const rt_model *m, const results *r, int norms, bool dirs)
{
	char *copy = strdup(text);
	char *save = NULL;
	char *line = strtok_r(copy, "\n", &save);
	/* header */
	char want[512] = "index,pred";
	for (int p = 0; p < 3; p++)
		if ((norms >> p) & 1) {
			const char *n = norm_names[p];
			size_t k = strlen(want);
			snprintf(want + k, sizeof want - k, ",eps_%s,bind_%s_layer,bind_%s_index,eps_pred_%s", n, n, n, n);
		}
	if (dirs)
		strcat(want, ",eps_dir,bind_dir_layer,bind_dir_index");
	strcat(want, ",pattern");
	assert_non_null(line);
	assert_string_equal(line, want);
	int64_t i = 0;
	while ((line = strtok_r(NULL, "\n", &save))) {
		char *f[64];
		int nf = split_csv(line, f, 64);
		int expect = 3 + 4 * __builtin_popcount((unsigned)norms) + (dirs ? 3 : 0);
		assert_int_equal(nf, expect);
		assert_true(i < r->n);
		assert_int_equal(atoll(f[0]), i);
		assert_int_equal(atoi(f[1]), r->cert[i].label);
		int k = 2;
		for (int p = 0; p < 3; p++) {
			if (!((norms >> p) & 1))
				continue;
			cmp_num(strtod(f[k], NULL), strcmp(f[k], "inf") == 0, r->cert[i].eps[p], "eps", i);
			cmp_bind(m, f[k + 1], *f[k + 2] ? atol(f[k + 2]) : -1, r->cert[i].bind[p], "bind", i);
			cmp_num(strtod(f[k + 3], NULL), strcmp(f[k + 3], "inf") == 0, r->cert[i].eps_pred[p], "eps_pred", i);
			k += 4;
		}
		if (dirs) {
			cmp_num(strtod(f[k], NULL), strcmp(f[k], "inf") == 0, r->t[i], "eps_dir", i);
			cmp_bind(m, f[k + 1], *f[k + 2] ? atol(f[k + 2]) : -1, r->tbind[i], "bind_dir", i);
			k += 3;
		}
		char hex[32];
		snprintf(hex, sizeof hex, "%016llx", (unsigned long long)r->pattern[i]);
		assert_string_equal(f[k], hex);
		i++;
	}
	assert_int_equal(i, r->n);
	free(copy);
}

/* numpy.percentile (linear) of float values, written independently. */
static int cmpf(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}
static double percentile(const float *v, int64_t n, double q)
{
	float *s = malloc(sizeof(float) * (size_t)n);
	memcpy(s, v, sizeof(float) * (size_t)n);
	qsort(s, (size_t)n, sizeof(float), cmpf);
	double h = (double)(n - 1) * q / 100.0;
	int64_t lo = (int64_t)floor(h), hi = lo + 1 < n ? lo + 1 : lo;
	double t = h - (double)lo;
	double r = isinf(s[hi]) && t == 0 ? s[lo] : (isinf(s[lo]) || isinf(s[hi])) ? s[hi] : s[lo] + t * (s[hi] - s[lo]);
	free(s);
	return r;
}

static void check_summary(const char *text, const results *r, int norms, bool dirs)
{
	long long n, distinct;
	assert_int_equal(sscanf(text, "%lld inputs, %lld distinct activation patterns", &n, &distinct), 2);
	assert_int_equal(n, r->n);
	/* distinct patterns, counted here */
	long long d = 0;
	for (int64_t i = 0; i < r->n; i++) {
		bool seen = false;
		for (int64_t j = 0; j < i && !seen; j++)
			seen = r->pattern[j] == r->pattern[i];
		d += !seen;
	}
	assert_int_equal(distinct, d);
	float *v = malloc(sizeof(float) * (size_t)r->n);
	int rows = 0;
	for (int p = 0; p < 3; p++)
		for (int which = 0; which < 2; which++) {
			char name[32];
			snprintf(name, sizeof name, "%s_%s", which ? "eps_pred" : "eps", norm_names[p]);
			/* the row starts a line with the name followed by spaces */
			const char *row = NULL;
			for (const char *s = text; (s = strstr(s, name)); s++)
				if ((s == text || s[-1] == '\n') && s[strlen(name)] == ' ') {
					row = s;
					break;
				}
			assert_int_equal(row != NULL, (norms >> p) & 1);
			if (!row)
				continue;
			rows++;
			for (int64_t i = 0; i < r->n; i++)
				v[i] = which ? r->cert[i].eps_pred[p] : r->cert[i].eps[p];
			const char *s = row + strlen(name);
			for (int q = 25; q <= 100; q += 25) {
				char *end;
				double got = strtod(s, &end);
				assert_true(end > s);
				s = end;
				double want = percentile(v, r->n, q);
				if (isinf(want))
					assert_true(isinf(got));
				else if (fabs(got - want) > 1e-5 * fabs(want))
					fail_msg("summary %s P%d = %.9g, in process %.9g", name, q, got, want);
			}
		}
	assert_true(rows > 0);
	const char *dl = strstr(text, "\neps_dir ");
	assert_int_equal(dl != NULL, dirs);
	if (dl) {
		const char *s = dl + 9;
		for (int q = 25; q <= 100; q += 25) {
			char *end;
			double got = strtod(s, &end);
			s = end;
			double want = percentile(r->t, r->n, q);
			if (!isinf(want) && fabs(got - want) > 1e-5 * fabs(want))
				fail_msg("summary eps_dir P%d = %.9g, in process %.9g", q, got, want);
		}
	}
	free(v);
}

/* ---- data files ---- */

static uint64_t rs = 0x1234567;
static double urand(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return (double)(rs >> 11) * 0x1.0p-53;
}

static void write_csv(const char *path, const float *x, int64_t n, int dim)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	for (int64_t i = 0; i < n; i++)
		for (int d = 0; d < dim; d++)
			fprintf(f, "%.70g%c", x[i * dim + d], d + 1 < dim ? ',' : '\n');
	fclose(f);
}

static void write_npy_as(const char *path, const char *descr, const void *data, size_t size, const char *shape)
{
	FILE *f = npy_open(path, descr, shape);
	fwrite(data, 1, size, f);
	fclose(f);
}

static void write_npy(const char *path, const float *x, const char *shape, size_t count)
{
	write_npy_as(path, "<f4", x, sizeof(float) * count, shape);
}

/* ---- fixture: a custom model, its weights and its certifier ---- */

static const char custom_lln[] =
	"# a small model for the end-to-end tests\n"
	"model t {\n"
	"  input x[5] normalize(0.2, 0.5);\n"
	"  fc1 = relu(dense(x, 7));\n"
	"  fc2 = relu(dense(fc1, 6));\n"
	"  fc3 = dense(fc2, 3);\n"
	"  output fc3;\n"
	"}\n";

static int rmone(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void build_certifier(const char *lln, const char *w, const char *bin, const char *seed)
{
	const char *init[] = { LLNC, "init", lln, "--seed", seed, "--init", "he", "-o", w, NULL };
	run_ok(init, false, NULL);
	const char *build[] = { LLNC, "build", lln, "--certifier", "--weights", w, "-o", bin, NULL };
	run_ok(build, false, NULL);
	assert_true(access(bin, X_OK) == 0);
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/lln-e2e-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	spit(path_in("t.lln"), custom_lln);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (!getenv("LLN_KEEP_TMP"))
		nftw(tmpdir, rmone, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* ---- tests ---- */

static void test_custom_model(void **state)
{
	(void)state;
	char lln[512], w[512], bin[512];
	snprintf(lln, sizeof lln, "%s", path_in("t.lln"));
	snprintf(w, sizeof w, "%s", path_in("t.safetensors"));
	snprintf(bin, sizeof bin, "%s", path_in("t-cert"));
	build_certifier(lln, w, bin, "7");

	/* the weights file holds llnc init's deterministic He weights */
	inproc ip;
	inproc_open(&ip, lln, w);
	const rt_model *m = ip.m;
	assert_int_equal(m->n_in, 5);
	float *P2 = malloc(sizeof(float) * (size_t)m->n_params);
	rt_init_params(m->tensors, m->n_tensors, 7, RT_INIT_HE, P2);
	assert_memory_equal(P2, ip.P, sizeof(float) * (size_t)m->n_params);
	/* without --init: PyTorch's scheme, and the metadata names it */
	char wp[512], meta[32], err[RT_ERRLEN];
	snprintf(wp, sizeof wp, "%s", path_in("t-pytorch.safetensors"));
	const char *initp[] = { LLNC, "init", lln, "--seed", "7", "-o", wp, NULL };
	run_ok(initp, false, NULL);
	float *P3 = malloc(sizeof(float) * (size_t)m->n_params);
	assert_int_equal(rt_params_load(m->tensors, m->n_tensors, wp, P3, err), 0);
	rt_init_params(m->tensors, m->n_tensors, 7, RT_INIT_PYTORCH, P2);
	assert_memory_equal(P2, P3, sizeof(float) * (size_t)m->n_params);
	assert_int_equal(rt_st_metadata(wp, "init", meta, sizeof meta, err), 0);
	assert_string_equal(meta, "pytorch");
	free(P3);
	free(P2);

	const int n = 60, D = 5;
	float x[60 * 5], dirs[60 * 5];
	for (int i = 0; i < n * D; i++) {
		x[i] = (float)(0.2 + 0.5 * (4 * urand() - 2));
		dirs[i] = (float)(2 * urand() - 1);
	}
	x[7] = 0;   /* exact zeros and integers print differently */
	x[8] = 1;
	char X[512], XN[512], DIRS[512], DIR1[512];
	snprintf(X, sizeof X, "%s", path_in("x.csv"));
	snprintf(XN, sizeof XN, "%s", path_in("x.npy"));
	snprintf(DIRS, sizeof DIRS, "%s", path_in("dirs.csv"));
	snprintf(DIR1, sizeof DIR1, "%s", path_in("dir1.csv"));
	write_csv(X, x, n, D);
	write_npy(XN, x, "(60, 5)", (size_t)n * D);
	write_csv(DIRS, dirs, n, D);
	write_csv(DIR1, dirs, 1, D);

	/* per norm set: eps_2 alone may take another algorithm than all norms */
	results r, r1, r2, r13;
	certify_inproc(&ip, x, n, dirs, n, RT_ALL_NORMS, &r);
	certify_inproc(&ip, x, n, dirs, 1, RT_NORM_BIT(RT_L2), &r1);
	certify_inproc(&ip, x, n, dirs, n, RT_NORM_BIT(RT_L2), &r2);
	certify_inproc(&ip, x, n, dirs, n, RT_NORM_BIT(RT_L1) | RT_NORM_BIT(RT_LINF), &r13);

	/* jsonl on stdout, default norms */
	const char *a1[] = { bin, X, NULL };
	run_ok(a1, true, NULL);
	char *jsonl = out_text();
	check_jsonl(jsonl, m, &r, RT_ALL_NORMS, false);

	/* explicit --format jsonl, per-input directions */
	const char *a2[] = { bin, "--format", "jsonl", "--direction", DIRS, X, NULL };
	run_ok(a2, true, NULL);
	char *s = out_text();
	check_jsonl(s, m, &r, RT_ALL_NORMS, true);
	free(s);

	/* csv to a file, one norm, one direction for all inputs */
	const char *a3[] = { bin, "--format", "csv", "--norms", "2", "--direction", DIR1, "-o", path_in("out.csv"), X, NULL };
	run_ok(a3, true, NULL);
	s = out_text();
	assert_string_equal(s, "");   /* nothing on stdout with -o */
	free(s);
	s = slurp(path_in("out.csv"));
	assert_non_null(s);
	check_csv(s, m, &r1, RT_NORM_BIT(RT_L2), true);
	free(s);

	/* csv, two norms, to stdout */
	const char *a3b[] = { bin, "--format", "csv", "--norms", "inf,1", X, NULL };
	run_ok(a3b, true, NULL);
	s = out_text();
	check_csv(s, m, &r13, RT_NORM_BIT(RT_L1) | RT_NORM_BIT(RT_LINF), false);
	free(s);

	/* jsonl to a file, --norms 2 only */
	const char *a3c[] = { bin, "--norms", "2", "-o", path_in("out.jsonl"), X, NULL };
	run_ok(a3c, true, NULL);
	s = slurp(path_in("out.jsonl"));
	check_jsonl(s, m, &r2, RT_NORM_BIT(RT_L2), false);
	/* and the l2-only numbers agree with the all-norms ones to rounding */
	for (int i = 0; i < n; i++) {
		assert_true(fabs(r2.cert[i].eps[RT_L2] - r.cert[i].eps[RT_L2]) <= 1e-5 * r.cert[i].eps[RT_L2]);
		assert_true(fabs(r2.cert[i].eps_pred[RT_L2] - r.cert[i].eps_pred[RT_L2]) <= 1e-5 * r.cert[i].eps_pred[RT_L2]);
		assert_int_equal(r2.cert[i].label, r.cert[i].label);
	}
	free(s);

	/* summary */
	const char *a4[] = { bin, "--summary", "--format", "table", "--direction", DIRS, X, NULL };
	run_ok(a4, true, NULL);
	s = out_text();
	check_summary(s, &r, RT_ALL_NORMS, true);
	free(s);
	const char *a4b[] = { bin, "--summary", "--format", "table", "--norms", "1", X, NULL };
	run_ok(a4b, true, NULL);
	s = out_text();
	results r1only;
	certify_inproc(&ip, x, n, NULL, 0, RT_NORM_BIT(RT_L1), &r1only);
	check_summary(s, &r1only, RT_NORM_BIT(RT_L1), false);
	results_free(&r1only);
	free(s);

	/* the same bytes with 1 or 3 threads, from stdin, and from .npy */
	const char *a5[] = { bin, "--threads", "1", X, NULL };
	run_ok(a5, true, NULL);
	s = out_text();
	assert_string_equal(s, jsonl);
	free(s);
	const char *a6[] = { bin, "--threads", "3", X, NULL };
	run_ok(a6, true, NULL);
	s = out_text();
	assert_string_equal(s, jsonl);
	free(s);
	const char *a7[] = { bin, "-", NULL };
	run_ok(a7, true, X);
	s = out_text();
	assert_string_equal(s, jsonl);
	free(s);
	const char *a8[] = { bin, XN, NULL };
	run_ok(a8, true, NULL);
	s = out_text();
	assert_string_equal(s, jsonl);
	free(s);

	printf("[ custom ] %ld numbers compared, %ld bit-identical, max rel err %.3g\n", n_compared, n_exact, max_rel);
	free(jsonl);
	/* same CPU, same kernels: the certifier's numbers are the in-process bits */
	assert_int_equal(n_exact, n_compared);
	results_free(&r);
	results_free(&r1);
	results_free(&r2);
	results_free(&r13);
	inproc_close(&ip);
}

/* ldd lists only the C library, libm, libpthread, the vDSO and the loader. */
static void test_ldd(void **state)
{
	(void)state;
	char bin[512];
	snprintf(bin, sizeof bin, "%s", path_in("t-cert"));
	if (!exists(bin))
		build_certifier(path_in("t.lln"), path_in("t.safetensors"), bin, "7");
	const char *a[] = { "/usr/bin/ldd", bin, NULL };
	assert_int_equal(run(a, false, NULL), 0);
	char *s = out_text();
	int libs = 0;
	bool libc = false;
	char *save = NULL;
	for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		while (*line == ' ' || *line == '\t')
			line++;
		char name[256];
		assert_int_equal(sscanf(line, "%255s", name), 1);
		const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
		bool ok = !strncmp(base, "linux-vdso.so", 13) || !strncmp(base, "libc.so", 7) ||
		          !strncmp(base, "libm.so", 7) || !strncmp(base, "libpthread.so", 13) ||
		          !strncmp(base, "ld-linux", 8);
		if (!ok)
			fail_msg("the certifier depends on %s (ldd: %s)", base, line);
		libc |= !strncmp(base, "libc.so", 7);
		libs++;
	}
	assert_true(libc);
	assert_true(libs >= 2);
	free(s);
}

static void expect_error(const char *const argv[], int status, const char *in, const char *must1, const char *must2)
{
	int rc = run(argv, true, in);
	char *e = err_text();
	if (status >= 0 ? rc != status : rc == 0)
		fail_msg("%s: exit %d, expected %d; stderr: %s", argv[1], rc, status, e);
	if (must1 && !strstr(e, must1))
		fail_msg("stderr lacks '%s': %s", must1, e);
	if (must2 && !strstr(e, must2))
		fail_msg("stderr lacks '%s': %s", must2, e);
	printf("[ error ] exit %d: %s", rc, e);
	free(e);
}

static void test_certifier_errors(void **state)
{
	(void)state;
	char bin[512];
	snprintf(bin, sizeof bin, "%s", path_in("t-cert"));
	if (!exists(bin))
		build_certifier(path_in("t.lln"), path_in("t.safetensors"), bin, "7");

	/* a short row */
	char bad[512];
	snprintf(bad, sizeof bad, "%s", path_in("short.csv"));
	spit(bad, "0.1,0.2,0.3,0.4,0.5\n1,2,3,4,5\n0.1,0.2,0.3,0.4\n1,1,1,1,1\n");
	const char *a1[] = { bin, bad, NULL };
	expect_error(a1, 1, NULL, bad, "record 3: expected 5 values, found 4");
	/* a long row */
	spit(bad, "0.1,0.2,0.3,0.4,0.5,0.6\n");
	expect_error(a1, 1, NULL, bad, "record 1: expected 5 values, or a label and 5 values; found 6 whose first, '0.1', is not a label");
	/* NaN and infinity */
	char nanf[512];
	snprintf(nanf, sizeof nanf, "%s", path_in("nan.csv"));
	spit(nanf, "0.1,0.2,0.3,0.4,0.5\n0.1,nan,0.3,0.4,0.5\n");
	const char *a2[] = { bin, nanf, NULL };
	expect_error(a2, 1, NULL, nanf, "record 2");
	spit(nanf, "0.1,0.2,0.3,0.4,0.5\n0.1,0.2,0.3,0.4,0.5\n1,2,inf,4,5\n");
	expect_error(a2, 1, NULL, nanf, "record 3");
	/* a .npy of the wrong width */
	float z[8] = { 0 };
	write_npy(path_in("wide.npy"), z, "(2, 4)", 8);
	const char *a2b[] = { bin, path_in("wide.npy"), NULL };
	expect_error(a2b, 1, NULL, "wide.npy", NULL);
	/* a missing file */
	const char *a3[] = { bin, path_in("no-such-file.csv"), NULL };
	expect_error(a3, 1, NULL, "no-such-file.csv", NULL);
	/* -o with bad input leaves no output file (nor temporaries) */
	const char *a4[] = { bin, "-o", path_in("o.jsonl"), bad, NULL };
	spit(bad, "0.1,0.2,0.3,0.4,0.5\n0.1,0.2,0.3,0.4\n");
	expect_error(a4, 1, NULL, "record 2", NULL);
	assert_false(exists(path_in("o.jsonl")));
	DIR *dir = opendir(tmpdir);
	for (struct dirent *de; (de = readdir(dir));)
		if (!strncmp(de->d_name, "o.jsonl", 7))
			fail_msg("left %s behind", de->d_name);
	closedir(dir);
	/* a bad direction file is an error too, and also writes nothing */
	char X[512];
	snprintf(X, sizeof X, "%s", path_in("ok.csv"));
	spit(X, "0.1,0.2,0.3,0.4,0.5\n1,2,3,4,5\n0,0,0,0,0\n");
	const char *a4b[] = { bin, "--direction", bad, "-o", path_in("o.jsonl"), X, NULL };
	expect_error(a4b, 1, NULL, "record 2", NULL);
	assert_false(exists(path_in("o.jsonl")));
	spit(bad, "1,0,0,0,0\n0,1,0,0,0\n");   /* 2 directions for 3 inputs */
	expect_error(a4b, 1, NULL, "short.csv", NULL);
	assert_false(exists(path_in("o.jsonl")));
	/* usage errors exit 2 */
	const char *a5[] = { bin, "--frobnicate", X, NULL };
	expect_error(a5, 2, NULL, "--frobnicate", NULL);
	const char *a5b[] = { bin, "--norms", "3", X, NULL };
	expect_error(a5b, 2, NULL, "--norms", NULL);
	const char *a5c[] = { bin, "--format", "xml", X, NULL };
	expect_error(a5c, 2, NULL, "--format", NULL);
	const char *a5d[] = { bin, "--threads", "1025", X, NULL };
	expect_error(a5d, 2, NULL, "--threads", NULL);
	const char *a5e[] = { bin, NULL };
	expect_error(a5e, 2, NULL, NULL, NULL);
	/* --help */
	const char *a6[] = { bin, "--help", NULL };
	assert_int_equal(run(a6, true, NULL), 0);
	char *s = out_text();
	assert_non_null(strstr(s, "--norms"));
	assert_non_null(strstr(s, "--direction"));
	free(s);
}

static void test_llnc_errors(void **state)
{
	(void)state;
	/* weights of another shape: fc1 has 8 units instead of 7 */
	char other[512], w[512];
	snprintf(other, sizeof other, "%s", path_in("other.lln"));
	snprintf(w, sizeof w, "%s", path_in("other.safetensors"));
	spit(other, "model t {\n  input x[5] normalize(0.2, 0.5);\n  fc1 = relu(dense(x, 8));\n"
	            "  fc2 = relu(dense(fc1, 6));\n  fc3 = dense(fc2, 3);\n  output fc3;\n}\n");
	const char *init[] = { LLNC, "init", other, "--seed", "1", "-o", w, NULL };
	run_ok(init, false, NULL);
	const char *b[] = { LLNC, "build", path_in("t.lln"), "--certifier", "--weights", w, "-o", path_in("bad-cert"), NULL };
	int rc = run(b, false, NULL);
	char *e = err_text();
	printf("[ llnc ] wrong shape: exit %d: %s", rc, e);
	assert_int_equal(rc, 1);
	assert_non_null(strstr(e, "fc1.weight"));
	free(e);
	assert_false(exists(path_in("bad-cert")));

	/* a missing weights file */
	const char *b2[] = { LLNC, "build", path_in("t.lln"), "--certifier", "--weights", path_in("none.safetensors"),
		             "-o", path_in("bad-cert"), NULL };
	assert_int_equal(run(b2, false, NULL), 1);
	e = err_text();
	assert_non_null(strstr(e, "none.safetensors"));
	free(e);

	/* check on a bad file: exit 1 with file:line:col */
	char bad[512];
	snprintf(bad, sizeof bad, "%s", path_in("bad.lln"));
	spit(bad, "model t {\n  input x[5];\n  fc1 = relu(dense(y, 7));\n  output fc1;\n}\n");
	const char *c[] = { LLNC, "check", bad, NULL };
	rc = run(c, false, NULL);
	e = err_text();
	printf("[ llnc ] check: exit %d: %s", rc, e);
	assert_int_equal(rc, 1);
	assert_non_null(strstr(e, "bad.lln:3:"));
	free(e);
	spit(bad, "model t { input x[5] fc1 = ; }\n");
	assert_int_equal(run(c, false, NULL), 1);
	/* check on a good file */
	const char *c2[] = { LLNC, "check", path_in("t.lln"), NULL };
	assert_int_equal(run(c2, false, NULL), 0);

	/* unknown command, unknown option */
	const char *u[] = { LLNC, "frobnicate", path_in("t.lln"), NULL };
	assert_int_equal(run(u, false, NULL), 2);
	const char *u2[] = { LLNC, "check", path_in("t.lln"), "--frobnicate", NULL };
	assert_int_equal(run(u2, false, NULL), 2);
}

/* examples/toy2d.lln: a binary model with one logit. */
static void test_toy2d(void **state)
{
	(void)state;
	char lln[512], w[512], bin[512];
	snprintf(lln, sizeof lln, "%s", LLN_SOURCE_DIR "/examples/toy2d.lln");
	snprintf(w, sizeof w, "%s", path_in("toy2d.safetensors"));
	snprintf(bin, sizeof bin, "%s", path_in("toy2d-cert"));
	build_certifier(lln, w, bin, "3");
	inproc ip;
	inproc_open(&ip, lln, w);
	assert_int_equal(ip.m->n_in, 2);
	assert_int_equal(ip.m->n_out, 1);
	const int n = 50;
	float x[100], d[2] = { 0.6f, -0.8f };
	for (int i = 0; i < 2 * n; i++)
		x[i] = (float)(6 * urand() - 3);
	write_csv(path_in("toy.csv"), x, n, 2);
	write_csv(path_in("toyd.csv"), d, 1, 2);
	results r;
	certify_inproc(&ip, x, n, d, 1, RT_ALL_NORMS, &r);
	int ones = 0;
	for (int i = 0; i < n; i++)
		ones += r.cert[i].label;
	const char *a[] = { bin, "--direction", path_in("toyd.csv"), path_in("toy.csv"), NULL };
	run_ok(a, true, NULL);
	char *s = out_text();
	check_jsonl(s, ip.m, &r, RT_ALL_NORMS, true);
	free(s);
	printf("[ toy2d ] %d of %d labelled 1\n", ones, n);
	results_free(&r);
	inproc_close(&ip);
}

static const char *find_python(void)
{
	static const char *cands[] = { "python3", "/usr/bin/python3" };
	for (size_t i = 0; i < 2; i++) {
		char cmd[256];
		snprintf(cmd, sizeof cmd, "%s -c 'import numpy' >/dev/null 2>&1", cands[i]);
		if (system(cmd) == 0)
			return cands[i];
	}
	return NULL;
}

/* examples/mnist_fc.lln: 784-300-300-300-300-10 on random images. */
static void test_mnist(void **state)
{
	(void)state;
	char lln[512], w[512], bin[512], X[512], out[512];
	snprintf(lln, sizeof lln, "%s", LLN_SOURCE_DIR "/examples/mnist_fc.lln");
	snprintf(w, sizeof w, "%s", path_in("mnist.safetensors"));
	snprintf(bin, sizeof bin, "%s", path_in("mnist-cert"));
	snprintf(X, sizeof X, "%s", path_in("images.npy"));
	snprintf(out, sizeof out, "%s", path_in("mnist.jsonl"));
	build_certifier(lln, w, bin, "7");
	inproc ip;
	inproc_open(&ip, lln, w);
	assert_int_equal(ip.m->n_in, 784);
	assert_int_equal(ip.m->n_hidden, 1200);
	const int n = 20;
	float *x = malloc(sizeof(float) * 784 * n);
	for (int i = 0; i < 784 * n; i++)
		x[i] = (float)urand();
	write_npy(X, x, "(20, 28, 28)", 784 * (size_t)n);
	results r;
	certify_inproc(&ip, x, n, NULL, 0, RT_ALL_NORMS, &r);
	const char *a[] = { bin, "-o", out, X, NULL };
	run_ok(a, true, NULL);
	char *s = slurp(out);
	assert_non_null(s);
	long before = n_compared;
	check_jsonl(s, ip.m, &r, RT_ALL_NORMS, false);
	free(s);
	printf("[ mnist ] %ld numbers compared; max rel err so far %.3g\n", n_compared - before, max_rel);

	const char *py = find_python();
	if (!py) {
		printf("[ mnist ] SKIPPED the independent numpy check: no python3 with numpy\n");
	} else {
		char cmd[4096];
		snprintf(cmd, sizeof cmd,
		         "%s %s/tests/independent_check.py --weights %s --layers fc1,fc2,fc3,fc4,fc5 "
		         "--mean 0.1307 --std 0.3081 --input %s --certified %s --rtol 1e-4",
		         py, LLN_SOURCE_DIR, w, X, out);
		fflush(stdout);
		int rc = system(cmd);
		assert_int_equal(rc, 0);
		/* and the check can fail: a corrupted record is caught */
		char *t = slurp(out);
		char *p = strstr(t, "\"eps_l2\":");
		assert_non_null(p);
		p += 9;
		char *end;
		double v = strtod(p, &end);
		char buf[64];
		int k = snprintf(buf, sizeof buf, "%.9g", v * 1.01);
		char *u = malloc(strlen(t) + 64);
		snprintf(u, strlen(t) + 64, "%.*s%.*s%s", (int)(p - t), t, k, buf, end);
		spit(path_in("mnist-bad.jsonl"), u);
		snprintf(cmd, sizeof cmd,
		         "%s %s/tests/independent_check.py --weights %s --layers fc1,fc2,fc3,fc4,fc5 "
		         "--mean 0.1307 --std 0.3081 --input %s --certified %s > /dev/null",
		         py, LLN_SOURCE_DIR, w, X, path_in("mnist-bad.jsonl"));
		rc = system(cmd);
		assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
		free(t);
		free(u);
	}
	results_free(&r);
	free(x);
	inproc_close(&ip);
}

/* IDX files written by hand: unsigned-byte images N x H x W, labels N. */
static void write_idx(const char *path, const unsigned char *b, int n, int h, int w)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	int nd = h ? 3 : 1;
	unsigned char magic[4] = { 0, 0, 0x08, (unsigned char)nd };
	fwrite(magic, 1, 4, f);
	int dims[3] = { n, h, w };
	for (int i = 0; i < nd; i++) {
		unsigned char be[4] = { (unsigned char)(dims[i] >> 24), (unsigned char)(dims[i] >> 16),
			                (unsigned char)(dims[i] >> 8), (unsigned char)dims[i] };
		fwrite(be, 1, 4, f);
	}
	fwrite(b, 1, (size_t)n * (h ? (size_t)h * w : 1), f);
	fclose(f);
}

/* A number after "key": in a one-line JSON object. */
static double json_at(const char *text, const char *key, int k)
{
	const char *p = json_find(text, key);
	if (!p)
		fail_msg("no \"%s\" in %s", key, text);
	if (*p == '[')
		for (p++; k > 0; k--)
			p = strchr(p, ',') + 1;
	if (!strncmp(p, "null", 4))
		return INFINITY;
	return strtod(p, NULL);
}

/* `llnc eval --json` against the same quantities computed here from the
 * in-process kernels: accuracy from the certified labels, percentiles of
 * the margins, distinct patterns, the mean cross-entropy of the logits,
 * and rt_evaluate for the Jacobian count. */
static void check_eval(const char *json, const inproc *ip, const float *x, const float *xlo, const int32_t *y, int n)
{
	const rt_model *m = ip->m;
	results r;
	certify_inproc_given(ip, x, xlo, n, NULL, 0, RT_ALL_NORMS, &r);
	int correct = 0;
	for (int i = 0; i < n; i++)
		correct += r.cert[i].label == y[i];
	assert_int_equal((int)json_at(json, "n", 0), n);
	double acc = json_at(json, "accuracy", 0);
	if (fabs(acc - (double)correct / n) > 1e-9)
		fail_msg("eval accuracy %.9g, in process %d of %d", acc, correct, n);
	float *z = malloc(sizeof(float) * (size_t)m->n_hidden), *lg = malloc(sizeof(float) * (size_t)m->n_out);
	float *ws = aligned_alloc(64, (sizeof(float) * (size_t)m->ws_floats + 63) & ~(size_t)63);
	double ce = 0;
	for (int i = 0; i < n; i++) {
		m->forward(ip->P, x + (size_t)i * m->n_in, ws, z, lg);
		double mx = -INFINITY, s = 0;
		for (int k = 0; k < m->n_out; k++)
			mx = fmax(mx, lg[k]);
		for (int k = 0; k < m->n_out; k++)
			s += exp((double)lg[k] - mx);
		ce += (mx + log(s) - lg[y[i]]) / n;
	}
	double got_ce = json_at(json, "ce", 0), got_loss = json_at(json, "loss", 0);
	if (fabs(got_ce - ce) > 1e-6 * fabs(ce) || fabs(got_loss - ce) > 1e-6 * fabs(ce))
		fail_msg("eval loss %.9g, ce %.9g; in process %.9g", got_loss, got_ce, ce);
	float *v = malloc(sizeof(float) * (size_t)n);
	for (int p = 0; p < 3; p++) {
		char key[16];
		snprintf(key, sizeof key, "eps_%s", norm_names[p]);
		for (int i = 0; i < n; i++)
			v[i] = r.cert[i].eps[p];
		for (int q = 0; q < 4; q++) {
			double want = percentile(v, n, 25.0 * (q + 1)), got = json_at(json, key, q);
			if (!(got == want || fabs(got - want) <= 1e-7 * fabs(want)))
				fail_msg("eval %s P%d = %.9g, in process %.9g", key, 25 * (q + 1), got, want);
		}
	}
	long long distinct = 0;
	for (int i = 0; i < n; i++) {
		bool seen = false;
		for (int j = 0; j < i && !seen; j++)
			seen = r.pattern[j] == r.pattern[i];
		distinct += !seen;
	}
	assert_int_equal((long long)json_at(json, "patterns", 0), distinct);
	rt_data d = { .n = n, .dim = m->n_in, .x = (float *)x, .y = (int32_t *)y };
	rt_objective o = { .kind = RT_OBJ_VANILLA };
	rt_eval e;
	assert_int_equal(rt_evaluate(m, &o, ip->P, &d, 2, RT_ALL_NORMS, &e), 0);
	assert_int_equal((long long)json_at(json, "jacobians", 0), e.jacobians);
	assert_int_equal(e.patterns, distinct);
	free(v);
	free(z);
	free(lg);
	free(ws);
	results_free(&r);
}

/* Runs independent_check.py --lln on a certifier's output; corrupting one
 * eps must make it fail. */
static void independent_lln(const char *py, const char *lln, const char *w, const char *X, const char *out)
{
	char cmd[4096];
	snprintf(cmd, sizeof cmd, "%s %s/tests/independent_check.py --weights %s --lln %s --input %s --certified %s",
	         py, LLN_SOURCE_DIR, w, lln, X, out);
	fflush(stdout);
	assert_int_equal(system(cmd), 0);
	char *t = slurp(out);
	char *p = strstr(t, "\"eps_linf\":");
	assert_non_null(p);
	p += 11;
	char *end;
	double v = strtod(p, &end);
	char buf[64];
	int k = snprintf(buf, sizeof buf, "%.9g", v * 1.001);
	char *u = malloc(strlen(t) + 64);
	snprintf(u, strlen(t) + 64, "%.*s%.*s%s", (int)(p - t), t, k, buf, end);
	spit(path_in("cnn-bad.jsonl"), u);
	snprintf(cmd, sizeof cmd,
	         "%s %s/tests/independent_check.py --weights %s --lln %s --input %s --certified %s > /dev/null", py,
	         LLN_SOURCE_DIR, w, lln, X, path_in("cnn-bad.jsonl"));
	int rc = system(cmd);
	assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
	free(t);
	free(u);
}

/* tests/data/cnn.lln, the convolutional acceptance example: the certifier
 * and `llnc eval` on .npy images [N, 1, 12, 12] and IDX image files. */
/* Soundness in exact arithmetic: every printed radius r satisfies
 * r ||g_h||_q <= |z_h| for every hidden neuron of the model as written
 * (normalize's decimals, the CSV's decimals), eps_pred and the directional
 * margin likewise; radii are within 1e-5 of the exact ones; a point at
 * 1 - 1e-9 of the radius toward the binding neuron keeps the pattern; and a
 * radius raised by 3e-7 is caught. */
static void test_exact_soundness(void **state)
{
	(void)state;
	static const char *models[] = {
		"model small {\n  input x[12] normalize(0.1307, 0.3081);\n  h1 = relu(dense(x, 10));\n"
		"  h2 = relu(dense(h1, 8));\n  out = dense(h2, 3);\n  output out;\n}\n",
		"model res {\n  input x[1, 6, 6] normalize(0.1307, 0.3081);\n"
		"  c1 = relu(conv2d(x, 2, kernel = 3, padding = 1));\n  c2 = conv2d(c1, 2, kernel = 3, padding = 1);\n"
		"  r = relu(add(c2, c1));\n  p = avgpool(r, 2);\n  h = relu(dense(p, 6));\n  out = dense(h, 3);\n"
		"  output out;\n}\n",
		"model seq {\n  input x[5, 3] normalize(0.25, 0.5);\n  h = rnn(x, 4);\n  s = rnn(h, 3);\n"
		"  out = dense(last(s), 2);\n  output out;\n}\n",
	};
	static const char *const seeds[] = { "4", "11", "12" };
	static const int dims[] = { 12, 36, 15 }, records[] = { 60, 12, 30 };
	const char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
	for (int mi = 0; mi < 3; mi++) {
		char lln[512], w[512], bin[512], X[512], dir[512], out[512], cmd[4096];
		snprintf(lln, sizeof lln, "%s", path_in("exact.lln"));
		snprintf(w, sizeof w, "%s", path_in("exact.safetensors"));
		snprintf(bin, sizeof bin, "%s", path_in("exact-cert"));
		snprintf(X, sizeof X, "%s", path_in("exact.csv"));
		snprintf(dir, sizeof dir, "%s", path_in("exact-dir.csv"));
		snprintf(out, sizeof out, "%s", path_in("exact.jsonl"));
		spit(lln, models[mi]);
		const char *init[] = { LLNC, "init", lln, "--seed", seeds[mi], "-o", w, NULL };
		run_ok(init, false, NULL);
		const char *build[] = { LLNC, "build", lln, "--certifier", "--weights", w, "-o", bin, NULL };
		run_ok(build, false, NULL);
		int D = dims[mi], n = records[mi];
		FILE *f = fopen(X, "w");
		assert_non_null(f);
		for (int i = 0; i < n; i++)
			for (int d = 0; d < D; d++)   /* six decimals: none is a float */
				fprintf(f, "%.6f%c", urand(), d + 1 < D ? ',' : '\n');
		fclose(f);
		f = fopen(dir, "w");
		assert_non_null(f);
		for (int d = 0; d < D; d++)   /* directions are read as float32: write floats exactly */
			fprintf(f, "%.70g%c", (double)(float)(2 * urand() - 1), d + 1 < D ? ',' : '\n');
		fclose(f);
		const char *cert[] = { bin, "--direction", dir, "-o", out, X, NULL };
		run_ok(cert, true, NULL);
		snprintf(cmd, sizeof cmd, "%s %s/tests/exact_check.py --lln %s --weights %s --input %s --certified %s --direction %s",
		         py, LLN_SOURCE_DIR, lln, w, X, out, dir);
		fflush(stdout);
		assert_int_equal(system(cmd), 0);
		/* the check can fail: one radius raised by 3e-7 is caught */
		char *t = slurp(out), *p = strstr(t, "\"eps_l2\":");
		assert_non_null(p);
		p += 9;
		char *end, buf[64];
		double v = strtod(p, &end);
		int k = snprintf(buf, sizeof buf, "%.9g", v * (1 + 3e-7));
		char *u = malloc(strlen(t) + 64);
		snprintf(u, strlen(t) + 64, "%.*s%.*s%s", (int)(p - t), t, k, buf, end);
		spit(path_in("exact-bad.jsonl"), u);
		snprintf(cmd, sizeof cmd, "%s %s/tests/exact_check.py --lln %s --weights %s --input %s --certified %s > /dev/null",
		         py, LLN_SOURCE_DIR, lln, w, X, path_in("exact-bad.jsonl"));
		int rc = system(cmd);
		assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
		free(t);
		free(u);
	}
}

static void test_cnn(void **state)
{
	(void)state;
	char lln[512], w[512], bin[512], XN[512], XI[512], YN[512], YI[512], out[512], outi[512];
	snprintf(lln, sizeof lln, "%s", LLN_SOURCE_DIR "/tests/data/cnn.lln");
	snprintf(w, sizeof w, "%s", path_in("cnn.safetensors"));
	snprintf(bin, sizeof bin, "%s", path_in("cnn-cert"));
	snprintf(XN, sizeof XN, "%s", path_in("cnn-x.npy"));
	snprintf(XI, sizeof XI, "%s", path_in("cnn-images-idx3-ubyte"));
	snprintf(YN, sizeof YN, "%s", path_in("cnn-y.csv"));
	snprintf(YI, sizeof YI, "%s", path_in("cnn-labels-idx1-ubyte"));
	snprintf(out, sizeof out, "%s", path_in("cnn.jsonl"));
	snprintf(outi, sizeof outi, "%s", path_in("cnn-idx.jsonl"));
	build_certifier(lln, w, bin, "11");
	inproc ip;
	inproc_open(&ip, lln, w);
	const rt_model *m = ip.m;
	assert_int_equal(m->n_in, 144);
	assert_int_equal(m->n_out, 3);
	assert_int_equal(m->n_hidden, 4 * 144 + 4 * 144 + 6 * 3 * 3 + 16);

	const int n = 30, D = 144;
	float *x = malloc(sizeof(float) * D * n), *xi = malloc(sizeof(float) * D * n);
	unsigned char *bytes = malloc((size_t)D * n), labels[30];
	int32_t y[30];
	for (int i = 0; i < D * n; i++) {
		x[i] = (float)urand();
		bytes[i] = (unsigned char)(urand() * 256);
		xi[i] = (float)(bytes[i] / 255.0);   /* IDX bytes: x / 255.0 rounded once */
	}
	x[3] = 0;
	x[4] = 1;
	for (int i = 0; i < n; i++) {
		y[i] = (int32_t)(urand() * 3);
		labels[i] = (unsigned char)y[i];
	}
	write_npy(XN, x, "(30, 1, 12, 12)", (size_t)D * n);
	write_idx(XI, bytes, n, 12, 12);
	write_idx(YI, labels, n, 0, 0);
	FILE *f = fopen(YN, "w");
	assert_non_null(f);
	for (int i = 0; i < n; i++)
		fprintf(f, "%d\n", y[i]);
	fclose(f);

	/* the certifier on .npy and on IDX: the in-process numbers, bit for bit */
	long before = n_compared, exact_before = n_exact;
	results r, ri;
	certify_inproc(&ip, x, n, NULL, 0, RT_ALL_NORMS, &r);
	/* IDX bytes are b / 255 exactly: the reader keeps the rest past the float */
	rt_data di;
	char derr[RT_ERRLEN];
	assert_int_equal(rt_data_read(XI, D, false, &di, derr), 0);
	assert_memory_equal(di.x, xi, sizeof(float) * (size_t)D * n);
	certify_inproc_given(&ip, xi, di.xlo, n, NULL, 0, RT_ALL_NORMS, &ri);
	rt_data_free(&di);
	const char *a1[] = { bin, "-o", out, XN, NULL };
	run_ok(a1, true, NULL);
	char *s = slurp(out);
	check_jsonl(s, m, &r, RT_ALL_NORMS, false);
	free(s);
	const char *a2[] = { bin, "-o", outi, XI, NULL };
	run_ok(a2, true, NULL);
	s = slurp(outi);
	check_jsonl(s, m, &ri, RT_ALL_NORMS, false);
	free(s);
	/* directions and csv, on the .npy */
	results rd;
	float dir[144];
	for (int d = 0; d < D; d++)
		dir[d] = (float)(2 * urand() - 1);
	write_csv(path_in("cnn-dir.csv"), dir, 1, D);
	certify_inproc(&ip, x, n, dir, 1, RT_ALL_NORMS, &rd);
	const char *a3[] = { bin, "--format", "csv", "--direction", path_in("cnn-dir.csv"), XN, NULL };
	run_ok(a3, true, NULL);
	s = out_text();
	check_csv(s, m, &rd, RT_ALL_NORMS, true);
	free(s);
	printf("[ cnn ] certifier: %ld numbers compared, %ld bit-identical\n", n_compared - before, n_exact - exact_before);
	assert_int_equal(n_exact - exact_before, n_compared - before);

	/* llnc eval --json on .npy with CSV labels and on IDX images and labels */
	char data[1100];
	snprintf(data, sizeof data, "%s,%s", XN, YN);
	const char *e1[] = { LLNC, "eval", lln, "--weights", w, "--data", data, "--json", NULL };
	run_ok(e1, false, NULL);
	s = out_text();
	check_eval(s, &ip, x, NULL, y, n);
	free(s);
	snprintf(data, sizeof data, "%s,%s", XI, YI);
	const char *e2[] = { LLNC, "eval", lln, "--weights", w, "--data", data, "--json", "--threads", "1", NULL };
	run_ok(e2, false, NULL);
	s = out_text();
	assert_int_equal(rt_data_read(XI, D, false, &di, derr), 0);
	check_eval(s, &ip, xi, di.xlo, y, n);
	rt_data_free(&di);
	printf("[ cnn ] eval: %s", s);
	free(s);

	const char *py = find_python();
	if (!py) {
		printf("[ cnn ] SKIPPED the independent numpy check: no python3 with numpy\n");
	} else {
		independent_lln(py, lln, w, XN, out);
		independent_lln(py, lln, w, XI, outi);
	}
	results_free(&r);
	results_free(&ri);
	results_free(&rd);
	free(x);
	free(xi);
	free(bytes);
	inproc_close(&ip);
}

/* ---- true labels, radii and summaries ---- */

/* Labels for the in-process predictions: every third one right, the others
 * the next class. */
static void make_labels(const results *r, int n_out, int32_t *y)
{
	for (int64_t i = 0; i < r->n; i++)
		y[i] = i % 3 == 0 ? r->cert[i].label : (r->cert[i].label + 1) % n_out;
}

static void write_labels_npy(const char *path, const int32_t *y, int n)
{
	int64_t *v = malloc(sizeof *v * (size_t)n);
	for (int i = 0; i < n; i++)
		v[i] = y[i];
	char shape[32];
	snprintf(shape, sizeof shape, "(%d,)", n);
	write_npy_as(path, "<i8", v, sizeof *v * (size_t)n, shape);
	free(v);
}

static double pct_of(const results *r, int p, bool pred, double q)
{
	float *v = malloc(sizeof(float) * (size_t)r->n);
	for (int64_t i = 0; i < r->n; i++)
		v[i] = pred ? r->cert[i].eps_pred[p] : r->cert[i].eps[p];
	double x = percentile(v, r->n, q);
	free(v);
	return x;
}

static void near(double got, double want, const char *what)
{
	if (isinf(want) ? !isinf(got) : fabs(got - want) > 1e-6 * fabs(want) + 1e-12)
		fail_msg("%s: %.9g, expected %.9g", what, got, want);
}

/* The certifier of custom_lln with weights of seed 7, built once: its
 * path, the model's and the weights' (buffers of 512). */
static void custom_certifier(char *bin, char *lln, char *w)
{
	snprintf(bin, 512, "%s", path_in("t-cert"));
	snprintf(lln, 512, "%s", path_in("t.lln"));
	snprintf(w, 512, "%s", path_in("t.safetensors"));
	if (!exists(bin))
		build_certifier(lln, w, bin, "7");
}

static void test_labels(void **state)
{
	(void)state;
	char bin[512], lln[512], w[512];
	custom_certifier(bin, lln, w);
	enum { N = 60 };
	float x[N * 5];
	for (int i = 0; i < N * 5; i++)
		x[i] = (float)urand();
	char X[512], XL[512];
	snprintf(X, sizeof X, "%s", path_in("lx.csv"));
	snprintf(XL, sizeof XL, "%s", path_in("lxl.csv"));
	write_csv(X, x, N, 5);
	inproc ip;
	inproc_open(&ip, lln, w);
	results r;
	certify_inproc(&ip, x, N, NULL, 0, RT_ALL_NORMS, &r);
	int32_t y[N];
	make_labels(&r, 3, y);
	/* the labels in every form: a labeled CSV, with a header, and files */
	FILE *f = fopen(XL, "w");
	fputs("# labeled\nlabel,a,b,c,d,e\n", f);
	for (int i = 0; i < N; i++) {
		fprintf(f, "%d", y[i]);
		for (int d = 0; d < 5; d++)
			fprintf(f, ",%.70g", x[i * 5 + d]);
		fputc('\n', f);
	}
	fclose(f);
	char lcsv[512], lnpy[512], lidx[512];
	snprintf(lcsv, sizeof lcsv, "%s", path_in("l.csv"));
	f = fopen(lcsv, "w");
	for (int i = 0; i < N; i++)
		fprintf(f, "%d\n", y[i]);
	fclose(f);
	snprintf(lnpy, sizeof lnpy, "%s", path_in("l.npy"));
	write_labels_npy(lnpy, y, N);
	snprintf(lidx, sizeof lidx, "%s", path_in("l-idx1-ubyte"));
	unsigned char yb[N];
	for (int i = 0; i < N; i++)
		yb[i] = (unsigned char)y[i];
	write_idx(lidx, yb, N, 0, 0);

	/* radii: 0 (certified = correct), the median eps_pred_2, and above all */
	char radii[128], r1[32];
	double R[3] = { 0, pct_of(&r, RT_L2, true, 50), 1e30 };
	snprintf(r1, sizeof r1, "%.9g", R[1]);
	R[1] = strtod(r1, NULL);
	snprintf(radii, sizeof radii, "0,%s,1e30", r1);
	const char *keys[3] = { "0", r1, "1e+30" };
	char *want = NULL;
	const char *forms[4][4] = { { XL, NULL }, { "--labels", lcsv, X }, { "--labels", lnpy, X }, { "--labels", lidx, X } };
	for (int fm = 0; fm < 4; fm++) {
		const char *argv[12] = { bin, "--eps", radii, "--norm", "2" };
		int k = 5;
		for (int j = 0; forms[fm][j]; j++)
			argv[k++] = forms[fm][j];
		run_ok(argv, true, NULL);
		char *out = out_text();
		if (!want) {
			want = out;
			continue;
		}
		assert_string_equal(out, want);   /* every form, the same records */
		free(out);
	}
	/* each record: pred, label, correct, certified at each radius */
	const char *line = want;
	int64_t right = 0, cert[3] = { 0 }, robust[3] = { 0 };
	for (int i = 0; i < N; i++) {
		const char *nl = strchr(line, '\n');
		assert_non_null(nl);
		json_error_t je;
		json_t *o = json_loadb(line, (size_t)(nl - line), 0, &je);
		assert_non_null(o);
		assert_int_equal(json_integer_value(json_object_get(o, "pred")), r.cert[i].label);
		assert_int_equal(json_integer_value(json_object_get(o, "label")), y[i]);
		bool correct = y[i] == r.cert[i].label;
		right += correct;
		assert_true(json_is_boolean(json_object_get(o, "correct")));
		assert_int_equal(json_is_true(json_object_get(o, "correct")), correct);
		json_t *c = json_object_get(o, "certified");
		assert_int_equal(json_object_size(c), 3);
		for (int k = 0; k < 3; k++) {
			bool rob = (double)r.cert[i].eps_pred[RT_L2] >= R[k];
			robust[k] += rob;
			cert[k] += rob && correct;
			json_t *v = json_object_get(c, keys[k]);
			assert_non_null(v);
			assert_int_equal(json_is_true(v), rob && correct);
		}
		json_decref(o);
		line = nl + 1;
	}
	assert_int_equal(*line, 0);
	assert_int_equal(cert[0], right);
	assert_true(cert[1] > 0 && cert[1] < right);
	assert_int_equal(cert[2], 0);
	free(want);

	/* the summary: JSON (the default), CSV and table say the same */
	const char *sj[] = { bin, "--summary", "--eps", radii, "--norm", "2", "--labels", lidx, X, NULL };
	run_ok(sj, true, NULL);
	char *js = out_text();
	json_error_t je;
	json_t *o = json_loads(js, 0, &je);
	if (!o)
		fail_msg("summary is not JSON (%s): %s", je.text, js);
	free(js);
	long long distinct = 0;
	for (int i = 0; i < N; i++) {
		bool seen = false;
		for (int j = 0; j < i; j++)
			seen |= r.pattern[j] == r.pattern[i];
		distinct += !seen;
	}
	assert_int_equal(json_integer_value(json_object_get(o, "inputs")), N);
	assert_int_equal(json_integer_value(json_object_get(o, "patterns")), distinct);
	assert_int_equal(json_integer_value(json_object_get(o, "correct")), right);
	near(json_real_value(json_object_get(o, "accuracy")), (double)right / N, "accuracy");
	assert_string_equal(json_string_value(json_object_get(o, "norm")), "l2");
	for (int k = 0; k < 3; k++) {
		near(json_number_value(json_object_get(json_object_get(o, "certified_accuracy"), keys[k])),
		     (double)cert[k] / N, "certified accuracy");
		near(json_number_value(json_object_get(json_object_get(o, "robust"), keys[k])), (double)robust[k] / N,
		     "robust");
	}
	json_t *pc = json_object_get(o, "percentiles");
	assert_int_equal(json_object_size(pc), 6);
	for (int p = 0; p < 3; p++)
		for (int pred = 0; pred < 2; pred++) {
			char name[32];
			snprintf(name, sizeof name, "%s_%s", pred ? "eps_pred" : "eps", norm_names[p]);
			for (int q = 25; q <= 100; q += 25) {
				char pq[8];
				snprintf(pq, sizeof pq, "P%d", q);
				near(json_real_value(json_object_get(json_object_get(pc, name), pq)), pct_of(&r, p, pred, q), name);
			}
		}
	/* CSV: statistic,value rows with the same numbers */
	const char *sc[] = { bin, "--summary", "--format", "csv", "--eps", radii, "--norm", "2", XL, NULL };
	run_ok(sc, true, NULL);
	char *cs = out_text();
	assert_true(!strncmp(cs, "statistic,value\n", 16));
	char row[96];
	snprintf(row, sizeof row, "\ncorrect,%lld\n", (long long)right);
	assert_non_null(strstr(cs, row));
	snprintf(row, sizeof row, "\ncertified_accuracy_l2@%s,", r1);
	const char *ca = strstr(cs, row);
	assert_non_null(ca);
	near(strtod(ca + strlen(row), NULL), (double)cert[1] / N, "csv certified accuracy");
	const char *p50 = strstr(cs, "\neps_pred_linf_P50,");
	assert_non_null(p50);
	near(strtod(p50 + 19, NULL), pct_of(&r, RT_LINF, true, 50), "csv eps_pred_linf P50");
	free(cs);
	/* table: for reading, the same counts */
	const char *st[] = { bin, "--summary", "--format", "table", "--eps", radii, "--norm", "2", XL, NULL };
	run_ok(st, true, NULL);
	char *ts = out_text();
	snprintf(row, sizeof row, "(%lld of %d)", (long long)right, N);
	assert_non_null(strstr(ts, row));
	check_summary(ts, &r, RT_ALL_NORMS, false);
	free(ts);
	json_decref(o);

	/* without labels, --eps says whether the prediction is robust */
	const char *ar[] = { bin, "--eps", r1, "--norms", "2", X, NULL };
	run_ok(ar, true, NULL);
	char *rs_ = out_text();
	assert_null(strstr(rs_, "\"label\""));
	assert_null(strstr(rs_, "\"certified\""));
	assert_non_null(strstr(rs_, "\"robust\":{"));
	free(rs_);

	/* exit statuses: 1 for bad labels, 2 for usage */
	char few[512], many[512], big[512], none[512];
	snprintf(few, sizeof few, "%s", path_in("few.csv"));
	snprintf(many, sizeof many, "%s", path_in("many.csv"));
	snprintf(big, sizeof big, "%s", path_in("big.csv"));
	snprintf(none, sizeof none, "%s", path_in("none.csv"));
	spit(few, "0\n1\n");
	const char *e1[] = { bin, "--labels", few, X, NULL };
	expect_error(e1, 1, NULL, "few.csv: holds 2 labels but", NULL);
		f = fopen(many, "w");
	for (int i = 0; i < N + 1; i++)
		fputs("1\n", f);
	fclose(f);
	const char *e2[] = { bin, "--labels", many, X, NULL };
	expect_error(e2, 1, NULL, "many.csv: holds 61 labels but", "has 60 examples");
		spit(big, "0,0.1,0.2,0.3,0.4,0.5\n3,0.1,0.2,0.3,0.4,0.5\n");
	const char *e3[] = { bin, big, NULL };
	expect_error(e3, 1, NULL, "big.csv: record 2: label 3 is not a class of model 't' (0 to 2)", NULL);
	const char *e4[] = { bin, "--labels", lcsv, XL, NULL };
	expect_error(e4, 1, NULL, "carry a label in the first column", NULL);
	const char *e5[] = { bin, "--labels", none, X, NULL };
	expect_error(e5, 1, NULL, "none.csv", NULL);
	const char *e6[] = { bin, "--eps", "0.1", X, NULL };
	expect_error(e6, 2, NULL, "--eps needs the norm", NULL);
	const char *e7[] = { bin, "--eps", "-1", "--norm", "2", X, NULL };
	expect_error(e7, 2, NULL, "--eps takes", NULL);
	const char *e8[] = { bin, "--eps", "0.1", "--norm", "3", X, NULL };
	expect_error(e8, 2, NULL, "--norm takes", NULL);
	const char *e9[] = { bin, "--norm", "2", X, NULL };
	expect_error(e9, 2, NULL, "give --eps", NULL);
	const char *e10[] = { bin, "--eps", "0.1", "--norm", "1", "--norms", "2", X, NULL };
	expect_error(e10, 2, NULL, "--norm 1 is not among --norms", NULL);
	const char *e11[] = { bin, "--labels", "-", "-", NULL };
	expect_error(e11, 2, NULL, "standard input", NULL);
	results_free(&r);
	inproc_close(&ip);
}

/* llnc certify runs the certifier's code on the model compiled in process:
 * the same bytes for the same arguments, in every output mode. */
static void test_certify_command(void **state)
{
	(void)state;
	char bin[512], lln[512], w[512];
	custom_certifier(bin, lln, w);
	enum { N = 50 };
	float x[N * 5];
	for (int i = 0; i < N * 5; i++)
		x[i] = (float)urand() * 2 - 0.5f;
	char X[512], D[512];
	snprintf(X, sizeof X, "%s", path_in("cx.csv"));
	snprintf(D, sizeof D, "%s", path_in("cd.csv"));
	write_csv(X, x, N, 5);
	write_csv(D, x + 5, 1, 5);
	char lab[512], none[512], nonew[512];
	snprintf(lab, sizeof lab, "%s", path_in("cl.csv"));
	snprintf(none, sizeof none, "%s", path_in("none.csv"));
	snprintf(nonew, sizeof nonew, "%s", path_in("none.safetensors"));
	FILE *f = fopen(lab, "w");
	for (int i = 0; i < N; i++)
		fprintf(f, "%d\n", i % 3);
	fclose(f);
	char weq[600];
	snprintf(weq, sizeof weq, "--weights=%s", w);
	const char *modes[][10] = {
		{ X },
		{ "--format", "csv", "--labels", lab, "--eps", "0.001,0.01", "--norm", "inf", X },
		{ "--format", "table", "--direction", D, "--norms", "1,inf", X },
		{ "--summary", "--labels", lab, "--eps", "0.001", "--norms", "2", X },
		{ "--summary", "--format", "table", "--threads", "1", X },
	};
	for (size_t k = 0; k < sizeof modes / sizeof *modes; k++) {
		const char *a[16] = { bin };
		const char *b[20] = { LLNC, "certify", lln, k % 2 ? weq : "--weights", k % 2 ? NULL : w };
		int na = 1, nb = k % 2 ? 4 : 5;
		if (k == 2) {   /* --weights before FILE, too */
			b[2] = "--weights";
			b[3] = w;
			b[4] = lln;
		}
		for (int j = 0; modes[k][j]; j++)
			a[na++] = b[nb++] = modes[k][j];
		run_ok(a, true, NULL);
		char *want = out_text();
		run_ok(b, false, NULL);
		char *got = out_text();
		assert_true(strlen(want) > 100);
		assert_string_equal(got, want);
		free(want);
		free(got);
	}
	/* the same exit statuses; --help shows the certifier's flags */
	const char *u1[] = { LLNC, "certify", lln, X, NULL };
	expect_error(u1, 2, NULL, "certify needs --weights", NULL);
	const char *u2[] = { LLNC, "certify", lln, "--weights", w, "--eps", "0.1", X, NULL };
	expect_error(u2, 2, NULL, "--eps needs the norm", NULL);
	const char *u3[] = { LLNC, "certify", lln, "--weights", w, "--labels", none, X, NULL };
	expect_error(u3, 1, NULL, "none.csv", NULL);
	const char *u4[] = { LLNC, "certify", lln, "--weights", nonew, X, NULL };
	expect_error(u4, 1, NULL, "none.safetensors", NULL);
	const char *h[] = { LLNC, "certify", lln, "--help", NULL };
	run_ok(h, false, NULL);
	char *s = out_text();
	assert_non_null(strstr(s, "usage: llnc certify"));
	assert_non_null(strstr(s, "--labels FILE"));
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_custom_model),
		cmocka_unit_test(test_ldd),
		cmocka_unit_test(test_certifier_errors),
		cmocka_unit_test(test_labels),
		cmocka_unit_test(test_certify_command),
		cmocka_unit_test(test_llnc_errors),
		cmocka_unit_test(test_toy2d),
		cmocka_unit_test(test_mnist),
		cmocka_unit_test(test_cnn),
		cmocka_unit_test(test_exact_soundness),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
