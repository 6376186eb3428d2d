/* onnx_export.h: `llnc export`, lln models as ONNX graphs
 * (compiler/onnx_export.c; the graph's form in docs/formats.md). */
#ifndef LLN_ONNX_EXPORT_H
#define LLN_ONNX_EXPORT_H

#include "llnc.h"

/* Writes the model m with parameters P (m->n_params floats) to `path` as
 * an ONNX model (opset 13), atomically.  0, or -1 with "PATH: what is
 * wrong" in err (RT_ERRLEN bytes). */
int onnx_export(const ir_module *m, const float *P, const char *path, char *err);

#endif
