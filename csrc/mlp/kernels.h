// Launchers for the batched-MLP CUDA kernels. Plain C++ (no torch, no CUDA headers), so the torch
// glue (mlp_cuda.cpp) and the kernels (mlp_kernels.cu) compile independently.
#pragma once

#include <cstdint>

#include "compnet/math.h"  // AdamConfig
#include "mlp/math.h"

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

// Elements of the global workspace that mlp_train needs (`*elements`, 0 when the per-seed
// parameters and gradient fit in shared memory, as they do for all but the largest nets).
template <typename T>
const char* mlp_train_spill(const mlp::Shape& sh, int64_t S, int64_t* elements);

// Stage 2 fused (one launch, all epochs, one warp per seed): params [S, P] and the Adam moments
// `state` [S, 2, P] are trained in place; loss [S] gets the final loss, curve [S, records] the
// recorded losses. `target` is [N] or [S, N] (d.head_shared). `spill` has mlp_train_spill's
// elements (nullptr when 0).
template <typename T>
const char* mlp_train(const mlp::Shape& sh, const MlpDims& d, const AdamConfig& cfg, const T* x,
                      const T* target, T* params, T* loss, T* curve, int64_t records, T* state,
                      T* spill, void* stream);

}  // namespace cuda
}  // namespace cn
