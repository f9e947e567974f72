#include <pyoco/cluster/event_stream.hpp>
#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/resources.hpp>
#include <pyoco/cluster/run_protocol.hpp>
#include <pyoco/cluster/worker_registry.hpp>
#include <pyoco/core/flow_file.hpp>
#include <pyoco/core/states.hpp>
#include <pyoco/trace/event_queue.hpp>
#include <pyoco/worker/worker.hpp>

#include <unistd.h>

#include <boost/json.hpp>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

namespace pyoco::worker {

namespace json = boost::json;
using cluster::NatsError;

namespace {

std::string host_name() {
  char name[256] = {0};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "worker";
  return name;
}

std::string random_instance() {
  std::random_device rd;
  std::mt19937_64 gen((static_cast<std::uint64_t>(rd()) << 32) ^ rd());
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 16; ++i) s += hex[gen() % 16];
  return s;
}

// The RunEnd of each run, heard on the event queue's thread after the
// publisher has sent the run's events, and handed to the supervisor.
class EndListener : public trace::EventListener {
 public:
  explicit EndListener(std::weak_ptr<Worker::State> state) : state_(std::move(state)) {}
  void on_event(const trace::RunEvent& e) override;

 private:
  std::weak_ptr<Worker::State> state_;
};

}  // namespace

struct Worker::State : std::enable_shared_from_this<Worker::State> {
  struct Active {
    std::string run_id;
    std::string tag;
    cluster::Owner owner;
    natsMsg* msg = nullptr;  // acked (and destroyed) once the terminal state is written
    std::optional<Run> run;
    std::chrono::steady_clock::time_point last_progress;
    std::atomic<bool> lost{false};  // another owner holds it now: never write, never ack
  };

  cluster::Connection& nats;
  Engine& engine;
  WorkerOptions options;
  std::string instance = random_instance();
  cluster::RunRecords runs;

  mutable std::mutex mutex;
  std::condition_variable changed;  // a slot freed, a run ended, or stopping
  std::map<std::string, std::unique_ptr<Active>, std::less<>> active;
  std::deque<std::string> ended;
  bool fetching = true;
  bool stopping = false;

  std::vector<std::thread> threads;
  natsSubscription* cancel_sub = nullptr;
  std::vector<natsSubscription*> subscriptions;  // one per tag
  double started_at = cluster::epoch_now();
  std::chrono::steady_clock::time_point last_beat{};
  bool beat_now = false;  // a run started: the registry says RUNNING at once
  // Every run's events: copied on the strand, published from the queue's thread.
  std::shared_ptr<cluster::EventPublisher> publisher;
  std::shared_ptr<trace::EventQueue> events;

  State(cluster::Connection& n, Engine& e, WorkerOptions o)
      : nats(n),
        engine(e),
        options(std::move(o)),
        runs(n),
        publisher(std::make_shared<cluster::EventPublisher>(n)) {
    if (options.worker_id.empty()) options.worker_id = host_name();
    if (options.slots == 0) options.slots = 1;
    for (const std::string& tag : options.tags) cluster::check_tag(tag);
  }

  // ---- fetching ----------------------------------------------------------

