/* safetensors.c: model weights in the safetensors format.
 *
 * safetensors is what PyTorch users exchange weights in, so lln reads and
 * writes it with PyTorch's state_dict names and layouts: a model trained by
 * lln loads into the equivalent torch.nn.Module and the other way round.
 * The format is an 8-byte little-endian header length, a JSON header naming
 * each tensor's dtype, shape and byte range, and the raw data.
 *
 * Loading is strict because a wrong weight file does not fail loudly later:
 * it silently certifies a different network.  Every tensor of the model must
 * be present with the exact shape (F32, or F64/F16/BF16 converted with a
 * note on stderr; names mapped by rt_names for state_dicts saved under other
 * module names), every byte range must lie
 * inside the file without overlapping another, every value must be finite,
 * and a tensor the model does not know is an error too (it usually means the
 * file belongs to another architecture).  Writing goes through
 * rt_write_atomic so an interrupted save never destroys the previous file.
 *
 * Only little-endian hosts are supported: tensors are copied as raw bytes.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "rt.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c copies float32 data as raw bytes and needs a little-endian host"
#endif

/* The safetensors reference implementation refuses larger headers; a
 * length beyond it means the file is something else. */
#define MAX_HEADER (100u << 20)

/* ------------------------------------------------------------------------
 * Writing
 * ---------------------------------------------------------------------- */

/* jansson allocates through the runtime's wrapper, so the allocation
 * failure tests reach its allocations too (alloc.c). */
static void use_wrapper(void)
{
	json_set_alloc_funcs(rt_malloc, free);
}

/* One tensor's header entry; NULL when out of memory (every step is
 * checked: a silently missing field would be a corrupt file). */
