// CUDA kernels of the batched-MLP ops, on the per-point math of mlp/math.h: one point per
// thread. The backward and the fused stage 2 give each seed W = mlp_warps_per_seed warps
// (common/launch_config.h); warp w takes the seed's tiles of 32 points w, w + W, .... Small nets
// (mlp_lane_sums, the paper's among them) sum each parameter's gradient per lane over all of the
// warp's points and reduce once per seed, in a fixed order (transposing warp butterflies, then
// the warps' rows in warp order: seed_sum); larger nets warp-reduce every 32 points, lane 0
// adding into the seed's row. No atomics: bitwise deterministic, the same bits on every GPU.
// Includes nothing from torch, so that nvcc compiles it without a CUDA build of torch.
#include <cuda_runtime.h>

#include <type_traits>
#include <utility>

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
constexpr int kSmallUnits = kLaneSumUnits;
constexpr int kLargeUnits = mlp::kMaxWidth * mlp::kMaxHidden;
// Threads per block at most (one seed of mlp_max_warps warps): the bound ptxas compiles for.
template <typename Sh>
constexpr int kMaxThreads = kWarp * (std::is_same_v<Sh, mlp::Shape> ? kMaxWarpsPerSeed
                                                                    : kFixedShapeMaxWarps);

// The paper's 4 x 5 net, compiled with its shape as a constant (registers, no stack frame;
// kernels.h: mlp_paper_shape).
using PaperShape = mlp::FixedShape<4, 5>;

// The shape a kernel instantiated for `Sh` works with: the runtime one (by reference: a copy of
// its 1 KB of offsets would land in the stack frame), or the constant one.
template <typename Sh>
__device__ __forceinline__ decltype(auto) shape_of(const mlp::Shape& sh) {
  if constexpr (std::is_same_v<Sh, mlp::Shape>)
    return (sh);
  else
    return Sh();
}

template <int V>
using Int = std::integral_constant<int, V>;

// f(Sh, Units) for the forward: the paper's shape as a constant, else the runtime shape with an
// activation buffer that holds the net's units.
template <typename F>
const char* with_units(const mlp::Shape& sh, F&& f) {
  if (mlp_paper_shape(sh)) return f(PaperShape(), Int<PaperShape::units>());
  if (sh.units <= kSmallUnits) return f(mlp::Shape(), Int<kSmallUnits>());
  return f(mlp::Shape(), Int<kLargeUnits>());
}

// f(Sh, Units, Sums) for the backward kernels: the shape (as in with_units), the activation
// buffer and the per-lane gradient sums (0: none, reduce every 32 points), as mlp_lane_sums
// decides.
template <typename T, typename F>
const char* with_buffers(const mlp::Shape& sh, F&& f) {
  if (mlp_paper_shape(sh))
    return f(PaperShape(), Int<PaperShape::units>(), Int<PaperShape::params>());
  if (mlp_lane_sums(sh)) return f(mlp::Shape(), Int<kSmallUnits>(), Int<kLaneSumParams>());
  return f(mlp::Shape(), Int<kLargeUnits>(), Int<0>());
}

// Lane sums one sweep of a seed's points holds in registers, of a constant shape's Sums: all of
// them in float (the paper's 93 beside its 20 activations: 238-246 registers, no frame). In
// double, 32 per sweep, the sweep repeated for the next 32 (three for the paper's net). ptxas
// hoists the parameters' loads out of the point loop, so that the 93 sums in double spilled
// 1.2 KB at the 255-register cap, 64 per sweep ~0.6 KB; with 32 the frame is 256 B, written
// before each point loop and only read in it (76 loads per point over the three sweeps), where
// the runtime shape reads and writes every sum and activation in a 2.8 KB frame. Each sweep
// redoes the forward and backward arithmetic; every sum's order is unchanged.
template <typename T, typename Sh, int Sums>
constexpr int kSumsPerSweep =
    std::is_same_v<Sh, mlp::Shape> || sizeof(T) == sizeof(float) ? Sums : kWarp;

template <typename T, typename Sh, int Units>
__global__ void forward_kernel(const mlp::Shape sh, MlpDims d, const T* __restrict__ x,
                               const T* __restrict__ params, T* __restrict__ y) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= d.S * d.N) return;
  const int64_t seed = k / d.N, n = k % d.N;
  T h[Units];
  const T xt[1] = {x[(d.x_shared ? 0 : seed * d.N) + n]};
  T yt[1];
  mlp::forward_lanes<T, 1>(shape_of<Sh>(sh), params + seed * sh.params, xt, h, yt);
  y[k] = yt[0];
}

// A lane's gradient sums over its points of the parameters Lo .. Lo + Span (local memory when
// indexed at run time); `add` ignores the others (a constant test with a constant shape).
template <typename T, int Span, int Lo, bool All>
struct LaneSums {
  T v[Span];
  __device__ void add(int idx, const T* x) {
    if (All || (idx >= Lo && idx < Lo + Span)) v[idx - Lo] += x[0];
  }
};

template <typename F, int... K>
__device__ __forceinline__ void each_index(F&& f, std::integer_sequence<int, K...>) {
  (f(Int<K>()), ...);
}

