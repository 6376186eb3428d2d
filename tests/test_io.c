/* test_io.c: the runtime's statistics, readers, writers, random numbers
 * and thread pool.
 *
 * Everything a user's files pass through is pinned here: good files of each
 * format load with the right values, and each kind of bad file is rejected
 * with its exact message, since those messages are documented
 * (docs/formats.md) and are all a user sees.  Tests write their own small
 * files into a fresh temporary directory, removed at the end; nothing is
 * read from the network or from the source tree.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "rt.h"

#include "tmpfiles.h"

static unsigned char *slurp(const char *p, size_t *len)
{
	FILE *f = fopen(p, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *b = malloc((size_t)n + 1);
	assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return b;
}

/* Files in tmpdir whose name contains `part`. */
static int count_files(const char *part)
{
	DIR *d = opendir(tmpdir);
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.' && strstr(e->d_name, part) != NULL;
	closedir(d);
	return n;
}

static void clean_tmpdir(void)
{
	DIR *d = opendir(tmpdir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlink(P_(e->d_name));
	closedir(d);
	rmdir(tmpdir);
}

/* cmocka 1.1.5 has only assert_float_equal, whose float cast is too coarse
 * for comparing doubles against numpy's values. */
#define assert_double_equal(a, b, eps) assert_true(fabs((double)(a) - (double)(b)) <= (eps))

/* Asserts a failure with exactly this message. */
#define assert_err(call, want)              \
	do {                                    \
		err[0] = 0;                         \
		assert_int_equal((call), -1);       \
		assert_string_equal(err, (want));   \
	} while (0)

/* ========================================================================
 * Statistics
 * ====================================================================== */

static void test_percentile(void **state)
{
	(void)state;
	const float a[] = {4, 1, 3, 2};
	/* hand values, and numpy.percentile's for the same inputs */
	assert_true(rt_percentile(a, 4, 50) == 2.5);
	assert_true(rt_percentile(a, 4, 25) == 1.75);
	assert_true(rt_percentile(a, 4, 0) == 1);
	assert_true(rt_percentile(a, 4, 100) == 4);
	assert_double_equal(rt_percentile(a, 4, 90), 3.7, 1e-12);
	float ten[10];
	for (int i = 0; i < 10; i++)
		ten[i] = (float)(10 - i);
	assert_double_equal(rt_percentile(ten, 10, 90), 9.1, 1e-12);
	const float b[] = {50, 40, 30, 20, 10};
	assert_double_equal(rt_percentile(b, 5, 33), 23.2, 1e-12);
	const float c[] = {3, 1, 2};
	assert_double_equal(rt_percentile(c, 3, 10), 1.2, 1e-12);
	/* the input is left alone */
	assert_true(a[0] == 4 && a[1] == 1 && a[2] == 3 && a[3] == 2);
	/* inf sorts last, never produces NaN */
	const float d[] = {INFINITY, 1, 2};
	assert_true(rt_percentile(d, 3, 0) == 1);
	assert_true(rt_percentile(d, 3, 50) == 2);
	assert_true(isinf(rt_percentile(d, 3, 75)));
	assert_true(isinf(rt_percentile(d, 3, 100)));
	const float e[] = {INFINITY, INFINITY};
	assert_true(isinf(rt_percentile(e, 2, 50)));
	const float f[] = {7};
	assert_true(rt_percentile(f, 1, 37) == 7);
	assert_true(isnan(rt_percentile(f, 0, 50)));
	const float g[] = {1, NAN, 3};
	assert_true(isnan(rt_percentile(g, 3, 50)));
}

static void test_pattern_hash(void **state)
{
	(void)state;
	const float z1[] = {1, -1, 2, 0, 5, 5, 5, -5, 0.5f};
	const float z2[] = {9, -9, 1e-6f, -0.0f, 1, 2, 3, -1e9f, 7};   /* same signs */
	const float z3[] = {9, -9, 1e-6f, -0.0f, 1, 2, 3, -1e9f, -7};  /* last differs */
	assert_true(rt_pattern_hash(z1, 9) == rt_pattern_hash(z2, 9));
	assert_true(rt_pattern_hash(z1, 9) != rt_pattern_hash(z3, 9));
	assert_true(rt_pattern_hash(z1, 8) == rt_pattern_hash(z3, 8));
	/* all-negative patterns of different lengths differ */
	const float neg[] = {-1, -1, -1};
	assert_true(rt_pattern_hash(neg, 2) != rt_pattern_hash(neg, 3));
	/* FNV-1a of eight zero bytes (n = 0): a fixed value */
	uint64_t h = 0xcbf29ce484222325ULL;
	for (int i = 0; i < 8; i++)
		h *= 0x100000001b3ULL;
	assert_true(rt_pattern_hash(neg, 0) == h);
}

static void test_count_distinct(void **state)
{
	(void)state;
	const uint64_t h[] = {3, 1, 3, 2, 1, UINT64_MAX};
	assert_int_equal(rt_count_distinct(h, 6), 4);
	assert_int_equal(rt_count_distinct(h, 1), 1);
	assert_int_equal(rt_count_distinct(h, 0), 0);
	assert_true(h[0] == 3 && h[5] == UINT64_MAX);
}

static void test_layer_of(void **state)
{
	(void)state;
	const rt_layer L[] = {{"a", 3, 0, 0, 0, 0}, {"b", 2, 3, 0, 0, 0}, {"c", 4, 5, 0, 0, 0}};
	rt_model m = {0};
	m.n_hidden = 9;
	m.n_layers = 3;
	m.layers = L;
	int32_t i;
	assert_ptr_equal(rt_layer_of(&m, 0, &i), &L[0]);
	assert_int_equal(i, 0);
	assert_ptr_equal(rt_layer_of(&m, 2, &i), &L[0]);
	assert_int_equal(i, 2);
	assert_ptr_equal(rt_layer_of(&m, 3, &i), &L[1]);
	assert_int_equal(i, 0);
	assert_ptr_equal(rt_layer_of(&m, 4, &i), &L[1]);
	assert_int_equal(i, 1);
	assert_ptr_equal(rt_layer_of(&m, 8, &i), &L[2]);
	assert_int_equal(i, 3);
	assert_null(rt_layer_of(&m, 9, &i));
	assert_int_equal(i, -1);
	assert_null(rt_layer_of(&m, -1, &i));
}

/* ========================================================================
 * CSV
 * ====================================================================== */

static void test_csv_good(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	rt_data d;
	const char *p = puts_("a.csv", "# comment\n\n1,2,3\r\n 4 , 5.5 ,-6e-1\n  \n# x\n7,8,9");
	assert_int_equal(rt_data_read(p, 0, false, &d, err), 0);
	assert_int_equal(d.n, 3);
	assert_int_equal(d.dim, 3);
	assert_null(d.y);
	const float want[] = {1, 2, 3, 4, 5.5f, -0.6f, 7, 8, 9};
	for (int i = 0; i < 9; i++)
		assert_true(d.x[i] == want[i]);
	rt_data_free(&d);
	assert_int_equal(rt_data_read(p, 3, false, &d, err), 0);
	assert_int_equal(d.n, 3);
	rt_data_free(&d);

	/* a header row is recognised by a first field that is not a number */
	p = puts_("h.csv", "x0,x1\n0.25,1\n");
	assert_int_equal(rt_data_read(p, 2, false, &d, err), 0);
	assert_int_equal(d.n, 1);
	assert_true(d.x[0] == 0.25f && d.x[1] == 1);
	rt_data_free(&d);

	p = puts_("l.csv", "label,a,b\n3,0.5,1\n0,2,3\n12.0,4,5\n");
	assert_int_equal(rt_data_read(p, 0, true, &d, err), 0);
	assert_int_equal(d.n, 3);
	assert_int_equal(d.dim, 2);
	assert_int_equal(d.y[0], 3);
	assert_int_equal(d.y[1], 0);
	assert_int_equal(d.y[2], 12);
	assert_true(d.x[0] == 0.5f && d.x[5] == 5);
	rt_data_free(&d);
}

/* .ts sequences: channel-major lines become time-major frames, labels are
 * positions in @classLabel, lengths may differ; the readers take a .ts file
 * of one length as fixed-length examples. */
static void test_ts_good(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	const char *p = puts_("a.ts", "# comment\n@problemName Toy\n@univariate false\n@dimensions 2\n"
	                              "@equalLength false\n@classLabel true up down\n@data\n"
	                              "1,2,3:0.1,0.2,0.3:down\r\n\n 4 , 5:6,7 : up\n0.1:2e-1:down\n");
	rt_seqdata d;
	assert_int_equal(rt_ts_read(p, &d, err), 0);
	assert_int_equal(d.n, 3);
	assert_int_equal(d.F, 2);
	assert_int_equal(d.n_classes, 2);
	assert_string_equal(d.classes[1], "down");
	const int64_t start[] = { 0, 3, 5, 6 };
	for (int i = 0; i < 4; i++)
		assert_int_equal(d.start[i], start[i]);
	const int32_t y[] = { 1, 0, 1 };
	for (int i = 0; i < 3; i++)
		assert_int_equal(d.y[i], y[i]);
	const float x[] = { 1, 0.1f, 2, 0.2f, 3, 0.3f, 4, 6, 5, 7, 0.1f, 0.2f };
	for (int i = 0; i < 12; i++)
		assert_true(d.x[i] == x[i]);
	assert_true(d.xlo[1] == (float)(0.1 - (double)0.1f) && d.xlo[1] != 0);
	rt_seqdata_free(&d);

	/* equal lengths: examples of a fixed-length model, with labels */
	p = puts_("b.ts", "@univariate true\n@classLabel true 0 1\n@data\n1,2,3:1\n4,5,6:0\n");
	rt_data e;
	assert_int_equal(rt_data_read(p, 3, true, &e, err), 0);
	assert_int_equal(e.n, 2);
	assert_int_equal(e.dim, 3);
	assert_true(e.x[3] == 4 && e.y[0] == 1 && e.y[1] == 0);
	rt_data_free(&e);
	assert_int_equal(rt_data_read(p, 0, false, &e, err), 0);
	assert_int_equal(e.dim, 3);
	assert_null(e.y);
	rt_data_free(&e);
	assert_err(rt_data_read(p, 4, false, &e, err),
	           msg("%s: record 1: a sequence of 3 frames, but the model takes 4 frames of 1 values (its input has a "
	               "fixed length; docs/language.md, rnn)", p));
	p = puts_("c.ts", "@dimensions 2\n@classLabel false\n@data\n1,2:3,4\n");
	assert_err(rt_data_read(p, 4, true, &e, err), msg("%s: has no class labels (@classLabel false)", p));
	assert_err(rt_data_read(p, 5, false, &e, err),
	           msg("%s: holds frames of 2 values, and 5 values per example are not a whole number of frames", p));
	assert_int_equal(rt_data_read(p, 4, false, &e, err), 0);
	assert_true(e.x[0] == 1 && e.x[1] == 3 && e.x[2] == 2 && e.x[3] == 4);
	rt_data_free(&e);
}

/* Every malformed case is refused with the line it is on. */
static void test_ts_errors(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	rt_seqdata d;
	static const struct { const char *text, *want; } cases[] = {
		{ "@classLabel true a\n@data\n1,2:a\n", NULL },
		{ "@dimensions 2\n@classLabel true a b\n@data\n1,2:3:a\n",
		  "line 4: channel 2 has 1 values but channel 1 has 2: the channels of a sequence must be equally long" },
		{ "@dimensions 2\n@classLabel true a\n@data\n1,?:3,4:a\n",
		  "line 4: channel 1, value 2 is missing ('?'); lln needs complete sequences" },
		{ "@dimensions 2\n@classLabel true a\n@data\n1,2:3,4:c\n",
		  "line 4: class label 'c' is not in the @classLabel list" },
		{ "@dimensions 3\n@classLabel true a\n@data\n1,2:3,4:a\n", "line 4: 2 channels, expected 3 (@dimensions)" },
		{ "@classLabel true a\n@data\n1,x2:a\n", "line 3: channel 1, value 2: expected a finite number, got 'x2'" },
		{ "@classLabel true a\n@data\n1,inf:a\n", "line 3: channel 1, value 2: expected a finite number, got 'inf'" },
		{ "@classLabel true a\n@data\n1,,2:a\n", "line 3: channel 1, value 2: expected a finite number, got ''" },
		{ "@classLabel true a\n@data\n1,2\n", "line 3: no class label: the line must end with ':LABEL'" },
		{ "@equalLength true\n@classLabel false\n@data\n1,2\n1,2,3\n",
		  "line 5: 3 values per channel, but the first sequence has 2 and @equalLength is true" },
		{ "@seriesLength 2\n@classLabel false\n@data\n1,2,3\n", "line 4: 3 values per channel, expected 2 (@seriesLength)" },
		{ "@dimensions 0\n", "line 1: @dimensions takes a positive integer, got '0'" },
		{ "@univariate maybe\n", "line 1: @univariate takes true or false" },
		{ "@timeStamps true\n", "line 1: @timeStamps true is not supported: give the values without time stamps" },
		{ "@targetLabel true\n", "line 1: @targetLabel (regression) is not supported: lln classifies" },
		{ "@colour blue\n", "line 1: unknown header '@colour'" },
		{ "@classLabel true a a\n", "line 1: class label 'a' is listed twice" },
		{ "@classLabel true\n", "line 1: @classLabel true lists no labels" },
		{ "@problemName x\n@data\n", "line 2: @data before @classLabel: say whether the sequences carry class labels" },
		{ "1,2,3\n", "line 1: expected a header line (@name ...) or @data" },
		{ "@classLabel false\n", "no @data line: not a .ts file" },
		{ "@classLabel false\n@data\n# nothing\n", "holds no sequences" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		char name[16];
		snprintf(name, sizeof name, "e%zu.ts", i);
		const char *p = puts_(name, cases[i].text);
		if (!cases[i].want) {
			assert_int_equal(rt_ts_read(p, &d, err), 0);
			rt_seqdata_free(&d);
			continue;
		}
		assert_err(rt_ts_read(p, &d, err), msg("%s: %s", p, cases[i].want));
		assert_null(d.x);
	}
	assert_err(rt_ts_read("/nonexistent/x.ts", &d, err), "/nonexistent/x.ts: cannot read: No such file or directory");
}

/* The shipped Japanese Vowels files (examples/data/japanese_vowels): 270
 * training and 370 test sequences of 7 to 26 and 7 to 29 frames of 12 values, 9
 * speakers, the test set's per-speaker counts those of the UCI description. */
static void test_ts_japanese_vowels(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	static const char *const files[2] = { "JapaneseVowels_TRAIN.ts", "JapaneseVowels_TEST.ts" };
	static const int64_t n[2] = { 270, 370 }, longest_want[2] = { 26, 29 };
	static const int per_class[2][9] = { { 30, 30, 30, 30, 30, 30, 30, 30, 30 },
	                                     { 31, 35, 88, 44, 29, 24, 40, 50, 29 } };
	for (int f = 0; f < 2; f++) {
		char path[512];
		snprintf(path, sizeof path, "%s/examples/data/japanese_vowels/%s", LLN_SOURCE_DIR, files[f]);
		rt_seqdata d;
		if (rt_ts_read(path, &d, err))
			fail_msg("%s", err);
		assert_int_equal(d.n, n[f]);
		assert_int_equal(d.F, 12);
		assert_int_equal(d.n_classes, 9);
		int count[9] = { 0 };
		int64_t shortest = INT64_MAX, longest = 0;
		for (int64_t i = 0; i < d.n; i++) {
			int64_t T = d.start[i + 1] - d.start[i];
			shortest = T < shortest ? T : shortest;
			longest = T > longest ? T : longest;
			assert_true(d.y[i] >= 0 && d.y[i] < 9);
			count[d.y[i]]++;
		}
		assert_int_equal(shortest, 7);
		assert_int_equal(longest, longest_want[f]);
		for (int k = 0; k < 9; k++)
			assert_int_equal(count[k], per_class[f][k]);
		rt_seqdata_free(&d);
	}
}

static void test_csv_errors(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	rt_data d;
	const char *p;
	p = puts_("e1.csv", "1,2,3,4,5\n1,2,3,4,5\n1,2,3,4,abc\n");
	assert_err(rt_data_read(p, 0, false, &d, err), msg("%s: record 3: field 5 is not a number: 'abc'", p));
	assert_null(d.x);
	p = puts_("e2.csv", "h1,h2\n1,2\n1,2\n1,nan\n");
	assert_err(rt_data_read(p, 0, false, &d, err), msg("%s: record 3: field 2 is NaN or infinite", p));
	p = puts_("e3.csv", "1,2\n1,-inf\n");
	assert_err(rt_data_read(p, 0, false, &d, err), msg("%s: record 2: field 2 is NaN or infinite", p));
	p = puts_("e4.csv", "1,2,3\n1,2,3\n1,2\n");
	assert_err(rt_data_read(p, 3, false, &d, err), msg("%s: record 3: expected 3 values, found 2", p));
	p = puts_("e5.csv", "1,2,3\n");
	assert_err(rt_data_read(p, 4, false, &d, err), msg("%s: record 1: expected 4 values, found 3", p));
	p = puts_("e6.csv", "1,2,3\n3.5,1,2\n");
	assert_err(rt_data_read(p, 0, true, &d, err),
	           msg("%s: record 2: label '3.5' is not a non-negative integer", p));
	p = puts_("e7.csv", "-1,2\n");
	assert_err(rt_data_read(p, 0, true, &d, err),
	           msg("%s: record 1: label '-1' is not a non-negative integer", p));
	p = puts_("e8.csv", "1,,3\n");
	assert_err(rt_data_read(p, 0, false, &d, err), msg("%s: record 1: field 2 is empty", p));
	p = puts_("e9.csv", "1,1e39\n");
	assert_err(rt_data_read(p, 0, false, &d, err),
	           msg("%s: record 1: field 2 is out of float32 range: '1e39'", p));
	p = puts_("e10.csv", "1,2 3\n");
	assert_err(rt_data_read(p, 0, false, &d, err), msg("%s: record 1: field 2 is not a number: '2 3'", p));
	p = puts_("e11.csv", "# only a comment\nx,y\n\n");
	assert_err(rt_data_read(p, 0, false, &d, err), msg("%s: holds no examples", p));
	p = puts_("e12.csv", "5\n");
	assert_err(rt_data_read(p, 0, true, &d, err), msg("%s: record 1: no values after the label", p));
	/* a binary byte inside a field is shown as '?' */
	p = put("e13.csv", "1,a\001b\n", 7);
	assert_err(rt_data_read(p, 0, false, &d, err), msg("%s: record 1: field 2 is not a number: 'a?b'", p));
	p = P_("missing.csv");
	assert_err(rt_data_read(p, 0, false, &d, err), msg("%s: cannot read: %s", p, strerror(ENOENT)));
	assert_null(d.x);
	assert_int_equal(d.n, 0);
}

/* ========================================================================
 * .npy
 * ====================================================================== */

/* A .npy file as numpy.save writes it (format 1.0, header padded to 64). */
static const char *put_npy(const char *name, const char *descr, const char *fortran, const char *shape,
                           const void *data, size_t len, int version)
{
	char dict[256];
	snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr, fortran,
	         shape);
	size_t pre = version == 1 ? 10 : 12;
	size_t hl = strlen(dict) + 1;
	size_t total = (pre + hl + 63) / 64 * 64;
	hl = total - pre;
	unsigned char *b = malloc(total + len);
	memcpy(b, "\x93NUMPY", 6);
	b[6] = (unsigned char)version;
	b[7] = 0;
	if (version == 1) {
		b[8] = (unsigned char)hl;
		b[9] = (unsigned char)(hl >> 8);
	} else {
		b[8] = (unsigned char)hl;
		b[9] = (unsigned char)(hl >> 8);
		b[10] = 0;
		b[11] = 0;
	}
	memset(b + pre, ' ', hl);
	memcpy(b + pre, dict, strlen(dict));
	b[total - 1] = '\n';
	if (len)
		memcpy(b + total, data, len);
	const char *p = put(name, b, total + len);
	free(b);
	return p;
}

static void test_npy_good(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	rt_data d;
	const float f4[] = {1, 2, 3, 4, 5, 6};
	const char *p = put_npy("a.npy", "<f4", "False", "(2, 3)", f4, sizeof f4, 1);
	assert_int_equal(rt_data_read(p, 3, false, &d, err), 0);
	assert_int_equal(d.n, 2);
	assert_int_equal(d.dim, 3);
	assert_memory_equal(d.x, f4, sizeof f4);
	rt_data_free(&d);

	const double f8[] = {0.5, -1.25, 3, 1e-3};
	p = put_npy("b.npy", "<f8", "False", "(2, 2)", f8, sizeof f8, 2);
	assert_int_equal(rt_data_read(p, 0, false, &d, err), 0);
	assert_int_equal(d.n, 2);
	assert_int_equal(d.dim, 2);
	for (int i = 0; i < 4; i++)
		assert_true(d.x[i] == (float)f8[i]);
	rt_data_free(&d);

	/* images (n, h, w) are flattened per example */
	p = put_npy("c.npy", "<f4", "False", "(3, 1, 2)", f4, sizeof f4, 1);
	assert_int_equal(rt_data_read(p, 2, false, &d, err), 0);
	assert_int_equal(d.n, 3);
	assert_int_equal(d.dim, 2);
	rt_data_free(&d);

	/* a vector is n examples of one value, or one example of dim values */
	p = put_npy("v.npy", "<f4", "False", "(6,)", f4, sizeof f4, 1);
	assert_int_equal(rt_data_read(p, 0, false, &d, err), 0);
	assert_int_equal(d.n, 6);
	assert_int_equal(d.dim, 1);
	rt_data_free(&d);
	assert_int_equal(rt_data_read(p, 6, false, &d, err), 0);
	assert_int_equal(d.n, 1);
	assert_int_equal(d.dim, 6);
	rt_data_free(&d);

	/* big-endian floats are converted */
	const unsigned char be[] = {0x3f, 0x80, 0, 0, 0x40, 0, 0, 0};
	p = put_npy("be.npy", ">f4", "False", "(1, 2)", be, sizeof be, 1);
	assert_int_equal(rt_data_read(p, 2, false, &d, err), 0);
	assert_true(d.x[0] == 1 && d.x[1] == 2);
	rt_data_free(&d);
}

static void test_npy_errors(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	rt_data d;
	const float f4[] = {1, 2, 3, 4, 5, 6};
	const char *p = put_npy("f.npy", "<f4", "True", "(2, 3)", f4, sizeof f4, 1);
	assert_err(rt_data_read(p, 0, false, &d, err),
	           msg("%s: array is in Fortran order; save it in C order (numpy.ascontiguousarray) first", p));
	p = put_npy("t.npy", "<f4", "False", "(2, 3)", f4, 20, 1);
	assert_err(rt_data_read(p, 0, false, &d, err),
	           msg("%s: truncated: header says shape (2, 3) of float32, file holds 20 bytes of data", p));
	p = puts_("m.npy", "this is not numpy");
	assert_err(rt_data_read(p, 0, false, &d, err), msg("%s: not a .npy file (no \\x93NUMPY magic)", p));
	p = put_npy("s.npy", "<f4", "False", "(2, 3)", f4, sizeof f4, 1);
	assert_err(rt_data_read(p, 4, false, &d, err),
	           msg("%s: shape (2, 3) gives 3 values per example, expected 4", p));
	float bad[] = {1, 2, 3, 4, 5, NAN};
	p = put_npy("n.npy", "<f4", "False", "(2, 3)", bad, sizeof bad, 1);
	assert_err(rt_data_read(p, 0, false, &d, err), msg("%s: record 2: value 3 is NaN or infinite", p));
	const double big[] = {1, 1e300};
	p = put_npy("o.npy", "<f8", "False", "(1, 2)", big, sizeof big, 1);
	assert_err(rt_data_read(p, 0, false, &d, err), msg("%s: record 1: value 2 is out of float32 range", p));
	const unsigned char u8[] = {1, 2};
	p = put_npy("u.npy", "|u1", "False", "(1, 2)", u8, sizeof u8, 1);
	assert_err(rt_data_read(p, 0, false, &d, err),
	           msg("%s: data has integer dtype uint8; convert it to float32 first "
	               "(for 8-bit images: x.astype('float32') / 255)", p));
	p = put_npy("c.npy", "<c8", "False", "(1,)", f4, 8, 1);
	assert_err(rt_data_read(p, 0, false, &d, err), msg("%s: unsupported .npy dtype '<c8' (use float32 or float64)", p));
	p = put_npy("z.npy", "<f4", "False", "(0, 3)", f4, 0, 1);
	assert_err(rt_data_read(p, 0, false, &d, err), msg("%s: holds no examples", p));
	p = put_npy("x.npy", "<f4", "False", "(1, 2)", f4, 12, 1);
	assert_err(rt_data_read(p, 0, false, &d, err), msg("%s: 4 bytes after the end of the (1, 2) array", p));
	p = put_npy("l.npy", "<f4", "False", "(2, 3)", f4, sizeof f4, 1);
	assert_err(rt_data_read(p, 0, true, &d, err),
	           msg("%s: only CSV files carry labels in the first column; give the labels as a separate file", p));
	/* a header length pointing past the end of the file */
	unsigned char h[16] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0xff, 0x7f};
	p = put("h.npy", h, sizeof h);
	assert_err(rt_data_read(p, 0, false, &d, err),
	           msg("%s: truncated: .npy header says 32767 bytes, file holds 6", p));
}

