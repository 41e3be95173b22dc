// Block shapes and shared-memory limits of the CUDA kernels, and where the fused training
// kernels keep each seed's workspace. Plain C++ (no torch, no CUDA headers): the torch glue plans
// the workspace, the kernels use it.
#pragma once

#include <cstddef>

namespace cn {
namespace cuda {

constexpr int kWarp = 32;
// Warps (seeds) per block of the kernels that give each seed a warp.
constexpr int kWarpsPerBlock = 4;
// Dynamic shared memory a block may use without opting in to the device's larger limit.
constexpr size_t kDefaultSharedBytes = 48 * 1024;

// Where the fused training kernels (one warp per seed, all epochs in one launch) keep each seed's
// parameters and gradient: in shared memory when it fits, else in a global-memory workspace.
struct TrainPlan {
  int warps;          // seeds per block
  size_t smem_bytes;  // dynamic shared memory per block (0 when spilled)
  bool spill;         // the workspace is in global memory, one row per seed
};

// One policy for both fused stages: four warps per block when their workspaces fit the default
// shared memory; else one warp per block when its workspace fits the device's opt-in limit
// (`optin_bytes`); else four warps per block with the workspaces spilled to global memory, so
// that any depth and width trains (slower, but a fused launch rather than a refusal).
inline TrainPlan train_plan(size_t per_warp_bytes, size_t optin_bytes) {
  if (kWarpsPerBlock * per_warp_bytes <= kDefaultSharedBytes)
    return {kWarpsPerBlock, kWarpsPerBlock * per_warp_bytes, false};
  if (per_warp_bytes <= optin_bytes) return {1, per_warp_bytes, false};
  return {kWarpsPerBlock, 0, true};
}

// nullptr when `spill` matches the plan (a workspace exactly when it spills), else the error.
inline const char* check_spill(const TrainPlan& plan, const void* spill) {
  const bool matches = plan.spill == (spill != nullptr);
  return matches ? nullptr : "the spill workspace does not match the plan";
}

}  // namespace cuda
}  // namespace cn
