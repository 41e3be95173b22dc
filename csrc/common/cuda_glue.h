// Torch glue shared by the CUDA drivers (compnet/cuda.cpp, mlp/cuda.cpp): the stream, launch
// errors, and the fused training kernels' workspace.
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>

#include "launch_config.h"

namespace cn {

// The current CUDA stream, as the launchers take it (a cudaStream_t).
inline void* current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// `err` is a launcher's result: nullptr on success, else the CUDA error string.
inline void check_launch(const char* op, const char* err) {
  TORCH_CHECK(err == nullptr, op, ": CUDA kernel launch failed: ", err);
}

// The opt-in dynamic shared memory per block of the current device.
inline size_t optin_shared_bytes() {
  int device = 0, optin = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return size_t(optin);
}

// A fused training kernel's spilled workspace [S, values] in global memory, of the dtype of
// `like` (empty unless the plan spills).
inline at::Tensor spill_workspace(const cuda::TrainPlan& plan, int64_t S, int64_t values,
                                  const at::Tensor& like) {
  return at::empty({plan.spill ? S * values : 0}, like.options());
}

}  // namespace cn
