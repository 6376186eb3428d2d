/* tiny.h: the tensor table llnc gives tests/fuzz/tiny.lln, for the
 * harnesses that read weights and checkpoints without compiling a model.
 * The seeds in tests/fuzz/corpus/{safetensors,checkpoint} were written by
 * `llnc init` and `llnc train` for that model, so mutations of them reach
 * past the header checks into the tensor table. */
#ifndef LLN_FUZZ_TINY_H
#define LLN_FUZZ_TINY_H

#include "rt.h"

enum { TINY_TENSORS = 4, TINY_PARAMS = 17 };

static const rt_tensor tiny_tensors[TINY_TENSORS] = {
	{ .name = "h.weight", .rank = 2, .shape = { 3, 2 }, .offset = 0, .count = 6, .fan_in = 2 },
	{ .name = "h.bias", .rank = 1, .shape = { 3 }, .offset = 6, .count = 3, .fan_in = 2, .is_bias = 1 },
	{ .name = "y.weight", .rank = 2, .shape = { 2, 3 }, .offset = 9, .count = 6, .fan_in = 3 },
	{ .name = "y.bias", .rank = 1, .shape = { 2 }, .offset = 15, .count = 2, .fan_in = 3, .is_bias = 1 },
};

#endif
