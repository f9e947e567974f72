// The dashboard (docs/dashboard.md): a page and its script and style,
// compiled into the binary from runtime/server/dashboard/ and served by the
// gateway with a Content-Security-Policy that allows no inline script.
#pragma once

#include <pyoco/server/http.hpp>

#include <span>
#include <string_view>

namespace pyoco::server {

struct DashboardFile {
  std::string_view path;   // "/", "/dashboard/app.js"...
  std::string_view bytes;  // as in the source tree
};

// Every file, in the generated dashboard_files.cpp.
std::span<const DashboardFile> dashboard_files();

// A file's answer: its type, the security headers, caching by content.
Response dashboard_response(const DashboardFile& file);

}  // namespace pyoco::server
