/* cg_conv2d.c: code generation for conv2d(x, out, kernel, stride, padding),
 * and the sliding-window loop it shares with avgpool.
 *
 * y[o, i, j] = b[o] + sum_{c, ky, kx} W[o, c, ky, kx] x[c, i s + ky - p, j s + kx - p],
 * PyTorch's nn.Conv2d with zero padding: taps that fall in the padding are
 * skipped, which is multiplying by the zeros.  Gradient rows are sums of
 * the operand's rows over the window, skipping units that are off: the
 * tangent formulation, where the input axes are columns, which
 * cg_window_cols shares with the batched kernels (whose columns are
 * examples): a block of output channels held in registers over every tap.
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

/* ---- windows over columns, register-blocked ---- */

LLVMValueRef cg_tap_at(gen *g, const ir_op *op, bool transposed, LLVMValueRef d, LLVMValueRef k, int64_t len,
                       LLVMValueRef *inside)
{
	LLVMValueRef S = ci(g, op->stride), s;
	if (!transposed) {
		s = LLVMBuildSub(g->b, add(g, mul(g, d, S), k), ci(g, op->padding), "");
		*inside = LLVMBuildICmp(g->b, LLVMIntULT, s, ci(g, len), "");
		return s;
	}
	LLVMValueRef t = LLVMBuildSub(g->b, add(g, d, ci(g, op->padding)), k, "");
	s = LLVMBuildSDiv(g->b, t, S, "");
	*inside = LLVMBuildAnd(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, mul(g, s, S), t, ""),
	                       LLVMBuildICmp(g->b, LLVMIntULT, s, ci(g, len), ""), "");
	return s;
}

/* Destination channels per register block, and vectors of columns: 8 x 2
 * accumulators with 32 vector registers, and each source row loaded once
 * for the 8 channels (with 16 registers, 8 x 1). */
enum { WIN_BLOCK = 8 };

/* Channels [d0, d0 + nd) of destination position (y, x), nv vectors of
 * columns from cb (one under `lanes` when that is not NULL): dst (+)= the
 * sum over taps of weight x source row.  conv2d forward: the destination
 * is the output, the source the operand, every operand channel a term;
 * transposed: the destination is the operand's adjoint, the source the
 * output's Delta.  avgpool: the source channel is the destination's, the
 * weight 1 / K^2.  With w->ws, source units that are off add nothing. */
static void window_block(gen *g, const ir_op *op, LLVMValueRef P, const cg_wcols *w, LLVMValueRef d0, int nd,
                         LLVMValueRef y, LLVMValueRef x, LLVMValueRef cb, int nv, LLVMValueRef lanes)
{
	const bool pool = op->kind == OP_AVGPOOL, tr = w->transposed;
	const bool masked = w->ws && has_relu(g, op->in[0]);
	const int64_t W = LLVMGetVectorSize(g->vf), K = op->kernel;
	const int64_t DH = tr ? op->ih : op->oh, DW = tr ? op->iw : op->ow;
	const int64_t SC = tr ? op->oc : op->ic, SH = tr ? op->oh : op->ih, SW = tr ? op->ow : op->iw;
	LLVMValueRef acc[WIN_BLOCK][2], inside, ld = ci(g, w->ld);
	for (int d = 0; d < nd; d++)
		for (int v = 0; v < nv; v++)
			acc[d][v] = var(g, g->vf, LLVMConstNull(g->vf));
	loop lky, lkx, ls;
	LLVMValueRef ky = loop_begin(g, &lky, ci(g, 0), ci(g, K));
	LLVMValueRef sy = cg_tap_at(g, op, tr, y, ky, SH, &inside);
	LLVMBasicBlockRef row_in = if_begin(g, inside);
	LLVMValueRef kx = loop_begin(g, &lkx, ci(g, 0), ci(g, K));
	LLVMValueRef sx = cg_tap_at(g, op, tr, x, kx, SW, &inside);
	LLVMBasicBlockRef col_in = if_begin(g, inside);
	LLVMValueRef pos = add(g, mul(g, sy, ci(g, SW)), sx);
	/* source channel s's row at this tap, loaded when its unit is on */
	LLVMValueRef s = pool ? NULL : loop_begin(g, &ls, ci(g, 0), ci(g, SC));
	for (int d = 0; d < (pool ? nd : 1); d++) {
		LLVMValueRef unit = add(g, mul(g, pool ? add(g, d0, ci(g, d)) : s, ci(g, SH * SW)), pos);
		LLVMBasicBlockRef on = masked ? if_begin(g, unit_on(g, w->ws, op->in[0], unit)) : NULL;
		LLVMValueRef r = at(g, g->f32, at(g, g->f32, w->src, mul(g, unit, ld)), cb), xv[2];
		for (int v = 0; v < nv; v++)
			xv[v] = cg_load_lanes(g, r, ci(g, v * W), lanes);
		for (int e = pool ? d : 0; e < (pool ? d + 1 : nd); e++) {
			LLVMValueRef wv;
			if (pool) {
				wv = vsplat(g, LLVMConstReal(g->f32, 1.0 / (double)(K * K)));
			} else {
				LLVMValueRef dc = add(g, d0, ci(g, e)), o = tr ? s : dc, c = tr ? dc : s;
				LLVMValueRef wi = add(g, mul(g, add(g, mul(g, add(g, mul(g, o, ci(g, op->ic)), c), ci(g, K)), ky), ci(g, K)), kx);
				wv = vsplat(g, load(g, g->f32, P, add(g, ci(g, op->w_off), wi)));
			}
			for (int v = 0; v < nv; v++)
				set(g, acc[e][v], vfma(g, wv, xv[v], get(g, g->vf, acc[e][v])));
		}
		if (on)
			if_end(g, on);
	}
	if (!pool)
		loop_end(g, &ls);
	if_end(g, col_in);
	loop_end(g, &lkx);
	if_end(g, row_in);
	loop_end(g, &lky);
	for (int d = 0; d < nd; d++) {
		LLVMValueRef j = add(g, mul(g, add(g, mul(g, add(g, d0, ci(g, d)), ci(g, DH)), y), ci(g, DW)), x);
		LLVMValueRef r = at(g, g->f32, at(g, g->f32, w->dst, mul(g, j, ld)), cb);
		for (int v = 0; v < nv; v++) {
			LLVMValueRef sum = get(g, g->vf, acc[d][v]);
			if (w->accumulate)
				sum = LLVMBuildFAdd(g->b, cg_load_lanes(g, r, ci(g, v * W), lanes), sum, "");
			cg_store_lanes(g, sum, r, ci(g, v * W), lanes);
		}
	}
}

