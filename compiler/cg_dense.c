/* cg_dense.c: code generation for dense(x, n), and the Gram recurrence.
 *
 * y = W x + b with W [n, in] over the flattened operand.  Gradient rows go
 * through the register-blocked matrix kernel, gathering only the active
 * units of a hidden operand through its active list (diag(m) zeroes the
 * others); a dense layer reading the model input has its weights as rows,
 * which the kernels use in place (cg.c).
 *
 * Chains of dense layers also have a Gram form, used for eps_2 alone when
 * the IR's cost model picks it and for training:
 * training needs sq_h = ||g_h||^2 for every hidden neuron, and the gradient
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
 * n_params in grad) and multiplied once, in train_finish.  When dsq is one
 * value on a whole layer (ROLL with gamma 100), the terms of diag(dsq) go
 * the same way (uniform_backward). */
#include "cg.h"

/* ---- the operation ---- */

static void dense_apply(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, read_mode mode, bool bias,
                        LLVMValueRef dst)
{
	loop lj, lt;
	LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), ci(g, op->out_size));
	LLVMValueRef b = bias ? weight_for(g, mode, ext(g, load(g, g->f32, P, add(g, ci(g, op->b_off), j)))) : cd(g, 0);
	LLVMValueRef acc = var(g, g->f64, b);
	LLVMValueRef row = add(g, ci(g, op->w_off), mul(g, j, ci(g, op->in_size)));
	LLVMValueRef t = loop_begin(g, &lt, ci(g, 0), ci(g, op->in_size));
	LLVMValueRef w = weight_for(g, mode, ext(g, load(g, g->f32, P, add(g, row, t))));
	set(g, acc, fadd(g, get(g, g->f64, acc), fmul(g, w, operand(g, ws, mode, op->in[0], t))));
	loop_end(g, &lt);
	store(g, get(g, g->f64, acc), dst, j);
	loop_end(g, &lj);
}

/* J = W diag(m) J_in over the units of the operand that are on: all of
 * them, or a hidden operand's active list. */
static void dense_rows(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef src[2], LLVMValueRef dst)
{
	LLVMValueRef D = ci(g, g->R);
	int v = op->in[0];
	LLVMValueRef act = has_relu(g, v) ? at(g, g->f32, ws, ci(g, g->act_off[v - 1])) : NULL;
	LLVMValueRef na = act ? active_count(g, ws, v - 1) : ci(g, op->in_size);
	loop lj, lt, lz;
	if (g->R % VW == 0) {
		cg_gemm(g, &(gemm){ .C = dst, .ldc = D, .A = at(g, g->f32, P, ci(g, op->w_off)), .lda = ci(g, op->in_size),
		                    .acols = act, .B = src[0], .ldb = D, .brows = act, .alpha = 1,
		                    .M = ci(g, op->out_size), .N = D, .K = na });
		return;
	}
	LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), ci(g, op->out_size));
	LLVMValueRef row = at(g, g->f32, dst, mul(g, j, D));
	LLVMValueRef d = loop_begin(g, &lz, ci(g, 0), D);
	store(g, LLVMConstReal(g->f32, 0), row, d);
	loop_end(g, &lz);
	LLVMValueRef t = loop_begin(g, &lt, ci(g, 0), na);
	LLVMValueRef ai = act ? active_at(g, ws, v - 1, t) : t;
	LLVMValueRef w = load(g, g->f32, P, add(g, ci(g, op->w_off), add(g, mul(g, j, ci(g, op->in_size)), ai)));
	emit_axpy(g, row, w, at(g, g->f32, src[0], mul(g, ai, D)), D);
	loop_end(g, &lt);
	loop_end(g, &lj);
}

static void dense_param_grad(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef delta, LLVMValueRef grad)
{
	loop lr, lt;
	LLVMValueRef r = loop_begin(g, &lr, ci(g, 0), ci(g, op->out_size));
	LLVMValueRef d = load(g, g->f64, delta, r);
	LLVMValueRef bi = add(g, ci(g, op->b_off), r);
	store(g, LLVMBuildFAdd(g->b, load(g, g->f32, grad, bi), trunc32(g, d), ""), grad, bi);
	LLVMValueRef row = add(g, ci(g, op->w_off), mul(g, r, ci(g, op->in_size)));
	LLVMValueRef t = loop_begin(g, &lt, ci(g, 0), ci(g, op->in_size));
	LLVMValueRef wi = add(g, row, t);
	store(g, LLVMBuildFAdd(g->b, load(g, g->f32, grad, wi), trunc32(g, LLVMBuildFMul(g->b, d, activation(g, ws, op->in[0], t), "")), ""), grad, wi);
	loop_end(g, &lt);
	loop_end(g, &lr);
}

