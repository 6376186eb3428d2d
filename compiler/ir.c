/* ir.c: lowering the checked program to the IR.
 *
 * The IR is what the code generator specialises on: a list of linear ops
 * over numbered values, each with its operands, shapes (as C x H x W),
 * attributes, parameter offsets and whether a ReLU follows (which makes its
 * outputs hidden neurons with margins).  ReLU nodes of the checked program
 * disappear into the flag of the op they follow, and the parameter vector P
 * is laid out here, tensor by tensor in definition order, with the PyTorch
 * names and shapes the safetensors files use.  Finally a cost model picks
 * how eps_2 alone is computed.
 */
#include <string.h>

#include "llnc.h"

static void add_tensor(ir_module *m, const char *name, int rank, const int *shape, int fan_in, bool bias)
{
	rt_tensor *t = &m->tensors[m->n_tensors++];
	t->name = name;
	t->rank = rank;
	t->count = 1;
	for (int i = 0; i < rank; i++) {
		t->shape[i] = shape[i];
		t->count *= shape[i];
	}
	t->offset = m->n_params;
	t->fan_in = fan_in;
	t->is_bias = bias;
	m->n_params += t->count;
}

/* NAME.weight [out, in] (dense) or [out, C, K, K] (conv2d), then NAME.bias
 * [out]; fan_in is what PyTorch's default initialisation divides by. */
static void add_params(arena *a, ir_module *m, ir_op *op)
{
	int shape[4] = { op->oc, op->in_size }, rank = 2, fan_in = op->in_size;
	if (op->kind == OP_CONV2D) {
		shape[1] = op->ic;
		shape[2] = shape[3] = op->kernel;
		rank = 4;
		fan_in = op->ic * op->kernel * op->kernel;
	}
	op->w_off = m->n_params;
	add_tensor(m, arena_printf(a, "%s.weight", op->name), rank, shape, fan_in, false);
	op->b_off = m->n_params;
	add_tensor(m, arena_printf(a, "%s.bias", op->name), 1, &op->oc, fan_in, true);
}

/* nn.RNN's tensors, shared by the step ops of one rnn: PyTorch
 * initialises all four U(-1/sqrt(n), 1/sqrt(n)), n the hidden size. */
static void add_rnn_params(arena *a, ir_module *m, ir_op *op)
{
	int n = op->oc, ih[2] = { n, op->in_size }, hh[2] = { n, n };
	op->w_off = m->n_params;
	add_tensor(m, arena_printf(a, "%s.weight_ih_l0", op->name), 2, ih, n, false);
	op->wh_off = m->n_params;
	add_tensor(m, arena_printf(a, "%s.weight_hh_l0", op->name), 2, hh, n, false);
	op->b_off = m->n_params;
	add_tensor(m, arena_printf(a, "%s.bias_ih_l0", op->name), 1, &n, n, true);
	op->bh_off = m->n_params;
	add_tensor(m, arena_printf(a, "%s.bias_hh_l0", op->name), 1, &n, n, true);
}

/* rnn node n over the sequence whose step t is value x0 + t (a stacked
 * rnn) or the slice t of value 0 (the input): one op per step, all relu'd,
 * one hidden layer for all their states.  Returns the first step's value. */
static int lower_rnn(arena *a, ir_module *m, const sema_node *n, int x0, bool over_input)
{
	int T = n->dims[0], H = n->dims[1];
	rt_layer *l = &m->layers[m->n_layers++];
	l->name = n->name;
	l->size = T * H;
	l->offset = m->n_hidden;
	l->w = H;   /* a sequence layer: c = h = 0, w units per time step */
	int first = m->n_ops + 1;
	for (int t = 0; t < T; t++) {
		ir_op *op = &m->ops[m->n_ops];
		op->kind = OP_RNN;
		op->at = n->at;
		op->name = n->name;
		op->step = t;
		op->n_in = t > 0 ? 2 : 1;
		op->in[0] = over_input ? 0 : x0 + t;
		op->in[1] = t > 0 ? first + t - 1 : -1;
		op->slice = over_input ? t * (m->n_in / T) : 0;
		op->in_size = over_input ? m->n_in / T : m->ops[x0 - 1].out_size;
		op->out_size = H;
		op->ic = op->in_size;
		op->ih = op->iw = 1;
		op->oc = H;
		op->oh = op->ow = 1;
		op->relu = true;
		op->z_off = m->n_hidden;
		m->n_hidden += H;
		if (t == 0) {
			add_rnn_params(a, m, op);
		} else {
			op->w_off = m->ops[first - 1].w_off;
			op->b_off = m->ops[first - 1].b_off;
			op->wh_off = m->ops[first - 1].wh_off;
			op->bh_off = m->ops[first - 1].bh_off;
		}
		m->n_ops++;
	}
	return first;
}

