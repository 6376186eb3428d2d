/* outputs.c: the files lln writes, and the checks before it writes them.
 *
 * A command that runs for an hour must not fail at the end because its
 * output cannot be written, and must never destroy what the user had: the
 * previous version of an output, an input named as an output by mistake, or
 * a device node named by -o.  So every command checks all its files before
 * any work (rt_files_check), and every output is replaced atomically: a
 * temporary file in the target's directory, fsync, rename.
 *
 * - Only regular files are replaced.  A directory, device, FIFO or socket
 *   named as an output is refused ("not a regular file"); a symbolic link is
 *   kept and its target replaced.  Streams (the training log) may also be
 *   character devices, written through (/dev/null, /dev/stderr).
 * - Temporaries are named ".NAME.lln-tmp.PID.XXXXXX" next to the target.  A
 *   kill -9 during a save leaves one behind; the next save of the same
 *   output removes those whose process is gone.
 * - Files are compared by identity: device and inode for files that exist,
 *   the resolved directory and name for files still to be created, so
 *   "./w" and "w", or a link and its target, are one file.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rt.h"

#define TMP_TAG ".lln-tmp."
/* Keeps ".NAME.lln-tmp.PID.XXXXXX" within NAME_MAX (255). */
#define MAX_BASE 200

/* Splits path into a directory (malloc'ed; "." for a bare name) and the
 * name after the last slash. */
static char *dir_of(const char *path, const char **base)
{
	const char *slash = strrchr(path, '/');
	*base = slash ? slash + 1 : path;
	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

/* The file a write to path lands in: path itself, or the end of its chain
 * of symbolic links (which need not exist yet).  NULL with errno set. */
static char *resolve_links(const char *path)
{
	char *cur = strdup(path);
	for (int hops = 0; cur; hops++) {
		struct stat st;
		if (lstat(cur, &st) != 0 || !S_ISLNK(st.st_mode))
			return cur;
		if (hops == 40) {
			free(cur);
			errno = ELOOP;
			return NULL;
		}
		char link[PATH_MAX];
		ssize_t n = readlink(cur, link, sizeof link - 1);
		if (n < 0) {
			free(cur);
			return NULL;
		}
		link[n] = 0;
		char *next;
		if (link[0] == '/') {
			next = strdup(link);
		} else {
			const char *base;
			char *dir = dir_of(cur, &base);
			size_t len = (dir ? strlen(dir) : 0) + (size_t)n + 2;
			next = dir ? malloc(len) : NULL;
			if (next)
				snprintf(next, len, "%s/%s", dir, link);
			free(dir);
		}
		free(cur);
		cur = next;
	}
	errno = ENOMEM;
	return NULL;
}

static const char *kind_text(mode_t m)
{
	return S_ISDIR(m) ? "it is a directory" : S_ISCHR(m) ? "it is a character device"
	     : S_ISBLK(m) ? "it is a block device" : S_ISFIFO(m) ? "it is a FIFO"
	     : S_ISSOCK(m) ? "it is a socket" : "it is not a regular file";
}

/* Removes temporaries of earlier saves of this output whose process has
 * gone: ".BASE.lln-tmp.PID.*" with PID not running. */
static void remove_stale(const char *dir, const char *base)
{
	char prefix[MAX_BASE + 16];
	snprintf(prefix, sizeof prefix, ".%.*s" TMP_TAG, MAX_BASE, base);
	size_t pl = strlen(prefix);
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, prefix, pl) != 0)
			continue;
		char *end;
		long pid = strtol(e->d_name + pl, &end, 10);
		if (end == e->d_name + pl || *end != '.' || pid <= 0 || pid == (long)getpid())
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;   /* alive, or someone else's: leave it */
		size_t len = strlen(dir) + strlen(e->d_name) + 2;
		char *p = malloc(len);
		if (p) {
			snprintf(p, len, "%s/%s", dir, e->d_name);
			unlink(p);
			free(p);
		}
	}
	closedir(d);
}

void rt_atomic_abort(rt_atomic *a)
{
	if (a->fd >= 0)
		close(a->fd);
	if (a->tmp)
		unlink(a->tmp);
	free(a->tmp);
	free(a->target);
	memset(a, 0, sizeof *a);
	a->fd = -1;
}

