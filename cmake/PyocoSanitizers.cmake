# The sanitizer options every test of a sanitizer build runs with (the asan
# and tsan presets), set on each CTest entry so that `ctest --preset asan`
# and `ctest --test-dir build/asan` behave alike. A test's children (the
# `pyoco` binary, examples it builds) inherit them. Options already in the
# environment come after these, so a developer's own win.
#
# ASan + UBSan:
#   detect_leaks=1, abort_on_error=1: LeakSanitizer at exit; any report aborts.
#   intercept_tls_get_addr=0: the dynamic TLS tracking of GCC 12's
#     libsanitizer misreads glibc >= 2.25's blocks (it takes one for a
#     glibc 2.19 block and reads a bogus range from before it), and
#     LeakSanitizer then crashes ("Tracer caught signal 11 ... DTLS") when a
#     thread that used a dlopen'd plugin's thread_local is still alive at
#     exit — which `pyoco run` allows: a worker stuck in a body that ignores
#     cancel is detached (docs/architecture.md, the run model).
#     google/sanitizers#1322. The blocks are still scanned: they are heap
#     chunks reachable from the thread's DTV, itself reachable from its TCB.
#   print_stacktrace=1, halt_on_error=1: UBSan says where, and stops.
# TSan:
#   halt_on_error=1: the first race fails the test.
#   second_deadlock_stack=1: a lock-order report shows both acquisitions.
set(PYOCO_SANITIZER_TEST_ENV "")
if(CMAKE_CXX_FLAGS MATCHES "-fsanitize=[^ ]*address")
  list(APPEND PYOCO_SANITIZER_TEST_ENV
    "ASAN_OPTIONS=string_prepend:detect_leaks=1:abort_on_error=1:intercept_tls_get_addr=0:")
endif()
if(CMAKE_CXX_FLAGS MATCHES "-fsanitize=[^ ]*undefined")
  list(APPEND PYOCO_SANITIZER_TEST_ENV "UBSAN_OPTIONS=string_prepend:print_stacktrace=1:halt_on_error=1:")
endif()
if(CMAKE_CXX_FLAGS MATCHES "-fsanitize=[^ ]*thread")
  list(APPEND PYOCO_SANITIZER_TEST_ENV
    "TSAN_OPTIONS=string_prepend:halt_on_error=1:second_deadlock_stack=1:")
endif()

# pyoco_sanitizer_test_env(<test>...): gives the tests the options above.
function(pyoco_sanitizer_test_env)
  if(PYOCO_SANITIZER_TEST_ENV)
    set_property(TEST ${ARGN} APPEND PROPERTY ENVIRONMENT_MODIFICATION ${PYOCO_SANITIZER_TEST_ENV})
  endif()
endfunction()
