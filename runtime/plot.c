/* plot.c: pictures of a trained model's activation regions (`llnc plot`).
 *
 * The paper's Figure 1, for any 2-input model and any number of weight
 * files: per panel a heatmap of the prediction, the outline of every exact
 * activation region in the window, the training points coloured by class,
 * around each a circle of radius eps_2 (the largest l2 ball inside its
 * region) and an arrow for the gradient of the logit.  With --segment, for
 * any input size, the 1-D picture instead: where the segment from A to B
 * crosses region boundaries and the logits along it, which are exactly
 * linear between two boundaries.
 *
 * The command runs in phases, each a file: the request (plot_flags.c), the
 * inputs and the computation (plot_compute.c), the figure (plot_draw.c),
 * then one atomic write, so a failure never leaves a partial file.  The
 * report is in docs/plots.md.  --log and --margins draw charts of training
 * logs and evaluations instead (chart.c).
 */
#include <stdio.h>
#include <stdlib.h>

#include "plot.h"

int rt_plot_main(const rt_model *m, const char *defaults, int argc, char **argv)
{
	if (rt_chart_wanted(argc, argv))
		return rt_chart_main(argc, argv);
	plot_cfg c = { .prog = argc > 0 && argv[0] ? argv[0] : "plot", .points = -1,
	               .width = DEFAULT_WIDTH, .circles = true, .arrows = true };
	plot_job *j = calloc(1, sizeof *j);
	membuf mb = { 0 };
	if (!j)
		return user_fail(&c, "out of memory");
	int rc = rt_plot_flags(&c, defaults, argc, argv, &j->dcopy);
	if (rc || c.help) {
		if (!rc)
			rt_plot_usage(stdout, m, &c);
		goto done;
	}
	if (m->max_len) {
		rc = user_fail(&c, "plot does not take models over sequences of free length (input x[*, F])");
		goto done;
	}
	/* every flag checked, every input read, before any work */
	if ((rc = rt_plot_request(&c, m, j)))
		goto done;
	if (rt_is_shape(m)) {   /* a shape: the flags alone (rt.h) */
		rc = -1;
		goto done;
	}
	if ((rc = rt_plot_load(&c, m, j)) || (rc = rt_plot_compute(&c, m, j)))
		goto done;
	if (!c.count) {
		char err[RT_ERRLEN];
		if ((rc = rt_plot_render(&c, m, j, &mb)))
			goto done;
		if (rt_write_atomic(c.out, mb.p, mb.n, err) != 0) {
			fprintf(stderr, "%s\n", err);
			rc = 1;
			goto done;
		}
	}
	for (int i = 0; i < j->np; i++)
		printf("%s: %lld %s\n", j->pan[i].title, (long long)j->pan[i].count,
		       j->one_d ? "boundaries on the segment" : "regions in the window");
	if (!c.count) {
		if (!j->one_d)
			printf("window: %.6g,%.6g,%.6g,%.6g\n", j->win[0], j->win[1], j->win[2], j->win[3]);
		printf("wrote %s (%d panel%s, %.0f x %.0f)\n", c.out, j->np, j->np == 1 ? "" : "s", j->L.fig_w,
		       j->L.fig_h);
	}
	rc = fflush(stdout) == 0 ? 0 : 1;
done:
	free(mb.p);
	rt_plot_job_free(j);
	free(j);
	return rc;
}
