// The one candidate-width rule of every allocator: which of the requested weight widths a target
// can run. Why widths the target rounds up are kept: include/sigmaquant/alloc.h and
// docs/method.md, "One candidate-width rule".
#include <algorithm>

#include "sigmaquant/alloc.h"
#include "sigmaquant/error.h"

namespace sq {

namespace {

std::string widths_text(const std::vector<int>& w) {
  std::string s;
  for (int x : w) s += (s.empty() ? "" : ",") + std::to_string(x);
  return "{" + s + "}";
}

}  // namespace

std::vector<int> candidate_widths(const std::vector<int>& requested, const Target& t) {
  if (requested.empty())
    fail("candidate weight widths: none given (expected e.g. 2,3,4,5,6,8)");
  for (int b : requested)
    if (b < kMinWeightBits || b > kMaxWeightBits)
      fail("candidate weight width {} is out of range (expected {}..{})", b, kMinWeightBits,
           kMaxWeightBits);
  std::vector<int> c = requested;
  std::sort(c.begin(), c.end());
  c.erase(std::unique(c.begin(), c.end()), c.end());

  // The widest weight the target runs: its largest storage width, and for table models the last
  // weight column (a wider weight has no throughput there). Narrower widths are rounded up by the
  // cost model, so they all run.
  int widest = kMaxWeightBits;
  std::string field;
  const std::vector<int>& stored = t.storage.weight_widths;
  if (!stored.empty() && stored.back() < widest) {
    widest = stored.back();
    field = "storage.weight_widths " + widths_text(stored);
  }
  if ((t.kind == CostModelKind::Mpic || t.kind == CostModelKind::Custom) &&
      !t.table.w_bits.empty() && t.table.w_bits.back() < widest) {
    widest = t.table.w_bits.back();
    field = "w_bits " + widths_text(t.table.w_bits);
  }
  std::vector<int> out;
  for (int b : c)
    if (b <= widest) out.push_back(b);
  if (out.empty())
    fail(
        "candidate weight widths {}: target '{}' runs weights of at most {} bits ({}); expected at "
        "least one width of {} or fewer bits",
        widths_text(c), t.name, widest, field, widest);
  return out;
}

}  // namespace sq
