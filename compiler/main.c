/* main.c: the llnc command line, which reads as the compiler's pipeline.
 *
 *   source_load -> ast_parse -> sema_check -> ir_lower -> cg_generate
 *     (or the kernel cache: cg_cache_kernels)
 *     -> cg_build_exe                     (build)
 *     -> cg_jit_object -> rt_train_main / rt_eval_main / rt_plot_main / rt_certify_main
 *
 * Each command runs the pipeline as far as it needs: `check` stops after
 * the checks, `init` and `export` after the IR (which fixes the parameter
 * layout), `build` goes all the way to an executable; `train`, `eval`,
 * `plot` and `certify` compile in process and hand the model to the
 * runtime, which parses their flags (`certify` after taking the weights).
 * `data` compiles nothing: it writes a built-in data set; nor does
 * `merge`, which joins the shard files of a certifier run.
 * --dump=ast|ir|llvm prints a stage's output on the way.  User errors exit
 * 1, usage errors 2, internal errors 70.
 */
#include <stdlib.h>
#include <string.h>
#include <getopt.h>
#include <unistd.h>

#include <llvm-c/Core.h>

#include "llnc.h"
#include "onnx/onnx_export.h"
#include "onnx/onnx_import.h"

typedef struct options {
	const char *command, *file, *out, *weights, *cpu, *dump;
	uint64_t seed;
	rt_init_scheme init;
	bool seed_set, init_set, certifier, trainer;
	const char *command_name;  /* "llnc train": how the runtime names itself */
	int rest_argc;        /* train, eval: the flags after FILE, for the runtime */
	char **rest_argv;
	int opt_level;
	int max_len;          /* --max-len: the frames of input x[*, F] */
	rt_names names;       /* build: --rename, --strip-prefix for --weights */
} options;

static const char usage_text[] =
	"usage: llnc COMMAND FILE.lln [options]\n"
	      "\n"
	      "commands:\n"
	      "  check   parse and check FILE, report every error\n"
	      "  init    write initial weights for FILE's model\n"
	      "  build   compile FILE to a standalone certifier or trainer\n"
	      "  train   compile FILE in process and train its model\n"
	      "  certify certify inputs in process, as a built certifier would\n"
	      "  eval    evaluate weights on a data set: accuracy, radii, regions\n"
	      "  plot    draw a model's linear regions, margins and gradients\n"
	      "  data    generate a data set: 'llnc data toy2d --help'\n"
	      "  merge   join a sharded certifier run's shard files: records, exact summary\n"
	      "  weights list the tensors of a safetensors file\n"
	      "  import  convert an ONNX network: 'llnc import NET.onnx -o OUT'\n"
	      "  export  write FILE's model and weights as an ONNX network\n"
	      "\n"
	      "Run 'llnc COMMAND --help' for a command's options.\n"
	      "Common options: --dump=ast|ir|llvm prints a stage's output to stdout;\n"
	      "--max-len N builds a model over sequences of free length (input x[*, F])\n"
	      "for 1 to N frames (default 32).\n"
	      "--no-cache (before or after FILE) compiles the kernels anew: build, train,\n"
	      "eval, plot and certify otherwise keep them in the kernel cache,\n"
	      "$XDG_CACHE_HOME/lln (else ~/.cache/lln), keyed by the model, llnc, LLVM\n"
	      "and the CPU; LLN_NO_CACHE=1 does the same as --no-cache, and\n"
	      "LLN_CACHE_VERBOSE=1 reports hits and misses on stderr.\n"
	      "Flags take '--flag value' or '--flag=value'.  'llnc --version' prints the\n"
	      "version; 'cmake --install' puts man pages llnc-COMMAND(1) beside llnc.\n";

