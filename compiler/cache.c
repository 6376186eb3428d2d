/* cache.c: the kernel cache, compiled kernels kept across runs.
 *
 * Optimizing a model's kernels and emitting their machine code takes
 * seconds (docs/performance.md); building the unoptimized module takes
 * milliseconds, and so does reading an object back.  cg_cache_kernels
 * builds the module (cg_build) and returns the kernels' object: from an
 * entry of the user's cache directory ($XDG_CACHE_HOME/lln, else
 * ~/.cache/lln) when one exists for the same key, else by optimizing and
 * emitting the module, storing the object there.  `llnc train`, `eval`,
 * `certify`, `plot` and liblln JIT-link the object, `llnc build` links it
 * into the executable.
 *
 * The key is the text of what decides the machine code: the unoptimized
 * module as LLVM prints it (so every property of the model and every
 * option that reaches the code is in it, whatever the IR holds), the
 * optimization level, the target (triple, CPU, features), the versions of
 * llnc and LLVM, the runtime ABI, and the build id of the binary holding
 * the code generator, which changes with any change of llnc's code (its
 * pass pipeline included).  An entry is named by the 64-bit hash of its key
 * and holds the key itself, so a hash collision is a miss, never the wrong
 * code.  A header with the sizes and a checksum makes a truncated or
 * damaged entry a miss too, which is then rebuilt; entries are written
 * through a temporary file and a rename, so concurrent runs see whole
 * entries or none.  LLN_NO_CACHE=1 (or llnc's --no-cache) turns the cache
 * off; LLN_CACHE_VERBOSE=1 reports hits, misses and rebuilds on stderr.
 * The directory is kept under CACHE_LIMIT bytes, dropping the entries used
 * longest ago.
 */
#define _GNU_SOURCE   /* dl_iterate_phdr */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <llvm-c/Core.h>

#include "llnc.h"

#define MAGIC "LLNKERN1"
#define SUFFIX ".kernels"
#define CACHE_LIMIT ((int64_t)512 << 20)

typedef struct header {
	char magic[8];
	uint64_t key_len, obj_len;
	uint64_t sum;   /* rt_fnv1a of the key, then of the object */
} header;

static bool verbose(void)
{
	const char *v = getenv("LLN_CACHE_VERBOSE");
	return v && *v && strcmp(v, "0");
}

static void note(const char *what, const char *path)
{
	if (verbose())
		fprintf(stderr, "lln kernel cache: %s %s\n", what, path);
}

/* ---- the key ---- */

typedef struct build_id { const void *self; char hex[2 * 64 + 1]; } build_id;

/* The GNU build id of the loaded object (llnc or liblln) that contains
 * this code, from its PT_NOTE segments. */
static int find_build_id(struct dl_phdr_info *info, size_t size, void *ctx)
{
	build_id *b = ctx;
	bool mine = false;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
		mine |= ph->p_type == PT_LOAD && (uintptr_t)b->self >= lo && (uintptr_t)b->self < lo + ph->p_memsz;
	}
	if (!mine)
		return 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_NOTE)
			continue;
		const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr), *end = p + ph->p_memsz;
		while (p + sizeof(ElfW(Nhdr)) <= end) {
			const ElfW(Nhdr) *n = (const void *)p;
			const char *name = p + sizeof *n;
			const unsigned char *desc = (const void *)(name + ((n->n_namesz + 3) & ~3u));
			if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && !memcmp(name, "GNU", 4) && n->n_descsz <= 64) {
				for (unsigned k = 0; k < n->n_descsz; k++)
					snprintf(b->hex + 2 * k, 3, "%02x", desc[k]);
				return 1;
			}
			p = (const char *)desc + ((n->n_descsz + 3) & ~3u);
		}
	}
	return 1;
}

/* The key as text (malloc'd, *len bytes): u's module before optimization
 * and what turns it into machine code; NULL if this binary has no build
 * id, and then nothing is cached. */
