/* chart.c: charts of training logs and evaluations, `llnc plot --log`
 * and `llnc plot --margins`; no model needed.
 *
 * --log RUN.jsonl,...: the JSON lines `llnc train --log` writes, one per
 * epoch; two panels, the validation median eps_2 (log axis) and the
 * validation accuracy by epoch, one line per run, the epoch with the best
 * validation loss marked.  --margins EVAL.json,...: `llnc eval --json
 * --per-example` output; the empirical CDF of eps_p over the examples on a
 * log axis, one line per file, the median marked.  Margins no neuron bounds
 * (null) count in the CDF's denominator but are never reached.  Series lines
 * are the only strokes of width 2 (tests read them back from the SVG).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cairo-svg.h>
#include <jansson.h>

#include "plot.h"

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
		if (rt_plot_ends_with(buf, ext[i])) {
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
			double tw = rt_plot_text_width(cr, 10, false, buf);
			if (which)
				rt_plot_text(cr, ox - tw - 4, py + 3.5, 10, false, buf);
			else
				rt_plot_text(cr, px - tw / 2, oy + h + 13, 10, false, buf);
		}
	}
	cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
	cairo_rectangle(cr, ox, oy, w, h);
	cairo_stroke(cr);
	rt_plot_text(cr, ox + w / 2 - rt_plot_text_width(cr, 11, false, xlabel) / 2, oy + h + 28, 11, false, xlabel);
	rt_plot_text(cr, ox, oy - 8, 12, true, title);
}

/* The line through (x[i], y[i]), and a dot at (mx, my) unless mx is NaN. */
static void draw_series(cairo_t *cr, double ox, double oy, double w, double h, const axis *ax,
                        const axis *ay, const double *x, const double *y, int64_t n, rgb col,
                        double mx, double my)
{
	rt_plot_set_rgb(cr, col);
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

bool rt_chart_wanted(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--log") || !strcmp(argv[i], "--margins") || !strncmp(argv[i], "--log=", 6) ||
		    !strncmp(argv[i], "--margins=", 10))
			return true;
	return false;
}

int rt_chart_main(int argc, char **argv)
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
	bool png = rt_plot_ends_with(c.out, ".png");
	if (!png && !rt_plot_ends_with(c.out, ".svg")) {
		usage_fail(&c, "-o '%s': the figure's name must end in .svg or .png", c.out);
		goto done;
	}
	const char *list = c.logs ? c.logs : c.margins, *flag = c.logs ? "--log" : "--margins";
	fcopy = strdup(list);
	ns = fcopy ? rt_plot_split(fcopy, ',', files, MAX_PANELS) : -1;
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
		int nt = tcopy ? rt_plot_split(tcopy, ',', titles, MAX_PANELS) : -1;
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
		surf = cairo_svg_surface_create_for_stream(rt_plot_mem_write, &mb, fig_w, fig_h);
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
		rt_plot_set_rgb(cr, series_rgb[i % 8]);
		cairo_set_line_width(cr, 3);
		cairo_move_to(cr, margin, ly + i * row - 4);
		cairo_line_to(cr, margin + 24, ly + i * row - 4);
		cairo_stroke(cr);
		cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
		rt_plot_text(cr, margin + 32, ly + i * row, 11, false, txt);
		printf("%s\n", txt);
	}
	cairo_destroy(cr);
	cr = NULL;
	if (png) {
		cairo_surface_flush(surf);
		cairo_status_t st = cairo_surface_write_to_png_stream(surf, rt_plot_mem_write, &mb);
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
