/* rt.h: map of the lln runtime.
 *
 * The runtime is the C code that runs around the kernels llnc generates: the
 * model descriptor those kernels export, the readers and writers for weights
 * and data, batch certification across threads, and the statistics reported
 * over a data set.  It is linked into llnc itself (for in-process work) and
 * into every standalone certifier, so everything except the safetensors
 * section depends on nothing beyond libc, libm and pthreads.
 *
 * Errors: functions that can fail on user input return 0 on success and -1 on
 * failure, with a message of the form "FILE: record N: what is wrong" (or
 * "FILE: what is wrong") written into a caller buffer of RT_ERRLEN bytes.
 */
#ifndef LLN_RT_H
#define LLN_RT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define RT_ERRLEN 512

/* ------------------------------------------------------------------------
 * Model descriptor: the ABI between generated code and the runtime.
 *
 * llnc emits one global `lln_model` of this layout (and, for certifiers, a
 * global `lln_weights` holding the parameters).  Every kernel is specialised
 * to the model's shapes; P is the flat parameter vector laid out by the
 * tensor table.  Inputs x are raw (before normalize); gradients, margins and
 * radii are all reported in raw input units.
 * ---------------------------------------------------------------------- */
#define RT_ABI_VERSION 10

enum { RT_L1 = 0, RT_L2 = 1, RT_LINF = 2, RT_NNORMS = 3 };
#define RT_NORM_BIT(p) (1 << (p))
#define RT_ALL_NORMS (RT_NORM_BIT(RT_L1) | RT_NORM_BIT(RT_L2) | RT_NORM_BIT(RT_LINF))
/* With the norms, to certify: form every gradient row, pruning none (the
 * certificate is the same bit for bit; tests compare). */
#define RT_NO_PRUNE (1 << 4)

typedef struct rt_tensor {
	const char *name;  /* PyTorch state_dict name, e.g. "fc1.weight" */
	int32_t rank;
	int32_t shape[4];
	int64_t offset;    /* first float in P */
	int64_t count;     /* product of shape */
	int32_t fan_in;    /* for initialisation */
	int32_t is_bias;
} rt_tensor;

typedef struct rt_layer {  /* one hidden layer: a block of neurons followed by ReLU */
	const char *name;
	int32_t size;
	int32_t offset;        /* index of its first neuron in the z vector */
	int32_t c, h, w;       /* an image layer's channels, rows, columns (C-major); 0 for vectors;
	                          a sequence layer (rnn) has c = h = 0 and w units per time step */
} rt_layer;

typedef struct rt_cert {
	int32_t label;              /* predicted class (binary: 1 if logit > 0) */
	float eps[RT_NNORMS];       /* margins eps_1, eps_2, eps_inf (inf if none binds) */
	int32_t bind[RT_NNORMS];    /* global neuron index of the binding neuron, -1 if none */
	float eps_pred[RT_NNORMS];  /* radius within which the prediction is certified too */
	int32_t undecided;          /* hidden neurons whose sign is within rounding error of
	                             * 0 (then every radius is 0); 0 normally */
} rt_cert;

typedef struct rt_model {
	int32_t abi;
	const char *name;
	int32_t n_in;         /* flattened input size D */
	int32_t n_out;        /* logits */
	int32_t n_hidden;     /* hidden neurons H (length of z) */
	int32_t n_layers;
	int32_t n_tensors;
	int32_t samples;      /* approximate ROLL: train_forward's sq from K sampled
	                       * input axes (`axes`), 0: from all of them */
	int32_t max_len;      /* input x[*, F]: a sequence of L frames (1 <= L <=
	                       * max_len) is given as n_in = max_len x F values with
	                       * its frames last (left-padded), and L in the first
	                       * int32 of ws (rt_seq_begin); 0 for a fixed input */
	int32_t frame;        /* F, the values per frame (max_len > 0) */
	int64_t n_params;
	int64_t ws_floats;    /* per-example workspace needed by grads/certify/direction */
	int64_t pre_floats;   /* per-parameter-vector buffer filled by prepare */
	int64_t grad_floats;  /* gradient buffer: n_params, then per-batch accumulators */
	int64_t logit_jac_off;/* after certify: ws offset of the n_out x n_in logit
	                       * Jacobian (normalized coordinates); -1 when it is a
	                       * weight tensor (no hidden layer), constant across inputs */
	double mean, std;     /* normalize(mean, std), the source's decimals correctly
	                       * rounded; 0 and 1 when absent */
	const rt_layer *layers;
	const rt_tensor *tensors;
	/* once per parameter vector: quantities that do not depend on the input */
	void (*prepare)(const float *P, float *pre);
	/* z (n_hidden pre-activations) and logits (n_out) for one raw input,
	 * accumulated in double precision */
	void (*forward)(const float *P, const float *x, float *ws, float *z, float *logits);
	/* G (n_hidden x n_in, row-major): row h is d z_h / d x_raw, masks from z */
	void (*grads)(const float *P, const float *z, float *G, float *ws);
	/* forward + margins for the norms in the bit set `norms`, sound for the
	 * point x + xlo (xlo may be NULL: the point x), computed in double:
	 * every radius r satisfies r ||g_h||_q <= |z_h| in exact arithmetic
	 * (docs/reliability.md) */
	void (*certify)(const float *P, const float *pre, const float *x, int32_t norms,
	                float *ws, float *z, float *logits, rt_cert *out, const float *xlo);
	/* directional margin: largest t with x + xlo + t d in the activation
	 * region of x + xlo, as sound as certify's radii */
	void (*direction)(const float *P, const float *x, const float *d, float *ws,
	                  float *t, int32_t *bind, const float *xlo);
	/* g (n_in doubles) = the gradient of logit k with respect to the raw
	 * input at x, the activation pattern as computed in double (an estimate,
	 * not a certificate: docs/robustness.md) */
	void (*input_grad)(const float *P, const float *x, int32_t k, float *ws, double *g);

	/* Training.  The loss of one example is any function of its logits, its
	 * pre-activations z and sq[h] = ||d z_h / d x||^2 (gradients with respect
	 * to the normalized input), with masks held constant.  train_forward
	 * computes them (sq only when need_sq); the runtime evaluates the loss and
	 * its partial derivatives dlogits, dz, dsq; train_backward adds
	 * d/dP (dlogits.logits + dz.z + dsq.sq) to grad (dsq may be NULL), using the
	 * same ws.  grad has grad_floats floats; after the per-example gradients
	 * of a batch are summed, train_finish folds the accumulators past
	 * n_params into grad[0..n_params), the part-th of `parts` shares of the
	 * rows (calls on different shares may run at once; 0, 1: all of it).
	 * `pre` is filled by prepare for P.
	 * Without sq (need_sq 0, dsq NULL) neither pre nor the accumulators are
	 * used, so prepare and train_finish may be skipped.  With samples = K > 0
	 * (approximate ROLL), sq[h] = (D / K) sum_k (d z_h / d x_{axes[k]})^2 for
	 * K distinct axes (rt_sample_axes), an unbiased estimate; axes is unused
	 * (may be NULL) when samples is 0 or need_sq is 0. */
	void (*train_forward)(const float *P, const float *pre, const float *x, int32_t need_sq,
	                      float *ws, float *z, float *logits, float *sq, const int32_t *axes);
	void (*train_backward)(const float *P, const float *pre, float *ws, const float *dlogits,
	                       const float *dz, const float *dsq, float *grad);
	void (*train_finish)(const float *P, float *grad, int32_t part, int32_t parts);

	/* Training without sq (need_sq 0) of up to `batch` examples per call,
	 * as matrix products over the examples, in float (models without
	 * recurrence; 0 and NULL otherwise).  train_batch_forward takes nb pointers
	 * to raw inputs and writes rows of z (n_hidden; z may be NULL: not
	 * written) and of the logits; train_batch_backward takes dlogits and dz
	 * (rows as z and the logits; dz may be NULL) and back-propagates them.
	 * Both work on the examples (columns) [c0, c1) only, c0 a multiple of 16
	 * (c1 past the batch means its end): calls on disjoint columns may run
	 * at once.  Then train_batch_weights stores in grad (adds to it, when
	 * accumulate is not 0) the gradient of the sum over the nb examples of
	 * dlogits.logits + dz.z, for the part-th of `parts` shares of every
	 * layer's rows, which may run at once.  All use the same bws (batch_ws_floats floats).  Each element is
	 * computed the same way whatever the columns and shares.  No pre, no
	 * accumulators: grad needs n_params floats. */
	int64_t batch_ws_floats;
	int32_t batch;
	void (*train_batch_forward)(const float *P, const float *const *x, int32_t nb, float *bws, float *z,
	                            float *logits, int32_t c0, int32_t c1);
	void (*train_batch_backward)(const float *P, float *bws, int32_t nb, const float *dlogits, const float *dz,
	                             int32_t c0, int32_t c1);
	void (*train_batch_weights)(const float *P, float *bws, int32_t nb, float *grad, int32_t accumulate,
	                            int32_t part, int32_t parts);

	/* The sq part of train_forward and train_backward alone, so that an
	 * objective needing sq can take the rest through the batched kernels
	 * (exact sq of dense chains; NULL otherwise): train_gram computes sq of
	 * one example from its row of z as train_batch_forward wrote it (masks
	 * z > 0), train_gram_backward adds d/dP (dsq.sq) to grad, accumulators
	 * included, using the same ws (ws_floats floats). */
	void (*train_gram)(const float *P, const float *pre, const float *z, float *ws, float *sq);
	void (*train_gram_backward)(const float *pre, float *ws, const float *dsq, float *grad);
	/* what train_forward, train_gram and their backward read of prepare's
	 * output (W W^T of the first layer, accumulated in float here, in
	 * double by prepare; W^T W of the others), the part-th of `parts`
	 * shares, which may run at once (NULL where train_gram is NULL) */
	void (*train_prepare)(const float *P, float *pre, int32_t part, int32_t parts);

	/* Approximate ROLL (samples K > 0) through the batched kernels, for
	 * models that have them when round16(K) <= batch (0 and NULL otherwise):
	 * each example's K sampled axes are round16(K) columns of a tangent
	 * workspace (tangent_ws_floats floats, one per thread).  After
	 * train_batch_forward (with z), train_batch_tangents takes examples
	 * e0 .. e0 + ne - 1 of that batch (ne round16(K) <= batch) and their
	 * axes (K an example) and writes their rows of sq (n_hidden an example
	 * of the batch); train_batch_tangents_backward takes those rows of dsq
	 * and back-propagates them through the tangents, and
	 * train_batch_tangent_weights (train_batch_weights' signature, nb the
	 * ne round16(K) columns, tws for bws) stores or adds the gradient of
	 * dsq.sq to grad.  Masks are z > 0 from bws, in float. */
	int64_t tangent_ws_floats;
	void (*train_batch_tangents)(const float *P, const float *bws, float *tws, int32_t e0, int32_t ne,
	                             const int32_t *axes, float *sq);
	void (*train_batch_tangents_backward)(const float *P, const float *bws, float *tws, int32_t e0, int32_t ne,
	                                      const float *dsq);
	void (*train_batch_tangent_weights)(const float *P, float *tws, int32_t nb, float *grad, int32_t accumulate,
	                                    int32_t part, int32_t parts);
} rt_model;

