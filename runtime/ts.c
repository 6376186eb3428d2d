/* ts.c: sequences from the UEA/UCR time-series archive's .ts format.
 *
 * A .ts file is a header of @ lines (@problemName, @univariate,
 * @dimensions F, @equalLength, @seriesLength, @classLabel true L1 L2 ...),
 * then @data and one sequence per line: its F channels separated by ':',
 * each channel the sequence's values separated by ',', and with class
 * labels the label last.  lln stores a sequence time-major, frame after
 * frame of F values, which is the layout of `input x[T, F]` and of
 * nn.RNN(batch_first=True); the class index is the label's position in the
 * @classLabel list.  Sequences may differ in length (start[] says where
 * each begins); all channels of one line must not.  Missing values ('?')
 * are refused: an rnn cannot be certified on a value it does not have.
 * Errors name the line: "FILE: line N: ...".
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

typedef struct parser {
	const char *path;
	char *err;
	int64_t line;
	rt_seqdata *d;
	int64_t cap_x, cap_lo, cap_seqs, cap_y;
	bool labels_known, equal, univariate_given, univariate;
	int64_t series_length;    /* @seriesLength, 0: not given */
	double *chan;             /* one line's values, channel by channel */
	int64_t cap_chan;
} parser;

static int fail_line(parser *p, const char *fmt, ...)
{
	char msg[RT_ERRLEN];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return rt_fail_file(p->err, p->path, "line %lld: %s", (long long)p->line, msg);
}

static bool grow(void **buf, int64_t *cap, int64_t need, size_t elem)
{
	if (need <= *cap)
		return true;
	int64_t n = *cap ? *cap : 64;
	while (n < need)
		n *= 2;
	void *nb = rt_realloc(*buf, (size_t)n * elem);
	if (!nb)
		return false;
	*buf = nb;
	*cap = n;
	return true;
}

/* [s, e) with blanks trimmed */
static void trim(const char **s, const char **e)
{
	while (*s < *e && isspace((unsigned char)**s))
		(*s)++;
	while (*e > *s && isspace((unsigned char)(*e)[-1]))
		(*e)--;
}

/* The next blank-separated word of [*s, e), or NULL at the end. */
static const char *word(const char **s, const char *e, size_t *len)
{
	while (*s < e && isspace((unsigned char)**s))
		(*s)++;
	if (*s == e)
		return NULL;
	const char *w = *s;
	while (*s < e && !isspace((unsigned char)**s))
		(*s)++;
	*len = (size_t)(*s - w);
	return w;
}

static bool word_is(const char *w, size_t len, const char *lit)
{
	return strlen(lit) == len && strncasecmp(w, lit, len) == 0;
}

static int boolean(parser *p, const char *key, const char **s, const char *e, bool *out)
{
	size_t len;
	const char *w = word(s, e, &len);
	if (w && word_is(w, len, "true"))
		*out = true;
	else if (w && word_is(w, len, "false"))
		*out = false;
	else
		return fail_line(p, "%s takes true or false", key);
	return 0;
}

static int integer(parser *p, const char *key, const char **s, const char *e, int64_t *out)
{
	size_t len;
	const char *w = word(s, e, &len);
	char buf[32];
	if (!w || len >= sizeof buf)
		return fail_line(p, "%s takes a positive integer", key);
	memcpy(buf, w, len);
	buf[len] = 0;
	char *end;
	errno = 0;
	long long v = strtoll(buf, &end, 10);
	if (*end || errno || v < 1 || v > (1 << 24))
		return fail_line(p, "%s takes a positive integer, got '%s'", key, buf);
	*out = v;
	return 0;
}

