/* cg.h: the code generator's internal map, shared by cg.c (the kernels)
 * and one file per operation (cg_dense.c, cg_conv2d.c, cg_avgpool.c,
 * cg_add.c, cg_rnn.c).
 *
 * The kernels of rt_model are written once, in cg.c, over the small
 * interface `cg_op` below: how an operation maps its operands forward (in
 * double), how it maps gradient rows (tangents, in float), and the adjoints
 * of both for training.  An operation's file implements that interface and
 * nothing else; the Gram recurrence, which only pays for chains of dense
 * layers, lives with dense.  The IR-building helpers are static inline so
 * that every file gets them without exporting them.
 */
#ifndef LLNC_CG_H
#define LLNC_CG_H

#include <string.h>

#include <llvm-c/Core.h>

#include "llnc.h"

/* ---- the builder's state and the workspace layout ---- */

typedef struct gen {
	LLVMContextRef c;
	LLVMModuleRef mod;
	LLVMBuilderRef b;
	LLVMTypeRef f32, f64, i32, i64, i1, ptr, vf;   /* vf: VW floats (16 in cg_batch.c with AVX-512) */
	bool avx512;          /* the target has 512-bit vectors */
	bool gram_wide;       /* the Gram products in 8-row tiles of 16-float vectors:
	                       * while train_gram and train_gram_backward are emitted
	                       * (the Gram code of a model that has no train_gram, in
	                       * its per-example kernels, keeps small tiles) */
	LLVMValueRef gram_fn, gram_bw_fn;   /* train_gram and train_gram_backward, which
	                                     * the per-example kernels call, or NULL */
	struct gemm_fn *gemm_fns;   /* the matrix products' functions so far (cg_gemm) */
	int n_gemm_fns;
	LLVMValueRef fn;
	LLVMBasicBlockRef entry;
	const ir_module *m;
	/* workspace offsets, in floats; doubles take two */
	int64_t *val_off;     /* value v: n(v) doubles (pre-activations for hidden ops) */
	int64_t *tan_off;     /* value v: tangent doubles (direction), or adjoints (backprop) */
	int64_t *act_off;     /* op k: its active list (int32) when relu */
	int64_t *jac_off;     /* op k: its gradient rows, out x n_in floats (-1: rows are W) */
	int64_t *rbar_off;    /* op k: adjoint of its rows, out x n_in floats (tangent training) */
	int64_t *pre_off;     /* op k: 3 x out floats of first-layer q-norms (-1: none) */
	int64_t id_off;       /* the identity, n_in x n_in floats: rows of the input (-1: none) */
	/* training, by the Gram recurrence (cg_dense.c) */
	int64_t *cnt_off;     /* op k: its number of active units (int32) */
	int64_t *gc_off;      /* hidden op k: Gram matrix of its active rows, out x out */
	int64_t *gbar_off;    /* hidden op k: adjoint of that matrix, out x out */
	int64_t *vc_off;      /* hidden op k with a hidden input: W over active inputs, out x in */
	int64_t *t_off;       /* ... and that times the input's Gram, out x in */
	int64_t *kpre_off;    /* first-layer hidden op k: W W^T in pre */
	int64_t *acc_off;     /* first-layer hidden op k: batch accumulator in grad */
	int64_t *wtw_off;     /* hidden op k with a hidden input: W^T W in pre, in x in */
	int64_t *hacc_off;    /* ... and its batch accumulator in grad, in x in */
	int64_t row_off, row2_off;  /* two scratch rows of the widest layer */
	int64_t sq_off;             /* squared gradient norms, for certify's Gram strategy */
	/* rounding-error bounds (cg_certify.c), doubles */
	int64_t *ez_off;      /* value v: bound on |z - z^| of each unit */
	int64_t *err_off;     /* value v: bound on a tangent's or an adjoint's error */
	int64_t *nrm_off[RT_NNORMS];  /* value v: dual norm (of ball p) of each computed row */
	int64_t *rer_off[RT_NNORMS];  /* value v: bound on that row's error in that norm */
	int64_t *tri_off[RT_NNORMS];  /* value v: triangle-inequality bound on each row's dual norm */
	int64_t keep_off;     /* int32 list of the rows a layer forms (pruned certify) */
	int64_t umin_off;     /* 3 doubles: upper bounds on the smallest radius so far */
	int64_t tmp_off;      /* doubles of the widest value */
	int64_t lb_off;       /* 3 x n_hidden: sound lower bounds of each neuron's radius */
	int64_t zl_off;       /* n_hidden: |z| - ez, the sure distance of z from 0 */
	int64_t ref_off;      /* n_hidden int32: whose bounds are refined */
	int64_t lp_off, gap_off, refp_off;   /* the same for the logit pairs: 3 x n_out, n_out, n_out */
	int64_t *fan;         /* value v: terms its adjoint sums over its consumers */
	int64_t scratch_off[3];     /* matrices that live within one layer's step */
	int64_t ws_floats, pre_floats, grad_floats;
	/* the operand areas READ_BOUND reads (doubles per value, set by the
	 * caller before each apply), and what it adds to them */
	const int64_t *bound_off, *bound_base_off;
	double bound_scale;
	int group;            /* ops per kernel part (cg_part_step), 0: whole kernels */
	/* Rows have R floats: n_in, or while the training kernels of approximate
	 * ROLL are written (sampled), pad8(K): the tangents of the K sampled
	 * axes, whose indices are `axes` (a kernel parameter), scaled by
	 * sqrt(n_in / K) so that a row's squared norm is the estimate. */
	int64_t R;
	double in_scale;      /* the input's rows are in_scale I (cg_compute_rows) */
	bool sampled;
	LLVMValueRef axes;
	int64_t samp_off;     /* the input's rows then: n_in x R floats */
} gen;