static const struct command_help {
	const char *name, *text;
} command_help[] = {
	{ "check", "usage: llnc check FILE.lln [--dump=ast|ir|llvm]\n"
	           "\n"
	           "Parses and checks FILE; prints every error as file:line:col and exits 1\n"
	           "if there were any.\n" },
	{ "init", "usage: llnc init FILE.lln [--seed N] [--init pytorch|he] -o WEIGHTS.safetensors\n"
	          "\n"
	          "Writes deterministic initial weights for FILE's model under PyTorch's\n"
	          "state_dict names.  --init pytorch: weights and biases U(+-1/sqrt(fan_in)),\n"
	          "PyTorch's default; he: weights N(0, 2/fan_in), biases as pytorch.\n"
	          "--seed and --init default to the train block's seed (else 0) and init\n"
	          "(else pytorch).\n" },
	{ "build", "usage: llnc build FILE.lln --certifier --weights WEIGHTS.safetensors -o BIN\n"
	           "       llnc build FILE.lln --trainer -o BIN\n"
	           "                  [--cpu NAME] [-O0|-O1|-O2|-O3] [--no-cache] [--dump=ast|ir|llvm]\n"
	           "\n"
	           "Compiles FILE into a standalone executable: a certifier with the weights\n"
	           "embedded, or a trainer that takes the same flags as 'llnc train' with\n"
	           "FILE's train and objective blocks as defaults.  Run 'BIN --help' for its\n"
	           "use.  Code is tuned for this machine's CPU; --cpu x86-64 (or x86-64-v2,\n"
	           "-v3, -v4) targets a generic level for binaries that ship elsewhere.\n"
	           "-O3 is the default.  --rename OLD=NEW (repeatable) and --strip-prefix P\n"
	           "map the names of a state_dict saved under other module names\n"
	           "(docs/formats.md).  The kernels come from the kernel cache when it has\n"
	           "them (see 'llnc --help'); --no-cache compiles them anew.\n" },
	{ "train", "usage: llnc train FILE.lln [flags] -o WEIGHTS.safetensors\n"
	           "\n"
	           "Compiles FILE in process and trains its model; FILE's objective and\n"
	           "train blocks give the defaults, which flags override.  'llnc train\n"
	           "FILE --help' lists every flag with its value for FILE (docs/training.md).\n" },
	{ "plot", "usage: llnc plot FILE.lln --weights W[,W2,...] [flags] -o OUT.svg|png\n"
	          "\n"
	          "Draws, for a model with 2 inputs, its exact linear regions over a window,\n"
	          "the prediction, the data with a circle of radius eps_2 and the gradient at\n"
	          "each point; for any model, with --segment A,B, the region boundaries along\n"
	          "a segment.  'llnc plot FILE --help' lists every flag (docs/plots.md).\n"
	          "\n"
	          "       llnc plot --log RUN.jsonl[,...] | --margins EVAL.json[,...] -o OUT.svg|png\n"
	          "\n"
	          "Charts, without a model: validation curves from 'llnc train --log' files,\n"
	          "or the distribution of eps_2 from 'llnc eval --json --per-example'.\n"
	          "'llnc plot --log x --help' lists their flags.\n" },
	{ "export", "usage: llnc export FILE.lln --weights WEIGHTS.safetensors -o NET.onnx\n"
	            "\n"
	            "Writes FILE's model with the weights as an ONNX graph (opset 13) that\n"
	            "takes the raw input: normalize is part of it, so radii and VNN-LIB\n"
	            "properties of FILE's certifier apply to it as they are.  --rename and\n"
	            "--strip-prefix as for build (docs/formats.md).\n" },
	{ "certify", "usage: llnc certify FILE.lln --weights W.safetensors [certifier flags] INPUT\n"
	             "\n"
	             "Compiles FILE in process and certifies INPUT with the weights W: the same\n"
	             "code, flags and output, byte for byte, as the certifier 'llnc build\n"
	             "--certifier' would write; for exploring, where a built certifier is the\n"
	             "way to ship.  --rename and --strip-prefix map the weights' names as for\n"
	             "build.  'llnc certify FILE --help' lists the certifier's flags\n"
	             "(docs/certifier.md).\n" },
	{ "eval", "usage: llnc eval FILE.lln --weights W.safetensors --data FILE[,LABELS] [--json]\n"
	          "\n"
	          "Evaluates weights on a labelled data set: accuracy, loss, P25/P50/P75/P100\n"
	          "of eps_1, eps_2, eps_inf, distinct activation patterns and logit\n"
	          "Jacobians.  'llnc eval FILE --help' lists every flag.\n" },
};