/* A value as C x H x W: vectors are n x 1 x 1. */
static void chw(const sema_node *n, int *c, int *h, int *w)
{
	*c = n->ndims == 3 ? n->dims[0] : n->size;
	*h = n->ndims == 3 ? n->dims[1] : 1;
	*w = n->ndims == 3 ? n->dims[2] : 1;
}

/* Multiply-adds per input for the gradient information of eps_2 in a chain
 * of dense layers, assuming half the units of each layer active: explicit
 * rows cost n a D per layer, the Gram recurrence n a^2 plus a^3 for the
 * next layer's active block.  Any other graph takes explicit rows (tangents),
 * since the Gram matrices of a convolution are as wide as its output. */
static void choose_strategy(ir_module *m)
{
	m->dense_chain = m->n_ops > 0;
	for (int k = 0; k < m->n_ops; k++)
		m->dense_chain &= m->ops[k].kind == OP_DENSE && m->ops[k].in[0] == k && (m->ops[k].relu || k == m->n_ops - 1);
	for (int k = 0; k < m->n_ops; k++) {
		const ir_op *op = &m->ops[k];
		if (op->in[0] == 0)
			continue;
		double n = op->out_size, a = op->in_size / 2.0;
		m->cost_rows += n * a * m->n_in;
		m->cost_gram += n * a * a + (op->relu ? (n / 2) * (n / 2) * a : 0);
	}
	/* certify's pruned rows (cg_certify.c) need two hidden layers and plain
	 * logits; where they apply they also serve eps_2 alone: on mnist_fc they
	 * ran 2.2x faster than the Gram strategy, whose loose error bound makes
	 * it refine several neurons per input (docs/performance.md) */
	m->rows_pruned = m->dense_chain && m->n_ops >= 3 && !m->ops[m->n_ops - 1].relu;
	m->l2_by_gram = m->dense_chain && m->n_ops > 1 && !m->rows_pruned && m->cost_gram < m->cost_rows;
}

ir_module *ir_lower(arena *a, const sema_program *p)
{
	const sema_model *sm = &p->model;
	ir_module *m = arena_alloc(a, sizeof *m);
	m->name = sm->name;
	m->n_in = sm->nodes[0].size;
	chw(&sm->nodes[0], &m->in_c, &m->in_h, &m->in_w);
	m->max_len = sm->max_len;
	m->mean = sm->normalize ? sm->mean : 0.0;
	m->std = sm->normalize ? sm->std : 1.0;
	int n_ops = 0;
	for (int i = 0; i < sm->n_nodes; i++)
		n_ops += sm->nodes[i].op == OP_RNN ? sm->nodes[i].dims[0] : 1;
	m->ops = arena_alloc(a, sizeof *m->ops * n_ops);
	m->tensors = arena_alloc(a, sizeof *m->tensors * 4 * sm->n_nodes);
	m->layers = arena_alloc(a, sizeof *m->layers * sm->n_nodes);

	/* value[i]: the IR value holding sema node i's output. */
	int *value = arena_alloc(a, sizeof *value * sm->n_nodes);
	for (int i = 0; i < sm->n_nodes; i++) {
		const sema_node *n = &sm->nodes[i];
		if (n->op == OP_INPUT)
			continue;   /* value 0 */
		if (n->op == OP_RELU) {
			/* sema guarantees every ReLU follows a linear op used only through it */
			int v = value[n->in[0]];
			if (v == 0)
				internal_error("relu of the input reached the IR");
			ir_op *op = &m->ops[v - 1];
			op->relu = true;
			op->z_off = m->n_hidden;
			rt_layer *l = &m->layers[m->n_layers++];
			l->name = op->name;
			l->size = op->out_size;
			l->offset = m->n_hidden;
			if (n->ndims == 3) {
				l->c = op->oc;
				l->h = op->oh;
				l->w = op->ow;
			}
			m->n_hidden += op->out_size;
			value[i] = v;
			continue;
		}
		if (n->op == OP_RNN) {
			value[i] = lower_rnn(a, m, n, value[n->in[0]], n->in[0] == 0);
			continue;
		}
		if (n->op == OP_LAST) {   /* the rnn's last step */
			value[i] = value[n->in[0]] + sm->nodes[n->in[0]].dims[0] - 1;
			continue;
		}
		ir_op *op = &m->ops[m->n_ops];
		const sema_node *x = &sm->nodes[n->in[0]];
		op->kind = n->op;
		op->at = n->at;
		op->name = n->name;
		op->n_in = op_catalogue[n->op].operands;
		for (int k = 0; k < op->n_in; k++)
			op->in[k] = value[n->in[k]];
		op->in_size = x->size;
		op->out_size = n->size;
		chw(x, &op->ic, &op->ih, &op->iw);
		chw(n, &op->oc, &op->oh, &op->ow);
		op->kernel = n->kernel;
		op->stride = n->stride;
		op->padding = n->padding;
		op->z_off = -1;
		op->w_off = op->b_off = -1;
		if (op_catalogue[n->op].parameterized)
			add_params(a, m, op);
		value[i] = ++m->n_ops;
	}
	int out = value[sm->output];
	if (out == 0 || m->ops[out - 1].relu)
		internal_error("model output is not a linear op");
	if (out != m->n_ops)
		internal_error("model output is not the last op");
	m->n_out = m->ops[out - 1].out_size;
	choose_strategy(m);
	m->samples = p->objective.reg == REG_ROLL ? p->objective.samples : 0;
	return m;
}