static inline int64_t round16(int64_t n) { return (n + 15) & ~(int64_t)15; }
/* Compact matrices over active units have rows padded to a multiple of the
 * vector width, with zeros, so inner loops need no scalar tails. */
static inline int64_t pad8(int64_t n) { return (n + 7) & ~(int64_t)7; }

/* ---- small IR-building helpers ---- */

static inline LLVMValueRef ci(gen *g, int64_t v) { return LLVMConstInt(g->i64, (unsigned long long)v, 1); }
static inline LLVMValueRef ci32(gen *g, int32_t v) { return LLVMConstInt(g->i32, (unsigned long long)(int64_t)v, 1); }
static inline LLVMValueRef cd(gen *g, double v) { return LLVMConstReal(g->f64, v); }

static inline LLVMValueRef at(gen *g, LLVMTypeRef t, LLVMValueRef base, LLVMValueRef i)
{
	return LLVMBuildInBoundsGEP2(g->b, t, base, &i, 1, "");
}
static inline LLVMValueRef load(gen *g, LLVMTypeRef t, LLVMValueRef base, LLVMValueRef i)
{
	return LLVMBuildLoad2(g->b, t, at(g, t, base, i), "");
}
static inline void store(gen *g, LLVMValueRef v, LLVMValueRef base, LLVMValueRef i)
{
	LLVMBuildStore(g->b, v, at(g, LLVMTypeOf(v), base, i));
}
static inline LLVMValueRef add(gen *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWAdd(g->b, a, b, ""); }
static inline LLVMValueRef mul(gen *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWMul(g->b, a, b, ""); }
static inline LLVMValueRef ext(gen *g, LLVMValueRef f) { return LLVMBuildFPExt(g->b, f, g->f64, ""); }
static inline LLVMValueRef trunc32(gen *g, LLVMValueRef d) { return LLVMBuildFPTrunc(g->b, d, g->f32, ""); }

/* Reductions may be reassociated so that they vectorise; the result is
 * still deterministic for a given binary. */
static inline LLVMValueRef fast(LLVMValueRef v)
{
	LLVMSetFastMathFlags(v, LLVMFastMathAllowReassoc | LLVMFastMathAllowContract);
	return v;
}
static inline LLVMValueRef fadd(gen *g, LLVMValueRef a, LLVMValueRef b) { return fast(LLVMBuildFAdd(g->b, a, b, "")); }
static inline LLVMValueRef fmul(gen *g, LLVMValueRef a, LLVMValueRef b) { return fast(LLVMBuildFMul(g->b, a, b, "")); }

