// CPU driver of the batched MLP ops: tiles of L points into the per-point math of mlp_math.h,
// parallel over (seed, block of points). Each task sums its parameter gradients lane-wise, then
// over lanes in a fixed order; blocks are summed per seed in a fixed order. The block size is a
// constant, so results are bitwise independent of the thread count.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "mlp_common.h"
#include "mlp_math.h"

namespace cn {
namespace {

template <typename T>
constexpr int kLanes = 64 / sizeof(T);  // two AVX2 registers per lane loop
constexpr int64_t kBlock = 512;         // points per backward task

template <typename T, int L>
void load_tile(const T* row, int64_t n0, int64_t N, T (&out)[L]) {
  for (int l = 0; l < L; ++l) out[l] = n0 + l < N ? row[n0 + l] : T(0);
}

template <typename T, int L>
struct LaneAcc {
  T* a;  // [P][L]
  void add(int idx, const T* v) {
    T* __restrict p = a + idx * L;
    CN_LANES for (int k = 0; k < L; ++k) p[k] += v[k];
  }
};

template <typename T>
void forward_kernel(const MlpProblem& p, T* y) {
  constexpr int L = kLanes<T>;
  const mlp::Shape& sh = p.shape;
  const T* x = p.x.data_ptr<T>();
  const T* w = p.params.data_ptr<T>();
  const int64_t N = p.N, tiles = (N + L - 1) / L, xs = p.x_shared ? 0 : N;
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

// Forward + backward per tile; `head(seed, n0, valid, y, dy, lane_loss)` fills dy from y.
// Outputs: gparams [S, P] (always), gx [S, N] (optional), loss [S] (optional, mean of lane_loss).
template <typename T, typename Head>
void backward_kernel(const MlpProblem& p, Head head, T* gparams, T* gx, T* loss) {
  constexpr int L = kLanes<T>;
  const mlp::Shape& sh = p.shape;
  const int64_t S = p.S, N = p.N, P = sh.params, xs = p.x_shared ? 0 : N;
  const T* x = p.x.data_ptr<T>();
  const T* w = p.params.data_ptr<T>();
  const int64_t blocks = (N + kBlock - 1) / kBlock, W = P + 1;
  std::vector<T> partial(static_cast<size_t>(S * blocks * W));
  at::parallel_for(0, S * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> h(std::max(1, sh.units) * L), acc(P * L), g(mlp::kMaxWidth * L),
        gn(mlp::kMaxWidth * L);
    for (int64_t k = begin; k < end; ++k) {
      const int64_t seed = k / blocks, b0 = (k % blocks) * kBlock;
      const int64_t b1 = std::min(N, b0 + kBlock);
      const T* pw = w + seed * P;
      std::fill(acc.begin(), acc.end(), T(0));
      LaneAcc<T, L> lanes{acc.data()};
      T lane_loss[L] = {};
      for (int64_t n0 = b0; n0 < b1; n0 += L) {
        const int valid = static_cast<int>(std::min<int64_t>(L, b1 - n0));
        T xt[L], yt[L], dy[L], dx[L];
        load_tile<T, L>(x + seed * xs, n0, N, xt);
        mlp::forward_lanes<T, L>(sh, pw, xt, h.data(), yt);
        head(seed, n0, valid, yt, dy, lane_loss);
        mlp::backward_lanes<T, L>(sh, pw, xt, h.data(), dy, g.data(), gn.data(), lanes,
                                  gx ? dx : nullptr);
        if (gx)
          for (int l = 0; l < valid; ++l) gx[seed * N + n0 + l] = dx[l];
      }
      T* out = partial.data() + k * W;
      for (int64_t j = 0; j < P; ++j) {
        T v = 0;
        for (int l = 0; l < L; ++l) v += acc[j * L + l];
        out[j] = v;
      }
      T sl = 0;
      for (int l = 0; l < L; ++l) sl += lane_loss[l];
      out[P] = sl;
    }
  });
  at::parallel_for(0, S, 16, [&](int64_t b, int64_t e) {
    for (int64_t seed = b; seed < e; ++seed) {
      T* gp = gparams + seed * P;
      std::fill(gp, gp + P, T(0));
      T sl = 0;
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const T* part = partial.data() + (seed * blocks + blk) * W;
        for (int64_t j = 0; j < P; ++j) gp[j] += part[j];
        sl += part[P];
      }
      if (loss) loss[seed] = sl / T(N);
    }
  });
}

at::Tensor mlp_forward_cpu(const at::Tensor& x, const at::Tensor& params, at::IntArrayRef widths) {
  const MlpProblem p = make_mlp_problem("compnet_ext.mlp_forward", x, params, widths, {});
  at::Tensor y = at::empty({p.S, p.N}, p.params.options());
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(p.params.scalar_type(), "mlp_forward_cpu",
                             [&] { forward_kernel<scalar_t>(p, y.data_ptr<scalar_t>()); });
  return y;
}

std::tuple<at::Tensor, at::Tensor> mlp_backward_cpu(const at::Tensor& grad_y, const at::Tensor& x,
                                                    const at::Tensor& params,
                                                    at::IntArrayRef widths, bool need_x) {
  const MlpProblem p = make_mlp_problem("compnet_ext.mlp_backward", x, params, widths, grad_y, "grad_y");
  TORCH_CHECK(!p.head_shared, "compnet_ext.mlp_backward: `grad_y` must be [S, N]");
  const auto opts = p.params.options();
  at::Tensor gp = at::zeros({p.S, p.shape.params}, opts);
  at::Tensor gx = need_x ? at::zeros({p.S, p.N}, opts) : at::empty({0}, opts);
  if (p.S > 0 && p.N > 0) {
    AT_DISPATCH_FLOATING_TYPES(p.params.scalar_type(), "mlp_backward_cpu", [&] {
      using T = scalar_t;
      constexpr int L = kLanes<T>;
      const T* g = p.head.data_ptr<T>();
      const int64_t N = p.N;
      auto head = [=](int64_t seed, int64_t n0, int valid, const T(&)[L], T(&dy)[L], T*) {
        for (int l = 0; l < L; ++l) dy[l] = l < valid ? g[seed * N + n0 + l] : T(0);
      };
      backward_kernel<T>(p, head, gp.data_ptr<T>(), need_x ? gx.data_ptr<T>() : nullptr,
                         nullptr);
    });
  }
  if (need_x && p.x_shared) gx = gx.sum(0);
  return {gx, gp};
}

std::tuple<at::Tensor, at::Tensor> mlp_loss_and_grad_cpu(const at::Tensor& x,
                                                         const at::Tensor& target,
                                                         const at::Tensor& params,
                                                         at::IntArrayRef widths) {
  const MlpProblem p =
      make_mlp_problem("compnet_ext.mlp_loss_and_grad", x, params, widths, target);
  const auto opts = p.params.options();
  at::Tensor loss = at::zeros({p.S}, opts);  // 0 with no points (not torch.mean's NaN)
  at::Tensor gp = at::zeros({p.S, p.shape.params}, opts);
  if (p.S > 0 && p.N > 0) {
    AT_DISPATCH_FLOATING_TYPES(p.params.scalar_type(), "mlp_loss_and_grad_cpu", [&] {
      using T = scalar_t;
      constexpr int L = kLanes<T>;
      const T* t = p.head.data_ptr<T>();
      const int64_t N = p.N, ts = p.head_shared ? 0 : N;
      const T inv_n = T(1) / T(N);
      auto head = [=](int64_t seed, int64_t n0, int valid, const T(&y)[L], T(&dy)[L],
                      T* lane_loss) {
        for (int l = 0; l < L; ++l) {
          const T d = l < valid ? y[l] - t[seed * ts + n0 + l] : T(0);
          lane_loss[l] += d * d;
          dy[l] = inv_n * (T(2) * d);
        }
      };
      backward_kernel<T>(p, head, gp.data_ptr<T>(), nullptr, loss.data_ptr<T>());
    });
  }
  return {loss, gp};
}

}  // namespace

TORCH_LIBRARY_IMPL(compnet_ext, CPU, m) {
  m.impl("mlp_forward", &mlp_forward_cpu);
  m.impl("mlp_backward", &mlp_backward_cpu);
  m.impl("mlp_loss_and_grad", &mlp_loss_and_grad_cpu);
}

}  // namespace cn
