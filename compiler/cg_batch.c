/* cg_batch.c: the batched training kernels.
 *
 * Training without gradient norms (the vanilla objective, or any loss of
 * the logits and z alone) needs only the forward pass and back-propagation.
 * Done one example at a time, as the kernels of cg.c do, each example reads
 * every weight twice (matrix-vector products), so a step is bound by memory
 * traffic, and a convolution's loops over one small image do a few
 * multiply-adds per branch.  These three kernels take up to CG_BATCH
 * examples at once, in float, with the batch as the fast axis of every
 * matrix (feature-major: a row of LD floats per unit), so that every
 * operation is vector arithmetic along rows:
 *   dense      forward  Z^T = W A^T, backward dA^T = W^T Delta^T, through
 *              the register-blocked matrix kernel (cg_gemm)
 *   conv2d     a direct convolution (cg_window_cols, cg_conv2d.c): a block
 *              of output channels times one or two vectors of the batch in
 *              registers over every tap, each row of the operand loaded
 *              once for the whole block; backward the same gathered from
 *              the output's Delta
 *   avgpool    the same window, one channel per output channel
 *   add        rows added
 *   weights    dense: dW (+)= Delta^T A (example-major A); conv2d: per
 *              weight, the sum over output positions and examples
 * Forward and backward work on a range of columns (examples), which touch
 * nothing of the other columns: threads take a share of the batch each
 * through both, with no meeting between the layers.  The weight gradients
 * need every example, so they come after, a share of every op's rows (a
 * convolution's output channels) per thread, writing disjoint rows of one
 * gradient.  Every element is computed the same way whatever the shares,
 * so the gradient does not depend on the thread count.
 * Columns past nb, up to the next multiple of the vector width, are
 * computed from zero inputs and zero logit adjoints, so they hold finite
 * values and their Deltas are 0; they never reach a real column (no
 * operation mixes columns) and the weight gradients sum over the nb real
 * examples only.  Shares of columns must start on multiples of 16.
 * The operand of a dense op is also kept example-major (what the weight
 * gradient's product reads), so that no product reads a matrix across its
 * rows.
 * Every model without recurrence gets them; approximate ROLL adds three
 * more, whose columns are the examples' sampled tangents (below).  The
 * runtime trains the others, and exact sq on models other than dense
 * chains, one example at a time (docs/design.md, "Batched training").
 */
#include <math.h>

#include "cg.h"

/* Feature-major matrices have a row of LD floats per unit: the batch and
 * 16 more, so that the units of one column (a transpose's reads, a
 * product's panel of rows) spread over L1's sets; at 64 floats (256 bytes)
 * every row fell in a quarter of them. */
enum { LD = CG_BATCH + 16 };
static int64_t size_of(const ir_module *m, int v) { return v == 0 ? m->n_in : m->ops[v - 1].out_size; }

/* Whether a dense op reads value v: then it is kept example-major too, as
 * the input always is (its normalization writes it so first). */
static bool read_by_dense(const ir_module *m, int v)
{
	for (int k = 0; k < m->n_ops; k++)
		if (m->ops[k].kind == OP_DENSE && m->ops[k].in[0] == v)
			return true;
	return false;
}

/* The batch workspace, in floats: per value its activations feature-major
 * (act) and, when read_by_dense, example-major (ex), then per op its
 * output's adjoint (delta_off). */
static int64_t act_off(const ir_module *m, int v)
{
	int64_t off = 0;
	for (int w = 0; w < v; w++)
		off += round16(size_of(m, w) * LD) + (w == 0 || read_by_dense(m, w) ? round16(size_of(m, w) * CG_BATCH) : 0);
	return off;
}

static int64_t ex_off(const ir_module *m, int v) { return act_off(m, v) + round16(size_of(m, v) * LD); }

bool cg_batchable(const ir_module *m)
{
	bool ok = m->n_ops > 0 && !m->max_len;
	for (int k = 0; k < m->n_ops; k++)
		ok &= m->ops[k].kind == OP_DENSE || m->ops[k].kind == OP_CONV2D || m->ops[k].kind == OP_AVGPOOL ||
		      m->ops[k].kind == OP_ADD;
	return ok;
}

static LLVMValueRef fptr(gen *g, LLVMValueRef base, int64_t off) { return at(g, g->f32, base, ci(g, off)); }
static LLVMValueRef row(gen *g, LLVMValueRef base, LLVMValueRef j) { return at(g, g->f32, base, mul(g, j, ci(g, LD))); }
static int64_t width(gen *g) { return LLVMGetVectorSize(g->vf); }

/* The sum of a vector's lanes. */
static LLVMValueRef hsum(gen *g, LLVMValueRef v)
{
	LLVMValueRef args[2] = { LLVMConstReal(g->f32, 0), v };
	return fast(intrinsic_n(g, "llvm.vector.reduce.fadd", g->vf, args, 2));
}

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

/* The columns a call computes, [c0, cend): [c0, c1) clamped to the padded
 * batch (an empty range past it) with its end rounded up to a whole
 * vector; the real ones among them, [c0, min(c1, nb)). */
