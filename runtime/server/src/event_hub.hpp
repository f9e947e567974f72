// Every run's events as PYOCO_EVENTS stores them, on one ordered consumer
// per gateway, handed to the watches of each run (GET /runs/{id}/events).
// A watch then makes no consumer of its own for what happens from now on:
// nats-server makes a connection's consumers one after another, each a scan
// of the stream, and 200 watches opened at once each waited for the ones
// before (20 s for the last on a stream of 140,000 events).
#pragma once

#include <pyoco/cluster/connection.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace pyoco::server {

class EventHub {
 public:
  struct Event {
    std::uint64_t seq = 0;
    std::string subject;
    std::string data;
  };

  // One run's events stored after from(), in stream order; those up to it
  // are the stream's to give (cluster::next_stored).
  class Watch {
   public:
    ~Watch();  // leaves the hub
    Watch(const Watch&) = delete;
    Watch& operator=(const Watch&) = delete;

    std::uint64_t from() const { return from_; }
    // The next event, waiting at most `timeout`; nullopt when none came, or
    // when the watch is broken.
    std::optional<Event> next(std::chrono::milliseconds timeout);
    // Events were lost to it: the hub's subscription ended, or the watch
    // fell more than kMaxQueued events or kMaxQueuedBytes behind (a client
    // reading slowly).
    // What came before the loss was delivered; read the stream after it.
    bool broken() const;

   private:
    friend class EventHub;
    struct Shared;
    Watch(std::shared_ptr<Shared> hub, std::string run_id, std::uint64_t from);
    std::shared_ptr<Shared> hub_;
    std::string run_id_;
    std::uint64_t from_;
    std::deque<Event> queue_;       // under the hub's mutex
    std::size_t queued_bytes_ = 0;  // of queue_'s data; under the hub's mutex
    bool broken_ = false;           // under the hub's mutex
    std::condition_variable arrived_;
  };

  static constexpr std::size_t kMaxQueued = 10000;
  // Events are up to 1 MB each: a count alone let one stalled watch hold
  // gigabytes.
  static constexpr std::size_t kMaxQueuedBytes = 8u << 20;

  // Follows from the first watch on (a gateway nobody watches through
  // makes no consumer). `nats` outlives the hub.
  explicit EventHub(cluster::Connection& nats);
  ~EventHub();
  EventHub(const EventHub&) = delete;
  EventHub& operator=(const EventHub&) = delete;

  // The run's events from now on; nullptr when the hub cannot follow (NATS
  // away): read the stream instead.
  std::unique_ptr<Watch> watch(const std::string& run_id);

 private:
  std::shared_ptr<Watch::Shared> shared_;
};

}  // namespace pyoco::server
