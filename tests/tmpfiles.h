/* tmpfiles.h: the temporary directory of a test program and the small
 * helpers for files in it, shared by the tests that write files.  The test
 * fills tmpdir (mkdtemp) in its setup.  Include after <cmocka.h> and "rt.h".
 */
#ifndef LLN_TEST_TMPFILES_H
#define LLN_TEST_TMPFILES_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static char tmpdir[256];

/* Paths in the temp dir; a ring of buffers, large enough for every path a
 * test holds at once. */
static inline const char *P_(const char *name)
{
	static char ring[64][512];
	static int k;
	char *b = ring[k++ % 64];
	snprintf(b, 512, "%s/%s", tmpdir, name);
	return b;
}

/* A formatted message, in a ring of buffers. */
static inline const char *msg(const char *fmt, ...)
{
	static char ring[4][RT_ERRLEN];
	static int k;
	char *b = ring[k++ % 4];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b, RT_ERRLEN, fmt, ap);
	va_end(ap);
	return b;
}

/* Writes a file in the temp dir; returns its path. */
static inline const char *put(const char *name, const void *data, size_t len)
{
	const char *p = P_(name);
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	return p;
}

static inline const char *puts_(const char *name, const char *text)
{
	return put(name, text, strlen(text));
}

/* Runs a shell command line with stdout and stderr in tmpdir's "out" and
 * "err"; returns the exit status. */
static inline int sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	snprintf(cmd + k, sizeof cmd - (size_t)k, " >%s/out 2>%s/err", tmpdir, tmpdir);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

#endif
