/* cg.c: LLVM IR for the kernels of one model.
 *
 * Every kernel of rt_model is generated here, specialised to the model's
 * shapes: loop bounds and parameter offsets are constants, so the O3
 * pipeline can unroll and vectorise for the target CPU.  The kernels are
 * written once over the operation interface of cg.h (apply, rows and their
 * adjoints), so they hold for any graph of the operations in ops.def:
 *   prepare    per weight vector: norms of the gradient rows of dense layers
 *              reading the input (their weights), and for dense chains the
 *              first Gram matrix W W^T
 *   forward    pre-activations and logits, accumulated in double precision
 *   grads      every hidden neuron's input gradient, by pushing the rows of
 *              the input (the identity) through the masked network:
 *              tangents, J_v = A diag(m) J_in for each operation
 *   certify    forward, then eps_1, eps_2, eps_inf with their binding neurons
 *              and the certified-prediction radius, from the rows or, for
 *              eps_2 alone when the IR chose it, from the Gram recurrence
 *   direction  the directional margin, by one tangent pass (a JVP)
 *   train_*    squared gradient norms and the exact parameter gradient of
 *              any loss of (logits, z, sq): by the Gram recurrence and its
 *              adjoint for dense chains (cg_dense.c), by the rows and their
 *              adjoint otherwise; then back-propagation; and for models
 *              without recurrence, without sq (with it too for dense
 *              chains), a whole batch at once (cg_batch.c)
 * The matrix products run through one register-blocked kernel (cg_gemm)
 * that gathers active units by index lists instead of copying them.
 * Inside the kernels gradients are taken with respect to the normalized
 * input; margins are converted to raw units by the scalar std at the end.
 * Finally the module gets the global `lln_model` descriptor (rt.h); a
 * certifier's weights go into an object of their own (emit.c), so that the
 * kernels' object does not depend on them and can be cached (cache.c).
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "cg.h"

/* The descriptor is built field by field below; these pin rt.h's layout to
 * the LLVM structs (natural alignment on a 64-bit target). */
_Static_assert(offsetof(rt_model, name) == 8 && offsetof(rt_model, n_params) == 48 &&
               offsetof(rt_model, logit_jac_off) == 80 && offsetof(rt_model, mean) == 88 &&
               offsetof(rt_model, layers) == 104 && offsetof(rt_model, prepare) == 120 &&
               offsetof(rt_model, train_finish) == 184 && offsetof(rt_model, batch_ws_floats) == 192 &&
               offsetof(rt_model, batch) == 200 && offsetof(rt_model, train_batch_forward) == 208 &&
               offsetof(rt_model, train_gram) == 232 && offsetof(rt_model, tangent_ws_floats) == 256 &&
               sizeof(rt_model) == 288,
               "rt_model does not match emit_descriptor");
_Static_assert(offsetof(rt_layer, size) == 8 && offsetof(rt_layer, c) == 16 && sizeof(rt_layer) == 32,
               "rt_layer does not match emit_descriptor");
_Static_assert(offsetof(rt_tensor, shape) == 12 && offsetof(rt_tensor, offset) == 32 &&
               offsetof(rt_tensor, is_bias) == 52 && sizeof(rt_tensor) == 56,
               "rt_tensor does not match emit_descriptor");

/* Code generation of each linear operation (compiler/cg_NAME.c). */
const cg_op *const cg_ops[OP_COUNT] = {
	[OP_DENSE] = &cg_op_dense, [OP_CONV2D] = &cg_op_conv2d, [OP_AVGPOOL] = &cg_op_avgpool, [OP_ADD] = &cg_op_add,
	[OP_RNN] = &cg_op_rnn,
};

/* ---- a register-blocked matrix product ---- */

/* Called from several places: one copy of the code. */
static void no_inline(gen *g)
{
	unsigned k = LLVMGetEnumAttributeKindForName("noinline", 8);
	LLVMAddAttributeAtIndex(g->fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(g->c, k, 0));
}

/* A vector of B's row or C's, whole or, in the last panel of a width not a
 * multiple of the vector width, only the lanes `mask` keeps (the others read
 * as 0 and are not written), so that C may be a matrix of any width, such as
 * a weight gradient. */
static LLVMValueRef masked_intrinsic(gen *g, const char *name, LLVMValueRef *args)
{
	LLVMTypeRef tys[2] = { g->vf, g->ptr };
	unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
	return LLVMBuildCall2(g->b, LLVMIntrinsicGetType(g->c, id, tys, 2), LLVMGetIntrinsicDeclaration(g->mod, id, tys, 2),
	                      args, 4, "");
}
LLVMValueRef cg_load_lanes(gen *g, LLVMValueRef base, LLVMValueRef i, LLVMValueRef mask)
{
	if (!mask)
		return vload(g, base, i);
	return masked_intrinsic(g, "llvm.masked.load",
	                        (LLVMValueRef[]){ at(g, g->f32, base, i), ci32(g, 4), mask, LLVMConstNull(g->vf) });
}
void cg_store_lanes(gen *g, LLVMValueRef v, LLVMValueRef base, LLVMValueRef i, LLVMValueRef mask)
{
	if (mask)
		masked_intrinsic(g, "llvm.masked.store", (LLVMValueRef[]){ v, at(g, g->f32, base, i), ci32(g, 4), mask });
	else
		vstore(g, v, base, i);
}

LLVMValueRef cg_lanes_below(gen *g, LLVMValueRef n)
{
	const unsigned vw = LLVMGetVectorSize(g->vf);
	LLVMTypeRef vi = LLVMVectorType(g->i64, vw);
	LLVMValueRef lanes[16];
	for (unsigned i = 0; i < vw; i++)
		lanes[i] = ci(g, i);
	LLVMValueRef left = LLVMBuildInsertElement(g->b, LLVMGetUndef(vi), n, ci32(g, 0), "");
	left = LLVMBuildShuffleVector(g->b, left, LLVMGetUndef(vi), LLVMConstNull(LLVMVectorType(g->i32, vw)), "");
	return LLVMBuildICmp(g->b, LLVMIntSLT, LLVMConstVector(lanes, vw), left, "");
}

enum { GEMM_MAXR = 8 };

static void gemm_block(gen *g, const gemm *p, LLVMValueRef i0, LLVMValueRef j0, LLVMValueRef K, int R, int CB,
                       LLVMValueRef mask)
{
	const int64_t vw = LLVMGetVectorSize(g->vf);
	LLVMValueRef acc[GEMM_MAXR][2], arow[GEMM_MAXR];
	for (int r = 0; r < R; r++) {
		arow[r] = lookup(g, p->arows, add(g, i0, ci(g, r)));
		for (int c = 0; c < CB; c++)
			acc[r][c] = var(g, g->vf, LLVMConstNull(g->vf));
	}
	loop l;
	LLVMValueRef k = loop_begin(g, &l, ci(g, 0), K);
	LLVMValueRef brow = add(g, mul(g, lookup(g, p->brows, k), p->ldb), j0);
	LLVMValueRef bv[2];
	for (int c = 0; c < CB; c++)
		bv[c] = cg_load_lanes(g, p->B, add(g, brow, ci(g, vw * c)), mask);
	LLVMValueRef kc = lookup(g, p->acols, k);
	for (int r = 0; r < R; r++) {
		LLVMValueRef ai = p->atrans ? add(g, mul(g, kc, p->lda), arow[r]) : add(g, mul(g, arow[r], p->lda), kc);
		LLVMValueRef av = vsplat(g, load(g, g->f32, p->A, ai));
		for (int c = 0; c < CB; c++)
			set(g, acc[r][c], vfma(g, av, bv[c], get(g, g->vf, acc[r][c])));
	}
	loop_end(g, &l);
	for (int r = 0; r < R; r++)
		for (int c = 0; c < CB; c++) {
			LLVMValueRef crow = p->scatter ? arow[r] : add(g, i0, ci(g, r));
			LLVMValueRef ci_ = add(g, mul(g, crow, p->ldc), add(g, j0, ci(g, vw * c)));
			LLVMValueRef v = get(g, g->vf, acc[r][c]);
			if (p->alpha != 1)
				v = LLVMBuildFMul(g->b, v, vsplat(g, LLVMConstReal(g->f32, p->alpha)), "");
			if (p->accumulate)
				v = LLVMBuildFAdd(g->b, v, cg_load_lanes(g, p->C, ci_, mask), "");
			cg_store_lanes(g, v, p->C, ci_, mask);
		}
}

/* The blocks of rows of one column panel: R at a time (p->rows, default
 * 4), then one at a time. */
static void gemm_panel(gen *g, const gemm *p, LLVMValueRef j0, int CB, LLVMValueRef mask)
{
	int R = p->rows ? p->rows : 4;
	loop li;
	LLVMValueRef M = p->M, K = p->K;
	LLVMValueRef end = add(g, j0, ci(g, CB * LLVMGetVectorSize(g->vf)));
	if (p->symmetric)   /* the rows with an entry on or above the diagonal in this panel */
		M = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, end, M, ""), end, M, "");
	if (p->upper)
		K = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, end, K, ""), end, K, "");
	LLVMValueRef MR = LLVMBuildMul(g->b, LLVMBuildSDiv(g->b, M, ci(g, R), ""), ci(g, R), "");
	LLVMValueRef i0 = loop_begin_step(g, &li, ci(g, 0), MR, R);
	gemm_block(g, p, i0, j0, K, R, CB, mask);
	loop_end(g, &li);
	i0 = loop_begin(g, &li, MR, M);
	gemm_block(g, p, i0, j0, K, 1, CB, mask);
	loop_end(g, &li);
}

/* C's lower triangle from its upper one, M x M. */
static void mirror_upper(gen *g, const gemm *p)
{
	loop li, lj;
	LLVMValueRef i = loop_begin(g, &li, ci(g, 1), p->M);
	LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), i);
	store(g, load(g, g->f32, p->C, add(g, mul(g, j, p->ldc), i)), p->C, add(g, mul(g, i, p->ldc), j));
	loop_end(g, &lj);
	loop_end(g, &li);
}

