// SigmaQuant errors.
//
// Every failure caused by user input throws sq::Error with a message that names the file (or
// object), the field and what was expected, e.g.
//   "train-labels-idx1-ubyte.gz: label 12 at index 7 is out of range (expected 0..9)".
// The command-line program prints what() and exits non-zero.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace sq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Throws sq::Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace sq
