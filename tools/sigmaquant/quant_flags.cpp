#include "quant_flags.h"

#include "sigmaquant/error.h"
#include "sigmaquant/qmodel.h"

namespace sqcli {

void add_bits_flags(CLI::App* app, BitsFlags& f) {
  app->add_option("--bits", f.file, "bit assignment file (JSON, see docs/cost-models.md)");
  app->add_option("--wbits", f.wbits, "uniform weight bits (instead of --bits)");
  app->add_option("--abits", f.abits, "uniform activation bits (with --wbits)")->capture_default_str();
  app->add_option("--first-last-bits", f.first_last,
                  "pin the first and last weight layers to this many bits (0: no pinning)");
  app->add_flag("--per-tensor", f.per_tensor, "one weight scale per layer (default: per channel)");
}

sq::BitConfig resolve_bits(const BitsFlags& f, const sq::Graph& g) {
  if (f.file.empty() == (f.wbits == 0))
    sq::fail("give either --bits FILE or --wbits N (with --abits N), not {}",
             f.file.empty() ? "neither" : "both");
  sq::BitConfig b;
  std::string where = f.file.empty() ? "--wbits/--abits" : f.file;
  if (!f.file.empty()) {
    b = sq::load_bits(f.file);
  } else {
    if (f.wbits < sq::kMinWeightBits || f.wbits > sq::kMaxWeightBits)
      sq::fail("--wbits {} is out of range (expected {}..{})", f.wbits, sq::kMinWeightBits,
               sq::kMaxWeightBits);
    if (f.abits < sq::kMinActBits || f.abits > sq::kMaxActBits)
      sq::fail("--abits {} is out of range (expected {}..{})", f.abits, sq::kMinActBits,
               sq::kMaxActBits);
    b = sq::BitConfig::uniform(g, f.wbits, f.abits);
  }
  if (f.per_tensor)
    for (int i : g.weight_layers()) {
      sq::LayerBits lb = b.for_layer(g.nodes[i].name);
      lb.granularity = sq::Granularity::PerTensor;
      b.layers[g.nodes[i].name] = lb;
    }
  if (f.first_last) sq::pin_first_last(b, g, f.first_last);
  sq::validate_bits(b, g, where);
  return b;
}

void add_ptq_flags(CLI::App* app, PtqFlags& f) {
  app->add_option("--calib", f.calib, "activation calibration: minmax, percentile, mse or kl")
      ->capture_default_str();
  app->add_option("--percentile", f.opts.percentile, "percentile for --calib percentile")
      ->capture_default_str();
  app->add_option("--calib-samples", f.opts.calib_samples, "calibration images (from train)")
      ->capture_default_str();
  app->add_flag("--no-fold-bn", f.no_fold_bn, "keep batchnorm layers unfolded");
  app->add_flag("--cle", f.opts.cle, "cross-layer equalization before quantizing");
  app->add_flag("--bias-correction", f.opts.bias_correction, "correct the weight-rounding bias");
}

sq::PtqOptions ptq_options(const PtqFlags& f, uint64_t seed) {
  sq::PtqOptions o = f.opts;
  o.calib = sq::calib_from_name(f.calib);
  o.fold_bn = !f.no_fold_bn;
  o.seed = seed;
  if (o.calib_samples < 1) sq::fail("--calib-samples must be at least 1");
  if (!(o.percentile > 50 && o.percentile <= 100))
    sq::fail("--percentile {} is out of range (expected 50 < p <= 100)", o.percentile);
  return o;
}

}  // namespace sqcli
