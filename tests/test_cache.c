/* test_cache.c: the kernel cache (compiler/cache.c).
 *
 * Runs llnc with its cache in a directory of its own (XDG_CACHE_HOME) and
 * LLN_CACHE_VERBOSE=1, which reports every lookup on stderr: the first run
 * stores an entry, the second hits it, and both (and a run without the
 * cache) write the same bytes, for certify, eval, train and build alike; a
 * truncated, damaged or foreign entry is rebuilt, not used; models that
 * differ only where --dump=ir rounds, or only in the target CPU or the
 * maximum sequence length, get entries of their own; --no-cache and LLN_NO_CACHE=1 neither read nor
 * write the cache, and a cache directory others can write to is not used;
 * concurrent runs on an empty cache all succeed and leave one whole entry;
 * past the size limit the entries used longest ago go.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "rt.h"
#include "tmpfiles.h"

#define LLNC LLN_BINARY_DIR "/llnc"

static const char model_text[] =
	"model small {\n  input x[2] normalize(%s, 0.5);\n  h1 = relu(dense(x, 12));\n"
	"  h2 = relu(dense(h1, 12));\n  y = dense(h2, 2);\n  output y;\n}\n";

static const char *model(const char *name, const char *mean)
{
	char text[512];
	snprintf(text, sizeof text, model_text, mean);
	return puts_(name, text);
}

/* A file's bytes (malloc'd, NUL-terminated; *len without the NUL). */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot read %s", path);
	char *b = NULL;
	size_t n = 0, cap = 0;
	for (int c; (c = fgetc(f)) != EOF;) {
		if (n + 2 > cap)
			assert_non_null(b = realloc(b, cap = 2 * cap + 4096));
		b[n++] = (char)c;
	}
	fclose(f);
	if (!b)
		assert_non_null(b = malloc(1));
	b[n] = 0;
	if (len)
		*len = n;
	return b;
}

static const char *cache_path(void) { return P_("xdg/lln"); }

/* The entries in the cache directory: how many, and the path of the last
 * one read (in `one`). */
static int entries(char one[512])
{
	DIR *d = opendir(cache_path());
	if (!d)
		return 0;
	int n = 0;
	for (struct dirent *e; (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		size_t l = strlen(e->d_name);
		if (l < 8 || strcmp(e->d_name + l - 8, ".kernels"))
			fail_msg("unexpected file in the cache directory: %s", e->d_name);
		if (one)
			snprintf(one, 512, "%s/%s", cache_path(), e->d_name);
		n++;
	}
	closedir(d);
	return n;
}

/* Runs an llnc command line (stdout to tmpdir's "out", stderr to "err");
 * fails unless it exits 0; returns stderr. */
static char *llnc(const char *fmt, ...)
{
	char args[3000];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	int rc = sh("%s %s", LLNC, args);
	char *err = slurp(P_("err"), NULL);
	if (rc != 0)
		fail_msg("llnc %s: exit %d\n%s", args, rc, err);
	return err;
}

static void expect(const char *err, const char *what, int times)
{
	int n = 0;
	for (const char *p = err; (p = strstr(p, what)); p++)
		n++;
	if (n != times)
		fail_msg("expected '%s' %d times on stderr, got %d:\n%s", what, times, n, err);
}

/* Runs `args` and checks that the cache reported `what` (hit, miss, ...)
 * and that stdout equals `want` when given; returns stdout. */
static char *run(const char *what, const char *want, const char *fmt, ...)
{
	char args[3000];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	char *err = llnc("%s", args);
	if (what) {
		char line[64];
		snprintf(line, sizeof line, "lln kernel cache: %s ", what);
		expect(err, line, 1);
	} else {
		expect(err, "lln kernel cache", 0);
	}
	free(err);
	char *got = slurp(P_("out"), NULL);
	if (want && strcmp(got, want))
		fail_msg("llnc %s: the output differs from the first run's:\n%s\n---\n%s", args, got, want);
	return got;
}

static const char *weights, *points, *m1;

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/lln-cache-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	setenv("XDG_CACHE_HOME", P_("xdg"), 1);
	setenv("LLN_CACHE_VERBOSE", "1", 1);
	unsetenv("LLN_NO_CACHE");
	m1 = strdup(model("m1.lln", "0.25"));
	weights = strdup(P_("w.safetensors"));
	points = strdup(P_("points.csv"));
	return sh("%s init %s --seed 3 -o %s && %s data toy2d --n 40 --seed 2 -o %s", LLNC, m1, weights, LLNC, points);
}

