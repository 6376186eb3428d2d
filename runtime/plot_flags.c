/* plot_flags.c: the command line of `llnc plot`.
 *
 * The flags (through flags.c), --help, the defaults llnc derives from the
 * .lln file (only its --data is used) and the request they make, checked
 * whole before anything is read: weights files and titles, the window, the
 * segment's ends, the figure's format, and every file against every other
 * (rt_files_check).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "plot.h"

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

void rt_plot_usage(FILE *f, const rt_model *m, const plot_cfg *c)
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
		/* the range of --threads everywhere (settings.def) */
		if ((rc = get_ll(c, a, v, (long long)rt_settings[RT_SET_THREADS].lo,
		                 (long long)rt_settings[RT_SET_THREADS].hi, &k)))
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
int rt_plot_split(char *s, char sep, char **parts, int cap)
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

bool rt_plot_parse_double(const char *s, double *out)
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

int rt_plot_ends_with(const char *s, const char *ext)
{
	size_t n = strlen(s), e = strlen(ext);
	return n > e && strcasecmp(s + n - e, ext) == 0;
}

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


int rt_plot_flags(plot_cfg *c, const char *defaults, int argc, char **argv, char **dcopy)
{
	int rc = parse_defaults(c, defaults, dcopy);
	return rc ? rc : parse_args(c, argc, argv);
}

int rt_plot_request(plot_cfg *c, const rt_model *m, plot_job *j)
{
	if (!c->weights)
		return usage_fail(c, "--weights W.safetensors[,W2,...] is required");
	if (!c->count) {
		if (!c->out)
			return usage_fail(c, "-o OUT.svg or -o OUT.png is required");
		if (rt_plot_ends_with(c->out, ".png"))
			j->png = true;
		else if (!rt_plot_ends_with(c->out, ".svg"))
			return usage_fail(c, "-o '%s': the figure's name must end in .svg or .png", c->out);
	}
	if (m->n_in != 2 && !c->segment)
		return usage_fail(c, "model '%s' has %d inputs; the region picture needs 2 (use --segment for a 1-D picture)",
		                  m->name, m->n_in);
	j->wcopy = strdup(c->weights);
	if (!j->wcopy)
		return user_fail(c, "out of memory");
	int np = rt_plot_split(j->wcopy, ',', j->wparts, MAX_PANELS);
	if (np < 0)
		return usage_fail(c, "--weights: at most %d files", MAX_PANELS);
	for (int i = 0; i < np; i++)
		if (!j->wparts[i][0])
			return usage_fail(c, "--weights: empty file name in '%s'", c->weights);
	int rc = check_files(c, j->wparts, np);
	if (rc)
		return rc;
	if (c->titles) {
		j->tcopy = strdup(c->titles);
		int nt = j->tcopy ? rt_plot_split(j->tcopy, ',', j->tparts, MAX_PANELS) : -1;
		if (nt != np)
			return usage_fail(c, "--titles has %d title%s for %d weights file%s", nt < 0 ? MAX_PANELS + 1 : nt,
			                  nt == 1 ? "" : "s", np, np == 1 ? "" : "s");
	}
	if (c->window) {
		char buf[256], *wp[4];
		snprintf(buf, sizeof buf, "%s", c->window);
		int nw = strlen(c->window) < sizeof buf ? rt_plot_split(buf, ',', wp, 4) : -1;
		bool ok = nw == 4;
		for (int i = 0; ok && i < 4; i++)
			ok = rt_plot_parse_double(wp[i], &j->win[i]);
		if (!ok || !(j->win[0] < j->win[1]) || !(j->win[2] < j->win[3]))
			return usage_fail(c, "--window takes x0,x1,y0,y1 with x0 < x1 and y0 < y1, got '%s'", c->window);
		j->have_win = true;
	}
	if (c->segment) {
		j->scopy = strdup(c->segment);
		if (!j->scopy || rt_plot_split(j->scopy, ',', j->send, 2) != 2 || !j->send[0][0] || !j->send[1][0])
			return usage_fail(c, "--segment takes A,B (each #N or coordinates separated by ';'), got '%s'",
			                  c->segment);
	}
	j->one_d = c->segment != NULL;
	j->np = np;
	for (int i = 0; i < np; i++) {
		j->pan[i].path = j->wparts[i];
		char bn[256];
		snprintf(j->pan[i].title, sizeof j->pan[i].title, "%s",
		         c->titles ? j->tparts[i] : base_name(j->wparts[i], bn, sizeof bn));
	}
	return 0;
}
