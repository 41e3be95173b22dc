// Launchers for the CUDA kernels. Plain C++ (no torch, no CUDA headers) so that the torch glue
// (ops_cuda.cpp) and the kernels (kernels.cu) are compiled independently.
#pragma once

#include <cstdint>

#include "compnet/math.h"  // AdamConfig

namespace cn {
namespace cuda {

struct Dims {
  int64_t S, N;
  int D;
  int sign;
  bool x_shared;       // x is [N]
  bool target_shared;  // target / grad_y is [N]
};

// Each returns nullptr on success or the CUDA error string. `stream` is a cudaStream_t.
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

// Stage 1 fused (one launch, all epochs): peaks [S, D+1], scales [S, D] (nullptr: smooth) and
// the Adam moments `state` [S, 2, D+1 (+ D free)] are trained in place; loss [S] gets the final
// loss, curve [S, records] the recorded losses.
template <typename T>
const char* train(const Dims& d, const AdamConfig& cfg, const T* x, const T* target, T* peaks,
                  T* scales, T* loss, T* curve, int64_t records, T* state, void* stream);

}  // namespace cuda
}  // namespace cn
