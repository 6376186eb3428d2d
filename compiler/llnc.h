/* llnc.h: map of the compiler.
 *
 * llnc reads a .lln file and runs it through one stage per file:
 *   source text --parse.c--> ast --sema.c--> checked program --ir.c--> ir
 *   --cg.c--> LLVM module --emit.c--> object file / JIT / executable
 * Each section below is one stage's interface.  Compile-time data lives in
 * an arena freed in one place (main.c); LLVM objects live in one context
 * owned by a cg_unit and are disposed together.
 */
#ifndef LLNC_H
#define LLNC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Types.h>

#include "rt.h"

/* ------------------------------------------------------------------------
 * Arena (arena.c): bump allocation for everything that lives as long as one
 * compilation.  Memory is zeroed.
 * ---------------------------------------------------------------------- */
typedef struct arena arena;
arena *arena_new(void);
void arena_free(arena *a);
void *arena_alloc(arena *a, size_t n);
char *arena_strdup(arena *a, const char *s);
char *arena_strndup(arena *a, const char *s, size_t n);
char *arena_printf(arena *a, const char *fmt, ...);

/* ------------------------------------------------------------------------
 * Sources and diagnostics (diag.c).  Every token and node carries a loc.
 * User errors print "file:line:col: error: message", the source line and a
 * caret, and count toward src->errors; the stage goes on to find more.
 * Internal errors (compiler bugs) abort with a distinct exit status.
 * ---------------------------------------------------------------------- */
typedef struct loc { int line, col; } loc;   /* 1-based */

typedef struct source {
	const char *path;
	const char *text;    /* NUL-terminated */
	size_t len;
	int errors;
	FILE *out;           /* where diagnostics go (stderr by default) */
} source;

#define LLNC_EXIT_USER 1       /* the program or the command line is wrong */
#define LLNC_EXIT_INTERNAL 70  /* llnc itself is wrong (EX_SOFTWARE) */

source *source_load(arena *a, const char *path);  /* NULL after printing why */
source *source_from_string(arena *a, const char *name, const char *text);
void diag_error(source *src, loc at, const char *fmt, ...);
void diag_verror(source *src, loc at, const char *fmt, va_list ap);
/* After the last stage: "... and N more errors" past the 20 shown. */
void diag_finish(source *src);
_Noreturn void internal_error(const char *fmt, ...);

/* ------------------------------------------------------------------------
 * AST (ast.c, parse.c, grammar/lln.l, grammar/lln.y).
 * ---------------------------------------------------------------------- */
/* AST-SECTION-BEGIN (owned by the front end) */
/* The AST mirrors the text: blocks of statements whose values are generic
 * expressions (numbers, strings, names, calls with positional and keyword
 * arguments).  The grammar knows no operation or setting names; sema.c gives
 * them meaning, so a new operation or setting never touches the grammar. */
typedef enum ast_expr_kind {
	AST_NUMBER,   /* literal, possibly with a leading '-' */
	AST_INF,      /* the keyword inf, possibly with a leading '-' */
	AST_STRING,
	AST_NAME,     /* identifier */
	AST_CALL,     /* identifier(args) */
} ast_expr_kind;

typedef struct ast_expr ast_expr;

typedef struct ast_arg {
	const char *name;       /* keyword argument name; NULL when positional */
	loc at;                 /* the name, or the value when positional */
	ast_expr *value;
	struct ast_arg *next;
	struct ast_arg *last;   /* on a list's head: its last item (ast_arg_append) */
} ast_arg;

struct ast_expr {
	ast_expr_kind kind;
	loc at;                 /* first token (the '-' of a negated number) */
	const char *text;       /* NUMBER: digits as written, without the sign;
	                           STRING: unescaped value; NAME, CALL: identifier */
	double num;             /* NUMBER, INF: value with the sign applied */
	bool negative;          /* written with a leading '-' */
	bool is_int;            /* NUMBER written without '.' or exponent */
	ast_arg *args;          /* CALL, in source order */
	int n_args;
};

typedef enum ast_stmt_kind {
	AST_ASSIGN,   /* NAME = expr ; */
	AST_INPUT,    /* input NAME [dims] normalize(...)? ; */
	AST_OUTPUT,   /* output NAME ; */
} ast_stmt_kind;

typedef struct ast_stmt {
	ast_stmt_kind kind;
	loc at;                 /* first token */
	const char *name;
	loc name_at;
	ast_expr *value;        /* ASSIGN */
	ast_arg *dims;          /* INPUT: positional list */
	int n_dims;
	ast_expr *normalize;    /* INPUT: a CALL named "normalize", or NULL */
	struct ast_stmt *next;
	struct ast_stmt *last;  /* on a list's head: its last item */
} ast_stmt;