static char *key_text(cg_unit *u, int opt_level, size_t *len)
{
	build_id b = { .self = (const void *)key_text };
	dl_iterate_phdr(find_build_id, &b);
	if (!b.hex[0])
		return NULL;
	char *text = NULL;
	FILE *f = open_memstream(&text, len);
	if (!f)
		return NULL;
	unsigned major, minor, patch;
	LLVMGetVersion(&major, &minor, &patch);
	char *triple = LLVMGetTargetMachineTriple(u->tm), *cpu = LLVMGetTargetMachineCPU(u->tm);
	char *features = LLVMGetTargetMachineFeatureString(u->tm), *module = LLVMPrintModuleToString(u->mod);
	fprintf(f, "lln kernels\nllnc %s build %s\nllvm %u.%u.%u\nabi %d\ntarget %s cpu %s features %s\nopt %d\n%s",
	        LLN_VERSION, b.hex, major, minor, patch, RT_ABI_VERSION, triple, cpu, features, opt_level, module);
	LLVMDisposeMessage(triple);
	LLVMDisposeMessage(cpu);
	LLVMDisposeMessage(features);
	LLVMDisposeMessage(module);
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

/* ---- the directory and its entries ---- */

/* $XDG_CACHE_HOME/lln (an absolute XDG_CACHE_HOME only, as the XDG spec
 * says), else $HOME/.cache/lln, created if missing; NULL when the cache is
 * off or there is no such directory of the user's. */
static char *cache_dir(void)
{
	const char *off = getenv("LLN_NO_CACHE");
	if (off && *off && strcmp(off, "0"))
		return NULL;
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	char *dir = NULL;
	if (xdg && xdg[0] == '/') {
		if (asprintf(&dir, "%s/lln", xdg) < 0)
			return NULL;
	} else if (home && home[0] == '/') {
		if (asprintf(&dir, "%s/.cache/lln", home) < 0)
			return NULL;
	} else {
		return NULL;
	}
	/* each missing component, the last one private to the user */
	for (char *p = dir + 1; ; p++) {
		if (*p != '/' && *p)
			continue;
		char c = *p;
		*p = 0;
		int rc = mkdir(dir, c ? 0777 : 0700);
		*p = c;
		if (rc != 0 && errno != EEXIST) {
			note("cannot create the directory, not caching:", dir);
			free(dir);
			return NULL;
		}
		if (!c)
			break;
	}
	/* the entries are code this process will run: only from a directory
	 * of the user's that nobody else can write to */
	struct stat st;
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022)) {
		note("not the user's own directory, not caching:", dir);
		free(dir);
		return NULL;
	}
	return dir;
}

static uint64_t checksum(const char *key, size_t key_len, const void *obj, size_t obj_len)
{
	return rt_fnv1a(rt_fnv1a(RT_FNV_BASIS, key, key_len), obj, obj_len);
}

/* The entry's object if it is whole and has this key, else NULL (and
 * *bad when a file was there but not a valid entry for the key). */
static LLVMMemoryBufferRef load(const char *path, const char *key, size_t key_len, bool *bad)
{
	*bad = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	header h;
	char *buf = NULL;
	LLVMMemoryBufferRef obj = NULL;
	*bad = true;
	if (fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof h || pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h ||
	    memcmp(h.magic, MAGIC, 8) != 0 || h.key_len != key_len || h.obj_len == 0 ||
	    h.obj_len != (uint64_t)st.st_size - sizeof h - key_len || !(buf = malloc(st.st_size - sizeof h)))
		goto done;
	size_t n = (size_t)st.st_size - sizeof h;
	if (pread(fd, buf, n, sizeof h) != (ssize_t)n || memcmp(buf, key, key_len) != 0 ||
	    checksum(buf, key_len, buf + key_len, h.obj_len) != h.sum)
		goto done;
	obj = LLVMCreateMemoryBufferWithMemoryRangeCopy(buf + key_len, h.obj_len, "lln kernels");
	*bad = false;
	futimens(fd, NULL);   /* used now: the last to be dropped */
done:
	free(buf);
	close(fd);
	return obj;
}

