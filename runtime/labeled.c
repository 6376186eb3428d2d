/* labeled.c: the one loader of labeled data sets.
 *
 * FILE[,LABELS] (a labeled CSV, or examples and labels files in any format
 * data.c reads) or a toy2d: generator spec, read whole, with every label
 * checked against the model's outputs before any work: softmax labels lie
 * in 0..n_out-1, sigmoid labels are 0 or 1.  train, eval and plot all read
 * their data here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train.h"

int rt_load_labeled(const char *prog, const rt_model *m, bool sigmoid, const char *spec, rt_data *d)
{
	char err[RT_ERRLEN];
	memset(d, 0, sizeof *d);
	if (strncmp(spec, "toy2d:", 6) == 0) {
		if (rt_toy2d_spec(spec, m, d, err) != 0)
			return rt_cmd_fail(prog, 1, "%s", err);
		if (!sigmoid && m->n_out < 2) {
			rt_data_free(d);
			return rt_cmd_fail(prog, 1, "'%s': toy2d labels are 0 and 1, but the model has one output and the loss is cross_entropy", spec);
		}
		return 0;
	}
	char *labels;
	char *s = rt_split_labels(spec, &labels);
	if (!s)
		return rt_cmd_fail(prog, 1, "out of memory");
	int rc = 1;
	if (labels && !labels[0]) {
		rt_cmd_fail(prog, 1, "'%s': the labels file after the comma is missing", spec);
		goto done;
	}
	if (rt_data_read_model(s, m, labels == NULL, d, err) != 0) {
		fprintf(stderr, "%s\n", err);
		goto done;
	}
	if (labels) {
		int64_t nl;
		if (rt_labels_read(labels, d->n, &d->y, &nl, err) != 0) {
			fprintf(stderr, "%s\n", err);
			goto done;
		}
	}
	const char *lname = labels ? labels : s;
	int32_t top = sigmoid ? 1 : m->n_out - 1;
	for (int64_t i = 0; i < d->n; i++)
		if (d->y[i] < 0 || d->y[i] > top) {
			fprintf(stderr, "%s: record %lld: label %d is outside 0..%d\n", lname,
			        (long long)(i + 1), d->y[i], top);
			goto done;
		}
	rc = 0;
done:
	if (rc)
		rt_data_free(d);
	free(s);
	return rc;
}
