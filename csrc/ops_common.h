// Torch glue shared by the CPU and CUDA drivers: argument checking and output shapes.
// The friendly, argument-naming checks of shapes and dtypes live in Python (compnet_ext/ops.py);
// the ones here guard memory safety for direct torch.ops calls and do the value checks, which
// must run inside the op so that torch.compile graphs keep them.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace cn {

struct Problem {
  at::Tensor x, peaks, scales, target;  // contiguous; scales/target undefined when absent
  int64_t S = 0, N = 0;
  int D = 0;
  int sign = -1;
  bool x_shared = true;       // x is [N] (stride 0 over seeds)
  bool target_shared = true;  // target is [N]
  bool smooth() const { return !scales.defined(); }
};

// Checks metadata always and values when `validate` (one host sync on CUDA).
Problem make_problem(const char* op, const at::Tensor& x, const at::Tensor& peaks,
                     const std::optional<at::Tensor>& scales, int64_t sign,
                     const std::optional<at::Tensor>& target, bool validate);

}  // namespace cn
