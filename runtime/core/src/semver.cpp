#include <pyoco/core/semver.hpp>

#include <algorithm>

namespace pyoco::core {

namespace {

// Splits `s` at each `sep`, and says whether every part passes `ok`.
template <typename Ok>
bool all_parts(std::string_view s, char sep, Ok ok) {
  for (;;) {
    const std::size_t at = s.find(sep);
    if (!ok(s.substr(0, at))) return false;
    if (at == std::string_view::npos) return true;
    s.remove_prefix(at + 1);
  }
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool is_identifier_char(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

// 0 or a number without leading zeros.
bool is_numeric_identifier(std::string_view id) {
  return !id.empty() && std::all_of(id.begin(), id.end(), is_digit) &&
         (id.size() == 1 || id[0] != '0');
}

bool is_alphanumeric_identifier(std::string_view id) {
  return !id.empty() && std::all_of(id.begin(), id.end(), is_identifier_char);
}

}  // namespace

// Checked by hand, in one pass: std::regex recurses once per character and
// overflowed the stack on a long version (a 200 KB one crashed `plugins
// lint`; fuzz/regressions/manifest/).
bool is_semver(std::string_view version) {
  std::string_view v = version;
  if (const std::size_t plus = v.find('+'); plus != std::string_view::npos) {
    if (!all_parts(v.substr(plus + 1), '.', is_alphanumeric_identifier)) return false;
    v = v.substr(0, plus);
  }
  if (const std::size_t dash = v.find('-'); dash != std::string_view::npos) {
    // A pre-release identifier of digits only is a number: no leading zeros.
    const auto pre_release = [](std::string_view id) {
      return is_alphanumeric_identifier(id) &&
             (!std::all_of(id.begin(), id.end(), is_digit) || is_numeric_identifier(id));
    };
    if (!all_parts(v.substr(dash + 1), '.', pre_release)) return false;
    v = v.substr(0, dash);
  }
  return std::count(v.begin(), v.end(), '.') == 2 && all_parts(v, '.', is_numeric_identifier);
}

std::string_view number_past_64_bits(std::string_view version) {
  constexpr std::string_view kMax = "18446744073709551615";  // 2^64 - 1
  const auto past = [&](std::string_view id) {
    if (id.empty() || !std::all_of(id.begin(), id.end(), is_digit)) return false;
    const std::string_view digits = id.substr(std::min(id.find_first_not_of('0'), id.size()));
    return digits.size() > kMax.size() || (digits.size() == kMax.size() && digits > kMax);
  };
  // MAJOR.MINOR.PATCH, then the pre-release's dot-separated identifiers
  // (one may hold '-'); build metadata is no number.
  std::string_view v = version.substr(0, version.find('+'));
  const std::size_t dash = v.find('-');
  for (std::string_view part :
       {v.substr(0, dash),
        dash == std::string_view::npos ? std::string_view() : v.substr(dash + 1)}) {
    while (!part.empty()) {
      const std::string_view id = part.substr(0, part.find('.'));
      if (past(id)) return id;
      part.remove_prefix(std::min(id.size() + 1, part.size()));
    }
  }
  return {};
}

int compare_versions(std::string_view a, std::string_view b) {
  auto split = [](std::string_view v) {
    v = v.substr(0, v.find('+'));  // build metadata has no order
    const auto dash = v.find('-');
    return std::pair{v.substr(0, dash),
                     dash == std::string_view::npos ? std::string_view() : v.substr(dash + 1)};
  };
  auto numeric = [](std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  // Dot-separated identifiers: numbers by value, others as text, numbers first.
  auto compare_ids = [&](std::string_view x, std::string_view y) {
    while (!x.empty() || !y.empty()) {
      if (x.empty()) return -1;
      if (y.empty()) return 1;
      const std::string_view xi = x.substr(0, x.find('.')), yi = y.substr(0, y.find('.'));
      x = x.size() > xi.size() ? x.substr(xi.size() + 1) : std::string_view();
      y = y.size() > yi.size() ? y.substr(yi.size() + 1) : std::string_view();
      const bool xn = numeric(xi), yn = numeric(yi);
      if (xn && yn) {
        if (xi.size() != yi.size()) return xi.size() < yi.size() ? -1 : 1;
        if (const int c = xi.compare(yi); c != 0) return c < 0 ? -1 : 1;
      } else if (xn != yn) {
        return xn ? -1 : 1;
      } else if (const int c = xi.compare(yi); c != 0) {
        return c < 0 ? -1 : 1;
      }
    }
    return 0;
  };
  const auto [ca, pa] = split(a);
  const auto [cb, pb] = split(b);
  if (const int c = compare_ids(ca, cb); c != 0) return c;
  if (pa.empty() || pb.empty()) return pa.empty() == pb.empty() ? 0 : (pa.empty() ? 1 : -1);
  return compare_ids(pa, pb);
}

}  // namespace pyoco::core
