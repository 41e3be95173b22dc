// The CPU harness's stand-in for <cuda_runtime.h> (docs/harness.md): found before the real one by
// include-path order when csrc/**/kernels.cu are compiled as C++ with the host compiler. Kernels
// become ordinary functions run by one fiber per CUDA thread (scheduler.cpp); threadIdx & co.
// name the running fiber's coordinates; warp primitives meet the lanes of the warp.
#pragma once

// Only the harness build (CN_CUDA_HARNESS) gets the stand-in. Anything else that finds this
// folder on its include path -- nvcc included, which pulls <cuda_runtime.h> into every .cu --
// gets the real header, so this folder never breaks a real CUDA build.
#if !defined(CN_CUDA_HARNESS)
#include_next <cuda_runtime.h>
#else

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <source_location>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __align__(n) __attribute__((aligned(n)))
// A register-allocation hint to nvcc; the harness has no registers to allocate.
#define __launch_bounds__(...)
// Static shared memory: one instance, reused by the blocks, which run one at a time.
#define __shared__ static

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
typedef struct CUstream_st* cudaStream_t;

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
};
enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

namespace cuda_harness {

struct Coords {
  uint3 thread, block;
  dim3 block_dim, grid_dim;
};
// The running fiber's coordinates (an error to ask outside a kernel).
const Coords& coords();

enum class Op { syncwarp, shfl, shfl_up, shfl_down, shfl_xor, ballot, any, all };
// Lane meeting point of every warp primitive: records this lane's arrival, suspends it until
// every lane of `mask` has arrived at the same primitive, and returns this lane's result.
uint64_t warp_meet(Op op, unsigned mask, uint64_t value, int arg, int width,
                   const std::source_location& site);
void block_barrier(const std::source_location& site);

cudaError_t func_set_attribute(const void* kernel, cudaFuncAttribute attr, int value);

template <typename T>
uint64_t bits(T v) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffle of a 1-8 byte value");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <typename T>
T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}

}  // namespace cuda_harness

#define threadIdx (::cuda_harness::coords().thread)
#define blockIdx (::cuda_harness::coords().block)
#define blockDim (::cuda_harness::coords().block_dim)
#define gridDim (::cuda_harness::coords().grid_dim)
constexpr int warpSize = 32;

inline void __syncwarp(unsigned mask = 0xffffffffu,
                       std::source_location site = std::source_location::current()) {
  ::cuda_harness::warp_meet(::cuda_harness::Op::syncwarp, mask, 0, 0, 32, site);
}
inline void __syncthreads(std::source_location site = std::source_location::current()) {
  ::cuda_harness::block_barrier(site);
}

#define CN_HARNESS_SHFL(name, op)                                                             \
  template <typename T>                                                                      \
  T name(unsigned mask, T var, int arg, int width = 32,                                      \
         std::source_location site = std::source_location::current()) {                      \
    return ::cuda_harness::from_bits<T>(::cuda_harness::warp_meet(                            \
        ::cuda_harness::Op::op, mask, ::cuda_harness::bits(var), arg, width, site));          \
  }
CN_HARNESS_SHFL(__shfl_sync, shfl)
CN_HARNESS_SHFL(__shfl_up_sync, shfl_up)
CN_HARNESS_SHFL(__shfl_down_sync, shfl_down)
CN_HARNESS_SHFL(__shfl_xor_sync, shfl_xor)
#undef CN_HARNESS_SHFL

inline unsigned __ballot_sync(unsigned mask, int pred,
                              std::source_location site = std::source_location::current()) {
  return unsigned(::cuda_harness::warp_meet(::cuda_harness::Op::ballot, mask, pred != 0, 0, 32, site));
}
inline int __any_sync(unsigned mask, int pred,
                      std::source_location site = std::source_location::current()) {
  return int(::cuda_harness::warp_meet(::cuda_harness::Op::any, mask, pred != 0, 0, 32, site));
}
inline int __all_sync(unsigned mask, int pred,
                      std::source_location site = std::source_location::current()) {
  return int(::cuda_harness::warp_meet(::cuda_harness::Op::all, mask, pred != 0, 0, 32, site));
}

// Runtime API: one device with an H100's limits (the opt-in limit can be lowered for tests).
cudaError_t cudaGetLastError();
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
template <typename F>
cudaError_t cudaFuncSetAttribute(F* kernel, cudaFuncAttribute attr, int value) {
  return ::cuda_harness::func_set_attribute(reinterpret_cast<const void*>(kernel), attr, value);
}

#endif  // CN_CUDA_HARNESS
