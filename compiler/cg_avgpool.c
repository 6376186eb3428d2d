/* cg_avgpool.c: code generation for avgpool(x, kernel, stride).
 *
 * y[c, i, j] = (1 / K^2) sum_{ky, kx} x[c, i s + ky, j s + kx], PyTorch's
 * nn.AvgPool2d without padding: the sum divided by the window's size.  No
 * parameters; the sliding window is cg_conv2d.c's, with one channel per
 * output channel.
 */
#include "cg.h"

typedef struct pool_ctx {
	LLVMValueRef ws, dst, acc, d, sbar;
	read_mode mode;
} pool_ctx;

static double area(const ir_op *op) { return (double)op->kernel * op->kernel; }

static void apply_begin(gen *g, const ir_op *op, LLVMValueRef j, void *ctx)
{
	set(g, ((pool_ctx *)ctx)->acc, cd(g, 0));
}
static void apply_tap(gen *g, const ir_op *op, LLVMValueRef j, LLVMValueRef t, LLVMValueRef wi, void *ctx)
{
	pool_ctx *c = ctx;
	set(g, c->acc, fadd(g, get(g, g->f64, c->acc), operand(g, c->ws, c->mode, op->in[0], t)));
}
static void apply_end(gen *g, const ir_op *op, LLVMValueRef j, void *ctx)
{
	pool_ctx *c = ctx;
	store(g, LLVMBuildFDiv(g->b, get(g, g->f64, c->acc), cd(g, area(op)), ""), c->dst, j);
}

static void pool_apply(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, read_mode mode, bool bias, LLVMValueRef dst)
{
	pool_ctx c = { .ws = ws, .dst = dst, .mode = mode, .acc = var(g, g->f64, cd(g, 0)) };
	cg_window(g, op, &(window){ apply_begin, apply_tap, apply_end }, &c);
}

static void pool_rows(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef src[2], LLVMValueRef dst)
{
	cg_window_rows(g, op, P, ws, src[0], dst);
}

static void back_tap(gen *g, const ir_op *op, LLVMValueRef j, LLVMValueRef t, LLVMValueRef wi, void *ctx)
{
	pool_ctx *c = ctx;
	LLVMValueRef d = LLVMBuildFDiv(g->b, load(g, g->f64, c->d, j), cd(g, area(op)), "");
	store(g, LLVMBuildFAdd(g->b, load(g, g->f64, c->sbar, t), d, ""), c->sbar, t);
}

/* (abs changes nothing: the weights 1 / K^2 are positive) */
static void pool_transpose(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef delta,
                           const int64_t *adj, bool abs, bool to_input)
{
	if (op->in[0] == 0 && !to_input)
		return;
	pool_ctx c = { .ws = ws, .d = delta, .sbar = at(g, g->f32, ws, ci(g, adj[op->in[0]])) };
	cg_window(g, op, &(window){ NULL, back_tap, NULL }, &c);
}

static void pool_param_grad(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef delta, LLVMValueRef grad)
{
	/* no parameters */
}

static void radj_tap(gen *g, const ir_op *op, LLVMValueRef j, LLVMValueRef t, LLVMValueRef wi, void *ctx)
{
	pool_ctx *c = ctx;
	LLVMBasicBlockRef done = on_begin(g, c->ws, op->in[0], t);
	emit_axpy(g, row_at(g, c->sbar, t), LLVMConstReal(g->f32, 1 / area(op)), row_at(g, c->d, j), ci(g, g->R));
	on_end(g, done);
}

static void pool_rows_adjoint(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef src[2],
                              LLVMValueRef dbar, LLVMValueRef sbar[2], LLVMValueRef grad)
{
	if (!sbar[0])
		return;
	pool_ctx c = { .ws = ws, .d = dbar, .sbar = sbar[0] };
	cg_window(g, op, &(window){ NULL, radj_tap, NULL }, &c);
}

const cg_op cg_op_avgpool = { pool_apply, pool_rows, pool_transpose, pool_param_grad, pool_rows_adjoint };
