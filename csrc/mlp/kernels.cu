// CUDA kernels of the batched-MLP ops, on the per-point math of mlp/math.h: one point per thread;
// the backward and the fused stage 2 give each seed a warp, whose parameter gradients are reduced
// with the order-fixed warp_sum and added by lane 0 into the seed's row (no atomics: bitwise
// deterministic). Includes nothing from torch, so that nvcc compiles it without a CUDA build of
// torch.
#include <cuda_runtime.h>

#include <type_traits>

#include "../common/adam.h"
#include "../common/launch.cuh"
#include "../common/mse.h"
#include "../common/warp.cuh"
#include "kernels.h"
#include "math.h"

namespace cn {
namespace cuda {
namespace {

constexpr int kForwardThreads = 128;
// Per-thread activation buffer sizes (local memory): small nets get a small frame.
constexpr int kSmallUnits = 64;
constexpr int kLargeUnits = mlp::kMaxWidth * mlp::kMaxHidden;

// f(std::integral_constant<int, Units>) for the activation buffer that holds the net's units.
template <typename F>
const char* with_units(const mlp::Shape& sh, F&& f) {
  if (sh.units <= kSmallUnits) return f(std::integral_constant<int, kSmallUnits>());
  return f(std::integral_constant<int, kLargeUnits>());
}

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
struct WarpAcc {
  T* row;  // this seed's gradient row [P]
  bool lead;
  __device__ void add(int idx, const T* v) {
    const T s = warp_sum(v[0]);
    if (lead) row[idx] += s;
  }
};

// One warp, one seed with parameter row `p`: forward + backward over all N points; the
// parameter gradient is summed in a fixed order into `grad` [P] (zeroed here). With `loss_mode`,
// `head_row` is the target and the sum of squared errors is returned (to every lane); otherwise
// it is grad_y. gx_row [N] gets dLoss/dx per point (nullptr: not needed). `grad` is complete
// and visible to every lane on return.
template <typename T, int Units>
__device__ T warp_seed_pass(const mlp::Shape& sh, const MlpDims& d, const T* xrow,
                            const T* head_row, bool loss_mode, const T* p, T* grad, T* gx_row) {
  const int lane = threadIdx.x;
  for (int j = lane; j < sh.params; j += kWarp) grad[j] = T(0);
  __syncwarp();
  WarpAcc<T> acc{grad, lane == 0};
  T h[Units], g[mlp::kMaxWidth], gn[mlp::kMaxWidth];
  T lane_loss = 0;
  const T inv_n = T(1) / T(d.N);
  // every lane runs the same number of tiles (the warp sums need all 32 lanes)
  for (int64_t n0 = 0; n0 < d.N; n0 += kWarp) {
    const int64_t n = n0 + lane;
    const bool valid = n < d.N;
    const T xt[1] = {valid ? xrow[n] : T(0)};
    T yt[1], dy[1], dx[1];
    mlp::forward_lanes<T, 1>(sh, p, xt, h, yt);
    if (!valid)
      dy[0] = T(0);
    else
      dy[0] = loss_mode ? mse_grad(yt[0], head_row[n], inv_n, lane_loss) : head_row[n];
    mlp::backward_lanes<T, 1>(sh, p, xt, h, dy, g, gn, acc, gx_row ? dx : nullptr);
    if (gx_row && valid) gx_row[n] = dx[0];
  }
  const T sse = warp_sum(lane_loss);
  __syncwarp();
  return sse;
}

template <typename T, int Units>
__global__ void backward_kernel(const mlp::Shape sh, MlpDims d, const T* __restrict__ x,
                                const T* __restrict__ params, const T* __restrict__ head,
                                T* loss, T* gx, T* gparams) {
  const int64_t seed = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (seed >= d.S) return;  // the whole warp exits together
  const int64_t P = sh.params;
  const T* head_row = head + (loss && d.head_shared ? 0 : seed * d.N);
  const T sse = warp_seed_pass<T, Units>(sh, d, x + (d.x_shared ? 0 : seed * d.N), head_row,
                                         loss != nullptr, params + seed * P, gparams + seed * P,
                                         gx ? gx + seed * d.N : nullptr);
  if (loss && threadIdx.x == 0) loss[seed] = mse_mean_by_reciprocal(sse, d.N);
}

// Stage 2 fused: one warp per seed runs all epochs with its parameters and gradient in its
// workspace (mlp_train_workspace_values, placed by the TrainPlan). The Adam moments stay in
// `state` [S, 2, P]; Adam is element-wise, so the lanes share the row.
template <typename T, int Units>
__global__ void train_kernel(const mlp::Shape sh, MlpDims d, AdamConfig cfg,
                             const T* __restrict__ x, const T* __restrict__ target, T* params,
                             T* loss, T* curve, int64_t records, T* state, T* spill) {
  const int64_t seed = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (seed >= d.S) return;  // the whole warp exits together
  const int lane = threadIdx.x, P = sh.params;
  T* p = warp_workspace(spill, seed, mlp_train_workspace_values(sh));
  T* g = p + P;
  T* m = state + seed * 2 * P;
  T* v = m + P;
  T* row = params + seed * P;
  warp_copy(p, row, P);
  const T* xrow = x + (d.x_shared ? 0 : seed * d.N);
  const T* trow = target + (d.head_shared ? 0 : seed * d.N);
  const T inf = T(INFINITY);
  auto pass = [&] {
    __syncwarp();  // the parameters are complete
    return mse_mean_by_reciprocal(
        warp_seed_pass<T, Units>(sh, d, xrow, trow, true, p, g, static_cast<T*>(nullptr)), d.N);
  };
  auto step = [&](const AdamStep<T>& adam) { adam.apply(p, g, m, v, P, -inf, inf, lane, kWarp); };
  const T l = train_epochs<T>(cfg, lane == 0 ? curve + seed * records : nullptr, pass, step);
  if (lane == 0) loss[seed] = l;
  warp_copy(row, p, P);
}

}  // namespace

template <typename T>
const char* mlp_forward(const mlp::Shape& sh, const MlpDims& d, const T* x, const T* params, T* y,
                        void* stream) {
  if (d.S * d.N == 0) return nullptr;
  return with_units(sh, [&](auto units) {
    return launch(forward_kernel<T, decltype(units)::value>, ceil_div(d.S * d.N, kForwardThreads),
                  kForwardThreads, 0, stream, sh, d, x, params, y);
  });
}

template <typename T>
const char* mlp_backward(const mlp::Shape& sh, const MlpDims& d, const T* x, const T* params,
                         const T* head, T* loss, T* gx, T* gparams, void* stream) {
  if (d.S == 0) return nullptr;
  return with_units(sh, [&](auto units) {
    return launch(backward_kernel<T, decltype(units)::value>, ceil_div(d.S, kWarpsPerBlock),
                  dim3(kWarp, kWarpsPerBlock), 0, stream, sh, d, x, params, head, loss, gx,
                  gparams);
  });
}

template <typename T>
const char* mlp_train(const mlp::Shape& sh, const MlpDims& d, const AdamConfig& cfg,
                      const TrainPlan& plan, const T* x, const T* target, T* params, T* loss,
                      T* curve, int64_t records, T* state, T* spill, void* stream) {
  if (d.S == 0) return nullptr;  // with N = 0 the steps still run (carried Adam moments)
  if (const char* err = check_spill(plan, spill)) return err;
  return with_units(sh, [&](auto units) {
    return launch(train_kernel<T, decltype(units)::value>, ceil_div(d.S, plan.warps),
                  dim3(kWarp, plan.warps), plan.smem_bytes, stream, sh, d, cfg, x, target, params,
                  loss, curve, records, state, spill);
  });
}

#define CN_INSTANTIATE(T)                                                                    \
  template const char* mlp_forward<T>(const mlp::Shape&, const MlpDims&, const T*, const T*, \
                                      T*, void*);                                            \
  template const char* mlp_backward<T>(const mlp::Shape&, const MlpDims&, const T*, const T*, \
                                       const T*, T*, T*, T*, void*);                         \
  template const char* mlp_train<T>(const mlp::Shape&, const MlpDims&, const AdamConfig&,    \
                                    const TrainPlan&, const T*, const T*, T*, T*, T*, int64_t, \
                                    T*, T*, void*);
CN_INSTANTIATE(float)
CN_INSTANTIATE(double)

}  // namespace cuda
}  // namespace cn
