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
 * be present with the exact shape and dtype F32, every byte range must lie
 * inside the file without overlapping another, every value must be finite,
 * and a tensor the model does not know is an error too (it usually means the
 * file belongs to another architecture).  Writing goes through
 * rt_write_atomic so an interrupted save never destroys the previous file.
 *
 * Only little-endian hosts are supported: tensors are copied as raw bytes.
 */
#include <errno.h>
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

static int fail(char *err, const char *path, const char *fmt, ...)
{
	if (!err)
		return -1;
	int k = snprintf(err, RT_ERRLEN, "%s: ", path);
	if (k < 0)
		k = 0;
	if (k < RT_ERRLEN) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err + k, RT_ERRLEN - (size_t)k, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* ------------------------------------------------------------------------
 * Writing
 * ---------------------------------------------------------------------- */

static json_t *tensor_json(const rt_tensor *T, int64_t begin)
{
	json_t *shape = json_array();
	for (int i = 0; i < T->rank; i++)
		json_array_append_new(shape, json_integer(T->shape[i]));
	json_t *offs = json_array();
	json_array_append_new(offs, json_integer(begin));
	json_array_append_new(offs, json_integer(begin + T->count * 4));
	json_t *o = json_object();
	json_object_set_new(o, "dtype", json_string("F32"));
	json_object_set_new(o, "shape", shape);
	json_object_set_new(o, "data_offsets", offs);
	return o;
}

static int check_table(const char *path, json_t *root, const rt_tensor *t, int n, char *err)
{
	for (int i = 0; i < n; i++) {
		int64_t c = 1;
		for (int d = 0; d < t[i].rank; d++)
			c *= t[i].shape[d];
		if (!t[i].name || t[i].rank < 0 || t[i].rank > 4 || c != t[i].count)
			return fail(err, path, "internal error: tensor table entry %d is inconsistent", i);
		if (strcmp(t[i].name, "__metadata__") == 0 || json_object_get(root, t[i].name))
			return fail(err, path, "tensor name '%s' is used twice", t[i].name);
		/* Placeholder so that a later duplicate is seen; replaced below. */
		json_object_set_new(root, t[i].name, json_null());
	}
	return 0;
}

int rt_params_save(const rt_tensor *t, int n_tensors, const float *P,
                   const rt_tensor *extra, int n_extra, const float *E,
                   const char *const *metadata, const char *path, char *err)
{
	if (!extra)
		n_extra = 0;
	json_t *root = json_object();
	if (!root)
		return fail(err, path, "out of memory");
	if (metadata && metadata[0]) {
		json_t *md = json_object();
		json_object_set_new(root, "__metadata__", md);
		for (int i = 0; metadata[i] && metadata[i + 1]; i += 2)
			if (json_object_set_new(md, metadata[i], json_string(metadata[i + 1])) != 0) {
				json_decref(root);
				return fail(err, path, "metadata '%s' is not valid UTF-8", metadata[i]);
			}
	}
	if (check_table(path, root, t, n_tensors, err) || check_table(path, root, extra, n_extra, err)) {
		json_decref(root);
		return -1;
	}
	int64_t pos = 0;
	for (int i = 0; i < n_tensors; i++) {
		json_object_set_new(root, t[i].name, tensor_json(&t[i], pos));
		pos += t[i].count * 4;
	}
	for (int i = 0; i < n_extra; i++) {
		json_object_set_new(root, extra[i].name, tensor_json(&extra[i], pos));
		pos += extra[i].count * 4;
	}
	/* Insertion order is kept, so the header lists tensors in table order,
	 * which makes files of one model byte-identical across runs. */
	char *js = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	json_decref(root);
	if (!js)
		return fail(err, path, "out of memory");
	size_t jl = strlen(js);
	/* Padding to 8 bytes keeps the data section aligned for readers that
	 * map the file and cast; the format allows trailing spaces. */
	size_t hl = (jl + 7) / 8 * 8;
	size_t total = 8 + hl + (size_t)pos;
	unsigned char *buf = malloc(total);
	if (!buf) {
		free(js);
		return fail(err, path, "out of memory");
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
		return fail(err, path, "bad safetensors header: tensor '%s' needs dtype, shape and data_offsets",
		            name);
	e->dtype = json_string_value(dt);
	int size = dtype_size(e->dtype);
	if (!size)
		return fail(err, path, "tensor '%s' has unknown dtype %s", name, e->dtype);
	if (json_array_size(sh) > 8)
		return fail(err, path, "tensor '%s' has rank %zu, at most 8 is supported", name,
		            json_array_size(sh));
	e->rank = (int)json_array_size(sh);
	uint64_t count = 1;
	bool overflow = false;
	for (int i = 0; i < e->rank; i++) {
		json_t *d = json_array_get(sh, (size_t)i);
		if (!json_is_integer(d) || json_integer_value(d) < 0)
			return fail(err, path, "bad safetensors header: tensor '%s' has an invalid shape", name);
		e->shape[i] = json_integer_value(d);
		if (e->shape[i] && count > UINT64_MAX / 16 / (uint64_t)e->shape[i])
			overflow = true;
		else
			count *= (uint64_t)e->shape[i];
	}
	json_t *b = json_array_get(of, 0), *en = json_array_get(of, 1);
	if (json_array_size(of) != 2 || !json_is_integer(b) || !json_is_integer(en))
		return fail(err, path, "bad safetensors header: tensor '%s' has invalid data_offsets", name);
	e->begin = json_integer_value(b);
	e->end = json_integer_value(en);
	if (e->begin < 0 || e->end < e->begin || (uint64_t)e->end > data_len)
		return fail(err, path, "tensor '%s' has data_offsets [%lld, %lld] outside the %llu bytes of data",
		            name, (long long)e->begin, (long long)e->end, (unsigned long long)data_len);
	if (overflow || (uint64_t)(e->end - e->begin) != count * (uint64_t)size)
		return fail(err, path, "tensor '%s' has %lld bytes of data, its shape and dtype need %llu",
		            name, (long long)(e->end - e->begin),
		            overflow ? 0ULL : (unsigned long long)(count * (uint64_t)size));
	return 0;
}

/* Reads and validates the header; the data stays in the file until asked. */
static int st_open(const char *path, stfile *s, char *err)
{
	memset(s, 0, sizeof *s);
	s->f = fopen(path, "rb");
	if (!s->f)
		return fail(err, path, "cannot read: %s", strerror(errno));
	struct stat st = {0};
	if (fstat(fileno(s->f), &st) != 0 || !S_ISREG(st.st_mode)) {
		/* Tensors are read by seeking, which pipes cannot do. */
		bool dir = S_ISDIR(st.st_mode);
		st_close(s);
		return fail(err, path, "cannot read: %s", dir ? strerror(EISDIR) : "not a regular file");
	}
	s->size = (uint64_t)st.st_size;
	unsigned char lb[8];
	if (s->size < 8 || fread(lb, 1, 8, s->f) != 8) {
		fail(err, path, "not a safetensors file (only %llu bytes)", (unsigned long long)s->size);
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
			fail(err, path, "is %s, not safetensors; save the weights with "
			     "safetensors.torch.save_file(model.state_dict(), 'w.safetensors')", rt_format_text(f));
		else if (f != RT_FMT_UNKNOWN)
			fail(err, path, "is %s, not a safetensors weights file", rt_format_text(f));
		else
			fail(err, path, "not a safetensors file (header length %llu, file size %llu)",
			     (unsigned long long)hl, (unsigned long long)s->size);
		st_close(s);
		return -1;
	}
	char *h = malloc(hl + 1);
	if (!h) {
		st_close(s);
		return fail(err, path, "out of memory");
	}
	if (fread(h, 1, hl, s->f) != hl) {
		int e = ferror(s->f) ? errno : 0;
		free(h);
		st_close(s);
		return fail(err, path, "cannot read: %s", e ? strerror(e) : "file changed while reading");
	}
	s->data_start = 8 + hl;
	json_error_t je;
	s->root = json_loadb(h, hl, JSON_REJECT_DUPLICATES, &je);
	free(h);
	if (!s->root) {
		st_close(s);
		return fail(err, path, "bad safetensors header: %s", je.text);
	}
	if (!json_is_object(s->root)) {
		st_close(s);
		return fail(err, path, "bad safetensors header: not a JSON object");
	}
	json_t *md = json_object_get(s->root, "__metadata__");
	if (md && !json_is_object(md)) {
		st_close(s);
		return fail(err, path, "bad safetensors header: __metadata__ is not an object");
	}
	size_t n = json_object_size(s->root);
	s->e = calloc(n ? n : 1, sizeof *s->e);
	if (!s->e) {
		st_close(s);
		return fail(err, path, "out of memory");
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
	entry *sorted = malloc((size_t)(s->n ? s->n : 1) * sizeof *sorted);
	if (!sorted) {
		st_close(s);
		return fail(err, path, "out of memory");
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
			fail(err, path, "tensors '%s' and '%s' overlap in the file", sorted[far].name,
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

static entry *find(stfile *s, const char *name)
{
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->e[i].name, name) == 0)
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

/* Checks e against T and reads its values into dst. */
static int load_one(const char *path, stfile *s, const rt_tensor *T, entry *e, float *base, char *err)
{
	float *dst = base + T->offset;
	if (strcmp(e->dtype, "F32") != 0)
		return fail(err, path, "tensor '%s' has dtype %s, expected F32", T->name, e->dtype);
	bool same = e->rank == T->rank;
	for (int i = 0; same && i < T->rank; i++)
		same = e->shape[i] == T->shape[i];
	if (!same) {
		char have[128], want[128];
		int64_t ws[4];
		for (int i = 0; i < T->rank && i < 4; i++)
			ws[i] = T->shape[i];
		shape_str(have, sizeof have, e->shape, e->rank);
		shape_str(want, sizeof want, ws, T->rank < 4 ? T->rank : 4);
		return fail(err, path, "tensor '%s' has shape %s, expected %s", T->name, have, want);
	}
	if (fseeko(s->f, (off_t)(s->data_start + (uint64_t)e->begin), SEEK_SET) != 0 ||
	    fread(dst, 4, (size_t)T->count, s->f) != (size_t)T->count)
		return fail(err, path, "cannot read tensor '%s': %s", T->name,
		            ferror(s->f) ? strerror(errno) : "file changed while reading");
	for (int64_t i = 0; i < T->count; i++)
		if (!isfinite(dst[i]))
			return fail(err, path, "tensor '%s' value %lld is NaN or infinite", T->name,
			            (long long)(i + 1));
	e->used = true;
	return 0;
}

int rt_params_load_ex(const rt_tensor *t, int n, const rt_tensor *extra, int n_extra,
                      const char *path, float *P, float *E, bool *has_extra, char *err)
{
	if (has_extra)
		*has_extra = false;
	if (!extra)
		n_extra = 0;
	stfile s;
	if (st_open(path, &s, err))
		return -1;
	int rc = 0;
	for (int i = 0; i < n && !rc; i++) {
		entry *e = find(&s, t[i].name);
		rc = e ? load_one(path, &s, &t[i], e, P, err)
		       : fail(err, path, "missing tensor '%s'", t[i].name);
	}
	/* Extras are all or nothing: half an optimizer state cannot resume. */
	int present = 0;
	for (int i = 0; i < n_extra && !rc; i++)
		present += find(&s, extra[i].name) != NULL;
	for (int i = 0; i < n_extra && !rc && present; i++) {
		entry *e = find(&s, extra[i].name);
		rc = e ? load_one(path, &s, &extra[i], e, E, err)
		       : fail(err, path, "missing tensor '%s'", extra[i].name);
	}
	for (int i = 0; i < s.n && !rc; i++) {
		if (s.e[i].used)
			continue;
		if (n_extra == 0 && strncmp(s.e[i].name, "optim.", 6) == 0)
			continue;   /* optimizer state, not wanted by this caller */
		rc = fail(err, path, "unexpected tensor '%s'", s.e[i].name);
	}
	if (rc == 0 && has_extra)
		*has_extra = present > 0;
	st_close(&s);
	return rc;
}

int rt_params_load(const rt_tensor *t, int n_tensors, const char *path, float *P, char *err)
{
	return rt_params_load_ex(t, n_tensors, NULL, 0, path, P, NULL, NULL, err);
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
		rc = fail(err, path, "metadata '%s' is not a string", key);
	} else if (v) {
		const char *str = json_string_value(v);
		size_t sl = strlen(str);
		if (!value || sl >= len)
			rc = fail(err, path, "metadata '%s' is longer than %zu bytes", key, len ? len - 1 : 0);
		else {
			memcpy(value, str, sl + 1);
			rc = 0;
		}
	}
	st_close(&s);
	return rc;
}
