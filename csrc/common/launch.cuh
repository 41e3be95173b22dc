// The one place that launches CUDA kernels, so that every launch takes the same checks. The raw
// `<<< >>>` is in common/cuda_syntax.cuh, which the CPU harness replaces (docs/harness.md), so
// that this file's opt-in and error logic runs under the harness too. CUDA headers only, no torch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "cuda_syntax.cuh"
#include "launch_config.h"

namespace cn {
namespace cuda {

// nullptr, or the message of the last CUDA error (which it clears).
inline const char* last_error() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

// Launches kernel<<<blocks, block, smem_bytes, stream>>>(args...), first opting in to more than
// the default dynamic shared memory where smem_bytes asks for it. `stream` is a cudaStream_t.
// Returns nullptr on success or the CUDA error string.
template <typename... Params, typename... Args>
const char* launch(void (*kernel)(Params...), int64_t blocks, dim3 block, size_t smem_bytes,
                   void* stream, Args&&... args) {
  if (smem_bytes > kDefaultSharedBytes) {
    const cudaError_t e = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem_bytes));
    if (e != cudaSuccess) return cudaGetErrorString(e);
  }
  start_kernel(kernel, dim3(static_cast<unsigned>(blocks)), block, smem_bytes,
               static_cast<cudaStream_t>(stream), std::forward<Args>(args)...);
  return last_error();
}

}  // namespace cuda
}  // namespace cn
