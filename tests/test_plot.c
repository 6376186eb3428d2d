/* test_plot.c: `llnc plot` (runtime/plot.c) on models compiled by the JIT.
 *
 * - SVG: the file is well-formed XML (parsed with expat) and holds one
 *   outline path per activation region, as many as rt_regions_2d finds in
 *   the same window; the counts printed agree; panels, titles and the
 *   objective from the weights' metadata appear.
 * - PNG: decodes with cairo, with the width the layout promises.
 * - The 1-D picture (--segment) on a 3-input model, by coordinates and by
 *   record numbers; the number of boundaries printed equals
 *   rt_segment_boundaries'.
 * - The train block's --data is taken from the defaults.
 * - Bad arguments (a 3-input model without --segment, no -o, an unknown
 *   extension, a bad window, titles that do not match, weights of another
 *   model, a record past the data): the documented exit status and message,
 *   and no output file, not even a temporary one.
 * - Charts (--log, --margins): the series lines read back from the SVG are
 *   affine images of the logged epochs and values (log axis for eps_2) and
 *   of the empirical CDF of the margins; the numbers printed; bad logs and
 *   evaluations are refused with file and record.
 * Valgrind-clean: cairo's and fontconfig's caches are freed at the end.
 */
#define _XOPEN_SOURCE 700   /* nftw */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <cairo.h>
#include <expat.h>
#include <fontconfig/fontconfig.h>

#include "llnc.h"
#include "jit.h"

static char tmpdir[256];

static const char *P_(const char *name)
{
	static char ring[64][512];
	static int k;
	char *b = ring[k++ % 64];
	snprintf(b, 512, "%s/%s", tmpdir, name);
	return b;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)n + 1);
	if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
		free(b);
		b = NULL;
	}
	if (b)
		b[n] = 0;
	fclose(f);
	if (len)
		*len = (size_t)n;
	return b;
}

/* ------------------------------------------------------------------------
 * Models compiled by the JIT
 * ---------------------------------------------------------------------- */
typedef struct jitted {
	arena *a;
	cg_unit *u;
	const rt_model *m;
} jitted;

static void jit_open(jitted *j, const char *text)
{
	memset(j, 0, sizeof *j);
	j->a = arena_new();
	j->m = jit_text(j->a, text, 2, &j->u);
}

static void jit_close(jitted *j)
{
	cg_unit_free(j->u);
	arena_free(j->a);
}

static const char plane_lln[] =
	"model plane { input x[2]; h1 = relu(dense(x, 12)); h2 = relu(dense(h1, 10));"
	" out = dense(h2, 1); output out; }\n"
	"objective { loss = sigmoid_cross_entropy; }\n";

static const char three_lln[] =
	"model three { input x[3]; h1 = relu(dense(x, 16)); h2 = relu(dense(h1, 16));"
	" out = dense(h2, 4); output out; }\n";

/* He-initialised weights saved under `name`, with a regularizer entry in the
 * metadata like llnc train writes. */
static float *save_weights(const rt_model *m, uint64_t seed, const char *name)
{
	float *P = calloc((size_t)m->n_params, sizeof(float));
	assert_non_null(P);
	rt_init_params(m->tensors, m->n_tensors, seed, RT_INIT_HE, P);
	const char *md[] = { "model", m->name, "regularizer", "roll(lambda=1, C=5, gamma=100)", NULL };
	char err[RT_ERRLEN];
	if (rt_params_save(m->tensors, m->n_tensors, P, NULL, 0, NULL, md, P_(name), err) != 0)
		fail_msg("%s", err);
	return P;
}

/* n labeled points of dim values in [-1, 1], label from the first coordinate. */
static void save_points(const char *name, int n, int dim, int classes)
{
	FILE *f = fopen(P_(name), "w");
	assert_non_null(f);
	uint64_t s = 12345;
	for (int i = 0; i < n; i++) {
		double x[8];
		for (int k = 0; k < dim; k++) {
			s = s * 6364136223846793005ULL + 1442695040888963407ULL;
			x[k] = (double)(s >> 11) / 9007199254740992.0 * 2 - 1;
		}
		int y = classes == 2 ? x[0] + 0.3 * x[1] > 0 : (int)((x[0] + 1) / 2 * classes) % classes;
		fprintf(f, "%d", y);
		for (int k = 0; k < dim; k++)
			fprintf(f, ",%.6f", x[k]);
		fputc('\n', f);
	}
	assert_int_equal(fclose(f), 0);
}

