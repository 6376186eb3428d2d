/* test_interop.c: networks and weights that come from elsewhere.
 *
 * PyTorch state_dicts load as they are, through --strip-prefix and
 * --rename, and in float64, float16 and bfloat16; a missing tensor's
 * message points at the closest name the file has; `llnc weights` lists a
 * file.  ONNX files made by PyTorch (tests/data/onnx/make_onnx.py) import
 * into models whose logits and radii equal a float64 evaluation of the
 * ONNX graph itself (tests/onnx_check.py); refused and malformed files get
 * their message and leave nothing behind.  Files are written byte by byte here, as the Python safetensors
 * package lays them out, so each value read back is known exactly.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "llnc.h"
#include "jit.h"
#include "onnx/onnx_import.h"

#define LLNC LLN_BINARY_DIR "/llnc"

#include "tmpfiles.h"

static char *slurp(const char *p)
{
	FILE *f = fopen(p, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)n + 1);
	size_t got = fread(b, 1, (size_t)n, f);
	b[got] = 0;
	fclose(f);
	return b;
}

/* 8-byte header length, the JSON header padded to 8, then the data. */
static const char *put_st(const char *name, const char *header, const void *data, size_t len)
{
	size_t hl = (strlen(header) + 7) / 8 * 8;
	const char *p = P_(name);
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	unsigned char lb[8];
	for (int i = 0; i < 8; i++)
		lb[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	fwrite(lb, 1, 8, f);
	fputs(header, f);
	for (size_t i = strlen(header); i < hl; i++)
		fputc(' ', f);
	if (len)
		fwrite(data, 1, len, f);
	assert_int_equal(fclose(f), 0);
	return p;
}

#define assert_err(call, want)              \
	do {                                    \
		err[0] = 0;                         \
		assert_int_equal((call), -1);       \
		assert_string_equal(err, (want));   \
	} while (0)

/* The model of tests/test_io.c: fc1 (2 -> 3), fc2 (3 -> 1). */
static const rt_tensor T[4] = {
	{"fc1.weight", 2, {3, 2}, 0, 6, 2, 0},
	{"fc1.bias", 1, {3}, 6, 3, 2, 1},
	{"fc2.weight", 2, {1, 3}, 9, 3, 3, 0},
	{"fc2.bias", 1, {1}, 12, 1, 3, 1},
};
#define NP 13

/* A wrapped nn.Sequential as PyTorch's save_file writes it: names sorted,
 * so biases lie first; value i + 1 at data position i. */
static const char *sequential(const char *name)
{
	float d[NP];
	for (int i = 0; i < NP; i++)
		d[i] = (float)(i + 1);
	return put_st(name,
	              "{\"__metadata__\":{\"format\":\"pt\"},"
	              "\"model.0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
	              "\"model.0.weight\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[12,36]},"
	              "\"model.2.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[36,40]},"
	              "\"model.2.weight\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[40,52]}}",
	              d, sizeof d);
}

static void check_sequential_values(const float *Q)
{
	assert_true(Q[0] == 4 && Q[5] == 9);    /* fc1.weight */
	assert_true(Q[6] == 1 && Q[8] == 3);    /* fc1.bias */
	assert_true(Q[9] == 11 && Q[11] == 13); /* fc2.weight */
	assert_true(Q[12] == 10);               /* fc2.bias */
}

static void test_names(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	float Q[NP];
	const char *p = sequential("seq.safetensors");
	rt_names nm = { 0 };
	assert_int_equal(rt_names_flag(&nm, "--strip-prefix", "model.", err), 0);
	assert_int_equal(rt_names_flag(&nm, "--rename", "0=fc1", err), 0);
	assert_int_equal(rt_names_flag(&nm, "--rename", "2=fc2", err), 0);
	assert_int_equal(rt_names_flag(&nm, "--weights", "x", err), 1);
	memset(Q, 0, sizeof Q);
	assert_int_equal(rt_params_load_named(T, 4, &nm, p, Q, err), 0);
	check_sequential_values(Q);

	/* whole-tensor renames work too, and are tried in order */
	rt_names whole = { .strip = "model.", .n = 4,
	                   .rename = { "0.weight=fc1.weight", "0.bias=fc1.bias", "2=fc2", "2.bias=unused" } };
	memset(Q, 0, sizeof Q);
	assert_err(rt_params_load_named(T, 4, &whole, p, Q, err),
	           msg("%s: --rename 2.bias=unused matches no tensor in the file", p));
	whole.n = 3;
	assert_int_equal(rt_params_load_named(T, 4, &whole, p, Q, err), 0);
	check_sequential_values(Q);

	/* a module rename does not take a longer module name's tensors */
	rt_names prefix = { .strip = "model.", .n = 2, .rename = { "0=fc1", "2=fc2" } };
	const char *h = "{\"model.0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
	                "\"model.0.weight\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[12,36]},"
	                "\"model.20.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[36,40]},"
	                "\"model.2.weight\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[40,52]}}";
	float d[NP] = { 0 };
	p = put_st("p20.safetensors", h, d, sizeof d);
	assert_err(rt_params_load_named(T, 4, &prefix, p, Q, err),
	           msg("%s: missing tensor 'fc2.bias'; closest in the file: '20.bias' [1]; the file has 4 "
	               "tensors: fc1.bias, fc1.weight, 20.bias, fc2.weight (map names with --rename "
	               "OLD=NEW or --strip-prefix P)", p));

	/* two tensors on one name */
	rt_names clash = { .n = 2, .rename = { "model.0=fc1", "model.2.weight=fc1.weight" } };
	p = sequential("seq.safetensors");
	assert_err(rt_params_load_named(T, 4, &clash, p, Q, err),
	           msg("%s: tensors 'model.0.weight' and 'model.2.weight' are both renamed to 'fc1.weight'", p));

	/* messages name the tensor both ways once it is renamed */
	rt_names shape = { .strip = "model.", .n = 2, .rename = { "0=fc2", "2=fc1" } };
	assert_err(rt_params_load_named(T, 4, &shape, p, Q, err),
	           msg("%s: tensor 'fc1.weight' (file: 'model.2.weight') has shape [1, 3], expected [3, 2]", p));

	/* without a mapping, the closest name is suggested */
	assert_err(rt_params_load(T, 4, p, Q, err),
	           msg("%s: missing tensor 'fc1.weight'; closest in the file: 'model.0.weight' [3, 2]; the "
	               "file has 4 tensors: model.0.bias, model.0.weight, model.2.bias, model.2.weight (map "
	               "names with --rename OLD=NEW or --strip-prefix P)", p));

	/* bad flag values */
	rt_names bad = { 0 };
	assert_err(rt_names_flag(&bad, "--rename", "fc1", err),
	           "--rename takes OLD=NEW with both names non-empty, got 'fc1'");
	assert_err(rt_names_flag(&bad, "--rename", "=fc1", err),
	           "--rename takes OLD=NEW with both names non-empty, got '=fc1'");
	assert_err(rt_names_flag(&bad, "--strip-prefix", "", err), "--strip-prefix needs a non-empty prefix");
	for (int i = 0; i < RT_MAX_RENAMES; i++)
		assert_int_equal(rt_names_flag(&bad, "--rename", "a=b", err), 0);
	assert_err(rt_names_flag(&bad, "--rename", "a=b", err), msg("--rename: at most %d renames", RT_MAX_RENAMES));
}

static uint16_t lo16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return (uint16_t)(u >> 16);
}

