// Plain-text tables for human output: columns padded to their widest cell.
#pragma once

#include <pyoco/core/text.hpp>

#include <ctime>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace pyoco::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
  // Cells hold what flows and plugins said: control characters are escaped
  // (core::printable), so a newline in a name cannot break the table.
  void add(std::vector<std::string> row) {
    for (std::string& cell : row) cell = core::printable(cell);
    rows_.push_back(std::move(row));
  }
  std::size_t size() const { return rows_.size() - 1; }

  void print(std::ostream& out) const {
    std::vector<std::size_t> width;
    for (const auto& row : rows_) {
      for (std::size_t i = 0; i < row.size(); ++i) {
        if (width.size() <= i) width.push_back(0);
        width[i] = std::max(width[i], display_width(row[i]));
      }
    }
    for (const auto& row : rows_) {
      std::string line;
      for (std::size_t i = 0; i < row.size(); ++i) {
        line += row[i];
        if (i + 1 < row.size()) line += std::string(width[i] - display_width(row[i]) + 2, ' ');
      }
      out << line << '\n';
    }
  }

 private:
  // Code points, not bytes: close enough for names and paths.
  static std::size_t display_width(const std::string& s) {
    std::size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80 ? 1 : 0;
    return n;
  }

  std::vector<std::vector<std::string>> rows_;
};

// Epoch seconds as UTC ISO 8601 ("2026-11-30T09:30:52Z"); `none` when absent.
inline std::string utc_time_text(std::optional<double> at, const char* none = "never") {
  if (!at) return none;
  const std::time_t t = static_cast<std::time_t>(*at);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char out[32];
  std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return out;
}

}  // namespace pyoco::cli