  void fetch_loop(const std::string& tag) {
    natsSubscription* sub = nullptr;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    const std::string consumer = "pyoco_workers_" + tag;
    so.Stream = "PYOCO_WORK";
    so.Consumer = consumer.c_str();
    jsErrCode jerr{};
    const std::string subject = "pyoco.work." + tag;
    natsStatus s = js_PullSubscribe(&sub, nats.handles().js, subject.c_str(), consumer.c_str(),
                                    nullptr, &so, &jerr);
    if (s != NATS_OK) {
      std::fprintf(stderr,
                   "pyoco worker: cannot pull %s (%s): run `pyoco cluster init --tags %s`\n",
                   consumer.c_str(), natsStatus_GetText(s), tag.c_str());
      return;
    }
    {
      std::lock_guard lock(mutex);
      subscriptions.push_back(sub);
    }
    for (;;) {
      std::size_t free = 0;
      {
        std::unique_lock lock(mutex);
        changed.wait(lock, [&] { return !fetching || active.size() < options.slots; });
        if (!fetching) break;
        free = options.slots - active.size();
      }
      natsMsgList list{};
      jsFetchRequest req;
      jsFetchRequest_Init(&req);
      req.Batch = static_cast<int>(free);
      req.Expires =
          std::chrono::duration_cast<std::chrono::nanoseconds>(options.fetch_expiry).count();
      s = natsSubscription_FetchRequest(&list, sub, &req);
      if (s == NATS_OK) {
        for (int i = 0; i < list.Count; ++i) {
          natsMsg* m = list.Msgs[i];
          list.Msgs[i] = nullptr;  // ours now
          take(m, tag);
        }
      } else if (s != NATS_TIMEOUT) {
        // NATS is away: wait a little (it reconnects by itself), then poll again.
        std::unique_lock lock(mutex);
        changed.wait_for(lock, std::chrono::milliseconds(200), [&] { return !fetching; });
      }
      natsMsgList_Destroy(&list);
    }
    // Not destroyed here: the jobs it delivered are acked through it after
    // this loop ends (drain destroys it once every run has ended).
  }

