// Torch glue of the compositional network's ops, shared by the CPU and CUDA drivers: argument
// checks and the outputs of train_peaks. The friendly, argument-naming checks of shapes and
// dtypes run first in Python; the ones here guard memory safety for direct torch.ops calls and
// do the value checks, which must run inside the op so that torch.compile graphs keep them.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

#include "../common/adam.h"
#include "../common/tensors.h"

namespace cn {

struct Problem {
  at::Tensor x, peaks, scales, head;  // contiguous; scales/head undefined when absent
  int64_t S = 0, N = 0;
  int D = 0;
  int sign = -1;
  bool x_shared = true;     // x is [N] (stride 0 over seeds)
  bool head_shared = true;  // the head (target or grad_y) is one row (points_arg)
  bool smooth() const { return !scales.defined(); }
};

// Checks metadata always and values when `validate` (one host sync on CUDA).
Problem make_problem(const char* op, const at::Tensor& x, const at::Tensor& peaks,
                     const std::optional<at::Tensor>& scales, int64_t sign,
                     const NamedTensor& head, bool validate);

// Checks the stage-1 hyper-parameters (names the argument on error); the peaks (of `dtype`) are
// clamped to [peak_min, peak_max].
AdamConfig train_peaks_config(int64_t epochs, double lr, double beta1, double beta2, double eps,
                              double peak_min, double peak_max, int64_t record_every,
                              int64_t step, int64_t warmup, at::ScalarType dtype);

// Outputs of train_peaks, initialised from the inputs: peaks, scales (empty in smooth mode),
// final loss [S], loss curve [S, epochs / record_every], Adam state [S, 2, (D+1) + D] (the
// peaks' moments, then the free scales'; D + 1 columns in smooth mode).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> make_train_outputs(
    const Problem& p, const AdamConfig& cfg, const std::optional<at::Tensor>& state);

}  // namespace cn