/* Name of the layer holding global neuron h, and h's index inside it. */
const rt_layer *rt_layer_of(const rt_model *m, int32_t h, int32_t *index);

/* ------------------------------------------------------------------------
 * Batch certification (certify.c): runs model->certify over n inputs on
 * `threads` threads (0: all cores; never more than the cores or n).
 * z_hash receives the 64-bit hash of each input's activation pattern (may
 * be NULL).  dirs, when not NULL, holds
 * n_dirs directions (1 or n) and t/tbind receive directional margins.
 * ---------------------------------------------------------------------- */
typedef struct rt_batch {
	const float *x;        /* n x n_in */
	const float *xlo;      /* n x n_in, or NULL: see rt_data */
	const int32_t *len;    /* n sequence lengths, or NULL: see rt_data */
	int64_t n;
	const float *dirs;     /* NULL or n_dirs x n_in */
	int64_t n_dirs;
	int32_t norms;
	int threads;
	/* outputs, n entries each */
	rt_cert *cert;
	uint64_t *pattern;     /* may be NULL */
	float *t;              /* directional margins, when dirs */
	int32_t *tbind;
} rt_batch;

int rt_certify_batch(const rt_model *m, const float *P, rt_batch *b);
/* A radius v >= 0 printed with `digits` significant digits, rounded toward
 * zero (a printed certificate must not exceed the computed one). */
void rt_format_down(char *buf, size_t cap, double v, int digits);
int rt_ncpus(void);
/* Formats a message into err (RT_ERRLEN bytes, may be NULL); returns -1. */
int rt_fail(char *err, const char *fmt, ...);
/* The same as "PATH: message"; returns -1. */
int rt_fail_file(char *err, const char *path, const char *fmt, ...);
/* "PATH: record N: message" (N > 0; else as rt_fail_file); returns -1.
 * rt_vfail_at is all three (path NULL: the message alone). */
int rt_fail_record(char *err, const char *path, int64_t rec, const char *fmt, ...);
int rt_vfail_at(char *err, const char *path, int64_t rec, const char *fmt, va_list ap);
/* Prints "PROG: message" on stderr, for the commands; returns status. */
int rt_cmd_fail(const char *prog, int status, const char *fmt, ...);
/* A zeroed, 64-byte aligned buffer of n floats (free with free), for
 * workspaces and parameter vectors; NULL when out of memory. */
float *rt_alloc_floats(int64_t n);
/* A comma-separated list of norms, from 1, 2, inf, as a bit set. */
int rt_parse_norms(const char *s, int32_t *norms);

/* ------------------------------------------------------------------------
 * Flags (flags.c): getopt_long with lln's conventions, for every command.
 * `--flag value` and `--flag=value`; flags spelt in full; a misspelt flag
 * gets the closest one suggested; usage errors print "PROG: ..." and
 * rt_flags_next returns RT_FLAG_ERROR (the command exits 2).
 * ---------------------------------------------------------------------- */
struct option;

typedef struct rt_flag {
	const char *name;   /* "epochs" for --epochs, "-o" for -o */
	bool value;         /* takes a value */
	int id;             /* returned by rt_flags_next, >= 0 */
} rt_flag;

enum { RT_FLAG_END = -1, RT_FLAG_ARG = -2, RT_FLAG_ERROR = -3 };

typedef struct rt_flags {
	const char *prog;          /* argv[0]: how messages name the command */
	const char *context;       /* appended to usage errors (may be NULL) */
	const rt_flag *flags;
	int n, argc;
	char **argv;
	const char *name;          /* the flag just read, without dashes */
	const char *value;         /* its value, or the non-flag argument */
	struct option *longopts;
	char shortopts[64];
	bool rest;                 /* after "--": only arguments */
} rt_flags;

void rt_flags_init(rt_flags *f, const rt_flag *flags, int n, int argc, char **argv);
/* The next flag's id (value in f->value), RT_FLAG_ARG (f->value), RT_FLAG_END
 * or RT_FLAG_ERROR after printing why. */
