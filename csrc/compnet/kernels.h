// Launchers of the compositional network's CUDA kernels (compnet/kernels.cu). Plain C++ (no
// torch, no CUDA headers) so that the torch glue (compnet/cuda.cpp) and the kernels compile
// independently. Each returns nullptr on success or the CUDA error string; `stream` is a
// cudaStream_t.
#pragma once

#include <cstddef>
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
  bool head_shared;  // the target or grad_y is one row [N] for all seeds
};

// Layers per register chunk of the reverse sweep (compnet/math.h: backward_chunk), by the size
// of the element type: 32 floats or 16 doubles (32 registers either way).
CN_HD constexpr int chunk_layers(size_t elem) { return elem == 4 ? 32 : 16; }

// The chunk the CUDA sweeps use for depth D: the smallest of kMinChunk, 2 kMinChunk, ... that holds
// D, up to chunk_layers (then D > chunk_layers runs several chunks of chunk_layers). A shallow net
// keeps only the registers it uses and runs C - D padded steps (table_depth; fewer than D above the
// smallest chunk), and its reduction has 2C sums rather than 2 chunk_layers: at the paper's D = 5,
// 8 layers, where 16 (fp32) or 16 with spills (fp64) ran before. Every C <= chunk_layers(elem)
// makes D one chunk, so the carry (below) does not depend on it; the bits do for depths whose chunk
// changed (the transposing butterfly's order depends on the number of sums), the same for
// loss_and_grad, the backward and the fused trainer, which all use this rule.
constexpr int kMinChunk = 8;
CN_HD constexpr int sweep_chunk(int D, size_t elem) {
  int c = kMinChunk;
  while (c < chunk_layers(elem) && c < D) c *= 2;
  return c;
}

// The depth of the sweeping kernels' tables: D rounded up to a multiple of C = sweep_chunk(D), the
// layers from D up being the identity with scale 0 (compnet/kernels.cu: fill_tables), so that every
// chunk runs unguarded (compnet/math.h: FULL, EVEN). A guarded chunk issued every one of its C
// steps all the same (ptxas predicates the skipped ones rather than branching around them) and
// spilled (float C = 32: 184 B of stack at D = 17..31); the padded layers leave the real layers'
// values and gradients bit for bit as they were.
CN_HD constexpr int table_depth(int D, size_t elem) {
  const int c = sweep_chunk(D, elem);
  return (D + c - 1) / c * c;
}

// Points a lane of the sweeping kernels takes at a time, 1 or 2. Two only in float up to the
// 16-layer chunk (ptxas: two points of a 32-layer float chunk or of any double chunk spill), and
// only where a seed's warps would otherwise sweep several tiles of 32 points one after another
// (large S, or N > 512): then two points at a time are two independent chains of arithmetic and
// one table read serves both. Where each warp has at most one tile (small S, the chip not full),
// one point per lane on twice the warps finishes an epoch sooner. A function of the problem only,
// as warps_per_seed.
CN_HD constexpr int max_lane_points(int chunk, size_t elem) {
  return elem == 4 && chunk <= 16 ? 2 : 1;
}
inline int sweep_lane_points(int64_t S, int64_t N, int D, size_t elem) {
  if (max_lane_points(sweep_chunk(D, elem), elem) == 1) return 1;
  return int64_t(warps_per_seed(S, N)) * kWarp < N ? 2 : 1;
}

// Most warps per seed of the sweeping kernels, which they are compiled for
// (__launch_bounds__): kMaxWarpsPerSeed, or in double CN_FP64_MAX_WARPS, a build option
// (setup.py: COMPNET_FP64_WARPS). At 16 (512 threads, 128 registers) the double 16-layer chunk
// spills; at 8 ptxas gives it ~190 registers and no spill, at half the warps per SM. Which is
// faster is for a GPU to measure (docs/gpu.md); a build option rather than a run-time one so
// that one build gives one set of bits.
#ifndef CN_FP64_MAX_WARPS
#define CN_FP64_MAX_WARPS 16
#endif
static_assert(CN_FP64_MAX_WARPS >= 1 && CN_FP64_MAX_WARPS <= kMaxWarpsPerSeed,
              "CN_FP64_MAX_WARPS: 1 to kMaxWarpsPerSeed");
CN_HD constexpr int sweep_max_warps(size_t elem) {
  return elem == 8 ? CN_FP64_MAX_WARPS : kMaxWarpsPerSeed;
}

// Warps per seed of the sweeping kernels (backward, loss_and_grad, the fused stage 1) for depth
// D: common/launch_config.h's rule with tiles of 32 x sweep_lane_points points, at most
// sweep_max_warps.
inline int sweep_warps_per_seed(int64_t S, int64_t N, int D, size_t elem) {
  const int w = warps_per_seed(S, N, sweep_lane_points(S, N, D, elem));
  return w < sweep_max_warps(elem) ? w : sweep_max_warps(elem);
}

