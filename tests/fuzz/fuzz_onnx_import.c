/* fuzz_onnx_import.c: libFuzzer harness for `llnc import`
 * (compiler/onnx_import.c).
 *
 * Each input is a candidate ONNX file, converted as `llnc import` converts
 * it but without writing the outputs.  Besides crashes and sanitizer
 * reports it checks the importer's promise: a failure is a message that
 * starts with the file's name.  Seeds: tests/fuzz/corpus/onnx_import (the
 * models of tests/data/onnx).
 */
#include "rt.h"
#include "onnx/onnx_import.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[RT_ERRLEN] = "";
	if (onnx_import_buffer("fuzz.onnx", data, size, NULL, err) != 0)
		promise(strncmp(err, "fuzz.onnx: ", 11) == 0, "an import error starts with the file's name");
	return 0;
}
