/* plot.c: pictures of a trained model's activation regions (`llnc plot`).
 *
 * The paper's Figure 1, for any 2-input model and any number of weight
 * files: per panel a heatmap of the prediction, the outline of every exact
 * activation region in the window (rt_regions_2d), the training points
 * coloured by class, around each a circle of radius eps_2 (the largest l2
 * ball inside its region) and an arrow for the gradient of the logit.  With
 * --segment, for any input size, the 1-D picture instead: where the segment
 * from A to B crosses region boundaries (rt_segment_boundaries) and the
 * logits along it, which are exactly linear between two boundaries.
 *
 * There is one drawing code path, cairo, onto an SVG or an image surface
 * chosen by the output's extension.  The figure is rendered in memory and
 * written with rt_write_atomic, so a failure never leaves a partial file.
 * Flags come from the .lln defaults (only --data is used from them: the
 * train block's data) and then the command line; the report is in
 * docs/plots.md.  --log and --margins draw charts of training logs and
 * evaluations instead (the last section), without a model.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cairo.h>
#include <cairo-svg.h>
#include <jansson.h>

#include "rt.h"

#define MAX_PANELS 16
#define DEFAULT_POINTS 300
#define DEFAULT_WIDTH 400
#define ARROW_FRACTION 0.08   /* longest arrow: this fraction of the window width */
#define HEAT_CELL 2           /* heatmap cell size in pixels */

/* ------------------------------------------------------------------------
 * Options
 * ---------------------------------------------------------------------- */
typedef struct plot_cfg {
	const char *prog;
	const char *weights, *titles, *data, *window, *segment, *out;
	const char *source;     /* the .lln file, from the defaults: never an output */
	long long points;       /* -1: default */
	long long width;
	int threads;
	bool circles, arrows, count, help;
	bool fill;              /* --fill-regions: each region in its own colour */
	rt_names names;         /* --rename, --strip-prefix for every weights file */
} plot_cfg;

/* usage errors exit 2, bad input 1 */
#define usage_fail(c, ...) rt_cmd_fail((c)->prog, 2, __VA_ARGS__)
#define user_fail(c, ...) rt_cmd_fail((c)->prog, 1, __VA_ARGS__)

static int get_ll(const plot_cfg *c, const char *flag, const char *v, long long lo, long long hi,
                  long long *out)
{
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (end == v || *end || errno)
		return usage_fail(c, "%s takes an integer, got '%s'", flag, v);
	if (x < lo || x > hi)
		return usage_fail(c, "%s must be from %lld to %lld, got %s", flag, lo, hi, v);
	*out = x;
	return 0;
}

static void plot_usage(FILE *f, const rt_model *m, const plot_cfg *c)
{
	fprintf(f,
		"usage: %s --weights W[,W2,...] -o OUT.svg|OUT.png [options]\n"
		"\n"
		"Draws the activation regions of the model '%s' (%d inputs, %d outputs):\n"
		"one panel per weights file, side by side, each with the prediction as a\n"
		"heatmap, every exact linear region in the window outlined, the data points\n"
		"coloured by class, a circle of radius eps_2 (certified l2 margin) and an arrow\n"
		"for the logit's gradient at each point.  With --segment, for any input size,\n"
		"the 1-D picture: the region boundaries on the segment A-B and the logits\n"
		"along it.  docs/plots.md describes it all.\n"
		"\n"
		"  --weights W[,W2,...]  weights files, one panel each (at most %d)\n"
		"  --titles T1,T2,...    panel titles [the weights' file names]\n"
		"  --data FILE[,LABELS]  labeled points, or toy2d:kind=K,n=N,noise=X,seed=S\n"
		"                        [%s]\n"
		"  --window x0,x1,y0,y1  the part of the plane drawn [the data's bounding box\n"
		"                        padded by 10%%]\n"
		"  --points N            circles and arrows for a random subset of N points,\n"
		"                        0: none [%d, or all when there are fewer]\n"
		"  --no-circles          leave out the eps_2 circles\n"
		"  --no-arrows           leave out the gradient arrows\n"
		"  --fill-regions        fill every region with its own random colour (the\n"
		"                        paper's Figure 1), over the prediction\n"
		"  --segment A,B         the 1-D picture along the segment from A to B; each\n"
		"                        end is #N (the data's record N, from 1) or the\n"
		"                        coordinates separated by ';' (e.g. 0.5;-1)\n"
		"  --width PX            width of one panel in pixels [%d]\n"
		"  --rename OLD=NEW, --strip-prefix P\n"
		"                        map the weights' tensor names (docs/formats.md)\n"
		"  --threads N           threads, 0: all cores (%d here) [%d]\n"
		"  -o OUT.svg|OUT.png    the figure (format from the extension)\n"
		"  --count               print the number of regions (or boundaries) per panel\n"
		"                        and draw nothing; -o is not needed\n"
		"  --help                show this help\n",
		c->prog, m->name, m->n_in, m->n_out, MAX_PANELS, c->data ? c->data : "(none)",
		DEFAULT_POINTS, DEFAULT_WIDTH, rt_ncpus(), c->threads);
}

enum { F_WEIGHTS, F_TITLES, F_DATA, F_WINDOW, F_SEGMENT, F_OUT, F_POINTS, F_WIDTH, F_THREADS,
       F_RENAME, F_STRIP, F_NO_CIRCLES, F_FILL, F_NO_ARROWS, F_COUNT, F_HELP };

static const rt_flag plot_flags[] = {
	{ "weights", true, F_WEIGHTS }, { "titles", true, F_TITLES }, { "data", true, F_DATA },
	{ "window", true, F_WINDOW }, { "segment", true, F_SEGMENT }, { "-o", true, F_OUT },
	{ "points", true, F_POINTS }, { "width", true, F_WIDTH }, { "threads", true, F_THREADS },
	{ "rename", true, F_RENAME }, { "strip-prefix", true, F_STRIP },
	{ "no-circles", false, F_NO_CIRCLES }, { "fill-regions", false, F_FILL },
	{ "no-arrows", false, F_NO_ARROWS }, { "count", false, F_COUNT }, { "help", false, F_HELP },
	{ "-h", false, F_HELP },
};

static int set_option(plot_cfg *c, int id, const char *a, const char *v)
{
	long long k;
	int rc;
	switch (id) {
	case F_WEIGHTS: c->weights = v; break;
	case F_TITLES: c->titles = v; break;
	case F_DATA: c->data = v; break;
	case F_WINDOW: c->window = v; break;
	case F_SEGMENT: c->segment = v; break;
	case F_OUT: c->out = v; break;
	case F_POINTS: return get_ll(c, a, v, 0, 1000000000, &c->points);
	case F_WIDTH: return get_ll(c, a, v, 100, 4000, &c->width);
	case F_THREADS:
		if ((rc = get_ll(c, a, v, 0, 1024, &k)))
			return rc;
		c->threads = (int)k;
		break;
	case F_RENAME:
	case F_STRIP: {
		char err[RT_ERRLEN];
		if (rt_names_flag(&c->names, a, v, err))
			return usage_fail(c, "%s", err);
		break;
	}
	case F_NO_CIRCLES: c->circles = false; break;
	case F_FILL: c->fill = true; break;
	case F_NO_ARROWS: c->arrows = false; break;
	case F_COUNT: c->count = true; break;
	case F_HELP: c->help = true; break;
	}
	return 0;
}

static int parse_args(plot_cfg *c, int argc, char **argv)
{
	rt_flags f;
	rt_flags_init(&f, plot_flags, (int)(sizeof plot_flags / sizeof *plot_flags), argc, argv);
	f.prog = c->prog;
	int rc = 0;
	for (int id; !rc && !c->help && (id = rt_flags_next(&f)) != RT_FLAG_END;) {
		char a[64];
		if (id == RT_FLAG_ERROR)
			rc = 2;
		else if (id == RT_FLAG_ARG)
			rc = usage_fail(c, "unexpected argument '%s' (see --help)", f.value);
		else
			rc = set_option(c, id, rt_flag_spelling(&f, a, sizeof a), f.value);
	}
	rt_flags_done(&f);
	return rc;
}

/* The defaults llnc derives from the .lln file are flag/value pairs, one per
 * line; the plot takes only the train block's --data from them. */
static int parse_defaults(plot_cfg *c, const char *defaults, char **copy)
{
	*copy = NULL;
	if (!defaults || !defaults[0])
		return 0;
	char *s = strdup(defaults);
	if (!s)
		return user_fail(c, "out of memory");
	*copy = s;
	char *save = NULL, *flag = strtok_r(s, "\n", &save);
	while (flag) {
		char *val = strtok_r(NULL, "\n", &save);
		if (!val)
			break;
		if (strcmp(flag, "--data") == 0)
			c->data = val;
		else if (strcmp(flag, "--source") == 0)
			c->source = val;
		flag = strtok_r(NULL, "\n", &save);
	}
	return 0;
}

/* The figure against every input, and writable, before any work
 * (rt_files_check). */
static int check_files(const plot_cfg *c, char **weights, int nw)
{
	char *dl = NULL;
	char *d = c->data && strncmp(c->data, "toy2d:", 6) ? rt_split_labels(c->data, &dl) : NULL;
	rt_file f[MAX_PANELS + 4] = {
		{ "-o", c->out, RT_FILE_OUT, 0 }, { "the model", c->source, RT_FILE_IN, 0 },
		{ "--data", d, RT_FILE_IN, 0 }, { "--data", dl, RT_FILE_IN, 0 },
	};
	for (int i = 0; i < nw; i++)
		f[4 + i] = (rt_file){ "--weights", weights[i], RT_FILE_IN, 0 };
	char err[RT_ERRLEN];
	int rc = rt_files_check(f, 4 + nw, err);
	free(d);
	return rc ? rt_cmd_fail(c->prog, rc, "%s", err) : 0;
}

