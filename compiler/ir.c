/* ir.c: lowering the checked program to the IR.
 *
 * The IR is what the code generator specialises on: a list of linear ops,
 * each with its input value, sizes, parameter offsets and whether a ReLU
 * follows (which makes its outputs hidden neurons with margins).  ReLU nodes
 * of the checked program disappear into the flag of the op they follow, and
 * the parameter vector P is laid out here, tensor by tensor in definition
 * order, with the PyTorch names and shapes the safetensors files use.
 */
#include <string.h>

#include "llnc.h"

static void add_tensor(arena *a, ir_module *m, const char *name, int rank,
                       const int *shape, int fan_in, bool bias)
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
	(void)a;
}

/* Multiply-adds per input for the gradient information of eps_2, assuming
 * half the units of each layer active: explicit rows cost n a D per layer,
 * the Gram recurrence n a^2 plus a^3 for the next layer's active block. */
static void choose_strategy(ir_module *m)
{
	for (int k = 0; k < m->n_ops; k++) {
		const ir_op *op = &m->ops[k];
		if (op->in == 0)
			continue;
		double n = op->out_size, a = op->in_size / 2.0;
		m->cost_rows += n * a * m->n_in;
		m->cost_gram += n * a * a + (op->relu ? (n / 2) * (n / 2) * a : 0);
	}
	m->l2_by_gram = m->n_ops > 1 && m->ops[m->n_ops - 1].in > 0 && m->cost_gram < m->cost_rows;
}

ir_module *ir_lower(arena *a, const sema_program *p)
{
	const sema_model *sm = &p->model;
	ir_module *m = arena_alloc(a, sizeof *m);
	m->name = sm->name;
	m->n_in = sm->nodes[0].size;
	m->mean = (float)(sm->normalize ? sm->mean : 0.0);
	m->std = (float)(sm->normalize ? sm->std : 1.0);
	m->ops = arena_alloc(a, sizeof *m->ops * sm->n_nodes);
	m->tensors = arena_alloc(a, sizeof *m->tensors * 2 * sm->n_nodes);
	m->layers = arena_alloc(a, sizeof *m->layers * sm->n_nodes);

	/* value[i]: the IR value holding sema node i's output. */
	int *value = arena_alloc(a, sizeof *value * sm->n_nodes);
	for (int i = 0; i < sm->n_nodes; i++) {
		const sema_node *n = &sm->nodes[i];
		switch (n->op) {
		case SEMA_INPUT:
			value[i] = 0;
			break;
		case SEMA_DENSE: {
			ir_op *op = &m->ops[m->n_ops];
			op->kind = IR_DENSE;
			op->at = n->at;
			op->name = n->name;
			op->in = value[n->arg];
			op->in_size = sm->nodes[n->arg].size;
			op->out_size = n->size;
			op->z_off = -1;
			int wshape[2] = { op->out_size, op->in_size };
			op->w_off = m->n_params;
			add_tensor(a, m, arena_printf(a, "%s.weight", n->name), 2, wshape, op->in_size, false);
			op->b_off = m->n_params;
			add_tensor(a, m, arena_printf(a, "%s.bias", n->name), 1, &op->out_size, op->in_size, true);
			value[i] = ++m->n_ops;
			break;
		}
		case SEMA_RELU: {
			/* sema guarantees every ReLU follows a linear op used only here */
			int v = value[n->arg];
			if (v == 0)
				internal_error("relu of the input reached the IR");
			ir_op *op = &m->ops[v - 1];
			op->relu = true;
			op->z_off = m->n_hidden;
			rt_layer *l = &m->layers[m->n_layers++];
			l->name = op->name;
			l->size = op->out_size;
			l->offset = m->n_hidden;
			m->n_hidden += op->out_size;
			value[i] = v;
			break;
		}
		}
	}
	int out = value[sm->output];
	if (out == 0 || m->ops[out - 1].relu)
		internal_error("model output is not a linear op");
	if (out != m->n_ops)
		internal_error("model output is not the last op");
	m->n_out = m->ops[out - 1].out_size;
	choose_strategy(m);
	return m;
}

void ir_dump(FILE *out, const ir_module *m)
{
	fprintf(out, "ir module %s: input %d, output %d, %d hidden neurons in %d layers, %lld parameters\n",
	        m->name, m->n_in, m->n_out, m->n_hidden, m->n_layers, (long long)m->n_params);
	fprintf(out, "  v0 = normalize(x, mean=%g, std=%g)  [%d]\n", m->mean, m->std, m->n_in);
	for (int i = 0; i < m->n_ops; i++) {
		const ir_op *op = &m->ops[i];
		fprintf(out, "  v%d = dense(v%d) %s [%d <- %d] W@%lld b@%lld", i + 1, op->in,
		        op->name, op->out_size, op->in_size, (long long)op->w_off, (long long)op->b_off);
		if (op->relu)
			fprintf(out, " relu z[%d..%d)", op->z_off, op->z_off + op->out_size);
		fprintf(out, "  ; %d:%d\n", op->at.line, op->at.col);
	}
	fprintf(out, "  strategy: eps_2 alone by %s (estimated %.3g multiply-adds per input by rows, %.3g by Gram);"
	        " other norms by explicit rows; training by the Gram recurrence\n",
	        m->l2_by_gram ? "the Gram recurrence" : "explicit rows", m->cost_rows, m->cost_gram);
	fprintf(out, "  tensors:\n");
	for (int i = 0; i < m->n_tensors; i++) {
		const rt_tensor *t = &m->tensors[i];
		fprintf(out, "    %s [", t->name);
		for (int d = 0; d < t->rank; d++)
			fprintf(out, "%s%d", d ? ", " : "", t->shape[d]);
		fprintf(out, "] @%lld\n", (long long)t->offset);
	}
}