int rt_flags_next(rt_flags *f);
void rt_flags_done(rt_flags *f);
/* "--lr" or "-o": the flag just read as the user would type it. */
const char *rt_flag_spelling(const rt_flags *f, char *buf, size_t cap);
/* Levenshtein distance (INT_MAX when out of memory), and
 * the index of the candidate closest to name, -1 when none is within 2
 * edits (and fewer than the shorter name's length); NULL candidates are
 * skipped. */
int rt_edit_distance(const char *a, const char *b);
int rt_closest(const char *name, const char *const *cands, int n);

/* ------------------------------------------------------------------------
 * Settings (settings.c, settings.def): every setting of training and
 * evaluation with its flag, kind, range, default and help, declared once;
 * read by the runtime's command lines, their --help and compiler/sema.c.
 * ---------------------------------------------------------------------- */
typedef enum { RT_SK_NUM, RT_SK_INT, RT_SK_SEED, RT_SK_CHOICE, RT_SK_NORMS, RT_SK_TEXT, RT_SK_LIST,
               RT_SK_SWITCH } rt_setting_kind;
enum { RT_SG_DATA, RT_SG_OBJECTIVE, RT_SG_OPTIMIZATION, RT_SG_FILES, RT_SG_REPORT, RT_SG_DISTORTION, RT_SG_COUNT };
enum { RT_MODE_TRAIN = 1, RT_MODE_EVAL = 2 };

enum {
#define SETTING(id, ...) RT_SET_##id,
#include "settings.def"
#undef SETTING
	RT_NSETTINGS
};

typedef struct rt_setting {
	const char *flag;             /* "lr" (--lr); "-o" (-o) */
	rt_setting_kind kind;
	double lo, hi;                /* NUM, INT */
	bool lo_open, hi_open;
	const char *const *choices;   /* CHOICE: NULL-terminated; the index is stored */
	const char *def;              /* default as a flag value; NULL: none */
	const char *metavar, *help;
	int group, modes;
} rt_setting;

extern const rt_setting rt_settings[RT_NSETTINGS];
/* Choice lists, in the order of the enums they index. */
extern const char *const rt_objective_names[];   /* vanilla, roll, distance (rt_obj_kind) */
extern const char *const rt_optimizer_names[];   /* sgd, adam, amsgrad (rt_opt_kind) */
extern const char *const rt_loss_names[];        /* cross_entropy, sigmoid_cross_entropy */
extern const char *const rt_p_names[];           /* inf, 1, 2: the index is the norm, 0 for inf */
extern const char *const rt_switch_names[];      /* off, on */
extern const char *const rt_init_names[];        /* pytorch, he (rt_init_scheme) */

/* Whether v lies in setting id's range (NUM, INT); when not, *rule gets
 * its text (">= 0", "in [0, 1)", "from 0 to 1024"), for "X must be RULE". */
bool rt_setting_in_range(int id, double v, char *rule, size_t cap);
/* The index of name among setting id's choices (aliases: none for vanilla,
 * true/1 and false/0 for on/off), or -1; *alts gets "a, b or c". */
int rt_setting_choice(int id, const char *name, char *alts, size_t cap);
/* The default of a NUM, INT or CHOICE setting as a number (its index). */
double rt_setting_default(int id);
/* Combinations no kernel supports, one rule each for the .lln checker and
 * the command lines: NULL when fine, else why not. */
const char *rt_distance_unsupported(int p);               /* p: 0 inf, 1, 2 */
const char *rt_nesterov_unsupported(bool nesterov, double momentum);
/* The flags of mode (RT_MODE_TRAIN, RT_MODE_EVAL) with their defaults, as
 * `PROG --help` prints them without a model (train_flags.c). */
void rt_settings_help(FILE *f, int mode, const char *prog);

/* ------------------------------------------------------------------------
 * Statistics (stats.c)
 * ---------------------------------------------------------------------- */
/* Percentile q in [0,100] of v[0..n) with linear interpolation between
 * order statistics (numpy's default); v is not modified.  inf values sort
 * last; NaN if n == 0 or any value is NaN. */
double rt_percentile(const float *v, int64_t n, double q);
/* The one hash of lln: 64-bit FNV-1a of len bytes, continuing from h
 * (RT_FNV_BASIS to start).  Patterns, Jacobians and the .lln checker's
 * symbol table all use it. */
#define RT_FNV_BASIS 0xcbf29ce484222325ULL
uint64_t rt_fnv1a(uint64_t h, const void *data, size_t len);
/* 64-bit FNV-1a hash of the sign pattern (z > 0) of n values: over the 8
 * little-endian bytes of n, then the bits packed 8 per byte, z[8k+j] in bit
 * j of byte k; so it depends on the signs only, never on the values. */
uint64_t rt_pattern_hash(const float *z, int64_t n);
/* The same over n values given in pieces: rt_pattern_add the pieces in
 * order, then rt_pattern_end. */
typedef struct rt_pattern { uint64_t h; unsigned char byte; int bits; } rt_pattern;
void rt_pattern_start(rt_pattern *p, int64_t n);
void rt_pattern_add(rt_pattern *p, const float *z, int64_t n);
uint64_t rt_pattern_end(rt_pattern *p);
/* Number of distinct values among h[0..n); -1 if out of memory. */
int64_t rt_count_distinct(const uint64_t *h, int64_t n);

/* ------------------------------------------------------------------------
 * Data (data.c).  Examples are rows of `dim` float32 values.
 *   .csv  one example per line, comma separated; "-" reads CSV from stdin
 *   .npy  float32 or float64, C order, shape (n, ...) flattened per row
 *   IDX   (MNIST format; any name not ending .csv/.npy) unsigned byte
 *         images scaled to [0,1], or float32 IDX
 * With `labeled`, CSV rows carry an integer label in the first column.
 * dim == 0 accepts any row length (all rows must agree).  Every value must
 * be finite.  Errors: "FILE: record N: ..." with N counted from 1.
 * ---------------------------------------------------------------------- */
typedef struct rt_data {
	int64_t n;
	int64_t dim;
	float *x;        /* n x dim */
	int32_t *y;      /* n labels, or NULL */
	/* n x dim, or NULL: x_given - x rounded to float, where x_given are the
	 * values as written (a CSV field's decimal, b / 255 for a byte of an IDX
	 * image, a float64 of a .npy) and x their float32 roundings; the
	 * certify and direction kernels certify x + xlo, in double */
	float *xlo;
	/* n sequence lengths in frames, or NULL: a model over sequences of free
	 * length (rt_model.max_len) reads a .ts file's sequences left-padded
	 * into rows of max_len frames; rows of other files are max_len long */
	int32_t *len;
} rt_data;

int rt_data_read(const char *path, int64_t dim, bool labeled, rt_data *out, char *err);
/* rt_data_read, rt_reader_open and rt_reader_open_labeled for m's input:
 * of a model over sequences of free length, a .ts file's sequences of 1 to
 * max_len frames of F values ("FILE: line N: ..." otherwise). */
int rt_data_read_model(const char *path, const rt_model *m, bool labeled, rt_data *out, char *err);
/* Sequences (ts.c): the UEA/UCR archive's .ts format, each sequence stored
 * time-major (frame after frame of F values, as `input x[T, F]` takes
 * them), lengths free.  The data readers above take a .ts file when every
 * sequence has dim / F frames, its class indices as labels.  Errors:
 * "FILE: line N: ...". */