/* ========================================================================
 * IDX
 * ====================================================================== */

static size_t idx_header(unsigned char *b, int type, int rank, const uint32_t *dims)
{
	b[0] = b[1] = 0;
	b[2] = (unsigned char)type;
	b[3] = (unsigned char)rank;
	for (int i = 0; i < rank; i++) {
		b[4 + 4 * i] = (unsigned char)(dims[i] >> 24);
		b[5 + 4 * i] = (unsigned char)(dims[i] >> 16);
		b[6 + 4 * i] = (unsigned char)(dims[i] >> 8);
		b[7 + 4 * i] = (unsigned char)dims[i];
	}
	return 4 + 4 * (size_t)rank;
}

static void test_idx(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	rt_data d;
	unsigned char b[64];
	const uint32_t idims[] = {2, 2, 3};
	size_t h = idx_header(b, 0x08, 3, idims);
	const unsigned char pix[] = {0, 51, 255, 1, 2, 3, 4, 5, 6, 7, 8, 128};
	memcpy(b + h, pix, sizeof pix);
	const char *img = put("images-idx3-ubyte", b, h + sizeof pix);
	assert_int_equal(rt_data_read(img, 6, false, &d, err), 0);
	assert_int_equal(d.n, 2);
	assert_int_equal(d.dim, 6);
	assert_true(d.x[0] == 0.0f);
	assert_true(d.x[1] == 0.2f);
	assert_true(d.x[2] == 1.0f);
	assert_true(d.x[11] == (float)(128 / 255.0));
	rt_data_free(&d);

	const uint32_t ldims[] = {3};
	h = idx_header(b, 0x08, 1, ldims);
	b[h] = 7, b[h + 1] = 0, b[h + 2] = 9;
	const char *lab = put("labels-idx1-ubyte", b, h + 3);
	int32_t *y;
	int64_t n;
	assert_int_equal(rt_labels_read(lab, 3, &y, &n, err), 0);
	assert_int_equal(n, 3);
	assert_int_equal(y[0], 7);
	assert_int_equal(y[2], 9);
	free(y);
	assert_int_equal(rt_labels_read(lab, 0, &y, &n, err), 0);
	free(y);
	assert_err(rt_labels_read(lab, 4, &y, &n, err), msg("%s: holds 3 labels but the data has 4 examples", lab));
	assert_null(y);
	assert_err(rt_data_read(lab, 0, false, &d, err),
	           msg("%s: looks like an IDX label file (1-D unsigned bytes), not examples", lab));
	assert_err(rt_labels_read(img, 0, &y, &n, err), msg("%s: looks like an IDX image file, not labels", img));

	/* truncated header: rank 3 needs 16 bytes */
	h = idx_header(b, 0x08, 3, idims);
	const char *p = put("th", b, 12);
	assert_err(rt_data_read(p, 0, false, &d, err), msg("%s: truncated: IDX header needs 16 bytes, file holds 12", p));
	p = put("td", b, h + 10);
	assert_err(rt_data_read(p, 0, false, &d, err),
	           msg("%s: truncated: header says 2 images of 2x3, file holds 10 bytes of data", p));
	const uint32_t mnist[] = {60000, 28, 28};
	h = idx_header(b, 0x08, 3, mnist);
	memset(b + h, 0, 8);
	p = put("tm", b, h + 8);
	assert_err(rt_data_read(p, 784, false, &d, err),
	           msg("%s: truncated: header says 60000 images of 28x28, file holds 8 bytes of data", p));
	p = put("tiny", "\0\0", 2);
	assert_err(rt_data_read(p, 0, false, &d, err),
	           msg("%s: truncated: IDX header needs at least 4 bytes, file holds 2", p));
	p = puts_("junk.bin", "hello world");
	assert_err(rt_data_read(p, 0, false, &d, err), msg("%s: not an IDX, CSV or .npy file", p));
	p = put("mnist.gz", "\x1f\x8b\x08\x00", 4);
	assert_err(rt_data_read(p, 0, false, &d, err), msg("%s: is gzip-compressed; decompress it first (gunzip)", p));
	/* images of the wrong size for the model */
	assert_err(rt_data_read(img, 5, false, &d, err),
	           msg("%s: shape (2, 2, 3) gives 6 values per example, expected 5", img));

	/* float32 IDX: big-endian values, no scaling */
	const uint32_t fdims[] = {2, 1};
	h = idx_header(b, 0x0D, 2, fdims);
	const unsigned char fv[] = {0x3f, 0x80, 0, 0, 0xc0, 0x40, 0, 0};   /* 1, -3 */
	memcpy(b + h, fv, sizeof fv);
	p = put("f-idx2", b, h + sizeof fv);
	assert_int_equal(rt_data_read(p, 1, false, &d, err), 0);
	assert_int_equal(d.n, 2);
	assert_true(d.x[0] == 1 && d.x[1] == -3);
	rt_data_free(&d);
}

