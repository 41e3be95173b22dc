// The CPU harness's version of csrc/common/cuda_syntax.cuh (which includes this file when the
// harness build defines CN_CUDA_HARNESS): the raw launch runs the grid on fibers (scheduler.cpp), and the dynamic shared memory
// is the running block's own heap allocation of exactly smem_bytes, so AddressSanitizer catches
// an overrun.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

namespace cuda_harness {
// Runs `thread_body` once per thread of every block (blocks one at a time, in a seeded random
// order); records a launch or kernel error for cudaGetLastError.
void run_grid(const void* kernel, dim3 grid, dim3 block, size_t smem_bytes,
              const std::function<void()>& thread_body);
unsigned char* dynamic_shared();
}  // namespace cuda_harness

namespace cn {
namespace cuda {

template <typename... Params, typename... Args>
void start_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes,
                  cudaStream_t, Args&&... args) {
  // The arguments are converted to the parameter types once, as a launch copies them; every
  // thread gets its own copy, as every CUDA thread reads the parameters.
  const std::tuple<std::decay_t<Params>...> params(std::forward<Args>(args)...);
  ::cuda_harness::run_grid(reinterpret_cast<const void*>(kernel), grid, block, smem_bytes,
                           [&] { std::apply(kernel, params); });
}

inline unsigned char* dynamic_shared_memory() { return ::cuda_harness::dynamic_shared(); }

}  // namespace cuda
}  // namespace cn
