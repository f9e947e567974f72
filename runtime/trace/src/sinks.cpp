#include <pyoco/trace/sinks.hpp>

#include <pyoco/core/text.hpp>

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

// Appends `v` with two decimals ("0.12").
void put_ms(std::string& out, double v) {
  char buf[64];
  auto r =
      std::to_chars(buf, buf + sizeof buf, std::isfinite(v) ? v : 0.0, std::chars_format::fixed, 2);
  if (r.ec != std::errc()) r = std::to_chars(buf, buf + sizeof buf, v);  // too long for fixed
  out.append(buf, r.ec == std::errc() ? r.ptr : buf);
}

// Text from a flow or a plugin on a console line: a newline or an escape
// sequence in a node name or a message must not forge or hide a line.
struct Text {
  std::string_view s;
};

void put_one(std::string& out, std::string_view a) { out.append(a); }
void put_one(std::string& out, Text t) { core::append_printable(out, t.s); }
void put(std::string& out) { (void)out; }
template <typename First, typename... More>
void put(std::string& out, First first, More... more) {
  put_one(out, first);
  put(out, more...);
}

void put_count(std::string& out, long long v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// Lines are appended to `out` (without their newline), straight from the
// event's views: a trace line costs no string of its own.
void cute(std::string& out, const RunEvent& e) {
  switch (e.kind) {
    case EventKind::RunStart:
      return put(out, "🐇 pyoco > start flow=", Text{e.flow}, " run_id=", Text{e.run_id});
    case EventKind::NodeStart:
      return put(out, "🏃 start node=", Text{e.node});
    case EventKind::NodeDone:
      put(out, "✅ done node=", Text{e.node}, " (");
      put_ms(out, e.duration_ms);
      return put(out, " ms)");
    case EventKind::NodeError:
      return put(out, "💥 error node=", Text{e.node}, " ", Text{e.message});
    case EventKind::NodeRetry:
      put(out, "🔁 retry node=", Text{e.node}, " attempt=");
      put_count(out, e.attempt);
      put(out, "/");
      put_count(out, e.max_attempts);
      put(out, " in ");
      put_count(out, std::llround(e.delay_ms));
      put(out, " ms");
      if (!e.message.empty()) put(out, ": ", Text{e.message});  // why it failed
      return;
    case EventKind::NodeSkipped:
      return put(out, "⏭️  skip node=", Text{e.node}, " (", Text{e.message}, ")");
    case EventKind::NodeCancelled:
      // Why, as a skip says it: the task's own reason, "run cancelled"...
      put(out, "🛑 cancelled node=", Text{e.node});
      if (!e.message.empty()) put(out, " (", Text{e.message}, ")");
      return;
    case EventKind::Log:
      return put(out, Text{e.message});
    case EventKind::NodesPlanned:
    case EventKind::Heartbeat:
      return;
    case EventKind::RunCancelling:
      return put(out, "🛑 cancelling flow=", Text{e.flow});
    case EventKind::RunEnd:
      switch (e.status) {
        case core::RunStatus::Completed:
          return put(out, "🥕 done flow=", Text{e.flow});
        case core::RunStatus::Cancelled:
          return put(out, "🛑 cancelled flow=", Text{e.flow});
        default:
          put(out, "💥 failed flow=", Text{e.flow});
          if (!e.message.empty()) put(out, " (", Text{e.message}, ")");
          return;
      }
  }
}

void plain(std::string& out, const RunEvent& e) {
  switch (e.kind) {
    case EventKind::RunStart:
      return put(out, "INFO pyoco start flow=", Text{e.flow}, " run_id=", Text{e.run_id});
    case EventKind::NodeStart:
      return put(out, "INFO pyoco start node=", Text{e.node});
    case EventKind::NodeDone:
      put(out, "INFO pyoco end node=", Text{e.node}, " dur_ms=");
      return put_ms(out, e.duration_ms);
    case EventKind::NodeError:
      return put(out, "ERROR pyoco error node=", Text{e.node}, " ", Text{e.message});
    case EventKind::NodeRetry:
      put(out, "WARN pyoco retry node=", Text{e.node}, " attempt=");
      put_count(out, e.attempt);
      put(out, "/");
      put_count(out, e.max_attempts);
      put(out, " delay_ms=");
      put_count(out, std::llround(e.delay_ms));
      if (!e.message.empty()) put(out, " error=", Text{e.message});  // why it failed
      return;
    case EventKind::NodeSkipped:
      return put(out, "WARN pyoco skip node=", Text{e.node}, " reason=", Text{e.message});
    case EventKind::NodeCancelled:
      put(out, "WARN pyoco cancelled node=", Text{e.node});
      if (!e.message.empty()) put(out, " reason=", Text{e.message});  // as a skip's
      return;
    case EventKind::Log:
      return put(out, to_string(e.level), " pyoco log node=", Text{e.node}, " ", Text{e.message});
    case EventKind::NodesPlanned:
    case EventKind::Heartbeat:
      return;
    case EventKind::RunCancelling:
      return put(out, "WARN pyoco cancel flow=", Text{e.flow});
    case EventKind::RunEnd: {
      const char* level = e.status == core::RunStatus::Completed   ? "INFO"
                          : e.status == core::RunStatus::Cancelled ? "WARN"
                                                                   : "ERROR";
      put(out, level, " pyoco end flow=", Text{e.flow}, " status=", to_string(e.status));
      if (!e.message.empty()) put(out, " failed=", Text{e.message});
      return;
    }
  }
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

void json_line(std::string& out, const RunEvent& e) {
  if (e.kind == EventKind::NodesPlanned) return;  // a record keeper's event, not a trace line
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
  // What a plugin said need not be UTF-8; the line must still be JSON.
  out += core::valid_utf8(line);
  out += '}';
}

// Appends the line for `e`; false when the format shows nothing for it.
bool append_line(std::string& out, TraceFormat format, const RunEvent& e) {
  const std::size_t before = out.size();
  switch (format) {
    case TraceFormat::Cute:
      cute(out, e);
      break;
    case TraceFormat::Plain:
      plain(out, e);
      break;
    case TraceFormat::Json:
      json_line(out, e);
      break;
  }
  return out.size() != before;
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
    std::string line;
    if (append_line(line, format_, e)) BOOST_LOG(logger_) << line;
  }

  // One record (and one write) for the lines of a batch: a write per line
  // would cost a run more than its tasks do.
  void on_events(std::span<const RunEvent> events) override {
    std::string lines;
    for (const RunEvent& e : events) {
      const std::size_t before = lines.size();
      if (before != 0) lines += '\n';
      if (!append_line(lines, format_, e) && before != 0) lines.resize(before);
    }
    if (!lines.empty()) BOOST_LOG(logger_) << lines;
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
  std::string line;
  append_line(line, format, event);
  return line;
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
