/* test_cli.c: the command-line conventions every command shares.
 *
 * One settings table: for each setting of a .lln train or objective block,
 * values around its limits are accepted by `llnc check` exactly when the
 * flag that overrides it accepts them; the combinations no kernel trains
 * are refused by `llnc check` with a location.  Flags read with getopt_long:
 * `--flag=value` and `--flag value` alike, a typo answered with the closest
 * flag, `--threads 0` everywhere.  A training run stopped by SIGINT leaves a
 * whole checkpoint and prints the command that resumes it, which works.
 * `--version`, the one-line summaries of check/init/build, `cmake
 * --install`, and every example of README.md and the docs run as written
 * (tests/doc_examples.py).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "rt.h"
#include "tmpfiles.h"

#define LLNC LLN_BINARY_DIR "/llnc"

static char out[1 << 16];

/* Runs a shell command; its stdout and stderr in `out` (tmpfiles.h's sh()
 * writes them to files); the exit status. */
static int run_sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	char full[4200];
	snprintf(full, sizeof full, "(%s) 2>&1", cmd);
	FILE *p = popen(full, "r");
	assert_non_null(p);
	size_t n = fread(out, 1, sizeof out - 1, p);
	out[n] = 0;
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void expect_out(const char *want)
{
	if (!strstr(out, want))
		fail_msg("expected the output to contain:\n%s\ngot:\n%s", want, out);
}

static const char small_model[] =
	"model small { input x[2]; h = relu(dense(x, 16)); y = dense(h, 2); output y; }\n";

/* ---- one settings table ---- */

/* How a setting is written in a .lln file (%s: the value) and as a flag. */
typedef struct probe {
	const char *file, *flag;
	const char *values[10];
} probe;

static const probe probes[] = {
	{ "train { lr = %s; }", "--lr", { "-1", "0", "1e-9", "0.5", "1e300", NULL } },
	{ "train { optimizer = sgd(momentum = %s); }", "--momentum", { "-0.1", "0", "0.5", "0.999", "1", "1.5", NULL } },
	{ "train { optimizer = adam(eps = %s); }", "--eps", { "-1", "0", "1e-12", "1", NULL } },
	{ "train { optimizer = adam(beta1 = %s); }", "--beta1", { "-0.5", "0", "0.9", "1", NULL } },
	{ "train { optimizer = adam(beta2 = %s); }", "--beta2", { "0", "0.999", "1", "2", NULL } },
	{ "train { optimizer = sgd(weight_decay = %s); }", "--weight-decay", { "-1", "0", "0.01", NULL } },
	{ "train { lr_schedule = step(every = %s); }", "--lr-step", { "-1", "0", "3", "1000000000", "1000000001", "2.5", NULL } },
	{ "train { lr_schedule = step(every = 2, factor = %s); }", "--lr-gamma", { "-1", "0", "0.5", "3", NULL } },
	{ "train { epochs = %s; }", "--epochs", { "-2", "0", "1", "1e3", "1000000000", "2000000000", "1.5", NULL } },
	{ "train { batch = %s; }", "--batch", { "0", "1", "64", "6.5", "1000000001", NULL } },
	{ "train { valid = %s; }", "--valid", { "-1", "0", "10", "2147483647", "2147483648", NULL } },
	{ "objective { regularizer = roll(lambda = %s, C = 1); }", "--lambda", { "-1", "0", "2", NULL } },
	{ "objective { regularizer = roll(lambda = 1, C = %s); }", "--C", { "-0.5", "0", "0.25", NULL } },
	{ "objective { regularizer = roll(lambda = 1, C = 1, gamma = %s); }", "--gamma", { "0", "1", "100", "150", NULL } },
};

static void test_file_and_flag_agree(void **state)
{
	(void)state;
	/* the flags as a standalone trainer of a file that sets nothing reads
	 * them (the code of llnc train, without compiling per probe) */
	const char *plain = puts_("plain.lln", small_model), *trainer = P_("trainer");
	assert_int_equal(run_sh("%s build %s --trainer -o %s", LLNC, plain, trainer), 0);
	for (size_t i = 0; i < sizeof probes / sizeof *probes; i++) {
		for (const char *const *v = probes[i].values; *v; v++) {
			char text[512], block[256];
			snprintf(block, sizeof block, probes[i].file, *v);
			snprintf(text, sizeof text, "%s%s\n", small_model, block);
			const char *path = puts_("probe.lln", text);
			int in_file = run_sh("%s check %s", LLNC, path);
			int as_flag = run_sh("%s %s %s --help", trainer, probes[i].flag, *v);
			if ((in_file == 0) != (as_flag == 0))
				fail_msg("'%s' in a file gives %d, '%s %s' gives %d: %s", block, in_file, probes[i].flag, *v,
				         as_flag, out);
			assert_true(in_file == 0 || in_file == 1);
			assert_true(as_flag == 0 || as_flag == 2);
		}
	}
}

