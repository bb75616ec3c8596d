// libFuzzer target: hardware target JSON files (sq::load_target). A target that loads must write
// back to JSON that loads again, and cost a small graph at a few bit assignments (per-channel bits
// and pruned channels included) without a crash or undefined behaviour; budget checks may refuse
// (sq::Error) a budget the model cannot measure.
#include "fuzz_util.h"
#include "sigmaquant/bits.h"
#include "sigmaquant/cost.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static sqfuzz::MemFile file("target");
  static const sq::Graph g = sqfuzz::tiny_convnet();
  static const std::vector<sq::BitConfig> assignments = [] {
    std::vector<sq::BitConfig> v = {sq::BitConfig::uniform(g, 8, 8),
                                    sq::BitConfig::uniform(g, 2, 4),
                                    sq::BitConfig::uniform(g, 1, 16)};
    sq::BitConfig mixed = sq::BitConfig::uniform(g, 4, 8);
    mixed.layers["conv"].channel_wbits = {3, 0};
    mixed.layers["conv"].wbits = 3;
    v.push_back(mixed);
    return v;
  }();
  file.write(data, size);
  sq::Target t;
  try {
    t = sq::load_target(file.path());
  } catch (const sq::Error&) {
    return 0;
  }
  sqfuzz::must_succeed("target round trip", [&] {
    sq::target_from_json(nlohmann::json::parse(sq::target_to_json(t).dump()), "round trip");
  });
  sqfuzz::expect_ok_or_error([&] {
    const sq::CostEvaluator ev(g, t);
    for (const auto& b : assignments)
      sqfuzz::expect_ok_or_error([&] {
        const sq::CostReport r = ev.evaluate(b);
        sq::cost_to_json(r).dump();
        sq::budgets_to_json(sq::check_budgets(r, t.budgets)).dump();
      });
  });
  return 0;
}