typedef struct rt_seqdata {
	int64_t n, F;        /* sequences, values per frame */
	int64_t *start;      /* n + 1: sequence i is frames start[i] .. start[i + 1] */
	float *x, *xlo;      /* frames x F, and the rest of each value as written (rt_data) */
	int32_t *y;          /* n class indices, or NULL without @classLabel true */
	char **classes;      /* the @classLabel names, n_classes of them */
	int32_t n_classes;
} rt_seqdata;
int rt_ts_read(const char *path, rt_seqdata *out, char *err);
int rt_ts_parse(const char *path, const char *text, size_t len, rt_seqdata *out, char *err);
void rt_seqdata_free(rt_seqdata *d);
/* Labels from IDX (ubyte, 1-D), .npy (integer or float holding integers) or
 * CSV (one integer per line); n_expected > 0 makes a count mismatch an error. */
int rt_labels_read(const char *path, int64_t n_expected, int32_t **out, int64_t *n, char *err);
void rt_data_free(rt_data *d);
/* The same files read in chunks, for inputs of any length in bounded
 * memory: each rt_reader_next gives the next (up to) max examples, with
 * record numbers in messages counted from the start of the file; chunk->n
 * is 0 at the end.  chunk->x belongs to the reader and stays valid until
 * the next call.  A CSV file with no examples gives an empty first chunk. */
typedef struct rt_reader rt_reader;
int rt_reader_open(const char *path, int64_t dim, rt_reader **out, char *err);
int rt_reader_next(rt_reader *r, int64_t max, rt_data *chunk, char *err);
/* rt_reader_open for inputs that may carry labels: a CSV file whose first
 * record has dim + 1 values holds a label in the first column of every
 * record (as rt_data_read with `labeled`), and its chunks have y; other
 * files and CSV files of dim values have none (chunk->y NULL). */
int rt_reader_open_labeled(const char *path, int64_t dim, rt_reader **out, char *err);
/* rt_reader_open(_labeled, with maybe_labeled) for m's input: as
 * rt_data_read_model */
int rt_reader_open_model(const char *path, const rt_model *m, bool maybe_labeled, rt_reader **out, char *err);
int64_t rt_reader_count(const rt_reader *r);   /* examples read so far */
void rt_reader_close(rt_reader *r);
/* Formats recognised by their first bytes (len of them, of a file of `size`
 * bytes), so that a file given in the wrong place is named; the text reads
 * after "is": "a zip archive (PyTorch's torch.save format)". */
typedef enum {
	RT_FMT_UNKNOWN, RT_FMT_ZIP, RT_FMT_NPY, RT_FMT_GZIP, RT_FMT_ELF, RT_FMT_SAFETENSORS,
	RT_FMT_IDX, RT_FMT_ONNX,
} rt_format;
rt_format rt_sniff(const unsigned char *b, size_t len, uint64_t size);
const char *rt_format_text(rt_format f);
/* Length of the UTF-8 sequence at p (n bytes left), 0 if it is not valid
 * UTF-8 (overlong forms, surrogates and code points past U+10FFFF are
 * not); and the length of the valid prefix of s. */
size_t rt_utf8_len(const unsigned char *p, size_t n);
size_t rt_utf8_valid(const char *s, size_t n);
/* Splits the FILE[,LABELS] form of --data: a copy of the examples' name
 * (free it), with *labels pointing into it after the last comma, or NULL.
 * A name that exists as given is one file, even with a comma in it. */
char *rt_split_labels(const char *spec, char **labels);

/* ------------------------------------------------------------------------
 * Outputs (outputs.c).  Promises and names: docs/reliability.md.
 * ---------------------------------------------------------------------- */
/* Write bytes to `path` through a temporary file in the same directory and
 * a rename, so that a failure never leaves a partial file.  A symbolic link
 * is kept and its target replaced; anything that exists and is not a
 * regular file is refused. */
int rt_write_atomic(const char *path, const void *data, size_t len, char *err);
/* The same in steps, for outputs written piece by piece: open creates the
 * temporary ".NAME.lln-tmp.PID.XXXXXX" next to the target (removing those
 * of earlier, killed processes) and leaves it open as fd; commit syncs,
 * closes (unless fd was closed and set to -1 by the caller) and renames;
 * abort removes the temporary.  Both free what open allocated. */
typedef struct rt_atomic {
	const char *path;   /* as given, for messages */
	char *target;       /* path with symbolic links followed */
	char *tmp;
	int fd;
} rt_atomic;
int rt_atomic_open(const char *path, rt_atomic *a, char *err);
int rt_atomic_commit(rt_atomic *a, char *err);
void rt_atomic_abort(rt_atomic *a);
/* write(2) until done; 0 or the errno of the failure. */
int rt_write_fd(int fd, const void *data, size_t len);

/* The files of one command, checked together before any work: every pair
 * that involves an output must be different files (by device and inode, or
 * resolved directory and name for files still to be made), except pairs
 * with the same non-zero `share` (e.g. --resume and --checkpoint); every
 * output must be writable: a regular file or a new name in a writable
 * directory (streams: also a character device).  Returns 0; 2 with
 * "FLAG 'A' and FLAG 'B' are the same file; ..." in err; 1 with "cannot
 * write PATH: reason".  NULL paths and "-" are skipped. */
typedef enum { RT_FILE_IN, RT_FILE_OUT, RT_FILE_STREAM } rt_file_use;
typedef struct rt_file {
	const char *flag;   /* how the user named it: "-o", "--data", "" */
	const char *path;
	rt_file_use use;
	int share;
} rt_file;
int rt_files_check(const rt_file *files, int n, char *err);

/* ------------------------------------------------------------------------
 * The certifier's command line (certifier_main.c, cert_summary.c,
 * cert_records.c; llnc merge in cert_merge.c): the
 * standalone certifier's main and `llnc certify` both run rt_certify_main,
 * so they print the same bytes (docs/certifier.md).  `synopsis` is the
 * usage line's text after "usage: " (NULL: "PROG [options] INPUT").
 * Returns the exit status: 0, 1 for bad input or failed writes, 2 for
 * usage errors.
 * ---------------------------------------------------------------------- */
int rt_certify_main(const rt_model *m, const float *P, const char *synopsis, int argc, char **argv);
/* The same run as part `part` of `parts` of a job (llnc certify under
 * mpirun: docs/scale.md): it certifies its shard, and gather (collective:
 * every part calls it alike) brings every part's bytes to part 0 in part
 * order (malloc'd, NULL on the other parts), which writes the records and
 * the summary of them all.  A part that returns non-zero leaves the others
 * waiting: the caller ends the job.  job NULL: rt_certify_main. */
typedef struct rt_cert_job {
	int part, parts;
	char *(*gather)(const char *buf, int64_t len, int64_t *total);
} rt_cert_job;
int rt_certify_job(const rt_model *m, const float *P, const char *synopsis, int argc, char **argv,
                   const rt_cert_job *job);

enum { RT_FORMAT_JSONL, RT_FORMAT_CSV, RT_FORMAT_TABLE };
#define RT_MAX_RADII 16
/* The radii of --eps in the norm of --norm.  An input is robust at radius
 * r when eps_pred of that norm is >= r (its prediction is certified within
 * r), and certified at r when it is robust and its prediction equals its
 * true label.  key[k] is r[k] as printed ("%.9g"), the name of its fields. */
typedef struct rt_radii {
	int n, norm;
	double r[RT_MAX_RADII];
	char key[RT_MAX_RADII][24];
} rt_radii;
/* "0.1,0.3" into r (norm left as it is); -1 for anything but 1 to
 * RT_MAX_RADII finite numbers >= 0. */
int rt_radii_parse(const char *s, rt_radii *r);
bool rt_robust_at(const rt_cert *c, const rt_radii *r, int k);

/* One input's record as the certifier prints it (cert_records.c), whether
 * from a certified batch or read back from a shard file by `llnc merge`:
 * its binding neurons resolved to where they are in their layer, so that
 * printing needs no model. */