/* ------------------------------------------------------------------------
 * rt_plot_main with stdout and stderr captured
 * ---------------------------------------------------------------------- */
static char out_text[65536], err_text[65536];

static int run_plot(const rt_model *m, const char *defaults, const char *const *args)
{
	char *argv[64];
	int argc = 0;
	for (; args[argc]; argc++)
		argv[argc] = (char *)args[argc];
	argv[argc] = NULL;
	fflush(stdout);
	fflush(stderr);
	int save1 = dup(1), save2 = dup(2);
	char po[512], pe[512];
	snprintf(po, sizeof po, "%s/../%s.stdout", tmpdir, strrchr(tmpdir, '/') + 1);
	snprintf(pe, sizeof pe, "%s/../%s.stderr", tmpdir, strrchr(tmpdir, '/') + 1);
	int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fo >= 0 && fe >= 0);
	dup2(fo, 1);
	dup2(fe, 2);
	close(fo);
	close(fe);
	int rc = rt_plot_main(m, defaults, argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(save1, 1);
	dup2(save2, 2);
	close(save1);
	close(save2);
	char *o = slurp(po, NULL), *e = slurp(pe, NULL);
	snprintf(out_text, sizeof out_text, "%s", o ? o : "");
	snprintf(err_text, sizeof err_text, "%s", e ? e : "");
	free(o);
	free(e);
	unlink(po);
	unlink(pe);
	return rc;
}

#define PLOT(m, d, ...) run_plot(m, d, (const char *const[]){ "llnc plot", __VA_ARGS__, NULL })

#define OK(call) \
	do { \
		int rc_ = (call); \
		if (rc_ != 0) \
			fail_msg("exit %d, stderr:\n%s", rc_, err_text); \
	} while (0)

static void expect_error(int rc, int want_rc, const char *want_msg)
{
	if (rc != want_rc || !strstr(err_text, want_msg))
		fail_msg("exit %d (expected %d), stderr:\n%s\nexpected to contain: %s", rc, want_rc, err_text,
		         want_msg);
}

/* Number of entries in tmpdir whose name starts with prefix. */
static int count_files(const char *prefix)
{
	DIR *d = opendir(tmpdir);
	assert_non_null(d);
	int n = 0;
	for (struct dirent *e; (e = readdir(d));)
		n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
	closedir(d);
	return n;
}

/* ------------------------------------------------------------------------
 * SVG checks with expat
 * ---------------------------------------------------------------------- */
#define MAX_LINES 16

typedef struct svg_stats {
	int depth, max_depth;
	bool root_svg;
	long elements, paths, region_paths, region_fills, images;
	double width, height;
	/* the charts' series lines (the only strokes of width 2), their points */
	int lines;
	int line_n[MAX_LINES];
	double line_x[MAX_LINES][64], line_y[MAX_LINES][64];
} svg_stats;

/* "M x y L x y ..." of a polyline */
static void read_polyline(svg_stats *s, const char *d)
{
	assert_true(s->lines < MAX_LINES);
	int k = s->lines++, n = 0;
	for (const char *p = d; *p;) {
		char op;
		double x, y;
		int used;
		if (sscanf(p, " %c %lf %lf%n", &op, &x, &y, &used) != 3)
			break;
		assert_true(op == (n ? 'L' : 'M'));
		assert_true(n < 64);
		s->line_x[k][n] = x;
		s->line_y[k][n] = y;
		n++;
		p += used;
	}
	s->line_n[k] = n;
}

