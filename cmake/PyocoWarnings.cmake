# Warnings are errors for project code (never for dependencies' headers,
# which are included as system headers by their imported targets).
function(pyoco_target_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror)
endfunction()
