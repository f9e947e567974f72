// Base64 (RFC 4648): the standard alphabet with padding, for bytes in JSON,
// and the URL-safe one without padding, for tokens (API keys, cursors).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace pyoco::core {

std::string base64(std::string_view bytes);
std::string base64url(std::string_view bytes);  // no '=' padding
// Nullopt for a character outside the URL-safe alphabet ('=' padding is
// accepted at the end) or an impossible length.
std::optional<std::string> from_base64url(std::string_view text);
// The same of the standard alphabet ('+' and '/'), as JetStream's API
// gives a stored message's bytes.
std::optional<std::string> from_base64(std::string_view text);

}  // namespace pyoco::core