/* One header line (after its '@'). */
static int header(parser *p, const char *s, const char *e)
{
	size_t len = 0;
	const char *key = word(&s, e, &len);
	if (!key)
		return fail_line(p, "'@' without a header name");
	rt_seqdata *d = p->d;
	bool b;
	if (word_is(key, len, "problemName") || word_is(key, len, "missing"))
		return 0;   /* a name; and '?' is refused wherever it is */
	if (word_is(key, len, "timeStamps")) {
		if (boolean(p, "@timeStamps", &s, e, &b))
			return -1;
		return b ? fail_line(p, "@timeStamps true is not supported: give the values without time stamps") : 0;
	}
	if (word_is(key, len, "univariate")) {
		if (boolean(p, "@univariate", &s, e, &p->univariate))
			return -1;
		p->univariate_given = true;
		if (p->univariate && d->F == 0)
			d->F = 1;
		return 0;
	}
	if (word_is(key, len, "dimensions"))
		return integer(p, "@dimensions", &s, e, &d->F);
	if (word_is(key, len, "equalLength"))
		return boolean(p, "@equalLength", &s, e, &p->equal);
	if (word_is(key, len, "seriesLength"))
		return integer(p, "@seriesLength", &s, e, &p->series_length);
	if (word_is(key, len, "targetLabel"))
		return fail_line(p, "@targetLabel (regression) is not supported: lln classifies");
	if (word_is(key, len, "classLabel")) {
		if (boolean(p, "@classLabel", &s, e, &b))
			return -1;
		p->labels_known = true;
		if (!b)
			return 0;
		const char *w;
		int64_t cap = 0;
		while ((w = word(&s, e, &len))) {
			if (!grow((void **)&d->classes, &cap, d->n_classes + 1, sizeof *d->classes))
				return fail_line(p, "out of memory");
			char *name = rt_malloc(len + 1);
			if (!name)
				return fail_line(p, "out of memory");
			memcpy(name, w, len);
			name[len] = 0;
			for (int32_t k = 0; k < d->n_classes; k++)
				if (!strcmp(d->classes[k], name)) {
					free(name);
					return fail_line(p, "class label '%.*s' is listed twice", (int)len, w);
				}
			d->classes[d->n_classes++] = name;
		}
		return d->n_classes ? 0 : fail_line(p, "@classLabel true lists no labels");
	}
	return fail_line(p, "unknown header '@%.*s'", (int)(len > 40 ? 40 : len), key);
}

/* One sequence: F channels of equal length, the label last with labels. */
static int sequence(parser *p, const char *s, const char *e)
{
	rt_seqdata *d = p->d;
	int64_t nch = 0, T = -1, nvals = 0;
	const char *label = NULL, *label_end = NULL;
	if (d->n_classes && !memchr(s, ':', (size_t)(e - s)))
		return fail_line(p, "no class label: the line must end with ':LABEL'");
	for (const char *c = s; c <= e;) {
		const char *ce = memchr(c, ':', (size_t)(e - c));
		if (!ce)
			ce = e;
		if (d->n_classes && ce == e) {   /* the last field is the label */
			label = c;
			label_end = ce;
			trim(&label, &label_end);
			break;
		}
		nch++;
		int64_t len = 0;
		for (const char *v = c; v <= ce;) {
			const char *ve = memchr(v, ',', (size_t)(ce - v));
			if (!ve)
				ve = ce;
			const char *a = v, *b = ve;
			trim(&a, &b);
			if (b - a == 1 && *a == '?')
				return fail_line(p, "channel %lld, value %lld is missing ('?'); lln needs complete sequences",
				                 (long long)nch, (long long)len + 1);
			char buf[64];
			char *end = NULL;
			double x = NAN;
			if (b > a && (size_t)(b - a) < sizeof buf) {
				memcpy(buf, a, (size_t)(b - a));
				buf[b - a] = 0;
				x = strtod(buf, &end);
			}
			if (!end || *end || !isfinite(x) || fabs(x) > 3.4e38)
				return fail_line(p, "channel %lld, value %lld: expected a finite number, got '%.*s'", (long long)nch,
				                 (long long)len + 1, (int)(b - a > 30 ? 30 : b - a), a);
			if (!grow((void **)&p->chan, &p->cap_chan, nvals + 1, sizeof *p->chan))
				return fail_line(p, "out of memory");
			p->chan[nvals++] = x;
			len++;
			v = ve + 1;
		}
		if (T >= 0 && len != T)
			return fail_line(p, "channel %lld has %lld values but channel 1 has %lld: the channels of a sequence "
			                 "must be equally long", (long long)nch, (long long)len, (long long)T);
		T = len;
		c = ce + 1;
	}
	if (d->F == 0)
		d->F = nch;
	if (nch != d->F)
		return fail_line(p, "%lld channels, expected %lld (@dimensions)", (long long)nch, (long long)d->F);
	if (p->series_length && T != p->series_length)
		return fail_line(p, "%lld values per channel, expected %lld (@seriesLength)", (long long)T,
		                 (long long)p->series_length);
	if (p->equal && d->n > 0 && T != d->start[1])
		return fail_line(p, "%lld values per channel, but the first sequence has %lld and @equalLength is true",
		                 (long long)T, (long long)d->start[1]);
	int32_t y = -1;
	for (int32_t k = 0; label && k < d->n_classes; k++)
		if ((size_t)(label_end - label) == strlen(d->classes[k]) && !memcmp(label, d->classes[k], (size_t)(label_end - label)))
			y = k;
	if (label && y < 0)
		return fail_line(p, "class label '%.*s' is not in the @classLabel list", (int)(label_end - label > 30 ? 30 : label_end - label),
		                 label);
	int64_t frames = d->start[d->n];
	if (!grow((void **)&d->start, &p->cap_seqs, d->n + 2, sizeof *d->start) ||
	    (d->n_classes && !grow((void **)&d->y, &p->cap_y, d->n + 1, sizeof *d->y)) ||
	    !grow((void **)&d->x, &p->cap_x, (frames + T) * d->F, sizeof *d->x) ||
	    !grow((void **)&d->xlo, &p->cap_lo, (frames + T) * d->F, sizeof *d->xlo))
		return fail_line(p, "out of memory");
	for (int64_t t = 0; t < T; t++)   /* channel-major in the file, time-major here */
		for (int64_t c = 0; c < d->F; c++) {
			double v = p->chan[c * T + t];
			float f = (float)v;
			d->x[(frames + t) * d->F + c] = f;
			d->xlo[(frames + t) * d->F + c] = (float)(v - (double)f);
		}
	if (d->n_classes)
		d->y[d->n] = y;
	d->n++;
	d->start[d->n] = frames + T;
	return 0;
}

