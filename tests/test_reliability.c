/* test_reliability.c: the promises of docs/reliability.md, "Outputs" and
 * "Inputs", each finding of issue 9 with its regression test.
 *
 * Outputs: atomic replacement through symbolic links, refusal of devices,
 * FIFOs and directories, temporaries named ours and cleaned after a kill,
 * inputs and outputs compared by identity before any work, unwritable
 * outputs reported first, the training log checked and kept consistent with
 * the checkpoint.  Inputs: the CSV header rule, chunked reading with record
 * numbers, checkpoint metadata, non-finite evaluation, bounded diagnostics
 * and binary sources, the streaming certifier (memory, early errors,
 * --threads), and allocation failures swept over every reader, safetensors
 * and batch certification in the style of Lua's tests: fail the N-th
 * allocation for N = 1, 2, ... until the call no longer notices, and
 * require a clean error, the same result afterwards, and no leak.
 */
#define _GNU_SOURCE   /* mallinfo2, wait4 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <malloc.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "llnc.h"
#include "jit.h"

extern char **environ;

#define LLNC LLN_BINARY_DIR "/llnc"

#include "tmpfiles.h"

static char *slurp(const char *p, size_t *len)
{
	FILE *f = fopen(p, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)n + 1);
	assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
	b[n] = 0;
	fclose(f);
	if (len)
		*len = (size_t)n;
	return b;
}

static bool exists(const char *p)
{
	struct stat st;
	return lstat(p, &st) == 0;
}

/* Entries of tmpdir whose name contains part (hidden ones included). */
static int count_files(const char *part)
{
	DIR *d = opendir(tmpdir);
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strstr(e->d_name, part) != NULL;
	closedir(d);
	return n;
}

#define assert_err(call, want)              \
	do {                                    \
		err[0] = 0;                         \
		assert_int_equal((call), -1);       \
		assert_string_equal(err, (want));   \
	} while (0)

/* ---- programs ---- */

static char out_text[1 << 16], err_text[1 << 16];
static char stdout_path[512], stderr_path[512];
static rlim_t data_limit = RLIM_INFINITY;   /* RLIMIT_DATA of the next run */

/* Runs argv with stdout and stderr captured into out_text / err_text and
 * its data segment (heap and private mappings) limited to data_limit.
 * Returns the exit status, or 128 + signal. */
