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

// How far behind a watch may fall before it is broken (and reads the stream
// instead, which holds nothing for it): events are up to 1 MB each, so a
// count alone let one stalled watch hold gigabytes, and a limit per watch
// alone let 60 silent watches of one chatty run hold 480 MiB. A watch
// whose queue is short (a client that keeps up) is never broken for what
// others hold: the hub holds at most all_bytes plus own_bytes a watch.
struct EventHubLimits {
  std::size_t events = 10000;          // in one watch's queue
  std::size_t bytes = 8u << 20;        // in one watch's queue
  std::size_t all_bytes = 64u << 20;   // in every watch's queue together...
  std::size_t own_bytes = 256u << 10;  // ...but for this much of each one's
};

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
    // fell further behind than the hub's Limits let it (a client reading
    // slowly, or not at all).
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

  using Limits = EventHubLimits;

  // Follows from the first watch on (a gateway nobody watches through
  // makes no consumer). `nats` outlives the hub.
  explicit EventHub(cluster::Connection& nats, Limits limits = {});
  ~EventHub();
  EventHub(const EventHub&) = delete;
  EventHub& operator=(const EventHub&) = delete;

  // The run's events from now on; nullptr when the hub cannot follow (NATS
  // away): read the stream instead.
  std::unique_ptr<Watch> watch(const std::string& run_id);
  // The bytes of events every watch's queue holds now.
  std::size_t queued_bytes() const;

 private:
  std::shared_ptr<Watch::Shared> shared_;
};

}  // namespace pyoco::server