static void store(const char *path, const char *key, size_t key_len, LLVMMemoryBufferRef obj)
{
	const char *bytes = LLVMGetBufferStart(obj);
	size_t len = LLVMGetBufferSize(obj);
	header h = { .key_len = key_len, .obj_len = len, .sum = checksum(key, key_len, bytes, len) };
	memcpy(h.magic, MAGIC, 8);
	char err[RT_ERRLEN];
	rt_atomic a;
	if (rt_atomic_open(path, &a, err) != 0) {
		note("cannot store", path);
		return;
	}
	if (rt_write_fd(a.fd, &h, sizeof h) || rt_write_fd(a.fd, key, key_len) || rt_write_fd(a.fd, bytes, len)) {
		rt_atomic_abort(&a);
		note("cannot store", path);
	} else if (rt_atomic_commit(&a, err) != 0) {
		note("cannot store", path);
	} else {
		note("stored", path);
	}
}

typedef struct entry { char *path; int64_t size; struct timespec used; } entry;

static int older(const void *x, const void *y)
{
	const entry *a = x, *b = y;
	if (a->used.tv_sec != b->used.tv_sec)
		return a->used.tv_sec < b->used.tv_sec ? -1 : 1;
	return (a->used.tv_nsec > b->used.tv_nsec) - (a->used.tv_nsec < b->used.tv_nsec);
}

/* Entries used longest ago dropped until the directory holds at most
 * CACHE_LIMIT bytes of them. */
static void trim(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	entry *e = NULL;
	size_t n = 0, cap = 0;
	int64_t total = 0;
	for (struct dirent *de; (de = readdir(d));) {
		size_t l = strlen(de->d_name);
		struct stat st;
		char *p = NULL;
		if (l < sizeof SUFFIX || strcmp(de->d_name + l - (sizeof SUFFIX - 1), SUFFIX) ||
		    asprintf(&p, "%s/%s", dir, de->d_name) < 0)
			continue;
		if (n == cap) {
			entry *more = realloc(e, (cap = 2 * cap + 16) * sizeof *e);
			if (!more) {
				free(p);
				break;
			}
			e = more;
		}
		if (stat(p, &st) != 0) {
			free(p);
			continue;
		}
		e[n++] = (entry){ p, st.st_size, st.st_mtim };
		total += st.st_size;
	}
	closedir(d);
	if (total > CACHE_LIMIT)
		qsort(e, n, sizeof *e, older);
	for (size_t i = 0; i < n; i++) {
		if (total > CACHE_LIMIT && unlink(e[i].path) == 0)
			total -= e[i].size;
		free(e[i].path);
	}
	free(e);
}

/* ---- the entry point ---- */

LLVMMemoryBufferRef cg_cache_kernels(const ir_module *m, const cg_options *o, char *err)
{
	cg_unit *u = cg_build(m, o, err);
	if (!u)
		return NULL;
	char *dir = cache_dir(), *key = NULL, *path = NULL;
	size_t key_len = 0;
	if (dir && (key = key_text(u, o->opt_level, &key_len)) &&
	    asprintf(&path, "%s/%016llx" SUFFIX, dir, (unsigned long long)rt_fnv1a(RT_FNV_BASIS, key, key_len)) < 0)
		path = NULL;
	LLVMMemoryBufferRef obj = NULL;
	if (path) {
		bool bad;
		obj = load(path, key, key_len, &bad);
		note(obj ? "hit" : bad ? "damaged or another key, rebuilding" : "miss", path);
	}
	if (!obj) {
		cg_optimize(u, o->opt_level);
		if ((obj = cg_emit_object(u, err)) && path) {
			store(path, key, key_len, obj);
			trim(dir);
		}
	}
	cg_unit_free(u);
	free(path);
	free(key);
	free(dir);
	return obj;
}
