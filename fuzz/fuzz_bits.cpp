// libFuzzer target: bit-configuration JSON files (sq::load_bits), then validated against a small
// graph (sq::validate_bits) and, when valid, averaged, costed and written back: the JSON form must
// read back to the same configuration.
#include "fuzz_util.h"
#include "sigmaquant/bits.h"
#include "sigmaquant/cost.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static sqfuzz::MemFile file("bits");
  static const sq::Graph g = sqfuzz::tiny_convnet();
  static const sq::Target bops = sq::builtin_target("bops");
  file.write(data, size);
  sq::BitConfig b;
  try {
    b = sq::load_bits(file.path());
    sq::validate_bits(b, g, file.path());
  } catch (const sq::Error&) {
    return 0;
  }
  sqfuzz::must_succeed("average/cost of a valid bit configuration", [&] {
    sq::average_weight_bits(b, g);
    sq::compute_cost(g, bops, b);
  });
  sqfuzz::must_succeed("bit configuration round trip", [&] {
    const auto back =
        sq::bits_from_json(nlohmann::json::parse(sq::bits_to_json(b, &g).dump()), "round trip");
    if (!(back == b)) throw std::runtime_error("read back differs");
  });
  return 0;
}
