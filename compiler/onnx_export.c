/* onnx_export.c: `llnc export FILE.lln --weights W -o NET.onnx`, an lln
 * model as an ONNX graph.
 *
 * Verification tools exchange networks as ONNX, so a model trained and
 * certified with lln goes to them in that form.  The graph takes the raw
 * input (the units of the certifier's radii): normalize becomes Sub and Div
 * by scalar constants, then each IR op becomes one node (Gemm, after a
 * Flatten when its operand is an image; Conv; AveragePool; Add), followed
 * by a Relu when its outputs are hidden neurons.  Weights are float32
 * initializers under the state_dict names of the safetensors files, bit for
 * bit the numbers lln computes with; only mean and std are rounded to
 * float32, the type of the graph.  Opset 13 with IR version 7 (the pair of
 * ONNX 1.8), which every maintained runtime reads, as does `llnc import`,
 * which gives the same model back.  The messages are protobuf-c's, from
 * ONNX's own schema (compiler/onnx/onnx.proto), allocated in one arena.
 */
#include <stdlib.h>
#include <string.h>

#include "onnx.pb-c.h"
#include "onnx/onnx_export.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ONNX raw_data is little-endian; initializers are written from memory as they are"
#endif

#define OPSET 13
#define IR_VERSION 7
#define MAX_ATTRS 3

typedef struct graph {
	arena *a;
	Onnx__GraphProto *g;
} graph;

static Onnx__NodeProto *add_node(graph *G, const char *op, const char *name, const char *in0, const char *in1,
                                 const char *in2, const char *out)
{
	Onnx__NodeProto *n = arena_alloc(G->a, sizeof *n);
	onnx__node_proto__init(n);
	n->op_type = (char *)op;
	n->name = (char *)name;
	const char *in[3] = { in0, in1, in2 };
	n->input = arena_alloc(G->a, sizeof in);
	for (int i = 0; i < 3 && in[i]; i++)
		n->input[n->n_input++] = (char *)in[i];
	n->output = arena_alloc(G->a, sizeof *n->output);
	n->output[0] = (char *)out;
	n->n_output = 1;
	n->attribute = arena_alloc(G->a, MAX_ATTRS * sizeof *n->attribute);
	G->g->node[G->g->n_node++] = n;
	return n;
}

/* An INT attribute (count 0), or INTS of `count` copies of v: lln's
 * kernels, strides and pads are the same along every axis. */
static void add_attr(graph *G, Onnx__NodeProto *n, const char *name, int count, int64_t v)
{
	Onnx__AttributeProto *at = arena_alloc(G->a, sizeof *at);
	onnx__attribute_proto__init(at);
	at->name = (char *)name;
	at->has_type = 1;
	if (count == 0) {
		at->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
		at->has_i = 1;
		at->i = v;
	} else {
		at->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
		at->n_ints = (size_t)count;
		at->ints = arena_alloc(G->a, (size_t)count * sizeof *at->ints);
		for (int i = 0; i < count; i++)
			at->ints[i] = v;
	}
	n->attribute[n->n_attribute++] = at;
}

/* A float32 initializer; the data is referenced, not copied. */
static void add_init(graph *G, const char *name, int rank, const int32_t *dims, const float *data)
{
	Onnx__TensorProto *t = arena_alloc(G->a, sizeof *t);
	onnx__tensor_proto__init(t);
	t->name = (char *)name;
	t->n_dims = (size_t)rank;
	t->dims = arena_alloc(G->a, (size_t)(rank ? rank : 1) * sizeof *t->dims);
	size_t count = 1;
	for (int i = 0; i < rank; i++)
		count *= (size_t)(t->dims[i] = dims[i]);
	t->has_data_type = 1;
	t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
	t->has_raw_data = 1;
	t->raw_data.len = count * sizeof(float);
	t->raw_data.data = (uint8_t *)data;
	G->g->initializer[G->g->n_initializer++] = t;
}

/* The parameter tensor at offset off of P, as an initializer; its name. */
static const char *add_param(graph *G, const ir_module *m, const float *P, int64_t off)
{
	for (int i = 0; i < m->n_tensors; i++) {
		const rt_tensor *t = &m->tensors[i];
		if (t->offset == off) {
			add_init(G, t->name, t->rank, t->shape, P + off);
			return t->name;
		}
	}
	internal_error("no parameter tensor at offset %lld", (long long)off);
}

