// libFuzzer target: Pareto tables (sq::read_pareto: strict JSON, the schema check, then the typed
// ParetoResult). A table that reads must give its CSV and fronts and round-trip through JSON.
#include "fuzz_util.h"
#include "sigmaquant/report.h"
#include "sigmaquant/run_log.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static sqfuzz::MemFile file("pareto");
  file.write(data, size);
  sq::ParetoResult p;
  try {
    p = sq::read_pareto(file.path());
  } catch (const sq::Error&) {
    return 0;
  }
  sqfuzz::must_succeed("pareto round trip and fronts", [&] {
    const nlohmann::json j = p.to_json();
    const sq::ParetoResult back = sq::ParetoResult::from_json(j, "round trip");
    if (back.to_json() != p.to_json()) throw std::runtime_error("read back differs");
    sq::pareto_csv(j);
    sq::pareto_svg(j, "weight_bytes");
  });
  return 0;
}
