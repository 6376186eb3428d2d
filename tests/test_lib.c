/* test_lib.c: liblln (include/lln.h) as a program uses it, against llnc.
 *
 * The library must give the numbers of the commands it wraps: lln_certify
 * the records of a certifier built by `llnc build --certifier` (every
 * printed radius, binding neuron, prediction and pattern, to the printed
 * digit), lln_evaluate the JSON of `llnc eval`, lln_train the weights of
 * `llnc train` with the same flags (bit for bit), a fresh model the
 * weights of `llnc init`.  It also checks what the library exports (the
 * header's functions and nothing else), its errors, and runs
 * tests/lib_check.py, which certifies a numpy batch through the Python
 * module of the build tree and compares it with the certifier; then
 * installs the module with cmake --install and imports it from there, and
 * runs the README's Python example when the MNIST files are present.
 */
#include <dlfcn.h>
#include <stdbool.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "lln.h"
#include "rt.h"
#include "tmpfiles.h"

#define LLNC LLN_BINARY_DIR "/llnc"

static const char model_text[] =
	"model t {\n"
	"  input x[6] normalize(0.1, 0.7);\n"
	"  a = relu(dense(x, 9));\n"
	"  b = relu(dense(a, 8));\n"
	"  out = dense(b, 3);\n"
	"  output out;\n"
	"}\n"
	"objective { regularizer = roll(lambda = 0.5, C = 2, gamma = 50); }\n"
	"train { optimizer = sgd(momentum = 0.9); lr = 0.05; batch = 8; epochs = 2; seed = 3; valid = 0; }\n";

enum { N = 48, D = 6 };
static float X[N * D];
static int32_t Y[N];
static char lln[512], wts[512], xnpy[512], ynpy[512], cert[512];

static void write_npy(const char *path, const char *descr, const void *data, size_t size, const char *shape)
{
	FILE *f = npy_open(path, descr, shape);
	fwrite(data, 1, size, f);
	fclose(f);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	rewind(f);
	char *s = malloc((size_t)n + 1);
	assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
	s[n] = 0;
	fclose(f);
	return s;
}

/* Exit status 0, or the command's stderr in the failure. */
#define SH_OK(...)                                                         \
	do {                                                                   \
		if (sh(__VA_ARGS__) != 0) {                                        \
			char *e_ = slurp(P_("err"));                                   \
			fail_msg("command failed: %s", e_);                            \
		}                                                                  \
	} while (0)

