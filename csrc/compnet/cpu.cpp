// CPU driver of the compositional network's ops: tiles of L points per call into the sweeps of
// compnet/math.h, parallel over (seed, block of points) with at::parallel_for, with the
// fixed-order reductions of common/cpu_tiles.h. The fused stage 1 (train_peaks) runs the same
// block sums per seed, one task per seed.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../common/adam.h"
#include "../common/cpu_tiles.h"
#include "../common/mse.h"
#include "math.h"
#include "ops.h"
#include "problem.h"

namespace cn {
namespace {

constexpr int kChunk = 128;      // layers whose waves are kept per chunk (see backward_lanes)
constexpr int64_t kBlock = 256;  // points per task in the backward
// Point-layers per parallel chunk: below this a problem runs on one thread, since waking the
// pool costs more than it saves (and a busy machine makes the wait for the slowest thread long).
constexpr int64_t kGrainWork = 1 << 16;

int64_t grain(int64_t points_per_item, int64_t D) {
  return std::max<int64_t>(1, kGrainWork / (points_per_item * std::max<int64_t>(D, 1)));
}

// Tiles [begin, end) of the forward. Kept out of line: inlined into the parallel_for lambda,
// GCC vectorised only some of the copies, and ran a scalar one. (Check the disassembly after
// changing the sweeps: forward_tiles and backward_lanes must use vdivps/vfmadd...ps.)
template <typename T>
[[gnu::noinline]] void forward_tiles(const Problem& p, int64_t begin, int64_t end, T* out) {
  constexpr int L = kLanes<T>;
  const T* x = p.x.data_ptr<T>();
  const T* a = p.peaks.data_ptr<T>();
  const int64_t N = p.N, D = p.D, tiles = ceil_div(N, L);
  const int64_t xs = p.x_shared ? 0 : N;
  // Smooth scales are materialised per seed here: GCC left the on-the-fly variant of the
  // sweep (forward_lanes with s == nullptr) scalar.
  std::vector<T> smooth(p.smooth() ? D : 0);
  int64_t smooth_seed = -1;
  for (int64_t k = begin; k < end; ++k) {
    const int64_t seed = k / tiles, n0 = (k % tiles) * L;
    const T* s = p.smooth() ? smooth.data() : p.scales.data_ptr<T>() + seed * D;
    if (p.smooth() && seed != smooth_seed) {
      smooth_scales_row(a + seed * (D + 1), p.D, p.sign, smooth.data());
      smooth_seed = seed;
    }
    T xt[L], yt[L];
    load_tile<T, L>(x + seed * xs, n0, N, xt);
    const T* as = a + seed * (D + 1);
    forward_lanes<T, L>(xt, PeakLayers<T>{as, s, p.sign}, p.D, yt);
    for (int l = 0; l < L && n0 + l < N; ++l) out[seed * N + n0 + l] = yt[l];
  }
}

template <typename T>
void forward_kernel(const Problem& p, T* out) {
  constexpr int L = kLanes<T>;
  const int64_t tiles = ceil_div(p.N, L);
  at::parallel_for(0, p.S * tiles, grain(L, p.D),
                   [&](int64_t begin, int64_t end) { forward_tiles<T>(p, begin, end, out); });
}

// Per-task accumulator: lane-wise sums per layer (no cross-lane reduction in the hot loop) of
// backward_chunk's terms (compnet/math.h: the sums before peak_grad and scale_grad).
template <typename T, int L>
struct TileAcc {
  T* ga;  // [D][L]
  T* gs;  // [D][L]
  T* gx;  // this tile's dy/dx outputs, or nullptr
  int valid;
  void layer(int i, int, const T (&ldu)[L], const T (&w)[L], const T (&gy)[L]) {
    madd_lanes<T, L>(ga + i * L, ldu, w);
    madd_lanes<T, L>(gs + i * L, gy, w);
  }
  void input(const T (&g)[L]) {
    if (gx)
      for (int l = 0; l < valid; ++l) gx[l] = g[l];
  }
};

// One seed's rows. `head` is grad_y (loss == false) or the target (loss == true); its seed
// stride is 0 when shared.
template <typename T>
struct SeedRows {
  const T* x;     // [N]
  const T* head;  // [N]
  const T* a;     // [D+1]
  const T* s;     // [D] (smooth scales materialised)
  T* gx;          // [N] dy/dx per point, or nullptr
};

// Sums over points [b0, b1) of one seed into out = [ga (D), gs (D), sum of squared errors].
// Lane-wise accumulation in `lane_ga`/`lane_gs` ([D][L] scratch), then a fixed-order lane sum.
template <typename T, bool LOSS>
void block_sums(const SeedRows<T>& r, int64_t N, int D, int sign, int64_t b0, int64_t b1,
                T* lane_ga, T* lane_gs, T* out) {
  constexpr int L = kLanes<T>;
  std::fill(lane_ga, lane_ga + D * L, T(0));
  std::fill(lane_gs, lane_gs + D * L, T(0));
  T lane_loss[L] = {};
  const T inv_n = T(1) / T(N);
  for (int64_t n0 = b0; n0 < b1; n0 += L) {
    const int valid = static_cast<int>(std::min<int64_t>(L, b1 - n0));
    T xt[L];
    load_tile<T, L>(r.x, n0, N, xt);
    auto head = [&](int l, T y) -> T {
      if (l >= valid) return T(0);
      return LOSS ? mse_grad(y, r.head[n0 + l], inv_n, lane_loss[l]) : r.head[n0 + l];
    };
    TileAcc<T, L> acc{lane_ga, lane_gs, r.gx ? r.gx + n0 : nullptr, valid};
    backward_lanes<T, L, kChunk>(xt, PeakLayers<T>{r.a, r.s, sign}, D, head, acc);
  }
  for (int i = 0; i < D; ++i) {
    out[i] = peak_grad(sum_lanes<T, L>(lane_ga + i * L));
    out[D + i] = scale_grad(sum_lanes<T, L>(lane_gs + i * L), sign);
  }
  out[2 * D] = sum_lanes<T, L>(lane_loss);
}

// Reduces one seed's block sums (blocks x (2D+1), in block order) into its loss and gradient
// rows; applies the smooth-scale chain rule. `row` is 2D+1 scratch. Any output may be nullptr.
template <typename T>
void finish_seed(const T* partial, int64_t blocks, int64_t N, int D, int sign, bool smooth,
                 const T* a, const T* s, T* row, T* loss, T* gp, T* gs) {
  sum_blocks(partial, blocks, 2 * D + 1, row);
  if (loss) *loss = mse_mean(row[2 * D], N);
  T* gsum = row + D;
  if (gs) std::copy(gsum, gsum + D, gs);
  if (gp) {
    std::copy(row, row + D, gp);
    gp[D] = T(0);
    if (smooth) smooth_scales_backward_row(a, s, D, sign, gsum, gp);
  }
}

template <typename T>
SeedRows<T> seed_rows(const Problem& p, const T* s_all, int64_t seed, T* gx_points) {
  const int64_t N = p.N;
  return {p.x.data_ptr<T>() + (p.x_shared ? 0 : seed * N),
          p.head.data_ptr<T>() + (p.head_shared ? 0 : seed * N),
          p.peaks.data_ptr<T>() + seed * (p.D + 1), s_all + seed * p.D,
          gx_points ? gx_points + seed * N : nullptr};
}

// The scales of every seed as a tensor: the free ones, or the smooth ones materialised.
template <typename T>
at::Tensor scales_rows(const Problem& p) {
  if (!p.smooth()) return p.scales;
  at::Tensor scales = at::empty({p.S, p.D}, p.peaks.options());
  const T* a = p.peaks.data_ptr<T>();
  T* sp = scales.data_ptr<T>();
  at::parallel_for(0, p.S, grain(1, p.D), [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) smooth_scales_row(a + k * (p.D + 1), p.D, p.sign, sp + k * p.D);
  });
  return scales;
}

// Shared by backward (LOSS = false) and loss_and_grad (LOSS = true): parallel over (seed, block
// of points), then over seeds for the fixed-order reduction. Outputs may be nullptr.
template <typename T, bool LOSS>
void backward_kernel(const Problem& p, T* gx_points, T* g_peaks, T* g_scales, T* loss) {
  constexpr int L = kLanes<T>;
  const int64_t S = p.S, N = p.N, D = p.D, blocks = ceil_div(N, kBlock), W = 2 * D + 1;
  const at::Tensor scales = scales_rows<T>(p);
  const T* s = scales.data_ptr<T>();
  std::vector<T> partial(static_cast<size_t>(S * blocks * W));
  at::parallel_for(0, S * blocks, grain(kBlock, D), [&](int64_t begin, int64_t end) {
    std::vector<T> ga(D * L), gs(D * L);
    for (int64_t k = begin; k < end; ++k) {
      const int64_t seed = k / blocks, b0 = (k % blocks) * kBlock;
      block_sums<T, LOSS>(seed_rows(p, s, seed, gx_points), N, p.D, p.sign, b0,
                          std::min(N, b0 + kBlock), ga.data(), gs.data(),
                          partial.data() + k * W);
    }
  });
  at::parallel_for(0, S, grain(blocks, D), [&](int64_t b, int64_t e) {
    std::vector<T> row(W);
    for (int64_t seed = b; seed < e; ++seed)
      finish_seed(partial.data() + seed * blocks * W, blocks, N, p.D, p.sign, p.smooth(),
                  p.peaks.data_ptr<T>() + seed * (D + 1), s + seed * D, row.data(),
                  loss ? loss + seed : nullptr, g_peaks ? g_peaks + seed * (D + 1) : nullptr,
                  g_scales ? g_scales + seed * D : nullptr);
  });
}

// Stage 1 fused: one task per seed runs every epoch (loss and gradient over all points, then an
// Adam step) with the same block sums and reduction order as loss_and_grad, so each step equals
// loss_and_grad followed by the Adam update of compnet_ext.optim.BatchedAdam. `state` [S, 2, P]
// holds the Adam moments of the row [peaks (D + 1) | free scales (D)], trained in place.
template <typename T>
void train_kernel(const Problem& p, const AdamConfig& cfg, const at::Tensor& peaks,
                  const at::Tensor& scales, const at::Tensor& loss, const at::Tensor& curve,
                  const at::Tensor& state) {
  constexpr int L = kLanes<T>;
  const int64_t S = p.S, N = p.N, D = p.D, blocks = ceil_div(N, kBlock), W = 2 * D + 1;
  const int64_t P = state.size(2), R = curve.size(1);
  const bool smooth = p.smooth();
  const T lo = T(cfg.peak_min), hi = T(cfg.peak_max), inf = T(INFINITY);
  const int64_t work = D * std::max<int64_t>(cfg.epochs, 1);
  at::parallel_for(0, S, grain(std::max<int64_t>(N, 1), work), [&](int64_t b, int64_t e) {
    std::vector<T> lane_ga(D * L), lane_gs(D * L), partial(blocks * W), row(W);
    std::vector<T> s_row(D), gp(D + 1), gs(D);
    for (int64_t seed = b; seed < e; ++seed) {
      T* a = peaks.data_ptr<T>() + seed * (D + 1);
      T* s = smooth ? s_row.data() : scales.data_ptr<T>() + seed * D;
      T* m = state.data_ptr<T>() + seed * 2 * P;  // peaks' moments at [0, D], scales' after
      T* v = m + P;
      const SeedRows<T> r{p.x.data_ptr<T>() + (p.x_shared ? 0 : seed * N),
                          p.head.data_ptr<T>() + (p.head_shared ? 0 : seed * N), a, s, nullptr};
      auto pass = [&] {
        if (smooth) smooth_scales_row<T>(a, p.D, p.sign, s);
        for (int64_t blk = 0; blk < blocks; ++blk)
          block_sums<T, true>(r, N, p.D, p.sign, blk * kBlock, std::min(N, (blk + 1) * kBlock),
                              lane_ga.data(), lane_gs.data(), partial.data() + blk * W);
        T l;
        finish_seed<T>(partial.data(), blocks, N, p.D, p.sign, smooth, a, s, row.data(), &l,
                       gp.data(), smooth ? nullptr : gs.data());
        return l;
      };
      auto step = [&](const AdamStep<T>& adam) {
        adam.apply(a, gp.data(), m, v, p.D + 1, lo, hi);
        if (!smooth) adam.apply(s, gs.data(), m + D + 1, v + D + 1, p.D, -inf, inf);
      };
      loss.data_ptr<T>()[seed] = train_epochs<T>(cfg, curve.data_ptr<T>() + seed * R, pass, step);
    }
  });
}

// The kernels of compnet/ops.h on the CPU.
struct Cpu {
  using Guard = NoDeviceGuard;
  static void forward(const char*, const Problem& p, const at::Tensor& y) {
    AT_DISPATCH_FLOATING_TYPES(p.peaks.scalar_type(), "compnet_forward_cpu",
                               [&] { forward_kernel<scalar_t>(p, y.data_ptr<scalar_t>()); });
  }
  static void backward(const char*, const Problem& p, const at::Tensor& loss, const at::Tensor& gx,
                       const at::Tensor& gp, const at::Tensor& gs) {
    AT_DISPATCH_FLOATING_TYPES(p.peaks.scalar_type(), "compnet_backward_cpu", [&] {
      using T = scalar_t;
      if (loss.defined())
        backward_kernel<T, true>(p, ptr_or_null<T>(gx), ptr_or_null<T>(gp), ptr_or_null<T>(gs),
                                 loss.data_ptr<T>());
      else
        backward_kernel<T, false>(p, ptr_or_null<T>(gx), ptr_or_null<T>(gp), ptr_or_null<T>(gs),
                                  nullptr);
    });
  }
  static void train(const char*, const Problem& p, const AdamConfig& cfg, const at::Tensor& peaks,
                    const at::Tensor& scales, const at::Tensor& loss, const at::Tensor& curve,
                    const at::Tensor& state) {
    AT_DISPATCH_FLOATING_TYPES(p.peaks.scalar_type(), "compnet_train_peaks_cpu", [&] {
      train_kernel<scalar_t>(p, cfg, peaks, scales, loss, curve, state);
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(compnet_ext, CPU, m) { register_ops<Cpu>(m); }

}  // namespace cn
