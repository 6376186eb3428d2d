/* plot_draw.c: the figure of `llnc plot`, drawn.
 *
 * One drawing code path, cairo, onto an SVG or an image surface chosen by
 * the output's extension, rendered into memory (the command writes it
 * atomically).  Per panel of the 2-D picture: the prediction as a heatmap,
 * every region outlined (or filled with its own colour), the points with a
 * circle of radius eps_2 and an arrow for the gradient; of the 1-D
 * picture: the boundaries on the segment and the logits along it; then the
 * legend.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cairo-svg.h>

#include "plot.h"

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

void rt_plot_set_rgb(cairo_t *cr, rgb c) { cairo_set_source_rgb(cr, c.r, c.g, c.b); }

/* Region outlines use this colour and nothing else does (tests count them). */
#define REGION_R 0.5
#define REGION_G 0.5
#define REGION_B 0.5
#define REGION_LINE 0.4

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

void rt_plot_text(cairo_t *cr, double x, double y, double size, bool bold, const char *s)
{
	cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
	                       bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
	cairo_set_font_size(cr, size);
	cairo_move_to(cr, x, y);
	cairo_show_text(cr, s);
}

double rt_plot_text_width(cairo_t *cr, double size, bool bold, const char *s)
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
	while (size > 8 && rt_plot_text_width(cr, size, bold, s) > w)
		size -= 0.5;
	char buf[512];
	snprintf(buf, sizeof buf, "%s", s);
	size_t n = strlen(buf);
	while (n > 4 && rt_plot_text_width(cr, size, bold, buf) > w) {
		n--;
		while (n > 0 && (buf[n] & 0xC0) == 0x80)  /* UTF-8 continuation */
			n--;
		memcpy(buf + n, "...", 4);
	}
	rt_plot_text(cr, x, y, size, bold, buf);
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
			rt_plot_set_rgb(cr, col);
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
	rt_plot_text(cr, ox, oy + L->H + 12, 9, false, buf);
	if (c->arrows && ns > 0 && p->gmax > 0) {
		snprintf(buf, sizeof buf, "longest arrow: \u2016\u2207f\u2016 = %.3g", p->gmax);
		rt_plot_text(cr, ox + L->W - rt_plot_text_width(cr, 9, false, buf), oy + L->H + 12, 9, false, buf);
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
		rt_plot_set_rgb(cr, O == 1 ? (rgb){ 0.1, 0.1, 0.1 } : class_color(m, j));
		cairo_stroke(cr);
	}
	cairo_set_source_rgb(cr, 0, 0, 0);
	cairo_set_line_width(cr, 1);
	cairo_rectangle(cr, px0, oy, pw, ph);
	cairo_stroke(cr);
	char buf[160];
	cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
	snprintf(buf, sizeof buf, "%.3g", hi - pad);
	rt_plot_text(cr, ox, LY(hi - pad) + 4, 9, false, buf);
	snprintf(buf, sizeof buf, "%.3g", lo + pad);
	rt_plot_text(cr, ox, LY(lo + pad) + 4, 9, false, buf);
	rt_plot_text(cr, ox, oy + ph / 2 + 4, 9, false, O == 1 ? "logit" : "logits");
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
	rt_plot_text(cr, TX(0), ly + 17, 10, false, aname);
	snprintf(buf, sizeof buf, "\u2016B \u2212 A\u2016\u2082 = %.4g", seglen);
	rt_plot_text(cr, TX(0.5) - rt_plot_text_width(cr, 10, false, buf) / 2, ly + 17, 10, false, buf);
	rt_plot_text(cr, TX(1) - rt_plot_text_width(cr, 10, false, bname), ly + 17, 10, false, bname);
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
		double w = 16 + rt_plot_text_width(cr, fs, false, it[i].label) + 14;
		if (x + w > x0 + width && x > x0) {
			x = x0;
			y += 17;
		}
		if (!dry) {
			cairo_new_path(cr);
			switch (it[i].kind) {
			case 0:
				rt_plot_set_rgb(cr, class_color(m, it[i].cls));
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
				rt_plot_set_rgb(cr, class_color(m, it[i].cls));
				cairo_set_line_width(cr, 1.6);
				cairo_move_to(cr, x, y - 4);
				cairo_line_to(cr, x + 12, y - 4);
				cairo_stroke(cr);
				break;
			}
			cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
			rt_plot_text(cr, x + 16, y, fs, false, it[i].label);
			cairo_new_path(cr);
		}
		x += w;
	}
	return y - y0 + 8;
}