int rt_atomic_open(const char *path, rt_atomic *a, char *err)
{
	memset(a, 0, sizeof *a);
	a->fd = -1;
	a->path = path;
	a->target = resolve_links(path);
	if (!a->target)
		return rt_fail_file(err, path, "cannot write: %s", strerror(errno));
	struct stat st;
	bool replacing = stat(a->target, &st) == 0;
	if (replacing && !S_ISREG(st.st_mode)) {
		int e = S_ISDIR(st.st_mode);
		rt_atomic_abort(a);
		return rt_fail_file(err, path, "cannot write: %s", e ? strerror(EISDIR) : "not a regular file");
	}
	/* The temporary must be in the target's directory: rename is atomic
	 * only within one file system. */
	const char *base;
	char *dir = dir_of(a->target, &base);
	size_t len = (dir ? strlen(dir) : 0) + MAX_BASE + 64;
	a->tmp = dir ? malloc(len) : NULL;
	if (!a->tmp) {
		free(dir);
		rt_atomic_abort(a);
		return rt_fail_file(err, path, "out of memory");
	}
	remove_stale(dir, base);
	/* Unique across threads (counter) and processes (pid). */
	static atomic_uint counter;
	unsigned salt = (unsigned)time(NULL) * 2654435761u;
	for (int attempt = 0; attempt < 100 && a->fd < 0; attempt++) {
		unsigned k = atomic_fetch_add(&counter, 1);
		snprintf(a->tmp, len, "%s/.%.*s" TMP_TAG "%ld.%06x", dir, MAX_BASE, base, (long)getpid(),
		         (salt + k * 0x9E3779B9u) & 0xffffff);
		/* Mode 0666 through open lets the umask decide, as for any new
		 * file; mkstemp would force 0600. */
		a->fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (a->fd < 0 && errno != EEXIST)
			break;
	}
	free(dir);
	if (a->fd < 0) {
		int e = errno;
		free(a->tmp);
		a->tmp = NULL;
		rt_atomic_abort(a);
		return rt_fail_file(err, path, "cannot write: %s", strerror(e));
	}
	/* Replacing a file keeps its permissions. */
	if (replacing)
		(void)fchmod(a->fd, st.st_mode & 07777);
	return 0;
}

int rt_atomic_commit(rt_atomic *a, char *err)
{
	const char *path = a->path;
	int e = 0;
	/* fsync before rename: otherwise a crash can leave the new name
	 * pointing at an empty file. */
	if (a->fd >= 0) {
		if (fsync(a->fd) != 0)
			e = errno;
		if (close(a->fd) != 0 && !e)
			e = errno;
		a->fd = -1;
	}
	if (!e && rename(a->tmp, a->target) != 0)
		e = errno;
	if (e) {
		rt_atomic_abort(a);
		return rt_fail_file(err, path, "cannot write: %s", strerror(e));
	}
	/* Make the rename itself durable; failure here cannot be undone and
	 * the data is already in place, so it is not reported. */
	const char *base;
	char *dir = dir_of(a->target, &base);
	if (dir) {
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			(void)fsync(dfd);
			close(dfd);
		}
		free(dir);
	}
	free(a->tmp);
	a->tmp = NULL;
	rt_atomic_abort(a);
	return 0;
}