int rt_ts_parse(const char *path, const char *text, size_t len, rt_seqdata *out, char *err)
{
	memset(out, 0, sizeof *out);
	parser p = { .path = path, .err = err, .d = out };
	out->start = rt_calloc(2, sizeof *out->start);
	if (!out->start)
		return rt_fail_file(err, path, "out of memory");
	p.cap_seqs = 2;
	bool data = false;
	int rc = 0;
	const char *s = text, *end = text + len;
	while (!rc && s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *e = nl ? nl : end;
		const char *a = s, *b = e;
		p.line++;
		s = nl ? nl + 1 : end;
		if (p.line == 1 && b - a >= 3 && !memcmp(a, "\xEF\xBB\xBF", 3))
			a += 3;
		trim(&a, &b);
		if (a == b || *a == '#')
			continue;
		if (memchr(a, 0, (size_t)(b - a))) {
			rc = fail_line(&p, "a NUL byte: this is not a text .ts file");
		} else if (!data && *a == '@') {
			size_t klen = 0;
			const char *k = a + 1, *w = word(&k, b, &klen);
			if (w && word_is(w, klen, "data")) {
				data = true;
				if (!p.labels_known)
					rc = fail_line(&p, "@data before @classLabel: say whether the sequences carry class labels");
			} else {
				rc = header(&p, a + 1, b);
			}
		} else if (!data) {
			rc = fail_line(&p, "expected a header line (@name ...) or @data");
		} else {
			rc = sequence(&p, a, b);
		}
	}
	if (!rc && !data)
		rc = rt_fail_file(err, path, "no @data line: not a .ts file");
	else if (!rc && out->n == 0)
		rc = rt_fail_file(err, path, "holds no sequences");
	free(p.chan);
	if (rc)
		rt_seqdata_free(out);
	return rc;
}

int rt_ts_read(const char *path, rt_seqdata *out, char *err)
{
	memset(out, 0, sizeof *out);
	FILE *f = fopen(path, "rb");
	if (!f)
		return rt_fail_file(err, path, "cannot read: %s", strerror(errno));
	char *text = NULL;
	size_t len = 0, cap = 0;
	int rc = 0;
	for (;;) {
		if (len + 65536 > cap) {
			size_t ncap = cap ? 2 * cap : 1 << 20;
			char *nb = rt_realloc(text, ncap);
			if (!nb) {
				rc = rt_fail_file(err, path, "out of memory reading the file");
				break;
			}
			text = nb;
			cap = ncap;
		}
		size_t got = fread(text + len, 1, cap - len, f);
		len += got;
		if (got == 0) {
			if (ferror(f))
				rc = rt_fail_file(err, path, "cannot read: %s", strerror(errno ? errno : EIO));
			break;
		}
	}
	fclose(f);
	if (!rc)
		rc = rt_ts_parse(path, text, len, out, err);
	free(text);
	return rc;
}

void rt_seqdata_free(rt_seqdata *d)
{
	if (!d)
		return;
	for (int32_t k = 0; k < d->n_classes; k++)
		free(d->classes[k]);
	free(d->classes);
	free(d->start);
	free(d->x);
	free(d->xlo);
	free(d->y);
	memset(d, 0, sizeof *d);
}
