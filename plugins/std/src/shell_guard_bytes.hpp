// The shell guard program (src/shell_guard.c, pyoco-shell-guard), built into
// this library: its bytes, generated at build time (embed_guard.cmake).
// std/shell runs it from a memfd (shell.cpp).
#pragma once

#include <cstddef>

namespace pyoco_std {

extern const unsigned char kShellGuard[];
extern const std::size_t kShellGuardSize;

}  // namespace pyoco_std