  // One delivered job: claim it, then start it; or settle it at once.
  void take(natsMsg* m, const std::string& tag) {
    jsMsgMetaData* meta = nullptr;
    std::int64_t attempt = 1;
    if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
      attempt = static_cast<std::int64_t>(meta->NumDelivered);
      jsMsgMetaData_Destroy(meta);
    }
    cluster::RunJob job;
    try {
      boost::system::error_code ec;
      const json::value v = json::parse(
          std::string_view(natsMsg_GetData(m), static_cast<std::size_t>(natsMsg_GetDataLength(m))),
          ec);
      if (ec || !v.is_object()) throw NatsError("the job is not a JSON object");
      job = cluster::job_from_json(v.as_object());
    } catch (const NatsError& e) {
      dead_letter("invalid_job", e.what(), job, tag);
      natsMsg_Term(m, nullptr);
      natsMsg_Destroy(m);
      return;
    }
    const cluster::Owner me{options.worker_id, instance, attempt};
    std::optional<cluster::RunRecord> claimed;
    for (;;) {
      std::optional<cluster::RunRecord> r = runs.get(job.run_id);
      if (!r) {
        dead_letter("unknown_run", "no record of run " + job.run_id + " in pyoco_runs", job, tag);
        natsMsg_Term(m, nullptr);
        natsMsg_Destroy(m);
        return;
      }
      if (r->terminal()) {  // finished before (a crash after the terminal write): never again
        end_and_ack(*r, m);
        return;
      }
      json::object next = r->snapshot;
      const double now = cluster::epoch_now();
      if (r->status() == "CANCELLING") {  // its owner died after the request: end it
        next["status"] = "CANCELLED";
        next["end_time"] = now;
      } else {
        next["status"] = "RUNNING";
        if (next["start_time"].is_null()) next["start_time"] = now;
      }
      next["attempt"] = attempt;
      next["owner"] = json::object{{"worker_id", me.worker_id}, {"instance", me.instance}};
      next["updated_at"] = now;
      if (auto rev = runs.replace(job.run_id, next, r->revision)) {
        claimed = cluster::RunRecord{std::move(next), *rev};
        break;
      }
    }
    if (claimed->terminal()) {
      end_and_ack(*claimed, m);
      return;
    }
    publisher->set_attempt(job.run_id, attempt);
    auto a = std::make_unique<Active>();
    a->run_id = job.run_id;
    a->tag = tag;
    a->owner = me;
    a->msg = m;
    a->last_progress = std::chrono::steady_clock::now();
    Active& active_run = *a;
    {
      std::lock_guard lock(mutex);
      active[job.run_id] = std::move(a);
    }
    std::string reason, error;
    try {
      std::shared_ptr<const core::CompiledFlow> flow = resolve(job);
      RunOptions ro;
      ro.params = core::from_json(json::value(job.params));
      ro.run_id = job.run_id;
      ro.env = options.env;
      ro.listener = events;
      Run run = engine.start(flow, std::move(ro));
      std::lock_guard lock(mutex);
      active_run.run = std::move(run);
      beat_now = true;
      changed.notify_all();
      // It may have ended before start() returned: its RunEnd found no run.
      if (core::is_terminal(active_run.run->status())) {
        ended.push_back(job.run_id);
        changed.notify_all();
      }
      return;
    } catch (const core::FlowError& e) {
      reason = "invalid_flow", error = e.what();
    } catch (const NatsError& e) {
      reason = "flow_not_found", error = e.what();
    } catch (const std::exception& e) {
      reason = "cannot_start", error = e.what();
    }
    // It can never run here, nor after a redelivery: fail it now, for good.
    const auto failed = cluster::owner_write(runs, job.run_id, me, [&](json::object& s) {
      s["status"] = "FAILED";
      s["error"] = error;
      s["end_time"] = cluster::epoch_now();
    });
    dead_letter(reason, error, job, tag);
    if (failed) publish_end(*failed);
    natsMsg_Term(m, nullptr);
    natsMsg_Destroy(m);
    publisher->forget(job.run_id);
    std::lock_guard lock(mutex);
    active.erase(job.run_id);
    changed.notify_all();
  }

  // A run's one RunEnd; retried by whoever settles it next if NATS is away.
  void publish_end(const cluster::RunRecord& r) {
    try {
      cluster::publish_run_end(nats, r);
    } catch (const NatsError& e) {
      std::fprintf(stderr, "pyoco worker: %s\n", e.what());
    }
  }

  // A run that is already over: its end (again: the message id makes it
  // one), then the ack that takes the job off the queue.
  void end_and_ack(const cluster::RunRecord& r, natsMsg* m) {
    publish_end(r);
    natsMsg_AckSync(m, nullptr, nullptr);
    natsMsg_Destroy(m);
  }

  std::shared_ptr<const core::CompiledFlow> resolve(const cluster::RunJob& job) const {
    if (!job.workflow_yaml.empty()) {
      auto spec = std::make_shared<core::FlowSpec>(
          core::parse_flow_text(job.workflow_yaml, job.flow_name + ".yaml"));
      return std::make_shared<core::CompiledFlow>(core::compile_flow(spec));
    }
    if (options.flows_dir.empty()) {
      throw NatsError("run " + job.run_id + " names flow \"" + job.flow_name +
                      "\" and this worker has no --flows directory to find it in");
    }
    for (const char* ext : {".yaml", ".yml", ".toml"}) {
      const auto file = options.flows_dir / (job.flow_name + ext);
      if (std::filesystem::is_regular_file(file)) {
        auto spec = std::make_shared<core::FlowSpec>(core::load_flow_file(file));
        return std::make_shared<core::CompiledFlow>(core::compile_flow(spec));
      }
    }
    throw NatsError("flow \"" + job.flow_name + "\" is not in " + options.flows_dir.string() +
                    " (as " + job.flow_name + ".yaml or .toml) on worker " + options.worker_id);
  }

  void dead_letter(const std::string& reason, const std::string& error, const cluster::RunJob& job,
                   const std::string& tag) {
    const json::object o{{"reason", reason},
                         {"error", error},
                         {"run_id", job.run_id},
                         {"flow_name", job.flow_name},
                         {"tag", tag},
                         {"tenant_id", job.tenant_id},
                         {"worker_id", options.worker_id},
                         {"ts", cluster::epoch_now()}};
    const std::string body = json::serialize(o);
    const std::string subject = "pyoco.dlq." + tag;
    jsPubAck* ack = nullptr;
    if (js_Publish(&ack, nats.handles().js, subject.c_str(), body.data(),
                   static_cast<int>(body.size()), nullptr, nullptr) == NATS_OK) {
      jsPubAck_Destroy(ack);
    }
  }

  // ---- supervising -------------------------------------------------------

  // The registry record, every progress interval and at each change of
  // state; a failed write is retried at the next beat.
  void heartbeat(const char* forced_state = nullptr) {
    json::array running, tags;
    bool draining = false;
    {
      std::lock_guard lock(mutex);
      for (const auto& [id, a] : active) running.emplace_back(id);
      draining = !fetching;
    }
    for (const std::string& t : options.tags) tags.emplace_back(t);
    const char* state = forced_state != nullptr ? forced_state
                        : draining              ? "DRAINING"
                        : running.empty()       ? "IDLE"
                                                : "RUNNING";
    const double now = cluster::epoch_now();
    try {
      cluster::put_worker_record(nats, json::object{{"worker_id", options.worker_id},
                                                    {"instance_id", instance},
                                                    {"tags", std::move(tags)},
                                                    {"slots", options.slots},
                                                    {"running", std::move(running)},
                                                    {"state", state},
                                                    {"started_at", started_at},
                                                    {"last_seen_at", now},
                                                    {"updated_at", now}});
    } catch (const NatsError& e) {
      std::fprintf(stderr, "pyoco worker: %s\n", e.what());
    }
    last_beat = std::chrono::steady_clock::now();
  }

  void supervise() {
    for (;;) {
      std::deque<std::string> done;
      {
        std::unique_lock lock(mutex);
        changed.wait_for(
            lock,
            std::min<std::chrono::milliseconds>(options.progress_interval,
                                                std::chrono::milliseconds(500)),
            [&] { return !ended.empty() || beat_now || (stopping && active.empty()); });
        if (stopping && active.empty() && ended.empty()) return;
        done.swap(ended);
        if (beat_now) done.emplace_back();  // an empty id: only the heartbeat below
        beat_now = false;
      }
      for (const std::string& id : done) {
        if (!id.empty()) finish(id);
      }
      progress();
      if (!done.empty() ||
          std::chrono::steady_clock::now() - last_beat >= options.progress_interval) {
        heartbeat();
      }
    }
  }

  // The terminal write, then the ack: a crash between them leaves a
  // terminal record, which a redelivery acks without running it again.
  void finish(const std::string& id) {
    Active* a = nullptr;
    {
      std::lock_guard lock(mutex);
      auto it = active.find(id);
      if (it == active.end() || !it->second->run) return;
      a = it->second.get();
    }
    const Run& run = *a->run;
    const core::RunStatus status = run.status();
    json::object tasks;
    std::string error;
    for (const TaskRecord& t : run.tasks()) {
      tasks[t.node] = core::to_string(t.state);
      if (error.empty() && !t.error.empty()) error = t.node + ": " + t.error;
    }
    // Its events first (the queue has handed them on before this RunEnd
    // reached us), then the record, then the end, then the ack.
    publisher->flush(std::chrono::seconds(10));
    std::optional<cluster::RunRecord> written;
    if (!a->lost) {
      written = cluster::owner_write(runs, id, a->owner, [&](json::object& s) {
        s["status"] = core::to_string(status);
        s["tasks"] = tasks;
        s["end_time"] = cluster::epoch_now();
        s["error"] = status == core::RunStatus::Failed ? json::value(error) : json::value(nullptr);
      });
    }
    if (written) {
      publish_end(*written);
      natsMsg_AckSync(a->msg, nullptr, nullptr);
    }
    natsMsg_Destroy(a->msg);
    publisher->forget(id);
    std::lock_guard lock(mutex);
    active.erase(id);
    changed.notify_all();
  }

  // Every run's InProgress ack and snapshot merge when due; a CANCELLING
  // record cancels the run here, a lost one stops it.
  void progress() {
    std::vector<Active*> due;
    const auto now = std::chrono::steady_clock::now();
    {
      std::lock_guard lock(mutex);
      for (auto& [id, a] : active) {
        if (a->run && !a->lost && now - a->last_progress >= options.progress_interval) {
          due.push_back(a.get());
        }
      }
    }
    for (Active* a : due) {
      a->last_progress = now;
      natsMsg_InProgress(a->msg, nullptr);
      json::object tasks;
      for (const TaskRecord& t : a->run->tasks()) tasks[t.node] = core::to_string(t.state);
      bool cancel = false;
      const auto w = cluster::owner_write(runs, a->run_id, a->owner, [&](json::object& s) {
        cancel = s["status"].as_string() == "CANCELLING";
        s["tasks"] = tasks;
        s["heartbeat_at"] = cluster::epoch_now();
      });
      if (!w) {
        a->lost = true;  // someone else owns it now: stop, never write or ack
        a->run->cancel();
      } else if (cancel) {
        a->run->cancel();
      }
    }
  }

  void on_cancel_message(const std::string& run_id) {
    std::lock_guard lock(mutex);
    auto it = active.find(run_id);
    if (it != active.end() && it->second->run) it->second->run->cancel();
  }
};