/* Column panels outermost: a panel of B (K rows x 2 vectors) stays in L1
 * while every block of rows of A passes over it, so B, which may not fit in
 * L2 (gradient rows: 300 x 784 floats), is read from memory once.  Panels
 * are two vectors wide, then one, then one under a mask. */
static void emit_gemm(gen *g, const gemm *p)
{
	const int64_t vw = LLVMGetVectorSize(g->vf);
	LLVMValueRef N2 = LLVMBuildAnd(g->b, p->N, ci(g, -2 * vw), "");
	LLVMValueRef N1 = LLVMBuildAnd(g->b, p->N, ci(g, -vw), "");
	loop lj;
	LLVMValueRef j0 = loop_begin_step(g, &lj, ci(g, 0), N2, 2 * vw);
	gemm_panel(g, p, j0, 2, NULL);
	loop_end(g, &lj);
	LLVMBasicBlockRef done = if_begin(g, LLVMBuildICmp(g->b, LLVMIntNE, N2, N1, ""));
	gemm_panel(g, p, N2, 1, NULL);
	if_end(g, done);
	done = if_begin(g, LLVMBuildICmp(g->b, LLVMIntNE, N1, p->N, ""));
	gemm_panel(g, p, N1, 1, cg_lanes_below(g, LLVMBuildSub(g->b, p->N, N1, "")));
	if_end(g, done);
	if (p->symmetric)
		mirror_upper(g, p);
}

/* Each product is a call to a function of the module for its kind: the
 * vector width, tile and flags, which operands go through index lists, and
 * the values of the sizes and leading dimensions that are constants (the
 * others are arguments).  A model's products repeat few kinds (layers of
 * one shape; the Gram products, whose sizes are known only at run time), so
 * each is optimized and emitted once: about a third off the JIT time of
 * mnist_fc's training kernels.  Constants stay constants inside, where LLVM
 * specializes on them (the batched kernels ran a quarter slower when they
 * were arguments). */
enum { GEMM_INTS = 6 };
typedef struct gemm_fn {
	gemm kind;                      /* flags and the lists' presence; no values */
	unsigned vw;
	bool known[GEMM_INTS];          /* ldc, lda, ldb, M, N, K: a constant ... */
	long long value[GEMM_INTS];     /* ... of this value */
	LLVMValueRef fn;
} gemm_fn;

static gemm_fn kind_of(gen *g, const gemm *p)
{
	LLVMValueRef on = (LLVMValueRef)1;   /* present: only compared, never used */
	gemm_fn k = { .kind = { .arows = p->arows ? on : NULL, .acols = p->acols ? on : NULL, .brows = p->brows ? on : NULL,
	                        .atrans = p->atrans, .accumulate = p->accumulate, .scatter = p->scatter,
	                        .symmetric = p->symmetric, .upper = p->upper, .alpha = p->alpha, .rows = p->rows ? p->rows : 4 },
	              .vw = LLVMGetVectorSize(g->vf) };
	LLVMValueRef ints[GEMM_INTS] = { p->ldc, p->lda, p->ldb, p->M, p->N, p->K };
	for (int i = 0; i < GEMM_INTS; i++)
		if ((k.known[i] = LLVMIsAConstantInt(ints[i]) != NULL))
			k.value[i] = LLVMConstIntGetSExtValue(ints[i]);
	return k;
}

static bool same_kind(const gemm_fn *a, const gemm_fn *b)
{
	const gemm *x = &a->kind, *y = &b->kind;
	if (x->arows != y->arows || x->acols != y->acols || x->brows != y->brows || x->atrans != y->atrans ||
	    x->accumulate != y->accumulate || x->scatter != y->scatter || x->symmetric != y->symmetric || x->upper != y->upper ||
	    x->alpha != y->alpha || x->rows != y->rows || a->vw != b->vw)
		return false;
	for (int i = 0; i < GEMM_INTS; i++)
		if (a->known[i] != b->known[i] || (a->known[i] && a->value[i] != b->value[i]))
			return false;
	return true;
}

static LLVMValueRef gemm_function(gen *g, const gemm_fn *k)
{
	LLVMTypeRef ps[6 + GEMM_INTS];
	for (int i = 0; i < 6 + GEMM_INTS; i++)
		ps[i] = i < 6 ? g->ptr : g->i64;
	/* external, under a name of its own, so that profilers can name it
	 * (lln_bench's perf map) */
	char name[32];
	snprintf(name, sizeof name, "lln_gemm_%d", g->n_gemm_fns);
	LLVMValueRef fn = LLVMAddFunction(g->mod, name, LLVMFunctionType(LLVMVoidTypeInContext(g->c), ps, 6 + GEMM_INTS, 0));
	LLVMValueRef outer = g->fn;
	LLVMBasicBlockRef outer_entry = g->entry, outer_at = LLVMGetInsertBlock(g->b);
	g->fn = fn;
	no_inline(g);
	if (k->vw == 16)
		cg_wide_vectors(g);
	g->entry = block(g, "entry");
	LLVMPositionBuilderAtEnd(g->b, g->entry);
	gemm q = k->kind;
	LLVMValueRef *slot[6 + GEMM_INTS] = { &q.C, &q.A, &q.B, &q.arows, &q.acols, &q.brows, &q.ldc, &q.lda, &q.ldb, &q.M, &q.N, &q.K };
	for (int i = 0; i < 6 + GEMM_INTS; i++)
		if (i >= 6 && k->known[i - 6])
			*slot[i] = ci(g, k->value[i - 6]);
		else if (i < 3 || i >= 6 || *slot[i])
			*slot[i] = LLVMGetParam(fn, (unsigned)i);
	emit_gemm(g, &q);
	LLVMBuildRetVoid(g->b);
	g->fn = outer;
	g->entry = outer_entry;
	LLVMPositionBuilderAtEnd(g->b, outer_at);
	return fn;
}

void cg_gemm(gen *g, const gemm *p)
{
	gemm_fn k = kind_of(g, p);
	LLVMValueRef fn = NULL;
	for (int i = 0; i < g->n_gemm_fns && !fn; i++)
		if (same_kind(&g->gemm_fns[i], &k))
			fn = g->gemm_fns[i].fn;
	if (!fn) {
		k.fn = fn = gemm_function(g, &k);
		gemm_fn *t = realloc(g->gemm_fns, sizeof *t * (size_t)(g->n_gemm_fns + 1));
		if (!t)
			internal_error("out of memory");
		g->gemm_fns = t;
		g->gemm_fns[g->n_gemm_fns++] = k;
	}
	LLVMValueRef none = LLVMConstNull(g->ptr);
	LLVMValueRef args[6 + GEMM_INTS] = { p->C, p->A, p->B, p->arows ? p->arows : none, p->acols ? p->acols : none,
	                                     p->brows ? p->brows : none, p->ldc, p->lda, p->ldb, p->M, p->N, p->K };
	LLVMBuildCall2(g->b, LLVMGlobalGetValueType(fn), fn, args, 6 + GEMM_INTS, "");
}

/* 16 floats wide given AVX-512; the function must be marked for 512-bit
 * vectors (cg_wide_vectors). */
void cg_wide_gemm(gen *g, const gemm *p)
{
	LLVMTypeRef vf = g->vf;
	if (g->avx512)
		g->vf = LLVMVectorType(g->f32, 16);
	cg_gemm(g, p);
	g->vf = vf;
}

/* ---- the workspace layout ---- */

static int value_size(const ir_module *m, int v)
{
	return v == 0 ? m->n_in : m->ops[v - 1].out_size;
}

/* A dense layer reading the input has its weights as gradient rows. */
bool cg_rows_are_weights(const gen *g, const ir_op *op)
{
	return op->kind == OP_DENSE && op->in[0] == 0 && !g->sampled;
}

/* Whether op is an rnn step before a left-padded sequence's first frame
 * (i1), NULL when no op of the model can be: then its units are held at 0,
 * off and exact, so nothing after them sees the padding, and they bind no
 * margin (cg_undecided).  A length outside 1..max_len in the workspace (a
 * caller that never set it) means the full max_len frames. */
LLVMValueRef cg_padded(gen *g, LLVMValueRef ws, const ir_op *op)
{
	if (!g->m->max_len || op->kind != OP_RNN)
		return NULL;
	LLVMValueRef len = load(g, g->i32, ws, ci(g, 0));
	LLVMValueRef set = LLVMBuildICmp(g->b, LLVMIntSGE, len, ci32(g, 1), "");
	LLVMValueRef before = LLVMBuildICmp(g->b, LLVMIntSLT, LLVMBuildAdd(g->b, len, ci32(g, op->step), ""),
	                                    ci32(g, g->m->max_len), "");
	return LLVMBuildAnd(g->b, set, before, "");
}

static int64_t *offsets(arena *a, int n)
{
	int64_t *t = arena_alloc(a, sizeof(int64_t) * (size_t)(n + 1));
	for (int i = 0; i <= n; i++)
		t[i] = -1;
	return t;
}

/* Per example: values and tangents in double, active lists, gradient rows
 * (and their adjoints, for training without the Gram form), the identity
 * when an operation other than dense reads the input, and the Gram
 * recurrence's matrices for dense chains.  Per weight vector (pre): first-
 * layer norms and W W^T; past the parameters in grad: Gram accumulators. */
