// Warp-level helpers of the CUDA kernels that give each seed a warp. CUDA headers only, no torch.
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

// dst[j] = src[j] for j < n, the lanes sharing the row.
template <typename T>
__device__ __forceinline__ void warp_copy(T* dst, const T* src, int64_t n) {
  for (int64_t j = threadIdx.x; j < n; j += kWarp) dst[j] = src[j];
}

// This warp's workspace of a fused training kernel (see TrainPlan): `values` per seed in the
// block's dynamic shared memory, or the seed's row of `spill` when the plan spills.
template <typename T>
__device__ __forceinline__ T* warp_workspace(T* spill, int64_t seed, int64_t values) {
  return spill ? spill + seed * values
               : reinterpret_cast<T*>(dynamic_shared_memory()) + threadIdx.y * values;
}

}  // namespace cuda
}  // namespace cn
