// `pyoco client ...`: the gateway's API from the command line.
#include <pyoco/core/json_text.hpp>
#include <pyoco/core/node_name.hpp>
#include <pyoco/core/param_name.hpp>
#include <pyoco/core/text.hpp>
#include <pyoco/core/value.hpp>
#include <pyoco/engine/engine.hpp>
#include <pyoco/runner/loaded_flow.hpp>
#include <pyoco/server/client.hpp>
#include <pyoco/trace/sinks.hpp>

#include <unistd.h>

#include <boost/json.hpp>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <thread>

#include "app.hpp"
#include "command.hpp"
#include "gateway_flags.hpp"
#include "table.hpp"

namespace pyoco::cli {

namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

// A run id as the gateway names runs (1-128 of A-Z a-z 0-9 . _ -): it goes
// into the request's path, where "../x" or "a?b" would change the request.
const CLI::Validator kRunId(
    [](std::string& id) -> std::string {
      try {
        check_run_id(id);
        return "";
      } catch (const std::invalid_argument& e) {
        return core::printable(e.what());
      }
    },
    "RUN_ID");

struct ClientArgs {
  GatewayFlags gateway;
  std::string flow;  // submit: the flow name; submit-yaml: the file
  std::string flow_name;
  std::string tag;
  std::vector<std::string> params;  // k=v
  std::string params_json;
  std::string params_file;
  std::string idempotency_key;
  std::string run_id;
  std::string status;  // list --status; workers --state
  std::string task;    // logs --task
  int limit = 50;      // list --limit
  int tail = 0;        // logs --tail
  bool include_hidden = false;
  bool wait = false;
  bool json_out = false;
};

server::Endpoint gateway(const ClientArgs& a) { return a.gateway.endpoint(); }

// The gateway's answer as JSON; an error answer becomes one line on stderr.
json::value call(const ClientArgs& a, http::verb method, const std::string& target,
                 const std::string& body = {}, const std::string& type = "application/json",
                 std::map<std::string, std::string> headers = {}) {
  return a.gateway.call(method, target, body, type, headers);
}

json::object params_of(const ClientArgs& a) {
  // --params-file, then --params, then each --param: later wins.
  json::object out;
  if (!a.params_file.empty()) {
    try {
      out = runner::read_params_file(a.params_file);  // as `pyoco run` reads it
    } catch (const runner::SetupError& e) {
      throw server::ClientError("--params-file " + e.detail());
    }
  }
  if (!a.params_json.empty()) {
    boost::system::error_code ec;
    json::value v = core::parse_json(a.params_json, ec, 1);
    if (core::is_too_deep(ec)) {
      throw server::ClientError("--params: a param is " + std::string(core::kTooDeepText));
    }
    if (ec) {
      throw server::ClientError(
          "--params:" + core::json_error_position(a.params_json, core::kMaxValueDepth + 1) +
          ": not JSON: " + ec.message());
    }
    if (!v.is_object()) throw server::ClientError("--params: not a JSON object of params");
    if (const core::JsonTextProblem p =
            core::json_text_problem(a.params_json, core::kMaxValueDepth + 1)) {
      throw server::ClientError("--params: " + p.path + ": " + core::problem_text(p));
    }
    for (auto& [k, val] : v.as_object()) {
      if (const std::string why = core::param_name_problem(k); !why.empty()) {
        throw server::ClientError("--params: " + core::shown_param_name(k) + ": " + why);
      }
      out[k] = val;
    }
  }
  for (const std::string& kv : a.params) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw server::ClientError("--param " + kv + ": write KEY=VALUE");
    }
    // As `pyoco run -p` says it.
    if (const std::string why = core::param_option_problem(kv.substr(0, eq), "--param");
        !why.empty()) {
      throw server::ClientError("--param " + why);
    }
    boost::system::error_code ec;
    const std::string value = kv.substr(eq + 1);
    json::value v = core::parse_json(value, ec, 0);
    if (core::is_too_deep(ec)) {
      throw server::ClientError("--param " + kv.substr(0, eq) + ": " +
                                std::string(core::kTooDeepText));
    }
    if (const core::JsonTextProblem p =
            core::json_text_problem(value, core::kMaxValueDepth, kv.substr(0, eq));
        !ec && p) {
      throw server::ClientError("--param " + p.path + ": " + core::problem_text(p));
    }
    out[kv.substr(0, eq)] = ec ? json::value(value) : v;
  }
  return out;
}