enum { RT_BIND_VECTOR, RT_BIND_IMAGE, RT_BIND_SEQUENCE };
typedef struct rt_bind {
	const char *layer;   /* NULL: no neuron bounds the radius */
	int32_t index;       /* inside the layer */
	int shape;           /* RT_BIND_*: an image's channel, row, col in a, b, c;
	                      * a sequence's step, unit in a, b */
	int32_t a, b, c;
} rt_bind;
typedef struct rt_record {
	int64_t index;       /* in the whole input, from 0 */
	rt_cert c;           /* c.label is the prediction; c.bind unused */
	rt_bind bind[RT_NNORMS], tbind;
	int32_t y;           /* the true label, when the layout is labeled */
	float t;             /* eps_dir, when the layout has directions */
	uint64_t pattern;
} rt_record;
/* What every record of a run holds. */
typedef struct rt_record_layout {
	int32_t norms;
	bool dirs, labeled;
	int format;          /* RT_FORMAT_* */
	const rt_radii *radii;
} rt_record_layout;
/* Neuron h of a sequence of len frames (rt_seq_len), as records name it. */
void rt_bind_of(const rt_model *m, int32_t len, int32_t h, rt_bind *out);
/* The CSV or table header line (nothing for jsonl), and one record. */
void rt_record_header(FILE *out, const rt_record_layout *L);
void rt_record_print(FILE *out, const rt_record_layout *L, const rt_record *r);
/* The first line of a shard file (--shard-out, docs/certifier.md): which
 * model, input and settings its records come from, and which shard. */
typedef struct rt_shard_head {
	const char *model;
	uint64_t model_digest, input_digest;
	int32_t n_in, n_out;
	int64_t inputs;        /* of the whole INPUT */
	int part, parts;
} rt_shard_head;
#define RT_SHARD_VERSION 1
void rt_shard_head_print(FILE *out, const rt_shard_head *h, const rt_record_layout *L);
/* `llnc merge [--summary] [--format F] [-o OUT] SHARD...` (cert_merge.c, in
 * llnrt_train: it reads JSON with jansson): the records of the shard files
 * of one run in input order, and the summary of them all, each as the
 * unsharded run prints it.  argv[0] names the command in messages. */
int rt_merge_main(int argc, char **argv);

/* What --summary reports, gathered chunk by chunk: every input's radii and
 * pattern (exact percentiles), and the counts of correct, robust and
 * certified inputs. */
typedef struct rt_cert_summary {
	int64_t n, cap;
	float *v[2 * RT_NNORMS + 1];   /* eps_p, eps_pred_p (p-major), eps_dir */
	uint64_t *pattern;
	bool labeled;
	int64_t correct, undecided;
	int64_t robust[RT_MAX_RADII], certified[RT_MAX_RADII];
} rt_cert_summary;
/* Adds a certified batch; y: its true labels, or NULL.  -1: out of memory. */
int rt_summary_add(rt_cert_summary *s, const rt_batch *b, const int32_t *y, const rt_radii *r);
/* Prints it in format RT_FORMAT_*: a JSON object, CSV rows of
 * "statistic,value", or a table for reading.  -1: out of memory. */
int rt_summary_print(FILE *out, const rt_cert_summary *s, const rt_radii *r, int32_t norms, bool dirs,
                     int format);
void rt_summary_free(rt_cert_summary *s);
/* The summary as bytes (malloc'd, *len of them), for a job's part 0; NULL
 * when out of memory.  rt_summary_unpack adds to s every packed summary of
 * buf (several, one after another), so that the merged summary is the one
 * of all their inputs, exactly; -1 when out of memory or buf is not such. */
char *rt_summary_pack(const rt_cert_summary *s, int64_t *len);
int rt_summary_unpack(rt_cert_summary *s, const char *buf, int64_t len);

/* ------------------------------------------------------------------------
 * VNN-LIB properties (vnnlib.c): `--vnnlib DIR` of the certifier.  For
 * each input of a certified batch (cert filled with linf among the norms),
 * DIR/prop_N.vnnlib (N = first + i, the input's index) states the l_inf
 * ball of radius eps_pred_inf in raw units and the negation of "the
 * predicted class stays the largest", written atomically (docs/certifier.md).
 * rt_vnnlib_dir creates DIR if missing and checks it is a writable
 * directory: "cannot write DIR: reason".
 * ---------------------------------------------------------------------- */
int rt_vnnlib_dir(const char *dir, char *err);
int rt_vnnlib_batch(const char *dir, const rt_model *m, const rt_batch *b, int64_t first, char *err);

/* ------------------------------------------------------------------------
 * Allocation (alloc.c).  Readers, safetensors and batch certification
 * allocate through these; free with free().  rt_alloc_fail_after(N) (N > 0)
 * makes the N-th allocation from now fail, once; 0 disarms.  For tests.
 * ---------------------------------------------------------------------- */
void *rt_malloc(size_t n);
void *rt_calloc(size_t n, size_t size);
void *rt_realloc(void *p, size_t n);
void rt_alloc_fail_after(long n);
bool rt_alloc_fired(void);      /* whether the armed failure happened */
long rt_alloc_count(void);      /* allocations since arming */

/* ------------------------------------------------------------------------
 * Weights as safetensors (safetensors.c; needs jansson, so not linked into
 * certifiers).  Little-endian float32, PyTorch names and layout.
 * ---------------------------------------------------------------------- */
/* Fill P (n_params floats) from the file; a missing, extra, wrongly shaped
 * or non-float tensor is an error naming the tensor. */
int rt_params_load(const rt_tensor *t, int n_tensors, const char *path, float *P, char *err);
/* Write P as the tensors of the table (atomically).  `extra`, if not NULL,
 * adds further tensors (e.g. optimizer state) given as a second table over
 * the buffer E; metadata, if not NULL, is a NULL-terminated key/value list. */
int rt_params_save(const rt_tensor *t, int n_tensors, const float *P,
                   const rt_tensor *extra, int n_extra, const float *E,
                   const char *const *metadata, const char *path, char *err);
/* rt_params_load plus the optional `extra` table (e.g. optimizer state to
 * resume from) read into E.  Extras are all or nothing: *has_extra says
 * whether the file had them.  A tensor in neither table is an error, except
 * that with no extra table (n_extra == 0) tensors named "optim.*" are
 * ignored.  On failure P and E may have been partly overwritten. */
int rt_params_load_ex(const rt_tensor *t, int n, const rt_tensor *extra, int n_extra,
                      const char *path, float *P, float *E, bool *has_extra, char *err);
/* How a file's tensor names map to the model's, for state_dicts saved
 * under other module names (--strip-prefix P, --rename OLD=NEW, repeatable):
 * a name starting with P loses it, then the first rename whose OLD is the
 * whole name or its leading module ("0" for "0.weight", not "01.weight")
 * replaces that part with NEW.  A rename matching nothing, or two tensors
 * mapped to one name, is an error.  Strings are not copied. */
#define RT_MAX_RENAMES 64
typedef struct rt_names {
	const char *strip;                     /* NULL: none */
	int n;
	const char *rename[RT_MAX_RENAMES];    /* "OLD=NEW" */
} rt_names;
/* Takes --rename or --strip-prefix with its value into nm: 0 when taken,
 * 1 when flag is neither, -1 with a message in err for a bad value. */
int rt_names_flag(rt_names *nm, const char *flag, const char *value, char *err);
/* rt_params_load with names mapped by nm (NULL: as they are).  Tensors of
 * dtype F64, F16 and BF16 are converted to float32, with a note on stderr;
 * a missing tensor's message lists the file's names, the closest first. */
int rt_params_load_named(const rt_tensor *t, int n_tensors, const rt_names *nm, const char *path,
                         float *P, char *err);
