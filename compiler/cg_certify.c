/* cg_certify.c: the certify kernel, whose radii are sound.
 *
 * A certificate promises that within the printed radius the network as
 * written (normalize's decimals exact, the float32 weights as stored) keeps
 * its activation pattern: r ||g_h||_q <= |z_h| for every hidden neuron h in
 * exact arithmetic.  The fast arithmetic (a double forward pass, float32
 * gradient rows) only estimates z and g, so every quantity carries a
 * rigorous bound on its rounding error, computed in the same kernel:
 *   ez       |z - z^| per unit: forward error analysis through |A| and |x^|
 *            (gd (|A||x^| + |b|) + |A| ez_in, masked by decided ReLUs)
 *   E_q      || g - g^ ||_q per row: g32 |A| N_q(in) + |A| E_q(in), N_q the
 *            computed rows' norms (the triangle inequality over the window)
 * A neuron with |z^| <= ez has an undecided sign: every radius is 0 and the
 * certificate counts it (rt_cert.undecided).  Otherwise each neuron gets a
 * sound lower bound on its radius, std (|z^| - ez) / (N_q + E_q), rounded
 * down.  These are loose where E_q is (float rows, the triangle inequality),
 * so the neuron whose bound is smallest is refined: its row is recomputed
 * in double by a vector-Jacobian product with an elementwise error bound
 * (lln_vjp), which makes its bound tight to about 1e-12; refinement repeats
 * until the smallest bound belongs to a refined neuron.  The prediction's
 * radius is treated alike with the logit differences (f_y - f_k).  On dense
 * chains of two hidden layers or more, rows are formed only where a neuron
 * may bind or a layer above reads them (the pruned strategy, below); for
 * eps_2 alone on other dense chains the Gram recurrence gives the estimates,
 * bounded by T_h (the triangle-inequality bound on ||g_h||_2) and the Gram
 * matrices' accumulated error eta T_h T_k.  Radii are rounded toward zero
 * when they become float.  docs/reliability.md states the promise and its
 * proof.
 */
#include <math.h>
#include <stdlib.h>

#include "cg.h"

#define U 0x1p-53   /* unit roundoff of double */

typedef struct cert {
	LLVMValueRef P, pre, ws, norms;
	LLVMValueRef vjp;
	LLVMTypeRef vjp_t;
	double stdlo, stdhi;   /* bounds of the exact std */
	double gn;      /* relative error of a norm of n_in values computed in double */
	LLVMValueRef y; /* the predicted class (i64) */
} cert;

static LLVMValueRef dptr(gen *g, LLVMValueRef ws, int64_t off) { return at(g, g->f32, ws, ci(g, off)); }
static LLVMValueRef dload(gen *g, LLVMValueRef base, LLVMValueRef i) { return load(g, g->f64, base, i); }
static LLVMValueRef dmul(gen *g, LLVMValueRef a, double c) { return LLVMBuildFMul(g->b, a, cd(g, c), ""); }
static LLVMValueRef dadd(gen *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(g->b, a, b, ""); }
static LLVMValueRef dmin(gen *g, LLVMValueRef a, LLVMValueRef b) { return intrinsic(g, "llvm.minnum", a, b); }

/* A radius from a sure distance of z from 0 and an upper bound of the dual
 * norm, in raw units, rounded down: three roundings of relative u each. */
static LLVMValueRef radius(gen *g, cert *c, LLVMValueRef zl, LLVMValueRef ub)
{
	LLVMValueRef r = LLVMBuildFDiv(g->b, dmul(g, zl, c->stdlo), ub, "");
	return dmul(g, r, 1 - 8 * U);
}

LLVMValueRef cg_trunc_down(gen *g, LLVMValueRef d)
{
	LLVMValueRef f = trunc32(g, d);
	LLVMValueRef over = LLVMBuildFCmp(g->b, LLVMRealOGT, ext(g, f), d, "");
	LLVMValueRef bits = LLVMBuildBitCast(g->b, f, g->i32, "");
	LLVMValueRef down = LLVMBuildBitCast(g->b, LLVMBuildSub(g->b, bits, ci32(g, 1), ""), g->f32, "");
	return LLVMBuildSelect(g->b, over, down, f, "");
}

/* ---- the forward pass's error ---- */

void cg_forward_bounds(gen *g, LLVMValueRef P, LLVMValueRef ws, LLVMValueRef x, LLVMValueRef xlo)
{
	const ir_module *m = g->m;
	/* x^_n = fl(fl(x - mean^) / std^) against (x - mean) / std: 3.01 u |x^_n|
	 * from the two roundings and std^'s, u |mean| / std from mean^'s; and
	 * the input as given, v, against x + xlo: u |v| from v's rounding to
	 * double, 2^-24 |xlo| from the rest's to float, u |x + xlo| from the sum */
	double c0 = 2 * U * fabs(m->mean) / m->std;
	LLVMValueRef e0 = dptr(g, ws, g->ez_off[0]), x0 = val_ptr(g, ws, 0);
	LLVMValueRef has = LLVMBuildIsNotNull(g->b, xlo, "");
	loop l;
	LLVMValueRef d = loop_begin(g, &l, ci(g, 0), ci(g, m->n_in));
	LLVMValueRef e = dadd(g, dmul(g, fabsv(g, dload(g, x0, d)), 4 * U), cd(g, c0));
	LLVMValueRef xf = ext(g, load(g, g->f32, x, d));
	LLVMValueRef lo = ext(g, load(g, g->f32, LLVMBuildSelect(g->b, has, xlo, x, ""), d));
	LLVMValueRef r = dadd(g, dmul(g, fabsv(g, xf), 3 * U), dmul(g, fabsv(g, lo), 0x1p-23));
	r = LLVMBuildFDiv(g->b, r, cd(g, m->std * (1 - 4 * U)), "");
	store(g, dadd(g, e, LLVMBuildSelect(g->b, has, r, cd(g, 0), "")), e0, d);
	loop_end(g, &l);
	LLVMValueRef tmp = dptr(g, ws, g->tmp_off);
	cg_part part = { 0 };
	for (int k = 0; k < m->n_ops; k++) {
		cg_part_step(g, &part);
		const ir_op *op = &m->ops[k];
		LLVMValueRef ez = dptr(g, ws, g->ez_off[k + 1]);
		g->bound_off = g->ez_off;
		g->bound_base_off = NULL;
		cg_ops[op->kind]->apply(g, op, P, ws, READ_BOUND, false, ez);
		cg_ops[op->kind]->apply(g, op, P, ws, READ_ABS, true, tmp);
		double gk = cg_gamma(op_taps(op));
		LLVMValueRef j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
		LLVMValueRef e = dadd(g, dmul(g, dload(g, tmp, j), gk), dload(g, ez, j));
		store(g, dmul(g, e, 1 + 2 * gk), ez, j);
		loop_end(g, &l);
	}
	cg_part_close(g, &part);
}

/* zl[h] = |z^_h| - ez_h for every hidden neuron; returns how many have
 * zl <= 0 < ez (undecided) and the first of them in *first (-1 if none). */
