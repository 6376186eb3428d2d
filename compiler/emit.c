/* emit.c: from an optimized LLVM module to something that runs.
 *
 * Three ways out of the code generator: an object file in memory (what the
 * kernel cache keeps, cache.c), in-process code through ORC's LLJIT (the
 * module compiled, for the tests, or an object linked, for llnc's commands
 * and liblln), and a standalone certifier or trainer: the kernels' object,
 * a second object holding the executable's data (the weights, or the
 * training defaults) and the runtime, linked by the system C compiler
 * driver, which knows the platform's start files and libc; the result
 * needs only libc, libm and pthreads.  Keeping the data out of the
 * kernels' object is what lets `build` take the kernels from the cache.
 */
#include <errno.h>
#include <libgen.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>

#include "llnc.h"

extern char **environ;

LLVMMemoryBufferRef cg_emit_object(cg_unit *u, char *err)
{
	LLVMMemoryBufferRef obj = NULL;
	char *msg = NULL;
	if (LLVMTargetMachineEmitToMemoryBuffer(u->tm, u->mod, LLVMObjectFile, &msg, &obj)) {
		snprintf(err, RT_ERRLEN, "cannot emit the kernels' object: %s", msg);
		LLVMDisposeMessage(msg);
		return NULL;
	}
	return obj;
}

static int take_error(LLVMErrorRef e, const char *what, char *err)
{
	if (!e)
		return 0;
	char *m = LLVMGetErrorMessage(e);
	snprintf(err, RT_ERRLEN, "%s: %s", what, m);
	LLVMDisposeErrorMessage(m);
	return -1;
}

/* u's JIT, from the builder jb (NULL: the defaults, for the host). */
static int make_jit(cg_unit *u, LLVMOrcLLJITBuilderRef jb, char *err)
{
	return take_error(LLVMOrcCreateLLJIT(&u->jit, jb), "cannot create the JIT", err);
}

static const rt_model *lookup_model(cg_unit *u, char *err)
{
	LLVMOrcExecutorAddress addr = 0;
	if (take_error(LLVMOrcLLJITLookup(u->jit, &addr, "lln_model"), "cannot find lln_model", err))
		return NULL;
	const rt_model *m = (const rt_model *)(uintptr_t)addr;
	if (m->abi != RT_ABI_VERSION)
		internal_error("JIT model ABI %d, runtime expects %d", m->abi, RT_ABI_VERSION);
	return m;
}

const rt_model *cg_jit(cg_unit *u, char *err)
{
	LLVMOrcLLJITBuilderRef jb = LLVMOrcCreateLLJITBuilder();
	/* generate for the same CPU the module was optimized for */
	LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(jb, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(u->tm));
	u->tm = NULL;   /* now owned by the builder */
	if (make_jit(u, jb, err))
		return NULL;
	LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(u->mod, u->tsc);
	u->mod = NULL;
	if (take_error(LLVMOrcLLJITAddLLVMIRModule(u->jit, LLVMOrcLLJITGetMainJITDylib(u->jit), tsm),
	               "cannot add the module to the JIT", err)) {
		LLVMOrcDisposeThreadSafeModule(tsm);
		return NULL;
	}
	return lookup_model(u, err);
}

const rt_model *cg_jit_object(LLVMMemoryBufferRef obj, cg_unit **up, char *err)
{
	cg_unit *u = *up = calloc(1, sizeof *u);
	if (!u) {
		LLVMDisposeMemoryBuffer(obj);
		snprintf(err, RT_ERRLEN, "out of memory for the JIT");
		return NULL;
	}
	/* machine code only: the JIT links it and compiles nothing, so the
	 * default (host) target is enough */
	if (make_jit(u, NULL, err)) {
		LLVMDisposeMemoryBuffer(obj);
		return NULL;
	}
	if (take_error(LLVMOrcLLJITAddObjectFile(u->jit, LLVMOrcLLJITGetMainJITDylib(u->jit), obj),
	               "cannot add the kernels' object to the JIT", err))
		return NULL;
	return lookup_model(u, err);
}

void cg_unit_free(cg_unit *u)
{
	if (!u)
		return;
	if (u->jit)
		LLVMOrcDisposeLLJIT(u->jit);
	if (u->mod)
		LLVMDisposeModule(u->mod);
	if (u->tm)
		LLVMDisposeTargetMachine(u->tm);
	if (u->tsc)
		LLVMOrcDisposeThreadSafeContext(u->tsc);
	free(u);
}

/* Directory holding the runtime libraries: $LLN_RUNTIME_DIR, else the
 * directory of the running llnc (a build tree), else ../lib/lln beside it
 * (an installed tree: cmake --install), else the build tree llnc was
 * configured in. */
static const char *runtime_dir(char *buf, size_t len)
{
	const char *env = getenv("LLN_RUNTIME_DIR");
	if (env && *env)
		return env;
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = 0;
		const char *dir = dirname(exe);
		static const char *const beside[] = { "", "/../lib/lln" };
		for (int i = 0; i < 2; i++) {
			snprintf(buf, len, "%.4000s%s", dir, beside[i]);
			char probe[4200];
			snprintf(probe, sizeof probe, "%.4100s/libllnrt.a", buf);
			if (access(probe, R_OK) == 0)
				return buf;
		}
	}
	return LLN_RUNTIME_DIR;
}

