/* certifier_exe.c: main of standalone certifiers.
 *
 * `llnc build --certifier` links this file with the generated kernels, the
 * lln_model descriptor and the embedded lln_weights into one executable;
 * the command line itself is rt_certify_main (certifier_main.c), which
 * `llnc certify` runs too.
 */
#include "rt.h"

extern const rt_model lln_model;
extern const float lln_weights[];

int main(int argc, char **argv)
{
	return rt_certify_main(&lln_model, lln_weights, NULL, argc, argv);
}
