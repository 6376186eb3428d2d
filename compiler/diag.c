/* diag.c: source text and the one way user errors are reported.
 *
 * Every stage reports a mistake in the program through diag_error, so all
 * messages share one format that editors understand (path:line:col) and show
 * the offending line with a caret under the column.  Reporting does not stop
 * a stage: src->errors counts the messages and the stage decides at its end
 * whether the result is usable.  Compiler bugs are a different kind of
 * failure and exit through internal_error with their own status.
 *
 * Output stays bounded whatever the input: the first DIAG_SHOWN errors are
 * printed and the rest counted (diag_finish prints the count), a long line
 * is shown as a window around the caret, and a file that is not text (NUL
 * bytes, invalid UTF-8) is refused before parsing, with the format named
 * when its first bytes tell it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "llnc.h"

#define DIAG_SHOWN 20   /* errors printed; the rest are counted */
#define DIAG_WIDTH 100  /* columns of a source line shown around the caret */

source *source_from_string(arena *a, const char *name, const char *text)
{
	source *s = arena_alloc(a, sizeof *s);
	s->path = arena_strdup(a, name);
	s->len = strlen(text);
	s->text = arena_strndup(a, text, s->len);
	s->out = stderr;
	return s;
}

/* Refuses a file that is not text (NUL or other control bytes, invalid
 * UTF-8) or starts like a known binary format, naming the format and the
 * command that takes it; true after printing why. */
static bool binary(const char *path, const unsigned char *b, size_t len)
{
	/* control bytes other than white space never occur in a source */
	size_t at = 0;
	while (at < len) {
		unsigned c = b[at];
		bool space = c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
		size_t k = (c < 0x20 && !space) || c == 0x7f ? 0 : rt_utf8_len(b + at, len - at);
		if (!k)
			break;
		at += k;
	}
	rt_format f = rt_sniff(b, len, len);
	if (at == len && f == RT_FMT_UNKNOWN)
		return false;
	const char *hint;
	switch (f) {
	case RT_FMT_ZIP:
		hint = "; lln takes weights as safetensors (safetensors.torch.save_file(model.state_dict(), "
		       "'w.safetensors')) and the network as a .lln source";
		break;
	case RT_FMT_SAFETENSORS:
		hint = "; give it as --weights to llnc build, eval or plot, or --init to llnc train";
		break;
	case RT_FMT_NPY: case RT_FMT_IDX:
		hint = "; give data as --data to llnc train or eval, or as INPUT to a certifier";
		break;
	case RT_FMT_ONNX:
		hint = "; convert it with 'llnc import FILE.onnx -o NET.lln'";
		break;
	case RT_FMT_ELF:
		hint = "; run a built certifier or trainer directly";
		break;
	case RT_FMT_GZIP:
		hint = "; decompress it first";
		break;
	default:
		hint = "";
	}
	if (f != RT_FMT_UNKNOWN)
		fprintf(stderr, "%s: error: not a .lln source: it is %s%s\n", path, rt_format_text(f), hint);
	else
		fprintf(stderr, "%s: error: not a .lln source: binary data at byte %zu\n", path, at);
	return true;
}

source *source_load(arena *a, const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "%s: error: cannot read: %s\n", path, strerror(errno));
		return NULL;
	}
	/* Read in growing steps rather than trusting fseek/ftell, so pipes and
	 * /dev/stdin work too. */
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	if (!buf)
		internal_error("out of memory");
	for (;;) {
		if (len == cap) {
			cap *= 2;
			char *nb = realloc(buf, cap);
			if (!nb)
				internal_error("out of memory");
			buf = nb;
		}
		size_t got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	int err = ferror(f) ? errno : 0;
	fclose(f);
	if (err) {
		fprintf(stderr, "%s: error: cannot read: %s\n", path, strerror(err));
		free(buf);
		return NULL;
	}
	if (binary(path, (const unsigned char *)buf, len)) {
		free(buf);
		return NULL;
	}
	source *s = arena_alloc(a, sizeof *s);
	s->path = arena_strdup(a, path);
	s->text = arena_strndup(a, buf, len);
	s->len = len;
	s->out = stderr;
	free(buf);
	return s;
}

/* The text of line `line` (1-based) and its length without the newline; an
 * empty line past the end of the file, where errors at end of input point. */
static const char *line_text(const source *src, int line, size_t *n)
{
	const char *p = src->text, *end = src->text + src->len;
	for (int l = 1; l < line && p < end; p++)
		if (*p == '\n')
			l++;
	const char *e = p;
	while (e < end && *e != '\n')
		e++;
	if (e > p && e[-1] == '\r')
		e--;
	*n = (size_t)(e - p);
	return p;
}

void diag_verror(source *src, loc at, const char *fmt, va_list ap)
{
	FILE *out = src->out ? src->out : stderr;
	if (++src->errors > DIAG_SHOWN)
		return;
	if (at.line < 1) {
		/* No position: a whole-file problem. */
		fprintf(out, "%s: error: ", src->path);
		vfprintf(out, fmt, ap);
		fputc('\n', out);
		return;
	}
	fprintf(out, "%s:%d:%d: error: ", src->path, at.line, at.col);
	vfprintf(out, fmt, ap);
	fputc('\n', out);
	size_t n;
	const char *text = line_text(src, at.line, &n);
	/* a long line: DIAG_WIDTH columns around the caret, "..." for the rest */
	size_t col = at.col > 0 ? (size_t)at.col - 1 : 0, start = 0, shown = n;
	if (n > DIAG_WIDTH) {
		start = col > DIAG_WIDTH / 2 ? col - DIAG_WIDTH / 2 : 0;
		if (start > n - DIAG_WIDTH)
			start = n - DIAG_WIDTH;
		shown = DIAG_WIDTH;
	}
	int pad = 0;
	if (start > 0)
		pad = fputs("...", out) >= 0 ? 3 : 0;
	fwrite(text + start, 1, shown, out);
	if (start + shown < n)
		fputs("...", out);
	fputc('\n', out);
	/* Columns count bytes, so plain spaces line the caret up exactly for
	 * ASCII lines; a tab counts 1, as in the column number. */
	for (size_t i = 0; i < col - start + (size_t)pad && i < DIAG_WIDTH + 3; i++)
		fputc(' ', out);
	fputs("^\n", out);
}

void diag_finish(source *src)
{
	if (src && src->errors > DIAG_SHOWN) {
		int more = src->errors - DIAG_SHOWN;
		fprintf(src->out ? src->out : stderr, "%s: ... and %d more error%s\n", src->path, more,
		        more == 1 ? "" : "s");
	}
}

void diag_error(source *src, loc at, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_verror(src, at, fmt, ap);
	va_end(ap);
}

_Noreturn void internal_error(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fputs("llnc: internal error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(LLNC_EXIT_INTERNAL);
}
