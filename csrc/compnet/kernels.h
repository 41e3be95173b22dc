// Launchers of the compositional network's CUDA kernels (compnet/kernels.cu). Plain C++ (no
// torch, no CUDA headers) so that the torch glue (compnet/cuda.cpp) and the kernels compile
// independently. Each returns nullptr on success or the CUDA error string; `stream` is a
// cudaStream_t.
#pragma once

#include <cstdint>

#include "../common/adam.h"
#include "../common/launch_config.h"

namespace cn {
namespace cuda {

struct Dims {
  int64_t S, N;
  int D;
  int sign;
  bool x_shared;     // x is [N]
  bool head_shared;  // the target or grad_y is [N]
};

template <typename T>
const char* forward(const Dims& d, const T* x, const T* peaks, const T* scales, T* y,
                    void* stream);

// One launch: forward + reverse sweep + per-seed reduction (+ smooth-scale chain rule).
// loss == nullptr: `head` is grad_y [S, N] and gradients of sum(grad_y * y) are produced.
// loss != nullptr: `head` is the target; loss [S] gets the MSE, gradients are of loss.sum().
// Any of gx ([S, N] per point), g_peaks ([S, D+1]) and g_scales ([S, D]) may be nullptr.
// `scratch` is [S, 2D]: smooth scales and their gradient (may be nullptr in free mode).
template <typename T>
const char* backward(const Dims& d, const T* x, const T* peaks, const T* scales, const T* head,
                     T* loss, T* gx, T* g_peaks, T* g_scales, T* scratch, void* stream);

// Values per seed in the fused stage 1's workspace: the peaks and their gradient (D + 1 each),
// the scales and their gradient (D each).
CN_HD int64_t train_workspace_values(int D) { return 4 * int64_t(D) + 2; }

// Stage 1 fused (one launch, all epochs, one warp per seed): peaks [S, D+1], scales [S, D]
// (nullptr: smooth) and the Adam moments `state` [S, 2, D+1 (+ D free)] are trained in place;
// loss [S] gets the final loss, curve [S, records] the recorded losses. The workspaces go where
// `plan` says: `spill` [S, train_workspace_values(D)] when it spills, else nullptr.
template <typename T>
const char* train(const Dims& d, const AdamConfig& cfg, const TrainPlan& plan, const T* x,
                  const T* target, T* peaks, T* scales, T* loss, T* curve, int64_t records,
                  T* state, T* spill, void* stream);

}  // namespace cuda
}  // namespace cn