typedef enum ast_block_kind { AST_MODEL, AST_OBJECTIVE, AST_TRAIN } ast_block_kind;

typedef struct ast_block {
	ast_block_kind kind;
	loc at;                 /* the keyword */
	const char *name;       /* model name; NULL for objective and train */
	loc name_at;
	ast_stmt *stmts;
	struct ast_block *next;
	struct ast_block *last; /* on a list's head: its last item */
} ast_block;

typedef struct ast_program {
	source *src;
	ast_block *blocks;      /* in source order */
} ast_program;

ast_program *ast_parse(arena *a, source *src);   /* NULL if syntax errors */
void ast_dump(FILE *out, const ast_program *p);
const char *ast_block_keyword(ast_block_kind k);  /* "model", ... */

/* Constructors, called only by the grammar's actions.  The *_append
 * functions take a list (possibly NULL) and return it; NULL items (left by
 * error recovery) are dropped. */
ast_expr *ast_number(arena *a, loc at, const char *text, double v, bool is_int);
ast_expr *ast_inf(arena *a, loc at);
ast_expr *ast_negate(loc minus, ast_expr *e);
ast_expr *ast_string(arena *a, loc at, const char *s);
ast_expr *ast_name(arena *a, loc at, const char *id);
ast_expr *ast_call(arena *a, loc at, const char *id, ast_arg *args);
ast_arg *ast_arg_new(arena *a, loc at, const char *name, ast_expr *value);
ast_arg *ast_arg_append(ast_arg *list, ast_arg *x);
ast_stmt *ast_assign(arena *a, loc at, const char *name, ast_expr *value);
ast_stmt *ast_input(arena *a, loc at, const char *name, loc name_at,
                    ast_arg *dims, ast_expr *normalize);
ast_stmt *ast_output(arena *a, loc at, const char *name, loc name_at);
ast_stmt *ast_stmt_append(ast_stmt *list, ast_stmt *x);
ast_block *ast_block_new(arena *a, ast_block_kind k, loc at, const char *name,
                         loc name_at, ast_stmt *stmts);
ast_block *ast_block_append(ast_block *list, ast_block *x);
ast_program *ast_program_new(arena *a, source *src, ast_block *blocks);
/* AST-SECTION-END */

/* ------------------------------------------------------------------------
 * Semantic analysis (sema.c): names resolved, nested calls flattened into
 * nodes in definition order, shapes inferred, hyperparameters range-checked.
 * ---------------------------------------------------------------------- */
/* The operation catalogue (ops.def), shared by every stage. */
typedef enum op_kind {
	OP_INPUT,     /* the model input */
#define OP(id, name, operands, parameterized, linear, signature) OP_##id,
#include "ops.def"
#undef OP
	OP_COUNT
} op_kind;

typedef struct op_info {
	const char *name;
	int operands;
	bool parameterized, linear;
	const char *signature;
} op_info;
extern const op_info op_catalogue[OP_COUNT];   /* indexed by op_kind (sema.c) */

/* A value's shape.  Images are C x H x W, stored C-major like PyTorch's
 * NCHW; vectors have ndims 1.  Every operation sees its operand as C x H x W
 * (a vector of n as n x 1 x 1). */
typedef struct sema_node {
	op_kind op;
	loc at;
	const char *name;   /* the statement's name; a parameterized op's prefix */
	int in[2];          /* operand node indices, -1 when absent */
	int size;           /* elements of the output (product of dims) */
	int ndims;
	int dims[4];
	int units;          /* dense: n; conv2d: output channels */
	int kernel, stride, padding;   /* conv2d, avgpool */
} sema_node;

typedef struct sema_model {
	const char *name;
	loc at;
	sema_node *nodes;   /* nodes[0] is the input; operands precede users */
	int n_nodes;
	int output;         /* index of the output node */
	bool normalize;
	double mean, std;   /* 0 and 1 without normalize */
	int max_len;        /* input x[*, F]: sequences of 1 to max_len frames, held
	                     * as max_len frames (docs/design.md); 0 otherwise */
} sema_model;

typedef enum { LOSS_CROSS_ENTROPY, LOSS_SIGMOID_CROSS_ENTROPY } sema_loss;
typedef enum { REG_NONE, REG_ROLL, REG_DISTANCE } sema_reg;
typedef enum { OPT_SGD, OPT_ADAM, OPT_AMSGRAD } sema_optimizer;
typedef enum { DATA_NONE, DATA_IDX, DATA_CSV, DATA_NPY, DATA_TS, DATA_TOY2D } sema_data_kind;

