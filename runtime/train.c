/* train.c: the training loop, and the `train` command around it.
 *
 * One epoch: shuffle the training examples with a permutation seeded by
 * (seed, epoch), then for each batch compute the mean gradient of the
 * objective across threads (grad.c) and take one optimizer step.  After the
 * epoch the held-out validation examples are evaluated; the weights with
 * the best validation loss go to OUT, and a checkpoint is written so that a
 * run can be resumed (checkpoint.c).  Every random choice derives from the
 * seed and the epoch number alone, so training 2 epochs equals training 1
 * and resuming for 1, bit for bit, and two runs with the same seed and
 * thread count write identical files.
 *
 * Everything given is checked before any training starts (train_flags.c,
 * labeled.c), and all output files are written atomically.  SIGINT and
 * SIGTERM stop the run at the next batch boundary: the checkpoint of the
 * last finished epoch is complete on disk (a save in progress finishes
 * first), and the command that continues the run is printed.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train.h"

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

/* ------------------------------------------------------------------------
 * The training run
 * ---------------------------------------------------------------------- */

/* Random index below `bound` without modulo bias. */
static uint64_t below(rt_rng *r, uint64_t bound)
{
	uint64_t threshold = (0 - bound) % bound;
	for (;;) {
		uint64_t x = rt_rng_next(r);
		if (x >= threshold)
			return x % bound;
	}
}

static void shuffle(int64_t *a, int64_t n, uint64_t seed)
{
	rt_rng r;
	rt_rng_seed(&r, seed);
	for (int64_t i = n - 1; i > 0; i--) {
		int64_t j = (int64_t)below(&r, (uint64_t)i + 1);
		int64_t t = a[i];
		a[i] = a[j];
		a[j] = t;
	}
}