static void dense_transpose(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef delta,
                            const int64_t *adj, bool abs, bool to_input)
{
	int v = op->in[0];
	if (v == 0 && !to_input)
		return;
	LLVMValueRef din = at(g, g->f32, ws, ci(g, adj[v]));
	loop lr, lt;
	LLVMValueRef r = loop_begin(g, &lr, ci(g, 0), ci(g, op->out_size));
	LLVMValueRef d = load(g, g->f64, delta, r);
	LLVMValueRef row = add(g, ci(g, op->w_off), mul(g, r, ci(g, op->in_size)));
	LLVMValueRef t = loop_begin(g, &lt, ci(g, 0), ci(g, op->in_size));
	LLVMValueRef w = ext(g, load(g, g->f32, P, add(g, row, t)));
	if (abs)
		w = fabsv(g, w);
	store(g, LLVMBuildFAdd(g->b, load(g, g->f64, din, t), LLVMBuildFMul(g->b, w, d, ""), ""), din, t);
	loop_end(g, &lt);
	loop_end(g, &lr);
}

/* dW[r, t] += dbar_r . (m_t src_t);  sbar_t += m_t sum_r W[r, t] dbar_r.
 * Rows of the input are the identity, so there dW += dbar. */
static void dense_rows_adjoint(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef src[2],
                               LLVMValueRef dbar, LLVMValueRef sbar[2], LLVMValueRef grad)
{
	LLVMValueRef D = ci(g, g->R);
	int v = op->in[0];
	loop lr, lt;
	LLVMValueRef r = loop_begin(g, &lr, ci(g, 0), ci(g, op->out_size));
	LLVMValueRef drow = at(g, g->f32, dbar, mul(g, r, D));
	LLVMValueRef wrow = add(g, ci(g, op->w_off), mul(g, r, ci(g, op->in_size)));
	if (v == 0 && !g->sampled) {
		emit_axpy(g, at(g, g->f32, grad, wrow), LLVMConstReal(g->f32, 1), drow, D);
		loop_end(g, &lr);
		return;
	}
	LLVMValueRef t = loop_begin(g, &lt, ci(g, 0), ci(g, op->in_size));
	LLVMBasicBlockRef done = on_begin(g, ws, v, t);
	LLVMValueRef wi = add(g, wrow, t);
	LLVMValueRef dw = emit_dot(g, drow, at(g, g->f32, src[0], mul(g, t, D)), D);
	store(g, LLVMBuildFAdd(g->b, load(g, g->f32, grad, wi), dw, ""), grad, wi);
	if (sbar[0])
		emit_axpy(g, at(g, g->f32, sbar[0], mul(g, t, D)), load(g, g->f32, P, wi), drow, D);
	on_end(g, done);
	loop_end(g, &lt);
	loop_end(g, &lr);
}

const cg_op cg_op_dense = { dense_apply, dense_rows, dense_transpose, dense_param_grad, dense_rows_adjoint };

/* ---- the Gram recurrence ---- */

/* K = W W^T for the first-layer hidden ops, symmetric, accumulated in double
 * for certify (its bound for G^1 counts on it, docs/reliability.md), in
 * float for training, whose gradients are float anyway (2 ms a step at
 * mnist_fc's size in double; train_prepare).  Blocks of R x 4 entries on
 * or above the diagonal, each a register tile of vectors over the input
 * (the lanes summed at the end, the tail of in_size mod the width after):
 * each float of W loaded (and widened) feeds R or 4 multiply-adds.  A block
 * across the diagonal computes some entries twice, the same products in
 * the same order, so the same bits. */
enum { KQ = 4 };

