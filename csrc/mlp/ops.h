// The batched-MLP ops (schemas in registration.cpp), written once for both devices: argument
// checks, outputs, the cases with nothing to compute, and which kernel runs. `Device` supplies
// the kernels (struct Cpu in mlp/cpu.cpp, struct Cuda in mlp/cuda.cpp); each gets the op's name
// for its errors and runs only when there is something to compute:
//   Guard(device)                   makes the tensors' device current while it lives
//   forward(op, p, y)               y [S, N]; S, N > 0
//   backward(op, p, loss, gx, gp)   S, N > 0. loss [S] defined: the head is the target and the
//                                   gradients are of loss.sum(); undefined: the head is grad_y and
//                                   the gradients are of sum(grad_y * y). gp [S, P]; gx [S, N] is
//                                   empty when not requested.
//   train(op, p, cfg, params, loss, curve, state)
//                                   the outputs of make_mlp_train_outputs, trained in place; S > 0
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "../common/tensors.h"
#include "problem.h"

namespace cn {

template <typename Device>
at::Tensor mlp_forward_op(const at::Tensor& x, const at::Tensor& params, at::IntArrayRef widths) {
  const char* op = "compnet_ext.mlp_forward";
  const typename Device::Guard guard(params.device());
  const MlpProblem p = make_mlp_problem(op, x, params, widths, {});
  at::Tensor y = at::empty({p.S, p.N}, p.params.options());
  if (y.numel() > 0) Device::forward(op, p, y);
  return y;
}

template <typename Device>
std::tuple<at::Tensor, at::Tensor> mlp_backward_op(const at::Tensor& grad_y, const at::Tensor& x,
                                                   const at::Tensor& params,
                                                   at::IntArrayRef widths, bool need_x) {
  const char* op = "compnet_ext.mlp_backward";
  const typename Device::Guard guard(params.device());
  const MlpProblem p = make_mlp_problem(op, x, params, widths, {"grad_y", grad_y});
  TORCH_CHECK(grad_y.dim() == 2, op, ": `grad_y` must be [S, N]");
  const bool run = p.S > 0 && p.N > 0;
  const auto opts = p.params.options();
  at::Tensor gp = grad_output(true, run, {p.S, p.shape.params}, opts);
  at::Tensor gx = grad_output(need_x, run, {p.S, p.N}, opts);
  if (run) Device::backward(op, p, at::Tensor(), gx, gp);
  if (need_x && p.x_shared) gx = gx.sum(0);
  return {gx, gp};
}

template <typename Device>
std::tuple<at::Tensor, at::Tensor> mlp_loss_and_grad_op(const at::Tensor& x,
                                                        const at::Tensor& target,
                                                        const at::Tensor& params,
                                                        at::IntArrayRef widths) {
  const char* op = "compnet_ext.mlp_loss_and_grad";
  const typename Device::Guard guard(params.device());
  const MlpProblem p = make_mlp_problem(op, x, params, widths, {"target", target});
  const bool run = p.S > 0 && p.N > 0;
  const auto opts = p.params.options();
  // Written by the kernel when it runs; 0 with no points (not torch.mean's NaN). No fill
  // otherwise: on CUDA that would be one more launch per call.
  at::Tensor loss = run ? at::empty({p.S}, opts) : at::zeros({p.S}, opts);
  at::Tensor gp = grad_output(true, run, {p.S, p.shape.params}, opts);
  if (run) Device::backward(op, p, loss, at::empty({0}, opts), gp);
  return {loss, gp};
}

template <typename Device>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mlp_train_op(
    const at::Tensor& x, const at::Tensor& target, const at::Tensor& params,
    at::IntArrayRef widths, int64_t epochs, double lr, double beta1, double beta2, double eps,
    int64_t record_every, const std::optional<at::Tensor>& state, int64_t step, int64_t warmup) {
  const char* op = "compnet_ext.mlp_train";
  const typename Device::Guard guard(params.device());
  const MlpProblem p = make_mlp_problem(op, x, params, widths, {"target", target});
  const AdamConfig cfg = mlp_train_config(epochs, lr, beta1, beta2, eps, record_every, step, warmup);
  auto [out, loss, curve, out_state] = make_mlp_train_outputs(p, cfg, state);
  // With no points every gradient is 0, but a continued run's Adam moments still move the
  // parameters, so the steps run all the same.
  if (p.S > 0) Device::train(op, p, cfg, out, loss, curve, out_state);
  return {out, loss, curve, out_state};
}

template <typename Device>
void register_mlp_ops(torch::Library& m) {
  m.impl("mlp_forward", &mlp_forward_op<Device>);
  m.impl("mlp_backward", &mlp_backward_op<Device>);
  m.impl("mlp_loss_and_grad", &mlp_loss_and_grad_op<Device>);
  m.impl("mlp_train", &mlp_train_op<Device>);
}

}  // namespace cn
