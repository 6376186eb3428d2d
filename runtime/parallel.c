/* parallel.c: work split into shares, one thread each.
 *
 * The batch kernels, evaluation, the distortion and the plots' heat maps
 * all give each thread a contiguous share of independent work and combine
 * the results afterwards in a fixed order, so that nothing depends on the
 * thread count.  This is that fork and join, once, and its form for the
 * elementwise passes over every parameter (rt_parallel_range).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "rt.h"

void rt_parallel(int n, void *(*fn)(void *), void *args, size_t stride)
{
	char *a = args;
	pthread_t *tid = n > 1 ? malloc(sizeof *tid * (size_t)(n - 1)) : NULL;
	bool *started = n > 1 ? calloc((size_t)(n - 1), sizeof *started) : NULL;
	if (n > 1 && (!tid || !started)) {
		/* no memory for threads: the work still gets done, in this one */
		for (int t = 0; t < n; t++)
			fn(a + (size_t)t * stride);
		free(tid);
		free(started);
		return;
	}
	for (int t = 0; t < n - 1; t++)
		started[t] = pthread_create(&tid[t], NULL, fn, a + (size_t)t * stride) == 0;
	if (n > 0)   /* the calling thread takes the last share itself */
		fn(a + (size_t)(n - 1) * stride);
	for (int t = 0; t < n - 1; t++) {
		if (started[t])
			pthread_join(tid[t], NULL);
		else   /* a thread that could not start: its share here */
			fn(a + (size_t)t * stride);
	}
	free(tid);
	free(started);
}

typedef struct range_job {
	void (*fn)(void *ctx, int part, int64_t lo, int64_t hi);
	void *ctx;
	int part;
	int64_t lo, hi;
} range_job;

static void *run_range(void *arg)
{
	range_job *j = arg;
	j->fn(j->ctx, j->part, j->lo, j->hi);
	return NULL;
}

void rt_parallel_range(int parts, int64_t n, void (*fn)(void *ctx, int part, int64_t lo, int64_t hi), void *ctx)
{
	/* below this a second thread costs more than it saves */
	if (n < 16384 || parts < 2)
		parts = 1;
	range_job jobs[RT_MAX_PARTS];
	if (parts > RT_MAX_PARTS)
		parts = RT_MAX_PARTS;
	for (int t = 0; t < parts; t++) {   /* bounds on 16-float (cache line) boundaries */
		int64_t lo = n * t / parts / 16 * 16, hi = t + 1 == parts ? n : n * (t + 1) / parts / 16 * 16;
		jobs[t] = (range_job){ fn, ctx, t, lo, hi };
	}
	rt_parallel(parts, run_range, jobs, sizeof *jobs);
}