static void columns(gen *g, LLVMValueRef nb, LLVMValueRef *c0, LLVMValueRef c1, LLVMValueRef *cend,
                    LLVMValueRef *real_end)
{
	LLVMValueRef n8 = pad8v(g, nb);
	*c0 = LLVMBuildSExt(g->b, *c0, g->i64, "");
	c1 = LLVMBuildSExt(g->b, c1, g->i64, "");
	c1 = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, c1, n8, ""), c1, n8, "");
	*c0 = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, *c0, c1, ""), *c0, c1, "");
	*real_end = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, c1, nb, ""), c1, nb, "");
	LLVMValueRef up = LLVMBuildAnd(g->b, add(g, c1, ci(g, width(g) - 1)), ci(g, -width(g)), "");
	*cend = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, *c0, c1, ""), c1, up, "");
}

/* ---- forward: an op's result, then its bias, ReLU and copies ---- */

/* dst = a + b (b NULL: a copy; a NULL too: 0) over n rows, the columns
 * [c0, cend). */
static void sum_rows(gen *g, LLVMValueRef dst, LLVMValueRef a, LLVMValueRef b, int64_t n, LLVMValueRef c0,
                     LLVMValueRef cend)
{
	loop lj, lc;
	LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), ci(g, n));
	LLVMValueRef c = loop_begin_step(g, &lc, c0, cend, width(g));
	LLVMValueRef t = add(g, mul(g, j, ci(g, LD)), c), v = a ? vload(g, a, t) : LLVMConstNull(g->vf);
	vstore(g, b ? LLVMBuildFAdd(g->b, v, vload(g, b, t), "") : v, dst, t);
	loop_end(g, &lc);
	loop_end(g, &lj);
}

/* Op k's result in C finished in place over the columns [c0, cend): plus
 * the bias (a convolution's per output channel), through the ReLU, and
 * the pre-activations of the real columns to Z unless it is NULL. */
static void finish(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef C, LLVMValueRef Z, LLVMValueRef c0,
                   LLVMValueRef real_end, LLVMValueRef cend)
{
	if (op->b_off < 0 && !op->relu)
		return;
	loop lj, lc;
	LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), ci(g, op->out_size)), bias = NULL;
	if (op->b_off >= 0) {
		LLVMValueRef u = op->kind == OP_CONV2D ? LLVMBuildSDiv(g->b, j, ci(g, (int64_t)op->oh * op->ow), "") : j;
		bias = load(g, g->f32, P, add(g, ci(g, op->b_off), u));
	}
	LLVMValueRef crow = row(g, C, j), from = c0;
	if (Z) {
		LLVMValueRef c = loop_begin(g, &lc, c0, real_end);
		LLVMValueRef zv = load(g, g->f32, crow, c);
		zv = bias ? LLVMBuildFAdd(g->b, zv, bias, "") : zv;
		store(g, zv, Z, add(g, mul(g, c, ci(g, g->m->n_hidden)), add(g, ci(g, op->z_off), j)));
		store(g, relu32(g, zv), crow, c);
		loop_end(g, &lc);
		from = real_end;
	}
	LLVMValueRef c = loop_begin(g, &lc, from, cend);
	LLVMValueRef v = load(g, g->f32, crow, c);
	v = bias ? LLVMBuildFAdd(g->b, v, bias, "") : v;
	store(g, op->relu ? relu32(g, v) : v, crow, c);
	loop_end(g, &lc);
	loop_end(g, &lj);
}

/* E[c n + j] = C[j][c] for the real columns: a row (example) at a time,
 * whose strided reads of C stay in L1 (a line per unit); the one loop
 * storing E across its rows, in the ReLU's, took 5% of a vanilla step. */
static void to_examples(gen *g, LLVMValueRef C, int64_t n, LLVMValueRef E, LLVMValueRef c0, LLVMValueRef real_end)
{
	loop lj, lc;
	LLVMValueRef c = loop_begin(g, &lc, c0, real_end);
	LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), ci(g, n));
	store(g, load(g, g->f32, C, add(g, mul(g, j, ci(g, LD)), c)), E, add(g, mul(g, c, ci(g, n)), j));
	loop_end(g, &lj);
	loop_end(g, &lc);
}

/* Op's linear part over the columns [c0, cend) of workspace ws: its
 * operands' rows into C (no bias). */
static void apply_op(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef C, LLVMValueRef c0,
                     LLVMValueRef cend)
{
	const ir_module *m = g->m;
	LLVMValueRef A = fptr(g, ws, act_off(m, op->in[0]));
	switch (op->kind) {
	case OP_DENSE:
		cg_gemm(g, &(gemm){ .C = at(g, g->f32, C, c0), .ldc = ci(g, LD), .A = fptr(g, P, op->w_off),
		                    .lda = ci(g, op->in_size), .B = at(g, g->f32, A, c0), .ldb = ci(g, LD), .alpha = 1,
		                    .rows = BATCH_ROWS, .M = ci(g, op->out_size), .N = LLVMBuildSub(g->b, cend, c0, ""),
		                    .K = ci(g, op->in_size) });
		break;
	case OP_CONV2D:
	case OP_AVGPOOL:
		cg_window_cols(g, op, P, &(cg_wcols){ .src = A, .dst = C, .ld = LD, .c0 = c0, .cend = cend });
		break;
	default:   /* add */
		sum_rows(g, C, A, fptr(g, ws, act_off(m, op->in[1])), op->out_size, c0, cend);
		break;
	}
}

