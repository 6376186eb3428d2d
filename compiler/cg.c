/* cg.c: LLVM IR for the kernels of one model.
 *
 * Every kernel of rt_model is generated here, specialised to the model's
 * shapes: loop bounds and parameter offsets are constants, so the O3
 * pipeline can unroll and vectorise for the target CPU.  The kernels are
 *   prepare    per weight vector: norms of the first layer's gradient rows
 *              (the weights themselves) and its Gram matrix W W^T
 *   forward    pre-activations and logits, accumulated in double precision
 *   grads      every hidden neuron's input gradient, by pushing the rows of
 *              the first layer through the masked network (J^i = W^i M J^{i-1})
 *   certify    forward, then eps_1, eps_2, eps_inf with their binding neurons
 *              and the certified-prediction radius, from explicit gradient
 *              rows or, for eps_2 alone when the IR chose it, from the Gram
 *              recurrence
 *   direction  the directional margin, by one tangent pass (a JVP)
 *   train_*    squared gradient norms by the Gram recurrence, and the exact
 *              parameter gradient of any loss of (logits, z, sq) through its
 *              adjoint and back-propagation
 * The matrix products run through one register-blocked kernel (emit_gemm)
 * that gathers active units by index lists instead of copying them.
 * Inside the kernels gradients are taken with respect to the normalized
 * input; margins are converted to raw units by the scalar std at the end.
 * Finally the module gets the global `lln_model` descriptor (rt.h) and,
 * for certifiers, the weights as the global `lln_weights`.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "llnc.h"

/* ---- the builder's state and the workspace layout ---- */

typedef struct gen {
	LLVMContextRef c;
	LLVMModuleRef mod;
	LLVMBuilderRef b;
	LLVMTypeRef f32, f64, i32, i64, i1, ptr, vf;
	LLVMValueRef fn;
	LLVMBasicBlockRef entry;
	const ir_module *m;
	/* workspace offsets, in floats; doubles take two */
	int64_t *val_off;     /* value v: n(v) doubles (pre-activations for hidden ops) */
	int64_t *tan_off;     /* value v: tangent doubles, for direction */
	int64_t *act_off;     /* op k: its active list (int32) when relu */
	int64_t *jac_off;     /* op k: its gradient rows, out x n_in floats (-1: rows are W) */
	int64_t *pre_off;     /* op k: 3 x out floats of first-layer q-norms (-1: none) */
	/* training, by the Gram recurrence (see emit_train_forward) */
	int64_t *cnt_off;     /* op k: its number of active units (int32) */
	int64_t *gc_off;      /* hidden op k: Gram matrix of its active rows, out x out */
	int64_t *gbar_off;    /* hidden op k: adjoint of that matrix, out x out */
	int64_t *vc_off;      /* hidden op k with a hidden input: W over active inputs, out x in */
	int64_t *t_off;       /* ... and that times the input's Gram, out x in */
	int64_t *kpre_off;    /* first-layer hidden op k: W W^T in pre */
	int64_t *acc_off;     /* first-layer hidden op k: batch accumulator in grad */
	int64_t row_off, row2_off;  /* two scratch rows of the widest layer */
	int64_t sq_off;             /* squared gradient norms, for certify's Gram strategy */
	int64_t scratch_off[3];     /* matrices that live within one layer's step */
	int64_t ws_floats, pre_floats, grad_floats;
} gen;

static int64_t round16(int64_t n) { return (n + 15) & ~(int64_t)15; }
/* Compact matrices over active units have rows padded to a multiple of the
 * vector width, with zeros, so inner loops need no scalar tails. */
static int64_t pad8(int64_t n) { return (n + 7) & ~(int64_t)7; }

static int value_size(const ir_module *m, int v)
{
	return v == 0 ? m->n_in : m->ops[v - 1].out_size;
}

static void plan_layout(gen *g, arena *a)
{
	const ir_module *m = g->m;
	int nv = m->n_ops + 1;
	g->val_off = arena_alloc(a, sizeof(int64_t) * nv);
	g->tan_off = arena_alloc(a, sizeof(int64_t) * nv);
	g->act_off = arena_alloc(a, sizeof(int64_t) * m->n_ops);
	g->jac_off = arena_alloc(a, sizeof(int64_t) * m->n_ops);
	g->pre_off = arena_alloc(a, sizeof(int64_t) * m->n_ops);
	int64_t off = 0;
	for (int v = 0; v < nv; v++) {
		g->val_off[v] = off;
		off += round16(2 * (int64_t)value_size(m, v));
		g->tan_off[v] = off;
		off += round16(2 * (int64_t)value_size(m, v));
	}
	int64_t *tabs[] = { g->cnt_off = arena_alloc(a, sizeof(int64_t) * m->n_ops),
		g->gc_off = arena_alloc(a, sizeof(int64_t) * m->n_ops), g->gbar_off = arena_alloc(a, sizeof(int64_t) * m->n_ops),
		g->vc_off = arena_alloc(a, sizeof(int64_t) * m->n_ops), g->t_off = arena_alloc(a, sizeof(int64_t) * m->n_ops),
		g->kpre_off = arena_alloc(a, sizeof(int64_t) * m->n_ops), g->acc_off = arena_alloc(a, sizeof(int64_t) * m->n_ops),
		g->act_off, g->jac_off, g->pre_off };
	for (size_t t = 0; t < sizeof tabs / sizeof *tabs; t++)
		for (int k = 0; k < m->n_ops; k++)
			tabs[t][k] = -1;
	int64_t pre = 0, grad = m->n_params, widest = m->n_in, scratch = 0;
	for (int k = 0; k < m->n_ops; k++) {
		const ir_op *op = &m->ops[k];
		int64_t n = op->out_size, nin = op->in_size;
		widest = n > widest ? n : widest;
		if (op->in != 0) {
			g->jac_off[k] = off;
			off += round16(n * m->n_in);
		}
		if (!op->relu) {
			if (op->in != 0) {   /* the logits' V and T, for the Gram strategy */
				g->vc_off[k] = off;
				off += round16(n * pad8(nin));
				g->t_off[k] = off;
				off += round16(n * pad8(nin));
			}
			continue;
		}
		g->act_off[k] = off;
		off += round16(n);
		g->cnt_off[k] = off;
		off += 16;
		g->gc_off[k] = off;
		off += round16(n * pad8(n));
		g->gbar_off[k] = off;
		off += round16(n * pad8(n));
		if (op->in == 0) {
			g->pre_off[k] = pre;
			pre += round16(3 * n);
			g->kpre_off[k] = pre;
			pre += round16(n * n);
			g->acc_off[k] = grad;
			grad += n * n;
		} else {
			g->vc_off[k] = off;
			off += round16(n * pad8(nin));
			g->t_off[k] = off;
			off += round16(n * pad8(nin));
		}
		int64_t sc = n * pad8(nin) > nin * pad8(n) ? n * pad8(nin) : nin * pad8(n);
		scratch = sc > scratch ? sc : scratch;
	}
	for (int i = 0; i < 3; i++) {
		g->scratch_off[i] = off;
		off += round16(scratch);
	}
	g->sq_off = off;
	off += round16(m->n_hidden);
	g->row_off = off;
	g->row2_off = off + round16(widest);
	off += 2 * round16(widest);
	g->ws_floats = off;
	g->pre_floats = pre > 0 ? pre : 1;
	g->grad_floats = grad;
}

/* ---- small IR-building helpers ---- */

static LLVMValueRef ci(gen *g, int64_t v) { return LLVMConstInt(g->i64, (unsigned long long)v, 1); }
static LLVMValueRef ci32(gen *g, int32_t v) { return LLVMConstInt(g->i32, (unsigned long long)(int64_t)v, 1); }
static LLVMValueRef cd(gen *g, double v) { return LLVMConstReal(g->f64, v); }

static LLVMValueRef at(gen *g, LLVMTypeRef t, LLVMValueRef base, LLVMValueRef i)
{
	return LLVMBuildInBoundsGEP2(g->b, t, base, &i, 1, "");
}
static LLVMValueRef load(gen *g, LLVMTypeRef t, LLVMValueRef base, LLVMValueRef i)
{
	return LLVMBuildLoad2(g->b, t, at(g, t, base, i), "");
}
static void store(gen *g, LLVMValueRef v, LLVMValueRef base, LLVMValueRef i)
{
	LLVMBuildStore(g->b, v, at(g, LLVMTypeOf(v), base, i));
}
static LLVMValueRef add(gen *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWAdd(g->b, a, b, ""); }
static LLVMValueRef mul(gen *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWMul(g->b, a, b, ""); }
static LLVMValueRef ext(gen *g, LLVMValueRef f) { return LLVMBuildFPExt(g->b, f, g->f64, ""); }
static LLVMValueRef trunc32(gen *g, LLVMValueRef d) { return LLVMBuildFPTrunc(g->b, d, g->f32, ""); }

/* Reductions may be reassociated so that they vectorise; the result is
 * still deterministic for a given binary. */
static LLVMValueRef fast(LLVMValueRef v)
{
	LLVMSetFastMathFlags(v, LLVMFastMathAllowReassoc | LLVMFastMathAllowContract);
	return v;
}
static LLVMValueRef fadd(gen *g, LLVMValueRef a, LLVMValueRef b) { return fast(LLVMBuildFAdd(g->b, a, b, "")); }
static LLVMValueRef fmul(gen *g, LLVMValueRef a, LLVMValueRef b) { return fast(LLVMBuildFMul(g->b, a, b, "")); }

