// CPU driver: tiles of L points per call into the shared sweeps of compnet_math.h, parallel over
// (seed, block of points) with at::parallel_for. Reductions over points are done per block in a
// fixed order, then over blocks in a fixed order, so results do not depend on the thread count.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "compnet_math.h"
#include "ops_common.h"

namespace cn {
namespace {

// Lanes per sweep call. The backward runs four AVX2 registers' worth (measured faster than one
// or two: more independent work per layer hides the division latency); the forward two (with
// four, GCC versioned the float loop and the scalar version ran).
template <typename T>
constexpr int kForwardLanes = 64 / sizeof(T);
template <typename T>
constexpr int kLanes = 128 / sizeof(T);
constexpr int kChunk = 128;      // layers whose waves are kept per chunk (see backward_lanes)
constexpr int64_t kBlock = 256;  // points per task in the backward
// Point-layers per parallel chunk: below this a problem runs on one thread, since waking the
// pool costs more than it saves (and a busy machine makes the wait for the slowest thread long).
constexpr int64_t kGrainWork = 1 << 16;

int64_t grain(int64_t points_per_item, int64_t D) {
  return std::max<int64_t>(1, kGrainWork / (points_per_item * std::max<int64_t>(D, 1)));
}

// Loads one tile of L points (zero-padded past N) from a row of a [N] or [S, N] tensor.
template <typename T, int L>
void load_tile(const T* row, int64_t n0, int64_t N, T (&out)[L]) {
  for (int l = 0; l < L; ++l) out[l] = n0 + l < N ? row[n0 + l] : T(0);
}

// Tiles [begin, end) of the forward. Kept out of line: inlined into the parallel_for lambda,
// GCC vectorised only some of the copies, and ran a scalar one.
template <typename T>
[[gnu::noinline]] void forward_tiles(const Problem& p, int64_t begin, int64_t end, T* out) {
  constexpr int L = kForwardLanes<T>;
  const T* x = p.x.data_ptr<T>();
  const T* a = p.peaks.data_ptr<T>();
  const T* s = p.smooth() ? nullptr : p.scales.data_ptr<T>();
  const int64_t N = p.N, D = p.D, tiles = (N + L - 1) / L;
  const int64_t xs = p.x_shared ? 0 : N;
  for (int64_t k = begin; k < end; ++k) {
    const int64_t seed = k / tiles, n0 = (k % tiles) * L;
    T xt[L], yt[L];
    load_tile<T, L>(x + seed * xs, n0, N, xt);
    forward_lanes<T, L>(xt, a + seed * (D + 1), s ? s + seed * D : nullptr, p.D, p.sign, yt);
    for (int l = 0; l < L && n0 + l < N; ++l) out[seed * N + n0 + l] = yt[l];
  }
}

template <typename T>
void forward_kernel(const Problem& p, at::Tensor& y) {
  constexpr int L = kForwardLanes<T>;
  const int64_t tiles = (p.N + L - 1) / L;
  T* out = y.data_ptr<T>();
  at::parallel_for(0, p.S * tiles, grain(L, p.D),
                   [&](int64_t begin, int64_t end) { forward_tiles<T>(p, begin, end, out); });
}

// Per-task accumulator: lane-wise sums per layer (no cross-lane reduction in the hot loop).
template <typename T, int L>
struct TileAcc {
  T* ga;  // [D][L]
  T* gs;  // [D][L]
  T* gx;  // this tile's dy/dx outputs, or nullptr
  int valid;
  void layer(int i, const T (&va)[L], const T (&vs)[L]) {
    // restrict: without it GCC kept this loop scalar (it could not rule out aliasing).
    T* __restrict pa = ga + i * L;
    T* __restrict ps = gs + i * L;
    CN_LANES for (int l = 0; l < L; ++l) {
      pa[l] += va[l];
      ps[l] += vs[l];
    }
  }
  void input(const T (&g)[L]) {
    if (gx)
      for (int l = 0; l < valid; ++l) gx[l] = g[l];
  }
};

// Shared by backward and loss_and_grad. `head(seed, n0, valid, l, y)` returns dL/dy.
// Writes grad_x per point into gx_points ([S, N], optional), reduced peak/scale gradients into
// g_peaks [S, D+1] / g_scales [S, D] (optional), and per-seed sums of head's `loss` into loss.
template <typename T, typename HeadFactory>
void backward_kernel(const Problem& p, HeadFactory make_head, T* gx_points, T* g_peaks,
                     T* g_scales, T* loss) {
  constexpr int L = kLanes<T>;
  const int64_t S = p.S, N = p.N, D = p.D;
  const T* x = p.x.data_ptr<T>();
  const T* a = p.peaks.data_ptr<T>();
  const int64_t xs = p.x_shared ? 0 : N;

  // Scales rows; smooth ones materialised once per seed.
  at::Tensor scales = p.scales;
  if (p.smooth()) {
    scales = at::empty({S, D}, p.peaks.options());
    T* sp = scales.data_ptr<T>();
    at::parallel_for(0, S, grain(1, D), [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) smooth_scales_row(a + k * (D + 1), p.D, p.sign, sp + k * D);
    });
  }
  const T* s = scales.data_ptr<T>();

