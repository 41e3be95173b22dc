// Torch glue for the batched-MLP CUDA kernels: checks, allocation, stream, dispatch.
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/cuda_glue.h"
#include "mlp/kernels.h"
#include "mlp/problem.h"

namespace cn {
namespace {

cuda::MlpDims dims(const MlpProblem& p) { return {p.S, p.N, p.x_shared, p.head_shared}; }

at::Tensor mlp_forward_cuda(const at::Tensor& x, const at::Tensor& params,
                            at::IntArrayRef widths) {
  const c10::cuda::CUDAGuard guard(params.device());
  const MlpProblem p = make_mlp_problem("compnet_ext.mlp_forward", x, params, widths, {});
  at::Tensor y = at::empty({p.S, p.N}, p.params.options());
  AT_DISPATCH_FLOATING_TYPES(p.params.scalar_type(), "mlp_forward_cuda", [&] {
    using T = scalar_t;
    check_launch("compnet_ext.mlp_forward",
                 cuda::mlp_forward<T>(p.shape, dims(p), p.x.data_ptr<T>(), p.params.data_ptr<T>(),
                                      y.data_ptr<T>(), current_stream()));
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor> mlp_backward_cuda(const at::Tensor& grad_y, const at::Tensor& x,
                                                     const at::Tensor& params,
                                                     at::IntArrayRef widths, bool need_x) {
  const c10::cuda::CUDAGuard guard(params.device());
  const MlpProblem p =
      make_mlp_problem("compnet_ext.mlp_backward", x, params, widths, {"grad_y", grad_y});
  TORCH_CHECK(!p.head_shared, "compnet_ext.mlp_backward: `grad_y` must be [S, N]");
  const auto opts = p.params.options();
  at::Tensor gp = at::empty({p.S, p.shape.params}, opts);
  at::Tensor gx = need_x ? at::empty({p.S, p.N}, opts) : at::empty({0}, opts);
  AT_DISPATCH_FLOATING_TYPES(p.params.scalar_type(), "mlp_backward_cuda", [&] {
    using T = scalar_t;
    check_launch("compnet_ext.mlp_backward",
                 cuda::mlp_backward<T>(p.shape, dims(p), p.x.data_ptr<T>(),
                                       p.params.data_ptr<T>(), p.head.data_ptr<T>(), nullptr,
                                       need_x ? gx.data_ptr<T>() : nullptr, gp.data_ptr<T>(),
                                       current_stream()));
  });
  if (need_x && p.x_shared) gx = gx.sum(0);
  return {gx, gp};
}

std::tuple<at::Tensor, at::Tensor> mlp_loss_and_grad_cuda(const at::Tensor& x,
                                                          const at::Tensor& target,
                                                          const at::Tensor& params,
                                                          at::IntArrayRef widths) {
  const c10::cuda::CUDAGuard guard(params.device());
  const MlpProblem p =
      make_mlp_problem("compnet_ext.mlp_loss_and_grad", x, params, widths, {"target", target});
  const auto opts = p.params.options();
  at::Tensor loss = at::zeros({p.S}, opts);
  at::Tensor gp = at::empty({p.S, p.shape.params}, opts);
  AT_DISPATCH_FLOATING_TYPES(p.params.scalar_type(), "mlp_loss_and_grad_cuda", [&] {
    using T = scalar_t;
    check_launch("compnet_ext.mlp_loss_and_grad",
                 cuda::mlp_backward<T>(p.shape, dims(p), p.x.data_ptr<T>(),
                                       p.params.data_ptr<T>(), p.head.data_ptr<T>(),
                                       loss.data_ptr<T>(), nullptr, gp.data_ptr<T>(),
                                       current_stream()));
  });
  return {loss, gp};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mlp_train_cuda(
    const at::Tensor& x, const at::Tensor& target, const at::Tensor& params,
    at::IntArrayRef widths, int64_t epochs, double lr, double beta1, double beta2, double eps,
    int64_t record_every, const std::optional<at::Tensor>& state, int64_t step) {
  const c10::cuda::CUDAGuard guard(params.device());
  const MlpProblem p =
      make_mlp_problem("compnet_ext.mlp_train", x, params, widths, {"target", target});
  const AdamConfig cfg = mlp_train_config(epochs, lr, beta1, beta2, eps, record_every, step);
  auto [out, loss, curve, out_state] = make_mlp_train_outputs(p, cfg, state);
  const TrainWorkspace ws =
      train_workspace(p.S, cuda::mlp_train_workspace_values(p.shape), p.params);
  AT_DISPATCH_FLOATING_TYPES(p.params.scalar_type(), "mlp_train_cuda", [&] {
    using T = scalar_t;
    check_launch("compnet_ext.mlp_train",
                 cuda::mlp_train<T>(p.shape, dims(p), cfg, ws.plan, p.x.data_ptr<T>(),
                                    p.head.data_ptr<T>(), out.data_ptr<T>(), loss.data_ptr<T>(),
                                    curve.data_ptr<T>(), curve.size(1), out_state.data_ptr<T>(),
                                    ptr_or_null<T>(ws.spill), current_stream()));
  });
  return {out, loss, curve, out_state};
}

}  // namespace

TORCH_LIBRARY_IMPL(compnet_ext, CUDA, m) {
  m.impl("mlp_forward", &mlp_forward_cuda);
  m.impl("mlp_backward", &mlp_backward_cuda);
  m.impl("mlp_loss_and_grad", &mlp_loss_and_grad_cuda);
  m.impl("mlp_train", &mlp_train_cuda);
}

}  // namespace cn