static void test_labels_other(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	int32_t *y;
	int64_t n;
	const char *p = puts_("y.csv", "label\n3\n0\n\n# c\n 12 \n");
	assert_int_equal(rt_labels_read(p, 3, &y, &n, err), 0);
	assert_int_equal(n, 3);
	assert_int_equal(y[0], 3);
	assert_int_equal(y[2], 12);
	free(y);
	p = puts_("y2.csv", "3\nx\n");
	assert_err(rt_labels_read(p, 0, &y, &n, err), msg("%s: record 2: label 'x' is not a non-negative integer", p));
	p = puts_("y3.csv", "3\n1,2\n");
	assert_err(rt_labels_read(p, 0, &y, &n, err), msg("%s: record 2: expected 1 label, found 2 values", p));
	p = puts_("y4.csv", "# nothing\n");
	assert_err(rt_labels_read(p, 0, &y, &n, err), msg("%s: holds no labels", p));

	const int64_t i8[] = {1, 0, 9};
	p = put_npy("y.npy", "<i8", "False", "(3,)", i8, sizeof i8, 1);
	assert_int_equal(rt_labels_read(p, 3, &y, &n, err), 0);
	assert_int_equal(y[2], 9);
	free(y);
	const unsigned char u1[] = {4, 5};
	p = put_npy("y1.npy", "|u1", "False", "(2, 1)", u1, sizeof u1, 1);
	assert_int_equal(rt_labels_read(p, 2, &y, &n, err), 0);
	assert_int_equal(y[1], 5);
	free(y);
	const float f[] = {2, 3.5f};
	p = put_npy("yf.npy", "<f4", "False", "(2,)", f, sizeof f, 1);
	assert_err(rt_labels_read(p, 0, &y, &n, err), msg("%s: record 2: label '3.5' is not a non-negative integer", p));
	p = put_npy("yf2.npy", "<f4", "False", "(1, 2)", f, sizeof f, 1);
	assert_err(rt_labels_read(p, 0, &y, &n, err), msg("%s: labels must be a vector, not shape (1, 2)", p));
	const int32_t i4[] = {-1};
	p = put_npy("yn.npy", "<i4", "False", "(1,)", i4, sizeof i4, 1);
	assert_err(rt_labels_read(p, 0, &y, &n, err), msg("%s: record 1: label '-1' is not a non-negative integer", p));
}