static void test_dtypes(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	float Q[NP];
	/* fc1.weight F64, fc1.bias F16, fc2.weight BF16, fc2.bias F32 */
	unsigned char data[6 * 8 + 3 * 2 + 3 * 2 + 4];
	double w64[6] = { 1.0 / 3, -2.5, 1e-30, 3e38, -0.0, 7 };
	/* 1, -2, the smallest subnormal 2^-24, 65504 (the largest half) */
	uint16_t h16[3] = { 0x3C00, 0xC000, 0x0001 };
	uint16_t b16[3] = { lo16(1.0f), lo16(-0.15625f), lo16(3.0e38f) };
	float b32 = 0.75f;
	memcpy(data, w64, 48);
	memcpy(data + 48, h16, 6);
	memcpy(data + 54, b16, 6);
	memcpy(data + 60, &b32, 4);
	const char *h = "{\"fc1.weight\":{\"dtype\":\"F64\",\"shape\":[3,2],\"data_offsets\":[0,48]},"
	                "\"fc1.bias\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[48,54]},"
	                "\"fc2.weight\":{\"dtype\":\"BF16\",\"shape\":[1,3],\"data_offsets\":[54,60]},"
	                "\"fc2.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[60,64]}}";
	const char *p = put_st("mixed.safetensors", h, data, sizeof data);
	assert_int_equal(rt_params_load(T, 4, p, Q, err), 0);
	for (int i = 0; i < 6; i++)
		assert_true(Q[i] == (float)w64[i]);
	assert_true(Q[6] == 1 && Q[7] == -2 && Q[8] == ldexpf(1, -24));
	assert_true(Q[9] == 1 && Q[10] == -0.15625f);
	uint32_t u;
	memcpy(&u, &Q[11], 4);
	assert_true(u == (uint32_t)b16[2] << 16);
	assert_true(Q[12] == 0.75f);

	uint16_t big = 0x7BFF, inf = 0x7C00;
	memcpy(data + 48, &big, 2);
	p = put_st("mixed.safetensors", h, data, sizeof data);
	assert_int_equal(rt_params_load(T, 4, p, Q, err), 0);
	assert_true(Q[6] == 65504);
	memcpy(data + 50, &inf, 2);
	p = put_st("mixed.safetensors", h, data, sizeof data);
	assert_err(rt_params_load(T, 4, p, Q, err), msg("%s: tensor 'fc1.bias' value 2 is NaN or infinite", p));
	w64[3] = 1e39;
	memcpy(data, w64, 48);
	p = put_st("mixed.safetensors", h, data, sizeof data);
	assert_err(rt_params_load(T, 4, p, Q, err), msg("%s: tensor 'fc1.weight' value 4 is out of float32 range", p));
}

