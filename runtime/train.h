/* train.h: what the files of the `train` and `eval` commands share.
 *
 * config is a command line read against the settings table
 * (train_flags.c); run is one training run's state, which the loop
 * (train.c) keeps and the run's files (checkpoint.c, train_log.c) save and
 * restore.  Internal to the runtime: the public interface is rt.h.
 */
#ifndef LLN_TRAIN_H
#define LLN_TRAIN_H

#include "rt.h"

typedef struct config {
	const char *prog;
	int mode;               /* RT_MODE_TRAIN or RT_MODE_EVAL */
	const char *data, *test, *out, *init, *resume, *checkpoint, *log, *weights;
	const char *source;     /* the .lln file (from the defaults only), never an output */
	bool data_cli;          /* --data came from the command line */
	int epochs, batch, threads, distance_p, valid;
	uint64_t seed;
	int32_t norms;          /* evaluation norms */
	int loss;               /* -1: from the model (one logit: sigmoid), 0 softmax, 1 sigmoid */
	int nesterov;           /* into opt.nesterov once read */
	rt_optimizer opt;
	rt_objective obj;
	rt_init_scheme init_scheme;   /* fresh weights (not --init, not --resume) */
	bool json, help;
	bool per_example;       /* eval --json: every example's margins too */
	rt_names names;         /* --rename, --strip-prefix: for --init and --weights */
	const char *distortion, *clip;   /* eval --distortion EPS, --clip LO,HI|none */
	rt_distortion_opts dist;
	char **argv;            /* the command line as given, for the --resume hint */
	int argc;
	char *dcopy;            /* the defaults, split in place */
} config;

/* train_flags.c: the defaults list (llnc's settings from the .lln file) and
 * then argv[1..] into c; 0 or the exit status after printing why. */
int rt_config_parse(config *c, int mode, const char *defaults, int argc, char **argv);
void rt_config_free(config *c);
void rt_config_usage(FILE *f, const rt_model *m, const config *c);
bool rt_config_sigmoid(const rt_model *m, const config *c);
/* eval's data: the command line's --data, else the train block's test
 * set, else its data (NULL: none). */
const char *rt_config_eval_data(const config *c);
/* The objective and loss as the kernels need them; 2 after printing why
 * when they cannot go together or with the model. */
int rt_config_objective(const rt_model *m, config *c);
int rt_usage_fail(const config *c, const char *fmt, ...);
#define rt_user_fail(c, ...) rt_cmd_fail((c)->prog, 1, __VA_ARGS__)

/* report.c: evaluations as a table or JSON, durations. */
void rt_eval_table(FILE *f, const rt_eval *e, int32_t norms, const char *indent);
void rt_eval_json_members(FILE *f, const rt_eval *e, int32_t norms);
void rt_eval_json(FILE *f, const rt_eval *e, int32_t norms);
void rt_examples_json(FILE *f, int64_t n, int32_t norms, const float *eps, const unsigned char *correct);
void rt_json_num(FILE *f, double v);
void rt_format_duration(char *buf, size_t cap, double s);
double rt_now(void);

typedef struct run {
	const rt_model *m;
	config *c;
	bool sigmoid;
	char *ckpt_path;
	rt_data data, test, valid;
	int64_t n_train, *order, *perm;
	float *P, *pre, *best, *E;
	rt_opt_state os;
	rt_grad_ctx *gc;
	rt_tensor *extra;
	char **extra_names;
	int n_extra;
	int start_epoch, best_epoch;
	int saved_epoch;        /* the epoch the checkpoint on disk holds, 0: none */
	double best_loss, t_start;
	int64_t done_examples;  /* trained in this process, for the run's ETA */
	double comm_s;          /* the epoch's time in allreduce (with ranks) */
	int64_t comm_floats;    /* floats per allreduce */
	FILE *log;
} run;

static inline bool run_has_valid(const run *r)
{
	return r->c->valid > 0;
}

/* checkpoint.c: the weights file and the checkpoint. */
int rt_ckpt_layout(run *r);
int rt_save_weights(run *r, const float *P, int epoch, double vloss);
int rt_save_checkpoint(run *r, int epoch);
int rt_resume(run *r);

/* train_log.c: the --log file. */
int rt_log_open(run *r);
int rt_log_epoch(run *r, int epoch, double lr, double loss, double ce, double acc, const rt_eval *ve,
                 bool improved, double secs, double rate);

#endif