/* "300" for a vector, "4 x 12 x 12" for an image */
static void print_shape(FILE *out, int c, int h, int w)
{
	if (h == 1 && w == 1)
		fprintf(out, "%d", c);
	else
		fprintf(out, "%d x %d x %d", c, h, w);
}

void ir_dump(FILE *out, const ir_module *m)
{
	fprintf(out, "ir module %s: input %d, output %d, %d hidden neurons in %d layers, %lld parameters\n",
	        m->name, m->n_in, m->n_out, m->n_hidden, m->n_layers, (long long)m->n_params);
	fprintf(out, "  v0 = normalize(x, mean=%g, std=%g)  [%d]\n", m->mean, m->std, m->n_in);
	if (m->max_len)
		fprintf(out, "  sequences of 1 to %d frames of %d, left-padded: steps before the first frame are 0\n",
		        m->max_len, m->n_in / m->max_len);
	for (int i = 0; i < m->n_ops; i++) {
		const ir_op *op = &m->ops[i];
		fprintf(out, "  v%d = %s(v%d", i + 1, op_catalogue[op->kind].name, op->in[0]);
		if (op->kind == OP_RNN)
			fprintf(out, "[%d..%d)", op->slice, op->slice + op->in_size);
		for (int k = 1; k < op->n_in; k++)
			fprintf(out, ", v%d", op->in[k]);
		if (op->kernel)
			fprintf(out, ", kernel=%d, stride=%d", op->kernel, op->stride);
		if (op->kind == OP_CONV2D)
			fprintf(out, ", padding=%d", op->padding);
		if (op->kind == OP_RNN)
			fprintf(out, ", step=%d", op->step);
		fprintf(out, ") %s [", op->name);
		print_shape(out, op->oc, op->oh, op->ow);
		fputs(" <- ", out);
		print_shape(out, op->ic, op->ih, op->iw);
		fputc(']', out);
		if (op->kind == OP_RNN)
			fprintf(out, " W_ih@%lld W_hh@%lld b_ih@%lld b_hh@%lld", (long long)op->w_off, (long long)op->wh_off,
			        (long long)op->b_off, (long long)op->bh_off);
		else if (op->w_off >= 0)
			fprintf(out, " W@%lld b@%lld", (long long)op->w_off, (long long)op->b_off);
		if (op->relu)
			fprintf(out, " relu z[%d..%d)", op->z_off, op->z_off + op->out_size);
		fprintf(out, "  ; %d:%d\n", op->at.line, op->at.col);
	}
	if (m->samples)
		fprintf(out, "  training: approximate ROLL, %d of the %d input axes sampled per example: %d + 1 tangent "
		        "passes instead of %d + 1\n", m->samples, m->n_in, m->samples, m->n_in);
	if (m->rows_pruned)
		fprintf(out, "  strategy: every norm by explicit rows, formed only for active units that feed a layer"
		        " above and for neurons that may bind; training by the Gram recurrence\n");
	else if (m->dense_chain)
		fprintf(out, "  strategy: eps_2 alone by %s (estimated %.3g multiply-adds per input by rows, %.3g by Gram);"
		        " other norms by explicit rows; training by the Gram recurrence\n",
		        m->l2_by_gram ? "the Gram recurrence" : "explicit rows", m->cost_rows, m->cost_gram);
	else
		fprintf(out, "  strategy: every norm by tangents (the %d input axes pushed through the masked network"
		        " as a batch); training by tangents and their adjoint (a graph that is not a dense chain"
		        " has no Gram form)\n", m->n_in);
	fprintf(out, "  tensors:\n");
	for (int i = 0; i < m->n_tensors; i++) {
		const rt_tensor *t = &m->tensors[i];
		fprintf(out, "    %s [", t->name);
		for (int d = 0; d < t->rank; d++)
			fprintf(out, "%s%d", d ? ", " : "", t->shape[d]);
		fprintf(out, "] @%lld\n", (long long)t->offset);
	}
}
