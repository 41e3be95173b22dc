// CPU driver of the batched MLP ops: tiles of L points into the per-point math of mlp/math.h,
// parallel over (seed, block of points) with at::parallel_for, with the fixed-order reductions of
// common/cpu_tiles.h. The fused stage 2 (mlp_train) runs the same block sums per seed, one task
// per seed.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../common/adam.h"
#include "../common/cpu_tiles.h"
#include "../common/mse.h"
#include "math.h"
#include "ops.h"
#include "problem.h"

namespace cn {
namespace {

constexpr int64_t kBlock = 512;  // points per backward task

// Lane-wise sums of the parameter gradient: [P][L].
template <typename T, int L>
struct LaneAcc {
  T* a;
  void add(int idx, const T* v) { add_lanes<T, L>(a + idx * L, v); }
};

template <typename T>
void forward_kernel(const MlpProblem& p, T* y) {
  constexpr int L = kLanes<T>;
  const mlp::Shape& sh = p.shape;
  const T* x = p.x.data_ptr<T>();
  const T* w = p.params.data_ptr<T>();
  const int64_t N = p.N, tiles = ceil_div(N, L), xs = p.x_shared ? 0 : N;
  const int64_t grain = std::max<int64_t>(1, 8192 / (L * (sh.params + 1)));
  at::parallel_for(0, p.S * tiles, grain, [&](int64_t begin, int64_t end) {
    std::vector<T> h(std::max(1, sh.units) * L);
    for (int64_t k = begin; k < end; ++k) {
      const int64_t seed = k / tiles, n0 = (k % tiles) * L;
      T xt[L], yt[L];
      load_tile<T, L>(x + seed * xs, n0, N, xt);
      mlp::forward_lanes<T, L>(sh, w + seed * sh.params, xt, h.data(), yt);
      for (int l = 0; l < L && n0 + l < N; ++l) y[seed * N + n0 + l] = yt[l];
    }
  });
}

// Per-task scratch of the per-point math.
template <typename T>
struct Scratch {
  std::vector<T> h, acc, g, gn;
  explicit Scratch(const mlp::Shape& sh)
      : h(std::max(1, sh.units) * kLanes<T>),
        acc(sh.params * kLanes<T>),
        g(mlp::kMaxWidth * kLanes<T>),
        gn(mlp::kMaxWidth * kLanes<T>) {}
};

// Sums over the points [b0, b1) of one seed whose parameter row is `pw`: out[0, P) gets the
// parameter gradient, out[P] the sum of the head's lane losses. `head(seed, n0, valid, y, dy,
// lane_loss)` fills dy from y. Sums lane-wise, then over lanes in a fixed order, so the result
// does not depend on which task runs the block. gx_row [N]: dLoss/dx per point (or nullptr).
template <typename T, typename Head>
void block_sums(const MlpProblem& p, int64_t seed, const T* pw, int64_t b0, int64_t b1,
                const Head& head, T* gx_row, Scratch<T>& s, T* out) {
  constexpr int L = kLanes<T>;
  const mlp::Shape& sh = p.shape;
  const int64_t N = p.N, P = sh.params;
  const T* xrow = p.x.data_ptr<T>() + (p.x_shared ? 0 : seed * N);
  std::fill(s.acc.begin(), s.acc.end(), T(0));
  LaneAcc<T, L> lanes{s.acc.data()};
  T lane_loss[L] = {};
  for (int64_t n0 = b0; n0 < b1; n0 += L) {
    const int valid = static_cast<int>(std::min<int64_t>(L, b1 - n0));
    T xt[L], yt[L], dy[L], dx[L];
    load_tile<T, L>(xrow, n0, N, xt);
    mlp::forward_lanes<T, L>(sh, pw, xt, s.h.data(), yt);
    head(seed, n0, valid, yt, dy, lane_loss);
    mlp::backward_lanes<T, L>(sh, pw, xt, s.h.data(), dy, s.g.data(), s.gn.data(), lanes,
                              gx_row ? dx : nullptr);
    if (gx_row)
      for (int l = 0; l < valid; ++l) gx_row[n0 + l] = dx[l];
  }
  for (int64_t j = 0; j < P; ++j) out[j] = sum_lanes<T, L>(s.acc.data() + j * L);
  out[P] = sum_lanes<T, L>(lane_loss);
}

// Reduces one seed's block sums (blocks x (P + 1), in block order) into its gradient row gp [P]
// and its loss (nullptr: not needed). `row` is P + 1 scratch.
template <typename T>
void finish_seed(const T* partial, int64_t blocks, int64_t P, int64_t N, T* row, T* gp, T* loss) {
  sum_blocks(partial, blocks, P + 1, row);
  std::copy(row, row + P, gp);
  if (loss) *loss = mse_mean(row[P], N);
}

// The MSE head: squared errors into the lane losses, dy = d(mean (y - t)^2)/dy.
template <typename T>
struct MseHead {
  static constexpr int L = kLanes<T>;
  const T* t;
  int64_t ts;  // target seed stride: 0 when shared
  T inv_n;
  explicit MseHead(const MlpProblem& p)
      : t(p.head.data_ptr<T>()), ts(p.head_shared ? 0 : p.N), inv_n(T(1) / T(p.N)) {}
  void operator()(int64_t seed, int64_t n0, int valid, const T (&y)[L], T (&dy)[L],
                  T* lane_loss) const {
    for (int l = 0; l < L; ++l)
      dy[l] = l < valid ? mse_grad(y[l], t[seed * ts + n0 + l], inv_n, lane_loss[l]) : T(0);
  }
};

// The head of mlp_backward: dy = grad_y [S, N] (one row when its rows share memory).
template <typename T>
struct GradYHead {
  static constexpr int L = kLanes<T>;
  const T* g;
  int64_t gs;  // grad_y seed stride: 0 when shared
  explicit GradYHead(const MlpProblem& p) : g(p.head.data_ptr<T>()), gs(p.head_shared ? 0 : p.N) {}
  void operator()(int64_t seed, int64_t n0, int valid, const T (&)[L], T (&dy)[L], T*) const {
    for (int l = 0; l < L; ++l) dy[l] = l < valid ? g[seed * gs + n0 + l] : T(0);
  }
};

// Parallel over (seed, block of points), then over seeds for the fixed-order reduction.
// Outputs: gparams [S, P] (always), gx [S, N] (optional), loss [S] (optional). Needs N > 0.
template <typename T, typename Head>
void backward_kernel(const MlpProblem& p, const Head& head, T* gparams, T* gx, T* loss) {
  const int64_t S = p.S, N = p.N, P = p.shape.params, blocks = ceil_div(N, kBlock), W = P + 1;
  const T* w = p.params.data_ptr<T>();
  std::vector<T> partial(static_cast<size_t>(S * blocks * W));
  at::parallel_for(0, S * blocks, 1, [&](int64_t begin, int64_t end) {
    Scratch<T> scratch(p.shape);
    for (int64_t k = begin; k < end; ++k) {
      const int64_t seed = k / blocks, b0 = (k % blocks) * kBlock;
      block_sums<T>(p, seed, w + seed * P, b0, std::min(N, b0 + kBlock), head,
                    gx ? gx + seed * N : nullptr, scratch, partial.data() + k * W);
    }
  });
  at::parallel_for(0, S, 16, [&](int64_t b, int64_t e) {
    std::vector<T> row(W);
    for (int64_t seed = b; seed < e; ++seed)
      finish_seed(partial.data() + seed * blocks * W, blocks, P, N, row.data(),
                  gparams + seed * P, loss ? loss + seed : nullptr);
  });
}

// Stage 2 fused: one task per seed runs every epoch (the block sums of mlp_loss_and_grad over
// all points, in block order, then the Adam update of the whole row), so each step equals
// mlp_loss_and_grad followed by compnet_ext.optim.BatchedAdam. `params` [S, P] and the Adam
// moments `state` [S, 2, P] are trained in place.
template <typename T>
void train_kernel(const MlpProblem& p, const AdamConfig& cfg, const at::Tensor& params,
                  const at::Tensor& loss, const at::Tensor& curve, const at::Tensor& state) {
  const int64_t S = p.S, N = p.N, P = p.shape.params, blocks = ceil_div(N, kBlock), W = P + 1;
  const int64_t R = curve.size(1);
  const MseHead<T> head(p);
  const T inf = T(INFINITY);
  at::parallel_for(0, S, 1, [&](int64_t b, int64_t e) {
    Scratch<T> scratch(p.shape);
    std::vector<T> partial(blocks * W), row(W), g(P);
    for (int64_t seed = b; seed < e; ++seed) {
      T* pw = params.data_ptr<T>() + seed * P;
      T* m = state.data_ptr<T>() + seed * 2 * P;
      T* v = m + P;
      auto pass = [&] {
        for (int64_t blk = 0; blk < blocks; ++blk)
          block_sums<T>(p, seed, pw, blk * kBlock, std::min(N, (blk + 1) * kBlock), head,
                        nullptr, scratch, partial.data() + blk * W);
        T l;
        finish_seed(partial.data(), blocks, P, N, row.data(), g.data(), &l);
        return l;
      };
      auto step = [&](const AdamStep<T>& adam) { adam.apply(pw, g.data(), m, v, P, -inf, inf); };
      loss.data_ptr<T>()[seed] = train_epochs<T>(cfg, curve.data_ptr<T>() + seed * R, pass, step);
    }
  });
}

// The kernels of mlp/ops.h on the CPU.
struct Cpu {
  using Guard = NoDeviceGuard;
  static void forward(const char*, const MlpProblem& p, const at::Tensor& y) {
    AT_DISPATCH_FLOATING_TYPES(p.params.scalar_type(), "mlp_forward_cpu",
                               [&] { forward_kernel<scalar_t>(p, y.data_ptr<scalar_t>()); });
  }
  static void backward(const char*, const MlpProblem& p, const at::Tensor& loss,
                       const at::Tensor& gx, const at::Tensor& gp) {
    AT_DISPATCH_FLOATING_TYPES(p.params.scalar_type(), "mlp_backward_cpu", [&] {
      using T = scalar_t;
      if (loss.defined())
        backward_kernel<T>(p, MseHead<T>(p), gp.data_ptr<T>(), ptr_or_null<T>(gx),
                           loss.data_ptr<T>());
      else
        backward_kernel<T>(p, GradYHead<T>(p), gp.data_ptr<T>(), ptr_or_null<T>(gx), nullptr);
    });
  }
  static void train(const char*, const MlpProblem& p, const AdamConfig& cfg,
                    const at::Tensor& params, const at::Tensor& loss, const at::Tensor& curve,
                    const at::Tensor& state) {
    AT_DISPATCH_FLOATING_TYPES(p.params.scalar_type(), "mlp_train_cpu", [&] {
      train_kernel<scalar_t>(p, cfg, params, loss, curve, state);
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(compnet_ext, CPU, m) { register_mlp_ops<Cpu>(m); }

}  // namespace cn
