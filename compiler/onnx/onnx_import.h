/* onnx_import.h: `llnc import`, ONNX networks as lln models
 * (compiler/onnx_import.c; formats and rules in docs/formats.md). */
#ifndef LLN_ONNX_IMPORT_H
#define LLN_ONNX_IMPORT_H

#include <stddef.h>
#include <stdint.h>

/* Converts the ONNX model in data[0..len) (read from `path`, for messages)
 * into OUT.lln and OUT.safetensors, both written atomically; out NULL only
 * checks.  0, or -1 with "PATH: what is wrong" in err (RT_ERRLEN bytes). */
int onnx_import_buffer(const char *path, const uint8_t *data, size_t len, const char *out, char *err);
/* The command line: argv[0] names the command in messages.  Exit status. */
int onnx_import_main(int argc, char **argv);

#endif