static uint64_t mix(uint64_t a, uint64_t b)
{
	uint64_t x = a ^ (b * 0x9e3779b97f4a7c15ULL);
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

#define SPLIT_SALT 0x6c6c6e2d73706c74ULL   /* "lln-splt" */
#define EPOCH_SALT 0x6c6c6e2d65706f63ULL   /* "lln-epoc" */
#define AXES_SALT 0x6c6c6e2d61786573ULL    /* "lln-axes": approximate ROLL */

static void run_free(run *r)
{
	free(r->ckpt_path);
	rt_data_free(&r->data);
	rt_data_free(&r->test);
	rt_data_free(&r->valid);
	free(r->order);
	free(r->perm);
	free(r->P);
	free(r->pre);
	free(r->best);
	free(r->E);
	rt_opt_free(&r->os);
	rt_grad_ctx_free(r->gc);
	for (int i = 0; i < r->n_extra; i++)
		free(r->extra_names[i]);
	free(r->extra_names);
	free(r->extra);
	if (r->log)
		fclose(r->log);
}

/* The run's files, all checked before any work (rt_files_check): inputs
 * are never outputs, outputs are distinct and writable.  --resume may be
 * the checkpoint it continues. */
static int check_files(const config *c, const char *ckpt)
{
	char *dl = NULL, *tl = NULL;
	char *d = c->data && strncmp(c->data, "toy2d:", 6) ? rt_split_labels(c->data, &dl) : NULL;
	char *t = c->test && strncmp(c->test, "toy2d:", 6) ? rt_split_labels(c->test, &tl) : NULL;
	const rt_file f[] = {
		{ "the model", c->source, RT_FILE_IN, 0 },
		{ "--data", d, RT_FILE_IN, 0 }, { "--data", dl, RT_FILE_IN, 0 },
		{ "--test", t, RT_FILE_IN, 0 }, { "--test", tl, RT_FILE_IN, 0 },
		{ "--init", c->init, RT_FILE_IN, 0 }, { "--resume", c->resume, RT_FILE_IN, 1 },
		{ "-o", c->out, RT_FILE_OUT, 0 }, { "--checkpoint", ckpt, RT_FILE_OUT, 1 },
		{ "--log", c->log, RT_FILE_STREAM, 0 },
	};
	char err[RT_ERRLEN];
	int rc = rt_files_check(f, (int)(sizeof f / sizeof *f), err);
	free(d);
	free(t);
	return rc ? rt_cmd_fail(c->prog, rc, "%s", err) : 0;
}

/* "1m23s" for the epoch and, after the first epoch, for the whole run:
 * the examples still to train at the run's rate so far, whose time
 * includes validation and saving. */
static void progress(const run *r, int epoch, int64_t b, int64_t nbatches, int64_t done, double t0,
                     double t, double sum_loss)
{
	const config *c = r->c;
	double rate = (double)done / (t - t0 > 0 ? t - t0 : 1e-9);
	double run_rate = (double)(r->done_examples + done) / (t - r->t_start > 0 ? t - r->t_start : 1e-9);
	double left = (double)(r->n_train - done) + (double)r->n_train * (double)(c->epochs - epoch - 1);
	char eta[32], total[32];
	rt_format_duration(eta, sizeof eta, (double)(r->n_train - done) / rate);
	rt_format_duration(total, sizeof total, left / run_rate);
	fprintf(stderr, "\repoch %d/%d  batch %lld/%lld  loss %.4f  %.0f samples/s  ETA %s  run ETA %s\033[K",
	        epoch + 1, c->epochs, (long long)(b + 1), (long long)nbatches, sum_loss / (double)done, rate,
	        eta, total);
}

/* One epoch; 130 when a signal stopped it. */
static int train_epoch(run *r, int epoch, double lr, double *loss_out, double *ce_out, double *acc_out,
                       double *secs)
{
	config *c = r->c;
	const int64_t n = r->n_train;
	memcpy(r->perm, r->order, sizeof(int64_t) * (size_t)n);
	r->comm_s = 0;
	shuffle(r->perm, n, mix(c->seed ^ EPOCH_SALT, (uint64_t)epoch));
	int64_t nbatches = (n + c->batch - 1) / c->batch, correct = 0;
	bool tty = isatty(2) && rt_dist_rank() == 0;
	const int ranks = rt_dist_size();
	double t0 = rt_now(), last = t0, sum_loss = 0, sum_ce = 0;
	for (int64_t b = 0; b < nbatches; b++) {
		if (stop_signal && ranks == 1)   /* with ranks, every one stops at the same step */
			return 130;
		int64_t begin = b * c->batch, nb = n - begin < c->batch ? n - begin : c->batch;
		rt_grad_prepare(r->gc, &c->obj, r->P, r->pre);
		/* approximate ROLL's axes: fresh every step, the same after --resume */
		c->obj.sample_seed = mix(mix(c->seed ^ AXES_SALT, (uint64_t)epoch), (uint64_t)b);
		double loss, ce;
		int64_t right;
		float *sums;
		if (ranks == 1) {
			sums = rt_batch_sums_ctx(r->gc, &c->obj, r->P, r->pre, r->data.x, r->data.y, r->perm + begin, nb,
			                         &loss, &ce);
			if (!sums)
				return rt_user_fail(c, "out of memory");
			right = rt_grad_ctx_correct(r->gc);
		} else {
			/* this rank's contiguous part of the batch; the sums of every
			 * part, with the stop flag, in one allreduce (docs/scale.md) */
			int64_t lo, hi, len;
			rt_dist_part(nb, rt_dist_rank(), ranks, &lo, &hi);
			sums = rt_grad_sums(r->gc, &c->obj, r->P, r->pre, r->data.x, r->data.y, r->perm + begin + lo,
			                    hi - lo, &len);
			if (!sums)
				return rt_user_fail(c, "out of memory");
			float *tail = sums + len;
			tail[-RT_SUM_FLAG] = stop_signal != 0;
			double tc = rt_now();
			rt_dist_sum(sums, len);
			r->comm_s += rt_now() - tc;
			r->comm_floats = len;
			if (tail[-RT_SUM_FLAG] > 0)
				return 130;
			loss = tail[-RT_SUM_LOSS] / (double)nb;
			ce = tail[-RT_SUM_CE] / (double)nb;
			right = (int64_t)tail[-RT_SUM_CORRECT];
			rt_grad_fold(r->gc, &c->obj, r->P, sums);
		}
		const int threads = c->threads > 0 ? c->threads : rt_ncpus();
		/* the step checks the gradient as it goes: after a gradient that is
		 * not finite the weights are garbage, and the run ends unsaved */
		bool finite = isfinite(loss) && rt_opt_step_mean(&c->opt, &r->os, lr, r->P, sums, nb, threads);
		if (!finite) {   /* the same on every rank: rank 0 says it */
			if (tty)
				fputc('\n', stderr);
			if (rt_dist_rank() > 0)
				return 1;
			return rt_user_fail(c, "epoch %d, batch %lld: the %s is not finite; training diverged "
			                    "(try a smaller --lr); the checkpoint holds the last finished epoch",
			                    epoch + 1, (long long)(b + 1), isfinite(loss) ? "gradient" : "loss");
		}
		sum_loss += loss * (double)nb;
		sum_ce += ce * (double)nb;
		correct += right;
		double t = rt_now();
		if (tty && (t - last > 0.2 || b + 1 == nbatches)) {
			last = t;
			progress(r, epoch, b, nbatches, begin + nb, t0, t, sum_loss);
		}
	}
	r->done_examples += n;
	*loss_out = sum_loss / (double)n;
	*ce_out = sum_ce / (double)n;
	*acc_out = (double)correct / (double)n;
	*secs = rt_now() - t0;
	return 0;
}

/* An argument as the shell reads it back. */
static void shell_word(FILE *f, const char *s)
{
	if (*s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=.,/:@%") == strlen(s)) {
		fputs(s, f);
		return;
	}
	fputc('\'', f);
	for (; *s; s++)
		if (*s == '\'')
			fputs("'\\''", f);
		else
			fputc(*s, f);
	fputc('\'', f);
}

/* After a signal: what the checkpoint holds and the command that goes on
 * from it, the command line as given with --resume in place of --init and
 * of an earlier --resume. */
static int interrupted(const run *r)
{
	const config *c = r->c;
	if (isatty(2))
		fputs("\r\033[K", stderr);
	if (!r->saved_epoch) {
		fprintf(stderr, "%s: interrupted before the first epoch finished; nothing to resume\n", c->prog);
		return 130;
	}
	/* a resumed run that finished no epoch since: its checkpoint is the one it read */
	const char *ck = r->saved_epoch > r->start_epoch || !c->resume ? r->ckpt_path : c->resume;
	fprintf(stderr, "%s: interrupted; %s holds epoch %d of %d.  Continue with:\n  ", c->prog, ck,
	        r->saved_epoch, c->epochs);
	/* llnc passes the .lln file as --source: then the program is llnc's
	 * executable and the command the last word of "llnc train" */
	char exe[4096];
	if (rt_dist_size() > 1)   /* the same job again (docs/scale.md) */
		fprintf(stderr, "mpirun -np %d ", rt_dist_size());
	ssize_t n = c->source ? readlink("/proc/self/exe", exe, sizeof exe - 1) : -1;
	if (n > 0) {
		exe[n] = 0;
		shell_word(stderr, exe);
		fprintf(stderr, " %s ", strrchr(c->prog, ' ') ? strrchr(c->prog, ' ') + 1 : "train");
		shell_word(stderr, c->source);
	} else {
		shell_word(stderr, c->prog);
	}
	for (int i = 1; i < c->argc; i++) {
		const char *a = c->argv[i];
		bool skip = !strcmp(a, "--resume") || !strcmp(a, "--init");
		if (skip || !strncmp(a, "--resume=", 9) || !strncmp(a, "--init=", 7)) {
			i += skip;
			continue;
		}
		fputc(' ', stderr);
		shell_word(stderr, a);
	}
	fputs(" --resume ", stderr);
	shell_word(stderr, ck);
	fputc('\n', stderr);
	return 130;
}

/* What every rank of a job must hold alike before the first step: the
 * data, the settings the steps depend on and the starting weights and
 * optimizer state, as one 64-bit digest. */
static uint64_t digest(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	uint64_t w;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		memcpy(&w, b + i, 8);
		h = mix(h, w);
	}
	for (w = 0; i < n; i++)
		w = w << 8 | b[i];
	return mix(h, w ^ n);
}

