// CUDA drivers for the sweeps of compnet_math.h: only indexing and the warp reduction live here.
// Includes nothing from torch so that nvcc compiles it without a CUDA build of torch.
#include <cuda_runtime.h>

#include "../compnet_math.h"
#include "kernels.h"

namespace cn {
namespace cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;  // one warp per seed in the backward
constexpr int kForwardThreads = 256;

// Layers kept in registers per chunk of the reverse sweep.
template <typename T>
constexpr int kChunk = sizeof(T) == 4 ? 32 : 16;


template <typename T>
__global__ void forward_kernel(Dims d, const T* __restrict__ x, const T* __restrict__ a,
                               const T* __restrict__ s, T* __restrict__ y) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= d.S * d.N) return;
  const int64_t seed = k / d.N, n = k % d.N;
  const T xt[1] = {x[(d.x_shared ? 0 : seed * d.N) + n]};
  T yt[1];
  forward_lanes<T, 1>(xt, a + seed * (d.D + 1), s ? s + seed * d.D : nullptr, d.D, d.sign, yt);
  y[k] = yt[0];
}

// Butterfly sum: every lane ends with the same, order-fixed (deterministic) result.
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <typename T>
struct WarpAcc {
  T* ga;  // this seed's wave-gradient row [D] (nullptr: not needed)
  T* gs;  // this seed's scale-gradient row [D] (nullptr: not needed)
  T* gx;  // this point's dy/dx slot (nullptr: not needed or inactive lane)
  bool lead;
  __device__ void layer(int i, const T (&va)[1], const T (&vs)[1]) {
    if (ga) {
      const T v = warp_sum(va[0]);
      if (lead) ga[i] += v;
    }
    if (gs) {
      const T v = warp_sum(vs[0]);
      if (lead) gs[i] += v;
    }
  }
  __device__ void input(const T (&g)[1]) {
    if (gx) *gx = g[0];
  }
};

template <typename T>
__global__ void backward_kernel(Dims d, const T* __restrict__ x, const T* __restrict__ a_all,
                                const T* __restrict__ s_all, const T* __restrict__ head_in,
                                T* loss, T* gx, T* g_peaks, T* g_scales, T* scratch) {
  const int64_t seed = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (seed >= d.S) return;  // whole warp exits together
  const int lane = threadIdx.x, D = d.D;
  const bool lead = lane == 0;
  const bool smooth = s_all == nullptr;
  const T* a = a_all + seed * (D + 1);
  T* gp = g_peaks ? g_peaks + seed * (D + 1) : nullptr;
  // Scale gradients are needed for g_scales, or for the peaks through the smooth recurrence.
  T* gs = smooth ? (gp ? scratch + seed * 2 * D + D : nullptr) : (g_scales ? g_scales + seed * D : nullptr);
  const T* s = smooth ? scratch + seed * 2 * D : s_all + seed * D;
  if (lead) {
    if (smooth) smooth_scales_row(a, D, d.sign, scratch + seed * 2 * D);
    for (int i = 0; i <= D && gp; ++i) gp[i] = T(0);
    for (int i = 0; i < D && gs; ++i) gs[i] = T(0);
  }
  __syncwarp();

  const T* xrow = x + (d.x_shared ? 0 : seed * d.N);
  const T* hrow = head_in + (d.target_shared ? 0 : seed * d.N);
  const T inv_n = T(1) / T(d.N);
  T lane_loss = T(0);
  for (int64_t n0 = 0; n0 < d.N; n0 += kWarp) {  // uniform trip count: lanes stay in step
    const int64_t n = n0 + lane;
    const bool active = n < d.N;
    const T xt[1] = {active ? xrow[n] : T(0)};
    auto head = [&](int, T y) -> T {
      if (!active) return T(0);
      if (!loss) return hrow[n];
      const T diff = y - hrow[n];
      lane_loss += diff * diff;
      return inv_n * (T(2) * diff);
    };
    WarpAcc<T> acc{gp, gs, (gx && active) ? gx + seed * d.N + n : nullptr, lead};
    backward_lanes<T, 1, kChunk<T>>(xt, a, s, D, d.sign, head, acc);
  }
  if (loss) {
    const T total = warp_sum(lane_loss);
    if (lead) loss[seed] = total * inv_n;
  }
  __syncwarp();
  if (lead && gp && smooth) smooth_scales_backward_row(a, s, D, d.sign, gs, gp);
}

const char* last_error() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace

template <typename T>
const char* forward(const Dims& d, const T* x, const T* peaks, const T* scales, T* y,
                    void* stream) {
  const int64_t total = d.S * d.N;
  if (total == 0) return nullptr;
  const int64_t blocks = (total + kForwardThreads - 1) / kForwardThreads;
  forward_kernel<T><<<static_cast<unsigned>(blocks), kForwardThreads, 0,
                      static_cast<cudaStream_t>(stream)>>>(d, x, peaks, scales, y);
  return last_error();
}

template <typename T>
const char* backward(const Dims& d, const T* x, const T* peaks, const T* scales, const T* head,
                     T* loss, T* gx, T* g_peaks, T* g_scales, T* scratch, void* stream) {
  if (d.S == 0 || d.N == 0) return nullptr;
  const dim3 block(kWarp, kWarpsPerBlock);
  const int64_t blocks = (d.S + kWarpsPerBlock - 1) / kWarpsPerBlock;
  backward_kernel<T><<<static_cast<unsigned>(blocks), block, 0,
                       static_cast<cudaStream_t>(stream)>>>(d, x, peaks, scales, head, loss, gx,
                                                            g_peaks, g_scales, scratch);
  return last_error();
}

#define CN_INSTANTIATE(T)                                                                       \
  template const char* forward<T>(const Dims&, const T*, const T*, const T*, T*, void*);        \
  template const char* backward<T>(const Dims&, const T*, const T*, const T*, const T*, T*, T*, \
                                   T*, T*, T*, void*);
CN_INSTANTIATE(float)
CN_INSTANTIATE(double)

}  // namespace cuda
}  // namespace cn
