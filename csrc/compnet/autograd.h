// compnet_ext.forward with its autograd node in C++ (compnet/autograd.cpp); bound in
// registration.cpp as compnet_ext._C.forward_autograd.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace cn {

at::Tensor forward_autograd(const at::Tensor& x, const at::Tensor& peaks,
                            const std::optional<at::Tensor>& scales, int64_t sign, bool validate);

}  // namespace cn
