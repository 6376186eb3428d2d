/* cg.c: LLVM IR for the kernels of one model.
 *
 * Every kernel of rt_model is generated here, specialised to the model's
 * shapes: loop bounds and parameter offsets are constants, so the O3
 * pipeline can unroll and vectorise for the target CPU.  The kernels are
 *   prepare    norms of first-layer gradient rows (the weights themselves)
 *   forward    pre-activations and logits, accumulated in double precision
 *   grads      every hidden neuron's input gradient, by pushing the rows of
 *              the first layer through the masked network (J^i = W^i M J^{i-1})
 *   certify    forward, gradient rows and, fused with each row while it is in
 *              cache, the dual norms that give eps_1, eps_2, eps_inf, their
 *              binding neurons and the certified-prediction radius
 *   direction  the directional margin, by one tangent pass (a JVP)
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
	LLVMTypeRef f32, f64, i32, i64, i8, i1, ptr, vd;
	LLVMValueRef fn;
	LLVMBasicBlockRef entry;
	const ir_module *m;
	/* workspace offsets, in floats; doubles take two */
	int64_t *val_off;     /* value v: n(v) doubles (pre-activations for hidden ops) */
	int64_t *tan_off;     /* value v: tangent doubles, for direction */
	int64_t *act_off;     /* op k: its active list (int32) when relu */
	int64_t *jac_off;     /* op k: its gradient rows, out x n_in floats (-1: rows are W) */
	int64_t *pre_off;     /* op k: 3 x out floats of first-layer q-norms (-1: none) */
	int64_t ws_floats, pre_floats;
} gen;

static int64_t round16(int64_t n) { return (n + 15) & ~(int64_t)15; }

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
	int64_t pre = 0;
	for (int k = 0; k < m->n_ops; k++) {
		const ir_op *op = &m->ops[k];
		g->act_off[k] = -1;
		if (op->relu) {
			g->act_off[k] = off;
			off += round16(op->out_size);
		}
		g->jac_off[k] = -1;
		g->pre_off[k] = -1;
		if (op->in == 0) {
			if (op->relu) {
				g->pre_off[k] = pre;
				pre += round16(3 * (int64_t)op->out_size);
			}
		} else {
			g->jac_off[k] = off;
			off += round16((int64_t)op->out_size * m->n_in);
		}
	}
	g->ws_floats = off;
	g->pre_floats = pre > 0 ? pre : 1;
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
typedef struct loop { LLVMBasicBlockRef body, exit; LLVMValueRef i, end; } loop;

