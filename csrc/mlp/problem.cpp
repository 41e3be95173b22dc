#include "problem.h"

#include <c10/util/Exception.h>

#include <vector>

#include "../common/adam_args.h"

namespace cn {

MlpProblem make_mlp_problem(const char* op, const at::Tensor& x, const at::Tensor& params,
                            at::IntArrayRef widths, const NamedTensor& head) {
  TORCH_CHECK(params.scalar_type() == at::kFloat || params.scalar_type() == at::kDouble, op,
              ": `params` must be float32 or float64, got ", params.scalar_type());
  TORCH_CHECK(params.dim() == 2, op, ": `params` must be [S, P], got ", params.sizes());
  MlpProblem p;
  std::vector<long> w(widths.begin(), widths.end());
  TORCH_CHECK(mlp::make_shape(w.data(), static_cast<int>(w.size()), p.shape), op,
              ": `widths` must start and end with 1, with at most ", mlp::kMaxHidden,
              " hidden layers of widths in [1, ", mlp::kMaxWidth, "], got ", widths);
  TORCH_CHECK(params.size(1) == p.shape.params, op, ": `params` has ", params.size(1),
              " columns but `widths` ", widths, " needs ", p.shape.params);
  p.S = params.size(0);
  p.x = points_arg(op, "x", x, "params", params, p.S, -1, p.x_shared);
  p.N = x.size(-1);
  p.params = params.contiguous();
  if (head.tensor.has_value())
    p.head = points_arg(op, head.name, *head.tensor, "params", params, p.S, p.N,
                        p.head_shared, true);
  return p;
}

AdamConfig mlp_train_config(int64_t epochs, double lr, double beta1, double beta2, double eps,
                            int64_t record_every, int64_t step, int64_t warmup) {
  return make_adam_config("compnet_ext.mlp_train", epochs, lr, beta1, beta2, eps, record_every,
                          step, warmup);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> make_mlp_train_outputs(
    const MlpProblem& p, const AdamConfig& cfg, const std::optional<at::Tensor>& state) {
  const auto opts = p.params.options();
  return {p.params.clone(), at::zeros({p.S}, opts), at::zeros({p.S, curve_records(cfg)}, opts),
          adam_state("compnet_ext.mlp_train", state, p.params, p.S, p.shape.params)};
}

}  // namespace cn
