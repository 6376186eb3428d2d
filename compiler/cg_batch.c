/* cg_batch.c: the batched training kernels of dense chains.
 *
 * Training without gradient norms (the vanilla objective, or any loss of
 * the logits and z alone) needs only the forward pass and back-propagation.
 * Done one example at a time, as the kernels of cg.c do, each example reads
 * every weight twice (matrix-vector products), so a step is bound by memory
 * traffic.  These three kernels take up to CG_BATCH examples at once and
 * do each layer as matrix products over the batch, through the register-
 * blocked kernel (cg_gemm), in float:
 *   forward    Z^T = W A^T            (out x nb; the batch is the fast axis)
 *   backward   dA^T = W^T Delta^T,  Delta_prev = m o dA + dz
 *   weights    dW (+)= Delta^T A,  db (+)= Delta^T 1
 * Forward and backward work on a range of columns (examples), which touch
 * nothing of the other columns: threads take a share of the batch each
 * through both, with no meeting between the layers.  The weight gradients
 * need every example, so they come after, a share of every op's rows per
 * thread, writing disjoint rows of one gradient.  Every element is computed
 * the same way whatever the shares, so the gradient does not depend on the
 * thread count.
 * Activations are kept twice, feature-major (what the forward product reads)
 * and example-major (what the weight gradient's product reads), so that no
 * product reads a matrix across its rows.  Columns past nb, up to the next
 * multiple of 8, are computed but never read into a real column: products
 * mix rows, never columns, and the weight gradient sums over nb examples
 * only.
 * Only chains of dense layers get them (ir_module.dense_chain); the runtime
 * trains other models one example at a time (docs/design.md, "Batched
 * training").
 */
#include "cg.h"

/* The batch workspace, in floats: per value its activations feature-major
 * (act) and example-major (ex), then per op its output's adjoint
 * (delta_off).  Feature-major matrices have a row of LD floats per unit:
 * the batch and 16 more, so that the units of one column (a transpose's
 * reads, a product's panel of rows) spread over L1's sets; at 64 floats
 * (256 bytes) every row fell in a quarter of them. */
enum { LD = CG_BATCH + 16 };
static int64_t size_of(const ir_module *m, int v) { return v == 0 ? m->n_in : m->ops[v - 1].out_size; }

static int64_t act_off(const ir_module *m, int v)
{
	int64_t off = 0;
	for (int w = 0; w < v; w++)
		off += round16(size_of(m, w) * LD) + round16(size_of(m, w) * CG_BATCH);
	return off;
}

static int64_t ex_off(const ir_module *m, int v) { return act_off(m, v) + round16(size_of(m, v) * LD); }

bool cg_batchable(const ir_module *m)
{
	return m->dense_chain && !m->max_len;
}

static LLVMValueRef fptr(gen *g, LLVMValueRef base, int64_t off) { return at(g, g->f32, base, ci(g, off)); }

static LLVMValueRef relu32(gen *g, LLVMValueRef v)
{
	LLVMValueRef zero = LLVMConstReal(g->f32, 0);
	return LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOGT, v, zero, ""), v, zero, "");
}

/* Rows of the register block in the batch products: 8 x 16 floats is 16
 * vector accumulators, half of what AVX-512 gives, and feeds each element
 * of the batch panel to 8 multiply-adds. */
enum { BATCH_ROWS = 8 };

/* if (cond == want): the kernels emit a loop both ways rather than test a
 * flag per element. */
static LLVMBasicBlockRef if_is(gen *g, LLVMValueRef cond, bool want)
{
	return if_begin(g, want ? cond : LLVMBuildNot(g->b, cond, ""));
}

/* The columns [c0, c1) a call computes, clamped to the padded batch (an
 * empty range past it), and the real ones among them, [c0, min(c1, nb)). */
static void columns(gen *g, LLVMValueRef nb, LLVMValueRef *c0, LLVMValueRef *c1, LLVMValueRef *real_end)
{
	LLVMValueRef n8 = pad8v(g, nb);
	*c0 = LLVMBuildSExt(g->b, *c0, g->i64, "");
	*c1 = LLVMBuildSExt(g->b, *c1, g->i64, "");
	*c1 = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, *c1, n8, ""), *c1, n8, "");
	*c0 = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, *c0, *c1, ""), *c0, *c1, "");
	*real_end = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, *c1, nb, ""), *c1, nb, "");
}

