#include "problem.h"

#include <c10/util/Exception.h>

#include <cmath>
#include <limits>
#include <vector>

#include "../common/adam_args.h"

namespace cn {
namespace {

// The smallest valid peak of a dtype, sqrt(smallest normal): below it 1/a^2 overflows.
double min_peak_of(at::ScalarType t) {
  return std::sqrt(t == at::kFloat ? double(std::numeric_limits<float>::min())
                                   : std::numeric_limits<double>::min());
}

}  // namespace

Problem make_problem(const char* op, const at::Tensor& x, const at::Tensor& peaks,
                     const std::optional<at::Tensor>& scales, int64_t sign,
                     const NamedTensor& head, bool validate) {
  TORCH_CHECK(sign == 1 || sign == -1, op, ": `sign` must be -1 or +1, got ", sign);
  TORCH_CHECK(peaks.scalar_type() == at::kFloat || peaks.scalar_type() == at::kDouble, op,
              ": `peaks` must be float32 or float64, got ", peaks.scalar_type());
  TORCH_CHECK(peaks.dim() == 2 && peaks.size(1) >= 2, op,
              ": `peaks` must be [S, D+1] with D >= 1, got ", peaks.sizes());
  TORCH_CHECK(peaks.size(1) - 1 <= INT32_MAX, op, ": depth too large");
  Problem p;
  p.S = peaks.size(0);
  p.D = static_cast<int>(peaks.size(1) - 1);
  p.sign = static_cast<int>(sign);
  p.x = points_arg(op, "x", x, "peaks", peaks, p.S, -1, p.x_shared);
  p.N = x.size(x.dim() - 1);
  p.peaks = peaks.contiguous();
  if (scales.has_value()) {
    check_like(op, "scales", *scales, "peaks", peaks);
    TORCH_CHECK(scales->dim() == 2 && scales->size(0) == p.S && scales->size(1) == p.D, op,
                ": `scales` must be [S, D] = [", p.S, ", ", p.D, "], got ", scales->sizes());
    p.scales = scales->contiguous();
  }
  if (head.tensor.has_value())
    p.head = points_arg(op, head.name, *head.tensor, "peaks", peaks, p.S, p.N, p.head_shared,
                        true);
  if (validate) {
    // Below sqrt(smallest normal) 1/a^2 (the peak gradient) overflows, and below 1/max 1/a does.
    const double min_peak = min_peak_of(p.peaks.scalar_type());
    // One min-max reduction per tensor (NaN propagates into both) and one copy of them all to
    // the host: a CUDA input costs one sync and a handful of launches.
    const at::Tensor* checked[] = {&p.peaks, &p.x, &p.scales, &p.head};
    std::vector<at::Tensor> ends;
    for (const at::Tensor* t : checked) {
      if (t->defined() && t->numel() > 0) {
        auto [lo, hi] = at::aminmax(*t);
        ends.push_back(lo);
        ends.push_back(hi);
      }
    }
    const at::Tensor host = ends.empty() ? at::Tensor() : at::stack(ends).to(at::kCPU, at::kDouble);
    const double* e = host.defined() ? host.data_ptr<double>() : nullptr;
    for (const at::Tensor* t : checked) {
      if (!(t->defined() && t->numel() > 0)) continue;
      const double lo = e[0], hi = e[1];
      e += 2;
      const bool finite = std::isfinite(lo) && std::isfinite(hi);
      if (t == &p.peaks) {
        TORCH_CHECK(finite, op, ": `peaks` contains NaN or Inf");
        TORCH_CHECK(lo >= min_peak && hi < 1, op, ": `peaks` must lie in the open interval (0, 1), "
                    "and be at least ", min_peak, " in ", p.peaks.scalar_type(),
                    " (smaller peaks overflow 1/a^2)");
      } else if (t == &p.x) {
        TORCH_CHECK(finite, op, ": `x` contains NaN or Inf");
        TORCH_CHECK(lo >= 0 && hi <= 1, op, ": `x` must lie in [0, 1]");
      } else {
        TORCH_CHECK(finite, op, ": `", t == &p.scales ? "scales" : head.name,
                    "` contains NaN or Inf");
      }
    }
  }
  return p;
}

AdamConfig train_peaks_config(int64_t epochs, double lr, double beta1, double beta2, double eps,
                              double peak_min, double peak_max, int64_t record_every,
                              int64_t step, int64_t warmup, at::ScalarType dtype) {
  const char* op = "compnet_ext.train_peaks";
  AdamConfig cfg = make_adam_config(op, epochs, lr, beta1, beta2, eps, record_every, step,
                                    warmup);
  TORCH_CHECK(peak_min > 0 && peak_max < 1 && peak_min <= peak_max, op,
              ": `peak_bounds` must satisfy 0 < lo <= hi < 1, got (", peak_min, ", ", peak_max, ")");
  TORCH_CHECK(peak_min >= min_peak_of(dtype), op, ": `peak_bounds` lo must be at least ",
              min_peak_of(dtype), " in ", dtype, " (smaller peaks overflow 1/a^2), got ", peak_min);
  cfg.peak_min = peak_min;
  cfg.peak_max = peak_max;
  return cfg;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> make_train_outputs(
    const Problem& p, const AdamConfig& cfg, const std::optional<at::Tensor>& state) {
  const auto opts = p.peaks.options();
  const int64_t P = p.D + 1 + (p.smooth() ? 0 : p.D);
  return {p.peaks.clone(), p.smooth() ? at::empty({0}, opts) : p.scales.clone(),
          at::zeros({p.S}, opts), at::zeros({p.S, curve_records(cfg)}, opts),
          adam_state("compnet_ext.train_peaks", state, p.peaks, p.S, P)};
}

}  // namespace cn