cairo_status_t rt_plot_mem_write(void *closure, const unsigned char *data, unsigned int len)
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

int rt_plot_render(const plot_cfg *c, const rt_model *m, plot_job *j, membuf *mb)
{
	layout *L = &j->L;
	const bool one_d = j->one_d;
	const int np = j->np;
	/* layout: panels side by side (2-D) or stacked (1-D), the legend below */
	double inner_w = one_d ? L->W : np * L->W + (np - 1) * L->gap;
	{
		cairo_surface_t *probe = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
		cairo_t *pc = cairo_create(probe);
		L->legend_h = draw_legend(pc, m, c, one_d, j->have_data, 0, 0, inner_w, true);
		cairo_destroy(pc);
		cairo_surface_destroy(probe);
	}
	double below = one_d ? 0 : 16;
	L->fig_w = ceil(2 * L->margin + inner_w);
	L->fig_h = one_d ? ceil(2 * L->margin + np * (L->title_h + L->H) + (np - 1) * L->gap + 8 + L->legend_h)
	                 : ceil(2 * L->margin + L->title_h + L->H + below + 8 + L->legend_h);
	cairo_surface_t *surf = j->png ? cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)L->fig_w, (int)L->fig_h)
	                               : cairo_svg_surface_create_for_stream(rt_plot_mem_write, mb, L->fig_w, L->fig_h);
	cairo_t *cr = cairo_create(surf);
	int rc = 1;
	if (cairo_status(cr) != CAIRO_STATUS_SUCCESS) {
		user_fail(c, "cannot draw: %s", cairo_status_to_string(cairo_status(cr)));
		goto done;
	}
	cairo_set_source_rgb(cr, 1, 1, 1);
	cairo_paint(cr);
	for (int i = 0; i < np; i++) {
		double ox, oy;
		panel_origin(L, i, one_d, &ox, &oy);
		if (one_d)
			draw_panel_1d(cr, m, &j->pan[i], L, ox, oy, j->aname, j->bname, j->seglen);
		else
			draw_panel_2d(cr, m, c, &j->pan[i], L, ox, oy, j->win, j->gw, j->gh, j->have_data ? &j->d : NULL,
			              j->sel, j->ns, j->png);
	}
	double ly = one_d ? L->margin + np * (L->title_h + L->H) + (np - 1) * L->gap + 8
	                  : L->margin + L->title_h + L->H + below + 8;
	draw_legend(cr, m, c, one_d, j->have_data, L->margin, ly, inner_w, false);
	cairo_destroy(cr);
	cr = NULL;
	if (j->png) {
		cairo_surface_flush(surf);
		cairo_status_t st = cairo_surface_write_to_png_stream(surf, rt_plot_mem_write, mb);
		if (st != CAIRO_STATUS_SUCCESS || mb->failed) {
			user_fail(c, "cannot encode the PNG: %s", cairo_status_to_string(st));
			goto done;
		}
	} else {
		cairo_surface_finish(surf);
		if (cairo_surface_status(surf) != CAIRO_STATUS_SUCCESS || mb->failed) {
			user_fail(c, "cannot write the SVG: %s", cairo_status_to_string(cairo_surface_status(surf)));
			goto done;
		}
	}
	rc = 0;
done:
	if (cr)
		cairo_destroy(cr);
	cairo_surface_destroy(surf);
	return rc;
}
