// CUDA drivers of the batched-MLP math of mlp_math.h: one point per thread; the backward runs one
// warp per seed so that parameter gradients are reduced with a fixed-order warp butterfly and
// added by lane 0 into the seed's row (no atomics: bitwise deterministic). The fused stage 2
// (train_kernel) runs the same per-seed pass (warp_seed_pass) every epoch, then Adam.
// Includes nothing from torch so that nvcc compiles it without a CUDA build of torch.
#include <cuda_runtime.h>

#include "mlp/math.h"
#include "mlp/kernels.h"
#include "common/warp.cuh"

namespace cn {
namespace cuda {
namespace {

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
struct WarpAcc {
  T* row;  // this seed's gradient row [P]
  bool lead;
  __device__ void add(int idx, const T* v) {
    const T s = warp_sum(v[0]);
    if (lead) row[idx] += s;
  }
};

// Mean of the squared errors, 0 with no points.
template <typename T>
__device__ __forceinline__ T mean_of(T sse, int64_t N) {
  return N > 0 ? sse * (T(1) / T(N)) : T(0);
}

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
    if (loss_mode) {
      const T r = valid ? yt[0] - head_row[n] : T(0);
      lane_loss += r * r;
      dy[0] = inv_n * (T(2) * r);
    } else {
      dy[0] = valid ? head_row[n] : T(0);
    }
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
  const int64_t seed = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (seed >= d.S) return;  // the whole warp exits together
  const int64_t P = sh.params;
  const T* head_row = head + (loss && d.head_shared ? 0 : seed * d.N);
  const T sse = warp_seed_pass<T, Units>(sh, d, x + (d.x_shared ? 0 : seed * d.N), head_row,
                                         loss != nullptr, params + seed * P, gparams + seed * P,
                                         gx ? gx + seed * d.N : nullptr);
  if (loss && threadIdx.x == 0) loss[seed] = mean_of(sse, d.N);
}

// Stage 2 fused: one warp per seed runs all epochs with its parameters and gradient in a 2P
// workspace: shared memory, or `spill` [S, 2P] in global memory when that does not fit. The Adam
// moments stay in `state` [S, 2, P] (each lane owns the same columns every epoch).
template <typename T, int Units>
__global__ void train_kernel(const mlp::Shape sh, MlpDims d, AdamConfig cfg,
                             const T* __restrict__ x, const T* __restrict__ target, T* params,
                             T* loss, T* curve, int64_t records, T* state, T* spill) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int64_t seed = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (seed >= d.S) return;
  const int lane = threadIdx.x, P = sh.params;
  T* ws = spill ? spill + seed * 2 * P : reinterpret_cast<T*>(smem_raw) + threadIdx.y * 2 * P;
  T *p = ws, *g = p + P;
  T* m = state + seed * 2 * P;
  T* v = m + P;
  T* row = params + seed * P;
  for (int j = lane; j < P; j += kWarp) p[j] = row[j];
  __syncwarp();
  const T* xrow = x + (d.x_shared ? 0 : seed * d.N);
  const T* trow = target + (d.head_shared ? 0 : seed * d.N);
  for (long long epoch = 0;; ++epoch) {
    const T l = mean_of(warp_seed_pass<T, Units>(sh, d, xrow, trow, true, p, g, nullptr), d.N);
    if (epoch == cfg.epochs) {  // the loss at the final parameters; no step
      if (lane == 0) loss[seed] = l;
      break;
    }
    if (lane == 0 && cfg.record_every > 0 && epoch % cfg.record_every == 0)
      curve[seed * records + epoch / cfg.record_every] = l;
    // Adam is element-wise: the lanes share the row.
    const AdamStep<T> step(cfg, cfg.step0 + epoch + 1);
    for (int j = lane; j < P; j += kWarp)
      step.apply(p + j, g + j, m + j, v + j, 1, T(-INFINITY), T(INFINITY));
    __syncwarp();
  }
  for (int j = lane; j < P; j += kWarp) row[j] = p[j];
}

const char* status() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

// Seeds per block and shared memory of the fused training kernel: four warps when their
// workspaces fit the default 48 KiB, else one warp with the device's opt-in shared memory, else
// four warps with the workspaces spilled to global memory.
struct TrainPlan {
  int warps;
  size_t smem;  // bytes per block (0: spilled)
};

template <typename T>
const char* train_plan(const mlp::Shape& sh, TrainPlan& plan) {
  const size_t per_warp = 2 * size_t(sh.params) * sizeof(T);
  if (4 * per_warp <= 48 * 1024) {
    plan = {4, 4 * per_warp};
    return nullptr;
  }
  int dev = 0, optin = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
    return status();
  plan = per_warp <= size_t(optin) ? TrainPlan{1, per_warp} : TrainPlan{4, 0};
  return nullptr;
}

template <typename T, int Units>
const char* launch_train(const mlp::Shape& sh, const MlpDims& d, const AdamConfig& cfg,
                         const TrainPlan& plan, const T* x, const T* target, T* params, T* loss,
                         T* curve, int64_t records, T* state, T* spill, cudaStream_t s) {
  if (plan.smem > 48 * 1024) {
    const cudaError_t e =
        cudaFuncSetAttribute(train_kernel<T, Units>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(plan.smem));
    if (e != cudaSuccess) return cudaGetErrorString(e);
  }
  const unsigned grid = static_cast<unsigned>((d.S + plan.warps - 1) / plan.warps);
  train_kernel<T, Units><<<grid, dim3(kWarp, plan.warps), plan.smem, s>>>(
      sh, d, cfg, x, target, params, loss, curve, records, state, spill);
  return status();
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

template <typename T>
const char* mlp_train_spill(const mlp::Shape& sh, int64_t S, int64_t* elements) {
  TrainPlan plan;
  const char* err = train_plan<T>(sh, plan);
  *elements = err == nullptr && plan.smem == 0 ? S * 2 * sh.params : 0;
  return err;
}

template <typename T>
const char* mlp_train(const mlp::Shape& sh, const MlpDims& d, const AdamConfig& cfg, const T* x,
                      const T* target, T* params, T* loss, T* curve, int64_t records, T* state,
                      T* spill, void* stream) {
  if (d.S == 0) return nullptr;  // with N = 0 the steps still run (carried Adam moments)
  TrainPlan plan;
  if (const char* err = train_plan<T>(sh, plan)) return err;
  if (plan.smem == 0 && spill == nullptr) return "mlp_train: missing spill workspace";
  if (plan.smem > 0) spill = nullptr;
  auto s = static_cast<cudaStream_t>(stream);
  if (sh.units <= kSmallUnits)
    return launch_train<T, kSmallUnits>(sh, d, cfg, plan, x, target, params, loss, curve, records,
                                        state, spill, s);
  return launch_train<T, kLargeUnits>(sh, d, cfg, plan, x, target, params, loss, curve, records,
                                      state, spill, s);
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
#define CN_INSTANTIATE_TRAIN(T)                                                                \
  template const char* mlp_train_spill<T>(const mlp::Shape&, int64_t, int64_t*);               \
  template const char* mlp_train<T>(const mlp::Shape&, const MlpDims&, const AdamConfig&,      \
                                    const T*, const T*, T*, T*, T*, int64_t, T*, T*, void*);
CN_INSTANTIATE_TRAIN(float)
CN_INSTANTIATE_TRAIN(double)

}  // namespace cuda
}  // namespace cn
