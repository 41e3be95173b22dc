// CUDA drivers for the sweeps of compnet_math.h: only indexing and the warp reduction live here.
// Includes nothing from torch so that nvcc compiles it without a CUDA build of torch.
#include <cuda_runtime.h>

#include "compnet/math.h"
#include "compnet/kernels.h"
#include "common/warp.cuh"

namespace cn {
namespace cuda {
namespace {

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

// One warp, one seed: forward + reverse sweep over all N points, gradients summed in a fixed
// order into ga/gs (zeroed here; either may be nullptr). With `loss_mode`, `head` is the target
// and the sum of squared errors is returned (to every lane); otherwise `head` is grad_y.
template <typename T>
__device__ T warp_seed_pass(const Dims& d, const T* xrow, const T* head_row, bool loss_mode,
                            const T* a, const T* s, T* ga, T* gs, T* gx_row) {
  const int lane = threadIdx.x;
  const bool lead = lane == 0;
  if (lead) {
    for (int i = 0; ga && i < d.D; ++i) ga[i] = T(0);
    for (int i = 0; gs && i < d.D; ++i) gs[i] = T(0);
  }
  __syncwarp();
  const T inv_n = T(1) / T(d.N);
  T lane_loss = T(0);
  for (int64_t n0 = 0; n0 < d.N; n0 += kWarp) {  // uniform trip count: lanes stay in step
    const int64_t n = n0 + lane;
    const bool active = n < d.N;
    const T xt[1] = {active ? xrow[n] : T(0)};
    auto head = [&](int, T y) -> T {
      if (!active) return T(0);
      if (!loss_mode) return head_row[n];
      const T diff = y - head_row[n];
      lane_loss += diff * diff;
      return inv_n * (T(2) * diff);
    };
    WarpAcc<T> acc{ga, gs, (gx_row && active) ? gx_row + n : nullptr, lead};
    backward_lanes<T, 1, kChunk<T>>(xt, a, s, d.D, d.sign, head, acc);
  }
  const T total = warp_sum(lane_loss);
  __syncwarp();
  return total;
}

template <typename T>
__global__ void backward_kernel(Dims d, const T* __restrict__ x, const T* __restrict__ a_all,
                                const T* __restrict__ s_all, const T* __restrict__ head_in,
                                T* loss, T* gx, T* g_peaks, T* g_scales, T* scratch) {
  const int64_t seed = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (seed >= d.S) return;  // whole warp exits together
  const int D = d.D;
  const bool lead = threadIdx.x == 0, smooth = s_all == nullptr;
  const T* a = a_all + seed * (D + 1);
  T* gp = g_peaks ? g_peaks + seed * (D + 1) : nullptr;
  // Scale gradients are needed for g_scales, or for the peaks through the smooth recurrence.
  T* gs = smooth ? (gp ? scratch + seed * 2 * D + D : nullptr)
                 : (g_scales ? g_scales + seed * D : nullptr);
  const T* s = smooth ? scratch + seed * 2 * D : s_all + seed * D;
  if (lead && smooth) smooth_scales_row(a, D, d.sign, scratch + seed * 2 * D);
  __syncwarp();
  const T sse = warp_seed_pass(d, x + (d.x_shared ? 0 : seed * d.N),
                               head_in + (d.target_shared ? 0 : seed * d.N), loss != nullptr, a,
                               s, gp, gs, gx ? gx + seed * d.N : nullptr);
  if (lead) {
    if (loss) loss[seed] = sse * (T(1) / T(d.N));
    if (gp) {
      gp[D] = T(0);
      if (smooth) smooth_scales_backward_row(a, s, D, d.sign, gs, gp);
    }
  }
}

// Stage 1 fused: one warp per seed runs all epochs with its parameters and gradients in shared
// memory (per warp 4D + 2 values, see train()); the Adam moments stay in `state` [S, 2, P]
// (row [peaks (D + 1) | free scales (D)]), touched once per epoch by the lead lane.
template <typename T>
__global__ void train_kernel(Dims d, AdamConfig cfg, const T* __restrict__ x,
                             const T* __restrict__ target, T* peaks, T* scales, T* loss,
                             T* curve, int64_t records, T* state, int64_t P) {
  extern __shared__ unsigned char smem_raw[];
  const int64_t seed = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (seed >= d.S) return;
  const int D = d.D;
  const bool lead = threadIdx.x == 0, smooth = scales == nullptr;
  T* base = reinterpret_cast<T*>(smem_raw) + threadIdx.y * (4 * D + 2);
  T *a = base, *ga = a + D + 1;   // peaks and their gradient: D + 1 each
  T *s = ga + D + 1, *gs = s + D;  // scales and their gradient: D each
  T* m = state + seed * 2 * P;
  T* v = m + P;
  T* pk_row = peaks + seed * (D + 1);
  T* sc_row = smooth ? nullptr : scales + seed * D;
  if (lead) {
    for (int i = 0; i <= D; ++i) a[i] = pk_row[i];
    for (int i = 0; i < D; ++i) s[i] = smooth ? T(0) : sc_row[i];
  }
  const T* xrow = x + (d.x_shared ? 0 : seed * d.N);
  const T* trow = target + (d.target_shared ? 0 : seed * d.N);
  for (long long epoch = 0; epoch <= cfg.epochs; ++epoch) {
    if (lead && smooth) smooth_scales_row(a, D, d.sign, s);
    __syncwarp();
    const T sse = warp_seed_pass(d, xrow, trow, true, a, s, ga, gs, static_cast<T*>(nullptr));
    if (lead) {
      const T l = d.N > 0 ? sse * (T(1) / T(d.N)) : T(0);
      if (epoch == cfg.epochs) {
        loss[seed] = l;
      } else {
        if (cfg.record_every > 0 && epoch % cfg.record_every == 0)
          curve[seed * records + epoch / cfg.record_every] = l;
        ga[D] = T(0);
        if (smooth) smooth_scales_backward_row(a, s, D, d.sign, gs, ga);
        const AdamStep<T> step(cfg, cfg.step0 + epoch + 1);
        step.apply(a, ga, m, v, D + 1, T(cfg.peak_min), T(cfg.peak_max));
        if (!smooth) step.apply(s, gs, m + D + 1, v + D + 1, D, T(-INFINITY), T(INFINITY));
      }
    }
    __syncwarp();
  }
  if (lead) {
    for (int i = 0; i <= D; ++i) pk_row[i] = a[i];
    for (int i = 0; sc_row && i < D; ++i) sc_row[i] = s[i];
  }
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

template <typename T>
const char* train(const Dims& d, const AdamConfig& cfg, const T* x, const T* target, T* peaks,
                  T* scales, T* loss, T* curve, int64_t records, T* state, void* stream) {
  if (d.S == 0) return nullptr;  // with N = 0 the steps still run (carried Adam moments)
  const size_t per_warp = (4 * size_t(d.D) + 2) * sizeof(T);
  // Four warps (seeds) per block when they fit the default 48 KiB, else one per block with the
  // opt-in shared memory of the device.
  const int warps = 4 * per_warp <= 48 * 1024 ? 4 : 1;
  const size_t bytes = warps * per_warp;
  if (bytes > 48 * 1024) {
    int dev = 0, optin = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (bytes > size_t(optin))
      return "depth too large for the fused stage's shared memory (use the step-by-step path)";
    const cudaError_t e = cudaFuncSetAttribute(
        train_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
    if (e != cudaSuccess) return cudaGetErrorString(e);
  }
  const int64_t blocks = (d.S + warps - 1) / warps;
  train_kernel<T><<<static_cast<unsigned>(blocks), dim3(kWarp, warps), bytes,
                    static_cast<cudaStream_t>(stream)>>>(d, cfg, x, target, peaks, scales, loss,
                                                         curve, records, state,
                                                         d.D + 1 + (scales ? d.D : 0));
  return last_error();
}

#define CN_INSTANTIATE(T)                                                                       \
  template const char* forward<T>(const Dims&, const T*, const T*, const T*, T*, void*);        \
  template const char* backward<T>(const Dims&, const T*, const T*, const T*, const T*, T*, T*, \
                                   T*, T*, T*, void*);                                          \
  template const char* train<T>(const Dims&, const AdamConfig&, const T*, const T*, T*, T*, T*, \
                                T*, int64_t, T*, void*);
CN_INSTANTIATE(float)
CN_INSTANTIATE(double)

}  // namespace cuda
}  // namespace cn