static int teardown(void **state)
{
	(void)state;
	free((void *)m1), free((void *)weights), free((void *)points);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void clear_cache(void)
{
	assert_int_equal(sh("rm -rf %s", cache_path()), 0);
}

/* The first run stores, the second hits; the outputs are the same bytes,
 * with and without the cache, for every command that compiles. */
static void test_hit_same_output(void **state)
{
	(void)state;
	clear_cache();
	char *first = run("miss", NULL, "certify %s --weights %s %s", m1, weights, points);
	assert_int_equal(entries(NULL), 1);
	free(run("hit", first, "certify %s --weights %s %s", m1, weights, points));
	free(run(NULL, first, "certify %s --weights %s %s --no-cache", m1, weights, points));
	free(run(NULL, first, "certify --no-cache %s --weights %s %s", m1, weights, points));
	/* a built certifier: the same kernels, so the same entry */
	const char *bin = P_("cert"), *bin2 = P_("cert2");
	free(run("hit", NULL, "build %s --certifier --weights %s -o %s", m1, weights, bin));
	assert_int_equal(sh("%s %s", bin, points), 0);
	char *built = slurp(P_("out"), NULL);
	assert_string_equal(built, first);
	free(built);
	free(run(NULL, NULL, "build %s --certifier --weights %s -o %s --no-cache", m1, weights, bin2));
	size_t n1, n2;
	char *b1 = slurp(bin, &n1), *b2 = slurp(bin2, &n2);
	assert_true(n1 == n2 && memcmp(b1, b2, n1) == 0);   /* the same executable, byte for byte */
	free(b1), free(b2);
	free(first);
	assert_int_equal(entries(NULL), 1);

	/* eval and train: the training kernels, a second entry */
	char *ev = run("miss", NULL, "eval %s --weights %s --data %s --json", m1, weights, points);
	assert_int_equal(entries(NULL), 2);
	free(run("hit", ev, "eval %s --weights %s --data %s --json", m1, weights, points));
	free(run(NULL, ev, "eval %s --weights %s --data %s --json --no-cache", m1, weights, points));
	free(ev);
	const char *t1 = P_("t1.safetensors"), *t2 = P_("t2.safetensors");
	free(run("hit", NULL, "train %s --data %s --epochs 2 --batch 8 --seed 1 -o %s", m1, points, t1));
	free(run(NULL, NULL, "train %s --data %s --epochs 2 --batch 8 --seed 1 -o %s --no-cache", m1, points, t2));
	b1 = slurp(t1, &n1), b2 = slurp(t2, &n2);
	assert_true(n1 == n2 && memcmp(b1, b2, n1) == 0);   /* the same trained weights */
	free(b1), free(b2);
	/* a trainer is linked from the same kernels as llnc train */
	free(run("hit", NULL, "build %s --trainer -o %s", m1, P_("trainer")));
	assert_int_equal(entries(NULL), 2);
}

/* A damaged entry is never used: truncated, a byte of the object or of
 * the key changed, or not an entry at all; each is rebuilt whole. */
static void test_damaged_rebuilt(void **state)
{
	(void)state;
	clear_cache();
	char *first = run("miss", NULL, "certify %s --weights %s %s", m1, weights, points);
	char path[512];
	assert_int_equal(entries(path), 1);
	size_t len;
	char *whole = slurp(path, &len);
	struct { const char *how; size_t at, keep; } damage[] = {
		{ "truncated", 0, 0 },
		{ "cut short", 0, len - 1 },
		{ "a byte of the object changed", len - 100, len },
		{ "a byte of the key changed", 40, len },
	};
	for (size_t i = 0; i < sizeof damage / sizeof *damage; i++) {
		char *bad = malloc(len);
		memcpy(bad, whole, len);
		bad[damage[i].at] ^= 0x20;
		FILE *f = fopen(path, "wb");
		assert_non_null(f);
		fwrite(bad, 1, damage[i].keep, f);
		fclose(f);
		free(bad);
		char *err = llnc("certify %s --weights %s %s", m1, weights, points);
		if (!strstr(err, "damaged or another key, rebuilding") || !strstr(err, "stored"))
			fail_msg("%s: not rebuilt:\n%s", damage[i].how, err);
		free(err);
		char *got = slurp(P_("out"), NULL);
		if (strcmp(got, first))
			fail_msg("%s: a different output", damage[i].how);
		free(got);
		size_t n;
		char *again = slurp(path, &n);
		if (n != len || memcmp(again, whole, len))
			fail_msg("%s: the rebuilt entry differs from the first", damage[i].how);
		free(again);
	}
	free(run("hit", first, "certify %s --weights %s %s", m1, weights, points));
	free(whole);
	free(first);
}

/* What changes the code changes the key: a mean that --dump=ir prints the
 * same (%g), the target CPU, --max-len.  Each gets an entry, and each
 * entry gives its own model's numbers. */
static void test_key(void **state)
{
	(void)state;
	clear_cache();
	const char *m2 = model("m2.lln", "0.2500001");
	char *a = run("miss", NULL, "certify %s --weights %s %s", m1, weights, points);
	char *b = run("miss", NULL, "certify %s --weights %s %s", m2, weights, points);
	assert_int_equal(entries(NULL), 2);
	assert_string_not_equal(a, b);
	free(run("hit", a, "certify %s --weights %s %s", m1, weights, points));
	free(run("hit", b, "certify %s --weights %s %s", m2, weights, points));
	free(run("miss", NULL, "certify --cpu x86-64 %s --weights %s %s", m1, weights, points));
	free(run("hit", NULL, "certify --cpu x86-64 %s --weights %s %s", m1, weights, points));
	assert_int_equal(entries(NULL), 3);
	free(a), free(b);
	/* a sequence model built for two maximum lengths: one IR field apart */
	const char *seq = puts_("seq.lln", "model seq { input x[*, 2]; h = rnn(x, 4); y = dense(last(h), 2); output y; }\n");
	const char *sw = P_("seq.safetensors");
	assert_int_equal(sh("%s init %s -o %s", LLNC, seq, sw), 0);
	free(run("miss", NULL, "build %s --max-len 3 --certifier --weights %s -o %s", seq, sw, P_("seq3")));
	free(run("miss", NULL, "build %s --max-len 4 --certifier --weights %s -o %s", seq, sw, P_("seq4")));
	free(run("hit", NULL, "build %s --max-len 3 --certifier --weights %s -o %s", seq, sw, P_("seq3")));
	assert_int_equal(entries(NULL), 5);
}

/* The off switches neither read nor write: no directory appears.  A
 * directory others can write to is not used either. */
static void test_off(void **state)
{
	(void)state;
	clear_cache();
	free(run(NULL, NULL, "certify --no-cache %s --weights %s %s", m1, weights, points));
	setenv("LLN_NO_CACHE", "1", 1);
	free(run(NULL, NULL, "certify %s --weights %s %s", m1, weights, points));
	unsetenv("LLN_NO_CACHE");
	struct stat st;
	assert_int_not_equal(stat(cache_path(), &st), 0);
	/* LLN_NO_CACHE=0 is not off */
	setenv("LLN_NO_CACHE", "0", 1);
	free(run("miss", NULL, "certify %s --weights %s %s", m1, weights, points));
	unsetenv("LLN_NO_CACHE");
	assert_int_equal(entries(NULL), 1);
	/* nor is a directory that others can write to used */
	assert_int_equal(chmod(cache_path(), 0777), 0);
	char *err = llnc("certify %s --weights %s %s", m1, weights, points);
	expect(err, "not the user's own directory, not caching", 1);
	expect(err, "lln kernel cache: hit", 0);
	free(err);
	assert_int_equal(chmod(cache_path(), 0700), 0);
}

/* Runs started together on an empty cache all succeed with the same
 * output and leave one whole entry and no temporaries. */
static void test_concurrent(void **state)
{
	(void)state;
	clear_cache();
	char *want = run(NULL, NULL, "certify --no-cache %s --weights %s %s", m1, weights, points);
	assert_int_equal(sh("for i in 1 2 3; do %s certify %s --weights %s %s >%s.$i 2>/dev/null & done; wait; "
	                    "for i in 1 2 3; do cmp -s %s.1 %s.$i || exit 1; done",
	                    LLNC, m1, weights, points, P_("c"), P_("c"), P_("c")), 0);
	char *got = slurp(P_("c.1"), NULL);
	assert_string_equal(got, want);
	free(got);
	DIR *d = opendir(cache_path());
	assert_non_null(d);
	int files = 0;
	for (struct dirent *e; (e = readdir(d));)
		files += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	assert_int_equal(files, 1);
	free(run("hit", want, "certify %s --weights %s %s", m1, weights, points));
	free(want);
}

/* Past 512 MB the entries used longest ago go first: two sparse fake
 * entries of 300 MB, the older one touched a day ago; the store of a new
 * entry drops it and keeps the other and the new one. */
static void test_trim(void **state)
{
	(void)state;
	clear_cache();
	free(run("miss", NULL, "certify %s --weights %s %s", m1, weights, points));
	char entry[512];
	assert_int_equal(entries(entry), 1);
	assert_int_equal(sh("cd %s && truncate -s 300M 00old.kernels 01new.kernels && touch -d '1 day ago' 00old.kernels "
	                    "&& touch -d '1 hour ago' 01new.kernels && rm %s", cache_path(), entry), 0);
	free(run("miss", NULL, "certify %s --weights %s %s", m1, weights, points));
	struct stat st;
	assert_int_not_equal(stat(P_("xdg/lln/00old.kernels"), &st), 0);
	assert_int_equal(stat(P_("xdg/lln/01new.kernels"), &st), 0);
	assert_int_equal(stat(entry, &st), 0);
	assert_int_equal(entries(NULL), 2);
	clear_cache();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hit_same_output),
		cmocka_unit_test(test_damaged_rebuilt),
		cmocka_unit_test(test_key),
		cmocka_unit_test(test_off),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_trim),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
