/* certifier_exe.c: main of standalone certifiers.
 *
 * `llnc build --certifier` links this file with the generated kernels, the
 * lln_model descriptor and the embedded lln_weights into one executable;
 * the command line itself is rt_certify_main (certifier_main.c), which
 * `llnc certify` runs too.  It refuses to run as one of several processes
 * of an MPI launcher, which it cannot talk to (docs/scale.md).
 */
#include <stdlib.h>

#include "rt.h"

extern const rt_model lln_model;
extern const float lln_weights[];

int main(int argc, char **argv)
{
	/* certifiers link libc alone, not MPI: under a launcher's K processes
	 * each would certify everything into the same output */
	const char *k = getenv("OMPI_COMM_WORLD_SIZE");
	if (!k)
		k = getenv("PMI_SIZE");
	if (k && atoi(k) > 1)
		return rt_cmd_fail(argv[0], 2, "started as one of %s processes: a standalone certifier does not use MPI; "
		                   "give each process --shard I/N, or run llnc certify under mpirun (docs/scale.md)", k);
	return rt_certify_main(&lln_model, lln_weights, NULL, argc, argv);
}