static LLVMValueRef loop_begin(gen *g, loop *l, LLVMValueRef start, LLVMValueRef end)
{
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
static void loop_end(gen *g, loop *l)
{
	LLVMValueRef next = add(g, l->i, ci(g, 1));
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

/* The op's gradient rows: J_k = W_k diag(m) J_in over the active units of
 * the input layer only (inactive columns are zero).  src and dst are row-
 * major with n_in columns; the active list is built here. */
static void emit_rows(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef zin, LLVMValueRef act,
                      LLVMValueRef src, LLVMValueRef dst, void *row_hook_ctx,
                      void (*row_hook)(gen *, const ir_op *, LLVMValueRef j, LLVMValueRef row, void *ctx))
{
	const ir_module *m = g->m;
	const ir_op *ip = &m->ops[op->in - 1];
	LLVMValueRef D = ci(g, m->n_in);

	/* active list of the input layer */
	LLVMValueRef nact = var(g, g->i64, ci(g, 0));
	loop la;
	LLVMValueRef a = loop_begin(g, &la, ci(g, 0), ci(g, ip->out_size));
	LLVMValueRef on = LLVMBuildFCmp(g->b, LLVMRealOGT, load(g, g->f32, zin, add(g, ci(g, ip->z_off), a)),
	                                LLVMConstReal(g->f32, 0), "");
	LLVMBasicBlockRef done = if_begin(g, on);
	LLVMValueRef n = get(g, g->i64, nact);
	store(g, LLVMBuildTrunc(g->b, a, g->i32, ""), act, n);
	set(g, nact, add(g, n, ci(g, 1)));
	if_end(g, done);
	loop_end(g, &la);
	LLVMValueRef na = get(g, g->i64, nact);

	loop lj, lt, ld, lz;
	LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), ci(g, op->out_size));
	LLVMValueRef row = at(g, g->f32, dst, mul(g, j, D));
	LLVMValueRef d = loop_begin(g, &lz, ci(g, 0), D);
	store(g, LLVMConstReal(g->f32, 0), row, d);
	loop_end(g, &lz);
	LLVMValueRef t = loop_begin(g, &lt, ci(g, 0), na);
	LLVMValueRef ai = LLVMBuildSExt(g->b, load(g, g->i32, act, t), g->i64, "");
	LLVMValueRef w = load(g, g->f32, P, add(g, ci(g, op->w_off), add(g, mul(g, j, ci(g, op->in_size)), ai)));
	LLVMValueRef srow = at(g, g->f32, src, mul(g, ai, D));
	d = loop_begin(g, &ld, ci(g, 0), D);
	LLVMValueRef r = load(g, g->f32, row, d);
	store(g, fadd(g, r, fmul(g, w, load(g, g->f32, srow, d))), row, d);
	loop_end(g, &ld);
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

static void emit_certify(gen *g)
{
	static const char *names[] = { "P", "pre", "x", "norms", "ws", "z", "logits", "out" };
	begin_function(g, "lln_certify", 8, names, "norms");
	const ir_module *m = g->m;
	cert_state s = { .P = param(g, 0), .pre = param(g, 1), .ws = param(g, 4), .norms = param(g, 3) };
	LLVMValueRef z = param(g, 5), logits = param(g, 6), out = param(g, 7);
	emit_forward(g, s.P, param(g, 2), s.ws, z, logits);
	for (int p = 0; p < RT_NNORMS; p++) {
		s.best[p] = var(g, g->f64, cd(g, INFINITY));
		s.bind[p] = var(g, g->i32, ci32(g, -1));
	}

	LLVMValueRef D = ci(g, m->n_in);
	for (int k = 0; k < m->n_ops; k++) {
		const ir_op *op = &m->ops[k];
		if (op->in == 0) {
			if (!op->relu)
				continue;
			/* first-layer rows are the weights: their norms come from prepare */
			loop l;
			LLVMValueRef j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
			LLVMValueRef zabs = fabsv(g, load(g, g->f64, val_ptr(g, s.ws, k + 1), j));
			LLVMValueRef pre = at(g, g->f32, s.pre, ci(g, g->pre_off[k]));
			for (int p = 0; p < RT_NNORMS; p++) {
				LLVMValueRef q = ext(g, load(g, g->f32, pre, add(g, ci(g, (int64_t)p * op->out_size), j)));
				offer(g, &s, p, zabs, q, add(g, ci(g, op->z_off), j));
			}
			loop_end(g, &l);
			continue;
		}
		const ir_op *ip = &m->ops[op->in - 1];
		LLVMValueRef src = ip->in == 0 ? at(g, g->f32, s.P, ci(g, ip->w_off))
		                               : at(g, g->f32, s.ws, ci(g, g->jac_off[op->in - 1]));
		emit_rows(g, op, s.P, z, at(g, g->f32, s.ws, ci(g, g->act_off[op->in - 1])), src,
		          at(g, g->f32, s.ws, ci(g, g->jac_off[k])), &s,
		          op->relu ? margin_row : NULL);
	}

	/* the prediction and the radius within which it is certified */
	const ir_op *oo = &m->ops[m->n_ops - 1];
	LLVMValueRef f = val_ptr(g, s.ws, m->n_ops);
	LLVMValueRef J = oo->in == 0 ? at(g, g->f32, s.P, ci(g, oo->w_off)) : at(g, g->f32, s.ws, ci(g, g->jac_off[m->n_ops - 1]));
	LLVMValueRef pred[RT_NNORMS];
	for (int p = 0; p < RT_NNORMS; p++)
		pred[p] = var(g, g->f64, cd(g, INFINITY));
	LLVMValueRef label;
	if (m->n_out == 1) {
		LLVMValueRef f0 = load(g, g->f64, f, ci(g, 0));
		label = LLVMBuildZExt(g->b, LLVMBuildFCmp(g->b, LLVMRealOGT, f0, cd(g, 0), ""), g->i32, "");
		LLVMValueRef sums[3];
		emit_norms(g, J, NULL, m->n_in, sums);
		for (int p = 0; p < RT_NNORMS; p++) {
			LLVMValueRef q = dual(g, sums, p);
			LLVMValueRef r = LLVMBuildFDiv(g->b, LLVMBuildFMul(g->b, fabsv(g, f0), cd(g, m->std), ""), q, "");
			set(g, pred[p], r);
		}
	} else {
		LLVMValueRef y = var(g, g->i64, ci(g, 0));
		loop l;
		LLVMValueRef k = loop_begin(g, &l, ci(g, 1), ci(g, m->n_out));
		LLVMValueRef gt = LLVMBuildFCmp(g->b, LLVMRealOGT, load(g, g->f64, f, k), load(g, g->f64, f, get(g, g->i64, y)), "");
		set(g, y, LLVMBuildSelect(g->b, gt, k, get(g, g->i64, y), ""));
		loop_end(g, &l);
		LLVMValueRef yv = get(g, g->i64, y);
		label = LLVMBuildTrunc(g->b, yv, g->i32, "");
		LLVMValueRef fy = load(g, g->f64, f, yv);
		LLVMValueRef jy = at(g, g->f32, J, mul(g, yv, D));
		k = loop_begin(g, &l, ci(g, 0), ci(g, m->n_out));
		LLVMBasicBlockRef done = if_begin(g, LLVMBuildICmp(g->b, LLVMIntNE, k, yv, ""));
		LLVMValueRef sums[3];
		emit_norms(g, jy, at(g, g->f32, J, mul(g, k, D)), m->n_in, sums);
		LLVMValueRef gap = LLVMBuildFMul(g->b, LLVMBuildFSub(g->b, fy, load(g, g->f64, f, k), ""), cd(g, m->std), "");
		for (int p = 0; p < RT_NNORMS; p++) {
			LLVMValueRef r = LLVMBuildFDiv(g->b, gap, dual(g, sums, p), "");
			LLVMValueRef lt = LLVMBuildFCmp(g->b, LLVMRealOLT, r, get(g, g->f64, pred[p]), "");
			set(g, pred[p], LLVMBuildSelect(g->b, lt, r, get(g, g->f64, pred[p]), ""));
		}
		if_end(g, done);
		loop_end(g, &l);
	}

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
		emit_rows(g, op, P, z, at(g, g->f32, ws, ci(g, g->act_off[op->in - 1])),
		          at(g, g->f32, G, mul(g, ci(g, ip->z_off), D)), dst, NULL, NULL);
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

static void emit_descriptor(gen *g, LLVMValueRef fns[5])
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
		ci(g, m->n_params), ci(g, g->ws_floats), ci(g, g->pre_floats),
		LLVMConstReal(g->f32, m->mean), LLVMConstReal(g->f32, m->std), lg, tg,
		fns[0], fns[1], fns[2], fns[3], fns[4],
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
	g.i8 = LLVMInt8TypeInContext(g.c);
	g.i1 = LLVMInt1TypeInContext(g.c);
	g.ptr = LLVMPointerTypeInContext(g.c, 0);
	plan_layout(&g, a);

	LLVMValueRef fns[5];
	emit_prepare(&g);
	fns[0] = g.fn;
	emit_forward_fn(&g);
	fns[1] = g.fn;
	emit_grads(&g);
	fns[2] = g.fn;
	emit_certify(&g);
	fns[3] = g.fn;
	emit_direction(&g);
	fns[4] = g.fn;
	emit_descriptor(&g, fns);
	if (o->weights)
		embed_weights(&g, o->weights);
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