// Large nets: each point's terms warp-reduced at once, lane 0 adding into the seed's row.
template <typename T>
struct WarpAcc {
  T* row;  // this seed's gradient row [P]
  bool lead;
  __device__ void add(int idx, const T* v) {
    const T s = warp_sum(v[0]);
    if (lead) row[idx] += s;
  }
};

// One seed with parameter row `p` on the block's W warps: forward + backward over its N points;
// the parameter gradient is summed in a fixed order into `grad` [P] (overwritten). With
// `loss_mode`, `head_row` is the target and the sum of squared errors is returned to the seed's
// thread 0 (at least); otherwise it is grad_y. gx_row [N] gets dLoss/dx per point (nullptr: not
// needed). `part` is the seed's reduction area (Sums > 0). `grad` is complete and visible to
// the seed's threads on return.
template <typename T, typename Sh, int Units, int Sums>
__device__ __forceinline__ T seed_pass(const mlp::Shape& shape, const MlpDims& d, const T* xrow,
                                       const T* head_row, bool loss_mode, const T* p, T* grad,
                                       T* gx_row, T* part) {
  const auto& sh = shape_of<Sh>(shape);
  // unroll the loops over the parameters only for a constant shape (a runtime one keeps them
  // rolled: unrolled, the lane sums' copies grew the stack frame)
  constexpr int unroll = std::is_same_v<Sh, mlp::Shape> ? 1 : Sums;
  const int lane = threadIdx.x, w = threadIdx.y, W = blockDim.y, P = sh.params;
  T h[Units], g[mlp::kMaxWidth], gn[mlp::kMaxWidth];
  T lane_loss = 0;
  const T inv_n = T(1) / T(d.N);
  // One sweep of the warp's points into `acc`. Only the first sweep (`first`) counts the loss
  // and writes dx; a later one (double, the paper's shape: kSumsPerSweep) redoes the same
  // arithmetic for other parameters' sums.
  auto tiles = [&](auto& acc, auto first) {
    constexpr bool is_first = decltype(first)::value;
    T other_loss = 0;
    T& sse = is_first ? lane_loss : other_loss;
    // every lane of a warp runs the same number of tiles (WarpAcc's sums need all 32 lanes)
    for (int64_t n = int64_t(w) * kWarp + lane; n - lane < d.N; n += int64_t(W) * kWarp) {
      const bool valid = n < d.N;
      const T xt[1] = {valid ? xrow[n] : T(0)};
      T yt[1], dy[1], dx[1];
      mlp::forward_lanes<T, 1>(sh, p, xt, h, yt);
      if (!valid)
        dy[0] = T(0);
      else
        dy[0] = loss_mode ? mse_grad(yt[0], head_row[n], inv_n, sse) : head_row[n];
      // dx always (one more dot product of the first layer): selecting nullptr would take dx's
      // address and put it in the stack frame
      mlp::backward_lanes<T, 1>(sh, p, xt, h, dy, g, gn, acc, dx);
      if (is_first && gx_row && valid) gx_row[n] = dx[0];
    }
  };
  if constexpr (Sums > 0) {
    constexpr int span = kSumsPerSweep<T, Sh, Sums>;
    static_assert(span == Sums || span % kWarp == 0, "a sweep's sums are whole groups of 32");
    return seed_sum(
        part, P,
        [&](T* row) {
          each_index(
              [&](auto sweep) {
                constexpr int lo = decltype(sweep)::value * span;
                LaneSums<T, span, lo, span == Sums> acc;
#pragma unroll unroll
                for (int j = 0; j < span && lo + j < P; ++j) acc.v[j] = T(0);
                tiles(acc, std::bool_constant<lo == 0>());
#pragma unroll unroll
                for (int g0 = lo; g0 < P && g0 < lo + span; g0 += kWarp) {
                  T v[kWarp];
#pragma unroll
                  for (int k = 0; k < kWarp; ++k)
                    v[k] = g0 + k < P ? acc.v[g0 - lo + k] : T(0);
                  const T sum = warp_transpose_sum<0, kWarp>(v);
                  if (g0 + lane < P) row[g0 + lane] = sum;
                }
              },
              std::make_integer_sequence<int, (Sums + span - 1) / span>());
          return warp_sum(lane_loss);
        },
        [&](int t, T total) { grad[t] = total; });
  } else {
    for (int j = lane; j < P; j += kWarp) grad[j] = T(0);
    __syncwarp();
    WarpAcc<T> acc{grad, lane == 0};
    tiles(acc, std::true_type());
    const T sse = warp_sum(lane_loss);
    __syncwarp();
    return sse;
  }
}