static int usage_error(const char *fmt, const char *arg)
{
	fputs("llnc: ", stderr);
	fprintf(stderr, fmt, arg);
	fputs(" (see 'llnc --help')\n", stderr);
	return 2;
}

static int print_help(const char *command)
{
	for (size_t i = 0; i < sizeof command_help / sizeof *command_help; i++)
		if (command && strcmp(command, command_help[i].name) == 0)
			return fputs(command_help[i].text, stdout), 0;
	fputs(usage_text, stdout);
	return 0;
}

static bool runtime_command(const char *c)
{
	return c && (!strcmp(c, "train") || !strcmp(c, "eval") || !strcmp(c, "plot") || !strcmp(c, "certify"));
}

enum { F_HELP, F_VERSION, F_DUMP, F_CERTIFIER, F_TRAINER, F_OPT, F_OUT, F_WEIGHTS, F_SEED, F_CPU,
       F_INIT, F_RENAME, F_STRIP, F_MAXLEN, F_NO_CACHE };

static const rt_flag flags[] = {
	{ "help", false, F_HELP }, { "-h", false, F_HELP }, { "version", false, F_VERSION },
	{ "dump", true, F_DUMP }, { "certifier", false, F_CERTIFIER }, { "trainer", false, F_TRAINER },
	{ "-O", true, F_OPT }, { "-o", true, F_OUT }, { "weights", true, F_WEIGHTS }, { "seed", true, F_SEED },
	{ "cpu", true, F_CPU }, { "init", true, F_INIT }, { "rename", true, F_RENAME },
	{ "strip-prefix", true, F_STRIP }, { "max-len", true, F_MAXLEN }, { "no-cache", false, F_NO_CACHE },
};

/* train, eval and plot take their flags from the runtime's table: without
 * a FILE, --help lists them with their defaults. */
static void help_exit(const options *o)
{
	if (o->command && (!strcmp(o->command, "train") || !strcmp(o->command, "eval"))) {
		char prog[64];
		snprintf(prog, sizeof prog, "llnc %s FILE.lln", o->command);
		rt_settings_help(stdout, !strcmp(o->command, "train") ? RT_MODE_TRAIN : RT_MODE_EVAL, prog);
	} else {
		print_help(o->command);
	}
	exit(0);
}

static int set_flag(options *o, int id, const char *val)
{
	char err[RT_ERRLEN], *end;
	switch (id) {
	case F_HELP: help_exit(o); break;
	case F_VERSION:
		printf("llnc %s (LLVM %s)\n", LLN_VERSION, LLN_LLVM_VERSION);
		exit(0);
	case F_DUMP:
		o->dump = val;
		if (strcmp(val, "ast") && strcmp(val, "ir") && strcmp(val, "llvm"))
			return usage_error("--dump takes ast, ir or llvm, not '%s'", val);
		break;
	case F_CERTIFIER: o->certifier = true; break;
	case F_NO_CACHE: setenv("LLN_NO_CACHE", "1", 1); break;   /* what cache.c reads */
	case F_TRAINER: o->trainer = true; break;
	case F_OPT:
		if (val[0] < '0' || val[0] > '3' || val[1])
			return usage_error("-O takes 0, 1, 2 or 3, not '%s'", val);
		o->opt_level = val[0] - '0';
		break;
	case F_OUT: o->out = val; break;
	case F_WEIGHTS: o->weights = val; break;
	case F_CPU: o->cpu = val; break;
	case F_INIT:
		if (rt_init_parse(val, &o->init) != 0)
			return usage_error("--init takes pytorch or he, not '%s'", val);
		o->init_set = true;
		break;
	case F_SEED:
		o->seed = strtoull(val, &end, 10);
		o->seed_set = true;
		if (*end || *val == '-' || !*val)
			return usage_error("--seed takes a non-negative integer, not '%s'", val);
		break;
	case F_MAXLEN: {
		long n = strtol(val, &end, 10);
		if (*end || end == val || n < 1 || n > SEMA_MAX_STEPS)
			return usage_error("--max-len takes a number of frames from 1 to 1024, not '%s'", val);
		_Static_assert(SEMA_MAX_STEPS == 1024, "the message above");
		o->max_len = (int)n;
		break;
	}
	case F_RENAME:
	case F_STRIP:
		if (rt_names_flag(&o->names, id == F_RENAME ? "--rename" : "--strip-prefix", val, err))
			return usage_error("%s", err);
		break;
	}
	return 0;
}