LLVMValueRef cg_undecided(gen *g, LLVMValueRef ws, LLVMValueRef *first)
{
	const ir_module *m = g->m;
	LLVMValueRef count = var(g, g->i32, ci32(g, 0)), at1 = var(g, g->i32, ci32(g, -1));
	LLVMValueRef zl = dptr(g, ws, g->zl_off);
	cg_part part = { 0 };
	for (int k = 0; k < m->n_ops; k++) {
		cg_part_step(g, &part);
		const ir_op *op = &m->ops[k];
		if (!op->relu)
			continue;
		loop l;
		LLVMValueRef padded = cg_padded(g, ws, op);
		LLVMValueRef j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
		LLVMValueRef h = add(g, ci(g, op->z_off), j);
		LLVMValueRef ez = dload(g, dptr(g, ws, g->ez_off[k + 1]), j);
		LLVMValueRef s = LLVMBuildFSub(g->b, fabsv(g, dload(g, val_ptr(g, ws, k + 1), j)), ez, "");
		/* a padding step's units are no neurons of the sequence: infinitely
		 * far from their boundary, they never bind (and are exactly 0) */
		if (padded)
			s = LLVMBuildSelect(g->b, padded, cd(g, INFINITY), s, "");
		store(g, s, zl, h);
		/* ez = 0 with z^ = 0: z is exactly 0, a unit that is off (and whose
		 * radius, 0 / ||g||, binds only if its gradient is not 0) */
		LLVMValueRef unsure = LLVMBuildAnd(g->b, LLVMBuildFCmp(g->b, LLVMRealULE, s, cd(g, 0), ""),
		                                   LLVMBuildFCmp(g->b, LLVMRealUNE, ez, cd(g, 0), ""), "");
		LLVMBasicBlockRef done = if_begin(g, unsure);
		set(g, count, LLVMBuildAdd(g->b, get(g, g->i32, count), ci32(g, 1), ""));
		LLVMValueRef f = get(g, g->i32, at1);
		set(g, at1, LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, f, ci32(g, 0), ""),
		                            LLVMBuildTrunc(g->b, h, g->i32, ""), f, ""));
		if_end(g, done);
		loop_end(g, &l);
	}
	cg_part_close(g, &part);
	*first = get(g, g->i32, at1);
	return get(g, g->i32, count);
}

/* ---- the rows' error, and the loose bounds ---- */

/* After op k's rows: their norms N_p (dual of ball p) and error bounds E_p,
 * and for hidden units the loose lower bounds of their radii. */
static void row_bounds(gen *g, int k, LLVMValueRef rows, void *ctx)
{
	cert *c = ctx;
	const ir_module *m = g->m;
	const ir_op *op = &m->ops[k];
	int v = k + 1;
	LLVMValueRef N[RT_NNORMS], E[RT_NNORMS];
	for (int p = 0; p < RT_NNORMS; p++) {
		N[p] = dptr(g, c->ws, g->nrm_off[p][v]);
		E[p] = dptr(g, c->ws, g->rer_off[p][v]);
	}
	loop l;
	LLVMValueRef j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
	if (g->pre_off[k] >= 0) {
		LLVMValueRef pre = dptr(g, c->pre, g->pre_off[k]);
		for (int p = 0; p < RT_NNORMS; p++)
			store(g, dload(g, pre, add(g, ci(g, (int64_t)p * op->out_size), j)), N[p], j);
	} else {
		LLVMValueRef sums[3];
		cg_norms(g, at(g, g->f32, rows, mul(g, j, ci(g, m->n_in))), NULL, m->n_in, sums);
		for (int p = 0; p < RT_NNORMS; p++)
			store(g, cg_dual(g, sums, p), N[p], j);
	}
	loop_end(g, &l);
	for (int p = 0; p < RT_NNORMS; p++) {
		if (cg_rows_are_weights(g, op)) {   /* exact */
			j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
			store(g, cd(g, 0), E[p], j);
			loop_end(g, &l);
			continue;
		}
		g->bound_off = g->rer_off[p];
		g->bound_base_off = g->nrm_off[p];
		g->bound_scale = cg_gamma32(op_taps(op));
		cg_ops[op->kind]->apply(g, op, c->P, c->ws, READ_BOUND, false, E[p]);
		j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
		store(g, dmul(g, dload(g, E[p], j), 1 + 2 * cg_gamma(op_taps(op))), E[p], j);
		loop_end(g, &l);
	}
	if (!op->relu)
		return;
	LLVMValueRef L = dptr(g, c->ws, g->lb_off), zl = dptr(g, c->ws, g->zl_off);
	j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
	LLVMValueRef h = add(g, ci(g, op->z_off), j);
	for (int p = 0; p < RT_NNORMS; p++) {
		LLVMValueRef ub = dadd(g, dmul(g, dload(g, N[p], j), 1 + c->gn), dload(g, E[p], j));
		store(g, radius(g, c, dload(g, zl, h), ub), L, add(g, ci(g, (int64_t)p * m->n_hidden), h));
	}
	store(g, ci32(g, 0), dptr(g, c->ws, g->ref_off), h);
	loop_end(g, &l);
}

/* The sure gap f_y - f_k (|f_y| for one logit), or <= 0 if undecided. */
static LLVMValueRef logit_gap(gen *g, cert *c, LLVMValueRef k)
{
	const ir_module *m = g->m;
	LLVMValueRef f = val_ptr(g, c->ws, m->n_ops), ez = dptr(g, c->ws, g->ez_off[m->n_ops]);
	LLVMValueRef fy = dload(g, f, c->y), ey = dload(g, ez, c->y);
	if (m->n_out == 1)
		return LLVMBuildFSub(g->b, dmul(g, fabsv(g, fy), 1 - U), ey, "");
	LLVMValueRef d = dmul(g, LLVMBuildFSub(g->b, fy, dload(g, f, k), ""), 1 - 2 * U);
	return LLVMBuildFSub(g->b, d, dmul(g, dadd(g, ey, dload(g, ez, k)), 1 + 2 * U), "");
}

/* Stores the logit pair k's loose bounds Lp[p][k] from upper bounds of the
 * dual norms of grad(f_y - f_k); the predicted class itself gets inf. */
static void pred_bounds(gen *g, cert *c, LLVMValueRef k, LLVMValueRef gap, LLVMValueRef ub[RT_NNORMS])
{
	const ir_module *m = g->m;
	LLVMValueRef Lp = dptr(g, c->ws, g->lp_off);
	LLVMValueRef pos = LLVMBuildFCmp(g->b, LLVMRealOGT, gap, cd(g, 0), "");
	for (int p = 0; p < RT_NNORMS; p++) {
		if (!ub[p])
			continue;
		LLVMValueRef r = LLVMBuildSelect(g->b, pos, radius(g, c, gap, ub[p]), cd(g, 0), "");
		store(g, r, Lp, add(g, ci(g, (int64_t)p * m->n_out), k));
	}
	store(g, gap, dptr(g, c->ws, g->gap_off), k);
	/* an undecided pair has radius 0 however precise its gradient */
	store(g, LLVMBuildZExt(g->b, LLVMBuildNot(g->b, pos, ""), g->i32, ""), dptr(g, c->ws, g->refp_off), k);
}