static void kk_block(gen *g, const ir_op *op, LLVMValueRef W, LLVMValueRef K, LLVMValueRef r0, LLVMValueRef q0, int R, int Q,
                     bool exact)
{
	LLVMTypeRef et = exact ? g->f64 : g->f32;
	const int64_t vw = exact || !g->avx512 ? VW : 16;   /* a zmm of doubles or of floats */
	const int64_t D = op->in_size, Dv = D & ~(vw - 1), n = op->out_size;
	LLVMTypeRef vt = LLVMVectorType(et, (unsigned)vw), vl = LLVMVectorType(g->f32, (unsigned)vw);
	LLVMValueRef acc[4][KQ], a[4], b[KQ];
	for (int i = 0; i < R; i++)
		for (int j = 0; j < Q; j++)
			acc[i][j] = var(g, vt, LLVMConstNull(vt));
	loop ld;
	LLVMValueRef d = loop_begin_step(g, &ld, ci(g, 0), ci(g, Dv), vw);
	for (int i = 0; i < R + Q; i++) {
		LLVMValueRef row = i < R ? add(g, r0, ci(g, i)) : add(g, q0, ci(g, i - R));
		LLVMValueRef v = LLVMBuildLoad2(g->b, vl, at(g, g->f32, W, add(g, mul(g, row, ci(g, D)), d)), "");
		LLVMSetAlignment(v, 4);
		v = exact ? LLVMBuildFPExt(g->b, v, vt, "") : v;
		if (i < R)
			a[i] = v;
		else
			b[i - R] = v;
	}
	for (int i = 0; i < R; i++)
		for (int j = 0; j < Q; j++)
			set(g, acc[i][j], intrinsic_n(g, "llvm.fmuladd", vt, (LLVMValueRef[]){ a[i], b[j], get(g, vt, acc[i][j]) }, 3));
	loop_end(g, &ld);
	for (int i = 0; i < R; i++)
		for (int j = 0; j < Q; j++) {
			LLVMValueRef r = add(g, r0, ci(g, i)), q = add(g, q0, ci(g, j));
			LLVMValueRef sum = var(g, et, intrinsic_n(g, "llvm.vector.reduce.fadd", vt,
			                                          (LLVMValueRef[]){ LLVMConstReal(et, 0), get(g, vt, acc[i][j]) }, 2));
			d = loop_begin(g, &ld, ci(g, Dv), ci(g, D));
			LLVMValueRef x = load(g, g->f32, W, add(g, mul(g, r, ci(g, D)), d));
			LLVMValueRef y = load(g, g->f32, W, add(g, mul(g, q, ci(g, D)), d));
			if (exact)
				x = ext(g, x), y = ext(g, y);
			set(g, sum, intrinsic_n(g, "llvm.fmuladd", et, (LLVMValueRef[]){ x, y, get(g, et, sum) }, 3));
			loop_end(g, &ld);
			LLVMValueRef v = exact ? trunc32(g, get(g, et, sum)) : get(g, et, sum);
			store(g, v, K, add(g, mul(g, r, ci(g, n)), q));
			store(g, v, K, add(g, mul(g, q, ci(g, n)), r));
		}
}

/* The q blocks of row block r0 (R rows): KQ at a time from r0, then one. */
static void kk_rows(gen *g, const ir_op *op, LLVMValueRef W, LLVMValueRef K, LLVMValueRef r0, int R, bool exact)
{
	LLVMValueRef n = ci(g, op->out_size);
	LLVMValueRef q4 = add(g, r0, LLVMBuildAnd(g->b, LLVMBuildSub(g->b, n, r0, ""), ci(g, -KQ), ""));
	loop lq;
	LLVMValueRef q = loop_begin_step(g, &lq, r0, q4, KQ);
	kk_block(g, op, W, K, r0, q, R, KQ, exact);
	loop_end(g, &lq);
	q = loop_begin(g, &lq, q4, n);
	kk_block(g, op, W, K, r0, q, R, 1, exact);
	loop_end(g, &lq);
}

/* The part-th of `parts` shares (i64 values) of the first-layer ops' K:
 * the row blocks b with b mod parts = part (the triangle's rows shrink, so
 * interleaved shares are balanced), the last R - 1 rows with part 0.  Each
 * share writes its own entries of K, both K[r, q] and K[q, r], so shares
 * may run at once.  The other layers' W^T W (training's uniform dsq, in
 * float: only gradients read it) by contiguous shares of its rows. */
void cg_gram_prepare(gen *g, LLVMValueRef P, LLVMValueRef pre, LLVMValueRef part, LLVMValueRef parts, bool exact)
{
	const ir_module *m = g->m;
	const int R = g->avx512 ? 4 : 2;   /* R x KQ accumulators: 16 of 32 zmm, 8 of 16 ymm pairs */
	for (int k = 0; k < m->n_ops; k++) {
		const ir_op *op = &m->ops[k];
		LLVMValueRef W = at(g, g->f32, P, ci(g, op->w_off));
		if (g->wtw_off[k] >= 0) {
			LLVMValueRef D = ci(g, op->in_size), r0, r1;
			cg_share(g, D, 1, part, parts, &r0, &r1);
			cg_wide_gemm(g, &(gemm){ .rows = 8, .C = at(g, g->f32, pre, add(g, ci(g, g->wtw_off[k]), mul(g, r0, D))),
			                         .ldc = D, .A = at(g, g->f32, W, r0), .lda = D, .atrans = true, .B = W, .ldb = D,
			                         .alpha = 1, .M = LLVMBuildSub(g->b, r1, r0, ""), .N = D, .K = ci(g, op->out_size) });
		}
		if (g->kpre_off[k] < 0)
			continue;
		int64_t n = op->out_size, nR = n / R * R;
		LLVMValueRef K = at(g, g->f32, pre, ci(g, g->kpre_off[k]));
		loop lr;
		LLVMValueRef b = loop_begin(g, &lr, ci(g, 0), ci(g, nR / R));
		LLVMBasicBlockRef done = if_begin(g, LLVMBuildICmp(g->b, LLVMIntEQ, LLVMBuildSRem(g->b, b, parts, ""), part, ""));
		kk_rows(g, op, W, K, mul(g, b, ci(g, R)), R, exact);
		if_end(g, done);
		loop_end(g, &lr);
		done = if_begin(g, LLVMBuildICmp(g->b, LLVMIntEQ, part, ci(g, 0), ""));
		LLVMValueRef r = loop_begin(g, &lr, ci(g, nR), ci(g, n));
		kk_rows(g, op, W, K, r, 1, exact);
		loop_end(g, &lr);
		if_end(g, done);
	}
}