namespace {

void EndListener::on_event(const trace::RunEvent& e) {
  if (e.kind != trace::EventKind::RunEnd) return;
  if (auto s = state_.lock()) {
    std::lock_guard lock(s->mutex);
    s->ended.emplace_back(e.run_id);
    s->changed.notify_all();
  }
}

void on_cancel(natsConnection*, natsSubscription*, natsMsg* m, void* closure) {
  auto* state = static_cast<Worker::State*>(closure);
  const std::string subject = natsMsg_GetSubject(m);
  natsMsg_Destroy(m);
  const std::string prefix = "pyoco.cancel.";
  if (subject.rfind(prefix, 0) == 0) state->on_cancel_message(subject.substr(prefix.size()));
}

}  // namespace

Worker::Worker(cluster::Connection& nats, Engine& engine, WorkerOptions options)
    : state_(std::make_shared<State>(nats, engine, std::move(options))) {
  state_->events = std::make_shared<trace::EventQueue>();
  state_->events->add(state_->publisher);
  state_->events->add(std::make_shared<EndListener>(state_));
}

Worker::~Worker() { drain(std::chrono::milliseconds(0)); }

void Worker::start() {
  State& s = *state_;
  const natsStatus st =
      natsConnection_Subscribe(&s.cancel_sub, s.nats.handles().nc, "pyoco.cancel.*", on_cancel, &s);
  if (st != NATS_OK) cluster::throw_nats("cannot listen for cancels", st);
  s.heartbeat();
  for (const std::string& tag : s.options.tags) {
    s.threads.emplace_back([state = state_, tag] { state->fetch_loop(tag); });
  }
  s.threads.emplace_back([state = state_] { state->supervise(); });
}