/* k runs over the logit pairs: every k != y, or the one logit. */
static LLVMBasicBlockRef pair_begin(gen *g, cert *c, loop *l, LLVMValueRef *k)
{
	const ir_module *m = g->m;
	LLVMValueRef Lp = dptr(g, c->ws, g->lp_off);
	*k = loop_begin(g, l, ci(g, 0), ci(g, m->n_out));
	for (int p = 0; p < RT_NNORMS; p++)
		store(g, cd(g, INFINITY), Lp, add(g, ci(g, (int64_t)p * m->n_out), *k));
	return if_begin(g, LLVMBuildICmp(g->b, m->n_out == 1 ? LLVMIntEQ : LLVMIntNE, *k, c->y, ""));
}

/* The logit pairs' loose bounds from the logits' rows J and their error
 * bounds: for each k, the rows' difference J_y - J_k (J_y for one logit). */
static void pair_bounds_from_rows(gen *g, cert *c, LLVMValueRef J)
{
	const ir_module *m = g->m;
	int o = m->n_ops;
	LLVMValueRef D = ci(g, m->n_in);
	loop l;
	LLVMValueRef k;
	LLVMBasicBlockRef done = pair_begin(g, c, &l, &k);
	LLVMValueRef sums[3], ub[RT_NNORMS];
	/* binary: the decision is the sign of the one logit */
	cg_norms(g, at(g, g->f32, J, mul(g, c->y, D)), m->n_out == 1 ? NULL : at(g, g->f32, J, mul(g, k, D)), m->n_in, sums);
	for (int p = 0; p < RT_NNORMS; p++) {
		LLVMValueRef E = dptr(g, c->ws, g->rer_off[p][o]);
		LLVMValueRef e = dload(g, E, c->y);
		if (m->n_out > 1)
			e = dadd(g, e, dload(g, E, k));
		ub[p] = dadd(g, dmul(g, cg_dual(g, sums, p), 1 + c->gn), e);
	}
	pred_bounds(g, c, k, logit_gap(g, c, k), ub);
	if_end(g, done);
	loop_end(g, &l);
}

/* The explicit strategy: every row, all three norms. */
static void bounds_by_rows(gen *g, cert *c)
{
	const ir_module *m = g->m;
	/* the input's rows, when they are the identity: norm 1, exact */
	for (int p = 0; p < RT_NNORMS; p++) {
		loop l;
		LLVMValueRef d = loop_begin(g, &l, ci(g, 0), ci(g, m->n_in));
		store(g, cd(g, 1), dptr(g, c->ws, g->nrm_off[p][0]), d);
		store(g, cd(g, 0), dptr(g, c->ws, g->rer_off[p][0]), d);
		loop_end(g, &l);
	}
	LLVMValueRef *rows = calloc((size_t)m->n_ops + 1, sizeof *rows);
	cg_compute_rows(g, c->P, c->ws, rows, false, row_bounds, c);
	pair_bounds_from_rows(g, c, rows[m->n_ops]);
	free(rows);
}

/* ---- the pruned strategy: rows only where a neuron may bind ----
 *
 * For any set of norms on a dense chain of two hidden layers or more, with
 * plain logits (ir.c's rows_pruned).  A layer forms the rows of its active
 * units when a layer above reads them, and the rows of neurons that may
 * bind; no others.  Every
 * neuron first gets T_q, the triangle inequality over its operand's rows,
 *   ||g_h||_q <= sum_t |W_ht| m_t ||g_t||_q   (stored in tri_off),
 * and so a lower bound Lc of its radius.  Every row formed gives an upper
 * bound of its neuron's radius through ||g_h||_q >= N_q - E_q, and U
 * (umin_off) is the smallest such upper bound so far: the true smallest
 * radius is at most U.  A neuron with Lc > U for every requested norm
 * cannot bind; its row is not formed and its bound is Lc.  A formed row's
 * bound is max(L_row, Lc), formed or not the same, so settle sees the
 * same bounds wherever it looks: every bound it holds is sound, so the
 * smallest it refines is at most the true smallest radius, at most U, and
 * below every pruned neuron's bound.  The radii and binding neurons are
 * therefore the same bit for bit with pruning off (RT_NO_PRUNE in the
 * norms; tests/test_numerics.c compares).  The last hidden layer's active
 * rows are not formed either: the logits' rows are V diag(m) J with
 * V = W^o diag(m^L) W^L, an n_out x n product, whose error the last
 * layer's T bounds. */
/* An upper bound of unit j of value v's radius, from a lower bound lo of
 * its row's dual norm (inf unless lo > 0), rounded up. */
static LLVMValueRef radius_up(gen *g, cert *c, int v, LLVMValueRef j, LLVMValueRef lo)
{
	LLVMValueRef z = dadd(g, fabsv(g, dload(g, val_ptr(g, c->ws, v), j)), dload(g, dptr(g, c->ws, g->ez_off[v]), j));
	LLVMValueRef r = dmul(g, LLVMBuildFDiv(g->b, dmul(g, z, c->stdhi), lo, ""), 1 + 8 * U);
	return LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOGT, lo, cd(g, 0), ""), r, cd(g, INFINITY), "");
}

/* For every unit h of a dense op, A_p = sum_t |W_ht| m_t N_p[t] and B_p =
 * sum_t |W_ht| m_t E_p[t] over its operand's rows, in one pass over W for
 * the three norms; then T_p = (1 + gn) A_p + B_p bounds ||g_h||_q (the
 * triangle inequality, N_p's own rounding included) and E_p = gamma32 A_p
 * + B_p the error of the float row W diag(m) J (its rounding, and the
 * operand rows' error carried), both raised for their own rounding. */
