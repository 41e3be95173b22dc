// Torch glue shared by the CPU and CUDA drivers of the batched MLP ops: argument checks and the
// layer geometry. The friendly, argument-naming checks live in Python (compnet_ext/mlp_ops.py);
// these guard memory safety for direct torch.ops calls.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

#include "common/adam_args.h"
#include "mlp/math.h"

namespace cn {

struct MlpProblem {
  at::Tensor x, params, head;  // contiguous; head = grad_y or target, undefined when absent
  mlp::Shape shape;
  int64_t S = 0, N = 0;
  bool x_shared = true, head_shared = true;
};

inline MlpProblem make_mlp_problem(const char* op, const at::Tensor& x, const at::Tensor& params,
                                   at::IntArrayRef widths,
                                   const std::optional<at::Tensor>& head,
                                   const char* head_name = "target") {
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
  auto check_points = [&](const char* name, const at::Tensor& t, int64_t N) {
    TORCH_CHECK(t.scalar_type() == params.scalar_type(), op, ": `", name, "` has dtype ",
                t.scalar_type(), " but `params` has ", params.scalar_type());
    TORCH_CHECK(t.device() == params.device(), op, ": `", name, "` is on ", t.device(),
                " but `params` is on ", params.device());
    TORCH_CHECK((t.dim() == 1 && (N < 0 || t.size(0) == N)) ||
                    (t.dim() == 2 && t.size(0) == p.S && (N < 0 || t.size(1) == N)),
                op, ": `", name, "` must be [N] or [S, N] with S = ", p.S, ", got ", t.sizes());
    return t.dim() == 1;
  };
  p.x_shared = check_points("x", x, -1);
  p.N = x.size(-1);
  p.x = x.contiguous();
  p.params = params.contiguous();
  if (head.has_value()) {
    p.head_shared = check_points(head_name, *head, p.N);
    p.head = head->contiguous();
  }
  return p;
}

// Outputs of mlp_train, initialised from the inputs: params [S, P], final loss [S] (0 with no
// points), loss curve [S, ceil(epochs / record_every)], Adam state [S, 2, P].
inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> make_mlp_train_outputs(
    const MlpProblem& p, const AdamConfig& cfg, const std::optional<at::Tensor>& state) {
  const auto opts = p.params.options();
  return {p.params.clone(), at::zeros({p.S}, opts), at::zeros({p.S, curve_records(cfg)}, opts),
          adam_state("compnet_ext.mlp_train", state, p.params, p.S, p.shape.params)};
}

}  // namespace cn