static LLVMValueRef intrinsic(gen *g, const char *name, LLVMValueRef x, LLVMValueRef y)
{
	unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
	LLVMTypeRef t = LLVMTypeOf(x);
	LLVMValueRef f = LLVMGetIntrinsicDeclaration(g->mod, id, &t, 1);
	LLVMTypeRef ft = LLVMIntrinsicGetType(g->c, id, &t, 1);
	LLVMValueRef args[2] = { x, y };
	return LLVMBuildCall2(g->b, ft, f, args, y ? 2 : 1, "");
}
static LLVMValueRef intrinsic_n(gen *g, const char *name, LLVMTypeRef overload, LLVMValueRef *args, unsigned n)
{
	unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
	LLVMValueRef f = LLVMGetIntrinsicDeclaration(g->mod, id, &overload, 1);
	return LLVMBuildCall2(g->b, LLVMIntrinsicGetType(g->c, id, &overload, 1), f, args, n, "");
}
static LLVMValueRef fabsv(gen *g, LLVMValueRef x) { return intrinsic(g, "llvm.fabs", x, NULL); }
static LLVMValueRef fmaxv(gen *g, LLVMValueRef x, LLVMValueRef y) { return intrinsic(g, "llvm.maxnum", x, y); }

/* Mutable scalars live in entry-block allocas; mem2reg turns them into SSA. */
static LLVMValueRef var(gen *g, LLVMTypeRef t, LLVMValueRef init)
{
	LLVMBasicBlockRef cur = LLVMGetInsertBlock(g->b);
	LLVMValueRef first = LLVMGetFirstInstruction(g->entry);
	if (first)
		LLVMPositionBuilderBefore(g->b, first);
	else
		LLVMPositionBuilderAtEnd(g->b, g->entry);
	LLVMValueRef slot = LLVMBuildAlloca(g->b, t, "");
	LLVMPositionBuilderAtEnd(g->b, cur);
	LLVMBuildStore(g->b, init, slot);
	return slot;
}
static LLVMValueRef get(gen *g, LLVMTypeRef t, LLVMValueRef slot) { return LLVMBuildLoad2(g->b, t, slot, ""); }
static void set(gen *g, LLVMValueRef slot, LLVMValueRef v) { LLVMBuildStore(g->b, v, slot); }

static LLVMBasicBlockRef block(gen *g, const char *name) { return LLVMAppendBasicBlockInContext(g->c, g->fn, name); }

/* for (i = start; i < end; i++) as a guarded do-while, the shape LLVM's
 * loop passes like best. */
typedef struct loop { LLVMBasicBlockRef body, exit; LLVMValueRef i, end; int64_t step; } loop;

static LLVMValueRef loop_begin_step(gen *g, loop *l, LLVMValueRef start, LLVMValueRef end, int64_t step)
{
	l->step = step;
	LLVMBasicBlockRef pre = LLVMGetInsertBlock(g->b);
	l->body = block(g, "loop");
	l->exit = block(g, "next");
	l->end = end;
	LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, start, end, ""), l->body, l->exit);
	LLVMPositionBuilderAtEnd(g->b, l->body);
	l->i = LLVMBuildPhi(g->b, g->i64, "i");
	LLVMAddIncoming(l->i, &start, &pre, 1);
	return l->i;
}
static LLVMValueRef loop_begin(gen *g, loop *l, LLVMValueRef start, LLVMValueRef end)
{
	return loop_begin_step(g, l, start, end, 1);
}
static void loop_end(gen *g, loop *l)
{
	LLVMValueRef next = add(g, l->i, ci(g, l->step));
	LLVMBasicBlockRef latch = LLVMGetInsertBlock(g->b);
	LLVMAddIncoming(l->i, &next, &latch, 1);
	LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, next, l->end, ""), l->body, l->exit);
	LLVMPositionBuilderAtEnd(g->b, l->exit);
}

/* if (cond) { ... } */
static LLVMBasicBlockRef if_begin(gen *g, LLVMValueRef cond)
{
	LLVMBasicBlockRef then = block(g, "then"), done = block(g, "endif");
	LLVMBuildCondBr(g->b, cond, then, done);
	LLVMPositionBuilderAtEnd(g->b, then);
	return done;
}
static void if_end(gen *g, LLVMBasicBlockRef done)
{
	LLVMBuildBr(g->b, done);
	LLVMPositionBuilderAtEnd(g->b, done);
}

/* ---- explicit vectors for the inner loops ----
 * Written as 8-wide vector operations with a scalar tail, so that they
 * vectorise whether or not LLVM can prove the buffers disjoint (they often
 * share the workspace) and without run-time overlap checks on short rows. */
enum { VW = 8 };

static LLVMValueRef vload(gen *g, LLVMValueRef base, LLVMValueRef i)
{
	LLVMValueRef v = LLVMBuildLoad2(g->b, g->vf, at(g, g->f32, base, i), "");
	LLVMSetAlignment(v, 4);
	return v;
}
static void vstore(gen *g, LLVMValueRef v, LLVMValueRef base, LLVMValueRef i)
{
	LLVMSetAlignment(LLVMBuildStore(g->b, v, at(g, g->f32, base, i)), 4);
}
static LLVMValueRef vfma(gen *g, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c)
{
	LLVMValueRef args[3] = { a, b, c };
	return intrinsic_n(g, "llvm.fmuladd", g->vf, args, 3);
}
static LLVMValueRef vsplat(gen *g, LLVMValueRef x)
{
	LLVMValueRef v = LLVMBuildInsertElement(g->b, LLVMGetUndef(g->vf), x, ci32(g, 0), "");
	return LLVMBuildShuffleVector(g->b, v, LLVMGetUndef(g->vf), LLVMConstNull(LLVMVectorType(g->i32, VW)), "");
}
static LLVMValueRef vround(gen *g, LLVMValueRef n) { return LLVMBuildAnd(g->b, n, ci(g, ~(int64_t)(VW - 1)), ""); }

/* dst[0..n) += c * src[0..n), in float */
static void emit_axpy(gen *g, LLVMValueRef dst, LLVMValueRef c, LLVMValueRef src, LLVMValueRef n)
{
	loop l;
	LLVMValueRef nv = vround(g, n), cv = vsplat(g, c);
	LLVMValueRef i = loop_begin_step(g, &l, ci(g, 0), nv, VW);
	vstore(g, vfma(g, cv, vload(g, src, i), vload(g, dst, i)), dst, i);
	loop_end(g, &l);
	i = loop_begin(g, &l, nv, n);
	LLVMValueRef args[3] = { c, load(g, g->f32, src, i), load(g, g->f32, dst, i) };
	store(g, intrinsic_n(g, "llvm.fmuladd", g->f32, args, 3), dst, i);
	loop_end(g, &l);
}

/* a[0..n) . b[0..n), in float */
static LLVMValueRef emit_dot(gen *g, LLVMValueRef a, LLVMValueRef b, LLVMValueRef n)
{
	loop l;
	LLVMValueRef nv = vround(g, n);
	LLVMValueRef acc = var(g, g->vf, LLVMConstNull(g->vf));
	LLVMValueRef i = loop_begin_step(g, &l, ci(g, 0), nv, VW);
	set(g, acc, vfma(g, vload(g, a, i), vload(g, b, i), get(g, g->vf, acc)));
	loop_end(g, &l);
	LLVMValueRef args[2] = { LLVMConstReal(g->f32, 0), get(g, g->vf, acc) };
	LLVMValueRef sum = var(g, g->f32, fast(intrinsic_n(g, "llvm.vector.reduce.fadd", g->vf, args, 2)));
	i = loop_begin(g, &l, nv, n);
	LLVMValueRef t[3] = { load(g, g->f32, a, i), load(g, g->f32, b, i), get(g, g->f32, sum) };
	set(g, sum, intrinsic_n(g, "llvm.fmuladd", g->f32, t, 3));
	loop_end(g, &l);
	return get(g, g->f32, sum);
}

/* ---- a register-blocked matrix product ----
 * C (+)= alpha A B, where
 *   A(i, k) = A[row(i) lda + col(k)], or with atrans A[col(k) lda + row(i)]
 *   B(k, j) = B[brow(k) ldb + j]
 * and row, col, brow are the identity or lookups in i32 index lists, which
 * is how active units are gathered without copying.  N must be a multiple
 * of 8 (compact buffers are zero-padded to one).  Each 4 x 16 block of C
 * stays in eight vector registers over the whole k loop, so every element of
 * B loaded feeds four multiply-adds. */
typedef struct gemm {
	LLVMValueRef C, ldc, A, lda, B, ldb;
	LLVMValueRef arows, acols, brows;   /* i32 index lists, or NULL */
	bool atrans, accumulate;
	float alpha;
	LLVMValueRef M, N, K;
} gemm;

static LLVMValueRef lookup(gen *g, LLVMValueRef list, LLVMValueRef i)
{
	return list ? LLVMBuildSExt(g->b, load(g, g->i32, list, i), g->i64, "") : i;
}

static void gemm_block(gen *g, const gemm *p, LLVMValueRef i0, LLVMValueRef j0, int R, int CB)
{
	LLVMValueRef acc[4][2], arow[4];
	for (int r = 0; r < R; r++) {
		arow[r] = lookup(g, p->arows, add(g, i0, ci(g, r)));
		for (int c = 0; c < CB; c++)
			acc[r][c] = var(g, g->vf, LLVMConstNull(g->vf));
	}
	loop l;
	LLVMValueRef k = loop_begin(g, &l, ci(g, 0), p->K);
	LLVMValueRef brow = add(g, mul(g, lookup(g, p->brows, k), p->ldb), j0);
	LLVMValueRef bv[2];
	for (int c = 0; c < CB; c++)
		bv[c] = vload(g, p->B, add(g, brow, ci(g, VW * c)));
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
			LLVMValueRef ci_ = add(g, mul(g, add(g, i0, ci(g, r)), p->ldc), add(g, j0, ci(g, VW * c)));
			LLVMValueRef v = get(g, g->vf, acc[r][c]);
			if (p->alpha != 1)
				v = LLVMBuildFMul(g->b, v, vsplat(g, LLVMConstReal(g->f32, p->alpha)), "");
			if (p->accumulate)
				v = LLVMBuildFAdd(g->b, v, vload(g, p->C, ci_), "");
			vstore(g, v, p->C, ci_);
		}
}

