# The libFuzzer targets (fuzz/), from a normal build: a second build tree,
# <build>/fuzz, configures this same source with clang and PYOCO_FUZZ_ONLY
# (only the libraries the fuzzers link, instrumented), and is built as part
# of this one. Each target gets a CTest entry (label integration) that runs
# it for a few seconds from its seed corpus and replays its regressions.
# tools/fuzz.sh runs one for long.

# Keep in step with fuzz/CMakeLists.txt.
set(PYOCO_FUZZ_TARGETS graph_dsl expression flow_yaml flow_toml manifest elf)
# Seconds of fuzzing per target in the test suite: a smoke run, ~30 s in all.
set(PYOCO_FUZZ_SMOKE_SECONDS 3 CACHE STRING "Seconds each fuzz_* test fuzzes for")

find_program(PYOCO_FUZZ_CXX NAMES clang++ clang++-14)
find_program(PYOCO_FUZZ_CC NAMES clang clang-14)
set(_pyoco_no_fuzz "run tools/setup.sh (it installs clang and libclang-rt-14-dev), or configure \
with -DPYOCO_BUILD_FUZZERS=OFF")
if(NOT PYOCO_FUZZ_CXX OR NOT PYOCO_FUZZ_CC)
  message(FATAL_ERROR "pyoco: the fuzzers need clang, which is not installed: ${_pyoco_no_fuzz}")
endif()
# libFuzzer is a separate package of clang's runtime: ask once whether a
# fuzzer links, for a clear message now instead of a link error later.
if(NOT PYOCO_FUZZ_LINKS)
  set(_dir "${PROJECT_BINARY_DIR}/CMakeFiles/pyoco_fuzz_check")
  file(WRITE "${_dir}/check.cpp"
       "#include <cstddef>\n#include <cstdint>\n"
       "extern \"C\" int LLVMFuzzerTestOneInput(const std::uint8_t*, std::size_t) { return 0; }\n")
  execute_process(
    COMMAND "${PYOCO_FUZZ_CXX}" -fsanitize=fuzzer,address,undefined check.cpp -o check
    WORKING_DIRECTORY "${_dir}" RESULT_VARIABLE _result ERROR_VARIABLE _error OUTPUT_QUIET)
  if(NOT _result EQUAL 0)
    message(FATAL_ERROR "pyoco: ${PYOCO_FUZZ_CXX} cannot link a libFuzzer target (${_error}): "
                        "${_pyoco_no_fuzz}")
  endif()
  set(PYOCO_FUZZ_LINKS ON CACHE INTERNAL "clang links libFuzzer targets")
endif()

set(_fuzz_dir "${PROJECT_BINARY_DIR}/fuzz")
set(_fuzzers "")
foreach(_target IN LISTS PYOCO_FUZZ_TARGETS)
  list(APPEND _fuzzers "${_fuzz_dir}/bin/fuzz_${_target}")
endforeach()

include(ExternalProject)
ExternalProject_Add(pyoco_fuzzers
  SOURCE_DIR "${PROJECT_SOURCE_DIR}"
  BINARY_DIR "${_fuzz_dir}"
  PREFIX "${PROJECT_BINARY_DIR}/CMakeFiles/pyoco_fuzzers"
  CMAKE_ARGS
    -DPYOCO_FUZZ_ONLY=ON
    "-DCMAKE_CXX_COMPILER=${PYOCO_FUZZ_CXX}"
    "-DCMAKE_C_COMPILER=${PYOCO_FUZZ_CC}"
    "-DCMAKE_CXX_COMPILER_LAUNCHER=${CMAKE_CXX_COMPILER_LAUNCHER}"
    "-DCMAKE_C_COMPILER_LAUNCHER=${CMAKE_C_COMPILER_LAUNCHER}"
  # The inner build decides what is out of date; asking it costs little.
  BUILD_ALWAYS ON
  BUILD_BYPRODUCTS ${_fuzzers}
  INSTALL_COMMAND "")

if(PYOCO_BUILD_TESTS)
  foreach(_target IN LISTS PYOCO_FUZZ_TARGETS)
    add_test(NAME fuzz_${_target}
             COMMAND "${PROJECT_SOURCE_DIR}/fuzz/smoke.sh" "${_fuzz_dir}/bin/fuzz_${_target}"
                     "${PROJECT_SOURCE_DIR}/fuzz" ${PYOCO_FUZZ_SMOKE_SECONDS})
    set_tests_properties(fuzz_${_target} PROPERTIES LABELS integration TIMEOUT 120)
  endforeach()
endif()
