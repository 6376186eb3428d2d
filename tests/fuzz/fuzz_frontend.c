/* fuzz_frontend.c: libFuzzer harness for the front end.
 *
 * Any byte string is a candidate .lln source and goes down llnc's pipeline
 * as far as the IR: ast_parse -> sema_check -> ir_lower, then the AST and IR
 * dumps (which walk everything the stages built).  Code generation is left
 * out: it runs LLVM, which is not ours to fuzz and would cost milliseconds
 * per input.  Besides crashes and sanitizer reports, the harness checks the
 * promises the rest of llnc builds on:
 *   - a stage fails exactly when it reported an error, so a rejected program
 *     always says why and an accepted one never printed one;
 *   - the IR's layout adds up: every tensor holds the product of its shape,
 *     tensors are laid out back to back from 0 to n_params, hidden layers
 *     back to back from 0 to n_hidden, and every size is positive.
 * Seeds: the examples and tests/bad, in tests/fuzz/corpus/frontend.
 */
#include "llnc.h"

#include "fuzz.h"

static void check_ir(const ir_module *m)
{
	promise(m->n_in > 0 && m->n_out > 0, "inputs and outputs are positive");
	promise(m->n_hidden >= 0 && m->n_layers >= 0 && m->n_tensors >= 0, "counts are non-negative");
	int64_t params = 0;
	for (int i = 0; i < m->n_tensors; i++) {
		const rt_tensor *t = &m->tensors[i];
		promise(t->rank >= 1 && t->rank <= 4, "tensor rank in 1..4");
		int64_t count = 1;
		for (int k = 0; k < t->rank; k++) {
			promise(t->shape[k] > 0, "tensor dimensions are positive");
			count *= t->shape[k];
		}
		promise(t->count == count, "tensor count is the product of its shape");
		promise(t->offset == params, "tensors are laid out back to back");
		params += t->count;
	}
	promise(params == m->n_params, "n_params is the sum of the tensors");
	int64_t hidden = 0;
	for (int i = 0; i < m->n_layers; i++) {
		promise(m->layers[i].size > 0, "hidden layers are not empty");
		promise(m->layers[i].offset == hidden, "hidden layers are laid out back to back");
		hidden += m->layers[i].size;
	}
	promise(hidden == m->n_hidden, "n_hidden is the sum of the layers");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	arena *a = arena_new();
	/* as source_load reads a file: every byte, NULs included */
	char *text = arena_alloc(a, size + 1);
	memcpy(text, data, size);
	source *src = arena_alloc(a, sizeof *src);
	src->path = "fuzz.lln";
	src->text = text;
	src->len = size;
	src->out = fuzz_null();

	ast_program *ast = ast_parse(a, src);
	promise((ast == NULL) == (src->errors > 0), "the parser fails exactly when it reports an error");
	if (ast) {
		ast_dump(fuzz_null(), ast);
		sema_program *p = sema_check(a, ast);
		promise((p == NULL) == (src->errors > 0), "sema fails exactly when it reports an error");
		ir_module *ir = p ? ir_lower(a, p) : NULL;
		if (p)
			promise((ir == NULL) == (src->errors > 0), "ir_lower fails exactly when it reports an error");
		if (ir) {
			check_ir(ir);
			ir_dump(fuzz_null(), ir);
		}
	}
	arena_free(a);
	return 0;
}
