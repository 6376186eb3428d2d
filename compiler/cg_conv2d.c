/* cg_conv2d.c: code generation for conv2d(x, out, kernel, stride, padding),
 * and the sliding-window loop it shares with avgpool.
 *
 * y[o, i, j] = b[o] + sum_{c, ky, kx} W[o, c, ky, kx] x[c, i s + ky - p, j s + kx - p],
 * PyTorch's nn.Conv2d with zero padding: taps that fall in the padding are
 * skipped, which is multiplying by the zeros.  Gradient rows are built one
 * output unit at a time as a sum of the operand's rows over the window
 * (n_in-wide vector multiply-adds), skipping units that are off; that is
 * the tangent formulation, where the input axes form the batch.
 */
#include "cg.h"

void cg_window(gen *g, const ir_op *op, const window *w, void *ctx)
{
	bool conv = op->kind == OP_CONV2D;
	int64_t K = op->kernel, S = op->stride, pad = op->padding;
	loop lo, ly, lx, lc, lky, lkx;
	LLVMValueRef o = loop_begin(g, &lo, ci(g, 0), ci(g, op->oc));
	LLVMValueRef y = loop_begin(g, &ly, ci(g, 0), ci(g, op->oh));
	LLVMValueRef x = loop_begin(g, &lx, ci(g, 0), ci(g, op->ow));
	LLVMValueRef j = add(g, mul(g, add(g, mul(g, o, ci(g, op->oh)), y), ci(g, op->ow)), x);
	if (w->begin)
		w->begin(g, op, j, ctx);
	LLVMValueRef c = conv ? loop_begin(g, &lc, ci(g, 0), ci(g, op->ic)) : o;
	LLVMValueRef ky = loop_begin(g, &lky, ci(g, 0), ci(g, K));
	LLVMValueRef iy = add(g, mul(g, y, ci(g, S)), LLVMBuildSub(g->b, ky, ci(g, pad), ""));
	/* unsigned: a negative row is out of range too */
	LLVMBasicBlockRef row_in = if_begin(g, LLVMBuildICmp(g->b, LLVMIntULT, iy, ci(g, op->ih), ""));
	LLVMValueRef kx = loop_begin(g, &lkx, ci(g, 0), ci(g, K));
	LLVMValueRef ix = add(g, mul(g, x, ci(g, S)), LLVMBuildSub(g->b, kx, ci(g, pad), ""));
	LLVMBasicBlockRef col_in = if_begin(g, LLVMBuildICmp(g->b, LLVMIntULT, ix, ci(g, op->iw), ""));
	LLVMValueRef t = add(g, mul(g, add(g, mul(g, c, ci(g, op->ih)), iy), ci(g, op->iw)), ix);
	LLVMValueRef wi = add(g, mul(g, add(g, mul(g, add(g, mul(g, o, ci(g, op->ic)), c), ci(g, K)), ky), ci(g, K)), kx);
	w->tap(g, op, j, t, wi, ctx);
	if_end(g, col_in);
	loop_end(g, &lkx);
	if_end(g, row_in);
	loop_end(g, &lky);
	if (conv)
		loop_end(g, &lc);
	if (w->end)
		w->end(g, op, j, ctx);
	loop_end(g, &lx);
	loop_end(g, &ly);
	loop_end(g, &lo);
}

/* What the callbacks of one kernel share. */
typedef struct conv_ctx {
	LLVMValueRef P, ws, dst, acc, row, d, grad, src[2], sbar[2];
	read_mode mode;
	bool bias;
} conv_ctx;

static LLVMValueRef weight(gen *g, const ir_op *op, conv_ctx *c, LLVMValueRef wi)
{
	return load(g, g->f32, c->P, add(g, ci(g, op->w_off), wi));
}
static LLVMValueRef out_channel(gen *g, const ir_op *op, LLVMValueRef j)
{
	return LLVMBuildSDiv(g->b, j, ci(g, (int64_t)op->oh * op->ow), "");
}

/* ---- apply ---- */

static void apply_begin(gen *g, const ir_op *op, LLVMValueRef j, void *ctx)
{
	conv_ctx *c = ctx;
	LLVMValueRef b = c->bias ? weight_for(g, c->mode, ext(g, load(g, g->f32, c->P, add(g, ci(g, op->b_off), out_channel(g, op, j))))) : cd(g, 0);
	set(g, c->acc, b);
}
static void apply_tap(gen *g, const ir_op *op, LLVMValueRef j, LLVMValueRef t, LLVMValueRef wi, void *ctx)
{
	conv_ctx *c = ctx;
	LLVMValueRef x = operand(g, c->ws, c->mode, op->in[0], t);
	LLVMValueRef w = weight_for(g, c->mode, ext(g, weight(g, op, c, wi)));
	set(g, c->acc, fadd(g, get(g, g->f64, c->acc), fmul(g, w, x)));
}
static void apply_end(gen *g, const ir_op *op, LLVMValueRef j, void *ctx)
{
	conv_ctx *c = ctx;
	store(g, get(g, g->f64, c->acc), c->dst, j);
}

static void conv_apply(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, read_mode mode, bool bias, LLVMValueRef dst)
{
	conv_ctx c = { .P = P, .ws = ws, .dst = dst, .mode = mode, .bias = bias, .acc = var(g, g->f64, cd(g, 0)) };
	cg_window(g, op, &(window){ apply_begin, apply_tap, apply_end }, &c);
}

