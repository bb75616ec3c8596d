// sigmaquant allocate — SigmaQuant Phase 1: a per-layer bit assignment from the layers' weight σ
// (adaptive k-means) fitted to every budget of a hardware target by its cost model. No data, no
// training; the result is a bit-assignment file for `ptq` / `qat --bits`.
#include <fmt/format.h>

#include <sstream>

#include "common.h"
#include "search_flags.h"
#include "sigmaquant/alloc.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"

namespace sqcli {
namespace {

struct AllocateFlags {
  ModelFlags model;
  std::string target = "shiftadd";
  std::string bits_set = "2,3,4,5,6,8";
  int abits = 8;
  int first_last = 0;
  std::vector<std::string> pins;
  std::string out;
  bool json = false;
};

void run_allocate(const AllocateFlags& f) {
  sq::Graph g = resolve_model(f.model.model, parse_shape(f.model.input_shape, "--input-shape"),
                              f.model.classes, f.model.seed);
  sq::Target t = sq::resolve_target(f.target);
  sq::Phase1Options o;
  o.candidate_bits = parse_bits_set(f.bits_set);
  o.abits = f.abits;
  if (f.first_last) {
    auto w = g.weight_layers();
    o.pinned[g.nodes[w.front()].name] = f.first_last;
    o.pinned[g.nodes[w.back()].name] = f.first_last;
  }
  for (const std::string& p : f.pins) {
    auto eq = p.find('=');
    int b = 0;
    try {
      b = eq == std::string::npos ? 0 : std::stoi(p.substr(eq + 1));
    } catch (const std::exception&) {
    }
    if (eq == std::string::npos || b < 1 || b > 8)
      sq::fail("--pin '{}': expected LAYER=BITS with BITS in 1..8", p);
    g.index_of(p.substr(0, eq));  // names an existing layer, or throws
    o.pinned[p.substr(0, eq)] = b;
  }
  sq::Phase1Result r = sq::sigmaquant_phase1(g, t, o);
  std::string tname = t.name;
  for (char& c : tname)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') c = '_';
  std::string out = f.out.empty() ? "runs/" + g.name + "-" + tname + ".bits.json" : f.out;
  prepare_output(out, "--out");
  sq::save_bits(out, r.bits, &g);
  if (f.json) {
    auto j = sq::phase1_to_json(r);
    j["out"] = out;
    j["avg_weight_bits"] = sq::average_weight_bits(r.bits, g);
    print_json(j);
    return;
  }
  fmt::print("{}", sq::phase1_table(r));
  fmt::print("\n{} clusters, average {:.2f} weight bits; bit assignment saved to {}\n", r.k,
             sq::average_weight_bits(r.bits, g), out);
  fmt::print("next: sigmaquant qat -m {} --bits {}\n", f.model.model, out);
}

}  // namespace

void add_allocate(CLI::App& app) {
  auto f = std::make_shared<AllocateFlags>();
  CLI::App* cmd = app.add_subcommand(
      "allocate", "SigmaQuant Phase 1: per-layer bits from weight σ, fitted to a target's budgets");
  add_model_flags(cmd, f->model, true);
  cmd->add_option("--target,-t", f->target,
                  "target file (targets/*.json) or builtin: size, bops, shiftadd, shiftadd-csd, "
                  "mpic, mcu")
      ->capture_default_str();
  cmd->add_option("--bits-set", f->bits_set, "candidate weight bitwidths (the paper's: 2,4,8)")
      ->capture_default_str();
  cmd->add_option("--abits", f->abits, "activation bits of every layer")->capture_default_str();
  cmd->add_option("--first-last-bits", f->first_last, "pin the first and last weight layers");
  cmd->add_option("--pin", f->pins, "pin a layer: LAYER=BITS (repeatable)");
  cmd->add_option("--out,-o", f->out, "bit-assignment file (default runs/<model>-<target>.bits.json)");
  cmd->add_flag("--json", f->json, "print machine-readable JSON on stdout");
  cmd->callback([f] { run_allocate(*f); });
}

}  // namespace sqcli