static void operand_sums(gen *g, cert *c, const ir_op *op, LLVMValueRef T[RT_NNORMS], LLVMValueRef E[RT_NNORMS])
{
	int u = op->in[0];
	int64_t n = op->in_size;
	double gk = 1 + 2 * cg_gamma(n), g32 = cg_gamma32(n);
	/* the operand's N_p and E_p with inactive units zeroed: six streams */
	LLVMValueRef buf = dptr(g, c->ws, g->scratch_off[1]);
	loop l, lt;
	LLVMValueRef t = loop_begin(g, &l, ci(g, 0), ci(g, n));
	LLVMValueRef on = unit_on(g, c->ws, u, t);
	for (int p = 0; p < RT_NNORMS; p++) {
		LLVMValueRef x[2] = { dload(g, dptr(g, c->ws, g->nrm_off[p][u]), t), dload(g, dptr(g, c->ws, g->rer_off[p][u]), t) };
		for (int i = 0; i < 2; i++)
			store(g, LLVMBuildSelect(g->b, on, x[i], cd(g, 0), ""), buf, add(g, ci(g, (2 * p + i) * n), t));
	}
	loop_end(g, &l);
	LLVMValueRef acc[2 * RT_NNORMS];
	for (int i = 0; i < 2 * RT_NNORMS; i++)
		acc[i] = var(g, g->f64, cd(g, 0));
	LLVMValueRef j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
	for (int i = 0; i < 2 * RT_NNORMS; i++)
		set(g, acc[i], cd(g, 0));
	LLVMValueRef row = add(g, ci(g, op->w_off), mul(g, j, ci(g, n)));
	t = loop_begin(g, &lt, ci(g, 0), ci(g, n));
	LLVMValueRef w = fabsv(g, ext(g, load(g, g->f32, c->P, add(g, row, t))));
	for (int i = 0; i < 2 * RT_NNORMS; i++)
		set(g, acc[i], fadd(g, get(g, g->f64, acc[i]), fmul(g, w, dload(g, buf, add(g, ci(g, i * n), t)))));
	loop_end(g, &lt);
	for (int p = 0; p < RT_NNORMS; p++) {
		LLVMValueRef a = get(g, g->f64, acc[2 * p]), b = get(g, g->f64, acc[2 * p + 1]);
		store(g, dmul(g, dadd(g, dmul(g, a, 1 + c->gn), b), gk), T[p], j);
		store(g, dmul(g, dadd(g, dmul(g, a, g32), b), gk), E[p], j);
	}
	loop_end(g, &l);
}

/* Op k's bounds, the rows it forms, and their norms. */
static void pruned_layer(gen *g, cert *c, int k, LLVMValueRef *rows)
{
	const ir_module *m = g->m;
	const ir_op *op = &m->ops[k];
	int v = k + 1;
	bool weights = k == 0, feeds = k < m->n_ops - 2;
	LLVMValueRef ws = c->ws, N[RT_NNORMS], E[RT_NNORMS], T[RT_NNORMS];
	LLVMValueRef L = dptr(g, ws, g->lb_off), zl = dptr(g, ws, g->zl_off), umin = dptr(g, ws, g->umin_off);
	LLVMValueRef keep = at(g, g->f32, ws, ci(g, g->keep_off));
	for (int p = 0; p < RT_NNORMS; p++) {
		N[p] = dptr(g, ws, g->nrm_off[p][v]);
		E[p] = dptr(g, ws, g->rer_off[p][v]);
		T[p] = dptr(g, ws, g->tri_off[p][v]);
	}
	loop l;
	LLVMValueRef j;
	if (weights) {   /* rows W: norms from prepare, exact */
		LLVMValueRef pre = dptr(g, c->pre, g->pre_off[k]);
		j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
		for (int p = 0; p < RT_NNORMS; p++) {
			LLVMValueRef n = dload(g, pre, add(g, ci(g, (int64_t)p * op->out_size), j));
			store(g, n, N[p], j);
			store(g, cd(g, 0), E[p], j);
			store(g, dmul(g, n, 1 + c->gn), T[p], j);
		}
		loop_end(g, &l);
	} else {
		operand_sums(g, c, op, T, E);
	}
	/* every unit's Lc; the rows to form */
	LLVMValueRef nkeep = var(g, g->i64, ci(g, 0));
	j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
	LLVMValueRef h = add(g, ci(g, op->z_off), j), z = dload(g, zl, h);
	LLVMValueRef want = feeds ? unit_on(g, ws, v, j) : LLVMConstInt(g->i1, 0, 0);
	for (int p = 0; p < RT_NNORMS; p++) {
		LLVMValueRef lc = radius(g, c, z, dload(g, T[p], j));
		store(g, lc, L, add(g, ci(g, (int64_t)p * m->n_hidden), h));
		want = LLVMBuildOr(g->b, want, LLVMBuildFCmp(g->b, LLVMRealOLE, lc, dload(g, umin, ci(g, p)), ""), "");
	}
	store(g, ci32(g, 0), dptr(g, ws, g->ref_off), h);
	if (!weights)
		push_if(g, want, keep, nkeep, j);
	loop_end(g, &l);
	LLVMValueRef D = ci(g, m->n_in), count = weights ? ci(g, op->out_size) : get(g, g->i64, nkeep);
	if (!weights) {
		LLVMValueRef act = at(g, g->f32, ws, ci(g, g->act_off[k - 1]));
		cg_wide_gemm(g, &(gemm){ .C = rows[v], .ldc = D, .A = at(g, g->f32, c->P, ci(g, op->w_off)), .lda = ci(g, op->in_size),
		                    .arows = keep, .scatter = true, .acols = act, .B = rows[k], .ldb = D, .brows = act, .rows = 8,
		                    .alpha = 1, .M = count, .N = D, .K = active_count(g, ws, k - 1) });
	}
	/* the formed rows: norms, bounds max(L_row, Lc), and U */
	LLVMValueRef noprune = LLVMBuildICmp(g->b, LLVMIntNE, LLVMBuildAnd(g->b, c->norms, ci32(g, RT_NO_PRUNE), ""), ci32(g, 0), "");
	LLVMValueRef i = loop_begin(g, &l, ci(g, 0), count);
	j = weights ? i : LLVMBuildSExt(g->b, load(g, g->i32, keep, i), g->i64, "");
	h = add(g, ci(g, op->z_off), j);
	z = dload(g, zl, h);
	if (!weights) {
		LLVMValueRef sums[3];
		cg_norms(g, at(g, g->f32, rows[v], mul(g, j, D)), NULL, m->n_in, sums);
		for (int p = 0; p < RT_NNORMS; p++)
			store(g, cg_dual(g, sums, p), N[p], j);
	}
	for (int p = 0; p < RT_NNORMS; p++) {
		LLVMValueRef n = dload(g, N[p], j), e = dload(g, E[p], j);
		LLVMValueRef ub = dmin(g, dadd(g, dmul(g, n, 1 + c->gn), e), dload(g, T[p], j));
		store(g, radius(g, c, z, ub), L, add(g, ci(g, (int64_t)p * m->n_hidden), h));
		LLVMValueRef lo = LLVMBuildFSub(g->b, dmul(g, n, 1 - c->gn - 4 * U), dmul(g, e, 1 + 4 * U), "");
		LLVMValueRef up = LLVMBuildSelect(g->b, noprune, cd(g, INFINITY), radius_up(g, c, v, j, dmul(g, lo, 1 - 4 * U)), "");
		store(g, dmin(g, dload(g, umin, ci(g, p)), up), umin, ci(g, p));
	}
	loop_end(g, &l);
}

/* The logits' rows V diag(m) J from the layer below the last hidden one,
 * V = W^o diag(m^L) W^L in float (n_out x n, in scratch), and their error:
 *   gamma32(n^L) sum_s |W^o_ys| m_s T_s           (V's rounding, through T)
 *   + sum_t |V_yt| m_t (E_t + gamma32(n) N_t)    (J's error, the product's) */