/* distance(p = 1), nesterov without momentum: check refuses them where they
 * are written, and train refuses the same as flags. */
static void test_unsupported_combinations(void **state)
{
	(void)state;
	char text[512];
	snprintf(text, sizeof text, "%sobjective {\n  regularizer = distance(lambda = 1, p = 1);\n}\n", small_model);
	const char *f = puts_("p1.lln", text);
	assert_int_equal(run_sh("%s check %s", LLNC, f), 1);
	expect_out(msg("%s:3:42: error: the distance regularizer trains only with p = 2", f));
	const char *plain = puts_("plain.lln", small_model);
	assert_int_equal(run_sh("%s train %s --objective distance --p inf --data toy2d: -o %s", LLNC, plain,
	                    P_("w.safetensors")), 2);
	expect_out("the distance regularizer trains only with p = 2");
	snprintf(text, sizeof text, "%strain { optimizer = sgd(nesterov = on); }\n", small_model);
	assert_int_equal(run_sh("%s check %s", LLNC, puts_("n.lln", text)), 1);
	expect_out("nesterov needs momentum > 0");
}

/* ---- flags ---- */
static void test_flag_forms(void **state)
{
	(void)state;
	const char *m = puts_("plain.lln", small_model);
	/* --flag=value and --flag value, in force as --help shows */
	assert_int_equal(run_sh("%s train %s --lr=0.25 --epochs 7 --optimizer=adam --help", LLNC, m), 0);
	expect_out("--lr X                learning rate [0.25]");
	expect_out("[7]");
	expect_out("sgd, adam or amsgrad [adam]");
	/* a typo, on each kind of command */
	assert_int_equal(run_sh("%s train %s --epoch 3 -o %s", LLNC, m, P_("w.safetensors")), 2);
	expect_out("llnc train: unknown option '--epoch'; did you mean '--epochs'?");
	assert_int_equal(run_sh("%s eval %s --weight w.safetensors", LLNC, m), 2);
	expect_out("did you mean '--weights'?");
	assert_int_equal(run_sh("%s check %s --dupm=ir", LLNC, m), 2);
	expect_out("did you mean '--dump'?");
	assert_int_equal(run_sh("%s data toy2d --nosie 0.1 -o %s", LLNC, P_("t.csv")), 2);
	expect_out("did you mean '--noise'?");
	/* no prefix matching: --epo is not --epochs */
	assert_int_equal(run_sh("%s train %s --epo 3 --help", LLNC, m), 2);
	/* a value where none is taken, a missing value */
	assert_int_equal(run_sh("%s eval %s --json=yes", LLNC, m), 2);
	expect_out("--json takes no value");
	assert_int_equal(run_sh("%s train %s --data", LLNC, m), 2);
	expect_out("--data needs a value");
	/* --dump both ways */
	assert_int_equal(run_sh("%s check %s --dump ir", LLNC, m), 0);
	expect_out("strategy");
	assert_int_equal(run_sh("%s check %s --dump=ir", LLNC, m), 0);
	/* --threads 0: all cores, in train and eval alike; 1025 refused by both */
	assert_int_equal(run_sh("%s train %s --threads 0 --help", LLNC, m), 0);
	assert_int_equal(run_sh("%s eval %s --threads=0 --help", LLNC, m), 0);
	assert_int_equal(run_sh("%s eval %s --threads 1025 --help", LLNC, m), 2);
	expect_out("--threads must be from 0 to 1024, got 1025");
	/* without a FILE, --help lists the table's flags and defaults */
	assert_int_equal(run_sh("%s train --help", LLNC), 0);
	expect_out("--momentum X          sgd momentum [0]");
	expect_out("--batch N             examples per step [64]");
	/* eval's --data defaults to the train block's test set, and --help says so */
	char text[512];
	snprintf(text, sizeof text, "%strain { data = csv(\"a.csv\"); test = csv(\"b.csv\"); }\n", small_model);
	assert_int_equal(run_sh("%s eval %s --help", LLNC, puts_("ab.lln", text)), 0);
	expect_out("[b.csv]");
	assert_null(strstr(out, "[a.csv]"));
}

/* train, eval, plot and certify check their flags, and answer --help,
 * before the kernels are compiled (seconds for a large model): the kernel
 * cache, which reports each lookup under LLN_CACHE_VERBOSE=1, is not
 * consulted; with work to do it is. */
