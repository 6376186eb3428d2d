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

/* Opens a .npy file at path and writes its header (format 1.0, padded to
 * 64 bytes as numpy does) for dtype descr ("<f4", "<i8") and shape (a
 * Python tuple, "(3, 4)"); the caller writes the data and closes it. */
static inline FILE *npy_open(const char *path, const char *descr, const char *shape)
{
	char hdr[256];
	int k = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
	while ((10 + k + 1) % 64)
		hdr[k++] = ' ';
	hdr[k++] = '\n';
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	fwrite("\x93NUMPY\x01\x00", 1, 8, f);
	unsigned char len[2] = { (unsigned char)(k & 255), (unsigned char)(k >> 8) };
	fwrite(len, 1, 2, f);
	fwrite(hdr, 1, (size_t)k, f);
	return f;
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