static void pruned_logits(gen *g, cert *c, LLVMValueRef *rows)
{
	const ir_module *m = g->m;
	int o = m->n_ops - 1, b = o - 2;   /* ops: the logits, the layer below the last hidden */
	const ir_op *out = &m->ops[o], *last = &m->ops[o - 1];
	LLVMValueRef ws = c->ws, D = ci(g, m->n_in);
	LLVMValueRef V = at(g, g->f32, ws, ci(g, g->scratch_off[0])), VLD = ci(g, pad8(last->in_size));
	LLVMValueRef actL = at(g, g->f32, ws, ci(g, g->act_off[o - 1])), actB = at(g, g->f32, ws, ci(g, g->act_off[b]));
	cg_wide_gemm(g, &(gemm){ .C = V, .ldc = VLD, .A = at(g, g->f32, c->P, ci(g, out->w_off)), .lda = ci(g, out->in_size),
	                    .acols = actL, .B = at(g, g->f32, c->P, ci(g, last->w_off)), .ldb = ci(g, last->in_size),
	                    .brows = actL, .alpha = 1, .M = ci(g, m->n_out), .N = ci(g, last->in_size),
	                    .K = active_count(g, ws, o - 1) });
	cg_wide_gemm(g, &(gemm){ .C = rows[o + 1], .ldc = D, .A = V, .lda = VLD, .acols = actB, .B = rows[b + 1], .ldb = D,
	                    .brows = actB, .alpha = 1, .M = ci(g, m->n_out), .N = D, .K = active_count(g, ws, b) });
	double gv = cg_gamma32(out->in_size), gj = cg_gamma32(last->in_size);
	for (int p = 0; p < RT_NNORMS; p++) {
		LLVMValueRef Eo = dptr(g, ws, g->rer_off[p][o + 1]);
		LLVMValueRef Eb = dptr(g, ws, g->rer_off[p][b + 1]), Nb = dptr(g, ws, g->nrm_off[p][b + 1]);
		g->bound_off = g->tri_off[p];
		g->bound_base_off = NULL;
		cg_ops[out->kind]->apply(g, out, c->P, ws, READ_BOUND, false, Eo);
		loop l, lt;
		LLVMValueRef y = loop_begin(g, &l, ci(g, 0), ci(g, m->n_out));
		LLVMValueRef acc = var(g, g->f64, cd(g, 0));
		LLVMValueRef t = loop_begin(g, &lt, ci(g, 0), active_count(g, ws, b));
		LLVMValueRef a = active_at(g, ws, b, t);
		LLVMValueRef vy = fabsv(g, ext(g, load(g, g->f32, V, add(g, mul(g, y, VLD), a))));
		LLVMValueRef s = dadd(g, dload(g, Eb, a), dmul(g, dload(g, Nb, a), gj));
		set(g, acc, dadd(g, get(g, g->f64, acc), LLVMBuildFMul(g->b, vy, s, "")));
		loop_end(g, &lt);
		LLVMValueRef ev = dmul(g, dload(g, Eo, y), gv * (1 + 2 * cg_gamma(out->in_size)));
		store(g, dadd(g, ev, dmul(g, get(g, g->f64, acc), 1 + 2 * cg_gamma(last->in_size))), Eo, y);
		loop_end(g, &l);
	}
}

static void bounds_by_pruned_rows(gen *g, cert *c)
{
	const ir_module *m = g->m;
	/* U starts at inf for the requested norms (and every norm with pruning
	 * off, where it stays inf), at -inf for the others, which prune alone */
	LLVMValueRef umin = dptr(g, c->ws, g->umin_off);
	for (int p = 0; p < RT_NNORMS; p++) {
		LLVMValueRef on = LLVMBuildAnd(g->b, c->norms, ci32(g, RT_NORM_BIT(p) | RT_NO_PRUNE), "");
		on = LLVMBuildICmp(g->b, LLVMIntNE, on, ci32(g, 0), "");
		store(g, LLVMBuildSelect(g->b, on, cd(g, INFINITY), cd(g, -INFINITY), ""), umin, ci(g, p));
	}
	LLVMValueRef *rows = calloc((size_t)m->n_ops + 1, sizeof *rows);
	cg_row_places(g, c->P, c->ws, rows);
	cg_part part = { 0 };
	for (int k = 0; k < m->n_ops - 1; k++) {
		cg_part_step(g, &part);
		pruned_layer(g, c, k, rows);
	}
	cg_part_close(g, &part);
	pruned_logits(g, c, rows);
	pair_bounds_from_rows(g, c, rows[m->n_ops]);
	free(rows);
}

/* The Gram strategy, for eps_2 alone on a dense chain: sq from the Gram
 * recurrence, bounded by T (the triangle inequality through |W|, in the
 * rows' error areas of l2) and the accumulated relative error eta of the
 * Gram matrices: ||g_h||^2 <= sq_h + eta_h T_h^2, and ||g_h|| <= T_h. */
