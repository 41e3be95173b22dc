// Adam and the epoch loop of the fused training stages (train_peaks, mlp_train), written once for
// their four drivers: CPU and CUDA, compositional network and MLP. Plain C++: no torch, no CUDA
// headers.
#pragma once

#include "portability.h"

namespace cn {

struct AdamConfig {
  long long epochs;
  double lr, beta1, beta2, eps;
  double peak_min, peak_max;  // peaks are clamped to [peak_min, peak_max] after every step
  long long record_every;     // loss curve: every k epochs (0: none)
  long long step0;            // Adam steps already taken (a run continued in chunks)
  long long warmup = 0;       // linear warm-up: step t < warmup takes lr * t / warmup (0: none)
};

// b^t by squaring: plain IEEE multiplications, so the host, the device and Python
// (compnet_ext.optim.ipow) get the same bits, which libm's and CUDA's pow do not promise.
CN_HD double ipow(double b, long long t) {
  double r = 1.0;
  for (; t > 0; t >>= 1, b *= b)
    if (t & 1) r *= b;
  return r;
}

// The learning rate of step t >= 1: a linear warm-up from lr / warmup to lr over the first
// `warmup` steps, then lr (docs/hyperparameters.md). One division and one multiplication in
// double, so compnet_ext.optim.warmup_lr (Python floats) gets the same bits.
CN_HD double scheduled_lr(const AdamConfig& c, long long t) {
  return t < c.warmup ? c.lr * (double(t) / double(c.warmup)) : c.lr;
}

// torch.optim.Adam's update (no weight decay, no amsgrad) for step t >= 1. Every operation is a
// single IEEE operation in a fixed order (the build turns off FMA contraction), and the
// step-dependent scalars are computed in double and rounded once, so that
// compnet_ext.optim.BatchedAdam, which performs the same operations with torch ops, gives the
// same bits on every CPU. torch.optim.Adam computes the same formula; its kernels may round the
// lerp and addcmul differently in the last bit.
template <typename T>
struct AdamStep {
  T neg_step, bc2_sqrt, w1, b2, w2, eps;
  CN_HD AdamStep(const AdamConfig& c, long long t)
      : neg_step(T(-(scheduled_lr(c, t) / (1.0 - ipow(c.beta1, t))))),
        bc2_sqrt(T(sqrt(1.0 - ipow(c.beta2, t)))),
        w1(T(1.0 - c.beta1)),
        b2(T(c.beta2)),
        w2(T(1.0 - c.beta2)),
        eps(T(c.eps)) {}
  // Updates elements first, first + stride, ... < n of the parameters p with gradient g and
  // moments m, v; the parameters are clamped to [lo, hi]. Adam is element-wise, so the lanes of
  // a CUDA warp share a row (first = lane, stride = 32) and get the bits of a serial loop.
  CN_HD void apply(T* p, const T* g, T* m, T* v, int n, T lo, T hi, int first = 0,
                   int stride = 1) const {
    for (int k = first; k < n; k += stride) {
      m[k] = m[k] + w1 * (g[k] - m[k]);       // exp_avg.lerp_(grad, 1 - beta1)
      v[k] = v[k] * b2 + (w2 * g[k]) * g[k];  // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
      const T denom = sqrt_(v[k]) / bc2_sqrt + eps;
      const T q = p[k] + (neg_step * m[k]) / denom;  // param.addcdiv_(exp_avg, denom, -step_size)
      p[k] = q < lo ? lo : (q > hi ? hi : q);        // clamp_(lo, hi)
    }
  }
};

// The epoch loop: `cfg.epochs` Adam steps, each on the gradient at the current parameters.
// pass() computes that gradient and returns the loss; step(AdamStep) updates the parameters.
// The loss before every record_every-th step goes to curve_row (nullptr: this thread does not
// record). A last pass gives the loss at the trained parameters, which is returned, with no
// step. Steps are numbered from cfg.step0 + 1, so a run continued in chunks equals one run.
template <typename T, typename Pass, typename Step>
CN_HD T train_epochs(const AdamConfig& cfg, T* curve_row, Pass&& pass, Step&& step) {
  for (long long epoch = 0;; ++epoch) {
    const T loss = pass();
    if (epoch == cfg.epochs) return loss;
    if (curve_row && cfg.record_every > 0 && epoch % cfg.record_every == 0)
      curve_row[epoch / cfg.record_every] = loss;
    step(AdamStep<T>(cfg, cfg.step0 + epoch + 1));
  }
}

}  // namespace cn
