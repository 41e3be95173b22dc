// CUDA kernels of the compositional network's ops, on the sweeps of compnet/math.h: only
// indexing and the warp reductions live here. One point per thread; the backward and the fused
// stage 1 give each seed a warp, whose gradients are reduced with the order-fixed warp_sum and
// added by lane 0 (no atomics: bitwise deterministic). Includes nothing from torch, so that nvcc
// compiles it without a CUDA build of torch.
#include <cuda_runtime.h>

#include "../common/adam.h"
#include "../common/launch.cuh"
#include "../common/mse.h"
#include "../common/warp.cuh"
#include "kernels.h"
#include "math.h"

namespace cn {
namespace cuda {
namespace {

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
      return loss_mode ? mse_grad(y, head_row[n], inv_n, lane_loss) : head_row[n];
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
                               head_in + (d.head_shared ? 0 : seed * d.N), loss != nullptr, a, s,
                               gp, gs, gx ? gx + seed * d.N : nullptr);
  if (lead) {
    if (loss) loss[seed] = mse_mean_by_reciprocal(sse, d.N);
    if (gp) {
      gp[D] = T(0);
      if (smooth) smooth_scales_backward_row(a, s, D, d.sign, gs, gp);
    }
  }
}

// Stage 1 fused: one warp per seed runs all epochs with its peaks, scales and their gradients in
// its workspace (train_workspace_values, placed by the TrainPlan). The Adam moments stay in
// `state` [S, 2, P] (row [peaks (D + 1) | free scales (D)]); Adam is element-wise, so the lanes
// share the row.
template <typename T>
__global__ void train_kernel(Dims d, AdamConfig cfg, const T* __restrict__ x,
                             const T* __restrict__ target, T* peaks, T* scales, T* loss,
                             T* curve, int64_t records, T* state, T* spill) {
  const int64_t seed = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (seed >= d.S) return;  // whole warp exits together
  const int D = d.D, lane = threadIdx.x;
  const bool lead = lane == 0, smooth = scales == nullptr;
  T* a = warp_workspace(spill, seed, train_workspace_values(D));
  T* ga = a + D + 1;
  T* s = ga + D + 1;
  T* gs = s + D;
  const int64_t P = D + 1 + (smooth ? 0 : D);
  T* m = state + seed * 2 * P;
  T* v = m + P;
  T* pk_row = peaks + seed * (D + 1);
  T* sc_row = smooth ? nullptr : scales + seed * D;
  warp_copy(a, pk_row, D + 1);
  if (!smooth) warp_copy(s, sc_row, D);
  const T* xrow = x + (d.x_shared ? 0 : seed * d.N);
  const T* trow = target + (d.head_shared ? 0 : seed * d.N);
  const T lo = T(cfg.peak_min), hi = T(cfg.peak_max), inf = T(INFINITY);
  auto pass = [&] {
    __syncwarp();  // the parameters are complete
    if (lead && smooth) smooth_scales_row(a, D, d.sign, s);
    __syncwarp();
    const T sse = warp_seed_pass(d, xrow, trow, true, a, s, ga, gs, static_cast<T*>(nullptr));
    if (lead) {
      ga[D] = T(0);
      if (smooth) smooth_scales_backward_row(a, s, D, d.sign, gs, ga);
    }
    __syncwarp();  // the gradient is complete
    return mse_mean_by_reciprocal(sse, d.N);
  };
  auto step = [&](const AdamStep<T>& adam) {
    adam.apply(a, ga, m, v, D + 1, lo, hi, lane, kWarp);
    if (!smooth) adam.apply(s, gs, m + D + 1, v + D + 1, D, -inf, inf, lane, kWarp);
  };
  const T l = train_epochs<T>(cfg, lead ? curve + seed * records : nullptr, pass, step);
  if (lead) loss[seed] = l;
  warp_copy(pk_row, a, D + 1);
  if (!smooth) warp_copy(sc_row, s, D);
}

}  // namespace

template <typename T>
const char* forward(const Dims& d, const T* x, const T* peaks, const T* scales, T* y,
                    void* stream) {
  if (d.S * d.N == 0) return nullptr;
  return launch(forward_kernel<T>, ceil_div(d.S * d.N, kForwardThreads), kForwardThreads, 0,
                stream, d, x, peaks, scales, y);
}

template <typename T>
const char* backward(const Dims& d, const T* x, const T* peaks, const T* scales, const T* head,
                     T* loss, T* gx, T* g_peaks, T* g_scales, T* scratch, void* stream) {
  if (d.S == 0 || d.N == 0) return nullptr;
  return launch(backward_kernel<T>, ceil_div(d.S, kWarpsPerBlock), dim3(kWarp, kWarpsPerBlock),
                0, stream, d, x, peaks, scales, head, loss, gx, g_peaks, g_scales, scratch);
}

template <typename T>
const char* train(const Dims& d, const AdamConfig& cfg, const TrainPlan& plan, const T* x,
                  const T* target, T* peaks, T* scales, T* loss, T* curve, int64_t records,
                  T* state, T* spill, void* stream) {
  if (d.S == 0) return nullptr;  // with N = 0 the steps still run (carried Adam moments)
  if (const char* err = check_spill(plan, spill)) return err;
  return launch(train_kernel<T>, ceil_div(d.S, plan.warps), dim3(kWarp, plan.warps),
                plan.smem_bytes, stream, d, cfg, x, target, peaks, scales, loss, curve, records,
                state, spill);
}

#define CN_INSTANTIATE(T)                                                                       \
  template const char* forward<T>(const Dims&, const T*, const T*, const T*, T*, void*);        \
  template const char* backward<T>(const Dims&, const T*, const T*, const T*, const T*, T*, T*, \
                                   T*, T*, T*, void*);                                          \
  template const char* train<T>(const Dims&, const AdamConfig&, const TrainPlan&, const T*,     \
                                const T*, T*, T*, T*, T*, int64_t, T*, T*, void*);
CN_INSTANTIATE(float)
CN_INSTANTIATE(double)

}  // namespace cuda
}  // namespace cn