static void bounds_by_gram(gen *g, cert *c)
{
	const ir_module *m = g->m;
	const int p2 = RT_L2;
	LLVMValueRef sq = dptr(g, c->ws, g->sq_off);
	cg_gram_forward(g, c->P, c->pre, c->ws, sq, true);
	LLVMValueRef L = dptr(g, c->ws, g->lb_off), zl = dptr(g, c->ws, g->zl_off);
	double *eta = calloc((size_t)m->n_ops, sizeof *eta);
	cg_part part = { 0 };
	for (int k = 0; k < m->n_ops; k++) {
		cg_part_step(g, &part);
		const ir_op *op = &m->ops[k];
		LLVMValueRef T = dptr(g, c->ws, g->rer_off[p2][k + 1]);
		loop l;
		LLVMValueRef j;
		if (k == 0) {   /* T = ||W_h||_2 (prepare, in double); G^1 = W W^T rounded to float */
			LLVMValueRef pre = dptr(g, c->pre, g->pre_off[0]);
			j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
			store(g, dmul(g, dload(g, pre, add(g, ci(g, (int64_t)p2 * op->out_size), j)), 1 + c->gn), T, j);
			loop_end(g, &l);
			eta[k] = 0x1p-24 + c->gn;
		} else {        /* V G V^T through two float products of at most in_size terms each */
			g->bound_off = g->rer_off[p2];
			g->bound_base_off = NULL;
			cg_ops[op->kind]->apply(g, op, c->P, c->ws, READ_BOUND, false, T);
			j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
			store(g, dmul(g, dload(g, T, j), 1 + 2 * cg_gamma(op_taps(op))), T, j);
			loop_end(g, &l);
			double g2k = 2 * cg_gamma32(op->in_size);
			eta[k] = eta[k - 1] + g2k * (1 + eta[k - 1]) + c->gn;
		}
		if (!op->relu)
			continue;
		j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
		LLVMValueRef h = add(g, ci(g, op->z_off), j), t = dload(g, T, j);
		LLVMValueRef s = intrinsic(g, "llvm.maxnum", ext(g, load(g, g->f32, sq, h)), cd(g, 0));
		LLVMValueRef b = intrinsic(g, "llvm.sqrt", dadd(g, s, dmul(g, LLVMBuildFMul(g->b, t, t, ""), eta[k])), NULL);
		LLVMValueRef ub = dmin(g, t, dmul(g, b, 1 + c->gn));
		store(g, radius(g, c, dload(g, zl, h), ub), L, add(g, ci(g, (int64_t)p2 * m->n_hidden), h));
		store(g, ci32(g, 0), dptr(g, c->ws, g->ref_off), h);
		loop_end(g, &l);
	}
	cg_part_close(g, &part);

	/* ||grad f_y - grad f_k||^2 = d Gc d^T with d = V[y] - V[k] formed first,
	 * which avoids the cancellation of G_yy + G_kk - 2 G_yk; bounded by
	 * S = sum_t |d_t| T_t like the neurons */
	int o = m->n_ops - 1, i = m->ops[o].in[0] - 1;
	LLVMValueRef Vc = dptr(g, c->ws, g->vc_off[o]), Ti = dptr(g, c->ws, g->rer_off[p2][i + 1]);
	LLVMValueRef Gc = dptr(g, c->ws, g->gc_off[i]), GLD = ci(g, pad8(m->ops[i].out_size));
	LLVMValueRef ai = active_count(g, c->ws, i), ai8 = pad8v(g, ai), VLD = ci(g, pad8(m->ops[o].in_size));
	LLVMValueRef dr = dptr(g, c->ws, g->row_off), ur = dptr(g, c->ws, g->row2_off);
	LLVMValueRef vy = at(g, g->f32, Vc, mul(g, c->y, VLD));
	double eo = eta[i] + 3 * 0x1p-24 + 2 * cg_gamma32(m->ops[o].in_size) * (1 + eta[i]) + c->gn;
	free(eta);
	loop l, lv;
	LLVMValueRef k;
	LLVMBasicBlockRef done = pair_begin(g, c, &l, &k);
	LLVMValueRef vk = at(g, g->f32, Vc, mul(g, k, VLD));
	LLVMValueRef t = loop_begin(g, &lv, ci(g, 0), ai8);
	LLVMValueRef dv = load(g, g->f32, vy, t);
	if (m->n_out > 1)
		dv = LLVMBuildFSub(g->b, dv, load(g, g->f32, vk, t), "");
	store(g, dv, dr, t);
	store(g, LLVMConstReal(g->f32, 0), ur, t);
	loop_end(g, &lv);
	LLVMValueRef S = var(g, g->f64, cd(g, 0));
	t = loop_begin(g, &lv, ci(g, 0), ai);
	LLVMValueRef dt = load(g, g->f32, dr, t);
	emit_axpy(g, ur, dt, at(g, g->f32, Gc, mul(g, t, GLD)), ai8);
	set(g, S, dadd(g, get(g, g->f64, S), LLVMBuildFMul(g->b, fabsv(g, ext(g, dt)), dload(g, Ti, active_at(g, c->ws, i, t)), "")));
	loop_end(g, &lv);
	LLVMValueRef q2 = intrinsic(g, "llvm.maxnum", ext(g, emit_dot(g, dr, ur, ai8)), cd(g, 0));
	LLVMValueRef s = dmul(g, get(g, g->f64, S), (1 + c->gn) * (1 + 0x1p-23));
	LLVMValueRef b = intrinsic(g, "llvm.sqrt", dadd(g, q2, dmul(g, LLVMBuildFMul(g->b, s, s, ""), eo)), NULL);
	LLVMValueRef ub[RT_NNORMS] = { NULL, dmin(g, s, dmul(g, b, 1 + c->gn)), NULL };
	pred_bounds(g, c, k, logit_gap(g, c, k), ub);
	if_end(g, done);
	loop_end(g, &l);
}

/* ---- refinement: one row in double, by a vector-Jacobian product ---- */

/* lln_vjp(P, ws, v, a, b): tan(0) = the gradient of unit a (minus unit b,
 * when b >= 0) of value v with respect to the normalized input, the
 * pre-activation of v itself, masks of the values below; err(0) bounds its
 * error elementwise: each transpose adds at most gd |A|^T |u^| to the
 * error, and |A|^T carries the error already made. */
static void emit_vjp(gen *g, cert *c)
{
	static const char *names[] = { "P", "ws", "v", "a", "b" };
	const ir_module *m = g->m;
	c->vjp = cg_begin_function(g, "lln_vjp", 5, names, 0x1c);
	c->vjp_t = LLVMGlobalGetValueType(c->vjp);
	LLVMValueRef P = cg_param(g, 0), ws = cg_param(g, 1), v = cg_param(g, 2);
	LLVMValueRef a = LLVMBuildSExt(g->b, cg_param(g, 3), g->i64, ""), b = cg_param(g, 4);
	loop l;
	cg_part part = { 0 };
	for (int w = 0; w <= m->n_ops; w++) {
		cg_part_step(g, &part);
		LLVMValueRef i = loop_begin(g, &l, ci(g, 0), ci(g, w ? m->ops[w - 1].out_size : m->n_in));
		store(g, cd(g, 0), tan_ptr(g, ws, w), i);
		store(g, cd(g, 0), dptr(g, ws, g->err_off[w]), i);
		loop_end(g, &l);
	}
	cg_part_close(g, &part);
	for (int w = 1; w <= m->n_ops; w++) {
		cg_part_step(g, &part);
		LLVMBasicBlockRef done = if_begin(g, LLVMBuildICmp(g->b, LLVMIntEQ, v, ci32(g, w), ""));
		store(g, cd(g, 1), tan_ptr(g, ws, w), a);
		LLVMBasicBlockRef d2 = if_begin(g, LLVMBuildICmp(g->b, LLVMIntSGE, b, ci32(g, 0), ""));
		store(g, cd(g, -1), tan_ptr(g, ws, w), LLVMBuildSExt(g->b, b, g->i64, ""));
		if_end(g, d2);
		if_end(g, done);
	}
	cg_part_close(g, &part);
	for (int k = m->n_ops - 1; k >= 0; k--) {
		cg_part_step(g, &part);
		const ir_op *op = &m->ops[k];
		int w = k + 1;
		LLVMValueRef u = tan_ptr(g, ws, w), e = dptr(g, ws, g->err_off[w]);
		LLVMBasicBlockRef below = if_begin(g, LLVMBuildICmp(g->b, LLVMIntSLE, ci32(g, w), v, ""));
		LLVMValueRef j;
		if (op->relu) {   /* v's own pre-activation is the target: not masked */
			LLVMBasicBlockRef strict = if_begin(g, LLVMBuildICmp(g->b, LLVMIntSLT, ci32(g, w), v, ""));
			j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
			LLVMValueRef on = unit_on(g, ws, w, j);
			store(g, LLVMBuildSelect(g->b, on, dload(g, u, j), cd(g, 0), ""), u, j);
			store(g, LLVMBuildSelect(g->b, on, dload(g, e, j), cd(g, 0), ""), e, j);
			loop_end(g, &l);
			if_end(g, strict);
		}
		/* u(w) summed fan(w) terms from w's consumers */
		double gw = cg_gamma(g->fan[w]);
		j = loop_begin(g, &l, ci(g, 0), ci(g, op->out_size));
		LLVMValueRef s = dadd(g, dmul(g, fabsv(g, dload(g, u, j)), gw), dload(g, e, j));
		store(g, dmul(g, s, 1 + 2 * gw), e, j);
		loop_end(g, &l);
		cg_ops[op->kind]->transpose(g, op, P, ws, u, g->tan_off, false, true);
		cg_ops[op->kind]->transpose(g, op, P, ws, e, g->err_off, true, true);
		if_end(g, below);
	}
	cg_part_close(g, &part);
	LLVMBuildRetVoid(g->b);
}

