// CUDA drivers of the batched-MLP math of mlp_math.h: one point per thread; the backward runs one
// warp per seed so that parameter gradients are reduced with a fixed-order warp butterfly and
// added by lane 0 into the seed's row (no atomics: bitwise deterministic).
// Includes nothing from torch so that nvcc compiles it without a CUDA build of torch.
#include <cuda_runtime.h>

#include "../mlp_math.h"
#include "mlp_kernels.h"

namespace cn {
namespace cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;
constexpr int kForwardThreads = 128;
// Per-thread activation buffer sizes (local memory): small nets get a small frame.
constexpr int kSmallUnits = 64;
constexpr int kLargeUnits = mlp::kMaxWidth * mlp::kMaxHidden;

template <typename T, int Units>
__global__ void forward_kernel(const mlp::Shape sh, MlpDims d, const T* __restrict__ x,
                               const T* __restrict__ params, T* __restrict__ y) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= d.S * d.N) return;
  const int64_t seed = k / d.N, n = k % d.N;
  T h[Units];
  const T xt[1] = {x[(d.x_shared ? 0 : seed * d.N) + n]};
  T yt[1];
  mlp::forward_lanes<T, 1>(sh, params + seed * sh.params, xt, h, yt);
  y[k] = yt[0];
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <typename T>
struct WarpAcc {
  T* row;  // this seed's gradient row [P]
  bool lead;
  __device__ void add(int idx, const T* v) {
    const T s = warp_sum(v[0]);
    if (lead) row[idx] += s;
  }
};

template <typename T, int Units>
__global__ void backward_kernel(const mlp::Shape sh, MlpDims d, const T* __restrict__ x,
                                const T* __restrict__ params, const T* __restrict__ head,
                                T* loss, T* gx, T* gparams) {
  const int64_t seed = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (seed >= d.S) return;  // the whole warp exits together
  const int lane = threadIdx.x, P = sh.params;
  const T* p = params + seed * P;
  T* row = gparams + seed * P;
  if (lane == 0)
    for (int j = 0; j < P; ++j) row[j] = T(0);
  __syncwarp();
  WarpAcc<T> acc{row, lane == 0};
  T h[Units], g[mlp::kMaxWidth], gn[mlp::kMaxWidth];
  T lane_loss = 0;
  const T inv_n = T(1) / T(d.N);
  const int64_t xs = d.x_shared ? 0 : seed * d.N, hs = d.head_shared ? 0 : seed * d.N;
  // every lane runs the same number of tiles (the warp sums need all 32 lanes)
  for (int64_t n0 = 0; n0 < d.N; n0 += kWarp) {
    const int64_t n = n0 + lane;
    const bool valid = n < d.N;
    const T xt[1] = {valid ? x[xs + n] : T(0)};
    T yt[1], dy[1], dx[1];
    mlp::forward_lanes<T, 1>(sh, p, xt, h, yt);
    if (loss) {
      const T r = valid ? yt[0] - head[hs + n] : T(0);
      lane_loss += r * r;
      dy[0] = inv_n * (T(2) * r);
    } else {
      dy[0] = valid ? head[seed * d.N + n] : T(0);
    }
    mlp::backward_lanes<T, 1>(sh, p, xt, h, dy, g, gn, acc, gx ? dx : nullptr);
    if (gx && valid) gx[seed * d.N + n] = dx[0];
  }
  if (loss) {
    const T s = warp_sum(lane_loss);
    if (lane == 0) loss[seed] = d.N > 0 ? s * inv_n : T(0);  // 0 with no points
  }
}

const char* status() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace

template <typename T>
const char* mlp_forward(const mlp::Shape& sh, const MlpDims& d, const T* x, const T* params, T* y,
                        void* stream) {
  const int64_t total = d.S * d.N;
  if (total == 0) return nullptr;
  const unsigned blocks = static_cast<unsigned>((total + kForwardThreads - 1) / kForwardThreads);
  auto s = static_cast<cudaStream_t>(stream);
  if (sh.units <= kSmallUnits)
    forward_kernel<T, kSmallUnits><<<blocks, kForwardThreads, 0, s>>>(sh, d, x, params, y);
  else
    forward_kernel<T, kLargeUnits><<<blocks, kForwardThreads, 0, s>>>(sh, d, x, params, y);
  return status();
}

template <typename T>
const char* mlp_backward(const mlp::Shape& sh, const MlpDims& d, const T* x, const T* params,
                         const T* head, T* loss, T* gx, T* gparams, void* stream) {
  if (d.S == 0) return nullptr;
  const dim3 block(kWarp, kWarpsPerBlock);
  const unsigned grid = static_cast<unsigned>((d.S + kWarpsPerBlock - 1) / kWarpsPerBlock);
  auto s = static_cast<cudaStream_t>(stream);
  if (sh.units <= kSmallUnits)
    backward_kernel<T, kSmallUnits><<<grid, block, 0, s>>>(sh, d, x, params, head, loss, gx,
                                                           gparams);
  else
    backward_kernel<T, kLargeUnits><<<grid, block, 0, s>>>(sh, d, x, params, head, loss, gx,
                                                           gparams);
  return status();
}

template const char* mlp_forward<float>(const mlp::Shape&, const MlpDims&, const float*,
                                        const float*, float*, void*);
template const char* mlp_forward<double>(const mlp::Shape&, const MlpDims&, const double*,
                                         const double*, double*, void*);
template const char* mlp_backward<float>(const mlp::Shape&, const MlpDims&, const float*,
                                         const float*, const float*, float*, float*, float*,
                                         void*);
template const char* mlp_backward<double>(const mlp::Shape&, const MlpDims&, const double*,
                                          const double*, const double*, double*, double*,
                                          double*, void*);

}  // namespace cuda
}  // namespace cn
