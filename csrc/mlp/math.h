// Per-point math of S independent scalar-in, scalar-out ReLU MLPs, written once for the CPU driver
// (mlp/cpu.cpp, L lanes of points per call, SIMD lane loops) and the CUDA kernels
// (mlp/kernels.cu, L = 1, one point per thread). Plain C++: no torch, no CUDA headers.
//
// Parameters of one seed are one flat row: for each linear layer l, W_l [out, in] row-major, then
// b_l [out]. ReLU follows every layer but the last. The forward keeps each hidden layer's
// post-activations h in a per-point buffer of `units` (sum of hidden widths) x L values; the
// backward reads them back (h > 0 is exactly the ReLU mask, since h = max(z, 0)), so forward and
// backward for a point run on chip without a second pass over the weights' inputs.
#pragma once

#include "../common/portability.h"

namespace cn {
namespace mlp {

constexpr int kMaxWidth = 16;   // widest hidden layer
constexpr int kMaxHidden = 64;  // most hidden layers
constexpr int kMaxLayers = kMaxHidden + 1;

// Layer geometry, passed by value (it fits in a kernel's parameter space).
struct Shape {
  int layers = 0;                   // linear layers = hidden layers + 1
  int width[kMaxLayers + 1] = {};   // width[0] = 1 (input) .. width[layers] = 1 (output)
  int w_off[kMaxLayers] = {};       // offset of W_l in the parameter row
  int b_off[kMaxLayers] = {};       // offset of b_l in the parameter row
  int h_off[kMaxLayers] = {};       // offset of hidden layer l's activations (l < layers - 1)
  int params = 0;                   // P: length of a parameter row
  int units = 0;                    // sum of hidden widths
};

// Fills the offsets from width[] and layers; returns false if the widths are out of range.
inline bool make_shape(const long* widths, int n, Shape& s) {
  if (n < 2 || n - 1 > kMaxLayers || widths[0] != 1 || widths[n - 1] != 1) return false;
  s.layers = n - 1;
  int p = 0, u = 0;
  for (int l = 0; l < n; ++l) {
    if (widths[l] < 1 || widths[l] > kMaxWidth) return false;
    s.width[l] = static_cast<int>(widths[l]);
  }
  for (int l = 0; l < s.layers; ++l) {
    s.w_off[l] = p;
    p += s.width[l + 1] * s.width[l];
    s.b_off[l] = p;
    p += s.width[l + 1];
    s.h_off[l] = u;
    if (l + 1 < s.layers) u += s.width[l + 1];
  }
  s.params = p;
  s.units = u;
  return true;
}

// Forward for L points: hidden activations into h [units][L], outputs into y.
template <typename T, int L>
CN_HD void forward_lanes(const Shape& s, const T* __restrict p, const T (&x)[L], T* __restrict h,
                         T (&y)[L]) {
  for (int l = 0; l < s.layers; ++l) {
    const int in = s.width[l], out = s.width[l + 1];
    const T* W = p + s.w_off[l];
    const T* b = p + s.b_off[l];
    const T* src = l == 0 ? x : h + s.h_off[l - 1] * L;
    const bool last = l + 1 == s.layers;
    for (int o = 0; o < out; ++o) {
      T z[L];
      const T bo = b[o];
      CN_LANES for (int k = 0; k < L; ++k) z[k] = bo;
      for (int i = 0; i < in; ++i) {
        const T w = W[o * in + i];
        const T* __restrict si = src + i * L;
        CN_LANES for (int k = 0; k < L; ++k) z[k] = madd(w, si[k], z[k]);
      }
      if (last) {
        CN_LANES for (int k = 0; k < L; ++k) y[k] = z[k];
      } else {
        T* __restrict dst = h + (s.h_off[l] + o) * L;
        // relu that keeps NaN, as torch.relu does (z > 0 ? z : 0 would turn NaN into 0)
        CN_LANES for (int k = 0; k < L; ++k) dst[k] = z[k] < T(0) ? T(0) : z[k];
      }
    }
  }
}

// Reverse sweep for L points after forward_lanes filled h. dy = dLoss/dy per lane (zero for
// padding lanes). Per-point parameter-gradient terms go to acc.add(index, v[L]) (the driver
// reduces over lanes / points in a fixed order); dLoss/dx per lane into dx (if non-null).
// `g` and `gn` are scratch of kMaxWidth x L each.
template <typename T, int L, typename Acc>
CN_HD void backward_lanes(const Shape& s, const T* __restrict p, const T (&x)[L],
                          const T* __restrict h, const T (&dy)[L], T* __restrict g,
                          T* __restrict gn, Acc& acc, T* dx) {
  CN_LANES for (int k = 0; k < L; ++k) g[k] = dy[k];  // the output layer has one unit
  for (int l = s.layers - 1; l >= 0; --l) {
    const int in = s.width[l], out = s.width[l + 1];
    const T* W = p + s.w_off[l];
    const T* src = l == 0 ? x : h + s.h_off[l - 1] * L;
    for (int o = 0; o < out; ++o) {
      const T* go = g + o * L;
      acc.add(s.b_off[l] + o, go);
      for (int i = 0; i < in; ++i) {
        T v[L];
        const T* __restrict si = src + i * L;
        CN_LANES for (int k = 0; k < L; ++k) v[k] = go[k] * si[k];
        acc.add(s.w_off[l] + o * in + i, v);
      }
    }
    if (l == 0 && dx == nullptr) break;
    // gradient w.r.t. this layer's input, masked by the ReLU of the previous layer
    for (int i = 0; i < in; ++i) {
      T v[L];
      CN_LANES for (int k = 0; k < L; ++k) v[k] = T(0);
      for (int o = 0; o < out; ++o) {
        const T w = W[o * in + i];
        const T* __restrict go = g + o * L;
        CN_LANES for (int k = 0; k < L; ++k) v[k] = madd(w, go[k], v[k]);
      }
      T* __restrict gi = gn + i * L;
      if (l == 0) {
        CN_LANES for (int k = 0; k < L; ++k) dx[k] = v[k];
      } else {
        const T* __restrict hi = src + i * L;
        CN_LANES for (int k = 0; k < L; ++k) gi[k] = hi[k] > T(0) ? v[k] : T(0);
      }
    }
    T* t = g;
    g = gn;
    gn = t;
  }
}

}  // namespace mlp
}  // namespace cn