static json_t *tensor_json(const rt_tensor *T, int64_t begin)
{
	json_t *shape = json_array(), *offs = json_array(), *o = json_object();
	bool ok = shape && offs && o;
	for (int i = 0; ok && i < T->rank; i++)
		ok = json_array_append_new(shape, json_integer(T->shape[i])) == 0;
	ok = ok && json_array_append_new(offs, json_integer(begin)) == 0 &&
	     json_array_append_new(offs, json_integer(begin + T->count * 4)) == 0 &&
	     json_object_set_new(o, "dtype", json_string("F32")) == 0 &&
	     json_object_set(o, "shape", shape) == 0 && json_object_set(o, "data_offsets", offs) == 0;
	json_decref(shape);
	json_decref(offs);
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static int check_table(const char *path, json_t *root, const rt_tensor *t, int n, char *err)
{
	for (int i = 0; i < n; i++) {
		int64_t c = 1;
		for (int d = 0; d < t[i].rank; d++)
			c *= t[i].shape[d];
		if (!t[i].name || t[i].rank < 0 || t[i].rank > 4 || c != t[i].count)
			return rt_fail_file(err, path, "internal error: tensor table entry %d is inconsistent", i);
		if (strcmp(t[i].name, "__metadata__") == 0 || json_object_get(root, t[i].name))
			return rt_fail_file(err, path, "tensor name '%s' is used twice", t[i].name);
		/* Placeholder so that a later duplicate is seen; replaced below. */
		if (json_object_set_new(root, t[i].name, json_null()) != 0)
			return rt_fail_file(err, path, "out of memory");
	}
	return 0;
}

int rt_params_save(const rt_tensor *t, int n_tensors, const float *P,
                   const rt_tensor *extra, int n_extra, const float *E,
                   const char *const *metadata, const char *path, char *err)
{
	if (!extra)
		n_extra = 0;
	use_wrapper();
	json_t *root = json_object();
	if (!root)
		return rt_fail_file(err, path, "out of memory");
	if (metadata && metadata[0]) {
		json_t *md = json_object();
		if (json_object_set_new(root, "__metadata__", md) != 0) {
			json_decref(root);
			return rt_fail_file(err, path, "out of memory");
		}
		for (int i = 0; metadata[i] && metadata[i + 1]; i += 2) {
			const char *v = metadata[i + 1];
			const char *k = metadata[i];
			if (rt_utf8_valid(k, strlen(k)) != strlen(k) || rt_utf8_valid(v, strlen(v)) != strlen(v)) {
				json_decref(root);
				return rt_fail_file(err, path, "metadata '%s' is not valid UTF-8", k);
			}
			if (json_object_set_new(md, k, json_string(v)) != 0) {
				json_decref(root);
				return rt_fail_file(err, path, "out of memory");
			}
		}
	}
	if (check_table(path, root, t, n_tensors, err) || check_table(path, root, extra, n_extra, err)) {
		json_decref(root);
		return -1;
	}
	int64_t pos = 0;
	for (int k = 0; k < n_tensors + n_extra; k++) {
		const rt_tensor *T = k < n_tensors ? &t[k] : &extra[k - n_tensors];
		json_t *e = tensor_json(T, pos);
		if (!e || json_object_set_new(root, T->name, e) != 0) {
			json_decref(root);
			return rt_fail_file(err, path, "out of memory");
		}
		pos += T->count * 4;
	}
	/* Insertion order is kept, so the header lists tensors in table order,
	 * which makes files of one model byte-identical across runs. */
	char *js = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	/* jansson's dump can drop a byte when an allocation inside it fails
	 * and still return the text (the allocation-failure tests found a
	 * header missing a quote), so the header is read back and compared
	 * before a byte of it is written. */
	json_t *back = js ? json_loads(js, 0, NULL) : NULL;
	bool same = back && json_equal(root, back);
	json_decref(back);
	json_decref(root);
	if (!same) {
		free(js);
		return rt_fail_file(err, path, "out of memory");
	}
	size_t jl = strlen(js);
	/* Padding to 8 bytes keeps the data section aligned for readers that
	 * map the file and cast; the format allows trailing spaces. */
	size_t hl = (jl + 7) / 8 * 8;
	size_t total = 8 + hl + (size_t)pos;
	unsigned char *buf = rt_malloc(total);
	if (!buf) {
		free(js);
		return rt_fail_file(err, path, "out of memory");
	}
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(buf + 8, js, jl);
	memset(buf + 8 + jl, ' ', hl - jl);
	free(js);
	unsigned char *d = buf + 8 + hl;
	for (int i = 0; i < n_tensors; i++) {
		memcpy(d, P + t[i].offset, (size_t)t[i].count * 4);
		d += t[i].count * 4;
	}
	for (int i = 0; i < n_extra; i++) {
		memcpy(d, E + extra[i].offset, (size_t)extra[i].count * 4);
		d += extra[i].count * 4;
	}
	int rc = rt_write_atomic(path, buf, total, err);
	free(buf);
	return rc;
}

/* ------------------------------------------------------------------------
 * Reading
 * ---------------------------------------------------------------------- */

typedef struct entry {
	const char *name;     /* owned by the JSON tree */
	char *as;             /* the model's name for it after rt_names, or NULL: name */
	const char *dtype;
	int rank;
	int64_t shape[8];
	int64_t begin, end;   /* relative to the data section */
	bool used;
} entry;

typedef struct stfile {
	FILE *f;
	uint64_t size;        /* whole file */
	uint64_t data_start;  /* 8 + header length */
	json_t *root;
	entry *e;
	int n;
} stfile;

static void st_close(stfile *s)
{
	if (s->f)
		fclose(s->f);
	json_decref(s->root);
	for (int i = 0; i < s->n; i++)
		free(s->e[i].as);
	free(s->e);
	memset(s, 0, sizeof *s);
}

static int dtype_size(const char *d)
{
	static const struct { const char *name; int size; } tab[] = {
		{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4},
		{"I16", 2}, {"I8", 1}, {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1},
		{"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
	};
	for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
		if (strcmp(d, tab[i].name) == 0)
			return tab[i].size;
	return 0;
}

static int cmp_begin(const void *a, const void *b)
{
	const entry *x = a, *y = b;
	return (x->begin > y->begin) - (x->begin < y->begin);
}

static int parse_entry(const char *path, const char *name, json_t *v, uint64_t data_len, entry *e,
                       char *err)
{
	memset(e, 0, sizeof *e);
	e->name = name;
	json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
	       *of = json_object_get(v, "data_offsets");
	if (!json_is_object(v) || !json_is_string(dt) || !json_is_array(sh) || !json_is_array(of))
		return rt_fail_file(err, path, "bad safetensors header: tensor '%s' needs dtype, shape and data_offsets",
		            name);
	e->dtype = json_string_value(dt);
	int size = dtype_size(e->dtype);
	if (!size)
		return rt_fail_file(err, path, "tensor '%s' has unknown dtype %s", name, e->dtype);
	if (json_array_size(sh) > 8)
		return rt_fail_file(err, path, "tensor '%s' has rank %zu, at most 8 is supported", name,
		            json_array_size(sh));
	e->rank = (int)json_array_size(sh);
	uint64_t count = 1;
	bool overflow = false;
	for (int i = 0; i < e->rank; i++) {
		json_t *d = json_array_get(sh, (size_t)i);
		if (!json_is_integer(d) || json_integer_value(d) < 0)
			return rt_fail_file(err, path, "bad safetensors header: tensor '%s' has an invalid shape", name);
		e->shape[i] = json_integer_value(d);
		if (e->shape[i] && count > UINT64_MAX / 16 / (uint64_t)e->shape[i])
			overflow = true;
		else
			count *= (uint64_t)e->shape[i];
	}
	json_t *b = json_array_get(of, 0), *en = json_array_get(of, 1);
	if (json_array_size(of) != 2 || !json_is_integer(b) || !json_is_integer(en))
		return rt_fail_file(err, path, "bad safetensors header: tensor '%s' has invalid data_offsets", name);
	e->begin = json_integer_value(b);
	e->end = json_integer_value(en);
	if (e->begin < 0 || e->end < e->begin || (uint64_t)e->end > data_len)
		return rt_fail_file(err, path, "tensor '%s' has data_offsets [%lld, %lld] outside the %llu bytes of data",
		            name, (long long)e->begin, (long long)e->end, (unsigned long long)data_len);
	if (overflow || (uint64_t)(e->end - e->begin) != count * (uint64_t)size)
		return rt_fail_file(err, path, "tensor '%s' has %lld bytes of data, its shape and dtype need %llu",
		            name, (long long)(e->end - e->begin),
		            overflow ? 0ULL : (unsigned long long)(count * (uint64_t)size));
	return 0;
}

/* Reads and validates the header; the data stays in the file until asked. */
static int st_open(const char *path, stfile *s, char *err)
{
	memset(s, 0, sizeof *s);
	use_wrapper();
	s->f = fopen(path, "rb");
	if (!s->f)
		return rt_fail_file(err, path, "cannot read: %s", strerror(errno));
	struct stat st = {0};
	if (fstat(fileno(s->f), &st) != 0 || !S_ISREG(st.st_mode)) {
		/* Tensors are read by seeking, which pipes cannot do. */
		bool dir = S_ISDIR(st.st_mode);
		st_close(s);
		return rt_fail_file(err, path, "cannot read: %s", dir ? strerror(EISDIR) : "not a regular file");
	}
	s->size = (uint64_t)st.st_size;
	unsigned char lb[8];
	if (s->size < 8 || fread(lb, 1, 8, s->f) != 8) {
		rt_fail_file(err, path, "not a safetensors file (only %llu bytes)", (unsigned long long)s->size);
		st_close(s);
		return -1;
	}
	uint64_t hl = 0;
	for (int i = 0; i < 8; i++)
		hl |= (uint64_t)lb[i] << (8 * i);
	if (hl > s->size - 8 || hl > MAX_HEADER) {
		/* name what it is when its first bytes say (a torch.save zip
		 * is the usual mistake) rather than quote an absurd length */
		rt_format f = rt_sniff(lb, 8, s->size);
		if (f == RT_FMT_ZIP)
			rt_fail_file(err, path, "is %s, not safetensors; save the weights with "
			     "safetensors.torch.save_file(model.state_dict(), 'w.safetensors')", rt_format_text(f));
		else if (f != RT_FMT_UNKNOWN)
			rt_fail_file(err, path, "is %s, not a safetensors weights file", rt_format_text(f));
		else
			rt_fail_file(err, path, "not a safetensors file (header length %llu, file size %llu)",
			     (unsigned long long)hl, (unsigned long long)s->size);
		st_close(s);
		return -1;
	}
	char *h = rt_malloc(hl + 1);
	if (!h) {
		st_close(s);
		return rt_fail_file(err, path, "out of memory");
	}
	if (fread(h, 1, hl, s->f) != hl) {
		int e = ferror(s->f) ? errno : 0;
		free(h);
		st_close(s);
		return rt_fail_file(err, path, "cannot read: %s", e ? strerror(e) : "file changed while reading");
	}
	s->data_start = 8 + hl;
	json_error_t je;
	s->root = json_loadb(h, hl, JSON_REJECT_DUPLICATES, &je);
	free(h);
	if (!s->root) {
		st_close(s);
		/* jansson leaves the text empty when it could not allocate */
		return rt_fail_file(err, path, je.text[0] ? "bad safetensors header: %s" : "out of memory", je.text);
	}
	if (!json_is_object(s->root)) {
		st_close(s);
		return rt_fail_file(err, path, "bad safetensors header: not a JSON object");
	}
	json_t *md = json_object_get(s->root, "__metadata__");
	if (md && !json_is_object(md)) {
		st_close(s);
		return rt_fail_file(err, path, "bad safetensors header: __metadata__ is not an object");
	}
	size_t n = json_object_size(s->root);
	s->e = rt_calloc(n ? n : 1, sizeof *s->e);
	if (!s->e) {
		st_close(s);
		return rt_fail_file(err, path, "out of memory");
	}
	const char *key;
	json_t *v;
	uint64_t data_len = s->size - s->data_start;
	json_object_foreach(s->root, key, v) {
		if (strcmp(key, "__metadata__") == 0)
			continue;
		if (parse_entry(path, key, v, data_len, &s->e[s->n], err)) {
			st_close(s);
			return -1;
		}
		s->n++;
	}
	/* Overlapping ranges would let one tensor's bytes pass for another's. */
	entry *sorted = rt_malloc((size_t)(s->n ? s->n : 1) * sizeof *sorted);
	if (!sorted) {
		st_close(s);
		return rt_fail_file(err, path, "out of memory");
	}
	memcpy(sorted, s->e, (size_t)s->n * sizeof *sorted);
	qsort(sorted, (size_t)s->n, sizeof *sorted, cmp_begin);
	/* Compare with the furthest-reaching range so far, not just the
	 * previous one: an empty tensor in between must not hide an overlap. */
	int far = -1;
	for (int i = 0; i < s->n; i++) {
		if (sorted[i].begin == sorted[i].end)
			continue;
		if (far >= 0 && sorted[i].begin < sorted[far].end) {
			rt_fail_file(err, path, "tensors '%s' and '%s' overlap in the file", sorted[far].name,
			     sorted[i].name);
			free(sorted);
			st_close(s);
			return -1;
		}
		if (far < 0 || sorted[i].end > sorted[far].end)
			far = i;
	}
	free(sorted);
	return 0;
}

/* ------------------------------------------------------------------------
 * Names: PyTorch state_dicts as they are
 * ---------------------------------------------------------------------- */

int rt_names_flag(rt_names *nm, const char *flag, const char *value, char *err)
{
	if (strcmp(flag, "--strip-prefix") == 0) {
		if (!value[0])
			return rt_fail(err, "--strip-prefix needs a non-empty prefix");
		nm->strip = value;
		return 0;
	}
	if (strcmp(flag, "--rename") != 0)
		return 1;
	const char *eq = strchr(value, '=');
	if (!eq || eq == value || !eq[1])
		return rt_fail(err, "--rename takes OLD=NEW with both names non-empty, got '%s'", value);
	if (nm->n == RT_MAX_RENAMES)
		return rt_fail(err, "--rename: at most %d renames", RT_MAX_RENAMES);
	nm->rename[nm->n++] = value;
	return 0;
}

/* The name a file tensor gets under nm (malloc'ed), or NULL when it keeps
 * its own.  *rule gets the rename used, -1 for none. */
static char *map_name(const rt_names *nm, const char *name, int *rule, bool *fail_mem)
{
	*rule = -1;
	if (nm->strip && strncmp(name, nm->strip, strlen(nm->strip)) == 0 && name[strlen(nm->strip)])
		name += strlen(nm->strip);
	for (int r = 0; r < nm->n; r++) {
		const char *old = nm->rename[r], *eq = strchr(old, '=');
		size_t ol = (size_t)(eq - old);
		/* OLD names a whole tensor or a module: "0" maps "0.weight", not "01.weight" */
		if (strncmp(name, old, ol) != 0 || (name[ol] && name[ol] != '.'))
			continue;
		*rule = r;
		size_t nl = strlen(eq + 1), rest = strlen(name + ol);
		char *out = malloc(nl + rest + 1);
		if (!out) {
			*fail_mem = true;
			return NULL;
		}
		memcpy(out, eq + 1, nl);
		memcpy(out + nl, name + ol, rest + 1);
		return out;
	}
	char *out = strdup(name);
	*fail_mem = !out;
	return out;
}

static const char *name_of(const entry *e)
{
	return e->as ? e->as : e->name;
}

/* Applies nm to every entry; a rename that matches nothing and two file
 * tensors landing on one name are errors, since either means the mapping
 * is not the one the user meant. */
static int apply_names(const char *path, stfile *s, const rt_names *nm, char *err)
{
	if (!nm || (!nm->strip && nm->n == 0))
		return 0;
	bool used[RT_MAX_RENAMES] = { false };
	for (int i = 0; i < s->n; i++) {
		int rule;
		bool nomem = false;
		char *as = map_name(nm, s->e[i].name, &rule, &nomem);
		if (nomem)
			return rt_fail_file(err, path, "out of memory");
		if (as && strcmp(as, s->e[i].name) == 0) {
			free(as);
			as = NULL;
		}
		s->e[i].as = as;
		if (rule >= 0)
			used[rule] = true;
	}
	for (int r = 0; r < nm->n; r++)
		if (!used[r])
			return rt_fail_file(err, path, "--rename %s matches no tensor in the file", nm->rename[r]);
	for (int i = 0; i < s->n; i++)
		for (int j = 0; j < i; j++)
			if (strcmp(name_of(&s->e[i]), name_of(&s->e[j])) == 0)
				return rt_fail_file(err, path, "tensors '%s' and '%s' are both renamed to '%s'", s->e[j].name,
				            s->e[i].name, name_of(&s->e[i]));
	return 0;
}

static entry *find(stfile *s, const char *name)
{
	for (int i = 0; i < s->n; i++)
		if (strcmp(name_of(&s->e[i]), name) == 0)
			return &s->e[i];
	return NULL;
}

static void shape_str(char *buf, size_t cap, const int64_t *shape, int rank)
{
	size_t k = (size_t)snprintf(buf, cap, "[");
	for (int i = 0; i < rank && k < cap; i++)
		k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
	if (k < cap)
		snprintf(buf + k, cap - k, "]");
}

/* "missing tensor 'x'" with what the file does hold: the closest unused
 * name first, then as many names as fit the message. */
static int missing(const char *path, stfile *s, const char *want, char *err)
{
	if (!err)
		return -1;
	const entry *best = NULL;
	int bd = INT_MAX;
	for (int i = 0; i < s->n; i++) {
		int d = s->e[i].used ? INT_MAX : rt_edit_distance(want, name_of(&s->e[i]));
		if (d < bd) {
			bd = d;
			best = &s->e[i];
		}
	}
	char m[RT_ERRLEN], sh[128];
	size_t k = (size_t)snprintf(m, sizeof m, "missing tensor '%s'", want);
	if (best) {
		shape_str(sh, sizeof sh, best->shape, best->rank);
		k += (size_t)snprintf(m + k, sizeof m - k, "; closest in the file: '%s' %s", name_of(best), sh);
	}
	k += (size_t)snprintf(m + k, sizeof m - k, "; the file has %d tensor%s", s->n, s->n == 1 ? "" : "s");
	/* Leave room for the path and the hint at the end. */
	size_t room = sizeof m > strlen(path) + 120 ? sizeof m - strlen(path) - 120 : 0;
	for (int i = 0; i < s->n && k < sizeof m; i++) {
		const char *nm = name_of(&s->e[i]);
		if (k + strlen(nm) + 8 > room) {
			k += (size_t)snprintf(m + k, sizeof m - k, ", ...");
			break;
		}
		k += (size_t)snprintf(m + k, sizeof m - k, "%s%s", i ? ", " : ": ", nm);
	}
	if (k < sizeof m)
		snprintf(m + k, sizeof m - k, " (map names with --rename OLD=NEW or --strip-prefix P)");
	return rt_fail_file(err, path, "%s", m);
}

/* ------------------------------------------------------------------------
 * Values: float32 as stored, other float dtypes converted
 * ---------------------------------------------------------------------- */

static float half_to_float(uint16_t h)
{
	int sign = h >> 15, ex = (h >> 10) & 31, man = h & 1023;
	float v = ex == 0 ? ldexpf((float)man, -24)
	        : ex == 31 ? (man ? NAN : INFINITY)
	        : ldexpf((float)(man | 1024), ex - 25);
	return sign ? -v : v;
}

static float bf16_to_float(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float v;
	memcpy(&v, &u, sizeof v);
	return v;
}

/* Reads the n values of e into dst as float32, converting F64, F16 and
 * BF16; anything else is refused. */
static int read_values(const char *path, stfile *s, const entry *e, const char *want, float *dst,
                       int64_t n, char *err)
{
	int size = strcmp(e->dtype, "F32") == 0 ? 4 : strcmp(e->dtype, "F64") == 0 ? 8
	         : strcmp(e->dtype, "F16") == 0 || strcmp(e->dtype, "BF16") == 0 ? 2 : 0;
	if (!size)
		return rt_fail_file(err, path, "tensor %s has dtype %s, expected F32 (or F64, F16, BF16)", want,
		            e->dtype);
	void *raw = size == 4 ? (void *)dst : malloc((size_t)n * (size_t)size + 1);
	if (!raw)
		return rt_fail_file(err, path, "out of memory");
	int rc = 0;
	if (fseeko(s->f, (off_t)(s->data_start + (uint64_t)e->begin), SEEK_SET) != 0 ||
	    fread(raw, (size_t)size, (size_t)n, s->f) != (size_t)n)
		rc = rt_fail_file(err, path, "cannot read tensor %s: %s", want,
		          ferror(s->f) ? strerror(errno) : "file changed while reading");
	for (int64_t i = 0; i < n && !rc && size != 4; i++) {
		const unsigned char *b = (const unsigned char *)raw + i * size;
		if (size == 8) {
			double d;
			memcpy(&d, b, sizeof d);
			if (isfinite(d) && !isfinite((float)d))
				rc = rt_fail_file(err, path, "tensor %s value %lld is out of float32 range", want,
				          (long long)(i + 1));
			dst[i] = (float)d;
		} else {
			uint16_t h = (uint16_t)(b[0] | b[1] << 8);
			dst[i] = e->dtype[0] == 'F' ? half_to_float(h) : bf16_to_float(h);
		}
	}
	if (size != 4)
		free(raw);
	for (int64_t i = 0; i < n && !rc; i++)
		if (!isfinite(dst[i]))
			rc = rt_fail_file(err, path, "tensor %s value %lld is NaN or infinite", want, (long long)(i + 1));
	return rc;
}

/* Checks e against T and reads its values into base + T->offset. */
static int load_one(const char *path, stfile *s, const rt_tensor *T, entry *e, float *base, char *err)
{
	char want[256];
	if (e->as)
		snprintf(want, sizeof want, "'%s' (file: '%s')", T->name, e->name);
	else
		snprintf(want, sizeof want, "'%s'", T->name);
	bool same = e->rank == T->rank;
	for (int i = 0; same && i < T->rank; i++)
		same = e->shape[i] == T->shape[i];
	if (!same) {
		char have[128], exp[128];
		int64_t ws[4];
		for (int i = 0; i < T->rank && i < 4; i++)
			ws[i] = T->shape[i];
		shape_str(have, sizeof have, e->shape, e->rank);
		shape_str(exp, sizeof exp, ws, T->rank < 4 ? T->rank : 4);
		return rt_fail_file(err, path, "tensor %s has shape %s, expected %s", want, have, exp);
	}
	if (read_values(path, s, e, want, base + T->offset, T->count, err))
		return -1;
	e->used = true;
	return 0;
}

/* Tells once per file which dtypes were converted: the numbers certified
 * are float32 roundings of the file's, which the user should know. */
static void note_conversions(const char *path, const stfile *s)
{
	static const char *const conv[] = { "F64", "F16", "BF16" };
	for (size_t c = 0; c < sizeof conv / sizeof *conv; c++) {
		int k = 0;
		for (int i = 0; i < s->n; i++)
			k += s->e[i].used && strcmp(s->e[i].dtype, conv[c]) == 0;
		if (k)
			fprintf(stderr, "%s: note: %d tensor%s of dtype %s converted to float32\n", path, k,
			        k == 1 ? "" : "s", conv[c]);
	}
}

static int load_tables(const rt_tensor *t, int n, const rt_tensor *extra, int n_extra,
                       const rt_names *names, const char *path, float *P, float *E,
                       bool *has_extra, char *err)
{
	if (has_extra)
		*has_extra = false;
	if (!extra)
		n_extra = 0;
	stfile s;
	if (st_open(path, &s, err))
		return -1;
	int rc = apply_names(path, &s, names, err);
	for (int i = 0; i < n && !rc; i++) {
		entry *e = find(&s, t[i].name);
		rc = e ? load_one(path, &s, &t[i], e, P, err) : missing(path, &s, t[i].name, err);
	}
	/* Extras are all or nothing: half an optimizer state cannot resume. */
	int present = 0;
	for (int i = 0; i < n_extra && !rc; i++)
		present += find(&s, extra[i].name) != NULL;
	for (int i = 0; i < n_extra && !rc && present; i++) {
		entry *e = find(&s, extra[i].name);
		rc = e ? load_one(path, &s, &extra[i], e, E, err)
		       : rt_fail_file(err, path, "missing tensor '%s'", extra[i].name);
	}
	for (int i = 0; i < s.n && !rc; i++) {
		if (s.e[i].used)
			continue;
		if (n_extra == 0 && strncmp(name_of(&s.e[i]), "optim.", 6) == 0)
			continue;   /* optimizer state, not wanted by this caller */
		if (s.e[i].as)
			rc = rt_fail_file(err, path, "unexpected tensor '%s' (file: '%s')", s.e[i].as, s.e[i].name);
		else
			rc = rt_fail_file(err, path, "unexpected tensor '%s'", s.e[i].name);
	}
	if (rc == 0)
		note_conversions(path, &s);
	if (rc == 0 && has_extra)
		*has_extra = present > 0;
	st_close(&s);
	return rc;
}

int rt_params_load_ex(const rt_tensor *t, int n, const rt_tensor *extra, int n_extra,
                      const char *path, float *P, float *E, bool *has_extra, char *err)
{
	return load_tables(t, n, extra, n_extra, NULL, path, P, E, has_extra, err);
}

int rt_params_load(const rt_tensor *t, int n_tensors, const char *path, float *P, char *err)
{
	return load_tables(t, n_tensors, NULL, 0, NULL, path, P, NULL, NULL, err);
}

int rt_params_load_named(const rt_tensor *t, int n_tensors, const rt_names *names, const char *path,
                         float *P, char *err)
{
	return load_tables(t, n_tensors, NULL, 0, names, path, P, NULL, NULL, err);
}

int rt_st_list(const char *path, const rt_names *names, FILE *out, char *err)
{
	stfile s;
	if (st_open(path, &s, err))
		return -1;
	int rc = apply_names(path, &s, names, err);
	entry *sorted = rc ? NULL : malloc((size_t)(s.n ? s.n : 1) * sizeof *sorted);
	if (!rc && !sorted)
		rc = rt_fail_file(err, path, "out of memory");
	if (!rc) {
		/* file order, which is the order the data lies in */
		memcpy(sorted, s.e, (size_t)s.n * sizeof *sorted);
		qsort(sorted, (size_t)s.n, sizeof *sorted, cmp_begin);
		int64_t total = 0;
		for (int i = 0; i < s.n; i++) {
			char sh[160];
			shape_str(sh, sizeof sh, sorted[i].shape, sorted[i].rank);
			int64_t c = 1;
			for (int d = 0; d < sorted[i].rank; d++)
				c *= sorted[i].shape[d];
			total += c;
			fprintf(out, "%-32s %-5s %s", name_of(&sorted[i]), sorted[i].dtype, sh);
			if (sorted[i].as)
				fprintf(out, "  (file: %s)", sorted[i].name);
			fputc('\n', out);
		}
		json_t *md = json_object_get(s.root, "__metadata__");
		const char *key;
		json_t *v;
		json_object_foreach(md, key, v)
			fprintf(out, "metadata %s = %s\n", key, json_is_string(v) ? json_string_value(v) : "(not a string)");
		fprintf(out, "%d tensor%s, %lld values\n", s.n, s.n == 1 ? "" : "s", (long long)total);
		if (fflush(out) != 0)
			rc = rt_fail_file(err, path, "cannot write the listing: %s", strerror(errno));
	}
	free(sorted);
	st_close(&s);
	return rc;
}

int rt_st_metadata(const char *path, const char *key, char *value, size_t len, char *err)
{
	if (value && len)
		value[0] = 0;
	stfile s;
	if (st_open(path, &s, err))
		return -1;
	json_t *md = json_object_get(s.root, "__metadata__");
	json_t *v = md ? json_object_get(md, key) : NULL;
	int rc = 1;
	if (v && !json_is_string(v)) {
		rc = rt_fail_file(err, path, "metadata '%s' is not a string", key);
	} else if (v) {
		const char *str = json_string_value(v);
		size_t sl = strlen(str);
		if (!value || sl >= len)
			rc = rt_fail_file(err, path, "metadata '%s' is longer than %zu bytes", key, len ? len - 1 : 0);
		else {
			memcpy(value, str, sl + 1);
			rc = 0;
		}
	}
	st_close(&s);
	return rc;
}