/* Lists the file's tensors (names mapped by nm, may be NULL), dtypes,
 * shapes and metadata to out, in file order. */
int rt_st_list(const char *path, const rt_names *nm, FILE *out, char *err);
/* The string stored under `key` in the file's __metadata__: 0 and the value
 * when present, 1 and "" when absent, -1 on error (unreadable file, value
 * not a string or not fitting in len bytes with its NUL). */
int rt_st_metadata(const char *path, const char *key, char *value, size_t len, char *err);

/* ------------------------------------------------------------------------
 * Sequences of free length (seq.c): input x[*, F].  A sequence of L frames
 * is given to the kernels as max_len frames, its own last, and L in the
 * workspace's first word; the rnn steps before its first frame are held at
 * 0 and bind nothing, so every number is that of the sequence alone.  Its
 * own neurons, the live ones, are the last L steps of each rnn layer and
 * every neuron of the layers after them.
 * ---------------------------------------------------------------------- */
/* Example i's length: lens[i], max_len without lens, 0 for other models. */
static inline int32_t rt_seq_len(const rt_model *m, const int32_t *lens, int64_t i)
{
	return !m->max_len ? 0 : lens ? lens[i] : m->max_len;
}
/* Before any kernel call for a sequence of len frames in workspace ws. */
static inline void rt_seq_begin(const rt_model *m, float *ws, int32_t len)
{
	if (m->max_len)
		memcpy(ws, &len, sizeof len);
}
/* The live neurons of a sequence of len frames, in increasing order, into
 * live (may be NULL); returns their count. */
int32_t rt_seq_live(const rt_model *m, int32_t len, int32_t *live);
/* rt_pattern_hash of the live neurons' signs (those of the sequence alone:
 * as a model of its own length would hash them). */
uint64_t rt_seq_pattern(const rt_model *m, int32_t len, const float *z);
/* An index into layer l (rt_layer_of) as the sequence of len frames has it:
 * in an rnn layer, time steps counted from its own first frame. */
int32_t rt_seq_index(const rt_model *m, const rt_layer *l, int32_t len, int32_t idx);
/* Approximate ROLL's axes for example `stream` (rt_sample_axes), a sequence
 * of len frames: K distinct axes among its n = max(len F, K) last input
 * values (the padding's gradients are 0).  rt_seq_sq_scale is n / n_in,
 * which turns train_forward's sq (scaled by n_in / K) into the sequence's
 * own estimate; 1 for exact ROLL and other models. */
void rt_seq_axes(const rt_model *m, int32_t len, uint64_t seed, uint64_t stream, int32_t *axes);
double rt_seq_sq_scale(const rt_model *m, int32_t len);

/* ------------------------------------------------------------------------
 * Random numbers and initialisation (rng.c): deterministic across machines.
 * ---------------------------------------------------------------------- */
typedef struct rt_rng { uint64_t s[4]; } rt_rng;
void rt_rng_seed(rt_rng *r, uint64_t seed);
uint64_t rt_rng_next(rt_rng *r);
double rt_rng_uniform(rt_rng *r);       /* [0, 1) */
double rt_rng_normal(rt_rng *r);        /* standard normal */
/* K distinct axes of 0..D-1, uniformly, in increasing order, drawn from a
 * generator seeded by (seed, stream): approximate ROLL's per-example draw. */
void rt_sample_axes(uint64_t seed, uint64_t stream, int32_t D, int32_t K, int32_t *out);
/* Initialisation schemes.  Biases are U(-1/sqrt(fan_in), 1/sqrt(fan_in)) in
 * both; weights are U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with RT_INIT_PYTORCH
 * (PyTorch's nn.Linear / nn.Conv2d default, the default here) and He-normal
 * N(0, 2/fan_in) with RT_INIT_HE. */
typedef enum { RT_INIT_PYTORCH, RT_INIT_HE } rt_init_scheme;
const char *rt_init_name(rt_init_scheme s);        /* "pytorch", "he" */
int rt_init_parse(const char *name, rt_init_scheme *s);  /* 0, or -1 if unknown */
void rt_init_params(const rt_tensor *t, int n_tensors, uint64_t seed, rt_init_scheme scheme, float *P);

/* ------------------------------------------------------------------------
 * Training (library llnrt_train, which needs llnrt_st): objectives
 * (objective.c), optimizers (optim.c), batch gradients across threads
 * (grad.c), evaluation (eval.c), the labeled-data loader (labeled.c); the
 * commands: train's loop (train.c), its checkpoints (checkpoint.c) and log
 * (train_log.c), their flags (train_flags.c, internal header train.h),
 * eval (eval_main.c), reports (report.c).  Everything is deterministic: a
 * given seed and thread count give bit-identical weights.
 * ---------------------------------------------------------------------- */
typedef enum { RT_OBJ_VANILLA, RT_OBJ_ROLL, RT_OBJ_DISTANCE } rt_obj_kind;

typedef struct rt_objective {
	rt_obj_kind kind;
	bool sigmoid;            /* one-logit sigmoid cross-entropy, else softmax */
	double lambda, C, gamma; /* roll: all three (gamma in (0, 100]); distance: lambda */
	uint64_t sample_seed;    /* approximate ROLL (rt_model.samples): example r's axes
	                          * are rt_sample_axes(sample_seed, r, ...) */
} rt_objective;

/* Whether the objective needs sq from train_forward. */
bool rt_objective_needs_sq(const rt_objective *o);
/* Loss of one example from its logits, z and sq (sq unused by vanilla), in
 * double precision; fills dlogits (n_out), and dz, dsq (n_hidden; may be
 * NULL for vanilla) with the partial derivatives.  *ce_out (may be NULL)
 * gets the cross-entropy part.  scratch: n_hidden int32 (roll with
 * gamma < 100 only; NULL allocates).  Softmax labels lie in 0..n_out-1,
 * sigmoid labels in {0, 1}.
 *   roll:     ce + lambda/k sum_{h in I} (sq_h + C max(0, 1 - |z_h|)), I the
 *             k = ceil(gamma/100 H) neurons with the largest bracket (ties:
 *             lower index first)
 *   distance: ce - lambda min_{h: sq_h > 0} |z_h| / sqrt(sq_h)        */
double rt_objective_eval(const rt_objective *o, const rt_model *m, const float *logits,
                         const float *z, const float *sq, int32_t label, float *dlogits,
                         float *dz, float *dsq, double *ce_out, int32_t *scratch);
/* The same for one sequence of len frames of a model over sequences of free
 * length: the regularizer over that sequence's own neurons (rt_seq_live),
 * approximate ROLL's sq rescaled to its own axes (rt_seq_axes), dz and dsq
 * 0 at the padding; sb from rt_seqbuf_new.  As rt_objective_eval for other
 * models or len = max_len. */
typedef struct rt_seqbuf rt_seqbuf;
rt_seqbuf *rt_seqbuf_new(const rt_model *m);
void rt_seqbuf_free(rt_seqbuf *b);
double rt_objective_eval_seq(const rt_objective *o, const rt_model *m, int32_t len, const float *logits,
                             const float *z, const float *sq, int32_t label, float *dlogits, float *dz,
                             float *dsq, double *ce_out, int32_t *scratch, rt_seqbuf *sb);

/* Optimizers with PyTorch 1.13's update rules (weight decay added to the
 * gradient first; SGD without dampening; Adam/AMSGrad with bias correction). */
typedef enum { RT_SGD, RT_ADAM, RT_AMSGRAD } rt_opt_kind;

typedef struct rt_optimizer {
	rt_opt_kind kind;
	double lr, momentum, beta1, beta2, eps, weight_decay;
	bool nesterov;
	int lr_step;             /* epochs between decays; 0: constant */
	double lr_gamma;
} rt_optimizer;

