/* plot_compute.c: what `llnc plot` draws, computed.
 *
 * The weights and data read; per panel, for the 2-D picture the exact
 * regions in the window (rt_regions_2d), the prediction over a grid of
 * cells (threads share the rows) and the certificate and gradient of the
 * selected points; for the 1-D picture the boundaries the segment crosses
 * (rt_segment_boundaries) and the logits along it.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plot.h"

static void panel_free(panel *p)
{
	free(p->P);
	free(p->pre);
	if (p->reg.p)
		rt_regions_free(&p->reg);
	free(p->heat);
	free(p->eps);
	free(p->grad);
	free(p->t);
	free(p->seglogits);
}

typedef struct heat_job {
	const rt_model *m;
	const float *P;
	const double *win;
	int gw, gh, row0, row1;
	float *heat;
	int failed;
} heat_job;

/* Value of one heatmap cell: binary, the probability of class 1; otherwise
 * class + confidence (softmax probability of the argmax, in [0, 1)). */
static float cell_value(const rt_model *m, const float *logits)
{
	if (m->n_out == 1)
		return (float)(1 / (1 + exp(-(double)logits[0])));
	int k = 0;
	for (int j = 1; j < m->n_out; j++)
		if (logits[j] > logits[k])
			k = j;
	double s = 0;
	for (int j = 0; j < m->n_out; j++)
		s += exp((double)logits[j] - logits[k]);
	return (float)k + (float)fmin(1 / s, 0.999);
}

static void *heat_rows(void *arg)
{
	heat_job *j = arg;
	const rt_model *m = j->m;
	float *ws = rt_alloc_floats(m->ws_floats), *z = rt_alloc_floats(m->n_hidden + 1), *lg = rt_alloc_floats(m->n_out);
	if (!ws || !z || !lg) {
		j->failed = 1;
	} else {
		const double *w = j->win;
		for (int r = j->row0; r < j->row1; r++)
			for (int i = 0; i < j->gw; i++) {
				float x[2] = { (float)(w[0] + (i + 0.5) * (w[1] - w[0]) / j->gw),
				               (float)(w[3] - (r + 0.5) * (w[3] - w[2]) / j->gh) };
				m->forward(j->P, x, ws, z, lg);
				j->heat[(size_t)r * (size_t)j->gw + (size_t)i] = cell_value(m, lg);
			}
	}
	free(ws);
	free(z);
	free(lg);
	return NULL;
}

static int compute_heat(const rt_model *m, panel *p, const double *win, int gw, int gh, int threads)
{
	p->heat = rt_alloc_floats((int64_t)gw * gh);
	if (!p->heat)
		return -1;
	if (threads <= 0)
		threads = rt_ncpus();
	if (threads > gh)
		threads = gh;
	heat_job jobs[64];
	if (threads > 64)
		threads = 64;
	int failed = 0;
	for (int t = 0; t < threads; t++) {
		jobs[t] = (heat_job){ .m = m, .P = p->P, .win = win, .gw = gw, .gh = gh,
		                      .row0 = gh * t / threads, .row1 = gh * (t + 1) / threads,
		                      .heat = p->heat };
	}
	rt_parallel(threads, heat_rows, jobs, sizeof *jobs);
	for (int t = 0; t < threads; t++)
		failed |= jobs[t].failed;
	return failed ? -1 : 0;
}

/* eps_2 and the gradient (raw input units) of the logit (binary) or of the
 * predicted class's logit at each selected point. */
static int certify_points(const rt_model *m, panel *p, const rt_data *d, const int64_t *sel,
                          int64_t ns)
{
	const int D = m->n_in;
	p->eps = rt_alloc_floats(ns);
	p->grad = rt_alloc_floats(ns * D);
	float *ws = rt_alloc_floats(m->ws_floats), *z = rt_alloc_floats(m->n_hidden + 1), *lg = rt_alloc_floats(m->n_out),
	      *lg2 = rt_alloc_floats(m->n_out), *xp = rt_alloc_floats(D);
	int rc = -1;
	if (!p->eps || !p->grad || !ws || !z || !lg || !lg2 || !xp)
		goto done;
	p->gmax = 0;
	for (int64_t s = 0; s < ns; s++) {
		const float *x = d->x + sel[s] * D;
		rt_cert c;
		m->certify(p->P, p->pre, x, RT_NORM_BIT(RT_L2), ws, z, lg, &c, NULL);
		p->eps[s] = c.eps[RT_L2];
		int k = m->n_out == 1 ? 0 : c.label;
		float *g = p->grad + s * D;
		if (m->logit_jac_off >= 0) {
			const float *J = ws + m->logit_jac_off + (int64_t)k * D;
			for (int i = 0; i < D; i++)
				g[i] = J[i] / (m->std != 0 ? m->std : 1);
		} else {
			/* no hidden layer: the model is affine, differences are exact */
			for (int i = 0; i < D; i++) {
				memcpy(xp, x, sizeof(float) * (size_t)D);
				xp[i] += 1;
				m->forward(p->P, xp, ws, z, lg2);
				memcpy(xp, x, sizeof(float) * (size_t)D);
				xp[i] -= 1;
				m->forward(p->P, xp, ws, z, lg);
				g[i] = (lg2[k] - lg[k]) / 2;
			}
		}
		double nn = 0;
		for (int i = 0; i < D; i++)
			nn += (double)g[i] * g[i];
		if (sqrt(nn) > p->gmax)
			p->gmax = sqrt(nn);
	}
	rc = 0;
done:
	free(ws);
	free(z);
	free(lg);
	free(lg2);
	free(xp);
	return rc;
}