template <typename T, typename Sh, int Units, int Sums>
__global__ void __launch_bounds__(kMaxThreads<Sh>)
    backward_kernel(const mlp::Shape sh, MlpDims d, const T* __restrict__ x,
                    const T* __restrict__ params, const T* __restrict__ head, T* loss, T* gx,
                    T* gparams) {
  const int64_t seed = static_cast<int64_t>(blockIdx.x) * blockDim.z + threadIdx.z;
  // The seed's threads exit together; a block holds seeds past S only when seeds have one warp,
  // and those meet only at __syncwarp.
  if (seed >= d.S) return;
  const int64_t P = sh.params;
  const T* head_row = head + (d.head_shared ? 0 : seed * d.N);
  const T sse = seed_pass<T, Sh, Units, Sums>(
      sh, d, x + (d.x_shared ? 0 : seed * d.N), head_row, loss != nullptr, params + seed * P,
      gparams + seed * P, gx ? gx + seed * d.N : nullptr,
      seed_reduction_area<T>(true, 0, mlp_reduction_values(sh)));
  if (loss && seed_thread() == 0) loss[seed] = mse_mean_by_reciprocal(sse, d.N);
}

// Stage 2 fused: each seed's W warps run all epochs with its parameters and gradient in its
// workspace (mlp_train_workspace_values, placed by the TrainPlan). The Adam moments stay in
// `state` [S, 2, P]; Adam is element-wise, so the seed's threads share the row.
template <typename T, typename Sh, int Units, int Sums>
__global__ void __launch_bounds__(kMaxThreads<Sh>)
    train_kernel(const mlp::Shape sh, MlpDims d, AdamConfig cfg, const T* __restrict__ x,
                 const T* __restrict__ target, T* params, T* loss, T* curve, int64_t records,
                 T* state, T* spill) {
  const int64_t seed = static_cast<int64_t>(blockIdx.x) * blockDim.z + threadIdx.z;
  if (seed >= d.S) return;  // as in backward_kernel
  const int W = blockDim.y, t = seed_thread(), nt = W * kWarp, P = sh.params;
  const int64_t ws = mlp_train_workspace_values(sh);
  T* p = seed_workspace(spill, seed, ws);
  T* g = p + P;
  T* part = seed_reduction_area<T>(spill != nullptr, ws, mlp_reduction_values(sh));
  T* m = state + seed * 2 * P;
  T* v = m + P;
  T* row = params + seed * P;
  seed_copy(p, row, P);
  const T* xrow = x + (d.x_shared ? 0 : seed * d.N);
  const T* trow = target + (d.head_shared ? 0 : seed * d.N);
  const T inf = T(INFINITY);
  auto pass = [&] {
    seed_sync(W);  // the parameters are complete
    const T sse = seed_pass<T, Sh, Units, Sums>(sh, d, xrow, trow, true, p, g,
                                            static_cast<T*>(nullptr), part);
    return mse_mean_by_reciprocal(sse, d.N);  // the loss on the lead thread (which records it)
  };
  auto step = [&](const AdamStep<T>& adam) { adam.apply(p, g, m, v, P, -inf, inf, t, nt); };
  const T l = train_epochs<T>(cfg, t == 0 ? curve + seed * records : nullptr, pass, step);
  if (t == 0) loss[seed] = l;
  seed_copy(row, p, P);  // each thread copies back the entries its Adam steps wrote
}

}  // namespace

template <typename T>
const char* mlp_forward(const mlp::Shape& sh, const MlpDims& d, const T* x, const T* params, T* y,
                        void* stream) {
  if (d.S * d.N == 0) return nullptr;
  return with_units(sh, [&](auto shape, auto units) {
    return launch(forward_kernel<T, decltype(shape), decltype(units)::value>, ceil_div(d.S * d.N, kForwardThreads),
                  kForwardThreads, 0, stream, sh, d, x, params, y);
  });
}

template <typename T>
const char* mlp_backward(const mlp::Shape& sh, const MlpDims& d, const T* x, const T* params,
                         const T* head, T* loss, T* gx, T* gparams, void* stream) {
  if (d.S == 0) return nullptr;
  const int W = mlp_warps_per_seed(sh, d.S, d.N), G = seeds_per_block(W);
  const size_t smem = size_t(G) * W * mlp_reduction_values(sh) * sizeof(T);
  return with_buffers<T>(sh, [&](auto shape, auto units, auto sums) {
    return launch(backward_kernel<T, decltype(shape), decltype(units)::value, decltype(sums)::value>,
                  ceil_div(d.S, G), dim3(kWarp, W, G), smem, stream, sh, d, x, params, head,
                  loss, gx, gparams);
  });
}

template <typename T>
const char* mlp_train(const mlp::Shape& sh, const MlpDims& d, const AdamConfig& cfg,
                      const TrainPlan& plan, const T* x, const T* target, T* params, T* loss,
                      T* curve, int64_t records, T* state, T* spill, void* stream) {
  if (d.S == 0) return nullptr;  // with N = 0 the steps still run (carried Adam moments)
  if (const char* err = check_spill(plan, spill)) return err;
  if (plan.warps != mlp_warps_per_seed(sh, d.S, d.N)) return "the plan's warps per seed do not match";
  return with_buffers<T>(sh, [&](auto shape, auto units, auto sums) {
    return launch(train_kernel<T, decltype(shape), decltype(units)::value, decltype(sums)::value>,
                  ceil_div(d.S, plan.seeds), dim3(kWarp, plan.warps, plan.seeds), plan.smem_bytes,
                  stream, sh, d, cfg, x, target, params, loss, curve, records, state, spill);
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