static int parse_args(int argc, char **argv, options *o)
{
	o->opt_level = CG_DEFAULT_OPT;
	rt_flags f;
	rt_flags_init(&f, flags, (int)(sizeof flags / sizeof *flags), argc, argv);
	f.prog = "llnc";
	int rc = 0;
	for (int id; !rc && (id = rt_flags_next(&f)) != RT_FLAG_END;) {
		if (id == RT_FLAG_ERROR) {
			rc = 2;
		} else if (id != RT_FLAG_ARG) {
			rc = set_flag(o, id, f.value);
		} else if (!o->command) {
			o->command = f.value;
			o->command_name = !strcmp(f.value, "train") ? "llnc train" : !strcmp(f.value, "eval") ? "llnc eval"
			                : !strcmp(f.value, "plot") ? "llnc plot"
			                : !strcmp(f.value, "certify") ? "llnc certify" : "llnc";
		} else if (!o->file) {
			o->file = f.value;
			/* train, eval, plot: the flags after FILE belong to the runtime,
			 * which names itself by argv[0] in its messages */
			if (runtime_command(o->command)) {
				o->rest_argc = argc - optind + 1;
				o->rest_argv = argv + optind - 1;
				o->rest_argv[0] = (char *)o->command_name;
				break;
			}
		} else {
			rc = usage_error("unexpected argument '%s'", f.value);
		}
	}
	rt_flags_done(&f);
	if (rc)
		return rc;
	if (!o->command)
		return print_help(NULL), 2;
	if (strcmp(o->command, "check") && strcmp(o->command, "init") && strcmp(o->command, "build") &&
	    strcmp(o->command, "export") && !runtime_command(o->command))
		return usage_error("unknown command '%s'", o->command);
	if (!o->file)
		return usage_error("%s needs a .lln FILE", o->command);
	if (runtime_command(o->command) && !o->rest_argv) {
		o->rest_argc = 1;
		o->rest_argv = argv + argc - 1;
		o->rest_argv[0] = (char *)o->command_name;
	}
	/* --no-cache is llnc's after FILE too: the runtime never sees it */
	int kept = 0;
	for (int i = 0; i < o->rest_argc; i++)
		if (strcmp(o->rest_argv[i], "--no-cache"))
			o->rest_argv[kept++] = o->rest_argv[i];
		else
			set_flag(o, F_NO_CACHE, NULL);
	o->rest_argc = kept;
	return 0;
}

static int fail(const char *msg)
{
	fprintf(stderr, "%s\n", msg);
	return LLNC_EXIT_USER;
}

/* init: the IR's tensor table, filled by the runtime's initialiser. */
static int run_init(const options *o, const ir_module *ir, uint64_t seed, rt_init_scheme scheme)
{
	if (!o->out)
		return usage_error("init needs -o WEIGHTS.safetensors%s", "");
	float *P = rt_alloc_floats(ir->n_params);
	if (!P)
		return fail("llnc init: out of memory for the parameters");
	rt_init_params(ir->tensors, ir->n_tensors, seed, scheme, P);
	char seedstr[32], err[RT_ERRLEN];
	snprintf(seedstr, sizeof seedstr, "%llu", (unsigned long long)seed);
	const char *meta[] = { "model", ir->name, "init", rt_init_name(scheme), "seed", seedstr, NULL };
	int rc = rt_params_save(ir->tensors, ir->n_tensors, P, NULL, 0, NULL, meta, o->out, err);
	free(P);
	return rc ? fail(err) : 0;
}

