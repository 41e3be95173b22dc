// CUDA kernels of the compositional network's ops, on the sweeps of compnet/math.h: only
// indexing and the reductions live here. The forward runs one point per thread. The backward and
// the fused stage 1 give each seed W = sweep_warps_per_seed warps (kernels.h); warp w takes the
// seed's tiles of 32 x sweep_lane_points points w, w + W, ...; each lane sums its points'
// gradient terms in registers, and each chunk of layers is reduced once per seed, in a fixed
// order (a transposing warp butterfly, then the warps' rows in warp order: seed_sum). No
// atomics: bitwise deterministic, and the same bits on every GPU (W does not depend on the
// device). Includes nothing from torch, so that nvcc compiles it without a CUDA build of torch.
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

constexpr int kForwardThreads = 256;

// f(std::integral_constant<int, C>) with C = sweep_chunk(D, sizeof(T)) (kernels.h), the layers
// the sweeping kernels keep in registers per chunk: a compile-time size, so that the unrolled
// chunk loops and the lane sums stay in registers, and a shallow net does not carry (and guard)
// the registers of the deepest chunk.
template <typename T, int C = kMinChunk, typename F>
const char* with_chunk(int D, F&& f) {
  if constexpr (C < chunk_layers(sizeof(T))) {
    if (sweep_chunk(D, sizeof(T)) != C) return with_chunk<T, 2 * C>(D, f);
  }
  return f(std::integral_constant<int, C>());
}

// f(std::bool_constant<FULL>): whether the sweeps run one chunk of C layers, which the compiler
// then knows (compnet/math.h: backward_chunk's FULL), or several (EVEN). Either way the net is
// padded to whole chunks (kernels.h: table_depth) and no step is guarded.
template <typename T, int C, typename F>
const char* with_full_chunk(int D, F&& f) {
  if constexpr (C < chunk_layers(sizeof(T))) {
    return f(std::true_type());
  } else {
    if (D <= C) return f(std::true_type());
    return f(std::false_type());
  }
}

// The depth the sweeps of C-layer chunks run for a net of D layers (kernels.h: table_depth), a
// compile-time C where the net is one chunk.
template <typename T, int C, bool FULL>
__device__ __forceinline__ int sweep_depth(int D) {
  return FULL ? C : table_depth(D, sizeof(T));
}

// f(std::integral_constant<int, L>) with L = `lanes` (kernels.h: sweep_lane_points), the points
// a lane sweeps at a time; only 1 is instantiated where the chunk C allows no more.
template <typename T, int C, typename F>
const char* with_lane_points(int lanes, F&& f) {
  if constexpr (max_lane_points(C, sizeof(T)) == 2) {
    if (lanes == 2) return f(std::integral_constant<int, 2>());
  }
  return f(std::integral_constant<int, 1>());
}

// Seeds a forward block's points can span (N points per seed, kForwardThreads per block), and
// the shared memory of their tables (Tri per layer, the signed scales row), when that fits the
// default.
CN_HD int64_t forward_block_seeds(int64_t N) { return (kForwardThreads - 1) / N + 2; }
template <typename T>
size_t forward_table_bytes(const Dims& d) {
  return size_t(forward_block_seeds(d.N)) * (d.D * sizeof(Tri<T>) + (d.D + 1) * sizeof(T));
}