/* Column panels outermost: a panel of B (K rows x 16 columns) stays in L1
 * while every block of rows of A passes over it, so B, which may not fit in
 * L2 (gradient rows: 300 x 784 floats), is read from memory once. */
static void emit_gemm(gen *g, const gemm *p)
{
	LLVMValueRef M4 = LLVMBuildAnd(g->b, p->M, ci(g, ~(int64_t)3), "");
	LLVMValueRef N16 = LLVMBuildAnd(g->b, p->N, ci(g, ~(int64_t)15), "");
	LLVMValueRef has8 = LLVMBuildICmp(g->b, LLVMIntNE, N16, p->N, "");
	for (int CB = 2; CB >= 1; CB--) {
		loop lj, li;
		LLVMBasicBlockRef done = NULL;
		LLVMValueRef j0;
		if (CB == 2) {
			j0 = loop_begin_step(g, &lj, ci(g, 0), N16, 16);
		} else {
			done = if_begin(g, has8);
			j0 = N16;
		}
		LLVMValueRef i0 = loop_begin_step(g, &li, ci(g, 0), M4, 4);
		gemm_block(g, p, i0, j0, 4, CB);
		loop_end(g, &li);
		i0 = loop_begin(g, &li, M4, p->M);
		gemm_block(g, p, i0, j0, 1, CB);
		loop_end(g, &li);
		if (CB == 2)
			loop_end(g, &lj);
		else
			if_end(g, done);
	}
}

static LLVMValueRef pad8v(gen *g, LLVMValueRef n) { return LLVMBuildAnd(g->b, add(g, n, ci(g, VW - 1)), ci(g, ~(int64_t)(VW - 1)), ""); }

/* A kernel: void NAME(params) where each parameter is a pointer, except
 * those named in `ints` (int32 by value). */
static LLVMValueRef begin_function(gen *g, const char *name, int nparams, const char **pnames, const char *ints)
{
	LLVMTypeRef ps[8];
	for (int i = 0; i < nparams; i++)
		ps[i] = ints && strcmp(ints, pnames[i]) == 0 ? g->i32 : g->ptr;
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
static LLVMValueRef param(gen *g, int i) { return LLVMGetParam(g->fn, (unsigned)i); }

/* ---- shared pieces of the kernels ---- */

/* Pointer to value v's doubles inside the workspace. */
static LLVMValueRef val_ptr(gen *g, LLVMValueRef ws, int v) { return at(g, g->f32, ws, ci(g, g->val_off[v])); }
static LLVMValueRef tan_ptr(gen *g, LLVMValueRef ws, int v) { return at(g, g->f32, ws, ci(g, g->tan_off[v])); }

/* Value `v` element t as the next op sees it: after the ReLU when v is a
 * hidden layer. */
static LLVMValueRef activation(gen *g, LLVMValueRef ws, int v, LLVMValueRef t)
{
	LLVMValueRef x = load(g, g->f64, val_ptr(g, ws, v), t);
	if (v > 0 && g->m->ops[v - 1].relu)
		x = LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOGT, x, cd(g, 0), ""), x, cd(g, 0), "");
	return x;
}

/* The forward pass in double precision: every value's pre-activation goes
 * to the workspace; z and logits, when given, receive float copies. */
static void emit_forward(gen *g, LLVMValueRef P, LLVMValueRef x, LLVMValueRef ws, LLVMValueRef z, LLVMValueRef logits)
{
	const ir_module *m = g->m;
	loop l;
	LLVMValueRef d = loop_begin(g, &l, ci(g, 0), ci(g, m->n_in));
	LLVMValueRef xv = LLVMBuildFSub(g->b, ext(g, load(g, g->f32, x, d)), cd(g, m->mean), "");
	store(g, LLVMBuildFDiv(g->b, xv, cd(g, m->std), ""), val_ptr(g, ws, 0), d);
	loop_end(g, &l);

	for (int k = 0; k < m->n_ops; k++) {
		const ir_op *op = &m->ops[k];
		loop lj, lt;
		LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), ci(g, op->out_size));
		LLVMValueRef acc = var(g, g->f64, ext(g, load(g, g->f32, P, add(g, ci(g, op->b_off), j))));
		LLVMValueRef row = add(g, ci(g, op->w_off), mul(g, j, ci(g, op->in_size)));
		LLVMValueRef t = loop_begin(g, &lt, ci(g, 0), ci(g, op->in_size));
		LLVMValueRef w = ext(g, load(g, g->f32, P, add(g, row, t)));
		set(g, acc, fadd(g, get(g, g->f64, acc), fmul(g, w, activation(g, ws, op->in, t))));
		loop_end(g, &lt);
		LLVMValueRef s = get(g, g->f64, acc);
		store(g, s, val_ptr(g, ws, k + 1), j);
		if (op->relu && z)
			store(g, trunc32(g, s), z, add(g, ci(g, op->z_off), j));
		if (!op->relu && logits)
			store(g, trunc32(g, s), logits, j);
		loop_end(g, &lj);
	}
}

/* The active list of hidden op k: indices of its units with z > 0, in
 * increasing order, and their count.  z is read from `z` (float, indexed by
 * neuron) when given, else from the op's pre-activations in ws. */
static void emit_active(gen *g, LLVMValueRef ws, LLVMValueRef z, int k)
{
	const ir_op *op = &g->m->ops[k];
	LLVMValueRef act = at(g, g->f32, ws, ci(g, g->act_off[k]));
	LLVMValueRef n = var(g, g->i64, ci(g, 0));
	loop l;
	LLVMValueRef a = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
	LLVMValueRef on = z ? LLVMBuildFCmp(g->b, LLVMRealOGT, load(g, g->f32, z, add(g, ci(g, op->z_off), a)), LLVMConstReal(g->f32, 0), "")
	                    : LLVMBuildFCmp(g->b, LLVMRealOGT, load(g, g->f64, val_ptr(g, ws, k + 1), a), cd(g, 0), "");
	LLVMBasicBlockRef done = if_begin(g, on);
	LLVMValueRef i = get(g, g->i64, n);
	store(g, LLVMBuildTrunc(g->b, a, g->i32, ""), act, i);
	set(g, n, add(g, i, ci(g, 1)));
	if_end(g, done);
	loop_end(g, &l);
	store(g, LLVMBuildTrunc(g->b, get(g, g->i64, n), g->i32, ""), ws, ci(g, g->cnt_off[k]));
}
static void emit_all_active(gen *g, LLVMValueRef ws, LLVMValueRef z)
{
	for (int k = 0; k < g->m->n_ops; k++)
		if (g->m->ops[k].relu)
			emit_active(g, ws, z, k);
}
static LLVMValueRef active_count(gen *g, LLVMValueRef ws, int k)
{
	return LLVMBuildSExt(g->b, load(g, g->i32, ws, ci(g, g->cnt_off[k])), g->i64, "");
}
static LLVMValueRef active_at(gen *g, LLVMValueRef ws, int k, LLVMValueRef p)
{
	return LLVMBuildSExt(g->b, load(g, g->i32, at(g, g->f32, ws, ci(g, g->act_off[k])), p), g->i64, "");
}

/* The op's gradient rows: J_k = W_k diag(m) J_in over the active units of
 * the input layer only (inactive columns are zero).  src and dst are row-
 * major with n_in columns. */
static void emit_rows(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws,
                      LLVMValueRef src, LLVMValueRef dst, void *row_hook_ctx,
                      void (*row_hook)(gen *, const ir_op *, LLVMValueRef j, LLVMValueRef row, void *ctx))
{
	LLVMValueRef D = ci(g, g->m->n_in);
	LLVMValueRef na = active_count(g, ws, op->in - 1);
	loop lj, lt, lz;
	if (g->m->n_in % VW == 0) {
		LLVMValueRef act = at(g, g->f32, ws, ci(g, g->act_off[op->in - 1]));
		emit_gemm(g, &(gemm){ .C = dst, .ldc = D, .A = at(g, g->f32, P, ci(g, op->w_off)), .lda = ci(g, op->in_size),
		                      .acols = act, .B = src, .ldb = D, .brows = act, .alpha = 1,
		                      .M = ci(g, op->out_size), .N = D, .K = na });
		if (row_hook) {
			LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), ci(g, op->out_size));
			row_hook(g, op, j, at(g, g->f32, dst, mul(g, j, D)), row_hook_ctx);
			loop_end(g, &lj);
		}
		return;
	}
	LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), ci(g, op->out_size));
	LLVMValueRef row = at(g, g->f32, dst, mul(g, j, D));
	LLVMValueRef d = loop_begin(g, &lz, ci(g, 0), D);
	store(g, LLVMConstReal(g->f32, 0), row, d);
	loop_end(g, &lz);
	LLVMValueRef t = loop_begin(g, &lt, ci(g, 0), na);
	LLVMValueRef ai = active_at(g, ws, op->in - 1, t);
	LLVMValueRef w = load(g, g->f32, P, add(g, ci(g, op->w_off), add(g, mul(g, j, ci(g, op->in_size)), ai)));
	emit_axpy(g, row, w, at(g, g->f32, src, mul(g, ai, D)), D);
	loop_end(g, &lt);
	if (row_hook)
		row_hook(g, op, j, row, row_hook_ctx);
	loop_end(g, &lj);
}