typedef struct sema_objective {
	sema_loss loss;
	sema_reg reg;
	double lambda, C, gamma;   /* roll: all three; distance: lambda */
	int samples;               /* roll: input axes sampled per example (approximate ROLL), 0: all */
	int p;                     /* distance norm: 1, 2, or 0 for inf */
} sema_objective;

typedef struct sema_data {
	sema_data_kind kind;
	const char *path[2];       /* examples (and labels for idx / npy) */
	/* toy2d(kind, n, noise, seed): a built-in 2-D data set (rt_toy2d) */
	const char *toy_kind;      /* "spirals" or "moons" */
	int64_t toy_n;
	double toy_noise;
	uint64_t toy_seed;
} sema_data;

typedef struct sema_train {
	sema_optimizer optimizer;
	double lr, momentum;       /* momentum: sgd */
	bool nesterov;
	double beta1, beta2, adam_eps;
	double weight_decay;
	int lr_step;               /* epochs between lr decays; 0 = constant */
	double lr_gamma;           /* factor applied every lr_step epochs */
	int batch, epochs;
	uint64_t seed;
	int valid;                 /* examples held out for validation */
	rt_init_scheme init;       /* init = pytorch (the default, 0) or he */
	sema_data data, test;
} sema_train;

typedef struct sema_program {
	const source *src;
	sema_model model;
	sema_objective objective;  /* defaults when the block is absent */
	sema_train train;
	bool has_objective, has_train;
} sema_program;

/* NULL if there were errors (all reported through src). */
sema_program *sema_check(arena *a, const ast_program *p);
/* The same, 'input x[*, F]' taking sequences of up to max_len frames
 * (sema_check: SEMA_MAX_LEN, llnc's --max-len default). */
sema_program *sema_check_len(arena *a, const ast_program *p, int max_len);
#define SEMA_MAX_LEN 32
#define SEMA_MAX_STEPS 1024   /* time steps of an rnn (it is unrolled) */
/* The objective and train blocks as the runtime's default flags, one
 * argument per line ("--epochs\n20\n..."), for rt_train_main and its
 * kin (defaults.c). */
char *sema_defaults(arena *a, const sema_program *p);

/* ------------------------------------------------------------------------
 * IR (ir.c): the model as a list of shaped tensor operations over numbered
 * values, with the parameter layout fixed.  Every op is linear in its inputs
 * and may be followed by a ReLU; the pre-activations of ReLU ops are the
 * hidden neurons, numbered in op order.
 * ---------------------------------------------------------------------- */
typedef struct ir_op {
	op_kind kind;
	loc at;
	const char *name;
	int in[2], n_in;     /* operand values: 0 is the normalized input, op k makes value k+1 */
	int in_size, out_size;
	int ic, ih, iw;      /* operand 0 as C x H x W */
	int oc, oh, ow;      /* the output as C x H x W */
	int kernel, stride, padding;
	bool relu;           /* output is a hidden layer */
	int64_t w_off, b_off;/* offsets into P; -1 without parameters */
	int z_off;           /* first hidden neuron, when relu */
	/* rnn: one op per time step, h_t = relu(W_ih x_t + b_ih + W_hh h_{t-1}
	 * + b_hh), sharing the four tensors (w_off, b_off: W_ih, b_ih).
	 * Operand 0 is the sequence below, of which x_t is the in_size values
	 * from `slice`; operand 1, from step 1 on, is h_{t-1}. */
	int slice, step;
	int64_t wh_off, bh_off;
} ir_op;

typedef struct ir_module {
	const char *name;
	int n_in, n_out, n_hidden, n_layers;
	int in_c, in_h, in_w;  /* the input as C x H x W */
	int64_t n_params;
	double mean, std;      /* the source's decimals, correctly rounded */
	ir_op *ops;
	int n_ops;
	rt_tensor *tensors;
	int n_tensors;
	rt_layer *layers;
	/* a chain of dense layers: the Gram recurrence is available */
	bool dense_chain;
	/* strategy for eps_2 alone, chosen by a cost model of the shapes: the Gram
	 * recurrence (independent of the input size) or explicit gradient rows */
	bool l2_by_gram;
	/* certify forms rows only where needed (two hidden layers or more) */
	bool rows_pruned;
	double cost_rows, cost_gram;   /* estimated multiply-adds per input */
	/* approximate ROLL: K sampled input axes, whose tangents the training
	 * kernels push instead of all n_in (0: exact) */
	int samples;
	/* input x[*, F]: sequences of 1 to max_len frames, given as max_len
	 * frames with the sequence at the end; the kernels read its length L
	 * from the workspace and hold every rnn step before max_len - L at 0,
	 * so those steps change nothing (docs/design.md).  0: fixed length */
	int max_len;
} ir_module;