static void plan_layout(gen *g, arena *a, bool training)
{
	const ir_module *m = g->m;
	int nv = m->n_ops + 1;
	int64_t D = m->n_in;
	/* rows have D floats, or pad8(K) in approximate ROLL's training kernels */
	int64_t R = training && m->samples && pad8(m->samples) > D ? pad8(m->samples) : D;
	g->val_off = offsets(a, nv);
	g->tan_off = offsets(a, nv);
	int64_t **tabs[] = { &g->act_off, &g->jac_off, &g->rbar_off, &g->pre_off, &g->cnt_off, &g->gc_off,
	                     &g->gbar_off, &g->vc_off, &g->t_off, &g->kpre_off, &g->acc_off,
	                     &g->wtw_off, &g->hacc_off };
	for (size_t t = 0; t < sizeof tabs / sizeof *tabs; t++)
		*tabs[t] = offsets(a, m->n_ops);
	/* a sequence's length L, set by the runtime, in the first word */
	int64_t off = m->max_len ? 16 : 0;
	for (int v = 0; v < nv; v++) {
		g->val_off[v] = off;
		off += round16(2 * (int64_t)value_size(m, v));
		g->tan_off[v] = off;
		off += round16(2 * (int64_t)value_size(m, v));
	}
	g->id_off = -1;
	/* the bounds of cg_certify.c: per value, then per neuron and logit */
	g->ez_off = offsets(a, nv);
	g->err_off = offsets(a, nv);
	for (int p = 0; p < RT_NNORMS; p++) {
		g->nrm_off[p] = offsets(a, nv);
		g->rer_off[p] = offsets(a, nv);
		g->tri_off[p] = offsets(a, nv);
	}
	int64_t widest_v = 0;
	for (int v = 0; v < nv; v++) {
		int64_t n2 = round16(2 * (int64_t)value_size(m, v));
		int64_t *t[] = { g->ez_off, g->err_off, g->nrm_off[0], g->nrm_off[1], g->nrm_off[2],
		                 g->rer_off[0], g->rer_off[1], g->rer_off[2], g->tri_off[0], g->tri_off[1], g->tri_off[2] };
		for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
			t[i][v] = off;
			off += n2;
		}
		widest_v = n2 > widest_v ? n2 : widest_v;
	}
	int64_t H = m->n_hidden, O = m->n_out;
	g->tmp_off = off;
	off += widest_v;
	g->lb_off = off;
	off += round16(6 * H);
	g->zl_off = off;
	off += round16(2 * H);
	g->ref_off = off;
	off += round16(H);
	g->lp_off = off;
	off += round16(6 * O);
	g->gap_off = off;
	off += round16(2 * O);
	g->refp_off = off;
	off += round16(O);
	g->umin_off = off;
	off += 16;
	int64_t pre = 0, grad = m->n_params, widest = m->n_in, scratch = 0;
	for (int k = 0; k < m->n_ops; k++) {
		const ir_op *op = &m->ops[k];
		int64_t n = op->out_size, nin = op->in_size;
		widest = n > widest ? n : widest;
		/* the input's rows, the identity, for the ops that read them: not
		 * dense layers (their rows are W) nor windows (cg_window_rows) */
		bool window = op->kind == OP_CONV2D || op->kind == OP_AVGPOOL;
		for (int i = 0; i < op->n_in; i++)
			if (op->in[i] == 0 && !cg_rows_are_weights(g, op) && !window && g->id_off < 0) {
				g->id_off = off;
				off += round16(D * D);
			}
		/* (the grads kernel copies a dense first layer's W / std to rows of
		 * its own when they are not hidden neurons, whose rows go to G) */
		/* (approximate ROLL's training gives a dense first layer rows of its
		 * own: the sampled columns of W) */
		if (!cg_rows_are_weights(g, op) || !op->relu || (training && m->samples)) {
			g->jac_off[k] = off;
			off += round16(n * R);
		}
		if (training && (!m->dense_chain || m->samples)) {
			g->rbar_off[k] = off;
			off += round16(n * R);
		}
		if (op->relu) {
			g->act_off[k] = off;
			off += round16(n);
			g->cnt_off[k] = off;
			off += 16;
			if (cg_rows_are_weights(g, op)) {   /* 3 x n doubles */
				g->pre_off[k] = pre;
				pre += round16(6 * n);
			}
		}
		if (!m->dense_chain)
			continue;
		/* the Gram recurrence: the logits' V and T, for the Gram strategy;
		 * every hidden layer's G, its adjoint, and V and T or W W^T */
		if (op->relu) {
			g->gc_off[k] = off;
			off += round16(n * pad8(n));
			g->gbar_off[k] = off;
			off += round16(n * pad8(n));
		}
		if (op->in[0] != 0) {
			g->vc_off[k] = off;
			off += round16(n * pad8(nin));
			g->t_off[k] = off;
			off += round16(n * pad8(nin));
			if (training && op->relu && !m->samples) {   /* uniform dsq (cg_gram_backward) */
				g->wtw_off[k] = pre;
				pre += round16(nin * nin);
				g->hacc_off[k] = grad;
				grad += nin * nin;
			}
		} else if (op->relu) {
			g->kpre_off[k] = pre;
			pre += round16(n * n);
			g->acc_off[k] = grad;
			grad += n * n;
		}
		if (op->relu) {
			int64_t sc = n * pad8(nin) > nin * pad8(n) ? n * pad8(nin) : nin * pad8(n);
			scratch = sc > scratch ? sc : scratch;
		}
	}
	/* certify's pruned strategy puts there V = W^o diag(m) W^L, and an
	 * operand's norms and errors (6 x in doubles) */
	if (m->dense_chain && m->n_ops >= 3) {
		int64_t sc = (int64_t)m->n_out * pad8(m->ops[m->n_ops - 2].in_size);
		for (int k = 0; k < m->n_ops; k++)
			sc = 12 * (int64_t)m->ops[k].in_size > sc ? 12 * (int64_t)m->ops[k].in_size : sc;
		scratch = sc > scratch ? sc : scratch;
	}
	for (int i = 0; i < 3; i++) {
		g->scratch_off[i] = off;
		off += round16(scratch);
	}
	g->sq_off = off;
	off += round16(m->n_hidden);
	g->samp_off = -1;
	if (training && m->samples) {
		g->samp_off = off;
		off += round16(D * pad8(m->samples));
	}
	g->row_off = off;
	g->row2_off = off + round16(widest);
	off += 2 * round16(widest);
	g->keep_off = off;
	off += round16(widest);
	g->ws_floats = off;
	g->pre_floats = pre > 0 ? pre : 1;
	/* how many terms each value's adjoint sums over its consumers (lln_vjp) */
	g->fan = arena_alloc(a, sizeof *g->fan * (size_t)nv);
	for (int k = 0; k < m->n_ops; k++)
		for (int i = 0; i < m->ops[k].n_in; i++)
			g->fan[m->ops[k].in[i]] += op_fanout(&m->ops[k]);
	g->grad_floats = grad;
}

/* ---- functions ---- */


/* A kernel: void NAME(params) where each parameter is a pointer, except
 * those whose bit is set in `ints` (int32 by value). */
LLVMValueRef cg_begin_function(gen *g, const char *name, int nparams, const char **pnames, unsigned ints)
{
	LLVMTypeRef ps[12];
	for (int i = 0; i < nparams; i++)
		ps[i] = ints & (1u << i) ? g->i32 : g->ptr;
	LLVMTypeRef ft = LLVMFunctionType(LLVMVoidTypeInContext(g->c), ps, (unsigned)nparams, 0);
	g->fn = LLVMAddFunction(g->mod, name, ft);
	LLVMSetLinkage(g->fn, LLVMInternalLinkage);
	unsigned noalias = LLVMGetEnumAttributeKindForName("noalias", 7);
	for (int i = 0; i < nparams; i++) {
		LLVMValueRef p = LLVMGetParam(g->fn, (unsigned)i);
		LLVMSetValueName2(p, pnames[i], strlen(pnames[i]));
		/* buffers never alias: lets the vectoriser skip runtime checks */
		if (ps[i] == g->ptr)
			LLVMAddAttributeAtIndex(g->fn, (unsigned)i + 1, LLVMCreateEnumAttribute(g->c, noalias, 0));
	}
	g->entry = block(g, "entry");
	LLVMPositionBuilderAtEnd(g->b, g->entry);
	return g->fn;
}
LLVMValueRef cg_param(gen *g, int i) { return LLVMGetParam(g->fn, (unsigned)i); }

/* With AVX-512 the products use 16-float vectors: the FMA units are as
 * many as with 8, so each instruction does twice the work.  LLVM splits
 * 512-bit vectors on CPUs that prefer 256 unless the function says it
 * wants them (parts inherit the wish, cg_part_close). */
static const char *const wide_attrs[][2] = { { "min-legal-vector-width", "512" }, { "prefer-vector-width", "512" } };
void cg_wide_vectors(gen *g)
{
	if (!g->avx512)
		return;
	for (size_t i = 0; i < sizeof wide_attrs / sizeof *wide_attrs; i++)
		LLVMAddAttributeAtIndex(g->fn, LLVMAttributeFunctionIndex,
		                        LLVMCreateStringAttribute(g->c, wide_attrs[i][0], (unsigned)strlen(wide_attrs[i][0]),
		                                                  wide_attrs[i][1], (unsigned)strlen(wide_attrs[i][1])));
}

/* ---- parts ---- */

void cg_part_step(gen *g, cg_part *p)
{
	if (!g->group)
		return;
	if (p->ops == g->group)
		cg_part_close(g, p);
	if (p->ops++ > 0)
		return;
	/* the body goes to a scratch function first: its parameters are known
	 * only once the body is written */
	p->outer_fn = g->fn;
	p->outer_entry = g->entry;
	p->outer_at = LLVMGetInsertBlock(g->b);
	p->fn = LLVMAddFunction(g->mod, "part.scratch", LLVMFunctionType(LLVMVoidTypeInContext(g->c), NULL, 0, 0));
	g->fn = p->fn;
	g->entry = block(g, "entry");
	LLVMPositionBuilderAtEnd(g->b, g->entry);
}

/* Whether v belongs to a function other than fn (an argument or an
 * instruction; constants, globals and blocks belong to none). */
