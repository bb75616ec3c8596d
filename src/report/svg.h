// A small SVG plotting helper for the HTML report: one x/y plot with nice ticks, an optional log
// y axis, categorical x axes (layer names), scatter / line / grouped-bar series, reference lines
// and a legend. Output is a self-contained <svg> element (system fonts, no scripts, no links).
// Every piece of text that goes in is escaped here.
//
//   sq::svg::Plot p;
//   p.title = "σ per layer";
//   p.y.log = true;
//   p.x.categories = {"conv1", "conv2"};
//   sq::svg::Series s = sq::svg::series("cluster 0", sq::svg::color(0));
//   s.x = {0, 1}; s.y = {0.12, 0.03};
//   p.series.push_back(s);
//   std::string svg = sq::svg::render(p);
//
// Internal to the library (used by src/report).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sq::svg {

// &, <, >, " and ' as entities (safe in text and in attribute values).
std::string escape(const std::string& s);

// The i-th colour of a colour-blind-friendly palette (Tableau 10), cycling.
std::string color(size_t i);

// "Nice" tick positions (1, 2, 2.5, 5 × 10^k steps) covering [lo, hi], about `target` of them.
std::vector<double> nice_ticks(double lo, double hi, int target = 6);
// Tick positions for a log axis over [lo, hi] (lo > 0): decades, plus 2 and 5 when the range is
// short.
std::vector<double> log_ticks(double lo, double hi);
// A tick label: as few decimals as the tick step needs ("0.25", "1e-05", "12000").
std::string tick_label(double v, double step);

struct Axis {
  std::string label;
  bool log = false;              // log10 scale (values <= 0 are not drawn)
  bool integer = false;          // integer ticks only
  bool include_zero = false;     // the range starts at 0 (bar charts)
  std::optional<double> lo, hi;  // fixed range (else from the data)
  // Categorical axis: x values are indices 0..n-1, labelled with these names.
  std::vector<std::string> categories;
};

struct Series {
  std::string name;
  std::string color;
  std::vector<double> x, y;
  bool markers = true;
  bool line = false;  // join the points in the given order
  bool dashed = false;
  bool bars = false;  // grouped bars on a categorical x axis
  bool in_legend = true;
  std::vector<bool> hollow;           // per point: an open marker (e.g. dominated points)
  std::vector<double> yerr;           // per point: a vertical error bar y ± yerr (0: none)
  std::vector<std::string> tooltips;  // per point: a <title> shown on hover
};
inline Series series(std::string name, std::string color) {
  Series s;
  s.name = std::move(name);
  s.color = std::move(color);
  return s;
}

// A horizontal reference line (e.g. FP32 accuracy, a cluster centre, budget = 100 %).
struct HLine {
  double y = 0;
  std::string label;
  std::string color = "#555";
  bool dashed = true;
};

struct Plot {
  std::string title;
  int width = 760;
  int height = 320;  // of the plotting frame plus margins; the legend adds rows on top
  Axis x, y;
  std::vector<Series> series;
  std::vector<HLine> hlines;
};

// The plot as an <svg> element with a viewBox (scales to its container) and a <title>.
std::string render(const Plot& p);

}  // namespace sq::svg
