#include "report/svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace sq::svg {

std::string escape(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string color(size_t i) {
  static const char* const kPalette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                         "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
  return kPalette[i % (sizeof kPalette / sizeof kPalette[0])];
}

namespace {

double nice_step(double raw) {
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  const double nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
  return nice * mag;
}

int decimals_for(double step) {
  double s = std::fabs(step);
  if (!(s > 0) || !std::isfinite(s)) return 0;
  for (int d = 0; d < 12; ++d) {
    const double m = s * std::pow(10.0, d);
    if (std::fabs(m - std::round(m)) < 1e-6 * std::max(1.0, m)) return d;
  }
  return 12;
}

// Axis range after the ticks are chosen: the data, widened to the outer ticks.
struct Scale {
  double lo = 0, hi = 1;
  bool log = false;
  std::vector<double> ticks;
  double step = 1;  // linear axes: tick step (for labels)
  double f(double v) const { return log ? std::log10(v) : v; }
  double frac(double v) const { return (f(v) - f(lo)) / (f(hi) - f(lo)); }
};

Scale make_scale(const Axis& a, double lo, double hi) {
  Scale s;
  s.log = a.log;
  if (a.lo) lo = *a.lo;
  if (a.hi) hi = *a.hi;
  if (!std::isfinite(lo) || !std::isfinite(hi)) lo = a.log ? 1 : 0, hi = a.log ? 10 : 1;
  if (a.log) {
    if (lo <= 0) lo = hi > 0 ? hi / 10 : 1;
    if (hi <= lo) hi = lo * 10;
    // A little room around the data in log space; fixed bounds are kept as given.
    if (!a.lo) lo /= 1.25;
    if (!a.hi) hi *= 1.25;
    s.lo = lo, s.hi = hi;
    s.ticks = log_ticks(lo, hi);
    return s;
  }
  if (a.include_zero) lo = std::min(lo, 0.0), hi = std::max(hi, 0.0);
  if (hi - lo <= 0) {
    const double d = std::max(std::fabs(lo) * 0.1, a.integer ? 1.0 : 1e-9);
    lo -= d, hi += d;
  }
  std::vector<double> t = nice_ticks(lo, hi, 6);
  s.step = t.size() > 1 ? t[1] - t[0] : 1;
  if (a.integer && s.step < 1) {
    t.clear();
    for (double v = std::floor(lo); v <= std::ceil(hi) + 1e-9; v += 1) t.push_back(v);
    s.step = 1;
  }
  s.lo = a.lo ? lo : std::min(lo, t.front());
  s.hi = a.hi ? hi : std::max(hi, t.back());
  for (double v : t)
    if (v >= s.lo - 1e-9 * s.step && v <= s.hi + 1e-9 * s.step) s.ticks.push_back(v);
  return s;
}

std::string num(double v) { return fmt::format("{:.1f}", v); }

std::string short_name(const std::string& s, size_t n) {
  // Cut at a UTF-8 character boundary.
  if (s.size() <= n) return s;
  size_t cut = n - 1;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return s.substr(0, cut) + "\u2026";
}

std::string marker(const Series& s, size_t i, double x, double y) {
  const bool open = i < s.hollow.size() && s.hollow[i];
  std::string m =
      fmt::format(R"(<circle cx="{}" cy="{}" r="{}" fill="{}" stroke="{}" stroke-width="1.5")",
                  num(x), num(y), open ? "3.5" : "4", open ? "#fff" : s.color, s.color);
  if (i < s.tooltips.size() && !s.tooltips[i].empty())
    return m + "><title>" + escape(s.tooltips[i]) + "</title></circle>";
  return m + "/>";
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return {lo};
  const double step = nice_step((hi - lo) / std::max(1, target - 1));
  std::vector<double> t;
  const double first = std::floor(lo / step + 1e-9) * step;
  for (int i = 0; i < 1000; ++i) {
    double v = first + i * step;
    if (std::fabs(v) < step * 1e-9) v = 0;  // no "-0"
    t.push_back(v);
    if (v >= hi - step * 1e-9) break;
  }
  return t;
}

std::vector<double> log_ticks(double lo, double hi) {
  std::vector<double> t;
  if (!(lo > 0) || !(hi > lo)) return t;
  const int d0 = static_cast<int>(std::floor(std::log10(lo))) - 1;
  const int d1 = static_cast<int>(std::ceil(std::log10(hi))) + 1;
  const double decades = std::log10(hi / lo);
  std::vector<double> mult = decades > 3     ? std::vector<double>{1}
                             : decades > 1.2 ? std::vector<double>{1, 2, 5}
                                             : std::vector<double>{1, 2, 3, 5, 7};
  for (int d = d0; d <= d1; ++d)
    for (double m : mult) {
      double v = m * std::pow(10.0, d);
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) t.push_back(v);
    }
  return t;
}

std::string tick_label(double v, double step) {
  if (v == 0) return "0";
  const double a = std::fabs(v);
  if (a >= 1e6 || a < 1e-3) return fmt::format("{:g}", v);
  return fmt::format("{:.{}f}", v, std::min(decimals_for(step), 6));
}

std::string render(const Plot& p) {
  const double W = p.width;
  const bool cat = !p.x.categories.empty();

  // Legend: items laid out in rows across the top.
  struct Item {
    const Series* s;
    double x, row;
  };
  std::vector<Item> items;
  {
    double x = 64;
    int row = 0;
    for (const auto& s : p.series) {
      if (!s.in_legend || s.name.empty()) continue;
      const double w = 30 + 6.6 * static_cast<double>(short_name(s.name, 48).size());
      if (x + w > W - 10 && x > 64) x = 64, ++row;
      items.push_back({&s, x, static_cast<double>(row)});
      x += w + 14;
    }
  }
  const double legend_h = items.empty() ? 0 : (items.back().row + 1) * 18;
  size_t longest = 0;
  for (const auto& c : p.x.categories) longest = std::max(longest, short_name(c, 18).size());
  const double left = 70, right = 24;
  const double top = 34 + legend_h + 8;
  const double bottom = cat ? 24 + std::min<double>(longest, 18) * 4.8 : 50;
  const double ph = std::max(80.0, p.height - 90.0);
  const double pw = W - left - right;
  const double H = top + ph + bottom;

  // Data ranges.
  double xlo = std::numeric_limits<double>::infinity(), xhi = -xlo, ylo = xlo, yhi = -xlo;
  for (const auto& s : p.series) {
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      if (p.y.log && s.y[i] <= 0) continue;
      if (p.x.log && s.x[i] <= 0) continue;
      xlo = std::min(xlo, s.x[i]), xhi = std::max(xhi, s.x[i]);
      const double e = i < s.yerr.size() && std::isfinite(s.yerr[i]) ? std::fabs(s.yerr[i]) : 0;
      const double lo = p.y.log && s.y[i] - e <= 0 ? s.y[i] : s.y[i] - e;
      ylo = std::min(ylo, lo), yhi = std::max(yhi, s.y[i] + e);
    }
  }
  for (const auto& h : p.hlines)
    if (std::isfinite(h.y) && (!p.y.log || h.y > 0))
      ylo = std::min(ylo, h.y), yhi = std::max(yhi, h.y);
  Scale sx, sy = make_scale(p.y, ylo, yhi);
  if (cat) {
    sx.lo = -0.5, sx.hi = static_cast<double>(p.x.categories.size()) - 0.5;
  } else {
    sx = make_scale(p.x, xlo, xhi);
  }
  auto X = [&](double v) { return left + sx.frac(v) * pw; };
  auto Y = [&](double v) { return top + ph - sy.frac(v) * ph; };
  auto inside_x = [&](double v) { return std::isfinite(v) && (!sx.log || v > 0); };
  auto inside_y = [&](double v) { return std::isfinite(v) && (!sy.log || v > 0); };

  std::string o = fmt::format(
      R"(<svg xmlns="http://www.w3.org/2000/svg" class="plot" viewBox="0 0 {} {}" width="{}" height="{}" role="img" font-family="sans-serif" font-size="11">)",
      W, num(H), W, num(H));
  o += "\n<title>" + escape(p.title) + "</title>\n";
  o += fmt::format(R"(<rect x="0" y="0" width="{}" height="{}" fill="#fff"/>)", W, num(H)) + "\n";
  o += fmt::format(R"(<text x="{}" y="20" font-size="14" font-weight="bold">{}</text>)", left,
                   escape(p.title)) +
       "\n";

  // Legend.
  for (const auto& it : items) {
    const double y = 34 + it.row * 18 + 4;
    const Series& s = *it.s;
    if (s.bars) {
      o += fmt::format(R"(<rect x="{}" y="{}" width="16" height="10" fill="{}"/>)", num(it.x),
                       num(y - 5), s.color);
    } else {
      if (s.line)
        o += fmt::format(
            R"(<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="2"{}/>)", num(it.x),
            num(y), num(it.x + 18), num(y), s.color, s.dashed ? R"( stroke-dasharray="5,3")" : "");
      if (s.markers)
        o += fmt::format(R"(<circle cx="{}" cy="{}" r="4" fill="{}"/>)", num(it.x + 9), num(y),
                         s.color);
    }
    o += fmt::format(R"(<text x="{}" y="{}">{}</text>)", num(it.x + 24), num(y + 4),
                     escape(short_name(s.name, 48))) +
         "\n";
  }

  // Grid and tick labels.
  o += "<g class=\"grid\" stroke=\"#e3e3e3\" stroke-width=\"1\">\n";
  for (double t : sy.ticks)
    o += fmt::format(R"(<line x1="{}" y1="{}" x2="{}" y2="{}"/>)", num(left), num(Y(t)),
                     num(left + pw), num(Y(t)));
  if (!cat)
    for (double t : sx.ticks)
      o += fmt::format(R"(<line x1="{}" y1="{}" x2="{}" y2="{}"/>)", num(X(t)), num(top), num(X(t)),
                       num(top + ph));
  o += "\n</g>\n<g class=\"ticks\" fill=\"#333\">\n";
  for (double t : sy.ticks)
    o += fmt::format(R"(<text x="{}" y="{}" text-anchor="end">{}</text>)", num(left - 6),
                     num(Y(t) + 4),
                     escape(sy.log ? fmt::format("{:g}", t) : tick_label(t, sy.step)));
  if (cat) {
    const size_t n = p.x.categories.size();
    const size_t every = n > 40 ? (n + 39) / 40 : 1;
    for (size_t i = 0; i < n; i += every) {
      const double x = X(static_cast<double>(i)), y = top + ph + 12;
      o += fmt::format(
          R"~(<text x="{}" y="{}" text-anchor="end" transform="rotate(-45 {} {})">{}</text>)~",
          num(x + 3), num(y), num(x + 3), num(y), escape(short_name(p.x.categories[i], 18)));
    }
  } else {
    for (double t : sx.ticks)
      o += fmt::format(R"(<text x="{}" y="{}" text-anchor="middle">{}</text>)", num(X(t)),
                       num(top + ph + 16),
                       escape(sx.log ? fmt::format("{:g}", t) : tick_label(t, sx.step)));
  }
  o += "\n</g>\n";
  // Frame and axis labels.
  o += fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#888"/>)",
                   num(left), num(top), num(pw), num(ph)) +
       "\n";
  if (!p.x.label.empty())
    o += fmt::format(R"(<text x="{}" y="{}" text-anchor="middle" font-size="12">{}</text>)",
                     num(left + pw / 2), num(H - 8), escape(p.x.label)) +
         "\n";
  if (!p.y.label.empty())
    o +=
        fmt::format(
            R"~(<text x="14" y="{}" text-anchor="middle" font-size="12" transform="rotate(-90 14 {})">{}</text>)~",
            num(top + ph / 2), num(top + ph / 2), escape(p.y.label)) +
        "\n";

  // Reference lines.
  for (const auto& h : p.hlines) {
    if (!inside_y(h.y)) continue;
    o += fmt::format(R"(<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="1.2"{}/>)",
                     num(left), num(Y(h.y)), num(left + pw), num(Y(h.y)), h.color,
                     h.dashed ? R"( stroke-dasharray="6,4")" : "");
    if (!h.label.empty())
      // Above the line, or below it when the line runs along the top of the frame.
      o += fmt::format(R"(<text x="{}" y="{}" text-anchor="end" fill="{}">{}</text>)",
                       num(left + pw - 4), num(Y(h.y) - top < 14 ? Y(h.y) + 13 : Y(h.y) - 4),
                       h.color, escape(h.label));
    o += "\n";
  }

  // Bars (grouped on a categorical axis).
  std::vector<const Series*> bars;
  for (const auto& s : p.series)
    if (s.bars) bars.push_back(&s);
  if (!bars.empty()) {
    const double band = cat ? pw / static_cast<double>(p.x.categories.size()) : pw / 10;
    const double gw = band * 0.8, bw = gw / static_cast<double>(bars.size());
    const double base = Y(sy.log ? sy.lo : std::max(sy.lo, std::min(0.0, sy.hi)));
    for (size_t b = 0; b < bars.size(); ++b) {
      const Series& s = *bars[b];
      o += "<g fill=\"" + s.color + "\">";
      for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
        if (!inside_x(s.x[i]) || !inside_y(s.y[i])) continue;
        const double x = X(s.x[i]) - gw / 2 + static_cast<double>(b) * bw, y = Y(s.y[i]);
        o += fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}">)", num(x),
                         num(std::min(y, base)), num(std::max(bw - 0.5, 0.5)),
                         num(std::fabs(base - y)));
        std::string tip = i < s.tooltips.size() ? s.tooltips[i] : s.name;
        o += "<title>" + escape(tip) + "</title></rect>";
      }
      o += "</g>\n";
    }
  }

  // Lines, then markers on top.
  for (const auto& s : p.series) {
    if (s.bars || !s.line) continue;
    std::string pts;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
      if (inside_x(s.x[i]) && inside_y(s.y[i]))
        pts += (pts.empty() ? "" : " ") + num(X(s.x[i])) + "," + num(Y(s.y[i]));
    if (pts.empty()) continue;
    o += fmt::format(R"(<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{}/>)", pts,
                     s.color, s.dashed ? R"( stroke-dasharray="5,3")" : "") +
         "\n";
  }
  for (const auto& s : p.series) {  // error bars under the markers
    if (s.bars) continue;
    for (size_t i = 0; i < s.x.size() && i < s.y.size() && i < s.yerr.size(); ++i) {
      const double e = std::fabs(s.yerr[i]);
      if (!(e > 0) || !std::isfinite(e) || !inside_x(s.x[i]) || !inside_y(s.y[i])) continue;
      const double lo = inside_y(s.y[i] - e) ? s.y[i] - e : s.y[i];
      const double x = X(s.x[i]), y0 = Y(lo), y1 = Y(s.y[i] + e);
      o += fmt::format(
          R"(<path class="errbar" d="M{0},{1}V{2}M{3},{1}H{4}M{3},{2}H{4}" stroke="{5}" stroke-width="1.2" fill="none"/>)",
          num(x), num(y0), num(y1), num(x - 4), num(x + 4), s.color);
      o += "\n";
    }
  }
  for (const auto& s : p.series) {
    if (s.bars || !s.markers) continue;
    o += "<g>";
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
      if (inside_x(s.x[i]) && inside_y(s.y[i])) o += marker(s, i, X(s.x[i]), Y(s.y[i]));
    o += "</g>\n";
  }
  o += "</svg>\n";
  return o;
}

}  // namespace sq::svg