static void XMLCALL svg_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	svg_stats *s = ud;
	if (s->depth == 0) {
		s->root_svg = strcmp(name, "svg") == 0;
		for (int i = 0; atts[i]; i += 2) {
			if (!strcmp(atts[i], "width"))
				s->width = atof(atts[i + 1]);
			if (!strcmp(atts[i], "height"))
				s->height = atof(atts[i + 1]);
		}
	}
	s->depth++;
	if (s->depth > s->max_depth)
		s->max_depth = s->depth;
	s->elements++;
	if (!strcmp(name, "image"))
		s->images++;
	if (strcmp(name, "path") != 0)
		return;
	s->paths++;
	/* the region outlines are the only strokes in this colour */
	const char *style = NULL, *d = NULL;
	for (int i = 0; atts[i]; i += 2) {
		if (!strcmp(atts[i], "style"))
			style = atts[i + 1];
		if (!strcmp(atts[i], "d"))
			d = atts[i + 1];
	}
	if (style && strstr(style, "stroke:rgb(50%,50%,50%)") && strstr(style, "fill:none"))
		s->region_paths++;
	/* --fill-regions: the only translucent fills */
	if (style && strstr(style, "fill-opacity:0.75") && strstr(style, "stroke:none"))
		s->region_fills++;
	if (style && d && strstr(style, "stroke-width:2;") && strstr(style, "fill:none"))
		read_polyline(s, d);
}

static void XMLCALL svg_end(void *ud, const XML_Char *name)
{
	(void)name;
	((svg_stats *)ud)->depth--;
}

static svg_stats parse_svg(const char *path)
{
	size_t len;
	char *text = slurp(path, &len);
	assert_non_null(text);
	svg_stats s = { 0 };
	XML_Parser p = XML_ParserCreate(NULL);
	assert_non_null(p);
	XML_SetUserData(p, &s);
	XML_SetElementHandler(p, svg_start, svg_end);
	if (XML_Parse(p, text, (int)len, 1) == XML_STATUS_ERROR)
		fail_msg("%s: not well-formed XML at line %lu: %s", path,
		         (unsigned long)XML_GetCurrentLineNumber(p), XML_ErrorString(XML_GetErrorCode(p)));
	XML_ParserFree(p);
	free(text);
	assert_true(s.root_svg);
	assert_int_equal(s.depth, 0);
	return s;
}

/* The count printed for panel `title`: "title: N regions ..." */
static long long printed_count(const char *title)
{
	char key[256];
	snprintf(key, sizeof key, "%s: ", title);
	const char *p = strstr(out_text, key);
	if (!p)
		fail_msg("no line for '%s' in:\n%s", title, out_text);
	return atoll(p + strlen(key));
}

/* ------------------------------------------------------------------------
 * Tests
 * ---------------------------------------------------------------------- */