/* Splits s at commas into at most cap parts (in place); -1 if more. */
static int split(char *s, char sep, char **parts, int cap)
{
	int n = 0;
	for (char *p = s;;) {
		if (n == cap)
			return -1;
		parts[n++] = p;
		char *q = strchr(p, sep);
		if (!q)
			break;
		*q = 0;
		p = q + 1;
	}
	return n;
}

static bool parse_double(const char *s, double *out)
{
	char *end;
	errno = 0;
	double x = strtod(s, &end);
	while (*end == ' ')
		end++;
	if (end == s || *end || !isfinite(x))
		return false;
	*out = x;
	return true;
}

/* ------------------------------------------------------------------------
 * Data: FILE[,LABELS] as in train/eval, or a toy2d:... spec
 * ---------------------------------------------------------------------- */
static int load_data(const plot_cfg *c, const rt_model *m, const char *spec, rt_data *d)
{
	return rt_load_labeled(c->prog, m, m->n_out == 1, spec, d);
}

/* ------------------------------------------------------------------------
 * Per-panel computations
 * ---------------------------------------------------------------------- */
typedef struct panel {
	const char *path;
	char title[256];         /* --titles entry, or the file name */
	char objective[160];     /* from the weights' metadata; "" if absent */
	float *P, *pre;
	/* 2-D */
	rt_regions reg;
	float *heat;             /* gw x gh: probability of class 1, or class + confidence */
	float *eps;              /* per selected point */
	float *grad;             /* per selected point, n_in values */
	double gmax;
	/* 1-D */
	double *t;
	int64_t nt;
	float *seglogits;        /* (nt + 2) x n_out */
	int64_t count;           /* regions, or boundaries on the segment */
} panel;

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
	pthread_t tid;
	bool started;
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
		if (t < threads - 1)
			jobs[t].started = pthread_create(&jobs[t].tid, NULL, heat_rows, &jobs[t]) == 0;
	}
	for (int t = threads - 1; t >= 0; t--) {
		if (jobs[t].started)
			pthread_join(jobs[t].tid, NULL);
		else
			heat_rows(&jobs[t]);
		failed |= jobs[t].failed;
	}
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

/* ------------------------------------------------------------------------
 * Drawing
 * ---------------------------------------------------------------------- */
typedef struct rgb { double r, g, b; } rgb;

/* Class colours: binary blue / red; more classes a ten-colour palette. */
static rgb class_color(const rt_model *m, int k)
{
	static const rgb tab[10] = {
		{ 0.122, 0.467, 0.706 }, { 1.000, 0.498, 0.055 }, { 0.173, 0.627, 0.173 },
		{ 0.839, 0.153, 0.157 }, { 0.580, 0.404, 0.741 }, { 0.549, 0.337, 0.294 },
		{ 0.890, 0.467, 0.761 }, { 0.498, 0.498, 0.498 }, { 0.737, 0.741, 0.133 },
		{ 0.090, 0.745, 0.812 },
	};
	if (m->n_out <= 2)
		return k ? (rgb){ 0.80, 0.15, 0.12 } : (rgb){ 0.12, 0.35, 0.75 };
	return tab[k % 10];
}

static void set_rgb(cairo_t *cr, rgb c) { cairo_set_source_rgb(cr, c.r, c.g, c.b); }

/* Region outlines use this colour and nothing else does (tests count them). */
#define REGION_R 0.5
#define REGION_G 0.5
#define REGION_B 0.5
#define REGION_LINE 0.4

typedef struct layout {
	double W, H;              /* one panel's plot area */
	double margin, title_h, gap, legend_h;
	double fig_w, fig_h;
} layout;

static void panel_origin(const layout *L, int i, bool vertical, double *ox, double *oy)
{
	if (vertical) {
		*ox = L->margin;
		*oy = L->margin + i * (L->title_h + L->H + L->gap) + L->title_h;
	} else {
		*ox = L->margin + i * (L->W + L->gap);
		*oy = L->margin + L->title_h;
	}
}

static void text_at(cairo_t *cr, double x, double y, double size, bool bold, const char *s)
{
	cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
	                       bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
	cairo_set_font_size(cr, size);
	cairo_move_to(cr, x, y);
	cairo_show_text(cr, s);
}

static double text_width(cairo_t *cr, double size, bool bold, const char *s)
{
	cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
	                       bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
	cairo_set_font_size(cr, size);
	cairo_text_extents_t e;
	cairo_text_extents(cr, s, &e);
	return e.x_advance;
}

/* Shrinks the font down to 8 points, then shortens s with "...", until it
 * fits in w. */
static void text_fit(cairo_t *cr, double x, double y, double size, bool bold, double w, const char *s)
{
	while (size > 8 && text_width(cr, size, bold, s) > w)
		size -= 0.5;
	char buf[512];
	snprintf(buf, sizeof buf, "%s", s);
	size_t n = strlen(buf);
	while (n > 4 && text_width(cr, size, bold, buf) > w) {
		n--;
		while (n > 0 && (buf[n] & 0xC0) == 0x80)  /* UTF-8 continuation */
			n--;
		memcpy(buf + n, "...", 4);
	}
	text_at(cr, x, y, size, bold, buf);
}

static void arrow(cairo_t *cr, double x0, double y0, double x1, double y1, double head)
{
	double dx = x1 - x0, dy = y1 - y0, len = hypot(dx, dy);
	if (len < 0.5)
		return;
	cairo_move_to(cr, x0, y0);
	cairo_line_to(cr, x1, y1);
	cairo_stroke(cr);
	double h = fmin(head, len * 0.6), ux = dx / len, uy = dy / len;
	cairo_move_to(cr, x1, y1);
	cairo_line_to(cr, x1 - h * ux + 0.45 * h * uy, y1 - h * uy - 0.45 * h * ux);
	cairo_line_to(cr, x1 - h * ux - 0.45 * h * uy, y1 - h * uy + 0.45 * h * ux);
	cairo_close_path(cr);
	cairo_fill(cr);
}

static const char *obj_display(const panel *p)
{
	return p->objective[0] ? p->objective : NULL;
}

static void draw_panel_title(cairo_t *cr, const rt_model *m, const panel *p, double ox, double oy,
                             double w, const char *what)
{
	char sub[512];
	const char *ob = obj_display(p);
	snprintf(sub, sizeof sub, "%s \u2014 %s%s%s", m->name, ob ? ob : "", ob ? " \u2014 " : "", what);
	cairo_set_source_rgb(cr, 0, 0, 0);
	text_fit(cr, ox, oy - 24, 14, true, w, p->title);
	cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
	text_fit(cr, ox, oy - 8, 10.5, false, w, sub);
}

/* A region's outline as a closed path, window coordinates to the panel at
 * (ox, oy) drawn at s pixels per unit. */
static void region_path(cairo_t *cr, const rt_polygon *q, double ox, double oy, double s, const double *win)
{
	for (int v = 0; v < q->n; v++) {
		double x = ox + (q->xy[2 * v] - win[0]) * s, y = oy + (win[3] - q->xy[2 * v + 1]) * s;
		if (v == 0)
			cairo_move_to(cr, x, y);
		else
			cairo_line_to(cr, x, y);
	}
	cairo_close_path(cr);
}

