// Secret params never reach a trace, the history or `runs show` in clear:
// a run started with secrets has its events pass through a Redactor, which
// replaces every occurrence of a secret value — in log lines, errors,
// output summaries, whole outputs, artifact records and the recorded
// params — with "***". A text cut before it gets here (a plugin's last 400
// bytes of stderr) may hold only part of a secret: that part is masked too.
// Tasks still receive the real values; what they write to files or send
// elsewhere is theirs to guard.
#pragma once

#include <pyoco/core/value.hpp>
#include <pyoco/trace/event.hpp>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace pyoco::trace {

class Redactor {
 public:
  // Shorter values would hide ordinary text ("1", "on", "yes").
  static constexpr std::size_t kMinSecretBytes = 4;
  // Any run of this many bytes of a secret is masked wherever it appears:
  // what a cut inside the secret left of it.
  static constexpr std::size_t kMinFragmentBytes = 8;
  // Where a text was cut — its start and end, either side of a "..." — a
  // secret's end or beginning of kMinSecretBytes or more is masked too.
  static constexpr std::string_view kCutMark = "...";
  static constexpr std::string_view kMask = "***";

  // Throws std::invalid_argument for a value shorter than kMinSecretBytes.
  explicit Redactor(std::vector<std::string> secrets);

  bool empty() const { return secrets_.empty(); }
  // `text` with every secret, and every part of one a cut left (see
  // kMinFragmentBytes, kCutMark), replaced by kMask.
  std::string apply(std::string_view text) const;
  // The same inside every string of a JSON document (keys included);
  // numbers and structure are left as they are, so the result is JSON.
  std::string apply_json(std::string_view json) const;
  core::Value apply(const core::Value& value) const;

 private:
  void apply_in_place(std::string& text) const;
  // The parts of `text` that are a fragment of a secret, as [begin, end) in
  // order; they may overlap.
  void find_fragments(std::string_view text,
                      std::vector<std::pair<std::size_t, std::size_t>>& found) const;
  bool is_window(std::uint64_t window) const;

  std::vector<std::string> secrets_;  // longest first: a secret inside another is masked whole
  // Every kMinFragmentBytes-byte run of every secret (as 8 bytes), and a
  // bitmap of their hashes that most text windows fail at once.
  std::unordered_set<std::uint64_t> windows_;
  std::vector<std::uint64_t> window_filter_;
};

// A listener that hands every listener of `inner` each event with its
// secrets masked: message, params, artifact names and paths, the whole
// output, and the output summary made again from the masked output.
std::shared_ptr<EventListener> redacting(std::shared_ptr<const Redactor> redactor,
                                         std::vector<std::shared_ptr<EventListener>> inner);

}  // namespace pyoco::trace