/* l1 norm, squared l2 norm and linf norm of n floats, in double. */
static void emit_norms(gen *g, LLVMValueRef row, LLVMValueRef row2, int64_t n, LLVMValueRef out[3])
{
	LLVMValueRef s1 = var(g, g->f64, cd(g, 0)), s2 = var(g, g->f64, cd(g, 0)), mx = var(g, g->f64, cd(g, 0));
	loop l;
	LLVMValueRef d = loop_begin(g, &l, ci(g, 0), ci(g, n));
	LLVMValueRef v = ext(g, load(g, g->f32, row, d));
	if (row2)
		v = LLVMBuildFSub(g->b, v, ext(g, load(g, g->f32, row2, d)), "");
	LLVMValueRef av = fabsv(g, v);
	set(g, s1, fadd(g, get(g, g->f64, s1), av));
	set(g, s2, fadd(g, get(g, g->f64, s2), fmul(g, v, v)));
	set(g, mx, fmaxv(g, get(g, g->f64, mx), av));
	loop_end(g, &l);
	out[0] = get(g, g->f64, s1);
	out[1] = get(g, g->f64, s2);
	out[2] = get(g, g->f64, mx);
}

/* The dual norm ||g||_q of an l_p ball from the three sums. */
static LLVMValueRef dual(gen *g, LLVMValueRef sums[3], int p)
{
	switch (p) {
	case RT_L1: return sums[2];
	case RT_L2: return intrinsic(g, "llvm.sqrt", sums[1], NULL);
	default: return sums[0];
	}
}

/* ---- certify ---- */

typedef struct cert_state {
	LLVMValueRef P, pre, ws, norms;
	LLVMValueRef best[RT_NNORMS], bind[RT_NNORMS];
} cert_state;

/* best_p = min(best_p, |z| std / q) for a neuron whose dual norm q > 0. */
static void offer(gen *g, cert_state *s, int p, LLVMValueRef zabs, LLVMValueRef q, LLVMValueRef h)
{
	LLVMValueRef e = LLVMBuildFDiv(g->b, LLVMBuildFMul(g->b, zabs, cd(g, g->m->std), ""), q, "");
	LLVMValueRef better = LLVMBuildAnd(g->b, LLVMBuildFCmp(g->b, LLVMRealOGT, q, cd(g, 0), ""),
	                                   LLVMBuildFCmp(g->b, LLVMRealOLT, e, get(g, g->f64, s->best[p]), ""), "");
	LLVMBasicBlockRef done = if_begin(g, better);
	set(g, s->best[p], e);
	set(g, s->bind[p], LLVMBuildTrunc(g->b, h, g->i32, ""));
	if_end(g, done);
}

/* Margins of one hidden neuron j of op, whose gradient row is `row`. */
static void margin_row(gen *g, const ir_op *op, LLVMValueRef j, LLVMValueRef row, void *ctx)
{
	cert_state *s = ctx;
	LLVMValueRef sums[3];
	emit_norms(g, row, NULL, g->m->n_in, sums);
	LLVMValueRef zabs = fabsv(g, load(g, g->f64, val_ptr(g, s->ws, (int)(op - g->m->ops) + 1), j));
	LLVMValueRef h = add(g, ci(g, op->z_off), j);
	for (int p = 0; p < RT_NNORMS; p++)
		offer(g, s, p, zabs, dual(g, sums, p), h);
}

/* The explicit strategy: every gradient row, all three norms. */
static void certify_rows(gen *g, cert_state *s, LLVMValueRef y, LLVMValueRef pred[RT_NNORMS])
{
	const ir_module *m = g->m;
	for (int k = 0; k < m->n_ops; k++) {
		const ir_op *op = &m->ops[k];
		if (op->in == 0) {
			if (!op->relu)
				continue;
			/* first-layer rows are the weights: their norms come from prepare */
			loop l;
			LLVMValueRef j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
			LLVMValueRef zabs = fabsv(g, load(g, g->f64, val_ptr(g, s->ws, k + 1), j));
			LLVMValueRef pre = at(g, g->f32, s->pre, ci(g, g->pre_off[k]));
			for (int p = 0; p < RT_NNORMS; p++) {
				LLVMValueRef q = ext(g, load(g, g->f32, pre, add(g, ci(g, (int64_t)p * op->out_size), j)));
				offer(g, s, p, zabs, q, add(g, ci(g, op->z_off), j));
			}
			loop_end(g, &l);
			continue;
		}
		const ir_op *ip = &m->ops[op->in - 1];
		LLVMValueRef src = ip->in == 0 ? at(g, g->f32, s->P, ci(g, ip->w_off))
		                               : at(g, g->f32, s->ws, ci(g, g->jac_off[op->in - 1]));
		emit_rows(g, op, s->P, s->ws, src, at(g, g->f32, s->ws, ci(g, g->jac_off[k])), s,
		          op->relu ? margin_row : NULL);
	}

	/* the radius within which the prediction is certified: the logit rows */
	const ir_op *oo = &m->ops[m->n_ops - 1];
	LLVMValueRef f = val_ptr(g, s->ws, m->n_ops), D = ci(g, m->n_in);
	LLVMValueRef J = oo->in == 0 ? at(g, g->f32, s->P, ci(g, oo->w_off)) : at(g, g->f32, s->ws, ci(g, g->jac_off[m->n_ops - 1]));
	LLVMValueRef fy = load(g, g->f64, f, y);
	loop l;
	LLVMValueRef k = loop_begin(g, &l, ci(g, 0), ci(g, m->n_out));
	LLVMBasicBlockRef done = if_begin(g, LLVMBuildICmp(g->b, m->n_out == 1 ? LLVMIntEQ : LLVMIntNE, k, y, ""));
	LLVMValueRef sums[3];
	/* binary: the decision is the sign of the one logit */
	emit_norms(g, at(g, g->f32, J, mul(g, y, D)), m->n_out == 1 ? NULL : at(g, g->f32, J, mul(g, k, D)), m->n_in, sums);
	LLVMValueRef gap = m->n_out == 1 ? fabsv(g, fy) : LLVMBuildFSub(g->b, fy, load(g, g->f64, f, k), "");
	gap = LLVMBuildFMul(g->b, gap, cd(g, m->std), "");
	for (int p = 0; p < RT_NNORMS; p++) {
		LLVMValueRef r = LLVMBuildFDiv(g->b, gap, dual(g, sums, p), "");
		LLVMValueRef lt = LLVMBuildFCmp(g->b, LLVMRealOLT, r, get(g, g->f64, pred[p]), "");
		set(g, pred[p], LLVMBuildSelect(g->b, lt, r, get(g, g->f64, pred[p]), ""));
	}
	if_end(g, done);
	loop_end(g, &l);
}

static void emit_gram_forward(gen *g, LLVMValueRef P, LLVMValueRef pre, LLVMValueRef ws, LLVMValueRef sq, bool for_logits);

/* The Gram strategy, for eps_2 alone: squared gradient norms from the Gram
 * recurrence, and the logits' Gram matrix for the prediction radius. */
static void certify_gram(gen *g, cert_state *s, LLVMValueRef y, LLVMValueRef pred[RT_NNORMS])
{
	const ir_module *m = g->m;
	LLVMValueRef sq = at(g, g->f32, s->ws, ci(g, g->sq_off));
	emit_gram_forward(g, s->P, s->pre, s->ws, sq, true);
	for (int k = 0; k < m->n_ops; k++) {
		const ir_op *op = &m->ops[k];
		if (!op->relu)
			continue;
		loop l;
		LLVMValueRef j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
		LLVMValueRef zabs = fabsv(g, load(g, g->f64, val_ptr(g, s->ws, k + 1), j));
		LLVMValueRef h = add(g, ci(g, op->z_off), j);
		offer(g, s, RT_L2, zabs, intrinsic(g, "llvm.sqrt", ext(g, load(g, g->f32, sq, h)), NULL), h);
		loop_end(g, &l);
	}
	/* ||grad f_y - grad f_k||^2 = d Gc d^T with d = V[y] - V[k] formed first,
	 * which avoids the cancellation of G_yy + G_kk - 2 G_yk */
	int o = m->n_ops - 1, i = m->ops[o].in - 1;
	LLVMValueRef Vc = at(g, g->f32, s->ws, ci(g, g->vc_off[o]));
	LLVMValueRef Gc = at(g, g->f32, s->ws, ci(g, g->gc_off[i])), GLD = ci(g, pad8(m->ops[i].out_size));
	LLVMValueRef ai = active_count(g, s->ws, i), ai8 = pad8v(g, ai), VLD = ci(g, pad8(m->ops[o].in_size));
	LLVMValueRef dr = at(g, g->f32, s->ws, ci(g, g->row_off)), ur = at(g, g->f32, s->ws, ci(g, g->row2_off));
	LLVMValueRef f = val_ptr(g, s->ws, m->n_ops), fy = load(g, g->f64, f, y);
	LLVMValueRef vy = at(g, g->f32, Vc, mul(g, y, VLD));
	loop l, lv;
	LLVMValueRef k = loop_begin(g, &l, ci(g, 0), ci(g, m->n_out));
	LLVMBasicBlockRef done = if_begin(g, LLVMBuildICmp(g->b, m->n_out == 1 ? LLVMIntEQ : LLVMIntNE, k, y, ""));
	LLVMValueRef vk = at(g, g->f32, Vc, mul(g, k, VLD));
	LLVMValueRef t = loop_begin(g, &lv, ci(g, 0), ai8);
	LLVMValueRef dv = load(g, g->f32, vy, t);
	if (m->n_out > 1)
		dv = LLVMBuildFSub(g->b, dv, load(g, g->f32, vk, t), "");
	store(g, dv, dr, t);
	store(g, LLVMConstReal(g->f32, 0), ur, t);
	loop_end(g, &lv);
	t = loop_begin(g, &lv, ci(g, 0), ai);
	emit_axpy(g, ur, load(g, g->f32, dr, t), at(g, g->f32, Gc, mul(g, t, GLD)), ai8);
	loop_end(g, &lv);
	LLVMValueRef q2 = ext(g, emit_dot(g, dr, ur, ai8));
	LLVMValueRef gap = m->n_out == 1 ? fabsv(g, fy) : LLVMBuildFSub(g->b, fy, load(g, g->f64, f, k), "");
	LLVMValueRef r = LLVMBuildFDiv(g->b, LLVMBuildFMul(g->b, gap, cd(g, m->std), ""), intrinsic(g, "llvm.sqrt", q2, NULL), "");
	LLVMValueRef lt = LLVMBuildAnd(g->b, LLVMBuildFCmp(g->b, LLVMRealOLT, r, get(g, g->f64, pred[RT_L2]), ""),
	                               LLVMBuildFCmp(g->b, LLVMRealOGT, q2, cd(g, 0), ""), "");
	set(g, pred[RT_L2], LLVMBuildSelect(g->b, lt, r, get(g, g->f64, pred[RT_L2]), ""));
	if_end(g, done);
	loop_end(g, &l);
}

