/* data.c: reading examples and labels, and writing files atomically.
 *
 * Users bring data in whatever format they have at hand: MNIST's IDX files,
 * NumPy .npy arrays, or CSV.  Every reader here turns one of those into the
 * same dense float32 matrix, and treats the file as untrusted: sizes in
 * headers are checked against the bytes actually present before anything is
 * allocated from them, every value must be finite, and each failure names the
 * file and the record (example, counted from 1) so the user can find it.
 * Binary files are read whole with fread and converted in memory, CSV is
 * parsed with strtod straight from the buffer: the MNIST training set
 * (47 MB) must load in well under a second.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rt.h"

/* ------------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------- */

/* The name shown in messages: "-" means nothing to a user reading them. */
static const char *shown(const char *path)
{
	return strcmp(path, "-") == 0 ? "stdin" : path;
}

static int fail(char *err, const char *path, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	rt_vfail_at(err, shown(path), 0, fmt, ap);
	va_end(ap);
	return -1;
}

static int fail_rec(char *err, const char *path, int64_t rec, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	rt_vfail_at(err, shown(path), rec, fmt, ap);
	va_end(ap);
	return -1;
}

/* A field quoted back to the user: bounded, and with control bytes made
 * visible, since a binary file given as CSV would otherwise garble the
 * terminal. */