/* A ReLU op's product C plus its bias: the pre-activations to Z (unless
 * NULL), the activations example-major to E, and in place in C for the
 * next product (padding columns too, which stay out of E and Z).  Without
 * Z, in place along C's rows first, then E a row (example) at a time,
 * whose strided reads of C stay in L1 (a line per unit), as the input's
 * transpose: both loops vectorize, where the one loop storing E across its
 * rows took 5% of a vanilla step. */
static void relu_out(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef C, LLVMValueRef E, LLVMValueRef Z,
                     LLVMValueRef c0, LLVMValueRef real_end, LLVMValueRef c1)
{
	loop lj, lc;
	if (!Z) {
		LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), ci(g, op->out_size));
		LLVMValueRef bias = load(g, g->f32, P, add(g, ci(g, op->b_off), j));
		LLVMValueRef crow = at(g, g->f32, C, mul(g, j, ci(g, LD)));
		LLVMValueRef c = loop_begin(g, &lc, c0, c1);
		store(g, relu32(g, LLVMBuildFAdd(g->b, load(g, g->f32, crow, c), bias, "")), crow, c);
		loop_end(g, &lc);
		loop_end(g, &lj);
		c = loop_begin(g, &lc, c0, real_end);
		j = loop_begin(g, &lj, ci(g, 0), ci(g, op->out_size));
		store(g, load(g, g->f32, C, add(g, mul(g, j, ci(g, LD)), c)), E, add(g, mul(g, c, ci(g, op->out_size)), j));
		loop_end(g, &lj);
		loop_end(g, &lc);
		return;
	}
	LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), ci(g, op->out_size));
	LLVMValueRef bias = load(g, g->f32, P, add(g, ci(g, op->b_off), j));
	LLVMValueRef crow = at(g, g->f32, C, mul(g, j, ci(g, LD)));
	LLVMValueRef c = loop_begin(g, &lc, c0, real_end);
	LLVMValueRef zv = LLVMBuildFAdd(g->b, load(g, g->f32, crow, c), bias, "");
	store(g, zv, Z, add(g, mul(g, c, ci(g, g->m->n_hidden)), add(g, ci(g, op->z_off), j)));
	LLVMValueRef a = relu32(g, zv);
	store(g, a, E, add(g, mul(g, c, ci(g, op->out_size)), j));
	store(g, a, crow, c);
	loop_end(g, &lc);
	c = loop_begin(g, &lc, real_end, c1);
	store(g, relu32(g, LLVMBuildFAdd(g->b, load(g, g->f32, crow, c), bias, "")), crow, c);
	loop_end(g, &lc);
	loop_end(g, &lj);
}

/* forward(P, x, nb, bws, z, logits, c0, c1): x holds nb pointers to raw
 * inputs; the columns (examples) [c0, c1) through every op.  z may be NULL
 * (the vanilla objective reads only the logits): then it is not written. */
