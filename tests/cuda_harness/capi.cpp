// C entry points of the harness library, for ctypes (tests/cuda_harness/harness.py): each calls
// a launcher of csrc/compnet/kernels.h or csrc/mlp/kernels.h on caller-owned buffers (CPU
// tensors' data), planning the fused trainers' workspace as the CUDA glue does
// (common/cuda_glue.h: train_workspace) from the harness device's limits. The spill workspace is
// allocated here with its exact size, so that AddressSanitizer sees an overrun. dtype: 0 float,
// 1 double. Each returns nullptr or the launch's error string.
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "common/launch_config.h"
#include "compnet/kernels.h"
#include "mlp/kernels.h"

namespace {

using namespace cn;
using namespace cn::cuda;

// As common/cuda_glue.h's optin_shared_bytes, with the runtime calls of the harness device.
size_t optin_bytes() {
  int device = 0, optin = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  return size_t(optin);
}

// plan_out: seeds per block, dynamic shared bytes, spilled, warps per seed.
void report(const TrainPlan& p, int64_t* plan_out) {
  plan_out[0] = p.seeds;
  plan_out[1] = int64_t(p.smem_bytes);
  plan_out[2] = p.spill;
  plan_out[3] = p.warps;
}

AdamConfig adam(const double* c, const int64_t* n) {
  // c: lr, beta1, beta2, eps, peak_min, peak_max; n: epochs, record_every, step0
  return {n[0], c[0], c[1], c[2], c[3], c[4], c[5], n[1], n[2]};
}

template <typename T>
const char* compnet_train_t(const Dims& d, const AdamConfig& cfg, const void* x,
                            const void* target, void* peaks, void* scales, void* loss, void* curve,
                            int64_t records, void* state, int64_t* plan_out) {
  const TrainPlan plan = train_peaks_plan(d, sizeof(T), optin_bytes());
  report(plan, plan_out);
  std::vector<T> spill(plan.spill ? size_t(d.S * train_workspace_values(d.D, sizeof(T))) : 0);
  std::vector<T> carry(size_t(d.S * carry_values(d.D, d.N, sizeof(T))));
  return train<T>(d, cfg, plan, static_cast<const T*>(x), static_cast<const T*>(target),
                  static_cast<T*>(peaks), static_cast<T*>(scales), static_cast<T*>(loss),
                  static_cast<T*>(curve), records, static_cast<T*>(state),
                  plan.spill ? spill.data() : nullptr, carry.empty() ? nullptr : carry.data(),
                  nullptr);
}

template <typename T>
const char* mlp_train_t(const mlp::Shape& sh, const MlpDims& d, const AdamConfig& cfg,
                        const void* x, const void* target, void* params, void* loss, void* curve,
                        int64_t records, void* state, int64_t* plan_out) {
  const TrainPlan plan = mlp_train_plan(sh, d, sizeof(T), optin_bytes());
  report(plan, plan_out);
  std::vector<T> spill(plan.spill ? size_t(d.S * mlp_train_workspace_values(sh)) : 0);
  return mlp_train<T>(sh, d, cfg, plan, static_cast<const T*>(x), static_cast<const T*>(target),
                      static_cast<T*>(params), static_cast<T*>(loss), static_cast<T*>(curve),
                      records, static_cast<T*>(state), plan.spill ? spill.data() : nullptr,
                      nullptr);
}

bool shape(const int64_t* widths, int n, mlp::Shape& sh) {
  std::vector<long> w(widths, widths + n);
  return mlp::make_shape(w.data(), n, sh);
}

}  // namespace

#define CN_DISPATCH(dtype, call_float, call_double) ((dtype) == 0 ? (call_float) : (call_double))
#define P(T, p) static_cast<T*>(p)
#define CP(T, p) static_cast<const T*>(p)

