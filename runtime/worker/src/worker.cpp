#include <pyoco/abi.h>
#include <pyoco/cluster/event_stream.hpp>
#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/open_nodes.hpp>
#include <pyoco/cluster/process_log.hpp>
#include <pyoco/cluster/resources.hpp>
#include <pyoco/cluster/run_protocol.hpp>
#include <pyoco/cluster/run_records.hpp>
#include <pyoco/cluster/worker_registry.hpp>
#include <pyoco/core/flow_file.hpp>
#include <pyoco/core/states.hpp>
#include <pyoco/core/text.hpp>
#include <pyoco/engine/local_artifact_store.hpp>
#include <pyoco/plugins/manifest.hpp>
#include <pyoco/trace/event_queue.hpp>
#include <pyoco/worker/worker.hpp>

#include <unistd.h>

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

#include "plugin_sync.hpp"

extern char** environ;

namespace pyoco::worker {

std::string default_worker_id() {
  char name[256] = {0};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "worker";
  return name;
}

std::string worker_id_problem(std::string_view id) {
  if (cluster::is_key_name(id, 128, "-_.")) return {};
  return "a worker id is 1 to 128 letters, digits, '-', '_' and '.' ('.' not first, last or "
         "twice in a row): it is the key of the worker's record in NATS and names its "
         "directories";
}

namespace {

bool is_setting(std::string_view name) { return name.starts_with("PYOCO_"); }

}  // namespace

std::map<std::string, std::string, std::less<>> run_environment() {
  auto env = process_environment();
  std::erase_if(env, [](const auto& kv) { return is_setting(kv.first); });
  return env;
}

void remove_settings_from_environment() {
  // The entries first: unsetenv moves environ's (and removes every entry of
  // a name given twice).
  std::vector<char*> entries;
  for (char** e = environ; *e != nullptr; ++e) {
    if (is_setting(*e)) entries.push_back(*e);
  }
  for (char* entry : entries) {
    const std::string name(entry, std::strcspn(entry, "="));
    ::unsetenv(name.c_str());
  }
  // unsetenv leaves the strings where they were, which for the environment
  // this process was started with is what /proc/<pid>/environ shows, to
  // any process of the same user (a task's shell: /proc/$PPID/environ).
  // Out of environ now, they are no one's: blanked.
  for (char* entry : entries) std::memset(entry, 0, std::strlen(entry));
}

namespace json = boost::json;
using cluster::NatsError;

// The run's lease ends now, written as its owner: the next worker may claim
// it at once. A write that fails leaves it to the lease's own end.
void give_up_lease(cluster::RunRecords& runs, const std::string& run_id,
                   const cluster::Owner& owner) {
  try {
    cluster::owner_write(runs, run_id, owner, [](json::object& snap) {
      const double now = cluster::epoch_now();
      if (json::value* o = snap.if_contains("owner"); o != nullptr && o->is_object()) {
        o->as_object()["lease_until"] = now;
      }
      snap["updated_at"] = now;
    });
  } catch (const NatsError&) {
  }
}

// A record of another instance of this worker id heard from within this
// (or three of its beats) is a live worker's (docs/cluster.md, --worker-id).
constexpr std::chrono::seconds kWorkerIdSilentAfter{15};

namespace {

std::string random_instance() {
  std::random_device rd;
  std::mt19937_64 gen((static_cast<std::uint64_t>(rd()) << 32) ^ rd());
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 16; ++i) s += hex[gen() % 16];
  return s;
}

// The plugins a run bound, name -> version, for its record.
json::object plugins_json(const Run& run) {
  json::object o;
  for (const auto& [name, version] : run.plugins()) o[name] = version;
  return o;
}

// A run's tasks as its record shows them. The record is one NATS message
// (1 MiB at most by default): a run of 60,000 iterations would not fit,
// its heartbeats would fail and the run be given up. So `tasks` holds at
// most kRecordTasks nodes and kRecordTaskBytes of names, those not
// SUCCEEDED first; `task_counts` counts every task by state and
// `tasks_omitted` says how many nodes `tasks` leaves out. The first error
// is of all tasks, and at most 4 KiB of it.
constexpr std::size_t kRecordTasks = 2000;
constexpr std::size_t kRecordTaskBytes = 128 * 1024;

struct RecordTasks {
  json::object tasks, counts;
  std::size_t omitted = 0;
  std::string error;  // "node: message" of the first task that failed