static void emit_forward(gen *g)
{
	static const char *names[] = { "P", "x", "nb", "bws", "z", "logits", "c0", "c1" };
	cg_begin_function(g, "lln_train_batch_forward", 8, names, 1u << 2 | 1u << 6 | 1u << 7);
	const ir_module *m = g->m;
	LLVMValueRef P = cg_param(g, 0), X = cg_param(g, 1), bws = cg_param(g, 3);
	LLVMValueRef Z = cg_param(g, 4), logits = cg_param(g, 5), c0 = cg_param(g, 6), c1 = cg_param(g, 7), real_end;
	LLVMValueRef nb = LLVMBuildSExt(g->b, cg_param(g, 2), g->i64, ""), has_z = LLVMBuildIsNotNull(g->b, Z, "");
	columns(g, nb, &c0, &c1, &real_end);
	const int64_t NB = LD, D = m->n_in;

	/* the normalized input, both ways; padding columns 0.  Example-major
	 * first, along each input's row so that it vectorizes; then the
	 * transpose, whose strided reads stay in L1 (one line per example).
	 * Stored both ways in one loop it took 8% of a step. */
	LLVMValueRef A0 = fptr(g, bws, act_off(m, 0)), E0 = fptr(g, bws, ex_off(m, 0));
	loop lb, ld;
	LLVMValueRef b = loop_begin(g, &lb, c0, c1);
	LLVMValueRef real = LLVMBuildICmp(g->b, LLVMIntSLT, b, nb, "");
	LLVMValueRef xb = LLVMBuildLoad2(g->b, g->ptr, at(g, g->ptr, X, LLVMBuildSelect(g->b, real, b, ci(g, 0), "")), "");
	LLVMValueRef d = loop_begin(g, &ld, ci(g, 0), ci(g, D));
	LLVMValueRef v = LLVMBuildFDiv(g->b, LLVMBuildFSub(g->b, ext(g, load(g, g->f32, xb, d)), cd(g, m->mean), ""),
	                               cd(g, m->std), "");
	store(g, LLVMBuildSelect(g->b, real, trunc32(g, v), LLVMConstReal(g->f32, 0), ""), E0,
	      add(g, mul(g, b, ci(g, D)), d));
	loop_end(g, &ld);
	loop_end(g, &lb);
	d = loop_begin(g, &ld, ci(g, 0), ci(g, D));
	b = loop_begin(g, &lb, c0, c1);
	store(g, load(g, g->f32, E0, add(g, mul(g, b, ci(g, D)), d)), A0, add(g, mul(g, d, ci(g, NB)), b));
	loop_end(g, &lb);
	loop_end(g, &ld);

	cg_part part = { 0 };
	for (int k = 0; k < m->n_ops; k++) {
		cg_part_step(g, &part);
		const ir_op *op = &m->ops[k];
		LLVMValueRef C = fptr(g, bws, act_off(m, k + 1)), E = fptr(g, bws, ex_off(m, k + 1));
		cg_gemm(g, &(gemm){ .C = at(g, g->f32, C, c0), .ldc = ci(g, NB), .A = fptr(g, P, op->w_off),
		                    .lda = ci(g, op->in_size), .B = at(g, g->f32, fptr(g, bws, act_off(m, k)), c0),
		                    .ldb = ci(g, NB), .alpha = 1, .rows = BATCH_ROWS, .M = ci(g, op->out_size),
		                    .N = LLVMBuildSub(g->b, c1, c0, ""), .K = ci(g, op->in_size) });
		if (op->relu) {   /* emitted with and without z: no test per element */
			for (int w = 0; w < 2; w++) {
				LLVMBasicBlockRef done = if_is(g, has_z, w);
				relu_out(g, op, P, C, E, w ? Z : NULL, c0, real_end, c1);
				if_end(g, done);
			}
			continue;
		}
		loop lj, lc;
		LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), ci(g, op->out_size));
		LLVMValueRef bias = load(g, g->f32, P, add(g, ci(g, op->b_off), j));
		LLVMValueRef crow = at(g, g->f32, C, mul(g, j, ci(g, NB)));
		LLVMValueRef c = loop_begin(g, &lc, c0, real_end);
		store(g, LLVMBuildFAdd(g->b, load(g, g->f32, crow, c), bias, ""), logits, add(g, mul(g, c, ci(g, m->n_out)), j));
		loop_end(g, &lc);
		loop_end(g, &lj);
	}
	cg_part_close(g, &part);
	LLVMBuildRetVoid(g->b);
}

/* The adjoint Delta of op k's output, feature-major, one per op: the
 * weight gradients read them all after the backward pass. */
static int64_t delta_off(const ir_module *m, int k)
{
	int64_t off = act_off(m, m->n_ops + 1);
	for (int i = 0; i < k; i++)
		off += round16(m->ops[i].out_size * LD);
	return off;
}

/* Delta_prev = m o (W^T Delta) + dz in place in dprev, the mask m from the
 * activations act of the op below; dz NULL: none. */