static inline LLVMValueRef intrinsic(gen *g, const char *name, LLVMValueRef x, LLVMValueRef y)
{
	unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
	LLVMTypeRef t = LLVMTypeOf(x);
	LLVMValueRef f = LLVMGetIntrinsicDeclaration(g->mod, id, &t, 1);
	LLVMTypeRef ft = LLVMIntrinsicGetType(g->c, id, &t, 1);
	LLVMValueRef args[2] = { x, y };
	return LLVMBuildCall2(g->b, ft, f, args, y ? 2 : 1, "");
}
static inline LLVMValueRef intrinsic_n(gen *g, const char *name, LLVMTypeRef overload, LLVMValueRef *args, unsigned n)
{
	unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
	LLVMValueRef f = LLVMGetIntrinsicDeclaration(g->mod, id, &overload, 1);
	return LLVMBuildCall2(g->b, LLVMIntrinsicGetType(g->c, id, &overload, 1), f, args, n, "");
}
static inline LLVMValueRef fabsv(gen *g, LLVMValueRef x) { return intrinsic(g, "llvm.fabs", x, NULL); }
static inline LLVMValueRef fmaxv(gen *g, LLVMValueRef x, LLVMValueRef y) { return intrinsic(g, "llvm.maxnum", x, y); }

/* Mutable scalars live in entry-block allocas; mem2reg turns them into SSA. */
static inline LLVMValueRef var(gen *g, LLVMTypeRef t, LLVMValueRef init)
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
static inline LLVMValueRef get(gen *g, LLVMTypeRef t, LLVMValueRef slot) { return LLVMBuildLoad2(g->b, t, slot, ""); }
static inline void set(gen *g, LLVMValueRef slot, LLVMValueRef v) { LLVMBuildStore(g->b, v, slot); }

static inline LLVMBasicBlockRef block(gen *g, const char *name) { return LLVMAppendBasicBlockInContext(g->c, g->fn, name); }

/* for (i = start; i < end; i++) as a guarded do-while, the shape LLVM's
 * loop passes like best. */
typedef struct loop { LLVMBasicBlockRef body, exit; LLVMValueRef i, end; int64_t step; } loop;

static inline LLVMValueRef loop_begin_step(gen *g, loop *l, LLVMValueRef start, LLVMValueRef end, int64_t step)
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
static inline LLVMValueRef loop_begin(gen *g, loop *l, LLVMValueRef start, LLVMValueRef end)
{
	return loop_begin_step(g, l, start, end, 1);
}
static inline void loop_end(gen *g, loop *l)
{
	LLVMValueRef next = add(g, l->i, ci(g, l->step));
	LLVMBasicBlockRef latch = LLVMGetInsertBlock(g->b);
	LLVMAddIncoming(l->i, &next, &latch, 1);
	LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, next, l->end, ""), l->body, l->exit);
	LLVMPositionBuilderAtEnd(g->b, l->exit);
}

/* if (cond) { ... } */
static inline LLVMBasicBlockRef if_begin(gen *g, LLVMValueRef cond)
{
	LLVMBasicBlockRef then = block(g, "then"), done = block(g, "endif");
	LLVMBuildCondBr(g->b, cond, then, done);
	LLVMPositionBuilderAtEnd(g->b, then);
	return done;
}
static inline void if_end(gen *g, LLVMBasicBlockRef done)
{
	LLVMBuildBr(g->b, done);
	LLVMPositionBuilderAtEnd(g->b, done);
}

/* ---- explicit vectors for the inner loops ----
 * Written as 8-wide vector operations with a scalar tail, so that they
 * vectorise whether or not LLVM can prove the buffers disjoint (they often
 * share the workspace) and without run-time overlap checks on short rows. */
enum { VW = 8 };

static inline LLVMValueRef vload(gen *g, LLVMValueRef base, LLVMValueRef i)
{
	LLVMValueRef v = LLVMBuildLoad2(g->b, g->vf, at(g, g->f32, base, i), "");
	LLVMSetAlignment(v, 4);
	return v;
}
static inline void vstore(gen *g, LLVMValueRef v, LLVMValueRef base, LLVMValueRef i)
{
	LLVMSetAlignment(LLVMBuildStore(g->b, v, at(g, g->f32, base, i)), 4);
}
static inline LLVMValueRef vfma(gen *g, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c)
{
	LLVMValueRef args[3] = { a, b, c };
	return intrinsic_n(g, "llvm.fmuladd", g->vf, args, 3);
}
static inline LLVMValueRef vsplat(gen *g, LLVMValueRef x)
{
	LLVMValueRef v = LLVMBuildInsertElement(g->b, LLVMGetUndef(g->vf), x, ci32(g, 0), "");
	return LLVMBuildShuffleVector(g->b, v, LLVMGetUndef(g->vf),
	                              LLVMConstNull(LLVMVectorType(g->i32, LLVMGetVectorSize(g->vf))), "");
}
static inline LLVMValueRef vround(gen *g, LLVMValueRef n) { return LLVMBuildAnd(g->b, n, ci(g, ~(int64_t)(VW - 1)), ""); }