typedef struct rt_opt_state {
	int64_t n, step;         /* parameters; steps taken */
	int nstate;              /* arrays of n floats in mem: sgd+momentum 1, adam 2, amsgrad 3 */
	float *mem;              /* nstate * n floats, the arrays below in this order */
	float *buf, *m, *v, *vmax;
} rt_opt_state;

int rt_opt_init(rt_opt_state *s, const rt_optimizer *o, int64_t n);  /* zeroed; -1: no memory */
void rt_opt_free(rt_opt_state *s);
/* Name of state array i < s->nstate ("buf", "m", "v", "vmax"). */
const char *rt_opt_state_name(const rt_opt_state *s, int i);
/* One step on P[0..n) with learning rate lr (the schedule's value). */
void rt_opt_step(const rt_optimizer *o, rt_opt_state *s, double lr, float *P, const float *grad);
/* The same on `threads` threads, with the same result. */
void rt_opt_step_threads(const rt_optimizer *o, rt_opt_state *s, double lr, float *P, const float *grad, int threads);
/* The step from the sums of nb examples' gradients (rt_batch_sums_ctx),
 * the gradient being sums / nb in float, bit for bit the step from
 * rt_batch_grad_ctx's gradient.  false: some element of the gradient is not
 * finite, and P holds no useful values (the caller abandons the run). */
bool rt_opt_step_mean(const rt_optimizer *o, rt_opt_state *s, double lr, float *P, const float *sums, int64_t nb,
                      int threads);
/* Step schedule (PyTorch's StepLR): lr * lr_gamma^(epoch / lr_step), epoch from 0. */
double rt_lr_at(const rt_optimizer *o, int epoch);

/* Mean gradient over the batch X[idx[0..nb)] (rows of n_in floats; idx NULL:
 * rows 0..nb-1) into grad (n_params floats); *loss and *ce (may be NULL) get
 * the mean loss and cross-entropy.  pre must hold prepare(P).  Threads
 * (0: all cores) take contiguous shares whose sums are added in a fixed
 * order, so the result depends on the thread count but on nothing else.
 * -1 when out of memory. */
int rt_batch_grad(const rt_model *m, const rt_objective *o, const float *P, const float *pre,
                  const float *X, const int32_t *y, const int64_t *idx, int64_t nb, int threads,
                  float *grad, double *loss, double *ce);
/* The same with buffers kept across batches (the training loop's form). */
typedef struct rt_grad_ctx rt_grad_ctx;
rt_grad_ctx *rt_grad_ctx_new(const rt_model *m, int threads);
void rt_grad_ctx_free(rt_grad_ctx *c);
int rt_batch_grad_ctx(rt_grad_ctx *c, const rt_objective *o, const float *P, const float *pre,
                      const float *X, const int32_t *y, const int64_t *idx, int64_t nb,
                      float *grad, double *loss, double *ce);
/* What the batches of objective o need prepared for P in pre, on c's
 * threads: nothing for the vanilla objective; train_prepare's shares where
 * the model has it; else prepare. */
void rt_grad_prepare(rt_grad_ctx *c, const rt_objective *o, const float *P, float *pre);
/* The same without the mean: the gradient's sums over the nb examples
 * (n_params floats, owned by c, valid until its next batch), for
 * rt_opt_step_mean, which divides as it steps.  NULL when out of memory. */
float *rt_batch_sums_ctx(rt_grad_ctx *c, const rt_objective *o, const float *P, const float *pre,
                         const float *X, const int32_t *y, const int64_t *idx, int64_t nb, double *loss,
                         double *ce);
/* How many examples of the last batch the weights before the step
 * classified correctly. */
int64_t rt_grad_ctx_correct(const rt_grad_ctx *c);
/* The lengths of the data set's sequences (rt_data.len; X's rows) for a
 * model over sequences of free length; NULL: every one max_len long. */
void rt_grad_ctx_lengths(rt_grad_ctx *c, const int32_t *lens);

/* The same in two halves, for data parallelism (train.c): rt_grad_sums
 * sums the per-example gradients of X[idx[0..nb)] (nb may be 0) into a
 * buffer of *len floats that c owns: the accumulators (n_params, and with
 * an sq-based objective the rest of grad_floats), then RT_SUM_TAIL floats
 * indexed from the end by RT_SUM_*: the sums of the loss and of the
 * cross-entropy, the count of right predictions, and a flag the caller
 * sets.  Buffers of several processes added element-wise are the sums of
 * their examples together; rt_grad_fold folds them, and rt_opt_step_mean
 * steps from them.  NULL when out of memory. */
enum { RT_SUM_LOSS = 4, RT_SUM_CE = 3, RT_SUM_CORRECT = 2, RT_SUM_FLAG = 1, RT_SUM_TAIL = 4 };
float *rt_grad_sums(rt_grad_ctx *c, const rt_objective *o, const float *P, const float *pre,
                    const float *X, const int32_t *y, const int64_t *idx, int64_t nb, int64_t *len);
/* After the sums of every process are added: the accumulators folded into
 * the parameters' (in place, on c's threads), still nb times the gradient. */
void rt_grad_fold(rt_grad_ctx *c, const rt_objective *o, const float *P, float *sums);

/* dist.c: the job's processes (MPI ranks; one process without MPI).
 * rt_dist_start joins the job when an MPI launcher started this process
 * (0, or the exit status after printing why); rt_dist_stop leaves it.
 * rt_dist_part: the part-th of `parts` contiguous parts of n items,
 * [n part / parts, n (part + 1) / parts).  rt_dist_sum adds buf across
 * ranks in place (every rank gets the sum); rt_dist_agree is true when
 * every rank passed the same v; rt_dist_max the largest v.
 * rt_dist_gather concatenates every rank's bytes in rank order on rank 0
 * (malloc'd, *total bytes; NULL on the other ranks).  rt_dist_abort ends
 * every rank with the status (MPI_Abort), after the caller printed why.
 * All but rt_dist_part, rank and size are collective: every rank calls
 * them in the same order. */
int rt_dist_start(const char *prog);
void rt_dist_stop(void);
int rt_dist_rank(void);
int rt_dist_size(void);
void rt_dist_part(int64_t n, int part, int parts, int64_t *begin, int64_t *end);
void rt_dist_sum(float *buf, int64_t n);
bool rt_dist_agree(uint64_t v);
int64_t rt_dist_max(int64_t v);
char *rt_dist_gather(const char *buf, int64_t len, int64_t *total);
_Noreturn void rt_dist_abort(int status);

/* Evaluation over a labeled data set: accuracy, mean loss and cross-entropy
 * (objective o), percentiles P25/P50/P75/P100 of the margins (raw units) for
 * the norms in `norms` (NaN for the others), distinct activation patterns and
 * distinct logit Jacobians.  Independent of the thread count. */
typedef struct rt_eval {
	int64_t n;
	double accuracy, loss, ce;
	double eps_pct[RT_NNORMS][4];
	int64_t patterns, jacobians;
} rt_eval;

int rt_evaluate(const rt_model *m, const rt_objective *o, const float *P, const rt_data *d,
                int threads, int32_t norms, rt_eval *out);
/* The same, and per example: eps_out[p * n + i] the margin eps_p of example
 * i (n x RT_NNORMS floats, norm-major), correct_out[i] 1 if it is classified
 * correctly (n bytes); either may be NULL. */
int rt_evaluate_examples(const rt_model *m, const rt_objective *o, const float *P, const rt_data *d,
                         int threads, int32_t norms, rt_eval *out, float *eps_out,
                         unsigned char *correct_out);

