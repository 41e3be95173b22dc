// The compositional network's per-point math (MATH.md sections 1-4), written once for the CPU
// driver (compnet/cpu.cpp, L lanes of points per call) and the CUDA kernels (compnet/kernels.cu,
// L = 1, one point per thread); see common/portability.h. Plain C++: no torch, no CUDA headers.
#pragma once

#include "../common/portability.h"

namespace cn {

// One triangle layer; the reciprocals are computed once per layer, not per point. The right
// branch is held negated, (u - 1) / (a - 1): the same quotient bit for bit (IEEE rounding is
// symmetric in sign), and its reciprocal -1/(1 - a) is then the branch's slope T'(u) as is.
// Four values: one 128-bit load per layer from a table (alignas; compnet/kernels.h places them).
template <typename T>
struct alignas(16) Tri {
  T a, nb, ia, nib;  // peak, a - 1, 1/a, 1/(a - 1)
  Tri() = default;  // a slot of a table (TriTable)
  CN_HD explicit Tri(T peak) : a(peak), nb(-(T(1) - peak)), ia(T(1) / peak), nib(T(1) / nb) {}
  // T_a(u) = u / a or (1 - u) / (1 - a), correctly rounded, as the reference computes it: the
  // waves are exponentially sensitive to rounding (slopes 1/a, 1/(1-a) > 1 compound over the
  // layers), so the fused op reproduces the reference's waves bitwise. With FMA the quotient is
  // one multiply by the correctly rounded reciprocal plus one FMA correction, which gives the
  // correctly rounded quotient (Markstein's theorem) at a fraction of a division's cost.
  // Ties (u == a) take the left branch; du uses the same convention (the gradient of the
  // branch the value came from, as torch.where in the reference). Both branches are computed
  // and then selected, so the host compiler turns the lane loops into SIMD blends.
  CN_HD T value(T u) const {
    const bool left = u <= a;
    const T num = left ? u : u - T(1), den = left ? a : nb;
#if CN_HAS_FMA
    const T r = left ? ia : nib;
    const T q = num * r;
    return fma_(fma_(-q, den, num), r, q);
#else
    return num / den;
#endif
  }
  CN_HD T du(T u) const { return u <= a ? ia : nib; }
  // dT_a(u)/da = -u / a^2 or (1 - u) / (1 - a)^2, which is -T_a(u) * du(u): the sweep's reverse
  // step forms it from the wave it already holds (backward_chunk), so no table of squares.
};

// Where the sweeps get each layer's Tri, its signed scale (scale(i) = sign * s_i) and the factor
// below it in the reverse sweep (below(i) = scale(i - 1), below(0) = 1: dL/dx's): computed at
// every use (PeakLayers: the CPU driver, whose tiles of 64 points amortise it), or read from
// tables filled once per seed (TriTable: the CUDA kernels, one point per lane, where the
// reciprocals were ~40% of a point-layer's arithmetic). The same IEEE operations either way (the
// sign is exact): the same bits.
template <typename T>
struct PeakLayers {
  const T* a;
  const T* s;  // the scales row
  int sign;
  CN_HD Tri<T> operator()(int i) const { return Tri<T>(a[i]); }
  CN_HD T scale(int i) const { return T(sign) * s[i]; }
  CN_HD Tri<T> reverse(int i) const { return (*this)(i); }
  CN_HD T below(int i) const { return i > 0 ? scale(i - 1) : T(1); }
};
// The reverse sweep reads the tables at `rt`: `t` itself, or a copy of them where the registers
// would not hold the forward's values (compnet/kernels.cu: keep_forward_values): ptxas keeps a
// value it loaded from an address until the same address is read again, so the copy's other
// address makes the reverse step read and select again instead of spilling.
template <typename T>
struct TriTable {
  const Tri<T>* t;
  const T* sp;  // signed_scales_row: sp[i + 1] = scale(i), sp[0] = 1
  const Tri<T>* rt;  // t or its copy, for the reverse sweep
  const T* rsp;      // sp or its copy
  CN_HD const Tri<T>& operator()(int i) const { return t[i]; }
  CN_HD T scale(int i) const { return sp[i + 1]; }
  CN_HD const Tri<T>& reverse(int i) const { return rt[i]; }
  CN_HD T below(int i) const { return rsp[i]; }
};

// ---- smooth scales (MATH.md section 3): per seed, O(D) -------------------------------------

template <typename T>
CN_HD T smooth_s0(const T* a, int sign) {
  return (sign < 0 ? a[0] : T(1) - a[0]) * a[1];
}

// s_{i+1} = s_i * ((1 - a_{i+1}) * a_{i+2}); `a` has D + 1 entries.
template <typename T>
CN_HD T smooth_next(T s, const T* a, int i) {
  return s * ((T(1) - a[i + 1]) * a[i + 2]);
}

template <typename T>
CN_HD void smooth_scales_row(const T* a, int D, int sign, T* s) {
  T v = smooth_s0(a, sign);
  for (int i = 0; i < D; ++i) {
    s[i] = v;
    if (i + 1 < D) v = smooth_next(v, a, i);
  }
}

// TriTable's scales row (D + 1 entries): sp[0] = 1, sp[i + 1] = sign * s_i, with s the scales
// row, or the smooth scales of the peaks `a` when s is nullptr.
template <typename T>
CN_HD void signed_scales_row(const T* a, const T* s, int D, int sign, T* sp) {
  if (s)
    for (int i = 0; i < D; ++i) sp[i + 1] = s[i];
  else
    smooth_scales_row(a, D, sign, sp + 1);
  sp[0] = T(1);
  for (int i = 0; i < D; ++i) sp[i + 1] *= T(sign);
}

// Chain rule of the recurrence: given gs = dL/ds (D entries, overwritten as scratch), add the
// peaks' share to ga (D + 1 entries). Underflowed scales give zeros, never NaN.
template <typename T>
CN_HD void smooth_scales_backward_row(const T* a, const T* s, int D, int sign, T* gs, T* ga) {
  for (int i = D - 1; i >= 1; --i) {
    const T g = gs[i], prev = s[i - 1];
    const T one_m = T(1) - a[i], next = a[i + 1];
    ga[i] -= g * prev * next;
    ga[i + 1] += g * prev * one_m;
    gs[i - 1] += g * (one_m * next);
  }
  const T g0 = gs[0];
  ga[0] += sign < 0 ? g0 * a[1] : -g0 * a[1];
  ga[1] += g0 * (sign < 0 ? a[0] : T(1) - a[0]);
}

// ---- forward sweep (MATH.md section 2) -----------------------------------------------------

// y = x + sum_i scale(i) W_i(x) for L points of one seed; `layers` gives each layer's Tri and
// signed scale. SMOOTH: the scales are generated on the fly from the peaks instead (`layers` is
// then PeakLayers, whose `a` and `sign` it uses): the CUDA forward where the tables do not fit.
template <typename T, int L, bool SMOOTH = false, typename Layers>
CN_HD void forward_lanes(const T (&x)[L], const Layers& layers, int D, T (&y)[L]) {
  T u[L], acc[L];  // local: the compiler need not worry that y aliases the tables
  CN_LANES for (int l = 0; l < L; ++l) { u[l] = x[l]; acc[l] = x[l]; }
  T sm = T(0);
  if constexpr (SMOOTH) sm = smooth_s0(layers.a, layers.sign);
  for (int i = 0; i < D; ++i) {
    const Tri<T> t = layers(i);
    T ss;
    if constexpr (SMOOTH) {
      ss = T(layers.sign) * sm;
      if (i + 1 < D) sm = smooth_next(sm, layers.a, i);
    } else {
      ss = layers.scale(i);
    }
    CN_LANES for (int l = 0; l < L; ++l) {
      u[l] = t.value(u[l]);
      acc[l] = madd(ss, u[l], acc[l]);
    }
  }
  CN_LANES for (int l = 0; l < L; ++l) y[l] = acc[l];
}

// ---- fused forward + reverse sweep (MATH.md section 4) -------------------------------------
//
// For L points of one seed: runs the forward sweep, asks `head` for dL/dy of each point
// (head(l, y) -> gy; it may also accumulate a loss), then the reverse sweep, reporting the
// per-point terms of every layer to `acc`:
//   acc.layer(i, j, ldu, w, gy): layer i (= c0 + j, j its index in the chunk), per lane
//       ldu = lambda_i T'(W_{i-1}) and w = W_i. Since dT_a(u)/da = -T_a(u) T'(u), the peak's
//       term is -ldu * w and the scale's sign * gy * w: the accumulator sums ldu * w and
//       gy * w (one FMA each) and the caller turns the sums into gradients (peak_grad,
//       scale_grad), exactly, since a sign does not round.
//   acc.input(gx):        gx[l] = gy * dy/dx
// `layers` gives each layer's Tri and signed scale (PeakLayers or TriTable).
//
// The reverse sweep needs every wave value W_{i-1}. Rather than storing D of them per point,
// layers are processed in chunks of CHUNK from the top: the forward is recomputed from x up to
// the chunk and the chunk's inputs are kept in `win`. With CHUNK >= D this is one forward and
// one reverse pass; deeper networks cost ceil(D/CHUNK)/2 extra forward passes, with no cap on D.
// The chunk loops have compile-time trip counts, so on the GPU `win` lives in registers.
//
// backward_chunk runs one chunk c (chunks are numbered from the bottom; the top one, c =
// backward_chunks(D) - 1, sums the output and calls `head`: TOP, so that the other chunks carry
// no per-layer test of it). Between chunks a point carries only gy and lam (lambda_i * gy of the
// chunk's lowest layer, MATH.md section 4): the CUDA kernels run chunk by chunk over all of a
// seed's points and keep those two per point in memory, so that a lane's gradient sums of the
// chunk's layers stay in registers over all its points. FULL: D == CHUNK (one chunk; the CUDA
// kernels pad a shallower net to it with identity layers, compnet/kernels.h: table_depth), so
// that its steps run unguarded (a guard cost ~5 instructions per layer and step, more than the
// reverse step's arithmetic) and the compiler may keep each layer's slope
// T'(W_{i-1}) from the forward step (it is the step's reciprocal) rather than compare and select
// again; `layers.reverse` decides whether it can (TriTable). EVEN: D is a multiple of CHUNK
// (several full chunks: the CUDA kernels pad the top one likewise), so that no step is guarded.
CN_HD int backward_chunks(int D, int chunk) { return (D + chunk - 1) / chunk; }

template <typename T>
CN_HD T peak_grad(T sum) { return -sum; }
template <typename T>
CN_HD T scale_grad(T sum, int sign) { return T(sign) * sum; }

template <typename T, int L, int CHUNK, bool TOP, bool FULL = false, bool EVEN = false,
          typename Layers, typename Head, typename Acc>
CN_HD void backward_chunk(const T (&x)[L], const Layers& layers, int D, int c, Head& head,
                          Acc& acc, T (&gy)[L], T (&lam)[L]) {
  T win[CHUNK][L];  // inputs W_{i-1} of the chunk's layers
  if (FULL) D = CHUNK, c = 0;
  const int c0 = c * CHUNK;
  T u[L], y[L];
  CN_LANES for (int l = 0; l < L; ++l) { u[l] = x[l]; y[l] = x[l]; }
  // Forward up to the chunk; the output sum is only needed on the first (top) pass.
  for (int i = 0; i < c0; ++i) {
    const Tri<T> t = layers(i);
    const T ss = layers.scale(i);
    CN_LANES for (int l = 0; l < L; ++l) {
      u[l] = t.value(u[l]);
      if (TOP) y[l] = madd(ss, u[l], y[l]);
    }
  }
  const int jn = FULL || EVEN ? CHUNK : (D - c0 < CHUNK ? D - c0 : CHUNK);  // layers in this chunk
  const int jend = CN_FIXED_CHUNK ? CHUNK : jn;
  CN_UNROLL for (int j = 0; j < jend; ++j) {
    if (j < jn) {
      const Tri<T> t = layers(c0 + j);
      const T ss = layers.scale(c0 + j);
      CN_LANES for (int l = 0; l < L; ++l) {
        const T w = u[l];
        u[l] = t.value(w);
        win[j][l] = w;
        if (TOP) y[l] = madd(ss, u[l], y[l]);
      }
    }
  }
  // u is now W of the chunk's top layer (for a lower chunk, the value the chunk above started
  // from), and in the reverse sweep W_i of the layer being reversed.
  if (TOP) {
    const T ss = layers.scale(D - 1);
    CN_LANES for (int l = 0; l < L; ++l) {
      gy[l] = head(l, y[l]);
      lam[l] = gy[l] * ss;
    }
  }
  CN_UNROLL for (int j = jend - 1; j >= 0; --j) {
    const int i = c0 + j;
    if (j < jn) {
      const Tri<T> t = layers.reverse(i);
      // lambda_{i-1} = gy * scale(i-1) + lambda_i T'(W_{i-1}); below layer 0 the same
      // expression with factor 1 is dL/dx = gy + lambda_0 T'(x).
      const T below = layers.below(i);
      T ldu[L];
      CN_LANES for (int l = 0; l < L; ++l) {
        ldu[l] = lam[l] * t.du(win[j][l]);
        lam[l] = madd(gy[l], below, ldu[l]);
      }
      acc.layer(i, j, ldu, u, gy);
      CN_LANES for (int l = 0; l < L; ++l) u[l] = win[j][l];
      if (i == 0) acc.input(lam);
    }
  }
}

// All chunks of L points, top to bottom.
template <typename T, int L, int CHUNK, typename Layers, typename Head, typename Acc>
CN_HD void backward_lanes(const T (&x)[L], const Layers& layers, int D, Head& head, Acc& acc) {
  T gy[L], lam[L];  // dL/dy and lambda_i * gy (MATH.md section 4)
  const int top = backward_chunks(D, CHUNK) - 1;
  backward_chunk<T, L, CHUNK, true>(x, layers, D, top, head, acc, gy, lam);
  for (int c = top - 1; c >= 0; --c)
    backward_chunk<T, L, CHUNK, false>(x, layers, D, c, head, acc, gy, lam);
}

}  // namespace cn