static void draw_panel_2d(cairo_t *cr, const rt_model *m, const plot_cfg *c, const panel *p,
                          const layout *L, double ox, double oy, const double *win, int gw, int gh,
                          const rt_data *d, const int64_t *sel, int64_t ns, bool raster)
{
	const double s = L->W / (win[1] - win[0]);
#define PX(x) (ox + ((x) - win[0]) * s)
#define PY(y) (oy + (win[3] - (y)) * s)
	char what[96];
	snprintf(what, sizeof what, "%lld region%s in window", (long long)p->reg.n, p->reg.n == 1 ? "" : "s");
	draw_panel_title(cr, m, p, ox, oy, L->W, what);

	cairo_save(cr);
	cairo_rectangle(cr, ox, oy, L->W, L->H);
	cairo_clip(cr);

	/* heatmap: white at the decision boundary, towards the class colour
	 * with confidence */
	cairo_surface_t *img = cairo_image_surface_create(CAIRO_FORMAT_RGB24, gw, gh);
	if (cairo_surface_status(img) == CAIRO_STATUS_SUCCESS) {
		cairo_surface_flush(img);
		unsigned char *px = cairo_image_surface_get_data(img);
		int stride = cairo_image_surface_get_stride(img);
		for (int r = 0; r < gh; r++)
			for (int i = 0; i < gw; i++) {
				float v = p->heat[(size_t)r * (size_t)gw + (size_t)i];
				rgb col;
				double a;
				if (m->n_out == 1) {
					double t = 2 * v - 1;
					col = class_color(m, t > 0);
					a = 0.42 * pow(fabs(t), 0.6);
				} else {
					int k = (int)v;
					double conf = v - k;
					col = class_color(m, k);
					a = 0.12 + 0.30 * conf;
				}
				uint32_t R = (uint32_t)lround(255 * (1 - a + a * col.r));
				uint32_t G = (uint32_t)lround(255 * (1 - a + a * col.g));
				uint32_t B = (uint32_t)lround(255 * (1 - a + a * col.b));
				*(uint32_t *)(px + (size_t)r * (size_t)stride + 4 * (size_t)i) = (R << 16) | (G << 8) | B;
			}
		cairo_surface_mark_dirty(img);
		cairo_save(cr);
		cairo_translate(cr, ox, oy);
		cairo_scale(cr, L->W / gw, L->H / gh);
		cairo_set_source_surface(cr, img, 0, 0);
		cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_BILINEAR);
		cairo_pattern_set_extend(cairo_get_source(cr), CAIRO_EXTEND_PAD);
		cairo_paint(cr);
		cairo_restore(cr);
	}
	cairo_surface_destroy(img);

	/* --fill-regions: a pale colour per region, from a generator seeded by
	 * the region's index (the same picture every time), so that neighbours
	 * differ and a region's size shows at a glance; translucent over the
	 * prediction.  Fills only: the outlines below stay the only grey strokes. */
	if (c->fill) {
		rt_rng r;
		rt_rng_seed(&r, 0x6c6c6e2d66696c6cULL);
		for (int64_t k = 0; k < p->reg.n; k++) {
			const rt_polygon *q = &p->reg.p[k];
			double h = rt_rng_uniform(&r) * 6, f = h - floor(h), v = 0.55 + 0.35 * rt_rng_uniform(&r);
			double rgbv[6][3] = { { 1, f, 0 }, { 1 - f, 1, 0 }, { 0, 1, f }, { 0, 1 - f, 1 }, { f, 0, 1 },
			                      { 1, 0, 1 - f } };
			const double *hue = rgbv[(int)h % 6];
			cairo_set_source_rgba(cr, v + (1 - v) * hue[0] * 0.9, v + (1 - v) * hue[1] * 0.9,
			                      v + (1 - v) * hue[2] * 0.9, 0.75);
			region_path(cr, q, ox, oy, s, win);
			cairo_fill(cr);
		}
	}

	/* every region, outlined: one path each.  On a raster, crisp 1-pixel
	 * hairlines: tens of thousands of antialiased strokes would blur into
	 * a grey mass and make the PNG several times larger. */
	cairo_set_source_rgb(cr, REGION_R, REGION_G, REGION_B);
	cairo_set_line_width(cr, raster ? 1 : REGION_LINE);
	cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
	cairo_save(cr);
	if (raster)
		cairo_set_antialias(cr, CAIRO_ANTIALIAS_NONE);
	for (int64_t k = 0; k < p->reg.n; k++) {
		region_path(cr, &p->reg.p[k], ox, oy, s, win);
		cairo_stroke(cr);
	}
	cairo_restore(cr);

	if (d) {
		/* circles: certified l2 margin */
		if (c->circles && ns > 0) {
			cairo_set_line_width(cr, 1.1);
			for (int64_t k = 0; k < ns; k++) {
				if (!isfinite(p->eps[k]))
					continue;
				const float *x = d->x + sel[k] * 2;
				rgb col = class_color(m, d->y ? d->y[sel[k]] : 0);
				cairo_set_source_rgba(cr, col.r * 0.7, col.g * 0.7, col.b * 0.7, 0.9);
				cairo_new_sub_path(cr);
				cairo_arc(cr, PX(x[0]), PY(x[1]), fmax(p->eps[k] * s, 0.35), 0, 2 * M_PI);
				cairo_stroke(cr);
			}
		}
		/* points */
		for (int64_t i = 0; i < d->n; i++) {
			const float *x = d->x + i * 2;
			rgb col = class_color(m, d->y ? d->y[i] : 0);
			cairo_new_sub_path(cr);
			cairo_arc(cr, PX(x[0]), PY(x[1]), 2.3, 0, 2 * M_PI);
			set_rgb(cr, col);
			cairo_fill_preserve(cr);
			cairo_set_source_rgb(cr, 1, 1, 1);
			cairo_set_line_width(cr, 0.6);
			cairo_stroke(cr);
		}
		/* gradient arrows, the longest ARROW_FRACTION of the window's width */
		if (c->arrows && ns > 0 && p->gmax > 0) {
			double scale = ARROW_FRACTION * L->W / p->gmax;
			cairo_set_source_rgb(cr, 0.05, 0.05, 0.05);
			cairo_set_line_width(cr, 0.8);
			for (int64_t k = 0; k < ns; k++) {
				const float *x = d->x + sel[k] * 2;
				const float *g = p->grad + k * 2;
				double x0 = PX(x[0]), y0 = PY(x[1]);
				arrow(cr, x0, y0, x0 + g[0] * scale, y0 - g[1] * scale, 4.5);
			}
		}
	}
	cairo_restore(cr);

	/* frame, window corners, arrow scale */
	cairo_set_source_rgb(cr, 0, 0, 0);
	cairo_set_line_width(cr, 1);
	cairo_rectangle(cr, ox, oy, L->W, L->H);
	cairo_stroke(cr);
	char buf[96];
	cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
	snprintf(buf, sizeof buf, "x \u2208 [%.3g, %.3g], y \u2208 [%.3g, %.3g]", win[0], win[1], win[2], win[3]);
	text_at(cr, ox, oy + L->H + 12, 9, false, buf);
	if (c->arrows && ns > 0 && p->gmax > 0) {
		snprintf(buf, sizeof buf, "longest arrow: \u2016\u2207f\u2016 = %.3g", p->gmax);
		text_at(cr, ox + L->W - text_width(cr, 9, false, buf), oy + L->H + 12, 9, false, buf);
	}
#undef PX
#undef PY
}

static void draw_panel_1d(cairo_t *cr, const rt_model *m, const panel *p, const layout *L, double ox,
                          double oy, const char *aname, const char *bname, double seglen)
{
	const int O = m->n_out;
	char what[128];
	snprintf(what, sizeof what, "%lld boundar%s on the segment (%lld linear pieces)", (long long)p->nt,
	         p->nt == 1 ? "y" : "ies", (long long)p->nt + 1);
	draw_panel_title(cr, m, p, ox, oy, L->W, what);
	/* logit plot above, the tick line below */
	const double tick_h = 34, ph = L->H - tick_h - 6, lpad = 44;
	const double px0 = ox + lpad, pw = L->W - lpad - 4;
	double lo = INFINITY, hi = -INFINITY;
	for (int64_t k = 0; k < (p->nt + 2) * O; k++) {
		lo = fmin(lo, p->seglogits[k]);
		hi = fmax(hi, p->seglogits[k]);
	}
	if (!(hi > lo)) {
		lo -= 1;
		hi += 1;
	}
	double pad = 0.06 * (hi - lo);
	lo -= pad;
	hi += pad;
#define TX(t) (px0 + (t) * pw)
#define LY(v) (oy + (hi - (v)) / (hi - lo) * ph)
	cairo_set_source_rgb(cr, 0.97, 0.97, 0.97);
	cairo_rectangle(cr, px0, oy, pw, ph);
	cairo_fill(cr);
	/* boundaries as faint vertical lines through the plot */
	cairo_set_source_rgba(cr, REGION_R, REGION_G, REGION_B, 0.18);
	cairo_set_line_width(cr, 0.5);
	for (int64_t k = 0; k < p->nt; k++) {
		cairo_move_to(cr, TX(p->t[k]), oy);
		cairo_line_to(cr, TX(p->t[k]), oy + ph);
	}
	cairo_stroke(cr);
	if (lo < 0 && hi > 0) {
		cairo_set_source_rgb(cr, 0.55, 0.55, 0.55);
		cairo_set_line_width(cr, 0.8);
		double dash = 3;
		cairo_set_dash(cr, &dash, 1, 0);
		cairo_move_to(cr, px0, LY(0));
		cairo_line_to(cr, px0 + pw, LY(0));
		cairo_stroke(cr);
		cairo_set_dash(cr, NULL, 0, 0);
	}
	/* logits: exactly linear between boundaries */
	cairo_set_line_width(cr, 1.4);
	for (int j = 0; j < O; j++) {
		for (int64_t k = 0; k < p->nt + 2; k++) {
			double t = k == 0 ? 0 : k == p->nt + 1 ? 1 : p->t[k - 1];
			double y = LY(p->seglogits[k * O + j]);
			if (k == 0)
				cairo_move_to(cr, TX(t), y);
			else
				cairo_line_to(cr, TX(t), y);
		}
		set_rgb(cr, O == 1 ? (rgb){ 0.1, 0.1, 0.1 } : class_color(m, j));
		cairo_stroke(cr);
	}
	cairo_set_source_rgb(cr, 0, 0, 0);
	cairo_set_line_width(cr, 1);
	cairo_rectangle(cr, px0, oy, pw, ph);
	cairo_stroke(cr);
	char buf[160];
	cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
	snprintf(buf, sizeof buf, "%.3g", hi - pad);
	text_at(cr, ox, LY(hi - pad) + 4, 9, false, buf);
	snprintf(buf, sizeof buf, "%.3g", lo + pad);
	text_at(cr, ox, LY(lo + pad) + 4, 9, false, buf);
	text_at(cr, ox, oy + ph / 2 + 4, 9, false, O == 1 ? "logit" : "logits");
	/* the segment with a tick per boundary */
	double ly = oy + ph + 6 + tick_h / 2 - 4;
	cairo_set_source_rgb(cr, 0, 0, 0);
	cairo_set_line_width(cr, 1.2);
	cairo_move_to(cr, TX(0), ly);
	cairo_line_to(cr, TX(1), ly);
	cairo_stroke(cr);
	cairo_set_source_rgb(cr, REGION_R, REGION_G, REGION_B);
	cairo_set_line_width(cr, 0.6);
	for (int64_t k = 0; k < p->nt; k++) {
		cairo_move_to(cr, TX(p->t[k]), ly - 6);
		cairo_line_to(cr, TX(p->t[k]), ly + 6);
	}
	cairo_stroke(cr);
	cairo_set_source_rgb(cr, 0, 0, 0);
	cairo_arc(cr, TX(0), ly, 3, 0, 2 * M_PI);
	cairo_fill(cr);
	cairo_arc(cr, TX(1), ly, 3, 0, 2 * M_PI);
	cairo_fill(cr);
	text_at(cr, TX(0), ly + 17, 10, false, aname);
	snprintf(buf, sizeof buf, "\u2016B \u2212 A\u2016\u2082 = %.4g", seglen);
	text_at(cr, TX(0.5) - text_width(cr, 10, false, buf) / 2, ly + 17, 10, false, buf);
	text_at(cr, TX(1) - text_width(cr, 10, false, bname), ly + 17, 10, false, bname);
#undef TX
#undef LY
}

