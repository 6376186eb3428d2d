/* train_log.c: the --log file of a training run, one JSON line per epoch.
 *
 * Each line is flushed and checked, so a full disk stops the run.  The
 * line of an epoch is written before its checkpoint; a resumed run first
 * drops the lines of epochs after the checkpoint's, so every epoch is in
 * the log exactly once (docs/training.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train.h"

/* One line per epoch, flushed and checked: a full disk stops the run. */
int rt_log_epoch(run *r, int epoch, double lr, double loss, double ce, double acc, const rt_eval *ve,
                 bool improved, double secs, double rate)
{
	FILE *f = r->log;
	fprintf(f, "{\"epoch\":%d,\"lr\":%.9g,\"train_loss\":", epoch, lr);
	rt_json_num(f, loss);
	fputs(",\"train_ce\":", f);
	rt_json_num(f, ce);
	fputs(",\"train_accuracy\":", f);
	rt_json_num(f, acc);
	if (ve) {
		fputs(",\"valid\":", f);
		rt_eval_json(f, ve, r->c->norms);
		fprintf(f, ",\"best\":%s", improved ? "true" : "false");
	}
	fprintf(f, ",\"seconds\":%.3f,\"samples_per_s\":%.1f", secs, rate);
	if (rt_dist_size() > 1)   /* data-parallel runs: the ranks and the time they spent in allreduce */
		fprintf(f, ",\"ranks\":%d,\"allreduce_seconds\":%.6f,\"allreduce_floats\":%lld", rt_dist_size(), r->comm_s,
		        (long long)r->comm_floats);
	fputs("}\n", f);
	if (fflush(f) != 0 || ferror(f))
		return rt_user_fail(r->c, "cannot write %s: %s", r->c->log, strerror(errno ? errno : EIO));
	return 0;
}

/* The epoch number of a log line, or -1. */
static long long log_line_epoch(const char *s, const char *e)
{
	static const char key[] = "{\"epoch\":";
	if ((size_t)(e - s) <= sizeof key - 1 || memcmp(s, key, sizeof key - 1) != 0)
		return -1;
	return strtoll(s + sizeof key - 1, NULL, 10);
}

/* Opens the log.  A resumed run keeps the lines of the epochs its
 * checkpoint holds and drops later ones, which a run killed between its
 * log line and its checkpoint left (docs/training.md), so every epoch is
 * in the log exactly once. */
int rt_log_open(run *r)
{
	config *c = r->c;
	struct stat st;
	if (c->resume && stat(c->log, &st) == 0 && S_ISREG(st.st_mode)) {
		char err[RT_ERRLEN];
		FILE *f = fopen(c->log, "rb");
		char *buf = f && st.st_size >= 0 ? malloc((size_t)st.st_size + 1) : NULL;
		size_t len = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
		bool ok = buf && !ferror(f);
		int e = errno;
		if (f)
			fclose(f);
		if (!ok) {
			free(buf);
			return rt_user_fail(c, "cannot read %s: %s", c->log, strerror(f ? e : errno));
		}
		size_t keep = 0;
		for (size_t at = 0; at < len;) {
			char *nl = memchr(buf + at, '\n', len - at);
			size_t end = nl ? (size_t)(nl - buf) + 1 : len;
			if (log_line_epoch(buf + at, buf + end) <= r->start_epoch) {
				memmove(buf + keep, buf + at, end - at);
				keep += end - at;
			}
			at = end;
		}
		int rc = keep < len ? rt_write_atomic(c->log, buf, keep, err) : 0;
		free(buf);
		if (rc)
			return rt_user_fail(c, "%s", err);
	}
	r->log = fopen(c->log, c->resume ? "a" : "w");
	if (!r->log)
		return rt_user_fail(c, "cannot write %s: %s", c->log, strerror(errno));
	return 0;
}
