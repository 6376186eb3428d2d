/* onnx_import.c: `llnc import NET.onnx -o OUT`, an ONNX network as lln.
 *
 * Most networks people want to certify come as ONNX files.  This turns one
 * into OUT.lln (a model block whose statements carry comments naming the
 * ONNX nodes they came from) and OUT.safetensors (its weights under the
 * names OUT.lln gives them), so that `llnc build OUT.lln --certifier
 * --weights OUT.safetensors` certifies the ONNX network itself, in the
 * units of its input.  The file is parsed by protobuf-c from ONNX's own
 * schema (compiler/onnx/onnx.proto); this file only reads the parsed graph.
 *
 * The nodes are walked once, in their (topological) order, keeping for each
 * ONNX value what it is in lln terms: a constant, the input after an
 * elementwise affine map (the normalisation: Sub, Add, Mul, Div by
 * constants), or the output of an lln statement, possibly still open to
 * folding (a bias Add, a BatchNormalization, a Relu) while nothing else
 * reads it.  Everything lln cannot express exactly is refused with the
 * node, its operator and the reason; nothing is approximated.  A scalar
 * normalisation becomes `normalize(mean, std)`; one that differs per
 * feature or channel is folded into the first layer, which is exact for
 * dense layers and unpadded convolutions and is refused before a padded
 * convolution (the border would see the padding's zeros in the wrong
 * units).  Arithmetic on weights is in double, rounded to float32 once.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx.pb-c.h"
#include "onnx/onnx_import.h"
#include "rt.h"

#define MAX_STMTS 256
#define MAX_ELEMS (64LL << 20)   /* values in one tensor; larger is refused */

typedef struct tensor {
	int rank;
	int64_t dims[8];
	int64_t n;
	double *v;
} tensor;

enum { OP_DENSE, OP_CONV, OP_POOL, OP_ADD };

typedef struct stmt {
	int op;
	char name[24];
	int in[2];            /* operand statements, -1: the input */
	int out, k, s, p;     /* dense: out; conv: out, k, s, p; pool: k, s */
	bool relu;
	double *w, *b;        /* dense [out, in], conv [out, c, k, k]; bias [out] */
	int64_t nw, in_c;     /* in_c: conv input channels, dense input size */
	int rank;             /* output shape, without batch */
	int64_t shape[3];
	char from[256];       /* the ONNX nodes, for the comment */
} stmt;

enum { V_NONE, V_CONST, V_INPUT, V_STMT };

typedef struct val {
	const char *name;
	int kind;
	tensor *c;            /* V_CONST */
	int stmt;             /* V_STMT */
	bool flat;            /* V_STMT, V_INPUT: seen through Flatten/Reshape */
	int64_t pad[4];       /* pending zero padding from Pad: top, left, bottom, right */
	int uses;             /* readers among the nodes and graph outputs */
	int gen;              /* V_INPUT: how many affine maps it has been through */
} val;

typedef struct imp {
	const char *path;
	char *err;
	Onnx__ModelProto *m;
	val *v;
	int nv;
	stmt st[MAX_STMTS];
	int ns;
	int in_rank;          /* input shape without batch */
	int64_t in_shape[3], in_n;
	double *a, *b;        /* the input's affine map x' = a x + b, per element */
	bool norm_used;       /* the affine map was folded into a layer */
	int gen;              /* affine maps applied to the input so far */
	int64_t opset;
	tensor *consts[4096];
	int nconsts;
} imp;

static int fail(imp *im, const char *fmt, ...)
{
	int k = snprintf(im->err, RT_ERRLEN, "%s: ", im->path);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(im->err + k, RT_ERRLEN - (size_t)k, fmt, ap);
	va_end(ap);
	return -1;
}

/* "node 3 '/1/Conv' (Conv)": the index counts from 0 as in the file. */
static const char *node_desc(const Onnx__NodeProto *n, size_t i)
{
	static char buf[160];
	snprintf(buf, sizeof buf, "node %zu '%.80s' (%.40s)", i, n->name && n->name[0] ? n->name : "",
	         n->op_type ? n->op_type : "?");
	return buf;
}

#define node_fail(im, n, i, ...) node_fail_(im, node_desc(n, i), __VA_ARGS__)
static int node_fail_(imp *im, const char *desc, const char *fmt, ...)
{
	char m[RT_ERRLEN];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m, sizeof m, fmt, ap);
	va_end(ap);
	return fail(im, "%s: %s", desc, m);
}

/* ------------------------------------------------------------------------
 * Values and constants
 * ---------------------------------------------------------------------- */

static val *lookup(imp *im, const char *name)
{
	for (int i = 0; i < im->nv; i++)
		if (strcmp(im->v[i].name, name) == 0)
			return &im->v[i];
	return NULL;
}

static tensor *new_tensor(imp *im, int rank, const int64_t *dims)
{
	if (im->nconsts == (int)(sizeof im->consts / sizeof *im->consts))
		return NULL;
	tensor *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->rank = rank;
	t->n = 1;
	for (int i = 0; i < rank; i++) {
		t->dims[i] = dims[i];
		t->n *= dims[i];
	}
	t->v = calloc((size_t)(t->n ? t->n : 1), sizeof *t->v);
	if (!t->v) {
		free(t);
		return NULL;
	}
	im->consts[im->nconsts++] = t;
	return t;
}

/* A TensorProto's values as doubles: float, double, int64 and int32, from
 * the typed fields or raw_data. */
static tensor *read_tensor(imp *im, const Onnx__TensorProto *tp, const char *what)
{
	if (tp->n_dims > 8)
		return fail(im, "%s has rank %zu", what, tp->n_dims), NULL;
	int64_t n = 1;
	for (size_t i = 0; i < tp->n_dims; i++) {
		if (tp->dims[i] < 0 || (tp->dims[i] && n > MAX_ELEMS / tp->dims[i]))
			return fail(im, "%s has an invalid or too large shape", what), NULL;
		n *= tp->dims[i];
	}
	if (tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
		return fail(im, "%s keeps its data in an external file, which is not supported "
		            "(save the model with its weights inside)", what), NULL;
	int dt = tp->has_data_type ? tp->data_type : 0;
	int size = dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ? 4 : dt == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE ? 8
	         : dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? 8 : dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 ? 4 : 0;
	if (!size)
		return fail(im, "%s has ONNX data type %d; only float, double, int32 and int64 are read", what, dt), NULL;
	size_t have = tp->has_raw_data ? tp->raw_data.len / (size_t)size
	            : size == 4 && dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ? tp->n_float_data
	            : dt == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE ? tp->n_double_data
	            : dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? tp->n_int64_data : tp->n_int32_data;
	if ((tp->has_raw_data && tp->raw_data.len != (size_t)n * (size_t)size) || have != (size_t)n)
		return fail(im, "%s holds %zu values, its shape needs %lld", what, have, (long long)n), NULL;
	int64_t d[8];
	for (size_t i = 0; i < tp->n_dims; i++)
		d[i] = tp->dims[i];
	tensor *t = new_tensor(im, (int)tp->n_dims, d);
	if (!t)
		return fail(im, "out of memory"), NULL;
	for (int64_t i = 0; i < n; i++) {
		double x;
		if (tp->has_raw_data) {
			const uint8_t *p = tp->raw_data.data + i * size;
			if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
				float f;
				memcpy(&f, p, 4);
				x = f;
			} else if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE) {
				memcpy(&x, p, 8);
			} else if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64) {
				int64_t k;
				memcpy(&k, p, 8);
				x = (double)k;
			} else {
				int32_t k;
				memcpy(&k, p, 4);
				x = k;
			}
		} else {
			x = dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ? tp->float_data[i]
			  : dt == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE ? tp->double_data[i]
			  : dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? (double)tp->int64_data[i] : tp->int32_data[i];
		}
		if (!isfinite(x))
			return fail(im, "%s value %lld is NaN or infinite", what, (long long)(i + 1)), NULL;
		t->v[i] = x;
	}
	return t;
}

