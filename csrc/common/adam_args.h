// Torch glue of the fused training stages (train_peaks, mlp_train), shared by both network
// families: checks of the Adam hyper-parameters, the Adam state to continue from, and the size of
// the loss curve.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>

#include "adam.h"

namespace cn {

// Names the argument on error. The parameters are left unbounded (peak_min/peak_max = -inf/inf).
inline AdamConfig make_adam_config(const char* op, int64_t epochs, double lr, double beta1,
                                   double beta2, double eps, int64_t record_every, int64_t step,
                                   int64_t warmup) {
  TORCH_CHECK(epochs >= 0, op, ": `epochs` must be >= 0, got ", epochs);
  TORCH_CHECK(std::isfinite(lr) && lr >= 0, op, ": `lr` must be a finite number >= 0, got ", lr);
  TORCH_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, op,
              ": `betas` must lie in [0, 1), got (", beta1, ", ", beta2, ")");
  TORCH_CHECK(std::isfinite(eps) && eps > 0, op, ": `eps` must be > 0, got ", eps);
  TORCH_CHECK(record_every >= 0, op, ": `record_every` must be >= 0, got ", record_every);
  TORCH_CHECK(step >= 0 && step <= std::numeric_limits<int64_t>::max() - epochs, op,
              ": `step` must be >= 0 and step + epochs must fit in int64, got step = ", step);
  TORCH_CHECK(warmup >= 0, op, ": `warmup` must be >= 0, got ", warmup);
  return {epochs, lr, beta1, beta2, eps, -INFINITY, INFINITY, record_every, step, warmup};
}

// Columns of the loss curve: the loss before steps 0, k, 2k, ... < epochs.
inline int64_t curve_records(const AdamConfig& cfg) {
  return cfg.record_every > 0 ? ceil_div(cfg.epochs, cfg.record_every) : 0;
}

// The Adam moments to continue from: a copy of `state` ([S, 2, P]: exp_avg, exp_avg_sq of the
// parameter row), or zeros (a fresh optimiser). The copy is trained in place and returned.
inline at::Tensor adam_state(const char* op, const std::optional<at::Tensor>& state,
                             const at::Tensor& like, int64_t S, int64_t P) {
  if (!state.has_value()) return at::zeros({S, 2, P}, like.options());
  const at::Tensor& st = *state;
  TORCH_CHECK(st.scalar_type() == like.scalar_type() && st.device() == like.device(), op,
              ": `state` must be ", like.scalar_type(), " on ", like.device(), ", got ",
              st.scalar_type(), " on ", st.device());
  TORCH_CHECK(st.dim() == 3 && st.size(0) == S && st.size(1) == 2 && st.size(2) == P, op,
              ": `state` must be [S, 2, P] = [", S, ", 2, ", P, "], got ", st.sizes());
  return st.contiguous().clone();
}

}  // namespace cn
