// The process log of `pyoco server` and `pyoco worker`: what the process
// did (a request served, a run claimed, a delivery given back, NATS away),
// one line each on stderr through Boost.Log, as text or as JSON lines.
// Fields are the caller's; none ever carries a run's params, an API key or
// a secret.
#pragma once

#include <boost/json/value.hpp>

#include <boost/json/array.hpp>

#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace pyoco::cluster {

enum class LogLevel { debug, info, warning, error };

// PYOCO_LOG_LEVEL (debug|info|warning|error, default info) and
// PYOCO_LOG_FORMAT (text|json, default text). Throws std::invalid_argument
// naming the variable and what it may be. Call once, before logging.
void configure_process_log_from_env();

// A field's value: text, a number, a flag, or any JSON.
struct LogValue {
  boost::json::value json;
  LogValue(std::string_view s) : json(s) {}
  LogValue(const std::string& s) : json(std::string_view(s)) {}
  LogValue(const char* s) : json(std::string_view(s)) {}
  LogValue(boost::json::value v) : json(std::move(v)) {}
  LogValue(boost::json::array a) : json(std::move(a)) {}
  template <class T>
  requires std::is_arithmetic_v<T> LogValue(T n) : json(n) {}
};

using LogFields = std::initializer_list<std::pair<std::string_view, LogValue>>;

// One line: `2026-11-30T08:16:55.123Z info worker: claimed run_id=... attempt=1`,
// or {"ts": ..., "level": "info", "msg": "worker: claimed", "run_id": ..., ...}.
void log(LogLevel level, std::string_view message, LogFields fields = {});

}  // namespace pyoco::cluster
