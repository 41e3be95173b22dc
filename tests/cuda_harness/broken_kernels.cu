// Deliberately broken kernels, compiled only into the harness library, to show that the harness
// fails on each bug class it claims to catch (tests/test_cuda_emulated.py). Each is launched
// through csrc/common/launch.cuh like the real kernels. Not part of the extension.
#include <cuda_runtime.h>

#include <cstring>
#include <memory>
#include <string>

#include "../../csrc/common/launch.cuh"
#include "../../csrc/common/warp.cuh"

namespace {

using namespace cn::cuda;

// Wrong shuffle offset: the butterfly starts at 32, so every lane reads a lane beyond the warp.
__global__ void wrong_shuffle_kernel(const float* in, float* out) {
  float v = in[threadIdx.x];
  for (int o = kWarp; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  out[threadIdx.x] = v;
}

// Off-by-one bound: `k > n` lets thread n read and write one past the arrays.
__global__ void off_by_one_kernel(int n, const float* in, float* out) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k > n) return;
  out[k] = 2 * in[k];
}

// Missing __syncwarp: lane 0 fills the shared row that the other lanes then read.
__global__ void missing_syncwarp_kernel(const float* in, float* out) {
  float* row = reinterpret_cast<float*>(dynamic_shared_memory());
  if (threadIdx.x == 0)
    for (int j = 0; j < kWarp; ++j) row[j] = in[j];
  // __syncwarp();  <- missing
  out[threadIdx.x] = row[(threadIdx.x + 1) % kWarp];
}

// Shared-memory overrun: each lane writes one slot to the right of its own.
__global__ void smem_overrun_kernel(const float* in, float* out) {
  float* row = reinterpret_cast<float*>(dynamic_shared_memory());
  row[threadIdx.x + 1] = in[threadIdx.x];
  __syncwarp();
  out[threadIdx.x] = row[threadIdx.x];
}

// A full-mask warp_sum after half the lanes have returned.
__global__ void exited_lane_kernel(const float* in, float* out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = warp_sum(in[threadIdx.x]);
}

// Lanes of one warp at different primitives: lane 0 at __syncwarp, the others at a shuffle.
__global__ void divergent_kernel(const float* in, float* out) {
  float v = in[threadIdx.x];
  if (threadIdx.x == 0)
    __syncwarp();
  else
    v = __shfl_xor_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}

// A kernel that is fine, launched with more than 48 KiB of shared memory without opting in (the
// raw launch, bypassing common/launch.cuh's cudaFuncSetAttribute): the device refuses.
__global__ void big_smem_kernel(float* out) { out[threadIdx.x] = 0; }

}  // namespace

// Runs the broken kernel `which` on 32 values 0, 1, ...; writes its 32 outputs to out and returns
// the launch's error (nullptr: none reported by the harness).
extern "C" const char* harness_broken(const char* which, float* out) {
  constexpr int n = kWarp;
  auto in = std::make_unique<float[]>(n);  // exactly n: an overrun is a heap-buffer-overflow
  auto res = std::make_unique<float[]>(n);
  for (int i = 0; i < n; ++i) in[i] = float(i);
  const std::string w = which;
  const float* x = in.get();
  float* y = res.get();
  const char* err = "unknown broken kernel";
  if (w == "wrong_shuffle") err = launch(wrong_shuffle_kernel, 1, dim3(n), 0, nullptr, x, y);
  if (w == "off_by_one") err = launch(off_by_one_kernel, 1, dim3(2 * n), 0, nullptr, n, x, y);
  if (w == "missing_syncwarp")
    err = launch(missing_syncwarp_kernel, 1, dim3(n), n * sizeof(float), nullptr, x, y);
  if (w == "smem_overrun")
    err = launch(smem_overrun_kernel, 1, dim3(n), n * sizeof(float), nullptr, x, y);
  if (w == "exited_lane") err = launch(exited_lane_kernel, 1, dim3(n), 0, nullptr, x, y);
  if (w == "divergent") err = launch(divergent_kernel, 1, dim3(n), 0, nullptr, x, y);
  if (w == "no_optin") {
    start_kernel(big_smem_kernel, dim3(1), dim3(n), 64 * 1024, nullptr, y);
    err = last_error();
  }
  std::memcpy(out, y, n * sizeof(float));
  return err;
}
