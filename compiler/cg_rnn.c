/* cg_rnn.c: code generation for one time step of rnn(x, n).
 *
 * The IR unrolls an rnn into one op per step (ir.c): h_t = relu(W_ih x_t +
 * b_ih + W_hh h_{t-1} + b_hh), with x_t a slice of the sequence below (the
 * input's frame t, or step t of a stacked rnn) and h_{t-1} the previous
 * step, absent at t = 0 (h_0 = 0).  So a step is a dense layer over two
 * operands with two biases, the weights shared by every step: each step
 * adds its share to the same parameter gradients, and the kernels around
 * it (margins, training, rounding bounds) treat the states as hidden
 * neurons like any other.  Gradient rows go through the blocked matrix
 * kernel, gathering the active units of a hidden operand as dense does.
 * Over a sequence of free length (input x[*, F]), the steps before its
 * first frame are held at 0 in every mode (cg_padded).
 */
#include "cg.h"

/* The operands' weights: W_ih over the slice of operand 0, W_hh over
 * operand 1. */
typedef struct part { int v; int64_t first, n, w_off; } part;

static int parts(const ir_op *op, part p[2])
{
	p[0] = (part){ op->in[0], op->slice, op->in_size, op->w_off };
	p[1] = (part){ op->in[1], 0, op->out_size, op->wh_off };
	return op->n_in;
}

static LLVMValueRef weight(gen *g, LLVMValueRef P, const part *p, LLVMValueRef j, LLVMValueRef i)
{
	return load(g, g->f32, P, add(g, ci(g, p->w_off), add(g, mul(g, j, ci(g, p->n)), i)));
}

static void rnn_apply(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, read_mode mode, bool bias,
                      LLVMValueRef dst)
{
	part p[2];
	int np = parts(op, p);
	loop lj, li;
	LLVMValueRef padded = cg_padded(g, ws, op);
	LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), ci(g, op->out_size));
	LLVMValueRef b = cd(g, 0);
	if (bias)
		b = LLVMBuildFAdd(g->b, weight_for(g, mode, ext(g, load(g, g->f32, P, add(g, ci(g, op->b_off), j)))),
		                  weight_for(g, mode, ext(g, load(g, g->f32, P, add(g, ci(g, op->bh_off), j)))), "");
	LLVMValueRef acc = var(g, g->f64, b);
	for (int k = 0; k < np; k++) {
		LLVMValueRef i = loop_begin(g, &li, ci(g, 0), ci(g, p[k].n));
		LLVMValueRef w = weight_for(g, mode, ext(g, weight(g, P, &p[k], j, i)));
		LLVMValueRef x = operand(g, ws, mode, p[k].v, add(g, ci(g, p[k].first), i));
		set(g, acc, fadd(g, get(g, g->f64, acc), fmul(g, w, x)));
		loop_end(g, &li);
	}
	LLVMValueRef r = get(g, g->f64, acc);
	store(g, padded ? LLVMBuildSelect(g->b, padded, cd(g, 0), r, "") : r, dst, j);
	loop_end(g, &lj);
}

/* J = W_ih diag(m) J_x[slice] + W_hh diag(m) J_{h_{t-1}} */
static void rnn_rows(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef src[2], LLVMValueRef dst)
{
	LLVMValueRef D = ci(g, g->R);
	part p[2];
	int np = parts(op, p);
	loop lj, li, lz;
	if (g->R % VW == 0) {
		for (int k = 0; k < np; k++) {
			int v = p[k].v;
			LLVMValueRef act = has_relu(g, v) ? at(g, g->f32, ws, ci(g, g->act_off[v - 1])) : NULL;
			/* a hidden operand is a whole value: its active list indexes the slice */
			LLVMValueRef na = act ? active_count(g, ws, v - 1) : ci(g, p[k].n);
			cg_gemm(g, &(gemm){ .C = dst, .ldc = D, .A = at(g, g->f32, P, ci(g, p[k].w_off)), .lda = ci(g, p[k].n),
			                    .acols = act, .B = row_at(g, src[k], ci(g, p[k].first)), .ldb = D, .brows = act,
			                    .alpha = 1, .accumulate = k > 0, .M = ci(g, op->out_size), .N = D, .K = na });
		}
		return;
	}
	LLVMValueRef j = loop_begin(g, &lj, ci(g, 0), ci(g, op->out_size));
	LLVMValueRef row = row_at(g, dst, j);
	LLVMValueRef d = loop_begin(g, &lz, ci(g, 0), D);
	store(g, LLVMConstReal(g->f32, 0), row, d);
	loop_end(g, &lz);
	for (int k = 0; k < np; k++) {
		LLVMValueRef i = loop_begin(g, &li, ci(g, 0), ci(g, p[k].n));
		LLVMValueRef t = add(g, ci(g, p[k].first), i);
		LLVMBasicBlockRef done = on_begin(g, ws, p[k].v, t);
		emit_axpy(g, row, weight(g, P, &p[k], j, i), row_at(g, src[k], t), D);
		on_end(g, done);
		loop_end(g, &li);
	}
	loop_end(g, &lj);
}