// One point per thread. TABLE: the block first fills, in shared memory, the tables of the seeds
// its points span (one reciprocal pair per layer and seed rather than per point and layer; the
// smooth scales' recurrence once per seed); the same IEEE values, so the same bits. Else, where
// the tables would not fit, each thread constructs them.
template <typename T, bool TABLE>
__global__ void forward_kernel(Dims d, const T* __restrict__ x, const T* __restrict__ a,
                               const T* __restrict__ s, T* __restrict__ y) {
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x;
  const int64_t k = first + threadIdx.x;
  const int64_t seed = k / d.N, n = k % d.N, seed0 = first / d.N;
  const int D = d.D;
  Tri<T>* table = reinterpret_cast<Tri<T>*>(dynamic_shared_memory());
  T* scales = reinterpret_cast<T*>(table + forward_block_seeds(d.N) * D);  // rows of D + 1
  if constexpr (TABLE) {
    const int64_t end = first + blockDim.x < d.S * d.N ? first + blockDim.x : d.S * d.N;
    const int64_t seeds = (end - 1) / d.N - seed0 + 1;
    for (int64_t e = threadIdx.x; e < seeds * D; e += blockDim.x)
      table[e] = Tri<T>(a[(seed0 + e / D) * (D + 1) + e % D]);
    for (int64_t j = threadIdx.x; j < seeds; j += blockDim.x)
      signed_scales_row(a + (seed0 + j) * (D + 1), s ? s + (seed0 + j) * D : nullptr, D, d.sign,
                        scales + j * (D + 1));
    __syncthreads();
  }
  if (k >= d.S * d.N) return;
  const T xt[1] = {x[(d.x_shared ? 0 : seed * d.N) + n]};
  T yt[1];
  if constexpr (TABLE) {
    const Tri<T>* t = table + (seed - seed0) * D;
    const T* sp = scales + (seed - seed0) * (D + 1);
    const TriTable<T> layers{t, sp, t, sp};
    forward_lanes<T, 1>(xt, layers, D, yt);
  } else {
    const PeakLayers<T> layers{a + seed * (D + 1), s ? s + seed * D : nullptr, d.sign};
    if (s)
      forward_lanes<T, 1>(xt, layers, D, yt);
    else
      forward_lanes<T, 1, true>(xt, layers, D, yt);
  }
  y[k] = yt[0];
}

// Threads per block at most (one seed of sweep_max_warps warps): the kernels that sum over a
// seed's points are compiled for it, so that such a block fits the register file.
template <typename T>
constexpr int kMaxThreads = kWarp * sweep_max_warps(sizeof(T));

// A lane's sums of the chunk's layers over its points (backward_chunk's terms, before
// peak_grad and scale_grad): registers, since backward_chunk's unrolled loops index them with
// compile-time j. A layer's terms of the lane's L points are added in point order.
template <typename T, int C, int L>
struct LaneAcc {
  T v[2 * C];  // [peaks' sums of the chunk's layers | scales']
  T* gx[L];    // the points' dy/dx slots (nullptr: not needed or inactive point)
  __device__ void layer(int, int j, const T (&ldu)[L], const T (&w)[L], const T (&gy)[L]) {
#pragma unroll
    for (int l = 0; l < L; ++l) {
      v[j] = madd(ldu[l], w[l], v[j]);
      v[C + j] = madd(gy[l], w[l], v[C + j]);
    }
  }
  __device__ void input(const T (&g)[L]) {
#pragma unroll
    for (int l = 0; l < L; ++l)
      if (gx[l]) *gx[l] = g[l];
  }
};

