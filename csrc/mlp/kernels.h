// Launchers of the batched-MLP CUDA kernels (mlp/kernels.cu). Plain C++ (no torch, no CUDA
// headers) so that the torch glue (mlp/cuda.cpp) and the kernels compile independently. Each
// returns nullptr on success or the CUDA error string; `stream` is a cudaStream_t.
#pragma once

#include <cstdint>

#include "../common/adam.h"
#include "../common/launch_config.h"
#include "math.h"

namespace cn {
namespace cuda {

struct MlpDims {
  int64_t S, N;
  bool x_shared;     // x is [N]
  bool head_shared;  // the target is [N]
};

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

// Values per seed in the fused stage 2's workspace: the parameters and their gradient.
CN_HD int64_t mlp_train_workspace_values(const mlp::Shape& sh) { return 2 * int64_t(sh.params); }

// Stage 2 fused (one launch, all epochs, one warp per seed): params [S, P] and the Adam moments
// `state` [S, 2, P] are trained in place; loss [S] gets the final loss, curve [S, records] the
// recorded losses. `target` is [N] or [S, N] (d.head_shared). The workspaces go where `plan`
// says: `spill` [S, mlp_train_workspace_values(sh)] when it spills, else nullptr.
template <typename T>
const char* mlp_train(const mlp::Shape& sh, const MlpDims& d, const AdamConfig& cfg,
                      const TrainPlan& plan, const T* x, const T* target, T* params, T* loss,
                      T* curve, int64_t records, T* state, T* spill, void* stream);

}  // namespace cuda
}  // namespace cn
