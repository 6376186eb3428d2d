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
 *
 * rt_write_atomic lives here too because everything that writes results
 * (weights, reports) needs the same all-or-nothing guarantee.
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

static int vfail(char *err, const char *path, int64_t rec, const char *fmt, va_list ap)
{
	if (!err)
		return -1;
	int k = rec > 0 ? snprintf(err, RT_ERRLEN, "%s: record %lld: ", shown(path), (long long)rec)
	                : snprintf(err, RT_ERRLEN, "%s: ", shown(path));
	if (k < 0)
		k = 0;
	if (k < RT_ERRLEN)
		vsnprintf(err + k, RT_ERRLEN - (size_t)k, fmt, ap);
	return -1;
}

static int fail(char *err, const char *path, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail(err, path, 0, fmt, ap);
	va_end(ap);
	return -1;
}

static int fail_rec(char *err, const char *path, int64_t rec, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail(err, path, rec, fmt, ap);
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

/* ------------------------------------------------------------------------
 * Whole-file input
 * ---------------------------------------------------------------------- */

/* Reads the whole file (or stdin for "-") into a NUL-terminated buffer; the
 * terminator lets strtod run on the buffer without copying fields. */
static int slurp(const char *path, char **out, size_t *out_len, char *err)
{
	*out = NULL;
	*out_len = 0;
	bool is_stdin = strcmp(path, "-") == 0;
	FILE *f = is_stdin ? stdin : fopen(path, "rb");
	if (!f)
		return fail(err, path, "cannot read: %s", strerror(errno));
	size_t cap = 1 << 16;
	struct stat st;
	if (fstat(fileno(f), &st) == 0) {
		if (S_ISDIR(st.st_mode)) {
			if (!is_stdin)
				fclose(f);
			return fail(err, path, "cannot read: %s", strerror(EISDIR));
		}
		if (S_ISREG(st.st_mode) && st.st_size >= 0 && (uint64_t)st.st_size < SIZE_MAX - 1)
			cap = (size_t)st.st_size + 1;
	}
	char *buf = malloc(cap);
	size_t len = 0;
	int rc = 0;
	for (;;) {
		if (!buf) {
			rc = fail(err, path, "out of memory reading the file");
			break;
		}
		if (len + 1 >= cap) {
			/* Only pipes, or a file growing while we read, get here. */
			size_t ncap = cap * 2;
			char *nb = ncap > cap ? realloc(buf, ncap) : NULL;
			if (!nb) {
				rc = fail(err, path, "out of memory reading the file");
				break;
			}
			buf = nb;
			cap = ncap;
		}
		size_t got = fread(buf + len, 1, cap - 1 - len, f);
		len += got;
		if (got == 0) {
			if (ferror(f))
				rc = fail(err, path, "cannot read: %s", strerror(errno ? errno : EIO));
			break;
		}
	}
	if (!is_stdin)
		fclose(f);
	else
		clearerr(f);
	if (rc) {
		free(buf);
		return rc;
	}
	buf[len] = 0;
	*out = buf;
	*out_len = len;
	return 0;
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
	const unsigned char *data; /* count * t.size bytes, all present */
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

static int npy_parse(const char *path, const unsigned char *buf, size_t len, array *a, char *err)
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
	if (hlen > len - start)
		return fail(err, path, "truncated: .npy header says %zu bytes, file holds %zu", hlen, len - start);
	char *h = malloc(hlen + 1);
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
	size_t have = len - start - hlen;
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
	a->data = buf + start + hlen;
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

static int idx_parse(const char *path, const unsigned char *buf, size_t len, array *a, char *err)
{
	memset(a, 0, sizeof *a);
	idx_type(buf[2], &a->t);
	a->rank = buf[3];
	if (a->rank > 8)
		return fail(err, path, "IDX file of rank %d is not supported", a->rank);
	size_t start = 4 + 4 * (size_t)a->rank;
	if (len < start)
		return fail(err, path, "truncated: IDX header needs %zu bytes, file holds %zu", start, len);
	for (int i = 0; i < a->rank; i++) {
		const unsigned char *p = buf + 4 + 4 * i;
		a->shape[i] = (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
	}
	a->count = product(a->shape, a->rank);
	size_t have = len - start;
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
	a->data = buf + start;
	return 0;
}

/* ------------------------------------------------------------------------
 * Arrays to examples
 * ---------------------------------------------------------------------- */

static int array_to_data(const char *path, const array *a, int64_t dim, bool scale255,
                         rt_data *out, char *err)
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
	float *x = malloc((size_t)a->count * sizeof *x);
	if (!x)
		return fail(err, path, "out of memory (%lld values)", (long long)a->count);
	const unsigned char *p = a->data;
	if (scale255) {
		/* x/255.0 rounded once to float: the same values torchvision's
		 * ToTensor gives. */
		float table[256];
		for (int i = 0; i < 256; i++)
			table[i] = (float)(i / 255.0);
		for (int64_t i = 0; i < a->count; i++)
			x[i] = table[p[i]];
	} else if (a->t.kind == 'f' && a->t.size == 4 && !a->t.big) {
		memcpy(x, p, (size_t)a->count * sizeof *x);
		for (int64_t i = 0; i < a->count; i++)
			if (!isfinite(x[i])) {
				free(x);
				return fail_rec(err, path, i / w + 1, "value %lld is NaN or infinite",
				                (long long)(i % w + 1));
			}
	} else {
		for (int64_t i = 0; i < a->count; i++) {
			double v = elem(p + (size_t)i * (size_t)a->t.size, a->t);
			const char *bad = !isfinite(v) ? "is NaN or infinite"
			                  : !isfinite((float)v) ? "is out of float32 range" : NULL;
			if (bad) {
				free(x);
				return fail_rec(err, path, i / w + 1, "value %lld %s", (long long)(i % w + 1), bad);
			}
			x[i] = (float)v;
		}
	}
	out->n = n;
	out->dim = w;
	out->x = x;
	out->y = NULL;
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
	int32_t *y;
	int64_t n, cap;   /* in records */
} growbuf;

static bool grow(growbuf *g, int64_t width, bool labels)
{
	if (g->n < g->cap)
		return true;
	int64_t ncap = g->cap ? g->cap * 2 : 1024;
	if ((uint64_t)ncap * (uint64_t)width > SIZE_MAX / sizeof(float) / 2)
		return false;
	if (width > 0) {
		float *nx = realloc(g->x, (size_t)ncap * (size_t)width * sizeof *nx);
		if (!nx)
			return false;
		g->x = nx;
	}
	if (labels) {
		int32_t *ny = realloc(g->y, (size_t)ncap * sizeof *ny);
		if (!ny)
			return false;
		g->y = ny;
	}
	g->cap = ncap;
	return true;
}

/* labels_only: the labels file form, one integer per record and no x. */
static int parse_csv(const char *path, const char *buf, size_t len, int64_t dim, bool labeled,
                     bool labels_only, growbuf *g, int64_t *width_out, char *err)
{
	const char *p = buf, *end = buf + len;
	if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3;   /* spreadsheets save a UTF-8 byte order mark */
	int64_t width = labels_only ? 0 : dim;
	bool first = true;
	char q[64];
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		const char *s = p, *e = eol;
		p = eol < end ? eol + 1 : end;
		if (e > s && e[-1] == '\r')
			e--;
		trim(&s, &e);
		if (s == e || *s == '#')
			continue;
		if (first) {
			first = false;
			double v;
			if (!parse_number(s, field_end(s, e), &v))
				continue;   /* a header row */
		}
		int64_t rec = g->n + 1;
		int64_t fields = 1;
		for (const char *c = s; (c = memchr(c, ',', (size_t)(e - c))) != NULL; c++)
			fields++;
		if (labels_only) {
			if (fields != 1)
				return fail_rec(err, path, rec, "expected 1 label, found %lld values", (long long)fields);
		} else {
			int64_t nv = fields - labeled;
			if (width == 0) {
				if (nv == 0)
					return fail_rec(err, path, rec, "no values after the label");
				width = nv;
			} else if (nv != width) {
				return fail_rec(err, path, rec, "expected %lld values, found %lld",
				                (long long)width, (long long)nv);
			}
		}
		if (!grow(g, width, labeled || labels_only))
			return fail(err, path, "out of memory after %lld records", (long long)g->n);
		const char *f = s;
		int64_t k = 0;
		if (labeled || labels_only) {
			const char *fe = field_end(f, e);
			if (!parse_label(f, fe, &g->y[g->n])) {
				trim(&f, &fe);
				return fail_rec(err, path, rec, "label '%s' is not a non-negative integer",
				                quote(q, sizeof q, f, fe));
			}
			f = fe + 1;
			k = 1;
		}
		float *x = labels_only ? NULL : g->x + g->n * width;
		for (int64_t j = 0; j < (labels_only ? 0 : width); j++, k++) {
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
			f = fe + 1;
		}
		g->n++;
	}
	*width_out = width;
	return 0;
}

/* ------------------------------------------------------------------------
 * Public readers
 * ---------------------------------------------------------------------- */

/* For files with neither known extension: binary formats announce
 * themselves in their first bytes. */
static int sniff_fail(const char *path, const unsigned char *buf, size_t len, char *err)
{
	if (len == 0)
		return fail(err, path, "is empty");
	if (len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b)
		return fail(err, path, "is gzip-compressed; decompress it first (gunzip)");
	if (len < 4 && len > 0 && buf[0] == 0)
		return fail(err, path, "truncated: IDX header needs at least 4 bytes, file holds %zu", len);
	return fail(err, path, "not an IDX, CSV or .npy file");
}

static int no_labels_here(const char *path, char *err)
{
	return fail(err, path, "only CSV files carry labels in the first column; "
	            "give the labels as a separate file");
}

int rt_data_read(const char *path, int64_t dim, bool labeled, rt_data *out, char *err)
{
	memset(out, 0, sizeof *out);
	if (dim < 0)
		return fail(err, path, "invalid example size %lld", (long long)dim);
	char *buf;
	size_t len;
	if (slurp(path, &buf, &len, err))
		return -1;
	const unsigned char *ub = (const unsigned char *)buf;
	bool csv = strcmp(path, "-") == 0 || ends_with(path, ".csv");
	bool npy = !csv && (ends_with(path, ".npy") || (len >= 6 && memcmp(buf, "\x93NUMPY", 6) == 0));
	int rc;
	if (csv) {
		growbuf g = {0};
		int64_t width = 0;
		rc = parse_csv(path, buf, len, dim, labeled, false, &g, &width, err);
		if (rc == 0 && g.n == 0)
			rc = fail(err, path, "holds no examples");
		if (rc) {
			free(g.x);
			free(g.y);
		} else {
			/* Give back the doubling slack; failure to shrink is harmless. */
			float *sx = realloc(g.x, (size_t)g.n * (size_t)width * sizeof *sx);
			out->x = sx ? sx : g.x;
			out->y = g.y;
			out->n = g.n;
			out->dim = width;
		}
	} else if (npy) {
		array a;
		rc = npy_parse(path, ub, len, &a, err);
		if (rc == 0 && labeled)
			rc = no_labels_here(path, err);
		if (rc == 0 && a.t.kind != 'f')
			rc = fail(err, path, "data has integer dtype %s; convert it to float32 first "
			          "(for 8-bit images: x.astype('float32') / 255)", etype_name(a.t));
		if (rc == 0)
			rc = array_to_data(path, &a, dim, false, out, err);
	} else if (is_idx(ub, len)) {
		array a;
		rc = idx_parse(path, ub, len, &a, err);
		if (rc == 0 && labeled)
			rc = no_labels_here(path, err);
		bool u8 = a.t.kind == 'u' && a.t.size == 1;
		if (rc == 0 && u8 && a.rank == 1)
			rc = fail(err, path, "looks like an IDX label file (1-D unsigned bytes), not examples");
		else if (rc == 0 && !u8 && a.t.kind != 'f')
			rc = fail(err, path, "IDX data of type %s is not supported (use unsigned bytes or float32)",
			          etype_name(a.t));
		if (rc == 0)
			rc = array_to_data(path, &a, dim, u8, out, err);
	} else {
		rc = sniff_fail(path, ub, len, err);
	}
	free(buf);
	if (rc)
		memset(out, 0, sizeof *out);
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
	int32_t *y = malloc((size_t)(m ? m : 1) * sizeof *y);
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
	char *buf;
	size_t len;
	if (slurp(path, &buf, &len, err))
		return -1;
	const unsigned char *ub = (const unsigned char *)buf;
	int32_t *y = NULL;
	int64_t m = 0;
	int rc;
	if (strcmp(path, "-") == 0 || ends_with(path, ".csv")) {
		growbuf g = {0};
		int64_t width;
		rc = parse_csv(path, buf, len, 0, false, true, &g, &width, err);
		free(g.x);
		y = g.y;
		m = g.n;
	} else if (ends_with(path, ".npy") || (len >= 6 && memcmp(buf, "\x93NUMPY", 6) == 0)) {
		array a;
		rc = npy_parse(path, ub, len, &a, err);
		if (rc == 0)
			rc = array_to_labels(path, &a, &y, &m, err);
	} else if (is_idx(ub, len)) {
		array a;
		rc = idx_parse(path, ub, len, &a, err);
		if (rc == 0 && a.rank >= 2)
			rc = fail(err, path, "looks like an IDX image file, not labels");
		if (rc == 0)
			rc = array_to_labels(path, &a, &y, &m, err);
	} else {
		rc = sniff_fail(path, ub, len, err);
	}
	free(buf);
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
	memset(d, 0, sizeof *d);
}

/* ------------------------------------------------------------------------
 * Atomic writes
 * ---------------------------------------------------------------------- */

int rt_write_atomic(const char *path, const void *data, size_t len, char *err)
{
	/* The temporary must be in the target's directory: rename is atomic
	 * only within one file system. */
	size_t pl = strlen(path);
	char *tmp = malloc(pl + 32);
	if (!tmp)
		return fail(err, path, "out of memory");
	int fd = -1;
	/* Unique across threads (counter) and processes (pid, time). */
	static atomic_uint counter;
	unsigned salt = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL);
	for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
		unsigned k = atomic_fetch_add(&counter, 1);
		snprintf(tmp, pl + 32, "%s.tmp%08x", path, salt + k * 0x9E3779B9u);
		/* Mode 0666 through open lets the umask decide, as for any new
		 * file; mkstemp would force 0600. */
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0) {
		int e = errno;
		free(tmp);
		return fail(err, path, "cannot write: %s", strerror(e));
	}
	/* Replacing a file keeps its permissions. */
	struct stat st;
	if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
		(void)fchmod(fd, st.st_mode & 07777);
	const char *p = data;
	size_t left = len;
	int e = 0;
	while (left > 0) {
		ssize_t w = write(fd, p, left);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			e = errno;
			break;
		}
		p += w;
		left -= (size_t)w;
	}
	/* fsync before rename: otherwise a crash can leave the new name
	 * pointing at an empty file. */
	if (!e && fsync(fd) != 0)
		e = errno;
	if (close(fd) != 0 && !e)
		e = errno;
	if (!e && rename(tmp, path) != 0)
		e = errno;
	if (e) {
		unlink(tmp);
		free(tmp);
		return fail(err, path, "cannot write: %s", strerror(e));
	}
	free(tmp);
	/* Make the rename itself durable; failure here cannot be undone and
	 * the data is already in place, so it is not reported. */
	char *dir = strdup(path);
	if (dir) {
		char *slash = strrchr(dir, '/');
		const char *d = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
		int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			(void)fsync(dfd);
			close(dfd);
		}
		free(dir);
	}
	return 0;
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
