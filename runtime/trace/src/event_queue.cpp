#include <pyoco/trace/event_queue.hpp>

#include <algorithm>
#include <cstring>

namespace pyoco::trace {

// What on_event copies, kept compact: the event's views are re-pointed at
// text this batch owns (in chunks that never move), its output Value and
// its rare parts (artifacts, planned nodes) are held beside it. A run's id
// and flow name, the same in every event, are stored once per batch.
class EventQueue::Batch {
 public:
  void add(const RunEvent& e) {
    Entry& entry = entries_.emplace_back();
    try {
      fill(entry, e);
    } catch (...) {
      entries_.pop_back();  // never an entry whose views point at the caller's storage
      throw;
    }
    if (e.kind == EventKind::Log) log_bytes_ += e.message.size() + EventListener::kLogLineOverhead;
  }

  std::size_t size() const { return entries_.size(); }
  std::size_t log_bytes() const { return log_bytes_; }
  bool empty() const { return entries_.empty(); }

  // The events as listeners take them, valid until clear().
  void views(std::size_t first, std::size_t end, std::vector<RunEvent>& out) const {
    out.clear();
    for (std::size_t i = first; i < end; ++i) {
      const Entry& entry = entries_[i];
      RunEvent& v = out.emplace_back(entry.event);
      if (entry.value != kNone) {
        (v.kind == EventKind::RunStart ? v.params_value : v.value) = &values_[entry.value];
      }
      if (entry.extra != kNone) {
        const Extra& x = extras_[entry.extra];
        v.artifacts = x.artifacts;
        v.planned = x.planned;
      }
    }
  }

  // Keeps the storage: the next batch fills it again.
  void clear() {
    log_bytes_ = 0;
    entries_.clear();
    values_.clear();
    extras_.clear();
    // A burst's text is let go beyond a few chunks, a long text's at once.
    std::erase_if(chunks_, [](const Chunk& c) { return c.size != kChunk; });
    if (chunks_.size() > kChunksKept) chunks_.resize(kChunksKept);
    chunk_ = 0;
    used_ = 0;
    run_id_ = {};
    flow_ = {};
  }

 private:
  static constexpr std::uint32_t kNone = UINT32_MAX;
  static constexpr std::size_t kChunk = 64 * 1024;
  static constexpr std::size_t kChunksKept = 8;
  struct Extra {
    std::vector<core::ArtifactRecord> artifacts;
    std::vector<PlannedNode> planned;  // views into this batch's text
  };
  struct Entry {
    RunEvent event{};
    std::uint32_t value = kNone;
    std::uint32_t extra = kNone;
  };
  struct Chunk {
    std::unique_ptr<char[]> bytes;
    std::size_t size = 0;
  };

  void fill(Entry& entry, const RunEvent& e) {
    entry.event = e;
    RunEvent& o = entry.event;
    o.run_id = keep_repeated(e.run_id, run_id_);
    o.flow = keep_repeated(e.flow, flow_);
    o.node = keep(e.node);
    o.task = keep(e.task);
    o.message = keep(e.message);
    o.output = keep(e.output);
    o.flow_file = keep(e.flow_file);
    o.params = keep(e.params);
    o.plugins = keep(e.plugins);
    o.value = nullptr;
    o.params_value = nullptr;
    o.artifacts = {};
    o.planned = {};
    if (e.value != nullptr && e.kind == EventKind::NodeDone) {
      entry.value = static_cast<std::uint32_t>(values_.size());
      values_.push_back(*e.value);
    } else if (e.params_value != nullptr && e.kind == EventKind::RunStart) {
      entry.value = static_cast<std::uint32_t>(values_.size());
      values_.push_back(*e.params_value);
    }
    if (!e.artifacts.empty() || !e.planned.empty()) {
      entry.extra = static_cast<std::uint32_t>(extras_.size());
      Extra& x = extras_.emplace_back();
      x.artifacts.assign(e.artifacts.begin(), e.artifacts.end());
      x.planned.reserve(e.planned.size());
      for (const PlannedNode& p : e.planned) {
        x.planned.push_back({keep(p.node), keep(p.task), p.record, keep(p.after)});
      }
    }
  }