static int segment_logits(const rt_model *m, panel *p, const float *a, const float *b)
{
	const int D = m->n_in, O = m->n_out;
	p->seglogits = rt_alloc_floats((p->nt + 2) * O);
	float *ws = rt_alloc_floats(m->ws_floats), *z = rt_alloc_floats(m->n_hidden + 1), *x = rt_alloc_floats(D);
	int rc = -1;
	if (!p->seglogits || !ws || !z || !x)
		goto done;
	for (int64_t k = 0; k < p->nt + 2; k++) {
		double t = k == 0 ? 0 : k == p->nt + 1 ? 1 : p->t[k - 1];
		for (int i = 0; i < D; i++)
			x[i] = (float)(a[i] + t * ((double)b[i] - a[i]));
		m->forward(p->P, x, ws, z, p->seglogits + k * O);
	}
	rc = 0;
done:
	free(ws);
	free(z);
	free(x);
	return rc;
}

/* "roll(lambda=1, C=5, gamma=100)" as saved by llnc train; "none" is vanilla. */
static void objective_of(const char *path, char *buf, size_t cap)
{
	char err[RT_ERRLEN], v[160];
	buf[0] = 0;
	if (rt_st_metadata(path, "regularizer", v, sizeof v, err) == 0)
		snprintf(buf, cap, "%s", strcmp(v, "none") == 0 ? "vanilla" : v);
}

/* One end of --segment: "#N" (record N of the data, from 1) or n_in
 * coordinates separated by ';'.  Returns 0, or the exit status. */
