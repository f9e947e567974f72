// A listener is the embedder's code, called on the engine's threads or an
// EventQueue's: what it throws must not end the process.
#include <pyoco/trace/event.hpp>

#include <atomic>
#include <cstdio>
#include <exception>

namespace pyoco::trace {

namespace {

// Said at most this many times a process: a listener that throws at every
// event would otherwise write a line per event.
constexpr int kSaidAtMost = 5;
std::atomic<int> said{0};

void say(const char* what) noexcept {
  const int n = said.fetch_add(1, std::memory_order_relaxed);
  if (n >= kSaidAtMost) return;
  std::fprintf(stderr,
               "pyoco: an event listener threw (%s); it did not hear those events, the run goes "
               "on%s\n",
               what, n + 1 == kSaidAtMost ? " (further throws are not shown)" : "");
}

template <class Call>
void guarded(Call call) noexcept {
  try {
    call();
  } catch (const std::exception& e) {
    say(e.what());
  } catch (...) {
    say("an exception not derived from std::exception");
  }
}

}  // namespace

void notify(EventListener& listener, const RunEvent& event) noexcept {
  guarded([&] { listener.on_event(event); });
}

void notify(EventListener& listener, std::span<const RunEvent> events) noexcept {
  guarded([&] { listener.on_events(events); });
}

}  // namespace pyoco::trace
