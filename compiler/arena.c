/* arena.c: the compiler's memory.
 *
 * Everything allocated while compiling one program (source text, tokens, AST,
 * checked program, IR) has the same lifetime, so it comes from one bump
 * allocator and is released by a single arena_free.  That removes per-object
 * ownership from every stage and makes "no leaks" a property of main.c alone.
 * Memory is handed out zeroed so that new structures start in a known state.
 */
#include <stdlib.h>
#include <string.h>

#include "llnc.h"

/* Large enough that a typical program needs a handful of chunks; requests
 * bigger than this get a chunk of their own. */
#define CHUNK_SIZE (64 * 1024)
#define ALIGN _Alignof(max_align_t)

typedef struct chunk {
	struct chunk *next;
	size_t used, cap;
	_Alignas(max_align_t) unsigned char data[];
} chunk;

struct arena {
	chunk *head;   /* current chunk; older ones follow */
};

static chunk *chunk_new(size_t cap)
{
	chunk *c = calloc(1, sizeof(chunk) + cap);
	if (!c)
		internal_error("out of memory (%zu bytes)", cap);
	c->cap = cap;
	return c;
}

arena *arena_new(void)
{
	arena *a = calloc(1, sizeof *a);
	if (!a)
		internal_error("out of memory");
	return a;
}

void arena_free(arena *a)
{
	if (!a)
		return;
	for (chunk *c = a->head, *next; c; c = next) {
		next = c->next;
		free(c);
	}
	free(a);
}

void *arena_alloc(arena *a, size_t n)
{
	if (n == 0)
		n = 1;
	if (n > SIZE_MAX - ALIGN)
		internal_error("allocation of %zu bytes is too large", n);
	n = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
	chunk *c = a->head;
	if (!c || c->cap - c->used < n) {
		/* A big request gets its own chunk behind the current one so the
		 * free space left in the current chunk is not wasted. */
		if (n > CHUNK_SIZE / 4 && c) {
			chunk *big = chunk_new(n);
			big->used = n;
			big->next = c->next;
			c->next = big;
			return big->data;
		}
		c = chunk_new(n > CHUNK_SIZE ? n : CHUNK_SIZE);
		c->next = a->head;
		a->head = c;
	}
	void *p = c->data + c->used;
	c->used += n;
	return p;   /* calloc'd and never reused: already zero */
}

char *arena_strndup(arena *a, const char *s, size_t n)
{
	char *d = arena_alloc(a, n + 1);
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

char *arena_strdup(arena *a, const char *s)
{
	return arena_strndup(a, s, strlen(s));
}

char *arena_printf(arena *a, const char *fmt, ...)
{
	va_list ap, ap2;
	va_start(ap, fmt);
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		internal_error("arena_printf: bad format '%s'", fmt);
	char *d = arena_alloc(a, (size_t)n + 1);
	vsnprintf(d, (size_t)n + 1, fmt, ap2);
	va_end(ap2);
	return d;
}
