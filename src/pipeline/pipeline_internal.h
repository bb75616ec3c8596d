// Helpers shared by the pipeline's files (not installed).
#pragma once

#include <map>
#include <string>

#include "sigmaquant/pipeline.h"

namespace sq {

inline std::string path_in(const std::string& dir, const std::string& file) {
  return dir + "/" + file;
}

// Per weight layer: its weight bits.
std::map<std::string, int> bits_map(const BitConfig& b, const Graph& g);
// The assignment recorded in a log (every weight layer must be there), with the activation
// widths and granularity of `base` (the search's start); errors name `where`.
BitConfig bits_from_map(const std::map<std::string, int>& m, const Graph& g,
                        const BitConfig& base, const std::string& where);

RunIteration to_iteration(const Phase2Step& s, const Graph& g);
// A recorded step back as a Phase 2 step (costs re-evaluated, accuracy as recorded).
Phase2Step step_from_iteration(const RunIteration& it, const Graph& g, const BitConfig& base,
                               const CostEvaluator& ce, const Budgets& b);

}  // namespace sq
