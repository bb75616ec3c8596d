// sigmaquant — hardware-aware mixed-precision quantization. Git-style subcommands; each lives in
// its own cmd_*.cpp and calls the library.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "common.h"
#include "dist_flags.h"
#include "sigmaquant/error.h"

int main(int argc, char** argv) {
  CLI::App app{"SigmaQuant: hardware-aware mixed-precision quantization of neural networks"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "sigmaquant 0.1.0");
  sqcli::add_train(app);
  sqcli::add_eval(app);
  sqcli::add_info(app);
  sqcli::add_ptq(app);
  sqcli::add_qat(app);
  sqcli::add_cost(app);
  sqcli::add_allocate(app);
  sqcli::add_quantize(app);
  sqcli::add_pareto(app);
  sqcli::add_import(app);
  sqcli::add_report(app);
  sqcli::add_export(app);
  sqcli::add_run(app);
  sqcli::add_bench(app);
  sqcli::set_program_args(argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // For a misspelt subcommand CLI11 says only "A subcommand is required": name the word.
    if (app.get_subcommands().empty() && argc > 1 && argv[1][0] != '-') {
      std::string known;
      for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
        known += (known.empty() ? "" : ", ") + sub->get_name();
      std::fprintf(stderr, "error: unknown subcommand '%s' (expected one of: %s)\n", argv[1],
                   known.c_str());
      return static_cast<int>(CLI::ExitCodes::RequiredError);
    }
    return app.exit(e);
  } catch (const sqcli::ExitStatus& e) {
    return e.code;
  } catch (const sq::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
