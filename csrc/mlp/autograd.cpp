// BatchedMLP's autograd node in C++, for eager calls that record a graph (mlp_ops.mlp_forward):
// as compnet/autograd.cpp is for the compositional network. One node for the whole net: the
// parameters are packed inside it (one `cat`, no `flatten` or `cat` nodes recorded), the fused
// backward's packed gradient reaches each W and b as a view, and neither pass runs Python
// (a create_graph backward calls mlp_ops._reference_vjp, the batched-matmul reference).
#include "autograd.h"

#include <c10/util/accumulate.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/extension.h>

#include "../common/below_autograd.h"

namespace cn {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct MlpForward : torch::autograd::Function<MlpForward> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            const std::vector<int64_t>& widths, at::TensorList tensors) {
    std::vector<at::Tensor> rows;
    rows.reserve(tensors.size());
    for (const at::Tensor& t : tensors) rows.push_back(t.flatten(1));
    const at::Tensor params = at::cat(rows, 1);
    static const BelowAutograd<at::Tensor(const at::Tensor&, const at::Tensor&, at::IntArrayRef)>
        mlp_forward_below("compnet_ext::mlp_forward");
    at::Tensor y = mlp_forward_below(x, params, widths);
    variable_list saved{x, params};
    saved.insert(saved.end(), tensors.begin(), tensors.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["widths"] = widths;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &params = saved[1];
    const std::vector<int64_t> widths = ctx->saved_data["widths"].toIntVector();
    const size_t n = saved.size() - 2;
    // one entry per forward argument (x, widths: none, each tensor); needs_input_grad counts
    // the tensor arguments only (x, then each tensor)
    variable_list out(n + 2);
    const bool need_x = ctx->needs_input_grad(0);
    if (at::GradMode::is_enabled()) {
      // create_graph=True: a backward that is itself differentiable (mlp_ops._reference_vjp)
      std::vector<bool> need(n);
      for (size_t k = 0; k < n; ++k) need[k] = ctx->needs_input_grad(k + 1);
      pybind11::gil_scoped_acquire gil;
      pybind11::object vjp =
          pybind11::module_::import("compnet_ext.mlp_ops").attr("_reference_vjp");
      const variable_list tensors(saved.begin() + 2, saved.end());
      const auto g = vjp(grads[0], x, tensors, need_x, need)
                         .cast<std::vector<std::optional<at::Tensor>>>();
      out[0] = g[0].value_or(at::Tensor());
      for (size_t k = 0; k < n; ++k) out[k + 2] = g[k + 1].value_or(at::Tensor());
      return out;
    }
    static const BelowAutograd<std::tuple<at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const at::Tensor&, at::IntArrayRef, bool)>
        mlp_backward_below("compnet_ext::mlp_backward");
    auto [gx, gp] = mlp_backward_below(grads[0], x, params, widths, need_x);
    if (need_x) out[0] = gx;
    int64_t col = 0;
    for (size_t k = 0; k < n; ++k) {
      const at::Tensor& t = saved[k + 2];
      const int64_t cols = c10::multiply_integers(t.sizes().slice(1));
      if (ctx->needs_input_grad(k + 1)) out[k + 2] = gp.narrow(1, col, cols).view(t.sizes());
      col += cols;
    }
    return out;
  }
};

at::Tensor mlp_forward_autograd(const at::Tensor& x, const std::vector<int64_t>& widths,
                                const std::vector<at::Tensor>& tensors) {
  return MlpForward::apply(x, widths, at::TensorList(tensors));
}

}  // namespace cn