static void test_svg_regions(void **state)
{
	(void)state;
	jitted j;
	jit_open(&j, plane_lln);
	float *P1 = save_weights(j.m, 1, "a.safetensors");
	float *P2 = save_weights(j.m, 2, "b.safetensors");
	save_points("pts.csv", 60, 2, 2);
	const double win[4] = { -1.5, 1.5, -1.2, 1.2 };
	rt_regions r1 = { 0 }, r2 = { 0 };
	char err[RT_ERRLEN];
	assert_int_equal(rt_regions_2d(j.m, P1, win, &r1, err), 0);
	assert_int_equal(rt_regions_2d(j.m, P2, win, &r2, err), 0);
	assert_true(r1.n > 1 && r2.n > 1);

	/* one panel */
	OK(PLOT(j.m, NULL, "--weights", P_("a.safetensors"), "--data", P_("pts.csv"), "--window",
	        "-1.5,1.5,-1.2,1.2", "-o", P_("one.svg"), "--width", "240"));
	svg_stats s = parse_svg(P_("one.svg"));
	assert_int_equal(s.region_paths, r1.n);
	assert_int_equal(printed_count("a"), r1.n);
	assert_int_equal(s.images, 1);      /* the heatmap */
	assert_true(s.width == 2 * 14 + 240);
	assert_non_null(strstr(out_text, "wrote "));

	/* two panels with titles: both sets of outlines */
	char two[1024];
	snprintf(two, sizeof two, "%s,", P_("a.safetensors"));
	expect_error(PLOT(j.m, NULL, "--weights", two, "--data", P_("pts.csv"), "-o", P_("x.svg")), 2,
	             "--weights: empty file name");
	snprintf(two, sizeof two, "%s,%s", P_("a.safetensors"), P_("b.safetensors"));
	OK(PLOT(j.m, NULL, "--weights", two, "--titles", "first,second", "--data", P_("pts.csv"),
	        "--window", "-1.5,1.5,-1.2,1.2", "-o", P_("two.svg"), "--width", "240", "--points", "10"));
	s = parse_svg(P_("two.svg"));
	assert_int_equal(s.region_paths, r1.n + r2.n);
	assert_int_equal(printed_count("first"), r1.n);
	assert_int_equal(printed_count("second"), r2.n);
	assert_int_equal(s.images, 2);
	assert_true(s.width == 2 * 14 + 2 * 240 + 22);

	/* --count draws nothing and needs no -o */
	OK(PLOT(j.m, NULL, "--weights", two, "--window", "-1.5,1.5,-1.2,1.2", "--count"));
	assert_int_equal(printed_count("a"), r1.n);
	assert_int_equal(printed_count("b"), r2.n);
	assert_null(strstr(out_text, "wrote"));

	/* no circles, no arrows, no data: still every region */
	OK(PLOT(j.m, NULL, "--weights", P_("b.safetensors"), "--window", "-1.5,1.5,-1.2,1.2",
	        "--no-circles", "--no-arrows", "-o", P_("bare.svg")));
	s = parse_svg(P_("bare.svg"));
	assert_int_equal(s.region_paths, r2.n);
	assert_int_equal(s.region_fills, 0);

	/* --fill-regions: one fill per region, the outlines unchanged */
	OK(PLOT(j.m, NULL, "--weights", P_("b.safetensors"), "--window", "-1.5,1.5,-1.2,1.2",
	        "--fill-regions", "-o", P_("filled.svg")));
	s = parse_svg(P_("filled.svg"));
	assert_int_equal(s.region_fills, r2.n);
	assert_int_equal(s.region_paths, r2.n);

	rt_regions_free(&r1);
	rt_regions_free(&r2);
	free(P1);
	free(P2);
	jit_close(&j);
}

static void test_png_and_defaults(void **state)
{
	(void)state;
	jitted j;
	jit_open(&j, plane_lln);
	float *P = save_weights(j.m, 3, "w.safetensors");
	save_points("pts.csv", 80, 2, 2);
	/* the train block's data, from the defaults; other default flags are skipped */
	char defaults[1024];
	snprintf(defaults, sizeof defaults, "--objective\nroll\n--lambda\n1\n--data\n%s\n--epochs\n3\n",
	         P_("pts.csv"));
	OK(PLOT(j.m, defaults, "--weights", P_("w.safetensors"), "-o", P_("fig.png"), "--width", "200"));
	cairo_surface_t *img = cairo_image_surface_create_from_png(P_("fig.png"));
	assert_int_equal(cairo_surface_status(img), CAIRO_STATUS_SUCCESS);
	assert_int_equal(cairo_image_surface_get_width(img), 2 * 14 + 200);
	assert_true(cairo_image_surface_get_height(img) > 200);
	cairo_surface_destroy(img);
	/* the default window is the data's bounding box padded by 10% */
	assert_non_null(strstr(out_text, "window: "));
	/* the objective from the metadata is in the SVG's title (as glyphs, so
	 * only the count is checked here) and the file name is the title */
	assert_true(printed_count("w") > 0);
	/* .PNG in capitals works too */
	OK(PLOT(j.m, defaults, "--weights", P_("w.safetensors"), "-o", P_("FIG.PNG"), "--width", "150"));
	img = cairo_image_surface_create_from_png(P_("FIG.PNG"));
	assert_int_equal(cairo_surface_status(img), CAIRO_STATUS_SUCCESS);
	assert_int_equal(cairo_image_surface_get_width(img), 2 * 14 + 150);
	cairo_surface_destroy(img);
	free(P);
	jit_close(&j);
}