void Worker::drain(std::chrono::milliseconds grace) {
  State& s = *state_;
  {
    std::lock_guard lock(s.mutex);
    if (s.stopping) return;
    s.fetching = false;
    s.changed.notify_all();
  }
  {
    std::unique_lock lock(s.mutex);
    s.changed.wait_for(lock, grace, [&] { return s.active.empty(); });
    // What still runs is cancelled and left unacked: NATS redelivers it.
    for (auto& [id, a] : s.active) {
      a->lost = true;
      if (a->run) a->run->cancel();
    }
    s.stopping = true;
    s.changed.notify_all();
  }
  if (s.cancel_sub != nullptr) {
    natsSubscription_Unsubscribe(s.cancel_sub);
    natsSubscription_Destroy(s.cancel_sub);
    s.cancel_sub = nullptr;
  }
  for (std::thread& t : s.threads) {
    if (t.joinable()) t.join();
  }
  for (natsSubscription* sub : s.subscriptions) natsSubscription_Destroy(sub);
  s.subscriptions.clear();
  s.heartbeat("STOPPED_GRACEFUL");
}

std::size_t Worker::running() const {
  std::lock_guard lock(state_->mutex);
  return state_->active.size();
}

const std::string& Worker::worker_id() const { return state_->options.worker_id; }

}  // namespace pyoco::worker
