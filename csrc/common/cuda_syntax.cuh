// The only CUDA-only syntax of the kernels, in one file so that the CPU harness
// (tests/cuda_harness, docs/harness.md) can replace it: the `<<< >>>` launch (called only by
// common/launch.cuh, which keeps the opt-in and error logic) and the block's dynamic shared
// memory. CUDA headers only, no torch. The harness build defines CN_CUDA_HARNESS and puts its
// own harness_syntax.cuh on the include path; nothing else in csrc knows about it.
#pragma once

#if defined(CN_CUDA_HARNESS)
#include <harness_syntax.cuh>
#else

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

namespace cn {
namespace cuda {

// kernel<<<grid, block, smem_bytes, stream>>>(args...): the raw launch, no checks.
template <typename... Params, typename... Args>
void start_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes,
                  cudaStream_t stream, Args&&... args) {
  kernel<<<grid, block, smem_bytes, stream>>>(std::forward<Args>(args)...);
}

// The block's dynamic shared memory (the launch's smem_bytes), 16-byte aligned.
__device__ __forceinline__ unsigned char* dynamic_shared_memory() {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  return smem_raw;
}

}  // namespace cuda
}  // namespace cn

#endif  // CN_CUDA_HARNESS
