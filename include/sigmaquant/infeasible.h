// A budget the method cannot meet.
//
// An allocator that proves no assignment of its widths fits every budget throws sq::Infeasible
// (an sq::Error, so everywhere else it is reported and ends the command like any other). It is an
// answer about the request, not a failure of the run: `pareto` (sq::pareto_sweep) records it as
// that method's result at that budget and goes on with the others.
#pragma once

#include "sigmaquant/error.h"

namespace sq {

class Infeasible : public Error {
 public:
  using Error::Error;
};

// Throws sq::Infeasible with a fmt-formatted message (name the budget and what it would need).
template <typename... Args>
[[noreturn]] void fail_infeasible(fmt::format_string<Args...> f, Args&&... args) {
  throw Infeasible(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace sq