static val *add_val(imp *im, const char *name, int kind)
{
	val *v = lookup(im, name);
	if (!v) {
		v = &im->v[im->nv++];
		memset(v, 0, sizeof *v);
		v->name = name;
	}
	v->kind = kind;
	return v;
}

/* ------------------------------------------------------------------------
 * Attributes
 * ---------------------------------------------------------------------- */

static const Onnx__AttributeProto *attr(const Onnx__NodeProto *n, const char *name)
{
	for (size_t i = 0; i < n->n_attribute; i++)
		if (n->attribute[i]->name && strcmp(n->attribute[i]->name, name) == 0)
			return n->attribute[i];
	return NULL;
}

static int64_t attr_int(const Onnx__NodeProto *n, const char *name, int64_t dflt)
{
	const Onnx__AttributeProto *a = attr(n, name);
	return a && a->has_i ? a->i : dflt;
}

static double attr_float(const Onnx__NodeProto *n, const char *name, double dflt)
{
	const Onnx__AttributeProto *a = attr(n, name);
	return a && a->has_f ? a->f : dflt;
}

/* An INTS attribute of exactly `want` entries into out (default `dflt`
 * when absent); -1 when present with another length. */
static int attr_ints(const Onnx__NodeProto *n, const char *name, size_t want, int64_t dflt, int64_t *out)
{
	const Onnx__AttributeProto *a = attr(n, name);
	for (size_t i = 0; i < want; i++)
		out[i] = dflt;
	if (!a)
		return 0;
	if (a->n_ints != want)
		return -1;
	memcpy(out, a->ints, want * sizeof *out);
	return 0;
}

/* ------------------------------------------------------------------------
 * Statements
 * ---------------------------------------------------------------------- */

static const char *prefix_of[] = { [OP_DENSE] = "fc", [OP_CONV] = "conv", [OP_POOL] = "pool",
                                   [OP_ADD] = "add" };

static stmt *new_stmt(imp *im, int op, const char *from)
{
	if (im->ns == MAX_STMTS)
		return NULL;
	stmt *s = &im->st[im->ns++];
	memset(s, 0, sizeof *s);
	s->op = op;
	s->in[0] = s->in[1] = -1;
	int k = 0;
	for (int i = 0; i < im->ns; i++)
		k += im->st[i].op == op;
	snprintf(s->name, sizeof s->name, "%s%d", prefix_of[op], k);
	snprintf(s->from, sizeof s->from, "%s", from);
	return s;
}

static void note_from(stmt *s, const char *desc)
{
	size_t l = strlen(s->from);
	snprintf(s->from + l, sizeof s->from - l, "%s%s", l ? ", " : "", desc);
}

/* The operand of a layer: a statement's output or the input.  Returns the
 * statement index (-1: input) and the operand's shape. */
static int operand(imp *im, const Onnx__NodeProto *n, size_t ni, const char *name, val **out, int *rank,
                   int64_t *shape)
{
	val *v = name ? lookup(im, name) : NULL;
	if (!v || (v->kind != V_INPUT && v->kind != V_STMT))
		return node_fail(im, n, ni, "input '%s' is %s", name ? name : "",
		                 v && v->kind == V_CONST ? "a constant; lln layers read values computed from the input"
		                                         : "not computed by any earlier node"), -2;
	/* lln has one input value, normalised once: every reader must see the
	 * same map */
	if (v->kind == V_INPUT && v->gen != im->gen)
		return node_fail(im, n, ni, "reads the input at another stage of its normalisation than "
		                 "another node does"), -2;
	if ((v->pad[0] | v->pad[1] | v->pad[2] | v->pad[3]) && strcmp(n->op_type, "Conv") &&
	    strcmp(n->op_type, "AveragePool"))
		return node_fail(im, n, ni, "reads a padded value; lln pads only inside conv2d"), -2;
	*out = v;
	if (v->kind == V_INPUT) {
		*rank = im->in_rank;
		memcpy(shape, im->in_shape, sizeof im->in_shape);
	} else {
		*rank = im->st[v->stmt].rank;
		memcpy(shape, im->st[v->stmt].shape, sizeof im->st[v->stmt].shape);
	}
	if (v->flat && *rank > 1) {
		shape[0] = shape[0] * shape[1] * shape[2];
		*rank = 1;
	}
	return v->kind == V_INPUT ? -1 : v->stmt;
}

static bool affine_is_identity(const imp *im)
{
	for (int64_t i = 0; i < im->in_n; i++)
		if (im->a[i] != 1 || im->b[i] != 0)
			return false;
	return true;
}

static bool affine_is_scalar(const imp *im)
{
	for (int64_t i = 1; i < im->in_n; i++)
		if (im->a[i] != im->a[0] || im->b[i] != im->b[0])
			return false;
	return true;
}

/* The input's affine map folded into the first layer reading it, when it
 * is not one scalar normalize(...).  Dense: W diag(a), bias + W b.  Conv:
 * exact only without padding and with a, b constant over each channel. */
static int fold_input(imp *im, const Onnx__NodeProto *n, size_t ni, stmt *s)
{
	if (affine_is_identity(im) || affine_is_scalar(im))
		return 0;
	if (im->norm_used)
		return node_fail(im, n, ni, "reads the input too; a normalisation that differs per feature "
		                 "is folded into the one layer reading the input, and this is a second one");
	im->norm_used = true;
	if (s->op == OP_DENSE) {
		for (int o = 0; o < s->out; o++)
			for (int64_t i = 0; i < s->in_c; i++) {
				s->b[o] += s->w[o * s->in_c + i] * im->b[i];
				s->w[o * s->in_c + i] *= im->a[i];
			}
		return 0;
	}
	if (s->op != OP_CONV)
		return node_fail(im, n, ni, "reads the input after a normalisation that differs per feature; "
		                 "lln folds one only into a first Gemm, MatMul or Conv");
	if (s->p > 0)
		return node_fail(im, n, ni, "is a padded convolution after a normalisation that differs per "
		                 "channel; folding it would change the border (the padding's zeros are in "
		                 "normalised units), so it is refused: normalise with one mean and std, or "
		                 "pad the input explicitly");
	int64_t hw = im->in_shape[1] * im->in_shape[2];
	for (int64_t c = 0; c < s->in_c; c++)
		for (int64_t j = 1; j < hw; j++)
			if (im->a[c * hw + j] != im->a[c * hw] || im->b[c * hw + j] != im->b[c * hw])
				return node_fail(im, n, ni, "reads the input after a normalisation that differs "
				                 "within a channel; a convolution can absorb only one per channel");
	int64_t kk = (int64_t)s->k * s->k;
	for (int o = 0; o < s->out; o++)
		for (int64_t c = 0; c < s->in_c; c++)
			for (int64_t j = 0; j < kk; j++) {
				double *w = &s->w[(o * s->in_c + c) * kk + j];
				s->b[o] += *w * im->b[c * hw];
				*w *= im->a[c * hw];
			}
	return 0;
}