static void emit_certify(gen *g)
{
	static const char *names[] = { "P", "pre", "x", "norms", "ws", "z", "logits", "out" };
	begin_function(g, "lln_certify", 8, names, "norms");
	const ir_module *m = g->m;
	cert_state s = { .P = param(g, 0), .pre = param(g, 1), .ws = param(g, 4), .norms = param(g, 3) };
	LLVMValueRef out = param(g, 7);
	emit_forward(g, s.P, param(g, 2), s.ws, param(g, 5), param(g, 6));
	emit_all_active(g, s.ws, NULL);
	LLVMValueRef pred[RT_NNORMS];
	for (int p = 0; p < RT_NNORMS; p++) {
		s.best[p] = var(g, g->f64, cd(g, INFINITY));
		s.bind[p] = var(g, g->i32, ci32(g, -1));
		pred[p] = var(g, g->f64, cd(g, INFINITY));
	}

	/* the prediction: argmax, or for one logit its sign */
	LLVMValueRef f = val_ptr(g, s.ws, m->n_ops);
	LLVMValueRef y = var(g, g->i64, ci(g, 0)), label;
	if (m->n_out == 1) {
		label = LLVMBuildZExt(g->b, LLVMBuildFCmp(g->b, LLVMRealOGT, load(g, g->f64, f, ci(g, 0)), cd(g, 0), ""), g->i32, "");
	} else {
		loop l;
		LLVMValueRef k = loop_begin(g, &l, ci(g, 1), ci(g, m->n_out));
		LLVMValueRef gt = LLVMBuildFCmp(g->b, LLVMRealOGT, load(g, g->f64, f, k), load(g, g->f64, f, get(g, g->i64, y)), "");
		set(g, y, LLVMBuildSelect(g->b, gt, k, get(g, g->i64, y), ""));
		loop_end(g, &l);
		label = LLVMBuildTrunc(g->b, get(g, g->i64, y), g->i32, "");
	}
	LLVMValueRef yv = get(g, g->i64, y);

	/* eps_2 alone takes the Gram strategy when the IR's cost model chose it;
	 * any other set of norms needs the gradient rows */
	LLVMBasicBlockRef join = block(g, "certified");
	if (m->l2_by_gram) {
		LLVMBasicBlockRef gram = block(g, "gram"), rows = block(g, "rows");
		LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, s.norms, ci32(g, RT_NORM_BIT(RT_L2)), ""), gram, rows);
		LLVMPositionBuilderAtEnd(g->b, gram);
		certify_gram(g, &s, yv, pred);
		LLVMBuildBr(g->b, join);
		LLVMPositionBuilderAtEnd(g->b, rows);
	}
	certify_rows(g, &s, yv, pred);
	LLVMBuildBr(g->b, join);
	LLVMPositionBuilderAtEnd(g->b, join);

	/* rt_cert: label, eps[3], bind[3], eps_pred[3], 4 bytes each */
	store(g, label, out, ci(g, 0));
	for (int p = 0; p < RT_NNORMS; p++) {
		LLVMValueRef e = get(g, g->f64, s.best[p]);
		store(g, trunc32(g, e), out, ci(g, 1 + p));
		store(g, get(g, g->i32, s.bind[p]), out, ci(g, 4 + p));
		LLVMValueRef r = get(g, g->f64, pred[p]);
		r = LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOLT, e, r, ""), e, r, "");
		store(g, trunc32(g, r), out, ci(g, 7 + p));
	}
	LLVMBuildRetVoid(g->b);
}

/* ---- prepare, forward, grads, direction ---- */

static void emit_gram_prepare(gen *g, LLVMValueRef P, LLVMValueRef pre);

static void emit_prepare(gen *g)
{
	static const char *names[] = { "P", "pre" };
	begin_function(g, "lln_prepare", 2, names, NULL);
	const ir_module *m = g->m;
	for (int k = 0; k < m->n_ops; k++) {
		const ir_op *op = &m->ops[k];
		if (g->pre_off[k] < 0)
			continue;
		LLVMValueRef pre = at(g, g->f32, param(g, 1), ci(g, g->pre_off[k]));
		loop l;
		LLVMValueRef j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
		LLVMValueRef row = at(g, g->f32, param(g, 0), add(g, ci(g, op->w_off), mul(g, j, ci(g, m->n_in))));
		LLVMValueRef sums[3];
		emit_norms(g, row, NULL, m->n_in, sums);
		for (int p = 0; p < RT_NNORMS; p++)
			store(g, trunc32(g, dual(g, sums, p)), pre, add(g, ci(g, (int64_t)p * op->out_size), j));
		loop_end(g, &l);
	}
	emit_gram_prepare(g, param(g, 0), param(g, 1));
	LLVMBuildRetVoid(g->b);
}

static void emit_forward_fn(gen *g)
{
	static const char *names[] = { "P", "x", "ws", "z", "logits" };
	begin_function(g, "lln_forward", 5, names, NULL);
	emit_forward(g, param(g, 0), param(g, 1), param(g, 2), param(g, 3), param(g, 4));
	LLVMBuildRetVoid(g->b);
}

static void emit_grads(gen *g)
{
	static const char *names[] = { "P", "z", "G", "ws" };
	begin_function(g, "lln_grads", 4, names, NULL);
	const ir_module *m = g->m;
	LLVMValueRef P = param(g, 0), z = param(g, 1), G = param(g, 2), ws = param(g, 3);
	LLVMValueRef D = ci(g, m->n_in);
	emit_all_active(g, ws, z);
	for (int k = 0; k < m->n_ops; k++) {
		const ir_op *op = &m->ops[k];
		if (!op->relu)
			continue;
		LLVMValueRef dst = at(g, g->f32, G, mul(g, ci(g, op->z_off), D));
		if (op->in == 0) {
			/* raw-input gradient of the first layer: W / std */
			loop l;
			LLVMValueRef i = loop_begin(g, &l, ci(g, 0), ci(g, (int64_t)op->out_size * m->n_in));
			LLVMValueRef w = load(g, g->f32, P, add(g, ci(g, op->w_off), i));
			store(g, LLVMBuildFDiv(g->b, w, LLVMConstReal(g->f32, m->std), ""), dst, i);
			loop_end(g, &l);
			continue;
		}
		const ir_op *ip = &m->ops[op->in - 1];
		emit_rows(g, op, P, ws, at(g, g->f32, G, mul(g, ci(g, ip->z_off), D)), dst, NULL, NULL);
	}
	LLVMBuildRetVoid(g->b);
}

