/* fuzz_data.c: libFuzzer harness for the data readers (runtime/data.c).
 *
 * Built four times, once per reader, with FUZZ_SUFFIX naming the file the
 * input is written to: ".csv" (CSV), ".npy" (NumPy), ".ts" (sequences) and
 * ".idx" (IDX, which the readers pick for any other name).  Each input is read the ways the
 * commands read data: examples of any width and of a fixed width, with and
 * without a label column, in chunks of 1 to 3 examples, and as a label
 * file.  Besides crashes and sanitizer reports, the harness checks
 * what rt.h promises callers:
 *   - success: at least one example of the requested width, every value
 *     finite, labels (when asked for) non-negative, none when not;
 *   - failure: the output zeroed and a message that starts with the file's
 *     name, so the user learns which file is wrong;
 *   - the chunked reader the certifier streams with gives the examples of
 *     the whole-file reader, chunk by chunk, or fails with its message;
 *     so does its form for inputs that may carry labels, with the labels.
 */
#include <math.h>

#include "rt.h"

#include "fuzz.h"

#ifndef FUZZ_SUFFIX
#error "build with -DFUZZ_SUFFIX=\".csv\" (or .npy, .idx)"
#endif

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

/* The chunked reader (the certifier's) against the whole-file one: the
 * same examples, or the same error, whatever the chunk size. */
static void read_chunks(const char *path, int64_t max)
{
	rt_data whole;
	char werr[RT_ERRLEN] = "", err[RT_ERRLEN] = "";
	int wrc = rt_data_read(path, 0, false, &whole, werr);
	rt_reader *r = NULL;
	int rc = rt_reader_open(path, 0, &r, err);
	int64_t n = 0;
	while (rc == 0) {
		rt_data c;
		if ((rc = rt_reader_next(r, max, &c, err)) != 0 || c.n == 0)
			break;
		promise(c.n <= max, "a chunk holds at most max examples");
		/* after a bad record the whole read fails, while the chunks before
		 * it are given out: that is the point of streaming */
		if (wrc == 0)
			promise(n + c.n <= whole.n && c.dim == whole.dim &&
			        memcmp(c.x, whole.x + n * whole.dim, sizeof(float) * (size_t)(c.n * c.dim)) == 0,
			        "chunks hold the examples of the whole file");
		n += c.n;
	}
	if (rc == 0) {
		promise(rt_reader_count(r) == n, "the reader counts what it gave");
		promise(wrc == 0 ? n == whole.n : n == 0, "chunks end where the whole file does");
	} else {
		check_failure(path, err);
		promise(wrc != 0 && strcmp(err, werr) == 0, "chunked and whole reads fail alike");
	}
	if (r)
		rt_reader_close(r);
	rt_data_free(&whole);
}

/* The certifier's reader of inputs that may carry labels: a CSV whose
 * first record has dim + 1 values is read as labeled, and then gives the
 * examples and labels of the whole-file labeled read; otherwise those of
 * the unlabeled one. */
static void read_maybe_labeled(const char *path, int64_t dim, int64_t max)
{
	rt_reader *r = NULL;
	char err[RT_ERRLEN] = "";
	if (rt_reader_open_labeled(path, dim, &r, err) != 0) {
		check_failure(path, err);
		return;
	}
	rt_data whole = { 0 };
	int wrc = -1, labeled = -1, rc;
	int64_t n = 0;
	for (;;) {
		rt_data c;
		if ((rc = rt_reader_next(r, max, &c, err)) != 0 || c.n == 0)
			break;
		if (labeled < 0) {
			labeled = c.y != NULL;
			char werr[RT_ERRLEN];
			wrc = rt_data_read(path, dim, labeled, &whole, werr);
		}
		promise(labeled == (c.y != NULL), "every chunk has labels, or none");
		for (int64_t i = 0; c.y && i < c.n; i++)
			promise(c.y[i] >= 0, "labels are non-negative");
		if (wrc == 0)
			promise(n + c.n <= whole.n && c.dim == dim &&
			        memcmp(c.x, whole.x + n * dim, sizeof(float) * (size_t)(c.n * dim)) == 0 &&
			        (!c.y || memcmp(c.y, whole.y + n, sizeof(int32_t) * (size_t)c.n) == 0),
			        "chunks hold the examples and labels of the whole file");
		n += c.n;
	}
	if (rc != 0)
		check_failure(path, err);
	else if (wrc == 0)
		promise(n == whole.n, "chunks end where the whole file does");
	rt_reader_close(r);
	rt_data_free(&whole);
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
	read_chunks(path, 1 + (int64_t)(size % 3));   /* chunk boundaries anywhere */
	read_maybe_labeled(path, 2, 1 + (int64_t)(size % 3));
	read_labels(path, 0);
	read_labels(path, 3);
	return 0;
}
