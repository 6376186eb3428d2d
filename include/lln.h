/* lln.h: liblln, lln as a library.
 *
 * The compiler and runtime behind `llnc` in one shared library (liblln.so),
 * for programs and for the Python module (python/lln.py) that wraps it:
 *
 *   lln_model *m = lln_compile("examples/mnist_fc.lln");   // JIT, this CPU
 *   lln_load_weights(m, "w.safetensors");                  // PyTorch names
 *   lln_certify(m, x, n, LLN_L2, 0, &out);                 // radii per input
 *   lln_free(m);
 *
 * A model is compiled from a .lln file or text (docs/language.md) into
 * native kernels in process, as `llnc train` and `llnc certify` do; it owns
 * its parameters, a vector of lln_n_params floats laid out tensor by tensor
 * under PyTorch's state_dict names and shapes.  Certification runs the very
 * code of a certifier built by `llnc build --certifier` for this machine,
 * so the numbers are those the certifier prints for the same float32 inputs
 * (docs/library.md; tests/test_lib.c checks it).
 *
 * Inputs are raw (before the model's normalize), float32, one example per
 * row of lln_n_inputs values (C order for images [C, H, W]); every radius
 * is in raw input units and sound for the float32 input as given.
 *
 * Errors: functions returning int give 0 on success and -1 on failure, and
 * functions returning a pointer give NULL; lln_error() then holds the
 * message ("FILE:LINE:COL: error: ..." for a .lln source, "FILE: ..." for
 * weights and data), per thread.  A model may be used by one thread at a
 * time; lln_certify and lln_evaluate spread their work over `threads`
 * threads themselves (0: every core).
 */
#ifndef LLN_H
#define LLN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LLN_VERSION 1   /* of this interface; lln_version() is the library's */

/* Norms, as a bit set. */
enum { LLN_L1 = 1, LLN_L2 = 2, LLN_LINF = 4, LLN_ALL_NORMS = 7 };

typedef struct lln_model lln_model;

int lln_version(void);
/* The message of the last failure of a liblln call in this thread. */
const char *lln_error(void);

/* ---- models ---- */

/* Compiles a .lln file (every diagnostic of the source goes into
 * lln_error), or .lln text under the file name `name` for messages.  The
 * parameters start at the model's deterministic initialisation (the train
 * block's seed and init scheme, as `llnc init`). */
lln_model *lln_compile(const char *path);
lln_model *lln_compile_text(const char *name, const char *text);
void lln_free(lln_model *m);

const char *lln_name(const lln_model *m);
int lln_n_inputs(const lln_model *m);    /* flattened input size */
int lln_n_outputs(const lln_model *m);   /* logits; 1: binary, class 1 when positive */
int lln_n_hidden(const lln_model *m);    /* hidden neurons (ReLU units) */
int64_t lln_n_params(const lln_model *m);

/* Hidden layers in order; neurons are numbered globally, layer by layer. */
int lln_n_layers(const lln_model *m);
const char *lln_layer_name(const lln_model *m, int layer);
int lln_layer_size(const lln_model *m, int layer);
/* The layer holding global neuron h (-1 if none), and h's index in it. */
int lln_layer_of(const lln_model *m, int32_t h, int32_t *index);

/* Parameter tensors: PyTorch state_dict names ("fc1.weight") and shapes. */
int lln_n_tensors(const lln_model *m);
const char *lln_tensor_name(const lln_model *m, int tensor);
/* Its rank; shape[0..rank) receives the dimensions (shape has room for 4). */
int lln_tensor_shape(const lln_model *m, int tensor, int64_t shape[4]);

/* ---- weights ---- */

/* The parameter vector itself (lln_n_params floats), to read or write; the
 * pointer stays valid until lln_free (loads and training write into it). */
float *lln_params(lln_model *m);
/* From a safetensors file (a PyTorch state_dict saved with
 * safetensors.torch.save_file); float64/float16/bfloat16 are converted.
 * strip_prefix (may be NULL) is removed from every name first, as
 * --strip-prefix.  Every tensor must be present with its shape. */
int lln_load_weights(lln_model *m, const char *path, const char *strip_prefix);
int lln_save_weights(const lln_model *m, const char *path);
/* One tensor by name, count floats in C order (its shape's product). */
int lln_set_tensor(lln_model *m, const char *name, const float *data, int64_t count);

/* ---- certification ---- */

/* Per input i (arrays of n, or n x 3 norm-major within a row: [i * 3 + p]
 * with p = 0, 1, 2 for l1, l2, linf).  Any pointer may be NULL. */
typedef struct lln_certificates {
	int32_t *pred;       /* predicted class */
	float *eps;          /* margin of the activation region (inf: no neuron binds) */
	float *eps_pred;     /* radius within which the prediction is certified too */
	int32_t *bind;       /* binding neuron of eps, global index (-1: none) */
	uint64_t *pattern;   /* 64-bit hash of the activation pattern, as the certifier's */
	int32_t *undecided;  /* neurons within rounding error of 0 (then every radius 0) */
} lln_certificates;

/* Certifies x (n x lln_n_inputs floats) in the norms of the bit set
 * `norms`; the radii of the other norms are NaN. */
int lln_certify(const lln_model *m, const float *x, int64_t n, int norms, int threads,
                lln_certificates *out);

/* ---- evaluation and training ---- */

typedef struct lln_evaluation {
	int64_t n;
	double accuracy, loss, ce;     /* loss: the .lln file's objective */
	double eps_pct[3][4];          /* P25, P50, P75, P100 of eps_1, eps_2, eps_inf (NaN if not asked) */
	int64_t patterns, jacobians;   /* distinct activation patterns and logit Jacobians */
} lln_evaluation;

/* As `llnc eval` over x (n x lln_n_inputs) with labels y (classes
 * 0..n_outputs-1; 0 or 1 for one logit). */
int lln_evaluate(const lln_model *m, const float *x, const int32_t *y, int64_t n, int norms, int threads,
                 lln_evaluation *out);

/* Trains as `llnc train FILE.lln ARGS...` does, with the file's objective
 * and train blocks as defaults, argv[0..argc) the flags after FILE
 * (docs/training.md; "-o OUT.safetensors" is required and "--data FILE"
 * unless the file names its data); progress goes to standard error.  On
 * success the model's parameters become the trained weights (those of
 * OUT).  Returns 0, or -1 with llnc train's exit status in lln_error. */
int lln_train(lln_model *m, int argc, const char *const *argv);

/* ---- data ---- */

/* A data set read from a file: n examples of dim floats, and labels. */
typedef struct lln_data {
	int64_t n, dim;
	float *x;      /* n x dim */
	int32_t *y;    /* n labels, or NULL */
} lln_data;

/* Reads examples as the certifier does (CSV, .npy, IDX with bytes scaled
 * to [0, 1]; docs/formats.md), dim values each (0: the file's).  With
 * `labels`, a CSV file whose records have dim + 1 values holds a label
 * first, into y (dim must be given). */
int lln_read_data(const char *path, int64_t dim, int labels, lln_data *out);
/* Labels alone (into y; x NULL, dim 0) from an IDX label file, .npy or CSV
 * of one integer a line. */
int lln_read_labels(const char *path, lln_data *out);
void lln_data_free(lln_data *d);

#ifdef __cplusplus
}
#endif

#endif