/* dst[0..n) += c * src[0..n), in float */
static inline void emit_axpy(gen *g, LLVMValueRef dst, LLVMValueRef c, LLVMValueRef src, LLVMValueRef n)
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
static inline LLVMValueRef emit_dot(gen *g, LLVMValueRef a, LLVMValueRef b, LLVMValueRef n)
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
 * is how active units are gathered without copying.  Each block of `rows`
 * (4 unless set, at most 8) by two vectors of C stays in registers over the
 * whole k loop, so every element of B loaded feeds `rows` multiply-adds.
 * N may be any width; the last N mod (vector width) columns take masked
 * loads and stores. */
typedef struct gemm {
	LLVMValueRef C, ldc, A, lda, B, ldb;
	LLVMValueRef arows, acols, brows;   /* i32 index lists, or NULL */
	bool atrans, accumulate;
	bool scatter;   /* C's row i is row arows[i], not i */
	bool symmetric; /* C is known symmetric (M = N up to padding): only its
	                 * blocks on or above the diagonal are computed, then the
	                 * upper triangle is copied onto the lower */
	bool upper;     /* B is upper triangular (B(k, j) = 0 for k > j): a
	                 * panel of columns takes the rows of B above its end */
	float alpha;
	int rows;
	LLVMValueRef M, N, K;
} gemm;

static inline LLVMValueRef lookup(gen *g, LLVMValueRef list, LLVMValueRef i)
{
	return list ? LLVMBuildSExt(g->b, load(g, g->i32, list, i), g->i64, "") : i;
}


void cg_gemm(gen *g, const gemm *p);
/* Lanes [0, n) (n an i64) of a vector; a vector at base[i] whose lanes
 * outside mask (NULL: none) read as 0 and are not written. */
LLVMValueRef cg_lanes_below(gen *g, LLVMValueRef n);
LLVMValueRef cg_load_lanes(gen *g, LLVMValueRef base, LLVMValueRef i, LLVMValueRef mask);
void cg_store_lanes(gen *g, LLVMValueRef v, LLVMValueRef base, LLVMValueRef i, LLVMValueRef mask);
void cg_wide_gemm(gen *g, const gemm *p);

static inline LLVMValueRef pad8v(gen *g, LLVMValueRef n) { return LLVMBuildAnd(g->b, add(g, n, ci(g, VW - 1)), ci(g, ~(int64_t)(VW - 1)), ""); }

/* ---- values, activity and the operation interface ---- */

/* Pointer to value v's doubles (or its tangents) inside the workspace. */
static inline LLVMValueRef val_ptr(gen *g, LLVMValueRef ws, int v) { return at(g, g->f32, ws, ci(g, g->val_off[v])); }
static inline LLVMValueRef tan_ptr(gen *g, LLVMValueRef ws, int v) { return at(g, g->f32, ws, ci(g, g->tan_off[v])); }

/* Whether value v passes through a ReLU (its units are hidden neurons). */
static inline bool has_relu(const gen *g, int v) { return v > 0 && g->m->ops[v - 1].relu; }

/* Whether unit t of value v is on: always, unless v passes through a ReLU. */
static inline LLVMValueRef unit_on(gen *g, LLVMValueRef ws, int v, LLVMValueRef t)
{
	return LLVMBuildFCmp(g->b, LLVMRealOGT, load(g, g->f64, val_ptr(g, ws, v), t), cd(g, 0), "");
}

/* Value `v` element t as the next op sees it: after the ReLU when v is a
 * hidden layer. */
static inline LLVMValueRef activation(gen *g, LLVMValueRef ws, int v, LLVMValueRef t)
{
	LLVMValueRef x = load(g, g->f64, val_ptr(g, ws, v), t);
	if (has_relu(g, v))
		x = LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOGT, x, cd(g, 0), ""), x, cd(g, 0), "");
	return x;
}

