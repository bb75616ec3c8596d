// Pieces shared by the subcommands: data and model flags, output helpers.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sigmaquant/data.h"
#include "sigmaquant/graph.h"

namespace sqcli {

struct DataFlags {
  std::string format = "fashion-mnist";
  std::string dir;
  int64_t limit_train = 0;  // use only the first N training samples (0 = all)
  int64_t limit_test = 0;
  int64_t classes = 0;  // --classes: the class count of an idx / npy dataset (0 = inferred)
};
void add_data_flags(CLI::App* app, DataFlags& f);
sq::DataBundle load_data(const DataFlags& f);

struct ModelFlags {
  std::string model;                // a .sqg file or a zoo name
  std::string input_shape = "1,28,28";  // for zoo names without data
  int64_t classes = 10;
  uint64_t seed = 1;
};
void add_model_flags(CLI::App* app, ModelFlags& f, bool with_shape);
// A model file, or a freshly initialised zoo model of the given input shape and classes.
sq::Graph resolve_model(const std::string& spec, const sq::Shape& input_shape, int64_t classes,
                        uint64_t seed);
sq::Shape parse_shape(const std::string& s, const std::string& flag);

struct Common {
  bool json = false;
  int threads = 2;
  bool quiet = false;
};
void add_common_flags(CLI::App* app, Common& c);
// Validator for flags whose value must be > 0: "--lr: must be a positive number (got -1)".
CLI::Validator positive_number();

void print_json(const nlohmann::json& j);

// Writes n x classes logits to PATH as raw float32 (little-endian, row-major), atomically; the
// format `--logits` of eval and run writes (and tools/onnx/run_ort.js's output).
void write_logits(const std::string& path, const std::vector<float>& logits);

// Creates the directory of an output file and checks that the file can be written there, so that
// a bad path fails before the work rather than after it. `flag` names the option in the error.
void prepare_output(const std::string& path, const char* flag);

// Subcommand registration (one file each).
void add_train(CLI::App& app);
void add_eval(CLI::App& app);
void add_info(CLI::App& app);
void add_ptq(CLI::App& app);
void add_qat(CLI::App& app);
void add_cost(CLI::App& app);
void add_allocate(CLI::App& app);
void add_quantize(CLI::App& app);
void add_pareto(CLI::App& app);
void add_import(CLI::App& app);
void add_report(CLI::App& app);
void add_export(CLI::App& app);
void add_run(CLI::App& app);
void add_bench(CLI::App& app);

}  // namespace sqcli