/* ========================================================================
 * Atomic writes
 * ====================================================================== */

static void test_write_atomic(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	const char *p = P_("out.bin");
	assert_int_equal(rt_write_atomic(p, "abc", 3, err), 0);
	size_t len;
	unsigned char *b = slurp(p, &len);
	assert_int_equal(len, 3);
	assert_memory_equal(b, "abc", 3);
	free(b);
	assert_int_equal(count_files(".tmp"), 0);

	/* a missing directory: failure, and nothing anywhere */
	const char *q = P_("nodir/out.bin");
	assert_err(rt_write_atomic(q, "abc", 3, err), msg("%s: cannot write: %s", q, strerror(ENOENT)));
	struct stat st;
	assert_int_equal(stat(P_("nodir"), &st), -1);

	/* running out of space midway (here: the file size limit) keeps the
	 * old file and leaves no temporary behind */
	struct rlimit old, lim;
	getrlimit(RLIMIT_FSIZE, &old);
	lim = old;
	lim.rlim_cur = 1000;
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	char *big = calloc(1, 5000);
	int rc = rt_write_atomic(p, big, 5000, err);
	setrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, SIG_DFL);
	free(big);
	assert_int_equal(rc, -1);
	assert_string_equal(err, msg("%s: cannot write: %s", p, strerror(EFBIG)));
	b = slurp(p, &len);
	assert_int_equal(len, 3);
	assert_memory_equal(b, "abc", 3);
	free(b);
	assert_int_equal(count_files(".tmp"), 0);
	unlink(p);
}