  std::string_view keep(std::string_view s) {
    if (s.empty()) return {};
    if (chunk_ >= chunks_.size() || used_ + s.size() > chunks_[chunk_].size) {
      if (chunk_ < chunks_.size() && used_ > 0) ++chunk_;
      used_ = 0;
      // A text longer than a chunk gets one of its own size.
      while (chunk_ < chunks_.size() && chunks_[chunk_].size < s.size()) ++chunk_;
      if (chunk_ >= chunks_.size()) {
        const std::size_t size = std::max(kChunk, s.size());
        chunks_.push_back({std::make_unique<char[]>(size), size});
        chunk_ = chunks_.size() - 1;
      }
    }
    char* at = chunks_[chunk_].bytes.get() + used_;
    std::memcpy(at, s.data(), s.size());
    used_ += s.size();
    return {at, s.size()};
  }
  // Compared by content, never by address: another run's id may sit where
  // an ended run's was.
  std::string_view keep_repeated(std::string_view s, std::string_view& last) {
    if (s == last) return last;
    last = keep(s);
    return last;
  }

  std::vector<Entry> entries_;
  std::vector<core::Value> values_;
  std::vector<Extra> extras_;
  std::vector<Chunk> chunks_;
  std::size_t chunk_ = 0, used_ = 0;  // where the next text goes
  std::size_t log_bytes_ = 0;         // of its log lines, as EventQueue counts them
  std::string_view run_id_, flow_;    // the last ones kept
};

EventQueue::EventQueue() : queue_(std::make_unique<Batch>()), thread_([this] { loop(); }) {}

EventQueue::~EventQueue() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void EventQueue::add(std::shared_ptr<EventListener> listener) {
  std::lock_guard<std::mutex> lock(mutex_);
  listeners_.push_back(std::move(listener));
}

void EventQueue::on_event(const RunEvent& event) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_->add(event);
    ++queued_;
    if (event.kind == EventKind::Log) {
      log_bytes_.fetch_add(event.message.size() + kLogLineOverhead, std::memory_order_relaxed);
    }
    // Only a sleeping thread needs waking, and only once: a wake-up per
    // event would cost the engine more than the event itself.
    wake = sleeping_;
    sleeping_ = false;
  }
  if (wake) wake_.notify_one();
}

void EventQueue::flush() {
  while (!flush_for(std::chrono::hours(1))) {
  }
}

bool EventQueue::flush_for(std::chrono::milliseconds limit) {
  std::unique_lock<std::mutex> lock(mutex_);
  const std::uint64_t target = queued_;
  ++flushing_;
  wake_.notify_one();
  const bool done = drained_.wait_for(lock, limit, [&] { return delivered_ >= target; });
  --flushing_;
  return done;
}

void EventQueue::loop() {
  // How long the thread lets a burst gather once woken: far below what a
  // person watching a trace notices, long enough that a busy run's events
  // are handed on in batches.
  constexpr auto kGather = std::chrono::microseconds(500);
  // Listeners hear a batch in slices of this many: the views stay small.
  constexpr std::size_t kSlice = 1024;
  auto batch = std::make_unique<Batch>();
  std::vector<RunEvent> views;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    if (queue_->empty()) {
      if (stopping_) return;
      sleeping_ = true;
      wake_.wait(lock, [&] { return stopping_ || !queue_->empty(); });
      sleeping_ = false;
      wake_.wait_for(lock, kGather, [&] { return stopping_ || flushing_ > 0; });
      if (queue_->empty()) continue;
    }
    batch.swap(queue_);
    const auto listeners = listeners_;
    lock.unlock();
    for (std::size_t first = 0; first < batch->size(); first += kSlice) {
      batch->views(first, std::min(batch->size(), first + kSlice), views);
      for (const auto& l : listeners) notify(*l, views);
    }
    const std::size_t n = batch->size();
    log_bytes_.fetch_sub(batch->log_bytes(), std::memory_order_relaxed);
    batch->clear();
    lock.lock();
    delivered_ += n;
    drained_.notify_all();
  }
}

}  // namespace pyoco::trace
