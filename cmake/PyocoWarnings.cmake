# Warnings are errors for project code (never for dependencies' headers,
# which are included as system headers by their imported targets).
function(pyoco_target_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror)
  # clang (the fuzz tree, fuzz/) calls the anonymous structs in value.hpp's
  # union an extension; every compiler we build with accepts them.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    target_compile_options(${target} PRIVATE -Wno-nested-anon-types)
  endif()
endfunction()
