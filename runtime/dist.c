/* dist.c: the processes of one data-parallel job, over MPI.
 *
 * Training (train.c) and certification (certifier_main.c) run as one
 * process or as the K ranks of an MPI job (mpirun -np K).  This file is
 * all of lln that knows about MPI: it joins the job when the process was
 * started by an MPI launcher, sums float buffers across ranks, checks that
 * the ranks agree, gathers bytes on rank 0 and stops every rank when one
 * fails.  Built with LLN_HAVE_MPI (CMake found MPI) it calls MPI; built
 * without, it is the one-process job of the same interface, and refuses to
 * run under a launcher that started several processes, which would
 * otherwise each train the whole model and write the same files.
 *
 * MPI is joined only when a launcher's environment says so, so a plain
 * `llnc train` never starts MPI's machinery (docs/scale.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

#ifdef LLN_HAVE_MPI
#include <mpi.h>
#endif

static int rank, size = 1;
static int joined;   /* MPI_Init was called here */

/* The job's size as its launcher announces it: Open MPI's mpirun, then
 * PMIx and PMI launchers (Slurm's srun); 0 when not launched by one. */
static long launcher_size(void)
{
	static const char *const vars[] = { "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE" };
	for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
		const char *v = getenv(vars[i]);
		if (v && *v)
			return strtol(v, NULL, 10);
	}
	return getenv("PMIX_RANK") ? 2 : 0;   /* PMIx without a size: join to learn it */
}

int rt_dist_start(const char *prog)
{
	if (joined)
		return 0;
	long n = launcher_size();
#ifdef LLN_HAVE_MPI
	if (n < 1)
		return 0;
	int provided;
	/* only the main thread calls MPI; rt_parallel's threads never do */
	if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
		return rt_cmd_fail(prog, 1, "cannot join the MPI job");
	joined = 1;
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	/* errors end the job with a message instead of hanging it */
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
	return 0;
#else
	if (n > 1)
		return rt_cmd_fail(prog, 2, "started as one of %ld processes, but this lln was built without MPI; "
		                   "install libopenmpi-dev and rebuild (docs/scale.md)", n);
	return 0;
#endif
}

void rt_dist_stop(void)
{
#ifdef LLN_HAVE_MPI
	if (joined) {
		fflush(stdout);
		fflush(stderr);
		MPI_Finalize();
		joined = 0;
		rank = 0;
		size = 1;
	}
#endif
}

int rt_dist_rank(void)
{
	return rank;
}

int rt_dist_size(void)
{
	return size;
}

void rt_dist_part(int64_t n, int part, int parts, int64_t *begin, int64_t *end)
{
	*begin = n * part / parts;
	*end = n * (part + 1) / parts;
}

void rt_dist_sum(float *buf, int64_t n)
{
#ifdef LLN_HAVE_MPI
	/* counts are int: a model past 2^31 floats goes in pieces */
	for (int64_t at = 0; size > 1 && at < n;) {
		int len = n - at > (1 << 30) ? 1 << 30 : (int)(n - at);
		MPI_Allreduce(MPI_IN_PLACE, buf + at, len, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
		at += len;
	}
#endif
	(void)buf;
	(void)n;
}

bool rt_dist_agree(uint64_t v)
{
#ifdef LLN_HAVE_MPI
	if (size > 1) {
		/* the largest of v and of ~v (~ the smallest v) in one call */
		uint64_t b[2] = { v, ~v };
		MPI_Allreduce(MPI_IN_PLACE, b, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
		return b[0] == v && ~b[1] == v;
	}
#endif
	(void)v;
	return true;
}

int64_t rt_dist_max(int64_t v)
{
#ifdef LLN_HAVE_MPI
	if (size > 1)
		MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
#endif
	return v;
}

char *rt_dist_gather(const char *buf, int64_t len, int64_t *total)
{
#ifdef LLN_HAVE_MPI
	if (size > 1) {
		/* the lengths first, then the bytes; MPI counts are int, so each
		 * rank's part stays below 2 GiB (ample for a certifier's output) */
		int mine = len > 0x7fffffff ? -1 : (int)len, *lens = NULL, *at = NULL;
		char *all = NULL;
		if (rank == 0) {
			lens = malloc(sizeof(int) * (size_t)size);
			at = malloc(sizeof(int) * (size_t)size);
			if (!lens || !at)
				rt_dist_abort(1);
		}
		MPI_Gather(&mine, 1, MPI_INT, lens, 1, MPI_INT, 0, MPI_COMM_WORLD);
		int64_t sum = 0;
		for (int r = 0; rank == 0 && r < size; r++) {
			at[r] = (int)sum;
			sum += lens[r] < 0 ? (int64_t)1 << 31 : lens[r];
		}
		if (rank == 0 && (sum > 0x7fffffff || !(all = malloc((size_t)sum + 1)))) {
			fprintf(stderr, "lln: the ranks' outputs together exceed 2 GiB; shard with --shard instead\n");
			rt_dist_abort(1);
		}
		MPI_Gatherv(buf, mine < 0 ? 0 : mine, MPI_CHAR, all, lens, at, MPI_CHAR, 0, MPI_COMM_WORLD);
		free(lens);
		free(at);
		*total = sum;
		return all;
	}
#endif
	char *all = malloc((size_t)len + 1);
	if (all && len)
		memcpy(all, buf, (size_t)len);
	*total = len;
	return all;
}

_Noreturn void rt_dist_abort(int status)
{
#ifdef LLN_HAVE_MPI
	if (size > 1) {
		fflush(stdout);
		fflush(stderr);
		MPI_Abort(MPI_COMM_WORLD, status ? status : 1);
	}
#endif
	exit(status);
}
