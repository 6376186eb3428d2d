/* trainer_main.c: the driver of standalone trainers.
 *
 * `llnc build --trainer` links this file with the generated kernels, the
 * lln_model descriptor and lln_train_defaults (the .lln file's objective and
 * train settings as '\n'-separated arguments) into one executable that
 * takes the options of `llnc train` (docs/training.md).
 */
#include "rt.h"

extern const rt_model lln_model;
extern const char lln_train_defaults[];

int main(int argc, char **argv)
{
	return rt_train_main(&lln_model, lln_train_defaults, argc, argv);
}
