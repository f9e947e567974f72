// Written by hand rather than through boost::json values: a page is
// rewritten every time one of its tasks changes, and building a DOM per
// record would cost the run more than the store's write does.
#include "task_page.hpp"
#include <pyoco/core/value.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>

namespace pyoco::store {

namespace {

std::int64_t to_us(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}
Clock::time_point from_us(std::int64_t us) {
  return Clock::time_point(
      std::chrono::duration_cast<Clock::duration>(std::chrono::microseconds(us)));
}

// Bytes >= 0x80 pass through as they are (a plugin's message need not be
// UTF-8); the reader accepts them back. Runs of bytes that need no escape
// are copied whole: most strings (node and task names, states) have none.
void put_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  std::size_t copied = 0;  // s[copied, i) is still to copy
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto u = static_cast<unsigned char>(s[i]);
    if (u >= 0x20 && u != '"' && u != '\\') continue;
    out.append(s.data() + copied, i - copied);
    copied = i + 1;
    if (u < 0x20) {
      const char escaped[] = {'\\', 'u', '0', '0', kHex[u >> 4], kHex[u & 15]};
      out.append(escaped, sizeof escaped);
    } else {
      const char escaped[] = {'\\', s[i]};
      out.append(escaped, sizeof escaped);
    }
  }
  out.append(s.data() + copied, s.size() - copied);
  out += '"';
}

template <typename Number>
void put_number(std::string& out, Number v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// `,"key":` in one append.
template <std::size_t N>
void put_key(std::string& out, const char (&key)[N]) {
  char buf[N + 3];
  buf[0] = ',';
  buf[1] = '"';
  std::memcpy(buf + 2, key, N - 1);
  buf[N + 1] = '"';
  buf[N + 2] = ':';
  out.append(buf, sizeof buf);
}

void put_record(std::string& out, const TaskRecord& t, std::uint32_t seq) {
  out += "{\"seq\":";
  put_number(out, seq);
  put_key(out, "node");
  put_string(out, t.node);
  put_key(out, "task");
  put_string(out, t.task);
  put_key(out, "state");
  put_string(out, core::to_string(t.state));
  put_key(out, "attempts");
  put_number(out, t.attempts);
  if (t.started != Clock::time_point{}) {
    put_key(out, "started_us");
    put_number(out, to_us(t.started));
  }
  if (t.ended != Clock::time_point{}) {
    put_key(out, "ended_us");
    put_number(out, to_us(t.ended));
    put_key(out, "duration_ms");
    put_number(out, std::isfinite(t.duration_ms) ? t.duration_ms : 0.0);
  }
  if (!t.error.empty()) {
    put_key(out, "error");
    put_string(out, t.error);
  }
  if (!t.output_summary.empty()) {
    put_key(out, "output");
    put_string(out, t.output_summary);
  }
  if (t.heartbeat_at != Clock::time_point{}) {
    put_key(out, "progress");
    put_number(out, std::isfinite(t.progress) ? t.progress : -1.0);
    put_key(out, "heartbeat");
    put_string(out, t.heartbeat);
    put_key(out, "heartbeat_us");
    put_number(out, to_us(t.heartbeat_at));
  }
  if (!t.artifacts.empty()) {
    put_key(out, "artifacts");
    out += '[';
    for (std::size_t i = 0; i < t.artifacts.size(); ++i) {
      const core::ArtifactRecord& a = t.artifacts[i];
      out += i ? ",{\"name\":" : "{\"name\":";
      put_string(out, a.name);
      put_key(out, "path");
      put_string(out, a.path);
      put_key(out, "size");
      put_number(out, a.size);
      put_key(out, "sha256");
      put_string(out, a.sha256);
      put_key(out, "media_type");
      put_string(out, a.media_type);
      out += '}';
    }
    out += ']';
  }
  out += '}';
}

std::string text_of(const boost::json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}
std::int64_t int_of(const boost::json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr) return 0;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64()) return static_cast<std::int64_t>(v->get_uint64());
  if (v->is_double()) return static_cast<std::int64_t>(v->get_double());
  return 0;
}
double real_of(const boost::json::object& o, std::string_view key, double fallback) {
  const auto* v = o.if_contains(key);
  if (v == nullptr || !v->is_number()) return fallback;
  return v->to_number<double>();
}

}  // namespace

std::string encode_task_page(std::span<const TaskRecord> tasks, std::uint32_t first_seq) {
  std::string out;
  out.reserve(tasks.size() * 160);
  out += '[';
  bool first = true;
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    if (tasks[i].node.empty()) continue;
    if (!first) out += ',';
    first = false;
    put_record(out, tasks[i], first_seq + static_cast<std::uint32_t>(i));
  }
  out += ']';
  return out;
}

void decode_task_page(std::string_view text, std::string_view where,
                      std::vector<std::pair<std::uint32_t, TaskRecord>>& out) {
  boost::json::parse_options options = core::json_parse_options();
  options.allow_invalid_utf8 = true;
  boost::system::error_code ec;
  const boost::json::value page = boost::json::parse(text, ec, {}, options);
  if (ec || !page.is_array()) {
    throw StoreError(std::string(where) + ": a page of task records is not a JSON array" +
                     (ec ? " (" + ec.message() + ")" : std::string()));
  }
  for (const boost::json::value& item : page.get_array()) {
    if (!item.is_object()) {
      throw StoreError(std::string(where) + ": a task record is not a JSON object");
    }
    const boost::json::object& o = item.get_object();
    TaskRecord r;
    r.node = text_of(o, "node");
    r.task = text_of(o, "task");
    r.state = core::task_state_from(text_of(o, "state")).value_or(core::TaskState::Failed);
    r.attempts = static_cast<std::uint32_t>(int_of(o, "attempts"));
    r.started = from_us(int_of(o, "started_us"));
    r.ended = from_us(int_of(o, "ended_us"));
    r.duration_ms = real_of(o, "duration_ms", 0);
    r.error = text_of(o, "error");
    r.output_summary = text_of(o, "output");
    r.progress = real_of(o, "progress", -1);
    r.heartbeat = text_of(o, "heartbeat");
    r.heartbeat_at = from_us(int_of(o, "heartbeat_us"));
    if (const auto* list = o.if_contains("artifacts"); list && list->is_array()) {
      for (const boost::json::value& a : list->get_array()) {
        if (!a.is_object()) continue;
        const boost::json::object& ao = a.get_object();
        r.artifacts.push_back(core::ArtifactRecord{text_of(ao, "name"), text_of(ao, "path"),
                                                   static_cast<std::uint64_t>(int_of(ao, "size")),
                                                   text_of(ao, "sha256"),
                                                   text_of(ao, "media_type")});
      }
    }
    out.emplace_back(static_cast<std::uint32_t>(int_of(o, "seq")), std::move(r));
  }
}

TaskPages TaskPages::all(std::string_view run_id, std::span<const TaskRecord> tasks) {
  TaskPages p;
  p.run_id = run_id;
  p.tasks = tasks;
  const std::size_t n = (tasks.size() + kTasksPerPage - 1) / kTasksPerPage;
  for (std::size_t i = 0; i < n; ++i) p.pages.push_back(static_cast<std::uint32_t>(i));
  p.whole = true;
  return p;
}

}  // namespace pyoco::store
