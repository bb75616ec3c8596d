// libFuzzer target: run logs (sq::read_run_log: strict JSON, the report's schema check, then the
// typed RunLog). A log that reads must render a report and round-trip through its JSON form.
#include "fuzz_util.h"
#include "sigmaquant/report.h"
#include "sigmaquant/run_log.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static sqfuzz::MemFile file("run_log");
  file.write(data, size);
  sq::RunLog log;
  try {
    log = sq::read_run_log(file.path());
  } catch (const sq::Error&) {
    return 0;
  }
  sqfuzz::must_succeed("run log round trip", [&] {
    const sq::RunLog back = sq::RunLog::from_json(nlohmann::json(log.to_json()), "round trip");
    if (back.to_json() != log.to_json()) throw std::runtime_error("read back differs");
  });
  sqfuzz::must_succeed("report of a valid run log",
                       [&] { sq::render_report_html(nlohmann::json(log.to_json())); });
  return 0;
}