  const int64_t blocks = (N + kBlock - 1) / kBlock;
  const int64_t W = 2 * D + 1;  // per task: ga[D], gs[D], loss
  std::vector<T> partial(static_cast<size_t>(S * blocks * W));
  at::parallel_for(0, S * blocks, grain(kBlock, D), [&](int64_t begin, int64_t end) {
    std::vector<T> ga(D * L), gs(D * L);
    for (int64_t k = begin; k < end; ++k) {
      const int64_t seed = k / blocks, b0 = (k % blocks) * kBlock;
      const int64_t b1 = std::min(N, b0 + kBlock);
      std::fill(ga.begin(), ga.end(), T(0));
      std::fill(gs.begin(), gs.end(), T(0));
      T lane_loss[L] = {};
      for (int64_t n0 = b0; n0 < b1; n0 += L) {
        const int valid = static_cast<int>(std::min<int64_t>(L, b1 - n0));
        T xt[L];
        load_tile<T, L>(x + seed * xs, n0, N, xt);
        auto head = make_head(seed, n0, valid, lane_loss);
        TileAcc<T, L> acc{ga.data(), gs.data(), gx_points ? gx_points + seed * N + n0 : nullptr,
                          valid};
        backward_lanes<T, L, kChunk>(xt, a + seed * (D + 1), s + seed * D, p.D, p.sign, head,
                                     acc);
      }
      T* out = partial.data() + k * W;
      for (int64_t i = 0; i < D; ++i) {
        T sa = 0, ss = 0;
        for (int l = 0; l < L; ++l) {
          sa += ga[i * L + l];
          ss += gs[i * L + l];
        }
        out[i] = sa;
        out[D + i] = ss;
      }
      T sl = 0;
      for (int l = 0; l < L; ++l) sl += lane_loss[l];
      out[2 * D] = sl;
    }
  });

  at::parallel_for(0, S, grain(blocks, D), [&](int64_t b, int64_t e) {
    std::vector<T> row(W);
    for (int64_t seed = b; seed < e; ++seed) {
      std::fill(row.begin(), row.end(), T(0));
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const T* part = partial.data() + (seed * blocks + blk) * W;
        for (int64_t j = 0; j < W; ++j) row[j] += part[j];
      }
      if (loss) loss[seed] = row[2 * D] / T(N);
      if (!g_peaks && !g_scales) continue;
      T* gsum = row.data() + D;
      if (g_scales) std::copy(gsum, gsum + D, g_scales + seed * D);
      if (g_peaks) {
        T* gp = g_peaks + seed * (D + 1);
        std::copy(row.data(), row.data() + D, gp);
        gp[D] = T(0);
        if (p.smooth())
          smooth_scales_backward_row(a + seed * (D + 1), s + seed * D, p.D, p.sign, gsum, gp);
      }
    }
  });
}

