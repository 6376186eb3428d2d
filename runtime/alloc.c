/* alloc.c: the runtime's allocation wrapper and its failure hook.
 *
 * Readers, safetensors and batch certification allocate through rt_malloc,
 * rt_calloc, rt_realloc and rt_alloc_floats so that a test can make one
 * chosen allocation fail, in the style of Lua's allocation-failure tests:
 * rt_alloc_fail_after(N) arms the hook, the N-th allocation made through the
 * wrapper from then on returns NULL, and every one before and after it
 * succeeds.  Sweeping N from 1 until a call completes without the hook
 * firing visits every allocation of a code path, and each must turn into a
 * clean error return.  The hook is compiled into every build; unarmed it
 * costs one relaxed atomic load per allocation.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

static atomic_bool armed;
static atomic_long countdown;   /* allocations left before the failing one */
static atomic_long counted;     /* allocations since arming */
static atomic_bool fired;

void rt_alloc_fail_after(long n)
{
	atomic_store(&armed, false);
	atomic_store(&countdown, n);
	atomic_store(&counted, 0);
	atomic_store(&fired, false);
	atomic_store(&armed, n > 0);
}

bool rt_alloc_fired(void)
{
	return atomic_load(&fired);
}

long rt_alloc_count(void)
{
	return atomic_load(&counted);
}

/* true when this allocation is the one to fail */
static bool injected(void)
{
	if (!atomic_load_explicit(&armed, memory_order_relaxed))
		return false;
	atomic_fetch_add(&counted, 1);
	if (atomic_fetch_sub(&countdown, 1) == 1) {
		atomic_store(&fired, true);
		return true;
	}
	return false;
}

void *rt_malloc(size_t n)
{
	return injected() ? NULL : malloc(n ? n : 1);
}

void *rt_calloc(size_t n, size_t size)
{
	return injected() ? NULL : calloc(n ? n : 1, size ? size : 1);
}

void *rt_realloc(void *p, size_t n)
{
	return injected() ? NULL : realloc(p, n ? n : 1);
}

float *rt_alloc_floats(int64_t floats)
{
	if (floats < 0 || (uint64_t)floats > (SIZE_MAX - 64) / sizeof(float))
		return NULL;
	size_t bytes = ((size_t)(floats > 0 ? floats : 1) * sizeof(float) + 63) & ~(size_t)63;
	float *p = injected() ? NULL : aligned_alloc(64, bytes);
	if (p)
		memset(p, 0, bytes);
	return p;
}