/* A new layer's output value. */
static void set_output(imp *im, const char *name, int stmt_index)
{
	val *v = add_val(im, name, V_STMT);
	v->stmt = stmt_index;
	v->flat = false;
	memset(v->pad, 0, sizeof v->pad);
}

/* The statement whose output `name` is, when it can still be changed: not
 * yet through a ReLU, and read by nothing but this node. */
static stmt *open_stmt(imp *im, const char *name)
{
	val *v = name ? lookup(im, name) : NULL;
	if (!v || v->kind != V_STMT || v->flat || v->uses != 1)
		return NULL;
	stmt *s = &im->st[v->stmt];
	return s->relu ? NULL : s;
}

static const tensor *const_of(imp *im, const char *name)
{
	val *v = name && name[0] ? lookup(im, name) : NULL;
	return v && v->kind == V_CONST ? v->c : NULL;
}

static int do_gemm(imp *im, const Onnx__NodeProto *n, size_t ni, bool matmul)
{
	if (n->n_input < 2 || n->n_output < 1)
		return node_fail(im, n, ni, "needs 2 inputs and an output");
	val *x;
	int rank;
	int64_t shape[3];
	int from = operand(im, n, ni, n->input[0], &x, &rank, shape);
	if (from == -2)
		return -1;
	if (rank != 1)
		return node_fail(im, n, ni, "multiplies a value of rank %d; lln's dense reads a flattened "
		                 "vector (insert a Flatten)", rank);
	const tensor *B = const_of(im, n->input[1]), *C = n->n_input > 2 ? const_of(im, n->input[2]) : NULL;
	if (!B || B->rank != 2)
		return node_fail(im, n, ni, "needs a constant 2-D weight matrix as its second input");
	if (n->n_input > 2 && n->input[2][0] && !C)
		return node_fail(im, n, ni, "needs a constant bias as its third input");
	bool transB = !matmul && attr_int(n, "transB", 0);
	if (!matmul && attr_int(n, "transA", 0))
		return node_fail(im, n, ni, "has transA = 1; the data must be the left operand as it is");
	double alpha = matmul ? 1 : attr_float(n, "alpha", 1), beta = matmul ? 1 : attr_float(n, "beta", 1);
	int64_t in = transB ? B->dims[1] : B->dims[0], out = transB ? B->dims[0] : B->dims[1];
	if (in != shape[0])
		return node_fail(im, n, ni, "has a weight of shape [%lld, %lld] for %lld inputs",
		                 (long long)B->dims[0], (long long)B->dims[1], (long long)shape[0]);
	if (out < 1 || out > INT32_MAX)
		return node_fail(im, n, ni, "has %lld outputs", (long long)out);
	if (C && !(C->n == 1 || C->n == out))
		return node_fail(im, n, ni, "has a bias of %lld values for %lld outputs", (long long)C->n,
		                 (long long)out);
	stmt *s = new_stmt(im, OP_DENSE, node_desc(n, ni));
	if (!s)
		return node_fail(im, n, ni, "the model has more than %d layers", MAX_STMTS);
	s->in[0] = from;
	s->out = (int)out;
	s->in_c = in;
	s->rank = 1;
	s->shape[0] = out;
	s->nw = out * in;
	s->w = calloc((size_t)s->nw, sizeof *s->w);
	s->b = calloc((size_t)out, sizeof *s->b);
	if (!s->w || !s->b)
		return fail(im, "out of memory");
	for (int64_t o = 0; o < out; o++) {
		for (int64_t i = 0; i < in; i++)
			s->w[o * in + i] = alpha * (transB ? B->v[o * in + i] : B->v[i * out + o]);
		s->b[o] = C ? beta * C->v[C->n == 1 ? 0 : o] : 0;
	}
	if (from == -1 && fold_input(im, n, ni, s))
		return -1;
	set_output(im, n->output[0], im->ns - 1);
	return 0;
}

static int do_conv(imp *im, const Onnx__NodeProto *n, size_t ni)
{
	if (n->n_input < 2 || n->n_output < 1)
		return node_fail(im, n, ni, "needs 2 inputs and an output");
	val *x;
	int rank;
	int64_t shape[3];
	int from = operand(im, n, ni, n->input[0], &x, &rank, shape);
	if (from == -2)
		return -1;
	if (rank != 3)
		return node_fail(im, n, ni, "convolves a value of rank %d; lln's conv2d reads [C, H, W]", rank);
	const tensor *W = const_of(im, n->input[1]), *B = n->n_input > 2 ? const_of(im, n->input[2]) : NULL;
	if (!W || W->rank != 4)
		return node_fail(im, n, ni, "needs a constant 4-D weight as its second input");
	if (n->n_input > 2 && n->input[2][0] && (!B || B->n != W->dims[0]))
		return node_fail(im, n, ni, "needs a constant bias of %lld values", (long long)W->dims[0]);
	if (attr_int(n, "group", 1) != 1)
		return node_fail(im, n, ni, "has group = %lld; lln's conv2d has group 1", (long long)attr_int(n, "group", 1));
	const Onnx__AttributeProto *ap = attr(n, "auto_pad");
	if (ap && ap->has_s && ap->s.len && !(ap->s.len == 6 && !memcmp(ap->s.data, "NOTSET", 6)) &&
	    !(ap->s.len == 5 && !memcmp(ap->s.data, "VALID", 5)))
		return node_fail(im, n, ni, "has auto_pad %.*s; give explicit pads", (int)ap->s.len, ap->s.data);
	int64_t ks[2], st[2], pd[4], dl[2];
	if (attr_ints(n, "kernel_shape", 2, 0, ks) || attr_ints(n, "strides", 2, 1, st) ||
	    attr_ints(n, "pads", 4, 0, pd) || attr_ints(n, "dilations", 2, 1, dl))
		return node_fail(im, n, ni, "has attributes of the wrong length for a 2-D convolution");
	if (!attr(n, "kernel_shape")) {
		ks[0] = W->dims[2];
		ks[1] = W->dims[3];
	}
	for (int i = 0; i < 4; i++)
		pd[i] += x->pad[i];
	if (ks[0] != ks[1] || ks[0] != W->dims[2] || W->dims[3] != W->dims[2])
		return node_fail(im, n, ni, "has a %lldx%lld kernel; lln's conv2d has square kernels",
		                 (long long)W->dims[2], (long long)W->dims[3]);
	if (st[0] != st[1])
		return node_fail(im, n, ni, "has strides %lld, %lld; lln's conv2d has one stride", (long long)st[0],
		                 (long long)st[1]);
	if (pd[0] != pd[1] || pd[0] != pd[2] || pd[0] != pd[3])
		return node_fail(im, n, ni, "has pads %lld, %lld, %lld, %lld (top, left, bottom, right); lln's "
		                 "conv2d pads all four sides equally", (long long)pd[0], (long long)pd[1],
		                 (long long)pd[2], (long long)pd[3]);
	if (dl[0] != 1 || dl[1] != 1)
		return node_fail(im, n, ni, "has dilations; lln's conv2d has none");
	if (W->dims[1] != shape[0])
		return node_fail(im, n, ni, "has a weight for %lld input channels, its input has %lld",
		                 (long long)W->dims[1], (long long)shape[0]);
	int64_t k = ks[0], s_ = st[0], p = pd[0];
	if (k < 1 || s_ < 1 || p < 0 || shape[1] + 2 * p < k || shape[2] + 2 * p < k || W->dims[0] > INT32_MAX)
		return node_fail(im, n, ni, "has kernel %lld, stride %lld, padding %lld that do not fit its "
		                 "[%lld, %lld, %lld] input", (long long)k, (long long)s_, (long long)p,
		                 (long long)shape[0], (long long)shape[1], (long long)shape[2]);
	stmt *s = new_stmt(im, OP_CONV, node_desc(n, ni));
	if (!s)
		return node_fail(im, n, ni, "the model has more than %d layers", MAX_STMTS);
	s->in[0] = from;
	s->out = (int)W->dims[0];
	s->k = (int)k;
	s->s = (int)s_;
	s->p = (int)p;
	s->in_c = shape[0];
	s->rank = 3;
	s->shape[0] = s->out;
	s->shape[1] = (shape[1] + 2 * p - k) / s_ + 1;
	s->shape[2] = (shape[2] + 2 * p - k) / s_ + 1;
	s->nw = W->n;
	s->w = malloc((size_t)W->n * sizeof *s->w);
	s->b = calloc((size_t)s->out, sizeof *s->b);
	if (!s->w || !s->b)
		return fail(im, "out of memory");
	memcpy(s->w, W->v, (size_t)W->n * sizeof *s->w);
	for (int o = 0; o < s->out && B; o++)
		s->b[o] = B->v[o];
	if (from == -1 && fold_input(im, n, ni, s))
		return -1;
	set_output(im, n->output[0], im->ns - 1);
	return 0;
}

