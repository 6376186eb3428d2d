/* errors.c: the runtime's error messages, formatted in one place.
 *
 * Functions that can fail on user input write "PATH: record N: what is
 * wrong" (or "PATH: ...", or just the message) into a caller buffer of
 * RT_ERRLEN bytes and return -1; commands print "PROG: message" on stderr
 * and return their exit status.  Every reader and writer goes through
 * these, so a message is never cut differently or left unterminated.
 */
#include <stdarg.h>
#include <stdio.h>

#include "rt.h"

int rt_vfail_at(char *err, const char *path, int64_t rec, const char *fmt, va_list ap)
{
	if (!err)
		return -1;
	int k = 0;
	if (path && rec > 0)
		k = snprintf(err, RT_ERRLEN, "%s: record %lld: ", path, (long long)rec);
	else if (path)
		k = snprintf(err, RT_ERRLEN, "%s: ", path);
	if (k < 0)
		k = 0;
	if (k < RT_ERRLEN)
		vsnprintf(err + k, RT_ERRLEN - (size_t)k, fmt, ap);
	return -1;
}

int rt_fail(char *err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	rt_vfail_at(err, NULL, 0, fmt, ap);
	va_end(ap);
	return -1;
}

int rt_fail_file(char *err, const char *path, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	rt_vfail_at(err, path, 0, fmt, ap);
	va_end(ap);
	return -1;
}

int rt_fail_record(char *err, const char *path, int64_t rec, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	rt_vfail_at(err, path, rec, fmt, ap);
	va_end(ap);
	return -1;
}

int rt_cmd_fail(const char *prog, int status, const char *fmt, ...)
{
	fprintf(stderr, "%s: ", prog);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return status;
}
