/* certify.c: certification of a batch of inputs across threads.
 *
 * The generated kernels handle one input at a time with a private
 * workspace, and an input's results depend on nothing its workspace held
 * before; this file gives each thread its own workspace, and the threads
 * take the inputs one at a time from a shared counter.  The cost of an
 * input varies (pruned certification forms only the gradient rows that
 * may bind), so fixed shares left one thread waiting for the other.  The
 * results do not depend on the thread count, which is capped at the cores
 * and the inputs there are.
 * Allocations go through the runtime's wrapper (alloc.c), so the tests can
 * fail each one.  The per-parameter quantities (first-layer norms) are
 * computed once per batch by the model's prepare kernel.
 */
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt.h"

int rt_ncpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

typedef struct share {
	const rt_model *m;
	const float *P, *pre;
	rt_batch *b;
	atomic_llong *next;   /* the next input nobody has taken */
	int failed;
} share;

int rt_parse_norms(const char *s, int32_t *norms)
{
	*norms = 0;
	char buf[64];
	if (strlen(s) >= sizeof buf)
		return -1;
	snprintf(buf, sizeof buf, "%s", s);
	for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(tok, "1") == 0)
			*norms |= RT_NORM_BIT(RT_L1);
		else if (strcmp(tok, "2") == 0)
			*norms |= RT_NORM_BIT(RT_L2);
		else if (strcmp(tok, "inf") == 0)
			*norms |= RT_NORM_BIT(RT_LINF);
		else
			return -1;
	}
	return *norms ? 0 : -1;
}

static void *run_share(void *arg)
{
	share *s = arg;
	const rt_model *m = s->m;
	rt_batch *b = s->b;
	float *ws = rt_alloc_floats(m->ws_floats);
	float *z = rt_alloc_floats(m->n_hidden + 1);
	float *logits = rt_alloc_floats(m->n_out);
	if (!ws || !z || !logits) {
		s->failed = 1;
	} else {
		for (int64_t i; (i = atomic_fetch_add_explicit(s->next, 1, memory_order_relaxed)) < b->n;) {
			const float *x = b->x + i * m->n_in;
			const float *xlo = b->xlo ? b->xlo + i * m->n_in : NULL;
			rt_seq_begin(m, ws, rt_seq_len(m, b->len, i));
			m->certify(s->P, s->pre, x, b->norms, ws, z, logits, &b->cert[i], xlo);
			if (b->pattern)
				b->pattern[i] = rt_seq_pattern(m, rt_seq_len(m, b->len, i), z);
			if (b->dirs) {
				const float *d = b->dirs + (b->n_dirs == 1 ? 0 : i) * m->n_in;
				m->direction(s->P, x, d, ws, &b->t[i], &b->tbind[i], xlo);
			}
		}
	}
	free(ws);
	free(z);
	free(logits);
	return NULL;
}

int rt_certify_batch(const rt_model *m, const float *P, rt_batch *b)
{
	/* More threads than cores or inputs only cost workspaces. */
	int threads = b->threads > 0 ? b->threads : rt_ncpus();
	if (threads > rt_ncpus())
		threads = rt_ncpus();
	if (threads > b->n)
		threads = b->n > 0 ? (int)b->n : 1;
	float *pre = rt_alloc_floats(m->pre_floats);
	share *sh = rt_calloc((size_t)threads, sizeof *sh);
	if (!pre || !sh) {
		free(pre);
		free(sh);
		return -1;
	}
	m->prepare(P, pre);
	atomic_llong next = 0;
	for (int t = 0; t < threads; t++)
		sh[t] = (share){ .m = m, .P = P, .pre = pre, .b = b, .next = &next };
	rt_parallel(threads, run_share, sh, sizeof *sh);
	int failed = 0;
	for (int t = 0; t < threads; t++)
		failed |= sh[t].failed;
	free(pre);
	free(sh);
	return failed ? -1 : 0;
}

void rt_format_down(char *buf, size_t cap, double v, int digits)
{
	snprintf(buf, cap, "%.*g", digits, v);
	if (!(v > 0) || isinf(v) || strtod(buf, NULL) <= v)
		return;
	/* the decimal rounded up: one unit less in its last digit is below v
	 * (it was at most half a unit above) */
	char e[64];
	snprintf(e, sizeof e, "%.*e", digits - 1, v);
	for (char *p = strchr(e, 'e') - 1; p >= e; p--) {
		if (*p == '.')
			continue;
		if (*p > '0') {
			(*p)--;
			break;
		}
		*p = '9';
	}
	snprintf(buf, cap, "%.*g", digits, strtod(e, NULL));
}
