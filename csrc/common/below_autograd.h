// A registered op called below its autograd, as its registered autograd calls it: for the
// eager autograd nodes in C++ (compnet/autograd.cpp, mlp/autograd.cpp). Torch glue, no CUDA.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/LegacyTypeDispatch.h>

#include <utility>

namespace cn {

// `static const BelowAutograd<Sig> op("compnet_ext::name");` looks the schema up once; op(args...)
// dispatches below the Autograd key.
template <typename Sig>
class BelowAutograd {
 public:
  explicit BelowAutograd(const char* name)
      : op_(c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>()) {}
  template <typename... Args>
  decltype(auto) operator()(Args&&... args) const {
    const at::AutoDispatchBelowADInplaceOrView below;
    return op_.call(std::forward<Args>(args)...);
  }

 private:
  c10::TypedOperatorHandle<Sig> op_;
};

}  // namespace cn