/* What an operation reads of its operands in double: their activations,
 * their tangents masked by the same ReLUs (a Jacobian-vector product), or,
 * for the rounding-error bounds of certify.c, absolute values and bounds
 * through |A| (abs_mode).  A bound read past a ReLU is masked too: a unit
 * whose sign is decided is exactly 0 when off, exactly z when on. */
typedef enum {
	READ_VALUE,     /* activation */
	READ_TANGENT,   /* tangent, masked */
	READ_ABS,       /* |activation| */
	READ_ABSTAN,    /* |tangent|, masked */
	READ_BOUND,     /* g->bound_off[v], masked; with g->bound_scale x g->bound_base_off[v] added */
} read_mode;

static inline bool abs_mode(read_mode m) { return m >= READ_ABS; }

static inline LLVMValueRef masked(gen *g, LLVMValueRef ws, int v, LLVMValueRef t, LLVMValueRef u)
{
	return has_relu(g, v) ? LLVMBuildSelect(g->b, unit_on(g, ws, v, t), u, cd(g, 0), "") : u;
}

static inline LLVMValueRef operand(gen *g, LLVMValueRef ws, read_mode mode, int v, LLVMValueRef t)
{
	switch (mode) {
	case READ_VALUE:
		return activation(g, ws, v, t);
	case READ_ABS:
		return fabsv(g, activation(g, ws, v, t));
	case READ_TANGENT:
	case READ_ABSTAN: {
		LLVMValueRef u = masked(g, ws, v, t, load(g, g->f64, tan_ptr(g, ws, v), t));
		return mode == READ_ABSTAN ? fabsv(g, u) : u;
	}
	case READ_BOUND: {
		LLVMValueRef u = load(g, g->f64, at(g, g->f32, ws, ci(g, g->bound_off[v])), t);
		if (g->bound_base_off) {
			LLVMValueRef b = load(g, g->f64, at(g, g->f32, ws, ci(g, g->bound_base_off[v])), t);
			u = LLVMBuildFAdd(g->b, u, LLVMBuildFMul(g->b, b, cd(g, g->bound_scale), ""), "");
		}
		return masked(g, ws, v, t, u);
	}
	}
	return NULL;
}

/* A weight as the mode wants it: w, or |w| for bounds. */
static inline LLVMValueRef weight_for(gen *g, read_mode mode, LLVMValueRef w)
{
	return abs_mode(mode) ? fabsv(g, w) : w;
}

/* Row i of a block of gradient rows (n_in floats each). */
static inline LLVMValueRef row_at(gen *g, LLVMValueRef rows, LLVMValueRef i)
{
	return at(g, g->f32, rows, mul(g, i, ci(g, g->R)));
}

/* if (unit t of value v is on) { ...: a no-op guard when v has no ReLU. */
static inline LLVMBasicBlockRef on_begin(gen *g, LLVMValueRef ws, int v, LLVMValueRef t)
{
	return has_relu(g, v) ? if_begin(g, unit_on(g, ws, v, t)) : NULL;
}
static inline void on_end(gen *g, LLVMBasicBlockRef done)
{
	if (done)
		if_end(g, done);
}

static inline LLVMValueRef active_count(gen *g, LLVMValueRef ws, int k)
{
	return LLVMBuildSExt(g->b, load(g, g->i32, ws, ci(g, g->cnt_off[k])), g->i64, "");
}
static inline LLVMValueRef active_at(gen *g, LLVMValueRef ws, int k, LLVMValueRef p)
{
	return LLVMBuildSExt(g->b, load(g, g->i32, at(g, g->f32, ws, ci(g, g->act_off[k])), p), g->i64, "");
}

/* The part-th of `parts` shares (i64 values) of n rows (i64):
 * [n part / parts, n (part + 1) / parts), both ends cut down to multiples
 * of align (a power of two) so that row blocks stay whole, the last share
 * ending at n. */
static inline void cg_share(gen *g, LLVMValueRef n, int64_t align, LLVMValueRef part, LLVMValueRef parts,
                            LLVMValueRef *lo, LLVMValueRef *hi)
{
	*lo = LLVMBuildSDiv(g->b, mul(g, n, part), parts, "");
	*hi = LLVMBuildSDiv(g->b, mul(g, n, add(g, part, ci(g, 1))), parts, "");
	if (align == 1)
		return;
	*lo = LLVMBuildAnd(g->b, *lo, ci(g, -align), "");
	LLVMValueRef last = LLVMBuildICmp(g->b, LLVMIntEQ, add(g, part, ci(g, 1)), parts, "");
	*hi = LLVMBuildSelect(g->b, last, n, LLVMBuildAnd(g->b, *hi, ci(g, -align), ""), "");
}