/* ---- rows ---- */

static void rows_begin(gen *g, const ir_op *op, LLVMValueRef j, void *ctx)
{
	conv_ctx *c = ctx;
	loop l;
	LLVMValueRef row = row_at(g, c->dst, j);
	LLVMValueRef d = loop_begin(g, &l, ci(g, 0), ci(g, g->R));
	store(g, LLVMConstReal(g->f32, 0), row, d);
	loop_end(g, &l);
}
static void rows_tap(gen *g, const ir_op *op, LLVMValueRef j, LLVMValueRef t, LLVMValueRef wi, void *ctx)
{
	conv_ctx *c = ctx;
	LLVMBasicBlockRef done = on_begin(g, c->ws, op->in[0], t);
	emit_axpy(g, row_at(g, c->dst, j), weight(g, op, c, wi), row_at(g, c->src[0], t), ci(g, g->R));
	on_end(g, done);
}

static void conv_rows(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef src[2], LLVMValueRef dst)
{
	conv_ctx c = { .P = P, .ws = ws, .dst = dst, .src = { src[0], NULL } };
	cg_window(g, op, &(window){ rows_begin, rows_tap, NULL }, &c);
}

/* ---- transpose and parameter gradient ---- */

static void back_begin(gen *g, const ir_op *op, LLVMValueRef j, void *ctx)
{
	conv_ctx *c = ctx;
	set(g, c->acc, load(g, g->f64, c->d, j));
	if (c->grad) {
		LLVMValueRef bi = add(g, ci(g, op->b_off), out_channel(g, op, j));
		store(g, LLVMBuildFAdd(g->b, load(g, g->f32, c->grad, bi), trunc32(g, get(g, g->f64, c->acc)), ""), c->grad, bi);
	}
}
static void grad_tap(gen *g, const ir_op *op, LLVMValueRef j, LLVMValueRef t, LLVMValueRef wi, void *ctx)
{
	conv_ctx *c = ctx;
	LLVMValueRef d = get(g, g->f64, c->acc), gi = add(g, ci(g, op->w_off), wi);
	LLVMValueRef dw = trunc32(g, LLVMBuildFMul(g->b, d, activation(g, c->ws, op->in[0], t), ""));
	store(g, LLVMBuildFAdd(g->b, load(g, g->f32, c->grad, gi), dw, ""), c->grad, gi);
}
static void transpose_tap(gen *g, const ir_op *op, LLVMValueRef j, LLVMValueRef t, LLVMValueRef wi, void *ctx)
{
	conv_ctx *c = ctx;
	LLVMValueRef w = ext(g, weight(g, op, c, wi));
	if (c->bias)   /* here: |W| */
		w = fabsv(g, w);
	store(g, LLVMBuildFAdd(g->b, load(g, g->f64, c->dst, t), LLVMBuildFMul(g->b, w, get(g, g->f64, c->acc), ""), ""), c->dst, t);
}

static void conv_param_grad(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef delta, LLVMValueRef grad)
{
	conv_ctx c = { .P = P, .ws = ws, .d = delta, .grad = grad, .acc = var(g, g->f64, cd(g, 0)) };
	cg_window(g, op, &(window){ back_begin, grad_tap, NULL }, &c);
}

static void conv_transpose(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef delta,
                           const int64_t *adj, bool abs, bool to_input)
{
	if (op->in[0] == 0 && !to_input)
		return;
	conv_ctx c = { .P = P, .ws = ws, .d = delta, .bias = abs, .acc = var(g, g->f64, cd(g, 0)),
	               .dst = at(g, g->f32, ws, ci(g, adj[op->in[0]])) };
	cg_window(g, op, &(window){ back_begin, transpose_tap, NULL }, &c);
}

/* ---- the adjoint of rows ---- */

/* dW[wi] += dbar_j . (m_t src_t), sbar_t += m_t W[wi] dbar_j; the input's
 * rows are the identity, so there the dot product is dbar_j[t]. */
static void radj_tap(gen *g, const ir_op *op, LLVMValueRef j, LLVMValueRef t, LLVMValueRef wi, void *ctx)
{
	conv_ctx *c = ctx;
	LLVMValueRef D = ci(g, g->R), drow = row_at(g, c->d, j), gi = add(g, ci(g, op->w_off), wi);
	LLVMBasicBlockRef done = on_begin(g, c->ws, op->in[0], t);
	LLVMValueRef dw = op->in[0] == 0 && !g->sampled ? load(g, g->f32, drow, t) : emit_dot(g, drow, row_at(g, c->src[0], t), D);
	store(g, LLVMBuildFAdd(g->b, load(g, g->f32, c->grad, gi), dw, ""), c->grad, gi);
	if (c->sbar[0])
		emit_axpy(g, row_at(g, c->sbar[0], t), weight(g, op, c, wi), drow, D);
	on_end(g, done);
}

static void conv_rows_adjoint(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef src[2],
                              LLVMValueRef dbar, LLVMValueRef sbar[2], LLVMValueRef grad)
{
	conv_ctx c = { .P = P, .ws = ws, .d = dbar, .grad = grad, .src = { src[0], NULL }, .sbar = { sbar[0], NULL } };
	cg_window(g, op, &(window){ NULL, radj_tap, NULL }, &c);
}

const cg_op cg_op_conv2d = { conv_apply, conv_rows, conv_transpose, conv_param_grad, conv_rows_adjoint };
