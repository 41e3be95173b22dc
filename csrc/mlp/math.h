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
  // The sweeps read the geometry through these (FixedShape has the same interface).
  CN_HD int n_layers() const { return layers; }
  CN_HD int width_at(int l) const { return width[l]; }
  CN_HD int w_at(int l) const { return w_off[l]; }
  CN_HD int b_at(int l) const { return b_off[l]; }
  CN_HD int h_at(int l) const { return h_off[l]; }
};

// The shape 1 -> Hidden layers of Width units -> 1, known at compile time (the paper's 4 x 5
// net: FixedShape<4, 5>). With it every loop of the sweeps has a constant trip count and every
// index is a constant, so that on the GPU the activations, the reverse sweep's scratch and the
// lane sums live in registers rather than in a local-memory stack frame. The same arithmetic,
// in the same order, as the equal runtime Shape.
template <int Width, int Hidden>
struct FixedShape {
  static_assert(Width >= 1 && Width <= kMaxWidth && Hidden >= 1 && Hidden <= kMaxHidden, "");
  static constexpr int layers = Hidden + 1;
  static constexpr int units = Width * Hidden;
  static constexpr int params = 2 * Width + (Hidden - 1) * (Width + 1) * Width + Width + 1;
  CN_HD constexpr int n_layers() const { return layers; }
  CN_HD constexpr int width_at(int l) const { return l == 0 || l == layers ? 1 : Width; }
  // closed forms (no loops), so that the offsets fold into constants early enough for the
  // lane sums to be split into registers
  CN_HD constexpr int w_at(int l) const {
    return l == 0 ? 0 : 2 * Width + (l - 1) * (Width + 1) * Width;
  }
  CN_HD constexpr int b_at(int l) const { return w_at(l) + width_at(l + 1) * width_at(l); }
  CN_HD constexpr int h_at(int l) const { return l * Width; }
  // Whether a runtime shape is this one.
  CN_HD static bool matches(const Shape& s) {
    if (s.layers != layers) return false;
    for (int l = 0; l <= layers; ++l)
      if (s.width[l] != FixedShape().width_at(l)) return false;
    return true;
  }
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
// `Sh` is Shape or a FixedShape (then every loop unrolls on the GPU).
template <typename T, int L, typename Sh>
CN_HD void forward_lanes(const Sh& s, const T* __restrict p, const T (&x)[L], T* __restrict h,
                         T (&y)[L]) {
  CN_UNROLL for (int l = 0; l < s.n_layers(); ++l) {
    const int in = s.width_at(l), out = s.width_at(l + 1);
    const T* W = p + s.w_at(l);
    const T* b = p + s.b_at(l);
    const T* src = l == 0 ? x : h + s.h_at(l - 1) * L;
    const bool last = l + 1 == s.n_layers();
    CN_UNROLL for (int o = 0; o < out; ++o) {
      T z[L];
      const T bo = b[o];
      CN_LANES for (int k = 0; k < L; ++k) z[k] = bo;
      CN_UNROLL for (int i = 0; i < in; ++i) {
        const T w = W[o * in + i];
        const T* __restrict si = src + i * L;
        CN_LANES for (int k = 0; k < L; ++k) z[k] = madd(w, si[k], z[k]);
      }
      if (last) {
        CN_LANES for (int k = 0; k < L; ++k) y[k] = z[k];
      } else {
        T* __restrict dst = h + (s.h_at(l) + o) * L;
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
template <typename T, int L, typename Sh, typename Acc>
CN_HD void backward_lanes(const Sh& s, const T* __restrict p, const T (&x)[L],
                          const T* __restrict h, const T (&dy)[L], T* __restrict g,
                          T* __restrict gn, Acc& acc, T* dx) {
  CN_LANES for (int k = 0; k < L; ++k) g[k] = dy[k];  // the output layer has one unit
  CN_UNROLL for (int l = s.n_layers() - 1; l >= 0; --l) {
    const int in = s.width_at(l), out = s.width_at(l + 1);
    const T* W = p + s.w_at(l);
    const T* src = l == 0 ? x : h + s.h_at(l - 1) * L;
    CN_UNROLL for (int o = 0; o < out; ++o) {
      const T* go = g + o * L;
      acc.add(s.b_at(l) + o, go);
      CN_UNROLL for (int i = 0; i < in; ++i) {
        T v[L];
        const T* __restrict si = src + i * L;
        CN_LANES for (int k = 0; k < L; ++k) v[k] = go[k] * si[k];
        acc.add(s.w_at(l) + o * in + i, v);
      }
    }
    if (l == 0 && dx == nullptr) continue;  // the last iteration
    // gradient w.r.t. this layer's input, masked by the ReLU of the previous layer
    CN_UNROLL for (int i = 0; i < in; ++i) {
      T v[L];
      CN_LANES for (int k = 0; k < L; ++k) v[k] = T(0);
      CN_UNROLL for (int o = 0; o < out; ++o) {
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