/* dst[q] = src[act_k[q] stride] (times scale, unless NULL) for q < count,
 * 0 up to the padded count: the active columns (or, strided, rows) of a
 * matrix, packed.  The zero tail comes apart from the copy so that the copy
 * has no test per element (and vectorises into gathers). */
static void gather_active(gen *g, LLVMValueRef ws, int k, LLVMValueRef dst, LLVMValueRef src, LLVMValueRef stride,
                          LLVMValueRef count, LLVMValueRef scale)
{
	loop l;
	LLVMValueRef q = loop_begin(g, &l, ci(g, 0), count);
	LLVMValueRef v = load(g, g->f32, src, mul(g, active_at(g, ws, k, q), stride));
	store(g, scale ? fmul(g, scale, v) : v, dst, q);
	loop_end(g, &l);
	q = loop_begin(g, &l, count, pad8v(g, count));
	store(g, LLVMConstReal(g->f32, 0), dst, q);
	loop_end(g, &l);
}

/* dst[row(p) D + A_i[q]] += scale src[p sld + q] for p < np, q < |A_i|,
 * row(p) = rows[p] (an i32 list): a row at a time, spread over buf (zero
 * off A_i, which each row overwrites) and added to dst's row whole, since
 * scattered read-modify-writes of a matrix past L2 wait on every line. */
static void scatter_add(gen *g, LLVMValueRef ws, int i, LLVMValueRef buf, LLVMValueRef D, LLVMValueRef dst,
                        LLVMValueRef rows, LLVMValueRef np, LLVMValueRef src, LLVMValueRef sld, LLVMValueRef scale)
{
	loop l, lp;
	LLVMValueRef t = loop_begin(g, &l, ci(g, 0), D);
	store(g, LLVMConstReal(g->f32, 0), buf, t);
	loop_end(g, &l);
	LLVMValueRef p = loop_begin(g, &lp, ci(g, 0), np);
	LLVMValueRef q = loop_begin(g, &l, ci(g, 0), active_count(g, ws, i));
	store(g, load(g, g->f32, src, add(g, mul(g, p, sld), q)), buf, active_at(g, ws, i, q));
	loop_end(g, &l);
	emit_axpy(g, at(g, g->f32, dst, mul(g, lookup(g, rows, p), D)), scale, buf, D);
	loop_end(g, &lp);
}

static void gram_gemm(gen *g, gemm p)
{
	if (g->gram_wide) {
		p.rows = 8;
		cg_wide_gemm(g, &p);
	} else {
		cg_gemm(g, &p);
	}
}

/* Whether op k's Gram block on its active units is needed: by a hidden
 * consumer, or by the logits when their Gram matrix is wanted. */
static bool need_gc(const ir_module *m, int k, bool for_logits)
{
	for (int j = k + 1; j < m->n_ops; j++)
		if (m->ops[j].in[0] == k + 1 && (m->ops[j].relu || for_logits))
			return true;
	return false;
}

/* sq[z_off + row(p)] = scale T[row(p)] . V[row(p)] for p < np, row(p) =
 * rows[p] (an i32 list) or p. */
static void row_dots(gen *g, LLVMValueRef T, LLVMValueRef V, LLVMValueRef ld, LLVMValueRef len, LLVMValueRef rows,
                     LLVMValueRef np, double scale, LLVMValueRef sq, int64_t z_off)
{
	loop l;
	LLVMValueRef p = loop_begin(g, &l, ci(g, 0), np);
	LLVMValueRef r = lookup(g, rows, p);
	LLVMValueRef d = emit_dot(g, at(g, g->f32, T, mul(g, r, ld)), at(g, g->f32, V, mul(g, r, ld)), len);
	store(g, scale == 1 ? d : fmul(g, LLVMConstReal(g->f32, scale), d), sq, add(g, ci(g, z_off), r));
	loop_end(g, &l);
}

