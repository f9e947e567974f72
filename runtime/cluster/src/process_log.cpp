#include <pyoco/cluster/process_log.hpp>

#include <boost/core/null_deleter.hpp>
#include <boost/json.hpp>
#include <boost/log/attributes/constant.hpp>
#include <boost/log/core.hpp>
#include <boost/log/expressions.hpp>
#include <boost/log/sinks/sync_frontend.hpp>
#include <boost/log/sinks/text_ostream_backend.hpp>
#include <boost/log/sources/logger.hpp>
#include <boost/log/sources/record_ostream.hpp>
#include <boost/make_shared.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <mutex>
#include <stdexcept>
#include <string>

namespace pyoco::cluster {

namespace logging = boost::log;
namespace json = boost::json;

namespace {

BOOST_LOG_ATTRIBUTE_KEYWORD(process_log, "PyocoProcessLog", bool)

std::atomic<LogLevel> threshold{LogLevel::info};
std::atomic<bool> as_json{false};

const char* name_of(LogLevel l) {
  switch (l) {
    case LogLevel::debug:
      return "debug";
    case LogLevel::info:
      return "info";
    case LogLevel::warning:
      return "warning";
    case LogLevel::error:
      return "error";
  }
  return "info";
}

std::string utc_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms));
  return buf;
}

// The stderr sink, made once; records of the process log only (the trace's
// sinks carry an attribute of their own).
logging::sources::logger_mt& logger() {
  static logging::sources::logger_mt* instance = [] {
    using Backend = logging::sinks::text_ostream_backend;
    auto backend = boost::make_shared<Backend>();
    backend->add_stream(boost::shared_ptr<std::ostream>(&std::clog, boost::null_deleter()));
    backend->auto_flush(true);
    auto sink = boost::make_shared<logging::sinks::synchronous_sink<Backend>>(backend);
    sink->set_filter(logging::expressions::has_attr(process_log));
    sink->set_formatter(logging::expressions::stream << logging::expressions::smessage);
    logging::core::get()->add_sink(sink);
    auto* l = new logging::sources::logger_mt;  // lives as long as the process; any thread
    l->add_attribute("PyocoProcessLog", logging::attributes::constant<bool>(true));
    return l;
  }();
  return *instance;
}

}  // namespace

void configure_process_log_from_env() {
  if (const char* v = std::getenv("PYOCO_LOG_LEVEL"); v != nullptr && *v != '\0') {
    const std::string s = v;
    if (s == "debug") {
      threshold = LogLevel::debug;
    } else if (s == "info") {
      threshold = LogLevel::info;
    } else if (s == "warning") {
      threshold = LogLevel::warning;
    } else if (s == "error") {
      threshold = LogLevel::error;
    } else {
      throw std::invalid_argument("PYOCO_LOG_LEVEL=" + s + ": debug, info, warning or error");
    }
  }
  if (const char* v = std::getenv("PYOCO_LOG_FORMAT"); v != nullptr && *v != '\0') {
    const std::string s = v;
    if (s != "text" && s != "json") {
      throw std::invalid_argument("PYOCO_LOG_FORMAT=" + s + ": text or json");
    }
    as_json = s == "json";
  }
}

void log(LogLevel level, std::string_view message, LogFields fields) {
  if (level < threshold.load()) return;
  std::string line;
  if (as_json) {
    json::object o{{"ts", utc_now()}, {"level", name_of(level)}, {"msg", message}};
    for (const auto& [k, v] : fields) o[k] = v.json;
    line = json::serialize(o);
  } else {
    line = utc_now() + " " + name_of(level) + " " + std::string(message);
    for (const auto& [k, field] : fields) {
      const json::value& v = field.json;
      if (v.is_null()) continue;
      line += " ";
      line += k;
      line += "=";
      // Plain when it reads plainly; quoted (JSON, which escapes control
      // characters) when a space, quote, `=` or control character would make
      // the line ambiguous or play tricks on a terminal.
      bool plain = v.is_string() && !v.as_string().empty();
      for (const char c : plain ? std::string_view(v.as_string()) : std::string_view()) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f || c == ' ' || c == '"' || c == '=') plain = false;
      }
      if (v.is_double()) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.3f", v.as_double());
        line += buf;
      } else {
        line += plain ? std::string(v.as_string()) : json::serialize(v);
      }
    }
  }
  BOOST_LOG(logger()) << line;
}

}  // namespace pyoco::cluster