static const char tiny_lln[] =
	"model tiny {\n"
	"  input x[2];\n"
	"  fc1 = relu(dense(x, 3));\n"
	"  fc2 = dense(fc1, 1);\n"
	"  output fc2;\n"
	"}\n"
	"objective { loss = sigmoid_cross_entropy; }\n";

/* The commands take the flags: `llnc weights` lists, `llnc eval` and
 * `llnc build --certifier` load a wrapped Sequential, with a note for the
 * converted dtype. */
static void test_commands(void **state)
{
	(void)state;
	const char *lln = P_("tiny.lln");
	FILE *f = fopen(lln, "w");
	fputs(tiny_lln, f);
	fclose(f);
	const char *seq = sequential("seq.safetensors");
	assert_int_equal(sh("%s weights %s", LLNC, seq), 0);
	char *out = slurp(P_("out"));
	assert_non_null(strstr(out, "model.0.bias                     F32   [3]\n"
	                            "model.0.weight                   F32   [3, 2]\n"));
	assert_non_null(strstr(out, "metadata format = pt\n4 tensors, 13 values\n"));
	free(out);
	assert_int_equal(sh("%s weights %s --strip-prefix model. --rename 0=fc1", LLNC, seq), 0);
	out = slurp(P_("out"));
	assert_non_null(strstr(out, "fc1.weight                       F32   [3, 2]  (file: model.0.weight)\n"));
	assert_non_null(strstr(out, "2.bias                           F32   [1]  (file: model.2.bias)\n"));
	free(out);
	assert_int_equal(sh("%s weights %s --rename", LLNC, seq), 2);
	assert_int_equal(sh("%s weights %s", LLNC, P_("nope.safetensors")), 1);

	/* eval with the renamed file gives what eval of the same weights under
	 * lln's own names gives */
	const char *csv = P_("d.csv");
	f = fopen(csv, "w");
	fputs("1,0.5,-0.25\n0,-1,2\n1,0.1,0.1\n", f);
	fclose(f);
	assert_int_equal(sh("%s eval %s --weights %s --data %s", LLNC, lln, seq, csv), 1);
	char *e = slurp(P_("err"));
	assert_non_null(strstr(e, "missing tensor 'fc1.weight'; closest in the file: 'model.0.weight'"));
	free(e);
	assert_int_equal(sh("%s eval %s --weights %s --data %s --strip-prefix model. --rename 0=fc1 "
	                    "--rename 2=fc2 --json", LLNC, lln, seq, csv), 0);
	char *renamed = slurp(P_("out"));
	float Q[NP];
	char err[RT_ERRLEN];
	rt_names nm = { .strip = "model.", .n = 2, .rename = { "0=fc1", "2=fc2" } };
	assert_int_equal(rt_params_load_named(T, 4, &nm, seq, Q, err), 0);
	const char *own = P_("own.safetensors");
	assert_int_equal(rt_params_save(T, 4, Q, NULL, 0, NULL, NULL, own, err), 0);
	assert_int_equal(sh("%s eval %s --weights %s --data %s --json", LLNC, lln, own, csv), 0);
	char *direct = slurp(P_("out"));
	assert_string_equal(renamed, direct);
	free(renamed);
	free(direct);

	/* build: the certifier of the renamed float64 file certifies the same
	 * numbers as that of lln's own file */
	double d64[NP];
	for (int i = 0; i < NP; i++)
		d64[i] = i + 1;
	const char *s64 = put_st("seq64.safetensors",
	                         "{\"0.bias\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[0,24]},"
	                         "\"0.weight\":{\"dtype\":\"F64\",\"shape\":[3,2],\"data_offsets\":[24,72]},"
	                         "\"2.bias\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[72,80]},"
	                         "\"2.weight\":{\"dtype\":\"F64\",\"shape\":[1,3],\"data_offsets\":[80,104]}}",
	                         d64, sizeof d64);
	assert_int_equal(sh("%s build %s --certifier --weights %s -o %s --rename 0=fc1 --rename 2=fc2", LLNC,
	                    lln, s64, P_("cert64")), 0);
	e = slurp(P_("err"));
	assert_string_equal(e, msg("%s: note: 4 tensors of dtype F64 converted to float32\n", s64));
	free(e);
	assert_int_equal(sh("%s build %s --certifier --weights %s -o %s", LLNC, lln, own, P_("cert32")), 0);
	f = fopen(P_("x.csv"), "w");
	fputs("0.5,-0.25\n-1,2\n0.1,0.1\n", f);
	fclose(f);
	assert_int_equal(sh("%s %s", P_("cert64"), P_("x.csv")), 0);
	char *a = slurp(P_("out"));
	assert_int_equal(sh("%s %s", P_("cert32"), P_("x.csv")), 0);
	char *b = slurp(P_("out"));
	assert_true(strlen(a) > 20);
	assert_string_equal(a, b);
	free(a);
	free(b);
}