static uint64_t run_digest(const run *r)
{
	const config *c = r->c;
	const int64_t n = r->data.n, D = r->data.dim;
	const int64_t head[] = { n, D, r->n_train, (int64_t)c->seed, c->batch, c->epochs, r->start_epoch,
	                         (int64_t)r->os.step, c->obj.kind, c->opt.kind };
	uint64_t h = digest(0, head, sizeof head);
	h = digest(h, r->data.x, sizeof(float) * (size_t)(n * D));
	h = digest(h, r->data.y, sizeof(int32_t) * (size_t)n);
	if (r->data.len)
		h = digest(h, r->data.len, sizeof(int32_t) * (size_t)n);
	h = digest(h, r->P, sizeof(float) * (size_t)r->m->n_params);
	return digest(h, r->os.mem, sizeof(float) * (size_t)r->os.nstate * (size_t)r->m->n_params);
}

/* The options together, before any input is read: what needs the model
 * takes only its name and sizes, so that llnc checks them before it
 * compiles the kernels (train_run with a shape).  Sets r->sigmoid and
 * r->ckpt_path; returns 0 or the exit status. */
static int train_options(run *r)
{
	config *c = r->c;
	if (!c->out)
		return rt_usage_fail(c, "-o OUT.safetensors is required (where the trained weights go)");
	if (!c->data)
		return rt_usage_fail(c, "no training data: give --data FILE[,LABELS] (or data = ... in the "
		                       "train block)");
	if (c->init && c->resume)
		return rt_usage_fail(c, "--init and --resume exclude each other (--resume continues a run "
		                       "with its optimizer state, --init starts a new one from weights)");
	if (c->opt.kind == RT_SGD && rt_nesterov_unsupported(c->opt.nesterov, c->opt.momentum))
		return rt_usage_fail(c, "--nesterov on needs --momentum > 0");
	int rc = rt_config_objective(r->m, c);
	if (rc)
		return rc;
	r->sigmoid = c->obj.sigmoid;
	size_t ol = strlen(c->out);
	r->ckpt_path = malloc(ol + 32);
	if (!r->ckpt_path)
		return rt_user_fail(c, "out of memory");
	if (c->checkpoint)
		snprintf(r->ckpt_path, ol + 32, "%s", c->checkpoint);
	else if (ol > 12 && strcmp(c->out + ol - 12, ".safetensors") == 0)
		snprintf(r->ckpt_path, ol + 32, "%.*s.ckpt.safetensors", (int)(ol - 12), c->out);
	else
		snprintf(r->ckpt_path, ol + 32, "%s.ckpt", c->out);
	return check_files(c, r->ckpt_path);
}

