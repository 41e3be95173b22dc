// Torch glue shared by both network families: checks of the per-point tensors (x, and the target
// or grad_y). They guard memory safety for direct torch.ops calls; the friendly, argument-naming
// checks run first in Python.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <optional>

namespace cn {

// The per-point tensor that a pass reads beside x: the target of a loss, or grad_y of a
// backward. Its name travels with it into the error messages.
struct NamedTensor {
  const char* name = nullptr;
  std::optional<at::Tensor> tensor;  // nullopt: the pass reads none
};

// `t` (named `name`) must have the dtype and device of the parameters `ref` (named `ref_name`).
inline void check_like(const char* op, const char* name, const at::Tensor& t,
                       const char* ref_name, const at::Tensor& ref) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": `", name, "` has dtype ",
              t.scalar_type(), " but `", ref_name, "` has ", ref.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), op, ": `", name, "` is on ", t.device(), " but `",
              ref_name, "` is on ", ref.device());
}

// `t` must be [N] (shared by all seeds) or [S, N]; N < 0 accepts any N. Returns whether shared.
inline bool check_points(const char* op, const char* name, const at::Tensor& t, int64_t S,
                         int64_t N) {
  TORCH_CHECK(t.dim() == 1 || t.dim() == 2, op, ": `", name, "` must be [N] or [S, N], got ",
              t.sizes());
  if (t.dim() == 2) {
    TORCH_CHECK(t.size(0) == S && (N < 0 || t.size(1) == N), op, ": `", name, "` has shape ",
                t.sizes(), ", expected [", S, ", N]");
  } else {
    TORCH_CHECK(N < 0 || t.size(0) == N, op, ": `", name, "` has ", t.size(0),
                " points, expected ", N);
  }
  return t.dim() == 1;
}

}  // namespace cn