/* build: the kernels' object (from the kernel cache, or generated for the
 * IR), linked with the runtime and a second object holding the weights,
 * for a certifier, or the training defaults, for a trainer. */
static int run_build(const options *o, arena *a, const sema_program *p, const ir_module *ir)
{
	if (o->certifier == o->trainer)
		return usage_error("build needs one of --certifier or --trainer%s", "");
	if (o->certifier && !o->weights)
		return usage_error("build --certifier needs --weights WEIGHTS.safetensors%s", "");
	if (!o->out)
		return usage_error("build needs -o BIN%s", "");
	char err[RT_ERRLEN];
	float *P = NULL;
	if (o->certifier) {
		P = rt_alloc_floats(ir->n_params);
		if (!P)
			return fail("llnc build: out of memory for the parameters");
		if (rt_params_load_named(ir->tensors, ir->n_tensors, &o->names, o->weights, P, err) != 0) {
			free(P);
			return fail(err);
		}
	}
	cg_options co = { .cpu = o->cpu, .opt_level = o->opt_level, .certifier = o->certifier };
	cg_exe e = { o->trainer ? CG_TRAINER : CG_CERTIFIER, o->cpu, P, ir->n_params,
	             o->trainer ? sema_defaults(a, p) : NULL };
	/* linked into the temporary of an atomic write, so that -o keeps a
	 * symbolic link and a failed link leaves the old BIN */
	rt_atomic out;
	LLVMMemoryBufferRef kernels = cg_cache_kernels(ir, &co, err);
	int rc = !kernels || rt_atomic_open(o->out, &out, err);
	if (!rc) {
		close(out.fd);
		out.fd = -1;
		if (cg_build_exe(kernels, &e, out.tmp, err))
			rc = 1, rt_atomic_abort(&out);
		else
			rc = rt_atomic_commit(&out, err) != 0;
	}
	if (kernels)
		LLVMDisposeMemoryBuffer(kernels);
	free(P);
	return rc ? fail(err) : 0;
}

/* export: the model and its weights as an ONNX graph (onnx_export.c). */
static int run_export(const options *o, const ir_module *ir)
{
	if (!o->weights || !o->out)
		return usage_error("export needs --weights WEIGHTS.safetensors and -o NET.onnx%s", "");
	char err[RT_ERRLEN];
	float *P = rt_alloc_floats(ir->n_params);
	if (!P)
		return fail("llnc export: out of memory for the parameters");
	int rc = rt_params_load_named(ir->tensors, ir->n_tensors, &o->names, o->weights, P, err) ||
	         onnx_export(ir, P, o->out, err);
	free(P);
	return rc ? fail(err) : 0;
}

/* init, build and export: the outputs checked against the inputs and for
 * being writable before anything is compiled (rt_files_check). */
static int check_files(const options *o)
{
	if (!o->out || (strcmp(o->command, "init") && strcmp(o->command, "build") && strcmp(o->command, "export")))
		return 0;
	const rt_file f[] = {
		{ "the model", o->file, RT_FILE_IN, 0 },
		{ "--weights", o->weights, RT_FILE_IN, 0 },
		{ "-o", o->out, RT_FILE_OUT, 0 },
	};
	char err[RT_ERRLEN];
	int rc = rt_files_check(f, 3, err);
	if (rc)
		fprintf(stderr, "llnc %s: %s\n", o->command, err);
	return rc;
}

/* The value of flag `name` at argv[*i], as "--name VALUE" (stepping *i
 * past it) or "--name=VALUE"; NULL if argv[*i] is another flag, or with
 * *missing when the value is. */
static const char *flag_value(int argc, char **argv, int *i, const char *name, bool *missing)
{
	size_t n = strlen(name);
	const char *a = argv[*i];
	if (strncmp(a, name, n) != 0)
		return NULL;
	if (a[n] == '=')
		return a + n + 1;
	if (a[n])
		return NULL;
	if (*i + 1 >= argc) {
		*missing = true;
		return NULL;
	}
	return argv[++*i];
}