// One seed on the block's W warps: forward + reverse sweep over its N points, chunk by chunk from
// the top (backward_chunk; between chunks each point's gy and lambda wait in `carry` [2, N]), one
// fixed-order reduction per chunk into ga/gs (written, not added; either may be nullptr). A lane
// sweeps L points at a time (kernels.h: sweep_lane_points), 32 apart: warp w takes the tiles of
// 32 L points w, w + W, ... With `loss_mode`, `head_row` is the target and the sum of squared
// errors is returned to the seed's thread 0 (others get 0); otherwise `head_row` is grad_y.
// `layers` are the seed's tables, `part` its reduction area. Every thread of the seed calls it;
// it ends with them met.
template <typename T, int C, int L, bool FULL>
__device__ __forceinline__ T seed_pass(const Dims& d, const T* xrow, const T* head_row,
                                       bool loss_mode, const TriTable<T>& layers, T* ga, T* gs,
                                       T* gx_row, T* carry, T* part) {
  const int lane = threadIdx.x, w = threadIdx.y, W = blockDim.y, D = d.D;
  // sweep_chunk: D > C only in the largest chunk, and never FULL (with_full_chunk). Dt is
  // sweep_depth: written from `chunks`, which ptxas allocates better for in the several-chunk
  // trainer (26 local operations in its point loop against 32)
  const int chunks = FULL ? 1 : backward_chunks(D, C), Dt = FULL ? C : chunks * C;
  const T inv_n = T(1) / T(d.N);
  T sse = T(0);
  for (int c = chunks - 1; c >= 0; --c) {
    const bool top = c == chunks - 1;
    LaneAcc<T, C, L> acc;
#pragma unroll
    for (int k = 0; k < 2 * C; ++k) acc.v[k] = T(0);
    T lane_loss = T(0);
    for (int64_t n0 = int64_t(w) * L * kWarp + lane; n0 - lane < d.N;
         n0 += int64_t(W) * L * kWarp) {
      T xt[L], gy[L], lam[L];
      int64_t n[L];
      bool active[L];
#pragma unroll
      for (int l = 0; l < L; ++l) {
        n[l] = n0 + l * kWarp;
        active[l] = n[l] < d.N;
        xt[l] = active[l] ? xrow[n[l]] : T(0);
        gy[l] = T(0);
        lam[l] = T(0);
        if (!top && active[l]) {
          gy[l] = carry[n[l]];
          lam[l] = carry[d.N + n[l]];
        }
        acc.gx[l] = (gx_row && active[l]) ? gx_row + n[l] : nullptr;
      }
      auto head = [&](int l, T y) -> T {
        if (!active[l]) return T(0);
        return loss_mode ? mse_grad(y, head_row[n[l]], inv_n, lane_loss) : head_row[n[l]];
      };
      if (FULL || top)
        backward_chunk<T, L, C, true, FULL, !FULL>(xt, layers, Dt, c, head, acc, gy, lam);
      else
        backward_chunk<T, L, C, false, FULL, !FULL>(xt, layers, Dt, c, head, acc, gy, lam);
#pragma unroll
      for (int l = 0; l < L; ++l) {
        if (c > 0 && active[l]) {
          carry[n[l]] = gy[l];
          carry[d.N + n[l]] = lam[l];
        }
      }
    }
    const int c0 = c * C, jn = D - c0 < C ? D - c0 : C;  // the real layers, not the padding
    const T sse_warp = top ? warp_sum(lane_loss) : T(0);
    const T total = seed_sum(
        part, 2 * C,
        [&](T* row) {
          if constexpr (2 * C <= kWarp) {
            const T sum = warp_transpose_sum<0, 2 * C>(acc.v);
            if (2 * C == kWarp || lane < 2 * C) row[lane] = sum;  // the other lanes repeat them
          } else {
            static_assert(2 * C == 2 * kWarp, "up to two groups of 32 sums");
            row[lane] = warp_transpose_sum<0, kWarp>(acc.v);
            row[kWarp + lane] = warp_transpose_sum<kWarp, kWarp>(acc.v);
          }
          return sse_warp;
        },
        [&](int t, T sum) {
          const int j = t < C ? t : t - C;
          T* dst = t < C ? ga : gs;
          if (j < jn && dst) dst[c0 + j] = t < C ? peak_grad(sum) : scale_grad(sum, d.sign);
        });
    if (top) sse = total;
  }
  return sse;
}

// Whether the reverse sweep of C layers, L points per lane, reads the forward's tables, so that
// ptxas may keep their values and the selected slopes in registers from the forward step (a
// chunk's C slopes beside its C L waves and 2C lane sums: ptxas, sm_90, 128 registers: kept
// without spills up to (L + 1) C = 32 floats), or their copy (compnet/math.h: TriTable).
template <typename T, int C, int L>
CN_HD constexpr bool keep_forward_values() {
  return (L + 1) * C * sizeof(T) <= 32 * sizeof(float);
}

