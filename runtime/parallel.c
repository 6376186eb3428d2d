/* parallel.c: work split into shares, one thread each, from a pool.
 *
 * The batch kernels, evaluation, the distortion and the plots' heat maps
 * all give each thread a contiguous share of independent work and combine
 * the results afterwards in a fixed order, so that nothing depends on the
 * thread count.  This is that fork and join, once, and its form for the
 * elementwise passes over every parameter (rt_parallel_range).
 *
 * Why a pool: training forks and joins several times per batch (the
 * gradient shares, their sum, the mean, the optimizer step), and creating
 * and joining a thread each time cost more than some of those passes.  So
 * the helper threads are created on first need, grown when a call wants
 * more, and sleep on a condition variable between calls.  Waking a
 * sleeping thread costs up to 100 microseconds on a virtual machine, and
 * batched training makes two calls per 64 examples (grad.c), so such calls
 * (rt_parallel_hot) make the helpers watch for the next call for a short
 * while (SPIN polls, about 0.1 ms, yielding the core now and then) before
 * they sleep, and the caller waits for the shares the same way.  Other
 * calls do not poll, so that idle threads do not take cores from other
 * jobs.
 *
 * The pool serves one call at a time.  A call that finds it busy (a share
 * calling rt_parallel, or two user threads at once) creates and joins its
 * own threads as before, so no call ever waits for another.  Shares past
 * the pool's cap, or whose thread could not be created, run in the calling
 * thread.  At exit the helpers are stopped and joined, so leak checkers see
 * nothing; a forked child starts with an empty pool of its own (its parent's
 * helpers do not exist there), except that fork from inside a share is not
 * supported (the child would wait for helpers it does not have).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "rt.h"

/* helpers beyond this run their shares in the caller instead */
#define POOL_CAP 256
/* polls before a waiting thread sleeps */
#define SPIN 2000

typedef struct helper {
	pthread_t tid;
	pthread_cond_t wake;
	atomic_bool go;   /* a share is waiting for this helper */
	bool asleep;      /* in pthread_cond_wait (under mu) */
} helper;

static struct {
	/* held by the call the pool serves, for its whole length; after the
	 * exit handler has run it stays held, so late calls use their own threads */
	pthread_mutex_t busy;
	pthread_mutex_t mu;   /* guards the rest */
	pthread_cond_t done;
	void *(*fn)(void *);
	char *args;
	size_t stride;
	atomic_int pending;   /* shares given to helpers and not finished */
	atomic_bool hot;      /* the call expects another soon: poll for it */
	bool caller_asleep;   /* waiting on done (under mu) */
	atomic_bool stop;
	bool hooked;   /* the exit and fork handlers are registered */
	int size;
	helper h[POOL_CAP];
} pool = {
	.busy = PTHREAD_MUTEX_INITIALIZER,
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.done = PTHREAD_COND_INITIALIZER,
};

/* The fallback: one fresh thread per share, the caller taking the last. */
static void spawn(int n, void *(*fn)(void *), char *a, size_t stride)
{
	pthread_t *tid = malloc(sizeof *tid * (size_t)(n - 1));
	bool *started = calloc((size_t)(n - 1), sizeof *started);
	if (!tid || !started) {
		/* no memory for threads: the work still gets done, in this one */
		for (int t = 0; t < n; t++)
			fn(a + (size_t)t * stride);
		free(tid);
		free(started);
		return;
	}
	for (int t = 0; t < n - 1; t++)
		started[t] = pthread_create(&tid[t], NULL, fn, a + (size_t)t * stride) == 0;
	fn(a + (size_t)(n - 1) * stride);
	for (int t = 0; t < n - 1; t++) {
		if (started[t])
			pthread_join(tid[t], NULL);
		else   /* a thread that could not start: its share here */
			fn(a + (size_t)t * stride);
	}
	free(tid);
	free(started);
}

/* One poll's wait.  Every 64th gives the core away, so that a poller on a
 * core another thread needs (more threads than cores, or another job)
 * costs that thread little. */