/* train, eval, plot, certify: --max-len among the runtime's flags after
 * FILE is llnc's (the model is built before the runtime starts). */
static int take_max_len(options *o)
{
	int kept = 1;
	for (int i = 1; i < o->rest_argc; i++) {
		bool missing = false;
		const char *val = flag_value(o->rest_argc, o->rest_argv, &i, "--max-len", &missing);
		if (missing)
			return usage_error("%s needs a value", "--max-len");
		if (!val)
			o->rest_argv[kept++] = o->rest_argv[i];
		else if (set_flag(o, F_MAXLEN, val))
			return 2;
	}
	o->rest_argc = kept;
	return 0;
}

/* certify: the weights (--weights, --rename, --strip-prefix, before or
 * after FILE) taken out of the flags, the rest handed to the certifier's
 * command line with the model compiled in process. */
static int run_certify(const options *o, const ir_module *ir, const rt_model *m)
{
	char err[RT_ERRLEN];
	const char *weights = o->weights;
	rt_names names = o->names;
	char **argv = malloc(sizeof *argv * (size_t)(o->rest_argc + 3));
	if (!argv)
		return fail("llnc certify: out of memory");
	int argc = 0;
	argv[argc++] = o->rest_argv[0];
	if (o->out) {   /* -o given before FILE */
		argv[argc++] = "-o";
		argv[argc++] = (char *)o->out;
	}
	for (int i = 1; i < o->rest_argc; i++) {
		static const char *const taken[] = { "--weights", "--rename", "--strip-prefix" };
		const char *val = NULL;
		int k = 0;
		bool missing = false;
		while (k < 3 && !(val = flag_value(o->rest_argc, o->rest_argv, &i, taken[k], &missing)) && !missing)
			k++;
		if (missing) {
			free(argv);
			return usage_error("%s needs a value", taken[k]);
		}
		if (k == 3) {
			argv[argc++] = o->rest_argv[i];
		} else if (k == 0) {
			weights = val;
		} else if (rt_names_flag(&names, taken[k], val, err)) {
			free(argv);
			return usage_error("%s", err);
		}
	}
	argv[argc] = NULL;
	int rc;
	float *P = NULL;
	bool help = false;
	for (int i = 1; i < argc; i++)
		help |= !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
	char synopsis[512];
	snprintf(synopsis, sizeof synopsis, "llnc certify %.200s --weights W [options] INPUT", o->file);
	if (!weights && !help) {
		rc = usage_error("certify needs --weights WEIGHTS.safetensors%s", "");
	} else if (rt_is_shape(m)) {   /* a shape: the flags alone (rt.h) */
		rc = rt_certify_job(m, NULL, synopsis, argc, argv, NULL);
	} else if (!(P = rt_alloc_floats(ir->n_params))) {
		rc = fail("llnc certify: out of memory for the parameters");
	} else if (weights && rt_params_load_named(ir->tensors, ir->n_tensors, &names, weights, P, err)) {
		rc = fail(err);
	} else {
		/* under mpirun each rank certifies its shard (docs/scale.md) */
		if ((rc = rt_dist_start("llnc certify")) == 0) {
			rt_cert_job job = { rt_dist_rank(), rt_dist_size(), rt_dist_gather };
			rc = rt_certify_job(m, P, synopsis, argc, argv, job.parts > 1 ? &job : NULL);
			if (rc && rt_dist_size() > 1)   /* the other ranks would wait for it */
				rt_dist_abort(rc);
			rt_dist_stop();
		}
	}
	free(P);
	free(argv);
	return rc;
}

/* train, eval, plot, certify: the kernels for this CPU (from the kernel
 * cache, or generated), JIT-linked, handed over to the runtime. */