static void mask_delta(gen *g, const ir_op *below, LLVMValueRef act, LLVMValueRef dprev, LLVMValueRef dz,
                       LLVMValueRef c0, LLVMValueRef real_end)
{
	loop lj, lc;
	LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), ci(g, below->out_size));
	LLVMValueRef c = loop_begin(g, &lc, c0, real_end);
	LLVMValueRef t = add(g, mul(g, j, ci(g, LD)), c);
	LLVMValueRef on = LLVMBuildFCmp(g->b, LLVMRealOGT, load(g, g->f32, act, t), LLVMConstReal(g->f32, 0), "");
	LLVMValueRef dv = LLVMBuildSelect(g->b, on, load(g, g->f32, dprev, t), LLVMConstReal(g->f32, 0), "");
	if (dz)
		dv = LLVMBuildFAdd(g->b, dv, load(g, g->f32, dz, add(g, mul(g, c, ci(g, g->m->n_hidden)),
		                                                       add(g, ci(g, below->z_off), j))), "");
	store(g, dv, dprev, t);
	loop_end(g, &lc);
	loop_end(g, &lj);
}

/* backward(P, bws, nb, dlogits, dz, c0, c1): every op's Delta, for the
 * columns [c0, c1), from dlogits and dz (rows as the logits and z; dz may
 * be NULL): Delta_prev = m o (W^T Delta) + dz. */
static void emit_backward(gen *g)
{
	static const char *names[] = { "P", "bws", "nb", "dlogits", "dz", "c0", "c1" };
	cg_begin_function(g, "lln_train_batch_backward", 7, names, 1u << 2 | 1u << 5 | 1u << 6);
	const ir_module *m = g->m;
	LLVMValueRef P = cg_param(g, 0), bws = cg_param(g, 1), dlogits = cg_param(g, 3), dz = cg_param(g, 4);
	LLVMValueRef c0 = cg_param(g, 5), c1 = cg_param(g, 6), real_end;
	LLVMValueRef nb = LLVMBuildSExt(g->b, cg_param(g, 2), g->i64, "");
	columns(g, nb, &c0, &c1, &real_end);
	const int64_t NB = LD;
	LLVMValueRef has_dz = LLVMBuildIsNotNull(g->b, dz, "");
	loop lj, lc;

	/* the logits' Delta, padding columns 0 (they stay 0 through W^T) */
	const int last = m->n_ops - 1;
	LLVMValueRef dl = fptr(g, bws, delta_off(m, last));
	LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), ci(g, m->ops[last].out_size));
	LLVMValueRef c = loop_begin(g, &lc, c0, c1);
	LLVMValueRef real = LLVMBuildICmp(g->b, LLVMIntSLT, c, nb, "");
	LLVMValueRef dv = load(g, g->f32, dlogits, LLVMBuildSelect(g->b, real, add(g, mul(g, c, ci(g, m->n_out)), j), ci(g, 0), ""));
	store(g, LLVMBuildSelect(g->b, real, dv, LLVMConstReal(g->f32, 0), ""), dl, add(g, mul(g, j, ci(g, NB)), c));
	loop_end(g, &lc);
	loop_end(g, &lj);

	cg_part part = { 0 };
	for (int k = last; k > 0; k--) {
		cg_part_step(g, &part);
		const ir_op *op = &m->ops[k], *below = &m->ops[k - 1];
		LLVMValueRef dk = fptr(g, bws, delta_off(m, k)), dprev = fptr(g, bws, delta_off(m, k - 1));
		cg_gemm(g, &(gemm){ .C = at(g, g->f32, dprev, c0), .ldc = ci(g, NB), .A = fptr(g, P, op->w_off),
		                    .lda = ci(g, op->in_size), .atrans = true, .B = at(g, g->f32, dk, c0), .ldb = ci(g, NB),
		                    .alpha = 1, .rows = BATCH_ROWS, .M = ci(g, op->in_size),
		                    .N = LLVMBuildSub(g->b, c1, c0, ""), .K = ci(g, op->out_size) });
		for (int w = 0; w < 2; w++) {   /* with and without dz */
			LLVMBasicBlockRef done = if_is(g, has_dz, w);
			mask_delta(g, below, fptr(g, bws, act_off(m, k)), dprev, w ? dz : NULL, c0, real_end);
			if_end(g, done);
		}
	}
	cg_part_close(g, &part);
	LLVMBuildRetVoid(g->b);
}