at::Tensor forward_cpu(const at::Tensor& x, const at::Tensor& peaks,
                       const std::optional<at::Tensor>& scales, int64_t sign, bool validate) {
  const Problem p = make_problem("compnet_ext.forward", x, peaks, scales, sign, {}, validate);
  at::Tensor y = at::empty({p.S, p.N}, p.peaks.options());
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(p.peaks.scalar_type(), "compnet_forward_cpu",
                             [&] { forward_kernel<scalar_t>(p, y); });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& peaks,
    const std::optional<at::Tensor>& scales, int64_t sign, bool need_x, bool need_peaks,
    bool need_scales) {
  const Problem p = make_problem("compnet_ext.backward", x, peaks, scales, sign, grad_y, false);
  TORCH_CHECK(!p.target_shared, "compnet_ext.backward: `grad_y` must be [S, N]");
  need_scales = need_scales && !p.smooth();
  const auto opts = p.peaks.options();
  at::Tensor gx = need_x ? at::zeros({p.S, p.N}, opts) : at::empty({0}, opts);
  at::Tensor gp = need_peaks ? at::zeros({p.S, p.D + 1}, opts) : at::empty({0}, opts);
  at::Tensor gs = need_scales ? at::zeros({p.S, p.D}, opts) : at::empty({0}, opts);
  if (p.S > 0 && p.N > 0 && (need_x || need_peaks || need_scales)) {
    AT_DISPATCH_FLOATING_TYPES(p.peaks.scalar_type(), "compnet_backward_cpu", [&] {
      using T = scalar_t;
      const T* g = p.target.data_ptr<T>();
      const int64_t N = p.N;
      auto make_head = [&](int64_t seed, int64_t n0, int valid, T*) {
        return [=](int l, T) { return l < valid ? g[seed * N + n0 + l] : T(0); };
      };
      backward_kernel<T>(p, make_head, need_x ? gx.data_ptr<T>() : nullptr,
                         need_peaks ? gp.data_ptr<T>() : nullptr,
                         need_scales ? gs.data_ptr<T>() : nullptr, nullptr);
    });
  }
  if (need_x && p.x_shared) gx = gx.sum(0);
  return {gx, gp, gs};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> loss_and_grad_cpu(
    const at::Tensor& x, const at::Tensor& target, const at::Tensor& peaks,
    const std::optional<at::Tensor>& scales, int64_t sign, bool validate) {
  const Problem p =
      make_problem("compnet_ext.loss_and_grad", x, peaks, scales, sign, target, validate);
  const auto opts = p.peaks.options();
  // With no points the loss is defined as 0 (rather than torch.mean's NaN).
  at::Tensor loss = at::zeros({p.S}, opts);
  at::Tensor gp = at::zeros({p.S, p.D + 1}, opts);
  at::Tensor gs = p.smooth() ? at::empty({0}, opts) : at::zeros({p.S, p.D}, opts);
  if (p.S > 0 && p.N > 0) {
    AT_DISPATCH_FLOATING_TYPES(p.peaks.scalar_type(), "compnet_loss_and_grad_cpu", [&] {
      using T = scalar_t;
      const T* t = p.target.data_ptr<T>();
      const int64_t N = p.N, ts = p.target_shared ? 0 : N;
      const T inv_n = T(1) / T(N);
      auto make_head = [&](int64_t seed, int64_t n0, int valid, T* lane_loss) {
        return [=](int l, T y) {
          if (l >= valid) return T(0);
          const T d = y - t[seed * ts + n0 + l];
          lane_loss[l] += d * d;
          return inv_n * (T(2) * d);  // d(mean (y-t)^2)/dy, in the reference's rounding order
        };
      };
      backward_kernel<T>(p, make_head, nullptr, gp.data_ptr<T>(),
                         p.smooth() ? nullptr : gs.data_ptr<T>(), loss.data_ptr<T>());
    });
  }
  return {loss, gp, gs};
}

}  // namespace

TORCH_LIBRARY_IMPL(compnet_ext, CPU, m) {
  m.impl("forward", &forward_cpu);
  m.impl("backward", &backward_cpu);
  m.impl("loss_and_grad", &loss_and_grad_cpu);
}

}  // namespace cn