static inline void relax(int i)
{
	if (i % 64 == 63) {
		sched_yield();
		return;
	}
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Polls `flag` until it is set or SPIN polls have passed; returns it. */
static bool watch(atomic_bool *flag)
{
	for (int i = 0; i < SPIN; i++) {
		if (atomic_load_explicit(flag, memory_order_acquire))
			return true;
		relax(i);
	}
	return atomic_load_explicit(flag, memory_order_acquire);
}

static void *serve(void *arg)
{
	helper *h = arg;
	size_t i = (size_t)(h - pool.h);
	for (;;) {
		bool poll = atomic_load(&pool.hot);
		if (!(poll ? watch(&h->go) : atomic_load(&h->go)) && !atomic_load(&pool.stop)) {
			/* the caller signals only helpers it sees asleep, under mu */
			pthread_mutex_lock(&pool.mu);
			h->asleep = true;
			while (!atomic_load(&h->go) && !atomic_load(&pool.stop))
				pthread_cond_wait(&h->wake, &pool.mu);
			h->asleep = false;
			pthread_mutex_unlock(&pool.mu);
		}
		if (!atomic_load(&h->go))
			break;   /* stop */
		atomic_store(&h->go, false);
		pool.fn(pool.args + i * pool.stride);
		if (atomic_fetch_sub(&pool.pending, 1) == 1) {
			pthread_mutex_lock(&pool.mu);
			if (pool.caller_asleep)
				pthread_cond_signal(&pool.done);
			pthread_mutex_unlock(&pool.mu);
		}
	}
	return NULL;
}

/* At exit, with the pool idle: stop and join the helpers.  If a call is
 * under way (exit from a share, or from another thread during a call), the
 * helpers are left to the process's end rather than deadlock here. */
static void stop_pool(void)
{
	if (pthread_mutex_trylock(&pool.busy))
		return;
	pthread_mutex_lock(&pool.mu);
	atomic_store(&pool.stop, true);
	pthread_mutex_unlock(&pool.mu);
	for (int i = 0; i < pool.size; i++)
		pthread_cond_signal(&pool.h[i].wake);
	for (int i = 0; i < pool.size; i++) {
		pthread_join(pool.h[i].tid, NULL);
		pthread_cond_destroy(&pool.h[i].wake);
	}
	pool.size = 0;
}

/* In a forked child only the forking thread exists: forget the parent's
 * helpers and any lock one of them held. */
static void reset_in_child(void)
{
	pthread_mutex_init(&pool.busy, NULL);
	pthread_mutex_init(&pool.mu, NULL);
	pthread_cond_init(&pool.done, NULL);
	atomic_store(&pool.pending, 0);
	atomic_store(&pool.stop, false);
	pool.caller_asleep = false;
	pool.size = 0;
}

/* Grows the pool towards `want` helpers (the caller holds busy); returns how
 * many there are. */
static int grow(int want)
{
	if (want > POOL_CAP)
		want = POOL_CAP;
	if (pool.size >= want)
		return pool.size;
	if (!pool.hooked) {
		if (atexit(stop_pool) || pthread_atfork(NULL, NULL, reset_in_child))
			return pool.size;   /* helpers nobody would join: use none */
		pool.hooked = true;
	}
	while (pool.size < want) {
		helper *h = &pool.h[pool.size];
		atomic_store(&h->go, false);
		h->asleep = false;
		if (pthread_cond_init(&h->wake, NULL))
			break;
		if (pthread_create(&h->tid, NULL, serve, h)) {
			pthread_cond_destroy(&h->wake);
			break;
		}
		pool.size++;
	}
	return pool.size;
}

static void run(int n, void *(*fn)(void *), void *args, size_t stride, bool hot)
{
	char *a = args;
	if (n < 2) {
		if (n == 1)
			fn(a);
		return;
	}
	if (pthread_mutex_trylock(&pool.busy)) {
		spawn(n, fn, a, stride);
		return;
	}
	int helpers = grow(n - 1);
	if (helpers > n - 1)
		helpers = n - 1;
	pool.fn = fn;
	pool.args = a;
	pool.stride = stride;
	atomic_store(&pool.hot, hot);
	atomic_store(&pool.pending, helpers);
	for (int i = 0; i < helpers; i++)
		atomic_store(&pool.h[i].go, true);
	/* a helper that went to sleep before seeing its share needs a signal */
	pthread_mutex_lock(&pool.mu);
	for (int i = 0; i < helpers; i++)
		if (pool.h[i].asleep)
			pthread_cond_signal(&pool.h[i].wake);
	pthread_mutex_unlock(&pool.mu);
	fn(a + (size_t)(n - 1) * stride);
	for (int t = helpers; t < n - 1; t++)   /* shares no helper could take */
		fn(a + (size_t)t * stride);
	for (int i = 0; hot && i < SPIN && atomic_load(&pool.pending); i++)
		relax(i);
	if (atomic_load(&pool.pending)) {
		pthread_mutex_lock(&pool.mu);
		pool.caller_asleep = true;
		while (atomic_load(&pool.pending))
			pthread_cond_wait(&pool.done, &pool.mu);
		pool.caller_asleep = false;
		pthread_mutex_unlock(&pool.mu);
	}
	pthread_mutex_unlock(&pool.busy);
}

void rt_parallel(int n, void *(*fn)(void *), void *args, size_t stride)
{
	run(n, fn, args, stride, false);
}

void rt_parallel_hot(int n, void *(*fn)(void *), void *args, size_t stride)
{
	run(n, fn, args, stride, true);
}

typedef struct range_job {
	void (*fn)(void *ctx, int part, int64_t lo, int64_t hi);
	void *ctx;
	int part;
	int64_t lo, hi;
} range_job;

static void *run_range(void *arg)
{
	range_job *j = arg;
	j->fn(j->ctx, j->part, j->lo, j->hi);
	return NULL;
}

void rt_parallel_range(int parts, int64_t n, void (*fn)(void *ctx, int part, int64_t lo, int64_t hi), void *ctx)
{
	/* below this a second thread costs more than it saves */
	if (n < 16384 || parts < 2)
		parts = 1;
	range_job jobs[RT_MAX_PARTS];
	if (parts > RT_MAX_PARTS)
		parts = RT_MAX_PARTS;
	for (int t = 0; t < parts; t++) {   /* bounds on 16-float (cache line) boundaries */
		int64_t lo = n * t / parts / 16 * 16, hi = t + 1 == parts ? n : n * (t + 1) / parts / 16 * 16;
		jobs[t] = (range_job){ fn, ctx, t, lo, hi };
	}
	/* the passes over every parameter come several per training step */
	run(parts, run_range, jobs, sizeof *jobs, true);
}
