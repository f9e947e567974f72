// The gateway's event hub (runtime/server/src/event_hub.hpp) against a real
// nats-server: watches that never read hold at most the hub's budget of
// events together, not each its own allowance (60 silent watches of one
// chatty run took a gateway from 55 MB to 565 MB); what a broken watch
// holds is still handed on in order, and reading it gives the budget back.
#include <pyoco/cluster/connection.hpp>
#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/resources.hpp>

#include <nats/nats.h>

#include <boost/test/unit_test.hpp>

#include <memory>
#include <string>
#include <vector>

#include "event_hub.hpp"
#include "nats_server.hpp"

using namespace pyoco;
using pyoco::server::EventHub;
using pyoco::testing::NatsServer;

namespace {

void publish(cluster::Connection& nats, const std::string& subject, const std::string& data) {
  jsPubAck* ack = nullptr;
  BOOST_REQUIRE(js_Publish(&ack, nats.handles().js, subject.c_str(), data.data(),
                           static_cast<int>(data.size()), nullptr, nullptr) == NATS_OK);
  jsPubAck_Destroy(ack);
}

}  // namespace

BOOST_AUTO_TEST_CASE(silent_watches_together_hold_at_most_the_hubs_budget) {
  NatsServer server;
  cluster::Connection nats{{.servers = {server.url()}}};
  cluster::init_resources(nats, cluster::ResourceOptions{});
  constexpr std::size_t kEvent = 8 << 10;
  EventHub::Limits limits;
  limits.bytes = 8 * kEvent;       // one watch: 8 events
  limits.all_bytes = 32 * kEvent;  // all of them: 32, not 10 x 8...
  limits.own_bytes = kEvent / 2;   // ...but for a short queue's own (the marker's)
  EventHub hub(nats, limits);

  std::vector<std::unique_ptr<EventHub::Watch>> silent;
  for (int i = 0; i < 10; ++i) {
    silent.push_back(hub.watch("chatty"));
    BOOST_TEST_REQUIRE(silent.back() != nullptr);
  }
  const std::unique_ptr<EventHub::Watch> marker = hub.watch("marker");
  BOOST_TEST_REQUIRE(marker != nullptr);
  for (int i = 0; i < 40; ++i) {
    publish(nats, "pyoco.ev.chatty.node", std::string(kEvent, static_cast<char>('a' + i % 26)));
  }
  // One consumer, in stream order: once the marker's event is here, the
  // hub has handed on (or refused) every event before it.
  publish(nats, "pyoco.ev.marker.run", "{}");
  BOOST_TEST_REQUIRE(marker->next(std::chrono::seconds(20)).has_value());

  BOOST_TEST(!marker->broken());  // one that keeps up is not broken for what others hold
  BOOST_TEST(hub.queued_bytes() <= limits.all_bytes);
  BOOST_TEST(hub.queued_bytes() >= limits.all_bytes - kEvent);  // the budget is used, not wasted
  std::size_t held = 0;
  for (const auto& w : silent) {
    BOOST_TEST(w->broken());  // each reads the stream after what it holds
    // What it holds is the run's first events, in order: nothing skipped.
    std::uint64_t previous = 0;
    int i = 0;
    while (std::optional<EventHub::Event> e = w->next(std::chrono::milliseconds(0))) {
      BOOST_TEST(e->data == std::string(kEvent, static_cast<char>('a' + i % 26)));
      BOOST_TEST((previous == 0 || e->seq == previous + 1));
      previous = e->seq;
      ++i;
      held += e->data.size();
    }
    BOOST_TEST(static_cast<std::size_t>(i) * kEvent <= limits.bytes);
  }
  BOOST_TEST(held <= limits.all_bytes);
  BOOST_TEST(hub.queued_bytes() == 0u);  // read, the budget is free again
}

BOOST_AUTO_TEST_CASE(a_watch_that_goes_gives_back_what_it_held) {
  NatsServer server;
  cluster::Connection nats{{.servers = {server.url()}}};
  cluster::init_resources(nats, cluster::ResourceOptions{});
  EventHub hub(nats);
  std::unique_ptr<EventHub::Watch> silent = hub.watch("run1");
  const std::unique_ptr<EventHub::Watch> marker = hub.watch("marker");
  BOOST_TEST_REQUIRE((silent != nullptr && marker != nullptr));
  for (int i = 0; i < 5; ++i) publish(nats, "pyoco.ev.run1.node", std::string(1000, 'x'));
  publish(nats, "pyoco.ev.marker.run", "{}");
  BOOST_TEST_REQUIRE(marker->next(std::chrono::seconds(20)).has_value());
  BOOST_TEST(hub.queued_bytes() == 5000u);
  BOOST_TEST(!silent->broken());
  silent.reset();
  BOOST_TEST(hub.queued_bytes() == 0u);
}
