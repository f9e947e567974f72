// Secret params never reach a trace, the history or `runs show` in clear:
// a run started with secrets has its events pass through a Redactor, which
// replaces every occurrence of a secret value — in log lines, errors,
// output summaries, whole outputs and the recorded params — with "***".
// Tasks still receive the real values; what they write to files or send
// elsewhere is theirs to guard.
#pragma once

#include <pyoco/core/value.hpp>
#include <pyoco/trace/event.hpp>

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pyoco::trace {

class Redactor {
 public:
  // Shorter values would hide ordinary text ("1", "on", "yes").
  static constexpr std::size_t kMinSecretBytes = 4;
  static constexpr std::string_view kMask = "***";

  // Throws std::invalid_argument for a value shorter than kMinSecretBytes.
  explicit Redactor(std::vector<std::string> secrets);

  bool empty() const { return secrets_.empty(); }
  // `text` with every secret replaced by kMask.
  std::string apply(std::string_view text) const;
  // The same inside every string of a JSON document (keys included);
  // numbers and structure are left as they are, so the result is JSON.
  std::string apply_json(std::string_view json) const;
  core::Value apply(const core::Value& value) const;

 private:
  void apply_in_place(std::string& text) const;
  std::vector<std::string> secrets_;  // longest first: a secret inside another is masked whole
};

// A listener that hands every listener of `inner` each event with its
// secrets masked. Events that mention no secret pass as they are.
std::shared_ptr<EventListener> redacting(std::shared_ptr<const Redactor> redactor,
                                         std::vector<std::shared_ptr<EventListener>> inner);

}  // namespace pyoco::trace