static const char *quote(char *buf, size_t cap, const char *s, const char *e)
{
	size_t n = 0;
	const size_t limit = 40;
	for (; s < e && n + 4 < cap; s++) {
		if (n >= limit) {
			memcpy(buf + n, "...", 3);
			n += 3;
			break;
		}
		unsigned char c = (unsigned char)*s;
		buf[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	buf[n] = 0;
	return buf;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	if (a < b)
		return false;
	for (size_t i = 0; i < b; i++) {
		char c = s[a - b + i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != suffix[i])
			return false;
	}
	return true;
}

/* ------------------------------------------------------------------------
 * Element types shared by .npy and IDX
 * ---------------------------------------------------------------------- */

typedef struct etype {
	char kind;     /* 'f', 'i', 'u' */
	int size;      /* bytes */
	bool big;      /* big-endian in the file (IDX always, .npy with '>') */
} etype;

static const char *etype_name(etype t)
{
	switch (t.kind) {
	case 'f': return t.size == 4 ? "float32" : "float64";
	case 'i': return t.size == 1 ? "int8" : t.size == 2 ? "int16" : t.size == 4 ? "int32" : "int64";
	default:  return t.size == 1 ? "uint8" : t.size == 2 ? "uint16" : t.size == 4 ? "uint32" : "uint64";
	}
}

/* Supported hosts are little-endian (see docs/formats.md), so a big-endian
 * file needs its bytes reversed and a little-endian one does not. */
static double elem(const unsigned char *p, etype t)
{
	unsigned char b[8];
	if (t.big)
		for (int i = 0; i < t.size; i++)
			b[i] = p[t.size - 1 - i];
	else
		memcpy(b, p, (size_t)t.size);
	switch (t.kind) {
	case 'f':
		if (t.size == 4) {
			float f;
			memcpy(&f, b, 4);
			return f;
		} else {
			double d;
			memcpy(&d, b, 8);
			return d;
		}
	case 'i':
		switch (t.size) {
		case 1: { int8_t v; memcpy(&v, b, 1); return v; }
		case 2: { int16_t v; memcpy(&v, b, 2); return v; }
		case 4: { int32_t v; memcpy(&v, b, 4); return v; }
		default: { int64_t v; memcpy(&v, b, 8); return (double)v; }
		}
	default:
		switch (t.size) {
		case 1: return b[0];
		case 2: { uint16_t v; memcpy(&v, b, 2); return v; }
		case 4: { uint32_t v; memcpy(&v, b, 4); return v; }
		default: { uint64_t v; memcpy(&v, b, 8); return (double)v; }
		}
	}
}

/* An array in a file, after its header has been checked. */
typedef struct array {
	etype t;
	int rank;
	int64_t shape[8];
	int64_t count;             /* product of shape */
	size_t data_off;           /* where the count * t.size bytes start */
	const unsigned char *data; /* buf + data_off, when buf holds the whole file */
} array;

static void shape_str(char *buf, size_t cap, const array *a, const char *sep, bool parens)
{
	size_t k = 0;
	buf[0] = 0;
	if (parens)
		k += (size_t)snprintf(buf + k, cap - k, "(");
	for (int i = 0; i < a->rank && k < cap; i++)
		k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? sep : "", (long long)a->shape[i]);
	if (parens && k < cap)
		k += (size_t)snprintf(buf + k, cap - k, a->rank == 1 ? ",)" : ")");
}

/* Product of dims, or -1 if it cannot possibly be a real file's size. */
static int64_t product(const int64_t *dims, int rank)
{
	int64_t p = 1;
	for (int i = 0; i < rank; i++) {
		if (dims[i] < 0)
			return -1;
		if (dims[i] != 0 && p > INT64_MAX / 8 / dims[i])
			return -1;
		p *= dims[i];
	}
	return p;
}

/* ------------------------------------------------------------------------
 * .npy
 * ---------------------------------------------------------------------- */

/* Finds 'key' (either quote style) in the header dict and returns the text
 * after its colon. */
static const char *npy_key(const char *h, const char *key)
{
	char pat[32];
	for (int q = 0; q < 2; q++) {
		snprintf(pat, sizeof pat, "%c%s%c", q ? '"' : '\'', key, q ? '"' : '\'');
		const char *s = strstr(h, pat);
		if (s) {
			s += strlen(pat);
			while (*s == ' ')
				s++;
			if (*s != ':')
				return NULL;
			s++;
			while (*s == ' ')
				s++;
			return s;
		}
	}
	return NULL;
}

/* The header bytes numpy wrote before the data, from the first 12 bytes of
 * a file (len of them present); 0 when they do not say. */
static size_t npy_header_size(const unsigned char *buf, size_t len)
{
	if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
		return 0;
	if (buf[6] == 1)
		return 10 + ((size_t)buf[8] | (size_t)buf[9] << 8);
	if ((buf[6] == 2 || buf[6] == 3) && len >= 12)
		return 12 + ((size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24);
	return 0;
}

/* buf holds the first len bytes of a file of `size` bytes: at least the
 * whole header when the file has one. */
static int npy_parse(const char *path, const unsigned char *buf, size_t len, size_t fsize, array *a,
                     char *err)
{
	memset(a, 0, sizeof *a);
	if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
		return fail(err, path, "not a .npy file (no \\x93NUMPY magic)");
	int major = buf[6];
	size_t hlen, start;
	if (major == 1) {
		hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
		start = 10;
	} else if (major == 2 || major == 3) {
		if (len < 12)
			return fail(err, path, "truncated: .npy header is incomplete");
		hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
		start = 12;
	} else {
		return fail(err, path, ".npy format version %d.%d is not supported", major, buf[7]);
	}
	if (hlen > fsize - start)
		return fail(err, path, "truncated: .npy header says %zu bytes, file holds %zu", hlen, fsize - start);
	if (hlen > len - start)
		return fail(err, path, "bad .npy header: %zu bytes is too long", hlen);
	char *h = rt_malloc(hlen + 1);
	if (!h)
		return fail(err, path, "out of memory");
	memcpy(h, buf + start, hlen);
	h[hlen] = 0;
	int rc = 0;

	const char *d = npy_key(h, "descr");
	const char *fo = npy_key(h, "fortran_order");
	const char *sh = npy_key(h, "shape");
	if (!d || !fo || !sh) {
		rc = fail(err, path, "bad .npy header: needs 'descr', 'fortran_order' and 'shape'");
		goto out;
	}
	/* descr: a quoted type string like '<f4'; a list means a structured
	 * dtype, which has no meaning as a matrix of numbers. */
	char qc = *d;
	if (qc != '\'' && qc != '"') {
		rc = fail(err, path, "unsupported .npy dtype (structured arrays are not supported)");
		goto out;
	}
	const char *de = strchr(d + 1, qc);
	if (!de) {
		rc = fail(err, path, "bad .npy header: unterminated 'descr'");
		goto out;
	}
	char descr[16] = {0};
	size_t dl = (size_t)(de - d - 1);
	memcpy(descr, d + 1, dl < sizeof descr - 1 ? dl : sizeof descr - 1);
	char bo = descr[0], kind = descr[1];
	char *send;
	long size = strtol(descr + 2, &send, 10);
	bool ok = dl >= 3 && strchr("<>|=", bo) && strchr("fiu", kind) && *send == 0 &&
	          (kind == 'f' ? size == 4 || size == 8 : size == 1 || size == 2 || size == 4 || size == 8) &&
	          !(bo == '|' && size != 1);
	if (!ok) {
		rc = fail(err, path, "unsupported .npy dtype '%s' (use float32 or float64)", descr);
		goto out;
	}
	a->t = (etype){kind, (int)size, bo == '>'};

	/* shape: a tuple of non-negative integers */
	if (*sh != '(') {
		rc = fail(err, path, "bad .npy header: 'shape' is not a tuple");
		goto out;
	}
	const char *s = sh + 1;
	for (;;) {
		while (*s == ' ')
			s++;
		if (*s == ')')
			break;
		if (*s < '0' || *s > '9' || a->rank == 8) {
			rc = fail(err, path, "bad .npy header: unsupported 'shape'");
			goto out;
		}
		errno = 0;
		long long v = strtoll(s, &send, 10);
		if (errno) {
			rc = fail(err, path, "bad .npy header: dimension too large in 'shape'");
			goto out;
		}
		a->shape[a->rank++] = v;
		s = send;
		while (*s == ' ')
			s++;
		if (*s == ',')
			s++;
		else if (*s != ')') {
			rc = fail(err, path, "bad .npy header: unsupported 'shape'");
			goto out;
		}
	}
	/* Fortran order only changes the layout from rank 2 on. */
	if (strncmp(fo, "True", 4) == 0 && a->rank >= 2) {
		rc = fail(err, path, "array is in Fortran order; save it in C order "
		          "(numpy.ascontiguousarray) first");
		goto out;
	} else if (strncmp(fo, "True", 4) != 0 && strncmp(fo, "False", 5) != 0) {
		rc = fail(err, path, "bad .npy header: 'fortran_order' is neither True nor False");
		goto out;
	}
	a->count = product(a->shape, a->rank);
	char shp[160];
	shape_str(shp, sizeof shp, a, ", ", true);
	size_t have = fsize - start - hlen;
	if (a->count < 0 || (uint64_t)a->count * (uint64_t)size > have) {
		rc = fail(err, path, "truncated: header says shape %s of %s, file holds %zu bytes of data",
		          shp, etype_name(a->t), have);
		goto out;
	}
	if ((uint64_t)a->count * (uint64_t)size < have) {
		rc = fail(err, path, "%zu bytes after the end of the %s array",
		          have - (size_t)a->count * (size_t)size, shp);
		goto out;
	}
	a->data_off = start + hlen;
	a->data = buf + a->data_off;
out:
	free(h);
	return rc;
}

/* ------------------------------------------------------------------------
 * IDX (http://yann.lecun.com/exdb/mnist/): magic 0 0 TYPE RANK, RANK
 * big-endian u32 dimensions, then the data, big-endian.
 * ---------------------------------------------------------------------- */

static bool idx_type(int code, etype *t)
{
	switch (code) {
	case 0x08: *t = (etype){'u', 1, true}; return true;
	case 0x09: *t = (etype){'i', 1, true}; return true;
	case 0x0B: *t = (etype){'i', 2, true}; return true;
	case 0x0C: *t = (etype){'i', 4, true}; return true;
	case 0x0D: *t = (etype){'f', 4, true}; return true;
	case 0x0E: *t = (etype){'f', 8, true}; return true;
	default: return false;
	}
}

static bool is_idx(const unsigned char *buf, size_t len)
{
	etype t;
	return len >= 4 && buf[0] == 0 && buf[1] == 0 && idx_type(buf[2], &t) && buf[3] >= 1;
}

static int idx_parse(const char *path, const unsigned char *buf, size_t len, size_t fsize, array *a,
                     char *err)
{
	memset(a, 0, sizeof *a);
	idx_type(buf[2], &a->t);
	a->rank = buf[3];
	if (a->rank > 8)
		return fail(err, path, "IDX file of rank %d is not supported", a->rank);
	size_t start = 4 + 4 * (size_t)a->rank;
	if (fsize < start)
		return fail(err, path, "truncated: IDX header needs %zu bytes, file holds %zu", start, fsize);
	if (len < start)
		return fail(err, path, "internal error: IDX header not read");
	for (int i = 0; i < a->rank; i++) {
		const unsigned char *p = buf + 4 + 4 * i;
		a->shape[i] = (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
	}
	a->count = product(a->shape, a->rank);
	size_t have = fsize - start;
	char what[200];
	if (a->t.kind == 'u' && a->t.size == 1 && a->rank == 3)
		snprintf(what, sizeof what, "%lld images of %lldx%lld", (long long)a->shape[0],
		         (long long)a->shape[1], (long long)a->shape[2]);
	else if (a->rank == 1)
		snprintf(what, sizeof what, "%lld %s values", (long long)a->shape[0], etype_name(a->t));
	else {
		char dims[160];
		array rest = *a;
		rest.rank = a->rank - 1;
		memmove(rest.shape, a->shape + 1, sizeof a->shape[0] * (size_t)rest.rank);
		shape_str(dims, sizeof dims, &rest, "x", false);
		snprintf(what, sizeof what, "%lld examples of %s %s", (long long)a->shape[0], dims,
		         etype_name(a->t));
	}
	if (a->count < 0 || (uint64_t)a->count * (uint64_t)a->t.size > have)
		return fail(err, path, "truncated: header says %s, file holds %zu bytes of data", what, have);
	if ((uint64_t)a->count * (uint64_t)a->t.size < have)
		return fail(err, path, "%zu bytes after the %s the header announces",
		            have - (size_t)a->count * (size_t)a->t.size, what);
	a->data_off = start;
	a->data = buf + start;
	return 0;
}

/* ------------------------------------------------------------------------
 * Arrays to examples
 * ---------------------------------------------------------------------- */

/* The examples an array holds: n of w values each, checked against dim. */
static int array_shape(const char *path, const array *a, int64_t dim, int64_t *n_out, int64_t *w_out,
                       char *err)
{
	if (a->rank == 0)
		return fail(err, path, "holds a single number, not examples");
	int64_t n, w;
	if (a->rank == 1) {
		/* A flat vector is a column of 1-value examples, unless the model
		 * wants exactly that many inputs: then it is one example. */
		if (dim > 1 && a->shape[0] == dim) {
			n = 1;
			w = dim;
		} else {
			n = a->shape[0];
			w = 1;
		}
	} else {
		n = a->shape[0];
		w = product(a->shape + 1, a->rank - 1);
	}
	if (n == 0)
		return fail(err, path, "holds no examples");
	if (w == 0)
		return fail(err, path, "examples have no values");
	if (dim > 0 && w != dim) {
		char shp[160];
		shape_str(shp, sizeof shp, a, ", ", true);
		return fail(err, path, "shape %s gives %lld values per example, expected %lld", shp,
		            (long long)w, (long long)dim);
	}
	if ((uint64_t)a->count > SIZE_MAX / sizeof(float))
		return fail(err, path, "too large for this machine");
	*n_out = n;
	*w_out = w;
	return 0;
}

/* Converts `rows` examples of w values, whose bytes from the file are at p,
 * into x; row0 examples came before them (for record numbers). */
/* What a reader keeps of a value v as given (its correctly rounded
 * double) besides its float32 f: the rest, v - f, rounded to float, so that
 * the kernels certify f + lo, within about 1e-16 |v| of the value given. */
static float rest(double v, float f)
{
	return (float)(v - (double)f);
}

static bool any_rest(const float *xlo, int64_t n)
{
	for (int64_t i = 0; xlo && i < n; i++)
		if (xlo[i] != 0)
			return true;
	return false;
}

static int convert_rows(const char *path, const array *a, const unsigned char *p, int64_t row0,
                        int64_t rows, int64_t w, bool scale255, float *x, float *xlo, char *err)
{
	const int64_t count = rows * w;
	if (scale255) {
		/* x/255.0 rounded once to float: the same values torchvision's
		 * ToTensor gives; the value as given is b / 255 */
		float table[256], lo[256];
		for (int i = 0; i < 256; i++) {
			table[i] = (float)(i / 255.0);
			lo[i] = rest(i / 255.0, table[i]);
		}
		for (int64_t i = 0; i < count; i++) {
			x[i] = table[p[i]];
			xlo[i] = lo[p[i]];
		}
	} else if (a->t.kind == 'f' && a->t.size == 4 && !a->t.big) {
		memcpy(x, p, (size_t)count * sizeof *x);
		memset(xlo, 0, (size_t)count * sizeof *xlo);   /* float32 as given */
		for (int64_t i = 0; i < count; i++)
			if (!isfinite(x[i]))
				return fail_rec(err, path, row0 + i / w + 1, "value %lld is NaN or infinite",
				                (long long)(i % w + 1));
	} else {
		for (int64_t i = 0; i < count; i++) {
			double v = elem(p + (size_t)i * (size_t)a->t.size, a->t);
			const char *bad = !isfinite(v) ? "is NaN or infinite"
			                  : !isfinite((float)v) ? "is out of float32 range" : NULL;
			if (bad)
				return fail_rec(err, path, row0 + i / w + 1, "value %lld %s", (long long)(i % w + 1), bad);
			x[i] = (float)v;
			xlo[i] = rest(v, x[i]);
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * CSV
 * ---------------------------------------------------------------------- */

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Clinger's fast path: a decimal with at most 2^53 as its digits and a
 * power of ten up to 22 is one correctly rounded multiplication or division
 * of two exact doubles, hence bit-identical to strtod, and several times
 * faster on the short numbers CSV files hold.  Anything else returns false
 * and goes to strtod. */
static bool fast_number(const char *s, const char *e, double *v)
{
	static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
	                             1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
	                             1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
	bool neg = false;
	if (s < e && (*s == '-' || *s == '+'))
		neg = *s++ == '-';
	uint64_t m = 0;
	int digits = 0, exp10 = 0;
	for (; s < e && *s >= '0' && *s <= '9'; s++, digits++) {
		if (m > (UINT64_C(1) << 53) / 10)
			return false;
		m = m * 10 + (uint64_t)(*s - '0');
	}
	if (s < e && *s == '.') {
		for (s++; s < e && *s >= '0' && *s <= '9'; s++, digits++, exp10--) {
			if (m > (UINT64_C(1) << 53) / 10)
				return false;
			m = m * 10 + (uint64_t)(*s - '0');
		}
	}
	if (digits == 0 || m > (UINT64_C(1) << 53))
		return false;
	if (s < e && (*s == 'e' || *s == 'E')) {
		s++;
		bool eneg = false;
		if (s < e && (*s == '-' || *s == '+'))
			eneg = *s++ == '-';
		if (s == e || *s < '0' || *s > '9')
			return false;
		int x = 0;
		for (; s < e && *s >= '0' && *s <= '9'; s++)
			if ((x = x * 10 + (*s - '0')) > 1000)
				return false;
		exp10 += eneg ? -x : x;
	}
	if (s != e || exp10 < -22 || exp10 > 22)
		return false;
	double d = (double)m;
	d = exp10 < 0 ? d / p10[-exp10] : d * p10[exp10];
	*v = neg ? -d : d;
	return true;
}

/* Parses one field [s, e) fully as a number. */
static bool parse_number(const char *s, const char *e, double *v)
{
	while (s < e && is_blank(*s))
		s++;
	while (e > s && is_blank(e[-1]))
		e--;
	if (s == e)
		return false;
	/* strtod would skip a newline looking for digits; the checks above
	 * guarantee it starts on a non-blank inside the field. */
	if (fast_number(s, e, v))
		return true;
	char *end;
	*v = strtod(s, &end);
	return end == e;
}

static const char *field_end(const char *s, const char *e)
{
	const char *c = memchr(s, ',', (size_t)(e - s));
	return c ? c : e;
}

static bool parse_label(const char *s, const char *e, int32_t *y)
{
	double v;
	if (!parse_number(s, e, &v) || !(v >= 0) || v > INT32_MAX || v != floor(v))
		return false;
	*y = (int32_t)v;
	return true;
}

static void trim(const char **s, const char **e)
{
	while (*s < *e && is_blank(**s))
		(*s)++;
	while (*e > *s && is_blank((*e)[-1]))
		(*e)--;
}

typedef struct growbuf {
	float *x;
	float *xlo;       /* as x: see rt_data */
	int32_t *y;
	int32_t *len;     /* sequences of free length: see rt_data */
	int64_t n, cap;   /* in records */
} growbuf;

/* Room for at least `need` records of width values. */
static bool reserve(growbuf *g, int64_t need, int64_t width, bool labels)
{
	if (need <= g->cap)
		return true;
	int64_t ncap = g->cap ? g->cap : 1024;
	while (ncap < need)
		ncap = ncap > INT64_MAX / 2 ? need : ncap * 2;
	if ((uint64_t)ncap * (uint64_t)(width ? width : 1) > SIZE_MAX / sizeof(float) / 2)
		return false;
	if (width > 0) {
		float *nx = rt_realloc(g->x, (size_t)ncap * (size_t)width * sizeof *nx);
		if (!nx)
			return false;
		g->x = nx;
		float *nl = rt_realloc(g->xlo, (size_t)ncap * (size_t)width * sizeof *nl);
		if (!nl)
			return false;
		g->xlo = nl;
	}
	if (labels) {
		int32_t *ny = rt_realloc(g->y, (size_t)ncap * sizeof *ny);
		if (!ny)
			return false;
		g->y = ny;
	}
	g->cap = ncap;
	return true;
}

/* A CSV file read line by line. */
typedef struct csv {
	const char *path;
	int64_t width;      /* values per record, 0 until known */
	bool labeled;       /* a label in the first column */
	bool maybe_labeled; /* the first record decides: width + 1 values are a label and x */
	bool labels_only;   /* the labels file form: one integer per record, no x */
	bool first;         /* no line of data seen yet */
	int64_t rec;        /* records so far */
	char *pending;      /* an all-text first line whose role the next line decides */
	size_t pending_len; /* its length: it may hold NUL bytes */
	int64_t pending_fields;
} csv;

static int64_t count_fields(const char *s, const char *e)
{
	int64_t fields = 1;
	for (const char *c = s; (c = memchr(c, ',', (size_t)(e - c))) != NULL; c++)
		fields++;
	return fields;
}

static bool any_number(const char *s, const char *e)
{
	for (const char *f = s;; ) {
		const char *fe = field_end(f, e);
		double v;
		if (parse_number(f, fe, &v))
			return true;
		if (fe == e)
			return false;
		f = fe + 1;
	}
}

/* One record [s, e), trimmed and not a comment. */
static int csv_record(csv *c, const char *s, const char *e, growbuf *g, char *err)
{
	const char *path = c->path;
	int64_t rec = c->rec + 1;
	int64_t fields = count_fields(s, e);
	char q[64];
	if (c->labels_only) {
		if (fields != 1)
			return fail_rec(err, path, rec, "expected 1 label, found %lld values", (long long)fields);
	} else {
		bool guessed = false;
		if (c->maybe_labeled) {
			c->maybe_labeled = false;
			c->labeled = guessed = fields == c->width + 1;
		}
		const char *f = s, *fe = field_end(s, e);
		int32_t y;
		if (guessed && !parse_label(f, fe, &y)) {
			trim(&f, &fe);
			return fail_rec(err, path, rec, "expected %lld values, or a label and %lld values; found %lld "
			                "whose first, '%s', is not a label (a non-negative integer)", (long long)c->width,
			                (long long)c->width, (long long)fields, quote(q, sizeof q, f, fe));
		}
		int64_t nv = fields - c->labeled;
		if (c->width == 0) {
			if (nv == 0)
				return fail_rec(err, path, rec, "no values after the label");
			c->width = nv;
		} else if (nv != c->width) {
			return fail_rec(err, path, rec, "expected %lld values, found %lld",
			                (long long)c->width, (long long)nv);
		}
	}
	const bool labels = c->labeled || c->labels_only;
	const int64_t width = c->labels_only ? 0 : c->width;
	if (!reserve(g, g->n + 1, width, labels))
		return fail(err, path, "out of memory after %lld records", (long long)c->rec);
	const char *f = s;
	int64_t k = 0;
	if (labels) {
		const char *fe = field_end(f, e);
		if (!parse_label(f, fe, &g->y[g->n])) {
			trim(&f, &fe);
			return fail_rec(err, path, rec, "label '%s' is not a non-negative integer",
			                quote(q, sizeof q, f, fe));
		}
		f = fe + 1;
		k = 1;
	}
	float *x = width ? g->x + g->n * width : NULL, *xlo = width ? g->xlo + g->n * width : NULL;
	for (int64_t j = 0; j < width; j++, k++) {
		const char *fe = field_end(f, e);
		double v;
		if (!parse_number(f, fe, &v)) {
			trim(&f, &fe);
			if (f == fe)
				return fail_rec(err, path, rec, "field %lld is empty", (long long)(k + 1));
			return fail_rec(err, path, rec, "field %lld is not a number: '%s'",
			                (long long)(k + 1), quote(q, sizeof q, f, fe));
		}
		if (!isfinite(v))
			return fail_rec(err, path, rec, "field %lld is NaN or infinite", (long long)(k + 1));
		x[j] = (float)v;
		if (!isfinite(x[j])) {
			trim(&f, &fe);
			return fail_rec(err, path, rec, "field %lld is out of float32 range: '%s'",
			                (long long)(k + 1), quote(q, sizeof q, f, fe));
		}
		xlo[j] = rest(v, x[j]);
		f = fe + 1;
	}
	g->n++;
	c->rec++;
	return 0;
}

/* One line of data [s, e), trimmed and not a comment.  The first is a
 * header only when no field of it is a number and it has the field count
 * of a record; otherwise it is record 1, with the errors of any record, so
 * a typo in the first example cannot silently drop it.  When the count is
 * not known yet (any width), the next line decides. */
static int csv_line(csv *c, const char *s, const char *e, growbuf *g, char *err)
{
	if (c->first) {
		c->first = false;
		if (!any_number(s, e)) {
			int64_t fields = count_fields(s, e);
			int64_t want = c->labels_only ? 1 : c->width ? c->width + c->labeled : 0;
			if (want == fields || (c->maybe_labeled && want + 1 == fields))
				return 0;
			if (want == 0) {
				c->pending = rt_malloc((size_t)(e - s) + 1);
				if (!c->pending)
					return fail(err, c->path, "out of memory");
				memcpy(c->pending, s, (size_t)(e - s));
				c->pending[e - s] = 0;
				c->pending_len = (size_t)(e - s);
				c->pending_fields = fields;
				return 0;
			}
		}
	} else if (c->pending) {
		char *p = c->pending;
		c->pending = NULL;
		int rc = count_fields(s, e) == c->pending_fields ? 0 : csv_record(c, p, p + c->pending_len, g, err);
		free(p);
		if (rc)
			return rc;
	}
	return csv_record(c, s, e, g, err);
}

/* ------------------------------------------------------------------------
 * Readers
 * ---------------------------------------------------------------------- */

/* Known formats by their first bytes, so that a file given in the wrong
 * place is named rather than parsed as garbage. */
rt_format rt_sniff(const unsigned char *b, size_t len, uint64_t size)
{
	if (len >= 4 && memcmp(b, "PK\x03\x04", 4) == 0)
		return RT_FMT_ZIP;
	if (len >= 6 && memcmp(b, "\x93NUMPY", 6) == 0)
		return RT_FMT_NPY;
	if (len >= 2 && b[0] == 0x1f && b[1] == 0x8b)
		return RT_FMT_GZIP;
	if (len >= 4 && memcmp(b, "\x7f" "ELF", 4) == 0)
		return RT_FMT_ELF;
	if (len >= 9 && b[8] == '{') {
		uint64_t hl = 0;
		for (int i = 0; i < 8; i++)
			hl |= (uint64_t)b[i] << (8 * i);
		if (hl >= 2 && hl <= size - 8)
			return RT_FMT_SAFETENSORS;
	}
	if (is_idx(b, len))
		return RT_FMT_IDX;
	/* ONNX ModelProto: field 1 (ir_version, a small varint) first, then a
	 * producer, domain, version, doc string, graph or opset field. */
	if (len >= 3 && b[0] == 0x08 && b[1] >= 1 && b[1] <= 30 &&
	    (b[2] == 0x12 || b[2] == 0x1a || b[2] == 0x22 || b[2] == 0x28 || b[2] == 0x32 ||
	     b[2] == 0x3a || b[2] == 0x42))
		return RT_FMT_ONNX;
	return RT_FMT_UNKNOWN;
}

const char *rt_format_text(rt_format f)
{
	switch (f) {
	case RT_FMT_ZIP: return "a zip archive (PyTorch's torch.save format)";
	case RT_FMT_NPY: return "a NumPy .npy array";
	case RT_FMT_GZIP: return "gzip-compressed";
	case RT_FMT_ELF: return "an executable (ELF)";
	case RT_FMT_SAFETENSORS: return "a safetensors weights file";
	case RT_FMT_IDX: return "an IDX data file";
	case RT_FMT_ONNX: return "an ONNX model (protobuf)";
	default: return "of an unknown format";
	}
}

/* Length of the valid UTF-8 sequence at p (n bytes left), 0 if invalid:
 * no overlong forms, surrogates or code points past U+10FFFF. */
size_t rt_utf8_len(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
	if (!len || len > n || (len == 2 && c < 0xc2) || (len == 4 && c > 0xf4))
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if (len == 3 && ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0)))
		return 0;
	if (len == 4 && ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90)))
		return 0;
	return len;
}

size_t rt_utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t at = 0, k;
	while (at < n && (k = rt_utf8_len(p + at, n - at)) > 0)
		at += k;
	return at;
}

/* For files with neither known extension: binary formats announce
 * themselves in their first bytes. */
static int sniff_fail(const char *path, const unsigned char *buf, size_t len, uint64_t size, char *err)
{
	if (size == 0)
		return fail(err, path, "is empty");
	rt_format f = rt_sniff(buf, len, size);
	if (f == RT_FMT_GZIP)
		return fail(err, path, "is gzip-compressed; decompress it first (gunzip)");
	if (f == RT_FMT_ZIP)
		return fail(err, path, "is %s, not data; save arrays with numpy.save (.npy) or as CSV",
		            rt_format_text(f));
	if (f != RT_FMT_UNKNOWN)
		return fail(err, path, "is %s, not data (IDX, CSV or .npy)", rt_format_text(f));
	if (size < 4 && buf[0] == 0)
		return fail(err, path, "truncated: IDX header needs at least 4 bytes, file holds %zu", (size_t)size);
	return fail(err, path, "not an IDX, CSV or .npy file");
}

static int no_labels_here(const char *path, char *err)
{
	return fail(err, path, "only CSV files carry labels in the first column; "
	            "give the labels as a separate file");
}

struct rt_reader {
	char *path;
	FILE *f;
	bool is_stdin;
	char *mem;            /* a pipe's bytes, read whole (binary formats seek) */
	bool is_csv, is_ts;
	int64_t dim;
	int32_t max_len;      /* a model over sequences of free length (rt_model) */
	rt_seqdata ts;        /* a .ts file, read whole */
	growbuf g;            /* the chunk rt_reader_next returns */
	/* arrays */
	array a;
	int64_t n, w, row;    /* examples, values each, examples read */
	bool scale255;
	unsigned char *raw;   /* raw_rows examples' bytes */
	int64_t raw_rows;
	/* CSV */
	csv c;
	char *buf;            /* buf[pos..len) is read but not parsed; buf[len] = 0 */
	size_t cap, len, pos;
	bool eof, started;
};

void rt_reader_close(rt_reader *r)
{
	if (!r)
		return;
	if (r->f && !r->is_stdin)
		fclose(r->f);
	else if (r->f)
		clearerr(r->f);
	free(r->mem);
	rt_seqdata_free(&r->ts);
	free(r->raw);
	free(r->buf);
	free(r->c.pending);
	free(r->g.x);
	free(r->g.xlo);
	free(r->g.y);
	free(r->g.len);
	free(r->path);
	free(r);
}

/* Reads all of f into a NUL-terminated buffer. */
static int slurp_file(const char *path, FILE *f, size_t cap, char **out, size_t *out_len, char *err)
{
	*out = NULL;
	*out_len = 0;
	char *buf = rt_malloc(cap);
	size_t len = 0;
	for (;;) {
		if (!buf)
			return fail(err, path, "out of memory reading the file");
		if (len + 1 >= cap) {
			/* Only pipes, or a file growing while we read, get here. */
			size_t ncap = cap * 2;
			char *nb = ncap > cap ? rt_realloc(buf, ncap) : NULL;
			if (!nb) {
				free(buf);
				return fail(err, path, "out of memory reading the file");
			}
			buf = nb;
			cap = ncap;
		}
		size_t got = fread(buf + len, 1, cap - 1 - len, f);
		len += got;
		if (got == 0) {
			if (ferror(f)) {
				free(buf);
				return fail(err, path, "cannot read: %s", strerror(errno ? errno : EIO));
			}
			break;
		}
	}
	buf[len] = 0;
	*out = buf;
	*out_len = len;
	return 0;
}

/* Reads exactly n bytes at the current position. */
static int read_exact(rt_reader *r, void *dst, size_t n, char *err)
{
	if (fread(dst, 1, n, r->f) == n)
		return 0;
	return fail(err, r->path, "cannot read: %s",
	            ferror(r->f) ? strerror(errno ? errno : EIO) : "file changed while reading");
}

/* A .ts file of sequences (ts.c) as examples of a fixed-length model: every
 * sequence must have dim / F frames (or, with dim 0, as many as the first);
 * of a model over sequences of free length, 1 to max_len frames of
 * dim / max_len values. */
static int ts_open(rt_reader *r, bool labeled, char *err)
{
	if (rt_ts_read(r->path, &r->ts, err))
		return -1;
	const rt_seqdata *d = &r->ts;
	if (labeled && !d->y)
		return fail(err, r->path, "has no class labels (@classLabel false)");
	int64_t F = r->max_len ? r->dim / r->max_len : d->F;
	if (r->max_len && d->F != F)
		return fail(err, r->path, "holds frames of %lld values, but the model's are %lld values",
		            (long long)d->F, (long long)F);
	if (r->dim % d->F != 0)
		return fail(err, r->path, "holds frames of %lld values, and %lld values per example are not a whole number "
		            "of frames", (long long)d->F, (long long)r->dim);
	int64_t T = r->dim ? r->dim / d->F : d->start[1];
	for (int64_t i = 0; r->max_len && i < d->n; i++)
		if (d->start[i + 1] - d->start[i] > T)
			return fail_rec(err, r->path, i + 1, "a sequence of %lld frames, longer than the %lld the model was "
			                "built for (llnc --max-len; docs/language.md, rnn)",
			                (long long)(d->start[i + 1] - d->start[i]), (long long)T);
	for (int64_t i = 0; !r->max_len && i < d->n; i++)
		if (d->start[i + 1] - d->start[i] != T)
			return fail_rec(err, r->path, i + 1, "a sequence of %lld frames, but the model takes %lld frames of %lld "
			                "values (its input has a fixed length; docs/language.md, rnn)",
			                (long long)(d->start[i + 1] - d->start[i]), (long long)T, (long long)d->F);
	r->n = d->n;
	r->w = T * d->F;
	return 0;
}

/* Appends up to max - g->n sequences of a .ts file. */
static int ts_fill(rt_reader *r, int64_t max, growbuf *g, char *err)
{
	int64_t rows = r->n - r->row;
	if (rows > max - g->n)
		rows = max - g->n;
	if (rows <= 0)
		return 0;
	bool labels = r->ts.y && (r->c.labeled || r->c.maybe_labeled);
	if (!reserve(g, g->n + rows, r->w, labels))
		return fail(err, r->path, "out of memory (%lld values)", (long long)(rows * r->w));
	if (r->max_len) {   /* left-padded: each sequence's frames last */
		int32_t *nl = rt_realloc(g->len, (size_t)g->cap * sizeof *nl);
		if (!nl)
			return fail(err, r->path, "out of memory");
		g->len = nl;
		const rt_seqdata *d = &r->ts;
		for (int64_t i = 0; i < rows; i++) {
			int64_t q = r->row + i, n = (d->start[q + 1] - d->start[q]) * d->F, pad = r->w - n;
			float *x = g->x + (g->n + i) * r->w, *lo = g->xlo + (g->n + i) * r->w;
			memset(x, 0, (size_t)pad * sizeof *x);
			memset(lo, 0, (size_t)pad * sizeof *lo);
			memcpy(x + pad, d->x + d->start[q] * d->F, (size_t)n * sizeof *x);
			memcpy(lo + pad, d->xlo + d->start[q] * d->F, (size_t)n * sizeof *lo);
			g->len[g->n + i] = (int32_t)(d->start[q + 1] - d->start[q]);
		}
	} else {
		size_t bytes = (size_t)rows * (size_t)r->w * sizeof(float);
		memcpy(g->x + g->n * r->w, r->ts.x + r->row * r->w, bytes);
		memcpy(g->xlo + g->n * r->w, r->ts.xlo + r->row * r->w, bytes);
	}
	if (labels)
		memcpy(g->y + g->n, r->ts.y + r->row, (size_t)rows * sizeof *g->y);
	g->n += rows;
	r->row += rows;
	return 0;
}

/* Opens the file and, for IDX and .npy, reads and checks its header. */
static int reader_open(const char *path, int64_t dim, int32_t max_len, bool labeled, bool labels_only,
                       rt_reader **out, char *err)
{
	*out = NULL;
	if (dim < 0)
		return fail(err, path, "invalid example size %lld", (long long)dim);
	rt_reader *r = rt_calloc(1, sizeof *r);
	char *pcopy = rt_malloc(strlen(path) + 1);
	if (!r || !pcopy) {
		free(r);
		free(pcopy);
		return fail(err, path, "out of memory");
	}
	strcpy(pcopy, path);
	r->path = pcopy;
	path = pcopy;
	r->dim = dim;
	r->max_len = max_len;
	r->is_stdin = strcmp(r->path, "-") == 0;
	r->is_csv = r->is_stdin || ends_with(r->path, ".csv");
	r->c = (csv){ .path = path, .width = labels_only ? 0 : dim, .labeled = labeled,
	              .labels_only = labels_only, .first = true };
	int rc = 0;
	if (!r->is_stdin && ends_with(r->path, ".ts")) {
		r->is_ts = true;
		if ((rc = ts_open(r, labeled, err)))
			goto out;
		*out = r;
		return 0;
	}
	r->f = r->is_stdin ? stdin : fopen(r->path, "rb");
	if (!r->f) {
		rc = fail(err, path, "cannot read: %s", strerror(errno));
		goto out;
	}
	struct stat st;
	bool regular = false;
	uint64_t size = 0;
	if (fstat(fileno(r->f), &st) == 0) {
		if (S_ISDIR(st.st_mode)) {
			rc = fail(err, path, "cannot read: %s", strerror(EISDIR));
			goto out;
		}
		regular = S_ISREG(st.st_mode);
		size = (uint64_t)st.st_size;
	}
	if (r->is_csv) {
		/* a small file's own size is enough: a megabyte per open was most
		 * of the cost of reading a short file */
		r->cap = regular && size < (1 << 20) ? (size_t)size + 2 : 1 << 20;
		r->buf = rt_malloc(r->cap);
		if (!r->buf)
			rc = fail(err, path, "out of memory");
		else
			r->buf[0] = 0;
		goto out;
	}
	if (!regular) {
		size_t len;
		if ((rc = slurp_file(path, r->f, 1 << 16, &r->mem, &len, err)))
			goto out;
		fclose(r->f);
		r->f = len ? fmemopen(r->mem, len, "rb") : NULL;
		size = len;
		if (len && !r->f) {
			rc = fail(err, path, "out of memory");
			goto out;
		}
	}
	/* The header: 12 bytes say how long a .npy header is; IDX needs 36 at
	 * most. */
	unsigned char head[40] = {0};
	size_t got = size < 12 ? (size_t)size : 12;
	if (got && (rc = read_exact(r, head, got, err)))
		goto out;
	bool npy = ends_with(path, ".npy") || (got >= 6 && memcmp(head, "\x93NUMPY", 6) == 0);
	if (npy) {
		size_t hs = npy_header_size(head, got);
		unsigned char *h = head;
		size_t have = got;
		if (hs > got && hs <= size && hs <= (64u << 20)) {
			h = rt_malloc(hs);
			if (!h) {
				rc = fail(err, path, "out of memory");
				goto out;
			}
			memcpy(h, head, got);
			rc = read_exact(r, h + got, hs - got, err);
			have = hs;
		}
		if (!rc)
			rc = npy_parse(path, h, have, (size_t)size, &r->a, err);
		if (h != head)
			free(h);
		if (rc == 0 && labeled)
			rc = no_labels_here(path, err);
		if (rc == 0 && r->a.t.kind != 'f')
			rc = fail(err, path, "data has integer dtype %s; convert it to float32 first "
			          "(for 8-bit images: x.astype('float32') / 255)", etype_name(r->a.t));
	} else if (is_idx(head, got)) {
		size_t hs = 4 + 4 * (size_t)(head[3] <= 8 ? head[3] : 0);
		if (hs > got && hs <= size)
			rc = read_exact(r, head + got, hs - got, err);
		if (!rc)
			rc = idx_parse(path, head, hs <= size ? hs : got, (size_t)size, &r->a, err);
		if (rc == 0 && labeled)
			rc = no_labels_here(path, err);
		bool u8 = r->a.t.kind == 'u' && r->a.t.size == 1;
		if (rc == 0 && u8 && r->a.rank == 1)
			rc = fail(err, path, "looks like an IDX label file (1-D unsigned bytes), not examples");
		else if (rc == 0 && !u8 && r->a.t.kind != 'f')
			rc = fail(err, path, "IDX data of type %s is not supported (use unsigned bytes or float32)",
			          etype_name(r->a.t));
		r->scale255 = u8;
	} else {
		rc = sniff_fail(path, head, got, size, err);
	}
	if (rc == 0)
		rc = array_shape(path, &r->a, dim, &r->n, &r->w, err);
	if (rc == 0 && fseeko(r->f, (off_t)r->a.data_off, SEEK_SET) != 0)
		rc = fail(err, path, "cannot read: %s", strerror(errno));
out:
	if (rc) {
		rt_reader_close(r);
		return -1;
	}
	*out = r;
	return 0;
}

/* Appends up to max - g->n examples of an array. */
static int array_fill(rt_reader *r, int64_t max, growbuf *g, char *err)
{
	int64_t rows = r->n - r->row;
	if (rows > max - g->n)
		rows = max - g->n;
	if (rows <= 0)
		return 0;
	if (!reserve(g, g->n + rows, r->w, false))
		return fail(err, r->c.path, "out of memory (%lld values)", (long long)(rows * r->w));
	/* through a buffer of about 1 MB, so memory stays that of the floats */
	size_t row_bytes = (size_t)r->w * (size_t)r->a.t.size;
	int64_t piece = (int64_t)((1u << 20) / row_bytes);
	if (piece < 1)
		piece = 1;
	if (piece > rows)
		piece = rows;
	if (piece > r->raw_rows) {
		unsigned char *nr = rt_realloc(r->raw, (size_t)piece * row_bytes);
		if (!nr)
			return fail(err, r->c.path, "out of memory");
		r->raw = nr;
		r->raw_rows = piece;
	}
	for (int64_t left = rows; left > 0;) {
		int64_t k = left < piece ? left : piece;
		if (read_exact(r, r->raw, (size_t)k * row_bytes, err) ||
		    convert_rows(r->c.path, &r->a, r->raw, r->row, k, r->w, r->scale255, g->x + g->n * r->w,
		                 g->xlo + g->n * r->w, err))
			return -1;
		g->n += k;
		r->row += k;
		left -= k;
	}
	return 0;
}

/* Appends up to max - g->n records of a CSV file. */
static int csv_fill(rt_reader *r, int64_t max, growbuf *g, char *err)
{
	while (g->n < max) {
		char *s = r->buf + r->pos, *end = r->buf + r->len;
		char *nl = memchr(s, '\n', (size_t)(end - s));
		if (!nl && !r->eof) {
			/* not a whole line: keep the rest, read more */
			memmove(r->buf, s, (size_t)(end - s));
			r->len -= r->pos;
			r->pos = 0;
			if (r->len + 1 >= r->cap) {
				char *nb = r->cap < SIZE_MAX / 2 ? rt_realloc(r->buf, r->cap * 2) : NULL;
				if (!nb)
					return fail(err, r->c.path, "out of memory: a line of over %zu bytes", r->len);
				r->buf = nb;
				r->cap *= 2;
			}
			size_t got = fread(r->buf + r->len, 1, r->cap - 1 - r->len, r->f);
			r->len += got;
			r->buf[r->len] = 0;
			if (got == 0) {
				if (ferror(r->f))
					return fail(err, r->c.path, "cannot read: %s", strerror(errno ? errno : EIO));
				r->eof = true;
			}
			continue;
		}
		if (!nl && s == end)
			break;
		const char *e = nl ? nl : end;
		r->pos = (size_t)(e - r->buf) + (nl != NULL);
		if (!r->started) {
			r->started = true;
			if (e - s >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
				s += 3;   /* spreadsheets save a UTF-8 byte order mark */
		}
		const char *ls = s;
		if (e > ls && e[-1] == '\r')
			e--;
		trim(&ls, &e);
		if (ls == e || *ls == '#')
			continue;
		if (csv_line(&r->c, ls, e, g, err))
			return -1;
	}
	if (g->n < max && r->c.pending) {
		/* an all-text line and nothing after it: a header */
		free(r->c.pending);
		r->c.pending = NULL;
	}
	return 0;
}

static int reader_fill(rt_reader *r, int64_t max, growbuf *g, char *err)
{
	return r->is_csv ? csv_fill(r, max, g, err) : r->is_ts ? ts_fill(r, max, g, err) : array_fill(r, max, g, err);
}

int rt_reader_open(const char *path, int64_t dim, rt_reader **out, char *err)
{
	return reader_open(path, dim, 0, false, false, out, err);
}

int rt_reader_open_labeled(const char *path, int64_t dim, rt_reader **out, char *err)
{
	if (dim < 1)
		return fail(err, path, "invalid example size %lld", (long long)dim);
	if (reader_open(path, dim, 0, false, false, out, err))
		return -1;
	(*out)->c.maybe_labeled = true;
	return 0;
}

int rt_reader_open_model(const char *path, const rt_model *m, bool maybe_labeled, rt_reader **out, char *err)
{
	if (reader_open(path, m->n_in, m->max_len, false, false, out, err))
		return -1;
	(*out)->c.maybe_labeled = maybe_labeled;
	return 0;
}

int rt_reader_next(rt_reader *r, int64_t max, rt_data *chunk, char *err)
{
	memset(chunk, 0, sizeof *chunk);
	r->g.n = 0;
	if (max < 1 || reader_fill(r, max, &r->g, err))
		return -1;
	chunk->n = r->g.n;
	chunk->dim = r->is_csv ? r->c.width : r->w;
	chunk->x = r->g.x;
	chunk->y = (r->is_csv && r->c.labeled) || (r->is_ts && r->ts.y && (r->c.labeled || r->c.maybe_labeled)) ? r->g.y
	                                                                                                    : NULL;
	chunk->xlo = any_rest(r->g.xlo, chunk->n * chunk->dim) ? r->g.xlo : NULL;
	chunk->len = r->is_ts && r->max_len ? r->g.len : NULL;
	return 0;
}

int64_t rt_reader_count(const rt_reader *r)
{
	return r->is_csv ? r->c.rec : r->row;
}

static int data_read(const char *path, int64_t dim, int32_t max_len, bool labeled, rt_data *out, char *err);

int rt_data_read(const char *path, int64_t dim, bool labeled, rt_data *out, char *err)
{
	return data_read(path, dim, 0, labeled, out, err);
}

int rt_data_read_model(const char *path, const rt_model *m, bool labeled, rt_data *out, char *err)
{
	return data_read(path, m->n_in, m->max_len, labeled, out, err);
}

static int data_read(const char *path, int64_t dim, int32_t max_len, bool labeled, rt_data *out, char *err)
{
	memset(out, 0, sizeof *out);
	rt_reader *r;
	if (reader_open(path, dim, max_len, labeled, false, &r, err))
		return -1;
	int rc = reader_fill(r, INT64_MAX, &r->g, err);
	if (rc == 0 && r->g.n == 0)
		rc = fail(err, r->c.path, "holds no examples");
	if (rc == 0) {
		int64_t width = r->is_csv ? r->c.width : r->w;
		/* Give back the doubling slack; failure to shrink is harmless. */
		float *sx = realloc(r->g.x, (size_t)r->g.n * (size_t)width * sizeof *sx);
		out->x = sx ? sx : r->g.x;
		out->y = r->g.y;
		if (any_rest(r->g.xlo, r->g.n * width)) {
			float *sl = realloc(r->g.xlo, (size_t)r->g.n * (size_t)width * sizeof *sl);
			out->xlo = sl ? sl : r->g.xlo;
		} else {
			free(r->g.xlo);   /* every value exact: the kernels' fast path */
		}
		out->n = r->g.n;
		out->dim = width;
		out->len = r->is_ts && r->max_len ? r->g.len : NULL;
		if (!out->len)
			free(r->g.len);
		r->g = (growbuf){ 0 };
	}
	rt_reader_close(r);
	return rc;
}

static int array_to_labels(const char *path, const array *a, int32_t **out, int64_t *n, char *err)
{
	if (a->rank == 0 || a->rank > 2 || (a->rank == 2 && a->shape[1] != 1)) {
		char shp[160];
		shape_str(shp, sizeof shp, a, ", ", true);
		return fail(err, path, "labels must be a vector, not shape %s", shp);
	}
	int64_t m = a->shape[0];
	int32_t *y = rt_malloc((size_t)(m ? m : 1) * sizeof *y);
	if (!y)
		return fail(err, path, "out of memory");
	for (int64_t i = 0; i < m; i++) {
		double v = elem(a->data + (size_t)i * (size_t)a->t.size, a->t);
		if (!(v >= 0) || v > INT32_MAX || v != floor(v)) {
			free(y);
			return fail_rec(err, path, i + 1, "label '%.17g' is not a non-negative integer", v);
		}
		y[i] = (int32_t)v;
	}
	*out = y;
	*n = m;
	return 0;
}

int rt_labels_read(const char *path, int64_t n_expected, int32_t **out, int64_t *n, char *err)
{
	*out = NULL;
	*n = 0;
	int32_t *y = NULL;
	int64_t m = 0;
	int rc;
	if (strcmp(path, "-") == 0 || ends_with(path, ".csv")) {
		rt_reader *r;
		if (reader_open(path, 0, 0, false, true, &r, err))
			return -1;
		rc = csv_fill(r, INT64_MAX, &r->g, err);
		y = r->g.y;
		m = r->g.n;
		r->g.y = NULL;
		rt_reader_close(r);
	} else {
		FILE *f = fopen(path, "rb");
		if (!f)
			return fail(err, path, "cannot read: %s", strerror(errno));
		struct stat st;
		if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
			fclose(f);
			return fail(err, path, "cannot read: %s", strerror(EISDIR));
		}
		char *buf;
		size_t len;
		rc = slurp_file(path, f, S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 1 << 16, &buf, &len, err);
		fclose(f);
		if (rc)
			return -1;
		const unsigned char *ub = (const unsigned char *)buf;
		array a;
		if (ends_with(path, ".npy") || (len >= 6 && memcmp(buf, "\x93NUMPY", 6) == 0)) {
			rc = npy_parse(path, ub, len, len, &a, err);
			if (rc == 0)
				rc = array_to_labels(path, &a, &y, &m, err);
		} else if (is_idx(ub, len)) {
			rc = idx_parse(path, ub, len, len, &a, err);
			if (rc == 0 && a.rank >= 2)
				rc = fail(err, path, "looks like an IDX image file, not labels");
			if (rc == 0)
				rc = array_to_labels(path, &a, &y, &m, err);
		} else {
			rc = sniff_fail(path, ub, len, len, err);
		}
		free(buf);
	}
	if (rc == 0 && m == 0)
		rc = fail(err, path, "holds no labels");
	if (rc == 0 && n_expected > 0 && m != n_expected)
		rc = fail(err, path, "holds %lld labels but the data has %lld examples", (long long)m,
		          (long long)n_expected);
	if (rc) {
		free(y);
		return -1;
	}
	*out = y;
	*n = m;
	return 0;
}

void rt_data_free(rt_data *d)
{
	if (!d)
		return;
	free(d->x);
	free(d->y);
	free(d->xlo);
	free(d->len);
	memset(d, 0, sizeof *d);
}

char *rt_split_labels(const char *spec, char **labels)
{
	char *s = strdup(spec);
	*labels = NULL;
	/* a name that exists as given is one file, even with a comma in it */
	if (s && access(s, F_OK) != 0) {
		char *comma = strrchr(s, ',');
		if (comma) {
			*comma = 0;
			*labels = comma + 1;
		}
	}
	return s;
}
