/* fuzz_data.c: libFuzzer harness for the data readers (runtime/data.c).
 *
 * Built three times, once per reader, with FUZZ_SUFFIX naming the file the
 * input is written to: ".csv" (CSV), ".npy" (NumPy) and ".idx" (IDX, which
 * the readers pick for any other name).  Each input is read the ways the
 * commands read data: examples of any width and of a fixed width, with and
 * without a label column, and as a label file.  Besides crashes and
 * sanitizer reports, the harness checks what rt.h promises callers:
 *   - success: at least one example of the requested width, every value
 *     finite, labels (when asked for) non-negative, none when not;
 *   - failure: the output zeroed and a message that starts with the file's
 *     name, so the user learns which file is wrong.
 */
#include <math.h>

#include "rt.h"

#include "fuzz.h"

#ifndef FUZZ_SUFFIX
#error "build with -DFUZZ_SUFFIX=\".csv\" (or .npy, .idx)"
#endif

static void check_failure(const char *path, const char *err)
{
	promise(strncmp(err, path, strlen(path)) == 0 && err[strlen(path)] == ':',
	        "a reader's message starts with the file's name");
}

static void read_examples(const char *path, int64_t dim, bool labeled)
{
	rt_data d;
	char err[RT_ERRLEN] = "";
	if (rt_data_read(path, dim, labeled, &d, err) != 0) {
		promise(d.n == 0 && d.dim == 0 && !d.x && !d.y, "a failed read leaves the output empty");
		check_failure(path, err);
		return;
	}
	promise(d.n >= 1 && d.dim >= 1 && d.x, "a successful read holds at least one example");
	promise(dim == 0 || d.dim == dim, "examples have the requested width");
	promise(labeled == (d.y != NULL), "labels exactly when asked for");
	for (int64_t i = 0; i < d.n * d.dim; i++)
		promise(isfinite(d.x[i]), "every value is finite");
	for (int64_t i = 0; labeled && i < d.n; i++)
		promise(d.y[i] >= 0, "labels are non-negative");
	rt_data_free(&d);
}

static void read_labels(const char *path, int64_t n_expected)
{
	int32_t *y;
	int64_t n;
	char err[RT_ERRLEN] = "";
	if (rt_labels_read(path, n_expected, &y, &n, err) != 0) {
		promise(!y && n == 0, "a failed read leaves the output empty");
		check_failure(path, err);
		return;
	}
	promise(n >= 1 && y, "a successful read holds at least one label");
	promise(n_expected == 0 || n == n_expected, "the label count is the expected one");
	for (int64_t i = 0; i < n; i++)
		promise(y[i] >= 0, "labels are non-negative");
	free(y);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fuzz_file(data, size, FUZZ_SUFFIX);
	read_examples(path, 0, false);
	read_examples(path, 0, true);
	read_examples(path, 2, false);
	read_examples(path, 784, true);
	read_labels(path, 0);
	read_labels(path, 3);
	return 0;
}