/* The rows of T = V Gc_i that give hidden op k's sq alone: every row of a
 * layer whose Gram block is not formed, else the inactive ones. */
static void half_rows(gen *g, int k, LLVMValueRef ws, LLVMValueRef *rows, LLVMValueRef *np)
{
	bool full = need_gc(g->m, k, false);
	*rows = full ? inactive_list(g, ws, k) : NULL;
	*np = full ? LLVMBuildSub(g->b, ci(g, g->m->ops[k].out_size), active_count(g, ws, k), "") : ci(g, g->m->ops[k].out_size);
}

/* Training's T and sq for hidden op k (input i): on the rows of T that
 * give sq alone (half_rows) the product with U, Gc_i's upper triangle
 * with its diagonal halved (Gc_i = U + U^T), since
 *   sq_r = V_r Gc_i V_r^T = 2 (V U)_r . V_r
 * and V U takes half the multiply-adds of V Gc_i.  Those rows of T hold
 * V U until cg_gram_backward's general path completes them (the uniform
 * path reads T on the active rows alone). */
static void half_rows_forward(gen *g, int k, LLVMValueRef ws, LLVMValueRef sq)
{
	const ir_op *op = &g->m->ops[k];
	int i = op->in[0] - 1;
	LLVMValueRef VLD = ci(g, pad8(op->in_size)), ILD = VLD;
	LLVMValueRef ai = active_count(g, ws, i), ai8 = pad8v(g, ai);
	LLVMValueRef Vc = at(g, g->f32, ws, ci(g, g->vc_off[k])), T = at(g, g->f32, ws, ci(g, g->t_off[k]));
	LLVMValueRef Gci = at(g, g->f32, ws, ci(g, g->gc_off[i]));
	/* U in Gbar_i's place, which the backward pass writes before it reads */
	LLVMValueRef Ut = at(g, g->f32, ws, ci(g, g->gbar_off[i]));
	loop lp, lq;
	LLVMValueRef p = loop_begin(g, &lp, ci(g, 0), ai);
	LLVMValueRef q = loop_begin(g, &lq, ci(g, 0), ai8);
	LLVMValueRef e = add(g, mul(g, p, ILD), q), v = load(g, g->f32, Gci, e);
	LLVMValueRef half = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, q, p, ""),
	                                    fmul(g, LLVMConstReal(g->f32, 0.5), v), LLVMConstReal(g->f32, 0), "");
	store(g, LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSGT, q, p, ""), v, half, ""), Ut, e);
	loop_end(g, &lq);
	loop_end(g, &lp);
	LLVMValueRef rows, np;
	half_rows(g, k, ws, &rows, &np);
	if (rows) {   /* the active rows whole: Gc_k and E T read them */
		LLVMValueRef act = at(g, g->f32, ws, ci(g, g->act_off[k]));
		LLVMValueRef a = active_count(g, ws, k);
		gram_gemm(g, (gemm){ .C = T, .ldc = VLD, .A = Vc, .lda = VLD, .arows = act, .scatter = true, .B = Gci,
		                     .ldb = ILD, .alpha = 1, .M = a, .N = ai8, .K = ai });
		row_dots(g, T, Vc, VLD, ai8, act, a, 1, sq, op->z_off);
	}
	gram_gemm(g, (gemm){ .C = T, .ldc = VLD, .A = Vc, .lda = VLD, .arows = rows, .scatter = rows != NULL, .B = Ut,
	                     .ldb = ILD, .upper = true, .alpha = 1, .M = np, .N = ai8, .K = ai });
	row_dots(g, T, Vc, VLD, ai8, rows, np, 2, sq, op->z_off);
}

