// A progress bar with rate and ETA on stderr. On a terminal it redraws one line; otherwise (CI,
// logs) it prints a plain line at most every few seconds and at the end.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace sq {

class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit = "img", bool enabled = true);
  // Sets the amount done; `info` is shown after the bar (e.g. "loss 0.41 acc 86.2%").
  void update(int64_t done, const std::string& info = "");
  void finish(const std::string& info = "");
  double elapsed_seconds() const;

 private:
  void draw(bool final);
  std::string label_, unit_, info_;
  int64_t total_, done_ = 0;
  bool enabled_, tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

std::string format_duration(double seconds);  // "1h02m", "3m07s", "12.4s"

}  // namespace sq
