#include <pyoco/trace/sinks.hpp>

#include <boost/json.hpp>
#include <boost/log/attributes/constant.hpp>
#include <boost/log/core.hpp>
#include <boost/log/expressions.hpp>
#include <boost/log/sinks/sync_frontend.hpp>
#include <boost/log/sinks/text_ostream_backend.hpp>
#include <boost/log/sources/logger.hpp>
#include <boost/log/sources/record_ostream.hpp>
#include <boost/smart_ptr/make_shared_object.hpp>
#include <boost/smart_ptr/shared_ptr.hpp>

#include <atomic>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>

namespace pyoco::trace {

namespace {

std::string ms(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

std::string cute(const RunEvent& e) {
  const std::string node(e.node), flow(e.flow), msg(e.message);
  switch (e.kind) {
    case EventKind::RunStart:
      return "🐇 pyoco > start flow=" + flow + " run_id=" + std::string(e.run_id);
    case EventKind::NodeStart:
      return "🏃 start node=" + node;
    case EventKind::NodeDone:
      return "✅ done node=" + node + " (" + ms(e.duration_ms) + " ms)";
    case EventKind::NodeError:
      return "💥 error node=" + node + " " + msg;
    case EventKind::NodeRetry:
      return "🔁 retry node=" + node + " attempt=" + std::to_string(e.attempt) + "/" +
             std::to_string(e.max_attempts) + " in " + std::to_string(std::llround(e.delay_ms)) +
             " ms";
    case EventKind::NodeSkipped:
      return "⏭️  skip node=" + node + " (" + msg + ")";
    case EventKind::NodeCancelled:
      return "🛑 cancelled node=" + node;
    case EventKind::Log:
      return msg;
    case EventKind::NodesPlanned:
    case EventKind::Heartbeat:
      return {};
    case EventKind::RunCancelling:
      return "🛑 cancelling flow=" + flow;
    case EventKind::RunEnd:
      switch (e.status) {
        case core::RunStatus::Completed:
          return "🥕 done flow=" + flow;
        case core::RunStatus::Cancelled:
          return "🛑 cancelled flow=" + flow;
        default:
          return "💥 failed flow=" + flow + (msg.empty() ? "" : " (" + msg + ")");
      }
  }
  return {};
}

std::string plain(const RunEvent& e) {
  const std::string node(e.node), flow(e.flow), msg(e.message);
  switch (e.kind) {
    case EventKind::RunStart:
      return "INFO pyoco start flow=" + flow + " run_id=" + std::string(e.run_id);
    case EventKind::NodeStart:
      return "INFO pyoco start node=" + node;
    case EventKind::NodeDone:
      return "INFO pyoco end node=" + node + " dur_ms=" + ms(e.duration_ms);
    case EventKind::NodeError:
      return "ERROR pyoco error node=" + node + " " + msg;
    case EventKind::NodeRetry:
      return "WARN pyoco retry node=" + node + " attempt=" + std::to_string(e.attempt) + "/" +
             std::to_string(e.max_attempts) +
             " delay_ms=" + std::to_string(std::llround(e.delay_ms));
    case EventKind::NodeSkipped:
      return "WARN pyoco skip node=" + node + " reason=" + msg;
    case EventKind::NodeCancelled:
      return "WARN pyoco cancelled node=" + node;
    case EventKind::Log:
      return std::string(to_string(e.level)) + " pyoco log node=" + node + " " + msg;
    case EventKind::NodesPlanned:
    case EventKind::Heartbeat:
      return {};
    case EventKind::RunCancelling:
      return "WARN pyoco cancel flow=" + flow;
    case EventKind::RunEnd: {
      const char* level = e.status == core::RunStatus::Completed   ? "INFO"
                          : e.status == core::RunStatus::Cancelled ? "WARN"
                                                                   : "ERROR";
      return std::string(level) + " pyoco end flow=" + flow + " status=" + to_string(e.status) +
             (msg.empty() ? "" : " failed=" + msg);
    }
  }
  return {};
}

// Milliseconds as a plain JSON decimal rounded to the microsecond (0.089,
// 12.5, 3), never in exponent form as boost::json writes small doubles.
std::string json_ms(double v) {
  if (!std::isfinite(v)) return "0";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, 3);
  std::string s(buf, r.ptr);
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  if (s == "-0") s = "0";
  return s;
}

std::string json_line(const RunEvent& e) {
  if (e.kind == EventKind::NodesPlanned) return {};  // a record keeper's event, not a trace line
  // Millisecond fields are spliced in as text, in this place among the keys.
  std::vector<std::pair<std::string, std::string>> ms_fields;
  boost::json::object o;
  o["ts"] = utc_timestamp(e.time);
  o["event"] = to_string(e.kind);
  o["run_id"] = e.run_id;
  o["flow"] = e.flow;
  if (!e.node.empty()) o["node"] = e.node;
  if (!e.task.empty()) o["task"] = e.task;
  switch (e.kind) {
    case EventKind::NodeStart:
      o["attempt"] = e.attempt;
      break;
    case EventKind::NodeDone:
      ms_fields.emplace_back("duration_ms", json_ms(e.duration_ms));
      break;
    case EventKind::NodeRetry:
      o["attempt"] = e.attempt;
      o["max_attempts"] = e.max_attempts;
      ms_fields.emplace_back("delay_ms", json_ms(e.delay_ms));
      break;
    case EventKind::Log:
      o["level"] = to_string(e.level);
      break;
    case EventKind::Heartbeat:
      o["attempt"] = e.attempt;
      if (e.progress >= 0) ms_fields.emplace_back("progress", json_ms(e.progress));
      break;
    case EventKind::RunEnd:
      o["status"] = to_string(e.status);
      break;
    default:
      break;
  }
  std::string line = boost::json::serialize(o);
  line.pop_back();  // the closing brace
  for (const auto& [key, text] : ms_fields) line += ",\"" + key + "\":" + text;
  if (!e.message.empty()) {
    line += ",\"message\":" + boost::json::serialize(boost::json::value(e.message));
  }
  return line + "}";
}

namespace logging = boost::log;
using Backend = logging::sinks::text_ostream_backend;
using Frontend = logging::sinks::synchronous_sink<Backend>;

BOOST_LOG_ATTRIBUTE_KEYWORD(sink_id, "PyocoTraceSink", unsigned)

// One Boost.Log sink per trace sink, selected by an attribute, so that the
// console and a --trace-file each get their own format.
class BoostLogSink : public EventListener {
 public:
  BoostLogSink(TraceFormat format, std::shared_ptr<std::ostream> out)
      : format_(format), out_(std::move(out)), id_(next_id()) {
    auto backend = boost::make_shared<Backend>();
    backend->add_stream(boost::shared_ptr<std::ostream>(out_.get(), [](std::ostream*) {}));
    backend->auto_flush(true);
    frontend_ = boost::make_shared<Frontend>(backend);
    frontend_->set_filter(sink_id == id_);
    frontend_->set_formatter(logging::expressions::stream << logging::expressions::smessage);
    logging::core::get()->add_sink(frontend_);
    logger_.add_attribute("PyocoTraceSink", logging::attributes::constant<unsigned>(id_));
  }
  ~BoostLogSink() override { logging::core::get()->remove_sink(frontend_); }