ir_module *ir_lower(arena *a, const sema_program *p);
void ir_dump(FILE *out, const ir_module *m);

/* ------------------------------------------------------------------------
 * Code generation (cg.c, emit.c): LLVM IR for the kernels of rt_model,
 * optimized for a target, then emitted as an object, JIT-compiled in
 * process, or linked with the runtime into a certifier executable.
 * ---------------------------------------------------------------------- */
/* The kernels' optimization level unless one is asked for (-O): 3, and 1
 * in the sanitized test build (LLN_SANITIZE; CMakeLists.txt), whose time
 * went mostly to LLVM's own -O3 passes, uninstrumented: at -O1 every line
 * of lln that builds, optimizes, emits and links kernels still runs, and
 * the kernels compute the same values (no fast-math).  The kernels the
 * tests compile in process go further, to -O0 (tests/jit.h): this keeps
 * cg_optimize under the sanitizers. */
#ifdef LLN_SANITIZE
#define CG_DEFAULT_OPT 1
#else
#define CG_DEFAULT_OPT 3
#endif

typedef struct cg_options {
	const char *cpu;       /* NULL: the host CPU and its features; or "x86-64", "x86-64-v3", ... */
	int opt_level;         /* 0..3 (CG_DEFAULT_OPT) */
	bool certifier;        /* only the kernels a certifier calls: no training kernels */
	int ops_per_part;      /* models deeper than this get kernels in parts (cg.h); 0: 8 */
} cg_options;

typedef struct cg_unit {   /* one LLVM context, module and target, disposed together */
	LLVMOrcThreadSafeContextRef tsc;
	LLVMContextRef ctx;
	LLVMModuleRef mod;         /* NULL once handed to the JIT */
	LLVMTargetMachineRef tm;
	LLVMOrcLLJITRef jit;
} cg_unit;

/* The target machine for a CPU (NULL: the host's name and features). */
LLVMTargetMachineRef cg_target_machine(const char *cpu, int opt, char *err);
cg_unit *cg_generate(const ir_module *m, const cg_options *o, char *err);  /* builds + optimizes; NULL + err */
/* The two halves of cg_generate: the module as written (verified), and
 * LLVM's pipeline at -O<opt_level> for the unit's target. */
cg_unit *cg_build(const ir_module *m, const cg_options *o, char *err);
void cg_optimize(cg_unit *u, int opt_level);
void cg_dump(FILE *out, cg_unit *u);                            /* textual LLVM IR */
/* The module's machine code as an object file in memory; NULL + err. */
LLVMMemoryBufferRef cg_emit_object(cg_unit *u, char *err);
/* JIT-compile; returns the model descriptor, valid until cg_unit_free. */
const rt_model *cg_jit(cg_unit *u, char *err);
/* JIT-link an object holding lln_model (taking the buffer over) into a new
 * unit *u; the model descriptor, valid until cg_unit_free(*u). */
const rt_model *cg_jit_object(LLVMMemoryBufferRef obj, cg_unit **u, char *err);
void cg_unit_free(cg_unit *u);

/* The kernels' object for (m, o), as cg_generate and the target machine
 * make it: from the kernel cache in the user's cache directory when it
 * holds one for the same module and target, else optimized and emitted,
 * and stored there (cache.c; docs/design.md).  NULL + err on failure. */
LLVMMemoryBufferRef cg_cache_kernels(const ir_module *m, const cg_options *o, char *err);

/* A standalone executable from the kernels' object: a certifier with the
 * weights P (lln_weights) or a trainer with the train defaults
 * (lln_train_defaults) as a second object, linked with the runtime's
 * driver by the system C compiler (emit.c). */
typedef enum { CG_CERTIFIER, CG_TRAINER } cg_exe_kind;
typedef struct cg_exe {
	cg_exe_kind kind;
	const char *cpu;           /* as for cg_options */
	const float *weights;      /* certifier: n_params floats */
	int64_t n_params;
	const char *train_defaults;  /* trainer */
} cg_exe;
int cg_build_exe(LLVMMemoryBufferRef kernels, const cg_exe *e, const char *out, char *err);

#endif