extern "C" {

// The number of warps per seed for S seeds of N points (launch_config.h: the rule with one
// point per lane, as the MLP kernels use it), and what the compositional sweeps use at depth D
// and the points per lane (compnet/kernels.h: sweep_warps_per_seed, sweep_lane_points; dtype 0
// float, else double).
int64_t harness_warps_per_seed(int64_t S, int64_t N) { return warps_per_seed(S, N); }
int64_t harness_sweep_warps(int dtype, int64_t S, int64_t N, int D) {
  return sweep_warps_per_seed(S, N, D, dtype == 0 ? sizeof(float) : sizeof(double));
}
int64_t harness_sweep_lane_points(int dtype, int64_t S, int64_t N, int D) {
  return sweep_lane_points(S, N, D, dtype == 0 ? sizeof(float) : sizeof(double));
}
int64_t harness_sweep_max_warps(int dtype) {
  return sweep_max_warps(dtype == 0 ? sizeof(float) : sizeof(double));
}

const char* cn_forward(int dtype, int64_t S, int64_t N, int D, int sign, int x_shared,
                       const void* x, const void* peaks, const void* scales, void* y) {
  const Dims d{S, N, D, sign, bool(x_shared), false};
  return CN_DISPATCH(dtype, forward<float>(d, CP(float, x), CP(float, peaks), CP(float, scales), P(float, y), nullptr),
                     forward<double>(d, CP(double, x), CP(double, peaks), CP(double, scales), P(double, y), nullptr));
}

const char* cn_backward(int dtype, int64_t S, int64_t N, int D, int sign, int x_shared,
                        int head_shared, const void* x, const void* peaks, const void* scales,
                        const void* head, void* loss, void* gx, void* gp, void* gs) {
  const Dims d{S, N, D, sign, bool(x_shared), bool(head_shared)};
  // the scratch as compnet/cuda.cpp allocates it, with its exact size (ASan sees an overrun)
  const size_t elem = dtype == 0 ? sizeof(float) : sizeof(double);
  std::vector<unsigned char> buf(size_t(S * backward_scratch_values(D, N, elem)) * elem);
  void* scratch = buf.data();
  return CN_DISPATCH(
      dtype,
      backward<float>(d, CP(float, x), CP(float, peaks), CP(float, scales), CP(float, head), P(float, loss), P(float, gx), P(float, gp), P(float, gs), P(float, scratch), nullptr),
      backward<double>(d, CP(double, x), CP(double, peaks), CP(double, scales), CP(double, head), P(double, loss), P(double, gx), P(double, gp), P(double, gs), P(double, scratch), nullptr));
}

const char* cn_train(int dtype, int64_t S, int64_t N, int D, int sign, int x_shared,
                     int head_shared, const double* hyper, const int64_t* counts, const void* x,
                     const void* target, void* peaks, void* scales, void* loss, void* curve,
                     int64_t records, void* state, int64_t* plan_out) {
  const Dims d{S, N, D, sign, bool(x_shared), bool(head_shared)};
  const AdamConfig cfg = adam(hyper, counts);
  return CN_DISPATCH(dtype,
                     compnet_train_t<float>(d, cfg, x, target, peaks, scales, loss, curve, records, state, plan_out),
                     compnet_train_t<double>(d, cfg, x, target, peaks, scales, loss, curve, records, state, plan_out));
}

const char* mlp_forward_c(int dtype, const int64_t* widths, int nw, int64_t S, int64_t N,
                          int x_shared, const void* x, const void* params, void* y) {
  mlp::Shape sh;
  if (!shape(widths, nw, sh)) return "bad widths";
  const MlpDims d{S, N, bool(x_shared), false};
  return CN_DISPATCH(dtype, mlp_forward<float>(sh, d, CP(float, x), CP(float, params), P(float, y), nullptr),
                     mlp_forward<double>(sh, d, CP(double, x), CP(double, params), P(double, y), nullptr));
}

const char* mlp_backward_c(int dtype, const int64_t* widths, int nw, int64_t S, int64_t N,
                           int x_shared, int head_shared, const void* x, const void* params,
                           const void* head, void* loss, void* gx, void* gparams) {
  mlp::Shape sh;
  if (!shape(widths, nw, sh)) return "bad widths";
  const MlpDims d{S, N, bool(x_shared), bool(head_shared)};
  return CN_DISPATCH(
      dtype,
      mlp_backward<float>(sh, d, CP(float, x), CP(float, params), CP(float, head), P(float, loss), P(float, gx), P(float, gparams), nullptr),
      mlp_backward<double>(sh, d, CP(double, x), CP(double, params), CP(double, head), P(double, loss), P(double, gx), P(double, gparams), nullptr));
}

const char* mlp_train_c(int dtype, const int64_t* widths, int nw, int64_t S, int64_t N,
                        int x_shared, int head_shared, const double* hyper,
                        const int64_t* counts, const void* x, const void* target, void* params,
                        void* loss, void* curve, int64_t records, void* state, int64_t* plan_out) {
  mlp::Shape sh;
  if (!shape(widths, nw, sh)) return "bad widths";
  const MlpDims d{S, N, bool(x_shared), bool(head_shared)};
  const AdamConfig cfg = adam(hyper, counts);
  return CN_DISPATCH(dtype,
                     mlp_train_t<float>(sh, d, cfg, x, target, params, loss, curve, records, state, plan_out),
                     mlp_train_t<double>(sh, d, cfg, x, target, params, loss, curve, records, state, plan_out));
}

}  // extern "C"
