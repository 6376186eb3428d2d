/* fuzz.h: what every libFuzzer harness of lln shares.
 *
 * The readers under test take a path and pick the format by its suffix, so
 * each input is written to a file with the right suffix in a directory of
 * this process's own (on tmpfs when there is one, so the write costs
 * microseconds), removed again at exit.  Diagnostics go to /dev/null: the
 * harnesses look for crashes, sanitizer reports and broken promises, not for
 * messages (readers that print notes on stderr run with -close_fd_mask=2).  A broken promise (a documented property the result must have)
 * is reported with promise(), which aborts so that libFuzzer saves the input.
 */
#ifndef LLN_FUZZ_H
#define LLN_FUZZ_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sanitizer/common_interface_defs.h>

static char fuzz_dir[64];
static char fuzz_path[128];

static inline void fuzz_cleanup(void)
{
	if (fuzz_path[0])
		unlink(fuzz_path);
	if (fuzz_dir[0])
		rmdir(fuzz_dir);
}

/* The input as a file named "input" + suffix; the same path every time. */
static inline const char *fuzz_file(const uint8_t *data, size_t size, const char *suffix)
{
	if (!fuzz_dir[0]) {
		const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
		snprintf(fuzz_dir, sizeof fuzz_dir, "%s/lln-fuzz-XXXXXX", base);
		if (!mkdtemp(fuzz_dir)) {
			perror("lln-fuzz: mkdtemp");
			abort();
		}
		snprintf(fuzz_path, sizeof fuzz_path, "%s/input%s", fuzz_dir, suffix);
		atexit(fuzz_cleanup);
	}
	int fd = open(fuzz_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		perror("lln-fuzz: open");
		abort();
	}
	for (size_t off = 0; off < size;) {
		ssize_t k = write(fd, data + off, size - off);
		if (k <= 0) {
			perror("lln-fuzz: write");
			abort();
		}
		off += (size_t)k;
	}
	close(fd);
	return fuzz_path;
}

/* Where diagnostics go. */
static inline FILE *fuzz_null(void)
{
	static FILE *null;
	if (!null && !(null = fopen("/dev/null", "w"))) {
		perror("lln-fuzz: /dev/null");
		abort();
	}
	return null;
}

/* Through the sanitizers' report channel, which -close_fd_mask=2 (the
 * harnesses whose readers print notes run with it) leaves open. */
static inline void broken_promise(const char *what, const char *file, int line)
{
	char msg[256];
	snprintf(msg, sizeof msg, "lln-fuzz: broken promise: %s (%s:%d)", what, file, line);
	__sanitizer_report_error_summary(msg);
	abort();
}

#define promise(cond, what)                                          \
	do {                                                         \
		if (!(cond))                                         \
			broken_promise(what, __FILE__, __LINE__);    \
	} while (0)

/* Every reader's message names the file first: "PATH: ...". */
static inline void check_failure(const char *path, const char *err)
{
	promise(strncmp(err, path, strlen(path)) == 0 && err[strlen(path)] == ':',
	        "a reader's message starts with the file's name");
}

#endif
