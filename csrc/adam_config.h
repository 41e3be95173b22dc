// Checks of the fused training stages' Adam hyper-parameters, shared by the stage-1 (ops_*.cpp)
// and stage-2 (mlp_*.cpp) torch glue. Inline, so that no extra source file is needed.
#pragma once

#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>

#include "compnet_math.h"  // AdamConfig

namespace cn {

// Names the argument on error. The parameters are left unbounded (peak_min/peak_max = -inf/inf).
inline AdamConfig make_adam_config(const char* op, int64_t epochs, double lr, double beta1,
                                   double beta2, double eps, int64_t record_every) {
  TORCH_CHECK(epochs >= 0, op, ": `epochs` must be >= 0, got ", epochs);
  TORCH_CHECK(std::isfinite(lr) && lr >= 0, op, ": `lr` must be a finite number >= 0, got ", lr);
  TORCH_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, op,
              ": `betas` must lie in [0, 1), got (", beta1, ", ", beta2, ")");
  TORCH_CHECK(std::isfinite(eps) && eps > 0, op, ": `eps` must be > 0, got ", eps);
  TORCH_CHECK(record_every >= 0, op, ": `record_every` must be >= 0, got ", record_every);
  return {epochs, lr, beta1, beta2, eps, -INFINITY, INFINITY, record_every};
}

// Columns of the loss curve: the loss before steps 0, k, 2k, ... < epochs.
inline int64_t curve_records(const AdamConfig& cfg) {
  return cfg.record_every > 0 ? (cfg.epochs + cfg.record_every - 1) / cfg.record_every : 0;
}

}  // namespace cn