static void emit_direction(gen *g)
{
	static const char *names[] = { "P", "x", "d", "ws", "t", "bind" };
	begin_function(g, "lln_direction", 6, names, NULL);
	const ir_module *m = g->m;
	LLVMValueRef P = param(g, 0), dir = param(g, 2), ws = param(g, 3);
	emit_forward(g, P, param(g, 1), ws, NULL, NULL);
	LLVMValueRef best = var(g, g->f64, cd(g, INFINITY)), bind = var(g, g->i32, ci32(g, -1));

	loop l;
	LLVMValueRef d = loop_begin(g, &l, ci(g, 0), ci(g, m->n_in));
	store(g, LLVMBuildFDiv(g->b, ext(g, load(g, g->f32, dir, d)), cd(g, m->std), ""), tan_ptr(g, ws, 0), d);
	loop_end(g, &l);
	for (int k = 0; k < m->n_ops; k++) {
		const ir_op *op = &m->ops[k];
		if (!op->relu)
			continue;   /* logits do not bound the region */
		const ir_op *ip = op->in ? &m->ops[op->in - 1] : NULL;
		loop lj, lt;
		LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), ci(g, op->out_size));
		LLVMValueRef acc = var(g, g->f64, cd(g, 0));
		LLVMValueRef row = add(g, ci(g, op->w_off), mul(g, j, ci(g, op->in_size)));
		LLVMValueRef t = loop_begin(g, &lt, ci(g, 0), ci(g, op->in_size));
		LLVMValueRef u = load(g, g->f64, tan_ptr(g, ws, op->in), t);
		if (ip) {
			LLVMValueRef zin = load(g, g->f64, val_ptr(g, ws, op->in), t);
			u = LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOGT, zin, cd(g, 0), ""), u, cd(g, 0), "");
		}
		LLVMValueRef w = ext(g, load(g, g->f32, P, add(g, row, t)));
		set(g, acc, fadd(g, get(g, g->f64, acc), fmul(g, w, u)));
		loop_end(g, &lt);
		LLVMValueRef gd = get(g, g->f64, acc);
		store(g, gd, tan_ptr(g, ws, k + 1), j);
		/* an active neuron leaves when its z falls, an inactive one when it rises */
		LLVMValueRef zj = load(g, g->f64, val_ptr(g, ws, k + 1), j);
		LLVMValueRef on = LLVMBuildFCmp(g->b, LLVMRealOGT, zj, cd(g, 0), "");
		LLVMValueRef cross = LLVMBuildSelect(g->b, on, LLVMBuildFCmp(g->b, LLVMRealOLT, gd, cd(g, 0), ""),
		                                     LLVMBuildFCmp(g->b, LLVMRealOGT, gd, cd(g, 0), ""), "");
		LLVMBasicBlockRef done = if_begin(g, cross);
		LLVMValueRef tt = LLVMBuildFDiv(g->b, fabsv(g, zj), fabsv(g, gd), "");
		LLVMBasicBlockRef done2 = if_begin(g, LLVMBuildFCmp(g->b, LLVMRealOLT, tt, get(g, g->f64, best), ""));
		set(g, best, tt);
		set(g, bind, LLVMBuildTrunc(g->b, add(g, ci(g, op->z_off), j), g->i32, ""));
		if_end(g, done2);
		if_end(g, done);
		loop_end(g, &lj);
	}
	store(g, trunc32(g, get(g, g->f64, best)), param(g, 4), ci(g, 0));
	store(g, get(g, g->i32, bind), param(g, 5), ci(g, 0));
	LLVMBuildRetVoid(g->b);
}

/* ---- training: the Gram recurrence and its adjoint ----
 *
 * Training needs sq_h = ||g_h||^2 for every hidden neuron, and the gradient
 * of any function of them.  Rather than forming gradient rows (n x D per
 * layer), the kernels carry each layer's Gram matrix G^i = J^i J^i^T:
 *   G^1 = W^1 W^1^T                      (once per weight vector, in prepare)
 *   G^i = V G^{i-1}_AA V^T,  V = W^i[:, A] with A the active units of layer i-1
 * so sq = diag(G^i), at a cost independent of the input dimension.  Only the
 * block of G^{i-1} on active units is ever needed; it is kept compact (the
 * Gc buffers), as are V and T = V G^{i-1}_AA.  The adjoint Gbar^i of G^i is
 * diag(dsq) plus, on the active block, what layer i+1 sends back:
 *   dV = 2 Gbar^i T,   Gbar^{i-1}_AA += V^T Gbar^i V
 * and for the first layer dW^1 = 2 Gbar^1 W^1, which is linear in Gbar^1, so
 * the per-example Gbar^1 are summed over the batch (an accumulator past
 * n_params in grad) and multiplied once, in train_finish. */

static void emit_zero(gen *g, LLVMValueRef p, int64_t n)
{
	loop l;
	LLVMValueRef i = loop_begin(g, &l, ci(g, 0), ci(g, n));
	store(g, LLVMConstReal(g->f32, 0), p, i);
	loop_end(g, &l);
}

/* K = W W^T for the first-layer hidden ops, symmetric, accumulated in double. */
static void emit_gram_prepare(gen *g, LLVMValueRef P, LLVMValueRef pre)
{
	const ir_module *m = g->m;
	for (int k = 0; k < m->n_ops; k++) {
		const ir_op *op = &m->ops[k];
		if (g->kpre_off[k] < 0)
			continue;
		int64_t n = op->out_size;
		LLVMValueRef K = at(g, g->f32, pre, ci(g, g->kpre_off[k]));
		LLVMValueRef W = at(g, g->f32, P, ci(g, op->w_off));
		loop lr, lq, ld;
		LLVMValueRef r = loop_begin(g, &lr, ci(g, 0), ci(g, n));
		LLVMValueRef q = loop_begin(g, &lq, r, ci(g, n));
		LLVMValueRef acc = var(g, g->f64, cd(g, 0));
		LLVMValueRef d = loop_begin(g, &ld, ci(g, 0), ci(g, op->in_size));
		LLVMValueRef a = ext(g, load(g, g->f32, W, add(g, mul(g, r, ci(g, op->in_size)), d)));
		LLVMValueRef b = ext(g, load(g, g->f32, W, add(g, mul(g, q, ci(g, op->in_size)), d)));
		set(g, acc, fadd(g, get(g, g->f64, acc), fmul(g, a, b)));
		loop_end(g, &ld);
		LLVMValueRef v = trunc32(g, get(g, g->f64, acc));
		store(g, v, K, add(g, mul(g, r, ci(g, n)), q));
		store(g, v, K, add(g, mul(g, q, ci(g, n)), r));
		loop_end(g, &lq);
		loop_end(g, &lr);
	}
}

/* Whether op k's Gram block on its active units is needed: by a hidden
 * consumer, or by the logits when their Gram matrix is wanted. */
static bool need_gc(const ir_module *m, int k, bool for_logits)
{
	for (int j = k + 1; j < m->n_ops; j++)
		if (m->ops[j].in == k + 1 && (m->ops[j].relu || for_logits))
			return true;
	return false;
}

/* sq for every hidden neuron (and, for_logits, V and T of the logits). */
static void emit_gram_forward(gen *g, LLVMValueRef P, LLVMValueRef pre, LLVMValueRef ws, LLVMValueRef sq, bool for_logits)
{
	const ir_module *m = g->m;
	for (int k = 0; k < m->n_ops; k++) {
		const ir_op *op = &m->ops[k];
		if (!op->relu && (!for_logits || op->in == 0))
			continue;
		int64_t n = op->out_size;
		LLVMValueRef N = ci(g, n), GLD = ci(g, pad8(n));
		loop lr, lt, lp, lq;
		if (op->in == 0) {
			/* G^1 = W W^T from prepare: sq is its diagonal */
			LLVMValueRef K = at(g, g->f32, pre, ci(g, g->kpre_off[k]));
			LLVMValueRef r = loop_begin(g, &lr, ci(g, 0), N);
			store(g, load(g, g->f32, K, add(g, mul(g, r, N), r)), sq, add(g, ci(g, op->z_off), r));
			loop_end(g, &lr);
			if (!need_gc(m, k, for_logits))
				continue;
			LLVMValueRef Gc = at(g, g->f32, ws, ci(g, g->gc_off[k]));
			LLVMValueRef a = active_count(g, ws, k);
			LLVMValueRef p = loop_begin(g, &lp, ci(g, 0), a);
			LLVMValueRef rowp = mul(g, active_at(g, ws, k, p), N);
			LLVMValueRef q = loop_begin(g, &lq, ci(g, 0), pad8v(g, a));
			LLVMValueRef in = LLVMBuildICmp(g->b, LLVMIntSLT, q, a, "");
			LLVMValueRef col = active_at(g, ws, k, LLVMBuildSelect(g->b, in, q, ci(g, 0), ""));
			LLVMValueRef v = load(g, g->f32, K, add(g, rowp, col));
			store(g, LLVMBuildSelect(g->b, in, v, LLVMConstReal(g->f32, 0), ""), Gc, add(g, mul(g, p, GLD), q));
			loop_end(g, &lq);
			loop_end(g, &lp);
			continue;
		}
		int i = op->in - 1;
		LLVMValueRef ai = active_count(g, ws, i), ai8 = pad8v(g, ai);
		LLVMValueRef Vc = at(g, g->f32, ws, ci(g, g->vc_off[k])), T = at(g, g->f32, ws, ci(g, g->t_off[k]));
		LLVMValueRef VLD = ci(g, pad8(op->in_size));
		/* V = W[:, A_i], zero-padded */
		LLVMValueRef r = loop_begin(g, &lr, ci(g, 0), N);
		LLVMValueRef t = loop_begin(g, &lt, ci(g, 0), ai8);
		LLVMValueRef in = LLVMBuildICmp(g->b, LLVMIntSLT, t, ai, "");
		LLVMValueRef col = active_at(g, ws, i, LLVMBuildSelect(g->b, in, t, ci(g, 0), ""));
		LLVMValueRef w = load(g, g->f32, P, add(g, ci(g, op->w_off), add(g, mul(g, r, ci(g, op->in_size)), col)));
		store(g, LLVMBuildSelect(g->b, in, w, LLVMConstReal(g->f32, 0), ""), Vc, add(g, mul(g, r, VLD), t));
		loop_end(g, &lt);
		loop_end(g, &lr);
		/* T = V Gc_i;  sq = rowwise V . T */
		emit_gemm(g, &(gemm){ .C = T, .ldc = VLD, .A = Vc, .lda = VLD, .B = at(g, g->f32, ws, ci(g, g->gc_off[i])),
		                      .ldb = ci(g, pad8(m->ops[i].out_size)), .alpha = 1, .M = N, .N = ai8, .K = ai });
		if (op->relu) {
			r = loop_begin(g, &lr, ci(g, 0), N);
			store(g, emit_dot(g, at(g, g->f32, T, mul(g, r, VLD)), at(g, g->f32, Vc, mul(g, r, VLD)), ai8), sq,
			      add(g, ci(g, op->z_off), r));
			loop_end(g, &lr);
		}
		if (!op->relu || !need_gc(m, k, for_logits))
			continue;
		/* Gc_k = T[A_k] V[A_k]^T, through the transposed gather VA[t, q] = V[A_k[q], t] */
		LLVMValueRef a = active_count(g, ws, k), a8 = pad8v(g, a);
		LLVMValueRef VA = at(g, g->f32, ws, ci(g, g->scratch_off[0]));
		t = loop_begin(g, &lt, ci(g, 0), ai);
		LLVMValueRef q = loop_begin(g, &lq, ci(g, 0), a8);
		LLVMValueRef qin = LLVMBuildICmp(g->b, LLVMIntSLT, q, a, "");
		LLVMValueRef rq = active_at(g, ws, k, LLVMBuildSelect(g->b, qin, q, ci(g, 0), ""));
		LLVMValueRef v = load(g, g->f32, Vc, add(g, mul(g, rq, VLD), t));
		store(g, LLVMBuildSelect(g->b, qin, v, LLVMConstReal(g->f32, 0), ""), VA, add(g, mul(g, t, GLD), q));
		loop_end(g, &lq);
		loop_end(g, &lt);
		emit_gemm(g, &(gemm){ .C = at(g, g->f32, ws, ci(g, g->gc_off[k])), .ldc = GLD, .A = T, .lda = VLD,
		                      .arows = at(g, g->f32, ws, ci(g, g->act_off[k])), .B = VA, .ldb = GLD, .alpha = 1,
		                      .M = a, .N = a8, .K = ai });
	}
}