static int do_pool(imp *im, const Onnx__NodeProto *n, size_t ni)
{
	val *x;
	int rank;
	int64_t shape[3];
	int from = n->n_input ? operand(im, n, ni, n->input[0], &x, &rank, shape) : -2;
	if (from == -2)
		return n->n_input ? -1 : node_fail(im, n, ni, "has no input");
	if (rank != 3)
		return node_fail(im, n, ni, "pools a value of rank %d; lln's avgpool reads [C, H, W]", rank);
	if (from == -1 && !affine_is_scalar(im))
		return node_fail(im, n, ni, "pools the input after a normalisation that differs per feature");
	int64_t ks[2], st[2], pd[4];
	if (attr_ints(n, "kernel_shape", 2, 0, ks) || attr_ints(n, "strides", 2, 1, st) ||
	    attr_ints(n, "pads", 4, 0, pd))
		return node_fail(im, n, ni, "has attributes of the wrong length for 2-D pooling");
	for (int i = 0; i < 4; i++)
		if (pd[i] || x->pad[i])
			return node_fail(im, n, ni, "pads its input; lln's avgpool has no padding");
	if (ks[0] != ks[1] || ks[0] < 1)
		return node_fail(im, n, ni, "has a %lldx%lld kernel; lln's avgpool has square kernels",
		                 (long long)ks[0], (long long)ks[1]);
	if (st[0] != st[1] || st[0] < 1)
		return node_fail(im, n, ni, "has strides %lld, %lld; lln's avgpool has one stride", (long long)st[0],
		                 (long long)st[1]);
	if (ks[0] > shape[1] || ks[0] > shape[2])
		return node_fail(im, n, ni, "has a kernel larger than its input");
	int64_t oh = (shape[1] - ks[0]) / st[0] + 1, ow = (shape[2] - ks[0]) / st[0] + 1;
	if (attr_int(n, "ceil_mode", 0) && ((shape[1] - ks[0]) % st[0] || (shape[2] - ks[0]) % st[0]))
		return node_fail(im, n, ni, "has ceil_mode = 1 with a partial last window; lln's avgpool "
		                 "rounds down");
	stmt *s = new_stmt(im, OP_POOL, node_desc(n, ni));
	if (!s)
		return node_fail(im, n, ni, "the model has more than %d layers", MAX_STMTS);
	s->in[0] = from;
	s->k = (int)ks[0];
	s->s = (int)st[0];
	s->rank = 3;
	s->shape[0] = shape[0];
	s->shape[1] = oh;
	s->shape[2] = ow;
	set_output(im, n->output[0], im->ns - 1);
	return 0;
}

/* Broadcast index: the element of constant c that pairs with element i of
 * a value of `rank` dims `shape` (numpy rules, trailing dims aligned; a
 * leading batch dim of c must be 1). */
static int bcast(const tensor *c, int rank, const int64_t *shape, int64_t i, int64_t *out)
{
	int64_t idx[4] = { 0 };
	for (int d = rank - 1; d >= 0; d--) {
		idx[d] = i % shape[d];
		i /= shape[d];
	}
	int64_t k = 0;
	for (int d = 0; d < c->rank; d++) {
		int vd = d - (c->rank - rank);   /* the value's dim, -1: batch */
		int64_t cd = c->dims[d];
		if (vd < 0) {
			if (cd != 1)
				return -1;
			continue;
		}
		if (cd != 1 && cd != shape[vd])
			return -1;
		k = k * cd + (cd == 1 ? 0 : idx[vd]);
	}
	*out = k;
	return 0;
}

/* Sub, Add, Mul, Div: a constant applied to the input (the normalisation),
 * a constant added to an open layer's output (its bias), or, for Add, two
 * values added (a residual connection). */
static int do_arith(imp *im, const Onnx__NodeProto *n, size_t ni)
{
	if (n->n_input != 2 || n->n_output < 1)
		return node_fail(im, n, ni, "needs 2 inputs and an output");
	char op = n->op_type[0];
	const tensor *c0 = const_of(im, n->input[0]), *c1 = const_of(im, n->input[1]);
	if (c0 && c1)
		return node_fail(im, n, ni, "computes a constant from constants; export with constant folding");
	if (!c0 && !c1) {
		if (op != 'A')
			return node_fail(im, n, ni, "multiplies or divides two computed values; the network would "
			                 "not be piecewise linear");
		val *x, *y;
		int r0, r1;
		int64_t s0[3], s1[3];
		int f0 = operand(im, n, ni, n->input[0], &x, &r0, s0);
		if (f0 == -2)
			return -1;
		int f1 = operand(im, n, ni, n->input[1], &y, &r1, s1);
		if (f1 == -2)
			return -1;
		if (r0 != r1 || memcmp(s0, s1, (size_t)r0 * sizeof *s0))
			return node_fail(im, n, ni, "adds values of different shapes");
		if ((f0 == -1 || f1 == -1) && !affine_is_scalar(im))
			return node_fail(im, n, ni, "adds the input after a normalisation that differs per feature");
		if (f0 == -1 || f1 == -1)
			im->norm_used = im->norm_used || !affine_is_identity(im);
		stmt *s = new_stmt(im, OP_ADD, node_desc(n, ni));
		if (!s)
			return node_fail(im, n, ni, "the model has more than %d layers", MAX_STMTS);
		s->in[0] = f0;
		s->in[1] = f1;
		s->rank = r0;
		memcpy(s->shape, s0, sizeof s0);
		set_output(im, n->output[0], im->ns - 1);
		return 0;
	}
	const tensor *c = c0 ? c0 : c1;
	const char *vname = c0 ? n->input[1] : n->input[0];
	val *v = lookup(im, vname);
	if (!v || (v->kind != V_INPUT && v->kind != V_STMT))
		return node_fail(im, n, ni, "input '%s' is not computed by any earlier node", vname);
	if ((op == 'S' && c0) || (op == 'D' && c0))
		return node_fail(im, n, ni, "has the constant as its first operand; lln reads x %s c only",
		                 op == 'S' ? "-" : "/");
	if (v->kind == V_INPUT) {
		if (im->norm_used || v->flat || v->gen != im->gen || (v->pad[0] | v->pad[1] | v->pad[2] | v->pad[3]))
			return node_fail(im, n, ni, "changes the input after it was read, reshaped or padded");
		int64_t shape[3];
		memcpy(shape, im->in_shape, sizeof shape);
		for (int64_t i = 0; i < im->in_n; i++) {
			int64_t k;
			if (bcast(c, im->in_rank, shape, i, &k))
				return node_fail(im, n, ni, "has a constant of rank %d that does not broadcast to the input",
				                 c->rank);
			double x = c->v[k];
			if ((op == 'D' && x == 0) || (op == 'M' && x == 0))
				return node_fail(im, n, ni, "scales the input by zero");
			if (op == 'S')
				im->b[i] -= x;
			else if (op == 'A')
				im->b[i] += x;
			else {
				double f = op == 'M' ? x : 1 / x;
				im->a[i] *= f;
				im->b[i] *= f;
			}
		}
		add_val(im, n->output[0], V_INPUT)->gen = ++im->gen;
		return 0;
	}
	/* a bias added to an open layer's output (MatMul + Add) */
	stmt *s = open_stmt(im, vname);
	if (op != 'A' && op != 'S')
		return node_fail(im, n, ni, "scales a layer's output; only the input may be scaled");
	if (!s || (s->op != OP_DENSE && s->op != OP_CONV))
		return node_fail(im, n, ni, "adds a constant to a value that is not a Gemm, MatMul or Conv "
		                 "output read only here");
	int64_t per = s->op == OP_CONV ? s->shape[1] * s->shape[2] : 1, total = s->out * per;
	for (int64_t i = 0; i < total; i++) {
		int64_t k, k0;
		if (bcast(c, s->rank, s->shape, i, &k) || bcast(c, s->rank, s->shape, i - i % per, &k0) ||
		    c->v[k] != c->v[k0])
			return node_fail(im, n, ni, "adds a constant that is not one value per output channel");
	}
	for (int o = 0; o < s->out; o++) {
		int64_t k;
		bcast(c, s->rank, s->shape, o * per, &k);
		s->b[o] += op == 'A' ? c->v[k] : -c->v[k];
	}
	note_from(s, node_desc(n, ni));
	set_output(im, n->output[0], (int)(s - im->st));
	return 0;
}