  void on_event(const RunEvent& e) override {
    const std::string line = format_event(format_, e);
    if (line.empty()) return;
    BOOST_LOG(logger_) << line;
  }

 private:
  static unsigned next_id() {
    static std::atomic<unsigned> id{0};
    return ++id;
  }

  TraceFormat format_;
  std::shared_ptr<std::ostream> out_;
  unsigned id_;
  boost::shared_ptr<Frontend> frontend_;
  logging::sources::logger_mt logger_;
};

}  // namespace

std::string format_event(TraceFormat format, const RunEvent& event) {
  switch (format) {
    case TraceFormat::Cute:
      return cute(event);
    case TraceFormat::Plain:
      return plain(event);
    case TraceFormat::Json:
      return json_line(event);
  }
  return {};
}

std::shared_ptr<EventListener> make_trace_sink(TraceFormat format,
                                               std::shared_ptr<std::ostream> out) {
  return std::make_shared<BoostLogSink>(format, std::move(out));
}

const char* to_string(LogLevel l) {
  switch (l) {
    case LogLevel::Debug:
      return "DEBUG";
    case LogLevel::Info:
      return "INFO";
    case LogLevel::Warn:
      return "WARN";
    case LogLevel::Error:
      return "ERROR";
  }
  return "INFO";
}

std::string utc_timestamp(std::chrono::system_clock::time_point t) {
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(us % 1000000));
  return buf;
}

}  // namespace pyoco::trace
