// Launchers for the batched-MLP CUDA kernels. Plain C++ (no torch, no CUDA headers), so the torch
// glue (mlp_cuda.cpp) and the kernels (mlp_kernels.cu) compile independently.
#pragma once

#include <cstdint>

#include "../mlp_math.h"

namespace cn {
namespace cuda {

struct MlpDims {
  int64_t S, N;
  bool x_shared;     // x is [N]
  bool head_shared;  // target is [N]
};

// Each returns nullptr on success or the CUDA error string. `stream` is a cudaStream_t.
template <typename T>
const char* mlp_forward(const mlp::Shape& sh, const MlpDims& d, const T* x, const T* params, T* y,
                        void* stream);

// One launch: forward + backward per point, per-seed fixed-order reduction (one warp per seed).
// loss == nullptr: `head` is grad_y [S, N]; gradients of sum(grad_y * y).
// loss != nullptr: `head` is the target; loss [S] gets the MSE, gradients are of loss.sum().
// gx ([S, N], per point) may be nullptr; gparams [S, P] is always written.
template <typename T>
const char* mlp_backward(const mlp::Shape& sh, const MlpDims& d, const T* x, const T* params,
                         const T* head, T* loss, T* gx, T* gparams, void* stream);

}  // namespace cuda
}  // namespace cn