static int run(const char *const argv[])
{
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid == 0) {
		int in = open("/dev/null", O_RDONLY);
		int fo = open(stdout_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int fe = open(stderr_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(in, 0);
		dup2(fo, 1);
		dup2(fe, 2);
#ifndef __SANITIZE_ADDRESS__
		/* ASan's shadow memory is a private mapping of terabytes that no
		 * data limit admits: the memory bounds are the plain build's test */
		struct rlimit lim = { data_limit, data_limit };
		if (data_limit != RLIM_INFINITY)
			setrlimit(RLIMIT_DATA, &lim);
#endif
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	assert_true(pid > 0);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	char *o = slurp(stdout_path, NULL), *e = slurp(stderr_path, NULL);
	snprintf(out_text, sizeof out_text, "%s", o ? o : "");
	snprintf(err_text, sizeof err_text, "%s", e ? e : "");
	free(o);
	free(e);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

#define RUN(...) run((const char *const[]){ __VA_ARGS__, NULL })

static void expect(int rc, int want_rc, const char *want_msg)
{
	if (rc != want_rc || (want_msg && !strstr(err_text, want_msg)))
		fail_msg("exit %d (expected %d), stderr:\n%s\nexpected to contain: %s", rc, want_rc, err_text,
		         want_msg ? want_msg : "");
}

/* The runtime's command mains in process, stderr captured. */
static int run_main(int (*fn)(const rt_model *, const char *, int, char **), const rt_model *m,
                    const char *defaults, const char *const *args)
{
	int argc = 0;
	while (args[argc])
		argc++;
	fflush(stdout);
	fflush(stderr);
	int s1 = dup(1), s2 = dup(2);
	int fo = open(stdout_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int fe = open(stderr_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	dup2(fo, 1);
	dup2(fe, 2);
	close(fo);
	close(fe);
	int rc = fn(m, defaults, argc, (char **)args);
	fflush(stdout);
	fflush(stderr);
	dup2(s1, 1);
	dup2(s2, 2);
	close(s1);
	close(s2);
	char *o = slurp(stdout_path, NULL), *e = slurp(stderr_path, NULL);
	snprintf(out_text, sizeof out_text, "%s", o ? o : "");
	snprintf(err_text, sizeof err_text, "%s", e ? e : "");
	free(o);
	free(e);
	return rc;
}

#define TRAIN(m, ...) run_main(rt_train_main, m, NULL, (const char *const[]){ "llnc train", __VA_ARGS__, NULL })
#define EVAL(m, ...) run_main(rt_eval_main, m, NULL, (const char *const[]){ "llnc eval", __VA_ARGS__, NULL })

static const char small_lln[] =
	"model r {\n"
	"  input x[4];\n"
	"  h = relu(dense(x, 6));\n"
	"  o = dense(h, 3);\n"
	"  output o;\n"
	"}\n";

/* Labeled CSV: n examples of 4 values, 3 classes. */
static const char *make_data(const char *name, int n)
{
	FILE *f = fopen(P_(name), "w");
	assert_non_null(f);
	uint64_t s = 12345;
	for (int i = 0; i < n; i++) {
		float x[4];
		for (int d = 0; d < 4; d++) {
			s = s * 6364136223846793005ULL + 1442695040888963407ULL;
			x[d] = (float)((double)(s >> 11) / 9007199254740992.0 * 2 - 1);
		}
		fprintf(f, "%d,%.6g,%.6g,%.6g,%.6g\n", x[0] > 0 ? (x[1] > 0 ? 2 : 1) : 0, x[0], x[1], x[2], x[3]);
	}
	fclose(f);
	return P_(name);
}

/* ========================================================================
 * Outputs
 * ====================================================================== */

/* A pid that no process has: a child that has exited and been reaped. */
static pid_t dead_pid(void)
{
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	assert_true(p > 0);
	waitpid(p, NULL, 0);
	return p;
}

static void test_atomic_targets(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	/* a symbolic link is kept and its target replaced */
	const char *target = puts_("target.txt", "old");
	assert_int_equal(symlink("target.txt", P_("link.txt")), 0);
	assert_int_equal(rt_write_atomic(P_("link.txt"), "new", 3, err), 0);
	struct stat st;
	assert_int_equal(lstat(P_("link.txt"), &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	char *s = slurp(target, NULL);
	assert_string_equal(s, "new");
	free(s);
	/* a dangling link: its target is created */
	assert_int_equal(symlink("made.txt", P_("dangling.txt")), 0);
	assert_int_equal(rt_write_atomic(P_("dangling.txt"), "x", 1, err), 0);
	assert_true(exists(P_("made.txt")));
	assert_int_equal(lstat(P_("dangling.txt"), &st), 0);
	assert_true(S_ISLNK(st.st_mode));

	/* a device, a FIFO, a directory: refused, untouched, nothing left */
	assert_err(rt_write_atomic("/dev/null", "x", 1, err), "/dev/null: cannot write: not a regular file");
	assert_int_equal(stat("/dev/null", &st), 0);
	assert_true(S_ISCHR(st.st_mode));
	assert_int_equal(mkfifo(P_("fifo"), 0644), 0);
	assert_err(rt_write_atomic(P_("fifo"), "x", 1, err), msg("%s: cannot write: not a regular file", P_("fifo")));
	assert_int_equal(stat(P_("fifo"), &st), 0);
	assert_true(S_ISFIFO(st.st_mode));
	assert_int_equal(mkdir(P_("dir"), 0755), 0);
	assert_err(rt_write_atomic(P_("dir"), "x", 1, err), msg("%s: cannot write: %s", P_("dir"), strerror(EISDIR)));
	assert_int_equal(count_files(".lln-tmp."), 0);
	unlink(P_("fifo"));
	rmdir(P_("dir"));
}

static void test_atomic_temporaries(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	/* the temporary is ours by name, next to the target */
	rt_atomic a;
	const char *out = P_("w.bin");
	assert_int_equal(rt_atomic_open(out, &a, err), 0);
	const char *base = strrchr(a.tmp, '/') + 1;
	char want[64];
	snprintf(want, sizeof want, ".w.bin.lln-tmp.%ld.", (long)getpid());
	assert_memory_equal(base, want, strlen(want));
	assert_int_equal(rt_write_fd(a.fd, "abc", 3), 0);
	assert_int_equal(rt_atomic_commit(&a, err), 0);
	assert_int_equal(count_files(".lln-tmp."), 0);

	/* kill -9 leftovers: those of dead processes go on the next save of
	 * the same output; a live process's and another output's stay */
	char stale[64], live[64], other[64];
	snprintf(stale, sizeof stale, ".w.bin.lln-tmp.%ld.abcdef", (long)dead_pid());
	snprintf(live, sizeof live, ".w.bin.lln-tmp.%ld.abcdef", (long)getppid());
	snprintf(other, sizeof other, ".v.bin.lln-tmp.%ld.abcdef", (long)dead_pid());
	puts_(stale, "half");
	puts_(live, "half");
	puts_(other, "half");
	assert_int_equal(rt_write_atomic(out, "xyz", 3, err), 0);
	assert_false(exists(P_(stale)));
	assert_true(exists(P_(live)));
	assert_true(exists(P_(other)));
	unlink(P_(live));
	unlink(P_(other));

	/* a real kill -9 in the middle of a save */
	pid_t p = fork();
	if (p == 0) {
		rt_atomic b;
		if (rt_atomic_open(out, &b, NULL) == 0)
			rt_write_fd(b.fd, "partial", 7);
		raise(SIGKILL);
		_exit(1);
	}
	int st;
	waitpid(p, &st, 0);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(count_files(".lln-tmp."), 1);
	char *s = slurp(out, NULL);
	assert_string_equal(s, "xyz");   /* the old file is intact */
	free(s);
	assert_int_equal(rt_write_atomic(out, "new", 3, err), 0);
	assert_int_equal(count_files(".lln-tmp."), 0);
	unlink(out);
}

static void test_files_check(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	const char *data = puts_("d.csv", "1,2\n");
	assert_int_equal(mkdir(P_("sub"), 0755), 0);
	char dotted[600], up[600];
	snprintf(dotted, sizeof dotted, "%s/./d.csv", tmpdir);
	snprintf(up, sizeof up, "%s/sub/../new.bin", tmpdir);
	assert_int_equal(symlink("d.csv", P_("alias.csv")), 0);

	/* an output that is an input, by any spelling or link */
	rt_file f1[] = { { "--data", data, RT_FILE_IN, 0 }, { "--log", dotted, RT_FILE_STREAM, 0 } };
	assert_int_equal(rt_files_check(f1, 2, err), 2);
	assert_string_equal(err, msg("--data '%s' and --log '%s' are the same file; writing the output would "
	                             "destroy the input", data, dotted));
	rt_file f2[] = { { "-o", P_("alias.csv"), RT_FILE_OUT, 0 }, { "INPUT", data, RT_FILE_IN, 0 } };
	assert_int_equal(rt_files_check(f2, 2, err), 2);
	assert_non_null(strstr(err, "INPUT '"));
	/* two new outputs with one name */
	rt_file f3[] = { { "-o", P_("new.bin"), RT_FILE_OUT, 0 }, { "--checkpoint", up, RT_FILE_OUT, 0 } };
	assert_int_equal(rt_files_check(f3, 2, err), 2);
	assert_non_null(strstr(err, "the outputs would overwrite each other"));
	/* shared: --resume may be the checkpoint it continues */
	rt_file f4[] = { { "--resume", data, RT_FILE_IN, 1 }, { "--checkpoint", data, RT_FILE_OUT, 1 } };
	assert_int_equal(rt_files_check(f4, 2, err), 0);
	/* inputs may repeat; NULL and "-" are skipped */
	rt_file f5[] = { { "--data", data, RT_FILE_IN, 0 }, { "--test", data, RT_FILE_IN, 0 },
	                 { "-o", NULL, RT_FILE_OUT, 0 }, { "INPUT", "-", RT_FILE_IN, 0 },
	                 { "-o", P_("fine.bin"), RT_FILE_OUT, 0 } };
	assert_int_equal(rt_files_check(f5, 5, err), 0);

	/* unwritable outputs, before any work */
	rt_file f6[] = { { "-o", "/nonexistent/dir/cert", RT_FILE_OUT, 0 } };
	assert_int_equal(rt_files_check(f6, 1, err), 1);
	assert_string_equal(err, "cannot write /nonexistent/dir/cert: No such file or directory");
	rt_file f7[] = { { "-o", "/dev/null", RT_FILE_OUT, 0 } };
	assert_int_equal(rt_files_check(f7, 1, err), 1);
	assert_string_equal(err, "cannot write /dev/null: it is a character device");
	rt_file f8[] = { { "--log", "/dev/null", RT_FILE_STREAM, 0 } };
	assert_int_equal(rt_files_check(f8, 1, err), 0);   /* streams write through */
	assert_int_equal(mkfifo(P_("fifo"), 0644), 0);
	rt_file f9[] = { { "--log", P_("fifo"), RT_FILE_STREAM, 0 } };
	assert_int_equal(rt_files_check(f9, 1, err), 1);
	assert_string_equal(err, msg("cannot write %s: it is a FIFO", P_("fifo")));
	rt_file f10[] = { { "-o", P_("sub"), RT_FILE_OUT, 0 } };
	assert_int_equal(rt_files_check(f10, 1, err), 1);
	assert_string_equal(err, msg("cannot write %s: %s", P_("sub"), strerror(EISDIR)));
	unlink(P_("fifo"));
	unlink(P_("alias.csv"));
	rmdir(P_("sub"));
}

/* llnc and its certifiers refuse before any work: nothing is created. */
static void test_commands_refuse(void **state)
{
	(void)state;
	const char *lln = puts_("r.lln", small_lln), *w = P_("w.safetensors"), *data = make_data("d.csv", 50);
	assert_int_equal(RUN(LLNC, "init", lln, "-o", w), 0);
	char *before = slurp(data, NULL);
	expect(RUN(LLNC, "train", lln, "--data", data, "--log", data, "--epochs", "1", "-o", P_("o.safetensors")),
	       2, "are the same file");
	char *after = slurp(data, NULL);
	assert_string_equal(before, after);   /* the data is untouched */
	free(before);
	free(after);
	expect(RUN(LLNC, "build", lln, "--certifier", "--weights", w, "-o", w), 2,
	       msg("llnc build: --weights '%s' and -o '%s' are the same file", w, w));
	expect(RUN(LLNC, "train", lln, "--data", data, "-o", P_("s"), "--checkpoint", P_("./s")), 2,
	       "the outputs would overwrite each other");
	expect(RUN(LLNC, "init", lln, "-o", lln), 2, "llnc init: the model");
	expect(RUN(LLNC, "train", lln, "--data", data, "-o", lln), 2, "the model");
	expect(RUN(LLNC, "build", lln, "--certifier", "--weights", w, "-o", "/nonexistent/dir/cert"), 1,
	       "llnc build: cannot write /nonexistent/dir/cert: No such file or directory");
	expect(RUN(LLNC, "init", lln, "-o", "/dev/null"), 1, "cannot write /dev/null: it is a character device");
	expect(RUN(LLNC, "data", "toy2d", "-o", "/nonexistent/d.csv"), 1, "cannot write /nonexistent/d.csv");
	const char *lln2 = puts_("p.lln", "model p {\n  input x[2];\n  h = relu(dense(x, 4));\n  o = dense(h, 2);\n"
	                                  "  output o;\n}\n");
	expect(RUN(LLNC, "plot", lln2, "--weights", P_("fig.svg"), "-o", P_("fig.svg")), 2, "are the same file");
	expect(RUN(LLNC, "plot", lln2, "--weights", w, "-o", "/nonexistent/fig.svg"), 1,
	       "llnc plot: cannot write /nonexistent/fig.svg");
	expect(RUN(LLNC, "train", lln, "--data", data, "--epochs", "1", "--valid", "0", "-o", P_("o.safetensors"),
	           "--log", P_("no/such/log")), 1, msg("cannot write %s", P_("no/such/log")));
	assert_false(exists(P_("o.safetensors")));
	assert_false(exists(P_("o.ckpt.safetensors")));
	assert_false(exists(P_("s")));
	/* build keeps a symbolic link named by -o */
	assert_int_equal(symlink("real-cert", P_("cert")), 0);
	assert_int_equal(RUN(LLNC, "build", lln, "--certifier", "--weights", w, "-o", P_("cert")), 0);
	struct stat st;
	assert_int_equal(lstat(P_("cert"), &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(access(P_("real-cert"), X_OK), 0);
	const char *cert = P_("cert");
	expect(RUN(cert, "-o", data, data), 2, "INPUT");
	expect(RUN(cert, "-o", "/nonexistent/x.jsonl", data), 1, "cannot write /nonexistent/x.jsonl");
	assert_int_equal(count_files(".lln-tmp."), 0);
}

/* The log: a full disk stops the run with a message; a kill between the
 * log line and the checkpoint leaves one line too many, which a resumed
 * run drops, so each epoch is logged once. */
static void test_log(void **state)
{
	(void)state;
	arena *a = arena_new();
	cg_unit *u;
	const rt_model *m = jit_text(a, small_lln, 1, &u);
	const char *data = make_data("d.csv", 60), *out = P_("o.safetensors"), *log = P_("run.jsonl");
	const char *ck = P_("o.ckpt.safetensors");
	expect(TRAIN(m, "--data", data, "--epochs", "1", "--valid", "0", "--log", "/dev/full", "-o", out), 1,
	       msg("llnc train: cannot write /dev/full: %s", strerror(ENOSPC)));
	assert_false(exists(out));
	assert_false(exists(ck));

	assert_int_equal(TRAIN(m, "--data", data, "--epochs", "1", "--valid", "10", "--threads", "1", "--log", log,
	                       "-o", out), 0);
	/* killed after epoch 2's log line, before its checkpoint */
	FILE *f = fopen(log, "a");
	fputs("{\"epoch\":2,\"lr\":0.01,\"train_loss\":1}\n", f);
	fclose(f);
	assert_int_equal(TRAIN(m, "--data", data, "--epochs", "3", "--valid", "10", "--threads", "1", "--log", log,
	                       "--resume", ck, "-o", out), 0);
	char *s = slurp(log, NULL);
	int lines = 0;
	for (int e = 1; e <= 3; e++) {
		char key[32];
		snprintf(key, sizeof key, "{\"epoch\":%d,", e);
		const char *at = strstr(s, key);
		assert_non_null(at);
		assert_null(strstr(at + 1, key));   /* once */
	}
	for (const char *p = s; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, 3);
	assert_null(strstr(s, "\"train_loss\":1}"));   /* the stray line is gone */
	free(s);
	cg_unit_free(u);
	arena_free(a);
}

/* ========================================================================
 * Inputs
 * ====================================================================== */

static void test_csv_header_rule(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	rt_data d;
	/* a typo in the first record is an error, not a header */
	const char *p = puts_("h1.csv", "0.5O,1,2\n1,2,3\n");
	assert_err(rt_data_read(p, 3, false, &d, err), msg("%s: record 1: field 1 is not a number: '0.5O'", p));
	p = puts_("h2.csv", ",1,2\n1,2,3\n");
	assert_err(rt_data_read(p, 3, false, &d, err), msg("%s: record 1: field 1 is empty", p));
	p = puts_("h3.csv", "\"0.5\",1,2\n1,2,3\n");
	assert_err(rt_data_read(p, 0, false, &d, err), msg("%s: record 1: field 1 is not a number: '\"0.5\"'", p));
	/* all text with the wrong field count: record 1 */
	p = puts_("h4.csv", "a,b\n1,2,3\n");
	assert_err(rt_data_read(p, 3, false, &d, err), msg("%s: record 1: expected 3 values, found 2", p));
	p = puts_("h5.csv", "a,b\n1,2,3\n");
	assert_err(rt_data_read(p, 0, false, &d, err), msg("%s: record 1: field 1 is not a number: 'a'", p));
	/* headers: all text, the right count (known, or the next line's) */
	p = puts_("h6.csv", "a,b,c\n1,2,3\n");
	assert_int_equal(rt_data_read(p, 3, false, &d, err), 0);
	assert_int_equal(d.n, 1);
	rt_data_free(&d);
	assert_int_equal(rt_data_read(p, 0, false, &d, err), 0);
	assert_int_equal(d.n, 1);
	assert_true(d.x[0] == 1 && d.x[2] == 3);
	rt_data_free(&d);
	p = puts_("h7.csv", "label,a,b\n2,1,2\n");
	assert_int_equal(rt_data_read(p, 2, true, &d, err), 0);
	assert_int_equal(d.n, 1);
	assert_int_equal(d.y[0], 2);
	rt_data_free(&d);
	p = puts_("h8.csv", "label\n1\n0\n");
	int32_t *y;
	int64_t n;
	assert_int_equal(rt_labels_read(p, 0, &y, &n, err), 0);
	assert_int_equal(n, 2);
	free(y);
	p = puts_("h9.csv", "lable,x\n3\n");
	assert_err(rt_labels_read(p, 0, &y, &n, err), msg("%s: record 1: expected 1 label, found 2 values", p));
}

/* Chunks give the same examples as one read, and a bad record is reported
 * with its number when its chunk is read, not after the whole file. */
static void test_reader_chunks(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	/* CSV with lines longer than the reader's 1 MB buffer */
	const int W = 300000, N = 5;
	FILE *f = fopen(P_("wide.csv"), "w");
	for (int i = 0; i < N; i++)
		for (int j = 0; j < W; j++)
			fprintf(f, "%d%c", (i * 7 + j) % 10, j + 1 < W ? ',' : '\n');
	fclose(f);
	rt_data all, c;
	assert_int_equal(rt_data_read(P_("wide.csv"), W, false, &all, err), 0);
	assert_int_equal(all.n, N);
	rt_reader *r;
	assert_int_equal(rt_reader_open(P_("wide.csv"), W, &r, err), 0);
	int64_t got = 0;
	for (;;) {
		assert_int_equal(rt_reader_next(r, 2, &c, err), 0);
		if (!c.n)
			break;
		assert_true(c.n <= 2);
		assert_memory_equal(c.x, all.x + got * W, sizeof(float) * (size_t)(c.n * W));
		got += c.n;
	}
	assert_int_equal(got, N);
	assert_int_equal(rt_reader_count(r), N);
	rt_reader_close(r);
	rt_data_free(&all);

	/* an error in record 9000 of 10000: the first chunks come first */
	f = fopen(P_("late.csv"), "w");
	for (int i = 1; i <= 10000; i++)
		fprintf(f, i == 9000 ? "1,x\n" : "%d,1\n", i);
	fclose(f);
	assert_int_equal(rt_reader_open(P_("late.csv"), 2, &r, err), 0);
	assert_int_equal(rt_reader_next(r, 4096, &c, err), 0);
	assert_int_equal(c.n, 4096);
	assert_true(c.x[2 * 4095] == 4096);
	assert_int_equal(rt_reader_next(r, 4096, &c, err), 0);
	assert_int_equal(rt_reader_next(r, 4096, &c, err), -1);
	assert_string_equal(err, msg("%s: record 9000: field 2 is not a number: 'x'", P_("late.csv")));
	rt_reader_close(r);

	/* .npy: chunks across the reader's 1 MB pieces, an error numbered
	 * from the start of the file */
	const int64_t n = 70000, w = 8;
	float *x = malloc(sizeof(float) * (size_t)(n * w));
	for (int64_t i = 0; i < n * w; i++)
		x[i] = (float)i;
	x[(n - 3) * w + 5] = NAN;
	f = npy_open(P_("big.npy"), "<f4", msg("(%lld, %lld)", (long long)n, (long long)w));
	fwrite(x, sizeof(float), (size_t)(n * w), f);
	fclose(f);
	assert_int_equal(rt_reader_open(P_("big.npy"), w, &r, err), 0);
	got = 0;
	int rc;
	while ((rc = rt_reader_next(r, 4096, &c, err)) == 0 && c.n) {
		assert_memory_equal(c.x, x + got * w, sizeof(float) * (size_t)(c.n * w));
		got += c.n;
	}
	assert_int_equal(rc, -1);
	assert_int_equal(got, (n - 3) / 4096 * 4096);
	assert_string_equal(err, msg("%s: record %lld: value 6 is NaN or infinite", P_("big.npy"), (long long)(n - 2)));
	rt_reader_close(r);
	free(x);
}

/* A checkpoint with its metadata edited: header length, JSON, data. */
static void edit_checkpoint(const char *from, const char *to, const char *key, const char *value)
{
	size_t len;
	char *b = slurp(from, &len);
	uint64_t hl = 0;
	for (int i = 0; i < 8; i++)
		hl |= (uint64_t)(unsigned char)b[i] << (8 * i);
	char *h = strndup(b + 8, hl);
	char pat[64];
	snprintf(pat, sizeof pat, "\"%s\":\"", key);
	char *at = strstr(h, pat);
	assert_non_null(at);
	char *vs = at + strlen(pat), *ve = strchr(vs, '"');
	size_t nl = (size_t)(vs - h) + strlen(value) + strlen(ve);
	char *nh = malloc(nl + 8);
	snprintf(nh, nl + 8, "%.*s%s%s", (int)(vs - h), h, value, ve);
	while (strlen(nh) % 8)
		strcat(nh, " ");
	uint64_t nhl = strlen(nh);
	FILE *f = fopen(to, "wb");
	for (int i = 0; i < 8; i++)
		fputc((int)(nhl >> (8 * i) & 255), f);
	fwrite(nh, 1, nhl, f);
	fwrite(b + 8 + hl, 1, len - 8 - hl, f);
	fclose(f);
	free(nh);
	free(h);
	free(b);
}

static void test_checkpoint_metadata(void **state)
{
	(void)state;
	arena *a = arena_new();
	cg_unit *u;
	const rt_model *m = jit_text(a, small_lln, 1, &u);
	const char *data = make_data("d.csv", 60), *out = P_("c.safetensors"), *ck = P_("c.ckpt.safetensors");
	assert_int_equal(TRAIN(m, "--data", data, "--epochs", "1", "--valid", "10", "--threads", "1", "-o", out), 0);
	static const struct { const char *key, *value, *want; } bad[] = {
		{ "epoch", "2147483648", "metadata 'epoch' is not a count from 1 to 1000000000: '2147483648'" },
		{ "epoch", "0", "metadata 'epoch' is not a count from 1 to 1000000000: '0'" },
		{ "step", "0", "metadata 'step' is not a count from 1 to" },
		{ "best_epoch", "2", "metadata 'best_epoch' is not a count from 0 to 1: '2'" },
		{ "best_valid_loss", "nan", "metadata 'best_valid_loss' nan does not fit best_epoch 1" },
		{ "best_valid_loss", "-1", "metadata 'best_valid_loss' -1 does not fit best_epoch 1" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		const char *edited = P_("edited.ckpt.safetensors");
		edit_checkpoint(ck, edited, bad[i].key, bad[i].value);
		expect(TRAIN(m, "--data", data, "--epochs", "3", "--valid", "10", "--threads", "1", "--resume", edited,
		             "-o", P_("r.safetensors")), 1, bad[i].want);
	}
	/* unchanged, it resumes */
	assert_int_equal(TRAIN(m, "--data", data, "--epochs", "2", "--valid", "10", "--threads", "1", "--resume", ck,
	                       "-o", out), 0);
	cg_unit_free(u);
	arena_free(a);
}

/* Finite weights whose products overflow: eval says so (exit 1). */
static void test_eval_overflow(void **state)
{
	(void)state;
	arena *a = arena_new();
	cg_unit *u;
	const rt_model *m = jit_text(a, small_lln, 1, &u);
	float *P = rt_alloc_floats(m->n_params);
	for (int64_t i = 0; i < m->n_params; i++)
		P[i] = 3e38f;
	char err[RT_ERRLEN];
	const char *w = P_("huge.safetensors"), *data = make_data("d.csv", 20);
	assert_int_equal(rt_params_save(m->tensors, m->n_tensors, P, NULL, 0, NULL, NULL, w, err), 0);
	expect(EVAL(m, "--weights", w, "--data", data), 1,
	       msg("llnc eval: the loss on %s is not finite: the weights %s overflow float32 arithmetic", data, w));
	assert_null(strstr(out_text, "nan"));
	free(P);
	cg_unit_free(u);
	arena_free(a);
}

/* ---- diagnostics ---- */

static char *diag_text(const char *text, int *errors)
{
	arena *a = arena_new();
	source *src = source_from_string(a, "big.lln", text);
	char *buf = NULL;
	size_t len = 0;
	src->out = open_memstream(&buf, &len);
	ast_program *ast = ast_parse(a, src);
	if (ast)
		sema_check(a, ast);
	diag_finish(src);
	fclose(src->out);
	*errors = src->errors;
	arena_free(a);
	return buf;
}

static void test_diagnostics_bounded(void **state)
{
	(void)state;
	/* 1 MB of '@': 20 errors shown, the rest counted, output bounded */
	size_t n = 1 << 20;
	char *t = malloc(n + 1);
	memset(t, '@', n);
	t[n] = 0;
	int errors;
	char *out = diag_text(t, &errors);
	free(t);
	assert_true(errors > 20);
	int shown = 0;
	for (const char *p = out; (p = strstr(p, ": error: ")); p++)
		shown++;
	assert_int_equal(shown, 20);
	assert_non_null(strstr(out, msg("big.lln: ... and %d more errors\n", errors - 20)));
	assert_true(strlen(out) < 20 * 300);
	free(out);

	/* a long line: a window around the caret, the caret under the column */
	char line[5001];
	memset(line, ' ', 5000);
	line[5000] = 0;
	memcpy(line, "model m {", 9);
	line[3000] = '@';
	char *src = malloc(6000);
	snprintf(src, 6000, "%s\n}\n", line);
	out = diag_text(src, &errors);
	free(src);
	assert_non_null(strstr(out, "big.lln:1:3001: error: "));
	char *l2 = strchr(out, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
	assert_true(l3 - l2 <= 100 + 7);
	assert_memory_equal(l2, "...", 3);
	size_t caret = strcspn(l3, "^");
	assert_int_equal(l2[caret], '@');
	free(out);
}

static void test_binary_sources(void **state)
{
	(void)state;
	static const struct { const char *name; const char *bytes; size_t len; const char *want; } cases[] = {
		{ "nul.lln", "model m {\0}", 11, "nul.lln: error: not a .lln source: binary data at byte 9\n" },
		{ "utf.lln", "# caf\xc3\xa9 \xff\n", 10, "utf.lln: error: not a .lln source: binary data at byte 8\n" },
		{ "ctl.lln", "model\x01", 6, "ctl.lln: error: not a .lln source: binary data at byte 5\n" },
		{ "net.pt", "PK\x03\x04\x14\0\0\0", 8, "net.pt: error: not a .lln source: it is a zip archive "
		  "(PyTorch's torch.save format); lln takes weights as safetensors" },
		{ "w.st", "\x02\0\0\0\0\0\0\0{}", 10, "w.st: error: not a .lln source: it is a safetensors weights "
		  "file; give it as --weights to llnc build, eval or plot" },
		{ "a.npy", "\x93NUMPY\x01\0", 8, "a.npy: error: not a .lln source: it is a NumPy .npy array; give "
		  "data as --data" },
		{ "m.onnx", "\x08\x07\x12\x07pytorch", 11, "m.onnx: error: not a .lln source: it is an ONNX model "
		  "(protobuf); convert it with 'llnc import" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		const char *p = put(cases[i].name, cases[i].bytes, cases[i].len);
		expect(RUN(LLNC, "check", p), 1, NULL);
		char want[400];
		snprintf(want, sizeof want, "%s%s", tmpdir, "/");
		assert_memory_equal(err_text, want, strlen(want));
		if (!strstr(err_text, cases[i].want))
			fail_msg("%s: got %s", cases[i].name, err_text);
		assert_null(strchr(strchr(err_text, '\n') + 1, '\n'));   /* one line */
	}
	/* UTF-8 text is fine */
	const char *ok = puts_("ok.lln", "# café, naïve\nmodel m {\n  input x[2];\n  o = dense(x, 2);\n  output o;\n}\n");
	expect(RUN(LLNC, "check", ok), 0, NULL);
	/* the runtime names a torch.save zip given as weights */
	const char *lln = puts_("r.lln", small_lln);
	expect(RUN(LLNC, "eval", lln, "--weights", P_("net.pt"), "--data", make_data("d.csv", 5)), 1,
	       msg("%s: is a zip archive (PyTorch's torch.save format), not safetensors", P_("net.pt")));
}

/* ---- the streaming certifier ---- */

static void test_certifier_streams(void **state)
{
	(void)state;
	const char *lln = puts_("wide.lln", "model s {\n  input x[64];\n  h = relu(dense(x, 16));\n"
	                                    "  o = dense(h, 4);\n  output o;\n}\n");
	const char *w = P_("s.safetensors"), *cert = P_("s-cert");
	assert_int_equal(RUN(LLNC, "init", lln, "-o", w), 0);
	assert_int_equal(RUN(LLNC, "build", lln, "--certifier", "--weights", w, "-o", cert), 0);

	/* memory does not grow with the inputs: 200,000 inputs (51 MB of
	 * .npy) certified with the certifier's data limited to 24 MB */
	{
		int64_t n = 200000;
		FILE *f = npy_open(P_("many.npy"), "<f4", msg("(%lld, 64)", (long long)n));
		float row[64];
		for (int64_t i = 0; i < n; i++) {
			for (int j = 0; j < 64; j++)
				row[j] = (float)((i * 31 + j * 7) % 100) / 100.0f;
			fwrite(row, sizeof row, 1, f);
		}
		fclose(f);
		data_limit = 24 << 20;
		int rc = RUN(cert, "--norms", "2", "--threads", "1", "-o", P_("many.jsonl"), P_("many.npy"));
		data_limit = RLIM_INFINITY;
		expect(rc, 0, NULL);
		char *s = slurp(P_("many.jsonl"), NULL);
		int64_t lines = 0;
		for (const char *p = s; *p; p++)
			lines += *p == '\n';
		assert_int_equal(lines, n);
		assert_non_null(strstr(s, "{\"index\":199999,"));
		free(s);
	}
	unlink(P_("many.npy"));
	unlink(P_("many.jsonl"));

	/* a bad record late in the file: reported by number, the records
	 * before it already printed, and -o leaves no file */
	FILE *f = fopen(P_("late.csv"), "w");
	for (int i = 1; i <= 10000; i++)
		for (int j = 0; j < 64; j++)
			fprintf(f, "%s%c", i == 9000 && j == 3 ? "zz" : "0.5", j < 63 ? ',' : '\n');
	fclose(f);
	expect(RUN(cert, "--norms", "2", P_("late.csv")), 1, msg("%s: record 9000: field 4 is not a number: 'zz'", P_("late.csv")));
	int lines = 0;
	for (const char *p = out_text; *p; p++)
		lines += *p == '\n';
	assert_true(lines > 0);
	expect(RUN(cert, "--norms", "2", "-o", P_("late.jsonl"), P_("late.csv")), 1, "record 9000");
	assert_false(exists(P_("late.jsonl")));
	assert_int_equal(count_files(".lln-tmp."), 0);

	/* --threads: 0 is all cores, more than the work can use is capped */
	const char *small = P_("small.csv");
	f = fopen(small, "w");
	for (int i = 0; i < 1000; i++)
		for (int j = 0; j < 64; j++)
			fprintf(f, "%d%c", (i + j) % 5, j < 63 ? ',' : '\n');
	fclose(f);
	assert_int_equal(RUN(cert, "--threads", "1", "-o", P_("t1.jsonl"), small), 0);
	assert_int_equal(RUN(cert, "--threads", "0", "-o", P_("t0.jsonl"), small), 0);
	data_limit = 64 << 20;   /* 1024 workspaces and stacks would not fit */
	assert_int_equal(RUN(cert, "--threads", "1024", "-o", P_("t1024.jsonl"), small), 0);
	data_limit = RLIM_INFINITY;
	char *a1 = slurp(P_("t1.jsonl"), NULL), *a0 = slurp(P_("t0.jsonl"), NULL), *ak = slurp(P_("t1024.jsonl"), NULL);
	assert_string_equal(a1, a0);
	assert_string_equal(a1, ak);
	free(a1);
	free(a0);
	free(ak);
	expect(RUN(cert, "--threads", "-1", small), 2, "--threads takes a number from 0 (all cores) to 1024");
}

/* ========================================================================
 * Allocation failures
 * ====================================================================== */

static size_t heap_in_use(void)
{
	return mallinfo2().uordblks;
}

/* Sweeps the N-th allocation of call() over every N until call succeeds
 * without noticing; each failure must be a clean error (-1, a message
 * containing `want` when not NULL) and leave the heap as it found it. */
#define SWEEP_MSG(call, cleanup, want)                                                 \
	do {                                                                             \
		{ call; cleanup; }   /* warm up the C library's own caches */              \
		long n_ = 1;                                                                 \
		for (;; n_++) {                                                              \
			size_t before_ = heap_in_use();                                          \
			err[0] = 0;                                                              \
			rt_alloc_fail_after(n_);                                                 \
			int rc_ = (call);                                                        \
			bool fired_ = rt_alloc_fired();                                          \
			rt_alloc_fail_after(0);                                                  \
			if (!fired_) {                                                           \
				assert_int_equal(rc_, 0);                                            \
				cleanup;                                                             \
				break;                                                               \
			}                                                                        \
			if (rc_ != -1 || !err[0] || !strstr(err, want ? want : ""))             \
				fail_msg("%s: allocation %ld: rc %d, err '%s'", #call, n_, rc_, err); \
			if (heap_in_use() != before_)                                            \
				fail_msg("%s: allocation %ld: %zu bytes leaked", #call, n_, heap_in_use() - before_); \
		}                                                                            \
		swept += n_ - 1;                                                             \
	} while (0)
#define SWEEP(call, cleanup) SWEEP_MSG(call, cleanup, "memory")

static int read_all_chunks(const char *path, int64_t dim, char *err)
{
	rt_reader *r;
	if (rt_reader_open(path, dim, &r, err))
		return -1;
	rt_data c;
	int rc;
	while ((rc = rt_reader_next(r, 3, &c, err)) == 0 && c.n)
		;
	rt_reader_close(r);
	return rc;
}

static void test_alloc_failures(void **state)
{
	(void)state;
	char err[RT_ERRLEN];
	long swept = 0;
	rt_data d;
	int32_t *y;
	int64_t n;
	const char *csv = puts_("a.csv", "x,y,z\n1,2,3\n4,5,6\n7,8,9\n10,11,12\n");
	const char *lab = puts_("a-lab.csv", "1,0.5,0.5\n0,1,1\n");
	const char *labels = puts_("labels.csv", "label\n1\n2\n");
	static const unsigned char idx[] = { 0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8 };
	const char *idxp = put("a-idx", idx, sizeof idx);
	static const unsigned char idxl[] = { 0, 0, 8, 1, 0, 0, 0, 2, 3, 4 };
	const char *idxlp = put("a-lab-idx", idxl, sizeof idxl);
	char npy[128] = "\x93NUMPY\x01\x00";
	const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
	size_t hl = 128 - 10;
	npy[8] = (char)hl;
	npy[9] = 0;
	memset(npy + 10, ' ', hl);
	memcpy(npy + 10, dict, strlen(dict));
	npy[127] = '\n';
	unsigned char npyf[128 + 16];
	memcpy(npyf, npy, 128);
	float v[4] = { 1, 2, 3, 4 };
	memcpy(npyf + 128, v, 16);
	const char *npyp = put("a.npy", npyf, sizeof npyf);

	SWEEP(rt_data_read(csv, 3, false, &d, err), rt_data_free(&d));
	SWEEP(rt_data_read(lab, 2, true, &d, err), rt_data_free(&d));
	SWEEP(rt_data_read(idxp, 4, false, &d, err), rt_data_free(&d));
	SWEEP(rt_data_read(npyp, 2, false, &d, err), rt_data_free(&d));
	SWEEP(rt_labels_read(labels, 2, &y, &n, err), free(y));
	SWEEP(rt_labels_read(idxlp, 2, &y, &n, err), free(y));
	SWEEP(read_all_chunks(csv, 3, err), (void)0);
	SWEEP(read_all_chunks(npyp, 2, err), (void)0);

	/* safetensors: save and load, jansson's allocations included */
	arena *a = arena_new();
	cg_unit *u;
	const rt_model *m = jit_text(a, small_lln, 1, &u);
	float *P = rt_alloc_floats(m->n_params), *Q = rt_alloc_floats(m->n_params);
	rt_init_params(m->tensors, m->n_tensors, 7, RT_INIT_HE, P);
	const char *w = P_("w.safetensors");
	const char *meta[] = { "format", "test", NULL };
	SWEEP(rt_params_save(m->tensors, m->n_tensors, P, NULL, 0, NULL, meta, w, err), (void)0);
	assert_int_equal(count_files(".lln-tmp."), 0);
	/* jansson's parser reports some allocation failures as syntax errors
	 * ("string or '}' expected"): still a clean error, just not named */
	SWEEP_MSG(rt_params_load(m->tensors, m->n_tensors, w, Q, err), (void)0, NULL);
	assert_memory_equal(P, Q, sizeof(float) * (size_t)m->n_params);

	/* batch certification, one thread (other threads' arenas would hide
	 * their leaks from mallinfo2) */
	float x[4 * 5];
	for (int i = 0; i < 20; i++)
		x[i] = (float)(i % 7) / 7.0f - 0.4f;
	rt_cert c1[5], c2[5];
	uint64_t p1[5], p2[5];
	float t[5];
	int32_t tb[5];
	rt_batch b1 = { .x = x, .n = 5, .dirs = x, .n_dirs = 1, .norms = RT_ALL_NORMS, .threads = 1, .cert = c1,
	                .pattern = p1, .t = t, .tbind = tb };
	assert_int_equal(rt_certify_batch(m, P, &b1), 0);
	rt_batch b2 = b1;
	b2.cert = c2;
	b2.pattern = p2;
#define CERTIFY(b) (rt_certify_batch(m, P, &(b)) ? (snprintf(err, sizeof err, "out of memory"), -1) : 0)
	SWEEP(CERTIFY(b2), (void)0);
	assert_memory_equal(c1, c2, sizeof c1);
	assert_memory_equal(p1, p2, sizeof p1);
	print_message("[ alloc ] %ld allocation failures swept, each a clean error\n", swept);
	assert_true(swept > 40);
	free(P);
	free(Q);
	cg_unit_free(u);
	arena_free(a);
}

/* ---- fixture ---- */

static int rmone(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/lln-reliability-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(stdout_path, sizeof stdout_path, "%s/stdout", tmpdir);
	snprintf(stderr_path, sizeof stderr_path, "%s/stderr", tmpdir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (!getenv("LLN_KEEP_TMP"))
		nftw(tmpdir, rmone, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

int main(int argc, char **argv)
{
	/* glibc's per-thread caches count freed chunks as in use in mallinfo2,
	 * which made the sweeps' heap comparison flaky (48 or 96 bytes "leaked"
	 * now and then): run without them */
	if (!getenv("GLIBC_TUNABLES") && argc > 0) {
		setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0", 1);
		execv("/proc/self/exe", argv);   /* on failure, go on as we are */
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_atomic_targets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_atomic_temporaries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_files_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commands_refuse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log, setup, teardown),
		cmocka_unit_test_setup_teardown(test_csv_header_rule, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reader_chunks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint_metadata, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eval_overflow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_diagnostics_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_binary_sources, setup, teardown),
		cmocka_unit_test_setup_teardown(test_certifier_streams, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alloc_failures, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