int rt_write_fd(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int rt_write_atomic(const char *path, const void *data, size_t len, char *err)
{
	rt_atomic a;
	if (rt_atomic_open(path, &a, err))
		return -1;
	int e = rt_write_fd(a.fd, data, len);
	if (e) {
		rt_atomic_abort(&a);
		return rt_fail_file(err, path, "cannot write: %s", strerror(e));
	}
	return rt_atomic_commit(&a, err);
}

/* ------------------------------------------------------------------------
 * Checks before any work
 * ---------------------------------------------------------------------- */

typedef struct ident {
	bool exists;
	dev_t dev;
	ino_t ino;
	char *name;   /* resolved directory + name, for a file still to be made */
} ident;

static void ident_of(const char *path, ident *id)
{
	memset(id, 0, sizeof *id);
	struct stat st;
	if (stat(path, &st) == 0) {
		id->exists = true;
		id->dev = st.st_dev;
		id->ino = st.st_ino;
		return;
	}
	char *t = resolve_links(path);
	if (!t)
		return;
	const char *base;
	char *dir = dir_of(t, &base);
	char *real = dir ? realpath(dir, NULL) : NULL;
	if (real) {
		size_t len = strlen(real) + strlen(base) + 2;
		id->name = malloc(len);
		if (id->name)
			snprintf(id->name, len, "%s/%s", real, base);
	}
	free(real);
	free(dir);
	free(t);
}

static bool same(const ident *a, const ident *b)
{
	if (a->exists || b->exists)
		return a->exists && b->exists && a->dev == b->dev && a->ino == b->ino;
	return a->name && b->name && strcmp(a->name, b->name) == 0;
}

/* Whether an output can be written, before any work: "cannot write PATH:
 * reason". */
static int writable(const rt_file *f, char *err)
{
	char *t = resolve_links(f->path);
	if (!t)
		return rt_fail(err, "cannot write %s: %s", f->path, strerror(errno));
	int rc = 0;
	struct stat st;
	if (stat(t, &st) == 0) {
		bool ok = S_ISREG(st.st_mode) || (f->use == RT_FILE_STREAM && S_ISCHR(st.st_mode));
		if (!ok)
			rc = rt_fail(err, "cannot write %s: %s", f->path,
			             S_ISDIR(st.st_mode) ? strerror(EISDIR) : kind_text(st.st_mode));
		else if (f->use == RT_FILE_STREAM && access(t, W_OK) != 0)
			rc = rt_fail(err, "cannot write %s: %s", f->path, strerror(errno));
		if (rc || f->use == RT_FILE_STREAM || S_ISCHR(st.st_mode)) {
			free(t);
			return rc;
		}
	} else if (errno != ENOENT) {
		rc = rt_fail(err, "cannot write %s: %s", f->path, strerror(errno));
		free(t);
		return rc;
	}
	/* New files and atomic replacement both need the directory. */
	const char *base;
	char *dir = dir_of(t, &base);
	if (!dir)
		rc = rt_fail(err, "cannot write %s: %s", f->path, strerror(ENOMEM));
	else if (access(dir, W_OK | X_OK) != 0)
		rc = rt_fail(err, "cannot write %s: %s", f->path, strerror(errno));
	free(dir);
	free(t);
	return rc;
}

static const char *flag_text(const rt_file *f, char *buf, size_t cap)
{
	if (f->flag && f->flag[0])
		snprintf(buf, cap, "%s '%s'", f->flag, f->path);
	else
		snprintf(buf, cap, "'%s'", f->path);
	return buf;
}

int rt_files_check(const rt_file *files, int n, char *err)
{
	ident *id = calloc((size_t)(n > 0 ? n : 1), sizeof *id);
	if (!id)
		return rt_fail(err, "out of memory"), 1;
	for (int i = 0; i < n; i++)
		if (files[i].path && strcmp(files[i].path, "-") != 0)
			ident_of(files[i].path, &id[i]);
	int rc = 0;
	for (int i = 0; i < n && !rc; i++) {
		for (int j = i + 1; j < n && !rc; j++) {
			const rt_file *a = &files[i], *b = &files[j];
			if (!a->path || !b->path || (a->use == RT_FILE_IN && b->use == RT_FILE_IN))
				continue;
			if (a->share && a->share == b->share)
				continue;
			if (!same(&id[i], &id[j]))
				continue;
			/* name the output second: "... would overwrite ..." reads
			 * from it */
			if (a->use != RT_FILE_IN && b->use == RT_FILE_IN) {
				const rt_file *t = a;
				a = b;
				b = t;
			}
			char x[300], y[300];
			flag_text(a, x, sizeof x);
			flag_text(b, y, sizeof y);
			rt_fail(err, "%s and %s are the same file; %s", x, y,
			        a->use == RT_FILE_IN ? "writing the output would destroy the input"
			                             : "the outputs would overwrite each other");
			rc = 2;
		}
	}
	for (int i = 0; i < n && !rc; i++)
		if (files[i].path && files[i].use != RT_FILE_IN && writable(&files[i], err))
			rc = 1;
	for (int i = 0; i < n; i++)
		free(id[i].name);
	free(id);
	return rc;
}
