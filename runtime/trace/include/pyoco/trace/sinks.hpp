// Trace sinks: run events rendered as lines (cute, plain or JSON) and
// written through Boost.Log, so concurrent tasks never interleave within a
// line and several sinks (console, file) can watch one run.
#pragma once

#include <pyoco/trace/event.hpp>

#include <chrono>
#include <memory>
#include <ostream>
#include <string>

namespace pyoco::trace {

enum class TraceFormat { Cute, Plain, Json };

// "DEBUG", "INFO", "WARN", "ERROR".
const char* to_string(LogLevel level);

// UTC, ISO 8601 with microseconds: "2026-11-23T03:17:42.123456Z".
std::string utc_timestamp(std::chrono::system_clock::time_point t);

// The line for `event` without its newline; empty when the format shows
// nothing for it.
std::string format_event(TraceFormat format, const RunEvent& event);

// A sink writing one line per event to `out` (which it keeps alive).
// Removing the last reference detaches it from Boost.Log.
std::shared_ptr<EventListener> make_trace_sink(TraceFormat format,
                                               std::shared_ptr<std::ostream> out);

}  // namespace pyoco::trace
