// The op schemas, in one place. Backends register implementations with TORCH_LIBRARY_IMPL in
// {compnet,mlp}/cpu.cpp and {compnet,mlp}/cuda.cpp; fake kernels and autograd are registered from
// Python.
#include <torch/extension.h>
#include <torch/library.h>

#include "common/portability.h"  // CN_HAS_FMA
#include "compnet/autograd.h"
#include "mlp/autograd.h"
#include "mlp/math.h"            // the fused MLP kernels' limits

TORCH_LIBRARY(compnet_ext, m) {
  // y [S, N] = x + sign * sum_i s_i W_i(x); scales None means smooth scales from the peaks.
  m.def("forward(Tensor x, Tensor peaks, Tensor? scales, int sign, bool validate) -> Tensor");
  // Gradients of sum(grad_y * y) w.r.t. x, peaks, scales (each empty when not requested).
  m.def(
      "backward(Tensor grad_y, Tensor x, Tensor peaks, Tensor? scales, int sign, bool need_x, "
      "bool need_peaks, bool need_scales) -> (Tensor, Tensor, Tensor)");
  // Per-seed MSE [S] and the gradients of its sum w.r.t. peaks and scales (empty in smooth mode).
  m.def(
      "loss_and_grad(Tensor x, Tensor target, Tensor peaks, Tensor? scales, int sign, "
      "bool validate) -> (Tensor, Tensor, Tensor)");
  // Stage 1 fused: `epochs` Adam steps on the peaks (and free scales) of every seed, each on the
  // loss_and_grad gradient, peaks clamped to [peak_min, peak_max]. Returns the trained peaks,
  // scales (empty in smooth mode), the final per-seed loss [S], the loss before every
  // `record_every`-th step [S, ceil(epochs / record_every)] and the Adam state [S, 2, P] to
  // continue from: `state` (None: fresh) and `step` (steps already taken) continue a run, so a
  // run in chunks equals one launch bitwise. `warmup`: step t < warmup (counted from the run's
  // start, chunks included) takes the learning rate lr * t / warmup.
  m.def(
      "train_peaks(Tensor x, Tensor target, Tensor peaks, Tensor? scales, int sign, int epochs, "
      "float lr, float beta1, float beta2, float eps, float peak_min, float peak_max, "
      "int record_every, bool validate, Tensor? state=None, int step=0, int warmup=0) -> "
      "(Tensor, Tensor, Tensor, Tensor, Tensor)");

  // Batched scalar-in, scalar-out ReLU MLPs (compnet_ext.nn.BatchedMLP). `params` [S, P] holds per
  // seed, for each layer l, W_l [out, in] row-major then b_l [out]; `widths` = (1, hidden.., 1).
  m.def("mlp_forward(Tensor x, Tensor params, int[] widths) -> Tensor");
  // Gradients of sum(grad_y * y) w.r.t. x (empty unless need_x) and params.
  m.def(
      "mlp_backward(Tensor grad_y, Tensor x, Tensor params, int[] widths, bool need_x) -> "
      "(Tensor, Tensor)");
  // Per-seed MSE [S] and the gradient of its sum w.r.t. params, in one pass.
  m.def("mlp_loss_and_grad(Tensor x, Tensor target, Tensor params, int[] widths) -> (Tensor, Tensor)");
  // Stage 2 fused: `epochs` Adam steps on every seed's params, each on the mlp_loss_and_grad
  // gradient. Returns the trained params [S, P], the final per-seed loss [S], the loss before
  // every `record_every`-th step [S, ceil(epochs / record_every)] and the Adam state [S, 2, P]
  // (`state`, `step`: as train_peaks).
  m.def(
      "mlp_train(Tensor x, Tensor target, Tensor params, int[] widths, int epochs, float lr, "
      "float beta1, float beta2, float eps, int record_every, Tensor? state=None, int step=0, "
      "int warmup=0) -> "
      "(Tensor, Tensor, Tensor, Tensor)");
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "compnet_ext compiled kernels (ops are registered under torch.ops.compnet_ext)";
  m.attr("torch_version") = COMPNET_TORCH_VERSION;
  // Whether the CPU kernels use FMA (the default -march=native build on an FMA CPU) or not (a
  // portable COMPNET_NATIVE=0 build): results of the two differ by rounding.
  m.attr("cpu_fma") = bool(CN_HAS_FMA);
  // The one source of the fused MLP kernels' limits (compnet_ext reads them from here).
  m.attr("mlp_max_width") = cn::mlp::kMaxWidth;
  m.attr("mlp_max_hidden") = cn::mlp::kMaxHidden;
  // compnet_ext.forward's eager autograd path (compnet/autograd.cpp)
  m.def("forward_autograd", &cn::forward_autograd, "forward with its autograd node in C++");
  // BatchedMLP's (mlp/autograd.cpp)
  m.def("mlp_forward_autograd", &cn::mlp_forward_autograd,
        "mlp_forward of [W0, b0, ...] with its autograd node in C++");
#ifdef COMPNET_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}