/* ------------------------------------------------------------------------
 * ONNX import
 * ---------------------------------------------------------------------- */

#define ONNX_DIR LLN_SOURCE_DIR "/tests/data/onnx/"
#define PYTHON "/usr/bin/python3"

static bool close_to(double got, double want, double rel)
{
	if (isinf(want))
		return isinf(got);
	return fabs(got - want) <= rel * fabs(want) + 1e-6;
}

/* n examples of d values uniform in [lo, hi) (24 random bits each, from
 * a fixed seed), written to csv and returned. */
static float *random_csv(const char *csv, int n, int d, double lo, double hi, uint64_t seed)
{
	float *X = rt_alloc_floats((int64_t)n * d);
	FILE *f = fopen(csv, "w");
	assert_non_null(f);
	for (int64_t i = 0; i < (int64_t)n * d; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		X[i] = (float)(lo + (hi - lo) * ((seed >> 40) / 16777216.0));
		fprintf(f, "%.9g%s", X[i], (i + 1) % d ? "," : "\n");
	}
	assert_int_equal(fclose(f), 0);
	return X;
}

/* Compares, on random inputs in [0, 1], the logits and the six radii of
 * model m with parameters P against tests/onnx_check.py's float64
 * evaluation of the ONNX graph `onnx`, within relative tolerances. */
static void compare_onnx(const char *what, const rt_model *m, const float *P, const char *onnx, double rel_logit,
                         double rel_radius)
{
	enum { N = 6 };
	const char *csv = P_("onnx_x.csv");
	float *X = random_csv(csv, N, m->n_in, 0, 1, 0x9E3779B97F4A7C15ULL);
	assert_int_equal(sh("%s %s/tests/onnx_check.py %s %s", PYTHON, LLN_SOURCE_DIR, onnx, csv), 0);
	char *ref = slurp(P_("out"));
	rt_cert cert[N];
	rt_batch b = { .x = X, .n = N, .norms = RT_ALL_NORMS, .threads = 1, .cert = cert };
	assert_int_equal(rt_certify_batch(m, P, &b), 0);
	float *ws = rt_alloc_floats(m->ws_floats), *z = rt_alloc_floats(m->n_hidden + 1),
	      *logits = rt_alloc_floats(m->n_out);
	char *line = ref;
	for (int i = 0; i < N; i++) {
		m->forward(P, X + i * m->n_in, ws, z, logits);
		char *end;
		for (int k = 0; k < m->n_out; k++) {
			double want = strtod(line, &end);
			assert_true(end != line);
			line = end;
			if (!close_to(logits[k], want, rel_logit))
				fail_msg("%s input %d logit %d: lln %.9g, ONNX float64 %.9g", what, i, k, logits[k], want);
		}
		for (int k = 0; k < 6; k++) {
			double want = strtod(line, &end);
			assert_true(end != line);
			line = end;
			float got = k < 3 ? cert[i].eps[k] : cert[i].eps_pred[k - 3];
			if (!close_to(got, want, rel_radius))
				fail_msg("%s input %d radius %d: lln %.9g, ONNX float64 %.9g", what, i, k, got, want);
		}
	}
	free(ref);
	free(ws);
	free(z);
	free(logits);
	free(X);
}

/* Imports NAME.onnx, compiles the .lln in process and compares it with
 * the ONNX graph itself. */
static void check_import(const char *name)
{
	char out[400], onnx[512], lln[512], st[512];
	snprintf(out, sizeof out, "%s/%s", tmpdir, name);
	snprintf(lln, sizeof lln, "%s.lln", out);
	snprintf(st, sizeof st, "%s.safetensors", out);
	snprintf(onnx, sizeof onnx, "%s%s.onnx", ONNX_DIR, name);
	if (sh("%s import %s -o %s", LLNC, onnx, out) != 0) {
		char *e = slurp(P_("err"));
		fail_msg("llnc import %s: %s", name, e);
	}
	arena *a = arena_new();
	cg_unit *u;
	const rt_model *m = jit_source(a, source_load(a, lln), test_opt(3), &u);
	float *P = rt_alloc_floats(m->n_params);
	char err[RT_ERRLEN];
	if (rt_params_load(m->tensors, m->n_tensors, st, P, err))
		fail_msg("%s", err);
	compare_onnx(name, m, P, onnx, 1e-4, 1e-3);
	free(P);
	cg_unit_free(u);
	arena_free(a);
}

