// Torch glue of the batched MLP ops, shared by the CPU and CUDA drivers: argument checks, the
// layer geometry and the outputs of mlp_train. The friendly, argument-naming checks run first in
// Python; these guard memory safety for direct torch.ops calls.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

#include "../common/adam.h"
#include "../common/tensors.h"
#include "math.h"

namespace cn {

struct MlpProblem {
  at::Tensor x, params, head;  // contiguous; head = grad_y or target, undefined when absent
  mlp::Shape shape;
  int64_t S = 0, N = 0;
  bool x_shared = true, head_shared = true;
};

// Checks metadata (names the argument on error).
MlpProblem make_mlp_problem(const char* op, const at::Tensor& x, const at::Tensor& params,
                            at::IntArrayRef widths, const NamedTensor& head);

// Checks the stage-2 hyper-parameters (names the argument on error).
AdamConfig mlp_train_config(int64_t epochs, double lr, double beta1, double beta2, double eps,
                            int64_t record_every, int64_t step, int64_t warmup);

// Outputs of mlp_train, initialised from the inputs: params [S, P], final loss [S] (0 with no
// points), loss curve [S, ceil(epochs / record_every)], Adam state [S, 2, P].
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> make_mlp_train_outputs(
    const MlpProblem& p, const AdamConfig& cfg, const std::optional<at::Tensor>& state);

}  // namespace cn