/* ========================================================================
 * safetensors
 * ====================================================================== */

/* fc1: 2 -> 3, fc2: 3 -> 1 */
static const rt_tensor T[] = {
	{"fc1.weight", 2, {3, 2}, 0, 6, 2, 0},
	{"fc1.bias", 1, {3}, 6, 3, 2, 1},
	{"fc2.weight", 2, {1, 3}, 9, 3, 3, 0},
	{"fc2.bias", 1, {1}, 12, 1, 3, 1},
};
#define NP 13

static const rt_tensor OPT[] = {
	{"optim.m.fc1.weight", 2, {3, 2}, 0, 6, 2, 0},
	{"optim.step", 1, {1}, 6, 1, 1, 1},
};

static void fill(float *P, int n, float base)
{
	for (int i = 0; i < n; i++)
		P[i] = base + 0.25f * (float)i;
}

static void test_st_roundtrip(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	float P[NP], Q[NP];
	fill(P, NP, -1);
	const char *md[] = {"lln.model", "toy", "epoch", "5", NULL};
	const char *p = P_("w.safetensors");
	assert_int_equal(rt_params_save(T, 4, P, NULL, 0, NULL, md, p, err), 0);
	memset(Q, 0, sizeof Q);
	assert_int_equal(rt_params_load(T, 4, p, Q, err), 0);
	assert_memory_equal(P, Q, sizeof P);

	/* the exact bytes: length, compact JSON in table order, space padding
	 * to 8, then the floats */
	const char *js = "{\"__metadata__\":{\"lln.model\":\"toy\",\"epoch\":\"5\"},"
	                 "\"fc1.weight\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24]},"
	                 "\"fc1.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[24,36]},"
	                 "\"fc2.weight\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[36,48]},"
	                 "\"fc2.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[48,52]}}";
	size_t jl = strlen(js), hl = (jl + 7) / 8 * 8;
	size_t len;
	unsigned char *b = slurp(p, &len);
	assert_int_equal(len, 8 + hl + sizeof P);
	uint64_t got = 0;
	for (int i = 0; i < 8; i++)
		got |= (uint64_t)b[i] << (8 * i);
	assert_int_equal(got, hl);
	assert_memory_equal(b + 8, js, jl);
	for (size_t i = jl; i < hl; i++)
		assert_int_equal(b[8 + i], ' ');
	assert_memory_equal(b + 8 + hl, P, sizeof P);
	free(b);

	char v[16];
	assert_int_equal(rt_st_metadata(p, "epoch", v, sizeof v, err), 0);
	assert_string_equal(v, "5");
	assert_int_equal(rt_st_metadata(p, "nope", v, sizeof v, err), 1);
	assert_string_equal(v, "");
	assert_err(rt_st_metadata(p, "lln.model", v, 3, err), msg("%s: metadata 'lln.model' is longer than 2 bytes", p));

	/* no metadata at all */
	assert_int_equal(rt_params_save(T, 4, P, NULL, 0, NULL, NULL, p, err), 0);
	assert_int_equal(rt_st_metadata(p, "epoch", v, sizeof v, err), 1);
	assert_int_equal(count_files(".tmp"), 0);
	unlink(p);
}

