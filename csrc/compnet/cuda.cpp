// The kernels of compnet/ops.h on CUDA: torch glue for the launchers of compnet/kernels.cu
// (dtype dispatch, data pointers, scratch and workspace allocation, stream, launch errors).
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../common/cuda_glue.h"
#include "../common/tensors.h"
#include "kernels.h"
#include "ops.h"
#include "problem.h"

namespace cn {
namespace {

cuda::Dims dims(const Problem& p) { return {p.S, p.N, p.D, p.sign, p.x_shared, p.head_shared}; }

struct Cuda {
  using Guard = c10::cuda::CUDAGuard;
  static void forward(const char* op, const Problem& p, const at::Tensor& y) {
    AT_DISPATCH_FLOATING_TYPES(p.peaks.scalar_type(), "compnet_forward_cuda", [&] {
      using T = scalar_t;
      check_launch(op, cuda::forward<T>(dims(p), p.x.data_ptr<T>(), p.peaks.data_ptr<T>(),
                                        ptr_or_null<T>(p.scales), y.data_ptr<T>(),
                                        current_stream()));
    });
  }
  static void backward(const char* op, const Problem& p, const at::Tensor& loss,
                       const at::Tensor& gx, const at::Tensor& gp, const at::Tensor& gs) {
    // smooth scales and their gradient, the Tri table, the chunks' carry, per seed
    const at::Tensor scratch = at::empty(
        {p.S, cuda::backward_scratch_values(p.D, p.N, p.peaks.element_size())}, p.peaks.options());
    AT_DISPATCH_FLOATING_TYPES(p.peaks.scalar_type(), "compnet_backward_cuda", [&] {
      using T = scalar_t;
      check_launch(op, cuda::backward<T>(dims(p), p.x.data_ptr<T>(), p.peaks.data_ptr<T>(),
                                         ptr_or_null<T>(p.scales), p.head.data_ptr<T>(),
                                         ptr_or_null<T>(loss), ptr_or_null<T>(gx),
                                         ptr_or_null<T>(gp), ptr_or_null<T>(gs),
                                         ptr_or_null<T>(scratch), current_stream()));
    });
  }
  static void train(const char* op, const Problem& p, const AdamConfig& cfg,
                    const at::Tensor& peaks, const at::Tensor& scales, const at::Tensor& loss,
                    const at::Tensor& curve, const at::Tensor& state) {
    const size_t elem = p.peaks.element_size();
    const cuda::TrainPlan plan = cuda::train_peaks_plan(dims(p), elem, optin_shared_bytes());
    const at::Tensor spill =
        spill_workspace(plan, p.S, cuda::train_workspace_values(p.D, elem), p.peaks);
    const at::Tensor carry =
        at::empty({p.S, cuda::carry_values(p.D, p.N, elem)}, p.peaks.options());
    AT_DISPATCH_FLOATING_TYPES(p.peaks.scalar_type(), "compnet_train_peaks_cuda", [&] {
      using T = scalar_t;
      check_launch(op, cuda::train<T>(dims(p), cfg, plan, p.x.data_ptr<T>(),
                                      p.head.data_ptr<T>(), peaks.data_ptr<T>(),
                                      ptr_or_null<T>(scales), loss.data_ptr<T>(),
                                      ptr_or_null<T>(curve), curve.size(1), state.data_ptr<T>(),
                                      ptr_or_null<T>(spill), ptr_or_null<T>(carry),
                                      current_stream()));
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(compnet_ext, CUDA, m) { register_ops<Cuda>(m); }

}  // namespace cn
