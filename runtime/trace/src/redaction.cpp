#include <pyoco/trace/redaction.hpp>

#include <boost/json.hpp>

#include <algorithm>

namespace pyoco::trace {

namespace json = boost::json;

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
}

void Redactor::apply_in_place(std::string& text) const {
  for (const std::string& s : secrets_) {
    for (std::size_t at = text.find(s); at != std::string::npos; at = text.find(s, at)) {
      text.replace(at, s.size(), kMask);
      at += kMask.size();
    }
  }
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
      out[r.apply(key)] = std::move(item);
    }
    v = std::move(out);
  }
}

}  // namespace

std::string Redactor::apply_json(std::string_view text) const {
  if (secrets_.empty()) return std::string(text);
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) return apply(text);  // not JSON: masked as text
  walk(*this, v);
  return core::to_json_text(core::from_json(v));
}

core::Value Redactor::apply(const core::Value& value) const {
  if (secrets_.empty() || value.is_null()) return value;
  json::value v = json::parse(core::to_json_text(value));
  walk(*this, v);
  return core::from_json(v);
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
      o.output = redactor_->apply(o.output);
      if (!o.params.empty()) o.params = redactor_->apply_json(o.params);
      o.value = redactor_->apply(o.value);
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
