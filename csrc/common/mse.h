// The MSE head of loss_and_grad and of the training stages, per point. Plain C++: no torch, no
// CUDA headers.
#pragma once

#include "portability.h"

namespace cn {

// Adds the point's squared error to `sse` and returns dL/dy of L = mean((y - t)^2) over the
// points, given inv_n = 1 / (number of points), in the reference's rounding order.
template <typename T>
CN_HD T mse_grad(T y, T t, T inv_n, T& sse) {
  const T d = y - t;
  sse += d * d;
  return inv_n * (T(2) * d);
}

// The loss of n points from their summed squared errors; 0 with no points (not torch.mean's NaN).
// The CPU drivers divide, as torch.mean does; the CUDA kernels multiply by the reciprocal, which
// can differ in the last bit (their sums differ from the CPU's in order anyway).
template <typename T>
CN_HD T mse_mean(T sse, int64_t n) {
  return n > 0 ? sse / T(n) : T(0);
}
template <typename T>
CN_HD T mse_mean_by_reciprocal(T sse, int64_t n) {
  return n > 0 ? sse * (T(1) / T(n)) : T(0);
}

}  // namespace cn
