// Block shapes and shared-memory limits of the CUDA kernels, how many warps share a seed, and
// where the fused training kernels keep each seed's workspace. Plain C++ (no torch, no CUDA
// headers): the torch glue plans the workspace, the kernels use it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cn {
namespace cuda {

constexpr int kWarp = 32;
// Seeds per block when each seed has one warp.
constexpr int kWarpsPerBlock = 4;
// Most warps that share one seed's points (one block of 512 threads; the kernels are compiled
// with __launch_bounds__(kWarp * kMaxWarpsPerSeed), so that such a block always fits the
// register file).
constexpr int kMaxWarpsPerSeed = 16;
// Warps the kernels aim to have resident on the chip: 16 per SM (the compnet sweep's register
// budget allows 16 at 128 registers) on 132 SMs. A constant, not the device's SM count: the
// number of warps per seed sets the order of the gradient sums, so it must not depend on the
// GPU (the same problem gives the same bits on every device).
constexpr int64_t kTargetWarps = 16 * 132;
// Dynamic shared memory a block may use without opting in to the device's larger limit.
constexpr size_t kDefaultSharedBytes = 48 * 1024;

// Warps that share one seed's N points (docs/gpu.md, change 1): enough to fill the chip with
// kTargetWarps when S is small, at most one per tile of 32 x lane_points points (the points a
// lane sweeps at a time), at most kMaxWarpsPerSeed; 1 from S >= kTargetWarps on. A function of
// the problem only, used by loss_and_grad, backward and the fused trainers alike, so that a
// trainer's step equals loss_and_grad + Adam bitwise.
inline int warps_per_seed(int64_t S, int64_t N, int lane_points = 1) {
  const int64_t tile = int64_t(kWarp) * lane_points, tiles = (N + tile - 1) / tile;
  const int64_t fill = S > 0 ? (kTargetWarps + S - 1) / S : 1;
  int64_t w = tiles < fill ? tiles : fill;
  if (w > kMaxWarpsPerSeed) w = kMaxWarpsPerSeed;
  return w < 1 ? 1 : static_cast<int>(w);
}

// Seeds per block for W warps per seed: four one-warp seeds, or one seed of W > 1 warps (the
// seed's warps meet at __syncthreads, so no block holds a seed past S).
inline int seeds_per_block(int warps) { return warps == 1 ? kWarpsPerBlock : 1; }

// Where the fused training kernels (all epochs in one launch) keep each seed's parameters and
// gradient: in shared memory when it fits, else in a global-memory workspace. The seed's block
// reduction area (`warps` x partial values) is always in shared memory, after the workspaces.
struct TrainPlan {
  int seeds;          // seeds per block
  int warps;          // warps per seed (warps_per_seed: never a function of the device)
  size_t smem_bytes;  // dynamic shared memory per block
  bool spill;         // the workspaces are in global memory, one row per seed
};

// One policy for both fused stages: `seeds_per_block` seeds when their workspaces fit the default
// shared memory; else one seed per block when its workspace fits the device's opt-in limit
// (`optin_bytes`); else the workspaces spilled to global memory, so that any depth and width
// trains (slower, but a fused launch rather than a refusal). Only the placement depends on the
// device, never the arithmetic.
inline TrainPlan train_plan(size_t workspace_bytes, size_t partial_bytes_per_warp, int warps,
                            size_t optin_bytes) {
  const int g = seeds_per_block(warps);
  const size_t reduce = size_t(warps) * partial_bytes_per_warp;  // per seed
  if (g * (workspace_bytes + reduce) <= kDefaultSharedBytes)
    return {g, warps, g * (workspace_bytes + reduce), false};
  if (workspace_bytes + reduce <= optin_bytes) return {1, warps, workspace_bytes + reduce, false};
  return {g, warps, g * reduce, true};
}

// nullptr when `spill` matches the plan (a workspace exactly when it spills), else the error.
inline const char* check_spill(const TrainPlan& plan, const void* spill) {
  const bool matches = plan.spill == (spill != nullptr);
  return matches ? nullptr : "the spill workspace does not match the plan";
}

}  // namespace cuda
}  // namespace cn