/* The transpose of op's linear part for operand u (its Delta du, added to
 * with accumulate), from the op's Delta dk, over the columns [c0, cend). */
static void transpose_op(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef dk, LLVMValueRef du, bool accumulate,
                         LLVMValueRef c0, LLVMValueRef cend)
{
	switch (op->kind) {
	case OP_DENSE:
		cg_gemm(g, &(gemm){ .C = at(g, g->f32, du, c0), .ldc = ci(g, LD), .A = fptr(g, P, op->w_off),
		                    .lda = ci(g, op->in_size), .atrans = true, .B = at(g, g->f32, dk, c0), .ldb = ci(g, LD),
		                    .accumulate = accumulate, .alpha = 1, .rows = BATCH_ROWS, .M = ci(g, op->in_size),
		                    .N = LLVMBuildSub(g->b, cend, c0, ""), .K = ci(g, op->out_size) });
		break;
	case OP_CONV2D:
	case OP_AVGPOOL:
		cg_window_cols(g, op, P, &(cg_wcols){ .src = dk, .dst = du, .ld = LD, .c0 = c0, .cend = cend, .transposed = true,
		                                      .accumulate = accumulate });
		break;
	default:   /* add */
		sum_rows(g, du, dk, accumulate ? du : NULL, op->out_size, c0, cend);
		break;
	}
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
	LLVMValueRef Z = cg_param(g, 4), logits = cg_param(g, 5), c0 = cg_param(g, 6), cend, real_end;
	LLVMValueRef nb = LLVMBuildSExt(g->b, cg_param(g, 2), g->i64, ""), has_z = LLVMBuildIsNotNull(g->b, Z, "");
	columns(g, nb, &c0, cg_param(g, 7), &cend, &real_end);
	const int64_t D = m->n_in;

	/* the normalized input, both ways; padding columns 0.  Example-major
	 * first, along each input's row so that it vectorizes; then the
	 * transpose, whose strided reads stay in L1 (one line per example).
	 * Stored both ways in one loop it took 8% of a step. */
	LLVMValueRef A0 = fptr(g, bws, act_off(m, 0)), E0 = fptr(g, bws, ex_off(m, 0));
	loop lb, ld;
	LLVMValueRef b = loop_begin(g, &lb, c0, cend);
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
	b = loop_begin(g, &lb, c0, cend);
	store(g, load(g, g->f32, E0, add(g, mul(g, b, ci(g, D)), d)), A0, add(g, mul(g, d, ci(g, LD)), b));
	loop_end(g, &lb);
	loop_end(g, &ld);

	cg_part part = { 0 };
	for (int k = 0; k < m->n_ops; k++) {
		cg_part_step(g, &part);
		const ir_op *op = &m->ops[k];
		LLVMValueRef C = fptr(g, bws, act_off(m, k + 1));
		apply_op(g, op, P, bws, C, c0, cend);
		if (op->relu) {   /* emitted with and without z: no test per element */
			for (int w = 0; w < 2; w++) {
				LLVMBasicBlockRef done = if_is(g, has_z, w);
				finish(g, op, P, C, w ? Z : NULL, c0, real_end, cend);
				if_end(g, done);
			}
		} else {
			finish(g, op, P, C, NULL, c0, real_end, cend);
		}
		if (read_by_dense(m, k + 1))
			to_examples(g, C, op->out_size, fptr(g, bws, ex_off(m, k + 1)), c0, real_end);
		if (k == m->n_ops - 1)
			to_examples(g, C, op->out_size, logits, c0, real_end);
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

/* Delta = m o Delta + dz in place, the mask m from op's activations act;
 * dz NULL: none. */
static void mask_delta(gen *g, const ir_op *op, LLVMValueRef act, LLVMValueRef delta, LLVMValueRef dz, LLVMValueRef c0,
                       LLVMValueRef real_end)
{
	loop lj, lc;
	LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), ci(g, op->out_size));
	LLVMValueRef c = loop_begin(g, &lc, c0, real_end);
	LLVMValueRef t = add(g, mul(g, j, ci(g, LD)), c);
	LLVMValueRef on = LLVMBuildFCmp(g->b, LLVMRealOGT, load(g, g->f32, act, t), LLVMConstReal(g->f32, 0), "");
	LLVMValueRef dv = LLVMBuildSelect(g->b, on, load(g, g->f32, delta, t), LLVMConstReal(g->f32, 0), "");
	if (dz)
		dv = LLVMBuildFAdd(g->b, dv, load(g, g->f32, dz, add(g, mul(g, c, ci(g, g->m->n_hidden)),
		                                                       add(g, ci(g, op->z_off), j))), "");
	store(g, dv, delta, t);
	loop_end(g, &lc);
	loop_end(g, &lj);
}

/* backward(P, bws, nb, dlogits, dz, c0, c1): every op's Delta, for the
 * columns [c0, c1), from dlogits and dz (rows as the logits and z; dz may
 * be NULL), in reverse op order: once every consumer of an op's output
 * has added its term A^T Delta (the first one stores it), the op's Delta
 * is complete, and through its ReLU Delta = m o Delta + dz. */
