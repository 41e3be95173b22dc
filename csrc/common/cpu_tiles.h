// Tiles of points and the fixed-order reductions of the CPU drivers (compnet/cpu.cpp,
// mlp/cpu.cpp). Sums run lane-wise within a tile, then over lanes in a fixed order, then over
// blocks of points in block order: results do not depend on the number of threads.
#pragma once

#include <algorithm>
#include <cstdint>

#include "portability.h"

namespace cn {

// Lanes per call of the per-point math: eight AVX2 registers' worth. The math is latency-bound
// (each layer is a chain of dependent instructions), so one or two registers' worth of lanes
// leaves the core waiting; eight independent chains keep it busy.
template <typename T>
constexpr int kLanes = 256 / sizeof(T);

// Loads one tile of L points (zero-padded past N) from a row of a [N] or [S, N] tensor.
template <typename T, int L>
void load_tile(const T* row, int64_t n0, int64_t N, T (&out)[L]) {
  for (int l = 0; l < L; ++l) out[l] = n0 + l < N ? row[n0 + l] : T(0);
}

// acc[l] += v[l] over the lanes. (restrict: without it GCC kept this loop scalar.)
template <typename T, int L>
void add_lanes(T* __restrict acc, const T* __restrict v) {
  CN_LANES for (int l = 0; l < L; ++l) acc[l] += v[l];
}

// acc[l] = madd(u[l], v[l], acc[l]) over the lanes.
template <typename T, int L>
void madd_lanes(T* __restrict acc, const T* __restrict u, const T* __restrict v) {
  CN_LANES for (int l = 0; l < L; ++l) acc[l] = madd(u[l], v[l], acc[l]);
}

// The sum over the lanes, in lane order.
template <typename T, int L>
T sum_lanes(const T* v) {
  T sum = 0;
  for (int l = 0; l < L; ++l) sum += v[l];
  return sum;
}

// row[j] = sum over blocks b (in block order) of partial[b * W + j], for j < W.
template <typename T>
void sum_blocks(const T* partial, int64_t blocks, int64_t W, T* row) {
  std::fill(row, row + W, T(0));
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t j = 0; j < W; ++j) row[j] += partial[b * W + j];
}

}  // namespace cn
