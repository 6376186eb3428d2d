/* cg_add.c: code generation for add(a, b), the residual connection.
 *
 * y = a + b elementwise, each operand after its own ReLU; rows and
 * adjoints are sums too.  The two operands may be one value (add(h, h)),
 * so adjoints accumulate.
 */
#include "cg.h"

/* for (j = 0; j < n; j++) over the units */
static LLVMValueRef each_unit(gen *g, const ir_op *op, loop *l)
{
	return loop_begin(g, l, ci(g, 0), ci(g, op->out_size));
}

static void add_apply(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, read_mode mode, bool bias, LLVMValueRef dst)
{
	loop l;
	LLVMValueRef j = each_unit(g, op, &l);
	store(g, LLVMBuildFAdd(g->b, operand(g, ws, mode, op->in[0], j), operand(g, ws, mode, op->in[1], j), ""), dst, j);
	loop_end(g, &l);
}

static void add_rows(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef src[2], LLVMValueRef dst)
{
	LLVMValueRef D = ci(g, g->R);
	loop l, lz;
	LLVMValueRef j = each_unit(g, op, &l);
	LLVMValueRef row = row_at(g, dst, j);
	LLVMValueRef d = loop_begin(g, &lz, ci(g, 0), D);
	store(g, LLVMConstReal(g->f32, 0), row, d);
	loop_end(g, &lz);
	for (int k = 0; k < 2; k++) {
		LLVMBasicBlockRef done = on_begin(g, ws, op->in[k], j);
		emit_axpy(g, row, LLVMConstReal(g->f32, 1), row_at(g, src[k], j), D);
		on_end(g, done);
	}
	loop_end(g, &l);
}

static void add_transpose(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef delta,
                          const int64_t *adj, bool abs, bool to_input)
{
	loop l;
	LLVMValueRef j = each_unit(g, op, &l);
	LLVMValueRef d = load(g, g->f64, delta, j);
	for (int k = 0; k < 2; k++) {
		if (op->in[k] == 0 && !to_input)
			continue;
		LLVMValueRef din = at(g, g->f32, ws, ci(g, adj[op->in[k]]));
		store(g, LLVMBuildFAdd(g->b, load(g, g->f64, din, j), d, ""), din, j);
	}
	loop_end(g, &l);
}

static void add_param_grad(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef delta, LLVMValueRef grad)
{
	/* no parameters */
}

static void add_rows_adjoint(gen *g, const ir_op *op, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef src[2],
                             LLVMValueRef dbar, LLVMValueRef sbar[2], LLVMValueRef grad)
{
	loop l;
	LLVMValueRef j = each_unit(g, op, &l);
	for (int k = 0; k < 2; k++) {
		if (!sbar[k])
			continue;
		LLVMBasicBlockRef done = on_begin(g, ws, op->in[k], j);
		emit_axpy(g, row_at(g, sbar[k], j), LLVMConstReal(g->f32, 1), row_at(g, dbar, j), ci(g, g->R));
		on_end(g, done);
	}
	loop_end(g, &l);
}

const cg_op cg_op_add = { add_apply, add_rows, add_transpose, add_param_grad, add_rows_adjoint };