static lln_model *open_model(void)
{
	lln_model *m = lln_compile(lln);
	if (!m)
		fail_msg("lln_compile: %s", lln_error());
	return m;
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/lln-test-lib-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(lln, sizeof lln, "%s", puts_("t.lln", model_text));
	snprintf(wts, sizeof wts, "%s", P_("t.safetensors"));
	snprintf(xnpy, sizeof xnpy, "%s", P_("x.npy"));
	snprintf(ynpy, sizeof ynpy, "%s", P_("y.npy"));
	snprintf(cert, sizeof cert, "%s", P_("t-cert"));
	uint64_t s = 0x9e3779b97f4a7c15ULL;
	for (int i = 0; i < N * D; i++) {
		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		X[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2 - 0.5);
	}
	int64_t y64[N];
	for (int i = 0; i < N; i++)
		Y[i] = i % 3, y64[i] = Y[i];
	write_npy(xnpy, "<f4", X, sizeof X, "(48, 6)");
	write_npy(ynpy, "<i8", y64, sizeof y64, "(48,)");
	/* He weights, so that the three classes all occur */
	if (sh("%s init %s --seed 11 --init he -o %s", LLNC, lln, wts) ||
	    sh("%s build %s --certifier --weights %s -o %s", LLNC, lln, wts, cert))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (getenv("LLN_KEEP_TMP"))
		return 0;
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* The library exports the header's functions, and none of its insides. */
static void test_exports(void **state)
{
	(void)state;
	void *h = dlopen(LLN_BINARY_DIR "/liblln.so", RTLD_NOW | RTLD_LOCAL);
	assert_non_null(h);
	char *hdr = slurp(LLN_SOURCE_DIR "/include/lln.h");
	int found = 0;
	for (char *p = hdr; (p = strstr(p, "lln_")); p++) {
		size_t k = strspn(p, "abcdefghijklmnopqrstuvwxyz_0123456789");
		if (p[k] != '(' || (p > hdr && p[-1] != ' ' && p[-1] != '*'))
			continue;
		char name[64];
		snprintf(name, sizeof name, "%.*s", (int)k, p);
		if (!dlsym(h, name))
			fail_msg("liblln does not export %s", name);
		found++;
	}
	assert_true(found >= 25);
	static const char *const inside[] = { "rt_certify_batch", "cg_generate", "sema_check", "lln_scan_string",
	                                      "arena_new", "internal_error" };
	for (size_t i = 0; i < sizeof inside / sizeof *inside; i++)
		if (dlsym(h, inside[i]))
			fail_msg("liblln exports %s", inside[i]);
	assert_int_equal(((int (*)(void))dlsym(h, "lln_version"))(), LLN_VERSION);
	free(hdr);
	dlclose(h);
}

static void test_compile(void **state)
{
	(void)state;
	assert_null(lln_compile_text("bad.lln", "model b {\n  input x[2];\n  h = relu(dense(y, 3));\n  output h;\n}\n"));
	assert_non_null(strstr(lln_error(), "bad.lln:3:18: error: unknown name 'y'"));
	assert_null(lln_compile(P_("none.lln")));
	assert_string_equal(lln_error(), msg("%s: cannot read: No such file or directory", P_("none.lln")));
	assert_null(lln_compile_text("u.lln", "model \xff"));
	assert_non_null(strstr(lln_error(), "invalid UTF-8 at byte 6"));

	lln_model *m = open_model();
	assert_string_equal(lln_name(m), "t");
	assert_int_equal(lln_n_inputs(m), 6);
	assert_int_equal(lln_n_outputs(m), 3);
	assert_int_equal(lln_n_hidden(m), 17);
	assert_int_equal(lln_n_params(m), 6 * 9 + 9 + 9 * 8 + 8 + 8 * 3 + 3);
	assert_int_equal(lln_n_layers(m), 2);
	assert_string_equal(lln_layer_name(m, 1), "b");
	assert_int_equal(lln_layer_size(m, 1), 8);
	int32_t idx;
	assert_int_equal(lln_layer_of(m, 12, &idx), 1);
	assert_int_equal(idx, 3);
	assert_int_equal(lln_layer_of(m, 17, &idx), -1);
	assert_int_equal(lln_n_tensors(m), 6);
	int64_t shape[4];
	assert_string_equal(lln_tensor_name(m, 2), "b.weight");
	assert_int_equal(lln_tensor_shape(m, 2, shape), 2);
	assert_true(shape[0] == 8 && shape[1] == 9);
	assert_int_equal(lln_tensor_shape(m, 6, shape), -1);
	lln_free(m);
}

static void test_weights(void **state)
{
	(void)state;
	/* a new model holds llnc init's weights for the train block's seed */
	lln_model *m = open_model(), *w = open_model();
	SH_OK("%s init %s -o %s", LLNC, lln, P_("init.safetensors"));
	assert_int_equal(lln_load_weights(w, P_("init.safetensors"), NULL), 0);
	size_t bytes = sizeof(float) * (size_t)lln_n_params(m);
	assert_memory_equal(lln_params(m), lln_params(w), bytes);
	/* save and load back; a failed load keeps the weights */
	assert_int_equal(lln_load_weights(m, wts, NULL), 0);
	assert_memory_not_equal(lln_params(m), lln_params(w), bytes);
	assert_int_equal(lln_save_weights(m, P_("again.safetensors")), 0);
	assert_int_equal(lln_load_weights(w, P_("again.safetensors"), NULL), 0);
	assert_memory_equal(lln_params(m), lln_params(w), bytes);
	/* a file whose last tensor has another shape: read into a copy */
	char *other = strdup(model_text);
	memcpy(strstr(other, "dense(b, 3)"), "dense(b, 4)", 11);
	SH_OK("%s init %s -o %s", LLNC, puts_("o.lln", other), P_("o.safetensors"));
	free(other);
	assert_int_equal(lln_load_weights(w, P_("o.safetensors"), NULL), -1);
	assert_string_equal(lln_error(), msg("%s: tensor 'out.weight' has shape [4, 8], expected [3, 8]",
	                                     P_("o.safetensors")));
	assert_memory_equal(lln_params(m), lln_params(w), bytes);
	/* tensors by name */
	float v[9] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
	assert_int_equal(lln_set_tensor(w, "a.bias", v, 9), 0);
	assert_memory_equal(lln_params(w) + 54, v, sizeof v);
	assert_int_equal(lln_set_tensor(w, "a.bias", v, 8), -1);
	assert_string_equal(lln_error(), "tensor 'a.bias' has 9 values, not 8");
	assert_int_equal(lln_set_tensor(w, "c.bias", v, 9), -1);
	assert_string_equal(lln_error(), "model 't' has no tensor 'c.bias'");
	v[3] = NAN;
	assert_int_equal(lln_set_tensor(w, "a.bias", v, 9), -1);
	lln_free(m);
	lln_free(w);
}

/* Splits a CSV line in place. */
static int fields(char *s, char **f, int max)
{
	int n = 0;
	for (char *save = NULL, *t = strtok_r(s, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save))
		f[n++] = t;
	return n;
}

/* Whether the decimal d is v rounded toward zero to 9 significant digits,
 * as the commands print radii: d <= v < d + one unit in d's 9th digit. */
static bool down9(double d, double v)
{
	if (v == 0 || d == 0)
		return d == v;
	double unit = pow(10, floor(log10(fabs(d))) - 8);
	return d <= v && v < d + unit * (1 + 1e-9);
}

static void same_radius(const char *printed, float v, const char *what, int i)
{
	if (isinf(v) ? strcmp(printed, "inf") != 0 : !down9(strtod(printed, NULL), v))
		fail_msg("input %d: %s: certifier %s, liblln %.9g", i, what, printed, v);
}

static void test_certify(void **state)
{
	(void)state;
	lln_model *m = open_model();
	assert_int_equal(lln_load_weights(m, wts, NULL), 0);
	int32_t pred[N], bind[N * 3], und[N];
	float eps[N * 3], ep[N * 3];
	uint64_t pat[N];
	lln_certificates c = { pred, eps, ep, bind, pat, und };
	assert_int_equal(lln_certify(m, X, N, LLN_ALL_NORMS, 2, &c), 0);
	SH_OK("%s --format csv %s", cert, xnpy);
	char *csv = slurp(P_("out")), *save = NULL;
	char *line = strtok_r(csv, "\n", &save);
	assert_string_equal(line, "index,pred,eps_l1,bind_l1_layer,bind_l1_index,eps_pred_l1,eps_l2,bind_l2_layer,"
	                          "bind_l2_index,eps_pred_l2,eps_linf,bind_linf_layer,bind_linf_index,eps_pred_linf,"
	                          "pattern");
	int classes[3] = { 0 };
	for (int i = 0; i < N; i++) {
		line = strtok_r(NULL, "\n", &save);
		assert_non_null(line);
		char *f[16];
		assert_int_equal(fields(line, f, 16), 15);
		assert_int_equal(atoi(f[0]), i);
		assert_int_equal(atoi(f[1]), pred[i]);
		classes[pred[i]]++;
		for (int p = 0; p < 3; p++) {
			same_radius(f[2 + 4 * p], eps[i * 3 + p], "eps", i);
			same_radius(f[5 + 4 * p], ep[i * 3 + p], "eps_pred", i);
			int32_t k;
			int l = lln_layer_of(m, bind[i * 3 + p], &k);
			assert_true(l >= 0);
			assert_string_equal(f[3 + 4 * p], lln_layer_name(m, l));
			assert_int_equal(atoi(f[4 + 4 * p]), k);
		}
		char hex[32];
		snprintf(hex, sizeof hex, "%016llx", (unsigned long long)pat[i]);
		assert_string_equal(f[14], hex);
		assert_int_equal(und[i], 0);
	}
	assert_null(strtok_r(NULL, "\n", &save));
	assert_true(classes[0] && classes[1] && classes[2]);   /* a test of every class */
	free(csv);
	/* one norm: the others NaN, the asked one the same; NULL outputs skipped */
	float ep2[N * 3];
	lln_certificates c2 = { .eps_pred = ep2 };
	assert_int_equal(lln_certify(m, X, N, LLN_L2, 1, &c2), 0);
	for (int i = 0; i < N; i++) {
		assert_true(isnan(ep2[i * 3]) && isnan(ep2[i * 3 + 2]));
		assert_true(fabsf(ep2[i * 3 + 1] - ep[i * 3 + 1]) <= 1e-5f * ep[i * 3 + 1]);
	}
	float bad[D] = { 0, 1, INFINITY, 0, 0, 0 };
	assert_int_equal(lln_certify(m, bad, 1, LLN_L2, 1, &c2), -1);
	assert_string_equal(lln_error(), "input 0: value 2 is NaN or infinite");
	assert_int_equal(lln_certify(m, X, N, 8, 1, &c2), -1);
	lln_free(m);
}

static void test_evaluate(void **state)
{
	(void)state;
	lln_model *m = open_model();
	assert_int_equal(lln_load_weights(m, wts, NULL), 0);
	lln_evaluation e;
	assert_int_equal(lln_evaluate(m, X, Y, N, LLN_ALL_NORMS, 2, &e), 0);
	SH_OK("%s eval %s --weights %s --data %s,%s --norms 1,2,inf --json", LLNC, lln, wts, xnpy, ynpy);
	char *js = slurp(P_("out"));
	json_error_t je;
	json_t *o = json_loads(js, 0, &je);
	assert_non_null(o);
	struct { const char *key; double v; } num[] = { { "accuracy", e.accuracy }, { "loss", e.loss }, { "ce", e.ce } };
	for (size_t k = 0; k < 3; k++)
		if (!down9(json_number_value(json_object_get(o, num[k].key)), num[k].v))
			fail_msg("%s: llnc eval %.9g, liblln %.17g", num[k].key, json_number_value(json_object_get(o, num[k].key)),
			         num[k].v);
	assert_true(e.accuracy > 0 && e.accuracy < 1 && e.loss > e.ce);   /* ROLL adds to the loss */
	static const char *nk[3] = { "eps_l1", "eps_l2", "eps_linf" };
	for (int p = 0; p < 3; p++)
		for (int q = 0; q < 4; q++)
			assert_true(down9(json_number_value(json_array_get(json_object_get(o, nk[p]), (size_t)q)),
			                  e.eps_pct[p][q]));
	assert_int_equal(json_integer_value(json_object_get(o, "patterns")), e.patterns);
	assert_int_equal(json_integer_value(json_object_get(o, "jacobians")), e.jacobians);
	assert_int_equal(e.n, N);
	json_decref(o);
	free(js);
	int32_t y3[N];
	memcpy(y3, Y, sizeof y3);
	y3[5] = 3;
	assert_int_equal(lln_evaluate(m, X, y3, N, LLN_L2, 1, &e), -1);
	assert_string_equal(lln_error(), "labels: record 6: label 3 is not a class of model 't' (0 to 2)");
	lln_free(m);
}

static void test_train(void **state)
{
	(void)state;
	lln_model *m = open_model(), *w = open_model();
	char data[1100], out[512];
	snprintf(data, sizeof data, "%s,%s", xnpy, ynpy);
	snprintf(out, sizeof out, "%s", P_("lib.safetensors"));
	const char *argv[] = { "--data", data, "--epochs", "3", "--threads", "1", "-o", out };
	assert_int_equal(lln_train(m, 8, argv), 0);
	SH_OK("%s train %s --data %s --epochs 3 --threads 1 -o %s", LLNC, lln, data, P_("cmd.safetensors"));
	assert_int_equal(lln_load_weights(w, P_("cmd.safetensors"), NULL), 0);
	size_t bytes = sizeof(float) * (size_t)lln_n_params(m);
	assert_memory_equal(lln_params(m), lln_params(w), bytes);   /* the same run, bit for bit */
	lln_model *init = open_model();
	assert_memory_not_equal(lln_params(m), lln_params(init), bytes);
	lln_free(init);
	/* the .lln file's settings are the defaults: one more epoch differs */
	const char *argv4[] = { "--data", data, "--epochs", "4", "--threads", "1", "-o", out };
	assert_int_equal(lln_train(m, 8, argv4), 0);
	assert_memory_not_equal(lln_params(m), lln_params(w), bytes);
	/* a failed run leaves the weights */
	float *before = malloc(bytes);
	memcpy(before, lln_params(m), bytes);
	const char *bad[] = { "--data", data, "--epochs", "0", "-o", out };
	assert_int_equal(lln_train(m, 6, bad), -1);
	assert_non_null(strstr(lln_error(), "status 2"));
	assert_memory_equal(before, lln_params(m), bytes);
	free(before);
	lln_free(m);
	lln_free(w);
}

static void test_read_data(void **state)
{
	(void)state;
	lln_data d;
	const char *p = puts_("l.csv", "label,a,b\n2,0.5,1\n0,-1,3e2\n");
	assert_int_equal(lln_read_data(p, 2, 1, &d), 0);
	assert_true(d.n == 2 && d.dim == 2 && d.y && d.y[0] == 2 && d.y[1] == 0 && d.x[3] == 300);
	lln_data_free(&d);
	assert_int_equal(lln_read_data(xnpy, 0, 1, &d), 0);
	assert_true(d.n == N && d.dim == D && !d.y);
	assert_memory_equal(d.x, X, sizeof X);
	lln_data_free(&d);
	assert_int_equal(lln_read_labels(ynpy, &d), 0);
	assert_true(d.n == N && !d.x && d.y[4] == 1);
	lln_data_free(&d);
	assert_int_equal(lln_read_data(p, 4, 1, &d), -1);
	assert_string_equal(lln_error(), msg("%s: record 1: expected 4 values, found 3", p));
}

/* The Python module of the build tree over the same files. */
static void test_python(void **state)
{
	(void)state;
#ifdef LLN_NO_PYTHON
	skip();
#else
	const char *py = NULL;
	static const char *cands[] = { "python3", "/usr/bin/python3" };
	for (size_t i = 0; i < 2 && !py; i++)
		if (sh("%s -c 'import numpy'", cands[i]) == 0)
			py = cands[i];
	if (!py)
		fail_msg("no python3 with numpy (scripts/deps installs python3-numpy)");
	int rc = sh("PYTHONPATH=%s/python %s %s/tests/lib_check.py %s %s %s %s %s", LLN_BINARY_DIR, py, LLN_SOURCE_DIR,
	            lln, wts, cert, tmpdir, LLNC);
	char *out = slurp(P_("out")), *err = slurp(P_("err"));
	printf("%s", out);
	if (rc != 0)
		fail_msg("tests/lib_check.py exited %d:\n%s%s", rc, out, err);
	free(out);
	free(err);

	/* installed by cmake --install into a prefix other than the configured
	 * one: the module finds its library relative to itself */
	SH_OK("'%s' --install '%s' --prefix '%s/inst'", LLN_CMAKE, LLN_BINARY_DIR, tmpdir);
	SH_OK("cd / && env -u LLN_LIBRARY PYTHONPATH=$(dirname $(find '%s/inst' -name lln.py)) %s -c "
	      "'import lln, numpy; m = lln.compile(\"%s\"); print(lln.__file__, m.certify(numpy.zeros(6))[\"pred\"])'",
	      tmpdir, py, lln);
	char *inst = slurp(P_("out"));
	printf("installed: %s", inst);
	assert_non_null(strstr(inst, "/inst/"));
	free(inst);

	/* the README's example, as written, when the MNIST files are there */
	char *readme = slurp(LLN_SOURCE_DIR "/README.md");
	char *start = strstr(readme, "```python\n");
	assert_non_null(start);
	start += 10;
	char *end = strstr(start, "```");
	assert_non_null(end);
	*end = 0;
	int lines = 0;
	for (char *c = start; *c; c++)
		lines += *c == '\n';
	assert_true(lines <= 5);   /* five lines, as the README promises */
	const char *script = put("readme.py", start, strlen(start));
	if (access(LLN_SOURCE_DIR "/data/t10k-images-idx3-ubyte", R_OK) != 0) {
		printf("README example: skipped, no data/t10k-images-idx3-ubyte (scripts/get-mnist)\n");
	} else {
		SH_OK("cd '%s' && PYTHONPATH=%s/python %s %s", LLN_SOURCE_DIR, LLN_BINARY_DIR, py, script);
		char *o = slurp(P_("out"));
		printf("README example:\n%s", o);
		assert_true(strlen(o) > 100);
		free(o);
	}
	free(readme);
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exports),
		cmocka_unit_test(test_compile),
		cmocka_unit_test(test_weights),
		cmocka_unit_test(test_certify),
		cmocka_unit_test(test_evaluate),
		cmocka_unit_test(test_train),
		cmocka_unit_test(test_read_data),
		cmocka_unit_test(test_python),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