static void test_flags_before_kernels(void **state)
{
	(void)state;
	const char *m = puts_("plain.lln", small_model);
	static const struct {
		const char *args, *says;
		int status;
	} cases[] = {
		{ "train %s --epoch 3", "did you mean '--epochs'?", 2 },
		{ "train %s --data a.csv", "-o OUT.safetensors is required", 2 },
		{ "train %s --data a.csv -o w.safetensors --init w0.safetensors --resume c.ckpt", "exclude each other", 2 },
		{ "train %s --help", "Trains the model 'small' (2 inputs, 2 outputs, 16 hidden neurons, 82 parameters)", 0 },
		{ "eval %s --data a.csv", "--weights W.safetensors is required", 2 },
		{ "eval %s --help", "Evaluates the model 'small' with weights W", 0 },
		{ "plot %s --weights w.safetensors", "-o OUT.svg or -o OUT.png is required", 2 },
		{ "plot %s --help", "Draws the activation regions of the model 'small' (2 inputs, 2 outputs)", 0 },
		{ "certify %s a.csv", "certify needs --weights", 2 },
		{ "certify %s --weights w.safetensors --norms 3 a.csv", "--norms takes a comma-separated list", 2 },
		{ "certify %s --help", "Certifies each input of INPUT for the model 'small' (2 inputs, 2 outputs,", 0 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		char fmt[256];
		snprintf(fmt, sizeof fmt, "cd %%s && LLN_CACHE_VERBOSE=1 %%s %s", cases[i].args);
		int st = run_sh(fmt, tmpdir, LLNC, m);
		if (st != cases[i].status || !strstr(out, cases[i].says) || strstr(out, "lln kernel cache"))
			fail_msg("llnc %s: status %d, expected %d with '%s' and no kernel cache lookup; got:\n%s",
			         cases[i].args, st, cases[i].status, cases[i].says, out);
	}
	/* the flags fine, the weights missing: the kernels are looked up first */
	assert_int_equal(run_sh("cd %s && LLN_CACHE_VERBOSE=1 %s eval %s --weights none.safetensors --data a.csv",
	                        tmpdir, LLNC, m), 1);
	expect_out("lln kernel cache");
	expect_out("none.safetensors");
}

static void test_version_and_summaries(void **state)
{
	(void)state;
	assert_int_equal(run_sh("%s --version", LLNC), 0);
	expect_out("llnc ");
	expect_out("(LLVM 19.");
	const char *m = puts_("plain.lln", small_model);
	/* 2*16+16 + 16*2+2 = 82 parameters, 16 hidden neurons */
	assert_int_equal(run_sh("%s check %s", LLNC, m), 0);
	expect_out(msg("%s: model small: 2 inputs, 2 outputs, 82 parameters, 16 hidden neurons; eps_2 alone by", m));
	assert_int_equal(run_sh("%s init %s -o %s", LLNC, m, P_("i.safetensors")), 0);
	expect_out(msg("82 parameters, 16 hidden neurons; eps_2 alone by "));
	expect_out(msg("; wrote %s", P_("i.safetensors")));
	/* a dump keeps stdout to itself */
	assert_int_equal(run_sh("%s check %s --dump=ast 2>/dev/null", LLNC, m), 0);
	assert_null(strstr(out, "parameters"));
}

/* ---- SIGINT ---- */
static pid_t spawn(const char *log, char *const argv[])
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = creat(log, 0644);
		dup2(fd, 2);
		dup2(fd, 1);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static void test_sigint_resume(void **state)
{
	(void)state;
	const char *m = puts_("sig.lln", small_model);
	const char *w = P_("sig.safetensors"), *ck = P_("sig.ckpt.safetensors"), *log = P_("sig.out");
	unlink(ck);
	char *argv[] = { LLNC, "train", (char *)m, "--data", "toy2d:n=2000,seed=3", "--batch", "4",
	                 "--epochs", "100000", "--optimizer=adam", "--threads", "1", "-o", (char *)w, NULL };
	pid_t pid = spawn(log, argv);
	struct stat st;
	for (int i = 0; i < 6000 && stat(ck, &st) != 0; i++)
		usleep(10000);
	assert_int_equal(stat(ck, &st), 0);
	usleep(50000);
	kill(pid, SIGINT);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 130);
	FILE *f = fopen(log, "r");
	assert_non_null(f);
	size_t n = fread(out, 1, sizeof out - 1, f);
	out[n] = 0;
	fclose(f);
	/* "... holds epoch N of 100000.  Continue with:\n  llnc train ... --resume CKPT" */
	const char *holds = strstr(out, "holds epoch ");
	assert_non_null(holds);
	int saved = atoi(holds + 12);
	assert_true(saved >= 1);
	const char *cmd = strstr(out, "Continue with:\n  ");
	assert_non_null(cmd);
	cmd += strlen("Continue with:\n  ");
	char line[2048];
	snprintf(line, sizeof line, "%.*s", (int)strcspn(cmd, "\n"), cmd);
	assert_non_null(strstr(line, "--resume"));
	assert_non_null(strstr(line, ck));
	/* the checkpoint is whole (it loads), and the printed command, as it is,
	 * resumes the run: here for one more epoch */
	assert_int_equal(run_sh("%s --epochs %d", line, saved + 1), 0);
	expect_out(msg("trained %d epochs", saved + 1));
}