/* The legend: a line of symbols with labels, wrapped to the figure's width. */
static double draw_legend(cairo_t *cr, const rt_model *m, const plot_cfg *c, bool one_d, bool has_data,
                          double x0, double y0, double width, bool dry)
{
	double x = x0, y = y0 + 12;
	const double fs = 10.5;
	int nclass = m->n_out == 1 ? 2 : m->n_out;
	enum { ITEMS = 40 };
	struct { int kind, cls; char label[96]; } it[ITEMS];
	int n = 0;
	if (has_data && !one_d)
		for (int k = 0; k < nclass && n < 12; k++) {
			it[n].kind = 0;
			it[n].cls = k;
			snprintf(it[n++].label, 96, "class %d", k);
		}
	if (one_d && m->n_out > 1)
		for (int k = 0; k < nclass && n < 12; k++) {
			it[n].kind = 5;
			it[n].cls = k;
			snprintf(it[n++].label, 96, "logit %d", k);
		}
	it[n].kind = 1;
	snprintf(it[n++].label, 96, one_d ? "region boundary crossed" : "region boundary");
	if (!one_d && has_data && c->circles) {
		it[n].kind = 2;
		snprintf(it[n++].label, 96, "circle: certified l2 margin \u03b5\u2082");
	}
	if (!one_d && has_data && c->arrows) {
		it[n].kind = 3;
		snprintf(it[n++].label, 96, "arrow: gradient of the logit");
	}
	if (!one_d) {
		it[n].kind = 4;
		snprintf(it[n++].label, 96, m->n_out == 1 ? "background: P(class 1)" : "background: predicted class");
	}
	for (int i = 0; i < n; i++) {
		double w = 16 + text_width(cr, fs, false, it[i].label) + 14;
		if (x + w > x0 + width && x > x0) {
			x = x0;
			y += 17;
		}
		if (!dry) {
			cairo_new_path(cr);
			switch (it[i].kind) {
			case 0:
				set_rgb(cr, class_color(m, it[i].cls));
				cairo_arc(cr, x + 5, y - 4, 3.5, 0, 2 * M_PI);
				cairo_fill(cr);
				break;
			case 1: /* not the outline colour itself, which only outlines use */
				cairo_set_source_rgb(cr, 0.52, 0.52, 0.52);
				cairo_set_line_width(cr, 0.8);
				cairo_move_to(cr, x, y - 1);
				cairo_line_to(cr, x + 10, y - 8);
				cairo_stroke(cr);
				break;
			case 2:
				cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
				cairo_set_line_width(cr, 1.1);
				cairo_arc(cr, x + 5, y - 4, 5, 0, 2 * M_PI);
				cairo_stroke(cr);
				break;
			case 3:
				cairo_set_source_rgb(cr, 0.05, 0.05, 0.05);
				cairo_set_line_width(cr, 0.9);
				arrow(cr, x, y - 4, x + 12, y - 4, 4.5);
				break;
			case 4: {
				cairo_pattern_t *g = cairo_pattern_create_linear(x, 0, x + 12, 0);
				rgb c0 = class_color(m, 0), c1 = class_color(m, 1);
				cairo_pattern_add_color_stop_rgb(g, 0, 1 - 0.42 + 0.42 * c0.r, 1 - 0.42 + 0.42 * c0.g,
				                                 1 - 0.42 + 0.42 * c0.b);
				cairo_pattern_add_color_stop_rgb(g, 0.5, 1, 1, 1);
				cairo_pattern_add_color_stop_rgb(g, 1, 1 - 0.42 + 0.42 * c1.r, 1 - 0.42 + 0.42 * c1.g,
				                                 1 - 0.42 + 0.42 * c1.b);
				cairo_set_source(cr, g);
				cairo_rectangle(cr, x, y - 9, 12, 10);
				cairo_fill(cr);
				cairo_pattern_destroy(g);
				break;
			}
			case 5:
				set_rgb(cr, class_color(m, it[i].cls));
				cairo_set_line_width(cr, 1.6);
				cairo_move_to(cr, x, y - 4);
				cairo_line_to(cr, x + 12, y - 4);
				cairo_stroke(cr);
				break;
			}
			cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
			text_at(cr, x + 16, y, fs, false, it[i].label);
			cairo_new_path(cr);
		}
		x += w;
	}
	return y - y0 + 8;
}

typedef struct membuf {
	unsigned char *p;
	size_t n, cap;
	bool failed;
} membuf;

static cairo_status_t mem_write(void *closure, const unsigned char *data, unsigned int len)
{
	membuf *b = closure;
	if (b->n + len > b->cap) {
		size_t cap = b->cap ? b->cap : 65536;
		while (cap < b->n + len)
			cap *= 2;
		unsigned char *q = realloc(b->p, cap);
		if (!q) {
			b->failed = true;
			return CAIRO_STATUS_WRITE_ERROR;
		}
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->n, data, len);
	b->n += len;
	return CAIRO_STATUS_SUCCESS;
}

/* ------------------------------------------------------------------------
 * The command
 * ---------------------------------------------------------------------- */