static int do_batchnorm(imp *im, const Onnx__NodeProto *n, size_t ni)
{
	stmt *s = n->n_input == 5 ? open_stmt(im, n->input[0]) : NULL;
	if (!s || (s->op != OP_DENSE && s->op != OP_CONV))
		return node_fail(im, n, ni, "can be folded only into a Conv or Gemm whose output it alone reads");
	const tensor *g = const_of(im, n->input[1]), *be = const_of(im, n->input[2]),
	             *mu = const_of(im, n->input[3]), *var = const_of(im, n->input[4]);
	if (!g || !be || !mu || !var || g->n != s->out || be->n != s->out || mu->n != s->out || var->n != s->out)
		return node_fail(im, n, ni, "needs constant scale, bias, mean and variance of %d values", s->out);
	if (n->n_output > 1)
		return node_fail(im, n, ni, "is in training mode (it has running statistics outputs)");
	double eps = attr_float(n, "epsilon", 1e-5);
	int64_t per = s->nw / s->out;
	for (int o = 0; o < s->out; o++) {
		if (var->v[o] + eps <= 0)
			return node_fail(im, n, ni, "has variance + epsilon <= 0 in channel %d", o);
		double f = g->v[o] / sqrt(var->v[o] + eps);
		for (int64_t j = 0; j < per; j++)
			s->w[o * per + j] *= f;
		s->b[o] = (s->b[o] - mu->v[o]) * f + be->v[o];
	}
	note_from(s, node_desc(n, ni));
	set_output(im, n->output[0], (int)(s - im->st));
	return 0;
}

static int do_relu(imp *im, const Onnx__NodeProto *n, size_t ni)
{
	stmt *s = n->n_input == 1 ? open_stmt(im, n->input[0]) : NULL;
	if (!s || s->op == OP_POOL) {
		val *v = n->n_input == 1 ? lookup(im, n->input[0]) : NULL;
		return node_fail(im, n, ni, "%s", !v || v->kind != V_STMT || s
		                 ? "applies ReLU to a value that is not a Gemm, MatMul, Conv or Add output; "
		                   "lln's relu wraps one of those"
		                 : "applies ReLU to a layer output that other nodes read before the ReLU; lln "
		                   "names only the value after it");
	}
	s->relu = true;
	note_from(s, node_desc(n, ni));
	set_output(im, n->output[0], (int)(s - im->st));
	return 0;
}

/* Flatten, Reshape, Identity, Pad: the same values seen differently. */
static int do_alias(imp *im, const Onnx__NodeProto *n, size_t ni)
{
	const char *op = n->op_type;
	val *x = n->n_input ? lookup(im, n->input[0]) : NULL;
	if (!x || x->kind == V_NONE || n->n_output < 1)
		return node_fail(im, n, ni, "has no input computed by an earlier node");
	if (x->kind == V_CONST) {
		/* shape-only work on a constant: the values stay */
		if (strcmp(op, "Identity") != 0)
			return node_fail(im, n, ni, "reshapes a constant; export with constant folding");
		val *y = add_val(im, n->output[0], V_CONST);
		y->c = x->c;
		return 0;
	}
	val saved = *x;
	int rank = x->kind == V_INPUT ? im->in_rank : im->st[x->stmt].rank;
	const int64_t *shape = x->kind == V_INPUT ? im->in_shape : im->st[x->stmt].shape;
	int64_t total = rank == 3 ? shape[0] * shape[1] * shape[2] : shape[0];
	if (!strcmp(op, "Flatten")) {
		if (attr_int(n, "axis", 1) != 1)
			return node_fail(im, n, ni, "flattens from axis %lld; lln flattens everything but the batch",
			                 (long long)attr_int(n, "axis", 1));
		saved.flat = true;
	} else if (!strcmp(op, "Reshape")) {
		const tensor *t = n->n_input > 1 ? const_of(im, n->input[1]) : NULL;
		if (!t)
			return node_fail(im, n, ni, "needs a constant shape");
		bool ok = (t->n == 2 && (t->v[0] == 1 || t->v[0] == -1 || t->v[0] == 0) &&
		           (t->v[1] == -1 || t->v[1] == (double)total)) ||
		          (t->n == 1 && (t->v[0] == -1 || t->v[0] == (double)total));
		if (!ok)
			return node_fail(im, n, ni, "reshapes to something other than [batch, %lld]; lln reshapes "
			                 "only by flattening", (long long)total);
		saved.flat = true;
	} else if (!strcmp(op, "Pad")) {
		const Onnx__AttributeProto *mode = attr(n, "mode");
		if (mode && mode->has_s && !(mode->s.len == 8 && !memcmp(mode->s.data, "constant", 8)))
			return node_fail(im, n, ni, "pads with mode %.*s; only zero padding is supported",
			                 (int)mode->s.len, mode->s.data);
		int64_t p[8] = { 0 };
		const tensor *pt = n->n_input > 1 ? const_of(im, n->input[1]) : NULL;
		const Onnx__AttributeProto *pa = attr(n, "pads");
		if (im->opset >= 11 ? !pt || pt->n != 8 : !pa || pa->n_ints != 8)
			return node_fail(im, n, ni, "needs 8 constant pads (N, C, H, W at both ends)");
		for (int i = 0; i < 8; i++) {
			/* a float outside int64's range would not convert */
			if (im->opset >= 11 && !(fabs(pt->v[i]) < 1e15))
				return node_fail(im, n, ni, "has a pad of %g, out of range", pt->v[i]);
			p[i] = im->opset >= 11 ? (int64_t)pt->v[i] : pa->ints[i];
		}
		const tensor *cv = n->n_input > 2 && n->input[2][0] ? const_of(im, n->input[2]) : NULL;
		double value = im->opset >= 11 ? (cv && cv->n ? cv->v[0] : 0) : attr_float(n, "value", 0);
		if (n->n_input > 2 && n->input[2][0] && !cv)
			return node_fail(im, n, ni, "needs a constant padding value");
		if (value != 0)
			return node_fail(im, n, ni, "pads with %g; only zero padding is supported", value);
		if (p[0] || p[1] || p[4] || p[5] || rank != 3 || x->flat)
			return node_fail(im, n, ni, "pads other than the height and width of an image");
		for (int i = 0; i < 8; i++)
			if (p[i] < 0)
				return node_fail(im, n, ni, "has negative pads (cropping)");
		if (x->kind == V_INPUT && !affine_is_identity(im) && p[2] + p[3] + p[6] + p[7])
			return node_fail(im, n, ni, "pads the normalised input; the padding would not be zero in "
			                 "the units lln normalises in");
		saved.pad[0] += p[2];
		saved.pad[1] += p[3];
		saved.pad[2] += p[6];
		saved.pad[3] += p[7];
	} else if (strcmp(op, "Identity") != 0 && strcmp(op, "Dropout") != 0) {
		return node_fail(im, n, ni, "internal error: not an alias");
	}
	val *y = add_val(im, n->output[0], saved.kind);
	int uses = y->uses;
	const char *name = y->name;
	*y = saved;
	y->uses = uses;
	y->name = name;
	/* The layer stays open to folding only if this node was its only reader. */
	if (saved.kind == V_STMT && saved.uses != 1)
		y->uses = uses + 1;
	if (saved.kind == V_STMT)
		note_from(&im->st[saved.stmt], node_desc(n, ni));
	return 0;
}

