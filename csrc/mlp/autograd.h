// The batched MLP's forward with its autograd node in C++ (mlp/autograd.cpp); bound in
// registration.cpp as compnet_ext._C.mlp_forward_autograd.
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace cn {

// y [S, N] of the MLP whose parameters are `tensors` = [W0, b0, W1, b1, ...] (each [S, ...]),
// packed here into the op's params row; gradients reach each tensor as a view of the packed one.
at::Tensor mlp_forward_autograd(const at::Tensor& x, const std::vector<int64_t>& widths,
                                const std::vector<at::Tensor>& tensors);

}  // namespace cn
