/* fuzz_checkpoint.c: libFuzzer harness for reading checkpoints, as
 * `llnc train --resume` does (runtime/checkpoint.c, whose rt_resume() needs a run, so
 * the harness makes the same calls into the public readers).
 *
 * Each input is a candidate checkpoint of tests/fuzz/tiny.lln trained with
 * Adam and a validation split: its metadata is read key by key into
 * buffers of the sizes checkpoint.c uses, then the weights with the optimizer
 * state and best weights as the extra table, all or nothing, and once more
 * with no extra table (optim.* ignored), as `--init CKPT` reads it.
 * Promises checked besides crashes and sanitizer reports: a failure names
 * the file, and a metadata value fits the buffer it was read into.
 */
#include "rt.h"

#include "fuzz.h"
#include "tiny.h"

enum { STATES = 3 };   /* Adam's m and v, then the best weights */

static rt_tensor extra[STATES * TINY_TENSORS];
static char extra_names[STATES * TINY_TENSORS][32];

static void build_extra(void)
{
	static const char *state[STATES] = { "m", "v", "best" };
	for (int a = 0; a < STATES; a++)
		for (int t = 0; t < TINY_TENSORS; t++) {
			rt_tensor *T = &extra[a * TINY_TENSORS + t];
			*T = tiny_tensors[t];
			snprintf(extra_names[a * TINY_TENSORS + t], sizeof extra_names[0], "optim.%s.%s",
			         state[a], tiny_tensors[t].name);
			T->name = extra_names[a * TINY_TENSORS + t];
			T->offset += (int64_t)a * TINY_PARAMS;
		}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!extra[0].name)
		build_extra();
	const char *path = fuzz_file(data, size, ".ckpt.safetensors");
	static const struct { const char *key; size_t len; } meta[] = {
		{ "format", 256 }, { "model", 256 }, { "optimizer", 256 }, { "optimizer_state", 256 },
		{ "seed", 256 }, { "epoch", 64 }, { "step", 64 }, { "best_epoch", 64 }, { "valid", 64 },
		{ "examples", 64 }, { "best_valid_loss", 256 },
	};
	char value[256], err[RT_ERRLEN];
	for (size_t i = 0; i < sizeof meta / sizeof *meta; i++) {
		int rc = rt_st_metadata(path, meta[i].key, value, meta[i].len, err);
		if (rc < 0) {
			check_failure(path, err);
			break;   /* as resume() stops at the first bad entry */
		}
		promise(strlen(value) < meta[i].len, "a value fits its buffer with its NUL");
	}
	float P[TINY_PARAMS], E[STATES * TINY_PARAMS];
	bool has_extra = false;
	if (rt_params_load_ex(tiny_tensors, TINY_TENSORS, extra, STATES * TINY_TENSORS, path, P, E,
	                      &has_extra, err) != 0)
		check_failure(path, err);
	if (rt_params_load_ex(tiny_tensors, TINY_TENSORS, NULL, 0, path, P, NULL, NULL, err) != 0)
		check_failure(path, err);
	return 0;
}
