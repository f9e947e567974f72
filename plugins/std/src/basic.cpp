// Small general tasks: echo, sleep, fail, json_get.
#include <charconv>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include "tasks.hpp"

namespace pyoco_std {
namespace {

using pyoco::Context;
using pyoco::Inputs;
using pyoco::Io;
using pyoco::Value;

// A bool or number as text (5, 2.5, true); "" for another kind.
std::string scalar_text(const Value& v) {
  if (v.is_bool()) return v.as<bool>() ? "true" : "false";
  if (v.is_int()) return std::to_string(v.as<std::int64_t>());
  if (v.is_number()) {
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, v.as<double>());
    return r.ec == std::errc() ? std::string(buf, r.ptr) : std::string();
  }
  return {};
}

struct Echo : pyoco::Task {
  static constexpr const char* name = "echo";
  static constexpr const char* summary = "Returns its input `value` unchanged (and logs `message`)";
  static constexpr const char* usage = "greet: {use: \"std/echo\", inputs: {value: \"hi\"}}";
  static inline const std::vector<std::string> tags = {"basic"};
  static inline const std::vector<Io> inputs = {
      {"value", "any", false, "returned as the output (null when absent)"},
      {"message", "string", false, "logged at info level when given; not a string: fails"}};
  static inline const std::vector<Io> outputs = {{"value", "any", false, "the input value"}};
  static constexpr bool stateless = true;  // one instance for every call

  Value run(Context& ctx, const Inputs& in) override {
    // A message of another kind (`-p msg=5` is the number 5) is refused, not
    // dropped: a log line missing without a word is worse than a failed echo.
    if (Value m = in["message"]; !m.is_null()) {
      std::string_view text;
      try {
        text = m.as<std::string_view>();
      } catch (const pyoco::Error& e) {
        // What was given, and the string it would be: echo cannot tell a
        // literal from a param or a node's output, so it names no fix of one.
        const std::string given = scalar_text(m);
        throw pyoco::PermanentError(
            std::string(e.what()) + (given.empty() ? "" : " " + given) +
            "; echo logs a message as it is and converts nothing: give 'message' a string" +
            (given.empty() ? "" : " (\"" + given + "\")"));
      }
      ctx.info(text);
    }
    return in["value"];  // a handle, not a copy
  }
};

struct Sleep : pyoco::AsyncTask {
  static constexpr const char* name = "sleep";
  static constexpr const char* summary = "Waits `seconds`, returning early when cancelled";
  static constexpr const char* usage = "wait: {use: \"std/sleep\", inputs: {seconds: 1.5}}";
  static inline const std::vector<std::string> tags = {"basic", "time"};
  static inline const std::vector<Io> inputs = {{"seconds", "number", true, "how long to wait"}};
  static inline const std::vector<Io> outputs = {
      {"slept", "number", false, "seconds actually waited"}};

  // Waits on a host timer: no thread is held while it sleeps.
  void start(Context& ctx, const Inputs& in, pyoco::Completion done) override {
    const double seconds = in.require<double>("seconds");
    if (!(seconds >= 0)) throw pyoco::Error("input 'seconds' must not be negative");
    const auto start = std::chrono::steady_clock::now();
    ctx.after(std::chrono::duration<double>(seconds), [done, start](bool fired) {
      if (!fired) {
        done.cancelled("cancelled while sleeping");
        return;
      }
      done.ok_with([&] {
        return Value(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      });
    });
  }
};

struct Fail : pyoco::Task {
  static constexpr const char* name = "fail";
  static constexpr const char* summary = "Fails its first `times` calls, then succeeds";
  static constexpr const char* usage =
      "flaky: {use: \"std/fail\", inputs: {times: 2}, retries: 3}   # succeeds on the 3rd try";
  static inline const std::vector<std::string> tags = {"testing"};
  static inline const std::vector<Io> inputs = {
      {"times", "int", false, "failures before success; -1 fails forever (default -1)"},
      {"message", "string", false, "the error message"}};
  static inline const std::vector<Io> outputs = {
      {"attempts", "int", false, "the call that succeeded, counting from 1"}};

  Value run(Context&, const Inputs& in) override {
    const std::int64_t times = in.get<std::int64_t>("times", -1);
    ++calls_;  // per node and run: the instance lives across retries
    if (times < 0 || calls_ <= times) {
      throw pyoco::Error(in.get<std::string>("message", "failing on purpose") + " (call " +
                         std::to_string(calls_) + ")");
    }
    return calls_;
  }

 private:
  std::int64_t calls_ = 0;
};

struct JsonGet : pyoco::Task {
  static constexpr const char* name = "json_get";
  static constexpr const char* summary = "Picks a value out of `value` by a dotted `path`";
  static constexpr const char* usage =
      "city: {use: \"std/json_get\", inputs: {value: \"$node.user.output\", path: "
      "\"address.city\"}}";
  static inline const std::vector<std::string> tags = {"data"};
  static inline const std::vector<Io> inputs = {
      {"value", "any", true, "an object or array"},
      {"path", "string", true, "keys and indices separated by dots, e.g. items.0.name"},
      {"default", "any", false, "returned when the path is absent (else the task fails)"}};
  static inline const std::vector<Io> outputs = {{"value", "any", false, "what the path names"}};
  static constexpr bool stateless = true;  // one instance for every call

  Value run(Context&, const Inputs& in) override {
    Value current = in["value"];
    const std::string path = in.require<std::string>("path");
    std::size_t start = 0;
    while (start <= path.size() && !path.empty()) {
      const std::size_t dot = path.find('.', start);
      const std::string key = path.substr(start, dot - start);
      Value next;
      const bool index = !key.empty() && key.size() < 19 &&
                         key.find_first_not_of("0123456789") == std::string::npos;
      if (current.is_array() && index && std::stoull(key) < current.size()) {
        next = current[std::stoull(key)];
      } else if (current.is_object() && current.contains(key)) {
        next = current[key];
      } else {
        if (in.contains("default")) return in["default"];
        throw pyoco::Error("path '" + path + "': no '" + key + "' in " +
                           (current.is_object()  ? "the object"
                            : current.is_array() ? "the array"
                                                 : "a non-container value"));
      }
      current = next;
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    return current;
  }
};

}  // namespace

void register_basic_tasks(pyoco::Registry& registry) {
  registry.add<Echo>().add<Sleep>().add<Fail>().add<JsonGet>();
}

}  // namespace pyoco_std