static int do_constant(imp *im, const Onnx__NodeProto *n, size_t ni)
{
	const Onnx__AttributeProto *a = attr(n, "value");
	if (n->n_output < 1)
		return node_fail(im, n, ni, "has no output");
	tensor *t = NULL;
	if (a && a->t) {
		t = read_tensor(im, a->t, node_desc(n, ni));
		if (!t)
			return -1;
	} else if ((a = attr(n, "value_float")) && a->has_f) {
		if (!(t = new_tensor(im, 0, NULL)))
			return fail(im, "out of memory");
		t->v[0] = a->f;
	} else if ((a = attr(n, "value_floats")) || (a = attr(n, "value_ints"))) {
		int64_t len = (int64_t)(a->n_floats ? a->n_floats : a->n_ints);
		if (!(t = new_tensor(im, 1, &len)))
			return fail(im, "out of memory");
		for (int64_t i = 0; i < len; i++)
			t->v[i] = a->n_floats ? a->floats[i] : (double)a->ints[i];
	} else if ((a = attr(n, "value_int")) && a->has_i) {
		if (!(t = new_tensor(im, 0, NULL)))
			return fail(im, "out of memory");
		t->v[0] = (double)a->i;
	} else {
		return node_fail(im, n, ni, "has no value lln can read");
	}
	add_val(im, n->output[0], V_CONST)->c = t;
	return 0;
}

/* ------------------------------------------------------------------------
 * The graph
 * ---------------------------------------------------------------------- */

static int check_model(imp *im)
{
	Onnx__ModelProto *m = im->m;
	im->opset = 0;
	for (size_t i = 0; i < m->n_opset_import; i++) {
		const Onnx__OperatorSetIdProto *o = m->opset_import[i];
		if (o && (!o->domain || !o->domain[0] || !strcmp(o->domain, "ai.onnx")) && o->has_version)
			im->opset = o->version;
	}
	if (im->opset < 7 || im->opset > 20)
		return fail(im, "ONNX opset %lld is not supported (7 to 20 are)", (long long)im->opset);
	if (!m->graph)
		return fail(im, "the model has no graph");
	return 0;
}