/* sq for every hidden neuron (and, for_logits, V and T of the logits). */
void cg_gram_forward(gen *g, LLVMValueRef P, LLVMValueRef pre, LLVMValueRef ws, LLVMValueRef sq, bool for_logits)
{
	const ir_module *m = g->m;
	cg_part part = { 0 };
	for (int k = 0; k < m->n_ops; k++) {
		cg_part_step(g, &part);
		const ir_op *op = &m->ops[k];
		if (!op->relu && (!for_logits || op->in[0] == 0))
			continue;
		int64_t n = op->out_size;
		LLVMValueRef N = ci(g, n), GLD = ci(g, pad8(n));
		loop lr, lt, lp;
		if (op->in[0] == 0) {
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
			gather_active(g, ws, k, at(g, g->f32, Gc, mul(g, p, GLD)), at(g, g->f32, K, mul(g, active_at(g, ws, k, p), N)),
			              ci(g, 1), a, NULL);
			loop_end(g, &lp);
			continue;
		}
		int i = op->in[0] - 1;
		LLVMValueRef ai = active_count(g, ws, i), ai8 = pad8v(g, ai);
		LLVMValueRef Vc = at(g, g->f32, ws, ci(g, g->vc_off[k])), T = at(g, g->f32, ws, ci(g, g->t_off[k]));
		LLVMValueRef VLD = ci(g, pad8(op->in_size));
		/* V = W[:, A_i], zero-padded */
		LLVMValueRef r = loop_begin(g, &lr, ci(g, 0), N);
		gather_active(g, ws, i, at(g, g->f32, Vc, mul(g, r, VLD)),
		              at(g, g->f32, P, add(g, ci(g, op->w_off), mul(g, r, ci(g, op->in_size)))), ci(g, 1), ai, NULL);
		loop_end(g, &lr);
		if (op->relu && !for_logits) {
			half_rows_forward(g, k, ws, sq);
		} else {
			/* T = V Gc_i;  sq = rowwise V . T */
			gram_gemm(g, (gemm){ .C = T, .ldc = VLD, .A = Vc, .lda = VLD, .B = at(g, g->f32, ws, ci(g, g->gc_off[i])),
			                     .ldb = VLD, .alpha = 1, .M = N, .N = ai8, .K = ai });
			if (op->relu)
				row_dots(g, T, Vc, VLD, ai8, NULL, N, 1, sq, op->z_off);
		}
		if (!op->relu || !need_gc(m, k, for_logits))
			continue;
		/* Gc_k = T[A_k] V[A_k]^T, through the transposed gather VA[t, q] = V[A_k[q], t] */
		LLVMValueRef a = active_count(g, ws, k), a8 = pad8v(g, a);
		LLVMValueRef VA = at(g, g->f32, ws, ci(g, g->scratch_off[0]));
		LLVMValueRef t = loop_begin(g, &lt, ci(g, 0), ai);
		gather_active(g, ws, k, at(g, g->f32, VA, mul(g, t, GLD)), at(g, g->f32, Vc, t), VLD, a, NULL);
		loop_end(g, &lt);
		gram_gemm(g, (gemm){ .symmetric = true, .C = at(g, g->f32, ws, ci(g, g->gc_off[k])), .ldc = GLD, .A = T, .lda = VLD,
		                      .arows = at(g, g->f32, ws, ci(g, g->act_off[k])), .B = VA, .ldb = GLD, .alpha = 1,
		                      .M = a, .N = a8, .K = ai });
	}
	cg_part_close(g, &part);
}

/* Whether dsq equals c (its first neuron's) on every neuron of op (i1), as ROLL's with gamma
 * 100 is: then Gbar = c I on the inactive units, and the terms of c are
 * W^T W (per weight vector) and the batch sum of c G^{i-1}. */
static LLVMValueRef uniform_dsq(gen *g, const ir_op *op, LLVMValueRef dsq, LLVMValueRef c)
{
	LLVMValueRef same = var(g, g->i1, LLVMConstInt(g->i1, 1, 0));
	loop l;
	LLVMValueRef r = loop_begin(g, &l, ci(g, 1), ci(g, op->out_size));
	LLVMValueRef eq = LLVMBuildFCmp(g->b, LLVMRealOEQ, load(g, g->f32, dsq, add(g, ci(g, op->z_off), r)), c, "");
	set(g, same, LLVMBuildAnd(g->b, get(g, g->i1, same), eq, ""));
	loop_end(g, &l);
	return get(g, g->i1, same);
}

/* Layer k (input i) when dsq = c on all its neurons: Gbar^k = c I + E on
 * the active block, so
 *   dW^k = 2 Gbar T = 2 c W H + 2 [rows A_k] E T[A_k],  H = G^i on A_i
 *   Gbar^i_AA = V^T Gbar V = c (W^T W)_AA + V[A_k]^T E V[A_k]
 * where c H is summed over the batch (hacc, multiplied once in
 * train_finish) and W^T W comes from prepare: no product over all n rows
 * of V, and no pass over them. */