static const char *base_name(const char *path, char *buf, size_t cap)
{
	const char *b = strrchr(path, '/');
	b = b ? b + 1 : path;
	snprintf(buf, cap, "%s", b);
	size_t n = strlen(buf);
	static const char *ext = ".safetensors";
	if (n > strlen(ext) && strcmp(buf + n - strlen(ext), ext) == 0)
		buf[n - strlen(ext)] = 0;
	return buf;
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
		if (n >= D || !parse_double(tok, &v)) {
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

static int ends_with(const char *s, const char *ext)
{
	size_t n = strlen(s), e = strlen(ext);
	return n > e && strcasecmp(s + n - e, ext) == 0;
}

static bool chart_wanted(int argc, char **argv);
static int charts_main(int argc, char **argv);

int rt_plot_main(const rt_model *m, const char *defaults, int argc, char **argv)
{
	if (chart_wanted(argc, argv))
		return charts_main(argc, argv);
	plot_cfg c = { .prog = argc > 0 && argv[0] ? argv[0] : "plot", .points = -1,
	               .width = DEFAULT_WIDTH, .circles = true, .arrows = true };
	char *dcopy = NULL, *wcopy = NULL, *tcopy = NULL, *scopy = NULL;
	panel pan[MAX_PANELS];
	int np = 0;
	rt_data d = { 0 };
	bool have_data = false;
	int64_t *sel = NULL, ns = 0;
	float *sa = NULL, *sb = NULL;
	membuf mb = { 0 };
	cairo_surface_t *surf = NULL;
	cairo_t *cr = NULL;
	memset(pan, 0, sizeof pan);

	int rc = parse_defaults(&c, defaults, &dcopy);
	if (!rc)
		rc = parse_args(&c, argc, argv);
	if (rc)
		goto done;
	if (c.help) {
		plot_usage(stdout, m, &c);
		goto done;
	}

	/* usage checks, all before any work */
	rc = 2;
	if (!c.weights) {
		usage_fail(&c, "--weights W.safetensors[,W2,...] is required");
		goto done;
	}
	bool png = false;
	if (!c.count) {
		if (!c.out) {
			usage_fail(&c, "-o OUT.svg or -o OUT.png is required");
			goto done;
		}
		if (ends_with(c.out, ".png"))
			png = true;
		else if (!ends_with(c.out, ".svg")) {
			usage_fail(&c, "-o '%s': the figure's name must end in .svg or .png", c.out);
			goto done;
		}
	}
	if (m->n_in != 2 && !c.segment) {
		usage_fail(&c, "model '%s' has %d inputs; the region picture needs 2 (use --segment for a 1-D picture)",
		           m->name, m->n_in);
		goto done;
	}
	char *wparts[MAX_PANELS], *tparts[MAX_PANELS];
	wcopy = strdup(c.weights);
	if (!wcopy) {
		rc = user_fail(&c, "out of memory");
		goto done;
	}
	np = split(wcopy, ',', wparts, MAX_PANELS);
	if (np < 0) {
		np = 0;
		usage_fail(&c, "--weights: at most %d files", MAX_PANELS);
		goto done;
	}
	for (int i = 0; i < np; i++)
		if (!wparts[i][0]) {
			usage_fail(&c, "--weights: empty file name in '%s'", c.weights);
			np = 0;
			goto done;
		}
	if ((rc = check_files(&c, wparts, np)))
		goto done;
	rc = 2;
	if (c.titles) {
		tcopy = strdup(c.titles);
		int nt = tcopy ? split(tcopy, ',', tparts, MAX_PANELS) : -1;
		if (nt != np) {
			usage_fail(&c, "--titles has %d title%s for %d weights file%s", nt < 0 ? MAX_PANELS + 1 : nt,
			           nt == 1 ? "" : "s", np, np == 1 ? "" : "s");
			np = 0;
			goto done;
		}
	}
	double win[4] = { 0 };
	bool have_win = false;
	if (c.window) {
		char buf[256], *wp[4];
		snprintf(buf, sizeof buf, "%s", c.window);
		int nw = strlen(c.window) < sizeof buf ? split(buf, ',', wp, 4) : -1;
		bool ok = nw == 4;
		for (int i = 0; ok && i < 4; i++)
			ok = parse_double(wp[i], &win[i]);
		if (!ok || !(win[0] < win[1]) || !(win[2] < win[3])) {
			usage_fail(&c, "--window takes x0,x1,y0,y1 with x0 < x1 and y0 < y1, got '%s'", c.window);
			np = 0;
			goto done;
		}
		have_win = true;
	}
	char *send[2] = { NULL, NULL };
	if (c.segment) {
		scopy = strdup(c.segment);
		if (!scopy || split(scopy, ',', send, 2) != 2 || !send[0][0] || !send[1][0]) {
			usage_fail(&c, "--segment takes A,B (each #N or coordinates separated by ';'), got '%s'",
			           c.segment);
			np = 0;
			goto done;
		}
	}
	for (int i = 0; i < np; i++) {
		pan[i].path = wparts[i];
		char bn[256];
		snprintf(pan[i].title, sizeof pan[i].title, "%s",
		         c.titles ? tparts[i] : base_name(wparts[i], bn, sizeof bn));
	}

	/* inputs */
	rc = 1;
	char err[RT_ERRLEN];
	for (int i = 0; i < np; i++) {
		pan[i].P = rt_alloc_floats(m->n_params);
		pan[i].pre = rt_alloc_floats(m->pre_floats);
		if (!pan[i].P || !pan[i].pre) {
			user_fail(&c, "out of memory");
			goto done;
		}
		if (rt_params_load_named(m->tensors, m->n_tensors, &c.names, pan[i].path, pan[i].P, err) != 0) {
			fprintf(stderr, "%s\n", err);
			goto done;
		}
		m->prepare(pan[i].P, pan[i].pre);
		objective_of(pan[i].path, pan[i].objective, sizeof pan[i].objective);
	}
	bool need_data = c.segment ? (send[0][0] == '#' || send[1][0] == '#') : true;
	if (c.data && need_data) {
		int r = load_data(&c, m, c.data, &d);
		if (r) {
			rc = r;
			goto done;
		}
		have_data = true;
	}

	layout L = { .margin = 14, .title_h = 46, .gap = 22 };
	bool one_d = c.segment != NULL;
	int gw = 0, gh = 0;
	char aname[96] = "A", bname[96] = "B";
	double seglen = 0;
	if (one_d) {
		sa = rt_alloc_floats(m->n_in);
		sb = rt_alloc_floats(m->n_in);
		if (!sa || !sb) {
			user_fail(&c, "out of memory");
			goto done;
		}
		int r = segment_end(&c, m, have_data ? &d : NULL, send[0], sa, aname, sizeof aname);
		if (!r)
			r = segment_end(&c, m, have_data ? &d : NULL, send[1], sb, bname, sizeof bname);
		if (r) {
			rc = r;
			goto done;
		}
		for (int i = 0; i < m->n_in; i++)
			seglen += ((double)sb[i] - sa[i]) * ((double)sb[i] - sa[i]);
		seglen = sqrt(seglen);
		if (seglen == 0) {
			rc = usage_fail(&c, "--segment: A and B are the same point");
			goto done;
		}
		for (int i = 0; i < np; i++) {
			if (rt_segment_boundaries(m, pan[i].P, sa, sb, &pan[i].t, &pan[i].nt, err) != 0) {
				fprintf(stderr, "%s\n", err);
				goto done;
			}
			pan[i].count = pan[i].nt;
			if (!c.count && segment_logits(m, &pan[i], sa, sb) != 0) {
				user_fail(&c, "out of memory");
				goto done;
			}
		}
		L.W = (double)c.width * 1.6;
		L.H = (double)c.width * 0.55;
		L.gap = 30;
	} else {
		if (!have_win) {
			if (!have_data || d.n == 0) {
				rc = usage_fail(&c, "no data to take the window from: give --data or --window x0,x1,y0,y1");
				goto done;
			}
			double b[4] = { INFINITY, -INFINITY, INFINITY, -INFINITY };
			for (int64_t i = 0; i < d.n; i++) {
				b[0] = fmin(b[0], d.x[2 * i]);
				b[1] = fmax(b[1], d.x[2 * i]);
				b[2] = fmin(b[2], d.x[2 * i + 1]);
				b[3] = fmax(b[3], d.x[2 * i + 1]);
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
		double aspect = (win[3] - win[2]) / (win[1] - win[0]);
		if (aspect < 0.05 || aspect > 20) {
			rc = usage_fail(&c, "the window [%g, %g] x [%g, %g] is too elongated to draw with equal scales",
			                win[0], win[1], win[2], win[3]);
			goto done;
		}
		L.W = (double)c.width;
		L.H = round(L.W * aspect);
		/* circles and arrows for a seeded random subset of the points */
		if (have_data) {
			int64_t want = c.points < 0 ? DEFAULT_POINTS : c.points;
			ns = want < d.n ? want : d.n;
			sel = malloc(sizeof *sel * (size_t)(d.n > 0 ? d.n : 1));
			if (!sel) {
				user_fail(&c, "out of memory");
				goto done;
			}
			for (int64_t i = 0; i < d.n; i++)
				sel[i] = i;
			rt_rng r;
			rt_rng_seed(&r, 0);
			for (int64_t i = 0; i < ns; i++) {
				int64_t j = i + (int64_t)(rt_rng_uniform(&r) * (double)(d.n - i));
				if (j >= d.n)
					j = d.n - 1;
				int64_t t = sel[i];
				sel[i] = sel[j];
				sel[j] = t;
			}
		}
		gw = (int)ceil(L.W / HEAT_CELL);
		gh = (int)ceil(L.H / HEAT_CELL);
		for (int i = 0; i < np; i++) {
			if (rt_regions_2d(m, pan[i].P, win, &pan[i].reg, err) != 0) {
				fprintf(stderr, "%s\n", err);
				goto done;
			}
			pan[i].count = pan[i].reg.n;
			if (c.count)
				continue;
			if (compute_heat(m, &pan[i], win, gw, gh, c.threads) != 0 ||
			    (have_data && (c.circles || c.arrows) && certify_points(m, &pan[i], &d, sel, ns) != 0)) {
				user_fail(&c, "out of memory");
				goto done;
			}
		}
	}

	if (c.count) {
		for (int i = 0; i < np; i++)
			printf("%s: %lld %s\n", pan[i].title, (long long)pan[i].count,
			       one_d ? "boundaries on the segment" : "regions in the window");
		rc = fflush(stdout) == 0 ? 0 : 1;
		goto done;
	}

	/* layout: panels side by side (2-D) or stacked (1-D), the legend below */
	double inner_w = one_d ? L.W : np * L.W + (np - 1) * L.gap;
	{
		cairo_surface_t *probe = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
		cairo_t *pc = cairo_create(probe);
		L.legend_h = draw_legend(pc, m, &c, one_d, have_data, 0, 0, inner_w, true);
		cairo_destroy(pc);
		cairo_surface_destroy(probe);
	}
	double below = one_d ? 0 : 16;
	L.fig_w = ceil(2 * L.margin + inner_w);
	L.fig_h = one_d ? ceil(2 * L.margin + np * (L.title_h + L.H) + (np - 1) * L.gap + 8 + L.legend_h)
	                : ceil(2 * L.margin + L.title_h + L.H + below + 8 + L.legend_h);
	if (png)
		surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)L.fig_w, (int)L.fig_h);
	else
		surf = cairo_svg_surface_create_for_stream(mem_write, &mb, L.fig_w, L.fig_h);
	cr = cairo_create(surf);
	if (cairo_status(cr) != CAIRO_STATUS_SUCCESS) {
		user_fail(&c, "cannot draw: %s", cairo_status_to_string(cairo_status(cr)));
		goto done;
	}
	cairo_set_source_rgb(cr, 1, 1, 1);
	cairo_paint(cr);
	for (int i = 0; i < np; i++) {
		double ox, oy;
		panel_origin(&L, i, one_d, &ox, &oy);
		if (one_d)
			draw_panel_1d(cr, m, &pan[i], &L, ox, oy, aname, bname, seglen);
		else
			draw_panel_2d(cr, m, &c, &pan[i], &L, ox, oy, win, gw, gh, have_data ? &d : NULL, sel, ns, png);
	}
	double ly = one_d ? L.margin + np * (L.title_h + L.H) + (np - 1) * L.gap + 8
	                  : L.margin + L.title_h + L.H + below + 8;
	draw_legend(cr, m, &c, one_d, have_data, L.margin, ly, inner_w, false);
	cairo_destroy(cr);
	cr = NULL;
	if (png) {
		cairo_surface_flush(surf);
		cairo_status_t st = cairo_surface_write_to_png_stream(surf, mem_write, &mb);
		if (st != CAIRO_STATUS_SUCCESS || mb.failed) {
			user_fail(&c, "cannot encode the PNG: %s", cairo_status_to_string(st));
			goto done;
		}
	} else {
		cairo_surface_finish(surf);
		if (cairo_surface_status(surf) != CAIRO_STATUS_SUCCESS || mb.failed) {
			user_fail(&c, "cannot write the SVG: %s", cairo_status_to_string(cairo_surface_status(surf)));
			goto done;
		}
	}
	if (rt_write_atomic(c.out, mb.p, mb.n, err) != 0) {
		fprintf(stderr, "%s\n", err);
		goto done;
	}
	for (int i = 0; i < np; i++)
		printf("%s: %lld %s\n", pan[i].title, (long long)pan[i].count,
		       one_d ? "boundaries on the segment" : "regions in the window");
	if (!one_d)
		printf("window: %.6g,%.6g,%.6g,%.6g\n", win[0], win[1], win[2], win[3]);
	printf("wrote %s (%d panel%s, %.0f x %.0f)\n", c.out, np, np == 1 ? "" : "s", L.fig_w, L.fig_h);
	rc = fflush(stdout) == 0 ? 0 : 1;
done:
	if (cr)
		cairo_destroy(cr);
	if (surf)
		cairo_surface_destroy(surf);
	free(mb.p);
	for (int i = 0; i < MAX_PANELS; i++)
		panel_free(&pan[i]);
	rt_data_free(&d);
	free(sel);
	free(sa);
	free(sb);
	free(dcopy);
	free(wcopy);
	free(tcopy);
	free(scopy);
	return rc;
}

/* ------------------------------------------------------------------------
 * Charts of training logs and evaluations: `llnc plot --log` and
 * `llnc plot --margins` (no model needed).
 *
 * --log RUN.jsonl,...: the JSON lines `llnc train --log` writes, one per
 * epoch; two panels, the validation median eps_2 (log axis) and the
 * validation accuracy by epoch, one line per run, the epoch with the best
 * validation loss marked.  --margins EVAL.json,...: `llnc eval --json
 * --per-example` output; the empirical CDF of eps_p over the examples on a
 * log axis, one line per file, the median marked.  Margins no neuron bounds
 * (null) count in the CDF's denominator but are never reached.  Series lines
 * are the only strokes of width 2 (tests read them back from the SVG).
 * ---------------------------------------------------------------------- */
#define SERIES_LINE 2.0

static const rgb series_rgb[8] = {
	{ 0.122, 0.467, 0.706 }, { 0.839, 0.153, 0.157 }, { 0.173, 0.627, 0.173 },
	{ 1.000, 0.498, 0.055 }, { 0.580, 0.404, 0.741 }, { 0.549, 0.337, 0.294 },
	{ 0.890, 0.467, 0.761 }, { 0.498, 0.498, 0.498 },
};

typedef struct chart_cfg {
	const char *prog, *logs, *margins, *titles, *out;
	int norm;               /* --margins: RT_L1, RT_L2, RT_LINF */
	long long width;
	bool help;
} chart_cfg;

typedef struct series {
	char title[128];
	int64_t n;              /* points */
	double *x, *y, *acc;    /* --log: epoch, median eps_2, accuracy; --margins: sorted eps, CDF */
	int64_t best;           /* --log: index of the best epoch, -1 if none is marked */
	int64_t total;          /* --margins: examples, unbounded ones included */
	double median;          /* --margins: as llnc eval computes it (inf: unbounded) */
} series;

static void series_free(series *s)
{
	free(s->x);
	free(s->y);
	free(s->acc);
	memset(s, 0, sizeof *s);
}

/* "runs/roll-C1.eval.json" -> "roll-C1" */
static void chart_name(const char *path, char *buf, size_t cap)
{
	const char *b = strrchr(path, '/');
	snprintf(buf, cap, "%s", b ? b + 1 : path);
	static const char *ext[] = { ".eval.json", ".jsonl", ".json" };
	for (size_t i = 0; i < sizeof ext / sizeof *ext; i++)
		if (ends_with(buf, ext[i])) {
			buf[strlen(buf) - strlen(ext[i])] = 0;
			break;
		}
}

static bool grow(series *s, int64_t *cap)
{
	if (s->n < *cap)
		return true;
	int64_t c = *cap ? 2 * *cap : 64;
	double *x = realloc(s->x, sizeof *x * (size_t)c);
	if (x)
		s->x = x;
	double *y = x ? realloc(s->y, sizeof *y * (size_t)c) : NULL;
	if (y)
		s->y = y;
	double *a = y ? realloc(s->acc, sizeof *a * (size_t)c) : NULL;
	if (a)
		s->acc = a;
	if (!a)
		return false;
	*cap = c;
	return true;
}

/* One `llnc train --log` file.  Returns 0 or the exit status. */
static int read_log(const chart_cfg *c, const char *path, series *s)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return rt_cmd_fail(c->prog, 1, "%s: cannot read: %s", path, strerror(errno));
	char *line = NULL;
	size_t lcap = 0;
	int64_t cap = 0, rec = 0;
	int rc = 0;
	s->best = -1;
	while (getline(&line, &lcap, f) > 0) {
		rec++;
		if (strspn(line, " \t\r\n") == strlen(line))
			continue;
		json_error_t je;
		json_t *o = json_loads(line, 0, &je);
		json_t *v = o ? json_object_get(o, "valid") : NULL;
		json_t *ep = o ? json_object_get(o, "epoch") : NULL;
		json_t *e2 = v ? json_object_get(v, "eps_l2") : NULL;
		json_t *acc = v ? json_object_get(v, "accuracy") : NULL;
		json_t *med = e2 ? json_array_get(e2, 1) : NULL;
		if (!o)
			rc = rt_cmd_fail(c->prog, 1, "%s: record %lld: not JSON: %s", path, (long long)rec, je.text);
		else if (!json_is_integer(ep))
			rc = rt_cmd_fail(c->prog, 1, "%s: record %lld: no \"epoch\" number (not a log of llnc train?)",
			                 path, (long long)rec);
		else if (!json_is_object(v))
			rc = rt_cmd_fail(c->prog, 1, "%s: record %lld: no validation results (train with --valid N)",
			                 path, (long long)rec);
		else if (!json_is_number(med) || !json_is_number(acc))
			rc = rt_cmd_fail(c->prog, 1, "%s: record %lld: no validation accuracy and eps_2 median "
			                 "(train with --eval-norms including 2)", path, (long long)rec);
		else if (!grow(s, &cap))
			rc = rt_cmd_fail(c->prog, 1, "out of memory");
		else {
			s->x[s->n] = (double)json_integer_value(ep);
			s->y[s->n] = json_number_value(med);
			s->acc[s->n] = 100 * json_number_value(acc);
			/* resumed runs append: a later "best" replaces an earlier one */
			if (json_is_true(json_object_get(o, "best")))
				s->best = s->n;
			s->n++;
		}
		json_decref(o);
		if (rc)
			break;
	}
	free(line);
	fclose(f);
	if (!rc && s->n == 0)
		rc = rt_cmd_fail(c->prog, 1, "%s: no epochs in the log", path);
	return rc;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* One `llnc eval --json --per-example` file. */
static int read_margins(const chart_cfg *c, const char *path, series *s)
{
	static const char *key[RT_NNORMS] = { "eps_l1", "eps_l2", "eps_linf" };
	json_error_t je;
	json_t *o = json_load_file(path, 0, &je);
	if (!o)
		return rt_cmd_fail(c->prog, 1, "%s: line %d: %s", path, je.line, je.text);
	json_t *ex = json_object_get(o, "examples");
	json_t *a = ex ? json_object_get(ex, key[c->norm]) : NULL;
	int rc = 0;
	if (!json_is_object(ex))
		rc = rt_cmd_fail(c->prog, 1, "%s: no \"examples\" (write it with llnc eval --json --per-example)", path);
	else if (!json_is_array(a))
		rc = rt_cmd_fail(c->prog, 1, "%s: no per-example \"%s\" (evaluate with --norms including %s)", path,
		                 key[c->norm], c->norm == RT_L1 ? "1" : c->norm == RT_L2 ? "2" : "inf");
	size_t n = rc ? 0 : json_array_size(a);
	if (!rc && n == 0)
		rc = rt_cmd_fail(c->prog, 1, "%s: \"%s\" is empty", path, key[c->norm]);
	float *all = NULL;
	if (!rc) {
		s->x = malloc(sizeof *s->x * n);
		s->y = malloc(sizeof *s->y * n);
		all = malloc(sizeof *all * n);
		if (!s->x || !s->y || !all)
			rc = rt_cmd_fail(c->prog, 1, "out of memory");
	}
	for (size_t i = 0; !rc && i < n; i++) {
		json_t *v = json_array_get(a, i);
		all[i] = INFINITY;
		if (json_is_null(v))
			continue;   /* unbounded */
		if (!json_is_number(v) || !(json_number_value(v) >= 0))
			rc = rt_cmd_fail(c->prog, 1, "%s: record %zu: %s is not a margin: expected a number >= 0 or null",
			                 path, i + 1, key[c->norm]);
		else
			all[i] = (float)(s->x[s->n++] = json_number_value(v));
	}
	json_decref(o);
	if (!rc)
		s->median = rt_percentile(all, (int64_t)n, 50);
	free(all);
	if (rc)
		return rc;
	s->total = (int64_t)n;
	s->best = -1;
	qsort(s->x, (size_t)s->n, sizeof *s->x, cmp_double);
	for (int64_t i = 0; i < s->n; i++)
		s->y[i] = (double)(i + 1) / (double)n;
	return 0;
}

/* ---- axes ---- */
typedef struct axis {
	double lo, hi;
	bool log;
} axis;

static double axis_frac(const axis *a, double v)
{
	if (a->log)
		return (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo));
	return (v - a->lo) / (a->hi - a->lo);
}

/* A range that holds [lo, hi]: whole decades on a log axis, a margin of 5%
 * (and at least 1 unit around a single value) on a linear one. */
static axis axis_fit(double lo, double hi, bool log_scale)
{
	if (log_scale) {
		double a = floor(log10(lo)), b = ceil(log10(hi));
		if (b <= a)
			b = a + 1;
		return (axis){ pow(10, a), pow(10, b), true };
	}
	double pad = hi > lo ? 0.05 * (hi - lo) : 1;
	return (axis){ lo - pad, hi + pad, false };
}

static double nice_step(double span, int want)
{
	double raw = span / want, p = pow(10, floor(log10(raw))), f = raw / p;
	return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

/* Tick values of an axis, at most cap: 1, 2, 5 times powers of ten on a log
 * axis spanning up to two decades (powers of ten alone on a wider one), a
 * 1-2-5 step on a linear axis (whole numbers when integer). */
static int axis_ticks(const axis *a, bool integer, int want, double *t, int cap, double *step)
{
	int n = 0;
	*step = 0;
	if (a->log) {
		int k0 = (int)floor(log10(a->lo) + 1e-9), k1 = (int)ceil(log10(a->hi) - 1e-9);
		static const double m[3] = { 1, 2, 5 };
		int nm = k1 - k0 <= 2 ? 3 : 1;
		for (int k = k0; k <= k1; k++)
			for (int j = 0; j < nm && n < cap; j++) {
				double v = m[j] * pow(10, k);
				if (v >= a->lo * (1 - 1e-9) && v <= a->hi * (1 + 1e-9))
					t[n++] = v;
			}
		return n;
	}
	*step = nice_step(a->hi - a->lo, want);
	if (integer && *step < 1)
		*step = 1;
	for (double v = ceil(a->lo / *step - 1e-9) * *step; v <= a->hi + 1e-9 * *step && n < cap; v += *step)
		t[n++] = fabs(v) < 1e-9 * *step ? 0 : v;
	return n;
}

static void tick_label(char *buf, size_t cap, double v, bool log_scale, double step)
{
	if (log_scale) {
		int k = (int)floor(log10(v) + 1e-9);
		snprintf(buf, cap, "%.0fe%d", v / pow(10, k), k);
	} else if (step >= 1)
		snprintf(buf, cap, "%.0f", v);
	else
		snprintf(buf, cap, "%.*f", (int)ceil(-log10(step) - 1e-9), v);
}

/* Frame, grid, ticks and labels of a plot area at (ox, oy), w x h. */
static void draw_axes(cairo_t *cr, double ox, double oy, double w, double h, const axis *ax,
                      const axis *ay, bool integer_x, const char *xlabel, const char *title)
{
	char buf[32];
	double t[64], step;
	cairo_set_line_width(cr, 1);
	for (int which = 0; which < 2; which++) {
		const axis *a = which ? ay : ax;
		int n = axis_ticks(a, integer_x && !which, which ? 5 : 6, t, 64, &step);
		for (int i = 0; i < n; i++) {
			double f = axis_frac(a, t[i]);
			double px = which ? ox : ox + f * w, py = which ? oy + h - f * h : oy + h;
			cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
			if (which) {
				cairo_move_to(cr, ox, py);
				cairo_line_to(cr, ox + w, py);
			} else {
				cairo_move_to(cr, px, oy);
				cairo_line_to(cr, px, oy + h);
			}
			cairo_stroke(cr);
			cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
			tick_label(buf, sizeof buf, t[i], a->log, step);
			double tw = text_width(cr, 10, false, buf);
			if (which)
				text_at(cr, ox - tw - 4, py + 3.5, 10, false, buf);
			else
				text_at(cr, px - tw / 2, oy + h + 13, 10, false, buf);
		}
	}
	cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
	cairo_rectangle(cr, ox, oy, w, h);
	cairo_stroke(cr);
	text_at(cr, ox + w / 2 - text_width(cr, 11, false, xlabel) / 2, oy + h + 28, 11, false, xlabel);
	text_at(cr, ox, oy - 8, 12, true, title);
}

/* The line through (x[i], y[i]), and a dot at (mx, my) unless mx is NaN. */
static void draw_series(cairo_t *cr, double ox, double oy, double w, double h, const axis *ax,
                        const axis *ay, const double *x, const double *y, int64_t n, rgb col,
                        double mx, double my)
{
	set_rgb(cr, col);
	cairo_set_line_width(cr, SERIES_LINE);
	cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
	for (int64_t i = 0; i < n; i++) {
		double px = ox + axis_frac(ax, x[i]) * w, py = oy + h - axis_frac(ay, y[i]) * h;
		if (i)
			cairo_line_to(cr, px, py);
		else
			cairo_move_to(cr, px, py);
	}
	if (n == 1)   /* a lone point still shows */
		cairo_rel_line_to(cr, 0.01, 0);
	cairo_stroke(cr);
	if (isfinite(mx) && isfinite(my)) {
		cairo_arc(cr, ox + axis_frac(ax, mx) * w, oy + h - axis_frac(ay, my) * h, 4, 0,
		          2 * 3.14159265358979);
		cairo_fill(cr);
	}
}

static void chart_usage(FILE *f, const chart_cfg *c)
{
	fprintf(f,
		"usage: %s --log RUN.jsonl[,RUN2.jsonl,...] -o OUT.svg|OUT.png [options]\n"
		"       %s --margins EVAL.json[,EVAL2.json,...] -o OUT.svg|OUT.png [options]\n"
		"\n"
		"--log: the validation curves of training runs, from the JSON lines that\n"
		"'llnc train --log' writes (with --valid N and eps_2 among --eval-norms):\n"
		"median eps_2 (log axis) and accuracy by epoch, the best epoch marked.\n"
		"--margins: the distribution of the margin eps_p over a data set, from\n"
		"'llnc eval --json --per-example': its CDF on a log axis, the median marked.\n"
		"One line per file (at most %d).  No .lln file is needed.\n"
		"\n"
		"  --titles T1,T2,...    line titles [the file names]\n"
		"  --norm 1|2|inf        --margins: which margin [2]\n"
		"  --width PX            width of one panel in pixels [%d]\n"
		"  -o OUT.svg|OUT.png    the figure (format from the extension)\n"
		"  --help                show this help\n",
		c->prog, c->prog, MAX_PANELS, DEFAULT_WIDTH);
}

enum { C_LOG, C_MARGINS, C_TITLES, C_NORM, C_WIDTH, C_OUT, C_HELP };

static int chart_args(chart_cfg *c, int argc, char **argv)
{
	static const rt_flag flags[] = {
		{ "log", true, C_LOG }, { "margins", true, C_MARGINS }, { "titles", true, C_TITLES },
		{ "norm", true, C_NORM }, { "width", true, C_WIDTH }, { "-o", true, C_OUT },
		{ "help", false, C_HELP }, { "-h", false, C_HELP },
	};
	rt_flags f;
	rt_flags_init(&f, flags, (int)(sizeof flags / sizeof *flags), argc, argv);
	f.prog = c->prog;
	f.context = "; --log and --margins take no .lln file and no region options";
	int rc = 0;
	for (int id; !rc && !c->help && (id = rt_flags_next(&f)) != RT_FLAG_END;) {
		const char *v = f.value;
		switch (id) {
		case RT_FLAG_ERROR: rc = 2; break;
		case RT_FLAG_ARG:
			rc = usage_fail(c, "unexpected argument '%s' (see --help%s)", v, f.context);
			break;
		case C_HELP: c->help = true; break;
		case C_LOG: c->logs = v; break;
		case C_MARGINS: c->margins = v; break;
		case C_TITLES: c->titles = v; break;
		case C_OUT: c->out = v; break;
		case C_NORM: {
			int k = !strcmp(v, "1") ? RT_L1 : !strcmp(v, "2") ? RT_L2 : !strcmp(v, "inf") ? RT_LINF : -1;
			if (k < 0)
				rc = usage_fail(c, "--norm takes 1, 2 or inf, got '%s'", v);
			else
				c->norm = k;
			break;
		}
		case C_WIDTH: {
			char *end;
			errno = 0;
			c->width = strtoll(v, &end, 10);
			if (end == v || *end || errno || c->width < 100 || c->width > 4000)
				rc = usage_fail(c, "--width takes an integer from 100 to 4000, got '%s'", v);
			break;
		}
		}
	}
	rt_flags_done(&f);
	return rc;
}

static bool chart_wanted(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--log") || !strcmp(argv[i], "--margins") || !strncmp(argv[i], "--log=", 6) ||
		    !strncmp(argv[i], "--margins=", 10))
			return true;
	return false;
}

static int charts_main(int argc, char **argv)
{
	chart_cfg c = { .prog = argc > 0 && argv[0] ? argv[0] : "plot", .norm = RT_L2,
	                .width = DEFAULT_WIDTH };
	series S[MAX_PANELS];
	memset(S, 0, sizeof S);
	char *fcopy = NULL, *tcopy = NULL, *files[MAX_PANELS], *titles[MAX_PANELS];
	int ns = 0;
	membuf mb = { 0 };
	cairo_surface_t *surf = NULL;
	cairo_t *cr = NULL;
	char err[RT_ERRLEN];
	int rc = chart_args(&c, argc, argv);
	if (rc)
		goto done;
	if (c.help) {
		chart_usage(stdout, &c);
		goto done;
	}
	rc = 2;
	if ((c.logs != NULL) == (c.margins != NULL)) {
		usage_fail(&c, "give one of --log and --margins");
		goto done;
	}
	if (!c.out) {
		usage_fail(&c, "-o OUT.svg or -o OUT.png is required");
		goto done;
	}
	bool png = ends_with(c.out, ".png");
	if (!png && !ends_with(c.out, ".svg")) {
		usage_fail(&c, "-o '%s': the figure's name must end in .svg or .png", c.out);
		goto done;
	}
	const char *list = c.logs ? c.logs : c.margins, *flag = c.logs ? "--log" : "--margins";
	fcopy = strdup(list);
	ns = fcopy ? split(fcopy, ',', files, MAX_PANELS) : -1;
	if (ns < 0) {
		ns = 0;
		usage_fail(&c, "%s: at most %d files", flag, MAX_PANELS);
		goto done;
	}
	for (int i = 0; i < ns; i++)
		if (!files[i][0]) {
			usage_fail(&c, "%s: empty file name in '%s'", flag, list);
			goto done;
		}
	if (c.titles) {
		tcopy = strdup(c.titles);
		int nt = tcopy ? split(tcopy, ',', titles, MAX_PANELS) : -1;
		if (nt != ns) {
			usage_fail(&c, "--titles has %d title%s for %d file%s", nt < 0 ? MAX_PANELS + 1 : nt,
			           nt == 1 ? "" : "s", ns, ns == 1 ? "" : "s");
			goto done;
		}
	}
	{
		rt_file f[MAX_PANELS + 1] = { { "-o", c.out, RT_FILE_OUT, 0 } };
		for (int i = 0; i < ns; i++)
			f[1 + i] = (rt_file){ flag, files[i], RT_FILE_IN, 0 };
		if ((rc = rt_files_check(f, 1 + ns, err))) {
			rt_cmd_fail(c.prog, rc, "%s", err);
			goto done;
		}
	}
	rc = 1;
	for (int i = 0; i < ns; i++) {
		if (c.titles)
			snprintf(S[i].title, sizeof S[i].title, "%s", titles[i]);
		else
			chart_name(files[i], S[i].title, sizeof S[i].title);
		if ((c.logs ? read_log(&c, files[i], &S[i]) : read_margins(&c, files[i], &S[i])))
			goto done;
	}

	/* ranges over all series */
	double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY, alo = INFINITY,
	       ahi = -INFINITY;
	for (int i = 0; i < ns; i++)
		for (int64_t k = 0; k < S[i].n; k++) {
			double x = S[i].x[k], y = S[i].y[k];
			if (c.margins && !(x > 0))
				continue;   /* below any log axis: the CDF starts above 0 */
			xlo = fmin(xlo, x);
			xhi = fmax(xhi, x);
			if (c.logs && !(y > 0))
				continue;
			ylo = fmin(ylo, y);
			yhi = fmax(yhi, y);
			if (c.logs) {
				alo = fmin(alo, S[i].acc[k]);
				ahi = fmax(ahi, S[i].acc[k]);
			}
		}
	if (!(xhi >= xlo) || (c.logs && !(yhi >= ylo))) {
		rt_cmd_fail(c.prog, 1, "%s: nothing to draw (no positive margins)", list);
		goto done;
	}
	const double W = (double)c.width, H = round(W * 0.7), margin = 56, gap = 70, title_h = 24,
	             below = 40, row = 18;
	int panels = c.logs ? 2 : 1;
	double fig_w = ceil(margin + panels * W + (panels - 1) * gap + 20);
	double legend_h = ns * row + 8;
	double fig_h = ceil(12 + title_h + H + below + legend_h + 8);
	if (png)
		surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)fig_w, (int)fig_h);
	else
		surf = cairo_svg_surface_create_for_stream(mem_write, &mb, fig_w, fig_h);
	cr = cairo_create(surf);
	if (cairo_status(cr) != CAIRO_STATUS_SUCCESS) {
		rt_cmd_fail(c.prog, 1, "cannot draw: %s", cairo_status_to_string(cairo_status(cr)));
		goto done;
	}
	cairo_set_source_rgb(cr, 1, 1, 1);
	cairo_paint(cr);
	double oy = 12 + title_h;
	static const char *norm_name[RT_NNORMS] = { "eps_1", "eps_2", "eps_inf" };
	if (c.logs) {
		axis ax = { xlo - 0.5, xhi + 0.5, false }, ay = axis_fit(ylo, yhi, true);
		axis aa = axis_fit(alo, fmin(ahi, 100), false);
		draw_axes(cr, margin, oy, W, H, &ax, &ay, true, "epoch", "validation median eps_2");
		draw_axes(cr, margin + W + gap, oy, W, H, &ax, &aa, true, "epoch", "validation accuracy (%)");
		for (int i = 0; i < ns; i++) {
			rgb col = series_rgb[i % 8];
			int64_t b = S[i].best;
			double bx = b >= 0 ? S[i].x[b] : NAN;
			draw_series(cr, margin, oy, W, H, &ax, &ay, S[i].x, S[i].y, S[i].n, col, bx, b >= 0 ? S[i].y[b] : 0);
			draw_series(cr, margin + W + gap, oy, W, H, &ax, &aa, S[i].x, S[i].acc, S[i].n, col, bx,
			            b >= 0 ? S[i].acc[b] : 0);
		}
	} else {
		axis ax = axis_fit(xlo, xhi, true), ay = { 0, 1, false };
		char xl[64];
		snprintf(xl, sizeof xl, "%s (input units, log scale)", norm_name[c.norm]);
		char tt[96];
		snprintf(tt, sizeof tt, "fraction of examples with %s <= x", norm_name[c.norm]);
		draw_axes(cr, margin, oy, W, H, &ax, &ay, false, xl, tt);
		for (int i = 0; i < ns; i++)
			draw_series(cr, margin, oy, W, H, &ax, &ay, S[i].x, S[i].y, S[i].n, series_rgb[i % 8],
			            S[i].median, 0.5);
	}
	/* legend: the line's colour, its title and its numbers */
	double ly = oy + H + below + 6;
	for (int i = 0; i < ns; i++) {
		char txt[256];
		series *s = &S[i];
		if (c.logs) {
			int64_t b = s->best >= 0 ? s->best : s->n - 1;
			snprintf(txt, sizeof txt, "%.128s: %s epoch %.0f, accuracy %.2f%%, median eps_2 %.3g", s->title,
			         s->best >= 0 ? "best" : "last", s->x[b], s->acc[b], s->y[b]);
		} else {
			char mtxt[32];
			if (isfinite(s->median))
				snprintf(mtxt, sizeof mtxt, "%.3g", s->median);
			else
				snprintf(mtxt, sizeof mtxt, "unbounded");
			snprintf(txt, sizeof txt, "%.128s: %lld examples, median %s %.32s", s->title, (long long)s->total,
			         norm_name[c.norm], mtxt);
		}
		set_rgb(cr, series_rgb[i % 8]);
		cairo_set_line_width(cr, 3);
		cairo_move_to(cr, margin, ly + i * row - 4);
		cairo_line_to(cr, margin + 24, ly + i * row - 4);
		cairo_stroke(cr);
		cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
		text_at(cr, margin + 32, ly + i * row, 11, false, txt);
		printf("%s\n", txt);
	}
	cairo_destroy(cr);
	cr = NULL;
	if (png) {
		cairo_surface_flush(surf);
		cairo_status_t st = cairo_surface_write_to_png_stream(surf, mem_write, &mb);
		if (st != CAIRO_STATUS_SUCCESS || mb.failed) {
			rt_cmd_fail(c.prog, 1, "cannot encode the PNG: %s", cairo_status_to_string(st));
			goto done;
		}
	} else {
		cairo_surface_finish(surf);
		if (cairo_surface_status(surf) != CAIRO_STATUS_SUCCESS || mb.failed) {
			rt_cmd_fail(c.prog, 1, "cannot write the SVG: %s",
			            cairo_status_to_string(cairo_surface_status(surf)));
			goto done;
		}
	}
	if (rt_write_atomic(c.out, mb.p, mb.n, err) != 0) {
		fprintf(stderr, "%s\n", err);
		goto done;
	}
	printf("wrote %s (%d line%s, %.0f x %.0f)\n", c.out, ns, ns == 1 ? "" : "s", fig_w, fig_h);
	rc = fflush(stdout) == 0 ? 0 : 1;
done:
	if (cr)
		cairo_destroy(cr);
	if (surf)
		cairo_surface_destroy(surf);
	free(mb.p);
	for (int i = 0; i < MAX_PANELS; i++)
		series_free(&S[i]);
	free(fcopy);
	free(tcopy);
	return rc;
}