/* weights(P, bws, nb, grad, accumulate, part, parts): for the part-th share
 * of every op's rows, the gradient of the sum over the batch of
 * dlogits . logits + dz . z, from the Deltas of backward:
 *   db = Delta 1,  dW = Delta E    (E: the op's operand, example-major)
 * stored in grad, or added to it when accumulate is not 0.  The product
 * reads neither W nor the other shares' rows. */
static void emit_weights(gen *g)
{
	static const char *names[] = { "P", "bws", "nb", "grad", "accumulate", "part", "parts" };
	cg_begin_function(g, "lln_train_batch_weights", 7, names, 1u << 2 | 1u << 4 | 1u << 5 | 1u << 6);
	const ir_module *m = g->m;
	LLVMValueRef bws = cg_param(g, 1), grad = cg_param(g, 3);
	LLVMValueRef part = LLVMBuildSExt(g->b, cg_param(g, 5), g->i64, ""), parts = LLVMBuildSExt(g->b, cg_param(g, 6), g->i64, "");
	LLVMValueRef nb = LLVMBuildSExt(g->b, cg_param(g, 2), g->i64, "");
	LLVMValueRef acc = LLVMBuildICmp(g->b, LLVMIntNE, cg_param(g, 4), ci32(g, 0), "");
	const int64_t NB = LD;
	cg_part part_ = { 0 };
	for (int k = 0; k < m->n_ops; k++) {
		cg_part_step(g, &part_);
		const ir_op *op = &m->ops[k];
		LLVMValueRef dk = fptr(g, bws, delta_off(m, k)), lo, hi;
		cg_share(g, ci(g, op->out_size), BATCH_ROWS, part, parts, &lo, &hi);
		loop lj, lc;
		LLVMValueRef j = loop_begin(g, &lj, lo, hi);
		LLVMValueRef s = var(g, g->f32, LLVMConstReal(g->f32, 0));
		LLVMValueRef c = loop_begin(g, &lc, ci(g, 0), nb);
		set(g, s, LLVMBuildFAdd(g->b, get(g, g->f32, s), load(g, g->f32, dk, add(g, mul(g, j, ci(g, NB)), c)), ""));
		loop_end(g, &lc);
		LLVMValueRef bi = add(g, ci(g, op->b_off), j);
		LLVMValueRef sum = LLVMBuildFAdd(g->b, load(g, g->f32, grad, bi), get(g, g->f32, s), "");
		store(g, LLVMBuildSelect(g->b, acc, sum, get(g, g->f32, s), ""), grad, bi);
		loop_end(g, &lj);
		/* two products, so that the first batch's stores read nothing */
		gemm dw = { .C = at(g, g->f32, grad, add(g, ci(g, op->w_off), mul(g, lo, ci(g, op->in_size)))),
		            .ldc = ci(g, op->in_size), .A = at(g, g->f32, dk, mul(g, lo, ci(g, NB))), .lda = ci(g, NB),
		            .B = fptr(g, bws, ex_off(m, k)), .ldb = ci(g, op->in_size), .alpha = 1, .rows = BATCH_ROWS,
		            .M = LLVMBuildSub(g->b, hi, lo, ""), .N = ci(g, op->in_size), .K = nb };
		for (int a = 0; a < 2; a++) {
			LLVMBasicBlockRef done = if_is(g, acc, a);
			dw.accumulate = a;
			cg_gemm(g, &dw);
			if_end(g, done);
		}
	}
	cg_part_close(g, &part_);
	LLVMBuildRetVoid(g->b);
}

void cg_emit_batch(gen *g, LLVMValueRef fns[3], int64_t *ws_floats)
{
	LLVMTypeRef vf = g->vf;
	if (g->avx512)
		g->vf = LLVMVectorType(g->f32, 16);
	void (*emit[])(gen *) = { emit_forward, emit_backward, emit_weights };
	for (int i = 0; i < 3; i++) {
		emit[i](g);
		cg_wide_vectors(g);
		fns[i] = g->fn;
	}
	g->vf = vf;
	*ws_floats = delta_off(g->m, g->m->n_ops);
}