static int check_names(imp *im, const Onnx__NodeProto *n, size_t i)
{
	if (!n->op_type)
		return node_fail(im, n, i, "has no operator");
	if (n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx"))
		return node_fail(im, n, i, "is from operator domain '%s'; only the standard one is supported",
		                 n->domain);
	for (size_t k = 0; k < n->n_input; k++)
		if (!n->input[k])
			return node_fail(im, n, i, "has an unnamed input");
	if (n->n_output < 1)
		return node_fail(im, n, i, "has no output");
	for (size_t k = 0; k < n->n_output; k++)
		if (!n->output[k] || !n->output[k][0])
			return node_fail(im, n, i, "has an unnamed output");
	return 0;
}

/* The graph input: the one input that is not an initializer, with a
 * batch dimension of 1 or symbolic dropped; [D] or [C, H, W] after it. */
static int read_input(imp *im, const char **name)
{
	const Onnx__GraphProto *g = im->m->graph;
	const Onnx__ValueInfoProto *in = NULL;
	for (size_t i = 0; i < g->n_input; i++) {
		const Onnx__ValueInfoProto *vi = g->input[i];
		if (!vi || !vi->name)
			return fail(im, "graph input %zu has no name", i);
		val *v = lookup(im, vi->name);
		if (v && v->kind == V_CONST)
			continue;   /* an initializer listed as an input, as older exporters do */
		if (in)
			return fail(im, "the graph has inputs '%s' and '%s'; lln models have one", in->name, vi->name);
		in = vi;
	}
	if (!in)
		return fail(im, "the graph has no input");
	const Onnx__TypeProto *t = in->type;
	if (!t || t->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !t->tensor_type ||
	    !t->tensor_type->shape)
		return fail(im, "input '%s' is not a tensor of known rank", in->name);
	if (t->tensor_type->has_elem_type && t->tensor_type->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT &&
	    t->tensor_type->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE)
		return fail(im, "input '%s' is not a float tensor", in->name);
	const Onnx__TensorShapeProto *s = t->tensor_type->shape;
	if (s->n_dim != 2 && s->n_dim != 4)
		return fail(im, "input '%s' has rank %zu; lln reads [batch, D] or [batch, C, H, W]", in->name, s->n_dim);
	for (size_t d = 0; d < s->n_dim; d++) {
		const Onnx__TensorShapeProto__Dimension *dm = s->dim[d];
		bool known = dm && dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
		if (d == 0) {
			if (known && dm->dim_value != 1)
				return fail(im, "input '%s' has a batch dimension of %lld; lln reads one example at a "
				            "time (batch 1 or symbolic)", in->name, (long long)dm->dim_value);
			continue;
		}
		if (!known || dm->dim_value < 1 || dm->dim_value > (1 << 24))
			return fail(im, "input '%s' has a dynamic or invalid dimension %zu", in->name, d);
		im->in_shape[d - 1] = dm->dim_value;
	}
	im->in_rank = (int)s->n_dim - 1;
	im->in_n = 1;
	for (int d = 0; d < im->in_rank; d++)
		im->in_n *= im->in_shape[d];
	if (im->in_n > (1 << 24))
		return fail(im, "input '%s' is too large", in->name);
	im->a = malloc((size_t)im->in_n * sizeof *im->a);
	im->b = calloc((size_t)im->in_n, sizeof *im->b);
	if (!im->a || !im->b)
		return fail(im, "out of memory");
	for (int64_t i = 0; i < im->in_n; i++)
		im->a[i] = 1;
	*name = in->name;
	return 0;
}

static int walk(imp *im, const char **out_name)
{
	const Onnx__GraphProto *g = im->m->graph;
	size_t cap = g->n_initializer + g->n_input + g->n_output + 1;
	for (size_t i = 0; i < g->n_node; i++)
		cap += g->node[i] ? g->node[i]->n_output : 0;
	im->v = calloc(cap, sizeof *im->v);
	if (!im->v)
		return fail(im, "out of memory");
	for (size_t i = 0; i < g->n_initializer; i++) {
		const Onnx__TensorProto *tp = g->initializer[i];
		if (!tp || !tp->name)
			return fail(im, "initializer %zu has no name", i);
		char what[160];
		snprintf(what, sizeof what, "initializer '%.100s'", tp->name);
		tensor *t = read_tensor(im, tp, what);
		if (!t)
			return -1;
		add_val(im, tp->name, V_CONST)->c = t;
	}
	const char *in = NULL;
	if (read_input(im, &in))
		return -1;
	add_val(im, in, V_INPUT);
	/* readers of every value, to know which layers can still be folded */
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (!n)
			return fail(im, "node %zu is empty", i);
		if (check_names(im, n, i))
			return -1;
		for (size_t k = 0; k < n->n_output; k++)
			if (!lookup(im, n->output[k]))
				add_val(im, n->output[k], V_NONE);
	}
	if (g->n_output != 1 || !g->output[0] || !g->output[0]->name)
		return fail(im, "the graph has %zu outputs; lln models have one", g->n_output);
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t k = 0; k < g->node[i]->n_input; k++) {
			val *v = lookup(im, g->node[i]->input[k]);
			if (v)
				v->uses++;
		}
	val *ov = lookup(im, g->output[0]->name);
	if (ov)
		ov->uses++;
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		const char *op = n->op_type;
		int rc;
		if (!strcmp(op, "Gemm") || !strcmp(op, "MatMul"))
			rc = do_gemm(im, n, i, op[0] == 'M');
		else if (!strcmp(op, "Conv"))
			rc = do_conv(im, n, i);
		else if (!strcmp(op, "AveragePool"))
			rc = do_pool(im, n, i);
		else if (!strcmp(op, "Add") || !strcmp(op, "Sub") || !strcmp(op, "Mul") || !strcmp(op, "Div"))
			rc = do_arith(im, n, i);
		else if (!strcmp(op, "BatchNormalization"))
			rc = do_batchnorm(im, n, i);
		else if (!strcmp(op, "Relu"))
			rc = do_relu(im, n, i);
		else if (!strcmp(op, "Flatten") || !strcmp(op, "Reshape") || !strcmp(op, "Identity") ||
		         !strcmp(op, "Pad") || !strcmp(op, "Dropout"))
			rc = do_alias(im, n, i);
		else if (!strcmp(op, "Constant"))
			rc = do_constant(im, n, i);
		else
			rc = node_fail(im, n, i, "lln has no such operation (it takes Gemm, MatMul, Add, Sub, Mul, "
			               "Div, Relu, Conv, AveragePool, BatchNormalization after a layer, Pad, "
			               "Flatten, Reshape, Identity, Constant)");
		if (rc)
			return -1;
	}
	if (!ov || ov->kind != V_STMT)
		return fail(im, "the graph output '%s' is not computed by a layer", g->output[0]->name);
	const stmt *last = &im->st[ov->stmt];
	if (last->rank != 1 && !ov->flat)
		return fail(im, "the graph output '%s' has shape [%lld, %lld, %lld]; lln's output is a vector "
		            "of logits (end with a Gemm)", g->output[0]->name, (long long)last->shape[0],
		            (long long)last->shape[1], (long long)last->shape[2]);
	for (int64_t i = 0; i < im->in_n; i++)
		if (!isfinite(im->a[i]) || !isfinite(im->b[i]))
			return fail(im, "the input normalisation is not finite");
	if (!im->norm_used && !affine_is_identity(im) && im->a[0] <= 0)
		return fail(im, "the input normalisation has a negative scale; normalize needs std > 0");
	*out_name = im->st[ov->stmt].name;
	return 0;
}

/* ------------------------------------------------------------------------
 * Output
 * ---------------------------------------------------------------------- */

static const char *operand_name(const imp *im, int k)
{
	return k < 0 ? "x" : im->st[k].name;
}

/* The comment's node list, with anything but printable ASCII replaced so
 * that a hostile node name cannot end the comment line. */
static void put_safe(FILE *f, const char *s, size_t max)
{
	for (size_t i = 0; s[i] && i < max; i++)
		fputc(s[i] >= 32 && s[i] < 127 ? s[i] : '?', f);
}

static void put_comment(FILE *f, const char *s)
{
	fputs("  # ", f);
	put_safe(f, s, SIZE_MAX);
	fputc('\n', f);
}

/* The shortest decimal that reads back as the same float32. */
static void put_float(FILE *f, double x)
{
	float want = (float)x;
	char buf[32];
	for (int prec = 6; prec <= 9; prec++) {
		snprintf(buf, sizeof buf, "%.*g", prec, (double)want);
		if (strtof(buf, NULL) == want)
			break;
	}
	fputs(buf, f);
}