static bool foreign(LLVMValueRef v, LLVMValueRef fn)
{
	if (LLVMIsAArgument(v))
		return LLVMGetParamParent(v) != fn;
	return LLVMIsAInstruction(v) && LLVMGetBasicBlockParent(LLVMGetInstructionParent(v)) != fn;
}

typedef void operand_fn(LLVMValueRef inst, unsigned i, LLVMValueRef v, void *ctx);
static void each_operand(LLVMValueRef fn, operand_fn *f, void *ctx)
{
	for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(fn); bb; bb = LLVMGetNextBasicBlock(bb))
		for (LLVMValueRef in = LLVMGetFirstInstruction(bb); in; in = LLVMGetNextInstruction(in))
			for (int i = 0; i < LLVMGetNumOperands(in); i++)
				f(in, (unsigned)i, LLVMGetOperand(in, (unsigned)i), ctx);
}

typedef struct captures { LLVMValueRef fn, *v, *param; int n, cap; } captures;
static int find_capture(const captures *c, LLVMValueRef v)
{
	for (int i = c->n - 1; i >= 0; i--)   /* recent captures are the likeliest */
		if (c->v[i] == v)
			return i;
	return -1;
}
static void capture(LLVMValueRef inst, unsigned i, LLVMValueRef v, void *ctx)
{
	(void)inst, (void)i;
	captures *c = ctx;
	if (!foreign(v, c->fn) || find_capture(c, v) >= 0)
		return;
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 16;
		c->v = realloc(c->v, sizeof *c->v * (size_t)c->cap);
		if (!c->v)
			internal_error("out of memory");
	}
	c->v[c->n++] = v;
}
static void rebind(LLVMValueRef inst, unsigned i, LLVMValueRef v, void *ctx)
{
	captures *c = ctx;
	int k = foreign(v, c->fn) ? find_capture(c, v) : -1;
	if (k >= 0)
		LLVMSetOperand(inst, i, c->param[k]);
}

void cg_part_close(gen *g, cg_part *p)
{
	if (!p->ops)
		return;
	LLVMBuildRetVoid(g->b);
	captures c = { .fn = p->fn };
	each_operand(p->fn, capture, &c);
	LLVMTypeRef *ts = malloc(sizeof *ts * (size_t)(c.n + 1));
	c.param = malloc(sizeof *c.param * (size_t)(c.n + 1));
	if (!ts || !c.param)
		internal_error("out of memory");
	for (int i = 0; i < c.n; i++)
		ts[i] = LLVMTypeOf(c.v[i]);
	char name[64];
	snprintf(name, sizeof name, "%s.part", LLVMGetValueName(p->outer_fn));
	LLVMValueRef fn = LLVMAddFunction(g->mod, name, LLVMFunctionType(LLVMVoidTypeInContext(g->c), ts, (unsigned)c.n, 0));
	LLVMSetLinkage(fn, LLVMInternalLinkage);
	/* inlined back, it would make the kernel whole again */
	LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
		LLVMCreateEnumAttribute(g->c, LLVMGetEnumAttributeKindForName("noinline", 8), 0));
	for (size_t i = 0; i < sizeof wide_attrs / sizeof *wide_attrs; i++) {
		const char *k = wide_attrs[i][0];
		LLVMAttributeRef a = LLVMGetStringAttributeAtIndex(p->outer_fn, LLVMAttributeFunctionIndex, k, (unsigned)strlen(k));
		if (a)
			LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, a);
	}
	for (int i = 0; i < c.n; i++)
		c.param[i] = LLVMGetParam(fn, (unsigned)i);
	for (LLVMBasicBlockRef bb; (bb = LLVMGetFirstBasicBlock(p->fn));) {
		LLVMRemoveBasicBlockFromParent(bb);
		LLVMAppendExistingBasicBlock(fn, bb);
	}
	c.fn = fn;
	each_operand(fn, rebind, &c);
	LLVMDeleteFunction(p->fn);

	g->fn = p->outer_fn;
	g->entry = p->outer_entry;
	LLVMPositionBuilderAtEnd(g->b, p->outer_at);
	LLVMBuildCall2(g->b, LLVMGlobalGetValueType(fn), fn, c.v, (unsigned)c.n, "");
	free(ts);
	free(c.param);
	free(c.v);
	*p = (cg_part){ 0 };
}

/* ---- shared pieces of the kernels ---- */

/* The forward pass in double precision: every value's pre-activation goes
 * to the workspace; z and logits, when given, receive float copies. */
void cg_forward(gen *g, LLVMValueRef P, LLVMValueRef x, LLVMValueRef xlo, LLVMValueRef ws, LLVMValueRef z,
                LLVMValueRef logits)
{
	const ir_module *m = g->m;
	loop l;
	LLVMValueRef d = loop_begin(g, &l, ci(g, 0), ci(g, m->n_in));
	LLVMValueRef xd = ext(g, load(g, g->f32, x, d));
	if (xlo) {   /* the input as given: x + xlo, when xlo is not NULL */
		LLVMValueRef has = LLVMBuildIsNotNull(g->b, xlo, "");
		LLVMValueRef lo = ext(g, load(g, g->f32, LLVMBuildSelect(g->b, has, xlo, x, ""), d));
		xd = LLVMBuildFAdd(g->b, xd, LLVMBuildSelect(g->b, has, lo, cd(g, 0), ""), "");
	}
	LLVMValueRef xv = LLVMBuildFSub(g->b, xd, cd(g, m->mean), "");
	store(g, LLVMBuildFDiv(g->b, xv, cd(g, m->std), ""), val_ptr(g, ws, 0), d);
	loop_end(g, &l);

	cg_part part = { 0 };
	for (int k = 0; k < m->n_ops; k++) {
		cg_part_step(g, &part);
		const ir_op *op = &m->ops[k];
		cg_ops[op->kind]->apply(g, op, P, ws, READ_VALUE, true, val_ptr(g, ws, k + 1));
		LLVMValueRef dst = op->relu ? z : k == m->n_ops - 1 ? logits : NULL;
		if (!dst)
			continue;
		LLVMValueRef j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
		store(g, trunc32(g, load(g, g->f64, val_ptr(g, ws, k + 1), j)), dst, op->relu ? add(g, ci(g, op->z_off), j) : j);
		loop_end(g, &l);
	}
	cg_part_close(g, &part);
}

/* The active list of hidden op k: indices of its units with z > 0, in
 * increasing order, and their count; the inactive units fill the rest of
 * the list, from its end (inactive_list).  One pass without branches: each
 * unit is stored at the next place of its side.  z is read from `z` (float,
 * indexed by neuron) when given, else from the op's pre-activations in ws. */
static void emit_active(gen *g, LLVMValueRef ws, LLVMValueRef z, int k)
{
	const ir_op *op = &g->m->ops[k];
	LLVMValueRef act = at(g, g->f32, ws, ci(g, g->act_off[k]));
	LLVMValueRef n = var(g, g->i64, ci(g, 0)), off = var(g, g->i64, ci(g, op->out_size - 1));
	loop l;
	LLVMValueRef a = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
	LLVMValueRef on = z ? LLVMBuildFCmp(g->b, LLVMRealOGT, load(g, g->f32, z, add(g, ci(g, op->z_off), a)), LLVMConstReal(g->f32, 0), "")
	                    : LLVMBuildFCmp(g->b, LLVMRealOGT, load(g, g->f64, val_ptr(g, ws, k + 1), a), cd(g, 0), "");
	LLVMValueRef i = get(g, g->i64, n), o = get(g, g->i64, off);
	store(g, LLVMBuildTrunc(g->b, a, g->i32, ""), act, LLVMBuildSelect(g->b, on, i, o, ""));
	LLVMValueRef one = LLVMBuildZExt(g->b, on, g->i64, "");
	set(g, n, add(g, i, one));
	set(g, off, LLVMBuildSub(g->b, add(g, o, one), ci(g, 1), ""));
	loop_end(g, &l);
	store(g, LLVMBuildTrunc(g->b, get(g, g->i64, n), g->i32, ""), ws, ci(g, g->cnt_off[k]));
}
void cg_active_lists(gen *g, LLVMValueRef ws, LLVMValueRef z)
{
	cg_part part = { 0 };
	for (int k = 0; k < g->m->n_ops; k++)
		if (g->m->ops[k].relu) {
			cg_part_step(g, &part);
			emit_active(g, ws, z, k);
		}
	cg_part_close(g, &part);
}

/* Where each value's gradient rows are (normalized units): the identity
 * for the input, the weights for a dense layer reading it, else the
 * workspace.  A NULL rows[v] is filled in; the grads kernel presets the
 * hidden values' rows to its output G. */
void cg_row_places(gen *g, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef *rows)
{
	const ir_module *m = g->m;
	if (g->sampled)
		rows[0] = at(g, g->f32, ws, ci(g, g->samp_off));
	else if (g->id_off >= 0)
		rows[0] = at(g, g->f32, ws, ci(g, g->id_off));
	for (int k = 0; k < m->n_ops; k++) {
		if (rows[k + 1])
			continue;
		const ir_op *op = &m->ops[k];
		rows[k + 1] = cg_rows_are_weights(g, op) ? at(g, g->f32, P, ci(g, op->w_off)) : at(g, g->f32, ws, ci(g, g->jac_off[k]));
	}
}

/* Every value's gradient rows, tangents pushed through the masked network
 * op by op; after each op, `hook` sees its rows.  With `scale` (the grads
 * kernel's raw units) the input's rows are I / std, and a dense layer
 * reading it gets W / std copied to its place. */