static void test_onnx_models(void **state)
{
	(void)state;
	check_import("dense");             /* scalar Sub/Div: normalize(...) */
	check_import("dense_perfeature");  /* per-feature normalisation folded into fc1 */
	check_import("conv");              /* BatchNormalization folded; initializers as inputs */
	check_import("avgpool");
	check_import("residual");          /* add, and a zero Pad before AveragePool */
	char *text = slurp(P_("conv.lln"));
	assert_non_null(strstr(text, "  input x[1, 6, 6] normalize(0.1, 0.3);\n"));
	assert_non_null(strstr(text, "  conv2 = relu(conv2d(conv1, 4, kernel = 3, stride = 2, padding = 1));\n"));
	assert_non_null(strstr(text, "'/4/BatchNormalization' (BatchNormalization)"));
	free(text);
	text = slurp(P_("dense_perfeature.lln"));
	assert_non_null(strstr(text, "  input x[6];\n"));
	free(text);
	text = slurp(P_("residual.lln"));
	assert_non_null(strstr(text, "  add1 = relu(add(conv2, conv1));\n"));
	free(text);
}

static void expect_refusal(const char *file, const char *want)
{
	int rc = sh("%s import %s -o %s", LLNC, file, P_("refused"));
	char *e = slurp(P_("err"));
	if (rc != 1 || !strstr(e, want))
		fail_msg("llnc import %s exited %d with '%s', expected 1 and '%s'", file, rc, e, want);
	free(e);
	struct stat sb;
	assert_int_equal(stat(P_("refused.lln"), &sb), -1);
	assert_int_equal(stat(P_("refused.safetensors"), &sb), -1);
}

static void test_onnx_refusals(void **state)
{
	(void)state;
	expect_refusal(ONNX_DIR "maxpool.onnx", "maxpool.onnx: node 2 '/2/MaxPool' (MaxPool): lln has no such operation");
	expect_refusal(ONNX_DIR "conv_channelnorm.onnx",
	               "conv_channelnorm.onnx: node 2 '/1/Conv' (Conv): is a padded convolution after a "
	               "normalisation that differs per channel");
	/* malformed files: a clear message, never a crash */
	FILE *f = fopen(P_("junk.onnx"), "wb");
	for (int i = 0; i < 3000; i++)
		fputc((i * 7919) & 255, f);
	fclose(f);
	expect_refusal(P_("junk.onnx"), "junk.onnx: not an ONNX model (the protobuf does not parse)");
	f = fopen(P_("empty.onnx"), "wb");
	fclose(f);
	expect_refusal(P_("empty.onnx"), "empty.onnx: ONNX opset 0 is not supported");
	expect_refusal(P_("nope.onnx"), "nope.onnx: cannot read: No such file or directory");
	expect_refusal(tmpdir, "cannot read: Is a directory");
	/* every truncation of a real file */
	char *whole = NULL;
	size_t len = 0;
	f = fopen(ONNX_DIR "residual.onnx", "rb");
	assert_non_null(f);
	whole = malloc(1 << 16);
	len = fread(whole, 1, 1 << 16, f);
	fclose(f);
	char err[RT_ERRLEN];
	for (size_t cut = 0; cut < len; cut++) {
		err[0] = 0;
		int rc = onnx_import_buffer("cut.onnx", (const uint8_t *)whole, cut, NULL, err);
		assert_int_equal(rc, -1);
		assert_true(strncmp(err, "cut.onnx: ", 10) == 0);
	}
	assert_int_equal(onnx_import_buffer("whole.onnx", (const uint8_t *)whole, len, NULL, err), 0);
	free(whole);
	assert_int_equal(sh("%s import --help", LLNC), 0);
	assert_int_equal(sh("%s import %sdense.onnx", LLNC, ONNX_DIR), 2);
}

/* ------------------------------------------------------------------------
 * ONNX export
 * ---------------------------------------------------------------------- */

/* The same model up to statement names: ops, operands, shapes, attributes,
 * ReLUs, normalisation and parameter layout. */