  void write(json::object& record) const {
    record["tasks"] = tasks;
    record["task_counts"] = counts;
    record["tasks_omitted"] = omitted;
  }
};

RecordTasks record_tasks(const Run& run) {
  RecordTasks out;
  const std::vector<TaskRecord> all = run.tasks();
  std::map<std::string_view, std::size_t> counts;
  std::size_t bytes = 0;
  auto take = [&](const TaskRecord& t) {
    if (out.tasks.size() < kRecordTasks && bytes + t.node.size() <= kRecordTaskBytes) {
      out.tasks[t.node] = core::to_string(t.state);
      bytes += t.node.size();
    } else {
      ++out.omitted;
    }
  };
  for (const TaskRecord& t : all) {
    ++counts[core::to_string(t.state)];
    // An ended task's: one waiting to retry shows its last attempt's error
    // and may still succeed.
    if (out.error.empty() && !t.error.empty() && core::is_terminal(t.state)) {
      out.error = t.node + ": " + t.error;
    }
    if (t.state != core::TaskState::Succeeded) take(t);
  }
  for (const TaskRecord& t : all) {
    if (t.state == core::TaskState::Succeeded) take(t);
  }
  for (const auto& [state, n] : counts) out.counts[state] = n;
  // A plugin's error may be any length: the record holds its start.
  constexpr std::size_t kRecordError = 4096;
  if (out.error.size() > kRecordError) {
    out.error.resize(core::utf8_prefix(out.error, kRecordError).size());
    out.error += "… (cut at 4096 bytes)";
  }
  return out;
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

// How long a job drain hands back waits before NATS offers it again.
constexpr std::int64_t kHandBackDelayMs = 3000;

struct Worker::State : std::enable_shared_from_this<Worker::State> {
  struct Active {
    std::string run_id;
    std::string tag;
    cluster::Owner owner;
    natsMsg* msg = nullptr;          // acked (and destroyed) once the terminal state is written
    natsMsg* redelivered = nullptr;  // a newer delivery of it, not yet taken up
    // As this owner last wrote it (the supervisor's, once started).
    std::optional<cluster::RunRecord> last_written;
    std::chrono::steady_clock::time_point finish_failing_since{};  // supervisor
    std::optional<Run> run;
    std::chrono::steady_clock::time_point last_progress;
    std::chrono::steady_clock::time_point lease_written;  // when its record last said it is ours
    // Lost: another owner holds it now: never write, never ack, no more
    // events, no task started. With its lease (as last written) the fence
    // the publisher and the engine read before each event and task: past
    // the lease, by this host's clock, they wait for a renewal.
    std::shared_ptr<cluster::RunFence> fence = std::make_shared<cluster::RunFence>();
    std::atomic<bool>& lost = fence->lost;
    bool stopped_as_lost = false;  // its engine run cancelled for it (supervisor)
    bool handed_back = false;      // given up by drain: its job is nak'd (under the mutex)
    bool finishing = false;  // finish() is writing its end: drain leaves it be (under the mutex)
    // fail_running() writes its end and acks its job (the process is ending):
    // nothing else touches it, nor its msg (under the mutex).
    bool failed_at_exit = false;
    ~Active() {
      if (redelivered != nullptr) natsMsg_Destroy(redelivered);  // unacked: NATS sends it again
    }
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
  std::vector<std::string> unfinished;  // ended runs whose end NATS has not taken yet (supervisor)
  // Drain: the jobs of runs it gave up that ended before their leases were
  // given up, nak'd once they are (under the mutex).
  std::vector<natsMsg*> to_hand_back;
  bool leases_given_up = false;
  bool fetching = true;
  std::size_t polling = 0;                     // polls in flight, each holding a free slot
  std::uint64_t next_ticket = 0, serving = 0;  // the fetchers' turns at a free slot
  static constexpr std::chrono::milliseconds kShortPoll{250};
  static constexpr std::chrono::milliseconds kHeldLook{250};
  bool stopping = false;
  std::size_t starting = 0;  // runs inside engine.start: their plugins are bound, not listed
  bool registered = false;   // start() got as far as the registry: drain says it stopped

  std::vector<std::thread> threads;
  natsSubscription* cancel_sub = nullptr;
  std::vector<natsSubscription*> subscriptions;  // one per tag
  double started_at = cluster::epoch_now();
  std::chrono::steady_clock::time_point last_beat{};
  std::uint64_t record_revision = 0;  // of the last record this instance wrote
  double last_beat_at = 0;            // its last_seen_at
  std::atomic<bool> id_lost{false};   // another instance has this worker's id now
  std::string lost_id_reason;         // under the mutex
  static constexpr std::chrono::milliseconds kBeatGap{100};
  bool beat_owed = false;  // a run started or ended since the last beat (supervisor)
  bool beat_now = false;   // a run started: the registry says RUNNING at once
  bool stalled = false;    // supervisor: every engine thread held (watch_held_threads)
  // Every run's events: copied on the strand, published from the queue's thread.
  std::shared_ptr<cluster::EventPublisher> publisher;
  std::shared_ptr<trace::EventQueue> events;
  std::unique_ptr<PluginSync> plugin_sync;  // null: no plugins from the repository

  State(cluster::Connection& n, Engine& e, WorkerOptions o)
      : nats(n),
        engine(e),
        options(std::move(o)),
        runs(n),
        publisher(std::make_shared<cluster::EventPublisher>(n)) {
    if (options.worker_id.empty()) options.worker_id = default_worker_id();
    if (const std::string why = worker_id_problem(options.worker_id); !why.empty()) {
      throw std::invalid_argument("worker id \"" + core::printable(options.worker_id) +
                                  "\": " + why + " (give --worker-id)");
    }
    if (options.slots == 0) options.slots = 1;
    for (const std::string& tag : options.tags) cluster::check_tag(tag);
  }

  // ---- plugins -----------------------------------------------------------

  // Plugins from the repository, if the worker takes them: made at start.
  void open_plugin_sync() {
    if (options.plugins_dir.empty()) return;
    PluginSyncOptions po;
    po.dir = options.plugins_dir;
    po.worker_id = options.worker_id;
    po.tags = options.tags;
    po.lint_command = options.lint_command;
    if (po.lint_command.empty()) {
      po.lint_command = {boost::dll::program_location().string(), "plugins", "lint"};
    }
    plugin_sync = std::make_unique<PluginSync>(nats, std::move(po));
    engine.set_plugin_search_path(search_path());
  }

  std::vector<std::filesystem::path> search_path() const {
    std::vector<std::filesystem::path> path = plugin_sync->active_dirs();
    path.insert(path.end(), options.plugin_search_path.begin(), options.plugin_search_path.end());
    return path;
  }

  // One look at the repository; the engine's plugins change only when the
  // set does. New runs bind the new set; started ones keep what they bound.
  void sync_plugins() {
    bool changed_set = false;
    try {
      changed_set = plugin_sync->sync();
    } catch (const std::exception& e) {
      // NATS away, or anything else: the plugins in use stay, tried again later.
      cluster::log(cluster::LogLevel::warning, "worker: plugin repository not read",
                   {{"error", e.what()}});
      return;
    }
    if (changed_set) engine.set_plugin_search_path(search_path());
    prune_plugins();  // each pass: a version a run held is removed once it ends
    if (!changed_set) return;
    json::object active;
    for (const json::value& p : plugin_sync->status()) {
      if (p.at("state").as_string() == "active") active[p.at("name").as_string()] = p.at("version");
    }
    cluster::log(cluster::LogLevel::info, "worker: plugins changed",
                 {{"plugins", json::value(std::move(active))}});
    std::lock_guard lock(mutex);
    beat_now = true;  // the registry says so at once
    changed.notify_all();
  }

  // Old versions out of --plugins-dir: all but the one in use, the one
  // before, and those the runs going here bound (never one in use).
  void prune_plugins() {
    std::map<std::string, std::set<std::string>> in_use;
    {
      std::lock_guard lock(mutex);
      // A run binding its plugins now is not listed yet: prune next time.
      if (starting != 0) return;
      for (const auto& [id, a] : active) {
        if (!a->run) continue;
        for (const auto& [name, version] : a->run->plugins()) in_use[name].insert(version);
      }
    }
    try {
      plugin_sync->prune(in_use);
    } catch (const std::exception& e) {
      cluster::log(cluster::LogLevel::warning, "worker: old plugin versions not removed",
                   {{"error", e.what()}});
    }
  }

  // Between fetches, on its own thread: a download or lint never holds up a
  // claim, and the engine swaps its catalog whole, so a run binds against
  // the old set or the new, never a mix.
  void plugin_sync_loop() {
    auto due = std::chrono::steady_clock::now() + options.plugin_sync_interval;
    for (;;) {
      {
        std::lock_guard lock(mutex);
        if (!fetching) return;
      }
      bool pushed = false;
      const auto asked = std::chrono::steady_clock::now();
      try {
        pushed = plugin_sync->wait_for_change(std::chrono::milliseconds(250));
      } catch (const std::exception&) {
      }
      // A watch that answers at once (NATS away) must not spin this thread.
      if (!pushed && std::chrono::steady_clock::now() - asked < std::chrono::milliseconds(200)) {
        std::unique_lock lock(mutex);
        changed.wait_for(lock, std::chrono::milliseconds(250), [&] { return !fetching; });
      }
      if (pushed || std::chrono::steady_clock::now() >= due) {
        sync_plugins();
        due = std::chrono::steady_clock::now() + options.plugin_sync_interval;
      }
    }
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
      cluster::log(
          cluster::LogLevel::error,
          "worker: cannot pull " + consumer + ": run `pyoco cluster init --tags " + tag + "`",
          {{"nats", natsStatus_GetText(s)}});
      return;
    }
    {
      std::lock_guard lock(mutex);
      subscriptions.push_back(sub);
    }
    // How often NATS delivers a job of this tag at most: a job handed back
    // while every thread is held costs one of those deliveries (take()).
    std::int64_t max_deliver = cluster::kWorkMaxDeliver;  // should NATS not say
    jsConsumerInfo* ci = nullptr;
    if (natsSubscription_GetConsumerInfo(&ci, sub, nullptr, &jerr) == NATS_OK) {
      max_deliver = ci->Config->MaxDeliver;
      jsConsumerInfo_Destroy(ci);
    }
    for (;;) {
      bool short_poll = false;
      {
        // A free slot, reserved for this poll: with several tags, no more
        // polls than free slots, so a worker never holds more jobs than it
        // runs. In turn, so that with fewer free slots than tags no tag's poll
        // keeps the slot from another's.
        std::unique_lock lock(mutex);
        const std::uint64_t ticket = next_ticket++;
        // Nor while every engine thread is held by a body its run gave up
        // on: a run taken then would wait for a thread while another worker
        // may be idle. The supervisor wakes this once one returns.
        // Looked at again every kHeldLook: a held thread's return is
        // sampled by the supervisor, which could miss a short hold.
        while (!changed.wait_for(lock, kHeldLook, [&] {
          return !fetching || (serving == ticket && active.size() + polling < options.slots &&
                               !threads_all_held());
        })) {
        }
        if (!fetching) break;
        // More tags than free slots: some tag waits (now or soon) for this
        // one, so a short poll, and turns come round in a quarter second
        // rather than a long poll's 5.
        short_poll = options.tags.size() > options.slots - active.size() - polling;
        ++serving;
        ++polling;
        changed.notify_all();
      }
      // One job per poll: cnats returns a fetch only when its whole batch
      // has come (or the poll expires), so a batch of the free slots would
      // hold a lone job unstarted, past its AckWait. A poll is one round
      // trip; the next is sent at once while slots are free.
      natsMsgList list{};
      jsFetchRequest req;
      jsFetchRequest_Init(&req);
      req.Batch = 1;
      req.Expires =
          std::chrono::duration_cast<std::chrono::nanoseconds>(
              short_poll ? std::min(options.fetch_expiry, kShortPoll) : options.fetch_expiry)
              .count();
      s = natsSubscription_FetchRequest(&list, sub, &req);
      natsMsg* m = nullptr;
      if (s == NATS_OK && list.Count > 0) {
        m = list.Msgs[0];
        list.Msgs[0] = nullptr;  // ours now
      }
      natsMsgList_Destroy(&list);
      bool draining = false;
      {
        std::lock_guard lock(mutex);
        draining = !fetching;
      }
      if (m != nullptr && draining) {
        natsMsg_Nak(m, nullptr);  // it came as we began to drain: another worker takes it now
        natsMsg_Destroy(m);
      } else if (m != nullptr) {
        take(m, tag, max_deliver);  // the run is active (or settled) before the slot is given back
      }
      std::unique_lock lock(mutex);
      --polling;
      changed.notify_all();
      if (m == nullptr && s != NATS_TIMEOUT) {
        // NATS is away: wait a little (it reconnects by itself), then poll again.
        changed.wait_for(lock, std::chrono::milliseconds(200), [&] { return !fetching; });
      }
    }
    // Not destroyed here: the jobs it delivered are acked through it after
    // this loop ends (drain destroys it once every run has ended).
  }

  // One delivered job: claim it, then start it; or settle it at once.
  void take(natsMsg* m, const std::string& tag, std::int64_t max_deliver) {
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
    if (adopt_redelivery(job.run_id, m)) return;
    if (threads_all_held() && (max_deliver <= 0 || attempt < max_deliver - 1)) {
      // Asked for before every thread was held (a poll on its way as a deaf
      // body's run ended): handed back unclaimed, for another worker, or
      // this one in a second. Not on its last deliveries: it would be given
      // up without having run; it is taken and waits for a thread here.
      natsMsg_NakWithDelay(m, 1000, nullptr);
      natsMsg_Destroy(m);
      cluster::log(cluster::LogLevel::info,
                   "worker: handed a job back unclaimed: every engine thread is held",
                   {{"run_id", job.run_id}, {"delivery", attempt}});
      return;
    }
    cluster::Owner me{options.worker_id, instance, attempt};
    std::optional<cluster::RunRecord> claimed;
    try {
      claimed = claim(job, me, m, tag);
    } catch (const NatsError& e) {
      cluster::log(cluster::LogLevel::warning, "worker: cannot claim; left to its next delivery",
                   {{"run_id", job.run_id}, {"error", e.what()}});
      natsMsg_Destroy(m);  // unacked: NATS delivers it again after the AckWait
      return;
    }
    if (!claimed) return;  // settled
    cluster::log(cluster::LogLevel::info, "worker: claimed",
                 {{"run_id", job.run_id}, {"flow", job.flow_name}, {"attempt", me.attempt}});
    if (claimed->terminal()) {
      end_and_ack(*claimed, m);
      return;
    }
    start(job, me, m, tag, std::move(*claimed));
  }

  // A run claimed once drain had handed back the others: its lease given up
  // and its job nak'd as drain does, so the next worker takes it in moments.
  void hand_back_unstarted(const std::string& run_id, const cluster::Owner& me, natsMsg* m) {
    give_up_lease(runs, run_id, me);
    natsMsg_NakWithDelay(m, kHandBackDelayMs, nullptr);
    natsMsg_Destroy(m);
    publisher->forget(run_id);
    cluster::log(cluster::LogLevel::info, "worker: handed back",
                 {{"run_id", run_id}, {"to", "another worker, after 3 s"}, {"started", false}});
  }

  // The claim: the record is RUNNING under this owner (or CANCELLED, when
  // its owner died after a cancel). Nullopt when the job was settled here
  // (no record, a finished run, another owner's lease). `me.attempt` is
  // raised past the record's when the job is a copy the reaper queued (its
  // delivery count starts again): an attempt's events keep ids of their own.
  // Throws NatsError.
  std::optional<cluster::RunRecord> claim(const cluster::RunJob& job, cluster::Owner& me,
                                          natsMsg* m, const std::string& tag) {
    if (me.attempt == 1 && job.record_revision != 0) {
      // The first delivery of a run nobody has touched since its submit: one
      // write on the revision the job carries (any change since is a
      // conflict, and then the record is read).
      json::object next = cluster::pending_snapshot(job);
      mark_claimed(next, me, cluster::epoch_now());
      if (auto rev = runs.replace(job.run_id, next, job.record_revision)) {
        return cluster::RunRecord{std::move(next), *rev};
      }
    }
    std::optional<std::vector<cluster::OpenNode>> open;  // read once, if it is ended here
    for (;;) {
      std::optional<cluster::RunRecord> r = runs.get(job.run_id);
      if (!r) {
        dead_letter("unknown_run", "no record of run " + job.run_id + " in pyoco_runs", job, tag);
        natsMsg_Term(m, nullptr);
        natsMsg_Destroy(m);
        return std::nullopt;
      }
      if (r->terminal()) {  // finished before (a crash after the terminal write): never again
        end_and_ack(*r, m);
        return std::nullopt;
      }
      json::object next = r->snapshot;
      const double now = cluster::epoch_now();
      if (const double lease = lease_of_another(*r, now); lease > 0) {
        // Its owner is alive (NATS restarted, or an ack was late): leave
        // it, and look again when the lease would have run out.
        natsMsg_NakWithDelay(m, static_cast<std::int64_t>(std::clamp(lease, 0.1, 60.0) * 1000),
                             nullptr);
        natsMsg_Destroy(m);
        cluster::log(cluster::LogLevel::info, "worker: handed back; another owner's lease holds",
                     {{"run_id", job.run_id}, {"lease_s", lease}});
        return std::nullopt;
      }
      const bool cancelling = r->status() == "CANCELLING";
      if (cancelling) {  // its owner died after the request: end it
        next["status"] = "CANCELLED";
        next["end_time"] = now;
        cluster::end_unfinished_tasks(next, "CANCELLED");
        if (!open) open = cluster::open_nodes(nats, job.run_id);
        cluster::record_open_nodes(next, *open, "CANCELLED");
      }
      const json::value* owned = r->snapshot.if_contains("owner");
      if (const json::value* a = r->snapshot.if_contains("attempt");
          a != nullptr && a->is_int64() && owned != nullptr && owned->is_object()) {
        me.attempt = std::max(me.attempt, a->as_int64() + 1);
      }
      mark_claimed(next, me, now);
      if (auto rev = runs.replace(job.run_id, next, r->revision)) {
        cluster::RunRecord ended{std::move(next), *rev};
        if (cancelling) end_open_nodes(ended, *r, *open);
        return ended;
      }
      open.reset();  // the record changed: read its events again
    }
  }

  // The tasks a dead owner left started, ended in the trace before the
  // run's end (the record has them already). NATS away: the run still ends.
  void end_open_nodes(const cluster::RunRecord& ended, const cluster::RunRecord& before,
                      const std::vector<cluster::OpenNode>& open) {
    std::string owner = "its worker";
    if (const json::value* o = before.snapshot.if_contains("owner"); o && o->is_object()) {
      if (const json::value* w = o->as_object().if_contains("worker_id"); w && w->is_string()) {
        owner += " " + std::string(w->as_string());
      }
    }
    try {
      cluster::publish_open_node_ends(nats, ended, open, "CANCELLED",
                                      "cancelled while " + owner + " was gone");
    } catch (const NatsError& e) {
      cluster::log(cluster::LogLevel::warning, "worker: a dead owner's tasks' ends not published",
                   {{"run_id", ended.snapshot.at("run_id")}, {"error", e.what()}});
    }
  }

  // RUNNING (unless it is being ended), under this owner and its lease.
  void mark_claimed(json::object& next, const cluster::Owner& me, double now) const {
    if (next["status"] != "CANCELLED") {
      next["status"] = "RUNNING";
      if (next["start_time"].is_null()) next["start_time"] = now;
    }
    next["attempt"] = me.attempt;
    next["owner"] = json::object{{"worker_id", me.worker_id},
                                 {"instance", me.instance},
                                 {"lease_until", now + lease_seconds()}};
    next["updated_at"] = now;
  }

  // A claimed run on the engine; a flow that cannot run here fails at once.
  void start(const cluster::RunJob& job, const cluster::Owner& me, natsMsg* m,
             const std::string& tag, cluster::RunRecord claimed) {
    auto a = std::make_unique<Active>();
    a->fence->lease_until = claimed.lease_until();
    publisher->set_attempt(job.run_id, me.attempt, a->fence);
    a->run_id = job.run_id;
    a->tag = tag;
    a->owner = me;
    a->msg = m;
    a->last_written = std::move(claimed);
    a->last_progress = std::chrono::steady_clock::now();
    a->lease_written = a->last_progress;  // the claim wrote it
    Active& active_run = *a;
    {
      // Under the lock drain takes the active runs with: a run claimed
      // while drain went by (it found nothing to hand back) is handed back
      // here, not started and left to its lease and the AckWait.
      std::lock_guard lock(mutex);
      if (!stopping) active[job.run_id] = std::move(a);
    }
    if (a) {
      hand_back_unstarted(job.run_id, me, m);
      return;
    }
    std::string reason, error;
    try {
      std::shared_ptr<const core::CompiledFlow> flow = resolve(job);
      RunOptions ro;
      ro.params = core::from_json(json::value(job.params));
      ro.run_id = job.run_id;
      ro.env = options.env;
      ro.listener = events;
      // Before each task: a run this worker may have lost (its lease ran
      // out here) starts nothing until its lease is renewed.
      ro.may_start = [fence = active_run.fence] { return fence->holds(); };
      if (!options.artifact_dir.empty()) {
        ro.artifacts = std::make_shared<LocalArtifactStore>(options.artifact_dir);
      }
      {
        std::lock_guard lock(mutex);
        ++starting;
      }
      std::optional<Run> started;
      try {
        started.emplace(engine.start(flow, std::move(ro)));
      } catch (...) {
        std::lock_guard lock(mutex);
        --starting;
        throw;
      }
      std::lock_guard lock(mutex);
      --starting;
      active_run.run = std::move(*started);
      if (stopping || active_run.lost) {
        // Drained while it started: given up like the others, left unacked.
        active_run.lost = true;
        active_run.run->cancel();
      }
      beat_now = true;
      changed.notify_all();
      // A run that ended before start() returned: its RunEnd (through the
      // event queue, after the run's other events) found no run, and waits
      // in `unfinished`; beat_now wakes the supervisor to finish it.
      return;
    } catch (const core::FlowError& e) {
      reason = "invalid_flow", error = e.what();
    } catch (const NatsError& e) {
      reason = "flow_not_found", error = e.what();
    } catch (const std::exception& e) {
      reason = "cannot_start", error = e.what();
    }
    // It can never run here, nor after a redelivery: fail it now, for good
    // (unless the process is ending: fail_running() has it then).
    {
      std::lock_guard lock(mutex);
      if (active_run.failed_at_exit) return;
      active_run.finishing = true;
    }
    try {
      const auto failed = write_failed(job.run_id, me, error);
      dead_letter(reason, error, job, tag);
      if (!failed || publish_end(*failed)) natsMsg_Term(m, nullptr);  // else: the next delivery
    } catch (const NatsError&) {
      // NATS is away: unacked, the next delivery fails it.
    }
    natsMsg_Destroy(m);
    active_run.msg = nullptr;
    publisher->forget(job.run_id);
    std::unique_ptr<Active> gone;
    std::lock_guard lock(mutex);
    gone = take_out(job.run_id);
    changed.notify_all();
  }

  // NATS delivered again a run this worker is running (a progress ack came
  // late, or NATS restarted): it goes on running, and answers for the newest
  // delivery. A run being given up here is left to the next delivery.
  bool adopt_redelivery(const std::string& run_id, natsMsg* m) {
    std::lock_guard lock(mutex);
    auto it = active.find(run_id);
    if (it == active.end()) return false;
    Active& a = *it->second;
    if (a.lost) {
      natsMsg_NakWithDelay(m, 1000, nullptr);
      natsMsg_Destroy(m);
    } else {
      if (a.redelivered != nullptr) natsMsg_Destroy(a.redelivered);
      a.redelivered = m;
    }
    cluster::log(cluster::LogLevel::info, "worker: a redelivery of a run it runs",
                 {{"run_id", run_id}, {"kept", !a.lost}});
    return true;
  }

  // How long an owner's record says it holds a run: three progress
  // intervals, so one late write never loses it.
  double lease_seconds() const {
    return 3 * std::chrono::duration<double>(options.progress_interval).count();
  }

  // Seconds left on the lease another process holds on this running run;
  // 0 when none (not running, ours, or run out).
  double lease_of_another(const cluster::RunRecord& r, double now) const {
    if (r.status() != "RUNNING" && r.status() != "CANCELLING") return 0;
    const json::value* o = r.snapshot.if_contains("owner");
    if (o == nullptr || !o->is_object()) return 0;
    const json::value* who = o->as_object().if_contains("instance");
    if (who == nullptr || !who->is_string() || who->as_string() == instance) return 0;
    return std::max(0.0, r.lease_until() - now);
  }

  // The newest delivery of a run becomes the one its acks answer (under the
  // mutex; only the supervisor reads `msg`).
  static void take_redelivery(Active& a) {
    if (a.redelivered == nullptr) return;
    natsMsg_Destroy(a.msg);
    a.msg = a.redelivered;
    a.redelivered = nullptr;
  }

  // A run's one RunEnd. False when NATS did not take it: the caller leaves
  // the job unacked, so that the next delivery publishes it.
  bool publish_end(const cluster::RunRecord& r) {
    try {
      cluster::publish_run_end(nats, r);
      return true;
    } catch (const NatsError& e) {
      cluster::log(cluster::LogLevel::warning, "worker: a run's end waits for NATS",
                   {{"run_id", r.snapshot.at("run_id")}, {"error", e.what()}});
      return false;
    }
  }

  // A run that is already over: its end (again: the message id makes it
  // one), then the ack that takes the job off the queue.
  void end_and_ack(const cluster::RunRecord& r, natsMsg* m) {
    if (publish_end(r)) natsMsg_AckSync(m, nullptr, nullptr);
    natsMsg_Destroy(m);
  }

  std::shared_ptr<const core::CompiledFlow> resolve(const cluster::RunJob& job) const {
    if (!job.workflow_yaml.empty()) {
      if (!options.accept_sent_flows) {
        throw NatsError("run " + job.run_id + " sends its flow whole, and worker " +
                        options.worker_id +
                        " runs only the flows of its --flows directory (--flows-only): submit "
                        "a flow it has by name");
      }
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
        // Its run_start event names the file relative to --flows: tenants
        // watch it, and the worker's own paths are not theirs to see.
        spec->file = job.flow_name + ext;
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
    // One letter per run, however often a redelivery writes it again.
    const std::string id = job.run_id + ".dlq";
    jsPubOptions po;
    jsPubOptions_Init(&po);
    if (!job.run_id.empty()) po.MsgId = id.c_str();
    jsPubAck* ack = nullptr;
    if (js_Publish(&ack, nats.handles().js, subject.c_str(), body.data(),
                   static_cast<int>(body.size()), &po, nullptr) == NATS_OK) {
      jsPubAck_Destroy(ack);
    }
  }

  // ---- supervising -------------------------------------------------------

  // The registry record, every progress interval and at each change of
  // state; a failed write is retried at the next beat. Each a
  // compare-and-set over the revision this instance last wrote (the claim's
  // first): a record another instance claimed while this one was silent is
  // never overwritten, and this worker stops (lose_id). Only one thread
  // beats at a time: start(), then the supervisor, then drain().
  void heartbeat(const char* forced_state = nullptr) {
    if (id_lost) return;
    try {
      const json::object r = record(forced_state);
      record_revision = cluster::write_worker_beat(nats, r, record_revision);
      last_beat_at = r.at("last_seen_at").to_number<double>();
    } catch (const cluster::WorkerIdTaken& e) {
      lose_id(e.holder());
    } catch (const NatsError& e) {
      cluster::log(cluster::LogLevel::warning, "worker: heartbeat not written",
                   {{"worker_id", options.worker_id}, {"error", e.what()}});
    }
    last_beat = std::chrono::steady_clock::now();
  }

  // Another instance claimed this worker's id while this one was silent
  // (stopped, frozen, cut off past kWorkerIdSilentAfter): the id is that
  // worker's now. This one takes no new run, says so, and asks its owner
  // (on_id_lost) to drain it at once: its runs are handed back as a drain
  // hands them back, and its last record is not written.
  void lose_id(const json::object& holder) {
    auto text = [&](const char* key) -> std::string {
      const json::value* v = holder.if_contains(key);
      if (v == nullptr) return "?";
      return v->is_string() ? std::string(v->as_string()) : json::serialize(*v);
    };
    char silent[32];
    std::snprintf(silent, sizeof silent, "%.1f",
                  std::max(0.0, cluster::epoch_now() - last_beat_at));
    std::string why = "worker id " + options.worker_id + " was taken over by instance " +
                      text("instance_id") + " on host " + text("host") + " pid " + text("pid") +
                      " after this worker (instance " + instance + ") was silent for " + silent +
                      " s; this worker stops";
    {
      std::lock_guard lock(mutex);
      id_lost = true;
      lost_id_reason = why;
      fetching = false;  // no new run from here; drain hands back the others
      changed.notify_all();
    }
    cluster::log(cluster::LogLevel::error, "worker: " + why,
                 {{"worker_id", options.worker_id},
                  {"instance_id", instance},
                  {"taken_by", json::value(holder)}});
    if (options.on_id_lost) options.on_id_lost(why);
  }

  // This worker's registry record as of now.
  json::object record(const char* forced_state = nullptr) {
    json::array running, tags;
    bool draining = false;
    {
      std::lock_guard lock(mutex);
      for (const auto& [id, a] : active) running.emplace_back(id);
      draining = !fetching;
    }
    for (const std::string& t : options.tags) tags.emplace_back(t);
    const unsigned held = engine.abandoned_bodies();
    const char* state = forced_state != nullptr ? forced_state
                        : draining              ? "DRAINING"
                        : held >= engine.jobs() ? "STALLED"
                        : running.empty()       ? "IDLE"
                                                : "RUNNING";
    const double now = cluster::epoch_now();
    json::array plugin_list = plugin_sync ? plugin_sync->status() : json::array();
    return json::object{
        {"worker_id", options.worker_id},
        {"instance_id", instance},
        {"host", default_worker_id()},
        {"pid", static_cast<std::int64_t>(::getpid())},
        {"pid_ns", pid_namespace()},
        {"tags", std::move(tags)},
        {"slots", options.slots},
        {"jobs", engine.jobs()},
        {"held_threads", held},
        {"running", std::move(running)},
        {"plugins", std::move(plugin_list)},
        {"platform", platform()},
        {"state", state},
        {"progress_interval_s", std::chrono::duration<double>(options.progress_interval).count()},
        {"started_at", started_at},
        {"last_seen_at", now},
        {"updated_at", now}};
  }

  // Which processes `pid` is one of ("pid:[4026531836]"): two containers
  // on one host name may each be pid 1, and only within one namespace does
  // a pid name the same process.
  static std::string pid_namespace() {
    char link[64] = {0};
    const ssize_t n = ::readlink("/proc/self/ns/pid", link, sizeof link - 1);
    // No /proc/self/ns (no pid namespaces, as on macOS): one for the host.
    return n > 0 ? std::string(link, static_cast<std::size_t>(n)) : std::string("none");
  }

  static std::string platform() {
    return plugins::platform_name(plugins::host_os(), plugins::host_arch(),
                                  PYOCO_ABI_VERSION_MAJOR);
  }

  // Every engine thread is inside a body whose run gave it up (a task that
  // ignored its cancel or deadline): nothing taken now could run.
  bool threads_all_held() const { return engine.abandoned_bodies() >= engine.jobs(); }

  // Says when this worker stops taking runs for want of a thread, and when
  // it takes them again (waking the fetchers); the registry shows STALLED.
  void watch_held_threads() {
    const bool now = threads_all_held();
    if (now == stalled) return;
    stalled = now;
    beat_owed = true;
    if (now) {
      cluster::log(cluster::LogLevel::warning,
                   "worker: every engine thread is inside a task body that its run gave up on "
                   "(cancelled, or past its deadline) and that has not returned; no run is taken "
                   "until one does (make the task return when it is cancelled)",
                   {{"worker_id", options.worker_id}, {"jobs", engine.jobs()}});
    } else {
      cluster::log(cluster::LogLevel::info, "worker: an engine thread is free again; taking runs",
                   {{"worker_id", options.worker_id}});
      std::lock_guard lock(mutex);
      changed.notify_all();
    }
  }

  void supervise() {
    for (;;) {
      std::deque<std::string> done;
      {
        std::unique_lock lock(mutex);
        changed.wait_for(
            lock,
            std::min<std::chrono::milliseconds>(
                options.progress_interval, beat_owed ? kBeatGap : std::chrono::milliseconds(500)),
            [&] { return !ended.empty() || beat_now || (stopping && active.empty()); });
        if (stopping && active.empty() && ended.empty()) return;
        done.swap(ended);
        if (beat_now) done.emplace_back();  // an empty id: only the heartbeat below
        beat_now = false;
      }
      const bool fresh = !done.empty();  // runs started or ended since the last loop
      // Runs whose end NATS did not take last time are tried again.
      std::vector<std::string> again;
      again.swap(unfinished);
      done.insert(done.end(), again.begin(), again.end());
      for (const std::string& id : done) {
        if (!id.empty() && !finish(id)) unfinished.push_back(id);
      }
      progress();
      watch_held_threads();
      // The registry hears of runs starting and ending at once, but at most
      // every kBeatGap: at hundreds of runs a second, one record a beat.
      const auto since = std::chrono::steady_clock::now() - last_beat;
      beat_owed = beat_owed || fresh;
      if ((beat_owed && since >= kBeatGap) || since >= options.progress_interval) {
        heartbeat();
        beat_owed = false;
      }
    }
  }

  // A run whose end NATS has not taken: false (tried again at the next
  // beat) until it has failed for a lease's length; then it is given up
  // (lost: no more progress, unacked), so that NATS delivers it again and
  // its MaxDeliver and the reaper end it, rather than a slot held for ever
  // by an error that does not pass.
  bool gave_up(Active& a) {
    const auto now = std::chrono::steady_clock::now();
    if (a.finish_failing_since == std::chrono::steady_clock::time_point{}) {
      a.finish_failing_since = now;
    }
    if (now - a.finish_failing_since < std::chrono::duration<double>(lease_seconds())) {
      return false;
    }
    cluster::log(cluster::LogLevel::error, "worker: a run's end could not be written; left to NATS",
                 {{"run_id", a.run_id}});
    a.lost = true;
    return false;  // the next try finds it lost: no write, no ack
  }

  // The terminal write, then the ack: a crash between them leaves a
  // terminal record, which a redelivery acks without running it again.
  // False when NATS is away: the run stays active (its progress acks go on)
  // and is finished at a later beat.
  bool finish(const std::string& id) {
    Active* a = nullptr;
    {
      std::lock_guard lock(mutex);
      auto it = active.find(id);
      if (it == active.end() || it->second->failed_at_exit) return true;
      if (!it->second->run) return false;  // its start has not returned yet
      a = it->second.get();
      take_redelivery(*a);
      // From here drain does not hand it back: its end is written (or, when
      // drain got there first and it is lost, not), and its job acked here.
      a->finishing = true;
    }
    const Run& run = *a->run;
    const core::RunStatus status = run.status();
    const RecordTasks tasks = record_tasks(run);
    // Its events first (the queue has handed them on before this RunEnd
    // reached us), then the record, then the end, then the ack.
    std::optional<cluster::RunRecord> written;
    if (!a->lost) {
      // Its lease ran out here (a stop, NATS away): its events wait for the
      // renewal (progress, next), and so does its end.
      if (!a->fence->holds()) return gave_up(*a);
      if (!publisher->flush(id, std::chrono::milliseconds(200))) return gave_up(*a);
      try {
        written = cluster::owner_write(
            runs, id, a->owner,
            [&](json::object& s) {
              s["status"] = core::to_string(status);
              tasks.write(s);
              s["plugins"] = plugins_json(run);
              s["end_time"] = cluster::epoch_now();
              s["error"] = status == core::RunStatus::Failed ? json::value(tasks.error)
                                                             : json::value(nullptr);
            },
            a->last_written ? &*a->last_written : nullptr);
      } catch (const NatsError& e) {
        cluster::log(cluster::LogLevel::warning, "worker: a run ended; its record waits for NATS",
                     {{"run_id", id}, {"error", e.what()}});
        return gave_up(*a);
      }
    }
    // Without its end published, the job is left unacked: NATS delivers it
    // again and whoever takes it publishes the end of the terminal record.
    if (written && publish_end(*written)) natsMsg_AckSync(a->msg, nullptr, nullptr);
    bool handed_back = false;
    {
      std::lock_guard lock(mutex);
      handed_back = a->handed_back;
    }
    if (written) {
      cluster::log(cluster::LogLevel::info, "worker: ended",
                   {{"run_id", id}, {"status", core::to_string(status)}});
    } else if (handed_back) {
      // Stopped here by drain, not cancelled: its record is not written, its
      // job goes back to the queue for another worker (its local status,
      // CANCELLED, is only how it was stopped here).
      cluster::log(cluster::LogLevel::info, "worker: handed back",
                   {{"run_id", id}, {"to", "another worker, after 3 s"}});
    } else {
      // Not the run's end: it was stopped here because this worker no
      // longer holds it (its lease ran out, or its end could not be
      // written); its record is the next owner's to write.
      cluster::log(cluster::LogLevel::info,
                   "worker: given up (stopped here; the run's record is left to whoever holds "
                   "it next)",
                   {{"run_id", id}, {"stopped_here_as", core::to_string(status)}});
    }
    publisher->forget(id);
    std::unique_ptr<Active> gone;  // its run (and a plugin's destroy()) ends outside the lock
    std::lock_guard lock(mutex);
    if (a->handed_back && !leases_given_up) {
      to_hand_back.push_back(a->msg);  // drain naks it once its lease is given up
      a->msg = nullptr;
    } else {
      // Handed back once drain gave its lease up: nak'd here (drain left it
      // to this finish).
      if (a->handed_back) natsMsg_NakWithDelay(a->msg, kHandBackDelayMs, nullptr);
      natsMsg_Destroy(a->msg);
      a->msg = nullptr;
    }
    gone = take_out(id);
    changed.notify_all();
    return true;
  }

  // The run's record FAILED for good, as `owner`; nullopt when another
  // owner holds it. Throws NatsError.
  std::optional<cluster::RunRecord> write_failed(const std::string& run_id,
                                                 const cluster::Owner& owner,
                                                 const std::string& error) {
    return cluster::owner_write(runs, run_id, owner, [&](json::object& r) {
      r["status"] = "FAILED";
      r["error"] = error;
      r["end_time"] = cluster::epoch_now();
      cluster::end_unfinished_tasks(r, "FAILED");
    });
  }

  // The run leaves `active` (under the mutex); the caller lets it go once
  // the lock is released: ending a run may run a plugin's code (its
  // instances' destroy), which must never run under the worker's lock.
  std::unique_ptr<Active> take_out(const std::string& id) {
    auto it = active.find(id);
    if (it == active.end()) return nullptr;
    std::unique_ptr<Active> out = std::move(it->second);
    active.erase(it);
    return out;
  }

  // Every run's InProgress ack and snapshot merge when due; a CANCELLING
  // record cancels the run here, a lost one stops it.
  void progress() {
    std::vector<Active*> due;
    const auto now = std::chrono::steady_clock::now();
    {
      std::lock_guard lock(mutex);
      for (auto& [id, a] : active) {
        if (a->failed_at_exit) continue;
        take_redelivery(*a);
        // Found lost by the publisher (more events than it holds while the
        // lease is out): its engine run stops here.
        if (a->run && a->lost && !a->stopped_as_lost && !a->handed_back && !a->finishing) {
          stop_lost(*a);
          continue;
        }
        if (a->run && !a->lost && now - a->last_progress >= options.progress_interval) {
          due.push_back(a.get());
        }
      }
    }
    for (Active* a : due) {
      a->last_progress = now;
      const RecordTasks tasks = record_tasks(*a->run);
      bool cancel = false;
      double lease_until = 0;
      std::optional<cluster::RunRecord> w;
      try {
        w = cluster::owner_write(
            runs, a->run_id, a->owner,
            [&](json::object& s) {
              cancel = s["status"].as_string() == "CANCELLING";
              const double at = cluster::epoch_now();
              tasks.write(s);
              s["plugins"] = plugins_json(*a->run);
              s["heartbeat_at"] = at;
              // Tried again on a conflict: a drain that gave the lease up
              // meanwhile is not undone.
              if (!a->lost)
                s["owner"].as_object()["lease_until"] = lease_until = at + lease_seconds();
            },
            a->last_written ? &*a->last_written : nullptr);
      } catch (const NatsError&) {
        // NATS is away: the next beat tries again. The job is kept only
        // while the lease last written holds: past it, NATS may hand the run
        // to a worker that can write (and this one finds it lost).
        if (std::chrono::steady_clock::now() - a->lease_written <
            std::chrono::duration<double>(lease_seconds())) {
          natsMsg_InProgress(a->msg, nullptr);
        }
        continue;
      }
      if (!w) {
        a->lost = true;  // someone else owns it now: stop, never write or ack
        std::lock_guard lock(mutex);
        stop_lost(*a);
        continue;
      }
      if (lease_until > 0) {
        a->fence->lease_until = lease_until;
        publisher->release(a->run_id);  // what waited for it, if its lease had run out
      }
      a->last_written = *w;
      a->lease_written = now;
      natsMsg_InProgress(a->msg, nullptr);  // after the lease: never a job held without one
      if (cancel) a->run->cancel();
    }
  }

  // A run lost here (under the mutex): its events muted (its cancellation
  // here is not the run's news) and its engine run cancelled.
  void stop_lost(Active& a) {
    a.lost = true;
    a.stopped_as_lost = true;
    publisher->mute(a.run_id);
    cluster::log(cluster::LogLevel::warning, "worker: lost a run; stopped here",
                 {{"run_id", a.run_id}, {"attempt", a.owner.attempt}});
    a.run->cancel();
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
  // First: a worker id a running worker has stops it here, before anything
  // of the other's (its --plugins-dir) is touched. A worker killed on this
  // host is known gone at once; elsewhere, after three missed beats.
  {
    const json::object first = s.record();
    s.record_revision =
        cluster::claim_worker_id(s.nats, first, kWorkerIdSilentAfter, s.options.stop_requested);
    s.last_beat_at = first.at("last_seen_at").to_number<double>();
  }
  s.registered = true;   // from here its end is written, even if start() fails below
  s.open_plugin_sync();  // another worker's --plugins-dir stops it here
  const natsStatus st =
      natsConnection_Subscribe(&s.cancel_sub, s.nats.handles().nc, "pyoco.cancel.*", on_cancel, &s);
  if (st != NATS_OK) cluster::throw_nats("cannot listen for cancels", st);
  // Before the first fetch: a worker that was down catches up first.
  if (s.plugin_sync) s.sync_plugins();
  s.heartbeat();
  for (const std::string& tag : s.options.tags) {
    s.threads.emplace_back([state = state_, tag] { state->fetch_loop(tag); });
  }
  if (s.plugin_sync) s.threads.emplace_back([state = state_] { state->plugin_sync_loop(); });
  s.threads.emplace_back([state = state_] { state->supervise(); });
  json::array tags;
  for (const std::string& t : s.options.tags) tags.emplace_back(t);
  cluster::log(cluster::LogLevel::info, "worker: started",
               {{"worker_id", s.options.worker_id}, {"tags", tags}, {"slots", s.options.slots}});
}

void Worker::fail_running(const std::string& reason) {
  State& s = *state_;
  struct Held {
    std::string run_id;
    cluster::Owner owner;
    natsMsg* msg;
  };
  std::vector<Held> held;
  {
    std::unique_lock lock(s.mutex);
    s.fetching = false;
    s.stopping = true;
    s.changed.notify_all();
    // A run whose end finish() is writing gets it written and acked first
    // (briefly: the process is ending).
    s.changed.wait_for(lock, std::chrono::seconds(2), [&] {
      return std::none_of(s.active.begin(), s.active.end(),
                          [](const auto& e) { return e.second->finishing; });
    });
    for (auto& [id, a] : s.active) {
      if (a->lost || a->finishing) continue;  // another's now, or its end is being written
      a->lost = true;                         // nothing more of it is published or started
      a->stopped_as_lost = true;              // nor stopped here as lost: it is failed
      a->failed_at_exit = true;
      held.push_back({id, a->owner, a->msg});
    }
  }
  for (const Held& h : held) {
    std::string outcome = "recorded FAILED";
    try {
      const auto failed = s.write_failed(h.run_id, h.owner, reason);
      if (!failed) {
        outcome = "not recorded: another worker holds it";
      } else if (s.publish_end(*failed) && h.msg != nullptr) {
        // Acked as finish() does, and at once (the process ends next).
        natsMsg_AckSync(h.msg, nullptr, nullptr);
      }
    } catch (const std::exception& e) {
      outcome = std::string("not recorded, left to NATS to deliver again: ") + e.what();
    } catch (...) {
      outcome = "not recorded, left to NATS to deliver again";
    }
    cluster::log(cluster::LogLevel::error, "worker: a run failed as the process ended",
                 {{"run_id", h.run_id}, {"error", reason}, {"outcome", outcome}});
  }
}

void Worker::drain(std::chrono::milliseconds grace) {
  State& s = *state_;
  {
    std::lock_guard lock(s.mutex);
    if (s.stopping) return;
    s.fetching = false;
    s.changed.notify_all();
  }
  if (s.registered) {
    cluster::log(cluster::LogLevel::info, "worker: draining",
                 {{"worker_id", s.options.worker_id},
                  {"grace_s", std::chrono::duration<double>(grace).count()}});
  }
  std::vector<std::pair<std::string, cluster::Owner>> handed_back;
  {
    std::unique_lock lock(s.mutex);
    s.changed.wait_for(lock, grace, [&] { return s.active.empty(); });
    // What still runs is cancelled here and handed back for another worker.
    if (!s.active.empty()) {
      cluster::log(cluster::LogLevel::warning, "worker: runs left to other workers",
                   {{"runs", s.active.size()}});
    }
    for (auto& [id, a] : s.active) {
      if (a->finishing) continue;  // it ended in time: finish() writes its end and acks it
      if (!a->lost) {
        handed_back.emplace_back(id, a->owner);
        a->handed_back = true;
      }
      a->lost = true;
      // Muted first: the run is not cancelled, only moved; a watcher and the
      // gateway's index must not see it CANCELLING.
      s.publisher->mute(id);
      if (a->run) a->run->cancel();
    }
    s.stopping = true;
    s.changed.notify_all();
  }
  // Its lease given up, then its job nak'd: the next worker claims it in
  // moments, not after the AckWait and then the lease (about 35 s at the
  // defaults). The nak waits kHandBackDelay: the cancelled run's bodies
  // get the engine's second to stop and this process time to exit (its
  // commands die with it), so no step runs here and there at once. A
  // write or a nak that fails leaves it to the AckWait, as before.
  for (const auto& [id, owner] : handed_back) give_up_lease(s.runs, id, owner);
  {
    std::lock_guard lock(s.mutex);
    s.leases_given_up = true;
    for (natsMsg* m : s.to_hand_back) {
      natsMsg_NakWithDelay(m, kHandBackDelayMs, nullptr);
      natsMsg_Destroy(m);
    }
    s.to_hand_back.clear();
    for (auto& [id, a] : s.active) {
      if (a->handed_back && !a->finishing && a->msg != nullptr) {
        natsMsg_NakWithDelay(a->msg, kHandBackDelayMs, nullptr);
      }
    }
  }
  if (s.cancel_sub != nullptr) {
    cluster::close_subscription(s.cancel_sub);
    s.cancel_sub = nullptr;
  }
  for (std::thread& t : s.threads) {
    if (t.joinable()) t.join();
  }
  for (natsSubscription* sub : s.subscriptions) natsSubscription_Destroy(sub);
  s.subscriptions.clear();
  if (s.registered) s.heartbeat("STOPPED_GRACEFUL");
}

std::size_t Worker::running() const {
  std::lock_guard lock(state_->mutex);
  return state_->active.size();
}

const std::string& Worker::worker_id() const { return state_->options.worker_id; }

std::optional<std::string> Worker::id_lost() const {
  std::lock_guard lock(state_->mutex);
  if (!state_->id_lost) return std::nullopt;
  return state_->lost_id_reason;
}

}  // namespace pyoco::worker