int exit_for(const std::string& status) {
  if (status == "COMPLETED") return kExitOk;
  if (status == "CANCELLED") return kExitCancelled;
  return kExitFailed;
}

// Follows run `id`'s watch stream from after event `last` until
// `on_event` answers false (the run's end): each event as its JSON object
// and its text. A stream that drops is resumed after the last event seen;
// a gateway that goes away (a restart) or answers 503 (NATS away) is tried
// again every half second, for up to a minute without an event, once this
// command has reached it (`reached`: a submit just answered, or the
// stream's first answer): the run goes on without the watcher.
void follow_watch(const ClientArgs& a, const std::string& id, std::string last, bool reached,
                  const std::function<bool(const json::object&, const std::string&)>& on_event) {
  using Clock = std::chrono::steady_clock;
  Clock::time_point quiet_since{};  // the last drop with no event since; zero: none
  bool said = false;
  std::string unreached;  // why the last try did not reach the gateway; empty: it did
  for (bool ended = false, first = true; !ended; first = false) {
    if (!first) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    try {
      server::http_stream(
          gateway(a), "/runs/" + id + "/watch", last, [&](const server::StreamEvent& e) {
            reached = true;
            quiet_since = {};
            unreached.clear();
            if (said) {
              std::cerr << "pyoco client: the gateway answers again; following on\n";
              said = false;
            }
            if (e.event == "snapshot") return true;
            last = e.id;
            boost::system::error_code ec;
            const json::value v = core::parse_json(e.data, ec);
            if (ec || !v.is_object()) return true;
            ended = !on_event(v.as_object(), e.data);
            return !ended;
          });
      if (ended) return;
      unreached.clear();  // it answered, then closed the stream: reached
    } catch (const server::ClientError& e) {
      const bool away =
          !e.reason().empty() || std::string_view(e.what()).starts_with("the gateway answered 503");
      if (!reached || !away) throw;
      unreached = e.reason().empty() ? std::string("503") : e.reason();
      if (!said) {
        std::cerr << "pyoco client: lost the gateway ("
                  << (e.reason().empty() ? std::string("503") : e.reason())
                  << "); trying again for up to a minute\n";
        said = true;
      }
    }
    if (quiet_since == Clock::time_point{}) {
      quiet_since = Clock::now();
    } else if (Clock::now() - quiet_since > std::chrono::minutes(1)) {
      // Said as it was: a gateway that refused every try is not a quiet stream.
      throw server::ClientError(
          (unreached.empty() ? "the event stream of run " + id + " gave nothing for a minute"
                             : "the gateway could not be reached for a minute (the last try: " +
                                   unreached + "); run " + id + " goes on without this watcher") +
          "; `pyoco client get " + id + "` shows where the run is");
    }
  }
}

// Said before the start line of a later attempt than one already shown.
std::string attempt_line(trace::TraceFormat format, std::int64_t attempt, std::int64_t before) {
  const std::string n = std::to_string(attempt);
  const std::string why = "the run starts again from the beginning (attempt " +
                          std::to_string(before) +
                          "'s worker stopped, was drained or lost the run)";
  return format == trace::TraceFormat::Cute ? "🔁 attempt " + n + ": " + why
                                            : "WARN pyoco attempt=" + n + " " + why;
}