/* The one loader of labeled data (labeled.c): FILE[,LABELS] or a toy2d:
 * spec, every label checked against the model's outputs (sigmoid: 0 or 1);
 * 0, or 1 after printing "PROG: ..." or "FILE: record N: ..." on stderr. */
int rt_load_labeled(const char *prog, const rt_model *m, bool sigmoid, const char *spec, rt_data *d);

/* Runs fn(args + t * stride) for t < n, one thread each, the calling
 * thread taking the last (parallel.c), and returns when all are done.  The
 * threads come from a pool kept for the process; a call that finds the pool
 * busy (nested, or from two threads) uses threads of its own.  A share whose
 * thread cannot start runs in the calling thread. */
void rt_parallel(int n, void *(*fn)(void *), void *args, size_t stride);
/* The same, for a call that another follows within microseconds (a stage
 * of the batched training kernels): the threads poll briefly for the next
 * call, and the caller for the shares, before sleeping. */
void rt_parallel_hot(int n, void *(*fn)(void *), void *args, size_t stride);
/* fn(ctx, part, lo, hi) over [0, n) cut into at most `parts` contiguous
 * ranges (one when n is small), each on its own thread: for elementwise
 * passes, whose results do not depend on the cut.  Called several times
 * per training step, so it polls like rt_parallel_hot. */
#define RT_MAX_PARTS 64
void rt_parallel_range(int parts, int64_t n, void (*fn)(void *ctx, int part, int64_t lo, int64_t hi), void *ctx);

/* Gradient distortion of the true class's logit (distortion.c): for each
 * labeled example e, expected[e] the mean of ||grad f_y(x') - grad f_y(x)||_1
 * over `samples` uniform points x' of the l_inf ball of radius eps around x
 * (clipped to [lo, hi] unless lo > hi), maximum[e] the largest found among
 * them and by a genetic search of `generations` generations (0: none);
 * witness (n x dim floats, or NULL) receives the point of the maximum.
 * Gradients come from input_grad. */
typedef struct rt_distortion_opts {
	double eps, lo, hi;
	int samples, generations, population;
	double mutation;   /* probability that a child's coordinate is redrawn */
	uint64_t seed;
	int threads;       /* 0: all cores */
} rt_distortion_opts;
int rt_distortion(const rt_model *m, const float *P, const rt_data *d, const rt_distortion_opts *o,
                  double *expected, double *maximum, float *witness, char *err);
/* Over a data set: percentiles P25/P50/P75/P100 and means of both. */
typedef struct rt_distortion_report {
	double expected[4], maximum[4], mean_expected, mean_maximum;
	int64_t n;
} rt_distortion_report;
int rt_distortion_summary(const rt_model *m, const float *P, const rt_data *d, const rt_distortion_opts *o,
                          rt_distortion_report *r, char *err);
/* llnc eval's output: a member "distortion" of its JSON object (with a
 * leading comma), or table lines. */
void rt_distortion_json(FILE *f, const rt_distortion_opts *o, const rt_distortion_report *r);
void rt_distortion_table(FILE *f, const rt_distortion_opts *o, const rt_distortion_report *r);

/* Command lines.  `defaults` is a '\n'-separated list of arguments (e.g.
 * "--epochs\n20\n--lr\n0.01") made by llnc from the .lln file's objective and
 * train blocks, parsed before argv[1..] so that the command line overrides
 * it (NULL: none).  argv[0] names the command in messages ("llnc train").
 * Returns the exit status: 0, 1 for bad input or failed writes, 2 for usage
 * errors.  Flags and report formats: docs/training.md. */
int rt_train_main(const rt_model *m, const char *defaults, int argc, char **argv);
int rt_eval_main(const rt_model *m, const char *defaults, int argc, char **argv);
/* Given a shape instead, a model without kernels (rt_is_shape: its name,
 * sizes, samples and max_len alone), rt_train_main, rt_eval_main,
 * rt_plot_main and rt_certify_job (P unused) check the flags alone: --help
 * is answered and a usage error reported (their status returned), else -1,
 * the flags being fine.  llnc does this before it compiles the kernels,
 * which takes seconds for a large model: a typo fails at once. */
static inline bool rt_is_shape(const rt_model *m) { return !m->prepare && !m->forward && !m->certify; }

/* ------------------------------------------------------------------------
 * Regions and toy data (regions.c, toy.c; library llnrt_train).  The
 * activation regions of 2-D models drawn exactly, boundaries along a
 * segment, and the built-in 2-D data sets of the paper's toy experiment.
 * Algorithms and formulas: docs/regions.md.
 * ---------------------------------------------------------------------- */
/* One activation region inside a 2-D window: a convex polygon (counter-clockwise vertices) and its activation pattern hash (rt_pattern_hash of z at an interior point). */
typedef struct rt_polygon { int n; double *xy; /* 2n: x0,y0,x1,y1,... */ uint64_t pattern; } rt_polygon;
typedef struct rt_regions { int64_t n; rt_polygon *p; } rt_regions;
/* Exact partition of the window [x0,x1]x[y0,y1] into activation regions of a model with n_in == 2: start from the window; for each hidden layer in order, split every current polygon by the hyperplanes of that layer's neurons, whose affine form on the polygon is exact because the masks of earlier layers are constant there: z_j(x) = z_j(c) + g_j . (x - c) at an interior point c (forward + grads kernels at c). Not sampling. Errors (n_in != 2: "model 'X' has 3 inputs; the region picture needs exactly 2") into err. */
int rt_regions_2d(const rt_model *m, const float *P, const double window[4], rt_regions *out, char *err);
void rt_regions_free(rt_regions *r);
/* Exact positions t in (0,1) where the segment a + t (b - a) crosses an activation-region boundary, found by walking directional margins (direction kernel) from a: step to just past each boundary and continue; any input dimension. */
int rt_segment_boundaries(const rt_model *m, const float *P, const float *a, const float *b, double **t, int64_t *n, char *err);
/* Built-in 2-D binary data sets: kind "spirals" (two interleaved spirals) or "moons" (two moons); labels 0/1 balanced; deterministic for (kind, n, noise, seed). x is n x 2, y labels. */
int rt_toy2d(const char *kind, int64_t n, double noise, uint64_t seed, rt_data *out, char *err);
/* `llnc data toy2d [--kind spirals|moons] [--n N] [--noise X] [--seed S] -o FILE.csv` (CSV: label,x1,x2 with a header comment; atomic write); argv[0] is the command name for messages. */
int rt_data_main(int argc, char **argv);
/* The --data form "toy2d:kind=spirals,n=400,noise=0.1,seed=1" (every key
 * optional): checks it against the model (2 inputs) and generates the set;
 * messages start with the quoted spec. */
int rt_toy2d_spec(const char *spec, const rt_model *m, rt_data *out, char *err);

/* ------------------------------------------------------------------------
 * Plots (plot.c and plot_flags.c, plot_compute.c, plot_draw.c, chart.c,
 * internal header plot.h; in llnrt_train; needs cairo).  `llnc plot FILE.lln
 * --weights W[,W2,...] -o OUT.svg|OUT.png`: per weights file a panel with
 * the prediction, every exact activation region of a 2-input model in a
 * window (rt_regions_2d), the data points with a circle of radius eps_2 and
 * an arrow for the logit's gradient; with --segment A,B, for any input size,
 * the region boundaries along a segment (rt_segment_boundaries) and the
 * logits there.  Only --data is taken from `defaults`; the figure is
 * written atomically.  Same exit statuses as rt_train_main; docs/plots.md.
 * With --log or --margins among the arguments it charts training logs or
 * per-example evaluations instead; m and defaults are then unused (NULL).
 * ---------------------------------------------------------------------- */
int rt_plot_main(const rt_model *m, const char *defaults, int argc, char **argv);

#endif