static int run_runtime(const options *o, arena *a, const sema_program *p, const ir_module *ir)
{
	char err[RT_ERRLEN];
	/* the source goes along so that no output can overwrite it */
	char *defaults = arena_printf(a, "%s--source\n%s\n", sema_defaults(a, p), o->file);
	/* the flags first, against the model's shape: --help and a usage error
	 * need no kernels (rt.h; docs/design.md, "The kernel cache") */
	rt_model shape = { .abi = RT_ABI_VERSION, .name = ir->name, .n_in = ir->n_in, .n_out = ir->n_out,
	                   .n_hidden = ir->n_hidden, .samples = ir->samples, .max_len = ir->max_len,
	                   .n_params = ir->n_params };
	int rc = !strcmp(o->command, "train") ? rt_train_main(&shape, defaults, o->rest_argc, o->rest_argv)
	       : !strcmp(o->command, "eval")  ? rt_eval_main(&shape, defaults, o->rest_argc, o->rest_argv)
	       : !strcmp(o->command, "plot")  ? rt_plot_main(&shape, defaults, o->rest_argc, o->rest_argv)
	                                      : run_certify(o, ir, &shape);
	if (rc >= 0)
		return rc;
	/* certify runs a certifier's kernels: those of `build --certifier`,
	 * which share its cache entry */
	cg_options co = { .cpu = o->cpu, .opt_level = o->opt_level, .certifier = !strcmp(o->command, "certify") };
	cg_unit *u = NULL;
	LLVMMemoryBufferRef kernels = cg_cache_kernels(ir, &co, err);
	const rt_model *m = kernels ? cg_jit_object(kernels, &u, err) : NULL;
	if (!m)
		rc = fail(err);
	else if (!strcmp(o->command, "train"))
		rc = rt_train_main(m, defaults, o->rest_argc, o->rest_argv);
	else if (!strcmp(o->command, "certify"))
		rc = run_certify(o, ir, m);
	else if (!strcmp(o->command, "eval"))
		rc = rt_eval_main(m, defaults, o->rest_argc, o->rest_argv);
	else
		rc = rt_plot_main(m, defaults, o->rest_argc, o->rest_argv);
	cg_unit_free(u);
	return rc;
}

/* weights: what a safetensors file holds, under the names a --rename and
 * --strip-prefix would give, so the mapping can be tried before a build. */
static int run_weights(int argc, char **argv)
{
	enum { W_HELP, W_RENAME, W_STRIP };
	static const rt_flag wflags[] = {
		{ "help", false, W_HELP }, { "-h", false, W_HELP }, { "rename", true, W_RENAME },
		{ "strip-prefix", true, W_STRIP },
	};
	const char *path = NULL;
	rt_names names = { 0 };
	char err[RT_ERRLEN];
	rt_flags f;
	rt_flags_init(&f, wflags, 4, argc - 1, argv + 1);
	f.prog = "llnc weights";
	int rc = 0;
	for (int id; !rc && (id = rt_flags_next(&f)) != RT_FLAG_END;) {
		if (id == RT_FLAG_ERROR) {
			rc = 2;
		} else if (id == W_HELP) {
			fputs("usage: llnc weights W.safetensors [--strip-prefix P] [--rename OLD=NEW ...]\n"
			      "\n"
			      "Lists the tensors of W in file order: name, dtype and shape, then the\n"
			      "metadata.  With --strip-prefix and --rename, names are shown as a build,\n"
			      "eval, train --init or plot with the same flags would see them.\n", stdout);
			rt_flags_done(&f);
			return 0;
		} else if (id == W_RENAME || id == W_STRIP) {
			if (rt_names_flag(&names, id == W_RENAME ? "--rename" : "--strip-prefix", f.value, err))
				rc = usage_error("%s", err);
		} else if (!path) {
			path = f.value;
		} else {
			rc = usage_error("unexpected argument '%s'", f.value);
		}
	}
	rt_flags_done(&f);
	if (rc)
		return rc;
	if (!path)
		return usage_error("weights needs a W.safetensors FILE%s", "");
	return rt_st_list(path, &names, stdout, err) ? fail(err) : 0;
}

/* check, init, build: one line on success, on stdout (on stderr beside a
 * --dump, which owns stdout). */
