// Torch glue for the compositional network's CUDA kernels: checks, allocation, stream, dispatch.
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/cuda_glue.h"
#include "compnet/kernels.h"
#include "compnet/problem.h"

namespace cn {
namespace {

cuda::Dims dims(const Problem& p) { return {p.S, p.N, p.D, p.sign, p.x_shared, p.head_shared}; }

at::Tensor forward_cuda(const at::Tensor& x, const at::Tensor& peaks,
                        const std::optional<at::Tensor>& scales, int64_t sign, bool validate) {
  const c10::cuda::CUDAGuard guard(peaks.device());
  const Problem p = make_problem("compnet_ext.forward", x, peaks, scales, sign, {}, validate);
  at::Tensor y = at::empty({p.S, p.N}, p.peaks.options());
  AT_DISPATCH_FLOATING_TYPES(p.peaks.scalar_type(), "compnet_forward_cuda", [&] {
    using T = scalar_t;
    check_launch("compnet_ext.forward",
                 cuda::forward<T>(dims(p), p.x.data_ptr<T>(), p.peaks.data_ptr<T>(),
                                  ptr_or_null<T>(p.scales), y.data_ptr<T>(), current_stream()));
  });
  return y;
}

// Shared by backward and loss_and_grad (one kernel, two heads).
std::tuple<at::Tensor, at::Tensor, at::Tensor> run_backward(const char* op, const Problem& p,
                                                            bool loss_mode, bool need_x,
                                                            bool need_peaks, bool need_scales,
                                                            at::Tensor* loss) {
  const auto opts = p.peaks.options();
  need_scales = need_scales && !p.smooth();
  at::Tensor gx = need_x ? at::empty({p.S, p.N}, opts) : at::empty({0}, opts);
  at::Tensor gp = need_peaks ? at::empty({p.S, p.D + 1}, opts) : at::empty({0}, opts);
  at::Tensor gs = need_scales ? at::empty({p.S, p.D}, opts) : at::empty({0}, opts);
  at::Tensor scratch = p.smooth() ? at::empty({p.S, 2 * p.D}, opts) : at::empty({0}, opts);
  if (p.N == 0) {  // kernels skip; gradients of an empty sum are zero
    gx.zero_();
    gp.zero_();
    gs.zero_();
  }
  AT_DISPATCH_FLOATING_TYPES(p.peaks.scalar_type(), "compnet_backward_cuda", [&] {
    using T = scalar_t;
    check_launch(op, cuda::backward<T>(dims(p), p.x.data_ptr<T>(), p.peaks.data_ptr<T>(),
                                       ptr_or_null<T>(p.scales), p.head.data_ptr<T>(),
                                       loss_mode ? loss->data_ptr<T>() : nullptr,
                                       ptr_or_null<T>(gx), ptr_or_null<T>(gp),
                                       ptr_or_null<T>(gs), ptr_or_null<T>(scratch),
                                       current_stream()));
  });
  if (need_x && p.x_shared) gx = gx.sum(0);
  return {gx, gp, gs};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cuda(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& peaks,
    const std::optional<at::Tensor>& scales, int64_t sign, bool need_x, bool need_peaks,
    bool need_scales) {
  const c10::cuda::CUDAGuard guard(peaks.device());
  const Problem p =
      make_problem("compnet_ext.backward", x, peaks, scales, sign, {"grad_y", grad_y}, false);
  TORCH_CHECK(!p.head_shared, "compnet_ext.backward: `grad_y` must be [S, N]");
  return run_backward("compnet_ext.backward", p, false, need_x, need_peaks, need_scales, nullptr);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> loss_and_grad_cuda(
    const at::Tensor& x, const at::Tensor& target, const at::Tensor& peaks,
    const std::optional<at::Tensor>& scales, int64_t sign, bool validate) {
  const c10::cuda::CUDAGuard guard(peaks.device());
  const Problem p = make_problem("compnet_ext.loss_and_grad", x, peaks, scales, sign,
                                 {"target", target}, validate);
  at::Tensor loss = at::zeros({p.S}, p.peaks.options());
  auto [gx, gp, gs] =
      run_backward("compnet_ext.loss_and_grad", p, true, false, true, true, &loss);
  return {loss, gp, gs};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> train_peaks_cuda(
    const at::Tensor& x, const at::Tensor& target, const at::Tensor& peaks,
    const std::optional<at::Tensor>& scales, int64_t sign, int64_t epochs, double lr,
    double beta1, double beta2, double eps, double peak_min, double peak_max,
    int64_t record_every, bool validate, const std::optional<at::Tensor>& state, int64_t step) {
  const c10::cuda::CUDAGuard guard(peaks.device());
  const Problem p = make_problem("compnet_ext.train_peaks", x, peaks, scales, sign,
                                 {"target", target}, validate);
  const AdamConfig cfg = train_peaks_config(epochs, lr, beta1, beta2, eps, peak_min, peak_max,
                                            record_every, step, p.peaks.scalar_type());
  auto [out_peaks, out_scales, loss, curve, out_state] = make_train_outputs(p, cfg, state);
  const TrainWorkspace ws = train_workspace(p.S, cuda::train_workspace_values(p.D), p.peaks);
  AT_DISPATCH_FLOATING_TYPES(p.peaks.scalar_type(), "compnet_train_peaks_cuda", [&] {
    using T = scalar_t;
    check_launch("compnet_ext.train_peaks",
                 cuda::train<T>(dims(p), cfg, ws.plan, p.x.data_ptr<T>(), p.head.data_ptr<T>(),
                                out_peaks.data_ptr<T>(), ptr_or_null<T>(out_scales),
                                loss.data_ptr<T>(), ptr_or_null<T>(curve), curve.size(1),
                                out_state.data_ptr<T>(), ptr_or_null<T>(ws.spill),
                                current_stream()));
  });
  return {out_peaks, out_scales, loss, curve, out_state};
}

}  // namespace

TORCH_LIBRARY_IMPL(compnet_ext, CUDA, m) {
  m.impl("forward", &forward_cuda);
  m.impl("backward", &backward_cuda);
  m.impl("loss_and_grad", &loss_and_grad_cuda);
  m.impl("train_peaks", &train_peaks_cuda);
}

}  // namespace cn
