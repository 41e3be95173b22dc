// Warp- and seed-level helpers of the CUDA kernels that give each seed W warps (threadIdx.y, see
// launch_config.h: warps_per_seed) of a block of seeds_per_block seeds (threadIdx.z). CUDA
// headers only, no torch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_syntax.cuh"
#include "launch_config.h"

namespace cn {
namespace cuda {

// Butterfly sum: every lane ends with the same, order-fixed (deterministic) result.
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One step of warp_transpose_sum at offset O, then the next ones (template recursion: every index
// a compile-time constant, so that the array stays in registers).
template <int O, int Off, typename T, int K>
__device__ __forceinline__ void transpose_sum_step(T (&v)[K], int lane) {
  const bool upper = (lane & O) != 0;
#pragma unroll
  for (int i = 0; i < O; ++i) {
    // values first: `upper ? v[a] : v[b]` would be an lvalue, a run-time address
    const T lo = v[Off + i], hi = v[Off + i + O];
    const T send = upper ? lo : hi;
    const T keep = upper ? hi : lo;
    v[Off + i] = keep + __shfl_xor_sync(0xffffffffu, send, O);
  }
  if constexpr (O > 1) transpose_sum_step<O / 2, Off>(v, lane);
}

// Transposing butterfly (reduce-scatter): each lane holds G values v[Off .. Off + G), G a power
// of two up to 32; lane k gets the sum over the warp's lanes of v[Off + k % G], in a fixed order.
// G - 1 shuffles for G sums, then one per halving of 32 / G (32 warp_sums: 160). At offset o a
// lane keeps the half of its 2o values whose index has bit o equal to its own and sends the
// other half to its partner; below 32 values, lanes k and k ^ G (...) then hold partial sums of
// the same index and add them. Those values of v are clobbered.
template <int Off, int G, typename T, int K>
__device__ __forceinline__ T warp_transpose_sum(T (&v)[K]) {
  static_assert(G >= 2 && G <= kWarp && (G & (G - 1)) == 0, "a power of two up to 32 values");
  static_assert(Off + G <= K, "G values from Off");
  transpose_sum_step<G / 2, Off>(v, int(threadIdx.x));
  T sum = v[Off];
#pragma unroll
  for (int o = G; o < kWarp; o *= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  return sum;
}

// This thread's index among its seed's W x 32 threads, and the seed's index in its block.
__device__ __forceinline__ int seed_thread() { return threadIdx.y * kWarp + threadIdx.x; }
__device__ __forceinline__ int seed_in_block() { return threadIdx.z; }

// The seed's threads meet: __syncthreads when the seed has several warps (then it is the block's
// only seed), else __syncwarp. `warps` is the same for the whole block.
__device__ __forceinline__ void seed_sync(int warps) {
  if (warps > 1)
    __syncthreads();
  else
    __syncwarp();
}

// dst[j] = src[j] for j < n, the seed's threads sharing the row.
template <typename T>
__device__ __forceinline__ void seed_copy(T* dst, const T* src, int64_t n) {
  for (int64_t j = seed_thread(); j < n; j += int64_t(blockDim.y) * kWarp) dst[j] = src[j];
}

// The block's dynamic shared memory (launch_config.h: TrainPlan): `seeds` workspaces of
// `ws_values` each (none when spilled), then each seed's reduction area of W x `red_values`.
template <typename T>
__device__ __forceinline__ T* seed_workspace(T* spill, int64_t seed, int64_t ws_values) {
  return spill ? spill + seed * ws_values
               : reinterpret_cast<T*>(dynamic_shared_memory()) + seed_in_block() * ws_values;
}
template <typename T>
__device__ __forceinline__ T* seed_reduction_area(bool spilled, int64_t ws_values,
                                                  int64_t red_values) {
  const int64_t seeds = blockDim.z, warps = blockDim.y;
  return reinterpret_cast<T*>(dynamic_shared_memory()) + (spilled ? 0 : seeds * ws_values) +
         seed_in_block() * warps * red_values;
}

// The seed's fixed-order sum of V values of which every lane holds a share: its warp's sums come
// from warp_transpose_sum (`store(part_row)` writes them, each warp w owning row
// part[w * (V + 1) ...], and returns one extra value per warp, e.g. the squared errors, already
// warp-summed, for column V). Then thread t < V of the seed adds column t over the warps in warp
// order and calls out(t, total); thread 0 gets the extra's total as the return value (others: 0).
// `part` is the seed's reduction area, W x (V + 1) values. Ends with the seed's threads met, so
// that `part` may be reused and what out() wrote is visible to the seed.
template <typename T, typename Store, typename Out>
__device__ __forceinline__ T seed_sum(T* part, int V, Store&& store, Out&& out) {
  const int W = blockDim.y, w = threadIdx.y;
  T* row = part + int64_t(w) * (V + 1);
  const T extra = store(row);
  if (threadIdx.x == 0) row[V] = extra;
  seed_sync(W);  // every warp's row is complete
  const int t0 = seed_thread();
  for (int t = t0; t < V; t += W * kWarp) {
    T total = part[t];
    for (int k = 1; k < W; ++k) total += part[int64_t(k) * (V + 1) + t];
    out(t, total);
  }
  T ex = T(0);
  if (t0 == 0) {
    ex = part[V];
    for (int k = 1; k < W; ++k) ex += part[int64_t(k) * (V + 1) + V];
  }
  seed_sync(W);  // the totals are out, `part` is free
  return ex;
}

}  // namespace cuda
}  // namespace cn
