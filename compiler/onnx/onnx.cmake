# onnx.cmake: the ONNX importer and exporter (llnc import, llnc export).
# The C code for ONNX's schema is generated at build time by protoc-c from
# compiler/onnx/onnx.proto (a copy of the schema Debian's libonnx-dev
# installs; its licence is in compiler/onnx/README.md), into the build tree.
pkg_check_modules(PROTOBUF_C REQUIRED libprotobuf-c)
find_program(PROTOC_C NAMES protoc-c REQUIRED)
set(ONNX_GEN_DIR ${CMAKE_CURRENT_BINARY_DIR}/gen/onnx)
file(MAKE_DIRECTORY ${ONNX_GEN_DIR})
add_custom_command(
  OUTPUT ${ONNX_GEN_DIR}/onnx.pb-c.c ${ONNX_GEN_DIR}/onnx.pb-c.h
  COMMAND ${PROTOC_C} --c_out=${ONNX_GEN_DIR} -I${CMAKE_CURRENT_SOURCE_DIR}/compiler/onnx
          ${CMAKE_CURRENT_SOURCE_DIR}/compiler/onnx/onnx.proto
  DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/compiler/onnx/onnx.proto
  COMMENT "protoc-c onnx.proto")
add_library(llnonnx STATIC compiler/onnx_import.c ${ONNX_GEN_DIR}/onnx.pb-c.c)
target_include_directories(llnonnx PUBLIC compiler runtime ${ONNX_GEN_DIR} ${PROTOBUF_C_INCLUDE_DIRS})
target_link_libraries(llnonnx PUBLIC llnrt_st ${PROTOBUF_C_LINK_LIBRARIES})
# The exporter (llnc export) walks the IR, so it needs the compiler's core.
add_library(llnonnx_export STATIC compiler/onnx_export.c)
target_link_libraries(llnonnx_export PUBLIC llnonnx llncore)
target_link_libraries(llnc PRIVATE llnonnx_export)
if(TARGET test_interop)
  target_link_libraries(test_interop PRIVATE llnonnx_export)
endif()
# The importer's libFuzzer harness, with the others of tests/fuzz.
if(LLN_FUZZ)
  add_executable(fuzz_onnx_import tests/fuzz/fuzz_onnx_import.c)
  target_link_libraries(fuzz_onnx_import PRIVATE llnonnx)
  target_link_options(fuzz_onnx_import PRIVATE -fsanitize=fuzzer)
  add_dependencies(fuzz fuzz_onnx_import)
endif()