static void emit_train_forward(gen *g)
{
	static const char *names[] = { "P", "pre", "x", "need_sq", "ws", "z", "logits", "sq" };
	begin_function(g, "lln_train_forward", 8, names, "need_sq");
	LLVMValueRef ws = param(g, 4);
	emit_forward(g, param(g, 0), param(g, 2), ws, param(g, 5), param(g, 6));
	emit_all_active(g, ws, NULL);
	LLVMBasicBlockRef done = if_begin(g, LLVMBuildICmp(g->b, LLVMIntNE, param(g, 3), ci32(g, 0), ""));
	emit_gram_forward(g, param(g, 0), param(g, 1), ws, param(g, 7), false);
	if_end(g, done);
	LLVMBuildRetVoid(g->b);
}


static void emit_gram_backward(gen *g, LLVMValueRef ws, LLVMValueRef dsq, LLVMValueRef grad)
{
	const ir_module *m = g->m;
	for (int k = 0; k < m->n_ops; k++)
		if (m->ops[k].relu)
			emit_zero(g, at(g, g->f32, ws, ci(g, g->gbar_off[k])), (int64_t)m->ops[k].out_size * pad8(m->ops[k].out_size));
	for (int k = m->n_ops - 1; k >= 0; k--) {
		const ir_op *op = &m->ops[k];
		if (!op->relu)
			continue;
		int64_t n = op->out_size;
		LLVMValueRef N = ci(g, n), GLD = ci(g, pad8(n));
		LLVMValueRef a = active_count(g, ws, k), act = at(g, g->f32, ws, ci(g, g->act_off[k]));
		LLVMValueRef E = at(g, g->f32, ws, ci(g, g->gbar_off[k]));
		loop lr, lp, lq, lt;
		if (op->in == 0) {
			/* the batch accumulator of Gbar^1: diag(dsq) plus the active block */
			LLVMValueRef acc = at(g, g->f32, grad, ci(g, g->acc_off[k]));
			LLVMValueRef r = loop_begin(g, &lr, ci(g, 0), N);
			LLVMValueRef ii = add(g, mul(g, r, N), r);
			store(g, fadd(g, load(g, g->f32, acc, ii), load(g, g->f32, dsq, add(g, ci(g, op->z_off), r))), acc, ii);
			loop_end(g, &lr);
			LLVMValueRef p = loop_begin(g, &lp, ci(g, 0), a);
			LLVMValueRef q = loop_begin(g, &lq, ci(g, 0), a);
			LLVMValueRef jj = add(g, mul(g, active_at(g, ws, k, p), N), active_at(g, ws, k, q));
			store(g, fadd(g, load(g, g->f32, acc, jj), load(g, g->f32, E, add(g, mul(g, p, GLD), q))), acc, jj);
			loop_end(g, &lq);
			loop_end(g, &lp);
			continue;
		}
		int i = op->in - 1;
		LLVMValueRef ai = active_count(g, ws, i), ai8 = pad8v(g, ai);
		LLVMValueRef VLD = ci(g, pad8(op->in_size));
		LLVMValueRef Vc = at(g, g->f32, ws, ci(g, g->vc_off[k])), T = at(g, g->f32, ws, ci(g, g->t_off[k]));
		LLVMValueRef EV = at(g, g->f32, ws, ci(g, g->scratch_off[0]));
		LLVMValueRef ET = at(g, g->f32, ws, ci(g, g->scratch_off[1]));
		LLVMValueRef Y = at(g, g->f32, ws, ci(g, g->scratch_off[2]));
		/* the active block of Gbar times V and T */
		emit_gemm(g, &(gemm){ .C = EV, .ldc = VLD, .A = E, .lda = GLD, .B = Vc, .ldb = VLD, .brows = act,
		                      .alpha = 1, .M = a, .N = ai8, .K = a });
		emit_gemm(g, &(gemm){ .C = ET, .ldc = VLD, .A = E, .lda = GLD, .B = T, .ldb = VLD, .brows = act,
		                      .alpha = 1, .M = a, .N = ai8, .K = a });
		/* row r: Y = Gbar V = dsq_r V[r] + EV[pos(r)];  dW[r, A_i] += 2 Gbar T */
		LLVMValueRef pos = var(g, g->i64, ci(g, 0));
		LLVMValueRef r = loop_begin(g, &lr, ci(g, 0), N);
		LLVMValueRef cr = load(g, g->f32, dsq, add(g, ci(g, op->z_off), r));
		LLVMValueRef on = var(g, g->i1, LLVMConstInt(g->i1, 0, 0));
		LLVMBasicBlockRef d0 = if_begin(g, LLVMBuildICmp(g->b, LLVMIntSLT, get(g, g->i64, pos), a, ""));
		set(g, on, LLVMBuildICmp(g->b, LLVMIntEQ, active_at(g, ws, k, get(g, g->i64, pos)), r, ""));
		if_end(g, d0);
		LLVMValueRef onv = get(g, g->i1, on), p = get(g, g->i64, pos);
		LLVMValueRef prow = mul(g, LLVMBuildSelect(g->b, onv, p, ci(g, 0), ""), VLD), rrow = mul(g, r, VLD);
		LLVMValueRef t = loop_begin(g, &lt, ci(g, 0), ai8);
		/* (a select, not a product with 0: scratch rows of inactive units are stale) */
		LLVMValueRef ev = LLVMBuildSelect(g->b, onv, load(g, g->f32, EV, add(g, prow, t)), LLVMConstReal(g->f32, 0), "");
		LLVMValueRef y = fadd(g, fmul(g, cr, load(g, g->f32, Vc, add(g, rrow, t))), ev);
		store(g, y, Y, add(g, rrow, t));
		loop_end(g, &lt);
		t = loop_begin(g, &lt, ci(g, 0), ai);
		LLVMValueRef et = LLVMBuildSelect(g->b, onv, load(g, g->f32, ET, add(g, prow, t)), LLVMConstReal(g->f32, 0), "");
		LLVMValueRef d = fadd(g, fmul(g, cr, load(g, g->f32, T, add(g, rrow, t))), et);
		LLVMValueRef gi = add(g, ci(g, op->w_off), add(g, mul(g, r, ci(g, op->in_size)), active_at(g, ws, i, t)));
		store(g, fadd(g, load(g, g->f32, grad, gi), fmul(g, LLVMConstReal(g->f32, 2), d)), grad, gi);
		loop_end(g, &lt);
		set(g, pos, add(g, p, LLVMBuildZExt(g->b, onv, g->i64, "")));
		loop_end(g, &lr);
		/* Gbar_i += V^T Y */
		emit_gemm(g, &(gemm){ .C = at(g, g->f32, ws, ci(g, g->gbar_off[i])), .ldc = ci(g, pad8(m->ops[i].out_size)),
		                      .A = Vc, .lda = VLD, .atrans = true, .B = Y, .ldb = VLD, .accumulate = true,
		                      .alpha = 1, .M = ai, .N = ai8, .K = N });
	}
}

/* Back-propagation of dlogits and dz through the forward pass, masks fixed;
 * the adjoints of the values are kept in the tangent area of ws. */