static void test_st_extra(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	float P[NP], Q[NP], E[7], F[7];
	fill(P, NP, 1);
	fill(E, 7, 100);
	const char *p = P_("x.safetensors");
	assert_int_equal(rt_params_save(T, 4, P, OPT, 2, E, NULL, p, err), 0);
	/* without an extra table, optim.* tensors are skipped */
	assert_int_equal(rt_params_load(T, 4, p, Q, err), 0);
	assert_memory_equal(P, Q, sizeof P);
	bool has = false;
	memset(F, 0, sizeof F);
	assert_int_equal(rt_params_load_ex(T, 4, OPT, 2, p, Q, F, &has, err), 0);
	assert_true(has);
	assert_memory_equal(E, F, sizeof E);
	/* a file without them */
	const char *p2 = P_("y.safetensors");
	assert_int_equal(rt_params_save(T, 4, P, NULL, 0, NULL, NULL, p2, err), 0);
	has = true;
	assert_int_equal(rt_params_load_ex(T, 4, OPT, 2, p2, Q, F, &has, err), 0);
	assert_false(has);
	/* half of them */
	assert_int_equal(rt_params_save(T, 4, P, OPT, 1, E, NULL, p2, err), 0);
	assert_err(rt_params_load_ex(T, 4, OPT, 2, p2, Q, F, &has, err), msg("%s: missing tensor 'optim.step'", p2));
	/* duplicate names are refused when saving */
	assert_err(rt_params_save(T, 4, P, T, 1, P, NULL, p2, err), msg("%s: tensor name 'fc1.weight' is used twice", p2));
	unlink(p);
	unlink(p2);
}

static void test_st_errors(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	float P[NP], Q[NP + 8];
	fill(P, NP, 0);
	const char *p = P_("e.safetensors");

	assert_int_equal(rt_params_save(T, 3, P, NULL, 0, NULL, NULL, p, err), 0);
	assert_err(rt_params_load(T, 4, p, Q, err),
	           msg("%s: missing tensor 'fc2.bias'; the file has 3 tensors: fc1.weight, fc1.bias, fc2.weight "
	               "(map names with --rename OLD=NEW or --strip-prefix P)", p));

	rt_tensor more[5];
	memcpy(more, T, sizeof T);
	more[4] = (rt_tensor){"fc6.weight", 1, {2}, 13, 2, 1, 0};
	float P2[NP + 2] = {0};
	assert_int_equal(rt_params_save(more, 5, P2, NULL, 0, NULL, NULL, p, err), 0);
	assert_err(rt_params_load(T, 4, p, Q, err), msg("%s: unexpected tensor 'fc6.weight'", p));

	rt_tensor shaped[4];
	memcpy(shaped, T, sizeof T);
	shaped[0].shape[0] = 2;
	shaped[0].shape[1] = 3;
	assert_int_equal(rt_params_save(shaped, 4, P, NULL, 0, NULL, NULL, p, err), 0);
	assert_err(rt_params_load(T, 4, p, Q, err), msg("%s: tensor 'fc1.weight' has shape [2, 3], expected [3, 2]", p));

	P[5] = NAN;
	assert_int_equal(rt_params_save(T, 4, P, NULL, 0, NULL, NULL, p, err), 0);
	assert_err(rt_params_load(T, 4, p, Q, err), msg("%s: tensor 'fc1.weight' value 6 is NaN or infinite", p));
	unlink(p);
}

/* Writes 8-byte length + header (padded with spaces to 8) + data. */
static const char *put_st(const char *name, const char *header, const void *data, size_t len)
{
	size_t hl = (strlen(header) + 7) / 8 * 8;
	unsigned char *b = malloc(8 + hl + len + 1);
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memset(b + 8, ' ', hl);
	memcpy(b + 8, header, strlen(header));
	if (len)
		memcpy(b + 8 + hl, data, len);
	const char *p = put(name, b, 8 + hl + len);
	free(b);
	return p;
}

