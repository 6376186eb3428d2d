/* fuzz_safetensors.c: libFuzzer harness for the weights reader
 * (runtime/safetensors.c).
 *
 * Each input is a candidate weights file for a fixed small model,
 * tests/fuzz/tiny.lln (2 inputs, 3 hidden neurons, 2 logits), read as
 * `llnc build`, `eval` and `train --init` read weights (as they are, and
 * with names mapped and dtypes converted as --strip-prefix and --rename
 * do), listed as `llnc weights` lists it, and its metadata read as the
 * commands read it, with a buffer too small for long values.
 * Besides crashes and sanitizer reports it checks the promises of rt.h: a
 * failure names the file, a metadata value that is returned fits its buffer
 * with its NUL, and an absent key gives "".
 */
#include "rt.h"

#include "fuzz.h"
#include "tiny.h"

static void read_metadata(const char *path, const char *key, size_t len)
{
	char value[64], err[RT_ERRLEN] = "";
	memset(value, 'x', sizeof value);
	int rc = rt_st_metadata(path, key, value, len, err);
	promise(rc >= -1 && rc <= 1, "rt_st_metadata returns -1, 0 or 1");
	if (rc < 0)
		check_failure(path, err);
	else if (rc == 1)
		promise(value[0] == 0, "an absent key reads as \"\"");
	else
		promise(memchr(value, 0, len) != NULL, "a value fits its buffer with its NUL");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fuzz_file(data, size, ".safetensors");
	float P[TINY_PARAMS];
	char err[RT_ERRLEN] = "";
	if (rt_params_load(tiny_tensors, TINY_TENSORS, path, P, err) != 0)
		check_failure(path, err);
	/* as `llnc eval --strip-prefix model. --rename 0=h --rename 2=y` */
	static const rt_names nm = { .strip = "model.", .n = 2, .rename = { "0=h", "2=y" } };
	if (rt_params_load_named(tiny_tensors, TINY_TENSORS, &nm, path, P, err) != 0)
		check_failure(path, err);
	if (rt_st_list(path, &nm, fuzz_null(), err) != 0)
		check_failure(path, err);
	read_metadata(path, "model", 64);
	read_metadata(path, "seed", 8);
	read_metadata(path, "", 1);
	return 0;
}