/* The inactive units of op k (n - active_count of them, in decreasing
 * order), after its active ones in the same list. */
static inline LLVMValueRef inactive_list(gen *g, LLVMValueRef ws, int k)
{
	return at(g, g->i32, at(g, g->f32, ws, ci(g, g->act_off[k])), active_count(g, ws, k));
}

/* if (cond) list[(*n)++] = j: index lists (int32) such as the active ones;
 * n is an i64 var */
static inline void push_if(gen *g, LLVMValueRef cond, LLVMValueRef list, LLVMValueRef n, LLVMValueRef j)
{
	LLVMBasicBlockRef done = if_begin(g, cond);
	LLVMValueRef i = get(g, g->i64, n);
	store(g, LLVMBuildTrunc(g->b, j, g->i32, ""), list, i);
	set(g, n, add(g, i, ci(g, 1)));
	if_end(g, done);
}

static inline void emit_zero(gen *g, LLVMValueRef p, int64_t n)
{
	loop l;
	LLVMValueRef i = loop_begin(g, &l, ci(g, 0), ci(g, n));
	store(g, LLVMConstReal(g->f32, 0), p, i);
	loop_end(g, &l);
}

/* An operation's code generation.  Rows are gradient rows (tangents): a
 * value of n units has n rows of n_in floats, row-major.  src[k] and
 * sbar[k] belong to operand k (op->in[k]); the operation applies its
 * operands' ReLU masks itself (unit_on, or the active lists of cg_dense.c).
 * Operand 0 (the model input) has the identity as rows and no adjoint:
 * sbar[k] is NULL there. */
typedef struct cg_op {
	/* dst[j] = (A x)[j], plus the bias when `bias`, for every output unit j,
	 * in double; x is read through `operand` in the given mode, and with an
	 * abs_mode the map is |A| (and |b|) */
	void (*apply)(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, read_mode mode, bool bias,
	              LLVMValueRef dst);
	/* dst = A diag(m) src: the output's rows from the operands' */
	void (*rows)(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef src[2], LLVMValueRef dst);
	/* adj[v] += A^T delta (|A|^T delta with `abs`) for each operand v, whose
	 * adjoint is the doubles at ws offset adj[v]; the input (v = 0) only
	 * with `to_input`.  delta holds the output's adjoint (doubles).  Masks
	 * are the caller's: the adjoint is with respect to the operands after
	 * their ReLUs. */
	void (*transpose)(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef delta,
	                  const int64_t *adj, bool abs, bool to_input);
	/* grad += d/dW and d/db of delta . (A x + b), x the activations */
	void (*param_grad)(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef delta, LLVMValueRef grad);
	/* the adjoint of rows: dbar holds the output rows' adjoint; adds
	 * d/dW of <dbar, A diag(m) src> to grad and diag(m) A^T dbar to sbar[k] */
	void (*rows_adjoint)(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef src[2],
	                     LLVMValueRef dbar, LLVMValueRef sbar[2], LLVMValueRef grad);
} cg_op;

extern const cg_op cg_op_dense, cg_op_conv2d, cg_op_avgpool, cg_op_add, cg_op_rnn;
extern const cg_op *const cg_ops[OP_COUNT];   /* by op_kind (cg.c) */

/* ---- kernel pieces shared by cg.c and cg_certify.c ---- */

/* A kernel: void NAME(params), pointers except the int32 ones in `ints`
 * (a bit per parameter index); the builder is left in its entry block. */
LLVMValueRef cg_begin_function(gen *g, const char *name, int nparams, const char **pnames, unsigned ints);
LLVMValueRef cg_param(gen *g, int i);
/* Lets the function being written use 512-bit vectors, given AVX-512. */
void cg_wide_vectors(gen *g);
/* Deep models' kernels in parts.  LLVM's optimisation and code generation
 * cost more than linearly in a function's size, and kernels grow with
 * depth, so a deep model built in quadratic time.  When a model has more
 * than g->group ops, each loop over ops calls cg_part_step at the top of
 * every op: every g->group ops then go to a function of their own, called
 * where they stand.  The values of the enclosing function that a part uses
 * become its parameters (cg_part_close), so the code inside needs no
 * change; it must not define values used after the part. */