/* Calls lln_vjp and turns its result into upper bounds of the three dual
 * norms of the exact row: ||u^||_q + ||err||_q, with their own rounding. */
static void refined_norms(gen *g, cert *c, LLVMValueRef v, LLVMValueRef a, LLVMValueRef b, LLVMValueRef ub[RT_NNORMS])
{
	const ir_module *m = g->m;
	LLVMValueRef args[] = { c->P, c->ws, v, LLVMBuildTrunc(g->b, a, g->i32, ""), b };
	LLVMBuildCall2(g->b, c->vjp_t, c->vjp, args, 5, "");
	LLVMValueRef u = tan_ptr(g, c->ws, 0), e = dptr(g, c->ws, g->err_off[0]);
	LLVMValueRef su[3], se[3];
	for (int i = 0; i < 3; i++) {
		su[i] = var(g, g->f64, cd(g, 0));
		se[i] = var(g, g->f64, cd(g, 0));
	}
	loop l;
	LLVMValueRef d = loop_begin(g, &l, ci(g, 0), ci(g, m->n_in));
	LLVMValueRef x[2] = { dload(g, u, d), dload(g, e, d) };
	LLVMValueRef *s[2] = { su, se };
	for (int i = 0; i < 2; i++) {
		LLVMValueRef ax = fabsv(g, x[i]);
		set(g, s[i][0], fadd(g, get(g, g->f64, s[i][0]), ax));
		set(g, s[i][1], fadd(g, get(g, g->f64, s[i][1]), fmul(g, ax, ax)));
		set(g, s[i][2], fmaxv(g, get(g, g->f64, s[i][2]), ax));
	}
	loop_end(g, &l);
	LLVMValueRef vu[3], ve[3];
	for (int i = 0; i < 3; i++) {
		vu[i] = get(g, g->f64, su[i]);
		ve[i] = get(g, g->f64, se[i]);
	}
	for (int p = 0; p < RT_NNORMS; p++)
		ub[p] = dmul(g, dadd(g, cg_dual(g, vu, p), cg_dual(g, ve, p)), 1 + c->gn);
}

static void refine_neuron(gen *g, cert *c, LLVMValueRef h)
{
	const ir_module *m = g->m;
	LLVMValueRef v = ci32(g, 0), a = ci(g, 0);
	for (int k = 0; k < m->n_ops; k++) {
		const ir_op *op = &m->ops[k];
		if (!op->relu)
			continue;
		LLVMValueRef in = LLVMBuildAnd(g->b, LLVMBuildICmp(g->b, LLVMIntSGE, h, ci(g, op->z_off), ""),
		                               LLVMBuildICmp(g->b, LLVMIntSLT, h, ci(g, op->z_off + op->out_size), ""), "");
		v = LLVMBuildSelect(g->b, in, ci32(g, k + 1), v, "");
		a = LLVMBuildSelect(g->b, in, LLVMBuildSub(g->b, h, ci(g, op->z_off), ""), a, "");
	}
	LLVMValueRef ub[RT_NNORMS];
	refined_norms(g, c, v, a, ci32(g, -1), ub);
	LLVMValueRef L = dptr(g, c->ws, g->lb_off), zl = dload(g, dptr(g, c->ws, g->zl_off), h);
	for (int p = 0; p < RT_NNORMS; p++)
		store(g, radius(g, c, zl, ub[p]), L, add(g, ci(g, (int64_t)p * m->n_hidden), h));
	store(g, ci32(g, 1), dptr(g, c->ws, g->ref_off), h);
}

static void refine_pair(gen *g, cert *c, LLVMValueRef k)
{
	const ir_module *m = g->m;
	LLVMValueRef ub[RT_NNORMS];
	LLVMValueRef b = m->n_out == 1 ? ci32(g, -1) : LLVMBuildTrunc(g->b, k, g->i32, "");
	refined_norms(g, c, ci32(g, m->n_ops), c->y, b, ub);
	LLVMValueRef Lp = dptr(g, c->ws, g->lp_off), gap = dload(g, dptr(g, c->ws, g->gap_off), k);
	for (int p = 0; p < RT_NNORMS; p++)
		store(g, radius(g, c, gap, ub[p]), Lp, add(g, ci(g, (int64_t)p * m->n_out), k));
	store(g, ci32(g, 1), dptr(g, c->ws, g->refp_off), k);
}

/* The smallest of n lower bounds L[0..n), refining its owner until the
 * smallest belongs to a refined entry or is at least `enough` (beyond
 * which its exact value does not matter): at most n refinements, each of a
 * new entry.  (A cap of 64 once left radii of recurrent models, whose float
 * rows' error bounds grow with |W_hh| at every step, 500 times too small.)
 * Ties go to the lowest index.  *which is -1 when every bound is infinite. */
static LLVMValueRef settle(gen *g, cert *c, LLVMValueRef L, LLVMValueRef refs, int64_t n, LLVMValueRef enough,
                           void (*refine)(gen *, cert *, LLVMValueRef), LLVMValueRef *which)
{
	LLVMValueRef best = var(g, g->f64, cd(g, INFINITY)), arg = var(g, g->i64, ci(g, -1));
	LLVMBasicBlockRef head = block(g, "settle"), body = block(g, "refine"), out = block(g, "settled");
	LLVMBuildBr(g->b, head);
	LLVMPositionBuilderAtEnd(g->b, head);
	set(g, best, cd(g, INFINITY));
	set(g, arg, ci(g, -1));
	loop l;
	LLVMValueRef i = loop_begin(g, &l, ci(g, 0), ci(g, n));
	LLVMValueRef x = dload(g, L, i);
	LLVMValueRef lt = LLVMBuildFCmp(g->b, LLVMRealOLT, x, get(g, g->f64, best), "");
	set(g, best, LLVMBuildSelect(g->b, lt, x, get(g, g->f64, best), ""));
	set(g, arg, LLVMBuildSelect(g->b, lt, i, get(g, g->i64, arg), ""));
	loop_end(g, &l);
	LLVMValueRef ai = get(g, g->i64, arg);
	LLVMValueRef none = LLVMBuildICmp(g->b, LLVMIntSLT, ai, ci(g, 0), "");
	LLVMValueRef r = load(g, g->i32, refs, LLVMBuildSelect(g->b, none, ci(g, 0), ai, ""));
	LLVMValueRef stop = LLVMBuildOr(g->b, none, LLVMBuildICmp(g->b, LLVMIntNE, r, ci32(g, 0), ""), "");
	stop = LLVMBuildOr(g->b, stop, LLVMBuildFCmp(g->b, LLVMRealOGE, get(g, g->f64, best), enough, ""), "");
	LLVMBuildCondBr(g->b, stop, out, body);
	LLVMPositionBuilderAtEnd(g->b, body);
	refine(g, c, ai);
	LLVMBuildBr(g->b, head);
	LLVMPositionBuilderAtEnd(g->b, out);
	*which = LLVMBuildTrunc(g->b, get(g, g->i64, arg), g->i32, "");
	return get(g, g->f64, best);
}