// Follows the run's events until its end, printing its trace as `pyoco run`
// prints a local one (unless `quiet`). Returns its final status.
std::string follow_events(const ClientArgs& a, const std::string& id, bool quiet, bool reached) {
  const char* cute = std::getenv("PYOCO_CUTE");
  const trace::TraceFormat format =
      a.json_out ? trace::TraceFormat::Json
      : isatty(STDOUT_FILENO) != 0 && (cute == nullptr || std::string(cute) != "0")
          ? trace::TraceFormat::Cute
          : trace::TraceFormat::Plain;
  std::string status;
  // The cancel and end lines name the flow as the start line does (the
  // flow's own name, as a local run's trace): run_cancelling and run_end
  // carry the name the run was submitted under, which may differ
  // (docs/cluster.md).
  std::string started_flow;
  std::int64_t started_attempt = 0;  // of the last start line printed; 0: none
  follow_watch(a, id, "", reached, [&](const json::object& v, const std::string& text) {
    auto event = trace::event_from_json(v);
    if (!event) return true;
    if (event->kind == trace::EventKind::RunStart) started_flow = event->flow;
    if ((event->kind == trace::EventKind::RunEnd ||
         event->kind == trace::EventKind::RunCancelling) &&
        !started_flow.empty()) {
      event->flow = started_flow;
    }
    if (quiet) {
      // only the end matters
    } else if (format == trace::TraceFormat::Json) {
      std::cout << text << std::endl;
    } else {
      if (event->kind == trace::EventKind::RunStart) {
        // Another attempt: a start line alone would read as the same run
        // starting twice.
        // Only after a start this watch printed: a delivery handed back
        // before it started counts as an attempt too.
        const json::value* n = v.if_contains("run_attempt");
        const std::int64_t attempt = n != nullptr && n->is_int64() ? n->as_int64() : 1;
        if (started_attempt > 0 && attempt > started_attempt) {
          std::cout << attempt_line(format, attempt, started_attempt) << std::endl;
        }
        started_attempt = attempt;
      }
      std::vector<trace::PlannedNode> planned;
      const std::string line = trace::format_event(format, event->view(planned));
      if (!line.empty()) std::cout << line << std::endl;
    }
    if (event->kind != trace::EventKind::RunEnd) return true;
    const json::value* st = v.if_contains("status");
    status = st != nullptr && st->is_string() ? std::string(st->as_string()) : "FAILED";
    return false;
  });
  return status;
}

// The trace, then the exit code of the run's status.
int follow(const ClientArgs& a, const std::string& id, bool reached) {
  return exit_for(follow_events(a, id, false, reached));
}

int submitted(const ClientArgs& a, const json::value& v) {
  const std::string id(v.at("run_id").as_string());
  if (a.json_out && !a.wait) {
    std::cout << json::serialize(v) << '\n';
    return kExitOk;
  }
  if (!a.wait) {
    std::cout << id << '\n';
    return kExitOk;
  }
  return follow(a, id, true);  // the gateway just answered the submit
}

template <class F>
int guarded(const char* what, F f) {
  try {
    return f();
  } catch (const server::ClientError& e) {
    std::cerr << "pyoco client " << what << ": " << e.what() << '\n';
    return kExitUsage;
  }
}

void common(CLI::App* cmd, ClientArgs& a) { a.gateway.add_to(cmd); }

void submit_options(CLI::App* cmd, ClientArgs& a) {
  cmd->add_option("--tag", a.tag, "Run on workers of this tag (default: default)");
  cmd->add_flag("--wait", a.wait, "Follow the run until it ends; the exit code is its status");
  cmd->add_option("--idempotency-key", a.idempotency_key,
                  "Submitting again with the same key gives the same run");
  cmd->add_flag("--json", a.json_out, "Print the gateway's answer as JSON");
}

}  // namespace

