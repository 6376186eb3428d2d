/* cg_batch.c: the batched training kernels of dense chains.
 *
 * Training without gradient norms (the vanilla objective, or any loss of
 * the logits and z alone) needs only the forward pass and back-propagation.
 * Done one example at a time, as the kernels of cg.c do, each example reads
 * every weight twice (matrix-vector products), so a step is bound by memory
 * traffic.  These two kernels take up to CG_BATCH examples at once and do
 * each layer as matrix products over the batch, through the register-
 * blocked kernel (cg_gemm), in float:
 *   forward    Z^T = W A^T            (out x nb; the batch is the fast axis)
 *   backward   dW += Delta^T A,  db += Delta^T 1,
 *              dA^T = W^T Delta^T,  Delta_prev = m o dA + dz
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
 * (act) and example-major (ex), then two adjoint buffers of the widest
 * value, used in turn. */
static int64_t size_of(const ir_module *m, int v) { return v == 0 ? m->n_in : m->ops[v - 1].out_size; }

static int64_t act_off(const ir_module *m, int v)
{
	int64_t off = 0;
	for (int w = 0; w < v; w++)
		off += round16(size_of(m, w) * CG_BATCH) * 2;
	return off;
}

static int64_t ex_off(const ir_module *m, int v) { return act_off(m, v) + round16(size_of(m, v) * CG_BATCH); }

static int64_t widest(const ir_module *m)
{
	int64_t w = m->n_in;
	for (int k = 0; k < m->n_ops; k++)
		w = m->ops[k].out_size > w ? m->ops[k].out_size : w;
	return w;
}

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

/* The share [lo, hi) of n rows that part `part` of `parts` computes, cut on
 * multiples of `align` so that the row blocks stay whole. */
static void share(gen *g, int64_t n, int64_t align, LLVMValueRef part, LLVMValueRef parts, LLVMValueRef *lo,
                  LLVMValueRef *hi)
{
	LLVMValueRef p = LLVMBuildSExt(g->b, part, g->i64, ""), np = LLVMBuildSExt(g->b, parts, g->i64, "");
	LLVMValueRef a = LLVMBuildSDiv(g->b, mul(g, ci(g, n), p), np, "");
	LLVMValueRef e = LLVMBuildSDiv(g->b, mul(g, ci(g, n), add(g, p, ci(g, 1))), np, "");
	*lo = LLVMBuildAnd(g->b, a, ci(g, -align), "");
	LLVMValueRef last = LLVMBuildICmp(g->b, LLVMIntEQ, add(g, p, ci(g, 1)), np, "");
	*hi = LLVMBuildSelect(g->b, last, ci(g, n), LLVMBuildAnd(g->b, e, ci(g, -align), ""), "");
}

/* if (stage == s) { ...; return; } */
static LLVMBasicBlockRef stage_begin(gen *g, LLVMValueRef stage, int s)
{
	return if_begin(g, LLVMBuildICmp(g->b, LLVMIntEQ, stage, ci32(g, s), ""));
}
static void stage_end(gen *g, LLVMBasicBlockRef done)
{
	LLVMBuildRetVoid(g->b);
	LLVMPositionBuilderAtEnd(g->b, done);
}

/* forward(P, x, nb, bws, z, logits, stage, part, parts): x holds nb pointers
 * to raw inputs.  Stage 0 normalizes the inputs, stage k + 1 is op k. */