// The seed's tables of depth Dt = table_depth(D) at `tables` (kernels.h: layer_table_values; a
// second copy after them when `copy`) from its peaks `a` and scales row `s`, or, when `smooth_out`
// is given, the smooth scales, which the lead thread writes there first. The threads share the Tri
// table; the lead alone does the O(D) scales row. Layers D .. Dt - 1 pad the net to whole chunks:
// Tri(1) with scale 0. They pass every wave on as it is (W_i <= 1 for peaks in (0, 1), and T_1(u) =
// u * 1 + 0 exactly for u <= 1, slope 1) and add 0 to y; in the reverse sweep lambda stays 0 down
// to layer D, where it becomes fma(gy, scale(D - 1), 0): the unpadded lambda, bit for bit. The
// padding's lane sums are never written out (seed_pass). Only non-finite waves or grad_y (inputs
// the checks refuse) can tell the difference: inf * 0 is NaN where the unpadded sweep kept an inf.
template <typename T>
__device__ TriTable<T> fill_tables(const T* a, const T* s, T* smooth_out, int D, int Dt, int sign,
                                   T* tables, bool copy) {
  static_assert(sizeof(Tri<T>) == tri_values(1) * sizeof(T), "a Tri is 4 values");
  Tri<T>* tri = reinterpret_cast<Tri<T>*>(tables);
  T* sp = tables + tri_values(Dt);
  const int64_t second = copy ? layer_table_values(Dt) : 0;  // the copy's offset
  if (seed_thread() == 0) {
    if (smooth_out) smooth_scales_row(a, D, sign, smooth_out);
    signed_scales_row(a, smooth_out ? smooth_out : s, D, sign, sp);
    for (int i = D + 1; i <= Dt; ++i) sp[i] = T(0);
    if (copy)
      for (int i = 0; i <= Dt; ++i) sp[second + i] = sp[i];
  }
  for (int i = seed_thread(); i < Dt; i += blockDim.y * kWarp) {
    tri[i] = Tri<T>(i < D ? a[i] : T(1));
    if (copy) reinterpret_cast<Tri<T>*>(tables + second)[i] = tri[i];
  }
  return {tri, sp, reinterpret_cast<Tri<T>*>(tables + second), sp + second};
}

// SHARED: the seed's tables, smooth scales and their gradient in the block's dynamic shared
// memory (backward_table_values), else in its `scratch` row; the carry is always there. In
// shared memory the sweep reads a layer's Tri with one 128-bit load (two in double), where
// global loads came one predicated load per value.
template <typename T, int C, int L, bool FULL, bool SHARED>
__global__ void __launch_bounds__(kMaxThreads<T>, 1)
    backward_kernel(Dims d, const T* __restrict__ x, const T* __restrict__ a_all,
                    const T* __restrict__ s_all, const T* __restrict__ head_in, T* loss, T* gx,
                    T* g_peaks, T* g_scales, T* scratch) {
  const int64_t seed = static_cast<int64_t>(blockIdx.x) * blockDim.z + threadIdx.z;
  // The seed's threads exit together; a block holds seeds past S only when seeds have one warp,
  // and those meet only at __syncwarp.
  if (seed >= d.S) return;
  const int D = d.D, Dt = sweep_depth<T, C, FULL>(D), W = blockDim.y;
  const bool lead = seed_thread() == 0, smooth = s_all == nullptr;
  const T* a = a_all + seed * (D + 1);
  const int64_t tables = backward_table_values(D, sizeof(T));
  T* global_row = scratch + seed * backward_scratch_values(D, d.N, sizeof(T));
  T* row = SHARED ? seed_workspace(static_cast<T*>(nullptr), seed, tables) : global_row;
  T* smooth_row = row + 2 * layer_table_values(Dt);  // [smooth scales | their gradient]
  T* gp = g_peaks ? g_peaks + seed * (D + 1) : nullptr;
  // Scale gradients are needed for g_scales, or for the peaks through the smooth recurrence.
  T* gs = smooth ? (gp ? smooth_row + D : nullptr) : (g_scales ? g_scales + seed * D : nullptr);
  const T* s = smooth ? smooth_row : s_all + seed * D;
  T* carry = global_row + tables;
  const TriTable<T> layers = fill_tables(a, s, smooth ? smooth_row : nullptr, D, Dt, d.sign, row,
                                         !keep_forward_values<T, C, L>());
  seed_sync(W);
  const T sse = seed_pass<T, C, L, FULL>(d, x + (d.x_shared ? 0 : seed * d.N),
                                   head_in + (d.head_shared ? 0 : seed * d.N), loss != nullptr,
                                   layers, gp, gs, gx ? gx + seed * d.N : nullptr, carry,
                                   seed_reduction_area<T>(!SHARED, tables,
                                                          reduction_values(sizeof(T))));
  if (lead) {
    if (loss) loss[seed] = mse_mean_by_reciprocal(sse, d.N);
    if (gp) {
      gp[D] = T(0);
      if (smooth) smooth_scales_backward_row(a, s, D, d.sign, gs, gp);
    }
  }
}

