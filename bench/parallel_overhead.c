/* parallel_overhead.c: what one rt_parallel(2, ...) call costs with empty
 * shares, the fork and join alone (docs/performance.md, "Thread pool").
 *
 *     cc -O2 -pthread -Iruntime bench/parallel_overhead.c runtime/parallel.c -o /tmp/po && /tmp/po [CALLS]
 *
 * Prints the median over 11 rounds of the mean time per call in a round
 * of CALLS calls (default 20000), after one round to warm up, for n = 2
 * and n = 4.  Built against another version of runtime/parallel.c (git
 * show REV:runtime/parallel.c) it gives that version's cost.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "rt.h"

static void *empty(void *arg)
{
	return arg;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	long calls = argc > 1 ? strtol(argv[1], NULL, 10) : 20000;
	enum { ROUNDS = 11 };
	char args[4];
	for (int n = 2; n <= 4; n += 2) {
		double t[ROUNDS];
		for (int r = -1; r < ROUNDS; r++) {
			double t0 = now();
			for (long i = 0; i < calls; i++)
				rt_parallel(n, empty, args, 1);
			if (r >= 0)
				t[r] = (now() - t0) / (double)calls;
		}
		qsort(t, ROUNDS, sizeof *t, cmp);
		printf("rt_parallel(%d): %.2f us per call (median of %d rounds of %ld)\n", n, t[ROUNDS / 2] * 1e6,
		       ROUNDS, calls);
	}
	return 0;
}