static void emit_forward(gen *g, int64_t *ws_floats)
{
	static const char *names[] = { "P", "x", "nb", "bws", "z", "logits", "stage", "part", "parts" };
	cg_begin_function(g, "lln_train_batch_forward", 9, names, 1u << 2 | 1u << 6 | 1u << 7 | 1u << 8);
	const ir_module *m = g->m;
	LLVMValueRef P = cg_param(g, 0), X = cg_param(g, 1), bws = cg_param(g, 3), stage = cg_param(g, 6);
	LLVMValueRef Z = cg_param(g, 4), logits = cg_param(g, 5), part = cg_param(g, 7), parts = cg_param(g, 8);
	LLVMValueRef nb = LLVMBuildSExt(g->b, cg_param(g, 2), g->i64, ""), N8 = pad8v(g, nb);
	const int64_t NB = CG_BATCH, D = m->n_in;
	LLVMValueRef lo, hi;

	/* the normalized input, both ways, a share of the examples each;
	 * padding columns 0.  Example-major first, along each input's row so
	 * that it vectorizes; then the transpose, whose strided reads stay in
	 * L1 (one line per example of the share).  Stored both ways in one
	 * loop it took 8% of a step. */
	LLVMBasicBlockRef done = stage_begin(g, stage, 0);
	LLVMValueRef A0 = fptr(g, bws, act_off(m, 0)), E0 = fptr(g, bws, ex_off(m, 0));
	share(g, NB, 16, part, parts, &lo, &hi);
	loop lb, ld;
	LLVMValueRef b = loop_begin(g, &lb, lo, hi);
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
	b = loop_begin(g, &lb, lo, hi);
	store(g, load(g, g->f32, E0, add(g, mul(g, b, ci(g, D)), d)), A0, add(g, mul(g, d, ci(g, NB)), b));
	loop_end(g, &lb);
	loop_end(g, &ld);
	stage_end(g, done);

	cg_part part_ = { 0 };
	for (int k = 0; k < m->n_ops; k++) {
		cg_part_step(g, &part_);
		const ir_op *op = &m->ops[k];
		done = stage_begin(g, stage, k + 1);
		share(g, op->out_size, BATCH_ROWS, part, parts, &lo, &hi);
		LLVMValueRef C = fptr(g, bws, act_off(m, k + 1)), E = fptr(g, bws, ex_off(m, k + 1));
		cg_gemm(g, &(gemm){ .C = at(g, g->f32, C, mul(g, lo, ci(g, NB))), .ldc = ci(g, NB),
		                    .A = at(g, g->f32, P, add(g, ci(g, op->w_off), mul(g, lo, ci(g, op->in_size)))),
		                    .lda = ci(g, op->in_size), .B = fptr(g, bws, act_off(m, k)), .ldb = ci(g, NB), .alpha = 1,
		                    .rows = BATCH_ROWS, .M = LLVMBuildSub(g->b, hi, lo, ""), .N = N8,
		                    .K = ci(g, op->in_size) });
		loop lj, lc;
		LLVMValueRef j = loop_begin(g, &lj, lo, hi);
		LLVMValueRef bias = load(g, g->f32, P, add(g, ci(g, op->b_off), j));
		LLVMValueRef crow = at(g, g->f32, C, mul(g, j, ci(g, NB)));
		/* pre-activations out, to z or the logits, before the ReLU */
		LLVMValueRef c = loop_begin(g, &lc, ci(g, 0), nb);
		LLVMValueRef zv = LLVMBuildFAdd(g->b, load(g, g->f32, crow, c), bias, "");
		if (op->relu) {
			store(g, zv, Z, add(g, mul(g, c, ci(g, m->n_hidden)), add(g, ci(g, op->z_off), j)));
			store(g, relu32(g, zv), E, add(g, mul(g, c, ci(g, op->out_size)), j));
		} else {
			store(g, zv, logits, add(g, mul(g, c, ci(g, m->n_out)), j));
		}
		loop_end(g, &lc);
		/* the activations the next product reads */
		if (op->relu) {
			c = loop_begin(g, &lc, ci(g, 0), N8);
			store(g, relu32(g, LLVMBuildFAdd(g->b, load(g, g->f32, crow, c), bias, "")), crow, c);
			loop_end(g, &lc);
		}
		loop_end(g, &lj);
		stage_end(g, done);
	}
	cg_part_close(g, &part_);
	LLVMBuildRetVoid(g->b);
	*ws_floats = act_off(m, m->n_ops + 1) + 2 * round16(widest(m) * NB);
}

/* backward(P, bws, nb, dlogits, dz, grad, stage, part, parts): grad += the
 * parameter gradient of the sum over the batch of dlogits . logits + dz . z
 * (dz may be NULL).  Op k = n_ops - 1 - i has stages 2i (db and dW, and
 * first the logits' Delta) and 2i + 1 (its operand's Delta; not for op 0). */
