#include "dashboard.hpp"

#include <string>

namespace pyoco::server {

namespace http = boost::beast::http;

namespace {

std::string_view content_type(std::string_view path) {
  auto ends = [&](std::string_view s) {
    return path.size() >= s.size() && path.substr(path.size() - s.size()) == s;
  };
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".svg")) return "image/svg+xml";
  return "text/html; charset=utf-8";
}

}  // namespace

Response dashboard_response(const DashboardFile& file) {
  Response res{http::status::ok, 11};
  res.set(http::field::content_type, content_type(file.path));
  // Scripts and styles from this gateway only, never inline; data comes
  // from the API as JSON and goes into the page as text. No frames, no
  // form posts, nothing sent as a referrer.
  res.set("Content-Security-Policy",
          "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
          "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
  res.set("X-Content-Type-Options", "nosniff");
  res.set("Referrer-Policy", "no-referrer");
  res.set("X-Frame-Options", "DENY");
  // The files change with the binary: never kept across a gateway upgrade.
  res.set(http::field::cache_control, "no-cache");
  res.body() = std::string(file.bytes);
  res.prepare_payload();
  return res;
}

}  // namespace pyoco::server