static void summary(const options *o, const ir_module *ir)
{
	FILE *f = o->dump ? stderr : stdout;
	fprintf(f, "%s: model %s: %d inputs, %d outputs, %lld parameters, %d hidden neurons; "
	        "eps_2 alone by %s", o->file, ir->name, ir->n_in, ir->n_out, (long long)ir->n_params,
	        ir->n_hidden, ir->l2_by_gram ? "the Gram recurrence" : ir->rows_pruned ? "pruned explicit rows" : "explicit rows");
	if (ir->max_len)
		fprintf(f, "; sequences of 1 to %d frames of %d (--max-len)", ir->max_len, ir->n_in / ir->max_len);
	if (o->out)
		fprintf(f, "; wrote %s", o->out);
	fputc('\n', f);
}

int main(int argc, char **argv)
{
	/* data: no .lln file, nothing to compile */
	if (argc > 1 && !strcmp(argv[1], "data")) {
		argv[1] = "llnc data";
		return rt_data_main(argc - 1, argv + 1);
	}
	/* plot --log, --margins: charts of logs and evaluations, no model */
	if (argc > 1 && !strcmp(argv[1], "plot"))
		for (int i = 2; i < argc; i++)
			if (!strcmp(argv[i], "--log") || !strcmp(argv[i], "--margins") || !strncmp(argv[i], "--log=", 6) ||
			    !strncmp(argv[i], "--margins=", 10)) {
				argv[1] = "llnc plot";
				return rt_plot_main(NULL, NULL, argc - 1, argv + 1);
			}
	if (argc > 1 && !strcmp(argv[1], "weights"))
		return run_weights(argc, argv);
	/* merge: shard files of a certifier run, no model (docs/scale.md) */
	if (argc > 1 && !strcmp(argv[1], "merge")) {
		argv[1] = "llnc merge";
		return rt_merge_main(argc - 1, argv + 1);
	}
	if (argc > 1 && !strcmp(argv[1], "import")) {
		argv[1] = "llnc import";
		return onnx_import_main(argc - 1, argv + 1);
	}
	options o = { .max_len = SEMA_MAX_LEN };
	int rc = parse_args(argc, argv, &o);
	if (!rc && runtime_command(o.command))
		rc = take_max_len(&o);
	if (!rc)
		rc = check_files(&o);
	if (rc)
		return rc;

	arena *a = arena_new();
	source *src = source_load(a, o.file);
	ast_program *ast = src ? ast_parse(a, src) : NULL;
	if (ast && o.dump && !strcmp(o.dump, "ast"))
		ast_dump(stdout, ast);
	sema_program *prog = ast ? sema_check_len(a, ast, o.max_len) : NULL;
	ir_module *ir = prog ? ir_lower(a, prog) : NULL;
	diag_finish(src);
	if (!ir) {
		rc = LLNC_EXIT_USER;
	} else {
		if (o.dump && !strcmp(o.dump, "ir"))
			ir_dump(stdout, ir);
		if (o.dump && !strcmp(o.dump, "llvm")) {
			char err[RT_ERRLEN];
			cg_options co = { .cpu = o.cpu, .opt_level = o.opt_level };
			cg_unit *u = cg_generate(ir, &co, err);
			if (!u)
				rc = fail(err);
			else
				cg_dump(stdout, u);
			cg_unit_free(u);
		}
		if (!strcmp(o.command, "init"))
			rc = rc ? rc : run_init(&o, ir, o.seed_set ? o.seed : prog->train.seed,
			                        o.init_set ? o.init : prog->train.init);
		else if (!strcmp(o.command, "build"))
			rc = rc ? rc : run_build(&o, a, prog, ir);
		else if (!strcmp(o.command, "export"))
			rc = rc ? rc : run_export(&o, ir);
		else if (runtime_command(o.command))
			rc = rc ? rc : run_runtime(&o, a, prog, ir);
		if (!rc && (!strcmp(o.command, "check") || !strcmp(o.command, "init") || !strcmp(o.command, "build")))
			summary(&o, ir);
	}
	arena_free(a);
	return rc;
}