static void test_segment(void **state)
{
	(void)state;
	jitted j;
	jit_open(&j, three_lln);
	float *P = save_weights(j.m, 4, "s.safetensors");
	save_points("pts3.csv", 20, 3, 4);
	const float a[3] = { -2, -1, 0.5f }, b[3] = { 2, 1.5f, -1 };
	double *t = NULL;
	int64_t nt = 0;
	char err[RT_ERRLEN];
	assert_int_equal(rt_segment_boundaries(j.m, P, a, b, &t, &nt, err), 0);
	free(t);
	OK(PLOT(j.m, NULL, "--weights", P_("s.safetensors"), "--segment", "-2;-1;0.5,2;1.5;-1", "-o",
	        P_("seg.svg")));
	parse_svg(P_("seg.svg"));
	assert_int_equal(printed_count("s"), nt);
	assert_non_null(strstr(out_text, "boundaries on the segment"));
	/* records of the data, from 1 */
	OK(PLOT(j.m, NULL, "--weights", P_("s.safetensors"), "--data", P_("pts3.csv"), "--segment",
	        "#1,#20", "-o", P_("seg.png")));
	cairo_surface_t *img = cairo_image_surface_create_from_png(P_("seg.png"));
	assert_int_equal(cairo_surface_status(img), CAIRO_STATUS_SUCCESS);
	cairo_surface_destroy(img);
	expect_error(PLOT(j.m, NULL, "--weights", P_("s.safetensors"), "--data", P_("pts3.csv"),
	                  "--segment", "#1,#21", "-o", P_("bad1.svg")),
	             2, "--segment: #21 is past the data's 20 records");
	expect_error(PLOT(j.m, NULL, "--weights", P_("s.safetensors"), "--segment", "#1,#2", "-o",
	                  P_("bad2.svg")),
	             2, "--segment #1 needs data");
	expect_error(PLOT(j.m, NULL, "--weights", P_("s.safetensors"), "--segment", "1;2,3;4;5", "-o",
	                  P_("bad3.svg")),
	             2, "--segment: '1;2' must be #N or 3 numbers separated by ';'");
	expect_error(PLOT(j.m, NULL, "--weights", P_("s.safetensors"), "--segment", "1;2;3", "-o",
	                  P_("bad4.svg")),
	             2, "--segment takes A,B");
	assert_int_equal(count_files("bad"), 0);
	free(P);
	jit_close(&j);
}

