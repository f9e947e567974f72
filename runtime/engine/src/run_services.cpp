// What a run offers its calls from any thread: log lines and heartbeats
// (handed to the run's strand), artifacts, and the run's scratch.
#include <openssl/evp.h>

#include <filesystem>
#include <fstream>
#include <mutex>

#include "hex.hpp"
#include "run_state.hpp"

namespace pyoco {

namespace {

std::string guess_media_type(std::string_view name) {
  auto ends = [&](std::string_view ext) {
    return name.size() >= ext.size() && name.substr(name.size() - ext.size()) == ext;
  };
  if (ends(".json")) return "application/json";
  if (ends(".txt") || ends(".log")) return "text/plain";
  if (ends(".csv")) return "text/csv";
  if (ends(".html")) return "text/html";
  if (ends(".png")) return "image/png";
  return "application/octet-stream";
}

}  // namespace

// Log lines come from task threads; they join the run's other events on its
// strand, so every view sees one order. A line written after its task was
// abandoned (deadline, cancel) is still recorded while the run lasts; one
// written after the run's end is dropped.
void RunState::emit_log(const plugins::CallInfo& call, plugins::LogLevel level,
                        std::string_view message) {
  if (listener_ == nullptr) return;
  auto emit_now = [this, call, level](std::string_view text) {
    if (core::is_terminal(status())) return;
    trace::RunEvent e{};
    e.kind = trace::EventKind::Log;
    e.time = std::chrono::system_clock::now();
    e.run_id = id_;
    e.flow = flow_name();
    e.node = call.node_name;
    e.task = call.task_name;
    e.attempt = call.attempt;
    e.status = status();
    e.level = static_cast<trace::LogLevel>(static_cast<int>(level));
    e.message = text;
    publish(e);
  };
  if (strand_.running_in_this_thread()) {
    emit_now(message);
  } else {
    on_strand([emit_now, text = std::string(message)] { emit_now(text); });
  }
}

std::string RunState::write_artifact(std::string_view name, std::string_view bytes,
                                     std::string_view media_type, ArtifactRecord& record) {
  const std::filesystem::path rel(name);
  for (const auto& part : rel) {
    if (part == ".." || rel.is_absolute()) {
      throw std::runtime_error("artifact name '" + std::string(name) +
                               "' must stay inside the run's artifact directory");
    }
  }
  const std::filesystem::path path = options_.artifact_dir / id_ / rel;
  {
    std::lock_guard<std::mutex> lock(artifact_mutex_);
    std::filesystem::create_directories(path.parent_path());
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) throw std::runtime_error("cannot write artifact " + path.string());
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &len, EVP_sha256(), nullptr);
  record.name = std::string(name);
  record.path = path.string();
  record.size = bytes.size();
  record.sha256 = hex(digest, len);
  record.media_type = media_type.empty() ? guess_media_type(name) : std::string(media_type);
  return record.path;
}

core::Value RunState::scratch_get(std::string_view key) {
  std::lock_guard<std::mutex> lock(scratch_mutex_);
  auto it = scratch_.find(key);
  return it == scratch_.end() ? core::Value() : it->second;
}

void RunState::scratch_set(std::string_view key, core::Value value) {
  std::lock_guard<std::mutex> lock(scratch_mutex_);
  scratch_[std::string(key)] = std::move(value);
}

pyoco_status RunState::scratch_update(std::string_view key, const core::Value& expected,
                                      const core::Value& desired, core::Value& current) {
  std::lock_guard<std::mutex> lock(scratch_mutex_);
  auto it = scratch_.find(key);
  const bool unset = it == scratch_.end() || it->second.node() == nullptr;
  const bool matches = expected.node() == nullptr ? unset : !unset && it->second == expected;
  if (!matches) {
    current = unset ? core::Value() : it->second;
    return PYOCO_ERR_CONFLICT;
  }
  if (it == scratch_.end()) {
    it = scratch_.emplace(std::string(key), desired).first;
  } else {
    it->second = desired;
  }
  current = desired;
  return PYOCO_OK;
}

void RunState::emit_heartbeat(const plugins::CallInfo& call, std::size_t record, double progress,
                              std::string_view message) {
  on_strand([this, call, record, progress, text = std::string(message)] {
    if (core::is_terminal(status())) return;
    TaskRecord& r = records_[record];
    r.progress = progress;
    r.heartbeat = text;
    r.heartbeat_at = std::chrono::system_clock::now();
    if (listener_ == nullptr) return;
    trace::RunEvent e{};
    e.kind = trace::EventKind::Heartbeat;
    e.time = r.heartbeat_at;
    e.run_id = id_;
    e.flow = flow_name();
    e.node = call.node_name;
    e.task = call.task_name;
    e.record = static_cast<std::uint32_t>(record);
    e.attempt = call.attempt;
    e.status = status();
    e.progress = progress;
    e.message = text;
    publish(e);
  });
}

}  // namespace pyoco