static void emit_backward(gen *g)
{
	static const char *names[] = { "P", "bws", "nb", "dlogits", "dz", "c0", "c1" };
	cg_begin_function(g, "lln_train_batch_backward", 7, names, 1u << 2 | 1u << 5 | 1u << 6);
	const ir_module *m = g->m;
	LLVMValueRef P = cg_param(g, 0), bws = cg_param(g, 1), dlogits = cg_param(g, 3), dz = cg_param(g, 4);
	LLVMValueRef c0 = cg_param(g, 5), cend, real_end;
	LLVMValueRef nb = LLVMBuildSExt(g->b, cg_param(g, 2), g->i64, "");
	columns(g, nb, &c0, cg_param(g, 6), &cend, &real_end);
	LLVMValueRef has_dz = LLVMBuildIsNotNull(g->b, dz, "");
	loop lj, lc;

	/* the logits' Delta, padding columns 0 (they stay 0 through A^T) */
	const int last = m->n_ops - 1;
	LLVMValueRef dl = fptr(g, bws, delta_off(m, last));
	LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), ci(g, m->ops[last].out_size));
	LLVMValueRef c = loop_begin(g, &lc, c0, cend);
	LLVMValueRef real = LLVMBuildICmp(g->b, LLVMIntSLT, c, nb, "");
	LLVMValueRef dv = load(g, g->f32, dlogits, LLVMBuildSelect(g->b, real, add(g, mul(g, c, ci(g, m->n_out)), j), ci(g, 0), ""));
	store(g, LLVMBuildSelect(g->b, real, dv, LLVMConstReal(g->f32, 0), ""), dl, add(g, mul(g, j, ci(g, LD)), c));
	loop_end(g, &lc);
	loop_end(g, &lj);

	bool written[m->n_ops + 1];   /* whether value v's Delta has a term yet */
	memset(written, 0, sizeof written);
	written[last + 1] = true;
	cg_part part = { 0 };
	for (int k = last; k >= 0; k--) {
		cg_part_step(g, &part);
		const ir_op *op = &m->ops[k];
		LLVMValueRef dk = fptr(g, bws, delta_off(m, k));
		if (!written[k + 1])   /* sema rejects a value that does not reach the output */
			internal_error("batched backward: value %d is never read", k + 1);
		if (op->relu) {
			for (int w = 0; w < 2; w++) {   /* with and without dz */
				LLVMBasicBlockRef done = if_is(g, has_dz, w);
				mask_delta(g, op, fptr(g, bws, act_off(m, k + 1)), dk, w ? dz : NULL, c0, real_end);
				if_end(g, done);
			}
		}
		for (int i = 0; i < op->n_in; i++) {
			int u = op->in[i];
			if (u == 0)   /* the input needs no adjoint */
				continue;
			transpose_op(g, op, P, dk, fptr(g, bws, delta_off(m, u - 1)), written[u], c0, cend);
			written[u] = true;
		}
	}
	cg_part_close(g, &part);
	LLVMBuildRetVoid(g->b);
}

/* ---- approximate ROLL: the sampled axes' tangents as columns ---- */

/* Columns per example: its K sampled axes, padded to whole vectors. */
static int64_t group_cols(const ir_module *m) { return round16(m->samples); }

bool cg_batch_tangents(const ir_module *m) { return cg_batchable(m) && m->samples > 0 && group_cols(m) <= CG_BATCH; }

/* live[k]: whether op k's output tangent reaches sq, being a hidden layer
 * or read by an op whose tangent does. */
static void tangent_live(const ir_module *m, bool *live)
{
	for (int k = m->n_ops - 1; k >= 0; k--) {
		live[k] = m->ops[k].relu;
		for (int c = k + 1; c < m->n_ops; c++)
			for (int i = 0; i < m->ops[c].n_in; i++)
				live[k] |= live[c] && m->ops[c].in[i] == k + 1;
	}
}

/* The tangent workspace has the batch workspace's layout (tangents for
 * activations, their adjoints for Deltas), then hidden op k's tangents
 * before its ReLU: sq and its adjoint read those, the ops above them
 * masked (in act). */
static int64_t tpre_off(const ir_module *m, int k)
{
	int64_t off = delta_off(m, m->n_ops);
	for (int i = 0; i < k; i++)
		off += m->ops[i].relu ? round16(m->ops[i].out_size * LD) : 0;
	return off;
}

/* Whether hidden op k's unit j is on for the batch's example e (bws). */
static LLVMValueRef unit_active(gen *g, LLVMValueRef bws, int k, LLVMValueRef j, LLVMValueRef e)
{
	LLVMValueRef a = load(g, g->f32, fptr(g, bws, act_off(g->m, k + 1)), add(g, mul(g, j, ci(g, LD)), e));
	return LLVMBuildFCmp(g->b, LLVMRealOGT, a, LLVMConstReal(g->f32, 0), "");
}