static void assert_same_ir(const ir_module *x, const ir_module *y)
{
	assert_int_equal(x->n_ops, y->n_ops);
	assert_int_equal(x->n_params, y->n_params);
	assert_true(x->in_c == y->in_c && x->in_h == y->in_h && x->in_w == y->in_w && x->n_out == y->n_out);
	assert_true(x->mean == y->mean && x->std == y->std);
	for (int k = 0; k < x->n_ops; k++) {
		const ir_op *a = &x->ops[k], *b = &y->ops[k];
		if (a->kind != b->kind || a->n_in != b->n_in || a->in[0] != b->in[0] ||
		    (a->n_in > 1 && a->in[1] != b->in[1]) || a->oc != b->oc || a->oh != b->oh || a->ow != b->ow ||
		    a->ic != b->ic || a->ih != b->ih || a->iw != b->iw || a->kernel != b->kernel ||
		    a->stride != b->stride || a->padding != b->padding || a->relu != b->relu ||
		    a->w_off != b->w_off || a->b_off != b->b_off)
			fail_msg("op %d: %s (%s) and %s (%s) differ", k, a->name, op_catalogue[a->kind].name, b->name,
			         op_catalogue[b->kind].name);
	}
}

/* P of the model of `lln` from `st`, with the model's IR in *ir. */
static float *load_params(arena *a, const char *lln, const char *st, ir_module **ir)
{
	*ir = jit_ir(a, source_load(a, lln));
	float *P = rt_alloc_floats((*ir)->n_params);
	char err[RT_ERRLEN];
	if (rt_params_load((*ir)->tensors, (*ir)->n_tensors, st, P, err))
		fail_msg("%s", err);
	return P;
}

/* Exports LLN with initial weights: onnx.checker accepts the file, the
 * ONNX graph computes lln's logits and radii, and importing it gives the
 * same model with the same weights, bit for bit. */
static void check_export(const char *lln, const char *name)
{
	char st[512], onnx[512], back[512], back_lln[600], back_st[600];
	snprintf(st, sizeof st, "%s/%s.safetensors", tmpdir, name);
	snprintf(onnx, sizeof onnx, "%s/%s.onnx", tmpdir, name);
	snprintf(back, sizeof back, "%s/%s_back", tmpdir, name);
	snprintf(back_lln, sizeof back_lln, "%s.lln", back);
	snprintf(back_st, sizeof back_st, "%s.safetensors", back);
	assert_int_equal(sh("%s init %s --seed 7 -o %s", LLNC, lln, st), 0);
	if (sh("%s export %s --weights %s -o %s", LLNC, lln, st, onnx) != 0)
		fail_msg("llnc export %s: %s", lln, slurp(P_("err")));
	if (sh("%s -c 'import onnx, sys; m = onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True); "
	       "print(m.ir_version, m.opset_import[0].version, m.graph.input[0].name, m.graph.output[0].name, "
	       "*[n.op_type for n in m.graph.node])' %s", PYTHON, onnx) != 0)
		fail_msg("onnx.checker on %s: %s", onnx, slurp(P_("err")));
	char *out = slurp(P_("out"));
	assert_true(strncmp(out, "7 13 input logits ", 18) == 0);
	free(out);

	arena *a = arena_new();
	cg_unit *u;
	const rt_model *m = jit_source(a, source_load(a, lln), test_opt(3), &u);
	ir_module *ir, *ir_back;
	float *P = load_params(a, lln, st, &ir);
	compare_onnx(name, m, P, onnx, 1e-5, 1e-4);

	if (sh("%s import %s -o %s", LLNC, onnx, back) != 0)
		fail_msg("llnc import %s: %s", onnx, slurp(P_("err")));
	float *Q = load_params(a, back_lln, back_st, &ir_back);
	assert_same_ir(ir, ir_back);
	assert_memory_equal(P, Q, (size_t)ir->n_params * sizeof *P);
	free(P);
	free(Q);
	cg_unit_free(u);
	arena_free(a);
}

/* The statement lines of an .lln file, without comments. */
static char *statements(const char *path)
{
	char *text = slurp(path), *o = text;
	assert_non_null(text);
	for (char *line = text; *line;) {
		char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line + 1) : strlen(line);
		const char *p = line + strspn(line, " ");
		if (*p != '#') {
			memmove(o, line, len);
			o += len;
		}
		line += len;
	}
	*o = 0;
	return text;
}

/* ONNX from PyTorch, imported, exported and imported again: the same .lln
 * statements and the same weights. */
static void check_reimport(const char *name)
{
	char first[512], second[512], onnx[512], l1[600], l2[600], s1[600], s2[600];
	snprintf(first, sizeof first, "%s/one/%s", tmpdir, name);
	snprintf(second, sizeof second, "%s/two/%s", tmpdir, name);
	snprintf(onnx, sizeof onnx, "%s/one/%s.onnx", tmpdir, name);
	snprintf(l1, sizeof l1, "%s.lln", first);
	snprintf(l2, sizeof l2, "%s.lln", second);
	snprintf(s1, sizeof s1, "%s.safetensors", first);
	snprintf(s2, sizeof s2, "%s.safetensors", second);
	assert_int_equal(sh("mkdir -p %s/one %s/two && %s import %s%s.onnx -o %s && %s export %s --weights %s -o %s && "
	                    "%s import %s -o %s", tmpdir, tmpdir, LLNC, ONNX_DIR, name, first, LLNC, l1, s1, onnx,
	                    LLNC, onnx, second), 0);
	char *a = statements(l1), *b = statements(l2);
	assert_string_equal(a, b);
	free(a);
	free(b);
	arena *ar = arena_new();
	ir_module *ir1, *ir2;
	float *P = load_params(ar, l1, s1, &ir1), *Q = load_params(ar, l2, s2, &ir2);
	assert_memory_equal(P, Q, (size_t)ir1->n_params * sizeof *P);
	free(P);
	free(Q);
	arena_free(ar);
}