typedef struct cg_part {
	LLVMValueRef fn, outer_fn;
	LLVMBasicBlockRef outer_entry, outer_at;
	int ops;   /* ops in the open part; 0: none open */
} cg_part;
void cg_part_step(gen *g, cg_part *p);
void cg_part_close(gen *g, cg_part *p);
/* The forward pass in double: values to ws, float copies to z and logits;
 * the input is x + xlo when the LLVM value xlo (a run-time pointer that may
 * be NULL) is given, else x. */
void cg_forward(gen *g, LLVMValueRef P, LLVMValueRef x, LLVMValueRef xlo, LLVMValueRef ws, LLVMValueRef z,
                LLVMValueRef logits);
/* A dense layer reading the input has its weights as gradient rows. */
bool cg_rows_are_weights(const gen *g, const ir_op *op);
LLVMValueRef cg_padded(gen *g, LLVMValueRef ws, const ir_op *op);
/* Where each value's rows are; a NULL rows[v] is filled in. */
void cg_row_places(gen *g, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef *rows);
/* Every value's rows, op by op, `hook` seeing each op's rows after it. */
typedef void row_hook(gen *g, int k, LLVMValueRef rows, void *ctx);
void cg_compute_rows(gen *g, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef *rows, bool scale, row_hook *hook, void *ctx);
/* l1 norm, squared l2 norm and linf norm of n floats (row - row2), in double. */
void cg_norms(gen *g, LLVMValueRef row, LLVMValueRef row2, int64_t n, LLVMValueRef out[3]);
/* The dual norm ||g||_q of an l_p ball from the three sums. */
LLVMValueRef cg_dual(gen *g, LLVMValueRef sums[3], int p);
/* The batched training kernels of models without recurrence (cg_batch.c):
 * up to CG_BATCH examples per call; fns receives lln_train_batch_forward,
 * lln_train_batch_backward and lln_train_batch_weights, ws_floats their
 * workspace, and for approximate ROLL (cg_batch_tangents) the tangent
 * kernels lln_train_batch_tangents, lln_train_batch_tangents_backward and
 * lln_train_batch_tangent_weights, tws_floats theirs (else NULL and 0). */
enum { CG_BATCH = 64 };
bool cg_batchable(const ir_module *m);
bool cg_batch_tangents(const ir_module *m);
void cg_emit_batch(gen *g, LLVMValueRef fns[6], int64_t *ws_floats, int64_t *tws_floats);
/* The certify kernel (cg_certify.c), and the rounding-error bound of the
 * forward pass it shares with the direction kernel: ez(v) >= |z - z^| for
 * every unit of every value, for the model as written. */
void cg_emit_certify(gen *g);
void cg_forward_bounds(gen *g, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef x, LLVMValueRef xlo);
/* zl[h] = |z^_h| - ez_h; the number of hidden neurons with zl <= 0 (signs
 * undecided) and the first of them (-1 if none). */
LLVMValueRef cg_undecided(gen *g, LLVMValueRef ws, LLVMValueRef *first);
/* Terms of one output unit's sum (a row of A), and how many output units
 * read one input unit (a column of A, at most). */
static inline int64_t op_taps(const ir_op *op)
{
	switch (op->kind) {
	case OP_DENSE: return op->in_size;
	case OP_CONV2D: return (int64_t)op->ic * op->kernel * op->kernel;
	case OP_AVGPOOL: return (int64_t)op->kernel * op->kernel;
	case OP_RNN: return (int64_t)op->in_size + op->out_size + 2;
	default: return 2;
	}
}
static inline int64_t op_fanout(const ir_op *op)
{
	switch (op->kind) {
	case OP_DENSE: return op->out_size;
	case OP_CONV2D: return (int64_t)op->oc * op->kernel * op->kernel;
	case OP_AVGPOOL: return (int64_t)op->kernel * op->kernel;
	case OP_RNN: return op->out_size;
	default: return 1;
	}
}
/* A bound of the relative error of a double sum of n products, any order,
 * fused or not (gamma_n = n u / (1 - n u), generously), and of a float one. */
