/* allreduce.c: the time of one MPI_Allreduce of n floats, as training does it.
 *
 *     mpicc -O2 bench/allreduce.c -o allreduce && mpirun -np 2 ./allreduce N...
 *
 * For each N, the median over 21 calls (after 3 to warm up) of an in-place
 * float sum across the ranks, each call after a barrier so that no rank
 * waits for a slower one inside the timed call; rank 0 prints "N seconds"
 * per line.  bench/scale builds and runs it for the models' buffer sizes
 * (docs/scale.md).
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	MPI_Init(&argc, &argv);
	int rank;
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	enum { WARM = 3, REPS = 21 };
	for (int a = 1; a < argc; a++) {
		long n = strtol(argv[a], NULL, 10);
		float *buf = calloc((size_t)n, sizeof *buf);
		double t[REPS];
		if (!buf)
			MPI_Abort(MPI_COMM_WORLD, 1);
		for (int i = 0; i < WARM + REPS; i++) {
			MPI_Barrier(MPI_COMM_WORLD);
			double t0 = MPI_Wtime();
			MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
			if (i >= WARM)
				t[i - WARM] = MPI_Wtime() - t0;
		}
		qsort(t, REPS, sizeof *t, cmp);
		if (rank == 0)
			printf("%ld %.9f\n", n, t[REPS / 2]);
		free(buf);
	}
	MPI_Finalize();
	return 0;
}