/* A float tensor [1, c] or [1, c, h, w] named `name`. */
static Onnx__ValueInfoProto *value_info(graph *G, const char *name, bool image, int c, int h, int w)
{
	Onnx__ValueInfoProto *vi = arena_alloc(G->a, sizeof *vi);
	Onnx__TypeProto *tp = arena_alloc(G->a, sizeof *tp);
	Onnx__TypeProto__Tensor *tt = arena_alloc(G->a, sizeof *tt);
	Onnx__TensorShapeProto *sh = arena_alloc(G->a, sizeof *sh);
	onnx__value_info_proto__init(vi);
	onnx__type_proto__init(tp);
	onnx__type_proto__tensor__init(tt);
	onnx__tensor_shape_proto__init(sh);
	int64_t dims[4] = { 1, c, h, w };
	sh->n_dim = image ? 4 : 2;
	sh->dim = arena_alloc(G->a, sh->n_dim * sizeof *sh->dim);
	for (size_t i = 0; i < sh->n_dim; i++) {
		Onnx__TensorShapeProto__Dimension *d = arena_alloc(G->a, sizeof *d);
		onnx__tensor_shape_proto__dimension__init(d);
		d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
		d->dim_value = dims[i];
		sh->dim[i] = d;
	}
	tt->has_elem_type = 1;
	tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
	tt->shape = sh;
	tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
	tp->tensor_type = tt;
	vi->name = (char *)name;
	vi->type = tp;
	return vi;
}

/* Sub and Div by the scalar mean and std, each left out when it is the
 * identity; the name of the normalized input. */
static const char *add_normalize(graph *G, const ir_module *m)
{
	const char *x = "input";
	float *ms = arena_alloc(G->a, 2 * sizeof *ms);
	ms[0] = (float)m->mean;
	ms[1] = (float)m->std;
	if (ms[0] != 0) {
		add_init(G, "normalize.mean", 0, NULL, &ms[0]);
		add_node(G, "Sub", "normalize/sub", x, "normalize.mean", NULL, "input/centered");
		x = "input/centered";
	}
	if (ms[1] != 1) {
		add_init(G, "normalize.std", 0, NULL, &ms[1]);
		add_node(G, "Div", "normalize/div", x, "normalize.std", NULL, "input/normalized");
		x = "input/normalized";
	}
	return x;
}

/* The graph: values numbered as in the IR (0 the normalized input, op k
 * makes value k + 1); image[v] says whether value v is [C, H, W] (else a
 * vector), flat[v] names its Flatten once a dense layer has read it. */