/* tangents(P, bws, tws, e0, ne, axes, sq): for the examples e0 .. e0 +
 * ne - 1 of the batch whose forward pass is in bws, the tangents of their
 * K sampled axes (axes: K an example), sqrt(n_in / K) e_axis in the
 * normalized input, through every op whose tangent reaches sq, G =
 * round16(K) columns an example of tws (ne G <= CG_BATCH), each through
 * its example's ReLU masks.  sq (n_hidden an example of the batch) gets
 * each hidden neuron's squared norm of its tangents: approximate ROLL's
 * estimate of ||g||^2. */
static void emit_tangents(gen *g)
{
	static const char *names[] = { "P", "bws", "tws", "e0", "ne", "axes", "sq" };
	cg_begin_function(g, "lln_train_batch_tangents", 7, names, 1u << 3 | 1u << 4);
	const ir_module *m = g->m;
	LLVMValueRef P = cg_param(g, 0), bws = cg_param(g, 1), tws = cg_param(g, 2), axes = cg_param(g, 5);
	LLVMValueRef sq = cg_param(g, 6), e0 = LLVMBuildSExt(g->b, cg_param(g, 3), g->i64, "");
	LLVMValueRef ne = LLVMBuildSExt(g->b, cg_param(g, 4), g->i64, "");
	const int64_t G = group_cols(m), K = m->samples, D = m->n_in, W = width(g);
	LLVMValueRef c0 = ci(g, 0), cols = mul(g, ne, ci(g, G)), zero = LLVMConstNull(g->vf);
	LLVMValueRef scale = LLVMConstReal(g->f32, sqrt((double)D / (double)K));
	LLVMValueRef T0 = fptr(g, tws, act_off(m, 0)), E0 = read_by_dense(m, 0) ? fptr(g, tws, ex_off(m, 0)) : NULL;
	loop le, lk, lj, lr;
	sum_rows(g, T0, NULL, NULL, D, c0, cols);
	if (E0) {
		LLVMValueRef i = loop_begin(g, &lk, ci(g, 0), mul(g, cols, ci(g, D)));
		store(g, LLVMConstReal(g->f32, 0), E0, i);
		loop_end(g, &lk);
	}
	LLVMValueRef e = loop_begin(g, &le, ci(g, 0), ne);
	LLVMValueRef k = loop_begin(g, &lk, ci(g, 0), ci(g, K));
	LLVMValueRef d = LLVMBuildSExt(g->b, load(g, g->i32, axes, add(g, mul(g, e, ci(g, K)), k)), g->i64, "");
	LLVMValueRef col = add(g, mul(g, e, ci(g, G)), k);
	store(g, scale, T0, add(g, mul(g, d, ci(g, LD)), col));
	if (E0)
		store(g, scale, E0, add(g, mul(g, col, ci(g, D)), d));
	loop_end(g, &lk);
	loop_end(g, &le);

	bool live[m->n_ops];
	tangent_live(m, live);
	cg_part part = { 0 };
	for (int k = 0; k < m->n_ops; k++) {
		if (!live[k])
			continue;
		cg_part_step(g, &part);
		const ir_op *op = &m->ops[k];
		LLVMValueRef T = fptr(g, tws, act_off(m, k + 1)), C = op->relu ? fptr(g, tws, tpre_off(m, k)) : T;
		apply_op(g, op, P, tws, C, c0, cols);
		if (op->relu) {   /* sq from the tangents, then the mask */
			LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), ci(g, op->out_size));
			LLVMValueRef e = loop_begin(g, &le, ci(g, 0), ne);
			LLVMValueRef on = unit_active(g, bws, k, j, add(g, e0, e));
			LLVMValueRef acc = var(g, g->vf, zero);
			LLVMValueRef r = loop_begin_step(g, &lr, ci(g, 0), ci(g, G), W);
			LLVMValueRef t = add(g, add(g, mul(g, j, ci(g, LD)), mul(g, e, ci(g, G))), r), v = vload(g, C, t);
			set(g, acc, vfma(g, v, v, get(g, g->vf, acc)));
			vstore(g, LLVMBuildSelect(g->b, on, v, zero, ""), T, t);
			loop_end(g, &lr);
			store(g, hsum(g, get(g, g->vf, acc)), sq,
			      add(g, mul(g, add(g, e0, e), ci(g, m->n_hidden)), add(g, ci(g, op->z_off), j)));
			loop_end(g, &le);
			loop_end(g, &lj);
		}
		if (read_by_dense(m, k + 1))
			to_examples(g, T, op->out_size, fptr(g, tws, ex_off(m, k + 1)), c0, cols);
	}
	cg_part_close(g, &part);
	LLVMBuildRetVoid(g->b);
}

/* tangents_backward(P, bws, tws, e0, ne, dsq): the adjoint of tangents
 * for dsq (n_hidden an example of the batch), in the Deltas of tws: a
 * hidden op's is m o (the terms of the ops reading it) + 2 dsq t, t its
 * tangent before the mask; then train_batch_tangent_weights. */