void cg_compute_rows(gen *g, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef *rows, bool scale, row_hook *hook, void *ctx)
{
	const ir_module *m = g->m;
	int64_t D = m->n_in;
	g->in_scale = (float)(scale ? 1.0 / m->std : 1.0);
	LLVMValueRef one = LLVMConstReal(g->f32, g->in_scale);
	cg_row_places(g, P, ws, rows);
	if (g->sampled) {   /* row axes[k] of the input is sqrt(D / K) e_k */
		emit_zero(g, rows[0], D * g->R);
		loop l;
		LLVMValueRef k = loop_begin(g, &l, ci(g, 0), ci(g, m->samples));
		LLVMValueRef d = LLVMBuildSExt(g->b, load(g, g->i32, g->axes, k), g->i64, "");
		store(g, LLVMConstReal(g->f32, sqrt((double)D / m->samples)), rows[0], add(g, mul(g, d, ci(g, g->R)), k));
		loop_end(g, &l);
	} else if (g->id_off >= 0) {
		emit_zero(g, rows[0], D * D);
		loop l;
		LLVMValueRef d = loop_begin(g, &l, ci(g, 0), ci(g, D));
		store(g, one, rows[0], mul(g, d, ci(g, D + 1)));
		loop_end(g, &l);
	}
	cg_part part = { 0 };
	for (int k = 0; k < m->n_ops; k++) {
		cg_part_step(g, &part);
		const ir_op *op = &m->ops[k];
		if (!cg_rows_are_weights(g, op)) {
			LLVMValueRef src[2] = { rows[op->in[0]], op->n_in > 1 ? rows[op->in[1]] : NULL };
			cg_ops[op->kind]->rows(g, op, P, ws, src, rows[k + 1]);
		} else if (scale) {
			loop l;
			LLVMValueRef i = loop_begin(g, &l, ci(g, 0), ci(g, (int64_t)op->out_size * D));
			LLVMValueRef w = load(g, g->f32, P, add(g, ci(g, op->w_off), i));
			store(g, LLVMBuildFDiv(g->b, w, LLVMConstReal(g->f32, m->std), ""), rows[k + 1], i);
			loop_end(g, &l);
		}
		if (hook)
			hook(g, k, rows[k + 1], ctx);
	}
	cg_part_close(g, &part);
}

/* l1 norm, squared l2 norm and linf norm of n floats (row - row2), in
 * double: NACC independent sets of VW-lane vector accumulators, NACC VW
 * floats an iteration (one set's sum, square sum and max each waited on
 * the last: the loop ran at the adds' latency), then VW at a time, then a
 * scalar tail.  Explicit vectors: LLVM does not vectorise the maxnum
 * reduction by itself.  The sums' order does not matter to their error
 * bound (gamma_n either way). */
enum { NACC = 4 };
static LLVMValueRef row_vector(gen *g, LLVMValueRef row, LLVMValueRef row2, LLVMValueRef d)
{
	LLVMTypeRef vd = LLVMVectorType(g->f64, VW), vf = LLVMVectorType(g->f32, VW);
	LLVMValueRef v = LLVMBuildLoad2(g->b, vf, at(g, g->f32, row, d), "");
	LLVMSetAlignment(v, 4);
	v = LLVMBuildFPExt(g->b, v, vd, "");
	if (row2) {
		LLVMValueRef w = LLVMBuildLoad2(g->b, vf, at(g, g->f32, row2, d), "");
		LLVMSetAlignment(w, 4);
		v = LLVMBuildFSub(g->b, v, LLVMBuildFPExt(g->b, w, vd, ""), "");
	}
	return v;
}
static void norm_terms(gen *g, LLVMValueRef *s, LLVMValueRef v)
{
	LLVMTypeRef vd = LLVMTypeOf(v);
	LLVMValueRef av = fabsv(g, v);
	set(g, s[0], LLVMBuildFAdd(g->b, get(g, vd, s[0]), av, ""));
	set(g, s[1], intrinsic_n(g, "llvm.fmuladd", vd, (LLVMValueRef[]){ v, v, get(g, vd, s[1]) }, 3));
	set(g, s[2], fmaxv(g, get(g, vd, s[2]), av));
}
void cg_norms(gen *g, LLVMValueRef row, LLVMValueRef row2, int64_t n, LLVMValueRef out[3])
{
	LLVMTypeRef vd = LLVMVectorType(g->f64, VW);
	LLVMValueRef s[NACC][3], zero = LLVMConstNull(vd);
	for (int a = 0; a < NACC; a++)
		for (int i = 0; i < 3; i++)
			s[a][i] = var(g, vd, zero);
	int64_t nu = n & ~(int64_t)(NACC * VW - 1), nv = n & ~(int64_t)(VW - 1);
	loop l;
	LLVMValueRef d = loop_begin_step(g, &l, ci(g, 0), ci(g, nu), NACC * VW);
	for (int a = 0; a < NACC; a++)
		norm_terms(g, s[a], row_vector(g, row, row2, add(g, d, ci(g, a * VW))));
	loop_end(g, &l);
	d = loop_begin_step(g, &l, ci(g, nu), ci(g, nv), VW);
	norm_terms(g, s[0], row_vector(g, row, row2, d));
	loop_end(g, &l);
	for (int a = 1; a < NACC; a++) {
		set(g, s[0][0], LLVMBuildFAdd(g->b, get(g, vd, s[0][0]), get(g, vd, s[a][0]), ""));
		set(g, s[0][1], LLVMBuildFAdd(g->b, get(g, vd, s[0][1]), get(g, vd, s[a][1]), ""));
		set(g, s[0][2], fmaxv(g, get(g, vd, s[0][2]), get(g, vd, s[a][2])));
	}
	LLVMValueRef s1 = var(g, g->f64, fast(intrinsic_n(g, "llvm.vector.reduce.fadd", vd,
	                                                  (LLVMValueRef[]){ cd(g, 0), get(g, vd, s[0][0]) }, 2)));
	LLVMValueRef s2 = var(g, g->f64, fast(intrinsic_n(g, "llvm.vector.reduce.fadd", vd,
	                                                  (LLVMValueRef[]){ cd(g, 0), get(g, vd, s[0][1]) }, 2)));
	LLVMValueRef mx = var(g, g->f64, intrinsic_n(g, "llvm.vector.reduce.fmax", vd, (LLVMValueRef[]){ get(g, vd, s[0][2]) }, 1));
	if (nv < n) {
		d = loop_begin(g, &l, ci(g, nv), ci(g, n));
		LLVMValueRef x = ext(g, load(g, g->f32, row, d));
		if (row2)
			x = LLVMBuildFSub(g->b, x, ext(g, load(g, g->f32, row2, d)), "");
		LLVMValueRef ax = fabsv(g, x);
		set(g, s1, LLVMBuildFAdd(g->b, get(g, g->f64, s1), ax, ""));
		set(g, s2, LLVMBuildFAdd(g->b, get(g, g->f64, s2), LLVMBuildFMul(g->b, x, x, ""), ""));
		set(g, mx, fmaxv(g, get(g, g->f64, mx), ax));
		loop_end(g, &l);
	}
	out[0] = get(g, g->f64, s1);
	out[1] = get(g, g->f64, s2);
	out[2] = get(g, g->f64, mx);
}

/* The dual norm ||g||_q of an l_p ball from the three sums. */
LLVMValueRef cg_dual(gen *g, LLVMValueRef sums[3], int p)
{
	switch (p) {
	case RT_L1: return sums[2];
	case RT_L2: return intrinsic(g, "llvm.sqrt", sums[1], NULL);
	default: return sums[0];
	}
}

/* ---- prepare, forward, grads, direction ---- */

static void emit_prepare(gen *g)
{
	static const char *names[] = { "P", "pre" };
	cg_begin_function(g, "lln_prepare", 2, names, 0);
	cg_wide_vectors(g);
	const ir_module *m = g->m;
	LLVMValueRef P = cg_param(g, 0), pre_all = cg_param(g, 1);
	cg_part part = { 0 };
	for (int k = 0; k < m->n_ops; k++) {
		cg_part_step(g, &part);
		const ir_op *op = &m->ops[k];
		if (g->pre_off[k] < 0)
			continue;
		LLVMValueRef pre = at(g, g->f32, pre_all, ci(g, g->pre_off[k]));
		loop l;
		LLVMValueRef j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
		LLVMValueRef row = at(g, g->f32, P, add(g, ci(g, op->w_off), mul(g, j, ci(g, m->n_in))));
		LLVMValueRef sums[3];
		cg_norms(g, row, NULL, m->n_in, sums);
		for (int p = 0; p < RT_NNORMS; p++)
			store(g, cg_dual(g, sums, p), pre, add(g, ci(g, (int64_t)p * op->out_size), j));
		loop_end(g, &l);
	}
	cg_part_close(g, &part);
	if (m->dense_chain)
		cg_gram_prepare(g, P, pre_all, ci(g, 0), ci(g, 1), true);
	LLVMBuildRetVoid(g->b);
}

static void emit_forward_fn(gen *g)
{
	static const char *names[] = { "P", "x", "ws", "z", "logits" };
	cg_begin_function(g, "lln_forward", 5, names, 0);
	cg_forward(g, cg_param(g, 0), cg_param(g, 1), NULL, cg_param(g, 2), cg_param(g, 3), cg_param(g, 4));
	LLVMBuildRetVoid(g->b);
}

/* Hidden values' rows go straight to G (raw units); the others' to ws. */
static void emit_grads(gen *g)
{
	static const char *names[] = { "P", "z", "G", "ws" };
	cg_begin_function(g, "lln_grads", 4, names, 0);
	const ir_module *m = g->m;
	LLVMValueRef ws = cg_param(g, 3);
	cg_active_lists(g, ws, cg_param(g, 1));
	LLVMValueRef *rows = calloc((size_t)m->n_ops + 1, sizeof *rows);
	for (int k = 0; k < m->n_ops; k++)
		if (m->ops[k].relu)
			rows[k + 1] = at(g, g->f32, cg_param(g, 2), mul(g, ci(g, m->ops[k].z_off), ci(g, m->n_in)));
		else if (cg_rows_are_weights(g, &m->ops[k]))
			rows[k + 1] = at(g, g->f32, ws, ci(g, g->jac_off[k]));
	cg_compute_rows(g, cg_param(g, 0), ws, rows, true, NULL, NULL);
	free(rows);
	LLVMBuildRetVoid(g->b);
}