static int build(graph *G, const ir_module *m, const float *P, const char *path, char *err)
{
	arena *a = G->a;
	const char **name = arena_alloc(a, (size_t)(m->n_ops + 1) * sizeof *name);
	const char **flat = arena_alloc(a, (size_t)(m->n_ops + 1) * sizeof *flat);
	bool *image = arena_alloc(a, (size_t)(m->n_ops + 1) * sizeof *image);
	name[0] = add_normalize(G, m);
	image[0] = m->in_h * m->in_w > 1;
	for (int k = 0; k < m->n_ops; k++)
		image[0] |= m->ops[k].in[0] == 0 && (m->ops[k].kind == OP_CONV2D || m->ops[k].kind == OP_AVGPOOL);
	for (int k = 0; k < m->n_ops; k++) {
		const ir_op *op = &m->ops[k];
		int v = op->in[0];
		/* statement names are identifiers; "input" and "logits" are the graph's */
		const char *out = k + 1 == m->n_ops ? "logits"
		                : strcmp(op->name, "input") && strcmp(op->name, "logits") ? op->name
		                : arena_printf(a, "%s/value", op->name);
		const char *pre = op->relu ? arena_printf(a, "%s/pre", op->name) : out;
		Onnx__NodeProto *n;
		switch (op->kind) {
		case OP_DENSE:
			if (image[v] && !flat[v]) {
				flat[v] = arena_printf(a, "%s/flat", name[v]);
				n = add_node(G, "Flatten", arena_printf(a, "%s/flatten", name[v]), name[v], NULL, NULL, flat[v]);
				add_attr(G, n, "axis", 0, 1);
			}
			n = add_node(G, "Gemm", op->name, image[v] ? flat[v] : name[v], add_param(G, m, P, op->w_off),
			             add_param(G, m, P, op->b_off), pre);
			add_attr(G, n, "transB", 0, 1);
			break;
		case OP_CONV2D:
			n = add_node(G, "Conv", op->name, name[v], add_param(G, m, P, op->w_off),
			             add_param(G, m, P, op->b_off), pre);
			add_attr(G, n, "kernel_shape", 2, op->kernel);
			add_attr(G, n, "strides", 2, op->stride);
			add_attr(G, n, "pads", 4, op->padding);
			break;
		case OP_AVGPOOL:
			n = add_node(G, "AveragePool", op->name, name[v], NULL, NULL, pre);
			add_attr(G, n, "kernel_shape", 2, op->kernel);
			add_attr(G, n, "strides", 2, op->stride);
			break;
		case OP_ADD:
			add_node(G, "Add", op->name, name[v], name[op->in[1]], NULL, pre);
			break;
		default:
			return rt_fail(err, "%s: operation %s of statement '%s' (line %d) has no ONNX form yet", path,
			               op_catalogue[op->kind].name, op->name, op->at.line);
		}
		if (op->relu)
			add_node(G, "Relu", arena_printf(a, "%s/relu", op->name), pre, NULL, NULL, out);
		name[k + 1] = out;
		image[k + 1] = op->kind == OP_CONV2D || op->kind == OP_AVGPOOL || (op->kind == OP_ADD && image[v]);
	}
	const ir_op *last = &m->ops[m->n_ops - 1];
	G->g->input[G->g->n_input++] = value_info(G, "input", image[0], m->in_c, m->in_h, m->in_w);
	G->g->output[G->g->n_output++] = value_info(G, "logits", image[m->n_ops], last->oc, last->oh, last->ow);
	return 0;
}

int onnx_export(const ir_module *m, const float *P, const char *path, char *err)
{
	/* protobuf messages are limited to 2 GB; the weights are inside */
	if (m->n_params > ((int64_t)1 << 31) / 4 - ((int64_t)1 << 20))
		return rt_fail(err, "%s: the model's %lld parameters do not fit in one ONNX file (2 GB)", path,
		               (long long)m->n_params);
	if (m->n_ops == 0)
		return rt_fail(err, "%s: model '%s' has no operations", path, m->name);
	arena *a = arena_new();
	graph G = { a, arena_alloc(a, sizeof *G.g) };
	onnx__graph_proto__init(G.g);
	/* at most Sub, Div, then Flatten, the op and Relu per op */
	G.g->node = arena_alloc(a, (size_t)(3 * m->n_ops + 2) * sizeof *G.g->node);
	G.g->initializer = arena_alloc(a, (size_t)(m->n_tensors + 2) * sizeof *G.g->initializer);
	G.g->input = arena_alloc(a, sizeof *G.g->input);
	G.g->output = arena_alloc(a, sizeof *G.g->output);
	G.g->name = (char *)m->name;
	int rc = build(&G, m, P, path, err);

	Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT, *opsets[] = { &opset };
	opset.domain = "";
	opset.has_version = 1;
	opset.version = OPSET;
	Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
	model.has_ir_version = 1;
	model.ir_version = IR_VERSION;
	model.n_opset_import = 1;
	model.opset_import = opsets;
	model.producer_name = "llnc";
	model.doc_string = arena_printf(a, "lln model %s; the input is raw (normalize is part of the graph), "
	                                "flattened in C order as the certifier reads it", m->name);
	model.graph = G.g;
	if (!rc) {
		size_t len = onnx__model_proto__get_packed_size(&model);
		uint8_t *buf = malloc(len);
		if (!buf)
			rc = rt_fail(err, "%s: out of memory", path);
		else if (onnx__model_proto__pack(&model, buf) != len)
			internal_error("protobuf-c packed a size other than it computed");
		else
			rc = rt_write_atomic(path, buf, len, err);
		free(buf);
	}
	arena_free(a);
	return rc;
}