static void rnn_param_grad(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef delta, LLVMValueRef grad)
{
	part p[2];
	int np = parts(op, p);
	loop lr, li;
	LLVMValueRef r = loop_begin(g, &lr, ci(g, 0), ci(g, op->out_size));
	LLVMValueRef d = load(g, g->f64, delta, r);
	int64_t boff[2] = { op->b_off, op->bh_off };
	for (int k = 0; k < 2; k++) {
		LLVMValueRef bi = add(g, ci(g, boff[k]), r);
		store(g, LLVMBuildFAdd(g->b, load(g, g->f32, grad, bi), trunc32(g, d), ""), grad, bi);
	}
	for (int k = 0; k < np; k++) {
		LLVMValueRef i = loop_begin(g, &li, ci(g, 0), ci(g, p[k].n));
		LLVMValueRef wi = add(g, ci(g, p[k].w_off), add(g, mul(g, r, ci(g, p[k].n)), i));
		LLVMValueRef x = activation(g, ws, p[k].v, add(g, ci(g, p[k].first), i));
		store(g, LLVMBuildFAdd(g->b, load(g, g->f32, grad, wi), trunc32(g, LLVMBuildFMul(g->b, d, x, "")), ""), grad, wi);
		loop_end(g, &li);
	}
	loop_end(g, &lr);
}

static void rnn_transpose(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef delta,
                          const int64_t *adj, bool abs, bool to_input)
{
	part p[2];
	int np = parts(op, p);
	loop lr, li;
	for (int k = 0; k < np; k++) {
		if (p[k].v == 0 && !to_input)
			continue;
		LLVMValueRef din = at(g, g->f32, ws, ci(g, adj[p[k].v]));
		LLVMValueRef r = loop_begin(g, &lr, ci(g, 0), ci(g, op->out_size));
		LLVMValueRef d = load(g, g->f64, delta, r);
		LLVMValueRef i = loop_begin(g, &li, ci(g, 0), ci(g, p[k].n));
		LLVMValueRef t = add(g, ci(g, p[k].first), i);
		LLVMValueRef w = ext(g, weight(g, P, &p[k], r, i));
		if (abs)
			w = fabsv(g, w);
		store(g, LLVMBuildFAdd(g->b, load(g, g->f64, din, t), LLVMBuildFMul(g->b, w, d, ""), ""), din, t);
		loop_end(g, &li);
		loop_end(g, &lr);
	}
}

/* dW[r, i] += dbar_r . (m_i src_i);  sbar_i += m_i sum_r W[r, i] dbar_r,
 * for both operands (src_i the operand's row slice + i). */
static void rnn_rows_adjoint(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef src[2],
                             LLVMValueRef dbar, LLVMValueRef sbar[2], LLVMValueRef grad)
{
	LLVMValueRef D = ci(g, g->R);
	part p[2];
	int np = parts(op, p);
	loop lr, li;
	LLVMValueRef r = loop_begin(g, &lr, ci(g, 0), ci(g, op->out_size));
	LLVMValueRef drow = row_at(g, dbar, r);
	for (int k = 0; k < np; k++) {
		LLVMValueRef i = loop_begin(g, &li, ci(g, 0), ci(g, p[k].n));
		LLVMValueRef t = add(g, ci(g, p[k].first), i);
		LLVMBasicBlockRef done = on_begin(g, ws, p[k].v, t);
		LLVMValueRef wi = add(g, ci(g, p[k].w_off), add(g, mul(g, r, ci(g, p[k].n)), i));
		LLVMValueRef dw = emit_dot(g, drow, row_at(g, src[k], t), D);
		store(g, LLVMBuildFAdd(g->b, load(g, g->f32, grad, wi), dw, ""), grad, wi);
		if (sbar[k])
			emit_axpy(g, row_at(g, sbar[k], t), load(g, g->f32, P, wi), drow, D);
		on_end(g, done);
		loop_end(g, &li);
	}
	loop_end(g, &lr);
}

const cg_op cg_op_rnn = { rnn_apply, rnn_rows, rnn_transpose, rnn_param_grad, rnn_rows_adjoint };