static void uniform_backward(gen *g, int k, LLVMValueRef pre, LLVMValueRef ws, LLVMValueRef c, LLVMValueRef grad,
                             bool has_e, LLVMValueRef EV, LLVMValueRef ET, LLVMValueRef buf)
{
	const ir_module *m = g->m;
	const ir_op *op = &m->ops[k];
	int i = op->in[0] - 1;
	LLVMValueRef D = ci(g, op->in_size), VLD = ci(g, pad8(op->in_size)), ILD = ci(g, pad8(m->ops[i].out_size));
	LLVMValueRef ai = active_count(g, ws, i), a = active_count(g, ws, k);
	LLVMValueRef Gb = at(g, g->f32, ws, ci(g, g->gbar_off[i])), Gc = at(g, g->f32, ws, ci(g, g->gc_off[i]));
	LLVMValueRef WtW = at(g, g->f32, pre, ci(g, g->wtw_off[k])), H = at(g, g->f32, grad, ci(g, g->hacc_off[k]));
	LLVMValueRef acti = at(g, g->f32, ws, ci(g, g->act_off[i]));
	loop lp;
	LLVMValueRef p = loop_begin(g, &lp, ci(g, 0), ai);
	gather_active(g, ws, i, at(g, g->f32, Gb, mul(g, p, ILD)), at(g, g->f32, WtW, mul(g, active_at(g, ws, i, p), D)),
	              ci(g, 1), ai, c);
	loop_end(g, &lp);
	scatter_add(g, ws, i, buf, D, H, acti, ai, Gc, ILD, c);
	if (!has_e)
		return;
	LLVMValueRef act = at(g, g->f32, ws, ci(g, g->act_off[k]));
	gram_gemm(g, (gemm){ .symmetric = true, .accumulate = true, .C = Gb, .ldc = ILD, .A = at(g, g->f32, ws, ci(g, g->vc_off[k])),
	                     .lda = VLD, .atrans = true, .acols = act, .B = EV, .ldb = VLD, .alpha = 1, .M = ai,
	                     .N = pad8v(g, ai), .K = a });
	scatter_add(g, ws, i, buf, D, at(g, g->f32, grad, ci(g, op->w_off)), act, a, ET, VLD, LLVMConstReal(g->f32, 2));
}