static void test_errors(void **state)
{
	(void)state;
	jitted j, k;
	jit_open(&j, plane_lln);
	jit_open(&k, three_lln);
	float *P = save_weights(j.m, 5, "e.safetensors");
	float *Q = save_weights(k.m, 5, "other.safetensors");
	save_points("pts.csv", 30, 2, 2);
	const char *w = P_("e.safetensors"), *d = P_("pts.csv");

	expect_error(PLOT(k.m, NULL, "--weights", P_("other.safetensors"), "-o", P_("bad.svg")), 2,
	             "llnc plot: model 'three' has 3 inputs; the region picture needs 2 (use --segment for a 1-D picture)");
	expect_error(PLOT(j.m, NULL, "--weights", w, "--data", d), 2,
	             "llnc plot: -o OUT.svg or -o OUT.png is required");
	expect_error(PLOT(j.m, NULL, "--data", d, "-o", P_("bad.svg")), 2, "--weights W.safetensors");
	expect_error(PLOT(j.m, NULL, "--weights", w, "--data", d, "-o", P_("bad.jpg")), 2,
	             "-o '");
	assert_non_null(strstr(err_text, "must end in .svg or .png"));
	expect_error(PLOT(j.m, NULL, "--weights", w, "--data", d, "--window", "1,0,0,1", "-o", P_("bad.svg")),
	             2, "--window takes x0,x1,y0,y1 with x0 < x1 and y0 < y1, got '1,0,0,1'");
	expect_error(PLOT(j.m, NULL, "--weights", w, "--data", d, "--window", "0,1,0", "-o", P_("bad.svg")),
	             2, "--window takes x0,x1,y0,y1");
	expect_error(PLOT(j.m, NULL, "--weights", w, "--data", d, "--window", "0,1,0,nan", "-o", P_("bad.svg")),
	             2, "--window takes x0,x1,y0,y1");
	expect_error(PLOT(j.m, NULL, "--weights", w, "--titles", "a,b", "-o", P_("bad.svg")), 2,
	             "--titles has 2 titles for 1 weights file");
	expect_error(PLOT(j.m, NULL, "--weights", w, "-o", P_("bad.svg")), 2, "no data to take the window from");
	expect_error(PLOT(j.m, NULL, "--weights", w, "--width", "20", "-o", P_("bad.svg")), 2,
	             "--width must be from 100 to 4000, got 20");
	expect_error(PLOT(j.m, NULL, "--weights", w, "--frobnicate", "-o", P_("bad.svg")), 2,
	             "unknown option '--frobnicate'");
	expect_error(PLOT(j.m, NULL, "--weights", w, "-o"), 2, "-o needs a value");
	/* user errors: exit 1 */
	expect_error(PLOT(j.m, NULL, "--weights", P_("other.safetensors"), "--data", d, "-o", P_("bad.svg")), 1,
	             "other.safetensors");
	expect_error(PLOT(j.m, NULL, "--weights", P_("missing.safetensors"), "--data", d, "-o", P_("bad.svg")),
	             1, "missing.safetensors");
	expect_error(PLOT(j.m, NULL, "--weights", w, "--data", P_("nope.csv"), "-o", P_("bad.svg")), 1,
	             "nope.csv");
	expect_error(PLOT(j.m, NULL, "--weights", w, "--data", "toy2d:kind=circles", "-o", P_("bad.svg")), 1,
	             "toy2d kind must be spirals or moons");
	expect_error(PLOT(j.m, NULL, "--weights", w, "--data", d, "-o", P_("no/such/dir/bad.svg")), 1,
	             "no/such/dir/bad.svg");
	/* nothing written, not even a temporary */
	assert_int_equal(count_files("bad"), 0);
	/* --help goes to stdout and exits 0 */
	OK(PLOT(j.m, NULL, "--help"));
	assert_non_null(strstr(out_text, "--segment A,B"));
	free(P);
	free(Q);
	jit_close(&j);
	jit_close(&k);
}

