// Warp-level helpers shared by the CUDA drivers (CUDA headers only, no torch).
#pragma once

#include <cuda_runtime.h>

namespace cn {
namespace cuda {

constexpr int kWarp = 32;

// Butterfly sum: every lane ends with the same, order-fixed (deterministic) result.
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

}  // namespace cuda
}  // namespace cn