// Per-point values a seed carries between chunks (gy and lambda of N points), when there is
// more than one chunk.
CN_HD int64_t carry_values(int D, int64_t N, size_t elem) {
  return D > chunk_layers(elem) ? 2 * N : 0;
}

// Values per warp in a seed's block reduction area: the chunk's two gradient rows and the loss.
CN_HD int64_t reduction_values(size_t elem) { return 2 * int64_t(chunk_layers(elem)) + 1; }

// A seed's tables for the sweeps (compnet/math.h: TriTable) of depth Dt = table_depth: its
// layers' Tri (4 values each), then the signed scales row (Dt + 1), padded to a multiple of 4
// values (aligned_values); room
// for two copies (the reverse sweep's, compnet/kernels.cu: keep_forward_values) opens each
// seed's workspace, whose size is a multiple of 4 values too, so that every Tri is 16-byte
// aligned: one 128-bit load.
CN_HD constexpr int64_t tri_values(int D) { return 4 * int64_t(D); }
CN_HD int64_t aligned_values(int64_t v) { return (v + 3) / 4 * 4; }
CN_HD int64_t layer_table_values(int D) { return aligned_values(tri_values(D) + D + 1); }

template <typename T>
const char* forward(const Dims& d, const T* x, const T* peaks, const T* scales, T* y,
                    void* stream);

// Values per seed of the backward's tables: the layers' tables (two, of table_depth), smooth
// scales and their gradient (D each). In the block's shared memory when they fit beside the
// reduction areas, else in `scratch`.
CN_HD int64_t backward_table_values(int D, size_t elem) {
  return aligned_values(2 * layer_table_values(table_depth(D, elem)) + 2 * int64_t(D));
}

// Values per seed of the backward's `scratch`: room for the tables, then the chunks' carry.
CN_HD int64_t backward_scratch_values(int D, int64_t N, size_t elem) {
  return aligned_values(backward_table_values(D, elem) + carry_values(D, N, elem));
}

// One launch: forward + reverse sweep + per-seed reduction (+ smooth-scale chain rule), each
// seed on sweep_warps_per_seed(S, N, D, sizeof(T)) warps.
// loss == nullptr: `head` is grad_y [S, N] and gradients of sum(grad_y * y) are produced.
// loss != nullptr: `head` is the target; loss [S] gets the MSE, gradients are of loss.sum().
// Any of gx ([S, N] per point), g_peaks ([S, D+1]) and g_scales ([S, D]) may be nullptr.
// `scratch` is [S, backward_scratch_values(D, N, sizeof(T))].
template <typename T>
const char* backward(const Dims& d, const T* x, const T* peaks, const T* scales, const T* head,
                     T* loss, T* gx, T* g_peaks, T* g_scales, T* scratch, void* stream);

// Values per seed in the fused stage 1's workspace: the layers' tables (two, of table_depth),
// the peaks and their gradient (D + 1 each), the scales and their gradient (D each).
CN_HD int64_t train_workspace_values(int D, size_t elem) {
  return aligned_values(2 * layer_table_values(table_depth(D, elem)) + 4 * int64_t(D) + 2);
}

// Where the fused stage 1 keeps its workspaces on a device with `optin_bytes` of opt-in shared
// memory per block (common/launch_config.h: train_plan).
inline TrainPlan train_peaks_plan(const Dims& d, size_t elem, size_t optin_bytes) {
  return train_plan(size_t(train_workspace_values(d.D, elem)) * elem,
                    size_t(reduction_values(elem)) * elem,
                    sweep_warps_per_seed(d.S, d.N, d.D, elem),
                    optin_bytes);
}

// Stage 1 fused (one launch, all epochs, each seed on plan.warps warps): peaks [S, D+1], scales
// [S, D] (nullptr: smooth) and the Adam moments `state` [S, 2, D+1 (+ D free)] are trained in
// place; loss [S] gets the final loss, curve [S, records] the recorded losses. The workspaces go
// where `plan` (train_peaks_plan) says: `spill` [S, train_workspace_values(D, sizeof(T))] when
// it spills, else nullptr. `carry` is [S, carry_values(D, N, sizeof(T))] (nullptr when that is 0).
template <typename T>
const char* train(const Dims& d, const AdamConfig& cfg, const TrainPlan& plan, const T* x,
                  const T* target, T* peaks, T* scales, T* loss, T* curve, int64_t records,
                  T* state, T* spill, T* carry, void* stream);

}  // namespace cuda
}  // namespace cn
