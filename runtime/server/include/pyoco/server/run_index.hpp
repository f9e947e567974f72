// The gateway's read model of runs for `GET /runs`: a SQLite table fed by
// the run-level events of PYOCO_EVENTS (submitted, started, cancelling,
// ended), each applied in a transaction with the stream sequence it came
// from, so that a restart resumes where it stopped. Lists are indexed
// queries, never a scan of the KV bucket.
#pragma once

#include <pyoco/cluster/connection.hpp>

#include <boost/json/object.hpp>

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pyoco::server {

struct RunQuery {
  std::string status, flow, tag;
  double updated_after = 0;                              // epoch seconds; 0: any
  std::optional<std::pair<double, std::string>> before;  // the cursor: (updated_at, run_id)
  std::size_t limit = 50;
  std::optional<std::string> tenant;  // set: that tenant's runs only ("" : runs of none)
};

struct RunPage {
  std::vector<boost::json::object> items;              // newest update first
  std::optional<std::pair<double, std::string>> next;  // the cursor of the next page
};

class RunIndex {
 public:
  // `file` empty: in memory (it then replays the stream from its start).
  RunIndex(cluster::Connection& nats, const std::filesystem::path& file);
  ~RunIndex();  // stops following
  RunIndex(const RunIndex&) = delete;
  RunIndex& operator=(const RunIndex&) = delete;

  RunPage query(const RunQuery& q) const;
  // How many runs have this status (an indexed count).
  std::uint64_t count(const std::string& status) const;
  // Runs per status, of one tenant's runs (set) or of all.
  std::map<std::string, std::uint64_t> counts(const std::optional<std::string>& tenant) const;
  std::uint64_t applied() const;  // the last stream sequence applied
  // The tenant a run was submitted by ("" for none); nullopt for a run the
  // index has not seen (yet).
  std::optional<std::string> tenant_of(const std::string& run_id) const;
  // The stream sequence of the first run-level event of a run the index
  // has seen: none of the run's events is stored before it (its submission
  // comes first). Nullopt for a run it has not seen (yet).
  std::optional<std::uint64_t> first_event(const std::string& run_id) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// The cursor as the API shows it (base64url of {"u":updated_at,"r":run_id},
// as pyoco-server's); nullopt for one that does not decode.
std::string encode_cursor(double updated_at, const std::string& run_id);
std::optional<std::pair<double, std::string>> decode_cursor(const std::string& cursor);

}  // namespace pyoco::server