// Stage 1 fused: each seed's W warps run all epochs with its peaks, scales, their gradients and
// the Tri table in its workspace (train_workspace_values, placed by the TrainPlan). The Adam
// moments stay in `state` [S, 2, P] (row [peaks (D + 1) | free scales (D)]); Adam is
// element-wise, so the seed's threads share the row (thread t updates t, t + 32 W, ...).
template <typename T, int C, int L, bool FULL>
__global__ void __launch_bounds__(kMaxThreads<T>, 1)
    train_kernel(Dims d, AdamConfig cfg, const T* __restrict__ x, const T* __restrict__ target,
                 T* peaks, T* scales, T* loss, T* curve, int64_t records, T* state, T* spill,
                 T* carry_all) {
  const int64_t seed = static_cast<int64_t>(blockIdx.x) * blockDim.z + threadIdx.z;
  if (seed >= d.S) return;  // as in backward_kernel
  const int D = d.D, Dt = sweep_depth<T, C, FULL>(D), W = blockDim.y,
            t = seed_thread(), nt = W * kWarp;
  const bool lead = t == 0, smooth = scales == nullptr;
  const int64_t ws = train_workspace_values(D, sizeof(T));
  T* tables = seed_workspace(spill, seed, ws);
  T* a = tables + 2 * layer_table_values(Dt);
  T* ga = a + D + 1;
  T* s = ga + D + 1;
  T* gs = s + D;
  T* part = seed_reduction_area<T>(spill != nullptr, ws, reduction_values(sizeof(T)));
  T* carry = carry_all ? carry_all + seed * carry_values(D, d.N, sizeof(T)) : nullptr;
  const int64_t P = D + 1 + (smooth ? 0 : D);
  T* m = state + seed * 2 * P;
  T* v = m + P;
  T* pk_row = peaks + seed * (D + 1);
  T* sc_row = smooth ? nullptr : scales + seed * D;
  seed_copy(a, pk_row, D + 1);
  if (!smooth) seed_copy(s, sc_row, D);
  const T* xrow = x + (d.x_shared ? 0 : seed * d.N);
  const T* trow = target + (d.head_shared ? 0 : seed * d.N);
  const T lo = T(cfg.peak_min), hi = T(cfg.peak_max), inf = T(INFINITY);
  auto pass = [&] {
    seed_sync(W);  // the parameters are complete
    const TriTable<T> layers = fill_tables(a, s, smooth ? s : nullptr, D, Dt, d.sign, tables,
                                           !keep_forward_values<T, C, L>());
    seed_sync(W);
    const T sse = seed_pass<T, C, L, FULL>(d, xrow, trow, true, layers, ga, gs,
                                     static_cast<T*>(nullptr), carry, part);
    if (lead) {
      ga[D] = T(0);
      if (smooth) smooth_scales_backward_row(a, s, D, d.sign, gs, ga);
    }
    seed_sync(W);  // the gradient is complete
    return mse_mean_by_reciprocal(sse, d.N);  // the loss on the lead thread (which records it)
  };
  auto step = [&](const AdamStep<T>& adam) {
    adam.apply(a, ga, m, v, D + 1, lo, hi, t, nt);
    if (!smooth) adam.apply(s, gs, m + D + 1, v + D + 1, D, -inf, inf, t, nt);
  };
  const T l = train_epochs<T>(cfg, lead ? curve + seed * records : nullptr, pass, step);
  if (lead) loss[seed] = l;
  // each thread copies back the entries its Adam steps wrote
  seed_copy(pk_row, a, D + 1);
  if (!smooth) seed_copy(sc_row, s, D);
}

}  // namespace