static int train_run(const rt_model *m, config *c)
{
	run R = { .m = m, .c = c, .best_loss = INFINITY };
	run *r = &R;
	char err[RT_ERRLEN];
	int rc = train_options(r);
	if (rc)
		goto done;
	if (rt_is_shape(m)) {   /* a shape: the flags alone (rt.h) */
		rc = -1;
		goto done;
	}
	rc = 1;
	if (!m->train_forward || !m->train_backward || !m->train_finish || !m->prepare) {
		rt_user_fail(c, "model '%s' was compiled without training kernels", m->name);
		goto done;
	}

	/* -- inputs, all read and checked before training -- */
	if (rt_load_labeled(c->prog, m, r->sigmoid, c->data, &r->data))
		goto done;
	if (c->test && rt_load_labeled(c->prog, m, r->sigmoid, c->test, &r->test))
		goto done;
	if (c->valid >= r->data.n) {
		rt_user_fail(c, "--valid %lld leaves no training examples: %s holds %lld", (long long)c->valid,
		          c->data, (long long)r->data.n);
		goto done;
	}

	const int64_t N = r->data.n, D = m->n_in;
	r->n_train = N - c->valid;
	r->order = malloc(sizeof(int64_t) * (size_t)N);
	r->perm = malloc(sizeof(int64_t) * (size_t)N);
	r->P = rt_alloc_floats(m->n_params);
	r->pre = rt_alloc_floats(m->pre_floats);
	r->best = run_has_valid(r) ? rt_alloc_floats(m->n_params) : NULL;
	int threads = c->threads > 0 ? c->threads : rt_ncpus();
	r->gc = rt_grad_ctx_new(m, threads);
	if (r->gc)
		rt_grad_ctx_lengths(r->gc, r->data.len);
	if (!r->order || !r->perm || !r->P || !r->pre || (run_has_valid(r) && !r->best) || !r->gc ||
	    rt_opt_init(&r->os, &c->opt, m->n_params) != 0 || rt_ckpt_layout(r) != 0) {
		rt_user_fail(c, "out of memory");
		goto done;
	}
	/* the split: a permutation fixed by the seed; its tail is the validation set */
	for (int64_t i = 0; i < N; i++)
		r->order[i] = i;
	shuffle(r->order, N, mix(c->seed ^ SPLIT_SALT, 0));
	if (run_has_valid(r)) {
		r->valid.n = c->valid;
		r->valid.dim = D;
		r->valid.x = malloc(sizeof(float) * (size_t)(c->valid * D));
		r->valid.y = malloc(sizeof(int32_t) * (size_t)c->valid);
		r->valid.len = r->data.len ? malloc(sizeof(int32_t) * (size_t)c->valid) : NULL;
		if (!r->valid.x || !r->valid.y || (r->data.len && !r->valid.len)) {
			rt_user_fail(c, "out of memory");
			goto done;
		}
		for (int64_t i = 0; i < c->valid; i++) {
			int64_t k = r->order[r->n_train + i];
			memcpy(r->valid.x + i * D, r->data.x + k * D, sizeof(float) * (size_t)D);
			r->valid.y[i] = r->data.y[k];
			if (r->data.len)
				r->valid.len[i] = r->data.len[k];
		}
	}
	/* order[0..n_train) is the training set; each epoch shuffles a copy */
	if (c->resume) {
		if (rt_resume(r))
			goto done;
	} else if (c->init) {
		if (rt_params_load_named(m->tensors, m->n_tensors, &c->names, c->init, r->P, err) != 0) {
			fprintf(stderr, "%s\n", err);
			goto done;
		}
	} else {
		rt_init_params(m->tensors, m->n_tensors, c->seed, c->init_scheme, r->P);
	}
	if (rt_dist_size() > 1 && !rt_dist_agree(run_digest(r))) {
		if (rt_dist_rank() == 0)
			rt_user_fail(c, "the %d ranks disagree on the data, the settings or the starting weights; "
			             "each must read the same files with the same options (docs/scale.md)",
			             rt_dist_size());
		goto done;
	}
	/* rank 0 alone writes: the log, the weights, the checkpoint, reports */
	const bool lead = rt_dist_rank() == 0;
	if (lead && c->log && rt_log_open(r))
		goto done;

	/* -- epochs -- */
	bool tty = isatty(2) && lead;
	r->saved_epoch = r->start_epoch;
	r->t_start = rt_now();
	stop_signal = 0;
	struct sigaction sa = { .sa_handler = on_signal }, old_int, old_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	int epoch = r->start_epoch;
	bool stopped = false;
	if (r->start_epoch >= c->epochs && lead)
		fprintf(stderr, "%s: %s has already trained %d epochs (--epochs %d); nothing to train\n",
		        c->prog, c->resume, r->start_epoch, c->epochs);
	for (; epoch < c->epochs; epoch++) {
		double lr = rt_lr_at(&c->opt, epoch), loss = 0, ce = 0, acc = 0, secs = 0;
		int erc = train_epoch(r, epoch, lr, &loss, &ce, &acc, &secs);
		if (erc == 130) {
			stopped = true;
			break;
		}
		if (erc)
			goto restore;
		double rate = (double)r->n_train / (secs > 0 ? secs : 1e-9);
		rt_eval ve;
		bool improved = false;
		if (!lead)   /* validation and saving are rank 0's (docs/scale.md) */
			continue;
		if (run_has_valid(r)) {
			if (rt_evaluate(m, &c->obj, r->P, &r->valid, threads, c->norms, &ve) != 0) {
				rt_user_fail(c, "out of memory");
				goto restore;
			}
			if (ve.loss < r->best_loss) {
				improved = true;
				r->best_loss = ve.loss;
				r->best_epoch = epoch + 1;
				memcpy(r->best, r->P, sizeof(float) * (size_t)m->n_params);
			}
		}
		/* log line, weights, checkpoint: a kill between them leaves the
		 * log ahead of the checkpoint, which log_open trims on resume */
		if (r->log && rt_log_epoch(r, epoch + 1, lr, loss, ce, acc, run_has_valid(r) ? &ve : NULL, improved,
		                           secs, rate))
			goto restore;
		if (improved && rt_save_weights(r, r->best, r->best_epoch, r->best_loss))
			goto restore;
		if (rt_save_checkpoint(r, epoch + 1))
			goto restore;
		r->saved_epoch = epoch + 1;
		if (tty)
			fputs("\r\033[K", stderr);
		fprintf(stderr, "epoch %d/%d  lr %.4g  loss %.4f (ce %.4f)", epoch + 1, c->epochs, lr, loss, ce);
		if (run_has_valid(r)) {
			fprintf(stderr, "  valid: acc %.2f%%  loss %.4f", 100 * ve.accuracy, ve.loss);
			if (c->norms & RT_NORM_BIT(RT_L2))
				fprintf(stderr, "  eps_2 P50 %.3g", ve.eps_pct[RT_L2][1]);
			if (improved)
				fputs("  *", stderr);
		} else {
			fprintf(stderr, "  train acc %.2f%%", 100 * acc);
		}
		fprintf(stderr, "  %.1fs  %.0f samples/s", secs, rate);
		if (rt_dist_size() > 1)   /* what data parallelism costs (docs/scale.md) */
			fprintf(stderr, "  %d ranks, allreduce %.3gs (%lld floats/step)", rt_dist_size(), r->comm_s,
			        (long long)r->comm_floats);
		fputc('\n', stderr);
		/* ranks stop together, at the next step's allreduce, never alone */
		if (stop_signal && rt_dist_size() == 1) {
			stopped = true;
			break;
		}
	}
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	if (stopped) {
		rc = lead ? interrupted(r) : 130;
		goto done;
	}
	if (!lead) {
		rc = 0;
		goto done;
	}

	/* -- the result -- */
	const float *final = r->P;
	if (run_has_valid(r)) {
		if (r->best_epoch > 0) {
			final = r->best;
			if (rt_save_weights(r, r->best, r->best_epoch, r->best_loss))
				goto done;
		} else {
			/* validation loss never finite: keep the last weights */
			if (rt_save_weights(r, r->P, c->epochs, NAN))
				goto done;
		}
	} else if (rt_save_weights(r, r->P, c->epochs > r->start_epoch ? c->epochs : r->start_epoch, NAN)) {
		goto done;
	}
	printf("model %s: trained %d epochs (%lld steps) with %s, objective %s\n", m->name,
	       c->epochs > r->start_epoch ? c->epochs : r->start_epoch, (long long)r->os.step,
	       rt_optimizer_names[c->opt.kind], rt_objective_names[c->obj.kind]);
	if (run_has_valid(r) && r->best_epoch > 0)
		printf("best validation loss %.6g at epoch %d\n", r->best_loss, r->best_epoch);
	printf("weights: %s\ncheckpoint: %s\n", c->out, r->ckpt_path);
	rt_eval e;
	if (run_has_valid(r)) {
		if (rt_evaluate(m, &c->obj, final, &r->valid, threads, c->norms, &e) != 0) {
			rt_user_fail(c, "out of memory");
			goto done;
		}
		printf("\nvalidation set (%s weights)\n", r->best_epoch > 0 ? "best" : "final");
		rt_eval_table(stdout, &e, c->norms, "  ");
	}
	if (c->test) {
		if (rt_evaluate(m, &c->obj, final, &r->test, threads, c->norms, &e) != 0) {
			rt_user_fail(c, "out of memory");
			goto done;
		}
		printf("\ntest set %s\n", c->test);
		rt_eval_table(stdout, &e, c->norms, "  ");
	}
	rc = fflush(stdout) == 0 ? 0 : 1;
	goto done;
restore:
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
done:
	run_free(r);
	return rc;
}

int rt_train_main(const rt_model *m, const char *defaults, int argc, char **argv)
{
	config c;
	/* a shape checks the flags alone (rt.h), before any rank exists */
	int rc = rt_is_shape(m) ? 0 : rt_dist_start(argc > 0 ? argv[0] : "train");
	if (rc)
		return rc;
	rc = rt_config_parse(&c, RT_MODE_TRAIN, defaults, argc, argv);
	char prog[512];
	if (rc == 0 && rt_dist_rank() > 0) {   /* which rank says what */
		snprintf(prog, sizeof prog, "%s (rank %d)", c.prog, rt_dist_rank());
		c.prog = prog;
	}
	if (rc == 0 && c.help)
		rt_config_usage(stdout, m, &c);
	else if (rc == 0)
		rc = train_run(m, &c);
	rt_config_free(&c);
	/* a rank that failed alone would leave the others waiting in the next
	 * allreduce: its error ends them all (after it printed why) */
	if (rc != 0 && rc != 130 && rt_dist_size() > 1)
		rt_dist_abort(rc);
	rt_dist_stop();
	return rc;
}