/* One tangent pass: d (raw units) through the masked network; a hidden
 * neuron leaves the region where its z, moving at rate g.d, reaches 0.  As
 * in certify (cg_certify.c), z and the rates carry rounding-error bounds:
 * a neuron may leave as soon as its rate can point toward 0 at all, at the
 * fastest rate the bound allows, from the nearest z the bound allows. */
static void emit_direction(gen *g)
{
	static const char *names[] = { "P", "x", "d", "ws", "t", "bind", "xlo" };
	cg_begin_function(g, "lln_direction", 7, names, 0);
	const ir_module *m = g->m;
	LLVMValueRef P = cg_param(g, 0), dir = cg_param(g, 2), ws = cg_param(g, 3);
	cg_forward(g, P, cg_param(g, 1), cg_param(g, 6), ws, NULL, NULL);
	cg_forward_bounds(g, P, ws, cg_param(g, 1), cg_param(g, 6));
	LLVMValueRef first, undecided = cg_undecided(g, ws, &first);
	LLVMValueRef best = var(g, g->f64, cd(g, INFINITY)), bind = var(g, g->i32, ci32(g, -1));
	LLVMBasicBlockRef sure = block(g, "decided"), unsure = block(g, "undecided"), done = block(g, "done");
	LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, undecided, ci32(g, 0), ""), sure, unsure);
	LLVMPositionBuilderAtEnd(g->b, unsure);
	set(g, best, cd(g, 0));
	set(g, bind, first);
	LLVMBuildBr(g->b, done);
	LLVMPositionBuilderAtEnd(g->b, sure);

	/* tangent of the input: d / std, within 3u of it */
	loop l;
	LLVMValueRef d = loop_begin(g, &l, ci(g, 0), ci(g, m->n_in));
	LLVMValueRef t0 = LLVMBuildFDiv(g->b, ext(g, load(g, g->f32, dir, d)), cd(g, m->std), "");
	store(g, t0, tan_ptr(g, ws, 0), d);
	store(g, LLVMBuildFMul(g->b, fabsv(g, t0), cd(g, 0x1p-51), ""), at(g, g->f32, ws, ci(g, g->err_off[0])), d);
	loop_end(g, &l);
	LLVMValueRef tmp = at(g, g->f32, ws, ci(g, g->tmp_off)), zl = at(g, g->f32, ws, ci(g, g->zl_off));
	cg_part part = { 0 };
	for (int k = 0; k < m->n_ops - 1; k++) {   /* logits do not bound the region */
		cg_part_step(g, &part);
		const ir_op *op = &m->ops[k];
		LLVMValueRef et = at(g, g->f32, ws, ci(g, g->err_off[k + 1]));
		cg_ops[op->kind]->apply(g, op, P, ws, READ_TANGENT, false, tan_ptr(g, ws, k + 1));
		g->bound_off = g->err_off;
		g->bound_base_off = NULL;
		cg_ops[op->kind]->apply(g, op, P, ws, READ_BOUND, false, et);
		cg_ops[op->kind]->apply(g, op, P, ws, READ_ABSTAN, false, tmp);
		LLVMValueRef j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
		double gk = cg_gamma(op_taps(op));
		LLVMValueRef e = LLVMBuildFAdd(g->b, LLVMBuildFMul(g->b, load(g, g->f64, tmp, j), cd(g, gk), ""),
		                               load(g, g->f64, et, j), "");
		e = LLVMBuildFMul(g->b, e, cd(g, 1 + 2 * gk), "");
		store(g, e, et, j);
		if (op->relu) {
			/* an active neuron leaves when its z falls, an inactive one when it rises */
			LLVMValueRef gd = load(g, g->f64, tan_ptr(g, ws, k + 1), j);
			LLVMValueRef on = unit_on(g, ws, k + 1, j);
			LLVMValueRef rate = LLVMBuildSelect(g->b, on, LLVMBuildFSub(g->b, e, gd, ""), LLVMBuildFAdd(g->b, gd, e, ""), "");
			LLVMBasicBlockRef cross = if_begin(g, LLVMBuildFCmp(g->b, LLVMRealOGT, rate, cd(g, 0), ""));
			LLVMValueRef h = add(g, ci(g, op->z_off), j);
			LLVMValueRef tt = LLVMBuildFDiv(g->b, load(g, g->f64, zl, h), rate, "");
			tt = LLVMBuildFMul(g->b, tt, cd(g, 1 - 0x1p-50), "");
			LLVMBasicBlockRef better = if_begin(g, LLVMBuildFCmp(g->b, LLVMRealOLT, tt, get(g, g->f64, best), ""));
			set(g, best, tt);
			set(g, bind, LLVMBuildTrunc(g->b, h, g->i32, ""));
			if_end(g, better);
			if_end(g, cross);
		}
		loop_end(g, &l);
	}
	cg_part_close(g, &part);
	LLVMBuildBr(g->b, done);
	LLVMPositionBuilderAtEnd(g->b, done);
	store(g, cg_trunc_down(g, get(g, g->f64, best)), cg_param(g, 4), ci(g, 0));
	store(g, get(g, g->i32, bind), cg_param(g, 5), ci(g, 0));
	LLVMBuildRetVoid(g->b);
}

/* Zeroes the adjoints (the tangent areas of ws) of values first..n_ops. */
static void zero_adjoints(gen *g, LLVMValueRef ws, int first)
{
	const ir_module *m = g->m;
	cg_part part = { 0 };
	for (int v = first; v <= m->n_ops; v++) {
		cg_part_step(g, &part);
		loop l;
		LLVMValueRef i = loop_begin(g, &l, ci(g, 0), ci(g, value_size(m, v)));
		store(g, cd(g, 0), tan_ptr(g, ws, v), i);
		loop_end(g, &l);
	}
	cg_part_close(g, &part);
}

/* The gradient of logit k with respect to the raw input, in double: the
 * forward pass, then e_k back through the masked network to the input. */
static void emit_input_grad(gen *g)
{
	static const char *names[] = { "P", "x", "k", "ws", "g" };
	cg_begin_function(g, "lln_input_grad", 5, names, 1u << 2);
	const ir_module *m = g->m;
	LLVMValueRef P = cg_param(g, 0), ws = cg_param(g, 3), out = cg_param(g, 4);
	cg_forward(g, P, cg_param(g, 1), NULL, ws, NULL, NULL);
	zero_adjoints(g, ws, 0);
	cg_part part = { 0 };
	store(g, cd(g, 1), tan_ptr(g, ws, m->n_ops), LLVMBuildSExt(g->b, cg_param(g, 2), g->i64, ""));
	for (int k = m->n_ops - 1; k >= 0; k--) {
		cg_part_step(g, &part);
		const ir_op *op = &m->ops[k];
		LLVMValueRef delta = tan_ptr(g, ws, k + 1);
		if (op->relu) {
			loop l;
			LLVMValueRef j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
			store(g, LLVMBuildSelect(g->b, unit_on(g, ws, k + 1, j), load(g, g->f64, delta, j), cd(g, 0), ""), delta, j);
			loop_end(g, &l);
		}
		cg_ops[op->kind]->transpose(g, op, P, ws, delta, g->tan_off, false, true);
	}
	cg_part_close(g, &part);
	loop l;
	LLVMValueRef d = loop_begin(g, &l, ci(g, 0), ci(g, m->n_in));
	store(g, LLVMBuildFDiv(g->b, load(g, g->f64, tan_ptr(g, ws, 0), d), cd(g, m->std), ""), out, d);
	loop_end(g, &l);
	LLVMBuildRetVoid(g->b);
}

/* ---- training ----
 * train_forward gives sq = ||row||^2 of every hidden neuron (normalized
 * units): by the Gram recurrence for dense chains, else from the rows.
 * train_backward adds the gradient of dsq . sq through the adjoint of
 * whichever computed it, then back-propagates dlogits and dz. */

static void sq_rows(gen *g, int k, LLVMValueRef rows, void *ctx)
{
	const ir_op *op = &g->m->ops[k];
	if (!op->relu)
		return;
	LLVMValueRef sums[3];
	loop l;
	LLVMValueRef j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
	cg_norms(g, row_at(g, rows, j), NULL, g->R, sums);
	store(g, trunc32(g, sums[1]), ctx, add(g, ci(g, op->z_off), j));
	loop_end(g, &l);
}

/* Approximate ROLL's training kernels push the tangents of the sampled
 * axes (g->R, cg.h), whose indices are `axes` in train_forward; off
 * returns to all of them. */
static void sampled_rows(gen *g, bool on, LLVMValueRef axes)
{
	g->sampled = on && g->m->samples > 0;
	g->axes = g->sampled ? axes : NULL;
	g->R = g->sampled ? pad8(g->m->samples) : g->m->n_in;
}

/* A call of another kernel of the module (its code is emitted once). */
static void call_kernel(gen *g, LLVMValueRef fn, LLVMValueRef *args, unsigned n)
{
	LLVMBuildCall2(g->b, LLVMGlobalGetValueType(fn), fn, args, n, "");
}