static void emit_tangents_backward(gen *g)
{
	static const char *names[] = { "P", "bws", "tws", "e0", "ne", "dsq" };
	cg_begin_function(g, "lln_train_batch_tangents_backward", 6, names, 1u << 3 | 1u << 4);
	const ir_module *m = g->m;
	LLVMValueRef P = cg_param(g, 0), bws = cg_param(g, 1), tws = cg_param(g, 2), dsq = cg_param(g, 5);
	LLVMValueRef e0 = LLVMBuildSExt(g->b, cg_param(g, 3), g->i64, ""), ne = LLVMBuildSExt(g->b, cg_param(g, 4), g->i64, "");
	const int64_t G = group_cols(m), W = width(g);
	LLVMValueRef c0 = ci(g, 0), cols = mul(g, ne, ci(g, G)), zero = LLVMConstNull(g->vf);
	bool live[m->n_ops], written[m->n_ops + 1];
	tangent_live(m, live);
	memset(written, 0, sizeof written);
	cg_part part = { 0 };
	for (int k = m->n_ops - 1; k >= 0; k--) {
		if (!live[k])
			continue;
		cg_part_step(g, &part);
		const ir_op *op = &m->ops[k];
		LLVMValueRef dk = fptr(g, tws, delta_off(m, k));
		if (op->relu) {
			loop lj, le, lr;
			LLVMValueRef tpre = fptr(g, tws, tpre_off(m, k));
			LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), ci(g, op->out_size));
			LLVMValueRef e = loop_begin(g, &le, ci(g, 0), ne);
			LLVMValueRef on = unit_active(g, bws, k, j, add(g, e0, e));
			LLVMValueRef c2 = load(g, g->f32, dsq, add(g, mul(g, add(g, e0, e), ci(g, m->n_hidden)), add(g, ci(g, op->z_off), j)));
			c2 = vsplat(g, LLVMBuildFAdd(g->b, c2, c2, ""));
			LLVMValueRef r = loop_begin_step(g, &lr, ci(g, 0), ci(g, G), W);
			LLVMValueRef t = add(g, add(g, mul(g, j, ci(g, LD)), mul(g, e, ci(g, G))), r);
			LLVMValueRef above = written[k + 1] ? LLVMBuildSelect(g->b, on, vload(g, dk, t), zero, "") : zero;
			vstore(g, vfma(g, c2, vload(g, tpre, t), above), dk, t);
			loop_end(g, &lr);
			loop_end(g, &le);
			loop_end(g, &lj);
		} else if (!written[k + 1]) {
			internal_error("batched tangents: op %d's adjoint has no term", k);
		}
		for (int i = 0; i < op->n_in; i++) {
			int u = op->in[i];
			if (u == 0)
				continue;
			transpose_op(g, op, P, dk, fptr(g, tws, delta_off(m, u - 1)), written[u], c0, cols);
			written[u] = true;
		}
	}
	cg_part_close(g, &part);
	LLVMBuildRetVoid(g->b);
}

/* ---- weights ---- */

/* Output channels and operand channels per block of a convolution's
 * weight gradient: 4 x 4 vector accumulators, each row loaded feeding 4
 * multiply-adds. */
enum { WGT_BLOCK = 4 };

/* Sums over the real columns [0, nb) of rows, an outer product's block:
 * acc[i nb_ + k] += a_i[c] b_k[c] for na rows a and nb_ rows b (b NULL:
 * acc[i] += a_i[c]), the vectors kept lane by lane; the last vector's
 * lanes past nb read as 0.  Each row loaded feeds the other side's
 * multiply-adds. */
static void column_sums(gen *g, int na, LLVMValueRef *acc, LLVMValueRef *a, int nb_, LLVMValueRef *b, LLVMValueRef nb)
{
	const int64_t W = width(g);
	LLVMValueRef full = LLVMBuildAnd(g->b, nb, ci(g, -W), ""), zero = LLVMConstNull(g->vf);
	loop lc;
	for (int tail = 0; tail < 2; tail++) {
		LLVMValueRef c, mask = NULL, av[WGT_BLOCK], bv[WGT_BLOCK];
		LLVMBasicBlockRef done = NULL;
		if (!tail) {
			c = loop_begin_step(g, &lc, ci(g, 0), full, W);
		} else {
			done = if_begin(g, LLVMBuildICmp(g->b, LLVMIntSLT, full, nb, ""));
			c = full;
			mask = cg_lanes_below(g, LLVMBuildSub(g->b, nb, full, ""));
		}
		for (int k = 0; b && k < nb_; k++) {
			bv[k] = vload(g, b[k], c);
			bv[k] = mask ? LLVMBuildSelect(g->b, mask, bv[k], zero, "") : bv[k];
		}
		for (int i = 0; i < na; i++) {
			av[i] = vload(g, a[i], c);
			av[i] = mask ? LLVMBuildSelect(g->b, mask, av[i], zero, "") : av[i];
			if (!b)
				set(g, acc[i], LLVMBuildFAdd(g->b, av[i], get(g, g->vf, acc[i]), ""));
			for (int k = 0; b && k < nb_; k++)
				set(g, acc[i * nb_ + k], vfma(g, av[i], bv[k], get(g, g->vf, acc[i * nb_ + k])));
		}
		if (tail)
			if_end(g, done);
		else
			loop_end(g, &lc);
	}
}

