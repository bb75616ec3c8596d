#include "sigmaquant/table.h"

#include <algorithm>

#include "sigmaquant/error.h"

namespace sq {

Table::Table(std::vector<std::string> header, std::vector<Align> align)
    : header_(std::move(header)), align_(std::move(align)) {
  align_.resize(header_.size(), Align::Left);
}

void Table::add(std::vector<std::string> row) {
  if (row.size() != header_.size())
    throw Error("Table::add: row has " + std::to_string(row.size()) + " cells, expected " +
                std::to_string(header_.size()));
  rows_.push_back(std::move(row));
}

void Table::add_separator() { rows_.emplace_back(); }

std::string Table::str() const {
  std::vector<size_t> w(header_.size());
  for (size_t c = 0; c < header_.size(); ++c) w[c] = header_[c].size();
  for (const auto& r : rows_)
    for (size_t c = 0; c < r.size(); ++c) w[c] = std::max(w[c], r[c].size());
  auto line = [&](const std::vector<std::string>& r) {
    std::string s;
    for (size_t c = 0; c < r.size(); ++c) {
      std::string pad(w[c] - r[c].size(), ' ');
      s += (c ? "  " : "") + (align_[c] == Align::Right ? pad + r[c] : r[c] + pad);
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s + "\n";
  };
  std::string sep;
  for (size_t c = 0; c < w.size(); ++c) sep += (c ? "  " : "") + std::string(w[c], '-');
  std::string out = line(header_) + sep + "\n";
  for (const auto& r : rows_) out += r.empty() ? sep + "\n" : line(r);
  return out;
}

std::string thousands(long long v) {
  std::string s = std::to_string(v < 0 ? -v : v), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return (v < 0 ? "-" : "") + out;
}

}  // namespace sq