void add_client_commands(CLI::App* client, CommandTable& table) {
  auto a = std::make_shared<ClientArgs>();
  CLI::App* submit =
      client->add_subcommand("submit", "Submit a run of a flow the workers have (by name)");
  submit->add_option("flow", a->flow, "The flow's name (a worker's --flows DIR/<name>.yaml)")
      ->required();
  submit->add_option("-p,--param", a->params, "A param KEY=VALUE (JSON when it parses)")
      ->allow_extra_args(false);
  submit->add_option("--params", a->params_json, "Params as one JSON object");
  submit->add_option("--params-file", a->params_file,
                     "Params from a file holding one object, as JSON or YAML");
  submit_options(submit, *a);
  common(submit, *a);
  table.add(submit, [a] {
    return guarded("submit", [&] {
      json::object body{{"flow_name", a->flow}, {"params", params_of(*a)}};
      if (!a->tag.empty()) body["tag"] = a->tag;
      std::map<std::string, std::string> headers;
      if (!a->idempotency_key.empty()) headers["Idempotency-Key"] = a->idempotency_key;
      return submitted(*a, call(*a, http::verb::post, "/runs", json::serialize(body),
                                "application/json", headers));
    });
  });

  CLI::App* yaml =
      client->add_subcommand("submit-yaml", "Submit a run of a flow file (sent whole)");
  yaml->add_option("file", a->flow, "The flow file")->required()->check(CLI::ExistingFile);
  yaml->add_option("--flow-name", a->flow_name, "Its name in listings (default: the flow's)");
  submit_options(yaml, *a);
  common(yaml, *a);
  table.add(yaml, [a] {
    return guarded("submit-yaml", [&] {
      std::ifstream in(a->flow, std::ios::binary);
      const std::string text((std::istreambuf_iterator<char>(in)), {});
      const std::string boundary = "pyoco-form-7f3a9c";
      std::string body;
      auto part = [&](const std::string& name, const std::string& value, bool file) {
        // The file's own name: the gateway's errors name it.
        std::string filename = std::filesystem::path(a->flow).filename().string();
        std::replace_if(
            filename.begin(), filename.end(), [](char c) { return c == '"' || c == '\\'; }, '_');
        body += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + name + "\"" +
                (file ? "; filename=\"" + core::printable(filename) +
                            "\"\r\nContent-Type: application/yaml"
                      : "") +
                "\r\n\r\n" + value + "\r\n";
      };
      part("workflow", text, true);
      if (!a->flow_name.empty()) part("flow_name", a->flow_name, false);
      if (!a->tag.empty()) part("tag", a->tag, false);
      body += "--" + boundary + "--\r\n";
      std::map<std::string, std::string> headers;
      if (!a->idempotency_key.empty()) headers["Idempotency-Key"] = a->idempotency_key;
      return submitted(*a, call(*a, http::verb::post, "/runs/yaml", body,
                                "multipart/form-data; boundary=" + boundary, headers));
    });
  });

  CLI::App* get = client->add_subcommand("get", "Show a run's record");
  get->add_option("run_id", a->run_id, "The run")->required()->check(kRunId);
  common(get, *a);
  table.add(get, [a] {
    return guarded("get", [&] {
      std::cout << json::serialize(call(*a, http::verb::get, "/runs/" + a->run_id)) << '\n';
      return kExitOk;
    });
  });

  CLI::App* list = client->add_subcommand("list", "Recent runs, newest first");
  list->add_option("--status", a->status, "Only runs of this status (COMPLETED, FAILED, ...)");
  list->add_option("--flow", a->flow_name, "Only runs of this flow");
  list->add_option("--tag", a->tag, "Only runs of this tag");
  list->add_option("--limit", a->limit, "At most this many (default 50, at most 200)");
  list->add_flag("--json", a->json_out, "The gateway's answer as JSON");
  common(list, *a);
  table.add(list, [a] {
    return guarded("list", [&] {
      std::string target = "/runs?limit=" + std::to_string(a->limit);
      if (!a->status.empty()) target += "&status=" + a->status;
      if (!a->flow_name.empty()) target += "&flow=" + a->flow_name;
      if (!a->tag.empty()) target += "&tag=" + a->tag;
      const json::value v = call(*a, http::verb::get, target);
      if (a->json_out) {
        std::cout << json::serialize(v) << '\n';
        return kExitOk;
      }
      Table t({"RUN", "FLOW", "TAG", "STATUS", "UPDATED"});
      for (const json::value& r : v.as_array()) {
        const json::object& o = r.as_object();
        const auto when = std::chrono::system_clock::time_point(
            std::chrono::duration_cast<std::chrono::system_clock::duration>(
                std::chrono::duration<double>(o.at("updated_at").to_number<double>())));
        t.add({std::string(o.at("run_id").as_string()), std::string(o.at("flow_name").as_string()),
               std::string(o.at("tag").as_string()), std::string(o.at("status").as_string()),
               trace::utc_timestamp(when)});
      }
      t.print(std::cout);
      return kExitOk;
    });
  });

  CLI::App* logs = client->add_subcommand("logs", "What a run's tasks logged");
  logs->add_option("run_id", a->run_id, "The run")->required()->check(kRunId);
  logs->add_option("--task", a->task, "Only this node's lines (its iterations too)");
  logs->add_option("--tail", a->tail, "Only the last N lines (at most 10000)")
      ->check(CLI::Range(1, 10000));
  logs->add_flag("-f,--follow", a->wait, "Then the lines still to come, until the run ends");
  common(logs, *a);
  table.add(logs, [a] {
    return guarded("logs", [&] {
      std::string target = "/runs/" + a->run_id + "/logs?";
      if (!a->task.empty()) target += "task=" + a->task + "&";
      if (a->tail > 0) target += "tail=" + std::to_string(a->tail) + "&";
      // Another tenant's task wrote these: never raw escapes to a terminal.
      auto print = [](const json::object& line) {
        std::cout << "[" << core::printable(line.at("node").as_string()) << "] "
                  << core::printable(line.at("message").as_string()) << '\n';
      };
      // Page by page: the gateway answers at most a few MB at a time.
      std::uint64_t next_after = 0;
      for (bool more = true; more;) {
        const json::value v =
            call(*a, http::verb::get, target + "after=" + std::to_string(next_after));
        for (const json::value& line : v.at("items").as_array()) print(line.as_object());
        std::cout.flush();
        next_after = v.at("next_after").to_number<std::uint64_t>();
        if (const json::value* t = v.as_object().if_contains("truncated");
            t != nullptr && t->is_bool() && t->as_bool()) {
          std::cerr << "pyoco client logs: only the last lines that fit in one answer (about 4 "
                       "MB) are shown, fewer than --tail asked for\n";
        }
        const json::value* m = v.as_object().if_contains("more");
        more = m != nullptr && m->is_bool() && m->as_bool();
      }
      if (!a->wait) return kExitOk;
      // Then follow the run's events from after the last line read.
      follow_watch(
          *a, a->run_id, next_after == 0 ? "" : std::to_string(next_after), true,
          [&](const json::object& ev, const std::string&) {
            const json::value* kind = ev.if_contains("kind");
            if (kind == nullptr || !kind->is_string()) return true;
            if (kind->as_string() == "log") {
              const json::value* n = ev.if_contains("node");
              const std::string node =
                  n != nullptr && n->is_string() ? std::string(n->as_string()) : "";
              if (a->task.empty() || node == a->task || core::is_iteration_of(node, a->task)) {
                const json::value* m = ev.if_contains("message");
                print(json::object{
                    {"node", node},
                    {"message", m != nullptr && m->is_string() ? *m : json::value("")}});
                std::cout.flush();
              }
            }
            return kind->as_string() != "run_end";
          });
      return kExitOk;
    });
  });

  CLI::App* watch = client->add_subcommand(
      "watch", "Print a run's trace as it runs (from its start), until it ends");
  watch->add_option("run_id", a->run_id, "The run")->required()->check(kRunId);
  watch->add_flag("--until-terminal", a->wait,
                  "End when the run ends (always so; pyoco-server's flag)");
  watch->add_flag("--json", a->json_out, "The events as JSON, one a line");
  common(watch, *a);
  table.add(watch, [a] { return guarded("watch", [&] { return follow(*a, a->run_id, false); }); });

  CLI::App* workers = client->add_subcommand("workers", "List the workers and what they run");
  workers->add_flag("--include-hidden", a->include_hidden, "Hidden workers too");
  workers->add_option("--state", a->status,
                      "Only RUNNING, IDLE, STALLED, DRAINING, STOPPED_GRACEFUL or DISCONNECTED");
  workers->add_flag("--json", a->json_out, "The gateway's answer as JSON");
  common(workers, *a);
  table.add(workers, [a] {
    return guarded("workers", [&] {
      std::string target =
          std::string("/workers?include_hidden=") + (a->include_hidden ? "true" : "false");
      if (!a->status.empty()) target += "&state=" + a->status;
      const json::value v = call(*a, http::verb::get, target);
      if (a->json_out) {
        std::cout << json::serialize(v) << '\n';
        return kExitOk;
      }
      // HELD: threads held by bodies their run gave up on, of --jobs (a
      // worker they all hold is STALLED); "-" for a worker that says not.
      Table t({"WORKER", "STATE", "TAGS", "SLOTS", "RUNNING", "HELD", "SEEN", "HIDDEN"});
      const double now =
          std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
              .count();
      for (const json::value& w : v.as_array()) {
        const json::object& o = w.as_object();
        std::string tags;
        for (const json::value& tag : o.at("tags").as_array()) {
          tags += (tags.empty() ? "" : ",") + std::string(tag.as_string());
        }
        const double seen = o.at("heartbeat_at").to_number<double>();
        const json::value* held = o.if_contains("held_threads");
        const json::value* jobs = o.if_contains("jobs");
        const std::string held_text =
            held != nullptr && jobs != nullptr && held->is_int64() && jobs->is_int64()
                ? std::to_string(held->as_int64()) + "/" + std::to_string(jobs->as_int64())
                : "-";
        t.add({std::string(o.at("worker_id").as_string()), std::string(o.at("state").as_string()),
               tags, std::to_string(o.at("slots").to_number<std::int64_t>()),
               std::to_string(o.at("running").as_array().size()), held_text,
               std::to_string(static_cast<std::int64_t>(now - seen)) + " s ago",
               o.at("hidden").as_bool() ? "yes" : ""});
      }
      t.print(std::cout);
      return kExitOk;
    });
  });

  CLI::App* cancel = client->add_subcommand(
      "cancel", "Cancel a run (pending: at once; running: its worker stops it)");
  cancel->add_option("run_id", a->run_id, "The run")->required()->check(kRunId);
  cancel->add_flag("--wait", a->wait, "Wait until it has ended");
  common(cancel, *a);
  table.add(cancel, [a] {
    return guarded("cancel", [&] {
      const json::value v = call(*a, http::verb::post, "/runs/" + a->run_id + "/cancel");
      std::string status(v.at("status").as_string());
      std::cout << "run " << a->run_id << " " << status << '\n';
      // As `pyoco runs cancel`: 0 when the cancel took (with --wait: the
      // run ended CANCELLED), 1 when the run had ended otherwise first.
      if (a->wait && status == "CANCELLING") {
        status = follow_events(*a, a->run_id, true, true);
        std::cout << "run " << a->run_id << " " << status << '\n';
      }
      if (status == "CANCELLED" || (!a->wait && status == "CANCELLING")) return kExitOk;
      return kExitFailed;
    });
  });
}

}  // namespace pyoco::cli
