// The kernels of mlp/ops.h on CUDA: torch glue for the launchers of mlp/kernels.cu (dtype
// dispatch, data pointers, workspace allocation, stream, launch errors).
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../common/cuda_glue.h"
#include "../common/tensors.h"
#include "kernels.h"
#include "ops.h"
#include "problem.h"

namespace cn {
namespace {

cuda::MlpDims dims(const MlpProblem& p) { return {p.S, p.N, p.x_shared, p.head_shared}; }

struct Cuda {
  using Guard = c10::cuda::CUDAGuard;
  static void forward(const char* op, const MlpProblem& p, const at::Tensor& y) {
    AT_DISPATCH_FLOATING_TYPES(p.params.scalar_type(), "mlp_forward_cuda", [&] {
      using T = scalar_t;
      check_launch(op, cuda::mlp_forward<T>(p.shape, dims(p), p.x.data_ptr<T>(),
                                            p.params.data_ptr<T>(), y.data_ptr<T>(),
                                            current_stream()));
    });
  }
  static void backward(const char* op, const MlpProblem& p, const at::Tensor& loss,
                       const at::Tensor& gx, const at::Tensor& gp) {
    AT_DISPATCH_FLOATING_TYPES(p.params.scalar_type(), "mlp_backward_cuda", [&] {
      using T = scalar_t;
      check_launch(op, cuda::mlp_backward<T>(p.shape, dims(p), p.x.data_ptr<T>(),
                                             p.params.data_ptr<T>(), p.head.data_ptr<T>(),
                                             ptr_or_null<T>(loss), ptr_or_null<T>(gx),
                                             gp.data_ptr<T>(), current_stream()));
    });
  }
  static void train(const char* op, const MlpProblem& p, const AdamConfig& cfg,
                    const at::Tensor& params, const at::Tensor& loss, const at::Tensor& curve,
                    const at::Tensor& state) {
    const cuda::TrainPlan plan = cuda::mlp_train_plan(p.shape, dims(p), p.params.element_size(),
                                                      optin_shared_bytes());
    const at::Tensor spill =
        spill_workspace(plan, p.S, cuda::mlp_train_workspace_values(p.shape), p.params);
    AT_DISPATCH_FLOATING_TYPES(p.params.scalar_type(), "mlp_train_cuda", [&] {
      using T = scalar_t;
      check_launch(op, cuda::mlp_train<T>(p.shape, dims(p), cfg, plan, p.x.data_ptr<T>(),
                                          p.head.data_ptr<T>(), params.data_ptr<T>(),
                                          loss.data_ptr<T>(), curve.data_ptr<T>(), curve.size(1),
                                          state.data_ptr<T>(), ptr_or_null<T>(spill),
                                          current_stream()));
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(compnet_ext, CUDA, m) { register_mlp_ops<Cuda>(m); }

}  // namespace cn
