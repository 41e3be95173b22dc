// compnet_ext.forward's autograd node in C++, for eager calls that record a graph (ops.forward):
// the same forward and backward as the op's registered autograd (ops.py: _setup_context,
// _backward), without Python in either. A Python autograd.Function costs ~15 us per
// forward+backward on the host, and its backward takes the GIL on the autograd engine's thread,
// which on CUDA is not the caller's (docs/gpu.md, "Per-call cost and graphs"). torch.compile,
// torch.func and forward mode keep the registered autograd (ops.py).
#include "autograd.h"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/extension.h>

#include "../common/below_autograd.h"

namespace cn {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct CompnetForward : torch::autograd::Function<CompnetForward> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& peaks,
                            const std::optional<at::Tensor>& scales, int64_t sign,
                            bool validate) {
    static const BelowAutograd<at::Tensor(const at::Tensor&, const at::Tensor&,
                                          const std::optional<at::Tensor>&, int64_t, bool)>
        forward_below("compnet_ext::forward");
    at::Tensor y = forward_below(x, peaks, scales, sign, validate);
    ctx->save_for_backward({x, peaks, scales.value_or(at::Tensor())});
    ctx->saved_data["sign"] = sign;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &peaks = saved[1];
    const std::optional<at::Tensor> scales =
        saved[2].defined() ? std::optional<at::Tensor>(saved[2]) : std::nullopt;
    const int64_t sign = ctx->saved_data["sign"].toInt();
    const bool need_x = ctx->needs_input_grad(0), need_peaks = ctx->needs_input_grad(1);
    const bool need_scales = scales.has_value() && ctx->needs_input_grad(2);
    at::Tensor gx, gp, gs;
    if (at::GradMode::is_enabled()) {
      // create_graph=True: a backward that is itself differentiable, through the reference
      // (ops._reference_vjp), as the registered autograd does.
      pybind11::gil_scoped_acquire gil;
      pybind11::object vjp = pybind11::module_::import("compnet_ext.ops").attr("_reference_vjp");
      using Maybe = std::optional<at::Tensor>;  // None where not needed
      const auto [mx, mp, ms] = vjp(grads[0], x, peaks, scales, sign, need_x, need_peaks,
                                    need_scales).cast<std::tuple<Maybe, Maybe, Maybe>>();
      gx = mx.value_or(at::Tensor()), gp = mp.value_or(at::Tensor()), gs = ms.value_or(at::Tensor());
    } else {
      using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
      static const BelowAutograd<Grads(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                       const std::optional<at::Tensor>&, int64_t, bool, bool,
                                       bool)>
          backward_below("compnet_ext::backward");
      std::tie(gx, gp, gs) =
          backward_below(grads[0], x, peaks, scales, sign, need_x, need_peaks, need_scales);
    }
    // one entry per forward argument; sign and validate have none
    return {need_x ? gx : at::Tensor(), need_peaks ? gp : at::Tensor(),
            need_scales ? gs : at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor forward_autograd(const at::Tensor& x, const at::Tensor& peaks,
                            const std::optional<at::Tensor>& scales, int64_t sign,
                            bool validate) {
  return CompnetForward::apply(x, peaks, scales, sign, validate);
}

}  // namespace cn