static int link_exe(const char *kernels, const char *data, const char *out, cg_exe_kind kind, char *err)
{
	/* a certifier needs nothing beyond libc; a trainer also reads and writes
	 * safetensors, through a static jansson */
	static const char *libs[][5] = {
		[CG_CERTIFIER] = { "libllnrt_certifier.a", "libllnrt.a", NULL },
		[CG_TRAINER] = { "libllnrt_trainer.a", "libllnrt_train.a", "libllnrt_st.a", "libllnrt.a", NULL },
	};
	char dirbuf[4096], paths[5][4200], tmp[4200];
	const char *dir = runtime_dir(dirbuf, sizeof dirbuf);
	const char *cc = getenv("CC");
	if (!cc || !*cc)
		cc = "cc";
	snprintf(tmp, sizeof tmp, "%s.tmp%ld", out, (long)getpid());
	char *argv[32];
#ifdef LLN_MPI_LIBS
	/* an lln built with MPI links trainers with it (docs/scale.md) */
	char mpi[4096];
	snprintf(mpi, sizeof mpi, "%s", LLN_MPI_LIBS);
#endif
	int n = 0;
	argv[n++] = (char *)cc;
	argv[n++] = "-o";
	argv[n++] = tmp;
	argv[n++] = (char *)kernels;
	argv[n++] = (char *)data;
	for (int i = 0; libs[kind][i]; i++) {
		snprintf(paths[i], sizeof paths[i], "%s/%s", dir, libs[kind][i]);
		if (access(paths[i], R_OK) != 0) {
			snprintf(err, RT_ERRLEN, "cannot find the lln runtime library %.400s (set LLN_RUNTIME_DIR)", paths[i]);
			return -1;
		}
		argv[n++] = paths[i];
	}
	if (kind == CG_TRAINER)
		argv[n++] = "-l:libjansson.a";
#ifdef LLN_MPI_LIBS
	for (char *save = NULL, *lib = strtok_r(mpi, ";", &save); kind == CG_TRAINER && lib && n < 28;
	     lib = strtok_r(NULL, ";", &save))
		argv[n++] = lib;
#endif
	argv[n++] = "-lm";
	argv[n++] = "-pthread";
	argv[n] = NULL;
	pid_t pid;
	int rc = posix_spawnp(&pid, cc, NULL, NULL, argv, environ);
	if (rc != 0) {
		snprintf(err, RT_ERRLEN, "cannot run the C compiler '%s' to link: %s", cc, strerror(rc));
		return -1;
	}
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		unlink(tmp);
		snprintf(err, RT_ERRLEN, "linking %s with '%s' failed", out, cc);
		return -1;
	}
	if (rename(tmp, out) != 0) {
		snprintf(err, RT_ERRLEN, "%s: %s", out, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* The executable's data as an object of its own: raw little-endian bytes,
 * one constant each, cheap to build and emit for any size. */
static int emit_data(const cg_exe *e, const char *path, char *err)
{
	LLVMTargetMachineRef tm = cg_target_machine(e->cpu, 0, err);
	if (!tm)
		return -1;
	LLVMContextRef c = LLVMContextCreate();
	LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("lln_data", c);
	char *triple = LLVMGetTargetMachineTriple(tm);
	LLVMSetTarget(mod, triple);
	LLVMDisposeMessage(triple);
	LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
	LLVMSetModuleDataLayout(mod, td);
	LLVMDisposeTargetData(td);
	bool certifier = e->kind == CG_CERTIFIER;
	const char *bytes = certifier ? (const char *)e->weights : e->train_defaults;
	size_t len = certifier ? (size_t)e->n_params * sizeof(float) : strlen(e->train_defaults);
	LLVMValueRef init = LLVMConstStringInContext2(c, bytes, len, certifier);
	LLVMValueRef gv = LLVMAddGlobal(mod, LLVMTypeOf(init), certifier ? "lln_weights" : "lln_train_defaults");
	LLVMSetInitializer(gv, init);
	LLVMSetGlobalConstant(gv, 1);
	if (certifier)
		LLVMSetAlignment(gv, 64);
	char *msg = NULL;
	int rc = 0;
	if (LLVMTargetMachineEmitToFile(tm, mod, (char *)path, LLVMObjectFile, &msg)) {
		snprintf(err, RT_ERRLEN, "%s: cannot write object file: %s", path, msg);
		LLVMDisposeMessage(msg);
		rc = -1;
	}
	LLVMDisposeModule(mod);
	LLVMContextDispose(c);
	LLVMDisposeTargetMachine(tm);
	return rc;
}

/* A temporary file for an object, "/tmp/llnc-XXXXXX.o"; 0 or -1. */
static int temp_object(char path[32], char *err)
{
	snprintf(path, 32, "/tmp/llnc-XXXXXX.o");
	int fd = mkstemps(path, 2);
	if (fd < 0) {
		snprintf(err, RT_ERRLEN, "cannot create a temporary object file: %s", strerror(errno));
		path[0] = 0;
		return -1;
	}
	close(fd);
	return 0;
}

int cg_build_exe(LLVMMemoryBufferRef kernels, const cg_exe *e, const char *out, char *err)
{
	char kobj[32], dobj[32] = "";
	int rc = temp_object(kobj, err) || temp_object(dobj, err) ||
	         rt_write_atomic(kobj, LLVMGetBufferStart(kernels), LLVMGetBufferSize(kernels), err) ||
	         emit_data(e, dobj, err) || link_exe(kobj, dobj, out, e->kind, err);
	if (kobj[0])
		unlink(kobj);
	if (dobj[0])
		unlink(dobj);
	return rc ? -1 : 0;
}