/* ---- the kernel ---- */

static void store_cert(gen *g, LLVMValueRef out, LLVMValueRef label, LLVMValueRef eps[RT_NNORMS],
                       LLVMValueRef bind[RT_NNORMS], LLVMValueRef pred[RT_NNORMS], LLVMValueRef undecided)
{
	/* rt_cert: label, eps[3], bind[3], eps_pred[3], undecided, 4 bytes each */
	store(g, label, out, ci(g, 0));
	for (int p = 0; p < RT_NNORMS; p++) {
		store(g, cg_trunc_down(g, eps[p]), out, ci(g, 1 + p));
		store(g, bind[p], out, ci(g, 4 + p));
		store(g, cg_trunc_down(g, dmin(g, eps[p], pred[p])), out, ci(g, 7 + p));
	}
	store(g, undecided, out, ci(g, 10));
}

void cg_emit_certify(gen *g)
{
	const ir_module *m = g->m;
	cert c = { .stdlo = m->std * (1 - 2 * U), .stdhi = m->std * (1 + 2 * U), .gn = 2 * cg_gamma(m->n_in) };
	emit_vjp(g, &c);
	static const char *names[] = { "P", "pre", "x", "norms", "ws", "z", "logits", "out", "xlo" };
	cg_begin_function(g, "lln_certify", 9, names, 1u << 3);
	if (g->m->rows_pruned)
		cg_wide_vectors(g);
	c.P = cg_param(g, 0);
	c.pre = cg_param(g, 1);
	c.ws = cg_param(g, 4);
	c.norms = cg_param(g, 3);
	LLVMValueRef out = cg_param(g, 7);
	cg_forward(g, c.P, cg_param(g, 2), cg_param(g, 8), c.ws, cg_param(g, 5), cg_param(g, 6));
	cg_active_lists(g, c.ws, NULL);

	/* the prediction: argmax, or for one logit its sign */
	LLVMValueRef f = val_ptr(g, c.ws, m->n_ops);
	LLVMValueRef y = var(g, g->i64, ci(g, 0)), label;
	if (m->n_out == 1) {
		label = LLVMBuildZExt(g->b, LLVMBuildFCmp(g->b, LLVMRealOGT, dload(g, f, ci(g, 0)), cd(g, 0), ""), g->i32, "");
	} else {
		loop l;
		LLVMValueRef k = loop_begin(g, &l, ci(g, 1), ci(g, m->n_out));
		LLVMValueRef gt = LLVMBuildFCmp(g->b, LLVMRealOGT, dload(g, f, k), dload(g, f, get(g, g->i64, y)), "");
		set(g, y, LLVMBuildSelect(g->b, gt, k, get(g, g->i64, y), ""));
		loop_end(g, &l);
		label = LLVMBuildTrunc(g->b, get(g, g->i64, y), g->i32, "");
	}
	c.y = get(g, g->i64, y);

	/* a sign within rounding error of 0 leaves no region to certify */
	cg_forward_bounds(g, c.P, c.ws, cg_param(g, 2), cg_param(g, 8));
	LLVMValueRef first, undecided = cg_undecided(g, c.ws, &first);
	LLVMValueRef zero[RT_NNORMS], firsts[RT_NNORMS];
	for (int p = 0; p < RT_NNORMS; p++) {
		zero[p] = cd(g, 0);
		firsts[p] = first;
	}
	LLVMBasicBlockRef sure = block(g, "decided"), unsure = block(g, "undecided");
	LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, undecided, ci32(g, 0), ""), sure, unsure);
	LLVMPositionBuilderAtEnd(g->b, unsure);
	store_cert(g, out, label, zero, firsts, zero, undecided);
	LLVMBuildRetVoid(g->b);
	LLVMPositionBuilderAtEnd(g->b, sure);

	/* eps_2 alone takes the Gram strategy when the IR's cost model chose it;
	 * any other set of norms needs the gradient rows */
	LLVMBasicBlockRef join = block(g, "bounded");
	if (m->l2_by_gram) {
		LLVMBasicBlockRef gram = block(g, "gram"), rows = block(g, "rows");
		LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, c.norms, ci32(g, RT_NORM_BIT(RT_L2)), ""), gram, rows);
		LLVMPositionBuilderAtEnd(g->b, gram);
		bounds_by_gram(g, &c);
		LLVMBuildBr(g->b, join);
		LLVMPositionBuilderAtEnd(g->b, rows);
	}
	if (g->m->rows_pruned)
		bounds_by_pruned_rows(g, &c);
	else
		bounds_by_rows(g, &c);
	LLVMBuildBr(g->b, join);
	LLVMPositionBuilderAtEnd(g->b, join);

	/* each requested norm: the smallest sound bound, refined until tight */
	LLVMValueRef eps[RT_NNORMS], bind[RT_NNORMS], pred[RT_NNORMS];
	for (int p = 0; p < RT_NNORMS; p++) {
		LLVMValueRef e = var(g, g->f64, cd(g, INFINITY)), bd = var(g, g->i32, ci32(g, -1));
		LLVMValueRef pr = var(g, g->f64, cd(g, INFINITY));
		LLVMBasicBlockRef done = if_begin(g, LLVMBuildICmp(g->b, LLVMIntNE,
			LLVMBuildAnd(g->b, c.norms, ci32(g, RT_NORM_BIT(p)), ""), ci32(g, 0), ""));
		LLVMValueRef w;
		set(g, e, settle(g, &c, dptr(g, c.ws, g->lb_off + (int64_t)p * 2 * m->n_hidden),
		                 dptr(g, c.ws, g->ref_off), m->n_hidden, cd(g, INFINITY), refine_neuron, &w));
		set(g, bd, w);
		/* eps_pred is min(eps, the pairs' radius): when the smallest pair
		 * bound is at least eps, so is the true pair radius, and eps_pred
		 * is eps however far refinement would take that bound */
		set(g, pr, settle(g, &c, dptr(g, c.ws, g->lp_off + (int64_t)p * 2 * m->n_out),
		                  dptr(g, c.ws, g->refp_off), m->n_out, get(g, g->f64, e), refine_pair, &w));
		if_end(g, done);
		eps[p] = get(g, g->f64, e);
		bind[p] = get(g, g->i32, bd);
		pred[p] = get(g, g->f64, pr);
	}
	store_cert(g, out, label, eps, bind, pred, ci32(g, 0));
	LLVMBuildRetVoid(g->b);
}
