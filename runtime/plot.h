/* plot.h: what the files of `llnc plot` share.
 *
 * The command (plot.c) runs in phases over one plot_job: its flags
 * (plot_flags.c), the weights and data and what is computed from them
 * (plot_compute.c), the figure (plot_draw.c).  The charts of --log and
 * --margins are chart.c.  Internal to the runtime: the interface is
 * rt_plot_main in rt.h.
 */
#ifndef LLN_PLOT_H
#define LLN_PLOT_H

#include <cairo.h>

#include "rt.h"


#define MAX_PANELS 16
#define DEFAULT_POINTS 300
#define DEFAULT_WIDTH 400
#define ARROW_FRACTION 0.08   /* longest arrow: this fraction of the window width */
#define HEAT_CELL 2           /* heatmap cell size in pixels */

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

typedef struct rgb { double r, g, b; } rgb;

typedef struct layout {
	double W, H;              /* one panel's plot area */
	double margin, title_h, gap, legend_h;
	double fig_w, fig_h;
} layout;

typedef struct membuf {
	unsigned char *p;
	size_t n, cap;
	bool failed;
} membuf;

/* One run of the command: the request, its inputs, what is drawn. */
typedef struct plot_job {
	panel pan[MAX_PANELS];
	int np;
	char *wparts[MAX_PANELS], *tparts[MAX_PANELS], *send[2];
	char *dcopy, *wcopy, *tcopy, *scopy;   /* the strings those point into */
	bool png, one_d, have_win, have_data;
	double win[4];                         /* 2-D: x0, x1, y0, y1 */
	rt_data d;
	int64_t *sel, ns;                      /* 2-D: the points with circles and arrows */
	float *sa, *sb;                        /* 1-D: the segment's ends */
	char aname[96], bname[96];
	double seglen;
	layout L;
	int gw, gh;                            /* heatmap cells */
} plot_job;

/* plot_flags.c: the defaults and the command line into c (0, or the exit
 * status after printing why), --help, and the request checked into j. */
int rt_plot_flags(plot_cfg *c, const char *defaults, int argc, char **argv, char **dcopy);
void rt_plot_usage(FILE *f, const rt_model *m, const plot_cfg *c);
int rt_plot_request(plot_cfg *c, const rt_model *m, plot_job *j);
/* Splits s at sep into at most cap parts, in place; -1 if more. */
int rt_plot_split(char *s, char sep, char **parts, int cap);
bool rt_plot_parse_double(const char *s, double *out);
int rt_plot_ends_with(const char *s, const char *ext);

/* plot_compute.c: the weights and data read, then per panel its regions,
 * heatmap and certified points (2-D) or its boundaries on the segment
 * (1-D).  0, or the exit status after printing why. */
int rt_plot_load(const plot_cfg *c, const rt_model *m, plot_job *j);
int rt_plot_compute(const plot_cfg *c, const rt_model *m, plot_job *j);
void rt_plot_job_free(plot_job *j);

/* plot_draw.c: the figure as SVG or PNG bytes in mb, and the drawing
 * helpers the charts share. */
int rt_plot_render(const plot_cfg *c, const rt_model *m, plot_job *j, membuf *mb);
void rt_plot_text(cairo_t *cr, double x, double y, double size, bool bold, const char *s);
double rt_plot_text_width(cairo_t *cr, double size, bool bold, const char *s);
void rt_plot_set_rgb(cairo_t *cr, rgb c);
cairo_status_t rt_plot_mem_write(void *closure, const unsigned char *data, unsigned int len);

/* chart.c: `llnc plot --log` and `--margins`. */
bool rt_chart_wanted(int argc, char **argv);
int rt_chart_main(int argc, char **argv);

#endif