static void test_onnx_export(void **state)
{
	(void)state;
	check_export(LLN_SOURCE_DIR "/examples/mnist_fc.lln", "mnist_fc");
	check_export(LLN_SOURCE_DIR "/tests/data/cnn.lln", "cnn");
	check_reimport("dense");
	check_reimport("dense_perfeature");
	check_reimport("conv");
	check_reimport("residual");

	/* the graph's form */
	char *text = slurp(P_("cnn_back.lln"));
	assert_non_null(strstr(text, "  input x[1, 12, 12] normalize(0.5, 0.25);\n"));
	assert_non_null(strstr(text, "# node 8 'c3' (Conv), node 9 'c3/relu' (Relu), node 10 'c3/flatten' (Flatten)\n"));
	assert_non_null(strstr(text, "  add1 = relu(add(conv2, conv1));\n"));
	free(text);

	/* usage and errors; nothing is written on failure */
	const char *lln = LLN_SOURCE_DIR "/tests/data/cnn.lln";
	assert_int_equal(sh("%s export --help", LLNC), 0);
	assert_non_null(strstr(text = slurp(P_("out")), "usage: llnc export FILE.lln --weights"));
	free(text);
	assert_int_equal(sh("%s export %s -o %s", LLNC, lln, P_("x.onnx")), 2);
	assert_int_equal(sh("%s export %s --weights %s -o %s", LLNC, lln, P_("mnist_fc.safetensors"), P_("x.onnx")), 1);
	assert_non_null(strstr(text = slurp(P_("err")), "missing tensor 'c1.weight'"));
	free(text);
	struct stat sb;
	assert_int_equal(stat(P_("x.onnx"), &sb), -1);
	assert_int_equal(sh("%s export %s --weights %s -o %s", LLNC, lln, P_("cnn.safetensors"), P_("nodir/x.onnx")), 1);
	assert_non_null(strstr(text = slurp(P_("err")), "cannot write"));
	free(text);
}

/* ------------------------------------------------------------------------
 * VNN-LIB properties of the certifier
 * ---------------------------------------------------------------------- */

/* Reads DIR/prop_INDEX.vnnlib back and checks it against the certifier's
 * record of that input (label, eps_pred_linf) and the input x: every X_i
 * bounded by exactly x_i -+ r in double, every Y_j declared, and the
 * disjunction naming every other class against the label. */
static void check_property(const char *dir, int index, const float *x, int n_in, int n_out, int label, float r)
{
	char path[600];
	snprintf(path, sizeof path, "%s/prop_%d.vnnlib", dir, index);
	char *text = slurp(path);
	if (!text)
		fail_msg("%s is missing", path);
	int nx = 0, ny = 0, nlo = 0, nhi = 0, seen[16] = { 0 }, n_or = 0;
	bool binary = false;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		int i, k, y, len = 0;
		char op[3];
		if (sscanf(line, "(declare-const X_%d Real)%n", &i, &len) == 1 && len && i == nx)
			nx++;
		else if (sscanf(line, "(declare-const Y_%d Real)%n", &i, &len) == 1 && len && i == ny)
			ny++;
		else if (sscanf(line, "(assert (%2[<>=] X_%d %n", op, &i, &len) == 2 && len) {
			assert_true(i >= 0 && i < n_in);
			/* the box is around the input as given (the CSV's decimals, which
			 * the float x rounds by at most 2^-24 |x|), rounded inward */
			double v = strtod(line + len, NULL), want = strcmp(op, ">=") ? (double)x[i] + r : (double)x[i] - r;
			double inward = strcmp(op, ">=") ? want - v : v - want;
			if (!(fabs(v - want) <= 0x1p-23 * fabs((double)x[i]) + 0x1p-50 * fabs(want)) || !(r == 0 || inward > -0x1p-23 * fabs((double)x[i])))
				fail_msg("%s: X_%d %s %.17g, expected %.17g", path, i, op, v, want);
			strcmp(op, ">=") ? nhi++ : nlo++;
		} else if (sscanf(line, "    (and (>= Y_%d Y_%d))", &k, &y) == 2) {
			assert_int_equal(y, label);
			assert_true(k >= 0 && k < n_out && k != label && !seen[k]);
			seen[k] = 1;
			n_or++;
		} else if (!strcmp(line, label ? "(assert (<= Y_0 0))" : "(assert (>= Y_0 0))")) {
			binary = true;
		} else if (line[0] != ';' && strcmp(line, "(assert (or") && strcmp(line, "))")) {
			fail_msg("%s: unexpected line '%s'", path, line);
		}
	}
	assert_true(nx == n_in && ny == n_out && nlo == n_in && nhi == n_in);
	assert_true(n_out == 1 ? binary && n_or == 0 : n_or == n_out - 1 && !binary);
	free(text);
}