/* ---- install ---- */
static void test_install(void **state)
{
	(void)state;
	const char *pre = P_("prefix");
	assert_int_equal(run_sh("cmake --install %s --prefix %s", LLN_BINARY_DIR, pre), 0);
	struct stat st;
	const char *files[] = { "bin/llnc", "lib/lln/libllnrt.a", "lib/lln/libllnrt_certifier.a",
	                        "lib/lln/libllnrt_trainer.a", "include/lln/rt.h", "include/lln/settings.def",
	                        "share/man/man1/llnc.1", "share/man/man1/llnc-train.1" };
	for (size_t i = 0; i < sizeof files / sizeof *files; i++)
		if (stat(msg("%s/%s", pre, files[i]), &st) != 0)
			fail_msg("cmake --install wrote no %s", files[i]);
	assert_int_equal(run_sh("grep -c 'TH LLNC-TRAIN\\|--epochs N' %s/share/man/man1/llnc-train.1", pre), 0);
	assert_int_equal(atoi(out), 2);
	/* the installed llnc builds a certifier from the installed runtime */
	const char *m = puts_("plain.lln", small_model);
	assert_int_equal(run_sh("env -u LLN_RUNTIME_DIR %s/bin/llnc init %s -o %s && env -u LLN_RUNTIME_DIR "
	                    "%s/bin/llnc build %s --certifier --weights %s -o %s && echo 0.5,0.25 | %s -",
	                    pre, m, P_("iw.safetensors"), pre, m, P_("iw.safetensors"), P_("icert"), P_("icert")), 0);
	assert_true(strlen(out) > 0);
	/* a certifier reads its flags the same way */
	assert_int_equal(run_sh("echo 0.5,0.25 | %s --threads=0 --format=csv --norms 2 -", P_("icert")), 0);
	assert_int_equal(run_sh("echo 0.5,0.25 | %s --thread 2 -", P_("icert")), 2);
	expect_out("unknown option '--thread'; did you mean '--threads'?");
}

/* ---- the documentation's examples ---- */
static void test_doc_examples(void **state)
{
	(void)state;
#ifdef LLN_SANITIZE
	skip();   /* minutes of instrumented compiling; the plain build runs them */
#endif
	/* the runner itself: a failing example fails, a skipped one needs a reason */
	puts_("bad.md", "text\n```sh\ntrue\nfalse\n```\n");
	assert_int_equal(run_sh("python3 %s/tests/doc_examples.py %s %s %s", LLN_SOURCE_DIR, LLN_SOURCE_DIR,
	                    LLN_BINARY_DIR, P_("bad.md")), 1);
	expect_out("bad.md:2: the example exits 1");
	puts_("skip.md", "<!-- not run: a reason -->\n```sh\nfalse\n```\n```text\nfalse\n```\n");
	assert_int_equal(run_sh("python3 %s/tests/doc_examples.py %s %s %s", LLN_SOURCE_DIR, LLN_SOURCE_DIR,
	                    LLN_BINARY_DIR, P_("skip.md")), 0);
	puts_("noreason.md", "<!-- not run -->\n```sh\nfalse\n```\n");
	assert_int_not_equal(run_sh("python3 %s/tests/doc_examples.py %s %s %s", LLN_SOURCE_DIR, LLN_SOURCE_DIR,
	                        LLN_BINARY_DIR, P_("noreason.md")), 0);
	/* README.md and the docs */
	int rc = run_sh("cd %s && python3 tests/doc_examples.py %s %s README.md docs/*.md", LLN_SOURCE_DIR,
	            LLN_SOURCE_DIR, LLN_BINARY_DIR);
	if (rc)
		fail_msg("%s", out);
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/lln-cli-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_file_and_flag_agree),
		cmocka_unit_test(test_unsupported_combinations),
		cmocka_unit_test(test_flag_forms),
		cmocka_unit_test(test_flags_before_kernels),
		cmocka_unit_test(test_version_and_summaries),
		cmocka_unit_test(test_sigint_resume),
		cmocka_unit_test(test_install),
		cmocka_unit_test(test_doc_examples),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