static inline double cg_gamma(int64_t n) { return (double)(n + 4) * 0x1p-52; }
static inline double cg_gamma32(int64_t n) { return (double)(n + 4) * 0x1p-23; }

/* Rounding toward zero of a non-negative double to float. */
LLVMValueRef cg_trunc_down(gen *g, LLVMValueRef d);

/* The active list of every hidden op, from z (float) or the workspace
 * (cg.c): what dense gathers with. */
void cg_active_lists(gen *g, LLVMValueRef ws, LLVMValueRef z);

/* Sliding windows (cg_conv2d.c, for conv2d and avgpool): for each output
 * unit j = (o, y, x) in order, begin(j), then tap(j, t, wi) for every input
 * unit t = (c, y stride + ky - padding, x stride + kx - padding) inside the
 * image, where c runs over all input channels (conv2d) or is o (avgpool)
 * and wi = ((o C + c) K + ky) K + kx indexes the tap's weight (conv2d),
 * then end(j).  Callbacks may be NULL. */
typedef struct window {
	void (*begin)(gen *g, const ir_op *op, LLVMValueRef j, void *ctx);
	void (*tap)(gen *g, const ir_op *op, LLVMValueRef j, LLVMValueRef t, LLVMValueRef wi, void *ctx);
	void (*end)(gen *g, const ir_op *op, LLVMValueRef j, void *ctx);
} window;
void cg_window(gen *g, const ir_op *op, const window *w, void *ctx);
/* The source coordinate, along one axis, of tap k for destination
 * coordinate d of a window op, and whether it lies inside the source (len
 * units): forward s = d stride + k - padding; transposed (the source is
 * the output, whose unit s reads d through tap k) s = (d + padding - k) /
 * stride when that is whole. */
LLVMValueRef cg_tap_at(gen *g, const ir_op *op, bool transposed, LLVMValueRef d, LLVMValueRef k, int64_t len,
                       LLVMValueRef *inside);
/* A window op (conv2d, avgpool) as vector arithmetic along rows of `ld`
 * floats, over the columns [c0, cend): forward, dst[j] = the sum over j's
 * taps of weight x src[t] for every output unit j, the rows of its
 * operand's units (activations of a batch, gradient rows of an example);
 * transposed, the operand units' rows from the output's (a batch's
 * adjoints).  Register-blocked: 8 destination channels by one or two
 * vectors of columns over every tap, each source row loaded once for the
 * block.  cend - c0 is a multiple of the vector width unless `tail`. */
typedef struct cg_wcols {
	LLVMValueRef src, dst;
	int64_t ld;
	LLVMValueRef c0, cend;
	bool tail;
	bool transposed;
	bool accumulate;   /* dst += ... */
	LLVMValueRef ws;   /* forward: source units that are off (unit_on) add nothing; NULL: all on */
} cg_wcols;
void cg_window_cols(gen *g, const ir_op *op, LLVMValueRef P, const cg_wcols *w);
/* dst = the op's gradient rows (R floats each) from its operand's, src,
 * masked by the operand's ReLUs (ws). */
void cg_window_rows(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef src, LLVMValueRef dst);

/* ---- the Gram recurrence for chains of dense layers (cg_dense.c) ---- */

/* G^1 = W W^T of a first hidden layer (accumulated in double when exact,
 * as certify needs, else in float), and for training W^T W of the others,
 * once per weight vector, into pre: the part-th of `parts` shares of their
 * rows (i64 values; 0, 1: all). */
void cg_gram_prepare(gen *g, LLVMValueRef P, LLVMValueRef pre, LLVMValueRef part, LLVMValueRef parts, bool exact);
/* sq for every hidden neuron (and, for_logits, V and T of the logits). */
void cg_gram_forward(gen *g, LLVMValueRef P, LLVMValueRef pre, LLVMValueRef ws, LLVMValueRef sq, bool for_logits);
/* The adjoint of cg_gram_forward for the adjoint dsq of sq, into grad. */
void cg_gram_backward(gen *g, LLVMValueRef pre, LLVMValueRef ws, LLVMValueRef dsq, LLVMValueRef grad);
/* The batch accumulators' terms: dW^1 += 2 Gbar^1 W^1 and dW += 2 W H,
 * for the part-th of `parts` shares of the rows of each dW. */
void cg_gram_finish(gen *g, LLVMValueRef P, LLVMValueRef grad, LLVMValueRef part, LLVMValueRef parts);

#endif
