// Plain-text tables for the command-line program's human-readable output.
//
//   sq::Table t({"layer", "params"}, {sq::Align::Left, sq::Align::Right});
//   t.add({"conv1", "144"});
//   std::cout << t.str();
#pragma once

#include <string>
#include <vector>

namespace sq {

enum class Align { Left, Right };

class Table {
 public:
  explicit Table(std::vector<std::string> header, std::vector<Align> align = {});
  void add(std::vector<std::string> row);
  void add_separator();
  std::string str() const;

 private:
  std::vector<std::string> header_;
  std::vector<Align> align_;
  std::vector<std::vector<std::string>> rows_;  // an empty row is a separator
};

// 1234567 -> "1,234,567"
std::string thousands(long long v);

}  // namespace sq
