/* parallel.c: work split into shares, one thread each.
 *
 * The batch kernels, evaluation, the distortion and the plots' heat maps
 * all give each thread a contiguous share of independent work and combine
 * the results afterwards in a fixed order, so that nothing depends on the
 * thread count.  This is that fork and join, once.
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