/* grad[i] = v, or grad[i] + v when acc (i64 index, i1 flag). */
static void put(gen *g, LLVMValueRef grad, LLVMValueRef i, LLVMValueRef v, LLVMValueRef acc)
{
	LLVMValueRef sum = LLVMBuildFAdd(g->b, load(g, g->f32, grad, i), v, "");
	store(g, LLVMBuildSelect(g->b, acc, sum, v, ""), grad, i);
}



/* dW[o, c, ky, kx] of output channels [o0, o0 + no) and operand channels
 * [c0, c0 + nc): the sum over output positions whose tap lies inside the
 * operand, and over the examples. */
static void conv_weight_block(gen *g, const ir_op *op, LLVMValueRef delta, LLVMValueRef A, LLVMValueRef grad,
                              LLVMValueRef nb, LLVMValueRef acc, LLVMValueRef o0, int no, int64_t c0, int nc)
{
	const int64_t K = op->kernel, HW = (int64_t)op->ih * op->iw;
	loop lky, lkx, ly, lx;
	LLVMValueRef ky = loop_begin(g, &lky, ci(g, 0), ci(g, K));
	LLVMValueRef kx = loop_begin(g, &lkx, ci(g, 0), ci(g, K));
	LLVMValueRef sums[WGT_BLOCK * WGT_BLOCK], drows[WGT_BLOCK], arows[WGT_BLOCK], inside;
	for (int i = 0; i < no * nc; i++)
		sums[i] = var(g, g->vf, LLVMConstNull(g->vf));
	LLVMValueRef y = loop_begin(g, &ly, ci(g, 0), ci(g, op->oh));
	LLVMValueRef iy = cg_tap_at(g, op, false, y, ky, op->ih, &inside);
	LLVMBasicBlockRef row_in = if_begin(g, inside);
	LLVMValueRef x = loop_begin(g, &lx, ci(g, 0), ci(g, op->ow));
	LLVMValueRef ix = cg_tap_at(g, op, false, x, kx, op->iw, &inside);
	LLVMBasicBlockRef col_in = if_begin(g, inside);
	LLVMValueRef pos = add(g, mul(g, iy, ci(g, op->iw)), ix);
	for (int c = 0; c < nc; c++)
		arows[c] = row(g, A, add(g, ci(g, (c0 + c) * HW), pos));
	for (int o = 0; o < no; o++)
		drows[o] = row(g, delta, add(g, mul(g, add(g, mul(g, add(g, o0, ci(g, o)), ci(g, op->oh)), y), ci(g, op->ow)), x));
	column_sums(g, no, sums, drows, nc, arows, nb);
	if_end(g, col_in);
	loop_end(g, &lx);
	if_end(g, row_in);
	loop_end(g, &ly);
	for (int o = 0; o < no; o++)
		for (int c = 0; c < nc; c++) {
			LLVMValueRef wi = add(g, mul(g, add(g, mul(g, add(g, mul(g, add(g, o0, ci(g, o)), ci(g, op->ic)), ci(g, c0 + c)),
			                                            ci(g, K)), ky), ci(g, K)), kx);
			put(g, grad, add(g, ci(g, op->w_off), wi), hsum(g, get(g, g->vf, sums[o * nc + c])), acc);
		}
	loop_end(g, &lkx);
	loop_end(g, &lky);
}

/* Output channels [o0, o0 + no) over every operand channel, WGT_BLOCK at
 * a time. */
static void conv_weight_rows(gen *g, const ir_op *op, LLVMValueRef delta, LLVMValueRef A, LLVMValueRef grad,
                             LLVMValueRef nb, LLVMValueRef acc, LLVMValueRef o0, int no)
{
	for (int64_t c0 = 0; c0 < op->ic; c0 += WGT_BLOCK)
		conv_weight_block(g, op, delta, A, grad, nb, acc, o0, no, c0,
		                  (int)(op->ic - c0 < WGT_BLOCK ? op->ic - c0 : WGT_BLOCK));
}

/* A convolution's dW (and db, with bias) for output channels [lo, hi): blocks of
 * WGT_BLOCK from lo, then one at a time, so that with shares cut on
 * multiples of WGT_BLOCK each channel is computed by the same code
 * whatever the shares. */
static void conv_weights(gen *g, const ir_op *op, LLVMValueRef delta, LLVMValueRef A, LLVMValueRef grad, LLVMValueRef nb,
                         LLVMValueRef acc, LLVMValueRef lo, LLVMValueRef hi, bool bias)
{
	loop lo_, lp;
	LLVMValueRef mid = add(g, lo, LLVMBuildAnd(g->b, LLVMBuildSub(g->b, hi, lo, ""), ci(g, -WGT_BLOCK), ""));
	LLVMValueRef o = loop_begin_step(g, &lo_, lo, mid, WGT_BLOCK);
	conv_weight_rows(g, op, delta, A, grad, nb, acc, o, WGT_BLOCK);
	loop_end(g, &lo_);
	o = loop_begin(g, &lo_, mid, hi);
	conv_weight_rows(g, op, delta, A, grad, nb, acc, o, 1);
	loop_end(g, &lo_);
	if (!bias)
		return;
	/* db[o]: Delta summed over the output positions and the examples */
	const int64_t HW = (int64_t)op->oh * op->ow;
	o = loop_begin(g, &lo_, lo, hi);
	LLVMValueRef s = var(g, g->vf, LLVMConstNull(g->vf));
	LLVMValueRef p = loop_begin(g, &lp, ci(g, 0), ci(g, HW));
	LLVMValueRef drow = row(g, delta, add(g, mul(g, o, ci(g, HW)), p));
	column_sums(g, 1, &s, &drow, 0, NULL, nb);
	loop_end(g, &lp);
	put(g, grad, add(g, ci(g, op->b_off), o), hsum(g, get(g, g->vf, s)), acc);
	loop_end(g, &lo_);
}