static void test_toy2d_data(void **state)
{
	(void)state;
	jitted j;
	jit_open(&j, plane_lln);
	float *P = save_weights(j.m, 6, "t.safetensors");
	OK(PLOT(j.m, "--data\ntoy2d:kind=moons,n=50,noise=0.05,seed=2\n", "--weights", P_("t.safetensors"),
	        "--points", "5", "-o", P_("toy.svg"), "--width", "160"));
	svg_stats s = parse_svg(P_("toy.svg"));
	assert_true(s.region_paths == printed_count("t"));
	free(P);
	jit_close(&j);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/lln_test_plot_XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- llnc plot --log and --margins ---- */

static void spit_text(const char *name, const char *text)
{
	FILE *f = fopen(P_(name), "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* Points (x_i, y_i) of the picture lie on an affine image of (u_i, v_i)
 * (cairo drops a point between two collinear segments: the data avoid that):
 * x = a u + b, y = c v + d with the signs given (SVG's y grows downwards). */
static void assert_affine(const double *x, const double *y, const double *u, const double *v, int n,
                          int sx, int sy)
{
	assert_true(n >= 3);
	int j = 1;
	while (j < n && (u[j] == u[0] || v[j] == v[0]))
		j++;
	assert_true(j < n);
	double a = (x[j] - x[0]) / (u[j] - u[0]), c = (y[j] - y[0]) / (v[j] - v[0]);
	assert_true(a * sx > 0 && c * sy > 0);
	for (int i = 0; i < n; i++) {
		if (fabs(x[0] + a * (u[i] - u[0]) - x[i]) > 0.01 || fabs(y[0] + c * (v[i] - v[0]) - y[i]) > 0.01)
			fail_msg("point %d: (%g, %g) is not the image of (%g, %g)", i, x[i], y[i], u[i], v[i]);
	}
}

static void test_chart_logs(void **state)
{
	(void)state;
	static const double med[5] = { 1e-4, 2e-4, 5e-4, 3e-4, 8e-4 }, acc[5] = { 0.5, 0.7, 0.8, 0.82, 0.9 };
	char text[4096] = "", line[512];
	for (int e = 0; e < 5; e++) {
		snprintf(line, sizeof line,
		         "{\"epoch\":%d,\"train_loss\":1,\"valid\":{\"n\":10,\"accuracy\":%g,\"loss\":%g,"
		         "\"eps_l2\":[0,%g,1,2]}%s,\"seconds\":1}\n", e + 1, acc[e], 1.0 / (e + 1), med[e],
		         e == 3 ? ",\"best\":true" : "");
		strcat(text, line);
	}
	spit_text("a.jsonl", text);
	spit_text("b.jsonl", "{\"epoch\":1,\"valid\":{\"accuracy\":0.6,\"eps_l2\":[0,5e-4,1,2]},\"best\":true}\n"
	                     "{\"epoch\":2,\"valid\":{\"accuracy\":0.65,\"eps_l2\":[0,6e-4,1,2]}}\n"
	                     "\n"
	                     "{\"epoch\":3,\"valid\":{\"accuracy\":0.7,\"eps_l2\":[0,1e-3,1,2]}}\n");
	char two[1024];
	snprintf(two, sizeof two, "%s,%s", P_("a.jsonl"), P_("b.jsonl"));
	OK(PLOT(NULL, NULL, "--log", two, "-o", P_("curves.svg")));
	assert_non_null(strstr(out_text, "a: best epoch 4, accuracy 82.00%, median eps_2 0.0003\n"));
	assert_non_null(strstr(out_text, "b: best epoch 1, accuracy 60.00%, median eps_2 0.0005\n"));
	svg_stats s = parse_svg(P_("curves.svg"));
	/* per run: the eps_2 line, then the accuracy line */
	assert_int_equal(s.lines, 4);
	assert_int_equal(s.line_n[0], 5);
	assert_int_equal(s.line_n[1], 5);
	assert_int_equal(s.line_n[2], 3);
	double ep[5] = { 1, 2, 3, 4, 5 }, lmed[5];
	for (int e = 0; e < 5; e++)
		lmed[e] = log10(med[e]);
	assert_affine(s.line_x[0], s.line_y[0], ep, lmed, 5, 1, -1);   /* log axis */
	assert_affine(s.line_x[1], s.line_y[1], ep, acc, 5, 1, -1);
	/* both runs share the axes: run b's epoch 2 sits where run a's does */
	assert_true(fabs(s.line_x[2][1] - s.line_x[0][1]) < 0.01);
	/* the custom titles, and a PNG */
	OK(PLOT(NULL, NULL, "--log", two, "--titles", "vanilla,roll", "-o", P_("curves.png"), "--width", "300"));
	assert_non_null(strstr(out_text, "roll: best epoch 1"));
	cairo_surface_t *png = cairo_image_surface_create_from_png(P_("curves.png"));
	assert_int_equal(cairo_surface_status(png), CAIRO_STATUS_SUCCESS);
	assert_true(cairo_image_surface_get_width(png) > 600);
	cairo_surface_destroy(png);
}

static void test_chart_margins(void **state)
{
	(void)state;
	spit_text("e.eval.json", "{\"n\":6,\"accuracy\":0.5,\"eps_l2\":[1,2,3,4],"
	                         "\"examples\":{\"correct\":[1,0,1,0,1,0],"
	                         "\"eps_l2\":[3e-4,1e-4,null,2e-3,5e-5,0.01],\"eps_l1\":[1,1,1,1,1,1]}}\n");
	OK(PLOT(NULL, NULL, "--margins", P_("e.eval.json"), "-o", P_("m.svg")));
	/* the median as llnc eval computes it: halfway between 3e-4 and 2e-3 */
	assert_non_null(strstr(out_text, "e: 6 examples, median eps_2 0.00115\n"));
	svg_stats s = parse_svg(P_("m.svg"));
	assert_int_equal(s.lines, 1);
	assert_int_equal(s.line_n[0], 5);   /* the unbounded margin is never reached */
	double u[5] = { log10(5e-5), log10(1e-4), log10(3e-4), log10(2e-3), log10(1e-2) };
	double v[5] = { 1 / 6.0, 2 / 6.0, 3 / 6.0, 4 / 6.0, 5 / 6.0 };
	assert_affine(s.line_x[0], s.line_y[0], u, v, 5, 1, -1);
	OK(PLOT(NULL, NULL, "--margins", P_("e.eval.json"), "--norm", "1", "-o", P_("m1.svg")));
	assert_non_null(strstr(out_text, "median eps_1 1\n"));
}

static void test_chart_errors(void **state)
{
	(void)state;
	spit_text("novalid.jsonl", "{\"epoch\":1,\"train_loss\":1}\n");
	spit_text("bad.jsonl", "{\"epoch\":1,\"valid\":{\"accuracy\":0.6,\"eps_l2\":[0,5e-4,1,2]}}\n{oops\n");
	spit_text("noex.json", "{\"n\":1,\"eps_l2\":[1,2,3,4]}\n");
	spit_text("neg.json", "{\"examples\":{\"eps_l2\":[1e-3,-1]}}\n");
	expect_error(PLOT(NULL, NULL, "--log", P_("novalid.jsonl")), 2, "-o OUT.svg or -o OUT.png is required");
	expect_error(PLOT(NULL, NULL, "--log", P_("novalid.jsonl"), "--margins", P_("noex.json"), "-o", P_("c.svg")),
	             2, "give one of --log and --margins");
	expect_error(PLOT(NULL, NULL, "--log", P_("novalid.jsonl"), "-o", P_("c.svg")), 1,
	             "novalid.jsonl: record 1: no validation results (train with --valid N)");
	expect_error(PLOT(NULL, NULL, "--log", P_("bad.jsonl"), "-o", P_("c.svg")), 1, "bad.jsonl: record 2: not JSON");
	expect_error(PLOT(NULL, NULL, "--log", P_("missing.jsonl"), "-o", P_("c.svg")), 1, "missing.jsonl");
	expect_error(PLOT(NULL, NULL, "--margins", P_("noex.json"), "-o", P_("c.svg")), 1,
	             "no \"examples\" (write it with llnc eval --json --per-example)");
	expect_error(PLOT(NULL, NULL, "--margins", P_("neg.json"), "-o", P_("c.svg")), 1,
	             "neg.json: record 2: eps_l2 is not a margin");
	expect_error(PLOT(NULL, NULL, "--margins", P_("neg.json"), "--norm", "3", "-o", P_("c.svg")), 2,
	             "--norm takes 1, 2 or inf");
	expect_error(PLOT(NULL, NULL, "--margins", P_("neg.json"), "--titles", "a,b", "-o", P_("c.svg")), 2,
	             "--titles has 2 titles for 1 file");
	expect_error(PLOT(NULL, NULL, "--margins", P_("neg.json"), "--weights", "w", "-o", P_("c.svg")), 2,
	             "unknown option '--weights'");
	assert_int_equal(count_files("c."), 0);
	assert_int_equal(count_files(".c."), 0);
	OK(PLOT(NULL, NULL, "--log", "x", "--help"));
	assert_non_null(strstr(out_text, "--margins EVAL.json"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_svg_regions),
		cmocka_unit_test(test_png_and_defaults),
		cmocka_unit_test(test_segment),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_toy2d_data),
		cmocka_unit_test(test_chart_logs),
		cmocka_unit_test(test_chart_margins),
		cmocka_unit_test(test_chart_errors),
	};
	int failed = cmocka_run_group_tests(tests, setup, teardown);
	/* drop cairo's and fontconfig's caches so that valgrind shows only our
	 * own leaks */
	cairo_debug_reset_static_data();
	FcFini();
	return failed;
}