void cg_gram_backward(gen *g, LLVMValueRef pre, LLVMValueRef ws, LLVMValueRef dsq, LLVMValueRef grad)
{
	const ir_module *m = g->m;
	cg_part part = { 0 };
	for (int k = m->n_ops - 1; k >= 0; k--) {
		cg_part_step(g, &part);
		const ir_op *op = &m->ops[k];
		if (!op->relu)
			continue;
		/* In a chain, the one consumer of a layer whose Gram block was
		 * formed stores its active block of Gbar (below, before it is read
		 * here); the others' Gbar is diag(dsq) alone, E is never read. */
		bool has_e = need_gc(m, k, false);
		int64_t n = op->out_size;
		LLVMValueRef N = ci(g, n), GLD = ci(g, pad8(n));
		LLVMValueRef a = active_count(g, ws, k), act = at(g, g->f32, ws, ci(g, g->act_off[k]));
		LLVMValueRef E = at(g, g->f32, ws, ci(g, g->gbar_off[k]));
		LLVMValueRef row_buf = at(g, g->f32, ws, ci(g, g->scratch_off[2]));   /* for scatter_add */
		loop lr, lt;
		if (op->in[0] == 0) {
			/* the batch accumulator of Gbar^1: diag(dsq) plus the active block */
			LLVMValueRef acc = at(g, g->f32, grad, ci(g, g->acc_off[k]));
			LLVMValueRef r = loop_begin(g, &lr, ci(g, 0), N);
			LLVMValueRef ii = add(g, mul(g, r, N), r);
			store(g, fadd(g, load(g, g->f32, acc, ii), load(g, g->f32, dsq, add(g, ci(g, op->z_off), r))), acc, ii);
			loop_end(g, &lr);
			if (has_e)
				scatter_add(g, ws, k, row_buf, N, acc, act, a, E, GLD, LLVMConstReal(g->f32, 1));
			continue;
		}
		int i = op->in[0] - 1;
		LLVMValueRef ai = active_count(g, ws, i), ai8 = pad8v(g, ai);
		LLVMValueRef VLD = ci(g, pad8(op->in_size));
		LLVMValueRef Vc = at(g, g->f32, ws, ci(g, g->vc_off[k])), T = at(g, g->f32, ws, ci(g, g->t_off[k]));
		LLVMValueRef EV = at(g, g->f32, ws, ci(g, g->scratch_off[0]));
		LLVMValueRef ET = at(g, g->f32, ws, ci(g, g->scratch_off[1]));
		LLVMValueRef Y = at(g, g->f32, ws, ci(g, g->scratch_off[2]));
		/* the active block of Gbar times V and T */
		if (has_e) {
			gram_gemm(g, (gemm){ .C = EV, .ldc = VLD, .A = E, .lda = GLD, .B = Vc, .ldb = VLD,
			                         .brows = act, .alpha = 1, .M = a, .N = ai8, .K = a });
			gram_gemm(g, (gemm){ .C = ET, .ldc = VLD, .A = E, .lda = GLD, .B = T, .ldb = VLD,
			                         .brows = act, .alpha = 1, .M = a, .N = ai8, .K = a });
		}
		LLVMValueRef c = load(g, g->f32, dsq, ci(g, op->z_off));
		LLVMValueRef uni = g->wtw_off[k] >= 0 ? uniform_dsq(g, op, dsq, c) : NULL;
		LLVMBasicBlockRef general = uni ? if_begin(g, LLVMBuildNot(g->b, uni, "")) : NULL;
		/* T whole: the rows the forward pass left as V U (half_rows_forward) */
		LLVMValueRef hr, hn;
		half_rows(g, k, ws, &hr, &hn);
		gram_gemm(g, (gemm){ .C = T, .ldc = VLD, .A = Vc, .lda = VLD, .arows = hr, .scatter = hr != NULL,
		                     .B = at(g, g->f32, ws, ci(g, g->gc_off[i])), .ldb = VLD, .alpha = 1, .M = hn, .N = ai8,
		                     .K = ai });
		/* row r: Y = Gbar V = dsq_r V[r] + EV[pos(r)];  dW[r, A_i] += 2 Gbar T */
		LLVMValueRef pos = var(g, g->i64, ci(g, 0));
		LLVMValueRef r = loop_begin(g, &lr, ci(g, 0), N);
		LLVMValueRef cr = load(g, g->f32, dsq, add(g, ci(g, op->z_off), r));
		LLVMValueRef on = var(g, g->i1, LLVMConstInt(g->i1, 0, 0));
		if (has_e) {
			LLVMBasicBlockRef d0 = if_begin(g, LLVMBuildICmp(g->b, LLVMIntSLT, get(g, g->i64, pos), a, ""));
			set(g, on, LLVMBuildICmp(g->b, LLVMIntEQ, active_at(g, ws, k, get(g, g->i64, pos)), r, ""));
			if_end(g, d0);
		}
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
		/* Gbar_i's active block = V^T Y */
		gram_gemm(g, (gemm){ .symmetric = true, .C = at(g, g->f32, ws, ci(g, g->gbar_off[i])),
		                         .ldc = ci(g, pad8(m->ops[i].out_size)), .A = Vc, .lda = VLD, .atrans = true, .B = Y,
		                         .ldb = VLD, .alpha = 1, .M = ai, .N = ai8, .K = N });
		if (uni) {
			if_end(g, general);
			LLVMBasicBlockRef done = if_begin(g, uni);
			uniform_backward(g, k, pre, ws, c, grad, has_e, EV, ET, row_buf);
			if_end(g, done);
		}
	}
	cg_part_close(g, &part);
}

/* The batch accumulators' terms: dW^1 += 2 Gbar^1 W^1 with Gbar^1 summed
 * over the batch, and dW += 2 W H with H the sum of c G^{i-1} (uniform dsq). */
void cg_gram_finish(gen *g, LLVMValueRef P, LLVMValueRef grad, LLVMValueRef part, LLVMValueRef parts)
{
	const ir_module *m = g->m;
	for (int k = 0; k < m->n_ops; k++) {
		const ir_op *op = &m->ops[k];
		if (g->acc_off[k] < 0 && g->hacc_off[k] < 0)
			continue;
		LLVMValueRef N = ci(g, op->out_size), D = ci(g, op->in_size), r0, r1;
		cg_share(g, N, 1, part, parts, &r0, &r1);
		LLVMValueRef W = at(g, g->f32, P, ci(g, op->w_off));
		gemm p = { .rows = 8, .C = at(g, g->f32, grad, add(g, ci(g, op->w_off), mul(g, r0, D))), .ldc = D,
		           .accumulate = true, .alpha = 2, .M = LLVMBuildSub(g->b, r1, r0, ""), .N = D };
		if (g->acc_off[k] >= 0) {
			p.A = at(g, g->f32, grad, add(g, ci(g, g->acc_off[k]), mul(g, r0, N)));
			p.lda = N, p.B = W, p.ldb = D, p.K = N;
		} else {
			p.A = at(g, g->f32, W, mul(g, r0, D));
			p.lda = D, p.B = at(g, g->f32, grad, ci(g, g->hacc_off[k])), p.ldb = D, p.K = D;
		}
		cg_wide_gemm(g, &p);
	}
}
