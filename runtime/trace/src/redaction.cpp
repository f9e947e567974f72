#include <pyoco/trace/redaction.hpp>

#include <pyoco/core/output_summary.hpp>
#include <pyoco/core/value.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <cstring>
#include <unordered_set>

namespace pyoco::trace {

namespace json = boost::json;

namespace {

static_assert(Redactor::kMinFragmentBytes == sizeof(std::uint64_t),
              "a fragment window is read as one 64-bit word");

constexpr std::size_t kFilterBits = 1u << 16;

std::uint64_t window_at(const char* p) {
  std::uint64_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
}

std::size_t filter_bit(std::uint64_t window) {
  return static_cast<std::size_t>((window * 0x9E3779B97F4A7C15ull) >> 48);
}

}  // namespace

Redactor::Redactor(std::vector<std::string> secrets) : secrets_(std::move(secrets)) {
  for (const std::string& s : secrets_) {
    if (s.size() < kMinSecretBytes) {
      throw std::invalid_argument("a secret must be at least " + std::to_string(kMinSecretBytes) +
                                  " bytes long: a shorter one would mask ordinary text");
    }
  }
  std::sort(secrets_.begin(), secrets_.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  secrets_.erase(std::unique(secrets_.begin(), secrets_.end()), secrets_.end());
  window_filter_.assign(kFilterBits / 64, 0);
  for (const std::string& s : secrets_) {
    for (std::size_t i = 0; i + kMinFragmentBytes <= s.size(); ++i) {
      const std::uint64_t w = window_at(s.data() + i);
      windows_.insert(w);
      window_filter_[filter_bit(w) / 64] |= std::uint64_t{1} << (filter_bit(w) % 64);
    }
  }
}

bool Redactor::is_window(std::uint64_t w) const {
  const std::size_t bit = filter_bit(w);
  return (window_filter_[bit / 64] >> (bit % 64) & 1) != 0 && windows_.count(w) != 0;
}

void Redactor::find_fragments(std::string_view text,
                              std::vector<std::pair<std::size_t, std::size_t>>& found) const {
  // Anywhere: every run of kMinFragmentBytes or more bytes of a secret.
  if (!windows_.empty()) {
    for (std::size_t i = 0; i + kMinFragmentBytes <= text.size(); ++i) {
      if (is_window(window_at(text.data() + i))) found.emplace_back(i, i + kMinFragmentBytes);
    }
  }
  // At a cut: a shorter end or beginning of a secret (the longer ones are
  // runs of windows, found above).
  auto secret_end_from = [&](std::size_t at) {
    for (const std::string& s : secrets_) {
      for (std::size_t n = std::min(s.size(), kMinFragmentBytes) - 1; n >= kMinSecretBytes; --n) {
        if (text.substr(at).starts_with(std::string_view(s).substr(s.size() - n))) {
          found.emplace_back(at, at + n);
          break;
        }
      }
    }
  };
  auto secret_start_before = [&](std::size_t at) {
    for (const std::string& s : secrets_) {
      for (std::size_t n = std::min(s.size(), kMinFragmentBytes) - 1; n >= kMinSecretBytes; --n) {
        if (text.substr(0, at).ends_with(std::string_view(s).substr(0, n))) {
          found.emplace_back(at - n, at);
          break;
        }
      }
    }
  };
  secret_end_from(0);
  secret_start_before(text.size());
  for (std::size_t at = text.find(kCutMark); at != std::string_view::npos;
       at = text.find(kCutMark, at + kCutMark.size())) {
    secret_start_before(at);
    secret_end_from(at + kCutMark.size());
  }
  std::sort(found.begin(), found.end());
}

void Redactor::apply_in_place(std::string& text) const {
  for (const std::string& s : secrets_) {
    for (std::size_t at = text.find(s); at != std::string::npos; at = text.find(s, at)) {
      text.replace(at, s.size(), kMask);
      at += kMask.size();
    }
  }
  if (secrets_.empty() || text.size() < kMinSecretBytes) return;
  std::vector<std::pair<std::size_t, std::size_t>> found;
  find_fragments(text, found);
  if (found.empty()) return;
  // Overlapping or touching fragments become one mask.
  std::string out;
  out.reserve(text.size());
  std::size_t copied = 0;
  for (std::size_t i = 0; i < found.size();) {
    const std::size_t begin = found[i].first;
    std::size_t end = found[i].second;
    for (++i; i < found.size() && found[i].first <= end; ++i) end = std::max(end, found[i].second);
    out.append(text, copied, begin - copied);
    out += kMask;
    copied = end;
  }
  out.append(text, copied);
  text = std::move(out);
}

std::string Redactor::apply(std::string_view text) const {
  std::string out(text);
  apply_in_place(out);
  return out;
}

namespace {

void walk(const Redactor& r, json::value& v) {
  if (v.is_string()) {
    v = r.apply(v.get_string());
  } else if (v.is_array()) {
    for (json::value& item : v.get_array()) walk(r, item);
  } else if (v.is_object()) {
    json::object out;
    for (auto& [key, item] : v.get_object()) {
      walk(r, item);
      // Two keys may mask alike ("***"): the second is kept as "***#2",
      // not written over the first.
      std::string masked = r.apply(key);
      if (out.contains(masked)) {
        std::size_t n = 2;
        while (out.contains(masked + "#" + std::to_string(n))) ++n;
        masked += "#" + std::to_string(n);
      }
      out[masked] = std::move(item);
    }
    v = std::move(out);
  }
}

}  // namespace

std::string Redactor::apply_json(std::string_view text) const {
  if (secrets_.empty()) return std::string(text);
  boost::system::error_code ec;
  json::value v = core::parse_json(text, ec);
  if (ec) return apply(text);  // not JSON: masked as text
  walk(*this, v);
  return core::to_json_text(core::from_json(v));
}

namespace {

// The value with every secret masked in its strings' own bytes (and keys,
// and bytes): masked through its JSON text, a string's invalid UTF-8 was
// made valid first, and a secret holding such a byte matched no more.
const core::ValueNode* masked(const Redactor& r, core::Arena& a, const core::ValueNode* n) {
  using core::ValueKind;
  if (n == nullptr) return a.make_null();
  switch (n->kind) {
    case ValueKind::String:
      return a.make_string(r.apply(std::string_view(n->str.data, n->str.size)));
    case ValueKind::Bytes: {
      const std::string m = r.apply(std::string_view(n->str.data, n->str.size));
      return a.make_bytes(m.data(), m.size());
    }
    case ValueKind::Array: {
      core::ValueNode* out = a.make_array(n->arr.size);
      for (std::size_t i = 0; i < n->arr.size; ++i) {
        core::Arena::push(out, masked(r, a, n->arr.items[i]));
      }
      return out;
    }
    case ValueKind::Object: {
      core::ValueNode* out = a.make_object(n->obj.size);
      std::unordered_set<std::string> keys;
      for (std::size_t i = 0; i < n->obj.size; ++i) {
        // Two keys may mask alike ("***"): the second is kept as "***#2".
        std::string key = r.apply(n->obj.members[i].key);
        if (keys.count(key) != 0) {
          std::size_t k = 2;
          while (keys.count(key + "#" + std::to_string(k)) != 0) ++k;
          key += "#" + std::to_string(k);
        }
        keys.insert(key);
        core::Arena::add(out, key, masked(r, a, n->obj.members[i].value));
      }
      return out;
    }
    default:
      return n;  // null, bool, number: nothing to mask
  }
}

}  // namespace

core::Value Redactor::apply(const core::Value& value) const {
  if (secrets_.empty() || value.is_null()) return value;
  core::ValueBuilder b;
  const core::ValueNode* n = masked(*this, b.arena(), value.node());
  b.arena().seal();
  return b.wrap(n);
}

namespace {

class RedactingListener final : public EventListener {
 public:
  RedactingListener(std::shared_ptr<const Redactor> r,
                    std::vector<std::shared_ptr<EventListener>> inner)
      : redactor_(std::move(r)), inner_(std::move(inner)) {}

  void on_event(const RunEvent& event) override { on_events(std::span(&event, 1)); }

  void on_events(std::span<const RunEvent> events) override {
    owned_.clear();
    views_.clear();
    planned_.resize(events.size());
    for (const RunEvent& e : events) {
      Event o = Event::from(e);
      o.message = redactor_->apply(o.message);
      if (e.params_value != nullptr) {
        // Masked in the value, then written as JSON: the text's valid UTF-8
        // no longer holds a secret's invalid bytes to match.
        o.params_value = redactor_->apply(o.params_value);
        o.params = core::to_json_text(o.params_value);
      } else if (!o.params.empty()) {
        o.params = redactor_->apply_json(o.params);
      }
      o.value = redactor_->apply(o.value);
      // A summary is a cut: made again from the masked output, it holds no
      // part of a secret the cut would have split.
      o.output = e.value != nullptr ? core::output_summary(o.value) : redactor_->apply(o.output);
      for (core::ArtifactRecord& a : o.artifacts) {
        a.name = redactor_->apply(a.name);
        a.path = redactor_->apply(a.path);
        a.media_type = redactor_->apply(a.media_type);
      }
      owned_.push_back(std::move(o));
    }
    for (std::size_t i = 0; i < owned_.size(); ++i) views_.push_back(owned_[i].view(planned_[i]));
    for (const auto& listener : inner_) notify(*listener, views_);
  }

 private:
  std::shared_ptr<const Redactor> redactor_;
  std::vector<std::shared_ptr<EventListener>> inner_;
  // Reused batch to batch; events come one batch at a time (the queue's thread).
  std::vector<Event> owned_;
  std::vector<RunEvent> views_;
  std::vector<std::vector<PlannedNode>> planned_;
};

}  // namespace

std::shared_ptr<EventListener> redacting(std::shared_ptr<const Redactor> redactor,
                                         std::vector<std::shared_ptr<EventListener>> inner) {
  return std::make_shared<RedactingListener>(std::move(redactor), std::move(inner));
}

}  // namespace pyoco::trace