void cg_window_cols(gen *g, const ir_op *op, LLVMValueRef P, const cg_wcols *w)
{
	const int64_t W = LLVMGetVectorSize(g->vf), NV = g->avx512 ? 2 : 1;
	const int64_t DC = w->transposed ? op->ic : op->oc, DH = w->transposed ? op->ih : op->oh;
	const int64_t DW = w->transposed ? op->iw : op->ow, full = DC / WIN_BLOCK * WIN_BLOCK;
	LLVMValueRef c0 = w->c0, cend = w->cend;
	for (int pass = 0; pass < 2; pass++) {
		int nd = pass ? (int)(DC - full) : WIN_BLOCK;
		if (pass ? nd == 0 : full == 0)
			continue;
		loop lo, ly, lx, lc;
		LLVMValueRef d0 = pass ? ci(g, full) : loop_begin_step(g, &lo, ci(g, 0), ci(g, full), WIN_BLOCK);
		LLVMValueRef y = loop_begin(g, &ly, ci(g, 0), ci(g, DH));
		LLVMValueRef x = loop_begin(g, &lx, ci(g, 0), ci(g, DW));
		/* NV vectors of columns while they fit, then one at a time, then
		 * the part of one under a mask */
		LLVMValueRef span = LLVMBuildSub(g->b, cend, c0, "");
		LLVMValueRef cn = add(g, c0, LLVMBuildAnd(g->b, span, ci(g, -NV * W), ""));
		LLVMValueRef c1 = add(g, c0, LLVMBuildAnd(g->b, span, ci(g, -W), ""));
		LLVMValueRef cb = loop_begin_step(g, &lc, c0, cn, NV * W);
		window_block(g, op, P, w, d0, nd, y, x, cb, (int)NV, NULL);
		loop_end(g, &lc);
		if (NV > 1) {
			cb = loop_begin_step(g, &lc, cn, c1, W);
			window_block(g, op, P, w, d0, nd, y, x, cb, 1, NULL);
			loop_end(g, &lc);
		}
		if (w->tail) {
			LLVMBasicBlockRef done = if_begin(g, LLVMBuildICmp(g->b, LLVMIntSLT, c1, cend, ""));
			window_block(g, op, P, w, d0, nd, y, x, c1, 1, cg_lanes_below(g, LLVMBuildSub(g->b, cend, c1, "")));
			if_end(g, done);
		}
		loop_end(g, &lx);
		loop_end(g, &ly);
		if (!pass)
			loop_end(g, &lo);
	}
}

/* A row of a window op reading the input (whose rows are in_scale I)
 * holds its taps' weights times in_scale at their input units, the rest
 * 0: what the products over the identity gave, without forming it. */
typedef struct id_rows { LLVMValueRef P, dst; } id_rows;
static void weight_tap(gen *g, const ir_op *op, LLVMValueRef j, LLVMValueRef t, LLVMValueRef wi, void *ctx)
{
	const id_rows *c = ctx;
	LLVMValueRef w = op->kind == OP_CONV2D ? load(g, g->f32, c->P, add(g, ci(g, op->w_off), wi))
	                                       : LLVMConstReal(g->f32, (float)(1.0 / ((double)op->kernel * op->kernel)));
	store(g, LLVMBuildFMul(g->b, w, LLVMConstReal(g->f32, g->in_scale), ""), row_at(g, c->dst, j), t);
}

void cg_window_rows(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef src, LLVMValueRef dst)
{
	if (op->in[0] == 0 && !g->sampled) {
		emit_zero(g, dst, (int64_t)op->out_size * g->R);
		cg_window(g, op, &(window){ NULL, weight_tap, NULL }, &(id_rows){ P, dst });
		return;
	}
	cg_window_cols(g, op, P, &(cg_wcols){ .src = src, .dst = dst, .ld = g->R, .c0 = ci(g, 0), .cend = ci(g, g->R),
	                                      .tail = g->R % LLVMGetVectorSize(g->vf) != 0, .ws = ws });
}

/* What the callbacks of one kernel share. */
typedef struct conv_ctx {
	LLVMValueRef P, ws, dst, acc, d, grad, src[2], sbar[2];
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

static void conv_rows(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef src[2], LLVMValueRef dst)
{
	cg_window_rows(g, op, P, ws, src[0], dst);
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
