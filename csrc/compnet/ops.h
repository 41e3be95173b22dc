// The compositional network's ops (schemas in registration.cpp), written once for both devices:
// argument checks, outputs, the cases with nothing to compute, and which kernel runs. `Device`
// supplies the kernels (struct Cpu in compnet/cpu.cpp, struct Cuda in compnet/cuda.cpp); each
// gets the op's name for its errors and runs only when there is something to compute:
//   Guard(device)                      makes the tensors' device current while it lives
//   forward(op, p, y)                  y [S, N]; S, N > 0
//   backward(op, p, loss, gx, gp, gs)  S, N > 0. loss [S] defined: the head is the target and the
//                                      gradients are of loss.sum(); undefined: the head is grad_y
//                                      and the gradients are of sum(grad_y * y). gx [S, N],
//                                      gp [S, D+1], gs [S, D] are empty when not requested.
//   train(op, p, cfg, peaks, scales, loss, curve, state)
//                                      the outputs of make_train_outputs, trained in place; S > 0
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "../common/tensors.h"
#include "problem.h"

namespace cn {

template <typename Device>
at::Tensor forward_op(const at::Tensor& x, const at::Tensor& peaks,
                      const std::optional<at::Tensor>& scales, int64_t sign, bool validate) {
  const char* op = "compnet_ext.forward";
  const typename Device::Guard guard(peaks.device());
  const Problem p = make_problem(op, x, peaks, scales, sign, {}, validate);
  at::Tensor y = at::empty({p.S, p.N}, p.peaks.options());
  if (y.numel() > 0) Device::forward(op, p, y);
  return y;
}

template <typename Device>
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_op(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& peaks,
    const std::optional<at::Tensor>& scales, int64_t sign, bool need_x, bool need_peaks,
    bool need_scales) {
  const char* op = "compnet_ext.backward";
  const typename Device::Guard guard(peaks.device());
  const Problem p = make_problem(op, x, peaks, scales, sign, {"grad_y", grad_y}, false);
  TORCH_CHECK(grad_y.dim() == 2, op, ": `grad_y` must be [S, N]");
  need_scales = need_scales && !p.smooth();
  const bool run = p.S > 0 && p.N > 0 && (need_x || need_peaks || need_scales);
  const auto opts = p.peaks.options();
  at::Tensor gx = grad_output(need_x, run, {p.S, p.N}, opts);
  at::Tensor gp = grad_output(need_peaks, run, {p.S, p.D + 1}, opts);
  at::Tensor gs = grad_output(need_scales, run, {p.S, p.D}, opts);
  if (run) Device::backward(op, p, at::Tensor(), gx, gp, gs);
  if (need_x && p.x_shared) gx = gx.sum(0);
  return {gx, gp, gs};
}

template <typename Device>
std::tuple<at::Tensor, at::Tensor, at::Tensor> loss_and_grad_op(
    const at::Tensor& x, const at::Tensor& target, const at::Tensor& peaks,
    const std::optional<at::Tensor>& scales, int64_t sign, bool validate) {
  const char* op = "compnet_ext.loss_and_grad";
  const typename Device::Guard guard(peaks.device());
  const Problem p = make_problem(op, x, peaks, scales, sign, {"target", target}, validate);
  const bool run = p.S > 0 && p.N > 0;
  const auto opts = p.peaks.options();
  // Written by the kernel when it runs; 0 with no points (not torch.mean's NaN). No fill
  // otherwise: on CUDA that would be one more launch per call.
  at::Tensor loss = run ? at::empty({p.S}, opts) : at::zeros({p.S}, opts);
  at::Tensor gx = at::empty({0}, opts);
  at::Tensor gp = grad_output(true, run, {p.S, p.D + 1}, opts);
  at::Tensor gs = grad_output(!p.smooth(), run, {p.S, p.D}, opts);
  if (run) Device::backward(op, p, loss, gx, gp, gs);
  return {loss, gp, gs};
}

template <typename Device>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> train_peaks_op(
    const at::Tensor& x, const at::Tensor& target, const at::Tensor& peaks,
    const std::optional<at::Tensor>& scales, int64_t sign, int64_t epochs, double lr,
    double beta1, double beta2, double eps, double peak_min, double peak_max,
    int64_t record_every, bool validate, const std::optional<at::Tensor>& state, int64_t step,
    int64_t warmup) {
  const char* op = "compnet_ext.train_peaks";
  const typename Device::Guard guard(peaks.device());
  const Problem p = make_problem(op, x, peaks, scales, sign, {"target", target}, validate);
  const AdamConfig cfg = train_peaks_config(epochs, lr, beta1, beta2, eps, peak_min, peak_max,
                                            record_every, step, warmup, p.peaks.scalar_type());
  auto [out_peaks, out_scales, loss, curve, out_state] = make_train_outputs(p, cfg, state);
  // With no points every gradient is 0, but a continued run's Adam moments still move the
  // parameters, so the steps run all the same.
  if (p.S > 0) Device::train(op, p, cfg, out_peaks, out_scales, loss, curve, out_state);
  return {out_peaks, out_scales, loss, curve, out_state};
}

template <typename Device>
void register_ops(torch::Library& m) {
  m.impl("forward", &forward_op<Device>);
  m.impl("backward", &backward_op<Device>);
  m.impl("loss_and_grad", &loss_and_grad_op<Device>);
  m.impl("train_peaks", &train_peaks_op<Device>);
}

}  // namespace cn