template <typename T>
const char* forward(const Dims& d, const T* x, const T* peaks, const T* scales, T* y,
                    void* stream) {
  if (d.S * d.N == 0) return nullptr;
  const int64_t blocks = ceil_div(d.S * d.N, kForwardThreads);
  if (forward_table_bytes<T>(d) <= kDefaultSharedBytes)
    return launch(forward_kernel<T, true>, blocks, kForwardThreads, forward_table_bytes<T>(d),
                  stream, d, x, peaks, scales, y);
  return launch(forward_kernel<T, false>, blocks, kForwardThreads, 0, stream, d, x, peaks, scales,
                y);
}

template <typename T>
const char* backward(const Dims& d, const T* x, const T* peaks, const T* scales, const T* head,
                     T* loss, T* gx, T* g_peaks, T* g_scales, T* scratch, void* stream) {
  if (d.S == 0 || d.N == 0) return nullptr;
  const int W = sweep_warps_per_seed(d.S, d.N, d.D, sizeof(T)), G = seeds_per_block(W);
  const size_t reduce = size_t(G) * W * reduction_values(sizeof(T)) * sizeof(T);
  const size_t tables = size_t(G) * backward_table_values(d.D, sizeof(T)) * sizeof(T);
  return with_chunk<T>(d.D, [&](auto c) {
    constexpr int C = decltype(c)::value;
    return with_full_chunk<T, C>(d.D, [&](auto full) {
      constexpr bool FULL = decltype(full)::value;
      return with_lane_points<T, C>(sweep_lane_points(d.S, d.N, d.D, sizeof(T)), [&](auto l) {
        constexpr int L = decltype(l)::value;
        if (reduce + tables <= kDefaultSharedBytes)
          return launch(backward_kernel<T, C, L, FULL, true>, ceil_div(d.S, G),
                        dim3(kWarp, W, G), reduce + tables, stream, d, x, peaks, scales, head,
                        loss, gx, g_peaks, g_scales, scratch);
        return launch(backward_kernel<T, C, L, FULL, false>, ceil_div(d.S, G),
                      dim3(kWarp, W, G), reduce, stream, d, x, peaks, scales, head, loss, gx,
                      g_peaks, g_scales, scratch);
      });
    });
  });
}

template <typename T>
const char* train(const Dims& d, const AdamConfig& cfg, const TrainPlan& plan, const T* x,
                  const T* target, T* peaks, T* scales, T* loss, T* curve, int64_t records,
                  T* state, T* spill, T* carry, void* stream) {
  if (d.S == 0) return nullptr;  // with N = 0 the steps still run (carried Adam moments)
  if (const char* err = check_spill(plan, spill)) return err;
  if (plan.warps != sweep_warps_per_seed(d.S, d.N, d.D, sizeof(T)))
    return "the plan's warps per seed do not match";
  if ((carry != nullptr) != (carry_values(d.D, d.N, sizeof(T)) > 0))
    return "the carry buffer does not match the depth";
  return with_chunk<T>(d.D, [&](auto c) {
    constexpr int C = decltype(c)::value;
    return with_full_chunk<T, C>(d.D, [&](auto full) {
      return with_lane_points<T, C>(sweep_lane_points(d.S, d.N, d.D, sizeof(T)), [&](auto l) {
        return launch(train_kernel<T, C, decltype(l)::value, decltype(full)::value>,
                      ceil_div(d.S, plan.seeds), dim3(kWarp, plan.warps, plan.seeds),
                      plan.smem_bytes, stream, d, cfg, x, target, peaks, scales, loss, curve,
                      records, state, spill, carry);
      });
    });
  });
}

#define CN_INSTANTIATE(T)                                                                       \
  template const char* forward<T>(const Dims&, const T*, const T*, const T*, T*, void*);        \
  template const char* backward<T>(const Dims&, const T*, const T*, const T*, const T*, T*, T*, \
                                   T*, T*, T*, void*);                                          \
  template const char* train<T>(const Dims&, const AdamConfig&, const TrainPlan&, const T*,     \
                                const T*, T*, T*, T*, T*, int64_t, T*, T*, T*, void*);
CN_INSTANTIATE(float)
CN_INSTANTIATE(double)

}  // namespace cuda
}  // namespace cn