static int segment_end(const plot_cfg *c, const rt_model *m, const rt_data *d, const char *s,
                       float *x, char *name, size_t cap)
{
	const int D = m->n_in;
	if (s[0] == '#') {
		char *end;
		errno = 0;
		long long k = strtoll(s + 1, &end, 10);
		if (end == s + 1 || *end || errno || k < 1)
			return usage_fail(c, "--segment: '%s' is not #N with N >= 1", s);
		if (!d)
			return usage_fail(c, "--segment %s needs data: give --data FILE[,LABELS]", s);
		if (k > d->n)
			return usage_fail(c, "--segment: %s is past the data's %lld records", s, (long long)d->n);
		memcpy(x, d->x + (k - 1) * D, sizeof(float) * (size_t)D);
		if (d->y)
			snprintf(name, cap, "%s (label %d)", s, d->y[k - 1]);
		else
			snprintf(name, cap, "%s", s);
		return 0;
	}
	char *t = strdup(s);
	if (!t)
		return user_fail(c, "out of memory");
	int n = 0, rc = 0;
	for (char *save = NULL, *tok = strtok_r(t, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
		double v;
		if (n >= D || !rt_plot_parse_double(tok, &v)) {
			n = -1;
			break;
		}
		x[n++] = (float)v;
	}
	if (n != D)
		rc = usage_fail(c, "--segment: '%s' must be #N or %d numbers separated by ';'", s, D);
	else
		snprintf(name, cap, "%s", strlen(s) < 40 ? s : "(point)");
	free(t);
	return rc;
}

int rt_plot_load(const plot_cfg *c, const rt_model *m, plot_job *j)
{
	char err[RT_ERRLEN];
	for (int i = 0; i < j->np; i++) {
		panel *p = &j->pan[i];
		p->P = rt_alloc_floats(m->n_params);
		p->pre = rt_alloc_floats(m->pre_floats);
		if (!p->P || !p->pre)
			return user_fail(c, "out of memory");
		if (rt_params_load_named(m->tensors, m->n_tensors, &c->names, p->path, p->P, err) != 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		m->prepare(p->P, p->pre);
		objective_of(p->path, p->objective, sizeof p->objective);
	}
	bool need_data = j->one_d ? (j->send[0][0] == '#' || j->send[1][0] == '#') : true;
	if (c->data && need_data) {
		int rc = rt_load_labeled(c->prog, m, m->n_out == 1, c->data, &j->d);
		if (rc)
			return rc;
		j->have_data = true;
	}
	return 0;
}

/* The 1-D picture: the segment's ends, each panel's boundaries on it and
 * (unless only counting) its logits along it. */
static int compute_1d(const plot_cfg *c, const rt_model *m, plot_job *j)
{
	char err[RT_ERRLEN];
	j->sa = rt_alloc_floats(m->n_in);
	j->sb = rt_alloc_floats(m->n_in);
	if (!j->sa || !j->sb)
		return user_fail(c, "out of memory");
	const rt_data *d = j->have_data ? &j->d : NULL;
	int rc = segment_end(c, m, d, j->send[0], j->sa, j->aname, sizeof j->aname);
	if (!rc)
		rc = segment_end(c, m, d, j->send[1], j->sb, j->bname, sizeof j->bname);
	if (rc)
		return rc;
	double len = 0;
	for (int i = 0; i < m->n_in; i++)
		len += ((double)j->sb[i] - j->sa[i]) * ((double)j->sb[i] - j->sa[i]);
	j->seglen = sqrt(len);
	if (j->seglen == 0)
		return usage_fail(c, "--segment: A and B are the same point");
	for (int i = 0; i < j->np; i++) {
		panel *p = &j->pan[i];
		if (rt_segment_boundaries(m, p->P, j->sa, j->sb, &p->t, &p->nt, err) != 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		p->count = p->nt;
		if (!c->count && segment_logits(m, p, j->sa, j->sb) != 0)
			return user_fail(c, "out of memory");
	}
	j->L.W = (double)c->width * 1.6;
	j->L.H = (double)c->width * 0.55;
	j->L.gap = 30;
	return 0;
}

/* The data's bounding box padded by 10%. */
static void window_of(const rt_data *d, double *win)
{
	double b[4] = { INFINITY, -INFINITY, INFINITY, -INFINITY };
	for (int64_t i = 0; i < d->n; i++) {
		b[0] = fmin(b[0], d->x[2 * i]);
		b[1] = fmax(b[1], d->x[2 * i]);
		b[2] = fmin(b[2], d->x[2 * i + 1]);
		b[3] = fmax(b[3], d->x[2 * i + 1]);
	}
	double px = 0.1 * (b[1] - b[0]), py = 0.1 * (b[3] - b[2]);
	if (px == 0)
		px = py > 0 ? py : 1;
	if (py == 0)
		py = px;
	win[0] = b[0] - px;
	win[1] = b[1] + px;
	win[2] = b[2] - py;
	win[3] = b[3] + py;
}

/* Circles and arrows go to a seeded random subset of the points: the
 * first ns of sel after a partial shuffle. */
static int select_points(const plot_cfg *c, plot_job *j)
{
	const rt_data *d = &j->d;
	int64_t want = c->points < 0 ? DEFAULT_POINTS : c->points;
	j->ns = want < d->n ? want : d->n;
	j->sel = malloc(sizeof *j->sel * (size_t)(d->n > 0 ? d->n : 1));
	if (!j->sel)
		return user_fail(c, "out of memory");
	for (int64_t i = 0; i < d->n; i++)
		j->sel[i] = i;
	rt_rng r;
	rt_rng_seed(&r, 0);
	for (int64_t i = 0; i < j->ns; i++) {
		int64_t k = i + (int64_t)(rt_rng_uniform(&r) * (double)(d->n - i));
		if (k >= d->n)
			k = d->n - 1;
		int64_t t = j->sel[i];
		j->sel[i] = j->sel[k];
		j->sel[k] = t;
	}
	return 0;
}

/* The 2-D picture: the window, each panel's regions in it and (unless only
 * counting) its heatmap and the certified points. */
static int compute_2d(const plot_cfg *c, const rt_model *m, plot_job *j)
{
	char err[RT_ERRLEN];
	double *win = j->win;
	if (!j->have_win) {
		if (!j->have_data || j->d.n == 0)
			return usage_fail(c, "no data to take the window from: give --data or --window x0,x1,y0,y1");
		window_of(&j->d, win);
	}
	double aspect = (win[3] - win[2]) / (win[1] - win[0]);
	if (aspect < 0.05 || aspect > 20)
		return usage_fail(c, "the window [%g, %g] x [%g, %g] is too elongated to draw with equal scales",
		                  win[0], win[1], win[2], win[3]);
	j->L.W = (double)c->width;
	j->L.H = round(j->L.W * aspect);
	int rc;
	if (j->have_data && (rc = select_points(c, j)))
		return rc;
	j->gw = (int)ceil(j->L.W / HEAT_CELL);
	j->gh = (int)ceil(j->L.H / HEAT_CELL);
	for (int i = 0; i < j->np; i++) {
		panel *p = &j->pan[i];
		if (rt_regions_2d(m, p->P, win, &p->reg, err) != 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		p->count = p->reg.n;
		if (c->count)
			continue;
		if (compute_heat(m, p, win, j->gw, j->gh, c->threads) != 0 ||
		    (j->have_data && (c->circles || c->arrows) && certify_points(m, p, &j->d, j->sel, j->ns) != 0))
			return user_fail(c, "out of memory");
	}
	return 0;
}

int rt_plot_compute(const plot_cfg *c, const rt_model *m, plot_job *j)
{
	j->L = (layout){ .margin = 14, .title_h = 46, .gap = 22 };
	return j->one_d ? compute_1d(c, m, j) : compute_2d(c, m, j);
}

void rt_plot_job_free(plot_job *j)
{
	for (int i = 0; i < MAX_PANELS; i++)
		panel_free(&j->pan[i]);
	rt_data_free(&j->d);
	free(j->sel);
	free(j->sa);
	free(j->sb);
	free(j->dcopy);
	free(j->wcopy);
	free(j->tcopy);
	free(j->scopy);
}
