/* diag.c: source text and the one way user errors are reported.
 *
 * Every stage reports a mistake in the program through diag_error, so all
 * messages share one format that editors understand (path:line:col) and show
 * the offending line with a caret under the column.  Reporting does not stop
 * a stage: src->errors counts the messages and the stage decides at its end
 * whether the result is usable.  Compiler bugs are a different kind of
 * failure and exit through internal_error with their own status.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "llnc.h"

source *source_from_string(arena *a, const char *name, const char *text)
{
	source *s = arena_alloc(a, sizeof *s);
	s->path = arena_strdup(a, name);
	s->len = strlen(text);
	s->text = arena_strndup(a, text, s->len);
	s->out = stderr;
	return s;
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
	src->errors++;
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
	fwrite(text, 1, n, out);
	fputc('\n', out);
	/* Columns count bytes, so plain spaces line the caret up exactly for
	 * ASCII lines; a tab counts 1, as in the column number. */
	for (int i = 1; i < at.col; i++)
		fputc(' ', out);
	fputs("^\n", out);
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