static void emit_train_forward(gen *g)
{
	static const char *names[] = { "P", "pre", "x", "need_sq", "ws", "z", "logits", "sq", "axes" };
	cg_begin_function(g, "lln_train_forward", 9, names, 1u << 3);
	LLVMValueRef ws = cg_param(g, 4);
	cg_forward(g, cg_param(g, 0), cg_param(g, 2), NULL, ws, cg_param(g, 5), cg_param(g, 6));
	cg_active_lists(g, ws, NULL);
	LLVMBasicBlockRef done = if_begin(g, LLVMBuildICmp(g->b, LLVMIntNE, cg_param(g, 3), ci32(g, 0), ""));
	sampled_rows(g, true, cg_param(g, 8));
	if (g->gram_fn && !g->sampled) {
		call_kernel(g, g->gram_fn, (LLVMValueRef[]){ cg_param(g, 0), cg_param(g, 1), cg_param(g, 5), ws, cg_param(g, 7) }, 5);
	} else if (g->m->dense_chain && !g->sampled) {
		cg_gram_forward(g, cg_param(g, 0), cg_param(g, 1), ws, cg_param(g, 7), false);
	} else {
		LLVMValueRef *rows = calloc((size_t)g->m->n_ops + 1, sizeof *rows);
		cg_compute_rows(g, cg_param(g, 0), ws, rows, false, sq_rows, cg_param(g, 7));
		free(rows);
	}
	sampled_rows(g, false, NULL);
	if_end(g, done);
	LLVMBuildRetVoid(g->b);
}

/* The adjoint of the rows: Rbar_h = 2 dsq_h R_h for hidden neurons, plus
 * what each consumer sends back, operations in reverse order. */
static void emit_rows_backward(gen *g, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef dsq, LLVMValueRef grad)
{
	const ir_module *m = g->m;
	int64_t D = g->R;
	LLVMValueRef *rows = calloc((size_t)m->n_ops + 1, sizeof *rows);
	cg_row_places(g, P, ws, rows);
	cg_part part = { 0 };
	for (int k = 0; k < m->n_ops; k++) {
		cg_part_step(g, &part);
		emit_zero(g, at(g, g->f32, ws, ci(g, g->rbar_off[k])), (int64_t)m->ops[k].out_size * D);
	}
	cg_part_close(g, &part);
	for (int k = m->n_ops - 1; k >= 0; k--) {
		cg_part_step(g, &part);
		const ir_op *op = &m->ops[k];
		LLVMValueRef dbar = at(g, g->f32, ws, ci(g, g->rbar_off[k]));
		if (op->relu) {
			loop l;
			LLVMValueRef j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
			LLVMValueRef c = LLVMBuildFMul(g->b, LLVMConstReal(g->f32, 2), load(g, g->f32, dsq, add(g, ci(g, op->z_off), j)), "");
			emit_axpy(g, at(g, g->f32, dbar, mul(g, j, ci(g, D))), c, at(g, g->f32, rows[k + 1], mul(g, j, ci(g, D))), ci(g, D));
			loop_end(g, &l);
		}
		LLVMValueRef src[2] = { NULL, NULL }, sbar[2] = { NULL, NULL };
		for (int i = 0; i < op->n_in; i++) {
			src[i] = rows[op->in[i]];
			if (op->in[i] > 0)
				sbar[i] = at(g, g->f32, ws, ci(g, g->rbar_off[op->in[i] - 1]));
		}
		cg_ops[op->kind]->rows_adjoint(g, op, P, ws, src, dbar, sbar, grad);
	}
	cg_part_close(g, &part);
	free(rows);
}

/* Back-propagation of dlogits and dz through the forward pass, masks fixed;
 * the adjoints of the values are kept in the tangent area of ws. */
static void emit_backprop(gen *g, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef dlogits, LLVMValueRef dz, LLVMValueRef grad)
{
	const ir_module *m = g->m;
	zero_adjoints(g, ws, 1);
	cg_part part = { 0 };
	LLVMValueRef has_dz = LLVMBuildIsNotNull(g->b, dz, "");
	for (int k = m->n_ops - 1; k >= 0; k--) {
		cg_part_step(g, &part);
		const ir_op *op = &m->ops[k];
		LLVMValueRef delta = tan_ptr(g, ws, k + 1);
		loop lr;
		LLVMValueRef r = loop_begin(g, &lr, ci(g, 0), ci(g, op->out_size));
		LLVMValueRef d = load(g, g->f64, delta, r);
		if (k == m->n_ops - 1) {
			d = ext(g, load(g, g->f32, dlogits, r));
		} else if (op->relu) {
			d = LLVMBuildSelect(g->b, unit_on(g, ws, k + 1, r), d, cd(g, 0), "");
			LLVMValueRef zi = add(g, ci(g, op->z_off), r);
			/* dz may be NULL: select a safe address, then the value */
			LLVMValueRef safe = LLVMBuildSelect(g->b, has_dz, dz, dlogits, "");
			LLVMValueRef dzv = ext(g, load(g, g->f32, safe, LLVMBuildSelect(g->b, has_dz, zi, ci(g, 0), "")));
			d = LLVMBuildFAdd(g->b, d, LLVMBuildSelect(g->b, has_dz, dzv, cd(g, 0), ""), "");
		}
		store(g, d, delta, r);
		loop_end(g, &lr);
		cg_ops[op->kind]->param_grad(g, op, P, ws, delta, grad);
		cg_ops[op->kind]->transpose(g, op, P, ws, delta, g->tan_off, false, false);
	}
	cg_part_close(g, &part);
}

static void emit_train_backward(gen *g)
{
	static const char *names[] = { "P", "pre", "ws", "dlogits", "dz", "dsq", "grad" };
	cg_begin_function(g, "lln_train_backward", 7, names, 0);
	LLVMValueRef ws = cg_param(g, 2), dsq = cg_param(g, 5), grad = cg_param(g, 6);
	LLVMBasicBlockRef done = if_begin(g, LLVMBuildIsNotNull(g->b, dsq, ""));
	sampled_rows(g, true, NULL);
	if (g->gram_bw_fn && !g->sampled)
		call_kernel(g, g->gram_bw_fn, (LLVMValueRef[]){ cg_param(g, 1), ws, dsq, grad }, 4);
	else if (g->m->dense_chain && !g->sampled)
		cg_gram_backward(g, cg_param(g, 1), ws, dsq, grad);
	else
		emit_rows_backward(g, cg_param(g, 0), ws, dsq, grad);
	sampled_rows(g, false, NULL);
	if_end(g, done);
	emit_backprop(g, cg_param(g, 0), ws, cg_param(g, 3), cg_param(g, 4), grad);
	LLVMBuildRetVoid(g->b);
}


/* The Gram part of train_forward and train_backward alone, for the batched
 * path of objectives that need sq: the masks come from z, which the batched
 * forward kernel computed, and the batched kernels back-propagate dlogits
 * and dz. */
static void emit_train_gram(gen *g)
{
	static const char *names[] = { "P", "pre", "z", "ws", "sq" };
	cg_begin_function(g, "lln_train_gram", 5, names, 0);
	cg_wide_vectors(g);
	no_inline(g);
	LLVMValueRef ws = cg_param(g, 3);
	cg_active_lists(g, ws, cg_param(g, 2));
	g->gram_wide = true;
	cg_gram_forward(g, cg_param(g, 0), cg_param(g, 1), ws, cg_param(g, 4), false);
	g->gram_wide = false;
	LLVMBuildRetVoid(g->b);
}

static void emit_train_gram_backward(gen *g)
{
	static const char *names[] = { "pre", "ws", "dsq", "grad" };
	cg_begin_function(g, "lln_train_gram_backward", 4, names, 0);
	cg_wide_vectors(g);
	no_inline(g);
	g->gram_wide = true;
	cg_gram_backward(g, cg_param(g, 0), cg_param(g, 1), cg_param(g, 2), cg_param(g, 3));
	g->gram_wide = false;
	LLVMBuildRetVoid(g->b);
}

/* part and parts as i64 values */
static LLVMValueRef int_param(gen *g, int i) { return LLVMBuildSExt(g->b, cg_param(g, i), g->i64, ""); }

static void emit_train_finish(gen *g)
{
	static const char *names[] = { "P", "grad", "part", "parts" };
	cg_begin_function(g, "lln_train_finish", 4, names, 1u << 2 | 1u << 3);
	cg_wide_vectors(g);
	if (g->m->dense_chain && !g->m->samples)
		cg_gram_finish(g, cg_param(g, 0), cg_param(g, 1), int_param(g, 2), int_param(g, 3));
	LLVMBuildRetVoid(g->b);
}

/* What training reads of prepare (W W^T, in float) and W^T W, by shares,
 * every step. */
static void emit_train_prepare(gen *g)
{
	static const char *names[] = { "P", "pre", "part", "parts" };
	cg_begin_function(g, "lln_train_prepare", 4, names, 1u << 2 | 1u << 3);
	cg_wide_vectors(g);
	cg_gram_prepare(g, cg_param(g, 0), cg_param(g, 1), int_param(g, 2), int_param(g, 3), false);
	LLVMBuildRetVoid(g->b);
}

/* ---- the lln_model descriptor ---- */

static LLVMValueRef cstring(gen *g, const char *s)
{
	LLVMValueRef init = LLVMConstStringInContext2(g->c, s, strlen(s), 0);
	LLVMValueRef gv = LLVMAddGlobal(g->mod, LLVMTypeOf(init), ".str");
	LLVMSetInitializer(gv, init);
	LLVMSetGlobalConstant(gv, 1);
	LLVMSetLinkage(gv, LLVMPrivateLinkage);
	LLVMSetUnnamedAddress(gv, LLVMGlobalUnnamedAddr);
	return gv;
}

static LLVMValueRef const_global(gen *g, const char *name, LLVMValueRef init, bool external)
{
	LLVMValueRef gv = LLVMAddGlobal(g->mod, LLVMTypeOf(init), name);
	LLVMSetInitializer(gv, init);
	LLVMSetGlobalConstant(gv, 1);
	LLVMSetLinkage(gv, external ? LLVMExternalLinkage : LLVMPrivateLinkage);
	return gv;
}

