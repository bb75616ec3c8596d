// Exact 1-D k-means by dynamic programming, the silhouette, and the adaptive choice of k.
//
// In one dimension the optimal k-means clusters are contiguous runs of the sorted points, so the
// global optimum is a shortest-path over split positions: D[m][j] = min_i D[m-1][i-1] + SSE(i..j),
// O(k n^2) with prefix sums. For the tens to hundreds of layers of a network this is microseconds
// and, unlike Lloyd's algorithm, needs no initialisation and cannot stop in a local optimum.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "sigmaquant/alloc.h"
#include "sigmaquant/error.h"

namespace sq {

KMeans1D kmeans_1d(const std::vector<double>& x, int k) {
  const int n = static_cast<int>(x.size());
  if (k < 1 || k > n) fail("kmeans_1d: k = {} must be in 1..{} (the number of points)", k, n);
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return x[a] < x[b]; });
  std::vector<double> s1(n + 1, 0.0), s2(n + 1, 0.0);
  for (int i = 0; i < n; ++i) {
    const double v = x[order[i]];
    s1[i + 1] = s1[i] + v;
    s2[i + 1] = s2[i] + v * v;
  }
  // SSE of sorted points i..j (inclusive), clamped: the prefix-sum form can round below zero.
  auto sse = [&](int i, int j) {
    const double len = j - i + 1;
    const double a = s1[j + 1] - s1[i];
    return std::max(0.0, (s2[j + 1] - s2[i]) - a * a / len);
  };
  const double inf = std::numeric_limits<double>::infinity();
  // D[m][j]: best SSE of sorted points 0..j in m+1 clusters; from[m][j]: start of the last one.
  std::vector<std::vector<double>> D(k, std::vector<double>(n, inf));
  std::vector<std::vector<int>> from(k, std::vector<int>(n, 0));
  for (int j = 0; j < n; ++j) D[0][j] = sse(0, j);
  for (int m = 1; m < k; ++m)
    for (int j = m; j < n; ++j)
      for (int i = m; i <= j; ++i) {
        const double v = D[m - 1][i - 1] + sse(i, j);
        if (v < D[m][j]) {  // strict: ties keep the earlier split
          D[m][j] = v;
          from[m][j] = i;
        }
      }
  KMeans1D r;
  r.k = k;
  r.sse = D[k - 1][n - 1];
  r.labels.assign(n, 0);
  r.centers.assign(k, 0.0);
  int j = n - 1;
  for (int m = k - 1; m >= 0; --m) {
    const int i = m == 0 ? 0 : from[m][j];
    r.centers[m] = (s1[j + 1] - s1[i]) / (j - i + 1);
    for (int t = i; t <= j; ++t) r.labels[order[t]] = m;
    j = i - 1;
  }
  return r;
}

double kmeans_silhouette(const KMeans1D& km, const std::vector<double>& x) {
  const int n = static_cast<int>(x.size());
  if (km.k < 2 || n == 0) return 0.0;
  std::vector<int> count(km.k, 0);
  for (int l : km.labels) ++count[l];
  double total = 0;
  std::vector<double> dist(km.k);
  for (int p = 0; p < n; ++p) {
    std::fill(dist.begin(), dist.end(), 0.0);
    for (int q = 0; q < n; ++q) dist[km.labels[q]] += std::fabs(x[p] - x[q]);
    const int own = km.labels[p];
    if (count[own] <= 1) continue;  // s = 0 for a point alone in its cluster
    const double a = dist[own] / (count[own] - 1);
    double b = std::numeric_limits<double>::infinity();
    for (int c = 0; c < km.k; ++c)
      if (c != own && count[c] > 0) b = std::min(b, dist[c] / count[c]);
    const double m = std::max(a, b);
    if (m > 0) total += (b - a) / m;
  }
  return total / n;
}

KMeans1D kmeans_1d_adaptive(const std::vector<double>& x, int max_k, double min_silhouette,
                            std::vector<double>* criterion) {
  if (x.empty()) fail("kmeans_1d_adaptive: no points to cluster");
  if (max_k < 1) fail("kmeans_1d_adaptive: max_k = {} must be at least 1", max_k);
  std::vector<double> sorted = x;
  std::sort(sorted.begin(), sorted.end());
  const int distinct = static_cast<int>(std::unique(sorted.begin(), sorted.end()) - sorted.begin());
  const int kmax = std::min(max_k, distinct);
  if (criterion) criterion->assign(kmax, 0.0);
  KMeans1D best = kmeans_1d(x, 1);
  double best_s = -std::numeric_limits<double>::infinity();
  KMeans1D best_multi;
  for (int k = 2; k <= kmax; ++k) {
    KMeans1D km = kmeans_1d(x, k);
    const double s = kmeans_silhouette(km, x);
    if (criterion) (*criterion)[k - 1] = s;
    if (s > best_s) {  // strict: ties keep the smaller k
      best_s = s;
      best_multi = std::move(km);
    }
  }
  if (kmax >= 2 && best_s >= min_silhouette) return best_multi;
  return best;
}

}  // namespace sq
