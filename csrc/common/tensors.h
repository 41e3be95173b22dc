// Torch glue shared by both network families and both devices: checks of the per-point tensor
// arguments (x, and the target or grad_y), gradient outputs, data pointers, and the CPU's device
// guard. The checks guard memory safety for direct torch.ops calls; the friendly,
// argument-naming checks run first in Python.
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

// `t` (named `name`), a per-point argument: the dtype and device of `ref`, [N] (shared by all
// seeds) or [S, N]; N < 0 accepts any N. Returns it contiguous, and sets `shared`. With
// `share_rows`, an [S, N] whose rows are one row in memory (stride 0 over seeds: an expand, as
// the grad_y that y.sum().backward() passes) is read as that row, shared, rather than copied
// into S rows (on CUDA one launch and S x N writes fewer); the caller must then not take
// `shared` to mean that t was [N].
inline at::Tensor points_arg(const char* op, const char* name, const at::Tensor& t,
                             const char* ref_name, const at::Tensor& ref, int64_t S, int64_t N,
                             bool& shared, bool share_rows = false) {
  check_like(op, name, t, ref_name, ref);
  TORCH_CHECK(t.dim() == 1 || t.dim() == 2, op, ": `", name, "` must be [N] or [S, N], got ",
              t.sizes());
  if (t.dim() == 2) {
    TORCH_CHECK(t.size(0) == S && (N < 0 || t.size(1) == N), op, ": `", name, "` has shape ",
                t.sizes(), ", expected [", S, ", N]");
  } else {
    TORCH_CHECK(N < 0 || t.size(0) == N, op, ": `", name, "` has ", t.size(0),
                " points, expected ", N);
  }
  if (share_rows && t.dim() == 2 && S > 1 && t.stride(0) == 0) {
    shared = true;
    return t[0].contiguous();
  }
  shared = t.dim() == 1;
  return t.contiguous();
}

// A gradient output of `shape`: empty when not requested; uninitialised when a kernel will write
// all of it (`computed`), else zeros (the gradient of a sum over no points, or of no seeds).
inline at::Tensor grad_output(bool requested, bool computed, at::IntArrayRef shape,
                              const at::TensorOptions& opts) {
  if (!requested) return at::empty({0}, opts);
  return computed ? at::empty(shape, opts) : at::zeros(shape, opts);
}

// The data pointer of t, or nullptr when t is undefined or empty (an output not requested).
template <typename T>
T* ptr_or_null(const at::Tensor& t) {
  return t.defined() && t.numel() > 0 ? t.data_ptr<T>() : nullptr;
}

// The device guard of the CPU drivers: the CPU has no current device to set.
struct NoDeviceGuard {
  explicit NoDeviceGuard(const at::Device&) {}
};

}  // namespace cn