static void emit_backprop(gen *g, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef dlogits, LLVMValueRef dz, LLVMValueRef grad)
{
	const ir_module *m = g->m;
	for (int v = 1; v <= m->n_ops; v++) {
		loop l;
		LLVMValueRef i = loop_begin(g, &l, ci(g, 0), ci(g, value_size(m, v)));
		store(g, cd(g, 0), tan_ptr(g, ws, v), i);
		loop_end(g, &l);
	}
	LLVMValueRef has_dz = LLVMBuildIsNotNull(g->b, dz, "");
	for (int k = m->n_ops - 1; k >= 0; k--) {
		const ir_op *op = &m->ops[k];
		LLVMValueRef delta = tan_ptr(g, ws, k + 1);
		loop lr, lt;
		LLVMValueRef r = loop_begin(g, &lr, ci(g, 0), ci(g, op->out_size));
		LLVMValueRef d;
		if (!op->relu) {
			d = ext(g, load(g, g->f32, dlogits, r));
		} else {
			LLVMValueRef on = LLVMBuildFCmp(g->b, LLVMRealOGT, load(g, g->f64, val_ptr(g, ws, k + 1), r), cd(g, 0), "");
			d = LLVMBuildSelect(g->b, on, load(g, g->f64, delta, r), cd(g, 0), "");
			LLVMValueRef zi = add(g, ci(g, op->z_off), r);
			/* dz may be NULL: select a safe address, then the value */
			LLVMValueRef safe = LLVMBuildSelect(g->b, has_dz, dz, dlogits, "");
			LLVMValueRef dzv = ext(g, load(g, g->f32, safe, LLVMBuildSelect(g->b, has_dz, zi, ci(g, 0), "")));
			d = LLVMBuildFAdd(g->b, d, LLVMBuildSelect(g->b, has_dz, dzv, cd(g, 0), ""), "");
		}
		store(g, d, delta, r);
		LLVMValueRef bi = add(g, ci(g, op->b_off), r);
		store(g, LLVMBuildFAdd(g->b, load(g, g->f32, grad, bi), trunc32(g, d), ""), grad, bi);
		LLVMValueRef row = add(g, ci(g, op->w_off), mul(g, r, ci(g, op->in_size)));
		LLVMValueRef t = loop_begin(g, &lt, ci(g, 0), ci(g, op->in_size));
		LLVMValueRef wi = add(g, row, t);
		store(g, LLVMBuildFAdd(g->b, load(g, g->f32, grad, wi), trunc32(g, LLVMBuildFMul(g->b, d, activation(g, ws, op->in, t), "")), ""), grad, wi);
		if (op->in > 0) {
			LLVMValueRef din = tan_ptr(g, ws, op->in);
			LLVMValueRef w = ext(g, load(g, g->f32, P, wi));
			store(g, LLVMBuildFAdd(g->b, load(g, g->f64, din, t), LLVMBuildFMul(g->b, w, d, ""), ""), din, t);
		}
		loop_end(g, &lt);
		loop_end(g, &lr);
	}
}

static void emit_train_backward(gen *g)
{
	static const char *names[] = { "P", "pre", "ws", "dlogits", "dz", "dsq", "grad" };
	begin_function(g, "lln_train_backward", 7, names, NULL);
	LLVMValueRef ws = param(g, 2), dsq = param(g, 5), grad = param(g, 6);
	LLVMBasicBlockRef done = if_begin(g, LLVMBuildIsNotNull(g->b, dsq, ""));
	emit_gram_backward(g, ws, dsq, grad);
	if_end(g, done);
	emit_backprop(g, param(g, 0), ws, param(g, 3), param(g, 4), grad);
	LLVMBuildRetVoid(g->b);
}

/* dW^1 += 2 Gbar^1 W^1 with Gbar^1 summed over the batch. */
static void emit_train_finish(gen *g)
{
	static const char *names[] = { "P", "grad" };
	begin_function(g, "lln_train_finish", 2, names, NULL);
	const ir_module *m = g->m;
	LLVMValueRef P = param(g, 0), grad = param(g, 1);
	for (int k = 0; k < m->n_ops; k++) {
		const ir_op *op = &m->ops[k];
		if (g->acc_off[k] < 0)
			continue;
		LLVMValueRef N = ci(g, op->out_size), D = ci(g, op->in_size);
		LLVMValueRef acc = at(g, g->f32, grad, ci(g, g->acc_off[k]));
		if (op->in_size % VW == 0) {
			emit_gemm(g, &(gemm){ .C = at(g, g->f32, grad, ci(g, op->w_off)), .ldc = D, .A = acc, .lda = N,
			                      .B = at(g, g->f32, P, ci(g, op->w_off)), .ldb = D, .accumulate = true,
			                      .alpha = 2, .M = N, .N = D, .K = N });
			continue;
		}
		loop lr, lq;
		LLVMValueRef r = loop_begin(g, &lr, ci(g, 0), N);
		LLVMValueRef q = loop_begin(g, &lq, ci(g, 0), N);
		LLVMValueRef c = load(g, g->f32, acc, add(g, mul(g, r, N), q));
		LLVMBasicBlockRef done = if_begin(g, LLVMBuildFCmp(g->b, LLVMRealONE, c, LLVMConstReal(g->f32, 0), ""));
		emit_axpy(g, at(g, g->f32, grad, add(g, ci(g, op->w_off), mul(g, r, D))),
		          LLVMBuildFMul(g->b, c, LLVMConstReal(g->f32, 2), ""), at(g, g->f32, P, add(g, ci(g, op->w_off), mul(g, q, D))), D);
		if_end(g, done);
		loop_end(g, &lq);
		loop_end(g, &lr);
	}
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

static void emit_descriptor(gen *g, LLVMValueRef fns[8])
{
	const ir_module *m = g->m;
	LLVMTypeRef layer_t = LLVMStructTypeInContext(g->c, (LLVMTypeRef[]){ g->ptr, g->i32, g->i32 }, 3, 0);
	LLVMTypeRef shape_t = LLVMArrayType2(g->i32, 4);
	LLVMTypeRef tensor_t = LLVMStructTypeInContext(g->c,
		(LLVMTypeRef[]){ g->ptr, g->i32, shape_t, g->i64, g->i64, g->i32, g->i32 }, 7, 0);

	LLVMValueRef *layers = calloc((size_t)m->n_layers + 1, sizeof *layers);
	for (int i = 0; i < m->n_layers; i++)
		layers[i] = LLVMConstNamedStruct(layer_t, (LLVMValueRef[]){ cstring(g, m->layers[i].name),
			ci32(g, m->layers[i].size), ci32(g, m->layers[i].offset) }, 3);
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
		ci32(g, m->n_hidden), ci32(g, m->n_layers), ci32(g, m->n_tensors), ci32(g, 0),
		ci(g, m->n_params), ci(g, g->ws_floats), ci(g, g->pre_floats), ci(g, g->grad_floats),
		ci(g, g->jac_off[m->n_ops - 1]),
		LLVMConstReal(g->f32, m->mean), LLVMConstReal(g->f32, m->std), lg, tg,
		fns[0], fns[1], fns[2], fns[3], fns[4], fns[5], fns[6], fns[7],
	};
	LLVMTypeRef ft[sizeof fields / sizeof *fields];
	for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
		ft[i] = LLVMTypeOf(fields[i]);
	LLVMTypeRef model_t = LLVMStructTypeInContext(g->c, ft, sizeof fields / sizeof *fields, 0);
	const_global(g, "lln_model", LLVMConstNamedStruct(model_t, fields, sizeof fields / sizeof *fields), true);
}

static void embed_weights(gen *g, const float *w)
{
	/* raw little-endian bytes: one constant, cheap to build for any size */
	LLVMValueRef init = LLVMConstStringInContext2(g->c, (const char *)w, (size_t)g->m->n_params * sizeof(float), 1);
	LLVMValueRef gv = const_global(g, "lln_weights", init, true);
	LLVMSetAlignment(gv, 64);
}

/* ---- target and optimization ---- */

static LLVMTargetMachineRef make_target(const char *cpu, int opt, char *err)
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

cg_unit *cg_generate(const ir_module *m, const cg_options *o, char *err)
{
	LLVMTargetMachineRef tm = make_target(o->cpu, o->opt_level, err);
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
	plan_layout(&g, a);

	/* in the order of rt_model's function pointers */
	void (*emitters[])(gen *) = { emit_prepare, emit_forward_fn, emit_grads, emit_certify, emit_direction,
	                              emit_train_forward, emit_train_backward, emit_train_finish };
	/* a certifier never trains: its descriptor holds NULL there, which
	 * saves about 40% of the code to optimize and emit */
	int nfns = o->weights ? 5 : 8;
	LLVMValueRef fns[8];
	for (int i = 0; i < 8; i++) {
		if (i < nfns)
			emitters[i](&g);
		fns[i] = i < nfns ? g.fn : LLVMConstNull(g.ptr);
	}
	emit_descriptor(&g, fns);
	if (o->weights)
		embed_weights(&g, o->weights);
	if (o->train_defaults)
		const_global(&g, "lln_train_defaults", LLVMConstStringInContext2(g.c, o->train_defaults, strlen(o->train_defaults), 0), true);
	LLVMDisposeBuilder(g.b);
	arena_free(a);

	char *msg = NULL;
	if (LLVMVerifyModule(u->mod, LLVMReturnStatusAction, &msg)) {
		fprintf(stderr, "%s\n", msg);
		internal_error("generated LLVM IR does not verify");
	}
	LLVMDisposeMessage(msg);

	if (o->opt_level > 0) {
		LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
		LLVMPassBuilderOptionsSetLoopVectorization(po, 1);
		LLVMPassBuilderOptionsSetSLPVectorization(po, 1);
		char pipeline[32];
		snprintf(pipeline, sizeof pipeline, "default<O%d>", o->opt_level);
		LLVMErrorRef e = LLVMRunPasses(u->mod, pipeline, tm, po);
		LLVMDisposePassBuilderOptions(po);
		if (e) {
			char *em = LLVMGetErrorMessage(e);
			fprintf(stderr, "%s\n", em);
			LLVMDisposeErrorMessage(em);
			internal_error("LLVM optimization pipeline failed");
		}
	}
	return u;
}

void cg_dump(FILE *out, cg_unit *u)
{
	char *s = LLVMPrintModuleToString(u->mod);
	fputs(s, out);
	LLVMDisposeMessage(s);
}