static char *lln_text(imp *im, const char *model, const char *out, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);
	if (!f)
		return NULL;
	const char *src = strrchr(im->path, '/') ? strrchr(im->path, '/') + 1 : im->path;
	fprintf(f, "# %s: imported from ", model);
	put_safe(f, src, 200);
	fprintf(f, "\n# by llnc import (ONNX opset %lld", (long long)im->opset);
	if (im->m->producer_name && im->m->producer_name[0]) {
		fputs(", producer ", f);
		put_safe(f, im->m->producer_name, 60);
	}
	fputs(").  Inputs and radii are in the ONNX input's units.\n", f);
	fprintf(f, "model %s {\n  input x[", model);
	for (int d = 0; d < im->in_rank; d++)
		fprintf(f, "%s%lld", d ? ", " : "", (long long)im->in_shape[d]);
	fputc(']', f);
	if (!im->norm_used && !affine_is_identity(im)) {
		fputs(" normalize(", f);
		put_float(f, -im->b[0] / im->a[0]);
		fputs(", ", f);
		put_float(f, 1 / im->a[0]);
		fputc(')', f);
	}
	fputs(";\n", f);
	for (int i = 0; i < im->ns; i++) {
		const stmt *s = &im->st[i];
		put_comment(f, s->from);
		fprintf(f, "  %s = %s", s->name, s->relu ? "relu(" : "");
		switch (s->op) {
		case OP_DENSE:
			fprintf(f, "dense(%s, %d)", operand_name(im, s->in[0]), s->out);
			break;
		case OP_CONV:
			fprintf(f, "conv2d(%s, %d, kernel = %d, stride = %d, padding = %d)", operand_name(im, s->in[0]),
			        s->out, s->k, s->s, s->p);
			break;
		case OP_POOL:
			fprintf(f, "avgpool(%s, kernel = %d, stride = %d)", operand_name(im, s->in[0]), s->k, s->s);
			break;
		default:
			fprintf(f, "add(%s, %s)", operand_name(im, s->in[0]), operand_name(im, s->in[1]));
		}
		fprintf(f, "%s;\n", s->relu ? ")" : "");
	}
	fprintf(f, "  output %s;\n}\n", out);
	const stmt *last = NULL;
	for (int i = 0; i < im->ns; i++)
		if (!strcmp(im->st[i].name, out))
			last = &im->st[i];
	if (last && last->rank == 1 && last->shape[0] == 1)
		fputs("\nobjective {\n  loss = sigmoid_cross_entropy;\n}\n", f);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static int save_weights(imp *im, const char *path)
{
	int nt = 0;
	int64_t total = 0;
	for (int i = 0; i < im->ns; i++)
		if (im->st[i].op == OP_DENSE || im->st[i].op == OP_CONV) {
			nt += 2;
			total += im->st[i].nw + im->st[i].out;
		}
	rt_tensor *t = calloc((size_t)(nt ? nt : 1), sizeof *t);
	char (*names)[40] = calloc((size_t)(nt ? nt : 1), sizeof *names);
	float *P = calloc((size_t)(total ? total : 1), sizeof *P);
	if (!t || !names || !P) {
		free(t);
		free(names);
		free(P);
		return fail(im, "out of memory");
	}
	int k = 0;
	int64_t off = 0;
	for (int i = 0; i < im->ns; i++) {
		const stmt *s = &im->st[i];
		if (s->op != OP_DENSE && s->op != OP_CONV)
			continue;
		for (int j = 0; j < 2; j++, k++) {
			snprintf(names[k], sizeof names[k], "%s.%s", s->name, j ? "bias" : "weight");
			rt_tensor *T = &t[k];
			T->name = names[k];
			T->is_bias = j;
			T->offset = off;
			T->count = j ? s->out : s->nw;
			T->rank = j ? 1 : s->op == OP_DENSE ? 2 : 4;
			T->shape[0] = s->out;
			if (!j && s->op == OP_DENSE)
				T->shape[1] = (int32_t)s->in_c;
			if (!j && s->op == OP_CONV) {
				T->shape[1] = (int32_t)s->in_c;
				T->shape[2] = T->shape[3] = s->k;
			}
			const double *src = j ? s->b : s->w;
			for (int64_t e = 0; e < T->count; e++) {
				P[off + e] = (float)src[e];
				if (!isfinite(P[off + e])) {
					int rc = fail(im, "tensor '%s' value %lld is out of float32 range after folding",
					              names[k], (long long)(e + 1));
					free(t);
					free(names);
					free(P);
					return rc;
				}
			}
			off += T->count;
		}
	}
	const char *src = strrchr(im->path, '/') ? strrchr(im->path, '/') + 1 : im->path;
	const char *meta[] = { "format", "pt", "source", src, NULL };
	char err[RT_ERRLEN];
	int rc = rt_params_save(t, nt, P, NULL, 0, NULL, meta, path, err);
	if (rc)
		snprintf(im->err, RT_ERRLEN, "%s", err);
	free(t);
	free(names);
	free(P);
	return rc;
}

static void imp_free(imp *im)
{
	for (int i = 0; i < im->ns; i++) {
		free(im->st[i].w);
		free(im->st[i].b);
	}
	for (int i = 0; i < im->nconsts; i++) {
		free(im->consts[i]->v);
		free(im->consts[i]);
	}
	free(im->v);
	free(im->a);
	free(im->b);
	if (im->m)
		onnx__model_proto__free_unpacked(im->m, NULL);
}

/* The model's name: OUT's file name as an identifier. */
static void model_name(const char *out, char *name, size_t cap)
{
	const char *base = strrchr(out, '/') ? strrchr(out, '/') + 1 : out;
	size_t k = 0;
	if (!(base[0] >= 'a' && base[0] <= 'z') && !(base[0] >= 'A' && base[0] <= 'Z') && base[0] != '_')
		name[k++] = 'm';
	for (; *base && k + 1 < cap; base++) {
		char c = *base;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
		name[k++] = ok ? c : '_';
	}
	name[k] = 0;
}

int onnx_import_buffer(const char *path, const uint8_t *data, size_t len, const char *out, char *err)
{
	imp *im = calloc(1, sizeof *im);
	if (!im)
		return rt_fail(err, "%s: out of memory", path);
	im->path = path;
	im->err = err;
	int rc = -1;
	im->m = onnx__model_proto__unpack(NULL, len, data);
	const char *out_name = NULL;
	if (!im->m) {
		fail(im, "not an ONNX model (the protobuf does not parse)");
	} else if (!check_model(im) && !walk(im, &out_name)) {
		rc = 0;
		if (out) {
			char lpath[4096], wpath[4096], name[64];
			snprintf(lpath, sizeof lpath, "%s.lln", out);
			snprintf(wpath, sizeof wpath, "%s.safetensors", out);
			model_name(out, name, sizeof name);
			size_t tl = 0;
			char *text = lln_text(im, name, out_name, &tl);
			if (!text)
				rc = fail(im, "out of memory");
			/* weights first: a .lln without its weights is the less useful half */
			if (!rc)
				rc = save_weights(im, wpath);
			if (!rc && rt_write_atomic(lpath, text, tl, err))
				rc = -1;
			free(text);
		}
	}
	imp_free(im);
	free(im);
	return rc;
}

int onnx_import_main(int argc, char **argv)
{
	const char *in = NULL, *out = NULL;
	static const rt_flag flags[] = { { "help", false, 0 }, { "-h", false, 0 }, { "-o", true, 1 } };
	rt_flags fl;
	rt_flags_init(&fl, flags, 3, argc, argv);
	int rc = -1;   /* exit now with this status */
	for (int id; rc < 0 && (id = rt_flags_next(&fl)) != RT_FLAG_END;) {
		if (id == RT_FLAG_ERROR) {
			rc = 2;
		} else if (id == 0) {
			printf("usage: %s NET.onnx -o OUT\n"
			       "\n"
			       "Writes OUT.lln (the network as an lln model, commented with the ONNX nodes\n"
			       "each statement comes from) and OUT.safetensors (its weights), so that\n"
			       "'llnc build OUT.lln --certifier --weights OUT.safetensors' certifies the\n"
			       "ONNX network in its own input units.  Operators, folding rules and what is\n"
			       "refused: docs/formats.md.\n", argv[0]);
			rc = 0;
		} else if (id == 1) {
			out = fl.value;
		} else if (!in) {
			in = fl.value;
		} else {
			rc = rt_cmd_fail(argv[0], 2, "unexpected argument '%s' (see --help)", fl.value);
		}
	}
	rt_flags_done(&fl);
	if (rc >= 0)
		return rc;
	if (!in || !out)
		return rt_cmd_fail(argv[0], 2, "give NET.onnx and -o OUT (see --help)");
	FILE *f = fopen(in, "rb");
	if (!f)
		return rt_cmd_fail(argv[0], 1, "%s: cannot read: %s", in, strerror(errno));
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : 1 << 16;
			uint8_t *nb = cap > ((size_t)1 << 31) ? NULL : realloc(buf, cap);
			if (!nb) {
				free(buf);
				fclose(f);
				return rt_cmd_fail(argv[0], 1, "%s: too large (ONNX files of more than 2 GB are not supported)", in);
			}
			buf = nb;
		}
		size_t got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	int bad = ferror(f);
	fclose(f);
	if (bad) {
		free(buf);
		return rt_cmd_fail(argv[0], 1, "%s: cannot read: %s", in, strerror(errno ? errno : EIO));
	}
	char err[RT_ERRLEN];
	rc = onnx_import_buffer(in, buf, len, out, err);
	free(buf);
	if (rc)
		fprintf(stderr, "%s\n", err);
	return rc ? 1 : 0;
}