static void emit_backward(gen *g)
{
	static const char *names[] = { "P", "bws", "nb", "dlogits", "dz", "grad", "stage", "part", "parts" };
	cg_begin_function(g, "lln_train_batch_backward", 9, names, 1u << 2 | 1u << 6 | 1u << 7 | 1u << 8);
	const ir_module *m = g->m;
	LLVMValueRef P = cg_param(g, 0), bws = cg_param(g, 1), dlogits = cg_param(g, 3), dz = cg_param(g, 4);
	LLVMValueRef grad = cg_param(g, 5), stage = cg_param(g, 6), part = cg_param(g, 7), parts = cg_param(g, 8);
	LLVMValueRef nb = LLVMBuildSExt(g->b, cg_param(g, 2), g->i64, ""), N8 = pad8v(g, nb);
	const int64_t NB = CG_BATCH, dbase = act_off(m, m->n_ops + 1), dsize = round16(widest(m) * NB);
	LLVMValueRef has_dz = LLVMBuildIsNotNull(g->b, dz, "");
	LLVMValueRef lo, hi;
	loop lj, lc;

	cg_part part_ = { 0 };
	for (int k = m->n_ops - 1; k >= 0; k--) {
		cg_part_step(g, &part_);
		const ir_op *op = &m->ops[k];
		int i = m->n_ops - 1 - k;
		LLVMValueRef dk = fptr(g, bws, dbase + dsize * (i & 1)), dprev = fptr(g, bws, dbase + dsize * (~i & 1));
		LLVMBasicBlockRef done = stage_begin(g, stage, 2 * i);
		share(g, op->out_size, BATCH_ROWS, part, parts, &lo, &hi);
		if (k == m->n_ops - 1) {   /* Delta of the logits, padding columns 0 (they stay 0 through W^T) */
			LLVMValueRef j = loop_begin(g, &lj, lo, hi);
			LLVMValueRef c = loop_begin(g, &lc, ci(g, 0), N8);
			LLVMValueRef real = LLVMBuildICmp(g->b, LLVMIntSLT, c, nb, "");
			LLVMValueRef dl = load(g, g->f32, dlogits,
			                       LLVMBuildSelect(g->b, real, add(g, mul(g, c, ci(g, m->n_out)), j), ci(g, 0), ""));
			store(g, LLVMBuildSelect(g->b, real, dl, LLVMConstReal(g->f32, 0), ""), dk, add(g, mul(g, j, ci(g, NB)), c));
			loop_end(g, &lc);
			loop_end(g, &lj);
		}
		/* db += the row sums of Delta over the batch */
		LLVMValueRef j = loop_begin(g, &lj, lo, hi);
		LLVMValueRef s = var(g, g->f32, LLVMConstReal(g->f32, 0));
		LLVMValueRef c = loop_begin(g, &lc, ci(g, 0), nb);
		set(g, s, LLVMBuildFAdd(g->b, get(g, g->f32, s), load(g, g->f32, dk, add(g, mul(g, j, ci(g, NB)), c)), ""));
		loop_end(g, &lc);
		LLVMValueRef bi = add(g, ci(g, op->b_off), j);
		store(g, LLVMBuildFAdd(g->b, load(g, g->f32, grad, bi), get(g, g->f32, s), ""), grad, bi);
		loop_end(g, &lj);
		/* dW += Delta^T A, summed over the nb examples */
		cg_gemm(g, &(gemm){ .C = at(g, g->f32, grad, add(g, ci(g, op->w_off), mul(g, lo, ci(g, op->in_size)))),
		                    .ldc = ci(g, op->in_size), .A = at(g, g->f32, dk, mul(g, lo, ci(g, NB))), .lda = ci(g, NB),
		                    .B = fptr(g, bws, ex_off(m, k)), .ldb = ci(g, op->in_size), .accumulate = true,
		                    .alpha = 1, .rows = BATCH_ROWS, .M = LLVMBuildSub(g->b, hi, lo, ""),
		                    .N = ci(g, op->in_size), .K = nb });
		stage_end(g, done);
		if (k == 0)
			continue;
		/* the operand's Delta: W^T Delta through its ReLU, plus dz */
		done = stage_begin(g, stage, 2 * i + 1);
		share(g, op->in_size, BATCH_ROWS, part, parts, &lo, &hi);
		cg_gemm(g, &(gemm){ .C = at(g, g->f32, dprev, mul(g, lo, ci(g, NB))), .ldc = ci(g, NB),
		                    .A = at(g, g->f32, P, add(g, ci(g, op->w_off), lo)), .lda = ci(g, op->in_size),
		                    .atrans = true, .B = dk, .ldb = ci(g, NB), .alpha = 1, .rows = BATCH_ROWS,
		                    .M = LLVMBuildSub(g->b, hi, lo, ""), .N = N8, .K = ci(g, op->out_size) });
		const ir_op *below = &m->ops[k - 1];
		LLVMValueRef act = fptr(g, bws, act_off(m, k));
		j = loop_begin(g, &lj, lo, hi);
		c = loop_begin(g, &lc, ci(g, 0), nb);
		LLVMValueRef t = add(g, mul(g, j, ci(g, NB)), c);
		LLVMValueRef on = LLVMBuildFCmp(g->b, LLVMRealOGT, load(g, g->f32, act, t), LLVMConstReal(g->f32, 0), "");
		LLVMValueRef dv = LLVMBuildSelect(g->b, on, load(g, g->f32, dprev, t), LLVMConstReal(g->f32, 0), "");
		/* dz may be NULL: select a safe address, then the value */
		LLVMValueRef zi = add(g, mul(g, c, ci(g, m->n_hidden)), add(g, ci(g, below->z_off), j));
		LLVMValueRef dzv = load(g, g->f32, LLVMBuildSelect(g->b, has_dz, dz, dlogits, ""),
		                        LLVMBuildSelect(g->b, has_dz, zi, ci(g, 0), ""));
		dv = LLVMBuildFAdd(g->b, dv, LLVMBuildSelect(g->b, has_dz, dzv, LLVMConstReal(g->f32, 0), ""), "");
		store(g, dv, dprev, t);
		loop_end(g, &lc);
		loop_end(g, &lj);
		stage_end(g, done);
	}
	cg_part_close(g, &part_);
	LLVMBuildRetVoid(g->b);
}

void cg_emit_batch(gen *g, LLVMValueRef fns[2], int64_t *ws_floats)
{
	LLVMTypeRef vf = g->vf;
	if (g->avx512)
		g->vf = LLVMVectorType(g->f32, 16);
	emit_forward(g, ws_floats);
	cg_wide_vectors(g);
	fns[0] = g->fn;
	emit_backward(g);
	cg_wide_vectors(g);
	fns[1] = g->fn;
	g->vf = vf;
}