/* weights(P, bws, nb, grad, accumulate, part, parts): for the part-th share
 * of every op's rows (a convolution's output channels), the gradient of the
 * sum over the batch of dlogits . logits + dz . z, from the Deltas of
 * backward:
 *   dense    db = Delta 1,  dW = Delta E    (E: the operand, example-major)
 *   conv2d   db[o] and dW[o, c, ky, kx], sums over positions and examples
 * stored in grad, or added to it when accumulate is not 0.  They read
 * neither W nor the other shares' rows.  With `tangent`, the same over the
 * nb columns of a tangent workspace, without biases (sq does not depend on
 * them), for the ops whose tangents sq reads. */
static void weights_kernel(gen *g, bool tangent)
{
	static const char *names[] = { "P", "bws", "nb", "grad", "accumulate", "part", "parts" };
	cg_begin_function(g, tangent ? "lln_train_batch_tangent_weights" : "lln_train_batch_weights", 7, names,
	                  1u << 2 | 1u << 4 | 1u << 5 | 1u << 6);
	const ir_module *m = g->m;
	LLVMValueRef bws = cg_param(g, 1), grad = cg_param(g, 3);
	LLVMValueRef part = LLVMBuildSExt(g->b, cg_param(g, 5), g->i64, ""), parts = LLVMBuildSExt(g->b, cg_param(g, 6), g->i64, "");
	LLVMValueRef nb = LLVMBuildSExt(g->b, cg_param(g, 2), g->i64, "");
	LLVMValueRef acc = LLVMBuildICmp(g->b, LLVMIntNE, cg_param(g, 4), ci32(g, 0), "");
	bool live[m->n_ops];
	tangent_live(m, live);
	cg_part part_ = { 0 };
	for (int k = 0; k < m->n_ops; k++) {
		const ir_op *op = &m->ops[k];
		if ((op->kind != OP_DENSE && op->kind != OP_CONV2D) || (tangent && !live[k]))
			continue;
		cg_part_step(g, &part_);
		LLVMValueRef dk = fptr(g, bws, delta_off(m, k)), lo, hi;
		if (op->kind == OP_CONV2D) {
			cg_share(g, ci(g, op->oc), WGT_BLOCK, part, parts, &lo, &hi);
			conv_weights(g, op, dk, fptr(g, bws, act_off(m, op->in[0])), grad, nb, acc, lo, hi, !tangent);
			continue;
		}
		cg_share(g, ci(g, op->out_size), BATCH_ROWS, part, parts, &lo, &hi);
		if (!tangent) {
			loop lj;
			LLVMValueRef j = loop_begin(g, &lj, lo, hi);
			LLVMValueRef s = var(g, g->vf, LLVMConstNull(g->vf)), drow = row(g, dk, j);
			column_sums(g, 1, &s, &drow, 0, NULL, nb);
			put(g, grad, add(g, ci(g, op->b_off), j), hsum(g, get(g, g->vf, s)), acc);
			loop_end(g, &lj);
		}
		/* two products, so that the first batch's stores read nothing */
		gemm dw = { .C = at(g, g->f32, grad, add(g, ci(g, op->w_off), mul(g, lo, ci(g, op->in_size)))),
		            .ldc = ci(g, op->in_size), .A = at(g, g->f32, dk, mul(g, lo, ci(g, LD))), .lda = ci(g, LD),
		            .B = fptr(g, bws, ex_off(m, op->in[0])), .ldb = ci(g, op->in_size), .alpha = 1,
		            .rows = BATCH_ROWS, .M = LLVMBuildSub(g->b, hi, lo, ""), .N = ci(g, op->in_size), .K = nb };
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

static void emit_weights(gen *g) { weights_kernel(g, false); }
static void emit_tangent_weights(gen *g) { weights_kernel(g, true); }

void cg_emit_batch(gen *g, LLVMValueRef fns[6], int64_t *ws_floats, int64_t *tws_floats)
{
	LLVMTypeRef vf = g->vf;
	if (g->avx512)
		g->vf = LLVMVectorType(g->f32, 16);
	void (*emit[])(gen *) = { emit_forward, emit_backward, emit_weights, emit_tangents, emit_tangents_backward,
	                          emit_tangent_weights };
	int n = cg_batch_tangents(g->m) ? 6 : 3;
	for (int i = 0; i < 6; i++) {
		if (i < n) {
			emit[i](g);
			cg_wide_vectors(g);
		}
		fns[i] = i < n ? g->fn : LLVMConstNull(g->ptr);
	}
	g->vf = vf;
	*ws_floats = delta_off(g->m, g->m->n_ops);
	*tws_floats = n == 6 ? tpre_off(g->m, g->m->n_ops) : 0;
}