/* Certifies inputs with --vnnlib DIR: one property per input that matches
 * the certifier's own record; the exported ONNX graph keeps the predicted
 * class on the box (tests/vnnlib_check.py samples it); bad uses fail. */
static int check_vnnlib(const char *lln, const char *name, int n_inputs, int seed)
{
	int labels = 0;   /* the classes predicted, as bits */
	char st[512], bin[512], onnx[512], csv[512], dir[512];
	snprintf(st, sizeof st, "%s/%s_v.safetensors", tmpdir, name);
	snprintf(bin, sizeof bin, "%s/%s_cert", tmpdir, name);
	snprintf(onnx, sizeof onnx, "%s/%s_v.onnx", tmpdir, name);
	snprintf(csv, sizeof csv, "%s/%s_x.csv", tmpdir, name);
	snprintf(dir, sizeof dir, "%s/%s_props", tmpdir, name);
	assert_int_equal(sh("%s init %s --seed %d -o %s && %s build %s --certifier --weights %s -o %s && "
	                    "%s export %s --weights %s -o %s", LLNC, lln, seed, st, LLNC, lln, st, bin, LLNC, lln, st,
	                    onnx), 0);
	arena *a = arena_new();
	ir_module *ir = jit_ir(a, source_load(a, lln));
	int n_in = ir->n_in, n_out = ir->n_out;
	float *X = random_csv(csv, n_inputs, n_in, -0.5, 1.5, 0x2545F4914F6CDD1DULL);
	if (sh("%s %s --vnnlib %s", bin, csv, dir) != 0)
		fail_msg("%s --vnnlib: %s", bin, slurp(P_("err")));
	char *out = slurp(P_("out")), *line = out;
	for (int i = 0; i < n_inputs; i++) {
		int label;
		float eps;
		char *lp = strstr(line, "\"pred\":"), *ep = strstr(line, "\"eps_pred_linf\":");
		assert_true(lp && ep);
		assert_int_equal(sscanf(lp, "\"pred\":%d", &label), 1);
		assert_int_equal(sscanf(ep, "\"eps_pred_linf\":%g", &eps), 1);
		labels |= 1 << label;
		check_property(dir, i, X + (int64_t)i * n_in, n_in, n_out, label, eps);
		char prop[600];
		snprintf(prop, sizeof prop, "%s/prop_%d.vnnlib", dir, i);
		if (sh("%s %s/tests/vnnlib_check.py %s %s 20", PYTHON, LLN_SOURCE_DIR, onnx, prop) != 0)
			fail_msg("vnnlib_check.py %s: %s%s", prop, slurp(P_("out")), slurp(P_("err")));
		line = strchr(ep, '\n');
		assert_non_null(line);
	}
	free(out);
	char extra[600];
	snprintf(extra, sizeof extra, "%s/prop_%d.vnnlib", dir, n_inputs);
	struct stat sb;
	assert_int_equal(stat(extra, &sb), -1);

	assert_int_equal(sh("%s %s --vnnlib %s --norms 1,2", bin, csv, dir), 2);
	assert_non_null(strstr(out = slurp(P_("err")), "--vnnlib states the l_inf ball: give inf among --norms"));
	free(out);
	assert_int_equal(sh("%s %s --vnnlib %s", bin, csv, csv), 1);
	assert_non_null(strstr(out = slurp(P_("err")), msg("cannot write %s: Not a directory", csv)));
	free(out);
	free(X);
	arena_free(a);
	return labels;
}

static void test_vnnlib(void **state)
{
	(void)state;
	check_vnnlib(LLN_SOURCE_DIR "/tests/data/cnn.lln", "cnn", 3, 11);
	const char *tiny = P_("tiny.lln");
	FILE *f = fopen(tiny, "w");
	fputs(tiny_lln, f);
	fclose(f);
	/* one logit: the property bounds Y_0, on either side */
	assert_int_equal(check_vnnlib(tiny, "tiny", 5, 1), 3);
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/lln-test-interop-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_dtypes),
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_onnx_models),
		cmocka_unit_test(test_onnx_refusals),
		cmocka_unit_test(test_onnx_export),
		cmocka_unit_test(test_vnnlib),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
