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
  bool head_shared;  // the target or grad_y is one row [N] for all seeds
};

// Nets with at most kLaneSumUnits hidden units and kLaneSumParams parameters (the paper's 4x5
// net: 20 and 93) sum their gradient per lane over all of a warp's points (in local memory) and
// reduce once per seed and epoch, with W = warps_per_seed(S, N) warps per seed. Larger nets
// reduce after every 32 points with one warp per seed (their per-lane sums would not fit a
// thread's local memory).
constexpr int kLaneSumUnits = 64;
constexpr int kLaneSumParams = 256;
CN_HD bool mlp_lane_sums(const mlp::Shape& sh) {
  return sh.units <= kLaneSumUnits && sh.params <= kLaneSumParams;
}
// The paper's 4 x 5 net runs kernels compiled for its shape (mlp/kernels.cu: PaperShape), whose
// 93 lane sums (in double, 32 at a time: kSumsPerSweep), 20 activations and scratch stay in
// registers: that needs more than the 128 a 512-thread block allows, so its seeds get at most
// kFixedShapeMaxWarps warps (256 threads, up to 255 registers).
constexpr int kFixedShapeMaxWarps = 8;
CN_HD bool mlp_paper_shape(const mlp::Shape& sh) { return mlp::FixedShape<4, 5>::matches(sh); }
inline int mlp_warps_per_seed(const mlp::Shape& sh, int64_t S, int64_t N) {
  if (!mlp_lane_sums(sh)) return 1;
  const int w = warps_per_seed(S, N);
  return mlp_paper_shape(sh) && w > kFixedShapeMaxWarps ? kFixedShapeMaxWarps : w;
}
// Values per warp in a seed's block reduction area: the gradient and the loss (lane sums only).
CN_HD int64_t mlp_reduction_values(const mlp::Shape& sh) {
  return mlp_lane_sums(sh) ? int64_t(sh.params) + 1 : 0;
}

template <typename T>
const char* mlp_forward(const mlp::Shape& sh, const MlpDims& d, const T* x, const T* params, T* y,
                        void* stream);

// One launch: forward + backward per point, per-seed fixed-order reduction (each seed on
// mlp_warps_per_seed warps).
// loss == nullptr: `head` is grad_y [S, N]; gradients of sum(grad_y * y).
// loss != nullptr: `head` is the target; loss [S] gets the MSE, gradients are of loss.sum().
// gx ([S, N], per point) may be nullptr; gparams [S, P] is always written.
template <typename T>
const char* mlp_backward(const mlp::Shape& sh, const MlpDims& d, const T* x, const T* params,
                         const T* head, T* loss, T* gx, T* gparams, void* stream);

// Values per seed in the fused stage 2's workspace: the parameters and their gradient.
CN_HD int64_t mlp_train_workspace_values(const mlp::Shape& sh) { return 2 * int64_t(sh.params); }

// Where the fused stage 2 keeps its workspaces on a device with `optin_bytes` of opt-in shared
// memory per block (common/launch_config.h: train_plan).
inline TrainPlan mlp_train_plan(const mlp::Shape& sh, const MlpDims& d, size_t elem,
                                size_t optin_bytes) {
  return train_plan(size_t(mlp_train_workspace_values(sh)) * elem,
                    size_t(mlp_reduction_values(sh)) * elem, mlp_warps_per_seed(sh, d.S, d.N),
                    optin_bytes);
}

// Stage 2 fused (one launch, all epochs, each seed on plan.warps warps): params [S, P] and the Adam moments
// `state` [S, 2, P] are trained in place; loss [S] gets the final loss, curve [S, records] the
// recorded losses. `target` is [N] or [S, N] (d.head_shared). The workspaces go where `plan`
// says (mlp_train_plan): `spill` [S, mlp_train_workspace_values(sh)] when it spills, else nullptr.
template <typename T>
const char* mlp_train(const mlp::Shape& sh, const MlpDims& d, const AdamConfig& cfg,
                      const TrainPlan& plan, const T* x, const T* target, T* params, T* loss,
                      T* curve, int64_t records, T* state, T* spill, void* stream);

}  // namespace cuda
}  // namespace cn