static void test_st_handmade(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	float Q[NP];
	/* As the Python safetensors package writes for a torch state_dict:
	 * metadata {"format": "pt"}, tensors sorted by name, so biases come
	 * first in the data, unlike lln's table order. */
	float data[NP];
	/* layout: fc1.bias(3) fc1.weight(6) fc2.bias(1) fc2.weight(3) */
	for (int i = 0; i < NP; i++)
		data[i] = (float)(i + 1);
	const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
	                "\"fc1.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
	                "\"fc1.weight\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[12,36]},"
	                "\"fc2.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[36,40]},"
	                "\"fc2.weight\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[40,52]}}";
	const char *p = put_st("pt.safetensors", h, data, sizeof data);
	assert_int_equal(rt_params_load(T, 4, p, Q, err), 0);
	assert_true(Q[0] == 4 && Q[5] == 9);    /* fc1.weight */
	assert_true(Q[6] == 1 && Q[8] == 3);    /* fc1.bias */
	assert_true(Q[9] == 11 && Q[11] == 13); /* fc2.weight */
	assert_true(Q[12] == 10);               /* fc2.bias */
	char v[8];
	assert_int_equal(rt_st_metadata(p, "format", v, sizeof v, err), 0);
	assert_string_equal(v, "pt");

	/* wrong dtype (float64 and halves are converted: tests/test_interop.c) */
	int32_t i4[6] = {0};
	const char *hi = "{\"fc1.weight\":{\"dtype\":\"I32\",\"shape\":[3,2],\"data_offsets\":[0,24]}}";
	p = put_st("i32.safetensors", hi, i4, sizeof i4);
	assert_err(rt_params_load(T, 4, p, Q, err),
	           msg("%s: tensor 'fc1.weight' has dtype I32, expected F32 (or F64, F16, BF16)", p));

	/* corrupt header: jansson's own message is passed on */
	const char *bad = "{\"fc1.weight\": {\"dtype\": \"F32\",";
	p = put_st("bad.safetensors", bad, NULL, 0);
	json_error_t je;
	size_t hl = (strlen(bad) + 7) / 8 * 8;
	char *padded = calloc(1, hl + 1);
	memset(padded, ' ', hl);
	memcpy(padded, bad, strlen(bad));
	assert_null(json_loadb(padded, hl, JSON_REJECT_DUPLICATES, &je));
	free(padded);
	assert_err(rt_params_load(T, 4, p, Q, err), msg("%s: bad safetensors header: %s", p, je.text));
	assert_true(strstr(err, "bad safetensors header: ") != NULL);

	/* header length beyond the file */
	unsigned char lb[12] = {0xe8, 0x03, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
	p = put("len.safetensors", lb, sizeof lb);
	assert_err(rt_params_load(T, 4, p, Q, err),
	           msg("%s: not a safetensors file (header length 1000, file size 12)", p));
	p = put("short.safetensors", lb, 5);
	assert_err(rt_params_load(T, 4, p, Q, err), msg("%s: not a safetensors file (only 5 bytes)", p));

	/* offsets outside the data, and overlapping */
	const char *ho = "{\"fc2.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[48,52]}}";
	p = put_st("off.safetensors", ho, data, 8);
	assert_err(rt_params_load(T, 4, p, Q, err),
	           msg("%s: tensor 'fc2.bias' has data_offsets [48, 52] outside the 8 bytes of data", p));
	const char *hv = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
	                 "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
	                 "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
	p = put_st("ovl.safetensors", hv, data, 8);
	assert_err(rt_params_load(T, 4, p, Q, err), msg("%s: tensors 'a' and 'b' overlap in the file", p));
	const char *hs = "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}";
	p = put_st("sz.safetensors", hs, data, 8);
	assert_err(rt_params_load(T, 4, p, Q, err),
	           msg("%s: tensor 'a' has 8 bytes of data, its shape and dtype need 12", p));
	const char *hd = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
	                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
	p = put_st("dup.safetensors", hd, data, 8);
	assert_int_equal(rt_params_load(T, 4, p, Q, err), -1);
	assert_true(strstr(err, "bad safetensors header: ") != NULL);
	p = P_("none.safetensors");
	assert_err(rt_params_load(T, 4, p, Q, err), msg("%s: cannot read: %s", p, strerror(ENOENT)));
	char v2[8];
	assert_err(rt_st_metadata(p, "x", v2, sizeof v2, err), msg("%s: cannot read: %s", p, strerror(ENOENT)));
}

static void test_st_write_fail(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	float P[NP];
	fill(P, NP, 0);
	const char *q = P_("nodir/w.safetensors");
	assert_err(rt_params_save(T, 4, P, NULL, 0, NULL, NULL, q, err),
	           msg("%s: cannot write: %s", q, strerror(ENOENT)));
	assert_int_equal(count_files("w.safetensors"), 0);
}

/* ========================================================================
 * Random numbers
 * ====================================================================== */

static void test_rng(void **state)
{
	(void)state;
	/* golden values: xoshiro256** seeded by splitmix64(42), computed with
	 * an independent Python model of both generators */
	rt_rng r;
	rt_rng_seed(&r, 42);
	assert_true(rt_rng_next(&r) == 0x15780b2e0c2ec716ULL);
	assert_true(rt_rng_next(&r) == 0x6104d9866d113a7eULL);
	assert_true(rt_rng_next(&r) == 0xae17533239e499a1ULL);
	rt_rng_seed(&r, 0);
	assert_true(rt_rng_next(&r) == 0x99ec5f36cb75f2b4ULL);
	rt_rng_seed(&r, 42);
	assert_true(rt_rng_uniform(&r) == 0.08386297105988216);
	assert_true(rt_rng_uniform(&r) == 0.3789802506626686);
	rt_rng_seed(&r, 42);
	assert_double_equal(rt_rng_normal(&r), -0.303263064678738, 1e-15);
	assert_double_equal(rt_rng_normal(&r), 1.3438117634372806, 1e-15);

	rt_rng_seed(&r, 7);
	double s = 0, s2 = 0, umin = 1, umax = 0;
	const int N = 100000;
	for (int i = 0; i < N; i++) {
		double x = rt_rng_normal(&r);
		s += x;
		s2 += x * x;
		double u = rt_rng_uniform(&r);
		umin = u < umin ? u : umin;
		umax = u > umax ? u : umax;
	}
	double mean = s / N, var = s2 / N - mean * mean;
	assert_true(fabs(mean) < 0.02);
	assert_true(fabs(var - 1) < 0.03);
	assert_true(umin >= 0 && umin < 1e-3 && umax < 1 && umax > 1 - 1e-3);
}

static void test_init_params(void **state)
{
	(void)state;
	const rt_tensor t[] = {
		{"fc1.weight", 2, {300, 200}, 0, 60000, 200, 0},
		{"fc1.bias", 1, {300}, 60000, 300, 200, 1},
		{"fc2.weight", 2, {10, 300}, 60300, 3000, 300, 0},
		{"fc2.bias", 1, {10}, 63300, 10, 300, 1},
	};
	const int64_t n = 63310;
	float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
	rt_init_params(t, 4, 1234, RT_INIT_HE, a);
	rt_init_params(t, 4, 1234, RT_INIT_HE, b);
	assert_memory_equal(a, b, n * sizeof *a);
	/* a shorter model with the same seed starts the same way */
	memset(b, 0, n * sizeof *b);
	rt_init_params(t, 2, 1234, RT_INIT_HE, b);
	assert_memory_equal(a, b, 60300 * sizeof *a);
	rt_init_params(t, 4, 1235, RT_INIT_HE, b);
	assert_memory_not_equal(a, b, 100 * sizeof *a);

	double s = 0, s2 = 0;
	for (int64_t i = 0; i < 60000; i++) {
		s += a[i];
		s2 += (double)a[i] * a[i];
	}
	double mean = s / 60000, var = s2 / 60000 - mean * mean;
	assert_true(fabs(mean) < 0.002);
	assert_true(fabs(var / (2.0 / 200) - 1) < 0.03);
	float bound1 = (float)(1 / sqrt(200.0)), bound2 = (float)(1 / sqrt(300.0));
	int zeros = 0;
	for (int i = 0; i < 300; i++) {
		assert_true(fabsf(a[60000 + i]) <= bound1);
		zeros += a[60000 + i] == 0;
	}
	for (int i = 0; i < 10; i++)
		assert_true(fabsf(a[63300 + i]) <= bound2);
	assert_int_equal(zeros, 0);
	/* biases spread over the range, not clustered */
	float lo = 0, hi = 0;
	for (int i = 0; i < 300; i++) {
		lo = fminf(lo, a[60000 + i]);
		hi = fmaxf(hi, a[60000 + i]);
	}
	assert_true(lo < -0.8f * bound1 && hi > 0.8f * bound1);
	free(a);
	free(b);
}

/* The default scheme is PyTorch's: weights U(-1/sqrt(fan_in), 1/sqrt(fan_in))
 * (variance 1/(3 fan_in)), the biases as under He (same stream, same values). */
static void test_init_pytorch(void **state)
{
	(void)state;
	const rt_tensor t[] = {
		{"conv.weight", 4, {50, 3, 5, 5}, 0, 3750, 75, 0},
		{"conv.bias", 1, {50}, 3750, 50, 75, 1},
		{"fc.weight", 2, {400, 100}, 3800, 40000, 100, 0},
	};
	const int64_t n = 43800;
	float *a = malloc(n * sizeof *a), *h = malloc(n * sizeof *h);
	rt_init_params(t, 3, 9, RT_INIT_PYTORCH, a);
	rt_init_params(t, 3, 9, RT_INIT_HE, h);
	assert_memory_equal(a + 3750, h + 3750, 50 * sizeof *a);
	const struct { int64_t lo, hi; double fan; } w[] = { { 0, 3750, 75 }, { 3800, 43800, 100 } };
	for (int k = 0; k < 2; k++) {
		float bound = (float)(1 / sqrt(w[k].fan));
		double s = 0, s2 = 0, mx = 0;
		for (int64_t i = w[k].lo; i < w[k].hi; i++) {
			assert_true(fabsf(a[i]) <= bound);
			s += a[i];
			s2 += (double)a[i] * a[i];
			mx = fmax(mx, fabs(a[i]));
		}
		double m = (double)(w[k].hi - w[k].lo), mean = s / m, var = s2 / m - mean * mean;
		assert_true(fabs(var * 3 * w[k].fan - 1) < 0.06);
		assert_true(mx > 0.99 * bound);
	}
	rt_init_scheme sc;
	assert_int_equal(rt_init_parse("he", &sc), 0);
	assert_int_equal(sc, RT_INIT_HE);
	assert_int_equal(rt_init_parse("pytorch", &sc), 0);
	assert_int_equal(sc, RT_INIT_PYTORCH);
	assert_int_equal(rt_init_parse("xavier", &sc), -1);
	assert_string_equal(rt_init_name(RT_INIT_HE), "he");
	free(a);
	free(h);
}

/* ---- rt_parallel and its thread pool (parallel.c) ---- */

/* Shares sit at every other slot (stride two slots), so a wrong stride
 * shows as a share run twice or not at all, or an odd slot touched. */
typedef struct par_share {
	int t;          /* the index the test gave it */
	int inner;      /* shares of a call it makes itself, 0 for none */
	bool nap;       /* sleep first, so a return before the end shows */
	atomic_int runs;
	atomic_int bad; /* what went wrong in its nested call */
	long tid;       /* the kernel's thread id: not reused, unlike pthread_t */
} par_share;

static int par_check(par_share *sh, int n, long *tids, int *ntids);

static void *par_fn(void *arg)
{
	par_share *s = arg;
	if (s->nap)
		nanosleep(&(struct timespec){ .tv_nsec = 2000000 }, NULL);
	s->tid = syscall(SYS_gettid);
	if (s->inner > 0) {
		par_share *in = calloc(2 * (size_t)s->inner, sizeof *in);
		for (int t = 0; t < s->inner; t++)
			in[2 * t].t = t;
		rt_parallel(s->inner, par_fn, in, 2 * sizeof *in);
		atomic_store(&s->bad, par_check(in, s->inner, NULL, NULL));
		free(in);
	}
	atomic_fetch_add(&s->runs, 1);
	return NULL;
}

/* 0 when every share of a finished call ran once with its own argument,
 * else a code naming what failed; collects the distinct thread ids into
 * tids[*ntids] (room for 512) when tids is not NULL.  No cmocka asserts:
 * it runs on other threads too. */
static int par_check(par_share *sh, int n, long *tids, int *ntids)
{
	for (int t = 0; t < 2 * n; t++) {
		par_share *s = &sh[t];
		if (t % 2 && (atomic_load(&s->runs) || s->tid))
			return 1;   /* a slot between shares was used */
		if (t % 2)
			continue;
		if (s->t != t / 2 || atomic_load(&s->runs) != 1)
			return 2;   /* run twice, never, or not finished on return */
		if (atomic_load(&s->bad))
			return 3;   /* its nested call failed */
		if (!tids)
			continue;
		int k = 0;
		while (k < *ntids && tids[k] != s->tid)
			k++;
		if (k == *ntids && *ntids < 512)
			tids[(*ntids)++] = s->tid;
	}
	return 0;
}

/* One call of n shares (each making an inner call of `inner` shares); its
 * par_check code, and the number of distinct threads in *threads. */
static int par_run(int n, int inner, bool nap, int *threads)
{
	par_share *sh = calloc(2 * (size_t)n, sizeof *sh);
	for (int t = 0; t < n; t++)
		sh[2 * t] = (par_share){ .t = t, .inner = inner, .nap = nap && t % 2 == 0 };
	rt_parallel(n, par_fn, sh, 2 * sizeof *sh);
	long tids[512];
	int ntids = 0;
	int rc = par_check(sh, n, tids, &ntids);
	free(sh);
	if (threads)
		*threads = ntids;
	return rc;
}

static void *par_user(void *arg)
{
	int *bad = arg;
	for (int i = 0; i < 200 && !*bad; i++)
		*bad = par_run(2 + i % 3, i % 5 == 0 ? 2 : 0, false, NULL);
	return NULL;
}

typedef struct par_cover {
	unsigned char *hits;
	atomic_int parts;
} par_cover;

static void par_cover_range(void *ctx, int part, int64_t lo, int64_t hi)
{
	par_cover *c = ctx;
	for (int64_t i = lo; i < hi; i++)
		c->hits[i]++;
	atomic_fetch_or(&c->parts, 1 << part);
}

static void test_parallel(void **state)
{
	(void)state;
	long self = syscall(SYS_gettid);
	int threads;

	/* n = 1: the caller's share only, on the caller */
	par_share one[2] = { 0 };
	rt_parallel(1, par_fn, one, 2 * sizeof *one);
	assert_int_equal(par_check(one, 1, NULL, NULL), 0);
	assert_int_equal(one[0].tid, self);
	rt_parallel(0, par_fn, NULL, 0);

	/* one thread per share, the pool growing when a call wants more */
	for (int n = 2; n <= 9; n += 7) {
		assert_int_equal(par_run(n, 0, true, &threads), 0);
		assert_int_equal(threads, n);
	}
	assert_int_equal(par_run(3, 0, true, &threads), 0);
	assert_int_equal(threads, 3);

	/* reuse: a thousand calls of two shares run on two threads in all,
	 * the caller and the same helper, where fresh threads would be 1001 */
	long tids[512];
	int ntids = 0;
	for (int i = 0; i < 1000; i++) {
		par_share sh[4] = { { .t = 0 }, { 0 }, { .t = 1 } };
		rt_parallel(2, par_fn, sh, 2 * sizeof *sh);
		assert_int_equal(par_check(sh, 2, tids, &ntids), 0);
	}
	assert_int_equal(ntids, 2);

	/* past the pool's cap of 256 helpers the caller takes what is left */
	assert_int_equal(par_run(300, 0, false, &threads), 0);
	assert_in_range(threads, 2, 257);

	/* nested: every share, helpers' and caller's, makes a call of its own
	 * while the pool is busy with the outer one */
	assert_int_equal(par_run(3, 4, true, &threads), 0);
	assert_int_equal(threads, 3);

	/* two user threads at once, with nested calls among them */
	pthread_t u[2];
	int bad[2] = { 0 };
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&u[i], NULL, par_user, &bad[i]), 0);
	for (int i = 0; i < 2; i++) {
		pthread_join(u[i], NULL);
		assert_int_equal(bad[i], 0);
	}
	assert_int_equal(par_run(4, 0, false, &threads), 0);   /* the pool still serves */
	assert_int_equal(threads, 4);

	/* rt_parallel_range: every index once, in `parts` parts when long */
	int64_t sizes[] = { 0, 1, 100, 16383, 16384, 100003 };
	for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
		int64_t n = sizes[k];
		par_cover c = { .hits = calloc((size_t)n + 1, 1) };
		rt_parallel_range(3, n, par_cover_range, &c);
		for (int64_t i = 0; i < n; i++)
			if (c.hits[i] != 1)
				fail_msg("n %lld: index %lld covered %d times", (long long)n, (long long)i, c.hits[i]);
		assert_int_equal(atomic_load(&c.parts), n < 16384 ? 1 : 7);
		free(c.hits);
	}
}

int main(void)
{
	snprintf(tmpdir, sizeof tmpdir, "%s/lln-test-io-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_percentile),
		cmocka_unit_test(test_pattern_hash),
		cmocka_unit_test(test_count_distinct),
		cmocka_unit_test(test_layer_of),
		cmocka_unit_test(test_csv_good),
		cmocka_unit_test(test_csv_errors),
		cmocka_unit_test(test_ts_good),
		cmocka_unit_test(test_ts_errors),
		cmocka_unit_test(test_ts_japanese_vowels),
		cmocka_unit_test(test_npy_good),
		cmocka_unit_test(test_npy_errors),
		cmocka_unit_test(test_idx),
		cmocka_unit_test(test_labels_other),
		cmocka_unit_test(test_write_atomic),
		cmocka_unit_test(test_st_roundtrip),
		cmocka_unit_test(test_st_extra),
		cmocka_unit_test(test_st_errors),
		cmocka_unit_test(test_st_handmade),
		cmocka_unit_test(test_st_write_fail),
		cmocka_unit_test(test_rng),
		cmocka_unit_test(test_init_params),
		cmocka_unit_test(test_init_pytorch),
		cmocka_unit_test(test_parallel),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	clean_tmpdir();
	return failed;
}