static void emit_descriptor(gen *g, LLVMValueRef fns[18], int64_t batch_ws, int64_t tangent_ws)
{
	const ir_module *m = g->m;
	LLVMTypeRef layer_t = LLVMStructTypeInContext(g->c, (LLVMTypeRef[]){ g->ptr, g->i32, g->i32, g->i32, g->i32, g->i32 }, 6, 0);
	LLVMTypeRef shape_t = LLVMArrayType2(g->i32, 4);
	LLVMTypeRef tensor_t = LLVMStructTypeInContext(g->c,
		(LLVMTypeRef[]){ g->ptr, g->i32, shape_t, g->i64, g->i64, g->i32, g->i32 }, 7, 0);

	LLVMValueRef *layers = calloc((size_t)m->n_layers + 1, sizeof *layers);
	for (int i = 0; i < m->n_layers; i++)
		layers[i] = LLVMConstNamedStruct(layer_t, (LLVMValueRef[]){ cstring(g, m->layers[i].name),
			ci32(g, m->layers[i].size), ci32(g, m->layers[i].offset), ci32(g, m->layers[i].c),
			ci32(g, m->layers[i].h), ci32(g, m->layers[i].w) }, 6);
	LLVMValueRef *tensors = calloc((size_t)m->n_tensors, sizeof *tensors);
	for (int i = 0; i < m->n_tensors; i++) {
		const rt_tensor *t = &m->tensors[i];
		LLVMValueRef dims[4];
		for (int d = 0; d < 4; d++)
			dims[d] = ci32(g, t->shape[d]);
		tensors[i] = LLVMConstNamedStruct(tensor_t, (LLVMValueRef[]){ cstring(g, t->name), ci32(g, t->rank),
			LLVMConstArray2(g->i32, dims, 4), ci(g, t->offset), ci(g, t->count), ci32(g, t->fan_in),
			ci32(g, t->is_bias) }, 7);
	}
	LLVMValueRef lg = const_global(g, "lln_layers", LLVMConstArray2(layer_t, layers, (uint64_t)m->n_layers), false);
	LLVMValueRef tg = const_global(g, "lln_tensors", LLVMConstArray2(tensor_t, tensors, (uint64_t)m->n_tensors), false);
	free(layers);
	free(tensors);

	LLVMValueRef fields[] = {
		ci32(g, RT_ABI_VERSION), cstring(g, m->name), ci32(g, m->n_in), ci32(g, m->n_out),
		ci32(g, m->n_hidden), ci32(g, m->n_layers), ci32(g, m->n_tensors), ci32(g, m->samples),
		ci32(g, m->max_len), ci32(g, m->max_len ? m->n_in / m->max_len : 0),
		ci(g, m->n_params), ci(g, g->ws_floats), ci(g, g->pre_floats), ci(g, g->grad_floats),
		ci(g, cg_rows_are_weights(g, &m->ops[m->n_ops - 1]) ? -1 : g->jac_off[m->n_ops - 1]),
		cd(g, m->mean), cd(g, m->std), lg, tg,
		fns[0], fns[1], fns[2], fns[3], fns[4], fns[5], fns[6], fns[7], fns[8],
		ci(g, batch_ws), ci32(g, batch_ws ? CG_BATCH : 0), fns[9], fns[10], fns[11], fns[12], fns[13], fns[14],
		ci(g, tangent_ws), fns[15], fns[16], fns[17],
	};
	LLVMTypeRef ft[sizeof fields / sizeof *fields];
	for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
		ft[i] = LLVMTypeOf(fields[i]);
	LLVMTypeRef model_t = LLVMStructTypeInContext(g->c, ft, sizeof fields / sizeof *fields, 0);
	const_global(g, "lln_model", LLVMConstNamedStruct(model_t, fields, sizeof fields / sizeof *fields), true);
}

/* ---- target and optimization ---- */

LLVMTargetMachineRef cg_target_machine(const char *cpu, int opt, char *err)
{
	LLVMInitializeNativeTarget();
	LLVMInitializeNativeAsmPrinter();
	char *triple = LLVMGetDefaultTargetTriple();
	LLVMTargetRef target;
	char *msg = NULL;
	if (LLVMGetTargetFromTriple(triple, &target, &msg)) {
		snprintf(err, RT_ERRLEN, "no LLVM target for %s: %s", triple, msg);
		LLVMDisposeMessage(msg);
		LLVMDisposeMessage(triple);
		return NULL;
	}
	char *host_cpu = NULL, *host_features = NULL;
	if (!cpu) {
		host_cpu = LLVMGetHostCPUName();
		host_features = LLVMGetHostCPUFeatures();
	}
	LLVMCodeGenOptLevel level = opt >= 3 ? LLVMCodeGenLevelAggressive : opt == 0 ? LLVMCodeGenLevelNone : LLVMCodeGenLevelDefault;
	LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, cpu ? cpu : host_cpu,
		host_features ? host_features : "", level, LLVMRelocPIC, LLVMCodeModelDefault);
	LLVMDisposeMessage(triple);
	LLVMDisposeMessage(host_cpu);
	LLVMDisposeMessage(host_features);
	if (!tm)
		snprintf(err, RT_ERRLEN, "cannot create a target machine for CPU '%s'", cpu ? cpu : "host");
	return tm;
}

cg_unit *cg_build(const ir_module *m, const cg_options *o, char *err)
{
	LLVMTargetMachineRef tm = cg_target_machine(o->cpu, o->opt_level, err);
	if (!tm)
		return NULL;
	cg_unit *u = calloc(1, sizeof *u);
	u->tm = tm;
	u->tsc = LLVMOrcCreateNewThreadSafeContext();
	u->ctx = LLVMOrcThreadSafeContextGetContext(u->tsc);
	u->mod = LLVMModuleCreateWithNameInContext(m->name, u->ctx);
	char *triple = LLVMGetTargetMachineTriple(tm);
	LLVMSetTarget(u->mod, triple);
	LLVMDisposeMessage(triple);
	LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
	LLVMSetModuleDataLayout(u->mod, td);
	LLVMDisposeTargetData(td);

	arena *a = arena_new();
	gen g = { .c = u->ctx, .mod = u->mod, .b = LLVMCreateBuilderInContext(u->ctx), .m = m };
	g.f32 = LLVMFloatTypeInContext(g.c);
	g.f64 = LLVMDoubleTypeInContext(g.c);
	g.i32 = LLVMInt32TypeInContext(g.c);
	g.i64 = LLVMInt64TypeInContext(g.c);
	g.i1 = LLVMInt1TypeInContext(g.c);
	g.ptr = LLVMPointerTypeInContext(g.c, 0);
	g.vf = LLVMVectorType(g.f32, VW);
	char *features = LLVMGetTargetMachineFeatureString(tm);
	g.avx512 = strstr(features, "+avx512f") != NULL;
	LLVMDisposeMessage(features);
	g.R = m->n_in;
	int group = o->ops_per_part > 0 ? o->ops_per_part : 8;
	g.group = m->n_ops > group ? group : 0;
	plan_layout(&g, a, !o->certifier);

	/* in the order of rt_model's function pointers */
	void (*emitters[])(gen *) = { emit_prepare, emit_forward_fn, emit_grads, cg_emit_certify, emit_direction,
	                              emit_input_grad, emit_train_forward, emit_train_backward, emit_train_finish };
	/* a certifier never trains: its descriptor holds NULL there, which
	 * saves about 40% of the code to optimize and emit */
	int nfns = o->certifier ? 6 : 9;
	LLVMValueRef fns[18], batch_fns[6];
	for (int i = 9; i < 18; i++)
		fns[i] = LLVMConstNull(g.ptr);
	if (!o->certifier && m->dense_chain && !m->samples) {   /* first: train_forward/backward call them */
		emit_train_gram(&g);
		fns[12] = g.gram_fn = g.fn;
		emit_train_gram_backward(&g);
		fns[13] = g.gram_bw_fn = g.fn;
		emit_train_prepare(&g);
		fns[14] = g.fn;
	}
	for (int i = 0; i < 9; i++) {
		if (i < nfns)
			emitters[i](&g);
		fns[i] = i < nfns ? g.fn : LLVMConstNull(g.ptr);
	}
	int64_t batch_ws = 0, tangent_ws = 0;
	if (!o->certifier && cg_batchable(m)) {
		cg_emit_batch(&g, batch_fns, &batch_ws, &tangent_ws);
		for (int i = 0; i < 3; i++) {
			fns[9 + i] = batch_fns[i];
			fns[15 + i] = batch_fns[3 + i];
		}
	}
	emit_descriptor(&g, fns, batch_ws, tangent_ws);
	LLVMDisposeBuilder(g.b);
	free(g.gemm_fns);
	arena_free(a);

	char *msg = NULL;
	if (LLVMVerifyModule(u->mod, LLVMReturnStatusAction, &msg)) {
		fprintf(stderr, "%s\n", msg);
		internal_error("generated LLVM IR does not verify");
	}
	LLVMDisposeMessage(msg);
	return u;
}

void cg_optimize(cg_unit *u, int opt_level)
{
	if (opt_level == 0)
		return;
	LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
	LLVMPassBuilderOptionsSetLoopVectorization(po, 1);
	LLVMPassBuilderOptionsSetSLPVectorization(po, 1);
	char pipeline[32];
	snprintf(pipeline, sizeof pipeline, "default<O%d>", opt_level);
	LLVMErrorRef e = LLVMRunPasses(u->mod, pipeline, u->tm, po);
	LLVMDisposePassBuilderOptions(po);
	if (e) {
		char *em = LLVMGetErrorMessage(e);
		fprintf(stderr, "%s\n", em);
		LLVMDisposeErrorMessage(em);
		internal_error("LLVM optimization pipeline failed");
	}
}

cg_unit *cg_generate(const ir_module *m, const cg_options *o, char *err)
{
	cg_unit *u = cg_build(m, o, err);
	if (u)
		cg_optimize(u, o->opt_level);
	return u;
}

void cg_dump(FILE *out, cg_unit *u)
{
	char *s = LLVMPrintModuleToString(u->mod);
	fputs(s, out);
	LLVMDisposeMessage(s);
}