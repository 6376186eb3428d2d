/* jit.h: the compiler's pipeline in process, for the tests.
 *
 * Several tests need a model compiled from .lln text or a file into running
 * kernels; this is that path once (parse, check, lower, generate, JIT), with
 * a failed cmocka assertion, not a crash, when a stage refuses.  Include it
 * after <cmocka.h> and "llnc.h".  The model lives until cg_unit_free(*u),
 * and the arena holds the compile-time data.
 */
#ifndef LLN_TEST_JIT_H
#define LLN_TEST_JIT_H

/* The -O level of the kernels a numeric test compiles in process: `level`
 * in the plain build, 0 in the sanitized one (LLN_SANITIZE).  The kernels
 * are LLVM's output, not instrumented either way; what a level above 0
 * adds is LLVM's own passes and instruction selection, every allocation of
 * which goes through the sanitizer's allocator there: that was most of the
 * sanitized suite's time (test_conv's approx part 40 s at -O1, 2.5 s at
 * -O0).  Every line of lln that builds, emits and JIT-links the kernels
 * still runs; the one that runs only above -O0, cg_optimize, runs under
 * the sanitizers in every llnc a test starts (-O1 there, CG_DEFAULT_OPT).
 * The plain build checks the kernels at the level the test names, the
 * sanitized one the -O0 kernels against the same references. */
static inline int test_opt(int level)
{
#ifdef LLN_SANITIZE
	(void)level;
	return 0;
#else
	return level;
#endif
}

/* How many random inputs a numeric test draws where it names n: n in the
 * plain build, a quarter (at least 8) in the sanitized one.  There the
 * double-precision reference the kernels are checked against is this
 * file's own code, instrumented, and most of the time; every kernel and
 * every line of lln still runs on each input, and the plain build checks
 * all n against the same reference. */
static inline int test_inputs(int n)
{
#ifdef LLN_SANITIZE
	return n / 4 > 8 ? n / 4 : n < 8 ? n : 8;
#else
	return n;
#endif
}

/* The IR alone, for tests that look at the model's structure. */
static inline ir_module *jit_ir(arena *a, source *src)
{
	assert_non_null(src);
	ast_program *ast = ast_parse(a, src);
	sema_program *p = ast ? sema_check(a, ast) : NULL;
	assert_non_null(p);
	ir_module *ir = ir_lower(a, p);
	assert_non_null(ir);
	return ir;
}

/* With code generation options (jit_source: just the optimisation level). */
static inline const rt_model *jit_source_opts(arena *a, source *src, const cg_options *co, cg_unit **u)
{
	ir_module *ir = jit_ir(a, src);
	char err[RT_ERRLEN];
	*u = cg_generate(ir, co, err);
	if (!*u)
		fail_msg("cg_generate: %s", err);
	const rt_model *m = cg_jit(*u, err);
	if (!m)
		fail_msg("cg_jit: %s", err);
	return m;
}

static inline const rt_model *jit_source(arena *a, source *src, int opt_level, cg_unit **u)
{
	return jit_source_opts(a, src, &(cg_options){ .opt_level = opt_level }, u);
}

static inline const rt_model *jit_text(arena *a, const char *text, int opt_level, cg_unit **u)
{
	return jit_source(a, source_from_string(a, "test.lln", text), opt_level, u);
}

#endif
